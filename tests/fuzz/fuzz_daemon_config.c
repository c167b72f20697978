// SPDX-License-Identifier: MIT
/*
 * shiftaddd's INI config (/etc/shiftadd/shiftaddd.conf, also what SIGHUP reloads) over
 * arbitrary bytes: parse onto the defaults, then the cross-field checks; and the same bytes,
 * up to the first NUL, as a CPU list (the workers option's syntax).
 */
#include <string.h>

#include "daemon/config.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config c;
	char *s = malloc(size + 1);
	int cpus[64];

	config_defaults(&c);
	if (!config_parse_ini(&c, (const char *)data, size, NULL))
		(void)config_validate(&c, NULL);
	if (s) {
		memcpy(s, data, size);
		s[size] = 0;
		(void)config_parse_cpu_list(s, cpus, 64);
		free(s);
	}
	return 0;
}
