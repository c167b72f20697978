// SPDX-License-Identifier: MIT
/*
 * GGUF v3 writer. Each key-value pair is serialized (type + value) when it is added, so the
 * write is a straight copy: header, kv blobs, tensor infos, padding, tensor data.
 */
#include "engine/gguf_write.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC	       0x46554747u
#define GGUF_VERSION	       3
#define GGUF_DEFAULT_ALIGNMENT 32

struct wkv {
	char *key;
	uint8_t *blob; /* u32 type, then the value as it appears in the file */
	size_t n_blob;
};

struct wtensor {
	char *name;
	uint32_t type;
	uint32_t n_dims;
	uint64_t ne[4];
	const void *data; /* borrowed */
	uint64_t n_bytes;
};

struct gguf_writer {
	uint32_t alignment;
	struct wkv *kv;
	size_t n_kv, cap_kv;
	struct wtensor *tensors;
	size_t n_tensors, cap_tensors;
};

/* A growable byte buffer used to build kv blobs. */
struct bytes {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void put(struct bytes *b, const void *src, size_t n)
{
	if (b->err)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		uint8_t *p;

		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

static void put_u32(struct bytes *b, uint32_t v)
{
	put(b, &v, 4);
}

static void put_u64(struct bytes *b, uint64_t v)
{
	put(b, &v, 8);
}

static void put_str(struct bytes *b, const char *s, size_t len)
{
	put_u64(b, len);
	put(b, s, len);
}

struct gguf_writer *gguf_writer_new(void)
{
	struct gguf_writer *w = calloc(1, sizeof(*w));

	if (w)
		w->alignment = GGUF_DEFAULT_ALIGNMENT;
	return w;
}

void gguf_writer_free(struct gguf_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n_kv; i++) {
		free(w->kv[i].key);
		free(w->kv[i].blob);
	}
	for (size_t i = 0; i < w->n_tensors; i++)
		free(w->tensors[i].name);
	free(w->kv);
	free(w->tensors);
	free(w);
}

/* Index of @key in w->kv, or -1. */
static ssize_t find_key(const struct gguf_writer *w, const char *key)
{
	for (size_t i = 0; i < w->n_kv; i++)
		if (!strcmp(w->kv[i].key, key))
			return (ssize_t)i;
	return -1;
}

static int append_kv(struct gguf_writer *w, const char *key, struct bytes *b);

int gguf_writer_set_alignment(struct gguf_writer *w, uint32_t alignment)
{
	ssize_t i = find_key(w, "general.alignment");
	struct bytes b = { 0 };
	int ret;

	if (!alignment || (alignment & (alignment - 1)) || alignment > (1u << 30))
		return -EINVAL;
	if (i >= 0) {
		memcpy(w->kv[i].blob + 4, &alignment, 4);
		w->alignment = alignment;
		return 0;
	}
	put_u32(&b, GGUF_VT_UINT32);
	put_u32(&b, alignment);
	ret = append_kv(w, "general.alignment", &b);
	free(b.p);
	if (!ret)
		w->alignment = alignment;
	return ret;
}

/* Take ownership of @b's bytes as the value of @key (on success only). */
static int append_kv(struct gguf_writer *w, const char *key, struct bytes *b)
{
	struct wkv *kv;
	char *k;

	if (b->err)
		return b->err;
	if (find_key(w, key) >= 0)
		return -EEXIST;
	if (w->n_kv == w->cap_kv) {
		size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;

		kv = realloc(w->kv, cap * sizeof(*kv));
		if (!kv)
			return -ENOMEM;
		w->kv = kv;
		w->cap_kv = cap;
	}
	k = strdup(key);
	if (!k)
		return -ENOMEM;
	kv = &w->kv[w->n_kv++];
	kv->key = k;
	kv->blob = b->p;
	kv->n_blob = b->len;
	b->p = NULL;
	return 0;
}

/* The public adders: general.alignment must go through gguf_writer_set_alignment(). */
static int add_blob(struct gguf_writer *w, const char *key, struct bytes *b)
{
	if (!strcmp(key, "general.alignment"))
		return -EINVAL;
	return append_kv(w, key, b);
}

int gguf_writer_add_scalar(struct gguf_writer *w, const char *key, enum gguf_vtype type,
			   const void *val)
{
	struct bytes b = { 0 };
	int sz = gguf_vtype_size(type), ret;

	if (sz <= 0) /* strings and arrays have their own adders */
		return -EINVAL;
	if (type == GGUF_VT_BOOL && *(const uint8_t *)val > 1)
		return -EINVAL;
	put_u32(&b, type);
	put(&b, val, (size_t)sz);
	ret = add_blob(w, key, &b);
	free(b.p);
	return ret;
}

int gguf_writer_add_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
	return gguf_writer_add_scalar(w, key, GGUF_VT_UINT32, &v);
}

int gguf_writer_add_i32(struct gguf_writer *w, const char *key, int32_t v)
{
	return gguf_writer_add_scalar(w, key, GGUF_VT_INT32, &v);
}

int gguf_writer_add_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
	return gguf_writer_add_scalar(w, key, GGUF_VT_UINT64, &v);
}

int gguf_writer_add_f32(struct gguf_writer *w, const char *key, float v)
{
	return gguf_writer_add_scalar(w, key, GGUF_VT_FLOAT32, &v);
}

int gguf_writer_add_bool(struct gguf_writer *w, const char *key, bool v)
{
	uint8_t u = v;

	return gguf_writer_add_scalar(w, key, GGUF_VT_BOOL, &u);
}

int gguf_writer_add_str(struct gguf_writer *w, const char *key, const char *s, size_t len)
{
	struct bytes b = { 0 };
	int ret;

	put_u32(&b, GGUF_VT_STRING);
	put_str(&b, s, len);
	ret = add_blob(w, key, &b);
	free(b.p);
	return ret;
}

int gguf_writer_add_arr(struct gguf_writer *w, const char *key, enum gguf_vtype type,
			const void *data, uint64_t n)
{
	struct bytes b = { 0 };
	int sz = gguf_vtype_size(type), ret;
	uint64_t n_bytes;

	if (sz <= 0) /* string arrays: gguf_writer_add_str_arr(); no arrays of arrays */
		return -EINVAL;
	if (__builtin_mul_overflow(n, (uint64_t)sz, &n_bytes) || n_bytes > SIZE_MAX / 2)
		return -EOVERFLOW;
	put_u32(&b, GGUF_VT_ARRAY);
	put_u32(&b, type);
	put_u64(&b, n);
	put(&b, data, (size_t)n_bytes);
	ret = add_blob(w, key, &b);
	free(b.p);
	return ret;
}

int gguf_writer_add_str_arr(struct gguf_writer *w, const char *key, const char *const *strs,
			    const size_t *lens, uint64_t n)
{
	struct bytes b = { 0 };
	int ret;

	put_u32(&b, GGUF_VT_ARRAY);
	put_u32(&b, GGUF_VT_STRING);
	put_u64(&b, n);
	for (uint64_t i = 0; i < n && !b.err; i++)
		put_str(&b, strs[i], lens ? lens[i] : strlen(strs[i]));
	ret = add_blob(w, key, &b);
	free(b.p);
	return ret;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type,
			   uint32_t n_dims, const uint64_t *ne, const void *data, uint64_t n_bytes)
{
	const struct dtype_info *ti = dtype_info(type);
	struct wtensor *t;
	uint64_t n = 1, want;
	char *nm;

	if (!ti || n_dims < 1 || n_dims > 4 || ne[0] % ti->block_elems)
		return -EINVAL;
	for (uint32_t d = 0; d < n_dims; d++)
		if (ne[d] > INT64_MAX || __builtin_mul_overflow(n, ne[d], &n))
			return -EOVERFLOW;
	if (dtype_row_bytes(type, n, &want) || want != n_bytes)
		return -EINVAL;
	for (size_t i = 0; i < w->n_tensors; i++)
		if (!strcmp(w->tensors[i].name, name))
			return -EEXIST;
	if (w->n_tensors == w->cap_tensors) {
		size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 16;

		t = realloc(w->tensors, cap * sizeof(*t));
		if (!t)
			return -ENOMEM;
		w->tensors = t;
		w->cap_tensors = cap;
	}
	nm = strdup(name);
	if (!nm)
		return -ENOMEM;
	t = &w->tensors[w->n_tensors++];
	t->name = nm;
	t->type = type;
	t->n_dims = n_dims;
	for (uint32_t d = 0; d < 4; d++)
		t->ne[d] = d < n_dims ? ne[d] : 1;
	t->data = data;
	t->n_bytes = n_bytes;
	return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

/* Output: either a growable memory image or a buffered file descriptor. */
struct sink {
	int fd; /* -1 for memory */
	struct bytes buf;
	uint64_t pos;
	int err;
};

static void sink_flush(struct sink *s)
{
	size_t off = 0;

	if (s->fd < 0 || s->err)
		return;
	while (off < s->buf.len) {
		ssize_t n = write(s->fd, s->buf.p + off, s->buf.len - off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			s->err = -errno;
			return;
		}
		off += (size_t)n;
	}
	s->buf.len = 0;
}

static void sink_put(struct sink *s, const void *p, size_t n)
{
	const uint8_t *src = p;

	s->pos += n;
	if (s->fd < 0) {
		put(&s->buf, p, n);
		if (s->buf.err)
			s->err = s->buf.err;
		return;
	}
	/* file: copy through a 1 MiB buffer so large tensors never need a second full copy */
	while (n && !s->err) {
		size_t room = (1u << 20) - s->buf.len, k = n < room ? n : room;

		if (!s->buf.p) {
			s->buf.p = malloc(1u << 20);
			if (!s->buf.p) {
				s->err = -ENOMEM;
				return;
			}
			s->buf.cap = 1u << 20;
		}
		memcpy(s->buf.p + s->buf.len, src, k);
		s->buf.len += k;
		src += k;
		n -= k;
		if (s->buf.len == s->buf.cap)
			sink_flush(s);
	}
}

static void sink_pad(struct sink *s, uint64_t alignment)
{
	static const uint8_t zeros[256];
	uint64_t pad = align_up(s->pos, alignment) - s->pos;

	while (pad) {
		size_t k = pad < sizeof(zeros) ? (size_t)pad : sizeof(zeros);

		sink_put(s, zeros, k);
		pad -= k;
	}
}

static int emit(struct gguf_writer *w, struct sink *s)
{
	uint64_t off = 0;
	uint32_t u32;
	uint64_t u64;

	u32 = GGUF_MAGIC;
	sink_put(s, &u32, 4);
	u32 = GGUF_VERSION;
	sink_put(s, &u32, 4);
	u64 = w->n_tensors;
	sink_put(s, &u64, 8);
	u64 = w->n_kv;
	sink_put(s, &u64, 8);
	for (size_t i = 0; i < w->n_kv; i++) {
		u64 = strlen(w->kv[i].key);
		sink_put(s, &u64, 8);
		sink_put(s, w->kv[i].key, (size_t)u64);
		sink_put(s, w->kv[i].blob, w->kv[i].n_blob);
	}
	for (size_t i = 0; i < w->n_tensors; i++) {
		const struct wtensor *t = &w->tensors[i];

		u64 = strlen(t->name);
		sink_put(s, &u64, 8);
		sink_put(s, t->name, (size_t)u64);
		sink_put(s, &t->n_dims, 4);
		sink_put(s, t->ne, 8 * (size_t)t->n_dims);
		sink_put(s, &t->type, 4);
		sink_put(s, &off, 8);
		off = align_up(off + t->n_bytes, w->alignment);
	}
	sink_pad(s, w->alignment);
	for (size_t i = 0; i < w->n_tensors; i++) {
		sink_put(s, w->tensors[i].data, (size_t)w->tensors[i].n_bytes);
		sink_pad(s, w->alignment);
	}
	sink_flush(s);
	return s->err;
}

int gguf_writer_write_mem(struct gguf_writer *w, void **ret_buf, size_t *ret_size)
{
	struct sink s = { .fd = -1 };
	int ret = emit(w, &s);

	if (ret) {
		free(s.buf.p);
		return ret;
	}
	*ret_buf = s.buf.p;
	*ret_size = s.buf.len;
	return 0;
}

/* fsync the directory holding @path so the rename itself is durable. */
static int sync_dir_of(const char *path)
{
	char *copy = strdup(path);
	int fd, ret = 0;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto out_free;
	}
	if (fsync(fd) < 0 && errno != EINVAL)
		ret = -errno;
	close(fd);
out_free:
	free(copy);
	return ret;
}

int gguf_writer_write(struct gguf_writer *w, const char *path)
{
	struct sink s = { .fd = -1 };
	char *tmp;
	int ret;

	/* same directory as the destination, so rename() is atomic */
	if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
		return -ENOMEM;
	s.fd = mkostemp(tmp, O_CLOEXEC);
	if (s.fd < 0) {
		ret = -errno;
		goto out_free;
	}
	ret = emit(w, &s);
	if (!ret && fsync(s.fd) < 0)
		ret = -errno;
	if (!ret && fchmod(s.fd, 0644) < 0)
		ret = -errno;
	if (close(s.fd) < 0 && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path) < 0)
		ret = -errno;
	if (ret)
		goto out_unlink;
	ret = sync_dir_of(path);
	goto out_free;

out_unlink:
	unlink(tmp);
out_free:
	free(s.buf.p);
	free(tmp);
	return ret;
}
