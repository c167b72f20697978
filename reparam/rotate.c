// SPDX-License-Identifier: MIT
/* Seeded randomness and the random orthogonal rotation of shiftadd-acc-sim (QuIP-style). */
#include "reparam/internal.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

double rng_uniform(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

double rng_normal(struct rng *r)
{
	double u = 1.0 - rng_uniform(r), v = rng_uniform(r); /* u in (0, 1] */

	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

int rotate_random_orthogonal(uint32_t k, uint64_t seed, double *Q)
{
	double *tau, *rdiag;
	struct rng r;
	int info, ret = 0;

	tau = malloc(k * sizeof(double));
	rdiag = malloc(k * sizeof(double));
	if (!tau || !rdiag) {
		ret = -ENOMEM;
		goto out_free;
	}
	rng_seed(&r, seed);
	for (size_t i = 0; i < (size_t)k * k; i++)
		Q[i] = rng_normal(&r);
	info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, (lapack_int)k, (lapack_int)k, Q, (lapack_int)k,
			      tau);
	if (info != 0) {
		ret = -EDOM;
		goto out_free;
	}
	for (uint32_t i = 0; i < k; i++)
		rdiag[i] = Q[(size_t)i * k + i];
	info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, (lapack_int)k, (lapack_int)k, (lapack_int)k, Q,
			      (lapack_int)k, tau);
	if (info != 0) {
		ret = -EDOM;
		goto out_free;
	}
	/* Q diag(sign(R_ii)) is Haar-distributed (plain Householder QR is not). */
	for (uint32_t i = 0; i < k; i++)
		for (uint32_t j = 0; j < k; j++)
			if (rdiag[j] < 0)
				Q[(size_t)i * k + j] = -Q[(size_t)i * k + j];

out_free:
	free(rdiag);
	free(tau);
	return ret;
}
