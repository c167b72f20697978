// SPDX-License-Identifier: MIT
/*
 * shiftadd: the offline tool. Subcommands convert, evaluate, inspect and run models.
 */
#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/pool.h"
#include "engine/model.h"
#include "tools/shiftadd/cmds.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "generate", cmd_generate, "generate text from a model, streaming tokens to stdout" },
	{ "eval", cmd_eval, "evaluate a model: 'eval ppl' (WikiText-2 perplexity)" },
	{ "info", cmd_info, "show what a GGUF file holds (metadata, tensors, shiftadd fields)" },
	{ "tokenize", cmd_tokenize, "print the token ids of a text" },
	{ NULL, NULL, NULL },
};

void tool_set_threads(unsigned n)
{
	if (!n) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		n = c > 0 ? (unsigned)c : 1;
	}
	openblas_set_num_threads((int)n);
}

int tool_backend_parse(const char *name)
{
	if (!strcmp(name, "dense"))
		return LINEAR_BACKEND_DENSE;
	if (!strcmp(name, "shiftadd"))
		return LINEAR_BACKEND_SHIFTADD;
	return -EINVAL;
}

int tool_model_load(const char *path, int backend, unsigned threads, struct model **ret,
		    struct pool **ret_pool, struct errbuf *e)
{
	struct model_load_opts o = { .backend = (enum linear_backend)backend };
	struct pool *pool = NULL;
	int r;

	if (backend == LINEAR_BACKEND_SHIFTADD) {
		if (!threads) {
			long c = sysconf(_SC_NPROCESSORS_ONLN);

			threads = c > 0 ? (unsigned)c : 1;
		}
		r = pool_new(threads, NULL, &pool);
		if (r < 0)
			return errbuf_set(e, r, "cannot start %u kernel threads", threads);
		o.pool = pool;
	}
	r = model_load_ex(path, &o, ret, e);
	if (r < 0) {
		pool_free(pool);
		return r;
	}
	*ret_pool = pool;
	return 0;
}

const char *tool_shared_path(const char *rel)
{
	static char buf[PATH_MAX];
	const char *root = getenv("SHIFTADD_SHARED");

	snprintf(buf, sizeof(buf), "%s/data/%s", root && *root ? root : "../shared", rel);
	return buf;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: shiftadd COMMAND [OPTIONS]\n\n"
		   "Reparameterize LLMs into shift-add form and run them on CPUs.\n\ncommands:\n");
	for (const struct command *c = commands; c->name; c++)
		fprintf(f, "  %-10s %s\n", c->name, c->summary);
	fprintf(f, "\nRun 'shiftadd COMMAND --help' for the options of a command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		if (argc > 2 && strcmp(argv[1], "help") == 0) {
			char *sub[] = { argv[2], "--help", NULL };

			for (const struct command *c = commands; c->name; c++)
				if (!strcmp(c->name, argv[2]))
					return c->fn(2, sub);
		}
		usage(stdout);
		return 0;
	}
	for (const struct command *c = commands; c->name; c++)
		if (!strcmp(c->name, argv[1]))
			return c->fn(argc - 1, argv + 1);
	fprintf(stderr, "shiftadd: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
