// SPDX-License-Identifier: MIT
/*
 * shiftadd-rht (issue 8). Oracles: dense products with the transforms' definition matrices
 * (rht_matrix, integer entries) in double, for the algebra of the basis change and the
 * folded normalization; the shift-add kernels' own error bound for the deployed path; the
 * Hessian-weighted error by plain loops (synth_output_error) for the method comparison.
 */
#include "kernels/lut.h"
#include "kernels/rht.h"
#include "reparam/internal.h"
#include "tests/unit/reparam/synth.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int quantize(enum reparam_method m, enum reparam_rht sides, uint32_t bits, const float *W,
		    uint32_t n, uint32_t k, const double *H, struct reparam_result *r)
{
	struct reparam_opts o;
	struct errbuf e = { { 0 } };

	reparam_opts_init(&o, m, bits);
	o.rounds = 20;
	if (m == REPARAM_SHIFTADD_RHT) {
		o.rht = sides;
		o.rht_seed_in = 1234;
		o.rht_seed_out = 5678;
	}
	return reparam_quantize(&o, W, n, k, H, r, &e);
}

/* Dense T (n x n) as doubles from the definition, and Λ. */
static double *dense_t(uint32_t n, uint64_t seed, double *scale)
{
	float *M = malloc((size_t)n * n * sizeof(float));
	double *D = malloc((size_t)n * n * sizeof(double));
	struct rht t;

	assert_int_equal(rht_init(&t, n, seed), 0);
	rht_matrix(&t, false, M);
	for (size_t i = 0; i < (size_t)n * n; i++)
		D[i] = M[i];
	for (uint32_t j = 0; j < n; j++)
		scale[j] = rht_scale(&t, j);
	rht_done(&t);
	free(M);
	return D;
}

/* C[a][c] = sum_b A[a][b] B[b][c] (plain loops). */
static void matmul(const double *A, const double *B, uint32_t na, uint32_t nb, uint32_t nc,
		   double *C)
{
	for (uint32_t a = 0; a < na; a++)
		for (uint32_t c = 0; c < nc; c++) {
			double s = 0;

			for (uint32_t b = 0; b < nb; b++)
				s += A[(size_t)a * nb + b] * B[(size_t)b * nc + c];
			C[(size_t)a * nc + c] = s;
		}
}

/*
 * The stored qweight is W' = Λ_S⁻¹ S W Tᵀ Λ_T⁻¹ quantized (scale folded in), and dense is
 * Sᵀ Q T: checked with the definition matrices, for input-only and both.
 */
static void test_basis_and_folded_scale(void **state)
{
	enum {
		N = 48,
		K = 96
	};
	float *W = malloc(N * K * sizeof(float)), *Q = malloc(N * K * sizeof(float));
	double *H = malloc(K * K * sizeof(double)), sk[K], sn[N];
	double *T = dense_t(K, 1234, sk), *S = dense_t(N, 5678, sn);
	double *A = malloc(N * K * sizeof(double)), *B = malloc(N * K * sizeof(double));
	double *Wp = malloc(N * K * sizeof(double));

	synth_weights(N, K, 50, W);
	synth_hessian(K, 300, 51, NULL, 0, H);
	for (int both = 0; both < 2; both++) {
		struct reparam_result r;
		double num = 0, den = 0, dn = 0, dd = 0;

		assert_int_equal(quantize(REPARAM_SHIFTADD_RHT,
					  both ? REPARAM_RHT_BOTH : REPARAM_RHT_INPUT, 3, W, N, K,
					  H, &r),
				 0);
		assert_true(r.has_qweight && r.deployable);
		assert_int_equal(r.qw.layout, QW_LAYOUT_COL);
		assert_int_equal(r.rht, both ? REPARAM_RHT_BOTH : REPARAM_RHT_INPUT);
		assert_true(r.rht_seed_in == 1234 && r.rht_seed_out == (both ? 5678u : 0u));
		/* APoT alphas: at most 3 signed powers of two each */
		for (uint32_t i = 0; i < 3 * K; i++)
			assert_true(synth_naf_weight(r.qw.alpha[i], NULL, NULL) <= 3);
		qweight_dequant(&r.qw, Q);

		/* Wp = W Tᵀ Λ_T⁻¹ (then Λ_S⁻¹ S Wp): the target the quantizer saw */
		for (uint32_t a = 0; a < N; a++)
			for (uint32_t c = 0; c < K; c++) {
				double s = 0;

				for (uint32_t b = 0; b < K; b++)
					s += W[a * K + b] * T[(size_t)c * K + b];
				Wp[a * K + c] = s / sk[c];
			}
		if (both) {
			matmul(S, Wp, N, N, K, A);
			for (uint32_t a = 0; a < N; a++)
				for (uint32_t c = 0; c < K; c++)
					Wp[a * K + c] = A[a * K + c] / sn[a];
		}
		for (uint32_t i = 0; i < N * K; i++) {
			num += (Q[i] - Wp[i]) * (Q[i] - Wp[i]);
			den += Wp[i] * Wp[i];
		}
		/* 3-bit BCQ of the right target: a few percent, not a wrong scale or basis */
		assert_true(num / den < 0.1);

		/* dense = [Sᵀ] Q T */
		for (uint32_t i = 0; i < N * K; i++)
			A[i] = Q[i];
		matmul(A, T, N, K, K, B);
		if (both) {
			for (uint32_t a = 0; a < N; a++)
				for (uint32_t c = 0; c < K; c++) {
					double s = 0;

					for (uint32_t b = 0; b < N; b++)
						s += S[(size_t)b * N + a] * B[b * K + c];
					A[a * K + c] = s;
				}
			memcpy(B, A, N * K * sizeof(double));
		}
		for (uint32_t i = 0; i < N * K; i++) {
			dn += (r.dense[i] - B[i]) * (r.dense[i] - B[i]);
			dd += B[i] * B[i];
		}
		assert_true(dn <= 1e-12 * dd);
		assert_true(fabs(synth_output_error(W, r.dense, N, K, H) - r.err_output) <=
			    1e-9 * r.err_output);
		reparam_result_done(&r);
	}
	free(Wp);
	free(B);
	free(A);
	free(S);
	free(T);
	free(H);
	free(Q);
	free(W);
}

/*
 * The deployed path: rht_apply on the activations, the shift-add kernel on the stored
 * qweight, rht_apply_inverse on the output (both) equals the dense f32 reference of the
 * rotated-then-quantized layer (r.dense x in double), within the kernels' int8-table bound.
 */
static void test_kernel_path_matches_dense(void **state)
{
	enum {
		N = 64,
		K = 192,
		M = 4
	};
	float *W = malloc(N * K * sizeof(float)), *Q = malloc(N * K * sizeof(float));
	double *H = malloc(K * K * sizeof(double));
	float *x = malloc(M * K * sizeof(float)), *u = malloc(M * K * sizeof(float));
	float *y = malloc(M * N * sizeof(float)), *z = malloc(M * N * sizeof(float));
	struct rng g;

	synth_weights(N, K, 60, W);
	synth_hessian(K, 400, 61, NULL, 0, H);
	rng_seed(&g, 62);
	for (uint32_t i = 0; i < M * K; i++)
		x[i] = (float)(rng_normal(&g) * (rng_uniform(&g) < 0.02 ? 20 : 1));
	for (int both = 0; both < 2; both++) {
		struct reparam_result r;
		struct lut_weight lw;
		struct rht tin, tout = { 0 };
		double worst_k = 0, worst_f = 0;

		assert_int_equal(quantize(REPARAM_SHIFTADD_RHT,
					  both ? REPARAM_RHT_BOTH : REPARAM_RHT_INPUT, 3, W, N, K,
					  H, &r),
				 0);
		assert_int_equal(rht_init(&tin, K, r.rht_seed_in), 0);
		if (both)
			assert_int_equal(rht_init(&tout, N, r.rht_seed_out), 0);
		assert_int_equal(lut_pack(&r.qw, &lw), 0);
		qweight_dequant(&r.qw, Q);

		memcpy(u, x, M * K * sizeof(float));
		assert_int_equal(rht_apply(&tin, u, M), 0);
		assert_int_equal(lut_gemm(&lw, M, u, y, NULL), 0);
		/* the same with an exact f32 product instead of the kernel */
		for (uint32_t t = 0; t < M; t++)
			for (uint32_t i = 0; i < N; i++) {
				double s = 0;

				for (uint32_t c = 0; c < K; c++)
					s += (double)Q[i * K + c] * u[t * K + c];
				z[t * N + i] = (float)s;
			}
		if (both) {
			assert_int_equal(rht_apply_inverse(&tout, y, M), 0);
			assert_int_equal(rht_apply_inverse(&tout, z, M), 0);
		}
		for (uint32_t t = 0; t < M; t++) {
			double ek = 0, ef = 0, ref2 = 0;

			for (uint32_t i = 0; i < N; i++) {
				double s = 0;

				for (uint32_t c = 0; c < K; c++)
					s += (double)r.dense[i * K + c] * x[t * K + c];
				ek += (y[t * N + i] - s) * (y[t * N + i] - s);
				ef += (z[t * N + i] - s) * (z[t * N + i] - s);
				ref2 += s * s;
			}
			worst_k = fmax(worst_k, sqrt(ek / ref2));
			worst_f = fmax(worst_f, sqrt(ef / ref2));
		}
		printf("# shiftadd-rht %s: kernel path vs dense rel L2 %.4f (f32 product %.2e)\n",
		       both ? "both" : "input", worst_k, worst_f);
		assert_true(worst_f < 1e-5);
		/* kernels/README.md: int8 tables stay under 4% relative L2 */
		assert_true(worst_k < 0.04);
		lut_weight_done(&lw);
		rht_done(&tout);
		rht_done(&tin);
		reparam_result_done(&r);
	}
	free(z);
	free(y);
	free(u);
	free(x);
	free(H);
	free(Q);
	free(W);
}

/*
 * The point of the method, on correlated inputs with outlier channels (synth_hessian) and
 * heavy-tailed weights: below shiftadd-acc, close to the non-deployable shiftadd-acc-sim.
 */
static void test_error_vs_acc_and_acc_sim(void **state)
{
	enum {
		N = 96,
		K = 192
	};
	float *W = malloc(N * K * sizeof(float));
	double *H = malloc(K * K * sizeof(double));
	static const char *const names[] = { "shiftadd-acc", "shiftadd-acc-sim", "rht input",
					     "rht both" };
	double rel[4][3];

	synth_weights(N, K, 70, W);
	synth_hessian(K, 600, 71, NULL, 0, H);
	for (uint32_t bits = 2; bits <= 4; bits++) {
		struct reparam_result r;

		assert_int_equal(quantize(REPARAM_SHIFTADD_ACC, 0, bits, W, N, K, H, &r), 0);
		rel[0][bits - 2] = r.rel_err_output;
		reparam_result_done(&r);
		assert_int_equal(quantize(REPARAM_SHIFTADD_ACC_SIM, 0, bits, W, N, K, H, &r), 0);
		rel[1][bits - 2] = r.rel_err_output;
		reparam_result_done(&r);
		assert_int_equal(
			quantize(REPARAM_SHIFTADD_RHT, REPARAM_RHT_INPUT, bits, W, N, K, H, &r), 0);
		rel[2][bits - 2] = r.rel_err_output;
		reparam_result_done(&r);
		assert_int_equal(
			quantize(REPARAM_SHIFTADD_RHT, REPARAM_RHT_BOTH, bits, W, N, K, H, &r), 0);
		rel[3][bits - 2] = r.rel_err_output;
		reparam_result_done(&r);
	}
	printf("# relative output error tr(dW H dWᵀ)/tr(W H Wᵀ), %ux%u:\n", N, K);
	for (uint32_t mi = 0; mi < 4; mi++)
		printf("#   %-17s 2b %.5f  3b %.5f  4b %.5f\n", names[mi], rel[mi][0], rel[mi][1],
		       rel[mi][2]);
	for (uint32_t b = 0; b < 3; b++) {
		assert_true(rel[2][b] < rel[0][b]);
		assert_true(rel[3][b] < rel[0][b]);
		assert_true(rel[2][b] < 1.25 * rel[1][b]);
		assert_true(rel[3][b] < 1.25 * rel[1][b]);
	}
	free(H);
	free(W);
}

static void test_options_and_names(void **state)
{
	enum {
		N = 8,
		K = 20
	};
	float W[N * K];
	double H[K * K], H19[19 * 19];
	struct reparam_opts o;
	struct reparam_result r = { 0 };
	struct errbuf e = { { 0 } };

	assert_string_equal(reparam_method_name(REPARAM_SHIFTADD_RHT), "shiftadd-rht");
	assert_int_equal(reparam_method_parse("shiftadd-rht"), REPARAM_SHIFTADD_RHT);
	assert_int_equal(reparam_rht_parse("input"), REPARAM_RHT_INPUT);
	assert_int_equal(reparam_rht_parse("both"), REPARAM_RHT_BOTH);
	assert_int_equal(reparam_rht_parse("none"), -EINVAL);
	assert_int_equal(reparam_rht_parse(NULL), -EINVAL);
	assert_string_equal(reparam_rht_name(REPARAM_RHT_BOTH), "both");
	assert_true(reparam_method_needs_hessian(REPARAM_SHIFTADD_RHT));

	synth_weights(N, K, 80, W);
	synth_hessian(K, 50, 81, NULL, 0, H);
	reparam_opts_init(&o, REPARAM_SHIFTADD_RHT, 2);
	assert_int_equal(o.rht, REPARAM_RHT_BOTH); /* the default: better on SmolLM2 (README) */
	o.rht = REPARAM_RHT_NONE;
	assert_int_equal(reparam_quantize(&o, W, N, K, H, &r, &e), -EINVAL);
	o.rht = REPARAM_RHT_BOTH;
	assert_int_equal(reparam_quantize(&o, W, N, K, H, &r, &e), 0);
	/* same storage as shiftadd-acc: the seeds are metadata */
	o.method = REPARAM_SHIFTADD_ACC;
	assert_true(reparam_storage_bits(&o, N, K) == (uint64_t)(r.bits_per_weight * N * K));
	reparam_result_done(&r);
	/* 19 inputs cannot be mixed by +-1 blocks; 6 outputs neither (both only) */
	o.method = REPARAM_SHIFTADD_RHT;
	synth_hessian(19, 50, 82, NULL, 0, H19);
	assert_int_equal(reparam_quantize(&o, W, N, 19, H19, &r, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "input dimension 19"));
	assert_int_equal(reparam_quantize(&o, W, 6, K, H, &r, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "output dimension 6"));
	o.rht = REPARAM_RHT_INPUT;
	assert_int_equal(reparam_quantize(&o, W, 6, K, H, &r, &e), 0);
	reparam_result_done(&r);
}

int test_rht_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basis_and_folded_scale),
		cmocka_unit_test(test_kernel_path_matches_dense),
		cmocka_unit_test(test_error_vs_acc_and_acc_sim),
		cmocka_unit_test(test_options_and_names),
	};

	return cmocka_run_group_tests_name("reparam/rht", tests, NULL, NULL);
}
