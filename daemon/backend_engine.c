// SPDX-License-Identifier: MIT
/*
 * The engine backend (contract in daemon/backend.h): a real model through engine/, with its
 * linear layers on the shift-add kernels when the file holds shift-add planes (dense f32
 * otherwise). All sequences of a step go through one model_forward() call, so the linear
 * layers see the whole batch at once. The shift-add kernels run on the daemon's pinned workers
 * (cfg->pool) through a task runner; dense f32 layers run in OpenBLAS, on its own threads.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/backend.h"
#include "daemon/worker.h"
#include "engine/model.h"
#include "engine/tokenizer.h"

/*
 * Sequences whose logits are computed by one lm_head product: the head (n_vocab x dim, the
 * largest matrix) is read once per group instead of once per sequence.
 */
#define LOGITS_BATCH 32

struct backend {
	struct backend_config cfg;
	struct model *m;
	struct kv_cache kv;
	bool *used;	     /* [n_slots] */
	uint32_t *n_past;    /* [n_slots] */
	int32_t *tokens;     /* [max_batch_tokens] step scratch */
	uint32_t *seq, *pos; /* [max_batch_tokens] */
	float *hidden;	     /* [max_batch_tokens][dim] */
	float *last;	     /* [LOGITS_BATCH][dim]: hidden rows that want logits */
	float *logits;	     /* [LOGITS_BATCH][n_vocab] */
};

static void engine_close(struct backend *b)
{
	if (!b)
		return;
	kv_cache_done(&b->kv);
	model_free(b->m);
	free(b->used);
	free(b->n_past);
	free(b->tokens);
	free(b->seq);
	free(b->pos);
	free(b->hidden);
	free(b->last);
	free(b->logits);
	free(b);
}

/* A kernel task handed to the daemon's workers (which also pass their own index). */
struct task_fwd {
	lut_task_fn fn;
	void *arg;
};

static void task_fwd(void *arg, uint32_t task, uint32_t worker)
{
	const struct task_fwd *f = arg;

	f->fn(f->arg, task);
}

/*
 * lut_run_fn over the daemon's pinned workers, so that the kernels run on them (and their busy
 * time shows in the per-worker statistics). Called on the loop thread only, as the pool needs.
 */
static void run_on_workers(void *ctx, uint32_t n_tasks, lut_task_fn fn, void *arg)
{
	struct task_fwd f = { fn, arg };

	worker_pool_run(ctx, n_tasks, task_fwd, &f);
}

static int engine_open(const struct backend_config *cfg, struct backend **ret, struct errbuf *e)
{
	struct model_load_opts lo = { .backend = LINEAR_BACKEND_SHIFTADD };
	uint32_t nb = cfg->max_batch_tokens;
	struct backend *b;
	int r;

	if (!cfg->model_path)
		return errbuf_set(e, -EINVAL, "the engine backend needs a model path");
	if (!cfg->n_slots || !cfg->n_ctx || !nb)
		return errbuf_set(e, -EINVAL, "n_slots, n_ctx and max_batch_tokens must be > 0");
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->cfg = *cfg;
	if (cfg->pool)
		lo.runner = (struct lut_runner){
			.run = run_on_workers,
			.ctx = cfg->pool,
			.n_workers = worker_pool_size(cfg->pool),
		};
	r = model_load_ex(cfg->model_path, &lo, &b->m, e);
	if (r < 0)
		goto fail;
	if (!b->m->tok) {
		r = errbuf_set(e, -EINVAL, "model '%s' has no tokenizer", cfg->model_path);
		goto fail;
	}
	if (cfg->n_ctx > b->m->cfg.max_ctx) {
		r = errbuf_set(e, -EINVAL, "n_ctx %u exceeds the model's context %u", cfg->n_ctx,
			       b->m->cfg.max_ctx);
		goto fail;
	}
	r = kv_cache_init_type(&b->kv, b->m, cfg->n_slots, cfg->n_ctx,
			       cfg->kv_f16 ? KV_F16 : KV_F32);
	if (r < 0) {
		errbuf_set(e, r, "cannot allocate the KV cache (%u slots x %u positions)",
			   cfg->n_slots, cfg->n_ctx);
		goto fail;
	}
	if (cfg->kv_commit && (r = kv_cache_commit(&b->kv)) < 0) {
		errbuf_set(e, r,
			   "cannot commit the KV cache's %.1f MiB (%u slots x %u positions; lower "
			   "n_slots or n_ctx, or set kv_commit = 0)",
			   (double)kv_cache_bytes(&b->kv) / (1 << 20), cfg->n_slots, cfg->n_ctx);
		goto fail;
	}
	b->used = calloc(cfg->n_slots, sizeof(*b->used));
	b->n_past = calloc(cfg->n_slots, sizeof(*b->n_past));
	b->tokens = malloc(nb * sizeof(*b->tokens));
	b->seq = malloc(nb * sizeof(*b->seq));
	b->pos = malloc(nb * sizeof(*b->pos));
	b->hidden = malloc((uint64_t)nb * b->m->cfg.dim * sizeof(float));
	b->last = malloc((uint64_t)LOGITS_BATCH * b->m->cfg.dim * sizeof(float));
	b->logits = malloc((uint64_t)LOGITS_BATCH * b->m->cfg.n_vocab * sizeof(float));
	if (!b->used || !b->n_past || !b->tokens || !b->seq || !b->pos || !b->hidden || !b->last ||
	    !b->logits) {
		r = -ENOMEM;
		goto fail;
	}
	*ret = b;
	return 0;
fail:
	engine_close(b);
	return r;
}

static void engine_info(const struct backend *b, struct backend_info *ret)
{
	const char *name = strrchr(b->cfg.model_path, '/');

	memset(ret, 0, sizeof(*ret));
	snprintf(ret->model_name, sizeof(ret->model_name), "%s",
		 name ? name + 1 : b->cfg.model_path);
	ret->n_vocab = b->m->cfg.n_vocab;
	ret->eos_id = tokenizer_eos(b->m->tok);
	ret->bos_id = tokenizer_bos(b->m->tok);
	ret->n_ctx = b->cfg.n_ctx;
	ret->n_slots = b->cfg.n_slots;
	ret->kv_type = kv_cache_type_name(&b->kv);
	ret->kv_bytes = kv_cache_bytes(&b->kv);
}

static int engine_tokenize(struct backend *b, const char *text, size_t len, int32_t **ret_ids,
			   size_t *ret_n)
{
	/*
	 * Clients send chat-formatted prompts, so special tokens in the text count; BOS first
	 * where the model's tokenizer asks for one (Gemma: it answers garbage without).
	 */
	return tokenizer_encode_text(b->m->tok, text, len, true, ret_ids, ret_n);
}

static int engine_piece(struct backend *b, int32_t id, char *buf, size_t cap)
{
	return tokenizer_piece(b->m->tok, id, buf, cap);
}

static int engine_slot_alloc(struct backend *b, uint32_t *ret_slot)
{
	for (uint32_t i = 0; i < b->cfg.n_slots; i++) {
		if (!b->used[i]) {
			b->used[i] = true;
			b->n_past[i] = 0;
			*ret_slot = i;
			return 0;
		}
	}
	return -EBUSY;
}

/* n_past stays: the KV of a freed slot is kept for engine_slot_claim. */
static void engine_slot_free(struct backend *b, uint32_t slot)
{
	if (slot < b->cfg.n_slots)
		b->used[slot] = false;
}

static int engine_slot_claim(struct backend *b, uint32_t slot, uint32_t keep)
{
	if (slot >= b->cfg.n_slots)
		return -EINVAL;
	if (b->used[slot])
		return -EBUSY;
	if (keep > b->n_past[slot])
		return -EINVAL;
	b->used[slot] = true;
	b->n_past[slot] = keep;
	return 0;
}

/*
 * KV rows depend only on the tokens and their positions, not on the slot they were computed
 * in, so @dst continues as if it had prefilled those tokens (bit for bit where the forward
 * pass gives the same bits for any batch, as the shift-add kernels do).
 */
static int engine_slot_copy(struct backend *b, uint32_t dst, uint32_t src, uint32_t n)
{
	if (dst >= b->cfg.n_slots || src >= b->cfg.n_slots || dst == src || !b->used[dst] ||
	    n > b->n_past[src])
		return -EINVAL;
	kv_cache_copy_prefix(&b->kv, src, dst, n);
	b->n_past[dst] = n;
	return 0;
}

/* Everything is checked before anything is applied, as the contract requires. */
static int check_step(const struct backend *b, const struct backend_seq *seqs, uint32_t n,
		      uint32_t *ret_total)
{
	uint64_t total = 0;

	for (uint32_t i = 0; i < n; i++) {
		const struct backend_seq *s = &seqs[i];

		if (s->slot >= b->cfg.n_slots || !b->used[s->slot] || !s->n_tokens ||
		    s->pos != b->n_past[s->slot] || (uint64_t)s->pos + s->n_tokens > b->cfg.n_ctx)
			return -EINVAL;
		for (uint32_t j = 0; j < n; j++)
			if (j != i && seqs[j].slot == s->slot)
				return -EINVAL;
		for (uint32_t t = 0; t < s->n_tokens; t++)
			if (s->tokens[t] < 0 || (uint32_t)s->tokens[t] >= b->m->cfg.n_vocab)
				return -EINVAL;
		total += s->n_tokens;
	}
	if (total > b->cfg.max_batch_tokens)
		return -EINVAL;
	*ret_total = (uint32_t)total;
	return 0;
}

/* Logits of every sequence that wants them, LOGITS_BATCH sequences per lm_head product. */
static void step_logits(struct backend *b, struct backend_seq *seqs, uint32_t n)
{
	uint32_t dim = b->m->cfg.dim, n_vocab = b->m->cfg.n_vocab, k = 0, n_want = 0;
	struct backend_seq *want[LOGITS_BATCH];

	for (uint32_t i = 0; i < n; i++) {
		k += seqs[i].n_tokens;
		if (seqs[i].want_logits) {
			memcpy(b->last + (uint64_t)n_want * dim,
			       b->hidden + (uint64_t)(k - 1) * dim, dim * sizeof(float));
			want[n_want++] = &seqs[i];
		}
		if (n_want == LOGITS_BATCH || (i == n - 1 && n_want)) {
			model_logits(b->m, b->last, n_want, b->logits);
			for (uint32_t j = 0; j < n_want; j++)
				memcpy(want[j]->logits, b->logits + (uint64_t)j * n_vocab,
				       n_vocab * sizeof(float));
			n_want = 0;
		}
	}
}

static int engine_step(struct backend *b, struct backend_seq *seqs, uint32_t n)
{
	uint32_t total, k = 0;
	int r = check_step(b, seqs, n, &total);

	if (r < 0 || !n)
		return r;
	for (uint32_t i = 0; i < n; i++) {
		for (uint32_t t = 0; t < seqs[i].n_tokens; t++, k++) {
			b->tokens[k] = seqs[i].tokens[t];
			b->seq[k] = seqs[i].slot;
			b->pos[k] = seqs[i].pos + t;
		}
	}
	r = model_forward(b->m, &b->kv, b->tokens, b->seq, b->pos, total, b->hidden);
	if (r < 0)
		return r;
	k = 0;
	for (uint32_t i = 0; i < n; i++) {
		k += seqs[i].n_tokens;
		b->n_past[seqs[i].slot] += seqs[i].n_tokens;
	}
	step_logits(b, seqs, n);
	return 0;
}

const struct backend_ops backend_engine_ops = {
	.name = "engine",
	.open = engine_open,
	.close = engine_close,
	.info = engine_info,
	.tokenize = engine_tokenize,
	.piece = engine_piece,
	.slot_alloc = engine_slot_alloc,
	.slot_free = engine_slot_free,
	.slot_claim = engine_slot_claim,
	.slot_copy = engine_slot_copy,
	.step = engine_step,
};
