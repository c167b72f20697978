// SPDX-License-Identifier: MIT
/*
 * The fake backend (contract in daemon/backend.h): a deterministic toy language model with a
 * byte-level tokenizer, so the daemon, protocol, scheduler and client library can be tested
 * end to end without model files. Its KV "cache" is a rolling hash per slot, which makes
 * the sampled (non-greedy) output depend on every token the slot has seen; the hash after
 * each position is kept, so that a claimed slot can resume from any position it held, and a
 * slot can take over another's first positions (slot_copy), as real KV rows would.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/grow.h"
#include "daemon/backend.h"
#include "daemon/worker.h"

#define FAKE_BOS     256
#define FAKE_EOS     257
#define FAKE_N_VOCAB 258

/* State after position k (k = 0: empty): the rolling hash and the last token (-1: none). */
struct fake_pos {
	uint64_t hash;
	int32_t last;
};

struct fake_slot {
	bool used;
	uint32_t n_past;
	size_t cap;	     /* entries of at */
	struct fake_pos *at; /* [cap], at[0 .. n_past] valid; NULL until first stepped */
};

struct backend {
	struct backend_config cfg;
	struct fake_slot *slots; /* [n_slots] */
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static int32_t greedy_next(int32_t c)
{
	if (c >= 'a' && c < 'z')
		return c + 1;
	if (c == 'z')
		return 'a';
	if (c == '!')
		return '.';
	if (c == '.')
		return FAKE_EOS;
	return 'a';
}

static int fake_open(const struct backend_config *cfg, struct backend **ret, struct errbuf *e)
{
	struct backend *b;

	if (cfg->n_slots == 0 || cfg->n_ctx == 0)
		return errbuf_set(e, -EINVAL, "n_slots and n_ctx must be > 0");
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->cfg = *cfg;
	b->slots = calloc(cfg->n_slots, sizeof(*b->slots));
	if (!b->slots) {
		free(b);
		return -ENOMEM;
	}
	*ret = b;
	return 0;
}

static void fake_close(struct backend *b)
{
	if (!b)
		return;
	for (uint32_t i = 0; i < b->cfg.n_slots; i++)
		free(b->slots[i].at);
	free(b->slots);
	free(b);
}

static void fake_info(const struct backend *b, struct backend_info *ret)
{
	memset(ret, 0, sizeof(*ret));
	strcpy(ret->model_name, "fake-bytes");
	ret->n_vocab = FAKE_N_VOCAB;
	ret->eos_id = FAKE_EOS;
	ret->bos_id = FAKE_BOS;
	ret->n_ctx = b->cfg.n_ctx;
	ret->n_slots = b->cfg.n_slots;
}

static int fake_tokenize(struct backend *b, const char *text, size_t len, int32_t **ret_ids,
			 size_t *ret_n)
{
	int32_t *ids = malloc((len ? len : 1) * sizeof(*ids));

	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++)
		ids[i] = (unsigned char)text[i];
	*ret_ids = ids;
	*ret_n = len;
	return 0;
}

static int fake_piece(struct backend *b, int32_t id, char *buf, size_t cap)
{
	if (id < 0 || id >= FAKE_N_VOCAB)
		return -EINVAL;
	if (id >= 256)
		return 0;
	if (cap)
		buf[0] = (char)id;
	return 1;
}

static int fake_slot_alloc(struct backend *b, uint32_t *ret_slot)
{
	for (uint32_t i = 0; i < b->cfg.n_slots; i++) {
		if (!b->slots[i].used) {
			b->slots[i].used = true;
			b->slots[i].n_past = 0;
			*ret_slot = i;
			return 0;
		}
	}
	return -EBUSY;
}

static void fake_slot_free(struct backend *b, uint32_t slot)
{
	if (slot < b->cfg.n_slots)
		b->slots[slot].used = false;
}

static int fake_slot_claim(struct backend *b, uint32_t slot, uint32_t keep)
{
	struct fake_slot *sl;

	if (slot >= b->cfg.n_slots)
		return -EINVAL;
	sl = &b->slots[slot];
	if (sl->used)
		return -EBUSY;
	if (keep > sl->n_past)
		return -EINVAL;
	sl->used = true;
	sl->n_past = keep;
	return 0;
}

static struct fake_pos fake_state(const struct fake_slot *sl)
{
	return sl->at ? sl->at[sl->n_past] : (struct fake_pos){ 0, -1 };
}

/* Room for at[0 .. @n_past]; at[0], the empty state, is set when the array is first made. */
static int fake_reserve(struct fake_slot *sl, uint32_t n_past)
{
	bool fresh = !sl->at;
	int ret = array_grow((void **)&sl->at, &sl->cap, (size_t)n_past + 1, sizeof(*sl->at));

	if (ret < 0)
		return ret;
	if (fresh)
		sl->at[0] = (struct fake_pos){ 0, -1 };
	return 0;
}

/*
 * The states after each of @src's first @n positions become @dst's, so @dst's hashes stay a
 * function of the tokens it holds, exactly as if it had stepped them.
 */
static int fake_slot_copy(struct backend *b, uint32_t dst, uint32_t src, uint32_t n)
{
	struct fake_slot *d, *sl;
	int ret;

	if (dst >= b->cfg.n_slots || src >= b->cfg.n_slots || dst == src)
		return -EINVAL;
	d = &b->slots[dst];
	sl = &b->slots[src];
	if (!d->used || n > sl->n_past)
		return -EINVAL;
	if (n) {
		ret = fake_reserve(d, n);
		if (ret < 0)
			return ret;
		/* at[0] is the empty state in every slot; n_past > 0 means sl->at exists */
		memcpy(d->at + 1, sl->at + 1, (size_t)n * sizeof(*d->at));
	}
	d->n_past = n;
	return 0;
}

struct fake_task {
	struct backend *b;
	struct backend_seq *seqs;
};

static void fill_logits(void *arg, uint32_t i, uint32_t worker)
{
	struct fake_task *t = arg;
	struct backend_seq *s = &t->seqs[i];
	struct fake_pos st = fake_state(&t->b->slots[s->slot]);
	int32_t peak = greedy_next(st.last);

	if (!s->want_logits)
		return;
	for (uint32_t v = 0; v < FAKE_N_VOCAB; v++) {
		uint64_t h = mix64(st.hash ^ mix64(v + 1));

		s->logits[v] = (float)(h >> 40) / (float)(1u << 24) * 4.0f;
	}
	s->logits[peak] = 8.0f;
}

static int fake_step(struct backend *b, struct backend_seq *seqs, uint32_t n)
{
	struct fake_task task = { b, seqs };
	uint64_t total = 0;

	/* Validate everything before changing anything, as a real forward pass would. */
	for (uint32_t i = 0; i < n; i++) {
		const struct backend_seq *s = &seqs[i];
		const struct fake_slot *sl;

		if (s->slot >= b->cfg.n_slots || !b->slots[s->slot].used || s->n_tokens == 0)
			return -EINVAL;
		sl = &b->slots[s->slot];
		if (s->pos != sl->n_past || s->n_tokens > b->cfg.n_ctx - sl->n_past)
			return -EINVAL;
		for (uint32_t j = 0; j < i; j++)
			if (seqs[j].slot == s->slot)
				return -EINVAL;
		for (uint32_t k = 0; k < s->n_tokens; k++)
			if (s->tokens[k] < 0 || s->tokens[k] >= FAKE_N_VOCAB)
				return -EINVAL;
		total += s->n_tokens;
	}
	if (total > b->cfg.max_batch_tokens)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (fake_reserve(&b->slots[seqs[i].slot], seqs[i].pos + seqs[i].n_tokens) < 0)
			return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct fake_slot *sl = &b->slots[seqs[i].slot];

		for (uint32_t k = 0; k < seqs[i].n_tokens; k++, sl->n_past++)
			sl->at[sl->n_past + 1] = (struct fake_pos){
				mix64(sl->at[sl->n_past].hash ^ (uint64_t)(seqs[i].tokens[k] + 1)),
				seqs[i].tokens[k],
			};
	}
	worker_pool_run(b->cfg.pool, n, fill_logits, &task);
	if (b->cfg.step_delay_us) {
		struct timespec ts = { b->cfg.step_delay_us / 1000000,
				       (long)(b->cfg.step_delay_us % 1000000) * 1000 };

		nanosleep(&ts, NULL);
	}
	return 0;
}

const struct backend_ops backend_fake_ops = {
	.name = "fake",
	.open = fake_open,
	.close = fake_close,
	.info = fake_info,
	.tokenize = fake_tokenize,
	.piece = fake_piece,
	.slot_alloc = fake_slot_alloc,
	.slot_free = fake_slot_free,
	.slot_claim = fake_slot_claim,
	.slot_copy = fake_slot_copy,
	.step = fake_step,
};
