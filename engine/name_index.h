/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_NAME_INDEX_H
#define ENGINE_NAME_INDEX_H

#include <stddef.h>
#include <stdint.h>

/*
 * A hash index from NUL-terminated names to uint32 positions in a caller-owned table, used by
 * the loaders for duplicate checks and O(1) lookups. The names are not stored: the caller
 * passes @name_at(@ctx, i), which returns the name at position i. Not thread-safe for writes;
 * concurrent lookups are fine.
 */
struct name_index {
	uint32_t *slots; /* [mask + 1]; UINT32_MAX marks an empty slot */
	size_t mask;
};

typedef const char *(*name_index_name_fn)(const void *ctx, uint32_t i);

/* Size the index for up to @n names (n < 2^31). 0 or -ENOMEM. Free with name_index_done(). */
int name_index_init(struct name_index *ix, uint64_t n);
/* Free the slots; a zeroed or already-done index is fine. */
void name_index_done(struct name_index *ix);
/*
 * Insert position @idx under @name unless the name is present. Returns the existing position
 * (a duplicate), or -1 after inserting. At most the @n given to init names may be inserted.
 */
int64_t name_index_put(struct name_index *ix, const char *name, uint32_t idx,
		       name_index_name_fn name_at, const void *ctx);
/* Position of @name, or -1. */
int64_t name_index_get(const struct name_index *ix, const char *name, name_index_name_fn name_at,
		       const void *ctx);

#endif /* ENGINE_NAME_INDEX_H */
