// SPDX-License-Identifier: MIT
/*
 * The BPE merge loop for one pre-token ("word").
 *
 * Symbols form a doubly linked list over the word; candidate merges sit in a binary min-heap
 * keyed by (priority, left position), so the best merge is applied first and ties go to the
 * leftmost pair, as in HF tokenizers' Word::merge_all and in SentencePiece. Entries go stale
 * when a neighbour merges first; they are checked on pop (the pair is looked up again) and
 * dropped, which keeps every merge O(log n) even for a megabyte-long word (SPM models without
 * a pre-tokenizer see whole segments).
 *
 * Priority: rank of the merge (tokenizer.json / GGUF merges), or, for GGUF SPM models, the
 * score of the concatenated piece (higher first), encoded as an order-preserving uint32.
 */
#include "common/grow.h"
#include "engine/tok_internal.h"

#include <stdlib.h>
#include <string.h>

struct tok_sym {
	int32_t id;	   /* -1: character not in the vocab (SPM score mode only) */
	uint32_t off, len; /* bytes of the word covered; len 0 = merged away */
	int32_t prev, next;
};

struct tok_heap_ent {
	uint32_t key;
	uint32_t pos;
	uint32_t right;
	int32_t id; /* token the merge produces */
};

void tok_bpe_scratch_done(struct tok_bpe_scratch *s)
{
	free(s->syms);
	free(s->heap);
	free(s->map);
	memset(s, 0, sizeof(*s));
}

/* Higher float -> smaller key, total order for finite scores. */
static uint32_t score_key(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending-order bits */
	return ~u;
}

static bool ent_less(const struct tok_heap_ent *a, const struct tok_heap_ent *b)
{
	if (a->key != b->key)
		return a->key < b->key;
	return a->pos < b->pos;
}

static void heap_push(struct tok_heap_ent *h, size_t *n, struct tok_heap_ent e)
{
	size_t i = (*n)++;

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!ent_less(&e, &h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = e;
}

static struct tok_heap_ent heap_pop(struct tok_heap_ent *h, size_t *n)
{
	struct tok_heap_ent top = h[0], last = h[--(*n)];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= *n)
			break;
		if (c + 1 < *n && ent_less(&h[c + 1], &h[c]))
			c++;
		if (!ent_less(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n)
		h[i] = last;
	return top;
}

static const struct tok_merge *merge_find(const struct tok_mergemap *m, int32_t a, int32_t b)
{
	uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
	uint64_t h = key * 0x9e3779b97f4a7c15ull;
	uint32_t i;

	if (!m->slots || a < 0 || b < 0)
		return NULL;
	for (i = (uint32_t)(h >> 32) & m->mask;; i = (i + 1) & m->mask) {
		if (m->slots[i].key == key)
			return &m->slots[i];
		if (m->slots[i].key == UINT64_MAX)
			return NULL;
	}
}

/* The merge of symbols @l and @r: 0 and *ret filled, or -1 if they do not merge. */
static int pair_merge(const struct tokenizer *t, const char *word, const struct tok_sym *l,
		      const struct tok_sym *r, struct tok_heap_ent *ret)
{
	if (t->score_merges) {
		int32_t id = tok_lookup(t, word + l->off, l->len + r->len);

		if (id < 0 || t->tokens[id].type != TOK_T_NORMAL)
			return -1;
		ret->key = score_key(t->tokens[id].score);
		ret->id = id;
		return 0;
	}
	const struct tok_merge *m = merge_find(&t->merges, l->id, r->id);

	if (!m)
		return -1;
	ret->key = m->rank;
	ret->id = m->id;
	return 0;
}

static int push_pair(const struct tokenizer *t, struct tok_bpe_scratch *s, size_t *n_heap,
		     const char *word, int32_t pos)
{
	struct tok_sym *l = &s->syms[pos];
	struct tok_heap_ent e;

	if (l->next < 0)
		return 0;
	if (pair_merge(t, word, l, &s->syms[l->next], &e))
		return 0;
	e.pos = pos;
	e.right = l->next;
	heap_push(s->heap, n_heap, e);
	return 0;
}

/* Append a symbol; fuse_unk joins it to a previous unknown symbol. */
static void add_sym(const struct tokenizer *t, struct tok_sym *syms, size_t *n, int32_t id,
		    uint32_t off, uint32_t len)
{
	if (id >= 0 && id == t->unk && t->fuse_unk && *n && syms[*n - 1].id == t->unk) {
		syms[*n - 1].len += len;
		return;
	}
	syms[*n] = (struct tok_sym){
		.id = id, .off = off, .len = len, .prev = (int32_t)*n - 1, .next = -1
	};
	if (*n)
		syms[*n - 1].next = (int32_t)*n;
	(*n)++;
}

/* Byte-level: the word spelled in mapped code points (how the vocab spells it). */
static int map_word(struct tok_bpe_scratch *s, const char *word, size_t len, size_t *ret_len)
{
	size_t i, o = 0;
	int ret;

	ret = array_grow((void **)&s->map, &s->map_cap, len * 2 + 1, 1);
	if (ret)
		return ret;
	for (i = 0; i < len; i++)
		o += tok_utf8_put(tok_byte_to_cp((uint8_t)word[i]), s->map + o);
	*ret_len = o;
	return 0;
}

/* Initial symbols: bytes (byte-level) or UTF-8 characters, with HF's unknown handling. */
static int init_syms(const struct tokenizer *t, const char *word, size_t len, size_t *ret_n,
		     struct tok_bpe_scratch *s)
{
	size_t i = 0, n = 0;

	while (i < len) {
		uint32_t cp;
		size_t cl;
		int32_t id;

		if (t->byte_level) {
			id = t->byte_id[(uint8_t)word[i]];
			cl = 1;
		} else {
			cl = tok_utf8_next((const unsigned char *)word + i, len - i, &cp);
			if (!cl)
				cl = 1; /* encode validated the text; stay safe anyway */
			id = tok_lookup(t, word + i, cl);
			if (id >= 0 && t->tokens[id].type != TOK_T_NORMAL &&
			    t->tokens[id].type != TOK_T_USER && t->score_merges)
				id = -1; /* SPM: control/byte pieces never come from text */
		}
		if (id < 0 && t->score_merges) {
			add_sym(t, s->syms, &n, -1, i, cl); /* resolved after merging */
		} else if (id < 0) {
			bool bytes_ok = t->byte_fallback;

			for (size_t k = 0; bytes_ok && k < cl; k++)
				bytes_ok = t->byte_id[(uint8_t)word[i + k]] >= 0;
			if (bytes_ok) {
				for (size_t k = 0; k < cl; k++)
					add_sym(t, s->syms, &n, t->byte_id[(uint8_t)word[i + k]],
						i + k, 1);
			} else if (t->unk >= 0) {
				add_sym(t, s->syms, &n, t->unk, i, cl);
			} /* else: HF drops characters it cannot represent */
		} else {
			add_sym(t, s->syms, &n, id, i, cl);
		}
		i += cl;
	}
	*ret_n = n;
	return 0;
}

static int emit(const struct tokenizer *t, const char *word, const struct tok_sym *sym,
		struct tok_ids *out)
{
	int ret;

	if (sym->id >= 0)
		return tok_ids_push(out, sym->id);
	/* SPM score mode: a character outside the vocab -> its bytes, else <unk>. */
	for (uint32_t k = 0; k < sym->len; k++) {
		if (t->byte_fallback && t->byte_id[(uint8_t)word[sym->off + k]] >= 0) {
			ret = tok_ids_push(out, t->byte_id[(uint8_t)word[sym->off + k]]);
		} else {
			if (t->unk < 0)
				return 0;
			return tok_ids_push(out, t->unk);
		}
		if (ret)
			return ret;
	}
	return 0;
}

int tok_bpe_word(const struct tokenizer *t, struct tok_bpe_scratch *s, const char *word, size_t len,
		 struct tok_ids *out)
{
	size_t n_syms, n_heap = 0, i;
	int ret;

	if (!len)
		return 0;
	if (t->ignore_merges) {
		const char *w = word;
		size_t wl = len;
		int32_t id;

		if (t->byte_level) {
			ret = map_word(s, word, len, &wl);
			if (ret)
				return ret;
			w = s->map;
		}
		id = tok_lookup(t, w, wl);
		if (id >= 0)
			return tok_ids_push(out, id);
	}
	if (len > UINT32_MAX / 4)
		return -EOVERFLOW;
	ret = array_grow((void **)&s->syms, &s->syms_cap, len, sizeof(*s->syms));
	if (ret)
		return ret;
	ret = array_grow((void **)&s->heap, &s->heap_cap, 3 * len + 1, sizeof(*s->heap));
	if (ret)
		return ret;
	ret = init_syms(t, word, len, &n_syms, s);
	if (ret)
		return ret;

	for (i = 0; i + 1 < n_syms; i++)
		push_pair(t, s, &n_heap, word, (int32_t)i);
	while (n_heap) {
		struct tok_heap_ent e = heap_pop(s->heap, &n_heap), cur;
		struct tok_sym *l = &s->syms[e.pos], *r;

		if (!l->len || l->next != (int32_t)e.right)
			continue;
		r = &s->syms[e.right];
		if (pair_merge(t, word, l, r, &cur) || cur.id != e.id || cur.key != e.key)
			continue; /* stale: a neighbour changed since the push */
		l->id = e.id;
		l->len += r->len;
		r->len = 0;
		l->next = r->next;
		if (r->next >= 0)
			s->syms[r->next].prev = (int32_t)e.pos;
		if (l->prev >= 0)
			push_pair(t, s, &n_heap, word, l->prev);
		push_pair(t, s, &n_heap, word, (int32_t)e.pos);
	}
	for (i = 0; i < n_syms; i++) {
		if (!s->syms[i].len)
			continue;
		ret = emit(t, word, &s->syms[i], out);
		if (ret)
			return ret;
	}
	return 0;
}
