/* SPDX-License-Identifier: MIT */
#ifndef ENGINE_LINEAR_Q8_H
#define ENGINE_LINEAR_Q8_H

/*
 * Internal to the engine: the Q8_0 linear backend's weight and activation layouts and its
 * per-ISA row kernels (engine/linear_q8.c holds the scalar one, engine/x86/linear_q8_avx2.c
 * and engine/x86/linear_q8_vnni.c the vector ones). The public entry points are in
 * engine/linear.h.
 *
 * A row's blocks of 32 values are cut in groups of Q8_GROUP blocks (the last group of a row
 * may hold 2). A group is read in Q8_KSTEPS steps of 8 x width bytes; in step k, 4-byte lane
 * l < width holds values 4k..4k+3 of the group's block l, lane width + l values 16 + 4k..
 * 16 + 4k + 3 of block l. So after the 4 steps lane l has summed one half block: one
 * vpdpbusd per step gives eight half-block sums of 16 int8 products at once, and their
 * scales multiply once per group instead of once per block.
 */

#include <stdbool.h>
#include <stdint.h>

/* Values per Q8_0 block (one weight scale each). */
#define Q8_BLOCK 32

/* Blocks per group, steps per group and bytes of a full group's step. */
#define Q8_GROUP  4
#define Q8_KSTEPS 4
#define Q8_STEP	  32

/* Longest row (n_in): one token's quantized activations fit a stack buffer. */
#define Q8_MAX_IN 16384

/* Rows interleaved group by group (a row tile). */
#define Q8_TILE_ROWS 4

/*
 * Stored bytes of a block's 32 values. Q8_0: the int8 values plus 128, as bytes, in step
 * order. Q5_0: per step of 8 x width values v_j, 4 x width bytes of nibbles (byte j holds
 * v_j in its low and v_(j + 4 width) in its high nibble), then width bytes of fifth bits
 * (bit j of the little-endian word belongs to v_j); the value is the 5-bit number plus 112
 * (= q - 16 + 128). Either way a step decodes to w + 128 in [0, 255].
 */
#define Q8_QBYTES 32
#define Q5_QBYTES 20

/*
 * The GGUF blocks repacked: rows in tiles of Q8_TILE_ROWS; within a tile, group by group,
 * each row's group (width x qbytes bytes) one after the other, so that a pass over a tile
 * reads one sequential stream. The f16 scales are widened (exactly) to f32 in an array of
 * the same order: [tile][group][row][width]. n_blocks is n_in / 32 rounded up to even: an
 * odd row gets a zero block (zero values, zero scale) so that every group is 2 or 4 wide.
 * Rows past n_out in the last tile are zero.
 */
struct q8_weight {
	const uint8_t *q;
	const float *d;
	uint32_t n_out;
	uint32_t n_in;	   /* a multiple of Q8_BLOCK */
	uint32_t n_blocks; /* padded to even */
	uint32_t qbytes;   /* Q8_QBYTES or Q5_QBYTES: which format q holds */
	bool has_int8_min; /* a Q8_0 value of -128 (kernels that negate weights must not) */
};

/* Groups in a row of @n_blocks (q8_weight.n_blocks; a constant expression for constants). */
#define Q8_GROUPS(n_blocks) (((n_blocks) + Q8_GROUP - 1) / Q8_GROUP)

/* Blocks in group @g of a row of @n_blocks: Q8_GROUP, or 2 for a short last group. */
static inline uint32_t q8_width_in(uint32_t n_blocks, uint32_t g)
{
	uint32_t left = n_blocks - g * Q8_GROUP;

	return left < Q8_GROUP ? left : Q8_GROUP;
}

static inline uint32_t q8_group_width(const struct q8_weight *w, uint32_t g)
{
	return q8_width_in(w->n_blocks, g);
}

static inline uint32_t q8_n_groups(const struct q8_weight *w)
{
	return Q8_GROUPS(w->n_blocks);
}

/* Where row @r's group @g starts, counted in blocks: times qbytes into q, one scale each in d. */
static inline uint64_t q8_group_index(const struct q8_weight *w, uint32_t r, uint32_t g)
{
	return (uint64_t)(r / Q8_TILE_ROWS) * Q8_TILE_ROWS * w->n_blocks +
	       (uint64_t)g * Q8_GROUP * Q8_TILE_ROWS +
	       (uint64_t)(r % Q8_TILE_ROWS) * q8_group_width(w, g);
}

/* Row @r's group @g: its width bytes x qbytes of values and its width scales. */
static inline const uint8_t *q8_group_q(const struct q8_weight *w, uint32_t r, uint32_t g)
{
	return w->q + q8_group_index(w, r, g) * w->qbytes;
}

static inline const float *q8_group_d(const struct q8_weight *w, uint32_t r, uint32_t g)
{
	return w->d + q8_group_index(w, r, g);
}

/* Step @k of a group of @width blocks at @p (q8_group_q()) as 8 x width bytes w + 128. */
static inline void q8_step_values(const uint8_t *p, uint32_t qbytes, uint32_t width, uint32_t k,
				  uint8_t *v)
{
	uint32_t n = 8 * width;

	if (qbytes == Q8_QBYTES) {
		for (uint32_t j = 0; j < n; j++)
			v[j] = p[k * n + j];
		return;
	}
	p += k * (n / 2 + width);
	for (uint32_t j = 0; j < n; j++) {
		uint32_t nib = j < n / 2 ? p[j] & 0xfu : p[j - n / 2] >> 4;
		uint32_t hi = (p[n / 2 + j / 8] >> (j % 8)) & 1;

		v[j] = (uint8_t)((nib | hi << 4) + 112);
	}
}

/*
 * Activations quantized per token and per half block of 16 values, laid out group-major so
 * that a kernel finds the tokens of a tile at constant offsets: q holds, group by group,
 * each token's 4 steps of 8 x width int8 (step k of token t of group g at
 * (m * g * 4 + t * width) * 32 + k * 8 x width); d and c hold per group and token 8 lanes
 * at (g * m + t) * 8: for lane l < 2 x width the scale max |x| / 127 and -128 x the sum of
 * the lane's 16 int8 (so that the sums of (w + 128) x come out as sums of w x). A lane of
 * padding holds zeros. (Halves, not blocks of 32, because the final hidden state's outlier
 * channels flatten the rest of their block: on SmolLM2, 8-bit per 32 moved WikiText-2
 * perplexity by +0.063%, per 16 by +0.022%; the layout gives the half-block scale for
 * free.)
 */
struct q8_acts {
	const int8_t *q;
	const float *d;
	const int32_t *c;
};

/* Bytes of one token's activations: q (32 per block), then d and c (8 lanes per group each). */
#define Q8_ACT_BYTES(n_blocks) ((size_t)(n_blocks)*Q8_BLOCK + (size_t)Q8_GROUPS(n_blocks) * 8 * 8)

/*
 * Quantize @m rows of @n_in activations into @q, @d, @c (struct q8_acts; the layout depends
 * on @m) for @n_blocks (q8_weight.n_blocks). A non-finite activation makes its lane's scale
 * NaN, so every output it touches is NaN, as in f32.
 */
void q8_quantize_acts(const float *x, uint32_t m, uint32_t n_in, uint32_t n_blocks, int8_t *q,
		      float *d, int32_t *c);

/*
 * y[t][r] for rows r0 <= r < r1 (r0 a multiple of Q8_TILE_ROWS) and tokens t < m (y rows
 * n_out long): eight f32 lanes start at 0; per group, lane l adds the exact integer
 * c[l] + sum of its 16 (w + 128) x products (|sum| < 2^24) times (dw of the lane's block x
 * d[l]) by one fused multiply-add (a short group's lanes 4..7, with no values, add 0 x 0);
 * the lanes are summed as q8_lanes_sum() has it. Every kernel does exactly this, so results
 * do not depend on the ISA, the split of rows over workers or the batch size.
 */
typedef void (*q8_rows_fn)(const struct q8_weight *w, uint32_t r0, uint32_t r1,
			   const struct q8_acts *x, uint32_t m, float *y);

void q8_rows_ref(const struct q8_weight *w, uint32_t r0, uint32_t r1, const struct q8_acts *x,
		 uint32_t m, float *y);
void q8_rows_avx2(const struct q8_weight *w, uint32_t r0, uint32_t r1, const struct q8_acts *x,
		  uint32_t m, float *y);
void q8_rows_vnni(const struct q8_weight *w, uint32_t r0, uint32_t r1, const struct q8_acts *x,
		  uint32_t m, float *y);

/* The lanes' final sum, shared by the kernels so that they agree bit for bit. */
static inline float q8_lanes_sum(const float l[8])
{
	return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

#endif /* ENGINE_LINEAR_Q8_H */
