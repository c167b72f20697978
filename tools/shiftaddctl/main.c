// SPDX-License-Identifier: MIT
/*
 * shiftaddctl: the admin command line of shiftaddd, over the daemon's control socket
 * (AdminRequest / AdminReply, see docs/protocol.md). Exit codes are part of the interface
 * (man/shiftaddctl.1): scripts branch on them, so each daemon status maps to one code.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/status.h"
#include "tools/admin_client.h"
#include "tools/opt.h"
#include "tools/shiftaddctl/render.h"

enum exit_code {
	EXIT_OK = 0,
	EXIT_FAILED = 1,      /* the daemon could not do it (bad model file, internal error) */
	EXIT_USAGE = 2,	      /* bad command line */
	EXIT_UNREACHABLE = 3, /* no daemon at the socket, or it is shutting down */
	EXIT_DENIED = 4,      /* credentials refused (not allowed, or not an admin) */
	EXIT_NOT_FOUND = 5,   /* no such client / request / model file */
	EXIT_BUSY = 6,	      /* try again later (a reload is still retiring, daemon full) */
	EXIT_PROTOCOL = 7,    /* unexpected reply or protocol version */
	EXIT_TIMEOUT = 8,     /* no reply, or --wait ran out */
};

struct ctl {
	const char *socket;
	int timeout_ms;
	bool json, prometheus, wait, now;
	int fd;
};

/* clang-format off */
static const struct opt_spec opts[] = {
	{ "socket", 's', "PATH", "$SHIFTADD_SOCKET, $XDG_RUNTIME_DIR/shiftadd/shiftaddd.sock or /run/shiftadd/shiftaddd.sock", "daemon control socket" },
	{ "timeout", 't', "MS", "30000", "wait this long for each reply (and for --wait)" },
	{ "json", 'j', NULL, NULL, "status, stats, clients, workers: print one JSON object" },
	{ "prometheus", 'p', NULL, NULL, "stats: Prometheus text exposition format" },
	{ "wait", 'w', NULL, NULL, "drain, reload, workers set: return once in-flight requests are done" },
	{ "now", 0, NULL, NULL, "shutdown: cancel in-flight requests instead of letting them finish" },
	{ "help", 'h', NULL, NULL, "this help, or a command's help after the command" },
	{ "version", 'V', NULL, NULL, "print the version" },
	{ NULL, 0, NULL, NULL, NULL },
};
/* clang-format on */

struct command {
	const char *name;
	const char *args;
	int min_args, max_args;
	const char *help;
	int (*run)(struct ctl *ctl, int argc, char **argv);
};

static const char *const exit_help =
	"exit status: 0 ok, 1 failed, 2 usage, 3 daemon unreachable, 4 permission denied,\n"
	"             5 not found, 6 busy (retry), 7 protocol error, 8 timeout\n";

static int exit_for_errno(int err)
{
	switch (err) {
	case 0:
		return EXIT_OK;
	case -ENOENT:
		return EXIT_NOT_FOUND;
	case -EPERM:
	case -EACCES:
		return EXIT_DENIED;
	case -EAGAIN:
	case -EDQUOT:
		return EXIT_BUSY;
	case -EPROTO:
	case -EOPNOTSUPP:
		return EXIT_PROTOCOL;
	case -ETIMEDOUT:
		return EXIT_TIMEOUT;
	case -ESHUTDOWN:
		return EXIT_UNREACHABLE;
	case -EINVAL:
		return EXIT_USAGE;
	default:
		return EXIT_FAILED;
	}
}

static int connect_daemon(struct ctl *ctl)
{
	char path[256];
	int ret;

	if (ctl->fd >= 0)
		return 0;
	ret = admin_connect(ctl->socket, &ctl->fd);
	if (ret < 0) {
		admin_socket_path(ctl->socket, path, sizeof(path));
		fprintf(stderr, "shiftaddctl: cannot connect to '%s': %s\n", path, strerror(-ret));
		return EXIT_UNREACHABLE;
	}
	return 0;
}

/*
 * One request/reply. Returns an exit code; on EXIT_OK *ret holds the reply. Errors are printed
 * as "shiftaddctl: OP: MESSAGE (status)".
 */
static int call(struct ctl *ctl, const char *what, Shiftadd__AdminRequest *req,
		struct admin_reply *ret)
{
	int r, code;

	code = connect_daemon(ctl);
	if (code)
		return code;
	r = admin_call(ctl->fd, req, ctl->timeout_ms, ret);
	if (r < 0) {
		if (r == -EPERM)
			fprintf(stderr,
				"shiftaddctl: %s: connection refused by the daemon "
				"(uid %u not allowed)\n",
				what, (unsigned)getuid());
		else
			fprintf(stderr, "shiftaddctl: %s: %s\n", what, strerror(-r));
		return r == -ECONNRESET ? EXIT_UNREACHABLE : exit_for_errno(r);
	}
	if (ret->r->status != SHIFTADD__STATUS__STATUS_OK) {
		int err = status_to_errno(ret->r->status);

		fprintf(stderr, "shiftaddctl: %s: %s (%s)\n", what,
			ret->r->message[0] ? ret->r->message : strerror(-err),
			status_name(ret->r->status));
		admin_reply_free(ret);
		/* A refused argument is the daemon's "invalid_argument", not a usage error. */
		return err == -EINVAL ? EXIT_FAILED : exit_for_errno(err);
	}
	return EXIT_OK;
}

static int simple_op(struct ctl *ctl, const char *what, Shiftadd__AdminRequest *req)
{
	struct admin_reply rep;
	int code = call(ctl, what, req, &rep);

	if (code)
		return code;
	if (rep.r->message[0])
		printf("%s\n", rep.r->message);
	admin_reply_free(&rep);
	return EXIT_OK;
}

static int cmd_status(struct ctl *ctl, int argc, char **argv)
{
	Shiftadd__AdminRequest req = SHIFTADD__ADMIN_REQUEST__INIT;
	struct admin_reply rep;
	int code;

	req.op = SHIFTADD__ADMIN_OP__ADMIN_OP_STATUS;
	code = call(ctl, "status", &req, &rep);
	if (code)
		return code;
	if (!rep.r->daemon) {
		admin_reply_free(&rep);
		return EXIT_PROTOCOL;
	}
	if (ctl->json)
		code = render_status_json(stdout, rep.r->daemon) < 0 ? EXIT_FAILED : EXIT_OK;
	else
		render_status_text(stdout, rep.r->daemon);
	admin_reply_free(&rep);
	return code;
}

static int cmd_stats(struct ctl *ctl, int argc, char **argv)
{
	Shiftadd__AdminRequest req = SHIFTADD__ADMIN_REQUEST__INIT;
	struct admin_reply rep;
	int code;

	req.op = SHIFTADD__ADMIN_OP__ADMIN_OP_STATS;
	code = call(ctl, "stats", &req, &rep);
	if (code)
		return code;
	if (!rep.r->stats) {
		admin_reply_free(&rep);
		return EXIT_PROTOCOL;
	}
	if (ctl->json)
		code = render_stats_json(stdout, rep.r->stats) < 0 ? EXIT_FAILED : EXIT_OK;
	else if (ctl->prometheus)
		render_stats_prometheus(stdout, rep.r->stats);
	else
		render_stats_text(stdout, rep.r->stats);
	admin_reply_free(&rep);
	return code;
}

static int cmd_clients(struct ctl *ctl, int argc, char **argv)
{
	Shiftadd__AdminRequest req = SHIFTADD__ADMIN_REQUEST__INIT;
	struct admin_reply rep;
	int code;

	req.op = SHIFTADD__ADMIN_OP__ADMIN_OP_CLIENTS;
	code = call(ctl, "clients", &req, &rep);
	if (code)
		return code;
	if (ctl->json)
		code = render_clients_json(stdout, rep.r) < 0 ? EXIT_FAILED : EXIT_OK;
	else
		render_clients_text(stdout, rep.r);
	admin_reply_free(&rep);
	return code;
}

static int parse_u64(const char *s, uint64_t *ret)
{
	char *end;

	if (!*s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*ret = strtoull(s, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

static int cmd_cancel(struct ctl *ctl, int argc, char **argv)
{
	Shiftadd__AdminRequest req = SHIFTADD__ADMIN_REQUEST__INIT;
	char buf[64], *colon;

	snprintf(buf, sizeof(buf), "%s", argv[0]);
	colon = strchr(buf, ':');
	if (colon)
		*colon++ = 0;
	if (parse_u64(buf, &req.client_id) < 0 || (colon && parse_u64(colon, &req.request_id)) ||
	    (colon && req.request_id == 0)) {
		fprintf(stderr,
			"shiftaddctl: cancel: expected CLIENT or CLIENT:REQUEST, got '%s'\n",
			argv[0]);
		return EXIT_USAGE;
	}
	req.op = SHIFTADD__ADMIN_OP__ADMIN_OP_CANCEL;
	return simple_op(ctl, "cancel", &req);
}

/* Poll STATS / STATUS until @done says so or the timeout passes. */
static int wait_until(struct ctl *ctl, bool retiring)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		Shiftadd__AdminRequest req = SHIFTADD__ADMIN_REQUEST__INIT;
		struct admin_reply rep;
		bool done;
		int code;

		req.op = retiring ? SHIFTADD__ADMIN_OP__ADMIN_OP_STATUS
				  : SHIFTADD__ADMIN_OP__ADMIN_OP_STATS;
		code = call(ctl, "wait", &req, &rep);
		if (code)
			return code;
		if (retiring)
			done = rep.r->daemon && rep.r->daemon->retiring_live == 0;
		else
			done = rep.r->stats && rep.r->stats->n_live == 0;
		admin_reply_free(&rep);
		if (done)
			return EXIT_OK;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >
		    ctl->timeout_ms) {
			fprintf(stderr, "shiftaddctl: wait: requests still in flight after %d ms\n",
				ctl->timeout_ms);
			return EXIT_TIMEOUT;
		}
		usleep(20000);
	}
}

static int cmd_reload(struct ctl *ctl, int argc, char **argv)
{
	Shiftadd__AdminRequest req = SHIFTADD__ADMIN_REQUEST__INIT;
	int code;

	req.op = SHIFTADD__ADMIN_OP__ADMIN_OP_RELOAD;
	req.model = argc > 0 ? argv[0] : "";
	code = simple_op(ctl, "reload", &req);
	if (code == EXIT_OK && ctl->wait)
		code = wait_until(ctl, true);
	return code;
}

static int cmd_workers(struct ctl *ctl, int argc, char **argv)
{
	Shiftadd__AdminRequest req = SHIFTADD__ADMIN_REQUEST__INIT;
	struct admin_reply rep;
	int code;

	if (argc == 0) {
		req.op = SHIFTADD__ADMIN_OP__ADMIN_OP_STATUS;
		code = call(ctl, "workers", &req, &rep);
		if (code)
			return code;
		if (!rep.r->daemon) {
			admin_reply_free(&rep);
			return EXIT_PROTOCOL;
		}
		if (ctl->json)
			code = render_status_json(stdout, rep.r->daemon) < 0 ? EXIT_FAILED
									     : EXIT_OK;
		else
			render_workers_text(stdout, rep.r->daemon);
		admin_reply_free(&rep);
		return code;
	}
	if (strcmp(argv[0], "set") || argc != 2) {
		fprintf(stderr, "shiftaddctl: workers: expected 'workers' or 'workers set LIST'\n");
		return EXIT_USAGE;
	}
	req.op = SHIFTADD__ADMIN_OP__ADMIN_OP_WORKERS_SET;
	req.workers = argv[1];
	code = simple_op(ctl, "workers set", &req);
	if (code == EXIT_OK && ctl->wait)
		code = wait_until(ctl, true);
	return code;
}

static int cmd_drain(struct ctl *ctl, int argc, char **argv)
{
	Shiftadd__AdminRequest req = SHIFTADD__ADMIN_REQUEST__INIT;
	int code;

	req.op = SHIFTADD__ADMIN_OP__ADMIN_OP_DRAIN;
	code = simple_op(ctl, "drain", &req);
	if (code == EXIT_OK && ctl->wait)
		code = wait_until(ctl, false);
	return code;
}

static int cmd_shutdown(struct ctl *ctl, int argc, char **argv)
{
	Shiftadd__AdminRequest req = SHIFTADD__ADMIN_REQUEST__INIT;

	req.op = SHIFTADD__ADMIN_OP__ADMIN_OP_SHUTDOWN;
	req.now = ctl->now;
	return simple_op(ctl, "shutdown", &req);
}

static int cmd_log_level(struct ctl *ctl, int argc, char **argv)
{
	Shiftadd__AdminRequest req = SHIFTADD__ADMIN_REQUEST__INIT;

	req.op = SHIFTADD__ADMIN_OP__ADMIN_OP_LOG_LEVEL;
	req.log_level = argc > 0 ? argv[0] : "";
	return simple_op(ctl, "log-level", &req);
}

/* clang-format off */
static const struct command commands[] = {
	{ "status", "", 0, 0, "model, uptime, generation, workers (CPU, NUMA node) and memory per node", cmd_status },
	{ "stats", "", 0, 0, "requests, tokens, queue depths, per-worker busy time, KV cache use (text, --json or --prometheus)", cmd_stats },
	{ "clients", "", 0, 0, "connected clients: pid, uid, in-flight requests, tokens (admin)", cmd_clients },
	{ "cancel", "CLIENT[:REQUEST]", 1, 1, "cancel one request of a client, or all of its requests (admin)", cmd_cancel },
	{ "reload", "[MODEL]", 0, 1, "hot reload: new requests go to MODEL (default: the current file again), in-flight ones finish on the old one; no client is disconnected (admin)", cmd_reload },
	{ "workers", "[set LIST]", 0, 2, "show the workers, or move to LIST = auto, auto:N (first N of the default placement) or a CPU list like 0-3,8, live, as a reload does (admin)", cmd_workers },
	{ "drain", "", 0, 0, "refuse new requests and let in-flight ones finish; the daemon keeps running (admin)", cmd_drain },
	{ "shutdown", "", 0, 0, "drain, then exit (like SIGTERM); --now cancels in-flight requests (admin)", cmd_shutdown },
	{ "log-level", "[LEVEL]", 0, 1, "print, or set to err, warn, info or debug (admin)", cmd_log_level },
	{ NULL, NULL, 0, 0, NULL, NULL },
};
/* clang-format on */

static void usage(FILE *f)
{
	opt_usage(f, "shiftaddctl [OPTIONS] COMMAND [ARGS]",
		  "Control and inspect a running shiftaddd. 'shiftaddctl COMMAND --help' describes "
		  "one command.",
		  opts);
	fprintf(f, "\ncommands:\n");
	for (int i = 0; commands[i].name; i++) {
		char left[48];

		snprintf(left, sizeof(left), "%s %s", commands[i].name, commands[i].args);
		fprintf(f, "  %-28s %s\n", left, commands[i].help);
	}
	fprintf(f, "\n%s", exit_help);
}

static void command_usage(FILE *f, const struct command *c)
{
	fprintf(f, "usage: shiftaddctl [OPTIONS] %s %s\n\n%s\n\n", c->name, c->args, c->help);
	fprintf(f, "Options are those of 'shiftaddctl --help'.\n\n%s", exit_help);
}

int main(int argc, char **argv)
{
	struct option longopts[OPT_MAX + 1];
	char shortopts[3 * OPT_MAX + 2];
	struct ctl ctl = { .timeout_ms = 30000, .fd = -1 };
	const struct command *cmd = NULL;
	bool help = false;
	unsigned u;
	int c, code;

	opt_build(opts, longopts, shortopts);
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		int i = opt_index(opts, c);

		if (c == '?' || c == ':' || i < 0) {
			fprintf(stderr, "shiftaddctl: bad option '%s'\nTry 'shiftaddctl --help'.\n",
				argv[optind - 1]);
			return EXIT_USAGE;
		}
		switch (opts[i].short_name) {
		case 's':
			ctl.socket = optarg;
			break;
		case 't':
			if (opt_u32("timeout", optarg, &u) < 0 || u > 86400000)
				return EXIT_USAGE;
			ctl.timeout_ms = (int)u;
			break;
		case 'j':
			ctl.json = true;
			break;
		case 'p':
			ctl.prometheus = true;
			break;
		case 'w':
			ctl.wait = true;
			break;
		case 'h':
			help = true;
			break;
		case 'V':
			printf("shiftaddctl 0.1.0 (admin protocol %d)\n", ADMIN_PROTOCOL_VERSION);
			return EXIT_OK;
		default: /* long-only */
			if (!strcmp(opts[i].name, "now"))
				ctl.now = true;
			break;
		}
	}
	if (optind < argc) {
		for (int i = 0; commands[i].name; i++)
			if (!strcmp(commands[i].name, argv[optind]))
				cmd = &commands[i];
		if (!cmd) {
			fprintf(stderr,
				"shiftaddctl: unknown command '%s'\nTry 'shiftaddctl --help'.\n",
				argv[optind]);
			return EXIT_USAGE;
		}
	}
	if (help) {
		if (cmd)
			command_usage(stdout, cmd);
		else
			usage(stdout);
		return EXIT_OK;
	}
	if (!cmd) {
		fprintf(stderr, "shiftaddctl: no command\nTry 'shiftaddctl --help'.\n");
		return EXIT_USAGE;
	}
	if (argc - optind - 1 < cmd->min_args || argc - optind - 1 > cmd->max_args) {
		fprintf(stderr, "shiftaddctl: %s: wrong number of arguments\n", cmd->name);
		command_usage(stderr, cmd);
		return EXIT_USAGE;
	}
	if (ctl.json && ctl.prometheus) {
		fprintf(stderr, "shiftaddctl: --json and --prometheus exclude each other\n");
		return EXIT_USAGE;
	}
	code = cmd->run(&ctl, argc - optind - 1, argv + optind + 1);
	if (ctl.fd >= 0)
		close(ctl.fd);
	return code;
}
