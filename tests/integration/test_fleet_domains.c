/* SPDX-License-Identifier: MIT */
/* A robot's shipd in the fleet topology: connected to the robot's own
 * leaf server (JetStream domain robot1), whose uplink to the hub (domain
 * hub) runs through a proxy that cuts it. Each block's streams and
 * buckets are where the configuration puts them; with the uplink down,
 * local operations go on and hub operations fail at once with EAGAIN
 * (UNAVAILABLE), and work again once it is back. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "fixture.h"
#include "fleet_util.h"
#include "shipc.h"

static struct fx_hub hub;
static struct fx_proxy uplink;
static struct fx_node robot;
static struct shipdp sd;
static struct shipc *h;

/* The hub's JetStream domain (a long one for the subjects' limits), and
 * one more -o for shipd. */
static const char *hub_name = "hub";
static const char *more_opt = "log_level=debug";

static void setup(void)
{
	int ports[FX_HUB_MAX];
	char opt[128];
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_hub_start(&hub, 3, hub_name), 0);
	int n = fx_hub_leaf_ports(&hub, ports, FX_HUB_MAX);
	ck_assert_int_eq(fx_proxy_start(&uplink, ports, n), 0);
	ck_assert_int_eq(fx_leaf_start(&robot, "robot1", &uplink.port, 1), 0);
	ck_assert(fx_leaf_wait_connected(&robot, 10000));
	snprintf(opt, sizeof(opt), "hub_domain=%s", hub_name);
	const char *const extra[] = {"-o", opt, "-o", "uplink_probe_ms=300",
	                             "-o", more_opt, NULL};
	ck_assert_int_eq(shipd_start(&sd, robot.url, extra), 0);
	ck_assert(fx_wait_link(sd.sock, 10000));
	h = fx_connect(sd.sock, "fleet-test", 5000);
	ck_assert_ptr_nonnull(h);
}

static void teardown(void)
{
	shipc_close(h);
	h = NULL;
	shipd_cleanup(&sd);
	fx_proxy_stop(&uplink);
	fx_leaf_cleanup(&robot);
	fx_hub_cleanup(&hub);
}

/* Whether the JetStream of the server at url (its own, $JS.API) has
 * stream name. */
static bool has_stream(const char *url, const char *name)
{
	natsConnection *nc = NULL;
	natsMsg *reply = NULL;
	char subj[256];
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, url), NATS_OK);
	snprintf(subj, sizeof(subj), "$JS.API.STREAM.INFO.%s", name);
	ck_assert_int_eq(natsConnection_RequestString(&reply, nc, subj, "", 5000),
	                 NATS_OK);
	bool has = strstr(natsMsg_GetData(reply), "\"error\"") == NULL;
	natsMsg_Destroy(reply);
	natsConnection_Destroy(nc);
	return has;
}

/* The value of key in bucket as the hub's own JetStream has it (a direct
 * get on a hub node), into buf; false if it has none. */
static bool hub_value(const char *bucket, const char *key, char *buf,
                      size_t len)
{
	natsConnection *nc = NULL;
	natsMsg *reply = NULL;
	char subj[256], body[256];
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, hub.node[0].url), NATS_OK);
	snprintf(subj, sizeof(subj), "$JS.API.DIRECT.GET.KV_%s", bucket);
	snprintf(body, sizeof(body), "{\"last_by_subj\":\"$KV.%s.%s\"}", bucket,
	         key);
	ck_assert_int_eq(natsConnection_RequestString(&reply, nc, subj, body,
	                                              5000),
	                 NATS_OK);
	const char *status = NULL;
	natsMsgHeader_Get(reply, "Status", &status);
	bool found = !status;
	if (found)
		fx_strcopy(buf, len, natsMsg_GetData(reply),
		           (size_t)natsMsg_GetDataLength(reply));
	natsMsg_Destroy(reply);
	natsConnection_Destroy(nc);
	return found;
}

static long long stream_msgs(const char *url, const char *stream)
{
	char subj[128], buf[8192];
	snprintf(subj, sizeof(subj), "$JS.API.STREAM.INFO.%s", stream);
	fx_api_at(url, subj, "", buf, sizeof(buf));
	return fx_json_int(buf, "\"state\"", "messages");
}

struct want_uplink {
	enum shipc_uplink_state state;
	uint64_t min_waiting; /* of SHIP_EVENTS, as the hub last said */
	bool exact;           /* waiting == min_waiting */
	struct shipc_uplink got;
};

/* The end of shipd's log, to see why it did not do what was wanted. */
static void show_log(void)
{
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "tail -n 40 %s >&2", sd.log);
	if (system(cmd) != 0)
		fprintf(stderr, "no log in %s\n", sd.log);
}

/* Run shipctl with args against the robot's shipd; its exit status, and
 * its output (stdout and stderr) into out. */
static int shipctl(char *out, size_t len, const char *a1, const char *a2,
                   const char *a3)
{
	const char *bin = getenv("SHIPCTL_BIN");
	ck_assert_ptr_nonnull(bin);
	char log[400];
	snprintf(log, sizeof(log), "%s/shipctl.log", sd.dir);
	unlink(log);
	char *argv[] = {(char *)bin, "-s", sd.sock, (char *)a1, (char *)a2,
	                (char *)a3, NULL};
	pid_t pid = fx_spawn(argv, log, NULL);
	ck_assert_int_gt(pid, 0);
	int st = fx_wait_exit(pid, 10000);
	FILE *f = fopen(log, "r");
	size_t n = f ? fread(out, 1, len - 1, f) : 0;
	out[n] = '\0';
	if (f)
		fclose(f);
	return st;
}

static bool uplink_is(void *arg)
{
	struct want_uplink *w = arg;
	if (shipc_uplink(h, &w->got) < 0 || w->got.state != w->state)
		return false;
	if (w->min_waiting == UINT64_MAX)
		return true;
	for (size_t i = 0; i < w->got.n_streams; i++) {
		const struct shipc_uplink_stream *s = &w->got.streams[i];
		if (strcmp(s->stream, "SHIP_EVENTS") || !s->hub_seen_ms)
			continue;
		return w->exact ? s->waiting_msgs == w->min_waiting
		                : s->waiting_msgs >= w->min_waiting;
	}
	return false;
}

static void wait_uplink(enum shipc_uplink_state st, uint64_t waiting,
                        bool exact, int timeout_ms)
{
	struct want_uplink w = {.state = st, .min_waiting = waiting,
	                        .exact = exact};
	bool ok = fx_wait(uplink_is, &w, timeout_ms);
	if (!ok)
		show_log();
	ck_assert_msg(ok,
	              "uplink: state %d (want %d), %zu streams, first waiting "
	              "%llu (want %llu)",
	              (int)w.got.state, (int)st, w.got.n_streams,
	              w.got.n_streams ? (unsigned long long)w.got.streams[0]
	                                        .waiting_msgs
	                              : 0ULL,
	              (unsigned long long)waiting);
}

static void bucket(const char *name)
{
	struct shipc_kv_config cfg = {.bucket = name, .history = 5};
	ck_assert_msg(shipc_kv_bucket_create(h, &cfg, NULL) == 0, "%s: %s",
	              name, shipc_last_error(h, NULL, 0));
}

static void cut(void)
{
	fx_proxy_cut(&uplink);
	/* The leaf sees EOF at once. */
	for (int i = 0; i < 100 && fx_leaf_connected(&robot); i++)
		fx_sleep_ms(50);
	ck_assert(!fx_leaf_connected(&robot));
}

static void restore(void)
{
	fx_proxy_restore(&uplink);
	ck_assert(fx_leaf_wait_connected(&robot, 15000));
}

/* Each block's data is where the defaults put it: KV and events on the
 * robot, the registry bucket and job queues on the hub, each written
 * through the robot's shipd alone. */
START_TEST(blocks_use_their_domains)
{
	bucket("notes");
	bucket("beings_status");
	uint64_t rev = 0;
	ck_assert_int_eq(shipc_kv_put(h, "notes", "k", "local", 5, &rev), 0);
	static const char being[] =
		"{\"being_id\":\"robot1\",\"state\":\"working\","
		"\"current_task\":\"mapping\",\"last_heartbeat\":"
		"\"2026-11-29T10:00:00Z\",\"uptime_seconds\":0,\"memory_mb\":null,"
		"\"capabilities\":[],\"metadata\":null}";
	ck_assert_int_eq(shipc_kv_put(h, "beings_status", "robot1", being,
	                              strlen(being), &rev),
	                 0);
	ck_assert(has_stream(robot.url, "KV_notes"));
	ck_assert(!has_stream(hub.node[0].url, "KV_notes"));
	ck_assert(has_stream(hub.node[0].url, "KV_beings_status"));
	ck_assert(!has_stream(robot.url, "KV_beings_status"));
	char v[512];
	ck_assert(hub_value("beings_status", "robot1", v, sizeof(v)));
	ck_assert_str_eq(v, being);
	/* Read back through shipd from the hub. */
	struct shipc_kv_entry *e = NULL;
	ck_assert_int_eq(shipc_kv_get(h, "beings_status", "robot1", 0, &e), 0);
	ck_assert_str_eq(e->value, being);
	ck_assert_uint_eq(e->revision, rev);
	shipc_kv_entry_free(e);

	struct shipc_job *job = NULL;
	struct shipc_job_submit js = {.payload_json = "{\"n\":1}"};
	ck_assert_msg(shipc_job_submit(h, "work", &js, &job) == 0, "%s",
	              shipc_last_error(h, NULL, 0));
	shipc_job_free(job);
	ck_assert(has_stream(hub.node[0].url, "KV_JOBS_work"));
	ck_assert(!has_stream(robot.url, "KV_JOBS_work"));

	/* The bucket list has both domains' buckets, each from where shipd
	 * uses it. */
	struct shipc_kv_status *l = NULL;
	size_t n = 0;
	bool notes = false, beings = false, jobs = false;
	ck_assert_int_eq(shipc_kv_bucket_list(h, &l, &n), 0);
	for (size_t i = 0; i < n; i++) {
		notes |= !strcmp(l[i].bucket, "notes");
		beings |= !strcmp(l[i].bucket, "beings_status");
		jobs |= !strcmp(l[i].bucket, "JOBS_work");
	}
	shipc_kv_bucket_list_free(l);
	ck_assert_msg(notes && beings && jobs, "%zu listed: notes %d, "
	              "beings_status %d, JOBS_work %d",
	              n, notes, beings, jobs);

	struct shipc_emit em = {.event_type = "fleet.test"};
	ck_assert_int_eq(shipc_emit(h, &em, NULL), 0);
	ck_assert(has_stream(robot.url, "SHIP_EVENTS"));
	ck_assert(!has_stream(hub.node[0].url, "SHIP_EVENTS"));

	/* The registry as operators see it, from the hub. */
	char out[4096];
	ck_assert_int_eq(shipctl(out, sizeof(out), "fleet", "robots", NULL), 0);
	ck_assert_msg(strstr(out, "robot1") && strstr(out, "working") &&
	                      strstr(out, "2026-11-29T10:00:00Z") &&
	                      strstr(out, "mapping"),
	              "%s", out);
}
END_TEST

/* With the uplink cut, local operations are acknowledged as before and
 * every hub operation fails at once with EAGAIN, saying why; after the
 * restore they work again, and nothing acknowledged was lost. */
START_TEST(uplink_down_local_goes_on_hub_fails_fast)
{
	bucket("notes");
	bucket("beings_status");
	struct shipc_job *job = NULL;
	ck_assert_int_eq(shipc_job_submit(h, "work", NULL, &job), 0);
	shipc_job_free(job);
	ck_assert_int_eq(shipc_kv_put(h, "beings_status", "a", "1", 1, NULL), 0);

	for (int round = 0; round < 3; round++) {
		cut();
		char key[32];
		snprintf(key, sizeof(key), "offline%d", round);
		ck_assert_msg(shipc_kv_put(h, "notes", key, "x", 1, NULL) == 0,
		              "%s", shipc_last_error(h, NULL, 0));
		struct shipc_emit em = {.event_type = "fleet.offline"};
		ck_assert_int_eq(shipc_emit(h, &em, NULL), 0);

		uint64_t t0 = fx_now_ms();
		ck_assert_int_eq(shipc_kv_put(h, "beings_status", "a", "2", 1, NULL),
		                 -1);
		ck_assert_int_eq(errno, EAGAIN);
		char err[256];
		shipc_last_error(h, err, sizeof(err));
		ck_assert_msg(strstr(err, "hub 'hub'"), "%s", err);
		struct shipc_kv_entry *e = NULL;
		ck_assert_int_eq(shipc_kv_get(h, "beings_status", "a", 0, &e), -1);
		ck_assert_int_eq(errno, EAGAIN);
		ck_assert_int_eq(shipc_job_submit(h, "work", NULL, &job), -1);
		ck_assert_msg(errno == EAGAIN, "errno %d: %s", errno,
		              shipc_last_error(h, NULL, 0));
		/* At once, not at a timeout (shipd's is 5 s). */
		ck_assert_uint_lt(fx_now_ms() - t0, 1500);

		restore();
		/* The hub answers again through the leaf (its interest comes
		 * back within a moment of the reconnect). */
		int rc = -1;
		for (int i = 0; i < 40 && rc != 0; i++) {
			rc = shipc_kv_put(h, "beings_status", "a", "3", 1, NULL);
			if (rc != 0)
				fx_sleep_ms(250);
		}
		ck_assert_msg(rc == 0, "put after the restore: %s",
		              shipc_last_error(h, err, sizeof(err)));
		if (shipc_job_submit(h, "work", NULL, &job) != 0) {
			show_log();
			ck_abort_msg("submit after the restore: %s",
			             shipc_last_error(h, err, sizeof(err)));
		}
		shipc_job_free(job);
	}
	/* Everything acknowledged while cut is there. */
	for (int round = 0; round < 3; round++) {
		char key[32];
		struct shipc_kv_entry *e = NULL;
		snprintf(key, sizeof(key), "offline%d", round);
		ck_assert_int_eq(shipc_kv_get(h, "notes", key, 0, &e), 0);
		shipc_kv_entry_free(e);
	}
	struct shipc_job_counts c;
	ck_assert_int_eq(shipc_job_counts(h, "work", &c), 0);
	ck_assert_uint_eq(c.queued, 4);
}
END_TEST

static bool hub_caught_up(void *arg)
{
	(void)arg;
	return stream_msgs(hub.node[0].url, "FLEET_EVENTS") ==
	       stream_msgs(robot.url, "SHIP_EVENTS");
}

/* shipd reports the uplink: up, then down within a few probes of a cut
 * (with the event uplink.down kept on the robot), what the hub has not
 * sourced yet growing with each event emitted meanwhile, then up again
 * and nothing waiting once the hub's stream has caught up, holding every
 * event once. */
START_TEST(uplink_state_and_backlog)
{
	char buf[4096];
	struct shipc_emit em = {.event_type = "fleet.first"};
	ck_assert_int_eq(shipc_emit(h, &em, NULL), 0);
	fx_api_at(hub.node[0].url, "$JS.API.STREAM.CREATE.FLEET_EVENTS",
	          "{\"name\":\"FLEET_EVENTS\",\"storage\":\"file\","
	          "\"num_replicas\":3,\"sources\":[{\"name\":\"SHIP_EVENTS\","
	          "\"external\":{\"api\":\"$JS.robot1.API\",\"deliver\":\"\"}}]}",
	          buf, sizeof(buf));
	ck_assert_msg(!strstr(buf, "\"error\""), "%s", buf);
	wait_uplink(SHIPC_UPLINK_UP, 0, true, 15000);
	struct shipc_uplink u;
	ck_assert_int_eq(shipc_uplink(h, &u), 0);
	ck_assert_str_eq(u.hub_domain, "hub");
	ck_assert_str_eq(u.domain, "robot1");
	ck_assert_str_eq(u.streams[0].hub_stream, "FLEET_EVENTS");
	uint64_t changes = u.changes;

	cut();
	wait_uplink(SHIPC_UPLINK_DOWN, UINT64_MAX, false, 5000);
	ck_assert_int_eq(shipc_uplink(h, &u), 0);
	ck_assert_msg(strstr(u.last_error, "hub 'hub'"), "%s", u.last_error);
	ck_assert_uint_eq(u.changes, changes + 1);
	ck_assert(u.jobs_on_hub && !u.events_on_hub && !u.kv_on_hub);
	ck_assert_str_eq(u.hub_buckets, "beings_status,ship_config,ship_health");
	for (int i = 0; i < 20; i++) {
		struct shipc_emit off = {.event_type = "fleet.offline"};
		ck_assert_int_eq(shipc_emit(h, &off, NULL), 0);
	}
	/* 20 and the uplink.down event at least. */
	wait_uplink(SHIPC_UPLINK_DOWN, 21, false, 5000);
	char out[4096];
	ck_assert_int_eq(shipctl(out, sizeof(out), "fleet", "status", NULL), 1);
	ck_assert_msg(strstr(out, "down to hub 'hub' from 'robot1'") &&
	                      strstr(out, "why:") &&
	                      strstr(out, "SHIP_EVENTS -> FLEET_EVENTS: ") &&
	                      strstr(out, "on the hub:  jobs, buckets"),
	              "%s", out);
	fx_api_at(robot.url, "$JS.API.STREAM.MSG.GET.SHIP_EVENTS",
	          "{\"last_by_subj\":\"ship.events.uplink.down\"}", buf,
	          sizeof(buf));
	ck_assert_msg(strstr(buf, "\"message\""), "%s", buf);

	restore();
	wait_uplink(SHIPC_UPLINK_UP, UINT64_MAX, false, 10000);
	ck_assert(fx_wait(hub_caught_up, NULL, 20000));
	wait_uplink(SHIPC_UPLINK_UP, 0, true, 10000);
	ck_assert_int_eq(shipc_uplink(h, &u), 0);
	ck_assert_uint_eq(u.changes, changes + 2);
	ck_assert_int_eq(shipctl(out, sizeof(out), "--json", "fleet", "status"),
	                 0);
	ck_assert_msg(strstr(out, "\"state\":\"up\"") &&
	                      strstr(out, "\"stream\":\"SHIP_EVENTS\","
	                                  "\"hub_stream\":\"FLEET_EVENTS\"") &&
	                      strstr(out, "\"waiting_msgs\":0,"),
	              "%s", out);
}
END_TEST

/* One hub node killed (the leader of the hub bucket's R3 stream): the
 * robot's writes to it through shipd only need retrying (EAGAIN or
 * ETIMEDOUT while the hub elects a leader), and every one is there. */
START_TEST(hub_node_killed_hub_kv_goes_on)
{
	struct shipc_kv_config cfg = {.bucket = "beings_status", .replicas = 3};
	ck_assert_msg(shipc_kv_bucket_create(h, &cfg, NULL) == 0, "%s",
	              shipc_last_error(h, NULL, 0));
	char buf[8192], leader[32] = "";
	fx_api_at(hub.node[0].url, "$JS.API.STREAM.INFO.KV_beings_status", "", buf,
	          sizeof(buf));
	ck_assert_msg(fx_json_str(buf, "\"cluster\"", "leader", leader,
	                          sizeof(leader)),
	              "%s", buf);
	struct fx_node *victim = fx_hub_node(&hub, leader);
	ck_assert_ptr_nonnull(victim);
	int retried = 0;
	for (int i = 0; i < 60; i++) {
		if (i == 20)
			fx_node_kill(victim);
		char key[16], val[16], err[256];
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "v%d", i);
		uint64_t t0 = fx_now_ms();
		int rc;
		while ((rc = shipc_kv_put(h, "beings_status", key, val, strlen(val),
		                          NULL)) != 0 &&
		       fx_now_ms() - t0 < 40000) {
			ck_assert_msg(errno == EAGAIN || errno == ETIMEDOUT,
			              "put %d: errno %d: %s", i, errno,
			              shipc_last_error(h, err, sizeof(err)));
			retried++;
			fx_sleep_ms(200);
		}
		ck_assert_msg(rc == 0, "put %d: %s", i,
		              shipc_last_error(h, err, sizeof(err)));
	}
	for (int i = 0; i < 60; i++) {
		char key[16], val[16];
		struct shipc_kv_entry *e = NULL;
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "v%d", i);
		ck_assert_int_eq(shipc_kv_get(h, "beings_status", key, 0, &e), 0);
		ck_assert_str_eq(e->value, val);
		shipc_kv_entry_free(e);
	}
	fprintf(stderr, "hub node %s killed: %d tries refused, none lost\n",
	        leader, retried);
	/* Only around the election; not every write of the rest. */
	ck_assert_int_lt(retried, 100);
}
END_TEST

/* Through $JS.<hub>.API a write to a bucket that is not there is not
 * answered at all: shipd looks a hub bucket up before its first write,
 * so a missing one is ENOENT at once; a queue deleted on the hub (by
 * another robot's shipd) costs one timeout (shipd knew the bucket), after
 * which it is looked up again and made again. */
START_TEST(hub_bucket_missing_or_deleted_elsewhere)
{
	char err[256];
	uint64_t t0 = fx_now_ms();
	ck_assert_int_eq(shipc_kv_put(h, "ship_config", "k", "v", 1, NULL), -1);
	ck_assert_msg(errno == ENOENT, "errno %d: %s", errno,
	              shipc_last_error(h, err, sizeof(err)));
	ck_assert_uint_lt(fx_now_ms() - t0, 2000);

	struct shipc_job *job = NULL;
	ck_assert_int_eq(shipc_job_submit(h, "work", NULL, &job), 0);
	shipc_job_free(job);
	char buf[1024];
	fx_api_at(hub.node[0].url, "$JS.API.STREAM.DELETE.KV_JOBS_work", "", buf,
	          sizeof(buf));
	ck_assert_msg(strstr(buf, "\"success\":true"), "%s", buf);
	int rc = -1;
	for (int i = 0; i < 5 && rc != 0; i++) {
		t0 = fx_now_ms();
		rc = shipc_job_submit(h, "work", NULL, &job);
		if (rc == 0)
			shipc_job_free(job);
		else
			ck_assert_msg(errno == EAGAIN || errno == ENOENT ||
			                      (i == 0 && errno == ETIMEDOUT),
			              "try %d: errno %d: %s", i, errno,
			              shipc_last_error(h, err, sizeof(err)));
		ck_assert_msg(i == 0 || fx_now_ms() - t0 < 4000,
		              "try %d waited %llu ms: %s", i,
		              (unsigned long long)(fx_now_ms() - t0),
		              rc ? shipc_last_error(h, err, sizeof(err)) : "");
	}
	ck_assert_msg(rc == 0, "%s", shipc_last_error(h, err, sizeof(err)));
}
END_TEST

/* A hub domain of 60 characters and a bucket of 250: the subjects shipd
 * reads it on still fit, and a value put is read back. */
START_TEST(long_domain_and_bucket)
{
	char b[251];
	memset(b, 'b', sizeof(b) - 1);
	b[sizeof(b) - 1] = '\0';
	char opt[300];
	snprintf(opt, sizeof(opt), "%s", b);
	bucket(opt);
	uint64_t rev = 0;
	char err[256];
	ck_assert_msg(shipc_kv_put(h, b, "k", "v", 1, &rev) == 0, "%s",
	              shipc_last_error(h, err, sizeof(err)));
	struct shipc_kv_entry *e = NULL;
	uint64_t t0 = fx_now_ms();
	ck_assert_msg(shipc_kv_get(h, b, "k", 0, &e) == 0, "%s",
	              shipc_last_error(h, err, sizeof(err)));
	ck_assert_str_eq(e->value, "v");
	ck_assert_uint_eq(e->revision, rev);
	shipc_kv_entry_free(e);
	ck_assert_uint_lt(fx_now_ms() - t0, 2000);
}
END_TEST

/* Lines of shipd's log holding text. */
static int log_count(const char *text)
{
	FILE *f = fopen(sd.log, "r");
	char line[1024];
	int n = 0;
	while (f && fgets(line, sizeof(line), f))
		n += strstr(line, text) != NULL;
	if (f)
		fclose(f);
	return n;
}

/* hub_domain set on a server that is no leaf and has no JetStream
 * domain: shipd says so once, and still finds the hub out of reach. */
static struct natsd plain;

static void setup_plain(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(natsd_start(&plain, 0), 0);
	static const char *const extra[] = {"-o", "hub_domain=hub", "-o",
	                                    "uplink_probe_ms=200", NULL};
	ck_assert_int_eq(shipd_start(&sd, plain.url, extra), 0);
	ck_assert(fx_wait_link(sd.sock, 10000));
	h = fx_connect(sd.sock, "fleet-test", 5000);
	ck_assert_ptr_nonnull(h);
}

static void teardown_plain(void)
{
	shipc_close(h);
	h = NULL;
	shipd_cleanup(&sd);
	natsd_cleanup(&plain);
}

START_TEST(no_leaf_no_domain)
{
	wait_uplink(SHIPC_UPLINK_DOWN, UINT64_MAX, false, 5000);
	struct shipc_uplink u;
	ck_assert_int_eq(shipc_uplink(h, &u), 0);
	ck_assert_str_eq(u.domain, "");
	/* Many probes later, one warning. */
	fx_sleep_ms(1500);
	ck_assert_int_eq(log_count("has no JetStream domain"), 1);
}
END_TEST

static void setup_long(void)
{
	hub_name = "h123456789a123456789b123456789c123456789d123456789e123456789";
	more_opt = "kv_domain=hub";
	setup();
}

static Suite *suite(void)
{
	Suite *s = suite_create("fleet-domains");
	TCase *t = tcase_create("domains");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 180);
	tcase_add_test(t, blocks_use_their_domains);
	tcase_add_test(t, uplink_down_local_goes_on_hub_fails_fast);
	tcase_add_test(t, uplink_state_and_backlog);
	tcase_add_test(t, hub_node_killed_hub_kv_goes_on);
	tcase_add_test(t, hub_bucket_missing_or_deleted_elsewhere);
	suite_add_tcase(s, t);
	TCase *l = tcase_create("long names");
	tcase_add_checked_fixture(l, setup_long, teardown);
	tcase_set_timeout(l, 120);
	tcase_add_test(l, long_domain_and_bucket);
	suite_add_tcase(s, l);
	TCase *p = tcase_create("no leaf");
	tcase_add_checked_fixture(p, setup_plain, teardown_plain);
	tcase_set_timeout(p, 60);
	tcase_add_test(p, no_leaf_no_domain);
	suite_add_tcase(s, p);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
