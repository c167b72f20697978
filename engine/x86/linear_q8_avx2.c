// SPDX-License-Identifier: MIT
/*
 * AVX2+FMA row kernel of the Q8_0 linear backend (engine/linear_q8.h). Only this file is
 * built with -mavx2 -mfma; engine/linear_q8.c calls it on hosts that have AVX2.
 *
 * A block is 32 int8 weights against 32 int16 activations: the weights are sign-extended to
 * int16 in two halves and vpmaddwd multiplies and sums them in pairs; the two halves' int32
 * vectors added give eight exact sums of four products (|sum| < 2^24), converted to f32
 * (exact) and added into the output's eight lanes by one FMA with the block's scale product.
 * Tiles of 4 rows (one token) or 4 tokens (one row) keep four independent chains in flight.
 * Every (row, token) output sees the same operations in the same order as q8_rows_ref.
 */
#include "engine/linear_q8.h"

#include <immintrin.h>
#include <stddef.h>

/* Rows per cache block of the batch path: their weights (n_in bytes each) stay in L2 while
 * every token group of the batch passes over them. */
#define ROW_BLOCK 64

/* Tokens per batch tile. */
#define TOK_TILE 4

static inline float lanes_sum(__m256 v)
{
	float l[8];

	_mm256_storeu_ps(l, v);
	return q8_lanes_sum(l);
}

/* The eight int32 sums of four products of block (@w0, @w1) with (@x0, @x1), as f32. */
static inline __m256 block_dot(__m256i w0, __m256i w1, const int16_t *x)
{
	__m256i p = _mm256_add_epi32(
		_mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)x)),
		_mm256_madd_epi16(w1, _mm256_loadu_si256((const __m256i *)(x + 16))));

	return _mm256_cvtepi32_ps(p);
}

/*
 * Rows @i0 .. @i0 + @n_rows - 1 (n_rows 1..4) of row tile @tile times @n_tok (1..4) tokens
 * from @x (token 0 = @t0); y[t * n_out + i] gets tile row i0 + i, token t0 + t (rows past
 * n_out are not stored). The loops are unrolled so the accumulators stay in registers.
 */
static inline __attribute__((always_inline)) void tile_dot(const struct q8_weight *w, uint32_t tile,
							   int i0, int n_rows,
							   const struct q8_acts *x, uint32_t t0,
							   int n_tok, float *y)
{
	const uint32_t n_in = w->n_in, nb = n_in / Q8_BLOCK;
	const int8_t *q = w->q + (size_t)tile * nb * Q8_TILE_ROWS * Q8_BLOCK + i0 * Q8_BLOCK;
	const float *d = w->d + (size_t)tile * nb * Q8_TILE_ROWS + i0;
	const int16_t *xq = x->q + (size_t)t0 * n_in;
	const float *xd = x->d + (size_t)t0 * nb;
	uint32_t row0 = tile * Q8_TILE_ROWS + i0;
	__m256 acc[Q8_TILE_ROWS][TOK_TILE];

#pragma GCC unroll 4
	for (int i = 0; i < n_rows; i++)
#pragma GCC unroll 4
		for (int t = 0; t < n_tok; t++)
			acc[i][t] = _mm256_setzero_ps();
	for (uint32_t b = 0; b < nb; b++) {
		const int8_t *qb = q + (size_t)b * Q8_TILE_ROWS * Q8_BLOCK;

#pragma GCC unroll 4
		for (int i = 0; i < n_rows; i++) {
			const int8_t *qr = qb + i * Q8_BLOCK;
			__m256i w0 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)qr));
			__m256i w1 =
				_mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)(qr + 16)));
			float dw = d[(size_t)b * Q8_TILE_ROWS + i];

#pragma GCC unroll 4
			for (int t = 0; t < n_tok; t++) {
				const int16_t *xb = xq + (size_t)t * n_in + (size_t)b * Q8_BLOCK;
				__m256 s = _mm256_set1_ps(dw * xd[(size_t)t * nb + b]);

				acc[i][t] = _mm256_fmadd_ps(block_dot(w0, w1, xb), s, acc[i][t]);
			}
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < n_rows; i++) {
		if (row0 + i >= w->n_out)
			break;
#pragma GCC unroll 4
		for (int t = 0; t < n_tok; t++)
			y[(size_t)(t0 + t) * w->n_out + row0 + i] = lanes_sum(acc[i][t]);
	}
}

/* One row against 1..TOK_TILE tokens from @t0. */
static void row_tokens(const struct q8_weight *w, uint32_t r, const struct q8_acts *x, uint32_t t0,
		       uint32_t n_tok, float *y)
{
	uint32_t tile = r / Q8_TILE_ROWS;
	int i = r % Q8_TILE_ROWS;

	switch (n_tok) {
	case 4:
		tile_dot(w, tile, i, 1, x, t0, 4, y);
		break;
	case 3:
		tile_dot(w, tile, i, 1, x, t0, 3, y);
		break;
	case 2:
		tile_dot(w, tile, i, 1, x, t0, 2, y);
		break;
	default:
		tile_dot(w, tile, i, 1, x, t0, 1, y);
		break;
	}
}

void q8_rows_avx2(const struct q8_weight *w, uint32_t r0, uint32_t r1, const struct q8_acts *x,
		  uint32_t m, float *y)
{
	if (m == 1) {
		/* one token: whole tiles, four independent chains */
		for (uint32_t r = r0; r < r1; r += Q8_TILE_ROWS)
			tile_dot(w, r / Q8_TILE_ROWS, 0, Q8_TILE_ROWS, x, 0, 1, y);
		return;
	}
	for (uint32_t rb = r0; rb < r1; rb += ROW_BLOCK) {
		uint32_t re = r1 - rb < ROW_BLOCK ? r1 : rb + ROW_BLOCK;

		for (uint32_t t = 0; t < m; t += TOK_TILE) {
			uint32_t nt = m - t < TOK_TILE ? m - t : TOK_TILE;

			for (uint32_t r = rb; r < re; r++)
				row_tokens(w, r, x, t, nt, y);
		}
	}
}
