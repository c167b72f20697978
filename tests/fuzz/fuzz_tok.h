/* SPDX-License-Identifier: MIT */
#ifndef TESTS_FUZZ_FUZZ_TOK_H
#define TESTS_FUZZ_FUZZ_TOK_H

#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"

/*
 * Use a tokenizer a shim has just built from fuzzed bytes: encode a fixed text with special
 * tokens parsed (and BOS where it asks for one), then decode the ids. Returns the decoded
 * length, for the shim's sink; @t stays the caller's.
 */
static inline size_t fuzz_use_tokenizer(const struct tokenizer *t)
{
	static const char text[] = "Hello  world 12345 caf\xc3\xa9 \xf0\x9f\x98\x80<s></s>\n\n a-b";
	int32_t *ids = NULL;
	char *dec = NULL;
	size_t n = 0, len = 0;

	if (tokenizer_encode_text(t, text, sizeof(text) - 1, true, &ids, &n))
		return 0;
	if (!tokenizer_decode(t, ids, n, &dec))
		len = strlen(dec);
	free(dec);
	free(ids);
	return len;
}

#endif /* TESTS_FUZZ_FUZZ_TOK_H */
