// SPDX-License-Identifier: MIT
/*
 * The mixed-bit allocation driver (reparam/mixbits.c): its calibration hooks and solve on
 * synthetic layers against brute force over every assignment (errors recomputed here by
 * plain loops), the budget, the pass-2 bits_of hook, the measurement file, the two-pass
 * flow on the tiny seeded LLaMA, and a mixed-width SmolLM2 file that loads and generates.
 */
#include "engine/gguf.h"
#include "engine/model.h"
#include "reparam/export.h"
#include "reparam/mixbits.h"
#include "tests/unit/engine/ref_logits.h"
#include "tests/unit/reparam/synth.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define N_SYN 5
#define SMOL  "models/SmolLM2-135M-Instruct.Q4_1.gguf"

struct syn_layer {
	char name[32];
	uint32_t n, k;
	float *W;
	double *H;
	double err[MIXBITS_N_WIDTHS]; /* recomputed here: synth_output_error */
	double energy;		      /* tr(W H W^T), recomputed here the same way */
	uint64_t cost[MIXBITS_N_WIDTHS];
};

struct syn {
	struct syn_layer l[N_SYN];
	struct reparam_opts q;
	uint64_t params;
};

static const uint32_t syn_shape[N_SYN][2] = {
	{ 16, 24 }, { 8, 32 }, { 24, 16 }, { 32, 8 }, { 16, 16 }
};

static void syn_init(struct syn *s, enum reparam_method method)
{
	float *zero;

	memset(s, 0, sizeof(*s));
	reparam_opts_init(&s->q, method, 3);
	s->q.rounds = 4;
	for (uint32_t i = 0; i < N_SYN; i++) {
		struct syn_layer *l = &s->l[i];

		snprintf(l->name, sizeof(l->name), "blk.%u.attn_q", i);
		l->n = syn_shape[i][0];
		l->k = syn_shape[i][1];
		l->W = malloc((size_t)l->n * l->k * sizeof(float));
		l->H = malloc((size_t)l->k * l->k * sizeof(double));
		assert_true(l->W && l->H);
		synth_weights(l->n, l->k, 100 + i, l->W);
		synth_hessian(l->k, 4 * l->k, 200 + i, NULL, 0, l->H);
		/* a spread of sensitivities, as between real layers */
		for (size_t j = 0; j < (size_t)l->n * l->k; j++)
			l->W[j] *= (float)(1 + 3 * i);
		for (uint32_t w = 0; w < MIXBITS_N_WIDTHS; w++) {
			struct reparam_opts o = s->q;
			struct reparam_result r = { 0 };
			struct errbuf e = { { 0 } };

			o.bits = 2 + w;
			assert_int_equal(reparam_quantize(&o, l->W, l->n, l->k, l->H, &r, &e), 0);
			l->err[w] = synth_output_error(l->W, r.dense, l->n, l->k, l->H);
			/* storage written out: planes + one APoT alpha per plane and column (acc) */
			l->cost[w] = (uint64_t)l->n * l->k * o.bits;
			if (method == REPARAM_SHIFTADD_ACC) {
				l->cost[w] += (uint64_t)o.bits * l->k * 8 * o.apot;
			} else {
				/* lat: blocks of 8 columns x ceil(N/8) rows */
				uint64_t rows = (l->n + 7) / 8, n_rb = (l->n + rows - 1) / rows;

				l->cost[w] +=
					(uint64_t)o.bits * n_rb * ((l->k + 7) / 8) * 8 * o.apot;
			}
			reparam_result_done(&r);
		}
		zero = calloc((size_t)l->n * l->k, sizeof(*zero));
		assert_non_null(zero);
		l->energy = synth_output_error(l->W, zero, l->n, l->k, l->H);
		free(zero);
		s->params += (uint64_t)l->n * l->k;
	}
}

/* Average bits of the all-2-bit and all-4-bit assignments, by the costs written out here. */
static void syn_range(const struct syn *s, double *ret_lo, double *ret_hi)
{
	uint64_t lo = 0, hi = 0;

	for (uint32_t i = 0; i < N_SYN; i++) {
		lo += s->l[i].cost[0];
		hi += s->l[i].cost[MIXBITS_N_WIDTHS - 1];
	}
	*ret_lo = (double)lo / s->params;
	*ret_hi = (double)hi / s->params;
}

static void syn_done(struct syn *s)
{
	for (uint32_t i = 0; i < N_SYN; i++) {
		free(s->l[i].W);
		free(s->l[i].H);
	}
}

struct hook_job {
	struct calib_run *run;
	const struct syn_layer *l;
	struct calib_tensor t;
};

static void *hessian_job(void *arg)
{
	struct hook_job *j = arg;

	j->run->on_hessian(j->run->hook_arg, j->l->name, j->l->W, j->l->n, j->l->k, j->l->H);
	return NULL;
}

/*
 * Play the calibration driver: on_hessian for all layers at once from separate threads (the
 * driver runs linears sharing an input concurrently), then each layer quantized at the width
 * bits_of gives and reported through on_layer in file order.
 */
static void drive(struct syn *s, struct calib_run *run)
{
	struct hook_job jobs[N_SYN];
	pthread_t tid[N_SYN];

	for (uint32_t i = 0; i < N_SYN; i++) {
		jobs[i] = (struct hook_job){ .run = run, .l = &s->l[i] };
		assert_int_equal(pthread_create(&tid[i], NULL, hessian_job, &jobs[i]), 0);
	}
	for (uint32_t i = 0; i < N_SYN; i++)
		pthread_join(tid[i], NULL);
	for (uint32_t i = 0; i < N_SYN; i++) {
		struct reparam_opts o = run->q;
		struct calib_tensor *t = &jobs[i].t;
		struct errbuf e = { { 0 } };

		o.bits = run->bits_of(run->hook_arg, s->l[i].name);
		snprintf(t->name, sizeof(t->name), "%s", s->l[i].name);
		assert_int_equal(reparam_quantize(&o, s->l[i].W, s->l[i].n, s->l[i].k, s->l[i].H,
						  &t->res, &e),
				 0);
		run->on_layer(run->on_layer_arg, t, i + 1, N_SYN);
		reparam_result_done(&t->res);
	}
}

static uint32_t n_on_layer;

static void count_layers(void *arg, const struct calib_tensor *t, uint32_t done, uint32_t total)
{
	(void)arg;
	(void)t;
	(void)total;
	assert_int_equal(done, ++n_on_layer);
}

/*
 * Least total error over all 3^N_SYN assignments within @budget bits; INFINITY if none.
 * @rel: each layer's error divided by its output energy (the REL weight).
 */
static double brute_w(const struct syn *s, uint64_t budget, bool rel, uint32_t *ret_bits)
{
	double best = INFINITY;
	uint32_t n_assign = 1;

	for (uint32_t i = 0; i < N_SYN; i++)
		n_assign *= MIXBITS_N_WIDTHS;
	for (uint32_t a = 0; a < n_assign; a++) {
		uint64_t cost = 0;
		double err = 0;
		uint32_t x = a;

		for (uint32_t i = 0; i < N_SYN; i++, x /= MIXBITS_N_WIDTHS) {
			cost += s->l[i].cost[x % MIXBITS_N_WIDTHS];
			err += s->l[i].err[x % MIXBITS_N_WIDTHS] / (rel ? s->l[i].energy : 1);
		}
		if (cost <= budget && err < best) {
			best = err;
			x = a;
			for (uint32_t i = 0; i < N_SYN; i++, x /= MIXBITS_N_WIDTHS)
				ret_bits[i] = 2 + x % MIXBITS_N_WIDTHS;
		}
	}
	return best;
}

static double brute(const struct syn *s, uint64_t budget, uint32_t *ret_bits)
{
	return brute_w(s, budget, false, ret_bits);
}

static void measure_syn(struct syn *s, struct mixbits *mb, uint32_t base)
{
	struct calib_run run = { 0 };
	struct errbuf e = { { 0 } };

	assert_int_equal(mixbits_init(mb, &s->q, base, &e), 0);
	run.q = s->q;
	run.on_layer = count_layers;
	n_on_layer = 0;
	mixbits_measure_hooks(mb, &run);
	assert_int_equal(run.bits_of(run.hook_arg, "blk.0.attn_q"), base);
	drive(s, &run);
	assert_int_equal(n_on_layer, N_SYN); /* the tool's on_layer still runs */
	assert_int_equal(mixbits_measure_check(mb, &e), 0);
	assert_int_equal(mb->n_layers, N_SYN);
}

static void test_exact_matches_brute_force_and_keeps_budget(void **state)
{
	struct syn s;
	uint64_t lo = 0, hi = 0;

	(void)state;
	syn_init(&s, REPARAM_SHIFTADD_ACC);
	for (uint32_t i = 0; i < N_SYN; i++) {
		lo += s.l[i].cost[0];
		hi += s.l[i].cost[MIXBITS_N_WIDTHS - 1];
	}
	for (uint32_t base = 2; base <= 4; base++) {
		struct mixbits mb;
		struct errbuf e = { { 0 } };

		measure_syn(&s, &mb, base);
		/* file order kept although the hooks ran in any order; errors as recomputed */
		for (uint32_t i = 0; i < N_SYN; i++) {
			assert_string_equal(mb.layers[i].name, s.l[i].name);
			for (uint32_t w = 0; w < MIXBITS_N_WIDTHS; w++)
				assert_float_equal(mb.layers[i].err[w], s.l[i].err[w],
						   1e-6 * s.l[i].err[w]);
		}
		/* below the cheapest assignment: nothing fits */
		assert_int_equal(mixbits_solve(&mb, MIXBITS_EXACT, MIXBITS_WEIGHT_ABS,
					       (double)(lo - 1) / s.params, &e),
				 -ENOSPC);
		for (uint32_t t = 0; t <= 20; t++) {
			double B = ((double)lo + (double)(hi - lo) * t / 18.0) / (double)s.params;
			uint64_t budget = (uint64_t)floorl((long double)B * s.params), cost = 0;
			uint32_t want[N_SYN];
			double best = brute(&s, budget, want), got = 0;

			assert_int_equal(
				mixbits_solve(&mb, MIXBITS_EXACT, MIXBITS_WEIGHT_ABS, B, &e), 0);
			assert_true(mb.exact);
			for (uint32_t i = 0; i < N_SYN; i++) {
				uint32_t b = mixbits_lookup(&mb, s.l[i].name);

				assert_true(b >= 2 && b <= 4);
				cost += s.l[i].cost[b - 2];
				got += s.l[i].err[b - 2];
			}
			assert_true(cost <= budget);
			assert_true(mb.avg_bits <= B);
			assert_float_equal(mb.avg_bits, (double)cost / s.params, 1e-12);
			assert_float_equal(got, best, 1e-6 * best);
			assert_float_equal(mb.predicted_err, best, 1e-6 * best);
		}
		mixbits_done(&mb);
	}
	syn_done(&s);
}

/*
 * The rel weight: the hooks record each layer's output energy tr(W H W^T) (against plain
 * loops here), and exact with it minimizes the sum of err / energy (against brute force with
 * that objective), within budget. On these layers (scaled 1x .. 13x) the abs and rel optima
 * differ somewhere, so the test tells the two objectives apart.
 */
static void test_rel_weight_matches_brute_force(void **state)
{
	struct syn s;
	struct mixbits mb;
	struct errbuf e = { { 0 } };
	double lo, hi;
	uint32_t n_differ = 0;

	(void)state;
	syn_init(&s, REPARAM_SHIFTADD_ACC);
	measure_syn(&s, &mb, 2);
	for (uint32_t i = 0; i < N_SYN; i++) {
		assert_true(s.l[i].energy > 0);
		assert_float_equal(mb.layers[i].energy, s.l[i].energy, 1e-9 * s.l[i].energy);
		for (uint32_t w = 0; w < MIXBITS_N_WIDTHS; w++)
			assert_float_equal(
				mixbits_weighted_err(&mb.layers[i], w, MIXBITS_WEIGHT_REL),
				s.l[i].err[w] / s.l[i].energy,
				1e-6 * s.l[i].err[w] / s.l[i].energy);
	}
	syn_range(&s, &lo, &hi);
	for (uint32_t t = 0; t <= 24; t++) {
		double B = lo + (hi - lo) * t / 24.0, best, got = 0;
		uint64_t budget = (uint64_t)floorl((long double)B * s.params), cost = 0;
		uint32_t want[N_SYN], abs_bits[N_SYN];

		assert_int_equal(mixbits_solve(&mb, MIXBITS_EXACT, MIXBITS_WEIGHT_ABS, B, &e), 0);
		for (uint32_t i = 0; i < N_SYN; i++)
			abs_bits[i] = mb.layers[i].bits;
		assert_int_equal(mixbits_solve(&mb, MIXBITS_EXACT, MIXBITS_WEIGHT_REL, B, &e), 0);
		assert_int_equal(mb.weight, MIXBITS_WEIGHT_REL);
		best = brute_w(&s, budget, true, want);
		for (uint32_t i = 0; i < N_SYN; i++) {
			uint32_t b = mixbits_lookup(&mb, s.l[i].name);

			cost += s.l[i].cost[b - 2];
			got += s.l[i].err[b - 2] / s.l[i].energy;
			n_differ += b != abs_bits[i];
		}
		assert_true(cost <= budget);
		assert_true(mb.avg_bits <= B);
		assert_float_equal(got, best, 1e-6 * best);
		assert_float_equal(mb.predicted_err, best, 1e-6 * best);
	}
	assert_true(n_differ > 0);
	/* a version 1 measurement has no energies: rel is refused, abs still solves */
	for (uint32_t i = 0; i < N_SYN; i++)
		mb.layers[i].energy = NAN;
	assert_int_equal(mixbits_solve(&mb, MIXBITS_EXACT, MIXBITS_WEIGHT_REL, hi, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "energy"));
	assert_int_equal(mixbits_solve(&mb, MIXBITS_EXACT, MIXBITS_WEIGHT_ABS, hi, &e), 0);
	/* a layer with no output: its error counts 0 under rel */
	mb.layers[0].energy = 0;
	assert_true(mixbits_weighted_err(&mb.layers[0], 0, MIXBITS_WEIGHT_REL) == 0);
	assert_int_equal(mixbits_weight_parse("rel"), MIXBITS_WEIGHT_REL);
	assert_int_equal(mixbits_weight_parse("abs"), MIXBITS_WEIGHT_ABS);
	assert_int_equal(mixbits_weight_parse("loss"), -EINVAL);
	assert_string_equal(mixbits_weight_name(MIXBITS_WEIGHT_REL), "rel");
	mixbits_done(&mb);
	syn_done(&s);
}

static void test_proxy_keeps_budget_and_never_beats_exact(void **state)
{
	struct syn s;
	struct mixbits mb;
	struct errbuf e = { { 0 } };
	double lo, hi;
	uint32_t n_solved = 0, n_better = 0;

	(void)state;
	syn_init(&s, REPARAM_SHIFTADD_LAT);
	measure_syn(&s, &mb, 3);
	syn_range(&s, &lo, &hi);
	for (double B = lo - 0.1; B <= hi + 0.1; B += (hi - lo) / 23) {
		uint64_t budget = (uint64_t)floorl((long double)B * s.params), cost = 0;
		double exact_err, got = 0;
		int r;

		r = mixbits_solve(&mb, MIXBITS_EXACT, MIXBITS_WEIGHT_ABS, B, &e);
		if (r == -ENOSPC) {
			assert_true(B < lo);
			continue;
		}
		assert_int_equal(r, 0);
		n_solved++;
		exact_err = mb.predicted_err;
		assert_int_equal(mixbits_solve(&mb, MIXBITS_PROXY, MIXBITS_WEIGHT_ABS, B, &e), 0);
		assert_int_equal(mb.alloc, MIXBITS_PROXY);
		for (uint32_t i = 0; i < N_SYN; i++) {
			uint32_t b = mixbits_lookup(&mb, s.l[i].name);

			cost += s.l[i].cost[b - 2];
			got += s.l[i].err[b - 2];
		}
		assert_true(cost <= budget);
		assert_float_equal(mb.predicted_err, got, 1e-6 * got);
		assert_true(got >= exact_err * (1 - 1e-9));
		n_better += got > exact_err * (1 + 1e-9);
	}
	assert_true(n_solved >= 23);
	/* on these layers the ranking loses somewhere: a test that could tell them apart */
	assert_true(n_better > 0);
	mixbits_done(&mb);
	syn_done(&s);
}

static void test_bits_of_propagates_choice(void **state)
{
	struct syn s;
	struct mixbits mb;
	struct calib_run run = { 0 };
	struct errbuf e = { { 0 } };
	uint32_t seen[5] = { 0 };
	double lo, hi;

	(void)state;
	syn_init(&s, REPARAM_SHIFTADD_ACC);
	measure_syn(&s, &mb, 2);
	syn_range(&s, &lo, &hi);
	assert_int_equal(mixbits_solve(&mb, MIXBITS_EXACT, MIXBITS_WEIGHT_ABS, (lo + hi) / 2, &e),
			 0);
	run.on_hessian = (calib_hessian_fn)1; /* must be cleared */
	mixbits_convert_hooks(&mb, &run);
	assert_null(run.on_hessian);
	assert_int_equal(run.q.method, REPARAM_SHIFTADD_ACC);
	assert_int_equal(run.q.bits, 0);
	for (uint32_t i = 0; i < N_SYN; i++) {
		uint32_t b = run.bits_of(run.hook_arg, s.l[i].name);

		assert_int_equal(b, mb.layers[i].bits);
		seen[b]++;
	}
	/* half-way between all-2 and all-4 bits needs more than one width */
	assert_true((seen[2] > 0) + (seen[3] > 0) + (seen[4] > 0) >= 2);
	assert_int_equal(mb.n_lookup_miss, 0);
	assert_int_equal(run.bits_of(run.hook_arg, "blk.9.ffn_down"), 2);
	assert_int_equal(mb.n_lookup_miss, 1);
	mixbits_done(&mb);
	syn_done(&s);
}

static void test_hook_errors_and_bad_setups(void **state)
{
	struct syn s;
	struct mixbits mb;
	struct calib_run run = { 0 };
	struct errbuf e = { { 0 } };
	struct reparam_opts q;

	(void)state;
	reparam_opts_init(&q, REPARAM_GPTQ, 3);
	assert_int_equal(mixbits_init(&mb, &q, 3, &e), -EINVAL);
	reparam_opts_init(&q, REPARAM_SHIFTADD_ACC, 3);
	assert_int_equal(mixbits_init(&mb, &q, 5, &e), -EINVAL);
	assert_int_equal(mixbits_alloc_parse("proxy"), MIXBITS_PROXY);
	assert_int_equal(mixbits_alloc_parse("greedy"), -EINVAL);

	/* a layer measured by on_hessian but never reported by the driver is incomplete */
	syn_init(&s, REPARAM_SHIFTADD_ACC);
	assert_int_equal(mixbits_init(&mb, &s.q, 3, &e), 0);
	mixbits_measure_hooks(&mb, &run);
	run.on_hessian(run.hook_arg, "blk.0.attn_q", s.l[0].W, s.l[0].n, s.l[0].k, s.l[0].H);
	assert_int_equal(mixbits_measure_check(&mb, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "blk.0.attn_q"));
	assert_int_equal(mixbits_solve(&mb, MIXBITS_EXACT, MIXBITS_WEIGHT_ABS, 3.0, &e), -EINVAL);
	/* no Hessian: the hook records the failure for measure_check */
	run.on_hessian(run.hook_arg, "blk.1.attn_q", s.l[1].W, s.l[1].n, s.l[1].k, NULL);
	assert_int_equal(mixbits_measure_check(&mb, &e), -EINVAL);
	assert_non_null(strstr(e.msg, "blk.1.attn_q"));
	mixbits_done(&mb);
	mixbits_done(&mb); /* idempotent */
	syn_done(&s);
}

static char *tmp_path(const char *tag)
{
	static char buf[4][64];
	static int n;
	char *p = buf[n++ % 4];
	int fd;

	snprintf(p, sizeof(buf[0]), "/tmp/shiftadd-mixbits-%s-XXXXXX", tag);
	fd = mkstemp(p);
	assert_true(fd >= 0);
	close(fd);
	return p;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_measurement_file_round_trip(void **state)
{
	struct syn s;
	struct mixbits mb, back;
	struct errbuf e = { { 0 } };
	struct reparam_opts q;
	char *path = tmp_path("meas");
	double lo, hi;

	(void)state;
	syn_init(&s, REPARAM_SHIFTADD_ACC);
	measure_syn(&s, &mb, 3);
	assert_int_equal(mixbits_save(&mb, path, &e), 0);
	assert_int_equal(mixbits_load(&back, &s.q, path, &e), 0);
	assert_int_equal(back.n_layers, N_SYN);
	assert_int_equal(back.base_bits, 3);
	syn_range(&s, &lo, &hi);
	for (double B = lo; B <= hi; B += (hi - lo) / 5) {
		assert_int_equal(mixbits_solve(&mb, MIXBITS_EXACT, MIXBITS_WEIGHT_ABS, B, &e), 0);
		assert_int_equal(mixbits_solve(&back, MIXBITS_EXACT, MIXBITS_WEIGHT_ABS, B, &e), 0);
		for (uint32_t i = 0; i < N_SYN; i++) {
			assert_string_equal(back.layers[i].name, mb.layers[i].name);
			assert_int_equal(back.layers[i].bits, mb.layers[i].bits);
			assert_memory_equal(back.layers[i].cost_bits, mb.layers[i].cost_bits,
					    sizeof(mb.layers[i].cost_bits));
			assert_float_equal(back.layers[i].energy, mb.layers[i].energy,
					   1e-12 * mb.layers[i].energy);
		}
		assert_true(back.predicted_err == mb.predicted_err);
	}
	mixbits_done(&back);

	/* measured with another method or apot: refused */
	q = s.q;
	q.apot = 2;
	assert_int_equal(mixbits_load(&back, &q, path, &e), -EINVAL);
	reparam_opts_init(&q, REPARAM_SHIFTADD_LAT, 3);
	q.rounds = s.q.rounds;
	assert_int_equal(mixbits_load(&back, &q, path, &e), -EINVAL);

	/* malformed files */
	write_text(path, "{\"version\": 1}");
	assert_int_equal(mixbits_load(&back, &s.q, path, &e), -EBADMSG);
	write_text(path, "not json");
	assert_int_equal(mixbits_load(&back, &s.q, path, &e), -EBADMSG);
	write_text(path,
		   "{\"version\": 1, \"method\": \"shiftadd-acc\", \"apot\": 3, \"rounds\": 4,"
		   " \"base_bits\": 3, \"widths\": [2, 3, 4], \"layers\": [{\"name\": \"a\","
		   " \"rows\": 8, \"cols\": 8, \"err\": [1, -2, 3], \"score\": 1}]}");
	assert_int_equal(mixbits_load(&back, &s.q, path, &e), -EBADMSG);
	assert_non_null(strstr(e.msg, "layer 0"));
	write_text(path,
		   "{\"version\": 1, \"method\": \"shiftadd-acc\", \"apot\": 3, \"rounds\": 4,"
		   " \"base_bits\": 3, \"widths\": [2, 3, 4], \"layers\": [{\"name\": \"a\","
		   " \"rows\": 8, \"cols\": 8, \"err\": [3, 2, 1], \"score\": 1}, {\"name\": \"a\","
		   " \"rows\": 8, \"cols\": 8, \"err\": [3, 2, 1], \"score\": 1}]}");
	assert_int_equal(mixbits_load(&back, &s.q, path, &e), -EBADMSG);
	assert_non_null(strstr(e.msg, "duplicate"));
	write_text(path,
		   "{\"version\": 1, \"method\": \"shiftadd-acc\", \"apot\": 3, \"rounds\": 4,"
		   " \"base_bits\": 7, \"widths\": [2, 3, 4], \"layers\": []}");
	assert_int_equal(mixbits_load(&back, &s.q, path, &e), -EINVAL);
	/* version 1 (no energies) still loads, for abs only; version 2 needs them */
	write_text(path,
		   "{\"version\": 1, \"method\": \"shiftadd-acc\", \"apot\": 3, \"rounds\": 4,"
		   " \"base_bits\": 3, \"widths\": [2, 3, 4], \"layers\": [{\"name\": \"a\","
		   " \"rows\": 8, \"cols\": 8, \"err\": [3, 2, 1], \"score\": 1}]}");
	assert_int_equal(mixbits_load(&back, &s.q, path, &e), 0);
	assert_true(isnan(back.layers[0].energy));
	assert_int_equal(mixbits_solve(&back, MIXBITS_EXACT, MIXBITS_WEIGHT_REL, 16.0, &e),
			 -EINVAL);
	assert_int_equal(mixbits_solve(&back, MIXBITS_EXACT, MIXBITS_WEIGHT_ABS, 16.0, &e), 0);
	mixbits_done(&back);
	write_text(path,
		   "{\"version\": 2, \"method\": \"shiftadd-acc\", \"apot\": 3, \"rounds\": 4,"
		   " \"base_bits\": 3, \"widths\": [2, 3, 4], \"layers\": [{\"name\": \"a\","
		   " \"rows\": 8, \"cols\": 8, \"err\": [3, 2, 1], \"score\": 1}]}");
	assert_int_equal(mixbits_load(&back, &s.q, path, &e), -EBADMSG);
	assert_non_null(strstr(e.msg, "energy"));
	write_text(path,
		   "{\"version\": 2, \"method\": \"shiftadd-acc\", \"apot\": 3, \"rounds\": 4,"
		   " \"base_bits\": 3, \"widths\": [2, 3, 4], \"layers\": [{\"name\": \"a\","
		   " \"rows\": 8, \"cols\": 8, \"err\": [3, 2, 1], \"score\": 1,"
		   " \"energy\": -1}]}");
	assert_int_equal(mixbits_load(&back, &s.q, path, &e), -EBADMSG);
	write_text(path,
		   "{\"version\": 3, \"method\": \"shiftadd-acc\", \"apot\": 3,"
		   " \"rounds\": 4, \"base_bits\": 3, \"widths\": [2, 3, 4], \"layers\": []}");
	assert_int_equal(mixbits_load(&back, &s.q, path, &e), -EBADMSG);
	unlink(path);
	assert_true(mixbits_load(&back, &s.q, path, &e) == -ENOENT);
	mixbits_done(&mb);
	syn_done(&s);
}

/* --- the tiny seeded LLaMA: both passes through the real calibration driver ------------- */

#define FIX "tests/fixtures/engine/tiny-llama/"
#define S   3
#define T   24

static int tiny_dir(char *dir, size_t n)
{
	struct ref_logits *ref = ref_logits_load(FIX "ref.txt");
	char cmd[256];
	int r = -1;

	snprintf(dir, n, "/tmp/shiftadd-mixbits-XXXXXX");
	if (ref && mkdtemp(dir)) {
		snprintf(cmd, sizeof(cmd), "cp " FIX "config.json %s/", dir);
		r = system(cmd) || ref_write_safetensors(ref, dir) ? -1 : 0;
	}
	free(ref);
	return r;
}

static void greedy_generate(const struct model *m, const int32_t *prompt, uint32_t n_prompt,
			    uint32_t n_new, int32_t *out)
{
	struct kv_cache kv;
	float *logits = malloc(m->cfg.n_vocab * sizeof(float));
	int32_t tok;

	assert_non_null(logits);
	assert_int_equal(kv_cache_init(&kv, m, 1, n_prompt + n_new), 0);
	assert_int_equal(model_forward_seq(m, &kv, 0, prompt, n_prompt, 0, logits), 0);
	for (uint32_t i = 0; i < n_new; i++) {
		tok = 0;
		for (uint32_t v = 0; v < m->cfg.n_vocab; v++) {
			assert_true(isfinite(logits[v]));
			if (logits[v] > logits[tok])
				tok = (int32_t)v;
		}
		out[i] = tok;
		if (i + 1 < n_new)
			assert_int_equal(
				model_forward_seq(m, &kv, 0, &tok, 1, n_prompt + i, logits), 0);
	}
	kv_cache_done(&kv);
	free(logits);
}

static void test_tiny_llama_two_passes(void **state)
{
	char dir[64], cmd[128];
	int32_t tokens[S * T], gen[6];
	struct model *m;
	struct mixbits mb;
	struct calib_run run = { 0 };
	struct calib_out out;
	struct errbuf e = { { 0 } };
	double wsum = 0, nsum = 0;
	uint32_t seen[5] = { 0 };
	int r;

	(void)state;
	assert_int_equal(tiny_dir(dir, sizeof(dir)), 0);
	for (uint32_t i = 0; i < S * T; i++)
		tokens[i] = (int32_t)((i * 37 + 11) % 256);

	/* pass 1: measure at 3 bits */
	reparam_opts_init(&run.q, REPARAM_SHIFTADD_ACC, 3);
	run.q.rounds = 5;
	run.calib = (struct calib_opts){ .nsamples = S, .seqlen = T, .tokens = tokens };
	assert_int_equal(mixbits_init(&mb, &run.q, 3, &e), 0);
	mixbits_measure_hooks(&mb, &run);
	assert_int_equal(model_load(dir, &m, NULL), 0);
	r = calib_quantize_model(m, &run, &out, &e);
	if (r < 0)
		fail_msg("pass 1: %s", errbuf_str(&e, r));
	assert_int_equal(mixbits_measure_check(&mb, &e), 0);
	assert_int_equal(mb.n_layers, out.n);
	for (uint32_t i = 0; i < out.n; i++) {
		/* the base width's error is the driver's own, in file order */
		assert_string_equal(mb.layers[i].name, out.t[i].name);
		assert_true(mb.layers[i].err[1] == out.t[i].res.err_output);
		assert_int_equal(out.t[i].res.qw.bits, 3);
		/* more bits, less error (same H, same method) */
		assert_true(mb.layers[i].err[0] > mb.layers[i].err[1]);
		assert_true(mb.layers[i].err[1] > mb.layers[i].err[2]);
	}
	calib_out_done(&out);
	model_free(m);

	/* pass 2: at the chosen widths on a fresh copy of the model */
	assert_int_equal(mixbits_solve(&mb, MIXBITS_EXACT, MIXBITS_WEIGHT_ABS, 3.6, &e), 0);
	mixbits_convert_hooks(&mb, &run);
	assert_int_equal(model_load(dir, &m, NULL), 0);
	r = calib_quantize_model(m, &run, &out, &e);
	if (r < 0)
		fail_msg("pass 2: %s", errbuf_str(&e, r));
	assert_int_equal(mb.n_lookup_miss, 0);
	assert_int_equal(out.n, 14);
	for (uint32_t i = 0; i < out.n; i++) {
		const struct reparam_result *res = &out.t[i].res;

		assert_true(res->has_qweight);
		assert_int_equal(res->qw.bits, mixbits_lookup(&mb, out.t[i].name));
		seen[res->qw.bits]++;
		wsum += res->bits_per_weight * res->n_rows * res->n_cols;
		nsum += (double)res->n_rows * res->n_cols;
	}
	assert_true((seen[2] > 0) + (seen[3] > 0) + (seen[4] > 0) >= 2);
	assert_true(wsum / nsum <= 3.6);
	assert_float_equal(wsum / nsum, mb.avg_bits, 1e-9);
	greedy_generate(m, tokens, T, 6, gen);
	for (uint32_t i = 0; i < 6; i++)
		assert_true(gen[i] >= 0 && gen[i] < 256);
	calib_out_done(&out);
	model_free(m);
	mixbits_done(&mb);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* --- a mixed-width SmolLM2 file: export, load, same logits, generate -------------------- */

static uint32_t smol_bits_of(void *arg, const char *name)
{
	(void)arg;
	if (strstr(name, "attn_q") || strstr(name, "attn_k"))
		return 4;
	if (strstr(name, "ffn_"))
		return 2;
	return 3;
}

static void test_smollm2_mixed_file_loads_and_generates(void **state)
{
	struct model *m, *back;
	struct calib_run run = { 0 };
	struct calib_out out;
	struct export_meta meta;
	struct errbuf e = { { 0 } };
	struct gguf_file *g;
	const struct gguf_kv *names, *bits, *budget;
	const char *s;
	size_t len;
	char *path = tmp_path("smol");
	const int32_t prompt[8] = { 1, 504, 3458, 282, 4649, 314, 253, 1345 };
	int32_t gen_a[4], gen_b[4];
	float f;
	int r;

	(void)state;
	if (access(SMOL, R_OK))
		fail_msg("%s is missing: run 'make model'", SMOL);
	assert_int_equal(model_load(SMOL, &m, &e), 0);
	/* BCQ needs no calibration pass: this exercises export and load, not the optimizer */
	reparam_opts_init(&run.q, REPARAM_BCQ, 3);
	run.q.rounds = 1;
	run.bits_of = smol_bits_of;
	r = calib_quantize_model(m, &run, &out, &e);
	if (r < 0)
		fail_msg("%s", errbuf_str(&e, r));
	meta = (struct export_meta){ .run = &run, .alloc = "exact", .avg_bits_budget = 3.25 };
	r = export_gguf(SMOL, m, &out, &meta, path, &e);
	if (r < 0)
		fail_msg("export: %s", errbuf_str(&e, r));

	assert_int_equal(gguf_open(path, &g, &e), 0);
	names = gguf_find_kv(g, "shiftadd.tensor_names");
	bits = gguf_find_kv(g, "shiftadd.tensor_bits");
	budget = gguf_find_kv(g, "shiftadd.avg_bits_budget");
	assert_true(names && bits && budget);
	assert_int_equal(names->n, 30 * 7);
	assert_int_equal(bits->n, names->n);
	for (uint64_t i = 0; i < names->n; i++) {
		const struct gguf_str *nm = &((const struct gguf_str *)names->data)[i];
		char buf[64];

		snprintf(buf, sizeof(buf), "%.*s", (int)nm->len, nm->data);
		assert_int_equal((uint32_t)gguf_arr_num(bits, i), smol_bits_of(NULL, buf));
	}
	assert_int_equal(budget->type, GGUF_VT_FLOAT32);
	memcpy(&f, budget->data, sizeof(f));
	assert_true(f == 3.25f);
	assert_int_equal(gguf_get_str(g, "shiftadd.alloc", &s, &len), 0);
	assert_true(len == 5 && !memcmp(s, "exact", 5));
	gguf_close(g);

	/* the file runs as the in-memory quantized model does */
	assert_int_equal(model_load(path, &back, &e), 0);
	greedy_generate(m, prompt, 8, 4, gen_a);
	greedy_generate(back, prompt, 8, 4, gen_b);
	assert_memory_equal(gen_a, gen_b, sizeof(gen_a));
	model_free(back);
	calib_out_done(&out);
	model_free(m);
	unlink(path);
}

int test_mixbits_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_matches_brute_force_and_keeps_budget),
		cmocka_unit_test(test_rel_weight_matches_brute_force),
		cmocka_unit_test(test_proxy_keeps_budget_and_never_beats_exact),
		cmocka_unit_test(test_bits_of_propagates_choice),
		cmocka_unit_test(test_hook_errors_and_bad_setups),
		cmocka_unit_test(test_measurement_file_round_trip),
		cmocka_unit_test(test_tiny_llama_two_passes),
		cmocka_unit_test(test_smollm2_mixed_file_loads_and_generates),
	};
	return cmocka_run_group_tests_name("reparam/mixbits", tests, NULL, NULL);
}
