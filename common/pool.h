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
 * n_threads CPU ids: worker w (w >= 1) is pinned to cpus[w]; the caller is not re-pinned.
 * Returns 0 and *@ret_pool, -EINVAL, -ENOMEM or the pthread error. Free with pool_free().
 */
int pool_new(uint32_t n_threads, const int *cpus, struct pool **ret_pool);

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

#endif /* COMMON_POOL_H */
