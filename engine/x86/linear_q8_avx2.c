// SPDX-License-Identifier: MIT
/*
 * AVX2+FMA build of the Q8_0 row kernel (engine/x86/linear_q8_tiles.h), for hosts without
 * AVX512_VNNI. Two exact stand-ins for vpdpbusd:
 *   - signed (weights without -128, which llama.cpp's Q8_0 quantizer never writes, and every
 *     Q5_0 head): vpmaddubsw of |x| and w with x's sign, then vpmaddwd by 1 for the quads;
 *     |x| <= 127 and |w| <= 127 keep every pair sum below 2^15, so nothing saturates;
 *   - wide (any weights): both operands widened to int16, vpmaddwd for the pair sums,
 *     vphaddd for the quads (which come out with the 128-bit halves' middle quadwords
 *     swapped, hence the vpermq).
 * Only this file is built with -mavx2 -mfma.
 */
#include <immintrin.h>

#define Q8_SIGNED_OK 1

/* signed: w = u - 128 */
static inline __m256i q8_wprep256(int sg, __m256i u)
{
	return sg ? _mm256_xor_si256(u, _mm256_set1_epi8((char)0x80)) : u;
}

/* signed: |x| */
static inline __m256i q8_xprep256(int sg, __m256i x)
{
	return sg ? _mm256_abs_epi8(x) : x;
}

static inline __m256i q8_dot256(int sg, __m256i acc, __m256i w, __m256i x, __m256i xp)
{
	__m256i lo, hi;

	if (sg) {
		__m256i p = _mm256_maddubs_epi16(xp, _mm256_sign_epi8(w, x));

		return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
	}
	lo = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(w)),
			       _mm256_cvtepi8_epi16(_mm256_castsi256_si128(x)));
	hi = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(w, 1)),
			       _mm256_cvtepi8_epi16(_mm256_extracti128_si256(x, 1)));
	/* hadd: lanes 0 1 4 5 | 2 3 6 7 */
	return _mm256_add_epi32(acc, _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo, hi), 0xd8));
}

#define Q8_ROWS_FN q8_rows_avx2
#include "engine/x86/linear_q8_tiles.h"
