// SPDX-License-Identifier: MIT
/*
 * Coordinate-descent refinement of a column-layout BCQ result after the GPTQ loop.
 *
 * GPTQ visits each column once and never revisits it: a column quantized early cannot react
 * to the errors of the columns after it. The layer objective f(Q) = tr((W - Q) H (W - Q)^T),
 * as a function of one column q_j with every other column fixed, is
 *
 *	f = H_jj ||q_j - t_j||^2 + const,	t_j = q_j + G_j / H_jj,	G = (W - Q) H,
 *
 * so re-fitting column j to its target t_j (any alpha and codes closer to t_j than the
 * current ones) lowers f, and sweeping over the columns repeatedly is exact coordinate
 * descent on the same objective GPTQ minimizes approximately (the idea of QuantEase, Behdin
 * et al. 2023, here with BCQ columns). A column is replaced only if its new values are
 * strictly closer to t_j, so f never increases.
 *
 * G is kept as Gt[k][n] (walking order, one row per column). A change d of column j changes
 * every Gt[l] by -H_lj d: inside a block of columns at once, for the rest of the matrix once
 * per block as one GEMM (GPTQ's lazy update).
 */
#include "reparam/internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct cd {
	const struct gptq_cfg *c;
	uint32_t n, k;
	const double *Hd; /* [k][k] full, damped */
	double *Qt;	  /* [k][n] */
	double *alpha;	  /* [k][QW_MAX_BITS] */
	uint8_t *code;	  /* [k][n] */
	double *Gt;	  /* [k][n] */
	double *t;	  /* [n] target */
	double *Dt;	  /* [block][n] changes of the current block */
	uint8_t *cand;	  /* [n] candidate codes */
};

static double dist2(const double *a, const double *b, uint32_t n)
{
	double s = 0;

	for (uint32_t r = 0; r < n; r++) {
		double d = a[r] - b[r];

		s += d * d;
	}
	return s;
}

/*
 * Column @j against its target: the current alpha with codes reassigned, then alternating
 * least squares from there; the best of these replaces the column if it is strictly closer
 * to the target than the current values. Writes the change into @d (zero if none). Returns
 * 0 or a bcq_lsq error.
 */
static int refit_column(struct cd *s, uint32_t j, double *d, double *gain)
{
	uint32_t n = s->n, bits = s->c->bits;
	double *q = s->Qt + (size_t)j * n, *alpha = s->alpha + (size_t)j * QW_MAX_BITS;
	uint8_t *code = s->code + (size_t)j * n;
	double cur = dist2(q, s->t, n), best = cur, a[QW_MAX_BITS], best_a[QW_MAX_BITS];
	bool better = false;
	int ret;

	memcpy(a, alpha, sizeof(a));
	for (uint32_t round = 0; round <= s->c->rounds; round++) {
		double err;

		if (round > 0) {
			ret = bcq_lsq(bits, s->t, NULL, s->cand, n, a);
			if (ret < 0)
				return ret;
			bcq_alpha_canon(a, bits, s->c->apot);
		}
		bcq_assign(a, bits, s->t, n, s->cand);
		err = bcq_error(a, bits, s->t, NULL, s->cand, n);
		if (!(err < best))
			break;
		best = err;
		memcpy(best_a, a, sizeof(a));
		memcpy(code, s->cand, n);
		better = true;
	}
	if (!better) {
		memset(d, 0, n * sizeof(double));
		*gain = 0;
		return 0;
	}
	memcpy(alpha, best_a, sizeof(best_a));
	for (uint32_t r = 0; r < n; r++) {
		double v = bcq_value(alpha, bits, code[r]);

		d[r] = v - q[r];
		q[r] = v;
	}
	*gain = (cur - best) * s->Hd[(size_t)j * s->k + j];
	return 0;
}

/* One sweep over all columns; *@gain gets the decrease of f. */
static int sweep(struct cd *s, double *gain)
{
	uint32_t n = s->n, k = s->k, bs = s->c->block_size;

	*gain = 0;
	for (uint32_t b = 0; b < k; b += bs) {
		uint32_t end = b + bs < k ? b + bs : k;

		for (uint32_t j = b; j < end; j++) {
			const double *gj = s->Gt + (size_t)j * n;
			double hjj = s->Hd[(size_t)j * k + j], *d = s->Dt + (size_t)(j - b) * n, g;
			const double *q = s->Qt + (size_t)j * n;
			int ret;

			for (uint32_t r = 0; r < n; r++)
				s->t[r] = q[r] + gj[r] / hjj;
			ret = refit_column(s, j, d, &g);
			if (ret < 0)
				return ret;
			if (g == 0)
				continue;
			*gain += g;
			/* E_j changed by -d, so every G_l = sum_m H_lm E_m by -H_lj d */
			for (uint32_t l = b; l < end; l++) {
				double h = s->Hd[(size_t)l * k + j];
				double *gl = s->Gt + (size_t)l * n;

				for (uint32_t r = 0; r < n; r++)
					gl[r] -= h * d[r];
			}
		}
		/* the other columns: Gt[rows] -= Hd[rows][b:end] Dt */
		if (b > 0)
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)b,
				    (blasint)n, (blasint)(end - b), -1.0, s->Hd + b, (blasint)k,
				    s->Dt, (blasint)n, 1.0, s->Gt, (blasint)n);
		if (end < k)
			cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)(k - end),
				    (blasint)n, (blasint)(end - b), -1.0,
				    s->Hd + (size_t)end * k + b, (blasint)k, s->Dt, (blasint)n,
				    1.0, s->Gt + (size_t)end * n, (blasint)n);
	}
	return 0;
}

int gptq_cd(const struct gptq_cfg *c, const double *Wt, const double *Hd, uint32_t n, uint32_t k,
	    double *Qt, double *alpha, uint8_t *code, double *ret_gain)
{
	struct cd s = { .c = c, .n = n, .k = k, .Hd = Hd, .Qt = Qt, .alpha = alpha, .code = code };
	size_t nk = (size_t)n * k;
	double *Et = NULL, total = 0;
	int ret = -ENOMEM;

	Et = malloc(nk * sizeof(double));
	s.Gt = malloc(nk * sizeof(double));
	s.t = malloc(n * sizeof(double));
	s.Dt = malloc((size_t)c->block_size * n * sizeof(double));
	s.cand = malloc(n);
	if (!Et || !s.Gt || !s.t || !s.Dt || !s.cand)
		goto out_free;
	for (size_t i = 0; i < nk; i++)
		Et[i] = Wt[i] - Qt[i];
	/* Gt = Hd Et: row l of G^T is sum_m H_lm E_m */
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)k, (blasint)n, (blasint)k,
		    1.0, Hd, (blasint)k, Et, (blasint)n, 0.0, s.Gt, (blasint)n);
	for (uint32_t i = 0; i < c->cd_sweeps; i++) {
		double g;

		ret = sweep(&s, &g);
		if (ret < 0)
			goto out_free;
		total += g;
		if (g == 0)
			break;
	}
	if (ret_gain)
		*ret_gain = total;
	ret = 0;

out_free:
	free(s.cand);
	free(s.Dt);
	free(s.t);
	free(s.Gt);
	free(Et);
	return ret;
}
