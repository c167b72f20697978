/* SPDX-License-Identifier: MIT */
#ifndef REPARAM_QUANT_H
#define REPARAM_QUANT_H

#include "common/err.h"
#include "kernels/qweight.h"

#include <stdbool.h>
#include <stdint.h>

/*
 * Numerical core of the reparameterizer (DESIGN §1): one linear layer in, one quantized layer
 * out. The calibration driver accumulates H = 2 X X^T / n per layer (double, K x K) and calls
 * reparam_quantize() once per layer and method; everything here is single-threaded C plus
 * OpenBLAS/LAPACK (whose thread count the caller sets with openblas_set_num_threads()).
 *
 * Conventions: W is N x K row-major f32 (N outputs, K inputs, y = W x). H is K x K row-major
 * double, symmetric; only its upper triangle (H[i][j], i <= j) is ever read, so a caller that
 * accumulates with dsyrk into the upper triangle need not mirror it.
 */

enum reparam_method {
	REPARAM_FP,		  /* no quantization: dense copy (reference row) */
	REPARAM_RTN,		  /* uniform asymmetric round-to-nearest, per row or group */
	REPARAM_GPTQ,		  /* uniform asymmetric + GPTQ error compensation */
	REPARAM_BCQ,		  /* LUT-GEMM style BCQ: real alpha, no compensation */
	REPARAM_SHIFTADD_LAT,	  /* BCQ + APoT, block layout, inside the GPTQ loop */
	REPARAM_SHIFTADD_ACC,	  /* BCQ + APoT, column layout, inside the GPTQ loop */
	REPARAM_SHIFTADD_ACC_SIM, /* acc in a random orthogonal basis, de-rotated: NOT deployable */
	REPARAM_SHIFTADD_RHT,	  /* acc in a randomized Hadamard basis, kept: deployable (rht.c) */
	REPARAM_METHOD_COUNT,
};

/*
 * Which sides of a shiftadd-rht layer are transformed (CLI --rht input|both). The engine must
 * apply the same transforms at run time: see reparam/rht.c for the exact steps.
 */
enum reparam_rht {
	REPARAM_RHT_NONE,  /* not a shiftadd-rht result */
	REPARAM_RHT_INPUT, /* y = Q (T_in x) */
	REPARAM_RHT_BOTH, /* y = T_outᵀ (Q (T_in x)), T_outᵀ applied before bias/RoPE/act/residual */
	REPARAM_RHT_COUNT,
};

/* "none", "input", "both"; "?" if out of range. */
const char *reparam_rht_name(enum reparam_rht r);
/* Parse "input" or "both" (the CLI values); returns the value (> 0) or -EINVAL. */
int reparam_rht_parse(const char *name);

/* CLI name of @m ("fp", "rtn", "gptq", "bcq", "shiftadd-lat", ...); "?" if out of range. */
const char *reparam_method_name(enum reparam_method m);
/* Parse a CLI name; returns the method (>= 0) or -EINVAL. */
int reparam_method_parse(const char *name);

struct reparam_opts {
	enum reparam_method method;
	uint32_t bits;	       /* BCQ methods: 1..QW_MAX_BITS planes; uniform: 1..8 */
	uint32_t group;	       /* uniform methods: columns per scale/zero, 0 = whole row */
	uint32_t apot;	       /* shiftadd-*: power-of-two terms per alpha, 1..8 (default 3) */
	uint32_t rounds;       /* BCQ alternating refinement rounds (default 50) */
	enum qw_layout layout; /* REPARAM_BCQ only (default ROW); shiftadd-* fix their own */
	bool act_order;	       /* GPTQ methods: walk columns by descending diag(H) */
	double percdamp;       /* GPTQ damping: lambda = percdamp * mean(diag H) (default 0.01) */
	uint32_t block_size;   /* GPTQ lazy-update block, a multiple of 8 (default 128) */
	uint64_t seed;	       /* shiftadd-acc-sim: seed of the random rotation */
	/*
	 * shiftadd-rht: sides (default BOTH, which measured 1.54x fp PPL at 3 bits against
	 * 2.01x for INPUT, README) and the seeds of the input transform (over K; layers
	 * that read the same activations, q/k/v or gate/up, MUST get the same seed so the engine
	 * transforms that input once) and of the output transform (over N, BOTH only).
	 */
	enum reparam_rht rht;
	uint64_t rht_seed_in;
	uint64_t rht_seed_out;
};

/* Fill @o with the defaults for method @m at @bits bits (apot 3, 50 rounds, 0.01, 128, ...). */
void reparam_opts_init(struct reparam_opts *o, enum reparam_method m, uint32_t bits);

/* True for methods that need H (GPTQ loop or rotation); the others accept H == NULL. */
bool reparam_method_needs_hessian(enum reparam_method m);

/*
 * Default error-propagation strength (calib_run.qep) of method @m: REPARAM_DEFAULT_QEP for
 * the deployable shift-add methods it was measured on (shiftadd-acc, shiftadd-rht), 0 for the
 * rest (the baselines and the paper's acc-sim reference stay as published; lat unmeasured).
 */
#define REPARAM_DEFAULT_QEP 0.3
double reparam_default_qep(enum reparam_method m);

/*
 * Result of one layer. @dense is always filled: it is what the forward pass should use from
 * now on (for BCQ results it is exactly qweight_dequant(&qw)). @has_qweight says @qw holds a
 * BCQ weight the shift-add kernels and the GGUF writer take; uniform methods and acc-sim
 * have only @dense. @deployable is false for acc-sim (dense de-rotated weights), fp and real-valued
 * (apot 0) alphas.
 * shiftadd-rht: @qw is in the transformed basis (with the transforms' normalization folded
 * in) and @rht / seeds say which run-time transforms it needs; @dense is back in the
 * original basis, T_outᵀ Q T_in, so a dense forward pass needs no transform.
 */
struct reparam_result {
	enum reparam_method method;
	uint32_t n_rows, n_cols;
	bool has_qweight;
	bool deployable;
	uint32_t bits;		/* bits per weight before scales (0 for fp) */
	struct qweight qw;	/* valid iff has_qweight */
	float *dense;		/* [n_rows][n_cols] */
	double bits_per_weight; /* including scales (see reparam_quantize) */
	double err_weight;	/* ||W - Q||_F^2 */
	double err_output;	/* tr((W - Q) H (W - Q)^T) with the undamped H; NaN if no H */
	double rel_err_output;	/* err_output / tr(W H W^T); NaN if no H or W H W^T == 0 */
	enum reparam_rht rht;	/* shiftadd-rht: transformed sides; NONE otherwise */
	uint64_t rht_seed_in;	/* valid iff rht != NONE: rht_init(&t, n_cols, seed) */
	uint64_t rht_seed_out;	/* valid iff rht == BOTH: rht_init(&t, n_rows, seed) */
};

/*
 * Quantize one layer W (@n x @k) with method @o->method, given its Hessian @H (@k x @k; may be
 * NULL unless reparam_method_needs_hessian()). Fills @ret (caller frees it with
 * reparam_result_done()). Ragged shapes are handled (partial 8-column or N/8-row blocks).
 * Bits per weight count alpha as 16 bits (real) or 8 bits per power-of-two term (APoT, sign +
 * 7-bit exponent), uniform scale as 16 bits and zero point as @bits bits per group.
 * Returns 0; -EINVAL (bad option, NaN/Inf in W or H, negative diag(H), missing H) with a
 * message in @e; -EDOM (H not positive definite after damping); -ENOMEM.
 * Thread-safe for distinct @ret (no global state besides OpenBLAS's).
 */
int reparam_quantize(const struct reparam_opts *o, const float *W, uint32_t n, uint32_t k,
		     const double *H, struct reparam_result *ret, struct errbuf *e);

/*
 * Storage of one @n x @k layer quantized with @o, in bits (weights + scales, as counted by
 * bits_per_weight), without quantizing: the cost_bits of a bitalloc_problem option. Returns 0
 * for an invalid method.
 */
uint64_t reparam_storage_bits(const struct reparam_opts *o, uint32_t n, uint32_t k);

/* Free what @r owns; safe on a zeroed or already-freed result. */
void reparam_result_done(struct reparam_result *r);

/*
 * Hessian-weighted output error tr((W - Q) H (W - Q)^T) of two @n x @k matrices (@Q NULL: a
 * zero matrix, giving tr(W H W^T)), H upper triangle read. Returns 0 and sets *@ret_err, or
 * -ENOMEM.
 */
int reparam_output_error(const float *W, const float *Q, uint32_t n, uint32_t k, const double *H,
			 double *ret_err);

/*
 * APoT: alpha as a sum of at most @n_terms signed powers of two 2^e, APOT_EXP_MIN <= e <=
 * APOT_EXP_MAX, chosen greedily (nearest power of two of the remaining residual, exponents
 * strictly decreasing, at most 24 bits apart so the sum is exact in float). @n_terms == 0
 * returns @x rounded to float. Values below 2^(APOT_EXP_MIN - 1) round to 0.
 */
#define APOT_EXP_MIN   (-64)
#define APOT_EXP_MAX   63
#define APOT_MAX_TERMS 8
float apot_round(double x, uint32_t n_terms);

/*
 * Minimal signed-digit decomposition of @a: a = sum_t ret_sign[t] * 2^ret_exp[t] with the
 * fewest terms (non-adjacent form), largest exponent first. Writes at most @max_terms terms.
 * Returns the number of terms (0 for a == 0), or -ERANGE if @a needs more than @max_terms
 * terms, is not finite, or has an exponent outside int8. For the GGUF writer and the kernels.
 */
int apot_decompose(float a, uint32_t max_terms, int8_t *ret_exp, int8_t *ret_sign);

/*
 * Mixed-bit allocation (issue 7): layer l takes one of @n_choices options j, each with an
 * error err[l][j] and a storage cost cost_bits[l][j] (weights + scales, in bits). Choose one
 * option per layer minimizing sum err subject to sum cost <= floor(avg_bits * sum n_params).
 */
struct bitalloc_problem {
	uint32_t n_layers;
	uint32_t n_choices;	   /* options per layer, <= 255 */
	const double *err;	   /* [n_layers][n_choices], finite, >= 0 */
	const uint64_t *cost_bits; /* [n_layers][n_choices] */
	const uint64_t *n_params;  /* [n_layers] */
	double avg_bits;	   /* budget in bits per parameter */
};

/*
 * Exact solver: dynamic programming over the budget in units of g = gcd of all cost
 * differences, which is exact for integer costs (no rounding). When the table would exceed
 * @max_cells (0 = 1e8) the unit is enlarged and costs are rounded UP, so the answer stays
 * feasible but is optimal only for that coarser grid: *@ret_exact tells which (may be NULL).
 * Writes ret_choice[n_layers]. Returns 0, -ENOSPC (even the cheapest options exceed the
 * budget), -EINVAL (bad problem; message in @e) or -ENOMEM.
 */
int bitalloc_exact(const struct bitalloc_problem *p, uint32_t max_cells, uint32_t *ret_choice,
		   bool *ret_exact, struct errbuf *e);

/*
 * The paper's proxy allocation: options must be ordered by increasing cost for every layer.
 * All layers start at the most expensive option "lo" whose uniform use fits the budget; then,
 * in descending @score order (ties by index), each layer moves to option lo + 1 if the budget
 * still allows (the paper's fixed-ratio ranking, with the ratio set by the budget).
 * Returns 0, -ENOSPC, -EINVAL or -ENOMEM as bitalloc_exact().
 */
int bitalloc_proxy(const struct bitalloc_problem *p, const double *score, uint32_t *ret_choice,
		   struct errbuf *e);

/*
 * The paper's sensitivity criterion for one layer: with U = chol(H^-1) upper (dead columns
 * and damping as in GPTQ) and V = W diag(1/U_kk), score = ||V||_F * var(V) (sample variance
 * over all entries). Returns 0, -EINVAL, -EDOM or -ENOMEM.
 */
int bitalloc_proxy_score(const float *W, uint32_t n, uint32_t k, const double *H, double percdamp,
			 double *ret_score, struct errbuf *e);

#endif /* REPARAM_QUANT_H */
