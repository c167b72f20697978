// SPDX-License-Identifier: MIT
/*
 * One connected client: its sealed shared-memory region, doorbells, and the reading of its
 * submission ring. Everything in the region is hostile: descriptors and payloads are copied
 * (proto/shm_ring.c) before they are checked, and messages are decoded from the private copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/internal.h"
#include "proto/status.h"

#define WARN_MAX 5 /* warnings logged per client; the rest are counted silently */

static void client_warn(struct client *c, const char *what)
{
	if (c->n_warn++ < WARN_MAX)
		log_warn("client misbehaves client=%llu pid=%d uid=%u what=\"%s\"",
			 (unsigned long long)c->id, (int)c->cred.pid, (unsigned)c->cred.uid, what);
}

int shm_client_new(struct daemon *d, int sock, const struct ucred *cred, struct client **ret)
{
	struct client *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->d = d;
	c->id = ++d->next_client_id;
	c->state = CLIENT_HELLO;
	c->sock = sock;
	c->memfd = -1;
	c->sq_efd = -1;
	c->cq_efd = -1;
	c->cred = *cred;
	c->t_connect_ns = uring_now_ns();
	c->op_recv = (struct uop){ UOP_SOCK_RECV, c, false };
	c->op_sq_bell = (struct uop){ UOP_SQ_BELL, c, false };
	c->op_cq_bell = (struct uop){ UOP_CQ_BELL, c, false };
	for (int i = 0; i < 3; i++)
		c->op_cancel[i] = (struct uop){ UOP_CANCEL, c, false };
	LIST_INSERT_HEAD(&d->clients, c, link);
	d->n_clients++;
	*ret = c;
	return 0;
}

static int make_region(struct client *c)
{
	const struct config *cfg = &c->d->cfg;
	int ret;

	ret = shm_layout_init(&c->layout, cfg->sq_slots, cfg->cq_slots,
			      (uint64_t)cfg->sq_arena_kib * 1024,
			      (uint64_t)cfg->cq_arena_kib * 1024);
	if (ret < 0)
		return ret;
	c->memfd = memfd_create("shiftadd-client", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (c->memfd < 0)
		return -errno;
	if (ftruncate(c->memfd, (off_t)c->layout.total_bytes) < 0)
		return -errno;
	/* After this the size is fixed for good: no client can make our mapping fault. */
	if (fcntl(c->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		return -errno;
	c->shm = mmap(NULL, c->layout.total_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, c->memfd, 0);
	if (c->shm == MAP_FAILED) {
		c->shm = NULL;
		return -errno;
	}
	shm_layout_write_hdr(&c->layout, c->shm);
	ret = shm_prod_init(&c->cq, c->shm, &c->layout, 0);
	if (ret < 0)
		return ret;
	shm_cons_init(&c->sq, c->shm, &c->layout, 1, cfg->max_msg_bytes);
	c->msg_buf = malloc(cfg->max_msg_bytes);
	if (!c->msg_buf)
		return -ENOMEM;
	c->sq_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->cq_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->sq_efd < 0 || c->cq_efd < 0)
		return -errno;
	return 0;
}

static int send_welcome(struct client *c)
{
	const struct daemon *d = c->d;
	const struct config *cfg = &d->cfg;
	Shiftadd__ControlMsg m = SHIFTADD__CONTROL_MSG__INIT;
	Shiftadd__Welcome w = SHIFTADD__WELCOME__INIT;
	Shiftadd__Limits lim = SHIFTADD__LIMITS__INIT;
	Shiftadd__ShmLayout l = SHIFTADD__SHM_LAYOUT__INIT;
	Shiftadd__ModelInfo mi = SHIFTADD__MODEL_INFO__INIT;
	int fds[3] = { c->memfd, c->sq_efd, c->cq_efd };

	lim.max_inflight = cfg->max_inflight;
	lim.max_prompt_tokens = cfg->max_prompt_tokens;
	lim.max_new_tokens = cfg->max_new_tokens;
	lim.max_msg_bytes = cfg->max_msg_bytes;
	lim.max_stop_strings = cfg->max_stop_strings;
	lim.max_stop_bytes = cfg->max_stop_bytes;
	lim.n_ctx = d->binfo.n_ctx;
	l.total_bytes = c->layout.total_bytes;
	l.sq_slots = c->layout.sq_slots;
	l.cq_slots = c->layout.cq_slots;
	l.sq_ring_off = c->layout.sq_ring_off;
	l.cq_ring_off = c->layout.cq_ring_off;
	l.sq_arena_off = c->layout.sq_arena_off;
	l.sq_arena_bytes = c->layout.sq_arena_bytes;
	l.cq_arena_off = c->layout.cq_arena_off;
	l.cq_arena_bytes = c->layout.cq_arena_bytes;
	mi.name = (char *)d->binfo.model_name;
	mi.n_vocab = d->binfo.n_vocab;
	mi.eos_id = d->binfo.eos_id;
	mi.backend = (char *)d->bops->name;
	w.protocol_version = PROTOCOL_VERSION;
	w.daemon_version = DAEMON_VERSION;
	w.client_id = c->id;
	w.limits = &lim;
	w.layout = &l;
	w.model = &mi;
	m.msg_case = SHIFTADD__CONTROL_MSG__MSG_WELCOME;
	m.welcome = &w;
	return ctl_sock_send(c->sock, &m, fds, 3);
}

int shm_client_hello(struct client *c, size_t len)
{
	Shiftadd__ControlMsg *m;
	int ret;

	m = shiftadd__control_msg__unpack(NULL, len, c->rx);
	if (!m || m->msg_case != SHIFTADD__CONTROL_MSG__MSG_HELLO) {
		ctl_sock_send_error(c->sock, SHIFTADD__STATUS__STATUS_PROTOCOL_ERROR,
				    "expected Hello");
		ret = -EPROTO;
		goto out;
	}
	if (m->hello->protocol_version != PROTOCOL_VERSION) {
		ctl_sock_send_error(c->sock, SHIFTADD__STATUS__STATUS_UNSUPPORTED,
				    "unsupported protocol version");
		ret = -EOPNOTSUPP;
		goto out;
	}
	snprintf(c->name, sizeof(c->name), "%s", m->hello->client_name);
	for (char *p = c->name; *p; p++)
		if (*p < 0x20 || *p == '"' || *p == 0x7f)
			*p = '?';
	if (c->d->draining) {
		ctl_sock_send_error(c->sock, SHIFTADD__STATUS__STATUS_SHUTTING_DOWN, "draining");
		ret = -ESHUTDOWN;
		goto out;
	}
	ret = make_region(c);
	if (ret < 0) {
		ctl_sock_send_error(c->sock, SHIFTADD__STATUS__STATUS_INTERNAL, "no memory");
		goto out;
	}
	ret = sched_client_add(c->d->sched, c, shm_client_emit, c->cred.uid, &c->sc);
	if (ret < 0)
		goto out;
	ret = send_welcome(c);
	if (ret < 0)
		goto out;
	c->state = CLIENT_READY;
	log_info("client connected client=%llu pid=%d uid=%u gid=%u name=\"%s\"",
		 (unsigned long long)c->id, (int)c->cred.pid, (unsigned)c->cred.uid,
		 (unsigned)c->cred.gid, c->name);
out:
	if (m)
		shiftadd__control_msg__free_unpacked(m, NULL);
	return ret;
}

static int reply_error(struct client *c, uint64_t request_id, int err, const char *what)
{
	Shiftadd__ServerMsg m = SHIFTADD__SERVER_MSG__INIT;
	Shiftadd__Error e = SHIFTADD__ERROR__INIT;

	e.request_id = request_id;
	e.status = status_from_errno(err);
	e.message = (char *)what;
	m.msg_case = SHIFTADD__SERVER_MSG__MSG_ERROR;
	m.error = &e;
	return shm_client_emit(c, &m);
}

static const char *submit_error_text(int err)
{
	switch (err) {
	case -EDQUOT:
		return "quota exceeded (in-flight requests or tokens)";
	case -E2BIG:
		return "prompt too long";
	case -ESHUTDOWN:
		return "daemon is shutting down";
	case -EINVAL:
		return "invalid request (id 0 or in use, token id out of range, bad parameter)";
	default:
		return strerror(-err);
	}
}

void shm_client_process_sq(struct client *c)
{
	for (int n = 0; n < SQ_BATCH_MAX; n++) {
		Shiftadd__ClientMsg *m;
		size_t len;
		int ret;

		if (c->state != CLIENT_READY || c->kill)
			return;
		ret = shm_cons_peek(&c->sq, c->msg_buf, c->d->cfg.max_msg_bytes, &len);
		if (ret == -EAGAIN) {
			c->sq_pending = false;
			return;
		}
		if (ret < 0) {
			client_warn(c, "bad submission ring index or descriptor");
			c->kill = true;
			return;
		}
		m = shiftadd__client_msg__unpack(NULL, len, c->msg_buf);
		if (!m || m->msg_case == SHIFTADD__CLIENT_MSG__MSG__NOT_SET) {
			if (m)
				shiftadd__client_msg__free_unpacked(m, NULL);
			client_warn(c, "undecodable message");
			if (++c->n_bad > CLIENT_BAD_MSG_MAX) {
				c->kill = true;
				return;
			}
			if (reply_error(c, 0, -EPROTO, "undecodable message") == -EAGAIN)
				return; /* retried once the client reads its completions */
			shm_cons_pop(&c->sq);
			c->d->n_sq_taken++;
			continue;
		}
		if (m->msg_case == SHIFTADD__CLIENT_MSG__MSG_GENERATE) {
			/* Ids stay unique across a hot reload's two generations. */
			if (c->sc_old &&
			    sched_client_has_request(c->sc_old, m->generate->request_id))
				ret = -EINVAL;
			else
				ret = sched_submit(c->d->sched, c->sc, m->generate);
			if (ret < 0 && reply_error(c, m->generate->request_id, ret,
						   submit_error_text(ret)) == -EAGAIN) {
				shiftadd__client_msg__free_unpacked(m, NULL);
				return;
			}
			if (ret < 0)
				c->d->n_req_refused++;
		} else if (m->msg_case == SHIFTADD__CLIENT_MSG__MSG_CANCEL) {
			/* Unknown ids are normal: the request may have just finished. */
			if (sched_cancel(c->d->sched, c->sc, m->cancel->request_id) == -ENOENT &&
			    c->sc_old)
				(void)sched_cancel(c->d->old->sched, c->sc_old,
						   m->cancel->request_id);
		}
		shiftadd__client_msg__free_unpacked(m, NULL);
		shm_cons_pop(&c->sq);
		c->d->n_sq_taken++;
	}
}

int shm_client_emit(void *owner, const Shiftadd__ServerMsg *m)
{
	struct client *c = owner;
	size_t len;
	void *buf;
	int ret;

	if (c->state != CLIENT_READY || c->kill)
		return -EPIPE;
	len = shiftadd__server_msg__get_packed_size(m);
	ret = shm_prod_reserve(&c->cq, len, &buf);
	if (ret == -EAGAIN) {
		/* Ask for a kick, then look again: the client may have read in between. */
		shm_flags_store(c->cq.ctl, SHM_RING_F_KICK);
		ret = shm_prod_reserve(&c->cq, len, &buf);
	}
	if (ret == -EAGAIN) {
		if (!c->blocked_since_ns)
			c->blocked_since_ns = uring_now_ns();
		return -EAGAIN;
	}
	if (ret == -EPROTO) {
		client_warn(c, "bad completion ring head");
		c->kill = true;
		return ret;
	}
	if (ret < 0)
		return ret;
	shiftadd__server_msg__pack(m, buf);
	shm_prod_commit(&c->cq, len);
	c->cq_dirty = true;
	c->blocked_since_ns = 0;
	return 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void shm_client_close(struct client *c)
{
	struct daemon *d = c->d;

	if (c->state == CLIENT_CLOSING)
		return;
	if (c->state == CLIENT_READY)
		log_info("client disconnected client=%llu pid=%d", (unsigned long long)c->id,
			 (int)c->cred.pid);
	c->state = CLIENT_CLOSING;
	d->n_clients--;
	if (c->sc) {
		sched_client_remove(d->sched, c->sc);
		c->sc = NULL;
	}
	if (c->sc_old) {
		sched_client_remove(d->old->sched, c->sc_old);
		c->sc_old = NULL;
	}
	/* The fds stay open until shm_client_free(): an SQE queued but not yet submitted names
	 * its file by number, and a number closed now could be reused by the next accept, so that
	 * our stale read would consume another client's Hello. */
	uring_cancel_client(d, c);
}

void shm_client_free(struct client *c)
{
	if (!c)
		return;
	LIST_REMOVE(c, link);
	close_fd(&c->sock);
	close_fd(&c->memfd);
	close_fd(&c->sq_efd);
	close_fd(&c->cq_efd);
	if (c->shm)
		munmap(c->shm, c->layout.total_bytes);
	shm_prod_done(&c->cq);
	free(c->msg_buf);
	free(c);
}
