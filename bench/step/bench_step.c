// SPDX-License-Identifier: MIT
/*
 * Batched decode step benchmark: what the daemon's scheduler asks of the engine with S
 * active sequences, in one process, without IPC. Sequence 0 is prefilled once with the
 * prompt (repeated to --depth tokens), every sequence of a run starts from a copy of that
 * KV prefix; then every step feeds one token per sequence through model_forward()
 * and model_logits() (all S rows, as the daemon's LOGITS_BATCH does) and takes each
 * sequence's greedy next token. Reports the time per step, tokens/s and the split between
 * the forward pass and the LM head, for S = 1 beside the batched S so the batching gain is
 * a ratio measured in one run.
 */
#include "common/err.h"
#include "common/pool.h"
#include "common/progress.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "tools/opt.h"
#include "tools/shiftadd/load.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEQS 64

static const char usage_line[] =
	"bench-step --model FILE [--seqs LIST] [--threads N] [--steps N] [--repeat R] [--depth D]\n"
	"           [--kv-type T] [--json]";
static const char desc[] =
	"Time batched decode steps in process: S sequences advance one token per step through\n"
	"the forward pass and the LM head, as shiftaddd's scheduler runs them. For each S in\n"
	"LIST the best of R runs of N steps is reported: ms per step, tokens/s, the LM head's\n"
	"share, and tokens/s relative to the first S of the list. --depth D times the steps\n"
	"after D positions of context, where attention reads D keys and values per layer.";

static const struct opt_spec specs[] = {
	{ "model", 'm', "FILE", NULL,
	  "GGUF model (a converted file runs on the shift-add kernels; required)" },
	{ "seqs", 's', "LIST", "1,16", "comma-separated sequence counts, 1..64" },
	{ "threads", 't', "N", "1",
	  "worker threads, the caller included, pinned one per CPU (1..256)" },
	{ "steps", 'n', "N", "32", "decode steps per run (1..100000)" },
	{ "repeat", 'r', "R", "5", "runs per point, the fastest is reported (1..1000)" },
	{ "prompt", 'p', "TEXT", "Once upon a time", "prompt of every sequence" },
	{ "kv-type", 'k', "T", "f16",
	  "KV cache elements: f16 or f32 (f16 needs the fused attention kernel, else f32)" },
	{ "depth", 'd', "D", "0",
	  "context before the timed steps: the prompt's tokens repeated to D positions "
	  "(0: the prompt once)" },
	{ "json", 'j', NULL, NULL, "one JSON object per point on stdout instead of a table" },
	{ "help", 'h', NULL, NULL, "show this help" },
	{ NULL, 0, NULL, NULL, NULL },
};

struct opts {
	const char *model, *prompt;
	enum kv_type kv_type;
	uint32_t seqs[MAX_SEQS], n_points, threads, steps, repeat, depth;
	int json;
};

struct point {
	uint32_t seqs;
	double step_ms, head_ms, tok_s;
};

/* opt_u32() (tools/opt.h) restricted to [@lo, @hi]. */
static int parse_u32(const char *name, const char *s, uint32_t lo, uint32_t hi, uint32_t *ret)
{
	unsigned v;

	if (opt_u32(name, s, &v) < 0)
		return -EINVAL;
	if (v < lo || v > hi) {
		fprintf(stderr, "bench-step: --%s %u out of range %u..%u\n", name, v, lo, hi);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

static int parse_seqs(const char *s, struct opts *o)
{
	char buf[256], *save = NULL;

	if (strlen(s) >= sizeof(buf)) {
		fprintf(stderr, "bench-step: --seqs list too long\n");
		return -EINVAL;
	}
	strcpy(buf, s);
	o->n_points = 0;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (o->n_points == MAX_SEQS) {
			fprintf(stderr, "bench-step: at most %d points\n", MAX_SEQS);
			return -EINVAL;
		}
		if (parse_u32("seqs", t, 1, MAX_SEQS, &o->seqs[o->n_points++]) < 0)
			return -EINVAL;
	}
	if (!o->n_points) {
		fprintf(stderr, "bench-step: empty --seqs\n");
		return -EINVAL;
	}
	return 0;
}

/* Returns 0 to run, 1 after --help, 2 on a usage error. */
static int parse(int argc, char **argv, struct opts *o)
{
	struct option longopts[OPT_MAX + 1];
	char shortopts[3 * OPT_MAX + 2];
	int c, r = 0;

	opt_build(specs, longopts, shortopts);
	while (!r && (c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		int i = opt_index(specs, c);
		const char *name = i >= 0 ? specs[i].name : "";

		if (c == '?' || c == ':' || i < 0) {
			fprintf(stderr, "bench-step: bad option '%s'\nTry 'bench-step --help'.\n",
				argv[optind - 1]);
			return 2;
		}
		if (!strcmp(name, "help")) {
			opt_usage(stdout, usage_line, desc, specs);
			return 1;
		}
		if (!strcmp(name, "model"))
			o->model = optarg;
		else if (!strcmp(name, "seqs"))
			r = parse_seqs(optarg, o);
		else if (!strcmp(name, "threads"))
			r = parse_u32(name, optarg, 1, 256, &o->threads);
		else if (!strcmp(name, "steps"))
			r = parse_u32(name, optarg, 1, 100000, &o->steps);
		else if (!strcmp(name, "repeat"))
			r = parse_u32(name, optarg, 1, 1000, &o->repeat);
		else if (!strcmp(name, "prompt"))
			o->prompt = optarg;
		else if (!strcmp(name, "kv-type") && kv_type_parse(optarg, &o->kv_type) < 0) {
			fprintf(stderr, "bench-step: --kv-type must be f16 or f32\n");
			r = -EINVAL;
		} else if (!strcmp(name, "depth"))
			r = parse_u32(name, optarg, 0, 1u << 20, &o->depth);
		else if (!strcmp(name, "json"))
			o->json = 1;
	}
	if (r)
		return 2;
	if (optind < argc || !o->model) {
		fprintf(stderr, "bench-step: %s\nTry 'bench-step --help'.\n",
			optind < argc ? "unexpected argument" : "--model is required");
		return 2;
	}
	return 0;
}

struct run {
	const struct model *m;
	struct kv_cache kv;
	int32_t *tokens;
	uint32_t *seq, *pos, n_ctx0;   /* n_ctx0: positions of the shared prefix */
	float *hidden, *logits, *last; /* last: the prefix's final hidden state */
};

/* Start @S sequences from sequence 0's prefix, then time @steps decode steps. */
static int run_point(struct run *R, uint32_t S, uint32_t steps, struct point *pt)
{
	const struct sampler_params greedy = { .temperature = 0 };
	const struct model *m = R->m;
	uint32_t np = R->n_ctx0, V = m->cfg.n_vocab, dim = m->cfg.dim;
	double t_fwd = 0, t_head = 0;
	int r;

	for (uint32_t s = 0; s < S; s++) {
		if (s)
			kv_cache_copy_prefix(&R->kv, 0, s, np);
		memcpy(R->hidden + (size_t)s * dim, R->last, dim * sizeof(float));
		R->seq[s] = s;
	}
	model_logits(m, R->hidden, S, R->logits);
	for (uint32_t k = 0; k < steps; k++) {
		double t0, t1;

		for (uint32_t s = 0; s < S; s++) {
			/* greedy, with the daemon's sampler: the step's untimed part stays its size */
			R->tokens[s] =
				sampler_sample(&greedy, NULL, R->logits + (size_t)s * V, V, NULL);
			R->pos[s] = np + k;
		}
		t0 = progress_now();
		r = model_forward(m, &R->kv, R->tokens, R->seq, R->pos, S, R->hidden);
		if (r < 0)
			return r;
		t1 = progress_now();
		model_logits(m, R->hidden, S, R->logits);
		t_fwd += t1 - t0;
		t_head += progress_now() - t1;
	}
	pt->seqs = S;
	pt->step_ms = (t_fwd + t_head) / steps * 1e3;
	pt->head_ms = t_head / steps * 1e3;
	pt->tok_s = S / (pt->step_ms / 1e3);
	return 0;
}

/* Prefill sequence 0 with @toks repeated to R->n_ctx0 positions, in chunks. */
static int prefill(struct run *R, const int32_t *toks, uint32_t n_toks, float *hidden)
{
	const uint32_t chunk = 256;
	uint32_t dim = R->m->cfg.dim;

	for (uint32_t p0 = 0; p0 < R->n_ctx0; p0 += chunk) {
		uint32_t n = R->n_ctx0 - p0 < chunk ? R->n_ctx0 - p0 : chunk;
		int32_t tk[256];
		uint32_t sq[256], ps[256];
		int r;

		for (uint32_t i = 0; i < n; i++) {
			tk[i] = toks[(p0 + i) % n_toks];
			sq[i] = 0;
			ps[i] = p0 + i;
		}
		r = model_forward(R->m, &R->kv, tk, sq, ps, n, hidden);
		if (r < 0)
			return r;
		memcpy(R->last, hidden + (size_t)(n - 1) * dim, dim * sizeof(float));
	}
	return 0;
}

static int setup(struct run *R, const struct model *m, const struct opts *o, uint32_t max_s,
		 struct errbuf *e)
{
	int32_t *toks = NULL;
	float *hidden = NULL;
	size_t n = 0;
	int r;

	R->m = m;
	r = tokenizer_encode(m->tok, o->prompt, strlen(o->prompt), false, &toks, &n);
	if (r < 0 || !n || n > 4096) {
		free(toks);
		return errbuf_set(e, r < 0 ? r : -EINVAL,
				  "cannot tokenize the prompt (1..4096 tokens)");
	}
	R->n_ctx0 = o->depth ? o->depth : (uint32_t)n;
	if ((uint64_t)R->n_ctx0 + o->steps + 1 > m->cfg.max_ctx) {
		free(toks);
		return errbuf_set(e, -EINVAL, "depth + steps exceed the model's context %u",
				  m->cfg.max_ctx);
	}
	r = kv_cache_init_type(&R->kv, m, max_s, R->n_ctx0 + o->steps + 1, o->kv_type);
	if (r < 0) {
		free(toks);
		return errbuf_set(e, r, "cannot allocate the KV cache");
	}
	R->tokens = malloc(max_s * sizeof(*R->tokens));
	R->seq = malloc(max_s * sizeof(*R->seq));
	R->pos = malloc(max_s * sizeof(*R->pos));
	R->hidden = malloc((size_t)max_s * m->cfg.dim * sizeof(float));
	R->last = malloc((size_t)m->cfg.dim * sizeof(float));
	R->logits = malloc((size_t)max_s * m->cfg.n_vocab * sizeof(float));
	hidden = malloc((size_t)256 * m->cfg.dim * sizeof(float));
	if (!R->tokens || !R->seq || !R->pos || !R->hidden || !R->last || !R->logits || !hidden)
		r = errbuf_set(e, -ENOMEM, "out of memory");
	else if ((r = prefill(R, toks, (uint32_t)n, hidden)) < 0)
		errbuf_set(e, r, "prefill failed");
	free(hidden);
	free(toks);
	return r;
}

static void teardown(struct run *R)
{
	kv_cache_done(&R->kv);
	free(R->last);
	free(R->tokens);
	free(R->seq);
	free(R->pos);
	free(R->hidden);
	free(R->logits);
}

static void report(const struct opts *o, uint32_t depth, const char *kv, const struct point *pt,
		   const struct point *base)
{
	double rel = pt->tok_s / base->tok_s;

	if (o->json) {
		printf("{\"seqs\": %u, \"threads\": %u, \"steps\": %u, \"depth\": %u, "
		       "\"kv_type\": \"%s\", \"step_ms\": %.4f, \"head_ms\": %.4f, "
		       "\"tokens_per_s\": %.2f, \"vs_first\": %.4f}\n",
		       pt->seqs, o->threads, o->steps, depth, kv, pt->step_ms, pt->head_ms,
		       pt->tok_s, rel);
		return;
	}
	printf("%6u %8u %7u %10.3f %9.3f %6.1f%% %10.1f %8.2fx\n", pt->seqs, o->threads, depth,
	       pt->step_ms, pt->head_ms, 100.0 * pt->head_ms / pt->step_ms, pt->tok_s, rel);
}

int main(int argc, char **argv)
{
	struct opts o = { .prompt = "Once upon a time",
			  .kv_type = KV_F16,
			  .seqs = { 1, 16 },
			  .n_points = 2,
			  .threads = 1,
			  .steps = 32,
			  .repeat = 5 };
	struct errbuf e = { 0 };
	struct model *m = NULL;
	struct pool *pool = NULL;
	struct run R = { 0 };
	struct point base = { 0 };
	uint32_t max_s = 0;
	int r = parse(argc, argv, &o);

	if (r)
		return r == 1 ? 0 : r;
	for (uint32_t i = 0; i < o.n_points; i++)
		max_s = o.seqs[i] > max_s ? o.seqs[i] : max_s;
	r = tool_model_load(o.model, LINEAR_BACKEND_SHIFTADD, o.threads, &m, &pool, &e);
	if (r < 0) {
		fprintf(stderr, "bench-step: %s: %s\n", o.model, e.msg[0] ? e.msg : strerror(-r));
		return 1;
	}
	if (!m->tok) {
		r = errbuf_set(&e, -EINVAL, "model '%s' has no tokenizer", o.model);
		goto fail;
	}
	r = setup(&R, m, &o, max_s, &e);
	if (r < 0)
		goto fail;
	if (!o.json)
		printf("KV cache: %s\n", kv_cache_type_name(&R.kv));
	if (!o.json)
		printf("  seqs  threads   depth    step_ms   head_ms   head      tok/s  vs first\n");
	for (uint32_t i = 0; i < o.n_points; i++) {
		struct point best = { 0 }, pt;

		for (uint32_t k = 0; k < o.repeat; k++) {
			r = run_point(&R, o.seqs[i], o.steps, &pt);
			if (r < 0) {
				errbuf_set(&e, r, "forward pass failed");
				goto fail;
			}
			if (!k || pt.step_ms < best.step_ms)
				best = pt;
		}
		if (!i)
			base = best;
		report(&o, R.n_ctx0, kv_cache_type_name(&R.kv), &best, &base);
	}
	r = 0;
	goto out;
fail:
	fprintf(stderr, "bench-step: %s\n", e.msg[0] ? e.msg : strerror(-r));
	r = 1;
out:
	teardown(&R);
	model_free(m);
	pool_free(pool);
	return r;
}
