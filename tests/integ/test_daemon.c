// SPDX-License-Identifier: MIT
/*
 * End-to-end: start shiftaddd (fake backend) in a private runtime dir, drive it through
 * libshiftadd from threads and forked processes, misbehave on purpose, cancel, refuse a uid,
 * and stop it with SIGTERM. Exit 0 pass, 1 fail (also when the host has no io_uring).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "include/shiftadd.h"
#include "proto/shiftadd.pb-c.h"
#include "proto/shm_ring.h"
#include "tests/integ/harness.h"
#include "tests/lib/fake_greedy.h"

static struct harness srv;

static int setup(void **state)
{
	/* clang-format off */
	static const char *const args[] = {
		"--n-slots", "8",
		"--step-delay-us", "300",
		"--max-inflight", "16",
		"--stall-timeout-ms", "1500",
		"--log-level", "warn",
		"--max-workers", "2",
		NULL,
	};
	/* clang-format on */

	return harness_start(&srv, "integ", "[limits]\nmax_new_tokens = 256\n", args);
}

static int teardown(void **state)
{
	return harness_stop(&srv);
}

struct thr {
	shiftadd_client *c; /* shared, or NULL: connect its own */
	int idx;
	int failures;
};

static void *thread_main(void *arg)
{
	struct thr *t = arg;
	shiftadd_client *c = t->c;
	char prompt[32];

	if (!c && shiftadd_connect(srv.sock_path, "integ-thread", &c) < 0) {
		t->failures++;
		return NULL;
	}
	for (int i = 0; i < 4; i++) {
		snprintf(prompt, sizeof(prompt), "t%d-%c", t->idx, 'a' + (t->idx + i) % 26);
		if (harness_generate_check(c, prompt, 10 + (uint32_t)i, i % 2) != 0)
			t->failures++;
	}
	if (!t->c)
		shiftadd_close(c);
	return NULL;
}

static void test_threads_shared_and_own_clients(void **state)
{
	pthread_t th[16];
	struct thr t[16];
	shiftadd_client *shared;

	assert_int_equal(shiftadd_connect(srv.sock_path, "integ-shared", &shared), 0);
	for (int i = 0; i < 16; i++) {
		t[i] = (struct thr){ .c = i < 8 ? shared : NULL, .idx = i };
		assert_int_equal(pthread_create(&th[i], NULL, thread_main, &t[i]), 0);
	}
	for (int i = 0; i < 16; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].failures, 0);
	}
	shiftadd_close(shared);
}

static void test_32_processes_8_requests_each(void **state)
{
	pid_t kids[32];

	for (int p = 0; p < 32; p++) {
		kids[p] = fork();
		if (kids[p] == 0) {
			struct shiftadd_request req = { .max_tokens = 12, .stream = true };
			struct harness_gen g[8];
			uint64_t ids[8];
			shiftadd_client *c;
			char prompts[8][16], want[64];
			int bad = 0;

			if (shiftadd_connect(srv.sock_path, "integ-proc", &c) < 0)
				_exit(1);
			/* all 8 in flight at once */
			for (int i = 0; i < 8; i++) {
				snprintf(prompts[i], sizeof(prompts[i]), "p%d%c", p,
					 'a' + (p + i) % 26);
				memset(&g[i], 0, sizeof(g[i]));
				req.prompt = prompts[i];
				req.stream = i % 2;
				if (shiftadd_submit(c, &req, harness_collect, &g[i], &ids[i]) < 0)
					_exit(1);
			}
			for (int i = 0; i < 8; i++) {
				if (shiftadd_wait(c, ids[i], 30000) < 0)
					_exit(1);
				fake_greedy(prompts[i], 12, want);
				if (g[i].error || g[i].len != 12 || memcmp(g[i].text, want, 12))
					bad++;
			}
			shiftadd_close(c);
			_exit(bad ? 1 : 0);
		}
	}
	for (int p = 0; p < 32; p++) {
		int st;

		assert_int_equal(waitpid(kids[p], &st, 0), kids[p]);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
}

/* A raw connection that speaks the protocol by hand, to misbehave. */
struct raw {
	int sock, memfd, sq_efd, cq_efd;
	void *base;
	struct shm_layout l;
};

static int raw_connect(struct raw *r)
{
	Shiftadd__ControlMsg m = SHIFTADD__CONTROL_MSG__INIT, *w;
	Shiftadd__Hello h = SHIFTADD__HELLO__INIT;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	union {
		char b[CMSG_SPACE(sizeof(int) * 3)];
		struct cmsghdr align;
	} cbuf;
	uint8_t buf[4096];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[3];
	ssize_t n;

	r->sock = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	strcpy(sa.sun_path, srv.sock_path);
	if (connect(r->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	h.protocol_version = 1;
	h.client_name = "hostile";
	m.msg_case = SHIFTADD__CONTROL_MSG__MSG_HELLO;
	m.hello = &h;
	n = (ssize_t)shiftadd__control_msg__pack(&m, buf);
	if (send(r->sock, buf, (size_t)n, 0) != n)
		return -1;
	msg.msg_control = cbuf.b;
	msg.msg_controllen = sizeof(cbuf.b);
	n = recvmsg(r->sock, &msg, 0);
	if (n <= 0 || !CMSG_FIRSTHDR(&msg))
		return -1;
	memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(fds));
	r->memfd = fds[0];
	r->sq_efd = fds[1];
	r->cq_efd = fds[2];
	w = shiftadd__control_msg__unpack(NULL, (size_t)n, buf);
	if (!w || w->msg_case != SHIFTADD__CONTROL_MSG__MSG_WELCOME)
		return -1;
	shm_layout_init(&r->l, w->welcome->layout->sq_slots, w->welcome->layout->cq_slots,
			w->welcome->layout->sq_arena_bytes, w->welcome->layout->cq_arena_bytes);
	shiftadd__control_msg__free_unpacked(w, NULL);
	r->base = mmap(NULL, r->l.total_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
	return r->base == MAP_FAILED ? -1 : 0;
}

static void raw_bell(struct raw *r)
{
	uint64_t one = 1;

	(void)!write(r->sq_efd, &one, sizeof(one));
}

/* Whether the daemon closed @r's socket within @ms. */
static bool raw_dropped(struct raw *r, int ms)
{
	struct pollfd p = { r->sock, POLLIN, 0 };
	char b[16];

	return poll(&p, 1, ms) == 1 && recv(r->sock, b, sizeof(b), MSG_DONTWAIT) == 0;
}

static void raw_close(struct raw *r)
{
	munmap(r->base, r->l.total_bytes);
	close(r->sock);
	close(r->memfd);
	close(r->sq_efd);
	close(r->cq_efd);
}

static void test_hostile_clients_do_not_disturb_others(void **state)
{
	struct shiftadd_request req = { .prompt = "hostile-free",
					.max_tokens = 200,
					.stream = true };
	struct shm_ring_ctl *sq_ctl, *cq_ctl;
	struct shm_slot *slots;
	shiftadd_client *good;
	struct harness_gen g = { 0 };
	struct raw r;
	char want[256];
	uint64_t id;
	void *buf;

	assert_int_equal(shiftadd_connect(srv.sock_path, "good", &good), 0);
	assert_int_equal(shiftadd_submit(good, &req, harness_collect, &g, &id), 0);

	/* 1: tail far ahead of head -> disconnected */
	assert_int_equal(raw_connect(&r), 0);
	sq_ctl = (struct shm_ring_ctl *)((char *)r.base + r.l.sq_ctl_off);
	__atomic_store_n(&sq_ctl->tail, 1000u, __ATOMIC_RELEASE);
	raw_bell(&r);
	assert_true(raw_dropped(&r, 3000));
	raw_close(&r);

	/* 2: descriptor pointing outside the arena -> disconnected */
	assert_int_equal(raw_connect(&r), 0);
	sq_ctl = (struct shm_ring_ctl *)((char *)r.base + r.l.sq_ctl_off);
	slots = (struct shm_slot *)((char *)r.base + r.l.sq_ring_off);
	slots[0] = (struct shm_slot){ .len = 64, .off = r.l.sq_arena_bytes - 8 };
	__atomic_store_n(&sq_ctl->tail, 1u, __ATOMIC_RELEASE);
	raw_bell(&r);
	assert_true(raw_dropped(&r, 3000));
	raw_close(&r);

	/* 3: invalid protobuf -> an Error completion, the connection stays */
	{
		struct shm_prod p;
		struct shm_cons c;
		uint8_t out[4096];
		Shiftadd__ServerMsg *m;
		size_t len;
		int tries = 0;

		assert_int_equal(raw_connect(&r), 0);
		assert_int_equal(shm_prod_init(&p, r.base, &r.l, 1), 0);
		shm_cons_init(&c, r.base, &r.l, 0, (uint32_t)r.l.cq_arena_bytes);
		assert_int_equal(shm_prod_reserve(&p, 7, &buf), 0);
		memcpy(buf, "\xff\xff\xff\xff\xff\xff\xff", 7);
		shm_prod_commit(&p, 7);
		raw_bell(&r);
		while (shm_cons_peek(&c, out, sizeof(out), &len) == -EAGAIN && tries++ < 300)
			usleep(10000);
		m = shiftadd__server_msg__unpack(NULL, len, out);
		assert_non_null(m);
		assert_int_equal(m->msg_case, SHIFTADD__SERVER_MSG__MSG_ERROR);
		assert_int_equal(m->error->status, SHIFTADD__STATUS__STATUS_PROTOCOL_ERROR);
		shiftadd__server_msg__free_unpacked(m, NULL);
		assert_false(raw_dropped(&r, 50));
		shm_prod_done(&p);

		/* 4: never reads its completions -> stalled, then dropped (stall timeout 1.5 s) */
		cq_ctl = (struct shm_ring_ctl *)((char *)r.base + r.l.cq_ctl_off);
		(void)cq_ctl;
		raw_close(&r);
	}
	{
		/* 5: vanish mid-stream, in a child that is killed */
		pid_t kid = fork();

		if (kid == 0) {
			struct shiftadd_request lreq = { .prompt = "x",
							 .max_tokens = 250,
							 .stream = true };
			shiftadd_client *c;
			struct harness_gen kg = { 0 };

			if (shiftadd_connect(srv.sock_path, "vanish", &c) < 0)
				_exit(1);
			shiftadd_submit(c, &lreq, harness_collect, &kg, NULL);
			shiftadd_poll(c, 1000);
			pause();
			_exit(0);
		}
		usleep(100000);
		kill(kid, SIGKILL);
		waitpid(kid, NULL, 0);
	}
	assert_int_equal(shiftadd_wait(good, id, 30000), 0);
	fake_greedy("hostile-free", 200, want);
	assert_int_equal(g.error, 0);
	assert_int_equal(g.len, 200);
	assert_memory_equal(g.text, want, 200);
	/* the daemon still serves */
	assert_int_equal(harness_generate_check(good, "after", 20, true), 0);
	shiftadd_close(good);
}

static void test_client_that_never_reads_is_dropped(void **state)
{
	Shiftadd__ClientMsg m = SHIFTADD__CLIENT_MSG__INIT;
	Shiftadd__GenerateRequest g = SHIFTADD__GENERATE_REQUEST__INIT;
	struct shm_prod p;
	struct raw r;
	void *buf;

	assert_int_equal(raw_connect(&r), 0);
	assert_int_equal(shm_prod_init(&p, r.base, &r.l, 1), 0);
	/* 16 streamed requests of 250 tokens fill 256 completion slots without any reads */
	for (uint64_t i = 1; i <= 16; i++) {
		size_t len;

		g.request_id = i;
		g.prompt_case = SHIFTADD__GENERATE_REQUEST__PROMPT_TEXT;
		g.text = "never-read";
		g.max_tokens = 250;
		g.stream = true;
		m.msg_case = SHIFTADD__CLIENT_MSG__MSG_GENERATE;
		m.generate = &g;
		len = shiftadd__client_msg__get_packed_size(&m);
		assert_int_equal(shm_prod_reserve(&p, len, &buf), 0);
		shiftadd__client_msg__pack(&m, buf);
		shm_prod_commit(&p, len);
	}
	raw_bell(&r);
	assert_true(raw_dropped(&r, 10000));
	shm_prod_done(&p);
	raw_close(&r);
	/* and others are served */
	{
		shiftadd_client *c;

		assert_int_equal(shiftadd_connect(srv.sock_path, "after-stall", &c), 0);
		assert_int_equal(harness_generate_check(c, "ok", 10, false), 0);
		shiftadd_close(c);
	}
}

static void test_cancel(void **state)
{
	struct shiftadd_request req = { .prompt = "cancel-me", .max_tokens = 250, .stream = true };
	struct shiftadd_event ev;
	shiftadd_client *c;
	uint32_t n = 0;
	uint64_t id;
	int r;

	assert_int_equal(shiftadd_connect(srv.sock_path, "cancel", &c), 0);
	/* no callback: events come through shiftadd_next_event */
	assert_int_equal(shiftadd_submit(c, &req, NULL, NULL, &id), 0);
	for (;;) {
		r = shiftadd_next_event(c, &ev, 10000);
		assert_int_equal(r, 1);
		n += (uint32_t)ev.n_ids;
		if (ev.type == SHIFTADD_EVENT_DONE)
			break;
		if (n >= 3)
			shiftadd_cancel(c, id);
		shiftadd_event_release(&ev);
	}
	assert_int_equal(ev.finish_reason, SHIFTADD_FINISH_CANCELLED);
	assert_int_equal(ev.error, 0);
	assert_true(n < 250);
	shiftadd_event_release(&ev);
	assert_int_equal(shiftadd_cancel(c, id), -ENOENT);
	shiftadd_close(c);
}

/* CPU time (user + system, in clock ticks) the daemon has used so far, or -1. */
static long daemon_cpu_ticks(void)
{
	char path[64], buf[1024], *p;
	unsigned long ut, st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)srv.daemon_pid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	/* Fields after "(comm)": state is field 3, utime and stime are 14 and 15. */
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (long)(ut + st);
}

static void test_closed_loop_then_idle_daemon_sleeps(void **state)
{
	shiftadd_client *c;
	long t0, t1, hz = sysconf(_SC_CLK_TCK);

	/* Back-to-back requests: the client and the daemon spin for each other's messages. */
	assert_int_equal(shiftadd_connect(srv.sock_path, "closed-loop", &c), 0);
	for (int i = 0; i < 200; i++) {
		char prompt[8];

		snprintf(prompt, sizeof(prompt), "%c", 'a' + i % 26);
		assert_int_equal(harness_generate_check(c, prompt, 1 + (uint32_t)(i % 3), i % 2),
				 0);
	}
	/* Then nothing: the daemon's spin runs out and it must block in the kernel. A spinning
	 * daemon would use a whole second of CPU in the next second; a sleeping one next to none. */
	usleep(100000);
	t0 = daemon_cpu_ticks();
	usleep(1000000);
	t1 = daemon_cpu_ticks();
	assert_true(t0 >= 0 && t1 >= t0);
	assert_true((t1 - t0) * 5 < hz); /* under 0.2 s of CPU in 1 s */
	shiftadd_close(c);
}

/* An application's own poll loop on shiftadd_fd(): every event wakes it, and once everything is
 * delivered the fd goes quiet (no busy loop). */
static void test_app_poll_loop_on_fd(void **state)
{
	struct shiftadd_request req = { .prompt = "fd", .max_tokens = 20, .stream = true };
	struct harness_gen g = { 0 };
	shiftadd_client *c;
	char want[32];
	int quiet = 0;

	assert_int_equal(shiftadd_connect(srv.sock_path, "fd-loop", &c), 0);
	assert_int_equal(shiftadd_submit(c, &req, harness_collect, &g, NULL), 0);
	while (g.finish == 0) {
		struct pollfd p = { shiftadd_fd(c), POLLIN, 0 };

		/* A lost completion doorbell leaves this poll to time out. */
		assert_int_equal(poll(&p, 1, 10000), 1);
		assert_true(shiftadd_poll(c, 0) >= 0);
	}
	fake_greedy("fd", 20, want);
	assert_int_equal(g.error, 0);
	assert_int_equal(g.len, 20);
	assert_memory_equal(g.text, want, 20);
	/* A doorbell of an earlier round may still land after the last event: allow a few. */
	for (int i = 0; i < 5 && !quiet; i++) {
		struct pollfd p = { shiftadd_fd(c), POLLIN, 0 };

		assert_true(shiftadd_poll(c, 0) >= 0);
		quiet = poll(&p, 1, 200) == 0;
	}
	assert_true(quiet);
	shiftadd_close(c);
}

static void test_unlisted_uid_is_refused(void **state)
{
	pid_t kid = fork();
	int st;

	if (kid == 0) {
		shiftadd_client *c;
		int r;

		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(77);
		r = shiftadd_connect(srv.sock_path, "nobody", &c);
		_exit(r == -EPERM ? 0 : 1);
	}
	waitpid(kid, &st, 0);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) == 77)
		fail_msg("needs root to act as another uid (CI runs as root)");
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_sigterm_drains_in_flight(void **state)
{
	struct shiftadd_request req = { .max_tokens = 40, .stream = true };
	shiftadd_client *c;
	struct harness_gen g[8] = { 0 };
	uint64_t ids[8];
	char prompts[8][8], want[64];
	struct stat stt;
	int st;

	assert_int_equal(shiftadd_connect(srv.sock_path, "drain", &c), 0);
	for (int i = 0; i < 8; i++) {
		snprintf(prompts[i], sizeof(prompts[i]), "d%c", 'a' + i);
		req.prompt = prompts[i];
		assert_int_equal(shiftadd_submit(c, &req, harness_collect, &g[i], &ids[i]), 0);
	}
	shiftadd_poll(c, 1000); /* they are running */
	kill(srv.daemon_pid, SIGTERM);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(shiftadd_wait(c, ids[i], 30000), 0);
		fake_greedy(prompts[i], 40, want);
		assert_int_equal(g[i].error, 0);
		assert_int_equal(g[i].finish, SHIFTADD_FINISH_LENGTH);
		assert_int_equal(g[i].len, 40);
		assert_memory_equal(g[i].text, want, 40);
	}
	assert_int_equal(waitpid(srv.daemon_pid, &st, 0), srv.daemon_pid);
	srv.daemon_pid = -1;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(stat(srv.sock_path, &stt), -1); /* socket file removed */
	/* the client notices: a late request ends with -ECONNRESET (or is refused outright) */
	req.prompt = "late";
	memset(&g[0], 0, sizeof(g[0]));
	st = shiftadd_submit(c, &req, harness_collect, &g[0], &ids[0]);
	if (st == 0) {
		assert_int_equal(shiftadd_wait(c, ids[0], 5000), 0);
		assert_int_equal(g[0].error, -ECONNRESET);
	} else {
		assert_int_equal(st, -ENOTCONN);
	}
	assert_int_equal(shiftadd_poll(c, 100), -ENOTCONN);
	shiftadd_close(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads_shared_and_own_clients),
		cmocka_unit_test(test_32_processes_8_requests_each),
		cmocka_unit_test(test_hostile_clients_do_not_disturb_others),
		cmocka_unit_test(test_client_that_never_reads_is_dropped),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_closed_loop_then_idle_daemon_sleeps),
		cmocka_unit_test(test_app_poll_loop_on_fd),
		cmocka_unit_test(test_unlisted_uid_is_refused),
		cmocka_unit_test(test_sigterm_drains_in_flight),
	};

	if (harness_prepare("integ-daemon"))
		return 1;
	return cmocka_run_group_tests_name("integ/daemon", tests, setup, teardown) ? 1 : 0;
}
