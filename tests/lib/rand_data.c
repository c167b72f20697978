// SPDX-License-Identifier: MIT
#include "tests/lib/rand_data.h"

uint64_t test_rng_state;

uint64_t test_rng(void)
{
	uint64_t z = (test_rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

double test_urand(void)
{
	return (double)(test_rng() >> 11) / 9007199254740992.0;
}

float test_act(void)
{
	double s = test_urand() + test_urand() + test_urand() + test_urand() - 2.0;

	return (float)(test_rng() % 64 == 0 ? s * 20 : s);
}
