// SPDX-License-Identifier: MIT
/*
 * Admin connections (shiftaddctl, shiftadd-bench): AdminRequest datagrams on the control socket,
 * each answered by one AdminReply. Read-only operations (STATUS, STATS) are open to any peer
 * allowed to connect; the others need an admin peer. Everything runs on the loop thread.
 */
#include <errno.h>
#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/internal.h"
#include "proto/status.h"

#define ADMIN_REPLY_MAX (256u * 1024)

static const char *const level_names[LOG_LVL_COUNT] = {
	[LOG_LVL_ERR] = "err",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_DEBUG] = "debug",
};

bool admin_peer_allowed(const struct config *cfg, const struct ucred *cred)
{
	if (cred->uid == 0 || cred->uid == geteuid())
		return true;
	for (uint32_t i = 0; i < cfg->n_admin_uids; i++)
		if (cfg->admin_uids[i] == cred->uid)
			return true;
	for (uint32_t i = 0; i < cfg->n_admin_gids; i++)
		if (cfg->admin_gids[i] == cred->gid)
			return true;
	return false;
}

/* Everything a reply points to lives here until it is packed. */
struct reply_buf {
	Shiftadd__AdminReply r;
	Shiftadd__DaemonStatus ds;
	Shiftadd__DaemonStats st;
	Shiftadd__WorkerInfo *workers; /* [n_workers] */
	Shiftadd__WorkerInfo **wptrs;  /* [n_workers] */
	Shiftadd__NodeInfo *nodes;     /* [n_nodes] */
	Shiftadd__NodeInfo **nptrs;    /* [n_nodes] */
	Shiftadd__ClientInfo *clients; /* [n_clients] */
	Shiftadd__ClientInfo **cptrs;  /* [n_clients] */
	char message[256];
};

static void reply_buf_free(struct reply_buf *b)
{
	free(b->workers);
	free(b->wptrs);
	free(b->nodes);
	free(b->nptrs);
	free(b->clients);
	free(b->cptrs);
}

static int fill_workers(struct daemon *d, struct reply_buf *b, size_t *ret_n)
{
	const struct placement *pl = reload_placement(d);
	uint32_t n = pl->n_workers;

	b->workers = calloc(n ? n : 1, sizeof(*b->workers));
	b->wptrs = calloc(n ? n : 1, sizeof(*b->wptrs));
	if (!b->workers || !b->wptrs)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		Shiftadd__WorkerInfo *w = &b->workers[i];

		shiftadd__worker_info__init(w);
		w->index = i;
		w->cpu = pl->worker_cpu[i];
		w->node = pl->worker_node[i];
		worker_pool_busy(d->pool, i, &w->busy_ns, &w->tasks);
		b->wptrs[i] = w;
	}
	*ret_n = n;
	return 0;
}

static uint64_t rss_bytes(void)
{
	unsigned long long size = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f)
		return 0;
	if (fscanf(f, "%llu %llu", &size, &rss) != 2)
		rss = 0;
	fclose(f);
	return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int op_status(struct daemon *d, struct reply_buf *b)
{
	const struct placement *pl = reload_placement(d);
	Shiftadd__DaemonStatus *ds = &b->ds;
	bool have_numa = numa_available() >= 0;
	int ret;

	shiftadd__daemon_status__init(ds);
	ds->daemon_version = DAEMON_VERSION;
	ds->pid = (uint32_t)getpid();
	ds->uptime_ns = uring_now_ns() - d->t_start_ns;
	ds->backend = (char *)d->bops->name;
	ds->model_path = d->cfg.model;
	ds->model_name = d->binfo.model_name;
	ds->generation = d->generation;
	ds->numa_policy = (char *)numa_policy_name(pl->weights);
	ds->rss_bytes = rss_bytes();
	ds->draining = d->draining || d->admin_draining;
	ds->retiring_live = reload_old_live(d);
	ds->log_level = (char *)level_names[log_max_level];
	ds->n_clients = d->n_clients;
	ds->n_slots = d->binfo.n_slots;
	ds->n_ctx = d->binfo.n_ctx;
	ds->n_vocab = d->binfo.n_vocab;
	ds->workers_spec = d->cfg.workers;
	ret = fill_workers(d, b, &ds->n_workers);
	if (ret < 0)
		return ret;
	ds->workers = b->wptrs;
	b->nodes = calloc(pl->n_nodes ? pl->n_nodes : 1, sizeof(*b->nodes));
	b->nptrs = calloc(pl->n_nodes ? pl->n_nodes : 1, sizeof(*b->nptrs));
	if (!b->nodes || !b->nptrs)
		return -ENOMEM;
	for (uint32_t i = 0; i < pl->n_nodes; i++) {
		Shiftadd__NodeInfo *n = &b->nodes[i];
		long long free_bytes = 0, total = 0;

		shiftadd__node_info__init(n);
		n->node = pl->nodes[i];
		if (have_numa && n->node >= 0) {
			total = numa_node_size64(n->node, &free_bytes);
			if (total < 0)
				total = free_bytes = 0;
		}
		n->total_bytes = (uint64_t)total;
		n->free_bytes = (uint64_t)free_bytes;
		for (uint32_t w = 0; w < pl->n_workers; w++)
			n->n_workers += pl->worker_node[w] == n->node;
		b->nptrs[i] = n;
	}
	ds->n_nodes = pl->n_nodes;
	ds->nodes = b->nptrs;
	b->r.daemon = ds;
	return 0;
}

/* Every thread's CPU time, whichever pool runs the backend's kernels. */
static uint64_t process_cpu_ns(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

static int op_stats(struct daemon *d, struct reply_buf *b)
{
	Shiftadd__DaemonStats *st = &b->st;
	struct sched_stats ss;
	int ret;

	reload_stats(d, &ss);
	shiftadd__daemon_stats__init(st);
	st->uptime_ns = uring_now_ns() - d->t_start_ns;
	st->requests_done = ss.requests_done;
	st->tokens_generated = ss.tokens_generated;
	st->tokens_prefilled = ss.tokens_prefilled;
	st->tokens_cached = ss.tokens_cached;
	st->steps = ss.steps;
	st->step_busy_ns = d->step_busy_ns;
	st->n_live = reload_n_live(d);
	st->n_active = ss.n_active;
	st->n_waiting = ss.n_waiting;
	st->n_clients = d->n_clients;
	st->clients_accepted = d->n_accepted;
	st->clients_refused = d->n_refused;
	st->kv_slots_total = d->binfo.n_slots;
	st->kv_tokens = ss.kv_tokens;
	st->kv_tokens_total = (uint64_t)d->binfo.n_slots * d->binfo.n_ctx;
	st->generation = d->generation;
	st->requests_refused = d->n_req_refused;
	st->cpu_ns = process_cpu_ns();
	ret = fill_workers(d, b, &st->n_workers);
	if (ret < 0)
		return ret;
	st->workers = b->wptrs;
	b->r.stats = st;
	return 0;
}

static int op_clients(struct daemon *d, struct reply_buf *b)
{
	uint64_t now = uring_now_ns();
	struct client *c;
	size_t n = 0;

	b->clients = calloc(d->n_clients + 1, sizeof(*b->clients));
	b->cptrs = calloc(d->n_clients + 1, sizeof(*b->cptrs));
	if (!b->clients || !b->cptrs)
		return -ENOMEM;
	LIST_FOREACH(c, &d->clients, link)
	{
		Shiftadd__ClientInfo *ci;
		struct sched_client_stats cs = { 0 }, co = { 0 };

		if ((c->state != CLIENT_READY && c->state != CLIENT_ADMIN) || n > d->n_clients)
			continue;
		ci = &b->clients[n];
		shiftadd__client_info__init(ci);
		ci->client_id = c->id;
		ci->pid = (uint32_t)c->cred.pid;
		ci->uid = c->cred.uid;
		ci->gid = c->cred.gid;
		ci->name = c->name;
		ci->admin = c->state == CLIENT_ADMIN;
		if (c->sc)
			sched_client_stats(c->sc, &cs);
		if (c->sc_old)
			sched_client_stats(c->sc_old, &co);
		ci->in_flight = cs.n_live + co.n_live;
		ci->tokens_generated = c->tokens_base + cs.tokens_generated + co.tokens_generated;
		ci->requests_done = c->requests_base + cs.requests_done + co.requests_done;
		ci->connected_ns = now - c->t_connect_ns;
		ci->blocked = c->blocked_since_ns != 0;
		b->cptrs[n++] = ci;
	}
	b->r.n_clients = n;
	b->r.clients = b->cptrs;
	return 0;
}

static struct client *find_client(struct daemon *d, uint64_t id)
{
	struct client *c;

	LIST_FOREACH(c, &d->clients, link)
	if (c->id == id && c->state == CLIENT_READY)
		return c;
	return NULL;
}

static int op_cancel(struct daemon *d, const Shiftadd__AdminRequest *req, struct reply_buf *b)
{
	struct client *c = find_client(d, req->client_id);
	uint32_t n = 0;

	if (!c) {
		snprintf(b->message, sizeof(b->message), "no client %llu",
			 (unsigned long long)req->client_id);
		return -ENOENT;
	}
	if (req->request_id == 0) {
		n = sched_cancel_client(d->sched, c->sc);
		if (c->sc_old)
			n += sched_cancel_client(d->old->sched, c->sc_old);
	} else if (sched_cancel(d->sched, c->sc, req->request_id) == 0 ||
		   (c->sc_old && sched_cancel(d->old->sched, c->sc_old, req->request_id) == 0)) {
		n = 1;
	} else {
		snprintf(b->message, sizeof(b->message),
			 "client %llu has no request %llu in flight",
			 (unsigned long long)req->client_id, (unsigned long long)req->request_id);
		return -ENOENT;
	}
	snprintf(b->message, sizeof(b->message), "cancelled %u request%s", n, n == 1 ? "" : "s");
	log_info("admin cancel client=%llu request=%llu cancelled=%u",
		 (unsigned long long)req->client_id, (unsigned long long)req->request_id, n);
	return 0;
}

/* "auto", "auto:N" or a CPU list; sets @spec (static or borrowed) and *ret_max. */
static int parse_workers(const char *s, const char **spec, uint32_t *ret_max)
{
	static int cpus[4096];
	char *end;
	unsigned long n;

	if (!strcmp(s, "auto")) {
		*spec = "auto";
		*ret_max = 0;
		return 0;
	}
	if (!strncmp(s, "auto:", 5)) {
		n = strtoul(s + 5, &end, 10);
		if (*end || n == 0 || n > 4096 || s[5] < '0' || s[5] > '9')
			return -EINVAL;
		*spec = "auto";
		*ret_max = (uint32_t)n;
		return 0;
	}
	if (strlen(s) >= CONFIG_PATH_MAX || config_parse_cpu_list(s, cpus, 4096) <= 0)
		return -EINVAL;
	*spec = s;
	*ret_max = 0;
	return 0;
}

static int op_swap(struct daemon *d, const Shiftadd__AdminRequest *req, struct reply_buf *b)
{
	struct errbuf e = { { 0 } };
	const char *workers = NULL, *model = NULL;
	uint32_t max_workers = 0;
	int ret;

	if (req->op == SHIFTADD__ADMIN_OP__ADMIN_OP_WORKERS_SET) {
		if (parse_workers(req->workers, &workers, &max_workers) < 0) {
			snprintf(b->message, sizeof(b->message),
				 "bad workers '%.64s' (auto, auto:N or a CPU list like 0-3,8)",
				 req->workers);
			return -EINVAL;
		}
	} else if (req->model[0]) {
		model = req->model;
	}
	ret = reload_swap(d, model, workers, max_workers, &e);
	if (ret == -EBUSY)
		ret = -EAGAIN;
	if (ret < 0) {
		snprintf(b->message, sizeof(b->message), "%s", errbuf_str(&e, ret));
		log_warn("admin %s failed error=\"%s\"", workers ? "workers set" : "reload",
			 errbuf_str(&e, ret));
		return ret;
	}
	snprintf(
		b->message, sizeof(b->message),
		"generation %llu: model '%.100s', %u workers; %u requests finishing on the old one",
		(unsigned long long)d->generation, d->cfg.model, reload_placement(d)->n_workers,
		reload_old_live(d));
	return 0;
}

static int op_log_level(struct daemon *d, const Shiftadd__AdminRequest *req, struct reply_buf *b)
{
	const char *old = level_names[log_max_level];
	int lvl;

	if (!req->log_level[0]) {
		snprintf(b->message, sizeof(b->message), "%s", old);
		return 0;
	}
	lvl = log_level_parse(req->log_level);
	if (lvl < 0) {
		snprintf(b->message, sizeof(b->message),
			 "bad log level '%.32s' (err, warn, info or debug)", req->log_level);
		return -EINVAL;
	}
	log_max_level = (enum log_level)lvl;
	snprintf(d->cfg.log_level, sizeof(d->cfg.log_level), "%s", level_names[lvl]);
	snprintf(b->message, sizeof(b->message), "%s (was %s)", level_names[lvl], old);
	log_info("admin log level level=%s", level_names[lvl]);
	return 0;
}

static int run_op(struct client *c, const Shiftadd__AdminRequest *req, struct reply_buf *b)
{
	struct daemon *d = c->d;
	bool admin = admin_peer_allowed(&d->cfg, &c->cred);

	if (req->protocol_version != PROTOCOL_VERSION) {
		snprintf(b->message, sizeof(b->message), "unsupported protocol version %u",
			 req->protocol_version);
		return -EOPNOTSUPP;
	}
	if (req->op != SHIFTADD__ADMIN_OP__ADMIN_OP_STATUS &&
	    req->op != SHIFTADD__ADMIN_OP__ADMIN_OP_STATS && !admin) {
		snprintf(b->message, sizeof(b->message), "uid %u is not an admin (admin_uids)",
			 (unsigned)c->cred.uid);
		if (c->n_warn++ < 5)
			log_warn("admin refused pid=%d uid=%u op=%d", (int)c->cred.pid,
				 (unsigned)c->cred.uid, (int)req->op);
		return -EPERM;
	}
	switch (req->op) {
	case SHIFTADD__ADMIN_OP__ADMIN_OP_STATUS:
		return op_status(d, b);
	case SHIFTADD__ADMIN_OP__ADMIN_OP_STATS:
		return op_stats(d, b);
	case SHIFTADD__ADMIN_OP__ADMIN_OP_CLIENTS:
		return op_clients(d, b);
	case SHIFTADD__ADMIN_OP__ADMIN_OP_CANCEL:
		return op_cancel(d, req, b);
	case SHIFTADD__ADMIN_OP__ADMIN_OP_RELOAD:
	case SHIFTADD__ADMIN_OP__ADMIN_OP_WORKERS_SET:
		return op_swap(d, req, b);
	case SHIFTADD__ADMIN_OP__ADMIN_OP_DRAIN:
		d->admin_draining = true;
		reload_drain(d);
		snprintf(b->message, sizeof(b->message), "draining: %u requests in flight",
			 reload_n_live(d));
		log_info("admin drain live_requests=%u", reload_n_live(d));
		return 0;
	case SHIFTADD__ADMIN_OP__ADMIN_OP_SHUTDOWN:
		snprintf(b->message, sizeof(b->message), "shutting down: %u requests %s",
			 reload_n_live(d), req->now ? "cancelled" : "finishing");
		uring_start_drain(d, "shiftaddctl");
		if (req->now)
			reload_cancel_all(d);
		return 0;
	case SHIFTADD__ADMIN_OP__ADMIN_OP_LOG_LEVEL:
		return op_log_level(d, req, b);
	default:
		snprintf(b->message, sizeof(b->message), "unknown operation %d", (int)req->op);
		return -EINVAL;
	}
}

/* Pack and send @r; cut the client list until it fits. */
static int send_reply(struct client *c, Shiftadd__AdminReply *r)
{
	Shiftadd__ControlMsg m = SHIFTADD__CONTROL_MSG__INIT;
	size_t len;
	uint8_t *buf;
	ssize_t n;

	m.msg_case = SHIFTADD__CONTROL_MSG__MSG_ADMIN_REPLY;
	m.admin_reply = r;
	while ((len = shiftadd__control_msg__get_packed_size(&m)) > ADMIN_REPLY_MAX &&
	       r->n_clients) {
		r->n_clients /= 2;
		r->truncated = true;
	}
	if (len > ADMIN_REPLY_MAX)
		return -EMSGSIZE;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	shiftadd__control_msg__pack(&m, buf);
	/* Never blocks: an admin that does not read its replies is dropped. */
	n = send(c->sock, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	free(buf);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EIO;
}

int admin_dispatch(struct client *c, size_t len)
{
	struct reply_buf b;
	Shiftadd__ControlMsg *m;
	int ret;

	m = shiftadd__control_msg__unpack(NULL, len, c->rx);
	if (!m)
		return c->state == CLIENT_ADMIN ? -EPROTO : 0;
	if (m->msg_case != SHIFTADD__CONTROL_MSG__MSG_ADMIN_REQUEST) {
		shiftadd__control_msg__free_unpacked(m, NULL);
		return c->state == CLIENT_ADMIN ? -EPROTO : 0;
	}
	if (c->state == CLIENT_HELLO) {
		c->state = CLIENT_ADMIN;
		c->t_connect_ns = uring_now_ns();
		snprintf(c->name, sizeof(c->name), "admin");
		log_debug("admin connected client=%llu pid=%d uid=%u", (unsigned long long)c->id,
			  (int)c->cred.pid, (unsigned)c->cred.uid);
	}
	memset(&b, 0, sizeof(b));
	shiftadd__admin_reply__init(&b.r);
	ret = run_op(c, m->admin_request, &b);
	b.r.status = status_from_errno(ret);
	b.r.message = b.message;
	shiftadd__control_msg__free_unpacked(m, NULL);
	ret = send_reply(c, &b.r);
	reply_buf_free(&b);
	return ret < 0 ? ret : 1;
}
