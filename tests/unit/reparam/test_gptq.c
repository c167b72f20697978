// SPDX-License-Identifier: MIT
#include "reparam/internal.h"
#include "tests/unit/reparam/synth.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Test-local uniform asymmetric quantizer (range includes 0). */
static void ref_param(const double *v, uint32_t n, uint32_t bits, double *scale, double *zero)
{
	double lo = 0, hi = 0;

	for (uint32_t i = 0; i < n; i++) {
		lo = v[i] < lo ? v[i] : lo;
		hi = v[i] > hi ? v[i] : hi;
	}
	if (lo == hi) {
		lo = -1;
		hi = 1;
	}
	*scale = (hi - lo) / ((1 << bits) - 1);
	*zero = nearbyint(-lo / *scale);
}

static double ref_quant(double x, double scale, double zero, uint32_t bits)
{
	double q = nearbyint(x / scale) + zero;

	if (q < 0)
		q = 0;
	if (q > (1 << bits) - 1)
		q = (1 << bits) - 1;
	return scale * (q - zero);
}

/* RTN per row (group 0) or per group of columns. */
static void ref_rtn(const float *W, uint32_t n, uint32_t k, uint32_t bits, uint32_t group, float *Q)
{
	double buf[512], s, z;
	uint32_t g = group ? group : k;

	for (uint32_t r = 0; r < n; r++)
		for (uint32_t j0 = 0; j0 < k; j0 += g) {
			uint32_t j1 = j0 + g < k ? j0 + g : k;

			for (uint32_t j = j0; j < j1; j++)
				buf[j - j0] = W[(size_t)r * k + j];
			ref_param(buf, j1 - j0, bits, &s, &z);
			for (uint32_t j = j0; j < j1; j++)
				Q[(size_t)r * k + j] = (float)ref_quant(buf[j - j0], s, z, bits);
		}
}

/*
 * Straightforward GPTQ with per-row uniform quantization: Gauss-Jordan inverse, textbook
 * Cholesky, and the full rank-1 update after every column (no blocks, no LAPACK).
 */
static void ref_gptq(const float *W0, uint32_t n, uint32_t k, const double *H0, uint32_t bits,
		     float *Q)
{
	double *H = malloc((size_t)k * k * sizeof(double)), *I = calloc((size_t)k * k, 8);
	double *U = calloc((size_t)k * k, 8), *W = malloc((size_t)n * k * 8), mean = 0;
	double *sc = malloc(n * 8), *zp = malloc(n * 8), *row = malloc(k * 8);

	memcpy(H, H0, (size_t)k * k * sizeof(double));
	for (size_t i = 0; i < (size_t)n * k; i++)
		W[i] = W0[i];
	for (uint32_t j = 0; j < k; j++) {
		if (H[j * k + j] == 0) {
			H[j * k + j] = 1;
			for (uint32_t r = 0; r < n; r++)
				W[r * k + j] = 0;
		}
		mean += H[j * k + j] / k;
		I[j * k + j] = 1;
	}
	for (uint32_t j = 0; j < k; j++)
		H[j * k + j] += 0.01 * mean;
	for (uint32_t c = 0; c < k; c++) { /* Gauss-Jordan, H SPD so no pivoting */
		double p = H[c * k + c];

		for (uint32_t j = 0; j < k; j++) {
			H[c * k + j] /= p;
			I[c * k + j] /= p;
		}
		for (uint32_t r = 0; r < k; r++) {
			double f = H[r * k + c];

			if (r == c)
				continue;
			for (uint32_t j = 0; j < k; j++) {
				H[r * k + j] -= f * H[c * k + j];
				I[r * k + j] -= f * I[c * k + j];
			}
		}
	}
	for (uint32_t i = 0; i < k; i++) { /* I = U^T U */
		double s = I[i * k + i];

		for (uint32_t p = 0; p < i; p++)
			s -= U[p * k + i] * U[p * k + i];
		U[i * k + i] = sqrt(s);
		for (uint32_t j = i + 1; j < k; j++) {
			double t = I[i * k + j];

			for (uint32_t p = 0; p < i; p++)
				t -= U[p * k + i] * U[p * k + j];
			U[i * k + j] = t / U[i * k + i];
		}
	}
	for (uint32_t r = 0; r < n; r++) {
		for (uint32_t j = 0; j < k; j++)
			row[j] = W[r * k + j];
		ref_param(row, k, bits, &sc[r], &zp[r]);
	}
	for (uint32_t j = 0; j < k; j++)
		for (uint32_t r = 0; r < n; r++) {
			double q = ref_quant(W[r * k + j], sc[r], zp[r], bits);
			double err = (W[r * k + j] - q) / U[j * k + j];

			Q[r * k + j] = (float)q;
			for (uint32_t l = j + 1; l < k; l++)
				W[r * k + l] -= err * U[j * k + l];
		}
	free(row);
	free(zp);
	free(sc);
	free(W);
	free(U);
	free(I);
	free(H);
}

static void quantize(enum reparam_method m, uint32_t bits, uint32_t group, bool act, uint32_t block,
		     const float *W, uint32_t n, uint32_t k, const double *H,
		     struct reparam_result *r)
{
	struct reparam_opts o;
	struct errbuf e = { { 0 } };

	reparam_opts_init(&o, m, bits);
	o.group = group;
	o.act_order = act;
	o.block_size = block;
	o.rounds = 20;
	assert_int_equal(reparam_quantize(&o, W, n, k, H, r, &e), 0);
}

/* The blocked, LAPACK-based loop matches the textbook update column for column. */
static void test_gptq_matches_naive_reference(void **state)
{
	enum {
		N = 24,
		K = 44
	};
	float W[N * K], Q[N * K];
	double H[K * K];
	struct reparam_result r;
	uint32_t dead[] = { 5 };

	synth_weights(N, K, 20, W);
	synth_hessian(K, 200, 21, dead, 1, H);
	ref_gptq(W, N, K, H, 3, Q);
	quantize(REPARAM_GPTQ, 3, 0, false, 8, W, N, K, H, &r);
	for (uint32_t i = 0; i < N * K; i++)
		assert_true(fabsf(r.dense[i] - Q[i]) <= 1e-6f);
	reparam_result_done(&r);
}

/* With H = c I nothing is fed forward: GPTQ is exactly round-to-nearest. */
static void test_gptq_identity_hessian_is_rtn(void **state)
{
	enum {
		N = 16,
		K = 64
	};
	float W[N * K], Q[N * K];
	double H[K * K] = { 0 };
	struct reparam_result r;
	uint32_t groups[] = { 0, 16, 24 };

	synth_weights(N, K, 22, W);
	for (uint32_t j = 0; j < K; j++)
		H[j * K + j] = 3.5;
	for (uint32_t g = 0; g < 3; g++)
		for (int act = 0; act < 2; act++) {
			ref_rtn(W, N, K, 4, groups[g], Q);
			quantize(REPARAM_GPTQ, 4, groups[g], act, 128, W, N, K, H, &r);
			assert_memory_equal(r.dense, Q, sizeof(Q));
			reparam_result_done(&r);
			quantize(REPARAM_RTN, 4, groups[g], false, 128, W, N, K, NULL, &r);
			assert_memory_equal(r.dense, Q, sizeof(Q));
			reparam_result_done(&r);
		}
}

/* On correlated inputs error compensation lowers the output error well below RTN. */
static void test_gptq_beats_rtn_on_correlated_inputs(void **state)
{
	enum {
		N = 64,
		K = 128
	};
	float *W = malloc(N * K * sizeof(float));
	double *H = malloc(K * K * sizeof(double));
	struct reparam_result a, b;

	synth_weights(N, K, 23, W);
	synth_hessian(K, 512, 24, NULL, 0, H);
	for (uint32_t bits = 2; bits <= 4; bits++) {
		quantize(REPARAM_RTN, bits, 0, false, 128, W, N, K, H, &a);
		quantize(REPARAM_GPTQ, bits, 0, false, 128, W, N, K, H, &b);
		assert_true(b.err_output < 0.7 * a.err_output);
		reparam_result_done(&a);
		reparam_result_done(&b);
	}
	free(H);
	free(W);
}

/* act-order depends only on H: permuting the inputs permutes the result, bit for bit. */
static void test_gptq_act_order_is_permutation_consistent(void **state)
{
	enum {
		N = 24,
		K = 48
	};
	enum reparam_method ms[] = { REPARAM_GPTQ, REPARAM_SHIFTADD_ACC, REPARAM_SHIFTADD_LAT };
	float W[N * K], W2[N * K];
	double H[K * K], H2[K * K];
	uint32_t P[K], B[K / 8];
	struct rng rg;

	synth_weights(N, K, 25, W);
	synth_hessian(K, 300, 26, NULL, 0, H);
	rng_seed(&rg, 27);
	for (uint32_t b = 0; b < K / 8; b++)
		B[b] = b;
	for (uint32_t b = K / 8; b-- > 1;) { /* permute whole 8-column blocks (valid for all) */
		uint32_t x = (uint32_t)(rng_next(&rg) % (b + 1)), t = B[b];

		B[b] = B[x];
		B[x] = t;
	}
	for (uint32_t a = 0; a < K; a++)
		P[a] = 8 * B[a / 8] + a % 8;
	for (uint32_t r = 0; r < N; r++)
		for (uint32_t a = 0; a < K; a++)
			W2[r * K + a] = W[r * K + P[a]];
	for (uint32_t a = 0; a < K; a++)
		for (uint32_t b = 0; b < K; b++)
			H2[a * K + b] = H[P[a] * K + P[b]];
	for (uint32_t mi = 0; mi < 3; mi++) {
		struct reparam_result r1, r2, r0;

		quantize(ms[mi], 3, 0, true, 16, W, N, K, H, &r1);
		quantize(ms[mi], 3, 0, true, 16, W2, N, K, H2, &r2);
		quantize(ms[mi], 3, 0, false, 16, W, N, K, H, &r0);
		for (uint32_t r = 0; r < N; r++)
			for (uint32_t a = 0; a < K; a++)
				assert_true(r2.dense[r * K + a] == r1.dense[r * K + P[a]]);
		/* and act-order does change the walk (otherwise this test proves nothing) */
		assert_memory_not_equal(r0.dense, r1.dense, sizeof(W));
		assert_true(r1.err_output == r1.err_output); /* not NaN */
		reparam_result_done(&r0);
		reparam_result_done(&r1);
		reparam_result_done(&r2);
	}
}

/* Inputs that are always zero: their columns are zeroed and the rest still works. */
static void test_gptq_dead_columns(void **state)
{
	enum {
		N = 16,
		K = 40
	};
	enum reparam_method ms[] = { REPARAM_GPTQ, REPARAM_SHIFTADD_ACC, REPARAM_SHIFTADD_LAT };
	uint32_t dead[] = { 0, 7, 8, 33 };
	float W[N * K];
	double H[K * K];

	synth_weights(N, K, 28, W);
	synth_hessian(K, 200, 29, dead, 4, H);
	for (uint32_t mi = 0; mi < 3; mi++) {
		struct reparam_result r, rtn;

		quantize(ms[mi], 3, 0, mi == 0, 128, W, N, K, H, &r);
		quantize(REPARAM_RTN, 3, 0, false, 128, W, N, K, H, &rtn);
		assert_true(isfinite(r.err_output) && r.err_output < rtn.err_output);
		if (ms[mi] != REPARAM_SHIFTADD_LAT) /* block alpha is shared with live columns */
			for (uint32_t d = 0; d < 4; d++)
				for (uint32_t row = 0; row < N; row++)
					assert_true(r.dense[row * K + dead[d]] == 0);
		reparam_result_done(&r);
		reparam_result_done(&rtn);
	}
}

/* An indefinite H that damping cannot fix is an error, not garbage. */
static void test_gptq_rejects_indefinite_hessian(void **state)
{
	float W[2 * 2] = { 0.1f, -0.2f, 0.3f, 0.05f };
	double H[4] = { 1, 3, 3, 1 };
	struct reparam_opts o;
	struct reparam_result r = { 0 };
	struct errbuf e = { { 0 } };

	reparam_opts_init(&o, REPARAM_GPTQ, 3);
	assert_int_equal(reparam_quantize(&o, W, 2, 2, H, &r, &e), -EDOM);
	assert_non_null(strstr(e.msg, "positive definite"));
	assert_null(r.dense);
}

int test_gptq_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gptq_matches_naive_reference),
		cmocka_unit_test(test_gptq_identity_hessian_is_rtn),
		cmocka_unit_test(test_gptq_beats_rtn_on_correlated_inputs),
		cmocka_unit_test(test_gptq_act_order_is_permutation_consistent),
		cmocka_unit_test(test_gptq_dead_columns),
		cmocka_unit_test(test_gptq_rejects_indefinite_hessian),
	};
	return cmocka_run_group_tests_name("reparam/gptq", tests, NULL, NULL);
}
