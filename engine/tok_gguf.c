// SPDX-License-Identifier: MIT
/*
 * Tokenizer from GGUF metadata (the tokenizer.ggml.* keys written by llama.cpp's converter):
 *
 *   model          "gpt2": byte-level BPE with merges; "llama": SentencePiece BPE by piece score
 *   tokens         string[n]           token_type  int32[n] (1 normal, 2 unknown, 3 control,
 *   merges         string[] "a b"                  4 user-defined, 5 unused, 6 byte)
 *   scores         float32[n]          pre         pre-tokenizer name (byte-level only)
 *   bos/eos/unknown_token_id, add_bos_token, add_space_prefix
 *
 * Pre-tokenizer names follow llama.cpp's (the converter hashes the HF tokenizer's output to
 * pick one); each maps to the HF pre-tokenizer it stands for:
 *   default, gpt2, (absent)      ByteLevel (GPT-2 regex)
 *   smollm, starcoder, refact    Digits(individual_digits) + ByteLevel
 *   llama-bpe, llama3            Split(LLaMA-3 regex) + ByteLevel(use_regex=false), ignore_merges
 *   qwen2                        Split(Qwen2 regex) + ByteLevel(use_regex=false)
 */
#include "engine/gguf.h"
#include "engine/tok_internal.h"

#include <string.h>

static bool str_is(const char *s, size_t len, const char *lit)
{
	return len == strlen(lit) && !memcmp(s, lit, len);
}

static int set_pre(struct tokenizer *t, const char *pre, size_t len, struct errbuf *e)
{
	if (!pre || str_is(pre, len, "default") || str_is(pre, len, "gpt2") ||
	    str_is(pre, len, "gpt-2"))
		return tok_add_pretok(t, tok_re_gpt2, strlen(tok_re_gpt2), false,
				      TOK_SPLIT_ISOLATED, false, e);
	if (str_is(pre, len, "smollm") || str_is(pre, len, "starcoder") ||
	    str_is(pre, len, "refact")) {
		int ret = tok_add_pretok(t, tok_re_digits, strlen(tok_re_digits), false,
					 TOK_SPLIT_ISOLATED, false, e);

		if (ret)
			return ret;
		return tok_add_pretok(t, tok_re_gpt2, strlen(tok_re_gpt2), false,
				      TOK_SPLIT_ISOLATED, false, e);
	}
	if (str_is(pre, len, "llama-bpe") || str_is(pre, len, "llama3")) {
		t->ignore_merges = true;
		return tok_add_pretok(t, tok_re_llama3, strlen(tok_re_llama3), false,
				      TOK_SPLIT_ISOLATED, false, e);
	}
	if (str_is(pre, len, "qwen2"))
		return tok_add_pretok(t, tok_re_qwen2, strlen(tok_re_qwen2), false,
				      TOK_SPLIT_ISOLATED, false, e);
	return errbuf_set(e, -EOPNOTSUPP, "tokenizer.ggml.pre '%.*s' not supported",
			  (int)(len > 64 ? 64 : len), pre);
}

/* An optional token id key: absent leaves *id alone; present must be < n_vocab. */
static int get_id(const struct gguf_file *g, const char *key, uint32_t n_vocab, int32_t *id,
		  struct errbuf *e)
{
	uint32_t v;
	int ret = gguf_get_u32(g, key, &v);

	if (ret == -ENOENT)
		return 0;
	if (ret)
		return errbuf_set(e, -EBADMSG, "%s is not an unsigned integer", key);
	if (v >= n_vocab)
		return errbuf_set(e, -EBADMSG, "%s = %u out of range (vocab %u)", key, v, n_vocab);
	*id = (int32_t)v;
	return 0;
}

static int get_flag(const struct gguf_file *g, const char *key, bool dflt, bool *ret_v,
		    struct errbuf *e)
{
	int ret = gguf_get_bool(g, key, ret_v);

	if (ret == -ENOENT) {
		*ret_v = dflt;
		return 0;
	}
	return ret ? errbuf_set(e, -EBADMSG, "%s is not a bool", key) : 0;
}

static int load_tokens(struct tokenizer *t, const struct gguf_file *g, bool spm, struct errbuf *e)
{
	const struct gguf_kv *toks, *types = NULL, *scores = NULL;
	const struct gguf_str *s;
	uint64_t i;
	int ret;

	ret = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &toks);
	if (ret)
		return errbuf_set(e, ret == -ENOENT ? -EBADMSG : ret,
				  "tokenizer.ggml.tokens missing or not a string array");
	if (!toks->n || toks->n > (1u << 24))
		return errbuf_set(e, -EBADMSG, "tokenizer.ggml.tokens: %llu entries",
				  (unsigned long long)toks->n);
	ret = gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_VT_INT32, &types);
	if (ret == -ENOENT)
		types = NULL;
	else if (ret || types->n != toks->n)
		return errbuf_set(e, -EBADMSG,
				  "tokenizer.ggml.token_type does not match the tokens");
	ret = gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, &scores);
	if (ret == -ENOENT) {
		if (spm)
			return errbuf_set(e, -EBADMSG,
					  "SPM tokenizer without tokenizer.ggml.scores");
		scores = NULL;
	} else if (ret || scores->n != toks->n) {
		return errbuf_set(e, -EBADMSG, "tokenizer.ggml.scores does not match the tokens");
	}
	ret = tok_set_n_vocab(t, (uint32_t)toks->n, e);
	if (ret)
		return ret;
	s = toks->data;
	for (i = 0; i < toks->n; i++) {
		double ty = types ? gguf_arr_num(types, i) : TOK_T_NORMAL;
		float sc = scores ? (float)gguf_arr_num(scores, i) : 0.0f;

		if (!(ty >= 0 && ty < TOK_T_COUNT))
			return errbuf_set(e, -EBADMSG, "token %llu has type %g",
					  (unsigned long long)i, ty);
		if (ty == TOK_T_UNDEF)
			ty = TOK_T_NORMAL;
		if (sc != sc)
			return errbuf_set(e, -EBADMSG, "token %llu has a NaN score",
					  (unsigned long long)i);
		ret = tok_set_token(t, (uint32_t)i, s[i].data, s[i].len, sc, (enum tok_type)ty, e);
		if (ret)
			return ret;
	}
	return tok_index_vocab(t, e);
}

static int load_merges(struct tokenizer *t, const struct gguf_file *g, struct errbuf *e)
{
	const struct gguf_kv *m;
	const struct gguf_str *s;
	uint64_t i;
	int ret;

	ret = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_VT_STRING, &m);
	if (ret)
		return errbuf_set(e, ret == -ENOENT ? -EBADMSG : ret,
				  "tokenizer.ggml.merges missing or not a string array");
	if (m->n > UINT32_MAX)
		return errbuf_set(e, -EBADMSG, "too many merges");
	s = m->data;
	for (i = 0; i < m->n; i++) {
		const char *sp = s[i].len ? memchr(s[i].data, ' ', s[i].len) : NULL;

		if (!sp)
			return errbuf_set(e, -EBADMSG, "merge %llu is not 'a b'",
					  (unsigned long long)i);
		ret = tok_add_merge(t, s[i].data, (size_t)(sp - s[i].data), sp + 1,
				    s[i].len - (size_t)(sp + 1 - s[i].data), (uint32_t)i, e);
		if (ret)
			return ret;
	}
	return 0;
}

int tokenizer_from_gguf(const struct gguf_file *g, struct tokenizer **ret, struct errbuf *e)
{
	struct tokenizer *t;
	const char *model, *pre = NULL;
	size_t model_len, pre_len = 0;
	bool spm, space_prefix;
	int r;

	if (!g || !ret)
		return -EINVAL;
	r = gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len);
	if (r)
		return errbuf_set(e, r == -ENOENT ? -EBADMSG : r, "no tokenizer.ggml.model");
	if (str_is(model, model_len, "gpt2"))
		spm = false;
	else if (str_is(model, model_len, "llama"))
		spm = true;
	else
		return errbuf_set(e, -EOPNOTSUPP, "tokenizer model '%.*s' not supported",
				  (int)(model_len > 32 ? 32 : model_len), model);
	t = tok_alloc(spm ? TOK_SPM_BPE : TOK_BYTE_BPE);
	if (!t)
		return -ENOMEM;
	r = load_tokens(t, g, spm, e);
	if (r)
		goto out_free;
	r = get_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos, e);
	if (!r)
		r = get_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos, e);
	if (!r)
		r = get_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk, e);
	if (!r)
		r = get_flag(g, "tokenizer.ggml.add_bos_token", spm, &t->add_bos, e);
	if (!r)
		r = get_flag(g, "tokenizer.ggml.add_space_prefix", spm, &space_prefix, e);
	if (r)
		goto out_free;
	if (spm) {
		/*
		 * SentencePiece: "▁" for spaces and one "▁" in front of the text (its dummy
		 * prefix). Like sentencepiece, and HF's Metaspace prepend_scheme "first", text
		 * after an added token gets no prefix (llama.cpp, and HF's legacy Prepend
		 * normalizer, add one to every segment).
		 */
		t->score_merges = true;
		t->prepend_first_only = true;
		t->byte_fallback = true;
		t->strip_decoded_space = space_prefix;
		if (t->unk < 0) {
			for (uint32_t i = 0; i < t->n_vocab && t->unk < 0; i++)
				if (t->tokens[i].type == TOK_T_UNKNOWN)
					t->unk = (int32_t)i;
		}
		r = tok_add_norm(t, " ", 1, "\xe2\x96\x81", 3, e);
		if (!r && space_prefix)
			r = tok_add_norm(t, NULL, 0, "\xe2\x96\x81", 3, e);
	} else {
		t->byte_level = true;
		r = load_merges(t, g, e);
		if (!r) {
			r = gguf_get_str(g, "tokenizer.ggml.pre", &pre, &pre_len);
			if (r == -ENOENT) {
				pre = NULL;
				r = 0;
			} else if (r) {
				r = errbuf_set(e, -EBADMSG, "tokenizer.ggml.pre is not a string");
			}
		}
		if (!r)
			r = set_pre(t, pre, pre_len, e);
	}
	if (r)
		goto out_free;
	r = tok_finish(t, e);
	if (r)
		goto out_free;
	*ret = t;
	return 0;

out_free:
	tokenizer_free(t);
	return r;
}
