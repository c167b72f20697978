// SPDX-License-Identifier: MIT
/*
 * The real model end to end (issue 5's acceptance): shiftaddd with --backend engine on the
 * default model (models/SmolLM2-135M-Instruct.Q4_1.gguf, fetched by `make test`), 32 client
 * processes x 8 concurrent greedy requests, every token id equal to greedy generation computed
 * here in-process through engine/ one sequence at a time; meanwhile one client is SIGKILLed
 * mid-stream, and afterwards the daemon holds no request and no KV token of it. Prompts
 * repeat, so the prompt cache (reused KV of freed slots) is part of what must match.
 * Exit 0 pass, 1 fail (also when the host has no io_uring or the model is missing).
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "engine/model.h"
#include "include/shiftadd.h"
#include "tests/integ/harness.h"
#include "tests/lib/engine_greedy.h"

#define MODEL_PATH "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define N_PROCS	   32
#define N_REQS	   8 /* per process, all in flight at once */
#define N_NEW	   6 /* tokens per request */
#define N_SLOTS	   16
#define N_CTX	   512
/* The victim's requests could not end by themselves before the check (hundreds of steps). */
#define VICTIM_REQS   4
#define VICTIM_TOKENS 480
/*
 * The daemon batches sequences (BLAS gemm over the batch) where the reference runs one
 * sequence (gemv for single tokens), so logits differ in their last bits; a prompt qualifies
 * as a fixture only when greedy never hinges on a closer call than this.
 */
#define MIN_MARGIN 0.02f

/* Short, varied prompts (plain text, code, digits, a chat turn); each appears 16 times. */
static const char *const prompts[] = {
	"The capital of France is",
	"1, 2, 3, 4,",
	"Once upon a time",
	"The quick brown fox",
	"def add(a, b):",
	"Water boils at",
	"<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
	"Monday, Tuesday,",
	"The sun rises in the",
	"import numpy as",
	"The opposite of hot is",
	"Twinkle, twinkle, little",
	"In 1492, Columbus",
	"Hello, my name is",
	"A B C D E",
	"The color of the sky is",
};

#define N_PROMPTS (sizeof(prompts) / sizeof(prompts[0]))

static struct harness srv;
static struct engine_greedy want[N_PROMPTS];
static char out[64 * 1024];

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The reference, before the daemon starts (the two models never compete for the cores). */
static int compute_reference(void)
{
	struct model_load_opts lo = { .backend = LINEAR_BACKEND_SHIFTADD }; /* as the daemon */
	struct errbuf e = { { 0 } };
	struct model *m;
	double t0 = mono_s();
	int r;

	r = model_load_ex(MODEL_PATH, &lo, &m, &e);
	if (r < 0) {
		fprintf(stderr, "cannot load %s: %s\n", MODEL_PATH, errbuf_str(&e, r));
		return -1;
	}
	for (size_t i = 0; i < N_PROMPTS && r == 0; i++) {
		r = engine_greedy(m, prompts[i], N_NEW, &want[i]);
		if (r == 0 && want[i].n_ids == 0)
			r = -EBADMSG; /* a fixture that generates nothing tests nothing */
		if (r == 0 && want[i].min_margin < MIN_MARGIN) {
			fprintf(stderr, "prompt %zu: greedy margin %g < %g, pick another prompt\n",
				i, (double)want[i].min_margin, (double)MIN_MARGIN);
			r = -EDOM;
		}
	}
	model_free(m);
	fprintf(stderr, "reference: %zu prompts x %d tokens in %.1f s\n", N_PROMPTS, N_NEW,
		mono_s() - t0);
	return r < 0 ? -1 : 0;
}

static int setup(void **state)
{
	char n_slots[16], n_ctx[16];
	/* clang-format off */
	const char *const args[] = {
		"--backend", "engine",
		"--model", MODEL_PATH,
		"--n-slots", n_slots,
		"--n-ctx", n_ctx,
		"--max-new-tokens", "500",
		"--max-prompt-tokens", "64",
		"--log-level", "warn",
		"--max-workers", "2",
		NULL,
	};
	/* clang-format on */

	if (compute_reference() < 0)
		return -1;
	snprintf(n_slots, sizeof(n_slots), "%d", N_SLOTS);
	snprintf(n_ctx, sizeof(n_ctx), "%d", N_CTX);
	return harness_start(&srv, "engine", "", args);
}

static int teardown(void **state)
{
	return harness_stop(&srv);
}

/* One client process: N_REQS requests in flight, half streamed. Exit 0 iff all match. */
static void client_main(int proc)
{
	struct shiftadd_request req = { .max_tokens = N_NEW };
	struct harness_ids g[N_REQS];
	uint64_t ids[N_REQS];
	shiftadd_client *c;
	int bad = 0;

	if (shiftadd_connect(srv.sock_path, "integ-engine", &c) < 0)
		_exit(3);
	memset(g, 0, sizeof(g));
	for (int i = 0; i < N_REQS; i++) {
		req.prompt = prompts[(size_t)(proc * N_REQS + i) % N_PROMPTS];
		req.stream = (proc + i) % 2;
		if (shiftadd_submit(c, &req, harness_collect_ids, &g[i], &ids[i]) < 0)
			_exit(3);
	}
	for (int i = 0; i < N_REQS; i++) {
		size_t pi = (size_t)(proc * N_REQS + i) % N_PROMPTS;
		char what[64];

		if (shiftadd_wait(c, ids[i], 120000) < 0)
			_exit(4);
		snprintf(what, sizeof(what), "process %d prompt %zu", proc, pi);
		if (!harness_ids_match(what, &g[i], want[pi].ids, want[pi].n_ids, want[pi].eos))
			bad++;
	}
	shiftadd_close(c);
	_exit(bad ? 1 : 0);
}

/* The client that dies: long streamed requests; says on @fd when tokens flow, then waits. */
static void victim_main(int fd)
{
	/* greedy counts on for far more than VICTIM_TOKENS tokens: no early EOS */
	struct shiftadd_request req = { .prompt = "Count from 1 to 1000: 1, 2, 3,",
					.max_tokens = VICTIM_TOKENS,
					.stream = true };
	struct harness_ids g[VICTIM_REQS];
	shiftadd_client *c;
	uint32_t seen = 0;

	if (shiftadd_connect(srv.sock_path, "integ-victim", &c) < 0)
		_exit(3);
	memset(g, 0, sizeof(g));
	for (int i = 0; i < VICTIM_REQS; i++)
		if (shiftadd_submit(c, &req, harness_collect_ids, &g[i], NULL) < 0)
			_exit(3);
	while (seen < 2) {
		if (shiftadd_poll(c, 60000) <= 0)
			_exit(4);
		seen = 0;
		for (int i = 0; i < VICTIM_REQS; i++)
			seen = g[i].n_ids > seen ? g[i].n_ids : seen;
	}
	(void)!write(fd, "x", 1);
	pause();
	_exit(0);
}

static pid_t spawn(void (*fn)(int), int arg)
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fn(arg);
		_exit(5);
	}
	return pid;
}

static double json_num(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

/* The daemon's stats (shiftaddctl stats --json) into *ret_j; caller deletes it. */
static void stats(cJSON **ret_j)
{
	const char *const args[] = { "-s", srv.sock_path, "stats", "--json", NULL };

	assert_int_equal(harness_run(-1, "shiftaddctl", args, out, sizeof(out)), 0);
	*ret_j = cJSON_Parse(out);
	assert_non_null(*ret_j);
}

static void test_32_processes_match_in_process_greedy_and_a_killed_client(void **state)
{
	pid_t kids[N_PROCS], victim;
	struct pollfd pfd;
	double t0 = mono_s(), t_kill = 0;
	int pipefd[2], st, failed = 0;
	cJSON *j = NULL;
	char x;

	assert_int_equal(pipe(pipefd), 0);
	victim = spawn(victim_main, pipefd[1]);
	assert_true(victim > 0);
	close(pipefd[1]);
	for (int p = 0; p < N_PROCS; p++) {
		kids[p] = spawn(client_main, p);
		assert_true(kids[p] > 0);
	}
	/* SIGKILL the victim while the 32 are being served. */
	pfd = (struct pollfd){ .fd = pipefd[0], .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 60000), 1);
	assert_int_equal(read(pipefd[0], &x, 1), 1);
	close(pipefd[0]);
	kill(victim, SIGKILL);
	assert_int_equal(waitpid(victim, &st, 0), victim);
	assert_true(WIFSIGNALED(st));
	t_kill = mono_s() - t0;
	for (int p = 0; p < N_PROCS; p++) {
		assert_int_equal(waitpid(kids[p], &st, 0), kids[p]);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "client process %d failed (status 0x%x)\n", p, st);
			failed++;
		}
	}
	fprintf(stderr, "%d x %d requests served in %.1f s (victim killed at %.1f s)\n", N_PROCS,
		N_REQS, mono_s() - t0, t_kill);
	assert_int_equal(failed, 0);

	/*
	 * The victim's slots are free: nothing live, no KV token held. Its requests would need
	 * VICTIM_TOKENS steps to end by themselves; allow one second for the disconnect.
	 */
	for (int tries = 0; tries < 20; tries++) {
		cJSON_Delete(j);
		stats(&j);
		if (json_num(j, "n_live") == 0 && json_num(j, "kv_tokens") == 0)
			break;
		usleep(50000);
	}
	fprintf(stderr,
		"daemon: %.0f steps, %.1f s in steps, %.0f tokens generated, %.0f prompt tokens "
		"prefilled, %.0f reused\n",
		json_num(j, "steps"), json_num(j, "step_busy_ns") / 1e9,
		json_num(j, "tokens_generated"), json_num(j, "tokens_prefilled"),
		json_num(j, "tokens_cached"));
	assert_int_equal((int)json_num(j, "n_live"), 0);
	assert_int_equal((int)json_num(j, "kv_tokens"), 0);
	assert_true(json_num(j, "requests_done") >= N_PROCS * N_REQS);
	/* each prompt is sent 16 times: later ones reuse freed slots' KV, and still match */
	assert_true(json_num(j, "tokens_cached") > 0);
	assert_true(json_num(j, "tokens_generated") <
		    N_PROCS * N_REQS * N_NEW + VICTIM_REQS * VICTIM_TOKENS);
	cJSON_Delete(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_32_processes_match_in_process_greedy_and_a_killed_client),
	};

	if (harness_prepare("integ-engine"))
		return 1;
	if (access(MODEL_PATH, R_OK) < 0) {
		fprintf(stderr, "integ-engine: %s missing: run 'make model'\n", MODEL_PATH);
		return 1;
	}
	return cmocka_run_group_tests_name("integ/engine", tests, setup, teardown) ? 1 : 0;
}
