// SPDX-License-Identifier: MIT
/*
 * lut_gemm driver: carve the scratch, build each token's tables (tokens spread over the
 * runner's tasks), then split the output tiles over the tasks. No threads of its own.
 */
#include "kernels/internal.h"

#include <errno.h>
#include <stdlib.h>

#define ALIGN64(n) (((n) + 63) & ~(size_t)63)

struct gemm_job {
	const struct lut_weight *w;
	const struct lut_ops *ops;
	uint32_t m;
	const float *x; /* [m][n_cols] */
	float *y;	/* [m][n_rows] */
	struct lut_tok *toks;
	uint8_t *xs;  /* per task: xs_bytes */
	uint8_t *mx;  /* per task: mx_bytes */
	uint8_t *acc; /* per task: acc_bytes */
	size_t xs_bytes, mx_bytes, acc_bytes;
	uint32_t n_split; /* table spans per token */
	uint32_t n_tab_items, n_tab_tasks, n_tile_tasks;
};

/*
 * Tiles are split into up to this many tasks per worker: the pool hands tasks out
 * dynamically, so a worker that the OS descheduled holds back less of the call.
 */
#define TILE_TASKS_PER_WORKER 4

struct scratch_plan {
	size_t toks, tab, cexp, xs, mx, acc, total;
};

static int plan(const struct lut_weight *w, uint32_t m, uint32_t nw, struct scratch_plan *p)
{
	size_t xs = (size_t)w->n_rowsets * w->bits * w->n_pairs * LUT_PAIR_COLS * sizeof(float);

	if (!m || !nw || m > (1u << 20) || nw > 4096)
		return -EINVAL;
	p->toks = ALIGN64((size_t)m * sizeof(struct lut_tok));
	p->tab = ALIGN64((size_t)m * w->tab_bytes);
	p->cexp = ALIGN64((size_t)m * w->n_chunks * sizeof(int32_t));
	p->xs = ALIGN64(xs) * nw;
	p->mx = ALIGN64((size_t)w->n_chunks * sizeof(float)) * nw;
	p->acc = ALIGN64((size_t)m * LUT_TILE_ROWS * sizeof(float)) * nw *
		 (nw > 1 ? TILE_TASKS_PER_WORKER : 1);
	p->total = p->toks + p->tab + p->cexp + p->xs + p->mx + p->acc + 64;
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
		uint32_t t = it / j->n_split;
		struct lut_span sp;

		span_of(j->w, it % j->n_split, j->n_split, &sp);
		j->ops->tables(j->w, j->x + (size_t)t * j->w->n_cols, &sp,
			       (float *)(j->xs + task * j->xs_bytes),
			       (float *)(j->mx + task * j->mx_bytes), &j->toks[t]);
	}
}

static void tiles_task(void *arg, uint32_t task)
{
	struct gemm_job *j = arg;
	uint64_t n = j->w->n_tiles;
	uint32_t t0 = (uint32_t)(n * task / j->n_tile_tasks);
	uint32_t t1 = (uint32_t)(n * (task + 1) / j->n_tile_tasks);

	if (t1 > t0)
		j->ops->tiles(j->w, t0, t1, j->m, j->toks, j->y,
			      (float *)(j->acc + task * j->acc_bytes));
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

int lut_gemm(const struct lut_weight *w, uint32_t m, const float *x, float *y,
	     const struct lut_opts *o)
{
	const struct lut_runner *r = o ? o->runner : NULL;
	enum lut_isa isa = o ? o->isa : LUT_ISA_AUTO;
	uint32_t nw = r && r->run && r->n_workers ? r->n_workers : 1;
	struct gemm_job j = { .w = w, .m = m, .x = x, .y = y };
	struct scratch_plan p;
	uint8_t *mem, *base, *own = NULL;
	int ret;

	if (!w || !w->planes || !x || !y)
		return -EINVAL;
	ret = plan(w, m, nw, &p);
	if (ret < 0)
		return ret;
	if (isa == LUT_ISA_AUTO)
		isa = lut_isa_auto();
	if (!lut_isa_supported(isa))
		return -EOPNOTSUPP;
	j.ops = lut_ops_of(isa);
	if (o && o->scratch) {
		if (o->scratch_bytes < p.total)
			return -EINVAL;
		mem = o->scratch;
	} else {
		own = malloc(p.total);
		if (!own)
			return -ENOMEM;
		mem = own;
	}
	base = (uint8_t *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
	j.toks = (struct lut_tok *)base;
	base += p.toks;
	for (uint32_t t = 0; t < m; t++)
		j.toks[t].tab = base + (size_t)t * w->tab_bytes;
	base += p.tab;
	for (uint32_t t = 0; t < m; t++)
		j.toks[t].cexp = (int32_t *)base + (size_t)t * w->n_chunks;
	base += p.cexp;
	j.xs = base;
	j.xs_bytes = p.xs / nw;
	base += p.xs;
	j.mx = base;
	j.mx_bytes = p.mx / nw;
	base += p.mx;
	j.acc = base;
	j.n_tile_tasks = nw > 1 ? nw * TILE_TASKS_PER_WORKER : 1;
	j.acc_bytes = p.acc / j.n_tile_tasks;
	if (j.n_tile_tasks > w->n_tiles)
		j.n_tile_tasks = w->n_tiles;
	/* fewer tokens than workers: split each token's tables over chunks too */
	j.n_split = m < nw ? (nw + m - 1) / m : 1;
	if (j.n_split > w->n_chunks)
		j.n_split = w->n_chunks;
	j.n_tab_items = m * j.n_split;
	j.n_tab_tasks = j.n_tab_items < nw ? j.n_tab_items : nw;
	run_tasks(r, j.n_tab_tasks, tables_task, &j);
	run_tasks(r, j.n_tile_tasks, tiles_task, &j);
	free(own);
	return 0;
}

int lut_gemv(const struct lut_weight *w, const float *x, float *y, const struct lut_opts *o)
{
	return lut_gemm(w, 1, x, y, o);
}
