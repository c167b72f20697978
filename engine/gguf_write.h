/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_GGUF_WRITE_H
#define ENGINE_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/dtype.h"
#include "engine/gguf.h"

/*
 * GGUF v3 writer. Build the file's key-value pairs and tensors in memory, then write it once:
 * to a path (temp file in the same directory, fsync, rename: an interrupted write never leaves
 * a truncated file at the destination) or to a memory image. Keys and tensor names are copied
 * and must be unique (-EEXIST). Key-value data is copied; tensor data is borrowed until the
 * write returns. The output is readable by gguf_open() and by PyPI gguf's GGUFReader.
 * A writer is not thread-safe.
 */

struct gguf_writer;

/* A new empty writer (alignment 32), or NULL on allocation failure. Free with gguf_writer_free(). */
struct gguf_writer *gguf_writer_new(void);
/* Free the writer and its copies; NULL is a no-op. */
void gguf_writer_free(struct gguf_writer *w);

/*
 * Data alignment (a power of two, 1..2^30; -EINVAL otherwise), recorded as the uint32 kv
 * "general.alignment" at the position of the first call (later calls update it in place);
 * that key cannot be added directly. Without a call the alignment is 32 and no kv is written.
 */
int gguf_writer_set_alignment(struct gguf_writer *w, uint32_t alignment);

/*
 * A scalar of numeric or bool @type (not STRING/ARRAY: -EINVAL); @val points at one value of the
 * C type matching @type (uint8_t .. double, bool as uint8_t 0/1). 0, -EEXIST, -EINVAL, -ENOMEM.
 */
int gguf_writer_add_scalar(struct gguf_writer *w, const char *key, enum gguf_vtype type,
			   const void *val);
/* Shorthands for the common scalar types; same returns. */
int gguf_writer_add_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_add_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_add_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_add_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_add_bool(struct gguf_writer *w, const char *key, bool v);
/* A string of @len bytes (need not be NUL-terminated; may hold any bytes). */
int gguf_writer_add_str(struct gguf_writer *w, const char *key, const char *s, size_t len);
/*
 * An array of @n numeric or bool elements of @type, packed little-endian at @data (copied).
 * STRING and ARRAY element types give -EINVAL (use gguf_writer_add_str_arr()).
 */
int gguf_writer_add_arr(struct gguf_writer *w, const char *key, enum gguf_vtype type,
			const void *data, uint64_t n);
/* An array of @n strings; @lens may be NULL for NUL-terminated @strs (copied). */
int gguf_writer_add_str_arr(struct gguf_writer *w, const char *key, const char *const *strs,
			    const size_t *lens, uint64_t n);

/*
 * A tensor of ggml @type with @n_dims (1..4) sizes @ne (ne[0] contiguous) and @n_bytes of raw
 * data in that type's layout. -EINVAL if the type is unknown, ne[0] is not a multiple of the
 * block size or @n_bytes does not match; -EEXIST for a duplicate name.
 * @data is borrowed until gguf_writer_write*() returns. Tensors are written in call order.
 */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type,
			   uint32_t n_dims, const uint64_t *ne, const void *data, uint64_t n_bytes);

/*
 * Write the file to @path atomically (temp file + fsync + rename + directory fsync). On failure
 * the destination is untouched and no temp file is left. 0 or -errno. The writer stays usable.
 */
int gguf_writer_write(struct gguf_writer *w, const char *path);
/* Write the file image to malloc'ed memory: *ret_buf (caller frees), *ret_size bytes. */
int gguf_writer_write_mem(struct gguf_writer *w, void **ret_buf, size_t *ret_size);

#endif /* ENGINE_GGUF_WRITE_H */
