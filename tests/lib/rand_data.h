/* SPDX-License-Identifier: MIT */
#ifndef TESTS_LIB_RAND_DATA_H
#define TESTS_LIB_RAND_DATA_H

#include <stdint.h>

/*
 * Deterministic test data shared by the kernel and engine tests (splitmix64). Tests set
 * test_rng_state to a seed before drawing; not thread-safe (tests draw on one thread).
 */
extern uint64_t test_rng_state;

/* Next 64 random bits. */
uint64_t test_rng(void);

/* Uniform in [0, 1). */
double test_urand(void);

/* Roughly Gaussian, with an occasional 20x outlier as LLM activations have. */
float test_act(void);

#endif
