// SPDX-License-Identifier: MIT
/*
 * AVX2+FMA build of the Q8_0 row kernel (engine/x86/linear_q8_tiles.h), for hosts without
 * AVX512_VNNI. vpdpbusd is emulated exactly: both operands widened to int16, vpmaddwd for
 * the pair sums, vphaddd for the quads (which come out with the 128-bit halves' middle
 * quadwords swapped, hence the vpermq). Only this file is built with -mavx2 -mfma.
 */
#include <immintrin.h>

static inline __m256i q8_dot256(__m256i acc, __m256i w, __m256i x)
{
	__m256i lo = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(w)),
				       _mm256_cvtepi8_epi16(_mm256_castsi256_si128(x)));
	__m256i hi = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(w, 1)),
				       _mm256_cvtepi8_epi16(_mm256_extracti128_si256(x, 1)));

	/* hadd: lanes 0 1 4 5 | 2 3 6 7 */
	return _mm256_add_epi32(acc, _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo, hi), 0xd8));
}

static inline __m128i q8_dot128(__m128i acc, __m128i w, __m128i x)
{
	__m256i p = _mm256_madd_epi16(_mm256_cvtepu8_epi16(w), _mm256_cvtepi8_epi16(x));

	return _mm_add_epi32(
		acc, _mm_hadd_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
}

#define Q8_ROWS_FN q8_rows_avx2
#include "engine/x86/linear_q8_tiles.h"
