/* SPDX-License-Identifier: MIT */
/* Two robots, each a leaf server with a shipd, under a 3-node hub whose
 * R3 streams FLEET_EVENTS and FLEET_CHANNELS source both robots' streams
 * (as conf/fleet/hub). Both robots emit events and send channel messages
 * while robot1's uplink is cut again and again (shorter and longer than
 * the leaf's reconnect backoff, and a silent hold): robot1's apps see no
 * error for local operations and a fast EAGAIN for hub ones, and once
 * the uplinks are back the hub holds every event and message exactly
 * once, in order per robot. */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "fixture.h"
#include "fleet_util.h"
#include "shipc.h"

#define NROBOTS 2

static struct fx_hub hub;
static struct fx_proxy uplink[NROBOTS];
static struct fx_node robot[NROBOTS];
static struct shipdp sd[NROBOTS];
static struct shipc *h[NROBOTS];
static const char *const robot_name[NROBOTS] = {"robot1", "robot2"};
static natsConnection *hc;
static jsCtx *hjs;

static void setup(void)
{
	int ports[FX_HUB_MAX];
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_hub_start(&hub, 3, "hub"), 0);
	int n = fx_hub_leaf_ports(&hub, ports, FX_HUB_MAX);
	static const char *const extra[] = {"-o", "hub_domain=hub", "-o",
	                                    "uplink_probe_ms=500", NULL};
	for (int i = 0; i < NROBOTS; i++) {
		ck_assert_int_eq(fx_proxy_start(&uplink[i], ports, n), 0);
		ck_assert_int_eq(fx_leaf_start(&robot[i], robot_name[i],
		                               &uplink[i].port, 1),
		                 0);
	}
	for (int i = 0; i < NROBOTS; i++) {
		ck_assert(fx_leaf_wait_connected(&robot[i], 10000));
		ck_assert_int_eq(shipd_start(&sd[i], robot[i].url, extra), 0);
		ck_assert(fx_wait_link(sd[i].sock, 10000));
		h[i] = fx_connect(sd[i].sock, robot_name[i], 5000);
		ck_assert_ptr_nonnull(h[i]);
	}
	char urls[512];
	fx_hub_urls(&hub, urls, sizeof(urls));
	ck_assert_int_eq(natsConnection_ConnectTo(&hc, urls), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&hjs, hc, NULL), NATS_OK);
	/* The robots' streams exist once shipd declared them. */
	struct shipc_emit em = {.event_type = "fleet.hello"};
	for (int i = 0; i < NROBOTS; i++)
		ck_assert_int_eq(shipc_emit(h[i], &em, NULL), 0);
	fx_fleet_stream(hc, "FLEET_EVENTS", "SHIP_EVENTS", robot_name, NROBOTS, 3);
	fx_fleet_stream(hc, "FLEET_CHANNELS", "CHANNELS", robot_name, NROBOTS,
	                3);
}

static void teardown(void)
{
	jsCtx_Destroy(hjs);
	natsConnection_Destroy(hc);
	hjs = NULL;
	hc = NULL;
	for (int i = 0; i < NROBOTS; i++) {
		shipc_close(h[i]);
		h[i] = NULL;
		shipd_cleanup(&sd[i]);
		fx_proxy_stop(&uplink[i]);
		fx_leaf_cleanup(&robot[i]);
	}
	fx_hub_cleanup(&hub);
}

static uint64_t stream_msgs(natsConnection *nc, const char *stream)
{
	jsCtx *js = NULL;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
	uint64_t n = s == NATS_OK ? si->State.Msgs : 0;
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	return n;
}

/* The messages of the robots' stream together (each robot's own). */
static uint64_t robots_msgs(const char *stream)
{
	uint64_t n = 0;
	for (int i = 0; i < NROBOTS; i++) {
		natsConnection *nc = NULL;
		ck_assert_int_eq(natsConnection_ConnectTo(&nc, robot[i].url),
		                 NATS_OK);
		n += stream_msgs(nc, stream);
		natsConnection_Destroy(nc);
	}
	return n;
}

struct caught_up {
	const char *hub_stream, *robot_stream;
	uint64_t hub, robots;
};

static bool caught_up(void *arg)
{
	struct caught_up *c = arg;
	c->hub = stream_msgs(hc, c->hub_stream);
	c->robots = robots_msgs(c->robot_stream);
	ck_assert_msg(c->hub <= c->robots, "%s holds %" PRIu64 ", the robots "
	              "%" PRIu64,
	              c->hub_stream, c->hub, c->robots);
	return c->hub == c->robots;
}

/* Every message of the hub stream, in its order: each robot's numbered
 * ones are 1..sent[r], once each, in order. number() reads a message's
 * robot and number (false: not one of the test's, e.g. uplink events). */
static void check_order(const char *stream, const int *sent,
                        bool (*number)(const char *data, int *r, int *n))
{
	int next[NROBOTS] = {0};
	uint64_t total = stream_msgs(hc, stream);
	for (uint64_t seq = 1; seq <= total; seq++) {
		natsMsg *m = NULL;
		jsErrCode jerr = 0;
		ck_assert_int_eq(js_GetMsg(&m, hjs, stream, seq, NULL, &jerr),
		                 NATS_OK);
		char data[2048];
		fx_strcopy(data, sizeof(data), natsMsg_GetData(m),
		           (size_t)natsMsg_GetDataLength(m));
		natsMsg_Destroy(m);
		int r, n;
		if (!number(data, &r, &n))
			continue;
		ck_assert_msg(n == next[r] + 1, "%s seq %" PRIu64 ": %s %d after %d",
		              stream, seq, robot_name[r], n, next[r]);
		next[r] = n;
	}
	for (int r = 0; r < NROBOTS; r++)
		ck_assert_msg(next[r] == sent[r], "%s: %s %d of %d", stream,
		              robot_name[r], next[r], sent[r]);
}

static int robot_of(const char *name)
{
	for (int r = 0; r < NROBOTS; r++)
		if (!strcmp(name, robot_name[r]))
			return r;
	return -1;
}

/* An event's payload {"robot": name, "n": n}. */
static bool event_number(const char *data, int *r, int *n)
{
	char name[32];
	if (!fx_json_str(data, "\"payload\"", "robot", name, sizeof(name)))
		return false;
	*r = robot_of(name);
	*n = (int)fx_json_int(data, "\"payload\"", "n");
	return *r >= 0;
}

/* A channel message's content "<robot> <n>". */
static bool channel_number(const char *data, int *r, int *n)
{
	char content[64], name[32];
	if (!fx_json_str(data, NULL, "content", content, sizeof(content)) ||
	    sscanf(content, "%31s %d", name, n) != 2)
		return false;
	*r = robot_of(name);
	return *r >= 0;
}

static int events_sent[NROBOTS], channel_sent[NROBOTS];

/* One event and one channel message from robot r, each acknowledged by
 * the robot's own JetStream. */
static void robot_work(int r)
{
	char payload[64], content[64], err[256];
	snprintf(payload, sizeof(payload), "{\"robot\":\"%s\",\"n\":%d}",
	         robot_name[r], events_sent[r] + 1);
	struct shipc_emit em = {.event_type = "fleet.work",
	                        .source = robot_name[r],
	                        .payload_json = payload};
	ck_assert_msg(shipc_emit(h[r], &em, NULL) == 0, "%s emit: %s",
	              robot_name[r], shipc_last_error(h[r], err, sizeof(err)));
	events_sent[r]++;
	snprintf(content, sizeof(content), "%s %d", robot_name[r],
	         channel_sent[r] + 1);
	ck_assert_msg(shipc_channel_send(h[r], "ops", robot_name[r], content,
	                                 NULL, NULL) == 0,
	              "%s send: %s", robot_name[r],
	              shipc_last_error(h[r], err, sizeof(err)));
	channel_sent[r]++;
}

/* A hub operation from robot r: refused at once while its uplink is
 * down. */
static void hub_op_refused(int r)
{
	char err[256];
	uint64_t t0 = fx_now_ms();
	ck_assert_int_eq(shipc_kv_put(h[r], "beings_status", robot_name[r], "{}",
	                              2, NULL),
	                 -1);
	ck_assert_msg(errno == EAGAIN, "errno %d: %s", errno,
	              shipc_last_error(h[r], err, sizeof(err)));
	ck_assert_uint_lt(fx_now_ms() - t0, 1500);
}

START_TEST(robots_cut_and_caught_up_once_in_order)
{
	struct shipc_kv_config cfg = {.bucket = "beings_status", .replicas = 3};
	ck_assert_int_eq(shipc_kv_bucket_create(h[0], &cfg, NULL), 0);
	/* Cuts of robot1's uplink: 0.5 s, 3 s (past the leaf's 1 s
	 * reconnect), 6 s, and a 4 s silent hold (noticed only by pings:
	 * no fast refusal expected then). */
	static const struct {
		int ms;
		bool hold;
	} cuts[] = {{500, false}, {3000, false}, {6000, false}, {4000, true}};
	for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
		for (int i = 0; i < 5; i++)
			for (int r = 0; r < NROBOTS; r++)
				robot_work(r);
		if (cuts[c].hold) {
			fx_proxy_hold(&uplink[0]);
		} else {
			fx_proxy_cut(&uplink[0]);
			for (int i = 0; i < 100 && fx_leaf_connected(&robot[0]); i++)
				fx_sleep_ms(20);
			ck_assert(!fx_leaf_connected(&robot[0]));
			hub_op_refused(0);
		}
		uint64_t end = fx_now_ms() + (uint64_t)cuts[c].ms;
		while (fx_now_ms() < end) {
			for (int r = 0; r < NROBOTS; r++)
				robot_work(r);
			fx_sleep_ms(100);
		}
		fx_proxy_restore(&uplink[0]);
		ck_assert(fx_leaf_wait_connected(&robot[0], 20000));
	}
	/* robot2 saw nothing of it. */
	ck_assert_int_eq(shipc_kv_put(h[1], "beings_status", "robot2", "{}", 2,
	                              NULL),
	                 0);

	struct caught_up ev = {"FLEET_EVENTS", "SHIP_EVENTS", 0, 0};
	ck_assert_msg(fx_wait(caught_up, &ev, 30000),
	              "FLEET_EVENTS %" PRIu64 " of %" PRIu64, ev.hub, ev.robots);
	struct caught_up ch = {"FLEET_CHANNELS", "CHANNELS", 0, 0};
	ck_assert_msg(fx_wait(caught_up, &ch, 30000),
	              "FLEET_CHANNELS %" PRIu64 " of %" PRIu64, ch.hub,
	              ch.robots);
	check_order("FLEET_EVENTS", events_sent, event_number);
	check_order("FLEET_CHANNELS", channel_sent, channel_number);
	fprintf(stderr, "robots: %d + %d events, %d + %d channel messages, "
	                "all on the hub once, in order\n",
	        events_sent[0], events_sent[1], channel_sent[0], channel_sent[1]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fleet-robots");
	TCase *t = tcase_create("robots");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 240);
	tcase_add_test(t, robots_cut_and_caught_up_once_in_order);
	suite_add_tcase(s, t);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
