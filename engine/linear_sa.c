// SPDX-License-Identifier: MIT
/*
 * Shift-add linear backend: the layer's binary planes packed for the LUT kernels
 * (kernels/lut.h), run on the model's task runner (a common/pool, or the daemon's workers).
 *
 * Scratch (one token's lookup tables are up to 8 rowsets x K/8 x bits x 64 bytes) is not
 * kept per layer: 210 layers x a prefill batch would cost gigabytes. Each calling thread has
 * one buffer (grown to the largest need seen, freed when the thread exits), and a forward of
 * m tokens runs in batches of at most SA_MAX_M, which bounds that buffer. So concurrent
 * forwards from different threads are safe; a common/pool serializes their kernel phases.
 */
#include "common/pool.h"
#include "engine/linear.h"
#include "kernels/lut.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

/* Tokens per kernel call: all share each weight load; larger batches gain little more. */
#define SA_MAX_M 64

struct sa_linear {
	struct lut_weight w;
	struct lut_runner runner; /* run == NULL: calling thread only */
};

struct tls_scratch {
	void *mem;
	size_t n_bytes;
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_err;

static void scratch_free(void *p)
{
	struct tls_scratch *s = p;

	if (s)
		free(s->mem);
	free(s);
}

static void scratch_key_init(void)
{
	scratch_key_err = pthread_key_create(&scratch_key, scratch_free);
}

/* This thread's scratch, at least @n_bytes long; NULL on allocation failure. */
static void *thread_scratch(size_t n_bytes)
{
	struct tls_scratch *s;
	void *mem;

	pthread_once(&scratch_once, scratch_key_init);
	if (scratch_key_err)
		return NULL;
	s = pthread_getspecific(scratch_key);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return NULL;
		if (pthread_setspecific(scratch_key, s)) {
			free(s);
			return NULL;
		}
	}
	if (s->n_bytes >= n_bytes)
		return s->mem;
	mem = malloc(n_bytes);
	if (!mem)
		return NULL;
	free(s->mem);
	s->mem = mem;
	s->n_bytes = n_bytes;
	return mem;
}

/*
 * The linear interface cannot fail at run time; if the kernels do (scratch allocation), the
 * outputs become NaN so that the failure shows in the logits instead of passing silently.
 */
static void poison(float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = NAN;
}

static void sa_forward(const struct linear *l, const float *x, float *y, uint32_t m)
{
	const struct sa_linear *s = l->impl;
	struct lut_opts o = { .runner = s->runner.run ? &s->runner : NULL };
	uint32_t nw = s->runner.run ? s->runner.n_workers : 1;

	for (uint32_t j = 0; j < m; j += SA_MAX_M) {
		uint32_t mm = m - j < SA_MAX_M ? m - j : SA_MAX_M;
		int ret = -ENOMEM;

		o.scratch_bytes = lut_scratch_bytes(&s->w, mm, nw);
		o.scratch = thread_scratch(o.scratch_bytes);
		if (o.scratch)
			ret = lut_gemm(&s->w, mm, x + (size_t)j * l->n_in, y + (size_t)j * l->n_out,
				       &o);
		if (ret < 0)
			poison(y + (size_t)j * l->n_out, (size_t)mm * l->n_out);
	}
}

static void sa_done(struct linear *l)
{
	struct sa_linear *s = l->impl;

	if (s)
		lut_weight_done(&s->w);
	free(s);
}

static const struct linear_ops sa_ops = {
	.name = "shiftadd",
	.forward = sa_forward,
	.done = sa_done,
};

bool linear_sa_forward_multi(const struct linear *const *ls, uint32_t n, const float *x,
			     float *const *ys, uint32_t m)
{
	const struct sa_linear *s0;
	const struct lut_weight *ws[LUT_MULTI_MAX];
	struct lut_opts o = { 0 };

	if (n < 2 || n > LUT_MULTI_MAX || ls[0]->ops != &sa_ops)
		return false;
	s0 = ls[0]->impl;
	/* one task per layer pays only with a worker for each of them (q/k/v, gate/up on 2) */
	if (!s0->runner.run || s0->runner.n_workers < 2 || n < s0->runner.n_workers)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		const struct sa_linear *s = ls[i]->impl;

		if (ls[i]->ops != &sa_ops || s->runner.run != s0->runner.run ||
		    s->runner.ctx != s0->runner.ctx || ls[i]->n_in != ls[0]->n_in)
			return false;
		ws[i] = &s->w;
	}
	o.runner = &s0->runner;
	for (uint32_t j = 0; j < m; j += SA_MAX_M) {
		uint32_t mm = m - j < SA_MAX_M ? m - j : SA_MAX_M;
		float *yj[LUT_MULTI_MAX];
		int ret = -ENOMEM;

		for (uint32_t i = 0; i < n; i++)
			yj[i] = ys[i] + (size_t)j * ls[i]->n_out;
		o.scratch_bytes = lut_scratch_bytes_multi(ws, n, mm);
		o.scratch = thread_scratch(o.scratch_bytes);
		if (o.scratch)
			ret = lut_gemm_multi(ws, n, mm, x + (size_t)j * ls[0]->n_in, yj, &o);
		if (ret < 0)
			for (uint32_t i = 0; i < n; i++)
				poison(yj[i], (size_t)mm * ls[i]->n_out);
	}
	return true;
}

int linear_init_shiftadd_runner(struct linear *l, const struct qweight *qw,
				const struct lut_runner *runner)
{
	struct sa_linear *s;
	int ret;

	if (!l || !qw || (runner && runner->run && !runner->n_workers))
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	ret = lut_pack(qw, &s->w);
	if (ret < 0)
		goto out_free;
	if (runner && runner->run)
		s->runner = *runner;
	l->ops = &sa_ops;
	l->n_out = qw->n_rows;
	l->n_in = qw->n_cols;
	l->bias = NULL;
	l->impl = s;
	return 0;

out_free:
	free(s);
	return ret;
}

int linear_init_shiftadd(struct linear *l, const struct qweight *qw, struct pool *pool)
{
	struct lut_runner r = { 0 };

	/* one thread is the caller itself: no hand-off */
	if (pool && pool_n_threads(pool) > 1)
		r = (struct lut_runner){
			.run = pool_run,
			.ctx = pool,
			.n_workers = pool_n_threads(pool),
		};
	return linear_init_shiftadd_runner(l, qw, &r);
}
