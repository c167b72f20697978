// SPDX-License-Identifier: MIT
/* SHA-256 against the FIPS 180-2/180-4 example vectors (NIST CSRC "SHA256.pdf"). */
#include "common/sha256.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void check(const void *msg, size_t len, const char *want)
{
	uint8_t d[SHA256_DIGEST_LEN];
	char hex[2 * SHA256_DIGEST_LEN + 1];

	sha256(msg, len, d);
	sha256_hex(d, hex);
	assert_string_equal(hex, want);
}

static void test_sha256_fips_short_vectors(void **state)
{
	check("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	check("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	check("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
	      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	check("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
	      112, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

/* One million 'a', fed in uneven pieces so every partial-block path of update() runs. */
static void test_sha256_million_a_streamed(void **state)
{
	static const size_t steps[] = { 1, 63, 64, 65, 127, 1000, 7 };
	char *buf = malloc(4096);
	struct sha256 s;
	uint8_t d[SHA256_DIGEST_LEN];
	char hex[2 * SHA256_DIGEST_LEN + 1];
	size_t done = 0, i = 0;

	assert_non_null(buf);
	memset(buf, 'a', 4096);
	sha256_init(&s);
	while (done < 1000000) {
		size_t n = steps[i++ % (sizeof(steps) / sizeof(steps[0]))];

		if (n > 1000000 - done)
			n = 1000000 - done;
		sha256_update(&s, buf, n);
		done += n;
	}
	sha256_final(&s, d);
	sha256_hex(d, hex);
	assert_string_equal(hex,
			    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(buf);
}

/* Lengths around the 55/56/64-byte padding boundaries, checked against coreutils sha256sum. */
static void test_sha256_padding_boundaries(void **state)
{
	char buf[64];

	memset(buf, 'x', sizeof(buf));
	check(buf, 55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072");
	check(buf, 56, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e");
	check(buf, 64, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c");
}

int test_sha256_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_fips_short_vectors),
		cmocka_unit_test(test_sha256_million_a_streamed),
		cmocka_unit_test(test_sha256_padding_boundaries),
	};
	return cmocka_run_group_tests_name("common/sha256", tests, NULL, NULL);
}
