// SPDX-License-Identifier: MIT
#include "kernels/internal.h"
void lut_tiles_avx512(const struct lut_weight *w, uint32_t t0, uint32_t t1, uint32_t m,
		      const struct lut_tok *toks, float *y, int32_t *acc)
{
	lut_tiles_ref(w, t0, t1, m, toks, y, acc);
}
