// SPDX-License-Identifier: MIT
/*
 * GGUF reader: parse, then touch every kv value and tensor byte the reader hands out; then what
 * the model loader builds from a file: the model config, the tokenizer from its metadata, and
 * every shift-add layer (sa_format_load, dequantized, packed for the kernels and run once, with
 * its Hadamard transforms).
 */
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/model_config.h"
#include "engine/sa_format.h"
#include "engine/tokenizer.h"
#include "kernels/lut.h"
#include "kernels/rht.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/fuzz_tok.h"

static volatile double sink;

static int tensor_to_f32(const void *t, float *dst)
{
	return gguf_tensor_to_f32(t, dst);
}

static double run_tokenizer(const struct gguf_file *g)
{
	struct tokenizer *t = NULL;
	double acc;

	if (tokenizer_from_gguf(g, &t, NULL))
		return 0;
	acc = (double)fuzz_use_tokenizer(t);
	tokenizer_free(t);
	return acc;
}

/* The rht transforms of a layer on one vector of @n ones: rht_init checks @n itself. */
static double run_rht(uint32_t n, uint64_t seed)
{
	struct rht t;
	float *x;
	double acc = 0;

	if (n > FUZZ_MAX_ELEMS || rht_init(&t, n, seed))
		return 0;
	x = malloc(n * sizeof(*x));
	if (x) {
		for (uint32_t i = 0; i < n; i++)
			x[i] = 1;
		if (!rht_apply(&t, x, 1) && !rht_apply_inverse(&t, x, 1))
			acc = x[n - 1];
	}
	free(x);
	rht_done(&t);
	return acc;
}

/* Load the shift-add layer under @base as the model loader does, and run it on ones. */
static double run_sa_layer(const struct gguf_file *g, const char *base)
{
	struct qweight q;
	struct sa_rht rht;
	struct lut_weight w = { 0 };
	float *dense = NULL, *x = NULL, *y = NULL;
	double acc = 0;

	if (sa_format_load(g, base, &q, &rht, NULL))
		return 0;
	if ((uint64_t)q.n_rows * q.n_cols > FUZZ_MAX_ELEMS)
		goto out;
	dense = malloc((size_t)q.n_rows * q.n_cols * sizeof(*dense));
	x = malloc(q.n_cols * sizeof(*x));
	y = malloc(q.n_rows * sizeof(*y));
	if (!dense || !x || !y)
		goto out;
	qweight_dequant(&q, dense);
	acc += dense[0];
	if (!lut_pack(&q, &w)) {
		for (uint32_t i = 0; i < q.n_cols; i++)
			x[i] = 1;
		if (!lut_gemv(&w, x, y, NULL))
			acc += y[q.n_rows - 1];
	}
	if (rht.mode != SA_RHT_NONE)
		acc += run_rht(q.n_cols, rht.seed_in);
	if (rht.mode == SA_RHT_BOTH)
		acc += run_rht(q.n_rows, rht.seed_out);
out:
	lut_weight_done(&w);
	free(dense);
	free(x);
	free(y);
	qweight_done(&q);
	return acc;
}

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

		if (gguf_find_tensor(g, t->name) != t)
			abort();
		acc += fuzz_read_tensor(t, t->data, t->n_bytes, t->n_elems, tensor_to_f32);
	}
	if (!model_config_from_gguf(g, &cfg, NULL))
		(void)model_config_validate(&cfg, NULL);
	acc += run_tokenizer(g);
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const char *name = g->tensors[i].name, *dot = strrchr(name, '.');
		char base[256];

		if (!dot || strcmp(dot, ".sa_meta") || (size_t)(dot - name) >= sizeof(base))
			continue;
		memcpy(base, name, (size_t)(dot - name));
		base[dot - name] = 0;
		acc += run_sa_layer(g, base);
	}
	sink = acc;
	gguf_close(g);
	return 0;
}
