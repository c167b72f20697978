/* SPDX-License-Identifier: MIT */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

/*
 * Logging for daemon/ and tools/ only: library layers return error codes instead.
 * One line per event on stderr; the level is checked before anything is formatted.
 */

enum log_level {
	LOG_LVL_ERR,
	LOG_LVL_WARN,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
	LOG_LVL_COUNT,
};

extern enum log_level log_max_level;

/* Prefix lines with "<N>" so journald reads the priority (set when run under systemd). */
void log_set_journal(int on);
/* Parse "err", "warn", "info" or "debug"; returns the level or -EINVAL. */
int log_level_parse(const char *s);
void log_emit(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at(lvl, ...)                            \
	do {                                        \
		if ((lvl) <= log_max_level)         \
			log_emit(lvl, __VA_ARGS__); \
	} while (0)

#define log_err(...)   log_at(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...)  log_at(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_at(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_at(LOG_LVL_DEBUG, __VA_ARGS__)

/* Log at error level with strerror(-ret) appended; evaluates to @ret. */
/* An expression (log_at is a statement), so that `return log_errno(...)` works. */
#define log_errno(ret, fmt, ...)                                                       \
	((LOG_LVL_ERR <= log_max_level                                                 \
		  ? log_emit(LOG_LVL_ERR, fmt ": %s", ##__VA_ARGS__, strerror(-(ret))) \
		  : (void)0),                                                          \
	 (ret))

#endif /* COMMON_LOG_H */
