/* SPDX-License-Identifier: MIT */
#ifndef TOOLS_SHIFTADD_BENCH_REPORT_H
#define TOOLS_SHIFTADD_BENCH_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tools/shiftadd-bench/stats.h"

/* One measured point of a sweep and the profiler's outputs (JSON, CSV, gnuplot plots). */

#define REPORT_MAX_WORKERS 256

struct report_point {
	uint32_t clients, concurrency, workers; /* workers: the daemon's worker count */
	double window_s; /* measurement window (or first submit to last done) */
	uint64_t ok, failed, tokens;
	double tokens_per_s, requests_per_s;
	struct stats_summary ttft_ms, itl_ms, e2e_ms;
	uint32_t n_workers;
	int worker_cpu[REPORT_MAX_WORKERS];
	int worker_node[REPORT_MAX_WORKERS];
	double worker_util[REPORT_MAX_WORKERS]; /* busy fraction over the window */
	double util_mean;
	double loop_busy;    /* daemon loop thread inside scheduler steps, fraction of the window */
	double daemon_cores; /* daemon CPU time over the window / window: cores kept busy */
};

struct report_meta {
	const char *command; /* argv joined */
	const char *label;   /* free text (--label) */
	const char *model;   /* daemon status: model name and backend */
	const char *backend;
	char host[64];
	char date[32];
	const char *commit; /* $SHIFTADD_COMMIT or "unknown" */
	uint32_t cpus;	    /* online CPUs */
	bool have_rtt;
	struct stats_summary rtt_us; /* empty-request round trip */
};

/* Write the JSON report. Returns 0 or -errno. */
int report_write_json(const char *path, const struct report_meta *m, const struct report_point *p,
		      size_t n);
/* Write one CSV row per point (header first). Returns 0 or -errno. */
int report_write_csv(const char *path, const struct report_point *p, size_t n);
/*
 * Write @prefix.gp and, if @run, run gnuplot on it to make @prefix-throughput.{svg,png} and
 * @prefix-latency.{svg,png} from @csv_path. Returns 0, 1 (script only), -ENOENT (no gnuplot:
 * the script is still written) or -EIO (gnuplot failed).
 */
int report_plot(const char *prefix, const char *csv_path, const struct report_point *p, size_t n,
		bool run);
/* One human line per point. */
void report_print_point(FILE *f, const struct report_point *p);
void report_print_header(FILE *f);

#endif /* TOOLS_SHIFTADD_BENCH_REPORT_H */
