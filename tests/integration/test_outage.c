/* SPDX-License-Identifier: MIT */
/* The NATS link under the faults a robot's uplink produces: a server that
 * accepts and never answers, a server that stops, a server killed while
 * large messages flow, shipd itself paused while they arrive, a channel
 * history of large messages. After each, the link works again within the
 * documented bound (nats_dead_after_ms, 5 s, plus a reconnect), nothing
 * acknowledged is lost, and other apps are answered at once all along. */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nats/nats.h>

#include "fixture.h"
#include "shipc.h"

static struct natsd nd;
static struct shipdp sd;

/* The link works when a message published through shipd comes back to a
 * subscription through shipd. */
static int rt_got;

static void rt_cb(struct shipc *h, const struct shipc_msg *m, int err,
                  void *arg)
{
	if (m)
		rt_got++;
}

static void count_cb(struct shipc *h, const struct shipc_msg *m, int err,
                     void *arg)
{
	if (m)
		++*(int *)arg;
}

/* ms until a round trip works, or -1 after timeout_ms. Behind a backlog
 * (large messages queued in the server and in shipd) a round trip takes
 * seconds on a slow or busy host and is still a working link: one
 * subscription waits the whole time, and a message is published again
 * every second until one comes back. */
static long link_back_within(struct shipc *h, int timeout_ms)
{
	static int n;
	char subj[64];
	snprintf(subj, sizeof(subj), "outage.rt.%d", ++n);
	struct shipc_msg m = {.subject = subj, .data = "x", .len = 1};
	uint64_t start = fx_now_ms(), end = start + (uint64_t)timeout_ms;
	uint64_t sub = 0, next = 0;
	rt_got = 0;
	while (!rt_got && fx_now_ms() < end) {
		if (!sub)
			sub = shipc_subscribe(h, subj, NULL, 1, rt_cb, NULL);
		if (sub && fx_now_ms() >= next) {
			bool sent = shipc_publish_msg(h, &m, SHIPC_PUB_CONFIRM) == 0;
			next = fx_now_ms() + (sent ? 1000 : 100);
		}
		if (sub)
			shipc_dispatch(h, 50);
		else
			fx_sleep_ms(100);
	}
	long took = rt_got ? (long)(fx_now_ms() - start) : -1;
	if (sub && !rt_got) {
		shipc_unsubscribe(h, sub);
		shipc_dispatch(h, 100);
	}
	return took;
}

static enum shipc_link link_state(struct shipc *h)
{
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(h, &st), 0);
	return st.link;
}

/* ---- background traffic of a busy host ---- */

struct busy {
	pthread_t t;
	atomic_bool stop;
	atomic_ulong sent, received;
};

static void busy_cb(struct shipc *h, const struct shipc_msg *m, int err,
                    void *arg)
{
	struct busy *b = arg;
	if (m)
		atomic_fetch_add(&b->received, 1);
}

static void *busy_run(void *arg)
{
	struct busy *b = arg;
	struct shipc *h = shipc_connect(sd.sock, "busy");
	if (!h)
		return NULL;
	shipc_subscribe(h, "outage.busy.>", NULL, 0, busy_cb, b);
	char data[512];
	memset(data, 'b', sizeof(data));
	for (int i = 0; !atomic_load(&b->stop) && i < 1000000; i++) {
		if (shipc_publish(h, "outage.busy.x", data, sizeof(data)) == 0)
			atomic_fetch_add(&b->sent, 1);
		shipc_dispatch(h, i % 16 ? 0 : 2);
	}
	shipc_close(h);
	return NULL;
}

static void busy_start(struct busy *b)
{
	memset(b, 0, sizeof(*b));
	ck_assert_int_eq(pthread_create(&b->t, NULL, busy_run, b), 0);
}

static void busy_stop(struct busy *b)
{
	atomic_store(&b->stop, true);
	pthread_join(b->t, NULL);
	/* It went on through the faults. */
	ck_assert_uint_gt(atomic_load(&b->sent), 100);
	ck_assert_uint_gt(atomic_load(&b->received), 100);
}

/* ---- a direct NATS publisher of large messages ---- */

struct flood {
	pthread_t t;
	atomic_bool stop;
	char url[64];
	atomic_ulong sent;
};

static void *flood_run(void *arg)
{
	struct flood *f = arg;
	static char data[1000000];
	memset(data, 'f', sizeof(data));
	natsOptions *o = NULL;
	natsOptions_Create(&o);
	natsOptions_SetURL(o, f->url);
	natsOptions_SetMaxReconnect(o, -1);
	natsOptions_SetReconnectWait(o, 100);
	natsOptions_SetRetryOnFailedConnect(o, true, NULL, NULL);
	natsConnection *nc = NULL;
	natsConnection_Connect(&nc, o);
	for (int i = 0; nc && !atomic_load(&f->stop) && i < 100000; i++) {
		if (natsConnection_Publish(nc, "outage.big.x", data,
		                           sizeof(data)) == NATS_OK)
			atomic_fetch_add(&f->sent, 1);
		usleep(2000);
	}
	natsConnection_Destroy(nc);
	natsOptions_Destroy(o);
	return NULL;
}

static void flood_start(struct flood *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->url, sizeof(f->url), "%s", nd.url);
	ck_assert_int_eq(pthread_create(&f->t, NULL, flood_run, f), 0);
}

static void flood_stop(struct flood *f)
{
	atomic_store(&f->stop, true);
	pthread_join(f->t, NULL);
}

/* A local app that takes the large messages (and reads them slowly). */
struct big_reader {
	pthread_t t;
	atomic_bool stop;
	atomic_ulong got;
};

static void big_cb(struct shipc *h, const struct shipc_msg *m, int err,
                   void *arg)
{
	struct big_reader *r = arg;
	if (m)
		atomic_fetch_add(&r->got, 1);
}

static void *big_run(void *arg)
{
	struct big_reader *r = arg;
	struct shipc *h = shipc_connect(sd.sock, "big-reader");
	if (!h)
		return NULL;
	shipc_subscribe(h, "outage.big.>", NULL, 0, big_cb, r);
	for (int i = 0; !atomic_load(&r->stop) && i < 100000; i++)
		shipc_dispatch(h, 10);
	shipc_close(h);
	return NULL;
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	const char *extra[] = {NULL};
	ck_assert_int_eq(fx_up(&nd, &sd, extra), 0);
}

static void teardown(void)
{
	if (nd.pid > 0)
		kill(nd.pid, SIGCONT);
	ck_assert_int_eq(fx_down(&nd, &sd), 0);
}

/* ---- a server that accepts and never answers ---- */

struct silent {
	pthread_t t;
	int lfd;
	atomic_bool stop;
	atomic_int accepted;
	int fds[256];
	int n;
};

static void *silent_run(void *arg)
{
	struct silent *s = arg;
	while (!atomic_load(&s->stop)) {
		struct pollfd p = {.fd = s->lfd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		int fd = accept(s->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		atomic_fetch_add(&s->accepted, 1);
		if (s->n < 256)
			s->fds[s->n++] = fd; /* held open, never written */
		else
			close(fd);
	}
	for (int i = 0; i < s->n; i++)
		close(s->fds[i]);
	return NULL;
}

static void silent_start(struct silent *s, int port)
{
	memset(s, 0, sizeof(*s));
	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(s->lfd, 0);
	int one = 1;
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int ok = -1;
	for (int i = 0; i < 50 && ok < 0; i++) {
		ok = bind(s->lfd, (struct sockaddr *)&a, sizeof(a));
		if (ok < 0)
			fx_sleep_ms(100);
	}
	ck_assert_msg(ok == 0, "bind %d: %s", port, strerror(errno));
	ck_assert_int_eq(listen(s->lfd, 64), 0);
	ck_assert_int_eq(pthread_create(&s->t, NULL, silent_run, s), 0);
}

static void silent_stop(struct silent *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->t, NULL);
	close(s->lfd);
}

static uint64_t timed_status(struct shipc *h, struct shipc_status *st)
{
	uint64_t t0 = fx_now_ms();
	ck_assert_int_eq(shipc_status(h, st), 0);
	return fx_now_ms() - t0;
}

START_TEST(silent_server_never_stalls_the_loop)
{
	struct shipc *app = shipc_connect(sd.sock, "app");
	struct shipc *other = shipc_connect(sd.sock, "other");
	struct shipc *sub = shipc_connect(sd.sock, "sub");
	ck_assert_ptr_nonnull(app);
	ck_assert_ptr_nonnull(other);
	ck_assert_ptr_nonnull(sub);
	int kept = 0, got = 0;
	ck_assert_uint_gt(shipc_subscribe(sub, "outage.kept", NULL, 0, count_cb,
	                                  &got),
	                  0);

	int port = nd.port;
	natsd_stop(&nd);
	struct silent s;
	silent_start(&s, port);
	/* shipd sees the server go (its socket closes) at once. */
	for (int i = 0; i < 100 && link_state(other) == SHIPC_LINK_CONNECTED;
	     i++)
		fx_sleep_ms(20);

	uint64_t worst = 0, start = fx_now_ms();
	int samples = 0;
	struct shipc_status st;
	const char *secs = getenv("SHIP_OUTAGE_SECONDS");
	uint64_t span = (secs ? strtoull(secs, NULL, 10) : 30) * 1000;
	while (fx_now_ms() - start < span) {
		uint64_t t = timed_status(other, &st);
		if (t > worst)
			worst = t;
		samples++;
		ck_assert_int_ne(st.link, SHIPC_LINK_CONNECTED);
		/* Publishes are kept for the reconnect; everything else fails
		 * at once. */
		if (samples % 10 == 0 && kept < 20 &&
		    shipc_publish(app, "outage.kept", "k", 1) == 0)
			kept++;
		if (samples % 25 == 0) {
			uint64_t t0 = fx_now_ms();
			struct shipc_kv_entry *e = NULL;
			ck_assert_int_eq(shipc_kv_get(app, "outage", "k", 0, &e),
			                 -1);
			ck_assert_int_eq(errno, EAGAIN);
			uint64_t t1 = fx_now_ms() - t0;
			if (t1 > worst)
				worst = t1;
		}
		shipc_dispatch(app, 0);
		fx_sleep_ms(50);
	}
	fprintf(stderr,
	        "silent server: %d status answers, worst %" PRIu64 " ms; "
	        "%d connection attempts accepted\n",
	        samples, worst, atomic_load(&s.accepted));
	ck_assert_uint_lt(worst, 100);
	ck_assert_int_gt(samples, 100);
	/* shipd kept trying, on its own thread. */
	ck_assert_int_ge(atomic_load(&s.accepted), 2);
	ck_assert_int_eq(shipc_flush(app, 2000), 0);

	silent_stop(&s);
	ck_assert_int_eq(natsd_restart(&nd), 0);
	long back = link_back_within(other, 20000);
	ck_assert_msg(back >= 0, "the link did not come back");
	/* What was kept went out once the subscription was back. */
	uint64_t end = fx_now_ms() + 5000;
	while (got < kept && fx_now_ms() < end)
		shipc_dispatch(sub, 50);
	shipc_dispatch(sub, 200); /* and no more than that */
	ck_assert_int_eq(got, kept);
	ck_assert_int_gt(kept, 10);
	shipc_close(app);
	shipc_close(other);
	shipc_close(sub);
}
END_TEST

START_TEST(stopped_server_is_found_dead_within_the_bound)
{
	struct shipc *h = shipc_connect(sd.sock, "app");
	ck_assert_ptr_nonnull(h);
	ck_assert(link_back_within(h, 5000) >= 0);
	struct busy b;
	busy_start(&b);
	fx_sleep_ms(500);
	ck_assert_int_eq(fx_freeze(nd.pid, 2000), 0);
	uint64_t t0 = fx_now_ms(), worst = 0, found = 0;
	struct shipc_status st;
	while (fx_now_ms() - t0 < 15000) {
		uint64_t t = timed_status(h, &st);
		if (t > worst)
			worst = t;
		if (st.link != SHIPC_LINK_CONNECTED) {
			found = fx_now_ms() - t0;
			break;
		}
		fx_sleep_ms(50);
	}
	fprintf(stderr, "stopped server: found dead after %" PRIu64
	                " ms; worst status %" PRIu64 " ms\n",
	        found, worst);
	ck_assert_msg(found > 0, "a stopped server was never found dead");
	/* nats_dead_after_ms (5 s) and one probe interval, with margin. */
	ck_assert_uint_le(found, 7500);
	/* The loop never waits for the server: a status is answered in a
	 * loop turn (a blocked loop would take seconds). Sanitizers make
	 * turns slower; 144 ms was seen under ASan on a busy machine. */
#ifdef SHIP_SANITIZED
	ck_assert_uint_lt(worst, 500);
#else
	ck_assert_uint_lt(worst, 100);
#endif
	ck_assert_str_ne(st.last_error, "");
	ck_assert_int_eq(kill(nd.pid, SIGCONT), 0);
	long back = link_back_within(h, 20000);
	ck_assert_msg(back >= 0, "the link did not come back");
	busy_stop(&b);
	shipc_close(h);
}
END_TEST

/* A subscribe is answered once the server has the SUB, or after shipd's
 * bounded wait for that when the server is slow; the app must still be
 * waiting then. A server that answers nothing (stopped, within
 * nats_dead_after_ms) is the slowest there is. */
START_TEST(subscribe_answered_while_the_server_is_slow)
{
	struct shipc *h = shipc_connect(sd.sock, "app");
	ck_assert_ptr_nonnull(h);
	ck_assert(link_back_within(h, 5000) >= 0);
	ck_assert_int_eq(fx_freeze(nd.pid, 2000), 0);
	/* Two, while the server is stopped. */
	uint64_t sub[2] = {0}, took[2] = {0};
	int saved[2] = {0};
	for (int i = 0; i < 2; i++) {
		uint64_t t0 = fx_now_ms();
		sub[i] = shipc_subscribe(h, i ? "outage.slow.1" : "outage.slow",
		                         NULL, 0, rt_cb, NULL);
		saved[i] = errno;
		took[i] = fx_now_ms() - t0;
	}
	enum shipc_link link = link_state(h);
	ck_assert_int_eq(kill(nd.pid, SIGCONT), 0);
	/* libshipc waits 2 s for the answer to a subscribe: shipd's must
	 * come well before that, or a late loop makes the app give up on a
	 * subscription shipd then opens. */
	for (int i = 0; i < 2; i++) {
		ck_assert_msg(sub[i] != 0,
		              "subscribe %d failed after %" PRIu64 " ms: %s", i,
		              took[i], strerror(saved[i]));
		ck_assert_msg(took[i] < 1600,
		              "subscribe %d answered after %" PRIu64 " ms", i,
		              took[i]);
	}
	/* Answered before shipd gave up on the server. */
	ck_assert_int_eq(link, SHIPC_LINK_CONNECTED);
	/* The subscription works once the server does. */
	rt_got = 0;
	uint64_t end = fx_now_ms() + 10000;
	while (!rt_got && fx_now_ms() < end) {
		ck_assert_int_eq(shipc_publish(h, "outage.slow", "x", 1), 0);
		shipc_dispatch(h, 200);
	}
	ck_assert_int_gt(rt_got, 0);
	shipc_close(h);
}
END_TEST

START_TEST(shipd_paused_while_large_messages_arrive)
{
	struct shipc *h = shipc_connect(sd.sock, "app");
	ck_assert_ptr_nonnull(h);
	struct busy b;
	busy_start(&b);
	struct big_reader r = {0};
	ck_assert_int_eq(pthread_create(&r.t, NULL, big_run, &r), 0);
	fx_sleep_ms(500);
	struct flood f;
	flood_start(&f);
	for (int round = 0; round < 3; round++) {
		fx_sleep_ms(1000);
		ck_assert_int_eq(kill(sd.pid, SIGSTOP), 0);
		fx_sleep_ms(2000);
		ck_assert_int_eq(kill(sd.pid, SIGCONT), 0);
		long back = link_back_within(h, 15000);
		ck_assert_msg(back >= 0, "round %d: the link stayed dead", round);
		fprintf(stderr, "paused shipd, round %d: link works after %ld ms\n",
		        round, back);
	}
	flood_stop(&f);
	atomic_store(&r.stop, true);
	pthread_join(r.t, NULL);
	ck_assert_uint_gt(atomic_load(&r.got), 0);
	ck_assert_int_eq(link_state(h), SHIPC_LINK_CONNECTED);
	busy_stop(&b);
	shipc_close(h);
}
END_TEST

START_TEST(server_killed_while_large_messages_flow)
{
	struct shipc *h = shipc_connect(sd.sock, "app");
	ck_assert_ptr_nonnull(h);
	struct shipc_kv_config kc = {.bucket = "outage", .history = 1};
	ck_assert_int_eq(shipc_kv_bucket_create(h, &kc, NULL), 0);
	struct busy b;
	busy_start(&b);
	struct big_reader r = {0};
	ck_assert_int_eq(pthread_create(&r.t, NULL, big_run, &r), 0);
	fx_sleep_ms(500);
	struct flood f;
	flood_start(&f);
	int acked = 0;
	for (int round = 0; round < 3; round++) {
		fx_sleep_ms(800 + round * 300);
		char key[32];
		snprintf(key, sizeof(key), "k%d", round);
		uint64_t rev = 0;
		if (shipc_kv_put(h, "outage", key, "v", 1, &rev) == 0)
			acked |= 1 << round;
		kill(nd.pid, SIGKILL);
		natsd_stop(&nd); /* reaps it */
		fx_sleep_ms(300);
		ck_assert_int_eq(natsd_restart(&nd), 0);
		long back = link_back_within(h, 15000);
		ck_assert_msg(back >= 0, "round %d: the link stayed dead", round);
		fprintf(stderr, "killed server, round %d: link works after %ld ms\n",
		        round, back);
	}
	flood_stop(&f);
	atomic_store(&r.stop, true);
	pthread_join(r.t, NULL);
	/* Every acknowledged write is there. */
	ck_assert_int_ne(acked, 0);
	for (int round = 0; round < 3; round++) {
		if (!(acked & 1 << round))
			continue;
		char key[32];
		snprintf(key, sizeof(key), "k%d", round);
		struct shipc_kv_entry *e = NULL;
		ck_assert_msg(shipc_kv_get(h, "outage", key, 0, &e) == 0,
		              "acknowledged %s lost", key);
		shipc_kv_entry_free(e);
	}
	busy_stop(&b);
	shipc_close(h);
}
END_TEST

START_TEST(history_of_large_channel_messages)
{
	struct shipc *h = shipc_connect(sd.sock, "app");
	ck_assert_ptr_nonnull(h);
	struct busy b;
	busy_start(&b);
	/* Channel messages of about 900 kB, under the server's 1 MB. */
	size_t len = 900000;
	char *content = malloc(len + 1);
	memset(content, 'c', len);
	content[len] = '\0';
	for (int i = 0; i < 40; i++)
		ck_assert_msg(shipc_channel_send(h, "outage", "tester", content,
		                                 NULL, NULL) == 0,
		              "send %d", i);
	free(content);
	size_t total = 0;
	uint64_t before = 0, more = 0;
	for (int page = 0; page < 50 && total < 40; page++) {
		struct shipc_channel_msg *list = NULL;
		size_t n = 0;
		int rc = shipc_channel_history(h, "outage", 40, before, &list, &n,
		                               &more);
		ck_assert_msg(rc == 0, "history page %d failed", page);
		total += n;
		shipc_channel_history_free(list, n);
		if (!more)
			break;
		before = more;
	}
	ck_assert_uint_eq(total, 40);
	long back = link_back_within(h, 15000);
	ck_assert_msg(back >= 0, "the link stayed dead after the history");
	ck_assert_int_eq(link_state(h), SHIPC_LINK_CONNECTED);
	busy_stop(&b);
	shipc_close(h);
}
END_TEST

/* ---- a message cut in two by a reconnect ---- */

/* Read from fd until text arrives (or 5 s pass). */
static bool read_until(int fd, const char *text)
{
	char buf[8192];
	size_t have = 0;
	uint64_t end = fx_now_ms() + 5000;
	while (fx_now_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0)
			return false;
		have += (size_t)n;
		buf[have] = '\0';
		if (strstr(buf, text))
			return true;
		if (have > sizeof(buf) / 2) { /* keep the tail */
			memmove(buf, buf + have - 64, 64);
			have = 64;
		}
	}
	return false;
}

/* The server shipd first connects to is a fake that sends the first half
 * of a 1 MB message and hangs up; the real nats-server then takes its
 * port. A NATS client that kept its parser state across the reconnect
 * takes the new server's bytes for the rest of that message and is dead
 * while "connected" until a megabyte has arrived (on a quiet link,
 * minutes). */
START_TEST(message_cut_by_a_reconnect)
{
	signal(SIGPIPE, SIG_IGN);
	struct silent l;
	int port = fx_free_port();
	silent_start(&l, port);
	/* The fake serves one connection itself: stop the silent thread's
	 * accepting and take the listener. */
	atomic_store(&l.stop, true);
	pthread_join(l.t, NULL);
	char url[64];
	snprintf(url, sizeof(url), "nats://127.0.0.1:%d", port);
	const char *extra[] = {NULL};
	ck_assert_int_eq(shipd_start(&sd, url, extra), 0);
	struct pollfd p = {.fd = l.lfd, .events = POLLIN};
	ck_assert_int_eq(poll(&p, 1, 5000), 1);
	int fd = accept(l.lfd, NULL, NULL);
	ck_assert_int_ge(fd, 0);
	char info[512];
	int n = snprintf(info, sizeof(info),
	                 "INFO {\"server_id\":\"FAKE\",\"version\":\"2.9.10\","
	                 "\"go\":\"go1.19\",\"host\":\"127.0.0.1\",\"port\":%d,"
	                 "\"headers\":true,\"max_payload\":1048576,"
	                 "\"proto\":1}\r\n",
	                 port);
	ck_assert_int_eq(write(fd, info, (size_t)n), n);
	ck_assert(read_until(fd, "PING\r\n"));
	ck_assert_int_eq(write(fd, "PONG\r\n", 6), 6);
	ck_assert(read_until(fd, "SUB ")); /* it took the connection */
	static char half[500000];
	memset(half, 'h', sizeof(half));
	const char *hdr = "MSG outage.cut 1 1000000\r\n";
	ck_assert_int_eq(write(fd, hdr, strlen(hdr)), (ssize_t)strlen(hdr));
	size_t off = 0;
	while (off < sizeof(half)) {
		ssize_t w = write(fd, half + off, sizeof(half) - off);
		ck_assert_int_gt(w, 0);
		off += (size_t)w;
	}
	fx_sleep_ms(200); /* read by shipd */
	close(fd);
	close(l.lfd);
	for (int i = 0; i < l.n; i++)
		close(l.fds[i]);
	ck_assert_int_eq(natsd_start(&nd, port), 0);

	struct shipc *h = shipc_connect(sd.sock, "app");
	ck_assert_ptr_nonnull(h);
	long back = link_back_within(h, 15000);
	fprintf(stderr, "message cut by a reconnect: link works after %ld ms\n",
	        back);
	ck_assert_msg(back >= 0, "dead after a message cut by a reconnect");
	ck_assert_int_eq(link_state(h), SHIPC_LINK_CONNECTED);
	shipc_close(h);
	ck_assert_int_eq(fx_down(&nd, &sd), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("outage");
	TCase *tc = tcase_create("outage");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, silent_server_never_stalls_the_loop);
	tcase_add_test(tc, stopped_server_is_found_dead_within_the_bound);
	tcase_add_test(tc, subscribe_answered_while_the_server_is_slow);
	tcase_add_test(tc, shipd_paused_while_large_messages_arrive);
	tcase_add_test(tc, server_killed_while_large_messages_flow);
	tcase_add_test(tc, history_of_large_channel_messages);
	suite_add_tcase(s, tc);
	TCase *cut = tcase_create("cut");
	tcase_set_timeout(cut, 120);
	tcase_add_test(cut, message_cut_by_a_reconnect);
	suite_add_tcase(s, cut);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
