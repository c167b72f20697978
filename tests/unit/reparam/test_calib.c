// SPDX-License-Identifier: MIT
/*
 * The calibration driver on the tiny seeded LLaMA of the engine tests: every linear gets
 * quantized, the model ends up holding exactly the dequantized weights, and the Hessians the
 * driver used are the ones an independent recomputation gives (q/k/v from the embeddings,
 * o from attention over the *quantized* q/k/v: true-sequential).
 */
#include "engine/model.h"
#include "reparam/calib.h"
#include "tests/unit/engine/ref_logits.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define FIX "tests/fixtures/engine/tiny-llama/"
#define S   3
#define T   24

struct tiny {
	char dir[64];
	struct ref_logits *ref;
	struct model *m;
	int32_t tokens[S * T];
};

static int setup(void **state)
{
	struct tiny *t = calloc(1, sizeof(*t));
	char cmd[256];

	if (!t)
		return -1;
	snprintf(t->dir, sizeof(t->dir), "/tmp/shiftadd-calib-XXXXXX");
	t->ref = ref_logits_load(FIX "ref.txt");
	if (!t->ref || !mkdtemp(t->dir))
		return -1;
	snprintf(cmd, sizeof(cmd), "cp " FIX "config.json %s/", t->dir);
	if (system(cmd) || ref_write_safetensors(t->ref, t->dir))
		return -1;
	for (uint32_t i = 0; i < S * T; i++)
		t->tokens[i] = (int32_t)((i * 37 + 11) % 256);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tiny *t = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", t->dir);
	if (system(cmd))
		return -1;
	free(t->ref);
	free(t);
	return 0;
}

static float *copy_weights(const struct linear *l)
{
	size_t n = (size_t)l->n_out * l->n_in;
	float *w = malloc(n * sizeof(float));

	assert_non_null(w);
	memcpy(w, linear_dense_weights(l), n * sizeof(float));
	return w;
}

/* H = 2 X^T X / n from rows x[n][k], in double, full matrix. */
static double *hessian(const float *x, uint32_t n, uint32_t k)
{
	double *H = calloc((size_t)k * k, sizeof(double));

	assert_non_null(H);
	for (uint32_t r = 0; r < n; r++)
		for (uint32_t i = 0; i < k; i++)
			for (uint32_t j = 0; j < k; j++)
				H[(size_t)i * k + j] +=
					2.0 * x[(size_t)r * k + i] * x[(size_t)r * k + j] / n;
	return H;
}

static double output_error(const float *W, const float *Q, uint32_t n, uint32_t k, const double *H)
{
	double tr = 0;

	for (uint32_t r = 0; r < n; r++)
		for (uint32_t i = 0; i < k; i++)
			for (uint32_t j = 0; j < k; j++)
				tr += (W[(size_t)r * k + i] - Q[(size_t)r * k + i]) *
				      H[(size_t)i * k + j] *
				      (W[(size_t)r * k + j] - Q[(size_t)r * k + j]);
	return tr;
}

static void run(struct tiny *t, enum reparam_method method, struct calib_out *out)
{
	struct calib_run run = { 0 };
	struct errbuf e = { { 0 } };
	int r;

	reparam_opts_init(&run.q, method, 3);
	run.q.rounds = 5;
	run.calib = (struct calib_opts){ .nsamples = S, .seqlen = T, .tokens = t->tokens };
	r = calib_quantize_model(t->m, &run, out, &e);
	if (r < 0)
		fail_msg("calib_quantize_model: %s", errbuf_str(&e, r));
}

static void test_every_linear_quantized_and_model_holds_dequantized(void **state)
{
	struct tiny *t = *state;
	struct calib_out out;
	const char *want[7] = { "attn_q",   "attn_k", "attn_v",	 "attn_output",
				"ffn_gate", "ffn_up", "ffn_down" };

	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	run(t, REPARAM_SHIFTADD_ACC, &out);
	assert_int_equal(out.n, 2 * 7);
	for (uint32_t i = 0; i < out.n; i++) {
		const struct calib_tensor *ct = &out.t[i];
		const struct model_layer *l = &t->m->layers[ct->layer];
		const struct linear *lins[7] = { &l->wq,     &l->wk,   &l->wv,	  &l->wo,
						 &l->w_gate, &l->w_up, &l->w_down };
		char name[64];
		float *deq;

		snprintf(name, sizeof(name), "blk.%u.%s", i / 7, want[i % 7]);
		assert_string_equal(ct->name, name);
		assert_true(ct->res.has_qweight);
		assert_true(ct->res.rel_err_output > 0 && ct->res.rel_err_output < 1);
		deq = malloc((size_t)ct->res.n_rows * ct->res.n_cols * sizeof(float));
		assert_non_null(deq);
		qweight_dequant(&ct->res.qw, deq);
		assert_memory_equal(deq, linear_dense_weights(lins[i % 7]),
				    (size_t)ct->res.n_rows * ct->res.n_cols * sizeof(float));
		free(deq);
	}
	calib_out_done(&out);
	model_free(t->m);
}

static void test_hessians_match_independent_recomputation(void **state)
{
	struct tiny *t = *state;
	const struct model_config *c;
	struct calib_out out;
	float *wq, *wo, *x, *h, *att;
	uint32_t pos[T], seq[T] = { 0 }, q_dim;
	struct kv_cache kv;
	double *H;

	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	c = &t->m->cfg;
	q_dim = c->n_heads * c->head_dim;
	wq = copy_weights(&t->m->layers[0].wq);
	wo = copy_weights(&t->m->layers[0].wo);
	run(t, REPARAM_SHIFTADD_ACC, &out);

	/* layer 0, q: input = attention norm of the embeddings (unaffected by quantization) */
	x = malloc((size_t)S * T * c->dim * sizeof(float));
	h = malloc((size_t)S * T * c->dim * sizeof(float));
	att = malloc((size_t)S * T * q_dim * sizeof(float));
	assert_true(x && h && att);
	for (uint32_t i = 0; i < T; i++)
		pos[i] = i;
	for (uint32_t s = 0; s < S; s++) {
		assert_int_equal(model_embed(t->m, t->tokens + s * T, pos, T, x + s * T * c->dim),
				 0);
		model_attn_norm(t->m, 0, x + s * T * c->dim, T, h + s * T * c->dim);
	}
	H = hessian(h, S * T, c->dim);
	assert_float_equal(
		output_error(wq, linear_dense_weights(&t->m->layers[0].wq), c->dim, c->dim, H),
		out.t[0].res.err_output, 1e-4 * out.t[0].res.err_output);
	free(H);

	/* layer 0, o: input = attention computed with the quantized q/k/v */
	assert_int_equal(kv_cache_init(&kv, t->m, 1, T), 0);
	for (uint32_t s = 0; s < S; s++)
		assert_int_equal(model_attn_core(t->m, &kv, 0, seq, pos, T, h + s * T * c->dim,
						 att + s * T * q_dim),
				 0);
	H = hessian(att, S * T, q_dim);
	assert_float_equal(
		output_error(wo, linear_dense_weights(&t->m->layers[0].wo), c->dim, q_dim, H),
		out.t[3].res.err_output, 1e-4 * out.t[3].res.err_output);
	free(H);
	kv_cache_done(&kv);
	free(x);
	free(h);
	free(att);
	free(wq);
	free(wo);
	calib_out_done(&out);
	model_free(t->m);
}

static void test_fp_method_leaves_weights_unchanged(void **state)
{
	struct tiny *t = *state;
	struct calib_out out;
	float *w0;

	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	w0 = copy_weights(&t->m->layers[1].w_down);
	run(t, REPARAM_FP, &out);
	assert_int_equal(out.n, 14);
	assert_memory_equal(w0, linear_dense_weights(&t->m->layers[1].w_down),
			    (size_t)t->m->cfg.dim * t->m->cfg.ffn_dim * sizeof(float));
	for (uint32_t i = 0; i < out.n; i++)
		assert_false(out.t[i].res.has_qweight);
	free(w0);
	calib_out_done(&out);
	model_free(t->m);
}

static void test_too_long_calibration_window_is_rejected(void **state)
{
	struct tiny *t = *state;
	struct calib_run run = { 0 };
	struct errbuf e = { { 0 } };
	struct calib_out out;

	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	reparam_opts_init(&run.q, REPARAM_SHIFTADD_ACC, 3);
	run.calib = (struct calib_opts){ .nsamples = 1, .seqlen = 4096, .tokens = t->tokens };
	assert_int_equal(calib_quantize_model(t->m, &run, &out, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "exceeds the model context"));
	model_free(t->m);
}

int test_calib_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_linear_quantized_and_model_holds_dequantized),
		cmocka_unit_test(test_hessians_match_independent_recomputation),
		cmocka_unit_test(test_fp_method_leaves_weights_unchanged),
		cmocka_unit_test(test_too_long_calibration_window_is_rejected),
	};
	return cmocka_run_group_tests_name("reparam/calib", tests, setup, teardown);
}
