/* SPDX-License-Identifier: MIT */
#ifndef KERNELS_X86_LUT_AVX2_COMMON_H
#define KERNELS_X86_LUT_AVX2_COMMON_H

/*
 * What the AVX2 kernel files (per-token and batched lookups) share: lut_shift_f32 on eight
 * lanes, ragged-tail loads and the exponent-range test that lets a table build shift by
 * integer adds, so both build bit-identical entries.
 */

#include "kernels/internal.h"

#include <immintrin.h>
#include <stdbool.h>

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

/* Lanes j < n set (for masked loads of a ragged tail). */
AI __m256i tail_mask(uint32_t n)
{
	const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);

	return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

/* Eight lanes from @p with @left lanes valid (masked load only for a ragged tail: AMD
 * cores run vmaskmov far slower than a plain load). */
AI __m256 load8_ps(const float *p, int32_t left, __m256i m)
{
	return left >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}

/*
 * lut_shift_f32(x, e) where every nonzero x is normal and x * 2^e stays normal (the caller
 * checked the exponent ranges): the exponent add alone; zero and subnormal x give +0 (the
 * reference gives a signed zero, which no table entry or chunk maximum can tell apart).
 */
AI __m256 shift_fast_ps(__m256 x, __m256i e23)
{
	__m256i u = _mm256_castps_si256(x);
	__m256i z = _mm256_cmpeq_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7f800000)),
				       _mm256_setzero_si256());

	return _mm256_castsi256_ps(_mm256_andnot_si256(z, _mm256_add_epi32(u, e23)));
}

/*
 * Whether x * 2^e stays normal for every normal x of the span and every term exponent e
 * (zero and subnormal x are masked separately): then pass 1 may use shift_fast_ps.
 */
static inline bool shifts_stay_normal(const struct lut_weight *w, const float *x,
				      const struct lut_span *sp)
{
	const __m256i expm = _mm256_set1_epi32(0xff), zero = _mm256_setzero_si256();
	__m256i lo = _mm256_set1_epi32(255), hi = zero;
	int32_t l[8], h[8], mn = 255, mxe = 0;

	for (uint32_t k = sp->k0; k < sp->k1; k += 8) {
		uint32_t left = sp->k1 - k;
		__m256i u = left >= 8 ? _mm256_loadu_si256((const __m256i *)(x + k))
				      : _mm256_maskload_epi32((const int *)x + k, tail_mask(left));
		__m256i ex = _mm256_and_si256(_mm256_srli_epi32(u, 23), expm);
		__m256i z = _mm256_cmpeq_epi32(ex, zero);

		lo = _mm256_min_epi32(lo, _mm256_or_si256(ex, _mm256_and_si256(z, expm)));
		hi = _mm256_max_epi32(hi, ex);
	}
	_mm256_storeu_si256((__m256i *)l, lo);
	_mm256_storeu_si256((__m256i *)h, hi);
	for (int j = 0; j < 8; j++) {
		mn = l[j] < mn ? l[j] : mn;
		mxe = h[j] > mxe ? h[j] : mxe;
	}
	return mn + w->e_min >= 1 && mxe + w->e_max <= 254;
}

#endif /* KERNELS_X86_LUT_AVX2_COMMON_H */
