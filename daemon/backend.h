/* SPDX-License-Identifier: MIT */
#ifndef DAEMON_BACKEND_H
#define DAEMON_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/*
 * The model behind shiftaddd, shaped for continuous batching. The scheduler (daemon/sched.c)
 * owns requests, sampling and stop rules; a backend owns the tokenizer, the weights and the KV
 * cache, and does one thing per step: run the forward pass for a batch of sequences, each with
 * its new tokens (a prefill chunk or one decode token), and return the last position's logits
 * where asked.
 *
 * Division of labour:
 *  - Sampling (greedy, temperature, top-k, top-p, seed) is done by the daemon (daemon/sampler.c)
 *    on the logits a backend returns, so every backend samples identically and reproducibly.
 *  - Positions: a sequence's KV slot holds the tokens stepped so far; each step appends exactly
 *    n_tokens at positions pos .. pos + n_tokens - 1, with pos equal to the count already held.
 *  - Threads: every call comes from the daemon's loop thread, one at a time. A backend may fan
 *    a step out over cfg->pool (pinned workers, see daemon/worker.h) and place its weights with
 *    numa_weights_alloc() (daemon/numa.h) according to cfg->placement.
 *  - Hot reload: the daemon opens a second instance with the new model path while the old one
 *    finishes its sequences, then closes the old one; a backend only has to allow two instances
 *    at once (sharing nothing mutable).
 *  - Errors: 0 or -errno (common/err.h); a failing step fails only the requests of that batch.
 */

struct worker_pool;
struct placement;
struct backend;

struct backend_config {
	const char *model_path;		   /* backend-specific, may be NULL (fake) */
	uint32_t n_slots;		   /* sequences alive at once (KV cache slots) */
	uint32_t n_ctx;			   /* positions per sequence */
	uint32_t max_batch_tokens;	   /* upper bound of sum(n_tokens) in one step */
	struct worker_pool *pool;	   /* pinned workers, or NULL: run on the caller */
	const struct placement *placement; /* NUMA plan for weight buffers, or NULL */
	uint32_t step_delay_us;		   /* fake backend: simulated compute per step */
	bool kv_f16;			   /* engine: f16 KV cache where the host runs it */
	bool kv_commit;			   /* engine: commit the KV cache's memory at start */
};

struct backend_info {
	char model_name[64];
	uint32_t n_vocab;
	int32_t eos_id; /* always stops a generation; -1 if none */
	int32_t bos_id; /* used as the prompt when a request's prompt is empty; -1 if none */
	uint32_t n_ctx;
	uint32_t n_slots;
	const char *kv_type; /* "f16" or "f32", NULL without a KV cache (fake) */
	uint64_t kv_bytes;   /* the KV cache's address space (committed at start, or as written) */
};

/* One sequence of a step. */
struct backend_seq {
	uint32_t slot;	       /* from slot_alloc() */
	uint32_t pos;	       /* position of tokens[0] == tokens already in the slot */
	uint32_t n_tokens;     /* >= 1 */
	const int32_t *tokens; /* [n_tokens], borrowed for the call, each < n_vocab */
	bool want_logits;      /* fill logits for the last of these tokens */
	float *logits;	       /* [n_vocab], daemon-owned; written iff want_logits */
};

struct backend_ops {
	const char *name;
	/* Create an instance. Caller closes it with close(). Fills @e on failure. */
	int (*open)(const struct backend_config *cfg, struct backend **ret, struct errbuf *e);
	void (*close)(struct backend *b);
	void (*info)(const struct backend *b, struct backend_info *ret);
	/* Tokenize @len bytes (no BOS added). *ret_ids is malloc'ed (caller frees). */
	int (*tokenize)(struct backend *b, const char *text, size_t len, int32_t **ret_ids,
			size_t *ret_n);
	/* Bytes of @id as it appears in text; returns the full length (may exceed @cap), -EINVAL. */
	int (*piece)(struct backend *b, int32_t id, char *buf, size_t cap);
	/* Reserve an empty KV slot: 0, or -EBUSY when all n_slots are taken. */
	int (*slot_alloc)(struct backend *b, uint32_t *ret_slot);
	/*
	 * Release @slot at once. A backend with slot_claim keeps its KV content until the slot
	 * is claimed or allocated again; otherwise the content is dropped.
	 */
	void (*slot_free)(struct backend *b, uint32_t slot);
	/*
	 * Optional (NULL: no prompt reuse). Reserve the free @slot keeping the KV of its first
	 * @keep positions, those of the tokens last stepped in it (the scheduler records which),
	 * so a prompt that shares them starts at position @keep. 0, -EBUSY (in use) or -EINVAL
	 * (no such slot, or @keep beyond what it holds).
	 */
	int (*slot_claim)(struct backend *b, uint32_t slot, uint32_t keep);
	/*
	 * Optional (NULL: no prefix sharing between slots). Make the in-use slot @dst hold the
	 * KV of the first @n positions of slot @src, in use or free (a free slot keeps its KV as
	 * for slot_claim), so that @dst continues at position @n as if it had stepped @src's
	 * first @n tokens itself; whatever @dst held before is dropped. @src is unchanged.
	 * 0, or -EINVAL (a slot out of range, @dst == @src, @dst not in use, or @n beyond what
	 * @src holds: nothing is changed) or another -errno (nothing is changed).
	 */
	int (*slot_copy)(struct backend *b, uint32_t dst, uint32_t src, uint32_t n);
	/*
	 * Advance @n sequences (distinct slots) by their tokens, all in one forward pass.
	 * Returns 0, -EINVAL (pos/slot/token inconsistent: nothing is applied) or another -errno.
	 */
	int (*step)(struct backend *b, struct backend_seq *seqs, uint32_t n);
};

/* The backend called @name ("fake", later "engine"), or NULL. */
const struct backend_ops *backend_find(const char *name);

/*
 * The fake backend: deterministic and tiny, for tests and demos. Byte-level tokenizer (ids
 * 0..255 are bytes, 256 = BOS, 257 = EOS). Greedy continuation of the last byte c:
 *   'a'..'y' -> c + 1,  'z' -> 'a',  '!' -> '.',  '.' -> EOS,  anything else -> 'a'.
 * Logits: 8.0 on that token, and for every other id a pseudo-random value in [0, 4) hashed from
 * the whole sequence so far and the id (so sampled outputs depend on the KV slot's content).
 */
extern const struct backend_ops backend_fake_ops;

/*
 * The engine backend: the model file given as model_path (GGUF, converted or not, or an HF
 * folder) through engine/, shift-add planes on the LUT kernels.
 */
extern const struct backend_ops backend_engine_ops;

#endif /* DAEMON_BACKEND_H */
