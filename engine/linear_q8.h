/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_LINEAR_Q8_H
#define ENGINE_LINEAR_Q8_H

/*
 * Internal to the engine: the Q8_0 linear backend's weight layout and its per-ISA row
 * kernels (engine/linear_q8.c holds the scalar one, engine/x86/linear_q8_avx2.c the AVX2+FMA
 * one). The public entry points are in engine/linear.h.
 */

#include <stdint.h>

/* Values per Q8_0 block (one scale each). */
#define Q8_BLOCK 32

/* Rows interleaved block by block (a row tile). */
#define Q8_TILE_ROWS 4

/*
 * The GGUF blocks repacked: rows in tiles of Q8_TILE_ROWS, and within a tile the rows' blocks
 * interleaved, so that a pass over a tile (and over the whole matrix) reads one sequential
 * stream, which the hardware prefetcher follows (four separate 576-byte row streams per tile
 * ran at 2/3 of the speed). The f16 scales are widened (exactly) to f32 in a separate array
 * of the same order. Rows past n_out in the last tile are zero.
 */
struct q8_weight {
	const int8_t *q; /* [n_tiles][n_in / Q8_BLOCK][Q8_TILE_ROWS][Q8_BLOCK] */
	const float *d;	 /* [n_tiles][n_in / Q8_BLOCK][Q8_TILE_ROWS] */
	uint32_t n_out;
	uint32_t n_in; /* a multiple of Q8_BLOCK */
};

/* Where row @r's block @b lives: its int8 values at q + off * Q8_BLOCK, its scale at d + off. */
static inline uint64_t q8_block_index(const struct q8_weight *w, uint32_t r, uint32_t b)
{
	return ((uint64_t)(r / Q8_TILE_ROWS) * (w->n_in / Q8_BLOCK) + b) * Q8_TILE_ROWS +
	       r % Q8_TILE_ROWS;
}

/*
 * y[t][r] = sum over blocks b of d[r][b] * (sum_j q[r][32b + j] * x[t][32b + j]) for rows
 * r0 <= r < r1 (r0 a multiple of Q8_TILE_ROWS) and tokens t < m (x rows n_in long, y rows n_out long). Each (row, token)
 * output is computed in the same order whatever r0, r1 and m are, so results do not depend
 * on the split of rows over workers or on the batch size.
 */
typedef void (*q8_rows_fn)(const struct q8_weight *w, uint32_t r0, uint32_t r1, const float *x,
			   uint32_t m, float *y);

void q8_rows_ref(const struct q8_weight *w, uint32_t r0, uint32_t r1, const float *x, uint32_t m,
		 float *y);
void q8_rows_avx2(const struct q8_weight *w, uint32_t r0, uint32_t r1, const float *x, uint32_t m,
		  float *y);

#endif /* ENGINE_LINEAR_Q8_H */
