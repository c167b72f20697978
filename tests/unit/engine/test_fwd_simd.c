// SPDX-License-Identifier: MIT
/*
 * The forward pass's per-ISA math (engine/fwd_simd.h) against double-precision brute force
 * computed here, and the fused parallel attention against the BLAS path on the real model.
 */
#include "engine/fwd_simd.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/pool.h"
#include "engine/dtype.h"
#include "engine/eval.h"
#include "engine/model.h"

#define SMOLLM2 "models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* Deterministic uniform floats in [lo, hi). */
static float urand(uint64_t *s, float lo, float hi)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return lo + (hi - lo) * (float)((*s >> 40) * (1.0 / (1ull << 24)));
}

/* The ISAs this host runs: the scalar one always, AVX2 when present. */
static uint32_t host_ops(const struct fwd_ops **ops)
{
	uint32_t n = 0;

	ops[n++] = fwd_ops_of(LUT_ISA_REF);
	if (lut_isa_supported(LUT_ISA_AVX2))
		ops[n++] = fwd_ops_of(LUT_ISA_AVX2);
	return n;
}

/*
 * The ISAs with a fused attention kernel: AVX2, and AVX-512 whose prefill blocks are its own
 * and whose single rows are AVX2's (so a test of rows against blocks crosses the two).
 */
static uint32_t fused_ops(const struct fwd_ops **ops)
{
	uint32_t n = 0;

	if (lut_isa_supported(LUT_ISA_AVX2))
		ops[n++] = fwd_ops_of(LUT_ISA_AVX2);
	if (lut_isa_supported(LUT_ISA_AVX512))
		ops[n++] = fwd_ops_of(LUT_ISA_AVX512);
	return n;
}

static void test_softmax_matches_double(void **state)
{
	static const uint32_t lens[] = { 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 2048 };
	const struct fwd_ops *ops[2];
	uint32_t n_ops = host_ops(ops);
	uint64_t rng = 1;
	float x[2048], y[2048];

	for (uint32_t o = 0; o < n_ops; o++) {
		double worst = 0;

		for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
			uint32_t n = lens[k];
			float mx = -INFINITY;
			double sum = 0;

			/* a range wide enough that some terms fall below e^-87 */
			for (uint32_t i = 0; i < n; i++) {
				x[i] = urand(&rng, -60.0f, 60.0f);
				mx = x[i] > mx ? x[i] : mx;
			}
			memcpy(y, x, n * sizeof(float));
			ops[o]->softmax(y, n);
			/* x - max is a float (rounded when far from 0): the error allowed is
			 * that of exp and the normalization, not of the input's rounding */
			for (uint32_t i = 0; i < n; i++)
				sum += exp((double)(x[i] - mx));
			for (uint32_t i = 0; i < n; i++) {
				double want = exp((double)(x[i] - mx)) / sum;

				/* relative where the value is a normal float, absolute below */
				if (want > 1e-30) {
					double err = fabs(y[i] - want) / want;

					worst = err > worst ? err : worst;
				} else {
					assert_true(fabs(y[i] - want) < 1e-37);
				}
			}
		}
		printf("%s softmax: worst relative error %.3g\n", ops[o]->name, worst);
		assert_true(worst < 1e-6);
	}
}

static void test_logsumexp_matches_double(void **state)
{
	enum {
		N = 49157
	};
	const struct fwd_ops *ops[2];
	uint32_t n_ops = host_ops(ops);
	float *x = malloc(N * sizeof(float));
	uint64_t rng = 2;

	assert_non_null(x);
	for (uint32_t i = 0; i < N; i++)
		x[i] = urand(&rng, -30.0f, 25.0f);
	for (uint32_t o = 0; o < n_ops; o++) {
		for (uint32_t n = 1; n <= N; n = n * 3 + 1) {
			double mx = -INFINITY, sum = 0, got = ops[o]->logsumexp(x, n);

			for (uint32_t i = 0; i < n; i++)
				mx = x[i] > mx ? x[i] : mx;
			for (uint32_t i = 0; i < n; i++)
				sum += exp(x[i] - mx);
			assert_true(fabs(got - (log(sum) + mx)) < 1e-6);
		}
	}
	free(x);
}

enum {
	GATED_N = 1003
};

/* Test inputs: g uniform in [lo, hi) with saturating ends, u in [-2, 2). */
static void gated_inputs(float *g, float *u, float lo, float hi, uint64_t rng)
{
	for (uint32_t i = 0; i < GATED_N; i++) {
		g[i] = urand(&rng, lo, hi);
		u[i] = urand(&rng, -2.0f, 2.0f);
	}
	/* saturated ends: the exponential overflows or vanishes */
	g[0] = -100.0f;
	g[1] = 100.0f;
	g[2] = 0;
}

/*
 * Both gated activations are x * sigmoid(a(x)): SiLU a = x; GELU's tanh form (transformers'
 * gelu_pytorch_tanh, 0.5 x (1 + tanh(y))) a = 2y, y = sqrt(2/pi) (x + 0.044715 x^3), written
 * this way in double so that nothing cancels at x << 0.
 */
static double gated_arg(bool gelu, double x)
{
	return gelu ? 2 * sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x) : x;
}

/*
 * ops->silu_mul / gelu_mul of every host ISA against double on GATED_N inputs, at every
 * length up to 40 and some beyond (tails), entries past the length untouched. Tolerance:
 * relative @tol0, plus @tol_arg per unit of |a(x)| (the f32 rounding of a polynomial
 * argument carried into the exponential).
 */
static void check_gated(bool gelu, float lo, float hi, uint64_t seed, double tol0, double tol_arg)
{
	const struct fwd_ops *ops[2];
	uint32_t n_ops = host_ops(ops);
	float g[GATED_N], u[GATED_N], y[GATED_N];

	gated_inputs(g, u, lo, hi, seed);
	for (uint32_t o = 0; o < n_ops; o++) {
		for (uint32_t n = 1; n <= GATED_N; n += n < 40 ? 1 : 481) {
			memcpy(y, g, sizeof(g));
			(gelu ? ops[o]->gelu_mul : ops[o]->silu_mul)(y, u, n);
			for (uint32_t i = 0; i < GATED_N; i++) {
				double a = gated_arg(gelu, g[i]);
				double want = (double)g[i] / (1.0 + exp(-a)) * u[i];
				double tol = (tol0 + tol_arg * fabs(a)) * fabs(want) + 1e-30;

				if (i >= n) {
					assert_true(y[i] == g[i]);
					continue;
				}
				assert_true(isfinite(y[i]));
				if (!(fabs(y[i] - want) <= tol))
					fail_msg("%s n %u: %s(%.9g) * %.9g = %.9g, want %.9g",
						 ops[o]->name, n, gelu ? "gelu" : "silu", g[i],
						 u[i], y[i], want);
			}
		}
	}
}

static void test_silu_mul_and_sumsq_match_double(void **state)
{
	const struct fwd_ops *ops[2];
	uint32_t n_ops = host_ops(ops);
	float g[GATED_N], u[GATED_N];

	check_gated(false, -20.0f, 20.0f, 3, 1e-6, 0);
	gated_inputs(g, u, -20.0f, 20.0f, 3);
	for (uint32_t o = 0; o < n_ops; o++) {
		double want_ss = 0;

		for (uint32_t i = 0; i < GATED_N; i++)
			want_ss += (double)g[i] * g[i];
		for (uint32_t n = 0; n <= GATED_N; n += 97)
			assert_true(ops[o]->sumsq(g, n) >= 0);
		assert_true(fabs(ops[o]->sumsq(g, GATED_N) - want_ss) <= 1e-12 * want_ss);
	}
}

static void test_gelu_mul_matches_double(void **state)
{
	check_gated(true, -12.0f, 12.0f, 5, 2e-6, 1.2e-7);
}

static void test_nan_is_not_hidden(void **state)
{
	const struct fwd_ops *ops[2];
	uint32_t n_ops = host_ops(ops);

	for (uint32_t o = 0; o < n_ops; o++) {
		float x[20] = { 0 }, u[20], g[20] = { 0 };

		x[11] = NAN;
		ops[o]->softmax(x, 20);
		assert_true(isnan(x[0]) && isnan(x[19]));
		for (uint32_t i = 0; i < 20; i++)
			u[i] = 1;
		g[5] = NAN;
		ops[o]->silu_mul(g, u, 20);
		assert_true(isnan(g[5]));
		assert_true(g[4] == 0);
	}
}

/*
 * Causal attention of one block of rows, in double, straight from the definition, on the
 * keys @k and values @v (both @k_stride floats a row) as the kernel sees them.
 */
static void attend_ref(const struct fwd_att_rows *a, const float *k, const float *v,
		       uint32_t k_stride, double *out)
{
	uint32_t n = a->vis0 + a->rows - 1;
	double *s = malloc(n * sizeof(double));

	assert_non_null(s);
	for (uint32_t r = 0; r < a->rows; r++) {
		uint32_t vis = a->vis0 + r;
		uint32_t lo = a->win && vis > a->win ? vis - a->win : 0;
		double mx = -INFINITY, sum = 0;

		for (uint32_t j = lo; j < vis; j++) {
			double dot = 0;

			for (uint32_t d = 0; d < a->hd; d++)
				dot += (double)a->q[(size_t)r * a->q_stride + d] *
				       k[(size_t)j * k_stride + d];
			s[j] = dot * a->scale;
			mx = s[j] > mx ? s[j] : mx;
		}
		for (uint32_t j = lo; j < vis; j++)
			sum += s[j] = exp(s[j] - mx);
		for (uint32_t d = 0; d < a->hd; d++) {
			double acc = 0;

			for (uint32_t j = lo; j < vis; j++)
				acc += s[j] / sum * v[(size_t)j * k_stride + d];
			out[(size_t)r * a->hd + d] = acc;
		}
	}
	free(s);
}

/*
 * The values as the kernel reads them, from @n floats @v: a copy, or (@f16) their f16
 * halves; with @f16, @k and @v are rounded to what the kernel sees (f16 widens exactly).
 */
static void *kernel_values(float *k, float *v, size_t n, bool f16)
{
	void *out = malloc(n * (f16 ? sizeof(uint16_t) : sizeof(float)));

	assert_non_null(out);
	if (!f16) {
		memcpy(out, v, n * sizeof(float));
		return out;
	}
	for (size_t i = 0; i < n; i++) {
		k[i] = dtype_f16_to_f32(dtype_f32_to_f16(k[i]));
		((uint16_t *)out)[i] = dtype_f32_to_f16(v[i]);
		v[i] = dtype_f16_to_f32(((uint16_t *)out)[i]);
	}
	return out;
}

/*
 * A random attention problem: @rows query rows at positions vis0.., their keys and values
 * (rows @stride floats apart, f16-rounded with @f16), the packed keys and the scratch, and
 * a->... set for attend_rows except out and out_stride.
 */
struct att_case {
	float *q, *k, *v, *kt, *scr;
	void *vk; /* the values as the kernel reads them */
	uint32_t n, stride;
	struct fwd_att_rows a;
};

static void att_case_init(struct att_case *t, uint32_t hd, uint32_t rows, uint32_t vis0,
			  uint32_t win, uint32_t stride, bool f16, uint64_t *rng)
{
	uint32_t n = vis0 + rows - 1;

	t->n = n;
	t->stride = stride;
	t->q = malloc((size_t)rows * stride * sizeof(float));
	t->k = malloc((size_t)n * stride * sizeof(float));
	t->v = malloc((size_t)n * stride * sizeof(float));
	t->kt = aligned_alloc(32, fwd_packed_keys_floats(n, hd) * sizeof(float));
	t->scr = aligned_alloc(32, fwd_att_scratch_floats(hd, n) * sizeof(float));
	assert_true(t->q && t->k && t->v && t->kt && t->scr);
	for (size_t i = 0; i < (size_t)rows * stride; i++)
		t->q[i] = urand(rng, -3.0f, 3.0f);
	for (size_t i = 0; i < (size_t)n * stride; i++) {
		t->k[i] = urand(rng, -3.0f, 3.0f);
		t->v[i] = urand(rng, -1.0f, 1.0f);
	}
	t->vk = kernel_values(t->k, t->v, (size_t)n * stride, f16);
	fwd_pack_keys(t->kt, t->k, stride, n, hd, f16);
	t->a = (struct fwd_att_rows){
		.q = t->q,
		.kt = t->kt,
		.v = t->vk,
		.f16 = f16,
		.scratch = t->scr,
		.q_stride = stride,
		.v_stride = stride,
		.hd = hd,
		.rows = rows,
		.vis0 = vis0,
		.win = win,
		.scale = 1.0f / sqrtf((float)hd),
	};
}

static void att_case_free(struct att_case *t)
{
	free(t->q);
	free(t->k);
	free(t->v);
	free(t->kt);
	free(t->scr);
	free(t->vk);
}

/* The fused kernel against attend_ref, with f32 and with f16 keys and values. */
/* Every port's to_f16: the bits of dtype_f32_to_f16 of the value clamped to +-65504. */
static uint16_t clamped_half(float f)
{
	return dtype_f32_to_f16(f > 65504.0f ? 65504.0f : f < -65504.0f ? -65504.0f : f);
}

static void test_to_f16_matches_scalar_rounding(void **state)
{
	const float specials[] = {
		0.0f,
		-0.0f,
		1.0f,
		-1.0f,
		65504.0f,
		65505.0f,
		65519.99f,
		65520.0f,
		-70000.0f,
		1e9f,
		-1e30f,
		INFINITY,
		-INFINITY,
		NAN,
		-NAN,
		0x1p-24f,
		0x1p-25f,
		0x1.8p-24f,
		0x1.8p-25f,
		0x1p-14f,
		0x1.ffcp-15f,
		0x1p-126f,
		0x1p-149f,
		-0x1p-140f,
		1.0f + 0x1p-11f,
		1.0f + 0x3p-11f,
		2049.0f,
		2051.0f,
		0.1f,
	};
	enum {
		N = 67
	};
	const struct fwd_ops *ops[3];
	uint32_t n_ops = host_ops(ops);
	static const size_t strides[] = { 1, FWD_KEY_CHUNK };
	uint64_t rng = 7;
	float x[N];
	uint16_t out[N * FWD_KEY_CHUNK];

	(void)state;
	if (lut_isa_supported(LUT_ISA_AVX512))
		ops[n_ops++] = fwd_ops_of(LUT_ISA_AVX512);
	/* hand values: the saturation, a subnormal, a tie to even, NaN kept */
	assert_int_equal(clamped_half(1e9f), 0x7bff);
	assert_int_equal(clamped_half(-INFINITY), 0xfbff);
	assert_int_equal(clamped_half(0x1p-24f), 0x0001);
	assert_int_equal(clamped_half(0x1p-25f), 0x0000);
	assert_int_equal(clamped_half(0x1.8p-24f), 0x0002);
	assert_true((clamped_half(NAN) & 0x7c00) == 0x7c00 && (clamped_half(NAN) & 0x3ff));
	for (uint32_t i = 0; i < N; i++) {
		/* the specials, then magnitudes spread over f16's range and beyond */
		if (i < sizeof(specials) / sizeof(specials[0]))
			x[i] = specials[i];
		else
			x[i] = ldexpf(urand(&rng, -1.0f, 1.0f), (int)urand(&rng, -30.0f, 20.0f));
	}
	for (uint32_t o = 0; o < n_ops; o++) {
		for (uint32_t si = 0; si < 2; si++) {
			/* every length up to N covers each tail of a vector of 8 */
			for (uint32_t n = 0; n <= N; n += n < 20 ? 1 : 47) {
				size_t st = strides[si];

				memset(out, 0xa5, sizeof(out));
				ops[o]->to_f16(out, st, x, n);
				for (uint32_t i = 0; i < n; i++)
					if (out[i * st] != clamped_half(x[i]))
						fail_msg(
							"%s stride %zu n %u: x[%u] = %a gave %#x, want %#x",
							ops[o]->name, st, n, i, (double)x[i],
							out[i * st], clamped_half(x[i]));
				/* nothing between the strided values, nothing past the last */
				for (size_t i = 0; i < N * FWD_KEY_CHUNK; i++)
					if ((i % st || i / st >= n) && out[i] != 0xa5a5)
						fail_msg("%s stride %zu n %u: wrote element %zu",
							 ops[o]->name, st, n, i);
			}
		}
	}
}

static void test_attend_rows_matches_double(void **state)
{
	/* win: sliding windows (Gemma 3: 512 keys, hd 256) inside and across key chunks */
	static const struct {
		uint32_t hd, rows, vis0, win;
	} cases[] = {
		{ 64, 32, 1, 0 },      { 64, 1, 1, 0 },	      { 64, 5, 1, 0 },
		{ 64, 31, 17, 0 },     { 64, 32, 300, 0 },    { 128, 13, 40, 0 },
		{ 32, 32, 64, 0 },     { 64, 2, 1000, 0 },    { 64, 32, 300, 17 },
		{ 64, 5, 3, 2 },       { 64, 31, 17, 40 },    { 64, 32, 1, 1 },
		{ 256, 32, 600, 512 }, { 256, 1, 1500, 512 }, { 32, 20, 70, 16 },
		{ 96, 17, 33, 0 },     { 96, 26, 200, 50 },
	};
	const struct fwd_ops *ops[2];
	uint32_t n_ops = fused_ops(ops);
	size_t n_cases = sizeof(cases) / sizeof(cases[0]);
	uint64_t rng = 4;

	if (!n_ops) {
		printf("attend_rows: no fused kernel on this host, skipped\n");
		return;
	}
	for (size_t cf = 0; cf < 2 * n_cases * n_ops; cf++) {
		const struct fwd_ops *o = ops[cf / (2 * n_cases)];
		size_t c = cf / 2 % n_cases;
		bool f16 = cf % 2;
		uint32_t hd = cases[c].hd, rows = cases[c].rows, vis0 = cases[c].vis0;
		uint32_t stride = hd + 3; /* odd strides: unaligned rows */
		float *out = malloc((size_t)rows * stride * sizeof(float));
		double *want = malloc((size_t)rows * hd * sizeof(double)), worst = 0;
		struct att_case t;

		assert_true(out && want);
		att_case_init(&t, hd, rows, vis0, cases[c].win, stride, f16, &rng);
		t.a.out = out;
		t.a.out_stride = stride;
		for (size_t i = 0; i < (size_t)rows * stride; i++)
			out[i] = 12345.0f;
		o->attend_rows(&t.a);
		attend_ref(&t.a, t.k, t.v, stride, want);
		for (uint32_t r = 0; r < rows; r++) {
			for (uint32_t d = 0; d < hd; d++) {
				double e = fabs(out[(size_t)r * stride + d] -
						want[(size_t)r * hd + d]);

				worst = e > worst ? e : worst;
			}
			/* the stride's gap is not written */
			for (uint32_t d = hd; d < stride && r + 1 < rows; d++)
				assert_true(out[(size_t)r * stride + d] == 12345.0f);
		}
		/* f32 dot products of hd terms: the rounding grows with hd */
		if (worst >= 2e-6 * (hd > 64 ? hd / 64 : 1))
			fail_msg("%s: hd %u rows %u vis0 %u win %u f16 %d: error %g", o->name, hd,
				 rows, vis0, cases[c].win, f16, worst);
		att_case_free(&t);
		free(out);
		free(want);
	}
}

/*
 * A query row gives the same bits whether it is computed in a block of rows (prefill), alone
 * (a decode step, which has its own code path) or beside the other heads of its KV head
 * (attend_heads): the daemon prefills in chunks and generate prefills whole prompts, and
 * their greedy ids must agree.
 */
static void test_attend_row_alone_equals_row_in_block(void **state)
{
	static const struct {
		uint32_t hd, rows, vis0, win;
	} cases[] = {
		{ 64, 32, 1, 0 },    { 64, 32, 70, 0 }, { 64, 7, 1000, 0 },
		{ 32, 20, 90, 0 },   { 96, 9, 129, 0 }, { 256, 32, 600, 512 },
		{ 64, 32, 300, 17 }, { 64, 3, 63, 64 }, { 128, 13, 40, 0 },
	};
	const struct fwd_ops *ops[2];
	uint32_t n_ops = fused_ops(ops);
	size_t n_cases = sizeof(cases) / sizeof(cases[0]);
	uint64_t rng = 9;

	(void)state;
	if (!n_ops) {
		printf("attend_rows: no fused kernel on this host, skipped\n");
		return;
	}
	for (size_t cf = 0; cf < 2 * n_cases * n_ops; cf++) {
		const struct fwd_ops *o = ops[cf / (2 * n_cases)];
		size_t c = cf / 2 % n_cases;
		bool f16 = cf % 2;
		uint32_t hd = cases[c].hd, rows = cases[c].rows, vis0 = cases[c].vis0;
		uint32_t n = vis0 + rows - 1;
		float *blk = malloc((size_t)rows * hd * sizeof(float));
		float *one = malloc((size_t)rows * hd * sizeof(float));
		struct att_case t;
		struct fwd_att_rows a;

		assert_true(blk && one);
		att_case_init(&t, hd, rows, vis0, cases[c].win, hd + 5, f16, &rng);
		a = t.a;
		a.out = blk;
		a.out_stride = hd;
		o->attend_rows(&a);
		a.rows = 1;
		for (uint32_t r = 0; r < rows; r++) {
			a.q = t.q + (size_t)r * t.stride;
			a.out = one + (size_t)r * hd;
			a.vis0 = vis0 + r;
			o->attend_rows(&a);
		}
		if (memcmp(blk, one, (size_t)rows * hd * sizeof(float)))
			fail_msg("%s: hd %u rows %u vis0 %u win %u f16 %d: a row alone differs",
				 o->name, hd, rows, vis0, cases[c].win, f16);
		/* the rows as heads of one KV head, all at the last position (a decode step) */
		for (uint32_t r = 0; r < rows; r++)
			memcpy(blk + (size_t)r * hd, t.q + (size_t)r * t.stride,
			       hd * sizeof(float));
		a.vis0 = n;
		for (uint32_t r = 0; r < rows; r++) {
			a.q = blk + (size_t)r * hd;
			a.out = one + (size_t)r * hd;
			o->attend_rows(&a);
		}
		memcpy(t.q, blk, (size_t)rows * hd * sizeof(float));
		a.q = t.q;
		a.out = blk;
		o->attend_heads(&a, rows);
		if (memcmp(blk, one, (size_t)rows * hd * sizeof(float)))
			fail_msg("%s: hd %u heads %u keys %u win %u f16 %d: heads together differ",
				 o->name, hd, rows, n, cases[c].win, f16);
		att_case_free(&t);
		free(blk);
		free(one);
	}
}

static double max_diff(const float *a, const float *b, size_t n)
{
	double d = 0;

	for (size_t i = 0; i < n; i++)
		d = fabs(a[i] - b[i]) > d ? fabs(a[i] - b[i]) : d;
	return d;
}

/* A task runner that runs the tasks one after another, last first. */
static void run_backwards(void *ctx, uint32_t n_tasks, lut_task_fn fn, void *arg)
{
	(void)ctx;
	for (uint32_t i = n_tasks; i-- > 0;)
		fn(arg, i);
}

/*
 * The fused attention gives the same hidden states bit for bit however its work is spread
 * (threads of its own, a pool, a caller's runner), and those of the BLAS path to within
 * rounding.
 */
static void test_fused_attention_matches_blas_path(void **state)
{
	enum {
		N = 200
	};
	struct model *m[3] = { NULL };
	struct model_load_opts lo = { .backend = LINEAR_BACKEND_DENSE };
	struct pool *pool = NULL;
	int32_t tok[N];
	uint32_t seq[N], pos[N];
	float *h[4];
	size_t nh;
	struct kv_cache kv;
	double d;

	if (!fwd_ops_of(LUT_ISA_AUTO)->attend_rows) {
		printf("fused attention: not on this host, skipped\n");
		return;
	}
	assert_int_equal(model_load(SMOLLM2, &m[0], NULL), 0);
	assert_int_equal(pool_new(3, NULL, &pool), 0);
	lo.pool = pool;
	assert_int_equal(model_load_ex(SMOLLM2, &lo, &m[1], NULL), 0);
	lo.pool = NULL;
	lo.runner = (struct lut_runner){ .run = run_backwards, .n_workers = 5 };
	assert_int_equal(model_load_ex(SMOLLM2, &lo, &m[2], NULL), 0);
	for (uint32_t i = 0; i < N; i++) {
		tok[i] = (int32_t)(17 + (i * 7919u) % 40000u);
		seq[i] = 0;
		pos[i] = i;
	}
	nh = (size_t)N * m[0]->cfg.dim;
	/* h[0]: BLAS path; h[1..3]: fused on own threads, the pool, the runner. The cache
	 * packs its keys for the fused kernel when the ops in force at its init have one. */
	for (int k = 0; k < 4; k++) {
		h[k] = malloc(nh * sizeof(float));
		assert_non_null(h[k]);
		fwd_ops_select(k == 0 ? LUT_ISA_REF : LUT_ISA_AUTO);
		assert_int_equal(kv_cache_init(&kv, m[0], 1, N), 0);
		assert_true(k == 0 ? kv.k && !kv.kt : kv.kt && !kv.k);
		assert_int_equal(model_forward(m[k ? k - 1 : 0], &kv, tok, seq, pos, N, h[k]), 0);
		kv_cache_done(&kv);
	}
	fwd_ops_select(LUT_ISA_AUTO);
	d = max_diff(h[0], h[1], nh);
	printf("smollm2: %u-token prefill, fused vs BLAS attention: max |diff| %.3g\n", N, d);
	assert_true(d < 1e-3);
	assert_true(memcmp(h[1], h[2], nh * sizeof(float)) == 0);
	assert_true(memcmp(h[1], h[3], nh * sizeof(float)) == 0);
	for (int k = 0; k < 4; k++)
		free(h[k]);
	for (int k = 0; k < 3; k++)
		model_free(m[k]);
	pool_free(pool);
}

/*
 * An f16 cache on the real model: half the bytes of the f32 one, and hidden states within
 * f16's rounding of the f32 cache's. (A decode row equals its prefill row in the kernel:
 * test_attend_row_alone_equals_row_in_block; here BLAS would differ between the two.)
 */
static void test_f16_cache_tracks_f32(void **state)
{
	enum {
		N = 300
	};
	struct model *m = NULL;
	struct kv_cache kv[2];
	int32_t tok[N];
	uint32_t seq[N], pos[N];
	float *h[2];
	size_t nh;
	double d, mx = 0;

	(void)state;
	if (!kv_f16_supported()) {
		printf("f16 cache: no fused kernel with F16C on this host, skipped\n");
		return;
	}
	assert_int_equal(model_load(SMOLLM2, &m, NULL), 0);
	for (uint32_t i = 0; i < N; i++) {
		tok[i] = (int32_t)(17 + (i * 7919u) % 40000u);
		seq[i] = 0;
		pos[i] = i;
	}
	nh = (size_t)N * m->cfg.dim;
	for (int k = 0; k < 2; k++) {
		h[k] = malloc(nh * sizeof(float));
		assert_non_null(h[k]);
		assert_int_equal(kv_cache_init_type(&kv[k], m, 1, N, k ? KV_F16 : KV_F32), 0);
		assert_true(kv[k].f16 == (k > 0));
	}
	assert_true(kv[1].bytes * 2 == kv[0].bytes && kv[1].kt_bytes * 2 == kv[0].kt_bytes);
	assert_int_equal(model_forward(m, &kv[0], tok, seq, pos, N, h[0]), 0);
	assert_int_equal(model_forward(m, &kv[1], tok, seq, pos, N, h[1]), 0);
	for (size_t i = 0; i < nh; i++)
		mx = fabs(h[0][i]) > mx ? fabs(h[0][i]) : mx;
	d = max_diff(h[0], h[1], nh);
	printf("smollm2: %u-token prefill, f16 vs f32 cache: max |diff| %.3g of max |h| %.3g\n", N,
	       d, mx);
	assert_true(d > 0 && d < 1e-3 * mx);
	for (int k = 0; k < 2; k++) {
		kv_cache_done(&kv[k]);
		free(h[k]);
	}
	model_free(m);
}

/*
 * eval_ppl (logits in chunks, per-token NLLs split over the workers) against one forward per
 * window and the NLLs summed here in double from the full logits.
 */
static void test_eval_ppl_matches_brute_force(void **state)
{
	enum {
		SEQ = 150,
		WIN = 2
	};
	struct model *m = NULL;
	struct kv_cache kv;
	struct ppl_result res;
	int32_t ids[SEQ * WIN];
	uint32_t seq[SEQ], pos[SEQ];
	float *hid, *lg;
	double nll = 0, want;

	assert_int_equal(model_load(SMOLLM2, &m, NULL), 0);
	for (uint32_t i = 0; i < SEQ * WIN; i++)
		ids[i] = (int32_t)(17 + (i * 7919u) % 40000u);
	hid = malloc((size_t)SEQ * m->cfg.dim * sizeof(float));
	lg = malloc((size_t)SEQ * m->cfg.n_vocab * sizeof(float));
	assert_true(hid && lg);
	assert_int_equal(kv_cache_init(&kv, m, 1, SEQ), 0);
	for (uint32_t w = 0; w < WIN; w++) {
		for (uint32_t i = 0; i < SEQ; i++) {
			seq[i] = 0;
			pos[i] = i;
		}
		assert_int_equal(model_forward(m, &kv, ids + w * SEQ, seq, pos, SEQ, hid), 0);
		model_logits(m, hid, SEQ, lg);
		for (uint32_t t = 0; t + 1 < SEQ; t++) {
			const float *row = lg + (size_t)t * m->cfg.n_vocab;
			double mx = -INFINITY, sum = 0;

			for (uint32_t i = 0; i < m->cfg.n_vocab; i++)
				mx = row[i] > mx ? row[i] : mx;
			for (uint32_t i = 0; i < m->cfg.n_vocab; i++)
				sum += exp(row[i] - mx);
			nll += log(sum) + mx - row[ids[w * SEQ + t + 1]];
		}
	}
	want = exp(nll / (WIN * (SEQ - 1)));
	assert_int_equal(eval_ppl(m, ids, SEQ * WIN, SEQ, 0, false, KV_F32, NULL, NULL, &res), 0);
	printf("smollm2: ppl of %u windows of %u: %.7f, brute force %.7f\n", WIN, SEQ, res.ppl,
	       want);
	assert_int_equal(res.n_windows, WIN);
	assert_true(fabs(res.ppl - want) <= 1e-6 * want);
	free(hid);
	free(lg);
	kv_cache_done(&kv);
	model_free(m);
}

int test_fwd_simd_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_softmax_matches_double),
		cmocka_unit_test(test_logsumexp_matches_double),
		cmocka_unit_test(test_silu_mul_and_sumsq_match_double),
		cmocka_unit_test(test_gelu_mul_matches_double),
		cmocka_unit_test(test_nan_is_not_hidden),
		cmocka_unit_test(test_to_f16_matches_scalar_rounding),
		cmocka_unit_test(test_attend_rows_matches_double),
		cmocka_unit_test(test_attend_row_alone_equals_row_in_block),
		cmocka_unit_test(test_fused_attention_matches_blas_path),
		cmocka_unit_test(test_f16_cache_tracks_f32),
		cmocka_unit_test(test_eval_ppl_matches_brute_force),
	};

	return cmocka_run_group_tests_name("engine/fwd_simd", tests, NULL, NULL);
}
