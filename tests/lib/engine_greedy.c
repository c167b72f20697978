// SPDX-License-Identifier: MIT
#include "tests/lib/engine_greedy.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "engine/tokenizer.h"

/* Index of the largest logit (lowest id on ties); *ret_margin = its lead over the runner-up. */
static int32_t argmax(const float *logits, uint32_t n, float *ret_margin)
{
	float best = -INFINITY, second = -INFINITY;
	int32_t id = 0;

	for (uint32_t i = 0; i < n; i++) {
		float v = logits[i];

		if (v > best) {
			second = best;
			best = v;
			id = (int32_t)i;
		} else if (v > second) {
			second = v;
		}
	}
	*ret_margin = best - second;
	return id;
}

int engine_greedy(const struct model *m, const char *prompt, uint32_t n_new,
		  struct engine_greedy *ret)
{
	int32_t eos = tokenizer_eos(m->tok), *ids = NULL, tok;
	struct kv_cache kv = { 0 };
	float *logits = NULL, margin;
	size_t n_prompt = 0;
	int r;

	if (!m->tok || n_new == 0 || n_new > ENGINE_GREEDY_MAX)
		return -EINVAL;
	memset(ret, 0, sizeof(*ret));
	ret->min_margin = INFINITY;
	r = tokenizer_encode(m->tok, prompt, strlen(prompt), true, &ids, &n_prompt);
	if (r < 0)
		return r;
	if (n_prompt == 0) {
		r = -EINVAL;
		goto out_ids;
	}
	logits = malloc((size_t)m->cfg.n_vocab * sizeof(*logits));
	if (!logits) {
		r = -ENOMEM;
		goto out_ids;
	}
	r = kv_cache_init_type(&kv, m, 1, (uint32_t)n_prompt + n_new, KV_F16);
	if (r < 0)
		goto out_logits;
	r = model_forward_seq(m, &kv, 0, ids, (uint32_t)n_prompt, 0, logits);
	while (r == 0) {
		tok = argmax(logits, m->cfg.n_vocab, &margin);
		if (margin < ret->min_margin)
			ret->min_margin = margin;
		if (tok == eos) {
			ret->eos = true;
			break;
		}
		ret->ids[ret->n_ids++] = tok;
		if (ret->n_ids == n_new)
			break;
		r = model_forward_seq(m, &kv, 0, &tok, 1, (uint32_t)n_prompt + ret->n_ids - 1,
				      logits);
	}
	kv_cache_done(&kv);
out_logits:
	free(logits);
out_ids:
	free(ids);
	return r;
}
