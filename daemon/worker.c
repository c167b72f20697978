// SPDX-License-Identifier: MIT
/*
 * The daemon's workers are a common/pool (the same spin-then-sleep pool the CLI tools use)
 * whose thread 0 is the event-loop thread itself: a step runs on the loop thread and n - 1
 * pinned workers, so n workers occupy n cores. The loop thread is pinned to cpus[0] the first
 * time it runs a step (the pool may be built on another thread, e.g. at start-up), and not
 * again for a later pool with the same cpus[0] (see pin_caller()).
 */
#include "daemon/worker.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/pool.h"

struct worker_pool {
	struct pool *pool;
	uint32_t n_workers;
	int cpu0;	  /* for the loop thread; -1: not pinned */
	pthread_t pinned; /* the thread pinned to cpu0, once pinned */
	bool have_pinned;
};

struct run_ctx {
	worker_fn fn;
	void *arg;
};

static void run_task(void *opaque, uint32_t task)
{
	const struct run_ctx *c = opaque;

	c->fn(c->arg, task, pool_thread_index());
}

int worker_pool_new(const int *cpus, uint32_t n, struct worker_pool **ret,
		    uint32_t *ret_pin_failures)
{
	struct worker_pool *p;
	int r;

	if (n == 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	r = pool_new_pinned(n, cpus, &p->pool, ret_pin_failures);
	if (r < 0) {
		free(p);
		return r;
	}
	p->n_workers = n;
	p->cpu0 = cpus && cpus[0] >= 0 && cpus[0] < CPU_SETSIZE ? cpus[0] : -1;
	if (ret_pin_failures && cpus && p->cpu0 < 0)
		++*ret_pin_failures;
	*ret = p;
	return 0;
}

void worker_pool_free(struct worker_pool *p)
{
	if (!p)
		return;
	pool_free(p->pool);
	free(p);
}

uint32_t worker_pool_size(const struct worker_pool *p)
{
	return p ? p->n_workers : 1;
}

/*
 * The CPU pin_caller() last pinned this thread to (-1: none). A new worker set (each workers
 * change makes a new pool) whose cpus[0] is where the loop thread already sits needs no new
 * pin.
 */
static _Thread_local int caller_cpu = -1;

/*
 * Pin the calling (loop) thread to cpus[0], once per pool and thread, and only when that moves
 * it: a later caller thread is pinned anew, and while two generations are stepped in turn (hot
 * reload) each pool's first run decides once, so the thread does not bounce between their CPUs.
 */
static void pin_caller(struct worker_pool *p)
{
	pthread_t self = pthread_self();
	cpu_set_t set;

	if (p->cpu0 < 0 || (p->have_pinned && pthread_equal(p->pinned, self)))
		return;
	p->pinned = self;
	p->have_pinned = true;
	if (caller_cpu == p->cpu0)
		return;
	CPU_ZERO(&set);
	CPU_SET(p->cpu0, &set);
	/* A refused CPU leaves the thread where it was; this pool does not try again. */
	if (pthread_setaffinity_np(self, sizeof(set), &set) == 0)
		caller_cpu = p->cpu0;
}

void worker_pool_run(struct worker_pool *p, uint32_t n_tasks, worker_fn fn, void *arg)
{
	struct run_ctx c = { .fn = fn, .arg = arg };

	if (n_tasks == 0)
		return;
	if (!p) {
		for (uint32_t i = 0; i < n_tasks; i++)
			fn(arg, i, 0);
		return;
	}
	pin_caller(p);
	pool_run(p->pool, n_tasks, run_task, &c);
}

void worker_pool_busy(struct worker_pool *p, uint32_t i, uint64_t *ret_busy_ns, uint64_t *ret_tasks)
{
	pool_thread_stats(p ? p->pool : NULL, i, ret_busy_ns, ret_tasks);
}
