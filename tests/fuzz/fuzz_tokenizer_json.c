// SPDX-License-Identifier: MIT
/* Fuzz tokenizer.json loading (and encode/decode with whatever loads) through the production
 * parser. Built with libFuzzer by `make fuzz`, replayed over tests/fuzz/corpus/tokenizer_json/
 * by `make test`. */
#include "engine/tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char text[] = "Hello  world 12345 caf\xc3\xa9 \xf0\x9f\x98\x80<s>\n\n a-b";
	struct tokenizer *t = NULL;
	int32_t *ids = NULL;
	char *dec = NULL;
	size_t n = 0;

	if (tokenizer_from_hf_json_mem((const char *)data, size, &t, NULL))
		return 0;
	if (!tokenizer_encode(t, text, sizeof(text) - 1, true, &ids, &n)) {
		if (!tokenizer_decode(t, ids, n, &dec))
			free(dec);
		free(ids);
	}
	tokenizer_free(t);
	return 0;
}
