// SPDX-License-Identifier: MIT
/*
 * kv_cache_copy_prefix (the daemon's prefix sharing between KV slots): a sequence that takes
 * another's first positions and goes on gives the same logits, bit for bit, as one that
 * computed those positions itself. On the tiny Gemma 3 fixture (sliding and full layers),
 * through both attention paths: packed keys for the fused kernel (f32 and f16) and plain keys
 * for BLAS. Prefixes that end inside a packed-key chunk and past the first one.
 *
 * kv_cache_commit (the daemon's kv_commit): every page of the cache is resident afterwards
 * (none was before), and the committed cache computes what a fresh one does.
 */
#include "engine/fwd_simd.h"
#include "engine/model.h"
#include "tests/unit/engine/ref_logits.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#define FIX "tests/fixtures/engine/tiny-gemma3/"

enum {
	N_CTX = 64,
	N_PROMPT = 37, /* tokens of each prompt */
	N_STALE = 50,  /* what the destination held before the copy */
	N_DECODE = 4,
};

static struct model *load_tiny_gemma3(char *dir)
{
	struct ref_logits *r = ref_logits_load(FIX "ref.txt");
	struct model *m = NULL;

	assert_non_null(r);
	assert_int_equal(ref_model_dir(r, FIX, dir), 0);
	assert_int_equal(model_load(dir, &m, NULL), 0);
	free(r);
	return m;
}

/* Free @m and remove the fixture directory @dir that load_tiny_gemma3() made. */
static void unload_tiny_gemma3(struct model *m, const char *dir)
{
	char cmd[128];

	model_free(m);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* @n tokens from a seeded generator, each < @n_vocab. */
static void fill_tokens(int32_t *t, uint32_t n, uint32_t seed, uint32_t n_vocab)
{
	for (uint32_t i = 0; i < n; i++)
		t[i] = (int32_t)((seed + i * 2654435761u) % n_vocab);
}

/*
 * Sequence 0 prefills x, sequence 2 prefills y (sharing x's first @n_shared tokens), both in
 * the chunks [0, n_shared), [n_shared, N_PROMPT) so that every linear layer sees the same
 * shapes. Sequence 1 first holds unrelated tokens, then takes x's first @n_shared positions
 * and prefills the rest of y: its logits must be sequence 2's, then through N_DECODE decode
 * steps too.
 */
static void check_copy(const struct model *m, enum kv_type type, uint32_t n_shared)
{
	uint32_t nv = m->cfg.n_vocab;
	int32_t x[N_PROMPT], y[N_PROMPT], z[N_STALE];
	float *lx = malloc(nv * sizeof(float)), *l1 = malloc(nv * sizeof(float));
	float *l2 = malloc(nv * sizeof(float));
	struct kv_cache kv;

	assert_true(lx && l1 && l2);
	fill_tokens(x, N_PROMPT, 1, nv);
	fill_tokens(y, N_PROMPT, 7, nv);
	memcpy(y, x, n_shared * sizeof(*y));
	fill_tokens(z, N_STALE, 99, nv);
	assert_int_equal(kv_cache_init_type(&kv, m, 3, N_CTX, type), 0);

	assert_int_equal(model_forward_seq(m, &kv, 1, z, N_STALE, 0, l1), 0);
	assert_int_equal(model_forward_seq(m, &kv, 0, x, n_shared, 0, lx), 0);
	assert_int_equal(
		model_forward_seq(m, &kv, 0, x + n_shared, N_PROMPT - n_shared, n_shared, lx), 0);
	assert_int_equal(model_forward_seq(m, &kv, 2, y, n_shared, 0, l2), 0);
	assert_int_equal(
		model_forward_seq(m, &kv, 2, y + n_shared, N_PROMPT - n_shared, n_shared, l2), 0);

	kv_cache_copy_prefix(&kv, 0, 1, n_shared);
	assert_int_equal(
		model_forward_seq(m, &kv, 1, y + n_shared, N_PROMPT - n_shared, n_shared, l1), 0);
	assert_memory_equal(l1, l2, nv * sizeof(float));
	/* not equal by accident: the source's own continuation differs */
	assert_memory_not_equal(lx, l2, nv * sizeof(float));
	for (uint32_t i = 0; i < N_DECODE; i++) {
		int32_t t = (int32_t)((i * 37u + 5u) % nv);

		assert_int_equal(model_forward_seq(m, &kv, 1, &t, 1, N_PROMPT + i, l1), 0);
		assert_int_equal(model_forward_seq(m, &kv, 2, &t, 1, N_PROMPT + i, l2), 0);
		assert_memory_equal(l1, l2, nv * sizeof(float));
	}
	kv_cache_done(&kv);
	free(lx);
	free(l1);
	free(l2);
}

static void check_all_prefixes(const struct model *m, enum kv_type type)
{
	/* inside the first packed-key chunk, and past it */
	check_copy(m, type, 13);
	check_copy(m, type, FWD_KEY_CHUNK + 5);
	check_copy(m, type, 1);
}

static void test_copied_prefix_continues_as_a_prefill(void **state)
{
	char dir[] = "/tmp/shiftadd-kvcopy-XXXXXX";
	struct model *m = load_tiny_gemma3(dir);
	struct kv_cache probe;

	/* the host's path: packed keys where it has the fused kernel */
	assert_int_equal(kv_cache_init(&probe, m, 1, N_CTX), 0);
	printf("kv copy: %s keys\n", probe.kt ? "packed" : "plain");
	kv_cache_done(&probe);
	check_all_prefixes(m, KV_F32);
	if (kv_f16_supported())
		check_all_prefixes(m, KV_F16);
	else
		printf("kv copy: no f16 cache on this host, f16 not checked\n");
	/* plain keys, BLAS attention */
	fwd_ops_select(LUT_ISA_REF);
	assert_int_equal(kv_cache_init(&probe, m, 1, N_CTX), 0);
	assert_null(probe.kt);
	kv_cache_done(&probe);
	check_all_prefixes(m, KV_F32);
	fwd_ops_select(LUT_ISA_AUTO);
	unload_tiny_gemma3(m, dir);
}

/* Resident pages of the @bytes at @p (mincore), and their count in *@n_pages. */
static size_t resident_pages(const void *p, size_t bytes, size_t *n_pages)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (bytes + page - 1) / page, r = 0;
	unsigned char *vec = malloc(n);

	assert_non_null(vec);
	assert_int_equal(mincore((void *)p, bytes, vec), 0);
	for (size_t i = 0; i < n; i++)
		r += vec[i] & 1;
	free(vec);
	*n_pages = n;
	return r;
}

static void test_commit_makes_the_cache_resident(void **state)
{
	char dir[] = "/tmp/shiftadd-kvcommit-XXXXXX";
	struct model *m = load_tiny_gemma3(dir);
	uint32_t nv = m->cfg.n_vocab;
	float *l0 = malloc(nv * sizeof(float)), *l1 = malloc(nv * sizeof(float));
	int32_t x[N_PROMPT];
	struct kv_cache kv, fresh;

	assert_true(l0 && l1);
	fill_tokens(x, N_PROMPT, 3, nv);
	assert_int_equal(kv_cache_init_type(&kv, m, 4, 1024, KV_F16), 0);
	{
		const void *arr[3] = { kv.k, kv.v, kv.kt };
		size_t len[3] = { kv.bytes, kv.bytes, kv.kt_bytes }, n;

		for (int i = 0; i < 3; i++)
			if (arr[i])
				assert_int_equal(resident_pages(arr[i], len[i], &n), 0);
		assert_int_equal(kv_cache_commit(&kv), 0);
		for (int i = 0; i < 3; i++) {
			if (!arr[i])
				continue;
			size_t r = resident_pages(arr[i], len[i], &n);

			assert_true(n > 0);
			assert_int_equal(r, n);
		}
	}
	assert_int_equal(kv_cache_init_type(&fresh, m, 4, 1024, KV_F16), 0);
	assert_int_equal(model_forward_seq(m, &kv, 3, x, N_PROMPT, 0, l0), 0);
	assert_int_equal(model_forward_seq(m, &fresh, 3, x, N_PROMPT, 0, l1), 0);
	assert_memory_equal(l0, l1, nv * sizeof(float));
	kv_cache_done(&fresh);
	kv_cache_done(&kv);
	free(l0);
	free(l1);
	unload_tiny_gemma3(m, dir);
}

int test_kv_copy_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copied_prefix_continues_as_a_prefill),
		cmocka_unit_test(test_commit_makes_the_cache_resident),
	};

	return cmocka_run_group_tests_name("engine/kv_copy", tests, NULL, NULL);
}
