// SPDX-License-Identifier: MIT
/*
 * The forward pass, in the model's reading order: embed, then per layer norm, q/k/v, RoPE,
 * attention, output projection, residual, norm, feed-forward, residual; final norm.
 * Tokens of several sequences may share one step (continuous batching): the linear layers see
 * all tokens at once, attention runs per run of consecutive tokens of one sequence.
 */
#include "engine/model.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "common/pool.h"
#include "engine/fwd_simd.h"

/*
 * Zeroed memory for a cache array, mapped lazily (pages are committed as positions are
 * written), with transparent huge pages asked for: a decode step at depth streams the cache,
 * and 4 KiB pages would cost a TLB miss every 4 KiB. Released with kv_free(p, @bytes).
 */
static void *kv_alloc(size_t bytes)
{
	void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, bytes, MADV_HUGEPAGE); /* a hint: without THP, 4 KiB pages serve */
	return p;
}

/*
 * Commit @bytes at @p now: MADV_POPULATE_WRITE (Linux 5.14), else one write per 4 KiB page
 * (the pages are zero and stay so). -ENOMEM when the memory cannot be had.
 */
static int kv_commit(void *p, size_t bytes)
{
#ifdef MADV_POPULATE_WRITE
	if (!madvise(p, bytes, MADV_POPULATE_WRITE))
		return 0;
	if (errno != EINVAL)
		return -ENOMEM;
#endif
	for (size_t i = 0; i < bytes; i += 4096)
		((volatile char *)p)[i] = 0;
	return 0;
}

static void kv_free(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes ? bytes : 1);
}

bool kv_f16_supported(void)
{
#if defined(__x86_64__) || defined(__i386__)
	unsigned a, b, c, d;

	/* F16C (CPUID.1:ECX bit 29) widens the f16 elements; the fused kernel needs AVX2 */
	return fwd_ops()->attend_rows && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
#else
	return false;
#endif
}

int kv_type_parse(const char *s, enum kv_type *ret)
{
	if (!strcmp(s, "f32"))
		*ret = KV_F32;
	else if (!strcmp(s, "f16"))
		*ret = KV_F16;
	else
		return -EINVAL;
	return 0;
}

const char *kv_type_name(enum kv_type t)
{
	return t == KV_F16 ? "f16" : "f32";
}

int kv_cache_init(struct kv_cache *kv, const struct model *m, uint32_t n_seq, uint32_t n_ctx)
{
	return kv_cache_init_type(kv, m, n_seq, n_ctx, KV_F32);
}

int kv_cache_init_type(struct kv_cache *kv, const struct model *m, uint32_t n_seq, uint32_t n_ctx,
		       enum kv_type type)
{
	const struct fwd_ops *ops = fwd_ops();
	bool fused = ops->attend_rows && m->cfg.head_dim % 32 == 0;
	uint64_t n, n_kt;

	memset(kv, 0, sizeof(*kv));
	if (!n_seq || !n_ctx)
		return -EINVAL;
	kv->n_seq = n_seq;
	kv->n_ctx = n_ctx;
	kv->n_layers = m->cfg.n_layers;
	kv->n_kv_heads = m->cfg.n_kv_heads;
	kv->head_dim = m->cfg.head_dim;
	kv->kv_dim = m->cfg.n_kv_heads * m->cfg.head_dim;
	kv->kt_head_floats = fwd_packed_keys_floats(n_ctx, kv->head_dim);
	if (__builtin_mul_overflow((uint64_t)n_seq * kv->n_layers, (uint64_t)n_ctx * kv->kv_dim,
				   &n) ||
	    __builtin_mul_overflow((uint64_t)n_seq * kv->n_layers * kv->n_kv_heads,
				   kv->kt_head_floats, &n_kt) ||
	    n > SIZE_MAX / sizeof(float) || n_kt > SIZE_MAX / sizeof(float))
		return -EOVERFLOW;
	/* f16 needs the fused kernel (the BLAS path multiplies f32) and F16C to widen it */
	kv->f16 = type == KV_F16 && fused && kv_f16_supported();
	kv->elt = kv->f16 ? sizeof(uint16_t) : sizeof(float);
	kv->bytes = n * kv->elt;
	kv->kt_bytes = n_kt * kv->elt;
	kv->v = kv_alloc(kv->bytes);
	if (fused) {
		/* zeroed: the padding keys of a chunk must be finite (the kernel computes their
		 * scores before masking them) */
		kv->kt = kv_alloc(kv->kt_bytes);
		kv->att_ops = ops;
	} else {
		kv->k = kv_alloc(kv->bytes);
	}
	if (!kv->v || !(kv->k || kv->kt)) {
		kv_cache_done(kv);
		return -ENOMEM;
	}
	return 0;
}

int kv_cache_commit(struct kv_cache *kv)
{
	void *arr[3] = { kv->k, kv->v, kv->kt };
	size_t len[3] = { kv->bytes, kv->bytes, kv->kt_bytes };

	for (int i = 0; i < 3; i++)
		if (arr[i] && len[i] && kv_commit(arr[i], len[i]) < 0)
			return -ENOMEM;
	return 0;
}

void kv_cache_done(struct kv_cache *kv)
{
	kv_free(kv->k, kv->bytes);
	kv_free(kv->v, kv->bytes);
	kv_free(kv->kt, kv->kt_bytes);
	kv->k = kv->v = kv->kt = NULL;
}

/*
 * The [n_ctx][head_dim] block of KV head @g of layer @l for sequence @s: a head's keys or
 * values are contiguous, so that attention streams only what it reads.
 */
static void *kv_at(const struct kv_cache *kv, void *base, uint32_t s, uint32_t l, uint32_t g)
{
	return (char *)base + (((uint64_t)s * kv->n_layers + l) * kv->n_kv_heads + g) * kv->n_ctx *
				      kv->head_dim * kv->elt;
}

/* The packed keys of KV head @g of layer @l for sequence @s. */
static void *kv_kt_at(const struct kv_cache *kv, uint32_t s, uint32_t l, uint32_t g)
{
	return (char *)kv->kt + (((uint64_t)s * kv->n_layers + l) * kv->n_kv_heads + g) *
					kv->kt_head_floats * kv->elt;
}

void kv_cache_copy_prefix(struct kv_cache *kv, uint32_t from, uint32_t to, uint32_t n)
{
	/* packed keys: whole chunks (the extra slots are finite and masked until written) */
	size_t kt_n = fwd_packed_keys_floats(n, kv->head_dim);

	for (uint32_t l = 0; l < kv->n_layers; l++) {
		for (uint32_t g = 0; g < kv->n_kv_heads; g++) {
			memcpy(kv_at(kv, kv->v, to, l, g), kv_at(kv, kv->v, from, l, g),
			       (size_t)n * kv->head_dim * kv->elt);
			if (!kv->kt)
				memcpy(kv_at(kv, kv->k, to, l, g), kv_at(kv, kv->k, from, l, g),
				       (size_t)n * kv->head_dim * kv->elt);
			else
				memcpy(kv_kt_at(kv, to, l, g), kv_kt_at(kv, from, l, g),
				       kt_n * kv->elt);
		}
	}
}

/* Most threads of our own one step starts. */
#define MAX_THREADS 64

uint32_t fwd_n_workers(const struct model *m)
{
	int n;

	if (m->opts.runner.run)
		return m->opts.runner.n_workers ? m->opts.runner.n_workers : 1;
	if (m->opts.pool)
		return pool_n_threads(m->opts.pool);
	n = openblas_get_num_threads();
	return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (uint32_t)n;
}

struct spawn {
	lut_task_fn fn;
	void *arg;
	uint32_t i;
};

static void *spawn_main(void *p)
{
	struct spawn *sp = p;

	sp->fn(sp->arg, sp->i);
	return NULL;
}

void fwd_run_tasks(const struct model *m, uint32_t n, lut_task_fn fn, void *arg)
{
	pthread_t tid[MAX_THREADS];
	struct spawn sp[MAX_THREADS];
	bool started[MAX_THREADS];

	n = n < MAX_THREADS ? n : MAX_THREADS;
	if (m->opts.runner.run) {
		m->opts.runner.run(m->opts.runner.ctx, n, fn, arg);
		return;
	}
	if (m->opts.pool) {
		pool_run(m->opts.pool, n, fn, arg);
		return;
	}
	for (uint32_t i = 1; i < n; i++) {
		sp[i] = (struct spawn){ .fn = fn, .arg = arg, .i = i };
		started[i] = pthread_create(&tid[i], NULL, spawn_main, &sp[i]) == 0;
	}
	fn(arg, 0);
	for (uint32_t i = 1; i < n; i++) {
		if (started[i])
			pthread_join(tid[i], NULL);
		else
			fn(arg, i);
	}
}

/*
 * Rows of elementwise work (norms, residual adds, RoPE, the gated activation) per task.
 * Without a pool each task but the first is a new thread, and with fewer rows starting it
 * costs more than it saves. A pool's workers are already waiting: from 8 rows a task, a
 * 16-sequence decode step splits this work too, where it had run on the caller alone
 * (bench-step -s 16 -t 2, SmolLM2 acc-3: 1.21-1.30 -> 0.75-0.93 ms of a 23-24 ms step).
 */
#define PAR_MIN_ROWS	  64
#define PAR_MIN_ROWS_POOL 8

typedef void (*rows_fn)(void *ctx, uint32_t r0, uint32_t r1);

struct rows_job {
	rows_fn fn;
	void *ctx;
	uint32_t n, parts;
};

static void rows_task(void *arg, uint32_t i)
{
	struct rows_job *j = arg;
	uint32_t r0 = (uint64_t)j->n * i / j->parts, r1 = (uint64_t)j->n * (i + 1) / j->parts;

	if (r0 < r1)
		j->fn(j->ctx, r0, r1);
}

/*
 * fn(ctx, r0, r1) over rows [0, n), split in contiguous parts over the workers (from
 * PAR_MIN_ROWS_POOL rows a part with a pool, else long prefills only). Each row is computed
 * the same way whatever the split.
 */
static void par_rows(const struct model *m, uint32_t n, rows_fn fn, void *ctx)
{
	bool pool = m->opts.runner.run || m->opts.pool;
	uint32_t parts = n / (pool ? PAR_MIN_ROWS_POOL : PAR_MIN_ROWS);
	uint32_t nw = parts >= 2 ? fwd_n_workers(m) : 1;
	struct rows_job j = { .fn = fn, .ctx = ctx, .n = n, .parts = parts < nw ? parts : nw };

	if (j.parts < 2)
		fn(ctx, 0, n);
	else
		fwd_run_tasks(m, j.parts, rows_task, &j);
}

/* Sums run in double: a sequential f32 sum over thousands of elements drifts further from
 * the exact value than the pairwise sums of the reference implementations. */
static void rms_norm(float *out, const float *x, const float *w, uint32_t dim, float eps)
{
	double acc = fwd_ops()->sumsq(x, dim);
	float ss;

	ss = 1.0f / sqrtf((float)(acc / dim) + eps);
	for (uint32_t i = 0; i < dim; i++)
		out[i] = w[i] * (x[i] * ss);
}

static void layer_norm(float *out, const float *x, const float *w, const float *b, uint32_t dim,
		       float eps)
{
	double sum = 0, var = 0;
	float mean, inv;

	for (uint32_t i = 0; i < dim; i++)
		sum += x[i];
	mean = (float)(sum / dim);
	for (uint32_t i = 0; i < dim; i++)
		var += (double)(x[i] - mean) * (x[i] - mean);
	inv = 1.0f / sqrtf((float)(var / dim) + eps);
	for (uint32_t i = 0; i < dim; i++)
		out[i] = (x[i] - mean) * inv * w[i] + b[i];
}

struct norm_ctx {
	const struct model *m;
	float *out;
	const float *x, *w, *b;
};

static void norm_part(void *ctx, uint32_t r0, uint32_t r1)
{
	const struct norm_ctx *c = ctx;
	uint32_t dim = c->m->cfg.dim;

	for (uint32_t t = r0; t < r1; t++) {
		if (c->b)
			layer_norm(c->out + (uint64_t)t * dim, c->x + (uint64_t)t * dim, c->w, c->b,
				   dim, c->m->cfg.norm_eps);
		else
			rms_norm(c->out + (uint64_t)t * dim, c->x + (uint64_t)t * dim, c->w, dim,
				 c->m->cfg.norm_eps);
	}
}

static void norm_rows(const struct model *m, float *out, const float *x, const float *w,
		      const float *b, uint32_t n)
{
	struct norm_ctx c = { .m = m, .out = out, .x = x, .w = w, .b = b };

	par_rows(m, n, norm_part, &c);
}

/*
 * Rotate the heads of one token's q or k vector; cs holds cos then sin of the token's
 * position times each of the head_dim / 2 frequencies (rope_tables()).
 */
static void rope(const struct model *m, float *v, uint32_t n_heads, const float *cs)
{
	uint32_t hd = m->cfg.head_dim, half = hd / 2;
	bool adj = m->rope_pairing == ROPE_PAIR_ADJACENT;

	for (uint32_t i = 0; i < half; i++) {
		float c = cs[i], s = cs[half + i];
		uint32_t a = adj ? 2 * i : i, b = adj ? 2 * i + 1 : i + half;

		for (uint32_t h = 0; h < n_heads; h++) {
			float *p = v + h * hd;
			float x0 = p[a], x1 = p[b];

			p[a] = x0 * c - x1 * s;
			p[b] = x1 * c + x0 * s;
		}
	}
}

/* cs[n][head_dim]: cos and sin for each token's position, computed once per step rather than
 * once per layer and head. */
static void rope_tables(const struct model *m, const float *freq, const uint32_t *pos, uint32_t n,
			float *cs)
{
	uint32_t half = m->cfg.head_dim / 2;

	for (uint32_t t = 0; t < n; t++) {
		float *row = cs + (uint64_t)t * 2 * half;

		for (uint32_t i = 0; i < half; i++) {
			float ang = (float)pos[t] * freq[i];

			row[i] = cosf(ang);
			row[half + i] = sinf(ang);
		}
	}
}

/* Query rows per BLAS attention block: each block only multiplies the keys it can see, which
 * halves the work of a long causal prefill. */
#define ATT_BLOCK 256

static float model_attn_scale(const struct model_config *c)
{
	return c->attn_scale ? c->attn_scale : 1.0f / sqrtf((float)c->head_dim);
}

/*
 * Causal attention through BLAS for @len <= ATT_BLOCK consecutive tokens of sequence @s at
 * positions p0.., whose k/v are already in the cache, each seeing its last @win keys (0:
 * all). q and out are [len][q_dim]; scores is scratch [len][p0 + len].
 */
static void attend_block(const struct model *m, const struct kv_cache *kv, uint32_t layer,
			 uint32_t s, uint32_t p0, uint32_t len, uint32_t win, const float *q,
			 float *out, float *scores)
{
	const struct model_config *c = &m->cfg;
	uint32_t hd = c->head_dim, q_dim = c->n_heads * hd;
	uint32_t lo0 = fwd_window_start(p0 + 1, win), n_keys = p0 + len - lo0;
	uint32_t group = c->n_heads / c->n_kv_heads;
	float scale = model_attn_scale(c);

	for (uint32_t h = 0; h < c->n_heads; h++) {
		uint32_t g = h / group;

		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, len, n_keys, hd, scale,
			    q + h * hd, q_dim,
			    (const float *)kv_at(kv, kv->k, s, layer, g) + (uint64_t)lo0 * hd, hd,
			    0.0f, scores, n_keys);
		for (uint32_t r = 0; r < len; r++) {
			float *row = scores + (uint64_t)r * n_keys;
			/* keys [lo, visible) of the block's [lo0, p0 + len), counted from lo0 */
			uint32_t visible = p0 + r + 1 - lo0;
			uint32_t lo = fwd_window_start(p0 + r + 1, win) - lo0;

			memset(row, 0, lo * sizeof(float));
			fwd_ops()->softmax(row + lo, visible - lo);
			memset(row + visible, 0, (n_keys - visible) * sizeof(float));
		}
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, len, hd, n_keys, 1.0f,
			    scores, n_keys,
			    (const float *)kv_at(kv, kv->v, s, layer, g) + (uint64_t)lo0 * hd, hd,
			    0.0f, out + h * hd, q_dim);
	}
}

/*
 * One fused attention run: work items are (head, block of FWD_ATT_ROWS query rows), handed
 * to the workers through an atomic counter, the blocks that see the most keys first.
 */
struct att_job {
	const struct fwd_ops *ops;
	const struct kv_cache *kv;
	const float *q; /* [len][q_dim] */
	float *out;	/* [len][q_dim] */
	float *scratch; /* [workers][scratch_floats] */
	size_t scratch_floats;
	uint32_t s, layer, q_dim, hd, n_heads, group, p0, len, n_blocks, win;
	float scale;
	atomic_uint next;
};

static void att_worker(void *arg, uint32_t w)
{
	struct att_job *j = arg;
	uint32_t n_tasks = j->n_heads * j->n_blocks, t;

	while ((t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < n_tasks) {
		uint32_t h = t % j->n_heads, b = j->n_blocks - 1 - t / j->n_heads;
		uint32_t r0 = b * FWD_ATT_ROWS, g = h / j->group;
		struct fwd_att_rows a = {
			.q = j->q + (size_t)r0 * j->q_dim + h * j->hd,
			.kt = kv_kt_at(j->kv, j->s, j->layer, g),
			.v = kv_at(j->kv, j->kv->v, j->s, j->layer, g),
			.f16 = j->kv->f16,
			.out = j->out + (size_t)r0 * j->q_dim + h * j->hd,
			.scratch = j->scratch + w * j->scratch_floats,
			.q_stride = j->q_dim,
			.v_stride = j->hd,
			.out_stride = j->q_dim,
			.hd = j->hd,
			.rows = j->len - r0 < FWD_ATT_ROWS ? j->len - r0 : FWD_ATT_ROWS,
			.vis0 = j->p0 + r0 + 1,
			.win = j->win,
			.scale = j->scale,
		};

		j->ops->attend_rows(&a);
	}
}

/* Scratch of the fused attention, kept across the layers of a step (fresh pages for every
 * layer would cost a page fault each): [workers][att_scratch_floats]. */
struct att_bufs {
	float *work; /* 32-byte aligned */
	size_t per_worker;
	uint32_t n_workers;
};

/*
 * Reserve the fused attention's scratch for a step whose sequences see at most @max_keys
 * keys, before any layer runs (the fused path has no fallback once the keys are packed).
 */
static int att_reserve(struct att_bufs *ab, const struct model *m, uint32_t max_keys)
{
	/* 8-float multiples keep every worker's scratch 32-byte aligned */
	size_t per = (fwd_att_scratch_floats(m->cfg.head_dim, max_keys) + 7) & ~(size_t)7;
	uint32_t nw = fwd_n_workers(m);

	ab->work = aligned_alloc(32, (size_t)nw * per * sizeof(float));
	if (!ab->work)
		return -ENOMEM;
	ab->per_worker = per;
	ab->n_workers = nw;
	return 0;
}

static void att_bufs_free(struct att_bufs *ab)
{
	free(ab->work);
	memset(ab, 0, sizeof(*ab));
}

/* Fused attention (fwd_ops attend_rows on the packed keys) on all workers. */
static void attend_fused(const struct model *m, const struct kv_cache *kv, uint32_t layer,
			 uint32_t s, uint32_t p0, uint32_t len, uint32_t win, const float *q,
			 float *out, const struct att_bufs *ab)
{
	const struct model_config *c = &m->cfg;
	uint32_t hd = c->head_dim, nw, n_tasks;
	struct att_job j = {
		.ops = kv->att_ops,
		.q = q,
		.kv = kv,
		.s = s,
		.layer = layer,
		.out = out,
		.scratch = ab->work,
		.scratch_floats = ab->per_worker,
		.q_dim = c->n_heads * hd,
		.hd = hd,
		.n_heads = c->n_heads,
		.group = c->n_heads / c->n_kv_heads,
		.p0 = p0,
		.len = len,
		.n_blocks = (len + FWD_ATT_ROWS - 1) / FWD_ATT_ROWS,
		.win = win,
		.scale = model_attn_scale(c),
	};

	n_tasks = j.n_heads * j.n_blocks;
	nw = ab->n_workers < n_tasks ? ab->n_workers : n_tasks;
	atomic_init(&j.next, 0);
	if (nw > 1)
		fwd_run_tasks(m, nw, att_worker, &j);
	else
		att_worker(&j, 0);
}

/*
 * The decode rows of a step (tokens whose sequence has no other token in the batch), all
 * sequences in one hand-off: a task is the query heads of one KV head of one row, or a part
 * of them when there are fewer (row, KV head) pairs than workers, so that the keys and
 * values are streamed once per task rather than once per query head.
 */
struct dec_job {
	const struct fwd_ops *ops;
	const struct model *m;
	const struct kv_cache *kv;
	const uint32_t *tok, *seq, *pos; /* tok: the rows' token indices in the batch */
	const float *q;			 /* [n][q_dim] */
	float *out;			 /* [n][q_dim] */
	const struct att_bufs *ab;
	uint32_t layer, win, n_rows, n_parts, group, q_dim;
	float scale;
	atomic_uint next;
};

static void dec_worker(void *arg, uint32_t w)
{
	struct dec_job *j = arg;
	const struct model_config *c = &j->m->cfg;
	uint32_t per_row = c->n_kv_heads * j->n_parts, n_tasks = j->n_rows * per_row, t;

	while ((t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < n_tasks) {
		uint32_t i = j->tok[t / per_row], g = t % per_row / j->n_parts;
		uint32_t part = t % j->n_parts, s = j->seq[i];
		uint32_t h0 = g * j->group + j->group * part / j->n_parts;
		uint32_t h1 = g * j->group + j->group * (part + 1) / j->n_parts;
		struct fwd_att_rows a = {
			.q = j->q + (size_t)i * j->q_dim + h0 * c->head_dim,
			.kt = kv_kt_at(j->kv, s, j->layer, g),
			.v = kv_at(j->kv, j->kv->v, s, j->layer, g),
			.f16 = j->kv->f16,
			.out = j->out + (size_t)i * j->q_dim + h0 * c->head_dim,
			.scratch = j->ab->work + w * j->ab->per_worker,
			.v_stride = c->head_dim,
			.hd = c->head_dim,
			.rows = 1,
			.vis0 = j->pos[i] + 1,
			.win = j->win,
			.scale = j->scale,
		};

		if (h1 > h0)
			j->ops->attend_heads(&a, h1 - h0);
	}
}

static void attend_decode(const struct model *m, const struct kv_cache *kv, uint32_t layer,
			  const uint32_t *tok, uint32_t n_rows, const uint32_t *seq,
			  const uint32_t *pos, const float *q, float *out,
			  const struct att_bufs *ab)
{
	const struct model_config *c = &m->cfg;
	uint32_t pairs = n_rows * c->n_kv_heads, nw, n_tasks;
	struct dec_job j = {
		.ops = kv->att_ops,
		.m = m,
		.kv = kv,
		.tok = tok,
		.seq = seq,
		.pos = pos,
		.q = q,
		.out = out,
		.ab = ab,
		.layer = layer,
		.win = model_config_layer_slides(c, layer) ? c->sliding_window : 0,
		.n_rows = n_rows,
		.group = c->n_heads / c->n_kv_heads,
		.q_dim = c->n_heads * c->head_dim,
		.scale = model_attn_scale(c),
	};

	j.n_parts = pairs < ab->n_workers ? (ab->n_workers + pairs - 1) / pairs : 1;
	if (j.n_parts > j.group)
		j.n_parts = j.group;
	n_tasks = pairs * j.n_parts;
	nw = ab->n_workers < n_tasks ? ab->n_workers : n_tasks;
	atomic_init(&j.next, 0);
	if (nw > 1)
		fwd_run_tasks(m, nw, dec_worker, &j);
	else
		dec_worker(&j, 0);
}

/*
 * Causal attention for @len consecutive tokens of sequence @s at positions p0.., whose k/v
 * are already in the cache, through the layer's sliding window if it has one. q and out are
 * [len][q_dim]; scores is scratch [min(len, ATT_BLOCK)][p0 + len] for the BLAS path.
 */
static void attend_run(const struct model *m, const struct kv_cache *kv, uint32_t layer, uint32_t s,
		       uint32_t p0, uint32_t len, const float *q, float *out, float *scores,
		       struct att_bufs *ab)
{
	uint32_t q_dim = m->cfg.n_heads * m->cfg.head_dim;
	uint32_t win = model_config_layer_slides(&m->cfg, layer) ? m->cfg.sliding_window : 0;

	if (kv->kt) {
		attend_fused(m, kv, layer, s, p0, len, win, q, out, ab);
		return;
	}
	for (uint32_t r0 = 0; r0 < len; r0 += ATT_BLOCK) {
		uint32_t n = len - r0 < ATT_BLOCK ? len - r0 : ATT_BLOCK;

		attend_block(m, kv, layer, s, p0 + r0, n, win, q + (uint64_t)r0 * q_dim,
			     out + (uint64_t)r0 * q_dim, scores);
	}
}

struct scratch {
	float *x, *h, *q, *k, *v, *att, *ff1, *ff2, *scores;
	float *rope_cs;	    /* [n][head_dim] (rope_tables()), LLaMA-style models only */
	float *rope_cs_swa; /* the same for the sliding layers' RoPE base, if it differs */
	struct att_bufs ab; /* fused attention */
	uint32_t *dec;	    /* [n]: the decode rows of the step (attend_all) */
};

static void scratch_free(struct scratch *s)
{
	free(s->x);
	free(s->h);
	free(s->q);
	free(s->k);
	free(s->v);
	free(s->att);
	free(s->ff1);
	free(s->ff2);
	free(s->scores);
	free(s->rope_cs);
	free(s->rope_cs_swa);
	free(s->dec);
	att_bufs_free(&s->ab);
}

/*
 * The step's buffers; @scores floats for the BLAS attention, or, with packed keys, the
 * fused attention's scratch instead.
 */
static int scratch_alloc(struct scratch *s, const struct model *m, const struct kv_cache *kv,
			 const uint32_t *pos, uint32_t n, uint64_t scores)
{
	const struct model_config *c = &m->cfg;
	uint64_t q_dim = (uint64_t)c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
	uint32_t max_keys = 0;

	memset(s, 0, sizeof(*s));
	if (kv->kt) {
		for (uint32_t t = 0; t < n; t++)
			max_keys = pos[t] + 1 > max_keys ? pos[t] + 1 : max_keys;
		if (att_reserve(&s->ab, m, max_keys) < 0)
			return -ENOMEM;
		scores = 1;
	}
	s->x = malloc(n * c->dim * sizeof(float));
	s->h = malloc(n * c->dim * sizeof(float));
	s->q = malloc(n * q_dim * sizeof(float));
	s->k = malloc(n * kv_dim * sizeof(float));
	s->v = malloc(n * kv_dim * sizeof(float));
	s->att = malloc(n * q_dim * sizeof(float));
	s->ff1 = malloc((uint64_t)n * c->ffn_dim * sizeof(float));
	s->ff2 = malloc((uint64_t)n * c->ffn_dim * sizeof(float));
	s->scores = malloc(scores * sizeof(float));
	s->dec = malloc((uint64_t)n * sizeof(*s->dec));
	if (c->arch == ARCH_LLAMA)
		s->rope_cs = malloc((uint64_t)n * c->head_dim * sizeof(float));
	if (m->rope_freq_swa)
		s->rope_cs_swa = malloc((uint64_t)n * c->head_dim * sizeof(float));
	if (!s->x || !s->h || !s->q || !s->k || !s->v || !s->att || !s->ff1 || !s->ff2 ||
	    !s->scores || !s->dec || (c->arch == ARCH_LLAMA && !s->rope_cs) ||
	    (m->rope_freq_swa && !s->rope_cs_swa)) {
		scratch_free(s);
		return -ENOMEM;
	}
	if (s->rope_cs)
		rope_tables(m, m->rope_freq, pos, n, s->rope_cs);
	if (s->rope_cs_swa)
		rope_tables(m, m->rope_freq_swa, pos, n, s->rope_cs_swa);
	return 0;
}

static bool pre_ln(const struct model *m)
{
	return m->cfg.arch != ARCH_OPT || m->cfg.opt_pre_ln;
}

int model_embed(const struct model *m, const int32_t *tokens, const uint32_t *pos, uint32_t n,
		float *x)
{
	uint32_t dim = m->cfg.dim;

	for (uint32_t t = 0; t < n; t++) {
		float *row = x + (uint64_t)t * dim;

		if (tokens[t] < 0 || (uint32_t)tokens[t] >= m->cfg.n_vocab)
			return -EINVAL;
		memcpy(row, m->tok_embd + (uint64_t)tokens[t] * dim, dim * sizeof(float));
		if (m->cfg.embed_scale != 1.0f)
			for (uint32_t i = 0; i < dim; i++)
				row[i] *= m->cfg.embed_scale;
		if (m->pos_embd) {
			/* OPT's learned positions start at offset 2 */
			const float *pe;

			if (pos[t] >= m->cfg.max_ctx)
				return -EINVAL;
			pe = m->pos_embd + (uint64_t)(pos[t] + 2) * dim;
			for (uint32_t i = 0; i < dim; i++)
				row[i] += pe[i];
		}
	}
	return 0;
}

struct add_ctx {
	float *x;
	const float *y;
	uint32_t dim;
};

static void add_part(void *ctx, uint32_t r0, uint32_t r1)
{
	const struct add_ctx *c = ctx;

	for (uint64_t i = (uint64_t)r0 * c->dim; i < (uint64_t)r1 * c->dim; i++)
		c->x[i] += c->y[i];
}

/* x[n][dim] += y[n][dim] */
static void add_rows(const struct model *m, float *x, const float *y, uint32_t n)
{
	struct add_ctx c = { .x = x, .y = y, .dim = m->cfg.dim };

	par_rows(m, n, add_part, &c);
}

struct rope_ctx {
	const struct model *m;
	float *q, *k;
	const float *cs;
	const float *q_norm, *k_norm; /* per-head RMSNorm first (Gemma 3), or NULL */
};

static void head_norms(const struct model *m, float *v, uint32_t n_heads, const float *w)
{
	uint32_t hd = m->cfg.head_dim;

	for (uint32_t h = 0; h < n_heads; h++)
		rms_norm(v + h * hd, v + h * hd, w, hd, m->cfg.norm_eps);
}

static void rope_part(void *ctx, uint32_t r0, uint32_t r1)
{
	const struct rope_ctx *c = ctx;
	const struct model_config *mc = &c->m->cfg;
	uint32_t q_dim = mc->n_heads * mc->head_dim, kvd = mc->n_kv_heads * mc->head_dim;

	for (uint32_t t = r0; t < r1; t++) {
		const float *cs = c->cs + (uint64_t)t * mc->head_dim;
		float *q = c->q + (uint64_t)t * q_dim, *k = c->k + (uint64_t)t * kvd;

		if (c->q_norm) {
			head_norms(c->m, q, mc->n_heads, c->q_norm);
			head_norms(c->m, k, mc->n_kv_heads, c->k_norm);
		}
		rope(c->m, q, mc->n_heads, cs);
		rope(c->m, k, mc->n_kv_heads, cs);
	}
}

/*
 * Attention of every run of consecutive positions of one sequence in the batch: the runs of
 * one token (decode rows) together through attend_decode when the fused kernel has
 * attend_heads, the others one by one.
 */
static void attend_all(const struct model *m, const struct kv_cache *kv, uint32_t li,
		       const uint32_t *seq, const uint32_t *pos, uint32_t n, float *att,
		       struct scratch *s)
{
	uint32_t q_dim = m->cfg.n_heads * m->cfg.head_dim, n_dec = 0;
	bool dec = kv->kt && kv->att_ops->attend_heads &&
		   m->cfg.n_heads / m->cfg.n_kv_heads <= FWD_ATT_ROWS;

	for (uint32_t t0 = 0, t1; t0 < n; t0 = t1) {
		for (t1 = t0 + 1; t1 < n && seq[t1] == seq[t0] && pos[t1] == pos[t1 - 1] + 1; t1++)
			;
		if (dec && t1 - t0 == 1) {
			s->dec[n_dec++] = t0;
			continue;
		}
		attend_run(m, kv, li, seq[t0], pos[t0], t1 - t0, s->q + (uint64_t)t0 * q_dim,
			   att + (uint64_t)t0 * q_dim, s->scores, &s->ab);
	}
	if (n_dec)
		attend_decode(m, kv, li, s->dec, n_dec, seq, pos, s->q, att, &s->ab);
}

/*
 * Bring in, for writing, the cache lines the step's keys and values of layer @li go to, so
 * that they arrive while the q/k/v products run: the cache lines were last touched a step
 * ago, the weights have streamed through the caches since, and the stores (one thread's,
 * ~34 lines per sequence and KV head) had stalled on each miss: 4-5% of a 16-sequence
 * step in the daemon (perf), with the other workers waiting. The stores stay on this thread:
 * split over the workers (with RoPE), they took the prefetched lines from this core's cache
 * and the daemon got slower (16 clients, 2 workers: 573/563, 641/617, 588/554 tok/s).
 */
static void kv_prefetch(const struct kv_cache *kv, uint32_t li, const uint32_t *seq,
			const uint32_t *pos, uint32_t n)
{
	size_t row = (size_t)kv->head_dim * kv->elt;

	for (uint32_t t = 0; t < n; t++) {
		for (uint32_t g = 0; g < kv->n_kv_heads; g++) {
			const char *v =
				(const char *)kv_at(kv, kv->v, seq[t], li, g) + pos[t] * row;

			if (kv->kt)
				fwd_prefetch_key(kv_kt_at(kv, seq[t], li, g), pos[t], kv->head_dim,
						 kv->f16);
			else
				fwd_prefetch_span((const char *)kv_at(kv, kv->k, seq[t], li, g) +
							  pos[t] * row,
						  row);
			fwd_prefetch_span(v, row);
		}
	}
}

/* q, k, v projections, RoPE, KV-cache write and causal attention: att[n][q_dim]. */
static void attn_core(const struct model *m, struct kv_cache *kv, uint32_t li, const uint32_t *seq,
		      const uint32_t *pos, uint32_t n, const float *h, float *att,
		      struct scratch *s)
{
	const struct model_config *c = &m->cfg;
	const struct model_layer *l = &m->layers[li];
	uint32_t kvd = kv->kv_dim;

	kv_prefetch(kv, li, seq, pos, n);
	linear_forward_shared((const struct linear *[]){ &l->wq, &l->wk, &l->wv }, 3, h,
			      (float *[]){ s->q, s->k, s->v }, n);
	if (c->arch == ARCH_LLAMA) {
		bool swa = s->rope_cs_swa && model_config_layer_slides(c, li);
		struct rope_ctx rc = {
			.m = m,
			.q = s->q,
			.k = s->k,
			.cs = swa ? s->rope_cs_swa : s->rope_cs,
			.q_norm = l->q_norm,
			.k_norm = l->k_norm,
		};

		par_rows(m, n, rope_part, &rc);
	}
	for (uint32_t t = 0; t < n; t++) {
		const float *kr = s->k + (uint64_t)t * kvd;

		for (uint32_t g = 0; g < c->n_kv_heads; g++) {
			const float *vr = s->v + (uint64_t)t * kvd + g * c->head_dim;
			size_t at = (size_t)pos[t] * c->head_dim * kv->elt;

			if (kv->kt)
				fwd_pack_key(kv_kt_at(kv, seq[t], li, g), kr + g * c->head_dim,
					     pos[t], c->head_dim, kv->f16);
			else
				memcpy((char *)kv_at(kv, kv->k, seq[t], li, g) + at,
				       kr + g * c->head_dim, c->head_dim * sizeof(float));
			fwd_kv_store((char *)kv_at(kv, kv->v, seq[t], li, g) + at, vr, c->head_dim,
				     kv->f16);
		}
	}
	attend_all(m, kv, li, seq, pos, n, att, s);
}

struct gated_ctx {
	float *g;
	const float *u;
	uint32_t dim;
	enum ffn_act act;
};

static void gated_part(void *ctx, uint32_t r0, uint32_t r1)
{
	const struct gated_ctx *c = ctx;
	const struct fwd_ops *ops = fwd_ops();

	(c->act == FFN_ACT_GELU_TANH ? ops->gelu_mul : ops->silu_mul)(c->g + (uint64_t)r0 * c->dim,
								      c->u + (uint64_t)r0 * c->dim,
								      (uint64_t)(r1 - r0) * c->dim);
}

/* Gate/up (OPT: fc1) and the activation: act[n][ffn_dim]; s->ff2 is scratch. */
static void ffn_core(const struct model *m, uint32_t li, uint32_t n, const float *h, float *act,
		     struct scratch *s)
{
	const struct model_layer *l = &m->layers[li];
	uint64_t nf = (uint64_t)n * m->cfg.ffn_dim;

	if (m->cfg.arch == ARCH_OPT) {
		linear_forward(&l->w_up, h, act, n);
		for (uint64_t i = 0; i < nf; i++)
			act[i] = act[i] > 0 ? act[i] : 0;
		return;
	}
	linear_forward_shared((const struct linear *[]){ &l->w_gate, &l->w_up }, 2, h,
			      (float *[]){ act, s->ff2 }, n);
	par_rows(m, n, gated_part,
		 &(struct gated_ctx){
			 .g = act, .u = s->ff2, .dim = m->cfg.ffn_dim, .act = m->cfg.act });
}

static int check_batch(const struct kv_cache *kv, const uint32_t *seq, const uint32_t *pos,
		       uint32_t n, uint64_t *ret_scores)
{
	uint64_t worst = 0;

	for (uint32_t t = 0; t < n; t++) {
		if (seq[t] >= kv->n_seq || pos[t] >= kv->n_ctx)
			return -EINVAL;
	}
	for (uint32_t t0 = 0, t1; t0 < n; t0 = t1) {
		for (t1 = t0 + 1; t1 < n && seq[t1] == seq[t0] && pos[t1] == pos[t1 - 1] + 1; t1++)
			;
		uint32_t rows = t1 - t0 < ATT_BLOCK ? t1 - t0 : ATT_BLOCK;
		uint64_t sz = (uint64_t)rows * (pos[t1 - 1] + 1);

		worst = sz > worst ? sz : worst;
	}
	*ret_scores = worst;
	return 0;
}

static void layer_run(const struct model *m, struct kv_cache *kv, uint32_t li, const uint32_t *seq,
		      const uint32_t *pos, uint32_t n, float *x, struct scratch *s)
{
	const struct model_layer *l = &m->layers[li];
	uint64_t nd = (uint64_t)n * m->cfg.dim;
	bool pre = pre_ln(m);

	if (pre)
		norm_rows(m, s->h, x, l->attn_norm, l->attn_norm_b, n);
	else
		memcpy(s->h, x, nd * sizeof(float));
	attn_core(m, kv, li, seq, pos, n, s->h, s->att, s);
	linear_forward(&l->wo, s->att, s->h, n);
	model_attn_out(m, li, s->h, n);
	add_rows(m, x, s->h, n);
	if (!pre)
		norm_rows(m, x, x, l->attn_norm, l->attn_norm_b, n);
	if (pre)
		norm_rows(m, s->h, x, l->ffn_norm, l->ffn_norm_b, n);
	else
		memcpy(s->h, x, nd * sizeof(float));
	ffn_core(m, li, n, s->h, s->ff1, s);
	linear_forward(&l->w_down, s->ff1, s->h, n);
	model_ffn_out(m, li, s->h, n);
	add_rows(m, x, s->h, n);
	if (!pre)
		norm_rows(m, x, x, l->ffn_norm, l->ffn_norm_b, n);
}

void model_attn_norm(const struct model *m, uint32_t li, const float *x, uint32_t n, float *h)
{
	norm_rows(m, h, x, m->layers[li].attn_norm, m->layers[li].attn_norm_b, n);
}

void model_ffn_norm(const struct model *m, uint32_t li, const float *x, uint32_t n, float *h)
{
	norm_rows(m, h, x, m->layers[li].ffn_norm, m->layers[li].ffn_norm_b, n);
}

void model_attn_out(const struct model *m, uint32_t li, float *y, uint32_t n)
{
	if (m->layers[li].post_attn_norm)
		norm_rows(m, y, y, m->layers[li].post_attn_norm, NULL, n);
}

void model_ffn_out(const struct model *m, uint32_t li, float *y, uint32_t n)
{
	if (m->layers[li].post_ffn_norm)
		norm_rows(m, y, y, m->layers[li].post_ffn_norm, NULL, n);
}

int model_attn_core(const struct model *m, struct kv_cache *kv, uint32_t li, const uint32_t *seq,
		    const uint32_t *pos, uint32_t n, const float *h, float *att)
{
	uint64_t n_scores;
	struct scratch s;
	int r;

	if (li >= m->cfg.n_layers)
		return -EINVAL;
	r = check_batch(kv, seq, pos, n, &n_scores);
	if (r < 0)
		return r;
	r = scratch_alloc(&s, m, kv, pos, n, n_scores);
	if (r < 0)
		return r;
	attn_core(m, kv, li, seq, pos, n, h, att, &s);
	scratch_free(&s);
	return 0;
}

int model_ffn_core(const struct model *m, uint32_t li, uint32_t n, const float *h, float *act)
{
	float *tmp;

	if (li >= m->cfg.n_layers)
		return -EINVAL;
	tmp = malloc((uint64_t)n * m->cfg.ffn_dim * sizeof(float));
	if (!tmp)
		return -ENOMEM;
	ffn_core(m, li, n, h, act, &(struct scratch){ .ff2 = tmp });
	free(tmp);
	return 0;
}

void model_final_norm(const struct model *m, const float *x, uint32_t n, float *hidden)
{
	if (pre_ln(m))
		norm_rows(m, hidden, x, m->out_norm, m->out_norm_b, n);
	else
		memcpy(hidden, x, (uint64_t)n * m->cfg.dim * sizeof(float));
}

int model_forward(const struct model *m, struct kv_cache *kv, const int32_t *tokens,
		  const uint32_t *seq, const uint32_t *pos, uint32_t n, float *hidden)
{
	uint64_t n_scores;
	struct scratch s;
	int r;

	if (!n)
		return 0;
	r = check_batch(kv, seq, pos, n, &n_scores);
	if (r < 0)
		return r;
	r = scratch_alloc(&s, m, kv, pos, n, n_scores);
	if (r < 0)
		return r;
	r = model_embed(m, tokens, pos, n, s.x);
	if (r == 0) {
		for (uint32_t li = 0; li < m->cfg.n_layers; li++)
			layer_run(m, kv, li, seq, pos, n, s.x, &s);
		model_final_norm(m, s.x, n, hidden);
	}
	scratch_free(&s);
	return r;
}

void model_logits(const struct model *m, const float *hidden, uint32_t n, float *logits)
{
	linear_forward(&m->lm_head, hidden, logits, n);
}

int model_forward_seq(const struct model *m, struct kv_cache *kv, uint32_t seq,
		      const int32_t *tokens, uint32_t n, uint32_t pos0, float *last_logits)
{
	uint32_t *sq, *ps;
	float *hidden;
	int r = -ENOMEM;

	if (!n)
		return -EINVAL;
	sq = calloc(n, sizeof(*sq));
	ps = calloc(n, sizeof(*ps));
	hidden = malloc((uint64_t)n * m->cfg.dim * sizeof(float));
	if (!sq || !ps || !hidden)
		goto out;
	for (uint32_t i = 0; i < n; i++) {
		sq[i] = seq;
		ps[i] = pos0 + i;
	}
	r = model_forward(m, kv, tokens, sq, ps, n, hidden);
	if (r == 0 && n)
		model_logits(m, hidden + (uint64_t)(n - 1) * m->cfg.dim, 1, last_logits);
out:
	free(sq);
	free(ps);
	free(hidden);
	return r;
}
