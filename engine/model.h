/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_MODEL_H
#define ENGINE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/linear.h"
#include "engine/model_config.h"
#include "kernels/lut.h"

struct tokenizer;
struct gguf_file;

/*
 * Rotary embedding pairing. HF checkpoints rotate (i, i + d/2) ("half"); llama.cpp's GGUF
 * conversion permutes the q/k rows so that adjacent pairs (2i, 2i + 1) rotate ("adjacent").
 * We keep each file's own row order and pick the matching pairing instead of permuting rows
 * (which would be awkward for packed shift-add planes).
 */
enum rope_pairing {
	ROPE_PAIR_HALF,
	ROPE_PAIR_ADJACENT,
};

/* Which backend runs the linear layers stored as shift-add planes in converted files. */
enum linear_backend {
	LINEAR_BACKEND_DENSE,	 /* dequantize to f32 and use BLAS (the reference path) */
	LINEAR_BACKEND_SHIFTADD, /* the shift-add LUT kernels */
};

struct model_load_opts {
	enum linear_backend backend;
	struct pool *pool; /* workers for the shift-add kernels (borrowed); NULL = caller only */
	/*
	 * Or the caller's own task runner (e.g. shiftaddd's pinned workers), used instead of
	 * @pool when runner.run is set; copied, its ctx borrowed for the model's life.
	 */
	struct lut_runner runner;
	/*
	 * With a pool or a runner, every product of the model (kernels, dense BLAS slices,
	 * attention) runs on it and model_load_ex() sets OpenBLAS to one thread, process-wide.
	 */
};

struct model_layer {
	float *attn_norm;      /* [dim] */
	float *attn_norm_b;    /* [dim] LayerNorm bias (OPT) or NULL */
	struct linear wq;      /* [n_heads * head_dim][dim] */
	struct linear wk;      /* [n_kv_heads * head_dim][dim] */
	struct linear wv;      /* [n_kv_heads * head_dim][dim] */
	struct linear wo;      /* [dim][n_heads * head_dim] */
	float *q_norm;	       /* cfg.qk_norm: [head_dim], shared by the heads; else NULL */
	float *k_norm;	       /* likewise */
	float *post_attn_norm; /* cfg.post_norms: [dim] RMSNorm of o's output; else NULL */
	float *ffn_norm;       /* [dim] */
	float *ffn_norm_b;     /* [dim] or NULL */
	struct linear w_gate;  /* LLaMA: [ffn_dim][dim]; unused for OPT */
	struct linear w_up;    /* LLaMA up_proj / OPT fc1: [ffn_dim][dim] */
	struct linear w_down;  /* LLaMA down_proj / OPT fc2: [dim][ffn_dim] */
	float *post_ffn_norm;  /* cfg.post_norms: [dim] RMSNorm of down's output; else NULL */
};

struct model {
	struct model_config cfg;
	enum rope_pairing rope_pairing;
	char *path;
	struct tokenizer *tok; /* NULL if the checkpoint has none */
	char *chat_template;   /* NUL-terminated, or NULL */

	float *tok_embd;	    /* [n_vocab][dim] */
	float *pos_embd;	    /* OPT: [max_ctx + 2][dim], else NULL */
	struct model_layer *layers; /* [n_layers] */
	float *out_norm;	    /* [dim] */
	float *out_norm_b;	    /* [dim] or NULL */
	struct linear lm_head;	    /* [n_vocab][dim]; may share tok_embd */
	float *rope_freq;	    /* [head_dim / 2] inverse frequencies, scaling applied */
	float *rope_freq_swa;	    /* the sliding layers' (cfg.rope_theta_swa), or NULL */

	/* every buffer above that the model allocated */
	void **bufs;
	size_t n_bufs;
	size_t cap_bufs;
	uint64_t n_params; /* parameters loaded */
	struct model_load_opts opts;
	uint32_t n_shiftadd; /* linear layers running on the shift-add kernels */
};

/* model_load() with options; @o NULL means the defaults (dense). */
int model_load_ex(const char *path, const struct model_load_opts *o, struct model **ret,
		  struct errbuf *e);

/*
 * Load a model for the dense f32 engine from a GGUF file or an HF folder (config.json +
 * *.safetensors [+ tokenizer.json]). Caller frees with model_free(). Errors: -ENOENT,
 * -EBADMSG (malformed or inconsistent file), -EOPNOTSUPP (architecture or tensor type), each
 * with one line in @e that names what is wrong.
 */
int model_load(const char *path, struct model **ret, struct errbuf *e);
void model_free(struct model *m);

/* Bytes of f32 weights the model holds (for reports). */
uint64_t model_weight_bytes(const struct model *m);

struct fwd_ops;

/*
 * KV cache for @n_seq independent sequences of up to @n_ctx positions each, f32 or f16. v is
 * [n_seq][n_layers][n_kv_heads][n_ctx][head_dim] (a head's values contiguous). The keys are
 * either laid out like v (k) or, on hosts with a fused attention kernel (chosen at
 * kv_cache_init), packed the way that kernel reads them (kt, per sequence, layer and KV head
 * kt_head_floats elements; k is NULL): they are packed once when written, not again at every
 * step. The arrays are mapped lazily (memory is committed as positions are written, unless
 * kv_cache_commit() commits it all).
 */
enum kv_type {
	KV_F32,
	KV_F16, /* half the memory and traffic; keys and values rounded to f16 when written */
};

struct kv_cache {
	uint32_t n_seq;
	uint32_t n_ctx;
	uint32_t n_layers;
	uint32_t kv_dim;
	void *k;
	void *v;
	void *kt;
	size_t bytes, kt_bytes;	 /* of k and v, of kt */
	uint64_t kt_head_floats; /* elements per KV head's packed keys */
	uint32_t n_kv_heads;
	uint32_t head_dim;
	bool f16;		       /* elements are f16 (else f32) */
	uint32_t elt;		       /* bytes per element */
	const struct fwd_ops *att_ops; /* the fused kernel kt is laid out for, or NULL */
};

/* "f32" or "f16" to @ret; -EINVAL for anything else. */
int kv_type_parse(const char *s, enum kv_type *ret);
/* The name kv_type_parse() takes: "f32" or "f16". */
const char *kv_type_name(enum kv_type t);

/* The name of the element type @kv actually has ("f16" or "f32"). */
static inline const char *kv_cache_type_name(const struct kv_cache *kv)
{
	return kv_type_name(kv->f16 ? KV_F16 : KV_F32);
}

/* Whether an f16 cache is possible here (the fused attention kernel and F16C). */
bool kv_f16_supported(void);

/* An f32 cache: kv_cache_init_type(..., KV_F32). */
int kv_cache_init(struct kv_cache *kv, const struct model *m, uint32_t n_seq, uint32_t n_ctx);
/*
 * A cache of @type. KV_F16 is honoured only where the fused attention kernel runs (AVX2 with
 * F16C), else the cache is f32: kv->f16 says which. -EINVAL, -EOVERFLOW or -ENOMEM.
 */
int kv_cache_init_type(struct kv_cache *kv, const struct model *m, uint32_t n_seq, uint32_t n_ctx,
		       enum kv_type type);
void kv_cache_done(struct kv_cache *kv);

/*
 * Commit all of @kv's memory now, so that no step stops to fault pages in and zero them: with
 * transparent huge pages the first positions of a sequence fault in 2 MiB pages that span many
 * layers (SmolLM2, 2048 positions: ~46 MB of a slot at its first request). 0 or -ENOMEM.
 */
int kv_cache_commit(struct kv_cache *kv);

/* Bytes of @kv's arrays (values, and plain or packed keys): what kv_cache_commit() commits. */
static inline uint64_t kv_cache_bytes(const struct kv_cache *kv)
{
	return (uint64_t)kv->bytes + (kv->k ? kv->bytes : kv->kt_bytes);
}

/* Copy positions [0, @n) of every layer of sequence @from to sequence @to (all in range). */
void kv_cache_copy_prefix(struct kv_cache *kv, uint32_t from, uint32_t to, uint32_t n);

/*
 * One forward step over a batch of @n tokens: token i is tokens[i] of sequence seq[i] at
 * position pos[i]. Tokens of one sequence must appear in increasing position order and the
 * sequence's earlier positions must already be in @kv. Writes the final-normed hidden states
 * to @hidden ([n][dim]); logits come from model_logits(). Scratch memory is allocated per
 * call. Prefill attention (runs of >= 16 tokens, AVX2 hosts) is spread over the model's
 * workers (opts.runner or opts.pool), else over openblas_get_num_threads() threads started
 * for the call. Returns 0, -EINVAL (position or sequence out of range) or -ENOMEM.
 */
int model_forward(const struct model *m, struct kv_cache *kv, const int32_t *tokens,
		  const uint32_t *seq, const uint32_t *pos, uint32_t n, float *hidden);

/*
 * Sub-steps of one layer, for the calibration driver (pre-norm architectures): the driver
 * applies the output projections itself so it can quantize them in between. Batch layout and
 * errors as in model_forward().
 */
/* Token (+ position) embeddings of @n tokens into x[n][dim]; -EINVAL for bad ids/positions. */
int model_embed(const struct model *m, const int32_t *tokens, const uint32_t *pos, uint32_t n,
		float *x);
/* h[n][dim] = the layer's attention-input norm of x[n][dim] (resp. FFN-input norm). */
void model_attn_norm(const struct model *m, uint32_t li, const float *x, uint32_t n, float *h);
void model_ffn_norm(const struct model *m, uint32_t li, const float *x, uint32_t n, float *h);
/* att[n][n_heads * head_dim]: q/k/v of h, RoPE, KV-cache write, causal attention. */
int model_attn_core(const struct model *m, struct kv_cache *kv, uint32_t li, const uint32_t *seq,
		    const uint32_t *pos, uint32_t n, const float *h, float *att);
/*
 * y[n][dim] (the output of o, resp. down) made ready for the residual add: normed in place
 * when the model has post-norms (Gemma 3), else left as it is.
 */
void model_attn_out(const struct model *m, uint32_t li, float *y, uint32_t n);
void model_ffn_out(const struct model *m, uint32_t li, float *y, uint32_t n);
/* act[n][ffn_dim]: gate/up of h and the activation (SiLU- or GELU-gated; OPT: ReLU of fc1). */
int model_ffn_core(const struct model *m, uint32_t li, uint32_t n, const float *h, float *act);

/* Final norm of x[n][dim] into hidden[n][dim] (a copy for post-LN OPT). */
void model_final_norm(const struct model *m, const float *x, uint32_t n, float *hidden);

/* logits[n][n_vocab] = lm_head(hidden[n][dim]). */
void model_logits(const struct model *m, const float *hidden, uint32_t n, float *logits);

/* Convenience: run one sequence's tokens at positions pos0.. and return the last logits. */
int model_forward_seq(const struct model *m, struct kv_cache *kv, uint32_t seq,
		      const int32_t *tokens, uint32_t n, uint32_t pos0, float *last_logits);

#endif /* ENGINE_MODEL_H */
