/* SPDX-License-Identifier: MIT */
/* The host's NATS connection: connect off the loop, reconnect forever,
 * report its state, and route the reply inbox. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shipd.h"


#define RTT_INTERVAL_MS 10000
#define CONNECT_RETRY_MS 1000

static struct {
	const struct config *conf;
	natsOptions *opts;
	natsConnection *nc;
	natsSubscription *inbox_sub;
	char inbox[64];
	struct link_info info;
	bool ever_connected;
	bool connecting; /* the connect thread runs */
	natsConnection *connected_nc; /* what it made, until the loop takes it */
	pthread_t thread;
	struct event *rtt_timer;
	struct event *retry_timer;
	uint64_t rtt_sent_us;
	bool rtt_pending;
	char connect_error[256]; /* written by the connect thread, read after */
} L;

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

static void post_event(enum link_event ev)
{
	struct mail m = {.kind = MAIL_LINK_EVENT, .arg = ev};
	mailbox_post(&m, false);
}

static void on_connected(natsConnection *nc, void *arg)
{
	post_event(LINK_EV_CONNECTED);
}

static void on_disconnected(natsConnection *nc, void *arg)
{
	post_event(LINK_EV_DISCONNECTED);
}

static void on_reconnected(natsConnection *nc, void *arg)
{
	post_event(LINK_EV_RECONNECTED);
}

static void on_closed(natsConnection *nc, void *arg)
{
	post_event(LINK_EV_CLOSED);
}

static void on_error(natsConnection *nc, natsSubscription *sub,
                     natsStatus err, void *arg)
{
	struct mail m = {.kind = MAIL_LINK_EVENT,
	                 .arg = (uint64_t)LINK_EV_ERROR | (uint64_t)err << 8};
	mailbox_post(&m, false);
}

static void on_wait_msg(natsConnection *nc, natsSubscription *sub,
                        natsMsg *msg, void *arg)
{
	struct mail m = {.kind = MAIL_INBOX_MSG, .msg = msg,
	                 .arg = (uint64_t)(uintptr_t)arg,
	                 .bytes = (size_t)natsMsg_GetDataLength(msg)};
	mailbox_post(&m, false);
}

/* ---- nats.c on our loop ----
 *
 * nats.c reads and writes its socket from our libevent loop (its event-loop
 * mode): what a loop turn publishes goes out in one write, and what arrives
 * is parsed here; messages still go through nats.c's delivery threads (a
 * synchronous inbox would save that hand-off, but nats.c 3.4.1 swallows a
 * "no responders" status there, and with it which request it was for). */

struct evlink {
	natsConnection *nc;
	struct event *read;
	struct event *write;
};

static void on_inbox_msg(natsConnection *nc, natsSubscription *sub,
                         natsMsg *msg, void *arg)
{
	struct mail m = {.kind = MAIL_INBOX_MSG, .msg = msg,
	                 .bytes = (size_t)natsMsg_GetDataLength(msg)};
	mailbox_post(&m, false);
}

static void evlink_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evlink *e = arg;
	if (what & EV_READ)
		natsConnection_ProcessReadEvent(e->nc);
	if (what & EV_WRITE)
		natsConnection_ProcessWriteEvent(e->nc);
}

/* Called by nats.c (from its threads too) when it has a socket. */
static natsStatus evlink_attach(void **data, void *loop, natsConnection *nc,
                                natsSock fd)
{
	struct evlink *e = *data;
	if (!e) {
		if (!(e = calloc(1, sizeof(*e))))
			return NATS_NO_MEMORY;
		e->nc = nc;
	} else {
		/* A reconnect: a new socket. */
		event_free(e->read);
		event_free(e->write);
	}
	e->read = event_new(loop, fd, EV_READ | EV_PERSIST, evlink_cb, e);
	e->write = event_new(loop, fd, EV_WRITE | EV_PERSIST, evlink_cb, e);
	if (!e->read || !e->write || event_add(e->read, NULL) < 0)
		return NATS_NO_MEMORY;
	*data = e;
	return NATS_OK;
}

static natsStatus evlink_arm(struct event *ev, bool add)
{
	int r = add ? event_add(ev, NULL) : event_del_noblock(ev);
	return r == 0 ? NATS_OK : NATS_ERR;
}

static natsStatus evlink_read(void *data, bool add)
{
	return evlink_arm(((struct evlink *)data)->read, add);
}

static natsStatus evlink_write(void *data, bool add)
{
	return evlink_arm(((struct evlink *)data)->write, add);
}

static natsStatus evlink_detach(void *data)
{
	struct evlink *e = data;
	event_free(e->read);
	event_free(e->write);
	free(e);
	return NATS_OK;
}

static int64_t reconnect_delay(natsConnection *nc, int attempts, void *arg)
{
	const struct config *c = L.conf;
	uint64_t d = c->nats_reconnect_wait_min_ms;
	for (int i = 1; i < attempts && d < c->nats_reconnect_wait_max_ms; i++)
		d *= 2;
	if (d > c->nats_reconnect_wait_max_ms)
		d = c->nats_reconnect_wait_max_ms;
	/* Up to 10% jitter so a fleet does not reconnect in step. */
	return (int64_t)(d + (uint64_t)rand() % (d / 10 + 1));
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
	if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
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
	s |= natsOptions_SetMaxReconnect(o, -1);
	s |= natsOptions_SetCustomReconnectDelay(o, reconnect_delay, NULL);
	s |= natsOptions_SetReconnectBufSize(o, (int)c->nats_reconnect_buffer);
	s |= natsOptions_SetRetryOnFailedConnect(o, true, on_connected, NULL);
	s |= natsOptions_SetTimeout(o, c->nats_connect_timeout_ms);
	s |= natsOptions_SetPingInterval(o, 10000);
	s |= natsOptions_SetMaxPingsOut(o, 3);
	s |= natsOptions_UseGlobalMessageDelivery(o, true);
	s |= natsOptions_SetDisconnectedCB(o, on_disconnected, NULL);
	s |= natsOptions_SetReconnectedCB(o, on_reconnected, NULL);
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
	bool multi;
	/* JetStream delivers consumer messages under their own subjects, so
	 * a multi wait listens on its inbox with a subscription of its own
	 * and its messages are routed by token, not by subject. */
	natsSubscription *sub;
	link_reply_fn *fn;
	void *arg;
	struct event *timer;
	char inbox[96];
};

static struct ipc_idmap waits; /* token -> struct link_wait */
static uint64_t next_token;

static void wait_free(struct link_wait *w)
{
	ipc_idmap_del(&waits, w->token);
	if (w->sub) {
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
	struct link_wait *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->token = ++next_token;
	w->multi = multi;
	w->fn = fn;
	w->arg = arg;
	snprintf(w->inbox, sizeof(w->inbox), "%s.%" PRIu64, L.inbox, w->token);
	w->timer = evtimer_new(base, wait_timeout, w);
	if (!w->timer || ipc_idmap_put(&waits, w->token, w) < 0) {
		if (w->timer)
			event_free(w->timer);
		free(w);
		return NULL;
	}
	if (multi && (!L.nc ||
	              natsConnection_Subscribe(&w->sub, L.nc, w->inbox, on_wait_msg,
	                                       (void *)(uintptr_t)w->token) !=
	                      NATS_OK)) {
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

static void wait_reply(uint64_t token, natsMsg *msg, bool via_sub)
{
	struct link_wait *w = ipc_idmap_get(&waits, token);
	/* A wait with its own subscription also matches the inbox wildcard:
	 * take each message once, from the subscription. */
	if (!w || (w->sub && !via_sub)) {
		natsMsg_Destroy(msg); /* late: timed out or cancelled */
		return;
	}
	link_reply_fn *fn = w->fn;
	void *arg = w->arg;
	natsStatus st = NATS_OK;
	if (natsMsg_IsNoResponders(msg)) {
		natsMsg_Destroy(msg);
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

/* ---- loop side ---- */

static void start_connect(void)
{
	if (pthread_create(&L.thread, NULL, connect_thread, NULL) != 0)
		fatal("%s: pthread_create", __func__);
	L.connecting = true;
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	start_connect();
}

static void set_state(enum link_state st)
{
	if (L.info.state != st) {
		L.info.state = st;
		L.info.changed_ms = now_ms();
	}
}

static void measure_rtt(void)
{
	if (!L.nc || L.rtt_pending || L.info.state != LINK_CONNECTED)
		return;
	/* A message to our own inbox comes back after one server round trip:
	 * an RTT that never waits on the loop. */
	char subj[96];
	snprintf(subj, sizeof(subj), "%s.rtt", L.inbox);
	L.rtt_sent_us = now_us();
	if (natsConnection_Publish(L.nc, subj, NULL, 0) == NATS_OK)
		L.rtt_pending = true;
}

static void rtt_cb(evutil_socket_t fd, short what, void *arg)
{
	L.rtt_pending = false; /* a lost probe must not stop the next */
	measure_rtt();
}

static void refresh_info(void)
{
	natsStatistics *st;
	char buf[256];
	if (natsConnection_GetConnectedUrl(L.nc, buf, sizeof(buf)) == NATS_OK &&
	    buf[0])
		snprintf(L.info.url, sizeof(L.info.url), "%s", buf);
	if (natsConnection_GetConnectedServerId(L.nc, buf, sizeof(buf)) ==
	        NATS_OK &&
	    buf[0])
		snprintf(L.info.server_id, sizeof(L.info.server_id), "%.63s", buf);
	L.info.max_payload = natsConnection_GetMaxPayload(L.nc);
	if (natsStatistics_Create(&st) == NATS_OK) {
		if (natsConnection_GetStats(L.nc, st) == NATS_OK)
			natsStatistics_GetCounts(st, NULL, NULL, NULL, NULL,
			                         &L.info.reconnects);
		natsStatistics_Destroy(st);
	}
}

static void link_ready(struct mail *m)
{
	pthread_join(L.thread, NULL);
	L.connecting = false;
	L.connected_nc = NULL; /* the loop has it now */
	natsStatus s = (natsStatus)m->arg;
	if (!m->ptr) {
		snprintf(L.info.last_error, sizeof(L.info.last_error), "%s",
		         L.connect_error);
		log_warnx("%s: connect to NATS: %s; retrying", __func__,
		          L.connect_error);
		struct timeval tv = {CONNECT_RETRY_MS / 1000,
		                     CONNECT_RETRY_MS % 1000 * 1000};
		evtimer_add(L.retry_timer, &tv);
		return;
	}
	natsConnection *nc = m->ptr;
	char *inbox = NULL;
	if (natsInbox_Create(&inbox) != NATS_OK)
		fatalx("%s: cannot create an inbox", __func__);
	snprintf(L.inbox, sizeof(L.inbox), "%s", inbox);
	natsInbox_Destroy(inbox);
	char subj[96];
	snprintf(subj, sizeof(subj), "%s.*", L.inbox);
	if (natsConnection_Subscribe(&L.inbox_sub, nc, subj, on_inbox_msg,
	                             NULL) != NATS_OK) {
		/* nats.c gave up on this connection (an authorization error
		 * closes it): say why, and start over later. */
		const char *e = NULL;
		natsConnection_GetLastError(nc, &e);
		snprintf(L.info.last_error, sizeof(L.info.last_error), "%s",
		         e && *e ? e : L.connect_error);
		log_warnx("%s: NATS connection failed: %s; retrying", __func__,
		          L.info.last_error);
		natsConnection_Destroy(nc);
		struct timeval tv = {CONNECT_RETRY_MS / 1000,
		                     CONNECT_RETRY_MS % 1000 * 1000};
		evtimer_add(L.retry_timer, &tv);
		return;
	}
	L.nc = nc;
	natsSubscription_SetPendingLimits(L.inbox_sub, -1, -1);
	if (s == NATS_OK) {
		L.ever_connected = true;
		set_state(LINK_CONNECTED);
		refresh_info();
		log_info("connected to %s", L.info.url);
		measure_rtt();
	} else {
		log_warnx("NATS at %s not reachable yet; retrying in the background",
		          L.conf->nats_urls[0]);
	}
	pubsub_link_ready();
	if (s == NATS_OK)
		blocks_link_changed(true);
}

static void link_event(enum link_event ev, natsStatus err)
{
	if (ev == LINK_EV_ERROR) {
		snprintf(L.info.last_error, sizeof(L.info.last_error), "%s",
		         natsStatus_GetText(err));
		log_debug("%s: NATS: %s", __func__, natsStatus_GetText(err));
		return;
	}
	if (!L.nc)
		return;
	/* Callbacks run late; trust the connection's present state. */
	natsConnStatus cs = natsConnection_Status(L.nc);
	enum link_state old = L.info.state;
	if (cs == NATS_CONN_STATUS_CONNECTED) {
		L.ever_connected = true;
		set_state(LINK_CONNECTED);
		refresh_info();
	} else if (cs == NATS_CONN_STATUS_CLOSED) {
		set_state(LINK_CLOSED);
	} else {
		set_state(L.ever_connected ? LINK_RECONNECTING : LINK_CONNECTING);
	}
	if (old == L.info.state)
		return;
	if (L.info.state == LINK_CONNECTED) {
		log_info("connected to %s (%s)", L.info.url,
		         ev == LINK_EV_RECONNECTED ? "reconnected" : "first time");
		L.rtt_pending = false;
		measure_rtt();
	} else {
		const char *e = NULL;
		natsConnection_GetLastError(L.nc, &e);
		if (e && *e)
			snprintf(L.info.last_error, sizeof(L.info.last_error),
			         "%s", e);
		log_warnx("NATS link %s (was %s)", link_state_name(L.info.state),
		          link_state_name(old));
	}
	if (L.info.state != LINK_CONNECTED)
		waits_fail();
	blocks_link_changed(L.info.state == LINK_CONNECTED);
	control_flush();
}

static void inbox_msg(natsMsg *msg, uint64_t sub_token)
{
	if (sub_token) {
		wait_reply(sub_token, msg, true);
		return;
	}
	const char *subj = natsMsg_GetSubject(msg);
	const char *tok = subj + strlen(L.inbox);
	if (strncmp(subj, L.inbox, strlen(L.inbox)) != 0 || *tok != '.') {
		natsMsg_Destroy(msg);
		return;
	}
	tok++;
	if (strcmp(tok, "rtt") == 0) {
		if (L.rtt_pending)
			L.info.rtt_us = now_us() - L.rtt_sent_us;
		L.rtt_pending = false;
		natsMsg_Destroy(msg);
		return;
	}
	char *end;
	uint64_t token = strtoull(tok, &end, 10);
	if (*end != '\0' || token == 0) {
		natsMsg_Destroy(msg);
		return;
	}
	wait_reply(token, msg, false);
}

void link_handle_mail(struct mail *m)
{
	switch (m->kind) {
	case MAIL_LINK_READY:
		link_ready(m);
		break;
	case MAIL_LINK_EVENT:
		link_event((enum link_event)(m->arg & 0xff),
		           (natsStatus)(m->arg >> 8));
		break;
	case MAIL_INBOX_MSG:
		inbox_msg(m->msg, m->arg);
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
	snprintf(L.info.url, sizeof(L.info.url), "%s", c->nats_urls[0]);
	if (build_options(c) < 0)
		return -1;
	L.retry_timer = evtimer_new(base, retry_cb, NULL);
	L.rtt_timer = event_new(base, -1, EV_PERSIST, rtt_cb, NULL);
	struct timeval tv = {RTT_INTERVAL_MS / 1000, 0};
	if (!L.retry_timer || !L.rtt_timer || evtimer_add(L.rtt_timer, &tv) < 0)
		return -1;
	start_connect();
	return 0;
}

static atomic_bool closed;

static void *close_thread(void *arg)
{
	if (natsConnection_Status(L.nc) == NATS_CONN_STATUS_CONNECTED)
		natsConnection_FlushTimeout(L.nc, 1000);
	natsConnection_Close(L.nc);
	atomic_store(&closed, true);
	return NULL;
}

void link_stop(void)
{
	if (L.connecting) {
		/* Bounded by the connect timeout. Its mail will not be read:
		 * close what it made here. */
		pthread_join(L.thread, NULL);
		L.connecting = false;
		natsConnection_Destroy(L.connected_nc);
		L.connected_nc = NULL;
	}
	if (!L.nc)
		return;
	natsSubscription_Destroy(L.inbox_sub);
	L.inbox_sub = NULL;
	/* Flushing and closing wait for the server (a PONG) and for writes
	 * that only the loop does: do them on another thread while the loop
	 * turns, for at most about two seconds. */
	pthread_t t;
	if (pthread_create(&t, NULL, close_thread, NULL) != 0) {
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
	natsOptions_Destroy(L.opts);
	L.opts = NULL;
	if (L.rtt_timer)
		event_free(L.rtt_timer);
	if (L.retry_timer)
		event_free(L.retry_timer);
	L.rtt_timer = L.retry_timer = NULL;
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
	return L.nc && L.info.state == LINK_CONNECTED;
}

const struct link_info *link_info(void)
{
	return &L.info;
}

const char *link_inbox(void)
{
	return L.inbox;
}
