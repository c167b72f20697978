// SPDX-License-Identifier: MIT
/*
 * Corpus replay for builds without libFuzzer: feed every file of the given directories (or
 * files) to the shim linked in. With no arguments, replay_<input> replays
 * tests/fuzz/corpus/<input>/, so `make test` runs it from the repository root as is.
 * Exit 0 when every input was fed (a crash is the failure), 1 on I/O trouble.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

static int feed_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	if (!f) {
		fprintf(stderr, "replay: cannot open '%s': %s\n", path, strerror(errno));
		return -1;
	}
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
		fclose(f);
		return -1;
	}
	/* an exact-size heap copy, so sanitizers catch reads past the input */
	buf = malloc(n ? (size_t)n : 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)n);
	free(buf);
	return 0;
}

static int feed(const char *path, int *n_fed)
{
	struct stat st;
	struct dirent **names;
	int n, ret = 0;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "replay: cannot stat '%s': %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		ret = feed_file(path);
		*n_fed += !ret;
		return ret;
	}
	n = scandir(path, &names, NULL, alphasort);
	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		char *p;

		if (names[i]->d_name[0] != '.' &&
		    asprintf(&p, "%s/%s", path, names[i]->d_name) >= 0) {
			if (feed(p, n_fed))
				ret = -1;
			free(p);
		}
		free(names[i]);
	}
	free(names);
	return ret;
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');
	char *dflt = NULL;
	int n_fed = 0, ret = 0;

	base = base ? base + 1 : argv[0];
	if (argc < 2) {
		if (strncmp(base, "replay_", 7) ||
		    asprintf(&dflt, "tests/fuzz/corpus/%s", base + 7) < 0) {
			fprintf(stderr, "usage: %s corpus-dir-or-file...\n", argv[0]);
			return 2;
		}
		ret = feed(dflt, &n_fed);
		free(dflt);
	}
	for (int i = 1; i < argc; i++)
		if (feed(argv[i], &n_fed))
			ret = -1;
	printf("%s: %d inputs replayed\n", base, n_fed);
	return ret || !n_fed ? 1 : 0;
}
