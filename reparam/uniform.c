// SPDX-License-Identifier: MIT
/* Uniform asymmetric quantizer (the RTN and GPTQ baselines). */
#include "reparam/internal.h"

#include <math.h>

struct uniform_param uniform_fit(const double *v, uint32_t n, uint32_t bits)
{
	double lo = 0, hi = 0, maxq = (double)((1u << bits) - 1);
	struct uniform_param p;

	/* The range always includes 0, so zero weights (dead columns) stay exactly zero. */
	for (uint32_t e = 0; e < n; e++) {
		lo = fmin(lo, v[e]);
		hi = fmax(hi, v[e]);
	}
	if (lo == hi) {
		lo = -1;
		hi = 1;
	}
	p.scale = (hi - lo) / maxq;
	p.zero = nearbyint(-lo / p.scale);
	return p;
}

double uniform_quant(struct uniform_param p, double x, uint32_t bits)
{
	double maxq = (double)((1u << bits) - 1);
	double q = nearbyint(x / p.scale) + p.zero;

	q = fmin(fmax(q, 0), maxq);
	return p.scale * (q - p.zero);
}
