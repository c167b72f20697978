// SPDX-License-Identifier: MIT
/*
 * Model configs: config.json files written by transformers (tools/ref_loaders.py), in both the
 * transformers-5 layout (rope_parameters) and the Hub's older layout, expected values as set
 * in that script; GGUF metadata of the real model and of writer-built files.
 */
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/model_config.h"
#include "tests/unit/engine/loaders_util.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define CFG_DIR LOADERS_FIXTURES "/config/"

static void load(const char *name, struct model_config *c)
{
	struct errbuf e = { { 0 } };
	char path[256];
	int ret;

	snprintf(path, sizeof(path), CFG_DIR "%s", name);
	ret = model_config_from_hf_json(path, c, &e);
	if (ret)
		fail_msg("%s: %s", name, errbuf_str(&e, ret));
	ret = model_config_validate(c, &e);
	if (ret)
		fail_msg("%s: invalid: %s", name, errbuf_str(&e, ret));
}

static void check_smollm2(const struct model_config *c)
{
	assert_int_equal(c->arch, ARCH_LLAMA);
	assert_int_equal(c->n_vocab, 49152);
	assert_int_equal(c->dim, 576);
	assert_int_equal(c->n_layers, 30);
	assert_int_equal(c->n_heads, 9);
	assert_int_equal(c->n_kv_heads, 3);
	assert_int_equal(c->head_dim, 64);
	assert_int_equal(c->ffn_dim, 1536);
	assert_int_equal(c->max_ctx, 8192);
	assert_true(c->norm_eps == 1e-5f);
	assert_true(c->rope_theta == 100000.0f);
	assert_int_equal(c->rope_scaling, ROPE_SCALING_NONE);
	assert_false(c->qkv_bias);
	assert_true(c->tied_embeddings);
	assert_int_equal(c->bos_id, 1);
	assert_int_equal(c->eos_id, 2);
}

static void test_smollm2_llama_config(void **state)
{
	struct model_config c;

	load("smollm2.json", &c);
	check_smollm2(&c);
	load("smollm2_legacy.json", &c);
	check_smollm2(&c);
}

static void test_llama3_rope_scaling(void **state)
{
	const char *names[] = { "llama3.json", "llama3_legacy.json" };

	for (int i = 0; i < 2; i++) {
		struct model_config c;

		load(names[i], &c);
		assert_int_equal(c.n_vocab, 128256);
		assert_int_equal(c.head_dim, 64);
		assert_int_equal(c.n_kv_heads, 8);
		assert_int_equal(c.max_ctx, 131072);
		assert_true(c.rope_theta == 500000.0f);
		assert_int_equal(c.rope_scaling, ROPE_SCALING_LLAMA3);
		assert_true(c.rope_factor == 32.0f);
		assert_true(c.rope_low_freq_factor == 1.0f);
		assert_true(c.rope_high_freq_factor == 4.0f);
		assert_int_equal(c.rope_orig_ctx, 8192);
		assert_true(c.tied_embeddings);
		assert_int_equal(c.bos_id, 128000);
		assert_int_equal(c.eos_id, 128001); /* first of the list */
	}
}

static void test_linear_rope_and_defaults(void **state)
{
	const char *names[] = { "linear_rope.json", "linear_rope_legacy.json" };

	for (int i = 0; i < 2; i++) {
		struct model_config c;

		load(names[i], &c);
		assert_int_equal(c.rope_scaling, ROPE_SCALING_LINEAR);
		assert_true(c.rope_factor == 4.0f);
		assert_true(c.rope_theta == 10000.0f);
		assert_int_equal(c.n_kv_heads, 4); /* defaults to num_attention_heads */
		assert_int_equal(c.head_dim, 16);
		assert_false(c.tied_embeddings); /* LlamaConfig's default */
		assert_true(c.norm_eps == 1e-6f);
	}
}

static void test_qwen2_and_mistral(void **state)
{
	struct model_config c;

	load("qwen2.json", &c);
	assert_int_equal(c.arch, ARCH_LLAMA);
	assert_true(c.qkv_bias);
	assert_int_equal(c.n_vocab, 151936);
	assert_int_equal(c.head_dim, 64);
	assert_int_equal(c.n_kv_heads, 2);
	assert_true(c.rope_theta == 1000000.0f);
	assert_int_equal(c.sliding_window, 0); /* use_sliding_window is false */
	assert_true(c.tied_embeddings);
	assert_int_equal(c.eos_id, 151645);
	load("qwen2_legacy.json", &c);
	assert_true(c.qkv_bias);
	assert_true(c.rope_theta == 1000000.0f);

	load("mistral.json", &c);
	assert_false(c.qkv_bias);
	assert_int_equal(c.head_dim, 128);
	assert_int_equal(c.sliding_window, 4096);
	assert_int_equal(c.max_ctx, 32768);
	assert_false(c.tied_embeddings);
	load("mistral_legacy.json", &c);
	assert_int_equal(c.sliding_window, 4096);
}

/* Gemma 3 270M's config.json in transformers 4's layout (rope_local_base_freq, layer_types). */
static void test_gemma3(void **state)
{
	struct model_config c;

	load("gemma3_270m.json", &c);
	assert_int_equal(c.arch, ARCH_LLAMA);
	assert_int_equal(c.n_vocab, 262144);
	assert_int_equal(c.dim, 640);
	assert_int_equal(c.head_dim, 256);
	assert_int_equal(c.n_kv_heads, 1);
	assert_int_equal(c.act, FFN_ACT_GELU_TANH);
	assert_true(c.qk_norm && c.post_norms && c.norm_offset && c.tied_embeddings);
	assert_int_equal(c.sliding_window, 512);
	assert_int_equal(c.swa_period, 6);
	assert_true(c.rope_theta == 1e6f && c.rope_theta_swa == 1e4f);
	assert_true(fabsf(c.attn_scale - 0.0625f) < 1e-7f);
	assert_true(fabsf(c.embed_scale * c.embed_scale - 640.0f) < 1e-3f);
	assert_true(model_config_layer_slides(&c, 0));
	assert_true(model_config_layer_slides(&c, 4));
	assert_false(model_config_layer_slides(&c, 5));
	assert_true(model_config_layer_slides(&c, 12));
	assert_false(model_config_layer_slides(&c, 17));
	assert_int_equal(c.bos_id, 2);
	assert_int_equal(c.eos_id, 1);
}

static void test_opt(void **state)
{
	struct model_config c;

	load("opt.json", &c);
	assert_int_equal(c.arch, ARCH_OPT);
	assert_int_equal(c.n_vocab, 50272);
	assert_int_equal(c.dim, 768);
	assert_int_equal(c.n_layers, 12);
	assert_int_equal(c.n_heads, 12);
	assert_int_equal(c.n_kv_heads, 12);
	assert_int_equal(c.head_dim, 64);
	assert_int_equal(c.ffn_dim, 3072);
	assert_int_equal(c.max_ctx, 2048);
	assert_true(c.opt_pre_ln);
	assert_int_equal(c.opt_word_embed_proj_dim, 768);
	assert_true(c.tied_embeddings);
	assert_true(c.norm_eps == 1e-5f);
	assert_int_equal(c.bos_id, 2);
	assert_int_equal(c.eos_id, 2);
	load("opt350m.json", &c);
	assert_false(c.opt_pre_ln);
	assert_int_equal(c.opt_word_embed_proj_dim, 512);
	assert_int_equal(c.dim, 1024);
}

static int parse_str(const char *json, struct model_config *c, struct errbuf *e)
{
	e->msg[0] = 0;
	return model_config_from_hf_json_mem(json, strlen(json), c, e);
}

#define BASE \
	"\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":16"

static void test_bad_configs(void **state)
{
	static const struct {
		const char *json;
		int ret;
	} cases[] = {
		{ "{\"model_type\":\"llama\"," BASE "}", 0 },
		{ "{\"model_type\":\"gpt_neox\"," BASE "}", -EOPNOTSUPP },
		{ "{" BASE "}", -EBADMSG },
		{ "{\"model_type\":\"llama\"}", -EBADMSG },
		{ "[]", -EBADMSG },
		{ "{\"model_type\":\"llama\",", -EBADMSG },
		{ "{\"model_type\":\"llama\",\"hidden_size\":-8,\"vocab_size\":10,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":16}",
		  -EBADMSG },
		{ "{\"model_type\":\"llama\"," BASE ",\"num_key_value_heads\":1.5}", -EBADMSG },
		{ "{\"model_type\":\"llama\"," BASE ",\"rms_norm_eps\":\"small\"}", -EBADMSG },
		{ "{\"model_type\":\"llama\"," BASE ",\"tie_word_embeddings\":1}", -EBADMSG },
		{ "{\"model_type\":\"llama\"," BASE
		  ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":2}}",
		  -EOPNOTSUPP },
		{ "{\"model_type\":\"llama\"," BASE ",\"rope_scaling\":{\"type\":\"linear\"}}",
		  -EBADMSG },
		{ "{\"model_type\":\"llama\"," BASE
		  ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}",
		  -EBADMSG },
		{ "{\"model_type\":\"llama\"," BASE ",\"rope_scaling\":7}", -EBADMSG },
		{ "{\"model_type\":\"gemma3_text\"," BASE ",\"head_dim\":4}", 0 },
		{ "{\"model_type\":\"gemma3_text\"," BASE
		  ",\"head_dim\":4,\"final_logit_softcapping\":30.0}",
		  -EOPNOTSUPP },
		{ "{\"model_type\":\"gemma3_text\"," BASE
		  ",\"head_dim\":4,\"hidden_activation\":\"relu\"}",
		  -EOPNOTSUPP },
		{ "{\"model_type\":\"gemma3_text\"," BASE
		  ",\"head_dim\":4,\"layer_types\":[\"sliding_attention\",\"full_attention\"]}",
		  -EBADMSG },
		{ "{\"model_type\":\"gemma3_text\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":3,\"num_attention_heads\":2,\"intermediate_size\":16,\"head_dim\":4,"
		  "\"layer_types\":[\"sliding_attention\",\"sliding_attention\",\"full_attention\"]}",
		  0 },
		{ "{\"model_type\":\"gemma3_text\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":3,\"num_attention_heads\":2,\"intermediate_size\":16,\"head_dim\":4,"
		  "\"layer_types\":[\"sliding_attention\",\"full_attention\",\"full_attention\"]}",
		  -EOPNOTSUPP },
		{ "{\"model_type\":\"gemma3_text\"," BASE
		  ",\"head_dim\":4,\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"yarn\"}}}",
		  -EOPNOTSUPP },
		{ "{\"model_type\":\"gemma3_text\"," BASE
		  ",\"head_dim\":4,\"query_pre_attn_scalar\":0}",
		  -EBADMSG },
		{ "{\"model_type\":\"llama\"," BASE ",\"attention_bias\":true}", -EOPNOTSUPP },
		{ "{\"model_type\":\"llama\"," BASE ",\"hidden_act\":\"gelu\"}", -EOPNOTSUPP },
		{ "{\"model_type\":\"llama\"," BASE ",\"eos_token_id\":\"x\"}", -EBADMSG },
		{ "{\"model_type\":\"llama\",\"num_attention_heads\":0,\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,\"intermediate_size\":16}",
		  -EBADMSG },
		{ "{\"model_type\":\"opt\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2}",
		  -EBADMSG },
		{ "{\"model_type\":\"opt\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"ffn_dim\":4,\"activation_function\":\"gelu\"}",
		  -EOPNOTSUPP },
	};
	struct model_config c;
	struct errbuf e;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret = parse_str(cases[i].json, &c, &e);

		if (ret != cases[i].ret)
			fail_msg("case %zu: got %d want %d (%s)", i, ret, cases[i].ret, e.msg);
		if (ret)
			assert_true(e.msg[0] != 0);
	}
	assert_int_equal(model_config_from_hf_json(CFG_DIR "missing.json", &c, &e), -ENOENT);
}

static void test_validate_catches_inconsistency(void **state)
{
	struct model_config c, bad;
	struct errbuf e;

	assert_int_equal(parse_str("{\"model_type\":\"llama\"," BASE "}", &c, &e), 0);
	assert_int_equal(model_config_validate(&c, &e), 0);
	bad = c;
	bad.n_kv_heads = 3; /* 2 heads not a multiple of 3 kv heads */
	assert_int_equal(model_config_validate(&bad, &e), -EBADMSG);
	bad = c;
	bad.n_heads = 4;
	bad.n_kv_heads = 3;
	assert_int_equal(model_config_validate(&bad, &e), -EBADMSG);
	bad = c;
	bad.head_dim = 3;
	assert_int_equal(model_config_validate(&bad, &e), -EBADMSG);
	bad = c;
	bad.n_layers = 0;
	assert_int_equal(model_config_validate(&bad, &e), -EBADMSG);
	bad = c;
	bad.n_vocab = 1u << 30;
	assert_int_equal(model_config_validate(&bad, &e), -EBADMSG);
	bad = c;
	bad.norm_eps = 0;
	assert_int_equal(model_config_validate(&bad, &e), -EBADMSG);
	bad = c;
	bad.rope_scaling = ROPE_SCALING_LLAMA3;
	bad.rope_factor = 8;
	bad.rope_low_freq_factor = 4;
	bad.rope_high_freq_factor = 1;
	bad.rope_orig_ctx = 8192;
	assert_int_equal(model_config_validate(&bad, &e), -EBADMSG);
	bad.rope_high_freq_factor = 8;
	assert_int_equal(model_config_validate(&bad, &e), 0);
}

static void test_gguf_real_model(void **state)
{
	struct gguf_file *g = NULL;
	struct model_config c;
	struct errbuf e = { { 0 } };

	if (access(LOADERS_MODEL, R_OK))
		fail_msg("%s is missing: run 'make model'", LOADERS_MODEL);
	assert_int_equal(gguf_open(LOADERS_MODEL, &g, &e), 0);
	assert_int_equal(model_config_from_gguf(g, &c, &e), 0);
	assert_int_equal(model_config_validate(&c, &e), 0);
	check_smollm2(&c);
	gguf_close(g);
}

/* Gemma 3 metadata as llama.cpp writes it; the layer pattern and the sliding base default. */
static void test_gguf_gemma3(void **state)
{
	const char *toks[] = { "<pad>", "<eos>", "<bos>", "a", "b", "c" };

	for (int with_pattern = 0; with_pattern < 2; with_pattern++) {
		struct gguf_writer *w = gguf_writer_new();
		struct gguf_file *g = NULL;
		struct errbuf e = { { 0 } };
		struct model_config c;
		void *buf;
		size_t n;

		gguf_writer_add_str(w, "general.architecture", "gemma3", 6);
		gguf_writer_add_u32(w, "gemma3.block_count", 18);
		gguf_writer_add_u32(w, "gemma3.context_length", 32768);
		gguf_writer_add_u32(w, "gemma3.embedding_length", 640);
		gguf_writer_add_u32(w, "gemma3.feed_forward_length", 2048);
		gguf_writer_add_u32(w, "gemma3.attention.head_count", 4);
		gguf_writer_add_u32(w, "gemma3.attention.head_count_kv", 1);
		gguf_writer_add_u32(w, "gemma3.attention.key_length", 256);
		gguf_writer_add_u32(w, "gemma3.attention.sliding_window", 512);
		gguf_writer_add_f32(w, "gemma3.rope.freq_base", 1e6f);
		if (with_pattern) {
			gguf_writer_add_u32(w, "gemma3.attention.sliding_window_pattern", 4);
			gguf_writer_add_f32(w, "gemma3.rope.freq_base_swa", 5e4f);
		}
		gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, NULL, 6);
		assert_int_equal(gguf_writer_write_mem(w, &buf, &n), 0);
		assert_int_equal(gguf_open_mem(buf, n, &g, &e), 0);
		assert_int_equal(model_config_from_gguf(g, &c, &e), 0);
		assert_int_equal(model_config_validate(&c, &e), 0);
		assert_int_equal(c.act, FFN_ACT_GELU_TANH);
		assert_true(c.qk_norm && c.post_norms && c.tied_embeddings);
		assert_false(c.norm_offset); /* llama.cpp folds Gemma's 1 + w in */
		assert_int_equal(c.head_dim, 256);
		assert_int_equal(c.n_vocab, 6);
		assert_int_equal(c.sliding_window, 512);
		assert_int_equal(c.swa_period, with_pattern ? 4 : 6);
		assert_true(c.rope_theta_swa == (with_pattern ? 5e4f : 1e4f));
		assert_true(fabsf(c.embed_scale * c.embed_scale - 640.0f) < 1e-3f);
		assert_true(c.attn_scale == 0); /* head_dim^-1/2 */
		gguf_close(g);
		free(buf);
		gguf_writer_free(w);
	}
}

/* qwen2 metadata, no vocab_size (token list length instead), a real output.weight. */
static void test_gguf_qwen2_and_vocab_from_tokens(void **state)
{
	struct gguf_writer *w = gguf_writer_new();
	struct gguf_file *g = NULL;
	struct model_config c;
	struct errbuf e = { { 0 } };
	const char *toks[] = { "a", "b", "c", "d", "e" };
	float out[5 * 32] = { 0 };
	uint64_t ne[] = { 32, 5 };
	void *buf;
	size_t n;

	gguf_writer_add_str(w, "general.architecture", "qwen2", 5);
	gguf_writer_add_u32(w, "qwen2.block_count", 2);
	gguf_writer_add_u32(w, "qwen2.context_length", 4096);
	gguf_writer_add_u32(w, "qwen2.embedding_length", 32);
	gguf_writer_add_u32(w, "qwen2.feed_forward_length", 64);
	gguf_writer_add_u32(w, "qwen2.attention.head_count", 4);
	gguf_writer_add_u32(w, "qwen2.attention.head_count_kv", 2);
	gguf_writer_add_f32(w, "qwen2.rope.freq_base", 1e6f);
	gguf_writer_add_f32(w, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
	gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", toks, NULL, 5);
	gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 4);
	gguf_writer_add_str(w, "qwen2.rope.scaling.type", "linear", 6);
	gguf_writer_add_f32(w, "qwen2.rope.scaling.factor", 2.0f);
	gguf_writer_add_tensor(w, "output.weight", GGML_TYPE_F32, 2, ne, out, sizeof(out));
	assert_int_equal(gguf_writer_write_mem(w, &buf, &n), 0);
	assert_int_equal(gguf_open_mem(buf, n, &g, &e), 0);
	assert_int_equal(model_config_from_gguf(g, &c, &e), 0);
	assert_int_equal(model_config_validate(&c, &e), 0);
	assert_true(c.qkv_bias);
	assert_int_equal(c.n_vocab, 5);
	assert_int_equal(c.n_layers, 2);
	assert_int_equal(c.head_dim, 8);
	assert_int_equal(c.n_kv_heads, 2);
	assert_true(c.rope_theta == 1e6f);
	assert_int_equal(c.rope_scaling, ROPE_SCALING_LINEAR);
	assert_true(c.rope_factor == 2.0f);
	assert_false(c.tied_embeddings);
	assert_int_equal(c.bos_id, -1);
	assert_int_equal(c.eos_id, 4);
	gguf_close(g);
	free(buf);
	gguf_writer_free(w);

	/* unknown architecture and missing keys */
	w = gguf_writer_new();
	gguf_writer_add_str(w, "general.architecture", "gemma2", 6);
	assert_int_equal(gguf_writer_write_mem(w, &buf, &n), 0);
	assert_int_equal(gguf_open_mem(buf, n, &g, &e), 0);
	assert_int_equal(model_config_from_gguf(g, &c, &e), -EOPNOTSUPP);
	gguf_close(g);
	free(buf);
	gguf_writer_free(w);
	w = gguf_writer_new();
	gguf_writer_add_str(w, "general.architecture", "llama", 5);
	gguf_writer_add_u32(w, "llama.block_count", 2);
	assert_int_equal(gguf_writer_write_mem(w, &buf, &n), 0);
	assert_int_equal(gguf_open_mem(buf, n, &g, &e), 0);
	assert_int_equal(model_config_from_gguf(g, &c, &e), -EBADMSG);
	assert_non_null(strstr(e.msg, "llama."));
	gguf_close(g);
	free(buf);
	gguf_writer_free(w);
}

int test_config_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_smollm2_llama_config),
		cmocka_unit_test(test_llama3_rope_scaling),
		cmocka_unit_test(test_linear_rope_and_defaults),
		cmocka_unit_test(test_qwen2_and_mistral),
		cmocka_unit_test(test_gemma3),
		cmocka_unit_test(test_opt),
		cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_validate_catches_inconsistency),
		cmocka_unit_test(test_gguf_real_model),
		cmocka_unit_test(test_gguf_qwen2_and_vocab_from_tokens),
		cmocka_unit_test(test_gguf_gemma3),
	};
	return cmocka_run_group_tests_name("engine/config", tests, NULL, NULL);
}
