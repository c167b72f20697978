// SPDX-License-Identifier: MIT
/*
 * Tokenizer core: construction helpers for the loaders, the encode pipeline and decoding.
 *
 * encode(text):
 *   1. split the text on added tokens (longest match at the leftmost position, like HF's
 *      Aho-Corasick leftmost-longest); special ones only when parse_special is set;
 *   2. each remaining segment: normalizer steps (Prepend / Replace), Metaspace if configured;
 *   3. pre-tokenizer: each regex step splits every piece of the previous step (HF Split
 *      semantics, including its five delimiter behaviours);
 *   4. each piece goes through the BPE merge loop (engine/tok_bpe.c).
 * The text must be valid UTF-8 (as HF's Rust str is); otherwise -EBADMSG.
 */
#include "engine/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* HF tokenizers' ByteLevel regex (byte_level.rs), the GPT-2 pattern. */
const char tok_re_gpt2[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* LLaMA-3 (tiktoken cl100k-style) Split regex. */
const char tok_re_llama3[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* Qwen2: as LLaMA-3 but single digits. */
const char tok_re_qwen2[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* HF Digits: Rust char::is_numeric, i.e. \p{N}. */
const char tok_re_digits[] = "\\p{N}";

static const char meta_sym[] = "\xe2\x96\x81"; /* U+2581 "▁" */

int tokenizer_encode_text(const struct tokenizer *t, const char *text, size_t len,
			  bool parse_special, int32_t **ret_ids, size_t *ret_n)
{
	int32_t *ids, *p;
	size_t n;
	int r;

	r = tokenizer_encode(t, text, len, parse_special, &ids, &n);
	if (r < 0 || !tokenizer_add_bos(t) || tokenizer_bos(t) < 0) {
		*ret_ids = r < 0 ? NULL : ids;
		*ret_n = r < 0 ? 0 : n;
		return r;
	}
	p = realloc(ids, (n + 1) * sizeof(*ids));
	if (!p) {
		free(ids);
		return -ENOMEM;
	}
	memmove(p + 1, p, n * sizeof(*p));
	p[0] = tokenizer_bos(t);
	*ret_ids = p;
	*ret_n = n + 1;
	return 0;
}

static int check_utf8(const char *text, size_t len);

/* ---- UTF-8 and the GPT-2 byte map ---- */

size_t tok_utf8_next(const unsigned char *s, size_t n, uint32_t *ret_cp)
{
	uint32_t cp;
	size_t len, i;

	if (!n)
		return 0;
	if (s[0] < 0x80) {
		*ret_cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	*ret_cp = cp;
	return len;
}

size_t tok_utf8_put(uint32_t cp, char *out)
{
	unsigned char *o = (unsigned char *)out;

	if (cp < 0x80) {
		o[0] = cp;
		return 1;
	} else if (cp < 0x800) {
		o[0] = 0xc0 | cp >> 6;
		o[1] = 0x80 | (cp & 0x3f);
		return 2;
	} else if (cp < 0x10000) {
		o[0] = 0xe0 | cp >> 12;
		o[1] = 0x80 | ((cp >> 6) & 0x3f);
		o[2] = 0x80 | (cp & 0x3f);
		return 3;
	}
	o[0] = 0xf0 | cp >> 18;
	o[1] = 0x80 | ((cp >> 12) & 0x3f);
	o[2] = 0x80 | ((cp >> 6) & 0x3f);
	o[3] = 0x80 | (cp & 0x3f);
	return 4;
}

/* Printable Latin-1 bytes stand for themselves; the other 68 get U+0100.. in byte order. */
static bool byte_is_printable(unsigned int b)
{
	return (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

uint32_t tok_byte_to_cp(uint8_t b)
{
	unsigned int n = 0, i;

	if (byte_is_printable(b))
		return b;
	for (i = 0; i < b; i++)
		n += !byte_is_printable(i);
	return 256 + n;
}

int tok_cp_to_byte(uint32_t cp)
{
	unsigned int n = 0, b;

	if (cp < 256)
		return byte_is_printable(cp) ? (int)cp : -1;
	if (cp >= 256 + 68)
		return -1;
	for (b = 0; b < 256; b++) {
		if (byte_is_printable(b))
			continue;
		if (256 + n == cp)
			return (int)b;
		n++;
	}
	return -1;
}

/* ---- maps ---- */

static uint64_t hash_bytes(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ull;
	}
	return h ^ (h >> 29);
}

int32_t tok_lookup(const struct tokenizer *t, const char *s, size_t len)
{
	const struct tok_strmap *m = &t->vocab;
	uint32_t i;

	if (!m->slots)
		return -1;
	for (i = hash_bytes(s, len) & m->mask;; i = (i + 1) & m->mask) {
		int32_t id = m->slots[i];

		if (id < 0)
			return -1;
		if (t->tokens[id].len == len && !memcmp(t->tokens[id].text, s, len))
			return id;
	}
}

int tok_index_vocab(struct tokenizer *t, struct errbuf *e)
{
	uint32_t n_slots = 16, id;

	while (n_slots < 2 * (uint64_t)t->n_vocab + 16)
		n_slots *= 2;
	free(t->vocab.slots);
	t->vocab.slots = malloc(n_slots * sizeof(*t->vocab.slots));
	if (!t->vocab.slots)
		return -ENOMEM;
	memset(t->vocab.slots, 0xff, n_slots * sizeof(*t->vocab.slots));
	t->vocab.mask = n_slots - 1;
	for (id = 0; id < t->n_vocab; id++) {
		const struct tok_token *k = &t->tokens[id];
		uint32_t i;

		if (!k->text)
			continue;
		for (i = hash_bytes(k->text, k->len) & t->vocab.mask; t->vocab.slots[i] >= 0;
		     i = (i + 1) & t->vocab.mask) {
			const struct tok_token *o = &t->tokens[t->vocab.slots[i]];

			if (o->len == k->len && !memcmp(o->text, k->text, k->len))
				return errbuf_set(e, -EBADMSG, "token %u duplicates token %d", id,
						  t->vocab.slots[i]);
		}
		t->vocab.slots[i] = (int32_t)id;
	}
	return 0;
}

static int mergemap_grow(struct tok_mergemap *m)
{
	uint32_t n_slots = m->slots ? 2 * (m->mask + 1) : 1024, i;
	struct tok_merge *old = m->slots, *s;
	uint32_t old_n = old ? m->mask + 1 : 0;

	if (n_slots > (1u << 28))
		return -EOVERFLOW;
	s = malloc((size_t)n_slots * sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (i = 0; i < n_slots; i++)
		s[i].key = UINT64_MAX;
	m->slots = s;
	m->mask = n_slots - 1;
	for (i = 0; i < old_n; i++) {
		uint32_t j;

		if (old[i].key == UINT64_MAX)
			continue;
		for (j = (uint32_t)((old[i].key * 0x9e3779b97f4a7c15ull) >> 32) & m->mask;
		     s[j].key != UINT64_MAX; j = (j + 1) & m->mask)
			;
		s[j] = old[i];
	}
	free(old);
	return 0;
}

int tok_add_merge(struct tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
		  uint32_t rank, struct errbuf *e)
{
	struct tok_mergemap *m = &t->merges;
	int32_t ia = tok_lookup(t, a, alen), ib = tok_lookup(t, b, blen), ic;
	uint64_t key;
	char *cat;
	uint32_t i;
	int ret;

	if (ia < 0 || ib < 0)
		return errbuf_set(e, -EBADMSG, "merge %u uses a token not in the vocab", rank);
	if (alen + blen < alen)
		return -EOVERFLOW;
	cat = malloc(alen + blen + 1);
	if (!cat)
		return -ENOMEM;
	memcpy(cat, a, alen);
	memcpy(cat + alen, b, blen);
	ic = tok_lookup(t, cat, alen + blen);
	free(cat);
	if (ic < 0)
		return errbuf_set(e, -EBADMSG, "merge %u makes a token not in the vocab", rank);
	if (!m->slots || 4 * (uint64_t)(m->n + 1) > 3 * (uint64_t)(m->mask + 1)) {
		ret = mergemap_grow(m);
		if (ret)
			return ret;
	}
	key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
	for (i = (uint32_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & m->mask;
	     m->slots[i].key != UINT64_MAX && m->slots[i].key != key; i = (i + 1) & m->mask)
		;
	if (m->slots[i].key == UINT64_MAX)
		m->n++;
	/* HF collects merges into a hash map: a repeated pair keeps its last rank. */
	m->slots[i] = (struct tok_merge){ .key = key, .rank = rank, .id = ic };
	return 0;
}

/* ---- construction ---- */

struct tokenizer *tok_alloc(enum tok_kind kind)
{
	struct tokenizer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->kind = kind;
	t->bos = t->eos = t->unk = -1;
	for (int i = 0; i < 256; i++)
		t->byte_id[i] = -1;
	return t;
}

int tok_set_n_vocab(struct tokenizer *t, uint32_t n, struct errbuf *e)
{
	if (!n || n > (1u << 24))
		return errbuf_set(e, -EBADMSG, "vocab size %u out of range", n);
	t->tokens = calloc(n, sizeof(*t->tokens));
	if (!t->tokens)
		return -ENOMEM;
	t->n_vocab = n;
	return 0;
}

int tok_set_token(struct tokenizer *t, uint32_t id, const char *text, size_t len, float score,
		  enum tok_type type, struct errbuf *e)
{
	struct tok_token *k;

	if (id >= t->n_vocab)
		return errbuf_set(e, -EBADMSG, "token id %u out of range", id);
	if (len > (1u << 20))
		return errbuf_set(e, -EBADMSG, "token %u too long", id);
	k = &t->tokens[id];
	if (k->text)
		return errbuf_set(e, -EBADMSG, "token id %u assigned twice", id);
	k->text = malloc(len + 1);
	if (!k->text)
		return -ENOMEM;
	memcpy(k->text, text, len);
	k->text[len] = 0;
	k->len = (uint32_t)len;
	k->score = score;
	k->type = type;
	return 0;
}

int tok_add_pretok(struct tokenizer *t, const char *pat, size_t len, bool literal,
		   enum tok_split behavior, bool invert, struct errbuf *e)
{
	struct tok_pretok *p;
	int err;
	PCRE2_SIZE off;

	if (t->n_pretok >= TOK_MAX_PRETOK)
		return errbuf_set(e, -EOPNOTSUPP, "more than %d pre-tokenizer steps",
				  TOK_MAX_PRETOK);
	p = &t->pretok[t->n_pretok];
	p->re = pcre2_compile(
		(PCRE2_SPTR)pat, len,
		PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP), /* LITERAL refuses UCP */
		&err, &off, NULL);
	if (!p->re) {
		PCRE2_UCHAR msg[120];

		pcre2_get_error_message(err, msg, sizeof(msg));
		return errbuf_set(e, -EBADMSG, "pre-tokenizer regex at %zu: %s", (size_t)off,
				  (const char *)msg);
	}
	/* JIT is only a speed-up: without it pcre2_match interprets the same pattern. */
	(void)pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE);
	p->behavior = behavior;
	p->invert = invert;
	t->n_pretok++;
	return 0;
}

int tok_add_norm(struct tokenizer *t, const char *from, size_t from_len, const char *to,
		 size_t to_len, struct errbuf *e)
{
	struct tok_norm *n;

	if (t->n_norm >= TOK_MAX_NORM)
		return errbuf_set(e, -EOPNOTSUPP, "more than %d normalizer steps", TOK_MAX_NORM);
	if (from && !from_len)
		return errbuf_set(e, -EBADMSG, "normalizer replaces an empty string");
	/* the normalized text goes to PCRE2 unchecked, so both strings must be UTF-8 */
	if ((from && check_utf8(from, from_len)) || check_utf8(to, to_len))
		return errbuf_set(e, -EBADMSG, "normalizer string is not UTF-8");
	n = &t->norm[t->n_norm];
	n->to = malloc(to_len + 1);
	if (!n->to)
		return -ENOMEM;
	memcpy(n->to, to, to_len);
	n->to_len = to_len;
	if (from) {
		n->from = malloc(from_len + 1);
		if (!n->from)
			return -ENOMEM; /* n->to freed by tokenizer_free (n_norm not bumped) */
		memcpy(n->from, from, from_len);
		n->from_len = from_len;
	}
	t->n_norm++;
	return 0;
}

void tok_mark_added(struct tokenizer *t, int32_t id, bool special)
{
	if (id < 0 || (uint32_t)id >= t->n_vocab)
		return;
	t->tokens[id].added = true;
	if (t->tokens[id].type == TOK_T_NORMAL || t->tokens[id].type == TOK_T_UNDEF)
		t->tokens[id].type = special ? TOK_T_CONTROL : TOK_T_USER;
}

/* What a token contributes to decoded text. */
static int make_piece(struct tokenizer *t, struct tok_token *k)
{
	size_t i = 0, o = 0;

	k->piece = malloc(k->len + 1);
	if (!k->piece)
		return -ENOMEM;
	if (k->type == TOK_T_BYTE || (!t->byte_level && t->byte_fallback && k->len == 6 &&
				      !memcmp(k->text, "<0x", 3) && k->text[5] == '>')) {
		unsigned int v;

		if (k->len == 6 && sscanf(k->text, "<0x%2X>", &v) == 1) {
			k->piece[0] = (char)v;
			k->piece_len = 1;
			return 0;
		}
	}
	if (k->added || k->type == TOK_T_CONTROL || k->type == TOK_T_USER ||
	    k->type == TOK_T_UNKNOWN) {
		memcpy(k->piece, k->text, k->len);
		k->piece_len = k->len;
		return 0;
	}
	while (i < k->len) {
		uint32_t cp;
		size_t cl = tok_utf8_next((const unsigned char *)k->text + i, k->len - i, &cp);
		int b;

		if (!cl) { /* not UTF-8: keep the raw byte */
			k->piece[o++] = k->text[i++];
			continue;
		}
		if (t->byte_level && (b = tok_cp_to_byte(cp)) >= 0) {
			k->piece[o++] = (char)b;
		} else if (!t->byte_level && cl == 3 && !memcmp(k->text + i, meta_sym, 3)) {
			k->piece[o++] = ' ';
		} else {
			memcpy(k->piece + o, k->text + i, cl);
			o += cl;
		}
		i += cl;
	}
	k->piece_len = o;
	return 0;
}

static int cmp_added(const void *pa, const void *pb, void *arg)
{
	const struct tokenizer *t = arg;
	int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
	uint8_t fa = (uint8_t)t->tokens[a].text[0], fb = (uint8_t)t->tokens[b].text[0];

	if (fa != fb)
		return fa < fb ? -1 : 1;
	if (t->tokens[a].len != t->tokens[b].len)
		return t->tokens[a].len > t->tokens[b].len ? -1 : 1;
	return a < b ? -1 : a > b;
}

int tok_finish(struct tokenizer *t, struct errbuf *e)
{
	uint32_t id, n_added = 0;
	int ret;

	if (t->bos >= (int64_t)t->n_vocab || t->eos >= (int64_t)t->n_vocab ||
	    t->unk >= (int64_t)t->n_vocab)
		return errbuf_set(e, -EBADMSG, "bos/eos/unk id out of range (vocab %u)",
				  t->n_vocab);
	for (int b = 0; b < 256; b++) {
		char s[8];
		size_t n;

		if (t->byte_level) {
			n = tok_utf8_put(tok_byte_to_cp((uint8_t)b), s);
		} else {
			snprintf(s, sizeof(s), "<0x%02X>", b);
			n = 6;
		}
		t->byte_id[b] = tok_lookup(t, s, n);
	}
	for (id = 0; id < t->n_vocab; id++) {
		struct tok_token *k = &t->tokens[id];

		if (!k->text)
			continue;
		ret = make_piece(t, k);
		if (ret)
			return ret;
		/* GGUF control/user types are added tokens; an empty one can never match. */
		if (k->type == TOK_T_CONTROL || k->type == TOK_T_USER || k->type == TOK_T_UNKNOWN)
			k->added = true;
		if (k->added && k->len)
			n_added++;
	}
	t->added = malloc((n_added + 1) * sizeof(*t->added));
	if (!t->added)
		return -ENOMEM;
	for (id = 0; id < t->n_vocab; id++) {
		struct tok_token *k = &t->tokens[id];

		if (k->text && k->added && k->len)
			t->added[t->n_added++] = (int32_t)id;
	}
	qsort_r(t->added, t->n_added, sizeof(*t->added), cmp_added, t);
	for (uint32_t i = 0, b = 0; b <= 256; b++) {
		while (i < t->n_added && (uint8_t)t->tokens[t->added[i]].text[0] < b)
			i++;
		t->added_start[b] = i;
	}
	return 0;
}

void tokenizer_free(struct tokenizer *t)
{
	uint32_t i;

	if (!t)
		return;
	if (t->tokens) {
		for (i = 0; i < t->n_vocab; i++) {
			free(t->tokens[i].text);
			free(t->tokens[i].piece);
		}
	}
	free(t->tokens);
	free(t->vocab.slots);
	free(t->merges.slots);
	for (i = 0; i < t->n_pretok; i++)
		pcre2_code_free(t->pretok[i].re);
	for (i = 0; i < TOK_MAX_NORM; i++) {
		free(t->norm[i].from);
		free(t->norm[i].to);
	}
	free(t->added);
	free(t);
}

/* ---- encode ---- */

int tok_ids_push(struct tok_ids *ids, int32_t id)
{
	if (ids->n == ids->cap) {
		size_t cap = ids->cap ? 2 * ids->cap : 256;
		int32_t *v = realloc(ids->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		ids->v = v;
		ids->cap = cap;
	}
	ids->v[ids->n++] = id;
	return 0;
}

struct span {
	size_t off, len;
};

struct spans {
	struct span *v;
	size_t n, cap;
};

static int spans_push(struct spans *s, size_t off, size_t len)
{
	if (!len)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		struct span *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = (struct span){ off, len };
	return 0;
}

struct enc_ctx {
	const struct tokenizer *t;
	pcre2_match_data *md;
	struct spans a, b;  /* pieces of the current and next pre-tokenizer step */
	struct spans parts; /* one piece split into (match, gap) parts */
	bool *part_match;
	size_t part_match_cap;
	char *norm; /* normalized segment */
	size_t norm_cap;
	char *norm2;
	size_t norm2_cap;
	struct tok_bpe_scratch bpe;
	struct tok_ids ids;
};

static int reserve(char **p, size_t *cap, size_t need)
{
	char *q;

	if (need <= *cap)
		return 0;
	q = realloc(*p, need);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = need;
	return 0;
}

static int part_add(struct enc_ctx *c, size_t off, size_t len, bool is_match)
{
	int ret;

	if (!len)
		return 0;
	if (c->parts.n == c->part_match_cap) {
		size_t cap = c->part_match_cap ? 2 * c->part_match_cap : 64;
		bool *v = realloc(c->part_match, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		c->part_match = v;
		c->part_match_cap = cap;
	}
	c->part_match[c->parts.n] = is_match;
	ret = spans_push(&c->parts, off, len);
	return ret;
}

/* Regex matches inside one piece, as (part, is_match) covering the piece. */
static int find_parts(struct enc_ctx *c, const struct tok_pretok *p, const char *buf,
		      struct span piece)
{
	PCRE2_SIZE start = 0, prev = 0;
	int ret, rc;

	c->parts.n = 0;
	while (start <= piece.len) {
		PCRE2_SIZE *ov;

		rc = pcre2_match(p->re, (PCRE2_SPTR)(buf + piece.off), piece.len, start,
				 PCRE2_NO_UTF_CHECK, c->md, NULL);
		if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
			rc = pcre2_match(p->re, (PCRE2_SPTR)(buf + piece.off), piece.len, start,
					 PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, c->md, NULL);
		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0)
			return -ENOMEM; /* match limits: resource exhaustion, not bad input */
		ov = pcre2_get_ovector_pointer(c->md);
		if (ov[1] == ov[0]) { /* empty match: skip one character */
			start = ov[0] + 1;
			while (start < piece.len &&
			       ((unsigned char)buf[piece.off + start] & 0xc0) == 0x80)
				start++;
			continue;
		}
		ret = part_add(c, piece.off + prev, ov[0] - prev, p->invert);
		if (!ret)
			ret = part_add(c, piece.off + ov[0], ov[1] - ov[0], !p->invert);
		if (ret)
			return ret;
		prev = start = ov[1];
	}
	return part_add(c, piece.off + prev, piece.len - prev, p->invert);
}

/* HF NormalizedString::split with the step's delimiter behaviour; appends to @out. */
static int split_piece(struct enc_ctx *c, const struct tok_pretok *p, const char *buf,
		       struct span piece, struct spans *out)
{
	size_t i, first = out->n;
	bool prev_match = false;
	int ret;

	ret = find_parts(c, p, buf, piece);
	if (ret)
		return ret;
	if (p->behavior == TOK_SPLIT_MERGED_NEXT) {
		/* walk backwards: a match joins the part after it unless that one is a match */
		size_t n = c->parts.n;
		struct span pending = { 0, 0 };
		bool have = false;

		for (i = n; i-- > 0;) {
			struct span s = c->parts.v[i];
			bool m = c->part_match[i];

			if (m && !prev_match && have) {
				pending.len += pending.off - s.off;
				pending.off = s.off;
			} else {
				if (have) {
					ret = spans_push(out, pending.off, pending.len);
					if (ret)
						return ret;
				}
				pending = s;
				have = true;
			}
			prev_match = m;
		}
		if (have) {
			ret = spans_push(out, pending.off, pending.len);
			if (ret)
				return ret;
		}
		/* reverse what was appended */
		for (i = 0; i < (out->n - first) / 2; i++) {
			struct span tmp = out->v[first + i];

			out->v[first + i] = out->v[out->n - 1 - i];
			out->v[out->n - 1 - i] = tmp;
		}
		return 0;
	}
	for (i = 0; i < c->parts.n; i++) {
		struct span s = c->parts.v[i];
		bool m = c->part_match[i];

		switch (p->behavior) {
		case TOK_SPLIT_REMOVED:
			if (!m)
				ret = spans_push(out, s.off, s.len);
			break;
		case TOK_SPLIT_MERGED_PREV:
			if (m && !prev_match && out->n > first)
				out->v[out->n - 1].len = s.off + s.len - out->v[out->n - 1].off;
			else
				ret = spans_push(out, s.off, s.len);
			break;
		case TOK_SPLIT_CONTIGUOUS:
			if (m == prev_match && out->n > first)
				out->v[out->n - 1].len = s.off + s.len - out->v[out->n - 1].off;
			else
				ret = spans_push(out, s.off, s.len);
			break;
		default: /* ISOLATED */
			ret = spans_push(out, s.off, s.len);
			break;
		}
		if (ret)
			return ret;
		prev_match = m;
	}
	return 0;
}

/* Normalizer steps, then Metaspace; returns the buffer that the pre-tokenizer sees. */
static int normalize(struct enc_ctx *c, const char *seg, size_t len, bool at_start,
		     const char **ret_buf, size_t *ret_len)
{
	const struct tokenizer *t = c->t;
	const char *cur = seg;
	size_t cur_len = len;
	unsigned int k;
	int ret;

	for (k = 0; k < t->n_norm + (t->metaspace ? 2 : 0); k++) {
		const char *from, *to;
		size_t from_len, to_len, i, o = 0, n_hits = 0, need;
		char *dst;

		if (k < t->n_norm) {
			if (!t->norm[k].from && t->prepend_first_only && !at_start)
				continue;
			from = t->norm[k].from;
			from_len = t->norm[k].from_len;
			to = t->norm[k].to;
			to_len = t->norm[k].to_len;
		} else if (k == t->n_norm) { /* Metaspace: spaces -> "▁" */
			from = " ";
			from_len = 1;
			to = meta_sym;
			to_len = 3;
		} else { /* Metaspace prefix, unless it already starts with "▁" */
			if (t->meta_prepend == TOK_PREPEND_NEVER ||
			    (t->meta_prepend == TOK_PREPEND_FIRST && !at_start) ||
			    (cur_len >= 3 && !memcmp(cur, meta_sym, 3)))
				continue;
			from = NULL;
			from_len = 0;
			to = meta_sym;
			to_len = 3;
		}
		if (!cur_len)
			continue; /* HF: Prepend leaves an empty string empty */
		if (from) {
			for (i = 0; i + from_len <= cur_len; i++) {
				if (!memcmp(cur + i, from, from_len)) {
					n_hits++;
					i += from_len - 1;
				}
			}
			if (!n_hits)
				continue;
		}
		need = cur_len + (from ? n_hits * to_len : to_len) + 1;
		if (need < cur_len)
			return -EOVERFLOW;
		/* ping-pong between the two scratch buffers */
		if (cur == c->norm) {
			ret = reserve(&c->norm2, &c->norm2_cap, need);
			dst = c->norm2;
		} else {
			ret = reserve(&c->norm, &c->norm_cap, need);
			dst = c->norm;
		}
		if (ret)
			return ret;
		if (!from) {
			memcpy(dst, to, to_len);
			memcpy(dst + to_len, cur, cur_len);
			o = to_len + cur_len;
		} else {
			for (i = 0; i < cur_len;) {
				if (i + from_len <= cur_len && !memcmp(cur + i, from, from_len)) {
					memcpy(dst + o, to, to_len);
					o += to_len;
					i += from_len;
				} else {
					dst[o++] = cur[i++];
				}
			}
		}
		cur = dst;
		cur_len = o;
	}
	*ret_buf = cur;
	*ret_len = cur_len;
	return 0;
}

/* Metaspace(split=true): each "▁" starts a new piece (HF MergedWithNext on "▁"). */
static int meta_split(struct enc_ctx *c, const char *buf, size_t len)
{
	size_t i, start = 0;
	int ret;

	c->a.n = 0;
	for (i = 0; i + 3 <= len; i++) {
		if (i > start && !memcmp(buf + i, meta_sym, 3)) {
			ret = spans_push(&c->a, start, i - start);
			if (ret)
				return ret;
			start = i;
		}
	}
	return spans_push(&c->a, start, len - start);
}

static int encode_segment(struct enc_ctx *c, const char *seg, size_t len, bool at_start)
{
	const struct tokenizer *t = c->t;
	const char *buf;
	size_t blen, i;
	unsigned int k;
	int ret;

	ret = normalize(c, seg, len, at_start, &buf, &blen);
	if (ret)
		return ret;
	if (t->metaspace && t->meta_split) {
		ret = meta_split(c, buf, blen);
	} else {
		c->a.n = 0;
		ret = spans_push(&c->a, 0, blen);
	}
	if (ret)
		return ret;
	for (k = 0; k < t->n_pretok; k++) {
		c->b.n = 0;
		for (i = 0; i < c->a.n; i++) {
			ret = split_piece(c, &t->pretok[k], buf, c->a.v[i], &c->b);
			if (ret)
				return ret;
		}
		struct spans tmp = c->a;

		c->a = c->b;
		c->b = tmp;
	}
	for (i = 0; i < c->a.n; i++) {
		ret = tok_bpe_word(t, &c->bpe, buf + c->a.v[i].off, c->a.v[i].len, &c->ids);
		if (ret)
			return ret;
	}
	return 0;
}

static bool is_space(unsigned char ch)
{
	return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

static bool is_word_byte(unsigned char ch)
{
	return ch >= 0x80 || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
	       (ch >= 'A' && ch <= 'Z') || ch == '_';
}

/*
 * The longest added token that matches at @pos: its id, and the span it consumes
 * (lstrip/rstrip swallow neighbouring whitespace), or -1.
 */
static int32_t match_added(const struct tokenizer *t, const char *text, size_t len, size_t pos,
			   size_t lo, bool parse_special, size_t *ret_start, size_t *ret_end)
{
	uint8_t b = (uint8_t)text[pos];

	/* only at character boundaries: segments handed to PCRE2 must stay valid UTF-8 */
	if ((b & 0xc0) == 0x80)
		return -1;
	for (uint32_t i = t->added_start[b]; i < t->added_start[b + 1]; i++) {
		const struct tok_token *k = &t->tokens[t->added[i]];
		size_t s = pos, e = pos + k->len;

		if (k->len > len - pos || memcmp(text + pos, k->text, k->len))
			continue;
		if (e < len && ((uint8_t)text[e] & 0xc0) == 0x80)
			continue; /* a vocab entry ending inside a character (hostile file) */
		if (!parse_special && k->type != TOK_T_USER)
			continue;
		if (k->single_word && ((pos > 0 && is_word_byte(text[pos - 1])) ||
				       (e < len && is_word_byte(text[e]))))
			continue;
		if (k->lstrip)
			while (s > lo && is_space(text[s - 1]))
				s--;
		if (k->rstrip)
			while (e < len && is_space(text[e]))
				e++;
		*ret_start = s;
		*ret_end = e;
		return t->added[i];
	}
	return -1;
}

static int check_utf8(const char *text, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint32_t cp;
		size_t cl;

		if ((unsigned char)text[i] < 0x80) {
			i++;
			continue;
		}
		cl = tok_utf8_next((const unsigned char *)text + i, len - i, &cp);
		if (!cl)
			return -EBADMSG;
		i += cl;
	}
	return 0;
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, bool parse_special,
		     int32_t **ret_ids, size_t *ret_n)
{
	struct enc_ctx c = { .t = t };
	size_t pos = 0, seg = 0;
	int ret;

	if (!t || (!text && len) || !ret_ids || !ret_n)
		return -EINVAL;
	ret = check_utf8(text, len);
	if (ret)
		return ret;
	c.md = pcre2_match_data_create(4, NULL);
	if (!c.md)
		return -ENOMEM;
	while (pos < len) {
		size_t s, e;
		int32_t id = t->n_added ? match_added(t, text, len, pos, seg, parse_special, &s, &e)
					: -1;

		if (id < 0) {
			pos++;
			continue;
		}
		ret = encode_segment(&c, text + seg, s - seg, seg == 0);
		if (!ret)
			ret = tok_ids_push(&c.ids, id);
		if (ret)
			goto out;
		pos = seg = e;
	}
	ret = encode_segment(&c, text + seg, len - seg, seg == 0);
	if (ret)
		goto out;
	if (!c.ids.v) { /* empty result: still hand back a freeable pointer */
		c.ids.v = malloc(sizeof(int32_t));
		if (!c.ids.v) {
			ret = -ENOMEM;
			goto out;
		}
	}
	*ret_ids = c.ids.v;
	*ret_n = c.ids.n;
	c.ids.v = NULL;
out:
	free(c.ids.v);
	free(c.a.v);
	free(c.b.v);
	free(c.parts.v);
	free(c.part_match);
	free(c.norm);
	free(c.norm2);
	tok_bpe_scratch_done(&c.bpe);
	pcre2_match_data_free(c.md);
	return ret;
}

/* ---- decode and accessors ---- */

int tokenizer_piece(const struct tokenizer *t, int32_t id, char *buf, size_t cap)
{
	const struct tok_token *k;

	if (!t || id < 0 || (uint32_t)id >= t->n_vocab)
		return -EINVAL;
	k = &t->tokens[id];
	if (cap && k->piece_len)
		memcpy(buf, k->piece, k->piece_len < cap ? k->piece_len : cap);
	return (int)k->piece_len;
}

int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, char **ret)
{
	size_t total = 0, i, o = 0, skip = 0;
	char *s;

	if (!t || (!ids && n) || !ret)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (ids[i] < 0 || (uint32_t)ids[i] >= t->n_vocab)
			return -EINVAL;
		total += t->tokens[ids[i]].piece_len;
	}
	s = malloc(total + 1);
	if (!s)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		const struct tok_token *k = &t->tokens[ids[i]];

		if (k->piece_len)
			memcpy(s + o, k->piece, k->piece_len);
		o += k->piece_len;
	}
	/* SPM prepended "▁" to the text; HF's decoder strips that one space again. */
	if (t->strip_decoded_space && o && s[0] == ' ')
		skip = 1;
	memmove(s, s + skip, o - skip);
	s[o - skip] = 0;
	*ret = s;
	return 0;
}

int32_t tokenizer_find(const struct tokenizer *t, const char *s)
{
	int32_t id;

	if (!t || !s)
		return -EINVAL;
	id = tok_lookup(t, s, strlen(s));
	return id >= 0 ? id : -ENOENT;
}

enum tok_kind tokenizer_kind(const struct tokenizer *t)
{
	return t->kind;
}

uint32_t tokenizer_n_vocab(const struct tokenizer *t)
{
	return t->n_vocab;
}

int32_t tokenizer_bos(const struct tokenizer *t)
{
	return t->bos;
}

int32_t tokenizer_eos(const struct tokenizer *t)
{
	return t->eos;
}

bool tokenizer_add_bos(const struct tokenizer *t)
{
	return t->add_bos;
}

bool tokenizer_is_special(const struct tokenizer *t, int32_t id)
{
	if (!t || id < 0 || (uint32_t)id >= t->n_vocab)
		return false;
	return t->tokens[id].added || t->tokens[id].type == TOK_T_CONTROL ||
	       t->tokens[id].type == TOK_T_USER || t->tokens[id].type == TOK_T_UNKNOWN;
}
