// SPDX-License-Identifier: MIT
#include "tests/integ/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/fake_greedy.h"

/* Whether something accepts connections on @path yet. */
static bool socket_accepts(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	bool ok;

	strcpy(sa.sun_path, path);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

static void kill_daemon(struct harness *h)
{
	if (h->daemon_pid > 0) {
		kill(h->daemon_pid, SIGKILL);
		waitpid(h->daemon_pid, NULL, 0);
	}
	h->daemon_pid = -1;
}

/*
 * Up to 3 tries of up to 30 s each (a real model loads first, slower under ASan): a daemon that
 * never listens is killed before the next try.
 */
static int spawn_daemon(struct harness *h, const char *const *args)
{
	const char *argv[32];
	int n = 0;

	argv[n++] = "shiftaddd";
	argv[n++] = "--config";
	argv[n++] = h->conf_path;
	argv[n++] = "--socket-path";
	argv[n++] = h->sock_path;
	for (int i = 0; args[i]; i++) {
		if (n == 30)
			return -1;
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	for (int try = 0; try < 3; try++) {
		h->daemon_pid = fork();
		if (h->daemon_pid < 0)
			return -1;
		if (h->daemon_pid == 0) {
			/* never outlive a crashed test */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			execv(HARNESS_BIN "shiftaddd", (char *const *)argv);
			_exit(127);
		}
		for (int t = 0; t < 3000; t++) {
			if (socket_accepts(h->sock_path))
				return 0;
			if (waitpid(h->daemon_pid, NULL, WNOHANG) == h->daemon_pid) {
				h->daemon_pid = -1; /* it exited: try again at once */
				break;
			}
			usleep(10000);
		}
		kill_daemon(h);
	}
	return -1;
}

int harness_start(struct harness *h, const char *tag, const char *conf_text,
		  const char *const *args)
{
	int fd;

	h->daemon_pid = -1;
	snprintf(h->dir, sizeof(h->dir), "/tmp/shiftadd-%s-XXXXXX", tag);
	if (!mkdtemp(h->dir))
		return -1;
	chmod(h->dir, 0755);
	snprintf(h->sock_path, sizeof(h->sock_path), "%s/shiftaddd.sock", h->dir);
	snprintf(h->conf_path, sizeof(h->conf_path), "%s/shiftaddd.conf", h->dir);
	fd = open(h->conf_path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	dprintf(fd, "%s", conf_text);
	close(fd);
	return spawn_daemon(h, args);
}

int harness_prepare(const char *prog)
{
	struct io_uring ring;

	if (io_uring_queue_init(4, &ring, 0) < 0) {
		fprintf(stderr, "%s: no io_uring on this host: the daemon cannot run\n", prog);
		return -1;
	}
	io_uring_queue_exit(&ring);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int harness_stop(struct harness *h)
{
	char cmd[128];

	kill_daemon(h);
	if (!h->dir[0])
		return 0;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
	return system(cmd) == 0 ? 0 : -1;
}

int harness_run(int uid, const char *prog, const char *const *args, char *out, size_t cap)
{
	const char *argv[32];
	int p[2], st, n = 0;
	size_t len = 0;
	pid_t pid;

	if (cap == 0)
		return -1;
	argv[n++] = prog;
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		char path[256];

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		if (uid >= 0 && (setgid((gid_t)uid) < 0 || setuid((uid_t)uid) < 0))
			_exit(77);
		snprintf(path, sizeof(path), HARNESS_BIN "%s", prog);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		ssize_t r = read(p[0], out + len, cap - 1 - len);

		if (r <= 0)
			break;
		len += (size_t)r;
	}
	out[len] = 0;
	close(p[0]);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

void harness_collect(const struct shiftadd_event *ev, void *arg)
{
	struct harness_gen *g = arg;

	if (ev->text_len && g->len + ev->text_len < sizeof(g->text)) {
		memcpy(g->text + g->len, ev->text, ev->text_len);
		g->len += ev->text_len;
	}
	if (ev->type == SHIFTADD_EVENT_DONE) {
		g->error = ev->error;
		g->finish = (int)ev->finish_reason;
	}
}

void harness_collect_ids(const struct shiftadd_event *ev, void *arg)
{
	struct harness_ids *g = arg;

	for (size_t i = 0; i < ev->n_ids; i++) {
		if (g->n_ids == HARNESS_MAX_IDS)
			g->overflow = true;
		else
			g->ids[g->n_ids++] = ev->ids[i];
	}
	if (ev->type == SHIFTADD_EVENT_DONE) {
		g->done = true;
		g->error = ev->error;
		g->finish = (int)ev->finish_reason;
		g->cached = ev->cached_tokens;
	}
}

static bool ids_equal(const struct harness_ids *g, const int32_t *want, uint32_t n_want, bool eos)
{
	if (!g->done || g->error || g->overflow || g->n_ids != n_want)
		return false;
	if (g->finish != (eos ? SHIFTADD_FINISH_EOS : SHIFTADD_FINISH_LENGTH))
		return false;
	for (uint32_t i = 0; i < n_want; i++)
		if (g->ids[i] != (uint32_t)want[i])
			return false;
	return true;
}

bool harness_ids_match(const char *what, const struct harness_ids *g, const int32_t *want,
		       uint32_t n_want, bool eos)
{
	char a[512] = "", b[512] = "";
	size_t la = 0, lb = 0;

	if (ids_equal(g, want, n_want, eos))
		return true;
	for (uint32_t i = 0; i < g->n_ids && la < sizeof(a) - 16; i++)
		la += (size_t)snprintf(a + la, sizeof(a) - la, " %u", g->ids[i]);
	for (uint32_t i = 0; i < n_want && lb < sizeof(b) - 16; i++)
		lb += (size_t)snprintf(b + lb, sizeof(b) - lb, " %d", want[i]);
	fprintf(stderr, "%s: got [%s ] finish %d error %d, want [%s ] eos %d\n", what, a, g->finish,
		g->error, b, (int)eos);
	return false;
}

int harness_generate_check(shiftadd_client *c, const char *prompt, uint32_t n, bool stream)
{
	struct shiftadd_request req = { .prompt = prompt, .max_tokens = n, .stream = stream };
	struct harness_gen g = { 0 };
	char want[512];
	uint64_t id;
	int r;

	if (n >= sizeof(want))
		return -EINVAL;
	r = shiftadd_submit(c, &req, harness_collect, &g, &id);
	if (r < 0)
		return r;
	r = shiftadd_wait(c, id, 20000);
	if (r < 0)
		return r;
	fake_greedy(prompt, n, want);
	if (g.error)
		return g.error;
	if (g.len != strlen(want) || memcmp(g.text, want, g.len))
		return -EBADMSG;
	return 0;
}
