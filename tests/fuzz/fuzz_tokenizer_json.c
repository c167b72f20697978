// SPDX-License-Identifier: MIT
/* Fuzz tokenizer.json loading (and encode/decode with whatever loads) through the production
 * parser. Built with libFuzzer by `make fuzz`, replayed over tests/fuzz/corpus/tokenizer_json/
 * by `make test`. */
#include "engine/tokenizer.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/fuzz_tok.h"

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tokenizer *t = NULL;

	if (tokenizer_from_hf_json_mem((const char *)data, size, &t, NULL))
		return 0;
	sink = fuzz_use_tokenizer(t);
	tokenizer_free(t);
	return 0;
}
