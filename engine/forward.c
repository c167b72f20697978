// SPDX-License-Identifier: MIT
/*
 * The forward pass, in the model's reading order: embed, then per layer norm, q/k/v, RoPE,
 * attention, output projection, residual, norm, feed-forward, residual; final norm.
 * Tokens of several sequences may share one step (continuous batching): the linear layers see
 * all tokens at once, attention runs per run of consecutive tokens of one sequence.
 */
#include "engine/model.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int kv_cache_init(struct kv_cache *kv, const struct model *m, uint32_t n_seq, uint32_t n_ctx)
{
	uint64_t n;

	memset(kv, 0, sizeof(*kv));
	if (!n_seq || !n_ctx)
		return -EINVAL;
	kv->n_seq = n_seq;
	kv->n_ctx = n_ctx;
	kv->n_layers = m->cfg.n_layers;
	kv->kv_dim = m->cfg.n_kv_heads * m->cfg.head_dim;
	if (__builtin_mul_overflow((uint64_t)n_seq * kv->n_layers, (uint64_t)n_ctx * kv->kv_dim,
				   &n))
		return -EOVERFLOW;
	kv->k = malloc(n * sizeof(float));
	kv->v = malloc(n * sizeof(float));
	if (!kv->k || !kv->v) {
		kv_cache_done(kv);
		return -ENOMEM;
	}
	return 0;
}

void kv_cache_done(struct kv_cache *kv)
{
	free(kv->k);
	free(kv->v);
	kv->k = kv->v = NULL;
}

/* [n_ctx][kv_dim] block of layer @l for sequence @s */
static float *kv_at(const struct kv_cache *kv, float *base, uint32_t s, uint32_t l)
{
	return base + ((uint64_t)s * kv->n_layers + l) * kv->n_ctx * kv->kv_dim;
}

static void rms_norm(float *out, const float *x, const float *w, uint32_t dim, float eps)
{
	float ss = 0;

	for (uint32_t i = 0; i < dim; i++)
		ss += x[i] * x[i];
	ss = 1.0f / sqrtf(ss / dim + eps);
	for (uint32_t i = 0; i < dim; i++)
		out[i] = w[i] * (x[i] * ss);
}

static void layer_norm(float *out, const float *x, const float *w, const float *b, uint32_t dim,
		       float eps)
{
	float mean = 0, var = 0, inv;

	for (uint32_t i = 0; i < dim; i++)
		mean += x[i];
	mean /= dim;
	for (uint32_t i = 0; i < dim; i++)
		var += (x[i] - mean) * (x[i] - mean);
	inv = 1.0f / sqrtf(var / dim + eps);
	for (uint32_t i = 0; i < dim; i++)
		out[i] = (x[i] - mean) * inv * w[i] + b[i];
}

static void norm_rows(const struct model *m, float *out, const float *x, const float *w,
		      const float *b, uint32_t n)
{
	uint32_t dim = m->cfg.dim;

	for (uint32_t t = 0; t < n; t++) {
		if (b)
			layer_norm(out + (uint64_t)t * dim, x + (uint64_t)t * dim, w, b, dim,
				   m->cfg.norm_eps);
		else
			rms_norm(out + (uint64_t)t * dim, x + (uint64_t)t * dim, w, dim,
				 m->cfg.norm_eps);
	}
}

/* Rotate the heads of one token's q or k vector at position @pos. */
static void rope(const struct model *m, float *v, uint32_t n_heads, uint32_t pos)
{
	uint32_t hd = m->cfg.head_dim, half = hd / 2;

	for (uint32_t i = 0; i < half; i++) {
		float ang = (float)pos * m->rope_freq[i];
		float c = cosf(ang), s = sinf(ang);

		for (uint32_t h = 0; h < n_heads; h++) {
			float *p = v + h * hd;
			uint32_t a = m->rope_pairing == ROPE_PAIR_HALF ? i : 2 * i;
			uint32_t b = m->rope_pairing == ROPE_PAIR_HALF ? i + half : 2 * i + 1;
			float x0 = p[a], x1 = p[b];

			p[a] = x0 * c - x1 * s;
			p[b] = x1 * c + x0 * s;
		}
	}
}

static void softmax_row(float *x, uint32_t n)
{
	float mx = x[0], sum = 0;

	for (uint32_t i = 1; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	for (uint32_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - mx);
		sum += x[i];
	}
	for (uint32_t i = 0; i < n; i++)
		x[i] /= sum;
}

/*
 * Causal attention for @len consecutive tokens of sequence @s at positions p0.., whose k/v
 * are already in the cache. q and out are [len][q_dim]; scores is scratch [len][p0 + len].
 */
static void attend_run(const struct model *m, const struct kv_cache *kv, uint32_t layer, uint32_t s,
		       uint32_t p0, uint32_t len, const float *q, float *out, float *scores)
{
	const struct model_config *c = &m->cfg;
	uint32_t hd = c->head_dim, q_dim = c->n_heads * hd, kvd = kv->kv_dim;
	uint32_t n_keys = p0 + len, group = c->n_heads / c->n_kv_heads;
	const float *kc = kv_at(kv, kv->k, s, layer), *vc = kv_at(kv, kv->v, s, layer);
	float scale = 1.0f / sqrtf((float)hd);

	for (uint32_t h = 0; h < c->n_heads; h++) {
		uint32_t g = h / group;

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, n_keys, hd, scale,
			    q + h * hd, q_dim, kc + g * hd, kvd, 0.0f, scores, n_keys);
		for (uint32_t r = 0; r < len; r++) {
			float *row = scores + (uint64_t)r * n_keys;
			uint32_t visible = p0 + r + 1;

			softmax_row(row, visible);
			memset(row + visible, 0, (n_keys - visible) * sizeof(float));
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, len, hd, n_keys, 1.0f,
			    scores, n_keys, vc + g * hd, kvd, 0.0f, out + h * hd, q_dim);
	}
}

struct scratch {
	float *x, *h, *q, *k, *v, *att, *ff1, *ff2, *scores;
	uint64_t scores_len;
};

static void scratch_free(struct scratch *s)
{
	free(s->x);
	free(s->h);
	free(s->q);
	free(s->k);
	free(s->v);
	free(s->att);
	free(s->ff1);
	free(s->ff2);
	free(s->scores);
}

static int scratch_alloc(struct scratch *s, const struct model *m, uint32_t n, uint64_t scores)
{
	const struct model_config *c = &m->cfg;
	uint64_t q_dim = (uint64_t)c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;

	memset(s, 0, sizeof(*s));
	s->x = malloc(n * c->dim * sizeof(float));
	s->h = malloc(n * c->dim * sizeof(float));
	s->q = malloc(n * q_dim * sizeof(float));
	s->k = malloc(n * kv_dim * sizeof(float));
	s->v = malloc(n * kv_dim * sizeof(float));
	s->att = malloc(n * q_dim * sizeof(float));
	s->ff1 = malloc((uint64_t)n * c->ffn_dim * sizeof(float));
	s->ff2 = malloc((uint64_t)n * c->ffn_dim * sizeof(float));
	s->scores = malloc(scores * sizeof(float));
	if (!s->x || !s->h || !s->q || !s->k || !s->v || !s->att || !s->ff1 || !s->ff2 ||
	    !s->scores) {
		scratch_free(s);
		return -ENOMEM;
	}
	return 0;
}

static bool pre_ln(const struct model *m)
{
	return m->cfg.arch != ARCH_OPT || m->cfg.opt_pre_ln;
}

int model_embed(const struct model *m, const int32_t *tokens, const uint32_t *pos, uint32_t n,
		float *x)
{
	uint32_t dim = m->cfg.dim;

	for (uint32_t t = 0; t < n; t++) {
		float *row = x + (uint64_t)t * dim;

		if (tokens[t] < 0 || (uint32_t)tokens[t] >= m->cfg.n_vocab)
			return -EINVAL;
		memcpy(row, m->tok_embd + (uint64_t)tokens[t] * dim, dim * sizeof(float));
		if (m->pos_embd) {
			/* OPT's learned positions start at offset 2 */
			const float *pe;

			if (pos[t] >= m->cfg.max_ctx)
				return -EINVAL;
			pe = m->pos_embd + (uint64_t)(pos[t] + 2) * dim;
			for (uint32_t i = 0; i < dim; i++)
				row[i] += pe[i];
		}
	}
	return 0;
}

static void add_rows(float *x, const float *y, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		x[i] += y[i];
}

static bool tap_stop(linear_tap_fn tap, void *arg, uint32_t li, enum lin_group g,
		     enum lin_group stop_at, const float *x, uint32_t n, uint32_t width)
{
	if (tap)
		tap(arg, li, g, x, n, width);
	return g == stop_at;
}

/* Attention sub-block: s->h holds the normed input; leaves the output projection in s->h. */
static bool attention_block(const struct model *m, struct kv_cache *kv, uint32_t li,
			    const uint32_t *seq, const uint32_t *pos, uint32_t n, struct scratch *s,
			    enum lin_group stop_at, linear_tap_fn tap, void *arg)
{
	const struct model_config *c = &m->cfg;
	const struct model_layer *l = &m->layers[li];
	uint32_t q_dim = c->n_heads * c->head_dim, kvd = kv->kv_dim;

	if (tap_stop(tap, arg, li, LIN_QKV, stop_at, s->h, n, c->dim))
		return true;
	linear_forward(&l->wq, s->h, s->q, n);
	linear_forward(&l->wk, s->h, s->k, n);
	linear_forward(&l->wv, s->h, s->v, n);
	for (uint32_t t = 0; t < n; t++) {
		if (c->arch == ARCH_LLAMA) {
			rope(m, s->q + (uint64_t)t * q_dim, c->n_heads, pos[t]);
			rope(m, s->k + (uint64_t)t * kvd, c->n_kv_heads, pos[t]);
		}
		memcpy(kv_at(kv, kv->k, seq[t], li) + (uint64_t)pos[t] * kvd,
		       s->k + (uint64_t)t * kvd, kvd * sizeof(float));
		memcpy(kv_at(kv, kv->v, seq[t], li) + (uint64_t)pos[t] * kvd,
		       s->v + (uint64_t)t * kvd, kvd * sizeof(float));
	}
	for (uint32_t t0 = 0, t1; t0 < n; t0 = t1) {
		for (t1 = t0 + 1; t1 < n && seq[t1] == seq[t0] && pos[t1] == pos[t1 - 1] + 1; t1++)
			;
		attend_run(m, kv, li, seq[t0], pos[t0], t1 - t0, s->q + (uint64_t)t0 * q_dim,
			   s->att + (uint64_t)t0 * q_dim, s->scores);
	}
	if (tap_stop(tap, arg, li, LIN_O, stop_at, s->att, n, q_dim))
		return true;
	linear_forward(&l->wo, s->att, s->h, n);
	return false;
}

/* Feed-forward sub-block: s->h holds the normed input and receives the output. */
static bool ffn_block(const struct model *m, uint32_t li, uint32_t n, struct scratch *s,
		      enum lin_group stop_at, linear_tap_fn tap, void *arg)
{
	const struct model_layer *l = &m->layers[li];
	uint64_t nf = (uint64_t)n * m->cfg.ffn_dim;

	if (tap_stop(tap, arg, li, LIN_GATE_UP, stop_at, s->h, n, m->cfg.dim))
		return true;
	if (m->cfg.arch == ARCH_OPT) {
		linear_forward(&l->w_up, s->h, s->ff1, n);
		for (uint64_t i = 0; i < nf; i++)
			s->ff1[i] = s->ff1[i] > 0 ? s->ff1[i] : 0;
	} else {
		linear_forward(&l->w_gate, s->h, s->ff1, n);
		linear_forward(&l->w_up, s->h, s->ff2, n);
		for (uint64_t i = 0; i < nf; i++) {
			float g = s->ff1[i];

			s->ff1[i] = g / (1.0f + expf(-g)) * s->ff2[i];
		}
	}
	if (tap_stop(tap, arg, li, LIN_DOWN, stop_at, s->ff1, n, m->cfg.ffn_dim))
		return true;
	linear_forward(&l->w_down, s->ff1, s->h, n);
	return false;
}

static int check_batch(const struct kv_cache *kv, const uint32_t *seq, const uint32_t *pos,
		       uint32_t n, uint64_t *ret_scores)
{
	uint64_t worst = 0;

	for (uint32_t t = 0; t < n; t++) {
		if (seq[t] >= kv->n_seq || pos[t] >= kv->n_ctx)
			return -EINVAL;
	}
	for (uint32_t t0 = 0, t1; t0 < n; t0 = t1) {
		for (t1 = t0 + 1; t1 < n && seq[t1] == seq[t0] && pos[t1] == pos[t1 - 1] + 1; t1++)
			;
		uint64_t sz = (uint64_t)(t1 - t0) * (pos[t1 - 1] + 1);

		worst = sz > worst ? sz : worst;
	}
	*ret_scores = worst;
	return 0;
}

static void layer_run(const struct model *m, struct kv_cache *kv, uint32_t li, const uint32_t *seq,
		      const uint32_t *pos, uint32_t n, float *x, struct scratch *s,
		      enum lin_group stop_at, linear_tap_fn tap, void *arg)
{
	const struct model_layer *l = &m->layers[li];
	uint64_t nd = (uint64_t)n * m->cfg.dim;
	bool pre = pre_ln(m);

	if (pre)
		norm_rows(m, s->h, x, l->attn_norm, l->attn_norm_b, n);
	else
		memcpy(s->h, x, nd * sizeof(float));
	if (attention_block(m, kv, li, seq, pos, n, s, stop_at, tap, arg))
		return;
	add_rows(x, s->h, nd);
	if (!pre)
		norm_rows(m, x, x, l->attn_norm, l->attn_norm_b, n);
	if (pre)
		norm_rows(m, s->h, x, l->ffn_norm, l->ffn_norm_b, n);
	else
		memcpy(s->h, x, nd * sizeof(float));
	if (ffn_block(m, li, n, s, stop_at, tap, arg))
		return;
	add_rows(x, s->h, nd);
	if (!pre)
		norm_rows(m, x, x, l->ffn_norm, l->ffn_norm_b, n);
}

int model_layer_forward(const struct model *m, struct kv_cache *kv, uint32_t layer,
			const uint32_t *seq, const uint32_t *pos, uint32_t n, float *x,
			enum lin_group stop_at, linear_tap_fn tap, void *tap_arg)
{
	uint64_t n_scores;
	struct scratch s;
	float *save = NULL;
	int r;

	if (layer >= m->cfg.n_layers)
		return -EINVAL;
	r = check_batch(kv, seq, pos, n, &n_scores);
	if (r < 0)
		return r;
	r = scratch_alloc(&s, m, n, n_scores);
	if (r < 0)
		return r;
	if (stop_at < LIN_GROUP_COUNT) {
		/* a partial run must leave the residual stream as it found it */
		save = malloc((uint64_t)n * m->cfg.dim * sizeof(float));
		if (!save) {
			scratch_free(&s);
			return -ENOMEM;
		}
		memcpy(save, x, (uint64_t)n * m->cfg.dim * sizeof(float));
	}
	layer_run(m, kv, layer, seq, pos, n, x, &s, stop_at, tap, tap_arg);
	if (save) {
		memcpy(x, save, (uint64_t)n * m->cfg.dim * sizeof(float));
		free(save);
	}
	scratch_free(&s);
	return 0;
}

void model_final_norm(const struct model *m, const float *x, uint32_t n, float *hidden)
{
	if (pre_ln(m))
		norm_rows(m, hidden, x, m->out_norm, m->out_norm_b, n);
	else
		memcpy(hidden, x, (uint64_t)n * m->cfg.dim * sizeof(float));
}

int model_forward(const struct model *m, struct kv_cache *kv, const int32_t *tokens,
		  const uint32_t *seq, const uint32_t *pos, uint32_t n, float *hidden)
{
	uint64_t n_scores;
	struct scratch s;
	int r;

	if (!n)
		return 0;
	r = check_batch(kv, seq, pos, n, &n_scores);
	if (r < 0)
		return r;
	r = scratch_alloc(&s, m, n, n_scores);
	if (r < 0)
		return r;
	r = model_embed(m, tokens, pos, n, s.x);
	if (r == 0) {
		for (uint32_t li = 0; li < m->cfg.n_layers; li++)
			layer_run(m, kv, li, seq, pos, n, s.x, &s, LIN_GROUP_COUNT, NULL, NULL);
		model_final_norm(m, s.x, n, hidden);
	}
	scratch_free(&s);
	return r;
}

void model_logits(const struct model *m, const float *hidden, uint32_t n, float *logits)
{
	linear_forward(&m->lm_head, hidden, logits, n);
}

int model_forward_seq(const struct model *m, struct kv_cache *kv, uint32_t seq,
		      const int32_t *tokens, uint32_t n, uint32_t pos0, float *last_logits)
{
	uint32_t *sq, *ps;
	float *hidden;
	int r = -ENOMEM;

	if (!n)
		return -EINVAL;
	sq = calloc(n, sizeof(*sq));
	ps = calloc(n, sizeof(*ps));
	hidden = malloc((uint64_t)n * m->cfg.dim * sizeof(float));
	if (!sq || !ps || !hidden)
		goto out;
	for (uint32_t i = 0; i < n; i++) {
		sq[i] = seq;
		ps[i] = pos0 + i;
	}
	r = model_forward(m, kv, tokens, sq, ps, n, hidden);
	if (r == 0 && n)
		model_logits(m, hidden + (uint64_t)(n - 1) * m->cfg.dim, 1, last_logits);
out:
	free(sq);
	free(ps);
	free(hidden);
	return r;
}
