/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_EVAL_H
#define ENGINE_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/progress.h"
#include "engine/model.h"

struct model;

/*
 * Read a one-row-per-line file (../shared/data/wikitext-2/wiki.test.rows.txt) and join the
 * rows with "\n\n", as the evaluation protocol defines the text. *ret is malloc'ed and
 * NUL-terminated. Returns 0, -errno from I/O, or -ENOMEM.
 */
int eval_read_rows_joined(const char *path, char **ret, size_t *ret_len);

struct ppl_result {
	uint32_t n_windows;
	uint32_t seqlen;
	uint64_t n_predicted; /* scored positions: n_windows * (seqlen - 1) */
	double nll_sum;	      /* natural log */
	double ppl;
	double seconds;
};

/*
 * Perplexity over non-overlapping windows of @seqlen tokens of @ids (the last partial window
 * is dropped), each window a fresh sequence; with @bos, the model's BOS is put in front of
 * each window and not scored. @limit_windows = 0 means all. The KV cache is of @kv (as
 * kv_cache_init_type takes it). Progress is reported in tokens. Returns 0, -EINVAL (no full
 * window, seqlen < 2), -ENOMEM.
 */
int eval_ppl(const struct model *m, const int32_t *ids, size_t n_ids, uint32_t seqlen,
	     uint32_t limit_windows, bool bos, enum kv_type kv, progress_fn cb, void *cb_arg,
	     struct ppl_result *ret);

/* -log softmax(logits)[target]; the exponentials are summed in double precision. */
double eval_nll(const float *logits, uint32_t n_vocab, int32_t target);

#endif /* ENGINE_EVAL_H */
