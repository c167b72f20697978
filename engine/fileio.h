/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_FILEIO_H
#define ENGINE_FILEIO_H

#include <stddef.h>

#include "common/err.h"

/*
 * Getting a model or tokenizer file into memory, shared by the loaders (gguf.c, safetensors.c,
 * tok_json.c). Messages in @e follow common/err.h: no file name, the caller adds it.
 */

/*
 * Map the regular file @path read-only (private). Returns 0 with the mapping in *ret_base and
 * *ret_size (caller munmap()s it), or -errno; a file that is not regular or is shorter than
 * @min_bytes is -EBADMSG, "not a @kind file (N bytes)".
 */
int fileio_map(const char *path, size_t min_bytes, const char *kind, void **ret_base,
	       size_t *ret_size, struct errbuf *e);

/*
 * Read all of the regular file @path, at most @max_bytes, into a malloc'ed buffer with a NUL
 * after the last byte. Returns 0 (*ret_buf owned by the caller, *ret_len without the NUL), or
 * -errno, -ENOMEM, -EBADMSG (not regular, too large, or shorter than fstat said).
 */
int fileio_read(const char *path, size_t max_bytes, char **ret_buf, size_t *ret_len,
		struct errbuf *e);

#endif /* ENGINE_FILEIO_H */
