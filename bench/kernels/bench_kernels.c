// SPDX-License-Identifier: MIT
/*
 * Kernel benchmark: shift-add LUT gemv/gemm against OpenBLAS sgemv/sgemm and against the
 * read-bandwidth roofline measured in the same run at the same thread count.
 * Writes JSON and Markdown (bench/run.sh names them bench/results/kernels-<date>.*).
 */
#include "common/pool.h"
#include "kernels/lut.h"

#include <cblas.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* OpenBLAS extension, declared here so the build does not depend on its header version */
void openblas_set_num_threads(int n);

struct shape {
	uint32_t n, k;
};

static const struct shape shapes[] = {
	{ 576, 576 },	{ 1536, 576 },	 { 576, 1536 },
	{ 4096, 4096 }, { 11008, 4096 }, { 4096, 11008 },
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng_state = 42;

static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float frand(void)
{
	return (float)((double)(rng() >> 11) / 9007199254740992.0 - 0.5);
}

/* Sustained read bandwidth: each task sums its slice of a buffer far larger than the caches. */
struct bw_job {
	const uint64_t *buf;
	size_t n_words;
	uint32_t n_tasks;
	uint64_t sink[64];
};

static void bw_task(void *arg, uint32_t task)
{
	struct bw_job *j = arg;
	size_t lo = j->n_words * task / j->n_tasks, hi = j->n_words * (task + 1) / j->n_tasks;
	uint64_t a = 0, b = 0, c = 0, d = 0;

	for (size_t i = lo; i + 4 <= hi; i += 4) {
		a += j->buf[i];
		b += j->buf[i + 1];
		c += j->buf[i + 2];
		d += j->buf[i + 3];
	}
	j->sink[task & 63] = a + b + c + d;
}

static double read_bw(struct pool *p, uint32_t threads)
{
	size_t bytes = (size_t)512 << 20;
	struct bw_job j = { .n_words = bytes / 8, .n_tasks = threads };
	uint64_t *buf = malloc(bytes);
	double best = 1e30;

	if (!buf)
		return 0;
	for (size_t i = 0; i < j.n_words; i++)
		buf[i] = i;
	j.buf = buf;
	for (int rep = 0; rep < 5; rep++) {
		double t = now_s();

		pool_run(p, threads, bw_task, &j);
		t = now_s() - t;
		best = t < best ? t : best;
	}
	free(buf);
	return bytes / best / 1e9;
}

/* Median-of-reps timing of fn over at least min_s seconds. */
typedef void (*bench_fn)(void *arg);

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double time_it(bench_fn fn, void *arg, double min_s)
{
	double ts[512], start = now_s();
	int n = 0;

	fn(arg); /* warm up */
	while (n < 512 && (n < 5 || now_s() - start < min_s)) {
		double t = now_s();

		fn(arg);
		ts[n++] = now_s() - t;
	}
	qsort(ts, n, sizeof(ts[0]), cmp_d);
	return ts[n / 2];
}

struct lut_call {
	const struct lut_weight *w;
	uint32_t m;
	const float *x;
	float *y;
	struct lut_opts o;
};

static void run_lut(void *arg)
{
	struct lut_call *c = arg;

	if (lut_gemm(c->w, c->m, c->x, c->y, &c->o))
		abort();
}

struct blas_call {
	uint32_t n, k, m;
	const float *w, *x;
	float *y;
};

static void run_blas(void *arg)
{
	struct blas_call *c = arg;

	if (c->m == 1)
		cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)c->n, (int)c->k, 1.0f, c->w,
			    (int)c->k, c->x, 1, 0.0f, c->y, 1);
	else /* y[m][n] = x[m][k] W^T */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c->m, (int)c->n,
			    (int)c->k, 1.0f, c->x, (int)c->k, c->w, (int)c->k, 0.0f, c->y,
			    (int)c->n);
}

static int make_weight(uint32_t n, uint32_t k, uint32_t bits, enum qw_layout layout,
		       struct lut_weight *w, float **ret_dense)
{
	struct qweight q;
	uint64_t n_alpha, n_signs;
	int ret;

	ret = qweight_init(&q, n, k, bits, layout, 3);
	if (ret < 0)
		return ret;
	n_signs = (uint64_t)bits * n * qweight_row_bytes(&q);
	for (uint64_t i = 0; i < n_signs; i++)
		q.signs[i] = (uint8_t)rng();
	if (k % 8) /* padding bits stay 0 */
		for (uint64_t r = 0; r < (uint64_t)bits * n; r++)
			q.signs[(r + 1) * qweight_row_bytes(&q) - 1] &=
				(uint8_t)((1u << (k % 8)) - 1);
	n_alpha = (uint64_t)bits * qweight_n_row_blocks(&q) * qweight_n_col_blocks(&q);
	for (uint64_t a = 0; a < n_alpha; a++)
		q.alpha[a] = (rng() & 1 ? 0.0625f : -0.0625f) + (rng() & 1 ? 0.0078125f : 0.0f);
	ret = lut_pack(&q, w);
	if (!ret && ret_dense) {
		*ret_dense = malloc((size_t)n * k * sizeof(float));
		if (*ret_dense)
			qweight_dequant(&q, *ret_dense);
		else
			ret = -1;
	}
	qweight_done(&q);
	return ret;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: bench-kernels [options]\n"
		   "  --json PATH      write results as JSON (default: none)\n"
		   "  --md PATH        write a Markdown table (default: none)\n"
		   "  --commit ID      git commit recorded in the results (default: unknown)\n"
		   "  --cmd TEXT       command recorded in the results (default: bench-kernels)\n"
		   "  --bits Q         bit planes, 2..4 (default: 3)\n"
		   "  --layout L       col or block (default: col)\n"
		   "  --min-time S     seconds per measurement (default: 0.3)\n"
		   "  --quick          only the three small shapes\n"
		   "  --no-blas        skip the OpenBLAS peer\n");
}

/* The value of the first "/proc/cpuinfo" line starting with @key into @buf ("" if none). */
static void cpuinfo_field(const char *key, char *buf, size_t len)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	buf[0] = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *c = strchr(line, ':');

		if (c && !strncmp(line, key, strlen(key)) && strchr(" \t:", line[strlen(key)])) {
			snprintf(buf, len, "%s", c + 1 + (c[1] == ' '));
			buf[strcspn(buf, "\n")] = 0;
			break;
		}
	}
	fclose(f);
}

/*
 * "model name (family F, model M)": cloud hosts often report only "AMD EPYC", and the family
 * tells the core generation (AMD 23 = Zen 1/2, 25 = Zen 3/4, 26 = Zen 5).
 */
static void cpu_model(char *buf, size_t len)
{
	char name[200], fam[16], mod[16]; /* their sum fits the caller's 256 */

	cpuinfo_field("model name", name, sizeof(name));
	cpuinfo_field("cpu family", fam, sizeof(fam));
	cpuinfo_field("model", mod, sizeof(mod));
	snprintf(buf, len, "%s (family %s, model %s)", name[0] ? name : "unknown",
		 fam[0] ? fam : "?", mod[0] ? mod : "?");
}

struct result {
	uint32_t n, k, threads, m;
	double lut_s, blas_s, lut_gbs, roof_frac, blas_ratio;
};

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", required_argument, NULL, 'j' },
		{ "md", required_argument, NULL, 'o' },
		{ "commit", required_argument, NULL, 'c' },
		{ "cmd", required_argument, NULL, 'C' },
		{ "bits", required_argument, NULL, 'b' },
		{ "layout", required_argument, NULL, 'l' },
		{ "min-time", required_argument, NULL, 't' },
		{ "quick", no_argument, NULL, 'q' },
		{ "no-blas", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *json = NULL, *md = NULL, *commit = "unknown", *cmd = "bench-kernels";
	uint32_t bits = 3, threads_list[] = { 1, 2 }, m_list[] = { 1, 8, 16, 32 };
	enum qw_layout layout = QW_LAYOUT_COL;
	double min_s = 0.3, bw[3] = { 0 };
	bool quick = false, blas = true;
	struct result res[6 * 2 * 4];
	size_t n_res = 0, n_shapes;
	char cpu[256], date[32];
	time_t tnow = time(NULL);
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = optarg;
			break;
		case 'o':
			md = optarg;
			break;
		case 'c':
			commit = optarg;
			break;
		case 'C':
			cmd = optarg;
			break;
		case 'b':
			bits = (uint32_t)atoi(optarg);
			break;
		case 'l':
			layout = !strcmp(optarg, "block") ? QW_LAYOUT_BLOCK : QW_LAYOUT_COL;
			break;
		case 't':
			min_s = atof(optarg);
			break;
		case 'q':
			quick = true;
			break;
		case 'n':
			blas = false;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (bits < 2 || bits > 4) {
		usage(stderr);
		return 2;
	}
	cpu_model(cpu, sizeof(cpu));
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", localtime(&tnow));
	n_shapes = quick ? 3 : sizeof(shapes) / sizeof(shapes[0]);
	printf("bench-kernels: cpu '%s', %ld cpus online, isa %s, q=%u %s layout\n", cpu,
	       sysconf(_SC_NPROCESSORS_ONLN), lut_isa_name(lut_isa_auto()), bits,
	       layout == QW_LAYOUT_COL ? "col" : "block");
	for (uint32_t ti = 0; ti < 2; ti++) {
		uint32_t th = threads_list[ti];
		struct pool *p;

		if (pool_new(th, NULL, &p))
			return 1;
		bw[th] = read_bw(p, th);
		printf("read bandwidth, %u thread(s): %.2f GB/s\n", th, bw[th]);
		pool_free(p);
	}
	printf("%-12s %3s %3s %10s %9s %7s %10s %8s\n", "NxK", "thr", "M", "lut_us", "GB/s", "roof",
	       "blas_us", "x_blas");
	for (size_t s = 0; s < n_shapes; s++) {
		uint32_t n = shapes[s].n, k = shapes[s].k;
		struct lut_weight w;
		float *dense = NULL, *x, *y;

		if (make_weight(n, k, bits, layout, &w, blas ? &dense : NULL))
			return 1;
		x = malloc((size_t)32 * k * sizeof(float));
		y = malloc((size_t)32 * n * sizeof(float));
		if (!x || !y)
			return 1;
		for (size_t i = 0; i < (size_t)32 * k; i++)
			x[i] = frand();
		for (uint32_t ti = 0; ti < 2; ti++) {
			uint32_t th = threads_list[ti];
			struct lut_runner r;
			struct pool *p;

			if (pool_new(th, NULL, &p))
				return 1;
			r = (struct lut_runner){ .run = pool_run, .ctx = p, .n_workers = th };
			openblas_set_num_threads((int)th);
			for (uint32_t mi = 0; mi < 4; mi++) {
				uint32_t m = m_list[mi];
				struct lut_call lc = { .w = &w, .m = m, .x = x, .y = y };
				struct blas_call bc = {
					.n = n, .k = k, .m = m, .w = dense, .x = x, .y = y
				};
				struct result *rr = &res[n_res++];

				lc.o.runner = &r;
				lc.o.scratch_bytes = lut_scratch_bytes(&w, m, th);
				lc.o.scratch = malloc(lc.o.scratch_bytes);
				if (!lc.o.scratch)
					return 1;
				*rr = (struct result){ .n = n, .k = k, .threads = th, .m = m };
				rr->lut_s = time_it(run_lut, &lc, min_s);
				rr->lut_gbs = w.plane_bytes / rr->lut_s / 1e9;
				rr->roof_frac = rr->lut_gbs / bw[th];
				if (blas) {
					rr->blas_s = time_it(run_blas, &bc, min_s);
					rr->blas_ratio = rr->blas_s / rr->lut_s;
				}
				printf("%5ux%-6u %3u %3u %10.1f %9.2f %6.0f%% %10.1f %7.2fx\n", n,
				       k, th, m, rr->lut_s * 1e6, rr->lut_gbs, rr->roof_frac * 100,
				       rr->blas_s * 1e6, rr->blas_ratio);
				fflush(stdout);
				free(lc.o.scratch);
			}
			pool_free(p);
		}
		free(y);
		free(x);
		free(dense);
		lut_weight_done(&w);
	}
	if (json) {
		FILE *f = fopen(json, "w");

		if (!f)
			return 1;
		fprintf(f,
			"{\n  \"bench\": \"kernels\",\n  \"date\": \"%s\",\n  \"commit\": \"%s\",\n"
			"  \"command\": \"%s\",\n  \"cpu\": \"%s\",\n  \"cpus_online\": %ld,\n"
			"  \"isa\": \"%s\",\n  \"bits\": %u,\n  \"layout\": \"%s\",\n"
			"  \"read_bw_gbs\": {\"1\": %.3f, \"2\": %.3f},\n  \"results\": [\n",
			date, commit, cmd, cpu, sysconf(_SC_NPROCESSORS_ONLN),
			lut_isa_name(lut_isa_auto()), bits,
			layout == QW_LAYOUT_COL ? "col" : "block", bw[1], bw[2]);
		for (size_t i = 0; i < n_res; i++)
			fprintf(f,
				"    {\"n\": %u, \"k\": %u, \"threads\": %u, \"m\": %u, "
				"\"lut_us\": %.2f, \"lut_weight_gbs\": %.3f, \"roofline_frac\": %.4f, "
				"\"tokens_per_s\": %.1f, \"openblas_us\": %.2f, "
				"\"speedup_vs_openblas\": %.3f}%s\n",
				res[i].n, res[i].k, res[i].threads, res[i].m, res[i].lut_s * 1e6,
				res[i].lut_gbs, res[i].roof_frac, res[i].m / res[i].lut_s,
				res[i].blas_s * 1e6, res[i].blas_ratio, i + 1 < n_res ? "," : "");
		fprintf(f, "  ]\n}\n");
		fclose(f);
	}
	if (md) {
		FILE *f = fopen(md, "w");

		if (!f)
			return 1;
		fprintf(f,
			"# Kernel benchmark %s\n\n- command: `%s`\n- commit: %s\n- machine: %s, %ld "
			"CPUs online\n- kernel ISA: %s; q = %u bit planes, %s layout; OpenBLAS f32 "
			"sgemv (M = 1) / sgemm (M > 1) as the peer\n- measured read bandwidth: %.2f "
			"GB/s (1 thread), %.2f GB/s (2 threads)\n- GB/s = packed weight bytes / "
			"time per call; roof = that / read bandwidth at the same threads; x_blas = "
			"OpenBLAS time / our time (>1: we are faster)\n\n"
			"| N x K | threads | M | ours (us) | GB/s | roof | tokens/s | OpenBLAS (us) "
			"| x_blas |\n|---|---|---|---|---|---|---|---|---|\n",
			date, cmd, commit, cpu, sysconf(_SC_NPROCESSORS_ONLN),
			lut_isa_name(lut_isa_auto()), bits,
			layout == QW_LAYOUT_COL ? "col" : "block", bw[1], bw[2]);
		for (size_t i = 0; i < n_res; i++)
			fprintf(f,
				"| %u x %u | %u | %u | %.1f | %.2f | %.0f%% | %.0f | %.1f | %.2f |\n",
				res[i].n, res[i].k, res[i].threads, res[i].m, res[i].lut_s * 1e6,
				res[i].lut_gbs, res[i].roof_frac * 100, res[i].m / res[i].lut_s,
				res[i].blas_s * 1e6, res[i].blas_ratio);
		fclose(f);
	}
	return 0;
}
