// SPDX-License-Identifier: MIT
/*
 * Fused causal attention benchmark: one head of a prefill of N tokens through the
 * forward's attend_rows kernel, block by block as the engine runs it, on one thread.
 * Prints the best time of R runs and GFLOP/s (q.k and p.v: 4 x head_dim x visible keys per
 * row), for comparing kernel changes side by side.
 */
#include "common/progress.h"
#include "engine/fwd_simd.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_DIM 64

static const char usage[] =
	"usage: bench-attn [--tokens N] [--repeat R] [--json]\n"
	"\n"
	"Time the fused causal attention (attend_rows of the host's best ISA) over one head of\n"
	"a prefill of N tokens (head dimension 64, blocks of 32 query rows), best of R runs.\n"
	"\n"
	"  --tokens N   prefill length (default 2048, the calibration window)\n"
	"  --repeat R   runs, the fastest is reported (default 20)\n"
	"  --json       one JSON object on stdout instead of a line of text\n"
	"  -h, --help   show this help\n";

static float *fill(size_t n, uint32_t *seed)
{
	float *x = aligned_alloc(32, (n * sizeof(float) + 31) / 32 * 32);

	for (size_t i = 0; x && i < n; i++) {
		*seed = *seed * 1664525u + 1013904223u;
		x[i] = (float)(*seed >> 8) / (float)(1u << 24) - 0.5f;
	}
	return x;
}

/* One pass over every block of rows; returns its seconds. */
static double run_once(const struct fwd_ops *o, const float *q, const float *kt, const float *v,
		       float *out, float *scratch, uint32_t n)
{
	double t0 = progress_now();

	for (uint32_t r0 = 0; r0 < n; r0 += FWD_ATT_ROWS) {
		struct fwd_att_rows a = {
			.q = q + (size_t)r0 * HEAD_DIM,
			.kt = kt,
			.v = v,
			.out = out + (size_t)r0 * HEAD_DIM,
			.scratch = scratch,
			.q_stride = HEAD_DIM,
			.v_stride = HEAD_DIM,
			.out_stride = HEAD_DIM,
			.hd = HEAD_DIM,
			.rows = n - r0 < FWD_ATT_ROWS ? n - r0 : FWD_ATT_ROWS,
			.vis0 = r0 + 1,
			.scale = 0.125f,
		};

		o->attend_rows(&a);
	}
	return progress_now() - t0;
}

static int parse(int argc, char **argv, uint32_t *n, uint32_t *rep, int *json)
{
	static const struct option lo[] = { { "tokens", required_argument, NULL, 't' },
					    { "repeat", required_argument, NULL, 'r' },
					    { "json", no_argument, NULL, 'j' },
					    { "help", no_argument, NULL, 'h' },
					    { NULL, 0, NULL, 0 } };
	int c;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		char *end;
		unsigned long v;

		switch (c) {
		case 't':
		case 'r':
			v = strtoul(optarg, &end, 10);
			if (*end || v < 1 || v > (c == 't' ? 65536 : 100000)) {
				fprintf(stderr, "bench-attn: bad --%s '%s'\n",
					c == 't' ? "tokens" : "repeat", optarg);
				return 2;
			}
			*(c == 't' ? n : rep) = (uint32_t)v;
			break;
		case 'j':
			*json = 1;
			break;
		case 'h':
			fputs(usage, stdout);
			return 1;
		default:
			fputs(usage, stderr);
			return 2;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	const struct fwd_ops *o = fwd_ops_of(LUT_ISA_AUTO);
	uint32_t n = 2048, rep = 20, seed = 1;
	float *q, *k, *v, *kt, *out, *scratch;
	double best = 1e30, flops = 0;
	int json = 0, r = parse(argc, argv, &n, &rep, &json);

	if (r)
		return r == 1 ? 0 : r;
	if (!o->attend_rows) {
		fprintf(stderr, "bench-attn: no fused attention kernel on this host (%s)\n",
			o->name);
		return 1;
	}
	q = fill((size_t)n * HEAD_DIM, &seed);
	k = fill((size_t)n * HEAD_DIM, &seed);
	v = fill((size_t)n * HEAD_DIM, &seed);
	kt = fill(fwd_packed_keys_floats(n, HEAD_DIM), &seed);
	out = fill((size_t)n * HEAD_DIM, &seed);
	scratch = fill(fwd_att_scratch_floats(HEAD_DIM, n), &seed);
	r = 1;
	if (!q || !k || !v || !kt || !out || !scratch) {
		fprintf(stderr, "bench-attn: out of memory\n");
		goto out;
	}
	fwd_pack_keys(kt, k, HEAD_DIM, n, HEAD_DIM, false);
	for (uint32_t i = 0; i < n; i++)
		flops += 4.0 * HEAD_DIM * (i + 1);
	for (uint32_t i = 0; i < rep; i++) {
		double t = run_once(o, q, kt, v, out, scratch, n);

		best = t < best ? t : best;
	}
	if (json)
		printf("{\"isa\": \"%s\", \"tokens\": %u, \"head_dim\": %u, \"best_ms\": %.4f, "
		       "\"gflops\": %.2f}\n",
		       o->name, n, HEAD_DIM, best * 1e3, flops / best / 1e9);
	else
		printf("attend_rows (%s): %u tokens, head dim %u: %.3f ms, %.1f GFLOP/s\n", o->name,
		       n, HEAD_DIM, best * 1e3, flops / best / 1e9);
	r = 0;
out:
	free(q);
	free(k);
	free(v);
	free(kt);
	free(out);
	free(scratch);
	return r;
}
