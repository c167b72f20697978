/* SPDX-License-Identifier: MIT */
#ifndef TOOLS_SHIFTADDCTL_RENDER_H
#define TOOLS_SHIFTADDCTL_RENDER_H

#include <stdio.h>

#include "proto/shiftadd.pb-c.h"

/*
 * Output of shiftaddctl's read-only commands: human text, JSON (one object, stable keys, for
 * scripts) and, for stats, the Prometheus text exposition format (version 0.0.4).
 * All borrow the reply and write to @f; the JSON ones return 0 or -ENOMEM.
 */
void render_status_text(FILE *f, const Shiftadd__DaemonStatus *s);
int render_status_json(FILE *f, const Shiftadd__DaemonStatus *s);
void render_stats_text(FILE *f, const Shiftadd__DaemonStats *s);
int render_stats_json(FILE *f, const Shiftadd__DaemonStats *s);
void render_stats_prometheus(FILE *f, const Shiftadd__DaemonStats *s);
void render_clients_text(FILE *f, const Shiftadd__AdminReply *r);
int render_clients_json(FILE *f, const Shiftadd__AdminReply *r);
/* Worker table of a status reply (shiftaddctl workers). */
void render_workers_text(FILE *f, const Shiftadd__DaemonStatus *s);

#endif /* TOOLS_SHIFTADDCTL_RENDER_H */
