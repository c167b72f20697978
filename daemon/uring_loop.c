// SPDX-License-Identifier: MIT
/*
 * The daemon's event loop: one io_uring instance carries every wait (accept, control-socket
 * receives, doorbell reads, doorbell writes, signals through a signalfd, and timers as wait
 * timeouts). It blocks in the kernel whenever the scheduler has nothing runnable; while
 * sequences are active it polls completions without blocking between steps.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/internal.h"
#include "proto/status.h"

#define RING_ENTRIES	 1024
#define TICK_NS		 (50ull * 1000 * 1000)
#define ACCEPT_BATCH_MAX 64   /* connections taken from the backlog per loop round */
#define SPIN_YIELD_NS	 1000 /* sched_yield() this often while spinning (see proto/shm_ring.c) */

static const uint64_t bell_one = 1;

uint64_t uring_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct io_uring_sqe *get_sqe(struct daemon *d)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&d->ring);

	if (!sqe) {
		io_uring_submit(&d->ring);
		sqe = io_uring_get_sqe(&d->ring);
	}
	return sqe;
}

static bool arm(struct daemon *d, struct uop *op, struct io_uring_sqe *sqe)
{
	io_uring_sqe_set_data(sqe, op);
	op->armed = true;
	if (op->c)
		op->c->n_ops++;
	return true;
}

static void arm_accept(struct daemon *d)
{
	struct io_uring_sqe *sqe = get_sqe(d);

	if (!sqe)
		return;
	io_uring_prep_accept(sqe, d->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	arm(d, &d->op_accept, sqe);
}

static void arm_signal(struct daemon *d)
{
	struct io_uring_sqe *sqe = get_sqe(d);

	if (!sqe)
		return;
	io_uring_prep_read(sqe, d->signal_fd, &d->sig_buf, sizeof(d->sig_buf), 0);
	arm(d, &d->op_signal, sqe);
}

void uring_arm_recv(struct daemon *d, struct client *c)
{
	struct io_uring_sqe *sqe = get_sqe(d);

	if (!sqe) {
		c->kill = true;
		return;
	}
	c->rx_iov.iov_base = c->rx;
	c->rx_iov.iov_len = sizeof(c->rx);
	memset(&c->rx_msg, 0, sizeof(c->rx_msg));
	c->rx_msg.msg_iov = &c->rx_iov;
	c->rx_msg.msg_iovlen = 1;
	io_uring_prep_recvmsg(sqe, c->sock, &c->rx_msg, 0);
	arm(d, &c->op_recv, sqe);
}

void uring_arm_sq_bell(struct daemon *d, struct client *c)
{
	struct io_uring_sqe *sqe = get_sqe(d);

	if (!sqe) {
		c->kill = true;
		return;
	}
	io_uring_prep_read(sqe, c->sq_efd, &c->bell_buf, sizeof(c->bell_buf), 0);
	arm(d, &c->op_sq_bell, sqe);
}

void uring_arm_cq_bell(struct daemon *d, struct client *c)
{
	struct io_uring_sqe *sqe;

	/* A write still in flight will wake the client after what we just published. */
	if (c->op_cq_bell.armed)
		return;
	sqe = get_sqe(d);
	if (!sqe)
		return;
	/* Through the ring, never write(2): a client can make its eventfd block. */
	io_uring_prep_write(sqe, c->cq_efd, &bell_one, sizeof(bell_one), 0);
	arm(d, &c->op_cq_bell, sqe);
}

void uring_cancel_client(struct daemon *d, struct client *c)
{
	struct uop *ops[3] = { &c->op_recv, &c->op_sq_bell, &c->op_cq_bell };

	for (int i = 0; i < 3; i++) {
		struct io_uring_sqe *sqe;

		if (!ops[i]->armed)
			continue;
		sqe = get_sqe(d);
		if (!sqe)
			continue;
		io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)ops[i], 0);
		arm(d, &c->op_cancel[i], sqe);
	}
}

static void drop_client(struct daemon *d, struct client *c)
{
	shm_client_close(c);
	if (c->n_ops == 0)
		shm_client_free(c);
}

static void handle_accept(struct daemon *d, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct client *c;
	bool allowed;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		close(fd);
		return;
	}
	allowed = ctl_sock_peer_allowed(&d->cfg, &cred);
	if (!allowed) {
		d->n_refused++;
		if (d->n_refused <= 10 || d->n_refused % 1000 == 0)
			log_warn(
				"client refused pid=%d uid=%u gid=%u reason=credentials refused=%llu",
				(int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid,
				(unsigned long long)d->n_refused);
	}
	if (d->n_clients >= d->cfg.max_clients || d->draining) {
		ctl_sock_send_error(fd,
				    d->draining ? SHIFTADD__STATUS__STATUS_SHUTTING_DOWN
						: SHIFTADD__STATUS__STATUS_BUSY,
				    d->draining ? "draining" : "too many clients");
		close(fd);
		return;
	}
	if (shm_client_new(d, fd, &cred, &c) < 0) {
		close(fd);
		return;
	}
	/* A refused peer still gets its Hello read before the refusal and the close: closing a
	 * socket with unread data would reset the connection and lose the refusal. */
	c->refused = !allowed;
	d->n_accepted += allowed;
	uring_arm_recv(d, c);
}

/*
 * Take the rest of the listen backlog now. One io_uring accept completes per loop round, and a
 * round lasts a whole step under load (tens to hundreds of ms on a real model), so 32 clients
 * connecting at once would otherwise wait up to 32 steps and run into their handshake timeout.
 * poll() first: the listening socket may be blocking, and only this thread accepts.
 */
static void accept_backlog(struct daemon *d)
{
	for (int i = 0; i < ACCEPT_BATCH_MAX && !d->draining; i++) {
		struct pollfd p = { .fd = d->listen_fd, .events = POLLIN };
		int fd;

		if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
			return;
		fd = accept4(d->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		handle_accept(d, fd);
	}
}

void uring_start_drain(struct daemon *d, const char *why)
{
	struct io_uring_sqe *sqe;

	if (d->draining)
		return;
	log_info("draining reason=%s live_requests=%u clients=%u", why, reload_n_live(d),
		 d->n_clients);
	d->draining = true;
	d->drain_deadline_ns = uring_now_ns() + (uint64_t)d->cfg.drain_timeout_ms * 1000000ull;
	reload_drain(d);
	/* New connections now fail at connect() instead of waiting in the backlog. */
	if (d->listen_owned)
		unlink(d->socket_path);
	if (d->op_accept.armed) {
		sqe = get_sqe(d);
		if (sqe) {
			io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&d->op_accept, 0);
			io_uring_sqe_set_data(sqe, NULL);
		}
	}
}

static void handle_signal(struct daemon *d, int res)
{
	if (res != sizeof(d->sig_buf))
		return;
	switch (d->sig_buf.ssi_signo) {
	case SIGTERM:
	case SIGINT:
		uring_start_drain(d, d->sig_buf.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	case SIGHUP: {
		/* Reload what can change live: the log level (other options need a restart). */
		struct config tmp;
		struct errbuf e = { { 0 } };
		int lvl;

		config_defaults(&tmp);
		if (access(CONFIG_DEFAULT_PATH, R_OK) == 0 &&
		    config_load_file(&tmp, CONFIG_DEFAULT_PATH, &e) < 0) {
			log_warn("reload failed path=%s error=\"%s\", ignoring",
				 CONFIG_DEFAULT_PATH, e.msg);
			break;
		}
		lvl = log_level_parse(tmp.log_level);
		if (lvl >= 0)
			log_max_level = (enum log_level)lvl;
		log_info("reloaded log_level=%s", tmp.log_level);
		break;
	}
	default:
		break;
	}
}

static void handle_client_cqe(struct daemon *d, struct uop *op, int res)
{
	struct client *c = op->c;

	op->armed = false;
	c->n_ops--;
	if (c->state == CLIENT_CLOSING) {
		if (c->n_ops == 0)
			shm_client_free(c);
		return;
	}
	switch (op->kind) {
	case UOP_SOCK_RECV:
		if (res <= 0 || (c->rx_msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
			c->kill = true; /* EOF, error, or an oversized datagram */
			return;
		}
		if (c->state != CLIENT_READY && !c->refused) {
			int r = admin_dispatch(c, (size_t)res);

			if (r < 0) {
				c->kill = true;
				return;
			}
			if (r > 0) {
				uring_arm_recv(d, c);
				break;
			}
		}
		if (c->state == CLIENT_HELLO && c->refused) {
			ctl_sock_send_error(c->sock, SHIFTADD__STATUS__STATUS_PERMISSION_DENIED,
					    "credentials not allowed");
			c->kill = true;
			return;
		}
		if (c->state == CLIENT_HELLO) {
			if (shm_client_hello(c, (size_t)res) < 0) {
				c->kill = true;
				return;
			}
			uring_arm_sq_bell(d, c);
			c->sq_pending = true;
		}
		/* After the handshake the socket only tells us when the client goes away. */
		uring_arm_recv(d, c);
		break;
	case UOP_SQ_BELL:
		if (res < 0) {
			c->kill = true;
			return;
		}
		c->sq_pending = true;
		if (shm_flags_load(c->cq.ctl) & SHM_RING_F_KICK)
			shm_flags_store(c->cq.ctl, 0);
		if (c->sc)
			sched_client_unblock(d->sched, c->sc);
		if (c->sc_old)
			sched_client_unblock(d->old->sched, c->sc_old);
		uring_arm_sq_bell(d, c);
		break;
	case UOP_CQ_BELL:
		if (res < 0)
			c->kill = true;
		break;
	default:
		break;
	}
}

static void handle_cqe(struct daemon *d, struct io_uring_cqe *cqe)
{
	struct uop *op = io_uring_cqe_get_data(cqe);
	int res = cqe->res;

	if (!op)
		return;
	switch (op->kind) {
	case UOP_ACCEPT:
		op->armed = false;
		if (res >= 0) {
			handle_accept(d, res);
			accept_backlog(d);
		} else if (res != -ECANCELED)
			log_warn("accept failed error=\"%s\", retrying", strerror(-res));
		if (!d->draining)
			arm_accept(d);
		break;
	case UOP_SIGNAL:
		op->armed = false;
		handle_signal(d, res);
		if (!d->stop)
			arm_signal(d);
		break;
	default:
		handle_client_cqe(d, op, res);
		break;
	}
}

int uring_loop_init(struct daemon *d)
{
	sigset_t mask;
	int ret;

	LIST_INIT(&d->clients);
	d->t_start_ns = uring_now_ns();
	d->generation = 1;
	d->op_accept = (struct uop){ UOP_ACCEPT, NULL, false };
	d->op_signal = (struct uop){ UOP_SIGNAL, NULL, false };
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL))
		return -EINVAL;
	signal(SIGPIPE, SIG_IGN);
	d->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (d->signal_fd < 0)
		return -errno;
	ret = io_uring_queue_init(RING_ENTRIES, &d->ring, 0);
	if (ret < 0) {
		close(d->signal_fd);
		d->signal_fd = -1;
		return ret;
	}
	arm_signal(d);
	arm_accept(d);
	return 0;
}

/* Handle every completion queued. Returns how many were not completion doorbell writes. */
static unsigned reap_cqes(struct daemon *d)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0, work = 0;

	io_uring_for_each_cqe(&d->ring, head, cqe)
	{
		const struct uop *op = io_uring_cqe_get_data(cqe);

		work += !op || op->kind != UOP_CQ_BELL || cqe->res < 0;
		handle_cqe(d, cqe);
		n++;
	}
	io_uring_cq_advance(&d->ring, n);
	return work;
}

/* Completion doorbells for this round's completions. Returns the clients that got some. */
static uint32_t ring_bells(struct daemon *d)
{
	struct client *c, *next;
	uint32_t n = 0;

	for (c = LIST_FIRST(&d->clients); c; c = next) {
		next = LIST_NEXT(c, link);
		if (c->state == CLIENT_READY && c->cq_dirty) {
			c->cq_dirty = false;
			n++;
			/* A client spinning on its ring sees the tail without the eventfd. */
			if (shm_prod_need_bell(&c->cq))
				uring_arm_cq_bell(d, c);
		}
	}
	return n;
}

/* Look at every client's submission ring: true if one has data (marked sq_pending). */
static bool any_sq_ready(struct daemon *d, bool before_sleep)
{
	struct client *c;
	bool found = false;

	LIST_FOREACH(c, &d->clients, link)
	{
		if (c->state != CLIENT_READY || c->kill)
			continue;
		if (before_sleep ? shm_sleep_prepare(&c->sq) : shm_cons_ready(&c->sq)) {
			c->sq_pending = true;
			found = true;
		}
	}
	return found;
}

static void announce_spin(struct daemon *d, bool on)
{
	struct client *c;

	LIST_FOREACH(c, &d->clients, link)
	{
		if (c->state != CLIENT_READY)
			continue;
		if (on)
			shm_spin_begin(&c->sq);
		else
			shm_spin_end(&c->sq);
	}
}

/*
 * After a busy round, poll the submission rings and the io_uring completion queue for up to
 * the adaptive budget instead of sleeping: a client that submits again within it (a closed
 * loop, a burst) is seen without a doorbell and without a wake-up. The rings carry our
 * spinning word meanwhile, so clients skip their doorbell write; it is withdrawn and every
 * ring looked at once more before we may sleep (the clients' side of the protocol rings the
 * doorbell for anything published after that). Returns whether there is work.
 */
bool uring_spin_poll(struct daemon *d)
{
	uint64_t t0, now, next_yield;
	bool found = false;

	/* The completion doorbells queued this round must go out before we spin. */
	if (io_uring_sq_ready(&d->ring))
		io_uring_submit(&d->ring);
	announce_spin(d, true);
	t0 = uring_now_ns();
	next_yield = t0 + SPIN_YIELD_NS;
	for (;;) {
		for (int i = 0; i < 8 && !found; i++) {
			/* Our own completion doorbells complete here too: they are not work. */
			found = (io_uring_cq_ready(&d->ring) && reap_cqes(d) > 0) ||
				any_sq_ready(d, false);
			shm_cpu_relax();
		}
		if (found)
			break;
		now = uring_now_ns();
		if (now - t0 >= d->spin_ns)
			break;
		if (now >= next_yield) {
			sched_yield();
			next_yield = now + SPIN_YIELD_NS;
		}
	}
	announce_spin(d, false);
	/*
	 * Always look at every ring again, also when a completion ended the spin: a client that
	 * submitted meanwhile saw our word and skipped its doorbell, and nothing else would mark
	 * its ring pending (it stalled until its next doorbell: 30 s client stalls in integ-ctl).
	 */
	found = any_sq_ready(d, true) || found;
	if (found)
		d->spin_ns = (uint64_t)d->cfg.spin_us * 1000;
	return found;
}

/* After a sleep of @gap_ns: spin next time if a spin of the full budget would have caught it. */
static void adapt_spin(struct daemon *d, uint64_t gap_ns)
{
	uint64_t max = (uint64_t)d->cfg.spin_us * 1000;

	if (gap_ns <= max)
		d->spin_ns = max;
	else if ((d->spin_ns /= 2) < 1000)
		d->spin_ns = 0;
}

/* Housekeeping after each round: submissions, kills, stalls. Returns whether a tick is due. */
static bool sweep_clients(struct daemon *d, bool do_sq)
{
	uint64_t now = uring_now_ns();
	struct client *c, *next;
	bool need_tick = false;

	for (c = LIST_FIRST(&d->clients); c; c = next) {
		next = LIST_NEXT(c, link);
		if (c->state == CLIENT_CLOSING)
			continue;
		if (do_sq && c->sq_pending)
			shm_client_process_sq(c);
		if (c->blocked_since_ns) {
			need_tick = true;
			if (now - c->blocked_since_ns >
			    (uint64_t)d->cfg.stall_timeout_ms * 1000000ull) {
				if (c->n_warn++ < 5)
					log_warn(
						"client stalled client=%llu pid=%d stall_ms=%u, disconnecting",
						(unsigned long long)c->id, (int)c->cred.pid,
						d->cfg.stall_timeout_ms);
				c->kill = true;
			}
		}
		if (c->kill)
			drop_client(d, c);
	}
	return need_tick;
}

static bool any_sq_pending(struct daemon *d)
{
	struct client *c;

	LIST_FOREACH(c, &d->clients, link)
	if (c->state == CLIENT_READY && c->sq_pending && !c->kill)
		return true;
	return false;
}

int uring_loop_run(struct daemon *d)
{
	bool need_tick = false, active = false;
	int ret;

	d->spin_ns = (uint64_t)d->cfg.spin_us * 1000;
	while (!d->stop) {
		struct io_uring_cqe *cqe;
		bool busy = sched_has_work(d->sched) || reload_has_work(d) || any_sq_pending(d);
		uint64_t t_step, taken, t_idle = 0;
		int stepped;

		if (!busy && active && d->cfg.spin_us)
			t_idle = uring_now_ns();
		if (busy) {
			io_uring_submit(&d->ring);
		} else if (active && d->spin_ns && uring_spin_poll(d)) {
			/* Work arrived while spinning: no sleep, no wake-up. */
		} else {
			/* Idle, or the spin ran out: block in the kernel (never poll at idle). */
			if (need_tick || d->draining) {
				struct __kernel_timespec ts = { 0, (long long)TICK_NS };

				ret = io_uring_submit_and_wait_timeout(&d->ring, &cqe, 1, &ts,
								       NULL);
				if (ret < 0 && ret != -ETIME && ret != -EINTR)
					return log_errno(ret, "io_uring wait failed");
			} else {
				ret = io_uring_submit_and_wait(&d->ring, 1);
				if (ret < 0 && ret != -EINTR)
					return log_errno(ret, "io_uring wait failed");
			}
			/* The whole idle gap, spin included, decides the next spin. */
			if (t_idle)
				adapt_spin(d, uring_now_ns() - t_idle);
		}
		reap_cqes(d);

		taken = d->n_sq_taken;
		need_tick = sweep_clients(d, true);
		t_step = uring_now_ns();
		stepped = sched_step(d->sched);
		if (stepped < 0)
			log_err("backend step failed error=\"%s\"", strerror(-stepped));
		ret = reload_step(d);
		if (ret < 0)
			log_err("backend step failed generation=old error=\"%s\"", strerror(-ret));
		d->step_busy_ns += uring_now_ns() - t_step;
		need_tick |= sweep_clients(d, false);
		/* A round that took a submission, stepped or answered is busy: spin after it. */
		active = ring_bells(d) > 0 || stepped > 0 || ret > 0 || d->n_sq_taken != taken;

		if (d->draining) {
			uint64_t now = uring_now_ns();

			if (!reload_n_live(d)) {
				d->stop = true;
			} else if (now > d->drain_deadline_ns + 1000000000ull) {
				/* Clients that do not read their answers do not hold us up. */
				log_warn("drain gave up live_requests=%u", reload_n_live(d));
				d->stop = true;
			} else if (now > d->drain_deadline_ns && !d->drain_cancelled) {
				log_warn("drain timeout, cancelling live_requests=%u",
					 reload_n_live(d));
				reload_cancel_all(d);
				d->drain_cancelled = true;
			}
		}
	}
	return 0;
}

void uring_loop_done(struct daemon *d)
{
	struct client *c, *next;
	struct __kernel_timespec ts = { 0, 100 * 1000 * 1000 };
	struct io_uring_cqe *cqe;

	/* Let the last completion doorbells go out before the ring is torn down. */
	ring_bells(d);
	io_uring_submit(&d->ring);
	for (int i = 0; i < 10; i++) {
		bool pending = false;
		unsigned head, n = 0;

		LIST_FOREACH(c, &d->clients, link)
		pending |= c->op_cq_bell.armed;
		if (!pending)
			break;
		if (io_uring_wait_cqe_timeout(&d->ring, &cqe, &ts) < 0)
			break;
		io_uring_for_each_cqe(&d->ring, head, cqe)
		{
			struct uop *op = io_uring_cqe_get_data(cqe);

			if (op && op->c && op->kind == UOP_CQ_BELL) {
				op->armed = false;
				op->c->n_ops--;
			}
			n++;
		}
		io_uring_cq_advance(&d->ring, n);
	}
	for (c = LIST_FIRST(&d->clients); c; c = next) {
		next = LIST_NEXT(c, link);
		shm_client_close(c);
	}
	/* Exiting the ring cancels whatever is still in flight; nothing refers to clients after. */
	io_uring_queue_exit(&d->ring);
	while ((c = LIST_FIRST(&d->clients)))
		shm_client_free(c);
	if (d->signal_fd >= 0)
		close(d->signal_fd);
}
