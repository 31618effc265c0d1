/* SPDX-License-Identifier: MIT */
/* KV through shipd against a real nats-server -js: buckets, entries, CAS,
 * watches (also across a NATS restart), the noesis-ship stores, and what
 * nats.c itself sees of what shipd wrote. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	nats_CloseAndWait(2000);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

static struct shipc *conn(void)
{
	struct shipc *h = shipc_connect(sd.sock, "test_kv");
	ck_assert_ptr_nonnull(h);
	/* Wait for shipd's NATS link. */
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

static void bucket(struct shipc *h, const char *name, uint32_t history,
                   uint64_t ttl_ms)
{
	struct shipc_kv_config c = {.bucket = name, .history = history,
	                            .ttl_ms = ttl_ms};
	ck_assert_msg(shipc_kv_bucket_create(h, &c, NULL) == 0, "create %s: %s",
	              name, why(h));
}

static uint64_t put(struct shipc *h, const char *b, const char *k,
                    const char *v)
{
	uint64_t rev = 0;
	ck_assert_msg(shipc_kv_put(h, b, k, v, strlen(v), &rev) == 0, "put: %s",
	              why(h));
	ck_assert_uint_gt(rev, 0);
	return rev;
}

static void expect_value(struct shipc *h, const char *b, const char *k,
                         uint64_t rev, const char *want)
{
	struct shipc_kv_entry *e = NULL;
	ck_assert_msg(shipc_kv_get(h, b, k, rev, &e) == 0, "get %s: %s", k,
	              why(h));
	ck_assert_str_eq(e->value, want);
	ck_assert_uint_eq(e->len, strlen(want));
	ck_assert_str_eq(e->key, k);
	ck_assert_uint_gt(e->created_ns, 1600000000ull * 1000000000ull);
	shipc_kv_entry_free(e);
}

static void expect_absent(struct shipc *h, const char *b, const char *k)
{
	struct shipc_kv_entry *e = NULL;
	ck_assert_int_eq(shipc_kv_get(h, b, k, 0, &e), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_ptr_null(e);
}

/* ---- a collector of watch entries ---- */

#define SEEN_MAX 4096

struct seen {
	pthread_mutex_t mu;
	unsigned n;
	bool init_done;
	unsigned entries_before_init;
	bool ended;
	int end_err;
	unsigned puts, dels, purges;
	unsigned meta_with_value;
	uint64_t last_rev;
	bool out_of_order;
	unsigned count[SEEN_MAX]; /* by revision */
	char last_key[128];
	char last_value[128];
};

static void on_entry(struct shipc *h, const struct shipc_kv_entry *e,
                     void *arg)
{
	struct seen *s = arg;
	pthread_mutex_lock(&s->mu);
	if (!e) {
		s->init_done = true;
		s->entries_before_init = s->n;
		pthread_mutex_unlock(&s->mu);
		return;
	}
	s->n++;
	s->puts += e->op == SHIPC_KV_PUT;
	s->dels += e->op == SHIPC_KV_DEL;
	s->purges += e->op == SHIPC_KV_PURGE;
	if (e->revision <= s->last_rev)
		s->out_of_order = true;
	s->last_rev = e->revision;
	if (e->revision < SEEN_MAX)
		s->count[e->revision]++;
	snprintf(s->last_key, sizeof(s->last_key), "%s", e->key);
	snprintf(s->last_value, sizeof(s->last_value), "%.*s", (int)e->len,
	         (const char *)e->value);
	s->meta_with_value += e->len != 0;
	pthread_mutex_unlock(&s->mu);
}

static void on_end(struct shipc *h, int err, void *arg)
{
	struct seen *s = arg;
	pthread_mutex_lock(&s->mu);
	s->ended = true;
	s->end_err = err;
	pthread_mutex_unlock(&s->mu);
}

#define SEEN_INIT {.mu = PTHREAD_MUTEX_INITIALIZER}

static unsigned seen_n(struct seen *s)
{
	pthread_mutex_lock(&s->mu);
	unsigned n = s->n;
	pthread_mutex_unlock(&s->mu);
	return n;
}

static bool wait_seen(struct shipc *h, struct seen *s, unsigned n, int ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)ms;
	while (seen_n(s) < n && fx_now_ms() < end)
		shipc_dispatch(h, 20);
	return seen_n(s) >= n;
}

static bool wait_init(struct shipc *h, struct seen *s, int ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)ms;
	while (!s->init_done && fx_now_ms() < end)
		shipc_dispatch(h, 20);
	return s->init_done;
}

/* ---- buckets ---- */

START_TEST(bucket_lifecycle)
{
	struct shipc *h = conn();
	struct shipc_kv_config c = {.bucket = "cfg", .history = 7,
	                            .ttl_ms = 60000, .max_value_size = 1024,
	                            .max_bytes = 1 << 20,
	                            .description = "a \"quoted\" bucket"};
	struct shipc_kv_status st;
	ck_assert_msg(shipc_kv_bucket_create(h, &c, &st) == 0, "%s", why(h));
	ck_assert_str_eq(st.bucket, "cfg");
	ck_assert_uint_eq(st.history, 7);
	ck_assert_uint_eq(st.ttl_ms, 60000);
	ck_assert_int_eq(st.max_value_size, 1024);
	ck_assert_int_eq(st.max_bytes, 1 << 20);
	ck_assert_str_eq(st.description, "a \"quoted\" bucket");
	/* Again with the same settings: fine; with others: EEXIST. */
	ck_assert_int_eq(shipc_kv_bucket_create(h, &c, NULL), 0);
	c.history = 3;
	ck_assert_int_eq(shipc_kv_bucket_create(h, &c, NULL), -1);
	ck_assert_int_eq(errno, EEXIST);
	bucket(h, "other", 1, 0);
	put(h, "cfg", "a", "1");
	ck_assert_int_eq(shipc_kv_bucket_info(h, "cfg", &st), 0);
	ck_assert_uint_eq(st.values, 1);
	ck_assert_uint_eq(st.last_revision, 1);
	struct shipc_kv_status *list;
	size_t n;
	ck_assert_int_eq(shipc_kv_bucket_list(h, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert(!strcmp(list[0].bucket, "cfg") || !strcmp(list[1].bucket, "cfg"));
	shipc_kv_bucket_list_free(list);
	ck_assert_int_eq(shipc_kv_bucket_delete(h, "other"), 0);
	ck_assert_int_eq(shipc_kv_bucket_info(h, "other", &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_kv_bucket_delete(h, "other"), -1);
	ck_assert_int_eq(errno, ENOENT);
	/* Bad settings and names: nothing created. */
	c.bucket = "bad.name";
	ck_assert_int_eq(shipc_kv_bucket_create(h, &c, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	struct shipc_kv_config big = {.bucket = "toomuch", .history = 65};
	ck_assert_int_eq(shipc_kv_bucket_create(h, &big, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shipc_kv_bucket_info(h, "toomuch", &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	shipc_close(h);
}
END_TEST

/* What the stream looks like to JetStream itself (ADR-8 config). */
START_TEST(bucket_stream_config)
{
	struct shipc *h = conn();
	bucket(h, "adr8", 5, 30000);
	shipc_close(h);
	natsConnection *nc;
	jsCtx *js;
	jsStreamInfo *si = NULL;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	ck_assert_int_eq(js_GetStreamInfo(&si, js, "KV_adr8", NULL, NULL), NATS_OK);
	jsStreamConfig *c = si->Config;
	ck_assert_int_eq(c->SubjectsLen, 1);
	ck_assert_str_eq(c->Subjects[0], "$KV.adr8.>");
	ck_assert_int_eq(c->MaxMsgsPerSubject, 5);
	ck_assert_int_eq(c->Discard, js_DiscardNew);
	ck_assert(c->AllowRollup);
	ck_assert(c->DenyDelete);
	ck_assert(c->AllowDirect);
	ck_assert_int_eq(c->MaxAge, 30000LL * 1000000);
	ck_assert_int_eq(c->Duplicates, 30000LL * 1000000);
	jsStreamInfo_Destroy(si);
	/* And nats.c's own KV API reads what shipd writes. */
	h = conn();
	put(h, "adr8", "x.y", "hello");
	kvStore *kv;
	kvEntry *e;
	ck_assert_int_eq(js_KeyValue(&kv, js, "adr8"), NATS_OK);
	ck_assert_int_eq(kvStore_Get(&e, kv, "x.y"), NATS_OK);
	ck_assert_str_eq(kvEntry_ValueString(e), "hello");
	kvEntry_Destroy(e);
	kvStore_Destroy(kv);
	shipc_close(h);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}
END_TEST

/* ---- entries ---- */

START_TEST(put_get_create_update)
{
	struct shipc *h = conn();
	bucket(h, "b", 5, 0);
	uint64_t r1 = put(h, "b", "k", "one");
	uint64_t r2 = put(h, "b", "k", "two");
	ck_assert_uint_eq(r2, r1 + 1);
	expect_value(h, "b", "k", 0, "two");
	expect_value(h, "b", "k", r1, "one");
	/* A revision of another key is not this key's. */
	uint64_t ro = put(h, "b", "other", "x");
	struct shipc_kv_entry *e;
	ck_assert_int_eq(shipc_kv_get(h, "b", "k", ro, &e), -1);
	ck_assert_int_eq(errno, ENOENT);
	expect_absent(h, "b", "missing");
	/* create: only if absent */
	uint64_t rc = 0;
	ck_assert_int_eq(shipc_kv_create(h, "b", "k", "three", 5, &rc), -1);
	ck_assert_int_eq(errno, ESTALE);
	ck_assert_ptr_nonnull(strstr(why(h), "current revision"));
	ck_assert_int_eq(shipc_kv_create(h, "b", "new", "n", 1, &rc), 0);
	/* update: only at the expected revision; the error says the current */
	uint64_t ru = 0;
	ck_assert_int_eq(shipc_kv_update(h, "b", "k", "u", 1, r1, &ru), -1);
	ck_assert_int_eq(errno, ESTALE);
	char want[64];
	snprintf(want, sizeof(want), "current revision %llu",
	         (unsigned long long)r2);
	ck_assert_msg(strstr(why(h), want), "message: %s", why(h));
	ck_assert_int_eq(shipc_kv_update(h, "b", "k", "u", 1, r2, &ru), 0);
	ck_assert_uint_gt(ru, r2);
	expect_value(h, "b", "k", 0, "u");
	/* delete, then create over the marker */
	ck_assert_int_eq(shipc_kv_delete(h, "b", "k"), 0);
	expect_absent(h, "b", "k");
	ck_assert_msg(shipc_kv_create(h, "b", "k", "again", 5, &rc) == 0, "%s",
	              why(h));
	expect_value(h, "b", "k", 0, "again");
	/* purge: the marker only is left, and create works over it too */
	ck_assert_int_eq(shipc_kv_purge(h, "b", "k"), 0);
	expect_absent(h, "b", "k");
	struct shipc_kv_entry *hist;
	size_t n;
	ck_assert_int_eq(shipc_kv_history(h, "b", "k", &hist, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(hist[0].op, SHIPC_KV_PURGE);
	shipc_kv_entries_free(hist, n);
	ck_assert_int_eq(shipc_kv_create(h, "b", "k", "fresh", 5, &rc), 0);
	/* empty values are values */
	put(h, "b", "empty", "");
	expect_value(h, "b", "empty", 0, "");
	shipc_close(h);
}
END_TEST

START_TEST(bad_input_writes_nothing)
{
	struct shipc *h = conn();
	struct shipc_kv_config c = {.bucket = "small", .max_value_size = 16};
	ck_assert_int_eq(shipc_kv_bucket_create(h, &c, NULL), 0);
	const char *bad_keys[] = {"a\\b", ".a", "a.", "a..b", "a b", "a*",
	                          "a>", "", "ü", "a\nb"};
	for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
		ck_assert_msg(shipc_kv_put(h, "small", bad_keys[i], "v", 1, NULL) == -1,
		              "key '%s' accepted", bad_keys[i]);
		ck_assert_int_eq(errno, EINVAL);
		struct shipc_kv_entry *e;
		ck_assert_int_eq(shipc_kv_get(h, "small", bad_keys[i], 0, &e), -1);
		ck_assert_int_eq(errno, EINVAL);
	}
	const char *bad_buckets[] = {"a.b", "a*", "a>", "", "a b", "a/b", "a\\b"};
	for (size_t i = 0; i < sizeof(bad_buckets) / sizeof(bad_buckets[0]); i++) {
		ck_assert_int_eq(shipc_kv_put(h, bad_buckets[i], "k", "v", 1, NULL), -1);
		ck_assert_int_eq(errno, EINVAL);
	}
	/* Unknown bucket: a clear not-found, nothing stored anywhere. */
	ck_assert_int_eq(shipc_kv_put(h, "nosuch", "k", "v", 1, NULL), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_ptr_nonnull(strstr(why(h), "nosuch"));
	struct shipc_kv_entry *e;
	ck_assert_int_eq(shipc_kv_get(h, "nosuch", "k", 0, &e), -1);
	ck_assert_int_eq(errno, ENOENT);
	struct seen ws = SEEN_INIT;
	ck_assert_uint_eq(shipc_kv_watch(h, "nosuch", NULL, 0, on_entry, on_end,
	                                 &ws), 0);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert(!ws.ended); /* a refused watch never calls back */
	/* Over the bucket's max value size, and over the server's payload. */
	char big[64];
	memset(big, 'x', sizeof(big));
	ck_assert_int_eq(shipc_kv_put(h, "small", "k", big, sizeof(big), NULL), -1);
	ck_assert_int_eq(errno, ENOBUFS);
	size_t huge_n = (1u << 20) + 10;
	char *huge = calloc(1, huge_n);
	struct shipc_kv_config c2 = {.bucket = "large"};
	ck_assert_int_eq(shipc_kv_bucket_create(h, &c2, NULL), 0);
	ck_assert_int_eq(shipc_kv_put(h, "large", "k", huge, huge_n, NULL), -1);
	ck_assert_int_eq(errno, ENOBUFS);
	free(huge);
	struct shipc_kv_status st;
	ck_assert_int_eq(shipc_kv_bucket_info(h, "small", &st), 0);
	ck_assert_uint_eq(st.values, 0);
	ck_assert_int_eq(shipc_kv_bucket_info(h, "large", &st), 0);
	ck_assert_uint_eq(st.values, 0);
	ck_assert_int_eq(shipc_kv_update(h, "small", "k", "v", 1, 0, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	shipc_close(h);
}
END_TEST

START_TEST(keys_and_history)
{
	struct shipc *h = conn();
	bucket(h, "kh", 3, 0);
	put(h, "kh", "a.one", "1");
	put(h, "kh", "a.two", "2");
	put(h, "kh", "b.one", "3");
	put(h, "kh", "gone", "4");
	ck_assert_int_eq(shipc_kv_delete(h, "kh", "gone"), 0);
	char **keys;
	size_t n;
	ck_assert_int_eq(shipc_kv_keys(h, "kh", NULL, &keys, &n), 0);
	ck_assert_uint_eq(n, 3);
	shipc_kv_keys_free(keys, n);
	ck_assert_int_eq(shipc_kv_keys(h, "kh", "a.*", &keys, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert(!strcmp(keys[0], "a.one") || !strcmp(keys[1], "a.one"));
	shipc_kv_keys_free(keys, n);
	ck_assert_int_eq(shipc_kv_keys(h, "kh", "zzz.>", &keys, &n), 0);
	ck_assert_uint_eq(n, 0);
	shipc_kv_keys_free(keys, n);
	ck_assert_int_eq(shipc_kv_keys(h, "kh", "a.b*", &keys, &n), -1);
	ck_assert_int_eq(errno, EINVAL);
	/* history keeps 3 revisions */
	for (int i = 0; i < 5; i++) {
		char v[8];
		snprintf(v, sizeof(v), "v%d", i);
		put(h, "kh", "h", v);
	}
	struct shipc_kv_entry *hist;
	ck_assert_int_eq(shipc_kv_history(h, "kh", "h", &hist, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(hist[0].value, "v2");
	ck_assert_str_eq(hist[2].value, "v4");
	ck_assert_uint_lt(hist[0].revision, hist[1].revision);
	shipc_kv_entries_free(hist, n);
	ck_assert_int_eq(shipc_kv_history(h, "kh", "gone", &hist, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(hist[1].op, SHIPC_KV_DEL);
	shipc_kv_entries_free(hist, n);
	ck_assert_int_eq(shipc_kv_history(h, "kh", "never", &hist, &n), -1);
	ck_assert_int_eq(errno, ENOENT);
	shipc_close(h);
}
END_TEST

START_TEST(ttl_expires_entries)
{
	struct shipc *h = conn();
	bucket(h, "short", 1, 1000);
	put(h, "short", "k", "v");
	expect_value(h, "short", "k", 0, "v");
	struct shipc_kv_entry *e = NULL;
	int r = 0;
	for (int i = 0; i < 60 && r == 0; i++) {
		fx_sleep_ms(100);
		r = shipc_kv_get(h, "short", "k", 0, &e);
		if (r == 0)
			shipc_kv_entry_free(e);
	}
	ck_assert_int_eq(r, -1);
	ck_assert_int_eq(errno, ENOENT);
	shipc_close(h);
}
END_TEST

/* ---- pipelining ---- */

struct counter {
	pthread_mutex_t mu;
	int done, failed;
	uint64_t max_rev;
};

static void on_put(struct shipc *h, uint64_t rev, int err, void *arg)
{
	struct counter *c = arg;
	pthread_mutex_lock(&c->mu);
	c->done++;
	c->failed += err != 0;
	if (rev > c->max_rev)
		c->max_rev = rev;
	pthread_mutex_unlock(&c->mu);
}

static void on_get(struct shipc *h, const struct shipc_kv_entry *e, int err,
                   void *arg)
{
	struct counter *c = arg;
	pthread_mutex_lock(&c->mu);
	c->done++;
	c->failed += err != 0 || !e || e->len == 0;
	pthread_mutex_unlock(&c->mu);
}

START_TEST(pipelined_puts_and_gets)
{
	struct shipc *h = conn();
	bucket(h, "pipe", 1, 0);
	struct counter c = {.mu = PTHREAD_MUTEX_INITIALIZER};
	enum { N = 2000 };
	for (int i = 0; i < N; i++) {
		char k[32];
		snprintf(k, sizeof(k), "k%d", i % 100);
		ck_assert_int_eq(shipc_kv_put_async(h, "pipe", k, "value", 5, on_put, &c), 0);
	}
	uint64_t end = fx_now_ms() + 20000;
	while (c.done < N && fx_now_ms() < end)
		shipc_dispatch(h, 50);
	ck_assert_int_eq(c.done, N);
	ck_assert_int_eq(c.failed, 0);
	ck_assert_uint_eq(c.max_rev, N);
	c.done = 0;
	for (int i = 0; i < N; i++) {
		char k[32];
		snprintf(k, sizeof(k), "k%d", i % 100);
		ck_assert_int_eq(shipc_kv_get_async(h, "pipe", k, 0, on_get, &c), 0);
	}
	end = fx_now_ms() + 20000;
	while (c.done < N && fx_now_ms() < end)
		shipc_dispatch(h, 50);
	ck_assert_int_eq(c.done, N);
	ck_assert_int_eq(c.failed, 0);
	shipc_close(h);
}
END_TEST

/* ---- watches ---- */

START_TEST(watch_initial_then_updates)
{
	struct shipc *h = conn();
	bucket(h, "w", 5, 0);
	put(h, "w", "a", "1");
	put(h, "w", "a", "2");
	put(h, "w", "b", "3");
	put(h, "w", "c.x", "4");
	struct seen s = SEEN_INIT;
	uint64_t id = shipc_kv_watch(h, "w", NULL, 0, on_entry, on_end, &s);
	ck_assert_msg(id != 0, "%s", why(h));
	ck_assert(wait_init(h, &s, 5000));
	ck_assert_uint_eq(s.entries_before_init, 3); /* latest per key */
	put(h, "w", "a", "5");
	ck_assert_int_eq(shipc_kv_delete(h, "w", "b"), 0);
	ck_assert_int_eq(shipc_kv_purge(h, "w", "c.x"), 0);
	ck_assert(wait_seen(h, &s, 6, 5000));
	ck_assert_uint_eq(s.dels, 1);
	ck_assert_uint_eq(s.purges, 1);
	ck_assert(!s.out_of_order);
	ck_assert_int_eq(shipc_kv_watch_stop(h, id), 0);
	uint64_t end = fx_now_ms() + 5000;
	while (!s.ended && fx_now_ms() < end)
		shipc_dispatch(h, 20);
	ck_assert(s.ended);
	ck_assert_int_eq(s.end_err, 0);
	shipc_close(h);
}
END_TEST

START_TEST(watch_options)
{
	struct shipc *h = conn();
	bucket(h, "wo", 5, 0);
	put(h, "wo", "a", "1");
	put(h, "wo", "a", "2");
	put(h, "wo", "b.x", "3");
	ck_assert_int_eq(shipc_kv_delete(h, "wo", "b.x"), 0);
	/* history: every revision */
	struct seen hs = SEEN_INIT;
	ck_assert(shipc_kv_watch(h, "wo", NULL, SHIPC_KV_WATCH_HISTORY, on_entry,
	                         on_end, &hs));
	ck_assert(wait_init(h, &hs, 5000));
	ck_assert_uint_eq(hs.entries_before_init, 4);
	/* ignore deletes: a and not b.x */
	struct seen is = SEEN_INIT;
	ck_assert(shipc_kv_watch(h, "wo", NULL, SHIPC_KV_WATCH_IGNORE_DELETES,
	                         on_entry, on_end, &is));
	ck_assert(wait_init(h, &is, 5000));
	ck_assert_uint_eq(is.entries_before_init, 1);
	ck_assert_uint_eq(is.dels, 0);
	/* updates only: the marker first, then only what is new */
	struct seen us = SEEN_INIT;
	ck_assert(shipc_kv_watch(h, "wo", NULL, SHIPC_KV_WATCH_UPDATES_ONLY,
	                         on_entry, on_end, &us));
	ck_assert(wait_init(h, &us, 5000));
	ck_assert_uint_eq(us.entries_before_init, 0);
	/* meta only on a pattern: no values */
	struct seen ms = SEEN_INIT;
	ck_assert(shipc_kv_watch(h, "wo", "a", SHIPC_KV_WATCH_META_ONLY, on_entry,
	                         on_end, &ms));
	ck_assert(wait_init(h, &ms, 5000));
	ck_assert_uint_eq(ms.entries_before_init, 1);
	/* an empty bucket pattern: the marker at once */
	struct seen es = SEEN_INIT;
	ck_assert(shipc_kv_watch(h, "wo", "nothing.>", 0, on_entry, on_end, &es));
	ck_assert(wait_init(h, &es, 5000));
	ck_assert_uint_eq(es.n, 0);
	put(h, "wo", "a", "new");
	ck_assert(wait_seen(h, &us, 1, 5000));
	ck_assert_str_eq(us.last_value, "new");
	ck_assert(wait_seen(h, &ms, 2, 5000));
	ck_assert_uint_eq(ms.meta_with_value, 0);
	ck_assert(wait_seen(h, &hs, 5, 5000));
	ck_assert(wait_seen(h, &is, 2, 5000));
	fx_sleep_ms(200);
	shipc_dispatch(h, 50);
	ck_assert_uint_eq(es.n, 0);
	ck_assert_uint_eq(us.n, 1);
	/* bad patterns */
	ck_assert_uint_eq(shipc_kv_watch(h, "wo", "a.b>", 0, on_entry, on_end, &es), 0);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(shipc_kv_watch(h, "wo", NULL, SHIPC_KV_WATCH_HISTORY |
	                                 SHIPC_KV_WATCH_UPDATES_ONLY, on_entry,
	                                 on_end, &es), 0);
	ck_assert_int_eq(errno, EINVAL);
	shipc_close(h);
	ck_assert(hs.ended && us.ended && ms.ended && is.ended && es.ended);
}
END_TEST

START_TEST(watch_survives_nats_restart)
{
	struct shipc *h = conn();
	struct shipc *w = conn();
	bucket(h, "wr", 1, 0);
	struct seen s = SEEN_INIT;
	ck_assert(shipc_kv_watch(w, "wr", NULL, 0, on_entry, on_end, &s));
	ck_assert(wait_init(w, &s, 5000));
	unsigned written = 0;
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 50; i++) {
			char k[16];
			snprintf(k, sizeof(k), "k%d", i % 7);
			put(h, "wr", k, "v");
			written++;
		}
		ck_assert(wait_seen(w, &s, written, 10000));
		natsd_stop(&nd);
		fx_sleep_ms(300);
		ck_assert_int_eq(natsd_restart(&nd), 0);
		/* Writes succeed again once shipd is back on NATS. */
		int r = -1;
		for (int i = 0; i < 200 && r < 0; i++) {
			r = shipc_kv_put(h, "wr", "after", "x", 1, NULL);
			if (r < 0)
				fx_sleep_ms(50);
			shipc_dispatch(w, 0);
		}
		ck_assert_msg(r == 0, "put after restart: %s", why(h));
		written++;
	}
	for (int i = 0; i < 20; i++) {
		put(h, "wr", "last", "v");
		written++;
	}
	ck_assert_msg(wait_seen(w, &s, written, 20000), "saw %u of %u", s.n,
	              written);
	fx_sleep_ms(300);
	shipc_dispatch(w, 50);
	ck_assert_uint_eq(s.n, written);
	ck_assert(!s.out_of_order);
	for (unsigned r = 1; r <= written && r < SEEN_MAX; r++)
		ck_assert_msg(s.count[r] == 1, "revision %u seen %u times", r,
		              s.count[r]);
	ck_assert(!s.ended);
	shipc_close(w);
	shipc_close(h);
}
END_TEST

/* ---- the noesis-ship stores ---- */

START_TEST(being_registry)
{
	struct shipc *h = conn();
	const char *caps[] = {"nav", "arm"};
	struct shipc_being *b;
	ck_assert_msg(shipc_being_register(h, "r2d2", caps, 2, &b) == 0, "%s",
	              why(h));
	ck_assert_str_eq(b->state, "idle");
	ck_assert_ptr_null(b->current_task);
	ck_assert_uint_eq(b->n_capabilities, 2);
	ck_assert(b->online);
	/* the exact noesis-ship JSON: 8 fields, nulls written, in order */
	json_t *j = json_loads(b->json, 0, NULL);
	ck_assert_ptr_nonnull(j);
	ck_assert_uint_eq(json_object_size(j), 8);
	ck_assert(json_is_null(json_object_get(j, "current_task")));
	ck_assert(json_is_null(json_object_get(j, "memory_mb")));
	ck_assert(json_is_null(json_object_get(j, "metadata")));
	ck_assert_int_eq(json_integer_value(json_object_get(j, "uptime_seconds")), 0);
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(j, "last_heartbeat")), "+00:00"));
	ck_assert_ptr_eq(strstr(b->json, "{\"being_id\":\"r2d2\",\"state\":\"idle\","
	                                 "\"current_task\":null,\"last_heartbeat\":"),
	                 b->json);
	json_decref(j);
	shipc_beings_free(b, 1);
	ck_assert_int_eq(shipc_being_update(h, "r2d2", "working", "fetch", &b), 0);
	ck_assert_str_eq(b->state, "working");
	ck_assert_str_eq(b->current_task, "fetch");
	shipc_beings_free(b, 1);
	ck_assert_int_eq(shipc_being_heartbeat(h, "r2d2"), 0);
	ck_assert_int_eq(shipc_being_get(h, "r2d2", &b), 0);
	ck_assert_str_eq(b->current_task, "fetch");
	shipc_beings_free(b, 1);
	ck_assert_int_eq(shipc_being_update(h, "c3po", "idle", NULL, NULL), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_being_update(h, "r2d2", "dancing", NULL, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shipc_being_register(h, "c3po", NULL, 0, NULL), 0);
	ck_assert_int_eq(shipc_being_update(h, "c3po", "offline", NULL, NULL), 0);
	struct shipc_being *list;
	size_t n;
	ck_assert_int_eq(shipc_beings_list(h, 0, 0, &list, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0].being_id, "r2d2");
	shipc_beings_free(list, n);
	ck_assert_int_eq(shipc_beings_list(h, 1, 0, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	shipc_beings_free(list, n);
	ck_assert_int_eq(shipc_being_unregister(h, "c3po"), 0);
	ck_assert_int_eq(shipc_being_get(h, "c3po", &b), -1);
	ck_assert_int_eq(errno, ENOENT);
	/* the bucket is noesis-ship's: 300 s, history 5 */
	struct shipc_kv_status st;
	ck_assert_int_eq(shipc_kv_bucket_info(h, "beings_status", &st), 0);
	ck_assert_uint_eq(st.ttl_ms, 300000);
	ck_assert_uint_eq(st.history, 5);
	shipc_close(h);
}
END_TEST

struct racer {
	const char *sock;
	int idx;
	int ok;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	struct shipc *h = shipc_connect(r->sock, "racer");
	if (!h)
		return NULL;
	for (int i = 0; i < 10; i++) {
		char task[32];
		snprintf(task, sizeof(task), "t%d-%d", r->idx, i);
		/* update writes state and task, heartbeat only the time:
		 * interleaved, every update must land. */
		if (shipc_being_update(h, "shared", i % 2 ? "working" : "blocked",
		                       task, NULL) == 0)
			r->ok++;
		shipc_being_heartbeat(h, "shared");
	}
	shipc_close(h);
	return NULL;
}

START_TEST(registry_concurrent_updates)
{
	struct shipc *h = conn();
	ck_assert_int_eq(shipc_being_register(h, "shared", NULL, 0, NULL), 0);
	struct shipc_kv_status st0;
	ck_assert_int_eq(shipc_kv_bucket_info(h, "beings_status", &st0), 0);
	enum { T = 6 };
	pthread_t th[T];
	struct racer rs[T];
	for (int i = 0; i < T; i++) {
		rs[i] = (struct racer){sd.sock, i, 0};
		pthread_create(&th[i], NULL, race, &rs[i]);
	}
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < T; i++)
		ck_assert_int_eq(rs[i].ok, 10);
	/* Every write landed at its own revision: 1 register + T*20. */
	struct shipc_kv_status st;
	ck_assert_int_eq(shipc_kv_bucket_info(h, "beings_status", &st), 0);
	ck_assert_uint_eq(st.last_revision - st0.last_revision, T * 20);
	shipc_close(h);
}
END_TEST

START_TEST(keepalive_and_offline)
{
	struct shipc *h = conn();
	struct shipc *app = conn();
	ck_assert_int_eq(shipc_being_register(h, "kept", NULL, 0, NULL), 0);
	ck_assert_int_eq(shipc_being_keepalive(app, "nobody", 100), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_being_keepalive(app, "kept", 200), 0);
	struct shipc_being *b;
	ck_assert_int_eq(shipc_being_get(h, "kept", &b), 0);
	uint64_t rev0 = b->revision;
	shipc_beings_free(b, 1);
	fx_sleep_ms(700);
	ck_assert_int_eq(shipc_being_get(h, "kept", &b), 0);
	ck_assert_uint_ge(b->revision, rev0 + 2);
	ck_assert(b->online);
	shipc_beings_free(b, 1);
	shipc_close(app);
	bool offline = false;
	for (int i = 0; i < 100 && !offline; i++) {
		fx_sleep_ms(20);
		ck_assert_int_eq(shipc_being_get(h, "kept", &b), 0);
		offline = !strcmp(b->state, "offline") && !b->online;
		shipc_beings_free(b, 1);
	}
	ck_assert(offline);
	shipc_close(h);
}
END_TEST

START_TEST(config_and_health)
{
	struct shipc *h = conn();
	char *v;
	ck_assert_int_eq(shipc_config_get(h, "speed", "{\"max\": 3}", &v), 0);
	ck_assert_str_eq(v, "{\"max\":3}");
	free(v);
	ck_assert_int_eq(shipc_config_get(h, "speed", NULL, &v), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_config_set(h, "speed", "{\"max\": 5}"), 0);
	ck_assert_int_eq(shipc_config_get(h, "speed", "1", &v), 0);
	ck_assert_str_eq(v, "{\"max\":5}");
	free(v);
	ck_assert_int_eq(shipc_config_set(h, "speed", "{not json"), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shipc_config_set(h, "name", "\"robot\""), 0);
	char **keys;
	size_t n;
	ck_assert_int_eq(shipc_config_keys(h, &keys, &n), 0);
	ck_assert_uint_eq(n, 2);
	shipc_kv_keys_free(keys, n);
	struct seen s = SEEN_INIT;
	ck_assert(shipc_config_watch(h, NULL, 0, on_entry, on_end, &s));
	ck_assert(wait_init(h, &s, 5000));
	ck_assert_int_eq(shipc_config_set(h, "speed", "7"), 0);
	ck_assert(wait_seen(h, &s, 3, 5000));
	ck_assert_str_eq(s.last_value, "7");
	ck_assert_int_eq(shipc_health_report(h, "arm", "{\"temp\":40}"), 0);
	ck_assert_int_eq(shipc_health_report(h, "leg", "{\"temp\":41}"), 0);
	ck_assert_int_eq(shipc_health_get(h, "arm", &v), 0);
	ck_assert_str_eq(v, "{\"temp\":40}");
	free(v);
	struct shipc_kv_entry *list;
	ck_assert_int_eq(shipc_health_list(h, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	shipc_kv_entries_free(list, n);
	struct shipc_kv_status st;
	ck_assert_int_eq(shipc_kv_bucket_info(h, "ship_health", &st), 0);
	ck_assert_uint_eq(st.ttl_ms, 120000);
	ck_assert_uint_eq(st.history, 5);
	ck_assert_int_eq(shipc_kv_bucket_info(h, "ship_config", &st), 0);
	ck_assert_uint_eq(st.ttl_ms, 0);
	shipc_close(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kv");
	TCase *tc = tcase_create("kv");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, bucket_lifecycle);
	tcase_add_test(tc, bucket_stream_config);
	tcase_add_test(tc, put_get_create_update);
	tcase_add_test(tc, bad_input_writes_nothing);
	tcase_add_test(tc, keys_and_history);
	tcase_add_test(tc, ttl_expires_entries);
	tcase_add_test(tc, pipelined_puts_and_gets);
	tcase_add_test(tc, watch_initial_then_updates);
	tcase_add_test(tc, watch_options);
	tcase_add_test(tc, watch_survives_nats_restart);
	tcase_add_test(tc, being_registry);
	tcase_add_test(tc, registry_concurrent_updates);
	tcase_add_test(tc, keepalive_and_offline);
	tcase_add_test(tc, config_and_health);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
