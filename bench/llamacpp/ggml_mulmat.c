// SPDX-License-Identifier: MIT
/*
 * Peer benchmark: llama.cpp's CPU mul_mat (ggml) for one quantization type and shape, timed
 * the way bench/kernels/bench_kernels.c times ours (repeat until a minimum time, report the
 * mean per call). Built by bench/llamacpp.sh against a ggml built from the llama.cpp tree
 * vendored in PyPI llama-cpp-python (outside this repository); never part of `make`.
 * Prints one JSON object per run on stdout.
 */
#include <ggml-cpu.h>
#include <ggml.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int type_of(const char *name, enum ggml_type *ret)
{
	for (int t = 0; t < GGML_TYPE_COUNT; t++) {
		const char *n = ggml_type_name((enum ggml_type)t);

		if (n && !strcmp(n, name)) {
			*ret = (enum ggml_type)t;
			return 0;
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	enum ggml_type type;
	int64_t n, k, m;
	int threads, iters = 0;
	double min_s, t0, t;
	struct ggml_context *ctx;
	struct ggml_tensor *w, *x, *y;
	struct ggml_cgraph *gf;
	struct ggml_threadpool_params tp_params;
	struct ggml_threadpool *tp;
	struct ggml_cplan plan;
	uint8_t *work;
	float *src;
	size_t mem;

	if (argc != 7 || type_of(argv[1], &type)) {
		fprintf(stderr, "usage: ggml_mulmat TYPE N K M THREADS MIN_SECONDS\n"
				"  TYPE: a ggml type name (q4_0, q3_K, q2_K, tq2_0, f32, ...)\n");
		return 2;
	}
	n = atoll(argv[2]);
	k = atoll(argv[3]);
	m = atoll(argv[4]);
	threads = atoi(argv[5]);
	min_s = atof(argv[6]);
	if (n < 1 || k < 1 || m < 1 || threads < 1 || k % ggml_blck_size(type)) {
		fprintf(stderr, "ggml_mulmat: K=%lld is not a multiple of %s's block of %lld\n",
			(long long)k, argv[1], (long long)ggml_blck_size(type));
		return 3;
	}
	ggml_cpu_init();
	/* tensors and the graph (the work buffer is allocated below) */
	mem = ggml_row_size(type, k) * n + 2 * (size_t)(k + n) * m * sizeof(float) +
	      ggml_graph_overhead() + 16 * ggml_tensor_overhead() + ((size_t)1 << 20);
	ctx = ggml_init((struct ggml_init_params){ .mem_size = mem, .no_alloc = false });
	if (!ctx)
		return 1;
	w = ggml_new_tensor_2d(ctx, type, k, n);
	x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, m);
	src = malloc((size_t)n * k * sizeof(float));
	if (!src)
		return 1;
	srand(42);
	for (size_t i = 0; i < (size_t)n * k; i++)
		src[i] = (float)rand() / RAND_MAX - 0.5f;
	if (type == GGML_TYPE_F32)
		memcpy(w->data, src, (size_t)n * k * sizeof(float));
	else
		ggml_quantize_chunk(type, src, w->data, 0, n, k, NULL);
	for (int64_t i = 0; i < k * m; i++)
		((float *)x->data)[i] = (float)rand() / RAND_MAX - 0.5f;
	y = ggml_mul_mat(ctx, w, x);
	gf = ggml_new_graph(ctx);
	ggml_build_forward_expand(gf, y);
	/*
	 * One persistent thread pool and work buffer, as llama.cpp runs a model: the
	 * *_with_ctx() call starts threads and carves a work buffer from the context on every
	 * call (milliseconds per call with 2 threads, and the context runs out).
	 */
	tp_params = ggml_threadpool_params_default(threads);
	tp = ggml_threadpool_new(&tp_params);
	if (!tp)
		return 1;
	plan = ggml_graph_plan(gf, threads, tp);
	work = plan.work_size ? malloc(plan.work_size) : NULL;
	if (plan.work_size && !work)
		return 1;
	plan.work_data = work;
	ggml_graph_compute(gf, &plan); /* warm-up */
	t0 = now_s();
	do {
		ggml_graph_compute(gf, &plan);
		iters++;
		t = now_s() - t0;
	} while (t < min_s);
	printf("{\"type\": \"%s\", \"n\": %lld, \"k\": %lld, \"m\": %lld, \"threads\": %d, "
	       "\"us\": %.2f, \"weight_bytes\": %zu}\n",
	       argv[1], (long long)n, (long long)k, (long long)m, threads, t / iters * 1e6,
	       ggml_row_size(type, k) * n);
	free(work);
	ggml_threadpool_free(tp);
	free(src);
	ggml_free(ctx);
	return 0;
}
