// SPDX-License-Identifier: MIT
/*
 * shiftadd-bench: throughput profiler for shiftaddd. Spawns client processes (each a libshiftadd
 * client keeping R streamed requests in flight), sweeps clients, concurrency and workers, and
 * reports tokens/s, requests/s, TTFT / inter-token / end-to-end latency percentiles and the
 * daemon's per-worker utilization as a table, JSON, CSV and gnuplot plots. --topology prints
 * the worker placement the daemon would choose on this or a synthetic hwloc topology.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/numa.h"
#include "include/shiftadd.h"
#include "tools/admin_client.h"
#include "tools/opt.h"
#include "tools/shiftadd-bench/load.h"
#include "tools/shiftadd-bench/report.h"
#include "tools/shiftadd-bench/stats.h"

#define MAX_SWEEP  64
#define MAX_POINTS 1024

struct bench {
	const char *socket;
	const char *prompt, *prompt_file, *output, *label, *topology;
	const char *topo_workers, *numa_policy;
	uint32_t clients, concurrency, max_tokens, rtt, max_workers, timeout_ms;
	double duration_s, warmup_s;
	uint64_t requests, weights_bytes;
	float temperature;
	bool quiet, no_plot;
	uint32_t sweep_clients[MAX_SWEEP], n_sweep_clients;
	uint32_t sweep_workers[MAX_SWEEP], n_sweep_workers;
	uint32_t sweep_conc[MAX_SWEEP], n_sweep_conc;
	struct load_prompt *prompts;
	size_t n_prompts;
	char *prompt_buf;
	int admin_fd;
};

/* clang-format off */
static const struct opt_spec opts[] = {
	{ "socket", 's', "PATH", "$SHIFTADD_SOCKET or the daemon's default", "daemon control socket" },
	{ "clients", 'c', "N", "1", "client processes" },
	{ "concurrency", 'r', "R", "1", "streamed requests each client keeps in flight" },
	{ "duration", 'd', "SECONDS", "10", "measurement window per point (after the warm-up)" },
	{ "requests", 'n', "N", "0", "measure N requests per point instead of a duration (split over clients)" },
	{ "warmup", 'w', "SECONDS", "1", "run this long before measuring each point" },
	{ "prompt", 'p', "TEXT", "Once upon a time", "prompt of every request" },
	{ "prompt-file", 'f', "FILE", NULL, "prompts, one per line, used round-robin; a line 'N<TAB>text' also sets its max tokens" },
	{ "max-tokens", 'm', "N", "32", "tokens to generate per request" },
	{ "temperature", 0, "T", "0", "sampling temperature (0: greedy)" },
	{ "sweep", 'S', "KEY=LIST", NULL, "sweep clients=1,2,4 | concurrency=1,4 | workers=1,2 (workers via 'workers set auto:N', live); repeatable, points are the product" },
	{ "output", 'o', "PREFIX", NULL, "write PREFIX.json, PREFIX.csv, PREFIX.gp and PREFIX-{throughput,latency}.{svg,png}" },
	{ "no-plot", 0, NULL, NULL, "do not run gnuplot (the .gp script is still written)" },
	{ "label", 'l', "TEXT", NULL, "free text stored in the JSON report (machine, settings)" },
	{ "rtt", 0, "N", "0", "also measure N sequential empty requests (max_tokens 1): the IPC round trip" },
	{ "timeout", 't', "MS", "30000", "a client with no progress this long fails the run" },
	{ "quiet", 'q', NULL, NULL, "no progress line" },
	{ "topology", 'T', "SYNTH", NULL, "print the placement the daemon would use on an hwloc synthetic topology ('host': this machine), then exit" },
	{ "workers", 0, "LIST", "auto", "--topology: worker CPUs (auto or a list like 0-3,8)" },
	{ "max-workers", 0, "N", "0", "--topology: cap on workers" },
	{ "numa-policy", 0, "P", "auto", "--topology: auto, replicate, interleave or local" },
	{ "weights-bytes", 0, "N", "0", "--topology: size of one copy of the weights" },
	{ "help", 'h', NULL, NULL, "this help" },
	{ NULL, 0, NULL, NULL, NULL },
};
/* clang-format on */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	interrupted = 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int parse_list(const char *s, uint32_t *out, uint32_t *n)
{
	char buf[512], *save = NULL, *tok;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	*n = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned v;

		if (*n >= MAX_SWEEP || opt_u32("sweep", tok, &v) < 0 || v == 0 || v > 100000)
			return -EINVAL;
		out[(*n)++] = v;
	}
	return *n ? 0 : -EINVAL;
}

static int parse_sweep(struct bench *b, const char *s)
{
	const char *eq = strchr(s, '=');

	if (!eq)
		return -EINVAL;
	if (!strncmp(s, "clients=", 8))
		return parse_list(eq + 1, b->sweep_clients, &b->n_sweep_clients);
	if (!strncmp(s, "workers=", 8))
		return parse_list(eq + 1, b->sweep_workers, &b->n_sweep_workers);
	if (!strncmp(s, "concurrency=", 12))
		return parse_list(eq + 1, b->sweep_conc, &b->n_sweep_conc);
	return -EINVAL;
}

static int parse_seconds(const char *name, const char *s, double *ret)
{
	char *end;

	errno = 0;
	*ret = strtod(s, &end);
	if (errno || *end || !(*ret >= 0 && *ret <= 86400)) {
		fprintf(stderr, "invalid value for --%s: '%s' (seconds)\n", name, s);
		return -EINVAL;
	}
	return 0;
}

static int load_prompts(struct bench *b)
{
	size_t cap = 0;
	char *line;

	if (!b->prompt_file) {
		b->prompts = calloc(1, sizeof(*b->prompts));
		if (!b->prompts)
			return -ENOMEM;
		b->prompts[0] = (struct load_prompt){ b->prompt, b->max_tokens };
		b->n_prompts = 1;
		return 0;
	}
	{
		FILE *f = fopen(b->prompt_file, "r");
		long len;

		if (!f)
			return -errno;
		if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) ||
		    len > (64l << 20)) {
			fclose(f);
			return -EFBIG;
		}
		b->prompt_buf = calloc(1, (size_t)len + 1);
		if (!b->prompt_buf || fread(b->prompt_buf, 1, (size_t)len, f) != (size_t)len) {
			fclose(f);
			return -EIO;
		}
		fclose(f);
	}
	for (line = strtok(b->prompt_buf, "\n"); line; line = strtok(NULL, "\n")) {
		struct load_prompt p = { line, b->max_tokens };
		char *tab = strchr(line, '\t');

		if (!*line)
			continue;
		if (tab && tab > line && strspn(line, "0123456789") == (size_t)(tab - line)) {
			*tab = 0;
			p.max_tokens = (uint32_t)strtoul(line, NULL, 10);
			p.text = tab + 1;
		}
		if (b->n_prompts == cap) {
			struct load_prompt *np;

			cap = cap ? cap * 2 : 64;
			np = realloc(b->prompts, cap * sizeof(*np));
			if (!np)
				return -ENOMEM;
			b->prompts = np;
		}
		b->prompts[b->n_prompts++] = p;
	}
	return b->n_prompts ? 0 : -ENODATA;
}

/* ---- daemon side: stats snapshots and worker changes ---- */

static int admin_op(struct bench *b, Shiftadd__AdminOp op, const char *workers,
		    struct admin_reply *rep)
{
	Shiftadd__AdminRequest req = SHIFTADD__ADMIN_REQUEST__INIT;
	int ret;

	if (b->admin_fd < 0) {
		ret = admin_connect(b->socket, &b->admin_fd);
		if (ret < 0)
			return ret;
	}
	req.op = op;
	if (workers)
		req.workers = (char *)workers;
	ret = admin_call(b->admin_fd, &req, 30000, rep);
	if (ret < 0)
		return ret;
	if (rep->r->status != SHIFTADD__STATUS__STATUS_OK) {
		fprintf(stderr, "shiftadd-bench: daemon: %s\n", rep->r->message);
		admin_reply_free(rep);
		return -EIO;
	}
	return 0;
}

struct snapshot {
	bool ok;
	uint64_t t_ns, step_busy_ns, cpu_ns;
	uint32_t n_workers;
	int cpu[REPORT_MAX_WORKERS], node[REPORT_MAX_WORKERS];
	uint64_t busy[REPORT_MAX_WORKERS];
};

static void take_snapshot(struct bench *b, struct snapshot *s)
{
	struct admin_reply rep;

	memset(s, 0, sizeof(*s));
	s->t_ns = now_ns();
	if (admin_op(b, SHIFTADD__ADMIN_OP__ADMIN_OP_STATS, NULL, &rep) < 0 || !rep.r->stats)
		return;
	s->ok = true;
	s->step_busy_ns = rep.r->stats->step_busy_ns;
	s->cpu_ns = rep.r->stats->cpu_ns;
	s->n_workers = (uint32_t)rep.r->stats->n_workers;
	if (s->n_workers > REPORT_MAX_WORKERS)
		s->n_workers = REPORT_MAX_WORKERS;
	for (uint32_t i = 0; i < s->n_workers; i++) {
		s->cpu[i] = rep.r->stats->workers[i]->cpu;
		s->node[i] = rep.r->stats->workers[i]->node;
		s->busy[i] = rep.r->stats->workers[i]->busy_ns;
	}
	admin_reply_free(&rep);
}

static int set_workers(struct bench *b, uint32_t n)
{
	struct admin_reply rep;
	char spec[32];
	int ret;

	snprintf(spec, sizeof(spec), "auto:%u", n);
	ret = admin_op(b, SHIFTADD__ADMIN_OP__ADMIN_OP_WORKERS_SET, spec, &rep);
	if (ret < 0)
		return ret;
	admin_reply_free(&rep);
	/* Wait for the previous generation to retire so both do not compete for the cores. */
	for (int i = 0; i < 3000; i++) {
		bool done;

		ret = admin_op(b, SHIFTADD__ADMIN_OP__ADMIN_OP_STATUS, NULL, &rep);
		if (ret < 0)
			return ret;
		done = rep.r->daemon && rep.r->daemon->retiring_live == 0;
		admin_reply_free(&rep);
		if (done)
			return 0;
		usleep(10000);
	}
	return -ETIMEDOUT;
}

static uint32_t current_workers(struct bench *b)
{
	struct admin_reply rep;
	uint32_t n;

	if (admin_op(b, SHIFTADD__ADMIN_OP__ADMIN_OP_STATUS, NULL, &rep) < 0)
		return 0;
	n = rep.r->daemon ? (uint32_t)rep.r->daemon->n_workers : 0;
	admin_reply_free(&rep);
	return n;
}

/* ---- one point ---- */

struct kid {
	pid_t pid;
	int fd;
	uint8_t *buf;
	size_t n, cap;
};

static int kid_read(struct kid *k)
{
	for (;;) {
		ssize_t r;

		if (k->cap - k->n < 65536) {
			size_t cap = k->cap ? k->cap * 2 : 1 << 20;
			uint8_t *nb = realloc(k->buf, cap);

			if (!nb)
				return -ENOMEM;
			k->buf = nb;
			k->cap = cap;
		}
		r = read(k->fd, k->buf + k->n, k->cap - k->n);
		if (r > 0) {
			k->n += (size_t)r;
			continue;
		}
		if (r == 0)
			return 1; /* EOF */
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	}
}

static void progress(const struct bench *b, const struct load_shared *sh, uint32_t n_clients,
		     uint64_t t0, const char *what)
{
	uint64_t tok = 0, req = 0;
	double el = (double)(now_ns() - t0) / 1e9;

	for (uint32_t i = 0; i < n_clients; i++) {
		tok += __atomic_load_n(&sh->progress[i].tokens, __ATOMIC_RELAXED);
		req += __atomic_load_n(&sh->progress[i].requests, __ATOMIC_RELAXED);
	}
	fprintf(stderr, "\r  %-28s %6.1f s  %8llu requests  %9llu tokens  %9.1f tok/s   ", what, el,
		(unsigned long long)req, (unsigned long long)tok, el > 0 ? (double)tok / el : 0);
}

static int run_point(struct bench *b, uint32_t n_clients, uint32_t conc, uint32_t workers,
		     struct report_point *pt)
{
	struct load_cfg cfg = { 0 };
	struct load_result res = { 0 };
	struct snapshot s0 = { 0 }, s1 = { 0 };
	struct load_shared *sh;
	struct kid *kids;
	size_t sh_bytes = sizeof(*sh) + n_clients * sizeof(sh->progress[0]);
	bool tty = !b->quiet && isatty(2), snap0 = false, snap1 = false;
	uint32_t open_fds, failed_kids = 0;
	uint64_t t_go, t_measure = 0, t_end = 0;
	char what[64];
	int ret = 0;

	cfg.socket = b->socket;
	cfg.prompts = b->prompts;
	cfg.n_prompts = b->n_prompts;
	cfg.concurrency = conc;
	cfg.warmup_ns = (uint64_t)(b->warmup_s * 1e9);
	cfg.duration_ns = (uint64_t)(b->duration_s * 1e9);
	cfg.temperature = b->temperature;
	cfg.timeout_ms = (int)b->timeout_ms;
	sh = mmap(NULL, sh_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	kids = calloc(n_clients, sizeof(*kids));
	if (sh == MAP_FAILED || !kids) {
		free(kids);
		return -ENOMEM;
	}
	memset(sh, 0, sh_bytes);
	fflush(NULL);
	for (uint32_t i = 0; i < n_clients; i++) {
		int p[2];

		/* Requests split as evenly as possible; early clients take the remainder. */
		cfg.requests =
			b->requests ? b->requests / n_clients + (i < b->requests % n_clients) : 0;
		if (b->requests && cfg.requests == 0)
			cfg.requests = 1;
		if (pipe2(p, O_CLOEXEC) < 0) {
			ret = -errno;
			break;
		}
		kids[i].pid = fork();
		if (kids[i].pid == 0) {
			close(p[0]);
			for (uint32_t j = 0; j < i; j++)
				close(kids[j].fd);
			signal(SIGINT, SIG_DFL);
			_exit(load_child(&cfg, i, sh, p[1]));
		}
		close(p[1]);
		if (kids[i].pid < 0) {
			ret = -errno;
			close(p[0]);
			break;
		}
		kids[i].fd = p[0];
		fcntl(kids[i].fd, F_SETFL, O_NONBLOCK);
	}
	if (ret < 0) {
		for (uint32_t i = 0; i < n_clients; i++)
			if (kids[i].pid > 0)
				kill(kids[i].pid, SIGKILL);
		goto out_wait;
	}
	/* Start together once every client is connected. */
	for (int i = 0; __atomic_load_n(&sh->n_ready, __ATOMIC_SEQ_CST) < n_clients; i++) {
		if (i > 30000 || interrupted) {
			ret = -ETIMEDOUT;
			break;
		}
		usleep(1000);
	}
	if (sh->n_failed_connect)
		ret = -ECONNREFUSED;
	t_go = now_ns();
	t_measure = t_go + cfg.warmup_ns;
	t_end = b->requests ? 0 : t_measure + cfg.duration_ns;
	__atomic_store_n(&sh->go_ns, ret < 0 ? 1 : t_go, __ATOMIC_SEQ_CST);
	snprintf(what, sizeof(what), "workers=%u clients=%u R=%u", workers, n_clients, conc);
	open_fds = n_clients;
	while (open_fds) {
		struct pollfd pfd[512];
		uint32_t map[512], np = 0;
		uint64_t t = now_ns();

		if (!snap0 && t >= t_measure) {
			take_snapshot(b, &s0);
			snap0 = true;
		}
		if (!snap1 && t_end && t >= t_end) {
			take_snapshot(b, &s1);
			snap1 = true;
		}
		for (uint32_t i = 0; i < n_clients && np < 512; i++) {
			if (kids[i].fd < 0)
				continue;
			pfd[np] = (struct pollfd){ .fd = kids[i].fd, .events = POLLIN };
			map[np++] = i;
		}
		if (poll(pfd, np, 50) < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
		for (uint32_t k = 0; k < np; k++) {
			struct kid *kd = &kids[map[k]];
			int r;

			if (!pfd[k].revents)
				continue;
			r = kid_read(kd);
			if (r != 0) {
				close(kd->fd);
				kd->fd = -1;
				open_fds--;
				if (r < 0)
					ret = r;
			}
		}
		if (interrupted) {
			for (uint32_t i = 0; i < n_clients; i++)
				kill(kids[i].pid, SIGTERM);
			ret = -EINTR;
			interrupted = 0;
		}
		if (tty)
			progress(b, sh, n_clients, t_go, what);
	}
	if (!snap0)
		take_snapshot(b, &s0);
	if (!snap1)
		take_snapshot(b, &s1);
	if (tty)
		fprintf(stderr, "\r%120s\r", "");
out_wait:
	for (uint32_t i = 0; i < n_clients; i++) {
		int st;

		if (kids[i].fd >= 0 && kids[i].pid > 0)
			close(kids[i].fd);
		if (kids[i].pid <= 0)
			continue;
		if (waitpid(kids[i].pid, &st, 0) > 0 && (!WIFEXITED(st) || WEXITSTATUS(st)))
			failed_kids++;
	}
	for (uint32_t i = 0; i < n_clients && ret == 0; i++)
		ret = load_parse(kids[i].buf, kids[i].n, &res);
	if (ret == 0 && failed_kids) {
		fprintf(stderr, "shiftadd-bench: %u client process(es) failed\n", failed_kids);
		ret = -EIO;
	}
	if (ret == 0) {
		memset(pt, 0, sizeof(*pt));
		pt->clients = n_clients;
		pt->concurrency = conc;
		pt->workers = workers;
		pt->ok = res.ok;
		pt->failed = res.failed;
		if (t_end) {
			pt->window_s = b->duration_s;
			pt->tokens = res.win_tokens;
			pt->tokens_per_s = stats_rate(res.win_tokens, t_measure, t_end);
			pt->requests_per_s = stats_rate(res.win_requests, t_measure, t_end);
		} else {
			pt->window_s = (double)(res.t_last_done - res.t_first_submit) / 1e9;
			pt->tokens = res.tokens;
			pt->tokens_per_s =
				stats_rate(res.tokens, res.t_first_submit, res.t_last_done);
			pt->requests_per_s =
				stats_rate(res.ok, res.t_first_submit, res.t_last_done);
		}
		for (size_t i = 0; i < res.ttft_ns.n; i++)
			res.ttft_ns.v[i] /= 1e6;
		for (size_t i = 0; i < res.itl_ns.n; i++)
			res.itl_ns.v[i] /= 1e6;
		for (size_t i = 0; i < res.e2e_ns.n; i++)
			res.e2e_ns.v[i] /= 1e6;
		stats_summarize(res.ttft_ns.v, res.ttft_ns.n, &pt->ttft_ms);
		stats_summarize(res.itl_ns.v, res.itl_ns.n, &pt->itl_ms);
		stats_summarize(res.e2e_ns.v, res.e2e_ns.n, &pt->e2e_ms);
		if (s0.ok && s1.ok && s0.n_workers == s1.n_workers) {
			pt->n_workers = s1.n_workers;
			for (uint32_t i = 0; i < s1.n_workers; i++) {
				pt->worker_cpu[i] = s1.cpu[i];
				pt->worker_node[i] = s1.node[i];
				pt->worker_util[i] =
					stats_utilization(s0.busy[i], s1.busy[i], s0.t_ns, s1.t_ns);
				pt->util_mean += pt->worker_util[i] / s1.n_workers;
			}
			pt->loop_busy = stats_utilization(s0.step_busy_ns, s1.step_busy_ns, s0.t_ns,
							  s1.t_ns);
			pt->daemon_cores =
				stats_rate(s1.cpu_ns - s0.cpu_ns, s0.t_ns, s1.t_ns) / 1e9;
		}
	}
	for (uint32_t i = 0; i < n_clients; i++)
		free(kids[i].buf);
	free(kids);
	munmap(sh, sh_bytes);
	load_result_done(&res);
	return ret;
}

/* ---- IPC round trip of an empty request ---- */

static int measure_rtt(struct bench *b, struct stats_summary *ret)
{
	struct shiftadd_request req = { .prompt = "a", .max_tokens = 1 };
	struct dvec v = { 0 };
	shiftadd_client *c;
	int r;

	r = shiftadd_connect(b->socket, "bench-rtt", &c);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < b->rtt + 10 && r >= 0; i++) {
		uint64_t t0 = now_ns(), id;

		r = shiftadd_submit(c, &req, NULL, NULL, &id);
		if (r < 0)
			break;
		for (;;) {
			struct shiftadd_event ev;
			bool done;

			r = shiftadd_next_event(c, &ev, 10000);
			if (r <= 0) {
				r = r ? r : -ETIMEDOUT;
				break;
			}
			done = ev.type == SHIFTADD_EVENT_DONE;
			if (done && ev.error)
				r = ev.error;
			shiftadd_event_release(&ev);
			if (done)
				break;
		}
		if (r < 0)
			break;
		/* The first 10 warm up caches and page in the rings. */
		if (i >= 10 && dvec_push(&v, (double)(now_ns() - t0) / 1e3) < 0)
			r = -ENOMEM;
	}
	shiftadd_close(c);
	if (r >= 0)
		stats_summarize(v.v, v.n, ret);
	dvec_done(&v);
	return r < 0 ? r : 0;
}

/* ---- --topology ---- */

static int run_topology(struct bench *b)
{
	static int cpus[4096];
	struct placement_req req = { 0 };
	struct placement pl = { 0 };
	struct topo *t = NULL;
	struct errbuf e = { { 0 } };
	int ret, n;

	ret = topo_load(strcmp(b->topology, "host") ? b->topology : NULL, &t, &e);
	if (ret < 0) {
		fprintf(stderr, "shiftadd-bench: topology '%s': %s\n", b->topology,
			errbuf_str(&e, ret));
		return 2;
	}
	if (strcmp(b->topo_workers, "auto")) {
		n = config_parse_cpu_list(b->topo_workers, cpus, 4096);
		if (n < 0) {
			fprintf(stderr, "shiftadd-bench: bad --workers '%s'\n", b->topo_workers);
			topo_free(t);
			return 2;
		}
		req.cpus = cpus;
		req.n_cpus = (uint32_t)n;
	}
	ret = numa_policy_parse(b->numa_policy);
	if (ret < 0) {
		fprintf(stderr, "shiftadd-bench: bad --numa-policy '%s'\n", b->numa_policy);
		topo_free(t);
		return 2;
	}
	req.policy = (enum numa_policy)ret;
	req.max_workers = b->max_workers;
	req.weights_bytes = b->weights_bytes;
	req.mem_fraction_pct = 50;
	ret = placement_plan(t, &req, &pl);
	if (ret < 0) {
		fprintf(stderr, "shiftadd-bench: no placement: %s\n", strerror(-ret));
		topo_free(t);
		return 1;
	}
	printf("topology: %s: %u cores, %u PUs, %u NUMA nodes\n", b->topology, t->n_cores, t->n_pus,
	       t->n_nodes);
	for (uint32_t i = 0; i < t->n_nodes; i++)
		printf("  node %d: %.1f GiB\n", t->node_ids[i],
		       (double)t->node_bytes[i] / (double)(1ull << 30));
	printf("placement: %u workers on %u node(s), weights %s\n", pl.n_workers, pl.n_nodes,
	       numa_policy_name(pl.weights));
	printf("  %-6s %-5s %-5s %-7s\n", "worker", "cpu", "node", "package");
	for (uint32_t i = 0; i < pl.n_workers; i++) {
		int pkg = -1;

		for (uint32_t k = 0; k < t->n_cores; k++)
			if (t->cores[k].cpu == pl.worker_cpu[i])
				pkg = t->cores[k].package;
		printf("  %-6u %-5d %-5d %-7d\n", i, pl.worker_cpu[i], pl.worker_node[i], pkg);
	}
	placement_done(&pl);
	topo_free(t);
	return 0;
}

static void usage(FILE *f)
{
	opt_usage(f, "shiftadd-bench [OPTIONS]",
		  "Measure a running shiftaddd: aggregate tokens/s, requests/s, TTFT and "
		  "inter-token latency percentiles, per-worker utilization; sweeps over clients, "
		  "concurrency and workers.",
		  opts);
	fprintf(f, "\nexit status: 0 ok, 1 a run failed (connection, failed requests), 2 usage\n");
}

static void fill_meta(struct bench *b, int argc, char **argv, struct report_meta *m, char *cmd,
		      size_t cmd_len)
{
	struct admin_reply rep;
	time_t now = time(NULL);
	size_t n = 0;

	for (int i = 0; i < argc && n + 2 < cmd_len; i++)
		n += (size_t)snprintf(cmd + n, cmd_len - n, "%s%s", i ? " " : "", argv[i]);
	m->command = cmd;
	m->label = b->label;
	gethostname(m->host, sizeof(m->host) - 1);
	strftime(m->date, sizeof(m->date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	m->commit = getenv("SHIFTADD_COMMIT") ? getenv("SHIFTADD_COMMIT") : "unknown";
	m->cpus = (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);
	if (admin_op(b, SHIFTADD__ADMIN_OP__ADMIN_OP_STATUS, NULL, &rep) == 0 && rep.r->daemon) {
		m->model = strdup(rep.r->daemon->model_name);
		m->backend = strdup(rep.r->daemon->backend);
		admin_reply_free(&rep);
	}
}

static int write_outputs(struct bench *b, struct report_meta *m, struct report_point *pts, size_t n)
{
	char path[512], csv[512];
	int ret;

	snprintf(path, sizeof(path), "%s.json", b->output);
	ret = report_write_json(path, m, pts, n);
	if (ret < 0) {
		fprintf(stderr, "shiftadd-bench: cannot write '%s': %s\n", path, strerror(-ret));
		return ret;
	}
	snprintf(csv, sizeof(csv), "%s.csv", b->output);
	ret = report_write_csv(csv, pts, n);
	if (ret < 0) {
		fprintf(stderr, "shiftadd-bench: cannot write '%s': %s\n", csv, strerror(-ret));
		return ret;
	}
	ret = report_plot(b->output, csv, pts, n, !b->no_plot);
	if (ret == -ENOENT)
		fprintf(stderr, "shiftadd-bench: gnuplot not found; run 'gnuplot %s.gp' later\n",
			b->output);
	else if (ret < 0)
		fprintf(stderr, "shiftadd-bench: gnuplot failed on '%s.gp'\n", b->output);
	fprintf(stderr, "wrote %s.json %s.csv %s.gp%s\n", b->output, b->output, b->output,
		ret == 0 ? " and plots" : "");
	return 0;
}

int main(int argc, char **argv)
{
	struct option longopts[OPT_MAX + 1];
	char shortopts[3 * OPT_MAX + 2], cmd[2048];
	struct bench b = { .clients = 1,
			   .concurrency = 1,
			   .max_tokens = 32,
			   .duration_s = 10,
			   .warmup_s = 1,
			   .prompt = "Once upon a time",
			   .timeout_ms = 30000,
			   .topo_workers = "auto",
			   .numa_policy = "auto",
			   .admin_fd = -1 };
	struct report_meta meta = { 0 };
	struct report_point *pts = NULL;
	size_t n_pts = 0;
	uint32_t one_w[1] = { 0 };
	int c, status = 0, ret;

	opt_build(opts, longopts, shortopts);
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		int i = opt_index(opts, c);
		const char *name = i >= 0 ? opts[i].name : "";
		unsigned u;
		unsigned long long ull;

		if (c == '?' || c == ':' || i < 0) {
			fprintf(stderr,
				"shiftadd-bench: bad option '%s'\nTry 'shiftadd-bench --help'.\n",
				argv[optind - 1]);
			return 2;
		}
		if (!strcmp(name, "help")) {
			usage(stdout);
			return 0;
		}
		ret = 0;
		if (!strcmp(name, "socket"))
			b.socket = optarg;
		else if (!strcmp(name, "clients"))
			ret = opt_u32(name, optarg, &b.clients);
		else if (!strcmp(name, "concurrency"))
			ret = opt_u32(name, optarg, &b.concurrency);
		else if (!strcmp(name, "duration"))
			ret = parse_seconds(name, optarg, &b.duration_s);
		else if (!strcmp(name, "requests"))
			ret = opt_u64(name, optarg, &ull), b.requests = ull;
		else if (!strcmp(name, "warmup"))
			ret = parse_seconds(name, optarg, &b.warmup_s);
		else if (!strcmp(name, "prompt"))
			b.prompt = optarg;
		else if (!strcmp(name, "prompt-file"))
			b.prompt_file = optarg;
		else if (!strcmp(name, "max-tokens"))
			ret = opt_u32(name, optarg, &b.max_tokens);
		else if (!strcmp(name, "temperature"))
			ret = opt_float(name, optarg, &b.temperature);
		else if (!strcmp(name, "sweep"))
			ret = parse_sweep(&b, optarg);
		else if (!strcmp(name, "output"))
			b.output = optarg;
		else if (!strcmp(name, "no-plot"))
			b.no_plot = true;
		else if (!strcmp(name, "label"))
			b.label = optarg;
		else if (!strcmp(name, "rtt"))
			ret = opt_u32(name, optarg, &b.rtt);
		else if (!strcmp(name, "timeout"))
			ret = opt_u32(name, optarg, &b.timeout_ms);
		else if (!strcmp(name, "quiet"))
			b.quiet = true;
		else if (!strcmp(name, "topology"))
			b.topology = optarg;
		else if (!strcmp(name, "workers"))
			b.topo_workers = optarg;
		else if (!strcmp(name, "max-workers"))
			ret = opt_u32(name, optarg, &b.max_workers);
		else if (!strcmp(name, "numa-policy"))
			b.numa_policy = optarg;
		else if (!strcmp(name, "weights-bytes"))
			ret = opt_u64(name, optarg, &ull), b.weights_bytes = ull;
		if (ret < 0) {
			fprintf(stderr, "shiftadd-bench: bad value for --%s: '%s'\n", name, optarg);
			return 2;
		}
		(void)u;
	}
	if (optind < argc) {
		fprintf(stderr, "shiftadd-bench: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (b.topology)
		return run_topology(&b);
	if (!b.clients || !b.concurrency || b.clients > 4096 || b.concurrency > 1024 ||
	    (!b.requests && b.duration_s <= 0)) {
		fprintf(stderr, "shiftadd-bench: need clients, concurrency and a duration or a "
				"request count above 0\n");
		return 2;
	}
	if (!b.n_sweep_clients) {
		b.sweep_clients[0] = b.clients;
		b.n_sweep_clients = 1;
	}
	if (!b.n_sweep_conc) {
		b.sweep_conc[0] = b.concurrency;
		b.n_sweep_conc = 1;
	}
	ret = load_prompts(&b);
	if (ret < 0) {
		fprintf(stderr, "shiftadd-bench: prompts: %s\n", strerror(-ret));
		return 2;
	}
	signal(SIGINT, on_sigint);
	signal(SIGPIPE, SIG_IGN);
	fill_meta(&b, argc, argv, &meta, cmd, sizeof(cmd));
	if (b.rtt) {
		ret = measure_rtt(&b, &meta.rtt_us);
		if (ret < 0) {
			fprintf(stderr, "shiftadd-bench: rtt: %s\n", shiftadd_strerror(ret));
			status = 1;
			goto out;
		}
		meta.have_rtt = true;
		printf("empty-request round trip (%u requests, max_tokens 1): p50 %.1f us, p90 %.1f "
		       "us, p99 %.1f us\n",
		       b.rtt, meta.rtt_us.p50, meta.rtt_us.p90, meta.rtt_us.p99);
	}
	pts = calloc(MAX_POINTS, sizeof(*pts));
	if (!pts) {
		status = 1;
		goto out;
	}
	report_print_header(stdout);
	fflush(stdout);
	{
		const uint32_t *ws = b.n_sweep_workers ? b.sweep_workers : one_w;
		uint32_t n_ws = b.n_sweep_workers ? b.n_sweep_workers : 1;

		for (uint32_t wi = 0; wi < n_ws && !status; wi++) {
			uint32_t w = ws[wi];

			if (b.n_sweep_workers) {
				ret = set_workers(&b, w);
				if (ret < 0) {
					fprintf(stderr, "shiftadd-bench: workers set auto:%u: %s\n",
						w, strerror(-ret));
					status = 1;
					break;
				}
			}
			w = current_workers(&b);
			for (uint32_t ci = 0; ci < b.n_sweep_clients && !status; ci++) {
				for (uint32_t ri = 0; ri < b.n_sweep_conc && !status; ri++) {
					if (n_pts == MAX_POINTS)
						break;
					ret = run_point(&b, b.sweep_clients[ci], b.sweep_conc[ri],
							w, &pts[n_pts]);
					if (ret < 0) {
						fprintf(stderr, "shiftadd-bench: run failed: %s\n",
							strerror(-ret));
						status = 1;
						break;
					}
					report_print_point(stdout, &pts[n_pts]);
					fflush(stdout);
					if (pts[n_pts].failed)
						status = 1;
					n_pts++;
				}
			}
		}
	}
	if (b.output && n_pts && write_outputs(&b, &meta, pts, n_pts) < 0)
		status = 1;
out:
	if (b.admin_fd >= 0)
		close(b.admin_fd);
	free(pts);
	free(b.prompts);
	free(b.prompt_buf);
	free((char *)meta.model);
	free((char *)meta.backend);
	return status;
}
