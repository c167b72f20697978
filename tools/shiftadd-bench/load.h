/* SPDX-License-Identifier: MIT */
#ifndef TOOLS_SHIFTADD_BENCH_LOAD_H
#define TOOLS_SHIFTADD_BENCH_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/shiftadd-bench/stats.h"

/*
 * The load side of shiftadd-bench: one client process keeps @concurrency streamed requests in
 * flight through libshiftadd and reports every measured request to the parent over a pipe.
 * Timing uses CLOCK_MONOTONIC, which all processes share.
 */

struct load_prompt {
	const char *text;
	uint32_t max_tokens;
};

struct load_cfg {
	const char *socket;
	const struct load_prompt *prompts; /* [n_prompts], used round-robin */
	size_t n_prompts;
	uint32_t concurrency; /* requests in flight per client */
	uint64_t requests;    /* count mode: measured requests for this client; 0: duration mode */
	uint64_t warmup_ns; /* after the start signal, requests submitted before are not measured */
	uint64_t duration_ns; /* duration mode: measurement window after the warm-up */
	float temperature;
	int timeout_ms; /* give up on a silent daemon */
};

/* Shared (MAP_SHARED) between the parent and every client process. */
struct load_shared {
	uint64_t go_ns; /* 0 until the parent starts the run (all clients connected) */
	uint32_t n_ready;
	uint32_t n_failed_connect;
	struct {
		uint64_t tokens;
		uint64_t requests;
	} progress[]; /* [n_clients], written by client i, read by the parent */
};

/* What one measured request looked like (written by the child, read by the parent). */
struct load_record {
	uint32_t kind; /* LOAD_REC_* */
	int32_t error; /* 0 or -errno from the DONE event */
	uint32_t n_tokens;
	uint32_t n_itl; /* this many doubles (inter-token gaps, ns) follow the record */
	uint64_t t_submit, t_first, t_done;
};

/* A client's totals within the measurement window (duration mode), sent last. */
struct load_window {
	uint32_t kind;
	uint32_t pad;
	uint64_t tokens;   /* tokens that arrived inside the window */
	uint64_t requests; /* requests that finished inside the window */
};

enum {
	LOAD_REC_REQUEST = 1,
	LOAD_REC_WINDOW = 2,
};

/*
 * Body of client process @index: connect, report ready, wait for go, run, write records to
 * @out_fd. Returns a process exit status (0 ok, 1 failure).
 */
int load_child(const struct load_cfg *cfg, uint32_t index, struct load_shared *sh, int out_fd);

/* Aggregate of one run, parsed from every child's stream. */
struct load_result {
	uint64_t ok, failed, tokens;
	uint64_t win_tokens, win_requests; /* duration mode */
	uint64_t t_first_submit, t_last_done;
	struct dvec ttft_ns, itl_ns, e2e_ns;
};

/*
 * Parse @len bytes of one child's stream into @r (adding to it). Returns 0 or -EPROTO on a
 * truncated or unknown record.
 */
int load_parse(const uint8_t *buf, size_t len, struct load_result *r);
void load_result_done(struct load_result *r);

#endif /* TOOLS_SHIFTADD_BENCH_LOAD_H */
