/* SPDX-License-Identifier: MIT */
/* Services across a fleet: two shipds (two hosts on one machine) on one
 * nats-server, the same service on each. Requests through either shipd
 * are shared by the two instances through the queue group, each answered
 * once; with one shipd killed the other serves everything, and once it is
 * back its app's library adds the service again; an endpoint without a
 * queue group gets every request on both. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "fixture.h"
#include "shipc.h"

#define REQS 200

static struct natsd nd;
static struct shipdp sa, sb;

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_up(&nd, &sa, NULL), 0);
	ck_assert_int_eq(shipd_start(&sb, nd.url, NULL), 0);
	ck_assert(fx_wait_link(sb.sock, 10000));
}

static void teardown(void)
{
	int rb = shipd_cleanup(&sb);
	int ra = fx_down(&nd, &sa);
	ck_assert_msg(ra == 0 && rb == 0, "shipd exited with %d / %d", ra, rb);
}

static const char *why(struct shipc *h)
{
	static __thread char buf[512];
	return shipc_last_error(h, buf, sizeof(buf));
}

static struct shipc *conn(const char *sock, const char *name)
{
	struct shipc *h = fx_connect(sock, name, 10000);
	ck_assert_msg(h != NULL, "connect: %s", strerror(errno));
	return h;
}

/* ---- one app per shipd, hosting "fleet" ---- */

struct host {
	const char *tag;
	struct fx_app app;
	struct shipc_svc *svc;
	/* how often each request reached this instance */
	atomic_int work[REQS];
	atomic_int bcast[REQS];
	atomic_int work_n, bcast_n;
};

/* Answer "<tag>:<data>" and count request <data>. */
static void answer(struct shipc *h, const struct shipc_svc_req *r,
                   atomic_int *seen, atomic_int *n, const char *tag)
{
	char data[32];
	fx_strcopy(data, sizeof(data), r->data, r->len);
	int i = atoi(data);
	if (i >= 0 && i < REQS)
		atomic_fetch_add(&seen[i], 1);
	atomic_fetch_add(n, 1);
	char out[64];
	int m = snprintf(out, sizeof(out), "%s:%s", tag, data);
	shipc_svc_respond(r->svc, r->token, out, (size_t)m);
}

static void on_work(struct shipc *h, const struct shipc_svc_req *r, void *arg)
{
	struct host *a = arg;
	answer(h, r, a->work, &a->work_n, a->tag);
}

static void on_bcast(struct shipc *h, const struct shipc_svc_req *r,
                     void *arg)
{
	struct host *a = arg;
	answer(h, r, a->bcast, &a->bcast_n, a->tag);
}

static void host_start(struct host *a, const char *sock, const char *tag)
{
	memset(a, 0, sizeof(*a));
	a->tag = tag;
	struct shipc *h = conn(sock, tag);
	struct shipc_svc_endpoint eps[] = {
		{.name = "work", .subject = "fleet.work", .fn = on_work, .arg = a},
		{.name = "bcast", .subject = "fleet.bcast", .no_queue = 1,
		 .fn = on_bcast, .arg = a},
	};
	struct shipc_svc_config cfg = {.name = "fleet", .version = "1.0.0",
	                               .description = "one of many",
	                               .endpoints = eps, .n_endpoints = 2};
	a->svc = shipc_svc_add(h, &cfg);
	ck_assert_msg(a->svc != NULL, "add on %s: %s", tag, why(h));
	ck_assert_int_eq(fx_app_start(&a->app, h), 0);
}

/* "A" on the first shipd, "B" on the second. */
static void hosts_start(struct host *a, struct host *b)
{
	host_start(a, sa.sock, "A");
	host_start(b, sb.sock, "B");
}

/* Stop both instances and end their apps. */
static void hosts_end(struct host *a, struct host *b)
{
	ck_assert_int_eq(shipc_svc_stop(a->svc), 0);
	ck_assert_int_eq(shipc_svc_stop(b->svc), 0);
	fx_app_end(&a->app);
	fx_app_end(&b->app);
}

/* ---- callers ---- */

struct call {
	atomic_bool done;
	int err;
	char data[64];
	bool error_reply;
};

static void call_cb(struct shipc *h, const struct shipc_msg *m, int err,
                    void *arg)
{
	struct call *k = arg;
	k->err = err;
	if (m) {
		fx_strcopy(k->data, sizeof(k->data), m->data, m->len);
		for (size_t i = 0; i < m->n_headers; i++)
			if (!strcmp(m->headers[i].key, "Nats-Service-Error-Code"))
				k->error_reply = true;
	}
	atomic_store(&k->done, true);
}

/* Requests from..to-1 on subject through c, async, then wait for all. */
static void send_range(struct shipc *c, const char *subject, struct call *k,
                       int from, int to)
{
	for (int i = from; i < to; i++) {
		char d[16];
		snprintf(d, sizeof(d), "%d", i);
		memset(&k[i], 0, sizeof(k[i]));
		struct shipc_msg m = {.subject = subject, .data = d,
		                      .len = strlen(d)};
		ck_assert_msg(shipc_request_async(c, &m, 10000, call_cb, &k[i]) == 0,
		              "request %d: %s", i, why(c));
	}
}

static bool wait_calls(struct shipc **cs, size_t ncs, struct call *k,
                       int from, int to, int timeout_ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		int left = 0;
		for (int i = from; i < to; i++)
			left += !atomic_load(&k[i].done);
		if (!left)
			return true;
		if (fx_now_ms() >= end)
			return false;
		for (size_t j = 0; j < ncs; j++)
			shipc_dispatch(cs[j], 10);
	}
}

/* Every call answered by an instance, with its own number; returns how
 * many each tag answered. */
static void check_answers(struct call *k, int from, int to, int *on_a,
                          int *on_b)
{
	for (int i = from; i < to; i++) {
		ck_assert_msg(k[i].err == 0, "request %d: %s", i,
		              strerror(k[i].err));
		ck_assert_msg(!k[i].error_reply, "request %d: an error answer %s",
		              i, k[i].data);
		char tag = 0;
		int n = -1;
		ck_assert_msg(sscanf(k[i].data, "%c:%d", &tag, &n) == 2 && n == i &&
		                      (tag == 'A' || tag == 'B'),
		              "request %d answered '%s'", i, k[i].data);
		(*(tag == 'A' ? on_a : on_b))++;
	}
}

/* Instances answering $SRV.PING.fleet, their ids in ids. */
static size_t ping(struct shipc *h, char ids[][64], size_t max)
{
	char **rs = NULL;
	size_t n = 0;
	if (shipc_svc_discover(h, "PING", "fleet", NULL, 0, &rs, &n) < 0) {
		ck_assert_msg(errno == ESRCH, "discover: %s", why(h));
		return 0;
	}
	for (size_t i = 0; i < n && i < max; i++) {
		json_t *j = json_loads(rs[i], 0, NULL);
		ck_assert_msg(j != NULL, "not JSON: %s", rs[i]);
		snprintf(ids[i], 64, "%s",
		         json_string_value(json_object_get(j, "id")));
		json_decref(j);
	}
	shipc_svc_replies_free(rs, n);
	return n;
}

static bool has_id(char ids[][64], size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(ids[i], id))
			return true;
	return false;
}

/* Total num_requests of endpoint ep over every instance's STATS. */
static long long stats_requests(struct shipc *h, const char *ep)
{
	char **rs = NULL;
	size_t n = 0;
	ck_assert_msg(shipc_svc_discover(h, "STATS", "fleet", NULL, 0, &rs, &n) ==
	                      0,
	              "%s", why(h));
	long long total = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *j = json_loads(rs[i], 0, NULL);
		ck_assert_ptr_nonnull(j);
		size_t x;
		json_t *e;
		json_array_foreach(json_object_get(j, "endpoints"), x, e)
			if (!strcmp(json_string_value(json_object_get(e, "name")), ep))
				total += json_integer_value(
					json_object_get(e, "num_requests"));
		json_decref(j);
	}
	shipc_svc_replies_free(rs, n);
	return total;
}

static struct call calls[REQS];

START_TEST(load_shared)
{
	static struct host a, b;
	hosts_start(&a, &b);
	struct shipc *ca = conn(sa.sock, "caller-a");
	struct shipc *cb = conn(sb.sock, "caller-b");
	struct shipc *cs[] = {ca, cb};
	char ids[4][64];
	ck_assert_uint_eq(ping(ca, ids, 4), 2);
	ck_assert(has_id(ids, 2, shipc_svc_id(a.svc)));
	ck_assert(has_id(ids, 2, shipc_svc_id(b.svc)));

	/* Half through each shipd, all in flight at once. */
	send_range(ca, "fleet.work", calls, 0, REQS / 2);
	send_range(cb, "fleet.work", calls, REQS / 2, REQS);
	ck_assert(wait_calls(cs, 2, calls, 0, REQS, 30000));
	/* Random queue-group picks: whichever shipd a request came through,
	 * both instances get a good share (not only the local one). */
	int a1 = 0, b1 = 0, a2 = 0, b2 = 0;
	check_answers(calls, 0, REQS / 2, &a1, &b1);
	check_answers(calls, REQS / 2, REQS, &a2, &b2);
	fprintf(stderr, "load: through shipd A %d/%d, through B %d/%d "
	                "answered by A/B\n",
	        a1, b1, a2, b2);
	ck_assert_int_ge(a1, REQS / 20);
	ck_assert_int_ge(b1, REQS / 20);
	ck_assert_int_ge(a2, REQS / 20);
	ck_assert_int_ge(b2, REQS / 20);
	int on_a = a1 + a2, on_b = b1 + b2;
	/* Each request handled once, by one instance. */
	for (int i = 0; i < REQS; i++)
		ck_assert_msg(atomic_load(&a.work[i]) + atomic_load(&b.work[i]) == 1,
		              "request %d handled %d + %d times", i,
		              atomic_load(&a.work[i]), atomic_load(&b.work[i]));
	ck_assert_int_eq(atomic_load(&a.work_n), on_a);
	ck_assert_int_eq(atomic_load(&b.work_n), on_b);
	ck_assert_int_eq(stats_requests(ca, "work"), REQS);

	shipc_close(ca);
	shipc_close(cb);
	hosts_end(&a, &b);
}
END_TEST

static bool link_up(void *arg)
{
	struct shipc_status st;
	return shipc_is_connected(arg) && shipc_status(arg, &st) == 0 &&
	       st.link == SHIPC_LINK_CONNECTED;
}

START_TEST(shipd_killed)
{
	static struct host a, b;
	hosts_start(&a, &b);
	struct shipc *ca = conn(sa.sock, "caller-a");
	struct shipc *cs[] = {ca};
	char ida[64], idb[64], ids[4][64];
	snprintf(ida, sizeof(ida), "%s", shipc_svc_id(a.svc));
	snprintf(idb, sizeof(idb), "%s", shipc_svc_id(b.svc));
	ck_assert_uint_eq(ping(ca, ids, 4), 2);

	shipd_kill(&sb);
	/* The server has dropped B's subscriptions once B stops answering
	 * PING (its connection is gone; the kernel closed it). */
	size_t n = 2;
	for (int i = 0; i < 50 && n != 1; i++)
		n = ping(ca, ids, 4);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(ids[0], ida);
	int before = atomic_load(&a.work_n);
	send_range(ca, "fleet.work", calls, 0, 50);
	ck_assert(wait_calls(cs, 1, calls, 0, 50, 20000));
	int on_a = 0, on_b = 0;
	check_answers(calls, 0, 50, &on_a, &on_b);
	ck_assert_int_eq(on_a, 50);
	ck_assert_int_eq(atomic_load(&a.work_n) - before, 50);

	/* B's shipd back: B's library adds the service again, a new id. */
	ck_assert_int_eq(shipd_restart(&sb, nd.url, NULL), 0);
	ck_assert(fx_wait_link(sb.sock, 10000));
	ck_assert(fx_wait(link_up, b.app.h, 15000));
	uint64_t end = fx_now_ms() + 15000;
	n = 0;
	while (fx_now_ms() < end) {
		n = ping(ca, ids, 4);
		if (n == 2)
			break;
		fx_sleep_ms(100);
	}
	ck_assert_msg(n == 2, "B's service not added again (%zu instances)", n);
	ck_assert(has_id(ids, 2, ida));
	ck_assert_msg(!has_id(ids, 2, idb), "the old instance id came back");
	ck_assert_str_ne(shipc_svc_id(b.svc), idb);
	ck_assert(has_id(ids, 2, shipc_svc_id(b.svc)));
	int b_before = atomic_load(&b.work_n);
	send_range(ca, "fleet.work", calls, 0, 100);
	ck_assert(wait_calls(cs, 1, calls, 0, 100, 20000));
	on_a = on_b = 0;
	check_answers(calls, 0, 100, &on_a, &on_b);
	ck_assert_int_gt(on_a, 0);
	ck_assert_int_gt(on_b, 0);
	ck_assert_int_eq(atomic_load(&b.work_n) - b_before, on_b);

	shipc_close(ca);
	hosts_end(&a, &b);
}
END_TEST

struct both {
	struct host *a, *b;
	int n;
};

static bool both_saw_all(void *arg)
{
	struct both *w = arg;
	for (int i = 0; i < w->n; i++)
		if (atomic_load(&w->a->bcast[i]) != 1 ||
		    atomic_load(&w->b->bcast[i]) != 1)
			return false;
	return true;
}

START_TEST(no_queue_reaches_every_instance)
{
	static struct host a, b;
	hosts_start(&a, &b);
	struct shipc *ca = conn(sa.sock, "caller-a");
	struct shipc *cs[] = {ca};
	enum { N = 20 };
	send_range(ca, "fleet.bcast", calls, 0, N);
	ck_assert(wait_calls(cs, 1, calls, 0, N, 20000));
	int on_a = 0, on_b = 0;
	check_answers(calls, 0, N, &on_a, &on_b);
	struct both w = {&a, &b, N};
	ck_assert_msg(fx_wait(both_saw_all, &w, 10000),
	              "A saw %d, B saw %d of %d", atomic_load(&a.bcast_n),
	              atomic_load(&b.bcast_n), N);
	ck_assert_int_eq(atomic_load(&a.bcast_n), N);
	ck_assert_int_eq(atomic_load(&b.bcast_n), N);
	/* The queued endpoint still shares. */
	ck_assert_int_eq(atomic_load(&a.work_n) + atomic_load(&b.work_n), 0);

	/* INFO says so: queue_group "" without a queue, "q" by default. */
	char **rs = NULL;
	size_t n = 0;
	ck_assert_int_eq(shipc_svc_discover(ca, "INFO", "fleet", NULL, 0, &rs, &n),
	                 0);
	ck_assert_uint_eq(n, 2);
	for (size_t i = 0; i < n; i++) {
		json_t *j = json_loads(rs[i], 0, NULL);
		ck_assert_ptr_nonnull(j);
		json_t *eps = json_object_get(j, "endpoints");
		ck_assert_uint_eq(json_array_size(eps), 2);
		json_t *w0 = json_array_get(eps, 0), *w1 = json_array_get(eps, 1);
		ck_assert_str_eq(json_string_value(json_object_get(w0, "queue_group")),
		                 "q");
		ck_assert_str_eq(json_string_value(json_object_get(w1, "name")),
		                 "bcast");
		ck_assert_msg(json_is_string(json_object_get(w1, "queue_group")) &&
		                      !strcmp(json_string_value(json_object_get(
		                                      w1, "queue_group")),
		                              ""),
		              "bcast endpoint: %s", rs[i]);
		json_decref(j);
	}
	shipc_svc_replies_free(rs, n);
	shipc_close(ca);
	hosts_end(&a, &b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("svc-fleet");
	TCase *tc = tcase_create("fleet");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, load_shared);
	tcase_add_test(tc, shipd_killed);
	tcase_add_test(tc, no_queue_reaches_every_instance);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
