// SPDX-License-Identifier: MIT
/*
 * AVX2 path: the same arithmetic as lut_ref.c, bit for bit, eight floats or 32 rows at a time.
 * Compiled alone with -mavx2; the only multiply-free-ness proof is kernels/nomul.sh's
 * disassembly.
 *
 * Lookup: vpshufb picks, for 32 rows at once, the low 7-bit digit of each row's table entry
 * (14-bit value + 8192, so unsigned) and, with a second vpshufb, its high digit. Digits are
 * below 128, so a step's two lookups (groups 2p and 2p+1) are added as bytes; each digit
 * plane is then summed as 16-bit words (aw: even-row byte + 256 * odd-row byte, modulo 2^16)
 * and, separately, its odd-row bytes (ah = words >> 8): the even rows' sums are then
 * aw - (ah << 8) and the odd rows' ah, exact while a chunk has at most 258 lookups (it has
 * at most 64). A row's chunk sum is low sum + 128 * high sum - 8192 * lookups.
 */
#include "kernels/internal.h"
#include "kernels/x86/lut_avx2_common.h"

#include <immintrin.h>
#include <stdbool.h>

AI float hmax_ps(__m256 v)
{
	__m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	m = _mm_max_ps(m, _mm_movehl_ps(m, m));
	m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
	return _mm_cvtss_f32(m);
}

/* Eight term codes as (code << 16) (struct lut_terms), from @p (8 readable codes). */
AI __m256i load_codes(const uint16_t *p)
{
	return _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16);
}

/*
 * Pass 1 for one (rowset, plane): alpha-shifted activations and chunk maxima. @fast: the
 * exponent ranges of x and of the terms keep every shift normal (see shift_fast_ps), so a
 * term is one integer add of its code to x's bits (exponent and sign together).
 */
AI void shift_row(const struct lut_weight *w, const float *x, const struct lut_span *sp,
		  const uint16_t *code, float *row, float *mx, bool fast)
{
	const __m256i abs_m = _mm256_set1_epi32(0x7fffffff), zero = _mm256_setzero_si256();
	const __m256i bias23 = _mm256_set1_epi32((int32_t)((uint32_t)w->terms.e_bias << 23));
	uint32_t ts = w->n_col_blocks, in_c = 0, c = sp->c0, cb = sp->cb0, in_cb = sp->in_cb0;
	uint32_t kend = sp->kend;
	__m256 vmax = _mm256_setzero_ps(), prev = vmax;
	bool pending = false; /* prev holds the |v| of an even step, awaiting its partner */

	for (uint32_t k = sp->k0; k < kend; k += 8) {
		int32_t left = (int32_t)(w->n_cols - k); /* <= 0 in the zero padding */
		__m256i m = tail_mask((uint32_t)left);
		__m256 xv = load8_ps(x + k, left, m), v = _mm256_setzero_ps(), a, h;
		__m256i xadj = _mm256_sub_epi32(_mm256_castps_si256(xv), bias23);
		const uint16_t *ct = code;

		for (uint32_t t = 0; t < w->n_terms; t++, ct += ts) {
			__m256i cv = w->col_block == 1
					     ? load_codes(ct + k)
					     : _mm256_set1_epi32((int32_t)((uint32_t)ct[cb] << 16));
			__m256i empty = _mm256_cmpeq_epi32(cv, zero);
			__m256i s;

			if (fast) {
				s = _mm256_add_epi32(xadj, cv);
			} else {
				__m256i ev =
					_mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(cv, 23),
									  _mm256_set1_epi32(0xff)),
							 _mm256_set1_epi32(w->terms.e_bias));

				s = _mm256_xor_si256(
					_mm256_castps_si256(shift_ps(xv, ev)),
					_mm256_and_si256(cv, _mm256_set1_epi32((int)0x80000000u)));
			}
			v = _mm256_add_ps(v, _mm256_castsi256_ps(_mm256_andnot_si256(empty, s)));
		}
		if (fast) /* zero and subnormal x: +0 (their terms were garbage) */
			v = _mm256_andnot_ps(
				_mm256_castsi256_ps(_mm256_cmpeq_epi32(
					_mm256_and_si256(_mm256_castps_si256(xv),
							 _mm256_set1_epi32(0x7f800000)),
					_mm256_setzero_si256())),
				v);
		_mm256_storeu_ps(row + k, v);
		/* group sums (|a| + |b|) + (|c| + |d|) of 16 columns per two hadds */
		a = _mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(v), abs_m));
		if (pending) {
			h = _mm256_hadd_ps(prev, a);
			vmax = _mm256_max_ps(vmax, _mm256_hadd_ps(h, h));
			pending = false;
		} else {
			prev = a;
			pending = true;
		}
		if (w->col_block != 1) {
			in_cb += 8;
			if (in_cb == w->col_block) {
				in_cb = 0;
				cb++;
			}
		}
		if (++in_c == LUT_CHUNK_PAIRS || left <= 8) {
			float hm;

			if (pending) {
				h = _mm256_hadd_ps(prev, _mm256_setzero_ps());
				vmax = _mm256_max_ps(vmax, _mm256_hadd_ps(h, h));
				pending = false;
			}
			hm = hmax_ps(vmax);

			mx[c] = hm > mx[c] ? hm : mx[c];
			vmax = _mm256_setzero_ps();
			in_c = 0;
			c++;
		}
	}
}

/*
 * Both groups of a pair at once, one per 128-bit lane (columns 8p..8p+3 in the low lane,
 * 8p+4..8p+7 in the high one, as they load). Vector t holds entries 4t..4t+3 of each group:
 * lane j is entry idx = 4t + j, so its a and b signs (idx bits 0, 1) vary across the lanes
 * and its c and d signs (bits 2, 3) are fixed by t. The float operations are the
 * reference's, in its order: p = (+-a) + (+-b), q = (+-c) + (+-d), entry = p + q.
 */
AI void pair_entries(__m256 v, __m256i e[4])
{
	const __m256 sgn = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
	const __m256 ma =
		_mm256_castsi256_ps(_mm256_setr_epi32((int)0x80000000u, 0, (int)0x80000000u, 0,
						      (int)0x80000000u, 0, (int)0x80000000u, 0));
	const __m256 mb =
		_mm256_castsi256_ps(_mm256_setr_epi32((int)0x80000000u, (int)0x80000000u, 0, 0,
						      (int)0x80000000u, (int)0x80000000u, 0, 0));
	__m256 a = _mm256_permute_ps(v, 0x00), b = _mm256_permute_ps(v, 0x55);
	__m256 c = _mm256_permute_ps(v, 0xaa), d = _mm256_permute_ps(v, 0xff);
	__m256 nc = _mm256_xor_ps(c, sgn), nd = _mm256_xor_ps(d, sgn);
	__m256 p = _mm256_add_ps(_mm256_xor_ps(a, ma), _mm256_xor_ps(b, mb));

	e[0] = _mm256_cvtps_epi32(_mm256_add_ps(p, _mm256_add_ps(nc, nd)));
	e[1] = _mm256_cvtps_epi32(_mm256_add_ps(p, _mm256_add_ps(c, nd)));
	e[2] = _mm256_cvtps_epi32(_mm256_add_ps(p, _mm256_add_ps(nc, d)));
	e[3] = _mm256_cvtps_epi32(_mm256_add_ps(p, _mm256_add_ps(c, d)));
}

/*
 * Pass 1 of a token's table build over span @sp, every rowset and plane: alpha-shifted
 * activations into @xs (rows n_pairs * 8 floats apart) and the chunk maxima into @mx.
 */
AI void shift_rows(const struct lut_weight *w, const float *x, const struct lut_span *sp, float *xs,
		   float *mx)
{
	uint32_t kp = w->n_pairs * LUT_PAIR_COLS, term_step = w->term_step;
	const uint16_t *code = w->terms.code;
	bool fast = shifts_stay_normal(w, x, sp);

	for (uint32_t c = sp->c0; c < sp->c1; c++)
		mx[c] = 0.0f;
	for (uint32_t r = 0; r < w->n_rowsets; r++) {
		for (uint32_t i = 0; i < w->bits; i++) {
			if (fast)
				shift_row(w, x, sp, code, xs, mx, true);
			else
				shift_row(w, x, sp, code, xs, mx, false);
			xs += kp;
			LUT_OPAQUE(xs);
			code += term_step;
			LUT_OPAQUE(code);
		}
	}
}

/*
 * The entries of pair_entries() to the pair's 64 table bytes: for group 2p, then 2p+1, the
 * low 7-bit digits of the 16 (entry clamped to +-LUT_ENTRY_MAX) + LUT_ENTRY_BIAS, then their
 * high digits. Signed packing saturates at +-32767 first, then min and max clamp as the
 * reference does.
 */
AI void pair_bytes(const __m256i e[4], uint8_t *dst)
{
	const __m256i mx = _mm256_set1_epi16(LUT_ENTRY_MAX), mn = _mm256_set1_epi16(-LUT_ENTRY_MAX);
	const __m256i bias = _mm256_set1_epi16(LUT_ENTRY_BIAS),
		      dm = _mm256_set1_epi16(LUT_DIGIT_MASK);
	/* per lane: entries 0-7 (resp. 8-15) of that lane's group as biased words */
	__m256i w0 = _mm256_add_epi16(
		_mm256_max_epi16(_mm256_min_epi16(_mm256_packs_epi32(e[0], e[1]), mx), mn), bias);
	__m256i w1 = _mm256_add_epi16(
		_mm256_max_epi16(_mm256_min_epi16(_mm256_packs_epi32(e[2], e[3]), mx), mn), bias);
	/* per lane: 8 low digits, 8 high digits (both below 128: unsigned packing keeps them) */
	__m256i s0 = _mm256_packus_epi16(_mm256_and_si256(w0, dm),
					 _mm256_srli_epi16(w0, LUT_DIGIT_BITS));
	__m256i s1 = _mm256_packus_epi16(_mm256_and_si256(w1, dm),
					 _mm256_srli_epi16(w1, LUT_DIGIT_BITS));
	__m256i lo = _mm256_unpacklo_epi64(s0, s1), hi = _mm256_unpackhi_epi64(s0, s1);

	_mm256_storeu_si256((__m256i *)dst, _mm256_permute2x128_si256(lo, hi, 0x20));
	_mm256_storeu_si256((__m256i *)(dst + 32), _mm256_permute2x128_si256(lo, hi, 0x31));
}

/*
 * Pass 3 for one pair and plane: 64 table bytes (group 2p, then 2p+1) from 8 activations.
 * @fast: the chunk's scale shifts up (or not at all), so no shifted value leaves the
 * normal range (all are at most the chunk maximum, which lands below 2^15).
 */
AI void pair_tables(const float *xp, __m256i e, bool fast, uint8_t *dst)
{
	__m256 v = fast ? shift_fast_ps(_mm256_loadu_ps(xp), _mm256_slli_epi32(e, 23))
			: shift_ps(_mm256_loadu_ps(xp), e);
	__m256i ent[4];

	pair_entries(v, ent);
	pair_bytes(ent, dst);
}

void lut_tables_avx2(const struct lut_weight *w, const float *x, const struct lut_span *sp,
		     float *xs, float *mx, struct lut_tok *tok)
{
	uint32_t kp = w->n_pairs * LUT_PAIR_COLS;
	uint8_t *tab = tok->tab;

	shift_rows(w, x, sp, xs, mx);
	for (uint32_t c = sp->c0; c < sp->c1; c++)
		tok->cexp[c] = lut_chunk_exp(mx[c]);
	for (uint32_t r = 0; r < w->n_rowsets; r++, tab += sp->rowset_tab) {
		uint8_t *dst = tab + sp->tab0;

		for (uint32_t p = sp->p0, c = sp->c0, in_c = 0, col = sp->k0; p < sp->p1;
		     p++, col += LUT_PAIR_COLS) {
			__m256i ev = _mm256_set1_epi32(-tok->cexp[c]);
			const float *pl = xs;

			if (tok->cexp[c] <= 0) {
				for (uint32_t i = 0; i < w->bits; i++, pl += kp) {
					pair_tables(pl + col, ev, true, dst);
					dst += 64;
					LUT_OPAQUE(dst);
				}
			} else {
				for (uint32_t i = 0; i < w->bits; i++, pl += kp) {
					pair_tables(pl + col, ev, false, dst);
					dst += 64;
					LUT_OPAQUE(dst);
				}
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

/*
 * How far ahead of the step being read the one-token lookups prefetch the weight planes (into
 * L1; the first half-tile pass only, the second reads the same lines). A token's pass streams
 * every plane once from memory, and the planes of a tile's chunk are 64-byte lines read at a
 * 64-byte stride by one half pass and then again by the other: measured on the Zen 3 VM
 * (bench-step, 1 sequence, acc-3, 5 alternating runs each), 2 KB ahead made a decode step
 * 7-9% faster at 1 thread and 5-8% at 2; 4 KB gave the same.
 */
#define PLANES_PREFETCH 2048

/* One digit plane's lookups of 32 rows summed as described at the top of the file. */
AI void add_bytes(__m256i u, __m256i v, __m256i *aw, __m256i *ah)
{
	__m256i s = _mm256_add_epi8(u, v); /* two digits: at most 254 */

	*aw = _mm256_add_epi16(*aw, s);
	*ah = _mm256_add_epi16(*ah, _mm256_srli_epi16(s, 8));
}

/*
 * lut_shift_f32(f, e) for f converted from an int32 below 2^21 in magnitude: for such f
 * (zero or exponent field 127..148) and e in [-126, 106] no result leaves the normal range,
 * so only zero needs care; otherwise the general shift.
 */
AI __m256 scale_ps(__m256 f, __m256i e, __m256i e23, bool fast)
{
	__m256i u = _mm256_castps_si256(f);

	if (!fast)
		return shift_ps(f, e);
	return _mm256_castsi256_ps(_mm256_andnot_si256(
		_mm256_cmpeq_epi32(u, _mm256_setzero_si256()), _mm256_add_epi32(u, e23)));
}

/*
 * Fold one half-tile's chunk sums into its float slots (see the slot order in store_tile):
 * @aw/@ah of the low and the high digits, @bias = 64 * lookups per row (the entry bias in
 * high-digit units).
 */
AI void fold(__m256i awl, __m256i ahl, __m256i awh, __m256i ahh, __m256i bias, __m256i e, bool fast,
	     float *a)
{
	const __m256i low = _mm256_set1_epi32(0xffff);
	__m256i e23 = _mm256_slli_epi32(e, 23);
	__m256i le = _mm256_sub_epi16(awl, _mm256_slli_epi16(ahl, 8)); /* even rows, >= 0 */
	__m256i lo = ahl;					       /* odd rows, >= 0 */
	__m256i he = _mm256_sub_epi16(_mm256_sub_epi16(awh, _mm256_slli_epi16(ahh, 8)), bias);
	__m256i ho = _mm256_sub_epi16(ahh, bias); /* high sums - 64 * lookups: signed */
	__m256i v[4] = {
		/* rows 4d */
		_mm256_add_epi32(_mm256_and_si256(le, low),
				 _mm256_slli_epi32(_mm256_srai_epi32(_mm256_slli_epi32(he, 16), 16),
						   LUT_DIGIT_BITS)),
		/* rows 4d + 1 */
		_mm256_add_epi32(_mm256_and_si256(lo, low),
				 _mm256_slli_epi32(_mm256_srai_epi32(_mm256_slli_epi32(ho, 16), 16),
						   LUT_DIGIT_BITS)),
		/* rows 4d + 2 */
		_mm256_add_epi32(_mm256_srli_epi32(le, 16),
				 _mm256_slli_epi32(_mm256_srai_epi32(he, 16), LUT_DIGIT_BITS)),
		/* rows 4d + 3 */
		_mm256_add_epi32(_mm256_srli_epi32(lo, 16),
				 _mm256_slli_epi32(_mm256_srai_epi32(ho, 16), LUT_DIGIT_BITS)),
	};

	for (int s = 0; s < 4; s++, a += 8) {
		__m256 o = _mm256_loadu_ps(a);

		o = _mm256_add_ps(o, scale_ps(_mm256_cvtepi32_ps(v[s]), e, e23, fast));
		_mm256_storeu_ps(a, o);
	}
}

/*
 * One chunk of one token over a 64-row tile, 32 rows at a time: @n_steps (pair, plane) steps,
 * weights 64 bytes and tables 64 bytes per step. @uniform: all four lanes read the same
 * tables.
 */
AI void chunk(const uint8_t *wp, const uint8_t *const tp[4], uint32_t n_steps, bool uniform,
	      int32_t cexp, uint32_t hs, uint32_t he, float *a)
{
	const __m256i nib = _mm256_set1_epi8(0x0f);
	/* 2 lookups per step, each biased by 64 high-digit units */
	__m256i bias = _mm256_set1_epi16((short)(n_steps << (LUT_BIAS_SHIFT - LUT_DIGIT_BITS + 1)));
	__m256i e = _mm256_set1_epi32(cexp);
	bool fast = cexp >= -126 && cexp <= 106;

	if (hs) {
		wp += 32;
		a += 32;
	}
	for (uint32_t h = hs; h < he; h++, wp += 32, a += 32) {
		__m256i awl = _mm256_setzero_si256(), ahl = awl, awh = awl, ahh = awl;
		const uint8_t *w = wp, *t0 = tp[2 * h], *t1 = tp[2 * h + 1];

		for (uint32_t s = 0; s < n_steps; s++, w += 64, t0 += 64, t1 += 64) {
			__m256i wv = _mm256_loadu_si256((const __m256i *)w);
			__m256i nl = _mm256_and_si256(wv, nib);
			__m256i nh = _mm256_and_si256(_mm256_srli_epi16(wv, 4), nib);
			__m256i g0l, g0h, g1l, g1h;

			if (h == hs)
				_mm_prefetch((const char *)w + PLANES_PREFETCH, _MM_HINT_T0);
			if (uniform) {
				g0l = bcast_tab(t0);
				g0h = bcast_tab(t0 + 16);
				g1l = bcast_tab(t0 + 32);
				g1h = bcast_tab(t0 + 48);
			} else {
				g0l = two_tabs(t0, t1);
				g0h = two_tabs(t0 + 16, t1 + 16);
				g1l = two_tabs(t0 + 32, t1 + 32);
				g1h = two_tabs(t0 + 48, t1 + 48);
			}
			add_bytes(_mm256_shuffle_epi8(g0l, nl), _mm256_shuffle_epi8(g1l, nh), &awl,
				  &ahl);
			add_bytes(_mm256_shuffle_epi8(g0h, nl), _mm256_shuffle_epi8(g1h, nh), &awh,
				  &ahh);
		}
		fold(awl, ahl, awh, ahh, bias, e, fast, a);
	}
}

/*
 * Slot s of the float sums holds tile row 32 * (s / 32) + 4 * (s % 8) + (s / 8) % 4 (the
 * even/odd and low/high word split of fold()).
 */
static void store_tile(const struct lut_weight *w, uint32_t t, uint32_t hs, uint32_t he,
		       const float *f, float *y)
{
	const struct lut_lane *lane = w->lanes + ((size_t)t << 2) + (hs << 1);

	for (uint32_t l = hs << 1; l < he << 1; l++, lane++) {
		for (uint32_t j = 0; j < lane->n_rows; j++) {
			uint32_t r = (l << 4) + j, rr = r & 31;

			y[lane->row0 + j] = f[(r & 32) + ((rr & 3) << 3) + (rr >> 2)];
		}
	}
}

void lut_tiles_avx2(const struct lut_weight *w, uint32_t h0, uint32_t h1, uint32_t m,
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
		size_t tab_off = 0; /* of the current chunk within a rowset's tables */
		float *a = acc;
		float *yj = y;
		uint32_t hs = lut_half_lo(t, h0), he = lut_half_hi(t, h1);

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
				if (uniform)
					chunk(wp, tp, n_steps, true, toks[j].cexp[c], hs, he, a);
				else
					chunk(wp, tp, n_steps, false, toks[j].cexp[c], hs, he, a);
			}
			wp += chunk_w;
			tab_off += chunk_w; /* tables: 64 bytes per step, as the weights */
		}
		a = acc;
		for (uint32_t j = 0; j < m; j++, a += LUT_TILE_ROWS, yj += w->n_rows)
			store_tile(w, t, hs, he, a, yj);
	}
}
