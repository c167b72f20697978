// SPDX-License-Identifier: MIT
/*
 * The f16 storage of calibration activations: the F16C path gives the same bits as the
 * scalar one, both round as the engine's reference conversion does, and values that do not
 * fit (|x| >= 65520 after rounding, NaN) are reported, not stored silently as Inf.
 */
#include "engine/dtype.h"
#include "reparam/internal.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define N 1003 /* not a multiple of 8: the vector loop and the tail both run */

static void fill(float *v, uint64_t seed)
{
	struct rng r;

	rng_seed(&r, seed);
	for (uint32_t i = 0; i < N; i++) {
		/* magnitudes from subnormal half (2^-24) to near the top of the range */
		double m = ldexp(1.0 + rng_uniform(&r), (int)(rng_uniform(&r) * 40) - 25);

		v[i] = (float)(rng_uniform(&r) < 0.5 ? -m : m);
	}
	v[0] = 0.0f;
	v[1] = -0.0f;
	v[2] = 65504.0f;	    /* largest half */
	v[3] = 65519.0f;	    /* rounds down to 65504 */
	v[4] = 0x1p-25f;	    /* halfway to the smallest subnormal: ties to even (0) */
	v[5] = 1.0f + 0x1p-11f;	    /* halfway between two halves: ties to even */
	v[6] = 1.0f + 3 * 0x1p-11f; /* the other tie direction */
	v[N - 1] = -65519.0f;	    /* in the scalar tail */
}

static void test_f16c_equals_scalar_and_reference(void **state)
{
	float *v = malloc(N * sizeof(float)), *back = malloc(N * sizeof(float));
	uint16_t *a = malloc(N * sizeof(uint16_t)), *b = malloc(N * sizeof(uint16_t));

	assert_true(v && back && a && b);
	for (uint64_t seed = 1; seed <= 4; seed++) {
		fill(v, seed);
		assert_true(half_from_f32(a, v, N, false));
		assert_true(half_from_f32(b, v, N, true));
		assert_memory_equal(a, b, N * sizeof(uint16_t));
		for (uint32_t i = 0; i < N; i++)
			assert_int_equal(a[i], dtype_f32_to_f16(v[i]));
		half_to_f32(back, a, N, false);
		for (uint32_t i = 0; i < N; i++) {
			assert_true(back[i] == dtype_f16_to_f32(a[i]));
			/* round to nearest: within half an ulp of half (2^-11 relative) */
			assert_true(fabsf(back[i] - v[i]) <= fabsf(v[i]) * 0x1p-11f + 0x1p-25f);
		}
		half_to_f32(back, a, N, true);
		for (uint32_t i = 0; i < N; i++)
			assert_true(back[i] == dtype_f16_to_f32(a[i]));
	}
	assert_int_equal(a[2], 0x7bff);
	assert_int_equal(a[3], 0x7bff);
	assert_int_equal(a[4], 0x0000);
	assert_int_equal(a[5], 0x3c00);
	assert_int_equal(a[6], 0x3c02);
	free(v);
	free(back);
	free(a);
	free(b);
}

static void test_overflow_and_nan_are_reported(void **state)
{
	float v[N];
	uint16_t h[N];
	const float bad[3] = { 65520.0f, -1e6f, NAN };

	for (uint32_t k = 0; k < 3; k++) {
		/* once in the vector body, once in the tail, on both paths */
		uint32_t at[2] = { 17, N - 2 };

		for (uint32_t j = 0; j < 2; j++) {
			for (uint32_t i = 0; i < N; i++)
				v[i] = 0.5f;
			v[at[j]] = bad[k];
			assert_false(half_from_f32(h, v, N, false));
			assert_false(half_from_f32(h, v, N, true));
		}
	}
}

int test_half_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_f16c_equals_scalar_and_reference),
		cmocka_unit_test(test_overflow_and_nan_are_reported),
	};
	return cmocka_run_group_tests_name("reparam/half", tests, NULL, NULL);
}
