// SPDX-License-Identifier: MIT
/*
 * Batched lookups (AVX2): up to 16 tokens share each row's lookups. The per-token kernel
 * (lut_avx2.c) puts 32 rows in a vector and pays two vpshufb plus byte-sum bookkeeping per
 * 32 lookups of one token; here the tokens sit in the vector lanes (struct lut_batch), so a
 * row's sign nibble addresses one 32-byte entry row holding all 16 tokens' entries, and a
 * lookup is one load and three adds/shifts for 16 tokens.
 *
 * Exact integer sums as in the per-token path: entries are stored as u = v + 32768 (16 bits);
 * per chunk a row keeps A = sum u (mod 2^16, vpaddw) and H, a running estimate of
 * sum u / 256 from averages (quad()). 256 H is within 2^15 of the exact sum, which is
 * therefore 256 H + (A - 256 H as a signed 16-bit value), minus 32768 * lookups: the
 * per-token path's integer, converted and scaled with the same float operations in the same
 * chunk order, hence the same bits.
 */
#include "kernels/internal.h"
#include "kernels/x86/lut_avx2_common.h"

#include <immintrin.h>
#include <stdbool.h>

/*
 * r[t][e] (token t, entry e) -> dst + 32 e: 16 tokens' entry e, 16 x 16 words, through word,
 * dword and qword interleaves within 128-bit lanes and a final exchange of lanes. The
 * results are stored as they come (a separate store loop over an array became a memcpy,
 * rep movsq, a fifth of the build's time).
 */
AI void transpose16(const __m256i r[16], uint8_t *dst)
{
	__m256i a[16], b[16], c[16];

	for (int i = 0; i < 8; i++) {
		/* tokens 2i, 2i+1: entries 0-3 | 8-11, and 4-7 | 12-15 */
		a[2 * i] = _mm256_unpacklo_epi16(r[2 * i], r[2 * i + 1]);
		a[2 * i + 1] = _mm256_unpackhi_epi16(r[2 * i], r[2 * i + 1]);
	}
	for (int q = 0; q < 4; q++) {
		/* tokens 4q..4q+3: entries {0,1 | 8,9}, {2,3 | 10,11}, {4,5 | 12,13}, {6,7 | 14,15} */
		b[4 * q] = _mm256_unpacklo_epi32(a[4 * q], a[4 * q + 2]);
		b[4 * q + 1] = _mm256_unpackhi_epi32(a[4 * q], a[4 * q + 2]);
		b[4 * q + 2] = _mm256_unpacklo_epi32(a[4 * q + 1], a[4 * q + 3]);
		b[4 * q + 3] = _mm256_unpackhi_epi32(a[4 * q + 1], a[4 * q + 3]);
	}
	for (int h = 0; h < 2; h++) {
		/* tokens 8h..8h+7: entry 2k (| 2k+8) in c[8h + 2k], 2k+1 (| 2k+9) in c[8h + 2k + 1] */
		for (int k = 0; k < 4; k++) {
			c[8 * h + 2 * k] = _mm256_unpacklo_epi64(b[8 * h + k], b[8 * h + 4 + k]);
			c[8 * h + 2 * k + 1] =
				_mm256_unpackhi_epi64(b[8 * h + k], b[8 * h + 4 + k]);
		}
	}
	for (int e = 0; e < 8; e++) {
		_mm256_storeu_si256((__m256i *)(dst + 32 * e),
				    _mm256_permute2x128_si256(c[e], c[8 + e], 0x20));
		_mm256_storeu_si256((__m256i *)(dst + 32 * (e + 8)),
				    _mm256_permute2x128_si256(c[e], c[8 + e], 0x31));
	}
}

/*
 * One token's entries of one pair and plane (pair_entries on the chunk-scaled activations at
 * @xp, clamped and biased as the per-token tables store them), as a row of 16 words for each
 * group: @g0 entries of group 2p, @g1 of group 2p+1.
 */
AI void pair_words(const float *xp, int32_t cexp, __m256i *g0, __m256i *g1)
{
	const __m256i mn = _mm256_set1_epi16(-LUT_ENTRY_MAX);
	const __m256i bias = _mm256_set1_epi16((short)0x8000);
	__m256i e = _mm256_set1_epi32(-cexp), ent[4], w0, w1;
	__m256 v = cexp <= 0 ? shift_fast_ps(_mm256_loadu_ps(xp), _mm256_slli_epi32(e, 23))
			     : shift_ps(_mm256_loadu_ps(xp), e);

	pair_entries(v, ent);
	/* per 128-bit lane (group): entries 0-7, then 8-15 */
	w0 = _mm256_xor_si256(_mm256_max_epi16(_mm256_packs_epi32(ent[0], ent[1]), mn), bias);
	w1 = _mm256_xor_si256(_mm256_max_epi16(_mm256_packs_epi32(ent[2], ent[3]), mn), bias);
	*g0 = _mm256_permute2x128_si256(w0, w1, 0x20);
	*g1 = _mm256_permute2x128_si256(w0, w1, 0x31);
}

void lut_build_batch_avx2(const struct lut_weight *w, const float *x, const struct lut_span *sp,
			  float *xs, float *mx, struct lut_batch *b)
{
	uint32_t kp = w->n_pairs * LUT_PAIR_COLS;
	size_t xs_tok = 0; /* floats of one token's shifted activations */
	const float *xt = x;
	float *xst = xs;
	uint8_t *tab = b->tab;

	for (uint32_t r = 0; r < w->n_rowsets; r++) {
		for (uint32_t i = 0; i < w->bits; i++) {
			xs_tok += kp;
			LUT_OPAQUE(xs_tok);
		}
	}

	/* Pass 1 per token, as lut_tables_avx2: shifted activations and chunk scales. */
	for (uint32_t t = 0; t < LUT_BATCH; t++, xt += w->n_cols, xst += xs_tok) {
		if (t >= b->n_tok) {
			for (uint32_t c = sp->c0; c < sp->c1; c++)
				b->cexp[(c << 4) + t] = 0;
			continue;
		}
		shift_rows(w, xt, sp, xst, mx);
		for (uint32_t c = sp->c0; c < sp->c1; c++)
			b->cexp[(c << 4) + t] = lut_chunk_exp(mx[c]);
	}
	/* Pass 3: every token's entries of a step, transposed to token lanes. */
	for (uint32_t r = 0; r < w->n_rowsets; r++) {
		uint8_t *dst = tab + (sp->tab0 << 4); /* pair p0's step, 16 tokens per entry */

		for (uint32_t p = sp->p0, c = sp->c0, in_c = 0, col = sp->k0; p < sp->p1;
		     p++, col += LUT_PAIR_COLS) {
			const int32_t *ce = b->cexp + (c << 4);
			const float *pl = xs + col;

			for (uint32_t i = 0; i < w->bits; i++, pl += kp, dst += LUT_BATCH_STEP) {
				__m256i g0[16], g1[16];
				const float *pt = pl;

				for (uint32_t t = 0; t < LUT_BATCH; t++, pt += xs_tok) {
					if (t < b->n_tok) {
						pair_words(pt, ce[t], &g0[t], &g1[t]);
					} else {
						g0[t] = _mm256_setzero_si256();
						g1[t] = g0[t];
					}
				}
				transpose16(g0, dst);
				transpose16(g1, dst + 512);
			}
			if (++in_c == LUT_CHUNK_PAIRS) {
				in_c = 0;
				c++;
			}
		}
		for (uint32_t i = 0; i < w->bits; i++) {
			tab += (size_t)w->n_pairs << 10; /* next rowset's steps */
			xs += kp;			 /* and planes */
			LUT_OPAQUE(tab);
			LUT_OPAQUE(xs);
		}
	}
}

/*
 * A row's chunk sum from its accumulators (see the top of the file), scaled by each token's
 * 2^cexp and added to its 16 float sums @a. @fast: every exponent is in [-126, 106], where
 * lut_shift_f32 of an integer below 2^21 is the exponent add alone (zero aside).
 */
AI void fold(__m256i A, __m256i H, __m256i bias, const int32_t *ce, bool fast, float *a)
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
		_mm256_storeu_ps(a + 8 * i, _mm256_add_ps(_mm256_loadu_ps(a + 8 * i), f));
	}
}

AI __m256i entry(const uint8_t *tp, uint32_t nib)
{
	return _mm256_loadu_si256((const __m256i *)(tp + (nib << 5)));
}

/*
 * One row's lookups of two steps: A += the four entries (mod 2^16); H += their average
 * (vpavgw, exact in 17 bits) / 64, i.e. about their sum / 256: each quad's 256 * H part is
 * within (-256, 4] of its sum, so a chunk's (at most 16 quads) stays within 2^15 of the exact
 * sum and A, exact mod 2^16, settles it (fold).
 */
AI void quad(const uint8_t *tp, uint32_t v0, uint32_t v1, __m256i *A, __m256i *H)
{
	__m256i u0 = entry(tp, v0 & 15), u1 = entry(tp + 512, (v0 >> 4) & 15);
	__m256i u2 = entry(tp + LUT_BATCH_STEP, v1 & 15);
	__m256i u3 = entry(tp + LUT_BATCH_STEP + 512, (v1 >> 4) & 15);

	*A = _mm256_add_epi16(*A,
			      _mm256_add_epi16(_mm256_add_epi16(u0, u1), _mm256_add_epi16(u2, u3)));
	*H = _mm256_add_epi16(*H, _mm256_srli_epi16(_mm256_avg_epu16(_mm256_avg_epu16(u0, u1),
								     _mm256_avg_epu16(u2, u3)),
						    6));
}

/* One step of one row (an odd step count's last): the pair's average / 128. */
AI void pair(const uint8_t *tp, uint32_t v, __m256i *A, __m256i *H)
{
	__m256i u0 = entry(tp, v & 15), u1 = entry(tp + 512, (v >> 4) & 15);

	*A = _mm256_add_epi16(*A, _mm256_add_epi16(u0, u1));
	*H = _mm256_add_epi16(*H, _mm256_srli_epi16(_mm256_avg_epu16(u0, u1), 7));
}

/*
 * Four adjacent rows of one lane over one chunk of @n_steps steps: weights one byte per row
 * and step (64 bytes apart), token-lane tables LUT_BATCH_STEP bytes per step.
 */
AI void rows4_chunk(const uint8_t *wp, const uint8_t *tp, uint32_t n_steps, __m256i bias,
		    const int32_t *ce, bool fast, float *a)
{
	__m256i A0 = _mm256_setzero_si256(), A1 = A0, A2 = A0, A3 = A0;
	__m256i H0 = A0, H1 = A0, H2 = A0, H3 = A0;
	uint32_t s = 0, v0, v1;

	for (; s + 2 <= n_steps; s += 2, wp += 128, tp += 2 * LUT_BATCH_STEP) {
		memcpy(&v0, wp, sizeof(v0));
		memcpy(&v1, wp + 64, sizeof(v1));
		quad(tp, v0, v1, &A0, &H0);
		quad(tp, v0 >> 8, v1 >> 8, &A1, &H1);
		quad(tp, v0 >> 16, v1 >> 16, &A2, &H2);
		quad(tp, v0 >> 24, v1 >> 24, &A3, &H3);
	}
	if (s < n_steps) {
		memcpy(&v0, wp, sizeof(v0));
		pair(tp, v0, &A0, &H0);
		pair(tp, v0 >> 8, &A1, &H1);
		pair(tp, v0 >> 16, &A2, &H2);
		pair(tp, v0 >> 24, &A3, &H3);
	}
	fold(A0, H0, bias, ce, fast, a);
	fold(A1, H1, bias, ce, fast, a + LUT_BATCH);
	fold(A2, H2, bias, ce, fast, a + 2 * LUT_BATCH);
	fold(A3, H3, bias, ce, fast, a + 3 * LUT_BATCH);
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

	for (uint32_t p = 0; p < w->n_pairs; p += LUT_CHUNK_PAIRS, ce += LUT_BATCH) {
		uint32_t n_steps = lut_chunk_steps(w, p);
		/* next chunk: 64 bytes of planes and LUT_BATCH_STEP (1 KB) of tables per step */
		size_t wn = woff + ((size_t)n_steps << 6), tn = toff + ((size_t)n_steps << 10);
		const uint8_t *tile = tile0;
		float *at = a;
		__m256i bias;
		bool fast = true;

		/* two lookups of 128 bias units each per step */
		bias = _mm256_set1_epi32((int32_t)(n_steps << 16));
		for (uint32_t t = 0; t < LUT_BATCH; t++)
			fast = fast && ce[t] >= -126 && ce[t] <= 106;
		for (uint32_t t = h0 >> 1; t < (h1 + 1) >> 1;
		     t++, at += LUT_TILE_ROWS * LUT_BATCH) {
			const struct lut_lane *ln = w->lanes + ((size_t)t << 2);

			for (uint32_t l = lut_half_lo(t, h0) << 1; l < lut_half_hi(t, h1) << 1;
			     l++) {
				const uint8_t *tp = b->tab + (ln[l].tab_off << 4) + toff;

				if (!ln[l].n_rows)
					continue;
				for (uint32_t r = 0; r < LUT_LANE_ROWS; r += 4)
					rows4_chunk(tile + woff + (l << 4) + r, tp, n_steps, bias,
						    ce, fast, at + (((l << 4) + r) << 4));
			}
			tile += w->tile_bytes;
			LUT_OPAQUE(tile);
		}
		woff = wn;
		toff = tn;
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

		for (uint32_t i = 0; i < (LUT_BATCH_TILES * LUT_TILE_ROWS * LUT_BATCH); i++)
			acc[i] = 0.0f;
		tiles_sums(w, g0, g1, tile, b, acc);
		for (; t0 < te; t0++) {
			const struct lut_lane *ln = w->lanes + ((size_t)t0 << 2);

			for (uint32_t l = 0; l < 4; l++, a += LUT_LANE_ROWS * LUT_BATCH) {
				float *yj = y + ln[l].row0;

				if (l < lut_half_lo(t0, g0) << 1 || l >= lut_half_hi(t0, g1) << 1)
					continue;
				for (uint32_t j = 0; j < b->n_tok; j++, yj += w->n_rows)
					for (uint32_t r = 0; r < ln[l].n_rows; r++)
						yj[r] = a[(r << 4) + j];
			}
			tile += tile_bytes;
			LUT_OPAQUE(tile);
		}
	}
}
