// SPDX-License-Identifier: MIT
#include "daemon/sched.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "common/grow.h"
#include "engine/sampler.h"

/*
 * Prefix sharing (backend slot_copy, with the prompt cache): the fewest prompt tokens a copy
 * into a slot that already holds part of the prompt must save, and the fewest a deferred
 * prefill must save. A copy moves every position of the prefix, not only the new ones, and a
 * deferred request waits one step, so a few tokens are not worth either.
 */
#define SHARE_MIN_TOKENS 8

enum req_state {
	REQ_WAITING,  /* queued for a KV slot */
	REQ_ACTIVE,   /* holds a slot, being prefilled or decoded */
	REQ_FINISHED, /* slot freed; the final response is still to be delivered */
};

struct sched_req {
	TAILQ_ENTRY(sched_req) cl_link; /* client's live requests, by arrival */
	TAILQ_ENTRY(sched_req) q_link;	/* client's waiting queue or the active list */
	struct sched_client *c;
	uint64_t id;
	enum req_state state;
	bool stream;
	uint32_t max_tokens;
	uint64_t quota_tokens; /* charged to the client's token quota */

	int32_t *prompt; /* [n_prompt] */
	uint32_t n_prompt;
	uint32_t n_cached; /* prompt tokens whose KV a reused slot held or another slot lent */
	uint32_t n_fed;	   /* tokens in the KV slot */
	uint32_t slot;
	bool deferred;	      /* left out of a step to copy its prefill from another sequence */
	uint32_t deferred_at; /* n_fed when it was */
	bool has_next;	      /* next_tok sampled, to be fed next step */
	int32_t next_tok;

	int32_t *out; /* [cap_out] generated ids, stop token excluded */
	uint32_t n_out, cap_out, n_out_sent;
	char *text; /* [cap_text] text of out[], cut at a stop string */
	size_t n_text, cap_text, n_text_sent;

	char **stops; /* [n_stops] NUL-terminated copies */
	uint32_t n_stops;
	uint32_t *stop_ids; /* [n_stop_ids] */
	uint32_t n_stop_ids;

	struct sampler_params sp;
	uint64_t rng;
	Shiftadd__FinishReason finish;
	int status; /* Shiftadd__Status */
	uint64_t t_recv, t_first;
};

TAILQ_HEAD(req_list, sched_req);

/*
 * What a KV slot holds, for prompt reuse (backend slot_claim): the tokens stepped into it, in
 * order. It may lag behind the backend (when growing it failed): any prefix of what the slot
 * holds is still a valid record.
 */
struct slot_rec {
	int32_t *toks; /* [cap] */
	uint32_t n;
	size_t cap;
	uint64_t domain; /* of the client whose request filled it (sched_client_add) */
	uint64_t freed;	 /* when last released (s->clock), for least-recently-used eviction */
	bool busy;
};

struct sched_client {
	TAILQ_ENTRY(sched_client) link;
	void *owner;
	sched_emit_fn emit;
	uint64_t domain;
	struct req_list reqs;
	struct req_list waiting;
	uint32_t n_live;
	uint64_t tokens_live;
	uint64_t tokens_generated; /* counters for sched_client_stats() */
	uint64_t requests_done;
	bool blocked;
	bool broken; /* emit failed hard: never emit again */
};

struct sched {
	const struct backend_ops *ops;
	struct backend *be;
	struct backend_info info;
	struct sched_limits lim;
	TAILQ_HEAD(, sched_client) clients; /* rotated for round-robin admission */
	struct req_list active;		    /* rotated for prefill fairness */
	uint32_t n_active;
	uint32_t n_live;
	bool draining;
	struct backend_seq *seqs;     /* [n_slots] */
	struct sched_req **batch;     /* [n_slots] */
	float *logits;		      /* [n_slots][n_vocab] */
	struct sampler_cand *scratch; /* [n_vocab] */
	struct slot_rec *slots;	      /* [n_slots] with prompt reuse, else NULL */
	bool share;		      /* slots, and the backend copies prefixes between them */
	uint64_t clock;
	struct sched_stats st;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int sched_new(const struct backend_ops *ops, struct backend *be, const struct sched_limits *lim,
	      struct sched **ret)
{
	struct sched *s;

	if (!lim->max_batch_tokens || !lim->prefill_chunk || !lim->max_inflight)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->ops = ops;
	s->be = be;
	s->lim = *lim;
	ops->info(be, &s->info);
	TAILQ_INIT(&s->clients);
	TAILQ_INIT(&s->active);
	s->seqs = calloc(s->info.n_slots, sizeof(*s->seqs));
	s->batch = calloc(s->info.n_slots, sizeof(*s->batch));
	s->logits = calloc((size_t)s->info.n_slots * s->info.n_vocab, sizeof(*s->logits));
	s->scratch = calloc(s->info.n_vocab, sizeof(*s->scratch));
	if (lim->prompt_cache && ops->slot_claim) {
		s->slots = calloc(s->info.n_slots, sizeof(*s->slots));
		if (!s->slots) {
			sched_free(s);
			return -ENOMEM;
		}
		s->share = ops->slot_copy != NULL;
	}
	if (!s->seqs || !s->batch || !s->logits || !s->scratch) {
		sched_free(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

static void req_free(struct sched_req *r)
{
	for (uint32_t i = 0; i < r->n_stops; i++)
		free(r->stops[i]);
	free(r->stops);
	free(r->stop_ids);
	free(r->prompt);
	free(r->out);
	free(r->text);
	free(r);
}

/* Release the KV slot (if any) and leave the waiting/active lists. */
static void req_unqueue(struct sched *s, struct sched_req *r)
{
	if (r->state == REQ_ACTIVE) {
		s->ops->slot_free(s->be, r->slot);
		if (s->slots) {
			s->slots[r->slot].busy = false;
			s->slots[r->slot].freed = ++s->clock;
		}
		TAILQ_REMOVE(&s->active, r, q_link);
		s->n_active--;
	} else if (r->state == REQ_WAITING) {
		TAILQ_REMOVE(&r->c->waiting, r, q_link);
	}
}

static void req_destroy(struct sched *s, struct sched_req *r)
{
	struct sched_client *c = r->c;

	req_unqueue(s, r);
	TAILQ_REMOVE(&c->reqs, r, cl_link);
	c->n_live--;
	c->tokens_live -= r->quota_tokens;
	s->n_live--;
	req_free(r);
}

void sched_free(struct sched *s)
{
	struct sched_client *c;

	if (!s)
		return;
	while ((c = TAILQ_FIRST(&s->clients)))
		sched_client_remove(s, c);
	free(s->seqs);
	free(s->batch);
	free(s->logits);
	free(s->scratch);
	for (uint32_t i = 0; s->slots && i < s->info.n_slots; i++)
		free(s->slots[i].toks);
	free(s->slots);
	free(s);
}

int sched_client_add(struct sched *s, void *owner, sched_emit_fn emit, uint64_t domain,
		     struct sched_client **ret)
{
	struct sched_client *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->owner = owner;
	c->emit = emit;
	c->domain = domain;
	TAILQ_INIT(&c->reqs);
	TAILQ_INIT(&c->waiting);
	TAILQ_INSERT_TAIL(&s->clients, c, link);
	*ret = c;
	return 0;
}

void sched_client_remove(struct sched *s, struct sched_client *c)
{
	struct sched_req *r;

	if (!c)
		return;
	while ((r = TAILQ_FIRST(&c->reqs)))
		req_destroy(s, r);
	TAILQ_REMOVE(&s->clients, c, link);
	free(c);
}

static struct sched_req *find_req(struct sched_client *c, uint64_t id)
{
	struct sched_req *r;

	TAILQ_FOREACH(r, &c->reqs, cl_link)
	if (r->id == id)
		return r;
	return NULL;
}

static int copy_prompt(struct sched *s, struct sched_req *r, const Shiftadd__GenerateRequest *g)
{
	size_t n = 0;
	int ret;

	if (g->prompt_case == SHIFTADD__GENERATE_REQUEST__PROMPT_IDS && g->ids) {
		const Shiftadd__TokenIds *t = g->ids;

		if (t->n_ids > s->lim.max_prompt_tokens)
			return -E2BIG;
		r->prompt = malloc((t->n_ids ? t->n_ids : 1) * sizeof(*r->prompt));
		if (!r->prompt)
			return -ENOMEM;
		for (size_t i = 0; i < t->n_ids; i++) {
			if (t->ids[i] >= s->info.n_vocab)
				return -EINVAL;
			r->prompt[i] = (int32_t)t->ids[i];
		}
		n = t->n_ids;
	} else if (g->prompt_case == SHIFTADD__GENERATE_REQUEST__PROMPT_TEXT && g->text) {
		size_t len = strlen(g->text);

		/* A cheap bound before tokenizing: no tokenizer makes more tokens than bytes... */
		ret = s->ops->tokenize(s->be, g->text, len, &r->prompt, &n);
		if (ret < 0)
			return ret;
		if (n > s->lim.max_prompt_tokens)
			return -E2BIG;
	}
	if (n == 0) {
		/* An empty prompt starts from BOS, when the model has one. */
		if (s->info.bos_id < 0)
			return -EINVAL;
		free(r->prompt);
		r->prompt = malloc(sizeof(*r->prompt));
		if (!r->prompt)
			return -ENOMEM;
		r->prompt[0] = s->info.bos_id;
		n = 1;
	}
	if (n >= s->info.n_ctx)
		return -E2BIG;
	r->n_prompt = (uint32_t)n;
	return 0;
}

static int copy_stops(struct sched *s, struct sched_req *r, const Shiftadd__GenerateRequest *g)
{
	if (g->n_stop_strings > s->lim.max_stop_strings || g->n_stop_ids > s->lim.max_stop_strings)
		return -EINVAL;
	if (g->n_stop_strings) {
		r->stops = calloc(g->n_stop_strings, sizeof(*r->stops));
		if (!r->stops)
			return -ENOMEM;
	}
	for (size_t i = 0; i < g->n_stop_strings; i++) {
		size_t len = strlen(g->stop_strings[i]);

		if (len == 0 || len > s->lim.max_stop_bytes)
			return -EINVAL;
		r->stops[i] = strdup(g->stop_strings[i]);
		if (!r->stops[i])
			return -ENOMEM;
		r->n_stops = (uint32_t)i + 1;
	}
	if (g->n_stop_ids) {
		r->stop_ids = malloc(g->n_stop_ids * sizeof(*r->stop_ids));
		if (!r->stop_ids)
			return -ENOMEM;
		memcpy(r->stop_ids, g->stop_ids, g->n_stop_ids * sizeof(*r->stop_ids));
		r->n_stop_ids = (uint32_t)g->n_stop_ids;
	}
	return 0;
}

static int check_sampling(const Shiftadd__SamplingParams *p)
{
	if (!p)
		return 0;
	/* NaN fails every comparison, so write the accepted ranges positively. */
	if (isnan(p->temperature) || p->temperature > 100)
		return -EINVAL;
	if (!(p->top_p >= 0 && p->top_p <= 1))
		return -EINVAL;
	return 0;
}

int sched_submit(struct sched *s, struct sched_client *c, const Shiftadd__GenerateRequest *g)
{
	struct sched_req *r;
	uint64_t tokens;
	int ret;

	if (s->draining)
		return -ESHUTDOWN;
	if (g->request_id == 0 || find_req(c, g->request_id))
		return -EINVAL;
	if (c->n_live >= s->lim.max_inflight)
		return -EDQUOT;
	ret = check_sampling(g->sampling);
	if (ret < 0)
		return ret;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->c = c;
	r->id = g->request_id;
	r->stream = g->stream;
	r->max_tokens = g->max_tokens && g->max_tokens < s->lim.max_new_tokens
				? g->max_tokens
				: s->lim.max_new_tokens;
	ret = copy_prompt(s, r, g);
	if (ret < 0)
		goto out_free;
	ret = copy_stops(s, r, g);
	if (ret < 0)
		goto out_free;
	tokens = (uint64_t)r->n_prompt + r->max_tokens;
	if (c->tokens_live + tokens > s->lim.max_client_tokens) {
		ret = -EDQUOT;
		goto out_free;
	}
	if (g->sampling) {
		r->sp.temperature = g->sampling->temperature;
		r->sp.top_k = g->sampling->top_k;
		r->sp.top_p = g->sampling->top_p;
		r->sp.seed = g->sampling->seed;
	}
	r->rng = sampler_seed(r->sp.seed);
	r->quota_tokens = tokens;
	r->t_recv = now_ns();
	r->state = REQ_WAITING;
	TAILQ_INSERT_TAIL(&c->reqs, r, cl_link);
	TAILQ_INSERT_TAIL(&c->waiting, r, q_link);
	c->n_live++;
	c->tokens_live += tokens;
	s->n_live++;
	return 0;

out_free:
	req_free(r);
	return ret;
}

static void finish(struct sched *s, struct sched_req *r, Shiftadd__FinishReason why, int status)
{
	if (r->state == REQ_FINISHED)
		return;
	req_unqueue(s, r);
	r->state = REQ_FINISHED;
	r->finish = why;
	r->status = status;
	r->has_next = false;
}

int sched_cancel(struct sched *s, struct sched_client *c, uint64_t request_id)
{
	struct sched_req *r = find_req(c, request_id);

	if (!r || r->state == REQ_FINISHED)
		return -ENOENT;
	finish(s, r, SHIFTADD__FINISH_REASON__FINISH_CANCELLED, SHIFTADD__STATUS__STATUS_CANCELLED);
	return 0;
}

void sched_client_unblock(struct sched *s, struct sched_client *c)
{
	c->blocked = false;
}

bool sched_client_is_blocked(const struct sched_client *c)
{
	return c->blocked || c->broken;
}

uint32_t sched_client_n_live(const struct sched_client *c)
{
	return c->n_live;
}

bool sched_client_has_request(const struct sched_client *c, uint64_t request_id)
{
	return find_req((struct sched_client *)c, request_id) != NULL;
}

uint32_t sched_cancel_client(struct sched *s, struct sched_client *c)
{
	struct sched_req *r;
	uint32_t n = 0;

	TAILQ_FOREACH(r, &c->reqs, cl_link)
	{
		if (r->state == REQ_FINISHED)
			continue;
		finish(s, r, SHIFTADD__FINISH_REASON__FINISH_CANCELLED,
		       SHIFTADD__STATUS__STATUS_CANCELLED);
		n++;
	}
	return n;
}

void sched_client_stats(const struct sched_client *c, struct sched_client_stats *ret)
{
	ret->n_live = c->n_live;
	ret->tokens_generated = c->tokens_generated;
	ret->requests_done = c->requests_done;
}

/* Bytes at the end of r->text that could still grow into a stop string: held back. */
static size_t stop_holdback(const struct sched_req *r)
{
	size_t best = 0;

	for (uint32_t i = 0; i < r->n_stops; i++) {
		size_t sl = strlen(r->stops[i]);

		for (size_t k = sl - 1; k > best; k--) {
			if (k <= r->n_text && !memcmp(r->text + r->n_text - k, r->stops[i], k)) {
				best = k;
				break;
			}
		}
	}
	return best;
}

static int emit(struct sched_client *c, const Shiftadd__ServerMsg *m)
{
	int ret;

	if (c->blocked || c->broken)
		return -EAGAIN;
	ret = c->emit(c->owner, m);
	if (ret == -EAGAIN)
		c->blocked = true;
	else if (ret < 0 && ret != -E2BIG)
		c->broken = true;
	return ret;
}

static int emit_tokens(struct sched_req *r)
{
	Shiftadd__ServerMsg m = SHIFTADD__SERVER_MSG__INIT;
	Shiftadd__TokenEvent t = SHIFTADD__TOKEN_EVENT__INIT;
	size_t safe = r->n_text - stop_holdback(r);
	uint32_t ids[64];
	uint32_t n = r->n_out - r->n_out_sent;
	int ret;

	if (n == 0 && safe <= r->n_text_sent)
		return 0;
	if (n > 64)
		n = 64;
	for (uint32_t i = 0; i < n; i++)
		ids[i] = (uint32_t)r->out[r->n_out_sent + i];
	t.request_id = r->id;
	t.index = r->n_out_sent;
	t.n_ids = n;
	t.ids = ids;
	if (safe > r->n_text_sent) {
		t.text.data = (uint8_t *)r->text + r->n_text_sent;
		t.text.len = safe - r->n_text_sent;
	}
	t.t_ns = now_ns() - r->t_recv;
	m.msg_case = SHIFTADD__SERVER_MSG__MSG_TOKEN;
	m.token = &t;
	ret = emit(r->c, &m);
	if (ret < 0)
		return ret;
	r->n_out_sent += n;
	if (safe > r->n_text_sent)
		r->n_text_sent = safe;
	return 0;
}

static int emit_final(struct sched_req *r)
{
	Shiftadd__ServerMsg m = SHIFTADD__SERVER_MSG__INIT;
	Shiftadd__FinalResponse f = SHIFTADD__FINAL_RESPONSE__INIT;
	Shiftadd__Usage u = SHIFTADD__USAGE__INIT;
	uint32_t *ids = NULL;
	uint32_t n = r->n_out - r->n_out_sent;
	uint64_t t = now_ns();
	int ret;

	if (n) {
		ids = malloc(n * sizeof(*ids));
		if (!ids)
			return -ENOMEM;
		for (uint32_t i = 0; i < n; i++)
			ids[i] = (uint32_t)r->out[r->n_out_sent + i];
	}
	u.prompt_tokens = r->n_prompt;
	u.cached_tokens = r->n_cached;
	u.completion_tokens = r->n_out;
	f.request_id = r->id;
	f.finish_reason = r->finish;
	f.usage = &u;
	f.n_ids = n;
	f.ids = ids;
	f.text.data = (uint8_t *)r->text + r->n_text_sent;
	f.text.len = r->n_text - r->n_text_sent;
	f.ttft_ns = r->t_first ? r->t_first - r->t_recv : 0;
	f.total_ns = t - r->t_recv;
	f.status = r->status;
	m.msg_case = SHIFTADD__SERVER_MSG__MSG_FINAL;
	m.final = &f;
	ret = emit(r->c, &m);
	if (ret == -E2BIG) {
		/* The whole answer does not fit the client's ring: say so instead. */
		f.n_ids = 0;
		f.text.len = 0;
		f.finish_reason = SHIFTADD__FINISH_REASON__FINISH_ERROR;
		f.status = SHIFTADD__STATUS__STATUS_TOO_LONG;
		f.message = "response larger than the completion ring";
		ret = emit(r->c, &m);
	}
	free(ids);
	return ret;
}

/* Deliver what @c's requests have pending, in arrival order; stop at a full ring. */
static void flush_client(struct sched *s, struct sched_client *c)
{
	struct sched_req *r, *next;

	for (r = TAILQ_FIRST(&c->reqs); r; r = next) {
		next = TAILQ_NEXT(r, cl_link);
		if (c->blocked || c->broken)
			return;
		if (r->stream && emit_tokens(r) < 0)
			continue;
		if (r->state != REQ_FINISHED)
			continue;
		if (emit_final(r) < 0)
			continue;
		s->st.requests_done++;
		c->requests_done++;
		req_destroy(s, r);
	}
}

static void flush_all(struct sched *s)
{
	struct sched_client *c;

	TAILQ_FOREACH(c, &s->clients, link)
	flush_client(s, c);
}

static uint32_t common_prefix(const int32_t *a, uint32_t na, const int32_t *b, uint32_t nb)
{
	uint32_t n = na < nb ? na : nb, i = 0;

	while (i < n && a[i] == b[i])
		i++;
	return i;
}

/*
 * Claim the free slot whose recorded tokens share the longest prefix with @r's prompt (at
 * most all but its last token, whose logits are needed; only records of @r's client's domain
 * count), the least recently freed among equals, so that a cold request evicts the oldest
 * record. Sets r->slot and r->n_cached.
 */
static int claim_slot(struct sched *s, struct sched_req *r)
{
	uint32_t best = UINT32_MAX, keep = 0;

	for (uint32_t i = 0; i < s->info.n_slots; i++) {
		const struct slot_rec *sr = &s->slots[i];
		uint32_t k;

		if (sr->busy)
			continue;
		k = sr->domain == r->c->domain
			    ? common_prefix(sr->toks, sr->n, r->prompt, r->n_prompt - 1)
			    : 0;
		if (best == UINT32_MAX || k > keep ||
		    (k == keep && sr->freed < s->slots[best].freed)) {
			best = i;
			keep = k;
		}
	}
	if (best == UINT32_MAX)
		return -EBUSY;
	if (s->ops->slot_claim(s->be, best, keep) < 0) {
		/* the backend disagrees with the record: start the slot afresh */
		keep = 0;
		if (s->ops->slot_claim(s->be, best, 0) < 0)
			return -EBUSY;
	}
	s->slots[best].busy = true;
	s->slots[best].n = keep;
	s->slots[best].domain = r->c->domain;
	r->slot = best;
	r->n_cached = keep;
	r->n_fed = keep;
	s->st.tokens_cached += keep;
	return 0;
}

/* Record @q's tokens as what its slot holds (when the record is complete up to them). */
static void record_tokens(struct sched *s, const struct backend_seq *q)
{
	struct slot_rec *sr = &s->slots[q->slot];

	if (sr->n != q->pos || array_grow((void **)&sr->toks, &sr->cap,
					  (size_t)q->pos + q->n_tokens, sizeof(*sr->toks)) < 0)
		return;
	memcpy(sr->toks + q->pos, q->tokens, q->n_tokens * sizeof(*q->tokens));
	sr->n += q->n_tokens;
}

/*
 * Copy into @r's slot the longest prefix of its prompt that another slot of its client's
 * domain holds, busy or free (at most all but the prompt's last token, whose logits are
 * needed), when that saves computing at least SHARE_MIN_TOKENS tokens, or any number into a
 * slot that holds none of the prompt yet. The copied tokens count as cached.
 */
static void share_prefix(struct sched *s, struct sched_req *r)
{
	struct slot_rec *dst = &s->slots[r->slot];
	uint32_t need = r->n_prompt - 1, keep = r->n_fed, best = UINT32_MAX;

	for (uint32_t i = 0; i < s->info.n_slots && keep < need; i++) {
		const struct slot_rec *sr = &s->slots[i];
		uint32_t k;

		/* the token after the best so far must match before a full comparison */
		if (i == r->slot || sr->domain != r->c->domain || sr->n <= keep ||
		    sr->toks[keep] != r->prompt[keep])
			continue;
		k = common_prefix(sr->toks, sr->n, r->prompt, need);
		if (k > keep) {
			best = i;
			keep = k;
		}
	}
	if (best == UINT32_MAX || (r->n_fed && keep - r->n_fed < SHARE_MIN_TOKENS))
		return;
	/* room for the record first: a slot must never hold tokens its record gets wrong */
	if (array_grow((void **)&dst->toks, &dst->cap, keep, sizeof(*dst->toks)) < 0 ||
	    s->ops->slot_copy(s->be, r->slot, best, keep) < 0)
		return;
	memcpy(dst->toks, s->slots[best].toks, keep * sizeof(*dst->toks));
	dst->n = keep;
	s->st.tokens_cached += keep - r->n_fed;
	r->n_cached += keep - r->n_fed;
	r->n_fed = keep;
}

/*
 * Whether @r's prefill should sit this step out because a prefill chunk already in the
 * batch (its first @n sequences), of a request of the same domain, computes at least
 * SHARE_MIN_TOKENS of the tokens @r would compute next: @r copies them next step instead
 * (share_prefix). Never twice in a row unless a copy moved @r on in between, since the
 * source may be cancelled, fail, or lose its slot before then: every prefill goes ahead at
 * least every other step.
 */
static bool defer_prefill(struct sched *s, struct sched_req *r, uint32_t n)
{
	uint32_t want = r->n_fed + SHARE_MIN_TOKENS;

	if ((r->deferred && r->deferred_at == r->n_fed) || want > r->n_prompt - 1)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		const struct sched_req *a = s->batch[i];
		const struct backend_seq *q = &s->seqs[i];
		const struct slot_rec *sr = &s->slots[q->slot];

		/* a prefill chunk whose slot's record will hold it, reaching far enough */
		if (a->n_fed >= a->n_prompt || sr->domain != r->c->domain || sr->n != q->pos ||
		    q->pos + q->n_tokens < want ||
		    common_prefix(a->prompt, want, r->prompt, want) < want)
			continue;
		r->deferred = true;
		r->deferred_at = r->n_fed;
		return true;
	}
	return false;
}

/* Free slots go round-robin over clients that have waiting requests. */
static void admit(struct sched *s)
{
	while (s->n_active < s->info.n_slots) {
		struct sched_client *c;
		struct sched_req *r;
		uint32_t slot;

		TAILQ_FOREACH(c, &s->clients, link)
		if (!TAILQ_EMPTY(&c->waiting))
			break;
		if (!c)
			return;
		r = TAILQ_FIRST(&c->waiting);
		if (s->slots) {
			if (claim_slot(s, r) < 0)
				return;
		} else {
			if (s->ops->slot_alloc(s->be, &slot) < 0)
				return;
			r->slot = slot;
		}
		TAILQ_REMOVE(&c->waiting, r, q_link);
		r->state = REQ_ACTIVE;
		TAILQ_INSERT_TAIL(&s->active, r, q_link);
		s->n_active++;
		/* This client had its turn. */
		TAILQ_REMOVE(&s->clients, c, link);
		TAILQ_INSERT_TAIL(&s->clients, c, link);
	}
}

static bool can_step(const struct sched_req *r)
{
	if (r->c->blocked || r->c->broken)
		return false;
	if (r->n_fed < r->n_prompt)
		return true;
	/* Decode only once the previous token went out (bounded buffering per stream). */
	return r->has_next && (!r->stream || r->n_out_sent == r->n_out);
}

static bool is_stop_id(const struct sched_req *r, int32_t id)
{
	for (uint32_t i = 0; i < r->n_stop_ids; i++)
		if ((int32_t)r->stop_ids[i] == id)
			return true;
	return false;
}

/* Append a sampled token, then apply the stop rules in the protocol's order. */
static void take_token(struct sched *s, struct sched_req *r, int32_t tok)
{
	size_t cap_out = r->cap_out, old_len = r->n_text;
	char piece[256];
	int n;

	if (!r->t_first)
		r->t_first = now_ns();
	if (tok == s->info.eos_id) {
		finish(s, r, SHIFTADD__FINISH_REASON__FINISH_EOS, SHIFTADD__STATUS__STATUS_OK);
		return;
	}
	if (is_stop_id(r, tok)) {
		finish(s, r, SHIFTADD__FINISH_REASON__FINISH_STOP_ID, SHIFTADD__STATUS__STATUS_OK);
		return;
	}
	n = s->ops->piece(s->be, tok, piece, sizeof(piece));
	if (n < 0 || array_grow((void **)&r->out, &cap_out, r->n_out + 1, sizeof(*r->out)) < 0 ||
	    array_grow((void **)&r->text, &r->cap_text, r->n_text + (size_t)n, 1) < 0) {
		finish(s, r, SHIFTADD__FINISH_REASON__FINISH_ERROR,
		       SHIFTADD__STATUS__STATUS_INTERNAL);
		return;
	}
	if ((size_t)n > sizeof(piece))
		n = sizeof(piece);
	r->cap_out = (uint32_t)cap_out;
	r->out[r->n_out++] = tok;
	memcpy(r->text + r->n_text, piece, (size_t)n);
	r->n_text += (size_t)n;
	s->st.tokens_generated++;
	r->c->tokens_generated++;
	for (uint32_t i = 0; i < r->n_stops; i++) {
		size_t sl = strlen(r->stops[i]);
		size_t from = old_len >= sl ? old_len - sl + 1 : 0;

		for (size_t k = from; k + sl <= r->n_text; k++) {
			if (!memcmp(r->text + k, r->stops[i], sl)) {
				r->n_text = k;
				finish(s, r, SHIFTADD__FINISH_REASON__FINISH_STOP_STRING,
				       SHIFTADD__STATUS__STATUS_OK);
				return;
			}
		}
	}
	if (r->n_out >= r->max_tokens) {
		finish(s, r, SHIFTADD__FINISH_REASON__FINISH_LENGTH, SHIFTADD__STATUS__STATUS_OK);
		return;
	}
	if (r->n_fed >= s->info.n_ctx) {
		finish(s, r, SHIFTADD__FINISH_REASON__FINISH_CONTEXT, SHIFTADD__STATUS__STATUS_OK);
		return;
	}
	r->has_next = true;
	r->next_tok = tok;
}

int sched_step(struct sched *s)
{
	uint32_t budget = s->lim.max_batch_tokens, n = 0, i;
	struct sched_req *r;
	int ret;

	admit(s);
	flush_all(s);
	/* Decode tokens first: one each, they keep streams moving. */
	TAILQ_FOREACH(r, &s->active, q_link)
	{
		if (!budget)
			break;
		if (r->n_fed < r->n_prompt || !can_step(r))
			continue;
		s->batch[n] = r;
		s->seqs[n] = (struct backend_seq){ .slot = r->slot,
						   .pos = r->n_fed,
						   .n_tokens = 1,
						   .tokens = &r->next_tok,
						   .want_logits = true };
		n++;
		budget--;
	}
	/* Then prefill chunks in the rotating order of the active list. */
	TAILQ_FOREACH(r, &s->active, q_link)
	{
		uint32_t chunk;

		if (!budget)
			break;
		if (r->n_fed >= r->n_prompt || !can_step(r))
			continue;
		if (s->share) {
			share_prefix(s, r);
			if (defer_prefill(s, r, n))
				continue;
		}
		r->deferred = false;
		chunk = r->n_prompt - r->n_fed;
		if (chunk > s->lim.prefill_chunk)
			chunk = s->lim.prefill_chunk;
		if (chunk > budget)
			chunk = budget;
		s->batch[n] = r;
		s->seqs[n] = (struct backend_seq){ .slot = r->slot,
						   .pos = r->n_fed,
						   .n_tokens = chunk,
						   .tokens = r->prompt + r->n_fed,
						   .want_logits = r->n_fed + chunk == r->n_prompt };
		n++;
		budget -= chunk;
	}
	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		s->seqs[i].logits = s->logits + (size_t)i * s->info.n_vocab;
	ret = s->ops->step(s->be, s->seqs, n);
	s->st.steps++;
	if (ret < 0) {
		for (i = 0; i < n; i++)
			finish(s, s->batch[i], SHIFTADD__FINISH_REASON__FINISH_ERROR,
			       SHIFTADD__STATUS__STATUS_INTERNAL);
		flush_all(s);
		return ret;
	}
	for (i = 0; i < n; i++) {
		struct backend_seq *q = &s->seqs[i];

		r = s->batch[i];
		if (s->slots)
			record_tokens(s, q);
		r->n_fed += q->n_tokens;
		r->has_next = false;
		if (r->n_fed <= r->n_prompt)
			s->st.tokens_prefilled += q->n_tokens;
		if (q->want_logits)
			take_token(s, r,
				   sampler_sample(&r->sp, &r->rng, q->logits, s->info.n_vocab,
						  s->scratch));
	}
	/* Rotate so that the next step's prefill budget starts with someone else. */
	r = TAILQ_FIRST(&s->active);
	if (r) {
		TAILQ_REMOVE(&s->active, r, q_link);
		TAILQ_INSERT_TAIL(&s->active, r, q_link);
	}
	flush_all(s);
	return (int)n;
}

bool sched_has_work(const struct sched *s)
{
	const struct sched_client *c;
	const struct sched_req *r;

	TAILQ_FOREACH(r, &s->active, q_link)
	if (can_step(r))
		return true;
	TAILQ_FOREACH(c, &s->clients, link)
	{
		if (c->blocked || c->broken)
			continue;
		if (!TAILQ_EMPTY(&c->waiting) && s->n_active < s->info.n_slots)
			return true;
		TAILQ_FOREACH(r, &c->reqs, cl_link)
		if (r->state == REQ_FINISHED || (r->stream && r->n_out_sent < r->n_out))
			return true;
	}
	return false;
}

void sched_drain(struct sched *s)
{
	s->draining = true;
}

void sched_cancel_all(struct sched *s)
{
	struct sched_client *c;
	struct sched_req *r;

	TAILQ_FOREACH(c, &s->clients, link)
	TAILQ_FOREACH(r, &c->reqs, cl_link)
	finish(s, r, SHIFTADD__FINISH_REASON__FINISH_CANCELLED,
	       SHIFTADD__STATUS__STATUS_SHUTTING_DOWN);
}

uint32_t sched_n_live(const struct sched *s)
{
	return s->n_live;
}

void sched_stats(const struct sched *s, struct sched_stats *ret)
{
	const struct sched_client *c;
	const struct sched_req *r;

	*ret = s->st;
	ret->n_active = s->n_active;
	ret->n_waiting = 0;
	ret->kv_tokens = 0;
	TAILQ_FOREACH(r, &s->active, q_link)
	ret->kv_tokens += r->n_fed;
	TAILQ_FOREACH(c, &s->clients, link)
	TAILQ_FOREACH(r, &c->waiting, q_link)
	ret->n_waiting++;
}
