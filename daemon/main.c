// SPDX-License-Identifier: MIT
/* shiftaddd: configuration, model backend, workers, control socket, then the event loop. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/internal.h"

static int setup_workers(struct daemon *d)
{
	return reload_plan_workers(&d->cfg, d->cfg.workers, d->cfg.max_workers, &d->placement,
				   &d->pool);
}

static int setup_model(struct daemon *d)
{
	struct backend_config bc = { 0 };
	struct sched_limits lim;
	struct errbuf e = { { 0 } };
	int ret;

	d->bops = backend_find(d->cfg.backend);
	if (!d->bops)
		return log_errno(-EINVAL, "unknown backend '%s'", d->cfg.backend);
	reload_backend_config(&d->cfg, d->cfg.model, d->pool, &d->placement, &bc);
	ret = d->bops->open(&bc, &d->be, &e);
	if (ret < 0)
		return log_errno(ret, "cannot open backend '%s' model '%s': %s", d->cfg.backend,
				 d->cfg.model, errbuf_str(&e, ret));
	d->bops->info(d->be, &d->binfo);
	reload_sched_limits(&d->cfg, &lim);
	ret = sched_new(d->bops, d->be, &lim, &d->sched);
	if (ret < 0)
		return log_errno(ret, "cannot create scheduler");
	log_info("model ready backend=%s model=\"%s\" n_vocab=%u n_slots=%u n_ctx=%u kv_type=%s "
		 "kv_mib=%.1f",
		 d->bops->name, d->binfo.model_name, d->binfo.n_vocab, d->binfo.n_slots,
		 d->binfo.n_ctx, d->binfo.kv_type ? d->binfo.kv_type : "none",
		 (double)d->binfo.kv_bytes / (1 << 20));
	return 0;
}

static int setup_socket(struct daemon *d)
{
	int ret = ctl_sock_from_env(&d->listen_fd);

	if (ret == 0) {
		log_info("listening via socket activation fd=%d", d->listen_fd);
		return 0;
	}
	if (ret != -ENOENT)
		return log_errno(ret, "bad socket-activation environment");
	config_socket_path(&d->cfg, d->socket_path, sizeof(d->socket_path));
	ret = ctl_sock_listen(d->socket_path, &d->listen_fd);
	if (ret < 0)
		return log_errno(ret, "cannot listen on '%s'", d->socket_path);
	d->listen_owned = true;
	log_info("listening socket=\"%s\"", d->socket_path);
	return 0;
}

static pid_t main_tid;

/*
 * Threads that libraries start before main() (OpenBLAS starts its pool from a constructor)
 * did not inherit the blocked mask, so a process signal may land on one of them: pass it on
 * to the main thread, where it stays pending for the loop's signalfd.
 */
static void forward_signal(int sig)
{
	int saved = errno;

	syscall(SYS_tgkill, getpid(), main_tid, sig);
	errno = saved;
}

static void install_forwarders(void)
{
	struct sigaction sa = { .sa_handler = forward_signal };

	main_tid = (pid_t)syscall(SYS_gettid);
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

int main(int argc, char **argv)
{
	struct daemon *d;
	struct errbuf e = { { 0 } };
	sigset_t mask;
	bool help;
	int ret, status = 1;

	/* Before any thread starts, so that every thread inherits the mask: signals are only
	 * ever taken through the loop's signalfd. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	install_forwarders();
	d = calloc(1, sizeof(*d));
	if (!d)
		return 1;
	d->listen_fd = -1;
	d->signal_fd = -1;
	config_defaults(&d->cfg);
	ret = config_from_args(&d->cfg, argc, argv, &help, &e);
	if (help) {
		config_usage(stdout);
		free(d);
		return 0;
	}
	if (ret < 0) {
		fprintf(stderr, "shiftaddd: %s\n", errbuf_str(&e, ret));
		fprintf(stderr, "Try 'shiftaddd --help'.\n");
		free(d);
		return 2;
	}
	log_max_level = (enum log_level)log_level_parse(d->cfg.log_level);
	log_set_journal(getenv("JOURNAL_STREAM") != NULL);
	if (setup_workers(d) < 0 || setup_model(d) < 0 || setup_socket(d) < 0)
		goto out;
	ret = uring_loop_init(d);
	if (ret < 0) {
		(void)log_errno(ret, "cannot set up io_uring");
		goto out;
	}
	log_info("ready pid=%d version=%s", (int)getpid(), DAEMON_VERSION);
	ret = uring_loop_run(d);
	uring_loop_done(d);
	if (ret == 0) {
		struct sched_stats st;

		reload_stats(d, &st);
		log_info("stopped requests=%llu tokens=%llu steps=%llu clients=%llu",
			 (unsigned long long)st.requests_done,
			 (unsigned long long)st.tokens_generated, (unsigned long long)st.steps,
			 (unsigned long long)d->n_accepted);
		status = 0;
	}
out:
	if (d->listen_fd >= 0)
		close(d->listen_fd);
	if (d->listen_owned)
		unlink(d->socket_path);
	reload_done(d);
	sched_free(d->sched);
	if (d->be)
		d->bops->close(d->be);
	worker_pool_free(d->pool);
	placement_done(&d->placement);
	free(d);
	return status;
}
