// SPDX-License-Identifier: MIT
/*
 * GGUF reader: the real SmolLM2 file against facts PyPI gguf's GGUFReader reports
 * (tests/fixtures/loaders/smollm2_gguf.txt, from tools/ref_loaders.py), and hostile files.
 */
#include "engine/gguf.h"
#include "tests/unit/engine/loaders_util.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static float bits_f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static void check_str_hex(const char *got, size_t got_len, const char *hex)
{
	size_t n;
	uint8_t *want = lu_unhex(hex, strlen(hex), &n);

	assert_non_null(want);
	assert_int_equal(got_len, n);
	assert_memory_equal(got, want, n);
	free(want);
}

static void check_kv_line(const struct gguf_file *g, const char *line, uint64_t *kv_pos)
{
	char key[128], a[64], b[64], c[64], h0[4096], h1[4096], h2[4096];
	const struct gguf_kv *kv = NULL;
	unsigned long long n, total, i0, i1, i2;
	unsigned type;
	double v, sum, first, last;
	int pos;

	if (sscanf(line, "kvstrarr %127s %llu %llu %llu %4095s %llu %4095s %llu %4095s", key, &n,
		   &total, &i0, h0, &i1, h1, &i2, h2) == 9) {
		const struct gguf_str *s;
		uint64_t got_total = 0;

		assert_int_equal(gguf_get_arr(g, key, GGUF_VT_STRING, &kv), 0);
		assert_int_equal(kv->n, n);
		s = kv->data;
		for (uint64_t i = 0; i < kv->n; i++)
			got_total += s[i].len;
		assert_int_equal(got_total, total);
		check_str_hex(s[i0].data, s[i0].len, h0);
		check_str_hex(s[i1].data, s[i1].len, h1);
		check_str_hex(s[i2].data, s[i2].len, h2);
	} else if (sscanf(line, "kvarr %127s %u %llu %63s %63s %63s", key, &type, &n, a, b, c) ==
		   6) {
		sum = strtod(a, NULL);
		first = strtod(b, NULL);
		last = strtod(c, NULL);
		assert_int_equal(gguf_get_arr(g, key, (enum gguf_vtype)type, &kv), 0);
		assert_int_equal(kv->n, n);
		v = 0;
		for (uint64_t i = 0; i < kv->n; i++)
			v += gguf_arr_num(kv, i);
		assert_true(v == sum);
		assert_true(gguf_arr_num(kv, 0) == first);
		assert_true(gguf_arr_num(kv, kv->n - 1) == last);
		assert_true(isnan(gguf_arr_num(kv, kv->n)));
	} else if (sscanf(line, "kvstr %127s %n", key, &pos) == 1) {
		const char *s;
		size_t len;

		assert_int_equal(gguf_get_str(g, key, &s, &len), 0);
		check_str_hex(s, len, line + pos);
		kv = gguf_find_kv(g, key);
	} else if (sscanf(line, "kv %127s %u %63s", key, &type, a) == 3) {
		v = strtod(a, NULL);
		kv = gguf_find_kv(g, key);
		assert_non_null(kv);
		assert_int_equal(kv->type, type);
		if (type == GGUF_VT_BOOL) {
			bool bv;

			assert_int_equal(gguf_get_bool(g, key, &bv), 0);
			assert_int_equal(bv, v != 0);
		} else if (type == GGUF_VT_FLOAT32) {
			float f;

			assert_int_equal(gguf_get_f32(g, key, &f), 0);
			assert_true(f == (float)v);
		} else {
			uint64_t u;

			assert_int_equal(gguf_get_u64(g, key, &u), 0);
			assert_int_equal(u, (uint64_t)v);
		}
	} else {
		fail_msg("bad fixture line: %.60s", line);
	}
	/* the fixture lists keys in file order */
	assert_non_null(kv);
	assert_ptr_equal(kv, &g->kv[*kv_pos]);
	(*kv_pos)++;
}

static void check_tensor_line(const struct gguf_file *g, const char *line, float **buf, size_t *cap,
			      const struct gguf_tensor **cur)
{
	char name[128], s_sum[64], s_abs[64];
	unsigned type, n_dims;
	unsigned long long ne[4], off;
	const struct gguf_tensor *t;
	double sum = 0, want_sum, want_abs;

	assert_int_equal(sscanf(line, "tensor %127s %u %u %llu %llu %llu %llu %llu %63s %63s", name,
				&type, &n_dims, &ne[0], &ne[1], &ne[2], &ne[3], &off, s_sum, s_abs),
			 10);
	want_sum = strtod(s_sum, NULL);
	want_abs = strtod(s_abs, NULL);
	t = gguf_find_tensor(g, name);
	assert_non_null(t);
	assert_int_equal(t->type, type);
	assert_int_equal(t->n_dims, n_dims);
	for (int d = 0; d < 4; d++)
		assert_int_equal(t->ne[d], ne[d]);
	assert_int_equal(t->n_elems, ne[0] * ne[1] * ne[2] * ne[3]);
	assert_int_equal(t->offset, off);
	assert_ptr_equal(t->data, g->base + off);
	if (t->n_elems > *cap) {
		free(*buf);
		*cap = t->n_elems;
		*buf = malloc(*cap * sizeof(float));
		assert_non_null(*buf);
	}
	assert_int_equal(gguf_tensor_to_f32(t, *buf), 0);
	for (uint64_t i = 0; i < t->n_elems; i++)
		sum += (*buf)[i];
	if (!(fabs(sum - want_sum) <= 1e-9 * want_abs + 1e-12))
		fail_msg("tensor %s: sum %.17g want %.17g", name, sum, want_sum);
	*cur = t;
}

static void check_row_line(const char *line, const float *buf, const struct gguf_tensor *t)
{
	char name[128];
	unsigned long long row;
	int pos;
	const char *p;

	assert_int_equal(sscanf(line, "row %127s %llu %n", name, &row, &pos), 2);
	assert_non_null(t);
	assert_string_equal(name, t->name);
	p = line + pos;
	for (int i = 0; i < 64 && (uint64_t)i < t->ne[0]; i++) {
		char *end;
		float want = bits_f32((uint32_t)strtoul(p, &end, 16)),
		      got = buf[row * t->ne[0] + i];

		assert_true(end != p);
		p = end;
		if (!(fabsf(got - want) <= fabsf(want) * 1e-6f + 1e-30f))
			fail_msg("%s row %llu [%d]: got %.9g want %.9g", name, row, i, got, want);
	}
}

static void test_real_model_matches_gguf_py(void **state)
{
	struct gguf_file *g = NULL;
	struct errbuf e = { { 0 } };
	size_t size, cap = 0;
	char *text, *save = NULL, *line;
	float *buf = NULL;
	const struct gguf_tensor *cur = NULL;
	uint64_t kv_pos = 0, n_tensor_lines = 0;
	unsigned long long v;
	int ret;

	if (access(LOADERS_MODEL, R_OK))
		fail_msg("%s is missing: run 'make model'", LOADERS_MODEL);
	ret = gguf_open(LOADERS_MODEL, &g, &e);
	if (ret)
		fail_msg("%s: %s", LOADERS_MODEL, errbuf_str(&e, ret));
	text = lu_read_file(LOADERS_FIXTURES "/smollm2_gguf.txt", &size);
	assert_non_null(text);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#')
			continue;
		if (sscanf(line, "version %llu", &v) == 1)
			assert_int_equal(g->version, v);
		else if (sscanf(line, "n_kv %llu", &v) == 1)
			assert_int_equal(g->n_kv, v);
		else if (sscanf(line, "n_tensors %llu", &v) == 1)
			assert_int_equal(g->n_tensors, v);
		else if (sscanf(line, "alignment %llu", &v) == 1)
			assert_int_equal(g->alignment, v);
		else if (sscanf(line, "data_offset %llu", &v) == 1)
			assert_int_equal(g->data_offset, v);
		else if (!strncmp(line, "kv", 2))
			check_kv_line(g, line, &kv_pos);
		else if (!strncmp(line, "tensor ", 7)) {
			check_tensor_line(g, line, &buf, &cap, &cur);
			n_tensor_lines++;
		} else if (!strncmp(line, "row ", 4))
			check_row_line(line, buf, cur);
		else
			fail_msg("bad fixture line: %.60s", line);
	}
	assert_int_equal(kv_pos, g->n_kv);
	assert_int_equal(n_tensor_lines, g->n_tensors);
	/* facts the rest of the engine relies on, stated plainly */
	assert_int_equal(g->n_tensors, 272);
	assert_null(gguf_find_tensor(g, "output.weight"));
	assert_null(gguf_find_kv(g, "no.such.key"));
	free(buf);
	free(text);
	gguf_close(g);
}

static void test_typed_getters_convert_and_refuse(void **state)
{
	struct gguf_file *g = NULL;
	uint32_t u32;
	uint64_t u64;
	int64_t i64;
	float f;
	bool b;
	const char *s;
	size_t len;
	const struct gguf_kv *kv;

	if (access(LOADERS_MODEL, R_OK))
		fail_msg("%s is missing: run 'make model'", LOADERS_MODEL);
	assert_int_equal(gguf_open(LOADERS_MODEL, &g, NULL), 0);
	assert_int_equal(gguf_get_u32(g, "llama.block_count", &u32), 0);
	assert_int_equal(u32, 30);
	assert_int_equal(gguf_get_i64(g, "llama.embedding_length", &i64), 0);
	assert_int_equal(i64, 576);
	assert_int_equal(gguf_get_f32(g, "llama.attention.head_count", &f), 0);
	assert_true(f == 9.0f);
	assert_int_equal(gguf_get_u64(g, "llama.rope.freq_base", &u64), -EBADMSG);
	assert_int_equal(gguf_get_bool(g, "llama.block_count", &b), -EBADMSG);
	assert_int_equal(gguf_get_str(g, "llama.block_count", &s, &len), -EBADMSG);
	assert_int_equal(gguf_get_u32(g, "missing", &u32), -ENOENT);
	assert_int_equal(gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_INT32, &kv), -EBADMSG);
	assert_int_equal(gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &kv), 0);
	assert_int_equal(gguf_get_u32(g, "tokenizer.ggml.tokens", &u32), -EBADMSG);
	gguf_close(g);
}

static void test_open_missing_and_not_gguf(void **state)
{
	struct gguf_file *g = NULL;
	struct errbuf e = { { 0 } };

	assert_int_equal(gguf_open("tests/fixtures/loaders/no-such-file.gguf", &g, &e), -ENOENT);
	assert_true(strlen(e.msg) > 0);
	assert_int_equal(gguf_open(LOADERS_FIXTURES "/quant_blocks.txt", &g, &e), -EBADMSG);
	assert_non_null(strstr(e.msg, "magic"));
	assert_int_equal(gguf_open("tests", &g, &e), -EBADMSG);
	gguf_close(NULL);
}

/* Every prefix of a valid file: an error until the last tensor's data is complete, never a crash. */
static void test_every_truncation_is_an_error(void **state)
{
	size_t n;
	char *full = lu_read_file(LOADERS_FIXTURES "/pywriter.gguf", &n);
	struct gguf_file *g = NULL;
	struct errbuf e;
	uint64_t data_end = 0;

	assert_non_null(full);
	assert_int_equal(gguf_open_mem(full, n, &g, NULL), 0);
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if (g->tensors[i].offset + g->tensors[i].n_bytes > data_end)
			data_end = g->tensors[i].offset + g->tensors[i].n_bytes;
	gguf_close(g);
	for (size_t len = 0; len < n; len++) {
		/* an exact-size copy, so ASan sees any read past the end */
		char *cut = malloc(len ? len : 1);
		int ret;

		memcpy(cut, full, len);
		e.msg[0] = 0;
		g = NULL;
		ret = gguf_open_mem(cut, len, &g, &e);
		if (len < data_end) {
			if (ret != -EBADMSG)
				fail_msg("length %zu: ret %d", len, ret);
			assert_true(e.msg[0] && !strchr(e.msg, '\n'));
		} else {
			assert_int_equal(ret, 0);
			gguf_close(g);
		}
		free(cut);
	}
	free(full);
}

/* A tiny byte builder for hand-made hostile files. */
struct bb {
	uint8_t b[8192];
	size_t n;
};

static void bb_put(struct bb *b, const void *p, size_t n)
{
	assert_true(b->n + n <= sizeof(b->b));
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void bb_u32(struct bb *b, uint32_t v)
{
	bb_put(b, &v, 4);
}

static void bb_u64(struct bb *b, uint64_t v)
{
	bb_put(b, &v, 8);
}

static void bb_str(struct bb *b, const char *s)
{
	bb_u64(b, strlen(s));
	bb_put(b, s, strlen(s));
}

static void bb_header(struct bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
	b->n = 0;
	bb_put(b, "GGUF", 4);
	bb_u32(b, version);
	bb_u64(b, n_tensors);
	bb_u64(b, n_kv);
}

static void bb_kv_u32(struct bb *b, const char *key, uint32_t v)
{
	bb_str(b, key);
	bb_u32(b, GGUF_VT_UINT32);
	bb_u32(b, v);
}

/* One 1-D tensor info. */
static void bb_tensor(struct bb *b, const char *name, uint32_t type, uint64_t ne0, uint64_t off)
{
	bb_str(b, name);
	bb_u32(b, 1);
	bb_u64(b, ne0);
	bb_u32(b, type);
	bb_u64(b, off);
}

/* Pad to 32 and append @n zero bytes of data. */
static void bb_data(struct bb *b, size_t n)
{
	static const uint8_t zeros[4096];

	while (b->n % 32)
		bb_put(b, zeros, 1);
	bb_put(b, zeros, n);
}

static int open_bb(const struct bb *b, struct errbuf *e)
{
	struct gguf_file *g = NULL;
	uint8_t *copy = malloc(b->n);
	int ret;

	memcpy(copy, b->b, b->n);
	e->msg[0] = 0;
	ret = gguf_open_mem(copy, b->n, &g, e);
	if (ret) {
		assert_null(g);
		assert_true(e->msg[0] != 0);
	}
	gguf_close(g);
	free(copy);
	return ret;
}

static void test_hostile_headers_and_kvs(void **state)
{
	struct bb b;
	struct errbuf e;

	bb_header(&b, 3, 0, 0);
	b.b[0] = 'X';
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	bb_header(&b, 1, 0, 0);
	assert_int_equal(open_bb(&b, &e), -EOPNOTSUPP);
	bb_header(&b, 4, 0, 0);
	assert_int_equal(open_bb(&b, &e), -EOPNOTSUPP);
	bb_header(&b, 2, 0, 0);
	assert_int_equal(open_bb(&b, &e), 0); /* v2 has the same layout */
	/* counts far beyond the file: refused before allocating */
	bb_header(&b, 3, 0, 1ull << 60);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	bb_header(&b, 3, UINT64_MAX, 0);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* key length past the end */
	bb_header(&b, 3, 0, 1);
	bb_u64(&b, 1ull << 63);
	bb_put(&b, "abcdefghijklmnop", 16);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* unknown value type */
	bb_header(&b, 3, 0, 1);
	bb_str(&b, "k");
	bb_u32(&b, 13);
	bb_u64(&b, 0);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* bool that is neither 0 nor 1 */
	bb_header(&b, 3, 0, 1);
	bb_str(&b, "k");
	bb_u32(&b, GGUF_VT_BOOL);
	bb_put(&b, "\x02", 1);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* string array claiming more strings than bytes left */
	bb_header(&b, 3, 0, 1);
	bb_str(&b, "k");
	bb_u32(&b, GGUF_VT_ARRAY);
	bb_u32(&b, GGUF_VT_STRING);
	bb_u64(&b, 1ull << 40);
	bb_str(&b, "a");
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* numeric array overflowing n * size */
	bb_header(&b, 3, 0, 1);
	bb_str(&b, "k");
	bb_u32(&b, GGUF_VT_ARRAY);
	bb_u32(&b, GGUF_VT_UINT64);
	bb_u64(&b, 1ull << 61);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* unknown array element type */
	bb_header(&b, 3, 0, 1);
	bb_str(&b, "k");
	bb_u32(&b, GGUF_VT_ARRAY);
	bb_u32(&b, 77);
	bb_u64(&b, 0);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* duplicate key, and a key with a NUL inside */
	bb_header(&b, 3, 0, 2);
	bb_kv_u32(&b, "k", 1);
	bb_kv_u32(&b, "k", 2);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	assert_non_null(strstr(e.msg, "duplicate"));
	bb_header(&b, 3, 0, 1);
	bb_u64(&b, 3);
	bb_put(&b, "a\0b", 3);
	bb_u32(&b, GGUF_VT_UINT8);
	bb_put(&b, "\x01", 1);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
}

static void test_arrays_of_arrays_are_validated_and_skipped(void **state)
{
	struct gguf_file *g = NULL;
	const struct gguf_kv *kv;
	struct errbuf e;
	struct bb b;
	uint32_t v;

	/* [[1, 2], ["x"]] then a normal kv that must still be read correctly */
	bb_header(&b, 3, 0, 2);
	bb_str(&b, "nested");
	bb_u32(&b, GGUF_VT_ARRAY);
	bb_u32(&b, GGUF_VT_ARRAY);
	bb_u64(&b, 2);
	bb_u32(&b, GGUF_VT_UINT16);
	bb_u64(&b, 2);
	bb_put(&b, "\x01\x00\x02\x00", 4);
	bb_u32(&b, GGUF_VT_STRING);
	bb_u64(&b, 1);
	bb_str(&b, "x");
	bb_kv_u32(&b, "after", 7);
	assert_int_equal(gguf_open_mem(b.b, b.n, &g, &e), 0);
	kv = gguf_find_kv(g, "nested");
	assert_non_null(kv);
	assert_int_equal(kv->type, GGUF_VT_ARRAY);
	assert_int_equal(kv->arr_type, GGUF_VT_ARRAY);
	assert_int_equal(kv->n, 2);
	assert_null(kv->data);
	assert_true(isnan(gguf_arr_num(kv, 0)));
	assert_int_equal(gguf_get_u32(g, "after", &v), 0);
	assert_int_equal(v, 7);
	gguf_close(g);
	/* an inner string running past the end */
	b.n -= (8 + 1) + (8 + 5 + 4 + 4); /* drop "x" and the kv after it */
	bb_u64(&b, 100);
	bb_put(&b, "x", 1);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* nesting deeper than any model needs */
	bb_header(&b, 3, 0, 1);
	bb_str(&b, "deep");
	bb_u32(&b, GGUF_VT_ARRAY);
	for (int i = 0; i < 40; i++) {
		bb_u32(&b, GGUF_VT_ARRAY);
		bb_u64(&b, 1);
	}
	bb_u32(&b, GGUF_VT_UINT8);
	bb_u64(&b, 0);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
}

static void test_hostile_tensor_infos(void **state)
{
	struct bb b;
	struct errbuf e;

	/* control: one valid F32 tensor of 8 elements */
	bb_header(&b, 3, 1, 0);
	bb_tensor(&b, "t", GGML_TYPE_F32, 8, 0);
	bb_data(&b, 32);
	assert_int_equal(open_bb(&b, &e), 0);
	/* data one byte short */
	b.n--;
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* offset past the end, and offset + size wrapping around */
	bb_header(&b, 3, 1, 0);
	bb_tensor(&b, "t", GGML_TYPE_F32, 8, 1ull << 40);
	bb_data(&b, 32);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	bb_header(&b, 3, 1, 0);
	bb_tensor(&b, "t", GGML_TYPE_F32, 8, UINT64_MAX - 31);
	bb_data(&b, 32);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* misaligned offset */
	bb_header(&b, 3, 1, 0);
	bb_tensor(&b, "t", GGML_TYPE_F32, 1, 4);
	bb_data(&b, 64);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* unknown types */
	bb_header(&b, 3, 1, 0);
	bb_tensor(&b, "t", 4, 32, 0);
	bb_data(&b, 64);
	assert_int_equal(open_bb(&b, &e), -EOPNOTSUPP);
	bb_header(&b, 3, 1, 0);
	bb_tensor(&b, "t", 0xffffffffu, 32, 0);
	bb_data(&b, 64);
	assert_int_equal(open_bb(&b, &e), -EOPNOTSUPP);
	/* row not a whole number of blocks */
	bb_header(&b, 3, 1, 0);
	bb_tensor(&b, "t", GGML_TYPE_Q8_0, 31, 0);
	bb_data(&b, 64);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* duplicate tensor names */
	bb_header(&b, 3, 2, 0);
	bb_tensor(&b, "t", GGML_TYPE_F32, 1, 0);
	bb_tensor(&b, "t", GGML_TYPE_F32, 1, 32);
	bb_data(&b, 64);
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* n_dims 0 and 5 */
	for (uint32_t nd = 0; nd <= 5; nd += 5) {
		bb_header(&b, 3, 1, 0);
		bb_str(&b, "t");
		bb_u32(&b, nd);
		for (uint32_t d = 0; d < nd; d++)
			bb_u64(&b, 1);
		bb_u32(&b, GGML_TYPE_F32);
		bb_u64(&b, 0);
		bb_data(&b, 64);
		assert_int_equal(open_bb(&b, &e), -EBADMSG);
	}
	/* element count overflow */
	bb_header(&b, 3, 1, 0);
	bb_str(&b, "t");
	bb_u32(&b, 2);
	bb_u64(&b, 1ull << 40);
	bb_u64(&b, 1ull << 40);
	bb_u32(&b, GGML_TYPE_F32);
	bb_u64(&b, 0);
	bb_data(&b, 64);
	assert_int_equal(open_bb(&b, &e), -EOVERFLOW);
	/* byte count overflow with a fitting element count */
	bb_header(&b, 3, 1, 0);
	bb_tensor(&b, "t", GGML_TYPE_F64, 1ull << 62, 0);
	bb_data(&b, 64);
	assert_int_equal(open_bb(&b, &e), -EOVERFLOW);
}

static void test_alignment_must_be_a_power_of_two(void **state)
{
	struct gguf_file *g = NULL;
	struct bb b;
	struct errbuf e;
	uint32_t bad[] = { 0, 3, 48, 0x80000000u };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bb_header(&b, 3, 0, 1);
		bb_kv_u32(&b, "general.alignment", bad[i]);
		assert_int_equal(open_bb(&b, &e), -EBADMSG);
	}
	bb_header(&b, 3, 0, 1);
	bb_str(&b, "general.alignment");
	bb_u32(&b, GGUF_VT_STRING);
	bb_str(&b, "64");
	assert_int_equal(open_bb(&b, &e), -EBADMSG);
	/* a valid custom alignment moves the data section */
	bb_header(&b, 3, 1, 1);
	bb_kv_u32(&b, "general.alignment", 256);
	bb_tensor(&b, "t", GGML_TYPE_F32, 1, 0);
	while (b.n % 256)
		bb_put(&b, "", 1);
	bb_put(&b, "\0\0\x80\x3f", 4);
	assert_int_equal(gguf_open_mem(b.b, b.n, &g, &e), 0);
	assert_int_equal(g->alignment, 256);
	assert_int_equal(g->data_offset, 256);
	assert_true(*(const float *)g->tensors[0].data == 1.0f);
	gguf_close(g);
}

int test_gguf_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_model_matches_gguf_py),
		cmocka_unit_test(test_typed_getters_convert_and_refuse),
		cmocka_unit_test(test_open_missing_and_not_gguf),
		cmocka_unit_test(test_every_truncation_is_an_error),
		cmocka_unit_test(test_hostile_headers_and_kvs),
		cmocka_unit_test(test_arrays_of_arrays_are_validated_and_skipped),
		cmocka_unit_test(test_hostile_tensor_infos),
		cmocka_unit_test(test_alignment_must_be_a_power_of_two),
	};
	return cmocka_run_group_tests_name("engine/gguf", tests, NULL, NULL);
}
