// SPDX-License-Identifier: MIT
/*
 * shiftadd-rht (issue 8): shiftadd-acc in a randomized Hadamard basis that the deployed model
 * keeps, so Acc.-style incoherence runs on the shift-add kernels without a multiplication.
 *
 * Notation (kernels/rht.h): T = Hb D is the unnormalized input transform over K (entries +-1),
 * Λ_T = T Tᵀ = diag(block size) (n I for a single block); S likewise over N for the output.
 * For y = W x:
 *
 *     input:  W' = W Tᵀ Λ_T⁻¹             y = W' (T x)
 *     both:   W' = Λ_S⁻¹ S W Tᵀ Λ_T⁻¹     y = Sᵀ (W' (T x))
 *
 * (exact, since Tᵀ Λ_T⁻¹ T = I and Sᵀ Λ_S⁻¹ S = I). The 1/b factors are folded into W' in
 * double BEFORE quantization, so the APoT rounding of every alpha sees the folded scale and
 * the run-time transforms stay +-1 (adds only). GPTQ runs on W' against the Hessian of its
 * input T x, H' = T H Tᵀ, whose error tr(ΔW' H' ΔW'ᵀ) is the layer's output error (up to the
 * row weights Λ_S, uniform for a single-block S). The output side helps the column layout:
 * one alpha per column is shared by all rows, and S evens out the row scales.
 *
 * What the engine does at inference for one shiftadd-rht layer (rht = r->rht):
 *   1. u = x; rht_apply(T_in, u) — once per distinct input: q/k/v (and gate/up) share their
 *      seed, so one transform serves all three;
 *   2. z = lut_gemv(qw, u) (or lut_gemm for a batch: transform every row of the batch);
 *   3. with BOTH: rht_apply_inverse(T_out, z) (Sᵀ, unnormalized: the 1/b is already in qw);
 *   4. y = z, then bias, RoPE, activation, residual add as for any layer — the output
 *      transform must be undone before any of them.
 * T_in = rht_init(K, rht_seed_in), T_out = rht_init(N, rht_seed_out); the seeds go in the file.
 */
#include "kernels/rht.h"
#include "reparam/internal.h"

#include <stdlib.h>
#include <string.h>

/*
 * The transform in double, from the plan of @t: the same operations as the kernels'
 * run-time path, in higher precision for the offline algebra (H' and the de-rotated dense).
 */
static void fwht_d(double *x, uint32_t P)
{
	for (uint32_t h = 1; h < P; h <<= 1)
		for (uint32_t i = 0; i < P; i += h << 1)
			for (uint32_t j = i; j < i + h; j++) {
				double a = x[j], b = x[j + h];

				x[j] = a + b;
				x[j + h] = a - b;
			}
}

static void small_d(const uint32_t *h, uint32_t m, uint32_t P, double *x)
{
	double v[RHT_MAX_M];

	for (uint32_t j = 0; j < P; j++) {
		for (uint32_t l = 0; l < m; l++)
			v[l] = x[(size_t)l * P + j];
		for (uint32_t i = 0; i < m; i++) {
			double acc = 0;

			for (uint32_t l = 0; l < m; l++)
				acc += h[(size_t)i * m + l] ? -v[l] : v[l];
			x[(size_t)i * P + j] = acc;
		}
	}
}

static void apply_d(const struct rht *t, double *x, bool inverse)
{
	if (!inverse)
		for (uint32_t j = 0; j < t->n; j++)
			x[j] = t->sign[j] ? -x[j] : x[j];
	for (uint32_t b = 0; b < t->n_blocks; b++) {
		const struct rht_block *bk = &t->blk[b];
		uint32_t P = 1u << bk->p_log2;
		double *xb = x + bk->off;

		if (inverse && bk->m > 1)
			small_d(t->hmask + bk->ht_off, bk->m, P, xb);
		for (uint32_t i = 0; i < bk->m; i++)
			fwht_d(xb + (size_t)i * P, P);
		if (!inverse && bk->m > 1)
			small_d(t->hmask + bk->h_off, bk->m, P, xb);
	}
	if (inverse)
		for (uint32_t j = 0; j < t->n; j++)
			x[j] = t->sign[j] ? -x[j] : x[j];
}

/* Every row of A [rows][t->n]: a <- T a (or Tᵀ a), then optionally divided by Λ. */
static void rows_d(const struct rht *t, double *A, uint32_t rows, bool inverse, bool unscale)
{
	for (uint32_t r = 0; r < rows; r++) {
		double *a = A + (size_t)r * t->n;

		apply_d(t, a, inverse);
		if (unscale)
			for (uint32_t j = 0; j < t->n; j++)
				a[j] /= rht_scale(t, j);
	}
}

/* Every column of A [t->n][cols], through @buf [t->n]. */
static void cols_d(const struct rht *t, double *A, uint32_t cols, bool inverse, bool unscale,
		   double *buf)
{
	for (uint32_t c = 0; c < cols; c++) {
		for (uint32_t i = 0; i < t->n; i++)
			buf[i] = A[(size_t)i * cols + c];
		apply_d(t, buf, inverse);
		for (uint32_t i = 0; i < t->n; i++)
			A[(size_t)i * cols + c] = unscale ? buf[i] / rht_scale(t, i) : buf[i];
	}
}

static void transpose_sq(double *A, uint32_t k)
{
	for (uint32_t i = 0; i < k; i++)
		for (uint32_t j = i + 1; j < k; j++) {
			double v = A[(size_t)i * k + j];

			A[(size_t)i * k + j] = A[(size_t)j * k + i];
			A[(size_t)j * k + i] = v;
		}
}

int reparam_rht_run(const struct reparam_opts *o, double *Wd, uint32_t n, uint32_t k,
		    const double *H, struct reparam_result *r, struct errbuf *e)
{
	bool both = o->rht == REPARAM_RHT_BOTH;
	size_t nk = (size_t)n * k, kk = (size_t)k * k;
	struct gptq_cfg gc = gptq_cfg_from_opts(o, GPTQ_BCQ_COL);
	struct rht tin = { 0 }, tout = { 0 };
	double *Wr = Wd, *Hr = NULL, *buf = NULL;
	float *q = NULL;
	int ret;

	ret = rht_init(&tin, k, o->rht_seed_in);
	if (ret == 0 && both)
		ret = rht_init(&tout, n, o->rht_seed_out);
	if (ret == -EINVAL) {
		errbuf_set(e, ret, "shiftadd-rht: %s dimension %u is not a multiple of 4",
			   tin.n ? "output" : "input", tin.n ? n : k);
		goto out_free;
	}
	if (ret < 0)
		goto out_free;
	ret = -ENOMEM;
	Hr = malloc(kk * sizeof(double));
	buf = malloc((n > k ? n : k) * sizeof(double));
	q = malloc(nk * sizeof(float));
	if (!Hr || !buf || !q)
		goto out_free;

	/* W' = [Λ_S⁻¹ S] W Tᵀ Λ_T⁻¹ in place: rows of W through T, then (both) columns through S */
	rows_d(&tin, Wr, n, false, true);
	if (both)
		cols_d(&tout, Wr, k, false, true, buf);
	/* H' = T H Tᵀ: rows of H through T (H Tᵀ), transpose, rows again */
	for (uint32_t i = 0; i < k; i++)
		for (uint32_t j = 0; j < k; j++)
			Hr[(size_t)i * k + j] =
				j >= i ? H[(size_t)i * k + j] : H[(size_t)j * k + i];
	rows_d(&tin, Hr, k, false, false);
	transpose_sq(Hr, k);
	rows_d(&tin, Hr, k, false, false);

	ret = qweight_init(&r->qw, n, k, o->bits, QW_LAYOUT_COL, o->apot);
	if (ret < 0)
		goto out_free;
	ret = gptq_run(&gc, Wr, n, k, Hr, q, &r->qw, e);
	if (ret < 0)
		goto out_free;

	/* back to the original basis for the dense forward: [Sᵀ] Q T */
	qweight_dequant(&r->qw, q);
	for (size_t i = 0; i < nk; i++)
		Wr[i] = q[i];
	rows_d(&tin, Wr, n, true, false);
	if (both)
		cols_d(&tout, Wr, k, true, false, buf);
	for (size_t i = 0; i < nk; i++)
		r->dense[i] = (float)Wr[i];
	r->has_qweight = true;
	r->rht = o->rht;
	r->rht_seed_in = o->rht_seed_in;
	r->rht_seed_out = both ? o->rht_seed_out : 0;
	ret = 0;

out_free:
	free(q);
	free(buf);
	free(Hr);
	rht_done(&tout);
	rht_done(&tin);
	return ret;
}
