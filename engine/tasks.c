// SPDX-License-Identifier: MIT
#include "engine/tasks.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "engine/tokenizer.h"

/* ---- task files ---- */

void task_file_free(struct task_file *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->n_items; i++) {
		struct task_item *it = &f->items[i];

		free(it->query);
		for (uint32_t c = 0; c < it->n_choices; c++)
			free(it->choices[c]);
		free(it->choices);
	}
	free(f->items);
	free(f);
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static bool utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		unsigned c = p[i], len, cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4, cp = c & 0x07;
		else
			return false;
		if (n - i < len)
			return false;
		for (unsigned k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* A copy of JSON string @v, or NULL with *ret set (-EBADMSG with a message, or -ENOMEM). */
static char *json_text(const cJSON *v, const char *what, uint32_t line, int *ret, struct errbuf *e)
{
	size_t n;
	char *s;

	if (!cJSON_IsString(v) || !v->valuestring) {
		*ret = errbuf_set(e, -EBADMSG, "line %u: %s is not a string", line, what);
		return NULL;
	}
	n = strlen(v->valuestring);
	if (!utf8_valid(v->valuestring, n)) {
		*ret = errbuf_set(e, -EBADMSG, "line %u: %s is not valid UTF-8", line, what);
		return NULL;
	}
	s = strdup(v->valuestring);
	if (!s)
		*ret = -ENOMEM;
	return s;
}

/* Fill @it from the object on line @line. On failure @it holds what was allocated so far. */
static int parse_item(const cJSON *o, uint32_t line, struct task_item *it, struct errbuf *e)
{
	const cJSON *q, *ch, *g;
	char what[32];
	int n, r = 0;

	it->line = line;
	if (!cJSON_IsObject(o))
		return errbuf_set(e, -EBADMSG, "line %u: not a JSON object", line);
	q = cJSON_GetObjectItemCaseSensitive(o, "query");
	ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
	g = cJSON_GetObjectItemCaseSensitive(o, "gold");
	if (!q || !ch || !g)
		return errbuf_set(e, -EBADMSG, "line %u: missing field \"%s\"", line,
				  !q	? "query"
				  : !ch ? "choices"
					: "gold");
	it->query = json_text(q, "\"query\"", line, &r, e);
	if (!it->query)
		return r;
	if (!cJSON_IsArray(ch))
		return errbuf_set(e, -EBADMSG, "line %u: \"choices\" is not an array", line);
	n = cJSON_GetArraySize(ch);
	if (n < 2 || n > TASK_MAX_CHOICES)
		return errbuf_set(e, -EBADMSG, "line %u: %d choices (need 2 to %d)", line, n,
				  TASK_MAX_CHOICES);
	it->choices = calloc((size_t)n, sizeof(*it->choices));
	if (!it->choices)
		return -ENOMEM;
	for (const cJSON *c = ch->child; c; c = c->next) {
		snprintf(what, sizeof(what), "choice %u", it->n_choices);
		it->choices[it->n_choices] = json_text(c, what, line, &r, e);
		if (!it->choices[it->n_choices])
			return r;
		if (!*it->choices[it->n_choices++])
			return errbuf_set(e, -EBADMSG, "line %u: %s is empty", line, what);
	}
	if (!cJSON_IsNumber(g) || g->valuedouble != floor(g->valuedouble))
		return errbuf_set(e, -EBADMSG, "line %u: \"gold\" is not an integer", line);
	if (g->valuedouble < 0 || g->valuedouble >= it->n_choices)
		return errbuf_set(e, -EBADMSG, "line %u: \"gold\" %.0f out of range for %u choices",
				  line, g->valuedouble, it->n_choices);
	it->gold = (uint32_t)g->valuedouble;
	return 0;
}

static bool blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

int task_file_parse(const char *buf, size_t len, struct task_file **ret, struct errbuf *e)
{
	struct task_file *f = calloc(1, sizeof(*f));
	uint32_t cap = 0, line = 0;
	size_t at = 0;
	int r = 0;

	if (!f)
		return -ENOMEM;
	while (at < len) {
		const char *s = buf + at, *nl = memchr(s, '\n', len - at), *end;
		size_t n = nl ? (size_t)(nl - s) : len - at;
		cJSON *o;

		at += n + (nl ? 1 : 0);
		if (++line == 0) {
			r = errbuf_set(e, -EOVERFLOW, "too many lines");
			goto out_free;
		}
		if (blank(s, n))
			continue;
		if (f->n_items == cap) {
			uint32_t nc = cap ? cap * 2 : 256;
			struct task_item *ni;

			if (nc < cap) {
				r = errbuf_set(e, -EOVERFLOW, "line %u: too many items", line);
				goto out_free;
			}
			ni = realloc(f->items, (size_t)nc * sizeof(*ni));
			if (!ni) {
				r = -ENOMEM;
				goto out_free;
			}
			f->items = ni;
			cap = nc;
		}
		o = cJSON_ParseWithLengthOpts(s, n, &end, 0);
		if (!o) {
			r = errbuf_set(e, -EBADMSG, "line %u: not valid JSON (near column %zu)",
				       line, (end ? (size_t)(end - s) : 0) + 1);
			goto out_free;
		}
		if (!blank(end, n - (size_t)(end - s))) {
			cJSON_Delete(o);
			r = errbuf_set(e, -EBADMSG, "line %u: text after the JSON object", line);
			goto out_free;
		}
		memset(&f->items[f->n_items], 0, sizeof(f->items[0]));
		/* counted before parsing so task_file_free() releases a half-filled item */
		r = parse_item(o, line, &f->items[f->n_items++], e);
		cJSON_Delete(o);
		if (r < 0)
			goto out_free;
	}
	if (!f->n_items) {
		r = errbuf_set(e, -EBADMSG, "no items");
		goto out_free;
	}
	*ret = f;
	return 0;

out_free:
	task_file_free(f);
	return r;
}

int task_file_load(const char *path, struct task_file **ret, struct errbuf *e)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;
	int r;

	if (!fp)
		return -errno;
	do {
		if (cap - len < 65536) {
			char *nb = realloc(buf, cap + (cap < 65536 ? 65536 : cap));

			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap += cap < 65536 ? 65536 : cap;
		}
		n = fread(buf + len, 1, cap - len, fp);
		len += n;
	} while (n);
	if (ferror(fp)) {
		r = -EIO;
		goto out;
	}
	r = task_file_parse(buf, len, ret, e);
out:
	free(buf);
	fclose(fp);
	return r;
}

/* ---- context / continuation split ---- */

/*
 * Bytes of trailing whitespace of @s as Python's str.rstrip() sees it (str.isspace: ASCII
 * \t\n\v\f\r, \x1c-\x1f, space, and the Unicode spaces), so the split matches lm-eval's.
 */
static size_t trailing_ws(const char *s, size_t n)
{
	static const uint32_t uni[] = { 0x85,	0xa0,	0x1680, 0x2000, 0x2001, 0x2002, 0x2003,
					0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
					0x2028, 0x2029, 0x202f, 0x205f, 0x3000 };
	const unsigned char *p = (const unsigned char *)s;
	size_t end = n;

	while (end) {
		size_t st = end - 1;
		uint32_t cp;
		bool ws = false;

		if (p[st] < 0x80) {
			if (p[st] == ' ' || (p[st] >= '\t' && p[st] <= '\r') ||
			    (p[st] >= 0x1c && p[st] <= 0x1f)) {
				end = st;
				continue;
			}
			break;
		}
		while (st && end - st < 4 && (p[st] & 0xc0) == 0x80)
			st--;
		cp = p[st] & (p[st] >= 0xf0 ? 0x07 : p[st] >= 0xe0 ? 0x0f : 0x1f);
		for (size_t k = st + 1; k < end; k++)
			cp = cp << 6 | (p[k] & 0x3f);
		for (size_t k = 0; k < sizeof(uni) / sizeof(uni[0]); k++)
			ws |= cp == uni[k];
		if (!ws)
			break;
		end = st;
	}
	return n - end;
}

void task_enc_done(struct task_enc *enc)
{
	if (enc->cont)
		for (uint32_t c = 0; c < enc->n_choices; c++)
			free(enc->cont[c]);
	free(enc->cont);
	free(enc->n_cont);
	free(enc->norm_len);
	free(enc->ctx);
	memset(enc, 0, sizeof(*enc));
}

int task_encode(const struct tokenizer *t, const struct task_item *it, int32_t bos,
		int32_t prefix_tok, struct task_enc *ret)
{
	size_t qlen = strlen(it->query), ws = trailing_ws(it->query, qlen), base = qlen - ws;
	size_t n_ctx_text = 0, n_whole, wcap = 0;
	int32_t *ctx_text = NULL, *whole = NULL;
	char *wbuf = NULL;
	uint32_t lead;
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->n_choices = it->n_choices;
	ret->cont = calloc(it->n_choices, sizeof(*ret->cont));
	ret->n_cont = calloc(it->n_choices, sizeof(*ret->n_cont));
	ret->norm_len = calloc(it->n_choices, sizeof(*ret->norm_len));
	if (!ret->cont || !ret->n_cont || !ret->norm_len)
		return -ENOMEM;
	r = tokenizer_encode(t, it->query, base, true, &ctx_text, &n_ctx_text);
	if (r < 0)
		goto out;
	lead = bos >= 0 ? 1 : 0;
	if (!lead && !n_ctx_text) {
		/* lm-eval scores a choice without context after its prefix token (BOS/EOT) */
		if (prefix_tok < 0) {
			r = -EBADMSG;
			goto out;
		}
		lead = 1;
		bos = prefix_tok;
	}
	if (n_ctx_text + lead > UINT32_MAX / 2) {
		r = -E2BIG;
		goto out;
	}
	ret->n_ctx = (uint32_t)(n_ctx_text + lead);
	ret->ctx = malloc(((size_t)ret->n_ctx) * sizeof(*ret->ctx));
	if (!ret->ctx) {
		r = -ENOMEM;
		goto out;
	}
	if (lead)
		ret->ctx[0] = bos;
	if (n_ctx_text)
		memcpy(ret->ctx + lead, ctx_text, n_ctx_text * sizeof(*ctx_text));
	for (uint32_t c = 0; c < it->n_choices; c++) {
		size_t cl = strlen(it->choices[c]), wl = qlen + 1 + cl;

		if (wl + 1 > wcap) {
			char *nb = realloc(wbuf, wl + 1);

			if (!nb) {
				r = -ENOMEM;
				goto out;
			}
			wbuf = nb;
			wcap = wl + 1;
		}
		/* query with its whitespace moved behind it: query' + ws + " " + choice */
		memcpy(wbuf, it->query, qlen);
		wbuf[qlen] = ' ';
		memcpy(wbuf + qlen + 1, it->choices[c], cl);
		wbuf[wl] = 0;
		r = tokenizer_encode(t, wbuf, wl, true, &whole, &n_whole);
		if (r < 0)
			goto out;
		if (n_whole <= n_ctx_text || n_whole - n_ctx_text > UINT32_MAX / 2 ||
		    cl > UINT32_MAX) {
			r = n_whole <= n_ctx_text ? -EBADMSG : -E2BIG;
			goto out;
		}
		ret->n_cont[c] = (uint32_t)(n_whole - n_ctx_text);
		ret->cont[c] = malloc(ret->n_cont[c] * sizeof(int32_t));
		if (!ret->cont[c]) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(ret->cont[c], whole + n_ctx_text, ret->n_cont[c] * sizeof(int32_t));
		ret->norm_len[c] = (uint32_t)cl;
		free(whole);
		whole = NULL;
	}
	r = 0;
out:
	free(whole);
	free(ctx_text);
	free(wbuf);
	return r;
}

/* ---- scoring ---- */

/* log sum_v exp(row[v]) in double precision */
static double log_sum_exp(const float *row, uint32_t n)
{
	double mx = row[0], s = 0;

	for (uint32_t v = 1; v < n; v++)
		mx = row[v] > mx ? row[v] : mx;
	for (uint32_t v = 0; v < n; v++)
		s += exp((double)row[v] - mx);
	return mx + log(s);
}

int task_loglik_rows(const float *logits, uint32_t n_vocab, const int32_t *targets, uint32_t n,
		     double *ret)
{
	double sum = 0;

	for (uint32_t i = 0; i < n; i++) {
		const float *row = logits + (size_t)i * n_vocab;

		if (targets[i] < 0 || (uint32_t)targets[i] >= n_vocab)
			return -EINVAL;
		sum += (double)row[targets[i]] - log_sum_exp(row, n_vocab);
	}
	*ret = sum;
	return 0;
}

void task_choose(const double *ll, const uint32_t *norm_len, uint32_t n, uint32_t *ret_acc,
		 uint32_t *ret_acc_norm)
{
	uint32_t best = 0, best_norm = 0;

	for (uint32_t c = 1; c < n; c++) {
		if (ll[c] > ll[best])
			best = c;
		if (ll[c] / norm_len[c] > ll[best_norm] / norm_len[best_norm])
			best_norm = c;
	}
	*ret_acc = best;
	*ret_acc_norm = best_norm;
}

void task_tally_add(struct task_tally *t, const struct task_item *it, const double *ll,
		    const uint32_t *norm_len)
{
	uint32_t a, an;

	task_choose(ll, norm_len, it->n_choices, &a, &an);
	t->n++;
	t->n_acc += a == it->gold;
	t->n_acc_norm += an == it->gold;
}

/* Mean of n 0/1 samples with k ones, and its standard error with the n - 1 sample variance. */
static void binary_mean(uint64_t k, uint64_t n, double *mean, double *se)
{
	double p = n ? (double)k / n : 0;

	*mean = p;
	*se = n > 1 ? sqrt(p * (1 - p) / (double)(n - 1)) : 0;
}

void task_tally_stats(const struct task_tally *t, struct task_stats *ret)
{
	ret->n = t->n;
	binary_mean(t->n_acc, t->n, &ret->acc, &ret->acc_se);
	binary_mean(t->n_acc_norm, t->n, &ret->acc_norm, &ret->acc_norm_se);
}

void task_stats_mean(const struct task_stats *s, uint32_t n, struct task_stats *ret)
{
	double v = 0, vn = 0;

	memset(ret, 0, sizeof(*ret));
	if (!n)
		return;
	for (uint32_t i = 0; i < n; i++) {
		ret->n += s[i].n;
		ret->acc += s[i].acc / n;
		ret->acc_norm += s[i].acc_norm / n;
		v += s[i].acc_se * s[i].acc_se;
		vn += s[i].acc_norm_se * s[i].acc_norm_se;
	}
	ret->acc_se = sqrt(v) / n;
	ret->acc_norm_se = sqrt(vn) / n;
}

/* ---- running items through the engine ---- */

#define LOGIT_CHUNK    64
#define CTX_ROUND      64
#define TASK_MAX_BATCH 256

struct scorer {
	const struct model *m;
	struct kv_cache kv;
	bool have_kv;
	int32_t *tok;
	uint32_t *seq, *pos;
	size_t tok_cap;
	float *hidden;
	size_t hidden_cap; /* rows */
	float *logits;	   /* [LOGIT_CHUNK][n_vocab] */
	uint32_t *row_slot;
	int32_t *row_target;
};

static void scorer_done(struct scorer *s)
{
	if (s->have_kv)
		kv_cache_done(&s->kv);
	free(s->tok);
	free(s->seq);
	free(s->pos);
	free(s->hidden);
	free(s->logits);
	free(s->row_slot);
	free(s->row_target);
}

/* Room for @n batch tokens (and their hidden rows). */
static int scorer_reserve(struct scorer *s, size_t n)
{
	size_t dim = s->m->cfg.dim;

	if (n <= s->tok_cap)
		return 0;
	n = n * 2;
	free(s->tok);
	free(s->seq);
	free(s->pos);
	free(s->hidden);
	free(s->row_slot);
	free(s->row_target);
	s->tok = malloc(n * sizeof(*s->tok));
	s->seq = malloc(n * sizeof(*s->seq));
	s->pos = malloc(n * sizeof(*s->pos));
	s->hidden = malloc(n * dim * sizeof(float));
	s->row_slot = malloc(n * sizeof(*s->row_slot));
	s->row_target = malloc(n * sizeof(*s->row_target));
	s->tok_cap = 0;
	if (!s->tok || !s->seq || !s->pos || !s->hidden || !s->row_slot || !s->row_target)
		return -ENOMEM;
	s->tok_cap = n;
	return 0;
}

/* A KV cache of at least @n_seq sequences of @n_ctx positions (contents are not kept). */
static int scorer_kv(struct scorer *s, uint32_t n_seq, uint32_t n_ctx)
{
	uint32_t max_ctx = s->m->cfg.max_ctx;

	if (s->have_kv && s->kv.n_seq >= n_seq && s->kv.n_ctx >= n_ctx)
		return 0;
	if (s->have_kv) {
		n_seq = n_seq > s->kv.n_seq ? n_seq : s->kv.n_seq;
		n_ctx = n_ctx > s->kv.n_ctx ? n_ctx : s->kv.n_ctx;
		kv_cache_done(&s->kv);
		s->have_kv = false;
	}
	n_ctx = (n_ctx + CTX_ROUND - 1) / CTX_ROUND * CTX_ROUND;
	if (max_ctx && n_ctx > max_ctx)
		n_ctx = max_ctx;
	if (kv_cache_init(&s->kv, s->m, n_seq, n_ctx) < 0)
		return -ENOMEM;
	s->have_kv = true;
	return 0;
}

/* Add the log-probabilities of rows [0, n) of s->hidden to ll[row_slot[i]]. */
static int score_rows(struct scorer *s, uint32_t n, double *ll)
{
	uint32_t nv = s->m->cfg.n_vocab, dim = s->m->cfg.dim;

	for (uint32_t r0 = 0; r0 < n; r0 += LOGIT_CHUNK) {
		uint32_t c = n - r0 < LOGIT_CHUNK ? n - r0 : LOGIT_CHUNK;

		model_logits(s->m, s->hidden + (size_t)r0 * dim, c, s->logits);
		for (uint32_t j = 0; j < c; j++) {
			double v;
			int r = task_loglik_rows(s->logits + (size_t)j * nv, nv,
						 &s->row_target[r0 + j], 1, &v);

			if (r < 0)
				return r;
			ll[s->row_slot[r0 + j]] += v;
		}
	}
	return 0;
}

/*
 * Score @n items whose encodings are @enc; choice c of item g gets KV sequence and slot
 * off[g] + c, where off[] is the running sum of choice counts. ll[slot] receives the sums.
 */
static int score_batch(struct scorer *s, const struct task_enc *enc, uint32_t n, double *ll)
{
	uint32_t off[TASK_MAX_BATCH + 1], need_ctx = 0;
	uint32_t dim = s->m->cfg.dim, nv = s->m->cfg.n_vocab;
	size_t n1 = 0, n2 = 0, t;
	int r;

	off[0] = 0;
	for (uint32_t g = 0; g < n; g++) {
		off[g + 1] = off[g] + enc[g].n_choices;
		n1 += enc[g].n_ctx;
		for (uint32_t c = 0; c < enc[g].n_choices; c++) {
			uint32_t len = enc[g].n_ctx + enc[g].n_cont[c] - 1;

			need_ctx = len > need_ctx ? len : need_ctx;
			n2 += enc[g].n_cont[c] - 1;
		}
	}
	if (s->m->cfg.max_ctx && need_ctx > s->m->cfg.max_ctx)
		return -E2BIG;
	r = scorer_kv(s, off[n], need_ctx);
	if (r < 0)
		return r;
	r = scorer_reserve(s, n1 > n2 ? n1 : n2);
	if (r < 0)
		return r;
	memset(ll, 0, off[n] * sizeof(*ll));

	/* step 1: every context in the sequence of its item's first choice */
	t = 0;
	for (uint32_t g = 0; g < n; g++)
		for (uint32_t i = 0; i < enc[g].n_ctx; i++, t++) {
			s->tok[t] = enc[g].ctx[i];
			s->seq[t] = off[g];
			s->pos[t] = i;
		}
	r = model_forward(s->m, &s->kv, s->tok, s->seq, s->pos, (uint32_t)n1, s->hidden);
	if (r < 0)
		return r;
	/* the last context position predicts the first token of every choice: gather those
	 * rows to the front (row g <= its source row, so no pending row is overwritten) */
	n1 = 0;
	for (uint32_t g = 0; g < n; g++) {
		n1 += enc[g].n_ctx;
		if (n1 - 1 != g)
			memcpy(s->hidden + (size_t)g * dim, s->hidden + (n1 - 1) * dim,
			       dim * sizeof(float));
	}
	for (uint32_t g0 = 0; g0 < n; g0 += LOGIT_CHUNK) {
		uint32_t c = n - g0 < LOGIT_CHUNK ? n - g0 : LOGIT_CHUNK;

		model_logits(s->m, s->hidden + (size_t)g0 * dim, c, s->logits);
		for (uint32_t j = 0; j < c; j++) {
			const struct task_enc *ej = &enc[g0 + j];
			const float *row = s->logits + (size_t)j * nv;
			double lse = log_sum_exp(row, nv);

			for (uint32_t k = 0; k < ej->n_choices; k++) {
				if ((uint32_t)ej->cont[k][0] >= nv)
					return -EINVAL;
				ll[off[g0 + j] + k] = (double)row[ej->cont[k][0]] - lse;
			}
		}
	}
	if (!n2)
		return 0;

	/* step 2: the prefix shared by copy, then every continuation but its last token */
	t = 0;
	for (uint32_t g = 0; g < n; g++) {
		for (uint32_t c = 0; c < enc[g].n_choices; c++) {
			uint32_t sq = off[g] + c;

			if (c)
				kv_cache_copy_prefix(&s->kv, off[g], sq, enc[g].n_ctx);
			for (uint32_t j = 0; j + 1 < enc[g].n_cont[c]; j++, t++) {
				s->tok[t] = enc[g].cont[c][j];
				s->seq[t] = sq;
				s->pos[t] = enc[g].n_ctx + j;
				s->row_slot[t] = sq;
				s->row_target[t] = enc[g].cont[c][j + 1];
			}
		}
	}
	r = model_forward(s->m, &s->kv, s->tok, s->seq, s->pos, (uint32_t)n2, s->hidden);
	if (r < 0)
		return r;
	return score_rows(s, (uint32_t)n2, ll);
}

int task_eval(const struct model *m, const struct task_file *f, const struct task_eval_opts *o,
	      struct task_stats *ret, struct errbuf *e)
{
	uint32_t n_items = f->n_items, batch = o->batch_items ? o->batch_items : 8;
	int32_t bos = -1, prefix;
	struct scorer s = { .m = m };
	struct task_tally tally = { 0 };
	struct task_enc *enc = NULL;
	double *ll = NULL;
	int r;

	if (!m->tok)
		return errbuf_set(e, -EINVAL, "the model has no tokenizer");
	if (o->bos) {
		bos = tokenizer_bos(m->tok);
		if (bos < 0)
			return errbuf_set(e, -EINVAL, "BOS asked for but the tokenizer has none");
	}
	prefix = tokenizer_bos(m->tok) >= 0 ? tokenizer_bos(m->tok) : tokenizer_eos(m->tok);
	if (o->limit && o->limit < n_items)
		n_items = o->limit;
	if (batch > TASK_MAX_BATCH)
		batch = TASK_MAX_BATCH;
	enc = calloc(batch, sizeof(*enc));
	ll = malloc((size_t)batch * TASK_MAX_CHOICES * sizeof(*ll));
	s.logits = malloc((size_t)LOGIT_CHUNK * m->cfg.n_vocab * sizeof(float));
	if (!enc || !ll || !s.logits) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t i0 = 0; i0 < n_items; i0 += batch) {
		uint32_t nb = n_items - i0 < batch ? n_items - i0 : batch, slot = 0;

		for (uint32_t g = 0; g < nb; g++) {
			const struct task_item *it = &f->items[i0 + g];

			task_enc_done(&enc[g]);
			r = task_encode(m->tok, it, bos, prefix, &enc[g]);
			if (r == -EBADMSG)
				r = errbuf_set(e, r,
					       "line %u: cannot split into context and choices "
					       "(a choice without tokens of its own, or an empty "
					       "query and no BOS/EOS token)",
					       it->line);
			if (r < 0)
				goto out;
		}
		r = score_batch(&s, enc, nb, ll);
		if (r == -E2BIG)
			r = errbuf_set(e, r,
				       "lines %u-%u: an item is longer than the model's "
				       "context (%u tokens)",
				       f->items[i0].line, f->items[i0 + nb - 1].line,
				       m->cfg.max_ctx);
		if (r < 0)
			goto out;
		for (uint32_t g = 0; g < nb; g++) {
			const struct task_item *it = &f->items[i0 + g];

			task_tally_add(&tally, it, ll + slot, enc[g].norm_len);
			if (o->on_item) {
				r = o->on_item(o->on_item_arg, i0 + g, it, &enc[g], ll + slot);
				if (r < 0)
					goto out;
			}
			slot += it->n_choices;
		}
		if (o->progress)
			o->progress(o->progress_arg, i0 + nb, n_items);
	}
	task_tally_stats(&tally, ret);
	r = 0;
out:
	if (enc)
		for (uint32_t g = 0; g < batch; g++)
			task_enc_done(&enc[g]);
	free(enc);
	free(ll);
	scorer_done(&s);
	return r;
}
