// SPDX-License-Identifier: MIT
/*
 * The fused attention of a block of query rows (a prefill) in zmm: 32 registers hold a tile of
 * 8 rows x 32 keys of q.k, or 4 rows x 64 dims of P.V, so each loaded key or value vector
 * feeds 8 or 4 FMAs where the AVX2 port's tiles feed 4 or 2. On Zen 4, whose FMA units are
 * 256 bits wide, that is what is left to gain: loads, not FMAs, bound the AVX2 tiles.
 *
 * Every score and every output element is the same chain of FMAs as in the AVX2 port (d
 * ascending for q.k from zero, keys ascending for P.V; tiles differ only in padding rows and
 * in zero probabilities, which add exact zeros), and the softmax is the AVX2 port's: a row's
 * bits are the same whichever port computed it, so the decode steps (the AVX2 port's) still
 * agree with the prefill. Only this file is built with -mavx512f.
 */
#include "engine/fwd_simd.h"
#include "engine/x86/fwd_x86.h"

#include <immintrin.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

#define QK_ROWS 8 /* query rows per q.k tile, with two key chunks of 16 */
#define PV_ROWS 4 /* query rows per P.V tile, with up to 64 output dims */
#define PV_KEYS 64

_Static_assert(FWD_ATT_ROWS % QK_ROWS == 0, "a block is whole q.k tiles");
_Static_assert(FWD_KEY_CHUNK == 16, "a key chunk is one zmm");

/* 16 floats at element @i of @p: f32, or f16 widened (exact). */
AI __m512 ld16(const void *p, size_t i, bool h)
{
	if (h)
		return _mm512_cvtph_ps(
			_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)));
	return _mm512_loadu_ps((const float *)p + i);
}

/*
 * s[r][0..16 nc) = q[r] . the keys of @nc (1 or 2) packed chunks k0, k1, for QK_ROWS rows of
 * q ([QK_ROWS][hd]).
 */
AI void qk_tile(const float *q, uint32_t hd, const void *k0, const void *k1, float *s,
		uint32_t s_stride, int nc, bool h)
{
	__m512 a[QK_ROWS][2];

#pragma GCC unroll 8
	for (int r = 0; r < QK_ROWS; r++)
		a[r][0] = a[r][1] = _mm512_setzero_ps();
	for (uint32_t d = 0; d < hd; d++) {
		__m512 kv0 = ld16(k0, (size_t)d * FWD_KEY_CHUNK, h);
		__m512 kv1 = nc > 1 ? ld16(k1, (size_t)d * FWD_KEY_CHUNK, h) : kv0;

#pragma GCC unroll 8
		for (int r = 0; r < QK_ROWS; r++) {
			__m512 x = _mm512_set1_ps(q[r * hd + d]);

			a[r][0] = _mm512_fmadd_ps(x, kv0, a[r][0]);
			if (nc > 1)
				a[r][1] = _mm512_fmadd_ps(x, kv1, a[r][1]);
		}
	}
#pragma GCC unroll 8
	for (int r = 0; r < QK_ROWS; r++) {
		_mm512_storeu_ps(s + r * s_stride, a[r][0]);
		if (nc > 1)
			_mm512_storeu_ps(s + r * s_stride + 16, a[r][1]);
	}
}

/*
 * o[i][0..16 nz) += sum_{j0 <= j < j1} p[i][j] * v[j][0..16 nz) for PV_ROWS rows (p and o of
 * stride @p_stride and @o_stride), @nz (2 or 4) vectors of output dims.
 */
AI void pv_tile(const float *p, uint32_t p_stride, const void *v, uint32_t v_stride, uint32_t j0,
		uint32_t j1, float *o, uint32_t o_stride, int nz, bool h)
{
	__m512 a[PV_ROWS][4];

#pragma GCC unroll 4
	for (int i = 0; i < PV_ROWS; i++)
#pragma GCC unroll 4
		for (int c = 0; c < nz; c++)
			a[i][c] = _mm512_loadu_ps(o + i * o_stride + 16 * c);
	for (uint32_t j = j0; j < j1; j++) {
		size_t vr = (size_t)j * v_stride;
		__m512 vv[4];

#pragma GCC unroll 4
		for (int c = 0; c < nz; c++)
			vv[c] = ld16(v, vr + 16 * c, h);
#pragma GCC unroll 4
		for (int i = 0; i < PV_ROWS; i++) {
			__m512 x = _mm512_set1_ps(p[i * p_stride + j]);

#pragma GCC unroll 4
			for (int c = 0; c < nz; c++)
				a[i][c] = _mm512_fmadd_ps(x, vv[c], a[i][c]);
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < PV_ROWS; i++)
#pragma GCC unroll 4
		for (int c = 0; c < nz; c++)
			_mm512_storeu_ps(o + i * o_stride + 16 * c, a[i][c]);
}

/* Scores of every row tile against the chunks it sees, chunk pair by chunk pair. */
AI void block_scores(const struct fwd_att_rows *a, const float *qs, uint32_t c0, uint32_t pad,
		     float *s, bool h)
{
	uint32_t hd = a->hd;

	for (uint32_t c = c0; c < pad; c += 2 * FWD_KEY_CHUNK) {
		const void *k0 = fwd_kv_at(a->kt, (size_t)c * hd, h);
		const void *k1 = fwd_kv_at(a->kt, (size_t)(c + FWD_KEY_CHUNK) * hd, h);

		for (uint32_t r0 = 0; r0 < a->rows; r0 += QK_ROWS) {
			uint32_t last = r0 + QK_ROWS - 1 < a->rows ? r0 + QK_ROWS - 1 : a->rows - 1;
			uint32_t seen = a->vis0 + last; /* keys the tile's last real row sees */

			if (c >= seen)
				continue; /* a later tile's rows see further */
			if (c + FWD_KEY_CHUNK < seen && c + FWD_KEY_CHUNK < pad)
				qk_tile(qs + r0 * hd, hd, k0, k1, s + (size_t)r0 * pad + c, pad, 2,
					h);
			else
				qk_tile(qs + r0 * hd, hd, k0, k1, s + (size_t)r0 * pad + c, pad, 1,
					h);
		}
	}
}

/* acc[r] = sum_j p[r][j] v[j] over each row's keys, PV_KEYS keys at a time. */
AI void block_values(const struct fwd_att_rows *a, const float *s, uint32_t pad, float *acc, bool h)
{
	uint32_t hd = a->hd, n_keys = a->vis0 + a->rows - 1, lo0 = fwd_att_first_key(a, 0);

	for (uint32_t j0 = lo0; j0 < n_keys; j0 += PV_KEYS) {
		for (uint32_t r = 0; r < a->rows; r += PV_ROWS) {
			uint32_t end = a->vis0 + r + PV_ROWS - 1 < n_keys
					       ? a->vis0 + r + PV_ROWS - 1
					       : n_keys;
			uint32_t j1 = j0 + PV_KEYS < end ? j0 + PV_KEYS : end, d = 0;
			const float *p = s + (size_t)r * pad;
			float *o = acc + r * hd;

			if (j0 >= end)
				continue;
			for (; d + 64 <= hd; d += 64)
				pv_tile(p, pad, fwd_kv_at(a->v, d, h), a->v_stride, j0, j1, o + d,
					hd, 4, h);
			if (d < hd)
				pv_tile(p, pad, fwd_kv_at(a->v, d, h), a->v_stride, j0, j1, o + d,
					hd, 2, h);
		}
	}
}

AI void attend_rows(const struct fwd_att_rows *a, bool h)
{
	uint32_t hd = a->hd, rows = a->rows, rows8 = (rows + QK_ROWS - 1) & ~(QK_ROWS - 1u);
	uint32_t n_keys = a->vis0 + rows - 1;
	uint32_t pad = (n_keys + FWD_KEY_CHUNK - 1) / FWD_KEY_CHUNK * FWD_KEY_CHUNK;
	uint32_t c0 = fwd_att_first_key(a, 0) / FWD_KEY_CHUNK * FWD_KEY_CHUNK;
	float *qs = a->scratch, *acc = qs + FWD_ATT_ROWS * hd, *s = acc + FWD_ATT_ROWS * hd;
	float inv[FWD_ATT_ROWS];

	fwd_att_scaled_q(a, qs, rows8);
	block_scores(a, qs, c0, pad, s, h);
	fwd_avx2_att_exp(a, s, pad, rows8, inv);
	memset(acc, 0, (size_t)rows8 * hd * sizeof(float));
	block_values(a, s, pad, acc, h);
	for (uint32_t r = 0; r < rows; r++) {
		__m512 k = _mm512_set1_ps(inv[r]);

		for (uint32_t d = 0; d < hd; d += 16)
			_mm512_storeu_ps(a->out + (size_t)r * a->out_stride + d,
					 _mm512_mul_ps(_mm512_loadu_ps(acc + r * hd + d), k));
	}
}

/* One row (a decode step) is the AVX2 port's: its tiles are already a row's. */
void fwd_avx512_attend_rows(const struct fwd_att_rows *a)
{
	if (a->rows == 1)
		fwd_ops_avx2.attend_rows(a);
	else if (a->f16)
		attend_rows(a, true);
	else
		attend_rows(a, false);
}
