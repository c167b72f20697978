// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pool.h"
#include "common/progress.h"
#include "engine/chat.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "tools/opt.h"
#include "tools/shiftadd/cmds.h"
#include "tools/shiftadd/load.h"

static const struct opt_spec specs[] = {
	{ "model", 'm', "PATH", NULL, "model: a GGUF file or an HF folder (required)" },
	{ "prompt", 'p', "TEXT", NULL, "prompt text (required)" },
	{ "chat", 'c', NULL, NULL, "wrap the prompt in the model's chat template" },
	{ "system", 0, "TEXT", "the template's", "system message for --chat" },
	{ "n-predict", 'n', "N", "128", "maximum number of tokens to generate" },
	{ "temp", 't', "T", "0.7", "sampling temperature; 0 = greedy" },
	{ "top-k", 0, "K", "50", "keep the K most likely tokens; 0 = off" },
	{ "top-p", 0, "P", "0.9", "nucleus sampling mass; 1 = off" },
	{ "seed", 's', "S", "0", "random seed" },
	{ "threads", 'j', "N", "all CPUs", "threads for the matrix products (BLAS and kernels)" },
	{ "backend", 0, "NAME", "shiftadd",
	  "dense (dequantize shift-add layers, BLAS) or shiftadd (LUT kernels)" },
	{ "kv-type", 0, "T", "f16",
	  "KV cache elements: f16 (half the memory and attention traffic; needs AVX2 with F16C, "
	  "else f32) or f32" },
	{ "special", 0, NULL, NULL, "recognise special tokens (<|im_start|>...) in --prompt" },
	{ "json", 0, NULL, NULL, "print one JSON object with the text and timings at the end" },
	{ "help", 'h', NULL, NULL, "show this help" },
	{ NULL, 0, NULL, NULL, NULL },
};

struct gen_opts {
	const char *model, *prompt, *system;
	bool chat, special, json;
	unsigned n_predict, top_k, threads;
	int backend; /* enum linear_backend */
	int kv_type; /* enum kv_type */
	float temp, top_p;
	unsigned long long seed;
};

static int parse(int argc, char **argv, struct gen_opts *o)
{
	struct option lo[OPT_MAX + 1];
	char so[3 * OPT_MAX + 2];
	int c;

	*o = (struct gen_opts){ .backend = LINEAR_BACKEND_SHIFTADD,
				.kv_type = KV_F16,
				.n_predict = 128,
				.temp = 0.7f,
				.top_k = 50,
				.top_p = 0.9f };
	opt_build(specs, lo, so);
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		int i = opt_index(specs, c);
		const char *n = i >= 0 ? specs[i].name : "";
		int r = 0;

		if (c == '?' || c == ':') {
			fprintf(stderr, "shiftadd generate: bad option '%s'\n", argv[optind - 1]);
			return 2;
		}
		if (!strcmp(n, "model"))
			o->model = optarg;
		else if (!strcmp(n, "prompt"))
			o->prompt = optarg;
		else if (!strcmp(n, "chat"))
			o->chat = true;
		else if (!strcmp(n, "system"))
			o->system = optarg;
		else if (!strcmp(n, "n-predict"))
			r = opt_u32(n, optarg, &o->n_predict);
		else if (!strcmp(n, "temp"))
			r = opt_float(n, optarg, &o->temp);
		else if (!strcmp(n, "top-k"))
			r = opt_u32(n, optarg, &o->top_k);
		else if (!strcmp(n, "top-p"))
			r = opt_float(n, optarg, &o->top_p);
		else if (!strcmp(n, "seed"))
			r = opt_u64(n, optarg, &o->seed);
		else if (!strcmp(n, "threads"))
			r = opt_u32(n, optarg, &o->threads);
		else if (!strcmp(n, "backend")) {
			o->backend = tool_backend_parse(optarg);
			if (o->backend < 0) {
				fprintf(stderr,
					"shiftadd generate: --backend must be dense or shiftadd, not '%s'\n",
					optarg);
				return 2;
			}
		} else if (!strcmp(n, "kv-type")) {
			if (tool_kv_type_parse("shiftadd generate", optarg, &o->kv_type) < 0)
				return 2;
		} else if (!strcmp(n, "special"))
			o->special = true;
		else if (!strcmp(n, "json"))
			o->json = true;
		else if (!strcmp(n, "help")) {
			opt_usage(stdout, "shiftadd generate --model PATH --prompt TEXT [OPTIONS]",
				  "Generate text and stream it to stdout; timings go to stderr.",
				  specs);
			return 1;
		}
		if (r < 0)
			return 2;
	}
	if (!o->model || !o->prompt) {
		fprintf(stderr,
			"shiftadd generate: --model and --prompt are required (see --help)\n");
		return 2;
	}
	if (!(o->top_p > 0)) {
		fprintf(stderr, "shiftadd generate: --top-p must be > 0\n");
		return 2;
	}
	return 0;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", f);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

/* Encode the prompt (chat-wrapped if asked), with BOS if the model wants one. */
static int build_prompt(const struct model *m, const struct gen_opts *o, int32_t **ids, size_t *n)
{
	char *text = NULL;
	int r;

	if (o->chat) {
		r = chat_render(m->chat_template, o->system, o->prompt, &text);
		if (r < 0) {
			fprintf(stderr,
				"shiftadd generate: model has no chat template we support\n");
			return r;
		}
	}
	r = tokenizer_encode_text(m->tok, text ? text : o->prompt, strlen(text ? text : o->prompt),
				  o->chat || o->special, ids, n);
	free(text);
	return r;
}

static bool is_stop(const struct model *m, int32_t id, int32_t eot)
{
	return id == tokenizer_eos(m->tok) || (eot >= 0 && id == eot);
}

static int run(const struct gen_opts *o)
{
	struct errbuf e = { { 0 } };
	struct model *m = NULL;
	struct pool *pool = NULL;
	struct kv_cache kv = { 0 };
	struct sampler_params sp = {
		.temperature = o->temp, .top_k = o->top_k, .top_p = o->top_p, .seed = o->seed
	};
	struct sampler_cand *cand = NULL;
	uint64_t rng = sampler_seed(o->seed);
	int32_t *ids = NULL, eot, tok;
	size_t n_prompt, n_ctx, out_len = 0, out_cap = 4096;
	char *out = malloc(out_cap);
	float *logits = NULL;
	double t0, t_load, t_prefill, t_end;
	unsigned n_gen = 0;
	int r;

	t0 = progress_now();
	r = tool_model_load(o->model, o->backend, o->threads, &m, &pool, &e);
	if (r < 0) {
		fprintf(stderr, "shiftadd generate: '%s': %s\n", o->model, errbuf_str(&e, r));
		goto out;
	}
	t_load = progress_now();
	if (!m->tok) {
		fprintf(stderr, "shiftadd generate: '%s' has no tokenizer\n", o->model);
		r = -EINVAL;
		goto out;
	}
	r = build_prompt(m, o, &ids, &n_prompt);
	if (r < 0)
		goto out;
	n_ctx = n_prompt + o->n_predict;
	if (n_ctx > m->cfg.max_ctx) {
		fprintf(stderr,
			"shiftadd generate: prompt (%zu tokens) + -n %u exceeds the context of %u\n",
			n_prompt, o->n_predict, m->cfg.max_ctx);
		r = -EINVAL;
		goto out;
	}
	eot = o->chat ? tokenizer_find(m->tok, "<|im_end|>") : -1;
	if (eot < 0 && o->chat)
		eot = tokenizer_find(m->tok, "<|eot_id|>");
	logits = malloc(m->cfg.n_vocab * sizeof(float));
	r = !logits || !out ? -ENOMEM
			    : kv_cache_init_type(&kv, m, 1, n_ctx, (enum kv_type)o->kv_type);
	if (r == 0 && !(cand = malloc(m->cfg.n_vocab * sizeof(*cand))))
		r = -ENOMEM;
	if (r < 0)
		goto out;
	r = model_forward_seq(m, &kv, 0, ids, n_prompt, 0, logits);
	t_prefill = progress_now();
	while (r == 0 && n_gen < o->n_predict) {
		char piece[256];
		int len;

		tok = sampler_sample(&sp, &rng, logits, m->cfg.n_vocab, cand);
		if (is_stop(m, tok, eot))
			break;
		n_gen++;
		len = tokenizer_piece(m->tok, tok, piece, sizeof(piece));
		len = len < 0 ? 0 : len > (int)sizeof(piece) ? (int)sizeof(piece) : len;
		if (o->json) {
			if (out_len + len + 1 > out_cap) {
				char *no = realloc(out, out_cap * 2 + len);

				if (!no) {
					r = -ENOMEM;
					break;
				}
				out = no;
				out_cap = out_cap * 2 + len;
			}
			memcpy(out + out_len, piece, len);
			out_len += len;
		} else {
			fwrite(piece, 1, len, stdout);
			fflush(stdout);
		}
		if (n_gen < o->n_predict)
			r = model_forward_seq(m, &kv, 0, &tok, 1, n_prompt + n_gen - 1, logits);
	}
	t_end = progress_now();
	if (r < 0) {
		fprintf(stderr, "\nshiftadd generate: %s\n", strerror(-r));
		goto out;
	}
	if (o->json) {
		out[out_len] = 0;
		printf("{\"text\": ");
		json_str(stdout, out);
		printf(", \"prompt_tokens\": %zu, \"generated_tokens\": %u, \"load_s\": %.3f, "
		       "\"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f, \"backend\": \"%s\", "
		       "\"shiftadd_layers\": %u, \"kv_type\": \"%s\"}\n",
		       n_prompt, n_gen, t_load - t0, n_prompt / (t_prefill - t_load),
		       n_gen > 1 ? (n_gen - 1) / (t_end - t_prefill) : 0.0,
		       tool_backend_name(o->backend), m->n_shiftadd, kv_cache_type_name(&kv));
	} else {
		printf("\n");
		fprintf(stderr,
			"[%zu prompt tokens, %.1f tok/s prefill; %u generated, %.1f tok/s decode; load %.2f s]\n",
			n_prompt, n_prompt / (t_prefill - t_load), n_gen,
			n_gen ? n_gen / (t_end - t_prefill) : 0.0, t_load - t0);
	}
out:
	free(out);
	free(ids);
	free(logits);
	free(cand);
	kv_cache_done(&kv);
	model_free(m);
	pool_free(pool);
	return r < 0 ? 1 : 0;
}

int cmd_generate(int argc, char **argv)
{
	struct gen_opts o;
	int r = parse(argc, argv, &o);

	if (r)
		return r == 1 ? 0 : r;
	tool_set_threads(o.threads);
	return run(&o);
}
