/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_TASKS_H
#define ENGINE_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/progress.h"

/*
 * Zero-shot multiple-choice evaluation (../shared/data/README.md): each item is a query and
 * its choices; a choice scores the sum of the log-probabilities of its tokens given the query
 * as context and " " + choice as continuation. acc takes the argmax of the sums, acc_norm the
 * argmax of sum / (bytes of the choice), as lm-evaluation-harness does.
 *
 * The pieces are separate so each can be tested without a model: file parsing, the
 * context/continuation split (tokenizer only), log-likelihood sums over logit rows, the
 * choice decision and the tally; task_eval() runs them all through the engine.
 */

struct model;
struct tokenizer;

/* The most choices one item may have (keeps per-item arrays bounded). */
#define TASK_MAX_CHOICES 64

struct task_item {
	char *query;
	char **choices; /* [n_choices], each non-empty, valid UTF-8 */
	uint32_t n_choices;
	uint32_t gold; /* < n_choices */
	uint32_t line; /* 1-based line of the item in its file */
};

struct task_file {
	struct task_item *items;
	uint32_t n_items;
};

/*
 * Parse JSON-lines task text: one object per line with "query" (string), "choices" (array of
 * 2..TASK_MAX_CHOICES non-empty strings) and "gold" (integer index into choices); other
 * fields are ignored, blank lines skipped, "\r\n" accepted. On a malformed line returns
 * -EBADMSG with "line N: <what>" in @e; -ENOMEM. @buf is borrowed for the call; the caller
 * frees *ret with task_file_free().
 */
int task_file_parse(const char *buf, size_t len, struct task_file **ret, struct errbuf *e);
/* The same from the file at @path (-errno from I/O). @e does not name the file. */
int task_file_load(const char *path, struct task_file **ret, struct errbuf *e);
/* Accepts NULL. */
void task_file_free(struct task_file *f);

/*
 * An item's tokens the way lm-evaluation-harness builds them: trailing whitespace of the
 * query moves to the front of the continuation, then context = encode(query') and the
 * continuation of a choice is encode(query' + ws + " " + choice) past the first
 * len(context) tokens. An empty context becomes the single token @prefix_tok.
 */
struct task_enc {
	int32_t *ctx; /* [n_ctx] */
	uint32_t n_ctx;
	uint32_t n_choices;
	int32_t **cont;	    /* [n_choices][n_cont[c]], each n_cont[c] >= 1 */
	uint32_t *n_cont;   /* [n_choices] */
	uint32_t *norm_len; /* [n_choices] bytes of each choice (the acc_norm divisor) */
};

/*
 * Tokenize @it into @ret (zeroed first). @bos >= 0 is put before the context (never scored);
 * @prefix_tok (BOS, else EOS) stands in for an empty context, -1 if none. Returns 0,
 * -EBADMSG (a choice without tokens of its own, empty context without @prefix_tok, or text
 * the tokenizer rejects), -ENOMEM. Free with task_enc_done() (also after failure).
 */
int task_encode(const struct tokenizer *t, const struct task_item *it, int32_t bos,
		int32_t prefix_tok, struct task_enc *ret);
void task_enc_done(struct task_enc *enc);

/*
 * Sum over i < @n of log softmax(logits[i])[targets[i]] in double precision; logits is
 * [n][n_vocab]. Returns 0 or -EINVAL (a target outside [0, n_vocab)).
 */
int task_loglik_rows(const float *logits, uint32_t n_vocab, const int32_t *targets, uint32_t n,
		     double *ret);

/*
 * The choices acc and acc_norm pick from the log-likelihoods @ll and byte lengths @norm_len
 * of @n choices: argmax of ll and of ll / norm_len, the first on ties (numpy's argmax).
 */
void task_choose(const double *ll, const uint32_t *norm_len, uint32_t n, uint32_t *ret_acc,
		 uint32_t *ret_acc_norm);

/* Running counts of one task. */
struct task_tally {
	uint64_t n;
	uint64_t n_acc;
	uint64_t n_acc_norm;
};

struct task_stats {
	uint64_t n;
	double acc, acc_se; /* se: sample standard deviation / sqrt(n), 0 when n < 2 */
	double acc_norm, acc_norm_se;
};

/* Count one item whose choices scored @ll; @ll and @norm_len have it->n_choices entries. */
void task_tally_add(struct task_tally *t, const struct task_item *it, const double *ll,
		    const uint32_t *norm_len);
void task_tally_stats(const struct task_tally *t, struct task_stats *ret);
/*
 * Unweighted mean over @n tasks (each task counts once, as papers report it); the standard
 * error of the mean treats the tasks as independent: sqrt(sum se_i^2) / n. ret->n = items.
 */
void task_stats_mean(const struct task_stats *s, uint32_t n, struct task_stats *ret);

/* Called after each item is scored: its index, tokens and per-choice log-likelihoods. */
typedef int (*task_item_fn)(void *arg, uint32_t index, const struct task_item *it,
			    const struct task_enc *enc, const double *ll);

struct task_eval_opts {
	uint32_t limit;	      /* score only the first @limit items; 0 = all */
	uint32_t batch_items; /* items per forward step (their contexts, then all choices); 0 = 8 */
	bool bos;	      /* put the tokenizer's BOS before each context */
	progress_fn progress; /* (items done, items total), may be NULL */
	void *progress_arg;
	task_item_fn on_item; /* may be NULL; a negative return stops the run with that code */
	void *on_item_arg;
};

/*
 * Score the items of @f with @m (which must have a tokenizer) and fill @ret. The contexts of
 * a batch of items run in one model_forward step, each in its own KV sequence; that prefix is
 * copied to one sequence per choice and all continuations run in a second step. Returns 0,
 * -EINVAL (no tokenizer, or BOS asked for but missing), -EBADMSG (an item cannot be encoded;
 * "line N: ..." in @e), -E2BIG (an item longer than the model's context), -ENOMEM, or what
 * on_item returned.
 */
int task_eval(const struct model *m, const struct task_file *f, const struct task_eval_opts *o,
	      struct task_stats *ret, struct errbuf *e);

#endif /* ENGINE_TASKS_H */
