/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_SAMPLE_H
#define ENGINE_SAMPLE_H

#include <stdint.h>

/*
 * Next-token sampling as HF's generate() orders it: temperature, then top-k, then top-p.
 * temp <= 0 means greedy (argmax). The generator is seeded, so a (seed, logits) sequence
 * always gives the same tokens. One sampler per sequence; not thread-safe.
 */
struct sampler {
	float temp;
	uint32_t top_k; /* 0 = off */
	float top_p;	/* >= 1 = off */
	uint64_t rng;
	uint32_t *idx; /* scratch [n_vocab] */
	float *prob;   /* scratch [n_vocab] */
	uint32_t n_vocab;
};

/* Returns 0 or -ENOMEM / -EINVAL (top_p <= 0, n_vocab == 0). Free with sampler_done(). */
int sampler_init(struct sampler *s, uint32_t n_vocab, float temp, uint32_t top_k, float top_p,
		 uint64_t seed);
void sampler_done(struct sampler *s);

/* Pick a token from @logits[n_vocab] (not modified). */
int32_t sampler_sample(struct sampler *s, const float *logits);

/* Index of the largest logit (first on ties). */
int32_t sample_argmax(const float *logits, uint32_t n);

/* Uniform double in [0, 1) from a splitmix64 state. */
double sample_uniform(uint64_t *state);

#endif /* ENGINE_SAMPLE_H */
