/* SPDX-License-Identifier: MIT */
#ifndef COMMON_GROW_H
#define COMMON_GROW_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * Make the array *@p (*@cap elements of @elem bytes) hold at least @need elements, doubling
 * from 16, so that appending one at a time stays linear. On failure *@p and *@cap are
 * unchanged. Returns 0, -EOVERFLOW or -ENOMEM.
 */
static inline int array_grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t n = *cap ? *cap : 16;
	void *q;

	if (need <= *cap)
		return 0;
	while (n < need) {
		if (n > SIZE_MAX / 2 / elem)
			return -EOVERFLOW;
		n *= 2;
	}
	q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

#endif /* COMMON_GROW_H */
