// SPDX-License-Identifier: MIT
#include "common/err.h"
#include "common/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void test_errbuf_set_returns_code_and_formats(void **state)
{
	struct errbuf e = { { 0 } };

	assert_int_equal(errbuf_set(&e, -EBADMSG, "tensor '%s' at %d", "w", 7), -EBADMSG);
	assert_string_equal(e.msg, "tensor 'w' at 7");
	assert_string_equal(errbuf_str(&e, -EBADMSG), "tensor 'w' at 7");
}

static void test_errbuf_null_is_noop_and_falls_back_to_strerror(void **state)
{
	struct errbuf empty = { { 0 } };

	assert_int_equal(errbuf_set(NULL, -EIO, "x"), -EIO);
	assert_string_equal(errbuf_str(NULL, -ENOENT), strerror(ENOENT));
	assert_string_equal(errbuf_str(&empty, -ENOMEM), strerror(ENOMEM));
}

static void test_errbuf_truncates_long_messages(void **state)
{
	struct errbuf e;
	char big[1000];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	errbuf_set(&e, -1, "%s", big);
	assert_int_equal(strlen(e.msg), ERRBUF_LEN - 1);
}

static void test_log_level_parse(void **state)
{
	assert_int_equal(log_level_parse("err"), LOG_LVL_ERR);
	assert_int_equal(log_level_parse("debug"), LOG_LVL_DEBUG);
	assert_int_equal(log_level_parse("verbose"), -EINVAL);
}

int test_err_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errbuf_set_returns_code_and_formats),
		cmocka_unit_test(test_errbuf_null_is_noop_and_falls_back_to_strerror),
		cmocka_unit_test(test_errbuf_truncates_long_messages),
		cmocka_unit_test(test_log_level_parse),
	};
	return cmocka_run_group_tests_name("common/err", tests, NULL, NULL);
}
