// SPDX-License-Identifier: MIT
/*
 * Scalar randomized Hadamard transform: the reference every SIMD path matches bit for bit.
 * Adds, subtracts and sign-bit XORs only (kernels/nomul.sh). Each output is computed with
 * the same operands and the same order of additions on every path:
 *   - Walsh-Hadamard stages h = 1, 2, 4, ...: (a, b) -> (a + b, a - b);
 *   - small H: out_i = (((x_0 ^ s_i0) + (x_1 ^ s_i1)) + (x_2 ^ s_i2)) + ...
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

void rht_small_ref(const uint32_t *h, uint32_t m, uint32_t p_log2, float *x, uint32_t j0,
		   uint32_t j1)
{
	float v[RHT_MAX_M];

	for (uint32_t j = j0; j < j1; j++) {
		const uint32_t *hr = h;
		float *col = x + j;

		for (uint32_t l = 0; l < m; l++, col += 1u << p_log2)
			v[l] = *col;
		col = x + j;
		for (uint32_t i = 0; i < m; i++, col += 1u << p_log2) {
			float acc = flip(v[0], hr[0]);

			for (uint32_t l = 1; l < m; l++)
				acc += flip(v[l], hr[l]);
			*col = acc;
			hr += m;
			LUT_OPAQUE(hr);
		}
	}
}

static void block_ref(const struct rht *t, const struct rht_block *b, float *x, bool inverse)
{
	const uint32_t *h = t->hmask + b->h_off;
	uint32_t P = 1u << b->p_log2;
	float *seg;

	if (inverse && b->m > 1)
		rht_small_ref(t->hmask + b->ht_off, b->m, b->p_log2, x, 0, P);
	seg = x;
	for (uint32_t i = 0; i < b->m; i++, seg += P)
		rht_fwht_ref(seg, b->p_log2);
	if (!inverse && b->m > 1)
		rht_small_ref(h, b->m, b->p_log2, x, 0, P);
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
