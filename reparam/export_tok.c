// SPDX-License-Identifier: MIT
/*
 * An HF tokenizer.json as GGUF tokenizer.ggml.* metadata, in the form engine/tok_gguf.c reads
 * back (llama.cpp's conventions):
 *
 *   byte-level BPE   model "gpt2", tokens, token_type, merges "a b" in rank order, and the
 *                    pre-tokenizer by name: ByteLevel alone "gpt2", Digits(individual) +
 *                    ByteLevel "smollm", Split(LLaMA-3 regex) + ByteLevel(no regex) with
 *                    ignore_merges "llama-bpe", Split(Qwen2 regex) + ByteLevel "qwen2"
 *   SentencePiece    model "llama", tokens, token_type (<0xNN> as byte tokens), scores, and
 *   BPE              add_space_prefix. The GGUF reader merges by piece score where the JSON
 *                    merges by rank, so a piece's score is minus the rank of the first merge
 *                    that makes it, and a piece no merge makes is marked unused (rank order
 *                    can never produce it, score order otherwise could)
 *
 * plus BOS/EOS/UNK ids, add_bos_token and the chat template of tokenizer_config.json. What
 * the GGUF form cannot say (normalizers on byte-level models, lstrip/rstrip on added tokens,
 * other regexes) is refused. Then the result is proven on the spot: the GGUF tokenizer is
 * built back and must give the model's own ids on a probe text (a fixed sample plus every
 * token's text), with and without special-token parsing.
 */
#include "reparam/internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fileio.h"
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/tokenizer.h"

#define MAX_JSON_BYTES (1ull << 31)
#define MAX_TOKENS     (1u << 24)

/* GGUF token types (llama.cpp's numbering, as engine/tok_gguf.c reads them). */
enum {
	TT_NORMAL = 1,
	TT_CONTROL = 3,
	TT_USER = 4,
	TT_UNUSED = 5,
	TT_BYTE = 6,
};

/* The LLaMA-3 and Qwen2 Split regexes exactly as their tokenizer.json files spell them. */
const char export_re_llama3[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
	"?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char export_re_qwen2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
			       "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct tokkeys {
	bool spm;
	const char *pre; /* byte-level: the pre-tokenizer's GGUF name */
	bool ignore_merges;
	bool add_space_prefix; /* spm */
	uint32_t n;
	const char **text; /* [n], borrowed from the JSON tree or pads[] */
	int32_t *type;	   /* [n] */
	float *score;	   /* [n] */
	char **pads;	   /* [n] placeholders for ids the JSON leaves out (owned) */
	char **merges;	   /* [n_merges] "a b" (owned) */
	uint32_t n_merges;
	int32_t unk;
};

static void tokkeys_done(struct tokkeys *k)
{
	for (uint32_t i = 0; k->pads && i < k->n; i++)
		free(k->pads[i]);
	for (uint32_t i = 0; k->merges && i < k->n_merges; i++)
		free(k->merges[i]);
	free(k->pads);
	free(k->merges);
	free(k->text);
	free(k->type);
	free(k->score);
}

static const char *jstr(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jtype(const cJSON *o, const char *t)
{
	const char *s = jstr(o, "type");

	return s && !strcmp(s, t);
}

/* Boolean member: @dflt when absent or null, -1 when of another type. */
static int jbool(const cJSON *o, const char *key, bool dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!v || cJSON_IsNull(v))
		return dflt;
	return cJSON_IsBool(v) ? cJSON_IsTrue(v) : -1;
}

/* The pre-tokenizer as a flat list of steps (Sequence unrolled), at most @cap. */
static int flatten(const cJSON *p, const cJSON **steps, uint32_t cap, uint32_t *n)
{
	const cJSON *it;

	if (!p || cJSON_IsNull(p))
		return 0;
	if (!jtype(p, "Sequence")) {
		if (*n == cap)
			return -EOPNOTSUPP;
		steps[(*n)++] = p;
		return 0;
	}
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"))
	{
		int r = flatten(it, steps, cap, n);

		if (r)
			return r;
	}
	return 0;
}

static bool split_is(const cJSON *s, const char *re)
{
	const char *pat = jstr(cJSON_GetObjectItemCaseSensitive(s, "pattern"), "Regex");
	const char *beh = jstr(s, "behavior");

	return jtype(s, "Split") && pat && !strcmp(pat, re) && beh && !strcmp(beh, "Isolated") &&
	       jbool(s, "invert", false) == 0;
}

static bool byte_level_is(const cJSON *s, bool use_regex)
{
	return jtype(s, "ByteLevel") && jbool(s, "add_prefix_space", false) == 0 &&
	       jbool(s, "use_regex", true) == use_regex;
}

/* Byte-level: which GGUF pre-tokenizer name stands for the JSON's. */
static int classify_byte_level(const cJSON *root, struct tokkeys *k, struct errbuf *e)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "normalizer"), *st[4];
	uint32_t ns = 0;

	if (n && !cJSON_IsNull(n))
		return errbuf_set(e, -EOPNOTSUPP,
				  "tokenizer: a normalizer on a byte-level model has no GGUF form");
	if (flatten(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), st, 4, &ns))
		ns = 0;
	if (ns == 1 && byte_level_is(st[0], true))
		k->pre = "gpt2";
	else if (ns == 2 && jtype(st[0], "Digits") &&
		 jbool(st[0], "individual_digits", false) == 1 && byte_level_is(st[1], true))
		k->pre = "smollm";
	else if (ns == 2 && split_is(st[0], export_re_llama3) && byte_level_is(st[1], false) &&
		 k->ignore_merges)
		k->pre = "llama-bpe";
	else if (ns == 2 && split_is(st[0], export_re_qwen2) && byte_level_is(st[1], false) &&
		 !k->ignore_merges)
		k->pre = "qwen2";
	else
		return errbuf_set(e, -EOPNOTSUPP,
				  "tokenizer: this byte-level pre-tokenizer has no GGUF name "
				  "(known: GPT-2, SmolLM, LLaMA-3, Qwen2)");
	if (k->ignore_merges && strcmp(k->pre, "llama-bpe"))
		return errbuf_set(e, -EOPNOTSUPP, "tokenizer: ignore_merges has no GGUF form here");
	return 0;
}

/* SentencePiece layout: does the text get a "▁" in front? Anything else is left to the probe. */
static int classify_spm(const cJSON *root, struct tokkeys *k, struct errbuf *e)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "normalizer"), *st[4], *it;
	uint32_t ns = 0;

	if (flatten(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), st, 4, &ns) ||
	    ns > 1 || (ns == 1 && !jtype(st[0], "Metaspace")))
		return errbuf_set(e, -EOPNOTSUPP,
				  "tokenizer: only a Metaspace pre-tokenizer has a GGUF form for a "
				  "SentencePiece-style model");
	if (ns == 1) {
		const char *scheme = jstr(st[0], "prepend_scheme");

		k->add_space_prefix = scheme ? strcmp(scheme, "never") != 0
					     : jbool(st[0], "add_prefix_space", true) == 1;
	}
	if (jtype(n, "Prepend")) {
		k->add_space_prefix = true;
	} else if (jtype(n, "Sequence")) {
		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(n, "normalizers"))
			k->add_space_prefix |= jtype(it, "Prepend");
	}
	if (jbool(cJSON_GetObjectItemCaseSensitive(root, "model"), "byte_fallback", false) != 1)
		return errbuf_set(e, -EOPNOTSUPP,
				  "tokenizer: GGUF SentencePiece models always fall back to bytes; "
				  "this one does not");
	return 0;
}

/* Open-addressing map from a token's text to its id (for merge results). */
struct idmap {
	int32_t *slot;
	uint32_t mask;
};

static uint32_t hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

static int idmap_build(struct idmap *m, const struct tokkeys *k)
{
	uint32_t cap = 1;

	while (cap < 2 * k->n)
		cap <<= 1;
	m->slot = malloc(cap * sizeof(*m->slot));
	if (!m->slot)
		return -ENOMEM;
	memset(m->slot, 0xff, cap * sizeof(*m->slot));
	m->mask = cap - 1;
	for (uint32_t i = 0; i < k->n; i++) {
		uint32_t h = hash(k->text[i], strlen(k->text[i])) & m->mask;

		while (m->slot[h] >= 0)
			h = (h + 1) & m->mask;
		m->slot[h] = (int32_t)i;
	}
	return 0;
}

static int32_t idmap_find(const struct idmap *m, const struct tokkeys *k, const char *s, size_t n)
{
	for (uint32_t h = hash(s, n) & m->mask; m->slot[h] >= 0; h = (h + 1) & m->mask) {
		const char *t = k->text[m->slot[h]];

		if (strlen(t) == n && !memcmp(t, s, n))
			return m->slot[h];
	}
	return -1;
}

static bool is_id(const cJSON *v)
{
	return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < MAX_TOKENS &&
	       v->valuedouble == (double)(int32_t)v->valuedouble;
}

/* Token texts and types from model.vocab and added_tokens. */
static int load_tokens(const cJSON *root, struct tokkeys *k, struct errbuf *e)
{
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
	const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
	const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), *it;
	const char *unk;
	uint32_t n = 0;

	if (!cJSON_IsObject(vocab))
		return errbuf_set(e, -EBADMSG, "tokenizer: model.vocab is not an object");
	cJSON_ArrayForEach(it, vocab)
	{
		if (!is_id(it))
			return errbuf_set(e, -EBADMSG, "tokenizer: a vocab entry has a bad id");
		n = (uint32_t)it->valuedouble + 1 > n ? (uint32_t)it->valuedouble + 1 : n;
	}
	cJSON_ArrayForEach(it, added)
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");

		if (!is_id(id) || !jstr(it, "content"))
			return errbuf_set(e, -EBADMSG, "tokenizer: an added token has no id");
		n = (uint32_t)id->valuedouble + 1 > n ? (uint32_t)id->valuedouble + 1 : n;
	}
	k->n = n;
	k->text = calloc(n ? n : 1, sizeof(*k->text));
	k->type = malloc((n ? n : 1) * sizeof(*k->type));
	k->score = calloc(n ? n : 1, sizeof(*k->score));
	k->pads = calloc(n ? n : 1, sizeof(*k->pads));
	if (!k->text || !k->type || !k->score || !k->pads)
		return -ENOMEM;
	cJSON_ArrayForEach(it, vocab)
	{
		k->text[(uint32_t)it->valuedouble] = it->string;
		k->type[(uint32_t)it->valuedouble] = TT_NORMAL;
	}
	cJSON_ArrayForEach(it, added)
	{
		uint32_t id = (uint32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;

		if (jbool(it, "lstrip", false) || jbool(it, "rstrip", false) ||
		    jbool(it, "single_word", false))
			return errbuf_set(e, -EOPNOTSUPP,
					  "tokenizer: added token '%.40s' strips or matches whole "
					  "words, which GGUF cannot record",
					  jstr(it, "content"));
		k->text[id] = jstr(it, "content");
		k->type[id] = jbool(it, "special", false) == 1 ? TT_CONTROL : TT_USER;
	}
	for (uint32_t i = 0; i < n; i++) {
		char buf[32];

		if (k->text[i])
			continue;
		snprintf(buf, sizeof(buf), "[PAD%u]", i);
		k->pads[i] = strdup(buf);
		if (!k->pads[i])
			return -ENOMEM;
		k->text[i] = k->pads[i];
		k->type[i] = TT_UNUSED;
	}
	k->unk = -1;
	unk = jstr(model, "unk_token");
	for (uint32_t i = 0; unk && i < n && k->unk < 0; i++)
		if (!strcmp(k->text[i], unk))
			k->unk = (int32_t)i;
	return 0;
}

/* The two halves of merge @it. */
static int merge_pair(const cJSON *it, const char **a, const char **b, size_t *alen)
{
	if (cJSON_IsString(it)) {
		const char *sp = strchr(it->valuestring, ' ');

		if (!sp || strchr(sp + 1, ' '))
			return -EBADMSG;
		*a = it->valuestring;
		*alen = (size_t)(sp - *a);
		*b = sp + 1;
		return 0;
	}
	if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 ||
	    !cJSON_IsString(cJSON_GetArrayItem(it, 0)) ||
	    !cJSON_IsString(cJSON_GetArrayItem(it, 1)))
		return -EBADMSG;
	*a = cJSON_GetArrayItem(it, 0)->valuestring;
	*b = cJSON_GetArrayItem(it, 1)->valuestring;
	*alen = strlen(*a);
	/* GGUF spells a merge "a b": a space inside a half would be ambiguous */
	if (strchr(*a, ' ') || strchr(*b, ' '))
		return -EOPNOTSUPP;
	return 0;
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((uint8_t)*s & 0xc0) != 0x80;
	return n;
}

/* Merges: byte-level keeps them ("a b"); SPM turns them into piece scores. */
static int load_merges(const cJSON *root, struct tokkeys *k, struct errbuf *e)
{
	const cJSON *merges = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(root, "model"), "merges");
	const cJSON *it;
	struct idmap map = { 0 };
	uint32_t rank = 0, n = (uint32_t)cJSON_GetArraySize(merges);
	bool *made = NULL;
	int r = 0;

	if (merges && !cJSON_IsArray(merges))
		return errbuf_set(e, -EBADMSG, "tokenizer: model.merges is not an array");
	if (!k->spm) {
		k->merges = calloc(n ? n : 1, sizeof(*k->merges));
		if (!k->merges)
			return -ENOMEM;
	} else {
		made = calloc(k->n ? k->n : 1, sizeof(*made));
		r = made ? idmap_build(&map, k) : -ENOMEM;
		if (r)
			goto out;
	}
	cJSON_ArrayForEach(it, merges)
	{
		const char *a, *b;
		size_t alen, blen;
		char *ab;

		r = merge_pair(it, &a, &b, &alen);
		if (r) {
			r = errbuf_set(e, r, "tokenizer: merge %u cannot be written as 'a b'",
				       rank);
			goto out;
		}
		blen = strlen(b);
		ab = malloc(alen + blen + 2);
		if (!ab) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(ab, a, alen);
		if (!k->spm) {
			ab[alen] = ' ';
			memcpy(ab + alen + 1, b, blen + 1);
			k->merges[k->n_merges++] = ab;
		} else {
			int32_t id;

			memcpy(ab + alen, b, blen + 1);
			id = idmap_find(&map, k, ab, alen + blen);
			free(ab);
			if (id >= 0 && !made[id]) {
				made[id] = true;
				k->score[id] = -(float)rank;
			}
		}
		rank++;
	}
	for (uint32_t i = 0; k->spm && i < k->n; i++) {
		const char *t = k->text[i];
		unsigned v;
		char end;

		if (k->type[i] != TT_NORMAL || made[i])
			continue;
		if (strlen(t) == 6 && sscanf(t, "<0x%2X%c", &v, &end) == 2 && end == '>')
			k->type[i] = TT_BYTE;
		else if (utf8_chars(t) > 1)
			k->type[i] = TT_UNUSED; /* no merge makes it: rank order never emits it */
	}
out:
	free(map.slot);
	free(made);
	return r;
}

static int add_keys(struct gguf_writer *w, const struct tokkeys *k, const struct tokenizer *ref,
		    const char *chat_template)
{
	int32_t bos = tokenizer_bos(ref), eos = tokenizer_eos(ref);
	const char *model = k->spm ? "llama" : "gpt2";
	int r = 0;

#define TRY(x)                   \
	do {                     \
		if (r == 0)      \
			r = (x); \
	} while (0)
	TRY(gguf_writer_add_str(w, "tokenizer.ggml.model", model, strlen(model)));
	if (!k->spm)
		TRY(gguf_writer_add_str(w, "tokenizer.ggml.pre", k->pre, strlen(k->pre)));
	TRY(gguf_writer_add_str_arr(w, "tokenizer.ggml.tokens", k->text, NULL, k->n));
	TRY(gguf_writer_add_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, k->type, k->n));
	if (k->spm) {
		TRY(gguf_writer_add_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, k->score,
					k->n));
		TRY(gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix",
					 k->add_space_prefix));
	} else {
		TRY(gguf_writer_add_str_arr(w, "tokenizer.ggml.merges",
					    (const char *const *)k->merges, NULL, k->n_merges));
	}
	if (bos >= 0)
		TRY(gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos));
	if (eos >= 0)
		TRY(gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos));
	if (k->unk >= 0)
		TRY(gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)k->unk));
	TRY(gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", tokenizer_add_bos(ref)));
	if (chat_template)
		TRY(gguf_writer_add_str(w, "tokenizer.chat_template", chat_template,
					strlen(chat_template)));
#undef TRY
	return r;
}

/* tokenizer_config.json's chat template (a plain string), malloc'ed, or NULL. */
static char *read_chat_template(const char *dir)
{
	char path[4096], *buf, *tmpl = NULL;
	size_t len;
	cJSON *cfg;

	snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
	if (fileio_read(path, MAX_JSON_BYTES, &buf, &len, NULL))
		return NULL;
	cfg = cJSON_ParseWithLength(buf, len);
	free(buf);
	if (jstr(cfg, "chat_template"))
		tmpl = strdup(jstr(cfg, "chat_template"));
	cJSON_Delete(cfg);
	return tmpl;
}

static bool utf8_valid(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = (uint8_t)s[i];
		size_t len = c < 0x80	      ? 1
			     : (c >> 5) == 6  ? 2
			     : (c >> 4) == 14 ? 3
			     : (c >> 3) == 30 ? 4
					      : 0;
		uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;

		if (!len || i + len > n)
			return false;
		for (size_t j = 1; j < len; j++) {
			if (((uint8_t)s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | ((uint8_t)s[i + j] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static const char probe_fixed[] =
	"Hello world! It's 2024: the café's 12345 items cost $3.99 (or 1,000.5).\n\n"
	"  Two  spaces,\tTABS\tand\r\nCRLF. I'M HERE, you'LL see; they'VE gone.\n"
	"def f(x):\n    return x**2  # comment\n\n"
	"Ünïcödé: naïve façade — “quotes” … 東京 日本語 한국어 Ελληνικά русский 🙂👍🏽\n"
	"<s> </s> <unk> <|endoftext|> <|im_start|>user\nhi<|im_end|> [INST] x [/INST]\n"
	"    leading spaces and trailing   \n\n\n"
	"9876543210 007 3.14159 1e-5 0x1F ###### ----- ....\n";

/*
 * The probe: the fixed sample, then the text of every token (valid UTF-8 ones), 16 to a line,
 * separated by spaces. malloc'ed into *ret, length *ret_len.
 */
static int build_probe(const struct tokenizer *ref, char **ret, size_t *ret_len)
{
	uint32_t n = tokenizer_n_vocab(ref);
	size_t cap = sizeof(probe_fixed) + 64 * (size_t)n + 16, len = sizeof(probe_fixed) - 1;
	char *p = malloc(cap), piece[64];

	if (!p)
		return -ENOMEM;
	memcpy(p, probe_fixed, len);
	for (uint32_t i = 0; i < n; i++) {
		int pl = tokenizer_piece(ref, (int32_t)i, piece, sizeof(piece));

		if (pl <= 0 || pl >= (int)sizeof(piece) || !utf8_valid(piece, (size_t)pl))
			continue;
		memcpy(p + len, piece, (size_t)pl);
		len += (size_t)pl;
		p[len++] = i % 16 == 15 ? '\n' : ' ';
	}
	p[len] = 0;
	*ret = p;
	*ret_len = len;
	return 0;
}

/* @got encodes the probe as @ref does, both with and without special-token parsing. */
static int prove(const struct tokenizer *ref, const struct tokenizer *got, struct errbuf *e)
{
	char *text = NULL;
	size_t len = 0;
	int r;

	if (tokenizer_n_vocab(got) != tokenizer_n_vocab(ref) ||
	    tokenizer_bos(got) != tokenizer_bos(ref) || tokenizer_eos(got) != tokenizer_eos(ref) ||
	    tokenizer_add_bos(got) != tokenizer_add_bos(ref))
		return errbuf_set(e, -EOPNOTSUPP,
				  "tokenizer: the GGUF form loses the vocabulary size or BOS/EOS");
	r = build_probe(ref, &text, &len);
	for (int special = 0; r == 0 && special < 2; special++) {
		int32_t *a = NULL, *b = NULL;
		size_t na = 0, nb = 0, at = 0;

		r = tokenizer_encode(ref, text, len, special, &a, &na);
		if (r == 0)
			r = tokenizer_encode(got, text, len, special, &b, &nb);
		while (r == 0 && at < na && at < nb && a[at] == b[at])
			at++;
		if (r == 0 && (at < na || at < nb))
			r = errbuf_set(
				e, -EOPNOTSUPP,
				"tokenizer: its GGUF form encodes differently (token %zu of a "
				"probe text%s); refusing to write a file that tokenizes "
				"unlike its source",
				at, special ? ", special tokens parsed" : "");
		free(a);
		free(b);
	}
	free(text);
	return r;
}

int export_tokenizer_hf(const char *dir, const struct tokenizer *ref, struct gguf_file **ret_g,
			void **ret_buf, struct errbuf *e)
{
	struct tokkeys k = { 0 };
	struct gguf_writer *w = NULL;
	struct gguf_file *g = NULL;
	struct tokenizer *back = NULL;
	char path[4096], *json = NULL, *tmpl = NULL;
	void *img = NULL;
	size_t len, img_len;
	cJSON *root = NULL;
	int r;

	if (!ref)
		return errbuf_set(e, -EOPNOTSUPP, "the HF folder has no tokenizer.json");
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	r = fileio_read(path, MAX_JSON_BYTES, &json, &len, e);
	if (r)
		return r;
	root = cJSON_ParseWithLength(json, len);
	if (!root) {
		r = errbuf_set(e, -EBADMSG, "tokenizer.json is not valid JSON");
		goto out;
	}
	k.spm = tokenizer_kind(ref) == TOK_SPM_BPE;
	k.ignore_merges =
		jbool(cJSON_GetObjectItemCaseSensitive(root, "model"), "ignore_merges", false) == 1;
	r = k.spm ? classify_spm(root, &k, e) : classify_byte_level(root, &k, e);
	if (!r)
		r = load_tokens(root, &k, e);
	if (!r)
		r = load_merges(root, &k, e);
	if (r)
		goto out;
	tmpl = read_chat_template(dir);
	w = gguf_writer_new();
	r = w ? add_keys(w, &k, ref, tmpl) : -ENOMEM;
	if (!r)
		r = gguf_writer_write_mem(w, &img, &img_len);
	if (!r)
		r = gguf_open_mem(img, img_len, &g, e);
	if (!r)
		r = tokenizer_from_gguf(g, &back, e);
	if (r) {
		char why[sizeof(e->msg)];

		snprintf(why, sizeof(why), "%s", errbuf_str(e, r));
		if (r != -ENOMEM)
			r = errbuf_set(e, r, "tokenizer: its GGUF form does not load back: %s",
				       why);
		goto out;
	}
	r = prove(ref, back, e);
	if (r)
		goto out;
	*ret_g = g;
	*ret_buf = img;
	g = NULL;
	img = NULL;
out:
	tokenizer_free(back);
	gguf_close(g);
	free(img);
	gguf_writer_free(w);
	free(tmpl);
	tokkeys_done(&k);
	cJSON_Delete(root);
	free(json);
	return r;
}
