/* SPDX-License-Identifier: MIT */
/* The fleet topology of issue 15, with plain nats.c (no shipd yet): a
 * 3-node hub cluster in JetStream domain "hub", two robots as leaf servers
 * in their own domains, each uplink through a proxy that cuts it, and a
 * hub stream sourcing the robots' streams across domains that holds every
 * robot message exactly once and in order, however the uplink was cut.
 *
 * Measured here (nats-server 2.9.10, nats.c 3.4.1, 2 cores, loopback;
 * the test prints its figures, the whole test takes ~40 s):
 * - an R3 stream takes publishes again 4.4-8.4 s after its leader is
 *   SIGKILLed: 2.9.10's raft election timeout is 4-9 s. The node, started
 *   again, is a current replica 0.4-1.8 s later;
 * - a new hub stream sources the robots' 20 events in 5-110 ms;
 * - the leaf reconnects within 2 s of a restore: its reconnect interval
 *   (1 s), plus 1 s for the hub's dead advertised leafnode address that
 *   it tries first after each loss (fixture.c says why there is one);
 * - the hub's sourcing resumes by itself, exactly once and in order, with
 *   no deliver prefix (one account on both sides). After a cut of ~10 ms
 *   the hub holds everything ~2.0 s after the restore (as soon as the leaf
 *   is back: the source consumer on the robot just waits for interest);
 *   after 2.5 s, 5.5-6.5 s (the hub saw no heartbeat for 3 s, sent a new
 *   consumer create into the cut, and retries only 5 s later); after 10 s,
 *   3-4 s. A 5 s silent cut (nothing closed) is caught up ~50 ms after the
 *   restore: the connection survives (2 min leafnode pings), and what the
 *   hub sent meanwhile was only held. */
#include <check.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "fixture.h"

#define NROBOTS 2

static struct fx_hub hub;
static struct fx_proxy uplink[NROBOTS];
static struct fx_node robot[NROBOTS];
static const char *const robot_name[NROBOTS] = {"robot1", "robot2"};

static void setup(void)
{
	int ports[FX_HUB_MAX];
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_hub_start(&hub, 3, "hub"), 0);
	int n = fx_hub_leaf_ports(&hub, ports, FX_HUB_MAX);
	/* Each robot's uplink: its own proxy to the first hub node that
	 * accepts, so a robot survives the loss of a hub node. */
	for (int i = 0; i < NROBOTS; i++) {
		ck_assert_int_eq(fx_proxy_start(&uplink[i], ports, n), 0);
		ck_assert_int_eq(fx_leaf_start(&robot[i], robot_name[i],
		                               &uplink[i].port, 1), 0);
	}
	for (int i = 0; i < NROBOTS; i++)
		ck_assert(fx_leaf_wait_connected(&robot[i], 10000));
}

static void teardown(void)
{
	for (int i = 0; i < NROBOTS; i++) {
		fx_leaf_cleanup(&robot[i]);
		fx_proxy_stop(&uplink[i]);
	}
	fx_hub_cleanup(&hub);
	nats_CloseAndWait(2000);
}

static natsConnection *connect_to(const char *urls)
{
	natsOptions *o = NULL;
	natsConnection *nc = NULL;
	char list[512], *servers[FX_HUB_MAX + 1], *save = NULL;
	int n = 0;
	snprintf(list, sizeof(list), "%s", urls);
	for (char *u = strtok_r(list, ",", &save); u && n <= FX_HUB_MAX;
	     u = strtok_r(NULL, ",", &save))
		servers[n++] = u;
	ck_assert_int_eq(natsOptions_Create(&o), NATS_OK);
	ck_assert_int_eq(natsOptions_SetServers(o, (const char **)servers, n),
	                 NATS_OK);
	natsOptions_SetMaxReconnect(o, -1);
	natsOptions_SetReconnectWait(o, 100);
	ck_assert_int_eq(natsConnection_Connect(&nc, o), NATS_OK);
	natsOptions_Destroy(o);
	return nc;
}

static natsConnection *connect_hub(void)
{
	char urls[512];
	fx_hub_urls(&hub, urls, sizeof(urls));
	return connect_to(urls);
}

/* A JetStream context for domain (NULL: the server's own, $JS.API). */
static jsCtx *js_for(natsConnection *nc, const char *domain)
{
	jsOptions jo;
	jsCtx *js = NULL;
	jsOptions_Init(&jo);
	jo.Domain = domain;
	jo.Wait = 5000;
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, &jo), NATS_OK);
	return js;
}

/* Publish with a message id until acked (the id makes a retry safe);
 * the ack's sequence, 0 if none came within timeout_ms. The stream and
 * domain the ack named go to stream and domain if not NULL. */
static uint64_t publish(jsCtx *js, const char *subj, const char *data,
                        const char *id, int timeout_ms, char *stream,
                        char *domain)
{
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MsgId = id;
	po.MaxWait = 1000;
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
	do {
		jsPubAck *pa = NULL;
		jsErrCode jerr = 0;
		if (js_Publish(&pa, js, subj, data, (int)strlen(data), &po,
		               &jerr) == NATS_OK) {
			uint64_t seq = pa->Sequence;
			if (stream)
				snprintf(stream, 64, "%s", pa->Stream);
			if (domain)
				snprintf(domain, 64, "%s",
				         pa->Domain ? pa->Domain : "");
			jsPubAck_Destroy(pa);
			return seq;
		}
		fx_sleep_ms(100);
	} while (fx_now_ms() < end);
	return 0;
}

static void add_stream(jsCtx *js, jsStreamConfig *sc)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_AddStream(&si, js, sc, NULL, &jerr);
	ck_assert_msg(s == NATS_OK, "add stream %s: %s (%d)", sc->Name,
	              natsStatus_GetText(s), (int)jerr);
	jsStreamInfo_Destroy(si);
}

/* A robot's local stream EVENTS_<name> on <name>.events.>, created
 * through its own server ($JS.API). */
static void add_robot_stream(jsCtx *js, const char *name)
{
	char sname[64], subj[64];
	const char *subjects[] = {subj};
	jsStreamConfig sc;
	snprintf(sname, sizeof(sname), "EVENTS_%s", name);
	snprintf(subj, sizeof(subj), "%s.events.>", name);
	jsStreamConfig_Init(&sc);
	sc.Name = sname;
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	add_stream(js, &sc);
}

/* Robot r's event number n, published on the robot and acked by its own
 * JetStream (in its domain) whether or not the uplink is up. */
static void robot_event(jsCtx *js, int r, int n)
{
	char subj[64], data[64], id[64], stream[64], domain[64];
	snprintf(subj, sizeof(subj), "%s.events.e", robot_name[r]);
	snprintf(data, sizeof(data), "%s %d", robot_name[r], n);
	snprintf(id, sizeof(id), "%s-%d", robot_name[r], n);
	ck_assert_uint_eq(publish(js, subj, data, id, 5000, stream, domain),
	                  (uint64_t)n);
	ck_assert_str_eq(domain, robot_name[r]);
	ck_assert(strncmp(stream, "EVENTS_", 7) == 0 &&
	          strcmp(stream + 7, robot_name[r]) == 0);
}

/* Messages in the hub stream FLEET on subjects matching filter (NULL:
 * all); -1 if the hub did not answer. */
static long long fleet_count(jsCtx *js, const char *filter)
{
	jsOptions o;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	jsOptions_Init(&o);
	o.Domain = "hub";
	o.Stream.Info.SubjectsFilter = filter;
	if (js_GetStreamInfo(&si, js, "FLEET", &o, &jerr) != NATS_OK)
		return -1;
	long long n = 0;
	if (!filter)
		n = (long long)si->State.Msgs;
	else if (si->State.Subjects)
		for (int i = 0; i < si->State.Subjects->Count; i++)
			n += (long long)si->State.Subjects->List[i].Msgs;
	jsStreamInfo_Destroy(si);
	return n;
}

/* ms until FLEET on filter holds want messages, -1 after timeout_ms;
 * more than want fails at once. */
static long long wait_fleet(jsCtx *js, const char *filter, long long want,
                            int timeout_ms)
{
	uint64_t start = fx_now_ms();
	long long n;
	do {
		n = fleet_count(js, filter);
		ck_assert_msg(n <= want, "FLEET %s: %lld messages, %lld sent",
		              filter ? filter : "", n, want);
		if (n == want)
			return (long long)(fx_now_ms() - start);
		fx_sleep_ms(50);
	} while (fx_now_ms() - start < (uint64_t)timeout_ms);
	return -1;
}

/* Every message of FLEET, read by sequence: each robot's events are
 * 1..sent[r], each once, in order. */
static void check_fleet(jsCtx *js, const int *sent)
{
	int next[NROBOTS] = {0};
	long long total = fleet_count(js, NULL);
	ck_assert_int_ge(total, 0);
	for (uint64_t seq = 1; seq <= (uint64_t)total; seq++) {
		natsMsg *m = NULL;
		jsErrCode jerr = 0;
		ck_assert_int_eq(js_GetMsg(&m, js, "FLEET", seq, NULL, &jerr),
		                 NATS_OK);
		char name[32] = "", data[64];
		int n = 0, len = natsMsg_GetDataLength(m);
		snprintf(data, sizeof(data), "%.*s", len, natsMsg_GetData(m));
		ck_assert_int_eq(sscanf(data, "%31s %d", name, &n), 2);
		int r = 0;
		while (r < NROBOTS && strcmp(name, robot_name[r]) != 0)
			r++;
		ck_assert_msg(r < NROBOTS, "FLEET seq %" PRIu64 ": %s", seq, data);
		ck_assert_msg(n == next[r] + 1,
		              "FLEET seq %" PRIu64 ": %s after %d", seq, data,
		              next[r]);
		next[r] = n;
		natsMsg_Destroy(m);
	}
	for (int r = 0; r < NROBOTS; r++)
		ck_assert_int_eq(next[r], sent[r]);
}

/* Whether every replica of stream is current. */
static bool stream_current(jsCtx *js, const char *stream)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	if (js_GetStreamInfo(&si, js, stream, NULL, &jerr) != NATS_OK)
		return false;
	bool ok = si->Cluster && si->Cluster->Leader &&
	          si->Cluster->ReplicasLen == 2;
	for (int i = 0; ok && i < si->Cluster->ReplicasLen; i++)
		ok = si->Cluster->Replicas[i]->Current &&
		     !si->Cluster->Replicas[i]->Offline;
	jsStreamInfo_Destroy(si);
	return ok;
}

START_TEST(hub_r3_stream_survives_a_node_kill)
{
	natsConnection *nc = connect_hub();
	jsCtx *js = js_for(nc, "hub"); /* $JS.hub.API.STREAM.CREATE.ORDERS */
	const char *subjects[] = {"orders.>"};
	jsStreamConfig sc;
	jsStreamConfig_Init(&sc);
	sc.Name = "ORDERS";
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = 3;
	add_stream(js, &sc);
	char id[32], leader[64] = "";
	for (int i = 1; i <= 10; i++) {
		snprintf(id, sizeof(id), "order-%d", i);
		ck_assert_uint_eq(
			publish(js, "orders.new", id, id, 5000, NULL, NULL),
			(uint64_t)i);
	}
	jsStreamInfo *si = NULL;
	ck_assert_int_eq(js_GetStreamInfo(&si, js, "ORDERS", NULL, NULL), NATS_OK);
	ck_assert_ptr_nonnull(si->Cluster);
	ck_assert_int_eq(si->Cluster->ReplicasLen, 2);
	snprintf(leader, sizeof(leader), "%s", si->Cluster->Leader);
	jsStreamInfo_Destroy(si);

	/* Kill the stream's leader: the two others elect one and take the
	 * publish (the client may have to reconnect too). */
	struct fx_node *victim = fx_hub_node(&hub, leader);
	ck_assert_ptr_nonnull(victim);
	uint64_t t0 = fx_now_ms();
	fx_node_kill(victim);
	ck_assert_uint_eq(publish(js, "orders.new", "order-11", "order-11",
	                          30000, NULL, NULL), 11);
	uint64_t acked = fx_now_ms() - t0;
	ck_assert_int_eq(js_GetStreamInfo(&si, js, "ORDERS", NULL, NULL), NATS_OK);
	ck_assert_uint_eq(si->State.Msgs, 11);
	ck_assert_ptr_nonnull(si->Cluster->Leader);
	ck_assert_str_ne(si->Cluster->Leader, leader);
	jsStreamInfo_Destroy(si);

	/* It comes back with its store and catches up. */
	ck_assert_int_eq(fx_node_restart(victim), 0);
	ck_assert(fx_hub_wait_leader(&hub, NULL, 0, 30000));
	uint64_t t1 = fx_now_ms();
	while (!stream_current(js, "ORDERS") && fx_now_ms() - t1 < 30000)
		fx_sleep_ms(100);
	ck_assert(stream_current(js, "ORDERS"));
	fprintf(stderr, "hub: publish acked %" PRIu64 " ms after the stream "
	        "leader %s was killed; back and current %" PRIu64 " ms after "
	        "its restart\n", acked, leader, fx_now_ms() - t1);
	/* The robots' uplinks found a hub node (the proxies skip a dead
	 * one). */
	for (int r = 0; r < NROBOTS; r++)
		ck_assert(fx_leaf_wait_connected(&robot[r], 15000));
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}
END_TEST

START_TEST(robot_streams_local_and_across_domains)
{
	natsConnection *hc = connect_hub();
	jsCtx *hub_own = js_for(hc, NULL);
	for (int r = 0; r < NROBOTS; r++) {
		char sname[64];
		snprintf(sname, sizeof(sname), "EVENTS_%s", robot_name[r]);
		natsConnection *lc = connect_to(robot[r].url);
		jsCtx *local = js_for(lc, NULL); /* $JS.API on the robot */
		add_robot_stream(local, robot_name[r]);
		for (int i = 1; i <= 5; i++)
			robot_event(local, r, i);

		/* From a client of the hub: $JS.<robot>.API crosses the
		 * leafnode (the first request may come before the interest). */
		jsCtx *remote = js_for(hc, robot_name[r]);
		jsStreamInfo *si = NULL;
		uint64_t end = fx_now_ms() + 10000;
		while (js_GetStreamInfo(&si, remote, sname, NULL, NULL) != NATS_OK &&
		       fx_now_ms() < end)
			fx_sleep_ms(100);
		ck_assert_ptr_nonnull(si);
		ck_assert_uint_eq(si->State.Msgs, 5);
		jsStreamInfo_Destroy(si);
		natsMsg *m = NULL;
		ck_assert_int_eq(js_GetMsg(&m, remote, sname, 3, NULL, NULL),
		                 NATS_OK);
		char want[64];
		snprintf(want, sizeof(want), "%s 3", robot_name[r]);
		ck_assert_int_eq(natsMsg_GetDataLength(m), (int)strlen(want));
		ck_assert(memcmp(natsMsg_GetData(m), want, strlen(want)) == 0);
		natsMsg_Destroy(m);

		/* The hub's own $JS.API is the hub's domain: the robot's
		 * stream is not there (the hub does not extend into it). */
		jsErrCode jerr = 0;
		si = NULL;
		ck_assert_int_ne(js_GetStreamInfo(&si, hub_own, sname, NULL, &jerr),
		                 NATS_OK);
		ck_assert_int_eq(jerr, JSStreamNotFoundErr);

		jsCtx_Destroy(remote);
		jsCtx_Destroy(local);
		natsConnection_Destroy(lc);
	}
	jsCtx_Destroy(hub_own);
	natsConnection_Destroy(hc);
}
END_TEST

/* A cut of robot1's uplink, hold_ms long (0: restored as soon as its
 * events are stored locally); silent: the connection stays open and
 * nothing moves (fx_proxy_hold) instead of being closed. robot1 stores 20
 * events meanwhile (half at the start, half at the end of the cut),
 * robot2 5. */
static void cut_round(jsCtx *hjs, jsCtx *const *ljs, int *sent, int hold_ms,
                      bool silent)
{
	long long before = fleet_count(hjs, "robot1.>");
	ck_assert_int_eq(before, sent[0]);
	uint64_t cut_at = fx_now_ms();
	if (silent)
		fx_proxy_hold(&uplink[0]);
	else
		fx_proxy_cut(&uplink[0]);
	ck_assert_int_eq(fx_proxy_links(&uplink[0]), silent ? 1 : 0);
	for (int i = 0; i < 10; i++)
		robot_event(ljs[0], 0, ++sent[0]);
	for (int i = 0; i < 5; i++)
		robot_event(ljs[1], 1, ++sent[1]);
	if (hold_ms > 0) {
		/* robot2 still flows; robot1 got nothing through (a leaf
		 * reconnecting around the proxy would show here). */
		ck_assert_int_ge(wait_fleet(hjs, "robot2.>", sent[1], 20000), 0);
		while (fx_now_ms() - cut_at < (uint64_t)hold_ms)
			fx_sleep_ms(50);
		ck_assert_int_eq(fleet_count(hjs, "robot1.>"), before);
		/* Closed, the leaf knows; silent, it cannot tell yet. */
		ck_assert(fx_leaf_connected(&robot[0]) == silent);
	}
	for (int i = 0; i < 10; i++)
		robot_event(ljs[0], 0, ++sent[0]);
	uint64_t cut_ms = fx_now_ms() - cut_at;

	uint64_t t0 = fx_now_ms();
	fx_proxy_restore(&uplink[0]);
	ck_assert(fx_leaf_wait_connected(&robot[0], 10000));
	uint64_t up = fx_now_ms() - t0;
	/* Back through the proxy, not around it. */
	ck_assert_int_eq(fx_proxy_links(&uplink[0]), 1);
	ck_assert_int_ge(wait_fleet(hjs, NULL, sent[0] + sent[1], 30000), 0);
	fprintf(stderr, "uplink %s %" PRIu64 " ms: leaf back %" PRIu64 " ms, "
	        "hub caught up %" PRIu64 " ms after the restore\n",
	        silent ? "silent" : "cut", cut_ms, up, fx_now_ms() - t0);
	check_fleet(hjs, sent);
}

START_TEST(hub_sources_robots_across_uplink_cuts)
{
	natsConnection *hc = connect_hub();
	jsCtx *hjs = js_for(hc, "hub");
	natsConnection *lc[NROBOTS];
	jsCtx *ljs[NROBOTS];
	int sent[NROBOTS] = {0};
	for (int r = 0; r < NROBOTS; r++) {
		lc[r] = connect_to(robot[r].url);
		ljs[r] = js_for(lc[r], NULL);
		add_robot_stream(ljs[r], robot_name[r]);
		for (int i = 0; i < 10; i++)
			robot_event(ljs[r], r, ++sent[r]);
	}

	/* FLEET, R3 on the hub, has no subjects of its own (it would also
	 * catch the robots' publishes that cross the leafnode) and sources
	 * each robot's stream through the robot's domain API. No deliver
	 * prefix: the hub and the robots share one account, so the
	 * consumers' $JS.S.<id> deliver subjects cross the leafnode as they
	 * are (a prefix works too; it is for imports across accounts). */
	jsExternalStream ext[NROBOTS];
	jsStreamSource src[NROBOTS];
	jsStreamSource *srcs[NROBOTS];
	char sname[NROBOTS][64], api[NROBOTS][64];
	for (int r = 0; r < NROBOTS; r++) {
		snprintf(sname[r], sizeof(sname[r]), "EVENTS_%s", robot_name[r]);
		snprintf(api[r], sizeof(api[r]), "$JS.%s.API", robot_name[r]);
		jsExternalStream_Init(&ext[r]);
		ext[r].APIPrefix = api[r];
		/* nats.c 3.4.1 writes "deliver" unconditionally: NULL crashes
		 * in strlen (fixed in 3.5.0, 2c872735); "" means none. */
		ext[r].DeliverPrefix = "";
		jsStreamSource_Init(&src[r]);
		src[r].Name = sname[r];
		src[r].External = &ext[r];
		srcs[r] = &src[r];
	}
	jsStreamConfig sc;
	jsStreamConfig_Init(&sc);
	sc.Name = "FLEET";
	sc.Storage = js_FileStorage;
	sc.Replicas = 3;
	sc.Sources = srcs;
	sc.SourcesLen = NROBOTS;
	add_stream(hjs, &sc);
	long long ms = wait_fleet(hjs, NULL, sent[0] + sent[1], 30000);
	ck_assert_int_ge(ms, 0);
	fprintf(stderr, "FLEET created: %d events sourced in %lld ms\n",
	        sent[0] + sent[1], ms);
	check_fleet(hjs, sent);

	/* Shorter than the leaf's reconnect interval (1 s), longer, and
	 * longer than the hub's source stall detection (3 s) plus its
	 * consumer create timeout (5 s). */
	cut_round(hjs, ljs, sent, 0, false);
	cut_round(hjs, ljs, sent, 2500, false);
	cut_round(hjs, ljs, sent, 10000, false);
	/* Silent for less than the leafnode ping timeout (2 min ping
	 * interval, 2 pings out): the same connection carries on. */
	cut_round(hjs, ljs, sent, 5000, true);

	for (int r = 0; r < NROBOTS; r++) {
		jsCtx_Destroy(ljs[r]);
		natsConnection_Destroy(lc[r]);
	}
	jsCtx_Destroy(hjs);
	natsConnection_Destroy(hc);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("topology");
	TCase *tc = tcase_create("topology");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 150);
	tcase_add_test(tc, hub_r3_stream_survives_a_node_kill);
	tcase_add_test(tc, robot_streams_local_and_across_domains);
	tcase_add_test(tc, hub_sources_robots_across_uplink_cuts);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
