/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_DTYPE_H
#define ENGINE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Tensor element types with GGML's numbering (the GGUF on-disk ids) and their dequantizers.
 * Block formats store block_elems values in block_bytes bytes.
 */
enum ggml_type {
	GGML_TYPE_F32 = 0,
	GGML_TYPE_F16 = 1,
	GGML_TYPE_Q4_0 = 2,
	GGML_TYPE_Q4_1 = 3,
	GGML_TYPE_Q5_0 = 6,
	GGML_TYPE_Q5_1 = 7,
	GGML_TYPE_Q8_0 = 8,
	GGML_TYPE_Q8_1 = 9,
	GGML_TYPE_Q2_K = 10,
	GGML_TYPE_Q3_K = 11,
	GGML_TYPE_Q4_K = 12,
	GGML_TYPE_Q5_K = 13,
	GGML_TYPE_Q6_K = 14,
	GGML_TYPE_Q8_K = 15,
	GGML_TYPE_I8 = 24,
	GGML_TYPE_I16 = 25,
	GGML_TYPE_I32 = 26,
	GGML_TYPE_I64 = 27,
	GGML_TYPE_F64 = 28,
	GGML_TYPE_BF16 = 30,
	GGML_TYPE_COUNT = 40,
};

struct dtype_info {
	const char *name; /* NULL for ids we do not know */
	uint32_t block_elems;
	uint32_t block_bytes;
	/* Dequantize @n values (a multiple of block_elems) from @src; NULL if unsupported. */
	void (*to_f32)(const void *src, float *dst, size_t n);
};

/* Info for @type, or NULL if @type is out of range or unknown. */
const struct dtype_info *dtype_info(uint32_t type);

/*
 * Bytes taken by @n_elems elements of @type into *ret: -EOPNOTSUPP for unknown types,
 * -EBADMSG if @n_elems is not a multiple of the block size, -EOVERFLOW on overflow.
 */
int dtype_row_bytes(uint32_t type, uint64_t n_elems, uint64_t *ret);

float dtype_f16_to_f32(uint16_t h);
uint16_t dtype_f32_to_f16(float f); /* round to nearest even */
float dtype_bf16_to_f32(uint16_t h);
uint16_t dtype_f32_to_bf16(float f); /* round to nearest even */

/*
 * Quantize @n values (a multiple of 32) of @x to GGUF Q5_0 blocks at @dst (22 bytes per 32):
 * per block d = v / -16 for the value v of largest magnitude (rounded to f16), each value to
 * the nearest q - 16 in [-16, 15] times d. Returns 0, -EINVAL for an @n that is not a
 * multiple of 32 or a value that is not finite, or -ERANGE for a block beyond f16's range
 * (|v| / 16 > 65504); @dst then holds nothing useful.
 */
int dtype_quantize_q5_0(const float *x, void *dst, size_t n);

#endif /* ENGINE_DTYPE_H */
