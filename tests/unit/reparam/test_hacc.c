// SPDX-License-Identifier: MIT
/*
 * The calibration Hessian accumulator (f32 rank-k update per chunk of rows, chunks summed in
 * double) against a plain double triple loop over the same rows: every chunk boundary lands
 * where it should (ragged chunks, rows added in uneven pieces), and the f32 products keep the
 * entries within a stated relative error of the exact sum.
 */
#include "reparam/internal.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

/*
 * Worst entry error allowed, relative to sqrt(H_ii H_jj) (the scale of entry ij): each chunk
 * is an f32 sum of up to CALIB_HACC_CHUNK products, error a few 1e-7 (1e-7 measured on
 * SmolLM2's activations); 1e-5 leaves room for BLAS's summation order and still fails for one
 * row missed or added twice (an error of 1 / n_rows >= 3e-4 here).
 */
#define TOL 1e-5

/* Activation-like rows: Gaussian, a per-channel mean, a few channels 30x larger. */
static float *make_rows(uint64_t n, uint32_t w, uint64_t seed)
{
	float *x = malloc(n * w * sizeof(float));
	struct rng r;

	assert_non_null(x);
	rng_seed(&r, seed);
	for (uint64_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < w; j++)
			x[i * w + j] = (float)((rng_normal(&r) + 0.3 * (j % 5)) *
					       (j % 17 == 3 ? 30.0 : 1.0));
	return x;
}

/* 2 X^T X / n in double, by loops, full matrix. */
static double *reference(const float *x, uint64_t n, uint32_t w)
{
	double *H = calloc((size_t)w * w, sizeof(double));

	assert_non_null(H);
	for (uint64_t r = 0; r < n; r++)
		for (uint32_t i = 0; i < w; i++)
			for (uint32_t j = 0; j < w; j++)
				H[(size_t)i * w + j] += (double)x[r * w + i] * x[r * w + j];
	for (size_t i = 0; i < (size_t)w * w; i++)
		H[i] *= 2.0 / (double)n;
	return H;
}

/* max over the upper triangle of |H - ref| / sqrt(ref_ii ref_jj) */
static double worst_error(const double *H, const double *ref, uint32_t w)
{
	double worst = 0;

	for (uint32_t i = 0; i < w; i++) {
		for (uint32_t j = i; j < w; j++) {
			double s = sqrt(ref[(size_t)i * w + i] * ref[(size_t)j * w + j]);
			double d = fabs(H[(size_t)i * w + j] - ref[(size_t)i * w + j]) / s;

			worst = d > worst ? d : worst;
		}
	}
	return worst;
}

/* Rows @n added in pieces of @piece rows with chunk @chunk (0 = the default). */
static double run_case(uint64_t n, uint32_t w, uint32_t chunk, uint64_t piece)
{
	float *x = make_rows(n, w, 7 + n + w);
	double *ref = reference(x, n, w), err;
	struct calib_hacc h;

	assert_int_equal(calib_hacc_init(&h, w), 0);
	assert_int_equal(h.chunk, CALIB_HACC_CHUNK);
	if (chunk)
		h.chunk = chunk;
	for (uint64_t r0 = 0; r0 < n; r0 += piece)
		calib_hacc_add(&h, x + r0 * w, n - r0 < piece ? n - r0 : piece);
	assert_int_equal(h.n_rows, n);
	calib_hacc_finish(&h);
	err = worst_error(h.H, ref, w);
	print_message("# %lu rows x %u, chunk %u, pieces of %lu: worst |dH| / sqrt(Hii Hjj) %.3g\n",
		      (unsigned long)n, w, h.chunk, (unsigned long)piece, err);
	calib_hacc_done(&h);
	free(ref);
	free(x);
	return err;
}

static void test_default_chunks_match_double_reference(void **state)
{
	(void)state;
	/* 3 windows of 1100 rows: two whole chunks and a ragged one per window */
	assert_true(run_case(3300, 96, 0, 1100) < TOL);
}

static void test_ragged_chunks_and_pieces_match(void **state)
{
	(void)state;
	/* chunks of 7 over pieces of 13: boundaries never line up */
	assert_true(run_case(200, 33, 7, 13) < TOL);
	/* one row at a time, and one chunk bigger than everything */
	assert_true(run_case(40, 20, 1, 1) < TOL);
	assert_true(run_case(40, 20, 4096, 40) < TOL);
}

/* Rows split over two accumulators (alternate pieces), merged: the sum of all rows. */
static void test_merge_of_parts_is_the_whole(void **state)
{
	uint64_t n = 1500, piece = 250;
	uint32_t w = 40;
	float *x = make_rows(n, w, 99);
	double *ref = reference(x, n, w), err;
	struct calib_hacc h[2];

	(void)state;
	assert_int_equal(calib_hacc_init(&h[0], w), 0);
	assert_int_equal(calib_hacc_init(&h[1], w), 0);
	for (uint64_t r0 = 0; r0 < n; r0 += piece)
		calib_hacc_add(&h[r0 / piece % 2], x + r0 * w, piece);
	calib_hacc_merge(&h[0], &h[1]);
	assert_int_equal(h[0].n_rows, n);
	calib_hacc_finish(&h[0]);
	err = worst_error(h[0].H, ref, w);
	print_message("# merged halves: worst |dH| / sqrt(Hii Hjj) %.3g\n", err);
	assert_true(err < TOL);
	calib_hacc_done(&h[0]);
	calib_hacc_done(&h[1]);
	free(ref);
	free(x);
}

static void test_done_after_failed_or_no_init_is_safe(void **state)
{
	struct calib_hacc h = { 0 };

	(void)state;
	calib_hacc_done(&h);
	assert_int_equal(calib_hacc_init(&h, 1), 0);
	calib_hacc_done(&h);
	calib_hacc_done(&h);
}

int test_hacc_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_chunks_match_double_reference),
		cmocka_unit_test(test_ragged_chunks_and_pieces_match),
		cmocka_unit_test(test_merge_of_parts_is_the_whole),
		cmocka_unit_test(test_done_after_failed_or_no_init_is_safe),
	};

	return cmocka_run_group_tests_name("reparam/hacc", tests, NULL, NULL);
}
