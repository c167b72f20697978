// SPDX-License-Identifier: MIT
#include "common/progress.h"

#include <time.h>
#include <unistd.h>

double progress_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void progress_fmt_duration(double secs, char *buf, size_t len)
{
	if (secs < 0 || secs != secs)
		secs = 0;
	if (secs < 60)
		snprintf(buf, len, "%.1fs", secs);
	else if (secs < 3600)
		snprintf(buf, len, "%dm%02ds", (int)secs / 60, (int)secs % 60);
	else
		snprintf(buf, len, "%dh%02dm", (int)secs / 3600, ((int)secs % 3600) / 60);
}

void progress_begin(struct progress *p, FILE *out, const char *label, const char *unit,
		    uint64_t total)
{
	p->out = out;
	p->label = label;
	p->unit = unit;
	p->total = total;
	p->done = 0;
	p->t_start = progress_now();
	p->t_last_draw = 0;
	p->tty = out && isatty(fileno(out));
}

static void draw(struct progress *p, double now)
{
	double el = now - p->t_start;
	double rate = el > 0 ? p->done / el : 0;
	double frac = p->total ? (double)p->done / p->total : 0;
	char eta[32], ela[32], bar[31];
	int fill = (int)(frac * 30);

	for (int i = 0; i < 30; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[30] = 0;
	progress_fmt_duration(el, ela, sizeof(ela));
	progress_fmt_duration(rate > 0 ? (p->total - p->done) / rate : 0, eta, sizeof(eta));
	fprintf(p->out, "\r%s [%s] %5.1f%% %llu/%llu %.1f %s/s elapsed %s eta %s\033[K", p->label,
		bar, 100 * frac, (unsigned long long)p->done, (unsigned long long)p->total, rate,
		p->unit, ela, eta);
	fflush(p->out);
}

void progress_update(struct progress *p, uint64_t done)
{
	double now;

	p->done = done > p->total ? p->total : done;
	if (!p->tty)
		return;
	now = progress_now();
	if (now - p->t_last_draw < 0.1 && p->done != p->total)
		return;
	p->t_last_draw = now;
	draw(p, now);
}

void progress_cb(void *arg, uint64_t done, uint64_t total)
{
	struct progress *p = arg;

	p->total = total;
	progress_update(p, done);
}

void progress_end(struct progress *p)
{
	double el = progress_now() - p->t_start;
	char ela[32];

	if (!p->out)
		return;
	if (p->tty) {
		draw(p, progress_now());
		fputc('\n', p->out);
		return;
	}
	progress_fmt_duration(el, ela, sizeof(ela));
	fprintf(p->out, "%s: %llu/%llu %s in %s (%.1f %s/s)\n", p->label,
		(unsigned long long)p->done, (unsigned long long)p->total, p->unit, ela,
		el > 0 ? p->done / el : 0.0, p->unit);
}
