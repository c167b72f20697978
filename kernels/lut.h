/* SPDX-License-Identifier: MIT */
#ifndef KERNELS_LUT_H
#define KERNELS_LUT_H

#include "kernels/qweight.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Shift-add lookup-table kernels: y = W x with W in binary-coding form (kernels/qweight.h),
 * computed without multiplications.
 *
 * Per token, the activations are shifted by each alpha = sum of +-2^e (exponent adds), every
 * group of 4 shifted activations becomes a 16-entry table of all +-a+-b+-c+-d (adds only),
 * quantized to int16 with one power-of-two scale per 64-column chunk, and each output row
 * sums table entries picked by its packed sign nibbles (exact integer sums per chunk, then
 * float sums over chunks). For the block layout ("Lat.") the
 * alpha of a row block is folded into that row block's own tables, so no layout scales
 * after lookup either.
 *
 * Packed format (ISA-independent, so one converted file runs on any host):
 *   - rows are cut into lanes of 16 (a lane never crosses an alpha row block), 4 lanes make
 *     a 64-row tile; lanes past the end are empty;
 *   - planes: [n_tiles][n_pairs][bits][64] bytes, n_pairs = ceil(n_cols / 8): byte r of a
 *     64-byte chunk belongs to tile row r; its low nibble holds the signs of columns
 *     8p..8p+3 (bit j set = +1 for column 8p+j), the high nibble columns 8p+4..8p+7.
 *     Columns past n_cols are 0 (they meet zero activations);
 *   - tables of a token: [n_rowsets][n_pairs][bits][64] bytes: entries are 14-bit values
 *     + 8192, split into 7-bit digits: 16 low digits of group 2p's entries, their 16 high
 *     digits, then the same for group 2p+1.
 * Accuracy: the 14-bit table rounding (relative step 2^-13 of a chunk's largest entry) and
 * the float sum over chunks differ from exact arithmetic (see kernels/README.md and the
 * tolerance in tests/unit/kernels/test_lut.c).
 */

#define LUT_TILE_ROWS	(4 * LUT_LANE_ROWS)
#define LUT_LANE_ROWS	16
#define LUT_GROUP	4
#define LUT_PAIR_COLS	8
#define LUT_CHUNK_PAIRS 8 /* 64 columns share one table scale */
#define LUT_MAX_TERMS	4 /* signed powers of two per alpha */

enum lut_isa {
	LUT_ISA_AUTO, /* best the host runs, or SHIFTADD_ISA from the environment */
	LUT_ISA_REF,
	LUT_ISA_AVX2,
	LUT_ISA_AVX512,
	LUT_ISA_COUNT,
};

struct lut_lane {
	uint32_t row0;	  /* first output row */
	uint16_t n_rows;  /* real rows, 0..16 (0 = padding lane) */
	uint16_t rowset;  /* alpha row block whose tables it reads */
	uint64_t tab_off; /* byte offset of that row block's tables in a token's tables */
};

/*
 * The alphas decomposed for exponent-add application, one 16-bit code per term slot (a table
 * build streams 2 bytes per column and term): (code << 16) = sign << 31 | (e + e_bias) << 23
 * for a term sign * 2^e, e + e_bias in [1, 255]; 0 for an empty slot. Added to a float's bits
 * minus e_bias << 23 it gives x * 2^e, sign flipped for a negative term (exact while the
 * result stays normal).
 */
struct lut_terms {
	uint16_t *code; /* [n_rowsets][bits][n_terms][n_col_blocks], then 8 slack codes */
	int32_t e_bias;
};

struct lut_weight {
	uint32_t n_rows, n_cols, bits;
	enum qw_layout layout;
	uint32_t n_rowsets, rowset_rows; /* alpha row blocks and their height */
	uint32_t n_col_blocks, col_block;
	uint32_t n_terms;     /* slots per alpha (max NAF weight seen, >= 1) */
	int32_t e_min, e_max; /* range of the used terms' exponents (0, 0 if none) */
	uint32_t n_pairs, n_chunks, n_tiles, n_lanes;
	uint32_t term_step;	/* n_terms * n_col_blocks: one (rowset, plane) of terms */
	uint64_t tile_bytes;	/* n_pairs * bits * 64: one tile of planes */
	uint64_t tab_bytes;	/* one token's tables */
	uint64_t plane_bytes;	/* size of planes */
	struct lut_lane *lanes; /* [n_lanes] */
	struct lut_terms terms;
	uint8_t *planes; /* [n_tiles][n_pairs][bits][64]; owned unless borrowed */
	bool planes_borrowed;
};

/*
 * Pack @q into @w (allocated here). Every alpha must be exactly a sum of at most LUT_MAX_TERMS
 * signed powers of two: -EOPNOTSUPP otherwise (e.g. apot == 0 baselines), also for a
 * col_block other than 1 or a multiple of 8 and for term exponents spanning more than 2^254. Returns 0, -EINVAL, -EOVERFLOW or -ENOMEM.
 * Free with lut_weight_done(). @q is only read.
 */
int lut_pack(const struct qweight *q, struct lut_weight *w);

/*
 * Like lut_pack, but borrow already-packed @planes (w->plane_bytes long, e.g. an mmapped
 * GGUF tensor) instead of packing signs; @alpha is laid out as qweight.alpha for a
 * qweight_init(@n_rows, @n_cols, @bits, @layout) shape. @planes is borrowed until
 * lut_weight_done(); @alpha is copied. Returns as lut_pack.
 */
int lut_wrap(uint32_t n_rows, uint32_t n_cols, uint32_t bits, enum qw_layout layout,
	     const uint8_t *planes, const float *alpha, struct lut_weight *w);

/* Bytes of packed planes for a shape (what lut_wrap expects), or 0 on bad arguments. */
uint64_t lut_plane_bytes(uint32_t n_rows, uint32_t n_cols, uint32_t bits, enum qw_layout layout);

/*
 * Rebuild the neutral form (signs and alpha) from @w into @q (allocated here with
 * qweight_init). For tests and tools. Returns 0, -ENOMEM or -EINVAL.
 */
int lut_unpack(const struct lut_weight *w, struct qweight *q);

/* Free what lut_pack/lut_wrap allocated; safe on a zeroed or half-built struct. */
void lut_weight_done(struct lut_weight *w);

/*
 * Caller-provided task runner: run fn(arg, i) for every i in [0, n_tasks), possibly in
 * parallel, and return when all have finished. common/pool.h's pool_run() fits; the daemon
 * passes its own pinned workers. The kernels never create threads.
 */
typedef void (*lut_task_fn)(void *arg, uint32_t task);
typedef void (*lut_run_fn)(void *ctx, uint32_t n_tasks, lut_task_fn fn, void *arg);

struct lut_runner {
	lut_run_fn run;
	void *ctx;
	uint32_t n_workers; /* how many tasks run at once; work is split into that many */
};

struct lut_opts {
	const struct lut_runner *runner; /* NULL: run on the calling thread */
	void *scratch;			 /* NULL: allocated and freed per call */
	size_t scratch_bytes;		 /* >= lut_scratch_bytes() when scratch is given */
	enum lut_isa isa;		 /* LUT_ISA_AUTO (0) normally */
};

/* Scratch one lut_gemm call needs for @m tokens with @n_workers workers (64-byte aligned use). */
size_t lut_scratch_bytes(const struct lut_weight *w, uint32_t m, uint32_t n_workers);

/*
 * y[m][n_rows] = x[m][n_cols] W^T for @m tokens (m = 1: gemv). Activations must be finite.
 * Tables are built once per token and shared by all rows. Returns 0, -EINVAL (bad
 * arguments, too small scratch), -EOPNOTSUPP (ISA forced but not runnable here) or -ENOMEM.
 * Thread-safe for concurrent calls with distinct scratch; @w is only read.
 */
int lut_gemm(const struct lut_weight *w, uint32_t m, const float *x, float *y,
	     const struct lut_opts *o);

/* lut_gemm for one token. */
int lut_gemv(const struct lut_weight *w, const float *x, float *y, const struct lut_opts *o);

/* Most weights one lut_gemm_multi call takes. */
#define LUT_MULTI_MAX 8

/* Scratch of one lut_gemm_multi call over @n (<= LUT_MULTI_MAX) weights, @m tokens; 0 if bad. */
size_t lut_scratch_bytes_multi(const struct lut_weight *const *ws, uint32_t n, uint32_t m);

/*
 * ys[i][m][n_rows of ws[i]] = x W_i^T for @n weights (1..LUT_MULTI_MAX) that read the same
 * @m tokens of @x (equal n_cols), as q/k/v or gate/up do: one task per weight on
 * @o->runner, each a one-thread lut_gemm, so every weight's tables are built once (by the
 * task that runs it) instead of once per worker, with one hand-off for all of them. The
 * same bits as @n lut_gemm calls. @o->scratch, if given, holds lut_scratch_bytes_multi().
 * Returns 0, or the first error one of the lut_gemm calls returned (-EINVAL also for
 * weights of different widths or a bad @n).
 */
int lut_gemm_multi(const struct lut_weight *const *ws, uint32_t n, uint32_t m, const float *x,
		   float *const *ys, const struct lut_opts *o);

/* Whether this host (CPU and OS vector state) runs @isa. */
bool lut_isa_supported(enum lut_isa isa);

/*
 * The ISA LUT_ISA_AUTO resolves to: SHIFTADD_ISA=ref|avx2|avx512 if set (even if the host
 * cannot run it: lut_gemm then fails with -EOPNOTSUPP), else the best supported.
 */
enum lut_isa lut_isa_auto(void);

/* "ref", "avx2", "avx512" ("auto" for LUT_ISA_AUTO); NULL if out of range. */
const char *lut_isa_name(enum lut_isa isa);

#endif /* KERNELS_LUT_H */
