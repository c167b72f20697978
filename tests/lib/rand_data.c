// SPDX-License-Identifier: MIT
#include "tests/lib/rand_data.h"

#include <math.h>

#include "kernels/qweight.h"

uint64_t test_rng_state;

uint64_t test_rng(void)
{
	uint64_t z = (test_rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double test_urand(void)
{
	return (double)(test_rng() >> 11) / 9007199254740992.0;
}

float test_act(void)
{
	double s = test_urand() + test_urand() + test_urand() + test_urand() - 2.0;

	return (float)(test_rng() % 64 == 0 ? s * 20 : s);
}

/* sign * (2^e1 +- 2^e2 +- 2^e3), e1 > e2 > e3, e1 = top or top - 1 */
static float apot_alpha(int top, uint32_t n_terms)
{
	int e = top - (int)(test_rng() % 2);
	double a = ldexp(1.0, e);

	for (uint32_t t = 1; t < n_terms; t++) {
		e -= 1 + (int)(test_rng() % 3);
		a += (test_rng() & 1 ? 1 : -1) * ldexp(1.0, e);
	}
	return (float)(test_rng() & 1 ? -a : a);
}

int test_random_qweight(struct qweight *q, uint32_t n, uint32_t k, uint32_t bits, int layout,
			int top)
{
	uint64_t n_alpha;
	int r = qweight_init(q, n, k, bits, (enum qw_layout)layout, 3);

	if (r < 0)
		return r;
	for (uint32_t i = 0; i < bits; i++)
		for (uint32_t row = 0; row < n; row++)
			for (uint32_t c = 0; c < k; c++)
				qweight_set_sign(q, i, row, c, test_rng() & 1 ? 1 : -1);
	n_alpha = (uint64_t)qweight_n_row_blocks(q) * qweight_n_col_blocks(q);
	for (uint32_t i = 0; i < bits; i++)
		for (uint64_t a = 0; a < n_alpha; a++) {
			uint32_t n_terms = 1 + (uint32_t)(test_rng() % 3);

			q->alpha[i * n_alpha + a] = apot_alpha(top - (int)i, n_terms);
		}
	return 0;
}

void counting_run(void *ctx, uint32_t n_tasks, void (*fn)(void *arg, uint32_t task), void *arg)
{
	struct counting_runner *c = ctx;

	c->n_calls++;
	for (uint32_t i = 0; i < n_tasks; i++) {
		c->n_tasks++;
		fn(arg, i);
	}
}
