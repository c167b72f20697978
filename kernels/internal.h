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

/* One token's lookup state, built by lut_ops.tables and read by lut_ops.tiles. */
struct lut_tok {
	uint8_t *tab;	 /* [n_rowsets][n_pairs][bits][32]: entry = int8 value + 128 */
	uint8_t *dshift; /* [n_chunks]: left shift of each chunk's int16 sum into the int32 sum */
	int32_t s_base;	 /* y = (float)sum * 2^s_base */
};

struct lut_ops {
	const char *name;
	/*
	 * Build @tok for activations x[n_cols]. @xs is scratch of
	 * n_rowsets * bits * n_pairs * 8 floats, @mx of n_chunks floats.
	 */
	void (*tables)(const struct lut_weight *w, const float *x, float *xs, float *mx,
		       struct lut_tok *tok);
	/*
	 * Output rows of tiles [t0, t1) for @m tokens: y[j][row] for token j (y rows are
	 * n_rows apart). @acc is scratch of m * LUT_TILE_ROWS int32.
	 */
	void (*tiles)(const struct lut_weight *w, uint32_t t0, uint32_t t1, uint32_t m,
		      const struct lut_tok *toks, float *y, int32_t *acc);
};

void lut_tables_ref(const struct lut_weight *w, const float *x, float *xs, float *mx,
		    struct lut_tok *tok);
void lut_tiles_ref(const struct lut_weight *w, uint32_t t0, uint32_t t1, uint32_t m,
		   const struct lut_tok *toks, float *y, int32_t *acc);
void lut_tables_avx2(const struct lut_weight *w, const float *x, float *xs, float *mx,
		     struct lut_tok *tok);
void lut_tiles_avx2(const struct lut_weight *w, uint32_t t0, uint32_t t1, uint32_t m,
		    const struct lut_tok *toks, float *y, int32_t *acc);
void lut_tiles_avx512(const struct lut_weight *w, uint32_t t0, uint32_t t1, uint32_t m,
		      const struct lut_tok *toks, float *y, int32_t *acc);

/* The ops for @isa (never LUT_ISA_AUTO), whether or not the host runs them. */
const struct lut_ops *lut_ops_of(enum lut_isa isa);

/*
 * The ISA files must disassemble without a single multiply instruction (mk/nomul.sh), but
 * the compiler turns a loop of n pointer additions back into base + n * step. Hiding the
 * value after each addition keeps the additions. Used only outside the hot loops.
 */
#define LUT_OPAQUE(v) __asm__ volatile("" : "+r"(v))

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

/*
 * From a chunk's largest table magnitude, the scale exponent s with max / 2^s in [64, 128),
 * so entries round into [-128, 128] and clamp to +-127. INT32_MIN for an all-zero chunk.
 */
static inline int32_t lut_chunk_exp(float mx)
{
	uint32_t ex = (lut_f2u(mx) >> 23) & 0xff;

	return ex ? (int32_t)ex - 127 - 6 : INT32_MIN;
}

/* Turn per-chunk exponents (in dshift's place, as int32 @s) into shifts; returns s_base. */
static inline int32_t lut_chunk_shifts(const struct lut_weight *w, const int32_t *s,
				       uint8_t *dshift)
{
	int32_t s_max = INT32_MIN, s_floor;

	for (uint32_t c = 0; c < w->n_chunks; c++)
		s_max = s[c] > s_max ? s[c] : s_max;
	if (s_max == INT32_MIN)
		s_max = 0;
	s_floor = s_max - (int32_t)w->max_spread;
	for (uint32_t c = 0; c < w->n_chunks; c++)
		dshift[c] = (uint8_t)((s[c] > s_floor ? s[c] : s_floor) - s_floor);
	return s_floor;
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
/* Columns [j0, j1) of the m x 2^p_log2 block x: x[:, j] <- H x[:, j], H as sign masks. */
void rht_small_ref(const uint32_t *h, uint32_t m, uint32_t p_log2, float *x, uint32_t j0,
		   uint32_t j1);
/* x[j] ^= sign[j] (sign-bit flips), j < n. */
void rht_signs_ref(const uint32_t *sign, float *x, uint32_t n);

#endif /* KERNELS_INTERNAL_H */
