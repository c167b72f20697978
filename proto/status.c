// SPDX-License-Identifier: MIT
#include "proto/status.h"

#include <errno.h>

#include "proto/shiftadd.pb-c.h"

/* clang-format off */
static const struct {
	int status;
	int err;
	const char *name;
} map[] = {
	{ SHIFTADD__STATUS__STATUS_OK,			0,		"ok" },
	{ SHIFTADD__STATUS__STATUS_INVALID_ARGUMENT,	-EINVAL,	"invalid_argument" },
	{ SHIFTADD__STATUS__STATUS_PROTOCOL_ERROR,	-EPROTO,	"protocol_error" },
	{ SHIFTADD__STATUS__STATUS_QUOTA_EXCEEDED,	-EDQUOT,	"quota_exceeded" },
	{ SHIFTADD__STATUS__STATUS_BUSY,		-EAGAIN,	"busy" },
	{ SHIFTADD__STATUS__STATUS_PERMISSION_DENIED,	-EPERM,		"permission_denied" },
	{ SHIFTADD__STATUS__STATUS_CANCELLED,		-ECANCELED,	"cancelled" },
	{ SHIFTADD__STATUS__STATUS_UNSUPPORTED,		-EOPNOTSUPP,	"unsupported" },
	{ SHIFTADD__STATUS__STATUS_TOO_LONG,		-E2BIG,		"too_long" },
	{ SHIFTADD__STATUS__STATUS_SHUTTING_DOWN,	-ESHUTDOWN,	"shutting_down" },
	{ SHIFTADD__STATUS__STATUS_NOT_FOUND,		-ENOENT,	"not_found" },
	{ SHIFTADD__STATUS__STATUS_INTERNAL,		-EIO,		"internal" },
};
/* clang-format on */

#define N_MAP (sizeof(map) / sizeof(map[0]))

int status_from_errno(int ret)
{
	for (unsigned i = 0; i < N_MAP; i++)
		if (map[i].err == ret)
			return map[i].status;
	/* EACCES is how a filesystem says "not allowed"; keep it with EPERM. */
	if (ret == -EACCES)
		return SHIFTADD__STATUS__STATUS_PERMISSION_DENIED;
	return SHIFTADD__STATUS__STATUS_INTERNAL;
}

int status_to_errno(int status)
{
	for (unsigned i = 0; i < N_MAP; i++)
		if (map[i].status == status)
			return map[i].err;
	return -EIO;
}

const char *status_name(int status)
{
	for (unsigned i = 0; i < N_MAP; i++)
		if (map[i].status == status)
			return map[i].name;
	return "unknown";
}
