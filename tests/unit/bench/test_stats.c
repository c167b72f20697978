// SPDX-License-Identifier: MIT
/*
 * shiftadd-bench statistics on known inputs. Expected percentiles come from numpy's
 * np.percentile (linear interpolation, its default), computed once by hand-run Python.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "tools/shiftadd-bench/stats.h"

static void test_percentiles_match_numpy(void **state)
{
	const double a[] = { 15, 20, 35, 40, 50 };
	double b[100];

	/* np.percentile([15,20,35,40,50], [50,90,99]) = [35, 46, 49.6] */
	assert_float_equal(stats_percentile_sorted(a, 5, 50), 35.0, 1e-12);
	assert_float_equal(stats_percentile_sorted(a, 5, 90), 46.0, 1e-12);
	assert_float_equal(stats_percentile_sorted(a, 5, 99), 49.6, 1e-12);
	assert_float_equal(stats_percentile_sorted(a, 5, 0), 15.0, 0);
	assert_float_equal(stats_percentile_sorted(a, 5, 100), 50.0, 0);
	/* np.percentile(np.arange(1, 101), [50, 90, 99]) = [50.5, 90.1, 99.01] */
	for (int i = 0; i < 100; i++)
		b[i] = i + 1;
	assert_float_equal(stats_percentile_sorted(b, 100, 50), 50.5, 1e-9);
	assert_float_equal(stats_percentile_sorted(b, 100, 90), 90.1, 1e-9);
	assert_float_equal(stats_percentile_sorted(b, 100, 99), 99.01, 1e-9);
}

static void test_percentile_edge_cases(void **state)
{
	const double one[] = { 7 };

	assert_true(isnan(stats_percentile_sorted(NULL, 0, 50)));
	assert_float_equal(stats_percentile_sorted(one, 1, 50), 7.0, 0);
	assert_float_equal(stats_percentile_sorted(one, 1, 99), 7.0, 0);
	assert_float_equal(stats_percentile_sorted(one, 1, -5), 7.0, 0);
	assert_true(isnan(stats_percentile_sorted(one, 1, NAN)));
}

static void test_summary_sorts_unsorted_input(void **state)
{
	/* np.percentile([0.5, 9.25, 3.0, 1.0], [50, 90, 99]) = [2, 7.375, 9.0625] */
	double v[] = { 0.5, 9.25, 3.0, 1.0 };
	struct stats_summary s;

	stats_summarize(v, 4, &s);
	assert_int_equal(s.n, 4);
	assert_float_equal(s.min, 0.5, 0);
	assert_float_equal(s.max, 9.25, 0);
	assert_float_equal(s.mean, 13.75 / 4, 1e-12);
	assert_float_equal(s.p50, 2.0, 1e-12);
	assert_float_equal(s.p90, 7.375, 1e-12);
	assert_float_equal(s.p99, 9.0625, 1e-12);
	stats_summarize(NULL, 0, &s);
	assert_int_equal(s.n, 0);
	assert_true(isnan(s.p50) && isnan(s.mean));
}

static void test_rates_and_utilization(void **state)
{
	/* 500 tokens in 250 ms = 2000 per second */
	assert_float_equal(stats_rate(500, 1000000000ull, 1250000000ull), 2000.0, 1e-9);
	assert_float_equal(stats_rate(5, 10, 10), 0.0, 0);
	assert_float_equal(stats_rate(5, 20, 10), 0.0, 0);
	/* 300 ms busy over 1.2 s = 0.25 */
	assert_float_equal(stats_utilization(100000000ull, 400000000ull, 0, 1200000000ull), 0.25,
			   1e-12);
	assert_float_equal(stats_utilization(5, 1, 0, 100), 0.0, 0);	 /* counter restarted */
	assert_float_equal(stats_utilization(0, 300, 0, 100), 1.0, 0);	 /* clamped */
	assert_float_equal(stats_utilization(0, 300, 100, 100), 0.0, 0); /* empty interval */
}

static void test_dvec_grows(void **state)
{
	struct dvec d = { 0 };

	for (int i = 0; i < 1000; i++)
		assert_int_equal(dvec_push(&d, i * 0.5), 0);
	assert_int_equal(d.n, 1000);
	assert_float_equal(d.v[999], 499.5, 0);
	dvec_done(&d);
	assert_null(d.v);
	assert_int_equal(d.n, 0);
}

int test_stats_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_percentiles_match_numpy),
		cmocka_unit_test(test_percentile_edge_cases),
		cmocka_unit_test(test_summary_sorts_unsorted_input),
		cmocka_unit_test(test_rates_and_utilization),
		cmocka_unit_test(test_dvec_grows),
	};

	return cmocka_run_group_tests_name("bench/stats", tests, NULL, NULL);
}
