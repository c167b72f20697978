// SPDX-License-Identifier: MIT
#include "tools/shiftadd/load.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/pool.h"
#include "engine/model.h"

int tool_kv_type_parse(const char *cmd, const char *value, int *ret)
{
	enum kv_type t;

	if (kv_type_parse(value, &t) < 0) {
		fprintf(stderr, "%s: --kv-type must be f16 or f32, not '%s'\n", cmd, value);
		return -EINVAL;
	}
	*ret = (int)t;
	return 0;
}

/* Pools up to this size are pinned one thread per CPU (see pin_cpus). */
#define TOOL_MAX_PIN 256

int tool_backend_parse(const char *name)
{
	if (!strcmp(name, "dense"))
		return LINEAR_BACKEND_DENSE;
	if (!strcmp(name, "shiftadd"))
		return LINEAR_BACKEND_SHIFTADD;
	return -EINVAL;
}

int tool_bos_parse(const char *value, int *ret)
{
	if (!strcmp(value, "yes"))
		*ret = 1;
	else if (!strcmp(value, "no"))
		*ret = 0;
	else if (!strcmp(value, "auto"))
		*ret = -1;
	else {
		fprintf(stderr, "invalid value for --bos: '%s' (yes, no or auto)\n", value);
		return -EINVAL;
	}
	return 0;
}

const char *tool_backend_name(int backend)
{
	return backend == LINEAR_BACKEND_SHIFTADD ? "shiftadd" : "dense";
}

/*
 * One CPU per thread from the allowed set, the calling thread pinned to the first: left
 * unpinned, Linux often keeps a spinning worker on its creator's CPU for milliseconds while
 * the other CPU idles (measured here: a 2-task pool_run ran serially, 600 us per call). False
 * (nothing pinned) with fewer allowed CPUs than threads or more threads than we track.
 */
static bool pin_cpus(unsigned n, int *cpus)
{
	cpu_set_t set;
	unsigned k = 0;

	if (n < 2 || n > TOOL_MAX_PIN || sched_getaffinity(0, sizeof(set), &set) < 0)
		return false;
	for (int c = 0; c < CPU_SETSIZE && k < n; c++)
		if (CPU_ISSET(c, &set))
			cpus[k++] = c;
	if (k < n)
		return false;
	CPU_ZERO(&set);
	CPU_SET(cpus[0], &set);
	return sched_setaffinity(0, sizeof(set), &set) == 0;
}

int tool_model_load(const char *path, int backend, unsigned threads, struct model **ret,
		    struct pool **ret_pool, struct errbuf *e)
{
	struct model_load_opts o = { .backend = (enum linear_backend)backend };
	struct pool *pool = NULL;
	int cpus[TOOL_MAX_PIN];
	int r;

	if (!threads) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		threads = c > 0 ? (unsigned)c : 1;
	}
	r = pool_new(threads, pin_cpus(threads, cpus) ? cpus : NULL, &pool);
	if (r < 0)
		return errbuf_set(e, r, "cannot start %u worker threads", threads);
	o.pool = pool;
	r = model_load_ex(path, &o, ret, e);
	if (r < 0) {
		pool_free(pool);
		return r;
	}
	*ret_pool = pool;
	return 0;
}
