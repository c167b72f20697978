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
	uint32_t sliding_window;     /* Mistral: attention window, 0 = full attention */
	bool qkv_bias;		     /* Qwen2 */
	bool tied_embeddings;	     /* lm_head shares the token embedding */
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

/* Check internal consistency (divisibility, non-zero sizes): 0 or -EBADMSG with a message. */
int model_config_validate(const struct model_config *cfg, struct errbuf *e);

#endif /* ENGINE_MODEL_CONFIG_H */
