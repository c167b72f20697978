// SPDX-License-Identifier: MIT
#include "engine/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double sampler_uniform(uint64_t *state)
{
	return (splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t sampler_seed(uint64_t seed)
{
	uint64_t s = seed;
	uint64_t r = splitmix64(&s);

	return r ? r : 1;
}

static int cmp_desc(const void *a, const void *b)
{
	const struct sampler_cand *x = a, *y = b;

	if (x->logit != y->logit)
		return x->logit < y->logit ? 1 : -1;
	return x->id - y->id; /* stable order on ties: lower id first */
}

static float clean(float v)
{
	return isnan(v) ? -INFINITY : v;
}

int32_t sampler_sample(const struct sampler_params *p, uint64_t *rng, const float *logits,
		       uint32_t n_vocab, struct sampler_cand *scratch)
{
	uint32_t n = n_vocab, i;
	double sum = 0, u, acc, mx;

	if (n_vocab == 0)
		return -EINVAL;
	if (p->temperature <= 0) {
		uint32_t best = 0;
		float bv = clean(logits[0]);

		/* a NaN compares false: it never wins, as clean() would have it */
		for (i = 1; i < n_vocab; i++) {
			if (logits[i] > bv) {
				bv = logits[i];
				best = i;
			}
		}
		return (int32_t)best;
	}
	for (i = 0; i < n_vocab; i++)
		scratch[i] = (struct sampler_cand){ clean(logits[i]), (int32_t)i };
	qsort(scratch, n_vocab, sizeof(*scratch), cmp_desc);
	if (p->top_k && p->top_k < n)
		n = p->top_k;
	/* Probabilities relative to the maximum (stored back in .logit, so keep the maximum) */
	mx = scratch[0].logit;
	for (i = 0; i < n; i++) {
		double e = exp(((double)scratch[i].logit - mx) / p->temperature);

		scratch[i].logit = (float)e;
		sum += e;
	}
	if (!(sum > 0))
		return scratch[0].id;
	if (p->top_p > 0 && p->top_p < 1) {
		acc = 0;
		for (i = 0; i < n; i++) {
			acc += scratch[i].logit / sum;
			if (acc >= p->top_p) {
				n = i + 1;
				break;
			}
		}
		sum = 0;
		for (i = 0; i < n; i++)
			sum += scratch[i].logit;
	}
	u = sampler_uniform(rng) * sum;
	acc = 0;
	for (i = 0; i < n; i++) {
		acc += scratch[i].logit;
		if (u < acc)
			return scratch[i].id;
	}
	return scratch[n - 1].id;
}
