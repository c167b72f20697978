// SPDX-License-Identifier: MIT
/*
 * AVX-512 (F + BW) lookup path: lut_avx2.c's tile loop with one 64-byte vector per 64-row
 * tile step, so a whole tile's weights are one load and two vpshufb. Tables are built by the
 * AVX2 code (every AVX-512 CPU has AVX2; the table build is not the hot loop). Same exact
 * arithmetic as lut_ref.c, bit for bit; see lut_avx2.c for the aw/ah word-sum trick.
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

AI void lookup(__m512i wv, __m512i tl, __m512i th, __m512i *aw, __m512i *ah)
{
	const __m512i nib = _mm512_set1_epi8(0x0f);
	__m512i u = _mm512_shuffle_epi8(tl, _mm512_and_si512(wv, nib));
	__m512i v = _mm512_shuffle_epi8(th, _mm512_and_si512(_mm512_srli_epi16(wv, 4), nib));

	*aw = _mm512_add_epi16(*aw, _mm512_add_epi16(u, v));
	*ah = _mm512_add_epi16(*ah,
			       _mm512_add_epi16(_mm512_srli_epi16(u, 8), _mm512_srli_epi16(v, 8)));
}

/* Slot 16 * v + d holds tile row 4 * d + v. */
AI void fold(__m512i aw, __m512i ah, __m512i bias, __m128i cnt, int32_t *a)
{
	__m512i lo = _mm512_sub_epi16(_mm512_sub_epi16(aw, _mm512_slli_epi16(ah, 8)), bias);
	__m512i hi = _mm512_sub_epi16(ah, bias);
	__m512i v[4] = {
		_mm512_srai_epi32(_mm512_slli_epi32(lo, 16), 16), /* rows 4d */
		_mm512_srai_epi32(_mm512_slli_epi32(hi, 16), 16), /* rows 4d + 1 */
		_mm512_srai_epi32(lo, 16),			  /* rows 4d + 2 */
		_mm512_srai_epi32(hi, 16),			  /* rows 4d + 3 */
	};

	for (int s = 0; s < 4; s++, a += 16) {
		__m512i o = _mm512_loadu_si512(a);

		_mm512_storeu_si512(a, _mm512_add_epi32(o, _mm512_sll_epi32(v[s], cnt)));
	}
}

AI void chunk(const uint8_t *wp, const uint8_t *const tp[4], uint32_t n_steps, bool uniform,
	      uint8_t dshift, int32_t *a)
{
	__m512i aw = _mm512_setzero_si512(), ah = aw;
	__m512i bias = _mm512_set1_epi16((short)(n_steps << 8));
	__m128i cnt = _mm_cvtsi32_si128(dshift);
	uint32_t off = 0;

	for (uint32_t s = 0; s < n_steps; s++, wp += 64, off += 32) {
		__m512i wv = _mm512_loadu_si512(wp);

		if (uniform)
			lookup(wv, bcast_tab(tp[0] + off), bcast_tab(tp[0] + off + 16), &aw, &ah);
		else
			lookup(wv, four_tabs(tp, off), four_tabs(tp, off + 16), &aw, &ah);
	}
	fold(aw, ah, bias, cnt, a);
}

static void store_tile(const struct lut_weight *w, uint32_t t, const int32_t *a, int32_t s_base,
		       float *y)
{
	const struct lut_lane *lane = w->lanes + ((size_t)t << 2);
	__m512i e = _mm512_set1_epi32(s_base);
	float f[LUT_TILE_ROWS];

	for (int v = 0; v < LUT_TILE_ROWS; v += 16)
		_mm512_storeu_ps(f + v, shift_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(a + v)), e));
	for (uint32_t l = 0; l < 4; l++, lane++) {
		for (uint32_t j = 0; j < lane->n_rows; j++) {
			uint32_t r = (l << 4) + j;

			y[lane->row0 + j] = f[((r & 3) << 4) + (r >> 2)];
		}
	}
}

void lut_tiles_avx512(const struct lut_weight *w, uint32_t t0, uint32_t t1, uint32_t m,
		      const struct lut_tok *toks, float *y, int32_t *acc)
{
	size_t step_bytes = (size_t)w->bits << 6, tile_bytes = w->tile_bytes;
	const uint8_t *tile = w->planes;

	for (uint32_t t = 0; t < t0; t++) {
		tile += tile_bytes;
		LUT_OPAQUE(tile);
	}
	for (uint32_t t = t0; t < t1; t++, tile += tile_bytes) {
		const struct lut_lane *lanes = w->lanes + ((size_t)t << 2);
		bool uniform = lanes[0].tab_off == lanes[1].tab_off &&
			       lanes[0].tab_off == lanes[2].tab_off &&
			       lanes[0].tab_off == lanes[3].tab_off;
		const uint8_t *wp = tile;
		size_t tab_off = 0;
		int32_t *a = acc;
		float *yj = y;

		for (uint32_t j = 0; j < m; j++, a += LUT_TILE_ROWS)
			for (int r = 0; r < LUT_TILE_ROWS; r++)
				a[r] = 0;
		for (uint32_t p = 0, c = 0; p < w->n_pairs; p += LUT_CHUNK_PAIRS, c++) {
			uint32_t n_pairs =
				w->n_pairs - p < LUT_CHUNK_PAIRS ? w->n_pairs - p : LUT_CHUNK_PAIRS;
			uint32_t n_steps = 0;
			size_t chunk_w = 0;

			for (uint32_t q = 0; q < n_pairs; q++) {
				n_steps += w->bits;
				chunk_w += step_bytes;
				LUT_OPAQUE(n_steps);
				LUT_OPAQUE(chunk_w);
			}
			a = acc;
			for (uint32_t j = 0; j < m; j++, a += LUT_TILE_ROWS) {
				const uint8_t *tp[4];

				for (int l = 0; l < 4; l++)
					tp[l] = toks[j].tab + lanes[l].tab_off + tab_off;
				if (uniform)
					chunk(wp, tp, n_steps, true, toks[j].dshift[c], a);
				else
					chunk(wp, tp, n_steps, false, toks[j].dshift[c], a);
			}
			wp += chunk_w;
			tab_off += chunk_w >> 1;
		}
		a = acc;
		for (uint32_t j = 0; j < m; j++, a += LUT_TILE_ROWS, yj += w->n_rows)
			store_tile(w, t, a, toks[j].s_base, yj);
	}
}
