// SPDX-License-Identifier: MIT
/*
 * shiftadd-generate: connect to shiftaddd and stream one generation to stdout.
 *   shiftadd-generate [-s SOCKET] [-n MAX_TOKENS] [-t TEMP] [-k TOP_K] [-p TOP_P] [-S SEED]
 *                     [--stop STRING]... PROMPT
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "include/shiftadd.h"

struct run {
	int error;
	enum shiftadd_finish finish;
	uint32_t n_prompt, n_cached, n_gen;
	uint64_t ttft_ns, total_ns;
};

static void on_event(const struct shiftadd_event *ev, void *arg)
{
	struct run *r = arg;

	fwrite(ev->text, 1, ev->text_len, stdout);
	fflush(stdout);
	if (ev->type == SHIFTADD_EVENT_DONE) {
		r->error = ev->error;
		r->finish = ev->finish_reason;
		r->n_prompt = ev->prompt_tokens;
		r->n_cached = ev->cached_tokens;
		r->n_gen = ev->completion_tokens;
		r->ttft_ns = ev->ttft_ns;
		r->total_ns = ev->total_ns;
		if (ev->error)
			fprintf(stderr, "\nerror: %s (%s)\n", shiftadd_strerror(ev->error),
				ev->message);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shiftadd-generate [options] PROMPT\n"
		"  -s, --socket PATH     daemon socket (default: $SHIFTADD_SOCKET or the system one)\n"
		"  -n, --max-tokens N    tokens to generate (default: 64)\n"
		"  -t, --temperature T   0 = greedy (default: 0)\n"
		"  -k, --top-k K         (default: 0 = off)\n"
		"  -p, --top-p P         (default: 0 = off)\n"
		"  -S, --seed N          (default: 0)\n"
		"      --stop STRING     stop string (repeatable, up to 8)\n"
		"  -q, --quiet           no statistics line on stderr\n"
		"  -h, --help\n");
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "max-tokens", required_argument, NULL, 'n' },
		{ "temperature", required_argument, NULL, 't' },
		{ "top-k", required_argument, NULL, 'k' },
		{ "top-p", required_argument, NULL, 'p' },
		{ "seed", required_argument, NULL, 'S' },
		{ "stop", required_argument, NULL, 'x' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct shiftadd_request req = { .max_tokens = 64, .stream = true };
	const char *sock = NULL, *stops[8];
	struct run run = { 0 };
	shiftadd_client *c;
	bool quiet = false;
	uint64_t id;
	int opt, r;

	while ((opt = getopt_long(argc, argv, "s:n:t:k:p:S:qh", lopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			sock = optarg;
			break;
		case 'n':
			req.max_tokens = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 't':
			req.sampling.temperature = strtof(optarg, NULL);
			break;
		case 'k':
			req.sampling.top_k = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'p':
			req.sampling.top_p = strtof(optarg, NULL);
			break;
		case 'S':
			req.sampling.seed = strtoull(optarg, NULL, 10);
			break;
		case 'x':
			if (req.n_stop_strings < 8)
				stops[req.n_stop_strings++] = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	req.prompt = argv[optind];
	req.stop_strings = stops;
	r = shiftadd_connect(sock, "shiftadd-generate", &c);
	if (r < 0) {
		fprintf(stderr, "shiftadd-generate: cannot connect: %s\n", shiftadd_strerror(r));
		return 1;
	}
	r = shiftadd_submit(c, &req, on_event, &run, &id);
	if (r == 0)
		r = shiftadd_wait(c, id, -1);
	if (r < 0) {
		fprintf(stderr, "shiftadd-generate: %s\n", shiftadd_strerror(r));
		shiftadd_close(c);
		return 1;
	}
	printf("\n");
	fflush(stdout); /* the statistics line on stderr comes after the text */
	if (!quiet && !run.error)
		fprintf(stderr,
			"prompt_tokens=%u cached_tokens=%u completion_tokens=%u finish=%d "
			"ttft_ms=%.2f total_ms=%.2f\n",
			run.n_prompt, run.n_cached, run.n_gen, (int)run.finish, run.ttft_ns / 1e6,
			run.total_ns / 1e6);
	shiftadd_close(c);
	return run.error ? 1 : 0;
}
