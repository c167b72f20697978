// SPDX-License-Identifier: MIT
#include "kernels/qweight.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const layout_names[QW_LAYOUT_COUNT] = {
	[QW_LAYOUT_COL] = "col",
	[QW_LAYOUT_BLOCK] = "block",
	[QW_LAYOUT_ROW] = "row",
};

const char *qweight_layout_name(enum qw_layout layout)
{
	return (unsigned)layout < QW_LAYOUT_COUNT ? layout_names[layout] : NULL;
}

int qweight_layout_parse(const char *name)
{
	for (int l = 0; l < QW_LAYOUT_COUNT; l++)
		if (!strcmp(name, layout_names[l]))
			return l;
	return -EINVAL;
}

int qweight_init(struct qweight *w, uint32_t n_rows, uint32_t n_cols, uint32_t bits,
		 enum qw_layout layout, uint32_t apot)
{
	uint64_t n_signs, n_alpha;

	if (!n_rows || !n_cols || bits < 1 || bits > QW_MAX_BITS || layout >= QW_LAYOUT_COUNT)
		return -EINVAL;
	*w = (struct qweight){
		.n_rows = n_rows, .n_cols = n_cols, .bits = bits, .layout = layout, .apot = apot
	};
	if (layout == QW_LAYOUT_COL) {
		w->row_block = n_rows;
		w->col_block = 1;
	} else if (layout == QW_LAYOUT_ROW) {
		w->row_block = 1;
		w->col_block = QW_ROW_GROUP;
	} else {
		w->row_block = (n_rows + 7) / 8;
		w->col_block = 8;
	}
	n_signs = (uint64_t)bits * n_rows * qweight_row_bytes(w);
	n_alpha = (uint64_t)bits * qweight_n_row_blocks(w) * qweight_n_col_blocks(w);
	w->signs = calloc(n_signs, 1);
	w->alpha = calloc(n_alpha, sizeof(float));
	if (!w->signs || !w->alpha) {
		qweight_done(w);
		return -ENOMEM;
	}
	return 0;
}

void qweight_done(struct qweight *w)
{
	free(w->signs);
	free(w->alpha);
	w->signs = NULL;
	w->alpha = NULL;
}

void qweight_dequant(const struct qweight *w, float *dst)
{
	for (uint32_t n = 0; n < w->n_rows; n++) {
		for (uint32_t k = 0; k < w->n_cols; k++) {
			float v = 0;

			for (uint32_t i = 0; i < w->bits; i++)
				v += *qweight_alpha(w, i, n, k) * qweight_sign(w, i, n, k);
			dst[(uint64_t)n * w->n_cols + k] = v;
		}
	}
}
