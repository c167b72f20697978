/* SPDX-License-Identifier: MIT */
#ifndef REPARAM_CALIB_H
#define REPARAM_CALIB_H

#include <stdint.h>

#include "common/err.h"
#include "common/progress.h"
#include "reparam/quant.h"

struct model;

/*
 * The calibration driver: sequential, block by block. The inputs of every calibration sample
 * to the current block are held in memory; within a block the layers are quantized
 * true-sequentially (q/k/v, then o seeing the quantized q/k/v, then gate/up, then down), each
 * from the Hessian H = 2 X X^T / n of its own input accumulated in double; then the block's
 * outputs are recomputed with the quantized weights and become the next block's inputs.
 * With two or more BLAS threads (and a model without a pool or runner) the samples of each
 * step run on two workers with half the BLAS threads each; the result is the same bits.
 */

/*
 * How the block inputs of all samples are held between the per-sample engine calls. f16
 * halves the memory (the buffers dominate it for big models); each sample is widened to f32
 * in a scratch window just before an engine call and narrowed after. Hessians are summed in
 * double either way.
 */
enum calib_dtype {
	CALIB_DTYPE_F32,
	CALIB_DTYPE_F16,
	CALIB_DTYPE_COUNT,
};

/* "f32" / "f16" -> the dtype, or -EINVAL for anything else. */
int calib_dtype_parse(const char *s);
/* The name calib_dtype_parse() accepts; "?" for out-of-range values. */
const char *calib_dtype_name(enum calib_dtype d);

/*
 * The arithmetic of the calibration passes' matrix products: the block forwards' linears, the
 * Hessians and the error-propagation products. bf16 (kernels/gemm_bf16.h) rounds their
 * inputs to bf16 and sums in f32 at twice the f32 rate, on hosts with AVX512_BF16. The
 * attention stays f32 (its f32 kernel is as fast as bf16 products there, measured, and a
 * logit's bf16 error is relative to |q| |k|, large at attention sinks); so do the Hessians'
 * double sums across chunks and the quantizer (GPTQ, BCQ).
 */
enum calib_math {
	CALIB_MATH_F32,
	CALIB_MATH_BF16,
	CALIB_MATH_COUNT,
};

/* "f32" / "bf16" -> the math, or -EINVAL for anything else. */
int calib_math_parse(const char *s);
/* The name calib_math_parse() accepts; "?" for out-of-range values. */
const char *calib_math_name(enum calib_math m);

struct calib_opts {
	const char *text_path;	/* one passage per line; passages joined with "\n\n" */
	uint32_t nsamples;	/* windows (default 128) */
	uint32_t seqlen;	/* tokens per window (default 2048) */
	uint64_t seed;		/* window offsets (default 0) */
	enum calib_dtype dtype; /* storage of the held block inputs (default f32) */
	enum calib_math math;	/* the passes' products (default f32; bf16 needs the host's) */
	/* if set: use these [nsamples][seqlen] token ids instead of reading text_path */
	const int32_t *tokens;
};

/*
 * Tokenize the passages and draw @o->nsamples windows at seeded random offsets into
 * *ret_tokens ([nsamples][seqlen], malloc'ed, caller frees). When the tokenizer asks for a
 * BOS (add_bos_token: Gemma) each window is BOS and seqlen - 1 text tokens, as the model
 * sees text at inference. -EINVAL with a message if the text has fewer than seqlen + 1
 * tokens, -errno for I/O.
 */
int calib_windows(const struct model *m, const struct calib_opts *o, int32_t **ret_tokens,
		  struct errbuf *e);

/* One quantized linear layer, named as in GGUF files ("blk.3.attn_q"). */
struct calib_tensor {
	char name[64];
	uint32_t layer;
	struct reparam_result res;
	double seconds;
};

struct calib_out {
	uint32_t n;
	struct calib_tensor *t; /* [n], in file order */
	uint32_t n_tokens;	/* calibration tokens per Hessian */
};

/* Called after each linear layer is quantized (for tables and logs). */
typedef void (*calib_layer_fn)(void *arg, const struct calib_tensor *t, uint32_t done,
			       uint32_t total);

/*
 * Mixed-bit hooks. bits_of (may be NULL) picks the bit width of each linear by its GGUF base
 * name; on_hessian (may be NULL) sees each linear's weights (before quantization) with the
 * Hessian it is about to be quantized with, e.g. to measure its error at other widths.
 * Both are called from worker threads, possibly concurrently for linears sharing an input.
 */
typedef uint32_t (*calib_bits_fn)(void *arg, const char *name);
typedef void (*calib_hessian_fn)(void *arg, const char *name, const float *W, uint32_t n_out,
				 uint32_t n_in, const double *H);

struct calib_run {
	struct reparam_opts q;
	/*
	 * Error propagation strength in [0, 1]; 0 = off. Each linear is quantized toward the
	 * weights whose output on the quantized model's input best matches the unquantized
	 * model's output (strength 1), instead of the unquantized weights themselves (0). Runs
	 * an unquantized copy of every block beside the quantized one, on qep_samples samples.
	 */
	double qep;
	/*
	 * Error propagation: the first qep_samples calibration samples (0 or more than
	 * calib.nsamples = all) are the ones the unquantized copy runs on and the correction is
	 * fitted from (with their own Hessian); GPTQ still weighs errors with all samples'. Each
	 * costs about what a sample of the quantized model does, in work and held activations.
	 * On SmolLM2 (128 x 2048, rht both 3-bit) 24 took the conversion from 3,840 to 2,019 s
	 * of CPU and 6.3 to 4.2 GiB, and kept 83% of the correction's gain (PPL 31.56; all:
	 * 30.92, none: 34.63). `shiftadd convert`'s default: calib_default_qep_samples().
	 */
	uint32_t qep_samples;
	/*
	 * 0: the LM head stays as loaded. Else its bits (1..QW_MAX_BITS): after the last block the
	 * head is quantized too, with @q's method and options at this width, against the Hessian
	 * of its input (the final norm of the quantized model's residual stream), without error
	 * propagation. Needs a method with a Hessian whose result is a BCQ weight.
	 */
	uint32_t head_bits;
	calib_bits_fn bits_of;
	calib_hessian_fn on_hessian;
	void *hook_arg;
	struct calib_opts calib;
	calib_layer_fn on_layer;
	void *on_layer_arg;
	progress_fn progress; /* units: (layer, stage, sample) steps; called from the
				 sample workers, one call at a time */
	void *progress_arg;
};

/*
 * Quantize every linear layer of @m (embeddings excepted; the LM head only with
 * @o->head_bits, last, named "output") with @o->q. The
 * model's dense weights are replaced in place by the dequantized results, so @m afterwards
 * is the simulated quantized model. Methods that need no Hessian skip the calibration
 * forward passes. On success @out holds one result per linear (caller frees with
 * calib_out_done()). Errors: -EINVAL / -EDOM from the quantizer with the layer named in @e
 * (-EINVAL also for a bad calib.dtype), -ERANGE if an activation overflows f16 storage,
 * -ENOMEM, -EOPNOTSUPP if the model's layers are not dense.
 */
int calib_quantize_model(struct model *m, const struct calib_run *o, struct calib_out *out,
			 struct errbuf *e);

void calib_out_done(struct calib_out *out);

/*
 * Calibration tokens per input dimension of the widest linear below which the default
 * error-propagation strength is 0: the correction is fitted from a k x k cross-covariance,
 * and on SmolLM2 (k up to 1536) 2,048 and 128 calibration tokens made it hurt (+9% PPL at
 * 4 bits, a broken model at 3) where 32,768 and 262,144 helped. 8,192 (5.3 per dimension)
 * still helped acc 3-bit by 5%: one point, so the threshold keeps a margin.
 */
#define CALIB_QEP_MIN_TOKENS_PER_DIM 16

/*
 * The strength `shiftadd convert` uses unless told: reparam_default_qep() of @o->q.method
 * when @o->calib asks for at least CALIB_QEP_MIN_TOKENS_PER_DIM tokens per input dimension
 * of @m's widest linear, else 0.
 */
double calib_default_qep(const struct model *m, const struct calib_run *o);

/* Samples the error-propagation fit of @o runs on: qep_samples capped at nsamples (0 = all). */
uint32_t calib_qep_fit_samples(const struct calib_run *o);

/*
 * Calibration tokens the default error-propagation fit runs on (calib_default_qep_samples()).
 * Each fitted window costs about what a quantized window does, so this bounds the correction's
 * share of a conversion; on SmolLM2 at 128 x 2048 (acc 3-bit, full protocol) see
 * bench/results/qep-samples-acc3-2026-11-24.md.
 */
#define CALIB_QEP_FIT_TOKENS 65536

/*
 * The qep_samples `shiftadd convert` uses unless told: the first windows of @o->calib holding
 * CALIB_QEP_FIT_TOKENS tokens, and at least CALIB_QEP_MIN_TOKENS_PER_DIM per input dimension
 * of @m's widest linear; 0 (all) when that is every window.
 */
uint32_t calib_default_qep_samples(const struct model *m, const struct calib_run *o);

#endif /* REPARAM_CALIB_H */
