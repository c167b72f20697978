// SPDX-License-Identifier: MIT
/*
 * Kernel tests. Oracles: a dense double-precision product with qweight_dequant() (for the
 * scalar reference, within the int8-table error bound stated below) and the scalar reference
 * itself (for every SIMD path, bit-exact: all paths share one exact arithmetic contract).
 */
#include "common/pool.h"
#include "kernels/internal.h"
#include "kernels/lut.h"

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

static void make_qweight(struct qweight *q, uint32_t n, uint32_t k, uint32_t bits,
			 enum qw_layout layout)
{
	assert_int_equal(test_random_qweight(q, n, k, bits, layout, -3), 0);
}

static float *make_acts(uint32_t m, uint32_t k)
{
	float *x = malloc((size_t)m * k * sizeof(float));

	assert_non_null(x);
	for (size_t i = 0; i < (size_t)m * k; i++)
		x[i] = test_act();
	return x;
}

static int run(const struct lut_weight *w, uint32_t m, const float *x, float *y, enum lut_isa isa,
	       const struct lut_runner *r)
{
	struct lut_opts o = { .runner = r, .isa = isa };

	return lut_gemm(w, m, x, y, &o);
}

/*
 * Error bound of the int16 tables against exact arithmetic, for row @n and token @x:
 * each lookup is off by at most one table step (rounding is half a step; the clamp of the
 * largest entry from 32768 to 32767 adds up to half a step more), and a chunk's step is at
 * most its largest table magnitude / 2^14. Computed here from alpha * x in double,
 * independently of the kernel. A small relative term covers float rounding of alpha * x,
 * of the table sums and of the float sum over chunks.
 */
static double row_bound(const struct qweight *q, uint32_t n, const float *x, double ref_abs)
{
	uint32_t chunk_cols = LUT_CHUNK_PAIRS * LUT_PAIR_COLS;
	uint32_t n_chunks = (q->n_cols + chunk_cols - 1) / chunk_cols;
	double bound = 0;
	double *mx = calloc(n_chunks, sizeof(double));

	assert_non_null(mx);
	/* the kernel shares one scale over every rowset, so take the max over all rows' alpha */
	for (uint32_t rb = 0; rb < qweight_n_row_blocks(q); rb++) {
		for (uint32_t i = 0; i < q->bits; i++) {
			for (uint32_t g = 0; g < q->n_cols; g += 4) {
				double s = 0;

				for (uint32_t j = g; j < g + 4 && j < q->n_cols; j++)
					s += fabs(*qweight_alpha(q, i, rb * q->row_block, j) *
						  x[j]);
				if (s > mx[g / chunk_cols])
					mx[g / chunk_cols] = s;
			}
		}
	}
	for (uint32_t c = 0; c < n_chunks; c++) {
		uint32_t cols = c + 1 < n_chunks ? chunk_cols : q->n_cols - c * chunk_cols;
		uint32_t lookups = 2 * q->bits * ((cols + 7) / 8);

		bound += lookups * (mx[c] / 16384.0) * 1.01;
	}
	(void)n;
	free(mx);
	return bound + 1e-5 * ref_abs;
}

struct shape {
	uint32_t n, k, bits;
	enum qw_layout layout;
};

/* Check the reference against the dense product; return its relative L2 error. */
static double check_ref_vs_dense(const struct shape *s, uint32_t m)
{
	struct qweight q;
	struct lut_weight w;
	float *x, *y, *dense;
	double err2 = 0, ref2 = 0;

	make_qweight(&q, s->n, s->k, s->bits, s->layout);
	assert_int_equal(lut_pack(&q, &w), 0);
	x = make_acts(m, s->k);
	y = malloc((size_t)m * s->n * sizeof(float));
	dense = malloc((size_t)s->n * s->k * sizeof(float));
	assert_non_null(y);
	assert_non_null(dense);
	qweight_dequant(&q, dense);
	assert_int_equal(run(&w, m, x, y, LUT_ISA_REF, NULL), 0);
	for (uint32_t j = 0; j < m; j++) {
		for (uint32_t r = 0; r < s->n; r++) {
			double ref = 0, refabs = 0, got = y[(size_t)j * s->n + r];

			for (uint32_t c = 0; c < s->k; c++) {
				double p = (double)dense[(size_t)r * s->k + c] *
					   x[(size_t)j * s->k + c];

				ref += p;
				refabs += fabs(p);
			}
			if (fabs(got - ref) > row_bound(&q, r, x + (size_t)j * s->k, refabs))
				fail_msg("n=%u k=%u q=%u layout=%d row %u token %u: got %g want %g",
					 s->n, s->k, s->bits, s->layout, r, j, got, ref);
			err2 += (got - ref) * (got - ref);
			ref2 += ref * ref;
		}
	}
	free(dense);
	free(y);
	free(x);
	lut_weight_done(&w);
	qweight_done(&q);
	return ref2 > 0 ? sqrt(err2 / ref2) : 0;
}

static const struct shape fixed_shapes[] = {
	{ 1, 1, 2, QW_LAYOUT_COL },	  { 1, 1, 3, QW_LAYOUT_BLOCK },
	{ 7, 9, 2, QW_LAYOUT_COL },	  { 17, 31, 3, QW_LAYOUT_BLOCK },
	{ 64, 128, 4, QW_LAYOUT_COL },	  { 65, 129, 4, QW_LAYOUT_BLOCK },
	{ 100, 300, 3, QW_LAYOUT_COL },	  { 130, 257, 2, QW_LAYOUT_BLOCK },
	{ 576, 576, 3, QW_LAYOUT_BLOCK }, { 200, 1000, 3, QW_LAYOUT_COL },
};

static struct shape random_shape(void)
{
	struct shape s = {
		.n = 1 + (uint32_t)(test_rng() % 300),
		.k = 1 + (uint32_t)(test_rng() % 700),
		.bits = 2 + (uint32_t)(test_rng() % 3),
		.layout = test_rng() & 1 ? QW_LAYOUT_COL : QW_LAYOUT_BLOCK,
	};

	return s;
}

static void test_ref_matches_dense_within_table_error(void **state)
{
	double worst = 0;

	test_rng_state = 1;
	for (size_t i = 0; i < sizeof(fixed_shapes) / sizeof(fixed_shapes[0]); i++) {
		double e = check_ref_vs_dense(&fixed_shapes[i], 2);

		worst = e > worst ? e : worst;
	}
	for (int i = 0; i < 12; i++) {
		struct shape s = random_shape();
		double e = check_ref_vs_dense(&s, 1);

		worst = e > worst ? e : worst;
	}
	/*
	 * Stated accuracy: 14-bit tables with one power-of-two scale per 64 columns (shared by
	 * all planes and row blocks) cost at most 1e-3 relative L2 on these inputs
	 * (Gaussian-like with 1/64 outliers of 20x, alphas 2x apart between planes); measured
	 * worst 5.6e-4 (int16 tables: 1.0e-4; int8 tables, before that: 3.4%).
	 */
	print_message("ref vs dense: worst relative L2 error %.2e\n", worst);
	assert_true(worst < 1e-3);
}

/*
 * Push activations to where the SIMD paths leave their fast exponent-add shifts (mode 1:
 * tiny, alpha * x underflows; mode 2: some huge, the chunk scales shift down and the
 * small values of those chunks underflow) and sprinkle exact zeros and subnormals (every mode).
 */
static void stress_acts(float *x, size_t n, int mode)
{
	for (size_t i = 0; i < n; i++) {
		if (mode == 1)
			x[i] = ldexpf(x[i], -124);
		else if (mode == 2 && i % 7 < 2)
			x[i] = ldexpf(x[i], i % 7 ? -60 : 120);
		if (i % 13 == 5)
			x[i] = 0.0f;
		else if (i % 17 == 3)
			x[i] = (i & 1 ? -1.0f : 1.0f) * 1e-40f;
	}
}

/* One SIMD path against the reference on the fixed and random shapes, bit for bit. */
static void check_isa(enum lut_isa isa)
{
	if (!lut_isa_supported(isa)) {
		/* named, not dropped: and forcing it must be refused, never a SIGILL */
		struct shape s = fixed_shapes[0];
		struct lut_opts o = { .isa = isa };
		struct qweight q;
		struct lut_weight w;
		float *x, *y;

		print_message("ISA %s: NOT RUN, this host cannot execute it\n", lut_isa_name(isa));
		make_qweight(&q, s.n, s.k, s.bits, s.layout);
		assert_int_equal(lut_pack(&q, &w), 0);
		x = make_acts(1, s.k);
		y = malloc((size_t)s.n * sizeof(float));
		assert_non_null(y);
		assert_int_equal(lut_gemv(&w, x, y, &o), -EOPNOTSUPP);
		free(x);
		free(y);
		lut_weight_done(&w);
		qweight_done(&q);
		return;
	}
	test_rng_state = 2;
	for (int i = 0; i < 40; i++) {
		struct shape s = i < 10 ? fixed_shapes[i] : random_shape();
		/* every fifth case past the batched-lookup threshold (12 tokens, batches of 16) */
		uint32_t m = i % 5 == 4 ? 12 + (uint32_t)(test_rng() % 33)
					: 1 + (uint32_t)(test_rng() % 4);
		struct qweight q;
		struct lut_weight w;
		float *x, *y_ref, *y;

		make_qweight(&q, s.n, s.k, s.bits, s.layout);
		assert_int_equal(lut_pack(&q, &w), 0);
		x = make_acts(m, s.k);
		if (i % 4 == 3)
			stress_acts(x, (size_t)m * s.k, (i / 4) % 3);
		y_ref = malloc((size_t)m * s.n * sizeof(float));
		y = malloc((size_t)m * s.n * sizeof(float));
		assert_non_null(y_ref);
		assert_non_null(y);
		assert_int_equal(run(&w, m, x, y_ref, LUT_ISA_REF, NULL), 0);
		assert_int_equal(run(&w, m, x, y, isa, NULL), 0);
		for (size_t o = 0; o < (size_t)m * s.n; o++)
			if (memcmp(&y[o], &y_ref[o], sizeof(float)))
				fail_msg("%s n=%u k=%u q=%u layout=%d m=%u out %zu: %a vs ref %a",
					 lut_isa_name(isa), s.n, s.k, s.bits, s.layout, m, o, y[o],
					 y_ref[o]);
		free(y);
		free(y_ref);
		free(x);
		lut_weight_done(&w);
		qweight_done(&q);
	}
}

static void test_avx2_equals_ref(void **state)
{
	check_isa(LUT_ISA_AVX2);
}

static void test_avx512_equals_ref(void **state)
{
	check_isa(LUT_ISA_AVX512);
}

/*
 * gemm over M tokens equals M separate gemv calls, on every path the host runs: below the
 * batched-lookup threshold, in whole batches of 16, with a batched partial last batch
 * (m = 29: 16 + 13) and with a last batch run token by token (m = 37: 16 + 16 + 5).
 */
static void test_gemm_equals_repeated_gemv(void **state)
{
	static const uint32_t ms[] = { 6, 8, 16, 29, 37 };
	struct shape s = { 150, 333, 3, QW_LAYOUT_BLOCK };

	test_rng_state = 3;
	for (int c = 0; c < LUT_ISA_COUNT * 5; c++) {
		int isa = LUT_ISA_REF + c / 5;
		uint32_t m = ms[c % 5];
		struct qweight q;
		struct lut_weight w;
		float *x, *y, *y1;

		if (isa >= LUT_ISA_COUNT)
			break;
		if (!lut_isa_supported((enum lut_isa)isa)) {
			if (c % 5 == 0)
				print_message("gemm vs gemv on %s: NOT RUN (host lacks it)\n",
					      lut_isa_name((enum lut_isa)isa));
			continue;
		}
		s.layout = (isa + c) & 1 ? QW_LAYOUT_COL : QW_LAYOUT_BLOCK;
		s.bits = 2 + (uint32_t)c % 3;
		make_qweight(&q, s.n, s.k, s.bits, s.layout);
		assert_int_equal(lut_pack(&q, &w), 0);
		x = make_acts(m, s.k);
		y = malloc((size_t)m * s.n * sizeof(float));
		y1 = malloc(s.n * sizeof(float));
		assert_non_null(y);
		assert_non_null(y1);
		assert_int_equal(run(&w, m, x, y, (enum lut_isa)isa, NULL), 0);
		for (uint32_t j = 0; j < m; j++) {
			struct lut_opts o = { .isa = (enum lut_isa)isa };

			assert_int_equal(lut_gemv(&w, x + (size_t)j * s.k, y1, &o), 0);
			assert_memory_equal(y1, y + (size_t)j * s.n, s.n * sizeof(float));
		}
		free(y1);
		free(y);
		free(x);
		lut_weight_done(&w);
		qweight_done(&q);
	}
}

/*
 * Splitting work over a pool of 3 (and caller-given scratch) changes nothing:
 * - fewer tokens than workers: each token's tables are also split over column chunks (m = 2,
 *   and m = 1 with large block-layout tables), or, for one token with small tables, built
 *   whole by every task (64 x 65);
 * - at least as many tokens as workers and no batch: each task owns a run of tokens (m = 3,
 *   8; the ref ISA, which has no batched path, also at 16 and 20);
 * - one batch: every task builds it and runs its share of the tiles (m = 16; m = 20 with 4
 *   tokens after it; 16 x 40 has 2 half-tiles, fewer than the tasks);
 * - fewer batches than workers: the build is split over chunks, then the tiles (m = 33, and
 *   m = 37 at 4 bits);
 * - as many batches as workers: whole batches per task (m = 50).
 * The batched path runs at 2, 3 and 4 bits, each compared with the reference too.
 */
static void test_pool_split_is_exact(void **state)
{
	static const struct {
		struct shape s;
		uint32_t m;
	} cases[] = {
		{ { 700, 200, 4, QW_LAYOUT_COL }, 3 },	  { { 300, 700, 3, QW_LAYOUT_BLOCK }, 1 },
		{ { 130, 1001, 2, QW_LAYOUT_COL }, 2 },	  { { 64, 65, 3, QW_LAYOUT_BLOCK }, 1 },
		{ { 700, 200, 3, QW_LAYOUT_COL }, 20 },	  { { 300, 700, 2, QW_LAYOUT_BLOCK }, 33 },
		{ { 250, 300, 3, QW_LAYOUT_COL }, 8 },	  { { 500, 300, 3, QW_LAYOUT_COL }, 16 },
		{ { 16, 40, 3, QW_LAYOUT_BLOCK }, 16 },	  { { 200, 130, 2, QW_LAYOUT_COL }, 50 },
		{ { 200, 130, 4, QW_LAYOUT_BLOCK }, 16 }, { { 96, 200, 4, QW_LAYOUT_COL }, 37 },
	};
	struct lut_runner r;
	struct pool *p;

	test_rng_state = 4;
	assert_int_equal(pool_new(3, NULL, &p), 0);
	r = (struct lut_runner){ .run = pool_run, .ctx = p, .n_workers = pool_n_threads(p) };
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const struct shape *s = &cases[c].s;
		uint32_t m = cases[c].m;
		struct lut_opts o = { 0 };
		struct qweight q;
		struct lut_weight w;
		float *x, *y, *y1;

		make_qweight(&q, s->n, s->k, s->bits, s->layout);
		assert_int_equal(lut_pack(&q, &w), 0);
		x = make_acts(m, s->k);
		y = malloc((size_t)m * s->n * sizeof(float));
		y1 = malloc((size_t)m * s->n * sizeof(float));
		assert_non_null(y);
		assert_non_null(y1);
		assert_int_equal(run(&w, m, x, y1, LUT_ISA_AUTO, NULL), 0);
		o.runner = &r;
		o.scratch_bytes = lut_scratch_bytes(&w, m, r.n_workers);
		o.scratch = malloc(o.scratch_bytes);
		assert_non_null(o.scratch);
		assert_int_equal(lut_gemm(&w, m, x, y, &o), 0);
		assert_memory_equal(y, y1, (size_t)m * s->n * sizeof(float));
		o.isa = LUT_ISA_REF;
		assert_int_equal(lut_gemm(&w, m, x, y, &o), 0);
		assert_memory_equal(y, y1, (size_t)m * s->n * sizeof(float));
		o.scratch_bytes--;
		assert_int_equal(lut_gemm(&w, m, x, y, &o), -EINVAL);
		free(o.scratch);
		free(y1);
		free(y);
		free(x);
		lut_weight_done(&w);
		qweight_done(&q);
	}
	pool_free(p);
}

/*
 * lut_gemm_multi over weights sharing an input (one task per weight on a pool of 2) gives,
 * bit for bit, what one lut_gemm call per weight gives, for one token, a few, one batch and
 * a batch with tokens after it; bad arguments are refused.
 */
static void test_gemm_multi_equals_single_calls(void **state)
{
	enum {
		N = 3,
		K = 333
	};
	static const uint32_t rows[N] = { 150, 64, 300 }, ms[] = { 1, 5, 16, 20 };
	struct qweight q[N + 1];
	struct lut_weight w[N + 1];
	const struct lut_weight *ws[N + 1];
	struct lut_runner r;
	struct pool *p;
	float *x, *y[N], *y1;

	test_rng_state = 6;
	assert_int_equal(pool_new(2, NULL, &p), 0);
	r = (struct lut_runner){ .run = pool_run, .ctx = p, .n_workers = pool_n_threads(p) };
	for (int i = 0; i < N; i++) {
		make_qweight(&q[i], rows[i], K, 3, QW_LAYOUT_COL);
		assert_int_equal(lut_pack(&q[i], &w[i]), 0);
		ws[i] = &w[i];
		y[i] = malloc((size_t)20 * rows[i] * sizeof(float));
		assert_non_null(y[i]);
	}
	x = make_acts(20, K);
	y1 = malloc((size_t)20 * 300 * sizeof(float));
	assert_non_null(y1);
	for (size_t mi = 0; mi < sizeof(ms) / sizeof(ms[0]); mi++) {
		uint32_t m = ms[mi];
		struct lut_opts o = { .runner = &r };

		o.scratch_bytes = lut_scratch_bytes_multi(ws, N, m);
		o.scratch = malloc(o.scratch_bytes);
		assert_non_null(o.scratch);
		assert_int_equal(lut_gemm_multi(ws, N, m, x, y, &o), 0);
		for (int i = 0; i < N; i++) {
			assert_int_equal(run(&w[i], m, x, y1, LUT_ISA_AUTO, NULL), 0);
			assert_memory_equal(y[i], y1, (size_t)m * rows[i] * sizeof(float));
		}
		o.scratch_bytes--;
		assert_int_equal(lut_gemm_multi(ws, N, m, x, y, &o), -EINVAL);
		free(o.scratch);
	}
	/* a weight of another width, no weights, too many */
	make_qweight(&q[N], 40, K + 1, 2, QW_LAYOUT_COL);
	assert_int_equal(lut_pack(&q[N], &w[N]), 0);
	ws[N] = &w[N];
	assert_int_equal(lut_gemm_multi(ws, N + 1, 1, x, y, NULL), -EINVAL);
	assert_int_equal(lut_gemm_multi(ws, 0, 1, x, y, NULL), -EINVAL);
	assert_int_equal(lut_gemm_multi(ws, LUT_MULTI_MAX + 1, 1, x, y, NULL), -EINVAL);
	assert_int_equal(lut_scratch_bytes_multi(ws, 0, 1), 0);
	for (int i = 0; i <= N; i++) {
		lut_weight_done(&w[i]);
		qweight_done(&q[i]);
	}
	for (int i = 0; i < N; i++)
		free(y[i]);
	free(y1);
	free(x);
	pool_free(p);
}

static void test_pack_unpack_round_trip(void **state)
{
	test_rng_state = 5;
	for (int i = 0; i < 8; i++) {
		struct shape s = random_shape();
		struct qweight q, u;
		struct lut_weight w;
		uint64_t n_alpha;

		make_qweight(&q, s.n, s.k, s.bits, s.layout);
		assert_int_equal(lut_pack(&q, &w), 0);
		assert_int_equal(w.plane_bytes, lut_plane_bytes(s.n, s.k, s.bits, s.layout));
		assert_int_equal(lut_unpack(&w, &u), 0);
		assert_memory_equal(u.signs, q.signs, (size_t)s.bits * s.n * qweight_row_bytes(&q));
		n_alpha = (uint64_t)s.bits * qweight_n_row_blocks(&q) * qweight_n_col_blocks(&q);
		assert_memory_equal(u.alpha, q.alpha, n_alpha * sizeof(float));
		qweight_done(&u);
		lut_weight_done(&w);
		qweight_done(&q);
	}
}

/* lut_wrap over borrowed planes (the mmap path) computes what lut_pack's copy does. */
static void test_wrap_borrows_planes(void **state)
{
	struct qweight q;
	struct lut_weight w, v;
	float *x, *y, *y1;

	test_rng_state = 6;
	make_qweight(&q, 90, 77, 3, QW_LAYOUT_BLOCK);
	assert_int_equal(lut_pack(&q, &w), 0);
	assert_int_equal(lut_wrap(90, 77, 3, QW_LAYOUT_BLOCK, w.planes, q.alpha, &v), 0);
	assert_ptr_equal(v.planes, w.planes);
	x = make_acts(1, 77);
	y = malloc(90 * sizeof(float));
	y1 = malloc(90 * sizeof(float));
	assert_int_equal(lut_gemv(&w, x, y, NULL), 0);
	assert_int_equal(lut_gemv(&v, x, y1, NULL), 0);
	assert_memory_equal(y, y1, 90 * sizeof(float));
	lut_weight_done(&v); /* borrowed: must not free w's planes */
	lut_weight_done(&w);
	free(y1);
	free(y);
	free(x);
	qweight_done(&q);
}

static void test_rejects_bad_input(void **state)
{
	struct qweight q;
	struct lut_weight w;
	float x[8] = { 0 }, y[8];
	struct lut_opts o = { .isa = LUT_ISA_COUNT };

	test_rng_state = 7;
	make_qweight(&q, 8, 8, 2, QW_LAYOUT_COL);
	q.alpha[3] = 0.3f; /* not a short sum of powers of two */
	assert_int_equal(lut_pack(&q, &w), -EOPNOTSUPP);
	q.alpha[3] = 0.25f;
	q.col_block = 3;
	assert_int_equal(lut_pack(&q, &w), -EOPNOTSUPP);
	q.col_block = 1;
	/* term exponents spanning more than the 8-bit biased code holds: 2^127 and 2^-140 */
	q.alpha[3] = ldexpf(1.0f, 127);
	q.alpha[4] = ldexpf(1.0f, -140);
	assert_int_equal(lut_pack(&q, &w), -EOPNOTSUPP);
	q.alpha[4] = ldexpf(1.0f, -126); /* a span of 253: fine */
	assert_int_equal(lut_pack(&q, &w), 0);
	lut_weight_done(&w);
	q.alpha[3] = 0.25f;
	q.alpha[4] = 0.5f;
	assert_int_equal(lut_pack(NULL, &w), -EINVAL);
	assert_int_equal(lut_pack(&q, &w), 0);
	assert_int_equal(lut_gemm(&w, 0, x, y, NULL), -EINVAL);
	assert_int_equal(lut_gemm(&w, 1, NULL, y, NULL), -EINVAL);
	assert_int_equal(lut_gemm(&w, 1, x, y, &o), -EOPNOTSUPP);
	assert_int_equal(lut_plane_bytes(0, 8, 2, QW_LAYOUT_COL), 0);
	assert_int_equal(lut_plane_bytes(8, 8, 5, QW_LAYOUT_COL), 0);
	lut_weight_done(&w);
	lut_weight_done(&w); /* twice is fine */
	qweight_done(&q);
}

/* The exponent add equals ldexpf wherever the result is normal, and flushes the rest. */
static void test_shift_is_exact_ldexp(void **state)
{
	test_rng_state = 8;
	for (int i = 0; i < 100000; i++) {
		float x = (float)((test_urand() - 0.5) * ldexp(1.0, (int)(test_rng() % 60) - 30));
		int32_t e = (int32_t)(test_rng() % 61) - 30;
		float want = ldexpf(x, e), got = lut_shift_f32(x, e);

		if (fpclassify(want) == FP_NORMAL)
			assert_memory_equal(&got, &want, sizeof(float));
	}
	assert_true(lut_shift_f32(0.0f, 5) == 0.0f);
	assert_true(lut_shift_f32(1.0f, -127) == 0.0f);
	assert_true(isinf(lut_shift_f32(1.0f, 128)));
	assert_true(signbit(lut_shift_f32(-1.0f, -200)));
}

int test_lut_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shift_is_exact_ldexp),
		cmocka_unit_test(test_pack_unpack_round_trip),
		cmocka_unit_test(test_ref_matches_dense_within_table_error),
		cmocka_unit_test(test_avx2_equals_ref),
		cmocka_unit_test(test_avx512_equals_ref),
		cmocka_unit_test(test_gemm_equals_repeated_gemv),
		cmocka_unit_test(test_pool_split_is_exact),
		cmocka_unit_test(test_gemm_multi_equals_single_calls),
		cmocka_unit_test(test_wrap_borrows_planes),
		cmocka_unit_test(test_rejects_bad_input),
	};
	return cmocka_run_group_tests_name("kernels/lut", tests, NULL, NULL);
}
