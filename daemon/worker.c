// SPDX-License-Identifier: MIT
#include "daemon/worker.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct worker {
	struct worker_pool *pool;
	pthread_t thread;
	uint32_t index;
	uint64_t busy_ns; /* guarded by pool->mu: time inside tasks */
	uint64_t tasks;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct worker_pool {
	pthread_mutex_t mu;
	pthread_cond_t wake; /* workers wait here for a new generation */
	pthread_cond_t done; /* the caller waits here for the last task */
	uint64_t generation;
	bool stop;
	/* the current run, guarded by mu */
	worker_fn fn;
	void *arg;
	uint32_t n_tasks;
	uint32_t next_task;
	uint32_t n_done;
	uint32_t n_workers;
	struct worker *workers;
};

static void *worker_main(void *opaque)
{
	struct worker *w = opaque;
	struct worker_pool *p = w->pool;
	uint64_t seen = 0;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->generation == seen)
			pthread_cond_wait(&p->wake, &p->mu);
		if (p->stop)
			break;
		seen = p->generation;
		/* Tasks are claimed under the lock: steps have a handful of tasks, each large. */
		while (p->next_task < p->n_tasks) {
			uint32_t t = p->next_task++;
			worker_fn fn = p->fn;
			void *arg = p->arg;
			uint64_t t0;

			pthread_mutex_unlock(&p->mu);
			t0 = mono_ns();
			fn(arg, t, w->index);
			t0 = mono_ns() - t0;
			pthread_mutex_lock(&p->mu);
			w->busy_ns += t0;
			w->tasks++;
			if (++p->n_done == p->n_tasks)
				pthread_cond_signal(&p->done);
		}
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int worker_pool_new(const int *cpus, uint32_t n, struct worker_pool **ret,
		    uint32_t *ret_pin_failures)
{
	struct worker_pool *p;
	uint32_t pin_failures = 0, i;
	int ret_code;

	if (n == 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->workers = calloc(n, sizeof(*p->workers));
	if (!p->workers) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->done, NULL);
	for (i = 0; i < n; i++) {
		struct worker *w = &p->workers[i];

		w->pool = p;
		w->index = i;
		ret_code = pthread_create(&w->thread, NULL, worker_main, w);
		if (ret_code) {
			p->n_workers = i;
			worker_pool_free(p);
			return -ret_code;
		}
		p->n_workers = i + 1;
		if (cpus && cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) {
			cpu_set_t set;

			CPU_ZERO(&set);
			CPU_SET(cpus[i], &set);
			if (pthread_setaffinity_np(w->thread, sizeof(set), &set))
				pin_failures++;
		}
	}
	if (ret_pin_failures)
		*ret_pin_failures = pin_failures;
	*ret = p;
	return 0;
}

void worker_pool_free(struct worker_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mu);
	for (uint32_t i = 0; i < p->n_workers; i++)
		pthread_join(p->workers[i].thread, NULL);
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->mu);
	free(p->workers);
	free(p);
}

uint32_t worker_pool_size(const struct worker_pool *p)
{
	return p ? p->n_workers : 1;
}

void worker_pool_run(struct worker_pool *p, uint32_t n_tasks, worker_fn fn, void *arg)
{
	if (n_tasks == 0)
		return;
	/*
	 * One task gains nothing from a worker: handing it over costs two context switches (wake
	 * the worker, wake us back), which is most of a small step's time. Run it here.
	 */
	if (!p || n_tasks == 1) {
		for (uint32_t i = 0; i < n_tasks; i++)
			fn(arg, i, 0);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->arg = arg;
	p->n_tasks = n_tasks;
	p->next_task = 0;
	p->n_done = 0;
	p->generation++;
	/* Wake only as many workers as there are tasks: the others would find none. */
	if (n_tasks >= p->n_workers)
		pthread_cond_broadcast(&p->wake);
	else
		for (uint32_t i = 0; i < n_tasks; i++)
			pthread_cond_signal(&p->wake);
	while (p->n_done < p->n_tasks)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

void worker_pool_busy(struct worker_pool *p, uint32_t i, uint64_t *ret_busy_ns, uint64_t *ret_tasks)
{
	*ret_busy_ns = 0;
	*ret_tasks = 0;
	if (!p || i >= p->n_workers)
		return;
	pthread_mutex_lock(&p->mu);
	*ret_busy_ns = p->workers[i].busy_ns;
	*ret_tasks = p->workers[i].tasks;
	pthread_mutex_unlock(&p->mu);
}
