// SPDX-License-Identifier: MIT
#include "common/pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Time spent in tasks and tasks run by one thread of the pool (its own cache line). */
struct pool_thread_stats {
	_Alignas(64) atomic_ullong busy_ns;
	atomic_ullong tasks;
};

struct pool_thread {
	struct pool *pool;
	uint32_t index;
};

/* The index of the calling thread in the pool whose task it runs (0: the caller's thread). */
static _Thread_local uint32_t tls_index;

struct pool {
	uint32_t n_threads;
	struct pool_thread *args;	 /* [n_threads] */
	struct pool_thread_stats *stats; /* [n_threads] */
	pthread_t *threads;		 /* [n_threads - 1] */
	uint32_t n_started;
	pthread_mutex_t run_lock; /* serializes pool_run callers */
	pthread_mutex_t lock;	  /* only for sleeping and waking */
	pthread_cond_t wake;	  /* sleeping workers wait here for a new generation */
	pthread_cond_t done;	  /* a sleeping caller waits here for the last worker */
	/* the current job, written before generation is bumped */
	pool_task_fn fn;
	void *arg;
	uint32_t n_tasks;
	/* each hot word on its own cache line: workers spin on generation */
	_Alignas(64) atomic_ullong generation;
	atomic_bool stop;
	atomic_uint n_sleepers;		   /* workers inside the wake wait (or about to be) */
	_Alignas(64) atomic_uint next;	   /* next task index to claim */
	_Alignas(64) atomic_uint n_active; /* workers still in the current generation */
	atomic_bool caller_sleeps;
};

/*
 * Waiting is spin, then yield, then sleep. Decode calls the pool every few microseconds and
 * a futex wake-up costs as much as a small kernel, so a waiter first spins (POOL_SPIN_NS);
 * on an oversubscribed machine a spinning thread can hold the core its peer needs, so it then
 * yields between checks (up to POOL_YIELD_NS) before it sleeps. The fast path takes no lock:
 * publishing a job or finishing one only touches the mutex when the other side sleeps
 * (a Dekker-style handshake on seq_cst atomics: the sleeper announces itself, then
 * re-checks; the waker publishes, then looks for sleepers).
 */
#define POOL_SPIN_NS  20000
#define POOL_YIELD_NS 200000

static inline void cpu_relax(void)
{
	__builtin_ia32_pause();
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spin-then-yield until done(ctx) holds or the budget is spent; returns done(ctx). */
static bool wait_briefly(bool (*done)(struct pool *, uint64_t), struct pool *p, uint64_t arg)
{
	uint64_t t0 = 0;

	for (uint32_t i = 0;; i++) {
		if (done(p, arg))
			return true;
		if ((i & 63) == 63) {
			uint64_t t = now_ns();

			if (!t0)
				t0 = t;
			else if (t - t0 > POOL_SPIN_NS + POOL_YIELD_NS)
				return done(p, arg);
			if (t - t0 > POOL_SPIN_NS)
				sched_yield();
		}
		cpu_relax();
	}
}

static bool new_generation(struct pool *p, uint64_t seen)
{
	return atomic_load_explicit(&p->generation, memory_order_acquire) != seen ||
	       atomic_load_explicit(&p->stop, memory_order_relaxed);
}

static bool all_done(struct pool *p, uint64_t unused)
{
	(void)unused;
	return atomic_load_explicit(&p->n_active, memory_order_acquire) == 0;
}

/* Claim tasks until none are left; thread @self's time inside them goes to its stats. */
static void drain(struct pool *p, uint32_t self)
{
	uint64_t t0 = 0, n = 0;

	for (;;) {
		uint32_t t = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);

		if (t >= p->n_tasks)
			break;
		if (!n++)
			t0 = now_ns();
		p->fn(p->arg, t);
	}
	if (n) {
		atomic_fetch_add_explicit(&p->stats[self].busy_ns, now_ns() - t0,
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&p->stats[self].tasks, n, memory_order_relaxed);
	}
}

static void *worker(void *arg)
{
	struct pool_thread *self = arg;
	struct pool *p = self->pool;
	uint64_t seen = 0;

	tls_index = self->index;
	for (;;) {
		if (!wait_briefly(new_generation, p, seen)) {
			pthread_mutex_lock(&p->lock);
			atomic_fetch_add(&p->n_sleepers, 1);
			/* seq_cst loads after the announcement: see the comment at the top */
			while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
				pthread_cond_wait(&p->wake, &p->lock);
			atomic_fetch_sub(&p->n_sleepers, 1);
			pthread_mutex_unlock(&p->lock);
		}
		if (atomic_load(&p->stop))
			break;
		seen = atomic_load_explicit(&p->generation, memory_order_acquire);
		drain(p, self->index);
		if (atomic_fetch_sub(&p->n_active, 1) == 1 && atomic_load(&p->caller_sleeps)) {
			pthread_mutex_lock(&p->lock);
			pthread_cond_signal(&p->done);
			pthread_mutex_unlock(&p->lock);
		}
	}
	return NULL;
}

int pool_new(uint32_t n_threads, const int *cpus, struct pool **ret_pool)
{
	return pool_new_pinned(n_threads, cpus, ret_pool, NULL);
}

int pool_new_pinned(uint32_t n_threads, const int *cpus, struct pool **ret_pool,
		    uint32_t *ret_pin_failures)
{
	uint32_t failures = 0;
	struct pool *p;
	int ret;

	if (!n_threads || n_threads > 1024 || !ret_pool)
		return -EINVAL;
	p = aligned_alloc(_Alignof(struct pool), (sizeof(*p) + 63) & ~(size_t)63);
	if (!p)
		return -ENOMEM;
	memset(p, 0, sizeof(*p));
	p->n_threads = n_threads;
	p->threads = calloc(n_threads, sizeof(*p->threads));
	p->args = calloc(n_threads, sizeof(*p->args));
	p->stats = aligned_alloc(_Alignof(struct pool_thread_stats), n_threads * sizeof(*p->stats));
	if (!p->threads || !p->args || !p->stats) {
		free(p->threads);
		free(p->args);
		free(p->stats);
		free(p);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n_threads; i++) {
		atomic_init(&p->stats[i].busy_ns, 0);
		atomic_init(&p->stats[i].tasks, 0);
		p->args[i] = (struct pool_thread){ .pool = p, .index = i };
	}
	pthread_mutex_init(&p->run_lock, NULL);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->done, NULL);
	atomic_init(&p->next, 0);
	atomic_init(&p->generation, 0);
	atomic_init(&p->stop, false);
	atomic_init(&p->n_active, 0);
	atomic_init(&p->n_sleepers, 0);
	atomic_init(&p->caller_sleeps, false);
	for (uint32_t w = 1; w < n_threads; w++) {
		ret = pthread_create(&p->threads[w - 1], NULL, worker, &p->args[w]);
		if (ret) {
			pool_free(p);
			return -ret;
		}
		p->n_started++;
		if (cpus) {
			cpu_set_t set;

			CPU_ZERO(&set);
			if (cpus[w] < 0 || cpus[w] >= CPU_SETSIZE) {
				failures++;
				continue;
			}
			CPU_SET(cpus[w], &set);
			if (pthread_setaffinity_np(p->threads[w - 1], sizeof(set), &set))
				failures++;
		}
	}
	if (ret_pin_failures)
		*ret_pin_failures = failures;
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
	free(p->args);
	free(p->stats);
	free(p);
}

uint32_t pool_thread_index(void)
{
	return tls_index;
}

void pool_thread_stats(const struct pool *p, uint32_t i, uint64_t *ret_busy_ns, uint64_t *ret_tasks)
{
	*ret_busy_ns = 0;
	*ret_tasks = 0;
	if (!p || i >= p->n_threads)
		return;
	*ret_busy_ns = atomic_load_explicit(&p->stats[i].busy_ns, memory_order_relaxed);
	*ret_tasks = atomic_load_explicit(&p->stats[i].tasks, memory_order_relaxed);
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
		uint64_t t0 = p ? now_ns() : 0;

		for (uint32_t t = 0; t < n_tasks; t++)
			fn(arg, t);
		if (p) { /* the caller's thread is thread 0 of the pool's stats */
			atomic_fetch_add_explicit(&p->stats[0].busy_ns, now_ns() - t0,
						  memory_order_relaxed);
			atomic_fetch_add_explicit(&p->stats[0].tasks, n_tasks,
						  memory_order_relaxed);
		}
		return;
	}
	pthread_mutex_lock(&p->run_lock);
	p->fn = fn;
	p->arg = arg;
	p->n_tasks = n_tasks;
	atomic_store_explicit(&p->next, 0, memory_order_relaxed);
	atomic_store(&p->n_active, p->n_started);
	atomic_fetch_add(&p->generation, 1);
	if (atomic_load(&p->n_sleepers)) {
		pthread_mutex_lock(&p->lock);
		pthread_cond_broadcast(&p->wake);
		pthread_mutex_unlock(&p->lock);
	}
	drain(p, 0);
	if (!wait_briefly(all_done, p, 0)) {
		pthread_mutex_lock(&p->lock);
		atomic_store(&p->caller_sleeps, true);
		while (atomic_load(&p->n_active))
			pthread_cond_wait(&p->done, &p->lock);
		atomic_store(&p->caller_sleeps, false);
		pthread_mutex_unlock(&p->lock);
	}
	pthread_mutex_unlock(&p->run_lock);
}
