// SPDX-License-Identifier: MIT
#include "tests/unit/engine/ref_logits.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *next(void)
{
	const char *t = strtok(NULL, " \t\n");

	return t ? t : "";
}

static int parse_tensor(struct ref_logits *r)
{
	struct ref_tensor *t;
	const char *tok;

	if (r->n_tensors == REF_MAX_TENSORS)
		return -1;
	t = &r->tensors[r->n_tensors++];
	snprintf(t->name, sizeof(t->name), "%s", next());
	t->scale = strtod(next(), NULL);
	t->offset = strtod(next(), NULL);
	while (*(tok = next()) && t->n_dims < 2)
		t->shape[t->n_dims++] = strtoull(tok, NULL, 10);
	return t->n_dims ? 0 : -1;
}

static int parse_line(struct ref_logits *r, char *line)
{
	const char *tok = strtok(line, " \t\n");
	struct ref_seq *s = r->n_seqs ? &r->seqs[r->n_seqs - 1] : NULL;

	if (!tok || tok[0] == '#')
		return 0;
	if (!strcmp(tok, "tensor"))
		return parse_tensor(r);
	if (!strcmp(tok, "seq")) {
		if (r->n_seqs == REF_MAX_SEQS)
			return -1;
		s = &r->seqs[r->n_seqs++];
		while (*(tok = next()) && s->n < REF_MAX_POS)
			s->ids[s->n++] = (int32_t)strtol(tok, NULL, 10);
		return 0;
	}
	if (!s)
		return -1;
	if (!strcmp(tok, "pos")) {
		r->cur_pos = (uint32_t)strtoul(next(), NULL, 10);
		if (r->cur_pos >= s->n)
			return -1;
		s->pos[r->cur_pos].lse = strtod(next(), NULL);
		s->pos[r->cur_pos].argmax = (int32_t)strtol(next(), NULL, 10);
		return 0;
	}
	if (!strcmp(tok, "logit")) {
		uint32_t n = 0;

		while (*(tok = next()) && n < REF_MAX_PROBES) {
			r->probe[n] = (int32_t)strtol(tok, NULL, 10);
			s->pos[r->cur_pos].logit[n++] = strtod(next(), NULL);
		}
		r->n_probes = n;
		return 0;
	}
	return -1;
}

struct ref_logits *ref_logits_load(const char *path)
{
	struct ref_logits *r = calloc(1, sizeof(*r));
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;

	if (!r || !f)
		goto fail;
	while (getline(&line, &cap, f) >= 0)
		if (parse_line(r, line) < 0)
			goto fail;
	free(line);
	fclose(f);
	return r;
fail:
	free(line);
	if (f)
		fclose(f);
	free(r);
	return NULL;
}

static uint64_t fnv1a64(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

void ref_fill_weights(const char *name, uint64_t n, double scale, double offset, float *out)
{
	uint64_t s = fnv1a64(name);

	for (uint64_t i = 0; i < n; i++) {
		uint64_t z = (s += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		out[i] = (float)(((double)(z >> 40) / 16777216.0 - 0.5) * 2.0 * scale + offset);
	}
}

static uint64_t n_elems(const struct ref_tensor *t)
{
	return t->n_dims == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
}

static char *st_header(const struct ref_logits *r, size_t *ret_len)
{
	char *hdr = NULL;
	size_t hlen = 0;
	uint64_t off = 0;
	FILE *h = open_memstream(&hdr, &hlen);

	if (!h)
		return NULL;
	fputc('{', h);
	for (uint32_t i = 0; i < r->n_tensors; i++) {
		const struct ref_tensor *t = &r->tensors[i];
		uint64_t nb = n_elems(t) * 4;

		fprintf(h, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu", i ? "," : "", t->name,
			(unsigned long long)t->shape[0]);
		if (t->n_dims == 2)
			fprintf(h, ",%llu", (unsigned long long)t->shape[1]);
		fprintf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
			(unsigned long long)(off + nb));
		off += nb;
	}
	fputc('}', h);
	while ((ftell(h) % 8) != 0)
		fputc(' ', h);
	fclose(h);
	*ret_len = hlen;
	return hdr;
}

int ref_write_safetensors(const struct ref_logits *r, const char *dir)
{
	char path[512], *hdr;
	size_t hlen;
	uint64_t hsize;
	FILE *f;
	int ret = 0;

	hdr = st_header(r, &hlen);
	if (!hdr)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	f = fopen(path, "wb");
	if (!f) {
		free(hdr);
		return -errno;
	}
	hsize = hlen;
	fwrite(&hsize, 8, 1, f);
	fwrite(hdr, 1, hlen, f);
	for (uint32_t i = 0; i < r->n_tensors && !ret; i++) {
		const struct ref_tensor *t = &r->tensors[i];
		float *buf = malloc(n_elems(t) * sizeof(float));

		if (!buf) {
			ret = -ENOMEM;
			break;
		}
		ref_fill_weights(t->name, n_elems(t), t->scale, t->offset, buf);
		if (fwrite(buf, sizeof(float), n_elems(t), f) != n_elems(t))
			ret = -EIO;
		free(buf);
	}
	if (fclose(f) && !ret)
		ret = -errno;
	free(hdr);
	return ret;
}

/* Copy the file @from to @to. Returns 0 or -errno. */
static int copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
	char buf[4096];
	size_t n;
	int ret = 0;

	if (!in || !out) {
		ret = -errno;
		goto out;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n) {
			ret = -EIO;
			goto out;
		}
	if (ferror(in))
		ret = -EIO;
out:
	if (out && fclose(out) && !ret)
		ret = -EIO;
	if (in)
		fclose(in);
	return ret;
}

int ref_model_dir(const struct ref_logits *r, const char *fixture_dir, char *dir)
{
	char from[512], to[512];
	int ret;

	if (!mkdtemp(dir))
		return -errno;
	if (snprintf(from, sizeof(from), "%s/config.json", fixture_dir) >= (int)sizeof(from) ||
	    snprintf(to, sizeof(to), "%s/config.json", dir) >= (int)sizeof(to))
		return -ENAMETOOLONG;
	ret = copy_file(from, to);
	return ret < 0 ? ret : ref_write_safetensors(r, dir);
}
