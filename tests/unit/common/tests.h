/* SPDX-License-Identifier: MIT */
#ifndef TESTS_UNIT_COMMON_TESTS_H
#define TESTS_UNIT_COMMON_TESTS_H

/* Each returns the number of failed cases of its CMocka group. */
int test_err_run(void);
int test_progress_run(void);

#endif /* TESTS_UNIT_COMMON_TESTS_H */
