/* SPDX-License-Identifier: MIT */
#ifndef TESTS_FUZZ_FUZZ_H
#define TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * Every tests/fuzz/fuzz_<input>.c defines this libFuzzer entry point over one production parser.
 * MODE=fuzz links it with libFuzzer; other modes link it with replay.c, which feeds it every
 * file of tests/fuzz/corpus/<input>/. It must return 0 and never crash, leak or hang.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Largest tensor the shims dequantize, so one input cannot ask for gigabytes of output. */
#define FUZZ_MAX_ELEMS (1u << 20)

/*
 * Read what a loader hands out for tensor @t: the first and last of its @n_bytes at @data and,
 * up to FUZZ_MAX_ELEMS elements, the last value @to_f32 (the shim's adapter over the loader's
 * dequantizer, 0 on success) writes. Returns a number for the shim's sink, so that the
 * compiler keeps every read.
 */
static inline double fuzz_read_tensor(const void *t, const void *data, uint64_t n_bytes,
				      uint64_t n_elems, int (*to_f32)(const void *t, float *dst))
{
	double acc = 0;
	float *buf;

	if (n_bytes)
		acc += ((const uint8_t *)data)[0] + ((const uint8_t *)data)[n_bytes - 1];
	if (n_elems > FUZZ_MAX_ELEMS)
		return acc;
	buf = malloc((n_elems ? n_elems : 1) * sizeof(float));
	if (buf && !to_f32(t, buf) && n_elems)
		acc += buf[n_elems - 1];
	free(buf);
	return acc;
}

#endif /* TESTS_FUZZ_FUZZ_H */
