// SPDX-License-Identifier: MIT
/*
 * AVX2+FMA row kernel of the Q8_0 linear backend (engine/linear_q8.h). Only this file is
 * built with -mavx2 -mfma; engine/linear_q8.c calls it on hosts that have AVX2.
 *
 * A block of 32 int8 weights is widened to four vectors of 8 floats (sign-extend, convert),
 * multiplied with the activations into one vector of partial sums, and that is added to the
 * output's accumulator times the block's scale. Tiles of 4 rows (one token) or 4 tokens (one
 * row) keep four independent chains in flight; a batch tile converts each weight block once
 * for its 4 tokens. Every (row, token) output sees the same operations in the same order in
 * either tile, so a batch gives exactly what single tokens give.
 */
#include "engine/linear_q8.h"

#include <immintrin.h>
#include <stddef.h>

/* Rows per cache block of the batch path: their weights (n_in bytes each) stay in L2 while
 * every token group of the batch passes over them. */
#define ROW_BLOCK 64

/* Tokens per batch tile. */
#define TOK_TILE 4

static inline __m256 widen8(const int8_t *q)
{
	return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
}

static inline float hsum8(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* Partial sums of one block: w[0..3] are its widened weights, x its 32 activations. */
static inline __m256 block_dot(const __m256 w[4], const float *x)
{
	__m256 s = _mm256_mul_ps(w[0], _mm256_loadu_ps(x));

	s = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(x + 8), s);
	s = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(x + 16), s);
	return _mm256_fmadd_ps(w[3], _mm256_loadu_ps(x + 24), s);
}

/*
 * Rows @i0 .. @i0 + @n_rows - 1 (n_rows 1..4) of row tile @tile times @n_tok (1..4) tokens
 * from @x; y[t * n_out + i] gets tile row i0 + i, token t (rows past n_out are not stored).
 * The loops are unrolled so the accumulators stay in registers.
 */
static inline __attribute__((always_inline)) void tile_dot(const struct q8_weight *w, uint32_t tile,
							   int i0, int n_rows, const float *x,
							   int n_tok, float *y)
{
	const uint32_t n_in = w->n_in, nb = n_in / Q8_BLOCK;
	const int8_t *q = w->q + (size_t)tile * nb * Q8_TILE_ROWS * Q8_BLOCK + i0 * Q8_BLOCK;
	const float *d = w->d + (size_t)tile * nb * Q8_TILE_ROWS + i0;
	uint32_t row0 = tile * Q8_TILE_ROWS + i0;
	__m256 acc[Q8_TILE_ROWS][TOK_TILE];

#pragma GCC unroll 4
	for (int i = 0; i < n_rows; i++)
#pragma GCC unroll 4
		for (int t = 0; t < n_tok; t++)
			acc[i][t] = _mm256_setzero_ps();
	for (uint32_t b = 0; b < nb; b++) {
		const int8_t *qb = q + (size_t)b * Q8_TILE_ROWS * Q8_BLOCK;
		const float *xb = x + (size_t)b * Q8_BLOCK;

#pragma GCC unroll 4
		for (int i = 0; i < n_rows; i++) {
			const int8_t *qr = qb + i * Q8_BLOCK;
			__m256 wv[4] = { widen8(qr), widen8(qr + 8), widen8(qr + 16),
					 widen8(qr + 24) };
			__m256 scale = _mm256_broadcast_ss(d + (size_t)b * Q8_TILE_ROWS + i);

#pragma GCC unroll 4
			for (int t = 0; t < n_tok; t++) {
				__m256 s = block_dot(wv, xb + (size_t)t * n_in);

				acc[i][t] = _mm256_fmadd_ps(s, scale, acc[i][t]);
			}
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < n_rows; i++) {
		if (row0 + i >= w->n_out)
			break;
#pragma GCC unroll 4
		for (int t = 0; t < n_tok; t++)
			y[(size_t)t * w->n_out + row0 + i] = hsum8(acc[i][t]);
	}
}

/* One row against 1..TOK_TILE tokens. */
static void row_tokens(const struct q8_weight *w, uint32_t r, const float *x, uint32_t n_tok,
		       float *y)
{
	uint32_t tile = r / Q8_TILE_ROWS;
	int i = r % Q8_TILE_ROWS;

	switch (n_tok) {
	case 4:
		tile_dot(w, tile, i, 1, x, 4, y);
		break;
	case 3:
		tile_dot(w, tile, i, 1, x, 3, y);
		break;
	case 2:
		tile_dot(w, tile, i, 1, x, 2, y);
		break;
	default:
		tile_dot(w, tile, i, 1, x, 1, y);
		break;
	}
}

void q8_rows_avx2(const struct q8_weight *w, uint32_t r0, uint32_t r1, const float *x, uint32_t m,
		  float *y)
{
	if (m == 1) {
		/* one token: whole tiles, four independent chains */
		for (uint32_t r = r0; r < r1; r += Q8_TILE_ROWS)
			tile_dot(w, r / Q8_TILE_ROWS, 0, Q8_TILE_ROWS, x, 1, y);
		return;
	}
	for (uint32_t rb = r0; rb < r1; rb += ROW_BLOCK) {
		uint32_t re = r1 - rb < ROW_BLOCK ? r1 : rb + ROW_BLOCK;

		for (uint32_t t = 0; t < m; t += TOK_TILE) {
			uint32_t nt = m - t < TOK_TILE ? m - t : TOK_TILE;

			for (uint32_t r = rb; r < re; r++)
				row_tokens(w, r, x + (size_t)t * w->n_in, nt,
					   y + (size_t)t * w->n_out);
		}
	}
}
