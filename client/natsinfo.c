/* SPDX-License-Identifier: MIT */
/* natsinfo: a NATS server's greeting, for shipctl fleet check. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "jscan.h"
#include "natsinfo.h"

#define INFO_MAX 65536 /* a server with many cluster URLs says a few KiB */

bool natsinfo_hostport(const char *url, char *host, size_t size, int *port,
                       int default_port)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	const char *at = strrchr(p, '@');
	if (at)
		p = at + 1;
	size_t n = strcspn(p, "/?");
	const char *num = NULL; /* the port's digits */
	if (*p == '[') {
		const char *close = memchr(p, ']', n);
		if (!close)
			return false;
		snprintf(host, size, "%.*s", (int)(close - p - 1), p + 1);
		num = close[1] == ':' ? close + 2 : NULL;
	} else {
		const char *colon = memchr(p, ':', n);
		size_t hn = colon ? (size_t)(colon - p) : n;
		/* listen: 4222 is a port alone. */
		bool alone = !colon && hn && strspn(p, "0123456789") == hn;
		snprintf(host, size, "%.*s", alone ? 0 : (int)hn, p);
		num = alone ? p : colon ? colon + 1 : NULL;
	}
	*port = default_port;
	if (num) {
		char *end;
		long v = strtol(num, &end, 10);
		if (end == num || v < 1 || v > 65535)
			return false;
		*port = (int)v;
	}
	return true;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* 0 once fd has events, else -1 (ETIMEDOUT at end). */
static int wait_fd(int fd, short events, uint64_t end)
{
	uint64_t now = mono_ms();
	struct pollfd p = {.fd = fd, .events = events};
	if (now >= end) {
		errno = ETIMEDOUT;
		return -1;
	}
	int n = poll(&p, 1, (int)(end - now));
	if (n == 0)
		errno = ETIMEDOUT;
	return n == 1 ? 0 : -1;
}

static int dial(const struct addrinfo *ai, uint64_t end)
{
	int fd = socket(ai->ai_family,
	                ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	int soerr = 0;
	socklen_t len = sizeof(soerr);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 &&
	    (errno != EINPROGRESS || wait_fd(fd, POLLOUT, end) < 0 ||
	     getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 ||
	     (soerr && (errno = soerr)))) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Read up to the first line end; returns buf (INFO_MAX bytes, a string)
 * or NULL with errno set. */
static char *first_line(int fd, uint64_t end, char *buf)
{
	size_t len = 0;
	buf[0] = '\0';
	while (!strstr(buf, "\r\n")) {
		if (len == INFO_MAX - 1) {
			errno = EMSGSIZE;
			return NULL;
		}
		if (wait_fd(fd, POLLIN, end) < 0)
			return NULL;
		ssize_t n = recv(fd, buf + len, INFO_MAX - 1 - len, 0);
		if (n <= 0) {
			errno = n ? errno : ECONNRESET;
			return NULL;
		}
		len += (size_t)n;
		buf[len] = '\0';
	}
	*strstr(buf, "\r\n") = '\0';
	return buf;
}

/*
 * A NATS server greets every connection with "INFO {json}" before any
 * login (and before TLS, in 2.9): its name, version, whether JetStream is
 * on and its domain. So no credentials are needed either.
 */
char *natsinfo_fetch(const char *url, int timeout_ms, char *err,
                     size_t errlen)
{
	char host[256], service[8];
	int port, fd = -1;
	if (!natsinfo_hostport(url, host, sizeof(host), &port, 4222) ||
	    !host[0]) {
		snprintf(err, errlen, "cannot read the URL");
		return NULL;
	}
	snprintf(service, sizeof(service), "%d", port);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	int rc = getaddrinfo(host, service, &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "%s: %s", host, gai_strerror(rc));
		return NULL;
	}
	uint64_t end = mono_ms() + (uint64_t)timeout_ms;
	errno = ECONNREFUSED;
	for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next)
		fd = dial(a, end);
	freeaddrinfo(ai);
	char *buf = fd >= 0 ? malloc(INFO_MAX) : NULL;
	const char *line = buf ? first_line(fd, end, buf) : NULL;
	int e = errno;
	if (fd >= 0)
		close(fd);
	if (!line || strncmp(line, "INFO ", 5)) {
		snprintf(err, errlen, "%s",
		         line ? "it does not speak NATS (no INFO)" : strerror(e));
		free(buf);
		return NULL;
	}
	memmove(buf, buf + 5, strlen(buf + 5) + 1);
	return buf;
}

void natsinfo_member(const char *info, const char *key, char *out,
                     size_t size)
{
	size_t off, len;
	out[0] = '\0';
	if (jscan_member(info, strlen(info), key, &off, &len) != 1)
		return;
	if (info[off] == '"' && len >= 2) {
		off++;
		len -= 2;
	}
	snprintf(out, size, "%.*s", (int)len, info + off);
}
