// SPDX-License-Identifier: MIT
#include "tools/shiftadd-bench/report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* JSON has no NaN: an empty summary becomes null. */
static void add_num(cJSON *o, const char *k, double v)
{
	if (isnan(v))
		cJSON_AddNullToObject(o, k);
	else
		cJSON_AddNumberToObject(o, k, v);
}

static cJSON *summary_json(const struct stats_summary *s)
{
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	cJSON_AddNumberToObject(o, "n", (double)s->n);
	add_num(o, "min", s->min);
	add_num(o, "mean", s->mean);
	add_num(o, "p50", s->p50);
	add_num(o, "p90", s->p90);
	add_num(o, "p99", s->p99);
	add_num(o, "max", s->max);
	return o;
}

static cJSON *point_json(const struct report_point *p)
{
	cJSON *o = cJSON_CreateObject(), *w;

	if (!o)
		return NULL;
	cJSON_AddNumberToObject(o, "workers", p->workers);
	cJSON_AddNumberToObject(o, "clients", p->clients);
	cJSON_AddNumberToObject(o, "concurrency", p->concurrency);
	cJSON_AddNumberToObject(o, "in_flight", (double)p->clients * p->concurrency);
	cJSON_AddNumberToObject(o, "window_s", p->window_s);
	cJSON_AddNumberToObject(o, "requests_ok", (double)p->ok);
	cJSON_AddNumberToObject(o, "requests_failed", (double)p->failed);
	cJSON_AddNumberToObject(o, "tokens", (double)p->tokens);
	cJSON_AddNumberToObject(o, "tokens_per_s", p->tokens_per_s);
	cJSON_AddNumberToObject(o, "requests_per_s", p->requests_per_s);
	cJSON_AddItemToObject(o, "ttft_ms", summary_json(&p->ttft_ms));
	cJSON_AddItemToObject(o, "itl_ms", summary_json(&p->itl_ms));
	cJSON_AddItemToObject(o, "e2e_ms", summary_json(&p->e2e_ms));
	cJSON_AddNumberToObject(o, "worker_util_mean", p->util_mean);
	cJSON_AddNumberToObject(o, "loop_busy", p->loop_busy);
	cJSON_AddNumberToObject(o, "daemon_cores", p->daemon_cores);
	w = cJSON_AddArrayToObject(o, "worker_util");
	for (uint32_t i = 0; w && i < p->n_workers; i++) {
		cJSON *e = cJSON_CreateObject();

		if (!e)
			break;
		cJSON_AddNumberToObject(e, "cpu", p->worker_cpu[i]);
		cJSON_AddNumberToObject(e, "node", p->worker_node[i]);
		cJSON_AddNumberToObject(e, "busy", p->worker_util[i]);
		cJSON_AddItemToArray(w, e);
	}
	return o;
}

int report_write_json(const char *path, const struct report_meta *m, const struct report_point *p,
		      size_t n)
{
	cJSON *o = cJSON_CreateObject(), *a;
	char *txt;
	FILE *f;
	int ret = 0;

	if (!o)
		return -ENOMEM;
	cJSON_AddStringToObject(o, "tool", "shiftadd-bench");
	cJSON_AddStringToObject(o, "command", m->command);
	cJSON_AddStringToObject(o, "label", m->label ? m->label : "");
	cJSON_AddStringToObject(o, "host", m->host);
	cJSON_AddStringToObject(o, "date", m->date);
	cJSON_AddStringToObject(o, "commit", m->commit);
	cJSON_AddNumberToObject(o, "cpus_online", m->cpus);
	cJSON_AddStringToObject(o, "model", m->model ? m->model : "");
	cJSON_AddStringToObject(o, "backend", m->backend ? m->backend : "");
	if (m->have_rtt)
		cJSON_AddItemToObject(o, "empty_request_rtt_us", summary_json(&m->rtt_us));
	a = cJSON_AddArrayToObject(o, "points");
	for (size_t i = 0; a && i < n; i++)
		cJSON_AddItemToArray(a, point_json(&p[i]));
	txt = cJSON_Print(o);
	cJSON_Delete(o);
	if (!txt)
		return -ENOMEM;
	f = fopen(path, "w");
	if (!f) {
		ret = -errno;
	} else {
		fprintf(f, "%s\n", txt);
		if (fclose(f))
			ret = -EIO;
	}
	free(txt);
	return ret;
}

int report_write_csv(const char *path, const struct report_point *p, size_t n)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "workers,clients,concurrency,in_flight,window_s,requests_ok,requests_failed,"
		   "tokens,tokens_per_s,requests_per_s,ttft_p50_ms,ttft_p90_ms,ttft_p99_ms,"
		   "itl_p50_ms,itl_p90_ms,itl_p99_ms,e2e_p50_ms,e2e_p99_ms,worker_util_mean,"
		   "loop_busy,daemon_cores\n");
	for (size_t i = 0; i < n; i++) {
		const struct report_point *q = &p[i];

		fprintf(f,
			"%u,%u,%u,%u,%.3f,%llu,%llu,%llu,%.2f,%.3f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,"
			"%.4f,%.4f,%.4f,%.4f,%.4f\n",
			q->workers, q->clients, q->concurrency, q->clients * q->concurrency,
			q->window_s, (unsigned long long)q->ok, (unsigned long long)q->failed,
			(unsigned long long)q->tokens, q->tokens_per_s, q->requests_per_s,
			q->ttft_ms.p50, q->ttft_ms.p90, q->ttft_ms.p99, q->itl_ms.p50,
			q->itl_ms.p90, q->itl_ms.p99, q->e2e_ms.p50, q->e2e_ms.p99, q->util_mean,
			q->loop_busy, q->daemon_cores);
	}
	return fclose(f) ? -EIO : 0;
}

static void write_plots(FILE *f, const char *prefix, const char *csv, const char *term,
			const char *ext, const char *workers)
{
	fprintf(f, "set terminal %s\n", term);
	fprintf(f, "set output '%s-throughput.%s'\n", prefix, ext);
	fprintf(f, "set title 'shiftaddd aggregate throughput'\n"
		   "set xlabel 'requests in flight (clients x concurrency)'\n"
		   "set ylabel 'generated tokens / s'\nset logscale x 2\nset grid\n"
		   "set key left top\nset yrange [0:*]\n");
	fprintf(f,
		"plot for [w in '%s'] '%s' skip 1 using 4:($1==w+0 ? $9 : NaN) with linespoints "
		"lw 2 pt 7 title sprintf('%%s worker(s)', w)\n",
		workers, csv);
	fprintf(f, "set output '%s-latency.%s'\n", prefix, ext);
	fprintf(f, "set multiplot layout 1,2 title 'shiftaddd latency (client side)'\n"
		   "set title 'time to first token'\nset ylabel 'ms'\nset logscale y 10\n"
		   "set yrange [*:*]\nset key left top\n");
	fprintf(f,
		"plot for [w in '%s'] '%s' skip 1 using 4:($1==w+0 ? $11 : NaN) with linespoints "
		"lw 2 pt 7 title sprintf('p50, %%s w', w), \\\n"
		"     for [w in '%s'] '%s' skip 1 using 4:($1==w+0 ? $13 : NaN) with linespoints "
		"lw 2 pt 6 dt 2 title sprintf('p99, %%s w', w)\n",
		workers, csv, workers, csv);
	fprintf(f, "set title 'inter-token latency'\n");
	fprintf(f,
		"plot for [w in '%s'] '%s' skip 1 using 4:($1==w+0 ? $14 : NaN) with linespoints "
		"lw 2 pt 7 title sprintf('p50, %%s w', w), \\\n"
		"     for [w in '%s'] '%s' skip 1 using 4:($1==w+0 ? $16 : NaN) with linespoints "
		"lw 2 pt 6 dt 2 title sprintf('p99, %%s w', w)\n",
		workers, csv, workers, csv);
	fprintf(f, "unset multiplot\nunset logscale y\nset output\n");
}

int report_plot(const char *prefix, const char *csv_path, const struct report_point *p, size_t n,
		bool run)
{
	char gp[512], workers[512] = "", cmd[600];
	size_t len = 0;
	FILE *f;
	int st;

	/* The distinct worker counts, in sweep order: one line per count. */
	for (size_t i = 0; i < n; i++) {
		bool seen = false;

		for (size_t j = 0; j < i; j++)
			seen |= p[j].workers == p[i].workers;
		if (!seen && len + 12 < sizeof(workers))
			len += (size_t)snprintf(workers + len, sizeof(workers) - len, "%s%u",
						len ? " " : "", p[i].workers);
	}
	snprintf(gp, sizeof(gp), "%s.gp", prefix);
	f = fopen(gp, "w");
	if (!f)
		return -errno;
	fprintf(f, "# shiftadd-bench plots; rerun with: gnuplot %s\nset datafile separator ','\n",
		gp);
	write_plots(f, prefix, csv_path, "svg size 960,540 dynamic font 'sans,12'", "svg", workers);
	write_plots(f, prefix, csv_path, "pngcairo size 960,540 font 'sans,10'", "png", workers);
	if (fclose(f))
		return -EIO;
	if (!run)
		return 1;
	if (system("command -v gnuplot >/dev/null 2>&1") != 0)
		return -ENOENT;
	snprintf(cmd, sizeof(cmd), "gnuplot '%s'", gp);
	st = system(cmd);
	return st == 0 ? 0 : -EIO;
}

void report_print_header(FILE *f)
{
	fprintf(f, "%7s %7s %4s %8s %10s %8s %9s %9s %9s %9s %6s %6s %6s\n", "workers", "clients",
		"R", "requests", "tokens/s", "req/s", "ttft_p50", "ttft_p99", "itl_p50", "itl_p99",
		"wutil", "cores", "failed");
}

void report_print_point(FILE *f, const struct report_point *p)
{
	fprintf(f, "%7u %7u %4u %8llu %10.1f %8.2f %9.2f %9.2f %9.3f %9.3f %5.0f%% %6.2f %6llu\n",
		p->workers, p->clients, p->concurrency, (unsigned long long)p->ok, p->tokens_per_s,
		p->requests_per_s, p->ttft_ms.p50, p->ttft_ms.p99, p->itl_ms.p50, p->itl_ms.p99,
		100 * p->util_mean, p->daemon_cores, (unsigned long long)p->failed);
}
