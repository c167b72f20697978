// SPDX-License-Identifier: MIT
/*
 * Additive powers-of-two (APoT) scaling factors: alpha = sum of a few signed 2^e, so the kernels
 * apply alpha with exponent adds instead of multiplies.
 */
#include "reparam/quant.h"

#include <math.h>
#include <string.h>

/*
 * Exponent of the power of two nearest to @x > 0 (linear distance; the midpoint between 2^(e-1)
 * and 2^e is 0.75 * 2^e, which goes up).
 */
static int nearest_pow2_exp(double x)
{
	int ex;
	double m = frexp(x, &ex); /* x = m * 2^ex, m in [0.5, 1) */

	return m >= 0.75 ? ex : ex - 1;
}

float apot_round(double x, uint32_t n_terms)
{
	double sum = 0, r = x;
	int top = 0, prev = 0;

	if (n_terms == 0 || !isfinite(x))
		return (float)x;
	if (n_terms > APOT_MAX_TERMS)
		n_terms = APOT_MAX_TERMS;
	for (uint32_t t = 0; t < n_terms && r != 0; t++) {
		double a = fabs(r);
		int e = nearest_pow2_exp(a);

		if (e > APOT_EXP_MAX)
			e = APOT_EXP_MAX;
		if (e < APOT_EXP_MIN) {
			/* nearest of {0, 2^EXP_MIN} */
			if (a < ldexp(1.0, APOT_EXP_MIN - 1))
				break;
			e = APOT_EXP_MIN;
		}
		/*
		 * Greedy exponents strictly decrease except when clamped at the top; a repeat
		 * there would only saturate further, and a term more than 23 binades below the
		 * first would not survive float rounding: stop in both cases.
		 */
		if (t > 0 && (e >= prev || top - e > 23))
			break;
		if (t == 0)
			top = e;
		prev = e;
		sum += copysign(ldexp(1.0, e), r);
		r = x - sum;
	}
	return (float)sum; /* exact: all terms lie within 24 binades */
}

int apot_decompose(float a, uint32_t max_terms, int8_t *ret_exp, int8_t *ret_sign)
{
	uint64_t m;
	int ex, n = 0, pos = 0;
	int8_t exps[40], signs[40];
	double frac;

	if (!isfinite(a))
		return -ERANGE;
	if (a == 0)
		return 0;
	/* |a| = m * 2^(ex - 30) with m an integer: a float has 24 significant bits. */
	frac = frexp(fabs((double)a), &ex);
	m = (uint64_t)ldexp(frac, 30);
	ex -= 30;
	/* Non-adjacent form, least significant digit first. */
	while (m) {
		if (m & 1) {
			int d = (m & 3) == 1 ? 1 : -1;

			if (pos + ex < -128 || pos + ex > 127)
				return -ERANGE;
			exps[n] = (int8_t)(pos + ex);
			signs[n] = (int8_t)(a < 0 ? -d : d);
			n++;
			m = d > 0 ? m - 1 : m + 1;
		}
		m >>= 1;
		pos++;
	}
	if ((uint32_t)n > max_terms)
		return -ERANGE;
	for (int t = 0; t < n; t++) {
		ret_exp[t] = exps[n - 1 - t];
		ret_sign[t] = signs[n - 1 - t];
	}
	return n;
}
