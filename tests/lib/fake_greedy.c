// SPDX-License-Identifier: MIT
#include "tests/lib/fake_greedy.h"

#include <string.h>

void fake_greedy(const char *prompt, uint32_t n, char *out)
{
	int c = (unsigned char)prompt[strlen(prompt) - 1];
	uint32_t k = 0;

	while (k < n) {
		if (c >= 'a' && c < 'z')
			c++;
		else if (c == 'z')
			c = 'a';
		else if (c == '!')
			c = '.';
		else if (c == '.')
			break; /* EOS */
		else
			c = 'a';
		out[k++] = (char)c;
	}
	out[k] = 0;
}
