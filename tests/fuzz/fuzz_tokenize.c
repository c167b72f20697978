// SPDX-License-Identifier: MIT
/*
 * Prompt text from a client, through the tokenizers the daemon runs it through: the real GPT-2
 * byte-level BPE (../shared/data/tokenizers/gpt2) and the SentencePiece-style BPE with byte
 * fallback of tests/fixtures/tokenizer/spm_bpe.json. The first input byte picks the tokenizer
 * (bit 0) and whether special tokens are parsed (bit 1); the rest is the text. Beyond not
 * crashing, each input must satisfy:
 *  - encode succeeds exactly when the text is valid UTF-8 (checked here independently);
 *  - every id is in the vocabulary, and decode accepts them;
 *  - byte-level BPE without special-token parsing is lossless: decode(encode(t)) == t;
 *  - the text read as raw little-endian ids decodes, or is refused with -EINVAL when an id is
 *    out of range (a client may send ids too).
 * Runs from the repository root (as `make test` and tests/fuzz/run_bounded.sh do); a missing
 * tokenizer aborts, because a replay that checks nothing must not pass.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "engine/tokenizer.h"
#include "tests/fuzz/fuzz.h"

#define SPM_JSON "tests/fixtures/tokenizer/spm_bpe.json"

static struct tokenizer *tok[2];

static void die(const char *what)
{
	fprintf(stderr, "fuzz_tokenize: %s\n", what);
	abort();
}

static void load(void)
{
	const char *shared = getenv("SHIFTADD_SHARED");
	char enc[512], bpe[512];

	if (tok[0])
		return;
	if (!shared || !*shared)
		shared = "../shared";
	snprintf(enc, sizeof(enc), "%s/data/tokenizers/gpt2/encoder.json", shared);
	snprintf(bpe, sizeof(bpe), "%s/data/tokenizers/gpt2/vocab.bpe", shared);
	if (tokenizer_from_gpt2_files(enc, bpe, &tok[0], NULL))
		die("cannot load the GPT-2 tokenizer under $SHIFTADD_SHARED or ../shared");
	if (tokenizer_from_hf_json(SPM_JSON, &tok[1], NULL))
		die("cannot load " SPM_JSON " (run from the repository root)");
}

/* RFC 3629 UTF-8, written apart from the tokenizer's own check so the two can disagree. */
static bool valid_utf8(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		size_t len = c < 0x80		  ? 1
			     : (c & 0xe0) == 0xc0 ? 2
			     : (c & 0xf0) == 0xe0 ? 3
			     : (c & 0xf8) == 0xf0 ? 4
						  : 0;
		uint32_t cp;

		if (!len || i + len > n)
			return false;
		cp = len == 1 ? c : c & (0x7f >> len);
		for (size_t j = 1; j < len; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static void check_text(const struct tokenizer *t, bool byte_level, bool special,
		       const uint8_t *text, size_t n)
{
	int32_t *ids = NULL;
	size_t n_ids = 0;
	char *dec = NULL;
	int r = tokenizer_encode(t, (const char *)text, n, special, &ids, &n_ids);

	if (r == -ENOMEM)
		return;
	if ((r == 0) != valid_utf8(text, n))
		die(r ? "valid UTF-8 refused" : "invalid UTF-8 accepted");
	if (r) {
		if (r != -EBADMSG)
			die("encode failed with an unexpected error");
		return;
	}
	for (size_t i = 0; i < n_ids; i++)
		if (ids[i] < 0 || (uint32_t)ids[i] >= tokenizer_n_vocab(t))
			die("encode gave an id outside the vocabulary");
	r = tokenizer_decode(t, ids, n_ids, &dec);
	if (r && r != -ENOMEM)
		die("decode refused ids that encode gave");
	/* decode gives a C string, so a text with NUL bytes is compared up to its first one */
	if (!r && byte_level && !special) {
		size_t m = strnlen((const char *)text, n);

		if (strlen(dec) != m || memcmp(dec, text, m))
			die("byte-level BPE did not round-trip");
	}
	free(dec);
	free(ids);
}

static void check_ids(const struct tokenizer *t, const uint8_t *data, size_t n)
{
	size_t n_ids = n / 4;
	int32_t *ids = malloc((n_ids ? n_ids : 1) * sizeof(*ids));
	bool in_range = true;
	char *dec = NULL, piece[64];
	int r;

	if (!ids)
		return;
	for (size_t i = 0; i < n_ids; i++) {
		uint32_t u = (uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 |
			     (uint32_t)data[4 * i + 2] << 16 | (uint32_t)data[4 * i + 3] << 24;

		bool ok = (int32_t)u >= 0 && u < tokenizer_n_vocab(t);

		ids[i] = (int32_t)u;
		in_range &= ok;
		r = tokenizer_piece(t, ids[i], piece, sizeof(piece));
		if ((r >= 0) != ok)
			die("tokenizer_piece disagrees with the vocabulary size");
	}
	r = tokenizer_decode(t, ids, n_ids, &dec);
	if (r != -ENOMEM && (r == 0) != in_range)
		die(r ? "decode refused ids in range" : "decode accepted an id out of range");
	free(dec);
	free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool spm, special;

	if (!size)
		return 0;
	load();
	spm = data[0] & 1;
	special = data[0] & 2;
	check_text(tok[spm], !spm, special, data + 1, size - 1);
	check_ids(tok[spm], data + 1, size - 1);
	return 0;
}
