/* SPDX-License-Identifier: MIT */
#ifndef COMMON_PROGRESS_H
#define COMMON_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Long-running library work reports through a progress_fn; tools render it with struct
 * progress, a one-line bar with rate and ETA that redraws only on a TTY (elsewhere it prints
 * nothing until progress_end()).
 */
typedef void (*progress_fn)(void *arg, uint64_t done, uint64_t total);

struct progress {
	FILE *out;
	const char *label;
	const char *unit; /* e.g. "tok"; rate is shown as unit/s */
	uint64_t total;
	uint64_t done;
	double t_start;
	double t_last_draw;
	bool tty;
};

/* Start a bar on @out (stderr normally); @label and @unit are borrowed for the bar's life. */
void progress_begin(struct progress *p, FILE *out, const char *label, const char *unit,
		    uint64_t total);
/* Set the absolute amount done; redraws at most every 100 ms. */
void progress_update(struct progress *p, uint64_t done);
/* A progress_fn adapter: @arg is a struct progress. */
void progress_cb(void *arg, uint64_t done, uint64_t total);
/* Finish the line (TTY) or print one summary line (not a TTY). */
void progress_end(struct progress *p);

/* Format seconds as "1h02m", "3m05s" or "12.3s" into @buf. */
void progress_fmt_duration(double secs, char *buf, size_t len);

/* Monotonic clock in seconds. */
double progress_now(void);

#endif /* COMMON_PROGRESS_H */
