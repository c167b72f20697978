// SPDX-License-Identifier: MIT
/*
 * Quantization error propagation (reparam/internal.h: qep_*). The quantized model's input X̂
 * of a linear differs from the unquantized model's X by what the layers before it lost. GPTQ
 * alone minimizes ||(W - Q) X̂||; aiming at the unquantized output instead, ||W X - Q X̂||, is
 * the same problem with the target W X X̂ᵀ (X̂ X̂ᵀ)⁻¹ = W + W D Ĥ⁻¹ (D = (X - X̂) X̂ᵀ), so the
 * correction is folded into the weights before the unchanged quantizer runs.
 */
#include <cblas.h>
#include <errno.h>
#include <lapacke.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_bf16.h"
#include "reparam/internal.h"

int calib_xacc_init(struct calib_xacc *a, uint32_t width, bool bf16)
{
	memset(a, 0, sizeof(*a));
	a->width = width;
	a->bf16 = bf16;
	a->chunk = bf16 ? CALIB_HACC_CHUNK_BF16 : CALIB_HACC_CHUNK;
	a->D = calloc((uint64_t)width * width, sizeof(double));
	a->tmp = malloc((uint64_t)width * width * sizeof(float));
	a->diff = malloc((uint64_t)a->chunk * width * sizeof(float));
	return a->D && a->tmp && a->diff ? 0 : -ENOMEM;
}

void calib_xacc_done(struct calib_xacc *a)
{
	free(a->D);
	free(a->tmp);
	free(a->diff);
	memset(a, 0, sizeof(*a));
}

void calib_xacc_add(struct calib_xacc *a, const float *ref, const float *x, uint64_t n)
{
	uint32_t w = a->width;

	for (uint64_t r0 = 0; r0 < n; r0 += a->chunk) {
		uint32_t m = n - r0 < a->chunk ? (uint32_t)(n - r0) : a->chunk;
		const float *xr = ref + r0 * w, *xq = x + r0 * w;

		/* the difference first, in f32: D is small next to X X̂ᵀ, so no cancellation */
		for (uint64_t i = 0; i < (uint64_t)m * w; i++)
			a->diff[i] = xr[i] - xq[i];
		if (!a->bf16 || gemm_bf16_tn(w, w, m, a->diff, w, xq, w, a->tmp, w, false) < 0)
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, w, w, m, 1.0f, a->diff,
				    w, xq, w, 0.0f, a->tmp, w);
		for (uint64_t i = 0; i < (uint64_t)w * w; i++)
			a->D[i] += a->tmp[i];
	}
	a->n_rows += n;
}

void calib_xacc_merge(struct calib_xacc *dst, const struct calib_xacc *src)
{
	for (uint64_t i = 0; i < (uint64_t)dst->width * dst->width; i++)
		dst->D[i] += src->D[i];
	dst->n_rows += src->n_rows;
}

void calib_xacc_finish(struct calib_xacc *a)
{
	cblas_dscal((uint64_t)a->width * a->width, 2.0 / (double)a->n_rows, a->D, 1);
}

int qep_solve(const double *H, const double *D, uint32_t k, double percdamp, double *M,
	      struct errbuf *e)
{
	double *A = malloc((size_t)k * k * sizeof(double));
	int info;

	if (!A)
		return -ENOMEM;
	gptq_damped(H, k, percdamp, A, NULL);
	/* row-major D read column-major is Dᵀ: the solution A⁻¹ Dᵀ read back row-major is D A⁻¹ */
	memcpy(M, D, (size_t)k * k * sizeof(double));
	info = LAPACKE_dposv(LAPACK_COL_MAJOR, 'L', (lapack_int)k, (lapack_int)k, A, (lapack_int)k,
			     M, (lapack_int)k);
	free(A);
	if (info != 0)
		return errbuf_set(
			e, -EDOM,
			"error propagation: Hessian not positive definite (dposv info %d)", info);
	return 0;
}

int qep_apply(const float *W, uint32_t n, uint32_t k, const double *M, double strength, float *out)
{
	double *Wd = calloc((size_t)n * k, sizeof(double));
	double *C = malloc((size_t)n * k * sizeof(double));

	if (!Wd || !C) {
		free(Wd);
		free(C);
		return -ENOMEM;
	}
	for (size_t i = 0; i < (size_t)n * k; i++)
		Wd[i] = W[i];
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k, k, 1.0, Wd, k, M, k, 0.0, C,
		    k);
	for (size_t i = 0; i < (size_t)n * k; i++)
		out[i] = (float)(Wd[i] + strength * C[i]);
	free(Wd);
	free(C);
	return 0;
}
