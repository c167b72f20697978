// SPDX-License-Identifier: MIT
/*
 * AVX-512 (F + BW) lookup path: lut_avx2.c's tile loop with one 64-byte vector per 64-row
 * tile step, so a whole tile's weights are one load and two vpshufb. Tables are built by the
 * AVX2 code (every AVX-512 CPU has AVX2; the table build is not the hot loop). Same exact
 * arithmetic as lut_ref.c, bit for bit; see lut_avx2.c for the int16 entries looked up as
 * two byte planes and the aw/ah word-sum trick.
 */
#include "kernels/internal.h"

#include <immintrin.h>
#include <stdbool.h>

#define AI static inline __attribute__((always_inline))

/* lut_shift_f32 on 16 lanes, same tests in the same order. */
AI __m512 shift_ps(__m512 x, __m512i e)
{
	__m512i u = _mm512_castps_si512(x);
	__m512i ex = _mm512_and_si512(_mm512_srli_epi32(u, 23), _mm512_set1_epi32(0xff));
	__m512i ne = _mm512_add_epi32(ex, e);
	__m512i sign = _mm512_and_si512(u, _mm512_set1_epi32((int)0x80000000u));
	__m512i res = _mm512_add_epi32(u, _mm512_slli_epi32(e, 23));
	__mmask16 inf_m = _mm512_cmpgt_epi32_mask(ne, _mm512_set1_epi32(254));
	__mmask16 zero_m = _mm512_cmpeq_epi32_mask(ex, _mm512_setzero_si512()) |
			   _mm512_cmplt_epi32_mask(ne, _mm512_set1_epi32(1));

	res = _mm512_mask_mov_epi32(res, inf_m,
				    _mm512_or_si512(sign, _mm512_set1_epi32(0x7f800000)));
	res = _mm512_mask_mov_epi32(res, zero_m, sign);
	return _mm512_castsi512_ps(res);
}

AI __m512i bcast_tab(const uint8_t *p)
{
	return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)p));
}

AI __m512i four_tabs(const uint8_t *const tp[4], uint32_t off)
{
	__m512i t = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(tp[0] + off)));

	t = _mm512_inserti32x4(t, _mm_loadu_si128((const __m128i *)(tp[1] + off)), 1);
	t = _mm512_inserti32x4(t, _mm_loadu_si128((const __m128i *)(tp[2] + off)), 2);
	t = _mm512_inserti32x4(t, _mm_loadu_si128((const __m128i *)(tp[3] + off)), 3);
	return t;
}

/* lut_avx2.c's add_bytes: two 7-bit digits added as bytes, then widened. */
AI void add_bytes(__m512i u, __m512i v, __m512i *aw, __m512i *ah)
{
	__m512i s = _mm512_add_epi8(u, v);

	*aw = _mm512_add_epi16(*aw, s);
	*ah = _mm512_add_epi16(*ah, _mm512_srli_epi16(s, 8));
}

/* lut_avx2.c's scale_ps: fast path for e in [-126, 106], where only zero needs care. */
AI __m512 scale_ps(__m512 f, __m512i e, __m512i e23, bool fast)
{
	__m512i u = _mm512_castps_si512(f);

	if (!fast)
		return shift_ps(f, e);
	return _mm512_castsi512_ps(_mm512_maskz_add_epi32(_mm512_test_epi32_mask(u, u), u, e23));
}

/* Slot 16 * v + d holds tile row 4 * d + v. */
AI void fold(__m512i awl, __m512i ahl, __m512i awh, __m512i ahh, __m512i bias, __m512i e, bool fast,
	     float *a)
{
	const __m512i low = _mm512_set1_epi32(0xffff);
	__m512i e23 = _mm512_slli_epi32(e, 23);
	__m512i le = _mm512_sub_epi16(awl, _mm512_slli_epi16(ahl, 8));
	__m512i lo = ahl;
	__m512i he = _mm512_sub_epi16(_mm512_sub_epi16(awh, _mm512_slli_epi16(ahh, 8)), bias);
	__m512i ho = _mm512_sub_epi16(ahh, bias);
	__m512i v[4] = {
		_mm512_add_epi32(_mm512_and_si512(le, low),
				 _mm512_slli_epi32(_mm512_srai_epi32(_mm512_slli_epi32(he, 16), 16),
						   LUT_DIGIT_BITS)),
		_mm512_add_epi32(_mm512_and_si512(lo, low),
				 _mm512_slli_epi32(_mm512_srai_epi32(_mm512_slli_epi32(ho, 16), 16),
						   LUT_DIGIT_BITS)),
		_mm512_add_epi32(_mm512_srli_epi32(le, 16),
				 _mm512_slli_epi32(_mm512_srai_epi32(he, 16), LUT_DIGIT_BITS)),
		_mm512_add_epi32(_mm512_srli_epi32(lo, 16),
				 _mm512_slli_epi32(_mm512_srai_epi32(ho, 16), LUT_DIGIT_BITS)),
	};

	for (int s = 0; s < 4; s++, a += 16) {
		__m512 o = _mm512_loadu_ps(a);

		_mm512_storeu_ps(
			a, _mm512_add_ps(o, scale_ps(_mm512_cvtepi32_ps(v[s]), e, e23, fast)));
	}
}

/*
 * How far ahead of the step being read the first token's pass prefetches the weight planes
 * (lut_avx2.c's PLANES_PREFETCH; the planes stream from memory once per call and a chunk's
 * steps are 64-byte lines too short a run for the hardware prefetcher).
 */
#define PLANES_PREFETCH 2048

AI void chunk(const uint8_t *wp, const uint8_t *const tp[4], uint32_t n_steps, bool uniform,
	      bool pf, int32_t cexp, float *a)
{
	const __m512i nib = _mm512_set1_epi8(0x0f);
	__m512i awl = _mm512_setzero_si512(), ahl = awl, awh = awl, ahh = awl;
	__m512i bias = _mm512_set1_epi16((short)(n_steps << (LUT_BIAS_SHIFT - LUT_DIGIT_BITS + 1)));
	uint32_t off = 0;

	for (uint32_t s = 0; s < n_steps; s++, wp += 64, off += 64) {
		__m512i wv = _mm512_loadu_si512(wp);
		__m512i nl = _mm512_and_si512(wv, nib);
		__m512i nh = _mm512_and_si512(_mm512_srli_epi16(wv, 4), nib);
		__m512i g0l, g0h, g1l, g1h;

		if (pf)
			_mm_prefetch((const char *)wp + PLANES_PREFETCH, _MM_HINT_T0);
		if (uniform) {
			g0l = bcast_tab(tp[0] + off);
			g0h = bcast_tab(tp[0] + off + 16);
			g1l = bcast_tab(tp[0] + off + 32);
			g1h = bcast_tab(tp[0] + off + 48);
		} else {
			g0l = four_tabs(tp, off);
			g0h = four_tabs(tp, off + 16);
			g1l = four_tabs(tp, off + 32);
			g1h = four_tabs(tp, off + 48);
		}
		add_bytes(_mm512_shuffle_epi8(g0l, nl), _mm512_shuffle_epi8(g1l, nh), &awl, &ahl);
		add_bytes(_mm512_shuffle_epi8(g0h, nl), _mm512_shuffle_epi8(g1h, nh), &awh, &ahh);
	}
	fold(awl, ahl, awh, ahh, bias, _mm512_set1_epi32(cexp), cexp >= -126 && cexp <= 106, a);
}

static void store_tile(const struct lut_weight *w, uint32_t t, uint32_t hs, uint32_t he,
		       const float *f, float *y)
{
	const struct lut_lane *lane = w->lanes + ((size_t)t << 2) + (hs << 1);

	for (uint32_t l = hs << 1; l < he << 1; l++, lane++) {
		for (uint32_t j = 0; j < lane->n_rows; j++) {
			uint32_t r = (l << 4) + j;

			y[lane->row0 + j] = f[((r & 3) << 4) + (r >> 2)];
		}
	}
}

/* A half-tile is computed as its whole tile (one zmm covers 64 rows); only its rows are stored. */
void lut_tiles_avx512(const struct lut_weight *w, uint32_t h0, uint32_t h1, uint32_t m,
		      const struct lut_tok *toks, float *y, float *acc)
{
	size_t tile_bytes = w->tile_bytes;
	const uint8_t *tile;
	uint32_t t0, t1;

	lut_half_span(h0, h1, &t0, &t1);

	tile = lut_tile_planes(w, t0);
	for (uint32_t t = t0; t < t1; t++, tile += tile_bytes) {
		const struct lut_lane *lanes = w->lanes + ((size_t)t << 2);
		bool uniform = lanes[0].tab_off == lanes[1].tab_off &&
			       lanes[0].tab_off == lanes[2].tab_off &&
			       lanes[0].tab_off == lanes[3].tab_off;
		const uint8_t *wp = tile;
		size_t tab_off = 0;
		float *a = acc;
		float *yj = y;

		for (uint32_t j = 0; j < m; j++, a += LUT_TILE_ROWS)
			for (int r = 0; r < LUT_TILE_ROWS; r++)
				a[r] = 0.0f;
		for (uint32_t p = 0, c = 0; p < w->n_pairs; p += LUT_CHUNK_PAIRS, c++) {
			uint32_t n_steps = lut_chunk_steps(w, p);
			size_t chunk_w = (size_t)n_steps << 6; /* 64 bytes per step */
			a = acc;
			for (uint32_t j = 0; j < m; j++, a += LUT_TILE_ROWS) {
				const uint8_t *tp[4];

				for (int l = 0; l < 4; l++)
					tp[l] = toks[j].tab + lanes[l].tab_off + tab_off;
				/* the first token's pass brings the planes in for the others */
				if (uniform && !j)
					chunk(wp, tp, n_steps, true, true, toks[j].cexp[c], a);
				else if (uniform)
					chunk(wp, tp, n_steps, true, false, toks[j].cexp[c], a);
				else if (!j)
					chunk(wp, tp, n_steps, false, true, toks[j].cexp[c], a);
				else
					chunk(wp, tp, n_steps, false, false, toks[j].cexp[c], a);
			}
			wp += chunk_w;
			tab_off += chunk_w;
		}
		a = acc;
		for (uint32_t j = 0; j < m; j++, a += LUT_TILE_ROWS, yj += w->n_rows)
			store_tile(w, t, lut_half_lo(t, h0), lut_half_hi(t, h1), a, yj);
	}
}
