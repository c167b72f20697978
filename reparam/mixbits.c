// SPDX-License-Identifier: MIT
/*
 * Mixed-bit allocation driver: measurement hooks for the calibration pass, the knapsack (or
 * proxy) solve, the bits_of hook of the real conversion, and the measurement file.
 */
#include "reparam/mixbits.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t widths[MIXBITS_N_WIDTHS] = { 2, 3, 4 };

uint32_t mixbits_width(uint32_t i)
{
	return i < MIXBITS_N_WIDTHS ? widths[i] : 0;
}

static int width_index(uint32_t bits)
{
	for (uint32_t i = 0; i < MIXBITS_N_WIDTHS; i++)
		if (widths[i] == bits)
			return (int)i;
	return -1;
}

static const char *const alloc_names[MIXBITS_ALLOC_COUNT] = {
	[MIXBITS_EXACT] = "exact",
	[MIXBITS_PROXY] = "proxy",
};

const char *mixbits_alloc_name(enum mixbits_alloc a)
{
	return (unsigned)a < MIXBITS_ALLOC_COUNT ? alloc_names[a] : "?";
}

int mixbits_alloc_parse(const char *name)
{
	for (int i = 0; name && i < MIXBITS_ALLOC_COUNT; i++)
		if (!strcmp(name, alloc_names[i]))
			return i;
	return -EINVAL;
}

static const char *const weight_names[MIXBITS_WEIGHT_COUNT] = {
	[MIXBITS_WEIGHT_REL] = "rel",
	[MIXBITS_WEIGHT_ABS] = "abs",
};

const char *mixbits_weight_name(enum mixbits_weight w)
{
	return (unsigned)w < MIXBITS_WEIGHT_COUNT ? weight_names[w] : "?";
}

int mixbits_weight_parse(const char *name)
{
	for (int i = 0; name && i < MIXBITS_WEIGHT_COUNT; i++)
		if (!strcmp(name, weight_names[i]))
			return i;
	return -EINVAL;
}

double mixbits_weighted_err(const struct mixbits_layer *l, uint32_t wi, enum mixbits_weight weight)
{
	double x = wi < MIXBITS_N_WIDTHS ? l->err[wi] : NAN;

	if (weight == MIXBITS_WEIGHT_ABS)
		return x;
	/* a layer with no output (W or H zero) has no error either: it costs nothing */
	return l->energy > 0 ? x / l->energy : 0;
}

/* Methods whose result is a BCQ weight with a per-tensor width and that use H. */
static bool method_ok(enum reparam_method m)
{
	return m == REPARAM_SHIFTADD_LAT || m == REPARAM_SHIFTADD_ACC || m == REPARAM_SHIFTADD_RHT;
}

int mixbits_init(struct mixbits *mb, const struct reparam_opts *q, uint32_t base_bits,
		 struct errbuf *e)
{
	memset(mb, 0, sizeof(*mb));
	if (!method_ok(q->method))
		return errbuf_set(
			e, -EINVAL,
			"mixed bits need shiftadd-lat, shiftadd-acc or shiftadd-rht, not %s",
			reparam_method_name(q->method));
	if (width_index(base_bits) < 0)
		return errbuf_set(e, -EINVAL, "base width %u is not a candidate (2, 3 or 4)",
				  base_bits);
	mb->q = *q;
	mb->q.bits = base_bits;
	mb->base_bits = base_bits;
	mb->exact = true;
	if (pthread_mutex_init(&mb->lock, NULL))
		return -ENOMEM;
	mb->cap = 1; /* marks the mutex as initialized for mixbits_done() */
	return 0;
}

void mixbits_done(struct mixbits *mb)
{
	if (!mb || !mb->cap)
		return;
	free(mb->layers);
	pthread_mutex_destroy(&mb->lock);
	memset(mb, 0, sizeof(*mb));
}

static void fill_costs(const struct reparam_opts *q, struct mixbits_layer *l)
{
	struct reparam_opts o = *q;

	for (uint32_t i = 0; i < MIXBITS_N_WIDTHS; i++) {
		o.bits = widths[i];
		l->cost_bits[i] = reparam_storage_bits(&o, l->n_rows, l->n_cols);
	}
}

static int find_layer(const struct mixbits *mb, const char *name)
{
	for (uint32_t i = 0; i < mb->n_layers; i++)
		if (!strcmp(mb->layers[i].name, name))
			return (int)i;
	return -1;
}

/* The layer named @name, created if new. Caller holds the lock. NULL on allocation failure. */
static struct mixbits_layer *layer_get(struct mixbits *mb, const char *name, uint32_t n_rows,
				       uint32_t n_cols)
{
	struct mixbits_layer *l;
	int i = find_layer(mb, name);

	if (i >= 0)
		return &mb->layers[i];
	if (mb->n_layers + 1 >= mb->cap) {
		uint32_t cap = mb->cap < 16 ? 16 : 2 * mb->cap;

		l = realloc(mb->layers, cap * sizeof(*l));
		if (!l)
			return NULL;
		mb->layers = l;
		mb->cap = cap;
	}
	l = &mb->layers[mb->n_layers++];
	memset(l, 0, sizeof(*l));
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->n_rows = n_rows;
	l->n_cols = n_cols;
	for (uint32_t j = 0; j < MIXBITS_N_WIDTHS; j++)
		l->err[j] = NAN;
	l->energy = NAN;
	fill_costs(&mb->q, l);
	return l;
}

static void hook_fail(struct mixbits *mb, int ret, const char *name, const struct errbuf *e)
{
	pthread_mutex_lock(&mb->lock);
	if (!mb->hook_ret) {
		mb->hook_ret = ret;
		errbuf_set(&mb->hook_e, ret, "%s: %s", name, errbuf_str(e, ret));
	}
	pthread_mutex_unlock(&mb->lock);
}

/*
 * Record @err for @name at width index @wi. The slot of a layer is written by the one thread
 * that quantizes it, but the array may move when another thread adds a layer: hence the lock.
 */
static void record(struct mixbits *mb, const char *name, uint32_t n_rows, uint32_t n_cols, int wi,
		   double err, const double *score, const double *energy)
{
	struct mixbits_layer *l;

	pthread_mutex_lock(&mb->lock);
	l = layer_get(mb, name, n_rows, n_cols);
	if (l) {
		if (isnan(l->err[wi]))
			l->n_measured++;
		l->err[wi] = err;
		if (score)
			l->score = *score;
		if (energy)
			l->energy = *energy;
	} else if (!mb->hook_ret) {
		mb->hook_ret = -ENOMEM;
	}
	pthread_mutex_unlock(&mb->lock);
}

static uint32_t base_bits_of(void *arg, const char *name)
{
	const struct mixbits *mb = arg;

	(void)name;
	return mb->base_bits;
}

/* Pass-1 hook: the non-base widths and the proxy score, with the Hessian the driver uses. */
static void measure(void *arg, const char *name, const float *W, uint32_t n_out, uint32_t n_in,
		    const double *H)
{
	struct mixbits *mb = arg;
	struct errbuf e = { { 0 } };
	double score, energy;
	float *zero;
	int r;

	if (!H) {
		hook_fail(mb, -EINVAL, name, &(struct errbuf){ "no Hessian" });
		return;
	}
	r = bitalloc_proxy_score(W, n_out, n_in, H, mb->q.percdamp, &score, &e);
	if (r < 0) {
		hook_fail(mb, r, name, &e);
		return;
	}
	/* the output energy tr(W H W^T): the error of quantizing W to zero */
	zero = calloc((size_t)n_out * n_in, sizeof(*zero));
	r = zero ? reparam_output_error(W, zero, n_out, n_in, H, &energy) : -ENOMEM;
	free(zero);
	if (r < 0) {
		hook_fail(mb, r, name, &(struct errbuf){ "output energy" });
		return;
	}
	for (uint32_t i = 0; i < MIXBITS_N_WIDTHS; i++) {
		struct reparam_opts o = mb->q;
		struct reparam_result res = { 0 };

		if (widths[i] == mb->base_bits)
			continue; /* the driver quantizes this one: mixbits_on_layer */
		o.bits = widths[i];
		r = reparam_quantize(&o, W, n_out, n_in, H, &res, &e);
		if (r < 0) {
			hook_fail(mb, r, name, &e);
			return;
		}
		record(mb, name, n_out, n_in, (int)i, res.err_output, &score, &energy);
		reparam_result_done(&res);
	}
}

static void mixbits_on_layer(void *arg, const struct calib_tensor *t, uint32_t done, uint32_t total)
{
	struct mixbits *mb = arg;

	if (!t->res.has_qweight || t->res.qw.bits != mb->base_bits) {
		hook_fail(mb, -EINVAL, t->name,
			  &(struct errbuf){ "not quantized at the base width" });
	} else {
		record(mb, t->name, t->res.n_rows, t->res.n_cols, width_index(mb->base_bits),
		       t->res.err_output, NULL, NULL);
		/* the driver reports in file order: keep that order for tables and files */
		pthread_mutex_lock(&mb->lock);
		for (uint32_t i = 0; i < mb->n_layers; i++) {
			if (strcmp(mb->layers[i].name, t->name))
				continue;
			if (i != done - 1 && done - 1 < mb->n_layers) {
				struct mixbits_layer tmp = mb->layers[done - 1];

				mb->layers[done - 1] = mb->layers[i];
				mb->layers[i] = tmp;
			}
			break;
		}
		pthread_mutex_unlock(&mb->lock);
	}
	if (mb->chained_on_layer)
		mb->chained_on_layer(mb->chained_arg, t, done, total);
}

void mixbits_measure_hooks(struct mixbits *mb, struct calib_run *run)
{
	mb->chained_on_layer = run->on_layer;
	mb->chained_arg = run->on_layer_arg;
	run->q = mb->q;
	run->bits_of = base_bits_of;
	run->on_hessian = measure;
	run->hook_arg = mb;
	run->on_layer = mixbits_on_layer;
	run->on_layer_arg = mb;
}

int mixbits_measure_check(struct mixbits *mb, struct errbuf *e)
{
	if (mb->hook_ret)
		return errbuf_set(e, mb->hook_ret, "%s", mb->hook_e.msg);
	if (!mb->n_layers)
		return errbuf_set(e, -EINVAL, "no layer was measured");
	for (uint32_t i = 0; i < mb->n_layers; i++) {
		const struct mixbits_layer *l = &mb->layers[i];

		if (l->n_measured != MIXBITS_N_WIDTHS)
			return errbuf_set(e, -EINVAL, "%s: %u of %u widths measured", l->name,
					  l->n_measured, MIXBITS_N_WIDTHS);
		for (uint32_t j = 0; j < MIXBITS_N_WIDTHS; j++)
			if (!(l->err[j] >= 0 && isfinite(l->err[j])))
				return errbuf_set(e, -EINVAL, "%s: error at %u bits is %g", l->name,
						  widths[j], l->err[j]);
		if (!(l->energy >= 0) && !isnan(l->energy))
			return errbuf_set(e, -EINVAL, "%s: output energy is %g", l->name,
					  l->energy);
	}
	return 0;
}

int mixbits_solve(struct mixbits *mb, enum mixbits_alloc alloc, enum mixbits_weight weight,
		  double avg_bits_budget, struct errbuf *e)
{
	struct bitalloc_problem p = { 0 };
	uint32_t L = mb->n_layers, *choice = NULL;
	double *err = NULL, *score = NULL, params = 0, cost = 0, pred = 0;
	uint64_t *cst = NULL, *np = NULL, budget, total = 0, nsum = 0;
	bool exact = true;
	int r;

	if ((unsigned)alloc >= MIXBITS_ALLOC_COUNT)
		return errbuf_set(e, -EINVAL, "unknown allocator");
	if ((unsigned)weight >= MIXBITS_WEIGHT_COUNT)
		return errbuf_set(e, -EINVAL, "unknown error weight");
	if (!(avg_bits_budget > 0 && isfinite(avg_bits_budget)))
		return errbuf_set(e, -EINVAL, "bad average-bits budget %g", avg_bits_budget);
	r = mixbits_measure_check(mb, e);
	if (r < 0)
		return r;
	for (uint32_t l = 0; l < L && weight != MIXBITS_WEIGHT_ABS; l++)
		if (!isfinite(mb->layers[l].energy))
			return errbuf_set(e, -EINVAL,
					  "%s: no output energy (a version 1 measurement): "
					  "measure again or use the abs weight",
					  mb->layers[l].name);
	err = malloc((size_t)L * MIXBITS_N_WIDTHS * sizeof(*err));
	cst = malloc((size_t)L * MIXBITS_N_WIDTHS * sizeof(*cst));
	np = malloc(L * sizeof(*np));
	score = malloc(L * sizeof(*score));
	choice = malloc(L * sizeof(*choice));
	r = -ENOMEM;
	if (!err || !cst || !np || !score || !choice)
		goto out;
	for (uint32_t l = 0; l < L; l++) {
		const struct mixbits_layer *ly = &mb->layers[l];

		for (uint32_t j = 0; j < MIXBITS_N_WIDTHS; j++)
			err[(size_t)l * MIXBITS_N_WIDTHS + j] = mixbits_weighted_err(ly, j, weight);
		memcpy(cst + (size_t)l * MIXBITS_N_WIDTHS, ly->cost_bits, sizeof(ly->cost_bits));
		np[l] = (uint64_t)ly->n_rows * ly->n_cols;
		score[l] = ly->score;
		nsum += np[l];
	}
	p = (struct bitalloc_problem){ .n_layers = L,
				       .n_choices = MIXBITS_N_WIDTHS,
				       .err = err,
				       .cost_bits = cst,
				       .n_params = np,
				       .avg_bits = avg_bits_budget };
	if (alloc == MIXBITS_EXACT)
		r = bitalloc_exact(&p, 0, choice, &exact, e);
	else
		r = bitalloc_proxy(&p, score, choice, e);
	if (r < 0)
		goto out;
	/* the solvers promise the budget; check it here too, since a file depends on it */
	budget = (uint64_t)floorl((long double)avg_bits_budget * nsum);
	for (uint32_t l = 0; l < L; l++) {
		uint32_t j = choice[l];

		total += cst[(size_t)l * MIXBITS_N_WIDTHS + j];
		pred += err[(size_t)l * MIXBITS_N_WIDTHS + j];
	}
	if (total > budget) {
		r = errbuf_set(e, -ERANGE, "allocation uses %llu bits, budget %llu",
			       (unsigned long long)total, (unsigned long long)budget);
		goto out;
	}
	for (uint32_t l = 0; l < L; l++)
		mb->layers[l].bits = widths[choice[l]];
	cost = (double)total;
	params = (double)nsum;
	mb->alloc = alloc;
	mb->weight = weight;
	mb->avg_bits_budget = avg_bits_budget;
	mb->avg_bits = cost / params;
	mb->predicted_err = pred;
	mb->exact = exact;
	r = 0;
out:
	free(err);
	free(cst);
	free(np);
	free(score);
	free(choice);
	return r;
}

uint32_t mixbits_lookup(const struct mixbits *mb, const char *name)
{
	int i = find_layer(mb, name);

	return i >= 0 ? mb->layers[i].bits : 0;
}

static uint32_t chosen_bits_of(void *arg, const char *name)
{
	struct mixbits *mb = arg;
	uint32_t b = mixbits_lookup(mb, name);

	if (b)
		return b;
	pthread_mutex_lock(&mb->lock);
	mb->n_lookup_miss++;
	pthread_mutex_unlock(&mb->lock);
	return mb->base_bits;
}

void mixbits_convert_hooks(struct mixbits *mb, struct calib_run *run)
{
	run->q = mb->q;
	run->q.bits = 0; /* every width comes from bits_of; the file says shiftadd.bits = 0 */
	run->bits_of = chosen_bits_of;
	run->on_hessian = NULL;
	run->hook_arg = mb;
}

/* --- the measurement file ------------------------------------------------------------ */

/* 2 added the per-layer output energy; 1 is still read (energy NAN: abs weight only) */
#define MIXBITS_FILE_VERSION 2

int mixbits_save(const struct mixbits *mb, const char *path, struct errbuf *e)
{
	cJSON *root = cJSON_CreateObject(), *arr, *w;
	char *txt = NULL;
	FILE *f = NULL;
	int r = -ENOMEM;

	if (!root)
		return -ENOMEM;
	cJSON_AddNumberToObject(root, "version", MIXBITS_FILE_VERSION);
	cJSON_AddStringToObject(root, "method", reparam_method_name(mb->q.method));
	cJSON_AddNumberToObject(root, "apot", mb->q.apot);
	cJSON_AddNumberToObject(root, "rounds", mb->q.rounds);
	cJSON_AddNumberToObject(root, "base_bits", mb->base_bits);
	w = cJSON_AddArrayToObject(root, "widths");
	arr = cJSON_AddArrayToObject(root, "layers");
	if (!w || !arr)
		goto out;
	for (uint32_t i = 0; i < MIXBITS_N_WIDTHS; i++)
		cJSON_AddItemToArray(w, cJSON_CreateNumber(widths[i]));
	for (uint32_t i = 0; i < mb->n_layers; i++) {
		const struct mixbits_layer *l = &mb->layers[i];
		cJSON *o = cJSON_CreateObject();

		if (!o)
			goto out;
		cJSON_AddItemToArray(arr, o);
		cJSON_AddStringToObject(o, "name", l->name);
		cJSON_AddNumberToObject(o, "rows", l->n_rows);
		cJSON_AddNumberToObject(o, "cols", l->n_cols);
		cJSON_AddItemToObject(o, "err", cJSON_CreateDoubleArray(l->err, MIXBITS_N_WIDTHS));
		cJSON_AddNumberToObject(o, "score", l->score);
		if (isfinite(l->energy))
			cJSON_AddNumberToObject(o, "energy", l->energy);
	}
	txt = cJSON_Print(root);
	if (!txt)
		goto out;
	f = fopen(path, "w");
	if (!f) {
		r = errbuf_set(e, -errno, "cannot write '%s': %s", path, strerror(errno));
		goto out;
	}
	r = fputs(txt, f) < 0 || fputc('\n', f) == EOF ? -EIO : 0;
	if (fclose(f) && r == 0)
		r = -errno;
	if (r < 0)
		errbuf_set(e, r, "cannot write '%s': %s", path, strerror(-r));
out:
	free(txt);
	cJSON_Delete(root);
	return r;
}

static int read_text(const char *path, char **ret, struct errbuf *e)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (!f)
		return errbuf_set(e, -errno, "cannot open '%s': %s", path, strerror(errno));
	for (;;) {
		if (n + 4096 + 1 > cap) {
			char *t;

			if (cap > (64u << 20)) {
				free(buf);
				fclose(f);
				return errbuf_set(e, -EBADMSG, "'%s' is too large", path);
			}
			cap = cap ? 2 * cap : 65536;
			t = realloc(buf, cap);
			if (!t) {
				free(buf);
				fclose(f);
				return -ENOMEM;
			}
			buf = t;
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);

		n += got;
		if (got == 0)
			break;
	}
	fclose(f);
	buf[n] = 0;
	*ret = buf;
	return 0;
}

static bool get_u32(const cJSON *o, const char *key, uint32_t *ret)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= UINT32_MAX) ||
	    v->valuedouble != (double)(uint32_t)v->valuedouble)
		return false;
	*ret = (uint32_t)v->valuedouble;
	return true;
}

static int parse_layer(struct mixbits *mb, const cJSON *o, uint32_t i, uint32_t ver,
		       struct errbuf *e)
{
	const cJSON *energy = cJSON_GetObjectItemCaseSensitive(o, "energy");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
	const cJSON *err = cJSON_GetObjectItemCaseSensitive(o, "err");
	const cJSON *score = cJSON_GetObjectItemCaseSensitive(o, "score");
	struct mixbits_layer *l;
	uint32_t rows, cols, j = 0;
	const cJSON *v;

	if (!cJSON_IsString(name) || strlen(name->valuestring) >= sizeof(l->name) ||
	    !get_u32(o, "rows", &rows) || !get_u32(o, "cols", &cols) || !rows || !cols ||
	    !cJSON_IsArray(err) || cJSON_GetArraySize(err) != MIXBITS_N_WIDTHS ||
	    !cJSON_IsNumber(score) || !isfinite(score->valuedouble))
		return errbuf_set(e, -EBADMSG, "layer %u: bad name, shape, err or score", i);
	if (ver >= 2 && (!cJSON_IsNumber(energy) || !(energy->valuedouble >= 0) ||
			 !isfinite(energy->valuedouble)))
		return errbuf_set(e, -EBADMSG, "layer %u: bad or missing energy", i);
	if (find_layer(mb, name->valuestring) >= 0)
		return errbuf_set(e, -EBADMSG, "layer %u: duplicate name", i);
	l = layer_get(mb, name->valuestring, rows, cols);
	if (!l)
		return -ENOMEM;
	l->score = score->valuedouble;
	if (ver >= 2)
		l->energy = energy->valuedouble;
	cJSON_ArrayForEach(v, err)
	{
		if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && isfinite(v->valuedouble)))
			return errbuf_set(e, -EBADMSG, "layer %u: bad error value", i);
		l->err[j++] = v->valuedouble;
	}
	l->n_measured = MIXBITS_N_WIDTHS;
	return 0;
}

int mixbits_load(struct mixbits *mb, const struct reparam_opts *q, const char *path,
		 struct errbuf *e)
{
	const cJSON *layers, *method, *w, *v;
	uint32_t ver, apot, rounds, base, i = 0;
	char *txt = NULL;
	cJSON *root;
	int r;

	memset(mb, 0, sizeof(*mb));
	r = read_text(path, &txt, e);
	if (r < 0)
		return r;
	root = cJSON_Parse(txt);
	free(txt);
	if (!root)
		return errbuf_set(e, -EBADMSG, "'%s' is not JSON", path);
	method = cJSON_GetObjectItemCaseSensitive(root, "method");
	w = cJSON_GetObjectItemCaseSensitive(root, "widths");
	layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
	if (!get_u32(root, "version", &ver) || ver < 1 || ver > MIXBITS_FILE_VERSION ||
	    !cJSON_IsString(method) || !get_u32(root, "apot", &apot) ||
	    !get_u32(root, "rounds", &rounds) || !get_u32(root, "base_bits", &base) ||
	    !cJSON_IsArray(w) || cJSON_GetArraySize(w) != MIXBITS_N_WIDTHS ||
	    !cJSON_IsArray(layers)) {
		r = errbuf_set(e, -EBADMSG, "'%s': not a mixbits measurement (version %d)", path,
			       MIXBITS_FILE_VERSION);
		goto out;
	}
	cJSON_ArrayForEach(v, w)
	{
		if (!cJSON_IsNumber(v) || v->valuedouble != widths[i++]) {
			r = errbuf_set(e, -EBADMSG, "'%s': other candidate widths", path);
			goto out;
		}
	}
	if (strcmp(method->valuestring, reparam_method_name(q->method)) || apot != q->apot ||
	    rounds != q->rounds) {
		r = errbuf_set(
			e, -EINVAL,
			"'%s' was measured with %s apot %u rounds %u, not %s apot %u rounds %u",
			path, method->valuestring, apot, rounds, reparam_method_name(q->method),
			q->apot, q->rounds);
		goto out;
	}
	r = mixbits_init(mb, q, base, e);
	if (r < 0)
		goto out;
	i = 0;
	cJSON_ArrayForEach(v, layers)
	{
		struct errbuf le = { { 0 } };

		r = parse_layer(mb, v, i++, ver, &le);
		if (r < 0) {
			r = errbuf_set(e, r, "'%s': %s", path, errbuf_str(&le, r));
			mixbits_done(mb);
			goto out;
		}
	}
	if (!mb->n_layers) {
		mixbits_done(mb);
		r = errbuf_set(e, -EBADMSG, "'%s' has no layers", path);
	}
out:
	cJSON_Delete(root);
	return r;
}
