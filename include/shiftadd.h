/* SPDX-License-Identifier: MIT */
#ifndef SHIFTADD_H
#define SHIFTADD_H

/*
 * libshiftadd: the client library of shiftaddd, the shiftadd inference daemon.
 *
 * A client connects over the daemon's control socket, receives a shared-memory region with a
 * submission ring and a completion ring, and then submits generation requests and reads their
 * token events without further system calls beyond doorbells. Requests run concurrently; the
 * events of one request arrive in order.
 *
 * Threads: every call except shiftadd_close() may be made from any thread at any time.
 * Events are delivered either to the callback given at submission (called from whichever
 * thread is inside shiftadd_poll(), shiftadd_wait() or shiftadd_next_event(); never two at
 * once for one client) or, for requests submitted without a callback, queued for
 * shiftadd_next_event(). Processes: any number of processes may connect at once; a client
 * handle must not be used across fork() (the child connects anew).
 *
 * Errors: calls return 0 (or a count) on success and a negative errno on failure; see each call
 * and shiftadd_strerror(). Link with `pkg-config --libs shiftadd`.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHIFTADD_API __attribute__((visibility("default")))

/* Opaque connection handle. */
typedef struct shiftadd_client shiftadd_client;

struct shiftadd_sampling {
	float temperature; /* <= 0: greedy */
	uint32_t top_k;	   /* 0: off */
	float top_p;	   /* 0 or 1: off */
	uint64_t seed;	   /* same seed and prompt give the same tokens */
};

struct shiftadd_request {
	const char *prompt;	    /* NUL-terminated UTF-8, or NULL to use prompt_ids */
	const uint32_t *prompt_ids; /* [n_prompt_ids], used when prompt is NULL */
	size_t n_prompt_ids;
	uint32_t max_tokens; /* 0: the daemon's limit */
	struct shiftadd_sampling sampling;
	const char *const *stop_strings; /* [n_stop_strings]: stop before any of these */
	size_t n_stop_strings;
	const uint32_t *stop_ids; /* [n_stop_ids]: stop at these ids */
	size_t n_stop_ids;
	bool stream; /* true: SHIFTADD_EVENT_TOKENS as tokens are made; false: all at the end */
};

enum shiftadd_event_type {
	SHIFTADD_EVENT_TOKENS = 1, /* new tokens of a streamed request */
	SHIFTADD_EVENT_DONE = 2,   /* the last event of a request */
};

/* Same values as the protocol's FinishReason. */
enum shiftadd_finish {
	SHIFTADD_FINISH_NONE = 0,
	SHIFTADD_FINISH_EOS = 1,
	SHIFTADD_FINISH_LENGTH = 2,
	SHIFTADD_FINISH_STOP_STRING = 3,
	SHIFTADD_FINISH_STOP_ID = 4,
	SHIFTADD_FINISH_CANCELLED = 5,
	SHIFTADD_FINISH_CONTEXT = 6,
	SHIFTADD_FINISH_ERROR = 7,
};

struct shiftadd_event {
	enum shiftadd_event_type type;
	uint64_t request_id;
	uint32_t index;	     /* position of ids[0] among the generated tokens */
	const uint32_t *ids; /* [n_ids] new ids (DONE: those not delivered before) */
	size_t n_ids;
	const char *text; /* [text_len] their text, not NUL-terminated; may split UTF-8 */
	size_t text_len;
	uint64_t t_ns; /* TOKENS: daemon time since the request arrived */
	/* DONE only: */
	enum shiftadd_finish finish_reason;
	int error;	     /* 0, or -errno: -EDQUOT, -E2BIG, -EINVAL, -ECONNRESET, ... */
	const char *message; /* NUL-terminated detail for errors ("" otherwise) */
	uint32_t prompt_tokens;
	uint32_t completion_tokens;
	uint64_t ttft_ns;  /* arrival to first token */
	uint64_t total_ns; /* arrival to the end */
	uint32_t
		cached_tokens; /* of prompt_tokens, those whose KV the daemon reused (not recomputed) */
};

/*
 * Event callback. @ev and everything it points to are borrowed until the callback returns.
 * It may call shiftadd_submit() and shiftadd_cancel(), not the waiting calls.
 */
typedef void (*shiftadd_event_cb)(const struct shiftadd_event *ev, void *arg);

/*
 * Connect to the daemon at @socket_path (NULL: $SHIFTADD_SOCKET, else
 * $XDG_RUNTIME_DIR/shiftadd/shiftaddd.sock, else /run/shiftadd/shiftaddd.sock). @client_name
 * (may be NULL) appears in the daemon's logs. On success *ret is a handle the caller closes
 * with shiftadd_close(). Returns 0, -ENOENT/-ECONNREFUSED (no daemon), -EPERM (credentials
 * refused), -EOPNOTSUPP (protocol version), -ESHUTDOWN, -EAGAIN (daemon full), -EPROTO, -ENOMEM.
 * $SHIFTADD_SPIN_US (read here; default 50, 0: never) bounds how long a waiting call spins on
 * the completion ring before it sleeps (adaptive: shorter after long waits).
 */
SHIFTADD_API int shiftadd_connect(const char *socket_path, const char *client_name,
				  shiftadd_client **ret);

/*
 * Disconnect and free @c; requests still running are cancelled by the daemon. Not
 * thread-safe: no other call on @c may be running or follow. NULL is a no-op.
 */
SHIFTADD_API void shiftadd_close(shiftadd_client *c);

/*
 * Queue a generation. @req is copied before return (the caller keeps it). Events go to @cb
 * (with @cb_arg, borrowed until the DONE event) or, when @cb is NULL, to shiftadd_next_event().
 * Sets *ret_id (may be NULL) to the request id. Returns 0, -EINVAL (bad arguments), -E2BIG
 * (larger than the daemon's message limit), -EAGAIN (submission ring full: poll, then retry),
 * -ENOTCONN (daemon gone), -ENOMEM. Quota refusals arrive as a DONE event with its error.
 */
SHIFTADD_API int shiftadd_submit(shiftadd_client *c, const struct shiftadd_request *req,
				 shiftadd_event_cb cb, void *cb_arg, uint64_t *ret_id);

/*
 * Ask the daemon to stop request @id; its DONE event (finish SHIFTADD_FINISH_CANCELLED, or
 * another reason if it ended first) still arrives. Returns 0, -ENOENT (not in flight),
 * -EAGAIN (ring full), -ENOTCONN.
 */
SHIFTADD_API int shiftadd_cancel(shiftadd_client *c, uint64_t id);

/*
 * Deliver pending events (callbacks, or the queue of shiftadd_next_event()), waiting up to
 * @timeout_ms (-1: forever, 0: not at all) for at least one. Returns the number delivered,
 * 0 on timeout, or -ENOTCONN once the daemon is gone and nothing is left to deliver.
 */
SHIFTADD_API int shiftadd_poll(shiftadd_client *c, int timeout_ms);

/*
 * Take the next queued event of a request submitted without callback, waiting up to
 * @timeout_ms. On 1, *ev is filled and owned by the caller until shiftadd_event_release(ev).
 * Returns 1, 0 (timeout), -ENOTCONN (daemon gone, queue empty).
 */
SHIFTADD_API int shiftadd_next_event(shiftadd_client *c, struct shiftadd_event *ev, int timeout_ms);

/* Free what shiftadd_next_event() put in @ev. */
SHIFTADD_API void shiftadd_event_release(struct shiftadd_event *ev);

/*
 * Deliver events until request @id is no longer in flight (its DONE event was delivered, or it
 * never existed), waiting up to @timeout_ms. Returns 0, -ETIMEDOUT or -ENOTCONN.
 */
SHIFTADD_API int shiftadd_wait(shiftadd_client *c, uint64_t id, int timeout_ms);

/*
 * A file descriptor that becomes readable when events may be pending, for poll/epoll loops;
 * then call shiftadd_poll(c, 0). Owned by @c (do not close or read it).
 */
SHIFTADD_API int shiftadd_fd(shiftadd_client *c);

struct shiftadd_info {
	char model_name[64];
	char backend[32];
	uint32_t n_vocab;
	int32_t eos_id;
	uint32_t n_ctx;
	uint32_t max_inflight;
	uint32_t max_prompt_tokens;
	uint32_t max_new_tokens;
	uint64_t client_id;
};

/* Copy the model and limits announced by the daemon at connection into *ret. Returns 0. */
SHIFTADD_API int shiftadd_info(shiftadd_client *c, struct shiftadd_info *ret);

/* A static message for an error code returned by the calls above (like strerror(-err)). */
SHIFTADD_API const char *shiftadd_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* SHIFTADD_H */
