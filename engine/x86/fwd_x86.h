/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_X86_FWD_X86_H
#define ENGINE_X86_FWD_X86_H

/*
 * What the x86 ports of the fused attention share. The AVX-512 port does its products in zmm
 * and its softmax with the AVX2 port's, so that a row's bits do not depend on the port that
 * computed its block; its fwd_ops (engine/x86/fwd_avx2.c) are the AVX2 ones but for that.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/fwd_simd.h"

/*
 * Unnormalized softmax of the score rows [0, @n_rows) of block @a (stride @pad, scores of
 * keys [first chunk of row 0, @pad)) in place: a row r < a->rows gets exp(s - max) over the
 * keys it sees and zeros over the rest, inv[r] = 1 / its sum; a padding row is all zeros.
 */
void fwd_avx2_att_exp(const struct fwd_att_rows *a, float *s, uint32_t pad, uint32_t n_rows,
		      float *inv);

/* Element @i of @p as an address (keys and values are f32 or, with @h, f16). */
static inline __attribute__((always_inline)) const void *fwd_kv_at(const void *p, size_t i, bool h)
{
	return h ? (const void *)((const uint16_t *)p + i) : (const void *)((const float *)p + i);
}

/* qs[r][0..hd) = a's query row r times a->scale for r < a->rows, zeros up to @n_rows. */
void fwd_att_scaled_q(const struct fwd_att_rows *a, float *qs, uint32_t n_rows);

/* The AVX-512 port's attend_rows (engine/x86/fwd_avx512.c), built with -mavx512f. */
void fwd_avx512_attend_rows(const struct fwd_att_rows *a);

#endif /* ENGINE_X86_FWD_X86_H */
