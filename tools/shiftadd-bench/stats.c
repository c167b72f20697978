// SPDX-License-Identifier: MIT
#include "tools/shiftadd-bench/stats.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

int dvec_push(struct dvec *d, double x)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 256;
		double *v = realloc(d->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	d->v[d->n++] = x;
	return 0;
}

void dvec_done(struct dvec *d)
{
	free(d->v);
	d->v = NULL;
	d->n = d->cap = 0;
}

double stats_percentile_sorted(const double *v, size_t n, double p)
{
	double h, lo;
	size_t i;

	if (n == 0 || isnan(p))
		return NAN;
	if (p <= 0)
		return v[0];
	if (p >= 100)
		return v[n - 1];
	h = (double)(n - 1) * p / 100.0;
	lo = floor(h);
	i = (size_t)lo;
	if (i + 1 >= n)
		return v[n - 1];
	return v[i] + (h - lo) * (v[i + 1] - v[i]);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

void stats_summarize(double *v, size_t n, struct stats_summary *ret)
{
	double sum = 0;

	ret->n = n;
	if (n == 0) {
		ret->min = ret->max = ret->mean = ret->p50 = ret->p90 = ret->p99 = NAN;
		return;
	}
	qsort(v, n, sizeof(*v), cmp_double);
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	ret->min = v[0];
	ret->max = v[n - 1];
	ret->mean = sum / (double)n;
	ret->p50 = stats_percentile_sorted(v, n, 50);
	ret->p90 = stats_percentile_sorted(v, n, 90);
	ret->p99 = stats_percentile_sorted(v, n, 99);
}

double stats_rate(uint64_t count, uint64_t t0_ns, uint64_t t1_ns)
{
	if (t1_ns <= t0_ns)
		return 0;
	return (double)count * 1e9 / (double)(t1_ns - t0_ns);
}

double stats_utilization(uint64_t busy0_ns, uint64_t busy1_ns, uint64_t t0_ns, uint64_t t1_ns)
{
	double u;

	if (t1_ns <= t0_ns || busy1_ns < busy0_ns)
		return 0;
	u = (double)(busy1_ns - busy0_ns) / (double)(t1_ns - t0_ns);
	return u > 1 ? 1 : u;
}
