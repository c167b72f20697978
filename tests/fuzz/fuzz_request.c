// SPDX-License-Identifier: MIT
/*
 * A protobuf message from a client, through the daemon's own path: decode (as a ring ClientMsg
 * and as a control-socket ControlMsg), then a GenerateRequest is submitted to the real scheduler
 * over the fake backend and stepped to completion (bounded), a Cancel is applied, and every
 * answer is encoded as it would be into the client's completion ring.
 */
#include <errno.h>
#include <stdlib.h>

#include "daemon/backend.h"
#include "daemon/sched.h"
#include "proto/shiftadd.pb-c.h"
#include "tests/fuzz/fuzz.h"

static uint8_t packed[1 << 16];

static int emit(void *owner, const Shiftadd__ServerMsg *m)
{
	size_t len = shiftadd__server_msg__get_packed_size(m);

	if (len > sizeof(packed))
		return -E2BIG;
	shiftadd__server_msg__pack(m, packed);
	return 0;
}

static struct sched *get_sched(void)
{
	static struct backend *be;
	static struct sched *s;
	struct backend_config bc = { .n_slots = 4, .n_ctx = 256, .max_batch_tokens = 64 };
	struct sched_limits lim = { .max_inflight = 4,
				    .max_prompt_tokens = 128,
				    .max_new_tokens = 16,
				    .max_client_tokens = 1024,
				    .max_stop_strings = 4,
				    .max_stop_bytes = 16,
				    .max_batch_tokens = 64,
				    .prefill_chunk = 32 };

	if (s)
		return s;
	if (backend_fake_ops.open(&bc, &be, NULL) < 0)
		return NULL;
	if (sched_new(&backend_fake_ops, be, &lim, &s) < 0)
		return NULL;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sched *s = get_sched();
	struct sched_client *c;
	Shiftadd__ClientMsg *m;
	Shiftadd__ControlMsg *cm;

	cm = shiftadd__control_msg__unpack(NULL, size, data);
	if (cm)
		shiftadd__control_msg__free_unpacked(cm, NULL);
	m = shiftadd__client_msg__unpack(NULL, size, data);
	if (!m || !s || sched_client_add(s, NULL, emit, 0, &c) < 0)
		goto out;
	if (m->msg_case == SHIFTADD__CLIENT_MSG__MSG_GENERATE &&
	    sched_submit(s, c, m->generate) == 0) {
		/* Bounded: at most 128 / 32 prefill steps plus 16 decode steps. */
		for (int i = 0; i < 64 && sched_client_n_live(c); i++)
			if (sched_step(s) < 0)
				break;
	} else if (m->msg_case == SHIFTADD__CLIENT_MSG__MSG_CANCEL) {
		(void)sched_cancel(s, c, m->cancel->request_id);
	}
	sched_client_remove(s, c);
out:
	if (m)
		shiftadd__client_msg__free_unpacked(m, NULL);
	return 0;
}
