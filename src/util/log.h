/*
 * log.h - one-line diagnostics to stderr.
 *
 * Every message is prefixed with "kvmm: " so a user can tell kvmm's words from
 * the guest's console output, which shares the terminal.  Errors are logged
 * once, where they are handled; lower layers return -errno and stay quiet.
 */
#ifndef KVMM_UTIL_LOG_H
#define KVMM_UTIL_LOG_H

#include <stdarg.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Messages above this level are dropped (default LOG_WARN; --verbose raises it). */
extern enum log_level log_max_level;

/* Print "kvmm: <level>: <fmt>\n" to stderr if level <= log_max_level.
 * The terminal may be in raw mode, so the line ends with "\r\n" when stderr is a tty. */
void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
