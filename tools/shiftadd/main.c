// SPDX-License-Identifier: MIT
/*
 * shiftadd: the offline tool. Subcommands convert, evaluate, inspect and run models.
 */
#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/shiftadd/cmds.h"

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "convert", cmd_convert, "reparameterize a model into shift-add form (or a baseline)" },
	{ "generate", cmd_generate, "generate text from a model, streaming tokens to stdout" },
	{ "eval", cmd_eval,
	  "evaluate a model: 'eval ppl' (WikiText-2 perplexity), 'eval tasks' (zero-shot)" },
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
