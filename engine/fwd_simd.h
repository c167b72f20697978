/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_FWD_SIMD_H
#define ENGINE_FWD_SIMD_H

/*
 * The forward pass's elementwise math (softmax, SiLU, log-sum-exp, sums of squares) and its
 * fused attention rows, once per ISA: engine/fwd_simd.c holds the scalar versions (the
 * reference and fallback), engine/x86/fwd_avx2.c the AVX2+FMA ones, engine/x86/fwd_avx512.c
 * the AVX-512 prefill attention. The ISA is the one the shift-add kernels pick
 * (kernels/lut.h lut_isa_auto(), SHIFTADD_ISA=ref forces scalar).
 * Internal to the engine.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/lut.h"

/* Query rows per fused attention block and keys per packed key chunk. */
#define FWD_ATT_ROWS  32
#define FWD_KEY_CHUNK 16

/*
 * One block of query rows of one head for causal attention: row r (0 <= r < rows) attends to
 * keys 0 .. vis0 + r - 1, so the block needs vis0 + rows - 1 keys; with a sliding window
 * (win > 0) only to the last win of them.
 */
struct fwd_att_rows {
	const float *q;	   /* [rows][q_stride]: the head's slice of each row */
	const void *kt;	   /* the head's keys as fwd_pack_keys() lays them out, f32 or f16 */
	const void *v;	   /* [n_keys][v_stride]: the head's slice of each value row, as kt */
	bool f16;	   /* kt and v hold f16 (IEEE binary16), else f32 */
	float *out;	   /* [rows][out_stride] */
	float *scratch;	   /* fwd_att_scratch_floats(hd, n_keys) floats, 32-byte aligned */
	uint32_t q_stride; /* strides in floats */
	uint32_t v_stride;
	uint32_t out_stride;
	uint32_t hd;   /* head dimension, a multiple of 32 */
	uint32_t rows; /* 1 .. FWD_ATT_ROWS */
	uint32_t vis0; /* >= 1 */
	uint32_t win;  /* sliding window in keys, 0 = none */
	float scale;   /* applied to q.k */
};

/* The first key a query that sees keys [0, @vis) attends to through a window of @win (0: none). */
static inline uint32_t fwd_window_start(uint32_t vis, uint32_t win)
{
	return win && vis > win ? vis - win : 0;
}

/* The first key row @r of @a attends to. */
static inline uint32_t fwd_att_first_key(const struct fwd_att_rows *a, uint32_t r)
{
	return fwd_window_start(a->vis0 + r, a->win);
}

struct fwd_ops {
	const char *name;
	/* x[0..n) = softmax(x), n >= 1; the sum runs in double. */
	void (*softmax)(float *x, uint32_t n);
	/* g[i] = silu(g[i]) * u[i]. */
	void (*silu_mul)(float *g, const float *u, uint64_t n);
	/* g[i] = gelu(g[i]) * u[i], GELU's tanh form (as x * sigmoid(2 * sqrt(2/pi) * ...)). */
	void (*gelu_mul)(float *g, const float *u, uint64_t n);
	/* log(sum_i exp(x[i])), n >= 1, accumulated in double. */
	double (*logsumexp)(const float *x, uint32_t n);
	/* sum_i x[i]^2 in double. */
	double (*sumsq)(const float *x, uint32_t n);
	/* Softmax(q k^T * scale) v for one block of rows; NULL when the ISA has no fused path. */
	void (*attend_rows)(const struct fwd_att_rows *a);
	/*
	 * One row (a->rows = 1) for each of @n_heads <= FWD_ATT_ROWS heads that share a's keys
	 * and values: head i's query at a->q + i * hd, its output at a->out + i * hd (q_stride
	 * and out_stride unused). Each head gets the bits attend_rows gives it alone; the keys
	 * and values are read once for all. NULL where attend_rows is.
	 */
	void (*attend_heads)(const struct fwd_att_rows *a, uint32_t n_heads);
	/*
	 * dst[i * dst_stride] = src[i] as f16 for i < n: rounded to nearest even, saturated to
	 * +-65504, NaN kept NaN (dtype_f32_to_f16 of the clamped value), on every port.
	 */
	void (*to_f16)(uint16_t *dst, size_t dst_stride, const float *src, uint32_t n);
};

/* The ops for @isa (LUT_ISA_AUTO: the host's best); ISAs without a port get the scalar ops. */
const struct fwd_ops *fwd_ops_of(enum lut_isa isa);

/* The ops the forward pass uses: fwd_ops_of(LUT_ISA_AUTO) unless fwd_ops_select() chose. */
const struct fwd_ops *fwd_ops(void);

/* Test hook: make fwd_ops() return fwd_ops_of(@isa). Not thread-safe against forwards. */
void fwd_ops_select(enum lut_isa isa);

/* Floats of packed keys for @n_keys keys of dimension @hd (whole FWD_KEY_CHUNK chunks). */
size_t fwd_packed_keys_floats(uint32_t n_keys, uint32_t hd);

/*
 * Pack @n_keys keys (k[j * k_stride + d], d < hd) into chunks of FWD_KEY_CHUNK keys, each
 * [hd][FWD_KEY_CHUNK] (key index fastest), zero-padded: the layout attend_rows reads, as f32
 * or (@f16) as f16 rounded to nearest even and saturated to the finite range.
 */
void fwd_pack_keys(void *kt, const float *k, uint32_t k_stride, uint32_t n_keys, uint32_t hd,
		   bool f16);

/* Store key @pos (@hd floats at @k) into packed keys @kt, as fwd_pack_keys() does. */
void fwd_pack_key(void *kt, const float *k, uint32_t pos, uint32_t hd, bool f16);

/* dst[0..n) = src[0..n) as f32, or (@f16) as fwd_pack_keys() rounds to f16. */
void fwd_kv_store(void *dst, const float *src, uint32_t n, bool f16);

/*
 * Prefetch, for writing, the cache lines fwd_pack_key(@kt, ..., @pos, @hd, @f16) will store
 * to. A decode step writes each sequence's new key across hd lines of a cache that the
 * weights streamed out of cache since the last step: the stores missed and stalled the
 * (single) thread that makes them.
 */
void fwd_prefetch_key(const void *kt, uint32_t pos, uint32_t hd, bool f16);

/* Prefetch, for writing, the cache lines of [@p, @p + @bytes). */
void fwd_prefetch_span(const void *p, size_t bytes);

/* Scratch floats one attend_rows call needs for blocks of up to @n_keys keys. */
size_t fwd_att_scratch_floats(uint32_t hd, uint32_t n_keys);

extern const struct fwd_ops fwd_ops_avx2, fwd_ops_avx512;

struct model;

/*
 * Parallel loops of the forward pass (engine/forward.c). fwd_n_workers(): how many tasks run
 * at once, the model's kernel workers (opts.runner, opts.pool) when it has them, else as
 * many threads as BLAS uses (the tools set that from --threads), at most 64.
 * fwd_run_tasks(): fn(arg, i) for every i < @n (at most 64), in parallel on those workers or
 * on threads started for the call (a thread that cannot start has its task run by the
 * caller); returns when all are done.
 */
uint32_t fwd_n_workers(const struct model *m);
void fwd_run_tasks(const struct model *m, uint32_t n, lut_task_fn fn, void *arg);

#endif /* ENGINE_FWD_SIMD_H */
