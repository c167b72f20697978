// SPDX-License-Identifier: MIT
/* Zero-shot task files (JSON lines) over arbitrary bytes. */
#include "engine/tasks.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct task_file *f = NULL;
	struct errbuf e;

	if (!task_file_parse((const char *)data, size, &f, &e))
		task_file_free(f);
	return 0;
}
