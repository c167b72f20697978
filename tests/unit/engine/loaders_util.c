// SPDX-License-Identifier: MIT
#include "tests/unit/engine/loaders_util.h"
#include "engine/linear.h"
#include "engine/model.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

char *lu_read_file(const char *path, size_t *ret_size)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
		goto out;
	buf = malloc((size_t)n + 1);
	if (!buf)
		goto out;
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[n] = 0;
	*ret_size = (size_t)n;
out:
	fclose(f);
	return buf;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

uint8_t *lu_unhex(const char *hex, size_t n_hex, size_t *ret_len)
{
	uint8_t *out;

	if (n_hex == 1 && hex[0] == '-')
		n_hex = 0;
	if (n_hex % 2)
		return NULL;
	out = malloc(n_hex / 2 + 1);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n_hex / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			free(out);
			return NULL;
		}
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	*ret_len = n_hex / 2;
	return out;
}

int lu_write_file(const char *path, const void *buf, size_t n)
{
	FILE *f = fopen(path, "wb");
	int ret = 0;

	if (!f)
		return -errno;
	if (n && fwrite(buf, 1, n, f) != n)
		ret = -EIO;
	if (fclose(f))
		ret = -EIO;
	return ret;
}

char *lu_mkdtemp(void)
{
	const char *tmp = getenv("TMPDIR");
	char *p;

	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (asprintf(&p, "%s/shiftadd-test-XXXXXX", tmp) < 0)
		return NULL;
	if (!mkdtemp(p)) {
		free(p);
		return NULL;
	}
	return p;
}

void lu_rmtree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char *p;
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (asprintf(&p, "%s/%s", dir, de->d_name) < 0)
			continue;
		if (!lstat(p, &st) && S_ISDIR(st.st_mode))
			lu_rmtree(p);
		else
			unlink(p);
		free(p);
	}
	closedir(d);
	rmdir(dir);
}

void lu_use_f32_head(struct model *m)
{
	assert_true(m->cfg.tied_embeddings);
	linear_done(&m->lm_head);
	assert_int_equal(linear_init_dense(&m->lm_head, m->tok_embd, m->cfg.n_vocab, m->cfg.dim, 0),
			 0);
}
