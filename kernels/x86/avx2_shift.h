/* SPDX-License-Identifier: MIT */
#ifndef KERNELS_X86_AVX2_SHIFT_H
#define KERNELS_X86_AVX2_SHIFT_H

/* What the AVX2 kernel files share: lut_shift_f32 (kernels/internal.h) on eight lanes. */

#include <immintrin.h>

#define AI static inline __attribute__((always_inline))

/* lut_shift_f32 on eight lanes, same tests in the same order. */
AI __m256 shift_ps(__m256 x, __m256i e)
{
	__m256i u = _mm256_castps_si256(x);
	__m256i ex = _mm256_and_si256(_mm256_srli_epi32(u, 23), _mm256_set1_epi32(0xff));
	__m256i ne = _mm256_add_epi32(ex, e);
	__m256i sign = _mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u));
	__m256i res = _mm256_add_epi32(u, _mm256_slli_epi32(e, 23));
	__m256i inf_m = _mm256_cmpgt_epi32(ne, _mm256_set1_epi32(254));
	__m256i zero_m = _mm256_or_si256(_mm256_cmpeq_epi32(ex, _mm256_setzero_si256()),
					 _mm256_cmpgt_epi32(_mm256_set1_epi32(1), ne));

	res = _mm256_blendv_epi8(res, _mm256_or_si256(sign, _mm256_set1_epi32(0x7f800000)), inf_m);
	res = _mm256_blendv_epi8(res, sign, zero_m);
	return _mm256_castsi256_ps(res);
}

#endif /* KERNELS_X86_AVX2_SHIFT_H */
