/* SPDX-License-Identifier: MIT */
/*
 * Independent reference of the fake backend's greedy continuation (daemon/backend.h), written
 * apart from daemon/backend_fake.c so that tests of the scheduler, the daemon and the tools
 * compare against a second implementation, never against the code under test.
 */
#ifndef TESTS_LIB_FAKE_GREEDY_H
#define TESTS_LIB_FAKE_GREEDY_H

#include <stdint.h>

/*
 * Write into @out the text the fake model generates greedily after @prompt (non-empty), at
 * most @n characters, stopping early at its EOS; NUL-terminated, so @out holds @n + 1 bytes.
 */
void fake_greedy(const char *prompt, uint32_t n, char *out);

#endif /* TESTS_LIB_FAKE_GREEDY_H */
