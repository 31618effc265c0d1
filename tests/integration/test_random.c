/* SPDX-License-Identifier: MIT */
/* The protocol fuzzed against the live daemon: raw clients send valid
 * frames of every kind with random fields drawn from small pools (so they
 * meet real state: the same ids, subjects, buckets and streams) and from
 * boundary values, pipelined, read or never read, and close at random
 * points, mid-frame too, while NATS is up, down, restarting and up again.
 * A libshipc bystander must be served throughout; a crash or a sanitizer
 * report fails the test through shipd's exit status.
 *
 * SHIP_RANDOM_SEED=n repeats a run's frames (the seed is printed),
 * SHIP_RANDOM_SECONDS=n makes it longer or shorter, SHIP_RANDOM_TRACE=1
 * prints every frame sent, SHIP_RANDOM_BIG=1 sends messages up to the
 * limits too. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "ipc.h"
#include "shipc.h"

#define NCONNS 6
#define NIDS 24               /* ids 1..NIDS, reused by every kind */
#define OUT_LIMIT (4u << 20)  /* queued to one connection before it waits */
#define READ_LIMIT (1u << 20) /* read from one connection per round */
#define DEFAULT_SECONDS 32

static struct natsd nd;
static struct shipdp sd;
static uint64_t seed;
static uint64_t rng; /* the main thread's: frames, fields, close points */
static bool trace;
/* Messages up to the limits (SHIP_RANDOM_BIG=1). Off by default: a large
 * message cut by a NATS restart can leave nats.c 3.4.1's link dead while
 * it says connected (the link issue's first fault), which this test
 * would report as the bystander starved. */
static bool big;

/* ---- failing with what it takes to reproduce ---- */

/* The end of shipd's log: a sanitizer report or a crash's last words. */
static void dump_log_tail(void)
{
	enum { KEEP = 150, LEN = 400 };
	static char ring[KEEP][LEN];
	size_t n = 0;
	FILE *f = fopen(sd.log, "r");
	if (!f)
		return;
	while (fgets(ring[n % KEEP], LEN, f))
		n++;
	fclose(f);
	fprintf(stderr, "---- end of %s ----\n", sd.log);
	for (size_t i = n > KEEP ? n - KEEP : 0; i < n; i++)
		fputs(ring[i % KEEP], stderr);
}

static void fail_at(int line, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

static void fail_at(int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dump_log_tail();
	/* A shipd that died says how: 128 + the signal, or its exit code. */
	int status = sd.pid > 0 ? fx_wait_exit(sd.pid, 0) : -1;
	if (status >= 0) {
		sd.pid = 0;
		size_t n = strlen(msg);
		snprintf(msg + n, sizeof(msg) - n, " (shipd exited with %d)",
		         status);
	}
	fprintf(stderr, "random: FAILED with SHIP_RANDOM_SEED=%" PRIu64
	        ": %s\n", seed, msg);
	ck_abort_msg("line %d: seed %" PRIu64 ": %s", line, seed, msg);
	abort(); /* not reached */
}

#define FAIL(...) fail_at(__LINE__, __VA_ARGS__)
#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond))                                                   \
			FAIL(__VA_ARGS__);                                     \
	} while (0)

/* ---- randomness ---- */

static uint64_t next(uint64_t *s)
{
	/* splitmix64: a 64-bit state, every seed good. */
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static uint64_t rnd(void)
{
	return next(&rng);
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static bool chance(unsigned percent)
{
	return below(100) < percent;
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t u64_edge(uint64_t small)
{
	static const uint64_t edges[] = {
		0, 1, UINT32_MAX, (uint64_t)UINT32_MAX + 1, INT64_MAX,
		(uint64_t)INT64_MAX + 1, UINT64_MAX - 1, UINT64_MAX,
		UINT64_MAX / 1000000 + 1, /* ms that overflow as ns */
	};
	return chance(85) ? below(small + 1) : edges[below(NELEM(edges))];
}

static uint32_t u32_edge(uint32_t small)
{
	static const uint32_t edges[] = {0, 1, INT32_MAX,
	                                 (uint32_t)INT32_MAX + 1,
	                                 UINT32_MAX - 1, UINT32_MAX};
	return chance(85) ? (uint32_t)below(small + 1)
	                  : edges[below(NELEM(edges))];
}

static int64_t i64_edge(int64_t small)
{
	static const int64_t edges[] = {0, -1, 1, INT64_MIN, INT64_MAX,
	                                INT32_MAX, (int64_t)1 << 40};
	return chance(85) ? (int64_t)below((uint64_t)small + 1)
	                  : edges[below(NELEM(edges))];
}

static int32_t i32_edge(int32_t small)
{
	static const int32_t edges[] = {0, -1, 1, INT32_MIN, INT32_MAX};
	return chance(85) ? (int32_t)below((uint64_t)small + 1)
	                  : edges[below(NELEM(edges))];
}

/* An enum value: mostly a known one, sometimes one this daemon cannot
 * know (proto3 enums are open). */
static int enum_of(int n)
{
	static const int unknown[] = {0, 1, 99, 1000, INT32_MAX};
	if (chance(95))
		return (int)below((uint64_t)n);
	int v = unknown[below(NELEM(unknown))];
	return v < 2 ? n + v : v;
}

/* A count for a repeated field, now and then at the 1,024 limit. */
static size_t count_of(size_t small)
{
	static const size_t edges[] = {1023, 1024, 1025};
	return chance(98) ? below(small + 1) : edges[below(NELEM(edges))];
}

/* Request and stream ids: a small pool, so streams are stopped, credited
 * and reused by later frames; and the odd boundary. */
static uint64_t pick_id(void)
{
	unsigned p = (unsigned)below(100);
	if (p < 82)
		return 1 + below(NIDS);
	if (p < 90)
		return 0;
	if (p < 94)
		return UINT64_MAX;
	if (p < 97)
		return (uint64_t)1 << 63;
	return rnd();
}

/* ---- a frame's memory: one scratch area, reset after each frame ---- */

static _Alignas(16) uint8_t scratch[3u << 20];
static size_t scratch_used;

static void *salloc(size_t n)
{
	n = (n + 15) & ~(size_t)15;
	CHECK(scratch_used + n <= sizeof(scratch), "scratch exhausted");
	void *p = scratch + scratch_used;
	scratch_used += n;
	return p;
}

#define NEW(var, type, init)                                                   \
	type *var = salloc(sizeof(type));                                      \
	*var = (type)init

/* prefix then n more characters; with dots, tokens of 8. */
static char *long_str(const char *prefix, size_t n, bool dots)
{
	size_t lp = strlen(prefix);
	char *s = salloc(lp + n + 1);
	memcpy(s, prefix, lp);
	for (size_t i = 0; i < n; i++)
		s[lp + i] = dots && i % 9 == 8 ? '.' : (char)('a' + below(26));
	s[lp + n] = 0;
	if (n && s[lp + n - 1] == '.')
		s[lp + n - 1] = 'z';
	return s;
}

/* One of pool, or now and then a long one (up to a few KB). */
static char *pick_in(const char *const *pool, size_t n, const char *prefix,
                     bool dots)
{
	if (chance(3))
		return long_str(prefix, 1 + below(chance(50) ? 300 : 4000),
		                dots);
	return (char *)pool[below(n)];
}

#define PICK(pool, prefix) pick_in(pool, NELEM(pool), prefix, true)
#define PICK_NAME(pool, prefix) pick_in(pool, NELEM(pool), prefix, false)

static const char *const subjects[] = {
	"rnd.a", "rnd.b", "rnd.a.b", "rnd.*", "rnd.>", "rnd.s.a.x", "rnd.s.b.y",
	"rnd.s.c", "ship.events.rnd.e1", "ship.channel.lobby", ">", "*", "",
	"rnd..x", "rnd a", "$JS.API.INFO", "$KV.rb1.k1", "$SRV.PING",
	"_INBOX.rnd", "rnd.\xc3\xa9",
};
static const char *const queues[] = {"", "", "", "q1", "q2", "q 3"};
static const char *const buckets[] = {
	"rb1", "rb2", "rb_3", "rnd-4", "ship_config", "", "bad name", "a.b",
	"*",
};
static const char *const keys[] = {
	"k1", "k2", "a/b", "x.y", "=", "k-1_2", ".bad", "bad.", "a..b", "", "*",
	">", "x.*", "k 1",
};
static const char *const key_filters[] = {
	"", "k1", "*", ">", "x.*", "x.>", "a/b", "..", "k 1",
};
static const char *const stream_names[] = {
	"", "", "RND_A", "RND_B", "SHIP_EVENTS", "CHANNELS", "KV_rb1",
	"bad.name", "bad name", "*",
};
static const char *const stream_subjects[] = {
	"rnd.s.a.>", "rnd.s.b.*", "rnd.s.a.x", "rnd.s.c", "ship.events.>",
	"ship.channel.>", "$KV.rb1.>", ">", "", "rnd..bad",
};
static const char *const prefixes[] = {
	"", "", "", "ship.events", "rnd.s.a", "rnd.s.b", "rnd.s.c", "bad..p",
	"rnd.*",
};
static const char *const event_types[] = {
	"rnd.e1", "rnd.e2", "x", "", "a..b", "rnd.*", "rnd.>",
};
static const char *const event_patterns[] = {
	"", ">", "rnd.*", "rnd.e1", "x", "a..b", "*.*",
};
static const char *const durables[] = {"", "", "d1", "d2", "bad.name", "d 3"};
static const char *const msg_ids[] = {"", "", "", "m1", "m2", "m3"};
static const char *const channels[] = {
	"lobby", "c1", "c2", "", "bad.chan", "a b", "*",
};
static const char *const agents[] = {"ag1", "ag2", "", "bad.agent", "ag 3"};
static const char *const being_ids[] = {"b1", "b2", "b3", "", "bad id", "b.1"};
static const char *const being_states[] = {
	"idle", "working", "blocked", "offline", "bogus", "",
};
static const char *const jsons[] = {
	"", "null", "{}", "{\"a\":1}", "[1,2", "\"s\"", "42",
	"{\"a\":{\"b\":[true,false,null]}}", "not json",
};
static const char *const words[] = {"rnd", "", "\x01\x7f", "a b", "w\xc3\xa9"};
static const char *const hdr_keys[] = {
	"k", "X-Rnd", "Nats-Msg-Id", "KV-Operation", "Nats-Expected-Stream",
	"Nats-Rollup", "", "bad key:",
};
static const char *const hdr_values[] = {"v", "", "DEL", "1", "sub", "all"};

static ProtobufCBinaryData gen_data(void)
{
	unsigned p = (unsigned)below(1000);
	size_t n;
	if (p < 700)
		n = below(33);
	else if (p < 960)
		n = below(4097);
	else if (!big)
		n = below(16u << 10);
	else if (p < 995)
		n = below(256u << 10);
	else if (p < 998)
		n = (1u << 20) - 1 + below(3); /* NATS' max payload */
	else
		n = (2u << 20) - 32 + below(64); /* shipd's max frame */
	uint8_t *d = salloc(n ? n : 1);
	if (n <= 4096)
		for (size_t i = 0; i < n; i++)
			d[i] = (uint8_t)rnd();
	else
		memset(d, (int)below(256), n);
	return (ProtobufCBinaryData){n, d};
}

static Ship__Msg *gen_msg(bool with_reply)
{
	static const size_t many[] = {255, 256, 257, 1024, 1025};
	NEW(m, Ship__Msg, SHIP__MSG__INIT);
	m->subject = PICK(subjects, "rnd.");
	if (with_reply && chance(20))
		m->reply = PICK(subjects, "rnd.");
	m->data = gen_data();
	size_t nh = chance(70)   ? 0
	            : chance(97) ? 1 + below(3)
	                         : many[below(NELEM(many))];
	if (nh) {
		m->headers = salloc(nh * sizeof(*m->headers));
		for (size_t i = 0; i < nh; i++) {
			NEW(h, Ship__Header, SHIP__HEADER__INIT);
			h->key = PICK_NAME(hdr_keys, "X-");
			h->value = PICK_NAME(hdr_values, "v");
			m->headers[i] = h;
		}
		m->n_headers = nh;
	}
	return m;
}

static char **gen_strings(size_t n, const char *const *pool, size_t npool,
                          const char *prefix)
{
	char **v = salloc((n ? n : 1) * sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = pick_in(pool, npool, prefix, true);
	return v;
}

/* ---- one generator per ClientFrame body ---- */

#define BODY(f, field, CASE, p)                                                \
	do {                                                                   \
		(f)->body_case = SHIP__CLIENT_FRAME__BODY_##CASE;              \
		(f)->field = (p);                                              \
	} while (0)

static void gen_hello(Ship__ClientFrame *f)
{
	NEW(h, Ship__Hello, SHIP__HELLO__INIT);
	h->version = chance(70) ? IPC_VERSION : u32_edge(3);
	h->name = PICK_NAME(words, "n");
	BODY(f, hello, HELLO, h);
}

static void gen_publish(Ship__ClientFrame *f)
{
	NEW(p, Ship__Publish, SHIP__PUBLISH__INIT);
	p->msg = gen_msg(true);
	p->fail_if_disconnected = chance(30);
	BODY(f, publish, PUBLISH, p);
}

static void gen_subscribe(Ship__ClientFrame *f)
{
	NEW(s, Ship__Subscribe, SHIP__SUBSCRIBE__INIT);
	s->subject = PICK(subjects, "rnd.");
	s->queue = PICK_NAME(queues, "q");
	s->max_msgs = chance(60) ? 0 : u64_edge(5);
	BODY(f, subscribe, SUBSCRIBE, s);
}

static void gen_unsubscribe(Ship__ClientFrame *f)
{
	NEW(u, Ship__Unsubscribe, SHIP__UNSUBSCRIBE__INIT);
	u->stream = pick_id();
	BODY(f, unsubscribe, UNSUBSCRIBE, u);
}

static void gen_request(Ship__ClientFrame *f)
{
	static const uint32_t timeouts[] = {0, 1, 10, 100, 300, 2000,
	                                    UINT32_MAX};
	NEW(r, Ship__Request, SHIP__REQUEST__INIT);
	r->msg = gen_msg(true);
	r->timeout_ms = timeouts[below(NELEM(timeouts))];
	BODY(f, request, REQUEST, r);
}

static void gen_status(Ship__ClientFrame *f)
{
	NEW(s, Ship__StatusRequest, SHIP__STATUS_REQUEST__INIT);
	BODY(f, status, STATUS, s);
}

static void gen_clients(Ship__ClientFrame *f)
{
	NEW(c, Ship__ClientsRequest, SHIP__CLIENTS_REQUEST__INIT);
	BODY(f, clients, CLIENTS, c);
}

static void gen_reload(Ship__ClientFrame *f)
{
	NEW(r, Ship__ReloadRequest, SHIP__RELOAD_REQUEST__INIT);
	BODY(f, reload, RELOAD, r);
}

static void gen_kv_bucket_create(Ship__ClientFrame *f)
{
	NEW(cfg, Ship__KvBucketConfig, SHIP__KV_BUCKET_CONFIG__INIT);
	NEW(c, Ship__KvBucketCreate, SHIP__KV_BUCKET_CREATE__INIT);
	cfg->bucket = PICK_NAME(buckets, "b");
	cfg->description = PICK_NAME(words, "d");
	cfg->history = chance(50) ? 0 : u32_edge(65);
	cfg->ttl_ms = chance(70) ? 0 : u64_edge(60000);
	cfg->max_value_size = chance(70) ? 0 : i32_edge(4096);
	cfg->max_bytes = chance(70) ? 0 : i64_edge(1 << 20);
	cfg->memory = chance(85);
	cfg->replicas = chance(90) ? (uint32_t)below(2) : u32_edge(5);
	c->config = cfg;
	BODY(f, kv_bucket_create, KV_BUCKET_CREATE, c);
}

static void gen_kv_bucket_info(Ship__ClientFrame *f)
{
	NEW(r, Ship__KvBucketInfoRequest, SHIP__KV_BUCKET_INFO_REQUEST__INIT);
	r->bucket = PICK_NAME(buckets, "b");
	BODY(f, kv_bucket_info, KV_BUCKET_INFO, r);
}

static void gen_kv_bucket_list(Ship__ClientFrame *f)
{
	NEW(r, Ship__KvBucketListRequest, SHIP__KV_BUCKET_LIST_REQUEST__INIT);
	BODY(f, kv_bucket_list, KV_BUCKET_LIST, r);
}

static void gen_kv_bucket_delete(Ship__ClientFrame *f)
{
	NEW(d, Ship__KvBucketDelete, SHIP__KV_BUCKET_DELETE__INIT);
	d->bucket = PICK_NAME(buckets, "b");
	BODY(f, kv_bucket_delete, KV_BUCKET_DELETE, d);
}

static void gen_kv_get(Ship__ClientFrame *f)
{
	NEW(g, Ship__KvGet, SHIP__KV_GET__INIT);
	g->bucket = PICK_NAME(buckets, "b");
	g->key = PICK(keys, "k.");
	g->revision = chance(60) ? 0 : u64_edge(30);
	BODY(f, kv_get, KV_GET, g);
}

static void gen_kv_write(Ship__ClientFrame *f)
{
	NEW(w, Ship__KvWrite, SHIP__KV_WRITE__INIT);
	w->bucket = PICK_NAME(buckets, "b");
	w->key = PICK(keys, "k.");
	w->op = (Ship__KvWriteOp)enum_of(5);
	w->value = gen_data();
	w->revision = u64_edge(30);
	BODY(f, kv_write, KV_WRITE, w);
}

static void gen_kv_watch(Ship__ClientFrame *f)
{
	NEW(w, Ship__KvWatch, SHIP__KV_WATCH__INIT);
	w->bucket = PICK_NAME(buckets, "b");
	w->pattern = PICK(key_filters, "k.");
	w->include_history = chance(30);
	w->updates_only = chance(30);
	w->ignore_deletes = chance(30);
	w->meta_only = chance(30);
	BODY(f, kv_watch, KV_WATCH, w);
}

static void gen_kv_watch_stop(Ship__ClientFrame *f)
{
	NEW(s, Ship__KvWatchStop, SHIP__KV_WATCH_STOP__INIT);
	s->stream = pick_id();
	BODY(f, kv_watch_stop, KV_WATCH_STOP, s);
}

static void gen_kv_keys(Ship__ClientFrame *f)
{
	NEW(k, Ship__KvKeys, SHIP__KV_KEYS__INIT);
	k->bucket = PICK_NAME(buckets, "b");
	k->filter = PICK(key_filters, "k.");
	BODY(f, kv_keys, KV_KEYS, k);
}

static void gen_kv_history(Ship__ClientFrame *f)
{
	NEW(h, Ship__KvHistory, SHIP__KV_HISTORY__INIT);
	h->bucket = PICK_NAME(buckets, "b");
	h->key = PICK(keys, "k.");
	BODY(f, kv_history, KV_HISTORY, h);
}

static void gen_being(Ship__ClientFrame *f)
{
	static const uint32_t intervals[] = {0, 1, 99, 100, 250, 1000, 5000,
	                                     UINT32_MAX};
	NEW(b, Ship__BeingRequest, SHIP__BEING_REQUEST__INIT);
	b->op = (Ship__BeingOp)enum_of(8);
	b->being_id = PICK_NAME(being_ids, "b");
	b->n_capabilities = count_of(3);
	b->capabilities = gen_strings(b->n_capabilities, words, NELEM(words),
	                              "cap");
	b->state = PICK_NAME(being_states, "s");
	b->current_task = PICK_NAME(words, "t");
	b->has_task = chance(50);
	b->all = chance(50);
	b->interval_ms = intervals[below(NELEM(intervals))];
	b->online_threshold_ms = chance(60) ? 0 : u32_edge(100000);
	BODY(f, being, BEING, b);
}

static void gen_store(Ship__ClientFrame *f)
{
	NEW(s, Ship__StoreRequest, SHIP__STORE_REQUEST__INIT);
	s->store = (Ship__Store)enum_of(2);
	s->op = (Ship__StoreOp)enum_of(4);
	s->key = PICK(keys, "k.");
	s->value_json = PICK_NAME(jsons, "\"");
	s->has_default = chance(50);
	BODY(f, store, STORE, s);
}

static void gen_stream_declare(Ship__ClientFrame *f)
{
	NEW(d, Ship__StreamDeclare, SHIP__STREAM_DECLARE__INIT);
	d->name = PICK_NAME(stream_names, "S");
	d->n_subjects = count_of(3);
	d->subjects = gen_strings(d->n_subjects, stream_subjects,
	                          NELEM(stream_subjects), "rnd.s.");
	d->max_age_ms = chance(70) ? 0 : u64_edge(60000);
	d->max_msgs = chance(50) ? 1000 : i64_edge(100);
	d->max_bytes = chance(50) ? 1 << 20 : i64_edge(1 << 20);
	d->memory = chance(80);
	d->replicas = chance(90) ? (uint32_t)below(2) : u32_edge(5);
	BODY(f, stream_declare, STREAM_DECLARE, d);
}

static void gen_emit(Ship__ClientFrame *f)
{
	NEW(e, Ship__Emit, SHIP__EMIT__INIT);
	e->event_type = PICK(event_types, "rnd.");
	e->source = PICK_NAME(words, "src");
	e->payload_json = PICK_NAME(jsons, "\"");
	e->correlation_id = PICK_NAME(msg_ids, "c");
	e->msg_id = PICK_NAME(msg_ids, "m");
	e->stream = chance(60) ? "" : PICK_NAME(stream_names, "S");
	e->prefix = chance(60) ? "" : PICK(prefixes, "rnd.");
	BODY(f, emit, EMIT, e);
}

static void gen_event_subscribe(Ship__ClientFrame *f)
{
	NEW(s, Ship__EventSubscribe, SHIP__EVENT_SUBSCRIBE__INIT);
	s->pattern = PICK(event_patterns, "rnd.");
	s->durable = PICK_NAME(durables, "d");
	s->deliver = (Ship__DeliverFrom)enum_of(5);
	s->start_seq = u64_edge(50);
	s->start_time_ms = chance(50) ? 0 : u64_edge(2000000000000u);
	s->ack = (Ship__AckMode)enum_of(2);
	s->ack_wait_ms = chance(60) ? 0 : u32_edge(5000);
	s->max_deliver = chance(60) ? 0 : i32_edge(5);
	s->n_backoff_ms = chance(80) ? 0 : count_of(4);
	s->backoff_ms = salloc((s->n_backoff_ms ? s->n_backoff_ms : 1) *
	                       sizeof(*s->backoff_ms));
	for (size_t i = 0; i < s->n_backoff_ms; i++)
		s->backoff_ms[i] = u32_edge(2000);
	s->credit = chance(40) ? 0 : u32_edge(100);
	s->stream = chance(60) ? "" : PICK_NAME(stream_names, "S");
	s->prefix = chance(60) ? "" : PICK(prefixes, "rnd.");
	BODY(f, event_subscribe, EVENT_SUBSCRIBE, s);
}

static void gen_event_credit(Ship__ClientFrame *f)
{
	NEW(c, Ship__EventCredit, SHIP__EVENT_CREDIT__INIT);
	c->stream = pick_id();
	c->credit = u32_edge(100);
	BODY(f, event_credit, EVENT_CREDIT, c);
}

static void gen_event_ack(Ship__ClientFrame *f)
{
	NEW(a, Ship__EventAck, SHIP__EVENT_ACK__INIT);
	a->stream = pick_id();
	a->n_tokens = count_of(4);
	a->tokens = salloc((a->n_tokens ? a->n_tokens : 1) *
	                   sizeof(*a->tokens));
	for (size_t i = 0; i < a->n_tokens; i++)
		a->tokens[i] = u64_edge(64);
	a->kind = (Ship__AckKind)enum_of(4);
	a->nak_delay_ms = chance(70) ? 0 : u32_edge(2000);
	BODY(f, event_ack, EVENT_ACK, a);
}

static void gen_streams(Ship__ClientFrame *f)
{
	NEW(s, Ship__StreamsRequest, SHIP__STREAMS_REQUEST__INIT);
	BODY(f, streams, STREAMS, s);
}

static void gen_channel_send(Ship__ClientFrame *f)
{
	NEW(s, Ship__ChannelSend, SHIP__CHANNEL_SEND__INIT);
	s->channel = PICK_NAME(channels, "c");
	s->content = chance(90) ? PICK_NAME(words, "x")
	                        : long_str("", below(8000), false);
	s->sender = PICK_NAME(agents, "ag");
	s->metadata_json = PICK_NAME(jsons, "\"");
	s->msg_id = PICK_NAME(msg_ids, "m");
	BODY(f, channel_send, CHANNEL_SEND, s);
}

static void gen_channel_listen(Ship__ClientFrame *f)
{
	NEW(l, Ship__ChannelListen, SHIP__CHANNEL_LISTEN__INIT);
	l->channel = PICK_NAME(channels, "c");
	l->agent = PICK_NAME(agents, "ag");
	l->replay = chance(50);
	l->credit = chance(40) ? 0 : u32_edge(100);
	BODY(f, channel_listen, CHANNEL_LISTEN, l);
}

static void gen_channel_history(Ship__ClientFrame *f)
{
	static const uint32_t lasts[] = {0, 1, 10, 100, 1000, 1001,
	                                 UINT32_MAX};
	NEW(h, Ship__ChannelHistory, SHIP__CHANNEL_HISTORY__INIT);
	h->channel = PICK_NAME(channels, "c");
	h->last = lasts[below(NELEM(lasts))];
	h->before_seq = chance(60) ? 0 : u64_edge(50);
	BODY(f, channel_history, CHANNEL_HISTORY, h);
}

/* Every body of ClientFrame, with how often it is sent. */
static struct kind {
	const char *name;
	unsigned weight;
	void (*gen)(Ship__ClientFrame *f);
} kinds[] = {
	{"hello", 1, gen_hello},
	{"publish", 8, gen_publish},
	{"subscribe", 5, gen_subscribe},
	{"unsubscribe", 4, gen_unsubscribe},
	{"request", 4, gen_request},
	{"status", 2, gen_status},
	{"clients", 1, gen_clients},
	{"reload", 1, gen_reload},
	{"kv_bucket_create", 3, gen_kv_bucket_create},
	{"kv_bucket_info", 2, gen_kv_bucket_info},
	{"kv_bucket_list", 1, gen_kv_bucket_list},
	{"kv_bucket_delete", 1, gen_kv_bucket_delete},
	{"kv_get", 4, gen_kv_get},
	{"kv_write", 6, gen_kv_write},
	{"kv_watch", 3, gen_kv_watch},
	{"kv_watch_stop", 3, gen_kv_watch_stop},
	{"kv_keys", 2, gen_kv_keys},
	{"kv_history", 2, gen_kv_history},
	{"being", 4, gen_being},
	{"store", 3, gen_store},
	{"stream_declare", 2, gen_stream_declare},
	{"emit", 5, gen_emit},
	{"event_subscribe", 3, gen_event_subscribe},
	{"event_credit", 3, gen_event_credit},
	{"event_ack", 3, gen_event_ack},
	{"streams", 1, gen_streams},
	{"channel_send", 4, gen_channel_send},
	{"channel_listen", 2, gen_channel_listen},
	{"channel_history", 2, gen_channel_history},
};

/* SHIP_RANDOM_SKIP=being,store: leave kinds out (to narrow a failure
 * down; the hello of a new connection is still sent). */
static void skip_kinds(const char *list)
{
	for (size_t i = 0; list && i < NELEM(kinds); i++) {
		size_t n = strlen(kinds[i].name);
		const char *p = list;
		for (; (p = strstr(p, kinds[i].name)); p += n)
			if ((p == list || p[-1] == ',') &&
			    (p[n] == ',' || p[n] == 0))
				kinds[i].weight = 0;
	}
}

static const struct kind *pick_kind(void)
{
	unsigned total = 0;
	for (size_t i = 0; i < NELEM(kinds); i++)
		total += kinds[i].weight;
	unsigned w = (unsigned)below(total);
	for (size_t i = 0; i < NELEM(kinds); i++) {
		if (w < kinds[i].weight)
			return &kinds[i];
		w -= kinds[i].weight;
	}
	return &kinds[0];
}

enum first { ANY_FRAME, GOOD_HELLO, BAD_HELLO };

/* Append one random frame to b: of any kind, or a hello with a version
 * shipd speaks or one it does not. */
static void pack_random(struct ipc_buf *b, int conn, enum first first)
{
	static const uint32_t bad_versions[] = {0, IPC_VERSION + 1,
	                                        UINT32_MAX};
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	const struct kind *k = first == ANY_FRAME ? pick_kind() : &kinds[0];
	f.id = pick_id();
	if (k->gen == gen_publish && chance(60))
		f.id = 0; /* fire and forget, as libshipc publishes */
	k->gen(&f);
	if (first == GOOD_HELLO)
		f.hello->version = IPC_VERSION;
	else if (first == BAD_HELLO)
		f.hello->version = bad_versions[below(NELEM(bad_versions))];
	if (trace)
		fprintf(stderr, "random: conn %d: %s id %" PRIu64 "\n", conn,
		        k->name, f.id);
	CHECK(ipc_frame_pack(b, &f.base, IPC_FRAME_LIMIT) == 0,
	      "packing a %s frame failed", k->name);
	scratch_used = 0;
}

/* ---- what came back ---- */

static const char *const code_names[] = {
	"OK",          "INVALID_ARGUMENT",   "NOT_FOUND",
	"ALREADY_EXISTS", "WRONG_REVISION",  "PERMISSION_DENIED",
	"UNAVAILABLE", "TIMEOUT",            "RESOURCE_EXHAUSTED",
	"INTERNAL",    "NO_RESPONDERS",      "UNIMPLEMENTED",
	"CONFLICT",
};

struct tally {
	uint64_t frames, bytes, opens, closes, midframe, shuts, gone, stalled;
	uint64_t replies, pushes, ends, codes[NELEM(code_names)];
	uint64_t jetstream_ok; /* KV, events, channels answered OK */
	uint64_t silent;       /* errors without a message */
	char first_silent[160];
};

static struct tally tally; /* of the phase running */

static void count_frame(const Ship__ServerFrame *f)
{
	CHECK((unsigned)f->code < NELEM(code_names),
	      "shipd answered id %" PRIu64 " with code %d, not in the enum",
	      f->id, (int)f->code);
	if (f->code != SHIP__CODE__OK && !f->error[0] && !tally.silent++)
		snprintf(tally.first_silent, sizeof(tally.first_silent),
		         "id %" PRIu64 " code %s body %d", f->id,
		         code_names[f->code], (int)f->body_case);
	switch (f->body_case) {
	case SHIP__SERVER_FRAME__BODY_DELIVERY:
	case SHIP__SERVER_FRAME__BODY_EVENT:
		tally.pushes++;
		return;
	case SHIP__SERVER_FRAME__BODY_END:
		tally.ends++;
		return;
	case SHIP__SERVER_FRAME__BODY_KV_BUCKET:
	case SHIP__SERVER_FRAME__BODY_KV_BUCKETS:
	case SHIP__SERVER_FRAME__BODY_KV_ENTRY:
	case SHIP__SERVER_FRAME__BODY_KV_ENTRIES:
	case SHIP__SERVER_FRAME__BODY_KV_KEYS:
	case SHIP__SERVER_FRAME__BODY_BEINGS:
	case SHIP__SERVER_FRAME__BODY_EMITTED:
	case SHIP__SERVER_FRAME__BODY_HISTORY:
		tally.jetstream_ok += f->code == SHIP__CODE__OK;
		break;
	default:
		break;
	}
	tally.replies++;
	tally.codes[f->code]++;
}

/* ---- the raw connections ---- */

enum reader { READ_ALWAYS, READ_SOMETIMES, READ_NEVER };

struct conn {
	int fd; /* -1: closed */
	enum reader reader;
	unsigned close_permille; /* chance of closing, each round */
	bool shut;               /* write side shut: reading to the end */
	unsigned waited;         /* rounds shut, or with output stuck */
	struct ipc_buf out, in;
};

static struct conn conns[NCONNS];

static void conn_close(struct conn *c)
{
	close(c->fd);
	c->fd = -1;
	ipc_buf_finish(&c->out);
	ipc_buf_finish(&c->in);
	tally.closes++;
}

static void conn_open(struct conn *c, int ci)
{
	static const unsigned close_rates[] = {5, 30, 100};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", sd.sock);
	CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
	      "connecting to shipd: %s", strerror(errno));
	CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
	unsigned r = (unsigned)below(10);
	c->reader = r < 5 ? READ_ALWAYS : r < 8 ? READ_SOMETIMES : READ_NEVER;
	if (c->reader == READ_NEVER && chance(50)) {
		int rcv = 4096;
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	}
	c->fd = fd;
	c->close_permille = close_rates[below(NELEM(close_rates))];
	c->shut = false;
	c->waited = 0;
	/* Mostly a hello; sometimes none (the first frame is anything) or
	 * one with a version shipd cannot speak. */
	unsigned h = (unsigned)below(100);
	enum first first = h < 88 ? GOOD_HELLO : h < 94 ? ANY_FRAME : BAD_HELLO;
	if (trace)
		fprintf(stderr, "random: conn %d: opened\n", ci);
	pack_random(&c->out, ci, first);
	tally.opens++;
}

/* Write what is queued; false once shipd closed the connection. */
static bool conn_flush(struct conn *c)
{
	while (ipc_buf_used(&c->out)) {
		size_t before = ipc_buf_used(&c->out);
		ssize_t n = ipc_buf_write(&c->out, c->fd);
		if (n > 0) {
			tally.bytes += before - ipc_buf_used(&c->out);
			continue;
		}
		return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
	}
	return true;
}

static void take_frames(struct conn *c)
{
	for (;;) {
		const uint8_t *body;
		size_t blen, flen;
		enum ipc_frame_status st = ipc_frame_peek(
			ipc_buf_head(&c->in), ipc_buf_used(&c->in),
			IPC_FRAME_LIMIT, &body, &blen, &flen);
		if (st == IPC_FRAME_PARTIAL)
			return;
		CHECK(st == IPC_FRAME_OK, "shipd sent a bad frame header: %s",
		      ipc_frame_strerror(st));
		Ship__ServerFrame *f =
			ship__server_frame__unpack(NULL, blen, body);
		CHECK(f != NULL, "shipd sent %zu bytes that do not unpack",
		      blen);
		count_frame(f);
		ship__server_frame__free_unpacked(f, NULL);
		ipc_buf_consume(&c->in, flen);
	}
}

/* Read what shipd sent (a bounded amount); false on EOF. */
static bool conn_read(struct conn *c)
{
	for (size_t got = 0; got < READ_LIMIT;) {
		ssize_t n = ipc_buf_read(&c->in, c->fd, 65536);
		if (n == 0)
			return false;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK;
		got += (size_t)n;
		take_frames(c);
	}
	return true;
}

/* Queue the start of a frame, write it, and close: shipd is left with
 * half a frame (or half a header). */
static void conn_close_midframe(struct conn *c, int ci)
{
	struct ipc_buf b = {0};
	pack_random(&b, ci, ANY_FRAME);
	size_t cut = 1 + below(ipc_buf_used(&b) - 1);
	CHECK(ipc_buf_append(&c->out, ipc_buf_head(&b), cut) == 0, "append");
	ipc_buf_finish(&b);
	conn_flush(c);
	if (trace)
		fprintf(stderr, "random: conn %d: closed after %zu bytes of a "
		        "frame\n", ci, cut);
	tally.midframe++;
	conn_close(c);
}

/* One round of one connection: open it, send a batch, read or not, or
 * close it one way or another. */
static void conn_step(struct conn *c, int ci)
{
	if (c->fd < 0) {
		if (chance(50))
			return;
		conn_open(c, ci);
	}
	if (c->shut) {
		if (!conn_read(c) || ++c->waited > 50)
			conn_close(c);
		return;
	}
	unsigned p = (unsigned)below(1000), q = c->close_permille;
	if (p < q / 2) {
		conn_close_midframe(c, ci);
		return;
	}
	if (p < q * 3 / 4) {
		if (trace)
			fprintf(stderr, "random: conn %d: closed\n", ci);
		conn_close(c);
		return;
	}
	if (p < q) {
		conn_flush(c);
		shutdown(c->fd, SHUT_WR);
		if (trace)
			fprintf(stderr, "random: conn %d: write side shut\n",
			        ci);
		c->shut = true;
		c->waited = 0;
		tally.shuts++;
		return;
	}
	if (p < q + 750 && ipc_buf_used(&c->out) < OUT_LIMIT) {
		unsigned n = 1 + (unsigned)below(8);
		for (unsigned i = 0; i < n; i++)
			pack_random(&c->out, ci, ANY_FRAME);
		tally.frames += n;
	}
	if (!conn_flush(c)) {
		tally.gone++;
		conn_close(c);
		return;
	}
	/* shipd stopped reading a client that does not read its answers. */
	if (ipc_buf_used(&c->out) >= OUT_LIMIT && ++c->waited > 200) {
		tally.stalled++;
		conn_close(c);
		return;
	}
	bool read_now = c->reader == READ_ALWAYS ||
	                (c->reader == READ_SOMETIMES && chance(30));
	if (read_now && !conn_read(c)) {
		tally.gone++;
		conn_close(c);
	}
}

/* Give shipd the CPU for a moment: wait briefly for any answer. */
static void pace(void)
{
	struct pollfd pfd[NCONNS];
	nfds_t n = 0;
	for (int i = 0; i < NCONNS; i++)
		if (conns[i].fd >= 0 && conns[i].reader == READ_ALWAYS)
			pfd[n++] = (struct pollfd){conns[i].fd, POLLIN, 0};
	poll(pfd, n, 2);
}

/* ---- the bystander: an ordinary libshipc app ---- */

static struct {
	struct shipc *h;
	unsigned got;       /* messages on its subscription */
	unsigned checks, roundtrips;
	uint64_t worst_ms;  /* slowest status answer */
	uint64_t last_check, last_roundtrip;
} by;

static void by_msg(struct shipc *h, const struct shipc_msg *msg, int err,
                   void *arg)
{
	(void)h;
	(void)err;
	(void)arg;
	if (msg)
		by.got++;
}

static void by_status(struct shipc_status *st)
{
	uint64_t t0 = fx_now_ms();
	int rc = shipc_status(by.h, st);
	int e = errno;
	uint64_t dt = fx_now_ms() - t0;
	CHECK(rc == 0, "bystander not served: status failed after %" PRIu64
	      " ms: %s", dt, strerror(e));
	if (dt > by.worst_ms)
		by.worst_ms = dt;
	by.checks++;
}

/* Publish to the bystander's own subscription until a message comes
 * back (again every 500 ms: one sent before the subscription was back on
 * NATS is lost, as core NATS loses it). */
static bool by_try_roundtrip(int timeout_ms, bool fatal)
{
	unsigned before = by.got;
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms, next_pub = 0;
	while (by.got == before) {
		uint64_t now = fx_now_ms();
		if (now >= end) {
			struct shipc_status st;
			by_status(&st);
			if (!fatal) {
				fprintf(stderr, "random: no roundtrip within %d ms "
				        "(NATS link %s, %" PRIu64 " reconnects, "
				        "last error '%s')\n", timeout_ms,
				        shipc_link_name(st.link), st.reconnects,
				        st.last_error);
				return false;
			}
			FAIL("bystander's message did not come back within %d "
			     "ms (NATS link %s, %" PRIu64 " reconnects, last "
			     "error '%s')", timeout_ms,
			     shipc_link_name(st.link), st.reconnects,
			     st.last_error);
		}
		if (now >= next_pub) {
			CHECK(shipc_publish(by.h, "bystander.rt", "x", 1) == 0,
			      "bystander publish: %s", strerror(errno));
			next_pub = now + 500;
		}
		shipc_dispatch(by.h, 20);
	}
	by.roundtrips++;
	by.last_roundtrip = fx_now_ms();
	return true;
}

static void by_roundtrip(int timeout_ms)
{
	by_try_roundtrip(timeout_ms, true);
}

static void by_check(bool roundtrip)
{
	uint64_t now = fx_now_ms();
	shipc_dispatch(by.h, 0);
	if (now - by.last_check >= 100) {
		struct shipc_status st;
		by_status(&st);
		by.last_check = fx_now_ms();
	}
	if (roundtrip && now - by.last_roundtrip >= 1000)
		by_roundtrip(5000);
}

/* ---- NATS restarted while the traffic goes on ---- */

/* Set while NATS is about to be stopped: the raw clients pause, so the
 * link carries no message when its socket dies. nats.c 3.4.1 in
 * event-loop mode does not reset its parser on reconnect (fixed upstream
 * after 3.4.1): a message cut by the kill leaves the new connection's
 * parser mid-message and the link dead (the link issue).
 * SHIP_RANDOM_QUIET_KILLS=0 kills under traffic all the same. */
static atomic_bool quiet;
static bool quiet_kills = true;

struct restarter {
	pthread_t thread;
	uint64_t rng, until;
	atomic_bool stop; /* the traffic is over */
	unsigned restarts, kills;
	bool failed;
};

/* NATS is down when this starts and when it ends: a nats-server this
 * thread started dies with it (the fixture's PR_SET_PDEATHSIG follows the
 * thread that forked), so the main thread starts the last one. */
static void *restarter_run(void *arg)
{
	struct restarter *r = arg;
	while (!atomic_load(&r->stop) && fx_now_ms() + 1500 < r->until) {
		fx_sleep_ms(100 + (int)(next(&r->rng) % 600));
		if (natsd_restart(&nd) < 0) {
			r->failed = true;
			return NULL;
		}
		r->restarts++;
		fx_sleep_ms(300 + (int)(next(&r->rng) % 1500));
		if (quiet_kills) {
			atomic_store(&quiet, true);
			fx_sleep_ms(500); /* what is in flight arrives */
		}
		if (next(&r->rng) % 2) {
			kill(nd.pid, SIGKILL);
			fx_wait_exit(nd.pid, 5000);
			nd.pid = 0;
		} else {
			natsd_stop(&nd);
		}
		atomic_store(&quiet, false);
		r->kills++;
	}
	return NULL;
}

/* ---- the phases ---- */

static void report(const char *phase, unsigned rounds, uint64_t ms)
{
	char codes[512];
	size_t off = 0;
	for (size_t i = 0; i < NELEM(code_names); i++)
		if (tally.codes[i] && off < sizeof(codes))
			off += (size_t)snprintf(codes + off,
			                        sizeof(codes) - off,
			                        " %s %" PRIu64, code_names[i],
			                        tally.codes[i]);
	fprintf(stderr,
	        "random: %s: %u rounds in %" PRIu64 " ms: %" PRIu64
	        " frames (%" PRIu64 " KiB), %" PRIu64 " connections (%" PRIu64
	        " closed mid-frame, %" PRIu64 " half-closed, %" PRIu64
	        " let go by shipd, %" PRIu64 " stalled); %" PRIu64
	        " replies:%s; %" PRIu64 " JetStream OK, %" PRIu64
	        " pushes, %" PRIu64 " stream ends; bystander %u checks, "
	        "worst %" PRIu64 " ms, %u roundtrips\n",
	        phase, rounds, ms, tally.frames, tally.bytes / 1024,
	        tally.opens, tally.midframe, tally.shuts, tally.gone,
	        tally.stalled, tally.replies, codes, tally.jetstream_ok,
	        tally.pushes, tally.ends, by.checks, by.worst_ms,
	        by.roundtrips);
	if (tally.silent)
		fprintf(stderr, "random: %s: %" PRIu64 " errors without a "
		        "message, the first: %s\n", phase, tally.silent,
		        tally.first_silent);
}

static struct tally run_phase(const char *name, uint64_t ms, bool roundtrip)
{
	memset(&tally, 0, sizeof(tally));
	by.checks = by.roundtrips = 0;
	by.worst_ms = 0;
	uint64_t start = fx_now_ms(), end = start + ms;
	unsigned rounds = 0, max_rounds = (unsigned)ms * 3; /* at most 3 a ms */
	for (; rounds < max_rounds && fx_now_ms() < end; rounds++) {
		for (int i = 0; i < NCONNS && !atomic_load(&quiet); i++)
			conn_step(&conns[i], i);
		by_check(roundtrip);
		pace();
	}
	report(name, rounds, fx_now_ms() - start);
	/* Every error says what went wrong, for a person. */
	CHECK(tally.silent == 0, "%s: %" PRIu64 " errors without a message, "
	      "the first: %s", name, tally.silent, tally.first_silent);
	return tally;
}

static bool settled(void *arg)
{
	struct shipc_status *st = arg;
	by_status(st);
	return st->clients == 1 && st->subscriptions == 1 &&
	       st->requests_in_flight == 0;
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	const char *e = getenv("SHIP_RANDOM_SEED");
	seed = e && *e ? strtoull(e, NULL, 0)
	               : (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
	rng = seed;
	trace = getenv("SHIP_RANDOM_TRACE") != NULL;
	big = getenv("SHIP_RANDOM_BIG") != NULL;
	quiet_kills = !getenv("SHIP_RANDOM_QUIET_KILLS") ||
	              strcmp(getenv("SHIP_RANDOM_QUIET_KILLS"), "0") != 0;
	skip_kinds(getenv("SHIP_RANDOM_SKIP"));
	fprintf(stderr, "random: seed %" PRIu64 " (SHIP_RANDOM_SEED=%" PRIu64
	        " repeats it)\n", seed, seed);
	for (int i = 0; i < NCONNS; i++)
		conns[i] = (struct conn){.fd = -1};
	ck_assert_int_eq(fx_up(&nd, &sd, NULL), 0);
}

static void teardown(void)
{
	int rc = fx_down(&nd, &sd);
	ck_assert_msg(rc == 0, "seed %" PRIu64 ": shipd exited with %d", seed,
	              rc);
}

static unsigned run_seconds(void)
{
	const char *e = getenv("SHIP_RANDOM_SECONDS");
	unsigned s = e && *e ? (unsigned)strtoul(e, NULL, 10) : 0;
	return s ? s : DEFAULT_SECONDS;
}

START_TEST(random_frames_while_nats_comes_and_goes)
{
	uint64_t ms = (uint64_t)run_seconds() * 1000;
	by.h = shipc_connect(sd.sock, "bystander");
	CHECK(by.h != NULL, "bystander cannot connect: %s", strerror(errno));
	CHECK(shipc_subscribe(by.h, "bystander.rt", NULL, 0, by_msg, NULL),
	      "bystander cannot subscribe: %s", strerror(errno));

	struct tally up = run_phase("NATS up", ms * 30 / 100, true);

	natsd_stop(&nd); /* with the last round's frames in flight */
	run_phase("NATS down", ms * 15 / 100, false);

	struct restarter r = {.rng = seed ^ 0x5eed,
	                      .until = fx_now_ms() + ms * 33 / 100};
	CHECK(pthread_create(&r.thread, NULL, restarter_run, &r) == 0,
	      "pthread_create");
	run_phase("NATS restarting", ms * 33 / 100, false);
	atomic_store(&r.stop, true);
	pthread_join(r.thread, NULL);
	CHECK(!r.failed, "nats-server did not restart");
	fprintf(stderr, "random: NATS restarted %u times, stopped %u times\n",
	        r.restarts, r.kills);
	CHECK(natsd_restart(&nd) == 0, "nats-server did not restart");

	/* A NATS killed while messages flow to shipd can leave nats.c
	 * 3.4.1's event-loop parser mid-message on the next connection: the
	 * link then never works again (the link issue, fixed in nats.c after
	 * 3.4.1). That is reported, not failed, here: this test is about
	 * shipd's own memory safety and serving its clients. */
	bool link_ok = by_try_roundtrip(20000, false);
	if (!link_ok)
		fprintf(stderr, "random: KNOWN: the NATS link did not come back "
		        "after the restarts (nats.c 3.4.1 parser not reset on "
		        "reconnect); the rest runs without it\n");
	struct tally again = run_phase("NATS up again", ms * 22 / 100, link_ok);

	for (int i = 0; i < NCONNS; i++)
		if (conns[i].fd >= 0)
			conn_close(&conns[i]);
	/* Every client gone, what it opened is released. */
	struct shipc_status st;
	CHECK(fx_wait(settled, &st, 10000),
	      "not released after every raw client left: clients %u "
	      "subscriptions %u requests in flight %u",
	      st.clients, st.subscriptions, st.requests_in_flight);
	if (link_ok)
		by_roundtrip(5000);
	CHECK(kill(sd.pid, 0) == 0, "shipd is gone");

	/* shipd did the work, not only refused it. */
	CHECK(up.codes[SHIP__CODE__OK] > 0 && up.jetstream_ok > 0,
	      "with NATS up: %" PRIu64 " OK, %" PRIu64 " JetStream OK",
	      up.codes[SHIP__CODE__OK], up.jetstream_ok);
	CHECK(!link_ok ||
	      (again.codes[SHIP__CODE__OK] > 0 && again.jetstream_ok > 0),
	      "with NATS up again: %" PRIu64 " OK, %" PRIu64 " JetStream OK",
	      again.codes[SHIP__CODE__OK], again.jetstream_ok);
	shipc_close(by.h);
	by.h = NULL;
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("random");
	TCase *tc = tcase_create("protocol");
	tcase_set_timeout(tc, (double)run_seconds() * 2 + 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, random_frames_while_nats_comes_and_goes);
	suite_add_tcase(s, tc);
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
