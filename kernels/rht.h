/* SPDX-License-Identifier: MIT */
#ifndef KERNELS_RHT_H
#define KERNELS_RHT_H

#include "kernels/lut.h"

#include <stdbool.h>
#include <stdint.h>

/*
 * Randomized Hadamard transforms (DESIGN §1.4, issue 8): incoherence processing that stays
 * multiplication-free at inference. For a dimension n and a seed,
 *
 *     T = Hb · D        (unnormalized: every nonzero entry is +-1)
 *
 * D = diag(+-1) is the seeded random sign vector; Hb is block-diagonal, each block of size
 * b = m · 2^p the Kronecker product H_m ⊗ H_{2^p} of a small Paley Hadamard matrix
 * (m = 1, 12, 20, 28 or 36) and a Sylvester (Walsh-Hadamard) matrix. Inside a block,
 * coordinate i · 2^p + j (i < m, j < 2^p) carries (row i of H_m, row j of H_{2^p}).
 * T Tᵀ = Tᵀ T = Λ = diag(b of each coordinate's block): T / sqrt(Λ) is orthogonal. A single
 * block (b = n, Λ = n I) is chosen whenever n = m · 2^p; otherwise up to 3 blocks maximizing
 * the smallest block (the transform's coherence sqrt(n / b_min) is the mixing bound), then
 * fewer blocks, then fewer adds; a power-of-two binary expansion is the last resort.
 * kernels/README.md ("Randomized Hadamard transforms") has the measurements behind this.
 *
 * Run time applies T (or Tᵀ) unnormalized: sign flips (XOR of the sign bit), butterflies
 * and +-1 sums — adds and subtracts only, checked by kernels/nomul.sh. The normalization is
 * folded offline into the quantized weights (reparam's shiftadd-rht method), before their
 * power-of-two rounding. Every ISA path is bit-identical to the scalar one.
 *
 * Seed → signs (part of the file format, never change it): word t is the t-th output of
 * splitmix64 started at state @seed (state += 0x9e3779b97f4a7c15 before each output); the
 * sign of coordinate j is negative iff bit (j % 64) of word j / 64 is set.
 */

#define RHT_MAX_N      (1u << 24)
#define RHT_MAX_BLOCKS 32 /* the binary-expansion fallback; chosen plans have <= 3 */
#define RHT_MAX_M      36 /* largest small Hadamard order used (cost: m - 1 adds/element) */

struct rht_block {
	uint32_t off;	  /* first coordinate */
	uint32_t size;	  /* m << p_log2 */
	uint32_t m;	  /* small Hadamard order: 1, 12, 20, 28 or 36 */
	uint32_t p_log2;  /* Walsh-Hadamard length 2^p_log2 */
	uint32_t h_off;	  /* H_m as sign masks at hmask + h_off, [m][m] row-major */
	uint32_t ht_off;  /* H_mᵀ likewise */
	uint32_t hq_off;  /* H_m as quad codes at hquad + hq_off, [m][m / 4] (rht_ref.c) */
	uint32_t hqt_off; /* H_mᵀ likewise */
};

struct rht {
	uint32_t n;
	uint64_t seed;
	uint32_t n_blocks;
	struct rht_block blk[RHT_MAX_BLOCKS];
	uint32_t *sign;	 /* [n]: 0x80000000 where D is -1, else 0 */
	uint32_t *hmask; /* small matrices as sign masks (0x80000000 for -1, 0 for +1) */
	uint8_t *hquad;	 /* the same, 4 entries per byte: bit k set where entry 4q + k is +1 */
};

/*
 * Plan the transform for dimension @n and derive its signs from @seed. @n must be a multiple
 * of 4 in [4, RHT_MAX_N] (anything else cannot be mixed by +-1 blocks of size >= 4):
 * -EINVAL otherwise. Returns 0 or -ENOMEM. Free with rht_done(). Deterministic: the same
 * (@n, @seed) gives the same transform on every host.
 */
int rht_init(struct rht *t, uint32_t n, uint64_t seed);

/* Free what rht_init allocated; safe on a zeroed or already-freed struct. */
void rht_done(struct rht *t);

/* Block size b of coordinate @j (Λ_jj; n for a single-block plan). */
uint32_t rht_scale(const struct rht *t, uint32_t j);

/*
 * x[r] <- T x[r] for @m rows of t->n floats (contiguous), in place, unnormalized.
 * Returns 0, or -EOPNOTSUPP if SHIFTADD_ISA forces an ISA this host cannot run.
 * @t is only read: thread-safe for distinct @x (callers may split rows over threads).
 */
int rht_apply(const struct rht *t, float *x, uint32_t m);

/*
 * x[r] <- Tᵀ x[r] = D Hbᵀ x[r] (unnormalized), so rht_apply_inverse(rht_apply(x)) = Λ x:
 * n · x for a single-block plan. The engine's output-side transform. Returns as rht_apply.
 */
int rht_apply_inverse(const struct rht *t, float *x, uint32_t m);

/*
 * rht_apply / rht_apply_inverse on an explicit ISA path (LUT_ISA_AUTO resolves as the LUT
 * kernels do: SHIFTADD_ISA, else the best the host runs). -EOPNOTSUPP if the host cannot
 * run @isa, -EINVAL for a bad @isa. For tests and benchmarks.
 */
int rht_apply_isa(const struct rht *t, enum lut_isa isa, bool inverse, float *x, uint32_t m);

/*
 * Dense unnormalized T (or Tᵀ with @transposed) into @M[n][n] row-major, from the
 * definition (not the fast path): the reference for tests. n * n floats, caller-provided.
 */
void rht_matrix(const struct rht *t, bool transposed, float *M);

#endif /* KERNELS_RHT_H */
