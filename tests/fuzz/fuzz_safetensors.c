// SPDX-License-Identifier: MIT
/* Safetensors reader: parse one file image, then read every tensor it hands out. */
#include <stdlib.h>

#include "engine/safetensors.h"
#include "tests/fuzz/fuzz.h"

static volatile double sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_set *s = NULL;
	double acc = 0;

	if (st_open_mem(data, size, &s, NULL))
		return 0;
	for (size_t i = 0; i < st_n_tensors(s); i++) {
		const struct st_tensor *t = st_tensor_at(s, i);
		float *buf;

		if (st_find(s, t->name) != t)
			abort();
		if (t->n_bytes)
			acc += ((const uint8_t *)t->data)[0] +
			       ((const uint8_t *)t->data)[t->n_bytes - 1];
		if (t->n_elems > FUZZ_MAX_ELEMS)
			continue;
		buf = malloc((t->n_elems ? t->n_elems : 1) * sizeof(float));
		if (buf && !st_tensor_to_f32(t, buf) && t->n_elems)
			acc += buf[t->n_elems - 1];
		free(buf);
	}
	sink = acc;
	st_close(s);
	return 0;
}
