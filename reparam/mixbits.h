/* SPDX-License-Identifier: MIT */
#ifndef REPARAM_MIXBITS_H
#define REPARAM_MIXBITS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "reparam/calib.h"
#include "reparam/quant.h"

/*
 * Automated mixed-bit allocation (DESIGN §1.5, issue 7), in two calibration passes:
 *
 *   pass 1 (measure)  an ordinary sequential conversion at one base width; its calib hooks
 *                     quantize every linear again at each candidate width (2, 3, 4) with the
 *                     very Hessian the driver hands it, and record the output error
 *                     err[w] = tr((W - Q_w) H (W - Q_w)^T), the output energy tr(W H W^T)
 *                     and the paper's proxy score.
 *                     The base width's error is taken from the driver's own result (the
 *                     quantizer is deterministic, so it is the same number).
 *   solve             one width per linear minimizing sum weight * err (mixbits_weight) s.t.
 *                     sum reparam_storage_bits <= floor(B * sum n_params): the parameter-
 *                     weighted average over the quantized linears, scales counted, never
 *                     exceeds B. "exact" is the multiple-choice knapsack (bitalloc_exact);
 *                     "proxy" is the paper's ranking (bitalloc_proxy on the proxy score).
 *   pass 2 (convert)  the real conversion with bits_of returning the chosen widths, so each
 *                     block's inputs are those of the mixed model.
 *
 * What is exact and what is not: the knapsack is solved exactly for the measured errors and
 * the exact storage costs (mixbits_solve reports if the solver had to coarsen its grid, which
 * needs > 1e8 table cells and does not happen for models of this size). The objective is a
 * model: the errors are measured on pass-1 inputs (preceding layers at the base width, not at
 * their final widths) and per-layer output errors are summed as if independent. Pass 2's
 * per-layer errors therefore differ from the predicted ones; the budget holds regardless,
 * because storage costs do not depend on the data.
 */

#define MIXBITS_N_WIDTHS 3 /* candidate widths: 2, 3, 4 */

/* Candidate width @i (0 .. MIXBITS_N_WIDTHS - 1). */
uint32_t mixbits_width(uint32_t i);

/*
 * What the knapsack minimizes: each layer's measured output error err[w] times a per-layer
 * weight. ABS sums the errors as measured, so layers with large activations (late ffn_down)
 * dominate; REL divides each by the layer's output energy tr(W H W^T), i.e. sums relative
 * output errors, which tracks the loss better on SmolLM2 (bench/results/mixbits-*.notes.md).
 */
enum mixbits_weight {
	MIXBITS_WEIGHT_REL, /* err[w] / energy: relative output error (default) */
	MIXBITS_WEIGHT_ABS, /* err[w]: Hessian-weighted output error as measured */
	MIXBITS_WEIGHT_COUNT,
};

/* "rel", "abs"; "?" if out of range. */
const char *mixbits_weight_name(enum mixbits_weight w);
/* Parse a CLI name; returns the value (>= 0) or -EINVAL. */
int mixbits_weight_parse(const char *name);

enum mixbits_alloc {
	MIXBITS_EXACT, /* multiple-choice knapsack on the measured errors */
	MIXBITS_PROXY, /* the paper's ranking by ||V||_F * var(V) */
	MIXBITS_ALLOC_COUNT,
};

/* "exact", "proxy"; "?" if out of range. */
const char *mixbits_alloc_name(enum mixbits_alloc a);
/* Parse a CLI name; returns the value (>= 0) or -EINVAL. */
int mixbits_alloc_parse(const char *name);

/* One linear layer: its measurement and its chosen width. */
struct mixbits_layer {
	char name[64]; /* GGUF base name, "blk.3.attn_q" */
	uint32_t n_rows, n_cols;
	double err[MIXBITS_N_WIDTHS];	      /* output error at each candidate width */
	uint64_t cost_bits[MIXBITS_N_WIDTHS]; /* reparam_storage_bits at each width */
	double score;			      /* proxy score (bitalloc_proxy_score) */
	double energy;			      /* tr(W H W^T), NAN if not measured (v1 file) */
	uint32_t n_measured;		      /* widths measured so far (complete: N_WIDTHS) */
	uint32_t bits;			      /* chosen width (0 before mixbits_solve) */
};

/*
 * The allocation state. @q is the method (and its options) every width is measured and
 * converted with; only its bits vary. Layers are kept in the order the driver first reports
 * them (file order).
 */
struct mixbits {
	struct reparam_opts q;
	uint32_t base_bits; /* pass-1 width */
	uint32_t n_layers, cap;
	struct mixbits_layer *layers; /* [n_layers] */

	/* the solution (mixbits_solve) */
	enum mixbits_alloc alloc;
	enum mixbits_weight weight;
	double avg_bits_budget;
	double avg_bits;	/* achieved: sum cost / sum params, <= avg_bits_budget */
	double predicted_err;	/* sum of weighted err at the chosen widths (the objective) */
	bool exact;		/* false if the knapsack grid was coarsened */
	uint32_t n_lookup_miss; /* bits_of asked for a layer with no solution */

	/* hook plumbing: first error of a hook, which runs where it cannot return one */
	pthread_mutex_t lock;
	int hook_ret;
	struct errbuf hook_e;
	calib_layer_fn chained_on_layer;
	void *chained_arg;
};

/*
 * Start an allocation for method @q (a BCQ method: fp/rtn/gptq/acc-sim are refused with
 * -EINVAL) measured at @base_bits (one of the candidate widths). Returns 0, -EINVAL with a
 * message in @e, or -ENOMEM. Release with mixbits_done().
 */
int mixbits_init(struct mixbits *mb, const struct reparam_opts *q, uint32_t base_bits,
		 struct errbuf *e);

/* Free what @mb owns; safe on a zeroed or already-freed struct. */
void mixbits_done(struct mixbits *mb);

/*
 * Pass 1: point @run's hooks at @mb (bits_of = base width, on_hessian = measure) and wrap
 * its on_layer, which still gets called. @run->q must be @mb->q. Afterwards run
 * calib_quantize_model(), then mixbits_measure_check(). @mb is borrowed until then; the
 * hooks are thread-safe (distinct layers may be measured concurrently).
 */
void mixbits_measure_hooks(struct mixbits *mb, struct calib_run *run);

/*
 * After pass 1: 0 if every linear has all widths measured; otherwise the first hook error
 * (with its message in @e) or -EINVAL for an incomplete table.
 */
int mixbits_measure_check(struct mixbits *mb, struct errbuf *e);

/*
 * Choose the widths under @avg_bits_budget with @alloc, filling layers[].bits, avg_bits,
 * predicted_err and exact. @weight is the exact allocator's objective (the proxy ignores it
 * but predicted_err is reported in its units). Returns 0; -ENOSPC if even all-2-bit exceeds
 * the budget; -EINVAL (bad budget, incomplete measurement, or REL without energies) or
 * -ENOMEM; message in @e. May be called again with another budget, allocator or weight.
 */
int mixbits_solve(struct mixbits *mb, enum mixbits_alloc alloc, enum mixbits_weight weight,
		  double avg_bits_budget, struct errbuf *e);

/* Layer @l's error at width index @wi in @weight's units (REL with energy 0 gives 0). */
double mixbits_weighted_err(const struct mixbits_layer *l, uint32_t wi, enum mixbits_weight weight);

/*
 * Pass 2: set @run->bits_of to the solution (on_hessian cleared; @run->q = @mb->q with bits
 * 0, so a converted file says shiftadd.bits = 0: the widths are per tensor). A layer the solution does
 * not name gets the base width and counts in n_lookup_miss (callers treat > 0 as an error:
 * the measurement was made on another model).
 */
void mixbits_convert_hooks(struct mixbits *mb, struct calib_run *run);

/* The chosen width of @name, or 0 if @mb has no such layer. */
uint32_t mixbits_lookup(const struct mixbits *mb, const char *name);

/*
 * Save the measurement (method, base width, per-layer shapes, errors, energies and scores) as JSON to
 * @path, so further budgets and allocators can skip pass 1. Returns 0 or -errno.
 */
int mixbits_save(const struct mixbits *mb, const char *path, struct errbuf *e);

/*
 * Load a measurement written by mixbits_save() into a fresh @mb (as mixbits_init() would
 * leave it, plus the layers). The file's method must be @q->method: -EINVAL otherwise.
 * Malformed files give -EBADMSG with a message in @e. Costs are recomputed from @q. Version 1
 * files (no energies) load with energy NAN: only the ABS weight can solve them.
 */
int mixbits_load(struct mixbits *mb, const struct reparam_opts *q, const char *path,
		 struct errbuf *e);

#endif /* REPARAM_MIXBITS_H */
