// SPDX-License-Identifier: MIT
#include "engine/sample.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int sampler_init(struct sampler *s, uint32_t n_vocab, float temp, uint32_t top_k, float top_p,
		 uint64_t seed)
{
	memset(s, 0, sizeof(*s));
	if (!n_vocab || !(top_p > 0))
		return -EINVAL;
	s->temp = temp;
	s->top_k = top_k;
	s->top_p = top_p;
	s->rng = seed;
	s->n_vocab = n_vocab;
	s->idx = malloc(n_vocab * sizeof(*s->idx));
	s->prob = malloc(n_vocab * sizeof(*s->prob));
	if (!s->idx || !s->prob) {
		sampler_done(s);
		return -ENOMEM;
	}
	return 0;
}

void sampler_done(struct sampler *s)
{
	free(s->idx);
	free(s->prob);
	s->idx = NULL;
	s->prob = NULL;
}

double sample_uniform(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (z >> 11) * (1.0 / 9007199254740992.0);
}

int32_t sample_argmax(const float *logits, uint32_t n)
{
	uint32_t best = 0;

	for (uint32_t i = 1; i < n; i++)
		if (logits[i] > logits[best])
			best = i;
	return (int32_t)best;
}

static int by_logit_desc(const void *a, const void *b, void *keys)
{
	const float *k = keys;
	float x = k[*(const uint32_t *)a], y = k[*(const uint32_t *)b];

	if (x != y)
		return x < y ? 1 : -1;
	return *(const uint32_t *)a < *(const uint32_t *)b ? -1 : 1;
}

int32_t sampler_sample(struct sampler *s, const float *logits)
{
	uint32_t n = s->n_vocab, keep;
	double sum = 0, acc = 0, u;

	if (s->temp <= 0)
		return sample_argmax(logits, n);
	for (uint32_t i = 0; i < n; i++)
		s->idx[i] = i;
	qsort_r(s->idx, n, sizeof(*s->idx), by_logit_desc, (void *)logits);
	keep = s->top_k && s->top_k < n ? s->top_k : n;
	for (uint32_t i = 0; i < keep; i++) {
		s->prob[i] = expf((logits[s->idx[i]] - logits[s->idx[0]]) / s->temp);
		sum += s->prob[i];
	}
	if (s->top_p < 1) {
		double cum = 0;

		for (uint32_t i = 0; i < keep; i++) {
			cum += s->prob[i] / sum;
			if (cum >= s->top_p) {
				keep = i + 1;
				break;
			}
		}
		sum = 0;
		for (uint32_t i = 0; i < keep; i++)
			sum += s->prob[i];
	}
	u = sample_uniform(&s->rng) * sum;
	for (uint32_t i = 0; i < keep; i++) {
		acc += s->prob[i];
		if (u < acc)
			return (int32_t)s->idx[i];
	}
	return (int32_t)s->idx[keep - 1];
}
