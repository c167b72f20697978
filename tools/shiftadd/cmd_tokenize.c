// SPDX-License-Identifier: MIT
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "tools/opt.h"
#include "tools/shiftadd/cmds.h"

static const struct opt_spec specs[] = {
	{ "model", 'm', "PATH", NULL, "GGUF file or tokenizer.json (required)" },
	{ "text", 'p', "TEXT", NULL, "text to encode (or --file)" },
	{ "file", 'f', "FILE", NULL, "encode the contents of FILE" },
	{ "special", 0, NULL, NULL, "recognise special tokens in the text" },
	{ "pieces", 0, NULL, NULL, "print each id with its piece" },
	{ "help", 'h', NULL, NULL, "show this help" },
	{ NULL, 0, NULL, NULL, NULL },
};

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc(n + 1);
		if (buf && fread(buf, 1, n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		if (buf) {
			buf[n] = 0;
			*len = n;
		}
	}
	fclose(f);
	return buf;
}

static int load_tok(const char *path, struct tokenizer **t, struct errbuf *e)
{
	size_t n = strlen(path);
	struct gguf_file *g;
	int r;

	if (n > 5 && !strcmp(path + n - 5, ".json"))
		return tokenizer_from_hf_json(path, t, e);
	r = gguf_open(path, &g, e);
	if (r < 0)
		return r;
	r = tokenizer_from_gguf(g, t, e);
	gguf_close(g);
	return r;
}

int cmd_tokenize(int argc, char **argv)
{
	struct option lo[OPT_MAX + 1];
	char so[3 * OPT_MAX + 2];
	const char *model = NULL, *text = NULL, *file = NULL;
	bool special = false, pieces = false;
	struct errbuf e = { { 0 } };
	struct tokenizer *t = NULL;
	char *buf = NULL;
	int32_t *ids = NULL;
	size_t n, len = 0;
	int c, r;

	opt_build(specs, lo, so);
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		int i = opt_index(specs, c);
		const char *nm = i >= 0 ? specs[i].name : "";

		if (c == '?' || c == ':') {
			fprintf(stderr, "shiftadd tokenize: bad option '%s'\n", argv[optind - 1]);
			return 2;
		}
		if (!strcmp(nm, "model"))
			model = optarg;
		else if (!strcmp(nm, "text"))
			text = optarg;
		else if (!strcmp(nm, "file"))
			file = optarg;
		else if (!strcmp(nm, "special"))
			special = true;
		else if (!strcmp(nm, "pieces"))
			pieces = true;
		else if (!strcmp(nm, "help")) {
			opt_usage(stdout,
				  "shiftadd tokenize --model PATH (--text TEXT | --file FILE)",
				  "Print the token ids of a text, one per line.", specs);
			return 0;
		}
	}
	if (!model || !!text == !!file) {
		fprintf(stderr, "shiftadd tokenize: need --model and one of --text/--file\n");
		return 2;
	}
	if (file) {
		buf = slurp(file, &len);
		if (!buf) {
			fprintf(stderr, "shiftadd tokenize: cannot read '%s'\n", file);
			return 1;
		}
		text = buf;
	} else {
		len = strlen(text);
	}
	r = load_tok(model, &t, &e);
	if (r < 0) {
		fprintf(stderr, "shiftadd tokenize: '%s': %s\n", model, errbuf_str(&e, r));
		goto out;
	}
	r = tokenizer_encode(t, text, len, special, &ids, &n);
	if (r < 0) {
		fprintf(stderr, "shiftadd tokenize: %s\n", strerror(-r));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char piece[256];
		int pl;

		if (!pieces) {
			printf("%d\n", ids[i]);
			continue;
		}
		pl = tokenizer_piece(t, ids[i], piece, sizeof(piece));
		pl = pl < 0 ? 0 : pl > (int)sizeof(piece) ? (int)sizeof(piece) : pl;
		printf("%d\t%.*s\n", ids[i], pl, piece);
	}
out:
	free(ids);
	free(buf);
	tokenizer_free(t);
	return r < 0 ? 1 : 0;
}
