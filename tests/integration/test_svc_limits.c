/* SPDX-License-Identifier: MIT */
/* Services at their edges, each a bug review found: reply subjects that
 * name system subjects or shipd's own inbox, pending requests charged to
 * the app's memory limit, text that is not UTF-8 (an app's long error, a
 * subject of raw bytes), reply subjects over 1024 bytes, drains after a
 * NATS restart that lose no request, and the limits of one ServiceAdd. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>

#include "fixture.h"
#include "shipc.h"

static struct natsd nd;
static struct shipdp sd;

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_up(&nd, &sd, NULL), 0);
}

/* client_memory_limit at its least: 1 MiB. */
static void setup_small(void)
{
	static const char *const extra[] = {"-o", "client_memory_limit=1048576",
	                                    NULL};
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_up(&nd, &sd, extra), 0);
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

/* An app hosting services: a handle and a thread dispatching it. */
static void host_start(struct fx_app *a, const char *name)
{
	ck_assert_int_eq(fx_app_start(a, conn(name)), 0);
}

/* ---- handlers ---- */

enum mode {
	ECHO, /* answer with the request's data */
	HOLD, /* keep the token: the test answers, or never */
	FAIL, /* answer with error code and text */
};

#define MAXH 4096

struct ep {
	enum mode mode;
	unsigned code;
	const char *text;
	pthread_mutex_t mu;
	int calls;
	char reply[2048]; /* the last request's */
	int n_held;
	uint64_t token[MAXH];
};

#define EP(...) {.mu = PTHREAD_MUTEX_INITIALIZER, .mode = __VA_ARGS__}

static void on_req(struct shipc *h, const struct shipc_svc_req *r, void *arg)
{
	struct ep *e = arg;
	pthread_mutex_lock(&e->mu);
	e->calls++;
	snprintf(e->reply, sizeof(e->reply), "%s", r->reply ? r->reply : "");
	if (e->mode == HOLD && e->n_held < MAXH)
		e->token[e->n_held++] = r->token;
	pthread_mutex_unlock(&e->mu);
	if (e->mode == ECHO)
		shipc_svc_respond(r->svc, r->token, r->data, r->len);
	else if (e->mode == FAIL)
		shipc_svc_error(r->svc, r->token, e->code, e->text, NULL, 0);
}

static int ep_calls(struct ep *e)
{
	pthread_mutex_lock(&e->mu);
	int n = e->calls;
	pthread_mutex_unlock(&e->mu);
	return n;
}

#define ONE(n, subj, e) {.name = (n), .subject = (subj), .fn = on_req, .arg = (e)}

static struct shipc_svc *add(struct shipc *h, const struct shipc_svc_config *c)
{
	struct shipc_svc *s = shipc_svc_add(h, c);
	ck_assert_msg(s != NULL, "add %s: %s (%s)", c->name, strerror(errno),
	              why(h));
	return s;
}

static void expect_add_fails(struct shipc *h, const struct shipc_svc_config *c,
                             int err, const char *what)
{
	errno = 0;
	struct shipc_svc *s = shipc_svc_add(h, c);
	int e = errno;
	ck_assert_msg(s == NULL && e == err, "%s: want %s, got %s (%s)", what,
	              strerror(err), s ? "a service" : strerror(e), why(h));
}

/* ---- callers on NATS itself (nats.c), as a remote caller is ---- */

static natsConnection *nconn(void)
{
	natsConnection *nc = NULL;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	return nc;
}

static void nsend(natsConnection *nc, const char *subject, const char *reply,
                  const char *data)
{
	ck_assert_int_eq(natsConnection_PublishRequest(nc, subject, reply, data,
	                                               data ? (int)strlen(data)
	                                                    : 0),
	                 NATS_OK);
	ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
}

/* What arrives on a subscription: answers and their error headers. */
struct box {
	pthread_mutex_t mu;
	int n, n_ok, n_503, n_500;
	int n_data; /* with a body */
	char code[32], text[256], data[256];
	/* Answers by the id in the reply subject's last token, if set. */
	atomic_uchar *seen;
	int n_seen;
};

#define BOX {.mu = PTHREAD_MUTEX_INITIALIZER}

static void box_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m,
                    void *arg)
{
	struct box *b = arg;
	const char *code = NULL, *text = NULL;
	natsMsgHeader_Get(m, "Nats-Service-Error-Code", &code);
	natsMsgHeader_Get(m, "Nats-Service-Error", &text);
	pthread_mutex_lock(&b->mu);
	b->n++;
	if (!code)
		b->n_ok++;
	else if (!strcmp(code, "503"))
		b->n_503++;
	else if (!strcmp(code, "500"))
		b->n_500++;
	b->n_data += natsMsg_GetDataLength(m) > 0;
	snprintf(b->code, sizeof(b->code), "%s", code ? code : "");
	snprintf(b->text, sizeof(b->text), "%s", text ? text : "");
	snprintf(b->data, sizeof(b->data), "%.*s", natsMsg_GetDataLength(m),
	         natsMsg_GetData(m) ? natsMsg_GetData(m) : "");
	pthread_mutex_unlock(&b->mu);
	if (b->seen) {
		const char *s = natsMsg_GetSubject(m);
		const char *dot = strrchr(s, '.');
		int id = dot ? atoi(dot + 1) : -1;
		if (id >= 0 && id < b->n_seen)
			atomic_fetch_add(&b->seen[id], 1);
	}
	natsMsg_Destroy(m);
}

static natsSubscription *box_sub(natsConnection *nc, const char *subject,
                                 struct box *b)
{
	natsSubscription *s = NULL;
	ck_assert_int_eq(natsConnection_Subscribe(&s, nc, subject, box_msg, b),
	                 NATS_OK);
	ck_assert_int_eq(natsSubscription_SetPendingLimits(s, -1, -1), NATS_OK);
	ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
	return s;
}

static int box_n(struct box *b)
{
	pthread_mutex_lock(&b->mu);
	int n = b->n;
	pthread_mutex_unlock(&b->mu);
	return n;
}

/* Wait until b holds n messages; false after timeout_ms. */
static bool box_wait(struct box *b, int n, int timeout_ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
	while (box_n(b) < n) {
		if (fx_now_ms() >= end)
			return false;
		fx_sleep_ms(5);
	}
	return true;
}

/* ---- STATS ---- */

/* The one STATS answer of name, parsed (jansson refuses what is not
 * UTF-8). */
static json_t *stats_of(struct shipc *h, const char *name)
{
	char **rs = NULL;
	size_t n = 0;
	ck_assert_msg(shipc_svc_discover(h, "STATS", name, NULL, 0, &rs, &n) == 0,
	              "STATS %s: %s", name, why(h));
	ck_assert_msg(n == 1, "%zu STATS answers from %s", n, name);
	json_error_t err;
	json_t *j = json_loads(rs[0], 0, &err);
	ck_assert_msg(j != NULL, "STATS is not JSON (%s): %s", err.text, rs[0]);
	shipc_svc_replies_free(rs, n);
	return j;
}

/* The endpoint called name in a STATS answer, or NULL. */
static json_t *stats_ep(json_t *st, const char *name)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(st, "endpoints"), i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));
		if (n && !strcmp(n, name))
			return e;
	}
	return NULL;
}

/* ---- reply subjects shipd must not answer to ---- */

static void victim_make(jsCtx *js)
{
	jsStreamConfig sc;
	jsStreamConfig_Init(&sc);
	const char *subs[] = {"victim.>"};
	sc.Name = "VICTIM";
	sc.Subjects = subs;
	sc.SubjectsLen = 1;
	sc.Storage = js_MemoryStorage;
	ck_assert_int_eq(js_AddStream(NULL, js, &sc, NULL, NULL), NATS_OK);
	ck_assert_int_eq(js_Publish(NULL, js, "victim.1", "kept", 4, NULL, NULL),
	                 NATS_OK);
}

/* Whether VICTIM is there with its one message; if not, what happened is
 * added to harm and VICTIM is made again for the next case. */
static bool victim_ok(jsCtx *js, const char *after, char *harm, size_t size)
{
	jsStreamInfo *si = NULL;
	natsStatus st = js_GetStreamInfo(&si, js, "VICTIM", NULL, NULL);
	uint64_t n = st == NATS_OK ? si->State.Msgs : 0;
	jsStreamInfo_Destroy(si);
	if (st == NATS_OK && n == 1)
		return true;
	size_t len = strlen(harm);
	snprintf(harm + len, size - len, "%s%s (%s)", len ? "; " : "", after,
	         st == NATS_OK ? "purged" : "deleted");
	if (st == NATS_OK)
		js_DeleteStream(js, "VICTIM", NULL, NULL);
	victim_make(js);
	return false;
}

START_TEST(reply_to_system_subject)
{
	struct fx_app a;
	host_start(&a, "app");
	static struct ep echo = EP(ECHO);
	static struct ep never = EP(HOLD);
	struct shipc_svc_endpoint ep = ONE("ok", "guard.ok", &echo);
	struct shipc_svc_config cfg = {.name = "guard", .version = "1.0.0",
	                               .endpoints = &ep, .n_endpoints = 1};
	struct shipc_svc_endpoint slow_ep = ONE("slow", "guard.slow", &never);
	struct shipc_svc_config slow = {.name = "guard-slow",
	                                .version = "1.0.0",
	                                .endpoints = &slow_ep,
	                                .n_endpoints = 1, .timeout_ms = 200};
	struct shipc_svc *s = add(a.h, &cfg);
	struct shipc_svc *s2 = add(a.h, &slow);
	natsConnection *nc = nconn();
	jsCtx *js = NULL;
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	victim_make(js);
	char harm[1024] = "";
	ck_assert(victim_ok(js, "its making", harm, sizeof(harm)));

	/* The app answers, with an empty body (what STREAM.DELETE takes). */
	nsend(nc, "guard.ok", "$JS.API.STREAM.DELETE.VICTIM", NULL);
	fx_sleep_ms(500);
	victim_ok(js, "the app's answer", harm, sizeof(harm));
	/* Nobody answers: shipd's 504 has an empty body too. */
	nsend(nc, "guard.slow", "$JS.API.STREAM.DELETE.VICTIM", NULL);
	fx_sleep_ms(800);
	victim_ok(js, "shipd's 504", harm, sizeof(harm));
	/* Discovery answers are JSON, which STREAM.PURGE takes. */
	static const char *const verbs[] = {"$SRV.PING.guard", "$SRV.INFO.guard",
	                                    "$SRV.STATS.guard", "$SRV.PING"};
	for (size_t i = 0; i < sizeof(verbs) / sizeof(*verbs); i++) {
		nsend(nc, verbs[i], "$JS.API.STREAM.PURGE.VICTIM", NULL);
		fx_sleep_ms(300);
		victim_ok(js, verbs[i], harm, sizeof(harm));
	}

	/* shipd's inbox: a request's reply subject there is shipd's own
	 * caller's; any other (its probe's) is not a caller's to name. */
	struct shipc *c = conn("caller");
	struct shipc_msg *r = NULL;
	ck_assert_msg(shipc_request(c, "guard.ok", "in", 2, 5000, &r) == 0,
	              "%s", why(c));
	shipc_msg_free(r);
	char inbox[2048];
	pthread_mutex_lock(&echo.mu);
	snprintf(inbox, sizeof(inbox), "%s", echo.reply);
	pthread_mutex_unlock(&echo.mu);
	char *dot = strrchr(inbox, '.');
	ck_assert_msg(dot && !strncmp(inbox, "_INBOX.", 7),
	              "a local caller's reply subject '%s'", inbox);
	*dot = '\0';
	char rtt[2100], spy[2100];
	snprintf(rtt, sizeof(rtt), "%s.rtt", inbox);
	snprintf(spy, sizeof(spy), "%s.>", inbox);
	static struct box b = BOX;
	natsSubscription *sub = box_sub(nc, spy, &b);
	nsend(nc, "guard.ok", rtt, "forged");
	nsend(nc, "$SRV.PING.guard", rtt, NULL);
	fx_sleep_ms(500);
	pthread_mutex_lock(&b.mu);
	/* shipd's own probes come there too: empty. */
	if (b.n_data) {
		size_t len = strlen(harm);
		snprintf(harm + len, sizeof(harm) - len,
		         "%s%d answers to its own inbox's .rtt", len ? "; " : "",
		         b.n_data);
	}
	pthread_mutex_unlock(&b.mu);
	natsSubscription_Destroy(sub);
	ck_assert_msg(!harm[0], "shipd answered to reply subjects no caller "
	                        "may name: %s",
	              harm);

	/* Callers with reply subjects of their own are still answered. */
	natsMsg *m = NULL;
	ck_assert_int_eq(natsConnection_RequestString(&m, nc, "guard.ok", "hi",
	                                              5000),
	                 NATS_OK);
	ck_assert_int_eq(natsMsg_GetDataLength(m), 2);
	ck_assert_int_eq(memcmp(natsMsg_GetData(m), "hi", 2), 0);
	natsMsg_Destroy(m);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	ck_assert_int_eq(shipc_svc_stop(s2), 0);
	ck_assert_int_eq(shipc_svc_stop(s), 0);
	shipc_close(c);
	fx_app_end(&a);
}
END_TEST

/* ---- pending requests are charged to the app's memory ---- */

#define HOG_N 20000
#define HOG_TOKEN 1000 /* bytes of one token of each reply subject */

START_TEST(pending_charged_to_memory_limit)
{
	struct fx_app a;
	host_start(&a, "hog");
	static struct ep hold = EP(HOLD);
	struct shipc_svc_endpoint ep = ONE("hold", "hog.hold", &hold);
	struct shipc_svc_config cfg = {.name = "hog", .version = "1.0.0",
	                               .endpoints = &ep, .n_endpoints = 1,
	                               .max_pending = 65536,
	                               .timeout_ms = 120000};
	struct shipc_svc *s = add(a.h, &cfg);
	natsConnection *nc = nconn();
	static struct box b = BOX;
	natsSubscription *sub = box_sub(nc, "_INBOX.hog.>", &b);
	static char reply[HOG_TOKEN + 64];
	char token[HOG_TOKEN + 1];
	memset(token, 'r', HOG_TOKEN);
	token[HOG_TOKEN] = '\0';
	fx_sleep_ms(300);
	long rss0 = fx_rss_kib(sd.pid);
	for (int i = 0; i < HOG_N; i++) {
		snprintf(reply, sizeof(reply), "_INBOX.hog.%s.%d", token, i);
		ck_assert_int_eq(natsConnection_PublishRequest(nc, "hog.hold", reply,
		                                               "x", 1),
		                 NATS_OK);
		if (i % 500 == 499)
			ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
	}
	ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
	/* Each request is with the app or answered 503. */
	uint64_t end = fx_now_ms() + 60000;
	while (ep_calls(&hold) + box_n(&b) < HOG_N && fx_now_ms() < end)
		fx_sleep_ms(20);
	fx_sleep_ms(200);
	long rss1 = fx_rss_kib(sd.pid);
	int held = ep_calls(&hold);
	pthread_mutex_lock(&b.mu);
	int n503 = b.n_503, n = b.n;
	char text[256];
	snprintf(text, sizeof(text), "%s", b.text);
	pthread_mutex_unlock(&b.mu);
	fprintf(stderr, "memory: %d held by the app, %d answered 503 (%s); "
	                "shipd's RSS %ld -> %ld KiB\n",
	        held, n503, text, rss0, rss1);
	ck_assert_msg(held + n == HOG_N, "%d requests held, %d answered of %d",
	              held, n, HOG_N);
	ck_assert_msg(n503 > 0 && n503 == n,
	              "%d of %d requests held, none refused past "
	              "client_memory_limit (%d answers, %d of them 503)",
	              held, HOG_N, n, n503);
	ck_assert_msg(strstr(text, "memory"), "503 says '%s'", text);
	/* 1 MiB is held for them at most. */
	ck_assert_msg(held <= (1 << 20) / HOG_TOKEN, "%d requests held", held);
#ifndef SHIP_SANITIZED
	ck_assert_msg(rss1 - rss0 < 16 * 1024,
	              "shipd grew from %ld to %ld KiB", rss0, rss1);
#endif

	/* Answered: what they held is free again. */
	for (int i = 0; i < held && i < MAXH; i++)
		ck_assert_int_eq(shipc_svc_respond(s, hold.token[i], "ok", 2), 0);
	ck_assert_msg(box_wait(&b, n + held, 10000), "%d answers of %d",
	              box_n(&b) - n, held);
	for (int i = 0; i < 10; i++) {
		snprintf(reply, sizeof(reply), "_INBOX.hog.%s.%d", token, HOG_N + i);
		nsend(nc, "hog.hold", reply, "y");
	}
	end = fx_now_ms() + 10000;
	while (ep_calls(&hold) < held + 10 && fx_now_ms() < end)
		fx_sleep_ms(10);
	ck_assert_msg(ep_calls(&hold) == held + 10,
	              "%d of 10 requests reached the app once the others were "
	              "answered",
	              ep_calls(&hold) - held);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
	fx_app_end(&a); /* the last ten: 503, the app is gone */
}
END_TEST

/* ---- text that is not UTF-8 ---- */

START_TEST(long_error_text_cut_as_utf8)
{
	struct fx_app a;
	host_start(&a, "app");
	char text[401];
	for (int i = 0; i < 200; i++)
		memcpy(text + 2 * i, "\xc3\xa9", 2); /* é */
	text[400] = '\0';
	static struct ep fail = EP(FAIL, .code = 418);
	fail.text = text;
	static struct ep ok = EP(ECHO);
	struct shipc_svc_endpoint eps[] = {ONE("fail", "utf.fail", &fail),
	                                   ONE("ok", "utf.ok", &ok)};
	struct shipc_svc_config cfg = {.name = "utf", .version = "1.0.0",
	                               .endpoints = eps, .n_endpoints = 2};
	struct shipc_svc *s = add(a.h, &cfg);
	struct shipc *c = conn("caller");
	struct shipc_msg *r = NULL;
	ck_assert_msg(shipc_request(c, "utf.fail", "x", 1, 5000, &r) == 0, "%s",
	              why(c));
	bool coded = false;
	for (size_t i = 0; i < r->n_headers; i++)
		coded |= !strcmp(r->headers[i].key, "Nats-Service-Error-Code") &&
		         !strcmp(r->headers[i].value, "418");
	shipc_msg_free(r);
	ck_assert_msg(coded, "no error 418");

	json_t *st = stats_of(c, "utf");
	json_t *e = stats_ep(st, "fail");
	ck_assert_msg(e != NULL, "STATS lost the endpoint with the error: %s",
	              json_dumps(st, JSON_COMPACT));
	ck_assert_int_eq(json_integer_value(json_object_get(e, "num_errors")), 1);
	const char *le = json_string_value(json_object_get(e, "last_error"));
	ck_assert_ptr_nonnull(le); /* UTF-8: jansson read it */
	ck_assert_msg(!strncmp(le, "418:", 4), "last_error '%s'", le);
	/* The text, cut (not to nothing). */
	ck_assert_msg(strlen(le) > 200 && !strncmp(le + 4, text, 200),
	              "last_error '%s'", le);
	ck_assert_ptr_nonnull(stats_ep(st, "ok"));
	json_decref(st);
	ck_assert_int_eq(shipc_svc_stop(s), 0);
	shipc_close(c);
	fx_app_end(&a);
}
END_TEST

START_TEST(subject_not_utf8)
{
	struct fx_app a;
	host_start(&a, "app");
	static struct ep known = EP(ECHO), dflt = EP(ECHO);
	const struct shipc_svc_command cmds[] = {{"known", on_req, &known}};
	struct shipc_svc_endpoint eps[] = {
		{.name = "strict", .subject = "pfx", .prefix = 1, .commands = cmds,
		 .n_commands = 1},
		{.name = "loose", .subject = "pfd", .prefix = 1, .fn = on_req,
		 .arg = &dflt},
	};
	struct shipc_svc_config cfg = {.name = "raw", .version = "1.0.0",
	                               .endpoints = eps, .n_endpoints = 2};
	struct shipc_svc *s = add(a.h, &cfg);
	natsConnection *nc = nconn();
	static struct box b = BOX;
	natsSubscription *sub = box_sub(nc, "_INBOX.raw.>", &b);
	/* No command of the strict endpoint; the loose one's default
	 * handler would get it. */
	nsend(nc, "pfx.\xff\xfe", "_INBOX.raw.1", "?");
	ck_assert_msg(box_wait(&b, 1, 5000), "no answer to pfx.\\xff\\xfe");
	pthread_mutex_lock(&b.mu);
	ck_assert_msg(b.n_500 == 1, "pfx.\\xff\\xfe: error '%s' (%s), data '%s'",
	              b.code, b.text, b.data);
	pthread_mutex_unlock(&b.mu);
	nsend(nc, "pfd.\xff.x", "_INBOX.raw.2", "?");
	ck_assert_msg(box_wait(&b, 2, 5000), "no answer to pfd.\\xff.x");
	pthread_mutex_lock(&b.mu);
	ck_assert_msg(b.n_500 == 2, "pfd.\\xff.x: error '%s' (%s), data '%s'",
	              b.code, b.text, b.data);
	pthread_mutex_unlock(&b.mu);
	ck_assert_int_eq(ep_calls(&dflt), 0);

	/* Both endpoints are still in STATS, with valid text. */
	struct shipc *c = conn("caller");
	json_t *st = stats_of(c, "raw");
	static const char *const names[] = {"strict", "loose"};
	for (int i = 0; i < 2; i++) {
		json_t *e = stats_ep(st, names[i]);
		ck_assert_msg(e != NULL, "STATS lost endpoint %s: %s", names[i],
		              json_dumps(st, JSON_COMPACT));
		ck_assert_int_eq(
			json_integer_value(json_object_get(e, "num_errors")), 1);
		const char *le = json_string_value(json_object_get(e, "last_error"));
		ck_assert_msg(le && !strncmp(le, "500:", 4), "last_error '%s'", le);
	}
	json_decref(st);
	/* And they still serve. */
	struct shipc_msg *r = NULL;
	ck_assert_msg(shipc_request(c, "pfx.known", "k", 1, 5000, &r) == 0,
	              "%s", why(c));
	shipc_msg_free(r);
	ck_assert_msg(shipc_request(c, "pfd.other", "d", 1, 5000, &r) == 0,
	              "%s", why(c));
	ck_assert_uint_eq(r->len, 1);
	shipc_msg_free(r);
	ck_assert_int_eq(ep_calls(&dflt), 1);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
	ck_assert_int_eq(shipc_svc_stop(s), 0);
	shipc_close(c);
	fx_app_end(&a);
}
END_TEST

/* ---- reply subjects over 1024 bytes ---- */

START_TEST(long_reply_subject)
{
	struct fx_app a;
	host_start(&a, "app");
	static struct ep echo = EP(ECHO), hold = EP(HOLD);
	struct shipc_svc_endpoint eps[] = {ONE("echo", "long.echo", &echo),
	                                   ONE("hold", "long.hold", &hold)};
	struct shipc_svc_config cfg = {.name = "long", .version = "1.0.0",
	                               .endpoints = eps, .n_endpoints = 2};
	struct shipc_svc *s = add(a.h, &cfg);
	natsConnection *nc = nconn();
	static char reply[1501], cut[1025];
	snprintf(reply, sizeof(reply), "_INBOX.long.");
	memset(reply + strlen(reply), 'z', 1500 - strlen(reply));
	reply[1500] = '\0';
	memcpy(cut, reply, 1024);
	cut[1024] = '\0';
	static struct box whole = BOX, part = BOX;
	natsSubscription *s1 = box_sub(nc, reply, &whole);
	natsSubscription *s2 = box_sub(nc, cut, &part);
	/* Answered in the handler, and later with an error. */
	nsend(nc, "long.echo", reply, "one");
	ck_assert_msg(box_wait(&whole, 1, 5000),
	              "no answer on the 1500-byte reply subject (%d on its first "
	              "1024 bytes)",
	              box_n(&part));
	ck_assert_str_eq(whole.data, "one");
	nsend(nc, "long.hold", reply, "two");
	uint64_t end = fx_now_ms() + 5000;
	while (ep_calls(&hold) < 1 && fx_now_ms() < end)
		fx_sleep_ms(10);
	ck_assert_int_eq(ep_calls(&hold), 1);
	ck_assert_uint_eq(strlen(hold.reply), 1500);
	ck_assert_int_eq(shipc_svc_error(s, hold.token[0], 409, "late", NULL, 0),
	                 0);
	ck_assert_msg(box_wait(&whole, 2, 5000),
	              "no error answer on the 1500-byte reply subject (%d on its "
	              "first 1024 bytes)",
	              box_n(&part));
	ck_assert_str_eq(whole.code, "409");
	fx_sleep_ms(300);
	ck_assert_msg(box_n(&part) == 0, "%d answers went to the first 1024 bytes",
	              box_n(&part));
	natsSubscription_Destroy(s2);
	natsSubscription_Destroy(s1);
	natsConnection_Destroy(nc);
	ck_assert_int_eq(shipc_svc_stop(s), 0);
	fx_app_end(&a);
}
END_TEST

/* ---- a drain after a NATS restart loses no request ---- */

/* A caller sending requests back to back, each with a reply subject of
 * its own (_INBOX.drain.<round>.<id>), at most max_out unanswered. */
struct pump {
	natsConnection *nc;
	int round;
	struct box *b;
	atomic_int sent;
	atomic_bool stop;
	int max_out;
	pthread_t t;
};

#define PUMP_MAX 200000

static void *pump_loop(void *arg)
{
	struct pump *p = arg;
	char reply[64];
	while (!atomic_load(&p->stop) && atomic_load(&p->sent) < PUMP_MAX) {
		if (atomic_load(&p->sent) - box_n(p->b) >= p->max_out) {
			usleep(200);
			continue;
		}
		int id = atomic_load(&p->sent);
		snprintf(reply, sizeof(reply), "_INBOX.drain.%d.%d", p->round, id);
		if (natsConnection_PublishRequest(p->nc, "relay.work", reply, "r",
		                                  1) != NATS_OK)
			break;
		atomic_store(&p->sent, id + 1);
		if (id % 8 == 7)
			natsConnection_Flush(p->nc);
	}
	natsConnection_Flush(p->nc);
	return NULL;
}

/* Both instances answer again after the restart. */
static void wait_both(natsConnection *nc, struct ep *ea, struct ep *eb)
{
	int a0 = ep_calls(ea), b0 = ep_calls(eb);
	uint64_t end = fx_now_ms() + 20000;
	while ((ep_calls(ea) == a0 || ep_calls(eb) == b0) && fx_now_ms() < end) {
		natsMsg *m = NULL;
		if (natsConnection_RequestString(&m, nc, "relay.work", "w", 500) ==
		    NATS_OK)
			natsMsg_Destroy(m);
		else
			fx_sleep_ms(50);
	}
	ck_assert_msg(ep_calls(ea) > a0 && ep_calls(eb) > b0,
	              "the instances do not both answer after the restart");
}

/* After a restart shipd's subscriptions were taken for drained: a drain
 * ended as soon as nothing was pending, and requests on their way to the
 * instance (sent by the server before it had the UNSUB, or read and not
 * yet handed to shipd's loop) were dropped without an answer. A answers
 * at once, so that often nothing is pending at its stop while requests
 * flow back to back (an instance holding its answers keeps its drain
 * open until they have all come, which hides the loss). Each round
 * restarts NATS twice: the mix-up comes from a race at each restart. */
START_TEST(drain_after_nats_restart)
{
	struct fx_app ha, hb;
	host_start(&ha, "relay-a");
	host_start(&hb, "relay-b");
	static struct ep ea = EP(ECHO), eb = EP(ECHO);
	struct shipc_svc_endpoint epa = ONE("work", "relay.work", &ea);
	struct shipc_svc_endpoint epb = ONE("work", "relay.work", &eb);
	struct shipc_svc_config ca = {.name = "relay", .version = "1.0.0",
	                              .endpoints = &epa, .n_endpoints = 1};
	struct shipc_svc_config cb = ca;
	cb.endpoints = &epb;
	struct shipc_svc *sb = add(hb.h, &cb);
	int lost_total = 0, sent_total = 0;
	enum { ROUNDS = 5, RESTARTS = 2 };
	for (int round = 0; round < ROUNDS; round++) {
		struct shipc_svc *sa = add(ha.h, &ca);
		natsConnection *nc = NULL;
		for (int i = 0; i < RESTARTS; i++) {
			natsConnection_Destroy(nc);
			natsd_stop(&nd);
			fx_sleep_ms(300);
			ck_assert_int_eq(natsd_restart(&nd), 0);
			ck_assert(fx_wait_link(sd.sock, 20000));
			nc = nconn();
			wait_both(nc, &ea, &eb);
		}
		struct box b = BOX;
		b.n_seen = PUMP_MAX;
		b.seen = calloc(PUMP_MAX, 1);
		ck_assert_ptr_nonnull(b.seen);
		char subj[64];
		snprintf(subj, sizeof(subj), "_INBOX.drain.%d.*", round);
		natsSubscription *sub = box_sub(nc, subj, &b);
		struct pump p = {.nc = nc, .round = round, .b = &b, .max_out = 64};
		atomic_init(&p.sent, 0);
		atomic_init(&p.stop, false);
		ck_assert_int_eq(pthread_create(&p.t, NULL, pump_loop, &p), 0);
		int a0 = ep_calls(&ea);
		fx_sleep_ms(300);
		int a_before = ep_calls(&ea) - a0;
		int rc = shipc_svc_stop(sa);
		int err = errno;
		fx_sleep_ms(300); /* B alone */
		atomic_store(&p.stop, true);
		pthread_join(p.t, NULL);
		int sent = atomic_load(&p.sent);
		box_wait(&b, sent, 5000);
		int lost = 0, twice = 0, first = -1;
		for (int i = 0; i < sent; i++) {
			lost += b.seen[i] == 0;
			twice += b.seen[i] > 1;
			if (!b.seen[i] && first < 0)
				first = i;
		}
		fprintf(stderr, "drain round %d: %d sent, %d lost (first %d); A "
		                "took %d in the 300 ms before its stop\n",
		        round, sent, lost, first, a_before);
		ck_assert_msg(rc == 0, "stop: %s", strerror(err));
		ck_assert_msg(a_before > 0, "A took none of the requests");
		ck_assert_int_eq(twice, 0);
		lost_total += lost;
		sent_total += sent;
		natsSubscription_Destroy(sub);
		natsConnection_Destroy(nc);
		free(b.seen);
	}
	ck_assert_msg(lost_total == 0,
	              "%d of %d requests got no answer: the drains after NATS "
	              "restarts ended with requests on their way",
	              lost_total, sent_total);
	ck_assert_int_eq(shipc_svc_stop(sb), 0);
	fx_app_end(&hb);
	fx_app_end(&ha);
}
END_TEST

/* ---- what one ServiceAdd may ask for ---- */

/* One endpoint name twice: STATS and INFO could not tell them apart. */
START_TEST(endpoint_name_twice)
{
	struct shipc *h = conn("app");
	static struct ep e = EP(ECHO);
	struct shipc_svc_endpoint dup[] = {ONE("ep", "dup.one", &e),
	                                   ONE("ep", "dup.two", &e)};
	struct shipc_svc_config c = {.name = "dup", .version = "1.0.0",
	                             .endpoints = dup, .n_endpoints = 2};
	expect_add_fails(h, &c, EINVAL, "an endpoint name twice");
	dup[1].name = "ep2";
	struct shipc_svc *s = add(h, &c);
	ck_assert_int_eq(shipc_svc_stop(s), 0);
	shipc_close(h);
}
END_TEST

/* INFO goes out as one message: at most 256 KiB, though each endpoint's
 * metadata is within its own limit (16 KiB). */
START_TEST(info_over_256k)
{
	struct shipc *h = conn("app");
	static struct ep e = EP(ECHO);
	enum { EPS = 64, META = 16000 };
	static char value[META + 1];
	memset(value, 'm', META);
	value[META] = '\0';
	const struct shipc_header md[] = {{"k", value}};
	static struct shipc_svc_endpoint big[EPS];
	static char names[EPS][16];
	for (int i = 0; i < EPS; i++) {
		snprintf(names[i], sizeof(names[i]), "ep%d", i);
		big[i] = (struct shipc_svc_endpoint){
			.name = names[i], .group = "big", .metadata = md,
			.n_metadata = 1, .fn = on_req, .arg = &e};
	}
	struct shipc_svc_config c = {.name = "big", .version = "1.0.0",
	                             .description = "big", .endpoints = big,
	                             .n_endpoints = EPS};
	expect_add_fails(h, &c, EINVAL, "an INFO of 1 MB");
	c.n_endpoints = 17; /* 272 kB */
	expect_add_fails(h, &c, EINVAL, "an INFO of 272 kB");
	c.n_endpoints = 15; /* 240 kB: fits */
	struct shipc_svc *s = add(h, &c);
	char **rs = NULL;
	size_t n = 0;
	ck_assert_msg(shipc_svc_discover(h, "INFO", "big", NULL, 0, &rs, &n) == 0,
	              "%s", why(h));
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_gt(strlen(rs[0]), 15 * META);
	shipc_svc_replies_free(rs, n);
	ck_assert_int_eq(shipc_svc_stop(s), 0);
	shipc_close(h);
}
END_TEST

/* 64 services on one connection; the 65th is refused, on another
 * connection it is not. */
START_TEST(services_per_connection)
{
	struct shipc *h = conn("app");
	enum { PER = 64 };
	struct shipc_svc *ss[PER];
	for (int i = 0; i < PER; i++) {
		char name[16];
		snprintf(name, sizeof(name), "many%d", i);
		struct shipc_svc_config c = {.name = name, .version = "1.0.0"};
		ss[i] = add(h, &c);
	}
	struct shipc_svc_config c = {.name = "one-more", .version = "1.0.0"};
	expect_add_fails(h, &c, ENOBUFS, "a 65th service on one connection");
	struct shipc *h2 = conn("app2");
	struct shipc_svc *other = add(h2, &c);
	ck_assert_int_eq(shipc_svc_stop(other), 0);
	/* One stopped: room for one. */
	ck_assert_int_eq(shipc_svc_stop(ss[0]), 0);
	ss[0] = add(h, &c);
	for (int i = 0; i < PER; i++)
		ck_assert_int_eq(shipc_svc_stop(ss[i]), 0);
	shipc_close(h2);
	shipc_close(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("svc-limits");
	TCase *tc = tcase_create("limits");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, reply_to_system_subject);
	tcase_add_test(tc, long_error_text_cut_as_utf8);
	tcase_add_test(tc, subject_not_utf8);
	tcase_add_test(tc, long_reply_subject);
	tcase_add_test(tc, endpoint_name_twice);
	tcase_add_test(tc, info_over_256k);
	tcase_add_test(tc, services_per_connection);
	suite_add_tcase(s, tc);
	TCase *drain = tcase_create("drain");
	tcase_add_checked_fixture(drain, setup, teardown);
	tcase_set_timeout(drain, 300);
	tcase_add_test(drain, drain_after_nats_restart);
	suite_add_tcase(s, drain);
	TCase *mem = tcase_create("memory");
	tcase_add_checked_fixture(mem, setup_small, teardown);
	tcase_set_timeout(mem, 180);
	tcase_add_test(mem, pending_charged_to_memory_limit);
	suite_add_tcase(s, mem);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
