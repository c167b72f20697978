// SPDX-License-Identifier: MIT
#include "tests/unit/reparam/synth.h"

#include "reparam/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void synth_weights(uint32_t n, uint32_t k, uint64_t seed, float *W)
{
	struct rng r;

	rng_seed(&r, seed);
	for (size_t i = 0; i < (size_t)n * k; i++) {
		double x = 0.05 * rng_normal(&r);

		if (rng_uniform(&r) < 0.01)
			x *= 4;
		W[i] = (float)x;
	}
}

void synth_hessian(uint32_t k, uint32_t s, uint64_t seed, const uint32_t *dead, uint32_t n_dead,
		   double *H)
{
	uint32_t rank = k / 4 + 1;
	double *A = malloc((size_t)k * rank * sizeof(double));
	double *scale = malloc(k * sizeof(double));
	double *x = malloc(k * sizeof(double)), *z = malloc(rank * sizeof(double));
	struct rng r;

	rng_seed(&r, seed);
	for (size_t i = 0; i < (size_t)k * rank; i++)
		A[i] = rng_normal(&r);
	for (uint32_t i = 0; i < k; i++)
		scale[i] = exp(0.5 * rng_normal(&r)) * (rng_uniform(&r) < 0.05 ? 8 : 1);
	memset(H, 0, (size_t)k * k * sizeof(double));
	for (uint32_t t = 0; t < s; t++) {
		for (uint32_t j = 0; j < rank; j++)
			z[j] = rng_normal(&r);
		for (uint32_t i = 0; i < k; i++) {
			double v = 0.3 * rng_normal(&r);

			for (uint32_t j = 0; j < rank; j++)
				v += A[(size_t)i * rank + j] * z[j];
			x[i] = scale[i] * v;
		}
		for (uint32_t d = 0; d < n_dead; d++)
			x[dead[d]] = 0;
		for (uint32_t i = 0; i < k; i++)
			for (uint32_t j = 0; j < k; j++)
				H[(size_t)i * k + j] += 2.0 * x[i] * x[j] / s;
	}
	free(z);
	free(x);
	free(scale);
	free(A);
}

double synth_output_error(const float *W, const float *Q, uint32_t n, uint32_t k, const double *H)
{
	double tot = 0;

	for (uint32_t r = 0; r < n; r++)
		for (uint32_t i = 0; i < k; i++) {
			double di = (double)W[(size_t)r * k + i] - Q[(size_t)r * k + i];

			for (uint32_t j = 0; j < k; j++)
				tot += di * H[(size_t)i * k + j] *
				       ((double)W[(size_t)r * k + j] - Q[(size_t)r * k + j]);
		}
	return tot;
}

int synth_naf_weight(float a, int *ret_min_exp, int *ret_max_exp)
{
	uint32_t bits;
	uint64_t m;
	int e, pos = 0, cnt = 0, lo = 1000, hi = -1000;

	memcpy(&bits, &a, sizeof(bits));
	if (((bits >> 23) & 0xff) == 0xff)
		return -1;
	m = bits & 0x7fffff;
	e = (int)((bits >> 23) & 0xff);
	if (e) {
		m |= 0x800000;
		e -= 127 + 23;
	} else {
		e = -126 - 23;
	}
	while (m) {
		if (m & 1) {
			if ((m & 3) == 3)
				m++;
			else
				m--;
			cnt++;
			lo = pos + e < lo ? pos + e : lo;
			hi = pos + e > hi ? pos + e : hi;
		}
		m >>= 1;
		pos++;
	}
	if (ret_min_exp)
		*ret_min_exp = lo;
	if (ret_max_exp)
		*ret_max_exp = hi;
	return cnt;
}
