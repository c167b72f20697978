/* SPDX-License-Identifier: MIT */
#ifndef DAEMON_NUMA_H
#define DAEMON_NUMA_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/*
 * Topology (hwloc), worker placement and NUMA placement of weights (libnuma).
 * placement_plan() is a pure function of a topology, so it is tested on synthetic hwloc
 * topologies ("pack:2 numa:2 core:16 pu:2") on a one-node machine.
 */

struct topo_core {
	int cpu;     /* OS index of the core's first PU: where its worker is pinned */
	int node;    /* OS index of the core's NUMA node, -1 when unknown */
	int package; /* logical index of the package, -1 when unknown */
};

struct topo {
	uint32_t n_cores;
	struct topo_core *cores; /* [n_cores] by logical core order */
	uint32_t n_pus;
	int *pu_cpu;  /* [n_pus] OS index of each PU */
	int *pu_core; /* [n_pus] index into cores[] */
	uint32_t n_nodes;
	int *node_ids;	      /* [n_nodes] OS indices, ascending */
	uint64_t *node_bytes; /* [n_nodes] local memory */
};

/*
 * Load this machine's topology (@synthetic NULL) or a synthetic one (hwloc synthetic string,
 * e.g. "pack:2 numa:2(memory=64GB) core:16 pu:2"). Caller frees with topo_free().
 * Returns 0, -EINVAL (bad synthetic string, fills @e) or -ENOMEM.
 */
int topo_load(const char *synthetic, struct topo **ret, struct errbuf *e);
void topo_free(struct topo *t);

enum numa_policy {
	NUMA_POLICY_AUTO,	/* replicate when every node has room, else interleave */
	NUMA_POLICY_REPLICATE,	/* one copy of the weights per node that has workers */
	NUMA_POLICY_INTERLEAVE, /* one copy, pages interleaved over those nodes */
	NUMA_POLICY_LOCAL,	/* one copy, default allocation (single node) */
	NUMA_POLICY_COUNT,
};

/* "auto", "replicate", "interleave" or "local" -> the policy, or -EINVAL. */
int numa_policy_parse(const char *s);
const char *numa_policy_name(enum numa_policy p);

struct placement_req {
	const int *cpus; /* explicit CPU list (OS indices), or NULL: one per core */
	uint32_t n_cpus;
	uint32_t max_workers; /* 0: no cap */
	enum numa_policy policy;
	uint64_t weights_bytes;	   /* size of one copy of the weights */
	uint32_t mem_fraction_pct; /* AUTO replicates iff weights <= pct% of each node's memory */
};

struct placement {
	uint32_t n_workers;
	int *worker_cpu;	  /* [n_workers] CPU each worker is pinned to */
	int *worker_node;	  /* [n_workers] its NUMA node (-1 unknown) */
	enum numa_policy weights; /* resolved: REPLICATE, INTERLEAVE or LOCAL */
	uint32_t n_nodes;	  /* nodes that have workers */
	int *nodes;		  /* [n_nodes] ascending */
};

/*
 * Plan workers and weight placement. Default workers: one per physical core, grouped by NUMA
 * node (ascending), cores in order within a node, capped at max_workers (taken round-robin over
 * nodes so a cap keeps every node busy). Pure: reads only @t and @req.
 * Returns 0, -EINVAL (a CPU not in @t, empty topology) or -ENOMEM. Free with placement_done().
 */
int placement_plan(const struct topo *t, const struct placement_req *req, struct placement *ret);
void placement_done(struct placement *p);

/* Weight buffers placed per a plan; see numa_weights_alloc(). */
struct numa_weights {
	enum numa_policy mode;
	size_t bytes;
	uint32_t n;  /* copies: n_nodes for REPLICATE, else 1 */
	int *nodes;  /* [n] node of each copy (-1: not bound) */
	void **ptrs; /* [n] */
	int numa;    /* allocated through libnuma (else mmap) */
};

/*
 * Allocate @bytes of weight memory for an engine backend per @p: one copy per node
 * (REPLICATE, libnuma numa_alloc_onnode) or one interleaved / local copy. The backend fills
 * each copy (numa_weights_for_node) once; workers on node N then read numa_weights_for_node(N).
 * Without libnuma support at run time it falls back to one plain mapping. 0 or -ENOMEM.
 */
int numa_weights_alloc(const struct placement *p, size_t bytes, struct numa_weights *ret);
/* The copy that workers of @node read (the first copy when @node has none). */
void *numa_weights_for_node(const struct numa_weights *w, int node);
void numa_weights_free(struct numa_weights *w);

#endif /* DAEMON_NUMA_H */
