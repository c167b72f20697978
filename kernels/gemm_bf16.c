// SPDX-License-Identifier: MIT
#include "kernels/gemm_bf16.h"

#include <errno.h>
#include <string.h>

#include "kernels/internal.h"

bool gemm_bf16_supported(void)
{
	return kernels_host_bf16();
}

float gemm_bf16_round(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof(u));
	if ((u & 0x7fffffffu) > 0x7f800000u)
		u |= 0x00400000u; /* quiet NaN: rounding must not carry it into infinity */
	else
		u += 0x7fffu + ((u >> 16) & 1u);
	u &= 0xffff0000u;
	memcpy(&x, &u, sizeof(x));
	return x;
}

int gemm_bf16_nt(uint32_t m, uint32_t n, uint32_t k, const float *a, size_t lda, const float *b,
		 size_t ldb, float *c, size_t ldc)
{
	if (!kernels_host_bf16())
		return -EOPNOTSUPP;
	if (lda < k || ldb < k || ldc < n)
		return -EINVAL;
	return gemm_bf16_avx512(m, n, k, a, lda, true, b, ldb, true, c, ldc, false);
}

int gemm_bf16_tn(uint32_t m, uint32_t n, uint32_t k, const float *a, size_t lda, const float *b,
		 size_t ldb, float *c, size_t ldc, bool upper)
{
	if (!kernels_host_bf16())
		return -EOPNOTSUPP;
	if (lda < m || ldb < n || ldc < n || (upper && m != n))
		return -EINVAL;
	return gemm_bf16_avx512(m, n, k, a, lda, false, b, ldb, false, c, ldc, upper);
}
