/*
 * log.c - see log.h.  A single fprintf per message keeps lines from two
 * threads from interleaving mid-line (stdio locks the stream per call).
 */
#include "util/log.h"

#include <stdio.h>
#include <unistd.h>

enum log_level log_max_level = LOG_WARN;

static const char *const level_names[] = {
	[LOG_ERROR] = "error", [LOG_WARN] = "warning",
	[LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void log_msg(enum log_level level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (level > log_max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "kvmm: %s: %s%s", level_names[level], buf,
		isatty(STDERR_FILENO) ? "\r\n" : "\n");
}
