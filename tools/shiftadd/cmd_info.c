// SPDX-License-Identifier: MIT
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "engine/dtype.h"
#include "engine/gguf.h"
#include "kernels/qweight.h"
#include "tools/opt.h"
#include "tools/shiftadd/cmds.h"

static const struct opt_spec specs[] = {
	{ "tensors", 't', NULL, NULL, "list every tensor (default: a per-type summary)" },
	{ "json", 0, NULL, NULL, "print metadata and tensors as one JSON object" },
	{ "help", 'h', NULL, NULL, "show this help" },
	{ NULL, 0, NULL, NULL, NULL },
};

static const char *const vt_names[GGUF_VT_COUNT] = {
	"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
};

static void put_json_str(const char *s, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* A numeric scalar's value (gguf_arr_num reads arrays only); NaN for other types. */
static double scalar_num(const struct gguf_kv *kv)
{
	struct gguf_kv one = *kv;

	if (kv->type == GGUF_VT_ARRAY || kv->type == GGUF_VT_STRING)
		return NAN;
	one.type = GGUF_VT_ARRAY;
	one.arr_type = kv->type;
	one.n = 1;
	return gguf_arr_num(&one, 0);
}

/* Scalars and strings in full; arrays as their length and first items. */
static void put_value(const struct gguf_kv *kv, bool json)
{
	if (kv->type == GGUF_VT_STRING) {
		const struct gguf_str *s = kv->data;
		size_t n = json || s->len < 120 ? s->len : 120;

		if (json) {
			put_json_str(s->data, n);
			return;
		}
		for (size_t i = 0; i < n; i++)
			putchar(s->data[i] == '\n' ? ' ' : s->data[i]);
		if (n < s->len)
			printf("... (%" PRIu64 " bytes)", s->len);
		return;
	}
	if (kv->type == GGUF_VT_ARRAY) {
		printf(json ? "{\"type\": \"%s\", \"n\": %" PRIu64 "}" : "[%s x %" PRIu64 "]",
		       kv->arr_type < GGUF_VT_COUNT ? vt_names[kv->arr_type] : "?", kv->n);
		return;
	}
	if (kv->type == GGUF_VT_BOOL) {
		printf("%s", *(const uint8_t *)kv->data ? "true" : "false");
		return;
	}
	printf("%.10g", scalar_num(kv));
}

/* shiftadd.tensor_* arrays of a converted file: one entry per linear, all of one length. */
struct sa_layers {
	const struct gguf_kv *names, *bits, *layout, *bpw, *rel;
	uint64_t n;
};

static const struct gguf_kv *num_array(const struct gguf_file *g, const char *key, uint64_t n)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	return kv && kv->type == GGUF_VT_ARRAY && kv->data && kv->n == n &&
			       kv->arr_type != GGUF_VT_STRING && kv->arr_type != GGUF_VT_ARRAY
		       ? kv
		       : NULL;
}

/* False if @g is not a converted file or its per-layer arrays disagree (then no table). */
static bool sa_layers_get(const struct gguf_file *g, struct sa_layers *l)
{
	memset(l, 0, sizeof(*l));
	l->names = gguf_find_kv(g, "shiftadd.tensor_names");
	if (!l->names || l->names->type != GGUF_VT_ARRAY || l->names->arr_type != GGUF_VT_STRING ||
	    !l->names->data || !l->names->n)
		return false;
	l->n = l->names->n;
	l->bits = num_array(g, "shiftadd.tensor_bits", l->n);
	l->layout = num_array(g, "shiftadd.tensor_layout", l->n);
	l->bpw = num_array(g, "shiftadd.tensor_bpw", l->n);
	l->rel = num_array(g, "shiftadd.tensor_rel_err", l->n);
	return l->bits && l->layout && l->bpw && l->rel;
}

/* A per-tensor layout code: its name, or "dense" for 255 (no planes). */
static const char *layout_name(double v)
{
	const char *n =
		v >= 0 && v < QW_LAYOUT_COUNT ? qweight_layout_name((enum qw_layout)v) : NULL;

	return n ? n : "dense";
}

/* The per-layer table of a converted file: width, layout, bits per weight, output error. */
static void print_layers_text(const struct gguf_file *g)
{
	const struct gguf_kv *alloc = gguf_find_kv(g, "shiftadd.alloc");
	const struct gguf_kv *budget = gguf_find_kv(g, "shiftadd.avg_bits_budget");
	const struct gguf_kv *avg = gguf_find_kv(g, "shiftadd.avg_bits");
	uint64_t hist[6] = { 0 };
	struct sa_layers l;

	if (!sa_layers_get(g, &l))
		return;
	printf("\nlayers (shiftadd.tensor_*):\n  %-28s %4s %-6s %7s %10s\n", "name", "bits",
	       "layout", "bpw", "rel.err");
	for (uint64_t i = 0; i < l.n; i++) {
		const struct gguf_str *nm = &((const struct gguf_str *)l.names->data)[i];
		double b = gguf_arr_num(l.bits, i);

		printf("  %-28.*s %4.0f %-6s %7.3f %10.4g\n", (int)(nm->len > 64 ? 64 : nm->len),
		       nm->data, b, layout_name(gguf_arr_num(l.layout, i)), gguf_arr_num(l.bpw, i),
		       gguf_arr_num(l.rel, i));
		hist[b >= 1 && b <= 4 ? (int)b : 5]++;
	}
	printf("  widths: %" PRIu64 " x 1-bit, %" PRIu64 " x 2-bit, %" PRIu64 " x 3-bit, %" PRIu64
	       " x 4-bit, %" PRIu64 " other",
	       hist[1], hist[2], hist[3], hist[4], hist[5] + hist[0]);
	if (avg && avg->type == GGUF_VT_FLOAT32)
		printf("; %.4f bits per weight", scalar_num(avg));
	if (alloc && alloc->type == GGUF_VT_STRING) {
		const struct gguf_str *a = alloc->data;

		printf("; %.*s allocation", (int)(a->len > 16 ? 16 : a->len), a->data);
	}
	if (budget && budget->type == GGUF_VT_FLOAT32)
		printf(" under %.4g bits", scalar_num(budget));
	putchar('\n');
}

static void print_layers_json(const struct gguf_file *g)
{
	struct sa_layers l;

	if (!sa_layers_get(g, &l))
		return;
	printf(", \"layers\": [");
	for (uint64_t i = 0; i < l.n; i++) {
		const struct gguf_str *nm = &((const struct gguf_str *)l.names->data)[i];

		printf("%s{\"name\": ", i ? ", " : "");
		put_json_str(nm->data, nm->len);
		double rel = gguf_arr_num(l.rel, i);

		printf(", \"bits\": %.0f, \"layout\": \"%s\", \"bits_per_weight\": %.6g, ",
		       gguf_arr_num(l.bits, i), layout_name(gguf_arr_num(l.layout, i)),
		       gguf_arr_num(l.bpw, i));
		/* no Hessian, no output error: JSON has no NaN */
		printf(isfinite(rel) ? "\"rel_err_output\": %.6g}" : "\"rel_err_output\": null}",
		       rel);
	}
	printf("]");
}

static void print_text(const struct gguf_file *g, bool all_tensors)
{
	uint64_t per_type[GGML_TYPE_COUNT] = { 0 }, bytes[GGML_TYPE_COUNT] = { 0 }, total = 0;

	printf("file: %s\nGGUF v%u, %" PRIu64 " metadata keys, %" PRIu64
	       " tensors, alignment %" PRIu64 "\n\nmetadata:\n",
	       g->path ? g->path : "?", g->version, g->n_kv, g->n_tensors, g->alignment);
	for (uint64_t i = 0; i < g->n_kv; i++) {
		printf("  %-40s ", g->kv[i].key);
		put_value(&g->kv[i], false);
		putchar('\n');
	}
	printf("\ntensors:\n");
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		const struct dtype_info *di = dtype_info(t->type);

		if (t->type < GGML_TYPE_COUNT) {
			per_type[t->type]++;
			bytes[t->type] += t->n_bytes;
		}
		total += t->n_elems;
		if (all_tensors)
			printf("  %-40s %-6s [%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64
			       "]\n",
			       t->name, di && di->name ? di->name : "?", t->ne[0], t->ne[1],
			       t->ne[2], t->ne[3]);
	}
	for (int ty = 0; ty < GGML_TYPE_COUNT; ty++) {
		const struct dtype_info *di = dtype_info(ty);

		if (per_type[ty])
			printf("  %-8s %5" PRIu64 " tensors %10.2f MiB\n",
			       di && di->name ? di->name : "?", per_type[ty],
			       bytes[ty] / 1048576.0);
	}
	printf("  total    %" PRIu64 " parameters\n", total);
	print_layers_text(g);
}

static void print_json(const struct gguf_file *g)
{
	printf("{\"version\": %u, \"metadata\": {", g->version);
	for (uint64_t i = 0; i < g->n_kv; i++) {
		printf("%s", i ? ", " : "");
		put_json_str(g->kv[i].key, strlen(g->kv[i].key));
		printf(": ");
		put_value(&g->kv[i], true);
	}
	printf("}, \"tensors\": [");
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		const struct dtype_info *di = dtype_info(t->type);

		printf("%s{\"name\": ", i ? ", " : "");
		put_json_str(t->name, strlen(t->name));
		printf(", \"type\": \"%s\", \"shape\": [%" PRIu64 ", %" PRIu64 ", %" PRIu64
		       ", %" PRIu64 "], \"bytes\": %" PRIu64 "}",
		       di && di->name ? di->name : "?", t->ne[0], t->ne[1], t->ne[2], t->ne[3],
		       t->n_bytes);
	}
	printf("]");
	print_layers_json(g);
	printf("}\n");
}

int cmd_info(int argc, char **argv)
{
	struct option lo[OPT_MAX + 1];
	char so[3 * OPT_MAX + 2];
	struct errbuf e = { { 0 } };
	struct gguf_file *g;
	bool json = false, all = false;
	int c, r;

	opt_build(specs, lo, so);
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		int i = opt_index(specs, c);
		const char *n = i >= 0 ? specs[i].name : "";

		if (c == '?' || c == ':') {
			fprintf(stderr, "shiftadd info: bad option '%s'\n", argv[optind - 1]);
			return 2;
		}
		if (!strcmp(n, "json"))
			json = true;
		else if (!strcmp(n, "tensors"))
			all = true;
		else if (!strcmp(n, "help")) {
			opt_usage(stdout, "shiftadd info [OPTIONS] FILE.gguf",
				  "Show the metadata and tensors of a GGUF file.", specs);
			return 0;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "shiftadd info: expected exactly one FILE (see --help)\n");
		return 2;
	}
	r = gguf_open(argv[optind], &g, &e);
	if (r < 0) {
		fprintf(stderr, "shiftadd info: '%s': %s\n", argv[optind], errbuf_str(&e, r));
		return 1;
	}
	if (json)
		print_json(g);
	else
		print_text(g, all);
	gguf_close(g);
	return 0;
}
