// SPDX-License-Identifier: MIT
/*
 * Binary-coding quantization of one vector: v ~ sum_i alpha_i b_i, b_i in {-1, +1}^n, by a
 * greedy start and alternating refinement (least squares for alpha, nearest code for b).
 */
#include "reparam/internal.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

double bcq_value(const double *alpha, uint32_t bits, uint32_t code)
{
	double s = 0;

	for (uint32_t i = 0; i < bits; i++)
		s += (code >> i & 1) ? alpha[i] : -alpha[i];
	return s;
}

struct cand {
	double val;
	uint8_t code;
};

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->val != y->val)
		return x->val < y->val ? -1 : 1;
	return (int)x->code - (int)y->code;
}

void bcq_assign(const double *alpha, uint32_t bits, const double *v, uint32_t n, uint8_t *code)
{
	struct cand c[BCQ_MAX_CODES];
	double mid[BCQ_MAX_CODES];
	uint32_t nc = 1u << bits;

	for (uint32_t j = 0; j < nc; j++)
		c[j] = (struct cand){ .val = bcq_value(alpha, bits, j), .code = (uint8_t)j };
	qsort(c, nc, sizeof(c[0]), cand_cmp);
	for (uint32_t j = 0; j + 1 < nc; j++)
		mid[j] = 0.5 * (c[j].val + c[j + 1].val);
	/*
	 * The candidate index is the first midpoint >= v[e] (v goes to the candidate just below
	 * it), i.e. the number of midpoints < v[e] as they are sorted. Counting them has no
	 * branches: a binary search mispredicts about half its steps on weights, and counting
	 * halves the time of this loop, the hot spot of the GPTQ/BCQ column loop.
	 */
	for (uint32_t e = 0; e < n; e++) {
		double x = v[e];
		uint32_t lo = 0;

		for (uint32_t j = 0; j + 1 < nc; j++)
			lo += mid[j] < x;
		code[e] = c[lo].code;
	}
}

double bcq_error(const double *alpha, uint32_t bits, const double *v, const double *wt,
		 const uint8_t *code, uint32_t n)
{
	double val[BCQ_MAX_CODES], err = 0;

	for (uint32_t j = 0; j < (1u << bits); j++)
		val[j] = bcq_value(alpha, bits, j);
	for (uint32_t e = 0; e < n; e++) {
		double d = v[e] - val[code[e]];

		err += (wt ? wt[e] : 1.0) * d * d;
	}
	return err;
}

/* Minimum-norm least squares on the compact 2^bits-row form, for rank-deficient systems. */
static int lsq_min_norm(uint32_t bits, const double *cnt, const double *sum, double *ret_alpha)
{
	uint32_t nc = 1u << bits;
	double A[BCQ_MAX_CODES * QW_MAX_BITS], b[BCQ_MAX_CODES], s[QW_MAX_BITS];
	lapack_int rank;
	int info;

	/*
	 * sum_e w (v - s(c_e).alpha)^2 = sum_c (sqrt(cnt_c) s(c).alpha - sum_c / sqrt(cnt_c))^2
	 * + const, so this tiny system has the same minimizers as the full one.
	 */
	for (uint32_t c = 0; c < nc; c++) {
		double r = cnt[c] > 0 ? sqrt(cnt[c]) : 0;

		for (uint32_t i = 0; i < bits; i++)
			A[c + i * nc] = (c >> i & 1) ? r : -r; /* column-major */
		b[c] = r > 0 ? sum[c] / r : 0;
	}
	info = LAPACKE_dgelsd(LAPACK_COL_MAJOR, (lapack_int)nc, (lapack_int)bits, 1, A,
			      (lapack_int)nc, b, (lapack_int)nc, s, 1e-12, &rank);
	if (info != 0)
		return -EDOM;
	memcpy(ret_alpha, b, bits * sizeof(double));
	return 0;
}

int bcq_lsq(uint32_t bits, const double *v, const double *wt, const uint8_t *code, uint32_t n,
	    double *ret_alpha)
{
	uint32_t nc = 1u << bits;
	double cnt[BCQ_MAX_CODES] = { 0 }, sum[BCQ_MAX_CODES] = { 0 };
	double G[QW_MAX_BITS][QW_MAX_BITS + 1] = { { 0 } }, gmax = 0;

	/* Histogram by code: G and the right-hand side need only per-code totals. */
	for (uint32_t e = 0; e < n; e++) {
		double w = wt ? wt[e] : 1.0;

		cnt[code[e]] += w;
		sum[code[e]] += w * v[e];
	}
	for (uint32_t c = 0; c < nc; c++) {
		for (uint32_t i = 0; i < bits; i++) {
			double si = (c >> i & 1) ? 1.0 : -1.0;

			for (uint32_t j = 0; j < bits; j++)
				G[i][j] += cnt[c] * si * ((c >> j & 1) ? 1.0 : -1.0);
			G[i][bits] += si * sum[c];
		}
	}
	for (uint32_t i = 0; i < bits; i++)
		gmax = fmax(gmax, G[i][i]);
	if (gmax <= 0) {
		memset(ret_alpha, 0, bits * sizeof(double));
		return 0;
	}
	/* Gaussian elimination with partial pivoting on the bits x bits normal equations. */
	for (uint32_t col = 0; col < bits; col++) {
		uint32_t piv = col;

		for (uint32_t r = col + 1; r < bits; r++)
			if (fabs(G[r][col]) > fabs(G[piv][col]))
				piv = r;
		if (fabs(G[piv][col]) <= 1e-10 * gmax)
			return lsq_min_norm(bits, cnt, sum, ret_alpha);
		if (piv != col) {
			for (uint32_t j = 0; j <= bits; j++) {
				double t = G[col][j];

				G[col][j] = G[piv][j];
				G[piv][j] = t;
			}
		}
		for (uint32_t r = col + 1; r < bits; r++) {
			double f = G[r][col] / G[col][col];

			for (uint32_t j = col; j <= bits; j++)
				G[r][j] -= f * G[col][j];
		}
	}
	for (uint32_t i = bits; i-- > 0;) {
		double s = G[i][bits];

		for (uint32_t j = i + 1; j < bits; j++)
			s -= G[i][j] * ret_alpha[j];
		ret_alpha[i] = s / G[i][i];
	}
	return 0;
}

static int dbl_desc(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * Canonical alpha: signs moved into the codes (|alpha|; the next assignment recomputes the
 * codes anyway), APoT (or float) rounding, sorted descending.
 */
static void alpha_canon(double *alpha, uint32_t bits, uint32_t apot)
{
	for (uint32_t i = 0; i < bits; i++)
		alpha[i] = (double)apot_round(fabs(alpha[i]), apot);
	qsort(alpha, bits, sizeof(double), dbl_desc);
}

int bcq_fit(const struct bcq_cfg *c, const double *v, const double *wt, uint32_t n,
	    double *ret_alpha, uint8_t *ret_code, double *ret_err, double *trace)
{
	double alpha[QW_MAX_BITS], best_alpha[QW_MAX_BITS], err, best_err, wsum = 0;
	uint8_t *code, *prev;
	double *r;
	uint32_t round;
	int ret = 0;

	code = malloc(n ? n : 1);
	prev = malloc(n ? n : 1);
	r = malloc((n ? n : 1) * sizeof(double));
	if (!code || !prev || !r) {
		ret = -ENOMEM;
		goto out_free;
	}

	/* Greedy start: each plane takes the sign of the residual and its (weighted) mean size. */
	for (uint32_t e = 0; e < n; e++) {
		r[e] = v[e];
		wsum += wt ? wt[e] : 1.0;
		code[e] = 0;
	}
	for (uint32_t i = 0; i < c->bits; i++) {
		double s = 0;

		for (uint32_t e = 0; e < n; e++)
			s += (wt && wsum > 0 ? wt[e] : 1.0) * fabs(r[e]);
		alpha[i] = n ? s / (wt && wsum > 0 ? wsum : (double)n) : 0;
		for (uint32_t e = 0; e < n; e++) {
			if (r[e] >= 0) {
				code[e] |= (uint8_t)(1u << i);
				r[e] -= alpha[i];
			} else {
				r[e] += alpha[i];
			}
		}
	}
	alpha_canon(alpha, c->bits, c->apot);
	bcq_assign(alpha, c->bits, v, n, code);
	best_err = err = bcq_error(alpha, c->bits, v, wt, code, n);
	memcpy(best_alpha, alpha, sizeof(alpha));
	memcpy(ret_code, code, n);
	if (trace)
		trace[0] = err;

	for (round = 1; round <= c->rounds; round++) {
		ret = bcq_lsq(c->bits, v, wt, code, n, alpha);
		if (ret < 0)
			goto out_free;
		alpha_canon(alpha, c->bits, c->apot);
		memcpy(prev, code, n);
		bcq_assign(alpha, c->bits, v, n, code);
		err = bcq_error(alpha, c->bits, v, wt, code, n);
		if (trace)
			trace[round] = err;
		if (err < best_err) {
			best_err = err;
			memcpy(best_alpha, alpha, sizeof(alpha));
			memcpy(ret_code, code, n);
		}
		/* Same codes give the same alpha again: every later round repeats this one. */
		if (!memcmp(prev, code, n))
			break;
	}
	if (trace)
		for (uint32_t j = round + 1; j <= c->rounds; j++)
			trace[j] = err;
	memcpy(ret_alpha, best_alpha, c->bits * sizeof(double));
	*ret_err = best_err;

out_free:
	free(r);
	free(prev);
	free(code);
	return ret;
}
