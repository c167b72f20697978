// SPDX-License-Identifier: MIT
/*
 * GGUF v2/v3 reader. The file is parsed once into kv and tensor tables; every count is compared
 * with the bytes left before anything is allocated for it, so a hostile header cannot make us
 * allocate more than a small multiple of the file size.
 */
#include "engine/gguf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/fileio.h"
#include "engine/name_index.h"

#define GGUF_MAGIC	       0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS	       4
/* Arrays of arrays are legal but unused by any model; bound the nesting we walk. */
#define GGUF_MAX_NESTING 8

/* Reader internals behind struct gguf_file's opaque priv pointer. */
struct gguf_priv {
	struct name_index kv_ix;
	struct name_index tensor_ix;
	bool mapped; /* base is our mmap (gguf_open), not a borrowed buffer */
};

/* String values own a gguf_str table; everything else points into the mapping. */
static bool kv_owns_data(const struct gguf_kv *kv)
{
	return kv->type == GGUF_VT_STRING ||
	       (kv->type == GGUF_VT_ARRAY && kv->arr_type == GGUF_VT_STRING);
}

struct cursor {
	const uint8_t *base;
	size_t size;
	size_t pos;
};

static size_t left(const struct cursor *c)
{
	return c->size - c->pos;
}

static int take(struct cursor *c, size_t n, const uint8_t **ret)
{
	if (n > left(c))
		return -EBADMSG;
	*ret = c->base + c->pos;
	c->pos += n;
	return 0;
}

static int rd_u32(struct cursor *c, uint32_t *v)
{
	const uint8_t *p;

	if (take(c, 4, &p))
		return -EBADMSG;
	memcpy(v, p, 4);
	return 0;
}

static int rd_u64(struct cursor *c, uint64_t *v)
{
	const uint8_t *p;

	if (take(c, 8, &p))
		return -EBADMSG;
	memcpy(v, p, 8);
	return 0;
}

static int rd_str(struct cursor *c, struct gguf_str *s)
{
	const uint8_t *p;

	if (rd_u64(c, &s->len) || s->len > left(c))
		return -EBADMSG;
	(void)take(c, (size_t)s->len, &p);
	s->data = (const char *)p;
	return 0;
}

/* A NUL-terminated copy of @s; -EBADMSG if it holds a NUL (names must be C strings). */
static int dup_name(const struct gguf_str *s, char **ret)
{
	char *d;

	if (memchr(s->data, 0, s->len))
		return -EBADMSG;
	d = malloc(s->len + 1);
	if (!d)
		return -ENOMEM;
	memcpy(d, s->data, s->len);
	d[s->len] = 0;
	*ret = d;
	return 0;
}

int gguf_vtype_size(uint32_t t)
{
	switch (t) {
	case GGUF_VT_UINT8:
	case GGUF_VT_INT8:
	case GGUF_VT_BOOL:
		return 1;
	case GGUF_VT_UINT16:
	case GGUF_VT_INT16:
		return 2;
	case GGUF_VT_UINT32:
	case GGUF_VT_INT32:
	case GGUF_VT_FLOAT32:
		return 4;
	case GGUF_VT_UINT64:
	case GGUF_VT_INT64:
	case GGUF_VT_FLOAT64:
		return 8;
	case GGUF_VT_STRING:
	case GGUF_VT_ARRAY:
		return 0;
	default:
		return -1;
	}
}

/* Skip an array body (element type + count + elements) without keeping it. */
static int skip_array(struct cursor *c, int depth, struct errbuf *e, const char *key)
{
	uint32_t t;
	uint64_t n;
	int sz;

	if (depth > GGUF_MAX_NESTING)
		return errbuf_set(e, -EBADMSG, "kv '%s': arrays nested too deeply", key);
	if (rd_u32(c, &t) || rd_u64(c, &n))
		return errbuf_set(e, -EBADMSG, "kv '%s': truncated array header", key);
	sz = gguf_vtype_size(t);
	if (sz < 0)
		return errbuf_set(e, -EBADMSG, "kv '%s': unknown array element type %u", key, t);
	if (sz > 0) {
		if (n > left(c) / (uint64_t)sz)
			return errbuf_set(e, -EBADMSG, "kv '%s': array of %llu past end of file",
					  key, (unsigned long long)n);
		c->pos += (size_t)n * (size_t)sz;
		return 0;
	}
	for (uint64_t i = 0; i < n; i++) {
		int ret;

		if (t == GGUF_VT_STRING) {
			struct gguf_str s;

			if (rd_str(c, &s))
				return errbuf_set(e, -EBADMSG,
						  "kv '%s': string %llu past end of file", key,
						  (unsigned long long)i);
			continue;
		}
		ret = skip_array(c, depth + 1, e, key);
		if (ret)
			return ret;
	}
	return 0;
}

/* Value of @kv (type already read). Strings get a gguf_str table owned by @kv. */
static int read_value(struct cursor *c, struct gguf_kv *kv, struct errbuf *e)
{
	const uint8_t *p;
	uint32_t t;
	int sz;

	if (kv->type == GGUF_VT_ARRAY) {
		struct cursor save = *c;

		if (rd_u32(c, &t) || rd_u64(c, &kv->n))
			return errbuf_set(e, -EBADMSG, "kv '%s': truncated array header", kv->key);
		sz = gguf_vtype_size(t);
		if (sz < 0)
			return errbuf_set(e, -EBADMSG, "kv '%s': unknown array element type %u",
					  kv->key, t);
		kv->arr_type = (enum gguf_vtype)t;
		if (t == GGUF_VT_ARRAY) {
			*c = save;
			kv->data = NULL;
			return skip_array(c, 0, e, kv->key);
		}
	} else {
		sz = gguf_vtype_size(kv->type);
		if (sz < 0)
			return errbuf_set(e, -EBADMSG, "kv '%s': unknown value type %u", kv->key,
					  kv->type);
		kv->n = 1;
		t = kv->type;
	}
	if (t == GGUF_VT_STRING) {
		struct gguf_str *strs;

		/* every string takes at least its 8-byte length: bound n before allocating */
		if (kv->n > left(c) / 8)
			return errbuf_set(e, -EBADMSG, "kv '%s': %llu strings past end of file",
					  kv->key, (unsigned long long)kv->n);
		strs = calloc(kv->n ? kv->n : 1, sizeof(*strs));
		if (!strs)
			return -ENOMEM;
		kv->data = strs;
		for (uint64_t i = 0; i < kv->n; i++)
			if (rd_str(c, &strs[i]))
				return errbuf_set(e, -EBADMSG,
						  "kv '%s': string %llu past end of file", kv->key,
						  (unsigned long long)i);
		return 0;
	}
	if (kv->n > left(c) / (uint64_t)sz)
		return errbuf_set(e, -EBADMSG, "kv '%s': value past end of file", kv->key);
	p = c->base + c->pos;
	c->pos += (size_t)kv->n * (size_t)sz;
	kv->data = p;
	if (kv->type == GGUF_VT_BOOL && p[0] > 1)
		return errbuf_set(e, -EBADMSG, "kv '%s': bool value %u", kv->key, p[0]);
	return 0;
}

static const char *kv_name_at(const void *ctx, uint32_t i)
{
	return ((const struct gguf_file *)ctx)->kv[i].key;
}

static const char *tensor_name_at(const void *ctx, uint32_t i)
{
	return ((const struct gguf_file *)ctx)->tensors[i].name;
}

static int parse_kvs(struct gguf_file *g, struct cursor *c, struct errbuf *e)
{
	int ret;

	/* a kv takes at least 8 (key length) + 4 (type) + 1 (smallest value) bytes */
	if (g->n_kv > left(c) / 13)
		return errbuf_set(e, -EBADMSG, "%llu kv pairs cannot fit in the file",
				  (unsigned long long)g->n_kv);
	g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->kv));
	if (!g->kv)
		return -ENOMEM;
	ret = name_index_init(&g->priv->kv_ix, g->n_kv);
	if (ret)
		return ret;
	for (uint64_t i = 0; i < g->n_kv; i++) {
		struct gguf_kv *kv = &g->kv[i];
		struct gguf_str key;
		uint32_t t;

		if (rd_str(c, &key))
			return errbuf_set(e, -EBADMSG, "kv %llu: key past end of file",
					  (unsigned long long)i);
		ret = dup_name(&key, &kv->key);
		if (ret == -EBADMSG)
			return errbuf_set(e, ret, "kv %llu: key contains a NUL byte",
					  (unsigned long long)i);
		if (ret)
			return ret;
		if (name_index_put(&g->priv->kv_ix, kv->key, (uint32_t)i, kv_name_at, g) >= 0)
			return errbuf_set(e, -EBADMSG, "duplicate kv '%s'", kv->key);
		if (rd_u32(c, &t))
			return errbuf_set(e, -EBADMSG, "kv '%s': type past end of file", kv->key);
		if (t >= GGUF_VT_COUNT)
			return errbuf_set(e, -EBADMSG, "kv '%s': unknown value type %u", kv->key,
					  t);
		kv->type = (enum gguf_vtype)t;
		ret = read_value(c, kv, e);
		if (ret)
			return ret;
	}
	return 0;
}

static int parse_tensor_info(struct gguf_file *g, struct cursor *c, uint64_t i, struct errbuf *e)
{
	struct gguf_tensor *t = &g->tensors[i];
	const struct dtype_info *ti;
	struct gguf_str name;
	uint32_t type;
	uint64_t n = 1;
	int ret;

	if (rd_str(c, &name))
		return errbuf_set(e, -EBADMSG, "tensor %llu: name past end of file",
				  (unsigned long long)i);
	ret = dup_name(&name, &t->name);
	if (ret == -EBADMSG)
		return errbuf_set(e, ret, "tensor %llu: name contains a NUL byte",
				  (unsigned long long)i);
	if (ret)
		return ret;
	if (name_index_put(&g->priv->tensor_ix, t->name, (uint32_t)i, tensor_name_at, g) >= 0)
		return errbuf_set(e, -EBADMSG, "duplicate tensor '%s'", t->name);
	if (rd_u32(c, &t->n_dims))
		return errbuf_set(e, -EBADMSG, "tensor '%s': truncated", t->name);
	if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
		return errbuf_set(e, -EBADMSG, "tensor '%s': %u dimensions (1..4 allowed)", t->name,
				  t->n_dims);
	for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
		t->ne[d] = 1;
		if (d < t->n_dims && rd_u64(c, &t->ne[d]))
			return errbuf_set(e, -EBADMSG, "tensor '%s': truncated", t->name);
		if (t->ne[d] > INT64_MAX || __builtin_mul_overflow(n, t->ne[d], &n) ||
		    n > INT64_MAX)
			return errbuf_set(e, -EOVERFLOW, "tensor '%s': element count overflows",
					  t->name);
	}
	t->n_elems = n;
	if (rd_u32(c, &type) || rd_u64(c, &t->offset))
		return errbuf_set(e, -EBADMSG, "tensor '%s': truncated", t->name);
	ti = dtype_info(type);
	if (!ti)
		return errbuf_set(e, -EOPNOTSUPP, "tensor '%s': unknown type %u", t->name, type);
	t->type = (enum ggml_type)type;
	if (t->ne[0] % ti->block_elems)
		return errbuf_set(e, -EBADMSG, "tensor '%s': row of %llu not a multiple of %u",
				  t->name, (unsigned long long)t->ne[0], ti->block_elems);
	ret = dtype_row_bytes(type, n, &t->n_bytes);
	if (ret)
		return errbuf_set(e, ret, "tensor '%s': byte size overflows", t->name);
	return 0;
}

static int parse(struct gguf_file *g, struct errbuf *e)
{
	struct cursor c = { .base = g->base, .size = g->size, .pos = 0 };
	uint32_t magic;
	uint64_t data_bytes;
	int ret;

	if (rd_u32(&c, &magic) || magic != GGUF_MAGIC)
		return errbuf_set(e, -EBADMSG, "not a GGUF file (bad magic)");
	if (rd_u32(&c, &g->version))
		return errbuf_set(e, -EBADMSG, "truncated header");
	if (g->version != 2 && g->version != 3)
		return errbuf_set(e, -EOPNOTSUPP, "unsupported GGUF version %u", g->version);
	if (rd_u64(&c, &g->n_tensors) || rd_u64(&c, &g->n_kv))
		return errbuf_set(e, -EBADMSG, "truncated header");
	ret = parse_kvs(g, &c, e);
	if (ret)
		return ret;

	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	if (gguf_find_kv(g, "general.alignment")) {
		ret = gguf_get_u64(g, "general.alignment", &g->alignment);
		if (ret || g->alignment == 0 || (g->alignment & (g->alignment - 1)) ||
		    g->alignment > (1u << 30))
			return errbuf_set(e, -EBADMSG, "general.alignment is not a power of two");
	}

	/* a tensor info takes at least 8 + 4 + 8 + 4 + 8 bytes */
	if (g->n_tensors > left(&c) / 32 || g->n_tensors >= UINT32_MAX)
		return errbuf_set(e, -EBADMSG, "%llu tensors cannot fit in the file",
				  (unsigned long long)g->n_tensors);
	g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*g->tensors));
	if (!g->tensors)
		return -ENOMEM;
	ret = name_index_init(&g->priv->tensor_ix, g->n_tensors);
	if (ret)
		return ret;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		ret = parse_tensor_info(g, &c, i, e);
		if (ret)
			return ret;
	}

	/* the data section starts at the next multiple of the alignment (maybe the file end) */
	g->data_offset = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
	if (g->n_tensors && g->data_offset > g->size)
		return errbuf_set(e, -EBADMSG, "data section past end of file");
	data_bytes = g->data_offset <= g->size ? g->size - g->data_offset : 0;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		struct gguf_tensor *t = &g->tensors[i];

		if (t->offset % g->alignment)
			return errbuf_set(e, -EBADMSG,
					  "tensor '%s': offset %llu not aligned to %llu", t->name,
					  (unsigned long long)t->offset,
					  (unsigned long long)g->alignment);
		if (t->offset > data_bytes || t->n_bytes > data_bytes - t->offset)
			return errbuf_set(e, -EBADMSG, "tensor '%s': data past end of file",
					  t->name);
		t->offset += g->data_offset;
		t->data = g->base + t->offset;
	}
	return 0;
}

static struct gguf_file *file_new(void)
{
	struct gguf_file *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->priv = calloc(1, sizeof(*g->priv));
	if (!g->priv) {
		free(g);
		return NULL;
	}
	return g;
}

int gguf_open_mem(const void *buf, size_t size, struct gguf_file **ret_g, struct errbuf *e)
{
	struct gguf_file *g;
	int ret;

	g = file_new();
	if (!g)
		return -ENOMEM;
	g->base = buf;
	g->size = size;
	ret = parse(g, e);
	if (ret) {
		gguf_close(g);
		return ret;
	}
	*ret_g = g;
	return 0;
}

int gguf_open(const char *path, struct gguf_file **ret_g, struct errbuf *e)
{
	struct gguf_file *g;
	size_t size;
	void *map;
	int ret;

	ret = fileio_map(path, 24, "GGUF", &map, &size, e);
	if (ret)
		return ret;
	g = file_new();
	if (!g) {
		ret = -ENOMEM;
		goto out_unmap;
	}
	g->base = map;
	g->size = size;
	g->priv->mapped = true;
	g->path = strdup(path);
	if (!g->path) {
		ret = -ENOMEM;
		goto out_free;
	}
	ret = parse(g, e);
	if (ret) {
		gguf_close(g);
		return ret;
	}
	*ret_g = g;
	return 0;

out_free:
	free(g->priv);
	free(g);
out_unmap:
	munmap(map, size);
	return ret;
}

void gguf_close(struct gguf_file *g)
{
	if (!g)
		return;
	if (g->kv)
		for (uint64_t i = 0; i < g->n_kv; i++) {
			free(g->kv[i].key);
			if (kv_owns_data(&g->kv[i]))
				free((void *)g->kv[i].data);
		}
	if (g->tensors)
		for (uint64_t i = 0; i < g->n_tensors; i++)
			free(g->tensors[i].name);
	free(g->kv);
	free(g->tensors);
	if (g->priv) {
		name_index_done(&g->priv->kv_ix);
		name_index_done(&g->priv->tensor_ix);
		if (g->priv->mapped)
			munmap((void *)g->base, g->size);
		free(g->priv);
	}
	free(g->path);
	free(g);
}

const struct gguf_kv *gguf_find_kv(const struct gguf_file *g, const char *key)
{
	int64_t i = name_index_get(&g->priv->kv_ix, key, kv_name_at, g);

	return i < 0 ? NULL : &g->kv[i];
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *g, const char *name)
{
	int64_t i = name_index_get(&g->priv->tensor_ix, name, tensor_name_at, g);

	return i < 0 ? NULL : &g->tensors[i];
}

/* An integer scalar as int64 or uint64: *is_neg tells which half of the range it is in. */
static int scalar_int(const struct gguf_kv *kv, bool *is_neg, uint64_t *mag)
{
	const uint8_t *p = kv->data;
	int64_t s;

	if (kv->type == GGUF_VT_ARRAY)
		return -EBADMSG;
	switch (kv->type) {
	case GGUF_VT_UINT8:
		*mag = p[0];
		*is_neg = false;
		return 0;
	case GGUF_VT_UINT16: {
		uint16_t v;

		memcpy(&v, p, 2);
		*mag = v;
		*is_neg = false;
		return 0;
	}
	case GGUF_VT_UINT32: {
		uint32_t v;

		memcpy(&v, p, 4);
		*mag = v;
		*is_neg = false;
		return 0;
	}
	case GGUF_VT_UINT64:
		memcpy(mag, p, 8);
		*is_neg = false;
		return 0;
	case GGUF_VT_INT8:
		s = (int8_t)p[0];
		break;
	case GGUF_VT_INT16: {
		int16_t v;

		memcpy(&v, p, 2);
		s = v;
		break;
	}
	case GGUF_VT_INT32: {
		int32_t v;

		memcpy(&v, p, 4);
		s = v;
		break;
	}
	case GGUF_VT_INT64:
		memcpy(&s, p, 8);
		break;
	default:
		return -EBADMSG;
	}
	*is_neg = s < 0;
	*mag = (uint64_t)s; /* two's complement pattern when negative */
	return 0;
}

int gguf_get_u64(const struct gguf_file *g, const char *key, uint64_t *ret)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);
	bool neg;
	uint64_t v;

	if (!kv)
		return -ENOENT;
	if (scalar_int(kv, &neg, &v) || neg)
		return -EBADMSG;
	*ret = v;
	return 0;
}

int gguf_get_u32(const struct gguf_file *g, const char *key, uint32_t *ret)
{
	uint64_t v;
	int r = gguf_get_u64(g, key, &v);

	if (r)
		return r;
	if (v > UINT32_MAX)
		return -EBADMSG;
	*ret = (uint32_t)v;
	return 0;
}

int gguf_get_i64(const struct gguf_file *g, const char *key, int64_t *ret)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);
	bool neg;
	uint64_t v;

	if (!kv)
		return -ENOENT;
	if (scalar_int(kv, &neg, &v))
		return -EBADMSG;
	if (!neg && v > INT64_MAX)
		return -EBADMSG;
	*ret = (int64_t)v;
	return 0;
}

int gguf_get_f32(const struct gguf_file *g, const char *key, float *ret)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);
	bool neg;
	uint64_t v;

	if (!kv)
		return -ENOENT;
	if (kv->type == GGUF_VT_FLOAT32) {
		memcpy(ret, kv->data, 4);
		return 0;
	}
	if (kv->type == GGUF_VT_FLOAT64) {
		double d;

		memcpy(&d, kv->data, 8);
		*ret = (float)d;
		return 0;
	}
	if (scalar_int(kv, &neg, &v))
		return -EBADMSG;
	*ret = neg ? (float)(int64_t)v : (float)v;
	return 0;
}

int gguf_get_bool(const struct gguf_file *g, const char *key, bool *ret)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (!kv)
		return -ENOENT;
	if (kv->type != GGUF_VT_BOOL)
		return -EBADMSG;
	*ret = *(const uint8_t *)kv->data != 0;
	return 0;
}

int gguf_get_str(const struct gguf_file *g, const char *key, const char **ret, size_t *ret_len)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);
	const struct gguf_str *s;

	if (!kv)
		return -ENOENT;
	if (kv->type != GGUF_VT_STRING)
		return -EBADMSG;
	s = kv->data;
	*ret = s->data;
	*ret_len = (size_t)s->len;
	return 0;
}

int gguf_get_arr(const struct gguf_file *g, const char *key, enum gguf_vtype type,
		 const struct gguf_kv **ret)
{
	const struct gguf_kv *kv = gguf_find_kv(g, key);

	if (!kv)
		return -ENOENT;
	if (kv->type != GGUF_VT_ARRAY || kv->arr_type != type)
		return -EBADMSG;
	*ret = kv;
	return 0;
}

double gguf_arr_num(const struct gguf_kv *kv, uint64_t i)
{
	const uint8_t *p;
	int sz;

	if (kv->type != GGUF_VT_ARRAY || i >= kv->n || !kv->data)
		return NAN;
	sz = gguf_vtype_size(kv->arr_type);
	if (sz <= 0)
		return NAN;
	p = (const uint8_t *)kv->data + i * (uint64_t)sz;
	switch (kv->arr_type) {
	case GGUF_VT_UINT8:
	case GGUF_VT_BOOL:
		return p[0];
	case GGUF_VT_INT8:
		return (int8_t)p[0];
	case GGUF_VT_UINT16: {
		uint16_t v;

		memcpy(&v, p, 2);
		return v;
	}
	case GGUF_VT_INT16: {
		int16_t v;

		memcpy(&v, p, 2);
		return v;
	}
	case GGUF_VT_UINT32: {
		uint32_t v;

		memcpy(&v, p, 4);
		return v;
	}
	case GGUF_VT_INT32: {
		int32_t v;

		memcpy(&v, p, 4);
		return v;
	}
	case GGUF_VT_FLOAT32: {
		float v;

		memcpy(&v, p, 4);
		return v;
	}
	case GGUF_VT_UINT64: {
		uint64_t v;

		memcpy(&v, p, 8);
		return (double)v;
	}
	case GGUF_VT_INT64: {
		int64_t v;

		memcpy(&v, p, 8);
		return (double)v;
	}
	case GGUF_VT_FLOAT64: {
		double v;

		memcpy(&v, p, 8);
		return v;
	}
	default:
		return NAN;
	}
}

int gguf_tensor_to_f32(const struct gguf_tensor *t, float *dst)
{
	const struct dtype_info *ti = dtype_info(t->type);

	if (!ti || !ti->to_f32)
		return -EOPNOTSUPP;
	ti->to_f32(t->data, dst, (size_t)t->n_elems);
	return 0;
}
