// SPDX-License-Identifier: MIT
#include "common/pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

struct pool {
	uint32_t n_threads;
	pthread_t *threads; /* [n_threads - 1] */
	uint32_t n_started;
	pthread_mutex_t run_lock; /* serializes pool_run callers */
	pthread_mutex_t lock;
	pthread_cond_t wake; /* workers wait here for a new generation */
	pthread_cond_t done; /* the caller waits here for the last worker */
	atomic_ullong generation;
	atomic_bool stop;
	/* the current job */
	pool_task_fn fn;
	void *arg;
	uint32_t n_tasks;
	atomic_uint next;     /* next task index to claim */
	atomic_uint n_active; /* workers still in the current generation */
};

/*
 * Spin this many rounds before sleeping on a condition variable: decode calls the kernels
 * every few microseconds, and a futex wake-up costs about as much as a small kernel.
 */
#define POOL_SPIN 4000

static inline void cpu_relax(void)
{
	__builtin_ia32_pause();
}

/* Claim tasks until none are left. */
static void drain(struct pool *p)
{
	for (;;) {
		uint32_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);

		if (t >= p->n_tasks)
			break;
		p->fn(p->arg, t);
	}
}

static void *worker(void *arg)
{
	struct pool *p = arg;
	uint64_t seen = 0;

	for (;;) {
		for (int spin = 0; spin < POOL_SPIN; spin++) {
			if (atomic_load_explicit(&p->generation, memory_order_acquire) != seen ||
			    atomic_load(&p->stop))
				break;
			cpu_relax();
		}
		pthread_mutex_lock(&p->lock);
		while (!atomic_load(&p->stop) && atomic_load(&p->generation) == seen)
			pthread_cond_wait(&p->wake, &p->lock);
		pthread_mutex_unlock(&p->lock);
		if (atomic_load(&p->stop))
			break;
		seen = atomic_load_explicit(&p->generation, memory_order_acquire);
		drain(p);
		if (atomic_fetch_sub(&p->n_active, 1) == 1) {
			pthread_mutex_lock(&p->lock);
			pthread_cond_signal(&p->done);
			pthread_mutex_unlock(&p->lock);
		}
	}
	return NULL;
}

int pool_new(uint32_t n_threads, const int *cpus, struct pool **ret_pool)
{
	struct pool *p;
	int ret;

	if (!n_threads || n_threads > 1024 || !ret_pool)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->n_threads = n_threads;
	p->threads = calloc(n_threads, sizeof(*p->threads));
	if (!p->threads) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->run_lock, NULL);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->done, NULL);
	atomic_init(&p->next, 0);
	atomic_init(&p->generation, 0);
	atomic_init(&p->stop, false);
	atomic_init(&p->n_active, 0);
	for (uint32_t w = 1; w < n_threads; w++) {
		pthread_attr_t attr;

		pthread_attr_init(&attr);
		if (cpus) {
			cpu_set_t set;

			CPU_ZERO(&set);
			if (cpus[w] >= 0 && cpus[w] < CPU_SETSIZE)
				CPU_SET(cpus[w], &set);
			pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		}
		ret = pthread_create(&p->threads[w - 1], &attr, worker, p);
		pthread_attr_destroy(&attr);
		if (ret) {
			pool_free(p);
			return -ret;
		}
		p->n_started++;
	}
	*ret_pool = p;
	return 0;
}

void pool_free(struct pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	atomic_store(&p->stop, true);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (uint32_t w = 0; w < p->n_started; w++)
		pthread_join(p->threads[w], NULL);
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->run_lock);
	free(p->threads);
	free(p);
}

uint32_t pool_n_threads(const struct pool *p)
{
	return p ? p->n_threads : 1;
}

void pool_run(void *ctx, uint32_t n_tasks, pool_task_fn fn, void *arg)
{
	struct pool *p = ctx;

	if (!n_tasks)
		return;
	if (!p || p->n_started == 0 || n_tasks == 1) {
		for (uint32_t t = 0; t < n_tasks; t++)
			fn(arg, t);
		return;
	}
	pthread_mutex_lock(&p->run_lock);
	p->fn = fn;
	p->arg = arg;
	p->n_tasks = n_tasks;
	atomic_store_explicit(&p->next, 0, memory_order_relaxed);
	atomic_store(&p->n_active, p->n_started);
	pthread_mutex_lock(&p->lock);
	atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	drain(p);
	for (int spin = 0; spin < POOL_SPIN && atomic_load(&p->n_active); spin++)
		cpu_relax();
	pthread_mutex_lock(&p->lock);
	while (atomic_load(&p->n_active))
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_unlock(&p->run_lock);
}
