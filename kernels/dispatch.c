// SPDX-License-Identifier: MIT
/*
 * Runtime ISA choice: cpuid says what the CPU has, XGETBV whether the OS saves the vector
 * state (a host that disabled AVX-512 state gets AVX2, not SIGILL). SHIFTADD_ISA forces a
 * path for tests and benchmarks.
 */
#include "kernels/internal.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const struct lut_ops ops_ref = {
	.name = "ref",
	.tables = lut_tables_ref,
	.tiles = lut_tiles_ref,
};

static const struct lut_ops ops_avx2 = {
	.name = "avx2",
	.tables = lut_tables_avx2,
	.tiles = lut_tiles_avx2,
	.batch_build = lut_build_batch_avx2,
	.batch_tiles = lut_tiles_batch_avx2,
};

/*
 * The table build is not the hot loop; AVX-512 hosts all have AVX2, so it is shared, and so
 * are the batched lookups for now (not yet measured on an AVX-512 host).
 */
static const struct lut_ops ops_avx512 = {
	.name = "avx512",
	.tables = lut_tables_avx2,
	.tiles = lut_tiles_avx512,
	.batch_build = lut_build_batch_avx2,
	.batch_tiles = lut_tiles_batch_avx2,
};

static const char *const isa_names[LUT_ISA_COUNT] = {
	[LUT_ISA_AUTO] = "auto",
	[LUT_ISA_REF] = "ref",
	[LUT_ISA_AVX2] = "avx2",
	[LUT_ISA_AVX512] = "avx512",
};

const char *lut_isa_name(enum lut_isa isa)
{
	return (unsigned)isa < LUT_ISA_COUNT ? isa_names[isa] : NULL;
}

const struct lut_ops *lut_ops_of(enum lut_isa isa)
{
	switch (isa) {
	case LUT_ISA_AVX2:
		return &ops_avx2;
	case LUT_ISA_AVX512:
		return &ops_avx512;
	default:
		return &ops_ref;
	}
}

static uint64_t xgetbv0(void)
{
	uint32_t lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

static bool host_has[LUT_ISA_COUNT];
static bool host_bf16; /* AVX512_BF16 (kernels/gemm_bf16.h), with the AVX-512 state */
static enum lut_isa auto_isa;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe(void)
{
	uint32_t a, b, c, d;
	bool osxsave, avx2 = false, avx512 = false;
	const char *env = getenv("SHIFTADD_ISA");

	host_has[LUT_ISA_REF] = true;
	if (__get_cpuid(1, &a, &b, &c, &d)) {
		osxsave = c & (1u << 27);
		if (osxsave && __get_cpuid_max(0, NULL) >= 7) {
			uint64_t xcr0 = xgetbv0();

			__cpuid_count(7, 0, a, b, c, d);
			/* AVX2 (5) with BMI1 (3: the batched lookups' bextr), YMM state enabled */
			avx2 = (b & (1u << 5)) && (b & (1u << 3)) && (xcr0 & 0x6) == 0x6;
			/* F (16) and BW (30); opmask, ZMM_Hi256 and Hi16_ZMM state enabled */
			avx512 = avx2 && (b & (1u << 16)) && (b & (1u << 30)) &&
				 (xcr0 & 0xe6) == 0xe6;
			__cpuid_count(7, 1, a, b, c, d);
			host_bf16 = avx512 && (a & (1u << 5));
		}
	}
	host_has[LUT_ISA_AVX2] = avx2;
	host_has[LUT_ISA_AVX512] = avx512;
	auto_isa = avx512 ? LUT_ISA_AVX512 : avx2 ? LUT_ISA_AVX2 : LUT_ISA_REF;
	if (env && *env) {
		for (int i = LUT_ISA_REF; i < LUT_ISA_COUNT; i++)
			if (!strcmp(env, isa_names[i]))
				auto_isa = (enum lut_isa)i;
	}
}

bool lut_isa_supported(enum lut_isa isa)
{
	pthread_once(&probe_once, probe);
	if (isa == LUT_ISA_AUTO)
		return true;
	return (unsigned)isa < LUT_ISA_COUNT && host_has[isa];
}

bool kernels_host_bf16(void)
{
	pthread_once(&probe_once, probe);
	return host_bf16;
}

enum lut_isa lut_isa_auto(void)
{
	pthread_once(&probe_once, probe);
	return auto_isa;
}
