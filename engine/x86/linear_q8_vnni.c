// SPDX-License-Identifier: MIT
/*
 * AVX512_VNNI build of the Q8_0 row kernel (engine/x86/linear_q8_tiles.h): one vpdpbusd (on
 * ymm/xmm, so AVX512VL) per step of 32 weight bytes and 32 activation bytes. Only this file
 * is built with those -m flags; engine/linear_q8.c calls it on hosts that have them.
 */
#include <immintrin.h>

/* vpdpbusd takes w + 128 as it is: no signed form needed */
#define Q8_SIGNED_OK 0

static inline __m256i q8_wprep256(int sg, __m256i u)
{
	(void)sg;
	return u;
}

static inline __m256i q8_xprep256(int sg, __m256i x)
{
	(void)sg;
	return x;
}

static inline __m256i q8_dot256(int sg, __m256i acc, __m256i w, __m256i x, __m256i xp)
{
	(void)sg;
	(void)xp;
	return _mm256_dpbusd_epi32(acc, w, x);
}

static inline __m128i q8_wprep128(int sg, __m128i u)
{
	(void)sg;
	return u;
}

static inline __m128i q8_xprep128(int sg, __m128i x)
{
	(void)sg;
	return x;
}

static inline __m128i q8_dot128(int sg, __m128i acc, __m128i w, __m128i x, __m128i xp)
{
	(void)sg;
	(void)xp;
	return _mm_dpbusd_epi32(acc, w, x);
}

#define Q8_ROWS_FN q8_rows_vnni
#include "engine/x86/linear_q8_tiles.h"
