// SPDX-License-Identifier: MIT
/*
 * Zero-shot task evaluation: scoring on hand-made logits and log-likelihoods whose answers
 * are worked out by hand, task-file parsing (every malformed line names its line), and the
 * whole pipeline on the real SmolLM2 against tests/fixtures/tasks/smollm2-ref.json (token
 * ids and per-choice log-likelihoods from PyPI transformers in float64, tools/ref_tasks.py).
 */
#include "engine/model.h"
#include "engine/tasks.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/engine/loaders_util.h"

#define FIX	"tests/fixtures/tasks/"
#define SMOLLM2 "models/SmolLM2-135M-Instruct.Q4_1.gguf"
/* per-choice log-likelihood against the float64 reference (issue 9) */
#define LL_TOL 1e-3

/* cmocka 1.1 has no floating-point assertion */
static void near_at(double got, double want, double tol, int line)
{
	if (!(fabs(got - want) <= tol))
		fail_msg("line %d: got %.17g, want %.17g (tolerance %g)", line, got, want, tol);
}

#define assert_near(got, want, tol) near_at((got), (want), (tol), __LINE__)

/* ---- log-likelihood sums ---- */

static void test_loglik_uniform_rows(void **state)
{
	float logits[3 * 5];
	int32_t targets[3] = { 0, 4, 2 };
	double ll;

	(void)state;
	for (int i = 0; i < 15; i++)
		logits[i] = 7.25f; /* any constant: softmax is uniform */
	assert_int_equal(task_loglik_rows(logits, 5, targets, 3, &ll), 0);
	assert_near(ll, 3 * -log(5.0), 1e-12);
}

static void test_loglik_known_probabilities(void **state)
{
	/* row 0: p ~ (1, 3, 0) / 4; row 1: p ~ (1, 1, 2) / 4; both far from 0, where a naive
	 * exp() overflows or underflows. The closed forms use the logits as stored (floats). */
	float logits[2 * 3] = { 1000.0f, 1000.0f + (float)log(3.0), -1e30f, -500.0f,
				-500.0f, -500.0f + (float)log(2.0) };
	double d0 = (double)logits[1] - logits[0], d1 = (double)logits[5] - logits[3];
	int32_t t_a[2] = { 1, 2 }, t_b[2] = { 0, 0 };
	double ll;

	(void)state;
	assert_near(d0, log(3.0), 1e-4); /* the probabilities are about what they say */
	assert_int_equal(task_loglik_rows(logits, 3, t_a, 2, &ll), 0);
	assert_near(ll, d0 - log1p(exp(d0)) + d1 - log(2 + exp(d1)), 1e-12);
	assert_near(ll, log(0.75) + log(0.5), 1e-4);
	assert_int_equal(task_loglik_rows(logits, 3, t_b, 2, &ll), 0);
	assert_near(ll, -log1p(exp(d0)) - log(2 + exp(d1)), 1e-12);
	/* one row only */
	assert_int_equal(task_loglik_rows(logits + 3, 3, t_a + 1, 1, &ll), 0);
	assert_near(ll, d1 - log(2 + exp(d1)), 1e-12);
}

static void test_loglik_rejects_bad_target(void **state)
{
	float logits[4] = { 0 };
	int32_t bad_hi[1] = { 4 }, bad_lo[1] = { -1 };
	double ll = 123;

	(void)state;
	assert_int_equal(task_loglik_rows(logits, 4, bad_hi, 1, &ll), -EINVAL);
	assert_int_equal(task_loglik_rows(logits, 4, bad_lo, 1, &ll), -EINVAL);
	assert_near(ll, 123, 0);
}

/* ---- choice decision and tally ---- */

static void test_choose_acc_and_acc_norm_differ(void **state)
{
	/* sums favour the short choice 0; per byte the long choice 2 wins:
	 * -4/2 = -2, -9/3 = -3, -10/20 = -0.5 */
	double ll[3] = { -4, -9, -10 };
	uint32_t len[3] = { 2, 3, 20 }, a, an;

	(void)state;
	task_choose(ll, len, 3, &a, &an);
	assert_int_equal(a, 0);
	assert_int_equal(an, 2);
}

static void test_choose_ties_pick_first(void **state)
{
	double ll[4] = { -6, -3, -3, -6 };
	uint32_t len[4] = { 2, 1, 1, 2 }, a, an;

	(void)state;
	task_choose(ll, len, 4, &a, &an);
	assert_int_equal(a, 1);
	assert_int_equal(an, 0); /* -3 per byte for all four: the first */
}

static void test_tally_counts_and_stderr(void **state)
{
	struct task_item it = { .n_choices = 2 };
	struct task_tally t = { 0 };
	struct task_stats st, s2[2], mean;
	uint32_t len[2] = { 1, 10 };
	/* gold 0 each time; (acc right?, acc_norm right?): (y,y) (y,n) (y,n) (n,n) */
	double ll[4][2] = { { -1, -20 }, { -2, -3 }, { -2, -5 }, { -9, -8 } };

	(void)state;
	for (int i = 0; i < 4; i++)
		task_tally_add(&t, &it, ll[i], len);
	assert_int_equal(t.n, 4);
	assert_int_equal(t.n_acc, 3);
	assert_int_equal(t.n_acc_norm, 1);
	task_tally_stats(&t, &st);
	assert_near(st.acc, 0.75, 1e-15);
	/* sample sd of (1,1,1,0) = 0.5; / sqrt(4) = 0.25 */
	assert_near(st.acc_se, 0.25, 1e-15);
	assert_near(st.acc_norm, 0.25, 1e-15);
	assert_near(st.acc_norm_se, 0.25, 1e-15);

	s2[0] = st;
	s2[1] = (struct task_stats){ .n = 10, .acc = 0.5, .acc_se = 0.1, .acc_norm = 0.35 };
	task_stats_mean(s2, 2, &mean);
	assert_int_equal(mean.n, 14);
	assert_near(mean.acc, 0.625, 1e-15);
	assert_near(mean.acc_norm, 0.3, 1e-15);
	assert_near(mean.acc_se, sqrt(0.25 * 0.25 + 0.1 * 0.1) / 2, 1e-15);
}

/* ---- task files ---- */

static void test_parse_good_file(void **state)
{
	const char *txt =
		"{\"query\": \"Q1\", \"choices\": [\"a\", \"b c\"], \"gold\": 1}\r\n"
		"\n"
		"   \n"
		"{\"gold\": 0, \"extra\": [1, {\"x\": 2}], \"choices\": [\"\\u00e9t\\u00e9\", "
		"\"y\", \"z\"], \"query\": \"\"}\n"
		"{\"query\": \"line\\nbreak \", \"choices\": [\"1\", \"2\"], \"gold\": 1.0}";
	struct task_file *f = NULL;
	struct errbuf e = { { 0 } };

	(void)state;
	assert_int_equal(task_file_parse(txt, strlen(txt), &f, &e), 0);
	assert_int_equal(f->n_items, 3);
	assert_string_equal(f->items[0].query, "Q1");
	assert_int_equal(f->items[0].n_choices, 2);
	assert_string_equal(f->items[0].choices[1], "b c");
	assert_int_equal(f->items[0].gold, 1);
	assert_int_equal(f->items[0].line, 1);
	assert_string_equal(f->items[1].query, "");
	assert_int_equal(f->items[1].n_choices, 3);
	assert_string_equal(f->items[1].choices[0], "\xc3\xa9t\xc3\xa9");
	assert_int_equal(f->items[1].line, 4);
	assert_string_equal(f->items[2].query, "line\nbreak ");
	assert_int_equal(f->items[2].gold, 1);
	assert_int_equal(f->items[2].line, 5);
	task_file_free(f);
}

struct bad_case {
	const char *text;
	const char *want; /* substring of the message, which always starts with "line N:" */
};

static void test_parse_malformed_lines_name_the_line(void **state)
{
	static const char good[] = "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n";
	static const struct bad_case cases[] = {
		{ "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0", "not valid JSON" },
		{ "this is not json", "not valid JSON" },
		{ "[1, 2]", "not a JSON object" },
		{ "{\"choices\": [\"a\", \"b\"], \"gold\": 0}", "missing field \"query\"" },
		{ "{\"query\": \"q\", \"gold\": 0}", "missing field \"choices\"" },
		{ "{\"query\": \"q\", \"choices\": [\"a\", \"b\"]}", "missing field \"gold\"" },
		{ "{\"query\": 5, \"choices\": [\"a\", \"b\"], \"gold\": 0}",
		  "\"query\" is not a string" },
		{ "{\"query\": \"q\", \"choices\": \"a\", \"gold\": 0}",
		  "\"choices\" is not an array" },
		{ "{\"query\": \"q\", \"choices\": [], \"gold\": 0}", "0 choices" },
		{ "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}", "1 choices" },
		{ "{\"query\": \"q\", \"choices\": [\"a\", \"\"], \"gold\": 0}",
		  "choice 1 is empty" },
		{ "{\"query\": \"q\", \"choices\": [\"a\", 7], \"gold\": 0}",
		  "choice 1 is not a string" },
		{ "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 2}", "out of range" },
		{ "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": -1}", "out of range" },
		{ "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0.5}",
		  "not an integer" },
		{ "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": \"0\"}",
		  "not an integer" },
		{ "{\"query\": \"q\xff\", \"choices\": [\"a\", \"b\"], \"gold\": 0}",
		  "not valid UTF-8" },
		{ "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 0} x", "text after" },
	};
	char buf[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct task_file *f = (struct task_file *)0x1;
		struct errbuf e = { { 0 } };
		/* two good lines and a blank one first: the bad item is on line 4 */
		int n = snprintf(buf, sizeof(buf), "%s%s\n%s\n%s", good, good, cases[i].text, good);

		assert_int_equal(task_file_parse(buf, (size_t)n, &f, &e), -EBADMSG);
		assert_ptr_equal(f, (struct task_file *)0x1); /* untouched on failure */
		if (strncmp(e.msg, "line 4: ", 8) || !strstr(e.msg, cases[i].want))
			fail_msg("case %zu: got '%s', want 'line 4: ...%s'", i, e.msg,
				 cases[i].want);
	}
}

static void test_parse_empty_file_and_missing_file(void **state)
{
	struct task_file *f = NULL;
	struct errbuf e = { { 0 } };

	(void)state;
	assert_int_equal(task_file_parse("\n \n", 3, &f, &e), -EBADMSG);
	assert_non_null(strstr(e.msg, "no items"));
	assert_int_equal(task_file_parse("", 0, &f, &e), -EBADMSG);
	assert_int_equal(task_file_load(FIX "no-such-file.jsonl", &f, &e), -ENOENT);
}

static void test_parse_shared_task_files(void **state)
{
	static const struct {
		const char *name;
		uint32_t n, n_choices;
	} files[] = {
		{ "arc_easy", 2376, 4 }, { "arc_challenge", 1172, 4 },
		{ "piqa", 1838, 2 },	 { "copa", 100, 2 },
		{ "rte", 277, 2 },
	};
	const char *sh = getenv("SHIFTADD_SHARED");

	(void)state;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct task_file *f = NULL;
		struct errbuf e = { { 0 } };
		char path[512];
		int r;

		snprintf(path, sizeof(path), "%s/data/tasks/%s.jsonl", sh && *sh ? sh : "../shared",
			 files[i].name);
		r = task_file_load(path, &f, &e);
		if (r < 0)
			fail_msg("%s: %s", path, errbuf_str(&e, r));
		assert_int_equal(f->n_items, files[i].n);
		for (uint32_t k = 0; k < f->n_items; k++) {
			assert_true(f->items[k].gold < f->items[k].n_choices);
			assert_int_equal(f->items[k].n_choices, files[i].n_choices);
		}
		task_file_free(f);
	}
}

/* ---- the real model against transformers ---- */

struct ref_item {
	const cJSON *ctx, *cont, *ll, *norm_len;
};

struct capture {
	struct ref_item items[16];
	uint32_t n_items;
	uint32_t seen;
	double worst;
};

static bool ids_equal(const cJSON *a, const int32_t *ids, uint32_t n)
{
	uint32_t i = 0;

	if (!cJSON_IsArray(a) || (uint32_t)cJSON_GetArraySize(a) != n)
		return false;
	for (const cJSON *x = a->child; x; x = x->next, i++)
		if (!cJSON_IsNumber(x) || x->valueint != ids[i])
			return false;
	return true;
}

static int check_item(void *arg, uint32_t index, const struct task_item *it,
		      const struct task_enc *enc, const double *ll)
{
	struct capture *c = arg;
	const struct ref_item *r;
	uint32_t k = 0;

	assert_true(index < c->n_items);
	assert_int_equal(index, c->seen);
	c->seen++;
	r = &c->items[index];
	assert_int_equal(cJSON_GetArraySize(r->cont), it->n_choices);
	if (!ids_equal(r->ctx, enc->ctx, enc->n_ctx))
		fail_msg("item %u: context ids differ from transformers'", index);
	for (const cJSON *x = r->cont->child; x; x = x->next, k++) {
		double ref = cJSON_GetArrayItem(r->ll, (int)k)->valuedouble, d = fabs(ll[k] - ref);

		if (!ids_equal(x, enc->cont[k], enc->n_cont[k]))
			fail_msg("item %u choice %u: continuation ids differ", index, k);
		assert_int_equal(enc->norm_len[k],
				 cJSON_GetArrayItem(r->norm_len, (int)k)->valueint);
		if (d > LL_TOL)
			fail_msg("item %u choice %u: ll %.6f, transformers %.6f", index, k, ll[k],
				 ref);
		c->worst = d > c->worst ? d : c->worst;
	}
	return 0;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (!fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET)) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n)
			buf[n] = 0;
		else {
			free(buf);
			buf = NULL;
		}
	}
	fclose(f);
	return buf;
}

static void test_smollm2_matches_transformers(void **state)
{
	static const uint32_t batches[] = { 1, 3, 8 };
	char *txt = slurp(FIX "smollm2-ref.json");
	struct task_file *f = NULL;
	struct model *m = NULL;
	struct errbuf e = { { 0 } };
	struct capture cap = { 0 };
	uint32_t right = 0, pick[16];
	cJSON *doc;
	int r;

	(void)state;
	assert_non_null(txt);
	doc = cJSON_Parse(txt);
	assert_non_null(doc);
	for (const cJSON *x = cJSON_GetObjectItem(doc, "items")->child; x; x = x->next) {
		struct ref_item *ri;

		assert_true(cap.n_items < 16);
		ri = &cap.items[cap.n_items++];
		double best = -INFINITY;
		uint32_t k = 0;

		ri->ctx = cJSON_GetObjectItem(x, "ctx");
		ri->cont = cJSON_GetObjectItem(x, "cont");
		ri->ll = cJSON_GetObjectItem(x, "ll");
		ri->norm_len = cJSON_GetObjectItem(x, "norm_len");
		for (const cJSON *v = ri->ll->child; v; v = v->next, k++)
			if (v->valuedouble > best) {
				best = v->valuedouble;
				pick[cap.n_items - 1] = k;
			}
	}
	r = task_file_load(FIX "smollm2-items.jsonl", &f, &e);
	if (r < 0)
		fail_msg("%s", errbuf_str(&e, r));
	assert_int_equal(f->n_items, cap.n_items);
	for (uint32_t i = 0; i < f->n_items; i++)
		right += pick[i] == f->items[i].gold;
	r = model_load(SMOLLM2, &m, &e);
	if (r < 0)
		fail_msg("%s: %s", SMOLLM2, errbuf_str(&e, r));
	lu_use_f32_head(m);
	/* batches of 1, 3 and all items: the shared-prefix KV copy and the packing of several
	 * items into one step must not change any score */
	for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
		struct task_eval_opts o = { .batch_items = batches[b],
					    .on_item = check_item,
					    .on_item_arg = &cap };
		struct task_stats st;

		cap.seen = 0;
		r = task_eval(m, f, &o, &st, &e);
		if (r < 0)
			fail_msg("batch %u: %s", batches[b], errbuf_str(&e, r));
		assert_int_equal(cap.seen, f->n_items);
		assert_int_equal(st.n, f->n_items);
		assert_near(st.acc, (double)right / f->n_items, 1e-12);
	}
	/* --limit */
	{
		struct task_eval_opts o = { .limit = 2,
					    .on_item = check_item,
					    .on_item_arg = &cap };
		struct task_stats st;

		cap.seen = 0;
		assert_int_equal(task_eval(m, f, &o, &st, &e), 0);
		assert_int_equal(st.n, 2);
		assert_int_equal(cap.seen, 2);
	}
	print_message("smollm2 tasks: %u items, max |ll - transformers f64| = %.2e\n", cap.n_items,
		      cap.worst);
	model_free(m);
	task_file_free(f);
	cJSON_Delete(doc);
	free(txt);
}

int test_tasks_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loglik_uniform_rows),
		cmocka_unit_test(test_loglik_known_probabilities),
		cmocka_unit_test(test_loglik_rejects_bad_target),
		cmocka_unit_test(test_choose_acc_and_acc_norm_differ),
		cmocka_unit_test(test_choose_ties_pick_first),
		cmocka_unit_test(test_tally_counts_and_stderr),
		cmocka_unit_test(test_parse_good_file),
		cmocka_unit_test(test_parse_malformed_lines_name_the_line),
		cmocka_unit_test(test_parse_empty_file_and_missing_file),
		cmocka_unit_test(test_parse_shared_task_files),
		cmocka_unit_test(test_smollm2_matches_transformers),
	};
	return cmocka_run_group_tests_name("engine/tasks", tests, NULL, NULL);
}
