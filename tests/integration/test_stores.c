/* SPDX-License-Identifier: MIT */
/* noesis-ship's snapshots and artifacts through libshipc against a real
 * nats-server -js: ids, bodies and descriptions exactly as noesis-ship
 * writes them, takes in one second that never overwrite each other (one
 * app or two at once), listing, cleanup, snapshots noesis-ship wrote, and
 * artifacts from memory, fds and files. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

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
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

static struct shipc *conn(void)
{
	struct shipc *h = shipc_connect(sd.sock, "test_stores");
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	for (int i = 0; i < 200; i++) {
		if (shipc_status(h, &st) == 0 && st.link == SHIPC_LINK_CONNECTED)
			break;
		fx_sleep_ms(25);
	}
	return h;
}

static const char *why(struct shipc *h)
{
	static char buf[256];
	return shipc_last_error(h, buf, sizeof(buf));
}

static char *take(struct shipc *h, const char *being, const char *state,
                  const char *reason)
{
	char *id = NULL;
	ck_assert_msg(shipc_snapshot_take(h, being, state, reason, &id) == 0,
	              "take %s: %s", being, why(h));
	ck_assert_ptr_nonnull(id);
	return id;
}

static void expect_state(struct shipc *h, const char *id, const char *want)
{
	char *state;
	size_t len;
	ck_assert_msg(shipc_snapshot_restore(h, id, &state, &len) == 0,
	              "restore %s: %s", id, why(h));
	ck_assert_str_eq(state, want);
	ck_assert_uint_eq(len, strlen(want));
	free(state);
}

/* The raw object, NUL-terminated, and its information. */
static char *raw(struct shipc *h, const char *bucket, const char *name,
                 struct shipc_obj_info **info)
{
	void *data;
	size_t len;
	ck_assert_msg(shipc_obj_get_mem(h, bucket, name, &data, &len, 1 << 20,
	                                info) == 0,
	              "get %s: %s", name, why(h));
	char *s = malloc(len + 1);
	memcpy(s, data, len);
	s[len] = '\0';
	free(data);
	return s;
}

static const char *meta(const struct shipc_obj_info *o, const char *k)
{
	for (size_t i = 0; i < o->n_metadata; i++)
		if (!strcmp(o->metadata[i].key, k))
			return o->metadata[i].value;
	return NULL;
}

static void put_raw(struct shipc *h, const char *bucket, const char *name,
                    const char *body, const char *description)
{
	struct shipc_obj_put_opts o = {.description = description};
	ck_assert_msg(shipc_obj_put_mem(h, bucket, name, body, strlen(body), &o,
	                                NULL) == 0,
	              "put %s: %s", name, why(h));
}

/* "YYYYMMDD_HHMMSS" of t, UTC. */
static void stamp_of(time_t t, char out[16])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 16, "%Y%m%d_%H%M%S", &tm);
}

/* ---- snapshots ---- */

START_TEST(take_and_restore)
{
	struct shipc *h = conn();
	struct shipc_obj_bucket_status st;
	ck_assert_int_eq(shipc_obj_bucket_status(h, "snapshots", &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	/* Pretty-printed in, compact out. */
	char *id = take(h, "r2d2",
	                "{ \"pos\" : [ 1, 2.5 ],\n  \"name\": \"caf\xc3\xa9 "
	                "\\\"x\\\"\", \"ok\": true }\n",
	                "before update");
	expect_state(h, id, "{\"pos\":[1,2.5],\"name\":\"caf\xc3\xa9 \\\"x\\\"\","
	                    "\"ok\":true}");
	/* The first take made the bucket, with the defaults. */
	ck_assert_int_eq(shipc_obj_bucket_status(h, "snapshots", &st), 0);
	ck_assert_uint_eq(st.ttl_ms, 0);
	ck_assert_int_eq(st.memory, 0);
	/* Any JSON value is a state. */
	const char *values[] = {"42", "\"text\"", "null", "[]", "-1.5e3"};
	for (size_t i = 0; i < 5; i++) {
		char *v = take(h, "misc", values[i], NULL);
		expect_state(h, v, values[i]);
		free(v);
	}
	ck_assert_int_eq(shipc_snapshot_delete(h, id), 0);
	ck_assert_int_eq(shipc_snapshot_delete(h, id), -1);
	ck_assert_int_eq(errno, ENOENT);
	char *state;
	ck_assert_int_eq(shipc_snapshot_restore(h, id, &state, NULL), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_snapshot_delete(h, "r2d2_20000101_000000"), -1);
	ck_assert_int_eq(errno, ENOENT);
	free(id);
	shipc_close(h);
}
END_TEST

START_TEST(wire_format)
{
	struct shipc *h = conn();
	char lo[16], hi[16];
	stamp_of(time(NULL), lo);
	char *id = take(h, "r2d2", "{\"battery\": 87, \"task\": null}",
	                "pre \"update\"\n\xe2\x9c\x93");
	stamp_of(time(NULL), hi);
	/* {being_id}_{YYYYMMDD_HHMMSS}, UTC, within the call. */
	ck_assert_uint_eq(strlen(id), strlen("r2d2_") + 15);
	ck_assert(!strncmp(id, "r2d2_", 5));
	ck_assert_msg(strcmp(id + 5, lo) >= 0 && strcmp(id + 5, hi) <= 0,
	              "id %s not within %s..%s", id, lo, hi);

	struct shipc_obj_info *o;
	char *body = raw(h, "snapshots", id, &o);
	ck_assert_str_eq(o->description, "pre \"update\"\n\xe2\x9c\x93");
	ck_assert_str_eq(meta(o, "being_id"), "r2d2");
	ck_assert_str_eq(meta(o, "reason"), "pre \"update\"\n\xe2\x9c\x93");

	/* noesis-ship's body, compact, in its order; "created" RFC 3339 UTC
	 * with +00:00, in the id's second. */
	json_error_t err;
	json_t *j = json_loads(body, 0, &err);
	ck_assert_msg(j != NULL, "body %s: %s", body, err.text);
	const char *created = json_string_value(json_object_get(j, "created"));
	ck_assert_ptr_nonnull(created);
	char want[512];
	snprintf(want, sizeof(want),
	         "{\"being_id\":\"r2d2\",\"reason\":\"pre \\\"update\\\"\\n"
	         "\xe2\x9c\x93\",\"state\":{\"battery\":87,\"task\":null},"
	         "\"created\":\"%s\"}",
	         created);
	ck_assert_str_eq(body, want);
	ck_assert_uint_eq(json_object_size(j), 4);
	char day[16];
	snprintf(day, sizeof(day), "%.4s%.2s%.2s_%.2s%.2s%.2s", created,
	         created + 5, created + 8, created + 11, created + 14,
	         created + 17);
	ck_assert_str_eq(day, id + 5);
	size_t cl = strlen(created);
	ck_assert_uint_ge(cl, 25);
	ck_assert_str_eq(created + cl - 6, "+00:00");
	ck_assert_int_eq(created[10], 'T');
	ck_assert(cl == 25 || created[19] == '.');
	json_decref(j);
	free(body);
	shipc_obj_info_free(o);
	free(id);
	shipc_close(h);
}
END_TEST

START_TEST(same_second_never_overwrites)
{
	struct shipc *h = conn();
	char *a = NULL, *b = NULL, *c = NULL, being[16] = "";
	for (int tries = 0; tries < 5; tries++) {
		free(a);
		free(b);
		free(c);
		/* A being of its own each try: a try that crossed a second
		 * left ids of the new second taken (CI saw _3 first). */
		snprintf(being, sizeof(being), "twin%d", tries);
		time_t t0 = time(NULL);
		a = take(h, being, "{\"n\":1}", "one");
		b = take(h, being, "{\"n\":2}", "two");
		c = take(h, being, "{\"n\":3}", "three");
		if (time(NULL) == t0)
			break;
	}
	char want[64];
	snprintf(want, sizeof(want), "%s_2", a);
	ck_assert_str_eq(b, want);
	snprintf(want, sizeof(want), "%s_3", a);
	ck_assert_str_eq(c, want);
	expect_state(h, a, "{\"n\":1}");
	expect_state(h, b, "{\"n\":2}");
	expect_state(h, c, "{\"n\":3}");
	/* A deleted id is free again: the next take of that second may
	 * take it (nothing else of the being is lost). */
	struct shipc_snapshot *list;
	size_t n;
	ck_assert_int_eq(shipc_snapshot_list(h, being, &list, &n), 0);
	ck_assert_uint_ge(n, 3);
	ck_assert_str_eq(list[0].being_id, being);
	shipc_snapshot_list_free(list, n);
	free(a);
	free(b);
	free(c);
	shipc_close(h);
}
END_TEST

/* Every id of a second taken already: a clear error, nothing replaced. */
START_TEST(ids_of_a_second_run_out)
{
	struct shipc *h = conn();
	struct shipc_obj_bucket_config c = {.bucket = "snapshots"};
	ck_assert_int_eq(shipc_obj_bucket_create(h, &c, NULL), 0);
	for (int round = 0; round < 3; round++) {
		/* Fill a second a little ahead, then take in it. */
		time_t s = time(NULL) + 5;
		char stamp[16], name[64];
		stamp_of(s, stamp);
		for (int k = 1; k <= 100; k++) {
			if (k == 1)
				snprintf(name, sizeof(name), "full_%s", stamp);
			else
				snprintf(name, sizeof(name), "full_%s_%d", stamp, k);
			put_raw(h, "snapshots", name, "{\"state\":0}", "filler");
		}
		if (time(NULL) >= s)
			continue; /* slow: filled too late */
		while (time(NULL) < s)
			fx_sleep_ms(20);
		char *id = NULL;
		int r = shipc_snapshot_take(h, "full", "{\"late\":true}", "x", &id);
		if (r == 0 && strstr(id, stamp) == NULL) {
			free(id); /* slow: the take fell in the next second */
			continue;
		}
		ck_assert_int_eq(r, -1);
		ck_assert_int_eq(errno, EEXIST);
		ck_assert_msg(strstr(why(h), "no id left") != NULL, "%s", why(h));
		snprintf(name, sizeof(name), "full_%s_100", stamp);
		expect_state(h, name, "0");
		shipc_close(h);
		return;
	}
	ck_abort_msg("never took within the filled second");
}
END_TEST

struct taker {
	int who;
	pthread_barrier_t *go;
	char *ids[6];
	char states[6][64];
};

static void *taker(void *arg)
{
	struct taker *t = arg;
	struct shipc *h = conn();
	pthread_barrier_wait(t->go);
	for (int i = 0; i < 6; i++) {
		snprintf(t->states[i], sizeof(t->states[i]),
		         "{\"who\":%d,\"i\":%d}", t->who, i);
		t->ids[i] = NULL;
		if (shipc_snapshot_take(h, "swarm", t->states[i], "race",
		                        &t->ids[i]) < 0)
			break;
	}
	shipc_close(h);
	return NULL;
}

START_TEST(concurrent_takes_never_overwrite)
{
	pthread_barrier_t go;
	pthread_t th[2];
	struct taker t[2] = {{.who = 0, .go = &go}, {.who = 1, .go = &go}};
	struct shipc *h = conn();
	/* The bucket exists: both race on the ids, not on creating it. */
	char *first = take(h, "other", "1", NULL);
	free(first);
	pthread_barrier_init(&go, NULL, 2);
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, taker, &t[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
	int shared = 0;
	for (int a = 0; a < 12; a++) {
		struct taker *ta = &t[a / 6];
		ck_assert_msg(ta->ids[a % 6] != NULL, "take %d failed", a);
		expect_state(h, ta->ids[a % 6], ta->states[a % 6]);
		for (int b = a + 1; b < 12; b++) {
			const char *x = ta->ids[a % 6], *y = t[b / 6].ids[b % 6];
			ck_assert_str_ne(x, y);
			/* Same second: same "swarm_YYYYMMDD_HHMMSS" start. */
			shared += !strncmp(x, y, strlen("swarm_") + 15);
		}
	}
	ck_assert_int_gt(shared, 0);
	struct shipc_snapshot *list;
	size_t n;
	ck_assert_int_eq(shipc_snapshot_list(h, "swarm", &list, &n), 0);
	ck_assert_uint_eq(n, 12);
	shipc_snapshot_list_free(list, n);
	for (int a = 0; a < 12; a++)
		free(t[a / 6].ids[a % 6]);
	shipc_close(h);
}
END_TEST

START_TEST(list_newest_first)
{
	struct shipc *h = conn();
	struct shipc_snapshot *list;
	size_t n;
	/* No bucket: nothing, and none made. */
	ck_assert_int_eq(shipc_snapshot_list(h, NULL, &list, &n), 0);
	ck_assert_uint_eq(n, 0);
	shipc_snapshot_list_free(list, n);
	struct shipc_obj_bucket_status st;
	ck_assert_int_eq(shipc_obj_bucket_status(h, "snapshots", &st), -1);

	uint64_t t0 = (uint64_t)time(NULL) * 1000000000u;
	char *ids[4];
	ids[0] = take(h, "alpha", "{\"v\":0}", "boot");
	fx_sleep_ms(20);
	ids[1] = take(h, "beta", "{\"v\":1}", "");
	fx_sleep_ms(20);
	ids[2] = take(h, "alpha", "{\"v\":22}", "update");
	fx_sleep_ms(20);
	ids[3] = take(h, "alpha_x", "{\"v\":3}", "edge");
	uint64_t t1 = ((uint64_t)time(NULL) + 1) * 1000000000u;

	ck_assert_int_eq(shipc_snapshot_list(h, NULL, &list, &n), 0);
	ck_assert_uint_eq(n, 4);
	for (size_t i = 0; i < 4; i++) {
		ck_assert_str_eq(list[i].id, ids[3 - i]);
		ck_assert_uint_ge(list[i].created_ns, t0);
		ck_assert_uint_le(list[i].created_ns, t1);
		if (i)
			ck_assert_uint_ge(list[i - 1].created_ns,
			                  list[i].created_ns);
	}
	ck_assert_str_eq(list[0].being_id, "alpha_x");
	ck_assert_str_eq(list[0].reason, "edge");
	ck_assert_str_eq(list[2].being_id, "beta");
	ck_assert_str_eq(list[2].reason, "");
	/* The size is the stored JSON's. */
	struct shipc_obj_info *o;
	char *body = raw(h, "snapshots", ids[2], &o);
	ck_assert_uint_eq(list[1].size, strlen(body));
	free(body);
	shipc_obj_info_free(o);
	shipc_snapshot_list_free(list, n);

	/* One being's: "alpha" is not "alpha_x". */
	ck_assert_int_eq(shipc_snapshot_list(h, "alpha", &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(list[0].id, ids[2]);
	ck_assert_str_eq(list[0].reason, "update");
	ck_assert_str_eq(list[1].id, ids[0]);
	ck_assert_str_eq(list[1].being_id, "alpha");
	shipc_snapshot_list_free(list, n);
	ck_assert_int_eq(shipc_snapshot_list(h, "nobody", &list, &n), 0);
	ck_assert_uint_eq(n, 0);
	shipc_snapshot_list_free(list, n);
	for (int i = 0; i < 4; i++)
		free(ids[i]);
	shipc_close(h);
}
END_TEST

/* Snapshots the Rust and the Python noesis-ship wrote: no metadata, the
 * reason in the description, Python's body pretty-printed. */
START_TEST(noesis_written_snapshots)
{
	struct shipc *h = conn();
	struct shipc_obj_bucket_config c = {.bucket = "snapshots"};
	ck_assert_int_eq(shipc_obj_bucket_create(h, &c, NULL), 0);
	put_raw(h, "snapshots", "old-robot_20250101_120000",
	        "{\"being_id\":\"old-robot\",\"reason\":\"patrol\",\"state\":"
	        "{\"room\":7},\"created\":\"2025-01-01T12:00:00.5+00:00\"}",
	        "patrol");
	put_raw(h, "snapshots", "py-bot_20250102_080910",
	        "{\n  \"being_id\": \"py-bot\",\n  \"reason\": \"nightly\",\n"
	        "  \"state\": {\n    \"queue\": [\n      1,\n      2\n    ]\n"
	        "  },\n  \"timestamp\": \"2025-01-02T08:09:10.123456\"\n}",
	        "Snapshot: nightly");
	put_raw(h, "snapshots", "cam_2_20250103_000000_3",
	        "{\"being_id\":\"cam_2\",\"state\":[],\"reason\":\"\"}", "");
	put_raw(h, "snapshots", "stray", "{\"state\":1}", "hand made");
	put_raw(h, "snapshots", "broken_20250101_000000", "{\"state\":", "x");
	put_raw(h, "snapshots", "empty_20250101_000000", "{\"x\":1}", "x");

	expect_state(h, "old-robot_20250101_120000", "{\"room\":7}");
	expect_state(h, "py-bot_20250102_080910", "{\"queue\":[1,2]}");
	expect_state(h, "cam_2_20250103_000000_3", "[]");
	char *state;
	ck_assert_int_eq(shipc_snapshot_restore(h, "broken_20250101_000000",
	                                        &state, NULL),
	                 -1);
	ck_assert_int_eq(errno, EBADMSG);
	ck_assert_int_eq(shipc_snapshot_restore(h, "empty_20250101_000000",
	                                        &state, NULL),
	                 -1);
	ck_assert_int_eq(errno, EBADMSG);
	ck_assert_msg(strstr(why(h), "no \"state\"") != NULL, "%s", why(h));

	struct shipc_snapshot *list;
	size_t n;
	ck_assert_int_eq(shipc_snapshot_list(h, NULL, &list, &n), 0);
	ck_assert_uint_eq(n, 6);
	int seen = 0;
	for (size_t i = 0; i < n; i++) {
		const struct shipc_snapshot *s = &list[i];
		if (!strcmp(s->id, "old-robot_20250101_120000")) {
			ck_assert_str_eq(s->being_id, "old-robot");
			ck_assert_str_eq(s->reason, "patrol");
			seen |= 1;
		} else if (!strcmp(s->id, "py-bot_20250102_080910")) {
			ck_assert_str_eq(s->being_id, "py-bot");
			ck_assert_str_eq(s->reason, "Snapshot: nightly");
			seen |= 2;
		} else if (!strcmp(s->id, "cam_2_20250103_000000_3")) {
			ck_assert_str_eq(s->being_id, "cam_2");
			seen |= 4;
		} else if (!strcmp(s->id, "stray")) {
			ck_assert_str_eq(s->being_id, "");
			ck_assert_str_eq(s->reason, "hand made");
			seen |= 8;
		}
	}
	ck_assert_int_eq(seen, 15);
	shipc_snapshot_list_free(list, n);
	ck_assert_int_eq(shipc_snapshot_list(h, "cam_2", &list, &n), 0);
	ck_assert_uint_eq(n, 1);
	shipc_snapshot_list_free(list, n);
	ck_assert_int_eq(shipc_snapshot_list(h, "cam", &list, &n), 0);
	ck_assert_uint_eq(n, 0);
	shipc_snapshot_list_free(list, n);
	shipc_close(h);
}
END_TEST

static size_t count(struct shipc *h, const char *being)
{
	struct shipc_snapshot *list;
	size_t n;
	ck_assert_int_eq(shipc_snapshot_list(h, being, &list, &n), 0);
	shipc_snapshot_list_free(list, n);
	return n;
}

START_TEST(cleanup_keeps_the_newest)
{
	struct shipc *h = conn();
	size_t deleted = 99;
	/* Nothing yet: nothing to do. */
	ck_assert_int_eq(shipc_snapshot_cleanup(h, NULL, 0, 0, &deleted), 0);
	ck_assert_uint_eq(deleted, 0);
	char *old[5], *fresh;
	for (int i = 0; i < 3; i++)
		old[i] = take(h, "c", "{\"old\":true}", "old");
	for (int i = 3; i < 5; i++)
		old[i] = take(h, "d", "{\"old\":true}", "old");
	put_raw(h, "snapshots", "stray", "{\"state\":1}", "");
	fx_sleep_ms(2500);
	fresh = take(h, "c", "{\"old\":false}", "new");

	/* Older than an hour: none. */
	ck_assert_int_eq(shipc_snapshot_cleanup(h, NULL, 3600000, 0, &deleted),
	                 0);
	ck_assert_uint_eq(deleted, 0);
	/* c's older than 2 s, keeping c's newest 2 (fresh and one old). */
	ck_assert_int_eq(shipc_snapshot_cleanup(h, "c", 2000, 2, &deleted), 0);
	ck_assert_uint_eq(deleted, 2);
	ck_assert_uint_eq(count(h, "c"), 2);
	ck_assert_uint_eq(count(h, "d"), 2);
	expect_state(h, fresh, "{\"old\":false}");
	expect_state(h, old[2], "{\"old\":true}");
	/* Every being, keeping 1: one of d's and c's last old one. */
	ck_assert_int_eq(shipc_snapshot_cleanup(h, NULL, 2000, 1, &deleted), 0);
	ck_assert_uint_eq(deleted, 2);
	ck_assert_uint_eq(count(h, "c"), 1);
	ck_assert_uint_eq(count(h, "d"), 1);
	expect_state(h, fresh, "{\"old\":false}");
	expect_state(h, old[4], "{\"old\":true}");
	/* keep 0: everything old goes, the being-less object stays. */
	ck_assert_int_eq(shipc_snapshot_cleanup(h, NULL, 2000, 0, NULL), 0);
	ck_assert_uint_eq(count(h, "d"), 0);
	ck_assert_uint_eq(count(h, "c"), 1);
	ck_assert_uint_eq(count(h, NULL), 2);
	expect_state(h, "stray", "1");
	for (int i = 0; i < 5; i++)
		free(old[i]);
	free(fresh);
	shipc_close(h);
}
END_TEST

START_TEST(bad_input_refused)
{
	struct shipc *h = conn();
	const char *bad[] = {"{bad", "", "  ", "{\"a\":1} x", "{'a':1}",
	                     "[1,]", "01", "\"\\ud800\"", "\"\xff\""};
	char *id = NULL;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(shipc_snapshot_take(h, "r", bad[i], "x", &id), -1);
		ck_assert_int_eq(errno, EINVAL);
	}
	ck_assert_int_eq(shipc_snapshot_take(h, "r", NULL, "x", &id), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shipc_snapshot_take(h, "", "1", "x", &id), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shipc_snapshot_take(h, NULL, "1", "x", &id), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shipc_snapshot_take(h, "r\xff", "1", "x", &id), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shipc_snapshot_take(h, "r", "1", "\xc3", &id), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(id);
	/* Nothing was stored, not even the bucket. */
	struct shipc_obj_bucket_status st;
	ck_assert_int_eq(shipc_obj_bucket_status(h, "snapshots", &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	char *state;
	ck_assert_int_eq(shipc_snapshot_restore(h, "r_20250101_000000", &state,
	                                        NULL),
	                 -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_snapshot_delete(h, ""), -1);
	ck_assert_int_eq(errno, EINVAL);
	/* shipd's own checks of a name still apply. */
	char longname[2048];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ck_assert_int_eq(shipc_snapshot_take(h, longname, "1", "", &id), -1);
	ck_assert_int_eq(errno, EINVAL);
	shipc_close(h);
}
END_TEST

/* A bucket made beforehand with other settings is used as it is. */
START_TEST(existing_bucket_kept)
{
	struct shipc *h = conn();
	struct shipc_obj_bucket_config c = {.bucket = "snapshots",
	                                    .description = "ours",
	                                    .ttl_ms = 86400000};
	struct shipc_obj_bucket_status st;
	ck_assert_int_eq(shipc_obj_bucket_create(h, &c, NULL), 0);
	char *id = take(h, "b", "{}", "r");
	ck_assert_int_eq(shipc_obj_bucket_status(h, "snapshots", &st), 0);
	ck_assert_str_eq(st.description, "ours");
	ck_assert_uint_eq(st.ttl_ms, 86400000);
	c.bucket = "artifacts";
	ck_assert_int_eq(shipc_obj_bucket_create(h, &c, NULL), 0);
	int fd = open("/dev/null", O_RDONLY);
	ck_assert_int_eq(shipc_artifact_store_fd(h, "a", fd, "t", NULL, NULL),
	                 0);
	close(fd);
	ck_assert_int_eq(shipc_obj_bucket_status(h, "artifacts", &st), 0);
	ck_assert_str_eq(st.description, "ours");
	free(id);
	shipc_close(h);
}
END_TEST

/* ---- artifacts ---- */

static const struct shipc_artifact *find(const struct shipc_artifact *l,
                                         size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(l[i].name, name))
			return &l[i];
	ck_abort_msg("no artifact %s", name);
	return NULL;
}

START_TEST(artifacts)
{
	struct shipc *h = conn();
	struct shipc_artifact *list;
	struct shipc_obj_info *o;
	size_t n;
	ck_assert_int_eq(shipc_artifact_list(h, &list, &n), 0);
	ck_assert_uint_eq(n, 0);
	shipc_artifact_list_free(list, n);

	/* From a pipe, to no bucket yet: made first, never after reading. */
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(write(p[1], "piped", 5), 5);
	close(p[1]);
	ck_assert_int_eq(shipc_artifact_store_fd(h, "note", p[0], "note", NULL,
	                                         NULL),
	                 0);
	close(p[0]);
	/* From memory, with an expedition: noesis-ship's description. */
	ck_assert_int_eq(shipc_artifact_store_mem(h, "map-7", "MAPDATA", 7,
	                                          "map", "exp-42", &o),
	                 0);
	ck_assert_str_eq(o->description, "type=map, expedition=exp-42");
	ck_assert_str_eq(meta(o, "type"), "map");
	ck_assert_str_eq(meta(o, "expedition"), "exp-42");
	ck_assert_uint_eq(o->size, 7);
	shipc_obj_info_free(o);
	/* From a file, without one. */
	char path[] = "/tmp/test_stores-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	char *big = malloc(300000);
	for (size_t i = 0; i < 300000; i++)
		big[i] = (char)(i * 7 + i / 300);
	ck_assert_int_eq(write(fd, big, 300000), 300000);
	close(fd);
	ck_assert_int_eq(shipc_artifact_store_file(h, "log-1", path, "log", "",
	                                           &o),
	                 0);
	ck_assert_str_eq(o->description, "type=log");
	ck_assert_str_eq(meta(o, "type"), "log");
	ck_assert_ptr_null(meta(o, "expedition"));
	shipc_obj_info_free(o);
	/* Written by noesis-ship: only the description. */
	put_raw(h, "artifacts", "model.bin", "weights",
	        "type=model, expedition=e9");
	put_raw(h, "artifacts", "plain", "x", "type=report");
	put_raw(h, "artifacts", "other", "y", "something else");

	/* Back from memory, an fd and a file, verified. */
	void *data;
	size_t len;
	ck_assert_int_eq(shipc_artifact_get_mem(h, "map-7", &data, &len, 1024,
	                                        NULL),
	                 0);
	ck_assert_uint_eq(len, 7);
	ck_assert(!memcmp(data, "MAPDATA", 7));
	free(data);
	char out[64];
	snprintf(out, sizeof(out), "%s.out", path);
	ck_assert_int_eq(shipc_artifact_get_file(h, "log-1", out, NULL), 0);
	fd = open(out, O_RDONLY);
	char *back = malloc(300001);
	ck_assert_int_eq(read(fd, back, 300001), 300000);
	ck_assert(!memcmp(back, big, 300000));
	close(fd);
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(shipc_artifact_get_fd(h, "note", p[1], &o), 0);
	close(p[1]);
	ck_assert_int_eq(read(p[0], out, sizeof(out)), 5);
	ck_assert(!memcmp(out, "piped", 5));
	close(p[0]);
	shipc_obj_info_free(o);
	ck_assert_int_eq(shipc_artifact_get_mem(h, "nope", &data, &len, 1024,
	                                        NULL),
	                 -1);
	ck_assert_int_eq(errno, ENOENT);

	ck_assert_int_eq(shipc_artifact_list(h, &list, &n), 0);
	ck_assert_uint_eq(n, 6);
	for (size_t i = 1; i < n; i++)
		ck_assert_int_lt(strcmp(list[i - 1].name, list[i].name), 0);
	const struct shipc_artifact *a = find(list, n, "map-7");
	ck_assert_str_eq(a->type, "map");
	ck_assert_str_eq(a->expedition, "exp-42");
	ck_assert_uint_eq(a->size, 7);
	ck_assert_int_eq(strncmp(a->digest, "SHA-256=", 8), 0);
	ck_assert_uint_gt(a->mtime_ns, 1600000000ull * 1000000000ull);
	a = find(list, n, "log-1");
	ck_assert_str_eq(a->type, "log");
	ck_assert_str_eq(a->expedition, "");
	ck_assert_uint_eq(a->size, 300000);
	a = find(list, n, "note");
	ck_assert_str_eq(a->type, "note");
	ck_assert_uint_eq(a->size, 5);
	a = find(list, n, "model.bin");
	ck_assert_str_eq(a->type, "model");
	ck_assert_str_eq(a->expedition, "e9");
	a = find(list, n, "plain");
	ck_assert_str_eq(a->type, "report");
	ck_assert_str_eq(a->expedition, "");
	a = find(list, n, "other");
	ck_assert_str_eq(a->type, "");
	shipc_artifact_list_free(list, n);

	/* Replacing keeps one artifact of the name. */
	ck_assert_int_eq(shipc_artifact_store_mem(h, "map-7", "v2", 2, "map",
	                                          NULL, &o),
	                 0);
	ck_assert_str_eq(o->description, "type=map");
	shipc_obj_info_free(o);
	ck_assert_int_eq(shipc_artifact_store_mem(h, "x", "v", 1, "", NULL,
	                                          NULL),
	                 -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shipc_artifact_store_mem(h, "x", "v", 1, NULL, "e",
	                                          NULL),
	                 -1);
	ck_assert_int_eq(errno, EINVAL);
	unlink(path);
	unlink(out);
	free(back);
	free(big);
	shipc_close(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("stores");
	TCase *tc = tcase_create("stores");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, take_and_restore);
	tcase_add_test(tc, wire_format);
	tcase_add_test(tc, same_second_never_overwrites);
	tcase_add_test(tc, ids_of_a_second_run_out);
	tcase_add_test(tc, concurrent_takes_never_overwrite);
	tcase_add_test(tc, list_newest_first);
	tcase_add_test(tc, noesis_written_snapshots);
	tcase_add_test(tc, cleanup_keeps_the_newest);
	tcase_add_test(tc, bad_input_refused);
	tcase_add_test(tc, existing_bucket_kept);
	tcase_add_test(tc, artifacts);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
