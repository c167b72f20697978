/* SPDX-License-Identifier: MIT */
#ifndef DAEMON_WORKER_H
#define DAEMON_WORKER_H

#include <stdint.h>

/*
 * A pool of worker threads, each pinned to one CPU, that runs a parallel-for on request:
 * a common/pool whose thread 0 is the thread calling worker_pool_run() (the event loop),
 * pinned to cpus[0] at its first run (no new pin when that thread already sits there: a new
 * pool with the same cpus[0] after a workers change). Waiting workers spin for tens of
 * microseconds, then yield, then sleep (common/pool.c): no CPU use at idle.
 */
struct worker_pool;

/* Called once per task index in [0, n_tasks) on some worker (@worker: its index). */
typedef void (*worker_fn)(void *arg, uint32_t task, uint32_t worker);

/*
 * Start @n workers; worker i is pinned to @cpus[i] when @cpus is not NULL (a failed pin is
 * reported through *ret_pin_failures, the worker still runs). Caller frees with
 * worker_pool_free(). Returns 0, -EINVAL (n == 0) or -errno from pthread_create.
 */
int worker_pool_new(const int *cpus, uint32_t n, struct worker_pool **ret,
		    uint32_t *ret_pin_failures);
/* Stop and join the workers. NULL is a no-op. */
void worker_pool_free(struct worker_pool *p);
uint32_t worker_pool_size(const struct worker_pool *p);
/*
 * Run fn(arg, i, w) for every i < n_tasks and return when all are done. @p may be NULL (runs
 * on the caller), and a single task also runs on the caller (w = 0; not counted in
 * worker_pool_busy()). Not re-entrant: one run at a time per pool (the daemon's loop thread).
 */
void worker_pool_run(struct worker_pool *p, uint32_t n_tasks, worker_fn fn, void *arg);

/*
 * Time worker @i has spent inside tasks, and how many it ran, since the pool started (0 for a
 * NULL pool or an index out of range). Thread-safe.
 */
void worker_pool_busy(struct worker_pool *p, uint32_t i, uint64_t *ret_busy_ns,
		      uint64_t *ret_tasks);

#endif /* DAEMON_WORKER_H */
