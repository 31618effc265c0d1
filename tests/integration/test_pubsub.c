/* SPDX-License-Identifier: MIT */
/* PubSub and request/reply through a real shipd and a real nats-server. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include "fixture.h"
#include "ipc.h"
#include "raw.h"
#include "shipc.h"

static struct natsd nd;
static struct shipdp sd;

static void setup_with(const char *const *extra)
{
	signal(SIGPIPE, SIG_IGN);
	/* fx_up waits for shipd's first NATS connection (on a busy machine
	 * it answers on its socket well before): what a test publishes
	 * first must not meet "NATS not connected". */
	ck_assert_int_eq(fx_up(&nd, &sd, extra), 0);
}

static void setup(void)
{
	setup_with(NULL);
}

static void setup_small(void)
{
	static const char *const small_output[] = {
		"-o", "client_output_limit=65536", NULL};
	setup_with(small_output);
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
	struct shipc *h = shipc_connect(sd.sock, name);
	ck_assert_msg(h != NULL, "connect: %s", strerror(errno));
	return h;
}

/* ---- collecting what a subscription gets ---- */

struct box {
	pthread_mutex_t mu;
	unsigned count;
	uint64_t dropped;
	bool ended;
	int err;
	char last[256];
	char last_subject[128];
	char hdr[128]; /* value of X-Test, if any */
	char reply_with[64]; /* answer requests with this */
	struct shipc *responder;
};

#define BOX_INIT {.mu = PTHREAD_MUTEX_INITIALIZER}

static void box_cb(struct shipc *h, const struct shipc_msg *m, int err,
                   void *arg)
{
	struct box *b = arg;
	pthread_mutex_lock(&b->mu);
	if (!m) {
		ck_assert_msg(!b->ended, "end callback ran twice");
		b->ended = true;
		b->err = err;
		pthread_mutex_unlock(&b->mu);
		return;
	}
	b->count++;
	b->dropped += m->dropped;
	snprintf(b->last, sizeof(b->last), "%.*s", (int)m->len,
	         (const char *)m->data);
	snprintf(b->last_subject, sizeof(b->last_subject), "%s", m->subject);
	for (size_t i = 0; i < m->n_headers; i++)
		if (!strcmp(m->headers[i].key, "X-Test"))
			snprintf(b->hdr, sizeof(b->hdr), "%s", m->headers[i].value);
	pthread_mutex_unlock(&b->mu);
	if (b->reply_with[0])
		ck_assert_int_eq(shipc_respond(h, m, b->reply_with,
		                               strlen(b->reply_with)),
		                 0);
}

static unsigned box_count(struct box *b)
{
	pthread_mutex_lock(&b->mu);
	unsigned n = b->count;
	pthread_mutex_unlock(&b->mu);
	return n;
}

/* Dispatch the handles until cond holds, for at most ms. */
static bool pump(struct shipc **hs, int n, bool (*cond)(void *), void *arg,
                 int ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)ms;
	while (fx_now_ms() < end) {
		if (cond && cond(arg))
			return true;
		for (int i = 0; i < n; i++)
			shipc_dispatch(hs[i], n > 1 ? 2 : 10);
	}
	return cond ? cond(arg) : true;
}

struct want {
	struct box *b;
	unsigned n;
};

static bool box_has(void *arg)
{
	struct want *w = arg;
	return box_count(w->b) >= w->n;
}

static bool box_ended(void *arg)
{
	struct box *b = arg;
	pthread_mutex_lock(&b->mu);
	bool e = b->ended;
	pthread_mutex_unlock(&b->mu);
	return e;
}

/* ---- tests ---- */

START_TEST(pub_sub_two_clients)
{
	struct shipc *sub = conn("sub"), *pub = conn("pub");
	struct box b = BOX_INIT;
	uint64_t id = shipc_subscribe(sub, "t.hello", NULL, 0, box_cb, &b);
	ck_assert_uint_gt(id, 0);
	struct shipc_header hd[] = {{"X-Test", "yes"}};
	struct shipc_msg m = {.subject = "t.hello", .data = "hi there",
	                      .len = 8, .headers = hd, .n_headers = 1};
	ck_assert_int_eq(shipc_publish_msg(pub, &m, 0), 0);
	ck_assert_int_eq(shipc_publish(pub, "t.other", "no", 2), 0);
	ck_assert_int_eq(shipc_publish(pub, "t.hello", "second", 6), 0);
	struct shipc *hs[] = {sub, pub};
	struct want w = {&b, 2};
	ck_assert(pump(hs, 2, box_has, &w, 5000));
	pump(hs, 2, NULL, NULL, 200);
	ck_assert_uint_eq(b.count, 2);
	ck_assert_str_eq(b.last, "second");
	ck_assert_str_eq(b.hdr, "yes");
	ck_assert_int_eq(shipc_unsubscribe(sub, id), 0);
	ck_assert(pump(hs, 2, box_ended, &b, 5000));
	ck_assert_int_eq(b.err, 0);
	ck_assert_int_eq(shipc_unsubscribe(sub, id), -1);
	ck_assert_int_eq(errno, ENOENT);
	shipc_close(pub);
	shipc_close(sub);
}
END_TEST

/* An app with its own loop polls the handle's fd and dispatches without
 * waiting; the fd stays the same across a reconnect. */
START_TEST(event_loop_integration)
{
	struct shipc *sub = conn("loop"), *pub = conn("pub");
	struct box b = BOX_INIT;
	ck_assert_uint_gt(shipc_subscribe(sub, "loop.x", NULL, 0, box_cb, &b), 0);
	int fd = shipc_get_fd(sub);
	ck_assert_int_ge(fd, 0);
	/* Nothing to do yet: the fd is not readable. */
	struct pollfd p = {fd, POLLIN, 0};
	ck_assert_int_eq(poll(&p, 1, 100), 0);
	ck_assert_int_eq(shipc_publish(pub, "loop.x", "tick", 4), 0);
	ck_assert_int_eq(shipc_flush(pub, 5000), 0);
	ck_assert_int_eq(poll(&p, 1, 5000), 1);
	int runs = 0;
	for (int i = 0; i < 10 && box_count(&b) == 0; i++)
		runs += shipc_dispatch(sub, 0);
	ck_assert_int_ge(runs, 1);
	ck_assert_uint_eq(box_count(&b), 1);
	ck_assert_str_eq(b.last, "tick");
	shipc_close(pub);
	shipc_close(sub);
}
END_TEST

START_TEST(wildcards)
{
	struct shipc *sub = conn("sub"), *pub = conn("pub");
	struct box star = BOX_INIT, gt = BOX_INIT;
	ck_assert_uint_gt(shipc_subscribe(sub, "w.*.x", NULL, 0, box_cb, &star), 0);
	ck_assert_uint_gt(shipc_subscribe(sub, "w.>", NULL, 0, box_cb, &gt), 0);
	const char *subjects[] = {"w.a.x", "w.b.x", "w.a.y", "w.a.x.z", "v.a.x"};
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(shipc_publish(pub, subjects[i], "d", 1), 0);
	ck_assert_int_eq(shipc_flush(pub, 5000), 0);
	struct shipc *hs[] = {sub, pub};
	struct want w = {&gt, 4};
	ck_assert(pump(hs, 2, box_has, &w, 5000));
	pump(hs, 2, NULL, NULL, 200);
	ck_assert_uint_eq(star.count, 2);
	ck_assert_uint_eq(gt.count, 4);
	/* Invalid patterns are refused before anything is opened. */
	ck_assert_uint_eq(shipc_subscribe(sub, "w.>.x", NULL, 0, box_cb, &gt), 0);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(shipc_subscribe(sub, "w..x", NULL, 0, box_cb, &gt), 0);
	ck_assert_int_eq(shipc_publish(pub, "w.*", "d", 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	shipc_close(pub);
	shipc_close(sub);
}
END_TEST

START_TEST(queue_groups_spread)
{
	struct shipc *h[3], *pub = conn("pub");
	struct box b[3] = {BOX_INIT, BOX_INIT, BOX_INIT};
	for (int i = 0; i < 3; i++) {
		h[i] = conn("worker");
		ck_assert_uint_gt(shipc_subscribe(h[i], "q.work", "workers", 0,
		                                  box_cb, &b[i]),
		                  0);
	}
	const int n = 300;
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(shipc_publish(pub, "q.work", "job", 3), 0);
	ck_assert_int_eq(shipc_flush(pub, 5000), 0);
	struct shipc *hs[] = {h[0], h[1], h[2], pub};
	uint64_t end = fx_now_ms() + 10000;
	unsigned total = 0;
	while (fx_now_ms() < end) {
		pump(hs, 4, NULL, NULL, 20);
		total = box_count(&b[0]) + box_count(&b[1]) + box_count(&b[2]);
		if (total >= (unsigned)n)
			break;
	}
	pump(hs, 4, NULL, NULL, 200);
	total = box_count(&b[0]) + box_count(&b[1]) + box_count(&b[2]);
	ck_assert_uint_eq(total, n); /* each message to exactly one member */
	for (int i = 0; i < 3; i++) {
		ck_assert_msg(b[i].count > 0, "member %d got nothing", i);
		shipc_close(h[i]);
	}
	shipc_close(pub);
}
END_TEST

struct responder {
	struct shipc *h;
	struct box b;
	atomic_bool stop;
};

static void *respond_loop(void *arg)
{
	struct responder *r = arg;
	while (!r->stop)
		shipc_dispatch(r->h, 20);
	return NULL;
}

START_TEST(request_reply)
{
	struct responder r = {.h = conn("svc"), .b = BOX_INIT};
	snprintf(r.b.reply_with, sizeof(r.b.reply_with), "pong");
	ck_assert_uint_gt(shipc_subscribe(r.h, "svc.ping", NULL, 0, box_cb, &r.b), 0);
	pthread_t t;
	pthread_create(&t, NULL, respond_loop, &r);
	struct shipc *c = conn("client");
	for (int i = 0; i < 20; i++) {
		struct shipc_msg *rep = NULL;
		ck_assert_int_eq(shipc_request(c, "svc.ping", "ping", 4, 2000, &rep), 0);
		ck_assert_ptr_nonnull(rep);
		ck_assert_uint_eq(rep->len, 4);
		ck_assert_int_eq(memcmp(rep->data, "pong", 4), 0);
		shipc_msg_free(rep);
	}
	ck_assert_str_eq(r.b.last, "ping");
	/* Nobody listens: its own error, at once. */
	struct shipc_msg *rep = NULL;
	uint64_t t0 = fx_now_ms();
	ck_assert_int_eq(shipc_request(c, "svc.nobody", "x", 1, 3000, &rep), -1);
	ck_assert_int_eq(errno, ESRCH);
	ck_assert_ptr_null(rep);
	ck_assert_uint_lt(fx_now_ms() - t0, 2000);
	char why[256];
	ck_assert_ptr_nonnull(strstr(shipc_last_error(c, why, sizeof(why)),
	                             "no responders"));
	r.stop = true;
	pthread_join(t, NULL);
	shipc_close(c);
	shipc_close(r.h);
}
END_TEST

struct shared_use {
	struct shipc *h;
	int ok;
	int idx;
};

static void *requester(void *arg)
{
	struct shared_use *u = arg;
	for (int i = 0; i < 50; i++) {
		char body[32];
		snprintf(body, sizeof(body), "%d-%d", u->idx, i);
		struct shipc_msg *rep = NULL;
		if (shipc_request(u->h, "svc.echo", body, strlen(body), 5000,
		                  &rep) == 0 &&
		    rep->len == strlen(body) && !memcmp(rep->data, body, rep->len))
			u->ok++;
		shipc_msg_free(rep);
		shipc_publish(u->h, "svc.noise", body, strlen(body));
	}
	return NULL;
}

static void echo_cb(struct shipc *h, const struct shipc_msg *m, int err,
                    void *arg)
{
	if (m)
		shipc_respond(h, m, m->data, m->len);
}

/* One handle, used by several threads at once: each blocking call gets
 * its own reply, whichever thread happens to read. */
START_TEST(handle_shared_by_threads)
{
	struct responder r = {.h = conn("echo"), .b = BOX_INIT};
	ck_assert_uint_gt(shipc_subscribe(r.h, "svc.echo", NULL, 0, echo_cb, NULL), 0);
	pthread_t rt;
	pthread_create(&rt, NULL, respond_loop, &r);
	struct shipc *h = conn("shared");
	struct box noise = BOX_INIT;
	ck_assert_uint_gt(shipc_subscribe(h, "svc.noise", NULL, 0, box_cb, &noise), 0);
	struct shared_use u[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		u[i] = (struct shared_use){.h = h, .idx = i};
		pthread_create(&t[i], NULL, requester, &u[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(u[i].ok, 50);
	}
	/* The subscription's messages came through the same reads. */
	struct want w = {&noise, 200};
	ck_assert(pump(&h, 1, box_has, &w, 5000));
	r.stop = true;
	pthread_join(rt, NULL);
	shipc_close(h);
	shipc_close(r.h);
}
END_TEST

START_TEST(request_timeout)
{
	struct shipc *silent = conn("silent"), *c = conn("client");
	struct box b = BOX_INIT; /* receives but never answers */
	ck_assert_uint_gt(shipc_subscribe(silent, "svc.slow", NULL, 0, box_cb, &b), 0);
	struct shipc_msg *rep = NULL;
	uint64_t t0 = fx_now_ms();
	ck_assert_int_eq(shipc_request(c, "svc.slow", "x", 1, 300, &rep), -1);
	ck_assert_int_eq(errno, ETIMEDOUT);
	uint64_t took = fx_now_ms() - t0;
	ck_assert_uint_ge(took, 250);
	ck_assert_uint_lt(took, 2000);
	shipc_close(c);
	shipc_close(silent);
}
END_TEST

struct async_state {
	int done, ok, err;
};

static void async_cb(struct shipc *h, const struct shipc_msg *rep, int err,
                     void *arg)
{
	struct async_state *st = arg;
	st->done++;
	if (rep && rep->len == 4 && !memcmp(rep->data, "pong", 4))
		st->ok++;
	if (err)
		st->err = err;
}

static bool async_done(void *arg)
{
	struct async_state *st = arg;
	return st->done >= 50;
}

START_TEST(request_async_pipelined)
{
	struct responder r = {.h = conn("svc"), .b = BOX_INIT};
	snprintf(r.b.reply_with, sizeof(r.b.reply_with), "pong");
	ck_assert_uint_gt(shipc_subscribe(r.h, "svc.ping", "q", 0, box_cb, &r.b), 0);
	pthread_t t;
	pthread_create(&t, NULL, respond_loop, &r);
	struct shipc *c = conn("client");
	struct async_state st = {0};
	struct shipc_msg m = {.subject = "svc.ping", .data = "ping", .len = 4};
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(shipc_request_async(c, &m, 5000, async_cb, &st), 0);
	struct shipc *hs[] = {c};
	ck_assert(pump(hs, 1, async_done, &st, 10000));
	ck_assert_msg(st.ok == 50, "%d of 50 answered; an error: %s", st.ok,
	              strerror(st.err));
	ck_assert_int_eq(st.err, 0);
	/* Close runs every owed callback once, with ECANCELED. */
	struct async_state st2 = {0};
	struct shipc_msg none = {.subject = "svc.void", .data = "x", .len = 1};
	struct box quiet = BOX_INIT;
	ck_assert_uint_gt(shipc_subscribe(c, "svc.void", NULL, 0, box_cb, &quiet), 0);
	ck_assert_int_eq(shipc_request_async(c, &none, 10000, async_cb, &st2), 0);
	r.stop = true;
	pthread_join(t, NULL);
	shipc_close(c);
	ck_assert_int_eq(st2.done, 1);
	ck_assert_int_eq(st2.err, ECANCELED);
	ck_assert(quiet.ended);
	shipc_close(r.h);
}
END_TEST

START_TEST(max_msgs_ends_stream)
{
	struct shipc *sub = conn("sub"), *pub = conn("pub");
	struct box b = BOX_INIT;
	ck_assert_uint_gt(shipc_subscribe(sub, "m.x", NULL, 3, box_cb, &b), 0);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(shipc_publish(pub, "m.x", "d", 1), 0);
	struct shipc *hs[] = {sub, pub};
	ck_assert(pump(hs, 2, box_ended, &b, 5000));
	pump(hs, 2, NULL, NULL, 200);
	ck_assert_uint_eq(b.count, 3);
	ck_assert_int_eq(b.err, 0);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(pub, &st), 0);
	ck_assert_uint_eq(st.subscriptions, 0);
	shipc_close(pub);
	shipc_close(sub);
}
END_TEST

/* A direct nats.c client sees what shipd clients publish and the other way
 * round; shipc_subscribe returns only when the server has the interest. */
START_TEST(interop_direct_nats)
{
	natsConnection *nc = NULL;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	struct shipc *sub = conn("sub");
	struct box b = BOX_INIT;
	ck_assert_uint_gt(shipc_subscribe(sub, "i.x", NULL, 0, box_cb, &b), 0);
	ck_assert_int_eq(natsConnection_PublishString(nc, "i.x", "from-c"), NATS_OK);
	ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
	struct want w = {&b, 1};
	ck_assert(pump(&sub, 1, box_has, &w, 5000));
	ck_assert_str_eq(b.last, "from-c");
	natsSubscription *ns = NULL;
	ck_assert_int_eq(natsConnection_SubscribeSync(&ns, nc, "i.y"), NATS_OK);
	ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
	ck_assert_int_eq(shipc_publish(sub, "i.y", "from-shipd", 10), 0);
	natsMsg *msg = NULL;
	ck_assert_int_eq(natsSubscription_NextMsg(&msg, ns, 5000), NATS_OK);
	ck_assert_int_eq(natsMsg_GetDataLength(msg), 10);
	natsMsg_Destroy(msg);
	natsSubscription_Destroy(ns);
	natsConnection_Destroy(nc);
	shipc_close(sub);
}
END_TEST

struct flood {
	struct shipc *h;
	atomic_bool stop;
};

static void *dispatch_loop(void *arg)
{
	struct flood *f = arg;
	while (!f->stop)
		shipc_dispatch(f->h, 20);
	return NULL;
}

START_TEST(slow_reader_dropped_others_unaffected)
{
	struct shipc *slow = conn("slow"), *pub = conn("pub");
	struct flood fast = {.h = conn("fast")};
	struct box bs = BOX_INIT, bf = BOX_INIT;
	ck_assert_uint_gt(shipc_subscribe(slow, "f.x", NULL, 0, box_cb, &bs), 0);
	ck_assert_uint_gt(shipc_subscribe(fast.h, "f.x", NULL, 0, box_cb, &bf), 0);
	pthread_t t;
	pthread_create(&t, NULL, dispatch_loop, &fast);
	/* slow never dispatches while 10 MiB go by. */
	static char data[1024];
	memset(data, 'x', sizeof(data));
	const unsigned n = 10000;
	for (unsigned i = 0; i < n; i++) {
		ck_assert_int_eq(shipc_publish(pub, "f.x", data, sizeof(data)), 0);
		if (i % 20 == 19) {
			/* fast keeps up batch by batch, while slow is stuck. */
			struct want w = {&bf, i + 1};
			ck_assert_msg(fx_wait(box_has, &w, 5000),
			              "fast got %u of %u, %lu dropped",
			              box_count(&bf), i + 1,
			              (unsigned long)bf.dropped);
		}
	}
	ck_assert_uint_eq(bf.dropped, 0);
	/* The daemon went on answering while slow sat on its socket. */
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(pub, &st), 0);
	ck_assert_uint_gt(st.dropped, 0);
	long rss = fx_rss_kib(sd.pid);
#ifdef SHIP_SANITIZED
	const long rss_max = 512 * 1024; /* shadow memory and quarantine */
#else
	const long rss_max = 64 * 1024;
#endif
	ck_assert_msg(rss > 0 && rss < rss_max, "shipd RSS %ld KiB", rss);
	/* Now slow reads: fewer than n, and told how many it missed. */
	struct shipc *hs[] = {slow};
	pump(hs, 1, NULL, NULL, 1000);
	ck_assert_uint_lt(bs.count, n);
	ck_assert_uint_gt(bs.count, 0);
	/* A marker after the flood carries the count of what was dropped. */
	ck_assert_int_eq(shipc_publish(pub, "f.x", "end", 3), 0);
	struct want w2 = {&bs, bs.count + 1};
	ck_assert(pump(hs, 1, box_has, &w2, 5000));
	ck_assert_str_eq(bs.last, "end");
	ck_assert_uint_eq(bs.count - 1 + bs.dropped, n);
	fast.stop = true;
	pthread_join(t, NULL);
	ck_assert_uint_eq(box_count(&bf), n + 1);
	shipc_close(fast.h);
	shipc_close(slow);
	shipc_close(pub);
}
END_TEST

struct rss_watch {
	pid_t pid;
	atomic_bool stop;
	long peak;
	pthread_t t;
};

static void *rss_loop(void *arg)
{
	struct rss_watch *w = arg;
	while (!w->stop) {
		long r = fx_rss_kib(w->pid);
		if (r > w->peak)
			w->peak = r;
		fx_sleep_ms(5);
	}
	return NULL;
}

/* Apps publishing faster than the server takes them are held back (their
 * sockets fill), not buffered without end in shipd. */
START_TEST(publish_flood_memory_bounded)
{
	struct shipc *pub[2] = {conn("flood1"), conn("flood2")};
	static char data[4096];
	memset(data, 'f', sizeof(data));
	struct rss_watch w = {.pid = sd.pid};
	pthread_create(&w.t, NULL, rss_loop, &w);
	/* The server stops reading for a while, as a busy one would. */
	pid_t pauser = fork();
	if (pauser == 0) {
		fx_freeze(nd.pid, 2000);
		fx_sleep_ms(1500);
		kill(nd.pid, SIGCONT);
		_exit(0);
	}
	for (int i = 0; i < 50000; i++)
		for (int k = 0; k < 2; k++)
			ck_assert_int_eq(shipc_publish(pub[k], "flood.x", data,
			                               sizeof(data)),
			                 0);
	for (int k = 0; k < 2; k++)
		ck_assert_int_eq(shipc_flush(pub[k], 30000), 0);
	ck_assert_int_eq(fx_wait_exit(pauser, 10000), 0);
	w.stop = true;
	pthread_join(w.t, NULL);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(pub[0], &st), 0);
	ck_assert_uint_ge(st.msgs_out, 100000); /* 400 MB went through */
#ifndef SHIP_SANITIZED
	ck_assert_msg(w.peak < 48 * 1024, "shipd peaked at %ld KiB", w.peak);
#endif
	shipc_close(pub[0]);
	shipc_close(pub[1]);
}
END_TEST

static bool subs_back_to(void *arg)
{
	struct shipc *h = arg;
	struct shipc_status st;
	return shipc_status(h, &st) == 0 && st.subscriptions == 0 &&
	       st.clients == 1;
}

START_TEST(killed_client_released)
{
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct shipc *h = shipc_connect(sd.sock, "doomed");
		struct box b = BOX_INIT;
		for (int i = 0; h && i < 5; i++) {
			char subj[32];
			snprintf(subj, sizeof(subj), "k.%d", i);
			shipc_subscribe(h, subj, NULL, 0, box_cb, &b);
		}
		(void)!write(pfd[1], "r", 1);
		for (;;)
			pause();
	}
	char c;
	ck_assert_int_eq(read(pfd[0], &c, 1), 1);
	struct shipc *obs = conn("observer");
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(obs, &st), 0);
	ck_assert_uint_eq(st.subscriptions, 5);
	ck_assert_uint_eq(st.clients, 2);
	/* Mid-stream: messages are flowing to it when it dies. */
	for (int i = 0; i < 200; i++)
		shipc_publish(obs, "k.1", "data", 4);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ck_assert(fx_wait(subs_back_to, obs, 5000));
	close(pfd[0]);
	close(pfd[1]);
	shipc_close(obs);
}
END_TEST

static bool link_is(struct shipc *h, enum shipc_link want)
{
	struct shipc_status st;
	return shipc_status(h, &st) == 0 && st.link == want;
}

static bool link_up(void *arg)
{
	return link_is(arg, SHIPC_LINK_CONNECTED);
}

static bool link_down(void *arg)
{
	return link_is(arg, SHIPC_LINK_RECONNECTING);
}

START_TEST(nats_restart_while_subscribed)
{
	struct shipc *sub = conn("sub"), *pub = conn("pub");
	struct box b = BOX_INIT;
	ck_assert_uint_gt(shipc_subscribe(sub, "r.x", NULL, 0, box_cb, &b), 0);
	natsd_stop(&nd);
	ck_assert(fx_wait(link_down, pub, 10000)); /* status shows the outage */
	struct shipc_msg *rep;
	ck_assert_int_eq(shipc_request(pub, "r.x", "x", 1, 1000, &rep), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(natsd_restart(&nd), 0);
	ck_assert(fx_wait(link_up, pub, 15000));
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(pub, &st), 0);
	ck_assert_uint_ge(st.reconnects, 1);
	/* The subscription is live again without anything from the app. */
	struct shipc *hs[] = {sub, pub};
	struct want w = {&b, 1};
	uint64_t end = fx_now_ms() + 10000;
	while (box_count(&b) == 0 && fx_now_ms() < end) {
		shipc_publish(pub, "r.x", "again", 5);
		pump(hs, 2, box_has, &w, 100);
	}
	ck_assert_uint_ge(box_count(&b), 1);
	ck_assert_str_eq(b.last, "again");
	shipc_close(pub);
	shipc_close(sub);
}
END_TEST

START_TEST(shipd_restart_resubscribes)
{
	struct shipc *sub = conn("sub");
	struct box b = BOX_INIT;
	ck_assert_uint_gt(shipc_subscribe(sub, "s.x", "grp", 0, box_cb, &b), 0);
	int fd = shipc_get_fd(sub);
	ck_assert_int_eq(shipd_stop(&sd), 0);
	ck_assert_int_eq(shipd_restart(&sd, nd.url, NULL), 0);
	/* libshipc reconnects by itself and opens the subscription again. */
	struct shipc *pub = conn("pub");
	struct shipc *hs[] = {sub, pub};
	struct want w = {&b, 1};
	uint64_t end = fx_now_ms() + 10000;
	while (box_count(&b) == 0 && fx_now_ms() < end) {
		shipc_publish(pub, "s.x", "back", 4);
		pump(hs, 2, box_has, &w, 100);
	}
	ck_assert_uint_ge(box_count(&b), 1);
	ck_assert_int_eq(shipc_is_connected(sub), 1);
	ck_assert_int_eq(shipc_get_fd(sub), fd); /* an app's poll set holds */
	ck_assert(!b.ended);
	shipc_close(pub);
	shipc_close(sub);
}
END_TEST

/* ---- hostile input on the raw socket ---- */

static void assert_others_fine(void)
{
	struct shipc *sub = conn("sub"), *pub = conn("pub");
	struct box b = BOX_INIT;
	ck_assert_uint_gt(shipc_subscribe(sub, "ok.x", NULL, 0, box_cb, &b), 0);
	ck_assert_int_eq(shipc_publish(pub, "ok.x", "fine", 4), 0);
	struct shipc *hs[] = {sub, pub};
	struct want w = {&b, 1};
	ck_assert(pump(hs, 2, box_has, &w, 5000));
	shipc_close(pub);
	shipc_close(sub);
}

START_TEST(hostile_frames)
{
	struct shipc *bystander = conn("bystander");
	/* Garbage: refused at the first byte, connection closed. */
	int fd = raw_connect(sd.sock);
	raw_send(fd, "GET / HTTP/1.1\r\n\r\n", 18);
	Ship__ServerFrame *f = raw_read(fd);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->code, SHIP__CODE__INVALID_ARGUMENT);
	ship__server_frame__free_unpacked(f, NULL);
	ck_assert(raw_closed(fd));
	close(fd);

	/* Oversized: refused from the header alone, before allocation. */
	fd = raw_connect(sd.sock);
	raw_hello(fd, IPC_VERSION);
	f = raw_read(fd);
	ck_assert_int_eq(f->code, SHIP__CODE__OK);
	ship__server_frame__free_unpacked(f, NULL);
	uint8_t hdr[IPC_HDR_LEN];
	ipc_frame_header(hdr, 8u << 20); /* over the 2 MiB default */
	raw_send(fd, hdr, sizeof(hdr));
	f = raw_read(fd);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->code, SHIP__CODE__RESOURCE_EXHAUSTED);
	ship__server_frame__free_unpacked(f, NULL);
	ck_assert(raw_closed(fd));
	close(fd);

	/* Bad protobuf inside good framing: an error, and it may go on. */
	fd = raw_connect(sd.sock);
	raw_hello(fd, IPC_VERSION);
	f = raw_read(fd);
	ship__server_frame__free_unpacked(f, NULL);
	uint8_t bad[IPC_HDR_LEN + 3] = {0, 0, 0, 0, 0xff, 0xff, 0xff};
	ipc_frame_header(bad, 3);
	raw_send(fd, bad, sizeof(bad));
	f = raw_read(fd);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->code, SHIP__CODE__INVALID_ARGUMENT);
	ship__server_frame__free_unpacked(f, NULL);
	Ship__ClientFrame cf = SHIP__CLIENT_FRAME__INIT;
	Ship__StatusRequest sr = SHIP__STATUS_REQUEST__INIT;
	cf.id = 7;
	cf.body_case = SHIP__CLIENT_FRAME__BODY_STATUS;
	cf.status = &sr;
	struct ipc_buf b = {0};
	ipc_frame_pack(&b, &cf.base, IPC_FRAME_LIMIT);
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	f = raw_read(fd);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->id, 7);
	ck_assert_int_eq(f->body_case, SHIP__SERVER_FRAME__BODY_STATUS);
	ship__server_frame__free_unpacked(f, NULL);
	close(fd);

	/* A protocol version from the future: a clear error, then closed. */
	fd = raw_connect(sd.sock);
	raw_hello(fd, 99);
	f = raw_read(fd);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->code, SHIP__CODE__INVALID_ARGUMENT);
	ck_assert_ptr_nonnull(strstr(f->error, "version"));
	ship__server_frame__free_unpacked(f, NULL);
	ck_assert(raw_closed(fd));
	close(fd);

	/* Anything before the hello: refused and closed. */
	fd = raw_connect(sd.sock);
	b = (struct ipc_buf){0};
	ipc_frame_pack(&b, &cf.base, IPC_FRAME_LIMIT);
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	f = raw_read(fd);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->code, SHIP__CODE__INVALID_ARGUMENT);
	ship__server_frame__free_unpacked(f, NULL);
	ck_assert(raw_closed(fd));
	close(fd);

	/* The daemon and the other clients went on. */
	ck_assert_int_eq(shipc_is_connected(bystander), 1);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(bystander, &st), 0);
	assert_others_fine();
	shipc_close(bystander);
	ck_assert_int_eq(kill(sd.pid, 0), 0);
}
END_TEST

START_TEST(shutdown_is_clean)
{
	struct shipc *h = conn("c");
	struct box b = BOX_INIT;
	ck_assert_uint_gt(shipc_subscribe(h, "z.x", NULL, 0, box_cb, &b), 0);
	ck_assert_int_eq(shipd_stop(&sd), 0); /* SIGTERM: exit status 0 */
	ck_assert_int_eq(access(sd.sock, F_OK), -1); /* socket removed */
	shipc_close(h);
	ck_assert(b.ended);
}
END_TEST

START_TEST(starts_without_nats)
{
	/* Point a second shipd at a port where nothing listens. */
	struct shipdp lone;
	char url[64];
	int port = fx_free_port();
	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", port);
	ck_assert_int_eq(shipd_start(&lone, url, NULL), 0);
	struct shipc *h = shipc_connect(lone.sock, "early");
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(h, &st), 0);
	ck_assert_int_ne(st.link, SHIPC_LINK_CONNECTED);
	struct box b = BOX_INIT;
	/* Subscribing works before NATS is there; requests fail clearly. */
	ck_assert_uint_gt(shipc_subscribe(h, "e.x", NULL, 0, box_cb, &b), 0);
	struct shipc_msg *rep;
	ck_assert_int_eq(shipc_request(h, "e.x", "x", 1, 500, &rep), -1);
	ck_assert_int_eq(errno, EAGAIN);
	struct shipc_msg m = {.subject = "e.x", .data = "x", .len = 1};
	ck_assert_int_eq(shipc_publish_msg(h, &m, SHIPC_PUB_CONFIRM), -1);
	ck_assert_int_eq(errno, EAGAIN);
	/* NATS comes up on that port: the link connects, the sub works. */
	struct natsd late;
	ck_assert_int_eq(natsd_start(&late, port), 0);
	ck_assert(fx_wait(link_up, h, 15000));
	struct want w = {&b, 1};
	uint64_t end = fx_now_ms() + 10000;
	while (box_count(&b) == 0 && fx_now_ms() < end) {
		shipc_publish(h, "e.x", "late", 4);
		pump(&h, 1, box_has, &w, 100);
	}
	ck_assert_str_eq(b.last, "late");
	shipc_close(h);
	ck_assert_int_eq(shipd_cleanup(&lone), 0);
	natsd_cleanup(&late);
}
END_TEST

/* ---- replies: taken where nats.c reads them, or through its thread ----
 *
 * shipd takes the replies to its own requests out of nats.c's parser on
 * its loop (nats.c's message filter), and falls back to nats.c's delivery
 * thread and the mailbox where that hook is missing. Either way each
 * reply reaches the request it answers, a "no responders" status fails
 * its own request among many in flight, and shipd's figures say which
 * way they came. */

#define FLIGHT 96

struct flight {
	int i;
	int err;
	bool done;
	bool right; /* the answer is this request's own */
};

static void flight_cb(struct shipc *h, const struct shipc_msg *rep, int err,
                      void *arg)
{
	struct flight *f = arg;
	char want[16];
	int n = snprintf(want, sizeof(want), "%d", f->i);
	f->done = true;
	f->err = err;
	f->right = rep && rep->len == (size_t)n && !memcmp(rep->data, want, n);
}

static bool flights_done(void *arg)
{
	struct flight *f = arg;
	for (int i = 0; i < FLIGHT; i++)
		if (!f[i].done)
			return false;
	return true;
}

static void flight_echo_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                    void *arg)
{
	if (natsMsg_GetReply(msg))
		natsConnection_Publish(nc, natsMsg_GetReply(msg),
		                       natsMsg_GetData(msg),
		                       natsMsg_GetDataLength(msg));
	natsMsg_Destroy(msg);
}

static double replies_by(int port, const char *path)
{
	static char body[256 * 1024];
	char name[96];
	ck_assert_int_eq(fx_http_status(port, "/metrics", body, sizeof(body)),
	                 200);
	int n = snprintf(name, sizeof(name),
	                 "shipd_nats_replies_total{path=\"%s\"} ", path);
	const char *p = strstr(body, name);
	ck_assert_msg(p != NULL, "no %s in the scrape", name);
	return strtod(p + n, NULL);
}

static void *flood_thread(void *arg)
{
	natsConnection *nc = arg;
	for (int i = 0; i < 200000; i++)
		if (natsConnection_Publish(nc, "flood.x", "f", 1) != NATS_OK)
			break;
	natsConnection_Flush(nc);
	return NULL;
}

static void one_echo(struct shipc *h)
{
	struct shipc_msg *rep = NULL;
	ck_assert_int_eq(shipc_request(h, "echo.one", "1", 1, 5000, &rep), 0);
	shipc_msg_free(rep);
}

/* A subscription ended while a flood comes: nats.c drops what it still
 * holds for it without a callback, which shipd cannot count. Until the
 * counts are settled, replies take the mailbox: a request right after the
 * flood shows that the drops happened (they do only when nats.c's
 * delivery thread is behind at the unsubscribe; up to 16 floods). With
 * quiet, wait two probe ticks after. */
static void silent_drops(struct shipc *h, natsConnection *nc, int port,
                         bool quiet)
{
	int tries = 0;
	for (;;) {
		struct box b = BOX_INIT;
		uint64_t id = shipc_subscribe(h, "flood.x", NULL, 0, box_cb, &b);
		ck_assert_uint_gt(id, 0);
		pthread_t t;
		pthread_create(&t, NULL, flood_thread, nc);
		struct want w = {&b, 1000};
		ck_assert(pump(&h, 1, box_has, &w, 10000));
		ck_assert_int_eq(shipc_unsubscribe(h, id), 0);
		pthread_join(t, NULL);
		pump(&h, 1, NULL, NULL, 300);
		double mail = replies_by(port, "mailbox");
		one_echo(h);
		tries++;
		if (replies_by(port, "mailbox") > mail)
			break;
		ck_assert_msg(tries < 16, "no silent drops in %d floods", tries);
	}
	fprintf(stderr, "silent drops after %d flood(s)\n", tries);
	if (quiet)
		pump(&h, 1, NULL, NULL, 2500);
}

/* A nats-server, a shipd with its metrics on a free port, a nats.c
 * connection answering "echo.>" and an app: what the reply cases share. */
struct replies_env {
	struct natsd n;
	struct shipdp d;
	int port;
	natsConnection *nc;
	natsSubscription *ns;
	struct shipc *h;
};

static void replies_up(struct replies_env *e, bool filter, const char *app)
{
	char listen[64];
	e->port = fx_free_port();
	snprintf(listen, sizeof(listen), "metrics_listen=127.0.0.1:%d",
	         e->port);
	const char *const extra[] = {"-o", listen, NULL};
	/* Without the filter, without shipd's own frees too: both ways of
	 * nats.c 3.4.1 as it is. */
	if (filter) {
		unsetenv("SHIPD_NO_REPLY_FILTER");
		unsetenv("SHIPD_NO_DIRECT_FREE");
	} else {
		setenv("SHIPD_NO_REPLY_FILTER", "1", 1);
		setenv("SHIPD_NO_DIRECT_FREE", "1", 1);
	}
	ck_assert_int_eq(fx_up(&e->n, &e->d, extra), 0);
	unsetenv("SHIPD_NO_REPLY_FILTER");
	unsetenv("SHIPD_NO_DIRECT_FREE");
	e->nc = NULL;
	e->ns = NULL;
	ck_assert_int_eq(natsConnection_ConnectTo(&e->nc, e->n.url), NATS_OK);
	ck_assert_int_eq(natsConnection_Subscribe(&e->ns, e->nc, "echo.>",
	                                          flight_echo_cb, NULL),
	                 NATS_OK);
	ck_assert_int_eq(natsConnection_Flush(e->nc), NATS_OK);
	e->h = shipc_connect(e->d.sock, app);
	ck_assert_ptr_nonnull(e->h);
}

static void replies_down(struct replies_env *e)
{
	shipc_close(e->h);
	natsSubscription_Destroy(e->ns);
	natsConnection_Destroy(e->nc);
	nats_CloseAndWait(2000);
	ck_assert_int_eq(fx_down(&e->n, &e->d), 0);
}

static void replies_run(bool filter, bool drops)
{
	struct replies_env e;
	replies_up(&e, filter, "flights");
	struct shipc *h = e.h;
	int port = e.port;
	if (drops)
		silent_drops(h, e.nc, port, true);
	double loop0 = replies_by(port, "loop");
	double mail0 = replies_by(port, "mailbox");
	/* A third go nowhere, among the answered ones, all in flight. */
	static struct flight f[FLIGHT];
	memset(f, 0, sizeof(f));
	for (int i = 0; i < FLIGHT; i++) {
		char subj[32], data[16];
		snprintf(subj, sizeof(subj), "%s.%d", i % 3 ? "echo" : "none", i);
		snprintf(data, sizeof(data), "%d", i);
		struct shipc_msg m = {.subject = subj, .data = data,
		                      .len = strlen(data)};
		f[i].i = i;
		ck_assert_int_eq(shipc_request_async(h, &m, 10000, flight_cb,
		                                     &f[i]),
		                 0);
	}
	ck_assert(pump(&h, 1, flights_done, f, 15000));
	for (int i = 0; i < FLIGHT; i++)
		if (i % 3)
			ck_assert_msg(f[i].err == 0 && f[i].right,
			              "request %d: %s, %s answer", i,
			              strerror(f[i].err),
			              f[i].right ? "its" : "another's");
		else
			ck_assert_msg(f[i].err == ESRCH,
			              "request %d to nobody: %s", i,
			              strerror(f[i].err));
	double loop = replies_by(port, "loop") - loop0;
	double mail = replies_by(port, "mailbox") - mail0;
	if (filter) {
		ck_assert_msg(loop >= FLIGHT && mail == 0,
		              "on the loop %.0f, through the mailbox %.0f", loop,
		              mail);
	} else {
		ck_assert_msg(mail >= FLIGHT && loop == 0,
		              "on the loop %.0f, through the mailbox %.0f", loop,
		              mail);
	}
	replies_down(&e);
}

START_TEST(replies_taken_on_the_loop)
{
	replies_run(true, false);
}
END_TEST

START_TEST(replies_through_the_mailbox)
{
	replies_run(false, false);
}
END_TEST

/* Replies wait behind what nats.c still holds for the loop, but not for
 * ever behind what it dropped without a word. */
START_TEST(replies_on_the_loop_again_after_silent_drops)
{
	replies_run(true, true);
}
END_TEST

/* Replies keep coming: once silent drops left the counts apart, the probe
 * must still settle them while requests go on (their own replies, let
 * through behind the probe, must not keep the fast path away for good).
 * Review rev2: fails intermittently on 66f4d04 (drift is made only when
 * nats.c's worker is behind at the unsubscribe; then order_settle needs
 * nothing let through between the probe's parse and its dispatch, which a
 * steady stream of replies rarely leaves: 0 of ~106k on the loop, 6 of 6
 * probes refused, each with one reply after it). */

#define STEADY 32

struct steady {
	int inflight;
	int errs;
	uint64_t done;
};

static void steady_cb(struct shipc *h, const struct shipc_msg *rep, int err,
                      void *arg)
{
	struct steady *st = arg;
	st->inflight--;
	st->done++;
	if (err)
		st->errs++;
}

START_TEST(replies_on_the_loop_again_under_load_after_silent_drops)
{
	struct replies_env e;
	replies_up(&e, true, "steady");
	struct shipc *h = e.h;
	int port = e.port;
	/* Drift first, then requests with no pause for 6 s (six probe
	 * ticks); the fast path must be back within them. */
	silent_drops(h, e.nc, port, false);
	struct steady st = {0};
	double loop0 = replies_by(port, "loop");
	double mail0 = replies_by(port, "mailbox");
	uint64_t end = fx_now_ms() + 6000;
	while (fx_now_ms() < end) {
		while (st.inflight < STEADY) {
			struct shipc_msg m = {.subject = "echo.s", .data = "s",
			                      .len = 1};
			ck_assert_int_eq(shipc_request_async(h, &m, 10000,
			                                     steady_cb, &st),
			                 0);
			st.inflight++;
		}
		shipc_dispatch(h, 10);
	}
	while (st.inflight > 0 && fx_now_ms() < end + 10000)
		shipc_dispatch(h, 10);
	double loop = replies_by(port, "loop") - loop0;
	double mail = replies_by(port, "mailbox") - mail0;
	ck_assert_int_eq(st.errs, 0);
	ck_assert_msg(loop > mail,
	              "%llu replies under load: on the loop %.0f, through "
	              "the mailbox %.0f",
	              (unsigned long long)st.done, loop, mail);
	replies_down(&e);
}
END_TEST


/* ---- order: an event published before a reply is seen before it ----
 *
 * A responder elsewhere publishes an event and then answers the request.
 * Both reach shipd in that order on its one connection (one publisher),
 * and shipd delivers what it gets from NATS in the order it came: the app
 * sees the event before the reply. Replies taken out of nats.c's parser
 * must not overtake subscription messages read before them. */

#define ORDER_ROUNDS 40

struct order {
	pthread_mutex_t mu;
	int events;       /* events seen */
	int replies;      /* replies seen */
	int overtaken;    /* replies seen before their round's event */
	bool done;
};

static void order_ev_cb(struct shipc *h, const struct shipc_msg *m, int err,
                        void *arg)
{
	struct order *o = arg;
	if (!m)
		return;
	pthread_mutex_lock(&o->mu);
	o->events++;
	pthread_mutex_unlock(&o->mu);
}

static void order_reply_cb(struct shipc *h, const struct shipc_msg *rep,
                           int err, void *arg)
{
	struct order *o = arg;
	pthread_mutex_lock(&o->mu);
	o->replies++;
	if (o->events < o->replies)
		o->overtaken++;
	o->done = true;
	pthread_mutex_unlock(&o->mu);
}

static bool order_done(void *arg)
{
	struct order *o = arg;
	pthread_mutex_lock(&o->mu);
	bool d = o->done;
	pthread_mutex_unlock(&o->mu);
	return d;
}

static void order_svc_cb(natsConnection *nc, natsSubscription *sub,
                         natsMsg *msg, void *arg)
{
	/* The event first, then the answer: one write, one publisher. */
	natsConnection_Publish(nc, "order.ev", "E", 1);
	if (natsMsg_GetReply(msg))
		natsConnection_Publish(nc, natsMsg_GetReply(msg), "R", 1);
	natsMsg_Destroy(msg);
}

START_TEST(event_before_reply_stays_before)
{
	natsConnection *nc = NULL;
	natsSubscription *ns = NULL;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_Subscribe(&ns, nc, "order.svc",
	                                          order_svc_cb, NULL),
	                 NATS_OK);
	ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
	struct shipc *h = conn("order");
	static struct order o = {.mu = PTHREAD_MUTEX_INITIALIZER};
	ck_assert_uint_gt(shipc_subscribe(h, "order.ev", NULL, 0, order_ev_cb,
	                                  &o),
	                  0);
	for (int i = 0; i < ORDER_ROUNDS; i++) {
		struct shipc_msg m = {.subject = "order.svc", .data = "q",
		                      .len = 1};
		o.done = false;
		ck_assert_int_eq(shipc_request_async(h, &m, 5000, order_reply_cb,
		                                     &o),
		                 0);
		ck_assert(pump(&h, 1, order_done, &o, 6000));
		/* Its event, if it is still on its way. */
		struct shipc *hs[1] = {h};
		for (int k = 0; k < 50 && o.events < o.replies; k++)
			pump(hs, 1, NULL, NULL, 10);
	}
	ck_assert_msg(o.overtaken == 0,
	              "%d of %d replies came before the event published "
	              "before them (events %d)",
	              o.overtaken, o.replies, o.events);
	shipc_close(h);
	natsSubscription_Destroy(ns);
	natsConnection_Destroy(nc);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("pubsub");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, pub_sub_two_clients);
	tcase_add_test(tc, wildcards);
	tcase_add_test(tc, event_loop_integration);
	tcase_add_test(tc, queue_groups_spread);
	tcase_add_test(tc, request_reply);
	tcase_add_test(tc, request_timeout);
	tcase_add_test(tc, handle_shared_by_threads);
	tcase_add_test(tc, request_async_pipelined);
	tcase_add_test(tc, max_msgs_ends_stream);
	tcase_add_test(tc, interop_direct_nats);
	tcase_add_test(tc, killed_client_released);
	tcase_add_test(tc, hostile_frames);
	tcase_add_test(tc, shutdown_is_clean);
	tcase_add_test(tc, starts_without_nats);
	suite_add_tcase(s, tc);

	TCase *faults = tcase_create("faults");
	tcase_add_checked_fixture(faults, setup, teardown);
	tcase_set_timeout(faults, 90);
	tcase_add_test(faults, nats_restart_while_subscribed);
	tcase_add_test(faults, shipd_restart_resubscribes);
	suite_add_tcase(s, faults);

	TCase *slow = tcase_create("slow-reader");
	tcase_add_checked_fixture(slow, setup_small, teardown);
	tcase_set_timeout(slow, 90);
	tcase_add_test(slow, slow_reader_dropped_others_unaffected);
	tcase_add_test(slow, publish_flood_memory_bounded);
	suite_add_tcase(s, slow);

	TCase *replies = tcase_create("replies");
	tcase_set_timeout(replies, 60);
	tcase_add_test(replies, replies_taken_on_the_loop);
	tcase_add_test(replies, replies_through_the_mailbox);
	tcase_add_test(replies, replies_on_the_loop_again_after_silent_drops);
	tcase_add_test(replies,
	               replies_on_the_loop_again_under_load_after_silent_drops);
	suite_add_tcase(s, replies);

	TCase *order = tcase_create("order");
	tcase_add_checked_fixture(order, setup, teardown);
	tcase_set_timeout(order, 60);
	tcase_add_test(order, event_before_reply_stays_before);
	suite_add_tcase(s, order);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
