// SPDX-License-Identifier: MIT
/*
 * Scalar randomized Hadamard transform: the reference every SIMD path matches bit for bit.
 * Adds, subtracts and sign-bit XORs only (kernels/nomul.sh). Each output is computed with
 * the same operands and the same order of additions on every path:
 *   - Walsh-Hadamard stages h = 1, 2, 4, ...: (a, b) -> (a + b, a - b);
 *   - small H, four columns at a time: with v_l = x_l ^ s_il (the sign of H's entry),
 *     t_q = (v_4q + v_4q+1) + (v_4q+2 + v_4q+3) and out_i = ((t_0 + t_1) + t_2) + ...
 *     (the SIMD paths build the 16 sign patterns of each quad once per column and pick
 *     one per output: m^2 / 4 + 2m adds per column instead of m (m - 1), a third for
 *     m = 36; -(a + b) is (-a) + (-b) exactly, so patterns and their complements agree
 *     with this order);
 * Forward: signs, then per block the Walsh-Hadamard of each of its m segments, then small H
 * across segments. Inverse: small Hᵀ, Walsh-Hadamard, signs.
 */
#include "kernels/internal.h"
#include "kernels/rht.h"

static float flip(float x, uint32_t s)
{
	return lut_u2f(lut_f2u(x) ^ s);
}

void rht_signs_ref(const uint32_t *sign, float *x, uint32_t n)
{
	for (uint32_t j = 0; j < n; j++)
		x[j] = flip(x[j], sign[j]);
}

void rht_fwht_ref(float *x, uint32_t p_log2)
{
	uint32_t P = 1u << p_log2;

	for (uint32_t h = 1; h < P; h <<= 1)
		for (uint32_t i = 0; i < P; i += h << 1)
			for (uint32_t j = i; j < i + h; j++) {
				float a = x[j], b = x[j + h];

				x[j] = a + b;
				x[j + h] = a - b;
			}
}

/* t_q of the top comment for quad @v and its sign pattern @code (bit k set: v[k] positive). */
static float quad_sum(const float *v, uint32_t code)
{
	float p = flip(v[0], code & 1 ? 0 : 0x80000000u) + flip(v[1], code & 2 ? 0 : 0x80000000u);
	float q = flip(v[2], code & 4 ? 0 : 0x80000000u) + flip(v[3], code & 8 ? 0 : 0x80000000u);

	return p + q;
}

void rht_small_ref(const uint8_t *hq, uint32_t m, uint32_t p_log2, float *x, uint32_t j0,
		   uint32_t j1)
{
	uint32_t nq = m >> 2;
	float v[RHT_MAX_M];

	for (uint32_t j = j0; j < j1; j++) {
		const uint8_t *hr = hq;
		float *col = x + j;

		for (uint32_t l = 0; l < m; l++, col += 1u << p_log2)
			v[l] = *col;
		col = x + j;
		for (uint32_t i = 0; i < m; i++, col += 1u << p_log2) {
			float acc = quad_sum(v, hr[0]);

			for (uint32_t q = 1; q < nq; q++)
				acc += quad_sum(v + 4 * q, hr[q]);
			*col = acc;
			hr += nq;
			LUT_OPAQUE(hr);
		}
	}
}

static void block_ref(const struct rht *t, const struct rht_block *b, float *x, bool inverse)
{
	uint32_t P = 1u << b->p_log2;
	float *seg;

	if (inverse && b->m > 1)
		rht_small_ref(t->hquad + b->hqt_off, b->m, b->p_log2, x, 0, P);
	seg = x;
	for (uint32_t i = 0; i < b->m; i++, seg += P)
		rht_fwht_ref(seg, b->p_log2);
	if (!inverse && b->m > 1)
		rht_small_ref(t->hquad + b->hq_off, b->m, b->p_log2, x, 0, P);
}

void rht_rows_ref(const struct rht *t, float *x, uint32_t m, bool inverse)
{
	for (uint32_t r = 0; r < m; r++, x += t->n) {
		if (!inverse)
			rht_signs_ref(t->sign, x, t->n);
		for (uint32_t b = 0; b < t->n_blocks; b++)
			block_ref(t, &t->blk[b], x + t->blk[b].off, inverse);
		if (inverse)
			rht_signs_ref(t->sign, x, t->n);
		LUT_OPAQUE(x);
	}
}
