// SPDX-License-Identifier: MIT
/*
 * Randomized Hadamard transforms: planning (which blocks for which n), the seeded signs, the
 * small Paley Hadamard matrices, the dense reference and the ISA dispatch. All of this runs
 * once per transform or in tests; the run-time arithmetic is in rht_ref.c and
 * x86/rht_avx*.c, which kernels/nomul.sh checks.
 */
#include "kernels/rht.h"
#include "kernels/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NEG 0x80000000u

/* Small orders and how Paley's constructions give them (prime q). */
static const struct {
	uint32_t m, q;
	bool second; /* Paley II: m = 2 (q + 1), q = 1 mod 4; else Paley I: m = q + 1, q = 3 mod 4 */
} orders[] = {
	{ 1, 0, false }, { 12, 11, false }, { 20, 19, false }, { 28, 13, true }, { 36, 17, true },
};

#define N_ORDERS (sizeof(orders) / sizeof(orders[0]))

/* Quadratic character of a mod q (q prime): 0, 1 or -1. */
static int chi(int64_t a, uint32_t q)
{
	a %= (int64_t)q;
	if (a < 0)
		a += q;
	if (a == 0)
		return 0;
	for (uint64_t x = 1; x < q; x++)
		if (x * x % q == (uint64_t)a)
			return 1;
	return -1;
}

/* Jacobsthal matrix entry Q[i][j] = chi(j - i). */
static int jacobsthal(uint32_t i, uint32_t j, uint32_t q)
{
	return chi((int64_t)j - (int64_t)i, q);
}

/*
 * Paley conference-type core C of order q + 1: C[0][0] = 0, first row +1; first column -1
 * (type I, skew) or +1 (type II, symmetric); the rest the Jacobsthal matrix.
 */
static int conference(uint32_t r, uint32_t c, uint32_t q, bool second)
{
	if (r == 0 && c == 0)
		return 0;
	if (r == 0)
		return 1;
	if (c == 0)
		return second ? 1 : -1;
	return jacobsthal(r - 1, c - 1, q);
}

/* Entry (r, c) of the order-@oi Hadamard matrix, +1 or -1. */
static int small_entry(uint32_t oi, uint32_t r, uint32_t c)
{
	uint32_t q = orders[oi].q;
	int v;

	if (orders[oi].m == 1)
		return 1;
	if (!orders[oi].second) /* I + S with S skew: H Hᵀ = (q + 1) I */
		return r == c ? 1 : conference(r, c, q, false);
	/* Paley II: 0 -> [[1, -1], [-1, -1]], +-1 -> +-[[1, 1], [1, -1]] */
	v = conference(r / 2, c / 2, q, true);
	if (v == 0)
		return (r & 1) || (c & 1) ? -1 : 1;
	return (r & 1) && (c & 1) ? -v : v;
}

static uint32_t order_index(uint32_t m)
{
	for (uint32_t i = 0; i < N_ORDERS; i++)
		if (orders[i].m == m)
			return i;
	return 0;
}

/* A candidate block size: m << p. */
struct size {
	uint32_t size, m, p, cost; /* cost: adds per element, p + m - 1 */
};

static int size_cmp(const void *a, const void *b)
{
	const struct size *x = a, *y = b;

	if (x->size != y->size)
		return x->size > y->size ? -1 : 1;
	return x->cost < y->cost ? -1 : x->cost > y->cost;
}

/* Candidate sizes <= n, descending, one (cheapest) entry per size. */
static uint32_t list_sizes(uint32_t n, struct size *s)
{
	uint32_t cnt = 0, out = 0;

	for (uint32_t oi = 0; oi < N_ORDERS; oi++) {
		uint32_t m = orders[oi].m;

		for (uint32_t p = 0; p < 32 && ((uint64_t)m << p) <= n; p++)
			if ((m << p) >= 4)
				s[cnt++] = (struct size){ m << p, m, p, p + (m > 1 ? m - 1 : 0) };
	}
	qsort(s, cnt, sizeof(*s), size_cmp);
	for (uint32_t i = 0; i < cnt; i++)
		if (!out || s[out - 1].size != s[i].size)
			s[out++] = s[i];
	return out;
}

static int find_size(const struct size *s, uint32_t cnt, uint32_t want)
{
	for (uint32_t i = 0; i < cnt; i++)
		if (s[i].size == want)
			return (int)i;
	return -1;
}

struct plan {
	uint32_t n_blocks;
	int idx[3];
	uint32_t min_size;
	uint64_t cost; /* total adds */
};

/* Better: larger smallest block (mixing), then fewer blocks, then fewer adds. */
static bool plan_better(const struct plan *a, const struct plan *b)
{
	if (!b->n_blocks)
		return true;
	if (a->min_size != b->min_size)
		return a->min_size > b->min_size;
	if (a->n_blocks != b->n_blocks)
		return a->n_blocks < b->n_blocks;
	return a->cost < b->cost;
}

static void consider(const struct size *s, const int *idx, uint32_t nb, struct plan *best)
{
	struct plan p = { .n_blocks = nb, .min_size = UINT32_MAX };

	for (uint32_t i = 0; i < nb; i++) {
		p.idx[i] = idx[i];
		p.min_size = s[idx[i]].size < p.min_size ? s[idx[i]].size : p.min_size;
		p.cost += (uint64_t)s[idx[i]].size * s[idx[i]].cost;
	}
	if (plan_better(&p, best))
		*best = p;
}

static void add_block(struct rht *t, uint32_t *off, uint32_t m, uint32_t p)
{
	struct rht_block *b = &t->blk[t->n_blocks++];

	b->off = *off;
	b->m = m;
	b->p_log2 = p;
	b->size = m << p;
	*off += b->size;
}

static void make_plan(struct rht *t, uint32_t n)
{
	struct size s[5 * 32];
	struct plan best = { 0 };
	uint32_t cnt = list_sizes(n, s), off = 0;
	int i0;

	t->n_blocks = 0;
	i0 = find_size(s, cnt, n);
	if (i0 >= 0) {
		add_block(t, &off, s[i0].m, s[i0].p);
		return;
	}
	for (uint32_t a = 0; a < cnt; a++) {
		for (uint32_t b = a; b < cnt; b++) {
			uint32_t rest;
			int c;

			if (s[a].size + s[b].size > n)
				continue;
			rest = n - s[a].size - s[b].size;
			if (rest == 0) {
				consider(s, (int[]){ (int)a, (int)b }, 2, &best);
				continue;
			}
			if (rest > s[b].size)
				continue; /* keep a >= b >= c: each triple once */
			c = find_size(s, cnt, rest);
			if (c >= 0)
				consider(s, (int[]){ (int)a, (int)b, c }, 3, &best);
		}
	}
	if (best.n_blocks) {
		for (uint32_t i = 0; i < best.n_blocks; i++)
			add_block(t, &off, s[best.idx[i]].m, s[best.idx[i]].p);
		return;
	}
	/* binary expansion of n (a multiple of 4): at most 22 blocks */
	for (uint32_t p = 31; p >= 2; p--)
		if (n & (1u << p))
			add_block(t, &off, 1, p);
}

/* splitmix64: the seed -> sign stream of the file format (see rht.h). */
static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The [m][m] sign masks @h as quad codes [m][m / 4] (struct rht.hquad) into @q. */
static void quad_codes(const uint32_t *h, uint32_t m, uint8_t *q)
{
	for (uint32_t r = 0; r < m; r++)
		for (uint32_t c = 0; c < m; c += 4, q++) {
			*q = 0;
			for (uint32_t k = 0; k < 4; k++)
				if (!h[(size_t)r * m + c + k])
					*q |= (uint8_t)(1u << k);
		}
}

int rht_init(struct rht *t, uint32_t n, uint64_t seed)
{
	uint64_t state = seed, word = 0;
	size_t n_mask = 0, n_quad = 0;

	memset(t, 0, sizeof(*t));
	if (n < 4 || n % 4 || n > RHT_MAX_N)
		return -EINVAL;
	t->n = n;
	t->seed = seed;
	make_plan(t, n);
	for (uint32_t b = 0; b < t->n_blocks; b++) {
		t->blk[b].h_off = (uint32_t)n_mask;
		t->blk[b].ht_off = (uint32_t)(n_mask + (size_t)t->blk[b].m * t->blk[b].m);
		n_mask += 2 * (size_t)t->blk[b].m * t->blk[b].m;
		t->blk[b].hq_off = (uint32_t)n_quad;
		t->blk[b].hqt_off = (uint32_t)(n_quad + (size_t)t->blk[b].m * (t->blk[b].m / 4));
		n_quad += 2 * (size_t)t->blk[b].m * (t->blk[b].m / 4);
	}
	t->sign = malloc((size_t)n * sizeof(uint32_t));
	t->hmask = malloc(n_mask * sizeof(uint32_t));
	t->hquad = malloc(n_quad ? n_quad : 1);
	if (!t->sign || !t->hmask || !t->hquad) {
		rht_done(t);
		return -ENOMEM;
	}
	for (uint32_t j = 0; j < n; j++) {
		if (j % 64 == 0)
			word = splitmix64(&state);
		t->sign[j] = (word >> (j % 64)) & 1 ? NEG : 0;
	}
	for (uint32_t b = 0; b < t->n_blocks; b++) {
		uint32_t m = t->blk[b].m, oi = order_index(m);
		uint32_t *h = t->hmask + t->blk[b].h_off;
		uint32_t *ht = t->hmask + t->blk[b].ht_off;

		for (uint32_t r = 0; r < m; r++)
			for (uint32_t c = 0; c < m; c++) {
				uint32_t v = small_entry(oi, r, c) < 0 ? NEG : 0;

				h[(size_t)r * m + c] = v;
				ht[(size_t)c * m + r] = v;
			}
		if (m > 1) {
			quad_codes(h, m, t->hquad + t->blk[b].hq_off);
			quad_codes(ht, m, t->hquad + t->blk[b].hqt_off);
		}
	}
	return 0;
}

void rht_done(struct rht *t)
{
	if (!t)
		return;
	free(t->sign);
	free(t->hmask);
	free(t->hquad);
	t->sign = NULL;
	t->hmask = NULL;
	t->hquad = NULL;
	t->n = 0;
	t->n_blocks = 0;
}

uint32_t rht_scale(const struct rht *t, uint32_t j)
{
	for (uint32_t b = 0; b < t->n_blocks; b++)
		if (j - t->blk[b].off < t->blk[b].size)
			return t->blk[b].size;
	return 0;
}

void rht_matrix(const struct rht *t, bool transposed, float *M)
{
	uint32_t n = t->n;

	memset(M, 0, (size_t)n * n * sizeof(float));
	for (uint32_t b = 0; b < t->n_blocks; b++) {
		const struct rht_block *bk = &t->blk[b];
		const uint32_t *h = t->hmask + bk->h_off;
		uint32_t P = 1u << bk->p_log2;

		for (uint32_t r = 0; r < bk->size; r++)
			for (uint32_t c = 0; c < bk->size; c++) {
				uint32_t i = r / P, j = r % P, l = c / P, jc = c % P,
					 gc = bk->off + c;
				int v = __builtin_popcount(j & jc) & 1 ? -1 : 1;

				if (h[(size_t)i * bk->m + l])
					v = -v;
				if (t->sign[gc])
					v = -v;
				if (transposed)
					M[(size_t)gc * n + bk->off + r] = (float)v;
				else
					M[(size_t)(bk->off + r) * n + gc] = (float)v;
			}
	}
}

int rht_apply_isa(const struct rht *t, enum lut_isa isa, bool inverse, float *x, uint32_t m)
{
	if ((unsigned)isa >= LUT_ISA_COUNT)
		return -EINVAL;
	if (isa == LUT_ISA_AUTO)
		isa = lut_isa_auto();
	if (!lut_isa_supported(isa))
		return -EOPNOTSUPP;
	switch (isa) {
	case LUT_ISA_AVX512:
		rht_rows_avx512(t, x, m, inverse);
		break;
	case LUT_ISA_AVX2:
		rht_rows_avx2(t, x, m, inverse);
		break;
	default:
		rht_rows_ref(t, x, m, inverse);
	}
	return 0;
}

int rht_apply(const struct rht *t, float *x, uint32_t m)
{
	return rht_apply_isa(t, LUT_ISA_AUTO, false, x, m);
}

int rht_apply_inverse(const struct rht *t, float *x, uint32_t m)
{
	return rht_apply_isa(t, LUT_ISA_AUTO, true, x, m);
}
