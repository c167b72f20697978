// SPDX-License-Identifier: MIT
/*
 * A client's shared-memory region as the daemon sees it: the input is laid over a small region
 * (ring counters, descriptors, arenas all hostile), then the daemon's consumer reads the
 * submission ring and decodes each payload, and its producer publishes into the completion ring
 * against whatever consumer head the input claims.
 */
#include <stdlib.h>
#include <string.h>

#include "proto/shiftadd.pb-c.h"
#include "proto/shm_ring.h"
#include "tests/fuzz/fuzz.h"

#define MAX_MSG 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct shm_layout l;
	struct shm_cons sq;
	struct shm_prod cq;
	uint8_t msg[MAX_MSG];
	void *base;

	if (shm_layout_init(&l, 4, 4, 512, 512) < 0)
		return 0;
	base = aligned_alloc(SHM_ALIGN, l.total_bytes);
	if (!base)
		return 0;
	memset(base, 0, l.total_bytes);
	memcpy(base, data, size < l.total_bytes ? size : l.total_bytes);
	shm_cons_init(&sq, base, &l, 1, MAX_MSG);
	for (int i = 0; i < 8; i++) {
		Shiftadd__ClientMsg *m;
		size_t len;

		if (shm_cons_peek(&sq, msg, sizeof(msg), &len) < 0)
			break;
		m = shiftadd__client_msg__unpack(NULL, len, msg);
		if (m)
			shiftadd__client_msg__free_unpacked(m, NULL);
		shm_cons_pop(&sq);
	}
	if (shm_prod_init(&cq, base, &l, 0) == 0) {
		/* Lengths to publish come from the input's tail, so the fuzzer steers them. */
		for (size_t i = 0; i < 8; i++) {
			size_t len = 1 + (size > i ? data[size - 1 - i] : 0);
			void *p;

			if (shm_prod_reserve(&cq, len, &p) < 0)
				break;
			memset(p, 0xa5, len);
			shm_prod_commit(&cq, len);
		}
		shm_prod_done(&cq);
	}
	free(base);
	return 0;
}
