// SPDX-License-Identifier: MIT
/*
 * AVX2 path: the same arithmetic as lut_ref.c, bit for bit, eight floats or 32 rows at a time.
 * Compiled alone with -mavx2; the only multiply-free-ness proof is mk/nomul.sh's disassembly.
 *
 * Lookup: vpshufb picks, for 32 rows at once, the table entry (int8 + 128, so unsigned) of
 * each row's sign nibble. The bytes are summed as 16-bit words (aw: low byte + 256 * high
 * byte, modulo 2^16) and, separately, the high bytes (ah = words >> 8): then the even rows'
 * sums are aw - (ah << 8) and the odd rows' ah, exact while a chunk has at most 257
 * lookups. Three operations per 32 lookups, and no widening in the inner loop.
 */
#include "kernels/internal.h"

#include <immintrin.h>
#include <stdbool.h>

#define AI static inline __attribute__((always_inline))

/* lut_shift_f32 on eight lanes, same tests in the same order. */
AI __m256 shift_ps(__m256 x, __m256i e)
{
	__m256i u = _mm256_castps_si256(x);
	__m256i ex = _mm256_and_si256(_mm256_srli_epi32(u, 23), _mm256_set1_epi32(0xff));
	__m256i ne = _mm256_add_epi32(ex, e);
	__m256i sign = _mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u));
	__m256i res = _mm256_add_epi32(u, _mm256_slli_epi32(e, 23));
	__m256i inf_m = _mm256_cmpgt_epi32(ne, _mm256_set1_epi32(254));
	__m256i zero_m = _mm256_or_si256(_mm256_cmpeq_epi32(ex, _mm256_setzero_si256()),
					 _mm256_cmpgt_epi32(_mm256_set1_epi32(1), ne));

	res = _mm256_blendv_epi8(res, _mm256_or_si256(sign, _mm256_set1_epi32(0x7f800000)), inf_m);
	res = _mm256_blendv_epi8(res, sign, zero_m);
	return _mm256_castsi256_ps(res);
}

/* Lanes j < n set (for masked loads of a ragged tail). */
AI __m256i tail_mask(uint32_t n)
{
	const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);

	return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

AI float hmax_ps(__m256 v)
{
	__m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	m = _mm_max_ps(m, _mm_movehl_ps(m, m));
	m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
	return _mm_cvtss_f32(m);
}

/* Pass 1 for one (rowset, plane): alpha-shifted activations and chunk maxima. */
static void shift_row(const struct lut_weight *w, const float *x, const int32_t *e,
		      const uint32_t *sign, const uint32_t *keep, float *row, float *mx)
{
	const __m256i abs_m = _mm256_set1_epi32(0x7fffffff);
	uint32_t ts = w->n_col_blocks, in_c = 0, c = 0, cb = 0, in_cb = 0;
	__m256 vmax = _mm256_setzero_ps();

	for (uint32_t k = 0; k < w->n_cols + 7 - (w->n_cols + 7) % 8; k += 8) {
		uint32_t left = w->n_cols - k;
		__m256i m = tail_mask(left);
		__m256 xv = _mm256_maskload_ps(x + k, m), v = _mm256_setzero_ps(), a, h;
		const int32_t *et = e;
		const uint32_t *st = sign, *kt = keep;

		for (uint32_t t = 0; t < w->n_terms; t++, et += ts, st += ts, kt += ts) {
			__m256i ev, sv, kv;
			__m256 s;

			if (w->col_block == 1) {
				ev = _mm256_maskload_epi32((const int *)et + k, m);
				sv = _mm256_maskload_epi32((const int *)st + k, m);
				kv = _mm256_maskload_epi32((const int *)kt + k, m);
			} else {
				ev = _mm256_set1_epi32(et[cb]);
				sv = _mm256_set1_epi32((int)st[cb]);
				kv = _mm256_set1_epi32((int)kt[cb]);
			}
			s = shift_ps(xv, ev);
			s = _mm256_castsi256_ps(
				_mm256_and_si256(_mm256_xor_si256(_mm256_castps_si256(s), sv), kv));
			v = _mm256_add_ps(v, s);
		}
		_mm256_storeu_ps(row + k, v);
		a = _mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(v), abs_m));
		h = _mm256_hadd_ps(a, a);
		h = _mm256_hadd_ps(h, h);
		vmax = _mm256_max_ps(vmax, h);
		if (w->col_block != 1) {
			in_cb += 8;
			if (in_cb == w->col_block) {
				in_cb = 0;
				cb++;
			}
		}
		if (++in_c == LUT_CHUNK_PAIRS || left <= 8) {
			float hm = hmax_ps(vmax);

			mx[c] = hm > mx[c] ? hm : mx[c];
			vmax = _mm256_setzero_ps();
			in_c = 0;
			c++;
		}
	}
}

/* 16 int32 entries of one group (a, b, c, d broadcast) as two vectors, entries 0-7, 8-15. */
AI void group_entries(__m256 a, __m256 b, __m256 c, __m256 d, __m256i *lo, __m256i *hi)
{
	const __m256 neg = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
	const __m256 ma =
		_mm256_castsi256_ps(_mm256_setr_epi32((int)0x80000000u, 0, (int)0x80000000u, 0,
						      (int)0x80000000u, 0, (int)0x80000000u, 0));
	const __m256 mb =
		_mm256_castsi256_ps(_mm256_setr_epi32((int)0x80000000u, (int)0x80000000u, 0, 0,
						      (int)0x80000000u, (int)0x80000000u, 0, 0));
	const __m256 mc = _mm256_castsi256_ps(_mm256_setr_epi32((int)0x80000000u, (int)0x80000000u,
								(int)0x80000000u, (int)0x80000000u,
								0, 0, 0, 0));
	__m256 p = _mm256_add_ps(_mm256_xor_ps(a, ma), _mm256_xor_ps(b, mb));
	__m256 cs = _mm256_xor_ps(c, mc);
	__m256 qlo = _mm256_add_ps(cs, _mm256_xor_ps(d, neg));
	__m256 qhi = _mm256_add_ps(cs, d);

	*lo = _mm256_cvtps_epi32(_mm256_add_ps(p, qlo));
	*hi = _mm256_cvtps_epi32(_mm256_add_ps(p, qhi));
}

/* Pass 3 for one pair: 32 table bytes (group 2p then 2p+1) from 8 activations. */
AI void pair_tables(const float *xp, __m256i e, uint8_t *dst)
{
	__m256 v = shift_ps(_mm256_loadu_ps(xp), e);
	__m256i a, b, c, d, ab, cd, r;

	group_entries(_mm256_permutevar8x32_ps(v, _mm256_set1_epi32(0)),
		      _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(1)),
		      _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(2)),
		      _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(3)), &a, &b);
	group_entries(_mm256_permutevar8x32_ps(v, _mm256_set1_epi32(4)),
		      _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(5)),
		      _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(6)),
		      _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(7)), &c, &d);
	/* packs work per 128-bit lane: dwords come out as g0[0-3] g0[8-11] g1[0-3] g1[8-11]
	 * g0[4-7] g0[12-15] g1[4-7] g1[12-15] */
	ab = _mm256_packs_epi32(a, b);
	cd = _mm256_packs_epi32(c, d);
	r = _mm256_packs_epi16(ab, cd);
	r = _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
	r = _mm256_max_epi8(r, _mm256_set1_epi8(-127));
	r = _mm256_xor_si256(r, _mm256_set1_epi8((char)0x80));
	_mm256_storeu_si256((__m256i *)dst, r);
}

void lut_tables_avx2(const struct lut_weight *w, const float *x, float *xs, float *mx,
		     struct lut_tok *tok)
{
	uint32_t kp = w->n_pairs * LUT_PAIR_COLS, term_step = w->term_step;
	int32_t *s = (int32_t *)(mx + w->n_chunks);
	const int32_t *e = w->terms.e;
	const uint32_t *sign = w->terms.sign, *keep = w->terms.keep;
	uint8_t *dst = tok->tab;
	float *row = xs;

	for (uint32_t c = 0; c < w->n_chunks; c++)
		mx[c] = 0.0f;
	for (uint32_t r = 0; r < w->n_rowsets; r++) {
		for (uint32_t i = 0; i < w->bits; i++) {
			shift_row(w, x, e, sign, keep, row, mx);
			row += kp;
			LUT_OPAQUE(row);
			e += term_step;
			sign += term_step;
			keep += term_step;
			LUT_OPAQUE(e);
			LUT_OPAQUE(sign);
			LUT_OPAQUE(keep);
		}
	}
	for (uint32_t c = 0; c < w->n_chunks; c++)
		s[c] = lut_chunk_exp(mx[c]);
	tok->s_base = lut_chunk_shifts(w, s, tok->dshift);
	for (uint32_t r = 0; r < w->n_rowsets; r++) {
		for (uint32_t p = 0, c = 0, in_c = 0, col = 0; p < w->n_pairs;
		     p++, col += LUT_PAIR_COLS) {
			__m256i ev = _mm256_set1_epi32(-(tok->s_base + tok->dshift[c]));
			const float *pl = xs;

			for (uint32_t i = 0; i < w->bits; i++, pl += kp) {
				pair_tables(pl + col, ev, dst);
				dst += 32;
				LUT_OPAQUE(dst);
			}
			if (++in_c == LUT_CHUNK_PAIRS) {
				in_c = 0;
				c++;
			}
		}
		for (uint32_t i = 0; i < w->bits; i++) {
			xs += kp; /* next rowset's planes */
			LUT_OPAQUE(xs);
		}
	}
}

AI __m256i bcast_tab(const uint8_t *p)
{
	return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
}

AI __m256i two_tabs(const uint8_t *lo, const uint8_t *hi)
{
	return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)lo)),
				       _mm_loadu_si128((const __m128i *)hi), 1);
}

AI void lookup(__m256i wv, __m256i tl, __m256i th, __m256i *aw, __m256i *ah)
{
	const __m256i nib = _mm256_set1_epi8(0x0f);
	__m256i u = _mm256_shuffle_epi8(tl, _mm256_and_si256(wv, nib));
	__m256i v = _mm256_shuffle_epi8(th, _mm256_and_si256(_mm256_srli_epi16(wv, 4), nib));

	*aw = _mm256_add_epi16(*aw, _mm256_add_epi16(u, v));
	*ah = _mm256_add_epi16(*ah,
			       _mm256_add_epi16(_mm256_srli_epi16(u, 8), _mm256_srli_epi16(v, 8)));
}

/* Fold one half-tile's chunk sums into its int32 slots (see the slot order in store_tile). */
AI void fold(__m256i aw, __m256i ah, __m256i bias, __m128i cnt, int32_t *a)
{
	__m256i lo = _mm256_sub_epi16(_mm256_sub_epi16(aw, _mm256_slli_epi16(ah, 8)), bias);
	__m256i hi = _mm256_sub_epi16(ah, bias);
	__m256i v[4] = {
		_mm256_srai_epi32(_mm256_slli_epi32(lo, 16), 16), /* rows 4d */
		_mm256_srai_epi32(_mm256_slli_epi32(hi, 16), 16), /* rows 4d + 1 */
		_mm256_srai_epi32(lo, 16),			  /* rows 4d + 2 */
		_mm256_srai_epi32(hi, 16),			  /* rows 4d + 3 */
	};

	for (int s = 0; s < 4; s++, a += 8) {
		__m256i o = _mm256_loadu_si256((const __m256i *)a);

		o = _mm256_add_epi32(o, _mm256_sll_epi32(v[s], cnt));
		_mm256_storeu_si256((__m256i *)a, o);
	}
}

/*
 * One chunk of one token over a 64-row tile: @n_steps (pair, plane) steps, weights 64 bytes
 * and tables 32 bytes per step. @uniform: all four lanes read the same tables.
 */
AI void chunk(const uint8_t *wp, const uint8_t *const tp[4], uint32_t n_steps, bool uniform,
	      uint8_t dshift, int32_t *a)
{
	__m256i aw0 = _mm256_setzero_si256(), ah0 = aw0, aw1 = aw0, ah1 = aw0;
	__m256i bias = _mm256_set1_epi16((short)(n_steps << 8)); /* 2 lookups * 128 per step */
	__m128i cnt = _mm_cvtsi32_si128(dshift);
	uint32_t off = 0;

	for (uint32_t s = 0; s < n_steps; s++, wp += 64, off += 32) {
		__m256i w0 = _mm256_loadu_si256((const __m256i *)wp);
		__m256i w1 = _mm256_loadu_si256((const __m256i *)(wp + 32));

		if (uniform) {
			__m256i tl = bcast_tab(tp[0] + off), th = bcast_tab(tp[0] + off + 16);

			lookup(w0, tl, th, &aw0, &ah0);
			lookup(w1, tl, th, &aw1, &ah1);
		} else {
			lookup(w0, two_tabs(tp[0] + off, tp[1] + off),
			       two_tabs(tp[0] + off + 16, tp[1] + off + 16), &aw0, &ah0);
			lookup(w1, two_tabs(tp[2] + off, tp[3] + off),
			       two_tabs(tp[2] + off + 16, tp[3] + off + 16), &aw1, &ah1);
		}
	}
	fold(aw0, ah0, bias, cnt, a);
	fold(aw1, ah1, bias, cnt, a + 32);
}

/*
 * Slot s of the int32 sums holds tile row 32 * (s / 32) + 4 * (s % 8) + (s / 8) % 4 (the
 * even/odd and low/high word split of fold()).
 */
static void store_tile(const struct lut_weight *w, uint32_t t, const int32_t *a, int32_t s_base,
		       float *y)
{
	const struct lut_lane *lane = w->lanes + ((size_t)t << 2);
	__m256i e = _mm256_set1_epi32(s_base);
	float f[LUT_TILE_ROWS];

	for (int v = 0; v < LUT_TILE_ROWS; v += 8)
		_mm256_storeu_ps(
			f + v,
			shift_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(a + v))),
				 e));
	for (uint32_t l = 0; l < 4; l++, lane++) {
		for (uint32_t j = 0; j < lane->n_rows; j++) {
			uint32_t r = (l << 4) + j, rr = r & 31;

			y[lane->row0 + j] = f[(r & 32) + ((rr & 3) << 3) + (rr >> 2)];
		}
	}
}

void lut_tiles_avx2(const struct lut_weight *w, uint32_t t0, uint32_t t1, uint32_t m,
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
		size_t tab_off = 0; /* of the current chunk within a rowset's tables */
		int32_t *a = acc;
		float *yj = y;

		for (uint32_t j = 0; j < m; j++, a += LUT_TILE_ROWS)
			for (int r = 0; r < LUT_TILE_ROWS; r++)
				a[r] = 0;
		for (uint32_t p = 0, c = 0; p < w->n_pairs; p += LUT_CHUNK_PAIRS, c++) {
			uint32_t n_pairs =
				w->n_pairs - p < LUT_CHUNK_PAIRS ? w->n_pairs - p : LUT_CHUNK_PAIRS;
			uint32_t n_steps = 0;
			size_t chunk_w = 0, chunk_t = 0;

			for (uint32_t q = 0; q < n_pairs; q++) {
				n_steps += w->bits;
				chunk_w += step_bytes;
				LUT_OPAQUE(n_steps);
				LUT_OPAQUE(chunk_w);
			}
			chunk_t = chunk_w >> 1;
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
			tab_off += chunk_t;
		}
		a = acc;
		for (uint32_t j = 0; j < m; j++, a += LUT_TILE_ROWS, yj += w->n_rows)
			store_tile(w, t, a, toks[j].s_base, yj);
	}
}
