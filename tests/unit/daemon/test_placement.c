// SPDX-License-Identifier: MIT
/* Worker and weight placement on synthetic hwloc topologies (this machine has one node). */
#include "daemon/numa.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#define SYN_4NODE "pack:2 numa:2(memory=64GB) core:16 pu:2"

static void test_topology_2pack_2numa_16core(void **state)
{
	struct topo *t;

	assert_int_equal(topo_load(SYN_4NODE, &t, NULL), 0);
	assert_int_equal(t->n_cores, 64);
	assert_int_equal(t->n_pus, 128);
	assert_int_equal(t->n_nodes, 4);
	/* core 17 = node 1 (cores 16..31), first PU 34; core 63 = node 3, package 1 */
	assert_int_equal(t->cores[17].node, 1);
	assert_int_equal(t->cores[17].cpu, 34);
	assert_int_equal(t->cores[63].node, 3);
	assert_int_equal(t->cores[63].package, 1);
	topo_free(t);
}

static void test_default_one_worker_per_core_grouped_by_node(void **state)
{
	struct placement_req req = { .policy = NUMA_POLICY_AUTO,
				     .weights_bytes = 1ull << 30,
				     .mem_fraction_pct = 50 };
	struct placement p;
	struct topo *t;

	assert_int_equal(topo_load(SYN_4NODE, &t, NULL), 0);
	assert_int_equal(placement_plan(t, &req, &p), 0);
	assert_int_equal(p.n_workers, 64);
	for (uint32_t w = 0; w < 64; w++) {
		/* never two workers on the SMT siblings of one core: even PUs only */
		assert_int_equal(p.worker_cpu[w], 2 * (int)w);
		assert_int_equal(p.worker_node[w], (int)w / 16);
	}
	assert_int_equal(p.n_nodes, 4);
	assert_int_equal(p.weights, NUMA_POLICY_REPLICATE); /* 1 GiB fits in 50% of 64 GB */
	placement_done(&p);
	topo_free(t);
}

static void test_cap_keeps_every_node_busy(void **state)
{
	struct placement_req req = { .max_workers = 6,
				     .policy = NUMA_POLICY_AUTO,
				     .mem_fraction_pct = 50 };
	struct placement p;
	struct topo *t;
	int per_node[4] = { 0 };

	assert_int_equal(topo_load(SYN_4NODE, &t, NULL), 0);
	assert_int_equal(placement_plan(t, &req, &p), 0);
	assert_int_equal(p.n_workers, 6);
	for (uint32_t w = 0; w < 6; w++)
		per_node[p.worker_node[w]]++;
	assert_int_equal(per_node[0], 2);
	assert_int_equal(per_node[1], 2);
	assert_int_equal(per_node[2], 1);
	assert_int_equal(per_node[3], 1);
	assert_int_equal(p.worker_cpu[0], 0);
	assert_int_equal(p.worker_cpu[1], 2);
	assert_int_equal(p.worker_cpu[2], 32);
	placement_done(&p);
	topo_free(t);
}

static void test_big_weights_interleave(void **state)
{
	struct placement_req req = { .policy = NUMA_POLICY_AUTO,
				     .weights_bytes = 40ull << 30,
				     .mem_fraction_pct = 50 };
	struct placement p;
	struct topo *t;

	assert_int_equal(topo_load(SYN_4NODE, &t, NULL), 0);
	assert_int_equal(placement_plan(t, &req, &p), 0);
	assert_int_equal(p.weights, NUMA_POLICY_INTERLEAVE); /* 40 GiB > 50% of 64 GB */
	placement_done(&p);
	req.policy = NUMA_POLICY_REPLICATE; /* forced */
	assert_int_equal(placement_plan(t, &req, &p), 0);
	assert_int_equal(p.weights, NUMA_POLICY_REPLICATE);
	placement_done(&p);
	topo_free(t);
}

static void test_explicit_cpus_on_one_node_are_local(void **state)
{
	static const int cpus[] = { 34, 35, 40 }; /* node 1 only */
	struct placement_req req = {
		.cpus = cpus, .n_cpus = 3, .policy = NUMA_POLICY_AUTO, .mem_fraction_pct = 50
	};
	static const int bad[] = { 0, 500 };
	struct placement p;
	struct topo *t;

	assert_int_equal(topo_load(SYN_4NODE, &t, NULL), 0);
	assert_int_equal(placement_plan(t, &req, &p), 0);
	assert_int_equal(p.n_workers, 3);
	assert_int_equal(p.worker_cpu[1], 35);
	assert_int_equal(p.worker_node[2], 1);
	assert_int_equal(p.n_nodes, 1);
	assert_int_equal(p.weights, NUMA_POLICY_LOCAL);
	placement_done(&p);
	req.cpus = bad;
	req.n_cpus = 2;
	assert_int_equal(placement_plan(t, &req, &p), -EINVAL);
	topo_free(t);
}

static void test_bad_synthetic_string(void **state)
{
	struct topo *t = NULL;
	struct errbuf e = { { 0 } };

	assert_int_equal(topo_load("pack:x", &t, &e), -EINVAL);
	assert_null(t);
	assert_non_null(strstr(e.msg, "synthetic"));
}

static void test_weights_alloc_local(void **state)
{
	struct placement_req req = { .policy = NUMA_POLICY_AUTO, .mem_fraction_pct = 50 };
	struct numa_weights w;
	struct placement p;
	struct topo *t;
	char *buf;

	assert_int_equal(topo_load("pack:1 core:2 pu:1", &t, NULL), 0);
	assert_int_equal(placement_plan(t, &req, &p), 0);
	assert_int_equal(numa_weights_alloc(&p, 1 << 20, &w), 0);
	buf = numa_weights_for_node(&w, 0);
	assert_non_null(buf);
	memset(buf, 1, 1 << 20);
	numa_weights_free(&w);
	placement_done(&p);
	topo_free(t);
}

int test_placement_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topology_2pack_2numa_16core),
		cmocka_unit_test(test_default_one_worker_per_core_grouped_by_node),
		cmocka_unit_test(test_cap_keeps_every_node_busy),
		cmocka_unit_test(test_big_weights_interleave),
		cmocka_unit_test(test_explicit_cpus_on_one_node_are_local),
		cmocka_unit_test(test_bad_synthetic_string),
		cmocka_unit_test(test_weights_alloc_local),
	};

	return cmocka_run_group_tests_name("daemon/placement", tests, NULL, NULL);
}
