// SPDX-License-Identifier: MIT
/*
 * GGUF writer: byte-identical to PyPI gguf's GGUFWriter on the same content (fixture
 * pywriter.gguf from tools/ref_loaders.py), the reader reads that independent file back value by
 * value, every value type round-trips, and writes are atomic.
 */
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "tests/unit/engine/loaders_util.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#define PYWRITER LOADERS_FIXTURES "/pywriter.gguf"

struct content {
	float f32[24];
	uint16_t f16[10];
	uint8_t q8_0[68];
	uint8_t q4_k[144];
	int8_t i8[7];
};

static void make_content(struct content *c)
{
	for (int i = 0; i < 24; i++)
		c->f32[i] = (float)i * 0.25f - 3;
	for (int i = 0; i < 10; i++)
		c->f16[i] = dtype_f32_to_f16((float)i - 4.5f);
	for (int i = 0; i < 68; i++)
		c->q8_0[i] = (uint8_t)(i * 7 + 3);
	for (int i = 0; i < 144; i++)
		c->q4_k[i] = (uint8_t)(i * 13 + 5);
	for (int i = 0; i < 7; i++)
		c->i8[i] = (int8_t)(i - 3);
}

/* The same content tools/ref_loaders.py gives GGUFWriter, in the same order. */
static struct gguf_writer *build_pywriter_twin(const struct content *c)
{
	struct gguf_writer *w = gguf_writer_new();
	uint8_t u8 = 200, au8[] = { 0, 1, 255 }, ab[] = { 1, 0, 1 };
	int8_t i8 = -100, ai8[] = { -128, 0, 127 };
	uint16_t u16 = 60000, au16[] = { 1, 65535 };
	int16_t i16 = -30000, ai16[] = { -32768, 5 };
	uint32_t au32[] = { 7, 4294967295u };
	int32_t ai32[] = { -1, 2, -3 };
	float af32[] = { 0.5f, -1.25f, 3e38f };
	uint64_t au64[] = { UINT64_MAX, 0 };
	int64_t i64 = -9000000000000000000ll, ai64[] = { INT64_MIN, INT64_MAX };
	double f64 = -2.5e300, af64[] = { 1e-300, -0.0 };
	const char *strs[] = { "a", "", "\xc4\xa0the", "<|im_end|>" };
	const char *s = "h\xc3\xa9llo \xe2\x96\x81world";
	uint64_t ne_f32[] = { 4, 3, 2 }, ne_f16[] = { 10 }, ne_q8[] = { 32, 2 },
		 ne_q4k[] = { 256, 1 }, ne_i8[] = { 7 };

	assert_non_null(w);
	assert_int_equal(gguf_writer_add_str(w, "general.architecture", "llama", 5), 0);
	assert_int_equal(gguf_writer_set_alignment(w, 64), 0);
	assert_int_equal(gguf_writer_add_scalar(w, "t.u8", GGUF_VT_UINT8, &u8), 0);
	assert_int_equal(gguf_writer_add_scalar(w, "t.i8", GGUF_VT_INT8, &i8), 0);
	assert_int_equal(gguf_writer_add_scalar(w, "t.u16", GGUF_VT_UINT16, &u16), 0);
	assert_int_equal(gguf_writer_add_scalar(w, "t.i16", GGUF_VT_INT16, &i16), 0);
	assert_int_equal(gguf_writer_add_u32(w, "t.u32", 4000000000u), 0);
	assert_int_equal(gguf_writer_add_i32(w, "t.i32", -2000000000), 0);
	assert_int_equal(gguf_writer_add_f32(w, "t.f32", 0.1f), 0);
	assert_int_equal(gguf_writer_add_bool(w, "t.bool", true), 0);
	assert_int_equal(gguf_writer_add_str(w, "t.str", s, strlen(s)), 0);
	assert_int_equal(gguf_writer_add_u64(w, "t.u64", 18000000000000000000ull), 0);
	assert_int_equal(gguf_writer_add_scalar(w, "t.i64", GGUF_VT_INT64, &i64), 0);
	assert_int_equal(gguf_writer_add_scalar(w, "t.f64", GGUF_VT_FLOAT64, &f64), 0);
	assert_int_equal(gguf_writer_add_str(w, "t.empty_str", "", 0), 0);
	assert_int_equal(gguf_writer_add_arr(w, "a.u8", GGUF_VT_UINT8, au8, 3), 0);
	assert_int_equal(gguf_writer_add_arr(w, "a.i8", GGUF_VT_INT8, ai8, 3), 0);
	assert_int_equal(gguf_writer_add_arr(w, "a.u16", GGUF_VT_UINT16, au16, 2), 0);
	assert_int_equal(gguf_writer_add_arr(w, "a.i16", GGUF_VT_INT16, ai16, 2), 0);
	assert_int_equal(gguf_writer_add_arr(w, "a.u32", GGUF_VT_UINT32, au32, 2), 0);
	assert_int_equal(gguf_writer_add_arr(w, "a.i32", GGUF_VT_INT32, ai32, 3), 0);
	assert_int_equal(gguf_writer_add_arr(w, "a.f32", GGUF_VT_FLOAT32, af32, 3), 0);
	assert_int_equal(gguf_writer_add_arr(w, "a.bool", GGUF_VT_BOOL, ab, 3), 0);
	assert_int_equal(gguf_writer_add_arr(w, "a.u64", GGUF_VT_UINT64, au64, 2), 0);
	assert_int_equal(gguf_writer_add_arr(w, "a.i64", GGUF_VT_INT64, ai64, 2), 0);
	assert_int_equal(gguf_writer_add_arr(w, "a.f64", GGUF_VT_FLOAT64, af64, 2), 0);
	assert_int_equal(gguf_writer_add_str_arr(w, "a.str", strs, NULL, 4), 0);
	assert_int_equal(
		gguf_writer_add_tensor(w, "f32", GGML_TYPE_F32, 3, ne_f32, c->f32, sizeof(c->f32)),
		0);
	assert_int_equal(
		gguf_writer_add_tensor(w, "f16", GGML_TYPE_F16, 1, ne_f16, c->f16, sizeof(c->f16)),
		0);
	assert_int_equal(gguf_writer_add_tensor(w, "q8_0", GGML_TYPE_Q8_0, 2, ne_q8, c->q8_0,
						sizeof(c->q8_0)),
			 0);
	assert_int_equal(gguf_writer_add_tensor(w, "q4_k", GGML_TYPE_Q4_K, 2, ne_q4k, c->q4_k,
						sizeof(c->q4_k)),
			 0);
	assert_int_equal(
		gguf_writer_add_tensor(w, "i8", GGML_TYPE_I8, 1, ne_i8, c->i8, sizeof(c->i8)), 0);
	return w;
}

static void test_output_identical_to_gguf_py_writer(void **state)
{
	struct content c;
	struct gguf_writer *w;
	void *buf;
	size_t n, want_n;
	char *want = lu_read_file(PYWRITER, &want_n);

	assert_non_null(want);
	make_content(&c);
	w = build_pywriter_twin(&c);
	assert_int_equal(gguf_writer_write_mem(w, &buf, &n), 0);
	assert_int_equal(n, want_n);
	assert_memory_equal(buf, want, n);
	free(buf);
	free(want);
	gguf_writer_free(w);
}

static void check_arr(const struct gguf_file *g, const char *key, enum gguf_vtype t,
		      const double *want, uint64_t n)
{
	const struct gguf_kv *kv;

	assert_int_equal(gguf_get_arr(g, key, t, &kv), 0);
	assert_int_equal(kv->n, n);
	for (uint64_t i = 0; i < n; i++)
		assert_true(gguf_arr_num(kv, i) == want[i]);
}

/* Read GGUFWriter's file (not ours) and check every value; also run on our own output. */
static void check_pywriter_content(const struct gguf_file *g)
{
	static const double au8[] = { 0, 1, 255 }, ai8[] = { -128, 0, 127 }, au16[] = { 1, 65535 },
			    ai16[] = { -32768, 5 }, au32[] = { 7, 4294967295.0 },
			    ai32[] = { -1, 2, -3 }, af32[] = { 0.5, -1.25, (double)3e38f },
			    ab[] = { 1, 0, 1 }, au64[] = { 18446744073709551615.0, 0 },
			    ai64[] = { -9223372036854775808.0, 9223372036854775807.0 },
			    af64[] = { 1e-300, -0.0 };
	const char *strs[] = { "a", "", "\xc4\xa0the", "<|im_end|>" };
	struct content c;
	const struct gguf_kv *kv;
	const struct gguf_str *ss;
	const char *s;
	size_t len;
	uint32_t u32;
	uint64_t u64;
	int64_t i64;
	float f;
	bool b;
	float out[256];

	make_content(&c);
	assert_int_equal(g->version, 3);
	assert_int_equal(g->n_kv, 27);
	assert_int_equal(g->n_tensors, 5);
	assert_int_equal(g->alignment, 64);
	assert_int_equal(g->data_offset % 64, 0);
	assert_int_equal(gguf_get_str(g, "general.architecture", &s, &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(s, "llama", 5);
	assert_int_equal(gguf_get_u32(g, "t.u8", &u32), 0);
	assert_int_equal(u32, 200);
	assert_int_equal(gguf_get_i64(g, "t.i8", &i64), 0);
	assert_int_equal(i64, -100);
	assert_int_equal(gguf_get_u32(g, "t.i8", &u32), -EBADMSG); /* negative into unsigned */
	assert_int_equal(gguf_get_u32(g, "t.u16", &u32), 0);
	assert_int_equal(u32, 60000);
	assert_int_equal(gguf_get_i64(g, "t.i16", &i64), 0);
	assert_int_equal(i64, -30000);
	assert_int_equal(gguf_get_u32(g, "t.u32", &u32), 0);
	assert_int_equal(u32, 4000000000u);
	assert_int_equal(gguf_get_i64(g, "t.i32", &i64), 0);
	assert_int_equal(i64, -2000000000);
	assert_int_equal(gguf_get_f32(g, "t.f32", &f), 0);
	assert_true(f == 0.1f);
	assert_int_equal(gguf_get_bool(g, "t.bool", &b), 0);
	assert_true(b);
	assert_int_equal(gguf_get_str(g, "t.str", &s, &len), 0);
	assert_int_equal(len, strlen("h\xc3\xa9llo \xe2\x96\x81world"));
	assert_memory_equal(s, "h\xc3\xa9llo \xe2\x96\x81world", len);
	assert_int_equal(gguf_get_u64(g, "t.u64", &u64), 0);
	assert_true(u64 == 18000000000000000000ull);
	assert_int_equal(gguf_get_u32(g, "t.u64", &u32), -EBADMSG); /* out of range */
	assert_int_equal(gguf_get_i64(g, "t.u64", &i64), -EBADMSG);
	assert_int_equal(gguf_get_i64(g, "t.i64", &i64), 0);
	assert_true(i64 == -9000000000000000000ll);
	assert_int_equal(gguf_get_f32(g, "t.f64", &f), 0);
	assert_true(isinf(f) && f < 0); /* -2.5e300 does not fit a float */
	assert_int_equal(gguf_get_str(g, "t.empty_str", &s, &len), 0);
	assert_int_equal(len, 0);
	check_arr(g, "a.u8", GGUF_VT_UINT8, au8, 3);
	check_arr(g, "a.i8", GGUF_VT_INT8, ai8, 3);
	check_arr(g, "a.u16", GGUF_VT_UINT16, au16, 2);
	check_arr(g, "a.i16", GGUF_VT_INT16, ai16, 2);
	check_arr(g, "a.u32", GGUF_VT_UINT32, au32, 2);
	check_arr(g, "a.i32", GGUF_VT_INT32, ai32, 3);
	check_arr(g, "a.f32", GGUF_VT_FLOAT32, af32, 3);
	check_arr(g, "a.bool", GGUF_VT_BOOL, ab, 3);
	check_arr(g, "a.u64", GGUF_VT_UINT64, au64, 2);
	check_arr(g, "a.i64", GGUF_VT_INT64, ai64, 2);
	check_arr(g, "a.f64", GGUF_VT_FLOAT64, af64, 2);
	assert_int_equal(gguf_get_arr(g, "a.str", GGUF_VT_STRING, &kv), 0);
	assert_int_equal(kv->n, 4);
	ss = kv->data;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(ss[i].len, strlen(strs[i]));
		assert_memory_equal(ss[i].data, strs[i], ss[i].len);
	}

	const struct gguf_tensor *t = gguf_find_tensor(g, "f32");
	assert_non_null(t);
	assert_int_equal(t->n_dims, 3);
	assert_int_equal(t->ne[0], 4);
	assert_int_equal(t->ne[1], 3);
	assert_int_equal(t->ne[2], 2);
	assert_int_equal(t->ne[3], 1);
	assert_int_equal(t->offset % 64, 0);
	assert_int_equal(gguf_tensor_to_f32(t, out), 0);
	assert_memory_equal(out, c.f32, sizeof(c.f32));
	t = gguf_find_tensor(g, "f16");
	assert_non_null(t);
	assert_int_equal(gguf_tensor_to_f32(t, out), 0);
	for (int i = 0; i < 10; i++)
		assert_true(out[i] == (float)i - 4.5f);
	t = gguf_find_tensor(g, "q8_0");
	assert_non_null(t);
	assert_int_equal(t->type, GGML_TYPE_Q8_0);
	assert_int_equal(t->ne[0], 32);
	assert_int_equal(t->ne[1], 2);
	assert_memory_equal(t->data, c.q8_0, sizeof(c.q8_0));
	t = gguf_find_tensor(g, "q4_k");
	assert_non_null(t);
	assert_int_equal(t->n_bytes, 144);
	assert_memory_equal(t->data, c.q4_k, sizeof(c.q4_k));
	t = gguf_find_tensor(g, "i8");
	assert_non_null(t);
	assert_int_equal(gguf_tensor_to_f32(t, out), 0);
	for (int i = 0; i < 7; i++)
		assert_true(out[i] == (float)(i - 3));
}

static void test_reader_reads_gguf_py_writer_file(void **state)
{
	struct gguf_file *g = NULL;
	struct errbuf e = { { 0 } };
	int ret = gguf_open(PYWRITER, &g, &e);

	if (ret)
		fail_msg("%s: %s", PYWRITER, errbuf_str(&e, ret));
	check_pywriter_content(g);
	gguf_close(g);
}

static void test_write_to_path_round_trips(void **state)
{
	struct content c;
	struct gguf_writer *w;
	struct gguf_file *g = NULL;
	char *dir = lu_mkdtemp(), *path;
	DIR *d;
	struct dirent *de;
	int n_entries = 0;

	assert_non_null(dir);
	assert_true(asprintf(&path, "%s/model.gguf", dir) > 0);
	make_content(&c);
	w = build_pywriter_twin(&c);
	assert_int_equal(gguf_writer_write(w, path), 0);
	/* writing again replaces the file in one step */
	assert_int_equal(gguf_writer_write(w, path), 0);
	assert_int_equal(gguf_open(path, &g, NULL), 0);
	check_pywriter_content(g);
	gguf_close(g);
	/* no temp file is left behind */
	d = opendir(dir);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n_entries++;
	closedir(d);
	assert_int_equal(n_entries, 1);
	assert_int_equal(gguf_writer_write(w, "/nonexistent-dir/x.gguf"), -ENOENT);
	gguf_writer_free(w);
	lu_rmtree(dir);
	free(dir);
	free(path);
}

/*
 * A write that fails part-way (here: the file size limit, as a full disk would) leaves the old
 * destination intact and no temp file.
 */
static void test_interrupted_write_leaves_old_file(void **state)
{
	struct gguf_writer *w = gguf_writer_new(), *small = gguf_writer_new();
	char *dir = lu_mkdtemp(), *path;
	struct rlimit old, lim;
	void (*old_handler)(int);
	static float big[1 << 16];
	uint64_t ne[] = { 1 << 16 };
	size_t n_old;
	char *before, *after;
	DIR *d;
	struct dirent *de;
	int n_entries = 0, ret;

	assert_true(asprintf(&path, "%s/m.gguf", dir) > 0);
	assert_int_equal(gguf_writer_add_u32(small, "x", 1), 0);
	assert_int_equal(gguf_writer_write(small, path), 0);
	before = lu_read_file(path, &n_old);
	assert_int_equal(gguf_writer_add_tensor(w, "big", GGML_TYPE_F32, 1, ne, big, sizeof(big)),
			 0);

	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 100000; /* smaller than the 256 KiB tensor */
	old_handler = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	ret = gguf_writer_write(w, path);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_handler);
	assert_int_equal(ret, -EFBIG);

	after = lu_read_file(path, &n_old);
	assert_non_null(after);
	assert_memory_equal(before, after, n_old);
	d = opendir(dir);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n_entries++;
	closedir(d);
	assert_int_equal(n_entries, 1);
	free(before);
	free(after);
	gguf_writer_free(w);
	gguf_writer_free(small);
	lu_rmtree(dir);
	free(dir);
	free(path);
}

static void test_writer_refuses_bad_arguments(void **state)
{
	struct gguf_writer *w = gguf_writer_new();
	uint8_t two = 2, raw[40] = { 0 };
	uint64_t ne[] = { 32 }, ne_bad[] = { 31 }, ne_5[] = { 1, 1, 1, 1, 1 };
	const char *s = "x";

	assert_int_equal(gguf_writer_add_u32(w, "k", 1), 0);
	assert_int_equal(gguf_writer_add_u32(w, "k", 2), -EEXIST);
	assert_int_equal(gguf_writer_add_str_arr(w, "k", &s, NULL, 1), -EEXIST);
	assert_int_equal(gguf_writer_add_u32(w, "general.alignment", 64), -EINVAL);
	assert_int_equal(gguf_writer_set_alignment(w, 48), -EINVAL);
	assert_int_equal(gguf_writer_set_alignment(w, 0), -EINVAL);
	assert_int_equal(gguf_writer_add_scalar(w, "b", GGUF_VT_BOOL, &two), -EINVAL);
	assert_int_equal(gguf_writer_add_scalar(w, "s", GGUF_VT_STRING, s), -EINVAL);
	assert_int_equal(gguf_writer_add_arr(w, "a", GGUF_VT_ARRAY, raw, 1), -EINVAL);
	assert_int_equal(gguf_writer_add_tensor(w, "t", GGML_TYPE_Q8_0, 1, ne, raw, 34), 0);
	assert_int_equal(gguf_writer_add_tensor(w, "t", GGML_TYPE_Q8_0, 1, ne, raw, 34), -EEXIST);
	assert_int_equal(gguf_writer_add_tensor(w, "u", GGML_TYPE_Q8_0, 1, ne, raw, 33), -EINVAL);
	assert_int_equal(gguf_writer_add_tensor(w, "u", GGML_TYPE_Q8_0, 1, ne_bad, raw, 34),
			 -EINVAL);
	assert_int_equal(gguf_writer_add_tensor(w, "u", 4, 1, ne, raw, 34), -EINVAL);
	assert_int_equal(gguf_writer_add_tensor(w, "u", GGML_TYPE_I8, 5, ne_5, raw, 1), -EINVAL);
	assert_int_equal(gguf_writer_add_tensor(w, "u", GGML_TYPE_I8, 0, ne_5, raw, 1), -EINVAL);
	gguf_writer_free(w);
	gguf_writer_free(NULL);
}

/* An empty writer gives a valid file with no kv and no tensors. */
static void test_empty_file_round_trips(void **state)
{
	struct gguf_writer *w = gguf_writer_new();
	struct gguf_file *g = NULL;
	void *buf;
	size_t n;

	assert_int_equal(gguf_writer_write_mem(w, &buf, &n), 0);
	assert_int_equal(n, 32); /* header, padded to the data section */
	assert_int_equal(gguf_open_mem(buf, n, &g, NULL), 0);
	assert_int_equal(g->n_kv, 0);
	assert_int_equal(g->n_tensors, 0);
	gguf_close(g);
	free(buf);
	gguf_writer_free(w);
}

/* Reader -> writer on the real model reproduces the llama.cpp-written file byte for byte. */
static void test_rewrite_real_model_is_byte_identical(void **state)
{
	struct gguf_file *g = NULL;
	struct gguf_writer *w;
	void *buf;
	size_t n;

	if (access(LOADERS_MODEL, R_OK))
		fail_msg("%s is missing: run 'make model'", LOADERS_MODEL);
	assert_int_equal(gguf_open(LOADERS_MODEL, &g, NULL), 0);
	w = gguf_writer_new();
	if (g->alignment != 32)
		assert_int_equal(gguf_writer_set_alignment(w, (uint32_t)g->alignment), 0);
	for (uint64_t i = 0; i < g->n_kv; i++) {
		const struct gguf_kv *kv = &g->kv[i];
		const struct gguf_str *ss = kv->data;

		if (kv->type == GGUF_VT_STRING) {
			assert_int_equal(gguf_writer_add_str(w, kv->key, ss->data, ss->len), 0);
		} else if (kv->type == GGUF_VT_ARRAY && kv->arr_type == GGUF_VT_STRING) {
			const char **p = malloc(kv->n * sizeof(*p));
			size_t *l = malloc(kv->n * sizeof(*l));

			for (uint64_t j = 0; j < kv->n; j++) {
				p[j] = ss[j].data;
				l[j] = ss[j].len;
			}
			assert_int_equal(gguf_writer_add_str_arr(w, kv->key, p, l, kv->n), 0);
			free(p);
			free(l);
		} else if (kv->type == GGUF_VT_ARRAY) {
			assert_int_equal(
				gguf_writer_add_arr(w, kv->key, kv->arr_type, kv->data, kv->n), 0);
		} else {
			assert_int_equal(gguf_writer_add_scalar(w, kv->key, kv->type, kv->data), 0);
		}
	}
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];

		assert_int_equal(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne,
							t->data, t->n_bytes),
				 0);
	}
	assert_int_equal(gguf_writer_write_mem(w, &buf, &n), 0);
	assert_int_equal(n, g->size);
	assert_true(memcmp(buf, g->base, n) == 0);
	free(buf);
	gguf_writer_free(w);
	gguf_close(g);
}

int test_gguf_write_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_output_identical_to_gguf_py_writer),
		cmocka_unit_test(test_reader_reads_gguf_py_writer_file),
		cmocka_unit_test(test_write_to_path_round_trips),
		cmocka_unit_test(test_interrupted_write_leaves_old_file),
		cmocka_unit_test(test_writer_refuses_bad_arguments),
		cmocka_unit_test(test_empty_file_round_trips),
		cmocka_unit_test(test_rewrite_real_model_is_byte_identical),
	};
	return cmocka_run_group_tests_name("engine/gguf_write", tests, NULL, NULL);
}
