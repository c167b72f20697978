// SPDX-License-Identifier: MIT
/*
 * Loaders for JSON-based tokenizer files: HF tokenizer.json (model type BPE) and the original
 * GPT-2 encoder.json + vocab.bpe pair.
 *
 * Supported tokenizer.json components (anything else is -EOPNOTSUPP, never silently ignored):
 *   normalizer     null, Sequence, Prepend, Replace (String pattern)
 *   pre_tokenizer  null, Sequence, ByteLevel (add_prefix_space false), Split (Regex/String,
 *                  any behaviour, invert), Digits, Metaspace (replacement "▁")
 *   model          BPE: vocab, merges ("a b" strings or ["a", "b"] pairs), unk_token,
 *                  byte_fallback, fuse_unk, ignore_merges
 *   post_processor TemplateProcessing: a leading special token is the BOS the model wants
 *   decoder        only read to learn whether decoding strips the SPM prefix space
 * Regexes written for Oniguruma (HF's engine) are compiled with PCRE2 in UTF+UCP mode; the
 * patterns in real tokenizer.json files use the common subset.
 */
#include "engine/tok_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fileio.h"

#define MAX_JSON_BYTES (1ull << 31)

static bool is_type(const cJSON *o, const char *type)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");

	return cJSON_IsString(t) && !strcmp(t->valuestring, type);
}

static const char *get_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A boolean member, @dflt when absent or null; -1 when of another type. */
static int get_bool(const cJSON *o, const char *key, bool dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!v || cJSON_IsNull(v))
		return dflt;
	if (!cJSON_IsBool(v))
		return -1;
	return cJSON_IsTrue(v);
}

static bool is_id(const cJSON *v)
{
	return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < (1 << 24) &&
	       v->valuedouble == (double)(int32_t)v->valuedouble;
}

/* ---- normalizer ---- */

static int load_normalizer(struct tokenizer *t, const cJSON *n, struct errbuf *e)
{
	const char *type;

	if (!n || cJSON_IsNull(n))
		return 0;
	if (!cJSON_IsObject(n) || !(type = get_str(n, "type")))
		return errbuf_set(e, -EBADMSG, "normalizer without a type");
	if (!strcmp(type, "Sequence")) {
		const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers"), *it;

		if (!cJSON_IsArray(list))
			return errbuf_set(e, -EBADMSG, "normalizer Sequence without a list");
		cJSON_ArrayForEach(it, list)
		{
			int ret = load_normalizer(t, it, e);

			if (ret)
				return ret;
		}
		return 0;
	}
	if (!strcmp(type, "Prepend")) {
		const char *p = get_str(n, "prepend");

		if (!p)
			return errbuf_set(e, -EBADMSG, "Prepend without a string");
		return tok_add_norm(t, NULL, 0, p, strlen(p), e);
	}
	if (!strcmp(type, "Replace")) {
		const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
		const char *from = get_str(pat, "String"), *to = get_str(n, "content");

		if (!from || !to)
			return errbuf_set(e, -EOPNOTSUPP,
					  "Replace needs a String pattern and content");
		return tok_add_norm(t, from, strlen(from), to, strlen(to), e);
	}
	return errbuf_set(e, -EOPNOTSUPP, "normalizer '%s' not supported", type);
}

/* ---- pre-tokenizer ---- */

static int parse_behavior(const char *s, enum tok_split *ret)
{
	static const char *const names[] = {
		[TOK_SPLIT_REMOVED] = "Removed",
		[TOK_SPLIT_ISOLATED] = "Isolated",
		[TOK_SPLIT_MERGED_PREV] = "MergedWithPrevious",
		[TOK_SPLIT_MERGED_NEXT] = "MergedWithNext",
		[TOK_SPLIT_CONTIGUOUS] = "Contiguous",
	};

	for (unsigned int i = 0; s && i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(s, names[i])) {
			*ret = (enum tok_split)i;
			return 0;
		}
	}
	return -1;
}

static int load_pretok(struct tokenizer *t, const cJSON *p, bool *byte_level, struct errbuf *e)
{
	const char *type;
	int ret;

	if (!p || cJSON_IsNull(p))
		return 0;
	if (!cJSON_IsObject(p) || !(type = get_str(p, "type")))
		return errbuf_set(e, -EBADMSG, "pre_tokenizer without a type");
	if (!strcmp(type, "Sequence")) {
		const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"), *it;

		if (!cJSON_IsArray(list))
			return errbuf_set(e, -EBADMSG, "pre_tokenizer Sequence without a list");
		cJSON_ArrayForEach(it, list)
		{
			ret = load_pretok(t, it, byte_level, e);
			if (ret)
				return ret;
		}
		return 0;
	}
	if (t->metaspace)
		return errbuf_set(e, -EOPNOTSUPP, "Metaspace must be the last pre-tokenizer");
	if (!strcmp(type, "ByteLevel")) {
		int aps = get_bool(p, "add_prefix_space", false),
		    ur = get_bool(p, "use_regex", true);

		if (aps < 0 || ur < 0)
			return errbuf_set(e, -EBADMSG, "ByteLevel flags must be booleans");
		if (aps)
			return errbuf_set(e, -EOPNOTSUPP,
					  "ByteLevel add_prefix_space not supported");
		*byte_level = true;
		if (!ur)
			return 0;
		return tok_add_pretok(t, tok_re_gpt2, strlen(tok_re_gpt2), false,
				      TOK_SPLIT_ISOLATED, false, e);
	}
	if (!strcmp(type, "Digits")) {
		int ind = get_bool(p, "individual_digits", false);

		if (ind < 0)
			return errbuf_set(e, -EBADMSG, "Digits flag must be a boolean");
		if (ind)
			return tok_add_pretok(t, tok_re_digits, strlen(tok_re_digits), false,
					      TOK_SPLIT_ISOLATED, false, e);
		return tok_add_pretok(t, tok_re_digits, strlen(tok_re_digits), false,
				      TOK_SPLIT_CONTIGUOUS, false, e);
	}
	if (!strcmp(type, "Split")) {
		const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
		const char *re = get_str(pat, "Regex"), *str = get_str(pat, "String");
		enum tok_split beh;
		int inv = get_bool(p, "invert", false);

		if ((!re && !str) || inv < 0 || parse_behavior(get_str(p, "behavior"), &beh))
			return errbuf_set(e, -EBADMSG, "Split needs a pattern and a behavior");
		return re ? tok_add_pretok(t, re, strlen(re), false, beh, inv, e)
			  : tok_add_pretok(t, str, strlen(str), true, beh, inv, e);
	}
	if (!strcmp(type, "Metaspace")) {
		const char *rep = get_str(p, "replacement"), *scheme = get_str(p, "prepend_scheme");
		int split = get_bool(p, "split", true), aps = get_bool(p, "add_prefix_space", true);

		if (!rep || strcmp(rep, "\xe2\x96\x81"))
			return errbuf_set(e, -EOPNOTSUPP,
					  "Metaspace replacement other than U+2581");
		if (split < 0 || aps < 0)
			return errbuf_set(e, -EBADMSG, "Metaspace flags must be booleans");
		if (t->n_pretok)
			return errbuf_set(e, -EOPNOTSUPP, "Metaspace after a regex pre-tokenizer");
		t->metaspace = true;
		t->meta_split = split;
		if (!scheme)
			t->meta_prepend = aps ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
		else if (!strcmp(scheme, "always"))
			t->meta_prepend = TOK_PREPEND_ALWAYS;
		else if (!strcmp(scheme, "first"))
			t->meta_prepend = TOK_PREPEND_FIRST;
		else if (!strcmp(scheme, "never"))
			t->meta_prepend = TOK_PREPEND_NEVER;
		else
			return errbuf_set(e, -EBADMSG, "Metaspace prepend_scheme '%s'", scheme);
		return 0;
	}
	return errbuf_set(e, -EOPNOTSUPP, "pre_tokenizer '%s' not supported", type);
}

/* Does the decoder strip the space that SPM normalization put in front? */
static bool decoder_strips_space(const cJSON *d)
{
	const cJSON *it;

	if (!cJSON_IsObject(d))
		return false;
	if (is_type(d, "Sequence")) {
		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(d, "decoders"))
		{
			if (decoder_strips_space(it))
				return true;
		}
		return false;
	}
	if (is_type(d, "Strip")) {
		const cJSON *start = cJSON_GetObjectItemCaseSensitive(d, "start");
		const char *content = get_str(d, "content");

		return content && !strcmp(content, " ") && cJSON_IsNumber(start) &&
		       start->valuedouble >= 1;
	}
	if (is_type(d, "Metaspace")) {
		const char *scheme = get_str(d, "prepend_scheme");

		if (scheme)
			return strcmp(scheme, "never") != 0;
		return get_bool(d, "add_prefix_space", true) == 1;
	}
	return false;
}

/* ---- model ---- */

static int load_vocab(struct tokenizer *t, const cJSON *vocab, const cJSON *added, struct errbuf *e)
{
	const cJSON *it;
	uint32_t n = 0;
	int ret;

	if (!cJSON_IsObject(vocab))
		return errbuf_set(e, -EBADMSG, "model.vocab is not an object");
	cJSON_ArrayForEach(it, vocab)
	{
		if (!is_id(it))
			return errbuf_set(e, -EBADMSG, "vocab entry has a bad id");
		if ((uint32_t)it->valuedouble + 1 > n)
			n = (uint32_t)it->valuedouble + 1;
	}
	if (added && !cJSON_IsArray(added))
		return errbuf_set(e, -EBADMSG, "added_tokens is not an array");
	cJSON_ArrayForEach(it, added)
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");

		if (!is_id(id) || !get_str(it, "content"))
			return errbuf_set(e, -EBADMSG, "added token without id or content");
		if ((uint32_t)id->valuedouble + 1 > n)
			n = (uint32_t)id->valuedouble + 1;
	}
	ret = tok_set_n_vocab(t, n, e);
	if (ret)
		return ret;
	cJSON_ArrayForEach(it, vocab)
	{
		ret = tok_set_token(t, (uint32_t)it->valuedouble, it->string, strlen(it->string), 0,
				    TOK_T_NORMAL, e);
		if (ret)
			return ret;
	}
	cJSON_ArrayForEach(it, added)
	{
		uint32_t id = (uint32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
		const char *content = get_str(it, "content");
		int special = get_bool(it, "special", false);
		struct tok_token *k = &t->tokens[id];

		if (special < 0)
			return errbuf_set(e, -EBADMSG, "added token %u: bad 'special'", id);
		if (!k->text) {
			ret = tok_set_token(t, id, content, strlen(content), 0, TOK_T_NORMAL, e);
			if (ret)
				return ret;
		} else if (strcmp(k->text, content)) {
			return errbuf_set(e, -EBADMSG, "added token %u differs from the vocab", id);
		}
		tok_mark_added(t, (int32_t)id, special);
		k->lstrip = get_bool(it, "lstrip", false) == 1;
		k->rstrip = get_bool(it, "rstrip", false) == 1;
		k->single_word = get_bool(it, "single_word", false) == 1;
	}
	return tok_index_vocab(t, e);
}

static int load_merges(struct tokenizer *t, const cJSON *merges, struct errbuf *e)
{
	const cJSON *it;
	uint32_t rank = 0;
	int ret;

	if (!merges || cJSON_IsNull(merges))
		return 0;
	if (!cJSON_IsArray(merges))
		return errbuf_set(e, -EBADMSG, "model.merges is not an array");
	cJSON_ArrayForEach(it, merges)
	{
		const char *a, *b;
		size_t alen, blen;

		if (cJSON_IsString(it)) {
			const char *sp = strchr(it->valuestring, ' ');

			if (!sp)
				return errbuf_set(e, -EBADMSG, "merge %u has no space", rank);
			a = it->valuestring;
			alen = (size_t)(sp - a);
			b = sp + 1;
			blen = strlen(b);
		} else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 &&
			   cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
			   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
			a = cJSON_GetArrayItem(it, 0)->valuestring;
			b = cJSON_GetArrayItem(it, 1)->valuestring;
			alen = strlen(a);
			blen = strlen(b);
		} else {
			return errbuf_set(e, -EBADMSG, "merge %u is malformed", rank);
		}
		ret = tok_add_merge(t, a, alen, b, blen, rank, e);
		if (ret)
			return ret;
		rank++;
	}
	return 0;
}

static int load_model(struct tokenizer *t, const cJSON *model, const cJSON *added, struct errbuf *e)
{
	const cJSON *v;
	const char *unk;
	int bf, fu, im, ret;

	if (!cJSON_IsObject(model))
		return errbuf_set(e, -EBADMSG, "no model object");
	if (!is_type(model, "BPE") && !(!cJSON_GetObjectItemCaseSensitive(model, "type") &&
					cJSON_GetObjectItemCaseSensitive(model, "merges")))
		return errbuf_set(e, -EOPNOTSUPP, "model type '%s' not supported (BPE only)",
				  get_str(model, "type") ? get_str(model, "type") : "?");
	bf = get_bool(model, "byte_fallback", false);
	fu = get_bool(model, "fuse_unk", false);
	im = get_bool(model, "ignore_merges", false);
	if (bf < 0 || fu < 0 || im < 0)
		return errbuf_set(e, -EBADMSG, "model flags must be booleans");
	t->byte_fallback = bf;
	t->fuse_unk = fu;
	t->ignore_merges = im;
	v = cJSON_GetObjectItemCaseSensitive(model, "dropout");
	if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
		return errbuf_set(e, -EOPNOTSUPP, "BPE dropout not supported");
	if ((get_str(model, "continuing_subword_prefix") &&
	     *get_str(model, "continuing_subword_prefix")) ||
	    (get_str(model, "end_of_word_suffix") && *get_str(model, "end_of_word_suffix")))
		return errbuf_set(e, -EOPNOTSUPP, "subword prefix/suffix not supported");
	ret = load_vocab(t, cJSON_GetObjectItemCaseSensitive(model, "vocab"), added, e);
	if (ret)
		return ret;
	unk = get_str(model, "unk_token");
	if (unk) {
		t->unk = tok_lookup(t, unk, strlen(unk));
		if (t->unk < 0)
			return errbuf_set(e, -EBADMSG, "unk_token '%.40s' not in the vocab", unk);
	}
	return load_merges(t, cJSON_GetObjectItemCaseSensitive(model, "merges"), e);
}

/* BOS from TemplateProcessing: a special token before $A means the model wants it. */
static void load_post(struct tokenizer *t, const cJSON *post)
{
	const cJSON *single, *first, *st;
	const char *name;

	if (!cJSON_IsObject(post))
		return;
	if (is_type(post, "Sequence")) {
		const cJSON *it;

		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(post, "processors"))
			load_post(t, it);
		return;
	}
	if (!is_type(post, "TemplateProcessing"))
		return;
	single = cJSON_GetObjectItemCaseSensitive(post, "single");
	first = cJSON_IsArray(single) ? cJSON_GetArrayItem(single, 0) : NULL;
	st = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
	name = get_str(st, "id");
	if (name && tok_lookup(t, name, strlen(name)) >= 0) {
		t->bos = tok_lookup(t, name, strlen(name));
		t->add_bos = true;
	}
}

/* Without tokenizer_config.json, guess BOS/EOS from the usual spellings. */
static void guess_bos_eos(struct tokenizer *t)
{
	static const char *const bos[] = { "<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>" };
	static const char *const eos[] = { "</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>" };
	unsigned int i;

	for (i = 0; t->bos < 0 && i < sizeof(bos) / sizeof(bos[0]); i++)
		t->bos = tok_lookup(t, bos[i], strlen(bos[i]));
	for (i = 0; t->eos < 0 && i < sizeof(eos) / sizeof(eos[0]); i++)
		t->eos = tok_lookup(t, eos[i], strlen(eos[i]));
}

int tokenizer_from_hf_json_mem(const char *buf, size_t len, struct tokenizer **ret,
			       struct errbuf *e)
{
	struct tokenizer *t;
	cJSON *root;
	bool byte_level = false;
	int r;

	if (!buf || !ret)
		return -EINVAL;
	root = cJSON_ParseWithLength(buf, len);
	if (!root)
		return errbuf_set(e, -EBADMSG, "not valid JSON");
	if (!cJSON_IsObject(root)) {
		r = errbuf_set(e, -EBADMSG, "top level is not an object");
		goto out_json;
	}
	t = tok_alloc(TOK_BYTE_BPE);
	if (!t) {
		r = -ENOMEM;
		goto out_json;
	}
	r = load_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"),
		       cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), e);
	if (r)
		goto out_tok;
	r = load_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), e);
	if (r)
		goto out_tok;
	r = load_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), &byte_level, e);
	if (r)
		goto out_tok;
	t->byte_level = byte_level;
	t->kind = byte_level ? TOK_BYTE_BPE : TOK_SPM_BPE;
	t->strip_decoded_space =
		!byte_level &&
		decoder_strips_space(cJSON_GetObjectItemCaseSensitive(root, "decoder"));
	load_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
	guess_bos_eos(t);
	r = tok_finish(t, e);
	if (r)
		goto out_tok;
	cJSON_Delete(root);
	*ret = t;
	return 0;

out_tok:
	tokenizer_free(t);
out_json:
	cJSON_Delete(root);
	return r;
}

/* A tokenizer_config.json token field: "text" or {"content": "text", ...}. */
static int32_t config_token(const struct tokenizer *t, const cJSON *cfg, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
	const char *s = cJSON_IsString(v) ? v->valuestring : get_str(v, "content");

	return s ? tok_lookup(t, s, strlen(s)) : -1;
}

/*
 * HF keeps BOS/EOS and add_bos_token in tokenizer_config.json next to tokenizer.json; when
 * that file is there and readable, it overrides the guesses. A bad or absent file is ignored:
 * it is optional and the tokenizer itself is complete without it.
 */
static void apply_config(struct tokenizer *t, const char *json_path)
{
	const char *slash = strrchr(json_path, '/');
	size_t dir_len = slash ? (size_t)(slash - json_path) + 1 : 0, len;
	char *path, *buf;
	cJSON *cfg;
	int32_t id;
	int b;

	path = malloc(dir_len + sizeof("tokenizer_config.json"));
	if (!path)
		return;
	memcpy(path, json_path, dir_len);
	memcpy(path + dir_len, "tokenizer_config.json", sizeof("tokenizer_config.json"));
	if (fileio_read(path, MAX_JSON_BYTES, &buf, &len, NULL)) {
		free(path);
		return;
	}
	free(path);
	cfg = cJSON_ParseWithLength(buf, len);
	free(buf);
	if (!cJSON_IsObject(cfg))
		goto out;
	id = config_token(t, cfg, "bos_token");
	if (id >= 0)
		t->bos = id;
	id = config_token(t, cfg, "eos_token");
	if (id >= 0)
		t->eos = id;
	b = get_bool(cfg, "add_bos_token", t->add_bos);
	if (b >= 0)
		t->add_bos = b && t->bos >= 0;
out:
	cJSON_Delete(cfg);
}

int tokenizer_from_hf_json(const char *path, struct tokenizer **ret, struct errbuf *e)
{
	char *buf;
	size_t len;
	int r;

	if (!path || !ret)
		return -EINVAL;
	r = fileio_read(path, MAX_JSON_BYTES, &buf, &len, e);
	if (r)
		return r;
	r = tokenizer_from_hf_json_mem(buf, len, ret, e);
	free(buf);
	if (!r)
		apply_config(*ret, path);
	return r;
}

/* ---- GPT-2 encoder.json + vocab.bpe ---- */

static int load_gpt2_merges(struct tokenizer *t, const char *buf, size_t len, struct errbuf *e)
{
	size_t pos = 0;
	uint32_t rank = 0, line = 0;
	int ret;

	while (pos < len) {
		const char *s = buf + pos, *nl = memchr(s, '\n', len - pos), *sp;
		size_t n = nl ? (size_t)(nl - s) : len - pos;

		pos += n + (nl ? 1 : 0);
		line++;
		if (n && s[n - 1] == '\r')
			n--;
		if (!n || (n >= 8 && !memcmp(s, "#version", 8)))
			continue;
		sp = memchr(s, ' ', n);
		if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
			return errbuf_set(e, -EBADMSG, "vocab.bpe line %u is not 'a b'", line);
		ret = tok_add_merge(t, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp + 1 - s),
				    rank++, e);
		if (ret)
			return ret;
	}
	return 0;
}

int tokenizer_from_gpt2_files(const char *encoder_json, const char *vocab_bpe,
			      struct tokenizer **ret, struct errbuf *e)
{
	struct tokenizer *t = NULL;
	char *buf = NULL, *mbuf = NULL;
	size_t len, mlen;
	cJSON *root = NULL;
	int32_t eot;
	int r;

	if (!encoder_json || !vocab_bpe || !ret)
		return -EINVAL;
	r = fileio_read(encoder_json, MAX_JSON_BYTES, &buf, &len, e);
	if (r)
		return r;
	r = fileio_read(vocab_bpe, MAX_JSON_BYTES, &mbuf, &mlen, e);
	if (r)
		goto out;
	root = cJSON_ParseWithLength(buf, len);
	if (!root) {
		r = errbuf_set(e, -EBADMSG, "encoder.json is not valid JSON");
		goto out;
	}
	t = tok_alloc(TOK_BYTE_BPE);
	if (!t) {
		r = -ENOMEM;
		goto out;
	}
	t->byte_level = true;
	r = load_vocab(t, root, NULL, e);
	if (!r)
		r = load_gpt2_merges(t, mbuf, mlen, e);
	if (!r)
		r = tok_add_pretok(t, tok_re_gpt2, strlen(tok_re_gpt2), false, TOK_SPLIT_ISOLATED,
				   false, e);
	if (r)
		goto out;
	/* As GPT2TokenizerFast: <|endoftext|> is special and serves as BOS and EOS. */
	eot = tok_lookup(t, "<|endoftext|>", 13);
	if (eot >= 0) {
		tok_mark_added(t, eot, true);
		t->bos = t->eos = eot;
	}
	r = tok_finish(t, e);
	if (r)
		goto out;
	*ret = t;
	t = NULL;
out:
	tokenizer_free(t);
	cJSON_Delete(root);
	free(mbuf);
	free(buf);
	return r;
}
