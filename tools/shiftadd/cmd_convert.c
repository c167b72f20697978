// SPDX-License-Identifier: MIT
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/progress.h"
#include "engine/model.h"
#include "reparam/calib.h"
#include "reparam/export.h"
#include "reparam/quant.h"
#include "tools/opt.h"
#include "tools/shiftadd/cmds.h"

static const struct opt_spec specs[] = {
	{ "model", 'm', "PATH", NULL, "source model: a GGUF file (required)" },
	{ "out", 'o', "FILE", NULL, "converted GGUF file to write (required; written atomically)" },
	{ "method", 'M', "NAME", "shiftadd-acc",
	  "fp | rtn | gptq | bcq | shiftadd-lat | shiftadd-acc | shiftadd-acc-sim" },
	{ "bits", 'b', "N", "3", "bits per weight: 2, 3 or 4 (uniform methods: 1..8)" },
	{ "calib", 0, "FILE", "../shared/data/calib/wiki-passages.txt",
	  "calibration passages, one per line" },
	{ "nsamples", 0, "N", "128", "calibration windows" },
	{ "seqlen", 0, "N", "2048", "tokens per calibration window" },
	{ "seed", 0, "S", "0", "seed of the calibration window offsets (and acc-sim rotation)" },
	{ "rounds", 0, "N", "50", "BCQ alternating refinement rounds" },
	{ "apot", 0, "N", "3", "signed powers of two per scaling factor" },
	{ "group", 'g', "G", "0 = per row", "uniform methods: columns per scale" },
	{ "act-order", 0, NULL, "on", "GPTQ methods: quantize columns by descending H diagonal" },
	{ "no-act-order", 0, NULL, NULL, "GPTQ methods: natural column order" },
	{ "percdamp", 0, "F", "0.01", "GPTQ damping, fraction of mean(diag H)" },
	{ "threads", 'j', "N", "all CPUs", "threads for the matrix products" },
	{ "json", 0, NULL, NULL, "print the per-layer table as JSON on stdout" },
	{ "quiet", 'q', NULL, NULL, "no per-layer lines" },
	{ "help", 'h', NULL, NULL, "show this help" },
	{ NULL, 0, NULL, NULL, NULL },
};

struct conv_opts {
	const char *model, *out, *calib;
	unsigned threads;
	bool json, quiet;
	struct calib_run run;
};

static int parse_method(const char *s, struct conv_opts *o)
{
	int mth = reparam_method_parse(s);

	if (mth < 0) {
		fprintf(stderr, "shiftadd convert: unknown --method '%s' (see --help)\n", s);
		return -EINVAL;
	}
	o->run.q.method = (enum reparam_method)mth;
	return 0;
}

static int parse_opt(struct conv_opts *o, const char *n, bool *act, int *act_set)
{
	struct reparam_opts *q = &o->run.q;
	struct calib_opts *c = &o->run.calib;
	unsigned long long v;
	unsigned u;
	float f;
	int r = 0;

	if (!strcmp(n, "model"))
		o->model = optarg;
	else if (!strcmp(n, "out"))
		o->out = optarg;
	else if (!strcmp(n, "method"))
		r = parse_method(optarg, o);
	else if (!strcmp(n, "bits") && !(r = opt_u32(n, optarg, &u)))
		q->bits = u;
	else if (!strcmp(n, "calib"))
		o->calib = optarg;
	else if (!strcmp(n, "nsamples") && !(r = opt_u32(n, optarg, &u)))
		c->nsamples = u;
	else if (!strcmp(n, "seqlen") && !(r = opt_u32(n, optarg, &u)))
		c->seqlen = u;
	else if (!strcmp(n, "seed") && !(r = opt_u64(n, optarg, &v)))
		c->seed = q->seed = v;
	else if (!strcmp(n, "rounds") && !(r = opt_u32(n, optarg, &u)))
		q->rounds = u;
	else if (!strcmp(n, "apot") && !(r = opt_u32(n, optarg, &u)))
		q->apot = u;
	else if (!strcmp(n, "group") && !(r = opt_u32(n, optarg, &u)))
		q->group = u;
	else if (!strcmp(n, "act-order"))
		*act = true, *act_set = 1;
	else if (!strcmp(n, "no-act-order"))
		*act = false, *act_set = 1;
	else if (!strcmp(n, "percdamp") && !(r = opt_float(n, optarg, &f)))
		q->percdamp = f;
	else if (!strcmp(n, "threads"))
		r = opt_u32(n, optarg, &o->threads);
	else if (!strcmp(n, "json"))
		o->json = true;
	else if (!strcmp(n, "quiet"))
		o->quiet = true;
	return r;
}

/*
 * Options are parsed twice: first for --method and --bits (which pick the defaults), then
 * for everything else on top of those defaults.
 */
static int parse(int argc, char **argv, struct conv_opts *o)
{
	struct option lo[OPT_MAX + 1];
	char so[3 * OPT_MAX + 2];
	enum reparam_method method = REPARAM_SHIFTADD_ACC;
	unsigned bits = 3;
	bool act = true;
	int act_set = 0, c;

	opt_build(specs, lo, so);
	memset(o, 0, sizeof(*o));
	opterr = 0;
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		int i = opt_index(specs, c);
		const char *n = i >= 0 ? specs[i].name : "";

		if (!strcmp(n, "help")) {
			opt_usage(
				stdout, "shiftadd convert --model IN.gguf --out OUT.gguf [OPTIONS]",
				"Reparameterize every linear layer (ShiftAddLLM: binary planes with power-of-two\n"
				"scales, optimized for output error on calibration data) and write a GGUF file.\n"
				"All methods share one code path and calibration set, so runs are comparable.",
				specs);
			return 1;
		}
		if (!strcmp(n, "method") && parse_method(optarg, o) < 0)
			return 2;
		if (!strcmp(n, "method"))
			method = o->run.q.method;
		if (!strcmp(n, "bits") && opt_u32(n, optarg, &bits) < 0)
			return 2;
		if (c == '?' || c == ':') {
			fprintf(stderr, "shiftadd convert: bad option '%s'\n", argv[optind - 1]);
			return 2;
		}
	}
	reparam_opts_init(&o->run.q, method, bits);
	o->run.calib = (struct calib_opts){ .nsamples = 128, .seqlen = 2048 };
	optind = 1;
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		int i = opt_index(specs, c);

		if (i >= 0 && parse_opt(o, specs[i].name, &act, &act_set) < 0)
			return 2;
	}
	o->run.q.act_order = reparam_method_needs_hessian(method) && act;
	if (act_set && act && !reparam_method_needs_hessian(method)) {
		fprintf(stderr, "shiftadd convert: --act-order needs a GPTQ method\n");
		return 2;
	}
	if (!o->model || !o->out) {
		fprintf(stderr, "shiftadd convert: --model and --out are required (see --help)\n");
		return 2;
	}
	return 0;
}

/* Fail before hours of work if the output cannot be written. */
static int check_out_dir(const char *out)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", out);
	if (access(dirname(buf), W_OK) < 0) {
		fprintf(stderr, "shiftadd convert: cannot write to the directory of '%s': %s\n",
			out, strerror(errno));
		return -errno;
	}
	return 0;
}

struct layer_log {
	bool json, quiet;
	struct progress *bar;
};

static void on_layer(void *arg, const struct calib_tensor *t, uint32_t done, uint32_t total)
{
	const struct layer_log *ll = arg;
	const struct reparam_result *r = &t->res;

	if (ll->json) {
		printf("%s{\"name\": \"%s\", \"rows\": %u, \"cols\": %u, \"bits\": %u, "
		       "\"bits_per_weight\": %.4f, \"rel_err_output\": %.6g, \"err_weight\": %.6g, "
		       "\"seconds\": %.3f}",
		       done > 1 ? ",\n " : "[", t->name, r->n_rows, r->n_cols,
		       r->has_qweight ? r->qw.bits : 32, r->bits_per_weight, r->rel_err_output,
		       r->err_weight, t->seconds);
		if (done == total)
			printf("]\n");
		return;
	}
	if (ll->quiet)
		return;
	if (ll->bar->tty)
		fprintf(stderr, "\r\033[K");
	fprintf(stderr, "  %-22s %5u x %-5u %5.2f bpw  rel. output error %.4g  (%.2f s)\n", t->name,
		r->n_rows, r->n_cols, r->bits_per_weight, r->rel_err_output, t->seconds);
}

static int run(struct conv_opts *o)
{
	struct errbuf e = { { 0 } };
	struct model *m = NULL;
	struct calib_out out = { 0 };
	struct progress bar;
	struct layer_log ll = { .json = o->json, .quiet = o->quiet, .bar = &bar };
	struct export_meta meta;
	double t0 = progress_now();
	int r;

	r = check_out_dir(o->out);
	if (r < 0)
		return 1;
	o->run.calib.text_path = o->calib ? o->calib : tool_shared_path("calib/wiki-passages.txt");
	r = model_load(o->model, &m, &e);
	if (r < 0) {
		fprintf(stderr, "shiftadd convert: '%s': %s\n", o->model, errbuf_str(&e, r));
		return 1;
	}
	fprintf(stderr, "convert: %s, %s %u-bit, %u layers%s\n", o->model,
		reparam_method_name(o->run.q.method), o->run.q.bits, m->cfg.n_layers,
		reparam_method_needs_hessian(o->run.q.method) ? "" : " (no calibration needed)");
	progress_begin(&bar, stderr, "convert", "steps", 0);
	o->run.on_layer = on_layer;
	o->run.on_layer_arg = &ll;
	o->run.progress = progress_cb;
	o->run.progress_arg = &bar;
	r = calib_quantize_model(m, &o->run, &out, &e);
	progress_end(&bar);
	if (r < 0) {
		fprintf(stderr, "shiftadd convert: %s\n", errbuf_str(&e, r));
		goto out;
	}
	meta = (struct export_meta){ .run = &o->run,
				     .calib_file = o->run.calib.text_path,
				     .calib_tokens = out.n_tokens };
	r = export_gguf(o->model, m, &out, &meta, o->out, &e);
	if (r < 0) {
		fprintf(stderr, "shiftadd convert: %s\n", errbuf_str(&e, r));
		goto out;
	}
	fprintf(stderr, "convert: wrote %s in %.1f s\n", o->out, progress_now() - t0);
out:
	calib_out_done(&out);
	model_free(m);
	return r < 0 ? 1 : 0;
}

int cmd_convert(int argc, char **argv)
{
	struct conv_opts o;
	int r = parse(argc, argv, &o);

	if (r)
		return r == 1 ? 0 : r;
	tool_set_threads(o.threads);
	return run(&o);
}
