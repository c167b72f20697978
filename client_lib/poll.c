// SPDX-License-Identifier: MIT
/*
 * Reading the completion ring and delivering events (contracts in include/shiftadd.h).
 * One thread at a time is the poller (leader/followers): it waits on the doorbell, drains the
 * ring and runs callbacks; other waiting threads sleep on a condition variable and re-check
 * their condition whenever the poller finishes a round.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client_lib/internal.h"
#include "proto/shiftadd.pb-c.h"
#include "proto/status.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ms(void)
{
	return now_ns() / 1000000;
}

/* Find (and with @unlink, remove) a request; caller holds mu. */
static struct creq *find_locked(struct shiftadd_client *c, uint64_t id, bool unlink)
{
	for (struct creq **pp = &c->reqs; *pp; pp = &(*pp)->next) {
		struct creq *r = *pp;

		if (r->id == id) {
			if (unlink)
				*pp = r->next;
			return r;
		}
	}
	return NULL;
}

static void *dup_bytes(const void *p, size_t n)
{
	void *q = malloc(n ? n : 1);

	if (q && n)
		memcpy(q, p, n);
	return q;
}

/* Queue a deep copy of @ev; caller holds mu. */
static void enqueue_locked(struct shiftadd_client *c, const struct shiftadd_event *ev)
{
	struct qevent *q = calloc(1, sizeof(*q));

	if (!q)
		return; /* out of memory: the event is lost, the request's DONE may follow */
	q->ev = *ev;
	q->ev.ids = dup_bytes(ev->ids, ev->n_ids * sizeof(*ev->ids));
	q->ev.text = dup_bytes(ev->text, ev->text_len);
	q->ev.message = strdup(ev->message ? ev->message : "");
	if (!q->ev.ids || !q->ev.text || !q->ev.message) {
		shiftadd_event_release(&q->ev);
		free(q);
		return;
	}
	if (c->q_tail)
		c->q_tail->next = q;
	else
		c->q_head = q;
	c->q_tail = q;
}

/* Hand one event to its request's callback or queue. Poller only, mu not held. */
static void deliver(struct shiftadd_client *c, const struct shiftadd_event *ev)
{
	bool done = ev->type == SHIFTADD_EVENT_DONE;
	shiftadd_event_cb cb = NULL;
	void *arg = NULL;
	struct creq *r;

	pthread_mutex_lock(&c->mu);
	r = find_locked(c, ev->request_id, done);
	if (r) {
		cb = r->cb;
		arg = r->cb_arg;
		if (!cb)
			enqueue_locked(c, ev);
		c->n_delivered++;
	}
	pthread_mutex_unlock(&c->mu);
	if (cb)
		cb(ev, arg);
	if (r && done)
		free(r);
}

static void deliver_msg(struct shiftadd_client *c, const Shiftadd__ServerMsg *m)
{
	struct shiftadd_event ev = { 0 };

	ev.message = "";
	switch (m->msg_case) {
	case SHIFTADD__SERVER_MSG__MSG_TOKEN:
		ev.type = SHIFTADD_EVENT_TOKENS;
		ev.request_id = m->token->request_id;
		ev.index = m->token->index;
		ev.ids = m->token->ids;
		ev.n_ids = m->token->n_ids;
		ev.text = (const char *)m->token->text.data;
		ev.text_len = m->token->text.len;
		ev.t_ns = m->token->t_ns;
		break;
	case SHIFTADD__SERVER_MSG__MSG_FINAL: {
		const Shiftadd__FinalResponse *f = m->final;

		ev.type = SHIFTADD_EVENT_DONE;
		ev.request_id = f->request_id;
		ev.ids = f->ids;
		ev.n_ids = f->n_ids;
		ev.text = (const char *)f->text.data;
		ev.text_len = f->text.len;
		ev.finish_reason = (enum shiftadd_finish)f->finish_reason;
		ev.error = f->finish_reason == SHIFTADD__FINISH_REASON__FINISH_CANCELLED
				   ? 0
				   : status_to_errno(f->status);
		ev.message = f->message ? f->message : "";
		if (f->usage) {
			ev.prompt_tokens = f->usage->prompt_tokens;
			ev.cached_tokens = f->usage->cached_tokens;
			ev.completion_tokens = f->usage->completion_tokens;
		}
		ev.ttft_ns = f->ttft_ns;
		ev.total_ns = f->total_ns;
		break;
	}
	case SHIFTADD__SERVER_MSG__MSG_ERROR:
		/* A refused request: its one and only event. Id 0 is about the connection. */
		if (m->error->request_id == 0)
			return;
		ev.type = SHIFTADD_EVENT_DONE;
		ev.request_id = m->error->request_id;
		ev.finish_reason = SHIFTADD_FINISH_ERROR;
		ev.error = status_to_errno(m->error->status);
		if (ev.error == 0)
			ev.error = -EIO;
		ev.message = m->error->message ? m->error->message : "";
		break;
	default:
		return;
	}
	deliver(c, &ev);
}

/* The daemon is gone: fail every request in flight. Poller only. */
static void fail_all(struct shiftadd_client *c)
{
	for (;;) {
		struct shiftadd_event ev = { 0 };

		pthread_mutex_lock(&c->mu);
		c->dead = true;
		if (!c->reqs) {
			pthread_mutex_unlock(&c->mu);
			return;
		}
		ev.request_id = c->reqs->id;
		pthread_mutex_unlock(&c->mu);
		ev.type = SHIFTADD_EVENT_DONE;
		ev.finish_reason = SHIFTADD_FINISH_ERROR;
		ev.error = -ECONNRESET;
		ev.message = "daemon went away";
		deliver(c, &ev);
	}
}

/* Reset the completion doorbell (one read takes the whole eventfd count). */
static void reset_bell(struct shiftadd_client *c)
{
	uint64_t junk;

	(void)!read(c->cq_efd, &junk, sizeof(junk));
}

/*
 * Read everything the completion ring holds. Poller only. Returns messages read. With @reset,
 * the doorbell is reset first, so that an fd polled by the application goes quiet once
 * everything is read; a thread about to wait resets it in wait_bell() instead.
 */
static int drain(struct shiftadd_client *c, bool reset)
{
	int n = 0;

	if (reset)
		reset_bell(c);
	for (;;) {
		Shiftadd__ServerMsg *m;
		size_t len;
		int r = shm_cons_peek(&c->cq, c->cq_buf, c->layout.cq_arena_bytes, &len);

		if (r == -EAGAIN)
			break;
		if (r < 0) {
			fail_all(c);
			break;
		}
		m = shiftadd__server_msg__unpack(NULL, len, c->cq_buf);
		shm_cons_pop(&c->cq);
		n++;
		if (m) {
			deliver_msg(c, m);
			shiftadd__server_msg__free_unpacked(m, NULL);
		}
	}
	/* The daemon waits for room: tell it there is some now. */
	if (n && (shm_flags_load(c->cq.ctl) & SHM_RING_F_KICK)) {
		uint64_t one = 1;

		(void)!write(c->sq_efd, &one, sizeof(one));
	}
	return n;
}

/*
 * Adapt the spin budget to how long the last wait lasted (@gap_ns): a completion that came
 * within the longest spin is worth spinning for next time; a longer wait halves the budget,
 * down to none, so that a client waiting on slow steps stops burning its core.
 */
static void adapt_spin(struct shiftadd_client *c, uint64_t gap_ns)
{
	if (gap_ns <= c->spin_max_ns)
		c->spin_ns = c->spin_max_ns;
	else if ((c->spin_ns /= 2) < 1000)
		c->spin_ns = 0;
}

/*
 * Wait for the doorbell or a hang-up, at most @ms (-1 forever, not 0). Poller only. First spin
 * on the ring for the adaptive budget with the ring's spinning word set (the daemon then skips
 * the doorbell), then sleep: withdraw the word, reset the doorbell, look at the ring once more
 * (a completion published before the daemon saw the withdrawal is seen here, one published
 * after it rings the doorbell), then poll.
 */
static void wait_bell(struct shiftadd_client *c, int ms)
{
	struct pollfd p[2] = { { c->cq_efd, POLLIN, 0 }, { c->sock, POLLIN, 0 } };
	uint64_t t0 = now_ns();
	int r;

	if (shm_cons_spin(&c->cq, c->spin_ns)) {
		c->spin_ns = c->spin_max_ns;
		return;
	}
	reset_bell(c);
	if (shm_sleep_prepare(&c->cq))
		return;
	r = poll(p, 2, ms);
	if (c->spin_max_ns)
		adapt_spin(c, now_ns() - t0);
	if (r <= 0)
		return;
	if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
		char b[64];
		ssize_t n = recv(c->sock, b, sizeof(b), MSG_DONTWAIT);

		/* After the handshake the daemon only closes the socket. */
		if (n == 0 || (n < 0 && errno != EAGAIN)) {
			drain(c, false);
			fail_all(c);
		}
	}
}

typedef bool (*pred_fn)(struct shiftadd_client *c, const void *arg);

/*
 * Become the poller (or wait for the current one) until @pred holds (checked under mu),
 * the client is dead, or @timeout_ms passes. Returns 0 when @pred holds, -ETIMEDOUT, -ENOTCONN.
 */
static int pump(struct shiftadd_client *c, pred_fn pred, const void *arg, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)timeout_ms;
	bool first = true;
	int ret;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		uint64_t now;
		int left;

		if (pred(c, arg)) {
			ret = 0;
			break;
		}
		if (c->dead) {
			ret = -ENOTCONN;
			break;
		}
		now = now_ms();
		if (!first && now >= deadline) {
			ret = -ETIMEDOUT;
			break;
		}
		left = deadline == UINT64_MAX ? -1
		       : now >= deadline
			       ? 0
			       : (int)(deadline - now < 3600000 ? deadline - now : 3600000);
		first = false;
		if (!c->polling) {
			int n;

			c->polling = true;
			pthread_mutex_unlock(&c->mu);
			/* Not waiting: leave the doorbell quiet for an application polling it. */
			n = drain(c, left == 0);
			pthread_mutex_lock(&c->mu);
			if (n == 0 && !pred(c, arg) && !c->dead && left != 0) {
				pthread_mutex_unlock(&c->mu);
				wait_bell(c, left);
				drain(c, false);
				pthread_mutex_lock(&c->mu);
			}
			c->polling = false;
			pthread_cond_broadcast(&c->cv);
		} else if (left < 0) {
			pthread_cond_wait(&c->cv, &c->mu);
		} else {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += left / 1000;
			ts.tv_nsec += (long)(left % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		}
	}
	pthread_mutex_unlock(&c->mu);
	return ret;
}

static bool delivered_since(struct shiftadd_client *c, const void *arg)
{
	return c->n_delivered > *(const uint64_t *)arg;
}

SHIFTADD_API int shiftadd_poll(shiftadd_client *c, int timeout_ms)
{
	uint64_t start;
	int r;

	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	start = c->n_delivered;
	pthread_mutex_unlock(&c->mu);
	r = pump(c, delivered_since, &start, timeout_ms);
	pthread_mutex_lock(&c->mu);
	r = c->n_delivered > start ? (int)(c->n_delivered - start) : r == -ENOTCONN ? r : 0;
	pthread_mutex_unlock(&c->mu);
	return r;
}

static bool queue_nonempty(struct shiftadd_client *c, const void *arg)
{
	return c->q_head != NULL;
}

SHIFTADD_API int shiftadd_next_event(shiftadd_client *c, struct shiftadd_event *ev, int timeout_ms)
{
	struct qevent *q;
	int r;

	if (!c || !ev)
		return -EINVAL;
	r = pump(c, queue_nonempty, NULL, timeout_ms);
	if (r == -ETIMEDOUT)
		return 0;
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->mu);
	q = c->q_head;
	if (q) {
		c->q_head = q->next;
		if (!c->q_head)
			c->q_tail = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	if (!q)
		return 0; /* another thread took it */
	*ev = q->ev;
	free(q);
	return 1;
}

SHIFTADD_API void shiftadd_event_release(struct shiftadd_event *ev)
{
	if (!ev)
		return;
	free((void *)ev->ids);
	free((void *)ev->text);
	free((void *)ev->message);
	ev->ids = NULL;
	ev->text = NULL;
	ev->message = NULL;
}

static bool not_in_flight(struct shiftadd_client *c, const void *arg)
{
	return !find_locked(c, *(const uint64_t *)arg, false);
}

SHIFTADD_API int shiftadd_wait(shiftadd_client *c, uint64_t id, int timeout_ms)
{
	if (!c)
		return -EINVAL;
	return pump(c, not_in_flight, &id, timeout_ms);
}
