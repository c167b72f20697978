// SPDX-License-Identifier: MIT
/*
 * Q8_0 (and Q5_0) linear backend: weights stay 8-bit (GGUF Q8_0: per 32 values one f16 scale
 * and 32 int8) or 5-bit (GGUF Q5_0: the scale and 32 values in [-16, 15] as nibbles plus a
 * word of fifth bits). Built for the LM head: SmolLM2's tied embedding is 49152 x 576, the
 * largest matrix of the model, and every decoded token reads all of it; as Q8_0 that is
 * 30 MB per token instead of 113 MB of f32, as Q5_0 21 MB (decode reads it at memory speed).
 *
 * Activations are quantized to int16 per block of 32 (engine/linear_q8.h), so a block's
 * dot product is an exact integer sum (vpmaddwd on AVX2): the f32 version (widen each weight
 * to f32, one FMA per value) was compute-bound at a fifth of SmolLM2's decode time.
 */
#include "engine/linear_q8.h"
#include "engine/dtype.h"
#include "engine/linear.h"
#include "kernels/lut.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of one GGUF block: the f16 scale, then the values (Q8_QBYTES or Q5_QBYTES). */
#define GGUF_BLOCK_BYTES(qbytes) (2 + (qbytes))

/* Rows per task at least: a smaller share costs more in hand-off than it saves. */
#define MIN_TASK_ROWS 256

struct q8_linear {
	struct q8_weight w;
	uint8_t *q;		  /* owned storage behind w.q */
	float *d;		  /* owned storage behind w.d */
	struct lut_runner runner; /* run == NULL: calling thread only */
};

void q8_rows_ref(const struct q8_weight *w, uint32_t r0, uint32_t r1, const struct q8_acts *x,
		 uint32_t m, float *y)
{
	uint32_t nb = w->n_in / Q8_BLOCK;

	for (uint32_t t = 0; t < m; t++) {
		const int16_t *xq = x->q + (size_t)t * w->n_in;
		const float *xd = x->d + (size_t)t * nb;

		for (uint32_t r = r0; r < r1; r++) {
			float lane[8] = { 0 };

			for (uint32_t b = 0; b < nb; b++) {
				uint64_t at = q8_block_index(w, r, b);
				int8_t q[Q8_BLOCK];
				const int16_t *xb = xq + (size_t)b * Q8_BLOCK;
				float s = w->d[at] * xd[b];

				q8_block_values(w, at, q);
				for (uint32_t k = 0; k < 8; k++) {
					uint32_t j = 2 * k;
					int32_t p = q[j] * xb[j] + q[j + 1] * xb[j + 1] +
						    q[j + 16] * xb[j + 16] + q[j + 17] * xb[j + 17];

					lane[k] = fmaf((float)p, s, lane[k]);
				}
			}
			y[(size_t)t * w->n_out + r] = q8_lanes_sum(lane);
		}
	}
}

void q8_quantize_acts(const float *x, uint32_t m, uint32_t n_in, int16_t *q, float *d)
{
	for (size_t b = 0; b < (size_t)m * (n_in / Q8_BLOCK); b++) {
		const float *xb = x + b * Q8_BLOCK;
		float amax = 0, id;
		bool finite = true;

		for (uint32_t j = 0; j < Q8_BLOCK; j++) {
			amax = fmaxf(amax, fabsf(xb[j]));
			finite &= isfinite(xb[j]);
		}
		/* a NaN or infinite activation makes every output it touches NaN, as in f32 */
		d[b] = finite ? amax / 32767 : NAN;
		id = finite && amax > 0 ? 32767 / amax : 0;
		for (uint32_t j = 0; j < Q8_BLOCK; j++)
			q[b * Q8_BLOCK + j] = (int16_t)lrintf(xb[j] * id);
	}
}

/* The kernel the forwards use; NULL until the first forward or linear_q8_select_isa(). */
static _Atomic(q8_rows_fn) selected;

static q8_rows_fn rows_fn_of(enum lut_isa isa)
{
	if (isa == LUT_ISA_AUTO)
		isa = lut_isa_auto();
	/* AVX-512 hosts run AVX2 as well */
	if ((isa == LUT_ISA_AVX2 || isa == LUT_ISA_AVX512) && lut_isa_supported(LUT_ISA_AVX2))
		return q8_rows_avx2;
	return q8_rows_ref;
}

static q8_rows_fn rows_fn(void)
{
	q8_rows_fn f = atomic_load_explicit(&selected, memory_order_relaxed);

	if (!f) {
		f = rows_fn_of(LUT_ISA_AUTO);
		atomic_store_explicit(&selected, f, memory_order_relaxed);
	}
	return f;
}

int linear_q8_select_isa(enum lut_isa isa)
{
	if ((unsigned)isa >= LUT_ISA_COUNT || !lut_isa_supported(isa))
		return -EOPNOTSUPP;
	atomic_store_explicit(&selected, rows_fn_of(isa), memory_order_relaxed);
	return 0;
}

struct q8_job {
	const struct q8_weight *w;
	q8_rows_fn fn;
	struct q8_acts x;
	float *y;
	uint32_t m;
	uint32_t parts;
};

/* Task @i's rows: boundaries on multiples of 4 (the one-token tile), the last one at n_out. */
static uint32_t part_start(const struct q8_job *j, uint32_t i)
{
	if (i >= j->parts)
		return j->w->n_out;
	return (uint32_t)((uint64_t)j->w->n_out * i / j->parts) & ~3u;
}

static void q8_task(void *arg, uint32_t i)
{
	const struct q8_job *j = arg;

	j->fn(j->w, part_start(j, i), part_start(j, i + 1), &j->x, j->m, j->y);
}

/* @m tokens whose activations are already quantized into @xq/@xd, over the rows' workers. */
static void q8_run(const struct q8_linear *s, const int16_t *xq, const float *xd, float *y,
		   uint32_t m)
{
	struct q8_job j = {
		.w = &s->w, .fn = rows_fn(), .x = { .q = xq, .d = xd }, .y = y, .m = m, .parts = 1
	};
	uint32_t max_parts = s->w.n_out / MIN_TASK_ROWS;

	if (s->runner.run && max_parts > 1)
		j.parts = s->runner.n_workers < max_parts ? s->runner.n_workers : max_parts;
	if (j.parts > 1)
		s->runner.run(s->runner.ctx, j.parts, q8_task, &j);
	else
		q8_task(&j, 0);
}

/*
 * The quantized activations live on the stack (decode: no allocation per token) or, for a
 * batch that does not fit, on the heap; if that allocation fails the batch goes through the
 * stack buffer in chunks of tokens (same results: outputs do not depend on the batch).
 */
static void q8_forward(const struct linear *l, const float *x, float *y, uint32_t m)
{
	const struct q8_linear *s = l->impl;
	uint32_t n_in = s->w.n_in, nb = n_in / Q8_BLOCK, per = Q8_MAX_IN / n_in;
	_Alignas(32) int16_t sq[Q8_MAX_IN];
	float sd[Q8_MAX_IN / Q8_BLOCK];
	int16_t *hq = NULL;
	float *hd = NULL;

	if (m > per) {
		hq = malloc((size_t)m * n_in * sizeof(*hq));
		hd = malloc((size_t)m * nb * sizeof(float));
		if (hq && hd)
			per = m;
	}
	for (uint32_t t = 0; t < m; t += per) {
		uint32_t n = m - t < per ? m - t : per;
		int16_t *xq = per == m && hq ? hq : sq;
		float *xd = per == m && hd ? hd : sd;

		q8_quantize_acts(x + (size_t)t * n_in, n, n_in, xq, xd);
		q8_run(s, xq, xd, y + (size_t)t * s->w.n_out, n);
	}
	free(hq);
	free(hd);
}

static void q8_done(struct linear *l)
{
	struct q8_linear *s = l->impl;

	if (s) {
		free(s->q);
		free(s->d);
	}
	free(s);
}

/* Every block's values times its scale: what the GGUF blocks dequantize to. */
static void q8_to_f32(const struct linear *l, float *dst)
{
	const struct q8_weight *w = &((const struct q8_linear *)l->impl)->w;
	uint32_t nb = w->n_in / Q8_BLOCK;

	for (uint32_t r = 0; r < w->n_out; r++)
		for (uint32_t b = 0; b < nb; b++) {
			uint64_t at = q8_block_index(w, r, b);
			float *o = dst + (size_t)r * w->n_in + (size_t)b * Q8_BLOCK;
			int8_t v[Q8_BLOCK];

			q8_block_values(w, at, v);
			for (uint32_t j = 0; j < Q8_BLOCK; j++)
				o[j] = w->d[at] * v[j];
		}
}

static const struct linear_ops q8_ops = {
	.name = "q8_0",
	.forward = q8_forward,
	.done = q8_done,
	.to_f32 = q8_to_f32,
};

static const struct linear_ops q5_ops = {
	.name = "q5_0",
	.forward = q8_forward,
	.done = q8_done,
	.to_f32 = q8_to_f32,
};

/*
 * Split the GGUF blocks (row-major) into the tiled value and scale arrays (engine/linear_q8.h;
 * the padding rows were zeroed by the caller). -EBADMSG on a scale that is not finite.
 */
static int repack(struct q8_linear *s, const uint8_t *src)
{
	uint32_t nb = s->w.n_in / Q8_BLOCK, qb = s->w.qbytes;

	for (uint32_t r = 0; r < s->w.n_out; r++) {
		for (uint32_t b = 0; b < nb; b++, src += GGUF_BLOCK_BYTES(qb)) {
			uint64_t at = q8_block_index(&s->w, r, b);
			float d = dtype_f16_to_f32((uint16_t)(src[0] | src[1] << 8));

			if (!isfinite(d))
				return -EBADMSG;
			s->d[at] = d;
			memcpy(s->q + at * qb, src + 2, qb);
		}
	}
	return 0;
}

static int init_blocks(struct linear *l, const void *blocks, uint64_t n_bytes, uint32_t n_out,
		       uint32_t n_in, const struct lut_runner *runner, uint32_t qbytes)
{
	struct q8_linear *s;
	uint64_t n_blocks, n_tiles, n_pad_blocks, n_q, want;
	int ret;

	if (!l || !blocks || !n_out || !n_in || n_in % Q8_BLOCK || n_in > Q8_MAX_IN ||
	    (runner && runner->run && !runner->n_workers))
		return -EINVAL;
	/* n_out < 2^32 and n_in / 32 < 2^27: the block counts fit, the byte counts are checked */
	n_blocks = (uint64_t)n_out * (n_in / Q8_BLOCK);
	n_tiles = ((uint64_t)n_out + Q8_TILE_ROWS - 1) / Q8_TILE_ROWS;
	n_pad_blocks = n_tiles * Q8_TILE_ROWS * (n_in / Q8_BLOCK);
	if (__builtin_mul_overflow(n_blocks, (uint64_t)GGUF_BLOCK_BYTES(qbytes), &want) ||
	    n_bytes != want || __builtin_mul_overflow(n_pad_blocks, (uint64_t)qbytes, &n_q) ||
	    n_q > SIZE_MAX / 2)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	/* whole cache lines: aligned_alloc wants a multiple of the alignment */
	s->q = aligned_alloc(64, (n_q + 63) & ~(uint64_t)63);
	s->d = calloc(n_pad_blocks, sizeof(float));
	if (!s->q || !s->d) {
		ret = -ENOMEM;
		goto out_free;
	}
	/* the padding rows of the last tile (Q5_0's zero bytes are values of -16, times d = 0) */
	memset(s->q + (n_q - (uint64_t)Q8_TILE_ROWS * (n_in / Q8_BLOCK) * qbytes), 0,
	       (uint64_t)Q8_TILE_ROWS * (n_in / Q8_BLOCK) * qbytes);
	s->w = (struct q8_weight){
		.q = s->q, .d = s->d, .n_out = n_out, .n_in = n_in, .qbytes = qbytes
	};
	ret = repack(s, blocks);
	if (ret < 0)
		goto out_free;
	if (runner && runner->run && runner->n_workers > 1)
		s->runner = *runner;
	l->ops = qbytes == Q8_QBYTES ? &q8_ops : &q5_ops;
	l->n_out = n_out;
	l->n_in = n_in;
	l->bias = NULL;
	l->impl = s;
	return 0;

out_free:
	free(s->q);
	free(s->d);
	free(s);
	return ret;
}

int linear_init_q8_0(struct linear *l, const void *blocks, uint64_t n_bytes, uint32_t n_out,
		     uint32_t n_in, const struct lut_runner *runner)
{
	return init_blocks(l, blocks, n_bytes, n_out, n_in, runner, Q8_QBYTES);
}

int linear_init_q5_0(struct linear *l, const void *blocks, uint64_t n_bytes, uint32_t n_out,
		     uint32_t n_in, const struct lut_runner *runner)
{
	return init_blocks(l, blocks, n_bytes, n_out, n_in, runner, Q5_QBYTES);
}
