/* SPDX-License-Identifier: MIT */
#ifndef TESTS_UNIT_REPARAM_SYNTH_H
#define TESTS_UNIT_REPARAM_SYNTH_H

#include <stdint.h>

/*
 * Seeded synthetic layers for the reparam tests: weights with heavy-ish tails and a Hessian
 * H = 2 X X^T / s from correlated inputs (low-rank mixing, per-channel scales, some outlier
 * channels), full symmetric.
 */

/* W[n][k]: Gaussian * 0.05 with a few 4x outliers. */
void synth_weights(uint32_t n, uint32_t k, uint64_t seed, float *W);

/* H[k][k] from @s samples of correlated inputs; channels listed in @dead (count @n_dead) are 0. */
void synth_hessian(uint32_t k, uint32_t s, uint64_t seed, const uint32_t *dead, uint32_t n_dead,
		   double *H);

/* tr((W - Q) H (W - Q)^T) by plain loops (full H). */
double synth_output_error(const float *W, const float *Q, uint32_t n, uint32_t k, const double *H);

/* Minimal number of signed powers of two summing to @a (from its float bits); -1 if not finite. */
int synth_naf_weight(float a, int *ret_min_exp, int *ret_max_exp);

#endif /* TESTS_UNIT_REPARAM_SYNTH_H */
