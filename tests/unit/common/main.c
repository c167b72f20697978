// SPDX-License-Identifier: MIT
#include "tests/unit/common/tests.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

int main(int argc, char **argv)
{
	int failed = 0;

	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	failed += test_err_run();
	failed += test_progress_run();
	return failed ? 1 : 0;
}
