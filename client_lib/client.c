// SPDX-License-Identifier: MIT
/* Connection, submission, cancellation (contracts in include/shiftadd.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client_lib/internal.h"
#include "proto/shiftadd.pb-c.h"
#include "proto/status.h"

#define PROTOCOL_VERSION 1
#define CTL_MSG_MAX	 4096

static void default_path(char *buf, size_t len)
{
	const char *env = getenv("SHIFTADD_SOCKET"), *xdg = getenv("XDG_RUNTIME_DIR");

	if (env && env[0])
		snprintf(buf, len, "%s", env);
	else if (xdg && xdg[0] == '/')
		snprintf(buf, len, "%s/shiftadd/shiftaddd.sock", xdg);
	else
		snprintf(buf, len, "/run/shiftadd/shiftaddd.sock");
}

/* SHIFTADD_SPIN_US, clamped; unset or unparsable: the default. */
static uint64_t spin_budget_ns(void)
{
	const char *env = getenv("SHIFTADD_SPIN_US");
	unsigned long v = CLIENT_SPIN_US_DEFAULT;
	char *end;

	if (env && env[0]) {
		errno = 0;
		v = strtoul(env, &end, 10);
		if (errno || *end)
			v = CLIENT_SPIN_US_DEFAULT;
		else if (v > CLIENT_SPIN_US_MAX)
			v = CLIENT_SPIN_US_MAX;
	}
	return (uint64_t)v * 1000;
}

static int send_hello(int fd, const char *name)
{
	Shiftadd__ControlMsg m = SHIFTADD__CONTROL_MSG__INIT;
	Shiftadd__Hello h = SHIFTADD__HELLO__INIT;
	uint8_t buf[CTL_MSG_MAX];
	char nm[65];
	size_t len;

	snprintf(nm, sizeof(nm), "%s", name ? name : "");
	h.protocol_version = PROTOCOL_VERSION;
	h.client_name = nm;
	m.msg_case = SHIFTADD__CONTROL_MSG__MSG_HELLO;
	m.hello = &h;
	len = shiftadd__control_msg__get_packed_size(&m);
	shiftadd__control_msg__pack(&m, buf);
	if (send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len)
		return -errno;
	return 0;
}

/* Receive the Welcome (or refusal) and the 3 fds; any fd received is ours to close. */
static int recv_welcome(struct shiftadd_client *c, Shiftadd__ControlMsg **ret_msg)
{
	uint8_t buf[CTL_MSG_MAX];
	union {
		char b[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	Shiftadd__ControlMsg *m;
	struct cmsghdr *cm;
	int fds[3] = { -1, -1, -1 }, n_fds = 0;
	ssize_t n;

	msg.msg_control = cbuf.b;
	msg.msg_controllen = sizeof(cbuf.b);
	n = recvmsg(c->sock, &msg, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (n_fds < 3)
				fds[n_fds++] = fd;
			else
				close(fd);
		}
	}
	c->memfd = fds[0];
	c->sq_efd = fds[1];
	c->cq_efd = fds[2];
	if (n == 0)
		return -ECONNRESET;
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		return -EPROTO;
	m = shiftadd__control_msg__unpack(NULL, (size_t)n, buf);
	if (!m)
		return -EPROTO;
	*ret_msg = m;
	return n_fds;
}

static int map_region(struct shiftadd_client *c, const Shiftadd__Welcome *w)
{
	const Shiftadd__ShmLayout *l = w->layout;
	struct stat st;
	int ret;

	if (!l || !w->limits || !w->model)
		return -EPROTO;
	c->layout = (struct shm_layout){
		.total_bytes = l->total_bytes,
		.sq_slots = l->sq_slots,
		.cq_slots = l->cq_slots,
		.sq_ring_off = l->sq_ring_off,
		.cq_ring_off = l->cq_ring_off,
		.sq_arena_off = l->sq_arena_off,
		.sq_arena_bytes = l->sq_arena_bytes,
		.cq_arena_off = l->cq_arena_off,
		.cq_arena_bytes = l->cq_arena_bytes,
	};
	/* ctl offsets are not sent: they follow from the sizes, as the check recomputes them. */
	{
		struct shm_layout want;

		if (shm_layout_init(&want, l->sq_slots, l->cq_slots, l->sq_arena_bytes,
				    l->cq_arena_bytes))
			return -EPROTO;
		c->layout.sq_ctl_off = want.sq_ctl_off;
		c->layout.cq_ctl_off = want.cq_ctl_off;
	}
	if (fstat(c->memfd, &st) < 0)
		return -errno;
	if (shm_layout_check(&c->layout, (uint64_t)st.st_size))
		return -EPROTO;
	c->shm = mmap(NULL, c->layout.total_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, c->memfd, 0);
	if (c->shm == MAP_FAILED) {
		c->shm = NULL;
		return -errno;
	}
	ret = shm_prod_init(&c->sq, c->shm, &c->layout, 1);
	if (ret < 0)
		return ret;
	c->max_msg_bytes = w->limits->max_msg_bytes;
	if (c->max_msg_bytes > c->layout.sq_arena_bytes)
		c->max_msg_bytes = (uint32_t)c->layout.sq_arena_bytes;
	shm_cons_init(&c->cq, c->shm, &c->layout, 0, (uint32_t)c->layout.cq_arena_bytes);
	c->cq_buf = malloc(c->layout.cq_arena_bytes);
	if (!c->cq_buf)
		return -ENOMEM;
	snprintf(c->info.model_name, sizeof(c->info.model_name), "%s", w->model->name);
	snprintf(c->info.backend, sizeof(c->info.backend), "%s", w->model->backend);
	c->info.n_vocab = w->model->n_vocab;
	c->info.eos_id = w->model->eos_id;
	c->info.n_ctx = w->limits->n_ctx;
	c->info.max_inflight = w->limits->max_inflight;
	c->info.max_prompt_tokens = w->limits->max_prompt_tokens;
	c->info.max_new_tokens = w->limits->max_new_tokens;
	c->info.client_id = w->client_id;
	return 0;
}

SHIFTADD_API int shiftadd_connect(const char *socket_path, const char *client_name,
				  shiftadd_client **ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { 10, 0 };
	Shiftadd__ControlMsg *m = NULL;
	struct shiftadd_client *c;
	char path[sizeof(sa.sun_path) + 1];
	int r;

	if (!ret)
		return -EINVAL;
	if (socket_path)
		snprintf(path, sizeof(path), "%s", socket_path);
	else
		default_path(path, sizeof(path));
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->memfd = c->sq_efd = c->cq_efd = -1;
	c->next_id = 1;
	c->spin_max_ns = spin_budget_ns();
	c->spin_ns = c->spin_max_ns;
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->sq_mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->sock < 0) {
		r = -errno;
		goto out_close;
	}
	/* A wedged daemon must not hang the handshake forever. */
	setsockopt(c->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(c->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		goto out_close;
	}
	/* A refused peer may see the daemon close before Hello is sent: the refusal is still
	 * waiting to be read, so read it either way. */
	(void)send_hello(c->sock, client_name);
	r = recv_welcome(c, &m);
	if (r < 0)
		goto out_close;
	if (m->msg_case == SHIFTADD__CONTROL_MSG__MSG_ERROR && m->error) {
		r = status_to_errno(m->error->status);
		if (r == 0)
			r = -EPROTO;
		goto out_free_msg;
	}
	if (m->msg_case != SHIFTADD__CONTROL_MSG__MSG_WELCOME || r != 3 ||
	    m->welcome->protocol_version != PROTOCOL_VERSION) {
		r = -EPROTO;
		goto out_free_msg;
	}
	r = map_region(c, m->welcome);
	if (r < 0)
		goto out_free_msg;
	shiftadd__control_msg__free_unpacked(m, NULL);
	*ret = c;
	return 0;

out_free_msg:
	shiftadd__control_msg__free_unpacked(m, NULL);
out_close:
	shiftadd_close(c);
	return r;
}

SHIFTADD_API void shiftadd_close(shiftadd_client *c)
{
	struct qevent *q;
	struct creq *r;

	if (!c)
		return;
	if (c->sock >= 0)
		close(c->sock);
	if (c->memfd >= 0)
		close(c->memfd);
	if (c->sq_efd >= 0)
		close(c->sq_efd);
	if (c->cq_efd >= 0)
		close(c->cq_efd);
	if (c->shm)
		munmap(c->shm, c->layout.total_bytes);
	shm_prod_done(&c->sq);
	while ((q = c->q_head)) {
		c->q_head = q->next;
		shiftadd_event_release(&q->ev);
		free(q);
	}
	while ((r = c->reqs)) {
		c->reqs = r->next;
		free(r);
	}
	free(c->cq_buf);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->sq_mu);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* Pack @m into the submission ring and ring the doorbell. */
static int push(struct shiftadd_client *c, const Shiftadd__ClientMsg *m)
{
	size_t len = shiftadd__client_msg__get_packed_size(m);
	uint64_t one = 1;
	bool bell = false;
	void *buf;
	int r;

	if (len > c->max_msg_bytes)
		return -E2BIG;
	pthread_mutex_lock(&c->sq_mu);
	r = shm_prod_reserve(&c->sq, len, &buf);
	if (r == 0) {
		shiftadd__client_msg__pack(m, buf);
		shm_prod_commit(&c->sq, len);
		/* A daemon spinning on our ring sees the tail without the write(2). */
		bell = shm_prod_need_bell(&c->sq);
	}
	pthread_mutex_unlock(&c->sq_mu);
	if (r == -EPROTO)
		return -ENOTCONN; /* the shared ring is corrupt: nothing more will work */
	if (r < 0)
		return r;
	if (bell && write(c->sq_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

static bool is_dead(struct shiftadd_client *c)
{
	bool d;

	pthread_mutex_lock(&c->mu);
	d = c->dead;
	pthread_mutex_unlock(&c->mu);
	return d;
}

SHIFTADD_API int shiftadd_submit(shiftadd_client *c, const struct shiftadd_request *req,
				 shiftadd_event_cb cb, void *cb_arg, uint64_t *ret_id)
{
	Shiftadd__ClientMsg m = SHIFTADD__CLIENT_MSG__INIT;
	Shiftadd__GenerateRequest g = SHIFTADD__GENERATE_REQUEST__INIT;
	Shiftadd__SamplingParams sp = SHIFTADD__SAMPLING_PARAMS__INIT;
	Shiftadd__TokenIds ids = SHIFTADD__TOKEN_IDS__INIT;
	struct creq *r, **pp;
	int ret;

	if (!c || !req || (!req->prompt && req->n_prompt_ids && !req->prompt_ids) ||
	    (req->n_stop_strings && !req->stop_strings) || (req->n_stop_ids && !req->stop_ids))
		return -EINVAL;
	for (size_t i = 0; i < req->n_stop_strings; i++)
		if (!req->stop_strings[i])
			return -EINVAL;
	if (is_dead(c))
		return -ENOTCONN;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->cb = cb;
	r->cb_arg = cb_arg;
	pthread_mutex_lock(&c->mu);
	r->id = c->next_id++;
	/* Registered before it is sent: its first event cannot outrun the table. */
	r->next = c->reqs;
	c->reqs = r;
	pthread_mutex_unlock(&c->mu);

	g.request_id = r->id;
	if (req->prompt) {
		g.prompt_case = SHIFTADD__GENERATE_REQUEST__PROMPT_TEXT;
		g.text = (char *)req->prompt;
	} else {
		g.prompt_case = SHIFTADD__GENERATE_REQUEST__PROMPT_IDS;
		ids.n_ids = req->n_prompt_ids;
		ids.ids = (uint32_t *)req->prompt_ids;
		g.ids = &ids;
	}
	g.max_tokens = req->max_tokens;
	sp.temperature = req->sampling.temperature;
	sp.top_k = req->sampling.top_k;
	sp.top_p = req->sampling.top_p;
	sp.seed = req->sampling.seed;
	g.sampling = &sp;
	g.n_stop_strings = req->n_stop_strings;
	g.stop_strings = (char **)req->stop_strings;
	g.n_stop_ids = req->n_stop_ids;
	g.stop_ids = (uint32_t *)req->stop_ids;
	g.stream = req->stream;
	m.msg_case = SHIFTADD__CLIENT_MSG__MSG_GENERATE;
	m.generate = &g;
	ret = push(c, &m);
	if (ret < 0) {
		pthread_mutex_lock(&c->mu);
		for (pp = &c->reqs; *pp; pp = &(*pp)->next)
			if (*pp == r) {
				*pp = r->next;
				break;
			}
		pthread_mutex_unlock(&c->mu);
		free(r);
		return ret;
	}
	if (ret_id)
		*ret_id = g.request_id;
	return 0;
}

SHIFTADD_API int shiftadd_cancel(shiftadd_client *c, uint64_t id)
{
	Shiftadd__ClientMsg m = SHIFTADD__CLIENT_MSG__INIT;
	Shiftadd__Cancel x = SHIFTADD__CANCEL__INIT;
	bool found = false;

	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	for (struct creq *r = c->reqs; r; r = r->next)
		found |= r->id == id;
	pthread_mutex_unlock(&c->mu);
	if (!found)
		return -ENOENT;
	x.request_id = id;
	m.msg_case = SHIFTADD__CLIENT_MSG__MSG_CANCEL;
	m.cancel = &x;
	return push(c, &m);
}

SHIFTADD_API int shiftadd_fd(shiftadd_client *c)
{
	return c ? c->cq_efd : -EINVAL;
}

SHIFTADD_API int shiftadd_info(shiftadd_client *c, struct shiftadd_info *ret)
{
	if (!c || !ret)
		return -EINVAL;
	*ret = c->info;
	return 0;
}

SHIFTADD_API const char *shiftadd_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case -EDQUOT:
		return "quota exceeded";
	case -E2BIG:
		return "request or prompt too long";
	case -EPERM:
		return "not allowed to connect to the daemon";
	case -ENOTCONN:
		return "not connected (daemon gone)";
	case -ECONNRESET:
		return "daemon went away";
	case -EPROTO:
		return "protocol error";
	case -ESHUTDOWN:
		return "daemon is shutting down";
	case -EOPNOTSUPP:
		return "protocol version not supported by the daemon";
	default:
		return err < 0 ? strerror(-err) : "unknown error";
	}
}
