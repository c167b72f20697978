// SPDX-License-Identifier: MIT
/*
 * Model hyper-parameters from an HF config.json (cJSON) or from GGUF metadata. Defaults follow
 * the transformers configuration classes where a field may be absent.
 */
#include "engine/model_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"

#define CONFIG_MAX_BYTES (16u << 20)

static void config_defaults(struct model_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->bos_id = -1;
	cfg->eos_id = -1;
	cfg->rope_factor = 1.0f;
	cfg->embed_scale = 1.0f;
}

/* Integer field @key: 0, -ENOENT if absent or null, -EBADMSG if not a uint32. */
static int j_u32(const cJSON *o, const char *key, uint32_t *ret)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
	double v;

	if (!j || cJSON_IsNull(j))
		return -ENOENT;
	if (!cJSON_IsNumber(j))
		return -EBADMSG;
	v = j->valuedouble;
	if (!(v >= 0 && v <= UINT32_MAX) || v != floor(v))
		return -EBADMSG;
	*ret = (uint32_t)v;
	return 0;
}

static int j_f32(const cJSON *o, const char *key, float *ret)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!j || cJSON_IsNull(j))
		return -ENOENT;
	if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))
		return -EBADMSG;
	*ret = (float)j->valuedouble;
	return 0;
}

static int j_bool(const cJSON *o, const char *key, bool *ret)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!j || cJSON_IsNull(j))
		return -ENOENT;
	if (!cJSON_IsBool(j))
		return -EBADMSG;
	*ret = cJSON_IsTrue(j);
	return 0;
}

/* A required uint32 field: a missing or ill-typed value is -EBADMSG with a message. */
static int need_u32(const cJSON *o, const char *key, uint32_t *ret, struct errbuf *e)
{
	int r = j_u32(o, key, ret);

	if (r == -ENOENT)
		return errbuf_set(e, -EBADMSG, "missing \"%s\"", key);
	if (r)
		return errbuf_set(e, r, "\"%s\" is not a non-negative integer", key);
	return 0;
}

/* An optional uint32 field with a default. */
static int opt_u32(const cJSON *o, const char *key, uint32_t def, uint32_t *ret, struct errbuf *e)
{
	int r = j_u32(o, key, ret);

	if (r == -ENOENT) {
		*ret = def;
		return 0;
	}
	if (r)
		return errbuf_set(e, r, "\"%s\" is not a non-negative integer", key);
	return 0;
}

static int opt_f32(const cJSON *o, const char *key, float def, float *ret, struct errbuf *e)
{
	int r = j_f32(o, key, ret);

	if (r == -ENOENT) {
		*ret = def;
		return 0;
	}
	if (r)
		return errbuf_set(e, r, "\"%s\" is not a number", key);
	return 0;
}

static int opt_bool(const cJSON *o, const char *key, bool def, bool *ret, struct errbuf *e)
{
	int r = j_bool(o, key, ret);

	if (r == -ENOENT) {
		*ret = def;
		return 0;
	}
	if (r)
		return errbuf_set(e, r, "\"%s\" is not a boolean", key);
	return 0;
}

/* bos/eos: an integer, null, or (eos in Llama 3.1) a list whose first entry we take. */
static int token_id(const cJSON *o, const char *key, int32_t *ret, struct errbuf *e)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

	if (cJSON_IsArray(j))
		j = cJSON_GetArrayItem(j, 0);
	if (!j || cJSON_IsNull(j))
		return 0;
	if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) ||
	    !(j->valuedouble >= 0 && j->valuedouble <= INT32_MAX))
		return errbuf_set(e, -EBADMSG, "\"%s\" is not a token id", key);
	*ret = (int32_t)j->valuedouble;
	return 0;
}

static int str_is(const cJSON *o, const char *key, const char *want)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(j) && !strcmp(j->valuestring, want);
}

static int parse_rope_scaling(const cJSON *root, struct model_config *cfg, struct errbuf *e)
{
	const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
	const cJSON *type;
	int r;

	/* transformers >= 5 writes "rope_parameters" (theta included) instead of "rope_scaling" */
	if (!rs || cJSON_IsNull(rs))
		rs = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
	if (!rs || cJSON_IsNull(rs))
		return 0;
	if (!cJSON_IsObject(rs))
		return errbuf_set(e, -EBADMSG, "\"rope_scaling\" is not an object");
	/* transformers renamed "type" to "rope_type"; accept both */
	type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
	if (!type)
		type = cJSON_GetObjectItemCaseSensitive(rs, "type");
	if (!cJSON_IsString(type))
		return errbuf_set(e, -EBADMSG, "rope_scaling has no type");
	if (!strcmp(type->valuestring, "default"))
		return 0;
	if (!strcmp(type->valuestring, "linear")) {
		cfg->rope_scaling = ROPE_SCALING_LINEAR;
	} else if (!strcmp(type->valuestring, "llama3")) {
		cfg->rope_scaling = ROPE_SCALING_LLAMA3;
		r = j_f32(rs, "low_freq_factor", &cfg->rope_low_freq_factor);
		if (!r)
			r = j_f32(rs, "high_freq_factor", &cfg->rope_high_freq_factor);
		if (!r)
			r = j_u32(rs, "original_max_position_embeddings", &cfg->rope_orig_ctx);
		if (r)
			return errbuf_set(
				e, -EBADMSG,
				"llama3 rope_scaling needs low_freq_factor, high_freq_factor and original_max_position_embeddings");
	} else {
		return errbuf_set(e, -EOPNOTSUPP, "rope_scaling type \"%.32s\" not supported",
				  type->valuestring);
	}
	if (j_f32(rs, "factor", &cfg->rope_factor))
		return errbuf_set(e, -EBADMSG, "rope_scaling needs a numeric \"factor\"");
	return 0;
}

/* rope_theta inside "rope_parameters" (transformers >= 5) wins over the default. */
static int rope_params_theta(const cJSON *root, float *theta, struct errbuf *e)
{
	const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");

	if (!cJSON_IsObject(rp) || cJSON_GetObjectItemCaseSensitive(root, "rope_theta"))
		return 0;
	return opt_f32(rp, "rope_theta", *theta, theta, e);
}

/* The sizes every LLaMA-like config.json (llama, mistral, qwen2, gemma3_text) states alike. */
static int llama_sizes(const cJSON *root, struct model_config *cfg, struct errbuf *e)
{
	int r;

	if ((r = need_u32(root, "vocab_size", &cfg->n_vocab, e)) ||
	    (r = need_u32(root, "hidden_size", &cfg->dim, e)) ||
	    (r = need_u32(root, "num_hidden_layers", &cfg->n_layers, e)) ||
	    (r = need_u32(root, "num_attention_heads", &cfg->n_heads, e)) ||
	    (r = need_u32(root, "intermediate_size", &cfg->ffn_dim, e)))
		return r;
	return opt_u32(root, "num_key_value_heads", cfg->n_heads, &cfg->n_kv_heads, e);
}

static int parse_llama(const cJSON *root, struct model_config *cfg, bool is_qwen2, struct errbuf *e)
{
	bool bias = false;
	int r;

	cfg->arch = ARCH_LLAMA;
	if ((r = llama_sizes(root, cfg, e)) ||
	    (r = opt_u32(root, "max_position_embeddings", 2048, &cfg->max_ctx, e)) ||
	    (r = opt_f32(root, "rms_norm_eps", 1e-6f, &cfg->norm_eps, e)) ||
	    (r = opt_f32(root, "rope_theta", 10000.0f, &cfg->rope_theta, e)) ||
	    (r = rope_params_theta(root, &cfg->rope_theta, e)) ||
	    (r = opt_bool(root, "tie_word_embeddings", false, &cfg->tied_embeddings, e)) ||
	    (r = opt_bool(root, "attention_bias", false, &bias, e)) ||
	    (r = token_id(root, "bos_token_id", &cfg->bos_id, e)) ||
	    (r = token_id(root, "eos_token_id", &cfg->eos_id, e)))
		return r;
	if (!cfg->n_heads)
		return errbuf_set(e, -EBADMSG, "\"num_attention_heads\" is 0");
	if ((r = opt_u32(root, "head_dim", cfg->dim / cfg->n_heads, &cfg->head_dim, e)))
		return r;
	/* Llama's attention_bias also puts a bias on o_proj, which the engine does not model */
	if (bias)
		return errbuf_set(e, -EOPNOTSUPP, "\"attention_bias\": true is not supported");
	if (!opt_bool(root, "mlp_bias", false, &bias, NULL) && bias)
		return errbuf_set(e, -EOPNOTSUPP, "\"mlp_bias\": true is not supported");
	if (cJSON_GetObjectItemCaseSensitive(root, "hidden_act") &&
	    !str_is(root, "hidden_act", "silu"))
		return errbuf_set(e, -EOPNOTSUPP, "\"hidden_act\" must be \"silu\"");
	cfg->qkv_bias = is_qwen2;
	/* Qwen2 lists sliding_window but only applies it when use_sliding_window is set */
	if (!is_qwen2 || (!opt_bool(root, "use_sliding_window", false, &bias, NULL) && bias))
		if ((r = opt_u32(root, "sliding_window", 0, &cfg->sliding_window, e)))
			return r;
	if (cfg->sliding_window >= cfg->max_ctx)
		cfg->sliding_window = 0;
	return parse_rope_scaling(root, cfg, e);
}

/*
 * Gemma 3's layer_types as a period (see model_config.h): layer i slides unless
 * (i + 1) % period == 0, period 0 meaning all slide. Lists of another shape are refused.
 */
static int gemma3_layer_period(const cJSON *root, struct model_config *cfg, struct errbuf *e)
{
	const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types"), *it;
	uint32_t i = 0, period = 0;

	if (!lt || cJSON_IsNull(lt))
		return opt_u32(root, "sliding_window_pattern", 6, &cfg->swa_period, e);
	if (!cJSON_IsArray(lt) || (uint32_t)cJSON_GetArraySize(lt) != cfg->n_layers)
		return errbuf_set(e, -EBADMSG, "\"layer_types\" is not a list of %u entries",
				  cfg->n_layers);
	cJSON_ArrayForEach(it, lt)
	{
		bool full = cJSON_IsString(it) && !strcmp(it->valuestring, "full_attention");

		if (!full && !(cJSON_IsString(it) && !strcmp(it->valuestring, "sliding_attention")))
			return errbuf_set(e, -EBADMSG,
					  "\"layer_types\"[%u] is not an attention type", i);
		if (full && !period)
			period = i + 1;
		if (full != (period && (i + 1) % period == 0))
			return errbuf_set(e, -EOPNOTSUPP,
					  "\"layer_types\" is not a periodic sliding/full pattern");
		i++;
	}
	cfg->swa_period = period;
	return 0;
}

/* RoPE bases: transformers 5's per-layer-type "rope_parameters", or 4's two fields. */
static int gemma3_rope(const cJSON *root, struct model_config *cfg, struct errbuf *e)
{
	const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
	const cJSON *full = cJSON_GetObjectItemCaseSensitive(rp, "full_attention");
	const cJSON *slide = cJSON_GetObjectItemCaseSensitive(rp, "sliding_attention");
	const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
	int r;

	if ((rs && !cJSON_IsNull(rs)) || (full && !str_is(full, "rope_type", "default")) ||
	    (slide && !str_is(slide, "rope_type", "default")))
		return errbuf_set(e, -EOPNOTSUPP, "Gemma 3 RoPE scaling is not supported");
	if ((r = opt_f32(root, "rope_theta", 1e6f, &cfg->rope_theta, e)) ||
	    (r = opt_f32(root, "rope_local_base_freq", 1e4f, &cfg->rope_theta_swa, e)))
		return r;
	if (cJSON_IsObject(full) &&
	    (r = opt_f32(full, "rope_theta", cfg->rope_theta, &cfg->rope_theta, e)))
		return r;
	if (cJSON_IsObject(slide) &&
	    (r = opt_f32(slide, "rope_theta", cfg->rope_theta_swa, &cfg->rope_theta_swa, e)))
		return r;
	return 0;
}

static int parse_gemma3(const cJSON *root, struct model_config *cfg, struct errbuf *e)
{
	float qscalar = 0;
	bool bias = false;
	int r;

	cfg->arch = ARCH_LLAMA;
	if ((r = llama_sizes(root, cfg, e)) ||
	    (r = opt_u32(root, "head_dim", 256, &cfg->head_dim, e)) ||
	    (r = opt_u32(root, "max_position_embeddings", 131072, &cfg->max_ctx, e)) ||
	    (r = opt_f32(root, "rms_norm_eps", 1e-6f, &cfg->norm_eps, e)) ||
	    (r = opt_u32(root, "sliding_window", 4096, &cfg->sliding_window, e)) ||
	    (r = opt_f32(root, "query_pre_attn_scalar", 256, &qscalar, e)) ||
	    (r = opt_bool(root, "tie_word_embeddings", true, &cfg->tied_embeddings, e)) ||
	    (r = opt_bool(root, "attention_bias", false, &bias, e)) ||
	    (r = token_id(root, "bos_token_id", &cfg->bos_id, e)) ||
	    (r = token_id(root, "eos_token_id", &cfg->eos_id, e)) ||
	    (r = gemma3_layer_period(root, cfg, e)) || (r = gemma3_rope(root, cfg, e)))
		return r;
	if (bias)
		return errbuf_set(e, -EOPNOTSUPP, "\"attention_bias\": true is not supported");
	if (cJSON_GetObjectItemCaseSensitive(root, "hidden_activation") &&
	    !str_is(root, "hidden_activation", "gelu_pytorch_tanh"))
		return errbuf_set(e, -EOPNOTSUPP,
				  "\"hidden_activation\" must be \"gelu_pytorch_tanh\"");
	if (!opt_bool(root, "use_bidirectional_attention", false, &bias, NULL) && bias)
		return errbuf_set(e, -EOPNOTSUPP, "bidirectional attention is not supported");
	for (const char *const *k = (const char *const[]){ "attn_logit_softcapping",
							   "final_logit_softcapping", NULL };
	     *k; k++) {
		const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, *k);

		if (j && !cJSON_IsNull(j))
			return errbuf_set(e, -EOPNOTSUPP, "\"%s\" is not supported", *k);
	}
	if (!(qscalar > 0))
		return errbuf_set(e, -EBADMSG, "\"query_pre_attn_scalar\" must be positive");
	cfg->attn_scale = 1.0f / sqrtf(qscalar);
	cfg->act = FFN_ACT_GELU_TANH;
	cfg->qk_norm = true;
	cfg->post_norms = true;
	cfg->norm_offset = true;
	cfg->embed_scale = sqrtf((float)cfg->dim);
	if (cfg->sliding_window >= cfg->max_ctx)
		cfg->sliding_window = 0;
	return 0;
}

static int parse_opt(const cJSON *root, struct model_config *cfg, struct errbuf *e)
{
	bool bias = true;
	int r;

	cfg->arch = ARCH_OPT;
	if ((r = need_u32(root, "vocab_size", &cfg->n_vocab, e)) ||
	    (r = need_u32(root, "hidden_size", &cfg->dim, e)) ||
	    (r = need_u32(root, "num_hidden_layers", &cfg->n_layers, e)) ||
	    (r = need_u32(root, "num_attention_heads", &cfg->n_heads, e)) ||
	    (r = need_u32(root, "ffn_dim", &cfg->ffn_dim, e)) ||
	    (r = opt_u32(root, "max_position_embeddings", 2048, &cfg->max_ctx, e)) ||
	    (r = opt_bool(root, "do_layer_norm_before", true, &cfg->opt_pre_ln, e)) ||
	    (r = opt_u32(root, "word_embed_proj_dim", cfg->dim, &cfg->opt_word_embed_proj_dim,
			 e)) ||
	    (r = opt_bool(root, "enable_bias", true, &bias, e)) ||
	    (r = token_id(root, "bos_token_id", &cfg->bos_id, e)) ||
	    (r = token_id(root, "eos_token_id", &cfg->eos_id, e)))
		return r;
	if (!bias)
		return errbuf_set(e, -EOPNOTSUPP, "\"enable_bias\": false is not supported");
	if (cJSON_GetObjectItemCaseSensitive(root, "activation_function") &&
	    !str_is(root, "activation_function", "relu"))
		return errbuf_set(e, -EOPNOTSUPP, "\"activation_function\" must be \"relu\"");
	if (!cfg->n_heads)
		return errbuf_set(e, -EBADMSG, "\"num_attention_heads\" is 0");
	cfg->n_kv_heads = cfg->n_heads;
	cfg->head_dim = cfg->dim / cfg->n_heads;
	cfg->norm_eps = 1e-5f;	     /* torch.nn.LayerNorm's default, which OPT uses */
	cfg->tied_embeddings = true; /* OPTForCausalLM always shares lm_head with the embedding */
	return 0;
}

int model_config_from_hf_json_mem(const char *json, size_t len, struct model_config *cfg,
				  struct errbuf *e)
{
	const cJSON *mt;
	cJSON *root;
	int r;

	config_defaults(cfg);
	root = cJSON_ParseWithLength(json, len);
	if (!root)
		return errbuf_set(e, -EBADMSG, "not valid JSON");
	if (!cJSON_IsObject(root)) {
		r = errbuf_set(e, -EBADMSG, "not a JSON object");
		goto out;
	}
	mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
	if (!cJSON_IsString(mt)) {
		r = errbuf_set(e, -EBADMSG, "missing \"model_type\"");
		goto out;
	}
	if (!strcmp(mt->valuestring, "llama") || !strcmp(mt->valuestring, "mistral"))
		r = parse_llama(root, cfg, false, e);
	else if (!strcmp(mt->valuestring, "qwen2"))
		r = parse_llama(root, cfg, true, e);
	else if (!strcmp(mt->valuestring, "opt"))
		r = parse_opt(root, cfg, e);
	else if (!strcmp(mt->valuestring, "gemma3_text"))
		r = parse_gemma3(root, cfg, e);
	else
		r = errbuf_set(e, -EOPNOTSUPP, "model_type \"%.32s\" not supported",
			       mt->valuestring);
out:
	cJSON_Delete(root);
	return r;
}

int model_config_from_hf_json(const char *path, struct model_config *cfg, struct errbuf *e)
{
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	long n;
	int r;

	if (!f)
		return errbuf_set(e, -errno, "cannot open: %s", strerror(errno));
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		r = errbuf_set(e, -EIO, "cannot read");
		goto out;
	}
	if ((size_t)n > CONFIG_MAX_BYTES) {
		r = errbuf_set(e, -EBADMSG, "%ld bytes is too large for a config", n);
		goto out;
	}
	text = malloc((size_t)n + 1);
	if (!text) {
		r = -ENOMEM;
		goto out;
	}
	if (fread(text, 1, (size_t)n, f) != (size_t)n) {
		r = errbuf_set(e, -EIO, "cannot read");
		goto out;
	}
	text[n] = 0;
	r = model_config_from_hf_json_mem(text, (size_t)n, cfg, e);
out:
	free(text);
	fclose(f);
	return r;
}

/* A required GGUF integer: absent or ill-typed is -EBADMSG naming the key. */
static int g_need_u32(const struct gguf_file *g, const char *arch, const char *suffix,
		      uint32_t *ret, struct errbuf *e)
{
	char key[128];
	int r;

	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	r = gguf_get_u32(g, key, ret);
	if (r == -ENOENT)
		return errbuf_set(e, -EBADMSG, "missing %s", key);
	if (r)
		return errbuf_set(e, -EBADMSG, "%s is not a uint32", key);
	return 0;
}

/* An optional GGUF value: -ENOENT leaves *ret alone; a wrong type is -EBADMSG. */
static int g_opt_u32(const struct gguf_file *g, const char *arch, const char *suffix, uint32_t *ret,
		     struct errbuf *e)
{
	char key[128];
	int r;

	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	r = gguf_get_u32(g, key, ret);
	if (r && r != -ENOENT)
		return errbuf_set(e, -EBADMSG, "%s is not a uint32", key);
	return r;
}

static int g_opt_f32(const struct gguf_file *g, const char *arch, const char *suffix, float *ret,
		     struct errbuf *e)
{
	char key[128];
	int r;

	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	r = gguf_get_f32(g, key, ret);
	if (r && r != -ENOENT)
		return errbuf_set(e, -EBADMSG, "%s is not a number", key);
	if (!r && !isfinite(*ret))
		return errbuf_set(e, -EBADMSG, "%s is not finite", key);
	return r;
}

/*
 * Gemma 3's extras over the LLaMA layout, as llama.cpp's GGUF conversion stores them (norm
 * weights with Gemma's "1 +" folded in). The layer pattern and the sliding layers' RoPE base
 * are not in older files: llama.cpp fixes them at 6 and 10000, as the HF config does. The
 * q.k scale is head_dim^-1/2 unless "attention.scale" says otherwise (files we convert from
 * HF folders write it from query_pre_attn_scalar).
 */
static int gemma3_gguf(const struct gguf_file *g, struct model_config *cfg, struct errbuf *e)
{
	int r;

	if ((r = g_opt_f32(g, "gemma3", "attention.scale", &cfg->attn_scale, e)) == -EBADMSG)
		return r;

	cfg->act = FFN_ACT_GELU_TANH;
	cfg->qk_norm = true;
	cfg->post_norms = true;
	cfg->embed_scale = sqrtf((float)cfg->dim);
	cfg->swa_period = 6;
	cfg->rope_theta_swa = 10000.0f;
	if ((r = g_opt_u32(g, "gemma3", "attention.sliding_window", &cfg->sliding_window, e)) ==
		    -EBADMSG ||
	    (r = g_opt_u32(g, "gemma3", "attention.sliding_window_pattern", &cfg->swa_period, e)) ==
		    -EBADMSG ||
	    (r = g_opt_f32(g, "gemma3", "rope.freq_base_swa", &cfg->rope_theta_swa, e)) == -EBADMSG)
		return r;
	if (cfg->sliding_window >= cfg->max_ctx)
		cfg->sliding_window = 0;
	return 0;
}

int model_config_from_gguf(const struct gguf_file *g, struct model_config *cfg, struct errbuf *e)
{
	const struct gguf_kv *tokens;
	char arch[32], key[128];
	const char *s;
	size_t len;
	uint32_t u;
	int r;

	config_defaults(cfg);
	if (gguf_get_str(g, "general.architecture", &s, &len))
		return errbuf_set(e, -EBADMSG, "missing general.architecture");
	if (len >= sizeof(arch) || memchr(s, 0, len))
		return errbuf_set(e, -EOPNOTSUPP, "architecture not supported");
	memcpy(arch, s, len);
	arch[len] = 0;
	if (strcmp(arch, "llama") && strcmp(arch, "qwen2") && strcmp(arch, "gemma3"))
		return errbuf_set(e, -EOPNOTSUPP, "architecture \"%s\" not supported", arch);
	cfg->arch = ARCH_LLAMA;
	cfg->qkv_bias = !strcmp(arch, "qwen2");
	if ((r = g_need_u32(g, arch, "block_count", &cfg->n_layers, e)) ||
	    (r = g_need_u32(g, arch, "embedding_length", &cfg->dim, e)) ||
	    (r = g_need_u32(g, arch, "feed_forward_length", &cfg->ffn_dim, e)) ||
	    (r = g_need_u32(g, arch, "attention.head_count", &cfg->n_heads, e)) ||
	    (r = g_need_u32(g, arch, "context_length", &cfg->max_ctx, e)))
		return r;
	if (!cfg->n_heads)
		return errbuf_set(e, -EBADMSG, "%s.attention.head_count is 0", arch);
	cfg->n_kv_heads = cfg->n_heads;
	if ((r = g_opt_u32(g, arch, "attention.head_count_kv", &cfg->n_kv_heads, e)) == -EBADMSG)
		return r;
	/* head_dim: key_length when given, else the rotary dimension, else dim / heads */
	cfg->head_dim = cfg->dim / cfg->n_heads;
	if ((r = g_opt_u32(g, arch, "attention.key_length", &cfg->head_dim, e)) == -EBADMSG)
		return r;
	if (r == -ENOENT &&
	    (r = g_opt_u32(g, arch, "rope.dimension_count", &cfg->head_dim, e)) == -EBADMSG)
		return r;
	cfg->norm_eps = 1e-5f;
	if ((r = g_opt_f32(g, arch, "attention.layer_norm_rms_epsilon", &cfg->norm_eps, e)) ==
	    -EBADMSG)
		return r;
	cfg->rope_theta = 10000.0f;
	if ((r = g_opt_f32(g, arch, "rope.freq_base", &cfg->rope_theta, e)) == -EBADMSG)
		return r;
	/* vocabulary: the explicit count, else the token list's length */
	r = g_opt_u32(g, arch, "vocab_size", &cfg->n_vocab, e);
	if (r == -EBADMSG)
		return r;
	if (r == -ENOENT) {
		if (gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &tokens) ||
		    tokens->n > UINT32_MAX)
			return errbuf_set(e, -EBADMSG, "no %s.vocab_size and no token list", arch);
		cfg->n_vocab = (uint32_t)tokens->n;
	}
	snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
	if (!gguf_get_str(g, key, &s, &len) && !(len == 4 && !memcmp(s, "none", 4))) {
		if (len != 6 || memcmp(s, "linear", 6))
			return errbuf_set(e, -EOPNOTSUPP, "%s \"%.*s\" not supported", key,
					  (int)(len < 32 ? len : 32), s);
		cfg->rope_scaling = ROPE_SCALING_LINEAR;
		if (g_opt_f32(g, arch, "rope.scaling.factor", &cfg->rope_factor, e))
			return errbuf_set(e, -EBADMSG, "linear rope scaling without a factor");
	}
	if (!strcmp(arch, "gemma3") && (r = gemma3_gguf(g, cfg, e)) < 0)
		return r;
	if (!gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u) && u <= INT32_MAX)
		cfg->bos_id = (int32_t)u;
	if (!gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u) && u <= INT32_MAX)
		cfg->eos_id = (int32_t)u;
	cfg->tied_embeddings = !gguf_find_tensor(g, "output.weight");
	return 0;
}

int model_config_validate(const struct model_config *cfg, struct errbuf *e)
{
	/* generous bounds that keep every product of two sizes inside 64 bits */
	if (cfg->arch >= ARCH_COUNT)
		return errbuf_set(e, -EBADMSG, "unknown architecture %d", cfg->arch);
	if (!cfg->n_vocab || cfg->n_vocab > (1u << 24))
		return errbuf_set(e, -EBADMSG, "vocabulary size %u out of range", cfg->n_vocab);
	if (!cfg->dim || cfg->dim > (1u << 16))
		return errbuf_set(e, -EBADMSG, "hidden size %u out of range", cfg->dim);
	if (!cfg->n_layers || cfg->n_layers > 1024)
		return errbuf_set(e, -EBADMSG, "layer count %u out of range", cfg->n_layers);
	if (!cfg->n_heads || cfg->n_heads > 1024 || !cfg->n_kv_heads ||
	    cfg->n_kv_heads > cfg->n_heads)
		return errbuf_set(e, -EBADMSG, "head counts %u/%u out of range", cfg->n_heads,
				  cfg->n_kv_heads);
	if (cfg->n_heads % cfg->n_kv_heads)
		return errbuf_set(e, -EBADMSG, "%u heads not a multiple of %u kv heads",
				  cfg->n_heads, cfg->n_kv_heads);
	if (!cfg->head_dim || cfg->head_dim > 4096)
		return errbuf_set(e, -EBADMSG, "head_dim %u out of range", cfg->head_dim);
	if (!cfg->ffn_dim || cfg->ffn_dim > (1u << 20))
		return errbuf_set(e, -EBADMSG, "ffn size %u out of range", cfg->ffn_dim);
	if (!cfg->max_ctx || cfg->max_ctx > (1u << 24))
		return errbuf_set(e, -EBADMSG, "context length %u out of range", cfg->max_ctx);
	if (!(cfg->norm_eps > 0 && cfg->norm_eps < 1))
		return errbuf_set(e, -EBADMSG, "norm epsilon %g out of range", cfg->norm_eps);
	if (cfg->arch == ARCH_OPT) {
		if (cfg->dim % cfg->n_heads)
			return errbuf_set(e, -EBADMSG, "hidden size %u not divisible by %u heads",
					  cfg->dim, cfg->n_heads);
		return 0;
	}
	if (cfg->head_dim % 2)
		return errbuf_set(e, -EBADMSG, "head_dim %u is odd (RoPE needs pairs)",
				  cfg->head_dim);
	if (!(cfg->rope_theta > 0) || !isfinite(cfg->rope_theta))
		return errbuf_set(e, -EBADMSG, "rope_theta %g out of range", cfg->rope_theta);
	if (cfg->rope_scaling != ROPE_SCALING_NONE &&
	    (!(cfg->rope_factor > 0) || !isfinite(cfg->rope_factor)))
		return errbuf_set(e, -EBADMSG, "rope scaling factor %g out of range",
				  cfg->rope_factor);
	if (cfg->sliding_window && cfg->rope_theta_swa != 0 &&
	    (!(cfg->rope_theta_swa > 0) || !isfinite(cfg->rope_theta_swa)))
		return errbuf_set(e, -EBADMSG, "sliding-window rope base %g out of range",
				  cfg->rope_theta_swa);
	if (cfg->attn_scale != 0 && (!(cfg->attn_scale > 0) || !isfinite(cfg->attn_scale)))
		return errbuf_set(e, -EBADMSG, "attention scale %g out of range", cfg->attn_scale);
	if (!(cfg->embed_scale > 0) || !isfinite(cfg->embed_scale))
		return errbuf_set(e, -EBADMSG, "embedding scale %g out of range", cfg->embed_scale);
	if (cfg->rope_scaling == ROPE_SCALING_LLAMA3 &&
	    (!(cfg->rope_low_freq_factor > 0) ||
	     !(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor) || !cfg->rope_orig_ctx))
		return errbuf_set(e, -EBADMSG, "llama3 rope scaling parameters out of range");
	return 0;
}
