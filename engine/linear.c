// SPDX-License-Identifier: MIT
#include "engine/linear.h"

#include <cblas.h>
#include <errno.h>
#include <stdlib.h>

struct dense {
	float *w;
	int own;
};

static void dense_forward(const struct linear *l, const float *x, float *y, uint32_t m)
{
	const struct dense *d = l->impl;

	if (m == 1) {
		cblas_sgemv(CblasRowMajor, CblasNoTrans, l->n_out, l->n_in, 1.0f, d->w, l->n_in, x,
			    1, 0.0f, y, 1);
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, l->n_out, l->n_in, 1.0f, x, l->n_in,
		    d->w, l->n_in, 0.0f, y, l->n_out);
}

static void dense_done(struct linear *l)
{
	struct dense *d = l->impl;

	if (d && d->own)
		free(d->w);
	free(d);
}

static const struct linear_ops dense_ops = {
	.name = "dense",
	.forward = dense_forward,
	.done = dense_done,
};

int linear_init_dense(struct linear *l, float *w, uint32_t n_out, uint32_t n_in, int own)
{
	struct dense *d = malloc(sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->w = w;
	d->own = own;
	l->ops = &dense_ops;
	l->n_out = n_out;
	l->n_in = n_in;
	l->bias = NULL;
	l->impl = d;
	return 0;
}

float *linear_dense_weights(const struct linear *l)
{
	if (l->ops != &dense_ops)
		return NULL;
	return ((struct dense *)l->impl)->w;
}

void linear_done(struct linear *l)
{
	if (l->ops && l->ops->done)
		l->ops->done(l);
	l->ops = NULL;
	l->impl = NULL;
}
