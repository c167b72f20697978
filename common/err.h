/* SPDX-License-Identifier: MIT */
#ifndef COMMON_ERR_H
#define COMMON_ERR_H

#include <errno.h>
#include <stddef.h>

/*
 * Error convention: every fallible call returns int, 0 (or a count) on success and a negative
 * errno on failure. Domain errors always use the same codes:
 *
 *   malformed file, JSON or text      -EBADMSG     unknown arch, format or version  -EOPNOTSUPP
 *   size arithmetic overflow          -EOVERFLOW   hostile ring or protobuf data    -EPROTO
 *   ring full                         -EAGAIN      quota hit                        -EDQUOT
 *   peer not allowed                  -EPERM       cancelled                        -ECANCELED
 *
 * Parsers of outside data also fill an optional struct errbuf with one line saying what is
 * wrong (without the file name, which the caller adds).
 */

#define ERRBUF_LEN 256

struct errbuf {
	char msg[ERRBUF_LEN];
};

/*
 * Format a message into @e (if @e is not NULL) and return @ret unchanged, so that a parser
 * can write `return errbuf_set(e, -EBADMSG, "tensor '%s' past end of file", name);`.
 */
int errbuf_set(struct errbuf *e, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The message in @e, or strerror(-@ret) if @e is NULL or empty. Never NULL. */
const char *errbuf_str(const struct errbuf *e, int ret);

#endif /* COMMON_ERR_H */
