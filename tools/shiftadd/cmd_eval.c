// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pool.h"
#include "common/progress.h"
#include "engine/eval.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "tools/opt.h"
#include "tools/shiftadd/cmds.h"
#include "tools/shiftadd/load.h"

static const struct opt_spec ppl_specs[] = {
	{ "model", 'm', "PATH", NULL, "model: a GGUF file or an HF folder (required)" },
	{ "data", 'd', "FILE", "../shared/data/wikitext-2/wiki.test.rows.txt",
	  "one row per line; rows are joined with \"\\n\\n\"" },
	{ "seqlen", 0, "N", "2048, or the model's context if smaller", "tokens per window" },
	{ "limit-windows", 0, "N", "0 = all", "score only the first N windows" },
	{ "bos", 0, "yes|no|auto", "auto = the tokenizer's add_bos_token (Gemma: yes)",
	  "put BOS before each window (not scored)" },
	{ "threads", 'j', "N", "all CPUs", "threads for the matrix products (BLAS and kernels)" },
	{ "backend", 0, "NAME", "shiftadd",
	  "dense (dequantize shift-add layers, BLAS) or shiftadd (LUT kernels)" },
	{ "kv-type", 0, "T", "f32",
	  "KV cache elements: f32 (exact, the protocol) or f16 (what shiftaddd and generate use "
	  "by default)" },
	{ "dump-ids", 0, "FILE", NULL, "also write the token ids (one per line) to FILE" },
	{ "json", 0, NULL, NULL, "print the result as one JSON object" },
	{ "help", 'h', NULL, NULL, "show this help" },
	{ NULL, 0, NULL, NULL, NULL },
};

struct ppl_opts {
	const char *model, *data, *dump;
	unsigned seqlen, limit, threads;
	int backend; /* enum linear_backend */
	int bos;     /* -1 auto, 0 no, 1 yes */
	int kv_type; /* enum kv_type */
	bool json;
};

static int parse_ppl(int argc, char **argv, struct ppl_opts *o)
{
	struct option lo[OPT_MAX + 1];
	char so[3 * OPT_MAX + 2];
	int c;

	*o = (struct ppl_opts){ .backend = LINEAR_BACKEND_SHIFTADD, .bos = -1 };
	opt_build(ppl_specs, lo, so);
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		int i = opt_index(ppl_specs, c);
		const char *n = i >= 0 ? ppl_specs[i].name : "";
		int r = 0;

		if (c == '?' || c == ':') {
			fprintf(stderr, "shiftadd eval ppl: bad option '%s'\n", argv[optind - 1]);
			return 2;
		}
		if (!strcmp(n, "model"))
			o->model = optarg;
		else if (!strcmp(n, "data"))
			o->data = optarg;
		else if (!strcmp(n, "seqlen"))
			r = opt_u32(n, optarg, &o->seqlen);
		else if (!strcmp(n, "limit-windows"))
			r = opt_u32(n, optarg, &o->limit);
		else if (!strcmp(n, "bos"))
			r = tool_bos_parse(optarg, &o->bos);
		else if (!strcmp(n, "threads"))
			r = opt_u32(n, optarg, &o->threads);
		else if (!strcmp(n, "backend")) {
			o->backend = tool_backend_parse(optarg);
			if (o->backend < 0) {
				fprintf(stderr,
					"shiftadd eval ppl: --backend must be dense or shiftadd, not '%s'\n",
					optarg);
				return 2;
			}
		} else if (!strcmp(n, "kv-type")) {
			if (tool_kv_type_parse("shiftadd eval ppl", optarg, &o->kv_type) < 0)
				return 2;
		} else if (!strcmp(n, "dump-ids"))
			o->dump = optarg;
		else if (!strcmp(n, "json"))
			o->json = true;
		else if (!strcmp(n, "help")) {
			opt_usage(
				stdout, "shiftadd eval ppl --model PATH [OPTIONS]",
				"Perplexity on non-overlapping windows of the tokenized text, the last partial\n"
				"window dropped (the GPTQ / ShiftAddLLM protocol, ../shared/data/README.md).",
				ppl_specs);
			return 1;
		}
		if (r < 0)
			return 2;
	}
	if (!o->model) {
		fprintf(stderr, "shiftadd eval ppl: --model is required (see --help)\n");
		return 2;
	}
	if (o->seqlen == 1) {
		fprintf(stderr, "shiftadd eval ppl: --seqlen must be at least 2\n");
		return 2;
	}
	return 0;
}

static int dump_ids(const char *path, const int32_t *ids, size_t n)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%d\n", ids[i]);
	return fclose(f) ? -errno : 0;
}

static int run_ppl(const struct ppl_opts *o)
{
	const char *data = o->data ? o->data : tool_shared_path("wikitext-2/wiki.test.rows.txt");
	struct errbuf e = { { 0 } };
	struct model *m = NULL;
	struct pool *pool = NULL;
	struct ppl_result res;
	struct progress bar;
	int32_t *ids = NULL;
	size_t len, n_ids;
	char *text = NULL;
	unsigned seqlen;
	double t_tok;
	bool bos;
	int r;

	r = eval_read_rows_joined(data, &text, &len);
	if (r < 0) {
		fprintf(stderr, "shiftadd eval ppl: '%s': %s\n", data, strerror(-r));
		goto out;
	}
	r = tool_model_load(o->model, o->backend, o->threads, &m, &pool, &e);
	if (r < 0) {
		fprintf(stderr, "shiftadd eval ppl: '%s': %s\n", o->model, errbuf_str(&e, r));
		goto out;
	}
	if (!m->tok) {
		fprintf(stderr, "shiftadd eval ppl: '%s' has no tokenizer\n", o->model);
		r = -EINVAL;
		goto out;
	}
	bos = o->bos < 0 ? tokenizer_add_bos(m->tok) : o->bos;
	t_tok = progress_now();
	r = tokenizer_encode(m->tok, text, len, false, &ids, &n_ids);
	if (r < 0) {
		fprintf(stderr, "shiftadd eval ppl: tokenizing '%s': %s\n", data, strerror(-r));
		goto out;
	}
	t_tok = progress_now() - t_tok;
	if (o->dump && (r = dump_ids(o->dump, ids, n_ids)) < 0) {
		fprintf(stderr, "shiftadd eval ppl: '%s': %s\n", o->dump, strerror(-r));
		goto out;
	}
	seqlen = o->seqlen ? o->seqlen : 2048;
	if (seqlen + bos > m->cfg.max_ctx)
		seqlen = m->cfg.max_ctx - bos;
	if (n_ids < seqlen) {
		fprintf(stderr,
			"shiftadd eval ppl: text has %zu tokens, fewer than one window of %u\n",
			n_ids, seqlen);
		r = -EINVAL;
		goto out;
	}
	progress_begin(&bar, stderr, "ppl", "tok", 0);
	r = eval_ppl(m, ids, n_ids, seqlen, o->limit, bos, (enum kv_type)o->kv_type, progress_cb,
		     &bar, &res);
	progress_end(&bar);
	if (r < 0) {
		fprintf(stderr, "shiftadd eval ppl: %s\n", strerror(-r));
		goto out;
	}
	if (o->json)
		printf("{\"model\": \"%s\", \"backend\": \"%s\", \"shiftadd_layers\": %u, "
		       "\"threads\": %u, \"ppl\": %.6f, \"nll_mean\": %.8f, \"windows\": %u, "
		       "\"seqlen\": %u, \"bos\": %s, \"predicted_tokens\": %llu, \"text_tokens\": %zu, "
		       "\"tokenize_s\": %.3f, \"eval_s\": %.3f, \"tok_per_s\": %.2f, "
		       "\"kv_type\": \"%s\"}\n",
		       o->model, tool_backend_name(o->backend), m->n_shiftadd,
		       pool ? pool_n_threads(pool) : o->threads, res.ppl,
		       res.nll_sum / res.n_predicted, res.n_windows, res.seqlen,
		       bos ? "true" : "false", (unsigned long long)res.n_predicted, n_ids, t_tok,
		       res.seconds, (double)res.n_windows * seqlen / res.seconds,
		       kv_type_name(o->kv_type));
	else
		printf("ppl %.4f  (%u windows x %u tokens, %llu predicted, %zu text tokens; "
		       "%.1f tok/s, %.1f s; %u shift-add layers on the kernels)\n",
		       res.ppl, res.n_windows, res.seqlen, (unsigned long long)res.n_predicted,
		       n_ids, (double)res.n_windows * seqlen / res.seconds, res.seconds,
		       m->n_shiftadd);
out:
	free(ids);
	free(text);
	model_free(m);
	pool_free(pool);
	return r < 0 ? 1 : 0;
}

static int cmd_eval_ppl(int argc, char **argv)
{
	struct ppl_opts o;
	int r = parse_ppl(argc, argv, &o);

	if (r)
		return r == 1 ? 0 : r;
	tool_set_threads(o.threads);
	return run_ppl(&o);
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
} evals[] = {
	{ "ppl", cmd_eval_ppl, "WikiText-2 perplexity (run 'shiftadd eval ppl --help')" },
	{ "tasks", cmd_eval_tasks,
	  "zero-shot multiple-choice accuracy (run 'shiftadd eval tasks --help')" },
};

#define N_EVALS (sizeof(evals) / sizeof(evals[0]))

int cmd_eval(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		FILE *f = argc < 2 ? stderr : stdout;

		fprintf(f, "usage: shiftadd eval ppl|tasks [OPTIONS]\n\n");
		for (size_t i = 0; i < N_EVALS; i++)
			fprintf(f, "  %-7s %s\n", evals[i].name, evals[i].summary);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < N_EVALS; i++)
		if (!strcmp(argv[1], evals[i].name))
			return evals[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "shiftadd eval: unknown evaluation '%s' (known: ppl, tasks)\n", argv[1]);
	return 2;
}
