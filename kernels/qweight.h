/* SPDX-License-Identifier: MIT */
#ifndef KERNELS_QWEIGHT_H
#define KERNELS_QWEIGHT_H

#include <stdint.h>

/*
 * A reparameterized weight in neutral, unpacked form: the hand-off from reparam/ (which makes
 * it) to kernels/ (which packs it for its own layout) and to the GGUF writer.
 *
 *   W[n][k] = sum_{i < bits} alpha[i][n / row_block][k / col_block] * B_i[n][k],  B_i = +-1
 *
 * Layouts:
 *   QW_LAYOUT_COL   ("Acc.", column-wise): row_block = n_rows, col_block = 1; one alpha per
 *                   bit plane and input column, applied to the activation before lookup.
 *   QW_LAYOUT_BLOCK ("Lat.", block-wise): col_block = 8, row_block = ceil(n_rows / 8); applied
 *                   to the looked-up partial sums.
 *   QW_LAYOUT_ROW   (LUT-GEMM's BCQ, row-wise groups): row_block = 1, col_block =
 *                   QW_ROW_GROUP; the bcq baseline's layout. No shift-add kernel takes it
 *                   (a row's partial sums would need one scale per group and plane).
 * With apot > 0 every alpha is exactly a sum of at most `apot` signed powers of two (so the
 * kernels can apply it with exponent adds); apot == 0 means real-valued alpha (baselines only).
 */

enum qw_layout {
	QW_LAYOUT_COL,
	QW_LAYOUT_BLOCK,
	QW_LAYOUT_ROW,
	QW_LAYOUT_COUNT,
};

#define QW_ROW_GROUP 128 /* columns per alpha in QW_LAYOUT_ROW (LUT-GEMM's usual group) */

#define QW_MAX_BITS 4

struct qweight {
	uint32_t n_rows; /* N: outputs */
	uint32_t n_cols; /* K: inputs */
	uint32_t bits;	 /* q: 1..QW_MAX_BITS bit planes */
	enum qw_layout layout;
	uint32_t row_block; /* rows sharing one alpha */
	uint32_t col_block; /* columns sharing one alpha */
	uint32_t apot;	    /* power-of-two terms per alpha; 0 = unconstrained */
	/*
	 * [bits][n_rows][row_bytes] with row_bytes = ceil(n_cols / 8): bit (k % 8) of byte
	 * k / 8 is 1 for B = +1 and 0 for B = -1. Padding bits past n_cols are 0.
	 */
	uint8_t *signs;
	/* [bits][n_row_blocks][n_col_blocks], ceil-divided. */
	float *alpha;
};

/* Bytes per bit-plane row. */
static inline uint32_t qweight_row_bytes(const struct qweight *w)
{
	return (w->n_cols + 7) / 8;
}

static inline uint32_t qweight_n_row_blocks(const struct qweight *w)
{
	return (w->n_rows + w->row_block - 1) / w->row_block;
}

static inline uint32_t qweight_n_col_blocks(const struct qweight *w)
{
	return (w->n_cols + w->col_block - 1) / w->col_block;
}

/*
 * Allocate signs (zeroed) and alpha for the given shape and layout; fills the block sizes.
 * Returns 0, -EINVAL (bad bits/layout/shape) or -ENOMEM. Free with qweight_done().
 */
int qweight_init(struct qweight *w, uint32_t n_rows, uint32_t n_cols, uint32_t bits,
		 enum qw_layout layout, uint32_t apot);
/* Free the arrays; safe on a zeroed or half-initialized struct. */
void qweight_done(struct qweight *w);

/* B_i[n][k] as +1 or -1. */
static inline int qweight_sign(const struct qweight *w, uint32_t i, uint32_t n, uint32_t k)
{
	const uint8_t *row = w->signs + ((uint64_t)i * w->n_rows + n) * qweight_row_bytes(w);

	return (row[k >> 3] >> (k & 7)) & 1 ? 1 : -1;
}

static inline void qweight_set_sign(struct qweight *w, uint32_t i, uint32_t n, uint32_t k, int s)
{
	uint8_t *row = w->signs + ((uint64_t)i * w->n_rows + n) * qweight_row_bytes(w);

	if (s > 0)
		row[k >> 3] |= (uint8_t)(1u << (k & 7));
	else
		row[k >> 3] &= (uint8_t) ~(1u << (k & 7));
}

static inline float *qweight_alpha(const struct qweight *w, uint32_t i, uint32_t n, uint32_t k)
{
	uint64_t nrb = qweight_n_row_blocks(w), ncb = qweight_n_col_blocks(w);

	return w->alpha + ((uint64_t)i * nrb + n / w->row_block) * ncb + k / w->col_block;
}

/* "col", "block", "row"; NULL for a value out of range. */
const char *qweight_layout_name(enum qw_layout layout);
/* The layout qweight_layout_name() gives @name, or -EINVAL. */
int qweight_layout_parse(const char *name);

/* Dense W (n_rows x n_cols, row-major) from the planes: the reference for every kernel. */
void qweight_dequant(const struct qweight *w, float *dst);

#endif /* KERNELS_QWEIGHT_H */
