// SPDX-License-Identifier: MIT
#include "tools/shiftaddctl/render.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>

static void fmt_duration(char *buf, size_t len, uint64_t ns)
{
	uint64_t s = ns / 1000000000ull;

	if (s >= 86400)
		snprintf(buf, len, "%llud%02lluh%02llum", (unsigned long long)(s / 86400),
			 (unsigned long long)(s / 3600 % 24), (unsigned long long)(s / 60 % 60));
	else if (s >= 3600)
		snprintf(buf, len, "%lluh%02llum%02llus", (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60), (unsigned long long)(s % 60));
	else
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
}

static void fmt_bytes(char *buf, size_t len, uint64_t b)
{
	if (b >= (1ull << 30))
		snprintf(buf, len, "%.1f GiB", (double)b / (double)(1ull << 30));
	else
		snprintf(buf, len, "%.1f MiB", (double)b / (double)(1ull << 20));
}

static double utilization(const Shiftadd__WorkerInfo *w, uint64_t uptime_ns)
{
	return uptime_ns ? (double)w->busy_ns / (double)uptime_ns : 0.0;
}

void render_workers_text(FILE *f, const Shiftadd__DaemonStatus *s)
{
	fprintf(f, "  %-6s %-5s %-5s %12s %10s\n", "worker", "cpu", "node", "busy_s", "tasks");
	for (size_t i = 0; i < s->n_workers; i++) {
		const Shiftadd__WorkerInfo *w = s->workers[i];

		fprintf(f, "  %-6u %-5d %-5d %12.3f %10llu\n", w->index, w->cpu, w->node,
			(double)w->busy_ns / 1e9, (unsigned long long)w->tasks);
	}
}

void render_status_text(FILE *f, const Shiftadd__DaemonStatus *s)
{
	char up[32], rss[32];

	fmt_duration(up, sizeof(up), s->uptime_ns);
	fmt_bytes(rss, sizeof(rss), s->rss_bytes);
	fprintf(f, "shiftaddd %s, pid %u, up %s, generation %llu\n", s->daemon_version, s->pid, up,
		(unsigned long long)s->generation);
	fprintf(f, "model:   %s (backend %s, path '%s')\n", s->model_name, s->backend,
		s->model_path);
	fprintf(f, "         n_vocab %u, n_ctx %u, %u KV slots\n", s->n_vocab, s->n_ctx,
		s->n_slots);
	fprintf(f, "state:   %s", s->draining ? "draining" : "serving");
	if (s->retiring_live)
		fprintf(f, ", %u requests finishing on the previous generation", s->retiring_live);
	fprintf(f, "\nclients: %u\nlog:     %s\nmemory:  rss %s\n", s->n_clients, s->log_level,
		rss);
	fprintf(f, "workers: %zu (spec %s, weights %s)\n", s->n_workers, s->workers_spec,
		s->numa_policy);
	render_workers_text(f, s);
	fprintf(f, "nodes:\n");
	for (size_t i = 0; i < s->n_nodes; i++) {
		const Shiftadd__NodeInfo *n = s->nodes[i];
		char fr[32], tot[32];

		fmt_bytes(fr, sizeof(fr), n->free_bytes);
		fmt_bytes(tot, sizeof(tot), n->total_bytes);
		fprintf(f, "  node %d: %u workers, %s free of %s\n", n->node, n->n_workers, fr,
			tot);
	}
}

static cJSON *workers_json(Shiftadd__WorkerInfo **ws, size_t n, uint64_t uptime_ns)
{
	cJSON *a = cJSON_CreateArray();

	for (size_t i = 0; a && i < n; i++) {
		cJSON *o = cJSON_CreateObject();

		if (!o)
			break;
		cJSON_AddNumberToObject(o, "index", ws[i]->index);
		cJSON_AddNumberToObject(o, "cpu", ws[i]->cpu);
		cJSON_AddNumberToObject(o, "node", ws[i]->node);
		cJSON_AddNumberToObject(o, "busy_ns", (double)ws[i]->busy_ns);
		cJSON_AddNumberToObject(o, "tasks", (double)ws[i]->tasks);
		if (uptime_ns)
			cJSON_AddNumberToObject(o, "busy_fraction", utilization(ws[i], uptime_ns));
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

static int print_json(FILE *f, cJSON *o)
{
	char *txt = o ? cJSON_Print(o) : NULL;

	cJSON_Delete(o);
	if (!txt)
		return -ENOMEM;
	fprintf(f, "%s\n", txt);
	free(txt);
	return 0;
}

int render_status_json(FILE *f, const Shiftadd__DaemonStatus *s)
{
	cJSON *o = cJSON_CreateObject(), *nodes;

	if (!o)
		return -ENOMEM;
	cJSON_AddStringToObject(o, "daemon_version", s->daemon_version);
	cJSON_AddNumberToObject(o, "pid", s->pid);
	cJSON_AddNumberToObject(o, "uptime_s", (double)s->uptime_ns / 1e9);
	cJSON_AddNumberToObject(o, "generation", (double)s->generation);
	cJSON_AddStringToObject(o, "backend", s->backend);
	cJSON_AddStringToObject(o, "model_path", s->model_path);
	cJSON_AddStringToObject(o, "model_name", s->model_name);
	cJSON_AddNumberToObject(o, "n_vocab", s->n_vocab);
	cJSON_AddNumberToObject(o, "n_ctx", s->n_ctx);
	cJSON_AddNumberToObject(o, "n_slots", s->n_slots);
	cJSON_AddBoolToObject(o, "draining", s->draining);
	cJSON_AddNumberToObject(o, "retiring_live", s->retiring_live);
	cJSON_AddNumberToObject(o, "n_clients", s->n_clients);
	cJSON_AddStringToObject(o, "log_level", s->log_level);
	cJSON_AddNumberToObject(o, "rss_bytes", (double)s->rss_bytes);
	cJSON_AddStringToObject(o, "workers_spec", s->workers_spec);
	cJSON_AddStringToObject(o, "numa_policy", s->numa_policy);
	cJSON_AddItemToObject(o, "workers", workers_json(s->workers, s->n_workers, 0));
	nodes = cJSON_AddArrayToObject(o, "nodes");
	for (size_t i = 0; nodes && i < s->n_nodes; i++) {
		cJSON *n = cJSON_CreateObject();

		if (!n)
			break;
		cJSON_AddNumberToObject(n, "node", s->nodes[i]->node);
		cJSON_AddNumberToObject(n, "n_workers", s->nodes[i]->n_workers);
		cJSON_AddNumberToObject(n, "total_bytes", (double)s->nodes[i]->total_bytes);
		cJSON_AddNumberToObject(n, "free_bytes", (double)s->nodes[i]->free_bytes);
		cJSON_AddItemToArray(nodes, n);
	}
	return print_json(f, o);
}

void render_stats_text(FILE *f, const Shiftadd__DaemonStats *s)
{
	char up[32];

	fmt_duration(up, sizeof(up), s->uptime_ns);
	fprintf(f, "uptime:     %s (generation %llu)\n", up, (unsigned long long)s->generation);
	fprintf(f, "requests:   %llu done, %llu refused, %u live (%u active, %u waiting)\n",
		(unsigned long long)s->requests_done, (unsigned long long)s->requests_refused,
		s->n_live, s->n_active, s->n_waiting);
	fprintf(f, "tokens:     %llu generated, %llu prefilled, %llu cached, %llu steps\n",
		(unsigned long long)s->tokens_generated, (unsigned long long)s->tokens_prefilled,
		(unsigned long long)s->tokens_cached, (unsigned long long)s->steps);
	fprintf(f, "clients:    %u connected, %llu accepted, %llu refused\n", s->n_clients,
		(unsigned long long)s->clients_accepted, (unsigned long long)s->clients_refused);
	fprintf(f, "kv cache:   %u of %u slots, %llu of %llu positions (%.1f%%)\n", s->n_active,
		s->kv_slots_total, (unsigned long long)s->kv_tokens,
		(unsigned long long)s->kv_tokens_total,
		s->kv_tokens_total ? 100.0 * (double)s->kv_tokens / (double)s->kv_tokens_total
				   : 0.0);
	fprintf(f, "loop:       %.3f s in scheduler steps (%.1f%% of uptime)\n",
		(double)s->step_busy_ns / 1e9,
		s->uptime_ns ? 100.0 * (double)s->step_busy_ns / (double)s->uptime_ns : 0.0);
	fprintf(f, "cpu:        %.3f s in all daemon threads (%.2f cores on average)\n",
		(double)s->cpu_ns / 1e9,
		s->uptime_ns ? (double)s->cpu_ns / (double)s->uptime_ns : 0.0);
	fprintf(f, "workers:\n  %-6s %-5s %-5s %12s %8s %10s\n", "worker", "cpu", "node", "busy_s",
		"busy_%", "tasks");
	for (size_t i = 0; i < s->n_workers; i++) {
		const Shiftadd__WorkerInfo *w = s->workers[i];

		fprintf(f, "  %-6u %-5d %-5d %12.3f %8.1f %10llu\n", w->index, w->cpu, w->node,
			(double)w->busy_ns / 1e9, 100.0 * utilization(w, s->uptime_ns),
			(unsigned long long)w->tasks);
	}
}

int render_stats_json(FILE *f, const Shiftadd__DaemonStats *s)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return -ENOMEM;
	cJSON_AddNumberToObject(o, "uptime_s", (double)s->uptime_ns / 1e9);
	cJSON_AddNumberToObject(o, "generation", (double)s->generation);
	cJSON_AddNumberToObject(o, "requests_done", (double)s->requests_done);
	cJSON_AddNumberToObject(o, "requests_refused", (double)s->requests_refused);
	cJSON_AddNumberToObject(o, "tokens_generated", (double)s->tokens_generated);
	cJSON_AddNumberToObject(o, "tokens_prefilled", (double)s->tokens_prefilled);
	cJSON_AddNumberToObject(o, "tokens_cached", (double)s->tokens_cached);
	cJSON_AddNumberToObject(o, "steps", (double)s->steps);
	cJSON_AddNumberToObject(o, "step_busy_ns", (double)s->step_busy_ns);
	cJSON_AddNumberToObject(o, "cpu_ns", (double)s->cpu_ns);
	cJSON_AddNumberToObject(o, "n_live", s->n_live);
	cJSON_AddNumberToObject(o, "n_active", s->n_active);
	cJSON_AddNumberToObject(o, "n_waiting", s->n_waiting);
	cJSON_AddNumberToObject(o, "n_clients", s->n_clients);
	cJSON_AddNumberToObject(o, "clients_accepted", (double)s->clients_accepted);
	cJSON_AddNumberToObject(o, "clients_refused", (double)s->clients_refused);
	cJSON_AddNumberToObject(o, "kv_slots_total", s->kv_slots_total);
	cJSON_AddNumberToObject(o, "kv_tokens", (double)s->kv_tokens);
	cJSON_AddNumberToObject(o, "kv_tokens_total", (double)s->kv_tokens_total);
	cJSON_AddItemToObject(o, "workers", workers_json(s->workers, s->n_workers, s->uptime_ns));
	return print_json(f, o);
}

static void prom_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP shiftadd_%s %s\n# TYPE shiftadd_%s %s\n", name, help, name, type);
}

static void prom(FILE *f, const char *name, const char *type, const char *help, double v)
{
	prom_head(f, name, type, help);
	fprintf(f, "shiftadd_%s %.10g\n", name, v);
}

void render_stats_prometheus(FILE *f, const Shiftadd__DaemonStats *s)
{
	prom(f, "uptime_seconds", "gauge", "Seconds since the daemon started.",
	     (double)s->uptime_ns / 1e9);
	prom(f, "generation", "gauge", "Model generation (1 + reloads and worker changes).",
	     (double)s->generation);
	prom(f, "requests_total", "counter", "Requests answered.", (double)s->requests_done);
	prom(f, "requests_refused_total", "counter", "Requests refused with an error.",
	     (double)s->requests_refused);
	prom(f, "tokens_generated_total", "counter", "Tokens generated.",
	     (double)s->tokens_generated);
	prom(f, "tokens_prefilled_total", "counter", "Prompt tokens processed.",
	     (double)s->tokens_prefilled);
	prom(f, "tokens_cached_total", "counter",
	     "Prompt tokens taken from reused KV slots instead of prefilled.",
	     (double)s->tokens_cached);
	prom(f, "steps_total", "counter", "Scheduler steps (batched forward passes).",
	     (double)s->steps);
	prom(f, "step_busy_seconds_total", "counter", "Loop thread time inside scheduler steps.",
	     (double)s->step_busy_ns / 1e9);
	prom(f, "cpu_seconds_total", "counter", "CPU time of the daemon process, all threads.",
	     (double)s->cpu_ns / 1e9);
	prom(f, "requests_live", "gauge", "Requests admitted and not yet answered.", s->n_live);
	prom(f, "requests_active", "gauge", "Requests holding a KV slot.", s->n_active);
	prom(f, "requests_waiting", "gauge", "Requests queued for a KV slot.", s->n_waiting);
	prom(f, "clients", "gauge", "Connected clients (admin connections included).",
	     s->n_clients);
	prom(f, "clients_accepted_total", "counter", "Client connections accepted.",
	     (double)s->clients_accepted);
	prom(f, "clients_refused_total", "counter", "Client connections refused (credentials).",
	     (double)s->clients_refused);
	prom(f, "kv_slots", "gauge", "KV cache slots.", s->kv_slots_total);
	prom(f, "kv_slots_used", "gauge", "KV cache slots in use.", s->n_active);
	prom(f, "kv_positions", "gauge", "KV cache positions (slots x n_ctx).",
	     (double)s->kv_tokens_total);
	prom(f, "kv_positions_used", "gauge", "KV cache positions held by active sequences.",
	     (double)s->kv_tokens);
	prom_head(f, "worker_busy_seconds_total", "counter",
		  "Worker time inside tasks since its pool started.");
	for (size_t i = 0; i < s->n_workers; i++)
		fprintf(f,
			"shiftadd_worker_busy_seconds_total{worker=\"%u\",cpu=\"%d\",node=\"%d\"} %.9f\n",
			s->workers[i]->index, s->workers[i]->cpu, s->workers[i]->node,
			(double)s->workers[i]->busy_ns / 1e9);
	prom_head(f, "worker_tasks_total", "counter", "Tasks run by each worker.");
	for (size_t i = 0; i < s->n_workers; i++)
		fprintf(f,
			"shiftadd_worker_tasks_total{worker=\"%u\",cpu=\"%d\",node=\"%d\"} %llu\n",
			s->workers[i]->index, s->workers[i]->cpu, s->workers[i]->node,
			(unsigned long long)s->workers[i]->tasks);
}

void render_clients_text(FILE *f, const Shiftadd__AdminReply *r)
{
	fprintf(f, "%-8s %-8s %-6s %-6s %-6s %9s %10s %9s %9s %s\n", "CLIENT", "PID", "UID", "GID",
		"KIND", "IN_FLIGHT", "TOKENS", "REQUESTS", "AGE_S", "NAME");
	for (size_t i = 0; i < r->n_clients; i++) {
		const Shiftadd__ClientInfo *c = r->clients[i];

		fprintf(f, "%-8llu %-8u %-6u %-6u %-6s %9u %10llu %9llu %9.1f %s%s\n",
			(unsigned long long)c->client_id, c->pid, c->uid, c->gid,
			c->admin ? "admin" : "rings", c->in_flight,
			(unsigned long long)c->tokens_generated,
			(unsigned long long)c->requests_done, (double)c->connected_ns / 1e9,
			c->name, c->blocked ? " (blocked)" : "");
	}
	if (r->truncated)
		fprintf(f, "(list truncated)\n");
}

int render_clients_json(FILE *f, const Shiftadd__AdminReply *r)
{
	cJSON *o = cJSON_CreateObject(), *a;

	if (!o)
		return -ENOMEM;
	cJSON_AddBoolToObject(o, "truncated", r->truncated);
	a = cJSON_AddArrayToObject(o, "clients");
	for (size_t i = 0; a && i < r->n_clients; i++) {
		const Shiftadd__ClientInfo *c = r->clients[i];
		cJSON *e = cJSON_CreateObject();

		if (!e)
			break;
		cJSON_AddNumberToObject(e, "client_id", (double)c->client_id);
		cJSON_AddNumberToObject(e, "pid", c->pid);
		cJSON_AddNumberToObject(e, "uid", c->uid);
		cJSON_AddNumberToObject(e, "gid", c->gid);
		cJSON_AddStringToObject(e, "name", c->name);
		cJSON_AddBoolToObject(e, "admin", c->admin);
		cJSON_AddNumberToObject(e, "in_flight", c->in_flight);
		cJSON_AddNumberToObject(e, "tokens_generated", (double)c->tokens_generated);
		cJSON_AddNumberToObject(e, "requests_done", (double)c->requests_done);
		cJSON_AddNumberToObject(e, "connected_s", (double)c->connected_ns / 1e9);
		cJSON_AddBoolToObject(e, "blocked", c->blocked);
		cJSON_AddItemToArray(a, e);
	}
	return print_json(f, o);
}
