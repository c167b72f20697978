// SPDX-License-Identifier: MIT
/*
 * Scheduler with the fake backend: outputs, chunked prefill, fairness, cancel, back-pressure,
 * the prompt cache and prefix sharing between slots.
 */
#include "daemon/backend.h"
#include "daemon/sched.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/lib/fake_greedy.h"

#define MAX_REQ 16

/* What one client saw, per request id (1..MAX_REQ-1). */
struct rec {
	bool full; /* pretend the completion ring is full */
	int n_msgs;
	char text[MAX_REQ][512];
	size_t text_len[MAX_REQ];
	uint32_t n_ids[MAX_REQ];
	int n_token_events[MAX_REQ];
	int finish[MAX_REQ];	  /* 0 until the final */
	uint32_t cached[MAX_REQ]; /* the final's usage.cached_tokens */
	int status[MAX_REQ];
	int error[MAX_REQ]; /* Error message status, 0 if none */
	uint64_t done_order[MAX_REQ];
	int n_done;
	uint64_t *global_order; /* shared across clients */
	int *n_global;
};

static int rec_emit(void *owner, const Shiftadd__ServerMsg *m)
{
	struct rec *r = owner;
	uint64_t id;

	if (r->full)
		return -EAGAIN;
	r->n_msgs++;
	switch (m->msg_case) {
	case SHIFTADD__SERVER_MSG__MSG_TOKEN:
		id = m->token->request_id;
		assert_true(id < MAX_REQ);
		assert_int_equal(m->token->index, r->n_ids[id]);
		if (m->token->text.len)
			memcpy(r->text[id] + r->text_len[id], m->token->text.data,
			       m->token->text.len);
		r->text_len[id] += m->token->text.len;
		r->n_ids[id] += (uint32_t)m->token->n_ids;
		r->n_token_events[id]++;
		break;
	case SHIFTADD__SERVER_MSG__MSG_FINAL:
		id = m->final->request_id;
		assert_true(id < MAX_REQ);
		if (m->final->text.len)
			memcpy(r->text[id] + r->text_len[id], m->final->text.data,
			       m->final->text.len);
		r->text_len[id] += m->final->text.len;
		r->n_ids[id] += (uint32_t)m->final->n_ids;
		assert_int_equal(m->final->usage->completion_tokens, r->n_ids[id]);
		r->cached[id] = m->final->usage->cached_tokens;
		r->finish[id] = m->final->finish_reason;
		r->status[id] = m->final->status;
		r->done_order[r->n_done++] = id;
		if (r->global_order)
			r->global_order[(*r->n_global)++] = (uint64_t)(uintptr_t)r * 100 + id;
		break;
	case SHIFTADD__SERVER_MSG__MSG_ERROR:
		r->error[m->error->request_id] = m->error->status;
		break;
	default:
		fail();
	}
	return 0;
}

/* Tokens stepped through the fake backend, by every rig (they run one at a time). */
static uint64_t n_stepped;

static int counting_step(struct backend *b, struct backend_seq *seqs, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		n_stepped += seqs[i].n_tokens;
	return backend_fake_ops.step(b, seqs, n);
}

struct rig {
	struct backend_ops ops; /* the fake backend, its steps counted */
	struct backend *be;
	struct sched *s;
};

static void rig_init_cache(struct rig *g, uint32_t n_slots, uint32_t batch, uint32_t chunk,
			   bool prompt_cache)
{
	struct backend_config bc = { .n_slots = n_slots, .n_ctx = 256, .max_batch_tokens = batch };
	struct sched_limits lim = { .max_inflight = 8,
				    .max_prompt_tokens = 200,
				    .max_new_tokens = 100,
				    .max_client_tokens = 10000,
				    .max_stop_strings = 4,
				    .max_stop_bytes = 16,
				    .max_batch_tokens = batch,
				    .prefill_chunk = chunk,
				    .prompt_cache = prompt_cache };

	g->ops = backend_fake_ops;
	g->ops.step = counting_step;
	assert_int_equal(backend_fake_ops.open(&bc, &g->be, NULL), 0);
	assert_int_equal(sched_new(&g->ops, g->be, &lim, &g->s), 0);
}

static void rig_init(struct rig *g, uint32_t n_slots, uint32_t batch, uint32_t chunk)
{
	rig_init_cache(g, n_slots, batch, chunk, false);
}

static void rig_done(struct rig *g)
{
	sched_free(g->s);
	backend_fake_ops.close(g->be);
}

static int submit(struct rig *g, struct sched_client *c, uint64_t id, const char *prompt,
		  uint32_t max_tokens, bool stream)
{
	Shiftadd__GenerateRequest req = SHIFTADD__GENERATE_REQUEST__INIT;

	req.request_id = id;
	req.prompt_case = SHIFTADD__GENERATE_REQUEST__PROMPT_TEXT;
	req.text = (char *)prompt;
	req.max_tokens = max_tokens;
	req.stream = stream;
	return sched_submit(g->s, c, &req);
}

static void run_until_idle(struct rig *g, int max_steps)
{
	for (int i = 0; i < max_steps && sched_n_live(g->s); i++)
		assert_true(sched_step(g->s) >= 0);
}

static void test_greedy_output_streamed_and_final(void **state)
{
	struct rec a = { 0 };
	struct sched_client *c;
	struct rig g;
	char want[64];

	rig_init(&g, 4, 64, 16);
	assert_int_equal(sched_client_add(g.s, &a, rec_emit, 0, &c), 0);
	assert_int_equal(submit(&g, c, 1, "hello", 30, true), 0);
	assert_int_equal(submit(&g, c, 2, "hello", 30, false), 0);
	assert_int_equal(submit(&g, c, 3, "wow!", 30, true), 0);
	run_until_idle(&g, 100);
	fake_greedy("hello", 30, want);
	assert_int_equal(a.text_len[1], 30);
	assert_memory_equal(a.text[1], want, 30);
	assert_int_equal(a.n_token_events[1], 30);
	assert_int_equal(a.finish[1], SHIFTADD__FINISH_REASON__FINISH_LENGTH);
	/* non-streamed: one final with everything */
	assert_int_equal(a.n_token_events[2], 0);
	assert_memory_equal(a.text[2], want, 30);
	assert_int_equal(a.text_len[3], 1);
	assert_memory_equal(a.text[3], ".", 1);
	assert_int_equal(a.finish[3], SHIFTADD__FINISH_REASON__FINISH_EOS);
	rig_done(&g);
}

static void test_stop_strings_and_ids(void **state)
{
	Shiftadd__GenerateRequest req = SHIFTADD__GENERATE_REQUEST__INIT;
	char *stops[] = { "zz", "uv" };
	uint32_t stop_ids[] = { 's' };
	struct rec a = { 0 };
	struct sched_client *c;
	struct rig g;

	rig_init(&g, 4, 64, 16);
	assert_int_equal(sched_client_add(g.s, &a, rec_emit, 0, &c), 0);
	req.request_id = 1;
	req.prompt_case = SHIFTADD__GENERATE_REQUEST__PROMPT_TEXT;
	req.text = "hello";
	req.stream = true;
	req.n_stop_strings = 2;
	req.stop_strings = stops;
	assert_int_equal(sched_submit(g.s, c, &req), 0);
	req.request_id = 2;
	req.n_stop_strings = 0;
	req.n_stop_ids = 1;
	req.stop_ids = stop_ids;
	assert_int_equal(sched_submit(g.s, c, &req), 0);
	run_until_idle(&g, 100);
	/* "pqrstuv...": stop before "uv"; the held-back "u" is never sent */
	assert_int_equal(a.text_len[1], 5);
	assert_memory_equal(a.text[1], "pqrst", 5);
	assert_int_equal(a.finish[1], SHIFTADD__FINISH_REASON__FINISH_STOP_STRING);
	assert_int_equal(a.text_len[2], 3); /* p q r, then 's' stops (not emitted) */
	assert_memory_equal(a.text[2], "pqr", 3);
	assert_int_equal(a.finish[2], SHIFTADD__FINISH_REASON__FINISH_STOP_ID);
	rig_done(&g);
}

static void test_long_prefill_is_chunked_and_does_not_stall_decode(void **state)
{
	struct rec a = { 0 }, b = { 0 };
	struct sched_client *ca, *cb;
	struct sched_stats st;
	char prompt[41];
	struct rig g;

	memset(prompt, 'q', 40);
	prompt[40] = 0;
	rig_init(&g, 4, 5, 4); /* 5 tokens per step, 4 per prefill chunk */
	assert_int_equal(sched_client_add(g.s, &a, rec_emit, 0, &ca), 0);
	assert_int_equal(sched_client_add(g.s, &b, rec_emit, 0, &cb), 0);
	assert_int_equal(submit(&g, ca, 1, "a", 50, true), 0);
	assert_true(sched_step(g.s) == 1); /* a's 1-token prompt */
	assert_int_equal(a.n_ids[1], 1);
	assert_int_equal(submit(&g, cb, 1, prompt, 5, true), 0);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(sched_step(g.s), 2); /* a decodes + b prefills, every step */
		assert_int_equal(a.n_ids[1], 2 + (uint32_t)i);
	}
	sched_stats(g.s, &st);
	assert_true(st.tokens_prefilled == 41); /* 1 + 40 in chunks of 4 */
	assert_int_equal(b.n_ids[1], 1);	/* first token right after the last chunk */
	run_until_idle(&g, 200);
	assert_int_equal(b.finish[1], SHIFTADD__FINISH_REASON__FINISH_LENGTH);
	rig_done(&g);
}

static void test_slots_round_robin_across_clients(void **state)
{
	uint64_t order[32];
	int n_order = 0;
	struct rec x = { .global_order = order, .n_global = &n_order };
	struct rec y = { .global_order = order, .n_global = &n_order };
	struct sched_client *cx, *cy;
	struct rig g;
	uint64_t X = (uint64_t)(uintptr_t)&x * 100, Y = (uint64_t)(uintptr_t)&y * 100;

	rig_init(&g, 1, 16, 16); /* one slot: strict turns */
	assert_int_equal(sched_client_add(g.s, &x, rec_emit, 0, &cx), 0);
	assert_int_equal(sched_client_add(g.s, &y, rec_emit, 0, &cy), 0);
	for (uint64_t i = 1; i <= 4; i++)
		assert_int_equal(submit(&g, cx, i, "a", 3, true), 0);
	assert_int_equal(sched_step(g.s), 1); /* x1 admitted */
	assert_int_equal(submit(&g, cy, 1, "a", 3, true), 0);
	assert_int_equal(submit(&g, cy, 2, "a", 3, true), 0);
	run_until_idle(&g, 200);
	assert_int_equal(n_order, 6);
	/* x flooded first, but y gets every other turn */
	assert_true(order[0] == X + 1);
	assert_true(order[1] == Y + 1);
	assert_true(order[2] == X + 2);
	assert_true(order[3] == Y + 2);
	assert_true(order[4] == X + 3);
	assert_true(order[5] == X + 4);
	rig_done(&g);
}

static void test_cancel_frees_slot_at_once(void **state)
{
	struct rec a = { 0 };
	struct sched_client *c;
	struct rig g;

	rig_init(&g, 1, 16, 16);
	assert_int_equal(sched_client_add(g.s, &a, rec_emit, 0, &c), 0);
	assert_int_equal(submit(&g, c, 1, "a", 100, true), 0);
	assert_int_equal(submit(&g, c, 2, "a", 2, true), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(sched_step(g.s), 1);
	assert_int_equal(a.n_ids[2], 0); /* waiting for the only slot */
	assert_int_equal(sched_cancel(g.s, c, 1), 0);
	assert_int_equal(sched_cancel(g.s, c, 1), -ENOENT);
	assert_int_equal(sched_step(g.s), 1); /* request 2 runs in the very next step */
	assert_int_equal(a.finish[1], SHIFTADD__FINISH_REASON__FINISH_CANCELLED);
	assert_int_equal(a.n_ids[1], 5);
	assert_int_equal(a.n_ids[2], 1);
	run_until_idle(&g, 10);
	assert_int_equal(a.finish[2], SHIFTADD__FINISH_REASON__FINISH_LENGTH);
	rig_done(&g);
}

static void test_full_ring_pauses_only_that_client(void **state)
{
	struct rec a = { 0 }, b = { 0 };
	struct sched_client *ca, *cb;
	char want[64];
	struct rig g;

	rig_init(&g, 4, 16, 16);
	assert_int_equal(sched_client_add(g.s, &a, rec_emit, 0, &ca), 0);
	assert_int_equal(sched_client_add(g.s, &b, rec_emit, 0, &cb), 0);
	assert_int_equal(submit(&g, ca, 1, "hello", 20, true), 0);
	assert_int_equal(submit(&g, cb, 1, "hello", 20, true), 0);
	for (int i = 0; i < 3; i++)
		sched_step(g.s);
	a.full = true;
	for (int i = 0; i < 10; i++)
		sched_step(g.s);
	assert_true(sched_client_is_blocked(ca));
	assert_int_equal(a.n_ids[1], 3);  /* paused, nothing lost or generated ahead */
	assert_int_equal(b.n_ids[1], 13); /* the other client kept going */
	a.full = false;
	sched_client_unblock(g.s, ca);
	run_until_idle(&g, 100);
	fake_greedy("hello", 20, want);
	assert_int_equal(a.text_len[1], 20);
	assert_memory_equal(a.text[1], want, 20);
	assert_int_equal(a.finish[1], SHIFTADD__FINISH_REASON__FINISH_LENGTH);
	rig_done(&g);
}

static void test_submit_validation(void **state)
{
	Shiftadd__GenerateRequest req = SHIFTADD__GENERATE_REQUEST__INIT;
	Shiftadd__SamplingParams sp = SHIFTADD__SAMPLING_PARAMS__INIT;
	Shiftadd__TokenIds ids = SHIFTADD__TOKEN_IDS__INIT;
	uint32_t bad_ids[] = { 1, 2, 258 }, long_ids[201] = { 0 };
	char *stops[5] = { "a", "b", "c", "d", "e" };
	char *empty_stop[1] = { "" };
	struct rec a = { 0 };
	struct sched_client *c;
	struct rig g;

	rig_init(&g, 2, 16, 16);
	assert_int_equal(sched_client_add(g.s, &a, rec_emit, 0, &c), 0);
	req.prompt_case = SHIFTADD__GENERATE_REQUEST__PROMPT_IDS;
	req.ids = &ids;
	ids.ids = bad_ids;
	ids.n_ids = 2;
	req.request_id = 0;
	assert_int_equal(sched_submit(g.s, c, &req), -EINVAL); /* id 0 */
	req.request_id = 1;
	assert_int_equal(sched_submit(g.s, c, &req), 0);
	assert_int_equal(sched_submit(g.s, c, &req), -EINVAL); /* duplicate id */
	req.request_id = 2;
	ids.n_ids = 3;
	assert_int_equal(sched_submit(g.s, c, &req), -EINVAL); /* id >= n_vocab */
	ids.ids = long_ids;
	ids.n_ids = 201;
	assert_int_equal(sched_submit(g.s, c, &req), -E2BIG);
	ids.n_ids = 1;
	req.sampling = &sp;
	sp.temperature = NAN;
	assert_int_equal(sched_submit(g.s, c, &req), -EINVAL);
	sp.temperature = 1;
	sp.top_p = 2;
	assert_int_equal(sched_submit(g.s, c, &req), -EINVAL);
	sp.top_p = 0.5f;
	req.n_stop_strings = 5;
	req.stop_strings = stops;
	assert_int_equal(sched_submit(g.s, c, &req), -EINVAL); /* more than 4 */
	req.n_stop_strings = 1;
	req.stop_strings = empty_stop;
	assert_int_equal(sched_submit(g.s, c, &req), -EINVAL);
	req.n_stop_strings = 0;
	/* empty prompt: starts from BOS */
	req.prompt_case = SHIFTADD__GENERATE_REQUEST__PROMPT__NOT_SET;
	assert_int_equal(sched_submit(g.s, c, &req), 0);
	/* in-flight quota: 8 */
	for (uint64_t id = 3; id < 9; id++) {
		req.request_id = id;
		assert_int_equal(sched_submit(g.s, c, &req), 0);
	}
	req.request_id = 9;
	assert_int_equal(sched_submit(g.s, c, &req), -EDQUOT);
	sched_drain(g.s);
	sched_cancel_all(g.s);
	run_until_idle(&g, 10);
	assert_int_equal(sched_n_live(g.s), 0);
	req.request_id = 10;
	assert_int_equal(sched_submit(g.s, c, &req), -ESHUTDOWN);
	rig_done(&g);
}

static void test_garbage_bytes_never_crash_the_decoder(void **state)
{
	uint64_t x = 12345;
	uint8_t buf[256];
	int decoded = 0;

	/* Hostile payloads: whatever protobuf-c makes of them, unpack returns or fails cleanly. */
	for (int i = 0; i < 20000; i++) {
		size_t len = 1 + (size_t)(i % 255);
		Shiftadd__ClientMsg *m;

		for (size_t k = 0; k < len; k++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			buf[k] = (uint8_t)(x >> 56);
		}
		m = shiftadd__client_msg__unpack(NULL, len, buf);
		if (m) {
			decoded++;
			shiftadd__client_msg__free_unpacked(m, NULL);
		}
	}
	assert_true(decoded < 20000);
}

/* A sampled (seeded) request: its tokens depend on the hash of everything its slot holds. */
static int submit_sampled(struct rig *g, struct sched_client *c, uint64_t id, const char *prompt)
{
	Shiftadd__GenerateRequest req = SHIFTADD__GENERATE_REQUEST__INIT;
	Shiftadd__SamplingParams sp = SHIFTADD__SAMPLING_PARAMS__INIT;

	sp.temperature = 1;
	sp.seed = 7;
	req.request_id = id;
	req.prompt_case = SHIFTADD__GENERATE_REQUEST__PROMPT_TEXT;
	req.text = (char *)prompt;
	req.max_tokens = 12;
	req.sampling = &sp;
	return sched_submit(g->s, c, &req);
}

/* Run @prompts one after another (each alone in the scheduler) as requests 1, 2, ... */
static void run_in_turn(struct rig *g, struct rec *a, const char *const *prompts, int n)
{
	struct sched_client *c;

	assert_int_equal(sched_client_add(g->s, a, rec_emit, 0, &c), 0);
	for (int i = 0; i < n; i++) {
		assert_int_equal(submit_sampled(g, c, (uint64_t)i + 1, prompts[i]), 0);
		run_until_idle(g, 200);
		assert_int_equal(a->finish[i + 1], SHIFTADD__FINISH_REASON__FINISH_LENGTH);
	}
}

/*
 * Two slots. 1 takes slot 0, 2 (cold) the unused slot 1; 3 reuses 1's "hello " (6 tokens), 4
 * 2's "qwerty"; 5 is cold and evicts the least recently freed slot (3's); 6 repeats 4's
 * prompt (all but its last token reused); 7 finds 3's prefix evicted. Every output equals
 * the same request's without the cache.
 */
static void test_prompt_cache_reuses_prefixes_with_identical_outputs(void **state)
{
	static const char *const prompts[] = { "hello world", "qwerty",	 "hello there", "qwerty!",
					       "zzz top",     "qwerty!", "hello there" };
	static const uint32_t want_cached[] = { 0, 0, 6, 6, 0, 6, 0 };
	struct rec with = { 0 }, without = { 0 };
	struct sched_stats st;
	struct rig g, h;
	int n = (int)(sizeof(prompts) / sizeof(prompts[0]));

	rig_init_cache(&g, 2, 64, 4, true);
	rig_init_cache(&h, 2, 64, 4, false);
	run_in_turn(&g, &with, prompts, n);
	run_in_turn(&h, &without, prompts, n);
	for (int i = 1; i <= n; i++) {
		assert_int_equal(with.cached[i], want_cached[i - 1]);
		assert_int_equal(without.cached[i], 0);
		assert_int_equal(with.text_len[i], without.text_len[i]);
		assert_memory_equal(with.text[i], without.text[i], without.text_len[i]);
	}
	/* the sampled outputs do depend on the prompt, so equal outputs mean equal KV */
	assert_memory_not_equal(with.text[1], with.text[3], 12);
	sched_stats(g.s, &st);
	assert_true(st.tokens_cached == 18);
	assert_true(st.tokens_prefilled == 11 + 6 + 5 + 1 + 7 + 1 + 11);
	rig_done(&g);
	rig_done(&h);
}

/*
 * Records are per domain (the daemon passes each client's uid): client B of another domain
 * finds nothing of A's "hello world" for its "hello there", while A's own "hello there" then
 * reuses "hello " (6 tokens). B's cold request took the never-used slot 1, so A's record in
 * slot 0 was still there for it.
 */
static void test_prompt_cache_is_not_shared_across_domains(void **state)
{
	struct rec a = { 0 }, b = { 0 };
	struct sched_client *ca, *cb;
	struct rig g;

	rig_init_cache(&g, 2, 64, 4, true);
	assert_int_equal(sched_client_add(g.s, &a, rec_emit, 1000, &ca), 0);
	assert_int_equal(sched_client_add(g.s, &b, rec_emit, 1001, &cb), 0);
	assert_int_equal(submit_sampled(&g, ca, 1, "hello world"), 0);
	run_until_idle(&g, 200);
	assert_int_equal(submit_sampled(&g, cb, 1, "hello there"), 0);
	run_until_idle(&g, 200);
	assert_int_equal(submit_sampled(&g, ca, 2, "hello there"), 0);
	run_until_idle(&g, 200);
	assert_int_equal(a.finish[1], SHIFTADD__FINISH_REASON__FINISH_LENGTH);
	assert_int_equal(b.finish[1], SHIFTADD__FINISH_REASON__FINISH_LENGTH);
	assert_int_equal(a.finish[2], SHIFTADD__FINISH_REASON__FINISH_LENGTH);
	assert_int_equal(a.cached[1], 0);
	assert_int_equal(b.cached[1], 0);
	assert_int_equal(a.cached[2], 6);
	/* same prompt, same seed: the same tokens whichever KV they started from */
	assert_int_equal(a.text_len[2], b.text_len[1]);
	assert_memory_equal(a.text[2], b.text[1], b.text_len[1]);
	rig_done(&g);
}

/* 41 tokens: prefilled in chunks of 16, 16 and 9 */
#define WAVE_PROMPT "Once upon a time, a fox jumped over a dog"
#define WAVE_N	    41
#define WAVE_CHUNK  16
#define WAVE_MAX    8

static struct rec wave[WAVE_MAX];

/* The seeded output of WAVE_PROMPT alone, without the cache: into @out, its length returned. */
static size_t wave_reference(char *out)
{
	struct rec a = { 0 };
	struct rig h;

	rig_init_cache(&h, 1, 256, WAVE_CHUNK, false);
	run_in_turn(&h, &a, (const char *const[]){ WAVE_PROMPT }, 1);
	memcpy(out, a.text[1], a.text_len[1]);
	rig_done(&h);
	return a.text_len[1];
}

/*
 * @n clients of @domains (client i's is domains[i % n_domains]) each submit WAVE_PROMPT as
 * request 1 at once, into @n free slots; run until all are answered. Every answer must be
 * the reference; returns the prompt tokens prefilled.
 */
static uint64_t run_wave(bool cache, uint32_t n, const uint64_t *domains, uint32_t n_domains)
{
	struct sched_client *c[WAVE_MAX];
	struct sched_stats st;
	char want[64];
	size_t n_want = wave_reference(want);
	uint64_t cached = 0;
	struct rig g;

	assert_true(strlen(WAVE_PROMPT) == WAVE_N && n <= WAVE_MAX && n_want == 12);
	memset(wave, 0, sizeof(wave));
	rig_init_cache(&g, n, 256, WAVE_CHUNK, cache);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(
			sched_client_add(g.s, &wave[i], rec_emit, domains[i % n_domains], &c[i]),
			0);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(submit_sampled(&g, c[i], 1, WAVE_PROMPT), 0);
	n_stepped = 0;
	run_until_idle(&g, 100);
	assert_int_equal(sched_n_live(g.s), 0);
	sched_stats(g.s, &st);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(wave[i].finish[1], SHIFTADD__FINISH_REASON__FINISH_LENGTH);
		assert_int_equal(wave[i].text_len[1], n_want);
		assert_memory_equal(wave[i].text[1], want, n_want);
		assert_true(wave[i].cached[1] < WAVE_N);
		cached += wave[i].cached[1];
	}
	/* every prompt token was either computed or copied; 11 decode steps each after it */
	assert_true(st.tokens_cached == cached);
	assert_true(st.tokens_prefilled + st.tokens_cached == (uint64_t)n * WAVE_N);
	assert_true(n_stepped == st.tokens_prefilled + (uint64_t)n * (n_want - 1));
	rig_done(&g);
	return st.tokens_prefilled;
}

/*
 * Eight clients send the same prompt at once. Without sharing, all eight prefill it; with
 * it, the prompt is computed once and each other request computes only its last token (whose
 * logits it needs): the others wait a step while one computes a chunk, then copy it. The
 * seeded outputs, which hash everything a slot holds, are the same either way.
 */
static void test_wave_of_identical_prompts_prefills_once(void **state)
{
	const uint64_t dom = 1000;

	assert_true(run_wave(false, 8, &dom, 1) == 8 * WAVE_N);
	assert_true(run_wave(true, 8, &dom, 1) == WAVE_N + 7);
}

/* The same wave from two uids: each computes the prompt once, neither copies the other's. */
static void test_prefix_sharing_never_crosses_domains(void **state)
{
	const uint64_t doms[] = { 1000, 1001 };

	assert_true(run_wave(true, 8, doms, 2) == 2 * (WAVE_N + 3));
}

/*
 * A request whose prefill another one is computing waits for it at most one step in a row:
 * the first of four identical prompts computes the first chunk while the three others wait,
 * then it is cancelled and its slot (with its KV) goes to another prompt. The three have
 * nothing to copy and must compute their prompts in the very next step.
 */
static void test_cancelled_source_does_not_stall_the_waiting(void **state)
{
	char want[64];
	size_t n_want = wave_reference(want);
	struct sched_client *c;
	struct rig g;

	memset(wave, 0, sizeof(wave));
	rig_init_cache(&g, 4, 256, WAVE_CHUNK, true);
	assert_int_equal(sched_client_add(g.s, &wave[0], rec_emit, 0, &c), 0);
	for (uint64_t id = 1; id <= 4; id++)
		assert_int_equal(submit_sampled(&g, c, id, WAVE_PROMPT), 0);
	assert_int_equal(sched_step(g.s), 1); /* 1 computes 16 tokens, 2..4 wait for them */
	assert_int_equal(sched_cancel(g.s, c, 1), 0);
	assert_int_equal(submit_sampled(&g, c, 5, "zzzzzzzzzzzzzzzzzzzzzzzz"), 0);
	assert_int_equal(sched_step(g.s), 4); /* 5 took 1's slot: 2..4 compute for themselves */
	run_until_idle(&g, 100);
	assert_int_equal(sched_n_live(g.s), 0);
	assert_int_equal(wave[0].finish[1], SHIFTADD__FINISH_REASON__FINISH_CANCELLED);
	for (uint64_t id = 2; id <= 4; id++) {
		assert_int_equal(wave[0].finish[id], SHIFTADD__FINISH_REASON__FINISH_LENGTH);
		assert_int_equal(wave[0].text_len[id], n_want);
		assert_memory_equal(wave[0].text[id], want, n_want);
	}
	assert_int_equal(wave[0].finish[5], SHIFTADD__FINISH_REASON__FINISH_LENGTH);
	rig_done(&g);
}

/*
 * The client whose request computes a shared prompt disconnects after its first chunk: the
 * freed slot keeps its KV, so the two requests that waited for it copy it from there (a free
 * slot other than the ones they hold) and the prompt is still computed once, plus one last
 * token.
 */
static void test_vanished_source_client_leaves_its_prefix(void **state)
{
	struct sched_client *c[3];
	struct sched_stats st;
	char want[64];
	size_t n_want = wave_reference(want);
	struct rig g;

	memset(wave, 0, sizeof(wave));
	rig_init_cache(&g, 3, 256, WAVE_CHUNK, true);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(sched_client_add(g.s, &wave[i], rec_emit, 7, &c[i]), 0);
		assert_int_equal(submit_sampled(&g, c[i], 1, WAVE_PROMPT), 0);
	}
	assert_int_equal(sched_step(g.s), 1);
	sched_client_remove(g.s, c[0]);
	run_until_idle(&g, 100);
	assert_int_equal(sched_n_live(g.s), 0);
	for (int i = 1; i < 3; i++) {
		assert_int_equal(wave[i].finish[1], SHIFTADD__FINISH_REASON__FINISH_LENGTH);
		assert_int_equal(wave[i].text_len[1], n_want);
		assert_memory_equal(wave[i].text[1], want, n_want);
	}
	assert_int_equal(wave[1].cached[1] + wave[2].cached[1], 16 + 40);
	sched_stats(g.s, &st);
	assert_true(st.tokens_prefilled == WAVE_N + 1);
	rig_done(&g);
}

/*
 * A prompt that shares a prefix with a request still running (its slot busy, so the prompt
 * cache alone finds nothing) copies it; a client of another uid does not. Outputs as without.
 */
static void test_prefix_of_a_busy_slot_is_copied(void **state)
{
	static const char *const prompts[] = { "You are brief. Q: first question?",
					       "You are brief. Q: other one?" };
	struct rec a = { 0 }, b = { 0 }, z = { 0 }, ref = { 0 };
	struct sched_client *ca, *cb, *cz;
	struct rig g, h;

	rig_init_cache(&g, 3, 256, WAVE_CHUNK, true);
	assert_int_equal(sched_client_add(g.s, &a, rec_emit, 5, &ca), 0);
	assert_int_equal(sched_client_add(g.s, &b, rec_emit, 5, &cb), 0);
	assert_int_equal(sched_client_add(g.s, &z, rec_emit, 6, &cz), 0);
	assert_int_equal(submit_sampled(&g, ca, 1, prompts[0]), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(sched_step(g.s), 1); /* 2 chunks, then decoding */
	assert_int_equal(a.n_ids[1], 0);	      /* not streamed: still running */
	assert_int_equal(submit_sampled(&g, cb, 1, prompts[1]), 0);
	assert_int_equal(submit_sampled(&g, cz, 1, prompts[1]), 0);
	run_until_idle(&g, 100);
	assert_int_equal(a.cached[1], 0);
	assert_int_equal(b.cached[1], 18); /* "You are brief. Q: " */
	assert_int_equal(z.cached[1], 0);
	rig_init_cache(&h, 2, 256, WAVE_CHUNK, false);
	run_in_turn(&h, &ref, prompts, 2);
	assert_int_equal(a.text_len[1], ref.text_len[1]);
	assert_memory_equal(a.text[1], ref.text[1], ref.text_len[1]);
	assert_int_equal(b.text_len[1], ref.text_len[2]);
	assert_memory_equal(b.text[1], ref.text[2], ref.text_len[2]);
	assert_int_equal(z.text_len[1], ref.text_len[2]);
	assert_memory_equal(z.text[1], ref.text[2], ref.text_len[2]);
	rig_done(&g);
	rig_done(&h);
}

int test_sched_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greedy_output_streamed_and_final),
		cmocka_unit_test(test_stop_strings_and_ids),
		cmocka_unit_test(test_long_prefill_is_chunked_and_does_not_stall_decode),
		cmocka_unit_test(test_slots_round_robin_across_clients),
		cmocka_unit_test(test_cancel_frees_slot_at_once),
		cmocka_unit_test(test_full_ring_pauses_only_that_client),
		cmocka_unit_test(test_submit_validation),
		cmocka_unit_test(test_garbage_bytes_never_crash_the_decoder),
		cmocka_unit_test(test_prompt_cache_reuses_prefixes_with_identical_outputs),
		cmocka_unit_test(test_prompt_cache_is_not_shared_across_domains),
		cmocka_unit_test(test_wave_of_identical_prompts_prefills_once),
		cmocka_unit_test(test_prefix_sharing_never_crosses_domains),
		cmocka_unit_test(test_cancelled_source_does_not_stall_the_waiting),
		cmocka_unit_test(test_vanished_source_client_leaves_its_prefix),
		cmocka_unit_test(test_prefix_of_a_busy_slot_is_copied),
	};

	return cmocka_run_group_tests_name("daemon/sched", tests, NULL, NULL);
}
