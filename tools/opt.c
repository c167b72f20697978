// SPDX-License-Identifier: MIT
#include "tools/opt.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void opt_build(const struct opt_spec *specs, struct option *longopts, char *shortopts)
{
	int i, n = 0;

	shortopts[n++] = ':';
	for (i = 0; specs[i].name && i < OPT_MAX; i++) {
		longopts[i] = (struct option){
			.name = specs[i].name,
			.has_arg = specs[i].arg ? required_argument : no_argument,
			.val = specs[i].short_name ? specs[i].short_name : OPT_LONG_BASE + i,
		};
		if (specs[i].short_name) {
			shortopts[n++] = (char)specs[i].short_name;
			if (specs[i].arg)
				shortopts[n++] = ':';
		}
	}
	longopts[i] = (struct option){ 0 };
	shortopts[n] = 0;
}

int opt_index(const struct opt_spec *specs, int c)
{
	for (int i = 0; specs[i].name; i++) {
		if ((specs[i].short_name && specs[i].short_name == c) || c == OPT_LONG_BASE + i)
			return i;
	}
	return -1;
}

void opt_usage(FILE *f, const char *usage, const char *desc, const struct opt_spec *specs)
{
	fprintf(f, "usage: %s\n\n%s\n\noptions:\n", usage, desc);
	for (int i = 0; specs[i].name; i++) {
		char left[64];

		if (specs[i].short_name)
			snprintf(left, sizeof(left), "-%c, --%s%s%s", specs[i].short_name,
				 specs[i].name, specs[i].arg ? " " : "",
				 specs[i].arg ? specs[i].arg : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s", specs[i].name,
				 specs[i].arg ? " " : "", specs[i].arg ? specs[i].arg : "");
		fprintf(f, "  %-28s %s", left, specs[i].help);
		if (specs[i].def)
			fprintf(f, " (default: %s)", specs[i].def);
		fputc('\n', f);
	}
}

int opt_u64(const char *name, const char *s, unsigned long long *ret)
{
	char *end;

	errno = 0;
	if (!s || !*s || *s == '-')
		goto bad;
	*ret = strtoull(s, &end, 10);
	if (errno || *end)
		goto bad;
	return 0;
bad:
	fprintf(stderr, "invalid value for --%s: '%s' (expected a non-negative integer)\n", name,
		s ? s : "");
	return -EINVAL;
}

int opt_u32(const char *name, const char *s, unsigned *ret)
{
	unsigned long long v;

	if (opt_u64(name, s, &v) < 0)
		return -EINVAL;
	if (v > UINT_MAX) {
		fprintf(stderr, "invalid value for --%s: '%s' (too large)\n", name, s);
		return -EINVAL;
	}
	*ret = (unsigned)v;
	return 0;
}

int opt_float(const char *name, const char *s, float *ret)
{
	char *end;

	errno = 0;
	*ret = strtof(s, &end);
	if (errno || !*s || *end || !isfinite(*ret)) {
		fprintf(stderr, "invalid value for --%s: '%s' (expected a number)\n", name, s);
		return -EINVAL;
	}
	return 0;
}
