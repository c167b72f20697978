// SPDX-License-Identifier: MIT
#include "reparam/export.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/dtype.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/model.h"
#include "engine/sa_format.h"
#include "engine/safetensors.h"
#include "reparam/internal.h"

/* Re-add one key-value pair of the source file. */
static int copy_kv(struct gguf_writer *w, const struct gguf_kv *kv)
{
	if (!strcmp(kv->key, "general.alignment") || !strncmp(kv->key, "shiftadd.", 9))
		return 0;
	switch (kv->type) {
	case GGUF_VT_STRING: {
		const struct gguf_str *s = kv->data;

		return gguf_writer_add_str(w, kv->key, s->data, s->len);
	}
	case GGUF_VT_ARRAY:
		if (!kv->data)
			return 0; /* arrays of arrays are not carried over */
		if (kv->arr_type == GGUF_VT_STRING) {
			const struct gguf_str *s = kv->data;
			const char **strs = malloc(kv->n * sizeof(*strs));
			size_t *lens = malloc(kv->n * sizeof(*lens));
			int r = -ENOMEM;

			if (strs && lens) {
				for (uint64_t i = 0; i < kv->n; i++) {
					strs[i] = s[i].data;
					lens[i] = s[i].len;
				}
				r = gguf_writer_add_str_arr(w, kv->key, strs, lens, kv->n);
			}
			free(strs);
			free(lens);
			return r;
		}
		return gguf_writer_add_arr(w, kv->key, kv->arr_type, kv->data, kv->n);
	default:
		return gguf_writer_add_scalar(w, kv->key, kv->type, kv->data);
	}
}

static const struct calib_tensor *find_out(const struct calib_out *out, const char *tname)
{
	size_t n = strlen(tname);

	if (n < 8 || strcmp(tname + n - 7, ".weight"))
		return NULL;
	for (uint32_t i = 0; i < out->n; i++)
		if (strlen(out->t[i].name) == n - 7 && !strncmp(out->t[i].name, tname, n - 7))
			return &out->t[i];
	return NULL;
}

static int add_tensor_arrays(struct gguf_writer *w, const struct calib_out *out)
{
	const char **names = malloc(out->n * sizeof(*names));
	uint32_t *bits = malloc(out->n * sizeof(*bits)), *layout = malloc(out->n * sizeof(*layout));
	float *rel = malloc(out->n * sizeof(*rel)), *bpw = malloc(out->n * sizeof(*bpw));
	int r = -ENOMEM;

	if (!names || !bits || !layout || !rel || !bpw)
		goto out;
	for (uint32_t i = 0; i < out->n; i++) {
		const struct reparam_result *res = &out->t[i].res;

		names[i] = out->t[i].name;
		bits[i] = res->has_qweight ? res->qw.bits : 32;
		layout[i] = res->has_qweight ? (uint32_t)res->qw.layout : 255;
		rel[i] = (float)res->rel_err_output;
		bpw[i] = (float)res->bits_per_weight;
	}
	r = gguf_writer_add_str_arr(w, "shiftadd.tensor_names", names, NULL, out->n);
	if (r == 0)
		r = gguf_writer_add_arr(w, "shiftadd.tensor_bits", GGUF_VT_UINT32, bits, out->n);
	if (r == 0)
		r = gguf_writer_add_arr(w, "shiftadd.tensor_layout", GGUF_VT_UINT32, layout,
					out->n);
	if (r == 0)
		r = gguf_writer_add_arr(w, "shiftadd.tensor_rel_err", GGUF_VT_FLOAT32, rel, out->n);
	if (r == 0)
		r = gguf_writer_add_arr(w, "shiftadd.tensor_bpw", GGUF_VT_FLOAT32, bpw, out->n);
out:
	free(names);
	free(bits);
	free(layout);
	free(rel);
	free(bpw);
	return r;
}

static int add_meta(struct gguf_writer *w, const struct model *m, const struct calib_out *out,
		    const struct export_meta *meta, const char *src_path)
{
	const struct reparam_opts *q = &meta->run->q;
	const struct calib_opts *c = &meta->run->calib;
	bool needs_h = reparam_method_needs_hessian(q->method);
	const char *method = reparam_method_name(q->method);
	const char *pair = m->rope_pairing == ROPE_PAIR_HALF ? "half" : "adjacent";
	const char *src = strrchr(src_path, '/') ? strrchr(src_path, '/') + 1 : src_path;
	double wsum = 0, nsum = 0;
	bool deployable = true;
	int r = 0;

	for (uint32_t i = 0; i < out->n; i++) {
		const struct reparam_result *res = &out->t[i].res;
		double np = (double)res->n_rows * res->n_cols;

		wsum += res->bits_per_weight * np;
		nsum += np;
		deployable &= res->deployable && res->has_qweight;
	}
#define TRY(x)                   \
	do {                     \
		if (r == 0)      \
			r = (x); \
	} while (0)
	TRY(gguf_writer_add_u32(w, "shiftadd.format_version", SA_FORMAT_VERSION));
	TRY(gguf_writer_add_str(w, "shiftadd.method", method, strlen(method)));
	TRY(gguf_writer_add_u32(w, "shiftadd.bits", q->bits));
	TRY(gguf_writer_add_u32(w, "shiftadd.apot", q->apot));
	TRY(gguf_writer_add_u32(w, "shiftadd.group", q->group));
	TRY(gguf_writer_add_u32(w, "shiftadd.rounds", q->rounds));
	TRY(gguf_writer_add_bool(w, "shiftadd.act_order", q->act_order));
	TRY(gguf_writer_add_f32(w, "shiftadd.percdamp", (float)q->percdamp));
	TRY(gguf_writer_add_bool(w, "shiftadd.deployable", deployable));
	TRY(gguf_writer_add_f32(w, "shiftadd.avg_bits", nsum > 0 ? (float)(wsum / nsum) : 0));
	if (meta->alloc) {
		TRY(gguf_writer_add_str(w, "shiftadd.alloc", meta->alloc, strlen(meta->alloc)));
		TRY(gguf_writer_add_f32(w, "shiftadd.avg_bits_budget",
					(float)meta->avg_bits_budget));
	}
	if (meta->head_q5_0)
		TRY(gguf_writer_add_str(w, "shiftadd.head", "q5_0", 4));
	if (meta->run->head_bits) {
		TRY(gguf_writer_add_str(w, "shiftadd.head", "shiftadd", 8));
		TRY(gguf_writer_add_u32(w, "shiftadd.head_bits", meta->run->head_bits));
	}
	TRY(gguf_writer_add_str(w, "shiftadd.source", src, strlen(src)));
	TRY(gguf_writer_add_str(w, "shiftadd.rope_pairing", pair, strlen(pair)));
	if (q->method == REPARAM_SHIFTADD_RHT) {
		const char *sides = reparam_rht_name(q->rht);

		TRY(gguf_writer_add_str(w, "shiftadd.rht", sides, strlen(sides)));
	}
	if (needs_h) {
		const char *cf = meta->calib_file ? meta->calib_file : "";
		const char *dt = calib_dtype_name(c->dtype), *mt = calib_math_name(c->math);

		TRY(gguf_writer_add_str(w, "shiftadd.calib.file", cf, strlen(cf)));
		TRY(gguf_writer_add_u32(w, "shiftadd.calib.nsamples", c->nsamples));
		TRY(gguf_writer_add_u32(w, "shiftadd.calib.seqlen", c->seqlen));
		TRY(gguf_writer_add_u64(w, "shiftadd.calib.seed", c->seed));
		TRY(gguf_writer_add_u64(w, "shiftadd.calib.tokens", meta->calib_tokens));
		TRY(gguf_writer_add_str(w, "shiftadd.calib.dtype", dt, strlen(dt)));
		TRY(gguf_writer_add_str(w, "shiftadd.calib.math", mt, strlen(mt)));
		TRY(gguf_writer_add_f32(w, "shiftadd.calib.qep", (float)meta->run->qep));
		if (meta->run->qep > 0)
			TRY(gguf_writer_add_u32(w, "shiftadd.calib.qep_samples",
						calib_qep_fit_samples(meta->run)));
	}
	TRY(add_tensor_arrays(w, out));
#undef TRY
	return r;
}

/* One quantized linear: shift-add planes, or dense F32 "<base>.weight" without a BCQ form. */
static int add_linear(struct gguf_writer *w, const struct calib_tensor *ct, const char *wname,
		      void ***bufs, uint32_t *n_bufs)
{
	const struct reparam_result *res = &ct->res;
	uint64_t ne[2] = { res->n_cols, res->n_rows };

	if (res->has_qweight) {
		struct sa_rht rht = { .mode = (enum sa_rht_mode)res->rht,
				      .seed_in = res->rht_seed_in,
				      .seed_out = res->rht_seed_out };

		return sa_format_add(w, ct->name, &res->qw, &rht, bufs, n_bufs);
	}
	if (!res->dense)
		return -EINVAL;
	return gguf_writer_add_tensor(w, wname, GGML_TYPE_F32, 2, ne, res->dense,
				      ne[0] * ne[1] * sizeof(float));
}

/*
 * The LM head as a Q5_0 "output.weight" (export_meta.head_q5_0), from the f32 weights the
 * engine loaded: the tied embedding, an untied dense head, or what a block head's backend
 * dequantizes to (linear_weights_f32()).
 */
static int add_q5_head(struct gguf_writer *w, const struct model *m, void ***bufs, uint32_t *n_bufs,
		       struct errbuf *e)
{
	const struct model_config *c = &m->cfg;
	uint64_t n = (uint64_t)c->n_vocab * c->dim, ne[2] = { c->dim, c->n_vocab }, n_bytes;
	const float *src = c->tied_embeddings ? m->tok_embd : linear_dense_weights(&m->lm_head);
	float *tmp = NULL;
	uint8_t *q;
	int r;

	if (c->dim % 32 || dtype_row_bytes(GGML_TYPE_Q5_0, n, &n_bytes) < 0)
		return errbuf_set(e, -EINVAL,
				  "--head q5_0 needs rows of a multiple of 32 values, not %u",
				  c->dim);
	if (!src) {
		tmp = malloc(n * sizeof(float));
		if (!tmp)
			return -ENOMEM;
		if (linear_weights_f32(&m->lm_head, tmp) < 0) {
			free(tmp);
			return errbuf_set(e, -EOPNOTSUPP,
					  "cannot read the LM head to requantize it");
		}
		src = tmp;
	}
	q = malloc(n_bytes);
	r = q ? dtype_quantize_q5_0(src, q, n) : -ENOMEM;
	free(tmp);
	if (r < 0) {
		free(q);
		return errbuf_set(e, r, "cannot quantize the LM head to Q5_0: %s", strerror(-r));
	}
	r = sa_keep_buf(bufs, n_bufs, q);
	if (r == 0)
		r = gguf_writer_add_tensor(w, "output.weight", GGML_TYPE_Q5_0, 2, ne, q, n_bytes);
	return r < 0 ? errbuf_set(e, r, "cannot add the Q5_0 LM head: %s", strerror(-r)) : 0;
}

static int add_tensors(struct gguf_writer *w, const struct gguf_file *g, const struct model *m,
		       const struct calib_out *out, bool head_q5_0, void ***bufs, uint32_t *n_bufs,
		       struct errbuf *e)
{
	const struct calib_tensor *head = find_out(out, SA_HEAD_BASE ".weight");
	bool has_head = false;
	int r;

	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		const struct calib_tensor *ct = find_out(out, t->name);

		if (head_q5_0 && !strcmp(t->name, "output.weight"))
			continue; /* replaced below */
		if (!strcmp(t->name, "output.weight"))
			has_head = true; /* an untied head: converted in place if it was */
		if (!ct)
			r = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data,
						   t->n_bytes);
		else
			r = add_linear(w, ct, t->name, bufs, n_bufs);
		if (r < 0)
			return errbuf_set(e, r, "cannot add tensor '%s': %s", t->name,
					  strerror(-r));
	}
	if (head && !has_head) {
		/* a converted tied head gets a tensor of its own; the embedding stays */
		r = add_linear(w, head, SA_HEAD_BASE ".weight", bufs, n_bufs);
		if (r < 0)
			return errbuf_set(e, r, "cannot add the LM head: %s", strerror(-r));
	}
	return head_q5_0 ? add_q5_head(w, m, bufs, n_bufs, e) : 0;
}

/* ---- HF folder sources ---- */

/*
 * HF tensor names (as the engine's loader knows them, "%u" the layer) and their GGUF names;
 * linear marks the layers the calibration quantized (their ".weight"), bias an optional
 * ".bias" beside it.
 */
struct hf_name {
	const char *hf, *gguf;
	bool per_layer, linear;
};

static const struct hf_name hf_names[] = {
	{ "model.embed_tokens.weight", "token_embd.weight", false, false },
	{ "model.layers.%u.input_layernorm.weight", "blk.%u.attn_norm.weight", true, false },
	{ "model.layers.%u.self_attn.q_proj", "blk.%u.attn_q", true, true },
	{ "model.layers.%u.self_attn.k_proj", "blk.%u.attn_k", true, true },
	{ "model.layers.%u.self_attn.v_proj", "blk.%u.attn_v", true, true },
	{ "model.layers.%u.self_attn.o_proj", "blk.%u.attn_output", true, true },
	{ "model.layers.%u.post_attention_layernorm.weight", "blk.%u.ffn_norm.weight", true,
	  false },
	{ "model.layers.%u.mlp.gate_proj", "blk.%u.ffn_gate", true, true },
	{ "model.layers.%u.mlp.up_proj", "blk.%u.ffn_up", true, true },
	{ "model.layers.%u.mlp.down_proj", "blk.%u.ffn_down", true, true },
	{ "model.norm.weight", "output_norm.weight", false, false },
	{ "lm_head.weight", "output.weight", false, false },
};

/* The source tensor @name (HF checkpoints sometimes drop the "model." prefix), or NULL. */
static const struct st_tensor *hf_find(const struct st_set *st, const char *name)
{
	const struct st_tensor *t = st_find(st, name);

	if (!t && !strncmp(name, "model.", 6))
		t = st_find(st, name + 6);
	return t;
}

/* A source tensor as is: F32, F16 and BF16 keep their type (the engine reads all three). */
static int add_raw(struct gguf_writer *w, const struct st_tensor *t, const char *name,
		   struct errbuf *e)
{
	static const enum ggml_type types[] = {
		[ST_F32] = GGML_TYPE_F32,
		[ST_F16] = GGML_TYPE_F16,
		[ST_BF16] = GGML_TYPE_BF16,
	};
	uint64_t ne[4];
	int r;

	if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
		return errbuf_set(e, -EOPNOTSUPP, "tensor '%s': element type not supported",
				  t->name);
	if (!t->n_dims || t->n_dims > 4)
		return errbuf_set(e, -EBADMSG, "tensor '%s' has %u dimensions", t->name, t->n_dims);
	for (uint32_t d = 0; d < t->n_dims; d++)
		ne[d] = t->shape[t->n_dims - 1 - d];
	r = gguf_writer_add_tensor(w, name, types[t->dtype], t->n_dims, ne, t->data, t->n_bytes);
	return r < 0 ? errbuf_set(e, r, "cannot add tensor '%s': %s", name, strerror(-r)) : 0;
}

static int add_hf_tensor(struct gguf_writer *w, const struct st_set *st, const struct model *m,
			 const struct calib_out *out, const struct hf_name *n, uint32_t li,
			 bool head_q5_0, void ***bufs, uint32_t *n_bufs, struct errbuf *e)
{
	char hf[256], gg[256], wname[272];
	const struct st_tensor *t;
	const struct calib_tensor *ct;
	int r;

	snprintf(hf, sizeof(hf), n->hf, li);
	snprintf(gg, sizeof(gg), n->gguf, li);
	if (!strcmp(n->gguf, "output.weight") && (ct = find_out(out, SA_HEAD_BASE ".weight"))) {
		/* a converted head, tied or not: a tensor of its own */
		r = add_linear(w, ct, n->gguf, bufs, n_bufs);
		return r < 0 ? errbuf_set(e, r, "cannot add the LM head: %s", strerror(-r)) : 0;
	}
	if (!n->linear) {
		/* an untied lm_head only: tied models reuse the embedding (and a Q5_0 head
		 * comes after the loop) */
		if (!strcmp(n->gguf, "output.weight") &&
		    (linear_dense_weights(&m->lm_head) == m->tok_embd || head_q5_0))
			return 0;
		t = hf_find(st, hf);
		if (!t)
			return errbuf_set(e, -EBADMSG, "tensor '%s' is missing", hf);
		return add_raw(w, t, gg, e);
	}
	snprintf(wname, sizeof(wname), "%s.weight", gg);
	ct = find_out(out, wname);
	if (!ct)
		return errbuf_set(e, -EINVAL, "%s was not converted", gg);
	r = add_linear(w, ct, wname, bufs, n_bufs);
	if (r < 0)
		return errbuf_set(e, r, "cannot add tensor '%s': %s", gg, strerror(-r));
	strncat(hf, ".bias", sizeof(hf) - strlen(hf) - 1);
	t = hf_find(st, hf);
	if (!t)
		return 0;
	snprintf(wname, sizeof(wname), "%s.bias", gg);
	return add_raw(w, t, wname, e);
}

/*
 * Gemma 3's extra keys (model_config.c gemma3_gguf() reads them back): the window, the
 * layer pattern, the sliding layers' RoPE base and the q.k scale.
 */
static int add_gemma3_keys(struct gguf_writer *w, const struct model_config *c)
{
	int r = gguf_writer_add_u32(w, "gemma3.attention.sliding_window", c->sliding_window);

	if (r == 0)
		r = gguf_writer_add_u32(w, "gemma3.attention.sliding_window_pattern",
					c->swa_period);
	if (r == 0)
		r = gguf_writer_add_f32(w, "gemma3.rope.freq_base_swa", c->rope_theta_swa);
	if (r == 0 && c->attn_scale)
		r = gguf_writer_add_f32(w, "gemma3.attention.scale", c->attn_scale);
	return r;
}

/* One f32 vector of the loaded model as GGUF tensor @name (borrowed until the write). */
static int add_vec(struct gguf_writer *w, const char *name, const float *v, uint32_t n,
		   struct errbuf *e)
{
	uint64_t ne[1] = { n };
	int r = gguf_writer_add_tensor(w, name, GGML_TYPE_F32, 1, ne, v, (size_t)n * sizeof(*v));

	return r < 0 ? errbuf_set(e, r, "cannot add tensor '%s': %s", name, strerror(-r)) : 0;
}

/*
 * HF Gemma's norms in GGUF form: the loader already folded their "1 +" in (as llama.cpp's
 * conversion does), so they are written from the model, as F32, under Gemma's GGUF names.
 */
static int add_folded_norms(struct gguf_writer *w, const struct model *m, struct errbuf *e)
{
	const struct model_config *c = &m->cfg;
	int r = add_vec(w, "output_norm.weight", m->out_norm, c->dim, e);

	for (uint32_t li = 0; r == 0 && li < c->n_layers; li++) {
		const struct model_layer *l = &m->layers[li];
		const struct {
			const char *name;
			const float *v;
			uint32_t n;
		} norms[] = {
			{ "attn_norm", l->attn_norm, c->dim },
			{ "attn_q_norm", l->q_norm, c->head_dim },
			{ "attn_k_norm", l->k_norm, c->head_dim },
			{ "post_attention_norm", l->post_attn_norm, c->dim },
			{ "ffn_norm", l->ffn_norm, c->dim },
			{ "post_ffw_norm", l->post_ffn_norm, c->dim },
		};

		for (size_t k = 0; r == 0 && k < sizeof(norms) / sizeof(norms[0]); k++) {
			char name[64];

			snprintf(name, sizeof(name), "blk.%u.%s.weight", li, norms[k].name);
			r = add_vec(w, name, norms[k].v, norms[k].n, e);
		}
	}
	return r;
}

/* The <arch>.* hyper-parameters as model_config_from_gguf() reads them back. */
static int add_hf_arch(struct gguf_writer *w, const struct model_config *c, const char *arch,
		       const char *name)
{
	char key[96];
	int r = 0;

#define KEY(suffix) (snprintf(key, sizeof(key), "%s.%s", arch, suffix), key)
#define TRY(x)                   \
	do {                     \
		if (r == 0)      \
			r = (x); \
	} while (0)
	TRY(gguf_writer_add_str(w, "general.architecture", arch, strlen(arch)));
	TRY(gguf_writer_add_str(w, "general.name", name, strlen(name)));
	TRY(gguf_writer_add_u32(w, KEY("context_length"), c->max_ctx));
	TRY(gguf_writer_add_u32(w, KEY("embedding_length"), c->dim));
	TRY(gguf_writer_add_u32(w, KEY("block_count"), c->n_layers));
	TRY(gguf_writer_add_u32(w, KEY("feed_forward_length"), c->ffn_dim));
	TRY(gguf_writer_add_u32(w, KEY("attention.head_count"), c->n_heads));
	TRY(gguf_writer_add_u32(w, KEY("attention.head_count_kv"), c->n_kv_heads));
	TRY(gguf_writer_add_u32(w, KEY("attention.key_length"), c->head_dim));
	TRY(gguf_writer_add_u32(w, KEY("attention.value_length"), c->head_dim));
	TRY(gguf_writer_add_u32(w, KEY("rope.dimension_count"), c->head_dim));
	TRY(gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps));
	TRY(gguf_writer_add_f32(w, KEY("rope.freq_base"), c->rope_theta));
	TRY(gguf_writer_add_u32(w, KEY("vocab_size"), c->n_vocab));
	if (c->rope_scaling == ROPE_SCALING_LINEAR) {
		TRY(gguf_writer_add_str(w, KEY("rope.scaling.type"), "linear", 6));
		TRY(gguf_writer_add_f32(w, KEY("rope.scaling.factor"), c->rope_factor));
	}
	if (c->qk_norm)
		TRY(add_gemma3_keys(w, c));
#undef TRY
#undef KEY
	return r;
}

/* What the GGUF reader cannot take back from an HF model: refuse instead of changing it. */
static int hf_check(const struct model *m, struct errbuf *e)
{
	const struct model_config *c = &m->cfg;
	bool gemma3 = c->qk_norm && c->post_norms && c->act == FFN_ACT_GELU_TANH && c->norm_offset;

	if (c->arch != ARCH_LLAMA)
		return errbuf_set(
			e, -EOPNOTSUPP,
			"only LLaMA-family HF folders (llama, mistral, qwen2, gemma3_text) "
			"can be written as GGUF");
	if (!gemma3 && (c->qk_norm || c->post_norms || c->act != FFN_ACT_SILU))
		return errbuf_set(e, -EOPNOTSUPP, "this mix of Gemma features has no GGUF form");
	if (gemma3 && c->rope_scaling != ROPE_SCALING_NONE)
		return errbuf_set(e, -EOPNOTSUPP, "Gemma 3 RoPE scaling has no GGUF form here");
	if (c->rope_scaling == ROPE_SCALING_LLAMA3)
		return errbuf_set(e, -EOPNOTSUPP,
				  "llama3 RoPE scaling has no GGUF metadata the loader reads");
	if (c->sliding_window && !gemma3)
		return errbuf_set(e, -EOPNOTSUPP,
				  "sliding-window attention has no GGUF metadata the loader reads");
	if (m->rope_pairing != ROPE_PAIR_HALF)
		return errbuf_set(e, -EINVAL, "the model was not loaded from an HF folder");
	return 0;
}

static int add_hf(struct gguf_writer *w, const char *dir, const struct model *m,
		  const struct calib_out *out, const struct export_meta *meta,
		  struct st_set **ret_st, void ***bufs, uint32_t *n_bufs, struct errbuf *e)
{
	const char *arch = m->cfg.qkv_bias ? "qwen2" : m->cfg.qk_norm ? "gemma3" : "llama";
	const char *base = strrchr(dir, '/');
	struct gguf_file *tg = NULL;
	void *timg = NULL;
	size_t blen;
	char name[256];
	int r;

	r = hf_check(m, e);
	if (r < 0)
		return r;
	/* the folder's own name, without trailing slashes */
	blen = strlen(dir);
	while (blen > 1 && dir[blen - 1] == '/')
		blen--;
	base = memrchr(dir, '/', blen);
	base = base ? base + 1 : dir;
	snprintf(name, sizeof(name), "%.*s", (int)(dir + blen - base), base);
	r = add_hf_arch(w, &m->cfg, arch, name);
	if (r < 0)
		return errbuf_set(e, r, "cannot build the metadata: %s", strerror(-r));
	r = export_tokenizer_hf(dir, m->tok, &tg, &timg, e);
	for (uint64_t i = 0; r == 0 && i < tg->n_kv; i++)
		r = copy_kv(w, &tg->kv[i]);
	gguf_close(tg);
	free(timg);
	if (r < 0)
		return r;
	r = add_meta(w, m, out, meta, dir);
	if (r < 0)
		return errbuf_set(e, r, "cannot build the metadata: %s", strerror(-r));
	r = st_open(dir, ret_st, e);
	if (r < 0)
		return r;
	for (uint32_t k = 0; r == 0 && k < sizeof(hf_names) / sizeof(hf_names[0]); k++) {
		const struct hf_name *n = &hf_names[k];

		/* Gemma's norms differ in names and values: written from the model below */
		if (m->cfg.norm_offset && strstr(n->gguf, "norm"))
			continue;
		for (uint32_t li = 0; r == 0 && li < (n->per_layer ? m->cfg.n_layers : 1); li++)
			r = add_hf_tensor(w, *ret_st, m, out, n, li, meta->head_q5_0, bufs, n_bufs,
					  e);
	}
	if (r == 0 && m->cfg.norm_offset)
		r = add_folded_norms(w, m, e);
	if (r == 0 && meta->head_q5_0)
		r = add_q5_head(w, m, bufs, n_bufs, e);
	return r;
}

int export_gguf(const char *src_path, const struct model *m, const struct calib_out *out,
		const struct export_meta *meta, const char *dst, struct errbuf *e)
{
	struct gguf_file *g = NULL;
	struct gguf_writer *w = NULL;
	struct st_set *st = NULL;
	void **bufs = NULL;
	uint32_t n_bufs = 0;
	struct stat sb;
	int r;

	if (stat(src_path, &sb) < 0)
		return errbuf_set(e, -errno, "cannot open '%s': %s", src_path, strerror(errno));
	w = gguf_writer_new();
	if (!w)
		return -ENOMEM;
	if (S_ISDIR(sb.st_mode)) {
		r = add_hf(w, src_path, m, out, meta, &st, &bufs, &n_bufs, e);
		if (r < 0)
			goto out;
		goto write;
	}
	r = gguf_open(src_path, &g, e);
	if (r < 0) {
		if (r == -EBADMSG)
			r = errbuf_set(e, -EOPNOTSUPP,
				       "converting needs a GGUF file or an HF folder as source");
		goto out;
	}
	if (g->alignment != 32)
		gguf_writer_set_alignment(w, (uint32_t)g->alignment);
	for (uint64_t i = 0; i < g->n_kv && r == 0; i++)
		r = copy_kv(w, &g->kv[i]);
	if (r == 0)
		r = add_meta(w, m, out, meta, src_path);
	if (r < 0) {
		errbuf_set(e, r, "cannot build the metadata: %s", strerror(-r));
		goto out;
	}
	r = add_tensors(w, g, m, out, meta->head_q5_0, &bufs, &n_bufs, e);
	if (r < 0)
		goto out;
write:
	r = gguf_writer_write(w, dst);
	if (r < 0)
		errbuf_set(e, r, "cannot write '%s': %s", dst, strerror(-r));
out:
	for (uint32_t i = 0; i < n_bufs; i++)
		free(bufs[i]);
	free(bufs);
	gguf_writer_free(w);
	gguf_close(g);
	st_close(st);
	return r;
}
