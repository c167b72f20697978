/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_SAFETENSORS_H
#define ENGINE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/*
 * Safetensors reader: a single *.safetensors file, or a sharded checkpoint described by
 * model.safetensors.index.json, opened as one set of tensors. Files are mmapped read-only; the
 * JSON header's every offset and shape is checked against the file before use.
 */

enum st_dtype {
	ST_F32,
	ST_F16,
	ST_BF16,
	ST_OTHER, /* listed but not loadable (I64, U8, ...): to_f32 gives -EOPNOTSUPP */
};

struct st_tensor {
	char *name;
	enum st_dtype dtype;
	uint32_t n_dims;   /* 0..4 */
	uint64_t shape[4]; /* row-major as in the file: shape[n_dims-1] is contiguous */
	uint64_t n_elems;
	const void *data; /* into the mapping; n_bytes long */
	uint64_t n_bytes;
};

struct st_set;

/*
 * Open @path: a .safetensors file, a model.safetensors.index.json, or a directory holding
 * either. Caller frees with st_close().
 */
int st_open(const char *path, struct st_set **ret, struct errbuf *e);
/* Parse one in-memory file image (borrowed until st_close(); used by fuzzers and tests). */
int st_open_mem(const void *buf, size_t size, struct st_set **ret, struct errbuf *e);
void st_close(struct st_set *s);

size_t st_n_tensors(const struct st_set *s);
const struct st_tensor *st_tensor_at(const struct st_set *s, size_t i);
/* The tensor named @name, or NULL. */
const struct st_tensor *st_find(const struct st_set *s, const char *name);
/* Convert to f32 into @dst (n_elems floats). -EOPNOTSUPP for ST_OTHER. */
int st_tensor_to_f32(const struct st_tensor *t, float *dst);

#endif /* ENGINE_SAFETENSORS_H */
