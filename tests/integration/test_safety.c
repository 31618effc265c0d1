/* SPDX-License-Identifier: MIT */
/* Lifetimes and budgets: clients that leave mid-operation, frames that
 * open and close a stream at once, failures that pour onto a client that
 * does not read. Each case once crashed shipd (under AddressSanitizer a
 * report fails the test through shipd's exit status). */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fixture.h"
#include "raw.h"
#include "shipc.h"

static struct natsd nd;
static struct shipdp sd;

static void setup_with(const char *const *extra)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_up(&nd, &sd, extra), 0);
}

static void setup(void)
{
	setup_with(NULL);
}

static void setup_small_memory(void)
{
	static const char *const extra[] = {
		"-o", "client_output_limit=65536", "-o",
		"client_memory_limit=1048576", NULL};
	setup_with(extra);
}

static void setup_client_memory(void)
{
	static const char *const extra[] = {"-o", "client_memory_limit=1048576",
	                                    NULL};
	setup_with(extra);
}

static void setup_tight(void)
{
	static const char *const extra[] = {"-o", "max_requests=8", NULL};
	setup_with(extra);
}

static void teardown(void)
{
	int rc = fx_down(&nd, &sd);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

/* shipd is alive and answers another client. */
static void assert_serving(void)
{
	ck_assert_int_eq(kill(sd.pid, 0), 0);
	struct shipc *h = shipc_connect(sd.sock, "bystander");
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(h, &st), 0);
	shipc_close(h);
}

static void pack_streams(struct ipc_buf *b, uint64_t id)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__StreamsRequest r = SHIP__STREAMS_REQUEST__INIT;
	f.id = id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_STREAMS;
	f.streams = &r;
	raw_pack(b, &f);
}

static void pack_declare(struct ipc_buf *b, uint64_t id, const char *name,
                         char *subject)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__StreamDeclare d = SHIP__STREAM_DECLARE__INIT;
	d.name = (char *)name;
	d.subjects = &subject;
	d.n_subjects = 1;
	d.memory = true;
	f.id = id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_STREAM_DECLARE;
	f.stream_declare = &d;
	raw_pack(b, &f);
}

static void pack_history(struct ipc_buf *b, uint64_t id)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ChannelHistory h = SHIP__CHANNEL_HISTORY__INIT;
	h.channel = "lobby";
	f.id = id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_CHANNEL_HISTORY;
	f.channel_history = &h;
	raw_pack(b, &f);
}

static void pack_emit(struct ipc_buf *b, uint64_t id)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Emit e = SHIP__EMIT__INIT;
	e.event_type = "safety.emit";
	e.source = "test";
	f.id = id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_EMIT;
	f.emit = &e;
	raw_pack(b, &f);
}

static void pack_subscribe(struct ipc_buf *b, uint64_t id, const char *subj,
                           uint64_t max_msgs)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Subscribe s = SHIP__SUBSCRIBE__INIT;
	s.subject = (char *)subj;
	s.max_msgs = max_msgs;
	f.id = id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_SUBSCRIBE;
	f.subscribe = &s;
	raw_pack(b, &f);
}

static void pack_unsubscribe(struct ipc_buf *b, uint64_t id, uint64_t stream)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Unsubscribe u = SHIP__UNSUBSCRIBE__INIT;
	u.stream = stream;
	f.id = id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_UNSUBSCRIBE;
	f.unsubscribe = &u;
	raw_pack(b, &f);
}

static void pack_publish(struct ipc_buf *b, const char *subj)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Publish p = SHIP__PUBLISH__INIT;
	Ship__Msg m = SHIP__MSG__INIT;
	Ship__Header h = SHIP__HEADER__INIT;
	Ship__Header *hs[] = {&h};
	h.key = "k";
	h.value = "v";
	m.subject = (char *)subj;
	m.headers = hs;
	m.n_headers = 1; /* not the fast path */
	p.msg = &m;
	f.body_case = SHIP__CLIENT_FRAME__BODY_PUBLISH;
	f.publish = &p;
	raw_pack(b, &f);
}

/* shipd declares SHIP_EVENTS as NATS comes up: wait until an emit is
 * stored. */
static void wait_events(int fd)
{
	int code = -1;
	for (int i = 0; i < 50 && code != SHIP__CODE__OK; i++) {
		struct ipc_buf e = {0};
		pack_emit(&e, 9);
		raw_send(fd, ipc_buf_head(&e), ipc_buf_used(&e));
		ipc_buf_finish(&e);
		Ship__ServerFrame *f = raw_reply(fd, 9);
		code = f->code;
		ship__server_frame__free_unpacked(f, NULL);
		if (code != SHIP__CODE__OK)
			fx_sleep_ms(100);
	}
	ck_assert_int_eq(code, SHIP__CODE__OK);
}

/* Registry requests (their op is not the first member of its struct). */
static void pack_registry(struct ipc_buf *b, uint64_t id)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__StoreRequest st = SHIP__STORE_REQUEST__INIT;
	st.op = SHIP__STORE_OP__STORE_LIST;
	f.id = id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_STORE;
	f.store = &st;
	raw_pack(b, &f);
	Ship__BeingRequest br = SHIP__BEING_REQUEST__INIT;
	br.op = SHIP__BEING_OP__BEING_LIST;
	f.id = id + 1;
	f.body_case = SHIP__CLIENT_FRAME__BODY_BEING;
	f.being = &br;
	raw_pack(b, &f);
	br.op = SHIP__BEING_OP__BEING_GET;
	br.being_id = "nobody";
	f.id = id + 2;
	raw_pack(b, &f);
}

/* n KV watches or keys requests on bucket, ids first.., in one write. */
static void send_kv_many(int fd, Ship__ClientFrame__BodyCase kind,
                         const char *bucket, uint64_t first, unsigned n)
{
	struct ipc_buf b = {0};
	for (uint64_t i = 0; i < n; i++) {
		Ship__ClientFrame cf = SHIP__CLIENT_FRAME__INIT;
		Ship__KvWatch w = SHIP__KV_WATCH__INIT;
		Ship__KvKeys k = SHIP__KV_KEYS__INIT;
		w.bucket = k.bucket = (char *)bucket;
		cf.id = first + i;
		cf.body_case = kind;
		if (kind == SHIP__CLIENT_FRAME__BODY_KV_WATCH)
			cf.kv_watch = &w;
		else
			cf.kv_keys = &k;
		raw_pack(&b, &cf);
	}
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
}

static void send_and_close(int fd, struct ipc_buf *b)
{
	raw_send(fd, ipc_buf_head(b), ipc_buf_used(b));
	ipc_buf_finish(b);
	close(fd);
}

/* Listing streams, declaring one, a history and an emit, each answered
 * after its client left. */
START_TEST(answers_after_the_client_left)
{
	for (int i = 0; i < 30; i++) {
		int fd = raw_open(sd.sock);
		struct ipc_buf b = {0};
		char name[32], subject[32];
		snprintf(name, sizeof(name), "GONE_%d", i);
		snprintf(subject, sizeof(subject), "gone.%d", i);
		pack_streams(&b, 2);
		pack_declare(&b, 3, name, subject);
		pack_history(&b, 4);
		pack_emit(&b, 5);
		pack_registry(&b, 6);
		send_and_close(fd, &b);
	}
	fx_sleep_ms(1500); /* the answers come, to nobody */
	assert_serving();
}
END_TEST

/* Errors answered while the client's frames are still being read, to a
 * socket already closed: writing them fails, and the client being read
 * must outlive that. */
START_TEST(failures_while_reading_a_closed_client)
{
	natsd_stop(&nd);
	for (int i = 0; i < 20; i++) {
		int fd = raw_open(sd.sock);
		struct ipc_buf b = {0};
		for (int k = 0; k < 8; k++) {
			pack_history(&b, 10 + (uint64_t)k);
			pack_streams(&b, 20 + (uint64_t)k);
		}
		send_and_close(fd, &b);
	}
	fx_sleep_ms(300);
	assert_serving();
	ck_assert_int_eq(natsd_restart(&nd), 0);
}
END_TEST

/* Subscribe and unsubscribe in one write, and a subscription that ends
 * by max_msgs before the server confirmed it: each stream ends once and
 * shipd goes on. */
START_TEST(stream_ends_before_its_answer)
{
	int fd = raw_open(sd.sock);
	struct ipc_buf b = {0};
	for (uint64_t i = 0; i < 50; i++) {
		pack_subscribe(&b, 100 + i, "safety.x", 0);
		pack_unsubscribe(&b, 0, 100 + i);
		pack_subscribe(&b, 200 + i, "safety.y", 1);
		pack_publish(&b, "safety.y");
	}
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	/* Every stream ends exactly once; none is answered after its end. */
	unsigned ends = 0, after_end = 0;
	uint8_t ended[300] = {0};
	for (int n = 0; n < 1000 && ends < 100; n++) {
		Ship__ServerFrame *f = raw_read(fd);
		ck_assert_ptr_nonnull(f);
		ck_assert_uint_lt(f->id, 300);
		if (ended[f->id])
			after_end++;
		if (f->body_case == SHIP__SERVER_FRAME__BODY_END) {
			ended[f->id] = 1;
			ends++;
		}
		ship__server_frame__free_unpacked(f, NULL);
	}
	ck_assert_uint_eq(ends, 100);
	ck_assert_uint_eq(after_end, 0);
	close(fd);
	assert_serving();
}
END_TEST

/* Thousands of emits waiting for acks when NATS dies, on a client that
 * never reads: their errors overflow its output and it is let go, while
 * shipd is still walking the failed waits. */
START_TEST(failed_emits_overflow_a_client_that_does_not_read)
{
	int fd = raw_open(sd.sock);
	int rcv = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	ck_assert_int_eq(fx_freeze(nd.pid, 2000), 0); /* acks stop coming */
	struct ipc_buf b = {0};
	for (uint64_t i = 1; i <= 4000; i++)
		pack_emit(&b, 10 + i);
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	fx_sleep_ms(500);
	kill(nd.pid, SIGKILL);
	kill(nd.pid, SIGCONT);
	fx_wait_exit(nd.pid, 5000);
	nd.pid = 0;
	fx_sleep_ms(1500);
	close(fd);
	fx_sleep_ms(200);
	assert_serving();
	ck_assert_int_eq(natsd_restart(&nd), 0);
}
END_TEST

static unsigned count_exhausted(int fd, uint64_t first, unsigned n);

/* KV watches whose consumer is being made when NATS dies: failing one
 * wait ends its watch, which cancels the watch's other wait, still in
 * the list of waits being failed. */
START_TEST(waits_failed_together_cancel_each_other)
{
	struct shipc *h = shipc_connect(sd.sock, "watcher");
	ck_assert_ptr_nonnull(h);
	struct shipc_kv_config cfg = {.bucket = "dying", .memory = 1};
	ck_assert_int_eq(shipc_kv_bucket_create(h, &cfg, NULL), 0);
	shipc_close(h);
	int fd = raw_open(sd.sock);
	ck_assert_int_eq(fx_freeze(nd.pid, 2000), 0);
	send_kv_many(fd, SHIP__CLIENT_FRAME__BODY_KV_WATCH, "dying", 10, 20);
	fx_sleep_ms(300);
	kill(nd.pid, SIGKILL);
	kill(nd.pid, SIGCONT);
	fx_wait_exit(nd.pid, 5000);
	nd.pid = 0;
	/* Each watch is answered: failed, or (if it got its answer in)
	 * ended. */
	ck_assert_uint_eq(count_exhausted(fd, 10, 20), 0);
	close(fd);
	assert_serving();
	ck_assert_int_eq(natsd_restart(&nd), 0);
}
END_TEST

/* One id names one open stream, whatever its kind: a subscription's id
 * cannot open a KV watch or an event consumer too, and Unsubscribe ends
 * whichever it is. */
START_TEST(stream_ids_are_one_namespace)
{
	int fd = raw_open(sd.sock);
	wait_events(fd);
	Ship__ClientFrame cf = SHIP__CLIENT_FRAME__INIT;
	Ship__EventSubscribe es = SHIP__EVENT_SUBSCRIBE__INIT;
	es.pattern = "nothing.here"; /* no delivery to mistake for an answer */
	cf.id = 7;
	cf.body_case = SHIP__CLIENT_FRAME__BODY_EVENT_SUBSCRIBE;
	cf.event_subscribe = &es;
	raw_frame(fd, &cf);
	Ship__ServerFrame *f = raw_reply(fd, 7);
	ck_assert_int_eq(f->code, SHIP__CODE__OK);
	ship__server_frame__free_unpacked(f, NULL);

	/* A core subscription under the consumer's id: refused. */
	struct ipc_buf b = {0};
	pack_subscribe(&b, 7, "ns.x", 0);
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	f = raw_reply(fd, 7);
	ck_assert_int_eq(f->code, SHIP__CODE__INVALID_ARGUMENT);
	ck_assert_ptr_nonnull(strstr(f->error, "open stream"));
	ship__server_frame__free_unpacked(f, NULL);

	Ship__KvWatch kw = SHIP__KV_WATCH__INIT;
	kw.bucket = "nsbucket";
	cf.body_case = SHIP__CLIENT_FRAME__BODY_KV_WATCH;
	cf.kv_watch = &kw;
	raw_frame(fd, &cf);
	f = raw_reply(fd, 7);
	ck_assert_int_eq(f->code, SHIP__CODE__INVALID_ARGUMENT);
	ck_assert_ptr_nonnull(strstr(f->error, "open stream"));
	ship__server_frame__free_unpacked(f, NULL);

	/* Unsubscribe ends the consumer: a StreamEnd, then the OK. */
	b = (struct ipc_buf){0};
	pack_unsubscribe(&b, 8, 7);
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	f = raw_reply(fd, 7);
	ck_assert_int_eq(f->body_case, SHIP__SERVER_FRAME__BODY_END);
	ship__server_frame__free_unpacked(f, NULL);
	f = raw_reply(fd, 8);
	ck_assert_int_eq(f->code, SHIP__CODE__OK);
	ship__server_frame__free_unpacked(f, NULL);
	/* The largest id is the id map's own: refused, not "out of
	 * memory". */
	b = (struct ipc_buf){0};
	pack_subscribe(&b, UINT64_MAX, "ns.max", 0);
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	f = raw_reply(fd, UINT64_MAX);
	ck_assert_int_eq(f->code, SHIP__CODE__INVALID_ARGUMENT);
	ck_assert_ptr_nonnull(strstr(f->error, "2^64"));
	ship__server_frame__free_unpacked(f, NULL);
	/* And again: nothing is open under that id any more. */
	b = (struct ipc_buf){0};
	pack_unsubscribe(&b, 9, 7);
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	f = raw_reply(fd, 9);
	ck_assert_int_eq(f->code, SHIP__CODE__NOT_FOUND);
	ship__server_frame__free_unpacked(f, NULL);
	close(fd);
}
END_TEST

/* Read the answers to requests first .. first + n - 1, in whatever order
 * they come (pushes and other answers skipped); how many were refused. */
static unsigned count_exhausted(int fd, uint64_t first, unsigned n)
{
	unsigned exhausted = 0, got = 0;
	bool seen[64] = {0};
	ck_assert_uint_le(n, 64);
	while (got < n) {
		Ship__ServerFrame *f = raw_read(fd);
		ck_assert_msg(f != NULL, "%u of %u answers", got, n);
		if (f->id >= first && f->id < first + n && !seen[f->id - first] &&
		    f->body_case != SHIP__SERVER_FRAME__BODY_END) {
			seen[f->id - first] = true;
			got++;
			exhausted += f->code == SHIP__CODE__RESOURCE_EXHAUSTED;
		}
		ship__server_frame__free_unpacked(f, NULL);
	}
	return exhausted;
}

/* Histories, stream listings and declarations count against
 * max_requests (8 here) like every other request. */
START_TEST(every_request_kind_is_counted)
{
	int fd = raw_open(sd.sock);
	ck_assert_int_eq(fx_freeze(nd.pid, 2000), 0); /* nothing completes meanwhile */
	struct ipc_buf b = {0};
	for (uint64_t i = 0; i < 20; i++)
		pack_history(&b, 100 + i);
	for (uint64_t i = 0; i < 20; i++)
		pack_streams(&b, 200 + i);
	for (uint64_t i = 0; i < 20; i++) {
		char subject[32];
		snprintf(subject, sizeof(subject), "budget.%d", (int)i);
		pack_declare(&b, 300 + i, "BUDGET", subject);
	}
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	/* The 8 histories hold every slot: all the rest are refused at
	 * once, before NATS answers anything. */
	struct timeval tv = {2, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	unsigned refused = 0;
	for (int n = 0; n < 52; n++) {
		Ship__ServerFrame *f = raw_read(fd);
		ck_assert_msg(f != NULL, "only %d answers before NATS", n);
		ck_assert_int_eq(f->code, SHIP__CODE__RESOURCE_EXHAUSTED);
		ck_assert_ptr_nonnull(strstr(f->error, "requests in flight"));
		refused++;
		ship__server_frame__free_unpacked(f, NULL);
	}
	ck_assert_uint_eq(refused, 52);
	kill(nd.pid, SIGCONT);
	/* The 8 finish once NATS is back: none of them was refused. */
	tv.tv_sec = 15;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_uint_eq(count_exhausted(fd, 100, 8), 0);
	close(fd);
	assert_serving();
}
END_TEST

/* Keep-alives have a per-client limit (64). */
START_TEST(keepalives_are_bounded)
{
	struct shipc *h = shipc_connect(sd.sock, "beings");
	ck_assert_ptr_nonnull(h);
	int refused = 0;
	for (int i = 0; i < 66; i++) {
		char id[32];
		snprintf(id, sizeof(id), "robot-%d", i);
		ck_assert_int_eq(shipc_being_register(h, id, NULL, 0, NULL), 0);
		if (shipc_being_keepalive(h, id, 60000) < 0) {
			ck_assert_int_eq(errno, ENOBUFS);
			refused++;
		}
	}
	ck_assert_int_eq(refused, 2);
	shipc_close(h);
	assert_serving();
}
END_TEST

/* Redeliveries the app never acks do not pile up ack tokens: only the
 * newest 4,096 stay valid. */
START_TEST(ack_tokens_are_bounded)
{
	int fd = raw_open(sd.sock);
	wait_events(fd);
	struct ipc_buf b = {0};
	for (uint64_t i = 0; i < 1000; i++)
		pack_emit(&b, 10 + i);
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	for (uint64_t i = 0; i < 1000; i++) {
		Ship__ServerFrame *f = raw_reply(fd, 10 + i);
		ck_assert_int_eq(f->code, SHIP__CODE__OK);
		ship__server_frame__free_unpacked(f, NULL);
	}
	Ship__ClientFrame cf = SHIP__CLIENT_FRAME__INIT;
	Ship__EventSubscribe es = SHIP__EVENT_SUBSCRIBE__INIT;
	es.pattern = "safety.>";
	es.ack_wait_ms = 200;
	es.credit = 60000;
	cf.id = 5000;
	cf.body_case = SHIP__CLIENT_FRAME__BODY_EVENT_SUBSCRIBE;
	cf.event_subscribe = &es;
	raw_frame(fd, &cf);
	uint64_t first = 0, last = 0;
	uint64_t end = fx_now_ms() + 60000;
	while (last < 4500 && fx_now_ms() < end) {
		Ship__ServerFrame *f = raw_read(fd);
		ck_assert_ptr_nonnull(f);
		if (f->body_case == SHIP__SERVER_FRAME__BODY_EVENT) {
			if (!first)
				first = f->event->token;
			last = f->event->token;
		}
		ship__server_frame__free_unpacked(f, NULL);
	}
	ck_assert_uint_ge(last, 4500);
	uint64_t tokens[] = {first};
	Ship__EventAck ack = SHIP__EVENT_ACK__INIT;
	ack.stream = 5000;
	ack.tokens = tokens;
	ack.n_tokens = 1;
	cf.id = 6000;
	cf.body_case = SHIP__CLIENT_FRAME__BODY_EVENT_ACK;
	cf.event_ack = &ack;
	raw_frame(fd, &cf);
	Ship__ServerFrame *f = raw_reply(fd, 6000);
	ck_assert_int_eq(f->code, SHIP__CODE__NOT_FOUND);
	ship__server_frame__free_unpacked(f, NULL);
	tokens[0] = last;
	cf.id = 6001;
	raw_frame(fd, &cf);
	f = raw_reply(fd, 6001);
	ck_assert_int_eq(f->code, SHIP__CODE__OK);
	ship__server_frame__free_unpacked(f, NULL);
	close(fd);
	assert_serving();
}
END_TEST

/* Send f with the first 'X' of its packed bytes turned into a NUL. */
static void send_with_nul(int fd, const Ship__ClientFrame *f)
{
	struct ipc_buf b = {0};
	raw_pack(&b, f);
	uint8_t *x = memchr(ipc_buf_head(&b), 'X', ipc_buf_used(&b));
	ck_assert_ptr_nonnull(x);
	*x = 0;
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
}

/* A NUL inside a string is refused, never cut short: key "a\0evil" does
 * not overwrite "a", a subject "ok\0x" does not publish to "ok". */
START_TEST(nul_in_strings_is_refused)
{
	struct shipc *h = shipc_connect(sd.sock, "nul");
	ck_assert_ptr_nonnull(h);
	struct shipc_kv_config cfg = {.bucket = "nul", .memory = 1};
	ck_assert_int_eq(shipc_kv_bucket_create(h, &cfg, NULL), 0);
	ck_assert_int_eq(shipc_kv_put(h, "nul", "a", "good", 4, NULL), 0);

	int fd = raw_open(sd.sock);
	Ship__ClientFrame cf = SHIP__CLIENT_FRAME__INIT;
	Ship__KvWrite w = SHIP__KV_WRITE__INIT;
	w.bucket = "nul";
	w.key = "aXevil";
	w.value.data = (uint8_t *)"bad";
	w.value.len = 3;
	cf.id = 11;
	cf.body_case = SHIP__CLIENT_FRAME__BODY_KV_WRITE;
	cf.kv_write = &w;
	send_with_nul(fd, &cf);
	Ship__ServerFrame *f = raw_reply(fd, 11);
	ck_assert_int_eq(f->code, SHIP__CODE__INVALID_ARGUMENT);
	ck_assert_ptr_nonnull(strstr(f->error, "NUL"));
	ship__server_frame__free_unpacked(f, NULL);

	struct ipc_buf b = {0};
	pack_publish(&b, "okXx"); /* with a header: not the fast path */
	uint8_t *x = memchr(ipc_buf_head(&b), 'X', ipc_buf_used(&b));
	*x = 0;
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	f = raw_read(fd); /* fire and forget: answered only on failure */
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->code, SHIP__CODE__INVALID_ARGUMENT);
	ship__server_frame__free_unpacked(f, NULL);
	close(fd);

	struct shipc_kv_entry *e;
	ck_assert_int_eq(shipc_kv_get(h, "nul", "a", 0, &e), 0);
	ck_assert_uint_eq(e->len, 4);
	ck_assert_int_eq(memcmp(e->value, "good", 4), 0);
	shipc_kv_entry_free(e);
	shipc_close(h);
}
END_TEST

/* A frame of a million empty headers is refused before it is decoded:
 * shipd does not grow by what decoding it would cost (72 MB before). */
START_TEST(repeated_fields_are_bounded_before_decoding)
{
	int fd = raw_open(sd.sock);
	long before = fx_rss_kib(sd.pid);
	size_t n = 1000000, len = 2 * n + 32;
	uint8_t *body = malloc(len), *p = body;
	/* ClientFrame{id: 5, publish{msg{subject "h.x", headers × n}}} */
	size_t msg_len = 5 + 2 * n, pub_len, frame_len;
	uint8_t vmsg[8], vpub[8];
	size_t nm = 0, np = 0;
	for (size_t v = msg_len; ; v >>= 7) {
		vmsg[nm++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		if (v <= 0x7f)
			break;
	}
	pub_len = 1 + nm + msg_len;
	for (size_t v = pub_len; ; v >>= 7) {
		vpub[np++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		if (v <= 0x7f)
			break;
	}
	*p++ = 0x08;
	*p++ = 5;
	*p++ = 0x1a;
	memcpy(p, vpub, np);
	p += np;
	*p++ = 0x0a;
	memcpy(p, vmsg, nm);
	p += nm;
	memcpy(p, "\x0a\x03h.x", 5);
	p += 5;
	for (size_t i = 0; i < n; i++) {
		*p++ = 0x22;
		*p++ = 0;
	}
	frame_len = (size_t)(p - body);
	uint8_t hdr[IPC_HDR_LEN];
	ipc_frame_header(hdr, frame_len);
	raw_send(fd, hdr, sizeof(hdr));
	raw_send(fd, body, frame_len);
	free(body);
	Ship__ServerFrame *f = raw_reply(fd, 5);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->code, SHIP__CODE__INVALID_ARGUMENT);
	ck_assert_ptr_nonnull(strstr(f->error, "headers"));
	ship__server_frame__free_unpacked(f, NULL);
	long after = fx_rss_kib(sd.pid);
#ifndef SHIP_SANITIZED
	ck_assert_msg(after - before < 16 * 1024, "shipd grew by %ld KiB",
	              after - before);
#else
	(void)before;
	(void)after;
#endif
	close(fd);
	assert_serving();
}
END_TEST

/* Watches of an app that stopped reading queue entries for it: each up
 * to its own bound (4 x the 1 MiB output limit), and all of them
 * together up to the client's memory (1 MiB here), after which a watch
 * ends saying so. */
START_TEST(watch_queues_share_the_client_budget)
{
	struct shipc *h = shipc_connect(sd.sock, "writer");
	ck_assert_ptr_nonnull(h);
	struct shipc_kv_config cfg = {.bucket = "wide", .memory = 1};
	ck_assert_int_eq(shipc_kv_bucket_create(h, &cfg, NULL), 0);
	static char value[30000];
	memset(value, 'w', sizeof(value));
	for (int i = 0; i < 100; i++) {
		char key[16];
		snprintf(key, sizeof(key), "k%d", i);
		ck_assert_int_eq(shipc_kv_put(h, "wide", key, value,
		                              sizeof(value), NULL), 0);
	}
	int fd = raw_open(sd.sock);
	int rcv = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	send_kv_many(fd, SHIP__CLIENT_FRAME__BODY_KV_WATCH, "wide", 10, 3);
	fx_sleep_ms(2000); /* the watches fill, nobody reads */
	bool budget_named = false;
	for (int n = 0; n < 100000; n++) {
		Ship__ServerFrame *f = raw_read(fd);
		if (!f)
			break;
		if (f->body_case == SHIP__SERVER_FRAME__BODY_END && f->error &&
		    strstr(f->error, "client_memory_limit"))
			budget_named = true;
		ship__server_frame__free_unpacked(f, NULL);
		if (budget_named)
			break;
	}
	ck_assert(budget_named);
	close(fd);
	shipc_close(h);
	assert_serving();
}
END_TEST

/* A channel history larger than a frame (20 x 900 kB) is paged: each
 * answer fits what the app may be sent, and paging back gives every
 * message once, in order. Before, the client was closed. */
START_TEST(big_history_is_paged)
{
	struct shipc *h = shipc_connect(sd.sock, "pager");
	ck_assert_ptr_nonnull(h);
	static char content[900001];
	for (int i = 0; i < 20; i++) {
		memset(content, 'a' + i, sizeof(content) - 1);
		content[sizeof(content) - 1] = '\0';
		int rc = -1;
		for (int t = 0; t < 50 && rc < 0; t++) {
			rc = shipc_channel_send(h, "bulk", "pager", content, NULL,
			                        NULL);
			if (rc < 0) /* CHANNELS is declared as NATS comes up */
				fx_sleep_ms(100);
		}
		ck_assert_int_eq(rc, 0);
	}
	uint64_t before = 0, last_seq = UINT64_MAX;
	int seen = 0, pages = 0;
	do {
		struct shipc_channel_msg *list;
		size_t n;
		ck_assert_int_eq(shipc_channel_history(h, "bulk", 20, before, &list,
		                                       &n, &before), 0);
		ck_assert_uint_ge(n, 1);
		ck_assert_uint_le(n, 2); /* ~1 MiB per answer */
		for (size_t k = n; k-- > 0;) {
			ck_assert_uint_lt(list[k].seq, last_seq);
			last_seq = list[k].seq;
			ck_assert_int_eq(list[k].content[0], 'a' + 19 - seen);
			seen++;
		}
		shipc_channel_history_free(list, n);
		pages++;
	} while (before && pages < 40);
	ck_assert_int_eq(seen, 20);
	ck_assert_int_eq(shipc_is_connected(h), 1);
	shipc_close(h);
}
END_TEST

/* What collections may hold is reserved before they start: with 1 MiB
 * for the client and 64 KiB per KV keys request, the 17th at once is
 * refused and the others finish. */
START_TEST(client_memory_is_reserved)
{
	struct shipc *h = shipc_connect(sd.sock, "reserve");
	ck_assert_ptr_nonnull(h);
	struct shipc_kv_config cfg = {.bucket = "mem", .memory = 1};
	ck_assert_int_eq(shipc_kv_bucket_create(h, &cfg, NULL), 0);
	ck_assert_int_eq(shipc_kv_put(h, "mem", "k", "v", 1, NULL), 0);
	shipc_close(h);
	int fd = raw_open(sd.sock);
	ck_assert_int_eq(fx_freeze(nd.pid, 2000), 0);
	send_kv_many(fd, SHIP__CLIENT_FRAME__BODY_KV_KEYS, "mem", 100, 20);
	struct timeval tv = {2, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (int n = 0; n < 4; n++) {
		Ship__ServerFrame *f = raw_read(fd);
		ck_assert_msg(f != NULL, "only %d answers before NATS", n);
		ck_assert_uint_ge(f->id, 116);
		ck_assert_int_eq(f->code, SHIP__CODE__RESOURCE_EXHAUSTED);
		ck_assert_ptr_nonnull(strstr(f->error, "client_memory_limit"));
		ship__server_frame__free_unpacked(f, NULL);
	}
	kill(nd.pid, SIGCONT);
	tv.tv_sec = 15;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_uint_eq(count_exhausted(fd, 100, 16), 0);
	close(fd);
	assert_serving();
}
END_TEST

/* 60,000 channel histories from one client (they once took shipd to
 * 325 MB and left thousands of consumers on the server): only what the
 * client's memory budget holds run at once, the rest are refused, shipd
 * stays small and another client's KV puts go on. */
/* Read one answer; count it. */
static void flood_read(int fd, unsigned *answered, unsigned *refused)
{
	Ship__ServerFrame *f = raw_read(fd);
	ck_assert_msg(f != NULL, "no answer after %u", *answered);
	(*answered)++;
	*refused += f->code == SHIP__CODE__RESOURCE_EXHAUSTED;
	ship__server_frame__free_unpacked(f, NULL);
}

START_TEST(history_flood_is_bounded)
{
	struct shipc *other = shipc_connect(sd.sock, "other");
	ck_assert_ptr_nonnull(other);
	struct shipc_kv_config cfg = {.bucket = "calm", .memory = 1};
	ck_assert_int_eq(shipc_kv_bucket_create(other, &cfg, NULL), 0);
	long before = fx_rss_kib(sd.pid);
	int fd = raw_open(sd.sock);
	struct timeval tv = {15, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	unsigned n = 60000, sent = 0, answered = 0, refused = 0;
	/* Batches of 1,000 in one write each, read back as they come: the
	 * requests in flight at once are what the budget lets run. */
	while (sent < n) {
		struct ipc_buf b = {0};
		for (unsigned k = 0; k < 1000; k++, sent++)
			pack_history(&b, 1000 + sent);
		raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
		ipc_buf_finish(&b);
		while (answered + 64 < sent)
			flood_read(fd, &answered, &refused);
		if (sent == n / 2) {
			/* Meanwhile another app's KV put goes on. */
			uint64_t t0 = fx_now_ms();
			ck_assert_int_eq(shipc_kv_put(other, "calm", "k", "v", 1,
			                              NULL), 0);
			ck_assert_msg(fx_now_ms() - t0 < 3000, "a put took %llu ms",
			              (unsigned long long)(fx_now_ms() - t0));
		}
	}
	while (answered < n)
		flood_read(fd, &answered, &refused);
	long after = fx_rss_kib(sd.pid);
	ck_assert_uint_gt(refused, n * 3 / 4);
#ifndef SHIP_SANITIZED
	ck_assert_msg(after - before < 64 * 1024, "shipd grew by %ld KiB",
	              after - before);
#else
	(void)before;
	(void)after;
#endif
	close(fd);
	shipc_close(other);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("safety");
	TCase *tc = tcase_create("lifetimes");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, answers_after_the_client_left);
	tcase_add_test(tc, failures_while_reading_a_closed_client);
	tcase_add_test(tc, stream_ends_before_its_answer);
	tcase_add_test(tc, failed_emits_overflow_a_client_that_does_not_read);
	tcase_add_test(tc, stream_ids_are_one_namespace);
	tcase_add_test(tc, waits_failed_together_cancel_each_other);
	tcase_add_test(tc, nul_in_strings_is_refused);
	tcase_add_test(tc, repeated_fields_are_bounded_before_decoding);
	suite_add_tcase(s, tc);
	TCase *bud = tcase_create("budgets");
	tcase_set_timeout(bud, 120);
	tcase_add_checked_fixture(bud, setup_tight, teardown);
	tcase_add_test(bud, every_request_kind_is_counted);
	suite_add_tcase(s, bud);
	TCase *held = tcase_create("held");
	tcase_set_timeout(held, 120);
	tcase_add_checked_fixture(held, setup, teardown);
	tcase_add_test(held, keepalives_are_bounded);
	tcase_add_test(held, ack_tokens_are_bounded);
	tcase_add_test(held, big_history_is_paged);
	tcase_add_test(held, history_flood_is_bounded);
	suite_add_tcase(s, held);
	TCase *mem = tcase_create("memory");
	tcase_set_timeout(mem, 120);
	tcase_add_checked_fixture(mem, setup_small_memory, teardown);
	tcase_add_test(mem, client_memory_is_reserved);

	suite_add_tcase(s, mem);
	TCase *watch = tcase_create("watch-memory");
	tcase_set_timeout(watch, 120);
	tcase_add_checked_fixture(watch, setup_client_memory, teardown);
	tcase_add_test(watch, watch_queues_share_the_client_budget);
	suite_add_tcase(s, watch);
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
