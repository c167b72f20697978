/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_SAMPLER_H
#define ENGINE_SAMPLER_H

#include <stdint.h>

/*
 * Token sampling on logits, shared by the daemon (which samples for every backend the same
 * way) and the CLI. Deterministic: the same logits, parameters and RNG state give the same
 * token. HF's order: top-k, temperature, top-p.
 */

struct sampler_params {
	float temperature; /* <= 0: greedy */
	uint32_t top_k;	   /* 0: off */
	float top_p;	   /* <= 0 or >= 1: off */
	uint64_t seed;
};

/* Candidate scratch for sampler_sample(): n_vocab entries. */
struct sampler_cand {
	float logit;
	int32_t id;
};

/* Uniform double in [0, 1) from a splitmix64 state (advanced). */
double sampler_uniform(uint64_t *state);

/* RNG state for a new request (splitmix64 of the seed; never 0). */
uint64_t sampler_seed(uint64_t seed);
/*
 * Pick a token from @logits[n_vocab]. Greedy takes the lowest id among the maxima. Otherwise:
 * top-k, softmax at @temperature, top-p (smallest prefix of descending probabilities whose sum
 * reaches top_p), then one draw from *rng (advanced). @scratch has n_vocab entries.
 * NaN logits are treated as -inf. Returns the id, or -EINVAL (n_vocab == 0).
 */
int32_t sampler_sample(const struct sampler_params *p, uint64_t *rng, const float *logits,
		       uint32_t n_vocab, struct sampler_cand *scratch);

#endif /* ENGINE_SAMPLER_H */
