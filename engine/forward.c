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

/* Sums run in double: a sequential f32 sum over thousands of elements drifts further from
 * the exact value than the pairwise sums of the reference implementations. */
static void rms_norm(float *out, const float *x, const float *w, uint32_t dim, float eps)
{
	double acc = 0;
	float ss;

	for (uint32_t i = 0; i < dim; i++)
		acc += (double)x[i] * x[i];
	ss = 1.0f / sqrtf((float)(acc / dim) + eps);
	for (uint32_t i = 0; i < dim; i++)
		out[i] = w[i] * (x[i] * ss);
}

static void layer_norm(float *out, const float *x, const float *w, const float *b, uint32_t dim,
		       float eps)
{
	double sum = 0, var = 0;
	float mean, inv;

	for (uint32_t i = 0; i < dim; i++)
		sum += x[i];
	mean = (float)(sum / dim);
	for (uint32_t i = 0; i < dim; i++)
		var += (double)(x[i] - mean) * (x[i] - mean);
	inv = 1.0f / sqrtf((float)(var / dim) + eps);
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
	float mx = x[0], inv;
	double sum = 0;

	for (uint32_t i = 1; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	for (uint32_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - mx);
		sum += x[i];
	}
	inv = (float)(1.0 / sum);
	for (uint32_t i = 0; i < n; i++)
		x[i] *= inv;
}

/*
 * Causal attention for @len consecutive tokens of sequence @s at positions p0.., whose k/v
 * are already in the cache. q and out are [len][q_dim]; scores is scratch [len][p0 + len].
 */
/* Query rows per attention block: each block only multiplies the keys it can see, which
 * halves the work of a long causal prefill. */
#define ATT_BLOCK 256

static void attend_block(const struct model *m, const struct kv_cache *kv, uint32_t layer,
			 uint32_t s, uint32_t p0, uint32_t len, const float *q, float *out,
			 float *scores)
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

/*
 * Causal attention for @len consecutive tokens of sequence @s at positions p0.., whose k/v
 * are already in the cache. q and out are [len][q_dim]; scores is scratch [len][p0 + len].
 */
static void attend_run(const struct model *m, const struct kv_cache *kv, uint32_t layer, uint32_t s,
		       uint32_t p0, uint32_t len, const float *q, float *out, float *scores)
{
	uint32_t q_dim = m->cfg.n_heads * m->cfg.head_dim;

	for (uint32_t r0 = 0; r0 < len; r0 += ATT_BLOCK) {
		uint32_t n = len - r0 < ATT_BLOCK ? len - r0 : ATT_BLOCK;

		attend_block(m, kv, layer, s, p0 + r0, n, q + (uint64_t)r0 * q_dim,
			     out + (uint64_t)r0 * q_dim, scores);
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

/* q, k, v projections, RoPE, KV-cache write and causal attention: att[n][q_dim]. */
static void attn_core(const struct model *m, struct kv_cache *kv, uint32_t li, const uint32_t *seq,
		      const uint32_t *pos, uint32_t n, const float *h, float *att,
		      struct scratch *s)
{
	const struct model_config *c = &m->cfg;
	const struct model_layer *l = &m->layers[li];
	uint32_t q_dim = c->n_heads * c->head_dim, kvd = kv->kv_dim;

	linear_forward(&l->wq, h, s->q, n);
	linear_forward(&l->wk, h, s->k, n);
	linear_forward(&l->wv, h, s->v, n);
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
			   att + (uint64_t)t0 * q_dim, s->scores);
	}
}

/* Gate/up (OPT: fc1) and the activation: act[n][ffn_dim]; s->ff2 is scratch. */
static void ffn_core(const struct model *m, uint32_t li, uint32_t n, const float *h, float *act,
		     struct scratch *s)
{
	const struct model_layer *l = &m->layers[li];
	uint64_t nf = (uint64_t)n * m->cfg.ffn_dim;

	if (m->cfg.arch == ARCH_OPT) {
		linear_forward(&l->w_up, h, act, n);
		for (uint64_t i = 0; i < nf; i++)
			act[i] = act[i] > 0 ? act[i] : 0;
		return;
	}
	linear_forward(&l->w_gate, h, act, n);
	linear_forward(&l->w_up, h, s->ff2, n);
	for (uint64_t i = 0; i < nf; i++) {
		float g = act[i];

		act[i] = g / (1.0f + expf(-g)) * s->ff2[i];
	}
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
		      const uint32_t *pos, uint32_t n, float *x, struct scratch *s)
{
	const struct model_layer *l = &m->layers[li];
	uint64_t nd = (uint64_t)n * m->cfg.dim;
	bool pre = pre_ln(m);

	if (pre)
		norm_rows(m, s->h, x, l->attn_norm, l->attn_norm_b, n);
	else
		memcpy(s->h, x, nd * sizeof(float));
	attn_core(m, kv, li, seq, pos, n, s->h, s->att, s);
	linear_forward(&l->wo, s->att, s->h, n);
	add_rows(x, s->h, nd);
	if (!pre)
		norm_rows(m, x, x, l->attn_norm, l->attn_norm_b, n);
	if (pre)
		norm_rows(m, s->h, x, l->ffn_norm, l->ffn_norm_b, n);
	else
		memcpy(s->h, x, nd * sizeof(float));
	ffn_core(m, li, n, s->h, s->ff1, s);
	linear_forward(&l->w_down, s->ff1, s->h, n);
	add_rows(x, s->h, nd);
	if (!pre)
		norm_rows(m, x, x, l->ffn_norm, l->ffn_norm_b, n);
}

void model_attn_norm(const struct model *m, uint32_t li, const float *x, uint32_t n, float *h)
{
	norm_rows(m, h, x, m->layers[li].attn_norm, m->layers[li].attn_norm_b, n);
}

void model_ffn_norm(const struct model *m, uint32_t li, const float *x, uint32_t n, float *h)
{
	norm_rows(m, h, x, m->layers[li].ffn_norm, m->layers[li].ffn_norm_b, n);
}

int model_attn_core(const struct model *m, struct kv_cache *kv, uint32_t li, const uint32_t *seq,
		    const uint32_t *pos, uint32_t n, const float *h, float *att)
{
	uint64_t n_scores;
	struct scratch s;
	int r;

	if (li >= m->cfg.n_layers)
		return -EINVAL;
	r = check_batch(kv, seq, pos, n, &n_scores);
	if (r < 0)
		return r;
	r = scratch_alloc(&s, m, n, n_scores);
	if (r < 0)
		return r;
	attn_core(m, kv, li, seq, pos, n, h, att, &s);
	scratch_free(&s);
	return 0;
}

int model_ffn_core(const struct model *m, uint32_t li, uint32_t n, const float *h, float *act)
{
	float *tmp;

	if (li >= m->cfg.n_layers)
		return -EINVAL;
	tmp = malloc((uint64_t)n * m->cfg.ffn_dim * sizeof(float));
	if (!tmp)
		return -ENOMEM;
	ffn_core(m, li, n, h, act, &(struct scratch){ .ff2 = tmp });
	free(tmp);
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
			layer_run(m, kv, li, seq, pos, n, s.x, &s);
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
