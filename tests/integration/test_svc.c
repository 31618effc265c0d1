/* SPDX-License-Identifier: MIT */
/* Services on one shipd (the NATS micro protocol): requests reach the
 * app's handlers and their answers the callers, error answers carry the
 * micro error headers, $SRV.PING/INFO/STATS answer on all nine subjects
 * with the schema's fields and types and measured statistics, prefix
 * routing as noesis-ship does it, deadlines (504), max_pending (503), an
 * app killed with requests in flight (503 at once), drains on
 * shipc_svc_stop() and on SIGTERM that lose no accepted request, policy,
 * bad input, and mutation events stored before the answer goes out. */
#include <check.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>

#include "fixture.h"
#include "shipc.h"

static struct natsd nd;
static struct shipdp sd;
static char confdir[64];
static char confpath[128];

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_up(&nd, &sd, NULL), 0);
}

static void teardown(void)
{
	int rc = fx_down(&nd, &sd);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

static const char *why(struct shipc *h)
{
	static __thread char buf[512];
	return shipc_last_error(h, buf, sizeof(buf));
}

static struct shipc *conn(const char *name)
{
	struct shipc *h = fx_connect(sd.sock, name, 10000);
	ck_assert_msg(h != NULL, "connect: %s", strerror(errno));
	return h;
}

/* ---- a test's apps: one hosting services on a thread, one calling ---- */

static void host_start(struct fx_app *a, const char *name)
{
	ck_assert_int_eq(fx_app_start(a, conn(name)), 0);
}

/* The usual two: "app" hosting services, and "caller". */
static struct shipc *apps_start(struct fx_app *a)
{
	host_start(a, "app");
	return conn("caller");
}

/* Stop the service s, then close the caller and the host. */
static void apps_end(struct fx_app *a, struct shipc *c, struct shipc_svc *s)
{
	ck_assert_int_eq(shipc_svc_stop(s), 0);
	shipc_close(c);
	fx_app_end(a);
}

/* ---- handlers ---- */

enum mode {
	ECHO,  /* answer "<tag>:<data>" (the data alone without a tag) */
	HOLD,  /* keep the token: the test answers, or never */
	FAIL,  /* answer with an error */
	EVENT, /* answer with shipc_svc_reply() and a mutation event */
};

#define MAXH 64

/* One handler's behaviour and what it saw. */
struct ep {
	enum mode mode;
	const char *tag;
	unsigned code;        /* FAIL */
	const char *text;
	const char *body;     /* FAIL, EVENT: the answer's data */
	const char *ev_type;  /* EVENT */
	const char *ev_json;
	pthread_mutex_t mu;
	int calls;
	struct shipc_svc *svc;
	/* the last request */
	unsigned endpoint;
	char command[128], subject[256], data[256], hdr[256];
	bool has_reply;
	uint32_t timeout_ms;
	/* EVENT: what shipc_svc_reply() returned, and how often it did */
	int reply_rc, reply_err, replied;
	/* HOLD: requests kept */
	int n_held;
	uint64_t token[MAXH];
	char held[MAXH][64];
	uint64_t at[MAXH];
};

/* EP(mode, .field = value...) */
#define EP(...) {.mu = PTHREAD_MUTEX_INITIALIZER, .mode = __VA_ARGS__}

static void on_req(struct shipc *h, const struct shipc_svc_req *r, void *arg)
{
	struct ep *e = arg;
	char data[256];
	fx_strcopy(data, sizeof(data), r->data, r->len);
	pthread_mutex_lock(&e->mu);
	e->calls++;
	e->svc = r->svc;
	e->endpoint = r->endpoint;
	snprintf(e->command, sizeof(e->command), "%s",
	         r->command ? r->command : "(null)");
	snprintf(e->subject, sizeof(e->subject), "%s",
	         r->subject ? r->subject : "(null)");
	snprintf(e->data, sizeof(e->data), "%s", data);
	e->has_reply = r->reply && r->reply[0];
	e->timeout_ms = r->timeout_ms;
	e->hdr[0] = '\0';
	for (size_t i = 0; i < r->n_headers; i++)
		if (!strcmp(r->headers[i].key, "X-Trace"))
			snprintf(e->hdr, sizeof(e->hdr), "%s", r->headers[i].value);
	if (e->mode == HOLD && e->n_held < MAXH) {
		e->token[e->n_held] = r->token;
		snprintf(e->held[e->n_held], sizeof(e->held[0]), "%.63s", data);
		e->at[e->n_held] = fx_now_ms();
		e->n_held++;
	}
	pthread_mutex_unlock(&e->mu);
	char out[300];
	int len;
	switch (e->mode) {
	case ECHO:
		len = e->tag ? snprintf(out, sizeof(out), "%s:%s", e->tag, data)
		             : snprintf(out, sizeof(out), "%s", data);
		shipc_svc_respond(r->svc, r->token, out, (size_t)len);
		break;
	case FAIL:
		shipc_svc_error(r->svc, r->token, e->code, e->text, e->body,
		                e->body ? strlen(e->body) : 0);
		break;
	case EVENT: {
		/* A blocking call from inside the handler. */
		struct shipc_svc_reply rep = {
			.data = e->body, .len = e->body ? strlen(e->body) : 0,
			.event_type = e->ev_type, .event_json = e->ev_json};
		int rc = shipc_svc_reply(r->svc, r->token, &rep);
		int err = errno;
		pthread_mutex_lock(&e->mu);
		e->reply_rc = rc;
		e->reply_err = rc < 0 ? err : 0;
		e->replied++;
		pthread_mutex_unlock(&e->mu);
		break;
	}
	case HOLD:
		break;
	}
}

/* What a handler counts: requests, requests held, shipc_svc_reply()
 * calls returned (EVENT). */
enum count { CALLS, HELD, REPLIED };

static int ep_count(struct ep *e, enum count which)
{
	pthread_mutex_lock(&e->mu);
	int n = which == CALLS  ? e->calls
	        : which == HELD ? e->n_held
	                        : e->replied;
	pthread_mutex_unlock(&e->mu);
	return n;
}

struct want {
	struct ep *e;
	enum count which;
	int n;
};

static bool reached(void *arg)
{
	struct want *w = arg;
	return ep_count(w->e, w->which) >= w->n;
}

/* Whether e counted n (or more) within timeout_ms. */
static bool ep_wait(struct ep *e, enum count which, int n, int timeout_ms)
{
	struct want w = {e, which, n};
	return fx_wait(reached, &w, timeout_ms);
}

/* The EVENT handler's shipc_svc_reply() returned n times (the caller
 * may have its answer before that). */
static void wait_replied(struct ep *e, int n)
{
	ck_assert_msg(ep_wait(e, REPLIED, n, 10000),
	              "shipc_svc_reply() in the handler did not return");
}

static void wait_held(struct ep *e, int n)
{
	ck_assert_msg(ep_wait(e, HELD, n, 10000), "the handler holds %d of %d",
	              ep_count(e, HELD), n);
}

/* Answer e's held request i with prefix and the request's data. */
static void answer_held(struct shipc_svc *s, struct ep *e, int i,
                        const char *prefix)
{
	char out[80];
	snprintf(out, sizeof(out), "%s%s", prefix, e->held[i]);
	ck_assert_int_eq(shipc_svc_respond(s, e->token[i], out, strlen(out)), 0);
}

/* ---- callers ---- */

struct call {
	atomic_bool done;
	int err;
	char data[512];
	char code[64], text[256]; /* the error headers; "" when absent */
	int n_code, n_text;       /* how many of each came */
	char why[256];            /* X-Why */
	uint64_t sent, at;
	/* Runs in the callback when the reply arrives (nothing else yet). */
	void (*observe)(struct call *k);
	long observed;
};

static void call_cb(struct shipc *h, const struct shipc_msg *m, int err,
                    void *arg)
{
	struct call *k = arg;
	k->at = fx_now_ms();
	k->err = err;
	if (m) {
		fx_strcopy(k->data, sizeof(k->data), m->data, m->len);
		for (size_t i = 0; i < m->n_headers; i++) {
			const struct shipc_header *x = &m->headers[i];
			if (!strcmp(x->key, "Nats-Service-Error-Code")) {
				snprintf(k->code, sizeof(k->code), "%s", x->value);
				k->n_code++;
			} else if (!strcmp(x->key, "Nats-Service-Error")) {
				snprintf(k->text, sizeof(k->text), "%s", x->value);
				k->n_text++;
			} else if (!strcmp(x->key, "X-Why")) {
				snprintf(k->why, sizeof(k->why), "%s", x->value);
			}
		}
	}
	if (k->observe)
		k->observe(k);
	atomic_store(&k->done, true);
}

static void call_async(struct shipc *c, const char *subject, const char *data,
                       int timeout_ms, struct call *k)
{
	void (*observe)(struct call *) = k->observe;
	memset(k, 0, sizeof(*k));
	k->observe = observe;
	k->sent = fx_now_ms();
	struct shipc_msg m = {.subject = subject, .data = data,
	                      .len = data ? strlen(data) : 0};
	ck_assert_msg(shipc_request_async(c, &m, timeout_ms, call_cb, k) == 0,
	              "request %s: %s", subject, why(c));
}

static int calls_left(struct call *k, int n)
{
	int left = 0;
	for (int i = 0; i < n; i++)
		left += !atomic_load(&k[i].done);
	return left;
}

/* Dispatch c until the n calls are answered; false after timeout_ms. */
static bool calls_wait(struct shipc *c, struct call *k, int n, int timeout_ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
	while (calls_left(k, n) > 0) {
		if (fx_now_ms() >= end)
			return false;
		shipc_dispatch(c, 20);
	}
	return true;
}

static void call(struct shipc *c, const char *subject, const char *data,
                 struct call *k)
{
	call_async(c, subject, data, 5000, k);
	ck_assert_msg(calls_wait(c, k, 1, 10000), "no answer on %s", subject);
	ck_assert_msg(k->err == 0, "request %s: %s", subject, strerror(k->err));
}

/* An answer that is not an error. */
static void expect_answer(struct call *k, const char *data)
{
	ck_assert_msg(k->err == 0, "error %s", strerror(k->err));
	ck_assert_msg(k->n_code == 0 && k->n_text == 0,
	              "an error answer %s: %s (want %s)", k->code, k->text, data);
	ck_assert_str_eq(k->data, data);
}

static void expect_error(struct call *k, const char *code)
{
	ck_assert_msg(k->err == 0, "error %s", strerror(k->err));
	ck_assert_msg(k->n_code == 1 && !strcmp(k->code, code),
	              "want error %s, got %d code headers (%s), data '%s'", code,
	              k->n_code, k->code, k->data);
	ck_assert_msg(k->n_text == 1 && k->text[0],
	              "error %s without one Nats-Service-Error", code);
}

/* call(), answered want. */
static void call_expect(struct shipc *c, const char *subject, const char *data,
                        const char *want)
{
	struct call k = {0};
	call(c, subject, data, &k);
	expect_answer(&k, want);
}

/* Requests i = from..to-1 on subject with data "<i>", answers in k[i]. */
static void call_range(struct shipc *c, const char *subject, int timeout_ms,
                       struct call *k, int from, int to)
{
	for (int i = from; i < to; i++) {
		char d[8];
		snprintf(d, sizeof(d), "%d", i);
		call_async(c, subject, d, timeout_ms, &k[i]);
	}
}

/* Calls k[from..to-1] answered "<tag>:<i>". */
static void expect_range(struct call *k, int from, int to, const char *tag)
{
	for (int i = from; i < to; i++) {
		char want[16];
		snprintf(want, sizeof(want), "%s:%d", tag, i);
		expect_answer(&k[i], want);
	}
}

/* ---- services ---- */

static struct shipc_svc *add(struct shipc *h, const struct shipc_svc_config *c)
{
	struct shipc_svc *s = shipc_svc_add(h, c);
	ck_assert_msg(s != NULL, "add %s: %s (%s)", c->name, strerror(errno),
	              why(h));
	ck_assert_ptr_nonnull(shipc_svc_id(s));
	ck_assert_uint_gt(strlen(shipc_svc_id(s)), 0);
	return s;
}

/* One endpoint answering with handler e. */
#define ONE(n, subj, e) {.name = (n), .subject = (subj), .fn = on_req, .arg = (e)}

/* A service of one endpoint, version 1.0.0. */
#define SVC1(n, ep)                                                            \
	{.name = (n), .version = "1.0.0", .endpoints = (ep), .n_endpoints = 1}

/* "calc" 1.2.3 with metadata: add (math.add) answered by handler a,
 * status (calc.status, with metadata) by handler st. */
static struct shipc_svc *add_calc(struct shipc *h, struct ep *a, struct ep *st)
{
	const struct shipc_header md[] = {{"kind", "read"}};
	const struct shipc_header smd[] = {{"team", "nav"}};
	struct shipc_svc_endpoint eps[] = {
		{.name = "add", .group = "math", .fn = on_req, .arg = a},
		{.name = "status", .subject = "calc.status", .metadata = md,
		 .n_metadata = 1, .fn = on_req, .arg = st},
	};
	struct shipc_svc_config cfg = {
		.name = "calc", .version = "1.2.3", .description = "adds things",
		.metadata = smd, .n_metadata = 1, .endpoints = eps,
		.n_endpoints = 2};
	return add(h, &cfg);
}

/* ---- discovery ---- */

/* A string for printing: "(null)" for NULL. */
static const char *sv(const char *s)
{
	return s ? s : "(null)";
}

static const char *show(json_t *j)
{
	static __thread char buf[4096];
	size_t n = json_dumpb(j, buf, sizeof(buf) - 1, JSON_COMPACT | JSON_ENCODE_ANY);
	buf[n < sizeof(buf) ? n : sizeof(buf) - 1] = '\0';
	return buf;
}

/* The answers of every instance $SRV.<verb>[.<name>[.<id>]] reaches. */
static size_t discover(struct shipc *h, const char *verb, const char *name,
                       const char *id, json_t **out, size_t max)
{
	char **rs = NULL;
	size_t n = 0;
	if (shipc_svc_discover(h, verb, name, id, 0, &rs, &n) < 0) {
		ck_assert_msg(errno == ESRCH, "discover %s %s %s: %s", verb,
		              name ? name : "", id ? id : "", why(h));
		return 0;
	}
	ck_assert_msg(n <= max, "%zu answers to %s", n, verb);
	for (size_t i = 0; i < n; i++) {
		json_error_t err;
		out[i] = json_loads(rs[i], 0, &err);
		ck_assert_msg(out[i] != NULL, "not JSON (%s): %s", err.text, rs[i]);
	}
	shipc_svc_replies_free(rs, n);
	return n;
}

static void free_all(json_t **js, size_t n)
{
	for (size_t i = 0; i < n; i++)
		json_decref(js[i]);
}

static json_t *find_id(json_t **js, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(sv(json_string_value(json_object_get(js[i], "id"))),
		            id))
			return js[i];
	return NULL;
}

/* How many instances of name answer $SRV.PING.<name> (ids in ids). */
static size_t ping_ids(struct shipc *h, const char *name, char ids[][64],
                       size_t max)
{
	json_t *js[16];
	size_t n = discover(h, "PING", name, NULL, js, 16);
	for (size_t i = 0; i < n && i < max; i++)
		snprintf(ids[i], 64, "%s",
		         sv(json_string_value(json_object_get(js[i], "id"))));
	free_all(js, n);
	return n;
}

static const char *jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	ck_assert_msg(json_is_string(v), "%s is not a string in %s", k, show(o));
	return json_string_value(v);
}

static json_int_t jint(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	ck_assert_msg(json_is_integer(v), "%s is not an integer in %s", k,
	              show(o));
	ck_assert_msg(json_integer_value(v) >= 0, "%s < 0 in %s", k, show(o));
	return json_integer_value(v);
}

static bool matches(const char *re, const char *s)
{
	regex_t r;
	ck_assert_int_eq(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
	bool ok = regexec(&r, s, 0, NULL, 0) == 0;
	regfree(&r);
	return ok;
}

#define NAME_RE "^[A-Za-z0-9_-]+$"

/* A string map: an object whose values are all strings. */
static void expect_strmap(json_t *m, const char *what, json_t *in)
{
	ck_assert_msg(json_is_object(m), "%s is not an object in %s", what,
	              show(in));
	const char *k;
	json_t *v;
	json_object_foreach(m, k, v)
		ck_assert_msg(json_is_string(v), "%s.%s is not a string", what, k);
}

/* type, name, id, version and metadata (an object: {} when none). */
static void expect_identity(json_t *j, const char *type, const char *name,
                            const char *id, const char *version)
{
	ck_assert_str_eq(jstr(j, "type"), type);
	ck_assert_str_eq(jstr(j, "name"), name);
	ck_assert(matches(NAME_RE, jstr(j, "name")));
	ck_assert_str_eq(jstr(j, "id"), id);
	ck_assert_str_eq(jstr(j, "version"), version);
	expect_strmap(json_object_get(j, "metadata"), "metadata", j);
}

/* Seconds since the epoch of an RFC 3339 time, or -1. */
static long long rfc3339(const char *s)
{
	if (!matches("^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}"
	             "(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$",
	             s))
		return -1;
	struct tm tm = {0};
	if (sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	           &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6 &&
	    sscanf(s, "%d-%d-%dt%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	           &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	long long t = (long long)timegm(&tm);
	const char *z = s + strlen(s) - 6;
	if (*z == '+' || *z == '-') {
		int hh = 0, mm = 0;
		sscanf(z + 1, "%d:%d", &hh, &mm);
		t -= (*z == '+' ? 1 : -1) * (hh * 3600LL + mm * 60LL);
	}
	return t;
}

/* The endpoints of an INFO or STATS answer j: an array, each endpoint
 * with a name, a subject and a queue group that is a string if any. */
static json_t *endpoints_of(json_t *j, const char *verb)
{
	json_t *eps = json_object_get(j, "endpoints");
	ck_assert_msg(json_is_array(eps), "%s endpoints not an array: %s", verb,
	              show(j));
	size_t i;
	json_t *e;
	json_array_foreach(eps, i, e) {
		ck_assert(matches(NAME_RE, jstr(e, "name")));
		ck_assert_uint_gt(strlen(jstr(e, "subject")), 0);
		json_t *q = json_object_get(e, "queue_group");
		ck_assert_msg(!q || json_is_string(q), "queue_group: %s", show(j));
	}
	return eps;
}

/* INFO: the identity, description, endpoints (an array, [] when none). */
static json_t *expect_info(json_t *j, const char *name, const char *id,
                           const char *version, const char *description)
{
	expect_identity(j, "io.nats.micro.v1.info_response", name, id, version);
	ck_assert_str_eq(jstr(j, "description"), description);
	json_t *eps = endpoints_of(j, "INFO");
	size_t i;
	json_t *e;
	json_array_foreach(eps, i, e) {
		json_t *m = json_object_get(e, "metadata");
		if (m && !json_is_null(m))
			expect_strmap(m, "endpoint metadata", j);
	}
	return eps;
}

/* STATS: the identity, started (RFC 3339, between t0 and now) and each
 * endpoint's statistics with the schema's types; the average agrees with
 * the total. */
static json_t *expect_stats(json_t *j, const char *name, const char *id,
                            const char *version, time_t t0)
{
	expect_identity(j, "io.nats.micro.v1.stats_response", name, id, version);
	long long started = rfc3339(jstr(j, "started"));
	ck_assert_msg(started >= 0, "started is not RFC 3339: %s",
	              jstr(j, "started"));
	ck_assert_msg(started >= (long long)t0 - 2 &&
	                      started <= (long long)time(NULL) + 2,
	              "started %s is not when the service was added",
	              jstr(j, "started"));
	json_t *eps = endpoints_of(j, "STATS");
	size_t i;
	json_t *e;
	json_array_foreach(eps, i, e) {
		json_int_t nr = jint(e, "num_requests");
		json_int_t ne = jint(e, "num_errors");
		json_int_t pt = jint(e, "processing_time");
		json_int_t avg = jint(e, "average_processing_time");
		(void)jstr(e, "last_error"); /* a string, "" when none */
		ck_assert_msg(ne <= nr, "more errors than requests: %s", show(e));
		if (nr == 0)
			ck_assert_msg(avg == 0, "an average of nothing: %s", show(e));
		else
			ck_assert_msg(llabs(avg * nr - pt) <= nr,
			              "average %lld is not %lld / %lld", (long long)avg,
			              (long long)pt, (long long)nr);
	}
	return eps;
}

static json_t *endpoint_named(json_t *eps, const char *name)
{
	size_t i;
	json_t *e;
	json_array_foreach(eps, i, e)
		if (!strcmp(sv(json_string_value(json_object_get(e, "name"))),
		            name))
			return e;
	ck_abort_msg("no endpoint %s in %s", name, show(eps));
	return NULL;
}

/* The STATS of one instance. */
static json_t *stats_of(struct shipc *h, const char *name, const char *id)
{
	json_t *js[4];
	size_t n = discover(h, "STATS", name, id, js, 4);
	ck_assert_msg(n == 1, "%zu STATS answers from %s.%s", n, name, id);
	return js[0];
}

/* Endpoint name of STATS endpoints eps: its requests, errors and last
 * error. */
static json_t *expect_counts(json_t *eps, const char *name,
                             json_int_t requests, json_int_t errors,
                             const char *last_error)
{
	json_t *e = endpoint_named(eps, name);
	ck_assert_int_eq(jint(e, "num_requests"), requests);
	ck_assert_int_eq(jint(e, "num_errors"), errors);
	ck_assert_str_eq(jstr(e, "last_error"), last_error);
	return e;
}

/* ---- serving ---- */

START_TEST(serve_and_call)
{
	struct fx_app a;
	struct shipc *c = apps_start(&a);
	static struct ep add_ep = EP(ECHO, .tag = "add");
	static struct ep st_ep = EP(ECHO, .tag = "status");
	struct shipc_svc *s = add_calc(a.h, &add_ep, &st_ep);

	call_expect(c, "math.add", "2+3", "add:2+3");
	ck_assert_int_eq(ep_count(&add_ep, CALLS), 1);
	ck_assert_uint_eq(add_ep.endpoint, 0);
	ck_assert_str_eq(add_ep.subject, "math.add");
	ck_assert_str_eq(add_ep.command, "");
	ck_assert(add_ep.has_reply);
	ck_assert_msg(add_ep.timeout_ms > 0 && add_ep.timeout_ms <= 10000,
	              "%u ms left of the default 10 s", add_ep.timeout_ms);

	/* Headers reach the handler. */
	const struct shipc_header h[] = {{"X-Trace", "t-42"}};
	struct shipc_msg m = {.subject = "calc.status", .data = "?", .len = 1,
	                      .headers = h, .n_headers = 1};
	struct shipc_msg *r = NULL;
	ck_assert_msg(shipc_request_msg(c, &m, 5000, &r) == 0, "%s", why(c));
	ck_assert_uint_eq(r->len, 8);
	ck_assert_int_eq(memcmp(r->data, "status:?", 8), 0);
	shipc_msg_free(r);
	ck_assert_uint_eq(st_ep.endpoint, 1);
	ck_assert_str_eq(st_ep.hdr, "t-42");

	/* Not on the bare endpoint name: the group is part of the subject. */
	errno = 0;
	ck_assert_int_eq(shipc_request(c, "add", "x", 1, 1000, &r), -1);
	ck_assert_int_eq(errno, ESRCH);

	/* A message without a reply subject is handed over with reply "". */
	ck_assert_int_eq(shipc_publish(c, "calc.status", "fire", 4), 0);
	ck_assert(ep_wait(&st_ep, CALLS, 2, 5000));
	ck_assert(!st_ep.has_reply);
	ck_assert_str_eq(st_ep.data, "fire");

	/* Still answering after that. */
	call_expect(c, "math.add", "1", "add:1");
	apps_end(&a, c, s);
}
END_TEST

START_TEST(error_answers)
{
	struct fx_app a;
	struct shipc *c = apps_start(&a);
	static struct ep ok_ep = EP(ECHO);
	static struct ep fail_ep = EP(FAIL, .code = 418, .text = "teapot",
	                              .body = "sorry");
	static struct ep hold_ep = EP(HOLD);
	struct shipc_svc_endpoint eps[] = {ONE("ok", "errs.ok", &ok_ep),
	                                   ONE("fail", "errs.fail", &fail_ep),
	                                   ONE("later", "errs.later", &hold_ep)};
	struct shipc_svc_config cfg = {.name = "errs", .version = "0.1.0",
	                               .endpoints = eps, .n_endpoints = 3};
	time_t t0 = time(NULL);
	struct shipc_svc *s = add(a.h, &cfg);
	call_expect(c, "errs.ok", "fine", "fine");
	struct call k = {0};
	call(c, "errs.fail", "x", &k);
	expect_error(&k, "418");
	ck_assert_str_eq(k.text, "teapot");
	ck_assert_str_eq(k.data, "sorry");

	/* shipc_svc_reply(): an error with headers of the app's own. */
	call_async(c, "errs.later", "y", 5000, &k);
	wait_held(&hold_ep, 1);
	const struct shipc_header hx[] = {{"X-Why", "because"}};
	struct shipc_svc_reply rep = {.headers = hx, .n_headers = 1,
	                              .error_code = 503, .error_text = "later"};
	ck_assert_msg(shipc_svc_reply(s, hold_ep.token[0], &rep) == 0, "%s",
	              why(a.h));
	ck_assert(calls_wait(c, &k, 1, 5000));
	expect_error(&k, "503");
	ck_assert_str_eq(k.text, "later");
	ck_assert_str_eq(k.why, "because");
	ck_assert_str_eq(k.data, "");

	json_t *st = stats_of(c, "errs", shipc_svc_id(s));
	json_t *eps_j = expect_stats(st, "errs", shipc_svc_id(s), "0.1.0", t0);
	expect_counts(eps_j, "fail", 1, 1, "418:teapot");
	expect_counts(eps_j, "later", 1, 1, "503:later");
	expect_counts(eps_j, "ok", 1, 0, "");
	json_decref(st);
	apps_end(&a, c, s);
}
END_TEST

/* ---- discovery: $SRV.<verb>, $SRV.<verb>.<name>, $SRV.<verb>.<name>.<id> ---- */

START_TEST(discovery_nine_subjects)
{
	struct fx_app a;
	struct shipc *c = apps_start(&a);
	static struct ep add_ep = EP(ECHO);
	static struct ep st_ep = EP(HOLD);
	/* No metadata, no description, no endpoints. */
	struct shipc_svc_config bare = {.name = "bare", .version = "0.0.1-rc.1"};
	time_t t0 = time(NULL);
	struct shipc_svc *s = add_calc(a.h, &add_ep, &st_ep);
	struct shipc_svc *b = add(a.h, &bare);
	char id[64], bid[64];
	snprintf(id, sizeof(id), "%s", shipc_svc_id(s));
	snprintf(bid, sizeof(bid), "%s", shipc_svc_id(b));
	ck_assert_str_ne(id, bid);

	/* One quick request, one answered after 60 ms. */
	struct call k = {0};
	call(c, "math.add", "1", &k);
	call_async(c, "calc.status", "?", 5000, &k);
	wait_held(&st_ep, 1);
	fx_sleep_ms(60);
	ck_assert_int_eq(shipc_svc_respond(s, st_ep.token[0], "up", 2), 0);
	ck_assert(calls_wait(c, &k, 1, 5000));
	expect_answer(&k, "up");

	static const char *const verbs[] = {"PING", "INFO", "STATS"};
	for (int v = 0; v < 3; v++) {
		for (int scope = 0; scope < 3; scope++) {
			const char *name = scope ? "calc" : NULL;
			const char *iid = scope == 2 ? id : NULL;
			json_t *js[16];
			size_t n = discover(c, verbs[v], name, iid, js, 16);
			/* Only the instance named answers; unscoped, both do. */
			ck_assert_msg(n == (scope ? 1u : 2u),
			              "$SRV.%s%s%s%s%s: %zu answers", verbs[v],
			              name ? "." : "", name ? name : "",
			              iid ? "." : "", iid ? iid : "", n);
			json_t *j = find_id(js, n, id);
			ck_assert_msg(j != NULL, "$SRV.%s scope %d: not %s", verbs[v],
			              scope, id);
			json_t *bj = scope ? NULL : find_id(js, n, bid);
			ck_assert(scope || bj);
			if (v == 0) {
				expect_identity(j, "io.nats.micro.v1.ping_response", "calc",
				                id, "1.2.3");
				ck_assert_str_eq(show(json_object_get(j, "metadata")),
				                 "{\"team\":\"nav\"}");
				if (bj) {
					expect_identity(bj, "io.nats.micro.v1.ping_response",
					                "bare", bid, "0.0.1-rc.1");
					ck_assert_str_eq(show(json_object_get(bj, "metadata")),
					                 "{}");
				}
			} else if (v == 1) {
				json_t *eps_j = expect_info(j, "calc", id, "1.2.3",
				                            "adds things");
				ck_assert_uint_eq(json_array_size(eps_j), 2);
				json_t *e = json_array_get(eps_j, 0);
				ck_assert_str_eq(jstr(e, "name"), "add");
				ck_assert_str_eq(jstr(e, "subject"), "math.add");
				ck_assert_str_eq(jstr(e, "queue_group"), "q");
				e = json_array_get(eps_j, 1);
				ck_assert_str_eq(jstr(e, "name"), "status");
				ck_assert_str_eq(jstr(e, "subject"), "calc.status");
				ck_assert_str_eq(jstr(e, "queue_group"), "q");
				ck_assert_str_eq(show(json_object_get(e, "metadata")),
				                 "{\"kind\":\"read\"}");
				if (bj) {
					json_t *be = expect_info(bj, "bare", bid, "0.0.1-rc.1",
					                         "");
					ck_assert_uint_eq(json_array_size(be), 0);
					ck_assert_str_eq(show(json_object_get(bj, "metadata")),
					                 "{}");
				}
			} else {
				json_t *eps_j = expect_stats(j, "calc", id, "1.2.3", t0);
				ck_assert_uint_eq(json_array_size(eps_j), 2);
				json_t *e = expect_counts(eps_j, "add", 1, 0, "");
				ck_assert_str_eq(jstr(e, "subject"), "math.add");
				e = expect_counts(eps_j, "status", 1, 0, "");
				/* Nanoseconds, measured: the answer took 60 ms or more. */
				json_int_t pt = jint(e, "processing_time");
				ck_assert_msg(pt >= 55000000LL && pt < 5000000000LL,
				              "processing_time %lld ns for a 60 ms answer",
				              (long long)pt);
				ck_assert_int_eq(jint(e, "average_processing_time"), pt);
				if (bj) {
					json_t *be = expect_stats(bj, "bare", bid, "0.0.1-rc.1",
					                          t0);
					ck_assert_uint_eq(json_array_size(be), 0);
				}
			}
			free_all(js, n);
		}
	}
	/* Another name finds neither, another id not this one. */
	char ids[4][64];
	ck_assert_uint_eq(ping_ids(c, "nosuch", ids, 4), 0);
	json_t *none[4];
	ck_assert_uint_eq(discover(c, "INFO", "calc", "NOSUCHID", none, 4), 0);
	ck_assert_uint_eq(discover(c, "STATS", "bare", id, none, 4), 0);
	ck_assert_int_eq(shipc_svc_stop(b), 0);
	ck_assert_int_eq(shipc_svc_stop(s), 0);
	/* Stopped: gone from discovery. */
	ck_assert_uint_eq(ping_ids(c, "calc", ids, 4), 0);
	shipc_close(c);
	fx_app_end(&a);
}
END_TEST

/* ---- prefix routing (noesis-ship's NatsServiceBuilder) ---- */

START_TEST(prefix_routing)
{
	struct fx_app a;
	struct shipc *c = apps_start(&a);
	static struct ep merge = EP(ECHO, .tag = "merge");
	static struct ep echo = EP(ECHO, .tag = "echo");
	static struct ep dflt = EP(ECHO, .tag = "default");
	static struct ep known = EP(ECHO, .tag = "known");
	const struct shipc_svc_command cmds[] = {{"pr.merge", on_req, &merge},
	                                         {"echo", on_req, &echo}};
	const struct shipc_svc_command strict_cmds[] = {{"known", on_req, &known}};
	struct shipc_svc_endpoint eps[] = {
		{.name = "cmd", .subject = "kanban.cmd", .prefix = 1,
		 .commands = cmds, .n_commands = 2, .fn = on_req, .arg = &dflt},
		{.name = "strict", .subject = "strict.cmd", .prefix = 1,
		 .commands = strict_cmds, .n_commands = 1},
	};
	struct shipc_svc_config cfg = {.name = "kanban", .version = "1.0.0",
	                               .endpoints = eps, .n_endpoints = 2};
	struct shipc_svc *s = add(a.h, &cfg);
	/* Each request reaches the handler of its command, with the command
	 * and the whole subject. */
	const struct {
		const char *subject, *data, *answer;
		struct ep *e;
		const char *command;
	} routes[] = {
		{"kanban.cmd.pr.merge", "{}", "merge:{}", &merge, "pr.merge"},
		{"kanban.cmd.echo", "x", "echo:x", &echo, "echo"},
		/* Anything else goes to the default handler, with its command. */
		{"kanban.cmd.other.thing", "y", "default:y", &dflt, "other.thing"},
		{"kanban.cmd.pr", "z", "default:z", &dflt, "pr"},
		{"kanban.cmd.pr.merge.now", "w", "default:w", &dflt,
		 "pr.merge.now"},
		{"strict.cmd.known", "k", "known:k", &known, "known"},
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(*routes); i++) {
		call_expect(c, routes[i].subject, routes[i].data, routes[i].answer);
		ck_assert_str_eq(routes[i].e->command, routes[i].command);
		ck_assert_str_eq(routes[i].e->subject, routes[i].subject);
	}
	ck_assert_uint_eq(merge.endpoint, 0);
	ck_assert_int_eq(ep_count(&merge, CALLS), 1);
	ck_assert_int_eq(ep_count(&dflt, CALLS), 3);

	/* Without a default handler: noesis-ship's 404. */
	struct call k = {0};
	call(c, "strict.cmd.x", "", &k);
	ck_assert_str_eq(k.data, "{\"error\":\"UNKNOWN_COMMAND: x\",\"code\":404}");
	call(c, "strict.cmd.a.b", "", &k);
	ck_assert_str_eq(k.data,
	                 "{\"error\":\"UNKNOWN_COMMAND: a.b\",\"code\":404}");
	ck_assert_int_eq(ep_count(&known, CALLS), 1);
	apps_end(&a, c, s);
}
END_TEST

/* ---- deadlines and limits ---- */

START_TEST(deadline_504)
{
	struct fx_app a;
	struct shipc *c = apps_start(&a);
	static struct ep never = EP(HOLD);
	struct shipc_svc_endpoint ep = ONE("never", "slow.never", &never);
	struct shipc_svc_config cfg = SVC1("slow", &ep);
	cfg.timeout_ms = 300;
	time_t t0 = time(NULL);
	struct shipc_svc *s = add(a.h, &cfg);
	struct call k = {0};
	call_async(c, "slow.never", "?", 5000, &k);
	ck_assert(calls_wait(c, &k, 1, 6000));
	uint64_t took = k.at - k.sent;
	expect_error(&k, "504");
	ck_assert_msg(took >= 250 && took <= 300 + 1200,
	              "504 after %llu ms for a 300 ms deadline",
	              (unsigned long long)took);
	ck_assert_int_eq(ep_count(&never, HELD), 1);
	ck_assert_msg(never.timeout_ms > 0 && never.timeout_ms <= 300,
	              "%u ms left of 300", never.timeout_ms);

	json_t *st = stats_of(c, "slow", shipc_svc_id(s));
	json_t *e = endpoint_named(
		expect_stats(st, "slow", shipc_svc_id(s), "1.0.0", t0), "never");
	ck_assert_int_eq(jint(e, "num_requests"), 1);
	ck_assert_int_eq(jint(e, "num_errors"), 1);
	ck_assert_msg(!strncmp(jstr(e, "last_error"), "504:", 4),
	              "last_error '%s'", jstr(e, "last_error"));
	json_decref(st);

	/* Answering late: the request is gone. */
	struct shipc_svc_reply rep = {.data = "late", .len = 4};
	errno = 0;
	ck_assert_int_eq(shipc_svc_reply(s, never.token[0], &rep), -1);
	ck_assert_int_eq(errno, ENOENT);
	/* The instance still works. */
	call_async(c, "slow.never", "2", 5000, &k);
	wait_held(&never, 2);
	ck_assert_int_eq(shipc_svc_reply(s, never.token[1], &rep), 0);
	ck_assert(calls_wait(c, &k, 1, 5000));
	expect_answer(&k, "late");
	apps_end(&a, c, s);
}
END_TEST

START_TEST(max_pending_503)
{
	struct fx_app a;
	struct shipc *c = apps_start(&a);
	static struct ep hold = EP(HOLD);
	struct shipc_svc_endpoint ep = ONE("hold", "busy.hold", &hold);
	struct shipc_svc_config cfg = SVC1("busy", &ep);
	cfg.max_pending = 2;
	struct shipc_svc *s = add(a.h, &cfg);
	struct call k[4] = {0};
	call_range(c, "busy.hold", 8000, k, 0, 2);
	wait_held(&hold, 2);
	call_async(c, "busy.hold", "2", 8000, &k[2]);
	ck_assert(calls_wait(c, &k[2], 1, 3000));
	expect_error(&k[2], "503");
	ck_assert_int_eq(ep_count(&hold, HELD), 2);
	ck_assert(!atomic_load(&k[0].done) && !atomic_load(&k[1].done));
	/* Answered: room again. */
	for (int i = 0; i < 2; i++)
		answer_held(s, &hold, i, "r");
	ck_assert(calls_wait(c, k, 2, 5000));
	expect_answer(&k[0], "r0");
	expect_answer(&k[1], "r1");
	call_async(c, "busy.hold", "3", 8000, &k[3]);
	wait_held(&hold, 3);
	ck_assert_int_eq(shipc_svc_respond(s, hold.token[2], "r3", 2), 0);
	ck_assert(calls_wait(c, &k[3], 1, 5000));
	expect_answer(&k[3], "r3");
	apps_end(&a, c, s);
}
END_TEST

/* ---- an app killed with a request in flight ---- */

/* A line from fd, waiting up to timeout_ms; false if none came. */
static bool read_line(int fd, char *buf, size_t size, int timeout_ms)
{
	size_t n = 0;
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
	while (n < size - 1) {
		struct pollfd p = {fd, POLLIN, 0};
		uint64_t now = fx_now_ms();
		if (now >= end || poll(&p, 1, (int)(end - now)) <= 0)
			break;
		if (read(fd, buf + n, 1) != 1)
			break;
		if (buf[n] == '\n') {
			buf[n] = '\0';
			return true;
		}
		n++;
	}
	buf[n] = '\0';
	return false;
}

static int doomed_fd = -1;

static void doomed_req(struct shipc *h, const struct shipc_svc_req *r,
                       void *arg)
{
	if (write(doomed_fd, "got\n", 4) != 4)
		_exit(4);
}

/* The child: host "doomed" and never answer; say its id, then each
 * request. Ends by SIGKILL (or after a minute). */
static void __attribute__((noreturn)) doomed_child(int fd, void *arg)
{
	doomed_fd = fd;
	struct shipc *h = shipc_connect(sd.sock, "doomed");
	if (!h)
		_exit(2);
	struct shipc_svc_endpoint ep = {.name = "work", .subject = "doomed.work",
	                                .fn = doomed_req};
	struct shipc_svc_config cfg = SVC1("doomed", &ep);
	cfg.timeout_ms = 30000;
	struct shipc_svc *s = NULL;
	for (int i = 0; i < 100 && !s; i++)
		if (!(s = shipc_svc_add(h, &cfg)))
			fx_sleep_ms(50);
	if (!s) {
		dprintf(fd, "error %s\n", strerror(errno));
		_exit(3);
	}
	dprintf(fd, "id %s\n", shipc_svc_id(s));
	for (int i = 0; i < 600; i++)
		shipc_dispatch(h, 100);
	_exit(0);
}

START_TEST(app_killed_503)
{
	/* Forked before this process has a handle (libshipc has a thread). */
	int fd;
	pid_t pid = fx_fork(doomed_child, NULL, &fd);
	ck_assert_int_gt(pid, 0);
	char line[256];
	ck_assert_msg(read_line(fd, line, sizeof(line), 20000),
	              "the child said '%s'", line);
	ck_assert_msg(!strncmp(line, "id ", 3), "the child: %s", line);
	char id[64];
	snprintf(id, sizeof(id), "%.63s", line + 3);

	struct shipc *c = conn("caller");
	char ids[4][64];
	ck_assert_uint_eq(ping_ids(c, "doomed", ids, 4), 1);
	ck_assert_str_eq(ids[0], id);
	struct call k = {0};
	call_async(c, "doomed.work", "?", 20000, &k);
	ck_assert_msg(read_line(fd, line, sizeof(line), 10000),
	              "the request never reached the child");
	ck_assert_str_eq(line, "got");
	uint64_t killed = fx_now_ms();
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert(calls_wait(c, &k, 1, 25000));
	uint64_t took = k.at - killed;
	expect_error(&k, "503");
	ck_assert_msg(took < 3000,
	              "503 came %llu ms after the app died (deadline 30 s)",
	              (unsigned long long)took);
	ck_assert_int_eq(fx_wait_exit(pid, 5000), 128 + SIGKILL);
	close(fd);
	/* Removed at once: no instance answers. */
	ck_assert_uint_eq(ping_ids(c, "doomed", ids, 4), 0);
	errno = 0;
	struct shipc_msg *r = NULL;
	ck_assert_int_eq(shipc_request(c, "doomed.work", "x", 1, 2000, &r), -1);
	ck_assert_int_eq(errno, ESRCH);
	shipc_close(c);
}
END_TEST

/* The app closes its handle with a request in flight: 503 at once. */
START_TEST(app_closes_503)
{
	struct fx_app a;
	struct shipc *c = apps_start(&a);
	static struct ep hold = EP(HOLD);
	struct shipc_svc_endpoint ep = ONE("work", "closing.work", &hold);
	struct shipc_svc_config cfg = SVC1("closing", &ep);
	cfg.timeout_ms = 30000;
	add(a.h, &cfg);
	struct call k = {0};
	call_async(c, "closing.work", "?", 20000, &k);
	wait_held(&hold, 1);
	uint64_t closed = fx_now_ms();
	fx_app_end(&a); /* shipc_close() without stopping the service */
	ck_assert(calls_wait(c, &k, 1, 25000));
	expect_error(&k, "503");
	ck_assert_msg(k.at - closed < 3000, "503 came %llu ms after the close",
	              (unsigned long long)(k.at - closed));
	char ids[4][64];
	ck_assert_uint_eq(ping_ids(c, "closing", ids, 4), 0);
	shipc_close(c);
}
END_TEST

/* ---- drains ---- */

struct stopper {
	pthread_t t;
	struct shipc_svc *svc;
	atomic_bool began, ended;
	int rc, err;
	uint64_t at;
};

static void *stop_thread(void *arg)
{
	struct stopper *st = arg;
	atomic_store(&st->began, true);
	st->rc = shipc_svc_stop(st->svc);
	st->err = errno;
	st->at = fx_now_ms();
	atomic_store(&st->ended, true);
	return NULL;
}

START_TEST(stop_drains)
{
	struct fx_app a, b;
	host_start(&a, "app-a");
	host_start(&b, "app-b");
	struct shipc *c = conn("caller");
	static struct ep ea = EP(HOLD);
	static struct ep eb = EP(ECHO, .tag = "B");
	struct shipc_svc_endpoint epa = ONE("job", "drainer.job", &ea);
	struct shipc_svc_endpoint epb = ONE("job", "drainer.job", &eb);
	struct shipc_svc_config ca = SVC1("drainer", &epa);
	ca.drain_ms = 8000;
	struct shipc_svc_config cb = ca;
	cb.endpoints = &epb;
	struct shipc_svc *sa = add(a.h, &ca);
	char ida[64];
	snprintf(ida, sizeof(ida), "%s", shipc_svc_id(sa));

	/* Five requests accepted by A (alone yet), answered after the stop. */
	enum { N = 5, M = 10 };
	struct call k[N + M] = {0};
	call_range(c, "drainer.job", 15000, k, 0, N);
	wait_held(&ea, N);
	struct shipc_svc *sb = add(b.h, &cb);
	char idb[64];
	snprintf(idb, sizeof(idb), "%s", shipc_svc_id(sb));

	static struct stopper st;
	memset(&st, 0, sizeof(st));
	st.svc = sa;
	ck_assert_int_eq(pthread_create(&st.t, NULL, stop_thread, &st), 0);
	while (!atomic_load(&st.began))
		fx_sleep_ms(1);
	/* Nothing shows when shipd has taken A's endpoints down: give the
	 * stop a margin to reach it, then A must take nothing new. */
	fx_sleep_ms(300);
	uint64_t stopped = fx_now_ms();
	call_range(c, "drainer.job", 5000, k, N, N + M);
	ck_assert(calls_wait(c, k + N, M, 10000));
	expect_range(k, N, N + M, "B");
	ck_assert_msg(ep_count(&ea, HELD) == N,
	              "A took %d requests while stopping", ep_count(&ea, HELD) - N);
	/* A's accepted requests are answered during the drain. */
	uint64_t last = 0;
	for (int i = 0; i < N; i++) {
		ck_assert_msg(!atomic_load(&st.ended),
		              "shipc_svc_stop returned (%d, %s) with %d requests "
		              "in flight",
		              st.rc, strerror(st.err), N - i);
		answer_held(sa, &ea, i, "A:");
		last = fx_now_ms();
		fx_sleep_ms(20);
	}
	ck_assert(calls_wait(c, k, N, 10000));
	expect_range(k, 0, N, "A");
	pthread_join(st.t, NULL);
	ck_assert_msg(st.rc == 0, "shipc_svc_stop: %s", strerror(st.err));
	ck_assert_uint_ge(st.at, last);
	ck_assert_msg(st.at - stopped < 8000, "the drain took %llu ms",
	              (unsigned long long)(st.at - stopped));
	char ids[4][64];
	ck_assert_uint_eq(ping_ids(c, "drainer", ids, 4), 1);
	ck_assert_str_eq(ids[0], idb);
	ck_assert_int_eq(shipc_svc_stop(sb), 0);
	shipc_close(c);
	fx_app_end(&a);
	fx_app_end(&b);
}
END_TEST

/* SIGTERM to shipd while the app holds accepted requests: shipd stops
 * taking new ones and waits for the app's answers. The callers are plain
 * NATS clients elsewhere (nats.c), not behind the shipd that stops. */
START_TEST(sigterm_drains)
{
	enum { N = 8 };
	struct fx_app a;
	host_start(&a, "app");
	static struct ep hold = EP(HOLD);
	struct shipc_svc_endpoint ep = ONE("slow", "term.slow", &hold);
	struct shipc_svc_config cfg = SVC1("term", &ep);
	cfg.drain_ms = 8000;
	struct shipc_svc *s = add(a.h, &cfg);

	natsConnection *nc = NULL;
	natsSubscription *sub = NULL;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_SubscribeSync(&sub, nc, "svcterm.reply.*"),
	                 NATS_OK);
	for (int i = 0; i < N; i++) {
		char reply[64], data[16];
		snprintf(reply, sizeof(reply), "svcterm.reply.%d", i);
		snprintf(data, sizeof(data), "%d", i);
		ck_assert_int_eq(natsConnection_PublishRequestString(
					 nc, "term.slow", reply, data),
		                 NATS_OK);
	}
	ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
	wait_held(&hold, N);

	ck_assert_int_eq(kill(sd.pid, SIGTERM), 0);
	uint64_t term = fx_now_ms();
	/* Answered over ~320 ms, after the stop began; half way through,
	 * a new request, which shipd must not hand to the app any more. */
	natsSubscription *late = NULL;
	ck_assert_int_eq(natsConnection_SubscribeSync(&late, nc, "svcterm.late"),
	                 NATS_OK);
	for (int i = 0; i < N; i++) {
		fx_sleep_ms(40);
		answer_held(s, &hold, i, "real-");
		if (i == N / 2) {
			ck_assert_int_eq(natsConnection_PublishRequestString(
						 nc, "term.slow", "svcterm.late", "late"),
			                 NATS_OK);
			ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
		}
	}
	bool got[N] = {false};
	int n = 0;
	uint64_t end = fx_now_ms() + 10000;
	while (n < N && fx_now_ms() < end) {
		natsMsg *m = NULL;
		if (natsSubscription_NextMsg(&m, sub, 200) != NATS_OK)
			continue;
		int i = -1;
		sscanf(natsMsg_GetSubject(m), "svcterm.reply.%d", &i);
		ck_assert_msg(i >= 0 && i < N && !got[i], "reply on %s",
		              natsMsg_GetSubject(m));
		const char *v = NULL;
		ck_assert_msg(natsMsgHeader_Get(m, "Nats-Service-Error", &v) ==
		                      NATS_NOT_FOUND,
		              "request %d got error %s", i, v ? v : "");
		char want[32];
		snprintf(want, sizeof(want), "real-%d", i);
		ck_assert_int_eq(natsMsg_GetDataLength(m), (int)strlen(want));
		ck_assert_int_eq(memcmp(natsMsg_GetData(m), want, strlen(want)), 0);
		got[i] = true;
		n++;
		natsMsg_Destroy(m);
	}
	ck_assert_msg(n == N, "%d of %d callers answered", n, N);
	/* Nothing new was taken while draining: the late request got no
	 * answer of the app's (no responders, or an error of shipd's). */
	ck_assert_msg(ep_count(&hold, HELD) == N,
	              "the app got %d requests after SIGTERM",
	              ep_count(&hold, HELD) - N);
	natsMsg *lm = NULL;
	if (natsSubscription_NextMsg(&lm, late, 200) == NATS_OK) {
		ck_assert_msg(natsMsg_GetDataLength(lm) < 5 ||
		                      memcmp(natsMsg_GetData(lm), "real-", 5),
		              "the late request was answered");
		natsMsg_Destroy(lm);
	}
	natsSubscription_Destroy(late);
	int rc = fx_wait_exit(sd.pid, 10000);
	uint64_t took = fx_now_ms() - term;
	sd.pid = 0;
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
	ck_assert_msg(took < 9000, "shipd took %llu ms to stop",
	              (unsigned long long)took);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
	nats_CloseAndWait(2000);
	fx_app_end(&a);
}
END_TEST

/* ---- bad input ---- */

static void expect_add_fails(struct shipc *h, const struct shipc_svc_config *c,
                             int err, const char *what)
{
	errno = 0;
	struct shipc_svc *s = shipc_svc_add(h, c);
	int e = errno;
	ck_assert_msg(s == NULL && e == err, "%s: want %s, got %s (%s)", what,
	              strerror(err), s ? "a service" : strerror(e), why(h));
}

START_TEST(bad_input)
{
	struct shipc *h = conn("app");
	static struct ep e = EP(ECHO);
	struct shipc_svc_endpoint ep = ONE("ep", "bad.ep", &e);
	const struct shipc_svc_config good = SVC1("good", &ep);
	static const char *const names[] = {"", "bad name", "bad.name", "a*b",
	                                    "a>b", "ü"};
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		struct shipc_svc_config c = good;
		c.name = names[i];
		expect_add_fails(h, &c, EINVAL, names[i]);
	}
	static const char *const versions[] = {"", "1.0", "01.0.0", "1.0.0-",
	                                       "v1.0.0", "1.0.0.0", "1.0.0+",
	                                       "1.0.0-01", "one"};
	for (size_t i = 0; i < sizeof(versions) / sizeof(*versions); i++) {
		struct shipc_svc_config c = good;
		c.version = versions[i];
		expect_add_fails(h, &c, EINVAL, versions[i]);
	}
	struct shipc_svc_endpoint bad[] = {
		{.name = "a.b", .fn = on_req, .arg = &e},
		{.name = "", .subject = "x.y", .fn = on_req, .arg = &e},
		{.name = "ok", .subject = "a b", .fn = on_req, .arg = &e},
		{.name = "ok", .subject = "a.>.b", .fn = on_req, .arg = &e},
		{.name = "ok", .subject = "a..b", .fn = on_req, .arg = &e},
		{.name = "ok", .subject = "x", .queue_group = "q q", .fn = on_req,
		 .arg = &e},
		{.name = "ok", .subject = "x", .group = "g h", .fn = on_req,
		 .arg = &e},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct shipc_svc_config c = good;
		c.endpoints = &bad[i];
		char what[64];
		snprintf(what, sizeof(what), "endpoint %zu", i);
		expect_add_fails(h, &c, EINVAL, what);
	}
	/* Nothing of those was added. */
	char ids[4][64];
	ck_assert_uint_eq(ping_ids(h, NULL, ids, 4), 0);

	/* The full semver grammar is accepted. */
	struct shipc_svc_config c = good;
	c.version = "1.0.0-rc.1+build.5";
	struct shipc_svc *s = add(h, &c);
	/* The same name twice on one handle; another handle may. */
	expect_add_fails(h, &c, EEXIST, "twice");
	struct shipc *h2 = conn("app2");
	struct shipc_svc *s2 = add(h2, &c);
	ck_assert_uint_eq(ping_ids(h, "good", ids, 4), 2);
	ck_assert_int_eq(shipc_svc_stop(s2), 0);
	ck_assert_int_eq(shipc_svc_stop(s), 0);
	shipc_close(h2);
	shipc_close(h);
}
END_TEST

/* ---- mutation events ---- */

static struct shipc *observer;

static uint64_t stream_msgs(struct shipc *h, const char *name)
{
	struct shipc_stream_info *list = NULL;
	size_t n = 0;
	ck_assert_msg(shipc_streams(h, &list, &n) == 0, "%s", why(h));
	uint64_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i].name, name))
			m = list[i].messages;
	shipc_streams_free(list);
	return m;
}

/* When the answer arrives, how many events the stream holds. */
static void observe_stream(struct call *k)
{
	k->observed = (long)stream_msgs(observer, "KANBAN_EVENTS");
}

/* A request to the EVENT handler e, answered want; events: how many
 * the stream held when the answer came (-1: no stream holds the event,
 * and the answer goes out once storing it failed). Returns what
 * shipc_svc_reply() in the handler returned. */
static int call_event(struct shipc *c, const char *subject, const char *data,
                      const char *want, struct ep *e, long events)
{
	struct call k = {.observe = events >= 0 ? observe_stream : NULL};
	call_async(c, subject, data, 5000, &k);
	ck_assert(calls_wait(c, &k, 1, events >= 0 ? 5000 : 8000));
	expect_answer(&k, want);
	if (events >= 0)
		ck_assert_int_eq(k.observed, events);
	wait_replied(e, 1);
	return e->reply_rc;
}

struct evbox {
	pthread_mutex_t mu;
	int n;
	char subject[8][128];
	char raw[8][1024];
	char type[8][64];
	char source[8][64];
	char payload[8][256];
	char corr[8][64];
	char version[8][16];
	char ts[8][64];
};

static void on_event(struct shipc *h, const struct shipc_event *ev, int err,
                     void *arg)
{
	struct evbox *b = arg;
	if (!ev)
		return;
	pthread_mutex_lock(&b->mu);
	if (b->n < 8) {
		int i = b->n++;
		snprintf(b->subject[i], 128, "%s", ev->subject);
		snprintf(b->raw[i], 1024, "%.*s", (int)ev->len,
		         (const char *)ev->data);
		snprintf(b->type[i], 64, "%s", sv(ev->event_type));
		snprintf(b->source[i], 64, "%s", sv(ev->source));
		snprintf(b->payload[i], 256, "%s", sv(ev->payload_json));
		snprintf(b->corr[i], 64, "%s", sv(ev->correlation_id));
		snprintf(b->version[i], 16, "%s", sv(ev->version));
		snprintf(b->ts[i], 64, "%s", sv(ev->timestamp));
	}
	pthread_mutex_unlock(&b->mu);
}

/* The envelope as stored: noesis-ship's ShipEvent, field by field. */
static void expect_envelope(struct evbox *b, int i, const char *subject,
                            const char *type, const char *source,
                            const char *payload)
{
	ck_assert_str_eq(b->subject[i], subject);
	json_error_t err;
	json_t *j = json_loads(b->raw[i], 0, &err);
	ck_assert_msg(j, "not JSON: %s", b->raw[i]);
	ck_assert_uint_eq(json_object_size(j), 6);
	ck_assert_str_eq(jstr(j, "event_type"), type);
	ck_assert_str_eq(jstr(j, "source"), source);
	ck_assert_str_eq(jstr(j, "version"), "1.0");
	ck_assert_msg(matches("^[0-9a-f]{8}$", jstr(j, "correlation_id")),
	              "correlation_id %s", jstr(j, "correlation_id"));
	ck_assert_msg(rfc3339(jstr(j, "timestamp")) > 0, "timestamp %s",
	              jstr(j, "timestamp"));
	ck_assert_str_eq(show(json_object_get(j, "payload")), payload);
	json_decref(j);
	/* libshipc reads it as an envelope too. */
	ck_assert_str_eq(b->type[i], type);
	ck_assert_str_eq(b->source[i], source);
	ck_assert_str_eq(b->version[i], "1.0");
}

START_TEST(mutation_events)
{
	struct fx_app a;
	host_start(&a, "kanban-server");
	struct shipc *c = conn("caller");
	observer = conn("observer");
	const char *subjects[] = {"kanban.event.>"};
	struct shipc_stream_decl d = {.name = "KANBAN_EVENTS",
	                              .subjects = subjects, .n_subjects = 1};
	int rc = -1;
	for (int i = 0; i < 100 && rc < 0; i++)
		if ((rc = shipc_stream_declare(observer, &d)) < 0)
			fx_sleep_ms(50);
	ck_assert_msg(rc == 0, "declare: %s", why(observer));

	static struct ep create = EP(HOLD);
	static struct ep del = EP(EVENT, .body = "{\"deleted\":true}",
	                          .ev_type = "deleted");
	const struct shipc_svc_command cmds[] = {{"create", on_req, &create},
	                                         {"delete", on_req, &del}};
	struct shipc_svc_endpoint ep = {.name = "cmd", .subject = "kanban.cmd",
	                                .prefix = 1, .commands = cmds,
	                                .n_commands = 2};
	struct shipc_svc_config cfg = {.name = "kanban", .version = "1.0.0",
	                               .endpoints = &ep, .n_endpoints = 1,
	                               .event_prefix = "kanban.event",
	                               .event_source = "kanban-server"};
	struct shipc_svc *s = add(a.h, &cfg);
	/* No prefix, no source: the type is the subject, the name the source. */
	static struct ep moved = EP(EVENT, .body = "ok",
	                            .ev_type = "kanban.event.moved",
	                            .ev_json = "[1,2]");
	static struct ep lost = EP(EVENT, .body = "still answered",
	                           .ev_type = "nowhere.stored",
	                           .ev_json = "{}");
	struct shipc_svc_endpoint eps2[] = {ONE("move", "kanban2.move", &moved),
	                                    ONE("lost", "kanban2.lost", &lost)};
	struct shipc_svc_config cfg2 = {.name = "kanban2", .version = "1.0.0",
	                                .endpoints = eps2, .n_endpoints = 2};
	struct shipc_svc *s2 = add(a.h, &cfg2);
	ck_assert_uint_eq(stream_msgs(observer, "KANBAN_EVENTS"), 0);

	/* Answered by the test, the event first. */
	struct call k = {.observe = observe_stream};
	call_async(c, "kanban.cmd.create", "{\"title\":\"t\"}", 5000, &k);
	wait_held(&create, 1);
	ck_assert_str_eq(create.command, "create");
	struct shipc_svc_reply rep = {.data = "{\"id\":7}", .len = 8,
	                              .event_type = "created",
	                              .event_json = "{\"id\":7,\"title\":\"t\"}"};
	ck_assert_msg(shipc_svc_reply(s, create.token[0], &rep) == 0, "%s",
	              why(a.h));
	ck_assert(calls_wait(c, &k, 1, 5000));
	expect_answer(&k, "{\"id\":7}");
	ck_assert_msg(k.observed == 1,
	              "the stream held %ld events when the answer came",
	              k.observed);
	/* Answered from inside the handler, payload null. */
	ck_assert_msg(call_event(c, "kanban.cmd.delete", "{\"id\":7}",
	                         "{\"deleted\":true}", &del, 2) == 0,
	              "shipc_svc_reply in the handler: %s",
	              strerror(del.reply_err));
	ck_assert_int_eq(call_event(c, "kanban2.move", "", "ok", &moved, 3), 0);
	/* No stream holds it: an error for the app, the answer goes out. */
	ck_assert_msg(call_event(c, "kanban2.lost", "", "still answered", &lost,
	                         -1) == -1,
	              "an event no stream holds was acknowledged");
	ck_assert_int_ne(lost.reply_err, 0);

	static struct evbox box = {.mu = PTHREAD_MUTEX_INITIALIZER};
	struct shipc_event_sub es = {.stream = "KANBAN_EVENTS",
	                             .prefix = "kanban.event", .pattern = ">",
	                             .auto_ack = 1};
	uint64_t sub = shipc_event_subscribe(observer, &es, on_event, &box);
	ck_assert_msg(sub != 0, "%s", why(observer));
	uint64_t end = fx_now_ms() + 10000;
	while (box.n < 3 && fx_now_ms() < end)
		shipc_dispatch(observer, 50);
	ck_assert_int_eq(box.n, 3);
	expect_envelope(&box, 0, "kanban.event.created", "created",
	                "kanban-server", "{\"id\":7,\"title\":\"t\"}");
	expect_envelope(&box, 1, "kanban.event.deleted", "deleted",
	                "kanban-server", "null");
	expect_envelope(&box, 2, "kanban.event.moved", "kanban.event.moved",
	                "kanban2", "[1,2]");
	ck_assert_int_eq(shipc_unsubscribe(observer, sub), 0);
	ck_assert_int_eq(shipc_svc_stop(s2), 0);
	shipc_close(observer);
	apps_end(&a, c, s);
}
END_TEST

/* ---- policy ---- */

static void setup_policy(void)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(confdir, sizeof(confdir), "/tmp/shiptest-svcpol-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(confdir));
	snprintf(confpath, sizeof(confpath), "%s/shipd.conf", confdir);
	FILE *f = fopen(confpath, "w");
	ck_assert_ptr_nonnull(f);
	/* Apps of other uids may open the socket; the rules decide. */
	fprintf(f, "socket_mode = 0666\n"
	           "allow = uid:65534 pubsub svc.>\n"
	           "allow = uid:65534 service okay\n");
	ck_assert_int_eq(fclose(f), 0);
	const char *const extra[] = {"-c", confpath, NULL};
	ck_assert_int_eq(fx_up(&nd, &sd, extra), 0);
	ck_assert_int_eq(chmod(sd.dir, 0711), 0);
}

static void teardown_policy(void)
{
	int rc = fx_down(&nd, &sd);
	unlink(confpath);
	rmdir(confdir);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

/* As uid 65534: "okay" with a subject under svc. is granted, any other
 * name or subject is not. Exit status 0, else a message on fd. */
static void __attribute__((noreturn)) policy_child(int fd, void *arg)
{
	char msg[512];
	const gid_t g = 65534;
	if (setgroups(1, &g) < 0 || setgid(65534) < 0 || setuid(65534) < 0) {
		dprintf(fd, "dropping root: %s", strerror(errno));
		_exit(1);
	}
	struct shipc *h = shipc_connect(sd.sock, "policy-app");
	if (!h) {
		dprintf(fd, "connect: %s", strerror(errno));
		_exit(1);
	}
	static struct ep e = EP(ECHO);
	struct shipc_svc_endpoint in = ONE("ep", "svc.okay", &e);
	struct shipc_svc_endpoint out = ONE("ep", "other.okay", &e);
	struct shipc_svc_config c = SVC1("nope", &in);
	errno = 0;
	if (shipc_svc_add(h, &c) || errno != EACCES ||
	    !strstr(shipc_last_error(h, msg, sizeof(msg)), "service")) {
		dprintf(fd, "service nope: want EACCES naming service, got %s: %s",
		        strerror(errno), shipc_last_error(h, msg, sizeof(msg)));
		_exit(1);
	}
	c.name = "okay";
	c.endpoints = &out;
	errno = 0;
	if (shipc_svc_add(h, &c) || errno != EACCES) {
		dprintf(fd, "okay on other.okay: want EACCES, got %s",
		        strerror(errno));
		_exit(1);
	}
	c.endpoints = &in;
	struct shipc_svc *s = shipc_svc_add(h, &c);
	if (!s) {
		dprintf(fd, "okay on svc.okay: %s (%s)", strerror(errno),
		        shipc_last_error(h, msg, sizeof(msg)));
		_exit(1);
	}
	/* Served: a request of its own comes back through shipd. */
	struct shipc_msg *r = NULL;
	int rc = -1;
	for (int i = 0; i < 50 && rc < 0; i++) {
		rc = shipc_request(h, "svc.okay", "hi", 2, 2000, &r);
		if (rc < 0)
			shipc_dispatch(h, 50);
	}
	if (rc < 0 || r->len != 2 || memcmp(r->data, "hi", 2)) {
		dprintf(fd, "request: %s", rc < 0 ? strerror(errno) : "wrong data");
		_exit(1);
	}
	shipc_msg_free(r);
	if (shipc_svc_stop(s) < 0) {
		dprintf(fd, "stop: %s", strerror(errno));
		_exit(1);
	}
	shipc_close(h);
	_exit(0);
}

START_TEST(policy_service)
{
	int fd;
	pid_t pid = fx_fork(policy_child, NULL, &fd);
	ck_assert_int_gt(pid, 0);
	char msg[1024];
	int st = fx_child_wait(pid, fd, msg, sizeof(msg), 30000);
	ck_assert_msg(st == 0, "as uid 65534 (exit %d): %s", st, msg);
	/* Root may host any name. */
	struct shipc *h = conn("root");
	static struct ep e = EP(ECHO);
	struct shipc_svc_endpoint ep = ONE("ep", "other.root", &e);
	struct shipc_svc_config c = SVC1("nope", &ep);
	struct shipc_svc *s = add(h, &c);
	ck_assert_int_eq(shipc_svc_stop(s), 0);
	shipc_close(h);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {serve_and_call, error_answers,
	                        discovery_nine_subjects, prefix_routing,
	                        deadline_504, max_pending_503, app_killed_503,
	                        app_closes_503, stop_drains, sigterm_drains,
	                        bad_input, mutation_events};
	Suite *s = suite_create("svc");
	TCase *tc = tcase_create("services");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	for (size_t i = 0; i < sizeof(tests) / sizeof(*tests); i++)
		tcase_add_test(tc, tests[i]);
	suite_add_tcase(s, tc);
	TCase *pol = tcase_create("policy");
	tcase_add_checked_fixture(pol, setup_policy, teardown_policy);
	tcase_set_timeout(pol, 120);
	tcase_add_test(pol, policy_service);
	suite_add_tcase(s, pol);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
