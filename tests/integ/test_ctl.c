// SPDX-License-Identifier: MIT
/*
 * shiftaddctl and shiftadd-bench end to end: start shiftaddd (fake backend) in a private
 * runtime dir, run every shiftaddctl command as a separate process (exit codes and output are
 * the interface), refuse a non-admin uid, hot-reload and change workers under load without a
 * failed request or a dropped connection, run a short profiler sweep, drain and shut down.
 * Exit 0 pass, 1 fail (also when the host has no io_uring).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "include/shiftadd.h"
#include "tests/integ/harness.h"
#include "tests/lib/fake_greedy.h"

#define OUT_MAX	    (256 * 1024)
#define GUEST_UID   65534 /* allowed to connect, not an admin */
#define STRANGER_ID 65533 /* not allowed at all */

static struct harness srv;
static char out[OUT_MAX];

static int run_as(int uid, const char *prog, const char *const *args)
{
	return harness_run(uid, prog, args, out, sizeof(out));
}

#define CTL(...) \
	run_as(-1, "shiftaddctl", (const char *const[]){ "-s", srv.sock_path, __VA_ARGS__, NULL })
#define CTL_AS(uid, ...) \
	run_as(uid, "shiftaddctl", (const char *const[]){ "-s", srv.sock_path, __VA_ARGS__, NULL })

static cJSON *ctl_json(const char *cmd)
{
	cJSON *j;

	assert_int_equal(CTL(cmd, "--json"), 0);
	j = cJSON_Parse(out);
	assert_non_null(j);
	return j;
}

static double json_num(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

static int setup(void **state)
{
	/* clang-format off */
	static const char *const args[] = {
		"--n-slots", "8",
		"--step-delay-us", "300",
		"--log-level", "warn",
		"--max-workers", "2",
		NULL,
	};
	/* clang-format on */
	char conf[256];

	/*
	 * A completion ring far smaller than a 250-token stream: the tests that leave a request
	 * in flight by not reading (cancel, hot reload) rely on back-pressure, not on timing
	 * (with the default 256 slots the whole stream fit and a fast daemon finished it first).
	 */
	snprintf(conf, sizeof(conf),
		 "[server]\nallow_uids = %d\nstall_timeout_ms = 60000\n"
		 "[limits]\nmax_new_tokens = 256\ncq_slots = 32\n",
		 GUEST_UID);
	return harness_start(&srv, "ctl", conf, args);
}

static int teardown(void **state)
{
	return harness_stop(&srv);
}

static void test_help_and_usage_errors(void **state)
{
	assert_int_equal(run_as(-1, "shiftaddctl", (const char *const[]){ "--help", NULL }), 0);
	assert_non_null(strstr(out, "reload"));
	assert_non_null(strstr(out, "exit status"));
	assert_int_equal(CTL("cancel", "--help"), 0);
	assert_non_null(strstr(out, "CLIENT[:REQUEST]"));
	assert_int_equal(CTL("frobnicate"), 2);
	assert_int_equal(CTL("cancel"), 2);
	assert_int_equal(CTL("cancel", "x:y"), 2);
	assert_int_equal(CTL("stats", "--json", "--prometheus"), 2);
	assert_int_equal(
		run_as(-1, "shiftaddctl",
		       (const char *const[]){ "-s", "/nonexistent/s.sock", "status", NULL }),
		3);
	assert_int_equal(run_as(-1, "shiftadd-bench", (const char *const[]){ "--help", NULL }), 0);
	assert_non_null(strstr(out, "--sweep"));
}

static void test_status(void **state)
{
	const cJSON *w, *nodes;
	cJSON *j;

	assert_int_equal(CTL("status"), 0);
	assert_non_null(strstr(out, "fake-bytes"));
	assert_non_null(strstr(out, "workers:"));
	j = ctl_json("status");
	assert_string_equal(cJSON_GetObjectItem(j, "backend")->valuestring, "fake");
	assert_int_equal((int)json_num(j, "pid"), srv.daemon_pid);
	assert_true(json_num(j, "generation") >= 1);
	w = cJSON_GetObjectItem(j, "workers");
	assert_true(cJSON_IsArray(w) && cJSON_GetArraySize(w) >= 1 && cJSON_GetArraySize(w) <= 2);
	assert_true(json_num(cJSON_GetArrayItem(w, 0), "cpu") >= 0);
	nodes = cJSON_GetObjectItem(j, "nodes");
	assert_true(cJSON_IsArray(nodes) && cJSON_GetArraySize(nodes) >= 1);
	cJSON_Delete(j);
	assert_int_equal(CTL("workers"), 0);
	assert_non_null(strstr(out, "worker"));
}

static void test_stats_text_json_prometheus(void **state)
{
	shiftadd_client *c;
	cJSON *j;
	char *line, *save = NULL;
	int n_samples = 0;

	assert_int_equal(shiftadd_connect(srv.sock_path, "ctl-stats", &c), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(harness_generate_check(c, "stats-a", 8, i % 2), 0);
	shiftadd_close(c);
	assert_int_equal(CTL("stats"), 0);
	assert_non_null(strstr(out, "kv cache:"));
	j = ctl_json("stats");
	assert_true(json_num(j, "tokens_generated") >= 24);
	assert_true(json_num(j, "requests_done") >= 3);
	assert_true(json_num(j, "steps") >= 8);
	assert_int_equal((int)json_num(j, "kv_slots_total"), 8);
	assert_true(cJSON_IsArray(cJSON_GetObjectItem(j, "workers")));
	cJSON_Delete(j);
	assert_int_equal(CTL("stats", "--prometheus"), 0);
	assert_non_null(strstr(out, "# TYPE shiftadd_requests_total counter\n"));
	assert_non_null(strstr(out, "shiftadd_worker_busy_seconds_total{worker=\"0\","));
	/* Every sample line: name, optional {labels}, one space, a number. */
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *sp, *end;

		if (line[0] == '#')
			continue;
		assert_true(strncmp(line, "shiftadd_", 9) == 0);
		sp = strrchr(line, ' ');
		assert_non_null(sp);
		strtod(sp + 1, &end);
		assert_true(end != sp + 1 && *end == 0);
		n_samples++;
	}
	assert_true(n_samples >= 18);
}

/* 120 tokens (the fake tokenizer is byte-level): one prefill chunk */
#define BURST_PROMPT                                                       \
	"You are a helpful assistant. Answer briefly and in plain words. " \
	"The user asks: why does the sky look blue on a clear day"
#define BURST_N 8 /* clients, as many as the daemon's slots */

struct burst {
	pthread_barrier_t *go;
	int idx, result;
};

static void *burst_main(void *arg)
{
	struct burst *b = arg;
	shiftadd_client *c;

	b->result = shiftadd_connect(srv.sock_path, "ctl-burst", &c);
	pthread_barrier_wait(b->go);
	if (b->result < 0)
		return NULL;
	b->result = harness_generate_check(c, BURST_PROMPT, 20, b->idx % 2);
	shiftadd_close(c);
	return NULL;
}

/*
 * Eight clients of one uid send the same prompt at once: the daemon computes it about once
 * (the others copy it from the slot that computes it, busy at the time) instead of eight
 * times, and every answer is still the fake model's.
 */
static void test_burst_of_identical_prompts_computes_it_once(void **state)
{
	double prefilled, cached;
	pthread_barrier_t go;
	pthread_t th[BURST_N];
	struct burst b[BURST_N];
	cJSON *j;

	assert_int_equal(strlen(BURST_PROMPT), 120);
	j = ctl_json("stats");
	prefilled = json_num(j, "tokens_prefilled");
	cached = json_num(j, "tokens_cached");
	cJSON_Delete(j);
	assert_int_equal(pthread_barrier_init(&go, NULL, BURST_N), 0);
	for (int i = 0; i < BURST_N; i++) {
		b[i] = (struct burst){ .go = &go, .idx = i };
		assert_int_equal(pthread_create(&th[i], NULL, burst_main, &b[i]), 0);
	}
	for (int i = 0; i < BURST_N; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(b[i].result, 0);
	}
	pthread_barrier_destroy(&go);
	j = ctl_json("stats");
	prefilled = json_num(j, "tokens_prefilled") - prefilled;
	cached = json_num(j, "tokens_cached") - cached;
	cJSON_Delete(j);
	printf("burst: %.0f prompt tokens computed, %.0f copied\n", prefilled, cached);
	assert_true(prefilled + cached == BURST_N * 120);
	/* ideally 120 + 7 (each other request computes its last token); never 8 x 120 */
	assert_true(prefilled <= 2 * 120 + BURST_N);
}

static void test_clients_and_cancel(void **state)
{
	struct shiftadd_request req = { .prompt = "cancel-me", .max_tokens = 250, .stream = true };
	shiftadd_client *c;
	struct harness_gen g = { 0 };
	struct shiftadd_info info;
	const cJSON *e, *arr;
	cJSON *j;
	uint64_t id;
	char target[64];
	bool found = false;

	assert_int_equal(shiftadd_connect(srv.sock_path, "ctl-victim", &c), 0);
	assert_int_equal(shiftadd_info(c, &info), 0);
	/* Not polling: the completion ring fills and the request stays in flight. */
	assert_int_equal(shiftadd_submit(c, &req, harness_collect, &g, &id), 0);
	usleep(50000);
	assert_int_equal(CTL("clients"), 0);
	assert_non_null(strstr(out, "ctl-victim"));
	j = ctl_json("clients");
	arr = cJSON_GetObjectItem(j, "clients");
	cJSON_ArrayForEach(e, arr)
	{
		if ((uint64_t)json_num(e, "client_id") != info.client_id)
			continue;
		found = true;
		assert_int_equal((int)json_num(e, "pid"), getpid());
		assert_int_equal((int)json_num(e, "uid"), (int)getuid());
		assert_int_equal((int)json_num(e, "in_flight"), 1);
	}
	assert_true(found);
	cJSON_Delete(j);
	snprintf(target, sizeof(target), "%llu:%llu", (unsigned long long)info.client_id,
		 (unsigned long long)id);
	assert_int_equal(CTL("cancel", target), 0);
	assert_non_null(strstr(out, "cancelled 1 request"));
	assert_int_equal(shiftadd_wait(c, id, 10000), 0);
	assert_int_equal(g.finish, SHIFTADD_FINISH_CANCELLED);
	assert_true(g.len < 250);
	/* Gone now: not found (5), for the request and for an unknown client. */
	assert_int_equal(CTL("cancel", target), 5);
	assert_int_equal(CTL("cancel", "999999"), 5);
	/* CLIENT alone cancels all of its requests. */
	memset(&g, 0, sizeof(g));
	assert_int_equal(shiftadd_submit(c, &req, harness_collect, &g, &id), 0);
	usleep(20000);
	snprintf(target, sizeof(target), "%llu", (unsigned long long)info.client_id);
	assert_int_equal(CTL("cancel", target), 0);
	assert_int_equal(shiftadd_wait(c, id, 10000), 0);
	assert_int_equal(g.finish, SHIFTADD_FINISH_CANCELLED);
	shiftadd_close(c);
}

static void test_log_level(void **state)
{
	assert_int_equal(CTL("log-level", "debug"), 0);
	assert_string_equal(out, "debug (was warn)\n");
	assert_int_equal(CTL("log-level"), 0);
	assert_string_equal(out, "debug\n");
	assert_int_equal(CTL("log-level", "loud"), 1);
	assert_int_equal(CTL("log-level", "warn"), 0);
}

static void test_non_admin_uid_is_refused(void **state)
{
	int r = CTL_AS(GUEST_UID, "status");

	if (r == 77)
		fail_msg("needs root to act as another uid (CI runs as root)");
	/* Allowed to connect: read-only commands work, admin ones are refused with 4. */
	assert_int_equal(r, 0);
	assert_int_equal(CTL_AS(GUEST_UID, "stats", "--json"), 0);
	assert_int_equal(CTL_AS(GUEST_UID, "clients"), 4);
	assert_int_equal(CTL_AS(GUEST_UID, "shutdown"), 4);
	assert_int_equal(CTL_AS(GUEST_UID, "reload"), 4);
	assert_int_equal(CTL_AS(GUEST_UID, "workers", "set", "auto"), 4);
	assert_int_equal(CTL_AS(GUEST_UID, "log-level", "debug"), 4);
	assert_int_equal(CTL_AS(GUEST_UID, "drain"), 4);
	assert_int_equal(CTL_AS(GUEST_UID, "cancel", "1"), 4);
	/* Not allowed to connect at all: refused on every command. */
	assert_int_equal(CTL_AS(STRANGER_ID, "status"), 4);
	/* And the daemon is still there, not draining. */
	assert_int_equal(CTL("status"), 0);
	assert_non_null(strstr(out, "serving"));
}

struct loader {
	int idx;
	bool *stop;
	int done, failures, last_error;
};

static void *loader_main(void *arg)
{
	struct loader *l = arg;
	shiftadd_client *c;
	char prompt[32];

	if (shiftadd_connect(srv.sock_path, "ctl-load", &c) < 0) {
		l->failures++;
		return NULL;
	}
	/* One connection for the whole test: a dropped client would fail every later call. */
	while (!__atomic_load_n(l->stop, __ATOMIC_SEQ_CST) || l->done < 8) {
		int r;

		snprintf(prompt, sizeof(prompt), "L%d-%c", l->idx, 'a' + (l->idx + l->done) % 26);
		r = harness_generate_check(c, prompt, 20 + (uint32_t)(l->done % 7), l->done % 2);
		if (r < 0) {
			l->failures++;
			l->last_error = r;
		}
		l->done++;
	}
	shiftadd_close(c);
	return NULL;
}

/* Until the previous generation has no request left (loaders may still have one there). */
static void wait_retired(void)
{
	for (int i = 0; i < 500; i++) {
		cJSON *j = ctl_json("status");
		int live = (int)json_num(j, "retiring_live");

		cJSON_Delete(j);
		if (live == 0)
			return;
		usleep(10000);
	}
	fail_msg("previous generation never retired");
}

static void test_hot_reload_and_workers_under_load(void **state)
{
	struct shiftadd_request sreq = { .prompt = "straggle-q",
					 .max_tokens = 256,
					 .stream = true };
	static struct harness_gen sg;
	static char want[512];
	shiftadd_client *slow;
	uint64_t sid;
	unsigned n_old = 0;
	const char *p;
	bool stop = false;
	struct loader l[4];
	pthread_t th[4];
	char model_b[160];
	cJSON *j;
	double gen0;

	j = ctl_json("status");
	gen0 = json_num(j, "generation");
	cJSON_Delete(j);
	snprintf(model_b, sizeof(model_b), "%s/model-b.gguf", srv.dir);
	for (int i = 0; i < 4; i++) {
		l[i] = (struct loader){ .idx = i, .stop = &stop };
		assert_int_equal(pthread_create(&th[i], NULL, loader_main, &l[i]), 0);
	}
	usleep(100000);
	/* A straggler that does not read: its request stays live on the old generation. */
	assert_int_equal(shiftadd_connect(srv.sock_path, "ctl-straggler", &slow), 0);
	assert_int_equal(shiftadd_submit(slow, &sreq, harness_collect, &sg, &sid), 0);
	usleep(20000);
	assert_int_equal(CTL("reload", model_b), 0);
	p = strstr(out, "; ");
	assert_non_null(p);
	assert_int_equal(sscanf(p, "; %u requests finishing", &n_old), 1);
	assert_true(n_old >= 1);
	/* One generation retires at a time: busy (6) until the straggler is done. */
	assert_int_equal(CTL("workers", "set", "auto:1"), 6);
	assert_int_equal(shiftadd_wait(slow, sid, 20000), 0);
	fake_greedy(sreq.prompt, 256, want);
	assert_int_equal(sg.error, 0);
	assert_int_equal(sg.finish, SHIFTADD_FINISH_LENGTH);
	assert_int_equal(sg.len, 256);
	assert_memory_equal(sg.text, want, 256);
	shiftadd_close(slow);
	wait_retired();
	assert_int_equal(CTL("workers", "set", "auto:1", "--wait"), 0);
	usleep(50000);
	/* A bad list is refused and changes nothing. */
	assert_int_equal(CTL("workers", "set", "100000"), 1);
	wait_retired();
	assert_int_equal(CTL("workers", "set", "auto", "--wait"), 0);
	usleep(50000);
	__atomic_store_n(&stop, true, __ATOMIC_SEQ_CST);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(l[i].last_error, 0);
		assert_int_equal(l[i].failures, 0);
		assert_true(l[i].done >= 8);
	}
	j = ctl_json("status");
	assert_int_equal((int)json_num(j, "generation"), (int)gen0 + 3);
	assert_string_equal(cJSON_GetObjectItem(j, "model_path")->valuestring, model_b);
	assert_int_equal((int)json_num(j, "retiring_live"), 0);
	cJSON_Delete(j);
}

static void test_bench_short_sweep(void **state)
{
	char prefix[128], path[160];
	const cJSON *pts, *p;
	cJSON *j;
	FILE *f;
	int lines = 0, c;
	static char buf[1 << 16];
	size_t n;

	snprintf(prefix, sizeof(prefix), "%s/bench", srv.dir);
	assert_int_equal(
		run_as(-1, "shiftadd-bench",
		       (const char *const[]){ "-s", srv.sock_path, "--sweep", "clients=1,3", "-r",
					      "2", "-n", "6", "-w", "0.1", "-m", "8", "--rtt", "20",
					      "-q", "-o", prefix, NULL }),
		0);
	snprintf(path, sizeof(path), "%s.json", prefix);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	j = cJSON_Parse(buf);
	assert_non_null(j);
	assert_true(json_num(cJSON_GetObjectItem(j, "empty_request_rtt_us"), "p50") > 0);
	pts = cJSON_GetObjectItem(j, "points");
	assert_int_equal(cJSON_GetArraySize(pts), 2);
	cJSON_ArrayForEach(p, pts)
	{
		assert_true(json_num(p, "tokens_per_s") > 0);
		assert_int_equal((int)json_num(p, "requests_failed"), 0);
		/* Count mode: exactly 6 measured requests per point, however slow the host. */
		assert_int_equal((int)json_num(p, "requests_ok"), 6);
		assert_true(json_num(cJSON_GetObjectItem(p, "ttft_ms"), "p99") >=
			    json_num(cJSON_GetObjectItem(p, "ttft_ms"), "p50"));
	}
	assert_int_equal((int)json_num(cJSON_GetArrayItem(pts, 1), "clients"), 3);
	assert_int_equal((int)json_num(cJSON_GetArrayItem(pts, 1), "in_flight"), 6);
	cJSON_Delete(j);
	snprintf(path, sizeof(path), "%s.csv", prefix);
	f = fopen(path, "r");
	assert_non_null(f);
	while ((c = fgetc(f)) != EOF)
		lines += c == '\n';
	fclose(f);
	assert_int_equal(lines, 3); /* header + 2 points */
	if (system("command -v gnuplot >/dev/null 2>&1") == 0) {
		snprintf(path, sizeof(path), "%s-throughput.svg", prefix);
		f = fopen(path, "r");
		assert_non_null(f);
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		assert_non_null(strstr(buf, "<svg"));
		snprintf(path, sizeof(path), "%s-latency.png", prefix);
		f = fopen(path, "rb");
		assert_non_null(f);
		assert_int_equal(fread(buf, 1, 8, f), 8);
		fclose(f);
		assert_memory_equal(buf, "\x89PNG\r\n\x1a\n", 8);
	}
	/* --topology on a synthetic 2 x 2 x 16 machine: one worker per core. */
	assert_int_equal(
		run_as(-1, "shiftadd-bench",
		       (const char *const[]){ "--topology", "pack:2 numa:2 core:16 pu:2", NULL }),
		0);
	assert_non_null(strstr(out, "placement: 64 workers on 4 node(s)"));
}

static void test_drain_then_shutdown(void **state)
{
	struct shiftadd_request req = { .prompt = "late", .max_tokens = 4 };
	shiftadd_client *c;
	struct harness_gen g = { 0 };
	uint64_t id;
	cJSON *j;
	int st;

	assert_int_equal(shiftadd_connect(srv.sock_path, "ctl-drain", &c), 0);
	assert_int_equal(CTL("drain", "--wait"), 0);
	assert_non_null(strstr(out, "draining"));
	assert_int_equal(shiftadd_submit(c, &req, harness_collect, &g, &id), 0);
	assert_int_equal(shiftadd_wait(c, id, 5000), 0);
	assert_int_equal(g.error, -ESHUTDOWN);
	j = ctl_json("status");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "draining")));
	cJSON_Delete(j);
	assert_int_equal(CTL("shutdown"), 0);
	assert_int_equal(waitpid(srv.daemon_pid, &st, 0), srv.daemon_pid);
	srv.daemon_pid = -1;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(CTL("status"), 3);
	shiftadd_close(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help_and_usage_errors),
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_stats_text_json_prometheus),
		cmocka_unit_test(test_burst_of_identical_prompts_computes_it_once),
		cmocka_unit_test(test_clients_and_cancel),
		cmocka_unit_test(test_log_level),
		cmocka_unit_test(test_non_admin_uid_is_refused),
		cmocka_unit_test(test_hot_reload_and_workers_under_load),
		cmocka_unit_test(test_bench_short_sweep),
		cmocka_unit_test(test_drain_then_shutdown),
	};

	if (harness_prepare("integ-ctl"))
		return 1;
	return cmocka_run_group_tests_name("integ/ctl", tests, setup, teardown) ? 1 : 0;
}
