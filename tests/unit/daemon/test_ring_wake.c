// SPDX-License-Identifier: MIT
/*
 * The doorbell protocol of the shared-memory rings (proto/shm_ring.h): a consumer that spins
 * announces it so the producer may skip the eventfd write, and one about to sleep withdraws the
 * announcement, resets its eventfd and looks at the ring again. The states are checked one by
 * one, then a producer thread and a consumer that alternates spinning and sleeping race for many
 * messages: a lost wake-up shows as a poll() that times out with a message published.
 */
#include "proto/shm_ring.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define RACE_MSGS 5000u
#else
#define RACE_MSGS 30000u
#endif
#define LOST_WAIT_MS 2000 /* a wake-up this late is a lost one */

struct pair {
	struct shm_layout l;
	void *base;
	struct shm_prod p;
	struct shm_cons c;
	int efd;
};

static void pair_init(struct pair *x, uint32_t slots)
{
	assert_int_equal(shm_layout_init(&x->l, slots, slots, 4096, 4096), 0);
	x->base = calloc(1, x->l.total_bytes);
	assert_non_null(x->base);
	assert_int_equal(shm_prod_init(&x->p, x->base, &x->l, 1), 0);
	shm_cons_init(&x->c, x->base, &x->l, 1, 64);
	x->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(x->efd >= 0);
}

static void pair_done(struct pair *x)
{
	close(x->efd);
	shm_prod_done(&x->p);
	free(x->base);
}

/* Publish @v; returns whether the producer must ring the doorbell. */
static bool put(struct pair *x, uint32_t v)
{
	void *buf;

	assert_int_equal(shm_prod_reserve(&x->p, sizeof(v), &buf), 0);
	memcpy(buf, &v, sizeof(v));
	shm_prod_commit(&x->p, sizeof(v));
	return shm_prod_need_bell(&x->p);
}

static uint32_t get(struct pair *x)
{
	uint32_t v;
	size_t len;

	assert_int_equal(shm_cons_peek(&x->c, &v, sizeof(v), &len), 0);
	assert_int_equal(len, sizeof(v));
	shm_cons_pop(&x->c);
	return v;
}

static void test_bell_follows_announcement(void **state)
{
	struct pair x;

	pair_init(&x, 8);
	/* A fresh region (or a peer that knows nothing of spinning): always ring. */
	assert_true(put(&x, 1));
	assert_int_equal(get(&x), 1);
	shm_spin_begin(&x.c);
	assert_false(put(&x, 2));
	/* The consumer withdraws after the producer skipped the bell: it must see the data. */
	shm_spin_end(&x.c);
	assert_true(shm_sleep_prepare(&x.c));
	assert_int_equal(get(&x), 2);
	assert_false(shm_sleep_prepare(&x.c));
	assert_true(put(&x, 3));
	assert_int_equal(get(&x), 3);
	/* Only SHM_SPINNING silences the bell: a scribbled word does not. */
	x.c.ctl->spinning = 7;
	assert_true(put(&x, 4));
	assert_int_equal(get(&x), 4);
	pair_done(&x);
}

static void test_spin_returns_on_data_or_budget(void **state)
{
	struct pair x;
	struct timespec t0, t1;

	pair_init(&x, 8);
	assert_false(shm_cons_spin(&x.c, 0));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_false(shm_cons_spin(&x.c, 200000));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* The budget is a lower bound on an empty ring's spin (an upper one would be a timing). */
	assert_true((t1.tv_sec - t0.tv_sec) * 1000000000ll + (t1.tv_nsec - t0.tv_nsec) >= 200000);
	assert_int_equal(x.c.ctl->spinning, 0);
	assert_true(put(&x, 9));
	assert_true(shm_cons_spin(&x.c, 1000000000ull)); /* data already there: returns at once */
	assert_int_equal(x.c.ctl->spinning, 0);
	assert_int_equal(get(&x), 9);
	pair_done(&x);
}

struct race {
	struct pair *x;
	uint32_t n;
	uint32_t n_bells;
	bool stop; /* the consumer gave up (a lost wake-up): the producer stops waiting */
};

static uint64_t next_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * Ping-pong: publish one message, then wait until the consumer took it. A bell lost here is
 * never rescued by a later message's bell, so it shows as a stall.
 */
static void *producer(void *arg)
{
	struct race *r = arg;
	uint64_t rng = 42;

	for (uint32_t i = 0; i < r->n; i++) {
		uint64_t one = 1, delay = next_rand(&rng) % 24;
		void *buf;

		/* Vary the phase against the consumer's spin: at once, or up to a few us later. */
		for (uint64_t k = 0; k < delay * delay; k++)
			shm_cpu_relax();
		if (shm_prod_reserve(&r->x->p, sizeof(i), &buf) < 0)
			return (void *)1;
		memcpy(buf, &i, sizeof(i));
		shm_prod_commit(&r->x->p, sizeof(i));
		if (shm_prod_need_bell(&r->x->p)) {
			r->n_bells++;
			if (write(r->x->efd, &one, sizeof(one)) != sizeof(one))
				return (void *)1;
		}
		while (__atomic_load_n(&r->x->c.ctl->head, __ATOMIC_ACQUIRE) != i + 1 &&
		       !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE))
			sched_yield();
	}
	return NULL;
}

static void test_no_lost_wakeup_under_race(void **state)
{
	/* Spin budgets from none to a few us: every path of the consumer gets exercised. */
	static const uint64_t budgets[] = { 0, 500, 1000, 2000, 4000, 10000 };
	struct pair x;
	struct race r = { &x, RACE_MSGS, 0, false };
	uint32_t want = 0, n_sleeps = 0, lost = 0;
	uint64_t rng = 7;
	pthread_t th;
	void *ret;

	pair_init(&x, 4);
	assert_int_equal(pthread_create(&th, NULL, producer, &r), 0);
	while (want < r.n && !lost) {
		uint64_t junk;
		struct pollfd p = { x.efd, POLLIN, 0 };

		if (shm_cons_ready(&x.c)) {
			assert_int_equal(get(&x), want);
			want++;
			continue;
		}
		if (shm_cons_spin(&x.c, budgets[next_rand(&rng) % 6]))
			continue;
		(void)!read(x.efd, &junk, sizeof(junk));
		if (shm_sleep_prepare(&x.c))
			continue;
		n_sleeps++;
		/* Timed out with the message there all along: its bell was lost. (A timeout with an
		 * empty ring is only a slow producer on a loaded machine.) */
		if (poll(&p, 1, LOST_WAIT_MS) == 0 && shm_cons_ready(&x.c))
			lost++;
	}
	__atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
	assert_int_equal(pthread_join(th, &ret), 0);
	assert_null(ret);
	assert_int_equal(lost, 0);
	assert_int_equal(want, r.n);
	/* Which paths ran depends on the machine's load: reported, not asserted. */
	print_message("%u messages, %u sleeps, %u bells (the rest seen while spinning)\n", r.n,
		      n_sleeps, r.n_bells);
	pair_done(&x);
}

int test_ring_wake_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bell_follows_announcement),
		cmocka_unit_test(test_spin_returns_on_data_or_budget),
		cmocka_unit_test(test_no_lost_wakeup_under_race),
	};

	return cmocka_run_group_tests_name("daemon/ring_wake", tests, NULL, NULL);
}
