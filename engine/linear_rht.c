// SPDX-License-Identifier: MIT
/*
 * Linear layers quantized in a randomized Hadamard basis (shiftadd-rht): the input is
 * transformed before the inner layer (sign flips and add/sub butterflies only) and, for
 * "both", the output is transformed back before bias, RoPE, activation or residual.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/linear.h"
#include "engine/sa_format.h"
#include "kernels/lut.h"
#include "kernels/rht.h"

struct rht_linear {
	struct linear inner;
	struct rht t_in;
	struct rht t_out;
	bool both;
};

/* Inputs up to this many floats are transformed in a stack buffer (decode steps). */
#define STACK_FLOATS 4096

/* The transformed input of @l for @m rows of @x: @stack, or malloc'ed (NULL if that fails). */
static float *transformed_input(const struct rht_linear *r, const float *x, uint32_t m,
				float *stack)
{
	size_t n = (size_t)m * r->t_in.n;
	float *u = n <= STACK_FLOATS ? stack : malloc(n * sizeof(float));

	if (u) {
		memcpy(u, x, n * sizeof(float));
		rht_apply(&r->t_in, u, m);
	}
	return u;
}

/* The inner layer on the transformed input @u, then the output transform back. */
static void inner_forward(const struct rht_linear *r, const float *u, float *y, uint32_t m)
{
	r->inner.ops->forward(&r->inner, u, y, m);
	if (r->both)
		rht_apply_inverse(&r->t_out, y, m);
}

static void rht_forward(const struct linear *l, const float *x, float *y, uint32_t m)
{
	const struct rht_linear *r = l->impl;
	float stack[STACK_FLOATS];
	float *u = transformed_input(r, x, m, stack);

	if (!u) {
		/* no error path in forward: a zero output is visible in any evaluation */
		memset(y, 0, (size_t)m * l->n_out * sizeof(float));
		return;
	}
	inner_forward(r, u, y, m);
	if (u != stack)
		free(u);
}

static void rht_linear_done(struct linear *l)
{
	struct rht_linear *r = l->impl;

	if (!r)
		return;
	linear_done(&r->inner);
	rht_done(&r->t_in);
	rht_done(&r->t_out);
	free(r);
}

static const struct linear_ops rht_ops = {
	.name = "rht",
	.forward = rht_forward,
	.done = rht_linear_done,
};

int linear_wrap_rht(struct linear *l, const struct linear *inner, const struct sa_rht *rht)
{
	struct rht_linear *r = calloc(1, sizeof(*r));
	int ret;

	if (!r)
		return -ENOMEM;
	ret = rht_init(&r->t_in, inner->n_in, rht->seed_in);
	if (ret == 0 && rht->mode == SA_RHT_BOTH)
		ret = rht_init(&r->t_out, inner->n_out, rht->seed_out);
	if (ret < 0) {
		rht_done(&r->t_in);
		free(r);
		return ret;
	}
	r->inner = *inner;
	r->inner.bias = NULL;
	r->both = rht->mode == SA_RHT_BOTH;
	*l = (struct linear){ .ops = &rht_ops,
			      .n_out = inner->n_out,
			      .n_in = inner->n_in,
			      .bias = inner->bias,
			      .impl = r };
	return 0;
}

/* Whether every layer of @ls is an rht layer with the input transform of the first. */
static bool same_input_transform(const struct linear *const *ls, uint32_t n)
{
	const struct rht_linear *r0 = ls[0]->impl;

	for (uint32_t i = 0; i < n; i++) {
		const struct rht_linear *r = ls[i]->impl;

		if (ls[i]->ops != &rht_ops || r->t_in.n != r0->t_in.n ||
		    r->t_in.seed != r0->t_in.seed)
			return false;
	}
	return true;
}

void linear_forward_shared(const struct linear *const *ls, uint32_t n, const float *x,
			   float *const *ys, uint32_t m)
{
	const struct linear *in[LUT_MULTI_MAX];
	float stack[STACK_FLOATS];
	float *u;

	if (n < 2 || !same_input_transform(ls, n)) {
		if (!linear_sa_forward_multi(ls, n, x, ys, m)) {
			for (uint32_t i = 0; i < n; i++)
				linear_forward(ls[i], x, ys[i], m);
			return;
		}
		for (uint32_t i = 0; i < n; i++)
			linear_add_bias(ls[i], ys[i], m);
		return;
	}
	u = transformed_input(ls[0]->impl, x, m, stack);
	for (uint32_t i = 0; i < n && i < LUT_MULTI_MAX; i++)
		in[i] = &((const struct rht_linear *)ls[i]->impl)->inner;
	if (u && n <= LUT_MULTI_MAX && linear_sa_forward_multi(in, n, u, ys, m)) {
		for (uint32_t i = 0; i < n; i++) {
			const struct rht_linear *r = ls[i]->impl;

			if (r->both)
				rht_apply_inverse(&r->t_out, ys[i], m);
			linear_add_bias(ls[i], ys[i], m);
		}
	} else {
		for (uint32_t i = 0; i < n; i++) {
			if (u)
				inner_forward(ls[i]->impl, u, ys[i], m);
			else
				memset(ys[i], 0, (size_t)m * ls[i]->n_out * sizeof(float));
			linear_add_bias(ls[i], ys[i], m);
		}
	}
	if (u != stack)
		free(u);
}
