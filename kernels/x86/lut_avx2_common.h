/* SPDX-License-Identifier: MIT */
#ifndef KERNELS_X86_LUT_AVX2_COMMON_H
#define KERNELS_X86_LUT_AVX2_COMMON_H

/*
 * What the AVX2 kernel files (per-token and batched lookups) share: lut_shift_f32 on eight
 * lanes and the table build's pieces, so both build bit-identical entries.
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

AI float hmax_ps(__m256 v)
{
	__m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	m = _mm_max_ps(m, _mm_movehl_ps(m, m));
	m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
	return _mm_cvtss_f32(m);
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

/* Eight term codes as (code << 16) (struct lut_terms), from @p (8 readable codes). */
AI __m256i load_codes(const uint16_t *p)
{
	return _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16);
}

/*
 * Pass 1 for one (rowset, plane): alpha-shifted activations and chunk maxima. @fast: the
 * exponent ranges of x and of the terms keep every shift normal (see shift_fast_ps), so a
 * term is one integer add of its code to x's bits (exponent and sign together).
 */
AI void shift_row(const struct lut_weight *w, const float *x, const struct lut_span *sp,
		  const uint16_t *code, float *row, float *mx, bool fast)
{
	const __m256i abs_m = _mm256_set1_epi32(0x7fffffff), zero = _mm256_setzero_si256();
	const __m256i bias23 = _mm256_set1_epi32((int32_t)((uint32_t)w->terms.e_bias << 23));
	uint32_t ts = w->n_col_blocks, in_c = 0, c = sp->c0, cb = sp->cb0, in_cb = sp->in_cb0;
	uint32_t kend = sp->kend;
	__m256 vmax = _mm256_setzero_ps(), prev = vmax;
	bool pending = false; /* prev holds the |v| of an even step, awaiting its partner */

	for (uint32_t k = sp->k0; k < kend; k += 8) {
		int32_t left = (int32_t)(w->n_cols - k); /* <= 0 in the zero padding */
		__m256i m = tail_mask((uint32_t)left);
		__m256 xv = load8_ps(x + k, left, m), v = _mm256_setzero_ps(), a, h;
		__m256i xadj = _mm256_sub_epi32(_mm256_castps_si256(xv), bias23);
		const uint16_t *ct = code;

		for (uint32_t t = 0; t < w->n_terms; t++, ct += ts) {
			__m256i cv = w->col_block == 1
					     ? load_codes(ct + k)
					     : _mm256_set1_epi32((int32_t)((uint32_t)ct[cb] << 16));
			__m256i empty = _mm256_cmpeq_epi32(cv, zero);
			__m256i s;

			if (fast) {
				s = _mm256_add_epi32(xadj, cv);
			} else {
				__m256i ev =
					_mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(cv, 23),
									  _mm256_set1_epi32(0xff)),
							 _mm256_set1_epi32(w->terms.e_bias));

				s = _mm256_xor_si256(
					_mm256_castps_si256(shift_ps(xv, ev)),
					_mm256_and_si256(cv, _mm256_set1_epi32((int)0x80000000u)));
			}
			v = _mm256_add_ps(v, _mm256_castsi256_ps(_mm256_andnot_si256(empty, s)));
		}
		if (fast) /* zero and subnormal x: +0 (their terms were garbage) */
			v = _mm256_andnot_ps(
				_mm256_castsi256_ps(_mm256_cmpeq_epi32(
					_mm256_and_si256(_mm256_castps_si256(xv),
							 _mm256_set1_epi32(0x7f800000)),
					_mm256_setzero_si256())),
				v);
		_mm256_storeu_ps(row + k, v);
		/* group sums (|a| + |b|) + (|c| + |d|) of 16 columns per two hadds */
		a = _mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(v), abs_m));
		if (pending) {
			h = _mm256_hadd_ps(prev, a);
			vmax = _mm256_max_ps(vmax, _mm256_hadd_ps(h, h));
			pending = false;
		} else {
			prev = a;
			pending = true;
		}
		if (w->col_block != 1) {
			in_cb += 8;
			if (in_cb == w->col_block) {
				in_cb = 0;
				cb++;
			}
		}
		if (++in_c == LUT_CHUNK_PAIRS || left <= 8) {
			float hm;

			if (pending) {
				h = _mm256_hadd_ps(prev, _mm256_setzero_ps());
				vmax = _mm256_max_ps(vmax, _mm256_hadd_ps(h, h));
				pending = false;
			}
			hm = hmax_ps(vmax);

			mx[c] = hm > mx[c] ? hm : mx[c];
			vmax = _mm256_setzero_ps();
			in_c = 0;
			c++;
		}
	}
}

/*
 * Both groups of a pair at once, one per 128-bit lane (columns 8p..8p+3 in the low lane,
 * 8p+4..8p+7 in the high one, as they load). Vector t holds entries 4t..4t+3 of each group:
 * lane j is entry idx = 4t + j, so its a and b signs (idx bits 0, 1) vary across the lanes
 * and its c and d signs (bits 2, 3) are fixed by t. The float operations are the
 * reference's, in its order: p = (+-a) + (+-b), q = (+-c) + (+-d), entry = p + q.
 */
AI void pair_entries(__m256 v, __m256i e[4])
{
	const __m256 sgn = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
	const __m256 ma =
		_mm256_castsi256_ps(_mm256_setr_epi32((int)0x80000000u, 0, (int)0x80000000u, 0,
						      (int)0x80000000u, 0, (int)0x80000000u, 0));
	const __m256 mb =
		_mm256_castsi256_ps(_mm256_setr_epi32((int)0x80000000u, (int)0x80000000u, 0, 0,
						      (int)0x80000000u, (int)0x80000000u, 0, 0));
	__m256 a = _mm256_permute_ps(v, 0x00), b = _mm256_permute_ps(v, 0x55);
	__m256 c = _mm256_permute_ps(v, 0xaa), d = _mm256_permute_ps(v, 0xff);
	__m256 nc = _mm256_xor_ps(c, sgn), nd = _mm256_xor_ps(d, sgn);
	__m256 p = _mm256_add_ps(_mm256_xor_ps(a, ma), _mm256_xor_ps(b, mb));

	e[0] = _mm256_cvtps_epi32(_mm256_add_ps(p, _mm256_add_ps(nc, nd)));
	e[1] = _mm256_cvtps_epi32(_mm256_add_ps(p, _mm256_add_ps(c, nd)));
	e[2] = _mm256_cvtps_epi32(_mm256_add_ps(p, _mm256_add_ps(nc, d)));
	e[3] = _mm256_cvtps_epi32(_mm256_add_ps(p, _mm256_add_ps(c, d)));
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

/*
 * Pass 1 of a token's table build over span @sp, every rowset and plane: alpha-shifted
 * activations into @xs (rows n_pairs * 8 floats apart) and the chunk maxima into @mx.
 */
AI void shift_rows(const struct lut_weight *w, const float *x, const struct lut_span *sp, float *xs,
		   float *mx)
{
	uint32_t kp = w->n_pairs * LUT_PAIR_COLS, term_step = w->term_step;
	const uint16_t *code = w->terms.code;
	bool fast = shifts_stay_normal(w, x, sp);

	for (uint32_t c = sp->c0; c < sp->c1; c++)
		mx[c] = 0.0f;
	for (uint32_t r = 0; r < w->n_rowsets; r++) {
		for (uint32_t i = 0; i < w->bits; i++) {
			if (fast)
				shift_row(w, x, sp, code, xs, mx, true);
			else
				shift_row(w, x, sp, code, xs, mx, false);
			xs += kp;
			LUT_OPAQUE(xs);
			code += term_step;
			LUT_OPAQUE(code);
		}
	}
}

#endif /* KERNELS_X86_LUT_AVX2_COMMON_H */
