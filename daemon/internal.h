/* SPDX-License-Identifier: MIT */
#ifndef DAEMON_INTERNAL_H
#define DAEMON_INTERNAL_H

/*
 * Shared between the daemon's own files (and its tests): the daemon object, the per-client
 * connection and the control-socket helpers. Everything here runs on the loop thread.
 */

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include "daemon/backend.h"
#include "daemon/config.h"
#include "daemon/numa.h"
#include "daemon/sched.h"
#include "daemon/worker.h"
#include "proto/shiftadd.pb-c.h"
#include "proto/shm_ring.h"

#define PROTOCOL_VERSION   1
#define DAEMON_VERSION	   "0.1.0"
#define CTL_MSG_MAX	   4096
#define CLIENT_BAD_MSG_MAX 16 /* undecodable messages before a client is dropped */
#define SQ_BATCH_MAX	   64 /* submissions taken from one client per loop round */

/* What a submitted io_uring operation is for; user_data points at one of these. */
enum uop_kind {
	UOP_ACCEPT,
	UOP_SIGNAL,
	UOP_SOCK_RECV, /* client control socket: Hello, then EOF detection */
	UOP_SQ_BELL,   /* client submission doorbell read */
	UOP_CQ_BELL,   /* client completion doorbell write */
	UOP_CANCEL,    /* a cancellation request: result ignored */
};

struct client;

struct uop {
	enum uop_kind kind;
	struct client *c; /* NULL for daemon-wide ops */
	bool armed;
};

enum client_state {
	CLIENT_HELLO, /* waiting for Hello */
	CLIENT_READY,
	CLIENT_ADMIN,	/* an admin connection (AdminRequest datagrams, no rings) */
	CLIENT_CLOSING, /* fds closed, waiting for its io_uring ops to come back */
};

struct daemon;

/*
 * A model generation on its way out (hot reload, workers change): its requests run to the end
 * on its own backend and scheduler while new requests go to the current one; then it is freed.
 */
struct gen {
	const struct backend_ops *bops;
	struct backend *be;
	struct sched *sched;
	struct worker_pool *pool; /* freed with the generation iff pool_owned */
	bool pool_owned;
	struct placement *pl; /* freed with the generation iff pl_owned */
	bool pl_owned;
};

struct client {
	LIST_ENTRY(client) link;
	struct daemon *d;
	uint64_t id;
	enum client_state state;
	int sock;
	int memfd;
	int sq_efd; /* client writes, we read (through io_uring) */
	int cq_efd; /* we write (through io_uring, never blocking), client reads */
	struct ucred cred;
	char name[65];

	void *shm; /* [layout.total_bytes] shared, hostile */
	struct shm_layout layout;
	struct shm_prod cq;
	struct shm_cons sq;
	uint8_t *msg_buf; /* [max_msg_bytes] private copy of one submission */
	struct sched_client *sc;
	struct sched_client *sc_old; /* on the retiring generation's scheduler (hot reload) */
	uint64_t t_connect_ns;
	uint64_t tokens_base, requests_base; /* counters of retired generations */

	struct uop op_recv, op_sq_bell, op_cq_bell, op_cancel[3];
	uint32_t n_ops; /* our io_uring operations in flight */
	uint8_t rx[CTL_MSG_MAX];
	struct iovec rx_iov;
	struct msghdr rx_msg;
	uint64_t bell_buf;

	bool sq_pending; /* doorbell rang (or batch cap hit): look at the submission ring */
	bool cq_dirty;	 /* completions published since the last completion doorbell */
	bool kill;	 /* disconnect after this loop round */
	bool refused;	 /* credentials not allowed: answer Hello with a refusal */
	uint32_t n_bad;	 /* undecodable messages so far */
	uint64_t blocked_since_ns;
	uint64_t n_warn; /* rate limit: warnings logged for this client */
};

LIST_HEAD(client_list, client);

struct daemon {
	struct config cfg;
	struct io_uring ring;
	int listen_fd;
	int signal_fd;
	bool listen_owned; /* we created the socket file (unlink it on exit) */
	char socket_path[CONFIG_PATH_MAX];
	struct uop op_accept, op_signal;
	struct signalfd_siginfo sig_buf;

	const struct backend_ops *bops;
	struct backend *be;
	struct backend_info binfo;
	struct worker_pool *pool;
	struct placement placement;
	struct sched *sched;

	struct client_list clients;
	uint32_t n_clients;
	uint64_t next_client_id;
	bool draining;
	bool drain_cancelled;
	bool stop;
	uint64_t drain_deadline_ns;
	uint64_t n_accepted, n_refused;

	/* admin.c, reload.c */
	uint64_t t_start_ns;
	uint64_t generation;  /* 1 at start, +1 per reload or workers change */
	struct gen *old;      /* retiring generation, or NULL */
	struct placement *pl; /* current placement: &placement or a heap copy (pl_owned) */
	bool pl_owned;
	bool admin_draining;   /* shiftaddctl drain: new requests refused, daemon stays up */
	uint64_t step_busy_ns; /* loop thread time inside scheduler steps */
	/* uring_loop.c: adaptive spin on the submission rings (cfg.spin_us at most) */
	uint64_t spin_ns;    /* current budget: halved after long idle gaps, 0: block at once */
	uint64_t n_sq_taken; /* submissions consumed so far (tells a busy round from an idle one) */
	uint64_t n_req_refused;	    /* requests answered with an Error */
	struct sched_stats st_base; /* counters of retired generations' schedulers */
};

/* ctl_sock.c */
/* Bind and listen on @path (parent created 0755, stale socket replaced, mode 0666). */
int ctl_sock_listen(const char *path, int *ret_fd);
/* The socket-activation fd (sd_listen_fds protocol: LISTEN_PID, LISTEN_FDS), or -ENOENT. */
int ctl_sock_from_env(int *ret_fd);
/* Whether @cred may connect under @cfg (root and our euid always may). */
bool ctl_sock_peer_allowed(const struct config *cfg, const struct ucred *cred);
/* Send one ControlMsg with optional fds (SCM_RIGHTS), without blocking. 0 or -errno. */
int ctl_sock_send(int fd, const Shiftadd__ControlMsg *m, const int *fds, int n_fds);
/* Send an Error ControlMsg (refusal). Best effort. */
void ctl_sock_send_error(int fd, int status, const char *message);

/* shm_client.c */
/* Allocate a client for accepted socket @sock (takes ownership of @sock on success). */
int shm_client_new(struct daemon *d, int sock, const struct ucred *cred, struct client **ret);
/* Handle the Hello datagram in c->rx (@len bytes): build shm, send Welcome. 0 or -errno. */
int shm_client_hello(struct client *c, size_t len);
/* Consume up to SQ_BATCH_MAX submissions. Sets c->kill on hostile ring contents. */
void shm_client_process_sq(struct client *c);
/* The scheduler's emit callback. */
int shm_client_emit(void *owner, const Shiftadd__ServerMsg *m);
/* Drop from the scheduler and cancel our io_uring ops; fds are closed and memory unmapped by
 * shm_client_free(), once n_ops is 0. */
void shm_client_close(struct client *c);
void shm_client_free(struct client *c);

/* uring_loop.c */
int uring_loop_init(struct daemon *d);
/* Run until shutdown. Returns 0 after a clean drain. */
int uring_loop_run(struct daemon *d);
void uring_loop_done(struct daemon *d);
/* Queue ops (they are submitted at the next loop round). */
void uring_arm_recv(struct daemon *d, struct client *c);
void uring_arm_sq_bell(struct daemon *d, struct client *c);
void uring_arm_cq_bell(struct daemon *d, struct client *c);
void uring_cancel_client(struct daemon *d, struct client *c);
uint64_t uring_now_ns(void);
/*
 * The loop's wait after a busy round: announce spinning on every ring, poll the rings and the
 * completion queue for up to d->spin_ns, withdraw, look at every ring once more. Returns whether
 * there is work (rings with data are marked sq_pending). Loop thread; exposed for its tests.
 */
bool uring_spin_poll(struct daemon *d);
/* Stop accepting, refuse new requests, exit once in-flight requests are answered (SIGTERM). */
void uring_start_drain(struct daemon *d, const char *why);

/* admin.c */
/*
 * If the datagram in c->rx (@len bytes) is an AdminRequest, answer it (AdminReply on the socket)
 * and make @c an admin connection: returns 1. Returns 0 when it is another message (for
 * shm_client_hello), or -EPROTO for an undecodable one / a non-admin message on an admin
 * connection (the caller drops the client).
 */
int admin_dispatch(struct client *c, size_t len);
/* Whether @cred may run admin operations (root, our euid, admin_uids, admin_gids). */
bool admin_peer_allowed(const struct config *cfg, const struct ucred *cred);

/* reload.c: model generations (hot reload) */
/* The scheduler limits from @cfg. */
void reload_sched_limits(const struct config *cfg, struct sched_limits *ret);
/* The backend's settings from @cfg, for @model ("" = none), @pool and @pl. */
void reload_backend_config(const struct config *cfg, const char *model, struct worker_pool *pool,
			   const struct placement *pl, struct backend_config *ret);
/*
 * Plan workers for @spec ("auto" or a CPU list) capped at @max_workers (0: none) and start
 * them. On success fills @ret_pl (placement_done() it) and *ret_pool. Logs failures.
 */
int reload_plan_workers(const struct config *cfg, const char *spec, uint32_t max_workers,
			struct placement *ret_pl, struct worker_pool **ret_pool);
/*
 * Open @model (NULL: the current path) on new workers (@workers NULL: the current ones) as the
 * new current generation; the old one keeps running its requests. Returns 0, -EBUSY (a previous
 * generation is still retiring), -ESHUTDOWN (draining) or the backend's error (message in @e);
 * on error nothing changed.
 */
int reload_swap(struct daemon *d, const char *model, const char *workers, uint32_t max_workers,
		struct errbuf *e);
/* Step the retiring generation; free it once its last request is answered. */
int reload_step(struct daemon *d);
bool reload_has_work(const struct daemon *d);
/* Requests not yet answered over both generations. */
uint32_t reload_n_live(const struct daemon *d);
/* Requests still on the retiring generation. */
uint32_t reload_old_live(const struct daemon *d);
void reload_cancel_all(struct daemon *d);
void reload_drain(struct daemon *d);
/* Daemon-wide scheduler counters over every generation. */
void reload_stats(const struct daemon *d, struct sched_stats *ret);
/* The current generation's placement. */
const struct placement *reload_placement(const struct daemon *d);
/* Free the retiring generation and the heap placement at exit. */
void reload_done(struct daemon *d);

#endif /* DAEMON_INTERNAL_H */
