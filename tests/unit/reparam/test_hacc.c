// SPDX-License-Identifier: MIT
/*
 * The calibration Hessian accumulator (f32 rank-k update per chunk of rows, chunks summed in
 * double) against a plain double triple loop over the same rows: every chunk boundary lands
 * where it should (ragged chunks, rows added in uneven pieces), and the f32 products keep the
 * entries within a stated relative error of the exact sum. The same for error propagation's
 * cross accumulator, and its solve against the least-squares conditions it must meet.
 */
#include "reparam/internal.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "kernels/gemm_bf16.h"

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

/*
 * Rows @n added in pieces of @piece rows with chunk @chunk (0 = the default), with f32 or
 * (@bf16) bf16 products; the reference of the bf16 ones is of the inputs rounded to bf16, so
 * that what is measured is the summation.
 */
static double run_case_math(uint64_t n, uint32_t w, uint32_t chunk, uint64_t piece, bool bf16)
{
	float *x = make_rows(n, w, 7 + n + w), *xr = malloc(n * w * sizeof(float));
	double *ref, err;
	struct calib_hacc h;

	assert_non_null(xr);
	for (uint64_t i = 0; i < n * w; i++)
		xr[i] = bf16 ? gemm_bf16_round(x[i]) : x[i];
	ref = reference(xr, n, w);
	free(xr);
	assert_int_equal(calib_hacc_init(&h, w, bf16), 0);
	assert_int_equal(h.chunk, bf16 ? CALIB_HACC_CHUNK_BF16 : CALIB_HACC_CHUNK);
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

static double run_case(uint64_t n, uint32_t w, uint32_t chunk, uint64_t piece)
{
	return run_case_math(n, w, chunk, piece, false);
}

static void test_default_chunks_match_double_reference(void **state)
{
	(void)state;
	/* 3 windows of 1100 rows: two whole chunks and a ragged one per window */
	assert_true(run_case(3300, 96, 0, 1100) < TOL);
}

/* bf16 products: 2048-row chunks, each several k-blocks summed in f32, then in double. */
static void test_bf16_chunks_match_double_reference(void **state)
{
	(void)state;
	if (!gemm_bf16_supported()) {
		print_message("# no AVX512_BF16 on this host: the bf16 chunks are not run\n");
		return;
	}
	/* 2 windows of 2300 rows: a whole chunk and a ragged one per window */
	assert_true(run_case_math(4600, 72, 0, 2300, true) < TOL);
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
	assert_int_equal(calib_hacc_init(&h[0], w, false), 0);
	assert_int_equal(calib_hacc_init(&h[1], w, false), 0);
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
	assert_int_equal(calib_hacc_init(&h, 1, false), 0);
	calib_hacc_done(&h);
	calib_hacc_done(&h);
}

/* 2 (ref - x)^T x / n in double, by loops. */
static double *cross_reference(const float *ref, const float *x, uint64_t n, uint32_t w)
{
	double *D = calloc((size_t)w * w, sizeof(double));

	assert_non_null(D);
	for (uint64_t r = 0; r < n; r++)
		for (uint32_t i = 0; i < w; i++)
			for (uint32_t j = 0; j < w; j++)
				D[(size_t)i * w + j] +=
					((double)ref[r * w + i] - x[r * w + i]) * x[r * w + j];
	for (size_t i = 0; i < (size_t)w * w; i++)
		D[i] *= 2.0 / (double)n;
	return D;
}

/* x plus a small perturbation: the unquantized model's input next to the quantized one's. */
static float *perturbed(const float *x, uint64_t n, uint32_t w, double scale, uint64_t seed)
{
	float *y = malloc(n * w * sizeof(float));
	struct rng r;

	assert_non_null(y);
	rng_seed(&r, seed);
	for (uint64_t i = 0; i < n * w; i++)
		y[i] = (float)(x[i] + scale * rng_normal(&r));
	return y;
}

/*
 * The error-propagation accumulator: D = 2 (X - X̂)^T X̂ / n, full (not symmetric), rows in
 * uneven pieces over two merged parts, ragged last chunk. Its entries are relative to
 * sqrt(H_ii H_jj) of the difference and of x (their product's scale).
 */
static void test_cross_accumulator_matches_double_reference(void **state)
{
	uint64_t n = 1300, piece = 217;
	uint32_t w = 24;
	float *x = make_rows(n, w, 5), *ref = perturbed(x, n, w, 0.05, 6);
	double *D0 = cross_reference(ref, x, n, w), *Hx = reference(x, n, w), worst = 0;
	struct calib_xacc a[2];

	(void)state;
	assert_int_equal(calib_xacc_init(&a[0], w, false), 0);
	assert_int_equal(calib_xacc_init(&a[1], w, false), 0);
	for (uint64_t r0 = 0; r0 < n; r0 += piece)
		calib_xacc_add(&a[r0 / piece % 2], ref + r0 * w, x + r0 * w,
			       n - r0 < piece ? n - r0 : piece);
	calib_xacc_merge(&a[0], &a[1]);
	assert_int_equal(a[0].n_rows, n);
	calib_xacc_finish(&a[0]);
	for (uint32_t i = 0; i < w; i++) {
		for (uint32_t j = 0; j < w; j++) {
			/* |d_i| ~ 0.05: scale of entry ij is 0.05 sqrt(2) sqrt(H_jj / 2) */
			double s = 0.05 * sqrt(Hx[(size_t)j * w + j]);
			double d = fabs(a[0].D[(size_t)i * w + j] - D0[(size_t)i * w + j]) / s;

			worst = d > worst ? d : worst;
		}
	}
	print_message("# cross accumulator: worst |dD| / scale %.3g\n", worst);
	assert_true(worst < TOL);
	/* not symmetric in general: a transposed store would fail the check above */
	assert_true(fabs(D0[1] - D0[w]) > 10 * TOL * 0.05 * sqrt(Hx[0]));
	calib_xacc_done(&a[0]);
	calib_xacc_done(&a[1]);
	calib_xacc_done(&a[0]);
	free(D0);
	free(Hx);
	free(ref);
	free(x);
}

/*
 * qep_solve + qep_apply at full strength without damping give the least-squares weights
 * W* = argmin ||W X - W* X̂||: the residual W X - W* X̂ is orthogonal to every input
 * channel of X̂ (the normal equations, checked on the rows themselves). Half strength lands
 * half way between W and W*.
 */
static void test_error_propagation_solves_least_squares(void **state)
{
	uint64_t n = 400;
	uint32_t w = 12, nout = 5;
	float *x = make_rows(n, w, 11), *ref = perturbed(x, n, w, 0.2, 12);
	float *W = malloc((size_t)nout * w * sizeof(float));
	float *Ws = malloc((size_t)nout * w * sizeof(float));
	float *Wh = malloc((size_t)nout * w * sizeof(float));
	double *M = malloc((size_t)w * w * sizeof(double)), worst = 0, moved = 0;
	struct calib_hacc h;
	struct calib_xacc a;
	struct errbuf e = { { 0 } };
	struct rng r;

	(void)state;
	assert_true(W && Ws && Wh && M);
	rng_seed(&r, 13);
	for (uint32_t i = 0; i < nout * w; i++)
		W[i] = (float)rng_normal(&r);
	assert_int_equal(calib_hacc_init(&h, w, false), 0);
	assert_int_equal(calib_xacc_init(&a, w, false), 0);
	calib_hacc_add(&h, x, n);
	calib_xacc_add(&a, ref, x, n);
	calib_hacc_finish(&h);
	calib_xacc_finish(&a);
	assert_int_equal(qep_solve(h.H, a.D, w, 0, M, &e), 0);
	assert_int_equal(qep_apply(W, nout, w, M, 1.0, Ws), 0);
	assert_int_equal(qep_apply(W, nout, w, M, 0.5, Wh), 0);
	for (uint32_t o = 0; o < nout; o++) {
		for (uint32_t c = 0; c < w; c++) {
			double g = 0, scale = 0;

			/* sum over rows of (W ref_t - W* x_t)_o * x_t[c] */
			for (uint64_t t = 0; t < n; t++) {
				double y = 0;

				for (uint32_t j = 0; j < w; j++)
					y += (double)W[o * w + j] * ref[t * w + j] -
					     (double)Ws[o * w + j] * x[t * w + j];
				g += y * x[t * w + c];
				scale += fabs(y * x[t * w + c]);
			}
			worst = fabs(g) / scale > worst ? fabs(g) / scale : worst;
			moved += fabs(Ws[o * w + c] - W[o * w + c]);
			assert_float_equal(Wh[o * w + c], 0.5 * (W[o * w + c] + Ws[o * w + c]),
					   1e-5 * (1 + fabs(W[o * w + c])));
		}
	}
	print_message("# least squares: worst |gradient| / its scale %.3g; mean |W* - W| %.3g\n",
		      worst, moved / (nout * w));
	assert_true(worst < 1e-4);
	assert_true(moved / (nout * w) > 1e-2); /* the inputs differ, so W* is not W */
	calib_hacc_done(&h);
	calib_xacc_done(&a);
	free(M);
	free(Wh);
	free(Ws);
	free(W);
	free(ref);
	free(x);
}

int test_hacc_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_chunks_match_double_reference),
		cmocka_unit_test(test_bf16_chunks_match_double_reference),
		cmocka_unit_test(test_ragged_chunks_and_pieces_match),
		cmocka_unit_test(test_merge_of_parts_is_the_whole),
		cmocka_unit_test(test_done_after_failed_or_no_init_is_safe),
		cmocka_unit_test(test_cross_accumulator_matches_double_reference),
		cmocka_unit_test(test_error_propagation_solves_least_squares),
	};

	return cmocka_run_group_tests_name("reparam/hacc", tests, NULL, NULL);
}
