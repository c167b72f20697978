/* SPDX-License-Identifier: MIT */
#ifndef CLIENT_LIB_INTERNAL_H
#define CLIENT_LIB_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "include/shiftadd.h"
#include "proto/shm_ring.h"

/*
 * Locking: mu guards the request table, the event queue and the poller role; sq_mu guards the
 * submission ring. Exactly one thread at a time holds the poller role (polling == true): it
 * reads the completion ring and runs callbacks without holding mu, so callbacks may submit.
 */

struct creq {
	struct creq *next;
	uint64_t id;
	shiftadd_event_cb cb; /* NULL: queue events */
	void *cb_arg;
};

struct qevent {
	struct qevent *next;
	struct shiftadd_event ev; /* ids/text/message malloc'ed */
};

struct shiftadd_client {
	int sock;
	int memfd;
	int sq_efd;
	int cq_efd;
	void *shm;
	struct shm_layout layout;
	struct shiftadd_info info;
	uint32_t max_msg_bytes;

	pthread_mutex_t sq_mu;
	struct shm_prod sq; /* guarded by sq_mu */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool polling;
	bool dead;	   /* daemon gone or ring corrupt: no more events from it */
	struct creq *reqs; /* in flight */
	struct qevent *q_head, *q_tail;
	uint64_t n_delivered;
	uint64_t next_id;

	struct shm_cons cq;   /* poller only */
	uint8_t *cq_buf;      /* poller only: [cq_arena_bytes] private copy */
	uint64_t spin_max_ns; /* SHIFTADD_SPIN_US: longest spin on the completion ring, 0: never */
	uint64_t spin_ns;     /* poller only: the current (adaptive) spin budget */
};

/* Default for SHIFTADD_SPIN_US: the daemon answers a small step in a few us, well within. */
#define CLIENT_SPIN_US_DEFAULT 50
#define CLIENT_SPIN_US_MAX     100000

#endif /* CLIENT_LIB_INTERNAL_H */
