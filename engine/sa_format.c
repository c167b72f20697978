// SPDX-License-Identifier: MIT
#include "engine/sa_format.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/gguf_write.h"

int sa_format_pow2_terms(float a, uint32_t max_terms, int8_t *ret_exp, int8_t *ret_sign)
{
	int e2, n = 0, sign = a < 0 ? -1 : 1;
	uint64_t m;
	int64_t digits[32];
	int n_dig = 0;

	if (a == 0)
		return 0;
	if (!isfinite(a))
		return -ERANGE;
	/* |a| = m * 2^(e2 - 24) with m a 24-bit integer */
	m = (uint64_t)ldexp(frexp(fabs((double)a), &e2), 24);
	/* non-adjacent form of m: the fewest signed binary digits */
	while (m) {
		int64_t d = 0;

		if (m & 1) {
			d = 2 - (int64_t)(m & 3);
			m -= d;
		}
		digits[n_dig++] = d;
		m >>= 1;
	}
	for (int i = n_dig - 1; i >= 0; i--) {
		int ex = e2 - 24 + i;

		if (!digits[i])
			continue;
		if ((uint32_t)n == max_terms || ex < INT8_MIN || ex > INT8_MAX)
			return -ERANGE;
		ret_exp[n] = (int8_t)ex;
		ret_sign[n] = (int8_t)(sign * digits[i]);
		n++;
	}
	return n;
}

int sa_keep_buf(void ***bufs, uint32_t *n, void *p)
{
	void **nb = realloc(*bufs, (*n + 1) * sizeof(*nb));

	if (!nb) {
		free(p);
		return -ENOMEM;
	}
	nb[(*n)++] = p;
	*bufs = nb;
	return 0;
}

static int add_alpha_terms(struct gguf_writer *wr, const char *base, const struct qweight *w,
			   void ***bufs, uint32_t *n_bufs)
{
	uint64_t n_alpha = (uint64_t)w->bits * qweight_n_row_blocks(w) * qweight_n_col_blocks(w);
	uint64_t ne[4] = { w->apot, qweight_n_col_blocks(w), qweight_n_row_blocks(w), w->bits };
	int8_t *ex = calloc(n_alpha * w->apot, 1), *sg = calloc(n_alpha * w->apot, 1);
	char name[128];
	int r;

	if (!ex || !sg) {
		free(ex);
		free(sg);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < n_alpha; i++) {
		r = sa_format_pow2_terms(w->alpha[i], w->apot, ex + i * w->apot, sg + i * w->apot);
		if (r < 0) {
			free(ex);
			free(sg);
			return r;
		}
	}
	if ((r = sa_keep_buf(bufs, n_bufs, ex)) < 0) {
		free(sg);
		return r;
	}
	if ((r = sa_keep_buf(bufs, n_bufs, sg)) < 0)
		return r;
	snprintf(name, sizeof(name), "%s.sa_aexp", base);
	r = gguf_writer_add_tensor(wr, name, GGML_TYPE_I8, 4, ne, ex, n_alpha * w->apot);
	if (r < 0)
		return r;
	snprintf(name, sizeof(name), "%s.sa_asgn", base);
	return gguf_writer_add_tensor(wr, name, GGML_TYPE_I8, 4, ne, sg, n_alpha * w->apot);
}

int sa_format_add(struct gguf_writer *wr, const char *base, const struct qweight *w,
		  const struct sa_rht *rht, void ***bufs, uint32_t *n_bufs)
{
	uint64_t ne[4] = { qweight_row_bytes(w), w->n_rows, w->bits, 1 }, ne_meta = SA_META_LEN;
	int32_t *meta = calloc(SA_META_LEN, sizeof(*meta));
	char name[128];
	int r;

	if (!meta)
		return -ENOMEM;
	meta[0] = SA_FORMAT_VERSION;
	meta[1] = (int32_t)w->n_cols;
	meta[2] = (int32_t)w->layout;
	meta[3] = (int32_t)w->apot;
	if (rht && rht->mode != SA_RHT_NONE) {
		meta[4] = (int32_t)rht->mode;
		meta[5] = (int32_t)(uint32_t)rht->seed_in;
		meta[6] = (int32_t)(uint32_t)(rht->seed_in >> 32);
		meta[7] = (int32_t)(uint32_t)rht->seed_out;
		meta[8] = (int32_t)(uint32_t)(rht->seed_out >> 32);
	}
	r = sa_keep_buf(bufs, n_bufs, meta);
	if (r < 0)
		return r;
	snprintf(name, sizeof(name), "%s.sa_meta", base);
	r = gguf_writer_add_tensor(wr, name, GGML_TYPE_I32, 1, &ne_meta, meta,
				   SA_META_LEN * sizeof(*meta));
	if (r < 0)
		return r;
	snprintf(name, sizeof(name), "%s.sa_signs", base);
	r = gguf_writer_add_tensor(wr, name, GGML_TYPE_I8, 3, ne, w->signs, ne[0] * ne[1] * ne[2]);
	if (r < 0)
		return r;
	if (w->apot)
		return add_alpha_terms(wr, base, w, bufs, n_bufs);
	ne[0] = qweight_n_col_blocks(w);
	ne[1] = qweight_n_row_blocks(w);
	ne[2] = w->bits;
	snprintf(name, sizeof(name), "%s.sa_alpha", base);
	return gguf_writer_add_tensor(wr, name, GGML_TYPE_F32, 3, ne, w->alpha,
				      ne[0] * ne[1] * ne[2] * sizeof(float));
}

static const struct gguf_tensor *find(const struct gguf_file *g, const char *base,
				      const char *suffix)
{
	char name[160];

	snprintf(name, sizeof(name), "%s.%s", base, suffix);
	return gguf_find_tensor(g, name);
}

int sa_format_present(const struct gguf_file *g, const char *base)
{
	return find(g, base, "sa_signs") != NULL;
}

static int load_alpha_terms(const struct gguf_tensor *te, const struct gguf_tensor *ts,
			    struct qweight *w, uint64_t n_alpha, struct errbuf *e)
{
	const int8_t *ex = te->data, *sg = ts->data;

	for (uint64_t i = 0; i < n_alpha; i++) {
		double a = 0;

		for (uint32_t t = 0; t < w->apot; t++) {
			int8_t s = sg[i * w->apot + t];

			if (s < -1 || s > 1)
				return errbuf_set(e, -EBADMSG, "alpha sign %d out of range", s);
			a += s * ldexp(1.0, ex[i * w->apot + t]);
		}
		if (!isfinite((float)a))
			return errbuf_set(e, -EBADMSG, "alpha out of float range");
		w->alpha[i] = (float)a;
	}
	return 0;
}

/* The alpha tensors must have exactly the shape @w's layout implies. */
static bool alpha_shape_ok(const struct qweight *w, const struct gguf_tensor *t, bool terms)
{
	uint64_t want[4] = { w->apot, qweight_n_col_blocks(w), qweight_n_row_blocks(w), w->bits };
	const uint64_t *wp = terms ? want : want + 1;
	uint32_t nd = terms ? 4 : 3;

	if (t->n_dims != nd)
		return false;
	for (uint32_t i = 0; i < nd; i++)
		if (t->ne[i] != wp[i])
			return false;
	return true;
}

static uint64_t seed_of(const int32_t *lo_hi)
{
	return (uint64_t)(uint32_t)lo_hi[0] | (uint64_t)(uint32_t)lo_hi[1] << 32;
}

int sa_format_load(const struct gguf_file *g, const char *base, struct qweight *ret,
		   struct sa_rht *ret_rht, struct errbuf *e)
{
	const struct gguf_tensor *tm = find(g, base, "sa_meta"), *ts = find(g, base, "sa_signs");
	const struct gguf_tensor *ta = find(g, base, "sa_alpha");
	const struct gguf_tensor *te = find(g, base, "sa_aexp"), *tg = find(g, base, "sa_asgn");
	const int32_t *meta;
	uint64_t n_alpha, row_bytes;
	int r;

	if (!tm || tm->type != GGML_TYPE_I32 || tm->n_elems < 1)
		return errbuf_set(e, -EBADMSG, "%s.sa_meta missing or malformed", base);
	meta = tm->data;
	if (meta[0] != SA_FORMAT_VERSION)
		return errbuf_set(e, -EOPNOTSUPP, "%s: shift-add format version %d (want %d)", base,
				  meta[0], SA_FORMAT_VERSION);
	if (tm->n_elems != SA_META_LEN)
		return errbuf_set(e, -EBADMSG, "%s.sa_meta has %llu entries, want %d", base,
				  (unsigned long long)tm->n_elems, SA_META_LEN);
	if (meta[4] < 0 || meta[4] >= SA_RHT_COUNT)
		return errbuf_set(e, -EBADMSG, "%s: unknown transform mode %d", base, meta[4]);
	*ret_rht = (struct sa_rht){ .mode = (enum sa_rht_mode)meta[4],
				    .seed_in = seed_of(meta + 5),
				    .seed_out = seed_of(meta + 7) };
	if (!ts || ts->type != GGML_TYPE_I8 || ts->n_dims != 3)
		return errbuf_set(e, -EBADMSG, "%s.sa_signs missing or not a 3-d I8 tensor", base);
	if (meta[1] <= 0 || meta[2] < 0 || meta[2] >= QW_LAYOUT_COUNT || meta[3] < 0 ||
	    meta[3] > 8 || ts->ne[1] > UINT32_MAX || ts->ne[2] > QW_MAX_BITS)
		return errbuf_set(e, -EBADMSG, "%s: shape or layout out of range", base);
	row_bytes = ((uint64_t)meta[1] + 7) / 8;
	/*
	 * Before anything is allocated: with the planes' row length checked against K, the
	 * allocations below are bounded by the planes' bytes in the file, so a small file cannot
	 * claim a huge layer.
	 */
	if (ts->ne[0] != row_bytes)
		return errbuf_set(e, -EBADMSG, "%s: planes hold %llu bytes per row, need %llu",
				  base, (unsigned long long)ts->ne[0],
				  (unsigned long long)row_bytes);
	r = qweight_init(ret, (uint32_t)ts->ne[1], (uint32_t)meta[1], (uint32_t)ts->ne[2],
			 (enum qw_layout)meta[2], (uint32_t)meta[3]);
	if (r < 0)
		return r == -EINVAL ? errbuf_set(e, -EBADMSG, "%s: bad shape", base) : r;
	n_alpha = (uint64_t)ret->bits * qweight_n_row_blocks(ret) * qweight_n_col_blocks(ret);
	memcpy(ret->signs, ts->data, ts->n_bytes);
	if (ret->apot) {
		if (!te || !tg || te->type != GGML_TYPE_I8 || tg->type != GGML_TYPE_I8 ||
		    !alpha_shape_ok(ret, te, true) || !alpha_shape_ok(ret, tg, true)) {
			r = errbuf_set(e, -EBADMSG, "%s: alpha term tensors missing or misshapen",
				       base);
			goto fail;
		}
		r = load_alpha_terms(te, tg, ret, n_alpha, e);
		if (r < 0)
			goto fail;
		return 0;
	}
	if (!ta || ta->type != GGML_TYPE_F32 || !alpha_shape_ok(ret, ta, false)) {
		r = errbuf_set(e, -EBADMSG, "%s.sa_alpha missing or misshapen", base);
		goto fail;
	}
	memcpy(ret->alpha, ta->data, n_alpha * sizeof(float));
	for (uint64_t i = 0; i < n_alpha; i++) {
		if (!isfinite(ret->alpha[i])) {
			r = errbuf_set(e, -EBADMSG, "%s: alpha is NaN or Inf", base);
			goto fail;
		}
	}
	return 0;
fail:
	qweight_done(ret);
	return r;
}
