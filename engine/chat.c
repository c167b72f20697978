// SPDX-License-Identifier: MIT
#include "engine/chat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The default system message a ChatML template writes when the first turn is not "system":
 * the text between "<|im_start|>system\n" and the next "<|im_end|>". */
static char *chatml_default_system(const char *tmpl)
{
	const char *open = "<|im_start|>system\n", *b, *end;

	b = strstr(tmpl, open);
	if (!b)
		return NULL;
	b += strlen(open);
	end = strstr(b, "<|im_end|>");
	if (!end)
		return NULL;
	return strndup(b, end - b);
}

int chat_render(const char *tmpl, const char *system, const char *user, char **ret)
{
	char *def = NULL;
	int n;

	if (!tmpl)
		return -EOPNOTSUPP;
	if (strstr(tmpl, "<|im_start|>")) {
		if (!system)
			system = def = chatml_default_system(tmpl);
		if (system)
			n = asprintf(
				ret,
				"<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
				system, user);
		else
			n = asprintf(ret, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
				     user);
	} else if (strstr(tmpl, "<|start_header_id|>")) {
		if (system)
			n = asprintf(
				ret,
				"<|start_header_id|>system<|end_header_id|>\n\n%s<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
				system, user);
		else
			n = asprintf(
				ret,
				"<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
				user);
	} else if (strstr(tmpl, "<start_of_turn>")) {
		/* Gemma has no system role: the template puts it before the first user text */
		n = asprintf(ret,
			     "<start_of_turn>user\n%s%s%s<end_of_turn>\n<start_of_turn>model\n",
			     system ? system : "", system ? "\n\n" : "", user);
	} else {
		return -EOPNOTSUPP;
	}
	free(def);
	return n < 0 ? -ENOMEM : 0;
}
