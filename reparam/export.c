// SPDX-License-Identifier: MIT
#include "reparam/export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/gguf_write.h"
#include "engine/model.h"
#include "engine/sa_format.h"

/* Re-add one key-value pair of the source file. */
static int copy_kv(struct gguf_writer *w, const struct gguf_kv *kv)
{
	if (!strcmp(kv->key, "general.alignment") || !strncmp(kv->key, "shiftadd.", 9))
		return 0;
	switch (kv->type) {
	case GGUF_VT_STRING: {
		const struct gguf_str *s = kv->data;

		return gguf_writer_add_str(w, kv->key, s->data, s->len);
	}
	case GGUF_VT_ARRAY:
		if (!kv->data)
			return 0; /* arrays of arrays are not carried over */
		if (kv->arr_type == GGUF_VT_STRING) {
			const struct gguf_str *s = kv->data;
			const char **strs = malloc(kv->n * sizeof(*strs));
			size_t *lens = malloc(kv->n * sizeof(*lens));
			int r = -ENOMEM;

			if (strs && lens) {
				for (uint64_t i = 0; i < kv->n; i++) {
					strs[i] = s[i].data;
					lens[i] = s[i].len;
				}
				r = gguf_writer_add_str_arr(w, kv->key, strs, lens, kv->n);
			}
			free(strs);
			free(lens);
			return r;
		}
		return gguf_writer_add_arr(w, kv->key, kv->arr_type, kv->data, kv->n);
	default:
		return gguf_writer_add_scalar(w, kv->key, kv->type, kv->data);
	}
}

static const struct calib_tensor *find_out(const struct calib_out *out, const char *tname)
{
	size_t n = strlen(tname);

	if (n < 8 || strcmp(tname + n - 7, ".weight"))
		return NULL;
	for (uint32_t i = 0; i < out->n; i++)
		if (strlen(out->t[i].name) == n - 7 && !strncmp(out->t[i].name, tname, n - 7))
			return &out->t[i];
	return NULL;
}

static int add_tensor_arrays(struct gguf_writer *w, const struct calib_out *out)
{
	const char **names = malloc(out->n * sizeof(*names));
	uint32_t *bits = malloc(out->n * sizeof(*bits)), *layout = malloc(out->n * sizeof(*layout));
	float *rel = malloc(out->n * sizeof(*rel)), *bpw = malloc(out->n * sizeof(*bpw));
	int r = -ENOMEM;

	if (!names || !bits || !layout || !rel || !bpw)
		goto out;
	for (uint32_t i = 0; i < out->n; i++) {
		const struct reparam_result *res = &out->t[i].res;

		names[i] = out->t[i].name;
		bits[i] = res->has_qweight ? res->qw.bits : 32;
		layout[i] = res->has_qweight ? (uint32_t)res->qw.layout : 255;
		rel[i] = (float)res->rel_err_output;
		bpw[i] = (float)res->bits_per_weight;
	}
	r = gguf_writer_add_str_arr(w, "shiftadd.tensor_names", names, NULL, out->n);
	if (r == 0)
		r = gguf_writer_add_arr(w, "shiftadd.tensor_bits", GGUF_VT_UINT32, bits, out->n);
	if (r == 0)
		r = gguf_writer_add_arr(w, "shiftadd.tensor_layout", GGUF_VT_UINT32, layout,
					out->n);
	if (r == 0)
		r = gguf_writer_add_arr(w, "shiftadd.tensor_rel_err", GGUF_VT_FLOAT32, rel, out->n);
	if (r == 0)
		r = gguf_writer_add_arr(w, "shiftadd.tensor_bpw", GGUF_VT_FLOAT32, bpw, out->n);
out:
	free(names);
	free(bits);
	free(layout);
	free(rel);
	free(bpw);
	return r;
}

static int add_meta(struct gguf_writer *w, const struct model *m, const struct calib_out *out,
		    const struct export_meta *meta, const char *src_path)
{
	const struct reparam_opts *q = &meta->run->q;
	const struct calib_opts *c = &meta->run->calib;
	bool needs_h = reparam_method_needs_hessian(q->method);
	const char *method = reparam_method_name(q->method);
	const char *pair = m->rope_pairing == ROPE_PAIR_HALF ? "half" : "adjacent";
	const char *src = strrchr(src_path, '/') ? strrchr(src_path, '/') + 1 : src_path;
	double wsum = 0, nsum = 0;
	bool deployable = true;
	int r = 0;

	for (uint32_t i = 0; i < out->n; i++) {
		const struct reparam_result *res = &out->t[i].res;
		double np = (double)res->n_rows * res->n_cols;

		wsum += res->bits_per_weight * np;
		nsum += np;
		deployable &= res->deployable && res->has_qweight;
	}
#define TRY(x)                   \
	do {                     \
		if (r == 0)      \
			r = (x); \
	} while (0)
	TRY(gguf_writer_add_u32(w, "shiftadd.format_version", SA_FORMAT_VERSION));
	TRY(gguf_writer_add_str(w, "shiftadd.method", method, strlen(method)));
	TRY(gguf_writer_add_u32(w, "shiftadd.bits", q->bits));
	TRY(gguf_writer_add_u32(w, "shiftadd.apot", q->apot));
	TRY(gguf_writer_add_u32(w, "shiftadd.group", q->group));
	TRY(gguf_writer_add_u32(w, "shiftadd.rounds", q->rounds));
	TRY(gguf_writer_add_bool(w, "shiftadd.act_order", q->act_order));
	TRY(gguf_writer_add_f32(w, "shiftadd.percdamp", (float)q->percdamp));
	TRY(gguf_writer_add_bool(w, "shiftadd.deployable", deployable));
	TRY(gguf_writer_add_f32(w, "shiftadd.avg_bits", nsum > 0 ? (float)(wsum / nsum) : 0));
	if (meta->alloc) {
		TRY(gguf_writer_add_str(w, "shiftadd.alloc", meta->alloc, strlen(meta->alloc)));
		TRY(gguf_writer_add_f32(w, "shiftadd.avg_bits_budget",
					(float)meta->avg_bits_budget));
	}
	TRY(gguf_writer_add_str(w, "shiftadd.source", src, strlen(src)));
	TRY(gguf_writer_add_str(w, "shiftadd.rope_pairing", pair, strlen(pair)));
	if (q->method == REPARAM_SHIFTADD_RHT) {
		const char *sides = reparam_rht_name(q->rht);

		TRY(gguf_writer_add_str(w, "shiftadd.rht", sides, strlen(sides)));
	}
	if (needs_h) {
		const char *cf = meta->calib_file ? meta->calib_file : "";
		const char *dt = calib_dtype_name(c->dtype);

		TRY(gguf_writer_add_str(w, "shiftadd.calib.file", cf, strlen(cf)));
		TRY(gguf_writer_add_u32(w, "shiftadd.calib.nsamples", c->nsamples));
		TRY(gguf_writer_add_u32(w, "shiftadd.calib.seqlen", c->seqlen));
		TRY(gguf_writer_add_u64(w, "shiftadd.calib.seed", c->seed));
		TRY(gguf_writer_add_u64(w, "shiftadd.calib.tokens", meta->calib_tokens));
		TRY(gguf_writer_add_str(w, "shiftadd.calib.dtype", dt, strlen(dt)));
	}
	TRY(add_tensor_arrays(w, out));
#undef TRY
	return r;
}

static int add_tensors(struct gguf_writer *w, const struct gguf_file *g,
		       const struct calib_out *out, void ***bufs, uint32_t *n_bufs,
		       struct errbuf *e)
{
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		const struct calib_tensor *ct = find_out(out, t->name);
		const struct reparam_result *res = ct ? &ct->res : NULL;
		int r;

		if (!ct) {
			r = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data,
						   t->n_bytes);
		} else if (res->has_qweight) {
			struct sa_rht rht = { .mode = (enum sa_rht_mode)res->rht,
					      .seed_in = res->rht_seed_in,
					      .seed_out = res->rht_seed_out };

			r = sa_format_add(w, ct->name, &res->qw, &rht, bufs, n_bufs);
		} else {
			uint64_t ne[2] = { res->n_cols, res->n_rows };

			r = gguf_writer_add_tensor(w, t->name, GGML_TYPE_F32, 2, ne, res->dense,
						   ne[0] * ne[1] * sizeof(float));
		}
		if (r < 0)
			return errbuf_set(e, r, "cannot add tensor '%s': %s", t->name,
					  strerror(-r));
	}
	return 0;
}

int export_gguf(const char *src_path, const struct model *m, const struct calib_out *out,
		const struct export_meta *meta, const char *dst, struct errbuf *e)
{
	struct gguf_file *g = NULL;
	struct gguf_writer *w = NULL;
	void **bufs = NULL;
	uint32_t n_bufs = 0;
	int r;

	r = gguf_open(src_path, &g, e);
	if (r < 0)
		return r == -EBADMSG
			       ? errbuf_set(e, -EOPNOTSUPP, "converting needs a GGUF source file")
			       : r;
	w = gguf_writer_new();
	if (!w) {
		r = -ENOMEM;
		goto out;
	}
	if (g->alignment != 32)
		gguf_writer_set_alignment(w, (uint32_t)g->alignment);
	for (uint64_t i = 0; i < g->n_kv && r == 0; i++)
		r = copy_kv(w, &g->kv[i]);
	if (r == 0)
		r = add_meta(w, m, out, meta, src_path);
	if (r < 0) {
		errbuf_set(e, r, "cannot build the metadata: %s", strerror(-r));
		goto out;
	}
	r = add_tensors(w, g, out, &bufs, &n_bufs, e);
	if (r < 0)
		goto out;
	r = gguf_writer_write(w, dst);
	if (r < 0)
		errbuf_set(e, r, "cannot write '%s': %s", dst, strerror(-r));
out:
	for (uint32_t i = 0; i < n_bufs; i++)
		free(bufs[i]);
	free(bufs);
	gguf_writer_free(w);
	gguf_close(g);
	return r;
}
