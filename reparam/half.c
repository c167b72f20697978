// SPDX-License-Identifier: MIT
/*
 * f32 <-> IEEE half for the calibration driver's f16 storage: F16C when the CPU has it (eight
 * values per instruction), else the engine's scalar conversions. Both round to nearest even
 * and give the same bits, so a run does not depend on the machine.
 */
#include "reparam/internal.h"

#include "engine/dtype.h"

static bool half_scalar_from_f32(uint16_t *dst, const float *src, size_t n)
{
	uint16_t bad = 0;

	for (size_t i = 0; i < n; i++) {
		dst[i] = dtype_f32_to_f16(src[i]);
		bad |= (uint16_t)((dst[i] & 0x7c00) == 0x7c00);
	}
	return !bad;
}

static void half_scalar_to_f32(float *dst, const uint16_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = dtype_f16_to_f32(src[i]);
}

static bool use_f16c(void)
{
	static int have = -1;

	if (have < 0)
		have = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
	return have;
}

bool half_from_f32(uint16_t *dst, const float *src, size_t n, bool scalar)
{
	return !scalar && use_f16c() ? half_f16c_from_f32(dst, src, n)
				     : half_scalar_from_f32(dst, src, n);
}

void half_to_f32(float *dst, const uint16_t *src, size_t n, bool scalar)
{
	if (!scalar && use_f16c())
		half_f16c_to_f32(dst, src, n);
	else
		half_scalar_to_f32(dst, src, n);
}
