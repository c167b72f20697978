/* SPDX-License-Identifier: MIT */
#ifndef REPARAM_INTERNAL_H
#define REPARAM_INTERNAL_H

#include "reparam/quant.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Helpers shared inside reparam/ and reached by its unit tests. Codes: one byte per element,
 * bit i set <=> B_i = +1 (the qweight convention), so the value of code c under alpha is
 * sum_i (c >> i & 1 ? alpha[i] : -alpha[i]).
 */

#define BCQ_MAX_CODES (1u << QW_MAX_BITS)

struct bcq_cfg {
	uint32_t bits;	 /* q, 1..QW_MAX_BITS */
	uint32_t apot;	 /* power-of-two terms per alpha, 0 = real alpha (rounded to float) */
	uint32_t rounds; /* alternating refinement rounds after the greedy start */
};

/* Value of @code under @alpha[@bits]. */
double bcq_value(const double *alpha, uint32_t bits, uint32_t code);

/*
 * Nearest code for every v[e] under @alpha (any signs and order): sorted 2^bits candidates and
 * a binary search over their midpoints (ties go to the smaller value). Writes code[n].
 */
void bcq_assign(const double *alpha, uint32_t bits, const double *v, uint32_t n, uint8_t *code);

/*
 * Exact least squares: alpha[bits] minimizing sum_e wt[e] (v[e] - value(code[e]))^2 (@wt NULL =
 * all ones), from the 2^bits x bits normal equations (Gaussian elimination with pivoting;
 * rank-deficient systems fall back to LAPACK dgelsd's minimum-norm solution). Returns 0 or
 * -EDOM if LAPACK fails.
 */
int bcq_lsq(uint32_t bits, const double *v, const double *wt, const uint8_t *code, uint32_t n,
	    double *ret_alpha);

/* sum_e wt[e] (v[e] - value(code[e]))^2. */
double bcq_error(const double *alpha, uint32_t bits, const double *v, const double *wt,
		 const uint8_t *code, uint32_t n);

/*
 * BCQ of v[n] (weights @wt, NULL = ones): greedy start, then @c->rounds rounds of least
 * squares -> |alpha| sorted descending -> APoT rounding -> nearest-code assignment; stops early
 * at a fixed point (codes unchanged). Returns the best iterate: alpha[bits] >= 0 descending,
 * code[n], *ret_err. @trace, if not NULL, gets rounds + 1 errors (iterate 0 = greedy start;
 * entries after a fixed point repeat its error). Returns 0, -ENOMEM or -EDOM.
 */
int bcq_fit(const struct bcq_cfg *c, const double *v, const double *wt, uint32_t n,
	    double *ret_alpha, uint8_t *ret_code, double *ret_err, double *trace);

/* Uniform asymmetric quantizer of one row group (GPTQ's: range includes 0). */
struct uniform_param {
	double scale;
	double zero;
};

/* Parameters for values v[0..n) at @bits bits. */
struct uniform_param uniform_fit(const double *v, uint32_t n, uint32_t bits);
/* scale * (clamp(round(x / scale) + zero, 0, 2^bits - 1) - zero). */
double uniform_quant(struct uniform_param p, double x, uint32_t bits);

enum gptq_quant {
	GPTQ_UNIFORM,	/* per row (group 0) or groups of @group columns in walking order */
	GPTQ_BCQ_COL,	/* BCQ of each column (N values): alpha per column (COL layout) */
	GPTQ_BCQ_BLOCK, /* BCQ of each (N/8 x 8) block at its group start; signs per column */
};

struct gptq_cfg {
	enum gptq_quant quant;
	uint32_t bits, group, apot, rounds;
	bool feedback;	 /* false: no H, no error compensation (RTN / plain BCQ) */
	bool act_order;	 /* needs feedback */
	double percdamp; /* lambda = percdamp * mean(diag H) */
	uint32_t block_size;
};

/* The loop configuration for @o's options with quantizer @quant (one place for the mapping). */
struct gptq_cfg gptq_cfg_from_opts(const struct reparam_opts *o, enum gptq_quant quant);

/*
 * The GPTQ/OPTQ column loop. W: [n][k] double (read only), H: [k][k] upper triangle read
 * (unused without feedback). Writes @out_dense [n][k] (original column order) with the values
 * the loop quantized to, and for BCQ quantizers @qw (already qweight_init()ed by the caller
 * with the matching layout and @n, @k, bits). Returns 0, -EDOM (H not PD), -ENOMEM.
 */
int gptq_run(const struct gptq_cfg *c, const double *W, uint32_t n, uint32_t k, const double *H,
	     float *out_dense, struct qweight *qw, struct errbuf *e);

/*
 * @U ([k][k] row-major) = the upper triangle of @H (lower zeroed), zero diagonals set to 1
 * (dead columns: dead[j] = true if @dead is not NULL) and @percdamp of the mean diagonal
 * added to it: GPTQ's damped Hessian, as LAPACK's column-major 'L' reads it.
 */
void gptq_damped(const double *H, uint32_t k, double percdamp, double *U, bool *dead);

/*
 * Dead columns and damping as GPTQ does them, then U = upper Cholesky factor of H^-1 in @U
 * ([k][k] row-major, strict lower triangle zeroed). @H is read (upper triangle) and not
 * modified; @dead (may be NULL) gets dead[j] = diag(H)[j] == 0. Returns 0, -EDOM, -ENOMEM.
 */
int gptq_hinv_chol(const double *H, uint32_t k, double percdamp, double *U, bool *dead,
		   struct errbuf *e);

/*
 * Accumulator of the GPTQ Hessian H = 2 X^T X / n of the inputs X ([n][width] rows) of the
 * linears sharing one input (reparam/calib.c). Rows are taken CALIB_HACC_CHUNK at a time:
 * each chunk's X_c^T X_c is a symmetric rank-k update in f32 (ssyrk: half the flops of a
 * gemm, twice the rate of double), added into a double H, so the rounding error of a chunk
 * stays that of a few hundred f32 terms and does not grow with the number of chunks.
 */
#define CALIB_HACC_CHUNK 512
/*
 * Rows per chunk with bf16 products: those already sum in f32 over k-blocks of up to
 * GEMM_BF16_KC rows, so a longer chunk only adds a few more f32 sums of block results, and the
 * sweep of the double H (or D) is made once per 2048 rows instead of four times.
 */
#define CALIB_HACC_CHUNK_BF16 2048

struct calib_hacc {
	uint32_t width;
	uint32_t chunk;	 /* rows per product (CALIB_HACC_CHUNK[_BF16]; tests may change it) */
	uint64_t n_rows; /* rows added so far */
	bool bf16;	 /* chunk products in bf16 (kernels/gemm_bf16.h), else BLAS f32 */
	double *H;	 /* [width][width], upper triangle (the rest is not written) */
	float *tmp;	 /* [width][width]: one chunk's product */
};

/*
 * Empty accumulator for inputs of @width, whose chunk products are bf16 ones with @bf16 (the
 * caller checked gemm_bf16_supported()). Returns 0 or -ENOMEM (then calib_hacc_done()).
 */
int calib_hacc_init(struct calib_hacc *h, uint32_t width, bool bf16);
/* H += x^T x for the rows x[n][width]. f32 uses BLAS's threads, bf16 the calling thread; not
 * thread-safe on one @h. */
void calib_hacc_add(struct calib_hacc *h, const float *x, uint64_t n);
/* Add @src's rows into @dst (same width, neither finished): dst->H += src->H. */
void calib_hacc_merge(struct calib_hacc *dst, const struct calib_hacc *src);
/* Scale the sum to H = 2 X^T X / n_rows (n_rows > 0). */
void calib_hacc_finish(struct calib_hacc *h);
/* Free what calib_hacc_init() allocated; safe after a failed init. */
void calib_hacc_done(struct calib_hacc *h);

/*
 * Quantization error propagation (reparam/qep.c). D = 2 (X - X̂) X̂ᵀ / n over the rows added:
 * X the unquantized model's input of a linear, X̂ the quantized model's (rows [n][width]).
 */
struct calib_xacc {
	uint32_t width;
	uint64_t n_rows;
	bool bf16;	/* as calib_hacc's */
	double *D;	/* [width][width], full */
	float *tmp;	/* [width][width]: one chunk's product */
	uint32_t chunk; /* rows per product, as calib_hacc's */
	float *diff;	/* [chunk][width]: one chunk of X - X̂ */
};

/* Empty accumulator (@bf16 as calib_hacc_init()'s). Returns 0 or -ENOMEM (then
 * calib_xacc_done()). */
int calib_xacc_init(struct calib_xacc *a, uint32_t width, bool bf16);
/* D += (ref - x)^T x for the rows ref[n][width], x[n][width]. Not thread-safe on one @a. */
void calib_xacc_add(struct calib_xacc *a, const float *ref, const float *x, uint64_t n);
/* dst->D += src->D (same width, neither finished). */
void calib_xacc_merge(struct calib_xacc *dst, const struct calib_xacc *src);
/* Scale the sum to 2 D / n_rows, as calib_hacc_finish() scales H. */
void calib_xacc_finish(struct calib_xacc *a);
/* Free what calib_xacc_init() allocated; safe after a failed init. */
void calib_xacc_done(struct calib_xacc *a);

/*
 * M[k][k] = D (H + λI)⁻¹ with H's upper triangle (finished, as GPTQ reads it) damped as
 * GPTQ damps it (@percdamp of the mean diagonal; zero diagonals count as 1). 0, -ENOMEM, or
 * -EDOM with a message if the damped H is not positive definite.
 */
int qep_solve(const double *H, const double *D, uint32_t k, double percdamp, double *M,
	      struct errbuf *e);
/*
 * out[n][k] = W + @strength * W M: the weights whose output on the quantized input best
 * matches W's on the unquantized one (@strength 1), or part of the way there. @out may not
 * alias @W. 0 or -ENOMEM.
 */
int qep_apply(const float *W, uint32_t n, uint32_t k, const double *M, double strength, float *out);

/* Deterministic generator for the rotation (splitmix64 seeding a xoshiro256** stream). */
struct rng {
	uint64_t s[4];
};
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double rng_uniform(struct rng *r);
/* Standard normal (Box-Muller). */
double rng_normal(struct rng *r);

/*
 * Haar-random orthogonal @k x @k matrix from the QR factorization of a Gaussian matrix
 * (LAPACK dgeqrf/dorgqr, columns sign-corrected by diag(R)). Q row-major. Returns 0, -ENOMEM,
 * -EDOM.
 */
int rotate_random_orthogonal(uint32_t k, uint64_t seed, double *Q);

/*
 * shiftadd-rht (reparam/rht.c): transform @Wd (@n x @k, double; used as scratch, its contents
 * are lost: a second n x k copy of an LM head is gigabytes) and @H (upper triangle) as
 * @o->rht asks, quantize with column-wise APoT BCQ inside GPTQ, fill @r->qw (transformed
 * basis), @r->dense (original basis) and the rht fields. Returns 0, -EINVAL (a dimension the
 * transform rejects, message in @e), -EDOM, -ENOMEM.
 */
int reparam_rht_run(const struct reparam_opts *o, double *Wd, uint32_t n, uint32_t k,
		    const double *H, struct reparam_result *r, struct errbuf *e);

/*
 * IEEE half storage of calibration activations (reparam/half.c): @n values rounded to nearest
 * even. half_from_f32() returns false if any value became Inf or NaN (|x| >= 65520 or NaN in
 * @src); @scalar forces the portable path (tests compare the two). Thread-safe.
 */
bool half_from_f32(uint16_t *dst, const float *src, size_t n, bool scalar);
void half_to_f32(float *dst, const uint16_t *src, size_t n, bool scalar);
/* The F16C versions (reparam/x86/half_f16c.c); call only where the CPU has F16C and AVX. */
bool half_f16c_from_f32(uint16_t *dst, const float *src, size_t n);
void half_f16c_to_f32(float *dst, const uint16_t *src, size_t n);

struct gguf_file;
struct tokenizer;

/* The LLaMA-3 / Qwen2 pre-tokenizer regexes as tokenizer.json files spell them. */
extern const char export_re_llama3[];
extern const char export_re_qwen2[];

/*
 * The tokenizer of HF folder @dir (its tokenizer.json, tokenizer_config.json's chat template)
 * as GGUF tokenizer.* metadata, proven to encode a probe text exactly as @ref (the model's own
 * tokenizer, loaded from the same folder) does. On success *ret_g holds just those keys, over
 * the image *ret_buf: gguf_close() it, then free the image. -EOPNOTSUPP (with the reason in
 * @e) when the GGUF form cannot reproduce @ref, -EBADMSG, -ENOMEM, -errno.
 */
int export_tokenizer_hf(const char *dir, const struct tokenizer *ref, struct gguf_file **ret_g,
			void **ret_buf, struct errbuf *e);

#endif /* REPARAM_INTERNAL_H */
