/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_GGUF_H
#define ENGINE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "engine/dtype.h"

/*
 * GGUF v2/v3 reader over a read-only mmap. Every count, length and offset read from the file
 * is checked against the mapping before use; a bad file gives -EBADMSG (or -EOPNOTSUPP for an
 * unknown version or tensor type) and one line in the errbuf. Strings in the file are not
 * NUL-terminated, so keys and tensor names are copied out; metadata values point into the
 * mapping and stay valid until gguf_close().
 */

enum gguf_vtype {
	GGUF_VT_UINT8 = 0,
	GGUF_VT_INT8 = 1,
	GGUF_VT_UINT16 = 2,
	GGUF_VT_INT16 = 3,
	GGUF_VT_UINT32 = 4,
	GGUF_VT_INT32 = 5,
	GGUF_VT_FLOAT32 = 6,
	GGUF_VT_BOOL = 7,
	GGUF_VT_STRING = 8,
	GGUF_VT_ARRAY = 9,
	GGUF_VT_UINT64 = 10,
	GGUF_VT_INT64 = 11,
	GGUF_VT_FLOAT64 = 12,
	GGUF_VT_COUNT,
};

/* Bytes of one value of type @t: 0 for strings and arrays, -1 for a type GGUF does not define. */
int gguf_vtype_size(uint32_t t);

/* A string inside the mapping: @len bytes at @data, not NUL-terminated. */
struct gguf_str {
	uint64_t len;
	const char *data;
};

struct gguf_kv {
	char *key;		  /* NUL-terminated copy */
	enum gguf_vtype type;	  /* GGUF_VT_ARRAY for arrays */
	enum gguf_vtype arr_type; /* element type when type == GGUF_VT_ARRAY */
	uint64_t n;		  /* element count for arrays, 1 otherwise */
	/*
	 * Scalars: points at the (unaligned, little-endian) value in the mapping.
	 * Strings and string arrays: points at struct gguf_str[n] owned by the reader.
	 * Other arrays: points at the packed elements in the mapping (may be unaligned).
	 * Arrays of arrays are validated and skipped: data is NULL.
	 */
	const void *data;
};

struct gguf_tensor {
	char *name; /* NUL-terminated copy */
	enum ggml_type type;
	uint32_t n_dims; /* 1..4 */
	uint64_t ne[4];	 /* ne[0] is the contiguous dimension (row length); unused dims are 1 */
	uint64_t n_elems;
	uint64_t n_bytes;
	uint64_t offset;  /* from the start of the file */
	const void *data; /* into the mapping, aligned as the file says */
};

struct gguf_priv;

struct gguf_file {
	char *path;
	uint32_t version;
	uint64_t alignment;
	const uint8_t *base; /* the mapping */
	size_t size;
	uint64_t n_kv;
	struct gguf_kv *kv;
	uint64_t n_tensors;
	struct gguf_tensor *tensors;
	uint64_t data_offset;	/* start of the tensor data section */
	struct gguf_priv *priv; /* reader internals (name indexes, mapping ownership) */
};

/* Map and index @path. On success *ret_g is owned by the caller (gguf_close()). */
int gguf_open(const char *path, struct gguf_file **ret_g, struct errbuf *e);
/* Index an in-memory image (borrowed until gguf_close(); used by fuzzers and tests). */
int gguf_open_mem(const void *buf, size_t size, struct gguf_file **ret_g, struct errbuf *e);
/* Unmap and free; NULL is a no-op. */
void gguf_close(struct gguf_file *g);

/* The key-value pair named @key, or NULL. */
const struct gguf_kv *gguf_find_kv(const struct gguf_file *g, const char *key);
/* The tensor named @name, or NULL. */
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *g, const char *name);

/*
 * Typed getters: 0 on success, -ENOENT if absent, -EBADMSG if the stored type cannot be
 * represented (negative into unsigned, value out of range). Integer getters accept any
 * integer type; gguf_get_f32 also accepts float64 and integers.
 */
int gguf_get_u32(const struct gguf_file *g, const char *key, uint32_t *ret);
int gguf_get_u64(const struct gguf_file *g, const char *key, uint64_t *ret);
int gguf_get_i64(const struct gguf_file *g, const char *key, int64_t *ret);
int gguf_get_f32(const struct gguf_file *g, const char *key, float *ret);
int gguf_get_bool(const struct gguf_file *g, const char *key, bool *ret);
/* A string value: *ret points into the mapping (not NUL-terminated), length in *ret_len. */
int gguf_get_str(const struct gguf_file *g, const char *key, const char **ret, size_t *ret_len);
/* An array value of element type @type: -EBADMSG if the key holds another type. */
int gguf_get_arr(const struct gguf_file *g, const char *key, enum gguf_vtype type,
		 const struct gguf_kv **ret);
/*
 * Element @i of an integer, bool or float array as double (handles unaligned storage);
 * NaN if @kv is not such an array or @i >= kv->n.
 */
double gguf_arr_num(const struct gguf_kv *kv, uint64_t i);

/*
 * Dequantize the whole tensor into @dst (n_elems floats, caller-allocated).
 * Returns -EOPNOTSUPP for types without a dequantizer.
 */
int gguf_tensor_to_f32(const struct gguf_tensor *t, float *dst);

#endif /* ENGINE_GGUF_H */
