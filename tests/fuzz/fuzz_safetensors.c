// SPDX-License-Identifier: MIT
/* Safetensors reader: parse one file image, then read every tensor it hands out. */
#include <stdlib.h>

#include "engine/safetensors.h"
#include "tests/fuzz/fuzz.h"

static volatile double sink;

static int tensor_to_f32(const void *t, float *dst)
{
	return st_tensor_to_f32(t, dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_set *s = NULL;
	double acc = 0;

	if (st_open_mem(data, size, &s, NULL))
		return 0;
	for (size_t i = 0; i < st_n_tensors(s); i++) {
		const struct st_tensor *t = st_tensor_at(s, i);

		if (st_find(s, t->name) != t)
			abort();
		acc += fuzz_read_tensor(t, t->data, t->n_bytes, t->n_elems, tensor_to_f32);
	}
	sink = acc;
	st_close(s);
	return 0;
}
