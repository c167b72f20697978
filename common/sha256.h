/* SPDX-License-Identifier: MIT */
#ifndef COMMON_SHA256_H
#define COMMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

/*
 * SHA-256 (FIPS 180-4), streaming. Used to fingerprint token id sequences and files in tests
 * and tools; not constant-time and not meant for secrets.
 */

#define SHA256_DIGEST_LEN 32

struct sha256 {
	uint32_t h[8];
	uint64_t n_bytes;  /* total bytes absorbed */
	uint8_t buf[64];   /* partial block */
	unsigned int fill; /* bytes in buf */
};

/* Start a new hash in @s (caller-owned storage). */
void sha256_init(struct sha256 *s);
/* Absorb @len bytes at @data (may be NULL when @len is 0). */
void sha256_update(struct sha256 *s, const void *data, size_t len);
/* Finish and write the 32-byte digest to @out; @s must be re-initialized before reuse. */
void sha256_final(struct sha256 *s, uint8_t out[SHA256_DIGEST_LEN]);
/* One-shot digest of @len bytes at @data. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_LEN]);
/* Lower-case hex of a digest into @hex (65 bytes incl. NUL). */
void sha256_hex(const uint8_t digest[SHA256_DIGEST_LEN], char hex[2 * SHA256_DIGEST_LEN + 1]);

#endif /* COMMON_SHA256_H */
