// SPDX-License-Identifier: MIT
/*
 * bf16 products on AVX512_BF16 (kernels/gemm_bf16.h), blocked the usual way: a k-block of B
 * (NC columns x KC) is packed once and stays in L2/L3, a block of A (MC rows x KC) in L2, and
 * the micro-kernel runs a 12 x 32 tile of C in 24 zmm accumulators. Packed panels hold bf16
 * pairs (k even, k odd) as one dword, which is what vdpbf16ps multiplies and adds: a B strip
 * is [pair][32 columns], an A strip [pair][12 rows], zero-padded past the matrix edges and
 * past an odd k, so the kernel never branches on shape.
 */
#include <errno.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_bf16.h"
#include "kernels/internal.h"

#define MR 12
#define NR 32
#define KC GEMM_BF16_KC
#define KP (KC / 2)
#define MC (12 * MR)
#define NC 1536 /* gate/up's width: their A is packed once */

_Static_assert(KC % 2 == 0, "KC: whole pairs");

/* Per-thread packing buffers: allocated on first use, freed when the thread exits. */
struct bufs {
	uint32_t *a; /* [MC / MR][KP][MR] */
	uint32_t *b; /* [NC / NR][KP][NR] */
};

static pthread_key_t bufs_key;
static pthread_once_t bufs_once = PTHREAD_ONCE_INIT;
static __thread struct bufs *tls_bufs;

static void bufs_free(void *p)
{
	struct bufs *b = p;

	free(b->a);
	free(b->b);
	free(b);
}

static void bufs_key_init(void)
{
	if (pthread_key_create(&bufs_key, bufs_free))
		abort(); /* only on exhaustion of keys at start-up */
}

static struct bufs *bufs_get(void)
{
	struct bufs *b = tls_bufs;

	if (b)
		return b;
	pthread_once(&bufs_once, bufs_key_init);
	b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->a = aligned_alloc(64, (size_t)MC * KP * sizeof(uint32_t));
	b->b = aligned_alloc(64, (size_t)NC * KP * sizeof(uint32_t));
	if (!b->a || !b->b || pthread_setspecific(bufs_key, b)) {
		bufs_free(b);
		return NULL;
	}
	tls_bufs = b;
	return b;
}

static inline __mmask16 mask16(uint32_t n)
{
	return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
}

/* Pairs of 16 lanes, interleaved: (lo[i], hi[i]) as dword i. */
static inline __m512i pairs16(__m512 lo, __m512 hi)
{
	const __m512i idx =
		_mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23,
				 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);

	return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

/* In place: r[i] lane j <- r[j] lane i, for 16 x 16 dwords. */
static inline void transpose16(__m512i r[16])
{
	__m512i t[16], u[16];

	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
	}
	/* u[4g + c], 128-bit lane L: rows 4g..4g+3 of column 4L + c */
	for (int g = 0; g < 16; g += 4) {
		u[g] = _mm512_unpacklo_epi64(t[g], t[g + 2]);
		u[g + 1] = _mm512_unpackhi_epi64(t[g], t[g + 2]);
		u[g + 2] = _mm512_unpacklo_epi64(t[g + 1], t[g + 3]);
		u[g + 3] = _mm512_unpackhi_epi64(t[g + 1], t[g + 3]);
	}
	for (int c = 0; c < 4; c++) {
		__m512i x0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44);
		__m512i x1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xee);
		__m512i y0 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
		__m512i y1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xee);

		r[c] = _mm512_shuffle_i32x4(x0, y0, 0x88);
		r[4 + c] = _mm512_shuffle_i32x4(x0, y0, 0xdd);
		r[8 + c] = _mm512_shuffle_i32x4(x1, y1, 0x88);
		r[12 + c] = _mm512_shuffle_i32x4(x1, y1, 0xdd);
	}
}

/*
 * A strip of @R rows (r < @rv valid) x @kc columns of a matrix whose k is contiguous
 * (element (r, kk) at src[r * ld + kk]) into dst[pair][R]: 16 rows x 16 pairs at a time,
 * each row's 32 floats converted to 16 pairs, then transposed.
 */
static void pack_kc(uint32_t *dst, uint32_t R, const float *src, size_t ld, uint32_t rv,
		    uint32_t kc)
{
	for (uint32_t r0 = 0; r0 < R; r0 += 16) {
		__mmask16 sm = mask16(R - r0);

		for (uint32_t k0 = 0; k0 < kc; k0 += 32) {
			uint32_t n = kc - k0 < 32 ? kc - k0 : 32, np = (n + 1) / 2;
			__mmask16 m0 = mask16(n), m1 = mask16(n > 16 ? n - 16 : 0);
			__m512i v[16];

			for (uint32_t i = 0; i < 16; i++) {
				const float *s = src + (size_t)(r0 + i) * ld + k0;

				if (r0 + i >= rv) {
					v[i] = _mm512_setzero_si512();
					continue;
				}
				/* consecutive k are already the pairs: plain conversion, in order */
				v[i] = (__m512i)_mm512_cvtne2ps_pbh(
					_mm512_maskz_loadu_ps(m1, s + 16),
					_mm512_maskz_loadu_ps(m0, s));
			}
			transpose16(v);
			for (uint32_t q = 0; q < np; q++)
				_mm512_mask_storeu_epi32(dst + (size_t)(k0 / 2 + q) * R + r0, sm,
							 v[q]);
		}
	}
}

/*
 * The same strip from a matrix whose rows are contiguous (element (r, kk) at
 * src[kk * ld + r]): each pair of k rows, 16 matrix rows at a time.
 */
static void pack_rc(uint32_t *dst, uint32_t R, const float *src, size_t ld, uint32_t rv,
		    uint32_t kc)
{
	for (uint32_t kk = 0; kk < kc; kk += 2) {
		const float *s0 = src + (size_t)kk * ld, *s1 = s0 + ld;
		uint32_t *d = dst + (size_t)kk / 2 * R;

		for (uint32_t r = 0; r < R; r += 16) {
			uint32_t n = r < rv ? rv - r : 0;
			__mmask16 lm = mask16(n), sm = mask16(R - r);
			__m512 lo = _mm512_maskz_loadu_ps(lm, s0 + r);
			__m512 hi = kk + 1 < kc ? _mm512_maskz_loadu_ps(lm, s1 + r)
						: _mm512_setzero_ps();

			_mm512_mask_storeu_epi32(d + r, sm, pairs16(lo, hi));
		}
	}
}

static void pack(uint32_t *dst, uint32_t R, const float *src, size_t ld, bool kc_fast, uint32_t rv,
		 uint32_t kc)
{
	if (kc_fast)
		pack_kc(dst, R, src, ld, rv, kc);
	else
		pack_rc(dst, R, src, ld, rv, kc);
}

/* C[mv][nv] (+)= the 12 x 32 tile of @kp pairs of packed A and B. */
static void kernel(uint32_t kp, const uint32_t *a, const uint32_t *b, float *c, size_t ldc,
		   bool acc, uint32_t mv, uint32_t nv)
{
	__m512 c0[MR], c1[MR];
	__mmask16 m0 = mask16(nv), m1 = mask16(nv > 16 ? nv - 16 : 0);

#pragma GCC unroll 12
	for (int i = 0; i < MR; i++) {
		c0[i] = _mm512_setzero_ps();
		c1[i] = _mm512_setzero_ps();
	}
	for (uint32_t p = 0; p < kp; p++) {
		__m512bh b0 = (__m512bh)_mm512_load_si512(b);
		__m512bh b1 = (__m512bh)_mm512_load_si512(b + 16);

#pragma GCC unroll 12
		for (int i = 0; i < MR; i++) {
			__m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);

			c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
			c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
		}
		a += MR;
		b += NR;
	}
#pragma GCC unroll 12
	for (int i = 0; i < MR; i++) {
		float *ci = c + (size_t)i * ldc;

		if ((uint32_t)i >= mv)
			break;
		if (acc) {
			c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, ci));
			c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, ci + 16));
		}
		_mm512_mask_storeu_ps(ci, m0, c0[i]);
		_mm512_mask_storeu_ps(ci + 16, m1, c1[i]);
	}
}

/*
 * The k-block size for depth @k: blocks of at most KC, of one even size (the last shorter). With
 * k = 576 that is two blocks of 288 rather than 256 + 256 + 64, whose thin last block would
 * load and store all of C for an eighth of the products.
 */
static uint32_t k_block(uint32_t k)
{
	uint32_t nb = (k + KC - 1) / KC, kb = (k + nb - 1) / nb;

	return (kb + 1) & ~1u;
}

static inline const float *at(const float *p, size_t ld, bool kc_fast, uint32_t r, uint32_t kk)
{
	return kc_fast ? p + (size_t)r * ld + kk : p + (size_t)kk * ld + r;
}

int gemm_bf16_avx512(uint32_t m, uint32_t n, uint32_t k, const float *a, size_t lda, bool a_kc,
		     const float *b, size_t ldb, bool b_kc, float *c, size_t ldc, bool upper)
{
	struct bufs *buf = bufs_get();
	uint32_t kb;

	if (!buf)
		return -ENOMEM;
	if (k == 0) {
		for (uint32_t i = 0; i < m; i++)
			memset(c + (size_t)i * ldc + (upper ? i : 0), 0,
			       (n - (upper ? i : 0)) * sizeof(float));
		return 0;
	}
	kb = k_block(k);
	for (uint32_t jc = 0; jc < n; jc += NC) {
		uint32_t nc = n - jc < NC ? n - jc : NC;

		for (uint32_t pc = 0; pc < k; pc += kb) {
			uint32_t kc = k - pc < kb ? k - pc : kb, kp = (kc + 1) / 2;

			for (uint32_t jr = 0; jr < nc; jr += NR)
				pack(buf->b + (size_t)jr * kp, NR, at(b, ldb, b_kc, jc + jr, pc),
				     ldb, b_kc, nc - jr < NR ? nc - jr : NR, kc);
			for (uint32_t ic = 0; ic < m; ic += MC) {
				uint32_t mc = m - ic < MC ? m - ic : MC;

				/* with @upper, a row block entirely right of this column block */
				if (upper && ic > jc + nc - 1)
					break;
				for (uint32_t ir = 0; ir < mc; ir += MR)
					pack(buf->a + (size_t)ir * kp, MR,
					     at(a, lda, a_kc, ic + ir, pc), lda, a_kc,
					     mc - ir < MR ? mc - ir : MR, kc);
				for (uint32_t jr = 0; jr < nc; jr += NR) {
					uint32_t nv = nc - jr < NR ? nc - jr : NR;

					for (uint32_t ir = 0; ir < mc; ir += MR) {
						uint32_t row = ic + ir, col = jc + jr;

						if (upper && col + nv - 1 < row)
							break;
						kernel(kp, buf->a + (size_t)ir * kp,
						       buf->b + (size_t)jr * kp,
						       c + (size_t)row * ldc + col, ldc, pc > 0,
						       mc - ir < MR ? mc - ir : MR, nv);
					}
				}
			}
		}
	}
	return 0;
}
