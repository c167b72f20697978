// SPDX-License-Identifier: MIT
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

struct layer {
	uint32_t n, k;
	float *W;
	double *H;
};

static int layer_setup(void **state)
{
	static struct layer L;

	L.n = 48;
	L.k = 96;
	L.W = malloc((size_t)L.n * L.k * sizeof(float));
	L.H = malloc((size_t)L.k * L.k * sizeof(double));
	synth_weights(L.n, L.k, 40, L.W);
	synth_hessian(L.k, 400, 41, NULL, 0, L.H);
	*state = &L;
	return 0;
}

static int layer_teardown(void **state)
{
	struct layer *L = *state;

	free(L->W);
	free(L->H);
	return 0;
}

static int run(const struct layer *L, enum reparam_method m, uint32_t bits, enum qw_layout lay,
	       struct reparam_result *r)
{
	struct reparam_opts o;
	struct errbuf e = { { 0 } };

	reparam_opts_init(&o, m, bits);
	o.layout = lay;
	o.rounds = 20;
	return reparam_quantize(&o, L->W, L->n, L->k, L->H, r, &e);
}

/* The stored qweight is the result: its dequantization reproduces dense and the error. */
static void test_qweight_dequant_matches_reported_error(void **state)
{
	struct layer *L = *state;
	enum reparam_method ms[] = { REPARAM_BCQ, REPARAM_SHIFTADD_LAT, REPARAM_SHIFTADD_ACC };
	float *D = malloc((size_t)L->n * L->k * sizeof(float));

	for (uint32_t mi = 0; mi < 3; mi++)
		for (uint32_t bits = 1; bits <= QW_MAX_BITS; bits++) {
			struct reparam_result r;
			double ref;

			assert_int_equal(run(L, ms[mi], bits, QW_LAYOUT_COL, &r), 0);
			assert_true(r.has_qweight);
			/* bcq's real-valued alphas need multiplies; the APoT ones are shifts */
			assert_true(r.deployable == (ms[mi] != REPARAM_BCQ));
			assert_int_equal(r.qw.bits, bits);
			assert_int_equal(r.qw.layout, ms[mi] == REPARAM_SHIFTADD_LAT
							      ? QW_LAYOUT_BLOCK
							      : QW_LAYOUT_COL);
			qweight_dequant(&r.qw, D);
			assert_memory_equal(D, r.dense, (size_t)L->n * L->k * sizeof(float));
			ref = synth_output_error(L->W, D, L->n, L->k, L->H);
			assert_true(fabs(ref - r.err_output) <= 1e-9 * ref);
			reparam_result_done(&r);
		}
	free(D);
}

/* shiftadd-* alphas are exact APoT values, non-negative and sorted per block. */
static void test_shiftadd_alphas_are_apot(void **state)
{
	struct layer *L = *state;
	enum reparam_method ms[] = { REPARAM_SHIFTADD_LAT, REPARAM_SHIFTADD_ACC };

	for (uint32_t mi = 0; mi < 2; mi++) {
		struct reparam_result r;
		uint64_t nb;

		assert_int_equal(run(L, ms[mi], 3, QW_LAYOUT_COL, &r), 0);
		nb = (uint64_t)qweight_n_row_blocks(&r.qw) * qweight_n_col_blocks(&r.qw);
		for (uint64_t b = 0; b < nb; b++)
			for (uint32_t i = 0; i < 3; i++) {
				float a = r.qw.alpha[i * nb + b];
				int w = synth_naf_weight(a, NULL, NULL);

				assert_true(w >= 0 && w <= 3);
				assert_true(a >= 0);
				if (i)
					assert_true(a <= r.qw.alpha[(i - 1) * nb + b]);
			}
		reparam_result_done(&r);
	}
}

/* Error compensation wins over plain BCQ in the same layout, APoT rounding notwithstanding. */
static void test_shiftadd_beats_plain_bcq(void **state)
{
	struct layer *L = *state;

	for (uint32_t bits = 2; bits <= 4; bits++) {
		struct reparam_result acc, lat, bcq_col, bcq_blk;

		assert_int_equal(run(L, REPARAM_SHIFTADD_ACC, bits, 0, &acc), 0);
		assert_int_equal(run(L, REPARAM_SHIFTADD_LAT, bits, 0, &lat), 0);
		assert_int_equal(run(L, REPARAM_BCQ, bits, QW_LAYOUT_COL, &bcq_col), 0);
		assert_int_equal(run(L, REPARAM_BCQ, bits, QW_LAYOUT_BLOCK, &bcq_blk), 0);
		assert_true(acc.err_output < bcq_col.err_output);
		assert_true(lat.err_output < bcq_blk.err_output);
		/* but plain BCQ has the lower weight error: it optimizes exactly that */
		assert_true(bcq_col.err_weight < acc.err_weight);
		reparam_result_done(&acc);
		reparam_result_done(&lat);
		reparam_result_done(&bcq_col);
		reparam_result_done(&bcq_blk);
	}
}

/* acc-sim: a dense, non-deployable result; its rotation is orthogonal and seeded. */
static void test_acc_sim_is_dense_and_flagged(void **state)
{
	struct layer *L = *state;
	enum {
		K = 40
	};
	double Q[K * K], Q2[K * K];
	struct reparam_result r;

	assert_int_equal(rotate_random_orthogonal(K, 7, Q), 0);
	assert_int_equal(rotate_random_orthogonal(K, 7, Q2), 0);
	assert_memory_equal(Q, Q2, sizeof(Q));
	for (uint32_t i = 0; i < K; i++)
		for (uint32_t j = 0; j < K; j++) {
			double s = 0;

			for (uint32_t t = 0; t < K; t++)
				s += Q[t * K + i] * Q[t * K + j];
			assert_true(fabs(s - (i == j)) < 1e-12);
		}
	assert_int_equal(rotate_random_orthogonal(K, 8, Q2), 0);
	assert_memory_not_equal(Q, Q2, sizeof(Q));

	assert_int_equal(run(L, REPARAM_SHIFTADD_ACC_SIM, 3, 0, &r), 0);
	assert_false(r.has_qweight);
	assert_false(r.deployable);
	assert_null(r.qw.signs);
	assert_true(fabs(synth_output_error(L->W, r.dense, L->n, L->k, L->H) - r.err_output) <=
		    1e-9 * r.err_output);
	assert_true(r.rel_err_output > 0 && r.rel_err_output < 0.5);
	reparam_result_done(&r);
}

/* Shapes that do not fill the blocks: partial 8-column and N/8-row blocks. */
static void test_ragged_shapes(void **state)
{
	enum {
		N = 13,
		K = 21
	};
	float W[N * K], D[N * K];
	double H[K * K];
	enum reparam_method ms[] = { REPARAM_SHIFTADD_LAT, REPARAM_SHIFTADD_ACC, REPARAM_BCQ,
				     REPARAM_GPTQ };

	synth_weights(N, K, 42, W);
	synth_hessian(K, 100, 43, NULL, 0, H);
	for (uint32_t mi = 0; mi < 4; mi++)
		for (int act = 0; act < 2; act++) {
			struct reparam_opts o;
			struct reparam_result r;
			struct errbuf e = { { 0 } };

			reparam_opts_init(&o, ms[mi], 2);
			o.act_order = act && ms[mi] != REPARAM_BCQ;
			o.group = ms[mi] == REPARAM_GPTQ ? 8 : 0;
			assert_int_equal(reparam_quantize(&o, W, N, K, H, &r, &e), 0);
			if (r.has_qweight) {
				qweight_dequant(&r.qw, D);
				assert_memory_equal(D, r.dense, sizeof(D));
			}
			assert_true(fabs(synth_output_error(W, r.dense, N, K, H) - r.err_output) <=
				    1e-9 * r.err_output);
			reparam_result_done(&r);
		}
}

static void test_bad_inputs(void **state)
{
	struct layer *L = *state;
	struct reparam_opts o;
	struct reparam_result r = { 0 };
	struct errbuf e = { { 0 } };
	float W[4] = { 0.1f, 0.2f, NAN, 0.3f };
	double H[4] = { 1, 0, 0, 1 }, Hneg[4] = { -1, 0, 0, 1 }, Hnan[4] = { 1, NAN, NAN, 1 };

	reparam_opts_init(&o, REPARAM_SHIFTADD_ACC, 3);
	assert_int_equal(reparam_quantize(&o, W, 2, 2, H, &r, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "not finite"));
	W[2] = 0.5f;
	assert_int_equal(reparam_quantize(&o, W, 2, 2, NULL, &r, &e), -EINVAL);
	assert_int_equal(reparam_quantize(&o, W, 2, 2, Hneg, &r, &e), -EINVAL);
	assert_int_equal(reparam_quantize(&o, W, 2, 2, Hnan, &r, &e), -EINVAL);
	assert_int_equal(reparam_quantize(&o, W, 0, 2, H, &r, &e), -EINVAL);
	o.bits = QW_MAX_BITS + 1;
	assert_int_equal(reparam_quantize(&o, W, 2, 2, H, &r, &e), -EINVAL);
	o.bits = 3;
	o.apot = 0;
	assert_int_equal(reparam_quantize(&o, W, 2, 2, H, &r, &e), -EINVAL);
	o.apot = 3;
	o.block_size = 12;
	assert_int_equal(reparam_quantize(&o, W, 2, 2, H, &r, &e), -EINVAL);
	reparam_opts_init(&o, REPARAM_RTN, 9);
	assert_int_equal(reparam_quantize(&o, W, 2, 2, NULL, &r, &e), -EINVAL);
	reparam_opts_init(&o, REPARAM_RTN, 4);
	o.act_order = true;
	assert_int_equal(reparam_quantize(&o, W, 2, 2, NULL, &r, &e), -EINVAL);
	o.method = REPARAM_METHOD_COUNT;
	assert_int_equal(reparam_quantize(&o, W, 2, 2, NULL, &r, &e), -EINVAL);
	assert_null(r.dense);
	reparam_result_done(&r);
	/* fp is a plain copy and needs no H */
	reparam_opts_init(&o, REPARAM_FP, 16);
	assert_int_equal(reparam_quantize(&o, L->W, L->n, L->k, NULL, &r, &e), 0);
	assert_memory_equal(r.dense, L->W, (size_t)L->n * L->k * sizeof(float));
	assert_true(isnan(r.err_output) && r.err_weight == 0);
	reparam_result_done(&r);
	reparam_result_done(&r);
}

static void test_names_and_bits_per_weight(void **state)
{
	struct layer *L = *state;
	struct reparam_result r;

	for (int m = 0; m < REPARAM_METHOD_COUNT; m++)
		assert_int_equal(reparam_method_parse(reparam_method_name(m)), m);
	assert_int_equal(reparam_method_parse("shiftadd"), -EINVAL);
	assert_int_equal(reparam_method_parse(NULL), -EINVAL);
	assert_string_equal(reparam_method_name(REPARAM_SHIFTADD_ACC_SIM), "shiftadd-acc-sim");

	/* acc, 3 bits, apot 3: 3 alpha of 24 bits per column of 48 weights -> 3 + 1.5 */
	assert_int_equal(run(L, REPARAM_SHIFTADD_ACC, 3, 0, &r), 0);
	assert_true(fabs(r.bits_per_weight - 4.5) < 1e-12);
	reparam_result_done(&r);
	/* lat: 3 alpha per 8 columns x 6 rows -> the same count */
	assert_int_equal(run(L, REPARAM_SHIFTADD_LAT, 3, 0, &r), 0);
	assert_true(fabs(r.bits_per_weight - 4.5) < 1e-12);
	reparam_result_done(&r);
	/* rtn per row of 96: 4 + (16 + 4) / 96 */
	assert_int_equal(run(L, REPARAM_RTN, 4, 0, &r), 0);
	assert_true(fabs(r.bits_per_weight - (4 + 20.0 / 96)) < 1e-12);
	reparam_result_done(&r);
}

/* storage bits count exactly the qweight's planes and alphas, for ragged shapes too */
static void test_storage_bits_match_qweight(void **state)
{
	enum {
		N = 13,
		K = 21
	};
	float W[N * K];
	double H[K * K];
	enum reparam_method ms[] = { REPARAM_SHIFTADD_LAT, REPARAM_SHIFTADD_ACC, REPARAM_BCQ };

	synth_weights(N, K, 44, W);
	synth_hessian(K, 100, 45, NULL, 0, H);
	for (uint32_t mi = 0; mi < 3; mi++)
		for (uint32_t lay = 0; lay < QW_LAYOUT_COUNT; lay++) {
			struct reparam_opts o;
			struct reparam_result r;
			uint64_t n_alpha;

			reparam_opts_init(&o, ms[mi], 3);
			o.layout = lay;
			assert_int_equal(reparam_quantize(&o, W, N, K, H, &r, NULL), 0);
			n_alpha = (uint64_t)r.qw.bits * qweight_n_row_blocks(&r.qw) *
				  qweight_n_col_blocks(&r.qw);
			assert_true(reparam_storage_bits(&o, N, K) ==
				    (uint64_t)N * K * 3 + n_alpha * (o.apot ? 8 * o.apot : 16));
			/* bits_per_weight is that count / (N K), in double */
			assert_true(fabs(r.bits_per_weight * N * K -
					 (double)reparam_storage_bits(&o, N, K)) < 1e-9);
			reparam_result_done(&r);
		}
}

/*
 * bcq's row layout (LUT-GEMM's) fits every row group alone: doubling one row doubles exactly
 * that row's alphas (a power-of-two scale passes through the fit unrounded) and changes no
 * other alpha or sign; the block layout, whose alphas span rows, does not behave so.
 */
static void test_bcq_row_groups_are_independent(void **state)
{
	struct layer *L = *state;
	size_t nk = (size_t)L->n * L->k;
	float *W2 = malloc(nk * sizeof(float));
	struct reparam_result a, b;
	uint32_t row = 5, nrb, ncb;

	assert_non_null(W2);
	memcpy(W2, L->W, nk * sizeof(float));
	for (uint32_t j = 0; j < L->k; j++)
		W2[(size_t)row * L->k + j] *= 2.0f;
	assert_int_equal(run(L, REPARAM_BCQ, 3, QW_LAYOUT_ROW, &a), 0);
	{
		struct reparam_opts o;
		struct errbuf e = { { 0 } };

		reparam_opts_init(&o, REPARAM_BCQ, 3);
		o.rounds = 20;
		assert_int_equal(reparam_quantize(&o, W2, L->n, L->k, L->H, &b, &e), 0);
	}
	assert_int_equal(a.qw.layout, QW_LAYOUT_ROW); /* the default */
	assert_int_equal(b.qw.layout, QW_LAYOUT_ROW);
	nrb = qweight_n_row_blocks(&a.qw);
	ncb = qweight_n_col_blocks(&a.qw);
	assert_int_equal(nrb, L->n);
	assert_int_equal(ncb, (L->k + QW_ROW_GROUP - 1) / QW_ROW_GROUP);
	for (uint32_t i = 0; i < 3; i++)
		for (uint32_t n = 0; n < L->n; n++)
			for (uint32_t k = 0; k < L->k; k++) {
				float x = *qweight_alpha(&a.qw, i, n, k);
				float y = *qweight_alpha(&b.qw, i, n, k);

				assert_true(y == (n == row ? 2.0f * x : x));
				assert_int_equal(qweight_sign(&a.qw, i, n, k),
						 qweight_sign(&b.qw, i, n, k));
			}
	assert_false(a.deployable);
	reparam_result_done(&a);
	reparam_result_done(&b);
	free(W2);
}

/*
 * The comparison the project is about, on one synthetic layer with correlated inputs. Prints
 * the table with SHIFTADD_VERBOSE=1; asserts the orderings that must hold.
 */
static void test_method_table(void **state)
{
	struct layer *L = *state;
	enum reparam_method ms[] = { REPARAM_RTN,	   REPARAM_GPTQ,
				     REPARAM_BCQ,	   REPARAM_SHIFTADD_LAT,
				     REPARAM_SHIFTADD_ACC, REPARAM_SHIFTADD_ACC_SIM };
	double rel[6][3];
	bool verbose = getenv("SHIFTADD_VERBOSE") != NULL;

	for (uint32_t mi = 0; mi < 6; mi++)
		for (uint32_t bits = 2; bits <= 4; bits++) {
			struct reparam_result r;

			assert_int_equal(run(L, ms[mi], bits, QW_LAYOUT_BLOCK, &r), 0);
			rel[mi][bits - 2] = r.rel_err_output;
			if (verbose)
				printf("  %-17s %u bits: rel output err %.5f  weight err %.5f  "
				       "bits/weight %.3f\n",
				       reparam_method_name(ms[mi]), bits, r.rel_err_output,
				       r.err_weight, r.bits_per_weight);
			reparam_result_done(&r);
		}
	for (uint32_t b = 0; b < 3; b++) {
		assert_true(rel[1][b] < rel[0][b]); /* gptq < rtn */
		assert_true(rel[3][b] < rel[2][b]); /* lat < bcq (block) */
		if (b)
			for (uint32_t mi = 0; mi < 6; mi++)
				assert_true(rel[mi][b] <
					    rel[mi][b - 1]); /* more bits, less error */
	}
}

int test_methods_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qweight_dequant_matches_reported_error),
		cmocka_unit_test(test_shiftadd_alphas_are_apot),
		cmocka_unit_test(test_shiftadd_beats_plain_bcq),
		cmocka_unit_test(test_acc_sim_is_dense_and_flagged),
		cmocka_unit_test(test_ragged_shapes),
		cmocka_unit_test(test_bad_inputs),
		cmocka_unit_test(test_names_and_bits_per_weight),
		cmocka_unit_test(test_storage_bits_match_qweight),
		cmocka_unit_test(test_bcq_row_groups_are_independent),
		cmocka_unit_test(test_method_table),
	};
	return cmocka_run_group_tests_name("reparam/methods", tests, layer_setup, layer_teardown);
}
