/* SPDX-License-Identifier: MIT */
#ifndef TESTS_INTEG_HARNESS_H
#define TESTS_INTEG_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "include/shiftadd.h"

/* Where the integration programs find the binaries of the build they belong to. */
#define HARNESS_BIN "build/" MODE_DIR "/bin/"

/* One shiftaddd (fake backend) in a private runtime dir, for one test program. */
struct harness {
	char dir[64];
	char sock_path[128];
	char conf_path[128];
	pid_t daemon_pid; /* -1 when none runs */
};

/*
 * Make a private dir /tmp/shiftadd-@tag-XXXXXX (mode 0755: other uids must reach the socket),
 * write @conf_text to its shiftaddd.conf, start shiftaddd with --config, --socket-path and
 * @args (NULL-terminated, at most 24), and wait until its socket accepts a connection.
 * Returns 0, or -1 (the caller's CMocka setup fails). The daemon dies with the test program.
 */
int harness_start(struct harness *h, const char *tag, const char *conf_text,
		  const char *const *args);

/*
 * Call first in main(): ignore SIGPIPE (a dropped daemon must fail a test, not kill the
 * program) and probe io_uring. Returns 0, or -1 after saying on stderr why @prog cannot run
 * (the caller then fails).
 */
int harness_prepare(const char *prog);

/* Kill and reap the daemon if it runs, and remove the runtime dir. Returns 0 or -1. */
int harness_stop(struct harness *h);

/*
 * Run the build's program @prog (e.g. "shiftaddctl") with @args (NULL-terminated, at most 30)
 * as @uid (-1: ours), capturing its stdout into @out (NUL-terminated, truncated to @cap - 1).
 * Returns its exit status, 77 if the uid could not be taken, or -1 (not run, or killed).
 */
int harness_run(int uid, const char *prog, const char *const *args, char *out, size_t cap);

/* What one request delivered: its text (truncated to fit) and its DONE event. */
struct harness_gen {
	char text[512];
	size_t len;
	int error;  /* the DONE event's error: 0 or -errno */
	int finish; /* the DONE event's finish reason */
};

/* shiftadd_token_cb that appends into the struct harness_gen @arg. */
void harness_collect(const struct shiftadd_event *ev, void *arg);

/* Every token id and the DONE event of one request (filled by harness_collect_ids). */
#define HARNESS_MAX_IDS 64
struct harness_ids {
	uint32_t ids[HARNESS_MAX_IDS];
	uint32_t n_ids;
	bool overflow; /* more than HARNESS_MAX_IDS ids came */
	bool done;
	int error;
	int finish;
	uint32_t cached; /* prompt tokens the daemon reused (the DONE event's cached_tokens) */
};

/* shiftadd_token_cb that appends into the struct harness_ids @arg. */
void harness_collect_ids(const struct shiftadd_event *ev, void *arg);

/*
 * Whether @g completed without error with exactly the ids @want[@n_want], finishing by EOS
 * iff @eos (else by length); if not, says so on stderr after @what.
 */
bool harness_ids_match(const char *what, const struct harness_ids *g, const int32_t *want,
		       uint32_t n_want, bool eos);

/*
 * One greedy generation of @n tokens for @prompt on @c, compared with fake_greedy().
 * Returns 0 if it matches, the request's error, -EBADMSG on a wrong text, or a submit/wait error.
 */
int harness_generate_check(shiftadd_client *c, const char *prompt, uint32_t n, bool stream);

#endif /* TESTS_INTEG_HARNESS_H */
