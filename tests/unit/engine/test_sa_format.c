// SPDX-License-Identifier: MIT
/* The on-disk shift-add layer format: round trips, APoT decomposition, hostile files. */
#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/sa_format.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static uint64_t rng = 42;

static uint32_t next_u32(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 32);
}

/* A random alpha that is a sum of @terms signed powers of two with distinct exponents. */
static float random_apot(uint32_t terms)
{
	double a = 0;
	int e = -(int)(next_u32() % 8);

	for (uint32_t t = 0; t < terms; t++) {
		a += (next_u32() & 1 ? 1 : -1) * ldexp(1.0, e);
		e -= 2 + (int)(next_u32() % 3);
	}
	return (float)a;
}

static void fill(struct qweight *w)
{
	uint64_t n_signs = (uint64_t)w->bits * w->n_rows * qweight_row_bytes(w);
	uint64_t n_alpha = (uint64_t)w->bits * qweight_n_row_blocks(w) * qweight_n_col_blocks(w);

	for (uint64_t i = 0; i < n_signs; i++)
		w->signs[i] = (uint8_t)next_u32();
	/* padding bits past n_cols are 0 by contract */
	for (uint32_t i = 0; i < w->bits; i++)
		for (uint32_t n = 0; n < w->n_rows; n++)
			for (uint32_t k = w->n_cols; k < qweight_row_bytes(w) * 8; k++)
				qweight_set_sign(w, i, n, k, -1);
	for (uint64_t i = 0; i < n_alpha; i++)
		w->alpha[i] = w->apot ? random_apot(1 + next_u32() % w->apot)
				      : (float)(next_u32() % 1000) / 997.0f;
}

static void round_trip(uint32_t n, uint32_t k, uint32_t bits, enum qw_layout layout, uint32_t apot)
{
	struct gguf_writer *wr = gguf_writer_new();
	struct gguf_file *g;
	struct qweight w, back;
	struct sa_rht rht = { .mode = (enum sa_rht_mode)(bits % SA_RHT_COUNT),
			      .seed_in = 0x123456789abcdefull * bits,
			      .seed_out = ~0ull - bits },
		      rback;
	struct errbuf e = { { 0 } };
	void **bufs = NULL, *img;
	uint32_t n_bufs = 0;
	size_t size;
	int r;

	assert_non_null(wr);
	assert_int_equal(qweight_init(&w, n, k, bits, layout, apot), 0);
	fill(&w);
	assert_int_equal(sa_format_add(wr, "blk.0.attn_q", &w, &rht, &bufs, &n_bufs), 0);
	assert_int_equal(gguf_writer_write_mem(wr, &img, &size), 0);
	assert_int_equal(gguf_open_mem(img, size, &g, &e), 0);
	assert_true(sa_format_present(g, "blk.0.attn_q"));
	assert_false(sa_format_present(g, "blk.0.attn_k"));
	r = sa_format_load(g, "blk.0.attn_q", &back, &rback, &e);
	if (r < 0)
		fail_msg("%s", errbuf_str(&e, r));
	assert_int_equal(rback.mode, rht.mode);
	if (rht.mode != SA_RHT_NONE) {
		assert_true(rback.seed_in == rht.seed_in);
		assert_true(rback.seed_out == rht.seed_out);
	}
	assert_int_equal(back.n_rows, n);
	assert_int_equal(back.n_cols, k);
	assert_int_equal(back.bits, bits);
	assert_int_equal(back.layout, layout);
	assert_int_equal(back.apot, apot);
	assert_memory_equal(back.signs, w.signs, (size_t)bits * n * qweight_row_bytes(&w));
	assert_memory_equal(back.alpha, w.alpha,
			    (size_t)bits * qweight_n_row_blocks(&w) * qweight_n_col_blocks(&w) *
				    sizeof(float));
	qweight_done(&back);
	qweight_done(&w);
	gguf_close(g);
	free(img);
	for (uint32_t i = 0; i < n_bufs; i++)
		free(bufs[i]);
	free(bufs);
	gguf_writer_free(wr);
}

static void test_round_trip_all_layouts_and_widths(void **state)
{
	for (uint32_t bits = 1; bits <= 4; bits++) {
		round_trip(64, 64, bits, QW_LAYOUT_COL, 3);
		round_trip(37, 53, bits, QW_LAYOUT_COL, 3);
		round_trip(37, 53, bits, QW_LAYOUT_BLOCK, 2);
		round_trip(9, 7, bits, QW_LAYOUT_BLOCK, 0);
		round_trip(100, 17, bits, QW_LAYOUT_COL, 0);
		round_trip(13, 300, bits, QW_LAYOUT_ROW, 0); /* bcq: 3 groups, the last ragged */
	}
}

static void test_pow2_terms_reconstruct_exactly(void **state)
{
	int8_t ex[8], sg[8];

	for (int i = 0; i < 2000; i++) {
		uint32_t terms = 1 + next_u32() % 3;
		float a = random_apot(terms);
		int n = sa_format_pow2_terms(a, 3, ex, sg);
		double back = 0;

		assert_true(n >= 1 && n <= (int)terms);
		for (int t = 0; t < n; t++)
			back += sg[t] * ldexp(1.0, ex[t]);
		assert_true(back == (double)a);
	}
	assert_int_equal(sa_format_pow2_terms(0.0f, 3, ex, sg), 0);
	/* 0.1 is no short sum of powers of two */
	assert_int_equal(sa_format_pow2_terms(0.1f, 3, ex, sg), -ERANGE);
	assert_int_equal(sa_format_pow2_terms(NAN, 3, ex, sg), -ERANGE);
	/* 7 = 8 - 1 needs two terms, not three */
	assert_int_equal(sa_format_pow2_terms(7.0f, 3, ex, sg), 2);
	assert_int_equal(ex[0], 3);
	assert_int_equal(sg[0], 1);
	assert_int_equal(ex[1], 0);
	assert_int_equal(sg[1], -1);
}

/* A file holding only the planes and a hand-made meta tensor (caller frees *img). */
static void image_with_meta(const int32_t meta[SA_META_LEN], uint64_t sign_row_bytes, void **img,
			    size_t *size)
{
	struct gguf_writer *wr = gguf_writer_new();
	uint64_t ne_meta = SA_META_LEN, ne_s[3] = { sign_row_bytes, 4, 2 }, ne_a[3] = { 16, 1, 2 };
	static uint8_t signs[64];
	static float alpha[32];

	assert_non_null(wr);
	gguf_writer_add_tensor(wr, "x.sa_meta", GGML_TYPE_I32, 1, &ne_meta, meta,
			       SA_META_LEN * sizeof(int32_t));
	gguf_writer_add_tensor(wr, "x.sa_signs", GGML_TYPE_I8, 3, ne_s, signs, sign_row_bytes * 8);
	gguf_writer_add_tensor(wr, "x.sa_alpha", GGML_TYPE_F32, 3, ne_a, alpha, 32 * 4);
	assert_int_equal(gguf_writer_write_mem(wr, img, size), 0);
	gguf_writer_free(wr);
}

/* sa_format_load of layer "x" in @img: its result, or -EIO if the file does not parse. */
static int load_image(const void *img, size_t size)
{
	struct gguf_file *g;
	struct qweight w;
	struct sa_rht rht;
	struct errbuf e;
	int r;

	if (gguf_open_mem(img, size, &g, NULL))
		return -EIO;
	r = sa_format_load(g, "x", &w, &rht, &e);
	if (r == 0)
		qweight_done(&w);
	gguf_close(g);
	return r;
}

static int load_with_meta(const int32_t meta[SA_META_LEN], uint64_t sign_row_bytes)
{
	void *img;
	size_t size;
	int r;

	image_with_meta(meta, sign_row_bytes, &img, &size);
	r = load_image(img, size);
	free(img);
	return r;
}

static void test_inconsistent_tensors_are_rejected(void **state)
{
	const int32_t good[SA_META_LEN] = { SA_FORMAT_VERSION, 16, QW_LAYOUT_COL, 0 };
	const int32_t future[SA_META_LEN] = { SA_FORMAT_VERSION + 1, 16, QW_LAYOUT_COL, 0 };
	const int32_t wide[SA_META_LEN] = { SA_FORMAT_VERSION, 17, QW_LAYOUT_COL, 0 };
	const int32_t layout[SA_META_LEN] = { SA_FORMAT_VERSION, 16, 7, 0 };
	const int32_t bad_rht[SA_META_LEN] = { SA_FORMAT_VERSION, 16, QW_LAYOUT_COL, 0, 7 };
	const int32_t apot[SA_META_LEN] = { SA_FORMAT_VERSION, 16, QW_LAYOUT_COL, 3 };

	assert_int_equal(load_with_meta(good, 2), 0);
	assert_int_equal(load_with_meta(future, 2), -EOPNOTSUPP);
	/* 17 columns need 3 bytes per row; the alphas cover only 16 */
	assert_int_equal(load_with_meta(wide, 2), -EBADMSG);
	assert_int_equal(load_with_meta(wide, 3), -EBADMSG);
	assert_int_equal(load_with_meta(layout, 2), -EBADMSG);
	/* apot > 0 requires the term tensors */
	assert_int_equal(load_with_meta(apot, 2), -EBADMSG);
	assert_int_equal(load_with_meta(bad_rht, 2), -EBADMSG);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

/*
 * A 1 KB file whose meta claims K = 2^30 columns (planes of 2^27 bytes per row) must be refused
 * from its shapes, before the layer's gigabytes are allocated: the loader runs in a child whose
 * address space is capped at 256 MiB, so allocating first fails with -ENOMEM instead of
 * -EBADMSG. (Sanitizer runtimes reserve terabytes of address space, so under them the cap is
 * left off and only the error is checked.)
 */
static void test_huge_claim_refused_before_allocating(void **state)
{
	const int32_t huge[SA_META_LEN] = { SA_FORMAT_VERSION, 1 << 30, QW_LAYOUT_COL, 0 };
	void *img;
	size_t size;
	int status;
	pid_t pid;

	(void)state;
	image_with_meta(huge, 2, &img, &size);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
#ifndef SANITIZED
		struct rlimit cap = { 256u << 20, 256u << 20 };

		if (setrlimit(RLIMIT_AS, &cap))
			_exit(2);
#endif
		_exit(load_image(img, size) == -EBADMSG ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	free(img);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int test_sa_format_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_all_layouts_and_widths),
		cmocka_unit_test(test_pow2_terms_reconstruct_exactly),
		cmocka_unit_test(test_inconsistent_tensors_are_rejected),
		cmocka_unit_test(test_huge_claim_refused_before_allocating),
	};
	return cmocka_run_group_tests_name("engine/sa_format", tests, NULL, NULL);
}
