/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_TOK_INTERNAL_H
#define ENGINE_TOK_INTERNAL_H

/*
 * Tokenizer internals shared by engine/tokenizer.c (lifecycle, encode/decode, pre-tokenizers,
 * added tokens), engine/tok_bpe.c (the merge loop) and the loaders engine/tok_json.c
 * (tokenizer.json, GPT-2 files) and engine/tok_gguf.c (GGUF metadata).
 *
 * A loader builds a tokenizer in this order:
 *   tok_alloc() -> tok_set_n_vocab() -> tok_set_token() for each id -> tok_index_vocab()
 *   -> tok_add_merge() for each merge -> pre-tokenizer/normalizer setup -> tok_finish().
 * After tok_finish() the object is immutable and shared between threads.
 */

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/tokenizer.h"

/* Token types, numbered as GGUF's tokenizer.ggml.token_type (llama.cpp's convention). */
enum tok_type {
	TOK_T_UNDEF = 0, /* id not assigned (gap in a tokenizer.json vocab) */
	TOK_T_NORMAL = 1,
	TOK_T_UNKNOWN = 2,
	TOK_T_CONTROL = 3,
	TOK_T_USER = 4, /* user-defined: matched verbatim in text even without parse_special */
	TOK_T_UNUSED = 5,
	TOK_T_BYTE = 6, /* <0xNN> byte-fallback token */
	TOK_T_COUNT,
};

struct tok_token {
	char *text;	    /* vocab spelling (byte-level mapped / "▁" form), NUL-terminated */
	uint32_t len;	    /* bytes in text */
	char *piece;	    /* decoded bytes (see tokenizer_piece) */
	uint32_t piece_len; /* bytes in piece */
	float score;	    /* SPM piece score (GGUF tokenizer.ggml.scores) */
	uint8_t type;	    /* enum tok_type */
	bool added;	    /* in the added/special token list (matched before pre-tokenizing) */
	bool lstrip, rstrip, single_word; /* HF AddedToken flags */
};

/* Open-addressing map from a byte string (a token's text) to its id. */
struct tok_strmap {
	int32_t *slots; /* id, or -1 when empty; n_slots is a power of two */
	uint32_t mask;
};

/* Open-addressing map from a pair of ids to the merge that joins them. */
struct tok_merge {
	uint64_t key; /* (uint64)left << 32 | right; UINT64_MAX when empty */
	uint32_t rank;
	int32_t id; /* the merged token */
};

struct tok_mergemap {
	struct tok_merge *slots;
	uint32_t mask;
	uint32_t n;
};

/* HF SplitDelimiterBehavior. */
enum tok_split {
	TOK_SPLIT_REMOVED,
	TOK_SPLIT_ISOLATED,
	TOK_SPLIT_MERGED_PREV,
	TOK_SPLIT_MERGED_NEXT,
	TOK_SPLIT_CONTIGUOUS,
};

/* One regex split step of the pre-tokenizer, applied to every piece of the previous step. */
struct tok_pretok {
	pcre2_code *re;
	enum tok_split behavior;
	bool invert;
};

#define TOK_MAX_PRETOK 8
#define TOK_MAX_NORM   8

/* One normalizer step: replace @from by @to everywhere, or prepend @to (from == NULL). */
struct tok_norm {
	char *from;
	size_t from_len;
	char *to;
	size_t to_len;
};

enum tok_prepend {
	TOK_PREPEND_NEVER,
	TOK_PREPEND_FIRST,  /* only to the segment at the start of the text */
	TOK_PREPEND_ALWAYS, /* to every segment between added tokens */
};

struct tokenizer {
	enum tok_kind kind;
	bool byte_level;   /* GPT-2 byte->code point mapping of pieces */
	bool score_merges; /* SPM: merge the adjacent pair whose concatenation has the best score */
	bool byte_fallback; /* unknown characters become <0xNN> tokens */
	bool fuse_unk;
	bool ignore_merges; /* a pre-token that is a whole vocab entry is emitted as is */
	bool add_bos;
	bool strip_decoded_space; /* decode drops one leading space (SPM prepended it) */

	uint32_t n_vocab;
	struct tok_token *tokens; /* [n_vocab] */
	struct tok_strmap vocab;
	struct tok_mergemap merges;
	int32_t byte_id[256]; /* byte-level: token of each byte; SPM: the <0xNN> token; -1 none */

	int32_t bos, eos, unk; /* -1 if none */

	struct tok_norm norm[TOK_MAX_NORM];
	unsigned int n_norm;
	bool prepend_first_only; /* Prepend steps only for the segment at the start of the text */

	/* Metaspace pre-tokenizer (HF): spaces -> @meta, optional prefix, optional split. */
	bool metaspace;
	bool meta_split;
	enum tok_prepend meta_prepend;

	struct tok_pretok pretok[TOK_MAX_PRETOK];
	unsigned int n_pretok;

	/*
	 * Ids of added tokens by first byte, longest text first within a byte: those starting
	 * with byte b are added[added_start[b] .. added_start[b + 1]) (Gemma has thousands).
	 */
	int32_t *added;
	uint32_t n_added;
	uint32_t added_start[257];
};

/* The GPT-2 / HF ByteLevel pre-tokenizer regex and the other presets, by name. */
extern const char tok_re_gpt2[];
extern const char tok_re_llama3[];
extern const char tok_re_qwen2[];
extern const char tok_re_digits[];

struct tokenizer *tok_alloc(enum tok_kind kind);
int tok_set_n_vocab(struct tokenizer *t, uint32_t n, struct errbuf *e);
/* Copy @len bytes of @text as token @id's spelling. */
int tok_set_token(struct tokenizer *t, uint32_t id, const char *text, size_t len, float score,
		  enum tok_type type, struct errbuf *e);
/* Build the text -> id map; -EBADMSG on a duplicate spelling. */
int tok_index_vocab(struct tokenizer *t, struct errbuf *e);
/* Id of the exact spelling, or -1. */
int32_t tok_lookup(const struct tokenizer *t, const char *s, size_t len);
/* Merge of spelled tokens @a and @b with priority @rank (lower first); later duplicates win. */
int tok_add_merge(struct tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
		  uint32_t rank, struct errbuf *e);
/* Append a split step; @literal treats @pat as a plain string. */
int tok_add_pretok(struct tokenizer *t, const char *pat, size_t len, bool literal,
		   enum tok_split behavior, bool invert, struct errbuf *e);
/* Append a normalizer step (@from == NULL: prepend @to). */
int tok_add_norm(struct tokenizer *t, const char *from, size_t from_len, const char *to,
		 size_t to_len, struct errbuf *e);
/* Mark @id as an added token matched in text (HF added_tokens, GGUF control/user types). */
void tok_mark_added(struct tokenizer *t, int32_t id, bool special);
/* Compute pieces, byte maps and the added-token table; validate ids. */
int tok_finish(struct tokenizer *t, struct errbuf *e);

/* GPT-2 bytes_to_unicode(): the code point that stands for byte @b. */
uint32_t tok_byte_to_cp(uint8_t b);
/* Inverse: the byte for code point @cp, or -1. */
int tok_cp_to_byte(uint32_t cp);
/* Decode one UTF-8 code point at @s (@n bytes left); returns its length, or 0 if invalid. */
size_t tok_utf8_next(const unsigned char *s, size_t n, uint32_t *ret_cp);
/* Encode @cp as UTF-8 into @out (4 bytes room); returns the length. */
size_t tok_utf8_put(uint32_t cp, char *out);

/* Growable id vector used by encode. */
struct tok_ids {
	int32_t *v;
	size_t n, cap;
};
int tok_ids_push(struct tok_ids *ids, int32_t id);

/* Scratch state for the merge loop, reused across words of one encode call. */
struct tok_bpe_scratch {
	struct tok_sym *syms;
	size_t syms_cap;
	struct tok_heap_ent *heap;
	size_t heap_cap;
	char *map; /* byte-level mapped spelling of a word */
	size_t map_cap;
};
void tok_bpe_scratch_done(struct tok_bpe_scratch *s);
/* Tokenize one pre-token (@len bytes of @word) with the model and append its ids. */
int tok_bpe_word(const struct tokenizer *t, struct tok_bpe_scratch *s, const char *word, size_t len,
		 struct tok_ids *out);

#endif /* ENGINE_TOK_INTERNAL_H */
