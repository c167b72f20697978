// SPDX-License-Identifier: MIT
/*
 * Safetensors reader: u64 header length, a JSON header, then the data. The header maps each
 * tensor name to dtype, shape and [begin, end) offsets into the data; every offset and the
 * byte count implied by dtype and shape are checked before a tensor is handed out.
 * A sharded checkpoint is several such files joined by model.safetensors.index.json.
 */
#include "engine/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/dtype.h"
#include "engine/fileio.h"
#include "engine/name_index.h"

#define ST_MAX_HEADER  (100u << 20) /* the format's own reference reader uses the same bound */
#define ST_MAX_INDEX   (100u << 20)
#define ST_MAX_DIMS    4
#define JSON_MAX_EXACT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact doubles */

struct st_map {
	const uint8_t *base;
	size_t size;
	bool mapped;
};

struct st_set {
	struct st_map *maps;
	size_t n_maps;
	struct st_tensor *tensors;
	uint32_t *shard_of; /* [n_tensors] index into maps */
	size_t n_tensors, cap_tensors;
	struct name_index ix;
};

static const struct {
	const char *name;
	enum st_dtype dtype;
	uint32_t size;
} dtypes[] = {
	{ "F32", ST_F32, 4 },	 { "F16", ST_F16, 2 },	     { "BF16", ST_BF16, 2 },
	{ "F64", ST_OTHER, 8 },	 { "I64", ST_OTHER, 8 },     { "U64", ST_OTHER, 8 },
	{ "I32", ST_OTHER, 4 },	 { "U32", ST_OTHER, 4 },     { "I16", ST_OTHER, 2 },
	{ "U16", ST_OTHER, 2 },	 { "I8", ST_OTHER, 1 },	     { "U8", ST_OTHER, 1 },
	{ "BOOL", ST_OTHER, 1 }, { "F8_E4M3", ST_OTHER, 1 }, { "F8_E5M2", ST_OTHER, 1 },
};

static void set_free(struct st_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_tensors; i++)
		free(s->tensors[i].name);
	for (size_t i = 0; i < s->n_maps; i++)
		if (s->maps[i].mapped)
			munmap((void *)s->maps[i].base, s->maps[i].size);
	name_index_done(&s->ix);
	free(s->maps);
	free(s->tensors);
	free(s->shard_of);
	free(s);
}

void st_close(struct st_set *s)
{
	set_free(s);
}

/* A JSON number that is a non-negative integer exactly representable as a double. */
static bool json_u64(const cJSON *j, uint64_t *ret)
{
	double v;

	if (!cJSON_IsNumber(j))
		return false;
	v = j->valuedouble;
	if (!(v >= 0 && v <= JSON_MAX_EXACT) || v != (double)(uint64_t)v)
		return false;
	*ret = (uint64_t)v;
	return true;
}

static int push_tensor(struct st_set *s, uint32_t shard, struct st_tensor *t)
{
	if (s->n_tensors == s->cap_tensors) {
		size_t cap = s->cap_tensors ? 2 * s->cap_tensors : 64;
		struct st_tensor *nt = realloc(s->tensors, cap * sizeof(*nt));
		uint32_t *ns;

		if (!nt)
			return -ENOMEM;
		s->tensors = nt;
		ns = realloc(s->shard_of, cap * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		s->shard_of = ns;
		s->cap_tensors = cap;
	}
	s->shard_of[s->n_tensors] = shard;
	s->tensors[s->n_tensors++] = *t;
	return 0;
}

/* One header entry @j named @name; data section of @data_bytes at @data. */
static int parse_entry(struct st_set *s, uint32_t shard, const cJSON *j, const uint8_t *data,
		       uint64_t data_bytes, struct errbuf *e)
{
	const char *name = j->string;
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
	const cJSON *offs = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
	struct st_tensor t = { 0 };
	uint64_t begin, end, n = 1, want;
	uint32_t size = 0;
	const cJSON *d;
	int ret;

	if (!cJSON_IsObject(j))
		return errbuf_set(e, -EBADMSG, "tensor '%.64s': not an object", name);
	if (!cJSON_IsString(dt))
		return errbuf_set(e, -EBADMSG, "tensor '%.64s': missing dtype", name);
	for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
		if (!strcmp(dt->valuestring, dtypes[i].name)) {
			t.dtype = dtypes[i].dtype;
			size = dtypes[i].size;
		}
	if (!size)
		return errbuf_set(e, -EOPNOTSUPP, "tensor '%.64s': unknown dtype '%.16s'", name,
				  dt->valuestring);
	if (!cJSON_IsArray(shape))
		return errbuf_set(e, -EBADMSG, "tensor '%.64s': missing shape", name);
	cJSON_ArrayForEach(d, shape)
	{
		uint64_t v;

		if (t.n_dims == ST_MAX_DIMS)
			return errbuf_set(e, -EOPNOTSUPP, "tensor '%.64s': more than %d dimensions",
					  name, ST_MAX_DIMS);
		if (!json_u64(d, &v))
			return errbuf_set(e, -EBADMSG, "tensor '%.64s': bad shape entry", name);
		if (__builtin_mul_overflow(n, v, &n))
			return errbuf_set(e, -EOVERFLOW, "tensor '%.64s': element count overflows",
					  name);
		t.shape[t.n_dims++] = v;
	}
	if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
	    !json_u64(cJSON_GetArrayItem(offs, 0), &begin) ||
	    !json_u64(cJSON_GetArrayItem(offs, 1), &end) || begin > end)
		return errbuf_set(e, -EBADMSG, "tensor '%.64s': bad data_offsets", name);
	if (end > data_bytes)
		return errbuf_set(e, -EBADMSG, "tensor '%.64s': data past end of file", name);
	if (__builtin_mul_overflow(n, (uint64_t)size, &want))
		return errbuf_set(e, -EOVERFLOW, "tensor '%.64s': byte count overflows", name);
	if (want != end - begin)
		return errbuf_set(
			e, -EBADMSG, "tensor '%.64s': %llu bytes for dtype and shape needing %llu",
			name, (unsigned long long)(end - begin), (unsigned long long)want);
	for (uint32_t i = t.n_dims; i < ST_MAX_DIMS; i++)
		t.shape[i] = 1;
	t.n_elems = n;
	t.n_bytes = want;
	t.data = data + begin;
	t.name = strdup(name);
	if (!t.name)
		return -ENOMEM;
	ret = push_tensor(s, shard, &t);
	if (ret)
		free(t.name);
	return ret;
}

/* Parse one file image already in s->maps[shard]. */
static int parse_file(struct st_set *s, uint32_t shard, struct errbuf *e)
{
	const uint8_t *base = s->maps[shard].base;
	size_t size = s->maps[shard].size;
	uint64_t hlen;
	cJSON *root, *j;
	int ret = 0;

	if (size < 8)
		return errbuf_set(e, -EBADMSG, "file too short (%zu bytes)", size);
	memcpy(&hlen, base, 8);
	if (hlen > ST_MAX_HEADER || hlen > size - 8)
		return errbuf_set(e, -EBADMSG, "header length %llu invalid for a %zu-byte file",
				  (unsigned long long)hlen, size);
	if (hlen < 2 || base[8] != '{')
		return errbuf_set(e, -EBADMSG, "header is not a JSON object");
	root = cJSON_ParseWithLength((const char *)base + 8, (size_t)hlen);
	if (!root)
		return errbuf_set(e, -EBADMSG, "header is not valid JSON");
	if (!cJSON_IsObject(root)) {
		ret = errbuf_set(e, -EBADMSG, "header is not a JSON object");
		goto out;
	}
	cJSON_ArrayForEach(j, root)
	{
		if (!j->string) {
			ret = errbuf_set(e, -EBADMSG, "header entry without a name");
			goto out;
		}
		if (!strcmp(j->string, "__metadata__"))
			continue; /* free-form strings; nothing we need */
		ret = parse_entry(s, shard, j, base + 8 + hlen, size - 8 - hlen, e);
		if (ret)
			goto out;
	}
out:
	cJSON_Delete(root);
	return ret;
}

static const char *tensor_name_at(const void *ctx, uint32_t i)
{
	return ((const struct st_set *)ctx)->tensors[i].name;
}

/* Index all names; a name twice (in one header or across shards) is an error. */
static int build_index(struct st_set *s, struct errbuf *e)
{
	int ret = name_index_init(&s->ix, s->n_tensors);

	if (ret)
		return ret;
	for (size_t i = 0; i < s->n_tensors; i++)
		if (name_index_put(&s->ix, s->tensors[i].name, (uint32_t)i, tensor_name_at, s) >= 0)
			return errbuf_set(e, -EBADMSG, "duplicate tensor '%.64s'",
					  s->tensors[i].name);
	return 0;
}

static int add_map(struct st_set *s, const void *base, size_t size, bool mapped)
{
	struct st_map *m = realloc(s->maps, (s->n_maps + 1) * sizeof(*m));

	if (!m)
		return -ENOMEM;
	s->maps = m;
	m[s->n_maps].base = base;
	m[s->n_maps].size = size;
	m[s->n_maps].mapped = mapped;
	s->n_maps++;
	return 0;
}

/* Map @path read-only and add it to @s. Messages name @path: a set spans several files. */
static int map_file(struct st_set *s, const char *path, struct errbuf *e)
{
	struct errbuf fe = { { 0 } };
	size_t size;
	void *p;
	int ret;

	ret = fileio_map(path, 8, "safetensors", &p, &size, &fe);
	if (ret)
		return errbuf_set(e, ret, "'%s': %s", path, fe.msg);
	ret = add_map(s, p, size, true);
	if (ret)
		munmap(p, size);
	return ret;
}

/* A set of one file: @path mapped, or with @path NULL the borrowed image @buf of @size bytes. */
static int open_one(const char *path, const void *buf, size_t size, struct st_set **ret,
		    struct errbuf *e)
{
	struct st_set *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	r = path ? map_file(s, path, e) : add_map(s, buf, size, false);
	if (!r)
		r = parse_file(s, 0, e);
	if (!r)
		r = build_index(s, e);
	if (r) {
		set_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

int st_open_mem(const void *buf, size_t size, struct st_set **ret, struct errbuf *e)
{
	return open_one(NULL, buf, size, ret, e);
}

/* Shard file names must stay inside the index's directory. */
static bool shard_name_ok(const char *name)
{
	return name[0] && !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

static int open_index(const char *path, struct st_set **ret, struct errbuf *e)
{
	struct st_set *s;
	cJSON *root = NULL, *wm, *j;
	char *text, *dir, *slash, *sub = NULL;
	const char **shards = NULL;
	size_t len, n_shards = 0;
	int r;

	r = fileio_read(path, ST_MAX_INDEX, &text, &len, NULL);
	if (r)
		return errbuf_set(e, r, "cannot read index '%s'", path);
	dir = strdup(path);
	s = calloc(1, sizeof(*s));
	if (!dir || !s) {
		r = -ENOMEM;
		goto out;
	}
	slash = strrchr(dir, '/');
	if (slash)
		slash[1] = 0;
	else
		dir[0] = 0;
	root = cJSON_ParseWithLength(text, len);
	wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	if (!cJSON_IsObject(wm)) {
		r = errbuf_set(e, -EBADMSG, "index has no weight_map object");
		goto out;
	}
	shards = calloc((size_t)cJSON_GetArraySize(wm) + 1, sizeof(*shards));
	if (!shards) {
		r = -ENOMEM;
		goto out;
	}
	/* distinct shard names, in order of first use */
	cJSON_ArrayForEach(j, wm)
	{
		size_t k;

		if (!j->string || !cJSON_IsString(j) || !shard_name_ok(j->valuestring)) {
			r = errbuf_set(e, -EBADMSG, "weight_map entry '%.64s': bad shard name",
				       j->string ? j->string : "");
			goto out;
		}
		for (k = 0; k < n_shards; k++)
			if (!strcmp(shards[k], j->valuestring))
				break;
		if (k == n_shards)
			shards[n_shards++] = j->valuestring;
	}
	for (size_t k = 0; k < n_shards; k++) {
		if (asprintf(&sub, "%s%s", dir, shards[k]) < 0) {
			sub = NULL;
			r = -ENOMEM;
			goto out;
		}
		r = map_file(s, sub, e);
		if (!r) {
			r = parse_file(s, (uint32_t)k, e);
			if (r) {
				char msg[ERRBUF_LEN];

				snprintf(msg, sizeof(msg), "%s", errbuf_str(e, r));
				errbuf_set(e, r, "shard '%.64s': %s", shards[k], msg);
			}
		}
		free(sub);
		sub = NULL;
		if (r)
			goto out;
	}
	r = build_index(s, e);
	if (r)
		goto out;
	/* every name the index promises is in the shard it names */
	cJSON_ArrayForEach(j, wm)
	{
		const struct st_tensor *t = st_find(s, j->string);
		size_t k;

		for (k = 0; k < n_shards; k++)
			if (!strcmp(shards[k], j->valuestring))
				break;
		if (!t || s->shard_of[t - s->tensors] != k) {
			r = errbuf_set(e, -EBADMSG, "tensor '%.64s' not found in shard '%.64s'",
				       j->string, j->valuestring);
			goto out;
		}
	}
out:
	free(shards);
	cJSON_Delete(root);
	free(dir);
	free(text);
	if (r) {
		set_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/* In a directory: the index if present, else model.safetensors, else the only *.safetensors. */
static int open_dir(const char *path, struct st_set **ret, struct errbuf *e)
{
	char *p = NULL, *only = NULL;
	bool has_model = false;
	struct dirent *de;
	int r, n_found = 0;
	DIR *d;

	if (asprintf(&p, "%s/model.safetensors.index.json", path) < 0)
		return -ENOMEM;
	if (!access(p, R_OK)) {
		r = open_index(p, ret, e);
		free(p);
		return r;
	}
	free(p);
	d = opendir(path);
	if (!d)
		return errbuf_set(e, -errno, "cannot list '%s'", path);
	while ((de = readdir(d))) {
		if (!ends_with(de->d_name, ".safetensors"))
			continue;
		if (!strcmp(de->d_name, "model.safetensors"))
			has_model = true;
		else if (!n_found++)
			only = strdup(de->d_name);
	}
	closedir(d);
	if (has_model) {
		free(only);
		only = strdup("model.safetensors");
	} else if (n_found != 1) {
		free(only);
		return errbuf_set(e, -ENOENT, "no single .safetensors file or index in '%s'", path);
	}
	if (!only || asprintf(&p, "%s/%s", path, only) < 0) {
		free(only);
		return -ENOMEM;
	}
	r = open_one(p, NULL, 0, ret, e);
	free(p);
	free(only);
	return r;
}

int st_open(const char *path, struct st_set **ret, struct errbuf *e)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return errbuf_set(e, -errno, "cannot open: %s", strerror(errno));
	if (S_ISDIR(st.st_mode))
		return open_dir(path, ret, e);
	if (ends_with(path, ".json"))
		return open_index(path, ret, e);
	return open_one(path, NULL, 0, ret, e);
}

size_t st_n_tensors(const struct st_set *s)
{
	return s->n_tensors;
}

const struct st_tensor *st_tensor_at(const struct st_set *s, size_t i)
{
	return i < s->n_tensors ? &s->tensors[i] : NULL;
}

const struct st_tensor *st_find(const struct st_set *s, const char *name)
{
	int64_t i = name_index_get(&s->ix, name, tensor_name_at, s);

	return i < 0 ? NULL : &s->tensors[i];
}

int st_tensor_to_f32(const struct st_tensor *t, float *dst)
{
	switch (t->dtype) {
	case ST_F32:
		dtype_info(GGML_TYPE_F32)->to_f32(t->data, dst, (size_t)t->n_elems);
		return 0;
	case ST_F16:
		dtype_info(GGML_TYPE_F16)->to_f32(t->data, dst, (size_t)t->n_elems);
		return 0;
	case ST_BF16:
		dtype_info(GGML_TYPE_BF16)->to_f32(t->data, dst, (size_t)t->n_elems);
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}
