/* SPDX-License-Identifier: MIT */
/*
 * In-process greedy generation through engine/ directly, one sequence at a time (a batch of
 * the prompt, then one token per forward): the reference that tests compare the daemon's
 * batched, multi-client output against. It shares the engine with the daemon's engine backend
 * but none of the daemon's code (scheduler, KV slots, batching, sampler, rings).
 */
#ifndef TESTS_LIB_ENGINE_GREEDY_H
#define TESTS_LIB_ENGINE_GREEDY_H

#include <stdbool.h>
#include <stdint.h>

struct model;

#define ENGINE_GREEDY_MAX 64

struct engine_greedy {
	int32_t ids[ENGINE_GREEDY_MAX]; /* generated ids, EOS excluded */
	uint32_t n_ids;
	bool eos;	  /* stopped because the model produced its EOS id */
	float min_margin; /* smallest (best - second best) logit over the steps taken */
};

/*
 * Greedy continuation of @prompt (tokenized with special tokens parsed and no BOS, as
 * shiftaddd does) for up to @n_new (<= ENGINE_GREEDY_MAX) tokens, stopping at EOS, with the KV
 * cache shiftaddd has by default (f16 where the host runs it). Ties go to the lowest id. Returns 0, -EINVAL, -ENOMEM or the engine's error.
 */
int engine_greedy(const struct model *m, const char *prompt, uint32_t n_new,
		  struct engine_greedy *ret);

#endif /* TESTS_LIB_ENGINE_GREEDY_H */
