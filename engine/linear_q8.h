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

/* Longest row (n_in): a stack buffer holds one token's quantized activations (2 bytes each). */
#define Q8_MAX_IN 16384

/* Rows interleaved block by block (a row tile). */
#define Q8_TILE_ROWS 4

/*
 * Stored bytes of a block's 32 values: the GGUF block without its f16 scale. Q8_0: 32 int8.
 * Q5_0: the 32 fifth bits as a little-endian word (bit j belongs to element j), then 16
 * bytes of nibbles (element j the low nibble of byte j, element j + 16 its high nibble); its
 * values are q - 16.
 */
#define Q8_QBYTES 32
#define Q5_QBYTES 20

/*
 * The GGUF blocks repacked: rows in tiles of Q8_TILE_ROWS, and within a tile the rows' blocks
 * interleaved, so that a pass over a tile (and over the whole matrix) reads one sequential
 * stream, which the hardware prefetcher follows (four separate 576-byte row streams per tile
 * ran at 2/3 of the speed). The f16 scales are widened (exactly) to f32 in a separate array
 * of the same order. Rows past n_out in the last tile are zero.
 */
struct q8_weight {
	const uint8_t *q; /* [n_tiles][n_in / Q8_BLOCK][Q8_TILE_ROWS][qbytes] */
	const float *d;	  /* [n_tiles][n_in / Q8_BLOCK][Q8_TILE_ROWS] */
	uint32_t n_out;
	uint32_t n_in;	 /* a multiple of Q8_BLOCK */
	uint32_t qbytes; /* Q8_QBYTES or Q5_QBYTES: which format q holds */
};

/* Where row @r's block @b lives: its values at q + off * qbytes, its scale at d + off. */
static inline uint64_t q8_block_index(const struct q8_weight *w, uint32_t r, uint32_t b)
{
	return ((uint64_t)(r / Q8_TILE_ROWS) * (w->n_in / Q8_BLOCK) + b) * Q8_TILE_ROWS +
	       r % Q8_TILE_ROWS;
}

/* The 32 integer values of the block at @off (q8_block_index()): int8 as stored, or q - 16. */
static inline void q8_block_values(const struct q8_weight *w, uint64_t off, int8_t v[Q8_BLOCK])
{
	const uint8_t *p = w->q + off * w->qbytes;

	if (w->qbytes == Q8_QBYTES) {
		for (int j = 0; j < Q8_BLOCK; j++)
			v[j] = (int8_t)p[j];
		return;
	}
	uint32_t qh =
		(uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	const uint8_t *qs = p + 4;

	for (int j = 0; j < Q8_BLOCK / 2; j++) {
		v[j] = (int8_t)((int)((qs[j] & 0xfu) | ((qh >> j) & 1) << 4) - 16);
		v[j + 16] = (int8_t)((int)((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16);
	}
}

/*
 * Activations quantized per token and per block of 32 values: one f32 scale d = max |x| /
 * 32767 and 32 int16 values round(x / d). q is [m][n_in], d [m][n_in / 32]. (int8, as
 * llama.cpp's Q8_0 x Q8_0 dot has it, moved SmolLM2's logits by up to 0.25: the final
 * hidden state has outlier channels that flatten the rest of their block.)
 */
struct q8_acts {
	const int16_t *q;
	const float *d;
};

/* Quantize @m rows of @n_in activations (a multiple of Q8_BLOCK) into @q and @d (struct q8_acts). */
void q8_quantize_acts(const float *x, uint32_t m, uint32_t n_in, int16_t *q, float *d);

/*
 * y[t][r] = sum over blocks b of (dw[r][b] * dx[t][b]) * (sum_j qw[r][32b + j] * qx[t][32b + j])
 * for rows r0 <= r < r1 (r0 a multiple of Q8_TILE_ROWS) and tokens t < m (y rows n_out long).
 * Each output is accumulated in eight lanes: lane k takes the exact integer sum of the
 * products at 2k, 2k + 1, 16 + 2k and 17 + 2k of every block (|sum| <= 4 * 128 * 32767 <
 * 2^24, so exact in f32 too) times the block's scale product, by fused multiply-add; the
 * lanes are summed as q8_lanes_sum() has it. Every kernel does exactly this, so results do
 * not depend on the ISA, the split of rows over workers or the batch size.
 */
typedef void (*q8_rows_fn)(const struct q8_weight *w, uint32_t r0, uint32_t r1,
			   const struct q8_acts *x, uint32_t m, float *y);

void q8_rows_ref(const struct q8_weight *w, uint32_t r0, uint32_t r1, const struct q8_acts *x,
		 uint32_t m, float *y);
void q8_rows_avx2(const struct q8_weight *w, uint32_t r0, uint32_t r1, const struct q8_acts *x,
		  uint32_t m, float *y);

/* The lanes' final sum, shared by the kernels so that they agree bit for bit. */
static inline float q8_lanes_sum(const float l[8])
{
	return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

#endif /* ENGINE_LINEAR_Q8_H */
