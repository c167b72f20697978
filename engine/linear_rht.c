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
#include "kernels/rht.h"

struct rht_linear {
	struct linear inner;
	struct rht t_in;
	struct rht t_out;
	bool both;
};

static void rht_forward(const struct linear *l, const float *x, float *y, uint32_t m)
{
	const struct rht_linear *r = l->impl;
	size_t n = (size_t)m * l->n_in;
	float *u = malloc(n * sizeof(float));

	if (!u) {
		/* no error path in forward: a zero output is visible in any evaluation */
		memset(y, 0, (size_t)m * l->n_out * sizeof(float));
		return;
	}
	memcpy(u, x, n * sizeof(float));
	rht_apply(&r->t_in, u, m);
	r->inner.ops->forward(&r->inner, u, y, m);
	if (r->both)
		rht_apply_inverse(&r->t_out, y, m);
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
