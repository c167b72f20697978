// SPDX-License-Identifier: MIT
#include "daemon/config.h"
#include "common/log.h"
#include "daemon/numa.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum opt_type {
	OPT_STR,
	OPT_U32,
	OPT_U64,
	OPT_IDS, /* comma-separated uid/gid list; count field follows the array */
};

struct opt {
	const char *section;
	const char *key;
	enum opt_type type;
	size_t off;
	size_t size;	   /* OPT_STR: buffer size; OPT_IDS: offset of the count */
	uint64_t min, max; /* numeric range */
	const char *def;
	const char *help;
};

#define STR(sec, k, d, h)                                                                         \
	{                                                                                         \
		sec, #k, OPT_STR, offsetof(struct config, k), sizeof(((struct config *)0)->k), 0, \
			0, d, h                                                                   \
	}
#define U32(sec, k, lo, hi, d, h)                                             \
	{                                                                     \
		sec, #k, OPT_U32, offsetof(struct config, k), 0, lo, hi, d, h \
	}
#define U64(sec, k, lo, hi, d, h)                                             \
	{                                                                     \
		sec, #k, OPT_U64, offsetof(struct config, k), 0, lo, hi, d, h \
	}
#define IDS(sec, k, d, h)                                                                        \
	{                                                                                        \
		sec, #k, OPT_IDS, offsetof(struct config, k), offsetof(struct config, n_##k), 0, \
			0, d, h                                                                  \
	}

/* clang-format off */
static const struct opt opts[] = {
	STR("server", socket_path, "", "control socket path (empty: $XDG_RUNTIME_DIR/shiftadd/shiftaddd.sock, or /run/shiftadd/shiftaddd.sock)"),
	IDS("server", allow_uids, "", "uids allowed to connect besides root and the daemon's own uid"),
	IDS("server", allow_gids, "", "gids whose members may connect"),
	IDS("server", admin_uids, "", "uids allowed admin operations (shiftaddctl) besides root and the daemon's uid"),
	IDS("server", admin_gids, "", "gids allowed admin operations"),
	STR("server", log_level, "info", "err, warn, info or debug"),
	U32("server", max_clients, 1, 65536, "256", "connected clients at most"),
	U32("server", stall_timeout_ms, 10, 86400000, "30000", "disconnect a client whose completion ring stays full this long"),
	U32("server", drain_timeout_ms, 0, 86400000, "30000", "on SIGTERM, wait this long for in-flight requests"),
	U32("server", spin_us, 0, 100000, "50", "after a busy loop round, poll the submission rings this long before sleeping (0: never; adaptive, never at idle)"),
	STR("model", backend, "fake", "model backend (fake)"),
	STR("model", model, "", "model file for the backend"),
	U32("model", step_delay_us, 0, 10000000, "0", "fake backend: simulated compute time per step"),
	U32("model", n_slots, 1, 4096, "16", "sequences decoded together (KV cache slots)"),
	U32("model", n_ctx, 16, 1048576, "2048", "positions per sequence"),
	U32("model", max_batch_tokens, 1, 1048576, "512", "tokens per scheduler step"),
	U32("model", prefill_chunk, 1, 1048576, "128", "prompt tokens per sequence per step"),
	U32("model", kv_commit, 0, 1, "1", "1: commit the KV cache's memory at start, so that no step stops to fault it in (with huge pages a slot's first request faulted tens of MB); 0: commit it as positions are first written"),
	STR("model", kv_type, "f16", "KV cache elements: f16 (half the memory and attention traffic of f32; needs AVX2 with F16C, else the cache is f32) or f32"),
	U32("model", prompt_cache, 0, 1, "1", "1: a request copies the KV of the longest prefix of its prompt that another slot holds, freed or still in use, instead of computing it, and waits a step for a prefix another request is computing (only KV of clients of the same uid); 0: every prompt is prefilled in full"),
	STR("workers", workers, "auto", "worker CPUs: auto (one per physical core) or a list like 0-3,8"),
	U32("workers", max_workers, 0, 4096, "0", "cap on the worker count (0: none)"),
	STR("workers", numa_policy, "auto", "weights placement: auto, replicate, interleave or local"),
	U32("workers", numa_mem_pct, 1, 100, "50", "auto replicates when weights fit in this % of each node"),
	U32("limits", max_inflight, 1, 65536, "64", "unfinished requests per client"),
	U32("limits", max_prompt_tokens, 1, 1048576, "1536", "prompt tokens per request"),
	U32("limits", max_new_tokens, 1, 1048576, "512", "generated tokens per request"),
	U64("limits", max_client_tokens, 1, UINT64_MAX, "1048576", "prompt + max tokens summed over a client's unfinished requests"),
	U32("limits", max_stop_strings, 0, 64, "8", "stop strings (and stop ids) per request"),
	U32("limits", max_stop_bytes, 1, 1024, "64", "bytes per stop string"),
	U32("limits", max_msg_bytes, 256, 16777216, "65536", "largest client message"),
	U32("limits", sq_slots, 2, 65536, "64", "submission ring slots (power of two)"),
	U32("limits", cq_slots, 2, 65536, "256", "completion ring slots (power of two)"),
	U32("limits", sq_arena_kib, 4, 1048576, "256", "submission payload arena, KiB"),
	U32("limits", cq_arena_kib, 4, 1048576, "256", "completion payload arena, KiB"),
};
/* clang-format on */

#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static const struct opt *find_opt(const char *key)
{
	char norm[64];
	size_t i;

	for (i = 0; key[i] && i + 1 < sizeof(norm); i++)
		norm[i] = key[i] == '-' ? '_' : key[i];
	norm[i] = 0;
	for (i = 0; i < N_OPTS; i++)
		if (!strcmp(opts[i].key, norm))
			return &opts[i];
	return NULL;
}

static int parse_u64(const char *v, uint64_t *ret)
{
	char *end;
	unsigned long long x;

	if (!isdigit((unsigned char)v[0]))
		return -EINVAL;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*ret = x;
	return 0;
}

static int set_opt(struct config *c, const struct opt *o, const char *v, struct errbuf *e)
{
	char *base = (char *)c + o->off;
	uint64_t x;

	switch (o->type) {
	case OPT_STR:
		if (strlen(v) >= o->size)
			return errbuf_set(e, -EINVAL, "%s: value too long", o->key);
		strcpy(base, v);
		return 0;
	case OPT_U32:
	case OPT_U64:
		if (parse_u64(v, &x) || x < o->min || x > o->max)
			return errbuf_set(e, -EINVAL, "%s: '%s' is not an integer in [%llu, %llu]",
					  o->key, v, (unsigned long long)o->min,
					  (unsigned long long)o->max);
		if (o->type == OPT_U32)
			*(uint32_t *)base = (uint32_t)x;
		else
			*(uint64_t *)base = x;
		return 0;
	case OPT_IDS: {
		uint32_t *ids = (uint32_t *)base, n = 0;
		char buf[512], *tok, *save = NULL;

		if (strlen(v) >= sizeof(buf))
			return errbuf_set(e, -EINVAL, "%s: value too long", o->key);
		strcpy(buf, v);
		for (tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
			if (parse_u64(tok, &x) || x >= UINT32_MAX)
				return errbuf_set(e, -EINVAL, "%s: '%s' is not an id", o->key, tok);
			if (n == CONFIG_MAX_IDS)
				return errbuf_set(e, -EINVAL, "%s: more than %d ids", o->key,
						  CONFIG_MAX_IDS);
			ids[n++] = (uint32_t)x;
		}
		*(uint32_t *)((char *)c + o->size) = n;
		return 0;
	}
	}
	return -EINVAL;
}

void config_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < N_OPTS; i++)
		(void)set_opt(c, &opts[i], opts[i].def, NULL);
}

int config_set(struct config *c, const char *key, const char *value, struct errbuf *e)
{
	const struct opt *o = find_opt(key);

	if (!o)
		return errbuf_set(e, -ENOENT, "unknown option '%s'", key);
	return set_opt(c, o, value, e);
}

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = 0;
	return s;
}

int config_parse_ini(struct config *c, const char *text, size_t len, struct errbuf *e)
{
	char section[32] = "";
	char line[1025];
	size_t pos = 0;
	unsigned lineno = 0;
	int ret;

	if (memchr(text, 0, len))
		return errbuf_set(e, -EBADMSG, "NUL byte in config");
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		const struct opt *o;
		char *s, *eq, *key, *val;

		lineno++;
		if (n >= sizeof(line))
			return errbuf_set(e, -EBADMSG, "line %u: too long", lineno);
		memcpy(line, text + pos, n);
		line[n] = 0;
		pos += n + (nl ? 1 : 0);
		s = trim(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *close = strchr(s, ']');

			if (!close || close[1] || close - s - 1 >= (long)sizeof(section))
				return errbuf_set(e, -EBADMSG, "line %u: bad section header",
						  lineno);
			*close = 0;
			strcpy(section, trim(s + 1));
			if (strcmp(section, "server") && strcmp(section, "model") &&
			    strcmp(section, "workers") && strcmp(section, "limits"))
				return errbuf_set(e, -EBADMSG, "line %u: unknown section [%s]",
						  lineno, section);
			continue;
		}
		eq = strchr(s, '=');
		if (!eq)
			return errbuf_set(e, -EBADMSG, "line %u: expected key = value", lineno);
		*eq = 0;
		key = trim(s);
		val = trim(eq + 1);
		if (val[0] == '"') {
			size_t vl = strlen(val);

			if (vl < 2 || val[vl - 1] != '"')
				return errbuf_set(e, -EBADMSG, "line %u: unterminated quote",
						  lineno);
			val[vl - 1] = 0;
			val++;
		}
		o = find_opt(key);
		if (!o || strchr(key, '-'))
			return errbuf_set(e, -EBADMSG, "line %u: unknown key '%s'", lineno, key);
		if (strcmp(o->section, section))
			return errbuf_set(e, -EBADMSG, "line %u: key '%s' belongs in [%s]", lineno,
					  key, o->section);
		ret = set_opt(c, o, val, e);
		if (ret < 0) {
			struct errbuf tmp;

			if (e) {
				tmp = *e;
				errbuf_set(e, ret, "line %u: %s", lineno, tmp.msg);
			}
			return ret;
		}
	}
	return 0;
}

int config_load_file(struct config *c, const char *path, struct errbuf *e)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errbuf_set(e, -errno, "cannot open: %s", strerror(errno));
	for (;;) {
		ssize_t n;

		if (len == cap) {
			char *nb;

			if (cap >= (1u << 20)) {
				ret = errbuf_set(e, -EFBIG, "config larger than 1 MiB");
				goto out;
			}
			cap = cap ? cap * 2 : 4096;
			nb = realloc(buf, cap);
			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			ret = errbuf_set(e, -errno, "read: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	ret = config_parse_ini(c, buf ? buf : "", len, e);
out:
	free(buf);
	close(fd);
	return ret;
}

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

int config_parse_cpu_list(const char *s, int *cpus, uint32_t cap)
{
	uint32_t n = 0;
	const char *p = s;

	while (*p) {
		char *end;
		long a, b;

		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		a = strtol(p, &end, 10);
		b = a;
		if (*end == '-') {
			p = end + 1;
			if (!isdigit((unsigned char)*p))
				return -EINVAL;
			b = strtol(p, &end, 10);
		}
		if (a < 0 || b < a || b > 65535)
			return -EINVAL;
		for (long x = a; x <= b; x++) {
			if (n == cap)
				return -EINVAL;
			cpus[n++] = (int)x;
		}
		p = end;
		if (*p == ',')
			p++;
		else if (*p)
			return -EINVAL;
	}
	return n ? (int)n : -EINVAL;
}

int config_validate(const struct config *c, struct errbuf *e)
{
	int cpus[4096];

	if (!is_pow2(c->sq_slots) || !is_pow2(c->cq_slots))
		return errbuf_set(e, -EINVAL, "sq_slots and cq_slots must be powers of two");
	if (c->max_prompt_tokens >= c->n_ctx)
		return errbuf_set(e, -EINVAL, "max_prompt_tokens (%u) must be < n_ctx (%u)",
				  c->max_prompt_tokens, c->n_ctx);
	if ((uint64_t)c->max_msg_bytes > (uint64_t)c->sq_arena_kib * 1024)
		return errbuf_set(e, -EINVAL, "max_msg_bytes exceeds the submission arena");
	if (c->n_slots > c->max_batch_tokens)
		return errbuf_set(e, -EINVAL, "max_batch_tokens must be >= n_slots");
	if (log_level_parse(c->log_level) < 0)
		return errbuf_set(e, -EINVAL, "log_level: '%s' is not err, warn, info or debug",
				  c->log_level);
	if (strcmp(c->kv_type, "f16") && strcmp(c->kv_type, "f32"))
		return errbuf_set(e, -EINVAL, "kv_type: '%s' is not f16 or f32", c->kv_type);
	if (numa_policy_parse(c->numa_policy) < 0)
		return errbuf_set(e, -EINVAL,
				  "numa_policy: '%s' is not auto, replicate, interleave or local",
				  c->numa_policy);
	if (strcmp(c->workers, "auto") && config_parse_cpu_list(c->workers, cpus, 4096) < 0)
		return errbuf_set(e, -EINVAL, "workers: bad CPU list '%s'", c->workers);
	return 0;
}

void config_usage(FILE *out)
{
	fprintf(out, "usage: shiftaddd [--config PATH] [--OPTION VALUE]...\n\n");
	fprintf(out, "  --config PATH                 INI config file (default: %s if present)\n",
		CONFIG_DEFAULT_PATH);
	fprintf(out, "  --help                        this text\n");
	for (size_t i = 0; i < N_OPTS; i++) {
		char flag[64];

		snprintf(flag, sizeof(flag), "--%s", opts[i].key);
		for (char *p = flag + 2; *p; p++)
			if (*p == '_')
				*p = '-';
		fprintf(out, "  %-29s %s [%s] (default: \"%s\")\n", flag, opts[i].help,
			opts[i].section, opts[i].def);
	}
}

int config_from_args(struct config *c, int argc, char **argv, bool *ret_help, struct errbuf *e)
{
	struct option lopts[N_OPTS + 3];
	char names[N_OPTS][64];
	const char *config_path = NULL;
	int ret, idx;

	*ret_help = false;
	for (size_t i = 0; i < N_OPTS; i++) {
		snprintf(names[i], sizeof(names[i]), "%s", opts[i].key);
		for (char *p = names[i]; *p; p++)
			if (*p == '_')
				*p = '-';
		lopts[i] = (struct option){ names[i], required_argument, NULL, 0 };
	}
	lopts[N_OPTS] = (struct option){ "config", required_argument, NULL, 0 };
	lopts[N_OPTS + 1] = (struct option){ "help", no_argument, NULL, 0 };
	lopts[N_OPTS + 2] = (struct option){ 0 };

	/* Pass 1: find --config and --help; pass 2: flags override the file. */
	optind = 1;
	opterr = 0;
	while ((ret = getopt_long(argc, argv, "", lopts, &idx)) != -1) {
		if (ret == '?')
			return errbuf_set(e, -EINVAL, "unknown or incomplete option '%s'",
					  argv[optind - 1]);
		if (idx == (int)N_OPTS)
			config_path = optarg;
		else if (idx == (int)N_OPTS + 1)
			*ret_help = true;
	}
	if (optind < argc)
		return errbuf_set(e, -EINVAL, "unexpected argument '%s'", argv[optind]);
	if (*ret_help)
		return 0;
	if (config_path || access(CONFIG_DEFAULT_PATH, R_OK) == 0) {
		const char *p = config_path ? config_path : CONFIG_DEFAULT_PATH;

		ret = config_load_file(c, p, e);
		if (ret < 0) {
			if (e) {
				struct errbuf tmp = *e;

				errbuf_set(e, ret, "%s: %s", p, tmp.msg);
			}
			return ret;
		}
	}
	optind = 1;
	while ((ret = getopt_long(argc, argv, "", lopts, &idx)) != -1) {
		if (idx >= (int)N_OPTS)
			continue;
		ret = set_opt(c, &opts[idx], optarg, e);
		if (ret < 0)
			return ret;
	}
	return config_validate(c, e);
}

void config_socket_path(const struct config *c, char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (c->socket_path[0])
		snprintf(buf, len, "%s", c->socket_path);
	else if (xdg && xdg[0] == '/')
		snprintf(buf, len, "%s/shiftadd/shiftaddd.sock", xdg);
	else
		snprintf(buf, len, "/run/shiftadd/shiftaddd.sock");
}
