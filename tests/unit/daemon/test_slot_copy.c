// SPDX-License-Identifier: MIT
/*
 * backend slot_copy, fake and engine: every bad argument is -EINVAL with nothing changed, and
 * a slot that took another's first positions goes on with the same logits as one that
 * stepped them itself. The engine part runs on the default model (skipped without it).
 */
#include "daemon/backend.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define SMOLLM2 "models/SmolLM2-135M-Instruct.Q4_1.gguf"

enum {
	N_SLOTS = 4,
	N_CTX = 64,
	N_PROMPT = 30,
	N_SHARED = 21,
};

/* Step @n tokens into @slot at @pos in one step; the last one's logits into @logits. */
static int step(const struct backend_ops *ops, struct backend *b, uint32_t slot, uint32_t pos,
		const int32_t *tokens, uint32_t n, float *logits)
{
	struct backend_seq q = { .slot = slot,
				 .pos = pos,
				 .n_tokens = n,
				 .tokens = tokens,
				 .want_logits = true,
				 .logits = logits };

	return ops->step(b, &q, 1);
}

/*
 * Slot 0 steps x, slot 2 steps y (x's first N_SHARED tokens, then others), both in the chunks
 * [0, N_SHARED), [N_SHARED, N_PROMPT). Slot 1 holds other tokens, takes slot 0's first
 * N_SHARED positions and steps the rest of y: its logits must be slot 2's. Slot 0 is freed
 * before the copy (a free slot keeps its KV), slot 3 is never allocated.
 */
static void check_backend(const struct backend_ops *ops, const struct backend_config *bc)
{
	struct backend_info info;
	int32_t x[N_PROMPT], y[N_PROMPT], z[N_CTX];
	uint32_t slot, nv;
	struct backend *b;
	float *l1, *l2;

	assert_int_equal(ops->open(bc, &b, NULL), 0);
	ops->info(b, &info);
	nv = info.n_vocab;
	l1 = malloc(nv * sizeof(float));
	l2 = malloc(nv * sizeof(float));
	assert_true(l1 && l2);
	for (uint32_t i = 0; i < N_PROMPT; i++) {
		x[i] = (int32_t)((3 + i * 7919u) % 250u);
		y[i] = i < N_SHARED ? x[i] : (int32_t)((11 + i * 104729u) % 250u);
	}
	for (uint32_t i = 0; i < N_CTX; i++)
		z[i] = (int32_t)((5 + i * 31u) % 250u);
	for (uint32_t i = 0; i < 3; i++) {
		assert_int_equal(ops->slot_alloc(b, &slot), 0);
		assert_int_equal(slot, i);
	}
	assert_int_equal(step(ops, b, 1, 0, z, 40, l1), 0);
	assert_int_equal(step(ops, b, 0, 0, x, N_SHARED, l1), 0);
	assert_int_equal(step(ops, b, 0, N_SHARED, x + N_SHARED, N_PROMPT - N_SHARED, l1), 0);
	assert_int_equal(step(ops, b, 2, 0, y, N_SHARED, l2), 0);
	assert_int_equal(step(ops, b, 2, N_SHARED, y + N_SHARED, N_PROMPT - N_SHARED, l2), 0);
	ops->slot_free(b, 0);

	/* bad arguments: nothing changes (slot 1 still continues at 40) */
	assert_int_equal(ops->slot_copy(b, 1, 1, 5), -EINVAL);		  /* dst == src */
	assert_int_equal(ops->slot_copy(b, N_SLOTS, 0, 5), -EINVAL);	  /* no such dst */
	assert_int_equal(ops->slot_copy(b, 1, N_SLOTS, 5), -EINVAL);	  /* no such src */
	assert_int_equal(ops->slot_copy(b, 3, 0, 5), -EINVAL);		  /* dst not in use */
	assert_int_equal(ops->slot_copy(b, 1, 0, N_PROMPT + 1), -EINVAL); /* past src */
	assert_int_equal(ops->slot_copy(b, 1, 3, 1), -EINVAL);		  /* src holds none */
	assert_int_equal(ops->slot_copy(b, 1, UINT32_MAX, UINT32_MAX), -EINVAL);
	assert_int_equal(step(ops, b, 1, 40, z + 40, 1, l1), 0);

	assert_int_equal(ops->slot_copy(b, 1, 0, N_SHARED), 0);
	assert_int_equal(step(ops, b, 1, N_SHARED + 1, y + N_SHARED, 1, l1), -EINVAL);
	assert_int_equal(step(ops, b, 1, N_SHARED, y + N_SHARED, N_PROMPT - N_SHARED, l1), 0);
	assert_memory_equal(l1, l2, nv * sizeof(float));
	/* the source kept its KV: claimed back whole, it continues x */
	assert_int_equal(ops->slot_claim(b, 0, N_PROMPT), 0);
	assert_int_equal(step(ops, b, 0, N_PROMPT, z, 1, l1), 0);
	assert_int_equal(step(ops, b, 2, N_PROMPT, z, 1, l2), 0);
	assert_memory_not_equal(l1, l2, nv * sizeof(float));
	/* an empty copy empties the slot */
	assert_int_equal(ops->slot_copy(b, 1, 3, 0), 0);
	assert_int_equal(step(ops, b, 1, 0, y, 1, l1), 0);
	free(l1);
	free(l2);
	ops->close(b);
}

static void test_fake_slot_copy(void **state)
{
	struct backend_config bc = { .n_slots = N_SLOTS, .n_ctx = N_CTX, .max_batch_tokens = 64 };

	check_backend(&backend_fake_ops, &bc);
}

static void test_engine_slot_copy(void **state)
{
	struct backend_config bc = { .model_path = SMOLLM2,
				     .n_slots = N_SLOTS,
				     .n_ctx = N_CTX,
				     .max_batch_tokens = 64,
				     .kv_f16 = true };

	if (access(SMOLLM2, R_OK) < 0)
		fail_msg("%s is missing: run 'make model'", SMOLLM2);
	check_backend(&backend_engine_ops, &bc);
	bc.kv_f16 = false;
	check_backend(&backend_engine_ops, &bc);
}

int test_slot_copy_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fake_slot_copy),
		cmocka_unit_test(test_engine_slot_copy),
	};

	return cmocka_run_group_tests_name("daemon/slot_copy", tests, NULL, NULL);
}
