// SPDX-License-Identifier: MIT
/* The run-time Hadamard wrapper against dense matrices built from the transform's definition. */
#include "engine/linear.h"
#include "engine/sa_format.h"
#include "kernels/rht.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static float frand(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (float)((*s >> 40) / 16777216.0 - 0.5);
}

/* y[n] = A[n][k] x[k] in double */
static void matvec(const float *A, const double *x, uint32_t n, uint32_t k, double *y)
{
	for (uint32_t i = 0; i < n; i++) {
		y[i] = 0;
		for (uint32_t j = 0; j < k; j++)
			y[i] += (double)A[(size_t)i * k + j] * x[j];
	}
}

static void check(uint32_t n_out, uint32_t n_in, enum sa_rht_mode mode, uint32_t m)
{
	struct sa_rht rht = { .mode = mode, .seed_in = 7, .seed_out = 99 };
	struct linear inner, l;
	struct rht tin, tout;
	float *W = malloc((size_t)n_out * n_in * sizeof(float));
	float *Tin = malloc((size_t)n_in * n_in * sizeof(float));
	float *ToutT = malloc((size_t)n_out * n_out * sizeof(float));
	float *x = malloc((size_t)m * n_in * sizeof(float)), *y = malloc((size_t)m * n_out * 4);
	double *u = malloc(n_in * sizeof(double)), *z = malloc(n_out * sizeof(double));
	double *ref = malloc(n_out * sizeof(double));
	uint64_t s = 1;

	assert_true(W && Tin && ToutT && x && y && u && z && ref);
	for (size_t i = 0; i < (size_t)n_out * n_in; i++)
		W[i] = frand(&s);
	for (size_t i = 0; i < (size_t)m * n_in; i++)
		x[i] = frand(&s);
	assert_int_equal(rht_init(&tin, n_in, rht.seed_in), 0);
	assert_int_equal(rht_init(&tout, n_out, rht.seed_out), 0);
	rht_matrix(&tin, false, Tin);
	rht_matrix(&tout, true, ToutT);
	assert_int_equal(linear_init_dense(&inner, W, n_out, n_in, 0), 0);
	assert_int_equal(linear_wrap_rht(&l, &inner, &rht), 0);
	linear_forward(&l, x, y, m);
	for (uint32_t r = 0; r < m; r++) {
		double xd[4096];

		for (uint32_t j = 0; j < n_in; j++)
			xd[j] = x[(size_t)r * n_in + j];
		matvec(Tin, xd, n_in, n_in, u);
		matvec(W, u, n_out, n_in, z);
		if (mode == SA_RHT_BOTH)
			matvec(ToutT, z, n_out, n_out, ref);
		else
			memcpy(ref, z, n_out * sizeof(double));
		for (uint32_t i = 0; i < n_out; i++)
			assert_true(fabs(y[(size_t)r * n_out + i] - ref[i]) <=
				    1e-4 * (1 + fabs(ref[i])) * sqrt((double)n_in));
	}
	linear_done(&l);
	rht_done(&tin);
	rht_done(&tout);
	free(W);
	free(Tin);
	free(ToutT);
	free(x);
	free(y);
	free(u);
	free(z);
	free(ref);
}

static void test_input_transform_matches_dense_definition(void **state)
{
	check(48, 192, SA_RHT_INPUT, 1);
	check(64, 576, SA_RHT_INPUT, 3);
}

static void test_both_sides_match_dense_definition(void **state)
{
	check(192, 64, SA_RHT_BOTH, 2);
	check(576, 576, SA_RHT_BOTH, 1);
}

static void test_unsupported_width_is_refused(void **state)
{
	struct sa_rht rht = { .mode = SA_RHT_INPUT, .seed_in = 1 };
	float w[6 * 10] = { 0 };
	struct linear inner, l;

	/* n = 10 is not a multiple of 4: the transform refuses it, the inner layer survives */
	assert_int_equal(linear_init_dense(&inner, w, 6, 10, 0), 0);
	assert_int_equal(linear_wrap_rht(&l, &inner, &rht), -EINVAL);
	linear_done(&inner);
}

/*
 * One forward over layers sharing an input gives, bit for bit, what separate forwards give:
 * with one input seed (the transform shared), with different seeds or a plain dense layer in
 * the group (each on its own), with a bias, on the stack buffer (m = 3) and the heap (m = 70).
 */
static void test_shared_input_equals_separate_forwards(void **state)
{
	enum {
		K = 64,
		N = 3
	};
	static const uint32_t n_out[N] = { 64, 32, 96 }, ms[] = { 3, 70 };
	static float bias[96];
	struct linear inner[N], l[N], plain;
	float *w[N], *x, *y[N], *want;
	uint64_t s = 5;

	for (uint32_t i = 0; i < 96; i++)
		bias[i] = frand(&s);
	for (int i = 0; i < N; i++) {
		struct sa_rht rht = { .mode = i == 1 ? SA_RHT_INPUT : SA_RHT_BOTH,
				      .seed_in = 7,
				      .seed_out = 99 + i };

		w[i] = malloc((size_t)n_out[i] * K * sizeof(float));
		y[i] = malloc((size_t)70 * n_out[i] * sizeof(float));
		assert_true(w[i] && y[i]);
		for (size_t j = 0; j < (size_t)n_out[i] * K; j++)
			w[i][j] = frand(&s);
		assert_int_equal(linear_init_dense(&inner[i], w[i], n_out[i], K, 0), 0);
		inner[i].bias = i == 2 ? bias : NULL;
		assert_int_equal(linear_wrap_rht(&l[i], &inner[i], &rht), 0);
	}
	assert_int_equal(linear_init_dense(&plain, w[1], n_out[1], K, 0), 0);
	x = malloc((size_t)70 * K * sizeof(float));
	want = malloc((size_t)70 * 96 * sizeof(float));
	assert_true(x && want);
	for (size_t j = 0; j < (size_t)70 * K; j++)
		x[j] = frand(&s);
	for (size_t mi = 0; mi < sizeof(ms) / sizeof(ms[0]); mi++) {
		uint32_t m = ms[mi];
		const struct linear *group[2][N] = { { &l[0], &l[1], &l[2] },
						     { &l[0], &plain, &l[2] } };

		for (int g = 0; g < 2; g++) {
			linear_forward_shared(group[g], N, x, y, m);
			for (int i = 0; i < N; i++) {
				linear_forward(group[g][i], x, want, m);
				assert_memory_equal(y[i], want,
						    (size_t)m * group[g][i]->n_out * sizeof(float));
			}
		}
	}
	for (int i = 0; i < N; i++) {
		linear_done(&l[i]);
		free(w[i]);
		free(y[i]);
	}
	linear_done(&plain);
	free(x);
	free(want);
}

int test_linear_rht_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_input_transform_matches_dense_definition),
		cmocka_unit_test(test_both_sides_match_dense_definition),
		cmocka_unit_test(test_unsupported_width_is_refused),
		cmocka_unit_test(test_shared_input_equals_separate_forwards),
	};
	return cmocka_run_group_tests_name("engine/linear_rht", tests, NULL, NULL);
}
