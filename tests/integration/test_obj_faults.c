/* SPDX-License-Identifier: MIT */
/* The Object Store through shipd under faults, against a real nats-server
 * -js: NATS restarted in the middle of a put and of a get, an app killed in
 * the middle of a put, shipd's memory while 1 GiB passes each way, and a
 * third app's round trips while two others move 256 MiB each. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>

#include "fixture.h"
#include "ipc.h"
#include "shipc.h"

#define CHUNK 131072
#define MIB (1u << 20)
/* How far shipd's RSS may rise above its level before a transfer. */
#define RSS_GROWTH_KIB (32 * 1024)
/* A loaded round trip may take twice the idle one plus this. */
#define RTT_FLOOR_US 2000
#define RTT_SAMPLES_MAX 20000
/* Sizes moved (SHIP_OBJ_BIG_MIB, SHIP_OBJ_FAIR_MIB lower them). Under
 * sanitizers (an unoptimised build, about 7 MiB/s through shipd) less is
 * moved, and memory and timing figures are printed, not checked: ASan's
 * quarantine alone keeps ~256 MiB of freed chunks resident. */
#ifdef SHIP_SANITIZED
#define BIG_MIB 256
#define FAIR_MIB 64
#else
#define BIG_MIB 1024
#define FAIR_MIB 256
#endif

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

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static const char *why(struct shipc *h)
{
	static char buf[256];
	return shipc_last_error(h, buf, sizeof(buf));
}

/* Wait until shipd says its NATS link is up. */
static bool link_up(struct shipc *h, int timeout_ms)
{
	struct shipc_status st;
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
	do {
		if (shipc_status(h, &st) == 0 && st.link == SHIPC_LINK_CONNECTED)
			return true;
		fx_sleep_ms(25);
	} while (fx_now_ms() < end);
	return false;
}

static struct shipc *conn(const char *name)
{
	struct shipc *h = shipc_connect(sd.sock, name);
	ck_assert_ptr_nonnull(h);
	ck_assert(link_up(h, 10000));
	return h;
}

static void bucket(struct shipc *h, const char *name)
{
	struct shipc_obj_bucket_config c = {.bucket = name};
	ck_assert_msg(shipc_obj_bucket_create(h, &c, NULL) == 0, "create %s: %s",
	              name, why(h));
}

/* Used from threads and forked children too: no Check call here or in
 * digest_final(). */
static uint8_t *random_bytes(size_t n, uint64_t seed)
{
	uint8_t *p = malloc(n ? n : 1);
	if (!p)
		abort();
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
	return p;
}

static void digest_final(struct ipc_sha256 *s, char out[64])
{
	uint8_t sum[IPC_SHA256_LEN];
	ipc_sha256_final(s, sum);
	memcpy(out, "SHA-256=", 8);
	ipc_base64url(sum, sizeof(sum), out + 8, 56);
}

static void digest_of(const void *p, size_t n, char out[64])
{
	struct ipc_sha256 s;
	ipc_sha256_init(&s);
	ipc_sha256_update(&s, p, n);
	digest_final(&s, out);
}

static uint64_t env_mib(const char *name, uint64_t dflt)
{
	const char *e = getenv(name);
	char *end;
	if (!e || !*e)
		return dflt;
	unsigned long long v = strtoull(e, &end, 10);
	return *end || v == 0 ? dflt : v;
}

/* ---- data moved through pipes by threads ---- */

/* Writes size bytes of a stream made from seed into fd, 1 MiB at a
 * time, the block index stamped into each (no two blocks alike), and
 * closes fd. With pause_at, stops there for pause_ms after writing a byte
 * to note_fd (if set). */
struct feeder {
	int fd;
	uint64_t seed;
	uint64_t size;
	int ms_per_mib; /* throttle: at least this long per MiB */
	uint64_t pause_at;
	int pause_ms;
	int note_fd;
	_Atomic uint64_t written;
	bool complete; /* all size bytes went into fd */
	struct ipc_sha256 sha;
	char digest[64]; /* of the whole stream, when complete */
};

static void feeder_init(struct feeder *f, int fd, uint64_t seed,
                        uint64_t size)
{
	memset(f, 0, sizeof(*f));
	f->fd = fd;
	f->seed = seed;
	f->size = size;
	f->note_fd = -1;
	ipc_sha256_init(&f->sha);
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static void *feed(void *arg)
{
	struct feeder *f = arg;
	uint8_t *blk = random_bytes(MIB, f->seed);
	uint64_t off = 0;
	for (uint64_t i = 0; off < f->size; i++) {
		uint64_t t0 = fx_now_ms();
		size_t n = f->size - off < MIB ? (size_t)(f->size - off) : MIB;
		memcpy(blk, &i, sizeof(i));
		ipc_sha256_update(&f->sha, blk, n);
		if (!write_all(f->fd, blk, n))
			break;
		off += n;
		atomic_store(&f->written, off);
		if (f->pause_at && off >= f->pause_at && off - n < f->pause_at) {
			if (f->note_fd >= 0)
				(void)!write(f->note_fd, "p", 1);
			fx_sleep_ms(f->pause_ms);
		}
		uint64_t spent = fx_now_ms() - t0;
		if (f->ms_per_mib && spent < (uint64_t)f->ms_per_mib)
			fx_sleep_ms(f->ms_per_mib - (int)spent);
	}
	f->complete = off == f->size;
	if (f->complete)
		digest_final(&f->sha, f->digest);
	close(f->fd);
	free(blk);
	return NULL;
}

/* Reads fd to its end, hashing what comes; slowly with a delay. */
struct drain {
	int fd;
	int delay_ms; /* after each read of up to 16 KiB */
	_Atomic uint64_t bytes;
	struct ipc_sha256 sha;
};

static void *drain(void *arg)
{
	struct drain *d = arg;
	size_t size = d->delay_ms ? 16384 : 1 << 20;
	uint8_t *buf = malloc(size);
	ssize_t r;
	while ((r = read(d->fd, buf, size)) > 0 || (r < 0 && errno == EINTR)) {
		if (r < 0)
			continue;
		ipc_sha256_update(&d->sha, buf, (size_t)r);
		atomic_fetch_add(&d->bytes, (uint64_t)r);
		if (d->delay_ms)
			fx_sleep_ms(d->delay_ms);
	}
	free(buf);
	return NULL;
}

/* Stops nats-server (SIGTERM, or SIGKILL when hard) once *progress
 * reaches at, keeps it down for down_ms, starts it again. The fixture
 * gives the servers it starts a parent-death signal, and that follows the
 * thread that forked, not the process: so this thread never ends (a
 * struct bounce is static, never joined; wait for done). */
struct bounce {
	_Atomic uint64_t *progress;
	uint64_t at;
	int down_ms;
	bool hard;
	bool fired;
	uint64_t fired_at; /* what *progress was */
	int restarted;     /* natsd_restart's result */
	const char *count; /* a bucket whose chunks to count before */
	long chunks;       /* how many there were */
	atomic_bool done;
};

static long chunk_count(const char *b);

static void *bounce(void *arg)
{
	struct bounce *b = arg;
	uint64_t end = fx_now_ms() + 60000;
	while (atomic_load(b->progress) < b->at && fx_now_ms() < end)
		fx_sleep_ms(1);
	if (atomic_load(b->progress) >= b->at) {
		if (b->count)
			b->chunks = chunk_count(b->count);
		b->fired_at = atomic_load(b->progress);
		if (b->hard)
			kill(nd.pid, SIGKILL); /* natsd_restart() reaps it */
		else
			natsd_stop(&nd);
		b->fired = true;
		fx_sleep_ms(b->down_ms);
		b->restarted = natsd_restart(&nd);
	}
	atomic_store(&b->done, true);
	for (;;)
		fx_sleep_ms(1000);
	return NULL;
}

static void bounce_start(struct bounce *b)
{
	pthread_t t;
	ck_assert_int_eq(pthread_create(&t, NULL, bounce, b), 0);
	pthread_detach(t);
}

static bool bounce_done(void *arg)
{
	return atomic_load(&((struct bounce *)arg)->done);
}

/* ---- what the bucket's stream holds, seen with nats.c ---- */

/* The chunk subjects of OBJ_<b> and how many messages each holds (a JSON
 * object, {} when none), from STREAM.INFO with a subjects filter; NULL
 * while JetStream does not answer. */
static json_t *chunk_subjects(const char *b)
{
	natsConnection *nc = NULL;
	natsMsg *reply = NULL;
	json_t *subs = NULL;
	char subj[128], body[128];
	snprintf(subj, sizeof(subj), "$JS.API.STREAM.INFO.OBJ_%s", b);
	snprintf(body, sizeof(body), "{\"subjects_filter\":\"$O.%s.C.>\"}", b);
	if (natsConnection_ConnectTo(&nc, nd.url) != NATS_OK ||
	    natsConnection_RequestString(&reply, nc, subj, body, 2000) !=
	            NATS_OK)
		goto out;
	json_t *j = json_loadb(natsMsg_GetData(reply),
	                       (size_t)natsMsg_GetDataLength(reply), 0, NULL);
	json_t *state = json_object_get(j, "state");
	if (state && !json_object_get(j, "error")) {
		subs = json_object_get(state, "subjects");
		subs = subs ? json_incref(subs) : json_object();
	}
	json_decref(j);
out:
	natsMsg_Destroy(reply);
	natsConnection_Destroy(nc);
	return subs;
}

/* Chunk messages of OBJ_<b> in all; -1 while JetStream does not
 * answer. */
static long chunk_count(const char *b)
{
	json_t *subs = chunk_subjects(b);
	const char *k;
	json_t *v;
	long n = 0;
	if (!subs)
		return -1;
	json_object_foreach(subs, k, v)
		n += (long)json_integer_value(v);
	json_decref(subs);
	return n;
}

static void append(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;
	if (n + 1 >= size)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + n, size - n, fmt, ap);
	va_end(ap);
}

/* Whether the chunks in bucket b are exactly those of its live objects,
 * each with all of its chunks; what is off goes to out. */
static bool only_live_chunks(struct shipc *h, const char *b, char *out,
                             size_t size)
{
	char prefix[128], subj[192];
	struct shipc_obj_info *list = NULL;
	size_t n = 0;
	const char *k;
	json_t *v;
	out[0] = '\0';
	json_t *subs = chunk_subjects(b);
	if (!subs) {
		snprintf(out, size, "JetStream did not answer STREAM.INFO");
		return false;
	}
	if (shipc_obj_list(h, b, 0, &list, &n) < 0) {
		snprintf(out, size, "list: %s", why(h));
		json_decref(subs);
		return false;
	}
	snprintf(prefix, sizeof(prefix), "$O.%s.C.", b);
	json_object_foreach(subs, k, v)
	{
		bool ours = !strncmp(k, prefix, strlen(prefix));
		uint64_t have = (uint64_t)json_integer_value(v);
		const struct shipc_obj_info *o = NULL;
		for (size_t i = 0; ours && i < n && !o; i++)
			if (!strcmp(list[i].nuid, k + strlen(prefix)))
				o = &list[i];
		if (!o)
			append(out, size, "orphan %s: %llu chunks; ", k,
			       (unsigned long long)have);
		else if (have != o->chunks)
			append(out, size, "%s (%s): %llu chunks of %u; ", k,
			       o->name, (unsigned long long)have, o->chunks);
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(subj, sizeof(subj), "%s%s", prefix, list[i].nuid);
		if (list[i].chunks && !json_object_get(subs, subj))
			append(out, size, "no chunks of %s (%s); ", subj,
			       list[i].name);
	}
	shipc_obj_list_free(list, n);
	json_decref(subs);
	return out[0] == '\0';
}

/* Wait (bounded) for only_live_chunks(); fails the test past timeout. */
static void expect_only_live_chunks(struct shipc *h, const char *b,
                                    int timeout_ms)
{
	char out[1024];
	uint64_t t0 = fx_now_ms(), end = t0 + (uint64_t)timeout_ms;
	bool ok;
	while (!(ok = only_live_chunks(h, b, out, sizeof(out))) &&
	       fx_now_ms() < end)
		fx_sleep_ms(200);
	ck_assert_msg(ok, "bucket %s after %llu ms: %s", b,
	              (unsigned long long)(fx_now_ms() - t0), out);
	fprintf(stderr, "bucket %s: only live chunks after %llu ms\n", b,
	        (unsigned long long)(fx_now_ms() - t0));
}

/* A get into memory, checked against data. */
static void expect_content(struct shipc *h, const char *b, const char *name,
                           const void *data, size_t n)
{
	void *got = NULL;
	size_t len = 0;
	ck_assert_msg(shipc_obj_get_mem(h, b, name, &got, &len, n, NULL) == 0,
	              "get %s: %s", name, why(h));
	ck_assert_uint_eq(len, n);
	ck_assert(memcmp(got, data, n) == 0);
	free(got);
}

/* ---- 1. NATS restarted in the middle of a put ---- */

/* _i 0: nats-server stopped (SIGTERM); 1: killed. */
START_TEST(nats_restarted_mid_put)
{
	struct shipc *h = conn("faults");
	bucket(h, "rp");
	size_t n1 = 3 * MIB + 5;
	uint8_t *v1 = random_bytes(n1, 1);
	struct shipc_obj_info *i1 = NULL;
	ck_assert_msg(shipc_obj_put_mem(h, "rp", "doc", v1, n1, NULL, &i1) == 0,
	              "put v1: %s", why(h));

	/* 32 MiB at no more than 25 MiB/s; NATS stopped once 4 MiB went in,
	 * for 1.5 s: the put cannot have ended by then. */
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	struct feeder f;
	feeder_init(&f, p[1], 2, 32 * MIB);
	f.ms_per_mib = 40;
	static struct bounce bo;
	bo = (struct bounce){.progress = &f.written, .at = 4 * MIB,
	                     .down_ms = 1500, .count = "rp", .hard = _i == 1};
	pthread_t tf;
	pthread_create(&tf, NULL, feed, &f);
	bounce_start(&bo);
	struct shipc_obj_info *i2 = NULL;
	uint64_t t0 = fx_now_ms();
	errno = 0;
	int r = shipc_obj_put_fd(h, "rp", "doc", p[0], NULL, &i2);
	int err = errno;
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", why(h));
	uint64_t took = fx_now_ms() - t0;
	close(p[0]); /* a feeder left blocked gets EPIPE */
	pthread_join(tf, NULL);
	ck_assert(fx_wait(bounce_done, &bo, 70000));
	ck_assert_msg(bo.fired, "NATS never stopped: %llu bytes fed",
	              (unsigned long long)atomic_load(&f.written));
	ck_assert_int_eq(bo.restarted, 0);
	/* Chunks of this put were stored: their purge is what is tested. */
	ck_assert_msg(bo.chunks > (long)i1->chunks, "%ld chunks stored",
	              bo.chunks);
	fprintf(stderr,
	        "put while NATS restarted (%s at %llu KiB fed, %ld chunks "
	        "of it stored): %s after %llu ms, errno %d (%s): %s\n",
	        bo.hard ? "killed" : "stopped",
	        (unsigned long long)bo.fired_at >> 10,
	        bo.chunks - (long)i1->chunks, r ? "failed" : "stored",
	        (unsigned long long)took, r ? err : 0, r ? strerror(err) : "-",
	        r ? msg : "");
	if (r == 0) {
		/* It rode the outage out: then it is all of it. */
		ck_assert(f.complete);
		ck_assert_uint_eq(i2->size, f.size);
		ck_assert_str_eq(i2->digest, f.digest);
	} else {
		ck_assert_msg(err == EAGAIN || err == ETIMEDOUT,
		              "errno %d (%s): %s", err, strerror(err), msg);
		ck_assert_msg(strlen(msg) > 10, "no reason given: '%s'", msg);
	}

	/* Once shipd is back on NATS: no half object, no stray chunk. */
	ck_assert_msg(link_up(h, 30000), "shipd did not reconnect");
	struct shipc_obj_info *now = NULL;
	int tries = 0;
	while (shipc_obj_info(h, "rp", "doc", 1, &now) < 0 && tries++ < 100) {
		ck_assert_msg(errno == EAGAIN || errno == ETIMEDOUT ||
		                      errno == ESRCH,
		              "info: errno %d: %s", errno, why(h));
		fx_sleep_ms(100);
	}
	ck_assert_msg(now, "info after the restart: %s", why(h));
	ck_assert_int_eq(now->deleted, 0);
	if (r == 0) {
		ck_assert_str_eq(now->nuid, i2->nuid);
		ck_assert_str_eq(now->digest, f.digest);
	} else {
		ck_assert_str_eq(now->nuid, i1->nuid);
		ck_assert_str_eq(now->digest, i1->digest);
		ck_assert_uint_eq(now->size, n1);
		expect_content(h, "rp", "doc", v1, n1);
	}
	expect_only_live_chunks(h, "rp", 30000);

	/* The name takes the next put; the one it replaces goes. */
	size_t n3 = 2 * MIB + 3;
	uint8_t *v3 = random_bytes(n3, 3);
	char want[64];
	digest_of(v3, n3, want);
	struct shipc_obj_info *i3 = NULL;
	ck_assert_msg(shipc_obj_put_mem(h, "rp", "doc", v3, n3, NULL, &i3) == 0,
	              "put after the restart: %s", why(h));
	ck_assert_str_eq(i3->digest, want);
	expect_content(h, "rp", "doc", v3, n3);
	expect_only_live_chunks(h, "rp", 15000);

	shipc_obj_info_free(i1);
	shipc_obj_info_free(i2);
	shipc_obj_info_free(i3);
	shipc_obj_info_free(now);
	free(v1);
	free(v3);
	shipc_close(h);
}
END_TEST

/* ---- 2. NATS restarted in the middle of a get ---- */

/* _i 0: nats-server stopped (SIGTERM); 1: killed. */
START_TEST(nats_restarted_mid_get)
{
	struct shipc *h = conn("faults");
	bucket(h, "rg");
	size_t n = 12 * MIB + 7;
	uint8_t *data = random_bytes(n, 5);
	char want[64], got[64];
	digest_of(data, n, want);
	ck_assert_msg(shipc_obj_put_mem(h, "rg", "big", data, n, NULL, NULL) ==
	                      0,
	              "put: %s", why(h));

	/* Read at ~3 MiB/s; NATS stopped once 1 MiB arrived, for 1.5 s. */
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	struct drain d = {.fd = p[0], .delay_ms = 5};
	ipc_sha256_init(&d.sha);
	static struct bounce bo;
	bo = (struct bounce){.progress = &d.bytes, .at = MIB, .down_ms = 1500,
	                     .hard = _i == 1};
	pthread_t td;
	pthread_create(&td, NULL, drain, &d);
	bounce_start(&bo);
	uint64_t t0 = fx_now_ms();
	errno = 0;
	int r = shipc_obj_get_fd(h, "rg", "big", p[1], NULL, NULL);
	int err = errno;
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", why(h));
	uint64_t took = fx_now_ms() - t0;
	close(p[1]);
	pthread_join(td, NULL);
	ck_assert(fx_wait(bounce_done, &bo, 70000));
	close(p[0]);
	ck_assert_msg(bo.fired, "NATS never stopped: %llu bytes read",
	              (unsigned long long)atomic_load(&d.bytes));
	ck_assert_int_eq(bo.restarted, 0);
	fprintf(stderr,
	        "get while NATS restarted (%s at %llu KiB read): %s after "
	        "%llu ms with %llu of %zu bytes, errno %d (%s): %s\n",
	        bo.hard ? "killed" : "stopped",
	        (unsigned long long)bo.fired_at >> 10, r ? "failed" : "complete",
	        (unsigned long long)took,
	        (unsigned long long)atomic_load(&d.bytes), n, r ? err : 0,
	        r ? strerror(err) : "-", r ? msg : "");
	digest_final(&d.sha, got);
	if (r == 0) {
		/* Success means every byte, and the right ones. */
		ck_assert_uint_eq(atomic_load(&d.bytes), n);
		ck_assert_str_eq(got, want);
	} else {
		/* An outage, said as one: not "corrupt", not a lost shipd. */
		ck_assert_msg(err == EAGAIN || err == ETIMEDOUT,
		              "errno %d (%s): %s", err, strerror(err), msg);
		ck_assert_msg(strlen(msg) > 10, "no reason given: '%s'", msg);
	}

	/* Back on NATS: the whole object again. */
	ck_assert_msg(link_up(h, 30000), "shipd did not reconnect");
	void *back = NULL;
	size_t len = 0;
	int tries = 0;
	while (shipc_obj_get_mem(h, "rg", "big", &back, &len, n, NULL) < 0 &&
	       tries++ < 100) {
		ck_assert_msg(errno == EAGAIN || errno == ETIMEDOUT ||
		                      errno == ESRCH,
		              "get: errno %d: %s", errno, why(h));
		fx_sleep_ms(100);
	}
	ck_assert_msg(back, "get after the restart: %s", why(h));
	ck_assert_uint_eq(len, n);
	ck_assert(memcmp(back, data, n) == 0);
	free(back);
	free(data);
	shipc_close(h);
}
END_TEST

/* ---- 3. an app killed in the middle of a put ---- */

/* The child: connect, and on the parent's word put 64 MiB from a pipe
 * whose feeder stops after 6 MiB (telling the parent) and waits to be
 * killed. Uses no Check call: it is not a test process. */
static void victim(int go_fd, int note_fd, const char *name)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct shipc *h = shipc_connect(sd.sock, "victim");
	char c;
	if (!h)
		_exit(2);
	if (read(go_fd, &c, 1) != 1)
		_exit(3);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		_exit(4);
	static struct feeder f;
	feeder_init(&f, p[1], 7, 64 * MIB);
	f.pause_at = 6 * MIB;
	f.pause_ms = 120000;
	f.note_fd = note_fd;
	pthread_t t;
	pthread_create(&t, NULL, feed, &f);
	shipc_obj_put_fd(h, "kp", name, p[0], NULL, NULL);
	fprintf(stderr, "victim: the put ended: %s\n", why(h));
	_exit(5);
}

static bool wait_byte(int fd, int timeout_ms)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	char c;
	return poll(&pf, 1, timeout_ms) == 1 && read(fd, &c, 1) == 1;
}

/* _i 0: the name has a stored version; 1: it is new. */
START_TEST(app_killed_mid_put)
{
	const char *name = _i == 0 ? "doc" : "fresh";
	int go[2], note[2];
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(note, O_CLOEXEC), 0);
	/* Forked before this process holds any libshipc handle. */
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(go[1]);
		close(note[0]);
		victim(go[0], note[1], name);
	}
	close(go[0]);
	close(note[1]);

	struct shipc *h = conn("faults");
	bucket(h, "kp");
	size_t n1 = 300 * 1024;
	uint8_t *v1 = random_bytes(n1, 6);
	struct shipc_obj_info *i1 = NULL;
	if (_i == 0)
		ck_assert_msg(shipc_obj_put_mem(h, "kp", name, v1, n1, NULL,
		                                &i1) == 0,
		              "put v1: %s", why(h));
	long before = chunk_count("kp");
	ck_assert_int_ge(before, 0);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_msg(wait_byte(note[0], 30000), "the child never fed 6 MiB");
	/* Some of its chunks are stored when it dies. */
	long now = 0;
	uint64_t end = fx_now_ms() + 10000;
	while ((now = chunk_count("kp")) < before + 16 &&
	       fx_now_ms() < end)
		fx_sleep_ms(20);
	ck_assert_msg(now >= before + 16, "%ld chunks stored, %ld before", now,
	              before);
	kill(pid, SIGKILL);
	ck_assert_int_eq(fx_wait_exit(pid, 10000), 128 + SIGKILL);
	fprintf(stderr,
	        "app killed mid-put of '%s': %ld chunks of it stored\n", name,
	        now - before);

	/* What the name shows is what was there before. */
	struct shipc_obj_info *o = NULL;
	if (_i == 0) {
		ck_assert_msg(shipc_obj_info(h, "kp", name, 1, &o) == 0, "info: %s",
		              why(h));
		ck_assert_str_eq(o->nuid, i1->nuid);
		ck_assert_str_eq(o->digest, i1->digest);
		ck_assert_uint_eq(o->size, n1);
		ck_assert_int_eq(o->deleted, 0);
		shipc_obj_info_free(o);
		expect_content(h, "kp", name, v1, n1);
	} else {
		ck_assert_int_eq(shipc_obj_info(h, "kp", name, 1, &o), -1);
		ck_assert_int_eq(errno, ENOENT);
	}
	struct shipc_obj_info *list = NULL;
	size_t n = 0;
	ck_assert_int_eq(shipc_obj_list(h, "kp", 1, &list, &n), 0);
	ck_assert_uint_eq(n, _i == 0 ? 1 : 0);
	shipc_obj_list_free(list, n);
	expect_only_live_chunks(h, "kp", 15000);

	/* The next put of that name is stored, and the old one goes. */
	size_t n2 = 2 * MIB + 1;
	uint8_t *v2 = random_bytes(n2, 8);
	ck_assert_msg(shipc_obj_put_mem(h, "kp", name, v2, n2, NULL, NULL) == 0,
	              "put after the kill: %s", why(h));
	expect_content(h, "kp", name, v2, n2);
	expect_only_live_chunks(h, "kp", 15000);

	close(go[1]);
	close(note[0]);
	shipc_obj_info_free(i1);
	free(v1);
	free(v2);
	shipc_close(h);
}
END_TEST

/* ---- 4. shipd's memory while 1 GiB passes each way ---- */

static atomic_bool sampling;
static atomic_long peak_rss;

static void *sample(void *arg)
{
	(void)arg;
	while (atomic_load(&sampling)) {
		long k = fx_rss_kib(sd.pid);
		if (k > atomic_load(&peak_rss))
			atomic_store(&peak_rss, k);
		fx_sleep_ms(10);
	}
	return NULL;
}

START_TEST(big_object_bounded_memory)
{
	uint64_t mib = env_mib("SHIP_OBJ_BIG_MIB", BIG_MIB), size = mib * MIB;
	struct shipc *h = conn("faults");
	bucket(h, "big");
	long base = fx_rss_kib(sd.pid);
	ck_assert_int_gt(base, 0);
	atomic_store(&peak_rss, base);
	atomic_store(&sampling, true);
	pthread_t ts;
	pthread_create(&ts, NULL, sample, NULL);

	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	struct feeder f;
	feeder_init(&f, p[1], 9, size);
	pthread_t t;
	pthread_create(&t, NULL, feed, &f);
	struct shipc_obj_info *info = NULL;
	uint64_t t0 = fx_now_ms();
	int r = shipc_obj_put_fd(h, "big", "blob", p[0], NULL, &info);
	uint64_t put_ms = fx_now_ms() - t0;
	close(p[0]);
	pthread_join(t, NULL);
	ck_assert_msg(r == 0, "put: %s", why(h));
	ck_assert(f.complete);
	ck_assert_uint_eq(info->size, size);
	ck_assert_uint_eq(info->chunks, size / CHUNK);
	ck_assert_str_eq(info->digest, f.digest);
	long put_peak = atomic_exchange(&peak_rss, fx_rss_kib(sd.pid));

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	struct drain d = {.fd = p[0]};
	ipc_sha256_init(&d.sha);
	pthread_create(&t, NULL, drain, &d);
	t0 = fx_now_ms();
	r = shipc_obj_get_fd(h, "big", "blob", p[1], NULL, NULL);
	uint64_t get_ms = fx_now_ms() - t0;
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	atomic_store(&sampling, false);
	pthread_join(ts, NULL);
	long get_peak = atomic_load(&peak_rss);
	ck_assert_msg(r == 0, "get: %s", why(h));
	ck_assert_uint_eq(atomic_load(&d.bytes), size);
	char got[64];
	digest_final(&d.sha, got);
	ck_assert_str_eq(got, f.digest);

	/* A failed check skips the teardown: leave no GiB in /tmp. */
	ck_assert_msg(shipc_obj_bucket_delete(h, "big") == 0, "%s", why(h));
	long peak = put_peak > get_peak ? put_peak : get_peak;
	fprintf(stderr,
	        "%llu MiB through shipd: put %llu ms (%.0f MiB/s), get %llu ms "
	        "(%.0f MiB/s); shipd RSS before %ld KiB, peak during put %ld "
	        "KiB, during get %ld KiB: +%ld KiB (bound +%d KiB%s)\n",
	        (unsigned long long)mib, (unsigned long long)put_ms,
	        (double)mib * 1000 / (double)(put_ms ? put_ms : 1),
	        (unsigned long long)get_ms,
	        (double)mib * 1000 / (double)(get_ms ? get_ms : 1), base,
	        put_peak, get_peak, peak - base, RSS_GROWTH_KIB,
#ifdef SHIP_SANITIZED
	        ", not checked under sanitizers"
#else
	        ""
#endif
	);
#ifndef SHIP_SANITIZED
	ck_assert_msg(peak - base <= RSS_GROWTH_KIB,
	              "shipd RSS grew by %ld KiB (from %ld to %ld KiB)",
	              peak - base, base, peak);
#endif
	shipc_obj_info_free(info);
	shipc_close(h);
}
END_TEST

/* ---- 5. two big transfers do not starve a third app ---- */

/* A child app: on the parent's word (go_fd closed), put size bytes from
 * a generated stream, say so on note_fd, then get them back (shipd
 * checks the digest). Exits 0 when both succeeded. */
static void mover(int go_fd, int note_fd, int idx, uint64_t size)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	char name[32], c;
	snprintf(name, sizeof(name), "mover-%d", idx);
	struct shipc *h = shipc_connect(sd.sock, name);
	if (!h)
		_exit(2);
	if (read(go_fd, &c, 1) < 0)
		_exit(3);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		_exit(4);
	static struct feeder f;
	feeder_init(&f, p[1], 20 + (uint64_t)idx, size);
	pthread_t t;
	pthread_create(&t, NULL, feed, &f);
	struct shipc_obj_info *info = NULL;
	int r = shipc_obj_put_fd(h, "fair", name, p[0], NULL, &info);
	close(p[0]);
	pthread_join(t, NULL);
	if (r < 0 || info->size != size || strcmp(info->digest, f.digest)) {
		fprintf(stderr, "%s: put: %s\n", name, r ? why(h) : "wrong info");
		_exit(5);
	}
	shipc_obj_info_free(info);
	(void)!write(note_fd, "p", 1);
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	info = NULL;
	r = shipc_obj_get_fd(h, "fair", name, null, NULL, &info);
	if (r < 0 || info->size != size) {
		fprintf(stderr, "%s: get: %s\n", name, r ? why(h) : "wrong size");
		_exit(6);
	}
	shipc_obj_info_free(info);
	shipc_close(h);
	_exit(0);
}

static void on_echo(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                    void *arg)
{
	(void)sub;
	(void)arg;
	if (natsMsg_GetReply(msg))
		natsConnection_Publish(nc, natsMsg_GetReply(msg),
		                       natsMsg_GetData(msg),
		                       natsMsg_GetDataLength(msg));
	natsMsg_Destroy(msg);
}

/* One request to the responder through shipd: its round trip in µs, or
 * -1 (an error counts as a failed sample). */
static long request_rtt(struct shipc *h)
{
	struct shipc_msg *reply = NULL;
	uint64_t t = now_us();
	int r = shipc_request(h, "fair.echo", "ping", 4, 2000, &reply);
	uint64_t d = now_us() - t;
	bool ok = r == 0 && reply->len == 4 && !memcmp(reply->data, "ping", 4);
	shipc_msg_free(reply);
	return ok ? (long)d : -1;
}

/* The same request straight on NATS, for comparison. */
static long direct_rtt(natsConnection *nc)
{
	natsMsg *reply = NULL;
	uint64_t t = now_us();
	natsStatus st = natsConnection_Request(&reply, nc, "fair.echo", "ping",
	                                       4, 2000);
	uint64_t d = now_us() - t;
	natsMsg_Destroy(reply);
	return st == NATS_OK ? (long)d : -1;
}

static long status_rtt(struct shipc *h)
{
	struct shipc_status st;
	uint64_t t = now_us();
	int r = shipc_status(h, &st);
	return r == 0 ? (long)(now_us() - t) : -1;
}

/* A child's exit status as fx_wait_exit() gives it, -1 while it runs. */
static int exited(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, WNOHANG) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

/* The q-th quantile (0.5: median) of n samples; sorts them. */
static long quantile(long *v, size_t n, double q)
{
	qsort(v, n, sizeof(*v), cmp_long);
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

START_TEST(transfers_do_not_starve_others)
{
	uint64_t mib = env_mib("SHIP_OBJ_FAIR_MIB", FAIR_MIB);
	int go[2], note[2];
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(note, O_CLOEXEC | O_NONBLOCK), 0);
	/* Forked before this process holds any libshipc handle. */
	pid_t kids[2];
	for (int i = 0; i < 2; i++) {
		kids[i] = fork();
		ck_assert_int_ge(kids[i], 0);
		if (kids[i] == 0) {
			close(go[1]);
			close(note[0]);
			mover(go[0], note[1], i, mib * MIB);
		}
	}
	close(go[0]);
	close(note[1]);

	/* The responder, and beside it a plain NATS client asking the same
	 * thing: what NATS and the host cost, without shipd. */
	natsConnection *nc = NULL, *direct = NULL;
	natsSubscription *sub = NULL;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_ConnectTo(&direct, nd.url), NATS_OK);
	ck_assert_int_eq(
	    natsConnection_Subscribe(&sub, nc, "fair.echo", on_echo, NULL),
	    NATS_OK);
	ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
	struct shipc *h = conn("third");
	bucket(h, "fair");

	/* [0] request through shipd, [1] shipd's status, [2] direct. */
	static long loaded[3][RTT_SAMPLES_MAX];
	static int phase[RTT_SAMPLES_MAX]; /* puts ended when sampled */
	int puts_done = 0;
	char c;
	long idle[3][20], rtt[3];
	for (int i = 0; i < 5; i++) /* warm up */
		ck_assert_int_gt(request_rtt(h), 0);
	for (int i = 0; i < 20; i++) {
		idle[0][i] = request_rtt(h);
		idle[1][i] = status_rtt(h);
		idle[2][i] = direct_rtt(direct);
		for (int k = 0; k < 3; k++)
			ck_assert_int_gt(idle[k][i], 0);
		fx_sleep_ms(10);
	}

	/* Both start at once; sampled while both move data. */
	close(go[1]);
	uint64_t t0 = fx_now_ms(), end = t0 + 240000;
	size_t n = 0, failed = 0;
	int status[2] = {-1, -1};
	uint64_t done_ms[2] = {0, 0};
	while (fx_now_ms() < end) {
		for (int i = 0; i < 2; i++)
			if (status[i] < 0 && (status[i] = exited(kids[i])) >= 0)
				done_ms[i] = fx_now_ms() - t0;
		if (status[0] >= 0 && status[1] >= 0)
			break;
		if ((status[0] >= 0 || status[1] >= 0) || n == RTT_SAMPLES_MAX) {
			fx_sleep_ms(20);
			continue;
		}
		while (read(note[0], &c, 1) == 1)
			puts_done++;
		rtt[0] = request_rtt(h);
		rtt[1] = status_rtt(h);
		rtt[2] = direct_rtt(direct);
		if (rtt[0] < 0 || rtt[1] < 0 || rtt[2] < 0) {
			failed++;
			continue;
		}
		for (int k = 0; k < 3; k++)
			loaded[k][n] = rtt[k];
		phase[n++] = puts_done;
		fx_sleep_ms(20);
	}
	for (int i = 0; i < 2; i++)
		if (status[i] < 0) {
			kill(kids[i], SIGKILL);
			status[i] = fx_wait_exit(kids[i], 5000);
		}
	ck_assert_msg(status[0] == 0 && status[1] == 0,
	              "movers exited %d and %d", status[0], status[1]);
	ck_assert_msg(failed == 0, "%zu round trips failed", failed);
	ck_assert_msg(n >= 10, "only %zu samples while both moved", n);
	static const char *const what[] = {"request through shipd",
	                                   "shipd status", "request direct"};
	long idle_med[3], med[3];
	fprintf(stderr,
	        "two apps moving %llu MiB each (done in %llu and %llu ms), "
	        "%zu samples; third app's round trips:\n",
	        (unsigned long long)mib, (unsigned long long)done_ms[0],
	        (unsigned long long)done_ms[1], n);
	/* The medians while both put and while both get, to tell which. */
	static long part[RTT_SAMPLES_MAX];
	for (int ph = 0; ph <= 2; ph += 2)
		for (int k = 0; k < 3; k++) {
			size_t m = 0;
			for (size_t i = 0; i < n; i++)
				if (phase[i] == ph)
					part[m++] = loaded[k][i];
			if (m)
				fprintf(stderr,
				        "  %-22s while both %s: median %6ld us "
				        "(%zu samples)\n",
				        what[k], ph ? "get" : "put",
				        quantile(part, m, 0.5), m);
		}
	for (int k = 0; k < 3; k++) {
		idle_med[k] = quantile(idle[k], 20, 0.5);
		med[k] = quantile(loaded[k], n, 0.5);
		fprintf(stderr,
		        "  %-22s idle median %6ld us; loaded median %6ld us, "
		        "p90 %6ld us, max %6ld us\n",
		        what[k], idle_med[k], med[k],
		        quantile(loaded[k], n, 0.9), loaded[k][n - 1]);
	}
	/* A failed check skips the teardown: leave no 512 MiB in /tmp. */
	ck_assert_msg(shipc_obj_bucket_delete(h, "fair") == 0, "%s", why(h));
	/* What the app does: its requests, answered through shipd. */
#ifndef SHIP_SANITIZED
	ck_assert_msg(med[0] <= 2 * idle_med[0] + RTT_FLOOR_US,
	              "%s: loaded median %ld us over 2 x idle %ld us + %d us "
	              "(shipd status: idle %ld us, loaded %ld us; direct on "
	              "NATS: idle %ld us, loaded %ld us)",
	              what[0], med[0], idle_med[0], RTT_FLOOR_US, idle_med[1],
	              med[1], idle_med[2], med[2]);
#else
	fprintf(stderr, "  (not checked under sanitizers)\n");
#endif
	shipc_close(h);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
	natsConnection_Destroy(direct);
	close(note[0]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("obj-faults");
	struct {
		const char *name;
		const TTest *test;
		int loops;
	} cases[] = {
	    {"restart_put", nats_restarted_mid_put, 2},
	    {"restart_get", nats_restarted_mid_get, 2},
	    {"app_killed", app_killed_mid_put, 2},
	    {"memory", big_object_bounded_memory, 1},
	    {"fairness", transfers_do_not_starve_others, 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_set_timeout(tc, 600);
		tcase_add_loop_test(tc, cases[i].test, 0, cases[i].loops);
		suite_add_tcase(s, tc);
	}
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
