// SPDX-License-Identifier: MIT
/*
 * GPTQ/OPTQ column loop (Frantar et al.) with pluggable quantizers: uniform asymmetric, BCQ per
 * column (ShiftAddLLM "Acc." layout) and BCQ per 8-column x N/8-row block ("Lat." layout).
 *
 * Working storage is the transpose Wt[k][n] in double, so one weight column (N values, the unit
 * every quantizer consumes) is contiguous. U is the upper Cholesky factor of the damped H^-1;
 * quantizing column j with error e_j = (w_j - q_j) / U_jj and subtracting e_j U[j, l] from every
 * later column l is the OBS update. Inside a block of block_size columns the update is applied
 * column by column; the rest of the matrix receives it once per block as one GEMM.
 *
 * Block layout inside the loop: the 8 columns of one block share alpha (per N/8-row slice), but
 * columns 2..8 of the block change through error feedback after the first is quantized. So, as
 * group-wise GPTQ does with scales, alpha is fitted once at the block's first column (BCQ of the
 * block's current values, each column weighted by 1/U_jj^2 = the GPTQ cost of an error in
 * that column), and then every column is quantized in turn with those fixed alpha: its signs are
 * the nearest code of its *updated* values, and its error is fed forward as usual. act-order
 * permutes whole 8-column blocks (by the sum of their diag(H)), keeping a ragged last block
 * last, so a block never straddles two walking positions and alpha stays per original block.
 *
 * Uniform groups (GPTQ baseline) take their scale/zero at the group's first walking column from
 * the current weights, as the reference GPTQ does; columns of the group beyond the current lazy
 * block have not yet received that block's update, so a group size that is a multiple of
 * block_size (or per-row, group 0) gives results independent of block_size. With act-order
 * the groups are formed in walking order (the reference's behaviour, which needs a g_idx map
 * to deploy; we only output dense weights for uniform methods).
 */
#include "reparam/internal.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void gptq_damped(const double *H, uint32_t k, double percdamp, double *U, bool *dead)
{
	double mean = 0, damp;

	/* Row-major upper == column-major lower: LAPACK 'L' in column-major reads our upper. */
	for (uint32_t i = 0; i < k; i++) {
		for (uint32_t j = 0; j < k; j++)
			U[(size_t)i * k + j] = j >= i ? H[(size_t)i * k + j] : 0;
		if (dead)
			dead[i] = H[(size_t)i * k + i] == 0;
		if (U[(size_t)i * k + i] == 0)
			U[(size_t)i * k + i] = 1;
		mean += U[(size_t)i * k + i];
	}
	damp = percdamp * mean / k;
	for (uint32_t i = 0; i < k; i++)
		U[(size_t)i * k + i] += damp;
}

int gptq_hinv_chol(const double *H, uint32_t k, double percdamp, double *U, bool *dead,
		   struct errbuf *e)
{
	int info;

	gptq_damped(H, k, percdamp, U, dead);
	info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)k, U, (lapack_int)k);
	if (info != 0)
		return errbuf_set(e, -EDOM,
				  "Hessian not positive definite after damping (dpotrf info %d)",
				  info);
	info = LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', (lapack_int)k, U, (lapack_int)k);
	if (info != 0)
		return errbuf_set(e, -EDOM, "Hessian inverse failed (dpotri info %d)", info);
	info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)k, U, (lapack_int)k);
	if (info != 0)
		return errbuf_set(e, -EDOM, "H^-1 not positive definite (dpotrf info %d)", info);
	for (uint32_t i = 1; i < k; i++)
		memset(U + (size_t)i * k, 0, i * sizeof(double));
	return 0;
}

struct key_idx {
	double key;
	uint32_t idx;
};

/* Descending key, ascending index on ties: a stable, deterministic order. */
static int key_desc(const void *a, const void *b)
{
	const struct key_idx *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? 1 : -1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Walking order: perm[j] = original column quantized j-th. */
static int make_perm(const struct gptq_cfg *c, const double *H, uint32_t k, uint32_t *perm)
{
	uint32_t nb, j = 0;
	struct key_idx *ki;

	for (uint32_t i = 0; i < k; i++)
		perm[i] = i;
	if (!c->act_order)
		return 0;
	nb = c->quant == GPTQ_BCQ_BLOCK ? k / 8 : k;
	ki = malloc((nb ? nb : 1) * sizeof(*ki));
	if (!ki)
		return -ENOMEM;
	for (uint32_t b = 0; b < nb; b++) {
		ki[b] = (struct key_idx){ .key = 0, .idx = b };
		if (c->quant == GPTQ_BCQ_BLOCK)
			for (uint32_t t = 0; t < 8; t++)
				ki[b].key += H[(size_t)(8 * b + t) * k + 8 * b + t];
		else
			ki[b].key = H[(size_t)b * k + b];
	}
	qsort(ki, nb, sizeof(*ki), key_desc);
	if (c->quant == GPTQ_BCQ_BLOCK) {
		for (uint32_t b = 0; b < nb; b++)
			for (uint32_t t = 0; t < 8; t++)
				perm[j++] = 8 * ki[b].idx + t;
		/* the ragged last block, if any, keeps its place at the end */
	} else {
		for (uint32_t b = 0; b < nb; b++)
			perm[b] = ki[b].idx;
	}
	free(ki);
	return 0;
}

/* Upper triangle of H permuted both ways: Hp[a][b] = H[perm a][perm b], a <= b. */
static void permute_hessian(const double *H, uint32_t k, const uint32_t *perm, double *Hp)
{
	for (uint32_t a = 0; a < k; a++) {
		for (uint32_t b = a; b < k; b++) {
			uint32_t x = perm[a], y = perm[b];

			Hp[(size_t)a * k + b] =
				x <= y ? H[(size_t)x * k + y] : H[(size_t)y * k + x];
		}
	}
}

struct loop {
	const struct gptq_cfg *c;
	uint32_t n, k;
	const uint32_t *perm;
	double *Wt;	 /* [k][n] walking order */
	const double *U; /* [k][k] or NULL without feedback */
	struct qweight *qw;
	struct uniform_param *up; /* [n] current uniform parameters */
	double *blk_alpha;	  /* [n_row_blocks][bits] current block alpha */
	double *buf, *wbuf;	  /* gather space: [8 * row_block] or [k] */
	uint8_t *code;		  /* [max(n, 8 * row_block)] */
};

/* Uniform parameters of every row over walking columns [j0, j1). */
static void fit_uniform_rows(struct loop *L, uint32_t j0, uint32_t j1)
{
	for (uint32_t r = 0; r < L->n; r++) {
		for (uint32_t j = j0; j < j1; j++)
			L->buf[j - j0] = L->Wt[(size_t)j * L->n + r];
		L->up[r] = uniform_fit(L->buf, j1 - j0, L->c->bits);
	}
}

static void store_codes(struct loop *L, uint32_t j, uint32_t r0, uint32_t r1)
{
	for (uint32_t r = r0; r < r1; r++)
		for (uint32_t i = 0; i < L->c->bits; i++)
			qweight_set_sign(L->qw, i, r, L->perm[j], (L->code[r] >> i & 1) ? 1 : -1);
}

/* BCQ alpha of every N/8-row slice of the block that starts at walking column @j0. */
static int fit_block(struct loop *L, uint32_t j0)
{
	struct bcq_cfg bc = { .bits = L->c->bits, .apot = L->c->apot, .rounds = L->c->rounds };
	uint32_t R = L->qw->row_block, j1 = j0 + 8 < L->k ? j0 + 8 : L->k;
	double err;
	int ret;

	for (uint32_t r0 = 0, rb = 0; r0 < L->n; r0 += R, rb++) {
		uint32_t r1 = r0 + R < L->n ? r0 + R : L->n, m = 0;
		double *alpha = L->blk_alpha + (size_t)rb * QW_MAX_BITS;

		for (uint32_t j = j0; j < j1; j++) {
			double u = L->U ? L->U[(size_t)j * L->k + j] : 1;

			for (uint32_t r = r0; r < r1; r++, m++) {
				L->buf[m] = L->Wt[(size_t)j * L->n + r];
				L->wbuf[m] = 1 / (u * u);
			}
		}
		ret = bcq_fit(&bc, L->buf, L->wbuf, m, alpha, L->code, &err, NULL);
		if (ret < 0)
			return ret;
		for (uint32_t i = 0; i < bc.bits; i++)
			*qweight_alpha(L->qw, i, r0, L->perm[j0]) = (float)alpha[i];
	}
	return 0;
}

/* Quantize walking column @j into q[n]. */
static int quant_column(struct loop *L, uint32_t j, double *q)
{
	const double *w = L->Wt + (size_t)j * L->n;
	const struct gptq_cfg *c = L->c;
	int ret;

	switch (c->quant) {
	case GPTQ_UNIFORM:
		if (c->group && j % c->group == 0)
			fit_uniform_rows(L, j, j + c->group < L->k ? j + c->group : L->k);
		for (uint32_t r = 0; r < L->n; r++)
			q[r] = uniform_quant(L->up[r], w[r], c->bits);
		return 0;
	case GPTQ_BCQ_COL: {
		struct bcq_cfg bc = { .bits = c->bits, .apot = c->apot, .rounds = c->rounds };
		double alpha[QW_MAX_BITS], err;

		ret = bcq_fit(&bc, w, NULL, L->n, alpha, L->code, &err, NULL);
		if (ret < 0)
			return ret;
		for (uint32_t i = 0; i < c->bits; i++)
			*qweight_alpha(L->qw, i, 0, L->perm[j]) = (float)alpha[i];
		for (uint32_t r = 0; r < L->n; r++)
			q[r] = bcq_value(alpha, c->bits, L->code[r]);
		store_codes(L, j, 0, L->n);
		return 0;
	}
	case GPTQ_BCQ_BLOCK: {
		uint32_t R = L->qw->row_block;

		if (j % 8 == 0) {
			ret = fit_block(L, j);
			if (ret < 0)
				return ret;
		}
		for (uint32_t r0 = 0, rb = 0; r0 < L->n; r0 += R, rb++) {
			uint32_t r1 = r0 + R < L->n ? r0 + R : L->n;
			const double *alpha = L->blk_alpha + (size_t)rb * QW_MAX_BITS;

			bcq_assign(alpha, c->bits, w + r0, r1 - r0, L->code + r0);
			for (uint32_t r = r0; r < r1; r++)
				q[r] = bcq_value(alpha, c->bits, L->code[r]);
		}
		store_codes(L, j, 0, L->n);
		return 0;
	}
	}
	return -EINVAL;
}

int gptq_run(const struct gptq_cfg *c, const double *W, uint32_t n, uint32_t k, const double *H,
	     float *out_dense, struct qweight *qw, struct errbuf *e)
{
	uint32_t bs = c->block_size, R = qw ? qw->row_block : 1, nrb = (n + R - 1) / R;
	size_t nk = (size_t)n * k, kk = (size_t)k * k;
	size_t gather = (size_t)8 * R > k ? (size_t)8 * R : k;
	struct loop L = { .c = c, .n = n, .k = k, .qw = qw };
	uint32_t *perm = NULL;
	double *Wt = NULL, *U = NULL, *Hp = NULL, *Err = NULL, *q = NULL;
	bool *dead = NULL;
	int ret = -ENOMEM;

	if (!bs || bs % 8 || (c->quant != GPTQ_UNIFORM && !qw) || (c->feedback && !H) ||
	    (qw && qw->layout == QW_LAYOUT_ROW))
		return errbuf_set(e, -EINVAL, "gptq: bad configuration");
	perm = malloc(k * sizeof(*perm));
	Wt = malloc(nk * sizeof(double));
	q = malloc(n * sizeof(double));
	Err = malloc((size_t)bs * n * sizeof(double));
	L.up = malloc(n * sizeof(*L.up));
	L.blk_alpha = malloc((size_t)nrb * QW_MAX_BITS * sizeof(double));
	L.buf = malloc(gather * sizeof(double));
	L.wbuf = malloc(gather * sizeof(double));
	L.code = malloc(gather > n ? gather : n);
	dead = calloc(k, sizeof(bool));
	if (!perm || !Wt || !q || !Err || !L.up || !L.blk_alpha || !L.buf || !L.wbuf || !L.code ||
	    !dead)
		goto out_free;

	if (c->feedback) {
		ret = make_perm(c, H, k, perm);
		if (ret < 0)
			goto out_free;
		U = malloc(kk * sizeof(double));
		if (!U) {
			ret = -ENOMEM;
			goto out_free;
		}
		if (c->act_order) {
			Hp = malloc(kk * sizeof(double));
			if (!Hp) {
				ret = -ENOMEM;
				goto out_free;
			}
			permute_hessian(H, k, perm, Hp);
		}
		ret = gptq_hinv_chol(Hp ? Hp : H, k, c->percdamp, U, dead, e);
		if (ret < 0)
			goto out_free;
	} else {
		for (uint32_t j = 0; j < k; j++)
			perm[j] = j;
	}
	L.perm = perm;
	L.U = U;
	L.Wt = Wt;
	/* Dead columns (no input ever reaches them) are zeroed, as GPTQ does. */
	for (uint32_t j = 0; j < k; j++)
		for (uint32_t r = 0; r < n; r++)
			Wt[(size_t)j * n + r] = dead[j] ? 0 : W[(size_t)r * k + perm[j]];
	if (c->quant == GPTQ_UNIFORM && !c->group)
		fit_uniform_rows(&L, 0, k);

	for (uint32_t b = 0; b < k; b += bs) {
		uint32_t end = b + bs < k ? b + bs : k;

		for (uint32_t j = b; j < end; j++) {
			double *w = Wt + (size_t)j * n, *err = Err + (size_t)(j - b) * n;

			ret = quant_column(&L, j, q);
			if (ret < 0)
				goto out_free;
			for (uint32_t r = 0; r < n; r++)
				out_dense[(size_t)r * k + perm[j]] = (float)q[r];
			if (!U)
				continue;
			for (uint32_t r = 0; r < n; r++)
				err[r] = (w[r] - q[r]) / U[(size_t)j * k + j];
			for (uint32_t l = j + 1; l < end; l++) {
				double u = U[(size_t)j * k + l];
				double *wl = Wt + (size_t)l * n;

				if (u != 0)
					for (uint32_t r = 0; r < n; r++)
						wl[r] -= u * err[r];
			}
		}
		/* Lazy update: Wt[end:] -= U[b:end, end:]^T Err[b:end]. */
		if (U && end < k)
			cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)(k - end),
				    (blasint)n, (blasint)(end - b), -1.0, U + (size_t)b * k + end,
				    (blasint)k, Err, (blasint)n, 1.0, Wt + (size_t)end * n,
				    (blasint)n);
	}
	ret = 0;

out_free:
	free(dead);
	free(L.code);
	free(L.wbuf);
	free(L.buf);
	free(L.blk_alpha);
	free(L.up);
	free(Err);
	free(q);
	free(Hp);
	free(U);
	free(Wt);
	free(perm);
	return ret;
}
