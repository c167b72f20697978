/* SPDX-License-Identifier: MIT */
#ifndef COMMON_POOL_H
#define COMMON_POOL_H

#include <stdint.h>

/*
 * A fixed set of worker threads that run "these N tasks" on request (parallel_for): the
 * kernels take this as their task runner (kernels/lut.h struct lut_runner), and tools use
 * it for row-parallel loops. The calling thread works too, so n_threads = 1 spawns nothing.
 */
struct pool;

typedef void (*pool_task_fn)(void *arg, uint32_t task);

/*
 * Start a pool of @n_threads (1..1024) including the caller. @cpus, if not NULL, holds
 * n_threads CPU ids: worker w (w >= 1) is pinned to cpus[w] (a CPU that cannot be used leaves
 * it unpinned); the caller is not re-pinned.
 * Returns 0 and *@ret_pool, -EINVAL, -ENOMEM or the pthread error. Free with pool_free().
 */
int pool_new(uint32_t n_threads, const int *cpus, struct pool **ret_pool);

/*
 * pool_new() that also counts, in *@ret_pin_failures (may be NULL), the workers it could not
 * pin (a CPU out of range or refused): those run unpinned.
 */
int pool_new_pinned(uint32_t n_threads, const int *cpus, struct pool **ret_pool,
		    uint32_t *ret_pin_failures);

/* Stop and join the workers; NULL is a no-op. No pool_run may be in progress. */
void pool_free(struct pool *p);

/* Threads in the pool, the caller included. */
uint32_t pool_n_threads(const struct pool *p);

/*
 * Run fn(arg, i) for i in [0, n_tasks) on the pool (and the calling thread); returns when
 * all have finished. @ctx is the struct pool * (void * so it fits lut_run_fn). One
 * pool_run at a time per pool: calls from several threads are serialized.
 */
void pool_run(void *ctx, uint32_t n_tasks, pool_task_fn fn, void *arg);

/*
 * Inside a task: the index of the thread running it, 0 for the pool_run caller's thread and
 * 1..n_threads-1 for the workers (their cpus[] slot). 0 outside any pool.
 */
uint32_t pool_thread_index(void);

/*
 * Time thread @i (as pool_thread_index()) has spent inside tasks of pool_run(), and how many
 * it ran, since the pool started; 0 for NULL or @i out of range.
 * Thread-safe (relaxed counters: a snapshot, not a barrier).
 */
void pool_thread_stats(const struct pool *p, uint32_t i, uint64_t *ret_busy_ns,
		       uint64_t *ret_tasks);

#endif /* COMMON_POOL_H */
