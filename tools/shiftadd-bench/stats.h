/* SPDX-License-Identifier: MIT */
#ifndef TOOLS_SHIFTADD_BENCH_STATS_H
#define TOOLS_SHIFTADD_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

/*
 * The profiler's statistics: latency percentiles and rates. Pure functions on caller memory.
 */

/* A growable array of samples. */
struct dvec {
	double *v; /* [n] of [cap] */
	size_t n, cap;
};

/* Append @x. Returns 0 or -ENOMEM (the vector is unchanged). */
int dvec_push(struct dvec *d, double x);
/* Free the samples; the vector is empty and reusable after. */
void dvec_done(struct dvec *d);

/*
 * Percentile @p (0..100) of @v[n], which must be sorted ascending, by linear interpolation
 * between the closest ranks: rank h = (n - 1) * p / 100, value v[floor h] + (h - floor h) *
 * (v[floor h + 1] - v[floor h]) (numpy's default, Hyndman-Fan type 7). NAN when n == 0.
 */
double stats_percentile_sorted(const double *v, size_t n, double p);

struct stats_summary {
	size_t n;
	double min, max, mean;
	double p50, p90, p99;
};

/* Sort @v[n] in place and summarize it (every field NAN, n 0, when n == 0). */
void stats_summarize(double *v, size_t n, struct stats_summary *ret);

/* @count events over [@t0_ns, @t1_ns] as a rate per second; 0 when the interval is empty. */
double stats_rate(uint64_t count, uint64_t t0_ns, uint64_t t1_ns);

/*
 * Busy fraction of an interval from two readings of a busy-time counter: (busy1 - busy0) /
 * (t1 - t0), clamped to [0, 1]; 0 when the interval is empty or the counter went backwards
 * (it restarted, e.g. after a worker change).
 */
double stats_utilization(uint64_t busy0_ns, uint64_t busy1_ns, uint64_t t0_ns, uint64_t t1_ns);

#endif /* TOOLS_SHIFTADD_BENCH_STATS_H */
