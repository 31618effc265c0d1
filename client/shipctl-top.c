/* SPDX-License-Identifier: MIT */
/* shipctl top: a live table of apps, rates, errors and drops, read from
 * shipd's /metrics (the figures Prometheus scrapes). */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "shipctl.h"

#define DEFAULT_METRICS "127.0.0.1:9464"
#define SCRAPE_MAX (16u << 20)
#define FETCH_TIMEOUT_S 3
#define APPS_MAX 2048
#define APP_MAX 64

/* What one app did, as counted since shipd started (or holds now). */
struct app {
	char name[APP_MAX + 1];
	double clients, subs, requests, errors, in, out, dropped, denied;
};

struct sample {
	uint64_t at_ms;
	bool connected, js_ready;
	double rtt, reconnects, clients, msgs_in, msgs_out, dropped;
	struct app *apps;
	size_t n_apps;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- fetching ---- */

static int dial(const char *addr)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	if (addr[0] == '/') {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;
		if (strlen(addr) >= sizeof(un->sun_path))
			return -1;
		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof(un->sun_path), "%s", addr);
		len = sizeof(*un);
	} else {
		char host[64];
		const char *colon = strrchr(addr, ':');
		bool v6 = addr[0] == '[';
		if (!colon || colon - addr - 2 * v6 >= (int)sizeof(host))
			return -1;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - addr - 2 * v6),
		         addr + v6);
		int port = atoi(colon + 1);
		struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
			in4->sin_family = AF_INET;
			in4->sin_port = htons((uint16_t)port);
			len = sizeof(*in4);
		} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
			in6->sin6_family = AF_INET6;
			in6->sin6_port = htons((uint16_t)port);
			len = sizeof(*in6);
		} else {
			errno = EINVAL;
			return -1;
		}
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {FETCH_TIMEOUT_S, 0};
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* The body of GET /metrics at addr (malloc'd, NUL-terminated), or NULL
 * after saying why. */
static char *fetch(const char *addr)
{
	static const char req[] = "GET /metrics HTTP/1.0\r\nHost: shipd\r\n\r\n";
	int fd = dial(addr);
	if (fd < 0) {
		fprintf(stderr,
		        "shipctl: top: no metrics server at %s: %s (set "
		        "metrics_listen or metrics_socket in shipd.conf, then -m "
		        "or $SHIP_METRICS)\n",
		        addr, strerror(errno));
		return NULL;
	}
	size_t cap = 65536, got = 0;
	char *buf = malloc(cap);
	ssize_t r = 0;
	if (buf && send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) ==
	                   (ssize_t)sizeof(req) - 1) {
		while ((r = recv(fd, buf + got, cap - got - 1, 0)) > 0) {
			got += (size_t)r;
			if (got + 1 < cap)
				continue;
			char *nb = cap < SCRAPE_MAX ? realloc(buf, cap * 2) : NULL;
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	close(fd);
	if (!buf)
		return NULL;
	buf[got] = '\0';
	char *body = strstr(buf, "\r\n\r\n");
	if (strncmp(buf, "HTTP/1.", 7) || strncmp(buf + 8, " 200", 4) || !body ||
	    r < 0) {
		fprintf(stderr, "shipctl: top: %s did not answer with metrics "
		                "(%.40s)\n",
		        addr, got ? buf : "nothing");
		free(buf);
		return NULL;
	}
	memmove(buf, body + 4, strlen(body + 4) + 1);
	return buf;
}

/* ---- reading ---- */

/* The value of label key in labels ({a="x",b="y"}) into out. */
static bool label(const char *labels, const char *key, char *out, size_t n)
{
	char pat[32];
	snprintf(pat, sizeof(pat), "%s=\"", key);
	const char *p = labels ? strstr(labels, pat) : NULL;
	if (!p || (p != labels + 1 && p[-1] != ','))
		return false;
	p += strlen(pat);
	size_t i = 0;
	for (; *p && *p != '"' && i + 1 < n; p++)
		out[i++] = *p == '\\' && p[1] ? *++p : *p;
	out[i] = '\0';
	return true;
}

static struct app *app_of(struct sample *s, const char *labels)
{
	char name[APP_MAX + 1];
	if (!label(labels, "app", name, sizeof(name)))
		return NULL;
	for (size_t i = 0; i < s->n_apps; i++)
		if (!strcmp(s->apps[i].name, name))
			return &s->apps[i];
	if (s->n_apps == APPS_MAX)
		return NULL;
	struct app *a = &s->apps[s->n_apps++];
	memset(a, 0, sizeof(*a));
	snprintf(a->name, sizeof(a->name), "%s", name);
	return a;
}

/* Where each figure goes: a field of the sample, or of an app. */
static const struct {
	const char *name;
	size_t off;
	bool per_app;
} figures[] = {
#define S(f) offsetof(struct sample, f)
#define A(f) offsetof(struct app, f)
	{"shipd_nats_rtt_seconds", S(rtt), false},
	{"shipd_nats_reconnects_total", S(reconnects), false},
	{"shipd_clients", S(clients), false},
	{"shipd_messages_received_total", S(msgs_in), false},
	{"shipd_messages_sent_total", S(msgs_out), false},
	{"shipd_messages_dropped_total", S(dropped), false},
	{"shipd_app_clients", A(clients), true},
	{"shipd_app_subscriptions", A(subs), true},
	{"shipd_app_requests_total", A(requests), true},
	{"shipd_app_received_bytes_total", A(in), true},
	{"shipd_app_sent_bytes_total", A(out), true},
	{"shipd_app_dropped_messages_total", A(dropped), true},
	{"shipd_app_denied_total", A(denied), true},
#undef S
#undef A
};

static void take_line(struct sample *s, char *line)
{
	char *sp = strrchr(line, ' ');
	if (line[0] == '#' || !sp)
		return;
	*sp = '\0';
	double v = strtod(sp + 1, NULL);
	char *labels = strchr(line, '{');
	if (labels)
		*labels = '\0';
	if (!strcmp(line, "shipd_nats_connected"))
		s->connected = v == 1;
	else if (!strcmp(line, "shipd_jetstream_ready"))
		s->js_ready = v == 1;
	if (labels)
		*labels = '{';
	char code[32];
	if (labels && !strncmp(line, "shipd_app_responses_total{", 26) &&
	    label(labels, "code", code, sizeof(code)) && strcmp(code, "ok")) {
		struct app *a = app_of(s, labels);
		if (a)
			a->errors += v;
		return;
	}
	size_t n = labels ? (size_t)(labels - line) : strlen(line);
	for (size_t i = 0; i < sizeof(figures) / sizeof(figures[0]); i++) {
		if (strlen(figures[i].name) != n ||
		    strncmp(line, figures[i].name, n))
			continue;
		void *base = s;
		if (figures[i].per_app && !(base = app_of(s, labels)))
			return;
		*(double *)((char *)base + figures[i].off) += v;
		return;
	}
}

static int sample_take(struct sample *s, const char *addr)
{
	char *text = fetch(addr);
	if (!text)
		return -1;
	struct app *apps = s->apps;
	memset(s, 0, sizeof(*s));
	s->apps = apps;
	s->at_ms = mono_ms();
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save))
		take_line(s, l);
	free(text);
	return 0;
}

/* ---- printing ---- */

static void json_once(const struct sample *s)
{
	printf("{\"nats_connected\":%s,\"jetstream_ready\":%s,"
	       "\"rtt_seconds\":%.6f,\"reconnects\":%.0f,\"clients\":%.0f,"
	       "\"messages_received\":%.0f,\"messages_sent\":%.0f,"
	       "\"dropped\":%.0f,\"apps\":[",
	       s->connected ? "true" : "false", s->js_ready ? "true" : "false",
	       s->rtt, s->reconnects, s->clients, s->msgs_in, s->msgs_out,
	       s->dropped);
	for (size_t i = 0; i < s->n_apps; i++) {
		const struct app *a = &s->apps[i];
		printf("%s{\"app\":", i ? "," : "");
		json_str(stdout, a->name, strlen(a->name));
		printf(",\"clients\":%.0f,\"subscriptions\":%.0f,"
		       "\"requests\":%.0f,\"errors\":%.0f,\"bytes_in\":%.0f,"
		       "\"bytes_out\":%.0f,\"dropped\":%.0f,\"denied\":%.0f}",
		       a->clients, a->subs, a->requests, a->errors, a->in, a->out,
		       a->dropped, a->denied);
	}
	fputs("]}\n", stdout);
}

static const struct app *app_find(const struct sample *s, const char *name)
{
	for (size_t i = 0; s && i < s->n_apps; i++)
		if (!strcmp(s->apps[i].name, name))
			return &s->apps[i];
	return NULL;
}

/* One app's row: rates since the last sample ("-" without one). */
struct row {
	const struct app *a;
	double req, err, in, out, drop; /* per second, or -1 */
};

static double rate(double now, double before, double secs)
{
	return secs > 0 && now >= before ? (now - before) / secs : -1;
}

static int row_cmp(const void *x, const void *y)
{
	const struct row *a = x, *b = y;
	if (a->req != b->req)
		return a->req < b->req ? 1 : -1;
	return strcmp(a->a->name, b->a->name);
}

static void fmt_rate(char *buf, size_t n, double v, bool bytes)
{
	if (v < 0)
		snprintf(buf, n, "-");
	else if (bytes)
		human_bytes(buf, n, (uint64_t)v);
	else
		snprintf(buf, n, "%.1f", v);
}

static int screen_rows(void)
{
	struct winsize ws;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 6)
		return ws.ws_row - 4;
	return 50;
}

static void table(const struct sample *s, const struct sample *prev,
                  bool tty)
{
	double secs = prev ? (double)(s->at_ms - prev->at_ms) / 1e3 : 0;
	struct row *rows = calloc(s->n_apps ? s->n_apps : 1, sizeof(*rows));
	if (!rows)
		return;
	for (size_t i = 0; i < s->n_apps; i++) {
		const struct app *a = &s->apps[i], *b = app_find(prev, a->name);
		struct app zero = {0};
		if (!b)
			b = &zero;
		rows[i] = (struct row){a, rate(a->requests, b->requests, secs),
		                       rate(a->errors, b->errors, secs),
		                       rate(a->in, b->in, secs),
		                       rate(a->out, b->out, secs),
		                       rate(a->dropped, b->dropped, secs)};
	}
	qsort(rows, s->n_apps, sizeof(*rows), row_cmp);
	if (tty)
		fputs("\033[H\033[2J", stdout);
	char in[16], out[16], drop[16];
	fmt_rate(in, sizeof(in), prev ? rate(s->msgs_in, prev->msgs_in, secs) : -1,
	         false);
	fmt_rate(out, sizeof(out),
	         prev ? rate(s->msgs_out, prev->msgs_out, secs) : -1, false);
	fmt_rate(drop, sizeof(drop),
	         prev ? rate(s->dropped, prev->dropped, secs) : -1, false);
	printf("NATS %s, rtt %.3f ms, %.0f reconnects, JetStream %s\n",
	       s->connected ? "connected" : "NOT CONNECTED", s->rtt * 1e3,
	       s->reconnects, s->js_ready ? "ready" : "not ready");
	printf("clients %.0f   messages/s in %s out %s   dropped/s %s\n",
	       s->clients, in, out, drop);
	printf("%-24s %7s %6s %8s %7s %8s %8s %7s %7s\n", "APP", "CLIENTS",
	       "SUBS", "REQ/s", "ERR/s", "IN/s", "OUT/s", "DROP/s", "DENIED");
	size_t max = tty ? (size_t)screen_rows() : s->n_apps;
	for (size_t i = 0; i < s->n_apps && i < max; i++) {
		const struct row *r = &rows[i];
		char req[16], err[16], bin[16], bout[16], dr[16];
		fmt_rate(req, sizeof(req), r->req, false);
		fmt_rate(err, sizeof(err), r->err, false);
		fmt_rate(bin, sizeof(bin), r->in, true);
		fmt_rate(bout, sizeof(bout), r->out, true);
		fmt_rate(dr, sizeof(dr), r->drop, false);
		printf("%-24.24s %7.0f %6.0f %8s %7s %8s %8s %7s %7.0f\n",
		       r->a->name, r->a->clients, r->a->subs, req, err, bin, bout,
		       dr, r->a->denied);
	}
	fflush(stdout);
	free(rows);
}

static void wait_ms(uint64_t ms)
{
	for (uint64_t end = mono_ms() + ms; !interrupted && mono_ms() < end;) {
		struct timespec ts = {0, 50 * 1000000};
		nanosleep(&ts, NULL);
	}
}

static int cmd_top(int argc, char **argv)
{
	static const struct option opts[] = {
		{"metrics", required_argument, NULL, 'm'},
		{"interval", required_argument, NULL, 'i'},
		{"count", required_argument, NULL, 'n'},
		{NULL, 0, NULL, 0},
	};
	const char *addr = getenv("SHIP_METRICS");
	uint64_t every = 2000, count = 0;
	int ch;
	if (!addr || !*addr)
		addr = DEFAULT_METRICS;
	while ((ch = getopt_long(argc, argv, "m:i:n:", opts, NULL)) != -1) {
		if (ch == 'm')
			addr = optarg;
		else if (ch == 'i' && parse_duration(optarg, &every) && every)
			continue;
		else if (ch == 'n' && parse_uint(optarg, &count))
			continue;
		else
			goto usage;
	}
	if (optind != argc)
		goto usage;
	struct sample s[2] = {{.apps = calloc(APPS_MAX, sizeof(struct app))},
	                      {.apps = calloc(APPS_MAX, sizeof(struct app))}};
	int rc = 1;
	if (!s[0].apps || !s[1].apps)
		goto out;
	if (json) {
		rc = sample_take(&s[0], addr) < 0 ? 1 : 0;
		if (!rc)
			json_once(&s[0]);
		goto out;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	bool tty = isatty(STDOUT_FILENO);
	for (uint64_t i = 0; !interrupted && (!count || i < count); i++) {
		struct sample *cur = &s[i % 2], *prev = i ? &s[(i + 1) % 2] : NULL;
		if (sample_take(cur, addr) < 0)
			goto out;
		table(cur, prev, tty);
		if (!count || i + 1 < count)
			wait_ms(every);
	}
	rc = 0;
out:
	free(s[0].apps);
	free(s[1].apps);
	return rc;
usage:
	fprintf(stderr, "usage: shipctl top [-m ADDRESS] [-i INTERVAL] "
	                "[-n COUNT]\n");
	return 2;
}

const struct cmd top_cmds[] = {
	{"top", cmd_top, "[-m ADDRESS] [-i INTERVAL] [-n COUNT]",
	 "a live table of apps (rates, errors, drops) from shipd's /metrics "
	 "(ADDRESS: HOST:PORT or a socket path; $SHIP_METRICS, default "
	 DEFAULT_METRICS ")"},
	{NULL, NULL, NULL, NULL},
};
