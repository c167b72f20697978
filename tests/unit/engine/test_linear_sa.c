// SPDX-License-Identifier: MIT
/*
 * The shift-add linear backend against the dense one over qweight_dequant() of the same
 * weight, and both against a double-precision product computed here. Shapes of SmolLM2's
 * layers (576x576, 1536x576, 576x1536) and ragged ones, both layouts, m = 1 and m > 1
 * (including more tokens than one kernel batch), on a pool of 2 threads.
 */
#include "common/pool.h"
#include "engine/linear.h"
#include "engine/sa_format.h"
#include "kernels/lut.h"
#include "kernels/qweight.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/lib/rand_data.h"

/*
 * Stated accuracy of the kernels (kernels/README.md): relative L2 error of one token's
 * output against the exact product, on activations with 1/64 outliers of 20x (measured
 * worst 1.8e-4 with int16 tables; int8 tables gave up to 4.6% here).
 */
#define SA_TOL_REL_L2 1e-3
/* The dense f32 BLAS path against the double product (f32 rounding only). */
#define DENSE_TOL_REL_L2 1e-5

static void make_qweight(struct qweight *q, uint32_t n, uint32_t k, uint32_t bits,
			 enum qw_layout layout)
{
	assert_int_equal(test_random_qweight(q, n, k, bits, layout, -5), 0);
}

struct pair {
	struct qweight q;
	struct linear sa;
	struct linear dense;
	float *w; /* [n][k] dequantized, owned by dense */
};

static void pair_init(struct pair *p, uint32_t n, uint32_t k, uint32_t bits, enum qw_layout layout,
		      struct pool *pool)
{
	make_qweight(&p->q, n, k, bits, layout);
	p->w = malloc((size_t)n * k * sizeof(float));
	assert_non_null(p->w);
	qweight_dequant(&p->q, p->w);
	assert_int_equal(linear_init_dense(&p->dense, p->w, n, k, 1), 0);
	assert_int_equal(linear_init_shiftadd(&p->sa, &p->q, pool), 0);
	assert_int_equal(p->sa.n_out, n);
	assert_int_equal(p->sa.n_in, k);
}

static void pair_done(struct pair *p)
{
	linear_done(&p->sa);
	linear_done(&p->dense);
	qweight_done(&p->q);
}

/* Relative L2 error of @got against x W^T in double, worst over the @m tokens. */
static double worst_rel_err(const float *w, uint32_t n, uint32_t k, uint32_t m, const float *x,
			    const float *got)
{
	double worst = 0;

	for (uint32_t j = 0; j < m; j++) {
		double e2 = 0, r2 = 0;

		for (uint32_t r = 0; r < n; r++) {
			double ref = 0, d;

			for (uint32_t c = 0; c < k; c++)
				ref += (double)w[(size_t)r * k + c] * x[(size_t)j * k + c];
			d = got[(size_t)j * n + r] - ref;
			e2 += d * d;
			r2 += ref * ref;
		}
		if (r2 > 0 && sqrt(e2 / r2) > worst)
			worst = sqrt(e2 / r2);
	}
	return worst;
}

static double check_shape(uint32_t n, uint32_t k, uint32_t bits, enum qw_layout layout, uint32_t m,
			  struct pool *pool)
{
	struct pair p;
	float *x, *y_sa, *y_dense;
	double e_sa, e_dense;

	pair_init(&p, n, k, bits, layout, pool);
	x = malloc((size_t)m * k * sizeof(float));
	y_sa = malloc((size_t)m * n * sizeof(float));
	y_dense = malloc((size_t)m * n * sizeof(float));
	assert_non_null(x);
	assert_non_null(y_sa);
	assert_non_null(y_dense);
	for (size_t i = 0; i < (size_t)m * k; i++)
		x[i] = test_act();
	linear_forward(&p.sa, x, y_sa, m);
	linear_forward(&p.dense, x, y_dense, m);
	e_sa = worst_rel_err(p.w, n, k, m, x, y_sa);
	e_dense = worst_rel_err(p.w, n, k, m, x, y_dense);
	if (e_sa > SA_TOL_REL_L2 || e_dense > DENSE_TOL_REL_L2)
		fail_msg("%ux%u q=%u layout=%d m=%u: shift-add rel err %.3g, dense %.3g", n, k,
			 bits, layout, m, e_sa, e_dense);
	free(y_dense);
	free(y_sa);
	free(x);
	pair_done(&p);
	return e_sa;
}

static void test_shiftadd_equals_dense_on_model_shapes(void **state)
{
	static const struct {
		uint32_t n, k, bits, m;
	} shapes[] = {
		{ 576, 576, 3, 1 },  { 576, 576, 3, 7 },  { 1536, 576, 3, 1 }, { 1536, 576, 2, 3 },
		{ 576, 1536, 3, 1 }, { 576, 1536, 4, 2 }, { 192, 576, 3, 70 }, { 1, 1, 3, 1 },
		{ 77, 100, 2, 5 },   { 333, 1001, 3, 2 }, { 49, 17, 4, 1 },
	};
	struct pool *pool;
	double worst = 0;

	test_rng_state = 11;
	assert_int_equal(pool_new(2, NULL, &pool), 0);
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		/* the layouts the kernels run (QW_LAYOUT_ROW is bcq's, refused below) */
		for (int layout = QW_LAYOUT_COL; layout <= QW_LAYOUT_BLOCK; layout++) {
			double e = check_shape(shapes[i].n, shapes[i].k, shapes[i].bits,
					       (enum qw_layout)layout, shapes[i].m, pool);

			worst = e > worst ? e : worst;
		}
	}
	print_message("shift-add linear vs exact: worst relative L2 error %.3g\n", worst);
	pool_free(pool);
}

/* A batch of m tokens gives exactly what m one-token forwards give, with or without a pool. */
static void test_batch_equals_single_tokens(void **state)
{
	const uint32_t n = 300, k = 257, m = 70;
	struct pool *pool;
	struct pair p, p1;
	float *x, *y, *y1;

	test_rng_state = 12;
	assert_int_equal(pool_new(2, NULL, &pool), 0);
	pair_init(&p, n, k, 3, QW_LAYOUT_BLOCK, pool);
	test_rng_state = 12;
	pair_init(&p1, n, k, 3, QW_LAYOUT_BLOCK, NULL);
	x = malloc((size_t)m * k * sizeof(float));
	y = malloc((size_t)m * n * sizeof(float));
	y1 = malloc(n * sizeof(float));
	assert_non_null(x);
	assert_non_null(y);
	assert_non_null(y1);
	for (size_t i = 0; i < (size_t)m * k; i++)
		x[i] = test_act();
	linear_forward(&p.sa, x, y, m);
	for (uint32_t j = 0; j < m; j++) {
		linear_forward(&p1.sa, x + (size_t)j * k, y1, 1);
		assert_memory_equal(y1, y + (size_t)j * n, n * sizeof(float));
	}
	free(y1);
	free(y);
	free(x);
	pair_done(&p1);
	pair_done(&p);
	pool_free(pool);
}

/* The kernels go through a caller's runner, and give exactly the calling-thread result. */
static void test_caller_runner_runs_the_kernels(void **state)
{
	const uint32_t n = 200, k = 96, m = 5;
	struct counting_runner cr = { 0 };
	struct lut_runner r = { .run = counting_run, .ctx = &cr, .n_workers = 3 };
	struct linear l = { 0 };
	struct pair p;
	float x[5 * 96], y[5 * 200], want[5 * 200];

	test_rng_state = 16;
	pair_init(&p, n, k, 3, QW_LAYOUT_BLOCK, NULL);
	for (uint32_t i = 0; i < m * k; i++)
		x[i] = test_act();
	linear_forward(&p.sa, x, want, m);
	assert_int_equal(linear_init_shiftadd_runner(&l, &p.q, &r), 0);
	linear_forward(&l, x, y, m);
	assert_true(cr.n_calls > 0);
	assert_true(cr.n_tasks >= cr.n_calls);
	assert_memory_equal(y, want, sizeof(y));
	linear_done(&l);
	/* a runner that claims no workers is refused */
	r.n_workers = 0;
	assert_int_equal(linear_init_shiftadd_runner(&l, &p.q, &r), -EINVAL);
	pair_done(&p);
}

struct fwd_job {
	const struct linear *l;
	const float *x;
	float *y;
	uint32_t m;
	int rounds;
};

static void *fwd_thread(void *arg)
{
	struct fwd_job *j = arg;

	for (int i = 0; i < j->rounds; i++)
		linear_forward(j->l, j->x, j->y, j->m);
	return NULL;
}

/* Forwards from two threads at once (per-thread scratch, one shared pool) stay exact. */
static void test_concurrent_forwards(void **state)
{
	const uint32_t n = 576, k = 576;
	struct pool *pool;
	struct pair p;
	float *x, *want, *y[2];
	struct fwd_job jobs[2];
	pthread_t th[2];

	test_rng_state = 13;
	assert_int_equal(pool_new(2, NULL, &pool), 0);
	pair_init(&p, n, k, 3, QW_LAYOUT_COL, pool);
	x = malloc(4 * (size_t)k * sizeof(float));
	want = malloc(4 * (size_t)n * sizeof(float));
	assert_non_null(x);
	assert_non_null(want);
	for (size_t i = 0; i < 4 * (size_t)k; i++)
		x[i] = test_act();
	linear_forward(&p.sa, x, want, 4);
	for (int t = 0; t < 2; t++) {
		y[t] = malloc(4 * (size_t)n * sizeof(float));
		assert_non_null(y[t]);
		jobs[t] = (struct fwd_job){ .l = &p.sa, .x = x, .y = y[t], .m = 4, .rounds = 20 };
		assert_int_equal(pthread_create(&th[t], NULL, fwd_thread, &jobs[t]), 0);
	}
	for (int t = 0; t < 2; t++) {
		assert_int_equal(pthread_join(th[t], NULL), 0);
		assert_memory_equal(y[t], want, 4 * (size_t)n * sizeof(float));
		free(y[t]);
	}
	free(want);
	free(x);
	pair_done(&p);
	pool_free(pool);
}

static void test_bias_is_added(void **state)
{
	struct pair p;
	float x[40], y[9], y0[9], bias[9];

	test_rng_state = 14;
	pair_init(&p, 9, 40, 2, QW_LAYOUT_COL, NULL);
	for (int i = 0; i < 40; i++)
		x[i] = test_act();
	for (int i = 0; i < 9; i++)
		bias[i] = (float)i - 4.0f;
	linear_forward(&p.sa, x, y0, 1);
	p.sa.bias = bias;
	linear_forward(&p.sa, x, y, 1);
	for (int i = 0; i < 9; i++)
		assert_true(y[i] == y0[i] + bias[i]);
	pair_done(&p);
}

/*
 * Shift-add layers that share an input, on a pool of 2: linear_forward_shared() runs them
 * one task per layer (lut_gemm_multi) and gives, bit for bit, what separate forwards (each
 * split over the pool) give, plain and wrapped in randomized Hadamard transforms with one
 * input seed (with a bias on one layer), for 1, 3, 16, 20 and 70 tokens (more than one
 * SA_MAX_M slice). Fewer layers than workers, or a layer off the pool, take the separate
 * path.
 */
static void test_shared_forward_on_a_pool_equals_separate_forwards(void **state)
{
	enum {
		N = 3,
		K = 64
	};
	static const uint32_t n_out[N] = { 96, 32, 32 }, ms[] = { 1, 3, 16, 20, 70 };
	static float bias[32];
	struct qweight q[N];
	struct linear sa[N], rl[N], lone;
	struct pool *pool;
	float *x, *y[N], *want;

	test_rng_state = 16;
	assert_int_equal(pool_new(2, NULL, &pool), 0);
	for (uint32_t i = 0; i < 32; i++)
		bias[i] = test_act();
	for (int i = 0; i < N; i++) {
		struct sa_rht rht = { .mode = i == 1 ? SA_RHT_INPUT : SA_RHT_BOTH,
				      .seed_in = 7,
				      .seed_out = 99 + (uint64_t)i };

		make_qweight(&q[i], n_out[i], K, 3, QW_LAYOUT_COL);
		assert_int_equal(linear_init_shiftadd(&sa[i], &q[i], pool), 0);
		assert_int_equal(linear_wrap_rht(&rl[i], &sa[i], &rht), 0);
		y[i] = malloc((size_t)70 * n_out[i] * sizeof(float));
		assert_non_null(y[i]);
	}
	rl[2].bias = bias;
	assert_int_equal(linear_init_shiftadd(&lone, &q[1], NULL), 0);
	x = malloc((size_t)70 * K * sizeof(float));
	want = malloc((size_t)70 * 96 * sizeof(float));
	assert_true(x && want);
	for (size_t j = 0; j < (size_t)70 * K; j++)
		x[j] = test_act();
	{
		const struct linear *plain[N] = { &sa[0], &sa[1], &sa[2] };
		const struct linear *mixed[N] = { &sa[0], &lone, &sa[2] };

		assert_true(linear_sa_forward_multi(plain, N, x, y, 1));
		assert_true(linear_sa_forward_multi(plain, 2, x, y, 1));
		assert_false(linear_sa_forward_multi(plain, 1, x, y, 1));
		assert_false(linear_sa_forward_multi(mixed, N, x, y, 1));
	}
	for (size_t mi = 0; mi < sizeof(ms) / sizeof(ms[0]); mi++) {
		uint32_t m = ms[mi];
		const struct linear *groups[2][N] = { { &sa[0], &sa[1], &sa[2] },
						      { &rl[0], &rl[1], &rl[2] } };

		for (int g = 0; g < 2; g++) {
			linear_forward_shared(groups[g], N, x, y, m);
			for (int i = 0; i < N; i++) {
				linear_forward(groups[g][i], x, want, m);
				assert_memory_equal(y[i], want,
						    (size_t)m * n_out[i] * sizeof(float));
			}
		}
	}
	for (int i = 0; i < N; i++) {
		linear_done(&rl[i]);
		qweight_done(&q[i]);
		free(y[i]);
	}
	linear_done(&lone);
	free(x);
	free(want);
	pool_free(pool);
}

static void test_rejects_unpackable_weight(void **state)
{
	struct qweight q;
	struct linear l = { 0 };

	test_rng_state = 15;
	make_qweight(&q, 16, 16, 2, QW_LAYOUT_COL);
	q.alpha[5] = 0.3f; /* not a short sum of powers of two (apot = 0 baselines) */
	assert_int_equal(linear_init_shiftadd(&l, &q, NULL), -EOPNOTSUPP);
	assert_null(l.ops);
	assert_int_equal(linear_init_shiftadd(&l, NULL, NULL), -EINVAL);
	linear_done(&l); /* zeroed: a no-op */
	qweight_done(&q);
	/* APoT alphas, but per row and 128 columns (bcq's LUT-GEMM layout): no kernel for it */
	make_qweight(&q, 16, 200, 2, QW_LAYOUT_ROW);
	assert_int_equal(linear_init_shiftadd(&l, &q, NULL), -EOPNOTSUPP);
	assert_null(l.ops);
	qweight_done(&q);
}

int test_linear_sa_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shiftadd_equals_dense_on_model_shapes),
		cmocka_unit_test(test_batch_equals_single_tokens),
		cmocka_unit_test(test_caller_runner_runs_the_kernels),
		cmocka_unit_test(test_concurrent_forwards),
		cmocka_unit_test(test_bias_is_added),
		cmocka_unit_test(test_shared_forward_on_a_pool_equals_separate_forwards),
		cmocka_unit_test(test_rejects_unpackable_weight),
	};
	return cmocka_run_group_tests_name("engine/linear_sa", tests, NULL, NULL);
}
