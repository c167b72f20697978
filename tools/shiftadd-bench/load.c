// SPDX-License-Identifier: MIT
#include "tools/shiftadd-bench/load.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "include/shiftadd.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct out {
	int fd;
	uint8_t buf[65536];
	size_t n;
	int err;
};

static void out_flush(struct out *o)
{
	size_t off = 0;

	while (off < o->n && !o->err) {
		ssize_t w = write(o->fd, o->buf + off, o->n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			o->err = -EIO;
		else
			off += (size_t)w;
	}
	o->n = 0;
}

static void out_put(struct out *o, const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len) {
		size_t k = sizeof(o->buf) - o->n;

		if (k > len)
			k = len;
		memcpy(o->buf + o->n, b, k);
		o->n += k;
		b += k;
		len -= k;
		if (o->n == sizeof(o->buf))
			out_flush(o);
	}
}

struct slot;

struct child {
	const struct load_cfg *cfg;
	shiftadd_client *c;
	struct load_shared *sh;
	uint32_t index;
	uint64_t t_measure, t_end; /* window (t_end 0: count mode) */
	uint64_t submitted_measured, next_prompt;
	uint32_t n_busy;
	bool stop, failed;
	uint64_t win_tokens, win_requests;
	struct out *out;
};

struct slot {
	struct child *ch;
	bool busy, measured;
	uint64_t t_submit, t_first, t_last;
	uint32_t n_tokens;
	struct dvec itl;
};

static void on_event(const struct shiftadd_event *ev, void *arg);

static bool want_more(struct child *ch, uint64_t t)
{
	if (ch->stop)
		return false;
	if (ch->t_end)
		return t < ch->t_end;
	/* Count mode: warm-up requests, then exactly cfg->requests measured ones. */
	return t < ch->t_measure || ch->submitted_measured < ch->cfg->requests;
}

static int submit(struct slot *s)
{
	struct child *ch = s->ch;
	const struct load_prompt *p = &ch->cfg->prompts[ch->next_prompt % ch->cfg->n_prompts];
	struct shiftadd_request req = { .prompt = p->text,
					.max_tokens = p->max_tokens,
					.stream = true };
	int ret;

	req.sampling.temperature = ch->cfg->temperature;
	req.sampling.seed = ch->next_prompt + 1;
	s->t_submit = now_ns();
	s->measured = s->t_submit >= ch->t_measure;
	s->t_first = s->t_last = 0;
	s->n_tokens = 0;
	s->itl.n = 0;
	ret = shiftadd_submit(ch->c, &req, on_event, s, NULL);
	if (ret < 0)
		return ret;
	ch->next_prompt++;
	if (s->measured)
		ch->submitted_measured++;
	s->busy = true;
	ch->n_busy++;
	return 0;
}

static void finish(struct slot *s, const struct shiftadd_event *ev, uint64_t t)
{
	struct child *ch = s->ch;
	struct load_record rec = { 0 };

	s->busy = false;
	ch->n_busy--;
	if (ch->t_end && t >= ch->t_measure && t <= ch->t_end && !ev->error)
		ch->win_requests++;
	if (s->measured) {
		rec.kind = LOAD_REC_REQUEST;
		rec.error = ev->error;
		rec.n_tokens = s->n_tokens;
		rec.n_itl = (uint32_t)s->itl.n;
		rec.t_submit = s->t_submit;
		rec.t_first = s->t_first;
		rec.t_done = t;
		out_put(ch->out, &rec, sizeof(rec));
		out_put(ch->out, s->itl.v, s->itl.n * sizeof(double));
	}
	__atomic_add_fetch(&ch->sh->progress[ch->index].requests, 1, __ATOMIC_RELAXED);
	if (want_more(ch, t) && submit(s) < 0)
		ch->failed = true;
}

static void on_event(const struct shiftadd_event *ev, void *arg)
{
	struct slot *s = arg;
	struct child *ch = s->ch;
	uint64_t t = now_ns();
	size_t n = ev->n_ids;

	if (n) {
		if (!s->t_first) {
			s->t_first = t;
		} else {
			/* A batch of n tokens after a gap: each token waited gap / n. */
			double gap = (double)(t - s->t_last) / (double)n;

			for (size_t i = 0; i < n; i++)
				if (dvec_push(&s->itl, gap) < 0)
					ch->failed = true;
		}
		s->t_last = t;
		s->n_tokens += (uint32_t)n;
		if (ch->t_end && t >= ch->t_measure && t <= ch->t_end)
			ch->win_tokens += n;
		__atomic_add_fetch(&ch->sh->progress[ch->index].tokens, n, __ATOMIC_RELAXED);
	}
	if (ev->type == SHIFTADD_EVENT_DONE)
		finish(s, ev, t);
}

int load_child(const struct load_cfg *cfg, uint32_t index, struct load_shared *sh, int out_fd)
{
	struct child ch = { .cfg = cfg, .sh = sh, .index = index };
	struct slot *slots;
	struct out *out;
	char name[32];
	uint64_t go, last_progress;
	int ret, status = 1;

	out = calloc(1, sizeof(*out));
	slots = calloc(cfg->concurrency, sizeof(*slots));
	if (!out || !slots)
		goto out_free;
	out->fd = out_fd;
	ch.out = out;
	snprintf(name, sizeof(name), "bench-%u", index);
	for (int tries = 0;; tries++) {
		ret = shiftadd_connect(cfg->socket, name, &ch.c);
		if (ret != -EAGAIN || tries > 100)
			break;
		usleep(20000); /* daemon full: a previous run's clients are still leaving */
	}
	if (ret < 0) {
		fprintf(stderr, "shiftadd-bench: client %u cannot connect: %s\n", index,
			shiftadd_strerror(ret));
		__atomic_add_fetch(&sh->n_failed_connect, 1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&sh->n_ready, 1, __ATOMIC_SEQ_CST);
		goto out_free;
	}
	__atomic_add_fetch(&sh->n_ready, 1, __ATOMIC_SEQ_CST);
	while (!(go = __atomic_load_n(&sh->go_ns, __ATOMIC_SEQ_CST)))
		usleep(1000);
	ch.t_measure = go + cfg->warmup_ns;
	ch.t_end = cfg->requests ? 0 : ch.t_measure + cfg->duration_ns;
	for (uint32_t i = 0; i < cfg->concurrency; i++) {
		slots[i].ch = &ch;
		if (want_more(&ch, now_ns()) && submit(&slots[i]) < 0)
			ch.failed = true;
	}
	last_progress = now_ns();
	while (ch.n_busy && !ch.failed) {
		uint64_t before = ch.sh->progress[index].requests + ch.sh->progress[index].tokens;

		ret = shiftadd_poll(ch.c, 100);
		if (ret < 0) {
			fprintf(stderr, "shiftadd-bench: client %u: %s\n", index,
				shiftadd_strerror(ret));
			ch.failed = true;
			break;
		}
		if (ch.sh->progress[index].requests + ch.sh->progress[index].tokens != before)
			last_progress = now_ns();
		else if (now_ns() - last_progress > (uint64_t)cfg->timeout_ms * 1000000ull) {
			fprintf(stderr, "shiftadd-bench: client %u: no progress for %d ms\n", index,
				cfg->timeout_ms);
			ch.failed = true;
		}
	}
	if (ch.t_end) {
		struct load_window w = { .kind = LOAD_REC_WINDOW,
					 .tokens = ch.win_tokens,
					 .requests = ch.win_requests };

		out_put(out, &w, sizeof(w));
	}
	out_flush(out);
	status = ch.failed || out->err ? 1 : 0;
	shiftadd_close(ch.c);
out_free:
	for (uint32_t i = 0; slots && i < cfg->concurrency; i++)
		dvec_done(&slots[i].itl);
	free(slots);
	free(out);
	return status;
}

int load_parse(const uint8_t *buf, size_t len, struct load_result *r)
{
	size_t off = 0;

	while (off < len) {
		uint32_t kind;

		if (len - off < sizeof(kind))
			return -EPROTO;
		memcpy(&kind, buf + off, sizeof(kind));
		if (kind == LOAD_REC_REQUEST) {
			struct load_record rec;

			if (len - off < sizeof(rec))
				return -EPROTO;
			memcpy(&rec, buf + off, sizeof(rec));
			off += sizeof(rec);
			if ((len - off) / sizeof(double) < rec.n_itl)
				return -EPROTO;
			if (rec.error) {
				r->failed++;
			} else {
				r->ok++;
				r->tokens += rec.n_tokens;
				if (rec.t_first &&
				    dvec_push(&r->ttft_ns, (double)(rec.t_first - rec.t_submit)) <
					    0)
					return -ENOMEM;
				if (dvec_push(&r->e2e_ns, (double)(rec.t_done - rec.t_submit)) < 0)
					return -ENOMEM;
				for (uint32_t i = 0; i < rec.n_itl; i++) {
					double g;

					memcpy(&g, buf + off + i * sizeof(double), sizeof(g));
					if (dvec_push(&r->itl_ns, g) < 0)
						return -ENOMEM;
				}
			}
			if (!r->t_first_submit || rec.t_submit < r->t_first_submit)
				r->t_first_submit = rec.t_submit;
			if (rec.t_done > r->t_last_done)
				r->t_last_done = rec.t_done;
			off += rec.n_itl * sizeof(double);
		} else if (kind == LOAD_REC_WINDOW) {
			struct load_window w;

			if (len - off < sizeof(w))
				return -EPROTO;
			memcpy(&w, buf + off, sizeof(w));
			off += sizeof(w);
			r->win_tokens += w.tokens;
			r->win_requests += w.requests;
		} else {
			return -EPROTO;
		}
	}
	return 0;
}

void load_result_done(struct load_result *r)
{
	dvec_done(&r->ttft_ns);
	dvec_done(&r->itl_ns);
	dvec_done(&r->e2e_ns);
}
