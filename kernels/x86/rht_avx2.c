// SPDX-License-Identifier: MIT
/*
 * AVX2 randomized Hadamard transform: rht_ref.c's arithmetic, bit for bit, eight floats at
 * a time. Walsh-Hadamard stages h = 1, 2, 4 run inside a register: lane i gets
 * x[i ^ h] + (x[i] with its sign flipped where bit h of i is set), which is a + b in the low
 * lane of each butterfly and a - b in the high one, exactly as the scalar butterfly. Blocks
 * whose Walsh-Hadamard length is below 8 use the scalar pieces. Compiled alone with -mavx2.
 */
#include "kernels/internal.h"
#include "kernels/rht.h"

#include <immintrin.h>

#define AI  static inline __attribute__((always_inline))
#define NEG ((int)0x80000000u)

AI __m256 flip(__m256 x, __m256i s)
{
	return _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(x), s));
}

static void signs(const uint32_t *sign, float *x, uint32_t n)
{
	uint32_t j = 0;

	for (; j + 8 <= n; j += 8)
		_mm256_storeu_ps(x + j, flip(_mm256_loadu_ps(x + j),
					     _mm256_loadu_si256((const __m256i *)(sign + j))));
	rht_signs_ref(sign + j, x + j, n - j);
}

static void fwht(float *x, uint32_t p_log2)
{
	const __m256i m1 = _mm256_setr_epi32(0, NEG, 0, NEG, 0, NEG, 0, NEG);
	const __m256i m2 = _mm256_setr_epi32(0, 0, NEG, NEG, 0, 0, NEG, NEG);
	const __m256i m4 = _mm256_setr_epi32(0, 0, 0, 0, NEG, NEG, NEG, NEG);
	uint32_t P = 1u << p_log2;

	if (P < 8) {
		rht_fwht_ref(x, p_log2);
		return;
	}
	for (uint32_t i = 0; i < P; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);

		v = _mm256_add_ps(_mm256_permute_ps(v, 0xb1), flip(v, m1));
		v = _mm256_add_ps(_mm256_permute_ps(v, 0x4e), flip(v, m2));
		v = _mm256_add_ps(_mm256_permute2f128_ps(v, v, 0x01), flip(v, m4));
		_mm256_storeu_ps(x + i, v);
	}
	/* stages h and 2h fused (one load and store per element for two stages) */
	for (uint32_t h = 8; h < P; h <<= 2) {
		if (h << 1 == P) {
			for (uint32_t j = 0; j < h; j += 8) {
				__m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + h);

				_mm256_storeu_ps(x + j, _mm256_add_ps(a, b));
				_mm256_storeu_ps(x + j + h, _mm256_sub_ps(a, b));
			}
			break;
		}
		for (uint32_t i = 0; i < P; i += h << 2)
			for (uint32_t j = i; j < i + h; j += 8) {
				float *p0 = x + j, *p1 = p0 + h, *p2 = p1 + h, *p3 = p2 + h;
				__m256 a = _mm256_loadu_ps(p0), b = _mm256_loadu_ps(p1);
				__m256 c = _mm256_loadu_ps(p2), d = _mm256_loadu_ps(p3);
				__m256 ab = _mm256_add_ps(a, b), amb = _mm256_sub_ps(a, b);
				__m256 cd = _mm256_add_ps(c, d), cmd = _mm256_sub_ps(c, d);

				_mm256_storeu_ps(p0, _mm256_add_ps(ab, cd));
				_mm256_storeu_ps(p1, _mm256_add_ps(amb, cmd));
				_mm256_storeu_ps(p2, _mm256_sub_ps(ab, cd));
				_mm256_storeu_ps(p3, _mm256_sub_ps(amb, cmd));
			}
	}
}

/*
 * Per eight columns: each quad's 16 sign patterns (8 by adds, their complements by a sign
 * flip), then every output as the sum of one pattern per quad, four outputs at a time for
 * independent add chains.
 */
void rht_small_avx2(const uint8_t *hq, uint32_t m, uint32_t p_log2, float *x)
{
	const __m256i neg = _mm256_set1_epi32(NEG);
	uint32_t P = 1u << p_log2, nq = m >> 2;
	__m256 pat[RHT_MAX_M / 4][16];

	if (P < 8) {
		rht_small_ref(hq, m, p_log2, x, 0, P);
		return;
	}
	for (uint32_t j = 0; j < P; j += 8) {
		const uint8_t *hr = hq;
		float *col = x + j;

		for (uint32_t q = 0; q < nq; q++) {
			__m256 a = _mm256_loadu_ps(col), b = _mm256_loadu_ps(col + P);
			__m256 c = _mm256_loadu_ps(col + 2 * P), d = _mm256_loadu_ps(col + 3 * P);
			__m256 ab = _mm256_add_ps(a, b), amb = _mm256_sub_ps(a, b);
			__m256 cd = _mm256_add_ps(c, d), cmd = _mm256_sub_ps(c, d);
			/* index: bit 0 a positive, bit 1 b positive (c, d likewise) */
			__m256 pv[4] = { flip(ab, neg), amb, flip(amb, neg), ab };
			__m256 qv[4] = { flip(cd, neg), cmd, flip(cmd, neg), cd };

			for (uint32_t code = 0; code < 8; code++) {
				pat[q][code] = _mm256_add_ps(pv[code & 3], qv[code >> 2]);
				pat[q][15 - code] = flip(pat[q][code], neg);
			}
			col += 4 * P;
		}
		col = x + j;
		for (uint32_t i = 0; i < m; i += 4) {
			const uint8_t *h1 = hr + nq, *h2 = h1 + nq, *h3 = h2 + nq;
			__m256 a0 = pat[0][hr[0]], a1 = pat[0][h1[0]];
			__m256 a2 = pat[0][h2[0]], a3 = pat[0][h3[0]];

			for (uint32_t q = 1; q < nq; q++) {
				a0 = _mm256_add_ps(a0, pat[q][hr[q]]);
				a1 = _mm256_add_ps(a1, pat[q][h1[q]]);
				a2 = _mm256_add_ps(a2, pat[q][h2[q]]);
				a3 = _mm256_add_ps(a3, pat[q][h3[q]]);
			}
			_mm256_storeu_ps(col, a0);
			col += P;
			_mm256_storeu_ps(col, a1);
			col += P;
			_mm256_storeu_ps(col, a2);
			col += P;
			_mm256_storeu_ps(col, a3);
			col += P;
			hr = h3 + nq;
			LUT_OPAQUE(hr);
		}
	}
}

void rht_rows_avx2(const struct rht *t, float *x, uint32_t m, bool inverse)
{
	for (uint32_t r = 0; r < m; r++, x += t->n) {
		if (!inverse)
			signs(t->sign, x, t->n);
		for (uint32_t b = 0; b < t->n_blocks; b++) {
			const struct rht_block *bk = &t->blk[b];
			float *xb = x + bk->off, *seg = xb;

			if (inverse && bk->m > 1)
				rht_small_avx2(t->hquad + bk->hqt_off, bk->m, bk->p_log2, xb);
			for (uint32_t i = 0; i < bk->m; i++, seg += 1u << bk->p_log2)
				fwht(seg, bk->p_log2);
			if (!inverse && bk->m > 1)
				rht_small_avx2(t->hquad + bk->hq_off, bk->m, bk->p_log2, xb);
		}
		if (inverse)
			signs(t->sign, x, t->n);
		LUT_OPAQUE(x);
	}
}
