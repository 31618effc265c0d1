/* SPDX-License-Identifier: MIT */
/* NATS stops taking (nats-server SIGSTOPped): only the app that fills
 * shipd's buffer to NATS is paused, the others' status and errors keep
 * coming; and an answer for a write that got no answer says its outcome
 * is unknown (it may have been applied, and is, once NATS resumes). */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixture.h"
#include "raw.h"
#include "shipc.h"

#define FLOOD_MSG (64 * 1024)
#define FLOOD_BATCH 4
/* How fast another app must be answered while one floods. */
#define ANSWER_MS 100

static struct natsd nd;
static struct shipdp sd;

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	/* KV writes give up after 1.5 s (emits after shipd's fixed 5 s). */
	static const char *const extra[] = {"-o", "request_timeout_ms=1500",
	                                    NULL};
	ck_assert_int_eq(fx_up(&nd, &sd, extra), 0);
}

static void teardown(void)
{
	/* A test that failed while the server was stopped leaves it so. */
	if (nd.pid > 0)
		kill(nd.pid, SIGCONT);
	int rc = fx_down(&nd, &sd);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

/* ---- app A: 64 KiB publishes, pipelined on a non-blocking socket ---- */

struct flood {
	int fd;
	pthread_t thread;
	atomic_bool stop;
	atomic_uint_fast64_t written;  /* bytes shipd took from the socket */
	atomic_uint_fast64_t progress; /* fx_now_ms() of the last write */
	int err;                       /* errno that ended it, 0 if stopped */
};

static void *flood_main(void *arg)
{
	struct flood *fl = arg;
	static uint8_t data[FLOOD_MSG];
	struct ipc_buf b = {0};
	memset(data, 'a', sizeof(data));
	for (int i = 0; i < FLOOD_BATCH; i++) {
		struct ipc_publish p = {.subject = "fair.flood",
		                        .data = data,
		                        .len = sizeof(data)};
		if (ipc_pack_publish(&b, &p, IPC_FRAME_LIMIT) < 0)
			abort();
	}
	const uint8_t *buf = ipc_buf_head(&b);
	size_t len = ipc_buf_used(&b), off = 0;
	uint8_t sink[4096];
	while (!atomic_load(&fl->stop)) {
		ssize_t n = send(fl->fd, buf + off, len - off,
		                 MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			off = (off + (size_t)n) % len;
			atomic_fetch_add(&fl->written, (uint64_t)n);
			atomic_store(&fl->progress, fx_now_ms());
		} else if (n < 0 && errno == EAGAIN) {
			struct pollfd pfd = {.fd = fl->fd, .events = POLLOUT};
			poll(&pfd, 1, 5);
		} else {
			fl->err = n < 0 ? errno : EPIPE;
			break;
		}
		/* Errors for the publishes (once NATS is gone, say) are read
		 * and dropped, so shipd never finds A not reading. */
		while (recv(fl->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
			;
	}
	ipc_buf_finish(&b);
	return NULL;
}

static void flood_start(struct flood *fl)
{
	memset(fl, 0, sizeof(*fl));
	fl->fd = raw_open(sd.sock);
	atomic_store(&fl->progress, fx_now_ms());
	ck_assert_int_eq(pthread_create(&fl->thread, NULL, flood_main, fl), 0);
}

static void flood_stop(struct flood *fl)
{
	atomic_store(&fl->stop, true);
	pthread_join(fl->thread, NULL);
}

/* A is held back: nothing of it was taken for ms. */
static bool flood_blocked(struct flood *fl, uint64_t ms)
{
	return fx_now_ms() - atomic_load(&fl->progress) >= ms;
}

static void server_stop(void)
{
	ck_assert_int_eq(fx_freeze(nd.pid, 2000), 0);
}

static void server_cont(void)
{
	ck_assert_int_eq(kill(nd.pid, SIGCONT), 0);
}

/* ---- fairness ---- */

START_TEST(other_apps_answered_while_one_floods)
{
	struct shipc *b = shipc_connect(sd.sock, "fair-b");
	ck_assert_ptr_nonnull(b);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(b, &st), 0);
	ck_assert_int_eq(st.link, SHIPC_LINK_CONNECTED);

	struct flood fl;
	flood_start(&fl);
	/* While the server runs, A's messages flow. */
	uint64_t t = fx_now_ms();
	while (atomic_load(&fl.written) < 8u * FLOOD_MSG && fx_now_ms() - t < 5000)
		fx_sleep_ms(10);
	ck_assert_uint_ge(atomic_load(&fl.written), 8u * FLOOD_MSG);

	server_stop();
	uint64_t stopped = fx_now_ms();
	/* Kernel buffers fill, then nats.c's: A stops being taken. */
	while (!flood_blocked(&fl, 300) && fx_now_ms() - stopped < 2500)
		fx_sleep_ms(10);
	ck_assert_msg(flood_blocked(&fl, 300),
	              "A was never held back (%llu bytes taken)",
	              (unsigned long long)atomic_load(&fl.written));

	/* Within the first 3 s (a link silent longer may be declared dead,
	 * which would end the backlog and prove nothing). */
	uint64_t worst_status = 0, worst_kv = 0;
	for (int i = 0; i < 30; i++) {
		uint64_t t0 = fx_now_ms();
		ck_assert_int_eq(shipc_status(b, &st), 0);
		uint64_t dt = fx_now_ms() - t0;
		worst_status = dt > worst_status ? dt : worst_status;
		ck_assert_msg(dt < ANSWER_MS,
		              "status %d took %llu ms while A floods", i,
		              (unsigned long long)dt);
		if (i % 3 == 0) {
			struct shipc_kv_entry *e = NULL;
			t0 = fx_now_ms();
			int r = shipc_kv_get(b, "fair", "not a key", 0, &e);
			int err = errno;
			dt = fx_now_ms() - t0;
			worst_kv = dt > worst_kv ? dt : worst_kv;
			ck_assert_int_eq(r, -1);
			ck_assert_int_eq(err, EINVAL);
			ck_assert_int_eq(shipc_outcome_unknown(b), 0);
			ck_assert_msg(dt < ANSWER_MS,
			              "KV error %d took %llu ms while A floods", i,
			              (unsigned long long)dt);
		}
		fx_sleep_ms(70);
	}
	ck_assert_msg(fx_now_ms() - stopped < 4000,
	              "measured too late after SIGSTOP: %llu ms",
	              (unsigned long long)(fx_now_ms() - stopped));
	/* A was held back all along, not answered like B. */
	ck_assert_msg(flood_blocked(&fl, 1000), "A was not held back");
	fprintf(stderr, "fair: worst status %llu ms, worst KV error %llu ms\n",
	        (unsigned long long)worst_status, (unsigned long long)worst_kv);

	/* The server resumes: A goes on. */
	server_cont();
	uint64_t w0 = atomic_load(&fl.written);
	t = fx_now_ms();
	while (atomic_load(&fl.written) < w0 + (4u << 20) &&
	       fx_now_ms() - t < 20000 && !fl.err)
		fx_sleep_ms(20);
	ck_assert_msg(atomic_load(&fl.written) >= w0 + (4u << 20),
	              "A was not resumed (%llu bytes since SIGCONT, err %d)",
	              (unsigned long long)(atomic_load(&fl.written) - w0), fl.err);
	flood_stop(&fl);
	ck_assert_int_eq(fl.err, 0);
	close(fl.fd);
	ck_assert_int_eq(shipc_status(b, &st), 0);
	shipc_close(b);
}
END_TEST

/* A paused app that leaves is let go while NATS is still stopped; one
 * whose input holds whole frames, and that never writes again, has them
 * handled once NATS takes again. */
START_TEST(paused_app_leaves_or_waits)
{
	struct shipc *b = shipc_connect(sd.sock, "fair-b");
	ck_assert_ptr_nonnull(b);
	int c = raw_open(sd.sock);
	struct flood fl;
	flood_start(&fl);
	uint64_t t = fx_now_ms();
	while (atomic_load(&fl.written) < 4u * FLOOD_MSG && fx_now_ms() - t < 5000)
		fx_sleep_ms(10);
	server_stop();
	uint64_t stopped = fx_now_ms();
	while (!flood_blocked(&fl, 300) && fx_now_ms() - stopped < 2500)
		fx_sleep_ms(10);
	ck_assert(flood_blocked(&fl, 300));
	flood_stop(&fl);

	/* C: small publishes and a status request, in one write that shipd
	 * reads whole; it is paused at the first publish. */
	struct ipc_buf out = {0};
	for (int i = 0; i < 10; i++) {
		struct ipc_publish p = {.subject = "fair.small", .data = "x",
		                        .len = 1};
		ck_assert_int_eq(ipc_pack_publish(&out, &p, IPC_FRAME_LIMIT), 0);
	}
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__StatusRequest sr = SHIP__STATUS_REQUEST__INIT;
	f.id = 78;
	f.body_case = SHIP__CLIENT_FRAME__BODY_STATUS;
	f.status = &sr;
	raw_pack(&out, &f);
	raw_send(c, ipc_buf_head(&out), ipc_buf_used(&out));
	ipc_buf_finish(&out);
	struct pollfd pfd = {.fd = c, .events = POLLIN};
	ck_assert_int_eq(poll(&pfd, 1, 300), 0);

	/* A leaves: shipd lets it go while NATS is still stopped. */
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(b, &st), 0);
	uint32_t before = st.clients;
	close(fl.fd);
	t = fx_now_ms();
	do {
		fx_sleep_ms(20);
		ck_assert_int_eq(shipc_status(b, &st), 0);
	} while (st.clients == before && fx_now_ms() - t < 1500);
	ck_assert_uint_eq(st.clients, before - 1);

	/* C's status comes once NATS takes again, with no new read. */
	server_cont();
	struct timeval tv = {20, 0};
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	Ship__ServerFrame *r = raw_reply(c, 78);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->code, SHIP__CODE__OK);
	ship__server_frame__free_unpacked(r, NULL);
	close(c);
	shipc_close(b);
}
END_TEST

/* ---- outcome unknown ---- */

struct emit_wait {
	int done;
	int err;
	int unknown;
	char error[256];
};

static void emitted(struct shipc *h, const struct shipc_emit_result *res,
                    int err, void *arg)
{
	struct emit_wait *w = arg;
	w->err = err;
	w->unknown = shipc_outcome_unknown(h);
	shipc_last_error(h, w->error, sizeof(w->error));
	w->done = 1;
}

/* shipd creates SHIP_EVENTS once linked: the first emit may come early. */
static void warm_up_emits(struct shipc *h)
{
	struct shipc_emit em = {.event_type = "unk.warmup", .payload_json = "1"};
	uint64_t t = fx_now_ms();
	int r;
	while ((r = shipc_emit(h, &em, NULL)) < 0 && fx_now_ms() - t < 10000)
		fx_sleep_ms(100);
	ck_assert_int_eq(r, 0);
}

static bool link_up(void *arg)
{
	struct shipc_status st;
	return shipc_status(arg, &st) == 0 && st.link == SHIPC_LINK_CONNECTED;
}

START_TEST(write_without_answer_is_outcome_unknown)
{
	struct shipc *h = shipc_connect(sd.sock, "unknown");
	ck_assert_ptr_nonnull(h);
	struct shipc_kv_config kc = {.bucket = "unk", .history = 5};
	ck_assert_int_eq(shipc_kv_bucket_create(h, &kc, NULL), 0);
	ck_assert_int_eq(shipc_kv_put(h, "unk", "k0", "v0", 2, NULL), 0);
	warm_up_emits(h);
	char err[256];

	server_stop();
	/* Sent, never answered: it may have been applied. */
	int r = shipc_kv_put(h, "unk", "k1", "v1", 2, NULL);
	int e = errno;
	shipc_last_error(h, err, sizeof(err));
	ck_assert_int_eq(r, -1);
	ck_assert_msg(e == ETIMEDOUT || e == EAGAIN, "put: %s (%s)",
	              strerror(e), err);
	ck_assert_msg(shipc_outcome_unknown(h) == 1, "put: no flag: %s", err);
	ck_assert_msg(strstr(err, "outcome unknown"), "put: %s", err);

	/* A read that got no answer changed nothing. */
	struct shipc_kv_entry *ent = NULL;
	r = shipc_kv_get(h, "unk", "k0", 0, &ent);
	e = errno;
	shipc_last_error(h, err, sizeof(err));
	ck_assert_int_eq(r, -1);
	ck_assert_msg(e == ETIMEDOUT || e == EAGAIN, "get: %s (%s)",
	              strerror(e), err);
	ck_assert_msg(shipc_outcome_unknown(h) == 0, "get: flag: %s", err);
	ck_assert_ptr_null(strstr(err, "outcome unknown"));

	/* Refused before sending: known not applied. */
	ck_assert_int_eq(shipc_kv_put(h, "unk", "bad key", "v", 1, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shipc_outcome_unknown(h), 0);

	server_cont();
	ck_assert(fx_wait(link_up, h, 20000));
	/* It was stored after all: that is what the flag warns of. */
	ent = NULL;
	uint64_t t = fx_now_ms();
	while ((r = shipc_kv_get(h, "unk", "k1", 0, &ent)) < 0 &&
	       fx_now_ms() - t < 15000)
		fx_sleep_ms(200);
	ck_assert_int_eq(r, 0);
	ck_assert_str_eq(ent->value, "v1");
	shipc_kv_entry_free(ent);
	shipc_close(h);
}
END_TEST

START_TEST(emit_without_answer_is_outcome_unknown)
{
	struct shipc *h = shipc_connect(sd.sock, "unknown-emit");
	ck_assert_ptr_nonnull(h);
	warm_up_emits(h);

	server_stop();
	struct shipc_emit e1 = {.event_type = "unk.stalled",
	                        .payload_json = "2",
	                        .msg_id = "unk-emit-1"};
	struct emit_wait w = {0};
	ck_assert_int_eq(shipc_emit_async(h, &e1, emitted, &w), 0);
	uint64_t t = fx_now_ms();
	while (!w.done && fx_now_ms() - t < 15000)
		shipc_dispatch(h, 100);
	ck_assert(w.done);
	ck_assert_msg(w.err == ETIMEDOUT || w.err == EAGAIN, "emit: %s (%s)",
	              strerror(w.err), w.error);
	ck_assert_msg(strstr(w.error, "outcome unknown"), "emit: %s", w.error);
	ck_assert_msg(w.unknown == 1, "emit: no flag: %s", w.error);

	server_cont();
	ck_assert(fx_wait(link_up, h, 20000));
	/* The same msg id again: JetStream had it already. */
	struct shipc_emit_result res;
	int r;
	t = fx_now_ms();
	while ((r = shipc_emit(h, &e1, &res)) < 0 && fx_now_ms() - t < 15000)
		fx_sleep_ms(200);
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(res.duplicate, 1);
	shipc_close(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fair");
	TCase *tc = tcase_create("backpressure");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, other_apps_answered_while_one_floods);
	tcase_add_test(tc, paused_app_leaves_or_waits);
	suite_add_tcase(s, tc);
	TCase *unk = tcase_create("outcome_unknown");
	tcase_add_checked_fixture(unk, setup, teardown);
	tcase_set_timeout(unk, 120);
	tcase_add_test(unk, write_without_answer_is_outcome_unknown);
	tcase_add_test(unk, emit_without_answer_is_outcome_unknown);
	suite_add_tcase(s, unk);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
