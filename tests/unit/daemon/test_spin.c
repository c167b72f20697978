// SPDX-License-Identifier: MIT
/*
 * The event loop's adaptive spin (uring_spin_poll(), daemon/uring_loop.c) against hand-built
 * clients: a real io_uring, real shared rings and eventfds, no socket, no scheduler.
 *
 * The race it guards: while the daemon spins, every submission ring carries its spinning word,
 * so a client that publishes skips its doorbell. If a completion (another client's doorbell)
 * ends the spin at the same look, the spin must still look at every ring after withdrawing the
 * word; otherwise nothing marks the silent ring and its request sits until some later event (a
 * 30 s client stall). The interleaving is forced from one thread: the completion is posted
 * before the spin starts, so the spin's first look finds it; the silent client published after
 * the word was set (the test sets it first, storing the same value the spin stores again) and
 * before that first look, which is exactly the state a concurrent client leaves.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/internal.h"

#define BIG_BUDGET_NS (30ull * 1000 * 1000 * 1000) /* a spin that ran out would stall the test */

/* One client as the daemon sees it, plus the client's own producer side of its submissions. */
struct fake_client {
	struct client c;
	struct shm_prod sq_prod; /* the client's side */
};

static void client_init(struct daemon *d, struct fake_client *f)
{
	struct client *c = &f->c;

	memset(f, 0, sizeof(*f));
	assert_int_equal(shm_layout_init(&c->layout, 8, 8, 4096, 4096), 0);
	c->shm = aligned_alloc(4096, c->layout.total_bytes);
	assert_non_null(c->shm);
	memset(c->shm, 0, c->layout.total_bytes);
	c->d = d;
	c->state = CLIENT_READY;
	c->sock = c->memfd = c->cq_efd = -1;
	c->sq_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(c->sq_efd >= 0);
	shm_cons_init(&c->sq, c->shm, &c->layout, 1, 64);
	assert_int_equal(shm_prod_init(&c->cq, c->shm, &c->layout, 0), 0);
	assert_int_equal(shm_prod_init(&f->sq_prod, c->shm, &c->layout, 1), 0);
	c->op_recv = (struct uop){ UOP_SOCK_RECV, c, false };
	c->op_sq_bell = (struct uop){ UOP_SQ_BELL, c, false };
	c->op_cq_bell = (struct uop){ UOP_CQ_BELL, c, false };
	LIST_INSERT_HEAD(&d->clients, c, link);
	d->n_clients++;
}

static void client_done(struct fake_client *f)
{
	LIST_REMOVE(&f->c, link);
	close(f->c.sq_efd);
	shm_prod_done(&f->c.cq);
	shm_prod_done(&f->sq_prod);
	free(f->c.shm);
}

/* The client publishes one small request; returns whether it must ring its doorbell. */
static bool client_publish(struct fake_client *f)
{
	static const uint8_t msg[8] = "request";
	void *buf;

	assert_int_equal(shm_prod_reserve(&f->sq_prod, sizeof(msg), &buf), 0);
	memcpy(buf, msg, sizeof(msg));
	shm_prod_commit(&f->sq_prod, sizeof(msg));
	return shm_prod_need_bell(&f->sq_prod);
}

static void daemon_init(struct daemon *d, uint64_t spin_ns)
{
	memset(d, 0, sizeof(*d));
	config_defaults(&d->cfg);
	LIST_INIT(&d->clients);
	d->listen_fd = d->signal_fd = -1;
	d->spin_ns = spin_ns;
	assert_int_equal(io_uring_queue_init(16, &d->ring, 0), 0);
}

/*
 * Client @f rings its doorbell and the daemon's read of it completes: on return the completion
 * is queued (not yet reaped), so it is there at the spin's first look.
 */
static void doorbell_completion_queued(struct daemon *d, struct fake_client *f)
{
	struct io_uring_cqe *cqe;

	uring_arm_sq_bell(d, &f->c);
	assert_true(io_uring_submit(&d->ring) >= 1);
	assert_int_equal(eventfd_write(f->c.sq_efd, 1), 0);
	assert_int_equal(io_uring_wait_cqe(&d->ring, &cqe), 0);
	assert_ptr_equal(io_uring_cqe_get_data(cqe), &f->c.op_sq_bell);
	assert_true(io_uring_cq_ready(&d->ring) >= 1);
}

static void test_completion_ends_spin_silent_ring_seen(void **state)
{
	struct daemon d;
	struct fake_client a, b;

	daemon_init(&d, BIG_BUDGET_NS);
	client_init(&d, &a);
	client_init(&d, &b);
	/* An unrelated event: client b's doorbell, waiting in the completion queue. */
	doorbell_completion_queued(&d, &b);
	/* Client a publishes with the daemon's spinning word up, so it skips its doorbell. */
	shm_spin_begin(&a.c.sq);
	assert_false(client_publish(&a));

	assert_true(uring_spin_poll(&d));
	/* b's completion ended the spin; a's silent request must be marked all the same. */
	assert_true(b.c.sq_pending);
	assert_true(a.c.sq_pending);
	/* Both words withdrawn: from now on the clients ring. */
	assert_int_equal(a.c.sq.ctl->spinning, 0);
	assert_int_equal(b.c.sq.ctl->spinning, 0);
	assert_true(client_publish(&b));
	/* A fulfilled spin restores the full budget. */
	assert_int_equal(d.spin_ns, (uint64_t)d.cfg.spin_us * 1000);

	io_uring_queue_exit(&d.ring);
	client_done(&b);
	client_done(&a);
}

static void test_data_ends_spin(void **state)
{
	struct daemon d;
	struct fake_client a, b;

	daemon_init(&d, BIG_BUDGET_NS);
	client_init(&d, &a);
	client_init(&d, &b);
	shm_spin_begin(&b.c.sq);
	assert_false(client_publish(&b));
	assert_true(uring_spin_poll(&d));
	assert_true(b.c.sq_pending);
	assert_false(a.c.sq_pending);
	assert_int_equal(a.c.sq.ctl->spinning, 0);
	assert_int_equal(b.c.sq.ctl->spinning, 0);
	io_uring_queue_exit(&d.ring);
	client_done(&b);
	client_done(&a);
}

static void test_idle_spin_runs_out(void **state)
{
	struct daemon d;
	struct fake_client a;

	daemon_init(&d, 20000);
	client_init(&d, &a);
	assert_false(uring_spin_poll(&d));
	assert_false(a.c.sq_pending);
	assert_int_equal(a.c.sq.ctl->spinning, 0);
	/* Not spinning any more: a publish now rings the doorbell. */
	assert_true(client_publish(&a));
	io_uring_queue_exit(&d.ring);
	client_done(&a);
}

int test_spin_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_completion_ends_spin_silent_ring_seen),
		cmocka_unit_test(test_data_ends_spin),
		cmocka_unit_test(test_idle_spin_runs_out),
	};

	return cmocka_run_group_tests_name("daemon/spin", tests, NULL, NULL);
}
