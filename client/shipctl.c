/* SPDX-License-Identifier: MIT */
/* shipctl: operate and try out shipd from the shell; links only libshipc. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shipctl.h"

#define MAX_STDIN (64u << 20)
#define REFUSAL_MAX 256 /* shipd's words when it refuses a connection */

static const char *sock_path;
bool json;
struct shipc *h;
volatile sig_atomic_t interrupted;

static void usage(FILE *f);

int fail(const char *what, int err)
{
	char buf[256] = "";
	if (h)
		shipc_last_error(h, buf, sizeof(buf));
	const char *why;
	switch (err) {
	case ESRCH:
		why = "no responders";
		break;
	case ETIMEDOUT:
		why = "timeout";
		break;
	case EAGAIN:
		why = "NATS unavailable";
		break;
	case ENOTCONN:
		why = "not connected to shipd";
		break;
	case ESTALE:
		why = "wrong revision";
		break;
	case ENOENT:
		why = "not found";
		break;
	case EEXIST:
		why = "already exists";
		break;
	case ENOBUFS:
		why = "limit reached";
		break;
	case EACCES:
		why = "permission denied";
		break;
	case EINVAL:
		why = "invalid argument";
		break;
	default:
		why = strerror(err);
	}
	/* It may have been applied: say so, the operator checks. */
	const char *unknown = h && (err == ETIMEDOUT || err == EAGAIN) &&
	                              shipc_outcome_unknown(h)
	                      ? " (outcome unknown)"
	                      : "";
	if (buf[0] && strstr(buf, why) == NULL)
		fprintf(stderr, "shipctl: %s: %s (%s)%s\n", what, why, buf,
		        unknown);
	else
		fprintf(stderr, "shipctl: %s: %s%s\n", what, buf[0] ? buf : why,
		        unknown);
	return 1;
}

/* libshipc tells why shipd refused a connection (too many clients) only
 * through its log; keep those words for the error message. */
static void keep_refusal(int level, const char *msg, void *arg)
{
	static const char prefix[] = "libshipc: shipd refused: ";
	char *refusal = arg; /* REFUSAL_MAX bytes */
	if (!strncmp(msg, prefix, sizeof(prefix) - 1))
		snprintf(refusal, REFUSAL_MAX, "%s", msg + sizeof(prefix) - 1);
}

const char *ctl_socket(void)
{
	return sock_path ? sock_path : shipc_default_socket();
}

int open_handle(void)
{
	const char *path = ctl_socket();
	char refusal[REFUSAL_MAX] = "";
	shipc_set_log_handler(keep_refusal, refusal);
	h = shipc_connect(path, "shipctl");
	int e = errno;
	shipc_set_log_handler(NULL, NULL);
	if (h)
		return 0;
	if (refusal[0])
		fprintf(stderr, "shipctl: shipd refused the connection: %s\n",
		        refusal);
	else if (e == ENOENT || e == ECONNREFUSED)
		fprintf(stderr, "shipctl: shipd is not running (%s: %s)\n", path,
		        strerror(e));
	else
		fprintf(stderr, "shipctl: cannot connect to shipd at %s: %s\n",
		        path, strerror(e));
	return -1;
}

void on_signal(int sig)
{
	interrupted = 1;
}

/* ---- output helpers ---- */

/* Length of the well-formed UTF-8 sequence at p (of n bytes) that is not
 * ASCII, or 0 (RFC 3629: no overlong forms, surrogates or beyond
 * U+10FFFF). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
	if (p[0] < 0xc2 || p[0] > 0xf4 || n < len)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
		return 0;
	return len;
}

void json_str(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x80) {
			/* JSON is UTF-8: a byte that is not (binary data)
			 * becomes U+FFFD rather than make the output
			 * unreadable. */
			size_t len = utf8_len((const unsigned char *)s + i, n - i);
			if (len) {
				fwrite(s + i, 1, len, f);
				i += len - 1;
			} else {
				fputs("\\ufffd", f);
			}
		} else if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void print_msg(const struct shipc_msg *m, uint64_t n, bool raw)
{
	if (json) {
		fputs("{\"subject\":", stdout);
		json_str(stdout, m->subject, strlen(m->subject));
		if (m->reply && m->reply[0]) {
			fputs(",\"reply\":", stdout);
			json_str(stdout, m->reply, strlen(m->reply));
		}
		fputs(",\"data\":", stdout);
		json_str(stdout, m->data, m->len);
		if (m->n_headers) {
			fputs(",\"headers\":[", stdout);
			for (size_t i = 0; i < m->n_headers; i++) {
				fputs(i ? ",[" : "[", stdout);
				json_str(stdout, m->headers[i].key,
				         strlen(m->headers[i].key));
				fputc(',', stdout);
				json_str(stdout, m->headers[i].value,
				         strlen(m->headers[i].value));
				fputc(']', stdout);
			}
			fputc(']', stdout);
		}
		if (m->dropped)
			printf(",\"dropped\":%" PRIu64, m->dropped);
		fputs("}\n", stdout);
	} else if (raw) {
		fwrite(m->data, 1, m->len, stdout);
		fputc('\n', stdout);
	} else {
		if (m->dropped)
			printf("(%" PRIu64 " messages dropped: too slow)\n",
			       m->dropped);
		printf("[#%" PRIu64 "] %s%s%s (%zu bytes)\n", n, m->subject,
		       m->reply && m->reply[0] ? " reply " : "",
		       m->reply ? m->reply : "", m->len);
		for (size_t i = 0; i < m->n_headers; i++)
			printf("%s: %s\n", m->headers[i].key, m->headers[i].value);
		fwrite(m->data, 1, m->len, stdout);
		fputs("\n", stdout);
	}
	fflush(stdout);
}

/* ---- message arguments ---- */

int add_header(struct msg_args *a, const char *arg)
{
	/* "Key: Value", or "Key=Value" when an '=' comes before any ':'. */
	const char *colon = strchr(arg, ':'), *eq = strchr(arg, '=');
	const char *sep = eq && (!colon || eq < colon) ? eq : colon;
	if (!sep || sep == arg || a->n_hdrs == MAX_HDRS) {
		fprintf(stderr,
		        "shipctl: bad header '%s' (want 'Key: Value' or "
		        "Key=Value)\n",
		        arg);
		return -1;
	}
	char *kv = strdup(arg);
	if (!kv)
		return -1;
	kv[sep - arg] = '\0';
	char *v = kv + (sep - arg) + 1;
	while (sep == colon && *v == ' ')
		v++;
	a->hdr_store[a->n_hdrs] = kv;
	a->hdrs[a->n_hdrs].key = kv;
	a->hdrs[a->n_hdrs].value = v;
	a->n_hdrs++;
	return 0;
}

int read_stdin(struct msg_args *a)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return -1;
	for (;;) {
		if (len == cap) {
			if (cap >= MAX_STDIN) {
				fprintf(stderr, "shipctl: stdin over %u bytes\n",
				        MAX_STDIN);
				free(buf);
				return -1;
			}
			char *n = realloc(buf, cap *= 2);
			if (!n) {
				free(buf);
				return -1;
			}
			buf = n;
		}
		size_t r = fread(buf + len, 1, cap - len, stdin);
		len += r;
		if (r == 0)
			break;
	}
	a->data = buf;
	a->len = len;
	a->data_alloc = true;
	return 0;
}

void msg_args_finish(struct msg_args *a)
{
	for (size_t i = 0; i < a->n_hdrs; i++)
		free(a->hdr_store[i]);
	if (a->data_alloc)
		free(a->data);
}

bool parse_duration(const char *s, uint64_t *ms)
{
	static const struct {
		const char *suffix;
		uint64_t ms;
	} units[] = {{"", 1000},     {"s", 1000},       {"ms", 1},
	             {"m", 60000},   {"h", 3600000},    {"d", 86400000}};
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return false;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix))
			continue;
		if (v > UINT64_MAX / units[i].ms)
			return false;
		*ms = v * units[i].ms;
		return true;
	}
	return false;
}

bool parse_uint(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (!*s || *end || errno || *s == '-')
		return false;
	*out = v;
	return true;
}

/* ---- commands ---- */

/* A size as people write limits: 256M, 64K, 1.2M, 512B. */
static void size_str(char *buf, size_t size, uint64_t n)
{
	static const char units[] = "KMGT";
	if (n < 1024) {
		snprintf(buf, size, "%" PRIu64 "B", n);
		return;
	}
	int u = 0;
	while (u < 3 && n >= (1024ull << (10 * (u + 1))))
		u++;
	uint64_t unit = 1024ull << (10 * u);
	if (n % unit == 0)
		snprintf(buf, size, "%" PRIu64 "%c", n / unit, units[u]);
	else
		snprintf(buf, size, "%.1f%c", (double)n / (double)unit,
		         units[u]);
}

static const char *const uplink_names[] = {"none", "unknown", "up",
                                            "down"};

const char *uplink_state_name(enum shipc_uplink_state s)
{
	return (unsigned)s < 4 ? uplink_names[s] : "?";
}

void uplink_json(FILE *f, const struct shipc_uplink *u)
{
	fprintf(f, "{\"state\":\"%s\",\"hub_domain\":",
	        uplink_state_name(u->state));
	json_str(f, u->hub_domain, strlen(u->hub_domain));
	fputs(",\"domain\":", f);
	json_str(f, u->domain, strlen(u->domain));
	fprintf(f, ",\"since_ms\":%" PRIu64 ",\"since_unix_ms\":%" PRIu64
	           ",\"changes\":%" PRIu64 ",\"last_error\":",
	        u->changed_ms, u->since_unix_ms, u->changes);
	json_str(f, u->last_error, strlen(u->last_error));
	fprintf(f, ",\"domains\":{\"events\":\"%s\",\"channels\":\"%s\","
	           "\"kv\":\"%s\",\"jobs\":\"%s\"},\"hub_buckets\":",
	        u->events_on_hub ? "hub" : "local",
	        u->channels_on_hub ? "hub" : "local",
	        u->kv_on_hub ? "hub" : "local", u->jobs_on_hub ? "hub" : "local");
	json_str(f, u->hub_buckets, strlen(u->hub_buckets));
	fprintf(f, ",\"rate_limit\":%" PRIu64 ",\"priority\":", u->rate_limit);
	json_str(f, u->priority, strlen(u->priority));
	fputs(",\"streams\":[", f);
	for (size_t i = 0; i < u->n_streams; i++) {
		const struct shipc_uplink_stream *s = &u->streams[i];
		fputs(i ? ",{\"stream\":" : "{\"stream\":", f);
		json_str(f, s->stream, strlen(s->stream));
		fputs(",\"hub_stream\":", f);
		json_str(f, s->hub_stream, strlen(s->hub_stream));
		fprintf(f, ",\"last_seq\":%" PRIu64 ",\"waiting_msgs\":%" PRIu64
		           ",\"waiting_bytes\":%" PRIu64 ",\"hub_seen_ms\":%" PRIu64
		           ",\"priority\":%u,\"consumers\":%u,\"pending\":%" PRIu64
		           ",\"rate_limit\":%" PRIu64 ",\"held\":%s}",
		        s->last_seq, s->waiting_msgs, s->waiting_bytes,
		        s->hub_seen_ms, s->priority, s->consumers, s->pending,
		        s->rate_limit, s->held ? "true" : "false");
	}
	fputs("]}", f);
}

void uplink_print(FILE *f, const struct shipc_uplink *u)
{
	if (u->state == SHIPC_UPLINK_NONE) {
		fprintf(f, "uplink:        none (no hub_domain)\n");
		return;
	}
	fprintf(f, "uplink:        %s to hub '%s' from '%s' for %" PRIu64
	           "s, %" PRIu64 " changes\n",
	        uplink_state_name(u->state), u->hub_domain,
	        u->domain[0] ? u->domain : "?", u->changed_ms / 1000, u->changes);
	if (u->state == SHIPC_UPLINK_DOWN && u->last_error[0])
		fprintf(f, "  why:         %s\n", u->last_error);
	bool none = !u->events_on_hub && !u->channels_on_hub &&
	            !u->kv_on_hub && !u->jobs_on_hub && !u->hub_buckets[0];
	fprintf(f, "  on the hub:  %s%s%s%s%s%s%s\n", none ? "nothing" : "",
	        u->events_on_hub ? "events, " : "",
	        u->channels_on_hub ? "channels, " : "",
	        u->kv_on_hub ? "kv, " : "", u->jobs_on_hub ? "jobs, " : "",
	        u->hub_buckets[0] ? "buckets " : "", u->hub_buckets);
	if (u->rate_limit || u->priority[0]) {
		char rate[32];
		size_str(rate, sizeof(rate), u->rate_limit);
		fprintf(f, "  limits:      %s%s%s%s\n",
		        u->rate_limit ? rate : "no rate limit",
		        u->rate_limit ? "/s in all" : "",
		        u->priority[0] ? ", priority " : "", u->priority);
	}
	for (size_t i = 0; i < u->n_streams; i++) {
		const struct shipc_uplink_stream *s = &u->streams[i];
		char bytes[32];
		size_str(bytes, sizeof(bytes), s->waiting_bytes);
		if (s->hub_seen_ms || s->waiting_msgs)
			fprintf(f, "  %s -> %s: %" PRIu64 " waiting (about %s), "
			           "last seq %" PRIu64 ", hub seen %" PRIu64 "s ago\n",
			        s->stream, s->hub_stream, s->waiting_msgs, bytes,
			        s->last_seq, s->hub_seen_ms / 1000);
		else
			fprintf(f, "  %s -> %s: last seq %" PRIu64
			           ", not seen from the hub yet\n",
			        s->stream, s->hub_stream, s->last_seq);
		if (!s->consumers)
			continue;
		char rate[32];
		size_str(rate, sizeof(rate), s->rate_limit);
		fprintf(f, "    priority %u, %" PRIu64 " not sent by %u hub "
		           "consumer%s, %s%s%s\n",
		        s->priority, s->pending, s->consumers,
		        s->consumers == 1 ? "" : "s",
		        s->rate_limit ? rate : "no limit",
		        s->rate_limit ? "/s" : "",
		        s->held ? " (held: a higher priority is behind)" : "");
	}
}

static void status_json(const struct shipc_status *st,
                        const struct shipc_limits *l,
                        const struct shipc_uplink *u)
{
	printf("{\"version\":\"%s\",\"uptime_ms\":%" PRIu64
	       ",\"nats\":{\"state\":\"%s\",\"since_ms\":%" PRIu64
	       ",\"url\":",
	       st->daemon_version, st->uptime_ms, shipc_link_name(st->link),
	       st->link_changed_ms);
	json_str(stdout, st->server_url, strlen(st->server_url));
	printf(",\"server_id\":");
	json_str(stdout, st->server_id, strlen(st->server_id));
	printf(",\"rtt_us\":%" PRIu64 ",\"reconnects\":%" PRIu64
	       ",\"last_error\":",
	       st->rtt_us, st->reconnects);
	json_str(stdout, st->last_error, strlen(st->last_error));
	printf("},\"clients\":%u,\"subscriptions\":%u,"
	       "\"requests_in_flight\":%u,\"dropped\":%" PRIu64
	       ",\"msgs_in\":%" PRIu64 ",\"msgs_out\":%" PRIu64
	       ",\"pid\":%u,\"socket\":",
	       st->clients, st->subscriptions, st->requests_in_flight,
	       st->dropped, st->msgs_in, st->msgs_out, st->pid);
	json_str(stdout, st->socket, strlen(st->socket));
	if (l)
		printf(",\"held\":%" PRIu64 ",\"limits\":{\"max_clients\":%u,"
		       "\"max_requests_total\":%u,\"memory_limit\":%" PRIu64
		       ",\"max_requests\":%u,\"max_subscriptions\":%u,"
		       "\"client_memory_limit\":%" PRIu64
		       ",\"client_output_limit\":%" PRIu64 "}",
		       l->held, l->max_clients, l->max_requests_total,
		       l->memory_limit, l->max_requests, l->max_subscriptions,
		       l->client_memory_limit, l->client_output_limit);
	if (u) {
		fputs(",\"uplink\":", stdout);
		uplink_json(stdout, u);
	}
	fputs("}\n", stdout);
}

/* The budget lines; without limits (an older shipd), the usage alone. */
static void status_budget(const struct shipc_status *st,
                          const struct shipc_limits *l)
{
	if (!l) {
		printf("clients:       %u\n", st->clients);
		printf("subscriptions: %u\n", st->subscriptions);
		printf("requests:      %u in flight\n", st->requests_in_flight);
		return;
	}
	char held[32], mem[32], cmem[32], out[32];
	size_str(held, sizeof(held), l->held);
	size_str(mem, sizeof(mem), l->memory_limit);
	size_str(cmem, sizeof(cmem), l->client_memory_limit);
	size_str(out, sizeof(out), l->client_output_limit);
	printf("clients:       %u of %u\n", l->clients, l->max_clients);
	printf("subscriptions: %u (per client %u)\n", st->subscriptions,
	       l->max_subscriptions);
	printf("requests:      %u in flight of %u (per client %u)\n",
	       l->requests_in_flight, l->max_requests_total, l->max_requests);
	printf("memory:        %s held of %s (per client %s, output %s)\n",
	       held, mem, cmem, out);
}

static int cmd_status(int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "usage: shipctl status\n");
		return 2;
	}
	struct shipc_status st;
	struct shipc_limits lim, *l = &lim;
	if (open_handle() < 0)
		return 1;
	if (shipc_status(h, &st) < 0)
		return fail("status", errno);
	if (shipc_limits(h, &lim) < 0) {
		if (errno != ENOSYS)
			return fail("status", errno);
		l = NULL;
	}
	struct shipc_uplink upl, *u = &upl;
	if (shipc_uplink(h, &upl) < 0)
		return fail("status", errno);
	if (json) {
		status_json(&st, l, u);
		return 0;
	}
	uint64_t up = st.uptime_ms / 1000;
	printf("shipd %s (pid %u, %s), up %" PRIu64 "h%02" PRIu64 "m%02" PRIu64
	       "s\n",
	       st.daemon_version, st.pid, st.socket, up / 3600, up / 60 % 60,
	       up % 60);
	printf("nats:          %s %s", shipc_link_name(st.link), st.server_url);
	if (st.server_id[0])
		printf(" (server %s)", st.server_id);
	printf(" for %" PRIu64 "s\n", st.link_changed_ms / 1000);
	if (st.rtt_us)
		printf("rtt:           %.3f ms\n", (double)st.rtt_us / 1000.0);
	printf("reconnects:    %" PRIu64 "\n", st.reconnects);
	status_budget(&st, l);
	printf("messages:      %" PRIu64 " in, %" PRIu64 " out, %" PRIu64
	       " dropped\n",
	       st.msgs_in, st.msgs_out, st.dropped);
	if (st.last_error[0])
		printf("last error:    %s\n", st.last_error);
	if (u->state != SHIPC_UPLINK_NONE)
		uplink_print(stdout, u);
	return 0;
}

void human_bytes(char *buf, size_t size, uint64_t n)
{
	if (n < 10240)
		snprintf(buf, size, "%" PRIu64 "B", n);
	else if (n < 10485760)
		snprintf(buf, size, "%.1fK", (double)n / 1024.0);
	else
		snprintf(buf, size, "%.1fM", (double)n / 1048576.0);
}

static int cmd_clients(int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "usage: shipctl clients\n");
		return 2;
	}
	struct shipc_client *list;
	size_t n;
	if (open_handle() < 0)
		return 1;
	if (shipc_clients(h, &list, &n) < 0)
		return fail("clients", errno);
	if (json) {
		fputc('[', stdout);
		for (size_t i = 0; i < n; i++) {
			const struct shipc_client *c = &list[i];
			printf("%s{\"id\":%" PRIu64 ",\"pid\":%u,\"uid\":%u,"
			       "\"gid\":%u,\"name\":",
			       i ? "," : "", c->id, c->pid, c->uid, c->gid);
			json_str(stdout, c->name, strlen(c->name));
			printf(",\"subscriptions\":%u,\"requests\":%u,"
			       "\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
			       ",\"frames_in\":%" PRIu64 ",\"frames_out\":%" PRIu64
			       ",\"dropped\":%" PRIu64 ",\"connected_ms\":%" PRIu64
			       ",\"queued\":%" PRIu64 ",\"held\":%" PRIu64
			       ",\"denied\":%" PRIu64 ",\"user\":",
			       c->subscriptions, c->requests, c->bytes_in,
			       c->bytes_out, c->frames_in, c->frames_out, c->dropped,
			       c->connected_ms, c->queued,
			       shipc_client_held(list, i),
			       shipc_client_denied(list, i));
			const char *user = shipc_client_user(list, i),
			           *unit = shipc_client_unit(list, i);
			json_str(stdout, user, strlen(user));
			fputs(",\"unit\":", stdout);
			json_str(stdout, unit, strlen(unit));
			fputc('}', stdout);
		}
		fputs("]\n", stdout);
	} else {
		printf("%6s %7s %-10s %-16s %5s %5s %8s %8s %8s %8s %8s %s\n",
		       "ID", "PID", "USER", "NAME", "SUBS", "REQS", "HELD", "IN",
		       "OUT", "DROPPED", "AGE", "UNIT");
		for (size_t i = 0; i < n; i++) {
			const struct shipc_client *c = &list[i];
			char held[16], in[16], out[16];
			human_bytes(held, sizeof(held),
			            shipc_client_held(list, i));
			human_bytes(in, sizeof(in), c->bytes_in);
			human_bytes(out, sizeof(out), c->bytes_out);
			const char *unit = shipc_client_unit(list, i);
			printf("%6" PRIu64 " %7u %-10.10s %-16.16s %5u %5u %8s %8s "
			       "%8s %8" PRIu64 " %7" PRIu64 "s %s\n",
			       c->id, c->pid, shipc_client_user(list, i), c->name,
			       c->subscriptions, c->requests, held, in, out,
			       c->dropped, c->connected_ms / 1000,
			       unit[0] ? unit : "-");
		}
	}
	shipc_clients_free(list);
	return 0;
}

static int cmd_reload(int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "usage: shipctl reload\n");
		return 2;
	}
	char buf[1024];
	if (open_handle() < 0)
		return 1;
	if (shipc_reload(h, buf, sizeof(buf)) < 0)
		return fail("reload", errno);
	if (json) {
		fputs("{\"result\":", stdout);
		json_str(stdout, buf, strlen(buf));
		fputs("}\n", stdout);
	} else {
		printf("%s\n", buf);
	}
	return 0;
}

static int cmd_policy_show(int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "usage: shipctl policy show\n");
		return 2;
	}
	char **rules;
	size_t n;
	int enforced;
	if (open_handle() < 0)
		return 1;
	if (shipc_policy_show(h, &rules, &n, &enforced) < 0)
		return fail("policy show", errno);
	if (json) {
		printf("{\"enforced\":%s,\"rules\":[", enforced ? "true" : "false");
		for (size_t i = 0; i < n; i++) {
			fputs(i ? "," : "", stdout);
			json_str(stdout, rules[i], strlen(rules[i]));
		}
		fputs("]}\n", stdout);
	} else {
		/* Quota lines come without allow rules too. */
		if (!enforced)
			printf("no allow rules: every app may do everything\n");
		for (size_t i = 0; i < n; i++)
			printf("%s\n", rules[i]);
	}
	shipc_policy_rules_free(rules, n);
	return 0;
}

/* A uid or gid by number or by name. */
static bool parse_id(const char *s, bool group, uint32_t *out)
{
	uint64_t n;
	if (parse_uint(s, &n)) {
		*out = (uint32_t)n;
		return n < UINT32_MAX;
	}
	struct group *g = group ? getgrnam(s) : NULL;
	struct passwd *pw = group ? NULL : getpwnam(s);
	if (g)
		*out = g->gr_gid;
	else if (pw)
		*out = pw->pw_uid;
	return g || pw;
}

/* What the kernel would report for a process of uid: its primary group
 * and its supplementary groups, from the system's databases. */
static void groups_of(uint32_t uid, bool set_gid, struct shipc_policy_query *q,
                      gid_t *groups, int max)
{
	struct passwd *pw = getpwuid(uid);
	if (!pw)
		return;
	if (set_gid)
		q->gid = pw->pw_gid;
	int n = max;
	if (getgrouplist(pw->pw_name, (gid_t)q->gid, groups, &n) < 0)
		n = max;
	q->groups = groups;
	q->n_groups = (size_t)n;
}

static int cmd_policy_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{"uid", required_argument, NULL, 'u'},
		{"gid", required_argument, NULL, 'g'},
		{"group", required_argument, NULL, 'G'},
		{"unit", required_argument, NULL, 'U'},
		{NULL, 0, NULL, 0}};
	struct shipc_policy_query q = {0};
	uint32_t groups[64];
	gid_t sys_groups[64];
	bool has_gid = false;
	size_t n_groups = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'u':
			if (!parse_id(optarg, false, &q.uid))
				goto bad_id;
			q.has_uid = 1;
			break;
		case 'g':
			if (!parse_id(optarg, true, &q.gid))
				goto bad_id;
			has_gid = true;
			break;
		case 'G':
			if (n_groups == sizeof(groups) / sizeof(groups[0])) {
				fprintf(stderr, "shipctl: more than 64 groups\n");
				return 2;
			}
			if (!parse_id(optarg, true, &groups[n_groups]))
				goto bad_id;
			n_groups++;
			break;
		case 'U':
			q.unit = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 2)
		goto usage;
	q.op = argv[optind];
	q.resource = argv[optind + 1];
	if (q.has_uid && !n_groups) {
		if (!has_gid)
			q.gid = q.uid; /* unless the user is known */
		groups_of(q.uid, !has_gid, &q, sys_groups, 64);
		for (size_t i = 0; i < q.n_groups; i++)
			groups[i] = (uint32_t)sys_groups[i];
	} else {
		q.n_groups = n_groups;
	}
	q.groups = groups;
	int allowed;
	char rule[1024];
	if (open_handle() < 0)
		return 1;
	if (shipc_policy_check(h, &q, &allowed, rule, sizeof(rule)) < 0)
		return fail("policy check", errno);
	if (json) {
		printf("{\"allowed\":%s,\"rule\":", allowed ? "true" : "false");
		json_str(stdout, rule, strlen(rule));
		fputs("}\n", stdout);
	} else if (!allowed) {
		printf("denied: %s\n", rule);
	} else if (strstr(rule, ": allow = ")) {
		printf("allowed by %s\n", rule);
	} else {
		printf("allowed: %s\n", rule);
	}
	return allowed ? 0 : 1;
bad_id:
	fprintf(stderr, "shipctl: policy check: no such user or group '%s'\n",
	        optarg);
	return 2;
usage:
	fprintf(stderr, "usage: shipctl policy check [--uid U] [--gid G] "
	                "[--group G]... [--unit NAME] OP RESOURCE\n");
	return 2;
}

static int cmd_pub(int argc, char **argv)
{
	struct msg_args a = {0};
	static const struct option opts[] = {
		{"header", required_argument, NULL, 'H'}, {NULL, 0, NULL, 0}};
	int ch, rc = 1;
	while ((ch = getopt_long(argc, argv, "H:", opts, NULL)) != -1) {
		if (ch != 'H' || add_header(&a, optarg) < 0)
			goto usage;
	}
	if (argc - optind < 1 || argc - optind > 2)
		goto usage;
	const char *subject = argv[optind];
	if (argc - optind == 2) {
		a.data = argv[optind + 1];
		a.len = strlen(a.data);
	} else if (read_stdin(&a) < 0) {
		goto out;
	}
	if (open_handle() < 0)
		goto out;
	struct shipc_msg m = {.subject = subject, .data = a.data, .len = a.len,
	                      .headers = a.hdrs, .n_headers = a.n_hdrs};
	if (shipc_publish_msg(h, &m, SHIPC_PUB_CONFIRM) < 0) {
		fail("pub", errno);
		goto out;
	}
	rc = 0;
out:
	msg_args_finish(&a);
	return rc;
usage:
	msg_args_finish(&a);
	fprintf(stderr, "usage: shipctl pub SUBJECT [DATA] [-H 'Key: Value']...\n");
	return 2;
}

struct sub_state {
	uint64_t count, max;
	bool raw;
	bool ended;
	int err;
	const char *response; /* reply command */
	size_t response_len;
};

static void sub_cb(struct shipc *hh, const struct shipc_msg *m, int err,
                   void *arg)
{
	struct sub_state *st = arg;
	if (!m) {
		st->ended = true;
		st->err = err;
		return;
	}
	st->count++;
	if (st->response) {
		if (m->reply && m->reply[0] &&
		    shipc_respond(hh, m, st->response, st->response_len) < 0)
			fail("reply", errno);
		if (!st->raw && !json)
			fprintf(stderr, "[#%" PRIu64 "] answered %s\n", st->count,
			        m->subject);
		else
			print_msg(m, st->count, st->raw);
		return;
	}
	print_msg(m, st->count, st->raw);
}

/* Dispatch until *ended or a signal; -1 (said) if dispatching failed. */
static int dispatch_until(const bool *ended)
{
	while (!interrupted && !*ended) {
		if (shipc_dispatch(h, 500) < 0 && errno != EINTR) {
			fail("dispatch", errno);
			return -1;
		}
	}
	return 0;
}

static int run_sub(const char *subject, const char *queue,
                   struct sub_state *st)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (open_handle() < 0)
		return 1;
	uint64_t id = shipc_subscribe(h, subject, queue, st->max, sub_cb, st);
	if (!id)
		return fail("subscribe", errno);
	if (dispatch_until(&st->ended) < 0)
		return 1;
	if (st->response)
		shipc_flush(h, 2000); /* let the last answer go out */
	if (st->ended && st->err)
		return fail("subscription ended", st->err);
	return 0;
}

static int cmd_sub(int argc, char **argv)
{
	static const struct option opts[] = {
		{"queue", required_argument, NULL, 'q'},
		{"count", required_argument, NULL, 'c'},
		{"raw", no_argument, NULL, 'r'},
		{NULL, 0, NULL, 0}};
	struct sub_state st = {0};
	const char *queue = NULL;
	int ch;
	while ((ch = getopt_long(argc, argv, "q:c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'q':
			queue = optarg;
			break;
		case 'c':
			if (!parse_uint(optarg, &st.max) || st.max == 0)
				goto usage;
			break;
		case 'r':
			st.raw = true;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 1)
		goto usage;
	return run_sub(argv[optind], queue, &st);
usage:
	fprintf(stderr,
	        "usage: shipctl sub SUBJECT [-q GROUP] [-c N] [--raw]\n");
	return 2;
}

/* ---- monitor ---- */

struct mon_state {
	uint64_t count, max, dropped;
	bool payload;
	bool ended;
	int err;
};

static const char *mon_header(const struct shipc_msg *m, const char *key)
{
	for (size_t i = 0; i < m->n_headers; i++)
		if (!strcmp(m->headers[i].key, key))
			return m->headers[i].value;
	return "";
}

/* data as printable ASCII, other bytes as \\xhh. */
static void put_printable(const void *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = ((const unsigned char *)data)[i];
		if (c >= 0x20 && c < 0x7f)
			fputc(c, stdout);
		else
			printf("\\x%02x", c);
	}
}

static void mon_cb(struct shipc *hh, const struct shipc_msg *m, int err,
                   void *arg)
{
	(void)hh;
	struct mon_state *st = arg;
	if (!m) {
		st->ended = true;
		st->err = err;
		return;
	}
	st->count++;
	st->dropped += m->dropped;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	localtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	const char *dir = mon_header(m, "Ship-Monitor-Dir"),
	           *app = mon_header(m, "Ship-Monitor-App"),
	           *client = mon_header(m, "Ship-Monitor-Client"),
	           *size = mon_header(m, "Ship-Monitor-Size");
	if (json) {
		printf("{\"time\":\"%s.%03ld\",\"dir\":", when,
		       ts.tv_nsec / 1000000);
		json_str(stdout, dir, strlen(dir));
		fputs(",\"app\":", stdout);
		json_str(stdout, app, strlen(app));
		printf(",\"client\":%s,\"subject\":", *client ? client : "0");
		json_str(stdout, m->subject, strlen(m->subject));
		printf(",\"size\":%s", *size ? size : "0");
		if (st->payload) {
			fputs(",\"data\":", stdout);
			json_str(stdout, m->data, m->len);
		}
		if (m->dropped)
			printf(",\"dropped\":%" PRIu64, m->dropped);
		fputs("}\n", stdout);
	} else {
		if (m->dropped)
			printf("... %" PRIu64 " not shown (this monitor fell "
			       "behind)\n",
			       m->dropped);
		/* What apps chose (names, subjects, payloads) reaches the
		 * terminal as printable ASCII only: no escape sequences. */
		printf("%s.%03ld %-7s ", when, ts.tv_nsec / 1000000, dir);
		put_printable(app, strlen(app));
		printf("[%s] ", client);
		put_printable(m->subject, strlen(m->subject));
		printf(" %s B", size);
		if (st->payload) {
			fputs(": ", stdout);
			put_printable(m->data, m->len);
		}
		fputc('\n', stdout);
	}
	fflush(stdout);
	if (st->max && st->count >= st->max)
		st->ended = true;
}

static int cmd_monitor(int argc, char **argv)
{
	static const struct option opts[] = {
		{"payload", no_argument, NULL, 'p'},
		{"count", required_argument, NULL, 'c'},
		{NULL, 0, NULL, 0}};
	struct mon_state st = {0};
	int ch;
	while ((ch = getopt_long(argc, argv, "pc:", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			st.payload = true;
			break;
		case 'c':
			if (!parse_uint(optarg, &st.max) || st.max == 0)
				goto usage;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind > 1)
		goto usage;
	const char *pattern = argc > optind ? argv[optind] : ">";
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (open_handle() < 0)
		return 1;
	uint64_t id = shipc_monitor(h, pattern,
	                            st.payload ? SHIPC_MONITOR_PAYLOAD : 0,
	                            mon_cb, &st);
	if (!id)
		return fail("monitor", errno);
	if (dispatch_until(&st.ended) < 0)
		return 1;
	if (st.ended && st.err)
		return fail("monitor ended", st.err);
	if (st.dropped && !json)
		fprintf(stderr, "shipctl: %" PRIu64 " not shown: this monitor "
		        "fell behind\n", st.dropped);
	return 0;
usage:
	fprintf(stderr,
	        "usage: shipctl monitor [PATTERN] [--payload] [-c N]\n");
	return 2;
}

static int cmd_reply(int argc, char **argv)
{
	static const struct option opts[] = {
		{"queue", required_argument, NULL, 'q'},
		{"count", required_argument, NULL, 'c'},
		{NULL, 0, NULL, 0}};
	struct sub_state st = {0};
	const char *queue = NULL;
	int ch;
	while ((ch = getopt_long(argc, argv, "q:c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'q':
			queue = optarg;
			break;
		case 'c':
			if (!parse_uint(optarg, &st.max) || st.max == 0)
				goto usage;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 2)
		goto usage;
	st.response = argv[optind + 1];
	st.response_len = strlen(st.response);
	return run_sub(argv[optind], queue, &st);
usage:
	fprintf(stderr,
	        "usage: shipctl reply SUBJECT RESPONSE [-q GROUP] [-c N]\n");
	return 2;
}

static int print_plain(const struct shipc_msg *reply)
{
	if (json) {
		print_msg(reply, 1, false);
	} else {
		fwrite(reply->data, 1, reply->len, stdout);
		fputc('\n', stdout);
	}
	return 0;
}

int request_cmd(int argc, char **argv, const char *name,
                int (*print)(const struct shipc_msg *reply))
{
	static const struct option opts[] = {
		{"timeout", required_argument, NULL, 't'},
		{"header", required_argument, NULL, 'H'},
		{NULL, 0, NULL, 0}};
	struct msg_args a = {0};
	uint64_t timeout = 5000;
	int ch, rc = 1;
	while ((ch = getopt_long(argc, argv, "H:t:", opts, NULL)) != -1) {
		switch (ch) {
		case 't':
			if (!parse_uint(optarg, &timeout) || !timeout ||
			    timeout > 3600000)
				goto usage;
			break;
		case 'H':
			if (add_header(&a, optarg) < 0)
				goto usage;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind < 1 || argc - optind > 2)
		goto usage;
	if (argc - optind == 2) {
		a.data = argv[optind + 1];
		a.len = strlen(a.data);
	} else if (!isatty(STDIN_FILENO) && read_stdin(&a) < 0) {
		goto out;
	}
	if (open_handle() < 0)
		goto out;
	struct shipc_msg m = {.subject = argv[optind], .data = a.data,
	                      .len = a.len, .headers = a.hdrs,
	                      .n_headers = a.n_hdrs};
	struct shipc_msg *reply;
	if (shipc_request_msg(h, &m, (int)timeout, &reply) < 0) {
		fail(name, errno);
		goto out;
	}
	rc = print(reply);
	shipc_msg_free(reply);
out:
	msg_args_finish(&a);
	return rc;
usage:
	msg_args_finish(&a);
	fprintf(stderr, "usage: shipctl %s SUBJECT [DATA] [--timeout MS] "
	                "[-H 'Key: Value']...\n", name);
	return 2;
}

static int cmd_req(int argc, char **argv)
{
	return request_cmd(argc, argv, "req", print_plain);
}

static const struct cmd core_cmds[] = {
	{"status", cmd_status, "", "show the daemon's and the NATS link's state"},
	{"clients", cmd_clients, "", "list the connected apps"},
	{"reload", cmd_reload, "", "re-read shipd's configuration (as SIGHUP)"},
	{"policy show", cmd_policy_show, "", "list the access rules in effect"},
	{"policy check", cmd_policy_check, "[--uid U] [--unit N] OP RESOURCE",
	 "may such an app do OP on RESOURCE? (also --gid, --group)"},
	{"pub", cmd_pub, "SUBJECT [DATA] [-H 'K: V']",
	 "publish DATA (or stdin) to SUBJECT"},
	{"sub", cmd_sub, "SUBJECT [-q GROUP] [-c N] [--raw]",
	 "print messages on SUBJECT"},
	{"req", cmd_req, "SUBJECT [DATA] [--timeout MS]",
	 "send a request and print the reply"},
	{"reply", cmd_reply, "SUBJECT RESPONSE [-q GROUP] [-c N]",
	 "answer every request on SUBJECT with RESPONSE"},
	{"monitor", cmd_monitor, "[PATTERN] [--payload] [-c N]",
	 "watch what local apps publish, request and receive"},
	{NULL, NULL, NULL, NULL},
};

/* Each building block brings its own table; the usage lists them all. */
static const struct cmd *const tables[] = {core_cmds, kv_cmds, event_cmds,
                                           obj_cmds, store_cmds, jobs_cmds,
                                           svc_cmds, fleet_cmds, top_cmds};

static void usage(FILE *f)
{
	fprintf(f, "usage: shipctl [-s SOCKET] [--json] COMMAND [ARGS]\n\n"
	           "The socket is also taken from $SHIP_SOCKET.\n\ncommands:\n");
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
		for (const struct cmd *c = tables[t]; c->name; c++)
			fprintf(f, "  %-17s %-40s %s\n", c->name, c->args,
			        c->summary);
}

/* Commands may be two words ("kv put"): match the longest name. */
static const struct cmd *find_cmd(int argc, char **argv, int *words)
{
	const struct cmd *best = NULL;
	size_t best_len = 0;
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
		for (const struct cmd *c = tables[t]; c->name; c++) {
			const char *sp = strchr(c->name, ' ');
			size_t len = strlen(c->name);
			bool match;
			if (sp)
				match = argc > 1 &&
				        !strncmp(c->name, argv[0], (size_t)(sp - c->name)) &&
				        argv[0][sp - c->name] == '\0' &&
				        !strcmp(sp + 1, argv[1]);
			else
				match = !strcmp(c->name, argv[0]);
			if (match && len > best_len) {
				best = c;
				best_len = len;
				*words = sp ? 2 : 1;
			}
		}
	}
	return best;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	int ch;
	/* '+': stop at the command; its own options follow it. */
	while ((ch = getopt_long(argc, argv, "+s:jh", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			sock_path = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *name = argv[optind];
	int words = 1;
	const struct cmd *cmd = find_cmd(argc - optind, argv + optind, &words);
	if (cmd) {
		/* The command's own argv starts at its last word; --json and
		 * --help may follow the command too. */
		int first = optind + words - 1;
		int cargc = 0;
		char **cargv = argv + first;
		for (int j = 0; j < argc - first; j++) {
			char *a = argv[first + j];
			if (j > 0 && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
				printf("usage: shipctl %s %s\n  %s\n", cmd->name,
				       cmd->args, cmd->summary);
				return 0;
			}
			if (j > 0 && !strcmp(a, "--json"))
				json = true;
			else
				cargv[cargc++] = a;
		}
		cargv[cargc] = NULL;
		/* 0 makes glibc start over; command options may follow
		 * positional arguments. */
		optind = 0;
		int rc = cmd->fn(cargc, cargv);
		shipc_close(h);
		return rc;
	}
	fprintf(stderr, "shipctl: unknown command '%s'\n", name);
	usage(stderr);
	return 2;
}
