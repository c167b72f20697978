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
#include "engine/sa_format.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "kernels/gemm_bf16.h"
#include "reparam/internal.h"

int calib_dtype_parse(const char *s)
{
	if (s && !strcmp(s, "f32"))
		return CALIB_DTYPE_F32;
	if (s && !strcmp(s, "f16"))
		return CALIB_DTYPE_F16;
	return -EINVAL;
}

const char *calib_dtype_name(enum calib_dtype d)
{
	return d == CALIB_DTYPE_F32 ? "f32" : d == CALIB_DTYPE_F16 ? "f16" : "?";
}

int calib_math_parse(const char *s)
{
	if (s && !strcmp(s, "f32"))
		return CALIB_MATH_F32;
	if (s && !strcmp(s, "bf16"))
		return CALIB_MATH_BF16;
	return -EINVAL;
}

const char *calib_math_name(enum calib_math m)
{
	return m == CALIB_MATH_F32 ? "f32" : m == CALIB_MATH_BF16 ? "bf16" : "?";
}

int calib_windows(const struct model *m, const struct calib_opts *o, int32_t **ret_tokens,
		  struct errbuf *e)
{
	char *text = NULL;
	int32_t *ids = NULL, *out;
	size_t len, n_ids;
	uint64_t rng = o->seed;
	int32_t bos;
	int r;

	if (!m->tok)
		return errbuf_set(e, -EINVAL, "the model has no tokenizer");
	bos = tokenizer_add_bos(m->tok) ? tokenizer_bos(m->tok) : -1;
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
		int32_t *w = out + (uint64_t)s * o->seqlen;

		if (bos >= 0) {
			w[0] = bos;
			memcpy(w + 1, ids + off, (o->seqlen - 1) * sizeof(*out));
		} else {
			memcpy(w, ids + off, o->seqlen * sizeof(*out));
		}
	}
	free(ids);
	*ret_tokens = out;
	return 0;
}

int calib_hacc_init(struct calib_hacc *h, uint32_t width, bool bf16)
{
	memset(h, 0, sizeof(*h));
	h->width = width;
	h->bf16 = bf16;
	h->chunk = bf16 ? CALIB_HACC_CHUNK_BF16 : CALIB_HACC_CHUNK;
	h->H = calloc((uint64_t)width * width, sizeof(double));
	h->tmp = malloc((uint64_t)width * width * sizeof(float));
	return h->H && h->tmp ? 0 : -ENOMEM;
}

void calib_hacc_done(struct calib_hacc *h)
{
	free(h->H);
	free(h->tmp);
	h->H = NULL;
	h->tmp = NULL;
}

void calib_hacc_add(struct calib_hacc *h, const float *x, uint64_t n)
{
	uint32_t w = h->width;

	for (uint64_t r0 = 0; r0 < n; r0 += h->chunk) {
		uint32_t m = n - r0 < h->chunk ? (uint32_t)(n - r0) : h->chunk;

		if (!h->bf16 ||
		    gemm_bf16_tn(w, w, m, x + r0 * w, w, x + r0 * w, w, h->tmp, w, true) < 0)
			cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, w, m, 1.0f, x + r0 * w,
				    w, 0.0f, h->tmp, w);
		for (uint32_t i = 0; i < w; i++) {
			double *Hi = h->H + (uint64_t)i * w;
			const float *Ti = h->tmp + (uint64_t)i * w;

			for (uint32_t j = i; j < w; j++)
				Hi[j] += Ti[j];
		}
	}
	h->n_rows += n;
}

void calib_hacc_merge(struct calib_hacc *dst, const struct calib_hacc *src)
{
	uint32_t w = dst->width;

	for (uint32_t i = 0; i < w; i++)
		for (uint32_t j = i; j < w; j++)
			dst->H[(uint64_t)i * w + j] += src->H[(uint64_t)i * w + j];
	dst->n_rows += src->n_rows;
}

void calib_hacc_finish(struct calib_hacc *h)
{
	cblas_dscal((uint64_t)h->width * h->width, 2.0 / (double)h->n_rows, h->H, 1);
}

/*
 * Hessian partial sums: sample s is added to part s % CALIB_PARTS, in increasing s, and the
 * parts are summed in order at the end of a stage. The sums are then the same bits whatever
 * the number of workers (1 or CALIB_PARTS), so a conversion does not depend on -j.
 */
#define CALIB_PARTS 2

/*
 * One sample worker. The samples of a stage are independent, and on few cores running
 * CALIB_PARTS of them at once, each with single-threaded BLAS, beats running them one after
 * another with every core inside each BLAS call: OpenBLAS's threads synchronize (and spin)
 * around every call, and the attention and elementwise parts between the calls run on one
 * thread. Worker w takes the samples of parts w, w + n_workers, ...
 */
struct worker {
	uint32_t id;
	float *sx, *sa, *sc; /* f16 only: scratch windows (see struct driver) */
	float *sf;	     /* f16 with error propagation: the reference input's window */
	float *h;	     /* [T][dim] output projections */
	uint32_t *seq;	     /* [T]: this worker's sequence in the KV cache */
	struct errbuf e;
	int ret;
};

/* One model's held activations: the buffers of struct driver. */
enum {
	ACT_X,	 /* residual stream */
	ACT_ATT, /* attention outputs (input of o); then the FFN input */
	ACT_ACT, /* attention-norm output (input of q/k/v); then the activated FFN hidden */
	ACT_COUNT,
};

struct acts {
	void *b[ACT_COUNT];
};

/*
 * Per-block state. All calibration samples' activations of the current block are held:
 * x (residual stream), att (attention outputs, input of o) and act (activated FFN hidden,
 * input of down), each [nsamples][seqlen][width], as f32 or (calib dtype f16) as IEEE half.
 * With error propagation (calib_run.qep) the unquantized model's are held too (ref), for the
 * first S_ref samples: each stage runs first on them with the unquantized weights, then on
 * the quantized model's.
 * The engine calls take f32: with f16 storage each sample passes through a scratch window of
 * its worker, sx [seqlen][dim], sa [seqlen][max(q_dim, dim)] or sc [seqlen][max(ffn, q_dim,
 * dim)], widened before the call (win_load) and narrowed after it (win_store). With f32
 * storage a "window" is the held row itself and both steps are free.
 */
struct driver {
	struct model *m;
	const struct calib_run *o;
	struct calib_out *out;
	uint32_t S, T;	/* samples, tokens per sample */
	uint32_t S_ref; /* error propagation: the reference holds samples 0..S_ref-1 (else 0) */
	bool f16;
	bool bf16;	 /* calib_opts.math: the model's dense linears were switched to bf16 */
	struct acts q;	 /* the model quantized so far */
	struct acts ref; /* the unquantized model (error propagation only) */
	struct worker w[CALIB_PARTS];
	uint32_t n_workers;
	int blas_threads; /* BLAS threads of the caller, restored after each stage */
	struct calib_hacc part[CALIB_PARTS];
	struct calib_xacc xpart[CALIB_PARTS]; /* error propagation: D's partial sums */
	/*
	 * Error propagation on a subset (S_ref < S): the Hessian's partial sums of samples
	 * 0..S_ref-1, which the correction is solved with (D and H of the same samples: the
	 * least-squares target on those); part[] then holds the other samples' until the end of
	 * the stage, when fpart[0] is added in.
	 */
	struct calib_hacc fpart[CALIB_PARTS];
	double *qep_m; /* [k][k]: D H⁻¹ of the group being quantized */
	/* quantized linears whose weights are installed at the next stage (see next_stage()) */
	struct linear *pend[3];
	uint32_t n_pend;
	struct kv_cache kv;   /* one sequence per worker */
	uint32_t *pos;	      /* [T] */
	pthread_mutex_t lock; /* progress */
	uint64_t steps_done, steps_total;
	uint32_t n_done, n_total;
	uint32_t li; /* the block being calibrated (for messages) */
};

enum {
	STAGES_PER_LAYER = 5
};

/* Error propagation fitted on fewer samples than the Hessian's (see fpart). */
static bool fit_split(const struct driver *d)
{
	return d->S_ref && d->S_ref < d->S;
}

static void *row_of(const struct driver *d, void *base, uint32_t s, uint32_t width)
{
	return (char *)base + (uint64_t)s * d->T * width * (d->f16 ? 2 : 4);
}

/* Where an engine call writes sample @s of @buf: the held row, or @win until win_store(). */
static float *win_out(const struct driver *d, void *buf, uint32_t s, uint32_t width, float *win)
{
	return d->f16 ? win : row_of(d, buf, s, width);
}

/* Sample @s of @buf as f32: the held row itself, or widened into @win. */
static float *win_load(const struct driver *d, void *buf, uint32_t s, uint32_t width, float *win)
{
	if (!d->f16)
		return row_of(d, buf, s, width);
	half_to_f32(win, row_of(d, buf, s, width), (uint64_t)d->T * width, false);
	return win;
}

/* Commit @win (from win_out() or win_load()) to sample @s of @buf. */
static int win_store(const struct driver *d, void *buf, uint32_t s, uint32_t width,
		     const float *win, struct errbuf *e)
{
	if (!d->f16)
		return 0;
	if (!half_from_f32(row_of(d, buf, s, width), win, (uint64_t)d->T * width, false))
		return errbuf_set(e, -ERANGE,
				  "block %u: an activation of sample %u does not fit f16 (|x| > "
				  "65504 or NaN); use calibration dtype f32",
				  d->li, s);
	return 0;
}

/* One progress step; called from the sample workers too. */
static void step(struct driver *d)
{
	pthread_mutex_lock(&d->lock);
	d->steps_done++;
	if (d->o->progress)
		d->o->progress(d->o->progress_arg, d->steps_done, d->steps_total);
	pthread_mutex_unlock(&d->lock);
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
	const struct calib_run *o = j->d->o;
	float *w = linear_dense_weights(j->l), *target = NULL;
	struct reparam_opts q;
	double t0 = progress_now();

	snprintf(j->t->name, sizeof(j->t->name), "blk.%u.%s", j->li, j->name);
	j->t->layer = j->li;
	if (!w) {
		j->ret = errbuf_set(&j->e, -EOPNOTSUPP, "not a dense f32 layer");
		return NULL;
	}
	q = o->q;
	if (o->bits_of)
		q.bits = o->bits_of(o->hook_arg, j->t->name);
	if (j->d->qep_m) {
		/* the weights that best reproduce the unquantized output: what gets quantized */
		target = malloc((uint64_t)j->l->n_out * j->l->n_in * sizeof(float));
		if (!target || qep_apply(w, j->l->n_out, j->l->n_in, j->d->qep_m, o->qep, target)) {
			j->ret = -ENOMEM;
			goto out;
		}
		w = target;
	}
	if (o->on_hessian)
		o->on_hessian(o->hook_arg, j->t->name, w, j->l->n_out, j->l->n_in, j->H);
	j->ret = reparam_quantize(&q, w, j->l->n_out, j->l->n_in, j->H, &j->t->res, &j->e);
out:
	free(target);
	j->t->seconds = progress_now() - t0;
	return NULL;
}

/*
 * Replace the weights of the linears quantized last (d->pend) by their dequantized results.
 * Until then the model computes with the unquantized ones: the reference stream's pass of
 * the next stage needs them.
 */
static void install_pending(struct driver *d)
{
	for (uint32_t i = 0; i < d->n_pend; i++) {
		struct linear *l = d->pend[i];
		struct calib_tensor *t = &d->out->t[d->out->n];

		d->out->n++;
		memcpy(linear_dense_weights(l), t->res.dense,
		       (uint64_t)l->n_out * l->n_in * sizeof(float));
		if (t->res.has_qweight) {
			/* the planes are what gets written; the dense copy lives on in the model */
			free(t->res.dense);
			t->res.dense = NULL;
		}
		d->n_done++;
		if (d->o->on_layer)
			d->o->on_layer(d->o->on_layer_arg, t, d->n_done, d->n_total);
	}
	d->n_pend = 0;
}

/*
 * Quantize the @n linears that share Hessian @H, in parallel (they are independent); their
 * weights are replaced by the dequantized results at install_pending().
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
	if (r < 0) {
		/* the finished ones are freed by calib_out_done() */
		for (uint32_t i = 0; i < n; i++)
			if (jobs[i].ret == 0)
				reparam_result_done(&jobs[i].t->res);
		return r;
	}
	for (uint32_t i = 0; i < n; i++)
		d->pend[i] = lins[i];
	d->n_pend = n;
	return 0;
}

/* x[T][dim] += the output projection @l of in[T][n_in], post-normed by @post (through w->h). */
static void add_proj(struct driver *d, struct worker *w, struct linear *l,
		     void (*post)(const struct model *, uint32_t, float *, uint32_t),
		     const float *in, float *x)
{
	linear_forward(l, in, w->h, d->T);
	post(d->m, d->li, w->h, d->T);
	for (uint64_t i = 0; i < (uint64_t)d->T * d->m->cfg.dim; i++)
		x[i] += w->h[i];
}

/*
 * The stages of one block, each a pass over the samples: the forward step with the weights
 * quantized so far, then (first four) the Hessian of the next group's input.
 */
enum stage {
	STAGE_ATTN_NORM, /* act = attn_norm(x); H of q/k/v */
	STAGE_ATTN,	 /* att = attention(act); H of o */
	STAGE_FFN_NORM,	 /* x += o(att); att = ffn_norm(x); H of gate/up */
	STAGE_FFN,	 /* act = ffn(att); H of down */
	STAGE_DOWN,	 /* x += down(act) */
};

struct stage_job {
	struct driver *d;
	struct worker *w;
	enum stage st;
	const struct acts *a; /* d->q, or d->ref for the reference pass */
	bool reverse;	      /* samples from the last down (see calibrate_layer) */
};

/*
 * Sample @s of stage @st on worker @w over the activations @a. On the quantized model's
 * (d->q) the Hessian input is added to part s % CALIB_PARTS, and with error propagation its
 * difference from the reference's to D's.
 */
static int stage_sample(struct driver *d, struct worker *w, enum stage st, const struct acts *a,
			uint32_t s)
{
	struct model *m = d->m;
	struct model_layer *l = &m->layers[d->li];
	uint32_t dim = m->cfg.dim, q_dim = m->cfg.n_heads * m->cfg.head_dim, ffn = m->cfg.ffn_dim;
	void *x = a->b[ACT_X], *att = a->b[ACT_ATT], *act = a->b[ACT_ACT];
	struct errbuf *e = &w->e;
	int hb = -1;
	float *hwin = NULL, *xs, *out, *hx;
	uint32_t hw = 0;
	int r = 0;

	switch (st) {
	case STAGE_ATTN_NORM:
		out = win_out(d, act, s, dim, w->sc);
		model_attn_norm(m, d->li, win_load(d, x, s, dim, w->sx), d->T, out);
		r = win_store(d, act, s, dim, out, e);
		hb = ACT_ACT, hw = dim, hwin = w->sc;
		break;
	case STAGE_ATTN:
		out = win_out(d, att, s, q_dim, w->sa);
		r = model_attn_core(m, &d->kv, d->li, w->seq, d->pos, d->T,
				    win_load(d, act, s, dim, w->sc), out);
		if (r == 0)
			r = win_store(d, att, s, q_dim, out, e);
		hb = ACT_ATT, hw = q_dim, hwin = w->sa;
		break;
	case STAGE_FFN_NORM:
		xs = win_load(d, x, s, dim, w->sx);
		add_proj(d, w, &l->wo, model_attn_out, win_load(d, att, s, q_dim, w->sa), xs);
		r = win_store(d, x, s, dim, xs, e);
		/* the FFN input goes where att was: att is not needed any more */
		out = win_out(d, att, s, dim, w->sa);
		model_ffn_norm(m, d->li, xs, d->T, out);
		if (r == 0)
			r = win_store(d, att, s, dim, out, e);
		hb = ACT_ATT, hw = dim, hwin = w->sa;
		break;
	case STAGE_FFN:
		out = win_out(d, act, s, ffn, w->sc);
		r = model_ffn_core(m, d->li, d->T, win_load(d, att, s, dim, w->sa), out);
		if (r == 0)
			r = win_store(d, act, s, ffn, out, e);
		hb = ACT_ACT, hw = ffn, hwin = w->sc;
		break;
	case STAGE_DOWN:
		xs = win_load(d, x, s, dim, w->sx);
		add_proj(d, w, &l->w_down, model_ffn_out, win_load(d, act, s, ffn, w->sc), xs);
		r = win_store(d, x, s, dim, xs, e);
		break;
	}
	if (r < 0 || hb < 0 || a != &d->q)
		return r;
	/* with f16 storage H is of the stored (rounded) values: reload them */
	hx = win_load(d, a->b[hb], s, hw, hwin);
	calib_hacc_add(fit_split(d) && s < d->S_ref ? &d->fpart[s % CALIB_PARTS]
						    : &d->part[s % CALIB_PARTS],
		       hx, d->T);
	if (d->ref.b[hb] && s < d->S_ref)
		calib_xacc_add(&d->xpart[s % CALIB_PARTS], win_load(d, d->ref.b[hb], s, hw, w->sf),
			       hx, d->T);
	return r;
}

static void *stage_main(void *arg)
{
	struct stage_job *j = arg;
	struct driver *d = j->d;
	uint32_t n = j->a == &d->ref ? d->S_ref : d->S;

	for (uint32_t i = 0; j->w->ret == 0 && i < n; i++) {
		uint32_t s = j->reverse ? n - 1 - i : i;

		if (s % CALIB_PARTS % j->d->n_workers != j->w->id)
			continue;
		j->w->ret = stage_sample(d, j->w, j->st, j->a, s);
		step(d);
	}
	return NULL;
}

/* Fresh Hessian (and, with error propagation, D) accumulators of @width. */
static int parts_init(struct driver *d, uint32_t width)
{
	for (uint32_t p = 0; p < CALIB_PARTS; p++) {
		int r;

		calib_hacc_done(&d->part[p]);
		calib_hacc_done(&d->fpart[p]);
		calib_xacc_done(&d->xpart[p]);
		r = calib_hacc_init(&d->part[p], width, d->bf16);
		if (r == 0 && d->ref.b[ACT_X])
			r = calib_xacc_init(&d->xpart[p], width, d->bf16);
		if (r == 0 && fit_split(d))
			r = calib_hacc_init(&d->fpart[p], width, d->bf16);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * Run stage @st over all samples of @a on @nw workers (1 or d->n_workers); for Hessian
 * stages of d->q, the sum of the parts is left in d->part[0] (and d->xpart[0]), of width
 * @width (0 for none).
 */
static int run_stage(struct driver *d, enum stage st, const struct acts *a, uint32_t nw,
		     bool reverse, uint32_t width, struct errbuf *e)
{
	struct stage_job jobs[CALIB_PARTS];
	pthread_t tid[CALIB_PARTS];
	bool started[CALIB_PARTS] = { false };
	uint32_t saved = d->n_workers;
	int r = 0;

	if (a != &d->q)
		width = 0;
	if (width) {
		r = parts_init(d, width);
		if (r < 0)
			return r;
	}
	d->n_workers = nw;
	if (nw > 1)
		openblas_set_num_threads(d->blas_threads / (int)nw > 1 ? d->blas_threads / (int)nw
								       : 1);
	for (uint32_t i = 0; i < nw; i++) {
		d->w[i].ret = 0;
		jobs[i] = (struct stage_job){
			.d = d, .w = &d->w[i], .st = st, .a = a, .reverse = reverse
		};
		started[i] = i > 0 && pthread_create(&tid[i], NULL, stage_main, &jobs[i]) == 0;
	}
	/* a worker whose thread did not start runs here, after worker 0 */
	stage_main(&jobs[0]);
	for (uint32_t i = 1; i < nw; i++) {
		if (started[i])
			pthread_join(tid[i], NULL);
		else
			stage_main(&jobs[i]);
	}
	if (nw > 1)
		openblas_set_num_threads(d->blas_threads);
	d->n_workers = saved;
	for (uint32_t i = 0; i < nw && r == 0; i++) {
		if (d->w[i].ret < 0)
			r = errbuf_set(e, d->w[i].ret, "%s", errbuf_str(&d->w[i].e, d->w[i].ret));
	}
	for (uint32_t p = 1; r == 0 && width && p < CALIB_PARTS; p++) {
		calib_hacc_merge(&d->part[0], &d->part[p]);
		if (d->ref.b[ACT_X])
			calib_xacc_merge(&d->xpart[0], &d->xpart[p]);
		if (fit_split(d))
			calib_hacc_merge(&d->fpart[0], &d->fpart[p]);
	}
	if (r == 0 && width && fit_split(d))
		calib_hacc_merge(&d->part[0], &d->fpart[0]);
	return r;
}

/*
 * Stage @st on both models: the reference first (it still has the unquantized weights of
 * the linears quantized last), then those are installed and the quantized model's pass
 * measures the next group's input.
 */
static int next_stage(struct driver *d, enum stage st, uint32_t nw, bool reverse, uint32_t width,
		      struct errbuf *e)
{
	int r = 0;

	if (d->ref.b[ACT_X])
		r = run_stage(d, st, &d->ref, nw, reverse, 0, e);
	install_pending(d);
	return r < 0 ? r : run_stage(d, st, &d->q, nw, reverse, width, e);
}

/*
 * Quantize @lins with the Hessian left in d->part[0] by run_stage(), with error propagation
 * toward the reference's output from d->xpart[0].
 */
static int quantize_with(struct driver *d, uint32_t li, struct linear **lins, const char **names,
			 uint32_t n, struct errbuf *e)
{
	uint32_t k = d->part[0].width;
	int r;

	calib_hacc_finish(&d->part[0]);
	if (d->ref.b[ACT_X]) {
		const struct calib_hacc *fit = fit_split(d) ? &d->fpart[0] : &d->part[0];
		struct errbuf le;

		if (fit_split(d))
			calib_hacc_finish(&d->fpart[0]);
		calib_xacc_finish(&d->xpart[0]);
		free(d->qep_m);
		d->qep_m = malloc((size_t)k * k * sizeof(double));
		if (!d->qep_m)
			return -ENOMEM;
		r = qep_solve(fit->H, d->xpart[0].D, k, d->o->q.percdamp, d->qep_m, &le);
		if (r < 0)
			return errbuf_set(e, r, "blk.%u.%s: %s", li, names[0], errbuf_str(&le, r));
	}
	r = quantize_linears(d, li, lins, names, n, d->part[0].H, e);
	free(d->qep_m);
	d->qep_m = NULL;
	return r;
}

/* One block, true-sequentially: q/k/v, o, gate/up, down, then the block's outputs. */
static int calibrate_layer(struct driver *d, uint32_t li, struct errbuf *e)
{
	struct model *m = d->m;
	struct model_layer *l = &m->layers[li];
	uint32_t dim = m->cfg.dim, q_dim = m->cfg.n_heads * m->cfg.head_dim, ffn = m->cfg.ffn_dim;
	uint32_t nw = d->n_workers;
	bool opt = m->cfg.arch == ARCH_OPT;
	struct linear *qkv[3] = { &l->wq, &l->wk, &l->wv }, *o[1] = { &l->wo };
	struct linear *gu[2] = { opt ? &l->w_up : &l->w_gate, &l->w_up }, *dn[1] = { &l->w_down };
	const char *qkv_n[3] = { "attn_q", "attn_k", "attn_v" }, *o_n[1] = { "attn_output" };
	const char *gu_n[2] = { opt ? "ffn_up" : "ffn_gate", "ffn_up" }, *dn_n[1] = { "ffn_down" };
	int r;

	d->li = li;
	/* q/k/v see the attention norm of x; keep it in act (free until the FFN stage) */
	r = next_stage(d, STAGE_ATTN_NORM, nw, false, dim, e);
	if (r == 0)
		r = quantize_with(d, li, qkv, qkv_n, 3, e);
	if (r == 0)
		r = next_stage(d, STAGE_ATTN, nw, false, q_dim, e);
	if (r == 0)
		r = quantize_with(d, li, o, o_n, 1, e);
	/*
	 * att changes width here (q_dim -> dim) in place: then one worker goes through the
	 * samples, from the last down when it grows, so that none is overwritten before it is
	 * read.
	 */
	if (r == 0)
		r = next_stage(d, STAGE_FFN_NORM, q_dim == dim ? nw : 1, q_dim < dim, dim, e);
	if (r == 0)
		r = quantize_with(d, li, gu, gu_n, opt ? 1 : 2, e);
	if (r == 0)
		r = next_stage(d, STAGE_FFN, nw, false, ffn, e);
	if (r == 0)
		r = quantize_with(d, li, dn, dn_n, 1, e);
	if (r == 0)
		r = next_stage(d, STAGE_DOWN, nw, false, 0, e);
	return r;
}

/*
 * The LM head (calib_run.head_bits), after the last block: its input is the final norm of the
 * quantized model's residual stream, whose Hessian it is quantized against. The model then
 * computes with the dequantized head, a dense layer of its own (a tied embedding keeps its
 * weights for the lookups).
 */
static int calibrate_head(struct driver *d, struct errbuf *e)
{
	struct model *m = d->m;
	uint32_t dim = m->cfg.dim, V = m->cfg.n_vocab;
	struct calib_tensor *t = &d->out->t[d->out->n];
	struct reparam_opts q = d->o->q;
	struct worker *w = &d->w[0];
	struct calib_hacc h = { 0 };
	struct errbuf le;
	double t0 = progress_now();
	float *W;
	int r;

	W = malloc((uint64_t)V * dim * sizeof(float));
	r = W ? calib_hacc_init(&h, dim, d->bf16) : -ENOMEM;
	if (r < 0)
		goto out;
	r = linear_weights_f32(&m->lm_head, W);
	if (r < 0) {
		r = errbuf_set(e, r, "output: the LM head's backend (%s) gives no weights",
			       m->lm_head.ops->name);
		goto out;
	}
	for (uint32_t s = 0; s < d->S; s++) {
		model_final_norm(m, win_load(d, d->q.b[ACT_X], s, dim, w->sx), d->T, w->h);
		calib_hacc_add(&h, w->h, d->T);
		step(d);
	}
	calib_hacc_finish(&h);
	/* the held activations are done with: their memory goes to the head's quantization */
	for (uint32_t k = 0; k < ACT_COUNT; k++) {
		free(d->q.b[k]);
		free(d->ref.b[k]);
		d->q.b[k] = d->ref.b[k] = NULL;
	}
	snprintf(t->name, sizeof(t->name), SA_HEAD_BASE);
	t->layer = m->cfg.n_layers;
	q.bits = d->o->head_bits;
	r = reparam_quantize(&q, W, V, dim, h.H, &t->res, &le);
	if (r < 0) {
		r = errbuf_set(e, r, "output: %s", errbuf_str(&le, r));
		goto out;
	}
	t->seconds = progress_now() - t0;
	d->out->n++;
	if (!t->res.has_qweight) {
		r = errbuf_set(e, -EINVAL, "output: %s gives no shift-add weight for the head",
			       reparam_method_name(q.method));
		goto out;
	}
	linear_done(&m->lm_head);
	r = linear_init_dense(&m->lm_head, t->res.dense, V, dim, 1);
	if (r < 0)
		goto out;
	t->res.dense = NULL; /* the model owns it now */
	d->n_done++;
	if (d->o->on_layer)
		d->o->on_layer(d->o->on_layer_arg, t, d->n_done, d->n_total);
out:
	calib_hacc_done(&h);
	free(W);
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
			install_pending(d);
			step(d);
		}
	}
	return 0;
}

/*
 * Every dense linear of the blocks to bf16 products (calib_opts.math) or, with !@on, back to
 * f32. Returns 0 or linear_dense_set_bf16()'s error.
 */
static int set_math(struct model *m, bool on)
{
	for (uint32_t li = 0; li < m->cfg.n_layers; li++) {
		struct model_layer *l = &m->layers[li];
		struct linear *lins[7] = { &l->wq,     &l->wk,	 &l->wv,    &l->wo,
					   &l->w_gate, &l->w_up, &l->w_down };

		for (uint32_t i = 0; i < 7; i++) {
			int r;

			if (!linear_dense_weights(lins[i]))
				continue; /* absent (OPT's gate) */
			r = linear_dense_set_bf16(lins[i], on);
			if (r < 0 && on)
				return r;
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
	/* widths of att and act: each also holds a dim-wide stage (see calibrate_layer) */
	uint32_t wa = q_dim > dim ? q_dim : dim, wc = wide > dim ? wide : dim;
	uint64_t n_tok;
	size_t es;
	int32_t *tokens = NULL;
	int r;

	memset(d, 0, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	d->m = m;
	d->o = o;
	d->out = out;
	d->n_total = m->cfg.n_layers * (m->cfg.arch == ARCH_OPT ? 6 : 7) + (o->head_bits ? 1 : 0);
	out->t = calloc(d->n_total, sizeof(*out->t));
	if (!out->t)
		return -ENOMEM;
	if (!need_h) {
		if (o->head_bits)
			return errbuf_set(e, -EINVAL,
					  "quantizing the LM head needs a method with "
					  "a Hessian");
		d->steps_total = d->n_total;
		return 0;
	}
	if ((unsigned)c->dtype >= CALIB_DTYPE_COUNT)
		return errbuf_set(e, -EINVAL, "unknown calibration dtype %d", (int)c->dtype);
	if ((unsigned)c->math >= CALIB_MATH_COUNT)
		return errbuf_set(e, -EINVAL, "unknown calibration math %d", (int)c->math);
	if (c->math == CALIB_MATH_BF16) {
		r = set_math(m, true);
		if (r < 0)
			set_math(m, false);
		if (r < 0)
			return errbuf_set(e, r,
					  r == -EOPNOTSUPP
						  ? "bf16 calibration math needs AVX512_BF16, "
						    "which this CPU lacks; use f32"
						  : "bf16 calibration math needs dense linears "
						    "without a task runner");
		d->bf16 = true;
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
	d->f16 = c->dtype == CALIB_DTYPE_F16;
	n_tok = (uint64_t)d->S * d->T;
	es = d->f16 ? sizeof(uint16_t) : sizeof(float);
	d->pos = malloc(d->T * sizeof(*d->pos));
	r = -ENOMEM;
	if (!d->pos)
		goto out;
	if (o->qep > 0)
		d->S_ref = calib_qep_fit_samples(o);
	for (uint32_t k = 0; k < (o->qep > 0 ? 2 : 1); k++) {
		struct acts *a = k ? &d->ref : &d->q;
		uint64_t n = k ? (uint64_t)d->S_ref * d->T : n_tok;

		a->b[ACT_X] = malloc(n * dim * es);
		a->b[ACT_ATT] = malloc(n * wa * es);
		a->b[ACT_ACT] = malloc(n * wc * es);
		if (!a->b[ACT_X] || !a->b[ACT_ATT] || !a->b[ACT_ACT])
			goto out;
	}
	/*
	 * Sample workers only where the forward's threads are BLAS's own: a model with a pool
	 * or runner sends its products there, and that cannot take two callers at once.
	 */
	d->blas_threads = openblas_get_num_threads();
	d->n_workers = d->blas_threads >= 2 && d->S >= 2 && !m->opts.pool && !m->opts.runner.run
			       ? CALIB_PARTS
			       : 1;
	for (uint32_t i = 0; i < d->n_workers; i++) {
		struct worker *w = &d->w[i];

		w->id = i;
		w->h = malloc((uint64_t)d->T * dim * sizeof(float));
		w->seq = malloc(d->T * sizeof(*w->seq));
		if (!w->h || !w->seq)
			goto out;
		for (uint32_t t = 0; t < d->T; t++)
			w->seq[t] = i;
		if (d->f16) {
			w->sx = malloc((uint64_t)d->T * dim * sizeof(float));
			w->sa = malloc((uint64_t)d->T * wa * sizeof(float));
			w->sc = malloc((uint64_t)d->T * wc * sizeof(float));
			if (o->qep > 0)
				w->sf = malloc((uint64_t)d->T * wc * sizeof(float));
			if (!w->sx || !w->sa || !w->sc || (o->qep > 0 && !w->sf))
				goto out;
		}
	}
	for (uint32_t i = 0; i < d->T; i++)
		d->pos[i] = i;
	r = kv_cache_init(&d->kv, m, d->n_workers, d->T);
	for (uint32_t s = 0; r == 0 && s < d->S; s++) {
		float *xs = win_out(d, d->q.b[ACT_X], s, dim, d->w[0].sx);

		r = model_embed(m, tokens + (uint64_t)s * d->T, d->pos, d->T, xs);
		if (r == 0)
			r = win_store(d, d->q.b[ACT_X], s, dim, xs, e);
	}
	if (d->ref.b[ACT_X])
		memcpy(d->ref.b[ACT_X], d->q.b[ACT_X], (uint64_t)d->S_ref * d->T * dim * es);
	d->steps_total = (uint64_t)m->cfg.n_layers * STAGES_PER_LAYER * (d->S + d->S_ref) +
			 (o->head_bits ? d->S : 0);
	out->n_tokens = (uint32_t)n_tok;
out:
	free(tokens);
	return r;
}

static void driver_done(struct driver *d)
{
	if (d->bf16)
		set_math(d->m, false);
	for (uint32_t k = 0; k < ACT_COUNT; k++) {
		free(d->q.b[k]);
		free(d->ref.b[k]);
	}
	free(d->qep_m);
	for (uint32_t i = 0; i < CALIB_PARTS; i++) {
		free(d->w[i].sx);
		free(d->w[i].sa);
		free(d->w[i].sc);
		free(d->w[i].sf);
		calib_xacc_done(&d->xpart[i]);
		free(d->w[i].h);
		free(d->w[i].seq);
		calib_hacc_done(&d->part[i]);
		calib_hacc_done(&d->fpart[i]);
	}
	free(d->pos);
	kv_cache_done(&d->kv);
	pthread_mutex_destroy(&d->lock);
}

/* Input width of @m's widest linear: what the error-propagation fit is k x k of. */
static uint64_t widest_input(const struct model *m)
{
	const struct model_config *c = &m->cfg;
	uint64_t k = c->dim, q_dim = (uint64_t)c->n_heads * c->head_dim;

	if (q_dim > k)
		k = q_dim;
	return c->ffn_dim > k ? c->ffn_dim : k;
}

uint32_t calib_qep_fit_samples(const struct calib_run *o)
{
	uint32_t n = o->qep_samples, ns = o->calib.nsamples;

	return n && n < ns ? n : ns;
}

uint32_t calib_default_qep_samples(const struct model *m, const struct calib_run *o)
{
	uint64_t want = CALIB_QEP_MIN_TOKENS_PER_DIM * widest_input(m), T = o->calib.seqlen;
	uint64_t n;

	if (want < CALIB_QEP_FIT_TOKENS)
		want = CALIB_QEP_FIT_TOKENS;
	n = T ? (want + T - 1) / T : 0;
	return n < o->calib.nsamples ? (uint32_t)n : 0;
}

double calib_default_qep(const struct model *m, const struct calib_run *o)
{
	if ((uint64_t)o->calib.nsamples * o->calib.seqlen <
	    CALIB_QEP_MIN_TOKENS_PER_DIM * widest_input(m))
		return 0;
	return reparam_default_qep(o->q.method);
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
	if (r == 0 && need_h && o->head_bits)
		r = calibrate_head(&d, e);
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
