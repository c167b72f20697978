/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_TOKENIZER_H
#define ENGINE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct gguf_file;

/*
 * Tokenizers that reproduce Hugging Face `tokenizers` ids exactly:
 *  - byte-level BPE (GPT-2, SmolLM2, LLaMA-3, Qwen2): a pre-tokenizer regex (PCRE2, Unicode
 *    properties), bytes mapped to printable code points, merges by rank;
 *  - SentencePiece-style BPE with byte fallback (LLaMA-1/2, Mistral, Gemma): "▁" for spaces,
 *    merges by piece score, unknown bytes as <0xNN> tokens.
 * Special (added) tokens are matched before pre-tokenization when the caller asks for it.
 * A tokenizer is immutable after construction and safe to share between threads.
 */

struct tokenizer;

enum tok_kind {
	TOK_BYTE_BPE,
	TOK_SPM_BPE,
};

/* From GGUF metadata (tokenizer.ggml.*). Caller frees with tokenizer_free(). */
int tokenizer_from_gguf(const struct gguf_file *g, struct tokenizer **ret, struct errbuf *e);
/*
 * From an HF tokenizer.json (model.type BPE; pre-tokenizer, added tokens, byte fallback).
 * BOS/EOS/add_bos come from a tokenizer_config.json in the same directory when present,
 * else from the post-processor template and the usual spellings (<s>, </s>, <|endoftext|>).
 */
int tokenizer_from_hf_json(const char *path, struct tokenizer **ret, struct errbuf *e);
/*
 * The same from @len bytes of tokenizer.json text at @buf (borrowed for the call; used by the
 * fuzzer and by callers that hold the file in memory). Unsupported components give
 * -EOPNOTSUPP, malformed JSON or inconsistent vocab/merges -EBADMSG, with a line in @e.
 */
int tokenizer_from_hf_json_mem(const char *buf, size_t len, struct tokenizer **ret,
			       struct errbuf *e);
/* From the original GPT-2 files: encoder.json and vocab.bpe. */
int tokenizer_from_gpt2_files(const char *encoder_json, const char *vocab_bpe,
			      struct tokenizer **ret, struct errbuf *e);
void tokenizer_free(struct tokenizer *t);

/*
 * Encode @len bytes of UTF-8 @text. Special tokens in the text are recognised only when
 * @parse_special is set (then the ids equal HF `tokenizers` encode(text,
 * add_special_tokens=False)); user-defined added tokens (HF non-special added tokens, GGUF
 * token_type 4) are always recognised. No BOS is added (callers add tokenizer_bos()).
 * On success *ret_ids is malloc'ed (caller frees, also when *ret_n is 0) and holds *ret_n ids.
 * Returns -EBADMSG if @text is not valid UTF-8, -ENOMEM. Thread-safe (no shared state).
 */
int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, bool parse_special,
		     int32_t **ret_ids, size_t *ret_n);

/*
 * A whole text as the model sees it at the start of a sequence: tokenizer_encode() with BOS
 * first when the tokenizer asks for one (add_bos_token: LLaMA-2, Gemma; not SmolLM2).
 * Same contract and errors as tokenizer_encode().
 */
int tokenizer_encode_text(const struct tokenizer *t, const char *text, size_t len,
			  bool parse_special, int32_t **ret_ids, size_t *ret_n);

/*
 * Bytes of token @id as it appears in decoded text (byte-level mapping undone, "▁" as space,
 * <0xNN> as that byte). Returns the byte count written (may exceed @cap: then truncated), or
 * -EINVAL for an id out of range. Pieces of one character may split a UTF-8 sequence.
 */
int tokenizer_piece(const struct tokenizer *t, int32_t id, char *buf, size_t cap);
/* Decode @n ids into a malloc'ed NUL-terminated string (caller frees). */
int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, char **ret);

/* The id of a token spelled exactly @s (special or not), or -ENOENT. */
int32_t tokenizer_find(const struct tokenizer *t, const char *s);

enum tok_kind tokenizer_kind(const struct tokenizer *t);
uint32_t tokenizer_n_vocab(const struct tokenizer *t);
int32_t tokenizer_bos(const struct tokenizer *t);  /* -1 if none */
int32_t tokenizer_eos(const struct tokenizer *t);  /* -1 if none */
bool tokenizer_add_bos(const struct tokenizer *t); /* the model wants BOS at sequence start */
bool tokenizer_is_special(const struct tokenizer *t, int32_t id); /* control / added token */

#endif /* ENGINE_TOKENIZER_H */
