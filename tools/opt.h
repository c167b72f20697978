/* SPDX-License-Identifier: MIT */
#ifndef TOOLS_OPT_H
#define TOOLS_OPT_H

#include <getopt.h>
#include <stdio.h>

/*
 * One table per command feeds both getopt_long and --help, so the two cannot drift.
 * getopt_long returns the short letter, or OPT_LONG_BASE + index for long-only options.
 */
struct opt_spec {
	const char *name; /* long name without "--" */
	int short_name;	  /* 0 if none */
	const char *arg;  /* argument placeholder ("N", "FILE"), or NULL for a flag */
	const char *def;  /* default shown in --help, or NULL */
	const char *help;
};

#define OPT_LONG_BASE 256
#define OPT_MAX	      64

/* Fill @longopts (OPT_MAX + 1 entries) and @shortopts (3 * OPT_MAX + 2 bytes). */
void opt_build(const struct opt_spec *specs, struct option *longopts, char *shortopts);
/* Print "usage: @usage", @desc, then one line per option with its default. */
void opt_usage(FILE *f, const char *usage, const char *desc, const struct opt_spec *specs);
/* The spec index for a getopt_long return value, or -1. */
int opt_index(const struct opt_spec *specs, int c);

/* Parse helpers: print "<prog>: invalid value for --name" and return -EINVAL on error. */
int opt_u32(const char *name, const char *s, unsigned *ret);
int opt_float(const char *name, const char *s, float *ret);
int opt_u64(const char *name, const char *s, unsigned long long *ret);

#endif /* TOOLS_OPT_H */
