/* SPDX-License-Identifier: MIT */
#ifndef KERNELS_INTERNAL_H
#define KERNELS_INTERNAL_H

/*
 * What the kernel files share: one token's tables, the per-ISA entry points and the exact
 * shift (exponent add) every path uses, so that all ISA paths give bit-identical results.
 */

#include "kernels/lut.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/*
 * One token's lookup state, built by lut_ops.tables and read by lut_ops.tiles.
 * A table entry is a 14-bit value v (|v| <= LUT_ENTRY_MAX) stored as u = v + LUT_ENTRY_BIAS
 * in [1, 2^14), split into two 7-bit digits, one byte each, so that vpshufb can look up each
 * half: per (pair, plane) step 64 bytes, the low digits of group 2p's 16 entries, their high
 * digits, then the same for group 2p+1. Digits below 128 let the lookups of two groups be
 * added as bytes before they are widened.
 */
struct lut_tok {
	uint8_t *tab;  /* [n_rowsets][n_pairs][bits][64] */
	int32_t *cexp; /* [n_chunks]: a chunk's integer sum counts units of 2^cexp */
};

/*
 * A range of whole 64-column chunks of one token's tables, for every rowset and plane: chunks
 * are independent (each scale depends only on its own chunk), so the table build of one token
 * can be split over workers. Computed by the driver (lut.c), so that the ISA files need no
 * multiplications or divisions to find their start.
 */
struct lut_span {
	uint32_t c0, c1;      /* chunks [c0, c1) */
	uint32_t p0, p1;      /* pairs [8 c0, min(8 c1, n_pairs)) */
	uint32_t k0, k1;      /* columns [64 c0, min(64 c1, n_cols)) */
	uint32_t kend;	      /* 8 p1: columns past k1 up to here are zero padding */
	uint32_t cb0, in_cb0; /* column block of k0, and k0's offset in it */
	uint64_t tab0;	      /* byte offset of pair p0 in a rowset's tables (p0 * bits * 64) */
	uint64_t rowset_tab;  /* bytes of one rowset's tables (n_pairs * bits * 64) */
};

/*
 * Token-lane tables for batched lookups: the tables of up to LUT_BATCH tokens side by side,
 * so that one 32-byte load gives one table entry for all of them and a row's lookups serve
 * the whole batch. Per (rowset, pair, plane) step, in the per-token order of steps,
 * LUT_BATCH_STEP bytes: group 2p's 16 entries, then group 2p+1's, each entry LUT_BATCH uint16
 * (the token's stored value, the 14-bit entry + LUT_ENTRY_BIAS) in token order; tokens past
 * n_tok read as 0.
 * The integer sums and the float operations per token are the per-token path's, so the
 * batched path gives the same bits (tested against lut_gemv).
 */
#define LUT_BATCH	16
#define LUT_BATCH_STEP	(2 * 16 * LUT_BATCH * 2)
#define LUT_BATCH_TILES 16 /* tiles whose rows share a chunk's token-lane tables in L1 */

/* Batch build scratch: one chunk of LUT_BATCH tokens' activations, then per (rowset, plane)
 * their alpha-shifted values. */
#define LUT_BATCH_XS_FLOATS(w) \
	((1 + (size_t)(w)->n_rowsets * (w)->bits) * LUT_CHUNK_PAIRS * LUT_PAIR_COLS * LUT_BATCH)

struct lut_batch {
	uint8_t *tab;	/* [n_rowsets * n_pairs * bits][LUT_BATCH_STEP] */
	int32_t *cexp;	/* [n_chunks][LUT_BATCH]: the tokens' chunk exponents (0 past n_tok) */
	uint32_t n_tok; /* real tokens, 1..LUT_BATCH */
};

struct lut_ops {
	const char *name;
	/*
	 * Build @tok's tables and chunk scales over span @sp for activations x[n_cols]. @xs is
	 * scratch of n_rowsets * bits * n_pairs * 8 floats, @mx of n_chunks floats (both
	 * indexed by absolute column/chunk).
	 */
	void (*tables)(const struct lut_weight *w, const float *x, const struct lut_span *sp,
		       float *xs, float *mx, struct lut_tok *tok);
	/*
	 * Output rows of half-tiles [h0, h1) (half-tile h: rows 32 (h % 2) .. + 31 of tile
	 * h / 2; halves balance two workers over 9 tiles, or 3) for @m tokens: y[j][row] for
	 * token j (y rows are n_rows apart). @acc is scratch of m * LUT_TILE_ROWS floats.
	 */
	void (*tiles)(const struct lut_weight *w, uint32_t h0, uint32_t h1, uint32_t m,
		      const struct lut_tok *toks, float *y, float *acc);
	/*
	 * Optional (NULL: no batched path): @b's token-lane tables and chunk exponents over span
	 * @sp from its tokens' activations x[n_tok][n_cols] (the entries tables() would build,
	 * in token lanes; @xs: scratch of LUT_BATCH_XS_FLOATS(w) floats), and output rows of
	 * half-tiles [h0, h1) for @b's tokens (y as in tiles; @acc: LUT_BATCH_TILES *
	 * LUT_TILE_ROWS * LUT_BATCH floats).
	 */
	void (*batch_build)(const struct lut_weight *w, const float *x, const struct lut_span *sp,
			    float *xs, struct lut_batch *b);
	void (*batch_tiles)(const struct lut_weight *w, uint32_t h0, uint32_t h1,
			    const struct lut_batch *b, float *y, float *acc);
};

void lut_tables_ref(const struct lut_weight *w, const float *x, const struct lut_span *sp,
		    float *xs, float *mx, struct lut_tok *tok);
void lut_tiles_ref(const struct lut_weight *w, uint32_t h0, uint32_t h1, uint32_t m,
		   const struct lut_tok *toks, float *y, float *acc);
void lut_tables_avx2(const struct lut_weight *w, const float *x, const struct lut_span *sp,
		     float *xs, float *mx, struct lut_tok *tok);
void lut_tiles_avx2(const struct lut_weight *w, uint32_t h0, uint32_t h1, uint32_t m,
		    const struct lut_tok *toks, float *y, float *acc);
void lut_build_batch_avx2(const struct lut_weight *w, const float *x, const struct lut_span *sp,
			  float *xs, struct lut_batch *b);
void lut_tiles_batch_avx2(const struct lut_weight *w, uint32_t h0, uint32_t h1,
			  const struct lut_batch *b, float *y, float *acc);
void lut_tiles_avx512(const struct lut_weight *w, uint32_t h0, uint32_t h1, uint32_t m,
		      const struct lut_tok *toks, float *y, float *acc);

/*
 * Half-tiles [h0, h1) as tiles [*t0, *t1) with, for tile t, halves [lut_half_lo(t), ...hi):
 * all but the first and last tile have both.
 */
static inline void lut_half_span(uint32_t h0, uint32_t h1, uint32_t *t0, uint32_t *t1)
{
	*t0 = h0 >> 1;
	*t1 = (h1 + 1) >> 1;
}

static inline uint32_t lut_half_lo(uint32_t t, uint32_t h0)
{
	return t == h0 >> 1 ? h0 & 1 : 0;
}

static inline uint32_t lut_half_hi(uint32_t t, uint32_t h1)
{
	return t == (h1 - 1) >> 1 ? ((h1 - 1) & 1) + 1 : 2;
}

/* The ops for @isa (never LUT_ISA_AUTO), whether or not the host runs them. */
const struct lut_ops *lut_ops_of(enum lut_isa isa);

/*
 * The ISA files must disassemble without a single multiply instruction (mk/nomul.sh), but
 * the compiler turns a loop of n pointer additions back into base + n * step. Hiding the
 * value after each addition keeps the additions. Used only outside the hot loops.
 */
#define LUT_OPAQUE(v) __asm__ volatile("" : "+r"(v))

/* The (pair, plane) steps of the chunk that starts at pair @p, counted by additions. */
static inline uint32_t lut_chunk_steps(const struct lut_weight *w, uint32_t p)
{
	uint32_t n_pairs = w->n_pairs - p < LUT_CHUNK_PAIRS ? w->n_pairs - p : LUT_CHUNK_PAIRS;
	uint32_t n_steps = 0;

	for (uint32_t q = 0; q < n_pairs; q++) {
		n_steps += w->bits;
		LUT_OPAQUE(n_steps);
	}
	return n_steps;
}

/* Tile @t's planes, found by additions (the ISA files must not multiply). */
static inline const uint8_t *lut_tile_planes(const struct lut_weight *w, uint32_t t)
{
	const uint8_t *tile = w->planes;

	for (uint32_t i = 0; i < t; i++) {
		tile += w->tile_bytes;
		LUT_OPAQUE(tile);
	}
	return tile;
}

static inline uint32_t lut_f2u(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static inline float lut_u2f(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/*
 * x * 2^e by adding e to the exponent field: exact for normal results. Zero and subnormal
 * inputs and results below the normal range become signed zero, results past it signed
 * infinity. The SIMD paths implement exactly this, in this order of tests.
 */
static inline float lut_shift_f32(float x, int32_t e)
{
	uint32_t u = lut_f2u(x), ex = (u >> 23) & 0xff;
	int32_t ne = (int32_t)ex + e;

	if (ex == 0 || ne < 1)
		u &= 0x80000000u;
	else if (ne > 254)
		u = (u & 0x80000000u) | 0x7f800000u;
	else
		u += (uint32_t)e << 23;
	return lut_u2f(u);
}

#define LUT_ENTRY_MAX  8191
#define LUT_BIAS_SHIFT 13
#define LUT_ENTRY_BIAS (1 << LUT_BIAS_SHIFT)
#define LUT_DIGIT_BITS 7 /* a biased entry = low digit + 2^7 * high digit */
#define LUT_DIGIT_MASK 127
#define LUT_SCALE_TOP  12 /* a chunk's largest entry magnitude lands in [2^12, 2^13) */

/*
 * From a chunk's largest table magnitude, the scale exponent s with max / 2^s in
 * [2^12, 2^13), so entries round into [-2^13, 2^13] and clamp to +-LUT_ENTRY_MAX. An all-zero
 * chunk (all entries 0 whatever the scale) gets 0.
 */
static inline int32_t lut_chunk_exp(float mx)
{
	uint32_t ex = (lut_f2u(mx) >> 23) & 0xff;

	return ex ? (int32_t)ex - 127 - LUT_SCALE_TOP : 0;
}

/* A term code's (struct lut_terms) exponent e and sign bit (0 or 0x80000000). */
static inline int32_t lut_term_e(uint16_t code, int32_t e_bias)
{
	return (int32_t)((code >> 7) & 0xff) - e_bias;
}

static inline uint32_t lut_term_sign(uint16_t code)
{
	return (uint32_t)(code & 0x8000) << 16;
}

/*
 * Randomized Hadamard transforms (kernels/rht.h): the same arithmetic on every path, so all
 * are bit-identical. rows: @m rows of t->n floats, forward (signs, Walsh-Hadamard, small H)
 * or, with @inverse, the transpose in reverse order. The scalar pieces are shared by the SIMD
 * files for blocks narrower than their vectors.
 */
struct rht;
void rht_rows_ref(const struct rht *t, float *x, uint32_t m, bool inverse);
void rht_rows_avx2(const struct rht *t, float *x, uint32_t m, bool inverse);
void rht_rows_avx512(const struct rht *t, float *x, uint32_t m, bool inverse);
/* x[2^p_log2] <- H x (Sylvester), stage h = 1, 2, 4, ... */
void rht_fwht_ref(float *x, uint32_t p_log2);
/*
 * Columns [j0, j1) of the m x 2^p_log2 block x: x[:, j] <- H x[:, j], H as quad codes
 * (struct rht.hquad), summed as rht_ref.c's top comment has it.
 */
void rht_small_ref(const uint8_t *hq, uint32_t m, uint32_t p_log2, float *x, uint32_t j0,
		   uint32_t j1);
/* rht_small_ref over all columns, eight at a time (AVX2; the AVX-512 path calls it too). */
void rht_small_avx2(const uint8_t *hq, uint32_t m, uint32_t p_log2, float *x);
/* x[j] ^= sign[j] (sign-bit flips), j < n. */
void rht_signs_ref(const uint32_t *sign, float *x, uint32_t n);

/*
 * bf16 products for the offline optimizer (kernels/gemm_bf16.h): whether the host has them
 * (dispatch.c's probe), and the AVX-512 products behind gemm_bf16_nt/tn, whose arguments the
 * caller has checked. @a_kc/@b_kc: k is the fast index of A / B (else the row index is).
 */
bool kernels_host_bf16(void);
int gemm_bf16_avx512(uint32_t m, uint32_t n, uint32_t k, const float *a, size_t lda, bool a_kc,
		     const float *b, size_t ldb, bool b_kc, float *c, size_t ldc, bool upper);

#endif /* KERNELS_INTERNAL_H */
