/* SPDX-License-Identifier: MIT */
#ifndef KERNELS_GEMM_BF16_H
#define KERNELS_GEMM_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * f32 matrix products computed with bf16 products (AVX512_BF16's vdpbf16ps), for the offline
 * optimizer's calibration passes (reparam/calib.c): twice the f32 FMA rate on the hosts that
 * have it. Inputs are f32; each element is rounded to bf16 (nearest even) on the way in, the
 * products of two bf16 are exact in f32 and are summed in f32, in pairs of consecutive k,
 * k-blocks in order (blocks of one even size of at most GEMM_BF16_KC, fixed by k). The result depends only on the shapes, not on where the
 * caller's rows start or on the machine's thread count. Never used at inference: the deployed
 * model's kernels are multiplication-free (kernels/lut.h).
 *
 * Single-threaded; safe to call from several threads at once (each thread keeps its own
 * packing buffers, freed when it exits).
 */

/* The most k per block: a block's partial sums are f32, summed in f32 across blocks. */
#define GEMM_BF16_KC 320

/* Whether this host (CPU and OS vector state) runs the bf16 products. */
bool gemm_bf16_supported(void);

/*
 * C[i][j] = sum_k A[i][k] * B[j][k] for i < m, j < n (A: [m][lda], B: [n][ldb], C: [m][ldc];
 * the shape of x Wᵀ, a linear layer's forward over m tokens). C is overwritten.
 * Returns 0, -EOPNOTSUPP without gemm_bf16_supported(), or -ENOMEM.
 */
int gemm_bf16_nt(uint32_t m, uint32_t n, uint32_t k, const float *a, size_t lda, const float *b,
		 size_t ldb, float *c, size_t ldc);

/*
 * C[i][j] = sum_k A[k][i] * B[k][j] for i < m, j < n (A: [k][lda], B: [k][ldb]: Xᵀ Y of two
 * row-per-token activations, a Hessian or cross-covariance). With @upper (m == n required)
 * the tiles wholly below the diagonal are skipped: every entry j >= i is written, an entry
 * below it either gets its value or is left as it was. Returns 0, -EOPNOTSUPP, -EINVAL or
 * -ENOMEM.
 */
int gemm_bf16_tn(uint32_t m, uint32_t n, uint32_t k, const float *a, size_t lda, const float *b,
		 size_t ldb, float *c, size_t ldc, bool upper);

/* @x rounded to the nearest bf16 (ties to even), widened back to f32; NaN stays NaN. */
float gemm_bf16_round(float x);

#endif
