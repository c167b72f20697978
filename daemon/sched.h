/* SPDX-License-Identifier: MIT */
#ifndef DAEMON_SCHED_H
#define DAEMON_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/backend.h"
#include "proto/shiftadd.pb-c.h"

/*
 * Continuous-batching scheduler. Every sched_step() advances all runnable sequences in one
 * backend step: each decoding sequence by one token and, within the step's token budget,
 * prefilling sequences by a chunk of their prompt, so a long prompt never stalls streams.
 * Fairness: free KV slots go to waiting requests round-robin across clients (not FIFO over
 * everyone), and the order in which prefill chunks share the budget rotates every step.
 * Prefix sharing (prompt_cache with a backend that has slot_copy): a prefilling sequence
 * copies the longest prefix of its prompt another slot of its domain holds, and sits a step
 * out (never two in a row without gaining from it) while another sequence of its domain
 * computes at least 8 of its next prompt tokens, to copy them next step.
 * Back-pressure: when a client's completion ring is full its sequences are left out of steps
 * until sched_client_unblock(); nothing is dropped. Cancellation frees the KV slot at once.
 * Single-threaded: every call from the daemon's loop thread.
 */

struct sched;
struct sched_client;

struct sched_limits {
	uint32_t max_inflight;	    /* per client: requests not yet fully answered */
	uint32_t max_prompt_tokens; /* per request */
	uint32_t max_new_tokens;    /* per request; max_tokens 0 or above it is clamped */
	uint64_t max_client_tokens; /* per client: sum of prompt + max_tokens over in-flight */
	uint32_t max_stop_strings;
	uint32_t max_stop_bytes;
	uint32_t max_batch_tokens; /* tokens per backend step */
	uint32_t prefill_chunk;	   /* prompt tokens per sequence per step */
	/*
	 * Reuse KV of the same domain for shared prompt prefixes: a freed slot's (backend
	 * slot_claim), and any slot's, busy or free (slot_copy, where the backend has it).
	 */
	bool prompt_cache;
};

/*
 * Deliver @m to the client @owner: 0, -EAGAIN (its completion ring is full: the scheduler
 * stops emitting to and stepping for it until sched_client_unblock()), -E2BIG (the message can
 * never fit), or another -errno (the client is broken; the caller removes it after the step).
 * Must not call back into the scheduler.
 */
typedef int (*sched_emit_fn)(void *owner, const Shiftadd__ServerMsg *m);

struct sched_stats {
	uint64_t steps;
	uint64_t tokens_prefilled;
	uint64_t tokens_cached; /* prompt tokens reused or copied from a slot, not prefilled */
	uint64_t tokens_generated;
	uint64_t requests_done;
	uint32_t n_active;  /* holding a KV slot */
	uint32_t n_waiting; /* queued for a slot */
	uint64_t kv_tokens; /* positions held by the active sequences' KV slots */
};

/* Per-client counters (shiftaddctl clients). */
struct sched_client_stats {
	uint32_t n_live;
	uint64_t tokens_generated;
	uint64_t requests_done;
};

/* @be stays owned by the caller and must outlive the scheduler. Caller frees with sched_free(). */
int sched_new(const struct backend_ops *ops, struct backend *be, const struct sched_limits *lim,
	      struct sched **ret);
void sched_free(struct sched *s);
/*
 * Register a client; @owner is borrowed until sched_client_remove(). With the prompt cache a
 * request reuses or copies only KV of requests of clients with the same @domain (the daemon
 * passes the peer's uid), and waits only for them: shared across users, the cache would tell
 * one user, through usage.cached_tokens and timings, how another user's prompts began.
 */
int sched_client_add(struct sched *s, void *owner, sched_emit_fn emit, uint64_t domain,
		     struct sched_client **ret);
/* Drop all of @c's requests without answering them, free their slots, free @c. */
void sched_client_remove(struct sched *s, struct sched_client *c);
/*
 * Queue a request (copied). Returns 0, or -EINVAL (id 0 or in use, bad id, bad parameter),
 * -E2BIG (prompt too long), -EDQUOT (in-flight or token quota), -ESHUTDOWN (draining),
 * -ENOMEM. On error nothing was queued and the caller answers with an Error message.
 */
int sched_submit(struct sched *s, struct sched_client *c, const Shiftadd__GenerateRequest *req);
/* Cancel @request_id of @c: frees its slot now, answers FINISH_CANCELLED. 0 or -ENOENT. */
int sched_cancel(struct sched *s, struct sched_client *c, uint64_t request_id);
/* @c's completion ring has room again. */
void sched_client_unblock(struct sched *s, struct sched_client *c);
bool sched_client_is_blocked(const struct sched_client *c);
/* Requests of @c not yet fully answered. */
uint32_t sched_client_n_live(const struct sched_client *c);
/* Whether @c has a request @request_id not yet fully answered. */
bool sched_client_has_request(const struct sched_client *c, uint64_t request_id);
/* Cancel every live request of @c (each answered FINISH_CANCELLED). Returns how many. */
uint32_t sched_cancel_client(struct sched *s, struct sched_client *c);
void sched_client_stats(const struct sched_client *c, struct sched_client_stats *ret);
/*
 * One scheduling round: admit, run one backend step, sample, emit. Returns the number of
 * sequences stepped (0: nothing was runnable) or -errno from the backend (the requests of that
 * batch were answered with FINISH_ERROR).
 */
int sched_step(struct sched *s);
/* Whether sched_step() would do anything now (the loop blocks in the kernel when not). */
bool sched_has_work(const struct sched *s);
/* Refuse new requests from now on (-ESHUTDOWN); live ones run to completion. */
void sched_drain(struct sched *s);
/* Finish every live request with FINISH_CANCELLED (shutdown deadline). */
void sched_cancel_all(struct sched *s);
/* Requests not yet fully answered, over all clients. */
uint32_t sched_n_live(const struct sched *s);
void sched_stats(const struct sched *s, struct sched_stats *ret);

#endif /* DAEMON_SCHED_H */
