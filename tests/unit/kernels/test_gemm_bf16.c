// SPDX-License-Identifier: MIT
/*
 * bf16 products (kernels/gemm_bf16.h). Oracles: bf16 rounding of hand-picked values worked out
 * from the format (7 stored mantissa bits, ties to even), and a double-precision product of
 * the bf16-rounded inputs, to within f32 accumulation error; entries the call must not touch
 * are checked against canaries.
 */
#include "kernels/gemm_bf16.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/lib/rand_data.h"

#define CANARY 12345.0f

static void test_round_to_nearest_even(void **state)
{
	const float e8 = ldexpf(1, -8), e7 = ldexpf(1, -7), e6 = ldexpf(1, -6);

	(void)state;
	assert_true(gemm_bf16_round(1.0f) == 1.0f);
	/* halfway between 1 (even) and 1 + 2^-7 (odd): down */
	assert_true(gemm_bf16_round(1.0f + e8) == 1.0f);
	/* halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): up */
	assert_true(gemm_bf16_round(1.0f + 3 * e8) == 1.0f + e6);
	assert_true(gemm_bf16_round(1.0f + e8 + ldexpf(1, -20)) == 1.0f + e7);
	assert_true(gemm_bf16_round(-(1.0f + e8 + ldexpf(1, -20))) == -(1.0f + e7));
	/* past the midpoint of bf16's largest (0x7f7f, 3.3895e38) and 2^128 */
	assert_true(gemm_bf16_round(3.4e38f) == INFINITY);
	assert_true(isfinite(gemm_bf16_round(3.39e38f)));
	assert_true(signbit(gemm_bf16_round(-0.0f)) && gemm_bf16_round(-0.0f) == 0.0f);
	assert_true(isnan(gemm_bf16_round(NAN)));
}

struct shape {
	uint32_t m, n, k;
};

/*
 * Edges of every block size: 12 x 32 tiles, k-blocks of up to 320 (one block, two of 161
 * and 162 with odd k, three unequal), 1536 columns.
 */
static const struct shape shapes[] = {
	{ 1, 1, 1 },	  { 13, 37, 67 },   { 12, 32, 320 },  { 30, 40, 321 },
	{ 150, 70, 600 }, { 25, 1600, 41 }, { 200, 64, 641 },
};

#define N_SHAPES (sizeof(shapes) / sizeof(shapes[0]))

static float *random_matrix(size_t n)
{
	float *x = malloc(n * sizeof(float));

	assert_non_null(x);
	for (size_t i = 0; i < n; i++)
		x[i] = test_act();
	return x;
}

/*
 * C[i][j] against sum over k of round(a(i, kk)) round(b(j, kk)) in double. The f32 sums may
 * drift by about u sqrt(k) per step of a random walk: the bound is u k times the products'
 * root sum of squares; a rounding that is not to nearest (truncation, say) misses it by ~100x.
 */
static void check_entry(float c, const float *a, size_t as, const float *b, size_t bs, uint32_t k)
{
	double ref = 0, ss = 0;

	for (uint32_t kk = 0; kk < k; kk++) {
		double p = (double)gemm_bf16_round(a[kk * as]) * gemm_bf16_round(b[kk * bs]);

		ref += p;
		ss += p * p;
	}
	assert_true(fabs(c - ref) <= ldexp(1, -24) * k * sqrt(ss) + 1e-30);
}

static bool host_runs(const char *what)
{
	if (gemm_bf16_supported())
		return true;
	print_message("%s: NOT RUN (host lacks AVX512_BF16)\n", what);
	return false;
}

static void test_nt_matches_double(void **state)
{
	(void)state;
	if (!host_runs("gemm_bf16_nt"))
		return;
	test_rng_state = 11;
	for (uint32_t s = 0; s < N_SHAPES; s++) {
		const struct shape *sh = &shapes[s];
		size_t lda = sh->k + 3, ldb = sh->k + 1, ldc = sh->n + 5;
		float *a = random_matrix(sh->m * lda), *b = random_matrix(sh->n * ldb);
		float *c = malloc(sh->m * ldc * sizeof(float));

		assert_non_null(c);
		for (size_t i = 0; i < sh->m * ldc; i++)
			c[i] = CANARY;
		assert_int_equal(gemm_bf16_nt(sh->m, sh->n, sh->k, a, lda, b, ldb, c, ldc), 0);
		for (uint32_t i = 0; i < sh->m; i++) {
			for (uint32_t j = 0; j < sh->n; j++)
				check_entry(c[i * ldc + j], a + i * lda, 1, b + j * ldb, 1, sh->k);
			for (uint32_t j = sh->n; j < ldc; j++)
				assert_true(c[i * ldc + j] == CANARY);
		}
		free(a);
		free(b);
		free(c);
	}
}

/* Xᵀ Y with rows per token, full and (X = Y) upper. */
static void test_tn_matches_double(void **state)
{
	(void)state;
	if (!host_runs("gemm_bf16_tn"))
		return;
	test_rng_state = 12;
	for (uint32_t s = 0; s < 2 * N_SHAPES; s++) {
		const struct shape *sh = &shapes[s / 2];
		bool upper = s % 2;
		uint32_t m = sh->m, n = upper ? sh->m : sh->n, k = sh->k;
		size_t lda = m + 2, ldb = n + 7, ldc = n + 1;
		float *a = random_matrix(k * lda), *b = upper ? a : random_matrix(k * ldb);
		float *c = malloc(m * ldc * sizeof(float));

		if (upper)
			ldb = lda;
		assert_non_null(c);
		for (size_t i = 0; i < m * ldc; i++)
			c[i] = CANARY;
		assert_int_equal(gemm_bf16_tn(m, n, k, a, lda, b, ldb, c, ldc, upper), 0);
		for (uint32_t i = 0; i < m; i++) {
			for (uint32_t j = 0; j < n; j++) {
				if (upper && j < i && c[i * ldc + j] == CANARY)
					continue; /* below the diagonal: may be left */
				check_entry(c[i * ldc + j], a + i, lda, b + j, ldb, k);
			}
			assert_true(c[i * ldc + n] == CANARY);
		}
		free(a);
		if (!upper)
			free(b);
		free(c);
	}
}

/* A block of rows and columns computed alone gives the same bits as inside a larger call. */
static void test_result_independent_of_offsets(void **state)
{
	const uint32_t m = 100, n = 90, k = 700, r0 = 7, c0 = 19, mm = 50, nn = 40;
	float *a, *b, *c, *c2;

	(void)state;
	if (!host_runs("gemm_bf16 offsets"))
		return;
	test_rng_state = 13;
	a = random_matrix(m * k);
	b = random_matrix(n * k);
	c = malloc(m * n * sizeof(float));
	c2 = malloc(mm * nn * sizeof(float));
	assert_non_null(c);
	assert_non_null(c2);
	assert_int_equal(gemm_bf16_nt(m, n, k, a, k, b, k, c, n), 0);
	assert_int_equal(gemm_bf16_nt(mm, nn, k, a + r0 * k, k, b + c0 * k, k, c2, nn), 0);
	for (uint32_t i = 0; i < mm; i++)
		assert_memory_equal(c2 + i * nn, c + (r0 + i) * n + c0, nn * sizeof(float));
	free(a);
	free(b);
	free(c);
	free(c2);
}

static void test_bad_arguments(void **state)
{
	float a[64] = { 0 }, c[64];

	(void)state;
	if (!gemm_bf16_supported()) {
		assert_int_equal(gemm_bf16_nt(2, 2, 2, a, 2, a, 2, c, 2), -EOPNOTSUPP);
		assert_int_equal(gemm_bf16_tn(2, 2, 2, a, 2, a, 2, c, 2, true), -EOPNOTSUPP);
		return;
	}
	assert_int_equal(gemm_bf16_nt(2, 2, 4, a, 3, a, 4, c, 2), -EINVAL);
	assert_int_equal(gemm_bf16_nt(2, 4, 2, a, 2, a, 2, c, 3), -EINVAL);
	assert_int_equal(gemm_bf16_tn(2, 3, 2, a, 2, a, 3, c, 3, true), -EINVAL);
	assert_int_equal(gemm_bf16_tn(4, 2, 2, a, 3, a, 2, c, 2, false), -EINVAL);
}

int test_gemm_bf16_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_to_nearest_even),
		cmocka_unit_test(test_nt_matches_double),
		cmocka_unit_test(test_tn_matches_double),
		cmocka_unit_test(test_result_independent_of_offsets),
		cmocka_unit_test(test_bad_arguments),
	};

	return cmocka_run_group_tests_name("kernels/gemm_bf16", tests, NULL, NULL);
}
