// SPDX-License-Identifier: MIT
#include "reparam/calib.h"

#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/eval.h"
#include "engine/model.h"
#include "engine/sample.h"
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
		uint64_t off = (uint64_t)(sample_uniform(&rng) * (double)(n_ids - o->seqlen));

		memcpy(out + (uint64_t)s * o->seqlen, ids + off, o->seqlen * sizeof(*out));
	}
	free(ids);
	*ret_tokens = out;
	return 0;
}

/* Hessian accumulator for one group of linears sharing an input. */
struct hacc {
	enum lin_group group;
	uint32_t width;
	uint64_t n_rows;
	double *H;   /* [width][width], upper triangle */
	double *tmp; /* [rows][width] */
	uint64_t tmp_rows;
	int err;
};

static void hacc_tap(void *arg, uint32_t layer, enum lin_group g, const float *x, uint32_t n,
		     uint32_t width)
{
	struct hacc *h = arg;

	if (g != h->group || h->err)
		return;
	if (n > h->tmp_rows) {
		double *t = realloc(h->tmp, (uint64_t)n * width * sizeof(double));

		if (!t) {
			h->err = -ENOMEM;
			return;
		}
		h->tmp = t;
		h->tmp_rows = n;
	}
	for (uint64_t i = 0; i < (uint64_t)n * width; i++)
		h->tmp[i] = x[i];
	cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, width, n, 1.0, h->tmp, width, 1.0, h->H,
		    width);
	h->n_rows += n;
}

struct driver {
	struct model *m;
	const struct calib_run *o;
	struct calib_out *out;
	int32_t *tokens; /* [nsamples][seqlen] */
	float *x;	 /* [nsamples][seqlen][dim]: inputs of the current block */
	struct kv_cache kv;
	uint32_t *seq, *pos; /* [seqlen] */
	uint64_t steps_done, steps_total;
	uint32_t n_done, n_total;
};

static uint32_t group_width(const struct model *m, enum lin_group g)
{
	switch (g) {
	case LIN_O:
		return m->cfg.n_heads * m->cfg.head_dim;
	case LIN_DOWN:
		return m->cfg.ffn_dim;
	default:
		return m->cfg.dim;
	}
}

/* The linears of group @g of layer @li and their GGUF base names. */
static uint32_t group_linears(struct model *m, uint32_t li, enum lin_group g,
			      struct linear **ret, const char **names)
{
	struct model_layer *l = &m->layers[li];
	bool opt = m->cfg.arch == ARCH_OPT;

	switch (g) {
	case LIN_QKV:
		ret[0] = &l->wq, names[0] = "attn_q";
		ret[1] = &l->wk, names[1] = "attn_k";
		ret[2] = &l->wv, names[2] = "attn_v";
		return 3;
	case LIN_O:
		ret[0] = &l->wo, names[0] = "attn_output";
		return 1;
	case LIN_GATE_UP:
		if (opt) {
			ret[0] = &l->w_up, names[0] = "ffn_up";
			return 1;
		}
		ret[0] = &l->w_gate, names[0] = "ffn_gate";
		ret[1] = &l->w_up, names[1] = "ffn_up";
		return 2;
	default:
		ret[0] = &l->w_down, names[0] = "ffn_down";
		return 1;
	}
}

static void step(struct driver *d)
{
	d->steps_done++;
	if (d->o->progress)
		d->o->progress(d->o->progress_arg, d->steps_done, d->steps_total);
}

/* Run every sample through layer @li up to (and tapping) group @g, or fully when
 * g == LIN_GROUP_COUNT (then x is advanced to the layer's output). */
static int pass(struct driver *d, uint32_t li, enum lin_group g, linear_tap_fn tap, void *arg)
{
	const struct calib_opts *c = &d->o->calib;
	uint64_t stride = (uint64_t)c->seqlen * d->m->cfg.dim;

	for (uint32_t s = 0; s < c->nsamples; s++) {
		int r = model_layer_forward(d->m, &d->kv, li, d->seq, d->pos, c->seqlen,
					    d->x + s * stride, g, tap, arg);

		if (r < 0)
			return r;
		step(d);
	}
	return 0;
}

static int quantize_linear(struct driver *d, uint32_t li, struct linear *l, const char *name,
			   const double *H, struct errbuf *e)
{
	struct calib_tensor *t = &d->out->t[d->out->n];
	float *w = linear_dense_weights(l);
	double t0 = progress_now();
	int r;

	if (!w)
		return errbuf_set(e, -EOPNOTSUPP, "layer %u %s is not a dense f32 layer", li, name);
	snprintf(t->name, sizeof(t->name), "blk.%u.%s", li, name);
	t->layer = li;
	r = reparam_quantize(&d->o->q, w, l->n_out, l->n_in, H, &t->res, e);
	if (r < 0) {
		char msg[ERRBUF_LEN];

		snprintf(msg, sizeof(msg), "%s", e ? e->msg : "");
		return errbuf_set(e, r, "%s: %s", t->name, msg[0] ? msg : strerror(-r));
	}
	memcpy(w, t->res.dense, (uint64_t)l->n_out * l->n_in * sizeof(float));
	if (t->res.has_qweight) {
		/* the planes are what gets written; the dense copy lives on in the model */
		free(t->res.dense);
		t->res.dense = NULL;
	}
	t->seconds = progress_now() - t0;
	d->out->n++;
	d->n_done++;
	if (d->o->on_layer)
		d->o->on_layer(d->o->on_layer_arg, t, d->n_done, d->n_total);
	return 0;
}

static int quantize_group(struct driver *d, uint32_t li, enum lin_group g, bool need_h,
			  struct errbuf *e)
{
	struct linear *lins[3];
	const char *names[3];
	uint32_t n = group_linears(d->m, li, g, lins, names), w = group_width(d->m, g);
	struct hacc h = { .group = g, .width = w };
	int r = 0;

	if (need_h) {
		h.H = calloc((uint64_t)w * w, sizeof(double));
		if (!h.H)
			return -ENOMEM;
		r = pass(d, li, g, hacc_tap, &h);
		if (r == 0)
			r = h.err;
		if (r == 0)
			cblas_dscal((uint64_t)w * w, 2.0 / (double)h.n_rows, h.H, 1);
	}
	for (uint32_t i = 0; i < n && r == 0; i++)
		r = quantize_linear(d, li, lins[i], names[i], h.H, e);
	free(h.H);
	free(h.tmp);
	return r;
}

static int driver_init(struct driver *d, struct model *m, const struct calib_run *o,
		       struct calib_out *out, bool need_h, struct errbuf *e)
{
	const struct calib_opts *c = &o->calib;
	int r;

	memset(d, 0, sizeof(*d));
	d->m = m;
	d->o = o;
	d->out = out;
	d->n_total = m->cfg.n_layers * (m->cfg.arch == ARCH_OPT ? 6 : 7);
	out->t = calloc(d->n_total, sizeof(*out->t));
	if (!out->t)
		return -ENOMEM;
	if (!need_h)
		return 0;
	if (c->seqlen > m->cfg.max_ctx)
		return errbuf_set(e, -EINVAL, "calibration seqlen %u exceeds the model context %u",
				  c->seqlen, m->cfg.max_ctx);
	r = calib_windows(m, c, &d->tokens, e);
	if (r < 0)
		return r;
	d->x = malloc((uint64_t)c->nsamples * c->seqlen * m->cfg.dim * sizeof(float));
	d->seq = calloc(c->seqlen, sizeof(*d->seq));
	d->pos = malloc(c->seqlen * sizeof(*d->pos));
	if (!d->x || !d->seq || !d->pos)
		return -ENOMEM;
	for (uint32_t i = 0; i < c->seqlen; i++)
		d->pos[i] = i;
	r = kv_cache_init(&d->kv, m, 1, c->seqlen);
	if (r < 0)
		return r;
	for (uint32_t s = 0; s < c->nsamples; s++) {
		r = model_embed(m, d->tokens + (uint64_t)s * c->seqlen, d->pos, c->seqlen,
				d->x + (uint64_t)s * c->seqlen * m->cfg.dim);
		if (r < 0)
			return r;
	}
	/* per layer: one pass per group, then one full pass */
	d->steps_total = (uint64_t)m->cfg.n_layers * (LIN_GROUP_COUNT + 1) * c->nsamples;
	out->n_tokens = c->nsamples * c->seqlen;
	return 0;
}

static void driver_done(struct driver *d)
{
	free(d->tokens);
	free(d->x);
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
	for (uint32_t li = 0; r == 0 && li < m->cfg.n_layers; li++) {
		for (enum lin_group g = 0; r == 0 && g < LIN_GROUP_COUNT; g++)
			r = quantize_group(&d, li, g, need_h, e);
		if (r == 0 && need_h)
			r = pass(&d, li, LIN_GROUP_COUNT, NULL, NULL);
	}
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
