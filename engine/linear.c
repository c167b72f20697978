// SPDX-License-Identifier: MIT
#include "engine/linear.h"

#include <cblas.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_bf16.h"
#include "kernels/lut.h"

struct dense {
	float *w;
	int own;
	bool bf16;		  /* linear_dense_set_bf16() */
	struct lut_runner runner; /* run == NULL: one BLAS call on the calling thread */
};

/*
 * The product is cut into tiles of DENSE_TOKENS tokens x DENSE_ROWS output rows (DENSE_GEMV_ROWS
 * for one token), whatever the number of workers (none without a runner): BLAS results can
 * depend on where a call's rows start, so fixed tiles keep the output bit-identical for any
 * worker count (the daemon and the CLI give the same tokens). The sizes are measured
 * (OpenBLAS 0.3.21, Zen): single-threaded sgemm with 128..288 output rows per call runs at a
 * third of the speed of 384 or more, and splitting tokens in 256s costs ~10%.
 * The caller keeps OpenBLAS single-threaded with a runner: BLAS threads spinning beside the
 * kernel workers halve decode speed.
 */
#define DENSE_TOKENS	256
#define DENSE_ROWS	512
#define DENSE_GEMV_ROWS 256

struct dense_job {
	const struct linear *l;
	const float *x;
	float *y;
	uint32_t m, rows, n_row_tiles;
};

static void dense_task(void *arg, uint32_t i)
{
	const struct dense_job *j = arg;
	const struct linear *l = j->l;
	const struct dense *d = l->impl;
	uint32_t t0 = i / j->n_row_tiles * DENSE_TOKENS, r0 = i % j->n_row_tiles * j->rows;
	uint32_t m = j->m - t0 < DENSE_TOKENS ? j->m - t0 : DENSE_TOKENS;
	uint32_t n = l->n_out - r0 < j->rows ? l->n_out - r0 : j->rows;
	const float *w = d->w + (size_t)r0 * l->n_in, *x = j->x + (size_t)t0 * l->n_in;
	float *y = j->y + (size_t)t0 * l->n_out + r0;

	if (m == 1)
		cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, l->n_in, 1.0f, w, l->n_in, x, 1,
			    0.0f, y, 1);
	else
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, l->n_in, 1.0f,
			    x, l->n_in, w, l->n_in, 0.0f, y, l->n_out);
}

static void dense_forward(const struct linear *l, const float *x, float *y, uint32_t m)
{
	const struct dense *d = l->impl;
	struct dense_job j = { .l = l, .x = x, .y = y, .m = m };
	uint32_t n;

	/* one call: its results do not depend on tiles (kernels/gemm_bf16.h) */
	if (d->bf16 && m > 1 &&
	    gemm_bf16_nt(m, l->n_out, l->n_in, x, l->n_in, d->w, l->n_in, y, l->n_out) == 0)
		return;
	j.rows = m == 1 ? DENSE_GEMV_ROWS : DENSE_ROWS;
	j.n_row_tiles = (l->n_out + j.rows - 1) / j.rows;
	n = (m + DENSE_TOKENS - 1) / DENSE_TOKENS * j.n_row_tiles;
	if (!d->runner.run) {
		for (uint32_t i = 0; i < n; i++)
			dense_task(&j, i);
		return;
	}
	d->runner.run(d->runner.ctx, n, dense_task, &j);
}

static void dense_done(struct linear *l)
{
	struct dense *d = l->impl;

	if (d && d->own)
		free(d->w);
	free(d);
}

static void dense_to_f32(const struct linear *l, float *dst)
{
	memcpy(dst, ((struct dense *)l->impl)->w, (size_t)l->n_out * l->n_in * sizeof(float));
}

static const struct linear_ops dense_ops = {
	.name = "dense",
	.forward = dense_forward,
	.done = dense_done,
	.to_f32 = dense_to_f32,
};

int linear_init_dense_runner(struct linear *l, float *w, uint32_t n_out, uint32_t n_in, int own,
			     const struct lut_runner *runner)
{
	struct dense *d;

	if (runner && runner->run && !runner->n_workers)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->w = w;
	d->own = own;
	if (runner && runner->run)
		d->runner = *runner;
	l->ops = &dense_ops;
	l->n_out = n_out;
	l->n_in = n_in;
	l->bias = NULL;
	l->impl = d;
	return 0;
}

int linear_init_dense(struct linear *l, float *w, uint32_t n_out, uint32_t n_in, int own)
{
	return linear_init_dense_runner(l, w, n_out, n_in, own, NULL);
}

int linear_dense_set_bf16(struct linear *l, bool on)
{
	struct dense *d = l->impl;

	if (l->ops != &dense_ops || d->runner.run)
		return -EINVAL;
	if (on && !gemm_bf16_supported())
		return -EOPNOTSUPP;
	d->bf16 = on;
	return 0;
}

float *linear_dense_weights(const struct linear *l)
{
	if (l->ops != &dense_ops)
		return NULL;
	return ((struct dense *)l->impl)->w;
}

int linear_weights_f32(const struct linear *l, float *dst)
{
	if (!l->ops || !l->ops->to_f32)
		return -EOPNOTSUPP;
	l->ops->to_f32(l, dst);
	return 0;
}

void linear_done(struct linear *l)
{
	if (l->ops && l->ops->done)
		l->ops->done(l);
	l->ops = NULL;
	l->impl = NULL;
}
