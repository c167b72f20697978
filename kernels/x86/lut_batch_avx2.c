// SPDX-License-Identifier: MIT
/*
 * Batched lookups (AVX2): up to 16 tokens share each row's lookups. The per-token kernel
 * (lut_avx2.c) puts 32 rows in a vector and pays two vpshufb plus byte-sum bookkeeping per
 * 32 lookups of one token; here the tokens sit in the vector lanes (struct lut_batch), so a
 * row's sign nibble addresses one 32-byte entry row holding all 16 tokens' entries, and a
 * lookup is one load and about one and a half adds/shifts for 16 tokens.
 *
 * Exact integer sums as in the per-token path: entries (14-bit values, as the per-token tables
 * hold them) are stored here as u = v + 8192 in [1, 2^14), so the sum q of a quad of lookups
 * (two steps, quad()) fits 16 bits exactly. Per chunk a row keeps A = sum q (mod 2^16) and
 * H = sum (q >> 8): 256 H is the exact sum less the quads' low bytes (at most 16 * 255), so
 * the sum is 256 H + (A - 256 H mod 2^16), minus 8192 * lookups: the per-token path's
 * integer, converted and scaled with the same float operations in the same chunk order,
 * hence the same bits.
 */
#include "kernels/internal.h"
#include "kernels/x86/lut_avx2_common.h"

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

/*
 * The build works in token lanes from the start: a column's activations of the 16 tokens are
 * two vectors, lo = tokens 0-3 and 8-11, hi = tokens 4-7 and 12-15, so that packing an
 * entry's lo and hi int32 values (vpackssdw, per 128-bit lane) gives its 16 words in token
 * order, ready to store. Every token sees the float operations of lut_tables_avx2 in its
 * order (shift terms, chunk maximum, chunk scale, p = (+-a) + (+-b), q = (+-c) + (+-d),
 * p + q), hence the same entries.
 *
 * Per chunk (64 columns, one scale per token), in scratch of LUT_BATCH floats per column:
 * the transposed activations, then per (rowset, plane) the alpha-shifted ones.
 */
#define CHUNK_COLS   (LUT_CHUNK_PAIRS * LUT_PAIR_COLS)
#define CHUNK_FLOATS (CHUNK_COLS * LUT_BATCH)

/* r[j] <- column j of the 8 x 8 block r (row i = one token's eight columns). */
AI void transpose8(__m256 r[8])
{
	__m256 t[8], s[8];

#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
	}
#pragma GCC unroll 2
	for (int h = 0; h < 2; h++) {
		/* rows 4h..4h+3: columns 0 | 4, 1 | 5, 2 | 6, 3 | 7 */
		s[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
		s[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
		s[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
		s[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
	}
#pragma GCC unroll 4
	for (int j = 0; j < 4; j++) {
		r[j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x20);
		r[j + 4] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x31);
	}
}

/* Token rows of each lane vector: lo, then hi (see the top of this section). */
static const uint8_t lane_tok[2][8] = { { 0, 1, 2, 3, 8, 9, 10, 11 },
					{ 4, 5, 6, 7, 12, 13, 14, 15 } };

/*
 * Columns [k, k + 8) of the tokens' activations (@xr: row pointers, NULL past n_tok) into
 * @xt, LUT_BATCH floats per column (lo, hi); @left columns of x remain from k (<= 0: padding).
 */
AI void load_cols(const float *const xr[LUT_BATCH], uint32_t k, int32_t left, float *xt)
{
	__m256i m = tail_mask(left > 0 ? (uint32_t)left : 0);

	for (int h = 0; h < 2; h++) {
		__m256 r[8];

		for (int i = 0; i < 8; i++) {
			const float *p = xr[lane_tok[h][i]];

			r[i] = p && left > 0 ? load8_ps(p + k, left, m) : _mm256_setzero_ps();
		}
		transpose8(r);
		for (int j = 0; j < 8; j++)
			_mm256_storeu_ps(xt + j * LUT_BATCH + 8 * h, r[j]);
	}
}

/* (|a| + |b|) + (|c| + |d|) of one group's four columns at @v (LUT_BATCH floats apart). */
AI __m256 group_sum(const float *v)
{
	const __m256 abs_m = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	__m256 a = _mm256_and_ps(_mm256_loadu_ps(v), abs_m);
	__m256 b = _mm256_and_ps(_mm256_loadu_ps(v + LUT_BATCH), abs_m);
	__m256 c = _mm256_and_ps(_mm256_loadu_ps(v + 2 * LUT_BATCH), abs_m);
	__m256 d = _mm256_and_ps(_mm256_loadu_ps(v + 3 * LUT_BATCH), abs_m);

	return _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d));
}

/*
 * One column's alpha-shifted activations for the planes of one rowset, both lane vectors of
 * each: the sum of its terms (codes at @ct plane 0's, planes term_step apart, terms @ts
 * apart) as shift_row computes it, into @dst (planes CHUNK_FLOATS apart). An empty term
 * adds +0, which changes no sum (none is -0), so it is skipped by its mask. The column's
 * own values (and their zero test) are loaded once for all planes.
 */
AI void shift_col(const struct lut_weight *w, const float *xt, const uint16_t *ct, uint32_t ts,
		  bool fast, uint32_t n_terms, uint32_t bits, float *dst)
{
	const __m256i expm = _mm256_set1_epi32(0x7f800000), zero = _mm256_setzero_si256();
	const __m256i bias23 = _mm256_set1_epi32((int32_t)((uint32_t)w->terms.e_bias << 23));
	__m256 xv[2] = { _mm256_loadu_ps(xt), _mm256_loadu_ps(xt + 8) };
	__m256i xadj[2] = { _mm256_sub_epi32(_mm256_castps_si256(xv[0]), bias23),
			    _mm256_sub_epi32(_mm256_castps_si256(xv[1]), bias23) };
	/* zero and subnormal x: +0 (their terms were garbage) */
	__m256 xz[2] = { _mm256_castsi256_ps(_mm256_cmpeq_epi32(
				 _mm256_and_si256(_mm256_castps_si256(xv[0]), expm), zero)),
			 _mm256_castsi256_ps(_mm256_cmpeq_epi32(
				 _mm256_and_si256(_mm256_castps_si256(xv[1]), expm), zero)) };

#pragma GCC unroll 4
	for (uint32_t i = 0; i < bits; i++, ct += w->term_step, dst += CHUNK_FLOATS) {
		const uint16_t *c = ct;
		__m256 v[2] = { _mm256_setzero_ps(), _mm256_setzero_ps() };

#pragma GCC unroll 4
		for (uint32_t t = 0; t < n_terms; t++, c += ts) {
			__m256i cv = _mm256_slli_epi32(_mm256_set1_epi16((short)*c), 16);
			__m256i empty = _mm256_cmpeq_epi32(cv, zero);

			for (int h = 0; h < 2; h++) {
				__m256i s;

				if (fast) {
					s = _mm256_add_epi32(xadj[h], cv);
				} else {
					__m256i ev =
						_mm256_set1_epi32(lut_term_e(*c, w->terms.e_bias));

					s = _mm256_xor_si256(
						_mm256_castps_si256(shift_ps(xv[h], ev)),
						_mm256_set1_epi32((int32_t)lut_term_sign(*c)));
				}
				/*
				 * The first term starts the sum: 0 + t is t but for the sign of a
				 * zero, which no entry or chunk maximum can tell apart.
				 */
				s = _mm256_andnot_si256(empty, s);
				v[h] = t ? _mm256_add_ps(v[h], _mm256_castsi256_ps(s))
					 : _mm256_castsi256_ps(s);
			}
		}
		for (int h = 0; h < 2; h++) {
			if (fast)
				v[h] = _mm256_andnot_ps(xz[h], v[h]);
			_mm256_storeu_ps(dst + 8 * h, v[h]);
		}
	}
}

/*
 * One rowset over the chunk's @n_cols columns (whole pairs; @cbs: each 8-column block's
 * alpha column block), every plane: shifted activations into @dst (planes CHUNK_FLOATS
 * apart), group sums into the chunk maxima @mx (lo, hi).
 */
AI void shift_chunk(const struct lut_weight *w, const float *xt, const uint16_t *code, uint32_t k0,
		    const uint32_t *cbs, uint32_t n_cols, bool fast, uint32_t n_terms,
		    uint32_t bits, float *dst, __m256 mx[2])
{
	uint32_t ts = w->n_col_blocks;

	for (uint32_t j = 0, blk = 0; j < n_cols; j += 8, blk++) {
		const uint16_t *ct = w->col_block == 1 ? code + k0 + j : code + cbs[blk];

		for (uint32_t i = 0; i < 8; i++) {
			shift_col(w, xt, ct, ts, fast, n_terms, bits, dst);
			if (w->col_block == 1)
				ct++;
			xt += LUT_BATCH;
			dst += LUT_BATCH;
		}
		for (uint32_t i = 0; i < bits; i++)
			for (int g = 0; g < 2; g++) {
				const float *v = dst + (size_t)i * CHUNK_FLOATS -
						 (uint32_t)(8 - 4 * g) * LUT_BATCH;

				mx[0] = _mm256_max_ps(mx[0], group_sum(v));
				mx[1] = _mm256_max_ps(mx[1], group_sum(v + 8));
			}
	}
}

/* x * 2^-cexp per lane (@e23: -cexp << 23, @en: -cexp; @fast: every cexp <= 0). */
AI __m256 scale_lane(const float *p, __m256i e23, __m256i en, bool fast)
{
	__m256 x = _mm256_loadu_ps(p);

	return fast ? shift_fast_ps(x, e23) : shift_ps(x, en);
}

/*
 * One group's 16 entries (four columns at @v, LUT_BATCH floats apart) for the 16 tokens:
 * entry idx = p[idx & 3] + q[idx >> 2] with the signs of lut_tables_avx2 (bit j of idx set:
 * column j positive; -(a + b) is (-a) + (-b) and b - a is -(a - b) exactly), clamped,
 * biased, stored 32 bytes per entry from @dst.
 *
 * Entry 15 - idx negates both of idx's terms, and negation commutes with the add, the
 * round to nearest even and the symmetric clamp, so its value is -v and its stored word
 * 2 LUT_ENTRY_BIAS - u: only entries 0-7 are computed (for finite activations, the only
 * ones the tables are defined for; an infinite one converts to the same integer either
 * sign).
 */
AI void group_entries(const float *v, const __m256i e23[2], const __m256i en[2], bool fast,
		      uint8_t *dst)
{
	const __m256 sgn = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
	const __m256i mx = _mm256_set1_epi16(LUT_ENTRY_MAX), mn = _mm256_set1_epi16(-LUT_ENTRY_MAX);
	const __m256i bias = _mm256_set1_epi16(LUT_ENTRY_BIAS);
	const __m256i bias2 = _mm256_set1_epi16(2 * LUT_ENTRY_BIAS);
	__m256 p[2][4], cd[2][2];

	for (int h = 0; h < 2; h++) {
		__m256 a = scale_lane(v + 8 * h, e23[h], en[h], fast);
		__m256 b = scale_lane(v + LUT_BATCH + 8 * h, e23[h], en[h], fast);
		__m256 c = scale_lane(v + 2 * LUT_BATCH + 8 * h, e23[h], en[h], fast);
		__m256 d = scale_lane(v + 3 * LUT_BATCH + 8 * h, e23[h], en[h], fast);

		p[h][3] = _mm256_add_ps(a, b);
		p[h][1] = _mm256_sub_ps(a, b);
		p[h][0] = _mm256_xor_ps(p[h][3], sgn);
		p[h][2] = _mm256_xor_ps(p[h][1], sgn);
		cd[h][0] = _mm256_add_ps(c, d);
		cd[h][1] = _mm256_sub_ps(c, d);
	}
	/* q for idx >> 2 = 0, 1: -(c + d), c - d; 2 and 3 are the complements */
#pragma GCC unroll 2
	for (int qi = 0; qi < 2; qi++) {
		__m256 q0 = cd[0][qi], q1 = cd[1][qi];

		if (!qi) {
			q0 = _mm256_xor_ps(q0, sgn);
			q1 = _mm256_xor_ps(q1, sgn);
		}
#pragma GCC unroll 4
		for (int pi = 0; pi < 4; pi++) {
			__m256i lo = _mm256_cvtps_epi32(_mm256_add_ps(p[0][pi], q0));
			__m256i hi = _mm256_cvtps_epi32(_mm256_add_ps(p[1][pi], q1));
			__m256i u = _mm256_add_epi16(
				_mm256_max_epi16(_mm256_min_epi16(_mm256_packs_epi32(lo, hi), mx),
						 mn),
				bias);

			_mm256_storeu_si256((__m256i *)(dst + 32 * (4 * qi + pi)), u);
			_mm256_storeu_si256((__m256i *)(dst + 32 * (15 - 4 * qi - pi)),
					    _mm256_sub_epi16(bias2, u));
		}
	}
}

/* Whether every token's shifts over the span stay normal (shift_rows' test, per token). */
static bool batch_stays_normal(const struct lut_weight *w, const float *const xr[LUT_BATCH],
			       const struct lut_span *sp)
{
	for (uint32_t t = 0; t < LUT_BATCH; t++)
		if (xr[t] && !shifts_stay_normal(w, xr[t], sp))
			return false;
	return true;
}

/* Chunk exponents (lut_chunk_exp per lane) of maxima @mx into @ce (lo, hi). */
AI void chunk_exps(const __m256 mx[2], __m256i ce[2])
{
	for (int h = 0; h < 2; h++) {
		__m256i ex = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(mx[h]), 23),
					      _mm256_set1_epi32(0xff));

		ce[h] = _mm256_andnot_si256(
			_mm256_cmpeq_epi32(ex, _mm256_setzero_si256()),
			_mm256_sub_epi32(ex, _mm256_set1_epi32(127 + LUT_SCALE_TOP)));
	}
}

void lut_build_batch_avx2(const struct lut_weight *w, const float *x, const struct lut_span *sp,
			  float *xs, struct lut_batch *b)
{
	const float *xr[LUT_BATCH];
	uint64_t rowset_bytes = sp->rowset_tab << 4; /* one rowset's steps, 16 tokens each */
	uint8_t *tab_c = b->tab + (sp->tab0 << 4);   /* the chunk's first step, rowset 0 */
	uint32_t cb = sp->cb0, in_cb = sp->in_cb0;
	bool fast;

	for (uint32_t t = 0; t < LUT_BATCH; t++) {
		xr[t] = t < b->n_tok ? x : NULL;
		x += w->n_cols;
		LUT_OPAQUE(x);
	}
	fast = batch_stays_normal(w, xr, sp);
	for (uint32_t c = sp->c0, p = sp->p0, k = sp->k0; c < sp->c1;
	     c++, p += LUT_CHUNK_PAIRS, k += CHUNK_COLS) {
		uint32_t np = sp->p1 - p < LUT_CHUNK_PAIRS ? sp->p1 - p : LUT_CHUNK_PAIRS;
		uint32_t nc = np * LUT_PAIR_COLS, cbs[LUT_CHUNK_PAIRS];
		__m256 mx[2] = { _mm256_setzero_ps(), _mm256_setzero_ps() };
		__m256i ce[2], e23[2], en[2];
		const uint16_t *code = w->terms.code;
		float *vs = xs + CHUNK_FLOATS;
		bool up = false;
		uint8_t *tab_r = tab_c;

		for (uint32_t j = 0, blk = 0; j < nc; j += 8, blk++) {
			load_cols(xr, k + j, (int32_t)(w->n_cols - (k + j)), xs + j * LUT_BATCH);
			cbs[blk] = cb;
			if (w->col_block != 1) {
				in_cb += 8;
				if (in_cb == w->col_block) {
					in_cb = 0;
					cb++;
				}
			}
		}
		for (uint32_t r = 0; r < w->n_rowsets; r++) {
			if (fast && w->n_terms == 3 && w->bits == 3)
				shift_chunk(w, xs, code, k, cbs, nc, true, 3, 3, vs, mx);
			else if (fast)
				shift_chunk(w, xs, code, k, cbs, nc, true, w->n_terms, w->bits, vs,
					    mx);
			else
				shift_chunk(w, xs, code, k, cbs, nc, false, w->n_terms, w->bits, vs,
					    mx);
			for (uint32_t i = 0; i < w->bits; i++) {
				vs += CHUNK_FLOATS;
				LUT_OPAQUE(vs);
				code += w->term_step;
				LUT_OPAQUE(code);
			}
		}
		chunk_exps(mx, ce);
		/* token order: lo's first half, hi's first half, lo's second, hi's second */
		_mm256_storeu_si256((__m256i *)(b->cexp + (c << 4)),
				    _mm256_permute2x128_si256(ce[0], ce[1], 0x20));
		_mm256_storeu_si256((__m256i *)(b->cexp + (c << 4) + 8),
				    _mm256_permute2x128_si256(ce[0], ce[1], 0x31));
		for (int h = 0; h < 2; h++) {
			up = up || _mm256_movemask_epi8(
					   _mm256_cmpgt_epi32(ce[h], _mm256_setzero_si256()));
			en[h] = _mm256_sub_epi32(_mm256_setzero_si256(), ce[h]);
			e23[h] = _mm256_slli_epi32(en[h], 23);
		}
		/* entries: rowset by rowset, pair by pair, plane by plane (the steps' order) */
		vs = xs + CHUNK_FLOATS;
		for (uint32_t r = 0; r < w->n_rowsets; r++) {
			uint8_t *dst = tab_r;

			for (uint32_t j = 0; j < nc; j += LUT_PAIR_COLS) {
				const float *pl = vs + j * LUT_BATCH;

				for (uint32_t i = 0; i < w->bits;
				     i++, pl += CHUNK_FLOATS, dst += LUT_BATCH_STEP) {
					group_entries(pl, e23, en, !up, dst);
					group_entries(pl + 4 * LUT_BATCH, e23, en, !up, dst + 512);
				}
			}
			for (uint32_t i = 0; i < w->bits; i++) {
				vs += CHUNK_FLOATS;
				LUT_OPAQUE(vs);
			}
			tab_r += rowset_bytes;
		}
		for (uint32_t j = 0; j < np; j++) {
			for (uint32_t i = 0; i < w->bits; i++) {
				tab_c += LUT_BATCH_STEP;
				LUT_OPAQUE(tab_c);
			}
		}
	}
}

/*
 * A row's chunk sum from its accumulators (see the top of the file), scaled by each token's
 * 2^cexp and added to its 16 float sums @a; the @first chunk's sum is added to +0 instead of
 * to @a, which holds nothing yet (so the sums need no clearing). @fast: every exponent is in
 * [-126, 106], where lut_shift_f32 of an integer below 2^21 is the exponent add alone (zero
 * aside).
 */
AI void fold(__m256i A, __m256i H, __m256i bias, const int32_t *ce, bool fast, bool first, float *a)
{
	__m256i D = _mm256_sub_epi16(A, _mm256_slli_epi16(H, 8));
	__m128i d[2] = { _mm256_castsi256_si128(D), _mm256_extracti128_si256(D, 1) };
	__m128i h[2] = { _mm256_castsi256_si128(H), _mm256_extracti128_si256(H, 1) };

	for (int i = 0; i < 2; i++) {
		__m256i s = _mm256_add_epi32(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h[i]), 8),
					     _mm256_cvtepi16_epi32(d[i]));
		__m256 f = _mm256_cvtepi32_ps(_mm256_sub_epi32(s, bias));
		__m256i e = _mm256_loadu_si256((const __m256i *)(ce + 8 * i));

		if (fast)
			f = _mm256_castsi256_ps(_mm256_andnot_si256(
				_mm256_cmpeq_epi32(_mm256_castps_si256(f), _mm256_setzero_si256()),
				_mm256_add_epi32(_mm256_castps_si256(f),
						 _mm256_slli_epi32(e, 23))));
		else
			f = shift_ps(f, e);
		_mm256_storeu_ps(
			a + 8 * i,
			_mm256_add_ps(first ? _mm256_setzero_ps() : _mm256_loadu_ps(a + 8 * i), f));
	}
}

/*
 * A lane's sign nibbles over one chunk of @n_steps steps (weights 64 bytes apart per step) as
 * entry offsets in units of 8 bytes (nibble << 2, one byte each; an entry is 32 bytes): per
 * step 32 bytes, row r's low-group offset at 2r, its high-group offset at 2r + 1. Unpacked
 * once per lane and chunk with vector ops, so that a lookup is a bextr from a word of offsets
 * and a vector load-add instead of a byte load plus two or three scalar shifts and masks per
 * nibble, which kept the lookups bound by scalar work.
 */
#define OFF_STEP 32

AI void lane_offsets(const uint8_t *wp, uint32_t n_steps, uint8_t *off)
{
	const __m128i m = _mm_set1_epi8(0x3c);

	for (uint32_t s = 0; s < n_steps; s++, wp += 64, off += OFF_STEP) {
		__m128i b = _mm_loadu_si128((const __m128i *)wp);
		/* bits that cross a byte in the 16-bit shifts fall outside the mask */
		__m128i lo = _mm_and_si128(_mm_slli_epi16(b, 2), m);
		__m128i hi = _mm_and_si128(_mm_srli_epi16(b, 2), m);

		_mm_storeu_si128((__m128i *)off, _mm_unpacklo_epi8(lo, hi));
		_mm_storeu_si128((__m128i *)(off + 16), _mm_unpackhi_epi8(lo, hi));
	}
}

/*
 * The entry at offset byte @i of the word @w. A step's offsets of four adjacent rows are one
 * 8-byte word: loading it once per quad of rows and extracting each byte with bextr (one
 * ALU op, and the 8-byte scale stays in the address) halves the loads per lookup, which bound
 * the loop (Zen 4: M = 16 and 32 calls 4-5% faster than one byte load per offset). Extracting
 * with shifts and masks (three ops each) was 4% slower than the byte loads.
 */
AI __m256i entry(const uint8_t *tp, uint64_t w, unsigned i)
{
	return _mm256_loadu_si256((const __m256i *)(tp + (_bextr_u64(w, 8 * i, 8) << 3)));
}

/*
 * Row @i's lookups of two steps (offset words @w0, @w1): the quad's sum q (below 2^16),
 * A += q, H += q >> 8.
 */
AI void quad(const uint8_t *tp, uint64_t w0, uint64_t w1, unsigned i, __m256i *A, __m256i *H)
{
	__m256i u0 = entry(tp, w0, 2 * i), u1 = entry(tp + 512, w0, 2 * i + 1);
	__m256i u2 = entry(tp + LUT_BATCH_STEP, w1, 2 * i);
	__m256i u3 = entry(tp + LUT_BATCH_STEP + 512, w1, 2 * i + 1);
	__m256i q = _mm256_add_epi16(_mm256_add_epi16(u0, u1), _mm256_add_epi16(u2, u3));

	*A = _mm256_add_epi16(*A, q);
	*H = _mm256_add_epi16(*H, _mm256_srli_epi16(q, 8));
}

/* One step of row @i (an odd step count's last), as quad(). */
AI void pair(const uint8_t *tp, uint64_t w0, unsigned i, __m256i *A, __m256i *H)
{
	__m256i q = _mm256_add_epi16(entry(tp, w0, 2 * i), entry(tp + 512, w0, 2 * i + 1));

	*A = _mm256_add_epi16(*A, q);
	*H = _mm256_add_epi16(*H, _mm256_srli_epi16(q, 8));
}

AI uint64_t load_u64(const uint8_t *p)
{
	uint64_t w;

	memcpy(&w, p, sizeof(w));
	return w;
}

/*
 * Four adjacent rows of one lane over one chunk of @n_steps steps: offsets from lane_offsets
 * (@o at the first row's), token-lane tables LUT_BATCH_STEP bytes per step.
 */
AI void rows4_chunk(const uint8_t *o, const uint8_t *tp, uint32_t n_steps, __m256i bias,
		    const int32_t *ce, bool fast, bool first, float *a)
{
	__m256i A0 = _mm256_setzero_si256(), A1 = A0, A2 = A0, A3 = A0;
	__m256i H0 = A0, H1 = A0, H2 = A0, H3 = A0;
	uint32_t s = 0;

	for (; s + 2 <= n_steps; s += 2, o += 2 * OFF_STEP, tp += 2 * LUT_BATCH_STEP) {
		uint64_t w0 = load_u64(o), w1 = load_u64(o + OFF_STEP);

		quad(tp, w0, w1, 0, &A0, &H0);
		quad(tp, w0, w1, 1, &A1, &H1);
		quad(tp, w0, w1, 2, &A2, &H2);
		quad(tp, w0, w1, 3, &A3, &H3);
		/*
		 * Keeps each sum in one register across iterations: without it GCC 12 added
		 * into a temporary and copied it back, four vmovdqa per 16 lookups (the loop
		 * issues ~60 ops per 16 lookups; 1.5-2.7% faster without them).
		 */
		__asm__(""
			: "+x"(A0), "+x"(A1), "+x"(A2), "+x"(A3), "+x"(H0), "+x"(H1), "+x"(H2),
			  "+x"(H3));
	}
	if (s < n_steps) {
		uint64_t w0 = load_u64(o);

		pair(tp, w0, 0, &A0, &H0);
		pair(tp, w0, 1, &A1, &H1);
		pair(tp, w0, 2, &A2, &H2);
		pair(tp, w0, 3, &A3, &H3);
	}
	fold(A0, H0, bias, ce, fast, first, a);
	fold(A1, H1, bias, ce, fast, first, a + LUT_BATCH);
	fold(A2, H2, bias, ce, fast, first, a + 2 * LUT_BATCH);
	fold(A3, H3, bias, ce, fast, first, a + 3 * LUT_BATCH);
}

/*
 * Tiles [t0, t1) (at most LUT_BATCH_TILES), chunk by chunk, every row of every tile per
 * chunk: a chunk's tables (1 KB per step) are loaded into L1 once for all those rows. Float
 * sums into @a[tile][64][LUT_BATCH].
 */
static void tiles_sums(const struct lut_weight *w, uint32_t h0, uint32_t h1, const uint8_t *tile0,
		       const struct lut_batch *b, float *a)
{
	const int32_t *ce = b->cexp;
	size_t toff = 0, woff = 0; /* of the chunk in a rowset's tables, in a tile's planes */
	uint8_t off[LUT_CHUNK_PAIRS * QW_MAX_BITS * OFF_STEP];

	for (uint32_t p = 0; p < w->n_pairs; p += LUT_CHUNK_PAIRS, ce += LUT_BATCH) {
		uint32_t n_steps = lut_chunk_steps(w, p);
		/* next chunk: 64 bytes of planes and LUT_BATCH_STEP (1 KB) of tables per step */
		size_t wn = woff + ((size_t)n_steps << 6), tn = toff + ((size_t)n_steps << 10);
		const uint8_t *tile = tile0;
		float *at = a;
		__m256i bias;
		bool fast = true;

		/* two lookups biased by LUT_ENTRY_BIAS each per step */
		bias = _mm256_set1_epi32((int32_t)(n_steps << (LUT_BIAS_SHIFT + 1)));
		for (uint32_t t = 0; t < LUT_BATCH; t++)
			fast = fast && ce[t] >= -126 && ce[t] <= 106;
		for (uint32_t t = h0 >> 1; t < (h1 + 1) >> 1;
		     t++, at += LUT_TILE_ROWS * LUT_BATCH) {
			const struct lut_lane *ln = w->lanes + ((size_t)t << 2);

			/*
			 * The next tile's planes of this chunk are n_steps lines a whole tile
			 * away, too short a run for the hardware prefetcher to pick up.
			 */
			if (t + 1 < (h1 + 1) >> 1)
				for (uint32_t s = 0; s < n_steps; s++)
					_mm_prefetch((const char *)(tile + w->tile_bytes + woff) +
							     ((size_t)s << 6),
						     _MM_HINT_T0);
			for (uint32_t l = lut_half_lo(t, h0) << 1; l < lut_half_hi(t, h1) << 1;
			     l++) {
				const uint8_t *tp = b->tab + (ln[l].tab_off << 4) + toff;

				if (!ln[l].n_rows)
					continue;
				lane_offsets(tile + woff + (l << 4), n_steps, off);
				for (uint32_t r = 0; r < LUT_LANE_ROWS; r += 4)
					rows4_chunk(off + (r << 1), tp, n_steps, bias, ce, fast,
						    p == 0, at + (((l << 4) + r) << 4));
			}
			tile += w->tile_bytes;
			LUT_OPAQUE(tile);
		}
		woff = wn;
		toff = tn;
	}
}

/*
 * A lane's sums @a ([row][LUT_BATCH tokens]) into @y: row r of token j at y[j * @stride + r],
 * for @n_rows rows and @n_tok tokens. Blocks of 8 rows go through transpose8 (a scalar copy
 * per value was 3% of a 16-token step), a last block of fewer than 8 tokens included (its
 * spare columns of @a are read, not stored); rows past the last whole block value by value.
 */
static void lane_store(const float *a, uint32_t n_rows, uint32_t n_tok, uint32_t stride, float *y)
{
	uint32_t rv = n_rows & ~7u;

	/* token rows by pointer steps: a kernel object holds no multiply (kernels/nomul.sh) */
	for (uint32_t r0 = 0; r0 < rv; r0 += 8) {
		float *yj = y + r0;

		for (uint32_t j0 = 0; j0 < n_tok; j0 += 8) {
			uint32_t nj = n_tok - j0 < 8 ? n_tok - j0 : 8;
			__m256 v[8];

#pragma GCC unroll 8
			for (int i = 0; i < 8; i++)
				v[i] = _mm256_loadu_ps(a + ((r0 + i) << 4) + j0);
			transpose8(v);
			if (nj == 8) {
#pragma GCC unroll 8
				for (uint32_t j = 0; j < 8; j++, yj += stride)
					_mm256_storeu_ps(yj, v[j]);
				continue;
			}
			for (uint32_t j = 0; j < nj; j++, yj += stride) {
				_mm256_storeu_ps(yj, v[j]);
				LUT_OPAQUE(yj);
			}
		}
	}
	for (uint32_t j = 0; j < n_tok; j++, y += stride) {
		for (uint32_t r = rv; r < n_rows; r++)
			y[r] = a[(r << 4) + j];
		LUT_OPAQUE(y);
	}
}

void lut_tiles_batch_avx2(const struct lut_weight *w, uint32_t h0, uint32_t h1,
			  const struct lut_batch *b, float *y, float *acc)
{
	size_t tile_bytes = w->tile_bytes;
	const uint8_t *tile;
	uint32_t t0, t1;

	lut_half_span(h0, h1, &t0, &t1);
	tile = lut_tile_planes(w, t0);
	while (t0 < t1) {
		uint32_t te = t1 - t0 > LUT_BATCH_TILES ? t0 + LUT_BATCH_TILES : t1;
		/* the halves of tiles [t0, te) */
		uint32_t g0 = h0 > t0 << 1 ? h0 : t0 << 1, g1 = h1 < te << 1 ? h1 : te << 1;
		const float *a = acc;

		_Static_assert(LUT_TILE_ROWS * LUT_BATCH == 1 << 10, "a tile's sums: 2^10 floats");
		tiles_sums(w, g0, g1, tile, b, acc);
		for (; t0 < te; t0++) {
			const struct lut_lane *ln = w->lanes + ((size_t)t0 << 2);

			for (uint32_t l = 0; l < 4; l++, a += LUT_LANE_ROWS * LUT_BATCH) {
				float *yj = y + ln[l].row0;

				if (l < lut_half_lo(t0, g0) << 1 || l >= lut_half_hi(t0, g1) << 1)
					continue;
				lane_store(a, ln[l].n_rows, b->n_tok, w->n_rows, yj);
			}
			tile += tile_bytes;
			LUT_OPAQUE(tile);
		}
	}
}
