// SPDX-License-Identifier: MIT
/* GGUF reader: parse, then touch every kv value and tensor byte the reader hands out. */
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/model_config.h"
#include "tests/fuzz/fuzz.h"

static volatile double sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf_file *g = NULL;
	struct model_config cfg;
	double acc = 0;

	if (gguf_open_mem(data, size, &g, NULL))
		return 0;
	for (uint64_t i = 0; i < g->n_kv; i++) {
		const struct gguf_kv *kv = &g->kv[i];
		const struct gguf_str *s = kv->data;
		uint64_t u;
		float f;

		if (gguf_find_kv(g, kv->key) != kv)
			abort();
		(void)gguf_get_u64(g, kv->key, &u);
		(void)gguf_get_f32(g, kv->key, &f);
		if (kv->type == GGUF_VT_STRING ||
		    (kv->type == GGUF_VT_ARRAY && kv->arr_type == GGUF_VT_STRING)) {
			for (uint64_t j = 0; j < kv->n; j++)
				if (s[j].len)
					acc += (uint8_t)s[j].data[0] +
					       (uint8_t)s[j].data[s[j].len - 1];
		} else if (kv->type == GGUF_VT_ARRAY) {
			for (uint64_t j = 0; j < kv->n; j++)
				acc += gguf_arr_num(kv, j);
		}
	}
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		float *buf;

		if (gguf_find_tensor(g, t->name) != t)
			abort();
		if (t->n_bytes)
			acc += ((const uint8_t *)t->data)[0] +
			       ((const uint8_t *)t->data)[t->n_bytes - 1];
		if (t->n_elems > FUZZ_MAX_ELEMS)
			continue;
		buf = malloc((t->n_elems ? t->n_elems : 1) * sizeof(float));
		if (buf && !gguf_tensor_to_f32(t, buf) && t->n_elems)
			acc += buf[t->n_elems - 1];
		free(buf);
	}
	if (!model_config_from_gguf(g, &cfg, NULL))
		(void)model_config_validate(&cfg, NULL);
	sink = acc;
	gguf_close(g);
	return 0;
}
