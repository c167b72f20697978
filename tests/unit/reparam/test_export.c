// SPDX-License-Identifier: MIT
/*
 * Converting from HF folders: a tiny seeded LLaMA / Qwen2 folder (config.json, safetensors,
 * tokenizer.json) is converted and loaded back through the GGUF path. fp gives the very
 * logits of the source folder; a calibrated method gives those of the in-memory quantized
 * model; token ids are those of the folder's tokenizer. The tokenizer export is also checked
 * on its own, on SmolLM2's byte-level vocabulary under each pre-tokenizer the GGUF form names
 * (the reference: the engine's tokenizer.json loader, itself checked against HF tokenizers),
 * and what has no GGUF form is refused.
 */
#include "engine/dtype.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/sa_format.h"
#include "engine/safetensors.h"
#include "engine/tok_internal.h"
#include "engine/tokenizer.h"
#include "reparam/calib.h"
#include "reparam/export.h"
#include "reparam/internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define SPM_META   "tests/fixtures/tokenizer/spm_bpe_meta.json"
#define SPM_LEGACY "tests/fixtures/tokenizer/spm_bpe.json"
#define SMOL	   "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define N_VOCAB	   1000 /* the SPM fixture's */

static const char *shared_dir(void)
{
	const char *s = getenv("SHIFTADD_SHARED");

	return s && *s ? s : "../shared";
}

static void sh(const char *fmt, const char *a, const char *b)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), fmt, a, b);
	assert_int_equal(system(cmd), 0);
}

/* ---- a tiny HF folder ---- */

struct tiny_cfg {
	bool qwen2;	  /* qkv bias, tied embeddings */
	bool gemma3;	  /* gemma3_text: windows, q/k norms, post-norms, tied embeddings */
	const char *rope; /* extra config.json members, e.g. a rope_scaling object */
	enum st_dtype dtype;
};

struct st_out {
	char *hdr;
	size_t hlen, hcap;
	uint8_t *data;
	size_t dlen, dcap;
	uint64_t seed;
};

static void hdr_add(struct st_out *o, const char *s)
{
	size_t n = strlen(s);

	if (o->hlen + n + 1 > o->hcap) {
		o->hcap = 2 * (o->hlen + n + 1);
		o->hdr = realloc(o->hdr, o->hcap);
		assert_non_null(o->hdr);
	}
	memcpy(o->hdr + o->hlen, s, n + 1);
	o->hlen += n;
}

/* One tensor of seeded values: norms around 1, the rest small. */
static void st_add(struct st_out *o, enum st_dtype dt, const char *name, uint64_t rows,
		   uint64_t cols, bool norm)
{
	static const char *const dts[] = { [ST_F32] = "F32", [ST_F16] = "F16", [ST_BF16] = "BF16" };
	size_t es = dt == ST_F32 ? 4 : 2, n = rows * cols, start = o->dlen;
	char buf[512];

	if (o->dlen + n * es > o->dcap) {
		o->dcap = 2 * (o->dlen + n * es);
		o->data = realloc(o->data, o->dcap);
		assert_non_null(o->data);
	}
	for (size_t i = 0; i < n; i++) {
		float v;

		o->seed = o->seed * 6364136223846793005ull + 1442695040888963407ull;
		v = (float)((double)(o->seed >> 11) / 9007199254740992.0 - 0.5);
		v = norm ? 1.0f + 0.2f * v : 0.08f * v;
		if (dt == ST_F32) {
			memcpy(o->data + o->dlen, &v, 4);
		} else {
			uint16_t h = dt == ST_F16 ? dtype_f32_to_f16(v) : dtype_f32_to_bf16(v);

			memcpy(o->data + o->dlen, &h, 2);
		}
		o->dlen += es;
	}
	if (rows == 1)
		snprintf(buf, sizeof(buf), "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu],",
			 o->hlen > 1 ? "," : "", name, dts[dt], (unsigned long long)cols);
	else
		snprintf(buf, sizeof(buf), "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu,%llu],",
			 o->hlen > 1 ? "," : "", name, dts[dt], (unsigned long long)rows,
			 (unsigned long long)cols);
	hdr_add(o, buf);
	snprintf(buf, sizeof(buf), "\"data_offsets\":[%zu,%zu]}", start, o->dlen);
	hdr_add(o, buf);
}

enum {
	DIM = 64,
	FFN = 96,
	HEADS = 4,
	LAYERS = 2
};

/*
 * Gemma 3 (transformers 4's layout): head_dim 32 != DIM / HEADS, a window of 5 keys in layer 0
 * (the fixture's windows of EVAL_N tokens reach far past it), a full layer 1, its own q.k
 * scale and RoPE bases.
 */
static void write_gemma3_config(FILE *f)
{
	fprintf(f,
		"{\"model_type\": \"gemma3_text\", \"hidden_size\": %d, \"intermediate_size\": %d, "
		"\"num_attention_heads\": %d, \"num_key_value_heads\": 2, \"head_dim\": 32, "
		"\"num_hidden_layers\": %d, \"vocab_size\": %d, \"max_position_embeddings\": 128, "
		"\"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, "
		"\"rope_local_base_freq\": 10000.0, \"sliding_window\": 5, "
		"\"layer_types\": [\"sliding_attention\", \"full_attention\"], "
		"\"query_pre_attn_scalar\": 24, \"hidden_activation\": \"gelu_pytorch_tanh\", "
		"\"tie_word_embeddings\": true}\n",
		DIM, FFN, HEADS, LAYERS, N_VOCAB);
}

static void write_tiny(const char *dir, const struct tiny_cfg *c, const char *tokenizer)
{
	struct st_out o = { .seed = c->qwen2 ? 7 : c->gemma3 ? 5 : 3 };
	uint32_t kv = c->qwen2 ? 1 : 2, hd = c->gemma3 ? 32 : DIM / HEADS;
	char path[512], name[128];
	uint64_t hsize;
	FILE *f;

	snprintf(path, sizeof(path), "%s/config.json", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	if (c->gemma3)
		write_gemma3_config(f);
	else
		fprintf(f,
			"{\"model_type\": \"%s\", \"hidden_size\": %d, \"intermediate_size\": %d, "
			"\"num_attention_heads\": %d, \"num_key_value_heads\": %u, "
			"\"num_hidden_layers\": %d, \"vocab_size\": %d, \"max_position_embeddings\": 128, "
			"\"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": %s%s}\n",
			c->qwen2 ? "qwen2" : "llama", DIM, FFN, HEADS, kv, LAYERS, N_VOCAB,
			c->qwen2 ? "true" : "false", c->rope ? c->rope : "");
	fclose(f);
	hdr_add(&o, "{");
	st_add(&o, c->dtype, "model.embed_tokens.weight", N_VOCAB, DIM, false);
	for (uint32_t l = 0; l < LAYERS; l++) {
		static const char *const lin[7] = { "self_attn.q_proj", "self_attn.k_proj",
						    "self_attn.v_proj", "self_attn.o_proj",
						    "mlp.gate_proj",	"mlp.up_proj",
						    "mlp.down_proj" };
		const uint64_t rows[7] = { HEADS * hd, kv * hd, kv * hd, DIM, FFN, FFN, DIM };
		const uint64_t cols[7] = { DIM, DIM, DIM, HEADS * hd, DIM, DIM, FFN };
		static const char *const gnorms[3] = { "self_attn.q_norm", "self_attn.k_norm",
						       "pre_feedforward_layernorm" };
		static const char *const post_ffn = "post_feedforward_layernorm";

		snprintf(name, sizeof(name), "model.layers.%u.input_layernorm.weight", l);
		st_add(&o, c->dtype, name, 1, DIM, true);
		snprintf(name, sizeof(name), "model.layers.%u.post_attention_layernorm.weight", l);
		st_add(&o, c->dtype, name, 1, DIM, true);
		for (uint32_t i = 0; c->gemma3 && i < 4; i++) {
			snprintf(name, sizeof(name), "model.layers.%u.%s.weight", l,
				 i < 3 ? gnorms[i] : post_ffn);
			st_add(&o, c->dtype, name, 1, i < 2 ? hd : DIM, true);
		}
		for (uint32_t i = 0; i < 7; i++) {
			snprintf(name, sizeof(name), "model.layers.%u.%s.weight", l, lin[i]);
			st_add(&o, c->dtype, name, rows[i], cols[i], false);
			if (c->qwen2 && i < 3) {
				snprintf(name, sizeof(name), "model.layers.%u.%s.bias", l, lin[i]);
				st_add(&o, c->dtype, name, 1, rows[i], false);
			}
		}
	}
	st_add(&o, c->dtype, "model.norm.weight", 1, DIM, true);
	if (!c->qwen2 && !c->gemma3)
		st_add(&o, c->dtype, "lm_head.weight", N_VOCAB, DIM, false);
	hdr_add(&o, "}");
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	f = fopen(path, "wb");
	assert_non_null(f);
	hsize = o.hlen;
	assert_int_equal(fwrite(&hsize, 8, 1, f), 1);
	assert_int_equal(fwrite(o.hdr, 1, o.hlen, f), o.hlen);
	assert_int_equal(fwrite(o.data, 1, o.dlen, f), o.dlen);
	assert_int_equal(fclose(f), 0);
	free(o.hdr);
	free(o.data);
	if (tokenizer)
		sh("cp %s %s/tokenizer.json", tokenizer, dir);
}

/* ---- helpers ---- */

#define EVAL_N 48

static float *logits_of(const struct model *m, const int32_t *ids, uint32_t n)
{
	uint32_t nv = m->cfg.n_vocab, seq[EVAL_N] = { 0 }, pos[EVAL_N];
	float *hid = malloc((size_t)n * m->cfg.dim * sizeof(float));
	float *lg = malloc((size_t)n * nv * sizeof(float));
	struct kv_cache kv;

	assert_true(hid && lg && n <= EVAL_N);
	for (uint32_t i = 0; i < n; i++)
		pos[i] = i;
	assert_int_equal(kv_cache_init(&kv, m, 1, n), 0);
	assert_int_equal(model_forward(m, &kv, ids, seq, pos, n, hid), 0);
	model_logits(m, hid, n, lg);
	kv_cache_done(&kv);
	free(hid);
	return lg;
}

static const char sample[] = "The quick brown fox, 42 times: naïve café!\n\n  Indented <s> line.";

/* Both models' tokenizers give the same ids for the sample; the first EVAL_N of them. */
static uint32_t same_ids(const struct model *a, const struct model *b, int32_t *ids)
{
	int32_t *x, *y;
	size_t nx, ny;

	assert_non_null(a->tok);
	assert_non_null(b->tok);
	for (int special = 0; special < 2; special++) {
		assert_int_equal(tokenizer_encode(a->tok, sample, strlen(sample), special, &x, &nx),
				 0);
		assert_int_equal(tokenizer_encode(b->tok, sample, strlen(sample), special, &y, &ny),
				 0);
		assert_true(nx > 10);
		assert_int_equal(nx, ny);
		assert_memory_equal(x, y, nx * sizeof(*x));
		if (special)
			memcpy(ids, x, (nx < EVAL_N ? nx : EVAL_N) * sizeof(*ids));
		free(x);
		free(y);
	}
	return (uint32_t)(nx < EVAL_N ? nx : EVAL_N);
}

/* @head_bits: quantize the LM head too (calib_run.head_bits), 0 = keep it. */
static int convert_head(const char *dir, enum reparam_method method, enum calib_dtype dt,
			bool head_q5_0, uint32_t head_bits, const char *dst, struct model **ret_m,
			struct errbuf *e)
{
	struct calib_run run = { .head_bits = head_bits };
	struct calib_out out;
	struct export_meta meta;
	int32_t tokens[4 * 32];
	int r;

	for (uint32_t i = 0; i < 4 * 32; i++)
		tokens[i] = (int32_t)((i * 389 + 17) % N_VOCAB);
	reparam_opts_init(&run.q, method, 3);
	run.q.rounds = 3;
	run.calib =
		(struct calib_opts){ .nsamples = 4, .seqlen = 32, .tokens = tokens, .dtype = dt };
	r = model_load(dir, ret_m, e);
	if (r < 0)
		return r;
	r = calib_quantize_model(*ret_m, &run, &out, e);
	if (r < 0)
		return r;
	meta = (struct export_meta){ .run = &run,
				     .calib_file = "(tokens)",
				     .calib_tokens = out.n_tokens,
				     .head_q5_0 = head_q5_0 };
	r = export_gguf(dir, *ret_m, &out, &meta, dst, e);
	calib_out_done(&out);
	return r;
}

static int convert(const char *dir, enum reparam_method method, enum calib_dtype dt,
		   const char *dst, struct model **ret_m, struct errbuf *e)
{
	return convert_head(dir, method, dt, false, 0, dst, ret_m, e);
}

struct fx {
	char dir[64], out[128];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/shiftadd-export-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->out, sizeof(f->out), "%s.gguf", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", f->dir, f->out);
	if (system(cmd))
		return -1;
	free(f);
	return 0;
}

static const char *kv_str(const struct gguf_file *g, const char *key, char *buf, size_t cap)
{
	const char *s;
	size_t len;

	assert_int_equal(gguf_get_str(g, key, &s, &len), 0);
	snprintf(buf, cap, "%.*s", (int)len, s);
	return buf;
}

/* ---- the converted HF folder ---- */

/* fp: the converted file runs exactly as the source folder (bitwise equal logits). */
static void check_fp(struct fx *f, const struct tiny_cfg *c, enum ggml_type want_type)
{
	struct errbuf e = { { 0 } };
	struct model *src = NULL, *conv = NULL, *back = NULL;
	struct gguf_file *g = NULL;
	int32_t ids[EVAL_N];
	char buf[64];
	float *a, *b;
	uint32_t n;
	int r;

	write_tiny(f->dir, c, SPM_META);
	r = convert(f->dir, REPARAM_FP, CALIB_DTYPE_F32, f->out, &conv, &e);
	if (r < 0)
		fail_msg("convert: %s", errbuf_str(&e, r));
	model_free(conv);
	r = model_load(f->out, &back, &e);
	if (r < 0)
		fail_msg("load back: %s", errbuf_str(&e, r));
	assert_int_equal(model_load(f->dir, &src, &e), 0);
	assert_int_equal(back->rope_pairing, ROPE_PAIR_HALF);
	assert_int_equal(back->cfg.n_kv_heads, src->cfg.n_kv_heads);
	assert_int_equal(back->cfg.tied_embeddings, c->qwen2 || c->gemma3);
	assert_int_equal(back->cfg.qkv_bias, c->qwen2);
	n = same_ids(src, back, ids);
	a = logits_of(src, ids, n);
	b = logits_of(back, ids, n);
	assert_memory_equal(a, b, (size_t)n * N_VOCAB * sizeof(float));
	free(a);
	free(b);

	assert_int_equal(gguf_open(f->out, &g, &e), 0);
	assert_string_equal(kv_str(g, "general.architecture", buf, sizeof(buf)), c->qwen2 ? "qwen2"
										 : c->gemma3
											 ? "gemma3"
											 : "llama");
	assert_string_equal(kv_str(g, "tokenizer.ggml.model", buf, sizeof(buf)), "llama");
	assert_string_equal(kv_str(g, "shiftadd.method", buf, sizeof(buf)), "fp");
	assert_int_equal(gguf_find_tensor(g, "token_embd.weight")->type, want_type);
	/* Gemma's norms are written with their "1 +" folded in, as f32 */
	assert_int_equal(gguf_find_tensor(g, "blk.1.ffn_norm.weight")->type,
			 c->gemma3 ? GGML_TYPE_F32 : want_type);
	assert_int_equal(gguf_find_tensor(g, "blk.0.attn_q.weight")->type, GGML_TYPE_F32);
	assert_true(!gguf_find_tensor(g, "output.weight") == (c->qwen2 || c->gemma3));
	assert_true(!gguf_find_tensor(g, "blk.1.attn_k_norm.weight") == !c->gemma3);
	assert_true(!gguf_find_tensor(g, "blk.1.post_ffw_norm.weight") == !c->gemma3);
	assert_true(!gguf_find_tensor(g, "blk.1.attn_v.bias") == !c->qwen2);
	gguf_close(g);
	model_free(src);
	model_free(back);
}

static void test_hf_llama_bf16_fp_roundtrip(void **state)
{
	struct tiny_cfg c = { .dtype = ST_BF16 };

	check_fp(*state, &c, GGML_TYPE_BF16);
}

static void test_hf_qwen2_f32_fp_roundtrip(void **state)
{
	struct tiny_cfg c = { .qwen2 = true, .dtype = ST_F32 };

	check_fp(*state, &c, GGML_TYPE_F32);
}

static void test_hf_gemma3_bf16_fp_roundtrip(void **state)
{
	struct tiny_cfg c = { .gemma3 = true, .dtype = ST_BF16 };

	check_fp(*state, &c, GGML_TYPE_BF16);
}

/*
 * A calibrated method (f16 calibration storage): the file holds the planes and runs as the
 * in-memory quantized model; the metadata records the calibration dtype.
 */
static void check_calibrated(struct fx *f, const struct tiny_cfg *c)
{
	struct errbuf e = { { 0 } };
	struct model *q = NULL, *back = NULL;
	struct gguf_file *g = NULL;
	int32_t ids[EVAL_N];
	char buf[64];
	float *a, *b;
	uint32_t n;
	int r;

	write_tiny(f->dir, c, SPM_META);
	r = convert(f->dir, REPARAM_SHIFTADD_ACC, CALIB_DTYPE_F16, f->out, &q, &e);
	if (r < 0)
		fail_msg("convert: %s", errbuf_str(&e, r));
	r = model_load(f->out, &back, &e);
	if (r < 0)
		fail_msg("load back: %s", errbuf_str(&e, r));
	n = same_ids(q, back, ids);
	a = logits_of(q, ids, n);
	b = logits_of(back, ids, n);
	assert_memory_equal(a, b, (size_t)n * N_VOCAB * sizeof(float));
	free(a);
	free(b);
	assert_int_equal(gguf_open(f->out, &g, &e), 0);
	assert_string_equal(kv_str(g, "shiftadd.calib.dtype", buf, sizeof(buf)), "f16");
	assert_string_equal(kv_str(g, "shiftadd.method", buf, sizeof(buf)), "shiftadd-acc");
	assert_true(sa_format_present(g, "blk.1.ffn_down"));
	assert_int_equal(gguf_find_tensor(g, "token_embd.weight")->type, GGML_TYPE_F16);
	gguf_close(g);
	model_free(q);
	model_free(back);
}

static void test_hf_calibrated_matches_in_memory_model(void **state)
{
	struct tiny_cfg c = { .dtype = ST_F16 };

	check_calibrated(*state, &c);
}

/* Gemma 3: the calibration's post-norms and windows, then the file, give the same logits. */
static void test_hf_gemma3_calibrated_matches_in_memory_model(void **state)
{
	struct tiny_cfg c = { .gemma3 = true, .dtype = ST_F16 };

	check_calibrated(*state, &c);
}

/* sqrt(sum (a - b)^2 / sum a^2) over @n values. */
static double rel_l2(const float *a, const float *b, size_t n)
{
	double err2 = 0, ref2 = 0;

	for (size_t i = 0; i < n; i++) {
		err2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
		ref2 += (double)a[i] * a[i];
	}
	return sqrt(err2 / ref2);
}

/*
 * --head q5_0: the LM head (tied or not) becomes its own Q5_0 output.weight, each weight
 * within one step of its block's scale of the source head (half a step but at the clamped
 * top), the embedding keeps its source type, and the file loads with the head on the 5-bit
 * backend, giving logits close to the source's.
 */
static void check_q5_head(struct fx *f, const struct tiny_cfg *c, enum ggml_type embd_type)
{
	struct errbuf e = { { 0 } };
	struct model *q = NULL, *back = NULL;
	struct gguf_file *g = NULL;
	const struct gguf_tensor *t;
	const float *src;
	double rel;
	int32_t ids[EVAL_N];
	float *deq, *a, *b;
	uint64_t nw;
	char buf[16];
	uint32_t n;
	int r;

	write_tiny(f->dir, c, SPM_META);
	r = convert_head(f->dir, REPARAM_FP, CALIB_DTYPE_F32, true, 0, f->out, &q, &e);
	if (r < 0)
		fail_msg("convert: %s", errbuf_str(&e, r));
	src = c->qwen2 ? q->tok_embd : linear_dense_weights(&q->lm_head);
	assert_non_null(src);
	nw = (uint64_t)q->cfg.n_vocab * q->cfg.dim;
	assert_int_equal(gguf_open(f->out, &g, &e), 0);
	assert_string_equal(kv_str(g, "shiftadd.head", buf, sizeof(buf)), "q5_0");
	assert_int_equal(gguf_find_tensor(g, "token_embd.weight")->type, embd_type);
	t = gguf_find_tensor(g, "output.weight");
	assert_non_null(t);
	assert_int_equal(t->type, GGML_TYPE_Q5_0);
	assert_int_equal(t->n_elems, nw);
	deq = malloc(nw * sizeof(float));
	assert_non_null(deq);
	dtype_info(GGML_TYPE_Q5_0)->to_f32(t->data, deq, nw);
	for (uint64_t i = 0; i < nw; i++) {
		const uint8_t *blk = (const uint8_t *)t->data + i / 32 * 22;
		float d = fabsf(dtype_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)));

		assert_true(fabsf(deq[i] - src[i]) <= d * 1.001f);
	}
	free(deq);
	gguf_close(g);
	r = model_load(f->out, &back, &e);
	if (r < 0)
		fail_msg("load back: %s", errbuf_str(&e, r));
	assert_string_equal(back->lm_head.ops->name, "q5_0");
	n = same_ids(q, back, ids);
	a = logits_of(q, ids, n);
	b = logits_of(back, ids, n);
	rel = rel_l2(a, b, (size_t)n * N_VOCAB);
	/* 5-bit weights: a few percent of the logits' size, not more */
	print_message("q5_0 head (%s): relative logit error %.4f\n", c->qwen2 ? "tied" : "untied",
		      rel);
	assert_true(rel < 0.05);
	free(a);
	free(b);
	model_free(q);
	model_free(back);
}

static void test_hf_q5_0_head_untied(void **state)
{
	struct tiny_cfg c = { .dtype = ST_BF16 };

	check_q5_head(*state, &c, GGML_TYPE_BF16);
}

static void test_hf_q5_0_head_tied(void **state)
{
	struct tiny_cfg c = { .qwen2 = true, .dtype = ST_F32 };

	check_q5_head(*state, &c, GGML_TYPE_F32);
}

/*
 * --head shiftadd: the calibrated head (4 bits) becomes shift-add planes "output" of its own,
 * tied or not, from an HF folder or from a GGUF file (the folder converted with fp first);
 * the embedding keeps its source type and no "output.weight" is left. Loaded back, the file
 * gives the in-memory model's logits: the very bits on the dense path without transforms
 * (shiftadd-acc), f32 rounding with the head's Hadamard transforms (shiftadd-rht), and on
 * the shift-add kernels, which take every linear and the head.
 */
static void check_sa_head(struct fx *f, const struct tiny_cfg *c, enum reparam_method method,
			  bool from_gguf)
{
	struct model_load_opts kern = { .backend = LINEAR_BACKEND_SHIFTADD };
	struct errbuf e = { { 0 } };
	struct model *q = NULL, *back = NULL, *fast = NULL, *fp = NULL;
	struct gguf_file *g = NULL;
	char src[160], buf[16];
	enum ggml_type embd_type = GGML_TYPE_F32;
	int32_t ids[EVAL_N];
	float *a, *b, *k;
	uint32_t n;
	int r;

	write_tiny(f->dir, c, SPM_META);
	snprintf(src, sizeof(src), "%s", f->dir);
	if (from_gguf) {
		snprintf(src, sizeof(src), "%s.fp.gguf", f->dir);
		r = convert_head(f->dir, REPARAM_FP, CALIB_DTYPE_F32, false, 0, src, &fp, &e);
		if (r < 0)
			fail_msg("convert to fp: %s", errbuf_str(&e, r));
		model_free(fp);
		assert_int_equal(gguf_open(src, &g, &e), 0);
		embd_type = gguf_find_tensor(g, "token_embd.weight")->type;
		gguf_close(g);
	}
	r = convert_head(src, method, CALIB_DTYPE_F32, false, 4, f->out, &q, &e);
	if (r < 0)
		fail_msg("convert: %s", errbuf_str(&e, r));
	assert_int_equal(gguf_open(f->out, &g, &e), 0);
	assert_string_equal(kv_str(g, "shiftadd.head", buf, sizeof(buf)), "shiftadd");
	assert_true(sa_format_present(g, "output"));
	assert_null(gguf_find_tensor(g, "output.weight"));
	if (from_gguf)
		assert_int_equal(gguf_find_tensor(g, "token_embd.weight")->type, embd_type);
	gguf_close(g);

	r = model_load(f->out, &back, &e);
	if (r == 0)
		r = model_load_ex(f->out, &kern, &fast, &e);
	if (r < 0)
		fail_msg("load back: %s", errbuf_str(&e, r));
	assert_int_equal(fast->n_shiftadd, 7 * LAYERS + 1);
	n = same_ids(q, back, ids);
	a = logits_of(q, ids, n);
	b = logits_of(back, ids, n);
	k = logits_of(fast, ids, n);
	if (method == REPARAM_SHIFTADD_ACC)
		assert_memory_equal(a, b, (size_t)n * N_VOCAB * sizeof(float));
	else
		assert_true(rel_l2(a, b, (size_t)n * N_VOCAB) < 1e-5);
	print_message("shift-add head (%s, %s): kernels vs in-memory logits %.2e\n",
		      c->qwen2 ? "tied" : "untied", from_gguf ? "GGUF source" : "HF source",
		      rel_l2(a, k, (size_t)n * N_VOCAB));
	assert_true(rel_l2(a, k, (size_t)n * N_VOCAB) < 1e-3);
	free(a);
	free(b);
	free(k);
	model_free(q);
	model_free(back);
	model_free(fast);
	unlink(src);
}

static void test_hf_sa_head_untied(void **state)
{
	struct tiny_cfg c = { .dtype = ST_BF16 };

	check_sa_head(*state, &c, REPARAM_SHIFTADD_ACC, false);
}

static void test_hf_sa_head_tied_rht(void **state)
{
	struct tiny_cfg c = { .qwen2 = true, .dtype = ST_F32 };

	check_sa_head(*state, &c, REPARAM_SHIFTADD_RHT, false);
}

static void test_gguf_sa_head_tied_and_untied(void **state)
{
	struct tiny_cfg tied = { .qwen2 = true, .dtype = ST_F16 }, untied = { .dtype = ST_F16 };

	check_sa_head(*state, &tied, REPARAM_SHIFTADD_RHT, true);
	check_sa_head(*state, &untied, REPARAM_SHIFTADD_ACC, true);
}

/* What the GGUF form cannot carry is refused, and nothing is written. */
static void test_hf_unsupported_is_refused(void **state)
{
	struct fx *f = *state;
	struct tiny_cfg llama3 = {
		.dtype = ST_F32,
		.rope = ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
			"\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
			"\"original_max_position_embeddings\": 32}"
	};
	struct tiny_cfg plain = { .dtype = ST_F32 };
	struct errbuf e = { { 0 } };
	struct model *m = NULL;

	unlink(f->out);
	write_tiny(f->dir, &llama3, SPM_META);
	assert_int_equal(convert(f->dir, REPARAM_RTN, CALIB_DTYPE_F32, f->out, &m, &e),
			 -EOPNOTSUPP);
	assert_non_null(strstr(e.msg, "llama3 RoPE"));
	model_free(m);
	assert_int_not_equal(access(f->out, F_OK), 0);

	/* the legacy SPM layout prepends "▁" after every special token: GGUF cannot say so */
	write_tiny(f->dir, &plain, SPM_LEGACY);
	assert_int_equal(convert(f->dir, REPARAM_RTN, CALIB_DTYPE_F32, f->out, &m, &e),
			 -EOPNOTSUPP);
	assert_non_null(strstr(e.msg, "encodes differently"));
	model_free(m);
	assert_int_not_equal(access(f->out, F_OK), 0);

	sh("rm -f %s/tokenizer.json%s", f->dir, "");
	assert_int_equal(convert(f->dir, REPARAM_RTN, CALIB_DTYPE_F32, f->out, &m, &e),
			 -EOPNOTSUPP);
	assert_non_null(strstr(e.msg, "no tokenizer.json"));
	model_free(m);
	assert_int_not_equal(access(f->out, F_OK), 0);
}

/* ---- the tokenizer on its own: SmolLM2's byte-level vocabulary as tokenizer.json ---- */

enum pre_kind {
	PRE_GPT2,
	PRE_SMOLLM,
	PRE_LLAMA3,
	PRE_QWEN2,
	PRE_NORMALIZED,
	PRE_LSTRIP
};

static cJSON *pre_json(enum pre_kind k)
{
	cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray(), *a, *b, *pat;

	cJSON_AddStringToObject(seq, "type", "Sequence");
	cJSON_AddItemToObject(seq, "pretokenizers", list);
	a = cJSON_CreateObject();
	b = cJSON_CreateObject();
	cJSON_AddStringToObject(b, "type", "ByteLevel");
	cJSON_AddFalseToObject(b, "add_prefix_space");
	cJSON_AddBoolToObject(b, "use_regex", k != PRE_LLAMA3 && k != PRE_QWEN2);
	if (k == PRE_LLAMA3 || k == PRE_QWEN2) {
		cJSON_AddStringToObject(a, "type", "Split");
		pat = cJSON_AddObjectToObject(a, "pattern");
		cJSON_AddStringToObject(pat, "Regex",
					k == PRE_LLAMA3 ? export_re_llama3 : export_re_qwen2);
		cJSON_AddStringToObject(a, "behavior", "Isolated");
		cJSON_AddFalseToObject(a, "invert");
		cJSON_AddItemToArray(list, a);
	} else if (k != PRE_GPT2) {
		cJSON_AddStringToObject(a, "type", "Digits");
		cJSON_AddTrueToObject(a, "individual_digits");
		cJSON_AddItemToArray(list, a);
	} else {
		cJSON_Delete(a);
	}
	cJSON_AddItemToArray(list, b);
	return seq;
}

/* SmolLM2's vocabulary, merges and special tokens (from its GGUF) as @dir/tokenizer.json. */
static void write_smol_json(const struct gguf_file *g, const char *dir, enum pre_kind k)
{
	const struct gguf_kv *toks, *types, *merges;
	cJSON *root = cJSON_CreateObject(), *model, *vocab, *ml, *added;
	char path[512], *text;
	FILE *f;

	assert_int_equal(gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &toks), 0);
	assert_int_equal(gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_VT_INT32, &types), 0);
	assert_int_equal(gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_VT_STRING, &merges), 0);
	added = cJSON_AddArrayToObject(root, "added_tokens");
	if (k == PRE_NORMALIZED) {
		cJSON *n = cJSON_AddObjectToObject(root, "normalizer"), *p;

		cJSON_AddStringToObject(n, "type", "Replace");
		p = cJSON_AddObjectToObject(n, "pattern");
		cJSON_AddStringToObject(p, "String", "\t");
		cJSON_AddStringToObject(n, "content", " ");
	} else {
		cJSON_AddNullToObject(root, "normalizer");
	}
	cJSON_AddItemToObject(root, "pre_tokenizer", pre_json(k));
	model = cJSON_AddObjectToObject(root, "model");
	cJSON_AddStringToObject(model, "type", "BPE");
	cJSON_AddBoolToObject(model, "ignore_merges", k == PRE_LLAMA3);
	vocab = cJSON_AddObjectToObject(model, "vocab");
	ml = cJSON_AddArrayToObject(model, "merges");
	for (uint64_t i = 0; i < toks->n; i++) {
		const struct gguf_str *s = &((const struct gguf_str *)toks->data)[i];
		char *t = strndup(s->data, s->len);

		cJSON_AddNumberToObject(vocab, t, (double)i);
		if (gguf_arr_num(types, i) == 3) {
			cJSON *a = cJSON_CreateObject();

			cJSON_AddNumberToObject(a, "id", (double)i);
			cJSON_AddStringToObject(a, "content", t);
			cJSON_AddTrueToObject(a, "special");
			cJSON_AddBoolToObject(a, "lstrip", k == PRE_LSTRIP);
			cJSON_AddItemToArray(added, a);
		}
		free(t);
	}
	for (uint64_t i = 0; i < merges->n; i++) {
		const struct gguf_str *s = &((const struct gguf_str *)merges->data)[i];
		char *t = strndup(s->data, s->len);

		cJSON_AddItemToArray(ml, cJSON_CreateString(t));
		free(t);
	}
	text = cJSON_PrintUnformatted(root);
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	fclose(f);
	free(text);
	cJSON_Delete(root);
}

/* The first 300 KB of WikiText-2's test rows (NULL if the shared data is absent). */
static char *wiki_sample(size_t *len)
{
	char path[512];
	char *buf = malloc(300000 + 1);
	FILE *f;

	snprintf(path, sizeof(path), "%s/data/wikitext-2/wiki.test.rows.txt", shared_dir());
	f = fopen(path, "rb");
	if (!f || !buf) {
		free(buf);
		if (f)
			fclose(f);
		return NULL;
	}
	*len = fread(buf, 1, 300000, f);
	fclose(f);
	/* cut at a line end: no split UTF-8 sequence */
	while (*len && buf[*len - 1] != '\n')
		(*len)--;
	buf[*len] = 0;
	return buf;
}

static void test_byte_level_tokenizers_round_trip(void **state)
{
	struct fx *f = *state;
	static const char *const want[4] = { "gpt2", "smollm", "llama-bpe", "qwen2" };
	struct gguf_file *smol = NULL;
	size_t wlen = 0;
	char *wiki = wiki_sample(&wlen);

	if (!wiki)
		fail_msg("cannot read WikiText-2 under %s/data", shared_dir());
	assert_int_equal(gguf_open(SMOL, &smol, NULL), 0);
	for (enum pre_kind k = PRE_GPT2; k <= PRE_QWEN2; k++) {
		struct errbuf e = { { 0 } };
		struct tokenizer *ref = NULL, *back = NULL;
		struct gguf_file *g = NULL;
		char path[512], buf[32];
		void *img = NULL;
		int32_t *a, *b;
		size_t na, nb;
		int r;

		write_smol_json(smol, f->dir, k);
		snprintf(path, sizeof(path), "%s/tokenizer.json", f->dir);
		assert_int_equal(tokenizer_from_hf_json(path, &ref, &e), 0);
		r = export_tokenizer_hf(f->dir, ref, &g, &img, &e);
		if (r < 0)
			fail_msg("%s: %s", want[k], errbuf_str(&e, r));
		assert_string_equal(kv_str(g, "tokenizer.ggml.pre", buf, sizeof(buf)), want[k]);
		assert_int_equal(tokenizer_from_gguf(g, &back, &e), 0);
		for (int special = 0; special < 2; special++) {
			assert_int_equal(tokenizer_encode(ref, wiki, wlen, special, &a, &na), 0);
			assert_int_equal(tokenizer_encode(back, wiki, wlen, special, &b, &nb), 0);
			assert_true(na > 50000);
			assert_int_equal(na, nb);
			assert_memory_equal(a, b, na * sizeof(*a));
			free(a);
			free(b);
		}
		printf("tokenizer %s: %zu WikiText ids identical after GGUF round trip\n", want[k],
		       na);
		tokenizer_free(back);
		tokenizer_free(ref);
		gguf_close(g);
		free(img);
	}
	/* no GGUF form: a normalizer on a byte-level model, lstrip on an added token */
	for (enum pre_kind k = PRE_NORMALIZED; k <= PRE_LSTRIP; k++) {
		struct errbuf e = { { 0 } };
		struct tokenizer *ref = NULL;
		struct gguf_file *g = NULL;
		char path[512];
		void *img = NULL;

		write_smol_json(smol, f->dir, k);
		snprintf(path, sizeof(path), "%s/tokenizer.json", f->dir);
		assert_int_equal(tokenizer_from_hf_json(path, &ref, &e), 0);
		assert_int_equal(export_tokenizer_hf(f->dir, ref, &g, &img, &e), -EOPNOTSUPP);
		assert_null(g);
		printf("refused as it should be: %s\n", e.msg);
		tokenizer_free(ref);
	}
	gguf_close(smol);
	free(wiki);
}

/* The regexes the exporter names are the ones the engine compiles for those names. */
static void test_export_regexes_are_the_engines(void **state)
{
	assert_string_equal(export_re_llama3, tok_re_llama3);
	assert_string_equal(export_re_qwen2, tok_re_qwen2);
}

int test_export_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_export_regexes_are_the_engines),
		cmocka_unit_test(test_hf_llama_bf16_fp_roundtrip),
		cmocka_unit_test(test_hf_qwen2_f32_fp_roundtrip),
		cmocka_unit_test(test_hf_gemma3_bf16_fp_roundtrip),
		cmocka_unit_test(test_hf_calibrated_matches_in_memory_model),
		cmocka_unit_test(test_hf_gemma3_calibrated_matches_in_memory_model),
		cmocka_unit_test(test_hf_q5_0_head_untied),
		cmocka_unit_test(test_hf_q5_0_head_tied),
		cmocka_unit_test(test_hf_sa_head_untied),
		cmocka_unit_test(test_hf_sa_head_tied_rht),
		cmocka_unit_test(test_gguf_sa_head_tied_and_untied),
		cmocka_unit_test(test_hf_unsupported_is_refused),
		cmocka_unit_test(test_byte_level_tokenizers_round_trip),
	};
	return cmocka_run_group_tests_name("reparam/export", tests, setup, teardown);
}
