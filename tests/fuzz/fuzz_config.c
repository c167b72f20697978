// SPDX-License-Identifier: MIT
/* HF config.json parser over arbitrary bytes. */
#include "engine/model_config.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_config cfg;

	if (!model_config_from_hf_json_mem((const char *)data, size, &cfg, NULL))
		(void)model_config_validate(&cfg, NULL);
	return 0;
}
