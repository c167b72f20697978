/* SPDX-License-Identifier: MIT */
#ifndef DAEMON_CONFIG_H
#define DAEMON_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

/*
 * shiftaddd configuration: one table of options feeds the INI parser (/etc/shiftadd/
 * shiftaddd.conf, "[section]" + "key = value"), the command-line flags (--key-name) and
 * --help, so they cannot drift. Precedence: defaults < config file < flags.
 */

#define CONFIG_MAX_IDS	32
#define CONFIG_PATH_MAX 256

struct config {
	/* [server] */
	char socket_path
		[CONFIG_PATH_MAX]; /* "" = $XDG_RUNTIME_DIR/shiftadd/... or /run/shiftadd/ */
	uint32_t allow_uids[CONFIG_MAX_IDS];
	uint32_t n_allow_uids;
	uint32_t allow_gids[CONFIG_MAX_IDS];
	uint32_t n_allow_gids;
	uint32_t admin_uids[CONFIG_MAX_IDS]; /* shiftaddctl operations (root, own uid always) */
	uint32_t n_admin_uids;
	uint32_t admin_gids[CONFIG_MAX_IDS];
	uint32_t n_admin_gids;
	char log_level[16];
	uint32_t max_clients;
	uint32_t stall_timeout_ms;
	uint32_t drain_timeout_ms;
	uint32_t spin_us; /* longest spin on the submission rings after a busy round, 0: never */
	/* [model] */
	char backend[32];
	char model[CONFIG_PATH_MAX];
	uint32_t step_delay_us;
	uint32_t n_slots;
	uint32_t n_ctx;
	uint32_t max_batch_tokens;
	uint32_t prefill_chunk;
	uint32_t prompt_cache;
	uint32_t kv_commit; /* 1: the KV cache's memory committed at start */
	char kv_type[8];    /* "f16" or "f32" */
	/* [workers] */
	char workers[CONFIG_PATH_MAX]; /* "auto" or a CPU list "0-3,8" */
	uint32_t max_workers;
	char numa_policy[16];
	uint32_t numa_mem_pct;
	/* [limits] */
	uint32_t max_inflight;
	uint32_t max_prompt_tokens;
	uint32_t max_new_tokens;
	uint64_t max_client_tokens;
	uint32_t max_stop_strings;
	uint32_t max_stop_bytes;
	uint32_t max_msg_bytes;
	uint32_t sq_slots;
	uint32_t cq_slots;
	uint32_t sq_arena_kib;
	uint32_t cq_arena_kib;
};

#define CONFIG_DEFAULT_PATH "/etc/shiftadd/shiftaddd.conf"

/* Fill @c with every option's default. */
void config_defaults(struct config *c);
/*
 * Apply an INI file's contents (@text, @len bytes; NUL bytes rejected). Unknown sections or
 * keys, bad values and lines over 1024 bytes are errors: -EBADMSG / -EINVAL with "line N: ..."
 * in @e. Comments start with '#' or ';'. Values may be quoted with "".
 */
int config_parse_ini(struct config *c, const char *text, size_t len, struct errbuf *e);
/* Read and apply @path. -ENOENT etc. from open/read, else as config_parse_ini(). */
int config_load_file(struct config *c, const char *path, struct errbuf *e);
/* Set one option by key name ("n_slots" or flag spelling "n-slots"). 0, -ENOENT, -EINVAL. */
int config_set(struct config *c, const char *key, const char *value, struct errbuf *e);
/* Cross-field checks after everything is applied (e.g. max_prompt_tokens < n_ctx). */
int config_validate(const struct config *c, struct errbuf *e);
/* Print "--flag VALUE  help (default: X)" for every option. */
void config_usage(FILE *out);
/*
 * Parse argv: --config PATH (loaded first, default CONFIG_DEFAULT_PATH if it exists), every
 * option as --key VALUE or --key=VALUE, --help (sets *ret_help). Returns 0 or -EINVAL.
 */
int config_from_args(struct config *c, int argc, char **argv, bool *ret_help, struct errbuf *e);
/* Parse a CPU list "0-3,8,10-11" into @cpus (capacity @cap). Returns the count or -EINVAL. */
int config_parse_cpu_list(const char *s, int *cpus, uint32_t cap);
/* The socket path to use: the configured one, else the default for this environment. */
void config_socket_path(const struct config *c, char *buf, size_t len);

#endif /* DAEMON_CONFIG_H */
