// SPDX-License-Identifier: MIT
/*
 * Dequantizers against PyPI gguf's gguf.quants on seeded random blocks (fixture written by
 * tools/ref_loaders.py), and the f16/bf16 conversions against numpy and brute force.
 */
#include "engine/dtype.h"
#include "tests/unit/engine/loaders_util.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static float bits_f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static uint32_t f32_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

/* One "type / raw / f32" triple of quant_blocks.txt at a time. */
static void test_dequant_matches_gguf_py(void **state)
{
	size_t size;
	char *text = lu_read_file(LOADERS_FIXTURES "/quant_blocks.txt", &size);
	char *save = NULL, *line;
	int n_types = 0;

	assert_non_null(text);
	line = strtok_r(text, "\n", &save);
	while (line) {
		unsigned tid;
		char name[16];
		size_t n, raw_len;
		uint8_t *raw, *unaligned;
		float *got, *want;
		const struct dtype_info *ti;
		char *p;

		if (line[0] == '#') {
			line = strtok_r(NULL, "\n", &save);
			continue;
		}
		assert_int_equal(sscanf(line, "type %u %15s %zu", &tid, name, &n), 3);
		line = strtok_r(NULL, "\n", &save);
		assert_non_null(line);
		assert_memory_equal(line, "raw ", 4);
		raw = lu_unhex(line + 4, strlen(line + 4), &raw_len);
		assert_non_null(raw);
		line = strtok_r(NULL, "\n", &save);
		assert_non_null(line);
		assert_memory_equal(line, "f32 ", 4);

		ti = dtype_info(tid);
		assert_non_null(ti);
		assert_string_equal(ti->name, name);
		assert_non_null(ti->to_f32);
		assert_int_equal(n % ti->block_elems, 0);
		assert_int_equal(n / ti->block_elems * ti->block_bytes, raw_len);

		/* unaligned source: the loaders hand out pointers into packed files */
		unaligned = malloc(raw_len + 1);
		memcpy(unaligned + 1, raw, raw_len);
		got = calloc(n, sizeof(float));
		want = calloc(n, sizeof(float));
		p = line + 4;
		for (size_t i = 0; i < n; i++)
			want[i] = bits_f32((uint32_t)strtoul(p, &p, 16));
		ti->to_f32(unaligned + 1, got, n);
		for (size_t i = 0; i < n; i++) {
			float tol = fabsf(want[i]) * 1e-6f + 1e-30f;

			if (!(fabsf(got[i] - want[i]) <= tol))
				fail_msg("%s element %zu: got %.9g want %.9g", name, i, got[i],
					 want[i]);
		}
		free(got);
		free(want);
		free(unaligned);
		free(raw);
		n_types++;
		line = strtok_r(NULL, "\n", &save);
	}
	assert_int_equal(n_types, 19);
	free(text);
}

/* f16 -> f32 for all 65536 patterns against the textbook formula; f32 -> f16 inverts it. */
static void test_f16_all_patterns_round_trip(void **state)
{
	for (uint32_t h = 0; h < 65536; h++) {
		int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
		double want = exp == 0 ? ldexp(mant, -24) : ldexp(1024 + mant, exp - 25);
		float got = dtype_f16_to_f32((uint16_t)h);

		if (h & 0x8000)
			want = -want;
		if (exp == 0x1f) {
			assert_true(mant ? isnan(got) : isinf(got));
			assert_true(mant ? isnan(dtype_f16_to_f32(dtype_f32_to_f16(got)))
					 : dtype_f32_to_f16(got) == h);
			continue;
		}
		assert_true((double)got == want);
		assert_int_equal(!!signbit(got), !!(h & 0x8000));
		assert_int_equal(dtype_f32_to_f16(got), h);
	}
}

/* Every midpoint between neighbouring halves rounds to the even one; a hair off, to the nearer. */
static void test_f16_midpoints_round_to_even(void **state)
{
	for (uint32_t h = 0; h < 0x7bff; h++) {
		float lo = dtype_f16_to_f32((uint16_t)h), hi = dtype_f16_to_f32((uint16_t)(h + 1));
		float mid = (float)(((double)lo + (double)hi) / 2); /* exact: 12 significant bits */
		uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;

		assert_int_equal(dtype_f32_to_f16(mid), even);
		assert_int_equal(dtype_f32_to_f16(nextafterf(mid, 0)), h);
		assert_int_equal(dtype_f32_to_f16(nextafterf(mid, INFINITY)), h + 1);
		assert_int_equal(dtype_f32_to_f16(-mid), even | 0x8000);
	}
	/* past the largest half's upper midpoint: infinity */
	assert_int_equal(dtype_f32_to_f16(65520.0f), 0x7c00);
	assert_int_equal(dtype_f32_to_f16(nextafterf(65520.0f, 0)), 0x7bff);
	assert_int_equal(dtype_f32_to_f16(1e10f), 0x7c00);
	assert_int_equal(dtype_f32_to_f16(-1e-10f), 0x8000);
}

/* numpy's astype(float16) and an integer bf16 rounding on awkward values (f16_cases.txt). */
static void test_f16_bf16_match_numpy(void **state)
{
	size_t size;
	char *text = lu_read_file(LOADERS_FIXTURES "/f16_cases.txt", &size);
	char *save = NULL, *line;
	int n = 0;

	assert_non_null(text);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned x, h, b;

		if (line[0] == '#')
			continue;
		assert_int_equal(sscanf(line, "%x %x %x", &x, &h, &b), 3);
		assert_int_equal(dtype_f32_to_f16(bits_f32(x)), h);
		assert_int_equal(dtype_f32_to_bf16(bits_f32(x)), b);
		n++;
	}
	assert_true(n >= 200);
	free(text);
}

static void test_bf16_round_trip_and_nan(void **state)
{
	for (uint32_t b = 0; b < 65536; b++) {
		float f = dtype_bf16_to_f32((uint16_t)b);

		assert_int_equal(f32_bits(f), b << 16);
		if (isnan(f))
			assert_true(isnan(dtype_bf16_to_f32(dtype_f32_to_bf16(f))));
		else
			assert_int_equal(dtype_f32_to_bf16(f), b);
	}
	/* a NaN whose payload sits only in the dropped bits must stay NaN */
	assert_true(isnan(dtype_bf16_to_f32(dtype_f32_to_bf16(bits_f32(0x7f800001)))));
	assert_true(isnan(dtype_f16_to_f32(dtype_f32_to_f16(bits_f32(0x7f800001)))));
	/* ties to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 */
	assert_int_equal(dtype_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
	assert_int_equal(dtype_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
}

/*
 * The Q5_0 quantizer, read back by the GGUF dequantizer (checked against PyPI gguf above):
 * values on a block's grid come back exactly; random blocks come back within half a step,
 * or one step for values clamped at the top of the range; bad input is refused.
 */
static void test_q5_0_quantizer(void **state)
{
	const struct dtype_info *di = dtype_info(GGML_TYPE_Q5_0);
	float x[4 * 32], y[4 * 32], nan_x[32] = { 0 }, big[32] = { 0 };
	uint8_t q[4 * 22];
	uint64_t seed = 5;

	/* on the grid: d = 2^-4, the block's largest magnitude a value of -16 steps */
	for (int j = 0; j < 32; j++)
		x[j] = (float)((j * 7) % 32 - 16) * 0x1p-4f;
	assert_int_equal(dtype_quantize_q5_0(x, q, 32), 0);
	di->to_f32(q, y, 32);
	assert_memory_equal(x, y, 32 * sizeof(float));
	/* random blocks over scales 2^-10..2^6, and an all-zero block */
	for (int trial = 0; trial < 200; trial++) {
		for (int i = 0; i < 4 * 32; i++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			x[i] = (float)ldexp((double)(seed >> 11) / 9007199254740992.0 - 0.5,
					    (int)(seed % 17) - 10);
		}
		memset(x + 3 * 32, 0, 32 * sizeof(float));
		assert_int_equal(dtype_quantize_q5_0(x, q, 4 * 32), 0);
		di->to_f32(q, y, 4 * 32);
		for (int b = 0; b < 4; b++) {
			float vmax = 0, d;

			for (int j = 0; j < 32; j++)
				vmax = fabsf(x[b * 32 + j]) > fabsf(vmax) ? x[b * 32 + j] : vmax;
			d = fabsf(vmax) / 16;
			for (int j = 0; j < 32; j++) {
				float xi = x[b * 32 + j], err = fabsf(y[b * 32 + j] - xi);
				/* the top of the range is 15 steps on the side opposite vmax */
				bool clamped = xi * (vmax < 0 ? 1 : -1) > 15.5f * d;

				assert_true(err <= (clamped ? 1.0f : 0.5f) * d * 1.002f);
			}
		}
	}
	assert_int_equal(dtype_quantize_q5_0(x, q, 33), -EINVAL);
	nan_x[7] = NAN;
	assert_int_equal(dtype_quantize_q5_0(nan_x, q, 32), -EINVAL);
	big[3] = 2e6f; /* a scale of 125000 does not fit f16 */
	assert_int_equal(dtype_quantize_q5_0(big, q, 32), -ERANGE);
}

static void test_row_bytes_and_info(void **state)
{
	uint64_t n;

	assert_int_equal(dtype_row_bytes(GGML_TYPE_Q4_K, 512, &n), 0);
	assert_int_equal(n, 288);
	assert_int_equal(dtype_row_bytes(GGML_TYPE_Q4_1, 576, &n), 0);
	assert_int_equal(n, 360);
	assert_int_equal(dtype_row_bytes(GGML_TYPE_F32, 3, &n), 0);
	assert_int_equal(n, 12);
	assert_int_equal(dtype_row_bytes(GGML_TYPE_Q4_K, 100, &n), -EBADMSG);
	assert_int_equal(dtype_row_bytes(4, 32, &n), -EOPNOTSUPP);
	assert_int_equal(dtype_row_bytes(GGML_TYPE_COUNT, 32, &n), -EOPNOTSUPP);
	assert_int_equal(dtype_row_bytes(UINT32_MAX, 32, &n), -EOPNOTSUPP);
	assert_int_equal(dtype_row_bytes(GGML_TYPE_F32, UINT64_MAX / 2, &n), -EOVERFLOW);
	assert_null(dtype_info(4));
	assert_null(dtype_info(GGML_TYPE_COUNT));
	assert_string_equal(dtype_info(GGML_TYPE_Q6_K)->name, "Q6_K");
	assert_int_equal(dtype_info(GGML_TYPE_Q6_K)->block_bytes, 210);
}

int test_dtype_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dequant_matches_gguf_py),
		cmocka_unit_test(test_f16_all_patterns_round_trip),
		cmocka_unit_test(test_f16_midpoints_round_to_even),
		cmocka_unit_test(test_f16_bf16_match_numpy),
		cmocka_unit_test(test_bf16_round_trip_and_nan),
		cmocka_unit_test(test_row_bytes_and_info),
		cmocka_unit_test(test_q5_0_quantizer),
	};
	return cmocka_run_group_tests_name("engine/dtype", tests, NULL, NULL);
}
