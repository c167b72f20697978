// SPDX-License-Identifier: MIT
/*
 * AVX2+FMA row kernel of the Q8_0 linear backend (engine/linear_q8.h). Only this file is
 * built with -mavx2 -mfma; engine/linear_q8.c calls it on hosts that have AVX2.
 *
 * A block is 32 int8 weights against 32 int16 activations: the weights are sign-extended to
 * int16 in two halves and vpmaddwd multiplies and sums them in pairs; the two halves' int32
 * vectors added give eight exact sums of four products (|sum| < 2^24), converted to f32
 * (exact) and added into the output's eight lanes by one FMA with the block's scale product.
 * Tiles of 4 rows (one token), 2 rows x 4 tokens or 1 row x 1-3 tokens keep independent
 * chains in flight.
 * Q5_0 blocks are widened to the same int16 values first (q5_values()).
 * Every (row, token) output sees the same operations in the same order as q8_rows_ref.
 */
#include "engine/linear_q8.h"

#include <immintrin.h>
#include <stddef.h>
#include <string.h>

/* Rows per cache block of the batch path: their weights (n_in bytes each) stay in L2 while
 * every token group of the batch passes over them. */
#define ROW_BLOCK 64

/* Tokens per batch tile. */
#define TOK_TILE 4

/*
 * How far ahead the one-token path prefetches a row tile's blocks (4 rows x 32 weight bytes per
 * block, streamed once per token from memory): the LM head of a decode step. Measured on the
 * Zen 3 VM (bench-step, 1 sequence, alternating runs): head 2.14-2.39 -> 1.58-2.09 ms at 1
 * thread, 1.17-1.33 -> 1.05-1.27 ms at 2; 1 KB gained less, 4 KB lost at 2 threads.
 */
#define ROWS_PREFETCH 2048

static inline float lanes_sum(__m256 v)
{
	float l[8];

	_mm256_storeu_ps(l, v);
	return q8_lanes_sum(l);
}

/*
 * The eight int32 sums of four products of block (@w0, @w1) with (@x0, @x1), as f32.
 * (AVX512_VNNI's vpdpwssd for the second pair gives the same integers with one op fewer, but
 * measured 7% slower on Zen 4: SmolLM2's head at 16 tokens, 1 thread, 10.7-10.9 -> 11.5-11.6
 * ms, three alternations of bench-step, session 20.)
 */
static inline __m256 block_dot(__m256i w0, __m256i w1, const int16_t *x)
{
	__m256i p = _mm256_add_epi32(
		_mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)x)),
		_mm256_madd_epi16(w1, _mm256_loadu_si256((const __m256i *)(x + 16))));

	return _mm256_cvtepi32_ps(p);
}

/*
 * A Q5_0 block's 32 values (engine/linear_q8.h) as int16, elements 0-15 in @w0 and 16-31 in
 * @w1: nibbles split and joined into 32 bytes, the fifth bits spread one per byte (byte j
 * tests bit j of the word), OR-ed in as 16, then 16 subtracted.
 */
static inline void q5_values(const uint8_t *p, __m256i *w0, __m256i *w1)
{
	const __m128i m0f = _mm_set1_epi8(0x0f);
	const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2,
						2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
	const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
	__m128i qs = _mm_loadu_si128((const __m128i *)(p + 4));
	uint32_t qh;
	__m256i hb, v;

	memcpy(&qh, p, 4);
	hb = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), spread);
	hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, bit), bit),
			      _mm256_set1_epi8(16));
	v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), m0f), _mm_and_si128(qs, m0f));
	v = _mm256_sub_epi8(_mm256_or_si256(v, hb), _mm256_set1_epi8(16));
	*w0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v));
	*w1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1));
}

/*
 * Rows @i0 .. @i0 + @n_rows - 1 (n_rows 1..4) of row tile @tile times @n_tok (1..4) tokens
 * from @x (token 0 = @t0); y[t * n_out + i] gets tile row i0 + i, token t0 + t (rows past
 * n_out are not stored). @qb: Q8_QBYTES or Q5_QBYTES (a constant where this is inlined).
 * The loops are unrolled so the accumulators stay in registers.
 */
static inline __attribute__((always_inline)) void tile_dot(const struct q8_weight *w, uint32_t tile,
							   int i0, int n_rows,
							   const struct q8_acts *x, uint32_t t0,
							   int n_tok, float *y, uint32_t qb)
{
	const uint32_t n_in = w->n_in, nb = n_in / Q8_BLOCK;
	const uint8_t *q = w->q + ((size_t)tile * nb * Q8_TILE_ROWS + i0) * qb;
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
		const uint8_t *qbk = q + (size_t)b * Q8_TILE_ROWS * qb;

		if (n_tok == 1 && n_rows == Q8_TILE_ROWS) {
			/* the tile's block: 128 (Q8_0) or 80 (Q5_0) bytes, two lines at most */
			_mm_prefetch((const char *)qbk + ROWS_PREFETCH, _MM_HINT_T0);
			_mm_prefetch((const char *)qbk + ROWS_PREFETCH + 64, _MM_HINT_T0);
		}

#pragma GCC unroll 4
		for (int i = 0; i < n_rows; i++) {
			const uint8_t *qr = qbk + i * qb;
			__m256i w0, w1;
			__m256 dw = _mm256_broadcast_ss(&d[(size_t)b * Q8_TILE_ROWS + i]);

			if (qb == Q8_QBYTES) {
				w0 = _mm256_cvtepi8_epi16(_mm_load_si128((const __m128i *)qr));
				w1 = _mm256_cvtepi8_epi16(
					_mm_load_si128((const __m128i *)(qr + 16)));
			} else {
				q5_values(qr, &w0, &w1);
			}
#pragma GCC unroll 4
			for (int t = 0; t < n_tok; t++) {
				const int16_t *xb = xq + (size_t)t * n_in + (size_t)b * Q8_BLOCK;
				/* the scale product as a vector multiply: one op, no shuffle */
				__m256 s = _mm256_mul_ps(
					dw, _mm256_broadcast_ss(&xd[(size_t)t * nb + b]));

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
static inline __attribute__((always_inline)) void row_tokens(const struct q8_weight *w, uint32_t r,
							     const struct q8_acts *x, uint32_t t0,
							     uint32_t n_tok, float *y, uint32_t qb)
{
	uint32_t tile = r / Q8_TILE_ROWS;
	int i = r % Q8_TILE_ROWS;

	switch (n_tok) {
	case 4:
		tile_dot(w, tile, i, 1, x, t0, 4, y, qb);
		break;
	case 3:
		tile_dot(w, tile, i, 1, x, t0, 3, y, qb);
		break;
	case 2:
		tile_dot(w, tile, i, 1, x, t0, 2, y, qb);
		break;
	default:
		tile_dot(w, tile, i, 1, x, t0, 1, y, qb);
		break;
	}
}

static inline __attribute__((always_inline)) void rows(const struct q8_weight *w, uint32_t r0,
						       uint32_t r1, const struct q8_acts *x,
						       uint32_t m, float *y, uint32_t qb)
{
	if (m == 1) {
		/* one token: whole tiles, four independent chains */
		for (uint32_t r = r0; r < r1; r += Q8_TILE_ROWS)
			tile_dot(w, r / Q8_TILE_ROWS, 0, Q8_TILE_ROWS, x, 0, 1, y, qb);
		return;
	}
	for (uint32_t rb = r0; rb < r1; rb += ROW_BLOCK) {
		uint32_t re = r1 - rb < ROW_BLOCK ? r1 : rb + ROW_BLOCK;

		for (uint32_t t = 0; t < m; t += TOK_TILE) {
			uint32_t nt = m - t < TOK_TILE ? m - t : TOK_TILE;

			if (nt < TOK_TILE) {
				for (uint32_t r = rb; r < re; r++)
					row_tokens(w, r, x, t, nt, y, qb);
				continue;
			}
			/*
			 * Two rows of a tile against four tokens: each decoded weight block
			 * serves four tokens and each activation load two rows (8
			 * accumulators: one row, 7-9% slower; four rows spill).
			 */
			for (uint32_t r = rb; r < re; r += 2)
				tile_dot(w, r / Q8_TILE_ROWS, (int)(r % Q8_TILE_ROWS), 2, x, t,
					 TOK_TILE, y, qb);
		}
	}
}

void q8_rows_avx2(const struct q8_weight *w, uint32_t r0, uint32_t r1, const struct q8_acts *x,
		  uint32_t m, float *y)
{
	if (w->qbytes == Q8_QBYTES)
		rows(w, r0, r1, x, m, y, Q8_QBYTES);
	else
		rows(w, r0, r1, x, m, y, Q5_QBYTES);
}
