// SPDX-License-Identifier: MIT
/*
 * The calibration driver on the tiny seeded LLaMA of the engine tests: every linear gets
 * quantized, the model ends up holding exactly the dequantized weights, and the Hessians the
 * driver used are the ones an independent recomputation gives (q/k/v from the embeddings,
 * o from attention over the *quantized* q/k/v: true-sequential).
 */
#include "engine/dtype.h"
#include "engine/model.h"
#include "kernels/gemm_bf16.h"
#include "reparam/calib.h"
#include "tests/unit/engine/ref_logits.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define FIX	   "tests/fixtures/engine/tiny-llama/"
#define FIX_GEMMA3 "tests/fixtures/engine/tiny-gemma3/"
#define S	   3
#define T	   24

struct tiny {
	char dir[64];
	struct ref_logits *ref;
	struct model *m;
	int32_t tokens[S * T];
};

/* The seeded model of fixture directory @fix written out as an HF folder, or NULL. */
static struct tiny *tiny_open(const char *fix)
{
	struct tiny *t = calloc(1, sizeof(*t));
	char cmd[256], path[128];

	if (!t)
		return NULL;
	snprintf(t->dir, sizeof(t->dir), "/tmp/shiftadd-calib-XXXXXX");
	snprintf(path, sizeof(path), "%sref.txt", fix);
	t->ref = ref_logits_load(path);
	if (!t->ref || !mkdtemp(t->dir))
		return NULL;
	snprintf(cmd, sizeof(cmd), "cp %sconfig.json %s/", fix, t->dir);
	if (system(cmd) || ref_write_safetensors(t->ref, t->dir))
		return NULL;
	for (uint32_t i = 0; i < S * T; i++)
		t->tokens[i] = (int32_t)((i * 37 + 11) % 256);
	return t;
}

static int tiny_close(struct tiny *t)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", t->dir);
	if (system(cmd))
		return -1;
	free(t->ref);
	free(t);
	return 0;
}

static int setup(void **state)
{
	*state = tiny_open(FIX);
	return *state ? 0 : -1;
}

static int teardown(void **state)
{
	return tiny_close(*state);
}

static float *copy_weights(const struct linear *l)
{
	size_t n = (size_t)l->n_out * l->n_in;
	float *w = malloc(n * sizeof(float));

	assert_non_null(w);
	memcpy(w, linear_dense_weights(l), n * sizeof(float));
	return w;
}

/* A = 2 X^T Y / n + lambda I from rows x[n][k], y[n][k], in double (row-major, full). */
static double *cross(const float *x, const float *y, uint32_t n, uint32_t k, double lambda)
{
	double *A = calloc((size_t)k * k, sizeof(double));

	assert_non_null(A);
	for (uint32_t r = 0; r < n; r++)
		for (uint32_t i = 0; i < k; i++)
			for (uint32_t j = 0; j < k; j++)
				A[(size_t)i * k + j] +=
					2.0 * x[(size_t)r * k + i] * y[(size_t)r * k + j] / n;
	for (uint32_t i = 0; i < k; i++)
		A[(size_t)i * k + i] += lambda;
	return A;
}

/* H = 2 X^T X / n from rows x[n][k], in double, full matrix. */
static double *hessian(const float *x, uint32_t n, uint32_t k)
{
	return cross(x, x, n, k, 0);
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

/* How a calibration holds its activations and computes its products. */
struct prec {
	enum calib_dtype dtype;
	enum calib_math math;
};

static const struct prec F32 = { CALIB_DTYPE_F32, CALIB_MATH_F32 };

/* @qep: error propagation strength (0 = off), fitted on the first @n_fit samples (0 = all). */
static void run_prec(struct tiny *t, enum reparam_method method, struct prec p,
		     const int32_t *tokens, uint32_t ns, uint32_t sl, double qep, uint32_t n_fit,
		     struct calib_out *out)
{
	struct calib_run run = { .qep = qep, .qep_samples = n_fit };
	struct errbuf e = { { 0 } };
	int r;

	reparam_opts_init(&run.q, method, 3);
	run.q.rounds = 5;
	run.calib = (struct calib_opts){
		.nsamples = ns, .seqlen = sl, .tokens = tokens, .dtype = p.dtype, .math = p.math
	};
	r = calib_quantize_model(t->m, &run, out, &e);
	if (r < 0)
		fail_msg("calib_quantize_model: %s", errbuf_str(&e, r));
}

static void run_with(struct tiny *t, enum reparam_method method, enum calib_dtype dtype,
		     const int32_t *tokens, uint32_t ns, uint32_t sl, double qep,
		     struct calib_out *out)
{
	run_prec(t, method, (struct prec){ dtype, CALIB_MATH_F32 }, tokens, ns, sl, qep, 0, out);
}

static void run_dtype(struct tiny *t, enum reparam_method method, enum calib_dtype dtype,
		      struct calib_out *out)
{
	run_with(t, method, dtype, t->tokens, S, T, 0, out);
}

static void run(struct tiny *t, enum reparam_method method, struct calib_out *out)
{
	run_dtype(t, method, CALIB_DTYPE_F32, out);
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

/* Layer 0's q/k/v input h (the attention norm of the embeddings x) of every sample. */
static void layer0_norm(struct tiny *t, float *x, float *h, uint32_t pos[T])
{
	uint32_t dim = t->m->cfg.dim;

	for (uint32_t i = 0; i < T; i++)
		pos[i] = i;
	for (uint32_t s = 0; s < S; s++) {
		assert_int_equal(model_embed(t->m, t->tokens + s * T, pos, T, x + s * T * dim), 0);
		model_attn_norm(t->m, 0, x + s * T * dim, T, h + s * T * dim);
	}
}

/* Layer 0's attention output (o's input) of every sample from h, with the model's q/k/v. */
static void layer0_attention(struct tiny *t, struct kv_cache *kv, const uint32_t pos[T],
			     const float *h, float *att)
{
	uint32_t seq[T] = { 0 }, dim = t->m->cfg.dim;
	uint32_t q_dim = t->m->cfg.n_heads * t->m->cfg.head_dim;

	for (uint32_t s = 0; s < S; s++)
		assert_int_equal(model_attn_core(t->m, kv, 0, seq, pos, T, h + s * T * dim,
						 att + s * T * q_dim),
				 0);
}

static void test_hessians_match_independent_recomputation(void **state)
{
	struct tiny *t = *state;
	const struct model_config *c;
	struct calib_out out;
	float *wq, *wo, *x, *h, *att;
	uint32_t pos[T], q_dim;
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
	layer0_norm(t, x, h, pos);
	H = hessian(h, S * T, c->dim);
	assert_float_equal(
		output_error(wq, linear_dense_weights(&t->m->layers[0].wq), c->dim, c->dim, H),
		out.t[0].res.err_output, 1e-4 * out.t[0].res.err_output);
	free(H);

	/* layer 0, o: input = attention computed with the quantized q/k/v */
	assert_int_equal(kv_cache_init(&kv, t->m, 1, T), 0);
	layer0_attention(t, &kv, pos, h, att);
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

/*
 * calib_run.head_bits: the LM head comes last, named "output", at its own width, quantized
 * against the Hessian of its input, the final norm of the *quantized* model's residual
 * stream: the error the driver reports is the one that Hessian, recomputed here by running
 * the quantized model (all its linears installed) over the samples, gives. The model then
 * computes with the dequantized head.
 */
static void test_head_is_quantized_last_against_its_input(void **state)
{
	struct tiny *t = *state;
	const struct model_config *c;
	const struct calib_tensor *ht;
	struct calib_run run = { .head_bits = 4 };
	struct errbuf e = { { 0 } };
	uint32_t seq[T] = { 0 }, pos[T];
	struct calib_out out;
	struct kv_cache kv;
	float *w, *hid, *deq;
	size_t nw;
	double *H;

	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	c = &t->m->cfg;
	nw = (size_t)c->n_vocab * c->dim;
	w = malloc(nw * sizeof(float));
	deq = malloc(nw * sizeof(float));
	hid = malloc((size_t)S * T * c->dim * sizeof(float));
	assert_true(w && deq && hid);
	assert_int_equal(linear_weights_f32(&t->m->lm_head, w), 0);
	reparam_opts_init(&run.q, REPARAM_SHIFTADD_ACC, 3);
	run.q.rounds = 5;
	run.calib = (struct calib_opts){ .nsamples = S, .seqlen = T, .tokens = t->tokens };
	assert_int_equal(calib_quantize_model(t->m, &run, &out, &e), 0);
	assert_int_equal(out.n, 2 * 7 + 1);
	ht = &out.t[out.n - 1];
	assert_string_equal(ht->name, "output");
	assert_int_equal(ht->layer, c->n_layers);
	assert_true(ht->res.has_qweight);
	assert_int_equal(ht->res.qw.bits, 4);
	assert_int_equal(ht->res.n_rows, c->n_vocab);
	qweight_dequant(&ht->res.qw, deq);
	assert_memory_equal(deq, linear_dense_weights(&t->m->lm_head), nw * sizeof(float));

	for (uint32_t i = 0; i < T; i++)
		pos[i] = i;
	assert_int_equal(kv_cache_init(&kv, t->m, 1, T), 0);
	for (uint32_t s = 0; s < S; s++)
		assert_int_equal(model_forward(t->m, &kv, t->tokens + s * T, seq, pos, T,
					       hid + (size_t)s * T * c->dim),
				 0);
	kv_cache_done(&kv);
	H = hessian(hid, S * T, c->dim);
	assert_float_equal(output_error(w, deq, c->n_vocab, c->dim, H), ht->res.err_output,
			   1e-4 * ht->res.err_output);
	free(H);
	free(hid);
	free(deq);
	free(w);
	calib_out_done(&out);
	model_free(t->m);
}

/* RMSNorm of the rows of x[n][dim] in place, in double, with weights w. */
static void rms_rows(float *x, uint32_t n, uint32_t dim, const float *w, float eps)
{
	for (uint32_t r = 0; r < n; r++) {
		float *row = x + (size_t)r * dim;
		double ss = 0;

		for (uint32_t i = 0; i < dim; i++)
			ss += (double)row[i] * row[i];
		ss = 1.0 / sqrt(ss / dim + eps);
		for (uint32_t i = 0; i < dim; i++)
			row[i] = (float)(w[i] * (row[i] * ss));
	}
}

/*
 * Gemma 3 (post-norms): layer 0's gate/up input is the FFN norm of x + post_norm(o(att)),
 * with o and att both from the quantized weights, so its Hessian only matches when the
 * driver applies the post-norm to o's output as the forward pass does.
 */
static void test_gemma3_ffn_hessian_sees_the_post_norm(void **state)
{
	struct tiny *t = tiny_open(FIX_GEMMA3);
	const struct model_config *c;
	const struct model_layer *l;
	struct calib_out out;
	float *wgate, *x, *h, *att, *y;
	uint32_t pos[T], q_dim, n = S * T;
	struct kv_cache kv;
	double *H;

	assert_non_null(t);
	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	c = &t->m->cfg;
	l = &t->m->layers[0];
	assert_true(c->post_norms && l->post_attn_norm);
	q_dim = c->n_heads * c->head_dim;
	wgate = copy_weights(&l->w_gate);
	run(t, REPARAM_SHIFTADD_ACC, &out);
	assert_int_equal(out.n, 3 * 7);

	x = malloc((size_t)n * c->dim * sizeof(float));
	h = malloc((size_t)n * c->dim * sizeof(float));
	y = malloc((size_t)n * c->dim * sizeof(float));
	att = malloc((size_t)n * q_dim * sizeof(float));
	assert_true(x && h && y && att);
	layer0_norm(t, x, h, pos);
	assert_int_equal(kv_cache_init(&kv, t->m, 1, T), 0);
	layer0_attention(t, &kv, pos, h, att);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)c->dim, (int)q_dim, 1.0f,
		    att, (int)q_dim, linear_dense_weights(&l->wo), (int)q_dim, 0.0f, y,
		    (int)c->dim);
	rms_rows(y, n, c->dim, l->post_attn_norm, c->norm_eps);
	for (size_t i = 0; i < (size_t)n * c->dim; i++)
		x[i] += y[i];
	memcpy(h, x, (size_t)n * c->dim * sizeof(float));
	rms_rows(h, n, c->dim, l->ffn_norm, c->norm_eps);
	H = hessian(h, n, c->dim);
	assert_float_equal(
		output_error(wgate, linear_dense_weights(&l->w_gate), c->ffn_dim, c->dim, H),
		out.t[4].res.err_output, 1e-3 * out.t[4].res.err_output);
	free(H);
	kv_cache_done(&kv);
	free(x);
	free(h);
	free(y);
	free(att);
	free(wgate);
	calib_out_done(&out);
	model_free(t->m);
	assert_int_equal(tiny_close(t), 0);
}

/* @w[n_out][k] -> W B A^-1 (A symmetric), by LU: A Z = B^T W^T, W* = Z^T. */
static float *ridge_target(const float *w, uint32_t n_out, uint32_t k, double *A, const double *B)
{
	double *Z = calloc((size_t)k * n_out, sizeof(double));
	lapack_int *piv = malloc(k * sizeof(*piv));
	float *ws = malloc((size_t)n_out * k * sizeof(float));

	assert_true(Z && piv && ws);
	for (uint32_t i = 0; i < k; i++)
		for (uint32_t o = 0; o < n_out; o++)
			for (uint32_t j = 0; j < k; j++)
				Z[(size_t)i * n_out + o] +=
					B[(size_t)j * k + i] * w[(size_t)o * k + j];
	assert_int_equal(LAPACKE_dgesv(LAPACK_ROW_MAJOR, (lapack_int)k, (lapack_int)n_out, A,
				       (lapack_int)k, piv, Z, (lapack_int)n_out),
			 0);
	for (uint32_t o = 0; o < n_out; o++)
		for (uint32_t i = 0; i < k; i++)
			ws[(size_t)o * k + i] = (float)Z[(size_t)i * n_out + o];
	free(piv);
	free(Z);
	return ws;
}

/*
 * Error propagation (strength 1) fitted on the first @n_fit samples (0 = all): layer 0's q
 * sees the same input in both models, so it is quantized toward its own weights; o sees
 * attention over the quantized q/k/v (X̂) where the unquantized model has it over the
 * original ones (X), and is quantized toward W (X X̂^T + λI) (X̂ X̂^T + λI)^-1 over the fitted
 * samples (λ: GPTQ's damping of their X̂ X̂^T), recomputed here by LU from the rows, while the
 * GPTQ error is weighted by every sample's Hessian. Returns the error to the target.
 */
static double check_qep_target(struct tiny *t, uint32_t n_fit)
{
	const struct model_config *c;
	struct calib_out out;
	struct linear *qkv[3];
	float *fp[3], *wo, *ws, *x, *h, *att, *att_fp;
	uint32_t pos[T], q_dim, fit_rows = (n_fit ? n_fit : S) * T;
	struct kv_cache kv;
	double *H, *A, *B, mean = 0, e_plain, e_target;

	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	c = &t->m->cfg;
	q_dim = c->n_heads * c->head_dim;
	qkv[0] = &t->m->layers[0].wq, qkv[1] = &t->m->layers[0].wk, qkv[2] = &t->m->layers[0].wv;
	for (int i = 0; i < 3; i++)
		fp[i] = copy_weights(qkv[i]);
	wo = copy_weights(&t->m->layers[0].wo);
	run_prec(t, REPARAM_SHIFTADD_ACC, F32, t->tokens, S, T, 1, n_fit, &out);

	x = malloc((size_t)S * T * c->dim * sizeof(float));
	h = malloc((size_t)S * T * c->dim * sizeof(float));
	att = malloc((size_t)S * T * q_dim * sizeof(float));
	att_fp = malloc((size_t)S * T * q_dim * sizeof(float));
	assert_true(x && h && att && att_fp);
	layer0_norm(t, x, h, pos);
	H = hessian(h, S * T, c->dim);
	assert_float_equal(output_error(fp[0], linear_dense_weights(qkv[0]), c->dim, c->dim, H),
			   out.t[0].res.err_output, 1e-4 * out.t[0].res.err_output);
	free(H);

	/* X̂ with the quantized q/k/v the model holds now, X with the original ones */
	assert_int_equal(kv_cache_init(&kv, t->m, 1, T), 0);
	layer0_attention(t, &kv, pos, h, att);
	for (int i = 0; i < 3; i++)
		memcpy(linear_dense_weights(qkv[i]), fp[i],
		       (size_t)qkv[i]->n_out * qkv[i]->n_in * sizeof(float));
	layer0_attention(t, &kv, pos, h, att_fp);
	/* the target from the fitted samples alone; the error is measured on all of them */
	H = hessian(att, fit_rows, q_dim);
	for (uint32_t i = 0; i < q_dim; i++)
		mean += H[(size_t)i * q_dim + i] / q_dim;
	free(H);
	A = cross(att, att, fit_rows, q_dim, 0.01 * mean);
	B = cross(att_fp, att, fit_rows, q_dim, 0.01 * mean);
	ws = ridge_target(wo, c->dim, q_dim, A, B);
	H = hessian(att, S * T, q_dim);
	e_target = output_error(ws, linear_dense_weights(&t->m->layers[0].wo), c->dim, q_dim, H);
	e_plain = output_error(wo, linear_dense_weights(&t->m->layers[0].wo), c->dim, q_dim, H);
	print_message("# o, fitted on %u of %u samples: error to the propagation target %.6g "
		      "(driver %.6g), to W %.6g\n",
		      n_fit ? n_fit : S, S, e_target, out.t[3].res.err_output, e_plain);
	assert_float_equal(e_target, out.t[3].res.err_output, 1e-4 * out.t[3].res.err_output);
	/* and the target is not W itself: the check above tells them apart */
	assert_true(fabs(e_plain - e_target) > 1e-2 * e_target);

	for (int i = 0; i < 3; i++)
		free(fp[i]);
	free(A);
	free(B);
	free(H);
	free(ws);
	kv_cache_done(&kv);
	free(x);
	free(h);
	free(att);
	free(att_fp);
	free(wo);
	calib_out_done(&out);
	model_free(t->m);
	return e_target;
}

static void test_error_propagation_targets_match_recomputation(void **state)
{
	check_qep_target(*state, 0);
}

/*
 * The first 2 of 3 samples for the fit: the driver's target is the one recomputed from
 * those, and it is not the all-samples one (also checked against the driver by the
 * recomputation). S and beyond mean all: the same bits as 0.
 */
static void test_error_propagation_fits_on_a_subset(void **state)
{
	struct tiny *t = *state;
	double e_all = check_qep_target(t, 0), e_sub = check_qep_target(t, 2);
	struct calib_out a, b;

	assert_true(fabs(e_all - e_sub) > 1e-3 * e_all);
	for (uint32_t n_fit = S; n_fit <= S + 1; n_fit++) {
		assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
		run_prec(t, REPARAM_SHIFTADD_ACC, F32, t->tokens, S, T, 0.5, 0, &a);
		model_free(t->m);
		assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
		run_prec(t, REPARAM_SHIFTADD_ACC, F32, t->tokens, S, T, 0.5, n_fit, &b);
		model_free(t->m);
		assert_int_equal(a.n, b.n);
		for (uint32_t i = 0; i < a.n; i++)
			assert_true(a.t[i].res.err_output == b.t[i].res.err_output);
		calib_out_done(&a);
		calib_out_done(&b);
	}
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

struct run_weights {
	float *w[14];
	size_t n[14];
};

/* Every linear's dequantized weights after a shiftadd-acc run with @threads BLAS threads. */
static void weights_after_run(struct tiny *t, int threads, enum calib_dtype dtype,
			      struct run_weights *rw)
{
	struct calib_out out;
	int saved = openblas_get_num_threads();

	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	openblas_set_num_threads(threads);
	run_dtype(t, REPARAM_SHIFTADD_ACC, dtype, &out);
	openblas_set_num_threads(saved);
	assert_int_equal(out.n, 14);
	for (uint32_t i = 0; i < 14; i++) {
		const struct model_layer *l = &t->m->layers[i / 7];
		const struct linear *lins[7] = { &l->wq,     &l->wk,   &l->wv,	  &l->wo,
						 &l->w_gate, &l->w_up, &l->w_down };

		rw->w[i] = copy_weights(lins[i % 7]);
		rw->n[i] = (size_t)lins[i % 7]->n_out * lins[i % 7]->n_in;
	}
	calib_out_done(&out);
	model_free(t->m);
}

/*
 * With two or more threads the samples run on two workers (own KV sequence, scratch and
 * Hessian part each); with one, a single worker does them all. Both must give the same bits,
 * for f32 and f16 storage: the parts are fixed by sample index and summed in order, so the
 * Hessians do not depend on the worker count (on this small fixture the double sums are
 * exact anyway: what this checks is that the two-worker path computes what the one-worker
 * path, checked above against independent recomputation, does).
 */
static void test_result_does_not_depend_on_threads(void **state)
{
	struct tiny *t = *state;

	for (int dt = 0; dt < CALIB_DTYPE_COUNT; dt++) {
		struct run_weights r1, r2;

		weights_after_run(t, 1, (enum calib_dtype)dt, &r1);
		weights_after_run(t, 2, (enum calib_dtype)dt, &r2);
		for (uint32_t i = 0; i < 14; i++) {
			assert_int_equal(r1.n[i], r2.n[i]);
			assert_memory_equal(r1.w[i], r2.w[i], r1.n[i] * sizeof(float));
			free(r1.w[i]);
			free(r2.w[i]);
		}
	}
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

/* The 7 linears of layer @li in file order. */
static void layer_linears(struct model *m, uint32_t li, struct linear *ls[7])
{
	struct model_layer *l = &m->layers[li];

	ls[0] = &l->wq;
	ls[1] = &l->wk;
	ls[2] = &l->wv;
	ls[3] = &l->wo;
	ls[4] = &l->w_gate;
	ls[5] = &l->w_up;
	ls[6] = &l->w_down;
}

static double frob2_diff(const float *a, const float *b, size_t n)
{
	double s = 0;

	for (size_t i = 0; i < n; i++)
		s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
	return s;
}

#define F16_S  8
#define F16_T  96
#define EVAL_T 64

/* Logits [EVAL_T][n_vocab] of @m on a fixed held-out sequence (malloc'ed). */
static float *eval_logits(const struct model *m)
{
	uint32_t nv = m->cfg.n_vocab, seq[EVAL_T] = { 0 }, pos[EVAL_T];
	int32_t ids[EVAL_T];
	float *hid = malloc((size_t)EVAL_T * m->cfg.dim * sizeof(float));
	float *lg = malloc((size_t)EVAL_T * nv * sizeof(float));
	struct kv_cache kv;

	assert_true(hid && lg);
	for (uint32_t i = 0; i < EVAL_T; i++) {
		ids[i] = (int32_t)((i * 101 + 7) % nv);
		pos[i] = i;
	}
	assert_int_equal(kv_cache_init(&kv, m, 1, EVAL_T), 0);
	assert_int_equal(model_forward(m, &kv, ids, seq, pos, EVAL_T, hid), 0);
	model_logits(m, hid, EVAL_T, lg);
	kv_cache_done(&kv);
	free(hid);
	return lg;
}

/* Quantize a fresh copy of the tiny model with @p; its weights and eval logits. */
static void prec_case(struct tiny *t, enum reparam_method method, double qep, struct prec p,
		      const int32_t *tokens, struct calib_out *out, float *w[14], float **lg)
{
	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	run_prec(t, method, p, tokens, F16_S, F16_T, qep, 0, out);
	for (uint32_t i = 0; i < 14; i++) {
		struct linear *ls[7];

		layer_linears(t->m, i / 7, ls);
		w[i] = copy_weights(ls[i % 7]);
	}
	*lg = eval_logits(t->m);
	model_free(t->m);
}

/*
 * f16 storage perturbs each held activation by at most 2^-11 relative (one rounding; the
 * engine still computes in f32 and H is still summed in double); bf16 products round every
 * input of the linears, Hessians and error-propagation products by up to 2^-9 (sums in f32).
 * The quantizers are discrete and feed every rounding decision back into the columns after
 * it, so such a perturbation can flip codes and send GPTQ/BCQ to a different, equally good
 * solution: elementwise the weights of the two runs may differ by as much as either differs
 * from the original (measured up to ~1.2x for shiftadd-acc), so "close" is asserted where it
 * is meaningful:
 *  - per linear, the proxy output error tr(dW H dW^T) / tr(W H W^T) of the variant is within
 *    10% of the f32 run's (measured within 5% for f16 on 768 calibration tokens);
 *  - the quantized models' logits on a held-out sequence are as far from the unquantized
 *    model's: | ||Lv - Lfp|| - ||L32 - Lfp|| | <= 10% ||L32 - Lfp|| (measured < 3%);
 *  - the first linears (q/k/v of block 0) see inputs that went through one rounding only, and
 *    for GPTQ (no alternating refinement) their weights stay close: ||Wv - W32|| <= 0.1
 *    ||W32 - W||; and some linear's weights differ (else the variant did not run).
 */
static void check_lands_next_to_f32(struct tiny *t, struct prec v, const char *name)
{
	/* the third with error propagation, whose reference stream is held in f16 too */
	enum reparam_method methods[3] = { REPARAM_GPTQ, REPARAM_SHIFTADD_ACC,
					   REPARAM_SHIFTADD_ACC };
	double qep[3] = { 0, 0, 0.5 };
	int32_t tokens[F16_S * F16_T];
	uint64_t lcg = 12345;
	float *lfp;

	for (uint32_t i = 0; i < F16_S * F16_T; i++) {
		lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
		tokens[i] = (int32_t)((lcg >> 33) % 256);
	}
	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	lfp = eval_logits(t->m);
	model_free(t->m);
	for (uint32_t mi = 0; mi < 3; mi++) {
		struct calib_out o32, ov;
		float *w32[14], *wv[14], *l32, *lv, *w0[14];
		double worst_err = 0, worst_w = 0, any_w = 0, d32 = 0, dv = 0;
		size_t nl = (size_t)EVAL_T * 256;

		assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
		for (uint32_t i = 0; i < 14; i++) {
			struct linear *ls[7];

			layer_linears(t->m, i / 7, ls);
			w0[i] = copy_weights(ls[i % 7]);
		}
		model_free(t->m);
		prec_case(t, methods[mi], qep[mi], F32, tokens, &o32, w32, &l32);
		prec_case(t, methods[mi], qep[mi], v, tokens, &ov, wv, &lv);
		for (uint32_t i = 0; i < 14; i++) {
			double e32 = o32.t[i].res.rel_err_output, ev = ov.t[i].res.rel_err_output;
			size_t n = (size_t)o32.t[i].res.n_rows * o32.t[i].res.n_cols;
			double rw =
				sqrt(frob2_diff(wv[i], w32[i], n) / frob2_diff(w32[i], w0[i], n));

			worst_err =
				fabs(ev - e32) / e32 > worst_err ? fabs(ev - e32) / e32 : worst_err;
			assert_float_equal(ev, e32, 0.1 * e32);
			any_w = rw > any_w ? rw : any_w;
			if (i < 3 && methods[mi] == REPARAM_GPTQ) {
				worst_w = rw > worst_w ? rw : worst_w;
				assert_true(rw <= 0.1);
			}
			free(w0[i]);
			free(w32[i]);
			free(wv[i]);
		}
		assert_true(any_w > 0);
		d32 = sqrt(frob2_diff(l32, lfp, nl));
		dv = sqrt(frob2_diff(lv, lfp, nl));
		printf("calib %s vs f32, %s, qep %g: proxy errors within %.2g%%, logits from fp %.4g "
		       "vs %.4g, block-0 q/k/v weights %.3g\n",
		       name, reparam_method_name(methods[mi]), qep[mi], 100 * worst_err, dv, d32,
		       worst_w);
		assert_float_equal(dv, d32, 0.1 * d32);
		free(l32);
		free(lv);
		calib_out_done(&o32);
		calib_out_done(&ov);
	}
	free(lfp);
}

static void test_f16_storage_lands_next_to_f32(void **state)
{
	check_lands_next_to_f32(*state, (struct prec){ CALIB_DTYPE_F16, CALIB_MATH_F32 }, "f16");
}

static void test_bf16_math_lands_next_to_f32(void **state)
{
	if (!gemm_bf16_supported()) {
		print_message("bf16 calibration math: NOT RUN (host lacks AVX512_BF16)\n");
		return;
	}
	check_lands_next_to_f32(*state, (struct prec){ CALIB_DTYPE_F32, CALIB_MATH_BF16 },
				"bf16 math");
}

/*
 * With f16 storage the q/k/v Hessian is that of the half-rounded attention-norm outputs of
 * the half-rounded embeddings: recompute it independently (rounding with the engine's scalar
 * conversion) and check the error the driver reported against it. The embeddings are scaled
 * down by 2^-18 into f16's subnormal range first, where rounding is coarse (2^-24 absolute), so
 * the rounded and unrounded Hessians give errors that differ by far more than the tolerance
 * (H is summed from f32 products, good to ~1e-7 relative here).
 */
static void test_f16_hessian_is_of_rounded_inputs(void **state)
{
	struct tiny *t = *state;
	const struct model_config *c;
	struct calib_out out;
	uint32_t pos[T];
	float *wq, *x, *h16, *h32;
	double *H, e16, e32;

	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	c = &t->m->cfg;
	for (size_t i = 0; i < (size_t)c->n_vocab * c->dim; i++)
		t->m->tok_embd[i] *= 0x1p-18f;
	wq = copy_weights(&t->m->layers[0].wq);
	x = malloc((size_t)S * T * c->dim * sizeof(float));
	h16 = malloc((size_t)S * T * c->dim * sizeof(float));
	h32 = malloc((size_t)S * T * c->dim * sizeof(float));
	assert_true(x && h16 && h32);
	for (uint32_t i = 0; i < T; i++)
		pos[i] = i;
	for (uint32_t s = 0; s < S; s++) {
		float *xs = x + s * T * c->dim, *hs = h16 + s * T * c->dim;

		assert_int_equal(model_embed(t->m, t->tokens + s * T, pos, T, xs), 0);
		model_attn_norm(t->m, 0, xs, T, h32 + s * T * c->dim);
		for (uint32_t i = 0; i < T * c->dim; i++)
			xs[i] = dtype_f16_to_f32(dtype_f32_to_f16(xs[i]));
		model_attn_norm(t->m, 0, xs, T, hs);
		for (uint32_t i = 0; i < T * c->dim; i++)
			hs[i] = dtype_f16_to_f32(dtype_f32_to_f16(hs[i]));
	}
	run_dtype(t, REPARAM_SHIFTADD_ACC, CALIB_DTYPE_F16, &out);
	H = hessian(h16, S * T, c->dim);
	e16 = output_error(wq, linear_dense_weights(&t->m->layers[0].wq), c->dim, c->dim, H);
	free(H);
	H = hessian(h32, S * T, c->dim);
	e32 = output_error(wq, linear_dense_weights(&t->m->layers[0].wq), c->dim, c->dim, H);
	free(H);
	/* measured: 1.4e-8 and 2.9e-4 relative */
	assert_float_equal(e16, out.t[0].res.err_output, 1e-6 * e16);
	assert_true(fabs(e32 - e16) > 1e-4 * e16);
	free(x);
	free(h16);
	free(h32);
	free(wq);
	calib_out_done(&out);
	model_free(t->m);
}

static void test_calib_dtype_names(void **state)
{
	struct tiny *t = *state;
	struct calib_run run = { 0 };
	struct errbuf e = { { 0 } };
	struct calib_out out;

	assert_int_equal(calib_dtype_parse("f32"), CALIB_DTYPE_F32);
	assert_int_equal(calib_dtype_parse("f16"), CALIB_DTYPE_F16);
	assert_int_equal(calib_dtype_parse("bf16"), -EINVAL);
	assert_int_equal(calib_dtype_parse("F16"), -EINVAL);
	assert_int_equal(calib_dtype_parse(""), -EINVAL);
	assert_int_equal(calib_dtype_parse(NULL), -EINVAL);
	assert_string_equal(calib_dtype_name(CALIB_DTYPE_F16), "f16");
	assert_string_equal(calib_dtype_name(CALIB_DTYPE_F32), "f32");
	/* a bad value reaching the driver is refused before any work */
	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	reparam_opts_init(&run.q, REPARAM_GPTQ, 3);
	run.calib = (struct calib_opts){
		.nsamples = S, .seqlen = T, .tokens = t->tokens, .dtype = (enum calib_dtype)7
	};
	assert_int_equal(calib_quantize_model(t->m, &run, &out, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "dtype"));
	/* the same for the products' math; bf16 on a host without it is refused too */
	assert_int_equal(calib_math_parse("f32"), CALIB_MATH_F32);
	assert_int_equal(calib_math_parse("bf16"), CALIB_MATH_BF16);
	assert_int_equal(calib_math_parse("f16"), -EINVAL);
	assert_int_equal(calib_math_parse(NULL), -EINVAL);
	assert_string_equal(calib_math_name(CALIB_MATH_BF16), "bf16");
	assert_string_equal(calib_math_name(CALIB_MATH_COUNT), "?");
	run.calib.dtype = CALIB_DTYPE_F32;
	run.calib.math = (enum calib_math)5;
	assert_int_equal(calib_quantize_model(t->m, &run, &out, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "math"));
	if (!gemm_bf16_supported()) {
		run.calib.math = CALIB_MATH_BF16;
		assert_int_equal(calib_quantize_model(t->m, &run, &out, &e), -EOPNOTSUPP);
		assert_non_null(strstr(e.msg, "AVX512_BF16"));
	}
	model_free(t->m);
}

/*
 * The default fit: the windows of the first 65,536 tokens, raised to 16 tokens per input
 * dimension of the widest linear (a model of Llama-7B's widths: 16 x 11008 = 176,128
 * tokens), all windows (0) when that is every one.
 */
static void test_default_qep_samples_follow_tokens(void **state)
{
	struct tiny *t = *state;
	struct model big = {
		.cfg = { .dim = 4096, .n_heads = 32, .head_dim = 128, .ffn_dim = 11008 }
	};
	struct calib_run run = { 0 };

	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	reparam_opts_init(&run.q, REPARAM_SHIFTADD_ACC, 3);
	run.calib = (struct calib_opts){ .nsamples = 128, .seqlen = 2048 };
	assert_int_equal(calib_default_qep_samples(t->m, &run), 32);
	run.calib.seqlen = 3000; /* 21.8 windows: the 22nd is needed */
	assert_int_equal(calib_default_qep_samples(t->m, &run), 22);
	run.calib = (struct calib_opts){ .nsamples = 20, .seqlen = 128 };
	assert_int_equal(calib_default_qep_samples(t->m, &run), 0);
	run.calib = (struct calib_opts){ .nsamples = 32, .seqlen = 2048 };
	assert_int_equal(calib_default_qep_samples(t->m, &run), 0);
	run.calib = (struct calib_opts){ .nsamples = 128, .seqlen = 2048 };
	assert_int_equal(calib_default_qep_samples(&big, &run), 86);
	run.calib.nsamples = 86;
	assert_int_equal(calib_default_qep_samples(&big, &run), 0);
	model_free(t->m);
}

/*
 * The default strength: on for acc and rht from 16 calibration tokens per input dimension of
 * the widest linear (the fixture's down projection reads intermediate_size = 160), off below
 * and for every other method.
 */
static void test_default_qep_follows_calibration_size(void **state)
{
	static const enum reparam_method off[] = { REPARAM_RTN, REPARAM_GPTQ, REPARAM_BCQ,
						   REPARAM_SHIFTADD_LAT, REPARAM_SHIFTADD_ACC_SIM };
	struct tiny *t = *state;
	struct calib_run run = { 0 };

	assert_int_equal(model_load(t->dir, &t->m, NULL), 0);
	reparam_opts_init(&run.q, REPARAM_SHIFTADD_ACC, 3);
	run.calib = (struct calib_opts){ .nsamples = 20, .seqlen = 128 }; /* 2560 = 16 x 160 */
	assert_true(calib_default_qep(t->m, &run) == 0.3);
	run.q.method = REPARAM_SHIFTADD_RHT;
	assert_true(calib_default_qep(t->m, &run) == 0.3);
	run.calib.seqlen = 127;
	assert_true(calib_default_qep(t->m, &run) == 0);
	run.calib = (struct calib_opts){ .nsamples = 1, .seqlen = 2559 };
	assert_true(calib_default_qep(t->m, &run) == 0);
	run.calib = (struct calib_opts){ .nsamples = 128, .seqlen = 2048 };
	assert_true(calib_default_qep(t->m, &run) == 0.3);
	for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
		run.q.method = off[i];
		assert_true(calib_default_qep(t->m, &run) == 0);
	}
	model_free(t->m);
}

int test_calib_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_linear_quantized_and_model_holds_dequantized),
		cmocka_unit_test(test_hessians_match_independent_recomputation),
		cmocka_unit_test(test_gemma3_ffn_hessian_sees_the_post_norm),
		cmocka_unit_test(test_head_is_quantized_last_against_its_input),
		cmocka_unit_test(test_error_propagation_targets_match_recomputation),
		cmocka_unit_test(test_error_propagation_fits_on_a_subset),
		cmocka_unit_test(test_fp_method_leaves_weights_unchanged),
		cmocka_unit_test(test_result_does_not_depend_on_threads),
		cmocka_unit_test(test_too_long_calibration_window_is_rejected),
		cmocka_unit_test(test_f16_storage_lands_next_to_f32),
		cmocka_unit_test(test_bf16_math_lands_next_to_f32),
		cmocka_unit_test(test_f16_hessian_is_of_rounded_inputs),
		cmocka_unit_test(test_calib_dtype_names),
		cmocka_unit_test(test_default_qep_samples_follow_tokens),
		cmocka_unit_test(test_default_qep_follows_calibration_size),
	};
	return cmocka_run_group_tests_name("reparam/calib", tests, setup, teardown);
}
