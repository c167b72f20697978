// SPDX-License-Identifier: MIT
/*
 * Loading a model for the dense engine: GGUF files (llama.cpp layout) and HF folders
 * (config.json + safetensors). Every tensor is converted to f32 once, at load, except a
 * Q8_0 or Q5_0 LM head, which stays in its blocks (load_block_head()).
 */
#include "engine/model.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/pool.h"
#include "engine/fwd_simd.h"
#include "engine/gguf.h"
#include "engine/sa_format.h"
#include "engine/safetensors.h"
#include "engine/tokenizer.h"
#include "kernels/lut.h"

/* Where tensors come from: exactly one of g, st is set. */
struct source {
	struct gguf_file *g;
	struct st_set *st;
	const char *path;
};

/* Tensor names for one checkpoint layout; "%u" is the layer index. Linear names lack the
 * ".weight"/".bias" suffix. */
struct tensor_names {
	const char *tok_embd, *pos_embd;
	const char *attn_norm; /* LayerNorm/RMSNorm names lack the suffix too */
	const char *q, *k, *v, *o;
	const char *q_norm, *k_norm, *post_attn_norm; /* Gemma 3 */
	const char *ffn_norm;
	const char *gate, *up, *down;
	const char *post_ffn_norm;
	const char *out_norm, *lm_head;
};

static const struct tensor_names gguf_llama_names = {
	.tok_embd = "token_embd.weight",
	.attn_norm = "blk.%u.attn_norm",
	.q = "blk.%u.attn_q",
	.k = "blk.%u.attn_k",
	.v = "blk.%u.attn_v",
	.o = "blk.%u.attn_output",
	.q_norm = "blk.%u.attn_q_norm",
	.k_norm = "blk.%u.attn_k_norm",
	.post_attn_norm = "blk.%u.post_attention_norm",
	.ffn_norm = "blk.%u.ffn_norm",
	.post_ffn_norm = "blk.%u.post_ffw_norm",
	.gate = "blk.%u.ffn_gate",
	.up = "blk.%u.ffn_up",
	.down = "blk.%u.ffn_down",
	.out_norm = "output_norm",
	.lm_head = "output.weight",
};

static const struct tensor_names hf_llama_names = {
	.tok_embd = "model.embed_tokens.weight",
	.attn_norm = "model.layers.%u.input_layernorm",
	.q = "model.layers.%u.self_attn.q_proj",
	.k = "model.layers.%u.self_attn.k_proj",
	.v = "model.layers.%u.self_attn.v_proj",
	.o = "model.layers.%u.self_attn.o_proj",
	.ffn_norm = "model.layers.%u.post_attention_layernorm",
	.gate = "model.layers.%u.mlp.gate_proj",
	.up = "model.layers.%u.mlp.up_proj",
	.down = "model.layers.%u.mlp.down_proj",
	.out_norm = "model.norm",
	.lm_head = "lm_head.weight",
};

static const struct tensor_names hf_gemma3_names = {
	.tok_embd = "model.embed_tokens.weight",
	.attn_norm = "model.layers.%u.input_layernorm",
	.q = "model.layers.%u.self_attn.q_proj",
	.k = "model.layers.%u.self_attn.k_proj",
	.v = "model.layers.%u.self_attn.v_proj",
	.o = "model.layers.%u.self_attn.o_proj",
	.q_norm = "model.layers.%u.self_attn.q_norm",
	.k_norm = "model.layers.%u.self_attn.k_norm",
	.post_attn_norm = "model.layers.%u.post_attention_layernorm",
	.ffn_norm = "model.layers.%u.pre_feedforward_layernorm",
	.gate = "model.layers.%u.mlp.gate_proj",
	.up = "model.layers.%u.mlp.up_proj",
	.down = "model.layers.%u.mlp.down_proj",
	.post_ffn_norm = "model.layers.%u.post_feedforward_layernorm",
	.out_norm = "model.norm",
	.lm_head = "lm_head.weight",
};

static const struct tensor_names hf_opt_names = {
	.tok_embd = "model.decoder.embed_tokens.weight",
	.pos_embd = "model.decoder.embed_positions.weight",
	.attn_norm = "model.decoder.layers.%u.self_attn_layer_norm",
	.q = "model.decoder.layers.%u.self_attn.q_proj",
	.k = "model.decoder.layers.%u.self_attn.k_proj",
	.v = "model.decoder.layers.%u.self_attn.v_proj",
	.o = "model.decoder.layers.%u.self_attn.out_proj",
	.ffn_norm = "model.decoder.layers.%u.final_layer_norm",
	.up = "model.decoder.layers.%u.fc1",
	.down = "model.decoder.layers.%u.fc2",
	.out_norm = "model.decoder.final_layer_norm",
	.lm_head = "lm_head.weight",
};

static int keep_buf(struct model *m, void *p)
{
	if (m->n_bufs == m->cap_bufs) {
		size_t cap = m->cap_bufs ? 2 * m->cap_bufs : 64;
		void **nb = realloc(m->bufs, cap * sizeof(*nb));

		if (!nb)
			return -ENOMEM;
		m->bufs = nb;
		m->cap_bufs = cap;
	}
	m->bufs[m->n_bufs++] = p;
	return 0;
}

/* Does the source hold @name? HF checkpoints sometimes drop the "model." prefix. */
static bool src_lookup(const struct source *s, const char *name, const void **ret_t)
{
	const void *t;

	if (s->g)
		t = gguf_find_tensor(s->g, name);
	else
		t = st_find(s->st, name);
	if (!t && !s->g && !strncmp(name, "model.", 6))
		t = st_find(s->st, name + 6);
	*ret_t = t;
	return t != NULL;
}

/*
 * Load tensor @name as f32 with exactly @n_out x @n_in elements (n_out = 1 for vectors).
 * Absent tensors give -ENOENT (the caller decides whether that is an error).
 */
static int load_f32(struct model *m, const struct source *s, const char *name, uint64_t n_out,
		    uint64_t n_in, float **ret, struct errbuf *e)
{
	const void *t;
	uint64_t have_out, have_in, n_elems;
	float *buf;
	int ret_code;

	if (!src_lookup(s, name, &t))
		return errbuf_set(e, -ENOENT, "tensor '%s' is missing", name);
	if (s->g) {
		const struct gguf_tensor *gt = t;

		have_in = gt->ne[0];
		have_out = gt->n_elems / (gt->ne[0] ? gt->ne[0] : 1);
		n_elems = gt->n_elems;
	} else {
		const struct st_tensor *st = t;

		have_in = st->n_dims ? st->shape[st->n_dims - 1] : 1;
		have_out = st->n_elems / (have_in ? have_in : 1);
		n_elems = st->n_elems;
	}
	if (have_out != n_out || have_in != n_in)
		return errbuf_set(e, -EBADMSG,
				  "tensor '%s' has shape %llu x %llu, expected %llu x %llu", name,
				  (unsigned long long)have_out, (unsigned long long)have_in,
				  (unsigned long long)n_out, (unsigned long long)n_in);
	buf = malloc(n_elems * sizeof(float));
	if (!buf)
		return -ENOMEM;
	ret_code = s->g ? gguf_tensor_to_f32(t, buf) : st_tensor_to_f32(t, buf);
	if (ret_code < 0) {
		free(buf);
		return errbuf_set(e, ret_code, "tensor '%s': unsupported element type", name);
	}
	ret_code = keep_buf(m, buf);
	if (ret_code < 0) {
		free(buf);
		return ret_code;
	}
	for (uint64_t i = 0; i < n_elems; i++) {
		if (!isfinite(buf[i]))
			return errbuf_set(e, -EBADMSG, "tensor '%s' holds NaN or Inf at %llu", name,
					  (unsigned long long)i);
	}
	m->n_params += n_elems;
	*ret = buf;
	return 0;
}

static int load_named(struct model *m, const struct source *s, const char *fmt, unsigned layer,
		      const char *suffix, uint64_t n_out, uint64_t n_in, bool optional, float **ret,
		      struct errbuf *e)
{
	char name[256];
	int r;

	snprintf(name, sizeof(name), fmt, layer);
	strncat(name, suffix, sizeof(name) - strlen(name) - 1);
	r = load_f32(m, s, name, n_out, n_in, ret, e);
	if (r == -ENOENT && optional) {
		*ret = NULL;
		if (e)
			e->msg[0] = 0;
		return 0;
	}
	return r;
}

/* Put @inner (moved) behind the run-time transforms @rht asks for, or take it as is. */
static int wrap_rht(struct linear *l, struct linear *inner, const struct sa_rht *rht,
		    const char *base, struct errbuf *e)
{
	int r;

	if (rht->mode == SA_RHT_NONE) {
		*l = *inner;
		return 0;
	}
	r = linear_wrap_rht(l, inner, rht);
	if (r < 0) {
		linear_done(inner);
		return errbuf_set(e, r, "%s: cannot set up its Hadamard transforms", base);
	}
	return 0;
}

/* The model's task runner (opts.runner, else opts.pool); run == NULL: the caller only. */
static struct lut_runner model_runner(const struct model *m)
{
	struct pool *p = m->opts.pool;

	if (m->opts.runner.run)
		return m->opts.runner;
	if (p) /* even with one thread: the same slicing gives the same bits */
		return (struct lut_runner){ .run = pool_run,
					    .ctx = p,
					    .n_workers = pool_n_threads(p) };
	return (struct lut_runner){ 0 };
}

/* A dense linear over @w (borrowed) on the model's runner. */
static int init_dense(const struct model *m, struct linear *l, float *w, uint32_t n_out,
		      uint32_t n_in)
{
	struct lut_runner r = model_runner(m);

	return linear_init_dense_runner(l, w, n_out, n_in, 0, &r);
}

/*
 * A converted layer stored as shift-add planes: on the shift-add kernels, or dequantized
 * for the dense path (*ret = NULL when the kernels took it).
 */
static int load_sa_linear(struct model *m, const struct source *s, const char *base, uint32_t n_out,
			  uint32_t n_in, struct linear *l, float **ret, struct errbuf *e)
{
	struct qweight qw;
	struct sa_rht rht;
	struct linear inner = { 0 };
	float *w;
	int r;

	r = sa_format_load(s->g, base, &qw, &rht, e);
	if (r < 0)
		return r;
	if (qw.n_rows != n_out || qw.n_cols != n_in) {
		qweight_done(&qw);
		return errbuf_set(e, -EBADMSG, "%s: shift-add planes are %u x %u, expected %u x %u",
				  base, qw.n_rows, qw.n_cols, n_out, n_in);
	}
	if (m->opts.backend == LINEAR_BACKEND_SHIFTADD) {
		struct lut_runner run = model_runner(m);
		/* bcq's baselines: real-valued alphas, or alphas per row and column group */
		bool baseline = qw.apot == 0 || qw.layout == QW_LAYOUT_ROW;

		r = linear_init_shiftadd_runner(&inner, &qw, &run);
		qweight_done(&qw);
		if (r < 0 && baseline)
			return errbuf_set(e, r,
					  "%s: bcq's alphas (real-valued or per row) have no "
					  "shift-add kernel; use --backend dense",
					  base);
		if (r < 0)
			return errbuf_set(e, r, "%s: shift-add kernels refused the layer", base);
		m->n_params += (uint64_t)n_out * n_in;
		m->n_shiftadd++;
		*ret = NULL;
		return wrap_rht(l, &inner, &rht, base, e);
	}
	w = malloc((uint64_t)n_out * n_in * sizeof(float));
	if (!w || keep_buf(m, w) < 0) {
		free(w);
		qweight_done(&qw);
		return -ENOMEM;
	}
	qweight_dequant(&qw, w);
	qweight_done(&qw);
	m->n_params += (uint64_t)n_out * n_in;
	if (rht.mode == SA_RHT_NONE) {
		*ret = w;
		return 0;
	}
	/* planes in a transformed basis: the dense path applies the same transforms */
	*ret = NULL;
	r = init_dense(m, &inner, w, n_out, n_in);
	return r < 0 ? r : wrap_rht(l, &inner, &rht, base, e);
}

static int load_linear(struct model *m, const struct source *s, const char *fmt, unsigned layer,
		       uint32_t n_out, uint32_t n_in, bool want_bias, struct linear *l,
		       struct errbuf *e)
{
	char base[200];
	float *w, *b = NULL;
	int r;

	snprintf(base, sizeof(base), fmt, layer);
	if (s->g && sa_format_present(s->g, base))
		r = load_sa_linear(m, s, base, n_out, n_in, l, &w, e);
	else
		r = load_named(m, s, fmt, layer, ".weight", n_out, n_in, false, &w, e);
	if (r < 0)
		return r;
	r = load_named(m, s, fmt, layer, ".bias", 1, n_out, !want_bias, &b, e);
	if (r < 0)
		return r;
	if (w) {
		r = init_dense(m, l, w, n_out, n_in);
		if (r < 0)
			return r;
	}
	l->bias = b;
	return 0;
}

static int load_norm(struct model *m, const struct source *s, const char *fmt, unsigned layer,
		     bool with_bias, float **w, float **b, struct errbuf *e)
{
	int r;

	r = load_named(m, s, fmt, layer, ".weight", 1, m->cfg.dim, false, w, e);
	if (r < 0)
		return r;
	if (!with_bias) {
		*b = NULL;
		return 0;
	}
	return load_named(m, s, fmt, layer, ".bias", 1, m->cfg.dim, false, b, e);
}

/* Gemma 3's per-head q/k norms and the norms of o's and down's outputs, when it has them. */
static int load_extra_norms(struct model *m, const struct source *s, const struct tensor_names *nm,
			    unsigned i, struct errbuf *e)
{
	const struct model_config *c = &m->cfg;
	struct model_layer *l = &m->layers[i];
	int r = 0;

	if (c->qk_norm) {
		if (!nm->q_norm)
			return errbuf_set(e, -EOPNOTSUPP,
					  "this checkpoint layout names no q/k norm tensors");
		r = load_named(m, s, nm->q_norm, i, ".weight", 1, c->head_dim, false, &l->q_norm,
			       e);
		if (r == 0)
			r = load_named(m, s, nm->k_norm, i, ".weight", 1, c->head_dim, false,
				       &l->k_norm, e);
	}
	if (r == 0 && c->post_norms) {
		if (!nm->post_attn_norm)
			return errbuf_set(e, -EOPNOTSUPP,
					  "this checkpoint layout names no post-norm tensors");
		r = load_named(m, s, nm->post_attn_norm, i, ".weight", 1, c->dim, false,
			       &l->post_attn_norm, e);
		if (r == 0)
			r = load_named(m, s, nm->post_ffn_norm, i, ".weight", 1, c->dim, false,
				       &l->post_ffn_norm, e);
	}
	return r;
}

static int load_layer(struct model *m, const struct source *s, const struct tensor_names *nm,
		      unsigned i, struct errbuf *e)
{
	const struct model_config *c = &m->cfg;
	struct model_layer *l = &m->layers[i];
	bool opt = c->arch == ARCH_OPT;
	uint32_t q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
	bool qkv_bias = opt || c->qkv_bias;
	int r;

	r = load_norm(m, s, nm->attn_norm, i, opt, &l->attn_norm, &l->attn_norm_b, e);
	if (r < 0)
		return r;
	r = load_linear(m, s, nm->q, i, q_dim, c->dim, qkv_bias, &l->wq, e);
	if (r < 0)
		return r;
	r = load_linear(m, s, nm->k, i, kv_dim, c->dim, qkv_bias, &l->wk, e);
	if (r < 0)
		return r;
	r = load_linear(m, s, nm->v, i, kv_dim, c->dim, qkv_bias, &l->wv, e);
	if (r < 0)
		return r;
	r = load_linear(m, s, nm->o, i, c->dim, q_dim, opt, &l->wo, e);
	if (r < 0)
		return r;
	r = load_extra_norms(m, s, nm, i, e);
	if (r < 0)
		return r;
	r = load_norm(m, s, nm->ffn_norm, i, opt, &l->ffn_norm, &l->ffn_norm_b, e);
	if (r < 0)
		return r;
	if (!opt) {
		r = load_linear(m, s, nm->gate, i, c->ffn_dim, c->dim, false, &l->w_gate, e);
		if (r < 0)
			return r;
	}
	r = load_linear(m, s, nm->up, i, c->ffn_dim, c->dim, opt, &l->w_up, e);
	if (r < 0)
		return r;
	return load_linear(m, s, nm->down, i, c->dim, c->ffn_dim, opt, &l->w_down, e);
}

/*
 * Inverse RoPE frequencies of base @theta with the config's scaling, in f32 as HF computes
 * them. (Gemma 3's sliding layers use their own base, unscaled; it has no scaling at 270M.)
 */
static int rope_freqs(struct model *m, float theta, float **ret)
{
	const struct model_config *c = &m->cfg;
	uint32_t half = c->head_dim / 2;
	float *f = malloc(half * sizeof(float));

	if (!f || keep_buf(m, f) < 0) {
		free(f);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < half; i++) {
		float expo = (float)(2 * i) / (float)c->head_dim;
		float inv = 1.0f / powf(theta, expo);

		if (c->rope_scaling == ROPE_SCALING_LINEAR) {
			inv /= c->rope_factor;
		} else if (c->rope_scaling == ROPE_SCALING_LLAMA3) {
			float lo_wl = c->rope_orig_ctx / c->rope_low_freq_factor;
			float hi_wl = c->rope_orig_ctx / c->rope_high_freq_factor;
			float wl = 2.0f * (float)M_PI / inv;

			if (wl > lo_wl) {
				inv /= c->rope_factor;
			} else if (wl >= hi_wl) {
				float sm = (c->rope_orig_ctx / wl - c->rope_low_freq_factor) /
					   (c->rope_high_freq_factor - c->rope_low_freq_factor);

				inv = (1 - sm) * inv / c->rope_factor + sm * inv;
			}
		}
		f[i] = inv;
	}
	*ret = f;
	return 0;
}

static int init_rope(struct model *m)
{
	const struct model_config *c = &m->cfg;
	int r = rope_freqs(m, c->rope_theta, &m->rope_freq);

	if (r == 0 && c->sliding_window && c->rope_theta_swa > 0 &&
	    c->rope_theta_swa != c->rope_theta)
		r = rope_freqs(m, c->rope_theta_swa, &m->rope_freq_swa);
	return r;
}

/* fwd_run_tasks() as a task runner: threads started per call (no pool in dense mode). */
static void run_spawned(void *ctx, uint32_t n_tasks, lut_task_fn fn, void *arg)
{
	fwd_run_tasks(ctx, n_tasks, fn, arg);
}

/*
 * Workers for the LM head: the model's runner (model_runner()); without a pool or runner
 * (calibration, eval tasks) as many threads as BLAS uses, started per call.
 */
static struct lut_runner head_runner(struct model *m)
{
	struct lut_runner r = model_runner(m);
	uint32_t n;

	if (r.run)
		return r;
	n = fwd_n_workers(m);
	if (n > 1)
		return (struct lut_runner){ .run = run_spawned, .ctx = m, .n_workers = n };
	return r;
}

/*
 * An LM head stored as Q8_0 (SmolLM2's GGUFs keep the tied embedding in Q8_0) or Q5_0
 * (`shiftadd convert --head q5_0`) stays in its blocks on the Q8_0 backend, in both backend
 * modes: decoding reads 30 (21) MB of it per token instead of 113 MB as f32. The tied
 * embedding lookup keeps its f32 copy (loaded before).
 */
static int load_block_head(struct model *m, const struct gguf_tensor *gt, const char *name,
			   bool untied, struct errbuf *e)
{
	const struct model_config *c = &m->cfg;
	struct lut_runner runner = head_runner(m);
	bool q5 = gt->type == GGML_TYPE_Q5_0;
	int r;

	if (gt->ne[0] != c->dim || gt->n_elems != (uint64_t)c->n_vocab * c->dim)
		return errbuf_set(e, -EBADMSG,
				  "tensor '%s' has %llu elements in rows of %llu, expected %u x %u",
				  name, (unsigned long long)gt->n_elems,
				  (unsigned long long)gt->ne[0], c->n_vocab, c->dim);
	r = (q5 ? linear_init_q5_0 : linear_init_q8_0)(&m->lm_head, gt->data, gt->n_bytes,
						       c->n_vocab, c->dim, &runner);
	if (r < 0)
		return errbuf_set(e, r, "tensor '%s': cannot set up the %s LM head", name,
				  q5 ? "Q5_0" : "Q8_0");
	if (untied)
		m->n_params += gt->n_elems;
	return 0;
}

/* HF Gemma's RMSNorms scale by 1 + w: fold the 1 in, as llama.cpp's GGUF conversion does. */
static void fold_norm_offsets(struct model *m)
{
	const struct model_config *c = &m->cfg;

	for (uint32_t i = 0; i < c->n_layers; i++) {
		struct model_layer *l = &m->layers[i];
		float *dims[] = { l->attn_norm, l->ffn_norm, l->post_attn_norm, l->post_ffn_norm };
		float *heads[] = { l->q_norm, l->k_norm };

		for (size_t k = 0; k < sizeof(dims) / sizeof(dims[0]); k++)
			for (uint32_t j = 0; dims[k] && j < c->dim; j++)
				dims[k][j] += 1.0f;
		for (size_t k = 0; k < sizeof(heads) / sizeof(heads[0]); k++)
			for (uint32_t j = 0; heads[k] && j < c->head_dim; j++)
				heads[k][j] += 1.0f;
	}
	for (uint32_t j = 0; j < c->dim; j++)
		m->out_norm[j] += 1.0f;
}

static int load_weights(struct model *m, const struct source *s, const struct tensor_names *nm,
			struct errbuf *e)
{
	const struct model_config *c = &m->cfg;
	bool opt = c->arch == ARCH_OPT, untied;
	const struct gguf_tensor *ht;
	const void *t;
	int r;

	r = load_f32(m, s, nm->tok_embd, c->n_vocab, c->dim, &m->tok_embd, e);
	if (r < 0)
		return r;
	if (opt) {
		r = load_f32(m, s, nm->pos_embd, (uint64_t)c->max_ctx + 2, c->dim, &m->pos_embd, e);
		if (r < 0)
			return r;
	}
	m->layers = calloc(c->n_layers, sizeof(*m->layers));
	if (!m->layers)
		return -ENOMEM;
	for (unsigned i = 0; i < c->n_layers; i++) {
		r = load_layer(m, s, nm, i, e);
		if (r < 0)
			return r;
	}
	r = load_norm(m, s, nm->out_norm, 0, opt, &m->out_norm, &m->out_norm_b, e);
	if (r < 0)
		return r;
	if (c->norm_offset)
		fold_norm_offsets(m);
	untied = !c->tied_embeddings && src_lookup(s, nm->lm_head, &t);
	ht = s->g ? gguf_find_tensor(s->g, untied ? nm->lm_head : nm->tok_embd) : NULL;
	if (s->g && sa_format_present(s->g, SA_HEAD_BASE)) {
		/* a converted head (`shiftadd convert --head shiftadd`), tied or not */
		float *w;

		r = load_sa_linear(m, s, SA_HEAD_BASE, c->n_vocab, c->dim, &m->lm_head, &w, e);
		if (r == 0 && w)
			r = init_dense(m, &m->lm_head, w, c->n_vocab, c->dim);
	} else if (ht && (ht->type == GGML_TYPE_Q8_0 || ht->type == GGML_TYPE_Q5_0)) {
		r = load_block_head(m, ht, untied ? nm->lm_head : nm->tok_embd, untied, e);
	} else if (untied) {
		float *w;

		r = load_f32(m, s, nm->lm_head, c->n_vocab, c->dim, &w, e);
		if (r < 0)
			return r;
		r = init_dense(m, &m->lm_head, w, c->n_vocab, c->dim);
	} else {
		r = init_dense(m, &m->lm_head, m->tok_embd, c->n_vocab, c->dim);
	}
	if (r < 0)
		return r;
	return init_rope(m);
}

static int open_gguf(struct model *m, const char *path, struct source *s, struct errbuf *e)
{
	const char *tmpl;
	size_t tlen;
	int r;

	r = gguf_open(path, &s->g, e);
	if (r < 0)
		return r;
	r = model_config_from_gguf(s->g, &m->cfg, e);
	if (r < 0)
		return r;
	if (m->cfg.arch != ARCH_LLAMA)
		return errbuf_set(e, -EOPNOTSUPP, "GGUF architecture not supported");
	/* llama.cpp permutes LLaMA q/k rows for adjacent-pair RoPE; Qwen2 and Gemma 3 GGUFs keep
	 * HF order; files we convert from HF folders say which they hold */
	m->rope_pairing = m->cfg.qkv_bias || m->cfg.qk_norm ? ROPE_PAIR_HALF : ROPE_PAIR_ADJACENT;
	if (gguf_get_str(s->g, "shiftadd.rope_pairing", &tmpl, &tlen) == 0)
		m->rope_pairing =
			tlen == 4 && !memcmp(tmpl, "half", 4) ? ROPE_PAIR_HALF : ROPE_PAIR_ADJACENT;
	if (!gguf_find_tensor(s->g, "output.weight"))
		m->cfg.tied_embeddings = true;
	r = tokenizer_from_gguf(s->g, &m->tok, e);
	if (r < 0)
		return r;
	if (gguf_get_str(s->g, "tokenizer.chat_template", &tmpl, &tlen) == 0) {
		m->chat_template = strndup(tmpl, tlen);
		if (!m->chat_template)
			return -ENOMEM;
	}
	return 0;
}

static int open_hf(struct model *m, const char *dir, struct source *s, struct errbuf *e)
{
	char p[PATH_MAX];
	struct stat sb;
	int r;

	snprintf(p, sizeof(p), "%s/config.json", dir);
	r = model_config_from_hf_json(p, &m->cfg, e);
	if (r < 0)
		return r;
	m->rope_pairing = ROPE_PAIR_HALF;
	r = st_open(dir, &s->st, e);
	if (r < 0)
		return r;
	snprintf(p, sizeof(p), "%s/tokenizer.json", dir);
	if (stat(p, &sb) == 0) {
		r = tokenizer_from_hf_json(p, &m->tok, e);
		if (r < 0)
			return r;
	}
	return 0;
}

static const struct tensor_names *tensor_names_of(const struct model_config *c, bool hf)
{
	if (!hf)
		return &gguf_llama_names;
	if (c->arch == ARCH_OPT)
		return &hf_opt_names;
	return c->qk_norm ? &hf_gemma3_names : &hf_llama_names;
}

int model_load(const char *path, struct model **ret, struct errbuf *e)
{
	return model_load_ex(path, NULL, ret, e);
}

int model_load_ex(const char *path, const struct model_load_opts *o, struct model **ret,
		  struct errbuf *e)
{
	struct source s = { .path = path };
	struct model *m;
	struct stat sb;
	int r;

	if (stat(path, &sb) < 0)
		return errbuf_set(e, -errno, "cannot open: %s", strerror(errno));
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	if (o)
		m->opts = *o;
	/* every product runs on the pool/runner; BLAS's own threads would compete and split
	 * calls differently from run to run */
	if (m->opts.pool || m->opts.runner.run)
		openblas_set_num_threads(1);
	m->path = strdup(path);
	if (!m->path) {
		r = -ENOMEM;
		goto out_free;
	}
	r = S_ISDIR(sb.st_mode) ? open_hf(m, path, &s, e) : open_gguf(m, path, &s, e);
	if (r < 0)
		goto out_free;
	r = model_config_validate(&m->cfg, e);
	if (r < 0)
		goto out_free;
	if (m->cfg.arch == ARCH_LLAMA && m->cfg.head_dim % 2)
		r = errbuf_set(e, -EBADMSG, "RoPE needs an even head_dim (have %u)",
			       m->cfg.head_dim);
	else
		r = load_weights(m, &s, tensor_names_of(&m->cfg, S_ISDIR(sb.st_mode)), e);
	if (r < 0)
		goto out_free;
	gguf_close(s.g);
	st_close(s.st);
	*ret = m;
	return 0;

out_free:
	gguf_close(s.g);
	st_close(s.st);
	model_free(m);
	return r;
}

void model_free(struct model *m)
{
	if (!m)
		return;
	if (m->layers) {
		for (uint32_t i = 0; i < m->cfg.n_layers; i++) {
			struct model_layer *l = &m->layers[i];

			linear_done(&l->wq);
			linear_done(&l->wk);
			linear_done(&l->wv);
			linear_done(&l->wo);
			linear_done(&l->w_gate);
			linear_done(&l->w_up);
			linear_done(&l->w_down);
		}
	}
	linear_done(&m->lm_head);
	free(m->layers);
	for (size_t i = 0; i < m->n_bufs; i++)
		free(m->bufs[i]);
	free(m->bufs);
	tokenizer_free(m->tok);
	free(m->chat_template);
	free(m->path);
	free(m);
}

uint64_t model_weight_bytes(const struct model *m)
{
	return m->n_params * sizeof(float);
}
