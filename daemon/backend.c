// SPDX-License-Identifier: MIT
#include "daemon/backend.h"

#include <string.h>

static const struct backend_ops *const backends[] = {
	&backend_fake_ops,
	&backend_engine_ops,
};

const struct backend_ops *backend_find(const char *name)
{
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (!strcmp(backends[i]->name, name))
			return backends[i];
	return NULL;
}
