// SPDX-License-Identifier: MIT
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/progress.h"
#include "engine/model.h"
#include "kernels/gemm_bf16.h"
#include "reparam/calib.h"
#include "reparam/export.h"
#include "reparam/mixbits.h"
#include "reparam/quant.h"
#include "tools/opt.h"
#include "tools/shiftadd/cmds.h"

/* calib_run.qep before quantize(): --qep was not given, use calib_default_qep() */
#define QEP_AUTO (-1.0)
/* calib_run.qep_samples before quantize(): --qep-samples was not given */
#define QEP_SAMPLES_AUTO UINT32_MAX

/* --head shiftadd: 4 bits cost SmolLM2 +4.3% and Gemma 3 +2.6% perplexity (3 bits: +14%) */
#define HEAD_BITS_DEFAULT 4

static const struct opt_spec specs[] = {
	{ "model", 'm', "PATH", NULL, "source model: a GGUF file or an HF folder (required)" },
	{ "out", 'o', "FILE", NULL, "converted GGUF file to write (required; written atomically)" },
	{ "method", 'M', "NAME", "shiftadd-acc",
	  "fp | rtn | gptq | bcq | shiftadd-lat | shiftadd-acc | shiftadd-rht | shiftadd-acc-sim" },
	{ "rht", 0, "SIDES", "both",
	  "shiftadd-rht: Hadamard-transform the 'input' or 'both' sides" },
	{ "layout", 0, "L", "row",
	  "bcq: scale layout, row (LUT-GEMM's: per row and 128 columns) | block (8 columns x N/8 "
	  "rows) | col (per column)" },
	{ "bits", 'b', "N", "3",
	  "bits per weight: 2, 3 or 4 (uniform methods: 1..8), or 'auto' for mixed bits" },
	{ "avg-bits", 0, "B", NULL,
	  "--bits auto: average bits per weight of the linears, scales counted (never exceeded)" },
	{ "alloc", 0, "NAME", "exact",
	  "--bits auto: exact (knapsack on measured errors) | proxy (the paper's ranking)" },
	{ "alloc-weight", 0, "W", "rel",
	  "--bits auto, exact: minimize the sum of rel (output error / output energy) or abs "
	  "errors" },
	{ "alloc-base", 0, "N", "nearest to B",
	  "--bits auto: width of the measuring pass (2, 3 or 4)" },
	{ "alloc-save", 0, "FILE", NULL, "--bits auto: save the measured errors as JSON" },
	{ "alloc-load", 0, "FILE", NULL,
	  "--bits auto: take the errors from FILE (made with --alloc-save) instead of measuring" },
	{ "calib", 0, "FILE", "../shared/data/calib/wiki-passages.txt",
	  "calibration passages, one per line" },
	{ "nsamples", 0, "N", "128", "calibration windows" },
	{ "seqlen", 0, "N", "2048", "tokens per calibration window" },
	{ "seed", 0, "S", "0", "seed of the calibration window offsets (and acc-sim rotation)" },
	{ "calib-dtype", 0, "T", "f32",
	  "f32 | f16: how the block inputs of all samples are held (f16 halves that memory)" },
	{ "calib-math", 0, "M", "bf16 where the CPU has AVX512_BF16, else f32",
	  "f32 | bf16: the calibration passes' matrix products (block forwards, Hessians, "
	  "error propagation). bf16 rounds their inputs to bf16 and sums in f32, about twice "
	  "as fast; the quantizer itself runs in double either way" },
	{ "rounds", 0, "N", "50", "BCQ alternating refinement rounds" },
	{ "apot", 0, "N", "3", "signed powers of two per scaling factor" },
	{ "group", 'g', "G", "0 = per row", "uniform methods: columns per scale" },
	{ "act-order", 0, NULL, "on", "GPTQ methods: quantize columns by descending H diagonal" },
	{ "no-act-order", 0, NULL, NULL, "GPTQ methods: natural column order" },
	{ "percdamp", 0, "F", "0.01", "GPTQ damping, fraction of mean(diag H)" },
	{ "qep", 0, "A",
	  "0.3 for shiftadd-acc and shiftadd-rht given >= 16 calibration tokens per input dimension, else 0 (off)",
	  "GPTQ methods: error propagation strength in [0, 1]; quantize each linear toward the "
	  "unquantized model's output rather than its own weights (runs an unquantized copy of "
	  "each block beside, see --qep-samples; --qep 0 for speed)" },
	{ "qep-samples", 0, "N", "the windows of the first 65,536 tokens; 0 = all",
	  "error propagation: fit the correction on the first N calibration windows, the ones "
	  "the unquantized copy runs on (each costs about what a quantized window does, in "
	  "time and memory); GPTQ still weighs errors with all windows. At least 16 tokens "
	  "per input dimension of the widest linear are fitted unless N says otherwise" },
	{ "head", 0, "TYPE", "as the source",
	  "shiftadd: quantize the LM head too, last, with --method at --head-bits against the "
	  "Hessian of its input, and run it on the shift-add kernels (decode reads all of it "
	  "per token: SmolLM2's Q8_0 head is 30 MB, Gemma 3's 170 MB; faster for one sequence, "
	  "slower for several a step, so not for servers). q5_0: store it as its "
	  "own Q5_0 tensor (21 MB for SmolLM2; slower on Gemma 3's 262k rows, where the "
	  "unpacking outweighs the saved reads). Either way the embedding lookups keep the "
	  "source's" },
	{ "head-bits", 0, "N", "4", "--head shiftadd: bits per weight of the LM head (2, 3 or 4)" },
	{ "threads", 'j', "N", "all CPUs", "threads for the matrix products" },
	{ "json", 0, NULL, NULL, "print the per-layer table as JSON on stdout" },
	{ "quiet", 'q', NULL, NULL, "no per-layer lines" },
	{ "help", 'h', NULL, NULL, "show this help" },
	{ NULL, 0, NULL, NULL, NULL },
};

struct conv_opts {
	const char *model, *out, *calib;
	unsigned threads;
	int math; /* --calib-math, -1 = not given */
	bool json, quiet, head_q5_0;
	unsigned head_bits; /* --head-bits as given (0 = not given) */
	struct calib_run run;
	/* --bits auto */
	bool mixed;
	double avg_bits;
	enum mixbits_alloc alloc;
	enum mixbits_weight weight;
	bool weight_set;
	unsigned alloc_base; /* 0 = nearest candidate to avg_bits */
	const char *alloc_save, *alloc_load;
};

/* "auto" or a width; *@mixed says which. */
static int parse_bits(const char *s, unsigned *ret, bool *mixed)
{
	*mixed = !strcmp(s, "auto");
	if (*mixed) {
		*ret = 3;
		return 0;
	}
	return opt_u32("bits", s, ret);
}

static int parse_alloc(const char *s, struct conv_opts *o)
{
	int a = mixbits_alloc_parse(s);

	if (a < 0) {
		fprintf(stderr, "shiftadd convert: unknown --alloc '%s' (exact or proxy)\n", s);
		return -EINVAL;
	}
	o->alloc = (enum mixbits_alloc)a;
	return 0;
}

static int parse_weight(const char *s, struct conv_opts *o)
{
	int w = mixbits_weight_parse(s);

	if (w < 0) {
		fprintf(stderr, "shiftadd convert: unknown --alloc-weight '%s' (rel or abs)\n", s);
		return -EINVAL;
	}
	o->weight = (enum mixbits_weight)w;
	o->weight_set = true;
	return 0;
}

/* A double, parsed as such: a float budget could round above what the user asked for. */
static int parse_avg_bits(const char *s, double *ret)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0 && v <= 16)) {
		fprintf(stderr, "shiftadd convert: invalid value for --avg-bits: '%s'\n", s);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

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

static int parse_calib_dtype(const char *s, struct calib_opts *c)
{
	int d = calib_dtype_parse(s);

	if (d < 0) {
		fprintf(stderr, "shiftadd convert: unknown --calib-dtype '%s' (f32 or f16)\n", s);
		return -EINVAL;
	}
	c->dtype = (enum calib_dtype)d;
	return 0;
}

/* --calib-math; -1 in *@m until given (then parse() picks the host's best) */
static int parse_calib_math(const char *s, int *m)
{
	*m = calib_math_parse(s);
	if (*m < 0) {
		fprintf(stderr, "shiftadd convert: unknown --calib-math '%s' (f32 or bf16)\n", s);
		return -EINVAL;
	}
	if (*m == CALIB_MATH_BF16 && !gemm_bf16_supported()) {
		fprintf(stderr, "shiftadd convert: --calib-math bf16 needs a CPU with AVX512_BF16; "
				"this one lacks it (use f32)\n");
		return -EOPNOTSUPP;
	}
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
	else if (!strcmp(n, "bits") && !(r = parse_bits(optarg, &u, &o->mixed)))
		q->bits = u;
	else if (!strcmp(n, "avg-bits"))
		r = parse_avg_bits(optarg, &o->avg_bits);
	else if (!strcmp(n, "alloc"))
		r = parse_alloc(optarg, o);
	else if (!strcmp(n, "alloc-weight"))
		r = parse_weight(optarg, o);
	else if (!strcmp(n, "alloc-base"))
		r = opt_u32(n, optarg, &o->alloc_base);
	else if (!strcmp(n, "alloc-save"))
		o->alloc_save = optarg;
	else if (!strcmp(n, "alloc-load"))
		o->alloc_load = optarg;
	else if (!strcmp(n, "calib"))
		o->calib = optarg;
	else if (!strcmp(n, "nsamples") && !(r = opt_u32(n, optarg, &u)))
		c->nsamples = u;
	else if (!strcmp(n, "seqlen") && !(r = opt_u32(n, optarg, &u)))
		c->seqlen = u;
	else if (!strcmp(n, "seed") && !(r = opt_u64(n, optarg, &v)))
		c->seed = q->seed = v;
	else if (!strcmp(n, "calib-dtype"))
		r = parse_calib_dtype(optarg, c);
	else if (!strcmp(n, "calib-math"))
		r = parse_calib_math(optarg, &o->math);
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
	else if (!strcmp(n, "rht")) {
		int v2 = reparam_rht_parse(optarg);

		if (v2 <= 0 || q->method != REPARAM_SHIFTADD_RHT) {
			fprintf(stderr, "shiftadd convert: --rht takes 'input' or 'both' and needs "
					"--method shiftadd-rht\n");
			return -EINVAL;
		}
		q->rht = (enum reparam_rht)v2;
	} else if (!strcmp(n, "layout")) {
		int l = qweight_layout_parse(optarg);

		if (l < 0 || q->method != REPARAM_BCQ) {
			fprintf(stderr, "shiftadd convert: --layout takes row, block or col and "
					"needs --method bcq\n");
			return -EINVAL;
		}
		q->layout = (enum qw_layout)l;
	} else if (!strcmp(n, "percdamp") && !(r = opt_float(n, optarg, &f)))
		q->percdamp = f;
	else if (!strcmp(n, "qep") && !(r = opt_float(n, optarg, &f))) {
		if (!(f >= 0 && f <= 1)) {
			fprintf(stderr, "shiftadd convert: --qep takes a strength in [0, 1]\n");
			return -EINVAL;
		}
		o->run.qep = f;
	} else if (!strcmp(n, "qep-samples"))
		r = opt_u32(n, optarg, &o->run.qep_samples);
	else if (!strcmp(n, "head")) {
		/* the last --head wins */
		o->head_q5_0 = !strcmp(optarg, "q5_0");
		o->run.head_bits = !strcmp(optarg, "shiftadd") ? HEAD_BITS_DEFAULT : 0;
		if (!o->head_q5_0 && !o->run.head_bits) {
			fprintf(stderr,
				"shiftadd convert: unknown --head '%s' (shiftadd or q5_0)\n",
				optarg);
			return -EINVAL;
		}
	} else if (!strcmp(n, "head-bits"))
		r = opt_u32(n, optarg, &o->head_bits);
	else if (!strcmp(n, "threads"))
		r = opt_u32(n, optarg, &o->threads);
	else if (!strcmp(n, "json"))
		o->json = true;
	else if (!strcmp(n, "quiet"))
		o->quiet = true;
	return r;
}

/* --head shiftadd needs a shift-add method; --head-bits needs --head shiftadd. */
static int check_head(struct conv_opts *o)
{
	enum reparam_method m = o->run.q.method;

	if (o->head_bits && !o->run.head_bits) {
		fprintf(stderr, "shiftadd convert: --head-bits needs --head shiftadd\n");
		return -EINVAL;
	}
	if (!o->run.head_bits)
		return 0;
	if (o->head_bits)
		o->run.head_bits = o->head_bits;
	if (m != REPARAM_SHIFTADD_ACC && m != REPARAM_SHIFTADD_LAT && m != REPARAM_SHIFTADD_RHT) {
		fprintf(stderr, "shiftadd convert: --head shiftadd needs --method shiftadd-acc, "
				"shiftadd-lat or shiftadd-rht\n");
		return -EINVAL;
	}
	if (o->run.head_bits < 2 || o->run.head_bits > QW_MAX_BITS) {
		fprintf(stderr, "shiftadd convert: --head-bits takes 2, 3 or 4\n");
		return -EINVAL;
	}
	return 0;
}

/* --bits auto and its options go together. */
static int check_mixed(struct conv_opts *o)
{
	if (!o->mixed) {
		if (o->avg_bits || o->alloc_base || o->alloc_save || o->alloc_load ||
		    o->weight_set) {
			fprintf(stderr,
				"shiftadd convert: --avg-bits and --alloc-* need --bits auto\n");
			return 2;
		}
		return 0;
	}
	if (!o->avg_bits) {
		fprintf(stderr, "shiftadd convert: --bits auto needs --avg-bits\n");
		return 2;
	}
	if (o->alloc_load && (o->alloc_save || o->alloc_base)) {
		fprintf(stderr, "shiftadd convert: --alloc-load measures nothing: no --alloc-save "
				"or --alloc-base with it\n");
		return 2;
	}
	if (!o->alloc_base) {
		/* the candidate nearest to the budget, ties upward */
		o->alloc_base = o->avg_bits < 2.5 ? 2 : o->avg_bits < 3.5 ? 3 : 4;
	}
	return 0;
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
	bool act = true, mixed = false;
	int act_set = 0, c;

	opt_build(specs, lo, so);
	memset(o, 0, sizeof(*o));
	opterr = 0;
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		int i = opt_index(specs, c);
		const char *n = i >= 0 ? specs[i].name : "";

		if (!strcmp(n, "help")) {
			opt_usage(
				stdout,
				"shiftadd convert --model IN.gguf|HF_DIR --out OUT.gguf [OPTIONS]",
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
		if (!strcmp(n, "bits") && parse_bits(optarg, &bits, &mixed) < 0)
			return 2;
		if (c == '?' || c == ':') {
			fprintf(stderr, "shiftadd convert: bad option '%s'\n", argv[optind - 1]);
			return 2;
		}
	}
	reparam_opts_init(&o->run.q, method, bits);
	o->run.calib = (struct calib_opts){ .nsamples = 128, .seqlen = 2048 };
	o->run.qep = QEP_AUTO; /* resolved against the model's widths in quantize() */
	o->run.qep_samples = QEP_SAMPLES_AUTO;
	o->math = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		int i = opt_index(specs, c);

		if (i >= 0 && parse_opt(o, specs[i].name, &act, &act_set) < 0)
			return 2;
	}
	o->run.q.act_order = reparam_method_needs_hessian(method) && act;
	if (o->math < 0)
		o->math = gemm_bf16_supported() ? CALIB_MATH_BF16 : CALIB_MATH_F32;
	o->run.calib.math = (enum calib_math)o->math;
	if (check_head(o) < 0)
		return 2;
	if (act_set && act && !reparam_method_needs_hessian(method)) {
		fprintf(stderr, "shiftadd convert: --act-order needs a GPTQ method\n");
		return 2;
	}
	if (o->run.qep > 0 && !reparam_method_needs_hessian(method)) {
		fprintf(stderr, "shiftadd convert: --qep needs a GPTQ method\n");
		return 2;
	}
	if (!o->model || !o->out) {
		fprintf(stderr, "shiftadd convert: --model and --out are required (see --help)\n");
		return 2;
	}
	return check_mixed(o);
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
		char rel[32];

		/* JSON has no NaN: methods without a Hessian have no output error */
		if (isfinite(r->rel_err_output))
			snprintf(rel, sizeof(rel), "%.6g", r->rel_err_output);
		else
			snprintf(rel, sizeof(rel), "null");
		printf("%s{\"name\": \"%s\", \"rows\": %u, \"cols\": %u, \"bits\": %u, "
		       "\"bits_per_weight\": %.4f, \"rel_err_output\": %s, \"err_weight\": %.6g, "
		       "\"seconds\": %.3f}",
		       done > 1 ? ",\n " : "[", t->name, r->n_rows, r->n_cols, r->bits,
		       r->bits_per_weight, rel, r->err_weight, t->seconds);
		if (done == total)
			printf("]\n");
		return;
	}
	if (ll->quiet)
		return;
	if (ll->bar->tty)
		fprintf(stderr, "\r\033[K");
	fprintf(stderr, "  %-22s %5u x %-5u %u-bit %5.2f bpw  rel. output error %.4g  (%.2f s)\n",
		t->name, r->n_rows, r->n_cols, r->bits, r->bits_per_weight, r->rel_err_output,
		t->seconds);
}

static int load(const struct conv_opts *o, struct model **ret_m)
{
	struct errbuf e = { { 0 } };
	int r = model_load(o->model, ret_m, &e);

	if (r < 0)
		fprintf(stderr, "shiftadd convert: '%s': %s\n", o->model, errbuf_str(&e, r));
	return r;
}

/*
 * --qep not given: calib_default_qep(); --qep-samples not given: calib_default_qep_samples().
 * Says on stderr what error propagation runs with, or why the method's default is off.
 */
static void resolve_qep(const struct model *m, struct calib_run *run)
{
	const char *name = reparam_method_name(run->q.method);
	uint32_t ns = run->calib.nsamples;
	bool auto_qep = run->qep == QEP_AUTO;
	char why[96] = "";

	if (auto_qep)
		run->qep = calib_default_qep(m, run);
	if (run->qep_samples == QEP_SAMPLES_AUTO)
		run->qep_samples = calib_default_qep_samples(m, run);
	if (run->qep > 0) {
		if (auto_qep)
			snprintf(why, sizeof(why), " (%s's default; --qep 0 is off)", name);
		fprintf(stderr, "convert: error propagation %.2g%s, fitted on %u of %u windows\n",
			run->qep, why, calib_qep_fit_samples(run), ns);
	} else if (auto_qep && reparam_default_qep(run->q.method) > 0)
		fprintf(stderr,
			"convert: error propagation off: %u x %u calibration tokens, fewer than %u "
			"per input dimension of the widest linear (--qep A forces it)\n",
			ns, run->calib.seqlen, CALIB_QEP_MIN_TOKENS_PER_DIM);
}

/* One calibration pass over @m, under a progress bar titled @what. */
static int quantize(struct model *m, struct calib_run *run, const char *what, struct layer_log *ll,
		    struct calib_out *out, struct errbuf *e)
{
	struct progress bar;
	int r;

	resolve_qep(m, run);
	progress_begin(&bar, stderr, what, "steps", 0);
	ll->bar = &bar;
	run->progress = progress_cb;
	run->progress_arg = &bar;
	r = calib_quantize_model(m, run, out, e);
	progress_end(&bar);
	return r;
}

/*
 * --bits auto, before the conversion: measure every linear at each candidate width with a
 * base-width calibration pass (or load a saved measurement), then choose the widths.
 */
static int allocate(const struct conv_opts *o, struct mixbits *mb)
{
	struct errbuf e = { { 0 } };
	struct layer_log ll = { .quiet = o->quiet };
	struct calib_run run = o->run;
	struct calib_out out = { 0 };
	struct model *m = NULL;
	int r;

	if (o->alloc_load) {
		r = mixbits_load(mb, &o->run.q, o->alloc_load, &e);
		if (r < 0)
			goto fail;
		fprintf(stderr, "convert: errors of %u linears from %s (measured at %u bits)\n",
			mb->n_layers, o->alloc_load, mb->base_bits);
	} else {
		run.head_bits = 0; /* the head keeps its width: nothing to measure */
		r = mixbits_init(mb, &o->run.q, o->alloc_base, &e);
		if (r < 0)
			goto fail;
		r = load(o, &m);
		if (r < 0)
			return r;
		fprintf(stderr,
			"convert: pass 1 of 2: %s at %u bits, measuring each linear at 2, 3 "
			"and 4 bits\n",
			reparam_method_name(o->run.q.method), o->alloc_base);
		run.on_layer = on_layer;
		run.on_layer_arg = &ll;
		mixbits_measure_hooks(mb, &run);
		r = quantize(m, &run, "measure", &ll, &out, &e);
		calib_out_done(&out);
		model_free(m);
		if (r == 0)
			r = mixbits_measure_check(mb, &e);
		if (r == 0 && o->alloc_save)
			r = mixbits_save(mb, o->alloc_save, &e);
		if (r < 0)
			goto fail;
	}
	r = mixbits_solve(mb, o->alloc, o->weight, o->avg_bits, &e);
	if (r < 0)
		goto fail;
	fprintf(stderr,
		"convert: %s allocation under %.4g bits: %.4f bits per weight, predicted %s error "
		"%.6g%s\n",
		mixbits_alloc_name(o->alloc), o->avg_bits, mb->avg_bits,
		mixbits_weight_name(o->weight), mb->predicted_err,
		mb->exact ? "" : " (knapsack on a coarsened grid)");
	return 0;
fail:
	fprintf(stderr, "shiftadd convert: %s\n", errbuf_str(&e, r));
	return r;
}

/* The per-layer result of a mixed-bit conversion, on stdout. */
static void print_alloc_table(const struct mixbits *mb, const struct calib_out *out)
{
	double pred = 0, got = 0, wsum = 0, nsum = 0;
	uint32_t hist[MIXBITS_N_WIDTHS] = { 0 };

	printf("%-22s %11s %4s %6s %10s %10s %10s %10s %9s\n", "layer", "shape", "bits", "bpw",
	       "err@2", "err@3", "err@4", "err", "rel.err");
	for (uint32_t i = 0; i < out->n; i++) {
		const struct calib_tensor *t = &out->t[i];
		const struct reparam_result *r = &t->res;
		const struct mixbits_layer *l = NULL;
		char shape[24];

		for (uint32_t k = 0; k < mb->n_layers && !l; k++)
			if (!strcmp(mb->layers[k].name, t->name))
				l = &mb->layers[k];
		if (!l)
			continue;
		for (uint32_t w = 0; w < MIXBITS_N_WIDTHS; w++)
			if (mixbits_width(w) == l->bits) {
				hist[w]++;
				pred += l->err[w];
			}
		got += r->err_output;
		wsum += r->bits_per_weight * r->n_rows * r->n_cols;
		nsum += (double)r->n_rows * r->n_cols;
		snprintf(shape, sizeof(shape), "%ux%u", r->n_rows, r->n_cols);
		printf("%-22s %11s %4u %6.3f %10.4g %10.4g %10.4g %10.4g %9.5f\n", t->name, shape,
		       r->bits, r->bits_per_weight, l->err[0], l->err[1], l->err[2], r->err_output,
		       r->rel_err_output);
	}
	printf("widths: %u x 2-bit, %u x 3-bit, %u x 4-bit; %.4f bits per weight (budget %.4g, "
	       "%s); error %.6g (predicted %.6g); objective (%s) %.6g\n",
	       hist[0], hist[1], hist[2], nsum > 0 ? wsum / nsum : 0, mb->avg_bits_budget,
	       mixbits_alloc_name(mb->alloc), got, pred, mixbits_weight_name(mb->weight),
	       mb->predicted_err);
}

static int run(struct conv_opts *o)
{
	struct errbuf e = { { 0 } };
	struct model *m = NULL;
	struct calib_out out = { 0 };
	struct layer_log ll = { .json = o->json, .quiet = o->quiet };
	struct mixbits mb = { 0 };
	struct export_meta meta;
	double t0 = progress_now();
	int r;

	r = check_out_dir(o->out);
	if (r < 0)
		return 1;
	o->run.calib.text_path = o->calib ? o->calib : tool_shared_path("calib/wiki-passages.txt");
	if (o->mixed) {
		r = allocate(o, &mb);
		if (r < 0)
			goto out;
		mixbits_convert_hooks(&mb, &o->run);
	}
	r = load(o, &m);
	if (r < 0)
		goto out;
	if (o->mixed)
		fprintf(stderr, "convert: pass 2 of 2: %s at the chosen widths, %u layers\n",
			reparam_method_name(o->run.q.method), m->cfg.n_layers);
	else
		fprintf(stderr, "convert: %s, %s %u-bit, %u layers%s%s\n", o->model,
			reparam_method_name(o->run.q.method), o->run.q.bits, m->cfg.n_layers,
			reparam_method_needs_hessian(o->run.q.method) ? ", calibration products in "
								      : " (no calibration needed)",
			reparam_method_needs_hessian(o->run.q.method)
				? calib_math_name(o->run.calib.math)
				: "");
	o->run.on_layer = on_layer;
	o->run.on_layer_arg = &ll;
	r = quantize(m, &o->run, "convert", &ll, &out, &e);
	if (r < 0) {
		fprintf(stderr, "shiftadd convert: %s\n", errbuf_str(&e, r));
		goto out;
	}
	/* the head (--head shiftadd) is not one of the measured linears */
	if (o->mixed && (mb.n_lookup_miss || out.n - (o->run.head_bits ? 1 : 0) != mb.n_layers)) {
		fprintf(stderr,
			"shiftadd convert: the measurement has %u linears, the model %u (%u without "
			"one): was it made for another model?\n",
			mb.n_layers, out.n, mb.n_lookup_miss);
		r = -EINVAL;
		goto out;
	}
	if (o->mixed && !o->json)
		print_alloc_table(&mb, &out);
	meta = (struct export_meta){ .run = &o->run,
				     .calib_file = o->run.calib.text_path,
				     .calib_tokens = out.n_tokens,
				     .alloc = o->mixed ? mixbits_alloc_name(o->alloc) : NULL,
				     .avg_bits_budget = o->avg_bits,
				     .head_q5_0 = o->head_q5_0 };
	r = export_gguf(o->model, m, &out, &meta, o->out, &e);
	if (r < 0) {
		fprintf(stderr, "shiftadd convert: %s\n", errbuf_str(&e, r));
		goto out;
	}
	fprintf(stderr, "convert: wrote %s in %.1f s\n", o->out, progress_now() - t0);
out:
	calib_out_done(&out);
	model_free(m);
	mixbits_done(&mb);
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
