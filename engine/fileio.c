// SPDX-License-Identifier: MIT
#include "engine/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Open @path and fstat it into @st. Returns the fd, or -errno with a line in @e. */
static int open_stat(const char *path, struct stat *st, struct errbuf *e)
{
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errbuf_set(e, -errno, "cannot open: %s", strerror(errno));
	if (fstat(fd, st) < 0) {
		ret = errbuf_set(e, -errno, "cannot stat: %s", strerror(errno));
		close(fd);
		return ret;
	}
	return fd;
}

int fileio_map(const char *path, size_t min_bytes, const char *kind, void **ret_base,
	       size_t *ret_size, struct errbuf *e)
{
	struct stat st;
	void *map;
	int fd, ret;

	fd = open_stat(path, &st, e);
	if (fd < 0)
		return fd;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < min_bytes ||
	    (uint64_t)st.st_size > SIZE_MAX) {
		ret = errbuf_set(e, -EBADMSG, "not a %s file (%lld bytes)", kind,
				 (long long)st.st_size);
		goto out_close;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		ret = errbuf_set(e, -errno, "cannot map: %s", strerror(errno));
		goto out_close;
	}
	*ret_base = map;
	*ret_size = (size_t)st.st_size;
	ret = 0;
out_close:
	close(fd);
	return ret;
}

int fileio_read(const char *path, size_t max_bytes, char **ret_buf, size_t *ret_len,
		struct errbuf *e)
{
	struct stat st;
	size_t done = 0;
	char *buf;
	int fd, ret;

	fd = open_stat(path, &st, e);
	if (fd < 0)
		return fd;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max_bytes) {
		ret = errbuf_set(e, -EBADMSG, "not a regular file of at most %zu bytes", max_bytes);
		goto out_close;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out_close;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n <= 0) {
			ret = errbuf_set(e, n < 0 ? -errno : -EBADMSG, "short read");
			free(buf);
			goto out_close;
		}
		done += (size_t)n;
	}
	buf[done] = 0;
	*ret_buf = buf;
	*ret_len = done;
	ret = 0;
out_close:
	close(fd);
	return ret;
}
