// SPDX-License-Identifier: MIT
#include "reparam/internal.h"
#include "tests/unit/reparam/synth.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

enum {
	MAX_L = 7,
	MAX_J = 4
};

struct inst {
	struct bitalloc_problem p;
	double err[MAX_L * MAX_J];
	uint64_t cost[MAX_L * MAX_J];
	uint64_t params[MAX_L];
	uint64_t budget;
};

/* Random layers with options at 2, 3, 4, ... bits, alpha overhead, error falling with bits. */
static void make_inst(struct rng *r, struct inst *t, uint32_t L, uint32_t J)
{
	uint64_t total = 0, lo = 0, hi = 0;

	for (uint32_t l = 0; l < L; l++) {
		uint32_t rows = 8 * (1 + (uint32_t)(rng_next(r) % 40));
		uint32_t cols = 8 * (1 + (uint32_t)(rng_next(r) % 40));
		double sens = exp(2 * rng_normal(r));

		t->params[l] = (uint64_t)rows * cols;
		total += t->params[l];
		for (uint32_t j = 0; j < J; j++) {
			uint32_t bits = 2 + j;

			t->cost[l * J + j] = t->params[l] * bits + (uint64_t)bits * cols * 24;
			t->err[l * J + j] = sens * pow(4, -(double)bits) * (0.5 + rng_uniform(r));
		}
		lo += t->cost[l * J];
		hi += t->cost[l * J + J - 1];
	}
	t->p = (struct bitalloc_problem){ .n_layers = L,
					  .n_choices = J,
					  .err = t->err,
					  .cost_bits = t->cost,
					  .n_params = t->params };
	/* budgets from just below the cheapest to above the dearest assignment */
	t->p.avg_bits = ((double)lo + (rng_uniform(r) * 1.1 - 0.02) * (double)(hi - lo)) / total;
	t->budget = (uint64_t)floorl((long double)t->p.avg_bits * total);
}

static double cost_of(const struct inst *t, const uint32_t *ch, double *ret_err)
{
	uint64_t c = 0;
	double e = 0;

	for (uint32_t l = 0; l < t->p.n_layers; l++) {
		c += t->cost[l * t->p.n_choices + ch[l]];
		e += t->err[l * t->p.n_choices + ch[l]];
	}
	*ret_err = e;
	return (double)c;
}

/* Least error over all J^L assignments within budget; INFINITY if none fits. */
static double brute(const struct inst *t)
{
	uint32_t L = t->p.n_layers, J = t->p.n_choices, ch[MAX_L] = { 0 };
	double best = INFINITY;

	for (;;) {
		double e, c = cost_of(t, ch, &e);
		uint32_t l = 0;

		if (c <= (double)t->budget && e < best)
			best = e;
		while (l < L && ++ch[l] == J)
			ch[l++] = 0;
		if (l == L)
			return best;
	}
}

static void test_bitalloc_exact_matches_brute_force(void **state)
{
	struct rng r;
	int feasible = 0;

	rng_seed(&r, 50);
	for (int it = 0; it < 300; it++) {
		struct inst t;
		uint32_t ch[MAX_L];
		bool exact = false;
		double e, best;
		int ret;

		make_inst(&r, &t, 1 + it % MAX_L, 1 + (it / MAX_L) % MAX_J);
		best = brute(&t);
		ret = bitalloc_exact(&t.p, 0, ch, &exact, NULL);
		if (isinf(best)) {
			assert_int_equal(ret, -ENOSPC);
			continue;
		}
		feasible++;
		assert_int_equal(ret, 0);
		assert_true(exact);
		assert_true(cost_of(&t, ch, &e) <= (double)t.budget);
		assert_true(fabs(e - best) <= 1e-12 * best);
	}
	assert_true(feasible > 250);
}

/* A table too small for the exact grid: costs rounded up, so still within budget. */
static void test_bitalloc_coarse_grid_stays_feasible(void **state)
{
	struct rng r;
	int coarse = 0;

	rng_seed(&r, 51);
	for (int it = 0; it < 200; it++) {
		struct inst t;
		uint32_t ch[MAX_L];
		bool exact = true;
		double e, best;

		make_inst(&r, &t, MAX_L, 3);
		best = brute(&t);
		if (isinf(best))
			continue;
		assert_int_equal(bitalloc_exact(&t.p, 3 * MAX_L, ch, &exact, NULL), 0);
		assert_true(cost_of(&t, ch, &e) <= (double)t.budget);
		assert_true(e >= best * (1 - 1e-12));
		coarse += !exact;
	}
	assert_true(coarse > 100);
}

/* Proxy: within budget, never better than exact, higher score never gets fewer bits. */
static void test_bitalloc_proxy(void **state)
{
	struct rng r;
	int mixed = 0;

	rng_seed(&r, 52);
	for (int it = 0; it < 300; it++) {
		struct inst t;
		uint32_t px[MAX_L], ex[MAX_L], L = 1 + it % MAX_L;
		double score[MAX_L], ep, ee;

		make_inst(&r, &t, L, 3);
		for (uint32_t l = 0; l < L; l++) {
			t.params[l] = 4096; /* same size: the ranking alone decides */
			for (uint32_t j = 0; j < 3; j++)
				t.cost[l * 3 + j] = 4096 * (2 + j) + 512 * (2 + j);
			score[l] = rng_uniform(&r);
		}
		t.p.avg_bits = 2 + 0.125 * (2 + (it % 9)) * (1 + 512.0 / 4096) / 2;
		t.budget = (uint64_t)floorl((long double)t.p.avg_bits * 4096 * L);
		if (isinf(brute(&t))) {
			assert_int_equal(bitalloc_proxy(&t.p, score, px, NULL), -ENOSPC);
			continue;
		}
		assert_int_equal(bitalloc_proxy(&t.p, score, px, NULL), 0);
		assert_int_equal(bitalloc_exact(&t.p, 0, ex, NULL, NULL), 0);
		assert_true(cost_of(&t, px, &ep) <= (double)t.budget);
		cost_of(&t, ex, &ee);
		assert_true(ee <= ep * (1 + 1e-12));
		for (uint32_t a = 0; a < L; a++)
			for (uint32_t b = 0; b < L; b++)
				if (score[a] > score[b])
					assert_true(px[a] >= px[b]);
		for (uint32_t l = 1; l < L; l++)
			if (px[l] != px[0]) {
				mixed++;
				break;
			}
	}
	assert_true(mixed > 50);
}

static void test_bitalloc_bad_problems(void **state)
{
	double err[2] = { 1, NAN };
	uint64_t cost[2] = { 10, 20 }, params[1] = { 5 };
	struct bitalloc_problem p = { .n_layers = 1,
				      .n_choices = 2,
				      .err = err,
				      .cost_bits = cost,
				      .n_params = params,
				      .avg_bits = 4 };
	struct errbuf e = { { 0 } };
	uint32_t ch[1];
	double score[1] = { 1 };

	assert_int_equal(bitalloc_exact(&p, 0, ch, NULL, &e), -EINVAL);
	err[1] = 0.5;
	p.avg_bits = 1.9; /* 9.5 bits < 10 */
	assert_int_equal(bitalloc_exact(&p, 0, ch, NULL, &e), -ENOSPC);
	assert_int_equal(bitalloc_proxy(&p, score, ch, &e), -ENOSPC);
	p.avg_bits = 4;
	assert_int_equal(bitalloc_exact(&p, 0, ch, NULL, &e), 0);
	assert_int_equal(ch[0], 1);
	p.n_layers = 0;
	assert_int_equal(bitalloc_exact(&p, 0, ch, NULL, &e), -EINVAL);
}

/* The proxy score is ||V||_F var(V) with V = W / diag(U): check on H = c I by hand. */
static void test_bitalloc_proxy_score(void **state)
{
	enum {
		N = 8,
		K = 16
	};
	float W[N * K];
	double H[K * K] = { 0 }, s1, s2, sum = 0, sq = 0, u, v, ref;
	struct errbuf e = { { 0 } };

	synth_weights(N, K, 53, W);
	for (uint32_t j = 0; j < K; j++)
		H[j * K + j] = 2;
	assert_int_equal(bitalloc_proxy_score(W, N, K, H, 0.01, &s1, &e), 0);
	u = 1 / sqrt(2 * 1.01); /* U = chol((2.02 I)^-1) */
	for (uint32_t i = 0; i < N * K; i++) {
		v = W[i] / u;
		sum += v;
		sq += v * v;
	}
	ref = sqrt(sq) * (sq - sum * sum / (N * K)) / (N * K - 1);
	assert_true(fabs(s1 - ref) <= 1e-9 * ref);
	/* and it is cubic in the weight scale */
	for (uint32_t i = 0; i < N * K; i++)
		W[i] *= 2;
	assert_int_equal(bitalloc_proxy_score(W, N, K, H, 0.01, &s2, &e), 0);
	assert_true(fabs(s2 - 8 * s1) <= 1e-9 * s2);
}

/*
 * Wiring as the convert tool will do it: layers of different sensitivity quantized at 2/3/4
 * bits, costs from reparam_storage_bits(). At the budget of uniform 3 bits the exact choice is
 * never worse than uniform 3 bits, nor than the proxy.
 */
static void test_bitalloc_on_quantized_layers(void **state)
{
	enum {
		L = 5,
		N = 32,
		K = 64,
		J = 3
	};
	double err[L * J], score[L];
	uint64_t cost[L * J], params[L], uni = 0;
	uint32_t ex[L], px[L];
	float *W = malloc(N * K * sizeof(float));
	double *H = malloc(K * K * sizeof(double)), e_uni = 0, e_ex = 0, e_px = 0;
	struct bitalloc_problem p = { L, J, err, cost, params, 0 };

	for (uint32_t l = 0; l < L; l++) {
		synth_weights(N, K, 60 + l, W);
		for (uint32_t i = 0; i < N * K; i++)
			W[i] *= (float)(1 + l); /* later layers are more sensitive */
		synth_hessian(K, 200, 70 + l, NULL, 0, H);
		params[l] = N * K;
		assert_int_equal(bitalloc_proxy_score(W, N, K, H, 0.01, &score[l], NULL), 0);
		for (uint32_t j = 0; j < J; j++) {
			struct reparam_opts o;
			struct reparam_result r;

			reparam_opts_init(&o, REPARAM_SHIFTADD_ACC, 2 + j);
			o.rounds = 10;
			assert_int_equal(reparam_quantize(&o, W, N, K, H, &r, NULL), 0);
			err[l * J + j] = r.err_output;
			cost[l * J + j] = reparam_storage_bits(&o, N, K);
			reparam_result_done(&r);
		}
		uni += cost[l * J + 1];
		e_uni += err[l * J + 1];
	}
	p.avg_bits = (double)uni / (L * N * K);
	assert_int_equal(bitalloc_exact(&p, 0, ex, NULL, NULL), 0);
	assert_int_equal(bitalloc_proxy(&p, score, px, NULL), 0);
	for (uint32_t l = 0; l < L; l++) {
		e_ex += err[l * J + ex[l]];
		e_px += err[l * J + px[l]];
	}
	assert_true(e_ex <= e_uni && e_ex <= e_px);
	free(H);
	free(W);
}

int test_bitalloc_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bitalloc_exact_matches_brute_force),
		cmocka_unit_test(test_bitalloc_coarse_grid_stays_feasible),
		cmocka_unit_test(test_bitalloc_proxy),
		cmocka_unit_test(test_bitalloc_bad_problems),
		cmocka_unit_test(test_bitalloc_proxy_score),
		cmocka_unit_test(test_bitalloc_on_quantized_layers),
	};
	return cmocka_run_group_tests_name("reparam/bitalloc", tests, NULL, NULL);
}
