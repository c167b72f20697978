// SPDX-License-Identifier: MIT
/*
 * AVX-512 randomized Hadamard transform: rht_ref.c's arithmetic, bit for bit, sixteen floats at
 * a time. Walsh-Hadamard stages h = 1, 2, 4, 8 run inside a register: lane i gets
 * x[i ^ h] + (x[i] with its sign flipped where bit h of i is set), which is a + b in the low
 * lane of each butterfly and a - b in the high one, exactly as the scalar butterfly. Blocks
 * whose Walsh-Hadamard length is below 16 use the scalar pieces. Compiled alone with -mavx512f.
 */
#include "kernels/internal.h"
#include "kernels/rht.h"

#include <immintrin.h>

#define AI  static inline __attribute__((always_inline))
#define NEG ((int)0x80000000u)

AI __m512 flip(__m512 x, __m512i s)
{
	return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), s));
}

static void signs(const uint32_t *sign, float *x, uint32_t n)
{
	uint32_t j = 0;

	for (; j + 16 <= n; j += 16)
		_mm512_storeu_ps(x + j, flip(_mm512_loadu_ps(x + j), _mm512_loadu_si512(sign + j)));
	rht_signs_ref(sign + j, x + j, n - j);
}

static void fwht(float *x, uint32_t p_log2)
{
	const __m512i m1 =
		_mm512_setr_epi32(0, NEG, 0, NEG, 0, NEG, 0, NEG, 0, NEG, 0, NEG, 0, NEG, 0, NEG);
	const __m512i m2 =
		_mm512_setr_epi32(0, 0, NEG, NEG, 0, 0, NEG, NEG, 0, 0, NEG, NEG, 0, 0, NEG, NEG);
	const __m512i m4 =
		_mm512_setr_epi32(0, 0, 0, 0, NEG, NEG, NEG, NEG, 0, 0, 0, 0, NEG, NEG, NEG, NEG);
	const __m512i m8 =
		_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, NEG, NEG, NEG, NEG, NEG, NEG, NEG, NEG);
	uint32_t P = 1u << p_log2;

	if (P < 16) {
		rht_fwht_ref(x, p_log2);
		return;
	}
	for (uint32_t i = 0; i < P; i += 16) {
		__m512 v = _mm512_loadu_ps(x + i);

		v = _mm512_add_ps(_mm512_permute_ps(v, 0xb1), flip(v, m1));
		v = _mm512_add_ps(_mm512_permute_ps(v, 0x4e), flip(v, m2));
		v = _mm512_add_ps(_mm512_shuffle_f32x4(v, v, 0xb1), flip(v, m4));
		v = _mm512_add_ps(_mm512_shuffle_f32x4(v, v, 0x4e), flip(v, m8));
		_mm512_storeu_ps(x + i, v);
	}
	/* stages h and 2h fused (one load and store per element for two stages) */
	for (uint32_t h = 16; h < P; h <<= 2) {
		if (h << 1 == P) {
			for (uint32_t j = 0; j < h; j += 16) {
				__m512 a = _mm512_loadu_ps(x + j), b = _mm512_loadu_ps(x + j + h);

				_mm512_storeu_ps(x + j, _mm512_add_ps(a, b));
				_mm512_storeu_ps(x + j + h, _mm512_sub_ps(a, b));
			}
			break;
		}
		for (uint32_t i = 0; i < P; i += h << 2)
			for (uint32_t j = i; j < i + h; j += 16) {
				float *p0 = x + j, *p1 = p0 + h, *p2 = p1 + h, *p3 = p2 + h;
				__m512 a = _mm512_loadu_ps(p0), b = _mm512_loadu_ps(p1);
				__m512 c = _mm512_loadu_ps(p2), d = _mm512_loadu_ps(p3);
				__m512 ab = _mm512_add_ps(a, b), amb = _mm512_sub_ps(a, b);
				__m512 cd = _mm512_add_ps(c, d), cmd = _mm512_sub_ps(c, d);

				_mm512_storeu_ps(p0, _mm512_add_ps(ab, cd));
				_mm512_storeu_ps(p1, _mm512_add_ps(amb, cmd));
				_mm512_storeu_ps(p2, _mm512_sub_ps(ab, cd));
				_mm512_storeu_ps(p3, _mm512_sub_ps(amb, cmd));
			}
	}
}

void rht_rows_avx512(const struct rht *t, float *x, uint32_t m, bool inverse)
{
	for (uint32_t r = 0; r < m; r++, x += t->n) {
		if (!inverse)
			signs(t->sign, x, t->n);
		for (uint32_t b = 0; b < t->n_blocks; b++) {
			const struct rht_block *bk = &t->blk[b];
			float *xb = x + bk->off, *seg = xb;

			if (inverse && bk->m > 1)
				rht_small_avx2(t->hquad + bk->hqt_off, bk->m, bk->p_log2, xb);
			for (uint32_t i = 0; i < bk->m; i++, seg += 1u << bk->p_log2)
				fwht(seg, bk->p_log2);
			if (!inverse && bk->m > 1)
				rht_small_avx2(t->hquad + bk->hq_off, bk->m, bk->p_log2, xb);
		}
		if (inverse)
			signs(t->sign, x, t->n);
		LUT_OPAQUE(x);
	}
}
