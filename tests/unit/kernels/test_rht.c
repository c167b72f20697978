// SPDX-License-Identifier: MIT
/*
 * Randomized Hadamard transform tests (issue 8). Oracles: exact integer identities of the
 * dense matrix (T Tᵀ = Λ, entries +-1), a double-precision dense product for the fast path,
 * sign words computed by an independent splitmix64 (Python), and the scalar path itself for
 * every SIMD path (bit-exact by contract).
 */
#include "kernels/internal.h"
#include "kernels/rht.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static uint64_t rng_state = 7;

static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Roughly Gaussian with occasional 20x outliers, as LLM activations. */
static float act(void)
{
	double s = 0;

	for (int i = 0; i < 4; i++)
		s += (double)(rng() >> 11) / 9007199254740992.0;
	s -= 2.0;
	return (float)(rng() % 64 == 0 ? s * 20 : s);
}

/* Every dimension the tests exercise: the model sizes plus irregular multiples of 4. */
static const uint32_t dims[] = { 4,   8,   12,	20,   28,   36,	  64,	 100,
				 192, 344, 576, 1536, 2816, 4096, 11008, 14336 };

#define N_DIMS (sizeof(dims) / sizeof(dims[0]))

static void test_rejects_unmixable_n(void **state)
{
	const uint32_t bad[] = { 0, 1, 2, 3, 6, 10, 577, 578, 11007, RHT_MAX_N + 4 };
	struct rht t;

	for (uint32_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(rht_init(&t, bad[i], 1), -EINVAL);
		rht_done(&t);
	}
	rht_done(NULL);
}

/* The documented plan choices (kernels/README.md): full Hadamard where n = m 2^p. */
static void test_plans(void **state)
{
	static const struct {
		uint32_t n, n_blocks, m[3], p[3];
	} want[] = {
		{ 64, 1, { 1 }, { 6 } },
		{ 192, 1, { 12 }, { 4 } },
		{ 576, 1, { 36 }, { 4 } },
		{ 1536, 1, { 12 }, { 7 } },
		{ 4096, 1, { 1 }, { 12 } },
		{ 14336, 1, { 28 }, { 9 } },
		/* 11008 = 2^8 43: no Hadamard of order 172 here; smallest block maximized */
		{ 11008, 3, { 12, 20, 36 }, { 9, 7, 6 } },
	};

	for (uint32_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
		struct rht t;

		assert_int_equal(rht_init(&t, want[w].n, 3), 0);
		assert_int_equal(t.n_blocks, want[w].n_blocks);
		for (uint32_t b = 0; b < t.n_blocks; b++) {
			assert_int_equal(t.blk[b].m, want[w].m[b]);
			assert_int_equal(t.blk[b].p_log2, want[w].p[b]);
		}
		rht_done(&t);
	}
	/* every plan tiles [0, n) with blocks m 2^p, m a supported order */
	for (uint32_t d = 0; d < N_DIMS; d++) {
		struct rht t;
		uint32_t off = 0;

		assert_int_equal(rht_init(&t, dims[d], 3), 0);
		assert_true(t.n_blocks >= 1 && t.n_blocks <= RHT_MAX_BLOCKS);
		for (uint32_t b = 0; b < t.n_blocks; b++) {
			uint32_t m = t.blk[b].m;

			assert_int_equal(t.blk[b].off, off);
			assert_true(m == 1 || m == 12 || m == 20 || m == 28 || m == 36);
			assert_int_equal(t.blk[b].size, m << t.blk[b].p_log2);
			assert_true(t.blk[b].size >= 4);
			assert_int_equal(rht_scale(&t, off), t.blk[b].size);
			off += t.blk[b].size;
		}
		assert_int_equal(off, dims[d]);
		rht_done(&t);
	}
}

/* Seed -> signs is part of the file format: pinned against an independent splitmix64. */
static void test_sign_stream_is_stable(void **state)
{
	const uint64_t words[2] = { 0xbdd732262feb6e95ull, 0x28efe333b266f103ull };
	struct rht t, u;

	assert_int_equal(rht_init(&t, 128, 42), 0);
	for (uint32_t j = 0; j < 128; j++)
		assert_int_equal(t.sign[j], (words[j / 64] >> (j % 64)) & 1 ? 0x80000000u : 0);
	assert_int_equal(rht_init(&u, 128, 43), 0);
	assert_memory_not_equal(t.sign, u.sign, 128 * sizeof(uint32_t));
	rht_done(&u);
	rht_done(&t);
}

/* T Tᵀ = Tᵀ T = Λ exactly, entries +-1 inside blocks and 0 outside; rht_matrix(transposed). */
static void test_dense_is_scaled_orthogonal(void **state)
{
	for (uint32_t d = 0; d < N_DIMS && dims[d] <= 576; d++) {
		uint32_t n = dims[d];
		float *M = malloc((size_t)n * n * sizeof(float));
		float *Mt = malloc((size_t)n * n * sizeof(float));
		int32_t *row = malloc(n * sizeof(int32_t));
		struct rht t;

		assert_int_equal(rht_init(&t, n, 11 + d), 0);
		rht_matrix(&t, false, M);
		rht_matrix(&t, true, Mt);
		for (uint32_t i = 0; i < n; i++)
			for (uint32_t j = 0; j < n; j++) {
				float v = M[(size_t)i * n + j];
				bool same = rht_scale(&t, i) == rht_scale(&t, j) &&
					    (i < j ? j - i : i - j) < rht_scale(&t, i);

				assert_true(v == Mt[(size_t)j * n + i]);
				if (!same)
					continue;
				assert_true(v == 1 || v == -1 || v == 0);
			}
		for (uint32_t i = 0; i < n; i++) {
			/* (T Tᵀ)[i][.] and (Tᵀ T)[i][.] in exact integers */
			for (uint32_t j = 0; j < n; j++) {
				int32_t a = 0, b = 0;

				for (uint32_t k = 0; k < n; k++) {
					a += (int32_t)M[(size_t)i * n + k] *
					     (int32_t)M[(size_t)j * n + k];
					b += (int32_t)M[(size_t)k * n + i] *
					     (int32_t)M[(size_t)k * n + j];
				}
				row[j] = a;
				assert_int_equal(b, i == j ? (int32_t)rht_scale(&t, i) : 0);
			}
			for (uint32_t j = 0; j < n; j++)
				assert_int_equal(row[j], i == j ? (int32_t)rht_scale(&t, i) : 0);
		}
		rht_done(&t);
		free(row);
		free(Mt);
		free(M);
	}
}

/* The fast path (scalar) equals the dense definition, forward and transposed. */
static void test_fast_equals_dense(void **state)
{
	enum {
		ROWS = 2
	};

	for (uint32_t d = 0; d < N_DIMS && dims[d] <= 1536; d++) {
		uint32_t n = dims[d];
		float *M = malloc((size_t)n * n * sizeof(float));
		float *x = malloc((size_t)ROWS * n * sizeof(float));
		float *y = malloc((size_t)ROWS * n * sizeof(float));
		struct rht t;

		assert_int_equal(rht_init(&t, n, 100 + d), 0);
		for (int inv = 0; inv < 2; inv++) {
			rht_matrix(&t, inv, M);
			for (size_t i = 0; i < (size_t)ROWS * n; i++)
				x[i] = y[i] = act();
			assert_int_equal(rht_apply_isa(&t, LUT_ISA_REF, inv, y, ROWS), 0);
			for (uint32_t r = 0; r < ROWS; r++) {
				double l1 = 0;

				for (uint32_t k = 0; k < n; k++)
					l1 += fabs(x[(size_t)r * n + k]);
				for (uint32_t i = 0; i < n; i++) {
					double s = 0;

					for (uint32_t k = 0; k < n; k++)
						s += (double)M[(size_t)i * n + k] *
						     x[(size_t)r * n + k];
					/* each output: at most log2(n) + 36 rounded adds */
					assert_true(fabs(s - y[(size_t)r * n + i]) <=
						    50 * 0x1p-24 * l1);
				}
			}
		}
		rht_done(&t);
		free(y);
		free(x);
		free(M);
	}
}

/* inverse(forward(x)) = Λ x for every supported n, to f32 rounding. */
static void test_inverse_roundtrip(void **state)
{
	for (uint32_t d = 0; d < N_DIMS; d++) {
		uint32_t n = dims[d];
		float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
		double worst = 0;
		struct rht t;

		assert_int_equal(rht_init(&t, n, 200 + d), 0);
		for (uint32_t i = 0; i < n; i++)
			x[i] = y[i] = act();
		assert_int_equal(rht_apply(&t, y, 1), 0);
		assert_int_equal(rht_apply_inverse(&t, y, 1), 0);
		for (uint32_t i = 0; i < n; i++) {
			double b = rht_scale(&t, i), e = fabs(y[i] - b * x[i]);
			double l2 = 0;

			/* block-local L2 of x bounds every intermediate value */
			for (uint32_t k = 0; k < n; k++)
				if (rht_scale(&t, k) == b)
					l2 += (double)x[k] * x[k];
			e /= b * sqrt(l2 / b);
			worst = e > worst ? e : worst;
		}
		/* relative to the block's RMS: 2 (log2 b + m) rounding steps at most */
		assert_true(worst < 200 * 0x1p-24);
		rht_done(&t);
		free(y);
		free(x);
	}
}

/* Every ISA path the host runs is bit-identical to the scalar one; others are named. */
static void test_isa_paths_bit_identical(void **state)
{
	enum {
		ROWS = 3
	};
	static const enum lut_isa isas[] = { LUT_ISA_AVX2, LUT_ISA_AVX512 };

	for (uint32_t a = 0; a < 2; a++) {
		if (!lut_isa_supported(isas[a])) {
			printf("# rht: %s path NOT RUN (host lacks it)\n", lut_isa_name(isas[a]));
			assert_int_equal(rht_apply_isa(&(struct rht){ 0 }, isas[a], false, NULL, 0),
					 -EOPNOTSUPP);
			continue;
		}
		for (uint32_t d = 0; d < N_DIMS; d++) {
			uint32_t n = dims[d];
			size_t sz = (size_t)ROWS * n * sizeof(float);
			float *ref = malloc(sz), *got = malloc(sz);
			struct rht t;

			assert_int_equal(rht_init(&t, n, 300 + d), 0);
			for (int inv = 0; inv < 2; inv++) {
				for (size_t i = 0; i < (size_t)ROWS * n; i++)
					ref[i] = got[i] = act();
				assert_int_equal(rht_apply_isa(&t, LUT_ISA_REF, inv, ref, ROWS), 0);
				assert_int_equal(rht_apply_isa(&t, isas[a], inv, got, ROWS), 0);
				assert_memory_equal(ref, got, sz);
			}
			rht_done(&t);
			free(got);
			free(ref);
		}
	}
	assert_int_equal(rht_apply_isa(&(struct rht){ 0 }, LUT_ISA_COUNT, false, NULL, 0), -EINVAL);
}

/* m rows in one call equal m single-row calls. */
static void test_rows_are_independent(void **state)
{
	enum {
		ROWS = 4,
		N = 576
	};
	float *a = malloc(ROWS * N * sizeof(float)), *b = malloc(ROWS * N * sizeof(float));
	struct rht t;

	assert_int_equal(rht_init(&t, N, 5), 0);
	for (size_t i = 0; i < ROWS * N; i++)
		a[i] = b[i] = act();
	assert_int_equal(rht_apply(&t, a, ROWS), 0);
	for (uint32_t r = 0; r < ROWS; r++)
		assert_int_equal(rht_apply(&t, b + (size_t)r * N, 1), 0);
	assert_memory_equal(a, b, ROWS * N * sizeof(float));
	rht_done(&t);
	free(b);
	free(a);
}

int test_rht_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rejects_unmixable_n),
		cmocka_unit_test(test_plans),
		cmocka_unit_test(test_sign_stream_is_stable),
		cmocka_unit_test(test_dense_is_scaled_orthogonal),
		cmocka_unit_test(test_fast_equals_dense),
		cmocka_unit_test(test_inverse_roundtrip),
		cmocka_unit_test(test_isa_paths_bit_identical),
		cmocka_unit_test(test_rows_are_independent),
	};

	return cmocka_run_group_tests_name("kernels/rht", tests, NULL, NULL);
}
