/* SPDX-License-Identifier: MIT */
/* The host's NATS connection: connect off the loop, reconnect forever,
 * report its state, and route the reply inbox.
 *
 * Every connection is made new, on a thread of its own, and nats.c never
 * reconnects one: a connection that fails is closed and a new one made.
 * nats.c 3.4.1 keeps its protocol parser across its own reconnects in
 * event-loop mode, so a reconnect that cut a message in two left the new
 * connection parsing the server's bytes as the rest of the old message
 * (dead while "connected"); and its reconnect thread holds the connection's
 * lock across a whole attempt, which every call from the loop would wait
 * on. A new connection has a new parser, and the loop touches a connection
 * only once it is connected. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "shipd.h"


#define PROBE_INTERVAL_MS 1000
#define PROBE_RESEND_US 5000000
#define MAX_DYING 8

/* A publish kept while the link is down. */
struct held {
	TAILQ_ENTRY(held) entry;
	natsMsg *msg;
	size_t bytes;
};

static struct {
	const struct config *conf;
	natsOptions *opts;
	natsConnection *nc; /* only while connected */
	natsSubscription *inbox_sub;
	char inbox[64];
	struct link_info info;
	bool ever_connected;
	bool connecting; /* the connect thread runs */
	natsConnection *connected_nc; /* what it made, until the loop takes it */
	/* Dropped by shipd before nats.c closed them: destroyed once closed. */
	natsConnection *dying[MAX_DYING];
	pthread_t thread;
	unsigned attempts; /* failed connects since the last success */
	struct event *probe_timer;
	struct event *retry_timer;
	uint64_t rtt_sent_us;
	bool rtt_pending;
	char rtt_tok[24]; /* "rtt<16 hex>", new with each probe: not guessed */
	uint64_t alive_us;   /* when the link last proved it works */
	uint64_t msgs_seen;  /* mailbox_msgs_seen() at the last probe tick */
	uint64_t reads;      /* read events on the link's socket */
	uint64_t reads_seen; /* reads at the last probe tick */
	size_t buffered;     /* nats.c's unsent bytes at the last tick */
	bool stopping;       /* link_stop runs: no more connections */
	TAILQ_HEAD(, held) held;
	size_t held_bytes;
	uint64_t held_dropped;
	char connect_error[256]; /* written by the connect thread, read after */
} L = {.held = TAILQ_HEAD_INITIALIZER(L.held)};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

const char *link_state_name(enum link_state s)
{
	switch (s) {
	case LINK_CONNECTING:
		return "connecting";
	case LINK_CONNECTED:
		return "connected";
	case LINK_RECONNECTING:
		return "reconnecting";
	case LINK_CLOSED:
		return "closed";
	}
	return "unknown";
}

/* ---- callbacks on nats.c threads: they only post mail ---- */

static void post_event(natsConnection *nc, enum link_event ev)
{
	struct mail m = {.kind = MAIL_LINK_EVENT, .ptr = nc, .arg = ev};
	mailbox_post(&m, false);
}

static void on_disconnected(natsConnection *nc, void *arg)
{
	post_event(nc, LINK_EV_DISCONNECTED);
}

static void on_closed(natsConnection *nc, void *arg)
{
	post_event(nc, LINK_EV_CLOSED);
}

static void on_error(natsConnection *nc, natsSubscription *sub,
                     natsStatus err, void *arg)
{
	struct mail m = {.kind = MAIL_LINK_EVENT, .ptr = nc,
	                 .arg = (uint64_t)LINK_EV_ERROR | (uint64_t)err << 8};
	mailbox_post(&m, false);
}

static void on_wait_msg(natsConnection *nc, natsSubscription *sub,
                        natsMsg *msg, void *arg)
{
	struct mail m = {.kind = MAIL_INBOX_MSG, .msg = msg, .nc = nc,
	                 .arg = (uint64_t)(uintptr_t)arg,
	                 .bytes = (size_t)natsMsg_GetDataLength(msg)};
	mailbox_post(&m, false);
}

/* ---- nats.c on our loop ----
 *
 * nats.c reads and writes its socket from our libevent loop (its event-loop
 * mode): what a loop turn publishes goes out in one write, and what arrives
 * is parsed here; messages of subscriptions still go through nats.c's
 * delivery threads, replies to shipd's own requests do not (link_filter;
 * a synchronous inbox would not do: nats.c 3.4.1 swallows a "no
 * responders" status there, and with it which request it was for). */

struct evlink {
	natsConnection *nc;
	evutil_socket_t fd;
	bool stopped; /* nats.c stopped polling: fd may be closed (and reused) */
	struct event *read;
	struct event *write;
	/* A write nats.c asks for on the loop is done at the end of the
	 * loop's turn, without asking epoll to watch (and unwatch) a socket
	 * that has room: two epoll_ctl and a turn of the loop a publish. */
	struct event *flush;
	atomic_bool want_write; /* asked for, not done yet */
	bool flushing;          /* evlink_flush_cb is in nats.c */
	bool gone;              /* detached meanwhile: freed by it */
	struct evlink *next;
};

/* The live ones, to find a connection's socket: nats.c attaches and
 * detaches from its threads too. */
static pthread_mutex_t evlinks_mu = PTHREAD_MUTEX_INITIALIZER;
static struct evlink *evlinks;

static void evlinks_remove(struct evlink *e)
{
	for (struct evlink **p = &evlinks; *p; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			break;
		}
}

/* End a connection nats.c still thinks alive, without the flush that
 * natsConnection_Close does (it would wait on the loop for a PONG): its
 * next read sees the end of the stream, and nats.c closes it. */
static void evlink_shutdown(natsConnection *nc)
{
	pthread_mutex_lock(&evlinks_mu);
	for (struct evlink *e = evlinks; e; e = e->next)
		if (e->nc == nc && !e->stopped) {
			shutdown(e->fd, SHUT_RDWR);
			event_active(e->read, EV_READ, 0);
		}
	pthread_mutex_unlock(&evlinks_mu);
}

static void on_inbox_msg(natsConnection *nc, natsSubscription *sub,
                         natsMsg *msg, void *arg)
{
	struct mail m = {.kind = MAIL_INBOX_MSG, .msg = msg, .nc = nc,
	                 .bytes = (size_t)natsMsg_GetDataLength(msg)};
	mailbox_post(&m, false);
}

/* ---- replies taken where they are parsed ----
 *
 * A reply to one of our requests would cost two thread hand-offs on its
 * way back (nats.c's delivery thread, then the mailbox), each a wake-up
 * that costs more CPU than all the rest of a request. nats.c calls a
 * connection's message filter from its parser, which runs on our loop
 * (event-loop mode), before it hands a message to a subscription: there
 * shipd takes the replies of single waits (<inbox>.<token>x<secret>) and
 * its probe's, and handles them as soon as the read is parsed. Seen
 * there, a "no responders" status still says which request it answers.
 *
 * The filter hook is exported by libnats but not declared in its headers
 * (nats.c's tests use it); its type is the same from 3.4 to 3.11. shipd
 * binds it weakly and uses it only on a libnats 3.x that has it;
 * otherwise, or off the loop, replies take the mailbox as before. Multi
 * waits never come this way: JetStream delivers their messages under
 * other subjects, and their order with their status messages matters.
 *
 * A reply never overtakes a message that came before it: what the filter
 * lets through goes to nats.c's one delivery thread (shipd leaves
 * nats.c's pool at its one worker, so all subscriptions share its order)
 * and then the mailbox, and a reply is taken only while everything let
 * through has been posted (T.passed against T.posted, which
 * mailbox_post counts with each posting) and the mailbox has nothing
 * undispatched. Otherwise it goes the same way, behind them. nats.c drops
 * some messages it was handed without a callback (a subscription closed
 * meanwhile, one over its pending limits), and the counts would differ
 * for good: the probe's message, when it went that way too, settles them
 * (order_settle). */

typedef void link_filter_fn(natsConnection *nc, natsMsg **msg, void *closure);
extern void natsConn_setFilterWithClosure(natsConnection *nc,
                                          link_filter_fn *f, void *closure)
    __attribute__((weak));

/* Every message nats.c makes is freed by its garbage-collector thread
 * (natsMsg_Destroy queues it there and wakes that thread when it is
 * idle): a wake-up per message shipd is done with, which with requests one
 * at a time costs more than the rest of the request. shipd's messages are
 * its own (it uses no nats.c JetStream subscription, the only source of
 * messages nats.c keeps), so it frees the small ones itself where libnats
 * exports the function that thread calls (same type from 3.4 to 3.11). */
extern void natsMsg_free(void *object) __attribute__((weak));

static bool free_direct;

#define FREE_DIRECT_MAX 4096 /* larger ones: freed on its thread still */

void link_msg_destroy(natsMsg *msg)
{
	/* A large message's free costs more than the wake-up (glibc gives
	 * pages back): on the two cores of a robot, the collector does it
	 * beside a busy loop. */
	if (free_direct && msg &&
	    natsMsg_GetDataLength(msg) <= FREE_DIRECT_MAX)
		natsMsg_free(msg);
	else
		natsMsg_Destroy(msg);
}

#define TAKEN_MAX 1024 /* one read of nats.c's buffer holds fewer */

static struct {
	pthread_t loop;      /* the thread that runs the loop */
	bool on;             /* the filter is installed on connections */
	natsMsg *msg[TAKEN_MAX];
	size_t n;
	struct event *drain; /* for a parse that was not a read event's */
	bool in_read;        /* evlink_cb drains after the read */
	/* Order (on the present connection only): messages let through,
	 * those of them posted to the mailbox (or dropped by a callback),
	 * and what nats.c dropped without a word. */
	_Atomic(natsConnection *) nc;
	uint64_t passed;
	_Atomic uint64_t posted;
	uint64_t dropped;
	uint64_t rtt_seq; /* the probe's answer, let through as this one */
} T;

/* From nats.c's delivery thread (mailbox_post, under its lock), once a
 * message of nc is in the mailbox or dropped. */
uint64_t link_msg_posted(natsConnection *nc)
{
	if (nc && nc == atomic_load(&T.nc))
		return atomic_fetch_add(&T.posted, 1) + 1;
	return 0;
}

/* Whether nothing let through is still on its way to the loop. */
static bool nothing_in_flight(void)
{
	/* posted first: mailbox_post queues a mail, then counts it. */
	uint64_t posted = atomic_load(&T.posted);
	return T.passed == posted + T.dropped && mailbox_idle();
}

/* The probe's answer let through is dispatched: all let through before
 * it were dispatched or dropped, and mailbox_post stamped it with the
 * count posted up to it, so its position less that count is what nats.c
 * dropped before it. A copy other than the one whose position was kept
 * can only come later, and claim fewer drops than there were. */
static void order_settle(const struct mail *m)
{
	/* m->posted: all posted up to and with the probe (one worker, in
	 * order), whatever was let through after it. */
	if (T.rtt_seq && m && m->nc == atomic_load(&T.nc) && m->posted &&
	    m->posted <= T.rtt_seq)
		T.dropped = T.rtt_seq - m->posted;
	T.rtt_seq = 0;
}

static void order_reset(natsConnection *nc)
{
	atomic_store(&T.nc, nc);
	T.passed = T.dropped = T.rtt_seq = 0;
	atomic_store(&T.posted, 0);
}

static void inbox_msg(natsMsg *msg, uint64_t sub_token, const struct mail *m);

static void taken_drain(void)
{
	/* A reply's callback may parse nothing (nats.c is not re-entered
	 * from here), so no message joins while this runs. */
	size_t n = T.n;
	T.n = 0;
	L.info.replies_loop += n;
	for (size_t i = 0; i < n; i++)
		inbox_msg(T.msg[i], 0, NULL);
	if (n)
		control_flush();
}

static void taken_drain_cb(evutil_socket_t fd, short what, void *arg)
{
	taken_drain();
}

static void link_filter(natsConnection *nc, natsMsg **msgp, void *closure)
{
	natsMsg *msg = *msgp;
	if (!pthread_equal(pthread_self(), T.loop) || nc != L.nc)
		return;
	const char *subj = natsMsg_GetSubject(msg);
	size_t n = strlen(L.inbox);
	bool ours = subj && n && strncmp(subj, L.inbox, n) == 0 &&
	            subj[n] == '.';
	bool rtt = ours && L.rtt_pending && strcmp(subj + n + 1, L.rtt_tok) == 0;
	bool reply = rtt || (ours && link_inbox_kind(subj) == LINK_INBOX_REPLY);
	if (!reply || T.n == TAKEN_MAX || !nothing_in_flight()) {
		T.passed++; /* to nats.c's delivery thread */
		/* The first copy (an app's wildcard subscription brings a
		 * second) is the one whose dispatch settles: a later copy's
		 * count would claim drops among messages still on their way. */
		if (rtt && !T.rtt_seq)
			T.rtt_seq = T.passed;
		return;
	}
	T.msg[T.n++] = msg;
	*msgp = NULL; /* ours now */
	if (T.n == 1 && !T.in_read && T.drain)
		event_active(T.drain, EV_TIMEOUT, 0);
}

static void filter_install(natsConnection *nc)
{
	if (T.on)
		natsConn_setFilterWithClosure(nc, link_filter, NULL);
}

static void evlink_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evlink *e = arg;
	natsConnection *nc = e->nc; /* nats.c may detach (free e) in a read */
	if (what & EV_READ) {
		L.reads++;
		T.in_read = true;
		natsConnection_ProcessReadEvent(nc);
		T.in_read = false;
		taken_drain();
	}
	if (what & EV_WRITE)
		natsConnection_ProcessWriteEvent(nc);
}

static void evlink_free(struct evlink *e)
{
	if (e->read)
		event_free(e->read);
	if (e->write)
		event_free(e->write);
	if (e->flush)
		event_free(e->flush);
	free(e);
}

static void evlink_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evlink *e = arg;
	pthread_mutex_lock(&evlinks_mu);
	if (e->gone) {
		/* Detached on another thread, which frees it once this
		 * callback returns (event_free waits for it). */
		pthread_mutex_unlock(&evlinks_mu);
		return;
	}
	/* Only into a socket that has room, as if epoll had said so (under
	 * TLS, nats.c waits for the socket when a record does not fit, as
	 * it can after epoll too). nats.c closes the socket only after it
	 * stopped reading (under this lock). */
	struct pollfd pfd = {.fd = e->fd, .events = POLLOUT};
	bool room = !e->stopped && poll(&pfd, 1, 0) == 1 &&
	            (pfd.revents & POLLOUT);
	e->flushing = true; /* a detach from here on leaves e to us */
	pthread_mutex_unlock(&evlinks_mu);
	if (room)
		natsConnection_ProcessWriteEvent(e->nc);
	pthread_mutex_lock(&evlinks_mu);
	e->flushing = false;
	bool gone = e->gone;
	/* What did not go (or could not) goes when the socket has room;
	 * a removal (under this lock too) may have come meanwhile. */
	if (!gone && !e->stopped && atomic_load(&e->want_write))
		event_add(e->write, NULL);
	pthread_mutex_unlock(&evlinks_mu);
	if (gone)
		evlink_free(e);
}

/* Called by nats.c (from its threads too) when it has a socket. */
static natsStatus evlink_attach(void **data, void *loop, natsConnection *nc,
                                natsSock fd)
{
	struct evlink *e = *data;
	pthread_mutex_lock(&evlinks_mu);
	if (!e) {
		if (!(e = calloc(1, sizeof(*e)))) {
			pthread_mutex_unlock(&evlinks_mu);
			return NATS_NO_MEMORY;
		}
		e->nc = nc;
		e->next = evlinks;
		evlinks = e;
	} else {
		/* nats.c never reconnects a connection of ours; be safe. */
		event_free(e->read);
		event_free(e->write);
		event_free(e->flush);
	}
	e->fd = fd;
	e->read = event_new(loop, fd, EV_READ | EV_PERSIST, evlink_cb, e);
	e->write = event_new(loop, fd, EV_WRITE | EV_PERSIST, evlink_cb, e);
	e->flush = event_new(loop, -1, 0, evlink_flush_cb, e);
	*data = e;
	natsStatus s = !e->read || !e->write || !e->flush ||
	                       event_add(e->read, NULL) < 0
	                       ? NATS_NO_MEMORY
	                       : NATS_OK;
	pthread_mutex_unlock(&evlinks_mu);
	return s;
}

static natsStatus evlink_arm(struct event *ev, bool add)
{
	int r = add ? event_add(ev, NULL) : event_del_noblock(ev);
	return r == 0 ? NATS_OK : NATS_ERR;
}

static natsStatus evlink_read(void *data, bool add)
{
	struct evlink *e = data;
	/* nats.c stops reading right before it closes the socket. */
	pthread_mutex_lock(&evlinks_mu);
	e->stopped = !add;
	pthread_mutex_unlock(&evlinks_mu);
	return evlink_arm(e->read, add);
}

static natsStatus evlink_write(void *data, bool add)
{
	struct evlink *e = data;
	if (add && pthread_equal(pthread_self(), T.loop)) {
		atomic_store(&e->want_write, true);
		event_active(e->flush, EV_TIMEOUT, 0);
		return NATS_OK;
	}
	/* Under the lock evlink_flush_cb re-arms under, so that a removal
	 * from another thread is never undone by it. */
	pthread_mutex_lock(&evlinks_mu);
	atomic_store(&e->want_write, add);
	natsStatus s = evlink_arm(e->write, add);
	pthread_mutex_unlock(&evlinks_mu);
	return s;
}

static natsStatus evlink_detach(void *data)
{
	struct evlink *e = data;
	pthread_mutex_lock(&evlinks_mu);
	evlinks_remove(e);
	bool later = e->flushing;
	e->gone = true;
	pthread_mutex_unlock(&evlinks_mu);
	if (!later)
		evlink_free(e);
	return NATS_OK;
}

static uint64_t reconnect_delay(unsigned attempts)
{
	const struct config *c = L.conf;
	uint64_t d = c->nats_reconnect_wait_min_ms;
	for (unsigned i = 1; i < attempts && d < c->nats_reconnect_wait_max_ms; i++)
		d *= 2;
	if (d > c->nats_reconnect_wait_max_ms)
		d = c->nats_reconnect_wait_max_ms;
	/* Up to 10% jitter so a fleet does not reconnect in step. */
	return d + (uint64_t)rand() % (d / 10 + 1);
}

static void *connect_thread(void *arg)
{
	natsConnection *nc = NULL;
	natsStatus s = natsConnection_Connect(&nc, L.opts);
	/* The detail ("Authorization Violation") is in this thread's error
	 * stack only: keep it for the loop. */
	const char *why = nats_GetLastError(NULL);
	snprintf(L.connect_error, sizeof(L.connect_error), "%s",
	         why && *why ? why : natsStatus_GetText(s));
	struct mail m = {.kind = MAIL_LINK_READY, .ptr = nc, .arg = s};
	if (s != NATS_OK) {
		natsConnection_Destroy(nc);
		m.ptr = NULL;
	}
	/* Also here, for a shutdown that comes before the loop reads it. */
	L.connected_nc = m.ptr;
	mailbox_post(&m, false);
	return NULL;
}

/* ---- options ---- */

static int set_secret(natsStatus (*fn)(natsOptions *, const char *),
                      const char *path, const char *what)
{
	char *v = config_read_secret(path);
	if (!v) {
		log_warn("%s: %s %s", __func__, what, path);
		return -1;
	}
	natsStatus s = fn(L.opts, v);
	explicit_bzero(v, strlen(v));
	free(v);
	return s == NATS_OK ? 0 : -1;
}

static natsStatus set_password(natsOptions *o, const char *pw)
{
	return natsOptions_SetUserInfo(o, L.conf->nats_user, pw);
}

static int build_options(const struct config *c)
{
	natsOptions *o;
	if (natsOptions_Create(&o) != NATS_OK)
		return -1;
	L.opts = o;
	char name[128];
	if (!c->nats_name) {
		char host[64] = "localhost";
		gethostname(host, sizeof(host) - 1);
		snprintf(name, sizeof(name), "shipd@%s", host);
	}
	natsStatus s = NATS_OK;
	s |= natsOptions_SetServers(o, (const char **)c->nats_urls,
	                            c->n_nats_urls);
	s |= natsOptions_SetName(o, c->nats_name ? c->nats_name : name);
	/* shipd makes every connection new (see the top of this file). */
	s |= natsOptions_SetAllowReconnect(o, false);
	s |= natsOptions_SetTimeout(o, c->nats_connect_timeout_ms);
	s |= natsOptions_SetPingInterval(o, 10000);
	s |= natsOptions_SetMaxPingsOut(o, 3);
	s |= natsOptions_UseGlobalMessageDelivery(o, true);
	s |= natsOptions_SetDisconnectedCB(o, on_disconnected, NULL);
	s |= natsOptions_SetClosedCB(o, on_closed, NULL);
	s |= natsOptions_SetErrorHandler(o, on_error, NULL);
	s |= natsOptions_SetEventLoop(o, base, evlink_attach, evlink_read,
	                              evlink_write, evlink_detach);
	/* With the event loop, "send asap" only arms the write event: what a
	 * loop turn publishes goes out in one write, with no flusher thread
	 * (whose 1 ms nap would be added to every request). */
	s |= natsOptions_SetSendAsap(o, true);
	if (s != NATS_OK) {
		log_warnx("%s: cannot set NATS options", __func__);
		return -1;
	}
	if (c->nats_user && !c->nats_password_file &&
	    natsOptions_SetUserInfo(o, c->nats_user, NULL) != NATS_OK)
		return -1;
	if (c->nats_password_file &&
	    set_secret(set_password, c->nats_password_file, "password") < 0)
		return -1;
	if (c->nats_token_file &&
	    set_secret(natsOptions_SetToken, c->nats_token_file, "token") < 0)
		return -1;
	if (c->nats_nkey && natsOptions_SetNKeyFromSeed(o, c->nats_nkey,
	                                                c->nats_nkey_seed_file) !=
	                        NATS_OK) {
		log_warnx("%s: NKey seed %s: %s", __func__, c->nats_nkey_seed_file,
		          nats_GetLastError(NULL));
		return -1;
	}
	if (c->nats_creds_file && natsOptions_SetUserCredentialsFromFiles(
	                              o, c->nats_creds_file, NULL) != NATS_OK) {
		log_warnx("%s: credentials %s: %s", __func__, c->nats_creds_file,
		          nats_GetLastError(NULL));
		return -1;
	}
	bool tls = c->nats_tls || c->nats_tls_ca || c->nats_tls_cert;
	for (int i = 0; i < c->n_nats_urls; i++)
		if (strncmp(c->nats_urls[i], "tls://", 6) == 0)
			tls = true; /* nats.c 3.4.1 does not infer it */
	if (tls && natsOptions_SetSecure(o, true) != NATS_OK) {
		log_warnx("%s: TLS: %s", __func__, nats_GetLastError(NULL));
		return -1;
	}
	if (c->nats_tls_ca &&
	    natsOptions_LoadCATrustedCertificates(o, c->nats_tls_ca) != NATS_OK) {
		log_warnx("%s: TLS CA %s: %s", __func__, c->nats_tls_ca,
		          nats_GetLastError(NULL));
		return -1;
	}
	if (c->nats_tls_cert &&
	    natsOptions_LoadCertificatesChain(o, c->nats_tls_cert,
	                                      c->nats_tls_key) != NATS_OK) {
		log_warnx("%s: TLS certificate %s: %s", __func__,
		          c->nats_tls_cert, nats_GetLastError(NULL));
		return -1;
	}
	return 0;
}

/* ---- waits on the reply inbox ---- */

struct link_wait {
	uint64_t token;
	uint64_t secret; /* in its inbox: replies are not guessable */
	bool multi;
	/* JetStream delivers consumer messages under their own subjects, so
	 * a multi wait listens on an inbox of its own (<inbox>.m.<token>,
	 * which the single waits' <inbox>.* does not match: each message
	 * comes once) and its messages are routed by token, not subject. */
	natsSubscription *sub;
	link_reply_fn *fn;
	void *arg;
	struct event *timer;
	char inbox[96];
};

static struct ipc_idmap waits; /* token -> struct link_wait */
static uint64_t next_token;

/* 64 random bits from the kernel, read in blocks. An app that answers a
 * request sees that request's inbox; with these it cannot guess another's
 * (tokens alone are a counter). */
static uint64_t random64(void)
{
	static uint64_t pool[512];
	static size_t left;
	if (!left) {
		size_t got = 0;
		while (got < sizeof(pool)) {
			ssize_t n = getrandom((char *)pool + got, sizeof(pool) - got,
			                      0);
			if (n < 0 && errno != EINTR)
				fatal("%s: getrandom", __func__);
			if (n > 0)
				got += (size_t)n;
		}
		left = NITEMS(pool);
	}
	return pool[--left];
}

static void wait_free(struct link_wait *w)
{
	ipc_idmap_del(&waits, w->token);
	if (w->sub) {
		/* Its connection may be gone already: that ended it too. */
		natsSubscription_Unsubscribe(w->sub);
		natsSubscription_Destroy(w->sub);
	}
	event_free(w->timer);
	free(w);
}

static void wait_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct link_wait *w = arg;
	link_reply_fn *fn = w->fn;
	void *warg = w->arg;
	wait_free(w);
	fn(warg, NULL, NATS_TIMEOUT);
	control_flush();
}

void link_wait_rearm(struct link_wait *w, uint32_t timeout_ms)
{
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	evtimer_add(w->timer, &tv);
}

struct link_wait *link_wait_new(uint32_t timeout_ms, bool multi,
                                link_reply_fn *fn, void *arg)
{
	/* A multi wait needs its subscription now; a single one is only
	 * useful with a request sent now. */
	if (!L.nc)
		return NULL;
	struct link_wait *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->token = ++next_token;
	w->secret = random64();
	w->multi = multi;
	w->fn = fn;
	w->arg = arg;
	snprintf(w->inbox, sizeof(w->inbox), "%s.%s%" PRIu64 "x%016" PRIx64,
	         L.inbox, multi ? "m." : "", w->token, w->secret);
	w->timer = evtimer_new(base, wait_timeout, w);
	if (!w->timer || ipc_idmap_put(&waits, w->token, w) < 0) {
		if (w->timer)
			event_free(w->timer);
		free(w);
		return NULL;
	}
	if (multi && natsConnection_Subscribe(&w->sub, L.nc, w->inbox, on_wait_msg,
	                                      (void *)(uintptr_t)w->token) !=
	                     NATS_OK) {
		wait_free(w);
		return NULL;
	}
	if (w->sub)
		natsSubscription_SetPendingLimits(w->sub, -1, -1);
	link_wait_rearm(w, timeout_ms);
	return w;
}

void link_wait_retarget(struct link_wait *w, link_reply_fn *fn, void *arg)
{
	w->fn = fn;
	w->arg = arg;
}

const char *link_wait_inbox(const struct link_wait *w)
{
	return w->inbox;
}

void link_wait_cancel(struct link_wait *w)
{
	if (w)
		wait_free(w);
}

static void wait_reply(uint64_t token, natsMsg *msg)
{
	struct link_wait *w = ipc_idmap_get(&waits, token);
	if (!w) {
		link_msg_destroy(msg); /* late: timed out or cancelled */
		return;
	}
	link_reply_fn *fn = w->fn;
	void *arg = w->arg;
	natsStatus st = NATS_OK;
	if (natsMsg_IsNoResponders(msg)) {
		link_msg_destroy(msg);
		msg = NULL;
		st = NATS_NO_RESPONDERS;
	}
	if (!w->multi || st != NATS_OK)
		wait_free(w);
	fn(arg, msg, st);
}

/* The link went down: nothing in flight can be answered any more. A
 * callback may cancel other waits (a watch ends with its consumer's
 * creation): each is looked up again by its token before it is failed,
 * and waits made during the failing (a retry) are left to their timer. */
static void waits_fail(void)
{
	uint64_t last = next_token, batch[256];
	size_t n;
	do {
		size_t pos = 0;
		uint64_t token;
		n = 0;
		while (n < 256 && ipc_idmap_next(&waits, &pos, &token, NULL))
			if (token <= last)
				batch[n++] = token;
		for (size_t i = 0; i < n; i++) {
			struct link_wait *w = ipc_idmap_get(&waits, batch[i]);
			if (!w)
				continue; /* cancelled by an earlier callback */
			link_reply_fn *fn = w->fn;
			void *arg = w->arg;
			wait_free(w);
			fn(arg, NULL, NATS_CONNECTION_DISCONNECTED);
		}
	} while (n == 256);
}

/* ---- publishes kept while the link is down ---- */

natsStatus link_hold(natsMsg *msg)
{
	size_t bytes = (size_t)natsMsg_GetDataLength(msg) +
	               strlen(natsMsg_GetSubject(msg)) + 128;
	const char **keys = NULL;
	int nk = 0;
	if (natsMsgHeader_Keys(msg, &keys, &nk) == NATS_OK) {
		/* Headers cost about what their keys and values do. */
		for (int i = 0; i < nk; i++) {
			const char *v = NULL;
			natsMsgHeader_Get(msg, keys[i], &v);
			bytes += strlen(keys[i]) + (v ? strlen(v) : 0) + 4;
		}
		free((void *)keys);
	}
	struct held *h;
	if (L.held_bytes + bytes > L.conf->nats_reconnect_buffer ||
	    !(h = malloc(sizeof(*h)))) {
		link_msg_destroy(msg);
		return NATS_INSUFFICIENT_BUFFER;
	}
	h->msg = msg;
	h->bytes = bytes;
	TAILQ_INSERT_TAIL(&L.held, h, entry);
	L.held_bytes += bytes;
	return NATS_OK;
}

size_t link_held_bytes(void)
{
	return L.held_bytes;
}

/* Send what was kept, in order, before anything else goes out. */
static void held_send(void)
{
	struct held *h;
	uint64_t sent = 0, failed = 0;
	while ((h = TAILQ_FIRST(&L.held))) {
		TAILQ_REMOVE(&L.held, h, entry);
		L.held_bytes -= h->bytes;
		if (L.nc && natsConnection_PublishMsg(L.nc, h->msg) == NATS_OK)
			sent++;
		else
			failed++; /* over this server's max_payload */
		link_msg_destroy(h->msg);
		free(h);
	}
	L.held_dropped += failed;
	if (sent || failed)
		log_info("sent %" PRIu64 " publishes kept while NATS was away"
		         "%s%" PRIu64 " refused by the server",
		         sent, failed ? "; " : "; none ", failed);
}

static void held_free(void)
{
	struct held *h;
	while ((h = TAILQ_FIRST(&L.held))) {
		TAILQ_REMOVE(&L.held, h, entry);
		link_msg_destroy(h->msg);
		free(h);
	}
	L.held_bytes = 0;
}

/* ---- loop side ---- */

static void start_connect(void)
{
	L.connect_error[0] = '\0';
	if (pthread_create(&L.thread, NULL, connect_thread, NULL) != 0)
		fatal("%s: pthread_create", __func__);
	L.connecting = true;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	if (!L.stopping)
		start_connect();
}

static void schedule_connect(void)
{
	uint64_t ms = L.attempts ? reconnect_delay(L.attempts) : 0;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000)};
	evtimer_add(L.retry_timer, &tv);
}

static void set_state(enum link_state st)
{
	if (L.info.state != st) {
		L.info.state = st;
		L.info.changed_ms = now_ms();
	}
}

static void probe_send(void)
{
	/* A message to our own inbox comes back after one server round
	 * trip: an RTT that never waits on the loop, and proof that the
	 * link reads. */
	char subj[96];
	snprintf(L.rtt_tok, sizeof(L.rtt_tok), "rtt%016" PRIx64, random64());
	T.rtt_seq = 0; /* an earlier probe's answer settles nothing now */
	snprintf(subj, sizeof(subj), "%s.%s", L.inbox, L.rtt_tok);
	L.rtt_sent_us = now_us();
	if (natsConnection_Publish(L.nc, subj, NULL, 0) == NATS_OK)
		L.rtt_pending = true;
}

static void link_lost(const char *why);

static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
	if (!L.nc)
		return;
	uint64_t now = now_us();
	uint64_t seen = mailbox_msgs_seen() + L.info.replies_loop;
	size_t buffered = link_buffered();
	/* Alive: messages parsed, bytes read, or bytes the server took since
	 * the last tick (a slow link moving a large message or a backlog is
	 * slow, not dead); or the probe's answer (inbox_msg). */
	if (seen != L.msgs_seen || L.reads != L.reads_seen ||
	    buffered < L.buffered)
		L.alive_us = now;
	L.msgs_seen = seen;
	L.reads_seen = L.reads;
	L.buffered = buffered;
	if (now - L.alive_us >= (uint64_t)L.conf->nats_dead_after_ms * 1000) {
		char why[128];
		snprintf(why, sizeof(why),
		         "no answer from the server for %" PRIu64 " ms",
		         (now - L.alive_us) / 1000);
		link_lost(why);
		control_flush();
		return;
	}
	/* One probe at a time; one lost (a server that refused it) is
	 * replaced, or the RTT and the settling of drops would stop. */
	if (!L.rtt_pending || now - L.rtt_sent_us >= PROBE_RESEND_US)
		probe_send();
}

void link_url_redact(const char *url, char *out, size_t size)
{
	/* scheme://user:password@host or scheme://token@host: the part
	 * before '@' never leaves shipd. */
	const char *scheme = strstr(url, "://");
	const char *start = scheme ? scheme + 3 : url;
	const char *at = strchr(start, '@');
	const char *slash = strchr(start, '/');
	if (!at || (slash && slash < at)) {
		snprintf(out, size, "%s", url);
		return;
	}
	snprintf(out, size, "%.*s***%s", (int)(start - url), url, at);
}

static void refresh_info(void)
{
	char buf[256];
	if (natsConnection_GetConnectedUrl(L.nc, buf, sizeof(buf)) == NATS_OK &&
	    buf[0])
		link_url_redact(buf, L.info.url, sizeof(L.info.url));
	if (natsConnection_GetConnectedServerId(L.nc, buf, sizeof(buf)) ==
	        NATS_OK &&
	    buf[0])
		snprintf(L.info.server_id, sizeof(L.info.server_id), "%.63s", buf);
	L.info.max_payload = natsConnection_GetMaxPayload(L.nc);
}

static void dying_add(natsConnection *nc)
{
	for (int i = 0; i < MAX_DYING; i++)
		if (!L.dying[i]) {
			L.dying[i] = nc;
			return;
		}
	/* Never expected: nats.c closes a shut-down socket's connection on
	 * its next read. Destroying it now may wait for a flush. */
	log_warnx("%s: too many NATS connections closing", __func__);
	natsConnection_Destroy(nc);
}

static bool dying_end(natsConnection *nc)
{
	for (int i = 0; i < MAX_DYING; i++)
		if (L.dying[i] == nc) {
			L.dying[i] = NULL;
			natsConnection_Destroy(nc);
			return true;
		}
	return false;
}

/* The connection is gone or useless: end everything on it, and make a
 * new one. */
static void link_lost(const char *why)
{
	natsConnection *nc = L.nc;
	enum link_state old = L.info.state;
	L.nc = NULL;
	L.rtt_pending = false;
	snprintf(L.info.last_error, sizeof(L.info.last_error), "%s", why);
	set_state(L.ever_connected ? LINK_RECONNECTING : LINK_CONNECTING);
	log_warnx("NATS link %s (was %s): %s", link_state_name(L.info.state),
	          link_state_name(old), why);
	natsSubscription_Destroy(L.inbox_sub);
	L.inbox_sub = NULL;
	waits_fail();
	blocks_link_changed(false);
	if (natsConnection_Status(nc) == NATS_CONN_STATUS_CLOSED) {
		natsConnection_Destroy(nc);
	} else {
		evlink_shutdown(nc);
		dying_add(nc);
	}
	L.attempts = 0;
	schedule_connect();
}

static void connect_failed(const char *why)
{
	L.attempts++;
	snprintf(L.info.last_error, sizeof(L.info.last_error), "%s", why);
	/* The first failure says it; the next ones are the same story. */
	if (L.attempts == 1)
		log_warnx("connect to NATS: %s; retrying", why);
	else
		log_debug("connect to NATS (attempt %u): %s", L.attempts, why);
	schedule_connect();
}

static void link_ready(struct mail *m)
{
	pthread_join(L.thread, NULL);
	L.connecting = false;
	L.connected_nc = NULL; /* the loop has it now */
	if (!m->ptr) {
		connect_failed(L.connect_error);
		return;
	}
	natsConnection *nc = m->ptr;
	if (!L.inbox[0]) {
		char *inbox = NULL;
		if (natsInbox_Create(&inbox) != NATS_OK)
			fatalx("%s: cannot create an inbox", __func__);
		snprintf(L.inbox, sizeof(L.inbox), "%s", inbox);
		natsInbox_Destroy(inbox);
	}
	char subj[96];
	snprintf(subj, sizeof(subj), "%s.*", L.inbox);
	order_reset(nc);
	filter_install(nc);
	if (natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED ||
	    natsConnection_Subscribe(&L.inbox_sub, nc, subj, on_inbox_msg,
	                             NULL) != NATS_OK) {
		/* Lost already, or nats.c gave up on it (an authorization
		 * error closes it): say why, and start over. */
		const char *e = NULL;
		char why[256];
		natsConnection_GetLastError(nc, &e);
		snprintf(why, sizeof(why), "%s",
		         e && *e ? e : "connection lost right after connecting");
		natsSubscription_Destroy(L.inbox_sub);
		L.inbox_sub = NULL;
		if (natsConnection_Status(nc) == NATS_CONN_STATUS_CLOSED) {
			natsConnection_Destroy(nc);
		} else {
			evlink_shutdown(nc);
			dying_add(nc);
		}
		connect_failed(why);
		return;
	}
	natsSubscription_SetPendingLimits(L.inbox_sub, -1, -1);
	L.nc = nc;
	if (L.ever_connected)
		L.info.reconnects++;
	L.ever_connected = true;
	L.attempts = 0;
	L.alive_us = now_us();
	L.msgs_seen = mailbox_msgs_seen() + L.info.replies_loop;
	L.reads_seen = L.reads;
	L.buffered = 0;
	set_state(LINK_CONNECTED);
	refresh_info();
	log_info("connected to %s%s", L.info.url,
	         L.info.reconnects ? " (reconnected)" : "");
	probe_send();
	/* Subscriptions first, as nats.c does on a reconnect: an app that
	 * published to itself while NATS was away gets its message. */
	blocks_link_changed(true);
	held_send();
	control_flush();
}

static void link_event(natsConnection *nc, enum link_event ev, natsStatus err)
{
	if (ev == LINK_EV_ERROR) {
		if (nc == L.nc)
			snprintf(L.info.last_error, sizeof(L.info.last_error),
			         "%s", natsStatus_GetText(err));
		log_debug("%s: NATS: %s", __func__, natsStatus_GetText(err));
		return;
	}
	if (ev == LINK_EV_CLOSED && dying_end(nc))
		return;
	if (!nc || nc != L.nc || L.stopping)
		return; /* an old connection's news, or shipd stops */
	const char *e = NULL;
	char why[256];
	natsConnection_GetLastError(nc, &e);
	snprintf(why, sizeof(why), "connection lost%s%s", e && *e ? ": " : "",
	         e && *e ? e : "");
	link_lost(why);
	if (ev == LINK_EV_CLOSED)
		dying_end(nc); /* closed already: link_lost kept it */
	control_flush();
}

/* "<token>x<secret in 16 hex digits>", the last token of a reply inbox. */
static bool reply_token(const char *tok, uint64_t *token, uint64_t *secret)
{
	char *end;
	if (*tok < '1' || *tok > '9')
		return false;
	errno = 0;
	*token = strtoull(tok, &end, 10);
	if (errno || *end != 'x' || strlen(end + 1) != 16 ||
	    strspn(end + 1, "0123456789abcdef") != 16)
		return false;
	*secret = strtoull(end + 1, NULL, 16);
	return true;
}

enum link_inbox_kind link_inbox_kind(const char *subject)
{
	size_t n = strlen(L.inbox);
	if (!n || strncmp(subject, L.inbox, n) != 0 ||
	    (subject[n] != '.' && subject[n] != '\0'))
		return LINK_INBOX_NONE;
	uint64_t token, secret;
	if (subject[n] == '.' && reply_token(subject + n + 1, &token, &secret))
		return LINK_INBOX_REPLY;
	if (!strncmp(subject + n, ".m.", 3) &&
	    reply_token(subject + n + 3, &token, &secret))
		return LINK_INBOX_WAIT;
	return LINK_INBOX_OTHER;
}

static void inbox_msg(natsMsg *msg, uint64_t sub_token, const struct mail *m)
{
	if (sub_token) {
		wait_reply(sub_token, msg);
		return;
	}
	const char *subj = natsMsg_GetSubject(msg);
	const char *tok = subj + strlen(L.inbox);
	if (strncmp(subj, L.inbox, strlen(L.inbox)) != 0 || *tok != '.') {
		link_msg_destroy(msg);
		return;
	}
	tok++;
	if (strncmp(tok, "rtt", 3) == 0) {
		if (!L.rtt_pending || strcmp(tok, L.rtt_tok) != 0) {
			link_msg_destroy(msg); /* an old probe's, or forged */
			return;
		}
		order_settle(m);
		if (L.rtt_pending) {
			L.info.rtt_us = now_us() - L.rtt_sent_us;
			L.alive_us = now_us();
		}
		L.rtt_pending = false;
		link_msg_destroy(msg);
		return;
	}
	uint64_t token, secret;
	if (!reply_token(tok, &token, &secret)) {
		link_msg_destroy(msg);
		return;
	}
	struct link_wait *w = ipc_idmap_get(&waits, token);
	if (!w || w->multi || w->secret != secret) {
		link_msg_destroy(msg); /* late, or forged */
		return;
	}
	wait_reply(token, msg);
}

void link_handle_mail(struct mail *m)
{
	switch (m->kind) {
	case MAIL_LINK_READY:
		link_ready(m);
		break;
	case MAIL_LINK_EVENT:
		link_event(m->ptr, (enum link_event)(m->arg & 0xff),
		           (natsStatus)(m->arg >> 8));
		break;
	case MAIL_INBOX_MSG:
		if (!m->arg)
			L.info.replies_mailbox++;
		inbox_msg(m->msg, m->arg, m);
		break;
	default:
		break;
	}
}

int link_start(const struct config *c)
{
	L.conf = c;
	L.info.state = LINK_CONNECTING;
	L.info.changed_ms = now_ms();
	link_url_redact(c->nats_urls[0], L.info.url, sizeof(L.info.url));
	if (build_options(c) < 0)
		return -1;
	L.retry_timer = evtimer_new(base, retry_cb, NULL);
	T.loop = pthread_self();
	T.drain = event_new(base, -1, 0, taken_drain_cb, NULL);
	int v = nats_GetVersionNumber();
	bool known = v >> 16 == 3 && (v >> 8 & 0xff) >= 4;
	T.on = known && natsConn_setFilterWithClosure && T.drain &&
	       !getenv("SHIPD_NO_REPLY_FILTER");
	free_direct = known && natsMsg_free && !getenv("SHIPD_NO_DIRECT_FREE");
	L.probe_timer = event_new(base, -1, EV_PERSIST, probe_cb, NULL);
	struct timeval tv = {PROBE_INTERVAL_MS / 1000,
	                     PROBE_INTERVAL_MS % 1000 * 1000};
	if (!L.retry_timer || !L.probe_timer ||
	    evtimer_add(L.probe_timer, &tv) < 0)
		return -1;
	start_connect();
	return 0;
}

static atomic_bool closed;

static void *close_thread(void *arg)
{
	natsConnection *nc = arg;
	if (natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED)
		natsConnection_FlushTimeout(nc, 1000);
	natsConnection_Close(nc);
	atomic_store(&closed, true);
	return NULL;
}

static bool dying_left(void)
{
	for (int i = 0; i < MAX_DYING; i++)
		if (L.dying[i])
			return true;
	return false;
}

void link_stop(void)
{
	/* No reconnect, no probe, no link news from here on. */
	L.stopping = true;
	if (L.retry_timer)
		evtimer_del(L.retry_timer);
	if (L.probe_timer)
		evtimer_del(L.probe_timer);
	if (L.connecting) {
		/* Bounded by the connect timeout. Its mail will not be read:
		 * close what it made here. */
		pthread_join(L.thread, NULL);
		L.connecting = false;
		natsConnection_Destroy(L.connected_nc);
		L.connected_nc = NULL;
	}
	/* Connections being dropped close on their next read: let the loop
	 * read, so that destroying them does not wait for a flush. */
	for (int i = 0; i < 2000 && dying_left(); i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	if (!L.nc)
		return;
	natsSubscription_Destroy(L.inbox_sub);
	L.inbox_sub = NULL;
	/* Flushing and closing wait for the server (a PONG) and for writes
	 * that only the loop does: do them on another thread while the loop
	 * turns, for at most about two seconds. */
	pthread_t t;
	if (pthread_create(&t, NULL, close_thread, L.nc) != 0) {
		natsConnection_Close(L.nc);
		return;
	}
	for (int i = 0; i < 2000 && !atomic_load(&closed); i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	pthread_join(t, NULL);
}

void link_finish(void)
{
	/* The building blocks cancelled their own waits; what is left is
	 * fire-and-forget (a consumer's delete, a draining pull): end them
	 * the usual way so their owners free what they hold. */
	waits_fail();
	ipc_idmap_finish(&waits);
	natsConnection_Destroy(L.nc);
	L.nc = NULL;
	for (int i = 0; i < MAX_DYING; i++) {
		natsConnection_Destroy(L.dying[i]);
		L.dying[i] = NULL;
	}
	held_free();
	for (size_t i = 0; i < T.n; i++)
		link_msg_destroy(T.msg[i]);
	T.n = 0;
	if (T.drain)
		event_free(T.drain);
	T.drain = NULL;
	natsOptions_Destroy(L.opts);
	L.opts = NULL;
	if (L.probe_timer)
		event_free(L.probe_timer);
	if (L.retry_timer)
		event_free(L.retry_timer);
	L.probe_timer = L.retry_timer = NULL;
}

size_t link_buffered(void)
{
	int n = L.nc ? natsConnection_Buffered(L.nc) : 0;
	return n > 0 ? (size_t)n : 0;
}

natsConnection *link_conn(void)
{
	return L.nc;
}

bool link_connected(void)
{
	return L.nc != NULL;
}

const struct link_info *link_info(void)
{
	return &L.info;
}

const char *link_inbox(void)
{
	return L.inbox;
}
