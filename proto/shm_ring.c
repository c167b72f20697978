// SPDX-License-Identifier: MIT
#include "proto/shm_ring.h"

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * sched_yield() this often while spinning. On a 2-CPU machine busy with other jobs, the ring
 * round trip measured ~75 us p50 with no yields (the spinners' time slices went to the other
 * jobs, and the peer they waited for with them), ~20 us yielding every 4 us, 5-13 us every 1 us.
 */
#define SPIN_YIELD_NS 1000u

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static uint64_t align_up(uint64_t v)
{
	return (v + SHM_ALIGN - 1) & ~(uint64_t)(SHM_ALIGN - 1);
}

int shm_layout_init(struct shm_layout *l, uint32_t sq_slots, uint32_t cq_slots,
		    uint64_t sq_arena_bytes, uint64_t cq_arena_bytes)
{
	uint64_t o;

	if (!is_pow2(sq_slots) || !is_pow2(cq_slots) || sq_slots < 2 || cq_slots < 2 ||
	    sq_slots > SHM_MAX_SLOTS || cq_slots > SHM_MAX_SLOTS)
		return -EINVAL;
	if (sq_arena_bytes < SHM_ALIGN || cq_arena_bytes < SHM_ALIGN ||
	    sq_arena_bytes > SHM_MAX_ARENA_BYTES || cq_arena_bytes > SHM_MAX_ARENA_BYTES ||
	    sq_arena_bytes % SHM_ALIGN || cq_arena_bytes % SHM_ALIGN)
		return -EINVAL;
	memset(l, 0, sizeof(*l));
	l->sq_slots = sq_slots;
	l->cq_slots = cq_slots;
	o = align_up(sizeof(struct shm_hdr));
	l->sq_ctl_off = o;
	o += sizeof(struct shm_ring_ctl);
	l->cq_ctl_off = o;
	o += sizeof(struct shm_ring_ctl);
	l->sq_ring_off = o;
	o = align_up(o + (uint64_t)sq_slots * sizeof(struct shm_slot));
	l->cq_ring_off = o;
	o = align_up(o + (uint64_t)cq_slots * sizeof(struct shm_slot));
	l->sq_arena_off = o;
	l->sq_arena_bytes = sq_arena_bytes;
	o += sq_arena_bytes;
	l->cq_arena_off = o;
	l->cq_arena_bytes = cq_arena_bytes;
	o += cq_arena_bytes;
	l->total_bytes = (o + 4095) & ~(uint64_t)4095;
	return 0;
}

int shm_layout_check(const struct shm_layout *l, uint64_t region_bytes)
{
	struct shm_layout want;

	if (shm_layout_init(&want, l->sq_slots, l->cq_slots, l->sq_arena_bytes, l->cq_arena_bytes))
		return -EPROTO;
	if (memcmp(&want, l, sizeof(want)) || l->total_bytes > region_bytes)
		return -EPROTO;
	return 0;
}

void shm_layout_write_hdr(const struct shm_layout *l, void *base)
{
	struct shm_hdr h = {
		.magic = SHM_MAGIC,
		.version = SHM_VERSION,
		.layout = *l,
	};

	memcpy(base, &h, sizeof(h));
}

static void bind_ring(void *base, const struct shm_layout *l, int sq, struct shm_ring_ctl **ctl,
		      struct shm_slot **slots, uint8_t **arena, uint32_t *n_slots,
		      uint64_t *arena_bytes)
{
	uint8_t *b = base;

	*ctl = (struct shm_ring_ctl *)(b + (sq ? l->sq_ctl_off : l->cq_ctl_off));
	*slots = (struct shm_slot *)(b + (sq ? l->sq_ring_off : l->cq_ring_off));
	*arena = b + (sq ? l->sq_arena_off : l->cq_arena_off);
	*n_slots = sq ? l->sq_slots : l->cq_slots;
	*arena_bytes = sq ? l->sq_arena_bytes : l->cq_arena_bytes;
}

int shm_prod_init(struct shm_prod *p, void *base, const struct shm_layout *l, int sq)
{
	memset(p, 0, sizeof(*p));
	bind_ring(base, l, sq, &p->ctl, &p->slots, &p->arena, &p->n_slots, &p->arena_bytes);
	p->start = calloc(p->n_slots, sizeof(*p->start));
	if (!p->start)
		return -ENOMEM;
	/* A fresh ring: both counters start at 0, whatever the peer may have scribbled. */
	p->tail = 0;
	p->head = 0;
	p->pend_off = UINT64_MAX;
	return 0;
}

void shm_prod_done(struct shm_prod *p)
{
	free(p->start);
	p->start = NULL;
}

/* Load and validate the consumer's head: it may only move forward, up to our tail. */
static int refresh_head(struct shm_prod *p)
{
	/* seq_cst: pairs with the consumer's head store (see shm_cons_pop()) */
	uint32_t h = __atomic_load_n(&p->ctl->head, __ATOMIC_SEQ_CST);

	if ((uint32_t)(h - p->head) > (uint32_t)(p->tail - p->head))
		return -EPROTO;
	p->head = h;
	return 0;
}

int shm_prod_reserve(struct shm_prod *p, size_t len, void **ret_buf)
{
	uint64_t in_use, off, pad, need;
	int ret;

	if (len == 0 || len > p->arena_bytes || len > UINT32_MAX)
		return -E2BIG;
	ret = refresh_head(p);
	if (ret < 0)
		return ret;
	if (p->tail - p->head >= p->n_slots)
		return -EAGAIN;
	if (p->head == p->tail) {
		/* Empty: restart at the arena's beginning so any len <= arena_bytes fits. */
		in_use = 0;
		p->apos = (p->apos + p->arena_bytes - 1) / p->arena_bytes * p->arena_bytes;
	} else {
		in_use = p->apos - p->start[p->head & (p->n_slots - 1)];
	}
	off = p->apos % p->arena_bytes;
	pad = off + len > p->arena_bytes ? p->arena_bytes - off : 0;
	need = pad + align_up(len);
	if (need > p->arena_bytes - in_use) {
		/* The last aligned payload may end exactly at the arena's end: no alignment tail. */
		if (pad + len > p->arena_bytes - in_use)
			return -EAGAIN;
		need = pad + len;
	}
	p->pend_off = pad ? 0 : off;
	p->pend_end = p->apos + need;
	*ret_buf = p->arena + p->pend_off;
	return 0;
}

void shm_prod_commit(struct shm_prod *p, size_t len)
{
	struct shm_slot s = { .len = (uint32_t)len, .flags = 0, .off = p->pend_off };
	uint32_t i = p->tail & (p->n_slots - 1);

	p->start[i] = p->apos;
	p->apos = p->pend_end;
	p->pend_off = UINT64_MAX;
	memcpy(&p->slots[i], &s, sizeof(s));
	p->tail++;
	/* seq_cst, not just release: the doorbell decision that follows must not pass it. */
	__atomic_store_n(&p->ctl->tail, p->tail, __ATOMIC_SEQ_CST);
}

uint32_t shm_prod_used(const struct shm_prod *p)
{
	return p->tail - p->head;
}

void shm_cons_init(struct shm_cons *c, void *base, const struct shm_layout *l, int sq,
		   uint32_t max_len)
{
	memset(c, 0, sizeof(*c));
	bind_ring(base, l, sq, &c->ctl, &c->slots, &c->arena, &c->n_slots, &c->arena_bytes);
	c->head = 0;
	c->max_len = max_len;
}

int shm_cons_peek(struct shm_cons *c, void *dst, size_t cap, size_t *ret_len)
{
	uint32_t tail = __atomic_load_n(&c->ctl->tail, __ATOMIC_ACQUIRE);
	uint32_t avail = tail - c->head;
	struct shm_slot s;

	if (avail == 0)
		return -EAGAIN;
	if (avail > c->n_slots)
		return -EPROTO;
	/* One copy of the descriptor; the peer may keep changing the shared one. */
	memcpy(&s, &c->slots[c->head & (c->n_slots - 1)], sizeof(s));
	if (s.flags || s.len == 0 || s.len > c->max_len || s.len > cap)
		return -EPROTO;
	if (s.off > c->arena_bytes || s.len > c->arena_bytes - s.off)
		return -EPROTO;
	memcpy(dst, c->arena + s.off, s.len);
	*ret_len = s.len;
	return 0;
}

/*
 * seq_cst, not release: the back-pressure handshake is Dekker's pattern. The producer stores
 * SHM_RING_F_KICK, then reloads our head (refresh_head); we store the head, then load the
 * flags (client_lib drain()). With a release store our head can still sit in the store buffer
 * while we read the flags: both sides then miss each other and the producer waits for a kick
 * that never comes (a 30 s client stall seen under load).
 */
void shm_cons_pop(struct shm_cons *c)
{
	c->head++;
	__atomic_store_n(&c->ctl->head, c->head, __ATOMIC_SEQ_CST);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool shm_cons_spin(struct shm_cons *c, uint64_t budget_ns)
{
	uint64_t t0, now, next_yield;
	bool ready = false;

	if (!budget_ns)
		return false;
	shm_spin_begin(c);
	t0 = mono_ns();
	next_yield = t0 + SPIN_YIELD_NS;
	for (;;) {
		/* The clock is read once per 16 looks at the ring: a look is one shared load. */
		for (int i = 0; i < 16 && !ready; i++) {
			ready = shm_cons_ready(c);
			shm_cpu_relax();
		}
		if (ready)
			break;
		now = mono_ns();
		if (now - t0 >= budget_ns)
			break;
		if (now >= next_yield) {
			sched_yield();
			next_yield = now + SPIN_YIELD_NS;
		}
	}
	shm_spin_end(c);
	return ready;
}
