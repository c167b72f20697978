// SPDX-License-Identifier: MIT
/* Sampling against distributions computed here by hand. */
#include "engine/sampler.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#define NV 6

static const float logits[NV] = { 1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f };

static void test_greedy_takes_lowest_id_among_maxima(void **state)
{
	struct sampler_params p = { .temperature = 0 };
	struct sampler_cand c[NV];
	float with_nan[NV] = { NAN, 0.5f, 0.25f, 0.5f, -1, 0 };
	uint64_t rng = sampler_seed(1);

	assert_int_equal(sampler_sample(&p, &rng, logits, NV, c), 1);
	assert_int_equal(sampler_sample(&p, &rng, with_nan, NV, c), 1);
	p.temperature = 1;
	p.top_k = 1;
	assert_int_equal(sampler_sample(&p, &rng, logits, NV, c), 1);
	assert_int_equal(sampler_sample(&p, &rng, logits, 0, c), -EINVAL);
}

/* The greedy rule written plainly: the first index of the largest non-NaN logit, else 0. */
static int32_t plain_argmax(const float *x, uint32_t n)
{
	int32_t best = -1;

	for (uint32_t i = 0; i < n; i++)
		if (!isnan(x[i]) && (best < 0 || x[i] > x[best]))
			best = (int32_t)i;
	return best < 0 ? 0 : best;
}

/*
 * Greedy choice on longer rows, where the vector passes run: ties, NaNs, +-inf and +-0
 * placed at every offset of a vector and in the scalar tails, against plain_argmax.
 */
static void test_greedy_matches_plain_rule(void **state)
{
	static const float specials[] = { NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 7.0f, 7.0f };
	enum {
		N = 1000
	};
	struct sampler_params p = { .temperature = 0 };
	uint64_t rng = sampler_seed(5);
	float x[N];

	(void)state;
	for (uint32_t trial = 0; trial < 3000; trial++) {
		uint32_t n = 1 + (uint32_t)(sampler_uniform(&rng) * (trial < 1000 ? 40 : N));
		uint32_t mode = trial % 4;

		for (uint32_t i = 0; i < n; i++) {
			/* few distinct values: many ties for the maximum */
			x[i] = mode == 0 ? (float)(int)(sampler_uniform(&rng) * 4) - 2
					 : (float)sampler_uniform(&rng) - 0.5f;
			if (mode >= 2 && sampler_uniform(&rng) < 0.1)
				x[i] = specials[(int)(sampler_uniform(&rng) * 7)];
			if (mode == 3 && sampler_uniform(&rng) < 0.5)
				x[i] = NAN;
		}
		assert_int_equal(sampler_sample(&p, &rng, x, n, NULL), plain_argmax(x, n));
	}
	/* all NaN, and a NaN first with the maximum late in a tail */
	for (uint32_t i = 0; i < 37; i++)
		x[i] = NAN;
	assert_int_equal(sampler_sample(&p, &rng, x, 37, NULL), 0);
	x[36] = -INFINITY;
	assert_int_equal(sampler_sample(&p, &rng, x, 37, NULL), 0);
	x[35] = -1e30f;
	assert_int_equal(sampler_sample(&p, &rng, x, 37, NULL), 35);
}

/* Frequencies over many draws match softmax(logits / T), within 5 standard errors. */
static void check_frequencies(const struct sampler_params *p, const double *want)
{
	enum {
		DRAWS = 40000
	};
	struct sampler_cand c[NV];
	uint64_t rng = sampler_seed(p->seed);
	unsigned count[NV] = { 0 };

	for (int i = 0; i < DRAWS; i++) {
		int32_t t = sampler_sample(p, &rng, logits, NV, c);

		assert_true(t >= 0 && t < NV);
		count[t]++;
	}
	for (int i = 0; i < NV; i++) {
		double f = (double)count[i] / DRAWS, se = sqrt(want[i] * (1 - want[i]) / DRAWS);

		assert_true(fabs(f - want[i]) <= 5 * se + 1e-12);
	}
}

static void test_temperature_follows_softmax(void **state)
{
	struct sampler_params p = { .temperature = 0.7f, .seed = 3 };
	double w[NV], z = 0;

	for (int i = 0; i < NV; i++)
		z += w[i] = exp(logits[i] / 0.7);
	for (int i = 0; i < NV; i++)
		w[i] /= z;
	check_frequencies(&p, w);
}

static void test_top_k_and_top_p_cut_the_tail(void **state)
{
	struct sampler_params p = { .temperature = 1, .top_k = 3, .seed = 5 };
	double e1 = exp(3), e2 = exp(2), w[NV] = { 0 };

	/* top-3: ids 1, 3 (logit 3) and 2 (logit 2) */
	w[1] = w[3] = e1 / (2 * e1 + e2);
	w[2] = e2 / (2 * e1 + e2);
	check_frequencies(&p, w);
	/* top-p 0.5: the two tied maxima alone already exceed half the mass */
	p.top_k = 0;
	p.top_p = 0.5f;
	w[1] = w[3] = 0.5;
	w[2] = 0;
	check_frequencies(&p, w);
}

static void test_same_seed_same_tokens(void **state)
{
	struct sampler_params p = { .temperature = 1.3f, .top_p = 0.95f };
	struct sampler_cand c[NV];
	uint64_t a = sampler_seed(42), b = sampler_seed(42), d = sampler_seed(43);
	int differ = 0;

	for (int i = 0; i < 200; i++) {
		int32_t x = sampler_sample(&p, &a, logits, NV, c);

		assert_int_equal(x, sampler_sample(&p, &b, logits, NV, c));
		differ += x != sampler_sample(&p, &d, logits, NV, c);
	}
	assert_true(differ > 0);
}

int test_sampler_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greedy_takes_lowest_id_among_maxima),
		cmocka_unit_test(test_greedy_matches_plain_rule),
		cmocka_unit_test(test_temperature_follows_softmax),
		cmocka_unit_test(test_top_k_and_top_p_cut_the_tail),
		cmocka_unit_test(test_same_seed_same_tokens),
	};
	return cmocka_run_group_tests_name("engine/sampler", tests, NULL, NULL);
}
