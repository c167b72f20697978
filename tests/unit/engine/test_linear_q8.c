// SPDX-License-Identifier: MIT
/*
 * The Q8_0 (and Q5_0) linear backend against a double-precision product with the weights
 * dequantized by the GGUF reader's dequantizers (tested against PyPI gguf in test_dtype.c),
 * within the bound that int8 activations allow: odd row counts, m = 1, 3, 8 and more than
 * one batch tile, the scalar, AVX2 and AVX512_VNNI kernels, one and two workers; then the LM
 * head of the default model (its tied embedding is Q8_0).
 */
#include "common/pool.h"
#include "engine/dtype.h"
#include "engine/linear.h"
#include "engine/model.h"

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

#include "tests/lib/rand_data.h"

#define SMOLLM2 "models/SmolLM2-135M-Instruct.Q4_1.gguf"

/*
 * Each output is a sum of exact integer block sums scaled and added in f32: its rounding
 * error is at most about (n_in / 32 + 8) * 2^-24 * sum |w x|; 1e-5 * sum |w x| covers n_in
 * up to ~5000. The activations are rounded to int8 per half block of 16, each by at most
 * max |x_half| / 254: that term is added per output (act_bound()), with 0.1% to spare
 * for the rounding of the scales themselves.
 */
#define TOL_REL_ABS 1e-5

#define Q8_BYTES 34
#define Q5_BYTES 22

/*
 * The two block formats the backend keeps as they are; Q8_0 twice: with every int8 value,
 * and without -128 as llama.cpp's quantizer writes it (the AVX2 kernel then takes its
 * signed path, which negates weights).
 */
struct fmt {
	const char *name;
	enum ggml_type type;
	uint32_t bytes; /* per block of 32 */
	int (*init)(struct linear *l, const void *blocks, uint64_t n_bytes, uint32_t n_out,
		    uint32_t n_in, const struct lut_runner *runner);
	bool no_int8_min;
};

static const struct fmt fmts[] = {
	{ "q8_0", GGML_TYPE_Q8_0, Q8_BYTES, linear_init_q8_0, false },
	{ "q5_0", GGML_TYPE_Q5_0, Q5_BYTES, linear_init_q5_0, false },
	{ "q8_0", GGML_TYPE_Q8_0, Q8_BYTES, linear_init_q8_0, true },
};

/*
 * @n_out x @n_in random blocks of @f: every value byte random (all int8, or all nibbles and
 * fifth bits; -128 replaced by -127 for no_int8_min), f16 scales over 2^-12..2^-3.
 */
static uint8_t *make_blocks_of(const struct fmt *f, uint32_t n_out, uint32_t n_in)
{
	size_t n_blocks = (size_t)n_out * n_in / 32;
	uint8_t *b = malloc(n_blocks * f->bytes);

	assert_non_null(b);
	for (size_t i = 0; i < n_blocks; i++) {
		uint8_t *blk = b + i * f->bytes;
		float d = (float)ldexp(1.0 + test_urand(), -12 + (int)(test_rng() % 10));
		uint16_t h = dtype_f32_to_f16(test_rng() & 1 ? -d : d);

		blk[0] = (uint8_t)h;
		blk[1] = (uint8_t)(h >> 8);
		for (uint32_t j = 2; j < f->bytes; j++) {
			blk[j] = (uint8_t)test_rng();
			if (f->no_int8_min && blk[j] == 0x80)
				blk[j] = 0x81;
		}
	}
	return b;
}

static uint8_t *make_blocks(uint32_t n_out, uint32_t n_in)
{
	return make_blocks_of(&fmts[0], n_out, n_in);
}

/* The oracle's weights: the GGUF reader's dequantizer of @f, [n_out][n_in]. */
static float *dequant_of(const struct fmt *f, const uint8_t *blocks, uint32_t n_out, uint32_t n_in)
{
	float *w = malloc((size_t)n_out * n_in * sizeof(float));

	assert_non_null(w);
	dtype_info(f->type)->to_f32(blocks, w, (size_t)n_out * n_in);
	return w;
}

/* sum over half blocks of (sum |w|) * max |x| / 254: how far int8 activations can move y[t][r]. */
static double act_bound(const float *wr, const float *xt, uint32_t n_in)
{
	double bound = 0;

	for (uint32_t b = 0; b < n_in; b += 16) {
		double sw = 0, amax = 0;

		for (uint32_t j = b; j < b + 16; j++) {
			sw += fabs(wr[j]);
			amax = fmax(amax, fabs(xt[j]));
		}
		bound += sw * amax / 254;
	}
	return bound * 1.001;
}

/* Fails unless every y[t][r] is within act_bound() + TOL_REL_ABS * sum |w x| of x W^T in double. */
static void check_against_double(const float *w, uint32_t n_out, uint32_t n_in, uint32_t m,
				 const float *x, const float *y, const char *what)
{
	for (uint32_t t = 0; t < m; t++) {
		const float *xt = x + (size_t)t * n_in;

		for (uint32_t r = 0; r < n_out; r++) {
			const float *wr = w + (size_t)r * n_in;
			double ref = 0, mag = 0, tol;

			for (uint32_t c = 0; c < n_in; c++) {
				double p = (double)wr[c] * xt[c];

				ref += p;
				mag += fabs(p);
			}
			tol = act_bound(wr, xt, n_in) + TOL_REL_ABS * mag + 1e-30;
			if (fabs(y[(size_t)t * n_out + r] - ref) > tol)
				fail_msg(
					"%s: %ux%u m=%u: y[%u][%u] = %.9g, want %.9g (tolerance %.3g)",
					what, n_out, n_in, m, t, r, y[(size_t)t * n_out + r], ref,
					tol);
		}
	}
}

static float *make_x(uint32_t m, uint32_t n_in)
{
	float *x = malloc((size_t)m * n_in * sizeof(float));

	assert_non_null(x);
	for (size_t i = 0; i < (size_t)m * n_in; i++)
		x[i] = test_act();
	return x;
}

/* AVX512 selects the AVX512_VNNI kernel where the host has it (else AVX2's) */
static const enum lut_isa isas[] = { LUT_ISA_REF, LUT_ISA_AVX2, LUT_ISA_AVX512 };

static void test_q8_q5_match_double_product(void **state)
{
	static const struct {
		uint32_t n_out, n_in;
	} shapes[] = {
		{ 1, 32 },     { 3, 64 },     { 7, 96 },   { 33, 576 },
		{ 1031, 576 }, { 258, 1536 }, { 5, 3200 },
	};
	/* every token-tile width (1..4, and 3 for AVX2) in full and partial row tiles */
	static const uint32_t ms[] = { 1, 3, 6, 8, 13 };
	struct pool *pool;
	struct lut_runner two;

	test_rng_state = 21;
	assert_int_equal(pool_new(2, NULL, &pool), 0);
	two = (struct lut_runner){ .run = pool_run, .ctx = pool, .n_workers = 2 };
	for (size_t fi = 0; fi < sizeof(fmts) / sizeof(fmts[0]); fi++)
		for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
			const struct fmt *f = &fmts[fi];
			uint32_t n = shapes[si].n_out, k = shapes[si].n_in;
			uint8_t *blocks = make_blocks_of(f, n, k);
			float *w = dequant_of(f, blocks, n, k);
			struct linear l1 = { 0 }, l2 = { 0 };

			assert_int_equal(
				f->init(&l1, blocks, (uint64_t)n * k / 32 * f->bytes, n, k, NULL),
				0);
			assert_int_equal(
				f->init(&l2, blocks, (uint64_t)n * k / 32 * f->bytes, n, k, &two),
				0);
			assert_string_equal(l1.ops->name, f->name);
			assert_int_equal(l1.n_out, n);
			assert_int_equal(l1.n_in, k);
			for (size_t mi = 0; mi < sizeof(ms) / sizeof(ms[0]); mi++) {
				uint32_t m = ms[mi];
				float *x = make_x(m, k);
				float *y1 = malloc((size_t)m * n * sizeof(float));
				float *y2 = malloc((size_t)m * n * sizeof(float));
				float *yref = malloc((size_t)m * n * sizeof(float));
				char what[64];

				assert_true(y1 && y2 && yref);
				for (size_t ii = 0; ii < sizeof(isas) / sizeof(isas[0]); ii++) {
					if (linear_q8_select_isa(isas[ii]) < 0) {
						print_message(
							"q8_0: %s kernel not runnable here, skipped\n",
							lut_isa_name(isas[ii]));
						continue;
					}
					snprintf(what, sizeof(what), "%s %s, 1 worker", f->name,
						 lut_isa_name(isas[ii]));
					linear_forward(&l1, x, y1, m);
					check_against_double(w, n, k, m, x, y1, what);
					/* the row split does not change any output's arithmetic */
					linear_forward(&l2, x, y2, m);
					assert_memory_equal(y1, y2, (size_t)m * n * sizeof(float));
					/* every ISA does the scalar kernel's arithmetic */
					if (isas[ii] == LUT_ISA_REF)
						memcpy(yref, y1, (size_t)m * n * sizeof(float));
					else
						assert_memory_equal(y1, yref,
								    (size_t)m * n * sizeof(float));
				}
				free(yref);
				free(y2);
				free(y1);
				free(x);
			}
			linear_done(&l2);
			linear_done(&l1);
			free(w);
			free(blocks);
		}
	assert_int_equal(linear_q8_select_isa(LUT_ISA_AUTO), 0);
	pool_free(pool);
}

/* A batch gives bit for bit what one-token forwards give (decode batches stay reproducible). */
static void test_batch_equals_single_tokens(void **state)
{
	const uint32_t n = 301, k = 320, m = 11;

	test_rng_state = 22;
	for (size_t fi = 0; fi < sizeof(fmts) / sizeof(fmts[0]); fi++) {
		const struct fmt *f = &fmts[fi];
		uint8_t *blocks = make_blocks_of(f, n, k);
		float *x = make_x(m, k), *y = malloc((size_t)m * n * sizeof(float));
		float *y1 = malloc(n * sizeof(float));
		struct linear l = { 0 };

		assert_true(y && y1);
		assert_int_equal(f->init(&l, blocks, (uint64_t)n * k / 32 * f->bytes, n, k, NULL),
				 0);
		for (size_t ii = 0; ii < sizeof(isas) / sizeof(isas[0]); ii++) {
			if (linear_q8_select_isa(isas[ii]) < 0)
				continue;
			linear_forward(&l, x, y, m);
			for (uint32_t t = 0; t < m; t++) {
				linear_forward(&l, x + (size_t)t * k, y1, 1);
				assert_memory_equal(y1, y + (size_t)t * n, n * sizeof(float));
			}
		}
		linear_done(&l);
		free(y1);
		free(y);
		free(x);
		free(blocks);
	}
	assert_int_equal(linear_q8_select_isa(LUT_ISA_AUTO), 0);
}

/*
 * linear_weights_f32() gives what the GGUF reader's dequantizer makes of the blocks, for
 * both formats (an odd row count leaves the last row tile part padding); a dense layer gives
 * its weights; a backend without weights says so.
 */
static void test_weights_f32_are_the_dequantized_blocks(void **state)
{
	const uint32_t n = 37, k = 96;
	float *got = malloc((size_t)n * k * sizeof(float));
	struct linear l = { 0 };

	assert_non_null(got);
	test_rng_state = 31;
	for (size_t fi = 0; fi < sizeof(fmts) / sizeof(fmts[0]); fi++) {
		const struct fmt *f = &fmts[fi];
		uint8_t *blocks = make_blocks_of(f, n, k);
		float *want = dequant_of(f, blocks, n, k);

		assert_int_equal(f->init(&l, blocks, (uint64_t)n * k / 32 * f->bytes, n, k, NULL),
				 0);
		memset(got, 0xff, (size_t)n * k * sizeof(float));
		assert_int_equal(linear_weights_f32(&l, got), 0);
		assert_memory_equal(got, want, (size_t)n * k * sizeof(float));
		linear_done(&l);
		/* the dense backend over the same values */
		assert_int_equal(linear_init_dense(&l, want, n, k, 0), 0);
		memset(got, 0xff, (size_t)n * k * sizeof(float));
		assert_int_equal(linear_weights_f32(&l, got), 0);
		assert_memory_equal(got, want, (size_t)n * k * sizeof(float));
		linear_done(&l);
		free(want);
		free(blocks);
	}
	assert_int_equal(linear_weights_f32(&l, got), -EOPNOTSUPP);
	free(got);
}

static void test_rows_go_through_the_callers_runner(void **state)
{
	const uint32_t n = 2051, k = 64, m = 2;
	struct counting_runner cr = { 0 };
	struct lut_runner r = { .run = counting_run, .ctx = &cr, .n_workers = 3 };
	struct linear l = { 0 }, l1 = { 0 };
	uint8_t *blocks;
	float *x, *y, *want;

	test_rng_state = 23;
	blocks = make_blocks(n, k);
	x = make_x(m, k);
	y = malloc((size_t)m * n * sizeof(float));
	want = malloc((size_t)m * n * sizeof(float));
	assert_true(y && want);
	assert_int_equal(linear_init_q8_0(&l1, blocks, (uint64_t)n * k / 32 * Q8_BYTES, n, k, NULL),
			 0);
	assert_int_equal(linear_init_q8_0(&l, blocks, (uint64_t)n * k / 32 * Q8_BYTES, n, k, &r),
			 0);
	linear_forward(&l1, x, want, m);
	linear_forward(&l, x, y, m);
	assert_int_equal(cr.n_calls, 1);
	assert_int_equal(cr.n_tasks, 3);
	assert_memory_equal(y, want, (size_t)m * n * sizeof(float));
	linear_done(&l);
	linear_done(&l1);
	free(want);
	free(y);
	free(x);
	free(blocks);
}

static void test_rejects_bad_arguments(void **state)
{
	struct lut_runner none = { .run = counting_run, .ctx = NULL, .n_workers = 0 };
	struct linear l = { 0 };
	uint8_t *blocks;
	uint16_t nan = 0x7e00, inf = 0x7c00;

	test_rng_state = 24;
	blocks = make_blocks(4, 64);
	assert_int_equal(linear_init_q8_0(&l, blocks, 8 * Q8_BYTES, 4, 64, &none), -EINVAL);
	assert_int_equal(linear_init_q8_0(&l, blocks, 8 * Q8_BYTES - 1, 4, 64, NULL), -EINVAL);
	assert_int_equal(linear_init_q8_0(&l, blocks, 8 * Q8_BYTES, 8, 32, NULL), 0);
	linear_done(&l);
	/* rows must be whole blocks */
	assert_int_equal(linear_init_q8_0(&l, blocks, 8 * Q8_BYTES, 16, 16, NULL), -EINVAL);
	assert_int_equal(linear_init_q8_0(&l, blocks, 0, 0, 64, NULL), -EINVAL);
	assert_int_equal(linear_init_q8_0(&l, NULL, 8 * Q8_BYTES, 4, 64, NULL), -EINVAL);
	/* a scale that is not finite */
	memcpy(blocks + 5 * Q8_BYTES, &nan, 2);
	assert_int_equal(linear_init_q8_0(&l, blocks, 8 * Q8_BYTES, 4, 64, NULL), -EBADMSG);
	memcpy(blocks + 5 * Q8_BYTES, &inf, 2);
	assert_int_equal(linear_init_q8_0(&l, blocks, 8 * Q8_BYTES, 4, 64, NULL), -EBADMSG);
	assert_null(l.ops);
	linear_done(&l); /* zeroed: a no-op */
	assert_int_equal(linear_q8_select_isa(LUT_ISA_COUNT), -EOPNOTSUPP);
	free(blocks);
	/* Q5_0: its own block size, the same checks */
	blocks = make_blocks_of(&fmts[1], 4, 64);
	assert_int_equal(linear_init_q5_0(&l, blocks, 8 * Q5_BYTES - 1, 4, 64, NULL), -EINVAL);
	assert_int_equal(linear_init_q5_0(&l, blocks, 8 * Q8_BYTES, 4, 64, NULL), -EINVAL);
	assert_int_equal(linear_init_q5_0(&l, blocks, 8 * Q5_BYTES, 16, 16, NULL), -EINVAL);
	memcpy(blocks + 3 * Q5_BYTES, &nan, 2);
	assert_int_equal(linear_init_q5_0(&l, blocks, 8 * Q5_BYTES, 4, 64, NULL), -EBADMSG);
	assert_null(l.ops);
	free(blocks);
	/* rows longer than the stack buffer of one token's quantized activations */
	blocks = make_blocks(1, 16416);
	assert_int_equal(linear_init_q8_0(&l, blocks, 513 * Q8_BYTES, 1, 16416, NULL), -EINVAL);
	free(blocks);
}

/* A NaN or infinite activation makes the outputs NaN (as the f32 product would), not zero. */
static void test_non_finite_activations_give_nan(void **state)
{
	const uint32_t n = 8, k = 96;
	struct linear l = { 0 };
	uint8_t *blocks;
	float *x, y[2 * 8];

	test_rng_state = 26;
	blocks = make_blocks(n, k);
	x = make_x(2, k);
	x[40] = NAN;
	x[k + 95] = INFINITY;
	assert_int_equal(linear_init_q8_0(&l, blocks, (uint64_t)n * k / 32 * Q8_BYTES, n, k, NULL),
			 0);
	for (size_t ii = 0; ii < sizeof(isas) / sizeof(isas[0]); ii++) {
		if (linear_q8_select_isa(isas[ii]) < 0)
			continue;
		linear_forward(&l, x, y, 2);
		for (uint32_t i = 0; i < 2 * n; i++)
			assert_true(isnan(y[i]));
	}
	assert_int_equal(linear_q8_select_isa(LUT_ISA_AUTO), 0);
	linear_done(&l);
	free(x);
	free(blocks);
}

/*
 * The default model's tied embedding is Q8_0: its LM head runs on this backend, in both
 * backend modes and on a pool, and agrees with the dense product over the f32 embedding.
 */
static void test_smollm2_head_is_q8(void **state)
{
	struct model_load_opts o = { .backend = LINEAR_BACKEND_SHIFTADD };
	struct model *m = NULL, *mp = NULL;
	struct linear dense = { 0 };
	struct pool *pool;
	uint32_t nv, dim, mm = 5;
	float *x, *y, *yp, *want;

	assert_int_equal(model_load(SMOLLM2, &m, NULL), 0);
	assert_string_equal(m->lm_head.ops->name, "q8_0");
	nv = m->cfg.n_vocab;
	dim = m->cfg.dim;
	assert_int_equal(pool_new(2, NULL, &pool), 0);
	o.pool = pool;
	assert_int_equal(model_load_ex(SMOLLM2, &o, &mp, NULL), 0);
	assert_string_equal(mp->lm_head.ops->name, "q8_0");
	assert_int_equal(linear_init_dense(&dense, m->tok_embd, nv, dim, 0), 0);
	test_rng_state = 25;
	x = make_x(mm, dim);
	y = malloc((size_t)mm * nv * sizeof(float));
	yp = malloc((size_t)mm * nv * sizeof(float));
	want = malloc((size_t)mm * nv * sizeof(float));
	assert_true(y && yp && want);
	for (uint32_t k = 1; k <= mm; k += mm - 1) {
		double worst = 0;

		model_logits(m, x, k, y);
		model_logits(mp, x, k, yp);
		linear_forward(&dense, x, want, k);
		assert_memory_equal(y, yp, (size_t)k * nv * sizeof(float));
		for (size_t i = 0; i < (size_t)k * nv; i++) {
			const float *xt = x + i / nv * dim, *wr = m->tok_embd + i % nv * dim;
			double d = fabs(y[i] - want[i]);

			worst = d > worst ? d : worst;
			assert_true(d <= act_bound(wr, xt, dim) + 1e-4);
		}
		print_message("smollm2 q8_0 head, m=%u: max |logit - dense f32| %.3g\n", k, worst);
	}
	free(want);
	free(yp);
	free(y);
	free(x);
	linear_done(&dense);
	model_free(mp);
	model_free(m);
	pool_free(pool);
}

int test_linear_q8_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_q8_q5_match_double_product),
		cmocka_unit_test(test_batch_equals_single_tokens),
		cmocka_unit_test(test_weights_f32_are_the_dequantized_blocks),
		cmocka_unit_test(test_rows_go_through_the_callers_runner),
		cmocka_unit_test(test_rejects_bad_arguments),
		cmocka_unit_test(test_non_finite_activations_give_nan),
		cmocka_unit_test(test_smollm2_head_is_q8),
	};
	return cmocka_run_group_tests_name("engine/linear_q8", tests, NULL, NULL);
}
