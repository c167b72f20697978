/* SPDX-License-Identifier: MIT */
#ifndef TESTS_UNIT_ENGINE_LOADERS_UTIL_H
#define TESTS_UNIT_ENGINE_LOADERS_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Helpers shared by the loader tests (test_dtype, test_gguf, test_safetensors, test_config). */

/* mirrored by tests/fixtures/module.mk, with hex dumps decoded */
#define LOADERS_FIXTURES "build/fixtures/loaders"
#define LOADERS_MODEL	 "models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* Whole file into a malloc'ed buffer (NUL-terminated, *ret_size without the NUL); NULL on error. */
char *lu_read_file(const char *path, size_t *ret_size);
/* Decode @n_hex hex digits ("-" is the empty string) into malloc'ed bytes; NULL on error. */
uint8_t *lu_unhex(const char *hex, size_t n_hex, size_t *ret_len);
/* Write @n bytes to @path (truncating); 0 or -errno. */
int lu_write_file(const char *path, const void *buf, size_t n);
/* A fresh private directory under $TMPDIR (malloc'ed path); rm -r it with lu_rmtree(). */
char *lu_mkdtemp(void);
void lu_rmtree(const char *dir);

struct model;

/*
 * Replace @m's LM head by a dense f32 one over its f32 tok_embd (tied models): the Q8_0
 * head's int8 activations move logits by up to ~0.1 (its bound is checked in
 * test_linear_q8.c), which would hide the 1e-4 agreement of the rest of the forward.
 */
void lu_use_f32_head(struct model *m);

#endif /* TESTS_UNIT_ENGINE_LOADERS_UTIL_H */
