/* SPDX-License-Identifier: MIT */
/* EventBus and Channels through shipd, against a real nats-server -js. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
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

static void teardown(void)
{
	int rc = fx_down(&nd, &sd);
	/* What this test's own nats.c connections left behind. */
	nats_CloseAndWait(2000);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

static struct shipc *conn(const char *name)
{
	struct shipc *h = NULL;
	/* The default streams are declared when NATS comes up: wait for
	 * an emit to work before the test starts. */
	h = shipc_connect(sd.sock, name);
	ck_assert_ptr_nonnull(h);
	return h;
}

static void emit_ok(struct shipc *h, const char *type, const char *payload,
                    const char *msg_id, struct shipc_emit_result *res)
{
	struct shipc_emit e = {.event_type = type, .source = "test",
	                       .payload_json = payload, .msg_id = msg_id};
	int r = -1;
	/* Right after start the stream may be a moment away. */
	for (int i = 0; i < 100 && r < 0; i++) {
		r = shipc_emit(h, &e, res);
		if (r < 0)
			fx_sleep_ms(50);
	}
	char why[256];
	ck_assert_msg(r == 0, "emit: %s", shipc_last_error(h, why, sizeof(why)));
}

/* ---- a collector of deliveries ---- */

struct got {
	pthread_mutex_t mu;
	unsigned n;
	unsigned raw;
	bool ended;
	int err;
	uint64_t last_seq;
	uint64_t last_token;
	uint64_t max_delivered;
	char last_type[64];
	char last_payload[256];
	char last_ts[64];
	char last_sender[64];
	char last_content[256];
	uint64_t sub;
	bool ack; /* ack everything at once */
	bool recredit; /* and grant one more delivery for each */
	unsigned char *seen; /* by stream seq, for the fault test */
	size_t seen_cap;
	uint64_t seqs[64]; /* the first stream seqs received, in order */
	unsigned nseqs;
};

#define GOT_INIT {.mu = PTHREAD_MUTEX_INITIALIZER}

static void on_event(struct shipc *h, const struct shipc_event *ev, int err,
                     void *arg)
{
	struct got *g = arg;
	pthread_mutex_lock(&g->mu);
	if (!ev) {
		g->ended = true;
		g->err = err;
		pthread_mutex_unlock(&g->mu);
		return;
	}
	g->n++;
	g->raw += ev->raw != 0;
	g->last_seq = ev->stream_seq;
	g->last_token = ev->token;
	if (ev->delivered > g->max_delivered)
		g->max_delivered = ev->delivered;
	if (ev->event_type)
		snprintf(g->last_type, sizeof(g->last_type), "%s", ev->event_type);
	if (ev->payload_json)
		snprintf(g->last_payload, sizeof(g->last_payload), "%s",
		         ev->payload_json);
	if (ev->timestamp)
		snprintf(g->last_ts, sizeof(g->last_ts), "%s", ev->timestamp);
	if (ev->sender)
		snprintf(g->last_sender, sizeof(g->last_sender), "%s", ev->sender);
	if (ev->content)
		snprintf(g->last_content, sizeof(g->last_content), "%s",
		         ev->content);
	if (g->seen && ev->stream_seq < g->seen_cap &&
	    g->seen[ev->stream_seq] < 255)
		g->seen[ev->stream_seq]++; /* how often */
	if (g->nseqs < sizeof(g->seqs) / sizeof(g->seqs[0]))
		g->seqs[g->nseqs++] = ev->stream_seq;
	bool ack = g->ack, recredit = g->recredit;
	uint64_t sub = g->sub;
	pthread_mutex_unlock(&g->mu);
	if (ack && ev->token)
		shipc_event_ack(h, sub, ev->token, SHIPC_ACK, 0);
	if (recredit)
		shipc_event_credit(h, sub, 1);
}

static unsigned got_n(struct got *g)
{
	pthread_mutex_lock(&g->mu);
	unsigned n = g->n;
	pthread_mutex_unlock(&g->mu);
	return n;
}

/* Dispatch h until g has n deliveries, for at most ms. */
static bool wait_n(struct shipc *h, struct got *g, unsigned n, int ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)ms;
	while (got_n(g) < n && fx_now_ms() < end)
		shipc_dispatch(h, 20);
	return got_n(g) >= n;
}

static void settle(struct shipc *h, int ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)ms;
	while (fx_now_ms() < end)
		shipc_dispatch(h, 20);
}

/* ---- envelopes ---- */

START_TEST(emit_writes_noesis_envelope)
{
	struct shipc *h = conn("emitter");
	struct shipc_emit_result r1, r2, r3;
	emit_ok(h, "item.created", "{\"id\":7,\"tags\":[\"a\"]}", "m-1", &r1);
	ck_assert_uint_gt(r1.seq, 0);
	ck_assert_int_eq(r1.duplicate, 0);
	ck_assert_str_eq(r1.msg_id, "m-1");
	/* The same id again: stored once. */
	emit_ok(h, "item.created", "{\"id\":7,\"tags\":[\"a\"]}", "m-1", &r2);
	ck_assert_int_eq(r2.duplicate, 1);
	ck_assert_uint_eq(r2.seq, r1.seq);
	/* Without an id shipd makes a fresh one per emit. */
	emit_ok(h, "item.created", NULL, NULL, &r3);
	ck_assert_uint_eq(r3.seq, r1.seq + 1);
	ck_assert_uint_ge(strlen(r3.msg_id), 16);

	/* What a noesis-ship reader finds, read directly from the stream. */
	natsConnection *nc;
	jsCtx *js;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	natsMsg *m = NULL;
	ck_assert_int_eq(js_GetMsg(&m, js, "SHIP_EVENTS", r1.seq, NULL, NULL),
	                 NATS_OK);
	ck_assert_str_eq(natsMsg_GetSubject(m), "ship.events.item.created");
	const char *mid = NULL;
	ck_assert_int_eq(natsMsgHeader_Get(m, "Nats-Msg-Id", &mid), NATS_OK);
	ck_assert_str_eq(mid, "m-1");
	json_error_t je;
	json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m),
	                       0, &je);
	ck_assert_ptr_nonnull(j);
	/* Exactly noesis-ship's fields, in its order, with its types. */
	const char *order[] = {"event_type", "timestamp", "source", "payload",
	                       "correlation_id", "version"};
	size_t i = 0;
	const char *key;
	json_t *val;
	json_object_foreach(j, key, val)
	{
		ck_assert_uint_lt(i, 6);
		ck_assert_str_eq(key, order[i]);
		i++;
	}
	ck_assert_uint_eq(i, 6);
	ck_assert_str_eq(json_string_value(json_object_get(j, "event_type")),
	                 "item.created");
	ck_assert_str_eq(json_string_value(json_object_get(j, "source")), "test");
	ck_assert_str_eq(json_string_value(json_object_get(j, "version")), "1.0");
	ck_assert_int_eq(json_integer_value(json_object_get(
		                 json_object_get(j, "payload"), "id")),
	                 7);
	regex_t re;
	ck_assert_int_eq(regcomp(&re, "^[0-9a-f]{8}$", REG_EXTENDED | REG_NOSUB), 0);
	ck_assert_int_eq(regexec(&re, json_string_value(json_object_get(
		                              j, "correlation_id")),
	                         0, NULL, 0),
	                 0);
	regfree(&re);
	ck_assert_int_eq(regcomp(&re,
	                         "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
	                         "[0-9]{2}\\.[0-9]{9}\\+00:00$",
	                         REG_EXTENDED | REG_NOSUB),
	                 0);
	ck_assert_int_eq(regexec(&re, json_string_value(json_object_get(
		                              j, "timestamp")),
	                         0, NULL, 0),
	                 0);
	regfree(&re);
	json_decref(j);
	natsMsg_Destroy(m);

	/* A null payload is written as null, not left out. */
	ck_assert_int_eq(js_GetMsg(&m, js, "SHIP_EVENTS", r3.seq, NULL, NULL),
	                 NATS_OK);
	j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0,
	               &je);
	ck_assert(json_is_null(json_object_get(j, "payload")));
	json_decref(j);
	natsMsg_Destroy(m);

	/* Bad input: a clear error, nothing stored. */
	struct shipc_emit bad = {.event_type = "a.*", .payload_json = "1"};
	ck_assert_int_eq(shipc_emit(h, &bad, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	struct shipc_emit badjson = {.event_type = "x", .payload_json = "{nope"};
	ck_assert_int_eq(shipc_emit(h, &badjson, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	jsStreamInfo *si = NULL;
	ck_assert_int_eq(js_GetStreamInfo(&si, js, "SHIP_EVENTS", NULL, NULL),
	                 NATS_OK);
	ck_assert_uint_eq(si->State.Msgs, 2);
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	shipc_close(h);
}
END_TEST

START_TEST(noesis_envelopes_decode)
{
	/* Envelopes a noesis-ship app wrote, with +00:00 and Z timestamps,
	 * and something that is not an envelope at all. */
	struct shipc *h = conn("reader");
	struct shipc_emit_result r;
	emit_ok(h, "warmup", NULL, NULL, &r); /* the stream exists now */
	natsConnection *nc;
	jsCtx *js;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	const char *msgs[] = {
		"{\"event_type\":\"deploy.started\",\"timestamp\":\"2026-03-19T12:00:"
		"00.123456789+00:00\",\"source\":\"rust\",\"payload\":{\"v\":1},"
		"\"correlation_id\":\"0a1b2c3d\",\"version\":\"1.0\"}",
		"{\"event_type\":\"deploy.done\",\"timestamp\":\"2026-03-19T12:00:01Z\","
		"\"source\":\"py\",\"payload\":null,\"correlation_id\":\"\","
		"\"version\":\"1.0\"}",
		"not json at all",
	};
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(js_Publish(NULL, js, "ship.events.deploy.x", msgs[i],
		                            (int)strlen(msgs[i]), NULL, NULL),
		                 NATS_OK);
	struct got g = GOT_INIT;
	struct shipc_event_sub s = {.pattern = "deploy.>", .auto_ack = 1};
	g.sub = shipc_event_subscribe(h, &s, on_event, &g);
	ck_assert_uint_gt(g.sub, 0);
	ck_assert(wait_n(h, &g, 3, 5000));
	ck_assert_uint_eq(g.raw, 1); /* delivered raw, with a flag: not dropped */
	ck_assert_str_eq(g.last_type, "deploy.done");
	ck_assert_str_eq(g.last_ts, "2026-03-19T12:00:01Z");
	ck_assert_str_eq(g.last_payload, "null");
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	shipc_close(h);
}
END_TEST

/* ---- consumers ---- */

START_TEST(late_durable_replays_and_resumes)
{
	struct shipc *h = conn("late");
	for (int i = 0; i < 5; i++)
		emit_ok(h, "order.placed", "1", NULL, NULL);
	struct got g = GOT_INIT;
	g.ack = true;
	struct shipc_event_sub s = {.pattern = "order.*", .durable = "billing"};
	g.sub = shipc_event_subscribe(h, &s, on_event, &g);
	ck_assert_uint_gt(g.sub, 0);
	ck_assert(wait_n(h, &g, 5, 5000));
	ck_assert_str_eq(g.last_type, "order.placed");
	/* Acked; the app leaves; more events; it comes back: only the new. */
	ck_assert_int_eq(shipc_flush(h, 5000), 0);
	ck_assert_int_eq(shipc_unsubscribe(h, g.sub), 0);
	settle(h, 200);
	for (int i = 0; i < 3; i++)
		emit_ok(h, "order.placed", "2", NULL, NULL);
	struct got g2 = GOT_INIT;
	g2.ack = true;
	g2.sub = shipc_event_subscribe(h, &s, on_event, &g2);
	ck_assert_uint_gt(g2.sub, 0);
	ck_assert(wait_n(h, &g2, 3, 5000));
	settle(h, 300);
	ck_assert_uint_eq(got_n(&g2), 3);
	ck_assert_str_eq(g2.last_payload, "2");
	shipc_close(h);
}
END_TEST

START_TEST(credit_bounds_deliveries)
{
	struct shipc *h = conn("credit");
	for (int i = 0; i < 10; i++)
		emit_ok(h, "tick", NULL, NULL, NULL);
	struct got g = GOT_INIT;
	struct shipc_event_sub s = {.pattern = "tick", .auto_ack = 1, .credit = 3};
	g.sub = shipc_event_subscribe(h, &s, on_event, &g);
	ck_assert(wait_n(h, &g, 3, 5000));
	settle(h, 500);
	ck_assert_uint_eq(got_n(&g), 3); /* no more than granted */
	ck_assert_int_eq(shipc_event_credit(h, g.sub, 7), 0);
	ck_assert(wait_n(h, &g, 10, 5000));
	settle(h, 300);
	ck_assert_uint_eq(got_n(&g), 10);
	shipc_close(h);
}
END_TEST

struct nak_state {
	uint64_t sub;
	unsigned seen;
	uint64_t max_delivered;
	enum shipc_ack first;
};

static void on_nak(struct shipc *h, const struct shipc_event *ev, int err,
                   void *arg)
{
	struct nak_state *st = arg;
	if (!ev)
		return;
	st->seen++;
	if (ev->delivered > st->max_delivered)
		st->max_delivered = ev->delivered;
	/* NAK the first delivery, ack the redelivery. */
	shipc_event_ack(h, st->sub, ev->token,
	                ev->delivered == 1 ? st->first : SHIPC_ACK, 0);
}

START_TEST(slow_app_memory_flat)
{
	/* 300 events of 32 KiB wait in the stream; an app that took 2 gets 2,
	 * and shipd holds no more than that for it. */
	struct shipc *h = conn("slowapp");
	size_t n = 32 * 1024;
	char *payload = malloc(n + 3);
	payload[0] = '"';
	memset(payload + 1, 'z', n);
	payload[n + 1] = '"';
	payload[n + 2] = '\0';
	for (int i = 0; i < 300; i++)
		emit_ok(h, "big", payload, NULL, NULL);
	free(payload);
	long before = fx_rss_kib(sd.pid);
	struct got g = GOT_INIT;
	struct shipc_event_sub s = {.pattern = "big", .credit = 2,
	                            .deliver = SHIPC_DELIVER_ALL};
	g.sub = shipc_event_subscribe(h, &s, on_event, &g);
	ck_assert(wait_n(h, &g, 2, 5000));
	settle(h, 1000);
	ck_assert_uint_eq(got_n(&g), 2);
	long after = fx_rss_kib(sd.pid);
#ifndef SHIP_SANITIZED
	/* 9 MiB wait in the stream; a few pages of that may pass by. */
	ck_assert_msg(after - before < 2048, "shipd grew %ld KiB", after - before);
#endif
	(void)before;
	(void)after;
	shipc_close(h);
}
END_TEST

START_TEST(big_credit_unread_socket_bounded)
{
	/* Much credit, big events, and an app that does not read for a
	 * while: shipd holds about a client's output limit, not all of it,
	 * and does not drop the app; once it reads, everything comes. */
	struct shipc *h = conn("sleepy");
	size_t n = 100 * 1024;
	char *payload = malloc(n + 3);
	payload[0] = '"';
	memset(payload + 1, 'q', n);
	payload[n + 1] = '"';
	payload[n + 2] = '\0';
	for (int i = 0; i < 120; i++)
		emit_ok(h, "huge", payload, NULL, NULL);
	free(payload);
	long before = fx_rss_kib(sd.pid);
	struct got g = GOT_INIT;
	struct shipc_event_sub s = {.pattern = "huge", .credit = 1000,
	                            .auto_ack = 1};
	g.sub = shipc_event_subscribe(h, &s, on_event, &g);
	ck_assert_uint_gt(g.sub, 0);
	fx_sleep_ms(1500); /* not reading */
	long after = fx_rss_kib(sd.pid);
#ifndef SHIP_SANITIZED
	ck_assert_msg(after - before < 6 * 1024, "shipd grew %ld KiB",
	              after - before);
#endif
	(void)before;
	(void)after;
	ck_assert(wait_n(h, &g, 120, 20000));
	ck_assert(!g.ended);
	ck_assert_int_eq(shipc_is_connected(h), 1);
	shipc_close(h);
}
END_TEST

START_TEST(nak_and_ack_wait_redeliver)
{
	struct shipc *h = conn("nak");
	emit_ok(h, "job.a", NULL, NULL, NULL);
	struct nak_state st = {.first = SHIPC_NAK};
	struct shipc_event_sub s = {.pattern = "job.a", .durable = "naker"};
	st.sub = shipc_event_subscribe(h, &s, on_nak, &st);
	ck_assert_uint_gt(st.sub, 0);
	/* At once, or at the latest with the next pull (5 s). */
	uint64_t end = fx_now_ms() + 12000;
	while (st.seen < 2 && fx_now_ms() < end)
		shipc_dispatch(h, 20);
	ck_assert_uint_eq(st.seen, 2);
	ck_assert_uint_eq(st.max_delivered, 2);
	shipc_unsubscribe(h, st.sub);

	/* Never acked: redelivered after the ack wait, at most max_deliver
	 * times. */
	emit_ok(h, "job.b", NULL, NULL, NULL);
	struct got g = GOT_INIT;
	struct shipc_event_sub s2 = {.pattern = "job.b", .durable = "slowpoke",
	                             .ack_wait_ms = 300, .max_deliver = 3};
	g.sub = shipc_event_subscribe(h, &s2, on_event, &g);
	ck_assert(wait_n(h, &g, 3, 5000));
	settle(h, 1500);
	ck_assert_uint_eq(got_n(&g), 3);
	ck_assert_uint_eq(g.max_delivered, 3);
	shipc_close(h);
}
END_TEST

START_TEST(bad_subscriptions)
{
	struct shipc *h = conn("bad");
	struct got g = GOT_INIT;
	struct shipc_event_sub s = {.pattern = "a", .durable = "has.dot"};
	ck_assert_uint_eq(shipc_event_subscribe(h, &s, on_event, &g), 0);
	ck_assert_int_eq(errno, EINVAL);
	uint32_t backoff[] = {100, 200};
	struct shipc_event_sub s2 = {.pattern = "a", .max_deliver = 2,
	                             .backoff_ms = backoff, .n_backoff = 2};
	ck_assert_uint_eq(shipc_event_subscribe(h, &s2, on_event, &g), 0);
	ck_assert_int_eq(errno, EINVAL);
	struct shipc_event_sub s3 = {.pattern = "a", .stream = "NO_SUCH"};
	ck_assert_uint_eq(shipc_event_subscribe(h, &s3, on_event, &g), 0);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert(!g.ended); /* never called on failure */
	shipc_close(h);
}
END_TEST

START_TEST(declare_reports_mismatch)
{
	struct shipc *h = conn("declare");
	const char *subs[] = {"robot.telemetry.>"};
	struct shipc_stream_decl d = {.name = "TELEMETRY", .subjects = subs,
	                              .n_subjects = 1, .max_age_ms = 3600000,
	                              .max_msgs = 1000};
	ck_assert_int_eq(shipc_stream_declare(h, &d), 0);
	ck_assert_int_eq(shipc_stream_declare(h, &d), 0); /* the same: fine */
	d.max_msgs = 5000;
	ck_assert_int_eq(shipc_stream_declare(h, &d), -1);
	ck_assert_int_eq(errno, EEXIST);
	char why[256];
	ck_assert_ptr_nonnull(strstr(shipc_last_error(h, why, sizeof(why)),
	                             "max_msgs is 1000, declared 5000"));
	/* Emits into a declared stream with its own prefix. */
	struct shipc_emit e = {.event_type = "cpu", .payload_json = "0.5",
	                       .stream = "TELEMETRY", .prefix = "robot.telemetry"};
	struct shipc_emit_result r;
	ck_assert_int_eq(shipc_emit(h, &e, &r), 0);
	ck_assert_uint_eq(r.seq, 1);
	struct shipc_stream_info *list;
	size_t n;
	ck_assert_int_eq(shipc_streams(h, &list, &n), 0);
	bool found = false;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i].name, "TELEMETRY")) {
			found = true;
			ck_assert_uint_eq(list[i].messages, 1);
			ck_assert_str_eq(list[i].subjects, "robot.telemetry.>");
		}
	ck_assert(found);
	shipc_streams_free(list);
	shipc_close(h);
}
END_TEST

START_TEST(config_declares_streams)
{
	/* Streams in shipd.conf are declared like the default ones. */
	shipd_cleanup(&sd);
	const char *extra[] = {"-o", "stream=TELEMETRY robot.t.>,robot.u.> "
	                             "max_msgs=10 max_age=60",
	                       NULL};
	ck_assert_int_eq(shipd_start(&sd, nd.url, extra), 0);
	/* Listing before NATS is up is UNAVAILABLE, not an empty list. */
	ck_assert(fx_wait_link(sd.sock, 10000));
	struct shipc *h = conn("conf");
	struct shipc_stream_info *list = NULL;
	size_t n = 0;
	bool found = false;
	for (int i = 0; i < 100 && !found; i++) {
		/* Just after connecting, JetStream may not answer yet: only
		 * "try again" is acceptable then. */
		if (shipc_streams(h, &list, &n) < 0) {
			ck_assert_msg(errno == EAGAIN || errno == ETIMEDOUT,
			              "streams: %s", strerror(errno));
			fx_sleep_ms(100);
			continue;
		}
		for (size_t k = 0; k < n; k++)
			if (!strcmp(list[k].name, "TELEMETRY")) {
				found = true;
				ck_assert_str_eq(list[k].subjects, "robot.t.>,robot.u.>");
				ck_assert_int_eq(list[k].max_msgs, 10);
				ck_assert_uint_eq(list[k].max_age_ms, 60000);
				ck_assert_str_eq(list[k].problem, "");
			}
		shipc_streams_free(list);
		if (!found)
			fx_sleep_ms(50);
	}
	ck_assert(found);
	shipc_close(h);
}
END_TEST

/* ---- channels ---- */

START_TEST(channels_listen_and_history)
{
	struct shipc *alice = conn("alice"), *bob = conn("bob");
	struct shipc_emit_result r;
	ck_assert_int_eq(shipc_channel_send(alice, "ops", "alice", "hello", NULL, &r) ==
	                         0 ||
	                         (fx_sleep_ms(500),
	                          shipc_channel_send(alice, "ops", "alice", "hello",
	                                             NULL, &r) == 0),
	                 1);
	struct got ga = GOT_INIT, gb = GOT_INIT;
	uint64_t la = shipc_channel_listen(alice, "ops", "alice", 1, 0, on_event, &ga);
	uint64_t lb = shipc_channel_listen(bob, "ops", "bob", 1, 0, on_event, &gb);
	ck_assert_uint_gt(la, 0);
	ck_assert_uint_gt(lb, 0);
	ck_assert(wait_n(bob, &gb, 1, 5000)); /* bob replays alice's hello */
	ck_assert_str_eq(gb.last_sender, "alice");
	ck_assert_int_eq(shipc_channel_send(bob, "ops", "bob", "hi alice",
	                                    "{\"prio\":1}", &r),
	                 0);
	ck_assert(wait_n(alice, &ga, 1, 5000));
	ck_assert_str_eq(ga.last_content, "hi alice");
	settle(alice, 300);
	settle(bob, 300);
	/* Each agent's own messages are filtered out. */
	ck_assert_uint_eq(got_n(&ga), 1);
	ck_assert_uint_eq(got_n(&gb), 1);

	/* History: the newest N, oldest first, paged backwards. */
	for (int i = 0; i < 20; i++) {
		char text[32];
		snprintf(text, sizeof(text), "m%02d", i);
		ck_assert_int_eq(shipc_channel_send(alice, "ops", "alice", text, NULL,
		                                    NULL),
		                 0);
	}
	ck_assert_int_eq(shipc_channel_send(alice, "other", "alice", "elsewhere",
	                                    NULL, NULL),
	                 0);
	struct shipc_channel_msg *list;
	size_t n;
	uint64_t more;
	ck_assert_int_eq(shipc_channel_history(bob, "ops", 5, 0, &list, &n, &more),
	                 0);
	ck_assert_uint_eq(n, 5);
	ck_assert_str_eq(list[0].content, "m15");
	ck_assert_str_eq(list[4].content, "m19");
	ck_assert_uint_gt(more, 0);
	ck_assert_uint_lt(list[0].seq, list[4].seq);
	struct shipc_channel_msg *older;
	size_t n2;
	ck_assert_int_eq(shipc_channel_history(bob, "ops", 5, more, &older, &n2,
	                                       &more),
	                 0);
	ck_assert_uint_eq(n2, 5);
	ck_assert_str_eq(older[0].content, "m10");
	ck_assert_str_eq(older[4].content, "m14");
	shipc_channel_history_free(older, n2);
	shipc_channel_history_free(list, n);
	/* The whole of it: 22 messages on ops, none from "other". */
	ck_assert_int_eq(shipc_channel_history(bob, "ops", 1000, 0, &list, &n,
	                                       &more),
	                 0);
	ck_assert_uint_eq(n, 22);
	ck_assert_uint_eq(more, 0);
	ck_assert_str_eq(list[1].metadata_json, "{\"prio\":1}");
	shipc_channel_history_free(list, n);
	ck_assert_int_eq(shipc_channel_history(bob, "o.ps", 5, 0, &list, &n, &more),
	                 -1);
	ck_assert_int_eq(errno, EINVAL);
	shipc_close(alice);
	shipc_close(bob);
}
END_TEST

/* ---- names and ids from the app ---- */

/* A name of n copies of ch. */
static char *name_of(size_t n, char ch)
{
	char *s = malloc(n + 1);
	ck_assert_ptr_nonnull(s);
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

START_TEST(long_names_refused_not_cut)
{
	/* ship.channel.<channel> holds 1,011 characters of channel: a longer
	 * one must not become its 1,011-character prefix. */
	struct shipc *h = conn("longnames");
	char *chan = name_of(1024, 'c');
	char *prefix = name_of(1011, 'c');
	struct shipc_emit_result r;
	int rc = -1;
	for (int i = 0; i < 100 && rc < 0; i++) /* CHANNELS comes up */
		if ((rc = shipc_channel_send(h, prefix, "a", "short", NULL, &r)) < 0)
			fx_sleep_ms(50);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(shipc_channel_send(h, chan, "a", "long", NULL, &r), -1);
	ck_assert_int_eq(errno, EINVAL);
	char why[256];
	ck_assert_ptr_nonnull(strstr(shipc_last_error(h, why, sizeof(why)),
	                             "1011"));
	struct shipc_channel_msg *list;
	size_t n;
	uint64_t more;
	ck_assert_int_eq(shipc_channel_history(h, chan, 10, 0, &list, &n, &more),
	                 -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shipc_channel_history(h, prefix, 10, 0, &list, &n,
	                                       &more),
	                 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0].content, "short");
	shipc_channel_history_free(list, n);
	struct got g = GOT_INIT;
	ck_assert_uint_eq(shipc_channel_listen(h, chan, "a", 1, 0, on_event, &g),
	                  0);
	ck_assert_int_eq(errno, EINVAL);
	/* <agent>_<channel> is a consumer name: at most 255 characters. */
	char *agent = name_of(200, 'a'), *mid = name_of(100, 'm');
	ck_assert_uint_eq(shipc_channel_listen(h, mid, agent, 1, 0, on_event, &g),
	                  0);
	ck_assert_int_eq(errno, EINVAL);

	/* A durable on a long stream name: the API subject it is pulled
	 * on would be cut to another consumer's. */
	char *stream = name_of(255, 'S'), *durable = name_of(255, 'd');
	struct shipc_event_sub s = {.stream = stream, .durable = durable};
	ck_assert_uint_eq(shipc_event_subscribe(h, &s, on_event, &g), 0);
	ck_assert_int_eq(errno, EINVAL);

	/* A stream whose name is cut in STREAM.INFO.<name> would be
	 * checked as another stream: here one that exists, so the
	 * declaration "succeeded" without making anything. */
	natsConnection *nc;
	jsCtx *js;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	char *longname = name_of(250, 'L');
	longname[243] = '\0';
	jsStreamConfig sc;
	jsStreamConfig_Init(&sc);
	const char *subs[] = {"cut.>"};
	sc.Name = longname;
	sc.Subjects = subs;
	sc.SubjectsLen = 1;
	sc.Storage = js_MemoryStorage;
	ck_assert_int_eq(js_AddStream(NULL, js, &sc, NULL, NULL), NATS_OK);
	longname[243] = 'L';
	struct shipc_stream_decl d = {.name = longname, .subjects = subs,
	                              .n_subjects = 1, .memory = 1};
	ck_assert_int_eq(shipc_stream_declare(h, &d), -1);
	ck_assert_int_eq(errno, EINVAL);
	jsStreamInfo *si = NULL;
	ck_assert_int_ne(js_GetStreamInfo(&si, js, longname, NULL, NULL),
	                 NATS_OK);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	free(longname);
	free(stream);
	free(durable);
	free(agent);
	free(mid);
	free(chan);
	free(prefix);
	ck_assert(!g.ended);
	shipc_close(h);
}
END_TEST

START_TEST(streams_listed_past_one_page)
{
	/* STREAM.LIST answers 256 streams a page. */
	struct shipc *h = conn("lister");
	emit_ok(h, "warmup", NULL, NULL, NULL); /* SHIP_EVENTS exists */
	natsConnection *nc;
	jsCtx *js;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	enum { N = 300 };
	for (int i = 0; i < N; i++) {
		char name[32], subject[32];
		snprintf(name, sizeof(name), "PG_%03d", i);
		snprintf(subject, sizeof(subject), "pg.%03d", i);
		const char *subs[] = {subject};
		jsStreamConfig sc;
		jsStreamConfig_Init(&sc);
		sc.Name = name;
		sc.Subjects = subs;
		sc.SubjectsLen = 1;
		sc.Storage = js_MemoryStorage;
		ck_assert_int_eq(js_AddStream(NULL, js, &sc, NULL, NULL), NATS_OK);
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	struct shipc_stream_info *list;
	size_t n;
	ck_assert_int_eq(shipc_streams(h, &list, &n), 0);
	unsigned char seen[N] = {0};
	bool events = false, channels = false;
	for (size_t i = 0; i < n; i++) {
		int k;
		if (sscanf(list[i].name, "PG_%d", &k) == 1 && k >= 0 && k < N) {
			ck_assert_msg(!seen[k], "%s listed twice", list[i].name);
			seen[k] = 1;
			ck_assert_str_eq(list[i].storage, "memory");
		}
		events |= !strcmp(list[i].name, "SHIP_EVENTS");
		channels |= !strcmp(list[i].name, "CHANNELS");
	}
	ck_assert_uint_eq(n, N + 2);
	for (int k = 0; k < N; k++)
		ck_assert_msg(seen[k], "PG_%03d is missing", k);
	ck_assert(events);
	ck_assert(channels);
	shipc_streams_free(list);
	shipc_close(h);
}
END_TEST

static uint64_t stream_msgs(const char *stream)
{
	natsConnection *nc;
	jsCtx *js;
	jsStreamInfo *si = NULL;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	ck_assert_int_eq(js_GetStreamInfo(&si, js, stream, NULL, NULL), NATS_OK);
	uint64_t n = si->State.Msgs;
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return n;
}

START_TEST(emit_to_named_stream_only)
{
	/* The stream an emit names is the stream that stores it, or the
	 * emit fails: never stored somewhere else under its name. */
	struct shipc *h = conn("named");
	struct shipc_emit_result r;
	emit_ok(h, "warmup", NULL, NULL, &r);
	uint64_t before = stream_msgs("SHIP_EVENTS");
	struct shipc_emit e = {.event_type = "x", .stream = "OTHER"};
	ck_assert_int_eq(shipc_emit(h, &e, &r), -1);
	ck_assert_int_eq(errno, EINVAL);
	char why[256];
	ck_assert_ptr_nonnull(strstr(shipc_last_error(h, why, sizeof(why)),
	                             "OTHER"));
	/* An existing stream, but not the one that stores ship.events.x. */
	const char *subs[] = {"other.>"};
	struct shipc_stream_decl d = {.name = "OTHER", .subjects = subs,
	                              .n_subjects = 1, .memory = 1};
	ck_assert_int_eq(shipc_stream_declare(h, &d), 0);
	ck_assert_int_eq(shipc_emit(h, &e, &r), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(stream_msgs("SHIP_EVENTS"), before);
	ck_assert_uint_eq(stream_msgs("OTHER"), 0);
	/* Named right, it is stored. */
	e.stream = "SHIP_EVENTS";
	ck_assert_int_eq(shipc_emit(h, &e, &r), 0);
	ck_assert_uint_eq(stream_msgs("SHIP_EVENTS"), before + 1);
	e.stream = "OTHER";
	e.prefix = "other";
	ck_assert_int_eq(shipc_emit(h, &e, &r), 0);
	ck_assert_uint_eq(r.seq, 1);
	shipc_close(h);
}
END_TEST

/* The raw protocol, for what libshipc does not send (a channel send
 * with its own msg_id): frames are a 4-byte header (framing version 1,
 * 24-bit length) and a protobuf ClientFrame, encoded here by hand. */
struct pb {
	unsigned char b[2048];
	size_t n;
};

static void pb_varint(struct pb *p, uint64_t v)
{
	do {
		ck_assert_uint_lt(p->n, sizeof(p->b));
		p->b[p->n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
}

static void pb_bytes(struct pb *p, unsigned field, const void *d, size_t n)
{
	pb_varint(p, (uint64_t)field << 3 | 2);
	pb_varint(p, n);
	ck_assert_uint_le(p->n + n, sizeof(p->b));
	memcpy(p->b + p->n, d, n);
	p->n += n;
}

static void pb_str(struct pb *p, unsigned field, const char *s)
{
	pb_bytes(p, field, s, strlen(s));
}

static uint64_t pb_read_varint(const unsigned char *m, size_t len, size_t *i)
{
	uint64_t v = 0;
	for (int sh = 0; *i < len && sh < 64; sh += 7) {
		unsigned char c = m[(*i)++];
		v |= (uint64_t)(c & 0x7f) << sh;
		if (!(c & 0x80))
			break;
	}
	return v;
}

/* The code of a ServerFrame if it answers id, else -1. */
static int pb_reply_code(const unsigned char *m, size_t len, uint64_t id)
{
	uint64_t got_id = 0, code = 0;
	for (size_t i = 0; i < len;) {
		uint64_t key = pb_read_varint(m, len, &i);
		uint64_t v = pb_read_varint(m, len, &i);
		if ((key & 7) == 2)
			i += v; /* a length-delimited field: skipped */
		else if ((key & 7) != 0)
			break; /* no fixed-size fields at the top */
		else if (key >> 3 == 1)
			got_id = v;
		else if (key >> 3 == 2)
			code = v;
	}
	return got_id == id ? (int)code : -1;
}

/* Send ClientFrame{id, <field>: body} and return the code of its reply. */
static int raw_call(int fd, uint64_t id, unsigned field, const struct pb *body)
{
	struct pb f = {.n = 0};
	pb_varint(&f, 1 << 3);
	pb_varint(&f, id);
	pb_bytes(&f, field, body->b, body->n);
	unsigned char hdr[4] = {1, (unsigned char)(f.n >> 16),
	                        (unsigned char)(f.n >> 8), (unsigned char)f.n};
	ck_assert_int_eq(send(fd, hdr, 4, MSG_NOSIGNAL), 4);
	ck_assert_int_eq(send(fd, f.b, f.n, MSG_NOSIGNAL), (ssize_t)f.n);
	for (;;) {
		ck_assert_int_eq(recv(fd, hdr, 4, MSG_WAITALL), 4);
		size_t len = (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
		unsigned char *m = malloc(len ? len : 1);
		ck_assert_int_eq(recv(fd, m, len, MSG_WAITALL), (ssize_t)len);
		int code = pb_reply_code(m, len, id);
		free(m);
		if (code >= 0)
			return code;
	}
}

static int raw_connect_hello(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", sd.sock);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct pb hello = {.n = 0};
	pb_varint(&hello, 1 << 3); /* version */
	pb_varint(&hello, 1);
	pb_str(&hello, 2, "raw");
	ck_assert_int_eq(raw_call(fd, 1, 2, &hello), 0);
	return fd;
}

/* ChannelSend (ClientFrame field 46) with an explicit msg_id. */
static int raw_channel_send(int fd, uint64_t id, const char *msg_id)
{
	struct pb cs = {.n = 0};
	pb_str(&cs, 1, "ids");
	pb_str(&cs, 2, "hello");
	pb_str(&cs, 3, "raw");
	pb_str(&cs, 5, msg_id);
	return raw_call(fd, id, 46, &cs);
}

START_TEST(msg_ids_are_printable)
{
	/* nats.c would rewrite CR/LF in a header: the stored id would not
	 * be the app's, and a retry would be stored twice. */
	struct shipc *h = conn("ids");
	emit_ok(h, "warmup", NULL, NULL, NULL);
	char *longest = name_of(127, 'i'), *over = name_of(128, 'i');
	const char *bad[] = {"a\r\nb", "a\nb", "tab\there", "has space",
	                     "del\x7f", over};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct shipc_emit e = {.event_type = "id.bad", .msg_id = bad[i]};
		ck_assert_int_eq(shipc_emit(h, &e, NULL), -1);
		ck_assert_int_eq(errno, EINVAL);
	}
	struct shipc_emit_result r;
	struct shipc_emit e = {.event_type = "id.ok", .msg_id = longest};
	ck_assert_int_eq(shipc_emit(h, &e, &r), 0);
	ck_assert_str_eq(r.msg_id, longest);
	ck_assert_uint_eq(stream_msgs("SHIP_EVENTS"), 2);

	int fd = raw_connect_hello();
	int code = -1;
	for (uint64_t id = 2; id < 100 && code != 0; id++) /* CHANNELS is up */
		if ((code = raw_channel_send(fd, id, "ch-ok-1")) != 0)
			fx_sleep_ms(50);
	ck_assert_int_eq(code, 0);
	ck_assert_int_eq(raw_channel_send(fd, 100, "x\r\ny"),
	                 1 /* INVALID_ARGUMENT */);
	ck_assert_int_eq(raw_channel_send(fd, 101, "x y"), 1);
	close(fd);
	ck_assert_uint_eq(stream_msgs("CHANNELS"), 1);
	free(longest);
	free(over);
	shipc_close(h);
}
END_TEST

START_TEST(numbers_out_of_range_refused)
{
	struct shipc *h = conn("ranges");
	emit_ok(h, "warmup", NULL, NULL, NULL);
	/* max_age_ms in ns must fit an int64: neither wrapped to a
	 * negative nor to a tiny age (18446744073710 ms is 448384 ns
	 * once wrapped). */
	const char *subs[] = {"age.>"};
	uint64_t ages[] = {UINT64_MAX, 18446744073710ull,
	                   INT64_MAX / 1000000 + 1};
	for (size_t i = 0; i < 3; i++) {
		struct shipc_stream_decl d = {.name = "AGE", .subjects = subs,
		                              .n_subjects = 1, .memory = 1,
		                              .max_age_ms = ages[i]};
		ck_assert_int_eq(shipc_stream_declare(h, &d), -1);
		ck_assert_int_eq(errno, EINVAL);
		char why[256];
		ck_assert_ptr_nonnull(strstr(shipc_last_error(h, why, sizeof(why)),
		                             "max_age_ms"));
	}
	struct shipc_stream_info *list;
	size_t n;
	ck_assert_int_eq(shipc_streams(h, &list, &n), 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_str_ne(list[i].name, "AGE");
	shipc_streams_free(list);

	/* A start time no RFC 3339 date can say (years past 9999). */
	struct got g = GOT_INIT;
	uint64_t times[] = {UINT64_MAX, 253402300800000ull};
	for (size_t i = 0; i < 2; i++) {
		struct shipc_event_sub s = {.pattern = "t",
		                            .deliver = SHIPC_DELIVER_BY_TIME,
		                            .start_time_ms = times[i]};
		ck_assert_uint_eq(shipc_event_subscribe(h, &s, on_event, &g), 0);
		ck_assert_int_eq(errno, EINVAL);
		char why[256];
		ck_assert_ptr_nonnull(strstr(shipc_last_error(h, why, sizeof(why)),
		                             "start_time_ms"));
	}
	/* The last millisecond of 9999 is a time. */
	struct shipc_event_sub s = {.pattern = "t", .auto_ack = 1,
	                            .deliver = SHIPC_DELIVER_BY_TIME,
	                            .start_time_ms = 253402300799999ull};
	g.sub = shipc_event_subscribe(h, &s, on_event, &g);
	ck_assert_uint_gt(g.sub, 0);
	ck_assert_int_eq(shipc_unsubscribe(h, g.sub), 0);
	shipc_close(h);
}
END_TEST

START_TEST(envelope_json_always_valid)
{
	/* What shipd quotes itself is JSON a reader can load, whatever the
	 * bytes: escaped controls, valid UTF-8 as it is, and anything else
	 * refused or replaced (not copied into the JSON). */
	struct shipc *h = conn("utf8");
	emit_ok(h, "warmup", NULL, NULL, NULL);
	const char *types[] = {"ok\xe2\x82\xac", "ctl", "bad\xff",
	                       "trunc\xe2\x82", "over\xc0\xaf",
	                       "surr\xed\xa0\x80", "big\xf4\x90\x80\x80"};
	const char *sources[] = {"\xf0\x9f\x98\x80", "\x01\x1f\x7f\"\\",
	                         "\xfe", "\xf0\x9f\x98", "x\xe2\x82\xac",
	                         "\xc3", "\xe0\x80\x80"};
	natsConnection *nc;
	jsCtx *js;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct shipc_emit e = {.event_type = types[i],
		                       .source = sources[i]};
		struct shipc_emit_result r;
		if (shipc_emit(h, &e, &r) < 0) {
			/* Refused before it got here: only invalid UTF-8. */
			ck_assert_uint_ge(i, 2);
			continue;
		}
		natsMsg *m = NULL;
		ck_assert_int_eq(js_GetMsg(&m, js, "SHIP_EVENTS", r.seq, NULL, NULL),
		                 NATS_OK);
		json_error_t je;
		json_t *j = json_loadb(natsMsg_GetData(m),
		                       (size_t)natsMsg_GetDataLength(m), 0, &je);
		ck_assert_msg(j != NULL, "emit %zu stored bad JSON: %s", i, je.text);
		if (i < 2) {
			ck_assert_str_eq(json_string_value(json_object_get(
				                 j, "event_type")),
			                 types[i]);
			ck_assert_str_eq(json_string_value(json_object_get(j, "source")),
			                 sources[i]);
		}
		json_decref(j);
		natsMsg_Destroy(m);
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	shipc_close(h);
}
END_TEST

/* ---- faults ---- */

#define FAULT_N 10000
#define WINDOW 256

struct fault {
	unsigned acked;
	unsigned failed;
	unsigned char *ok; /* per emit index */
	unsigned inflight;
};

struct fault_one {
	struct fault *f;
	unsigned i;
};

static void on_fault_emit(struct shipc *h, const struct shipc_emit_result *r,
                          int err, void *arg)
{
	struct fault_one *o = arg;
	o->f->inflight--;
	if (r) {
		o->f->ok[o->i] = 1;
		o->f->acked++;
	} else {
		o->f->failed++;
	}
	free(o);
}

static unsigned fault_pass(struct shipc *h, struct fault *f, uint64_t end,
                           bool kill_nats)
{
	unsigned sent = 0;
	for (unsigned i = 0; i < FAULT_N && fx_now_ms() < end; i++) {
		if (kill_nats && i == FAULT_N / 3) {
			/* NATS dies in the middle, with emits in flight. */
			kill(nd.pid, SIGKILL);
		}
		if (kill_nats && i == FAULT_N / 2)
			ck_assert_int_eq(natsd_restart(&nd), 0);
		if (f->ok[i])
			continue;
		while (f->inflight >= WINDOW && fx_now_ms() < end)
			shipc_dispatch(h, 10);
		char id[32], payload[32];
		snprintf(id, sizeof(id), "fault-%u", i);
		snprintf(payload, sizeof(payload), "%u", i);
		struct shipc_emit e = {.event_type = "fault.e", .payload_json = payload,
		                       .msg_id = id};
		struct fault_one *o = malloc(sizeof(*o));
		o->f = f;
		o->i = i;
		if (shipc_emit_async(h, &e, on_fault_emit, o) < 0) {
			free(o);
			shipc_dispatch(h, 10);
			continue;
		}
		f->inflight++;
		sent++;
	}
	while (f->inflight && fx_now_ms() < end)
		shipc_dispatch(h, 10);
	return sent;
}

START_TEST(emits_survive_nats_restart)
{
	struct shipc *h = conn("fault");
	emit_ok(h, "warmup", NULL, NULL, NULL);
	struct fault f = {.ok = calloc(FAULT_N, 1)};
	uint64_t end = fx_now_ms() + 90000;
	/* First pass: NATS goes away in the middle and comes back. */
	fault_pass(h, &f, end, true);
	/* The app retries what was not acknowledged, with the same ids. */
	for (int pass = 0; pass < 50 && f.acked < FAULT_N && fx_now_ms() < end;
	     pass++) {
		fault_pass(h, &f, end, false);
		if (f.acked < FAULT_N)
			fx_sleep_ms(200);
	}
	ck_assert_uint_eq(f.acked, FAULT_N);
	ck_assert_uint_gt(f.failed, 0); /* the outage was seen */

	/* Exactly once in the stream... */
	natsConnection *nc;
	jsCtx *js;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	jsStreamInfo *si = NULL;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Stream.Info.SubjectsFilter = "ship.events.fault.>";
	ck_assert_int_eq(js_GetStreamInfo(&si, js, "SHIP_EVENTS", &jo, NULL), NATS_OK);
	ck_assert_uint_eq(si->State.Subjects->List[0].Msgs, FAULT_N);
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);

	/* ...and a durable subscriber receives every one at least once. */
	struct got g = GOT_INIT;
	g.ack = true;
	g.seen_cap = 2 * FAULT_N + 16;
	g.seen = calloc(g.seen_cap, 1);
	struct shipc_event_sub s = {.pattern = "fault.e", .durable = "auditor",
	                            .credit = 1000};
	g.sub = shipc_event_subscribe(h, &s, on_event, &g);
	ck_assert_uint_gt(g.sub, 0);
	uint64_t t = fx_now_ms() + 30000;
	while (got_n(&g) < FAULT_N && fx_now_ms() < t) {
		shipc_dispatch(h, 20);
		/* Keep the credit topped up as deliveries are handled. */
		static unsigned granted = 1000;
		if (got_n(&g) + 500 > granted) {
			shipc_event_credit(h, g.sub, 1000);
			granted += 1000;
		}
	}
	ck_assert_uint_ge(got_n(&g), FAULT_N);
	free(g.seen);
	free(f.ok);
	shipc_close(h);
}
END_TEST

START_TEST(subscription_survives_nats_restart)
{
	struct shipc *h = conn("survivor");
	emit_ok(h, "s.x", "1", NULL, NULL);
	struct got g = GOT_INIT;
	g.ack = true;
	struct shipc_event_sub s = {.pattern = "s.x", .durable = "survivor",
	                            .credit = 100};
	g.sub = shipc_event_subscribe(h, &s, on_event, &g);
	ck_assert(wait_n(h, &g, 1, 5000));
	natsd_stop(&nd);
	settle(h, 500);
	ck_assert_int_eq(natsd_restart(&nd), 0);
	/* Same subscription, nothing done by the app: new events arrive. */
	emit_ok(h, "s.x", "2", NULL, NULL);
	emit_ok(h, "s.x", "3", NULL, NULL);
	ck_assert(wait_n(h, &g, 3, 15000));
	ck_assert_str_eq(g.last_payload, "3");
	ck_assert(!g.ended);
	shipc_close(h);
}
END_TEST

START_TEST(durable_resumes_after_shipd_killed)
{
	struct shipc *h = conn("producer");
	for (int i = 0; i < 50; i++) {
		char p[16];
		snprintf(p, sizeof(p), "%d", i);
		emit_ok(h, "work.item", p, NULL, NULL);
	}
	shipc_close(h);
	struct shipc *c = conn("consumer");
	struct got g = GOT_INIT;
	g.ack = true;
	struct shipc_event_sub s = {.pattern = "work.item", .durable = "worker",
	                            .credit = 20};
	g.sub = shipc_event_subscribe(c, &s, on_event, &g);
	ck_assert(wait_n(c, &g, 20, 5000));
	ck_assert_int_eq(shipc_flush(c, 5000), 0); /* acks handed to shipd */
	settle(c, 300); /* and to NATS */
	shipd_kill(&sd);
	ck_assert_int_eq(shipd_restart(&sd, nd.url, NULL), 0);
	/* libshipc reconnects and opens the durable again: the rest come,
	 * nothing acknowledged comes twice, nothing is lost. */
	uint64_t end = fx_now_ms() + 20000;
	while (got_n(&g) < 50 && fx_now_ms() < end) {
		shipc_dispatch(c, 50);
		shipc_event_credit(c, g.sub, 10);
	}
	ck_assert_uint_ge(got_n(&g), 50);
	ck_assert_str_eq(g.last_payload, "49");
	shipc_close(c);
}
END_TEST

/* ---- durables: resume, settings, sharing, a stream made again ---- */

static uint64_t sub_ok(struct shipc *h, const struct shipc_event_sub *s,
                       int flags, struct got *g)
{
	char why[512];
	g->sub = shipc_event_subscribe_flags(h, s, flags, on_event, g);
	ck_assert_msg(g->sub != 0, "subscribe %s: %s", s->durable ? s->durable : "",
	              shipc_last_error(h, why, sizeof(why)));
	return g->sub;
}

/* A subscribe that must fail: its errno, the message in why. */
static int sub_err(struct shipc *h, const struct shipc_event_sub *s, int flags,
                   struct got *g, char *why, size_t size)
{
	g->sub = shipc_event_subscribe_flags(h, s, flags, on_event, g);
	int err = errno;
	ck_assert_msg(g->sub == 0, "subscribe %s was accepted",
	              s->durable ? s->durable : "");
	shipc_last_error(h, why, size);
	return err;
}

/* Acks handed to shipd and on to NATS, then the subscription ended. */
static void sub_end(struct shipc *h, struct got *g)
{
	ck_assert_int_eq(shipc_flush(h, 5000), 0);
	settle(h, 200);
	ck_assert_int_eq(shipc_unsubscribe(h, g->sub), 0);
	settle(h, 100);
}

/* g received exactly the n seqs of want, each once (waiting for them,
 * then a little longer for anything more). The order is not checked: a
 * message NAKed by a pull that outlived its subscription comes back
 * after the ones behind it. */
static void got_exactly(struct shipc *h, struct got *g, const uint64_t *want,
                        unsigned n, const char *what)
{
	wait_n(h, g, n, 5000);
	settle(h, 300);
	pthread_mutex_lock(&g->mu);
	unsigned got = g->n;
	char list[256] = "";
	for (unsigned i = 0, used = 0; i < g->nseqs && used < sizeof(list); i++)
		used += (unsigned)snprintf(list + used, sizeof(list) - used, " %llu",
		                           (unsigned long long)g->seqs[i]);
	ck_assert_msg(got == n, "%s: received %u events (%s), expected %u",
	              what, got, list, n);
	for (unsigned i = 0; i < n; i++) {
		bool found = false;
		for (unsigned j = 0; j < g->nseqs; j++)
			found |= g->seqs[j] == want[i];
		ck_assert_msg(found, "%s: seq %llu not received (got%s)", what,
		              (unsigned long long)want[i], list);
	}
	pthread_mutex_unlock(&g->mu);
}

static uint64_t emit_seq(struct shipc *h, const char *type)
{
	struct shipc_emit_result r;
	emit_ok(h, type, "1", NULL, &r);
	return r.seq;
}

/* Created with each start option, then resumed by its name alone, with
 * the same options again, and with another start: always from where it
 * was, never refused. */
START_TEST(durable_resumes_by_name)
{
	struct shipc *h = conn("resume");
	static const struct {
		const char *name;
		enum shipc_deliver deliver;
	} v[] = {
		{"all", SHIPC_DELIVER_ALL},
		{"new", SHIPC_DELIVER_NEW},
		{"seq", SHIPC_DELIVER_BY_SEQ},
		{"time", SHIPC_DELIVER_BY_TIME},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char type[32], dur[32];
		snprintf(type, sizeof(type), "rs.%s", v[i].name);
		snprintf(dur, sizeof(dur), "rs_%s", v[i].name);
		uint64_t a[3];
		a[0] = emit_seq(h, type);
		a[1] = emit_seq(h, type);
		fx_sleep_ms(30);
		struct timeval tv; /* between a[1] and a[2]: by time */
		gettimeofday(&tv, NULL);
		uint64_t mark = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
		fx_sleep_ms(30);
		a[2] = emit_seq(h, type);
		struct shipc_event_sub s = {.pattern = type, .durable = dur,
		                            .deliver = v[i].deliver,
		                            .start_seq = a[1],
		                            .start_time_ms = mark, .credit = 100};
		/* What the start option gives when the durable is made. */
		struct got g1 = GOT_INIT;
		g1.ack = true;
		sub_ok(h, &s, 0, &g1);
		switch (v[i].deliver) {
		case SHIPC_DELIVER_ALL:
			got_exactly(h, &g1, a, 3, type);
			break;
		case SHIPC_DELIVER_NEW:
			got_exactly(h, &g1, NULL, 0, type);
			break;
		case SHIPC_DELIVER_BY_SEQ:
			got_exactly(h, &g1, a + 1, 2, type);
			break;
		default:
			got_exactly(h, &g1, a + 2, 1, type);
			break;
		}
		sub_end(h, &g1);

		/* Its name alone: where it was. */
		uint64_t b[2] = {emit_seq(h, type), emit_seq(h, type)};
		struct shipc_event_sub byname = {.pattern = type, .durable = dur,
		                                 .credit = 100};
		struct got g2 = GOT_INIT;
		g2.ack = true;
		sub_ok(h, &byname, 0, &g2);
		got_exactly(h, &g2, b, 2, "by name");
		sub_end(h, &g2);

		/* The same options again. */
		uint64_t c = emit_seq(h, type);
		struct got g3 = GOT_INIT;
		g3.ack = true;
		sub_ok(h, &s, 0, &g3);
		got_exactly(h, &g3, &c, 1, "same options");
		sub_end(h, &g3);

		/* Another start (shipctl's default, new): where it was. */
		uint64_t d = emit_seq(h, type);
		struct shipc_event_sub other = byname;
		other.deliver = SHIPC_DELIVER_NEW;
		struct got g4 = GOT_INIT;
		g4.ack = true;
		sub_ok(h, &other, 0, &g4);
		got_exactly(h, &g4, &d, 1, "another start");
		sub_end(h, &g4);
	}
	shipc_close(h);
}
END_TEST

static jsConsumerInfo *consumer_info(const char *stream, const char *name)
{
	natsConnection *nc;
	jsCtx *js;
	jsConsumerInfo *ci = NULL;
	jsErrCode jerr = 0;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	ck_assert_int_eq(js_GetConsumerInfo(&ci, js, stream, name, NULL, &jerr),
	                 NATS_OK);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return ci;
}

#define MS_NS 1000000LL

START_TEST(durable_settings_conflict_unless_update)
{
	struct shipc *h = conn("settings");
	emit_ok(h, "other", NULL, NULL, NULL); /* the stream is there */
	struct shipc_event_sub s = {.pattern = "cf.a.>", .durable = "cfl",
	                            .credit = 10};
	struct got g = GOT_INIT;
	sub_ok(h, &s, 0, &g);
	sub_end(h, &g);
	char why[512];

	/* Each setting that differs, refused with both values. */
	struct shipc_event_sub w = s;
	w.ack_wait_ms = 5000;
	ck_assert_int_eq(sub_err(h, &w, 0, &g, why, sizeof(why)), EBUSY);
	ck_assert_msg(strstr(why, "ack_wait 30000 ms (asked 5000 ms)") &&
	                      strstr(why, "cfl") && strstr(why, "update"),
	              "%s", why);
	w = s;
	w.pattern = "cf.>";
	ck_assert_int_eq(sub_err(h, &w, 0, &g, why, sizeof(why)), EBUSY);
	ck_assert_msg(strstr(why, "filter 'ship.events.cf.a.>' (asked "
	                          "'ship.events.cf.>')"),
	              "%s", why);
	w = s;
	w.max_deliver = 5;
	ck_assert_int_eq(sub_err(h, &w, 0, &g, why, sizeof(why)), EBUSY);
	ck_assert_msg(strstr(why, "max_deliver unlimited (asked 5)"), "%s", why);
	static const uint32_t bo[] = {1000, 2000};
	w = s;
	w.max_deliver = 5;
	w.backoff_ms = bo;
	w.n_backoff = 2;
	ck_assert_int_eq(sub_err(h, &w, 0, &g, why, sizeof(why)), EBUSY);
	ck_assert_msg(strstr(why, "backoff none (asked [1000,2000] ms)") &&
	                      strstr(why, "max_deliver"),
	              "%s", why);
	/* Several at once: each named. */
	w = s;
	w.pattern = "cf.>";
	w.ack_wait_ms = 5000;
	ck_assert_int_eq(sub_err(h, &w, 0, &g, why, sizeof(why)), EBUSY);
	ck_assert_msg(strstr(why, "ack_wait") && strstr(why, "filter"), "%s", why);

	/* Nothing changed on the server. */
	jsConsumerInfo *ci = consumer_info("SHIP_EVENTS", "cfl");
	ck_assert_int_eq(ci->Config->AckWait, 30000 * MS_NS);
	ck_assert_str_eq(ci->Config->FilterSubject, "ship.events.cf.a.>");
	ck_assert_int_eq(ci->Config->MaxDeliver, -1);
	ck_assert_int_eq(ci->Config->BackOffLen, 0);
	jsConsumerInfo_Destroy(ci);

	/* Asked to update: applied. */
	w = s;
	w.pattern = "cf.>";
	w.ack_wait_ms = 5000;
	w.max_deliver = 5;
	sub_ok(h, &w, SHIPC_EVENT_UPDATE, &g);
	sub_end(h, &g);
	ci = consumer_info("SHIP_EVENTS", "cfl");
	ck_assert_int_eq(ci->Config->AckWait, 5000 * MS_NS);
	ck_assert_str_eq(ci->Config->FilterSubject, "ship.events.cf.>");
	ck_assert_int_eq(ci->Config->MaxDeliver, 5);
	jsConsumerInfo_Destroy(ci);
	w.backoff_ms = bo;
	w.n_backoff = 2;
	sub_ok(h, &w, SHIPC_EVENT_UPDATE, &g);
	sub_end(h, &g);
	ci = consumer_info("SHIP_EVENTS", "cfl");
	ck_assert_int_eq(ci->Config->BackOffLen, 2);
	ck_assert_int_eq(ci->Config->BackOff[1], 2000 * MS_NS);
	jsConsumerInfo_Destroy(ci);
	/* Now these are its settings: the same again is no conflict. */
	sub_ok(h, &w, 0, &g);
	sub_end(h, &g);
	/* JetStream 2.9.10 delivers nothing more once a subject filter is
	 * updated to a wildcard: refused even with update. */
	struct shipc_event_sub lit = {.pattern = "cf.lit", .durable = "lit",
	                              .credit = 10};
	sub_ok(h, &lit, 0, &g);
	sub_end(h, &g);
	lit.pattern = "cf.*";
	ck_assert_int_eq(sub_err(h, &lit, SHIPC_EVENT_UPDATE, &g, why,
	                         sizeof(why)),
	                 EBUSY);
	ck_assert_msg(strstr(why, "filter 'ship.events.cf.lit'") &&
	                      strstr(why, "cannot be changed"),
	              "%s", why);
	/* And the update kept its position: what came since is there. */
	uint64_t seq = emit_seq(h, "cf.b");
	struct got g2 = GOT_INIT;
	g2.ack = true;
	sub_ok(h, &w, 0, &g2);
	got_exactly(h, &g2, &seq, 1, "after update");
	sub_end(h, &g2);
	shipc_close(h);
}
END_TEST

START_TEST(durable_one_app_unless_shared)
{
	struct shipc *a = conn("app-a"), *b = conn("app-b"), *p = conn("producer");
	emit_ok(p, "other", NULL, NULL, NULL); /* the stream is there */
	struct shipc_event_sub s = {.pattern = "two.>", .durable = "two",
	                            .credit = 1};
	struct got ga = GOT_INIT, gb = GOT_INIT;
	char why[512];
	sub_ok(a, &s, 0, &ga);
	/* A second app on it: refused, the first one unharmed. */
	ck_assert_int_eq(sub_err(b, &s, 0, &gb, why, sizeof(why)), EBUSY);
	ck_assert_msg(strstr(why, "in use") && strstr(why, "shared"), "%s", why);
	/* Only one of the two asking to share is not enough. */
	ck_assert_int_eq(sub_err(b, &s, SHIPC_EVENT_SHARED, &gb, why, sizeof(why)),
	                 EBUSY);
	ck_assert_int_eq(shipc_unsubscribe(a, ga.sub), 0);
	settle(a, 100);

	/* Both shared: each message to one of them, all of them once. */
	enum { N = 30 };
	unsigned char sa[N + 64] = {0}, sb[N + 64] = {0};
	ga = (struct got)GOT_INIT;
	gb = (struct got)GOT_INIT;
	ga.ack = gb.ack = ga.recredit = gb.recredit = true;
	ga.seen = sa;
	gb.seen = sb;
	ga.seen_cap = gb.seen_cap = sizeof(sa);
	sub_ok(a, &s, SHIPC_EVENT_SHARED, &ga);
	sub_ok(b, &s, SHIPC_EVENT_SHARED, &gb);
	settle(a, 100);
	settle(b, 100);
	uint64_t first = 0;
	for (int i = 0; i < N; i++) {
		uint64_t seq = emit_seq(p, "two.x");
		if (!first)
			first = seq;
		shipc_dispatch(a, 5);
		shipc_dispatch(b, 5);
	}
	uint64_t end = fx_now_ms() + 10000;
	while (got_n(&ga) + got_n(&gb) < N && fx_now_ms() < end) {
		shipc_dispatch(a, 10);
		shipc_dispatch(b, 10);
	}
	settle(a, 200);
	settle(b, 200);
	ck_assert_uint_gt(got_n(&ga), 0);
	ck_assert_uint_gt(got_n(&gb), 0);
	ck_assert_uint_eq(got_n(&ga) + got_n(&gb), N);
	for (uint64_t q = first; q < first + N; q++)
		ck_assert_msg(sa[q] + sb[q] == 1, "seq %llu received %d times",
		              (unsigned long long)q, sa[q] + sb[q]);
	/* A third that does not share: refused while they live. */
	struct got gc = GOT_INIT;
	ck_assert_int_eq(sub_err(p, &s, 0, &gc, why, sizeof(why)), EBUSY);

	/* Both end (one app gone, one unsubscribed): it is free again. */
	shipc_close(a);
	sub_end(b, &gb);
	sub_ok(p, &s, 0, &gc);
	sub_end(p, &gc);

	/* A channel listener is one agent's too. */
	struct got l1 = GOT_INIT, l2 = GOT_INIT;
	uint64_t id1 = shipc_channel_listen(b, "ops", "carol", 0, 0, on_event, &l1);
	ck_assert_uint_gt(id1, 0);
	ck_assert_uint_eq(shipc_channel_listen(p, "ops", "carol", 0, 0, on_event,
	                                       &l2),
	                  0);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_ptr_nonnull(strstr(shipc_last_error(p, why, sizeof(why)),
	                             "carol_ops"));
	ck_assert_int_eq(shipc_unsubscribe(b, id1), 0);
	settle(b, 100);
	/* Resumed (replay or not, it exists) once the first one left. */
	uint64_t id2 = shipc_channel_listen(p, "ops", "carol", 1, 0, on_event, &l2);
	ck_assert_uint_gt(id2, 0);
	struct shipc_emit_result r;
	ck_assert_int_eq(shipc_channel_send(b, "ops", "dave", "hi", NULL, &r), 0);
	ck_assert(wait_n(p, &l2, 1, 5000));
	ck_assert_str_eq(l2.last_content, "hi");
	shipc_close(b);
	shipc_close(p);
}
END_TEST

/* An app's stream deleted and declared again under a running durable. */
START_TEST(durable_survives_stream_recreated)
{
	struct shipc *h = conn("recreated");
	const char *subs[] = {"recr.>"};
	struct shipc_stream_decl d = {.name = "RECR", .subjects = subs,
	                              .n_subjects = 1};
	ck_assert_int_eq(shipc_stream_declare(h, &d), 0);
	struct shipc_emit e = {.event_type = "x", .payload_json = "1",
	                       .stream = "RECR", .prefix = "recr"};
	struct shipc_emit_result r;
	ck_assert_int_eq(shipc_emit(h, &e, &r), 0);
	ck_assert_int_eq(shipc_emit(h, &e, &r), 0);
	struct got g = GOT_INIT;
	g.ack = true;
	struct shipc_event_sub s = {.durable = "rd", .stream = "RECR",
	                            .prefix = "recr", .credit = 100};
	sub_ok(h, &s, 0, &g);
	ck_assert(wait_n(h, &g, 2, 5000));

	natsConnection *nc;
	jsCtx *js;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	ck_assert_int_eq(js_DeleteStream(js, "RECR", NULL, NULL), NATS_OK);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	settle(h, 1500); /* gone a while: the subscription waits */
	ck_assert(!g.ended);
	ck_assert_int_eq(shipc_stream_declare(h, &d), 0);
	e.payload_json = "2";
	ck_assert_int_eq(shipc_emit(h, &e, &r), 0);
	ck_assert_uint_eq(r.seq, 1); /* a new stream */
	e.payload_json = "3";
	ck_assert_int_eq(shipc_emit(h, &e, &r), 0);
	ck_assert_msg(wait_n(h, &g, 4, 10000), "received %u of 4, ended %d (%d)",
	              got_n(&g), g.ended, g.err);
	settle(h, 300);
	ck_assert_uint_eq(got_n(&g), 4);
	ck_assert_str_eq(g.last_payload, "3");
	ck_assert_uint_eq(g.seqs[2], 1);
	ck_assert_uint_eq(g.seqs[3], 2);
	ck_assert(!g.ended);
	shipc_close(h);
}
END_TEST

/* A durable deleted on the server while its subscription has no pull out
 * (no credit): pulls to it later go unanswered, and shipd looks it up and
 * makes it again instead of pulling into the void for ever. */
START_TEST(durable_deleted_while_idle_is_made_again)
{
	struct shipc *h = conn("idle");
	const char *subs[] = {"idle.>"};
	struct shipc_stream_decl d = {.name = "IDLE", .subjects = subs,
	                              .n_subjects = 1};
	ck_assert_int_eq(shipc_stream_declare(h, &d), 0);
	struct shipc_emit e = {.event_type = "x", .payload_json = "1",
	                       .stream = "IDLE", .prefix = "idle"};
	ck_assert_int_eq(shipc_emit(h, &e, NULL), 0);
	struct got g = GOT_INIT;
	g.ack = true;
	struct shipc_event_sub s = {.durable = "idler", .stream = "IDLE",
	                            .prefix = "idle", .credit = 1};
	uint64_t sid = sub_ok(h, &s, 0, &g);
	ck_assert(wait_n(h, &g, 1, 5000));
	settle(h, 300); /* its ack is in */

	natsConnection *nc;
	jsCtx *js;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	ck_assert_int_eq(js_DeleteConsumer(js, "IDLE", "idler", NULL, NULL),
	                 NATS_OK);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	e.payload_json = "2";
	ck_assert_int_eq(shipc_emit(h, &e, NULL), 0);
	ck_assert_int_eq(shipc_event_credit(h, sid, 10), 0);
	/* A pull goes unanswered for 7 s (5 s expiry and 2 s more). */
	ck_assert_msg(wait_n(h, &g, 2, 20000), "received %u of 2, ended %d (%d)",
	              got_n(&g), g.ended, g.err);
	ck_assert_str_eq(g.last_payload, "2");
	ck_assert(!g.ended);
	shipc_close(h);
}
END_TEST

/* NATS back with an empty store: shipd declares SHIP_EVENTS again and a
 * running durable goes on in it. */
START_TEST(durable_survives_nats_store_lost)
{
	struct shipc *h = conn("store-lost");
	emit_ok(h, "lost.x", "1", NULL, NULL);
	struct got g = GOT_INIT;
	g.ack = true;
	struct shipc_event_sub s = {.pattern = "lost.x", .durable = "lost",
	                            .credit = 100};
	sub_ok(h, &s, 0, &g);
	ck_assert(wait_n(h, &g, 1, 5000));
	natsd_stop(&nd);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s/js'", nd.dir);
	ck_assert_int_eq(system(cmd), 0);
	settle(h, 500);
	ck_assert_int_eq(natsd_restart(&nd), 0);
	emit_ok(h, "lost.x", "2", NULL, NULL);
	emit_ok(h, "lost.x", "3", NULL, NULL);
	ck_assert_msg(wait_n(h, &g, 3, 15000), "received %u of 3, ended %d (%d)",
	              got_n(&g), g.ended, g.err);
	ck_assert_str_eq(g.last_payload, "3");
	ck_assert(!g.ended);
	shipc_close(h);
}
END_TEST

/* ---- pulls reuse their subscription ---- */

static char monitor_port[16];
static const char *monitor_args[] = {"-m", monitor_port, NULL};

static void setup_monitored(void)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(monitor_port, sizeof(monitor_port), "%d", fx_free_port());
	ck_assert_int_eq(natsd_start_args(&nd, 0, monitor_args), 0);
	ck_assert_int_eq(shipd_start(&sd, nd.url, NULL), 0);
	ck_assert(fx_wait_link(sd.sock, 10000));
}

/* Subscriptions the server has inserted since it started (/subsz). */
static long long server_sub_inserts(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)atoi(monitor_port)),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	const char *req = "GET /subsz HTTP/1.0\r\nHost: localhost\r\n\r\n";
	ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	char buf[8192];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(buf) - 1 && (r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	close(fd);
	buf[n] = '\0';
	char *body = strstr(buf, "\r\n\r\n");
	ck_assert_ptr_nonnull(body);
	json_t *j = json_loads(body + 4, 0, NULL);
	ck_assert_ptr_nonnull(j);
	json_t *v = json_object_get(j, "num_inserts");
	ck_assert(json_is_integer(v));
	long long ins = json_integer_value(v);
	json_decref(j);
	return ins;
}

/* A consumer fed one credit at a time pulls once per message: all on one
 * subscription, not one made and torn down per pull. */
START_TEST(pulls_reuse_their_subscription)
{
	struct shipc *h = conn("puller");
	enum { N = 40 };
	for (int i = 0; i < N; i++)
		emit_ok(h, "pull.x", "1", NULL, NULL);
	struct got g = GOT_INIT;
	g.ack = g.recredit = true;
	struct shipc_event_sub s = {.pattern = "pull.x", .durable = "puller",
	                            .deliver = SHIPC_DELIVER_ALL, .credit = 1};
	sub_ok(h, &s, 0, &g);
	ck_assert(wait_n(h, &g, 1, 5000));
	long long before = server_sub_inserts();
	ck_assert(wait_n(h, &g, N, 10000));
	long long made = server_sub_inserts() - before;
	ck_assert_msg(made <= 3, "%lld subscriptions made for %d pulls", made,
	              N - 1);
	shipc_close(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("events");
	TCase *tc = tcase_create("events");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, emit_writes_noesis_envelope);
	tcase_add_test(tc, noesis_envelopes_decode);
	tcase_add_test(tc, late_durable_replays_and_resumes);
	tcase_add_test(tc, credit_bounds_deliveries);
	tcase_add_test(tc, slow_app_memory_flat);
	tcase_add_test(tc, big_credit_unread_socket_bounded);
	tcase_add_test(tc, nak_and_ack_wait_redeliver);
	tcase_add_test(tc, bad_subscriptions);
	tcase_add_test(tc, declare_reports_mismatch);
	tcase_add_test(tc, config_declares_streams);
	tcase_add_test(tc, channels_listen_and_history);
	tcase_add_test(tc, long_names_refused_not_cut);
	tcase_add_test(tc, streams_listed_past_one_page);
	tcase_add_test(tc, emit_to_named_stream_only);
	tcase_add_test(tc, msg_ids_are_printable);
	tcase_add_test(tc, numbers_out_of_range_refused);
	tcase_add_test(tc, envelope_json_always_valid);
	tcase_add_test(tc, durable_resumes_by_name);
	tcase_add_test(tc, durable_settings_conflict_unless_update);
	tcase_add_test(tc, durable_deleted_while_idle_is_made_again);
	tcase_add_test(tc, durable_one_app_unless_shared);
	tcase_add_test(tc, durable_survives_stream_recreated);
	suite_add_tcase(s, tc);
	TCase *pulls = tcase_create("pulls");
	tcase_add_checked_fixture(pulls, setup_monitored, teardown);
	tcase_set_timeout(pulls, 60);
	tcase_add_test(pulls, pulls_reuse_their_subscription);
	suite_add_tcase(s, pulls);
	TCase *faults = tcase_create("faults");
	tcase_add_checked_fixture(faults, setup, teardown);
	tcase_set_timeout(faults, 180);
	tcase_add_test(faults, emits_survive_nats_restart);
	tcase_add_test(faults, durable_resumes_after_shipd_killed);
	tcase_add_test(faults, subscription_survives_nats_restart);
	tcase_add_test(faults, durable_survives_nats_store_lost);
	suite_add_tcase(s, faults);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
