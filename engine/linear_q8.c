// SPDX-License-Identifier: MIT
/*
 * Q8_0 (and Q5_0) linear backend: weights stay 8-bit (GGUF Q8_0: per 32 values one f16 scale
 * and 32 int8) or 5-bit (GGUF Q5_0: the scale and 32 values in [-16, 15] as nibbles plus a
 * word of fifth bits). Built for the LM head: SmolLM2's tied embedding is 49152 x 576, the
 * largest matrix of the model, and every decoded token reads all of it; as Q8_0 that is
 * 30 MB per token instead of 113 MB of f32, as Q5_0 21 MB (decode reads it at memory speed).
 *
 * Activations are quantized to int8 per half block of 16 (engine/linear_q8.h), so each
 * half block's dot product is an exact integer sum (one vpdpbusd step gives eight of them).
 * The f32 version (widen each weight to f32, one FMA per value) was compute-bound at a fifth
 * of SmolLM2's decode time; int16 activations with vpmaddwd (sessions 4-21) were bound by the
 * vector multiplies at 16 tokens: SmolLM2's head on 1 thread, 16 tokens, 10.9 -> 5.6 ms.
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
	uint32_t ng = q8_n_groups(w);

	for (uint32_t t = 0; t < m; t++) {
		for (uint32_t r = r0; r < r1; r++) {
			float lane[8] = { 0 };

			for (uint32_t g = 0; g < ng; g++) {
				uint32_t width = q8_group_width(w, g), n = 8 * width;
				const int8_t *xg =
					x->q +
					((size_t)m * g * Q8_GROUP + (size_t)t * width) * Q8_BLOCK;
				const float *dx = x->d + ((size_t)g * m + t) * 8;
				const int32_t *cx = x->c + ((size_t)g * m + t) * 8;
				const float *dw = q8_group_d(w, r, g);
				int32_t isum[8] = { 0 };

				for (uint32_t k = 0; k < Q8_KSTEPS; k++) {
					const int8_t *xk = xg + (size_t)k * n;
					uint8_t u[Q8_STEP];

					q8_step_values(q8_group_q(w, r, g), w->qbytes, width, k, u);
					for (uint32_t j = 0; j < n; j++)
						isum[j / 4] += u[j] * xk[j];
				}
				/* a short group's lanes 2 width.. add 0 x 0 */
				for (uint32_t l = 0; l < 8; l++)
					lane[l] = fmaf((float)(isum[l] + cx[l]),
						       dw[l % width] * dx[l], lane[l]);
			}
			y[(size_t)t * w->n_out + r] = q8_lanes_sum(lane);
		}
	}
}

/* Token @x's lane @l of group @g (@width blocks): its 16 values, their scale, correction. */
static void quantize_lane(const float *x, uint32_t nb, uint32_t g, uint32_t width, uint32_t l,
			  int8_t *q, uint32_t step, float *d, int32_t *c)
{
	uint32_t b = g * Q8_GROUP + l % width;
	const float *xl = x + (size_t)b * Q8_BLOCK + (l < width ? 0 : 16);
	float amax = 0, id;
	bool finite = true;
	int32_t sum = 0;

	for (uint32_t v = 0; b < nb && v < 16; v++) {
		amax = fmaxf(amax, fabsf(xl[v]));
		finite &= isfinite(xl[v]);
	}
	/* a NaN or infinite activation makes every output it touches NaN */
	*d = finite ? amax / 127 : NAN;
	id = finite && amax > 0 ? 127 / amax : 0;
	for (uint32_t k = 0; k < Q8_KSTEPS; k++)
		for (uint32_t i = 0; i < 4; i++) {
			int8_t v = b < nb ? (int8_t)lrintf(xl[4 * k + i] * id) : 0;

			q[(size_t)k * step + 4 * l + i] = v;
			sum += v;
		}
	*c = -128 * sum;
}

void q8_quantize_acts(const float *x, uint32_t m, uint32_t n_in, uint32_t n_blocks, int8_t *q,
		      float *d, int32_t *c)
{
	for (uint32_t g = 0; g < Q8_GROUPS(n_blocks); g++) {
		uint32_t width = q8_width_in(n_blocks, g), n = 8 * width;

		for (uint32_t t = 0; t < m; t++) {
			int8_t *qt = q + ((size_t)m * g * Q8_GROUP + (size_t)t * width) * Q8_BLOCK;
			size_t at = ((size_t)g * m + t) * 8;

			for (uint32_t l = 0; l < 8; l++) {
				d[at + l] = 0;
				c[at + l] = 0;
			}
			for (uint32_t l = 0; l < 2 * width; l++)
				quantize_lane(x + (size_t)t * n_in, n_in / Q8_BLOCK, g, width, l,
					      qt, n, d + at + l, c + at + l);
		}
	}
}

/* The kernel the forwards use; NULL until the first forward or linear_q8_select_isa(). */
static _Atomic(q8_rows_fn) selected;

/* lut_isa_supported() has checked the OS's AVX-512 state; these are the extra CPU bits. */
static bool host_vnni(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
#else
	return false;
#endif
}

static q8_rows_fn rows_fn_of(enum lut_isa isa)
{
	if (isa == LUT_ISA_AUTO)
		isa = lut_isa_auto();
	/* vpdpbusd on ymm needs AVX512_VNNI and AVX512VL; other AVX-512 hosts run AVX2 */
	if (isa == LUT_ISA_AVX512 && lut_isa_supported(LUT_ISA_AVX512) && host_vnni())
		return q8_rows_vnni;
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

/* @m tokens whose activations are already quantized into @x, over the rows' workers. */
static void q8_run(const struct q8_linear *s, const struct q8_acts *x, float *y, uint32_t m)
{
	struct q8_job j = { .w = &s->w, .fn = rows_fn(), .x = *x, .y = y, .m = m, .parts = 1 };
	uint32_t max_parts = s->w.n_out / MIN_TASK_ROWS;

	if (s->runner.run && max_parts > 1)
		j.parts = s->runner.n_workers < max_parts ? s->runner.n_workers : max_parts;
	if (j.parts > 1)
		s->runner.run(s->runner.ctx, j.parts, q8_task, &j);
	else
		q8_task(&j, 0);
}

/*
 * Quantize @n tokens of @x into @buf (64-byte aligned, Q8_ACT_BYTES(@n_blocks) per token)
 * and return them as the kernels read them.
 */
static struct q8_acts quantize_into(uint8_t *buf, const float *x, uint32_t n, uint32_t n_in,
				    uint32_t n_blocks)
{
	size_t nq = (size_t)n * n_blocks * Q8_BLOCK;
	size_t nd = (size_t)n * Q8_GROUPS(n_blocks) * 8;
	int8_t *q = (int8_t *)buf;
	float *d = (float *)(buf + nq);
	int32_t *c = (int32_t *)(buf + nq + nd * sizeof(float));

	q8_quantize_acts(x, n, n_in, n_blocks, q, d, c);
	return (struct q8_acts){ .q = q, .d = d, .c = c };
}

/*
 * The quantized activations live on the stack (decode: no allocation per token) or, for a
 * batch that does not fit, on the heap; if that allocation fails the batch goes through the
 * stack buffer in chunks of tokens (same results: outputs do not depend on the batch).
 */
static void q8_forward(const struct linear *l, const float *x, float *y, uint32_t m)
{
	const struct q8_linear *s = l->impl;
	uint32_t n_in = s->w.n_in, nb = s->w.n_blocks;
	_Alignas(64) uint8_t stack[Q8_ACT_BYTES(Q8_MAX_IN / Q8_BLOCK)];
	uint32_t per = (uint32_t)(sizeof(stack) / Q8_ACT_BYTES(nb));
	uint8_t *heap = NULL;

	if (m > per) {
		heap = aligned_alloc(64, (Q8_ACT_BYTES(nb) * m + 63) & ~(size_t)63);
		if (heap)
			per = m;
	}
	for (uint32_t t = 0; t < m; t += per) {
		uint32_t n = m - t < per ? m - t : per;
		struct q8_acts a = quantize_into(per == m && heap ? heap : stack,
						 x + (size_t)t * n_in, n, n_in, nb);

		q8_run(s, &a, y + (size_t)t * s->w.n_out, n);
	}
	free(heap);
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

/* Row @r's block @b (< n_in / 32) as its 32 int8 values, from the steps it is spread over. */
static void block_values(const struct q8_weight *w, uint32_t r, uint32_t b, int8_t v[Q8_BLOCK])
{
	uint32_t g = b / Q8_GROUP, j = b % Q8_GROUP, width = q8_group_width(w, g);

	for (uint32_t k = 0; k < Q8_KSTEPS; k++) {
		uint8_t u[Q8_STEP];

		q8_step_values(q8_group_q(w, r, g), w->qbytes, width, k, u);
		for (uint32_t i = 0; i < 4; i++) {
			v[4 * k + i] = (int8_t)(u[4 * j + i] - 128);
			v[16 + 4 * k + i] = (int8_t)(u[4 * (width + j) + i] - 128);
		}
	}
}

/* Every block's values times its scale: what the GGUF blocks dequantize to. */
static void q8_to_f32(const struct linear *l, float *dst)
{
	const struct q8_weight *w = &((const struct q8_linear *)l->impl)->w;

	for (uint32_t r = 0; r < w->n_out; r++)
		for (uint32_t b = 0; b < w->n_in / Q8_BLOCK; b++) {
			float d = q8_group_d(w, r, b / Q8_GROUP)[b % Q8_GROUP];
			float *o = dst + (size_t)r * w->n_in + (size_t)b * Q8_BLOCK;
			int8_t v[Q8_BLOCK];

			block_values(w, r, b, v);
			for (uint32_t j = 0; j < Q8_BLOCK; j++)
				o[j] = d * v[j];
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
 * Put value @v (0..31) of block @j of a group of @width blocks at @gq (q8_group_q(), starting
 * zeroed), as the 5-bit (Q5_0) or 8-bit (Q8_0, int8 + 128) number @u, where the step layout
 * wants it (engine/linear_q8.h).
 */
static void put_value(uint8_t *gq, uint32_t qbytes, uint32_t width, uint32_t j, uint32_t v,
		      uint32_t u)
{
	uint32_t n = 8 * width, k = v % 16 / 4, p = 4 * ((v / 16) * width + j) + v % 4;

	if (qbytes == Q8_QBYTES) {
		gq[k * n + p] = (uint8_t)u;
		return;
	}
	gq += k * (n / 2 + width);
	gq[p % (n / 2)] |= (uint8_t)((u & 0xfu) << (p < n / 2 ? 0 : 4));
	gq[n / 2 + p / 8] |= (uint8_t)((u >> 4) << (p % 8));
}

/*
 * Spread the GGUF blocks (row-major) over the tiled value and scale arrays (engine/
 * linear_q8.h; both start zeroed, which the padding keeps). -EBADMSG on a scale that is not
 * finite.
 */
static int repack(struct q8_linear *s, const uint8_t *src)
{
	uint32_t nb = s->w.n_in / Q8_BLOCK, qb = s->w.qbytes;

	for (uint32_t r = 0; r < s->w.n_out; r++) {
		for (uint32_t b = 0; b < nb; b++, src += GGUF_BLOCK_BYTES(qb)) {
			float d = dtype_f16_to_f32((uint16_t)(src[0] | src[1] << 8));
			const uint8_t *vals = src + 2;
			/* GGUF Q5_0: 4 bytes of fifth bits, then nibbles j | j + 16 */
			uint32_t qh = (uint32_t)vals[0] | (uint32_t)vals[1] << 8 |
				      (uint32_t)vals[2] << 16 | (uint32_t)vals[3] << 24;
			uint32_t g = b / Q8_GROUP, width = q8_group_width(&s->w, g);
			uint64_t gi = q8_group_index(&s->w, r, g); /* q8_group_d(), q8_group_q() */

			if (!isfinite(d))
				return -EBADMSG;
			s->d[gi + b % Q8_GROUP] = d;
			for (uint32_t v = 0; v < Q8_BLOCK; v++) {
				uint32_t u;

				if (qb == Q8_QBYTES) {
					u = (uint8_t)((int8_t)vals[v] + 128);
					s->w.has_int8_min |= u == 0;
				} else {
					u = (vals[4 + v % 16] >> (v < 16 ? 0 : 4) & 0xfu) |
					    ((qh >> v) & 1) << 4;
				}
				put_value(s->q + gi * qb, qb, width, b % Q8_GROUP, v, u);
			}
		}
	}
	return 0;
}

static int init_blocks(struct linear *l, const void *blocks, uint64_t n_bytes, uint32_t n_out,
		       uint32_t n_in, const struct lut_runner *runner, uint32_t qbytes)
{
	struct q8_linear *s;
	uint64_t n_blocks, n_tiles, n_pad_blocks, n_q, want;
	uint32_t row_blocks;
	int ret;

	if (!l || !blocks || !n_out || !n_in || n_in % Q8_BLOCK || n_in > Q8_MAX_IN ||
	    (runner && runner->run && !runner->n_workers))
		return -EINVAL;
	/* n_out < 2^32 and n_in / 32 < 2^27: the block counts fit, the byte counts are checked */
	n_blocks = (uint64_t)n_out * (n_in / Q8_BLOCK);
	row_blocks = (n_in / Q8_BLOCK + 1) & ~1u;
	n_tiles = ((uint64_t)n_out + Q8_TILE_ROWS - 1) / Q8_TILE_ROWS;
	n_pad_blocks = n_tiles * Q8_TILE_ROWS * row_blocks;
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
	memset(s->q, 0, n_q);
	s->w = (struct q8_weight){ .q = s->q,
				   .d = s->d,
				   .n_out = n_out,
				   .n_in = n_in,
				   .n_blocks = row_blocks,
				   .qbytes = qbytes };
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
