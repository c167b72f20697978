// SPDX-License-Identifier: MIT
/*
 * sockrtt: the plain Unix-socket round trip, the baseline that bench/serve.sh prints next to
 * shiftaddd's ring round trip. Two processes ping-pong a small message over a SOCK_SEQPACKET
 * socketpair (the same socket type as the daemon's control socket), blocking recv/send, no
 * polling: each sample is one send + the peer's recv/send + our recv, i.e. two wake-ups.
 *
 * Usage: sockrtt [-n ITERATIONS] [-s BYTES] [-w WARMUP]
 * Prints one JSON object: {"n", "bytes", "p50_us", "p90_us", "p99_us", "mean_us", "min_us",
 * "max_us"}. Exit status 0 on success.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_BYTES 65536

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Echo every message back until the parent closes its end (recv returns 0). */
static int echo_loop(int fd)
{
	char buf[MAX_BYTES];

	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);

		if (r == 0)
			return 0;
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (send(fd, buf, (size_t)r, 0) != r)
			return 1;
	}
}

/* One timed ping-pong; returns the round trip in ns, or 0 on a socket error. */
static uint64_t ping(int fd, char *buf, size_t bytes)
{
	uint64_t t0 = now_ns();
	ssize_t r;

	if (send(fd, buf, bytes, 0) != (ssize_t)bytes)
		return 0;
	do
		r = recv(fd, buf, MAX_BYTES, 0);
	while (r < 0 && errno == EINTR);
	if (r != (ssize_t)bytes)
		return 0;
	return now_ns() - t0;
}

static int parse_count(const char *s, unsigned long max, unsigned long *ret)
{
	char *end;

	errno = 0;
	*ret = strtoul(s, &end, 10);
	return errno || end == s || *end || *ret == 0 || *ret > max ? -EINVAL : 0;
}

/* Percentile by nearest rank on sorted samples. */
static double pct_us(const uint64_t *v, size_t n, double p)
{
	size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);

	return (double)v[i < n ? i : n - 1] / 1e3;
}

int main(int argc, char **argv)
{
	unsigned long n = 10000, bytes = 64, warmup = 200;
	uint64_t *t = NULL, sum = 0;
	char *buf = NULL;
	int sv[2] = { -1, -1 }, opt, ret = 1, st;
	pid_t pid = -1;

	while ((opt = getopt(argc, argv, "n:s:w:h")) != -1) {
		int r = 0;

		switch (opt) {
		case 'n':
			r = parse_count(optarg, 100000000ul, &n);
			break;
		case 's':
			r = parse_count(optarg, MAX_BYTES, &bytes);
			break;
		case 'w':
			r = parse_count(optarg, 100000000ul, &warmup);
			break;
		default:
			r = -EINVAL;
			break;
		}
		if (r < 0) {
			fprintf(stderr, "usage: sockrtt [-n ITERATIONS] [-s BYTES] [-w WARMUP]\n");
			return 2;
		}
	}
	t = calloc(n, sizeof(*t));
	buf = calloc(1, MAX_BYTES);
	if (!t || !buf) {
		fprintf(stderr, "sockrtt: out of memory\n");
		goto out;
	}
	memset(buf, 'x', bytes);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		perror("sockrtt: socketpair");
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		perror("sockrtt: fork");
		goto out;
	}
	if (pid == 0) {
		close(sv[0]);
		_exit(echo_loop(sv[1]));
	}
	close(sv[1]);
	sv[1] = -1;
	for (unsigned long i = 0; i < warmup; i++)
		if (!ping(sv[0], buf, bytes))
			goto io_error;
	for (unsigned long i = 0; i < n; i++) {
		t[i] = ping(sv[0], buf, bytes);
		if (!t[i])
			goto io_error;
		sum += t[i];
	}
	qsort(t, n, sizeof(*t), cmp_u64);
	printf("{\"n\": %lu, \"bytes\": %lu, \"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, "
	       "\"mean_us\": %.3f, \"min_us\": %.3f, \"max_us\": %.3f}\n",
	       n, bytes, pct_us(t, n, 50), pct_us(t, n, 90), pct_us(t, n, 99),
	       (double)sum / (double)n / 1e3, (double)t[0] / 1e3, (double)t[n - 1] / 1e3);
	ret = 0;
	goto out;
io_error:
	perror("sockrtt: ping");
out:
	if (sv[0] >= 0)
		close(sv[0]); /* EOF ends the echo child */
	if (pid > 0 && (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)))
		ret = 1;
	free(t);
	free(buf);
	return ret;
}
