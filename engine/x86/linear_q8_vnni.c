// SPDX-License-Identifier: MIT
/*
 * AVX512_VNNI build of the Q8_0 row kernel (engine/x86/linear_q8_tiles.h): one vpdpbusd (on
 * ymm/xmm, so AVX512VL) per step of 32 weight bytes and 32 activation bytes. Only this file
 * is built with those -m flags; engine/linear_q8.c calls it on hosts that have them.
 */
#include <immintrin.h>

static inline __m256i q8_dot256(__m256i acc, __m256i w, __m256i x)
{
	return _mm256_dpbusd_epi32(acc, w, x);
}

static inline __m128i q8_dot128(__m128i acc, __m128i w, __m128i x)
{
	return _mm_dpbusd_epi32(acc, w, x);
}

#define Q8_ROWS_FN q8_rows_vnni
#include "engine/x86/linear_q8_tiles.h"
