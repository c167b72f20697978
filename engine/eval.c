// SPDX-License-Identifier: MIT
#include "engine/eval.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fwd_simd.h"
#include "engine/model.h"
#include "engine/tokenizer.h"

int eval_read_rows_joined(const char *path, char **ret, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *line = NULL, *out = NULL;
	size_t cap = 0, len = 0, out_cap = 0;
	ssize_t n;
	bool first = true;
	int r = 0;

	if (!f)
		return -errno;
	while ((n = getline(&line, &cap, f)) >= 0) {
		if (n && line[n - 1] == '\n')
			line[--n] = 0;
		if (len + n + 3 > out_cap) {
			size_t nc = (len + n + 3) * 2;
			char *no = realloc(out, nc);

			if (!no) {
				r = -ENOMEM;
				goto out;
			}
			out = no;
			out_cap = nc;
		}
		if (!first) {
			out[len++] = '\n';
			out[len++] = '\n';
		}
		memcpy(out + len, line, n);
		len += n;
		first = false;
	}
	if (ferror(f))
		r = -EIO;
	else if (!out)
		r = -EBADMSG;
out:
	free(line);
	fclose(f);
	if (r < 0) {
		free(out);
		return r;
	}
	out[len] = 0;
	*ret = out;
	*ret_len = len;
	return 0;
}

double eval_nll(const float *logits, uint32_t n_vocab, int32_t target)
{
	return fwd_ops()->logsumexp(logits, n_vocab) - logits[target];
}

/* Score one window: logits are produced in chunks so a 2048-token window of a 49k vocabulary
 * never needs its full logit matrix. */
#define LOGIT_CHUNK 64

/* The NLL of each row of one logits chunk, rows split over the workers. */
struct nll_job {
	const float *logits; /* [n][n_vocab] */
	const int32_t *targets;
	double *nll; /* [n] */
	uint32_t n, n_vocab, parts;
};

static void nll_task(void *arg, uint32_t i)
{
	const struct nll_job *j = arg;

	for (uint32_t r = j->n * i / j->parts; r < j->n * (i + 1) / j->parts; r++)
		j->nll[r] =
			eval_nll(j->logits + (uint64_t)r * j->n_vocab, j->n_vocab, j->targets[r]);
}

static int score_window(const struct model *m, struct kv_cache *kv, const int32_t *tokens,
			uint32_t n, uint32_t first_scored, float *hidden, float *logits,
			double *ret_nll)
{
	uint32_t *seq = calloc(n, sizeof(*seq)), *pos = malloc(n * sizeof(*pos));
	uint32_t dim = m->cfg.dim, nv = m->cfg.n_vocab, nw = fwd_n_workers(m);
	double nll = 0, row_nll[LOGIT_CHUNK];
	int r = -ENOMEM;

	if (!seq || !pos)
		goto out;
	for (uint32_t i = 0; i < n; i++)
		pos[i] = i;
	r = model_forward(m, kv, tokens, seq, pos, n, hidden);
	if (r < 0)
		goto out;
	/* position t predicts token t + 1 */
	for (uint32_t t0 = first_scored; t0 + 1 < n; t0 += LOGIT_CHUNK) {
		uint32_t c = n - 1 - t0 < LOGIT_CHUNK ? n - 1 - t0 : LOGIT_CHUNK;
		struct nll_job j = { .logits = logits,
				     .targets = tokens + t0 + 1,
				     .nll = row_nll,
				     .n = c,
				     .n_vocab = nv,
				     .parts = nw < c ? nw : c };

		model_logits(m, hidden + (uint64_t)t0 * dim, c, logits);
		if (j.parts > 1)
			fwd_run_tasks(m, j.parts, nll_task, &j);
		else
			nll_task(&j, 0);
		/* summed in token order: the total does not depend on the split */
		for (uint32_t k = 0; k < c; k++)
			nll += row_nll[k];
	}
	*ret_nll = nll;
out:
	free(seq);
	free(pos);
	return r;
}

int eval_ppl(const struct model *m, const int32_t *ids, size_t n_ids, uint32_t seqlen,
	     uint32_t limit_windows, bool bos, enum kv_type kv_t, progress_fn cb, void *cb_arg,
	     struct ppl_result *ret)
{
	uint32_t n_win, n_tok = seqlen + (bos ? 1 : 0);
	int32_t *win = NULL;
	float *hidden = NULL, *logits = NULL;
	struct kv_cache kv;
	double t0 = progress_now();
	int r;

	if (seqlen < 2 || n_ids / seqlen == 0)
		return -EINVAL;
	if (bos && (!m->tok || tokenizer_bos(m->tok) < 0))
		return -EINVAL;
	n_win = n_ids / seqlen;
	if (limit_windows && limit_windows < n_win)
		n_win = limit_windows;
	r = kv_cache_init_type(&kv, m, 1, n_tok, kv_t);
	if (r < 0)
		return r;
	memset(ret, 0, sizeof(*ret));
	win = malloc(n_tok * sizeof(*win));
	hidden = malloc((uint64_t)n_tok * m->cfg.dim * sizeof(float));
	logits = malloc((uint64_t)LOGIT_CHUNK * m->cfg.n_vocab * sizeof(float));
	if (!win || !hidden || !logits) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t w = 0; w < n_win; w++) {
		double nll;

		if (bos)
			win[0] = tokenizer_bos(m->tok);
		memcpy(win + (bos ? 1 : 0), ids + (uint64_t)w * seqlen, seqlen * sizeof(*win));
		r = score_window(m, &kv, win, n_tok, bos ? 1 : 0, hidden, logits, &nll);
		if (r < 0)
			goto out;
		ret->nll_sum += nll;
		ret->n_predicted += seqlen - 1;
		if (cb)
			cb(cb_arg, (uint64_t)(w + 1) * seqlen, (uint64_t)n_win * seqlen);
	}
	ret->n_windows = n_win;
	ret->seqlen = seqlen;
	ret->ppl = exp(ret->nll_sum / ret->n_predicted);
	ret->seconds = progress_now() - t0;
out:
	free(win);
	free(hidden);
	free(logits);
	kv_cache_done(&kv);
	return r;
}
