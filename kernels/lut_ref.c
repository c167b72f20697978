// SPDX-License-Identifier: MIT
/*
 * Scalar reference: the test oracle and the fallback. Every SIMD path must give exactly the
 * same bits, so the order of float operations here is the contract (see internal.h).
 * Multiplication-free like the SIMD paths (mk/nomul.sh disassembles this file too): indices
 * advance by additions only.
 */
#include "kernels/internal.h"

#include <math.h>

/* x * alpha as the sum over term slots of shift(x, e) ^ sign (+0 for an empty slot), slot order. */
static float apply_alpha(float x, const uint16_t *code, int32_t e_bias, uint32_t n_terms,
			 uint32_t stride)
{
	float v = 0.0f;

	for (uint32_t t = 0; t < n_terms; t++) {
		float term = 0.0f;

		if (*code)
			term = lut_u2f(lut_f2u(lut_shift_f32(x, lut_term_e(*code, e_bias))) ^
				       lut_term_sign(*code));
		v = v + term;
		code += stride;
	}
	return v;
}

static float abs_f32(float x)
{
	return lut_u2f(lut_f2u(x) & 0x7fffffffu);
}

/*
 * Entries of one group: T[idx] = P[idx & 3] + Q[idx >> 2], bit j of idx set = +x_j, as
 * 16 low then 16 high 7-bit digits of (14-bit value + LUT_ENTRY_BIAS).
 */
static void group_table(const float *xg, int32_t s, uint8_t *dst)
{
	float a = lut_shift_f32(xg[0], -s), b = lut_shift_f32(xg[1], -s);
	float c = lut_shift_f32(xg[2], -s), d = lut_shift_f32(xg[3], -s);
	float p[4] = { -a + -b, a + -b, -a + b, a + b };
	float q[4] = { -c + -d, c + -d, -c + d, c + d };

	for (uint32_t idx = 0; idx < 16; idx++) {
		long v = lrintf(p[idx & 3] + q[idx >> 2]);
		uint32_t u;

		v = v > LUT_ENTRY_MAX ? LUT_ENTRY_MAX : v < -LUT_ENTRY_MAX ? -LUT_ENTRY_MAX : v;
		u = (uint32_t)(v + LUT_ENTRY_BIAS);
		dst[idx] = (uint8_t)(u & LUT_DIGIT_MASK);
		dst[16 + idx] = (uint8_t)(u >> LUT_DIGIT_BITS);
	}
}

void lut_tables_ref(const struct lut_weight *w, const float *x, const struct lut_span *sp,
		    float *xs, float *mx, struct lut_tok *tok)
{
	uint32_t kp = w->n_pairs * LUT_PAIR_COLS, tstride = w->n_col_blocks;
	uint32_t term_step = w->term_step, kend = sp->kend;
	const uint16_t *code = w->terms.code;
	float *row = xs;
	uint8_t *tab = tok->tab;

	for (uint32_t c = sp->c0; c < sp->c1; c++)
		mx[c] = 0.0f;
	/* Pass 1: shifted activations per (rowset, plane), zero-padded, and chunk maxima. */
	for (uint32_t r = 0; r < w->n_rowsets; r++) {
		for (uint32_t i = 0; i < w->bits; i++) {
			uint32_t k = sp->k0, cb = sp->cb0, in_cb = sp->in_cb0;

			for (; k < sp->k1; k++) {
				row[k] = apply_alpha(x[k], code + cb, w->terms.e_bias, w->n_terms,
						     tstride);
				if (++in_cb == w->col_block) {
					in_cb = 0;
					cb++;
				}
			}
			for (; k < kend; k++)
				row[k] = 0.0f;
			for (uint32_t g = sp->k0, c = sp->c0, in_c = 0; g < kend; g += LUT_GROUP) {
				float gm = (abs_f32(row[g]) + abs_f32(row[g + 1])) +
					   (abs_f32(row[g + 2]) + abs_f32(row[g + 3]));

				mx[c] = gm > mx[c] ? gm : mx[c];
				in_c += LUT_GROUP;
				if (in_c == LUT_CHUNK_PAIRS * LUT_PAIR_COLS) {
					in_c = 0;
					c++;
				}
			}
			row += kp;
			LUT_OPAQUE(row);
			code += term_step;
			LUT_OPAQUE(code);
		}
	}
	/* Pass 2: one power-of-two scale per chunk, shared by all rowsets and planes. */
	for (uint32_t c = sp->c0; c < sp->c1; c++)
		tok->cexp[c] = lut_chunk_exp(mx[c]);
	/* Pass 3: int16 tables in [rowset][pair][plane][2 groups] order. */
	for (uint32_t r = 0; r < w->n_rowsets; r++, tab += sp->rowset_tab) {
		uint8_t *dst = tab + sp->tab0;

		for (uint32_t p = sp->p0, c = sp->c0, in_c = 0, col = sp->k0; p < sp->p1;
		     p++, col += LUT_PAIR_COLS) {
			int32_t sc = tok->cexp[c];
			const float *pl = xs;

			for (uint32_t i = 0; i < w->bits; i++, pl += kp) {
				group_table(pl + col, sc, dst);
				group_table(pl + col + LUT_GROUP, sc, dst + 32);
				dst += 64;
				LUT_OPAQUE(dst);
			}
			if (++in_c == LUT_CHUNK_PAIRS) {
				in_c = 0;
				c++;
			}
		}
		for (uint32_t i = 0; i < w->bits; i++) {
			xs += kp; /* next rowset's planes */
			LUT_OPAQUE(xs);
		}
	}
}

/* Output rows of halves [hs, he) of one tile for one token, from float sums in tile-row order. */
static void store_rows(const struct lut_weight *w, uint32_t t, uint32_t hs, uint32_t he,
		       const float *acc, float *y)
{
	const struct lut_lane *lane = w->lanes + (size_t)t * 4 + hs * 2;

	acc += hs * 2 * LUT_LANE_ROWS;
	for (uint32_t l = hs * 2; l < he * 2; l++, lane++, acc += LUT_LANE_ROWS)
		for (uint32_t j = 0; j < lane->n_rows; j++)
			y[lane->row0 + j] = acc[j];
}

/*
 * Per row and chunk: the exact integer sum of the looked-up entries (at most 64 lookups of
 * |v| <= 32767), converted to float (exact below 2^24), scaled by the chunk's 2^cexp (an
 * exponent add) and added to the row's float sum in chunk order.
 */
void lut_tiles_ref(const struct lut_weight *w, uint32_t h0, uint32_t h1, uint32_t m,
		   const struct lut_tok *toks, float *y, float *acc)
{
	size_t tile_bytes = w->tile_bytes;
	const uint8_t *tile;
	uint32_t t0, t1;

	lut_half_span(h0, h1, &t0, &t1);

	tile = lut_tile_planes(w, t0);
	for (uint32_t t = t0; t < t1; t++, tile += tile_bytes) {
		const struct lut_lane *lanes = w->lanes + (size_t)t * 4;
		float *a = acc;
		float *yj = y;
		uint32_t hs = lut_half_lo(t, h0), he = lut_half_hi(t, h1);

		for (uint32_t r = hs * (LUT_TILE_ROWS / 2); r < he * (LUT_TILE_ROWS / 2); r++) {
			a = acc;
			for (uint32_t j = 0; j < m; j++, a += LUT_TILE_ROWS) {
				const uint8_t *wp = tile + r;
				const uint8_t *tp;
				int32_t sum = 0, n_lookups = 0;

				a[r] = 0.0f;
				tp = toks[j].tab + lanes[r / LUT_LANE_ROWS].tab_off;
				for (uint32_t p = 0, c = 0, in_c = 0; p < w->n_pairs; p++) {
					for (uint32_t i = 0; i < w->bits; i++) {
						uint32_t lo = *wp & 15, hi = *wp >> 4;

						sum += tp[lo] + (tp[16 + lo] << LUT_DIGIT_BITS);
						sum += tp[32 + hi] +
						       (tp[48 + hi] << LUT_DIGIT_BITS);
						n_lookups += 2;
						wp += LUT_TILE_ROWS;
						tp += 64;
					}
					if (++in_c == LUT_CHUNK_PAIRS || p + 1 == w->n_pairs) {
						sum -= n_lookups << LUT_BIAS_SHIFT;
						a[r] = a[r] +
						       lut_shift_f32((float)sum, toks[j].cexp[c]);
						sum = 0;
						n_lookups = 0;
						in_c = 0;
						c++;
					}
				}
			}
		}
		a = acc;
		for (uint32_t j = 0; j < m; j++, a += LUT_TILE_ROWS, yj += w->n_rows)
			store_rows(w, t, hs, he, a, yj);
	}
}
