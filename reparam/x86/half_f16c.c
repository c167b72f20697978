// SPDX-License-Identifier: MIT
/* F16C conversions (this file alone is built with -mf16c -mavx; reparam/half.c dispatches). */
#include "reparam/internal.h"

#include <immintrin.h>

bool half_f16c_from_f32(uint16_t *dst, const float *src, size_t n)
{
	__m128i bad = _mm_setzero_si128(), exp = _mm_set1_epi16(0x7c00);
	uint16_t tail = 0;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		__m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);

		_mm_storeu_si128((__m128i *)(dst + i), h);
		/* exponent all ones: the value overflowed to infinity or was NaN */
		bad = _mm_or_si128(bad, _mm_cmpeq_epi16(_mm_and_si128(h, exp), exp));
	}
	for (; i < n; i++) {
		dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
		tail |= (uint16_t)((dst[i] & 0x7c00) == 0x7c00);
	}
	return _mm_testz_si128(bad, bad) && !tail;
}

void half_f16c_to_f32(float *dst, const uint16_t *src, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(dst + i,
				 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
	for (; i < n; i++)
		dst[i] = _cvtsh_ss(src[i]);
}
