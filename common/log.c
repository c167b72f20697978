// SPDX-License-Identifier: MIT
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum log_level log_max_level = LOG_LVL_INFO;
static int journal;

static const char *const names[LOG_LVL_COUNT] = {
	[LOG_LVL_ERR] = "err",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

/* syslog priorities for journald's "<N>" prefix */
static const int prio[LOG_LVL_COUNT] = { 3, 4, 6, 7 };

void log_set_journal(int on)
{
	journal = on;
}

int log_level_parse(const char *s)
{
	for (int i = 0; i < LOG_LVL_COUNT; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -EINVAL;
}

void log_emit(enum log_level lvl, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* one fputs per line so concurrent writers do not interleave mid-line */
	if (journal)
		fprintf(stderr, "<%d>%s\n", prio[lvl], line);
	else
		fprintf(stderr, "%s: %s\n", names[lvl], line);
}
