// SPDX-License-Identifier: MIT
#include "common/pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct count_job {
	atomic_uint *hits; /* [n] */
	atomic_uint calls;
	pthread_t seen[64];
	atomic_uint n_seen;
};

static void count_task(void *arg, uint32_t task)
{
	struct count_job *j = arg;
	pthread_t self = pthread_self();
	uint32_t n = atomic_load(&j->n_seen), i;

	atomic_fetch_add(&j->hits[task], 1);
	atomic_fetch_add(&j->calls, 1);
	for (i = 0; i < n && i < 64; i++)
		if (pthread_equal(j->seen[i], self))
			return;
	i = atomic_fetch_add(&j->n_seen, 1);
	if (i < 64)
		j->seen[i] = self;
}

static void run_and_check(struct pool *p, uint32_t n)
{
	struct count_job j = { 0 };

	j.hits = calloc(n ? n : 1, sizeof(*j.hits));
	assert_non_null(j.hits);
	pool_run(p, n, count_task, &j);
	assert_int_equal(atomic_load(&j.calls), n);
	for (uint32_t t = 0; t < n; t++)
		assert_int_equal(atomic_load(&j.hits[t]), 1);
	free(j.hits);
}

static void test_pool_runs_every_task_once(void **state)
{
	struct pool *p;

	assert_int_equal(pool_new(3, NULL, &p), 0);
	assert_int_equal(pool_n_threads(p), 3);
	for (uint32_t n = 0; n < 40; n++)
		run_and_check(p, n);
	run_and_check(p, 10000);
	pool_free(p);
}

static void test_pool_single_thread_and_null(void **state)
{
	struct pool *p;

	assert_int_equal(pool_new(1, NULL, &p), 0);
	run_and_check(p, 17);
	pool_free(p);
	run_and_check(NULL, 5); /* no pool: runs on the caller */
	pool_free(NULL);
}

static void test_pool_rejects_bad_sizes(void **state)
{
	struct pool *p = NULL;

	assert_int_equal(pool_new(0, NULL, &p), -EINVAL);
	assert_int_equal(pool_new(5000, NULL, &p), -EINVAL);
	assert_null(p);
}

static void test_pool_pins_workers(void **state)
{
	int cpus[2] = { 0, 0 };
	struct pool *p;

	/* CPU 0 exists everywhere; the job must still finish with a pinned worker. */
	assert_int_equal(pool_new(2, cpus, &p), 0);
	run_and_check(p, 100);
	pool_free(p);
}

static void slow_task(void *arg, uint32_t task)
{
	atomic_uint *sum = arg;

	for (volatile int i = 0; i < 20000; i++)
		;
	atomic_fetch_add(sum, task);
}

/*
 * Two allowed CPUs, the calling thread pinned to the first (its old mask in @old): Linux may
 * keep an unpinned spinning worker on its creator's CPU long enough for the caller to run
 * every task itself. False on a one-CPU host.
 */
static bool pin_apart(int cpus[2], cpu_set_t *old)
{
	cpu_set_t one;
	int k = 0;

	if (sched_getaffinity(0, sizeof(*old), old) < 0)
		return false;
	for (int c = 0; c < CPU_SETSIZE && k < 2; c++)
		if (CPU_ISSET(c, old))
			cpus[k++] = c;
	if (k < 2)
		return false;
	CPU_ZERO(&one);
	CPU_SET(cpus[0], &one);
	return sched_setaffinity(0, sizeof(one), &one) == 0;
}

static void test_pool_uses_several_threads(void **state)
{
	struct count_job j = { 0 };
	atomic_uint sum = 0;
	struct pool *p;
	cpu_set_t old;
	int cpus[2];
	bool pinned = pin_apart(cpus, &old);

	assert_int_equal(pool_new(2, pinned ? cpus : NULL, &p), 0);
	pool_run(p, 200, slow_task, &sum);
	assert_int_equal(atomic_load(&sum), 199 * 200 / 2);
	/* many tasks: the worker thread takes part at least once in a few tries */
	for (int tries = 0; tries < 50 && atomic_load(&j.n_seen) < 2; tries++) {
		j.hits = calloc(2000, sizeof(*j.hits));
		assert_non_null(j.hits);
		atomic_store(&j.calls, 0);
		pool_run(p, 2000, count_task, &j);
		free(j.hits);
	}
	assert_true(atomic_load(&j.n_seen) >= 2);
	pool_free(p);
	if (pinned)
		sched_setaffinity(0, sizeof(old), &old);
}

int test_pool_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool_runs_every_task_once),
		cmocka_unit_test(test_pool_single_thread_and_null),
		cmocka_unit_test(test_pool_rejects_bad_sizes),
		cmocka_unit_test(test_pool_pins_workers),
		cmocka_unit_test(test_pool_uses_several_threads),
	};
	return cmocka_run_group_tests_name("common/pool", tests, NULL, NULL);
}
