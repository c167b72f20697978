// SPDX-License-Identifier: MIT
/*
 * Scalar versions of the forward pass's elementwise math (the reference and the fallback on
 * hosts without AVX2), key packing for the fused attention, and the choice of ISA.
 */
#include "engine/fwd_simd.h"
#include "engine/dtype.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

static void softmax_ref(float *x, uint32_t n)
{
	float mx = x[0], inv;
	double sum = 0;

	for (uint32_t i = 1; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	for (uint32_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - mx);
		sum += x[i];
	}
	inv = (float)(1.0 / sum);
	for (uint32_t i = 0; i < n; i++)
		x[i] *= inv;
}

static void silu_mul_ref(float *g, const float *u, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* 0.5 x (1 + tanh(y)) = x / (1 + e^(-2y)) with y = sqrt(2/pi) (x + 0.044715 x^3) */
#define GELU_K0 1.5957691216057308f /* 2 sqrt(2/pi) */
#define GELU_K1 0.044715f

static void gelu_mul_ref(float *g, const float *u, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		float x = g[i];

		g[i] = x / (1.0f + expf(-GELU_K0 * (x + GELU_K1 * x * x * x))) * u[i];
	}
}

static double logsumexp_ref(const float *x, uint32_t n)
{
	double mx = x[0], sum = 0;

	for (uint32_t i = 1; i < n; i++)
		mx = x[i] > mx ? x[i] : mx;
	for (uint32_t i = 0; i < n; i++)
		sum += exp((double)x[i] - mx);
	return log(sum) + mx;
}

static double sumsq_ref(const float *x, uint32_t n)
{
	double acc = 0;

	for (uint32_t i = 0; i < n; i++)
		acc += (double)x[i] * x[i];
	return acc;
}

/*
 * f16 of @f for the cache: rounded to nearest even, saturated to +-65504 (an overflow would
 * turn into infinities and NaN scores; NaN stays NaN).
 */
static uint16_t kv_half(float f)
{
	const float hmax = 65504.0f;

	return dtype_f32_to_f16(f > hmax ? hmax : f < -hmax ? -hmax : f);
}

static void to_f16_ref(uint16_t *dst, size_t dst_stride, const float *src, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		dst[i * dst_stride] = kv_half(src[i]);
}

static const struct fwd_ops ops_ref = {
	.name = "ref",
	.softmax = softmax_ref,
	.silu_mul = silu_mul_ref,
	.gelu_mul = gelu_mul_ref,
	.logsumexp = logsumexp_ref,
	.sumsq = sumsq_ref,
	.attend_rows = NULL, /* attention stays on BLAS */
	.to_f16 = to_f16_ref,
};

const struct fwd_ops *fwd_ops_of(enum lut_isa isa)
{
	if (isa == LUT_ISA_AUTO)
		isa = lut_isa_auto();
	if (isa == LUT_ISA_AVX512 && lut_isa_supported(LUT_ISA_AVX512))
		return &fwd_ops_avx512;
	/* AVX-512 hosts run AVX2 as well */
	if ((isa == LUT_ISA_AVX2 || isa == LUT_ISA_AVX512) && lut_isa_supported(LUT_ISA_AVX2))
		return &fwd_ops_avx2;
	return &ops_ref;
}

static _Atomic(const struct fwd_ops *) selected;

const struct fwd_ops *fwd_ops(void)
{
	const struct fwd_ops *o = atomic_load_explicit(&selected, memory_order_relaxed);

	if (!o) {
		o = fwd_ops_of(LUT_ISA_AUTO);
		atomic_store_explicit(&selected, o, memory_order_relaxed);
	}
	return o;
}

void fwd_ops_select(enum lut_isa isa)
{
	atomic_store_explicit(&selected, fwd_ops_of(isa), memory_order_relaxed);
}

size_t fwd_packed_keys_floats(uint32_t n_keys, uint32_t hd)
{
	size_t n_chunks = ((size_t)n_keys + FWD_KEY_CHUNK - 1) / FWD_KEY_CHUNK;

	return n_chunks * FWD_KEY_CHUNK * hd;
}

void fwd_kv_store(void *dst, const float *src, uint32_t n, bool f16)
{
	if (!f16) {
		memcpy(dst, src, n * sizeof(float));
		return;
	}
	fwd_ops()->to_f16(dst, 1, src, n);
}

/* Element offset of key @pos's first value in packed keys of dimension @hd. */
static size_t key_at(uint32_t pos, uint32_t hd)
{
	return (size_t)pos / FWD_KEY_CHUNK * FWD_KEY_CHUNK * hd + pos % FWD_KEY_CHUNK;
}

void fwd_pack_key(void *kt, const float *k, uint32_t pos, uint32_t hd, bool f16)
{
	size_t at = key_at(pos, hd);

	if (f16) {
		fwd_ops()->to_f16((uint16_t *)kt + at, FWD_KEY_CHUNK, k, hd);
		return;
	}
	for (uint32_t d = 0; d < hd; d++, at += FWD_KEY_CHUNK)
		((float *)kt)[at] = k[d];
}

/* Lines of 64 bytes from the one holding @first to the one holding @last, each once. */
static void prefetch_lines(const char *first, const char *last)
{
	for (uintptr_t line = (uintptr_t)first & ~(uintptr_t)63; line <= (uintptr_t)last;
	     line += 64)
		__builtin_prefetch((const void *)line, 1, 3);
}

void fwd_prefetch_key(const void *kt, uint32_t pos, uint32_t hd, bool f16)
{
	size_t elt = f16 ? sizeof(uint16_t) : sizeof(float);
	const char *p = (const char *)kt + key_at(pos, hd) * elt;

	/* one value every FWD_KEY_CHUNK elements (at most 64 bytes): every line in between */
	prefetch_lines(p, p + ((size_t)hd - 1) * FWD_KEY_CHUNK * elt);
}

void fwd_prefetch_span(const void *p, size_t bytes)
{
	if (bytes)
		prefetch_lines(p, (const char *)p + bytes - 1);
}

void fwd_pack_keys(void *kt, const float *k, uint32_t k_stride, uint32_t n_keys, uint32_t hd,
		   bool f16)
{
	size_t n_pad = fwd_packed_keys_floats(n_keys, hd) / hd;

	for (uint32_t j = 0; j < n_keys; j++)
		fwd_pack_key(kt, k + (size_t)j * k_stride, j, hd, f16);
	for (size_t j = n_keys; j < n_pad; j++) {
		size_t at = (n_pad - FWD_KEY_CHUNK) * hd + j % FWD_KEY_CHUNK;

		for (uint32_t d = 0; d < hd; d++, at += FWD_KEY_CHUNK) {
			if (f16)
				((uint16_t *)kt)[at] = 0;
			else
				((float *)kt)[at] = 0;
		}
	}
}

size_t fwd_att_scratch_floats(uint32_t hd, uint32_t n_keys)
{
	size_t pad = ((size_t)n_keys + FWD_KEY_CHUNK - 1) / FWD_KEY_CHUNK * FWD_KEY_CHUNK;

	/* scaled q and the output accumulators, [FWD_ATT_ROWS][hd] each, then the scores */
	return 2 * (size_t)FWD_ATT_ROWS * hd + (size_t)FWD_ATT_ROWS * pad;
}
