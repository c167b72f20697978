// SPDX-License-Identifier: MIT
/* Packed layout: lanes, tiles, sign planes and alpha terms (see kernels/lut.h). */
#include "kernels/internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t div_up(uint32_t a, uint32_t b)
{
	return a / b + (a % b != 0);
}

/* Shape, lanes and sizes; allocates lanes. row_block/col_block as in struct qweight. */
static int layout_init(struct lut_weight *w, uint32_t n_rows, uint32_t n_cols, uint32_t bits,
		       enum qw_layout layout, uint32_t row_block, uint32_t col_block)
{
	uint64_t n_lanes = 0, tab, planes;
	uint32_t l = 0;

	*w = (struct lut_weight){ 0 };
	if (!n_rows || !n_cols || bits < 1 || bits > QW_MAX_BITS || layout >= QW_LAYOUT_COUNT ||
	    !row_block || !col_block)
		return -EINVAL;
	/* row-wise groups (bcq's LUT-GEMM layout) would need per-row scales after lookup */
	if (layout == QW_LAYOUT_ROW || (col_block != 1 && col_block % LUT_PAIR_COLS))
		return -EOPNOTSUPP;
	w->n_rows = n_rows;
	w->n_cols = n_cols;
	w->bits = bits;
	w->layout = layout;
	w->rowset_rows = row_block;
	w->n_rowsets = div_up(n_rows, row_block);
	w->col_block = col_block;
	w->n_col_blocks = div_up(n_cols, col_block);
	w->n_pairs = div_up(n_cols, LUT_PAIR_COLS);
	w->n_chunks = div_up(w->n_pairs, LUT_CHUNK_PAIRS);
	for (uint32_t r = 0; r < w->n_rowsets; r++) {
		uint32_t rows = r + 1 < w->n_rowsets ? row_block : n_rows - r * row_block;

		n_lanes += div_up(rows, LUT_LANE_ROWS);
	}
	n_lanes = (n_lanes + 3) & ~3ull;
	tab = (uint64_t)w->n_rowsets * w->n_pairs * bits * 64;
	planes = n_lanes * LUT_LANE_ROWS * w->n_pairs * bits;
	if (n_lanes > UINT32_MAX || tab > SIZE_MAX / 64 || planes > SIZE_MAX / 2)
		return -EOVERFLOW;
	w->n_lanes = (uint32_t)n_lanes;
	w->n_tiles = w->n_lanes / 4;
	w->tab_bytes = tab;
	w->tile_bytes = (uint64_t)w->n_pairs * bits * LUT_TILE_ROWS;
	w->plane_bytes = planes;
	w->lanes = calloc(n_lanes, sizeof(*w->lanes));
	if (!w->lanes)
		return -ENOMEM;
	for (uint32_t r = 0; r < w->n_rowsets; r++) {
		uint32_t row0 = r * row_block;
		uint32_t end = r + 1 < w->n_rowsets ? row0 + row_block : n_rows;

		for (uint32_t row = row0; row < end; row += LUT_LANE_ROWS, l++) {
			w->lanes[l].row0 = row;
			w->lanes[l].n_rows =
				(uint16_t)(end - row < LUT_LANE_ROWS ? end - row : LUT_LANE_ROWS);
			w->lanes[l].rowset = (uint16_t)r;
			w->lanes[l].tab_off = (uint64_t)r * w->n_pairs * bits * 64;
		}
	}
	return 0;
}

/*
 * Non-adjacent form of @a: the fewest signed powers of two summing exactly to it, largest
 * first. Returns the count, or -1 for a non-finite or subnormal alpha.
 */
static int naf(float a, int32_t *e, int32_t *neg)
{
	uint32_t u = lut_f2u(a), ex = (u >> 23) & 0xff;
	int64_t m;
	int32_t e0, n = 0, le[32], ln[32];

	if ((u & 0x7fffffff) == 0)
		return 0;
	if (ex == 0 || ex == 255)
		return -1;
	m = (int64_t)((u & 0x7fffff) | 0x800000);
	e0 = (int32_t)ex - 127 - 23;
	for (int32_t pos = 0; m; pos++, m >>= 1) {
		if (m & 1) {
			int64_t d = 2 - (m & 3); /* +1 or -1 */

			m -= d;
			le[n] = e0 + pos;
			ln[n] = (d < 0) != ((u >> 31) != 0);
			n++;
		}
	}
	for (int32_t i = 0; i < n; i++) {
		e[i] = le[n - 1 - i];
		neg[i] = ln[n - 1 - i];
	}
	return n;
}

/* Fill w->terms from alpha[bits][n_rowsets][n_col_blocks]. */
static int terms_init(struct lut_weight *w, const float *alpha)
{
	uint64_t n_alpha = (uint64_t)w->bits * w->n_rowsets * w->n_col_blocks;
	uint32_t n_terms = 1;
	int32_t e[32], neg[32];
	size_t n;

	w->e_min = INT32_MAX;
	w->e_max = INT32_MIN;
	for (uint64_t a = 0; a < n_alpha; a++) {
		int c = naf(alpha[a], e, neg);

		if (c < 0 || c > LUT_MAX_TERMS)
			return -EOPNOTSUPP;
		n_terms = (uint32_t)c > n_terms ? (uint32_t)c : n_terms;
		for (int t = 0; t < c; t++) {
			w->e_min = e[t] < w->e_min ? e[t] : w->e_min;
			w->e_max = e[t] > w->e_max ? e[t] : w->e_max;
		}
	}
	if (w->e_min > w->e_max)
		w->e_min = w->e_max = 0;
	/* the biased exponent needs 8 bits and 0 marks an empty slot */
	if ((int64_t)w->e_max - w->e_min > 254)
		return -EOPNOTSUPP;
	w->terms.e_bias = 1 - w->e_min;
	w->n_terms = n_terms;
	w->term_step = n_terms * w->n_col_blocks;
	n = (size_t)n_alpha * n_terms;
	w->terms.code = calloc(n + 8, sizeof(uint16_t)); /* SIMD loads read 8 codes at a time */
	if (!w->terms.code)
		return -ENOMEM;
	/* [n_rowsets][bits][n_terms][n_col_blocks]: the order the table builders walk */
	for (uint32_t i = 0; i < w->bits; i++) {
		for (uint32_t r = 0; r < w->n_rowsets; r++) {
			const float *al = alpha + ((size_t)i * w->n_rowsets + r) * w->n_col_blocks;
			size_t base = ((size_t)r * w->bits + i) * n_terms * w->n_col_blocks;

			for (uint32_t cb = 0; cb < w->n_col_blocks; cb++) {
				int c = naf(al[cb], e, neg);

				for (int t = 0; t < c; t++) {
					size_t at = base + (size_t)t * w->n_col_blocks + cb;

					w->terms.code[at] =
						(uint16_t)((neg[t] ? 0x8000 : 0) |
							   ((e[t] + w->terms.e_bias) << 7));
				}
			}
		}
	}
	return 0;
}

uint64_t lut_plane_bytes(uint32_t n_rows, uint32_t n_cols, uint32_t bits, enum qw_layout layout)
{
	struct lut_weight w;
	uint64_t n;
	uint32_t rb = layout == QW_LAYOUT_BLOCK ? (n_rows + 7) / 8 : n_rows;

	if (layout_init(&w, n_rows, n_cols, bits, layout, rb, layout == QW_LAYOUT_BLOCK ? 8 : 1))
		n = 0;
	else
		n = w.plane_bytes;
	lut_weight_done(&w);
	return n;
}

int lut_pack(const struct qweight *q, struct lut_weight *w)
{
	uint32_t row_bytes;
	int ret;

	if (!q || !w || !q->signs || !q->alpha)
		return -EINVAL;
	ret = layout_init(w, q->n_rows, q->n_cols, q->bits, q->layout, q->row_block, q->col_block);
	if (ret < 0)
		goto out_done;
	ret = terms_init(w, q->alpha);
	if (ret < 0)
		goto out_done;
	w->planes = aligned_alloc(64, (w->plane_bytes + 63) & ~(uint64_t)63);
	if (!w->planes) {
		ret = -ENOMEM;
		goto out_done;
	}
	memset(w->planes, 0, w->plane_bytes);
	row_bytes = qweight_row_bytes(q);
	for (uint32_t l = 0; l < w->n_lanes; l++) {
		const struct lut_lane *lane = &w->lanes[l];
		uint8_t *tile =
			w->planes + (uint64_t)(l / 4) * w->n_pairs * q->bits * LUT_TILE_ROWS;

		for (uint32_t j = 0; j < lane->n_rows; j++) {
			uint32_t tr = (l % 4) * LUT_LANE_ROWS + j;

			for (uint32_t i = 0; i < q->bits; i++) {
				const uint8_t *src =
					q->signs +
					((uint64_t)i * q->n_rows + lane->row0 + j) * row_bytes;

				/* pair p's byte is the qweight sign byte p: same bit order */
				for (uint32_t p = 0; p < w->n_pairs; p++) {
					uint8_t b = src[p];

					if (p + 1 == w->n_pairs && q->n_cols % 8)
						b &= (uint8_t)((1u << (q->n_cols % 8)) - 1);
					tile[((uint64_t)p * q->bits + i) * LUT_TILE_ROWS + tr] = b;
				}
			}
		}
	}
	return 0;

out_done:
	lut_weight_done(w);
	return ret;
}

int lut_wrap(uint32_t n_rows, uint32_t n_cols, uint32_t bits, enum qw_layout layout,
	     const uint8_t *planes, const float *alpha, struct lut_weight *w)
{
	uint32_t rb = layout == QW_LAYOUT_BLOCK ? (n_rows + 7) / 8 : n_rows;
	int ret;

	if (!planes || !alpha || !w)
		return -EINVAL;
	ret = layout_init(w, n_rows, n_cols, bits, layout, rb ? rb : 1,
			  layout == QW_LAYOUT_BLOCK ? 8 : 1);
	if (ret < 0)
		goto out_done;
	ret = terms_init(w, alpha);
	if (ret < 0)
		goto out_done;
	w->planes = (uint8_t *)planes;
	w->planes_borrowed = true;
	return 0;

out_done:
	lut_weight_done(w);
	return ret;
}

int lut_unpack(const struct lut_weight *w, struct qweight *q)
{
	uint32_t row_bytes;
	int ret;

	if (!w || !q || !w->planes)
		return -EINVAL;
	ret = qweight_init(q, w->n_rows, w->n_cols, w->bits, w->layout, LUT_MAX_TERMS);
	if (ret < 0)
		return ret;
	if (q->row_block != w->rowset_rows || q->col_block != w->col_block) {
		qweight_done(q);
		return -EINVAL;
	}
	row_bytes = qweight_row_bytes(q);
	for (uint32_t l = 0; l < w->n_lanes; l++) {
		const struct lut_lane *lane = &w->lanes[l];
		const uint8_t *tile =
			w->planes + (uint64_t)(l / 4) * w->n_pairs * w->bits * LUT_TILE_ROWS;

		for (uint32_t j = 0; j < lane->n_rows; j++) {
			uint32_t tr = (l % 4) * LUT_LANE_ROWS + j;

			for (uint32_t i = 0; i < w->bits; i++) {
				uint8_t *dst = q->signs + ((uint64_t)i * q->n_rows + lane->row0 +
							   j) * row_bytes;

				for (uint32_t p = 0; p < w->n_pairs; p++)
					dst[p] = tile[((uint64_t)p * w->bits + i) * LUT_TILE_ROWS +
						      tr];
			}
		}
	}
	for (uint32_t i = 0; i < w->bits; i++) {
		for (uint32_t r = 0; r < w->n_rowsets; r++) {
			size_t base = ((size_t)r * w->bits + i) * w->n_terms * w->n_col_blocks;
			float *al = q->alpha + ((size_t)i * w->n_rowsets + r) * w->n_col_blocks;

			for (uint32_t cb = 0; cb < w->n_col_blocks; cb++) {
				float a = 0;

				for (uint32_t t = 0; t < w->n_terms; t++) {
					size_t at = base + (size_t)t * w->n_col_blocks + cb;

					uint16_t code = w->terms.code[at];

					if (code)
						a += lut_u2f(lut_f2u(lut_shift_f32(
								     1.0f,
								     lut_term_e(code,
										w->terms.e_bias))) ^
							     lut_term_sign(code));
				}
				al[cb] = a;
			}
		}
	}
	return 0;
}

void lut_weight_done(struct lut_weight *w)
{
	if (!w)
		return;
	if (!w->planes_borrowed)
		free(w->planes);
	free(w->lanes);
	free(w->terms.code);
	*w = (struct lut_weight){ 0 };
}
