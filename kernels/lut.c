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
	uint32_t n_tab_tasks, n_tile_tasks;
};

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
	p->acc = ALIGN64((size_t)m * LUT_TILE_ROWS * sizeof(float)) * nw;
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

static void tables_task(void *arg, uint32_t task)
{
	struct gemm_job *j = arg;

	for (uint32_t t = task; t < j->m; t += j->n_tab_tasks)
		j->ops->tables(j->w, j->x + (size_t)t * j->w->n_cols,
			       (float *)(j->xs + task * j->xs_bytes),
			       (float *)(j->mx + task * j->mx_bytes), &j->toks[t]);
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
	j.acc_bytes = p.acc / nw;
	j.n_tab_tasks = m < nw ? m : nw;
	j.n_tile_tasks = w->n_tiles < nw ? w->n_tiles : nw;
	run_tasks(r, j.n_tab_tasks, tables_task, &j);
	run_tasks(r, j.n_tile_tasks, tiles_task, &j);
	free(own);
	return 0;
}

int lut_gemv(const struct lut_weight *w, const float *x, float *y, const struct lut_opts *o)
{
	return lut_gemm(w, 1, x, y, o);
}
