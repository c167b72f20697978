// SPDX-License-Identifier: MIT
/*
 * Chat prompts against the formats the model families document: ChatML (SmolLM2, Qwen2),
 * Llama 3 headers and Gemma turns; an unknown or absent template is refused.
 */
#include "engine/chat.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void expect(const char *tmpl, const char *system, const char *user, const char *want)
{
	char *got = NULL;

	assert_int_equal(chat_render(tmpl, system, user, &got), 0);
	assert_string_equal(got, want);
	free(got);
}

static void test_chatml_with_and_without_default_system(void **state)
{
	const char *plain = "{% for m in messages %}<|im_start|>{{ m.role }}...{% endfor %}";
	const char *with_default =
		"{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful "
		"AI assistant named SmolLM<|im_end|>\n' }}{% endif %}<|im_start|>...";

	expect(plain, NULL, "Hi", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
	expect(plain, "Be brief.", "Hi",
	       "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
	       "<|im_start|>assistant\n");
	expect(with_default, NULL, "Hi",
	       "<|im_start|>system\nYou are a helpful AI assistant named SmolLM<|im_end|>\n"
	       "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

static void test_llama3(void **state)
{
	const char *t = "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>' }}";

	expect(t, NULL, "Hi",
	       "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
	       "<|start_header_id|>assistant<|end_header_id|>\n\n");
	expect(t, "S", "Hi",
	       "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
	       "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
	       "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Gemma has no system turn: its template prefixes the system text to the first user turn. */
static void test_gemma(void **state)
{
	const char *t = "{{ bos_token }}{{ '<start_of_turn>' + role + '\n' }}";

	expect(t, NULL, "Hi", "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
	expect(t, "Be brief.", "Hi",
	       "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
}

static void test_unknown_or_missing_template(void **state)
{
	char *got = NULL;

	assert_int_equal(chat_render(NULL, NULL, "Hi", &got), -EOPNOTSUPP);
	assert_int_equal(chat_render("[INST] {{ m }} [/INST]", NULL, "Hi", &got), -EOPNOTSUPP);
	assert_null(got);
}

int test_chat_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chatml_with_and_without_default_system),
		cmocka_unit_test(test_llama3),
		cmocka_unit_test(test_gemma),
		cmocka_unit_test(test_unknown_or_missing_template),
	};
	return cmocka_run_group_tests_name("engine/chat", tests, NULL, NULL);
}
