// SPDX-License-Identifier: MIT
/* Open addressing with linear probing; the table is kept at most half full. */
#include "engine/name_index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_name(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

int name_index_init(struct name_index *ix, uint64_t n)
{
	size_t cap = 16;

	if (n >= (1ull << 31))
		return -ENOMEM;
	while (cap < 2 * n)
		cap *= 2;
	ix->slots = malloc(cap * sizeof(*ix->slots));
	if (!ix->slots)
		return -ENOMEM;
	memset(ix->slots, 0xff, cap * sizeof(*ix->slots));
	ix->mask = cap - 1;
	return 0;
}

void name_index_done(struct name_index *ix)
{
	free(ix->slots);
	ix->slots = NULL;
	ix->mask = 0;
}

int64_t name_index_put(struct name_index *ix, const char *name, uint32_t idx,
		       name_index_name_fn name_at, const void *ctx)
{
	size_t h = (size_t)hash_name(name) & ix->mask;

	while (ix->slots[h] != UINT32_MAX) {
		if (!strcmp(name_at(ctx, ix->slots[h]), name))
			return ix->slots[h];
		h = (h + 1) & ix->mask;
	}
	ix->slots[h] = idx;
	return -1;
}

int64_t name_index_get(const struct name_index *ix, const char *name, name_index_name_fn name_at,
		       const void *ctx)
{
	size_t h;

	if (!ix->slots)
		return -1;
	h = (size_t)hash_name(name) & ix->mask;
	while (ix->slots[h] != UINT32_MAX) {
		if (!strcmp(name_at(ctx, ix->slots[h]), name))
			return ix->slots[h];
		h = (h + 1) & ix->mask;
	}
	return -1;
}
