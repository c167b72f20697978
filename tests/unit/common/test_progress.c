// SPDX-License-Identifier: MIT
#include "common/progress.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_duration_formats(void **state)
{
	char b[32];

	progress_fmt_duration(12.34, b, sizeof(b));
	assert_string_equal(b, "12.3s");
	progress_fmt_duration(185, b, sizeof(b));
	assert_string_equal(b, "3m05s");
	progress_fmt_duration(3720, b, sizeof(b));
	assert_string_equal(b, "1h02m");
	progress_fmt_duration(-1, b, sizeof(b));
	assert_string_equal(b, "0.0s");
}

static void test_non_tty_prints_one_summary_line(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct progress p;

	assert_non_null(f);
	progress_begin(&p, f, "ppl", "tok", 100);
	progress_update(&p, 50);
	progress_update(&p, 500); /* clamps to total */
	assert_int_equal(p.done, 100);
	progress_end(&p);
	fclose(f);
	assert_non_null(strstr(buf, "ppl: 100/100 tok in "));
	assert_null(strchr(buf, '\r'));
	assert_ptr_equal(strchr(buf, '\n'), buf + len - 1);
	free(buf);
}

int test_progress_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_formats),
		cmocka_unit_test(test_non_tty_prints_one_summary_line),
	};
	return cmocka_run_group_tests_name("common/progress", tests, NULL, NULL);
}
