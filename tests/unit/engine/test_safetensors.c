// SPDX-License-Identifier: MIT
/*
 * Safetensors reader on files written by PyPI safetensors (single and 2-shard index, from
 * tools/ref_loaders.py), expected values from torch, plus hostile headers.
 */
#include "engine/safetensors.h"
#include "tests/unit/engine/loaders_util.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ST_DIR LOADERS_FIXTURES "/st"

static float bits_f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Compare the set with st_expected.txt: names, dtypes, shapes and values. */
static void check_against_torch(const struct st_set *s)
{
	size_t size, n_lines = 0;
	char *text = lu_read_file(ST_DIR "/st_expected.txt", &size), *save = NULL, *line;

	assert_non_null(text);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char name[64], dt[8], *p;
		unsigned n_dims;
		int pos;
		const struct st_tensor *t;
		float *buf;

		if (line[0] == '#')
			continue;
		n_lines++;
		assert_int_equal(sscanf(line, "%63s %7s %u %n", name, dt, &n_dims, &pos), 3);
		t = st_find(s, name);
		assert_non_null(t);
		assert_string_equal(t->name, name);
		assert_int_equal(t->n_dims, n_dims);
		p = line + pos;
		uint64_t n = 1;
		for (unsigned d = 0; d < n_dims; d++) {
			uint64_t v = strtoull(p, &p, 10);

			assert_int_equal(t->shape[d], v);
			n *= v;
		}
		assert_int_equal(t->n_elems, n);
		p = strchr(p, ':') + 2;
		buf = calloc(n, sizeof(float));
		if (!strcmp(dt, "I64")) {
			assert_int_equal(t->dtype, ST_OTHER);
			assert_int_equal(t->n_bytes, 8 * n);
			assert_int_equal(st_tensor_to_f32(t, buf), -EOPNOTSUPP);
		} else {
			assert_int_equal(t->dtype, !strcmp(dt, "F32")	? ST_F32
						   : !strcmp(dt, "F16") ? ST_F16
									: ST_BF16);
			assert_int_equal(st_tensor_to_f32(t, buf), 0);
			for (uint64_t i = 0; i < n; i++) {
				uint32_t want = (uint32_t)strtoul(p, &p, 16);

				assert_true(buf[i] == bits_f32(want));
			}
		}
		free(buf);
	}
	assert_int_equal(n_lines, 6);
	assert_int_equal(st_n_tensors(s), 6);
	free(text);
}

static void test_single_file_matches_torch(void **state)
{
	struct st_set *s = NULL;
	struct errbuf e = { { 0 } };
	int ret = st_open(ST_DIR "/single.safetensors", &s, &e);

	if (ret)
		fail_msg("%s", errbuf_str(&e, ret));
	check_against_torch(s);
	assert_null(st_find(s, "__metadata__"));
	assert_null(st_find(s, "nope"));
	assert_non_null(st_tensor_at(s, 5));
	assert_null(st_tensor_at(s, 6));
	st_close(s);
	st_close(NULL);
}

static void test_sharded_index_and_directory(void **state)
{
	struct st_set *s = NULL;
	struct errbuf e = { { 0 } };
	int ret = st_open(ST_DIR "/sharded/model.safetensors.index.json", &s, &e);

	if (ret)
		fail_msg("%s", errbuf_str(&e, ret));
	check_against_torch(s);
	st_close(s);
	/* the directory holding the index opens the same set */
	s = NULL;
	assert_int_equal(st_open(ST_DIR "/sharded", &s, &e), 0);
	check_against_torch(s);
	st_close(s);
	/* a directory with exactly one .safetensors file */
	s = NULL;
	assert_int_equal(st_open(ST_DIR, &s, &e), 0);
	check_against_torch(s);
	st_close(s);
}

/* Index entries that lie about their shard, or escape the directory, are refused. */
static void test_hostile_index(void **state)
{
	static const char *const bad[] = {
		"{\"weight_map\": {\"a.f32\": \"../st/single.safetensors\"}}",
		"{\"weight_map\": {\"a.f32\": \"model-00002-of-00002.safetensors\"}}",
		"{\"weight_map\": {\"zzz\": \"model-00001-of-00002.safetensors\"}}",
		"{\"weight_map\": {\"a.f32\": \"missing.safetensors\"}}",
		"{\"weight_map\": {\"a.f32\": 3}}",
		"{\"weight_map\": []}",
		"{\"weight_map\": ",
		"[]",
	};
	char *dir = lu_mkdtemp(), *path, *shard;
	size_t n;
	char *bytes;

	assert_non_null(dir);
	/* the real shards next to a hand-written index */
	for (int k = 1; k <= 2; k++) {
		char src[256];

		snprintf(src, sizeof(src), ST_DIR "/sharded/model-0000%d-of-00002.safetensors", k);
		bytes = lu_read_file(src, &n);
		assert_non_null(bytes);
		assert_true(asprintf(&shard, "%s/model-0000%d-of-00002.safetensors", dir, k) > 0);
		assert_int_equal(lu_write_file(shard, bytes, n), 0);
		free(shard);
		free(bytes);
	}
	assert_true(asprintf(&path, "%s/model.safetensors.index.json", dir) > 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct st_set *s = NULL;
		struct errbuf e = { { 0 } };
		int ret;

		assert_int_equal(lu_write_file(path, bad[i], strlen(bad[i])), 0);
		ret = st_open(path, &s, &e);
		if (ret >= 0)
			fail_msg("index %zu accepted", i);
		assert_null(s);
		assert_true(e.msg[0] != 0);
	}
	lu_rmtree(dir);
	free(dir);
	free(path);
}

/* Every prefix shorter than the data end fails; never a crash. */
static void test_every_truncation_is_an_error(void **state)
{
	size_t n;
	char *full = lu_read_file(ST_DIR "/single.safetensors", &n);

	assert_non_null(full);
	for (size_t len = 0; len < n; len++) {
		char *cut = malloc(len ? len : 1);
		struct st_set *s = NULL;
		struct errbuf e = { { 0 } };

		memcpy(cut, full, len);
		assert_int_equal(st_open_mem(cut, len, &s, &e), -EBADMSG);
		assert_null(s);
		assert_true(e.msg[0] != 0);
		free(cut);
	}
	free(full);
}

/* Build "<u64 len><json><data bytes of zeros>" and open it. */
static int open_hdr(const char *json, size_t data_bytes, uint64_t fake_len)
{
	size_t jl = strlen(json), n = 8 + jl + data_bytes;
	uint8_t *buf = calloc(1, n);
	uint64_t hl = fake_len ? fake_len : jl;
	struct st_set *s = NULL;
	struct errbuf e = { { 0 } };
	int ret;

	memcpy(buf, &hl, 8);
	memcpy(buf + 8, json, jl);
	ret = st_open_mem(buf, n, &s, &e);
	if (ret)
		assert_true(e.msg[0] != 0);
	st_close(s);
	free(buf);
	return ret;
}

static void test_hostile_headers(void **state)
{
	/* control */
	assert_int_equal(
		open_hdr("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0),
		0);
	assert_int_equal(open_hdr("{}", 0, 0), 0);
	/* header length beyond the file, and beyond the 100 MB bound */
	assert_int_equal(open_hdr("{}", 0, 1000), -EBADMSG);
	assert_int_equal(open_hdr("{}", 0, UINT64_MAX), -EBADMSG);
	assert_int_equal(open_hdr("{}", 0, 200ull << 20), -EBADMSG);
	assert_int_equal(open_hdr("[1]", 0, 0), -EBADMSG);
	assert_int_equal(open_hdr("{\"t\":", 0, 0), -EBADMSG);
	assert_int_equal(open_hdr("{\"t\":1}", 0, 0), -EBADMSG);
	assert_int_equal(open_hdr("{\"t\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0),
			 -EBADMSG);
	assert_int_equal(
		open_hdr("{\"t\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0),
		-EOPNOTSUPP);
	assert_int_equal(open_hdr("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, 0),
			 -EBADMSG);
	assert_int_equal(
		open_hdr("{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0),
		-EBADMSG);
	assert_int_equal(
		open_hdr("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8,
			 0),
		-EBADMSG);
	assert_int_equal(
		open_hdr("{\"t\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
			 0),
		-EBADMSG);
	assert_int_equal(open_hdr("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],"
				  "\"data_offsets\":[0,8]}}",
				  8, 0),
			 -EOPNOTSUPP);
	/* offsets: reversed, past the end, size mismatch, huge, wrong arity */
	assert_int_equal(
		open_hdr("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, 0),
		-EBADMSG);
	assert_int_equal(
		open_hdr("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7, 0),
		-EBADMSG);
	assert_int_equal(
		open_hdr("{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16, 0),
		-EBADMSG);
	assert_int_equal(open_hdr("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],"
				  "\"data_offsets\":[0,1e300]}}",
				  8, 0),
			 -EBADMSG);
	assert_int_equal(
		open_hdr("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, 0),
		-EBADMSG);
	/* element and byte count overflow */
	assert_int_equal(open_hdr("{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,"
				  "4294967296],\"data_offsets\":[0,8]}}",
				  8, 0),
			 -EOVERFLOW);
	assert_int_equal(open_hdr("{\"t\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],"
				  "\"data_offsets\":[0,8]}}",
				  8, 0),
			 -EOVERFLOW);
	/* the same name twice */
	assert_int_equal(open_hdr("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
				  "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
				  8, 0),
			 -EBADMSG);
	/* __metadata__ is skipped whatever it holds */
	assert_int_equal(open_hdr("{\"__metadata__\":{\"format\":\"pt\",\"x\":[1,2]}}", 0, 0), 0);
}

static void test_missing_paths(void **state)
{
	struct st_set *s = NULL;
	struct errbuf e = { { 0 } };

	assert_int_equal(st_open(ST_DIR "/nope.safetensors", &s, &e), -ENOENT);
	assert_int_equal(st_open("tests/unit", &s, &e), -ENOENT);
	assert_null(s);
}

int test_safetensors_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_file_matches_torch),
		cmocka_unit_test(test_sharded_index_and_directory),
		cmocka_unit_test(test_hostile_index),
		cmocka_unit_test(test_every_truncation_is_an_error),
		cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_missing_paths),
	};
	return cmocka_run_group_tests_name("engine/safetensors", tests, NULL, NULL);
}
