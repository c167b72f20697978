// SPDX-License-Identifier: MIT
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int errbuf_set(struct errbuf *e, int ret, const char *fmt, ...)
{
	va_list ap;

	if (!e)
		return ret;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return ret;
}

const char *errbuf_str(const struct errbuf *e, int ret)
{
	if (e && e->msg[0])
		return e->msg;
	return strerror(ret < 0 ? -ret : ret);
}
