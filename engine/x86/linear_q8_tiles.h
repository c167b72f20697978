/* SPDX-License-Identifier: MIT */
/*
 * The x86 row kernel of the Q8_0 linear backend (engine/linear_q8.h), written once for the
 * two ISA files that include it. Each defines before the include, for @sg 0 and, if
 * Q8_SIGNED_OK is 1, also 1:
 *   __m256i q8_wprep256(int sg, __m256i u);  once per weight step (w + 128)
 *   __m256i q8_xprep256(int sg, __m256i x);  once per activation step
 *   __m256i q8_dot256(int sg, __m256i acc, __m256i w, __m256i x, __m256i xp);
 * (functions or macros; xp is q8_xprep256's result for x). With sg = 0 lane l of acc
 * gains the four products of bytes 4l..4l+3 of u (unsigned) and x (signed), what vpdpbusd
 * does, and starts from the activations' correction c; with sg = 1 it gains the products
 * with w = u - 128 and starts from 0, the same integer in the end (sg = 1 is only used for
 * weights without -128, q8_weight.has_int8_min). Q8_ROWS_FN names the entry point. Each
 * (row, token) output sees the same integer sums and the same float operations in the same
 * order as q8_rows_ref.
 */
#include "engine/linear_q8.h"

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Rows per cache block of the batch path: their weights stay in L2 while the batch passes. */
#define ROW_BLOCK 64

/*
 * Tokens per batch tile of 4 rows: Q8_TOK_TILE (1..4) from the ISA file, 3 unless it says.
 * With AVX-512's 32 registers 4 x 4 keeps the 16 integer sums in registers and spills only
 * the float sums, which are touched once per group.
 */
#ifndef Q8_TOK_TILE
#define Q8_TOK_TILE 3
#endif
_Static_assert(Q8_TOK_TILE >= 1 && Q8_TOK_TILE <= 4, "a tile's sums: at most 16 accumulators");

/*
 * Software prefetch distance of one token in bytes (decode's LM head streams the whole
 * matrix once per token): 16 row tiles' groups ahead; SmolLM2's head, 1 token, 1 thread,
 * medians of 8 alternating runs on the Zen 4 VM: 0 B 1.21 ms, 2 KB 1.36, 6-12 KB 0.90-0.92,
 * 16 KB 0.98 (the int16 kernel before it: 1.07-1.18). A batch prefetches differently: see
 * rows().
 */
#define PREFETCH_ONE 8192

/* A Q5_0 step of 32 values (20 bytes at @p) as w + 128: nibbles, fifth bits, then + 112. */
static inline __m256i q5_step256(const uint8_t *p)
{
	const __m128i m0f = _mm_set1_epi8(0x0f);
	const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2,
						2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
	const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
	__m128i qs = _mm_loadu_si128((const __m128i *)p);
	uint32_t qh;
	__m256i hb, v;

	memcpy(&qh, p + 16, 4);
	hb = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), spread);
	hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, bit), bit),
			      _mm256_set1_epi8(16));
	v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qs, 4), m0f), _mm_and_si128(qs, m0f));
	return _mm256_add_epi8(_mm256_or_si256(v, hb), _mm256_set1_epi8(112));
}

/* A Q5_0 step of 16 values (10 bytes at @p), as q5_step256(). */
static inline __m128i q5_step128(const uint8_t *p)
{
	const __m128i m0f = _mm_set1_epi8(0x0f);
	const __m128i spread = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
	const __m128i bit = _mm_set1_epi64x((long long)0x8040201008040201ull);
	__m128i qs = _mm_loadl_epi64((const __m128i *)p), hb, v;
	uint16_t qh;

	memcpy(&qh, p + 8, 2);
	hb = _mm_shuffle_epi8(_mm_set1_epi16((short)qh), spread);
	hb = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(hb, bit), bit), _mm_set1_epi8(16));
	v = _mm_unpacklo_epi64(_mm_and_si128(qs, m0f), _mm_and_si128(_mm_srli_epi16(qs, 4), m0f));
	return _mm_add_epi8(_mm_or_si128(v, hb), _mm_set1_epi8(112));
}

/*
 * Step @k of a group of @width blocks at @p as w + 128; a 2-block group's 16 bytes in the
 * low half, zeros above (they meet zero activations, scales and corrections).
 */
static inline __m256i step_of(const uint8_t *p, uint32_t qb, uint32_t width, uint32_t k)
{
	if (width == Q8_GROUP)
		return qb == Q8_QBYTES ? _mm256_loadu_si256((const __m256i *)(p + Q8_STEP * k))
				       : q5_step256(p + 20 * k);
	return _mm256_zextsi128_si256(qb == Q8_QBYTES
					      ? _mm_loadu_si128((const __m128i *)(p + 16 * k))
					      : q5_step128(p + 10 * k));
}

/* A token's step of a group of @width blocks at @p, as step_of() lays it out. */
static inline __m256i acts_of(const int8_t *p, uint32_t width)
{
	if (width == Q8_GROUP)
		return _mm256_loadu_si256((const __m256i *)p);
	return _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)p));
}

/* A row's @width block scales at @p for the lanes: d0..d3 twice, or d0 d1 d0 d1 then zeros. */
static inline __m256 scales_of(const float *p, uint32_t width)
{
	if (width == Q8_GROUP)
		return _mm256_broadcast_ps((const __m128 *)p);
	return _mm256_zextps128_ps256(_mm_castpd_ps(_mm_loaddup_pd((const double *)p)));
}

/* Each of 8 accumulators' lanes summed in q8_lanes_sum()'s order: lane q has a[q]'s sum. */
static inline __m256 lanes_sum8(const __m256 a[8])
{
	__m256 s[4], r0, r1;

#pragma GCC unroll 4
	for (int i = 0; i < 4; i++)
		s[i] = _mm256_add_ps(_mm256_permute2f128_ps(a[i], a[i + 4], 0x20),
				     _mm256_permute2f128_ps(a[i], a[i + 4], 0x31));
	/* s[i] = l0+l4, l1+l5, l2+l6, l3+l7 of a[i], then of a[i + 4] */
	r0 = _mm256_add_ps(_mm256_shuffle_ps(s[0], s[1], 0x44),
			   _mm256_shuffle_ps(s[0], s[1], 0xee));
	r1 = _mm256_add_ps(_mm256_shuffle_ps(s[2], s[3], 0x44),
			   _mm256_shuffle_ps(s[2], s[3], 0xee));
	return _mm256_add_ps(_mm256_shuffle_ps(r0, r1, 0x88), _mm256_shuffle_ps(r0, r1, 0xdd));
}

/*
 * One group of @width blocks (a constant where inlined) of a row tile: @gq, @gd its weights
 * and scales, @xq, @xd, @xc the first token's activations; adds into @acc[row * n_tok + t].
 */
static inline __attribute__((always_inline)) void
group_dot(const uint8_t *gq, const float *gd, const int8_t *xq, const float *xd, const int32_t *xc,
	  int n_tok, uint32_t width, uint32_t qb, int sg, __m256 *acc)
{
	const int n = Q8_TILE_ROWS * n_tok;
	__m256i d[16], c[4];

	/* the correction is the token's: loaded once, not once per row */
#pragma GCC unroll 4
	for (int t = 0; t < n_tok; t++)
		c[t] = sg ? _mm256_setzero_si256()
			  : _mm256_loadu_si256((const __m256i *)(xc + 8 * t));
#pragma GCC unroll 16
	for (int a = 0; a < n; a++)
		d[a] = c[a % n_tok];
#pragma GCC unroll 4
	for (uint32_t k = 0; k < Q8_KSTEPS; k++) {
		const int8_t *xk = xq + 8 * width * k;
		__m256i wv[Q8_TILE_ROWS];

#pragma GCC unroll 4
		for (int i = 0; i < Q8_TILE_ROWS; i++)
			wv[i] = q8_wprep256(sg, step_of(gq + (size_t)i * width * qb, qb, width, k));
#pragma GCC unroll 4
		for (int t = 0; t < n_tok; t++) {
			__m256i xv = acts_of(xk + width * Q8_BLOCK * t, width), xp;

			/* one load for the four rows, not one folded into each */
			__asm__("" : "+v"(xv));
			xp = q8_xprep256(sg, xv);
#pragma GCC unroll 4
			for (int i = 0; i < Q8_TILE_ROWS; i++)
				d[i * n_tok + t] = q8_dot256(sg, d[i * n_tok + t], wv[i], xv, xp);
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < Q8_TILE_ROWS; i++) {
		__m256 dw = scales_of(gd + i * width, width);
#pragma GCC unroll 4
		for (int t = 0; t < n_tok; t++) {
			__m256 s = _mm256_mul_ps(dw, _mm256_loadu_ps(xd + 8 * t));
			int a = i * n_tok + t;

			acc[a] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d[a]), s, acc[a]);
		}
	}
}

/*
 * A tile's sums @acc (row i, token t at i * @n_tok + t) into @y (token rows @n_out long) at
 * rows @r..: lanes summed token-major, so that a token's four rows go out as one store
 * (scalar stores were 5% of the batch path's time) and only a last partial tile stores
 * row by row.
 */
static inline __attribute__((always_inline)) void tile_store(const __m256 *acc, int n_tok,
							     uint32_t n_out, uint32_t r, float *y)
{
	const int n = Q8_TILE_ROWS * n_tok;
	__m256 at[16];
	float out[16];

#pragma GCC unroll 16
	for (int a = 0; a < 16; a++)
		at[a] = a < n ? acc[(a % Q8_TILE_ROWS) * n_tok + a / Q8_TILE_ROWS] : acc[0];
	_mm256_storeu_ps(out, lanes_sum8(at));
	if (n > 8)
		_mm256_storeu_ps(out + 8, lanes_sum8(at + 8));
	if (r + Q8_TILE_ROWS <= n_out) {
#pragma GCC unroll 4
		for (int t = 0; t < n_tok; t++)
			_mm_storeu_ps(y + (size_t)t * n_out + r,
				      _mm_loadu_ps(out + Q8_TILE_ROWS * t));
		return;
	}
	for (uint32_t i = 0; i < Q8_TILE_ROWS && r + i < n_out; i++)
		for (int t = 0; t < n_tok; t++)
			y[(size_t)t * n_out + r + i] = out[t * Q8_TILE_ROWS + i];
}

/*
 * Row tile @r (4 rows from @r, a multiple of 4) times tokens @t0 .. @t0 + @n_tok - 1 (1..4)
 * of @m: the accumulators of q8_rows_ref. Each step's weights serve @n_tok tokens and each
 * activation load four rows, which beat one row x 8 tokens (7.0 ms for SmolLM2's head at 16
 * tokens on 1 thread) and 2 x 4 (6.6) with 5.4 ms. Per group and (row, token) the four
 * vpdpbusd share two pipes with the scale's multiply and FMA, which caps the kernel near
 * 43 products a cycle on Zen 4; 4 x 4 tiles reach ~33 with the data in L1. (Two steps per
 * zmm vpdpbusd were slower: Zen 4 splits them, and the halves then need folding.)
 * Outputs of rows past n_out are not stored. @qb: Q8_QBYTES or Q5_QBYTES (constant where
 * inlined). The activations' group-major layout puts the tokens at constant offsets.
 */
static inline __attribute__((always_inline)) void tile(const struct q8_weight *w, uint32_t r,
						       const struct q8_acts *x, uint32_t m,
						       uint32_t t0, int n_tok, float *y,
						       uint32_t qb, int sg)
{
	const uint32_t ng = q8_n_groups(w);
	const uint8_t *tq = q8_group_q(w, r, 0);
	const float *td = q8_group_d(w, r, 0);
	const int n = Q8_TILE_ROWS * n_tok;
	__m256 acc[16];

#pragma GCC unroll 16
	for (int a = 0; a < n; a++)
		acc[a] = _mm256_setzero_ps();
	for (uint32_t g = 0; g < ng; g++) {
		const uint32_t width = q8_group_width(w, g);
		const uint8_t *gq = tq + (size_t)g * Q8_GROUP * Q8_TILE_ROWS * qb;
		const float *gd = td + (size_t)g * Q8_GROUP * Q8_TILE_ROWS;
		const int8_t *xq =
			x->q + ((size_t)m * g * Q8_GROUP + (size_t)t0 * width) * Q8_BLOCK;
		const float *xd = x->d + ((size_t)g * m + t0) * 8;
		const int32_t *xc = x->c + ((size_t)g * m + t0) * 8;

		if (m == 1)
#pragma GCC unroll 8
			for (uint32_t b = 0; b < Q8_TILE_ROWS * Q8_GROUP * qb; b += 64)
				_mm_prefetch((const char *)gq + PREFETCH_ONE + b, _MM_HINT_T0);
		if (width == Q8_GROUP)
			group_dot(gq, gd, xq, xd, xc, n_tok, Q8_GROUP, qb, sg, acc);
		else
			group_dot(gq, gd, xq, xd, xc, n_tok, 2, qb, sg, acc);
	}
	tile_store(acc, n_tok, w->n_out, r, y + (size_t)t0 * w->n_out);
}

static inline __attribute__((always_inline)) void rows(const struct q8_weight *w, uint32_t r0,
						       uint32_t r1, const struct q8_acts *x,
						       uint32_t m, float *y, uint32_t qb, int sg)
{
	if (m == 1) {
		for (uint32_t r = r0; r < r1; r += Q8_TILE_ROWS)
			tile(w, r, x, 1, 0, 1, y, qb, sg);
		return;
	}
	for (uint32_t rb = r0; rb < r1; rb += ROW_BLOCK) {
		uint32_t re = r1 - rb < ROW_BLOCK ? r1 : rb + ROW_BLOCK;
		uint32_t rn = r1 - re < ROW_BLOCK ? r1 : re + ROW_BLOCK;
		/*
		 * The next row block's weights are fetched into L2 a slice per tile call over
		 * this block. Fetching a tile's own weights into L1 8 KB ahead of its first
		 * token tile, as before, put a block's misses in one burst, which the tile
		 * then waited for; fetching the next block into L1 evicted the current one
		 * (SmolLM2's head, 1 thread, 16 / 8 / 3 tokens: 5.21 / 2.79 / 1.11 ms before,
		 * 4.20 / 2.36 / 1.07 now with the 4 x 4 tiles, 4.14 / 2.27 / 1.26 into L1).
		 */
		const char *pf = (const char *)q8_group_q(w, re, 0);
		const char *pf_end = (const char *)q8_group_q(w, rn, 0);
		uint32_t calls = (m + Q8_TOK_TILE - 1) / Q8_TOK_TILE *
				 ((re - rb + Q8_TILE_ROWS - 1) / Q8_TILE_ROWS);
		size_t per = ((size_t)(pf_end - pf) / 64 + calls - 1) / calls;

		for (uint32_t t = 0; t < m; t += Q8_TOK_TILE) {
			uint32_t nt = m - t < Q8_TOK_TILE ? m - t : Q8_TOK_TILE;

			for (uint32_t r = rb; r < re; r += Q8_TILE_ROWS) {
				for (size_t k = 0; k < per && pf < pf_end; k++, pf += 64)
					_mm_prefetch(pf, _MM_HINT_T1);
				if (Q8_TOK_TILE >= 4 && nt == 4)
					tile(w, r, x, m, t, 4, y, qb, sg);
				else if (nt == 3)
					tile(w, r, x, m, t, 3, y, qb, sg);
				else if (nt == 2)
					tile(w, r, x, m, t, 2, y, qb, sg);
				else
					tile(w, r, x, m, t, 1, y, qb, sg);
			}
		}
	}
}

void Q8_ROWS_FN(const struct q8_weight *w, uint32_t r0, uint32_t r1, const struct q8_acts *x,
		uint32_t m, float *y)
{
	if (w->qbytes == Q5_QBYTES)
		rows(w, r0, r1, x, m, y, Q5_QBYTES, Q8_SIGNED_OK);
	else if (Q8_SIGNED_OK && !w->has_int8_min)
		rows(w, r0, r1, x, m, y, Q8_QBYTES, 1);
	else
		rows(w, r0, r1, x, m, y, Q8_QBYTES, 0);
}
