/* SPDX-License-Identifier: MIT */
#ifndef TESTS_LIB_RAND_DATA_H
#define TESTS_LIB_RAND_DATA_H

#include <stdint.h>

/*
 * Deterministic test data (splitmix64) and small test doubles shared by the kernel and engine
 * tests. Tests set test_rng_state to a seed before drawing; not thread-safe (tests draw on
 * one thread).
 */
extern uint64_t test_rng_state;

/* Next 64 random bits. */
uint64_t test_rng(void);

/* Uniform in [0, 1). */
double test_urand(void);

/* Roughly Gaussian, with an occasional 20x outlier as LLM activations have. */
float test_act(void);

struct qweight;

/*
 * A random weight like a converted layer's (kernels/qweight.h, apot 3): random signs, each
 * alpha a signed sum of 1-3 powers of two with the largest near 2^(top - plane), so alphas
 * halve from plane to plane (BCQ's greedy start). Returns 0 or qweight_init()'s error.
 */
int test_random_qweight(struct qweight *q, uint32_t n, uint32_t k, uint32_t bits, int layout,
			int top);

/* A caller's task runner (kernels/lut.h lut_run_fn, what shiftaddd passes): runs the tasks
 * in order on the calling thread and counts calls and tasks. */
struct counting_runner {
	uint32_t n_calls;
	uint32_t n_tasks;
};

void counting_run(void *ctx, uint32_t n_tasks, void (*fn)(void *arg, uint32_t task), void *arg);

#endif
