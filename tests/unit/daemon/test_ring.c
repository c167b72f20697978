// SPDX-License-Identifier: MIT
/* Shared-memory ring: round trips, wrap-around, and rejection of hostile indices/lengths. */
#include "proto/shm_ring.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct pair {
	struct shm_layout l;
	void *base;
	struct shm_prod p;
	struct shm_cons c;
};

static void pair_init(struct pair *x, uint32_t slots, uint64_t arena, uint32_t max_len)
{
	assert_int_equal(shm_layout_init(&x->l, slots, slots, arena, arena), 0);
	x->base = calloc(1, x->l.total_bytes);
	assert_non_null(x->base);
	assert_int_equal(shm_prod_init(&x->p, x->base, &x->l, 1), 0);
	shm_cons_init(&x->c, x->base, &x->l, 1, max_len);
}

static void pair_done(struct pair *x)
{
	shm_prod_done(&x->p);
	free(x->base);
}

static void put(struct pair *x, const char *s)
{
	void *buf;

	assert_int_equal(shm_prod_reserve(&x->p, strlen(s), &buf), 0);
	memcpy(buf, s, strlen(s));
	shm_prod_commit(&x->p, strlen(s));
}

static void get(struct pair *x, const char *want)
{
	char buf[4096];
	size_t len;

	assert_int_equal(shm_cons_peek(&x->c, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(buf, want, len);
	shm_cons_pop(&x->c);
}

static void test_layout_rejects_bad_sizes(void **state)
{
	struct shm_layout l;

	assert_int_equal(shm_layout_init(&l, 3, 4, 4096, 4096), -EINVAL);
	assert_int_equal(shm_layout_init(&l, 4, 1, 4096, 4096), -EINVAL);
	assert_int_equal(shm_layout_init(&l, 4, 4, 100, 4096), -EINVAL);
	assert_int_equal(shm_layout_init(&l, 4, 4, 4096, 4096), 0);
	assert_int_equal(shm_layout_check(&l, l.total_bytes), 0);
	assert_int_equal(shm_layout_check(&l, l.total_bytes - 1), -EPROTO);
	l.cq_arena_off += 64;
	assert_int_equal(shm_layout_check(&l, 1 << 30), -EPROTO);
}

static void test_ring_round_trip_and_wrap(void **state)
{
	struct pair x;
	char msg[64];

	pair_init(&x, 4, 256, 256);
	/* 100 messages through 4 slots and a 256-byte arena: every wrap position is hit. */
	for (int i = 0; i < 100; i++) {
		snprintf(msg, sizeof(msg), "message-%d-%.*s", i, i % 40,
			 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		put(&x, msg);
		if (i % 3 == 2) {
			/* drain three at once, in order */
			for (int k = i - 2; k <= i; k++) {
				snprintf(msg, sizeof(msg), "message-%d-%.*s", k, k % 40,
					 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
				get(&x, msg);
			}
		}
	}
	pair_done(&x);
}

static void test_ring_full_returns_eagain(void **state)
{
	struct pair x;
	void *buf;

	pair_init(&x, 4, 4096, 4096);
	for (int i = 0; i < 4; i++)
		put(&x, "abc");
	assert_int_equal(shm_prod_reserve(&x.p, 3, &buf), -EAGAIN);
	get(&x, "abc");
	assert_int_equal(shm_prod_reserve(&x.p, 3, &buf), 0);
	/* arena exhaustion, not slots: */
	assert_int_equal(shm_prod_reserve(&x.p, 5000, &buf), -E2BIG);
	pair_done(&x);
}

static void test_ring_rejects_tail_past_head(void **state)
{
	struct pair x;
	char buf[256];
	size_t len;

	pair_init(&x, 4, 256, 256);
	x.p.ctl->tail = 5; /* more than n_slots ahead of the consumer */
	assert_int_equal(shm_cons_peek(&x.c, buf, sizeof(buf), &len), -EPROTO);
	x.p.ctl->tail = 0xffffffffu; /* "behind" the head, i.e. 2^32-1 ahead */
	assert_int_equal(shm_cons_peek(&x.c, buf, sizeof(buf), &len), -EPROTO);
	x.p.ctl->tail = 0;
	assert_int_equal(shm_cons_peek(&x.c, buf, sizeof(buf), &len), -EAGAIN);
	pair_done(&x);
}

static void test_ring_rejects_bad_descriptors(void **state)
{
	static const struct shm_slot bad[] = {
		{ .len = 0, .off = 0 },		      /* empty */
		{ .len = 300, .off = 0 },	      /* above max_len */
		{ .len = 16, .off = 250 },	      /* runs past the arena */
		{ .len = 16, .off = UINT64_MAX - 8 }, /* offset overflow */
		{ .len = 8, .flags = 1, .off = 0 },   /* reserved flags */
	};
	struct pair x;
	char buf[512];
	size_t len;

	pair_init(&x, 4, 256, 256);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		x.p.slots[0] = bad[i];
		x.p.ctl->tail = 1;
		assert_int_equal(shm_cons_peek(&x.c, buf, sizeof(buf), &len), -EPROTO);
	}
	x.p.slots[0] = (struct shm_slot){ .len = 16, .off = 240 };
	assert_int_equal(shm_cons_peek(&x.c, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 16);
	pair_done(&x);
}

static void test_producer_rejects_bad_consumer_head(void **state)
{
	struct pair x;
	void *buf;

	pair_init(&x, 4, 256, 256);
	put(&x, "one");
	put(&x, "two");
	x.p.ctl->head = 3; /* consumer claims more than was published */
	assert_int_equal(shm_prod_reserve(&x.p, 3, &buf), -EPROTO);
	x.p.ctl->head = 1;
	assert_int_equal(shm_prod_reserve(&x.p, 3, &buf), 0);
	x.p.ctl->head = 0; /* going backwards */
	assert_int_equal(shm_prod_reserve(&x.p, 3, &buf), -EPROTO);
	pair_done(&x);
}

int test_ring_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout_rejects_bad_sizes),
		cmocka_unit_test(test_ring_round_trip_and_wrap),
		cmocka_unit_test(test_ring_full_returns_eagain),
		cmocka_unit_test(test_ring_rejects_tail_past_head),
		cmocka_unit_test(test_ring_rejects_bad_descriptors),
		cmocka_unit_test(test_producer_rejects_bad_consumer_head),
	};

	return cmocka_run_group_tests_name("daemon/ring", tests, NULL, NULL);
}
