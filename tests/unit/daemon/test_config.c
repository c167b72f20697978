// SPDX-License-Identifier: MIT
#include "daemon/config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static int parse(struct config *c, const char *text, struct errbuf *e)
{
	config_defaults(c);
	return config_parse_ini(c, text, strlen(text), e);
}

static void test_config_defaults_are_valid(void **state)
{
	struct config c;

	config_defaults(&c);
	assert_int_equal(config_validate(&c, NULL), 0);
	assert_int_equal(c.n_slots, 16);
	assert_string_equal(c.backend, "fake");
	assert_string_equal(c.workers, "auto");
}

static void test_config_ini_sections_and_values(void **state)
{
	struct config c;
	struct errbuf e = { { 0 } };
	const char *text = "# comment\n"
			   "[server]\n"
			   "socket_path = \"/tmp/x y.sock\"\n"
			   "allow_uids = 1000, 1001\n"
			   "; another comment\n"
			   "[model]\n"
			   "n_slots=4\r\n"
			   "[limits]\n"
			   "  max_client_tokens = 12345678901  \n";

	assert_int_equal(parse(&c, text, &e), 0);
	assert_string_equal(c.socket_path, "/tmp/x y.sock");
	assert_int_equal(c.n_allow_uids, 2);
	assert_int_equal(c.allow_uids[1], 1001);
	assert_int_equal(c.n_slots, 4);
	assert_true(c.max_client_tokens == 12345678901ull);
}

static void test_config_ini_errors_name_the_line(void **state)
{
	struct config c;
	struct errbuf e = { { 0 } };

	assert_int_equal(parse(&c, "[model]\nn_slots = 0\n", &e), -EINVAL);
	assert_non_null(strstr(e.msg, "line 2"));
	assert_int_equal(parse(&c, "[model]\nbogus = 1\n", &e), -EBADMSG);
	assert_int_equal(parse(&c, "[server]\nn_slots = 4\n", &e), -EBADMSG); /* wrong section */
	assert_non_null(strstr(e.msg, "[model]"));
	assert_int_equal(parse(&c, "[nope]\n", &e), -EBADMSG);
	assert_int_equal(parse(&c, "[model\n", &e), -EBADMSG);
	assert_int_equal(parse(&c, "[model]\nn_slots 4\n", &e), -EBADMSG);
	assert_int_equal(parse(&c, "[model]\nn_slots = 4x\n", &e), -EINVAL);
	assert_int_equal(parse(&c, "[model]\nn_slots = -4\n", &e), -EINVAL);
	assert_int_equal(parse(&c, "[model]\nn_slots = 99999999999999999999999\n", &e), -EINVAL);
	assert_int_equal(parse(&c, "[server]\nsocket_path = \"abc\n", &e), -EBADMSG);
	assert_int_equal(config_parse_ini(&c, "a\0b", 3, &e), -EBADMSG);
}

static void test_config_flags_override_file(void **state)
{
	char *argv[] = { "shiftaddd", "--config", "/nonexistent/shiftaddd.conf" };
	char *argv2[] = { "shiftaddd", "--n-slots", "8", "--workers=0-1", "--log-level", "debug" };
	char *argv3[] = { "shiftaddd", "--bogus", "1" };
	struct config c;
	struct errbuf e = { { 0 } };
	bool help;

	config_defaults(&c);
	assert_int_equal(config_from_args(&c, 3, argv, &help, &e), -ENOENT);
	config_defaults(&c);
	assert_int_equal(config_from_args(&c, 6, argv2, &help, &e), 0);
	assert_false(help);
	assert_int_equal(c.n_slots, 8);
	assert_string_equal(c.workers, "0-1");
	assert_string_equal(c.log_level, "debug");
	config_defaults(&c);
	assert_int_equal(config_from_args(&c, 3, argv3, &help, &e), -EINVAL);
}

static void test_config_validate_cross_fields(void **state)
{
	struct config c;

	config_defaults(&c);
	c.max_prompt_tokens = c.n_ctx;
	assert_int_equal(config_validate(&c, NULL), -EINVAL);
	config_defaults(&c);
	c.cq_slots = 100;
	assert_int_equal(config_validate(&c, NULL), -EINVAL);
	config_defaults(&c);
	strcpy(c.numa_policy, "sideways");
	assert_int_equal(config_validate(&c, NULL), -EINVAL);
	config_defaults(&c);
	assert_string_equal(c.kv_type, "f16");
	assert_int_equal(config_validate(&c, NULL), 0);
	strcpy(c.kv_type, "f32");
	assert_int_equal(config_validate(&c, NULL), 0);
	strcpy(c.kv_type, "q8");
	assert_int_equal(config_validate(&c, NULL), -EINVAL);
}

static void test_cpu_list(void **state)
{
	int cpus[8];

	assert_int_equal(config_parse_cpu_list("0-3,6", cpus, 8), 5);
	assert_int_equal(cpus[3], 3);
	assert_int_equal(cpus[4], 6);
	assert_int_equal(config_parse_cpu_list("3-1", cpus, 8), -EINVAL);
	assert_int_equal(config_parse_cpu_list("0-9", cpus, 8), -EINVAL); /* over capacity */
	assert_int_equal(config_parse_cpu_list("1,,2", cpus, 8), -EINVAL);
	assert_int_equal(config_parse_cpu_list("", cpus, 8), -EINVAL);
}

int test_config_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_defaults_are_valid),
		cmocka_unit_test(test_config_ini_sections_and_values),
		cmocka_unit_test(test_config_ini_errors_name_the_line),
		cmocka_unit_test(test_config_flags_override_file),
		cmocka_unit_test(test_config_validate_cross_fields),
		cmocka_unit_test(test_cpu_list),
	};

	return cmocka_run_group_tests_name("daemon/config", tests, NULL, NULL);
}
