// SPDX-License-Identifier: MIT
/*
 * Converted models on the real weights (issues 4 and 8): the default model converted in
 * process to shiftadd-acc, shiftadd-lat and shiftadd-rht (both sides) at 3 bits, the last
 * with its 49152-row LM head converted too (4 bits, `--head shiftadd`), then
 *  - every linear of each file loads on the shift-add kernels, and the perplexity of the first
 *    WikiText-2 test tokens through the kernels is within 0.5% of the dense dequantized path;
 *  - the rht file serves from shiftaddd (engine backend, 2 workers): concurrent greedy requests
 *    give exactly the ids of in-process greedy generation on the kernels (the kernels give the
 *    same bits for any batch size and worker split, so no margin is needed), and so do the
 *    same prompts sent again, now starting from the KV their first round left in the slots.
 * The calibration is tiny (1 x 128 tokens, 5 BCQ rounds) to fit CI; the quality of such files
 * is not what is tested, their execution is. Exit 0 pass, 1 fail (also when the host has no
 * io_uring or the model or ../shared data are missing).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/eval.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "include/shiftadd.h"
#include "reparam/calib.h"
#include "reparam/export.h"
#include "tests/integ/harness.h"
#include "tests/lib/engine_greedy.h"

#define MODEL_PATH "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define CALIB_PATH "../shared/data/calib/wiki-passages.txt"
#define WIKI_PATH  "../shared/data/wikitext-2/wiki.test.rows.txt"
#define PPL_TOKENS 512 /* one window */
#define N_NEW	   8

struct conv_case {
	const char *name;
	enum reparam_method method;
	enum reparam_rht rht;
	uint32_t head_bits; /* 0: the Q8_0 head stays */
};

static const struct conv_case cases[] = {
	{ "shiftadd-acc", REPARAM_SHIFTADD_ACC, REPARAM_RHT_NONE, 0 },
	{ "shiftadd-lat", REPARAM_SHIFTADD_LAT, REPARAM_RHT_NONE, 0 },
	{ "shiftadd-rht-both", REPARAM_SHIFTADD_RHT, REPARAM_RHT_BOTH, 4 },
};

#define N_CASES	 (sizeof(cases) / sizeof(cases[0]))
#define RHT_CASE 2

static const char *const prompts[] = {
	"The capital of France is",
	"1, 2, 3, 4,",
	"Once upon a time",
	"def add(a, b):",
};

#define N_PROMPTS (sizeof(prompts) / sizeof(prompts[0]))

static char dir[64];
static char paths[N_CASES][128];

/* Convert the default model with @c into @out, as `shiftadd convert` does. */
static int convert(const struct conv_case *c, const char *out)
{
	struct calib_run run = { .calib = { .text_path = CALIB_PATH,
					    .nsamples = 1,
					    .seqlen = 128,
					    .dtype = CALIB_DTYPE_F32 },
				 .head_bits = c->head_bits };
	struct calib_out res = { 0 };
	struct export_meta meta;
	struct errbuf e = { { 0 } };
	struct model *m;
	int r;

	reparam_opts_init(&run.q, c->method, 3);
	run.q.rounds = 5;
	if (c->rht != REPARAM_RHT_NONE)
		run.q.rht = c->rht;
	r = model_load(MODEL_PATH, &m, &e);
	if (r < 0)
		goto out;
	run.qep = calib_default_qep(m, &run); /* as the CLI: 0 for this little calibration */
	r = calib_quantize_model(m, &run, &res, &e);
	if (r == 0) {
		meta = (struct export_meta){ .run = &run,
					     .calib_file = CALIB_PATH,
					     .calib_tokens = res.n_tokens };
		r = export_gguf(MODEL_PATH, m, &res, &meta, out, &e);
	}
	calib_out_done(&res);
	model_free(m);
out:
	if (r < 0)
		fprintf(stderr, "%s: %s\n", c->name, errbuf_str(&e, r));
	return r;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/shiftadd-conv-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	for (size_t i = 0; i < N_CASES; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/%s-3.gguf", dir, cases[i].name);
		if (convert(&cases[i], paths[i]) < 0)
			return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_CASES; i++)
		unlink(paths[i]);
	return rmdir(dir);
}

/* The first PPL_TOKENS + 1 tokens of the WikiText-2 test text, as `eval ppl` reads it. */
static int32_t *wiki_tokens(const struct model *m)
{
	char *text;
	size_t len, n;
	int32_t *ids;

	if (eval_read_rows_joined(WIKI_PATH, &text, &len) < 0)
		return NULL;
	/* a few KB of text hold PPL_TOKENS tokens many times over */
	if (tokenizer_encode(m->tok, text, len < 16384 ? len : 16384, false, &ids, &n) < 0)
		ids = NULL;
	free(text);
	if (ids && n < PPL_TOKENS + 1) {
		free(ids);
		ids = NULL;
	}
	return ids;
}

/* PPL of @path's first window on @be; *n_shiftadd and *n_layers as loaded. */
static double ppl_of(const char *path, enum linear_backend be, uint32_t *n_shiftadd,
		     uint32_t *n_layers)
{
	struct model_load_opts lo = { .backend = be };
	struct ppl_result res;
	struct errbuf e = { { 0 } };
	struct model *m;
	int32_t *ids;
	double ppl = NAN;

	int r = model_load_ex(path, &lo, &m, &e);

	if (r < 0) {
		fprintf(stderr, "%s: %s\n", path, errbuf_str(&e, r));
		return NAN;
	}
	*n_shiftadd = m->n_shiftadd;
	*n_layers = m->cfg.n_layers;
	ids = wiki_tokens(m);
	if (ids &&
	    eval_ppl(m, ids, PPL_TOKENS + 1, PPL_TOKENS, 1, false, KV_F32, NULL, NULL, &res) == 0)
		ppl = res.ppl;
	free(ids);
	model_free(m);
	return ppl;
}

static void test_kernels_match_dense_ppl(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_CASES; i++) {
		uint32_t n_sa = 0, n_dense = 0, n_layers = 0;
		double sa = ppl_of(paths[i], LINEAR_BACKEND_SHIFTADD, &n_sa, &n_layers);
		double dense = ppl_of(paths[i], LINEAR_BACKEND_DENSE, &n_dense, &n_layers);

		fprintf(stderr, "%s 3-bit: PPL %.4f on the kernels (%u linears), %.4f dense\n",
			cases[i].name, sa, n_sa, dense);
		/* q, k, v, o, gate, up, down, and the head where it was converted */
		assert_int_equal(n_sa, 7 * n_layers + (cases[i].head_bits ? 1 : 0));
		assert_int_equal(n_dense, 0);
		assert_true(isfinite(dense) && dense > 1.0);
		assert_true(fabs(sa / dense - 1.0) < 0.005);
	}
}

/* In-process greedy ids of every prompt on the kernels: the daemon's reference. */
static void reference(const char *path, struct engine_greedy want[N_PROMPTS])
{
	struct model_load_opts lo = { .backend = LINEAR_BACKEND_SHIFTADD };
	struct errbuf e = { { 0 } };
	struct model *m;

	assert_int_equal(model_load_ex(path, &lo, &m, &e), 0);
	for (size_t i = 0; i < N_PROMPTS; i++) {
		assert_int_equal(engine_greedy(m, prompts[i], N_NEW, &want[i]), 0);
		assert_true(want[i].n_ids > 0);
	}
	model_free(m);
}

static void test_rht_model_serves_from_the_daemon(void **state)
{
	/* clang-format off */
	const char *const args[] = {
		"--backend", "engine",
		"--model", paths[RHT_CASE],
		"--n-slots", "8",
		"--n-ctx", "256",
		"--max-prompt-tokens", "64",
		"--log-level", "warn",
		"--max-workers", "2",
		NULL,
	};
	/* clang-format on */
	struct engine_greedy want[N_PROMPTS];
	struct harness_ids got[N_PROMPTS];
	struct harness h;
	shiftadd_client *c;
	uint64_t ids[N_PROMPTS];
	uint32_t cached = 0;
	bool ok = true;

	(void)state;
	reference(paths[RHT_CASE], want);
	assert_int_equal(harness_start(&h, "conv", "", args), 0);
	assert_int_equal(shiftadd_connect(h.sock_path, "integ-converted", &c), 0);
	for (int round = 0; round < 2; round++) {
		memset(got, 0, sizeof(got));
		for (size_t i = 0; i < N_PROMPTS; i++) {
			struct shiftadd_request req = { .prompt = prompts[i],
							.max_tokens = N_NEW,
							.stream = i % 2 };

			assert_int_equal(
				shiftadd_submit(c, &req, harness_collect_ids, &got[i], &ids[i]), 0);
		}
		for (size_t i = 0; i < N_PROMPTS; i++) {
			char what[64];

			assert_int_equal(shiftadd_wait(c, ids[i], 120000), 0);
			snprintf(what, sizeof(what), "round %d, prompt %zu", round, i);
			ok &= harness_ids_match(what, &got[i], want[i].ids, want[i].n_ids,
						want[i].eos);
			if (round == 1)
				cached += got[i].cached;
		}
	}
	fprintf(stderr, "second round: %u prompt tokens reused\n", cached);
	assert_true(cached > 0);
	shiftadd_close(c);
	assert_int_equal(harness_stop(&h), 0);
	assert_true(ok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernels_match_dense_ppl),
		cmocka_unit_test(test_rht_model_serves_from_the_daemon),
	};
	const char *need[] = { MODEL_PATH, CALIB_PATH, WIKI_PATH };

	if (harness_prepare("integ-converted"))
		return 1;
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (access(need[i], R_OK) < 0) {
			fprintf(stderr,
				"integ-converted: %s missing: run 'make model' (../shared beside the checkout)\n",
				need[i]);
			return 1;
		}
	return cmocka_run_group_tests_name("integ/converted", tests, setup, teardown) ? 1 : 0;
}
