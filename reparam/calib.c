// SPDX-License-Identifier: MIT
#include "reparam/calib.h"

#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eval.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"

int calib_windows(const struct model *m, const struct calib_opts *o, int32_t **ret_tokens,
		  struct errbuf *e)
{
	char *text = NULL;
	int32_t *ids = NULL, *out;
	size_t len, n_ids;
	uint64_t rng = o->seed;
	int r;

	if (!m->tok)
		return errbuf_set(e, -EINVAL, "the model has no tokenizer");
	if (!o->nsamples || o->seqlen < 2)
		return errbuf_set(e, -EINVAL, "need nsamples >= 1 and seqlen >= 2");
	r = eval_read_rows_joined(o->text_path, &text, &len);
	if (r < 0)
		return errbuf_set(e, r, "cannot read calibration text '%s': %s", o->text_path,
				  strerror(-r));
	r = tokenizer_encode(m->tok, text, len, false, &ids, &n_ids);
	free(text);
	if (r < 0)
		return errbuf_set(e, r, "cannot tokenize '%s'", o->text_path);
	if (n_ids <= o->seqlen) {
		free(ids);
		return errbuf_set(e, -EINVAL,
				  "calibration text '%s' has %zu tokens, need more than seqlen %u",
				  o->text_path, n_ids, o->seqlen);
	}
	out = malloc((uint64_t)o->nsamples * o->seqlen * sizeof(*out));
	if (!out) {
		free(ids);
		return -ENOMEM;
	}
	for (uint32_t s = 0; s < o->nsamples; s++) {
		uint64_t off = (uint64_t)(sampler_uniform(&rng) * (double)(n_ids - o->seqlen));

		memcpy(out + (uint64_t)s * o->seqlen, ids + off, o->seqlen * sizeof(*out));
	}
	free(ids);
	*ret_tokens = out;
	return 0;
}

/* Hessian accumulator for the inputs of one group of linears sharing an input. */
struct hacc {
	uint32_t width;
	uint64_t n_rows;
	double *H;  /* [width][width], upper triangle */
	float *tmp; /* [width][width]: one window's product */
};

static int hacc_init(struct hacc *h, uint32_t width)
{
	memset(h, 0, sizeof(*h));
	h->width = width;
	h->H = calloc((uint64_t)width * width, sizeof(double));
	h->tmp = malloc((uint64_t)width * width * sizeof(float));
	return h->H && h->tmp ? 0 : -ENOMEM;
}

static void hacc_done(struct hacc *h)
{
	free(h->H);
	free(h->tmp);
}

/*
 * H += x^T x for x[n][width]. One window's product is formed in f32 (ssyrk runs twice as
 * fast as dsyrk and a sum of n <= seqlen terms keeps ~1e-6 relative accuracy, which is how
 * the reference GPTQ forms all of H); the windows are summed in double, so the error does not
 * grow with nsamples.
 */
static void hacc_add(struct hacc *h, const float *x, uint32_t n)
{
	uint32_t w = h->width;

	cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, w, n, 1.0f, x, w, 0.0f, h->tmp, w);
	for (uint32_t i = 0; i < w; i++)
		for (uint32_t j = i; j < w; j++)
			h->H[(uint64_t)i * w + j] += h->tmp[(uint64_t)i * w + j];
	h->n_rows += n;
}

/* H = 2 X X^T / n */
static void hacc_finish(struct hacc *h)
{
	cblas_dscal((uint64_t)h->width * h->width, 2.0 / (double)h->n_rows, h->H, 1);
}

/*
 * Per-block state. All calibration samples' activations of the current block are held:
 * x (residual stream), att (attention outputs, input of o) and act (activated FFN hidden,
 * input of down), each [nsamples][seqlen][width].
 */
struct driver {
	struct model *m;
	const struct calib_run *o;
	struct calib_out *out;
	uint32_t S, T; /* samples, tokens per sample */
	float *x, *att, *act, *h;
	struct kv_cache kv;
	uint32_t *seq, *pos; /* [T] */
	uint64_t steps_done, steps_total;
	uint32_t n_done, n_total;
};

enum {
	STAGES_PER_LAYER = 5
};

static float *row_of(const struct driver *d, float *base, uint32_t s, uint32_t width)
{
	return base + (uint64_t)s * d->T * width;
}

static void step(struct driver *d)
{
	d->steps_done++;
	if (d->o->progress)
		d->o->progress(d->o->progress_arg, d->steps_done, d->steps_total);
}

struct qjob {
	struct driver *d;
	uint32_t li;
	struct linear *l;
	const char *name;
	const double *H;
	struct calib_tensor *t;
	struct errbuf e;
	int ret;
};

static void *quantize_job(void *arg)
{
	struct qjob *j = arg;
	float *w = linear_dense_weights(j->l);
	struct reparam_opts q;
	double t0 = progress_now();

	snprintf(j->t->name, sizeof(j->t->name), "blk.%u.%s", j->li, j->name);
	j->t->layer = j->li;
	if (!w) {
		j->ret = errbuf_set(&j->e, -EOPNOTSUPP, "not a dense f32 layer");
		return NULL;
	}
	q = j->d->o->q;
	if (j->d->o->bits_of)
		q.bits = j->d->o->bits_of(j->d->o->hook_arg, j->t->name);
	if (j->d->o->on_hessian)
		j->d->o->on_hessian(j->d->o->hook_arg, j->t->name, w, j->l->n_out, j->l->n_in,
				    j->H);
	j->ret = reparam_quantize(&q, w, j->l->n_out, j->l->n_in, j->H, &j->t->res, &j->e);
	j->t->seconds = progress_now() - t0;
	return NULL;
}

/*
 * Quantize the @n linears that share Hessian @H, in parallel (they are independent), then
 * replace their weights by the dequantized results.
 */
static int quantize_linears(struct driver *d, uint32_t li, struct linear **lins, const char **names,
			    uint32_t n, const double *H, struct errbuf *e)
{
	struct qjob jobs[3];
	pthread_t tid[3];
	bool started[3] = { false };
	int blas_threads = openblas_get_num_threads(), r = 0;

	/*
	 * The jobs make many small BLAS calls; OpenBLAS's own threads would spin (sched_yield)
	 * between them and take the cores the jobs run on. One BLAS thread per job instead.
	 */
	openblas_set_num_threads(1);

	for (uint32_t i = 0; i < n; i++) {
		jobs[i] = (struct qjob){ .d = d,
					 .li = li,
					 .l = lins[i],
					 .name = names[i],
					 .H = H,
					 .t = &d->out->t[d->out->n + i] };
		started[i] =
			i + 1 < n && pthread_create(&tid[i], NULL, quantize_job, &jobs[i]) == 0;
		if (!started[i])
			quantize_job(&jobs[i]);
	}
	for (uint32_t i = 0; i < n; i++) {
		struct calib_tensor *t = jobs[i].t;

		if (started[i])
			pthread_join(tid[i], NULL);
		if (jobs[i].ret < 0 && r == 0)
			r = errbuf_set(e, jobs[i].ret, "%s: %s", t->name,
				       errbuf_str(&jobs[i].e, jobs[i].ret));
	}
	openblas_set_num_threads(blas_threads);
	for (uint32_t i = 0; i < n; i++) {
		struct calib_tensor *t = jobs[i].t;

		if (jobs[i].ret < 0)
			continue;
		d->out->n++;
		memcpy(linear_dense_weights(lins[i]), t->res.dense,
		       (uint64_t)lins[i]->n_out * lins[i]->n_in * sizeof(float));
		if (t->res.has_qweight) {
			/* the planes are what gets written; the dense copy lives on in the model */
			free(t->res.dense);
			t->res.dense = NULL;
		}
		d->n_done++;
		if (d->o->on_layer)
			d->o->on_layer(d->o->on_layer_arg, t, d->n_done, d->n_total);
	}
	return r;
}

/* Accumulate H over every sample of @buf ([S][T][width]) and quantize @lins with it. */
static int quantize_with(struct driver *d, uint32_t li, struct linear **lins, const char **names,
			 uint32_t n, const float *buf, uint32_t width, struct errbuf *e)
{
	struct hacc h;
	int r = hacc_init(&h, width);

	for (uint32_t s = 0; r == 0 && s < d->S; s++)
		hacc_add(&h, buf + (uint64_t)s * d->T * width, d->T);
	if (r == 0) {
		hacc_finish(&h);
		r = quantize_linears(d, li, lins, names, n, h.H, e);
	}
	hacc_done(&h);
	return r;
}

/* One block, true-sequentially: q/k/v, o, gate/up, down, then the block's outputs. */
static int calibrate_layer(struct driver *d, uint32_t li, struct errbuf *e)
{
	struct model *m = d->m;
	struct model_layer *l = &m->layers[li];
	uint32_t dim = m->cfg.dim, q_dim = m->cfg.n_heads * m->cfg.head_dim, ffn = m->cfg.ffn_dim;
	bool opt = m->cfg.arch == ARCH_OPT;
	struct linear *qkv[3] = { &l->wq, &l->wk, &l->wv }, *o[1] = { &l->wo };
	struct linear *gu[2] = { opt ? &l->w_up : &l->w_gate, &l->w_up }, *dn[1] = { &l->w_down };
	const char *qkv_n[3] = { "attn_q", "attn_k", "attn_v" }, *o_n[1] = { "attn_output" };
	const char *gu_n[2] = { opt ? "ffn_up" : "ffn_gate", "ffn_up" }, *dn_n[1] = { "ffn_down" };
	int r = 0;

	/* q/k/v see the attention norm of x; keep it in act (free until the FFN stage) */
	for (uint32_t s = 0; s < d->S; s++, step(d))
		model_attn_norm(m, li, row_of(d, d->x, s, dim), d->T, row_of(d, d->act, s, dim));
	r = quantize_with(d, li, qkv, qkv_n, 3, d->act, dim, e);
	for (uint32_t s = 0; r == 0 && s < d->S; s++, step(d))
		r = model_attn_core(m, &d->kv, li, d->seq, d->pos, d->T, row_of(d, d->act, s, dim),
				    row_of(d, d->att, s, q_dim));
	if (r == 0)
		r = quantize_with(d, li, o, o_n, 1, d->att, q_dim, e);
	for (uint32_t s = 0; r == 0 && s < d->S; s++, step(d)) {
		float *xs = row_of(d, d->x, s, dim);

		linear_forward(&l->wo, row_of(d, d->att, s, q_dim), d->h, d->T);
		for (uint64_t i = 0; i < (uint64_t)d->T * dim; i++)
			xs[i] += d->h[i];
		/* the FFN input goes where att was: att is not needed any more */
		model_ffn_norm(m, li, xs, d->T, row_of(d, d->att, s, dim));
	}
	if (r == 0)
		r = quantize_with(d, li, gu, gu_n, opt ? 1 : 2, d->att, dim, e);
	for (uint32_t s = 0; r == 0 && s < d->S; s++, step(d))
		r = model_ffn_core(m, li, d->T, row_of(d, d->att, s, dim),
				   row_of(d, d->act, s, ffn));
	if (r == 0)
		r = quantize_with(d, li, dn, dn_n, 1, d->act, ffn, e);
	for (uint32_t s = 0; r == 0 && s < d->S; s++, step(d)) {
		float *xs = row_of(d, d->x, s, dim);

		linear_forward(&l->w_down, row_of(d, d->act, s, ffn), d->h, d->T);
		for (uint64_t i = 0; i < (uint64_t)d->T * dim; i++)
			xs[i] += d->h[i];
	}
	return r;
}

/* Methods without a Hessian: each linear on its own, no forward passes. */
static int quantize_plain(struct driver *d, struct errbuf *e)
{
	for (uint32_t li = 0; li < d->m->cfg.n_layers; li++) {
		struct model_layer *l = &d->m->layers[li];
		bool opt = d->m->cfg.arch == ARCH_OPT;
		struct linear *lins[7] = { &l->wq,     &l->wk,	 &l->wv,    &l->wo,
					   &l->w_gate, &l->w_up, &l->w_down };
		const char *names[7] = { "attn_q",   "attn_k", "attn_v",  "attn_output",
					 "ffn_gate", "ffn_up", "ffn_down" };

		for (uint32_t i = 0; i < 7; i++) {
			int r;

			if (opt && i == 4)
				continue;
			r = quantize_linears(d, li, &lins[i], &names[i], 1, NULL, e);
			if (r < 0)
				return r;
			step(d);
		}
	}
	return 0;
}

static int driver_init(struct driver *d, struct model *m, const struct calib_run *o,
		       struct calib_out *out, bool need_h, struct errbuf *e)
{
	const struct calib_opts *c = &o->calib;
	uint32_t dim = m->cfg.dim, q_dim = m->cfg.n_heads * m->cfg.head_dim;
	uint32_t wide = m->cfg.ffn_dim > q_dim ? m->cfg.ffn_dim : q_dim;
	uint64_t n_tok;
	int32_t *tokens = NULL;
	int r;

	memset(d, 0, sizeof(*d));
	d->m = m;
	d->o = o;
	d->out = out;
	d->n_total = m->cfg.n_layers * (m->cfg.arch == ARCH_OPT ? 6 : 7);
	out->t = calloc(d->n_total, sizeof(*out->t));
	if (!out->t)
		return -ENOMEM;
	if (!need_h) {
		d->steps_total = d->n_total;
		return 0;
	}
	if (m->cfg.arch == ARCH_OPT && !m->cfg.opt_pre_ln)
		return errbuf_set(e, -EOPNOTSUPP, "calibration needs a pre-LN model");
	if (c->seqlen > m->cfg.max_ctx)
		return errbuf_set(e, -EINVAL, "calibration seqlen %u exceeds the model context %u",
				  c->seqlen, m->cfg.max_ctx);
	if (c->tokens) {
		tokens = malloc((uint64_t)c->nsamples * c->seqlen * sizeof(*tokens));
		if (!tokens)
			return -ENOMEM;
		memcpy(tokens, c->tokens, (uint64_t)c->nsamples * c->seqlen * sizeof(*tokens));
	} else {
		r = calib_windows(m, c, &tokens, e);
		if (r < 0)
			return r;
	}
	d->S = c->nsamples;
	d->T = c->seqlen;
	n_tok = (uint64_t)d->S * d->T;
	d->x = malloc(n_tok * dim * sizeof(float));
	d->att = malloc(n_tok * (q_dim > dim ? q_dim : dim) * sizeof(float));
	d->act = malloc(n_tok * (wide > dim ? wide : dim) * sizeof(float));
	d->h = malloc((uint64_t)d->T * dim * sizeof(float));
	d->seq = calloc(d->T, sizeof(*d->seq));
	d->pos = malloc(d->T * sizeof(*d->pos));
	r = -ENOMEM;
	if (!d->x || !d->att || !d->act || !d->h || !d->seq || !d->pos)
		goto out;
	for (uint32_t i = 0; i < d->T; i++)
		d->pos[i] = i;
	r = kv_cache_init(&d->kv, m, 1, d->T);
	for (uint32_t s = 0; r == 0 && s < d->S; s++)
		r = model_embed(m, tokens + (uint64_t)s * d->T, d->pos, d->T,
				row_of(d, d->x, s, dim));
	d->steps_total = (uint64_t)m->cfg.n_layers * STAGES_PER_LAYER * d->S;
	out->n_tokens = (uint32_t)n_tok;
out:
	free(tokens);
	return r;
}

static void driver_done(struct driver *d)
{
	free(d->x);
	free(d->att);
	free(d->act);
	free(d->h);
	free(d->seq);
	free(d->pos);
	kv_cache_done(&d->kv);
}

int calib_quantize_model(struct model *m, const struct calib_run *o, struct calib_out *out,
			 struct errbuf *e)
{
	bool need_h = reparam_method_needs_hessian(o->q.method);
	struct driver d;
	int r;

	memset(out, 0, sizeof(*out));
	r = driver_init(&d, m, o, out, need_h, e);
	if (r == 0 && !need_h)
		r = quantize_plain(&d, e);
	for (uint32_t li = 0; r == 0 && need_h && li < m->cfg.n_layers; li++)
		r = calibrate_layer(&d, li, e);
	driver_done(&d);
	if (r < 0)
		calib_out_done(out);
	return r;
}

void calib_out_done(struct calib_out *out)
{
	for (uint32_t i = 0; out->t && i < out->n; i++)
		reparam_result_done(&out->t[i].res);
	free(out->t);
	memset(out, 0, sizeof(*out));
}
