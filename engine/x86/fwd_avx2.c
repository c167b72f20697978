// SPDX-License-Identifier: MIT
/*
 * AVX2+FMA versions of the forward pass's elementwise math and the fused attention rows.
 * Only this file is built with -mavx2 -mfma; engine/fwd_simd.c calls it on hosts that have
 * both.
 */
#include "engine/fwd_simd.h"
#include "engine/x86/fwd_x86.h"

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

/*
 * e^x for two vectors at once: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so n ln2 is
 * exact), e^r by its degree-7 Taylor polynomial (truncation below 1e-8 relative; a few ulp
 * in all), 2^n put in the exponent bits. x is clamped to [-87, 88.3], where 2^n stays a
 * normal float; NaN stays NaN (max/min return their second operand when it is NaN).
 * The polynomial is evaluated in Estrin's scheme and the two vectors' steps are interleaved:
 * the chain of a lone Horner evaluation is long enough to stall a small out-of-order window
 * (Zen 1's FP scheduler holds about one exp's worth of operations).
 */
#define C(v) _mm256_set1_ps(v)
/* The core without the clamp: inputs must be in [-87, 88.3] (or NaN, giving NaN). */
static inline void exp8x2_unclamped(__m256 *px, __m256 *py)
{
	__m256 x = *px, y = *py, nx, ny, rx, ry, r2x, r2y, r4x, r4y, ax, ay, bx, by, cx, cy, dx, dy;
	__m256i ex, ey;

	nx = _mm256_round_ps(_mm256_mul_ps(x, C(1.44269504088896341f)),
			     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	ny = _mm256_round_ps(_mm256_mul_ps(y, C(1.44269504088896341f)),
			     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	rx = _mm256_fnmadd_ps(nx, C(0.693359375f), x);
	ry = _mm256_fnmadd_ps(ny, C(0.693359375f), y);
	rx = _mm256_fnmadd_ps(nx, C(-2.12194440e-4f), rx);
	ry = _mm256_fnmadd_ps(ny, C(-2.12194440e-4f), ry);
	r2x = _mm256_mul_ps(rx, rx);
	r2y = _mm256_mul_ps(ry, ry);
	ax = _mm256_fmadd_ps(rx, C(1.0f), C(1.0f));
	ay = _mm256_fmadd_ps(ry, C(1.0f), C(1.0f));
	bx = _mm256_fmadd_ps(rx, C(1.0f / 6), C(0.5f));
	by = _mm256_fmadd_ps(ry, C(1.0f / 6), C(0.5f));
	cx = _mm256_fmadd_ps(rx, C(1.0f / 120), C(1.0f / 24));
	cy = _mm256_fmadd_ps(ry, C(1.0f / 120), C(1.0f / 24));
	dx = _mm256_fmadd_ps(rx, C(1.0f / 5040), C(1.0f / 720));
	dy = _mm256_fmadd_ps(ry, C(1.0f / 5040), C(1.0f / 720));
	r4x = _mm256_mul_ps(r2x, r2x);
	r4y = _mm256_mul_ps(r2y, r2y);
	ax = _mm256_fmadd_ps(bx, r2x, ax);
	ay = _mm256_fmadd_ps(by, r2y, ay);
	cx = _mm256_fmadd_ps(dx, r2x, cx);
	cy = _mm256_fmadd_ps(dy, r2y, cy);
	ex = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(nx), _mm256_set1_epi32(127)),
			       23);
	ey = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(ny), _mm256_set1_epi32(127)),
			       23);
	ax = _mm256_fmadd_ps(cx, r4x, ax);
	ay = _mm256_fmadd_ps(cy, r4y, ay);
	*px = _mm256_mul_ps(ax, _mm256_castsi256_ps(ex));
	*py = _mm256_mul_ps(ay, _mm256_castsi256_ps(ey));
}

static inline void exp8x2(__m256 *px, __m256 *py)
{
	*px = _mm256_min_ps(C(88.3f), _mm256_max_ps(C(-87.0f), *px));
	*py = _mm256_min_ps(C(88.3f), _mm256_max_ps(C(-87.0f), *py));
	exp8x2_unclamped(px, py);
}

static inline __m256 exp8(__m256 x)
{
	__m256 y = _mm256_setzero_ps();

	exp8x2(&x, &y);
	return x;
}

/* e^d for d <= 0, exactly 0 below -87 (where expf is denormal or 0 anyway). */
static inline void exp8x2_nonpos(__m256 *d, __m256 *e)
{
	/* not-less-than, unordered true: NaN passes through */
	__m256 kd = _mm256_cmp_ps(*d, C(-87.0f), _CMP_NLT_UQ);
	__m256 ke = _mm256_cmp_ps(*e, C(-87.0f), _CMP_NLT_UQ);

	/* below -87 (-inf included) the result is garbage or NaN, and masked off */
	exp8x2_unclamped(d, e);
	*d = _mm256_and_ps(*d, kd);
	*e = _mm256_and_ps(*e, ke);
}

static inline __m256 exp8_nonpos(__m256 d)
{
	__m256 e = _mm256_setzero_ps();

	exp8x2_nonpos(&d, &e);
	return d;
}

static inline float hmax8(__m256 v)
{
	__m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	m = _mm_max_ps(m, _mm_movehl_ps(m, m));
	m = _mm_max_ss(m, _mm_movehdup_ps(m));
	return _mm_cvtss_f32(m);
}

static inline double hsum4d(__m256d v)
{
	__m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));

	return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* Add the 8 floats of @v to the two double accumulators. */
static inline void acc8d(__m256d *a, __m256d *b, __m256 v)
{
	*a = _mm256_add_pd(*a, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
	*b = _mm256_add_pd(*b, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

/* The last n % 8 elements, padded with @fill. */
static inline __m256 load_tail(const float *x, uint32_t n, float fill)
{
	float buf[8];

	for (uint32_t i = 0; i < 8; i++)
		buf[i] = i < n ? x[i] : fill;
	return _mm256_loadu_ps(buf);
}

static inline void store_tail(float *x, uint32_t n, __m256 v)
{
	float buf[8];

	_mm256_storeu_ps(buf, v);
	memcpy(x, buf, n * sizeof(float));
}

static float max_avx2(const float *x, uint32_t n)
{
	__m256 m = _mm256_set1_ps(-INFINITY);
	uint32_t i = 0;

	for (; i + 8 <= n; i += 8)
		m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
	if (i < n)
		m = _mm256_max_ps(m, load_tail(x + i, n - i, -INFINITY));
	return hmax8(m);
}

/* sum_i exp(x[i] - mx) in double; with @out, also stores the terms there. */
static double sum_exp(const float *x, uint32_t n, float mx, float *out)
{
	__m256 vm = _mm256_set1_ps(mx);
	__m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
	uint32_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m256 e = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
		__m256 f = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm);

		exp8x2_nonpos(&e, &f);
		if (out) {
			_mm256_storeu_ps(out + i, e);
			_mm256_storeu_ps(out + i + 8, f);
		}
		acc8d(&s0, &s1, e);
		acc8d(&s0, &s1, f);
	}
	for (; i + 8 <= n; i += 8) {
		__m256 e = exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));

		if (out)
			_mm256_storeu_ps(out + i, e);
		acc8d(&s0, &s1, e);
	}
	if (i < n) {
		__m256 e = exp8_nonpos(_mm256_sub_ps(load_tail(x + i, n - i, -INFINITY), vm));

		if (out)
			store_tail(out + i, n - i, e);
		acc8d(&s0, &s1, e);
	}
	return hsum4d(_mm256_add_pd(s0, s1));
}

static void softmax_avx2(float *x, uint32_t n)
{
	float mx = max_avx2(x, n);
	__m256 inv = _mm256_set1_ps((float)(1.0 / sum_exp(x, n, mx, x)));
	uint32_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
	for (; i < n; i++)
		x[i] *= _mm256_cvtss_f32(inv);
}

static double logsumexp_avx2(const float *x, uint32_t n)
{
	float mx = max_avx2(x, n);

	return log(sum_exp(x, n, mx, NULL)) + mx;
}

/*
 * The negated exponent of a gated activation x * sigmoid(a(x)) = x / (1 + e^-a(x)): SiLU
 * a = x; GELU's tanh form (gelu_mul_ref's formula) a = k0 (x + k1 x^3).
 */
static inline __m256 gate_neg_arg(__m256 x, bool gelu)
{
	if (!gelu)
		return _mm256_sub_ps(_mm256_setzero_ps(), x);
	return _mm256_mul_ps(
		C(-1.5957691216057308f),
		_mm256_fmadd_ps(C(0.044715f), _mm256_mul_ps(_mm256_mul_ps(x, x), x), x));
}

static inline __m256 gated_mul8(__m256 g, __m256 u, bool gelu)
{
	__m256 e = exp8(gate_neg_arg(g, gelu));

	return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(C(1.0f), e)), u);
}

/* g[i] = g[i] / (1 + e^-a(g[i])) * u[i]; two vectors per step so the exps overlap. */
static inline __attribute__((always_inline)) void gated_mul(float *g, const float *u, uint64_t n,
							    bool gelu)
{
	uint64_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m256 g0 = _mm256_loadu_ps(g + i), g1 = _mm256_loadu_ps(g + i + 8);
		__m256 e0 = gate_neg_arg(g0, gelu), e1 = gate_neg_arg(g1, gelu);

		exp8x2(&e0, &e1);
		e0 = _mm256_div_ps(g0, _mm256_add_ps(C(1.0f), e0));
		e1 = _mm256_div_ps(g1, _mm256_add_ps(C(1.0f), e1));
		_mm256_storeu_ps(g + i, _mm256_mul_ps(e0, _mm256_loadu_ps(u + i)));
		_mm256_storeu_ps(g + i + 8, _mm256_mul_ps(e1, _mm256_loadu_ps(u + i + 8)));
	}
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(g + i,
				 gated_mul8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i), gelu));
	if (i < n)
		store_tail(g + i, (uint32_t)(n - i),
			   gated_mul8(load_tail(g + i, (uint32_t)(n - i), 0),
				      load_tail(u + i, (uint32_t)(n - i), 0), gelu));
}

static void silu_mul_avx2(float *g, const float *u, uint64_t n)
{
	gated_mul(g, u, n, false);
}

static void gelu_mul_avx2(float *g, const float *u, uint64_t n)
{
	gated_mul(g, u, n, true);
}

static double sumsq_avx2(const float *x, uint32_t n)
{
	__m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
	uint32_t i = 0;

	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);
		__m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
		__m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));

		s0 = _mm256_fmadd_pd(lo, lo, s0);
		s1 = _mm256_fmadd_pd(hi, hi, s1);
	}
	double acc = hsum4d(_mm256_add_pd(s0, s1));

	for (; i < n; i++)
		acc += (double)x[i] * x[i];
	return acc;
}

/*
 * The attention kernels read keys and values as f32 or as f16 (struct fwd_att_rows.f16);
 * each is written once with @h, a compile-time constant at every always-inlined use, so that
 * both kinds get their own loops. f16 is widened exactly (vcvtph2ps), so the arithmetic
 * after the load is the same for both.
 */
#define AI static inline __attribute__((always_inline))

/* Eight keys or values from element @i of @p. */
AI __m256 ld8(const void *p, size_t i, bool h)
{
	if (h)
		return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
	return _mm256_loadu_ps((const float *)p + i);
}

/*
 * s[r][0..16) = q[r] . keys of one packed chunk, for @n (1..4) rows of q ([n][hd]): each key
 * vector is loaded once for the rows, two accumulators per row hide the FMA latency. A
 * row's sums are the same whatever @n is (decode steps compute one row, not four).
 */
AI void qk_nx16(const float *q, uint32_t hd, const void *kc, float *s, uint32_t s_stride, int n,
		bool h)
{
	__m256 a0[4], a1[4];

#pragma GCC unroll 4
	for (int r = 0; r < n; r++)
		a0[r] = a1[r] = _mm256_setzero_ps();
	for (uint32_t d = 0; d < hd; d++) {
		__m256 k0 = ld8(kc, (size_t)d * FWD_KEY_CHUNK, h);
		__m256 k1 = ld8(kc, (size_t)d * FWD_KEY_CHUNK + 8, h);

#pragma GCC unroll 4
		for (int r = 0; r < n; r++) {
			__m256 x = _mm256_broadcast_ss(q + r * hd + d);

			a0[r] = _mm256_fmadd_ps(x, k0, a0[r]);
			a1[r] = _mm256_fmadd_ps(x, k1, a1[r]);
		}
	}
#pragma GCC unroll 4
	for (int r = 0; r < n; r++) {
		_mm256_store_ps(s + r * s_stride, a0[r]);
		_mm256_store_ps(s + r * s_stride + 8, a1[r]);
	}
}

AI void qk_rows(const float *q, uint32_t hd, const void *kc, float *s, uint32_t s_stride,
		uint32_t n, bool h)
{
	switch (n) {
	case 1:
		qk_nx16(q, hd, kc, s, s_stride, 1, h);
		break;
	case 2:
		qk_nx16(q, hd, kc, s, s_stride, 2, h);
		break;
	case 3:
		qk_nx16(q, hd, kc, s, s_stride, 3, h);
		break;
	default:
		qk_nx16(q, hd, kc, s, s_stride, 4, h);
		break;
	}
}

/* o[i][0..32) += sum_{j0 <= j < j1} p[i][j] * v[j][0..32) for @n (1 or 2) rows. */
AI void pv_nx32(const float *p0, const float *p1, const void *v, uint32_t v_stride, uint32_t j0,
		uint32_t j1, float *o0, float *o1, int n, bool h)
{
	const float *p[2] = { p0, p1 };
	float *o[2] = { o0, o1 };
	__m256 a[2][4];

#pragma GCC unroll 2
	for (int i = 0; i < n; i++)
#pragma GCC unroll 4
		for (int c = 0; c < 4; c++)
			a[i][c] = _mm256_load_ps(o[i] + 8 * c);
	for (uint32_t j = j0; j < j1; j++) {
		size_t vr = (size_t)j * v_stride;
		__m256 vv[4] = { ld8(v, vr, h), ld8(v, vr + 8, h), ld8(v, vr + 16, h),
				 ld8(v, vr + 24, h) };

		/*
		 * Keep the values in registers: GCC otherwise folds their loads into the FMAs,
		 * loading each once per row, and the loop becomes load-bound.
		 */
		__asm__("" : "+x"(vv[0]), "+x"(vv[1]), "+x"(vv[2]), "+x"(vv[3]));

#pragma GCC unroll 2
		for (int i = 0; i < n; i++) {
			__m256 x = _mm256_broadcast_ss(p[i] + j);

#pragma GCC unroll 4
			for (int c = 0; c < 4; c++)
				a[i][c] = _mm256_fmadd_ps(x, vv[c], a[i][c]);
		}
	}
#pragma GCC unroll 2
	for (int i = 0; i < n; i++)
#pragma GCC unroll 4
		for (int c = 0; c < 4; c++)
			_mm256_store_ps(o[i] + 8 * c, a[i][c]);
}

/* Keys per step of the P.V sweep: their value rows stay in L1 across all row pairs. */
#define PV_KEYS 64

/*
 * One query row (a decode step) against packed key chunks [c, c1): qk_nx16's sums for
 * n = 1, key lane by key lane in the same order of d, but four chunks at a time, so that
 * eight independent FMA chains hide the latency that two chains per row leave exposed.
 */
AI void qk_row(const float *q, uint32_t hd, const void *kt, uint32_t c, uint32_t c1, float *s,
	       bool h)
{
	for (; c + 4 * FWD_KEY_CHUNK <= c1; c += 4 * FWD_KEY_CHUNK) {
		size_t kc = (size_t)c * hd;
		__m256 a[8];

#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			a[i] = _mm256_setzero_ps();
		for (uint32_t d = 0; d < hd; d++, kc += FWD_KEY_CHUNK) {
			__m256 x = _mm256_broadcast_ss(q + d);

#pragma GCC unroll 4
			for (int b = 0; b < 4; b++) {
				size_t k = kc + (size_t)b * FWD_KEY_CHUNK * hd;

				a[2 * b] = _mm256_fmadd_ps(x, ld8(kt, k, h), a[2 * b]);
				a[2 * b + 1] = _mm256_fmadd_ps(x, ld8(kt, k + 8, h), a[2 * b + 1]);
			}
		}
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++)
			_mm256_store_ps(s + c + 8 * i, a[i]);
	}
	for (; c < c1; c += FWD_KEY_CHUNK)
		qk_nx16(q, hd, fwd_kv_at(kt, (size_t)c * hd, h), s + c, 0, 1, h);
}

/*
 * o[0..64) += sum_{j0 <= j < j1} p[j] * v[j][0..64) for one row: pv_nx32's per-element order
 * (j ascending), eight chains instead of four.
 */
AI void pv_row64(const float *p, const void *v, uint32_t v_stride, uint32_t j0, uint32_t j1,
		 float *o, bool h)
{
	__m256 a[8];

#pragma GCC unroll 8
	for (int c = 0; c < 8; c++)
		a[c] = _mm256_load_ps(o + 8 * c);
	for (uint32_t j = j0; j < j1; j++) {
		size_t vr = (size_t)j * v_stride;
		__m256 x = _mm256_broadcast_ss(p + j);

#pragma GCC unroll 8
		for (int c = 0; c < 8; c++)
			a[c] = _mm256_fmadd_ps(x, ld8(v, vr + 8 * c, h), a[c]);
	}
#pragma GCC unroll 8
	for (int c = 0; c < 8; c++)
		_mm256_store_ps(o + 8 * c, a[c]);
}

/* Output dims [d, d + 64) (or the last 32) of one row over keys [j0, j1), into @acc. */
AI void pv_row(const float *p, const void *v, uint32_t v_stride, uint32_t hd, uint32_t j0,
	       uint32_t j1, float *acc, bool h)
{
	uint32_t d = 0;

	for (; d + 64 <= hd; d += 64)
		pv_row64(p, fwd_kv_at(v, d, h), v_stride, j0, j1, acc + d, h);
	if (d < hd)
		pv_nx32(p, p, fwd_kv_at(v, d, h), v_stride, j0, j1, acc + d, acc + d, 1, h);
}

/* Keys per block of the decode path's P.V: a block's values stay in L2 for all its heads. */
static uint32_t head_block_keys(uint32_t hd)
{
	uint32_t kb = (64u << 10) / (hd * (uint32_t)sizeof(float));

	return kb < 64 ? 64 : kb / 64 * 64;
}

/*
 * One query row of each of @n_heads heads that share the keys and values of @a (a decode step
 * under grouped-query attention): head i's row at a->q + i * hd, its output at a->out + i *
 * hd. Every head's values are those attend_rows gives for it with rows = 1 (a row's result
 * does not depend on the block it is computed in: the daemon's chunked prefill and a
 * whole-prompt prefill must agree), but the keys and values are streamed once, block by
 * block, for all the heads instead of once per head, and there are no padding rows.
 */
AI void attend_heads(const struct fwd_att_rows *a, uint32_t n_heads, bool h)
{
	uint32_t hd = a->hd, n_keys = a->vis0, kb = head_block_keys(hd);
	uint32_t pad = (n_keys + FWD_KEY_CHUNK - 1) / FWD_KEY_CHUNK * FWD_KEY_CHUNK;
	uint32_t lo = fwd_att_first_key(a, 0), c0 = lo / FWD_KEY_CHUNK * FWD_KEY_CHUNK;
	float *qs = a->scratch, *acc = qs + FWD_ATT_ROWS * hd, *s = acc + FWD_ATT_ROWS * hd;
	float inv[FWD_ATT_ROWS];

	for (uint32_t i = 0; i < n_heads; i++)
		for (uint32_t d = 0; d < hd; d++)
			qs[i * hd + d] = a->q[(size_t)i * hd + d] * a->scale;
	/* one head: four chunks at a time; several: each key chunk loaded once for four */
	if (n_heads == 1)
		qk_row(qs, hd, a->kt, c0, pad, s, h);
	else
		for (uint32_t c = c0; c < pad; c += FWD_KEY_CHUNK)
			for (uint32_t i = 0; i < n_heads; i += 4)
				qk_rows(qs + i * hd, hd, fwd_kv_at(a->kt, (size_t)c * hd, h),
					s + (size_t)i * pad + c, pad,
					n_heads - i < 4 ? n_heads - i : 4, h);
	for (uint32_t i = 0; i < n_heads; i++) {
		float *row = s + (size_t)i * pad;

		inv[i] = (float)(1.0 / sum_exp(row + lo, n_keys - lo,
					       max_avx2(row + lo, n_keys - lo), row + lo));
	}
	memset(acc, 0, (size_t)n_heads * hd * sizeof(float));
	/* one head: 64 dims at a time; several: each value vector loaded once for two heads */
	for (uint32_t j = lo; j < n_keys; j += kb) {
		uint32_t j1 = n_keys - j < kb ? n_keys : j + kb;

		if (n_heads == 1) {
			pv_row(s, a->v, a->v_stride, hd, j, j1, acc, h);
			continue;
		}
		for (uint32_t i = 0; i < n_heads; i += 2) {
			const float *p0 = s + (size_t)i * pad, *p1 = p0 + pad;

			for (uint32_t d = 0; d < hd; d += 32) {
				float *o0 = acc + i * hd + d, *o1 = o0 + hd;

				if (i + 1 < n_heads)
					pv_nx32(p0, p1, fwd_kv_at(a->v, d, h), a->v_stride, j, j1,
						o0, o1, 2, h);
				else
					pv_nx32(p0, p1, fwd_kv_at(a->v, d, h), a->v_stride, j, j1,
						o0, o1, 1, h);
			}
		}
	}
	for (uint32_t i = 0; i < n_heads; i++) {
		__m256 k = _mm256_set1_ps(inv[i]);

		for (uint32_t d = 0; d < hd; d += 8)
			_mm256_storeu_ps(a->out + (size_t)i * hd + d,
					 _mm256_mul_ps(_mm256_load_ps(acc + i * hd + d), k));
	}
}

/* A block's queries, scaled (engine/x86/fwd_x86.h). */
void fwd_att_scaled_q(const struct fwd_att_rows *a, float *qs, uint32_t n_rows)
{
	for (uint32_t r = 0; r < n_rows; r++)
		for (uint32_t d = 0; d < a->hd; d++)
			qs[r * a->hd + d] =
				r < a->rows ? a->q[(size_t)r * a->q_stride + d] * a->scale : 0;
}

/* The scores of a block to unnormalized probabilities (engine/x86/fwd_x86.h). */
void fwd_avx2_att_exp(const struct fwd_att_rows *a, float *s, uint32_t pad, uint32_t n_rows,
		      float *inv)
{
	uint32_t lo0 = fwd_att_first_key(a, 0);

	for (uint32_t r = 0; r < n_rows; r++) {
		float *row = s + (size_t)r * pad;
		uint32_t vis = r < a->rows ? a->vis0 + r : 0,
			 lo = r < a->rows ? fwd_att_first_key(a, r) : lo0;

		if (vis)
			inv[r] = (float)(1.0 / sum_exp(row + lo, vis - lo,
						       max_avx2(row + lo, vis - lo), row + lo));
		memset(row + lo0, 0, (lo - lo0) * sizeof(float));
		memset(row + vis, 0, (pad - vis) * sizeof(float));
	}
}

AI void attend_rows(const struct fwd_att_rows *a, bool h)
{
	uint32_t hd = a->hd, rows = a->rows, rows4 = (rows + 3) & ~3u;
	uint32_t n_keys = a->vis0 + rows - 1;
	uint32_t pad = (n_keys + FWD_KEY_CHUNK - 1) / FWD_KEY_CHUNK * FWD_KEY_CHUNK;
	/* the first key any row of the block sees (row 0's window start), chunk-aligned */
	uint32_t lo0 = fwd_att_first_key(a, 0), c0 = lo0 / FWD_KEY_CHUNK * FWD_KEY_CHUNK;
	float *qs = a->scratch, *acc = qs + FWD_ATT_ROWS * hd, *s = acc + FWD_ATT_ROWS * hd;
	float inv[FWD_ATT_ROWS];

	if (rows == 1) {
		attend_heads(a, 1, h);
		return;
	}
	fwd_att_scaled_q(a, qs, rows4);
	/* scores, chunk-major so each packed chunk is reused from L1 by every row group */
	for (uint32_t c = c0; c < pad; c += FWD_KEY_CHUNK) {
		const void *kc = fwd_kv_at(a->kt, (size_t)c * hd, h);

		for (uint32_t r0 = 0; r0 < rows4; r0 += 4) {
			uint32_t last = r0 + 3 < rows ? r0 + 3 : rows - 1;

			if (c < a->vis0 + last)
				qk_rows(qs + r0 * hd, hd, kc, s + (size_t)r0 * pad + c, pad,
					last + 1 - r0, h);
		}
	}
	fwd_avx2_att_exp(a, s, pad, rows4, inv);
	memset(acc, 0, (size_t)rows4 * hd * sizeof(float));
	for (uint32_t j0 = lo0; j0 < n_keys; j0 += PV_KEYS) {
		for (uint32_t r = 0; r < rows; r += 2) {
			uint32_t end = a->vis0 + r + 1 < n_keys ? a->vis0 + r + 1 : n_keys;
			uint32_t j1 = j0 + PV_KEYS < end ? j0 + PV_KEYS : end;

			if (j0 >= end)
				continue;
			for (uint32_t d = 0; d < hd; d += 32) {
				const float *p0 = s + (size_t)r * pad, *p1 = p0 + pad;
				float *o0 = acc + r * hd + d, *o1 = o0 + hd;
				const void *v = fwd_kv_at(a->v, d, h);

				if (r + 1 < rows)
					pv_nx32(p0, p1, v, a->v_stride, j0, j1, o0, o1, 2, h);
				else
					pv_nx32(p0, p1, v, a->v_stride, j0, j1, o0, o1, 1, h);
			}
		}
	}
	for (uint32_t r = 0; r < rows; r++) {
		__m256 k = _mm256_set1_ps(inv[r]);

		for (uint32_t d = 0; d < hd; d += 8)
			_mm256_storeu_ps(a->out + (size_t)r * a->out_stride + d,
					 _mm256_mul_ps(_mm256_load_ps(acc + r * hd + d), k));
	}
}

static void attend_rows_avx2(const struct fwd_att_rows *a)
{
	if (a->f16)
		attend_rows(a, true);
	else
		attend_rows(a, false);
}

static void attend_heads_avx2(const struct fwd_att_rows *a, uint32_t n_heads)
{
	if (a->f16)
		attend_heads(a, n_heads, true);
	else
		attend_heads(a, n_heads, false);
}

/*
 * to_f16 with F16C: clamp to +-65504 with the operands ordered so that a NaN passes (max_ps
 * and min_ps return their second operand when one is NaN), then vcvtps2ph rounding to
 * nearest even: the bits of dtype_f32_to_f16, whose NaN keeps the top payload bits quiet
 * as the instruction does.
 */
static __m128i half8(__m256 x)
{
	const __m256 hmax = _mm256_set1_ps(65504.0f), hmin = _mm256_set1_ps(-65504.0f);

	x = _mm256_min_ps(hmax, _mm256_max_ps(hmin, x));
	return _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static void to_f16_avx2(uint16_t *dst, size_t dst_stride, const float *src, uint32_t n)
{
	uint32_t i = 0;

	for (; i + 8 <= n; i += 8) {
		__m128i h = half8(_mm256_loadu_ps(src + i));
		uint16_t v[8];

		if (dst_stride == 1) {
			_mm_storeu_si128((__m128i *)(dst + i), h);
			continue;
		}
		_mm_storeu_si128((__m128i *)v, h);
		for (int j = 0; j < 8; j++)
			dst[(i + j) * dst_stride] = v[j];
	}
	if (i < n) {
		float t[8] = { 0 };
		uint16_t v[8];

		memcpy(t, src + i, (n - i) * sizeof(float));
		_mm_storeu_si128((__m128i *)v, half8(_mm256_loadu_ps(t)));
		for (uint32_t j = 0; j < n - i; j++)
			dst[(i + j) * dst_stride] = v[j];
	}
}

const struct fwd_ops fwd_ops_avx2 = {
	.name = "avx2",
	.softmax = softmax_avx2,
	.silu_mul = silu_mul_avx2,
	.gelu_mul = gelu_mul_avx2,
	.logsumexp = logsumexp_avx2,
	.sumsq = sumsq_avx2,
	.attend_rows = attend_rows_avx2,
	.attend_heads = attend_heads_avx2,
	.to_f16 = to_f16_avx2,
};

const struct fwd_ops fwd_ops_avx512 = {
	.name = "avx512",
	.softmax = softmax_avx2,
	.silu_mul = silu_mul_avx2,
	.gelu_mul = gelu_mul_avx2,
	.logsumexp = logsumexp_avx2,
	.sumsq = sumsq_avx2,
	.attend_rows = fwd_avx512_attend_rows,
	.attend_heads = attend_heads_avx2,
	.to_f16 = to_f16_avx2,
};
