/* SPDX-License-Identifier: MIT */
#ifndef PROTO_STATUS_H
#define PROTO_STATUS_H

/*
 * The wire protocol's Status enum (proto/shiftadd.proto) against negative errno: the only place
 * the two meet. Both functions are total: unknown inputs map to STATUS_INTERNAL / -EIO.
 */

/* Protocol status for a result @ret (0 or -errno). */
int status_from_errno(int ret);
/* 0 or -errno for a protocol @status value (as read from the wire, possibly unknown). */
int status_to_errno(int status);
/* Stable lower-case name of @status ("ok", "quota_exceeded", ...); "unknown" if out of range. */
const char *status_name(int status);

#endif /* PROTO_STATUS_H */
