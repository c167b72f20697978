// SPDX-License-Identifier: MIT
#include "daemon/numa.h"

#include <errno.h>
#include <hwloc.h>
#include <numa.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Fill t->cores / pus / nodes from a loaded hwloc topology. */
static int topo_fill(hwloc_topology_t h, struct topo *t)
{
	int n_cores = hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_CORE);
	int n_pus = hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_PU);
	int n_nodes = hwloc_get_nbobjs_by_type(h, HWLOC_OBJ_NUMANODE);

	if (n_cores <= 0 || n_pus <= 0)
		return -EINVAL;
	t->cores = calloc((size_t)n_cores, sizeof(*t->cores));
	t->pu_cpu = calloc((size_t)n_pus, sizeof(*t->pu_cpu));
	t->pu_core = calloc((size_t)n_pus, sizeof(*t->pu_core));
	t->node_ids = calloc((size_t)(n_nodes > 0 ? n_nodes : 1), sizeof(*t->node_ids));
	t->node_bytes = calloc((size_t)(n_nodes > 0 ? n_nodes : 1), sizeof(*t->node_bytes));
	if (!t->cores || !t->pu_cpu || !t->pu_core || !t->node_ids || !t->node_bytes)
		return -ENOMEM;
	for (int i = 0; i < n_nodes; i++) {
		hwloc_obj_t o = hwloc_get_obj_by_type(h, HWLOC_OBJ_NUMANODE, (unsigned)i);

		t->node_ids[i] = (int)o->os_index;
		t->node_bytes[i] = o->attr ? o->attr->numanode.local_memory : 0;
	}
	t->n_nodes = (uint32_t)(n_nodes > 0 ? n_nodes : 0);
	/* hwloc lists NUMA nodes by logical index, which follows os_index in practice; sort anyway. */
	for (uint32_t i = 1; i < t->n_nodes; i++)
		for (uint32_t j = i; j > 0 && t->node_ids[j - 1] > t->node_ids[j]; j--) {
			int id = t->node_ids[j];
			uint64_t by = t->node_bytes[j];

			t->node_ids[j] = t->node_ids[j - 1];
			t->node_bytes[j] = t->node_bytes[j - 1];
			t->node_ids[j - 1] = id;
			t->node_bytes[j - 1] = by;
		}
	for (int i = 0; i < n_cores; i++) {
		hwloc_obj_t core = hwloc_get_obj_by_type(h, HWLOC_OBJ_CORE, (unsigned)i);
		hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(h, HWLOC_OBJ_PACKAGE, core);
		hwloc_obj_t node = NULL;
		int first = hwloc_bitmap_first(core->cpuset);

		if (core->nodeset && !hwloc_bitmap_iszero(core->nodeset))
			node = hwloc_get_numanode_obj_by_os_index(
				h, (unsigned)hwloc_bitmap_first(core->nodeset));
		t->cores[i].cpu = first;
		t->cores[i].node = node ? (int)node->os_index : -1;
		t->cores[i].package = pkg ? (int)pkg->logical_index : -1;
	}
	t->n_cores = (uint32_t)n_cores;
	for (int i = 0; i < n_pus; i++) {
		hwloc_obj_t pu = hwloc_get_obj_by_type(h, HWLOC_OBJ_PU, (unsigned)i);
		hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(h, HWLOC_OBJ_CORE, pu);

		t->pu_cpu[i] = (int)pu->os_index;
		t->pu_core[i] = core ? (int)core->logical_index : -1;
	}
	t->n_pus = (uint32_t)n_pus;
	return 0;
}

int topo_load(const char *synthetic, struct topo **ret, struct errbuf *e)
{
	hwloc_topology_t h;
	struct topo *t;
	int ret_code;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	if (hwloc_topology_init(&h) < 0) {
		free(t);
		return -ENOMEM;
	}
	if (synthetic && hwloc_topology_set_synthetic(h, synthetic) < 0) {
		ret_code = errbuf_set(e, -EINVAL, "invalid synthetic topology '%s'", synthetic);
		goto out_destroy;
	}
	if (hwloc_topology_load(h) < 0) {
		ret_code = errbuf_set(e, -EINVAL, "cannot load topology");
		goto out_destroy;
	}
	ret_code = topo_fill(h, t);
	if (ret_code < 0)
		goto out_destroy;
	hwloc_topology_destroy(h);
	*ret = t;
	return 0;

out_destroy:
	hwloc_topology_destroy(h);
	topo_free(t);
	return ret_code;
}

void topo_free(struct topo *t)
{
	if (!t)
		return;
	free(t->cores);
	free(t->pu_cpu);
	free(t->pu_core);
	free(t->node_ids);
	free(t->node_bytes);
	free(t);
}

static const char *const policy_names[NUMA_POLICY_COUNT] = {
	[NUMA_POLICY_AUTO] = "auto",
	[NUMA_POLICY_REPLICATE] = "replicate",
	[NUMA_POLICY_INTERLEAVE] = "interleave",
	[NUMA_POLICY_LOCAL] = "local",
};

int numa_policy_parse(const char *s)
{
	for (int i = 0; i < NUMA_POLICY_COUNT; i++)
		if (!strcmp(s, policy_names[i]))
			return i;
	return -EINVAL;
}

const char *numa_policy_name(enum numa_policy p)
{
	return (unsigned)p < NUMA_POLICY_COUNT ? policy_names[p] : "?";
}

static int node_index(const struct topo *t, int node)
{
	for (uint32_t i = 0; i < t->n_nodes; i++)
		if (t->node_ids[i] == node)
			return (int)i;
	return -1;
}

static int add_worker(struct placement *p, int cpu, int node)
{
	p->worker_cpu[p->n_workers] = cpu;
	p->worker_node[p->n_workers] = node;
	p->n_workers++;
	return 0;
}

int placement_plan(const struct topo *t, const struct placement_req *req, struct placement *ret)
{
	struct placement p = { 0 };
	uint32_t cap, n_want;
	bool fits = true;
	int ret_code = -ENOMEM;

	if (t->n_cores == 0)
		return -EINVAL;
	n_want = req->cpus ? req->n_cpus : t->n_cores;
	cap = req->max_workers && req->max_workers < n_want ? req->max_workers : n_want;
	if (cap == 0)
		return -EINVAL;
	p.worker_cpu = calloc(cap, sizeof(int));
	p.worker_node = calloc(cap, sizeof(int));
	p.nodes = calloc(t->n_nodes ? t->n_nodes : 1, sizeof(int));
	if (!p.worker_cpu || !p.worker_node || !p.nodes)
		goto out_free;
	if (req->cpus) {
		for (uint32_t i = 0; i < cap; i++) {
			int core = -1;

			for (uint32_t k = 0; k < t->n_pus; k++)
				if (t->pu_cpu[k] == req->cpus[i])
					core = t->pu_core[k];
			if (core < 0 || (uint32_t)core >= t->n_cores) {
				ret_code = -EINVAL;
				goto out_free;
			}
			add_worker(&p, req->cpus[i], t->cores[core].node);
		}
	} else {
		/* Round-robin over nodes, cores in order within each: a cap stays balanced. */
		uint32_t n_groups = t->n_nodes ? t->n_nodes : 1;
		uint32_t *next = calloc(n_groups, sizeof(*next));

		if (!next)
			goto out_free;
		while (p.n_workers < cap) {
			bool any = false;

			for (uint32_t g = 0; g < n_groups && p.n_workers < cap; g++) {
				for (; next[g] < t->n_cores; next[g]++) {
					const struct topo_core *c = &t->cores[next[g]];
					int gi = node_index(t, c->node);

					if ((t->n_nodes && gi != (int)g) || (!t->n_nodes && g))
						continue;
					add_worker(&p, c->cpu, c->node);
					next[g]++;
					any = true;
					break;
				}
			}
			if (!any)
				break;
		}
		free(next);
		/* Group by node for readability: stable sort on node index. */
		for (uint32_t i = 1; i < p.n_workers; i++)
			for (uint32_t j = i; j > 0 && p.worker_node[j - 1] > p.worker_node[j];
			     j--) {
				int c = p.worker_cpu[j], nd = p.worker_node[j];

				p.worker_cpu[j] = p.worker_cpu[j - 1];
				p.worker_node[j] = p.worker_node[j - 1];
				p.worker_cpu[j - 1] = c;
				p.worker_node[j - 1] = nd;
			}
	}
	/* Nodes in use, ascending (node_ids is sorted). */
	for (uint32_t i = 0; i < t->n_nodes; i++) {
		for (uint32_t w = 0; w < p.n_workers; w++) {
			if (p.worker_node[w] == t->node_ids[i]) {
				p.nodes[p.n_nodes++] = t->node_ids[i];
				if (req->weights_bytes * 100 >
				    t->node_bytes[i] * (uint64_t)req->mem_fraction_pct)
					fits = false;
				break;
			}
		}
	}
	if (p.n_nodes <= 1)
		p.weights = NUMA_POLICY_LOCAL;
	else if (req->policy == NUMA_POLICY_AUTO)
		p.weights = fits ? NUMA_POLICY_REPLICATE : NUMA_POLICY_INTERLEAVE;
	else
		p.weights = req->policy;
	*ret = p;
	return 0;

out_free:
	placement_done(&p);
	return ret_code;
}

void placement_done(struct placement *p)
{
	free(p->worker_cpu);
	free(p->worker_node);
	free(p->nodes);
	memset(p, 0, sizeof(*p));
}

int numa_weights_alloc(const struct placement *p, size_t bytes, struct numa_weights *ret)
{
	struct numa_weights w = { .mode = p->weights, .bytes = bytes, .n = 1 };
	bool have_numa = numa_available() >= 0;

	if (bytes == 0)
		return -EINVAL;
	if (w.mode == NUMA_POLICY_REPLICATE && have_numa && p->n_nodes > 1)
		w.n = p->n_nodes;
	else if (w.mode == NUMA_POLICY_REPLICATE || !have_numa || p->n_nodes <= 1)
		w.mode = NUMA_POLICY_LOCAL;
	w.nodes = calloc(w.n, sizeof(*w.nodes));
	w.ptrs = calloc(w.n, sizeof(*w.ptrs));
	if (!w.nodes || !w.ptrs)
		goto out_free;
	w.numa = w.mode != NUMA_POLICY_LOCAL;
	for (uint32_t i = 0; i < w.n; i++) {
		w.nodes[i] = -1;
		if (w.mode == NUMA_POLICY_REPLICATE) {
			w.nodes[i] = p->nodes[i];
			w.ptrs[i] = numa_alloc_onnode(bytes, p->nodes[i]);
		} else if (w.mode == NUMA_POLICY_INTERLEAVE) {
			struct bitmask *m = numa_allocate_nodemask();

			if (!m)
				goto out_free;
			for (uint32_t k = 0; k < p->n_nodes; k++)
				numa_bitmask_setbit(m, (unsigned)p->nodes[k]);
			w.ptrs[i] = numa_alloc_interleaved_subset(bytes, m);
			numa_bitmask_free(m);
		} else {
			void *q = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			w.ptrs[i] = q == MAP_FAILED ? NULL : q;
		}
		if (!w.ptrs[i])
			goto out_free;
	}
	*ret = w;
	return 0;

out_free:
	numa_weights_free(&w);
	return -ENOMEM;
}

void *numa_weights_for_node(const struct numa_weights *w, int node)
{
	for (uint32_t i = 0; i < w->n; i++)
		if (w->nodes[i] == node)
			return w->ptrs[i];
	return w->n ? w->ptrs[0] : NULL;
}

void numa_weights_free(struct numa_weights *w)
{
	for (uint32_t i = 0; w->ptrs && i < w->n; i++) {
		if (!w->ptrs[i])
			continue;
		if (w->numa)
			numa_free(w->ptrs[i], w->bytes);
		else
			munmap(w->ptrs[i], w->bytes);
	}
	free(w->ptrs);
	free(w->nodes);
	memset(w, 0, sizeof(*w));
}
