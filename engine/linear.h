/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_LINEAR_H
#define ENGINE_LINEAR_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/lut.h"

/*
 * The linear-layer interface: y[m][n_out] = x[m][n_in] * W^T (+ bias). The model code calls
 * only linear_forward(); which backend holds W (dense f32 through BLAS, or the shift-add LUT
 * kernels) is decided when the model is loaded.
 */

struct linear;

struct linear_ops {
	const char *name;
	/* y = x W^T for @m rows of x; must not read y before writing it. */
	void (*forward)(const struct linear *l, const float *x, float *y, uint32_t m);
	/* Free backend state (not the struct itself). */
	void (*done)(struct linear *l);
	/* Optional: W as f32 into dst[n_out][n_in] (see linear_weights_f32()). */
	void (*to_f32)(const struct linear *l, float *dst);
};

struct linear {
	const struct linear_ops *ops;
	uint32_t n_out;
	uint32_t n_in;
	const float *bias; /* [n_out] or NULL; owned by the model's storage */
	void *impl;	   /* backend data */
};

static inline void linear_add_bias(const struct linear *l, float *y, uint32_t m)
{
	if (l->bias) {
		for (uint32_t r = 0; r < m; r++)
			for (uint32_t i = 0; i < l->n_out; i++)
				y[(uint64_t)r * l->n_out + i] += l->bias[i];
	}
}

static inline void linear_forward(const struct linear *l, const float *x, float *y, uint32_t m)
{
	l->ops->forward(l, x, y, m);
	linear_add_bias(l, y, m);
}

/*
 * ys[i] = linear_forward(ls[i], x) for @n layers reading the same input @x (@m rows), as
 * q/k/v or gate/up do: layers quantized in one randomized Hadamard basis (shiftadd-rht, the
 * converter gives layers that share an input one input seed) transform x once for all.
 */
void linear_forward_shared(const struct linear *const *ls, uint32_t n, const float *x,
			   float *const *ys, uint32_t m);

/*
 * For linear_forward_shared(): ys[i] = ls[i]'s forward of @x (no bias) when @ls are 2 to
 * LUT_MULTI_MAX shift-add layers on one task runner with at least as many layers as
 * workers, one task per layer (kernels/lut.h lut_gemm_multi: each layer's tables built once
 * instead of once per worker); returns false and does nothing otherwise.
 */
bool linear_sa_forward_multi(const struct linear *const *ls, uint32_t n, const float *x,
			     float *const *ys, uint32_t m);

/*
 * Dense backend over @w ([n_out][n_in] row-major f32). @w is borrowed (the model owns it)
 * unless @own is set, in which case linear_done() frees it (on success only).
 * Returns 0 or -ENOMEM.
 */
int linear_init_dense(struct linear *l, float *w, uint32_t n_out, uint32_t n_in, int own);

struct lut_runner;

/*
 * linear_init_dense() whose forwards split the output rows over @runner (kernels/lut.h;
 * copied, its ctx borrowed; NULL or run NULL = one BLAS call on the calling thread). Each
 * slice is one BLAS call, so keep OpenBLAS single-threaded when a runner is given.
 * Returns 0, -EINVAL (runner without workers) or -ENOMEM.
 */
int linear_init_dense_runner(struct linear *l, float *w, uint32_t n_out, uint32_t n_in, int own,
			     const struct lut_runner *runner);

/*
 * With @on, the forwards of dense linear @l over more than one token compute with bf16
 * products (kernels/gemm_bf16.h: inputs and weights rounded to bf16, sums in f32), twice
 * the f32 rate: for the reparameterizer's calibration passes, never inference. Returns 0,
 * -EINVAL (not dense, or dense with a runner) or -EOPNOTSUPP (host without AVX512_BF16).
 */
int linear_dense_set_bf16(struct linear *l, bool on);

struct qweight;
struct pool;

/*
 * Shift-add backend (engine/linear_sa.c): packs @qw for the LUT kernels (kernels/lut.h) and
 * runs them on @pool (borrowed for the layer's life; NULL = the calling thread only).
 * @qw is only read (copied). Returns 0, -ENOMEM, -EINVAL (bad shape or width) or -EOPNOTSUPP
 * (an alpha that is not a sum of at most 4 powers of two, e.g. apot = 0 baselines).
 * Forwards use per-thread scratch: concurrent forwards from different threads are safe.
 */
int linear_init_shiftadd(struct linear *l, const struct qweight *qw, struct pool *pool);

/*
 * linear_init_shiftadd() on a caller's task runner (kernels/lut.h) instead of a common/pool:
 * @runner is copied; NULL or runner->run NULL means the calling thread only. The runner is
 * called from the thread that runs the forward; with forwards from several threads it must
 * serialize them itself (the daemon calls from its loop thread only).
 */
int linear_init_shiftadd_runner(struct linear *l, const struct qweight *qw,
				const struct lut_runner *runner);

/*
 * Q8_0 backend (engine/linear_q8.c): W as @n_bytes of GGUF Q8_0 blocks (row-major, per 32
 * values an f16 scale and 32 int8; @n_in a multiple of 32, at most 16384). Each token's
 * activations are quantized per 16 values to int8 with an f32 scale max|x|/127 and the
 * products summed in integers (vpdpbusd where the host has AVX512_VNNI): an output is within
 * sum over half blocks h of (sum_h |w_j|) max_h |x_j| / 254 of the f32 product, plus f32
 * rounding.
 * @blocks is copied (repacked). Rows are split over @runner as in
 * linear_init_shiftadd_runner() (copied; NULL or run NULL: the calling thread only).
 * Returns 0, -EINVAL (bad shape, @n_bytes not the blocks' size, runner without workers),
 * -EBADMSG (a scale that is not finite) or -ENOMEM.
 */
int linear_init_q8_0(struct linear *l, const void *blocks, uint64_t n_bytes, uint32_t n_out,
		     uint32_t n_in, const struct lut_runner *runner);

/*
 * The same backend over GGUF Q5_0 blocks (per 32 values an f16 scale, 32 fifth bits and 16
 * bytes of nibbles; values in [-16, 15]), kept 5-bit: same contract, errors and accuracy
 * bound as linear_init_q8_0() for the weights the blocks encode. Its name is "q5_0".
 */
int linear_init_q5_0(struct linear *l, const void *blocks, uint64_t n_bytes, uint32_t n_out,
		     uint32_t n_in, const struct lut_runner *runner);

/*
 * Test hook: make Q8_0 layers use the kernel for @isa (LUT_ISA_AUTO: the host's best, as the
 * shift-add kernels pick). Returns 0 or -EOPNOTSUPP if the host cannot run it. Not
 * thread-safe against forwards.
 */
int linear_q8_select_isa(enum lut_isa isa);

struct sa_rht;

/*
 * y = [T_out^T] inner(T_in x): @inner works in a randomized-Hadamard basis (engine/
 * sa_format.h). Takes ownership of @inner on success (its struct is copied). Returns 0,
 * -EINVAL (a dimension the transform does not support) or -ENOMEM.
 */
int linear_wrap_rht(struct linear *l, const struct linear *inner, const struct sa_rht *rht);

/* The f32 weights of a dense linear ([n_out][n_in], writable: the reparameterizer replaces
 * them in place), or NULL for other backends. */
float *linear_dense_weights(const struct linear *l);

/*
 * W ([n_out][n_in]) as f32 into @dst: a dense layer's weights, or the values a Q8_0/Q5_0
 * layer's blocks encode. Returns 0, or -EOPNOTSUPP for a backend that cannot give them.
 */
int linear_weights_f32(const struct linear *l, float *dst);

/* Release the backend; safe on a zeroed struct. */
void linear_done(struct linear *l);

#endif /* ENGINE_LINEAR_H */
