/* SPDX-License-Identifier: MIT */
/* Logging to stderr, with sd-daemon priority prefixes under journald. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "shipd.h"

static int verbose;
static int prefix;

void log_init(int debug, int use_prefix)
{
	verbose = debug;
	prefix = use_prefix;
}

void log_setverbose(int debug)
{
	verbose = debug;
}

int log_getverbose(void)
{
	return verbose;
}

static void vlog(int pri, const char *fmt, va_list ap, const char *err)
	__attribute__((format(printf, 2, 0)));

static void vlog(int pri, const char *fmt, va_list ap, const char *err)
{
	char buf[1024];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* One fprintf per line so threads do not interleave. */
	if (prefix)
		fprintf(stderr, "<%d>%s%s%s\n", pri, buf, err ? ": " : "",
		        err ? err : "");
	else
		fprintf(stderr, "shipd: %s%s%s\n", buf, err ? ": " : "",
		        err ? err : "");
}

void log_warn(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_WARNING, fmt, ap, strerror(saved));
	va_end(ap);
	errno = saved;
}

void log_warnx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_WARNING, fmt, ap, NULL);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_INFO, fmt, ap, NULL);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	if (!verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, fmt, ap, NULL);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap, strerror(saved));
	va_end(ap);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_CRIT, fmt, ap, NULL);
	va_end(ap);
	exit(1);
}
