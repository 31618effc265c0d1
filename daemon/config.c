/* SPDX-License-Identifier: MIT */
/* The configuration: defaults, the "key = value" file, and printing it back. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "config.h"
#include "shipd.h"

enum ctype {
	C_STR, C_BOOL, C_UINT, C_MODE, C_URLS, C_LOGLEVEL, C_STREAM, C_POLICY,
	C_QUOTA, C_DOMAIN
};

struct ckey {
	const char *name;
	enum ctype type;
	size_t off;
	uint32_t min, max; /* C_UINT */
	const char *help;
	bool live; /* a reload applies it; others need a restart */
};

#define O(f) offsetof(struct config, f)

/* The order is the order of shipd -nv and of conf/shipd.conf. */
static const struct ckey keys[] = {
	{"socket", C_STR, O(socket_path), 0, 0, "path of the local socket", false},
	{"socket_group", C_STR, O(socket_group), 0, 0,
	 "group owning the socket (default: the daemon's group)", false},
	{"socket_mode", C_MODE, O(socket_mode), 0, 0777,
	 "permission bits of the socket", false},
	{"state_dir", C_STR, O(state_dir), 0, 0,
	 "directory of shipd's state (default: $STATE_DIRECTORY)", false},
	{"nats", C_URLS, O(nats_urls), 0, 0, "NATS server URLs, comma separated", false},
	{"nats_name", C_STR, O(nats_name), 0, 0, "connection name shown by the server", false},
	{"nats_user", C_STR, O(nats_user), 0, 0, "user name", false},
	{"nats_password_file", C_STR, O(nats_password_file), 0, 0,
	 "file holding the password", false},
	{"nats_token_file", C_STR, O(nats_token_file), 0, 0, "file holding the token", false},
	{"nats_nkey", C_STR, O(nats_nkey), 0, 0, "NKey public key (with nats_nkey_seed_file)", false},
	{"nats_nkey_seed_file", C_STR, O(nats_nkey_seed_file), 0, 0,
	 "file holding the NKey seed", false},
	{"nats_creds_file", C_STR, O(nats_creds_file), 0, 0,
	 "chained .creds file (JWT and seed)", false},
	{"nats_tls", C_BOOL, O(nats_tls), 0, 0, "require TLS", false},
	{"nats_tls_ca", C_STR, O(nats_tls_ca), 0, 0, "CA certificates file", false},
	{"nats_tls_cert", C_STR, O(nats_tls_cert), 0, 0, "client certificate file", false},
	{"nats_tls_key", C_STR, O(nats_tls_key), 0, 0, "client key file", false},
	{"nats_connect_timeout_ms", C_UINT, O(nats_connect_timeout_ms), 100, 600000,
	 "time allowed for one connection attempt", false},
	{"nats_reconnect_wait_min_ms", C_UINT, O(nats_reconnect_wait_min_ms), 10,
	 600000, "first wait between reconnect attempts", false},
	{"nats_reconnect_wait_max_ms", C_UINT, O(nats_reconnect_wait_max_ms), 10,
	 3600000, "longest wait between reconnect attempts", false},
	{"nats_reconnect_buffer", C_UINT, O(nats_reconnect_buffer), 0, 1u << 30,
	 "bytes of publishes kept while reconnecting", false},
	{"nats_dead_after_ms", C_UINT, O(nats_dead_after_ms), 1000, 600000,
	 "a link that answers nothing this long is dropped and made again", false},
	{"max_frame", C_UINT, O(max_frame), 4096, IPC_FRAME_LIMIT + IPC_HDR_LEN,
	 "largest frame a client may send, bytes", true},
	{"client_output_limit", C_UINT, O(client_output_limit), 65536, 1u << 30,
	 "bytes queued to one client before its messages are dropped", true},
	{"max_answer", C_UINT, O(max_answer), 4096, IPC_FRAME_LIMIT,
	 "bytes of one answer that lists many items (histories, keys, "
	 "objects); at most client_output_limit",
	 true},
	{"max_clients", C_UINT, O(max_clients), 1, 1000000, "connected clients", true},
	{"max_clients_per_uid", C_UINT, O(max_clients_per_uid), 1, 1000000,
	 "connected clients of one user", true},
	{"max_subscriptions", C_UINT, O(max_subscriptions), 1, 10000000,
	 "subscriptions per client", true},
	{"max_requests", C_UINT, O(max_requests), 1, 10000000,
	 "requests in flight per client", true},
	{"max_requests_total", C_UINT, O(max_requests_total), 1, 100000000,
	 "requests in flight for all clients together", true},
	{"client_memory_limit", C_UINT, O(client_memory_limit), 1u << 20,
	 1u << 31, "bytes held for one client's requests and watches", true},
	{"memory_limit", C_UINT, O(memory_limit), 1u << 20, 4294967295u,
	 "bytes held for all clients together", true},
	{"request_timeout_ms", C_UINT, O(request_timeout_ms), 1, 3600000,
	 "default request timeout", true},
	{"max_request_timeout_ms", C_UINT, O(max_request_timeout_ms), 1, 86400000,
	 "longest request timeout a client may ask for", true},
	{"inbound_limit", C_UINT, O(inbound_limit), 65536, 1u << 30,
	 "bytes of messages from NATS waiting for the loop", true},
	{"log_level", C_LOGLEVEL, O(log_level), 0, 0, "info or debug", true},
	/* Fleets: shipd is connected to the robot's own server, a leaf node
	 * of the hub with JetStream domains of their own. */
	{"hub_domain", C_STR, O(hub_domain), 0, 0,
	 "JetStream domain of the hub (unset: one server, no hub)", false},
	{"events_domain", C_DOMAIN, O(events_domain), 0, 0,
	 "where EventBus streams are: local or hub", false},
	{"channels_domain", C_DOMAIN, O(channels_domain), 0, 0,
	 "where the Channels stream is: local or hub", false},
	{"kv_domain", C_DOMAIN, O(kv_domain), 0, 0,
	 "where KV buckets are, but for hub_buckets: local or hub", false},
	{"hub_buckets", C_STR, O(hub_buckets), 0, 0,
	 "KV buckets on the hub whatever kv_domain says, comma separated",
	 false},
	{"jobs_domain", C_DOMAIN, O(jobs_domain), 0, 0,
	 "where job queues are: local or hub", false},
	{"hub_streams", C_STR, O(hub_streams), 0, 0,
	 "the hub's streams that source this robot's, comma separated", false},
	{"uplink_probe_ms", C_UINT, O(uplink_probe_ms), 200, 60000,
	 "how often the hub's JetStream is asked whether it answers", true},
	{"uplink_priority", C_STR, O(uplink_priority), 0, 0,
	 "what the hub catches up first: STREAM:N (1 first, 9 last; streams "
	 "not named after them), comma separated",
	 false},
	{"uplink_rate_limit", C_UINT, O(uplink_rate_limit), 0, 4294967295u,
	 "bytes per second the hub may source from this robot's streams "
	 "together (0: no limit)",
	 true},
	/* Observability: off unless an address or a socket is named. */
	{"metrics_listen", C_STR, O(metrics_listen), 0, 0,
	 "HOST:PORT of the metrics and health HTTP server (loopback unless "
	 "metrics_allow_remote)",
	 false},
	{"metrics_socket", C_STR, O(metrics_socket), 0, 0,
	 "Unix socket of the metrics and health HTTP server", false},
	{"metrics_allow_remote", C_BOOL, O(metrics_allow_remote), 0, 0,
	 "let metrics_listen be an address other hosts reach", false},
	{"metrics_max_connections", C_UINT, O(metrics_max_connections), 1, 1024,
	 "HTTP connections at once; more wait to be accepted", false},
	{"metrics_timeout_ms", C_UINT, O(metrics_timeout_ms), 100, 60000,
	 "silence allowed to an HTTP client (4 times that for a request and "
	 "its answer)",
	 false},
	{"metrics_max_apps", C_UINT, O(metrics_max_apps), 1, 1024,
	 "app label values in metrics; later apps are counted as \"other\"",
	 false},
	{"stream", C_STREAM, O(streams), 0, 0,
	 "a JetStream stream to declare (repeatable): NAME SUBJECT[,SUBJECT] "
	 "[max_age=S] [max_msgs=N] [max_bytes=N] [storage=file|memory] "
	 "[replicas=N]",
	 false},
	/* Live: each connection binds the rules when it connects, so a
	 * reload's rules apply to the connections made after it. */
	{"allow", C_POLICY, O(policy), 0, 0,
	 "a grant (repeatable): WHO OP[,OP...] RESOURCE[,RESOURCE...]", true},
	/* Kept with the rules (same WHO, same reload); bound at accept. */
	{"quota", C_QUOTA, O(policy), 0, 0,
	 "what one app may hold (repeatable, first match wins): WHO "
	 "KEY=VALUE... (connections, subscriptions, requests, bytes)",
	 true},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

void config_defaults(struct config *c)
{
	*c = (struct config){0};
	c->socket_path = strdup(SHIP_DEFAULT_SOCKET);
	c->socket_mode = 0660;
	/* systemd's StateDirectory=, the first if several. */
	const char *sd = getenv("STATE_DIRECTORY");
	if (sd && *sd)
		c->state_dir = strndup(sd, strcspn(sd, ":"));
	c->nats_urls[0] = strdup("nats://127.0.0.1:4222");
	c->n_nats_urls = 1;
	c->nats_connect_timeout_ms = 2000;
	c->nats_reconnect_wait_min_ms = 100;
	c->nats_reconnect_wait_max_ms = 5000;
	c->nats_reconnect_buffer = 8u << 20;
	c->nats_dead_after_ms = 5000;
	c->max_frame = 2u << 20;
	c->client_output_limit = 4u << 20;
	c->max_answer = 1u << 20;
	c->max_clients = 4096;
	c->max_clients_per_uid = 1024;
	c->max_subscriptions = 4096;
	c->max_requests = 4096;
	c->max_requests_total = 65536;
	c->client_memory_limit = 16u << 20;
	c->memory_limit = 256u << 20;
	c->request_timeout_ms = 5000;
	c->max_request_timeout_ms = 600000;
	c->inbound_limit = 16u << 20;
	c->log_level = 0;
	/* The being registry, fleet configuration and health (noesis-ship's
	 * buckets) and job queues are the fleet's; the rest is the robot's. */
	c->hub_buckets = strdup("beings_status,ship_config,ship_health");
	c->jobs_domain = JS_HUB;
	c->hub_streams = strdup("FLEET_EVENTS,FLEET_CHANNELS");
	c->uplink_probe_ms = 2000;
	c->metrics_max_connections = 16;
	c->metrics_timeout_ms = 5000;
	c->metrics_max_apps = 64;
}

static const struct ckey *find_key(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static int parse_uint(const char *v, uint32_t min, uint32_t max, uint32_t *out,
                      char *err, size_t errlen)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)*v)) {
		snprintf(err, errlen, "'%s' is not a number", v);
		return -1;
	}
	unsigned long long n = strtoull(v, &end, 10);
	unsigned long long mult = 1;
	if (*end == 'k' || *end == 'K')
		mult = 1024, end++;
	else if (*end == 'M')
		mult = 1024 * 1024, end++;
	if (errno || *end) {
		snprintf(err, errlen, "'%s' is not a number", v);
		return -1;
	}
	if (n > UINT32_MAX / mult || n * mult < min || n * mult > max) {
		snprintf(err, errlen, "%s is out of range %u..%u", v, min, max);
		return -1;
	}
	*out = (uint32_t)(n * mult);
	return 0;
}

static int set_urls(struct config *c, const char *v, char *err, size_t errlen)
{
	char *copy = strdup(v), *save = NULL;
	char *urls[CONFIG_MAX_URLS];
	int n = 0;
	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* Separated by commas and by every blank the line parser trims, so
	 * the printed list reads back as itself. */
	static const char seps[] = ", \t\n\v\f\r";
	for (char *t = strtok_r(copy, seps, &save); t;
	     t = strtok_r(NULL, seps, &save)) {
		if (n == CONFIG_MAX_URLS) {
			snprintf(err, errlen, "more than %d URLs", CONFIG_MAX_URLS);
			goto error;
		}
		if (!strstr(t, "://") && strchr(t, ':') == NULL) {
			snprintf(err, errlen, "'%s' is not a URL (nats://host:port)", t);
			goto error;
		}
		urls[n++] = t;
	}
	if (n == 0) {
		snprintf(err, errlen, "no URL given");
		goto error;
	}
	for (int i = 0; i < c->n_nats_urls; i++)
		free(c->nats_urls[i]);
	for (int i = 0; i < n; i++)
		c->nats_urls[i] = strdup(urls[i]);
	c->n_nats_urls = n;
	free(copy);
	return 0;
error:
	free(copy);
	return -1;
}

static int add_stream(struct config *c, const char *v, char *err,
                      size_t errlen);

/* One assignment; file and line name it for the rules that keep them. */
static int set_key(struct config *c, const char *key, const char *v,
                   const char *file, int line, char *err, size_t errlen)
{
	const struct ckey *k = find_key(key);
	if (!k) {
		snprintf(err, errlen, "unknown key '%s'", key);
		return -1;
	}
	void *field = (char *)c + k->off;
	switch (k->type) {
	case C_STR: {
		char **s = field;
		if (!*v) {
			snprintf(err, errlen, "%s: empty value", key);
			return -1;
		}
		free(*s);
		*s = strdup(v);
		return 0;
	}
	case C_BOOL:
		if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on"))
			*(bool *)field = true;
		else if (!strcmp(v, "no") || !strcmp(v, "false") ||
		         !strcmp(v, "off"))
			*(bool *)field = false;
		else {
			snprintf(err, errlen, "%s: '%s' is not yes or no", key, v);
			return -1;
		}
		return 0;
	case C_UINT: {
		char e[128];
		if (parse_uint(v, k->min, k->max, field, e, sizeof(e)) < 0) {
			snprintf(err, errlen, "%s: %s", key, e);
			return -1;
		}
		return 0;
	}
	case C_MODE: {
		char *end;
		errno = 0;
		unsigned long m = strtoul(v, &end, 8);
		if (!*v || *end || errno || m > k->max) {
			snprintf(err, errlen, "%s: '%s' is not an octal mode", key, v);
			return -1;
		}
		*(unsigned *)field = (unsigned)m;
		return 0;
	}
	case C_URLS: {
		char e[128];
		if (set_urls(c, v, e, sizeof(e)) < 0) {
			snprintf(err, errlen, "%s: %s", key, e);
			return -1;
		}
		return 0;
	}
	case C_STREAM:
		return add_stream(c, v, err, errlen);
	case C_POLICY:
		return policy_add_rule(field, v, file, line, err, errlen);
	case C_QUOTA:
		return policy_add_quota(field, v, file, line, err, errlen);
	case C_DOMAIN:
		if (!strcmp(v, "local"))
			*(enum js_dom *)field = JS_LOCAL;
		else if (!strcmp(v, "hub"))
			*(enum js_dom *)field = JS_HUB;
		else {
			snprintf(err, errlen, "%s: '%s' is not local or hub", key, v);
			return -1;
		}
		return 0;
	case C_LOGLEVEL:
		if (!strcmp(v, "info"))
			*(int *)field = 0;
		else if (!strcmp(v, "debug"))
			*(int *)field = 1;
		else {
			snprintf(err, errlen, "%s: '%s' is not info or debug", key, v);
			return -1;
		}
		return 0;
	}
	snprintf(err, errlen, "%s: bad key type", key);
	return -1;
}

int config_set(struct config *c, const char *key, const char *v, char *err,
               size_t errlen)
{
	/* Command-line settings (-o) have no file: their rules say "-o". */
	return set_key(c, key, v, "-o", 0, err, errlen);
}

static void stream_free(struct config_stream *st)
{
	free(st->name);
	free(st->subjects);
	memset(st, 0, sizeof(*st));
}

/* "NAME SUBJECT[,SUBJECT...] [key=value]..." */
static int add_stream(struct config *c, const char *v, char *err, size_t errlen)
{
	if (c->n_streams == CONFIG_MAX_STREAMS) {
		snprintf(err, errlen, "stream: more than %d streams",
		         CONFIG_MAX_STREAMS);
		return -1;
	}
	char *copy = strdup(v), *save = NULL;
	struct config_stream st = {.replicas = 1};
	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	char *name = strtok_r(copy, " \t", &save);
	char *subjects = strtok_r(NULL, " \t", &save);
	if (!name || !subjects || strchr(name, '.') || strchr(name, '*') ||
	    strchr(name, '>')) {
		snprintf(err, errlen, "stream: expected NAME SUBJECT[,SUBJECT...] "
		                      "(a name without dots or wildcards)");
		goto error;
	}
	st.name = strdup(name);
	st.subjects = strdup(subjects);
	for (char *opt; (opt = strtok_r(NULL, " \t", &save));) {
		char *eq = strchr(opt, '=');
		char *end = NULL;
		if (!eq) {
			snprintf(err, errlen, "stream %s: '%s' is not key=value", name,
			         opt);
			goto error;
		}
		*eq++ = '\0';
		errno = 0;
		long long n = strtoll(eq, &end, 10);
		bool num = *eq && !*end && !errno && n >= 0;
		if (!strcmp(opt, "max_age") && num)
			st.max_age_s = (uint64_t)n;
		else if (!strcmp(opt, "max_msgs") && num)
			st.max_msgs = n;
		else if (!strcmp(opt, "max_bytes") && num)
			st.max_bytes = n;
		else if (!strcmp(opt, "replicas") && num && n >= 1 && n <= 5)
			st.replicas = (uint32_t)n;
		else if (!strcmp(opt, "storage") &&
		         (!strcmp(eq, "file") || !strcmp(eq, "memory")))
			st.memory = !strcmp(eq, "memory");
		else {
			snprintf(err, errlen, "stream %s: bad %s=%s", name, opt, eq);
			goto error;
		}
	}
	if (!st.name || !st.subjects) {
		snprintf(err, errlen, "out of memory");
		goto error;
	}
	c->streams[c->n_streams++] = st;
	free(copy);
	return 0;
error:
	stream_free(&st);
	free(copy);
	return -1;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* The next name of a list separated by commas and blanks: its length,
 * *p moved to it; 0 at the end. */
static size_t list_next(const char **p)
{
	*p += strspn(*p, ", \t");
	return strcspn(*p, ", \t");
}

/* Letters, digits, '-' and '_': JetStream domains and KV buckets. */
static bool plain_name(const char *s, size_t n, size_t max)
{
	if (!n || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

bool js_domain_valid(const char *s)
{
	return plain_name(s, strlen(s), JS_DOMAIN_MAX);
}

static bool buckets_valid(const char *list, char *bad, size_t badlen)
{
	for (size_t n; (n = list_next(&list)); list += n) {
		char b[KV_NAME_MAX];
		snprintf(b, sizeof(b), "%.*s", (int)n, list);
		if (!plain_name(list, n, KV_BUCKET_MAX)) {
			snprintf(bad, badlen, "%.64s%s", b, n > 64 ? "..." : "");
			return false;
		}
	}
	return true;
}

/* The entry for name in an uplink_priority list ("NAME:N, ..."): N, or
 * CONFIG_PRIORITY_OTHER if it is not named (also for a list that does
 * not parse: config_check refuses those). */
int config_priority(const char *list, const char *name)
{
	size_t len = strlen(name);
	for (size_t n; list && (n = list_next(&list)); list += n) {
		const char *colon = memchr(list, ':', n);
		if (colon && (size_t)(colon - list) == len &&
		    !memcmp(list, name, len) && list + n - colon == 2 &&
		    colon[1] >= '1' && colon[1] <= '9')
			return colon[1] - '0';
	}
	return CONFIG_PRIORITY_OTHER;
}

static bool priorities_valid(const char *list, char *bad, size_t badlen)
{
	for (size_t n; (n = list_next(&list)); list += n) {
		const char *colon = memchr(list, ':', n);
		size_t name = colon ? (size_t)(colon - list) : n;
		if (!colon || !plain_name(list, name, JS_NAME_MAX) ||
		    list + n - colon != 2 || colon[1] < '1' || colon[1] > '9') {
			snprintf(bad, badlen, "%.*s%s", (int)(n < 64 ? n : 64), list,
			         n > 64 ? "..." : "");
			return false;
		}
	}
	return true;
}

int config_parse_listen(const char *s, bool remote, struct sockaddr_storage *ss,
                       socklen_t *len, char *err, size_t errlen)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	const char *start = s, *end = colon;
	if (!colon || colon == s || !colon[1]) {
		snprintf(err, errlen, "'%s' is not HOST:PORT", s);
		return -1;
	}
	if (*s == '[') {
		start = s + 1;
		end = colon[-1] == ']' ? colon - 1 : NULL;
	}
	if (!end || end <= start || (size_t)(end - start) >= sizeof(host)) {
		snprintf(err, errlen, "'%s' is not HOST:PORT", s);
		return -1;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(end - start), start);
	char *pend;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &pend, 10);
	if (*pend || errno || port == 0 || port > 65535) {
		snprintf(err, errlen, "'%s' is not a port", colon + 1);
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	bool loopback;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = sizeof(*in4);
		loopback = (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	} else {
		snprintf(err, errlen,
		         "'%s' is not a numeric address (127.0.0.1, [::1])", host);
		return -1;
	}
	if (!loopback && !remote) {
		snprintf(err, errlen,
		         "%s is not a loopback address: other hosts would read "
		         "the metrics (set metrics_allow_remote = yes to mean it)",
		         host);
		return -1;
	}
	return 0;
}

int config_check(const struct config *c, char *err, size_t errlen)
{
	if (c->nats_reconnect_wait_min_ms > c->nats_reconnect_wait_max_ms) {
		snprintf(err, errlen, "nats_reconnect_wait_min_ms is above "
		                      "nats_reconnect_wait_max_ms");
		return -1;
	}
	if (c->request_timeout_ms > c->max_request_timeout_ms) {
		snprintf(err, errlen,
		         "request_timeout_ms is above max_request_timeout_ms");
		return -1;
	}
	if (!!c->nats_nkey != !!c->nats_nkey_seed_file) {
		snprintf(err, errlen,
		         "nats_nkey and nats_nkey_seed_file go together");
		return -1;
	}
	if (!!c->nats_tls_cert != !!c->nats_tls_key) {
		snprintf(err, errlen, "nats_tls_cert and nats_tls_key go together");
		return -1;
	}
	if (c->nats_creds_file && c->nats_nkey) {
		snprintf(err, errlen,
		         "nats_creds_file and nats_nkey exclude each other");
		return -1;
	}
	if (c->state_dir && c->state_dir[0] && c->state_dir[0] != '/') {
		snprintf(err, errlen, "state_dir: '%s' is not an absolute path",
		         c->state_dir);
		return -1;
	}
	if (c->socket_path[0] != '/') {
		snprintf(err, errlen, "socket: '%s' is not an absolute path",
		         c->socket_path);
		return -1;
	}
	if (c->metrics_socket && c->metrics_socket[0] != '/') {
		snprintf(err, errlen,
		         "metrics_socket: '%s' is not an absolute path",
		         c->metrics_socket);
		return -1;
	}
	if (c->metrics_listen) {
		struct sockaddr_storage ss;
		socklen_t len;
		char e[256];
		if (config_parse_listen(c->metrics_listen, c->metrics_allow_remote,
		                       &ss, &len, e, sizeof(e)) < 0) {
			snprintf(err, errlen, "metrics_listen: %s", e);
			return -1;
		}
	}
	if (c->hub_domain && !js_domain_valid(c->hub_domain)) {
		snprintf(err, errlen,
		         "hub_domain: '%.64s' is not a JetStream domain (letters, "
		         "digits, '-' and '_', at most %d)",
		         c->hub_domain, JS_DOMAIN_MAX);
		return -1;
	}
	if (c->hub_buckets) {
		char bad[80];
		if (!buckets_valid(c->hub_buckets, bad, sizeof(bad))) {
			snprintf(err, errlen,
			         "hub_buckets: '%s' is not a bucket name", bad);
			return -1;
		}
	}
	if (c->hub_streams) {
		char bad[80];
		if (!buckets_valid(c->hub_streams, bad, sizeof(bad))) {
			snprintf(err, errlen,
			         "hub_streams: '%s' is not a stream name", bad);
			return -1;
		}
	}
	if (c->uplink_priority) {
		char bad[80];
		if (!priorities_valid(c->uplink_priority, bad, sizeof(bad))) {
			snprintf(err, errlen,
			         "uplink_priority: '%s' is not STREAM:N (a stream "
			         "name, a colon, a digit from 1 to 9)",
			         bad);
			return -1;
		}
	}
	return 0;
}

uint32_t config_answer_limit(const struct config *c)
{
	return c->max_answer < c->client_output_limit ? c->max_answer
	                                              : c->client_output_limit;
}

bool config_listed(const char *list, const char *name)
{
	size_t len = strlen(name);
	for (size_t n; list && (n = list_next(&list)); list += n)
		if (n == len && !memcmp(list, name, n))
			return true;
	return false;
}

int config_load(struct config *c, const char *path, FILE *errs)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(errs, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	char line[4096], err[512];
	int lineno = 0, errors = 0;
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			fprintf(errs, "%s:%d: line too long\n", path, lineno);
			errors++;
			int ch;
			while ((ch = fgetc(f)) != EOF && ch != '\n')
				;
			continue;
		}
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			fprintf(errs, "%s:%d: expected 'key = value'\n", path,
			        lineno);
			errors++;
			continue;
		}
		*eq = '\0';
		char *key = trim(s), *val = trim(eq + 1);
		size_t vl = strlen(val);
		if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
			val[vl - 1] = '\0';
			val++;
		}
		if (set_key(c, key, val, path, lineno, err, sizeof(err)) < 0) {
			fprintf(errs, "%s:%d: %s\n", path, lineno, err);
			errors++;
		}
	}
	if (ferror(f)) {
		fprintf(errs, "%s: %s\n", path, strerror(errno));
		errors++;
	}
	fclose(f);
	if (!errors && config_check(c, err, sizeof(err)) < 0) {
		fprintf(errs, "%s: %s\n", path, err);
		errors++;
	}
	return errors ? -1 : 0;
}

/* True if s, printed bare after "key = ", would not read back as itself:
 * the parser trims blanks and takes off one pair of enclosing quotes. */
static bool needs_quotes(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && (isspace((unsigned char)s[0]) ||
	                 isspace((unsigned char)s[n - 1]) ||
	                 (n >= 2 && s[0] == '"' && s[n - 1] == '"'));
}

void config_print(const struct config *c, FILE *f)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct ckey *k = &keys[i];
		const void *field = (const char *)c + k->off;
		switch (k->type) {
		case C_STR: {
			const char *s = *(char *const *)field;
			if (s && needs_quotes(s))
				fprintf(f, "%s = \"%s\"\n", k->name, s);
			else if (s)
				fprintf(f, "%s = %s\n", k->name, s);
			else
				fprintf(f, "# %s = (unset)\n", k->name);
			break;
		}
		case C_BOOL:
			fprintf(f, "%s = %s\n", k->name,
			        *(const bool *)field ? "yes" : "no");
			break;
		case C_UINT:
			fprintf(f, "%s = %u\n", k->name, *(const uint32_t *)field);
			break;
		case C_MODE:
			fprintf(f, "%s = %04o\n", k->name, *(const unsigned *)field);
			break;
		case C_URLS:
			fprintf(f, "%s = ", k->name);
			for (int j = 0; j < c->n_nats_urls; j++)
				fprintf(f, "%s%s", j ? "," : "", c->nats_urls[j]);
			fputc('\n', f);
			break;
		case C_LOGLEVEL:
			fprintf(f, "%s = %s\n", k->name,
			        *(const int *)field ? "debug" : "info");
			break;
		case C_DOMAIN:
			fprintf(f, "%s = %s\n", k->name,
			        *(const enum js_dom *)field == JS_HUB ? "hub"
			                                              : "local");
			break;
		case C_STREAM:
			if (c->n_streams == 0)
				fprintf(f, "# %s = (none)\n", k->name);
			for (int j = 0; j < c->n_streams; j++) {
				const struct config_stream *st = &c->streams[j];
				fprintf(f, "%s = %s %s max_age=%" PRIu64
				           " max_msgs=%" PRId64 " max_bytes=%" PRId64
				           " storage=%s replicas=%u\n",
				        k->name, st->name, st->subjects, st->max_age_s,
				        st->max_msgs, st->max_bytes,
				        st->memory ? "memory" : "file", st->replicas);
			}
			break;
		case C_POLICY:
			if (!policy_enforced(c->policy))
				fprintf(f, "# %s = (none)\n", k->name);
			policy_print(c->policy, f);
			break;
		case C_QUOTA:
			if (!policy_quota_count(c->policy))
				fprintf(f, "# %s = (none)\n", k->name);
			policy_print_quotas(c->policy, f);
			break;
		}
	}
}

/* The rules (or quotas) as printed: what they say, wherever they are
 * written. */
static char *policy_text(const struct policy *p,
                         void (*print)(const struct policy *, FILE *))
{
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);
	if (!f)
		return NULL;
	print(p, f);
	if (fclose(f) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

static bool same_policy(const struct policy *a, const struct policy *b,
                        void (*print)(const struct policy *, FILE *))
{
	char *x = policy_text(a, print), *y = policy_text(b, print);
	bool same = x && y && !strcmp(x, y);
	free(x);
	free(y);
	return same;
}

static bool same_value(const struct ckey *k, const struct config *a,
                       const struct config *b)
{
	const void *fa = (const char *)a + k->off, *fb = (const char *)b + k->off;
	switch (k->type) {
	case C_STR: {
		const char *x = *(char *const *)fa, *y = *(char *const *)fb;
		return (!x && !y) || (x && y && !strcmp(x, y));
	}
	case C_BOOL:
		return *(const bool *)fa == *(const bool *)fb;
	case C_UINT:
		return *(const uint32_t *)fa == *(const uint32_t *)fb;
	case C_MODE:
		return *(const unsigned *)fa == *(const unsigned *)fb;
	case C_LOGLEVEL:
		return *(const int *)fa == *(const int *)fb;
	case C_DOMAIN:
		return *(const enum js_dom *)fa == *(const enum js_dom *)fb;
	case C_STREAM:
		if (a->n_streams != b->n_streams)
			return false;
		for (int i = 0; i < a->n_streams; i++) {
			const struct config_stream *x = &a->streams[i],
			                           *y = &b->streams[i];
			if (strcmp(x->name, y->name) || strcmp(x->subjects, y->subjects) ||
			    x->max_age_s != y->max_age_s || x->max_msgs != y->max_msgs ||
			    x->max_bytes != y->max_bytes || x->memory != y->memory ||
			    x->replicas != y->replicas)
				return false;
		}
		return true;
	case C_POLICY:
		return same_policy(a->policy, b->policy, policy_print);
	case C_QUOTA:
		return same_policy(a->policy, b->policy, policy_print_quotas);
	case C_URLS:
		if (a->n_nats_urls != b->n_nats_urls)
			return false;
		for (int i = 0; i < a->n_nats_urls; i++)
			if (strcmp(a->nats_urls[i], b->nats_urls[i]))
				return false;
		return true;
	}
	return false;
}

/* The new rules and quotas are taken even when they say the same (their
 * file:line may have moved): they move from next, which the caller frees,
 * into cur. Connections keep what they bound when they connected. */
static void apply_policy(struct config *cur, const struct config *next,
                         void (*report)(const char *key, bool applied,
                                        void *arg),
                         void *arg)
{
	struct config *from = (struct config *)next; /* the caller's own */
	bool same = same_policy(cur->policy, next->policy, policy_print);
	bool same_quotas =
		same_policy(cur->policy, next->policy, policy_print_quotas);
	struct policy *old = cur->policy;
	cur->policy = from->policy;
	from->policy = old;
	if (!same) {
		log_info("reload: policy changed: applies to new connections");
		report("allow", true, arg);
	}
	if (!same_quotas) {
		log_info("reload: quotas changed: apply to new connections");
		report("quota", true, arg);
	}
}

void config_apply(struct config *cur, const struct config *next,
                  void (*report)(const char *key, bool applied, void *arg),
                  void *arg)
{
	for (size_t i = 0; i < NKEYS; i++) {
		const struct ckey *k = &keys[i];
		if (k->type == C_POLICY) {
			apply_policy(cur, next, report, arg);
			continue;
		}
		if (k->type == C_QUOTA)
			continue; /* taken and reported with the rules */
		if (same_value(k, cur, next))
			continue;
		if (k->live) {
			/* Only numbers are live: a plain copy is enough. */
			memcpy((char *)cur + k->off, (const char *)next + k->off,
			       k->type == C_LOGLEVEL ? sizeof(int)
			                             : sizeof(uint32_t));
		}
		report(k->name, k->live, arg);
	}
}

void config_finish(struct config *c)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].type == C_STR)
			free(*(char **)((char *)c + keys[i].off));
	for (int i = 0; i < c->n_nats_urls; i++)
		free(c->nats_urls[i]);
	for (int i = 0; i < c->n_streams; i++)
		stream_free(&c->streams[i]);
	policy_free(c->policy);
	*c = (struct config){0};
}

char *config_read_secret(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char buf[4096];
	char *r = NULL;
	if (fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\r\n")] = '\0';
		r = strdup(buf);
	} else {
		errno = EINVAL;
	}
	fclose(f);
	return r;
}
