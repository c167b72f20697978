// SPDX-License-Identifier: MIT
/*
 * lut_gemm driver: carve the scratch, build each token's tables (tokens spread over the
 * runner's tasks), then split the output tiles over the tasks. No threads of its own.
 */
#include "kernels/internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

struct gemm_job {
	const struct lut_weight *w;
	const struct lut_ops *ops;
	uint32_t m;
	const float *x; /* [m][n_cols] */
	float *y;	/* [m][n_rows] */
	struct lut_tok *toks;
	struct lut_batch *batches;    /* [n_batches]: tokens 16 b .. 16 b + n_tok */
	uint32_t n_batches, m_single; /* then tokens 16 n_batches .. m one by one */
	uint32_t n_bsplit;	      /* a batch's table build split in n_bsplit chunk spans */
	bool batch_major;	      /* each task owns whole batches (tables to outputs) */
	bool batch_dup;		      /* one batch: every task builds it, then its tiles */
	uint32_t tok0;		      /* first token of the tables phase */
	uint32_t nw;
	uint8_t *xs;  /* per task: xs_bytes */
	uint8_t *mx;  /* per task: mx_bytes */
	uint8_t *acc; /* per task: acc_bytes */
	size_t xs_bytes, mx_bytes, acc_bytes;
	uint32_t n_split; /* table spans per token */
	uint32_t n_tab_items, n_tab_tasks, n_tile_tasks;
	uint32_t n_dup; /* one token, every task builds its own tables: that many tasks */
};

/*
 * Tiles are split into up to this many tasks per worker: the pool hands tasks out
 * dynamically, so a worker that the OS descheduled holds back less of the call.
 */
#define TILE_TASKS_PER_WORKER 4

/*
 * One token with tables up to this size: each task builds the whole table itself, then runs
 * its share of the tiles, in one hand-off instead of two (split build, then tiles). Building
 * a table this small twice costs less than the second hand-off (2 threads, 3-bit: gemv
 * 192 x 576 13.4 -> 12.1 us, 576 x 576 23.7 -> 21.0, 1536 x 576 43.6 -> 41.4, 576 x 1536
 * even; 4096 x 4096, 98 KB of tables, slower; SmolLM2 decode +5%).
 */
#define LUT_DUP_TAB_MAX (48u << 10)

/*
 * From this many tokens on, tokens go through the batched lookups (struct lut_batch) in
 * batches of LUT_BATCH; a last batch with fewer tokens than this runs one token at a time.
 */
#define LUT_BATCH_MIN 12

struct scratch_plan {
	size_t toks, tab, cexp, xs, mx, acc, batches, btab, bcexp, total;
};

/* Batches @m tokens take (whether or not the ISA has the batched path). */
static uint32_t n_batches_of(uint32_t m)
{
	return m / LUT_BATCH + (m % LUT_BATCH >= LUT_BATCH_MIN);
}

/* Whether a call runs one token with every task building its own tables (dup_task). */
static bool dup_tables(const struct lut_weight *w, uint32_t m, uint32_t nw)
{
	return m == 1 && nw > 1 && w->tab_bytes <= LUT_DUP_TAB_MAX;
}

/*
 * One batch and several workers: every task builds the whole batch's tables into its own
 * slot, then runs its share of the tiles (dup_batch_task), in one hand-off and with no table
 * read from another core's cache.
 */
static bool dup_batch(uint32_t m, uint32_t nw)
{
	return n_batches_of(m) == 1 && nw > 1;
}

/* Batch slots: one per batch, or one per task for dup_batch_task. */
static uint32_t batch_slots(uint32_t m, uint32_t nw)
{
	return dup_batch(m, nw) ? nw : n_batches_of(m);
}

/* Tokens after the last batch, which run one at a time. */
static uint32_t n_single_of(uint32_t m)
{
	uint32_t b = n_batches_of(m) * LUT_BATCH;

	return m > b ? m - b : 0;
}

/*
 * Per-token table slots: one per token; one per task for dup_task; with dup_batch, every
 * task's own slots for the tokens after the batch (or one per token, for an ISA without
 * the batched path).
 */
static uint32_t tab_slots(const struct lut_weight *w, uint32_t m, uint32_t nw)
{
	if (dup_tables(w, m, nw))
		return nw;
	if (dup_batch(m, nw) && nw * n_single_of(m) > m)
		return nw * n_single_of(m);
	return m;
}

static int plan(const struct lut_weight *w, uint32_t m, uint32_t nw, struct scratch_plan *p)
{
	size_t xs = (size_t)w->n_rowsets * w->bits * w->n_pairs * LUT_PAIR_COLS * sizeof(float);
	uint32_t nb, nt = tab_slots(w, m, nw);

	if (!m || !nw || m > (1u << 20) || nw > 4096)
		return -EINVAL;
	p->toks = ALIGN64((size_t)nt * sizeof(struct lut_tok));
	p->tab = ALIGN64((size_t)nt * w->tab_bytes);
	p->cexp = ALIGN64((size_t)nt * w->n_chunks * sizeof(int32_t));
	nb = batch_slots(m, nw);
	if (nb && xs < LUT_BATCH_XS_FLOATS(w) * sizeof(float))
		xs = LUT_BATCH_XS_FLOATS(w) * sizeof(float);
	p->xs = ALIGN64(xs) * nw;
	p->mx = ALIGN64((size_t)w->n_chunks * sizeof(float)) * nw;
	/* batched tiles: LUT_BATCH_TILES tiles of LUT_BATCH tokens; per-token tiles: m tokens */
	p->acc = ALIGN64((size_t)(m > LUT_BATCH * LUT_BATCH_TILES ? m
								  : LUT_BATCH * LUT_BATCH_TILES) *
			 LUT_TILE_ROWS * sizeof(float)) *
		 nw * (nw > 1 ? TILE_TASKS_PER_WORKER : 1);
	p->batches = ALIGN64((size_t)nb * sizeof(struct lut_batch));
	p->btab = (size_t)nb * (w->tab_bytes / 64) * LUT_BATCH_STEP;
	p->bcexp = ALIGN64((size_t)nb * w->n_chunks * LUT_BATCH * sizeof(int32_t));
	p->total = p->toks + p->tab + p->cexp + p->xs + p->mx + p->acc + p->batches + p->btab +
		   p->bcexp + 64;
	return 0;
}

size_t lut_scratch_bytes(const struct lut_weight *w, uint32_t m, uint32_t n_workers)
{
	struct scratch_plan p;

	if (!w || plan(w, m, n_workers ? n_workers : 1, &p))
		return 0;
	return p.total;
}

/* Chunks [n_chunks * part / n_split, n_chunks * (part + 1) / n_split) of a token's tables. */
static void span_of(const struct lut_weight *w, uint32_t part, uint32_t n_split,
		    struct lut_span *sp)
{
	uint32_t c0 = (uint32_t)((uint64_t)w->n_chunks * part / n_split);
	uint32_t c1 = (uint32_t)((uint64_t)w->n_chunks * (part + 1) / n_split);
	uint32_t p1 = c1 * LUT_CHUNK_PAIRS;

	sp->c0 = c0;
	sp->c1 = c1;
	sp->p0 = c0 * LUT_CHUNK_PAIRS;
	sp->p1 = p1 < w->n_pairs ? p1 : w->n_pairs;
	sp->k0 = sp->p0 * LUT_PAIR_COLS;
	sp->k1 = sp->p1 * LUT_PAIR_COLS < w->n_cols ? sp->p1 * LUT_PAIR_COLS : w->n_cols;
	sp->kend = sp->p1 * LUT_PAIR_COLS;
	sp->cb0 = sp->k0 / w->col_block;
	sp->in_cb0 = sp->k0 % w->col_block;
	sp->tab0 = (uint64_t)sp->p0 * w->bits * 64;
	sp->rowset_tab = (uint64_t)w->n_pairs * w->bits * 64;
}

static void tables_task(void *arg, uint32_t task)
{
	struct gemm_job *j = arg;

	for (uint32_t it = task; it < j->n_tab_items; it += j->n_tab_tasks) {
		uint32_t t = j->tok0 + it / j->n_split;
		struct lut_span sp;

		span_of(j->w, it % j->n_split, j->n_split, &sp);
		j->ops->tables(j->w, j->x + (size_t)t * j->w->n_cols, &sp,
			       (float *)(j->xs + task * j->xs_bytes),
			       (float *)(j->mx + task * j->mx_bytes), &j->toks[t]);
	}
}

static void batch_build_task(void *arg, uint32_t task)
{
	struct gemm_job *j = arg;

	for (uint32_t it = task; it < j->n_batches * j->n_bsplit; it += j->n_tab_tasks) {
		uint32_t b = it / j->n_bsplit;
		struct lut_span sp;

		span_of(j->w, it % j->n_bsplit, j->n_bsplit, &sp);
		j->ops->batch_build(j->w, j->x + (size_t)b * LUT_BATCH * j->w->n_cols, &sp,
				    (float *)(j->xs + task * j->xs_bytes), &j->batches[b]);
	}
}

static void tiles_task(void *arg, uint32_t task)
{
	struct gemm_job *j = arg;
	uint64_t n = (uint64_t)j->w->n_tiles << 1; /* half-tiles */
	uint32_t t0 = (uint32_t)(n * task / j->n_tile_tasks);
	uint32_t t1 = (uint32_t)(n * (task + 1) / j->n_tile_tasks);
	float *acc = (float *)(j->acc + task * j->acc_bytes);
	size_t first = (size_t)j->n_batches * LUT_BATCH;

	if (t1 <= t0)
		return;
	for (uint32_t b = 0; b < (j->batch_major ? 0 : j->n_batches); b++)
		j->ops->batch_tiles(j->w, t0, t1, &j->batches[b],
				    j->y + (size_t)b * LUT_BATCH * j->w->n_rows, acc);
	if (j->m_single)
		j->ops->tiles(j->w, t0, t1, j->m_single, j->toks + first,
			      j->y + first * j->w->n_rows, acc);
}

/* One token: task @task builds the whole table into its own slot, then its tiles' share. */
static void dup_task(void *arg, uint32_t task)
{
	struct gemm_job *j = arg;
	uint64_t n = (uint64_t)j->w->n_tiles << 1; /* half-tiles */
	uint32_t h0 = (uint32_t)(n * task / j->n_dup), h1 = (uint32_t)(n * (task + 1) / j->n_dup);
	struct lut_span sp;

	if (h1 <= h0)
		return;
	span_of(j->w, 0, 1, &sp);
	j->ops->tables(j->w, j->x, &sp, (float *)(j->xs + task * j->xs_bytes),
		       (float *)(j->mx + task * j->mx_bytes), &j->toks[task]);
	j->ops->tiles(j->w, h0, h1, 1, &j->toks[task], j->y,
		      (float *)(j->acc + task * j->acc_bytes));
}

/*
 * With at least as many batches as workers, each task takes whole batches: their token-lane
 * tables and all tiles, so the tables stay in that core's caches.
 */
static void batch_major_task(void *arg, uint32_t task)
{
	struct gemm_job *j = arg;
	const struct lut_weight *w = j->w;
	struct lut_span sp;

	span_of(w, 0, 1, &sp);
	for (uint32_t b = task; b < j->n_batches; b += j->nw) {
		struct lut_batch *bt = &j->batches[b];
		uint32_t t0 = b * LUT_BATCH;

		j->ops->batch_build(w, j->x + (size_t)t0 * w->n_cols, &sp,
				    (float *)(j->xs + task * j->xs_bytes), bt);
		j->ops->batch_tiles(w, 0, w->n_tiles << 1, bt, j->y + (size_t)t0 * w->n_rows,
				    (float *)(j->acc + task * j->acc_bytes));
	}
}

/*
 * The one batch (the first LUT_BATCH tokens) and the tokens after it: task @task builds
 * their tables into its own slots, then runs its share of the tiles for all of them.
 */
static void dup_batch_task(void *arg, uint32_t task)
{
	struct gemm_job *j = arg;
	const struct lut_weight *w = j->w;
	uint64_t n = (uint64_t)w->n_tiles << 1; /* half-tiles */
	uint32_t h0 = (uint32_t)(n * task / j->nw), h1 = (uint32_t)(n * (task + 1) / j->nw);
	struct lut_tok *toks = j->toks + (size_t)task * j->m_single;
	float *xs = (float *)(j->xs + task * j->xs_bytes);
	float *acc = (float *)(j->acc + task * j->acc_bytes);
	struct lut_batch *bt = &j->batches[task];
	struct lut_span sp;

	if (h1 <= h0)
		return;
	span_of(w, 0, 1, &sp);
	j->ops->batch_build(w, j->x, &sp, xs, bt);
	j->ops->batch_tiles(w, h0, h1, bt, j->y, acc);
	if (!j->m_single)
		return;
	for (uint32_t t = 0; t < j->m_single; t++)
		j->ops->tables(w, j->x + (size_t)(LUT_BATCH + t) * w->n_cols, &sp, xs,
			       (float *)(j->mx + task * j->mx_bytes), &toks[t]);
	j->ops->tiles(w, h0, h1, j->m_single, toks, j->y + (size_t)LUT_BATCH * w->n_rows, acc);
}

/*
 * Tokens without a batch and at least as many as the workers: each task takes a run of
 * tokens, builds their tables and runs all tiles for them, so no table crosses cores.
 */
static void tok_major_task(void *arg, uint32_t task)
{
	struct gemm_job *j = arg;
	const struct lut_weight *w = j->w;
	uint32_t t0 = j->m * task / j->nw, t1 = j->m * (task + 1) / j->nw;
	struct lut_span sp;

	if (t1 <= t0)
		return;
	span_of(w, 0, 1, &sp);
	for (uint32_t t = t0; t < t1; t++)
		j->ops->tables(w, j->x + (size_t)t * w->n_cols, &sp,
			       (float *)(j->xs + task * j->xs_bytes),
			       (float *)(j->mx + task * j->mx_bytes), &j->toks[t]);
	j->ops->tiles(w, 0, w->n_tiles << 1, t1 - t0, j->toks + t0, j->y + (size_t)t0 * w->n_rows,
		      (float *)(j->acc + task * j->acc_bytes));
}

/* Carve the batches (@n_slots of them) out of the scratch at @base. */
static void setup_batches(struct gemm_job *j, uint8_t *base, const struct scratch_plan *p,
			  uint32_t n_slots)
{
	const struct lut_weight *w = j->w;
	uint8_t *btab = base + p->batches;
	int32_t *bcexp = (int32_t *)(btab + p->btab);

	j->batches = (struct lut_batch *)base;
	for (uint32_t b = 0; b < n_slots; b++) {
		struct lut_batch *bt = &j->batches[b];
		uint32_t left = j->m - (j->batch_dup ? 0 : b) * LUT_BATCH;

		bt->n_tok = left < LUT_BATCH ? left : LUT_BATCH;
		bt->tab = btab + (size_t)b * (w->tab_bytes / 64) * LUT_BATCH_STEP; /* per step */
		bt->cexp = bcexp + (size_t)b * w->n_chunks * LUT_BATCH;
	}
}

static void run_tasks(const struct lut_runner *r, uint32_t n, lut_task_fn fn, void *arg)
{
	if (r && r->run && n > 1) {
		r->run(r->ctx, n, fn, arg);
		return;
	}
	for (uint32_t i = 0; i < n; i++)
		fn(arg, i);
}

/*
 * The 64-byte aligned start of a call's @total bytes of scratch: the caller's (@o->scratch,
 * at least @total) or a new allocation left in *@own for the caller to free. NULL with
 * *@err set (-EINVAL: too small, -ENOMEM).
 */
static uint8_t *take_scratch(const struct lut_opts *o, size_t total, uint8_t **own, int *err)
{
	uint8_t *mem;

	*own = NULL;
	if (o && o->scratch) {
		if (o->scratch_bytes < total) {
			*err = -EINVAL;
			return NULL;
		}
		mem = o->scratch;
	} else {
		mem = *own = malloc(total);
		if (!mem) {
			*err = -ENOMEM;
			return NULL;
		}
	}
	return (uint8_t *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
}

int lut_gemm(const struct lut_weight *w, uint32_t m, const float *x, float *y,
	     const struct lut_opts *o)
{
	const struct lut_runner *r = o ? o->runner : NULL;
	enum lut_isa isa = o ? o->isa : LUT_ISA_AUTO;
	uint32_t nw = r && r->run && r->n_workers ? r->n_workers : 1;
	struct gemm_job j = { .w = w, .m = m, .x = x, .y = y };
	struct scratch_plan p;
	uint32_t n_slots;
	uint8_t *base, *own;
	int ret;

	if (!w || !w->planes || !x || !y)
		return -EINVAL;
	ret = plan(w, m, nw, &p);
	if (ret < 0)
		return ret;
	n_slots = tab_slots(w, m, nw);
	if (isa == LUT_ISA_AUTO)
		isa = lut_isa_auto();
	if (!lut_isa_supported(isa))
		return -EOPNOTSUPP;
	j.ops = lut_ops_of(isa);
	base = take_scratch(o, p.total, &own, &ret);
	if (!base)
		return ret;
	j.toks = (struct lut_tok *)base;
	base += p.toks;
	for (uint32_t t = 0; t < n_slots; t++) {
		j.toks[t].tab = base + (size_t)t * w->tab_bytes;
		j.toks[t].cexp = (int32_t *)(base + p.tab) + (size_t)t * w->n_chunks;
	}
	base += p.tab + p.cexp;
	j.xs = base;
	j.xs_bytes = p.xs / nw;
	base += p.xs;
	j.mx = base;
	j.mx_bytes = p.mx / nw;
	base += p.mx;
	j.acc = base;
	base += p.acc;
	j.n_tile_tasks = nw > 1 ? nw * TILE_TASKS_PER_WORKER : 1;
	j.acc_bytes = p.acc / j.n_tile_tasks;
	if (j.n_tile_tasks > w->n_tiles << 1)
		j.n_tile_tasks = w->n_tiles << 1;
	j.nw = nw;
	if (dup_tables(w, m, nw)) {
		j.n_dup = nw < w->n_tiles << 1 ? nw : w->n_tiles << 1;
		run_tasks(r, j.n_dup, dup_task, &j);
		goto out;
	}
	j.n_batches = j.ops->batch_tiles ? n_batches_of(m) : 0;
	j.m_single = m - (j.n_batches * LUT_BATCH < m ? j.n_batches * LUT_BATCH : m);
	j.tok0 = m - j.m_single;
	j.batch_dup = j.n_batches && dup_batch(m, nw);
	if (j.n_batches)
		setup_batches(&j, base, &p, j.batch_dup ? nw : j.n_batches);
	j.batch_major = j.n_batches && j.n_batches >= nw;
	if (j.batch_major) {
		run_tasks(r, j.n_batches < nw ? j.n_batches : nw, batch_major_task, &j);
	} else if (j.batch_dup) {
		run_tasks(r, nw, dup_batch_task, &j);
		goto out;
	} else if (j.n_batches) {
		/* fewer batches than workers: split each batch's table build over chunks */
		j.n_bsplit = nw > j.n_batches ? (nw + j.n_batches - 1) / j.n_batches : 1;
		if (j.n_bsplit > w->n_chunks)
			j.n_bsplit = w->n_chunks;
		j.n_tab_tasks = j.n_batches * j.n_bsplit < nw ? j.n_batches * j.n_bsplit : nw;
		run_tasks(r, j.n_tab_tasks, batch_build_task, &j);
		/* one tile range per worker: each range streams all token-lane tables once per
		 * LUT_BATCH_TILES tiles, so more, smaller ranges would cost more table traffic */
		if (j.n_tile_tasks > nw)
			j.n_tile_tasks = nw;
	}
	if (!j.n_batches && nw > 1 && m >= nw) {
		run_tasks(r, nw, tok_major_task, &j);
		goto out;
	}
	if (j.m_single) {
		/* fewer tokens than workers: split each token's tables over chunks too */
		j.n_split = j.m_single < nw ? (nw + j.m_single - 1) / j.m_single : 1;
		if (j.n_split > w->n_chunks)
			j.n_split = w->n_chunks;
		j.n_tab_items = j.m_single * j.n_split;
		j.n_tab_tasks = j.n_tab_items < nw ? j.n_tab_items : nw;
		run_tasks(r, j.n_tab_tasks, tables_task, &j);
	}
	if (!j.batch_major || j.m_single)
		run_tasks(r, j.n_tile_tasks, tiles_task, &j);
out:
	free(own);
	return 0;
}

int lut_gemv(const struct lut_weight *w, const float *x, float *y, const struct lut_opts *o)
{
	return lut_gemm(w, 1, x, y, o);
}

/* The 64-byte aligned slices of a lut_gemm_multi scratch: weight i's at off[i]. */
static size_t multi_offsets(const struct lut_weight *const *ws, uint32_t n, uint32_t m,
			    size_t off[LUT_MULTI_MAX + 1])
{
	off[0] = 0;
	for (uint32_t i = 0; i < n; i++) {
		size_t b = ws[i] ? lut_scratch_bytes(ws[i], m, 1) : 0;

		if (!b)
			return 0;
		off[i + 1] = off[i] + ALIGN64(b);
	}
	return off[n] + 64;
}

size_t lut_scratch_bytes_multi(const struct lut_weight *const *ws, uint32_t n, uint32_t m)
{
	size_t off[LUT_MULTI_MAX + 1];

	if (!ws || !n || n > LUT_MULTI_MAX)
		return 0;
	return multi_offsets(ws, n, m, off);
}

struct multi_job {
	const struct lut_weight *const *ws;
	uint32_t m;
	const float *x;
	float *const *ys;
	enum lut_isa isa;
	uint8_t *base;
	size_t off[LUT_MULTI_MAX + 1];
	int ret[LUT_MULTI_MAX];
};

static void multi_task(void *arg, uint32_t task)
{
	struct multi_job *j = arg;
	struct lut_opts o = { .isa = j->isa,
			      .scratch = j->base + j->off[task],
			      .scratch_bytes = j->off[task + 1] - j->off[task] };

	j->ret[task] = lut_gemm(j->ws[task], j->m, j->x, j->ys[task], &o);
}

int lut_gemm_multi(const struct lut_weight *const *ws, uint32_t n, uint32_t m, const float *x,
		   float *const *ys, const struct lut_opts *o)
{
	struct multi_job j = { .ws = ws, .m = m, .x = x, .ys = ys };
	size_t total;
	uint8_t *own;
	int ret = -EINVAL;

	if (!ws || !ys || !n || n > LUT_MULTI_MAX)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (!ws[i] || ws[i]->n_cols != ws[0]->n_cols)
			return -EINVAL;
	total = multi_offsets(ws, n, m, j.off);
	if (!total)
		return -EINVAL;
	j.base = take_scratch(o, total, &own, &ret);
	if (!j.base)
		return ret;
	j.isa = o ? o->isa : LUT_ISA_AUTO;
	run_tasks(o ? o->runner : NULL, n, multi_task, &j);
	free(own);
	for (uint32_t i = 0; i < n; i++)
		if (j.ret[i] < 0)
			return j.ret[i];
	return 0;
}
