/* SPDX-License-Identifier: MIT */
#ifndef PROTO_SHM_RING_H
#define PROTO_SHM_RING_H

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Shared-memory ABI between shiftaddd and libshiftadd (docs/protocol.md, "Shared memory").
 *
 * The daemon creates one memfd per client, sizes it, seals it (F_SEAL_SHRINK | F_SEAL_GROW |
 * F_SEAL_SEAL, so the client can never make a daemon access fault) and passes it over the
 * control socket. It holds, at the offsets announced in Welcome.layout:
 *
 *   struct shm_hdr                     written by the daemon once, informational afterwards
 *   struct shm_ring_ctl  sq            submission ring: the client produces, the daemon consumes
 *   struct shm_ring_ctl  cq            completion ring: the daemon produces, the client consumes
 *   struct shm_slot      sq_slots[]    descriptors, a power of two
 *   struct shm_slot      cq_slots[]
 *   uint8_t              sq_arena[]    payload bytes (one encoded ClientMsg per slot)
 *   uint8_t              cq_arena[]    payload bytes (one encoded ServerMsg per slot)
 *
 * Ring indices are free-running uint32 counters; slot i lives at slots[i & (n_slots - 1)].
 * Publication: the producer writes the payload and the descriptor, then stores tail with release;
 * the consumer loads tail with acquire, copies, then stores head with release. Each side keeps a
 * private copy of every counter it owns and of the layout and never trusts the shared one: all
 * shared memory is hostile. The producer owns the arena bytes between the consumer's head and its
 * own tail; payloads never wrap around the end of the arena.
 *
 * Doorbells: after publishing, the producer writes the ring's eventfd unless the consumer has
 * announced, in its `spinning` word, that it is polling the ring (shm_spin_begin()). A consumer
 * about to sleep withdraws the announcement, resets its eventfd and looks at the ring once more
 * (shm_spin_end(), shm_sleep_prepare()); both sides order their store before their load
 * (seq_cst), so either the consumer sees the new tail or the producer sees that it must ring
 * (no lost wake-up). A peer that never sets the word (0 in a fresh region) always gets rung.
 */

#define SHM_MAGIC	    0x52415348u /* "SHAR" little-endian */
#define SHM_VERSION	    1u
#define SHM_ALIGN	    64u
#define SHM_MAX_SLOTS	    (1u << 16)
#define SHM_MAX_ARENA_BYTES (1ull << 30)

/* shm_ring_ctl.flags bits. */
/* cq: set by the daemon when it is blocked on a full completion ring; the client, after freeing
 * completion slots, writes the submission doorbell once and clears nothing (the daemon clears). */
#define SHM_RING_F_KICK 1u

/* shm_ring_ctl.spinning: the consumer polls the ring and looks at it again before it sleeps, so
 * the producer may skip the doorbell. Any other value: ring it. */
#define SHM_SPINNING 1u

struct shm_ring_ctl {
	alignas(SHM_ALIGN) uint32_t tail;  /* written by the producer only */
	alignas(SHM_ALIGN) uint32_t head;  /* written by the consumer only */
	uint32_t spinning;		   /* written by the consumer only: SHM_SPINNING or 0 */
	alignas(SHM_ALIGN) uint32_t flags; /* SHM_RING_F_*, see each bit for its writer */
};

/* A ring descriptor: @len payload bytes at @off in the ring's arena. @flags must be 0. */
struct shm_slot {
	uint32_t len;
	uint32_t flags;
	uint64_t off;
};

/*
 * Geometry of one region; both sides compute and check it with shm_layout_*(). It is also the
 * body of struct shm_hdr, so it is ABI: fixed-width fields only, pinned by the asserts below.
 */
struct shm_layout {
	uint64_t total_bytes;
	uint32_t sq_slots;
	uint32_t cq_slots;
	uint64_t sq_ctl_off;
	uint64_t cq_ctl_off;
	uint64_t sq_ring_off;
	uint64_t cq_ring_off;
	uint64_t sq_arena_off;
	uint64_t sq_arena_bytes;
	uint64_t cq_arena_off;
	uint64_t cq_arena_bytes;
};

/* The header: magic and version, then the layout exactly as struct shm_layout holds it. */
struct shm_hdr {
	uint32_t magic;
	uint32_t version;
	struct shm_layout layout;
};

_Static_assert(sizeof(struct shm_ring_ctl) == 3 * SHM_ALIGN, "ring ctl ABI");
_Static_assert(offsetof(struct shm_ring_ctl, head) == SHM_ALIGN, "ring ctl ABI");
_Static_assert(offsetof(struct shm_ring_ctl, spinning) == SHM_ALIGN + 4, "ring ctl ABI");
_Static_assert(offsetof(struct shm_ring_ctl, flags) == 2 * SHM_ALIGN, "ring ctl ABI");
_Static_assert(sizeof(struct shm_slot) == 16, "slot ABI");
_Static_assert(sizeof(struct shm_hdr) == 88, "header ABI");
_Static_assert(offsetof(struct shm_hdr, layout.total_bytes) == 8, "header ABI");
_Static_assert(offsetof(struct shm_hdr, layout.cq_arena_bytes) == 80, "header ABI");

/*
 * Compute the layout for the given ring sizes (slots: powers of two in [2, SHM_MAX_SLOTS];
 * arenas: multiples of SHM_ALIGN in [SHM_ALIGN, SHM_MAX_ARENA_BYTES]). Returns 0 or -EINVAL.
 */
int shm_layout_init(struct shm_layout *l, uint32_t sq_slots, uint32_t cq_slots,
		    uint64_t sq_arena_bytes, uint64_t cq_arena_bytes);
/*
 * Check a layout received from a peer: exactly what shm_layout_init() gives for its sizes, and
 * no larger than @region_bytes. Returns 0 or -EPROTO.
 */
int shm_layout_check(const struct shm_layout *l, uint64_t region_bytes);
/* Write the informational header at the start of @base (size l->total_bytes). */
void shm_layout_write_hdr(const struct shm_layout *l, void *base);

/*
 * Producer side of one ring. All fields are private to the producing process, except that
 * ctl, slots and arena point into shared memory.
 */
struct shm_prod {
	struct shm_ring_ctl *ctl;
	struct shm_slot *slots; /* [n_slots] */
	uint8_t *arena;		/* [arena_bytes] */
	uint32_t n_slots;
	uint64_t arena_bytes;
	uint32_t tail;	   /* private tail */
	uint32_t head;	   /* last validated consumer head */
	uint64_t apos;	   /* arena write position, free-running */
	uint64_t *start;   /* [n_slots] arena position where slot i's allocation began */
	uint64_t pend_off; /* reserved but not committed: physical offset, or UINT64_MAX */
	uint64_t pend_end;
};

/*
 * Bind @p to a ring inside @base per @l (@sq: the submission ring, else the completion one).
 * Allocates the private position table (free with shm_prod_done()). Returns 0 or -ENOMEM.
 */
int shm_prod_init(struct shm_prod *p, void *base, const struct shm_layout *l, int sq);
void shm_prod_done(struct shm_prod *p);
/*
 * Reserve @len (> 0) contiguous payload bytes; *ret_buf points into the shared arena.
 * Returns 0, -EAGAIN (no free slot or arena space now), -E2BIG (@len can never fit) or
 * -EPROTO (the consumer's head is not between our last seen head and our tail).
 * Not thread-safe: one producer per ring.
 */
int shm_prod_reserve(struct shm_prod *p, size_t len, void **ret_buf);
/*
 * Publish the reserved payload as the next slot, with its final length @len <= reserved. The
 * tail store is seq_cst (see shm_prod_need_bell()).
 */
void shm_prod_commit(struct shm_prod *p, size_t len);
/* Slots in use (published and not yet consumed) as last validated; no shared read. */
uint32_t shm_prod_used(const struct shm_prod *p);

/* Consumer side of one ring; same ownership rules as struct shm_prod. */
struct shm_cons {
	struct shm_ring_ctl *ctl;
	struct shm_slot *slots;
	uint8_t *arena;
	uint32_t n_slots;
	uint64_t arena_bytes;
	uint32_t head;	  /* private head */
	uint32_t max_len; /* largest payload accepted */
};

/* Bind @c to a ring (see shm_prod_init); payloads longer than @max_len are protocol errors. */
void shm_cons_init(struct shm_cons *c, void *base, const struct shm_layout *l, int sq,
		   uint32_t max_len);
/*
 * Copy the next payload into @dst (capacity @cap >= max_len) and set *ret_len. The shared
 * descriptor is copied before it is checked. Returns 0, -EAGAIN (ring empty) or -EPROTO
 * (tail more than n_slots ahead, descriptor flags set, length 0 or above max_len, payload
 * outside the arena). Does not consume: call shm_cons_pop() after.
 */
int shm_cons_peek(struct shm_cons *c, void *dst, size_t cap, size_t *ret_len);
/* Consume the slot returned by the last successful shm_cons_peek() (seq_cst store of head). */
void shm_cons_pop(struct shm_cons *c);

/*
 * Producer, after shm_prod_commit(): whether the consumer must be woken through the doorbell
 * (it has not announced that it is spinning). Dekker's pattern with shm_spin_end() +
 * shm_sleep_prepare(): the tail store and this load are seq_cst, as are the consumer's store
 * of its word and its load of the tail, so at least one side sees the other's store. (Sequenced
 * atomics rather than fences: ThreadSanitizer does not model fences.)
 */
static inline bool shm_prod_need_bell(const struct shm_prod *p)
{
	return __atomic_load_n(&p->ctl->spinning, __ATOMIC_SEQ_CST) != SHM_SPINNING;
}

/* Consumer: whether the producer's tail moved past our head (a hint: peek validates). */
static inline bool shm_cons_ready(const struct shm_cons *c)
{
	return __atomic_load_n(&c->ctl->tail, __ATOMIC_ACQUIRE) != c->head;
}

/* Consumer: announce that we poll the ring (the producer may stop ringing the doorbell). */
static inline void shm_spin_begin(struct shm_cons *c)
{
	__atomic_store_n(&c->ctl->spinning, SHM_SPINNING, __ATOMIC_SEQ_CST);
}

/* Consumer: withdraw the announcement; call shm_sleep_prepare() before sleeping. */
static inline void shm_spin_end(struct shm_cons *c)
{
	__atomic_store_n(&c->ctl->spinning, 0, __ATOMIC_SEQ_CST);
}

/*
 * Consumer, with the announcement withdrawn (or never made) and the doorbell reset: whether the
 * ring has data after all (then do not sleep). Pairs with shm_prod_need_bell(): a producer that
 * still saw SHM_SPINNING published a tail that this load sees.
 */
static inline bool shm_sleep_prepare(const struct shm_cons *c)
{
	return __atomic_load_n(&c->ctl->tail, __ATOMIC_SEQ_CST) != c->head;
}

/* A polite busy-wait step (the sibling hyperthread, or the other vCPU's host, gets the core). */
static inline void shm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/*
 * Spin on @c for up to @budget_ns with the announcement made: returns true as soon as the ring
 * has data, false after the budget (the announcement is withdrawn either way). Yields the CPU
 * every microsecond so that a spinner never starves a peer that shares its core.
 */
bool shm_cons_spin(struct shm_cons *c, uint64_t budget_ns);

/* Atomic accessors for shared flags (relaxed loads would do for hints; we use seq_cst). */
static inline uint32_t shm_flags_load(const struct shm_ring_ctl *ctl)
{
	return __atomic_load_n(&ctl->flags, __ATOMIC_SEQ_CST);
}

static inline void shm_flags_store(struct shm_ring_ctl *ctl, uint32_t v)
{
	__atomic_store_n(&ctl->flags, v, __ATOMIC_SEQ_CST);
}

#endif /* PROTO_SHM_RING_H */
