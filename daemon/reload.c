// SPDX-License-Identifier: MIT
/*
 * Model generations: hot model reload and live worker changes without dropping a client.
 *
 * The current generation (struct daemon's bops, be, binfo, sched, pool, placement) takes every
 * new request. A swap opens a second backend instance (new model path and/or new workers), gives
 * every connected client a second scheduler handle on it, and keeps the previous generation as
 * d->old: its requests run to the end on their own backend and scheduler, stepped by the same
 * loop thread, then it is freed. Both generations emit through the same client rings, and a
 * client's request ids stay unique across the two. Only one generation retires at a time.
 *
 * Opening the new backend runs on the loop thread, so streams pause while a model loads (the
 * backend may use the worker pool while opening; the pool is not re-entrant).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/internal.h"

void reload_sched_limits(const struct config *cfg, struct sched_limits *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->max_inflight = cfg->max_inflight;
	ret->max_prompt_tokens = cfg->max_prompt_tokens;
	ret->max_new_tokens = cfg->max_new_tokens;
	ret->max_client_tokens = cfg->max_client_tokens;
	ret->max_stop_strings = cfg->max_stop_strings;
	ret->max_stop_bytes = cfg->max_stop_bytes;
	ret->max_batch_tokens = cfg->max_batch_tokens;
	ret->prefill_chunk = cfg->prefill_chunk;
	ret->prompt_cache = cfg->prompt_cache != 0;
}

void reload_backend_config(const struct config *cfg, const char *model, struct worker_pool *pool,
			   const struct placement *pl, struct backend_config *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->model_path = model[0] ? model : NULL;
	ret->n_slots = cfg->n_slots;
	ret->n_ctx = cfg->n_ctx;
	ret->max_batch_tokens = cfg->max_batch_tokens;
	ret->pool = pool;
	ret->placement = pl;
	ret->step_delay_us = cfg->step_delay_us;
	ret->kv_f16 = !strcmp(cfg->kv_type, "f16");
	ret->kv_commit = cfg->kv_commit != 0;
}

int reload_plan_workers(const struct config *cfg, const char *spec, uint32_t max_workers,
			struct placement *ret_pl, struct worker_pool **ret_pool)
{
	static int cpus[4096];
	struct placement_req req = { 0 };
	struct topo *t = NULL;
	struct errbuf e = { { 0 } };
	uint32_t pin_failures = 0;
	int ret, n;

	ret = topo_load(NULL, &t, &e);
	if (ret < 0)
		return log_errno(ret, "cannot read topology: %s", errbuf_str(&e, ret));
	if (strcmp(spec, "auto")) {
		n = config_parse_cpu_list(spec, cpus, 4096);
		if (n < 0) {
			topo_free(t);
			return log_errno(-EINVAL, "bad workers list '%s'", spec);
		}
		req.cpus = cpus;
		req.n_cpus = (uint32_t)n;
	}
	req.max_workers = max_workers;
	req.policy = (enum numa_policy)numa_policy_parse(cfg->numa_policy);
	req.mem_fraction_pct = cfg->numa_mem_pct;
	req.weights_bytes = 0; /* the backend sizes its weights */
	ret = placement_plan(t, &req, ret_pl);
	topo_free(t);
	if (ret < 0)
		return log_errno(ret, "cannot place workers (workers='%s')", spec);
	ret = worker_pool_new(ret_pl->worker_cpu, ret_pl->n_workers, ret_pool, &pin_failures);
	if (ret < 0) {
		placement_done(ret_pl);
		return log_errno(ret, "cannot start workers");
	}
	log_info("workers started n=%u nodes=%u weights=%s pin_failures=%u", ret_pl->n_workers,
		 ret_pl->n_nodes, numa_policy_name(ret_pl->weights), pin_failures);
	return 0;
}

const struct placement *reload_placement(const struct daemon *d)
{
	return d->pl ? d->pl : &d->placement;
}

static void placement_release(struct placement *pl, bool owned)
{
	if (pl && owned) {
		placement_done(pl);
		free(pl);
	}
}

/* Free a retired generation: its scheduler, backend, and the pool and placement it owns. */
static void gen_free(struct gen *g)
{
	if (!g)
		return;
	sched_free(g->sched);
	g->bops->close(g->be);
	if (g->pool_owned)
		worker_pool_free(g->pool);
	placement_release(g->pl, g->pl_owned);
	free(g);
}

int reload_swap(struct daemon *d, const char *model, const char *workers, uint32_t max_workers,
		struct errbuf *e)
{
	struct backend_config bc = { 0 };
	struct sched_limits lim;
	struct placement *pl = NULL;
	struct worker_pool *pool = d->pool;
	struct backend *be = NULL;
	struct sched *s = NULL;
	struct gen *old;
	struct client *c;
	char path[CONFIG_PATH_MAX];
	int ret;

	if (d->old)
		return errbuf_set(e, -EBUSY,
				  "the previous generation is still finishing %u requests",
				  reload_old_live(d));
	if (d->draining)
		return errbuf_set(e, -ESHUTDOWN, "the daemon is shutting down");
	if (model && strlen(model) >= sizeof(path))
		return errbuf_set(e, -ENAMETOOLONG, "model path too long");
	snprintf(path, sizeof(path), "%s", model ? model : d->cfg.model);
	old = calloc(1, sizeof(*old));
	if (!old)
		return -ENOMEM;
	if (workers) {
		pl = calloc(1, sizeof(*pl));
		if (!pl) {
			ret = -ENOMEM;
			goto out_free_old;
		}
		ret = reload_plan_workers(&d->cfg, workers, max_workers, pl, &pool);
		if (ret < 0) {
			free(pl);
			pl = NULL;
			errbuf_set(e, ret, "cannot start workers '%s'", workers);
			goto out_free_old;
		}
	}
	reload_backend_config(&d->cfg, path, pool, pl ? pl : reload_placement(d), &bc);
	ret = d->bops->open(&bc, &be, e);
	if (ret < 0) {
		if (!e->msg[0])
			errbuf_set(e, ret, "cannot open model '%s'", path);
		goto out_workers;
	}
	reload_sched_limits(&d->cfg, &lim);
	ret = sched_new(d->bops, be, &lim, &s);
	if (ret < 0)
		goto out_backend;
	/* Register every client with the new scheduler before anything is switched over. */
	LIST_FOREACH(c, &d->clients, link)
	{
		if (c->state != CLIENT_READY)
			continue;
		ret = sched_client_add(s, c, shm_client_emit, c->cred.uid, &c->sc_old);
		if (ret < 0)
			goto out_unregister;
	}

	/* Commit: the current generation becomes the retiring one. */
	old->bops = d->bops;
	old->be = d->be;
	old->sched = d->sched;
	old->pool = d->pool;
	old->pool_owned = pool != d->pool;
	old->pl = d->pl ? d->pl : &d->placement;
	old->pl_owned = pl && d->pl_owned;
	LIST_FOREACH(c, &d->clients, link)
	{
		struct sched_client *sc_new = c->sc_old;

		if (c->state != CLIENT_READY)
			continue;
		c->sc_old = c->sc;
		c->sc = sc_new;
	}
	sched_drain(old->sched);
	d->old = old;
	d->be = be;
	d->sched = s;
	d->pool = pool;
	if (pl) {
		d->pl = pl;
		d->pl_owned = true;
	}
	d->bops->info(d->be, &d->binfo);
	snprintf(d->cfg.model, sizeof(d->cfg.model), "%s", path);
	if (workers) {
		snprintf(d->cfg.workers, sizeof(d->cfg.workers), "%s", workers);
		d->cfg.max_workers = max_workers;
	}
	if (d->admin_draining)
		sched_drain(d->sched);
	d->generation++;
	log_info("generation started generation=%llu model=\"%s\" name=\"%s\" workers=%u "
		 "retiring_requests=%u",
		 (unsigned long long)d->generation, path, d->binfo.model_name,
		 reload_placement(d)->n_workers, sched_n_live(old->sched));
	return 0;

out_unregister:
	LIST_FOREACH(c, &d->clients, link)
	{
		if (c->state == CLIENT_READY && c->sc_old) {
			sched_client_remove(s, c->sc_old);
			c->sc_old = NULL;
		}
	}
	sched_free(s);
out_backend:
	d->bops->close(be);
out_workers:
	if (pool != d->pool)
		worker_pool_free(pool);
	placement_release(pl, true);
out_free_old:
	free(old);
	return ret;
}

static void retire(struct daemon *d)
{
	struct gen *old = d->old;
	struct sched_stats st;
	struct client *c;

	LIST_FOREACH(c, &d->clients, link)
	{
		struct sched_client_stats cs;

		if (!c->sc_old)
			continue;
		sched_client_stats(c->sc_old, &cs);
		c->tokens_base += cs.tokens_generated;
		c->requests_base += cs.requests_done;
		sched_client_remove(old->sched, c->sc_old);
		c->sc_old = NULL;
	}
	sched_stats(old->sched, &st);
	d->st_base.steps += st.steps;
	d->st_base.tokens_prefilled += st.tokens_prefilled;
	d->st_base.tokens_cached += st.tokens_cached;
	d->st_base.tokens_generated += st.tokens_generated;
	d->st_base.requests_done += st.requests_done;
	gen_free(old);
	d->old = NULL;
	log_info("generation retired generation=%llu", (unsigned long long)d->generation - 1);
}

int reload_step(struct daemon *d)
{
	int ret = 0;

	if (!d->old)
		return 0;
	if (sched_has_work(d->old->sched))
		ret = sched_step(d->old->sched);
	if (sched_n_live(d->old->sched) == 0)
		retire(d);
	return ret;
}

bool reload_has_work(const struct daemon *d)
{
	/* A generation with nothing live is retired by the next reload_step(). */
	return d->old && (sched_has_work(d->old->sched) || sched_n_live(d->old->sched) == 0);
}

uint32_t reload_old_live(const struct daemon *d)
{
	return d->old ? sched_n_live(d->old->sched) : 0;
}

uint32_t reload_n_live(const struct daemon *d)
{
	return sched_n_live(d->sched) + reload_old_live(d);
}

void reload_cancel_all(struct daemon *d)
{
	sched_cancel_all(d->sched);
	if (d->old)
		sched_cancel_all(d->old->sched);
}

void reload_drain(struct daemon *d)
{
	sched_drain(d->sched);
	if (d->old)
		sched_drain(d->old->sched);
}

void reload_stats(const struct daemon *d, struct sched_stats *ret)
{
	struct sched_stats st;

	sched_stats(d->sched, ret);
	ret->steps += d->st_base.steps;
	ret->tokens_prefilled += d->st_base.tokens_prefilled;
	ret->tokens_cached += d->st_base.tokens_cached;
	ret->tokens_generated += d->st_base.tokens_generated;
	ret->requests_done += d->st_base.requests_done;
	if (!d->old)
		return;
	sched_stats(d->old->sched, &st);
	ret->steps += st.steps;
	ret->tokens_prefilled += st.tokens_prefilled;
	ret->tokens_cached += st.tokens_cached;
	ret->tokens_generated += st.tokens_generated;
	ret->requests_done += st.requests_done;
	ret->n_active += st.n_active;
	ret->n_waiting += st.n_waiting;
	ret->kv_tokens += st.kv_tokens;
}

void reload_done(struct daemon *d)
{
	gen_free(d->old);
	d->old = NULL;
	placement_release(d->pl, d->pl_owned);
	d->pl = NULL;
	d->pl_owned = false;
}
