/* SPDX-License-Identifier: MIT */
#ifndef TESTS_FUZZ_FUZZ_H
#define TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/*
 * Every tests/fuzz/fuzz_<input>.c defines this libFuzzer entry point over one production parser.
 * MODE=fuzz links it with libFuzzer; other modes link it with replay.c, which feeds it every
 * file of tests/fuzz/corpus/<input>/. It must return 0 and never crash, leak or hang.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Largest tensor the shims dequantize, so one input cannot ask for gigabytes of output. */
#define FUZZ_MAX_ELEMS (1u << 20)

#endif /* TESTS_FUZZ_FUZZ_H */
