// SPDX-License-Identifier: MIT
/*
 * Element types with GGML's on-disk numbering and their dequantizers. Block layouts follow the
 * GGUF format description (little-endian, packed, no alignment promised): every load goes
 * through memcpy so a tensor inside an unaligned buffer is fine.
 */
#include "engine/dtype.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#define QK   32	 /* elements per block of the legacy formats */
#define QK_K 256 /* elements per super-block of the k-quants */

float dtype_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f;
	uint32_t mant = h & 0x3ff;
	uint32_t bits;
	float f;

	if (exp == 0x1f) {
		bits = sign | 0x7f800000 | (mant << 13); /* inf or NaN, payload kept */
	} else if (exp != 0) {
		bits = sign | ((exp + 112) << 23) | (mant << 13);
	} else if (mant == 0) {
		bits = sign;
	} else {
		/* subnormal half: mant * 2^-24 is exact in f32 */
		f = (float)mant * 0x1p-24f;
		memcpy(&bits, &f, sizeof(bits));
		bits |= sign;
	}
	memcpy(&f, &bits, sizeof(f));
	return f;
}

uint16_t dtype_f32_to_f16(float f)
{
	uint32_t x, sign, absx, mant, half;
	int32_t exp;

	memcpy(&x, &f, sizeof(x));
	sign = (x >> 16) & 0x8000;
	absx = x & 0x7fffffff;
	if (absx > 0x7f800000) /* NaN: keep it quiet and non-zero */
		return (uint16_t)(sign | 0x7e00 | ((absx >> 13) & 0x3ff));
	if (absx >= 0x477ff000) /* rounds to >= 65520: infinity */
		return (uint16_t)(sign | 0x7c00);
	exp = (int32_t)(absx >> 23) - 127;
	if (exp < -25) /* below half the smallest subnormal: zero */
		return (uint16_t)sign;
	if (exp < -14) {
		/* subnormal result: shift the full mantissa (implicit bit set) into place */
		uint32_t shift = (uint32_t)(-exp - 14 + 13);
		uint32_t m = (absx & 0x7fffff) | 0x800000;
		uint32_t rem, halfway;

		half = m >> shift;
		rem = m & ((1u << shift) - 1);
		halfway = 1u << (shift - 1);
		if (rem > halfway || (rem == halfway && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	/* normal: rebias, then round the 13 dropped bits to nearest even; a carry may bump exp */
	mant = absx & 0x7fffff;
	half = ((uint32_t)(exp + 15) << 10) | (mant >> 13);
	if ((mant & 0x1fff) > 0x1000 || ((mant & 0x1fff) == 0x1000 && (half & 1)))
		half++;
	return (uint16_t)(sign | half);
}

float dtype_bf16_to_f32(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;

	memcpy(&f, &bits, sizeof(f));
	return f;
}

uint16_t dtype_f32_to_bf16(float f)
{
	uint32_t x;

	memcpy(&x, &f, sizeof(x));
	if ((x & 0x7fffffff) > 0x7f800000) /* NaN: force a mantissa bit so it stays NaN */
		return (uint16_t)((x >> 16) | 0x40);
	x += 0x7fff + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

static inline float ld_f16(const uint8_t *p)
{
	return dtype_f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

static inline uint32_t ld_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static void f32_to_f32(const void *src, float *dst, size_t n)
{
	memcpy(dst, src, n * sizeof(float));
}

static void f16_to_f32(const void *src, float *dst, size_t n)
{
	const uint8_t *s = src;

	for (size_t i = 0; i < n; i++)
		dst[i] = ld_f16(s + 2 * i);
}

static void bf16_to_f32(const void *src, float *dst, size_t n)
{
	const uint8_t *s = src;

	for (size_t i = 0; i < n; i++)
		dst[i] = dtype_bf16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
}

/*
 * Plain little-endian numbers of C type @type, loaded unaligned and converted to float. One
 * body for every width, so the element size always follows the type.
 */
#define DEFINE_NUM_TO_F32(name, type)                             \
	static void name(const void *src, float *dst, size_t n)   \
	{                                                         \
		const uint8_t *s = src;                           \
		type v;                                           \
                                                                  \
		for (size_t i = 0; i < n; i++) {                  \
			memcpy(&v, s + sizeof(v) * i, sizeof(v)); \
			dst[i] = (float)v;                        \
		}                                                 \
	}

DEFINE_NUM_TO_F32(f64_to_f32, double)
DEFINE_NUM_TO_F32(i8_to_f32, int8_t)
DEFINE_NUM_TO_F32(i16_to_f32, int16_t)
DEFINE_NUM_TO_F32(i32_to_f32, int32_t)
DEFINE_NUM_TO_F32(i64_to_f32, int64_t)

/* Q4_0: f16 d, 16 bytes of nibbles; element j is the low nibble of byte j, j+16 the high. */
static void q4_0_to_f32(const void *src, float *dst, size_t n)
{
	const uint8_t *b = src;

	for (size_t blk = 0; blk < n / QK; blk++, b += 18, dst += QK) {
		float d = ld_f16(b);

		for (int j = 0; j < QK / 2; j++) {
			dst[j] = d * (float)((b[2 + j] & 0xf) - 8);
			dst[j + QK / 2] = d * (float)((b[2 + j] >> 4) - 8);
		}
	}
}

/* Q4_1: f16 d, f16 min, nibbles as Q4_0 but unsigned: value = d * q + min. */
static void q4_1_to_f32(const void *src, float *dst, size_t n)
{
	const uint8_t *b = src;

	for (size_t blk = 0; blk < n / QK; blk++, b += 20, dst += QK) {
		float d = ld_f16(b), m = ld_f16(b + 2);

		for (int j = 0; j < QK / 2; j++) {
			dst[j] = d * (float)(b[4 + j] & 0xf) + m;
			dst[j + QK / 2] = d * (float)(b[4 + j] >> 4) + m;
		}
	}
}

/* Q5_0: f16 d, 32 high bits (bit j belongs to element j), nibbles as Q4_0; value d * (q - 16). */
static void q5_0_to_f32(const void *src, float *dst, size_t n)
{
	const uint8_t *b = src;

	for (size_t blk = 0; blk < n / QK; blk++, b += 22, dst += QK) {
		float d = ld_f16(b);
		uint32_t qh = ld_u32(b + 2);

		for (int j = 0; j < QK / 2; j++) {
			int lo = (b[6 + j] & 0xf) | (int)(((qh >> j) & 1) << 4);
			int hi = (b[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);

			dst[j] = d * (float)(lo - 16);
			dst[j + QK / 2] = d * (float)(hi - 16);
		}
	}
}

int dtype_quantize_q5_0(const float *x, void *dst, size_t n)
{
	uint8_t *b = dst;

	if (n % QK)
		return -EINVAL;
	for (size_t blk = 0; blk < n / QK; blk++, x += QK, b += 22) {
		float v = 0, d, id;
		uint32_t qh = 0;
		uint16_t h;

		for (int j = 0; j < QK; j++) {
			if (!isfinite(x[j]))
				return -EINVAL;
			v = fabsf(x[j]) > fabsf(v) ? x[j] : v;
		}
		/* the value of largest magnitude maps to q = 0 exactly (-16 d), as in llama.cpp */
		h = dtype_f32_to_f16(v / -16);
		d = dtype_f16_to_f32(h);
		if (!isfinite(d))
			return -ERANGE;
		id = d != 0 ? 1 / d : 0;
		b[0] = (uint8_t)h;
		b[1] = (uint8_t)(h >> 8);
		memset(b + 6, 0, QK / 2);
		for (int j = 0; j < QK; j++) {
			long q = lrintf(x[j] * id) + 16;

			q = q < 0 ? 0 : q > 31 ? 31 : q;
			b[6 + j % (QK / 2)] |= (uint8_t)((q & 0xf) << (j < QK / 2 ? 0 : 4));
			qh |= (uint32_t)(q >> 4) << j;
		}
		for (int k = 0; k < 4; k++)
			b[2 + k] = (uint8_t)(qh >> 8 * k);
	}
	return 0;
}

/* Q5_1: f16 d, f16 min, 32 high bits, nibbles; value d * q + min. */
static void q5_1_to_f32(const void *src, float *dst, size_t n)
{
	const uint8_t *b = src;

	for (size_t blk = 0; blk < n / QK; blk++, b += 24, dst += QK) {
		float d = ld_f16(b), m = ld_f16(b + 2);
		uint32_t qh = ld_u32(b + 4);

		for (int j = 0; j < QK / 2; j++) {
			int lo = (b[8 + j] & 0xf) | (int)(((qh >> j) & 1) << 4);
			int hi = (b[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);

			dst[j] = d * (float)lo + m;
			dst[j + QK / 2] = d * (float)hi + m;
		}
	}
}

/* Q8 blocks of @block_bytes: f16 d, then 32 signed bytes from @q_off; value d * q. */
static void q8_blocks_to_f32(const uint8_t *b, float *dst, size_t n, size_t block_bytes,
			     size_t q_off)
{
	for (size_t blk = 0; blk < n / QK; blk++, b += block_bytes, dst += QK) {
		float d = ld_f16(b);

		for (int j = 0; j < QK; j++)
			dst[j] = d * (float)(int8_t)b[q_off + j];
	}
}

/* Q8_0: f16 d, 32 signed bytes. */
static void q8_0_to_f32(const void *src, float *dst, size_t n)
{
	q8_blocks_to_f32(src, dst, n, 34, 2);
}

/* Q8_1: f16 d, f16 sum (unused here), 32 signed bytes. */
static void q8_1_to_f32(const void *src, float *dst, size_t n)
{
	q8_blocks_to_f32(src, dst, n, 36, 4);
}

/*
 * Q2_K: 16 scale bytes (low nibble scale, high nibble min, one per 16 elements), 64 bytes of
 * 2-bit values, f16 d, f16 dmin. Each 128-element half reads 32 bytes four times at shifts
 * 0, 2, 4, 6; each pass covers two 16-element sub-blocks.
 */
static void q2_k_to_f32(const void *src, float *dst, size_t n)
{
	const uint8_t *b = src;

	for (size_t blk = 0; blk < n / QK_K; blk++, b += 84) {
		const uint8_t *sc = b, *q = b + 16;
		float d = ld_f16(b + 80), dmin = ld_f16(b + 82);
		int is = 0;

		for (int half = 0; half < 2; half++, q += 32) {
			for (int shift = 0; shift < 8; shift += 2) {
				for (int k = 0; k < 2; k++, is++) {
					float dl = d * (float)(sc[is] & 0xf);
					float ml = dmin * (float)(sc[is] >> 4);

					for (int l = 0; l < 16; l++)
						*dst++ =
							dl * (float)((q[16 * k + l] >> shift) & 3) -
							ml;
				}
			}
		}
	}
}

/*
 * 6-bit scale i (0..15) of a Q3_K block: low nibble from byte i (i < 8) or byte i-8's high
 * nibble, top two bits from byte 8 + i%4 at bit 2*(i/4). Stored with a +32 bias.
 */
static inline int q3_k_scale(const uint8_t *sc, int i)
{
	int lo = i < 8 ? (sc[i] & 0xf) : (sc[i - 8] >> 4);
	int hi = (sc[8 + (i & 3)] >> (2 * (i >> 2))) & 3;

	return (lo | (hi << 4)) - 32;
}

/*
 * Q3_K: 32 bytes of high-bit mask, 64 bytes of 2-bit values, 12 bytes of packed 6-bit scales,
 * f16 d. A clear mask bit subtracts 4. Layout of the low bits as in Q2_K; the mask bit for
 * pass p (0..7) of position l is bit p of hmask[l].
 */
static void q3_k_to_f32(const void *src, float *dst, size_t n)
{
	const uint8_t *b = src;

	for (size_t blk = 0; blk < n / QK_K; blk++, b += 110) {
		const uint8_t *hm = b, *q = b + 32, *sc = b + 96;
		float d = ld_f16(b + 108);
		int is = 0, pass = 0;

		for (int half = 0; half < 2; half++, q += 32) {
			for (int shift = 0; shift < 8; shift += 2, pass++) {
				for (int k = 0; k < 2; k++, is++) {
					float dl = d * (float)q3_k_scale(sc, is);

					for (int l = 0; l < 16; l++) {
						int p = 16 * k + l;
						int v = (q[p] >> shift) & 3;

						if (!((hm[p] >> pass) & 1))
							v -= 4;
						*dst++ = dl * (float)v;
					}
				}
			}
		}
	}
}

/* 6-bit scale and min j (0..7) of a Q4_K / Q5_K block from its 12 packed bytes. */
static inline void k4_scale_min(const uint8_t *q, int j, int *sc, int *m)
{
	if (j < 4) {
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
		*m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
	}
}

/*
 * Q4_K: f16 d, f16 dmin, 12 bytes of scales/mins, 128 bytes of nibbles. Each 64 elements read
 * 32 bytes: low nibbles with scale 2i, high nibbles with scale 2i+1; value d*sc*q - dmin*m.
 * Q5_K: the same plus 32 bytes of fifth bits (@five) before the nibbles; group j uses bits 2j
 * (low nibbles) and 2j+1.
 */
static void q45_k_to_f32(const uint8_t *b, float *dst, size_t n, bool five)
{
	for (size_t blk = 0; blk < n / QK_K; blk++, b += five ? 176 : 144) {
		float d = ld_f16(b), dmin = ld_f16(b + 2);
		const uint8_t *scales = b + 4, *qh = b + 16, *q = five ? b + 48 : b + 16;

		for (int j = 0; j < 4; j++, q += 32) {
			int sc1, m1, sc2, m2;

			k4_scale_min(scales, 2 * j, &sc1, &m1);
			k4_scale_min(scales, 2 * j + 1, &sc2, &m2);
			float d1 = d * (float)sc1, mm1 = dmin * (float)m1;
			float d2 = d * (float)sc2, mm2 = dmin * (float)m2;

			for (int l = 0; l < 32; l++) {
				int hi = five ? ((qh[l] >> (2 * j)) & 1) << 4 : 0;

				*dst++ = d1 * (float)((q[l] & 0xf) | hi) - mm1;
			}
			for (int l = 0; l < 32; l++) {
				int hi = five ? ((qh[l] >> (2 * j + 1)) & 1) << 4 : 0;

				*dst++ = d2 * (float)((q[l] >> 4) | hi) - mm2;
			}
		}
	}
}

static void q4_k_to_f32(const void *src, float *dst, size_t n)
{
	q45_k_to_f32(src, dst, n, false);
}

static void q5_k_to_f32(const void *src, float *dst, size_t n)
{
	q45_k_to_f32(src, dst, n, true);
}

/*
 * Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 signed scales (one per 16
 * elements), f16 d. Per 128-element half: positions l, l+32, l+64, l+96 share ql/qh bytes.
 */
static void q6_k_to_f32(const void *src, float *dst, size_t n)
{
	const uint8_t *b = src;

	for (size_t blk = 0; blk < n / QK_K; blk++, b += 210) {
		const uint8_t *ql = b, *qh = b + 128;
		const int8_t *sc = (const int8_t *)(b + 192);
		float d = ld_f16(b + 208);

		for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, dst += 128) {
			for (int l = 0; l < 32; l++) {
				int is = l / 16;
				int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
				int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
				int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;

				dst[l] = d * (float)sc[is] * (float)q1;
				dst[l + 32] = d * (float)sc[is + 2] * (float)q2;
				dst[l + 64] = d * (float)sc[is + 4] * (float)q3;
				dst[l + 96] = d * (float)sc[is + 6] * (float)q4;
			}
		}
	}
}

/* Q8_K: f32 d, 256 signed bytes, 16 int16 block sums (unused here). */
static void q8_k_to_f32(const void *src, float *dst, size_t n)
{
	const uint8_t *b = src;

	for (size_t blk = 0; blk < n / QK_K; blk++, b += 292) {
		float d;

		memcpy(&d, b, sizeof(d));
		for (int j = 0; j < QK_K; j++)
			*dst++ = d * (float)(int8_t)b[4 + j];
	}
}

/* clang-format off */
static const struct dtype_info infos[GGML_TYPE_COUNT] = {
	[GGML_TYPE_F32]  = { "F32",  1,    4,   f32_to_f32 },
	[GGML_TYPE_F16]  = { "F16",  1,    2,   f16_to_f32 },
	[GGML_TYPE_Q4_0] = { "Q4_0", QK,   18,  q4_0_to_f32 },
	[GGML_TYPE_Q4_1] = { "Q4_1", QK,   20,  q4_1_to_f32 },
	[GGML_TYPE_Q5_0] = { "Q5_0", QK,   22,  q5_0_to_f32 },
	[GGML_TYPE_Q5_1] = { "Q5_1", QK,   24,  q5_1_to_f32 },
	[GGML_TYPE_Q8_0] = { "Q8_0", QK,   34,  q8_0_to_f32 },
	[GGML_TYPE_Q8_1] = { "Q8_1", QK,   36,  q8_1_to_f32 },
	[GGML_TYPE_Q2_K] = { "Q2_K", QK_K, 84,  q2_k_to_f32 },
	[GGML_TYPE_Q3_K] = { "Q3_K", QK_K, 110, q3_k_to_f32 },
	[GGML_TYPE_Q4_K] = { "Q4_K", QK_K, 144, q4_k_to_f32 },
	[GGML_TYPE_Q5_K] = { "Q5_K", QK_K, 176, q5_k_to_f32 },
	[GGML_TYPE_Q6_K] = { "Q6_K", QK_K, 210, q6_k_to_f32 },
	[GGML_TYPE_Q8_K] = { "Q8_K", QK_K, 292, q8_k_to_f32 },
	[GGML_TYPE_I8]   = { "I8",   1,    1,   i8_to_f32 },
	[GGML_TYPE_I16]  = { "I16",  1,    2,   i16_to_f32 },
	[GGML_TYPE_I32]  = { "I32",  1,    4,   i32_to_f32 },
	[GGML_TYPE_I64]  = { "I64",  1,    8,   i64_to_f32 },
	[GGML_TYPE_F64]  = { "F64",  1,    8,   f64_to_f32 },
	[GGML_TYPE_BF16] = { "BF16", 1,    2,   bf16_to_f32 },
};
/* clang-format on */

const struct dtype_info *dtype_info(uint32_t type)
{
	if (type >= GGML_TYPE_COUNT || !infos[type].name)
		return NULL;
	return &infos[type];
}

int dtype_row_bytes(uint32_t type, uint64_t n_elems, uint64_t *ret)
{
	const struct dtype_info *ti = dtype_info(type);

	if (!ti)
		return -EOPNOTSUPP;
	if (n_elems % ti->block_elems)
		return -EBADMSG;
	if (__builtin_mul_overflow(n_elems / ti->block_elems, (uint64_t)ti->block_bytes, ret))
		return -EOVERFLOW;
	return 0;
}
