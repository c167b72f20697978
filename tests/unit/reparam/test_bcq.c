// SPDX-License-Identifier: MIT
#include "reparam/internal.h"
#include "tests/unit/reparam/synth.h"

#include <lapacke.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static double brute_value(const double *alpha, uint32_t q, uint32_t c)
{
	double s = 0;

	for (uint32_t i = q; i-- > 0;)
		s += (c >> i & 1) ? alpha[i] : -alpha[i];
	return s;
}

/* The binary-search assignment equals brute force over all 2^q sign patterns. */
static void test_bcq_assign_matches_brute_force(void **state)
{
	double alpha[QW_MAX_BITS], v[200];
	uint8_t code[200];
	struct rng r;

	rng_seed(&r, 10);
	for (int it = 0; it < 400; it++) {
		uint32_t q = 1 + it % QW_MAX_BITS;

		for (uint32_t i = 0; i < q; i++)
			alpha[i] = rng_normal(&r);
		if (it % 7 == 0 && q > 1)
			alpha[1] = alpha[0]; /* duplicate candidates */
		for (uint32_t e = 0; e < 200; e++)
			v[e] = 3 * rng_normal(&r);
		bcq_assign(alpha, q, v, 200, code);
		for (uint32_t e = 0; e < 200; e++) {
			double best = INFINITY;

			for (uint32_t c = 0; c < (1u << q); c++)
				best = fmin(best, fabs(v[e] - brute_value(alpha, q, c)));
			assert_true(code[e] < (1u << q));
			assert_true(fabs(v[e] - brute_value(alpha, q, code[e])) <= best + 1e-12);
		}
	}
}

/* Least squares from code histograms equals LAPACK dgels on the full weighted system. */
static void test_bcq_lsq_matches_dgels(void **state)
{
	enum {
		N = 300
	};
	double v[N], wt[N], alpha[QW_MAX_BITS], *A, b[N];
	uint8_t code[N];
	struct rng r;

	A = malloc(N * QW_MAX_BITS * sizeof(double));
	rng_seed(&r, 11);
	for (int it = 0; it < 100; it++) {
		uint32_t q = 1 + it % QW_MAX_BITS;
		bool weighted = it % 2;

		for (uint32_t e = 0; e < N; e++) {
			v[e] = rng_normal(&r);
			wt[e] = weighted ? rng_uniform(&r) * 3 : 1;
			code[e] = (uint8_t)(rng_next(&r) % (1u << q));
		}
		assert_int_equal(bcq_lsq(q, v, weighted ? wt : NULL, code, N, alpha), 0);
		for (uint32_t e = 0; e < N; e++) {
			double s = sqrt(wt[e]);

			for (uint32_t i = 0; i < q; i++)
				A[e + i * N] = (code[e] >> i & 1) ? s : -s;
			b[e] = s * v[e];
		}
		assert_int_equal(
			LAPACKE_dgels(LAPACK_COL_MAJOR, 'N', N, (lapack_int)q, 1, A, N, b, N), 0);
		for (uint32_t i = 0; i < q; i++)
			assert_true(fabs(alpha[i] - b[i]) <= 1e-9 * (1 + fabs(b[i])));
	}
	free(A);
}

/* Rank-deficient codes (plane 1 == plane 0): still a least-squares minimizer. */
static void test_bcq_lsq_rank_deficient(void **state)
{
	enum {
		N = 64
	};
	double v[N], alpha[3], mean_pos = 0, mean_neg = 0;
	uint8_t code[N];
	uint32_t npos = 0;
	struct rng r;

	rng_seed(&r, 12);
	for (uint32_t e = 0; e < N; e++) {
		v[e] = rng_normal(&r);
		code[e] = v[e] > 0 ? 3 : 0; /* b0 == b1, b2 == -1 everywhere */
	}
	assert_int_equal(bcq_lsq(3, v, NULL, code, N, alpha), 0);
	/* the best fit of a two-level code puts each level at its group mean */
	for (uint32_t e = 0; e < N; e++) {
		if (code[e]) {
			mean_pos += v[e];
			npos++;
		} else {
			mean_neg += v[e];
		}
	}
	mean_pos /= npos;
	mean_neg /= N - npos;
	assert_true(fabs(bcq_value(alpha, 3, 3) - mean_pos) < 1e-9);
	assert_true(fabs(bcq_value(alpha, 3, 0) - mean_neg) < 1e-9);
}

/* Without APoT each round can only lower the error; the best iterate is returned. */
static void test_bcq_error_never_increases(void **state)
{
	enum {
		N = 512,
		R = 50
	};
	double v[N], alpha[QW_MAX_BITS], trace[R + 1], err;
	uint8_t code[N];
	struct rng r;

	rng_seed(&r, 13);
	for (int it = 0; it < 24; it++) {
		struct bcq_cfg c = { .bits = 1 + it % QW_MAX_BITS, .apot = 0, .rounds = R };

		for (uint32_t e = 0; e < N; e++)
			v[e] = rng_normal(&r) * (it % 3 ? 1 : exp(rng_normal(&r)));
		assert_int_equal(bcq_fit(&c, v, NULL, N, alpha, code, &err, trace), 0);
		for (uint32_t t = 1; t <= R; t++)
			assert_true(trace[t] <= trace[t - 1] * (1 + 1e-12));
		assert_true(err <= trace[R] * (1 + 1e-12));
		assert_true(fabs(err - bcq_error(alpha, c.bits, v, NULL, code, N)) <= 1e-9 * err);
		for (uint32_t i = 0; i + 1 < c.bits; i++)
			assert_true(alpha[i] >= alpha[i + 1] && alpha[i + 1] >= 0);
		/* refinement beats the greedy start on Gaussian data once q >= 2 */
		if (c.bits >= 2)
			assert_true(err < trace[0]);
	}
}

/* With APoT the error may go up between rounds, so the returned iterate must be the best. */
static void test_bcq_apot_keeps_best_iterate(void **state)
{
	enum {
		N = 256,
		R = 30
	};
	double v[N], alpha[QW_MAX_BITS], trace[R + 1], err, best;
	uint8_t code[N];
	struct rng r;

	rng_seed(&r, 14);
	for (int it = 0; it < 40; it++) {
		struct bcq_cfg c = { .bits = 1 + it % QW_MAX_BITS,
				     .apot = 1 + it % 3,
				     .rounds = R };

		for (uint32_t e = 0; e < N; e++)
			v[e] = 0.02 * rng_normal(&r);
		assert_int_equal(bcq_fit(&c, v, NULL, N, alpha, code, &err, trace), 0);
		best = trace[0];
		for (uint32_t t = 1; t <= R; t++)
			best = fmin(best, trace[t]);
		assert_true(err == best);
		assert_true(fabs(err - bcq_error(alpha, c.bits, v, NULL, code, N)) <= 1e-12 * err);
		for (uint32_t i = 0; i < c.bits; i++) {
			int w = synth_naf_weight((float)alpha[i], NULL, NULL);

			assert_true(alpha[i] == (double)(float)alpha[i]);
			assert_true(w >= 0 && (uint32_t)w <= c.apot);
		}
	}
}

/* Zero-weight elements do not influence alpha: same as fitting the weighted subset alone. */
static void test_bcq_zero_weights_ignore_elements(void **state)
{
	enum {
		N = 200
	};
	double v[N], wt[N], sub[N], a1[3], a2[3], e1, e2;
	uint8_t c1[N], c2[N];
	uint32_t m = 0;
	struct bcq_cfg c = { .bits = 3, .apot = 0, .rounds = 20 };
	struct rng r;

	rng_seed(&r, 15);
	for (uint32_t e = 0; e < N; e++) {
		v[e] = rng_normal(&r);
		wt[e] = e % 3 == 0 ? 0 : 1;
		if (wt[e])
			sub[m++] = v[e];
	}
	assert_int_equal(bcq_fit(&c, v, wt, N, a1, c1, &e1, NULL), 0);
	assert_int_equal(bcq_fit(&c, sub, NULL, m, a2, c2, &e2, NULL), 0);
	for (uint32_t i = 0; i < 3; i++)
		assert_true(fabs(a1[i] - a2[i]) <= 1e-12);
	assert_true(fabs(e1 - e2) <= 1e-9 * e2);
}

int test_bcq_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bcq_assign_matches_brute_force),
		cmocka_unit_test(test_bcq_lsq_matches_dgels),
		cmocka_unit_test(test_bcq_lsq_rank_deficient),
		cmocka_unit_test(test_bcq_error_never_increases),
		cmocka_unit_test(test_bcq_apot_keeps_best_iterate),
		cmocka_unit_test(test_bcq_zero_weights_ignore_elements),
	};
	return cmocka_run_group_tests_name("reparam/bcq", tests, NULL, NULL);
}
