// SPDX-License-Identifier: MIT
/* Shift-add linear backend: placeholder until the LUT kernels are wired in. */
#include "engine/linear.h"

#include <errno.h>

int linear_init_shiftadd(struct linear *l, const struct qweight *qw, struct pool *pool)
{
	return -EOPNOTSUPP;
}
