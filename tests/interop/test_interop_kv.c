/* SPDX-License-Identifier: MIT */
/* KV interop with the official NATS JavaScript client (@nats-io/kv from
 * npm, run with the machine's Node.js): it reads what shipd wrote, and
 * shipd reads and watches what it wrote, on the same bucket. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "interop.h"

static uint64_t put(struct shipc *h, const char *k, const char *v)
{
	uint64_t rev = 0;
	ck_assert_msg(shipc_kv_put(h, "shared", k, v, strlen(v), &rev) == 0,
	              "put: %s", interop_why(h));
	return rev;
}

START_TEST(nodejs_reads_what_shipd_wrote)
{
	struct shipc *h = interop_conn("interop");
	struct shipc_kv_config c = {.bucket = "shared", .history = 5};
	ck_assert_msg(shipc_kv_bucket_create(h, &c, NULL) == 0, "%s",
	              interop_why(h));
	uint64_t a1 = put(h, "a", "one");
	uint64_t a2 = put(h, "a", "two");
	put(h, "b.c", "bee");
	ck_assert_int_eq(shipc_kv_delete(h, "shared", "b.c"), 0);
	uint64_t p1 = put(h, "p", "purged");
	ck_assert_int_eq(shipc_kv_purge(h, "shared", "p"), 0);
	uint64_t n1 = 0;
	ck_assert_int_eq(shipc_kv_create(h, "shared", "n", "new", 3, &n1), 0);
	char args[512];
	snprintf(args, sizeof(args), "read %s shared a b.c p n",
	         interop_nats.url);
	json_t *j = interop_node("kv.mjs", args);
	json_t *a = json_object_get(j, "a");
	ck_assert_str_eq(json_string_value(json_object_get(a, "value")), "two");
	ck_assert_int_eq(json_integer_value(json_object_get(a, "revision")), a2);
	json_t *ah = json_object_get(a, "history");
	ck_assert_uint_eq(json_array_size(ah), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(ah, 0),
	                                                    "revision")), a1);
	/* nats.js sees shipd's markers as its own: a DEL entry, and a
	 * PURGE entry with nothing older kept */
	json_t *b = json_object_get(j, "b.c");
	ck_assert_str_eq(json_string_value(json_object_get(b, "operation")), "DEL");
	ck_assert_uint_eq(json_array_size(json_object_get(b, "history")), 2);
	json_t *pp = json_object_get(j, "p");
	ck_assert_str_eq(json_string_value(json_object_get(pp, "operation")),
	                 "PURGE");
	ck_assert_int_gt(json_integer_value(json_object_get(pp, "revision")), p1);
	ck_assert_uint_eq(json_array_size(json_object_get(pp, "history")), 1);
	json_t *n = json_object_get(j, "n");
	ck_assert_str_eq(json_string_value(json_object_get(n, "value")), "new");
	ck_assert_int_eq(json_integer_value(json_object_get(n, "revision")), n1);
	/* its keys() leaves the deleted and purged ones out */
	json_t *keys = json_object_get(j, "$keys");
	ck_assert_uint_eq(json_array_size(keys), 2);
	ck_assert_str_eq(json_string_value(json_array_get(keys, 0)), "a");
	ck_assert_str_eq(json_string_value(json_array_get(keys, 1)), "n");
	json_decref(j);
	shipc_close(h);
}
END_TEST

struct seen {
	pthread_mutex_t mu;
	unsigned n, dels, purges;
	bool init;
	char last_key[64];
};

static void on_entry(struct shipc *h, const struct shipc_kv_entry *e,
                     void *arg)
{
	struct seen *s = arg;
	pthread_mutex_lock(&s->mu);
	if (!e) {
		s->init = true;
	} else {
		s->n++;
		s->dels += e->op == SHIPC_KV_DEL;
		s->purges += e->op == SHIPC_KV_PURGE;
		snprintf(s->last_key, sizeof(s->last_key), "%s", e->key);
	}
	pthread_mutex_unlock(&s->mu);
}

START_TEST(shipd_reads_and_watches_what_nodejs_wrote)
{
	struct shipc *h = interop_conn("interop");
	struct shipc_kv_config c = {.bucket = "shared", .history = 5};
	ck_assert_msg(shipc_kv_bucket_create(h, &c, NULL) == 0, "%s",
	              interop_why(h));
	struct seen s = {.mu = PTHREAD_MUTEX_INITIALIZER};
	ck_assert(shipc_kv_watch(h, "shared", "js.>", 0, on_entry, NULL, &s));
	uint64_t end = fx_now_ms() + 5000;
	while (!s.init && fx_now_ms() < end)
		shipc_dispatch(h, 20);
	ck_assert(s.init);
	char args[512];
	snprintf(args, sizeof(args), "write %s shared", interop_nats.url);
	json_t *j = interop_node("kv.mjs", args);
	ck_assert_str_eq(json_string_value(json_object_get(j, "stale_update")),
	                 "refused");
	/* put, update, create, delete, put, purge, put */
	end = fx_now_ms() + 10000;
	while (s.n < 7 && fx_now_ms() < end)
		shipc_dispatch(h, 20);
	ck_assert_uint_eq(s.n, 7);
	ck_assert_uint_eq(s.dels, 1);
	ck_assert_uint_eq(s.purges, 1);
	ck_assert_str_eq(s.last_key, "js.done");
	struct shipc_kv_entry *e;
	ck_assert_int_eq(shipc_kv_get(h, "shared", "js.x", 0, &e), 0);
	ck_assert_str_eq(e->value, "from-js-2");
	ck_assert_int_eq(e->revision, json_integer_value(json_object_get(j, "update")));
	shipc_kv_entry_free(e);
	ck_assert_int_eq(shipc_kv_get(h, "shared", "js.y", 0, &e), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_kv_get(h, "shared", "js.z", 0, &e), -1);
	ck_assert_int_eq(errno, ENOENT);
	/* an old revision by number, and CAS against nats.js's revision */
	uint64_t put_rev = (uint64_t)json_integer_value(json_object_get(j, "put"));
	ck_assert_int_eq(shipc_kv_get(h, "shared", "js.x", put_rev, &e), 0);
	ck_assert_str_eq(e->value, "from-js");
	shipc_kv_entry_free(e);
	uint64_t upd = (uint64_t)json_integer_value(json_object_get(j, "update"));
	ck_assert_int_eq(shipc_kv_update(h, "shared", "js.x", "c", 1, upd, NULL), 0);
	/* create over nats.js's delete marker */
	ck_assert_int_eq(shipc_kv_create(h, "shared", "js.y", "back", 4, NULL), 0);
	json_decref(j);
	shipc_close(h);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {nodejs_reads_what_shipd_wrote,
	                        shipd_reads_and_watches_what_nodejs_wrote, NULL};
	return interop_main("interop-kv", "@nats-io/kv", 120, tests);
}
