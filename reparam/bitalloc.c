// SPDX-License-Identifier: MIT
/*
 * Mixed-bit allocation: a multiple-choice knapsack (one option per layer, total cost within the
 * average-bits budget, least total error), solved exactly by dynamic programming, plus the
 * paper's proxy ranking for comparison.
 */
#include "reparam/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t gcd64(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/* Validate @p and compute the budget in bits. */
static int check_problem(const struct bitalloc_problem *p, uint64_t *ret_budget, struct errbuf *e)
{
	uint64_t params = 0;
	long double budget;

	if (!p || !p->n_layers || !p->n_choices || p->n_choices > 255 || !p->err || !p->cost_bits ||
	    !p->n_params)
		return errbuf_set(e, -EINVAL, "bitalloc: empty or malformed problem");
	if (!(p->avg_bits > 0 && isfinite(p->avg_bits)))
		return errbuf_set(e, -EINVAL, "bitalloc: bad average bits %g", p->avg_bits);
	for (uint32_t l = 0; l < p->n_layers; l++) {
		if (__builtin_add_overflow(params, p->n_params[l], &params))
			return errbuf_set(e, -EOVERFLOW, "bitalloc: parameter count overflows");
		for (uint32_t j = 0; j < p->n_choices; j++) {
			double x = p->err[(size_t)l * p->n_choices + j];

			if (!(x >= 0 && isfinite(x)))
				return errbuf_set(e, -EINVAL, "bitalloc: error [%u][%u] is %g", l,
						  j, x);
		}
	}
	budget = floorl((long double)p->avg_bits * params);
	*ret_budget = budget >= 0x1p64L ? UINT64_MAX : (uint64_t)budget;
	return 0;
}

int bitalloc_exact(const struct bitalloc_problem *p, uint32_t max_cells, uint32_t *ret_choice,
		   bool *ret_exact, struct errbuf *e)
{
	uint32_t L, J;
	uint64_t budget, base = 0, slack, g = 0, unit, cap, maxuse = 0;
	uint64_t *mincost = NULL, *w = NULL;
	double *dp = NULL, *nx = NULL;
	uint8_t *choice = NULL;
	bool exact = true;
	int ret;

	ret = check_problem(p, &budget, e);
	if (ret < 0)
		return ret;
	L = p->n_layers;
	J = p->n_choices;
	if (!max_cells)
		max_cells = 100000000u;
	mincost = malloc(L * sizeof(uint64_t));
	w = malloc((size_t)L * J * sizeof(uint64_t));
	if (!mincost || !w) {
		ret = -ENOMEM;
		goto out_free;
	}
	for (uint32_t l = 0; l < L; l++) {
		const uint64_t *c = p->cost_bits + (size_t)l * J;

		mincost[l] = c[0];
		for (uint32_t j = 1; j < J; j++)
			if (c[j] < mincost[l])
				mincost[l] = c[j];
		if (__builtin_add_overflow(base, mincost[l], &base)) {
			ret = errbuf_set(e, -EOVERFLOW, "bitalloc: total cost overflows");
			goto out_free;
		}
		for (uint32_t j = 0; j < J; j++)
			g = gcd64(g, c[j] - mincost[l]);
	}
	if (base > budget) {
		ret = errbuf_set(e, -ENOSPC,
				 "bitalloc: even the cheapest options need %.4f bits per parameter",
				 p->avg_bits * (double)base / (double)budget);
		goto out_free;
	}
	slack = budget - base;
	if (!g)
		g = 1; /* every layer's options cost the same */

	/*
	 * Costs in units of g are exact. The table needs L x (cap + 1) cells where cap is the
	 * slack, or the most any assignment can use, whichever is smaller.
	 */
	unit = g;
	for (;;) {
		maxuse = 0;
		for (uint32_t l = 0; l < L; l++) {
			uint64_t mx = 0;

			for (uint32_t j = 0; j < J; j++) {
				uint64_t d = p->cost_bits[(size_t)l * J + j] - mincost[l];
				uint64_t u = d / unit + (d % unit != 0); /* rounded up */

				w[(size_t)l * J + j] = u;
				if (u > mx)
					mx = u;
			}
			maxuse = maxuse + mx < maxuse ? UINT64_MAX : maxuse + mx;
		}
		cap = slack / unit < maxuse ? slack / unit : maxuse;
		if ((cap + 1) <= max_cells / L)
			break;
		exact = false;
		unit = unit * ((cap + 1) / (max_cells / L) + 1);
	}

	dp = malloc((cap + 1) * sizeof(double));
	nx = malloc((cap + 1) * sizeof(double));
	choice = malloc((size_t)L * (cap + 1));
	if (!dp || !nx || !choice) {
		ret = -ENOMEM;
		goto out_free;
	}
	/* dp[c]: least error of the layers so far within c units (so dp is non-increasing). */
	for (uint64_t c = 0; c <= cap; c++)
		dp[c] = 0;
	for (uint32_t l = 0; l < L; l++) {
		const double *er = p->err + (size_t)l * J;
		const uint64_t *wl = w + (size_t)l * J;
		uint8_t *ch = choice + (size_t)l * (cap + 1);

		for (uint64_t c = 0; c <= cap; c++) {
			double best = INFINITY;
			uint8_t bj = 0;

			for (uint32_t j = 0; j < J; j++) {
				if (wl[j] > c)
					continue;
				if (dp[c - wl[j]] + er[j] < best) {
					best = dp[c - wl[j]] + er[j];
					bj = (uint8_t)j;
				}
			}
			nx[c] = best;
			ch[c] = bj;
		}
		memcpy(dp, nx, (cap + 1) * sizeof(double));
	}
	for (uint64_t c = cap, l = L; l-- > 0;) {
		uint8_t j = choice[l * (cap + 1) + c];

		ret_choice[l] = j;
		c -= w[l * J + j];
	}
	if (ret_exact)
		*ret_exact = exact;
	ret = 0;

out_free:
	free(choice);
	free(nx);
	free(dp);
	free(w);
	free(mincost);
	return ret;
}

struct score_idx {
	double score;
	uint32_t idx;
};

static int score_desc(const void *a, const void *b)
{
	const struct score_idx *x = a, *y = b;

	if (x->score != y->score)
		return x->score < y->score ? 1 : -1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int bitalloc_proxy(const struct bitalloc_problem *p, const double *score, uint32_t *ret_choice,
		   struct errbuf *e)
{
	uint64_t budget, total = 0;
	struct score_idx *si;
	uint32_t L, J, lo = 0;
	int ret;

	ret = check_problem(p, &budget, e);
	if (ret < 0)
		return ret;
	L = p->n_layers;
	J = p->n_choices;
	for (uint32_t l = 0; l < L; l++)
		for (uint32_t j = 1; j < J; j++)
			if (p->cost_bits[(size_t)l * J + j] < p->cost_bits[(size_t)l * J + j - 1])
				return errbuf_set(
					e, -EINVAL,
					"bitalloc: proxy needs options by increasing cost");
	/* lo: the most expensive option that fits when every layer uses it */
	for (uint32_t j = 0; j < J; j++) {
		uint64_t t = 0;
		bool over = false;

		for (uint32_t l = 0; l < L && !over; l++)
			over = __builtin_add_overflow(t, p->cost_bits[(size_t)l * J + j], &t);
		if (over || t > budget) {
			if (j == 0)
				return errbuf_set(
					e, -ENOSPC,
					"bitalloc: even the cheapest options exceed the budget");
			break;
		}
		lo = j;
		total = t;
	}
	for (uint32_t l = 0; l < L; l++)
		ret_choice[l] = lo;
	if (lo + 1 >= J)
		return 0;
	si = malloc(L * sizeof(*si));
	if (!si)
		return -ENOMEM;
	for (uint32_t l = 0; l < L; l++)
		si[l] = (struct score_idx){ .score = score[l], .idx = l };
	qsort(si, L, sizeof(*si), score_desc);
	for (uint32_t t = 0; t < L; t++) {
		uint32_t l = si[t].idx;
		uint64_t up =
			p->cost_bits[(size_t)l * J + lo + 1] - p->cost_bits[(size_t)l * J + lo];

		if (total + up <= budget) {
			total += up;
			ret_choice[l] = lo + 1;
		}
	}
	free(si);
	return 0;
}

int bitalloc_proxy_score(const float *W, uint32_t n, uint32_t k, const double *H, double percdamp,
			 double *ret_score, struct errbuf *e)
{
	double *U, sum = 0, sq = 0, cnt = (double)n * k;
	int ret;

	if (!W || !H || !n || !k)
		return errbuf_set(e, -EINVAL, "proxy score: missing input");
	U = malloc((size_t)k * k * sizeof(double));
	if (!U)
		return -ENOMEM;
	ret = gptq_hinv_chol(H, k, percdamp, U, NULL, e);
	if (ret < 0)
		goto out_free;
	for (uint32_t r = 0; r < n; r++) {
		for (uint32_t j = 0; j < k; j++) {
			double v = W[(size_t)r * k + j] / U[(size_t)j * k + j];

			sum += v;
			sq += v * v;
		}
	}
	/* ||V||_F * unbiased variance of V's entries */
	*ret_score = sqrt(sq) * (cnt > 1 ? (sq - sum * sum / cnt) / (cnt - 1) : 0);

out_free:
	free(U);
	return ret;
}
