// SPDX-License-Identifier: MIT
#include "tools/shiftadd/load.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/pool.h"
#include "engine/model.h"

int tool_backend_parse(const char *name)
{
	if (!strcmp(name, "dense"))
		return LINEAR_BACKEND_DENSE;
	if (!strcmp(name, "shiftadd"))
		return LINEAR_BACKEND_SHIFTADD;
	return -EINVAL;
}

const char *tool_backend_name(int backend)
{
	return backend == LINEAR_BACKEND_SHIFTADD ? "shiftadd" : "dense";
}

int tool_model_load(const char *path, int backend, unsigned threads, struct model **ret,
		    struct pool **ret_pool, struct errbuf *e)
{
	struct model_load_opts o = { .backend = (enum linear_backend)backend };
	struct pool *pool = NULL;
	int r;

	if (!threads) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		threads = c > 0 ? (unsigned)c : 1;
	}
	r = pool_new(threads, NULL, &pool);
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
