/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_MODEL_CONFIG_H
#define ENGINE_MODEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct gguf_file;

/* Architectures the engine runs. */
enum model_arch {
	ARCH_LLAMA, /* LLaMA-1/2/3, Mistral, SmolLM2; Qwen2 = LLaMA + qkv bias */
	ARCH_OPT,
	ARCH_COUNT,
};

/* The gated FFN's activation: act(gate) * up. */
enum ffn_act {
	FFN_ACT_SILU,	   /* LLaMA, Qwen2, Mistral */
	FFN_ACT_GELU_TANH, /* Gemma: GELU with the tanh approximation */
};

enum rope_scaling {
	ROPE_SCALING_NONE,
	ROPE_SCALING_LINEAR, /* positions divided by factor */
	ROPE_SCALING_LLAMA3, /* frequency-dependent, as in Llama 3.1 */
};

/* Hyper-parameters of one model, from HF config.json or GGUF metadata. */
struct model_config {
	enum model_arch arch;
	uint32_t n_vocab;
	uint32_t dim; /* hidden size */
	uint32_t n_layers;
	uint32_t n_heads;
	uint32_t n_kv_heads;
	uint32_t head_dim; /* dim / n_heads unless the config says otherwise */
	uint32_t ffn_dim;  /* intermediate size */
	uint32_t max_ctx;  /* max_position_embeddings / context_length */
	float norm_eps;	   /* rms_norm_eps or layer_norm_epsilon */
	float rope_theta;
	enum rope_scaling rope_scaling;
	float rope_factor;
	float rope_low_freq_factor;  /* llama3 */
	float rope_high_freq_factor; /* llama3 */
	uint32_t rope_orig_ctx;	     /* llama3: original_max_position_embeddings */
	/*
	 * Sliding-window attention: a token sees itself and the sliding_window - 1 tokens
	 * before it (0 = full attention). Mistral slides in every layer (swa_period 0); Gemma 3
	 * in all but every swa_period-th layer (layer i slides unless (i + 1) % swa_period == 0),
	 * whose RoPE base is rope_theta_swa (0: rope_theta) in the sliding layers.
	 */
	uint32_t sliding_window;
	uint32_t swa_period;
	float rope_theta_swa;
	bool qkv_bias; /* Qwen2 */
	/* Gemma 3 */
	enum ffn_act act;
	bool qk_norm;	   /* RMSNorm over each q and k head (before RoPE) */
	bool post_norms;   /* RMSNorm of the attention and FFN outputs before the residual add */
	float embed_scale; /* token embeddings are multiplied by this (Gemma: sqrt(dim)), else 1 */
	float attn_scale; /* q.k multiplier (Gemma: query_pre_attn_scalar^-1/2); 0 = head_dim^-1/2 */
	bool norm_offset;     /* HF Gemma stores RMSNorm weights as w - 1: the loader adds 1 */
	bool tied_embeddings; /* lm_head shares the token embedding */
	/* OPT */
	bool opt_pre_ln;		  /* do_layer_norm_before */
	uint32_t opt_word_embed_proj_dim; /* == dim unless a projection is used (unsupported) */
	int32_t bos_id, eos_id;		  /* -1 if unknown */
};

/*
 * Parse an HF config.json (file @path) into @cfg. Unknown "model_type" gives -EOPNOTSUPP,
 * missing or ill-typed required fields -EBADMSG, each with one line in @e.
 */
int model_config_from_hf_json(const char *path, struct model_config *cfg, struct errbuf *e);
/* The same from @len bytes of JSON text in memory (borrowed; used by fuzzers and tests). */
int model_config_from_hf_json_mem(const char *json, size_t len, struct model_config *cfg,
				  struct errbuf *e);

/* Fill @cfg from GGUF metadata ("general.architecture", "<arch>.*"). Same errors. */
int model_config_from_gguf(const struct gguf_file *g, struct model_config *cfg, struct errbuf *e);

/* Does layer @li attend through a sliding window? */
static inline bool model_config_layer_slides(const struct model_config *cfg, uint32_t li)
{
	return cfg->sliding_window && (!cfg->swa_period || (li + 1) % cfg->swa_period);
}

/* Check internal consistency (divisibility, non-zero sizes): 0 or -EBADMSG with a message. */
int model_config_validate(const struct model_config *cfg, struct errbuf *e);

#endif /* ENGINE_MODEL_CONFIG_H */
