// SPDX-License-Identifier: MIT
#include "reparam/internal.h"
#include "tests/unit/reparam/synth.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* Every APoT value is a sum of <= n signed powers of two within range and within 3^-n of x. */
static void test_apot_round_is_exact_short_sum(void **state)
{
	struct rng r;

	rng_seed(&r, 1);
	for (int it = 0; it < 20000; it++) {
		double x = (rng_uniform(&r) < 0.5 ? -1 : 1) * exp(rng_uniform(&r) * 30 - 20);
		uint32_t n = 1 + it % 4;
		float a = apot_round(x, n);
		int lo, hi, w = synth_naf_weight(a, &lo, &hi);

		assert_true(w >= 1);
		assert_true((uint32_t)w <= n);
		assert_true(lo >= APOT_EXP_MIN);
		assert_true(hi <= APOT_EXP_MAX + 1);
		assert_true(fabs(a - x) <= fabs(x) * pow(1.0 / 3, n) * (1 + 1e-12));
		assert_true(a * x > 0);
	}
}

/* One term: the power of two nearest to x, by brute force over all exponents. */
static void test_apot_one_term_is_nearest_power(void **state)
{
	struct rng r;

	rng_seed(&r, 2);
	for (int it = 0; it < 5000; it++) {
		double x = exp(rng_uniform(&r) * 40 - 20), best = 0;

		for (int e = APOT_EXP_MIN; e <= APOT_EXP_MAX; e++)
			if (fabs(ldexp(1, e) - x) < fabs(best - x))
				best = ldexp(1, e);
		assert_true(fabs(apot_round(x, 1) - x) <= fabs(best - x));
		assert_true(fabs(apot_round(-x, 1) + x) <= fabs(best - x));
	}
}

static void test_apot_edges(void **state)
{
	assert_true(apot_round(0.3, 0) == 0.3f);
	assert_true(apot_round(0, 3) == 0);
	/* far below the smallest exponent rounds to zero, far above saturates */
	assert_true(apot_round(ldexp(1, APOT_EXP_MIN - 3), 3) == 0);
	assert_true(apot_round(ldexp(1, APOT_EXP_MIN), 3) == (float)ldexp(1, APOT_EXP_MIN));
	assert_true(apot_round(ldexp(1, 90), 3) == (float)ldexp(1, APOT_EXP_MAX));
	assert_true(apot_round(0.75, 1) == 1.0f);
	assert_true(apot_round(0.7, 1) == 0.5f);
	assert_true(apot_round(0.7, 2) == 0.75f);
	assert_true(isnan(apot_round(NAN, 3)));
}

/* apot_decompose gives back the exact value with at most the minimal count of terms. */
static void test_apot_decompose_round_trip(void **state)
{
	int8_t ex[8], sg[8];
	struct rng r;

	rng_seed(&r, 3);
	for (int it = 0; it < 5000; it++) {
		uint32_t n = 1 + it % 3;
		double v = 0, back = 0;
		int got;

		for (uint32_t t = 0; t < n; t++)
			v += (rng_uniform(&r) < 0.5 ? -1 : 1) *
			     ldexp(1, (int)(rng_next(&r) % 21) - 10);
		got = apot_decompose((float)v, 3, ex, sg);
		assert_true(got >= 0 && got <= (int)n);
		assert_int_equal(got, synth_naf_weight((float)v, NULL, NULL) < 0
					      ? -1
					      : synth_naf_weight((float)v, NULL, NULL));
		for (int t = 0; t < got; t++) {
			assert_true(sg[t] == 1 || sg[t] == -1);
			if (t)
				assert_true(ex[t] < ex[t - 1]);
			back += sg[t] * ldexp(1, ex[t]);
		}
		assert_true(back == v);
	}
	/* 21 = 16 + 4 + 1 needs three terms */
	assert_int_equal(apot_decompose(21.0f, 2, ex, sg), -ERANGE);
	assert_int_equal(apot_decompose(21.0f, 3, ex, sg), 3);
	/* 15 = 16 - 1 */
	assert_int_equal(apot_decompose(15.0f, 2, ex, sg), 2);
	assert_int_equal(ex[0], 4);
	assert_int_equal(sg[1], -1);
	assert_int_equal(apot_decompose(0.0f, 2, ex, sg), 0);
	assert_int_equal(apot_decompose(INFINITY, 2, ex, sg), -ERANGE);
}

int test_apot_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_apot_round_is_exact_short_sum),
		cmocka_unit_test(test_apot_one_term_is_nearest_power),
		cmocka_unit_test(test_apot_edges),
		cmocka_unit_test(test_apot_decompose_round_trip),
	};
	return cmocka_run_group_tests_name("reparam/apot", tests, NULL, NULL);
}
