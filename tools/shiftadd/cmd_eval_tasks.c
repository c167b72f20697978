// SPDX-License-Identifier: MIT
/*
 * shiftadd eval tasks: zero-shot multiple-choice accuracy (engine/tasks.h) over JSON-lines
 * task files, one table row per task plus the unweighted mean.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/progress.h"
#include "engine/model.h"
#include "engine/tasks.h"
#include "engine/tokenizer.h"
#include "tools/opt.h"
#include "tools/shiftadd/cmds.h"
#include "tools/shiftadd/load.h"

#define DEFAULT_TASKS "arc_easy,arc_challenge,piqa,copa,rte"
#define MAX_TASKS     64

static const struct opt_spec tasks_specs[] = {
	{ "model", 'm', "PATH", NULL, "model: a GGUF file or an HF folder (required)" },
	{ "tasks", 't', "LIST", DEFAULT_TASKS,
	  "comma-separated task names (DIR/NAME.jsonl) or paths to .jsonl files" },
	{ "data-dir", 'd', "DIR", "../shared/data/tasks", "where task names are looked up" },
	{ "limit", 'n', "N", "0 = all", "score only the first N items of each task" },
	{ "batch", 'b', "N", "8", "items per forward step (contexts, then all their choices)" },
	{ "bos", 0, "yes|no|auto", "auto = the tokenizer's add_bos_token",
	  "put BOS before each context" },
	{ "threads", 'j', "N", "all CPUs", "threads for the matrix products" },
	{ "dump-scores", 0, "FILE", NULL,
	  "write one JSON line per item: token ids and per-choice log-likelihoods" },
	{ "json", 0, NULL, NULL, "print the results as one JSON object" },
	{ "help", 'h', NULL, NULL, "show this help" },
	{ NULL, 0, NULL, NULL, NULL },
};

struct tasks_opts {
	const char *model, *tasks, *data_dir, *dump;
	unsigned limit, batch, threads;
	int bos; /* -1 auto, 0 no, 1 yes */
	bool json;
};

static int parse_tasks(int argc, char **argv, struct tasks_opts *o)
{
	struct option lo[OPT_MAX + 1];
	char so[3 * OPT_MAX + 2];
	int c;

	*o = (struct tasks_opts){ .tasks = DEFAULT_TASKS, .bos = -1 };
	opt_build(tasks_specs, lo, so);
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		int i = opt_index(tasks_specs, c);
		const char *n = i >= 0 ? tasks_specs[i].name : "";
		int r = 0;

		if (c == '?' || c == ':') {
			fprintf(stderr, "shiftadd eval tasks: bad option '%s'\n", argv[optind - 1]);
			return 2;
		}
		if (!strcmp(n, "model"))
			o->model = optarg;
		else if (!strcmp(n, "tasks"))
			o->tasks = optarg;
		else if (!strcmp(n, "data-dir"))
			o->data_dir = optarg;
		else if (!strcmp(n, "limit"))
			r = opt_u32(n, optarg, &o->limit);
		else if (!strcmp(n, "batch"))
			r = opt_u32(n, optarg, &o->batch);
		else if (!strcmp(n, "bos"))
			r = tool_bos_parse(optarg, &o->bos);
		else if (!strcmp(n, "threads"))
			r = opt_u32(n, optarg, &o->threads);
		else if (!strcmp(n, "dump-scores"))
			o->dump = optarg;
		else if (!strcmp(n, "json"))
			o->json = true;
		else if (!strcmp(n, "help")) {
			opt_usage(
				stdout, "shiftadd eval tasks --model PATH [OPTIONS]",
				"Zero-shot multiple-choice accuracy (../shared/data/README.md): each choice\n"
				"scores the sum of its tokens' log-probabilities after the query, split as\n"
				"lm-evaluation-harness does (context = query without trailing whitespace,\n"
				"continuation = that whitespace + \" \" + choice). acc = argmax of the sums,\n"
				"acc_norm = argmax of sum / bytes of the choice. Task files are JSON lines:\n"
				"{\"query\": str, \"choices\": [str, ...], \"gold\": int}.",
				tasks_specs);
			return 1;
		}
		if (r < 0)
			return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "shiftadd eval tasks: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!o->model) {
		fprintf(stderr, "shiftadd eval tasks: --model is required (see --help)\n");
		return 2;
	}
	return 0;
}

struct task_run {
	char name[128];
	char path[PATH_MAX];
	struct task_file *file;
	struct task_stats st;
	double seconds;
};

/* A task name is looked up as DIR/NAME.jsonl; anything with a '/' or ".jsonl" is a path. */
static int resolve_task(const char *spec, size_t n, const char *dir, struct task_run *t)
{
	const char *base;
	size_t bl;

	if (!n || n >= sizeof(t->path))
		return -EINVAL;
	if (memchr(spec, '/', n) || (n > 6 && !memcmp(spec + n - 6, ".jsonl", 6))) {
		memcpy(t->path, spec, n);
		t->path[n] = 0;
	} else if ((size_t)snprintf(t->path, sizeof(t->path), "%s/%.*s.jsonl", dir, (int)n, spec) >=
		   sizeof(t->path)) {
		return -ENAMETOOLONG;
	}
	base = strrchr(t->path, '/');
	base = base ? base + 1 : t->path;
	bl = strlen(base);
	if (bl > 6 && !strcmp(base + bl - 6, ".jsonl"))
		bl -= 6;
	if (bl >= sizeof(t->name))
		bl = sizeof(t->name) - 1;
	memcpy(t->name, base, bl);
	t->name[bl] = 0;
	return 0;
}

struct dump_ctx {
	FILE *f;
	const char *task;
};

static cJSON *id_array(const int32_t *ids, uint32_t n)
{
	cJSON *a = cJSON_CreateArray();

	for (uint32_t i = 0; a && i < n; i++)
		if (!cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]))) {
			cJSON_Delete(a);
			return NULL;
		}
	return a;
}

/* One line per item; log-likelihoods as %.17g so the reference check sees every digit. */
static int dump_item(void *arg, uint32_t index, const struct task_item *it,
		     const struct task_enc *enc, const double *ll)
{
	struct dump_ctx *d = arg;
	cJSON *o = cJSON_CreateObject(), *cont = cJSON_CreateArray();
	char *txt = NULL;
	int r = -ENOMEM;

	if (!o || !cont)
		goto out;
	cJSON_AddStringToObject(o, "task", d->task);
	cJSON_AddNumberToObject(o, "index", index);
	cJSON_AddNumberToObject(o, "line", it->line);
	cJSON_AddNumberToObject(o, "gold", it->gold);
	cJSON_AddItemToObject(o, "ctx", id_array(enc->ctx, enc->n_ctx));
	for (uint32_t c = 0; c < enc->n_choices; c++)
		cJSON_AddItemToArray(cont, id_array(enc->cont[c], enc->n_cont[c]));
	cJSON_AddItemToObject(o, "cont", cont);
	cont = NULL;
	txt = cJSON_PrintUnformatted(o);
	if (!txt)
		goto out;
	fprintf(d->f, "%.*s, \"ll\": [", (int)strlen(txt) - 1, txt);
	for (uint32_t c = 0; c < enc->n_choices; c++)
		fprintf(d->f, "%s%.17g", c ? ", " : "", ll[c]);
	fprintf(d->f, "], \"norm_len\": [");
	for (uint32_t c = 0; c < enc->n_choices; c++)
		fprintf(d->f, "%s%u", c ? ", " : "", enc->norm_len[c]);
	fprintf(d->f, "]}\n");
	r = ferror(d->f) ? -EIO : 0;
out:
	free(txt);
	cJSON_Delete(cont);
	cJSON_Delete(o);
	return r;
}

static void print_json(const struct tasks_opts *o, const struct task_run *runs, uint32_t n,
		       const struct task_stats *mean, bool bos)
{
	cJSON *root = cJSON_CreateObject(), *arr = cJSON_CreateArray(), *mo;
	char *txt;

	if (!root || !arr)
		goto out;
	cJSON_AddStringToObject(root, "model", o->model);
	cJSON_AddNumberToObject(root, "limit", o->limit);
	cJSON_AddBoolToObject(root, "bos", bos);
	for (uint32_t i = 0; i < n; i++) {
		cJSON *t = cJSON_CreateObject();

		if (!t)
			goto out;
		cJSON_AddStringToObject(t, "task", runs[i].name);
		cJSON_AddStringToObject(t, "file", runs[i].path);
		cJSON_AddNumberToObject(t, "items", (double)runs[i].st.n);
		cJSON_AddNumberToObject(t, "acc", runs[i].st.acc);
		cJSON_AddNumberToObject(t, "acc_stderr", runs[i].st.acc_se);
		cJSON_AddNumberToObject(t, "acc_norm", runs[i].st.acc_norm);
		cJSON_AddNumberToObject(t, "acc_norm_stderr", runs[i].st.acc_norm_se);
		cJSON_AddNumberToObject(t, "seconds", runs[i].seconds);
		cJSON_AddItemToArray(arr, t);
	}
	cJSON_AddItemToObject(root, "tasks", arr);
	arr = NULL;
	mo = cJSON_AddObjectToObject(root, "mean");
	if (mo) {
		cJSON_AddNumberToObject(mo, "items", (double)mean->n);
		cJSON_AddNumberToObject(mo, "acc", mean->acc);
		cJSON_AddNumberToObject(mo, "acc_stderr", mean->acc_se);
		cJSON_AddNumberToObject(mo, "acc_norm", mean->acc_norm);
		cJSON_AddNumberToObject(mo, "acc_norm_stderr", mean->acc_norm_se);
	}
	txt = cJSON_PrintUnformatted(root);
	if (txt)
		printf("%s\n", txt);
	free(txt);
out:
	cJSON_Delete(arr);
	cJSON_Delete(root);
}

static void print_table(const struct task_run *runs, uint32_t n, const struct task_stats *mean)
{
	printf("%-16s %6s  %-15s  %-15s  %8s\n", "task", "items", "acc (+-se)", "acc_norm (+-se)",
	       "seconds");
	for (uint32_t i = 0; i < n; i++)
		printf("%-16s %6llu  %.4f +-%.4f  %.4f +-%.4f  %8.1f\n", runs[i].name,
		       (unsigned long long)runs[i].st.n, runs[i].st.acc, runs[i].st.acc_se,
		       runs[i].st.acc_norm, runs[i].st.acc_norm_se, runs[i].seconds);
	if (n > 1)
		printf("%-16s %6llu  %.4f +-%.4f  %.4f +-%.4f\n", "mean",
		       (unsigned long long)mean->n, mean->acc, mean->acc_se, mean->acc_norm,
		       mean->acc_norm_se);
}

static int run_tasks(const struct tasks_opts *o)
{
	const char *dir = o->data_dir ? o->data_dir : tool_shared_path("tasks");
	struct task_run *runs = calloc(MAX_TASKS, sizeof(*runs));
	struct errbuf e = { { 0 } };
	struct dump_ctx dump = { 0 };
	struct task_stats st[MAX_TASKS], mean;
	struct model *m = NULL;
	uint32_t n = 0;
	bool bos;
	int r = 0;

	if (!runs)
		return 1;
	for (const char *p = o->tasks; *p;) {
		size_t len = strcspn(p, ",");

		if (len) {
			if (n == MAX_TASKS) {
				fprintf(stderr, "shiftadd eval tasks: more than %d tasks\n",
					MAX_TASKS);
				r = -E2BIG;
				goto out;
			}
			r = resolve_task(p, len, dir, &runs[n++]);
			if (r < 0) {
				fprintf(stderr, "shiftadd eval tasks: bad task '%.*s'\n", (int)len,
					p);
				goto out;
			}
		}
		p += len + (p[len] == ',');
	}
	if (!n) {
		fprintf(stderr, "shiftadd eval tasks: no tasks given\n");
		r = -EINVAL;
		goto out;
	}
	/* every file is read before the model loads: a bad line fails fast, not after hours */
	for (uint32_t i = 0; i < n; i++) {
		r = task_file_load(runs[i].path, &runs[i].file, &e);
		if (r < 0) {
			fprintf(stderr, "shiftadd eval tasks: '%s': %s\n", runs[i].path,
				errbuf_str(&e, r));
			goto out;
		}
	}
	r = model_load(o->model, &m, &e);
	if (r < 0) {
		fprintf(stderr, "shiftadd eval tasks: '%s': %s\n", o->model, errbuf_str(&e, r));
		goto out;
	}
	if (!m->tok) {
		fprintf(stderr, "shiftadd eval tasks: '%s' has no tokenizer\n", o->model);
		r = -EINVAL;
		goto out;
	}
	bos = o->bos < 0 ? tokenizer_add_bos(m->tok) : o->bos;
	if (o->dump) {
		dump.f = fopen(o->dump, "w");
		if (!dump.f) {
			r = -errno;
			fprintf(stderr, "shiftadd eval tasks: '%s': %s\n", o->dump, strerror(-r));
			goto out;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		struct progress bar;
		struct task_eval_opts eo = {
			.limit = o->limit,
			.batch_items = o->batch,
			.bos = bos,
			.progress = progress_cb,
			.progress_arg = &bar,
			.on_item = o->dump ? dump_item : NULL,
			.on_item_arg = &dump,
		};
		double t0;

		e.msg[0] = 0;
		dump.task = runs[i].name;
		t0 = progress_now();
		progress_begin(&bar, stderr, runs[i].name, "item", 0);
		r = task_eval(m, runs[i].file, &eo, &runs[i].st, &e);
		progress_end(&bar);
		runs[i].seconds = progress_now() - t0;
		if (r < 0) {
			fprintf(stderr, "shiftadd eval tasks: '%s': %s\n", runs[i].path,
				errbuf_str(&e, r));
			goto out;
		}
		st[i] = runs[i].st;
	}
	task_stats_mean(st, n, &mean);
	if (o->json)
		print_json(o, runs, n, &mean, bos);
	else
		print_table(runs, n, &mean);
out:
	if (dump.f && fclose(dump.f) && r == 0) {
		fprintf(stderr, "shiftadd eval tasks: '%s': %s\n", o->dump, strerror(errno));
		r = -EIO;
	}
	model_free(m);
	for (uint32_t i = 0; i < n; i++)
		task_file_free(runs[i].file);
	free(runs);
	return r < 0 ? 1 : 0;
}

int cmd_eval_tasks(int argc, char **argv)
{
	struct tasks_opts o;
	int r = parse_tasks(argc, argv, &o);

	if (r)
		return r == 1 ? 0 : r;
	tool_set_threads(o.threads);
	return run_tasks(&o);
}
