/* SPDX-License-Identifier: MIT */
/* The metrics and health HTTP server (libevent's evhttp on shipd's loop):
 * /metrics, /healthz (the loop turns) and /readyz (NATS connected and
 * JetStream answering), on a loopback address and/or a Unix socket. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "shipd.h"

#define MAX_HEADERS 8192  /* bytes of a request's line and headers */
#define MAX_BODY 1024     /* GET and HEAD carry none */
#define SWEEP_MS 100      /* how soon a closed connection's slot is free */
#define PROBE_MS 1000     /* JetStream asked whether it answers */
#define PROBE_TIMEOUT_MS 2000
#define PROBE_STALE_MS (3 * PROBE_MS + PROBE_TIMEOUT_MS)
#define LIFE_TIMEOUTS 4    /* a connection lives 4 metrics_timeout_ms */
#define LOOP_STALL_MS 2000 /* a steady 250 ms timer late by this: stuck */

static struct {
	struct evhttp *http;
	struct evhttp_bound_socket *bound[2];
	size_t n_bound;
	char *socket_path; /* bound here, unlinked at the end */
	/* One reference on each connection's bufferevent: evhttp takes its
	 * callbacks off when it frees the connection, and the sweep then
	 * frees the slot. The listeners pause while every slot is taken. */
	struct bufferevent **conns;
	uint64_t *since; /* now_ms() of its accept, or of its last answer */
	size_t n_conns, max_conns;
	uint64_t max_life_ms; /* to send a request and take its answer */
	bool paused;
	uint64_t pauses, pause_logged_ms;
	struct event *ev_sweep;
	uint64_t served;
	/* The readiness probe. */
	struct event *ev_probe;
	struct js_call *probe;
	bool js_ok;
	uint64_t js_answer_ms; /* now_ms() of the last answer, 0: none */
	char js_why[256];
} h;

/* ---- readiness ---- */

static void probe_cb(void *arg, json_t *reply, const struct js_err *err)
{
	h.probe = NULL;
	h.js_answer_ms = now_ms();
	h.js_ok = err == NULL;
	if (err)
		snprintf(h.js_why, sizeof(h.js_why), "%s", err->text);
}

static void probe_tick(evutil_socket_t fd, short what, void *arg)
{
	if (h.probe || !link_connected())
		return;
	h.probe = js_api("INFO", NULL, PROBE_TIMEOUT_MS, probe_cb, NULL);
}

bool httpd_jetstream_ready(char *why, size_t size)
{
	const struct link_info *li = link_info();
	const char *no = NULL;
	if (li->state != LINK_CONNECTED)
		no = "NATS is not connected";
	else if (!h.js_answer_ms || h.js_answer_ms < li->changed_ms)
		no = "JetStream has not answered since NATS connected";
	else if (now_ms() - h.js_answer_ms > PROBE_STALE_MS)
		no = "JetStream has not answered lately";
	else if (!h.js_ok)
		no = h.js_why;
	if (no && why)
		snprintf(why, size, "%s", no);
	return !no;
}

/* ---- connections ---- */

static void pause_listeners(bool pause)
{
	if (h.paused == pause)
		return;
	h.paused = pause;
	for (size_t i = 0; i < h.n_bound; i++) {
		struct evconnlistener *l = evhttp_bound_socket_get_listener(h.bound[i]);
		if (pause)
			evconnlistener_disable(l);
		else
			evconnlistener_enable(l);
	}
	if (!pause)
		return;
	h.pauses++;
	/* Once a minute at most: a client that keeps every slot taken
	 * does not flood the journal. */
	if (!h.pause_logged_ms || now_ms() - h.pause_logged_ms > 60000) {
		h.pause_logged_ms = now_ms();
		log_warnx("metrics: %zu HTTP connections open "
		          "(metrics_max_connections); accepting again when one "
		          "closes",
		          h.n_conns);
	}
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = now_ms();
	for (size_t i = 0; i < h.n_conns;) {
		bufferevent_event_cb ev;
		void *evcon;
		bufferevent_getcb(h.conns[i], NULL, NULL, &ev, &evcon);
		if (ev && now - h.since[i] > h.max_life_ms) {
			/* A client that sends (or reads) a byte now and then
			 * is never idle long enough for the timeout: its
			 * time is up. */
			log_debug("metrics: an HTTP request taking %" PRIu64
			          " ms; closing its connection",
			          now - h.since[i]);
			static const char late[] =
				"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
				"Content-Length: 0\r\n\r\n";
			/* Best effort, never waiting, and only where no
			 * answer is half written: a clear word, then gone. */
			struct evbuffer *out = bufferevent_get_output(h.conns[i]);
			if (evbuffer_get_length(out) == 0 &&
			    send(bufferevent_getfd(h.conns[i]), late,
			         sizeof(late) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
				log_debug("metrics: 408: %s", strerror(errno));
			evhttp_connection_free(evcon);
			bufferevent_getcb(h.conns[i], NULL, NULL, &ev, NULL);
		}
		if (ev) {
			i++;
			continue;
		}
		bufferevent_decref(h.conns[i]);
		h.since[i] = h.since[h.n_conns - 1];
		h.conns[i] = h.conns[--h.n_conns];
	}
	if (h.n_conns < h.max_conns)
		pause_listeners(false);
	if (h.n_conns) {
		struct timeval tv = {0, SWEEP_MS * 1000};
		evtimer_add(h.ev_sweep, &tv);
	}
}

/* Called by evhttp for each connection it accepts, before it sets its
 * own callbacks on the bufferevent. */
static struct bufferevent *new_conn(struct event_base *b, void *arg)
{
	struct bufferevent *bev = bufferevent_socket_new(b, -1,
	                                                 BEV_OPT_CLOSE_ON_FREE);
	if (!bev || h.n_conns == h.max_conns)
		return bev; /* cannot happen while paused; evhttp copes */
	bufferevent_incref(bev);
	h.since[h.n_conns] = now_ms();
	h.conns[h.n_conns++] = bev;
	if (!evtimer_pending(h.ev_sweep, NULL)) {
		struct timeval tv = {0, SWEEP_MS * 1000};
		evtimer_add(h.ev_sweep, &tv);
	}
	if (h.n_conns == h.max_conns)
		pause_listeners(true);
	return bev;
}

/* ---- requests ---- */

/* Send the answer; to a HEAD, its headers only (evhttp 2.1 would write
 * the body after them, and a keep-alive client would read it as the
 * start of the next answer), with the length the body would have. */
static void send_reply(struct evhttp_request *req, int code,
                       const char *reason, struct evbuffer *body)
{
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		char len[32];
		snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "Content-Length", len);
		evbuffer_drain(body, evbuffer_get_length(body));
	}
	evhttp_send_reply(req, code, reason, body);
}

static void reply_text(struct evhttp_request *req, int code,
                       const char *reason, struct evbuffer *body)
{
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	evhttp_add_header(oh, "Content-Type", "text/plain; charset=utf-8");
	evhttp_add_header(oh, "Cache-Control", "no-store");
	send_reply(req, code, reason, body);
	h.served++;
}

static void handle_metrics(struct evhttp_request *req, struct evbuffer *b)
{
	metrics_render(b);
	evbuffer_add_printf(b,
	                    "# HELP shipd_http_connections HTTP connections "
	                    "open on this server\n"
	                    "# TYPE shipd_http_connections gauge\n"
	                    "shipd_http_connections %zu\n"
	                    "# HELP shipd_http_requests_total HTTP requests "
	                    "answered\n"
	                    "# TYPE shipd_http_requests_total counter\n"
	                    "shipd_http_requests_total %" PRIu64 "\n"
	                    "# HELP shipd_http_full_total times every HTTP "
	                    "connection was taken and accepting paused\n"
	                    "# TYPE shipd_http_full_total counter\n"
	                    "shipd_http_full_total %" PRIu64 "\n",
	                    h.n_conns, h.served + 1, h.pauses);
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	evhttp_add_header(oh, "Content-Type",
	                  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_add_header(oh, "Cache-Control", "no-store");
	send_reply(req, HTTP_OK, "OK", b);
	h.served++;
}

static void handle_healthz(struct evhttp_request *req, struct evbuffer *b)
{
	uint64_t idle = metrics_loop_idle_ms(), worst = metrics_loop_worst_ms();
	bool ok = idle < LOOP_STALL_MS;
	evbuffer_add_printf(b,
	                    "%s: the loop turned %" PRIu64 " ms ago; its "
	                    "longest turn lately took %" PRIu64 " ms\n",
	                    ok ? "ok" : "stalled", idle, worst);
	reply_text(req, ok ? HTTP_OK : HTTP_SERVUNAVAIL,
	           ok ? "OK" : "Service Unavailable", b);
}

static void handle_readyz(struct evhttp_request *req, struct evbuffer *b)
{
	char why[256];
	bool ok = httpd_jetstream_ready(why, sizeof(why));
	if (ok)
		evbuffer_add_printf(b, "ready: NATS connected to %s, JetStream "
		                       "answering\n",
		                    link_info()->url);
	else
		evbuffer_add_printf(b, "not ready: %s\n", why);
	reply_text(req, ok ? HTTP_OK : HTTP_SERVUNAVAIL,
	           ok ? "OK" : "Service Unavailable", b);
}

static const struct {
	const char *path;
	void (*fn)(struct evhttp_request *req, struct evbuffer *b);
} routes[] = {
	{"/metrics", handle_metrics},
	{"/healthz", handle_healthz},
	{"/readyz", handle_readyz},
};

/* req came whole and is answered now: its connection's time starts
 * again, for taking the answer and sending the next. */
static void arrived(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev =
		evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	for (size_t i = 0; bev && i < h.n_conns; i++)
		if (h.conns[i] == bev)
			h.since[i] = now_ms();
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *path = u ? evhttp_uri_get_path(u) : NULL;
	arrived(req);
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
		return;
	}
	size_t i = 0;
	while (i < NITEMS(routes) && (!path || strcmp(path, routes[i].path)))
		i++;
	if (i < NITEMS(routes)) {
		routes[i].fn(req, b);
	} else {
		evbuffer_add_printf(b, "not found: shipd serves /metrics, "
		                       "/healthz and /readyz\n");
		reply_text(req, HTTP_NOTFOUND, "Not Found", b);
	}
	evbuffer_free(b);
}

/* ---- setup ---- */

static int bind_tcp(const struct config *c)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];
	if (config_parse_listen(c->metrics_listen, c->metrics_allow_remote, &ss,
	                       &len, err, sizeof(err)) < 0) {
		log_warnx("metrics_listen: %s", err);
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	                0);
	int one = 1;
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 64) < 0) {
		log_warn("metrics: cannot listen on %s", c->metrics_listen);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int add_listener(int fd)
{
	struct evhttp_bound_socket *bs = evhttp_accept_socket_with_handle(h.http, fd);
	if (!bs) {
		close(fd);
		return -1;
	}
	h.bound[h.n_bound++] = bs;
	return 0;
}

int httpd_init(struct event_base *b, const struct config *c)
{
	if (!c->metrics_listen && !c->metrics_socket)
		return 0;
	h.max_conns = c->metrics_max_connections;
	h.conns = calloc(h.max_conns, sizeof(*h.conns));
	h.since = calloc(h.max_conns, sizeof(*h.since));
	h.max_life_ms = (uint64_t)c->metrics_timeout_ms * LIFE_TIMEOUTS;
	h.http = evhttp_new(b);
	h.ev_sweep = evtimer_new(b, sweep_cb, NULL);
	h.ev_probe = event_new(b, -1, EV_PERSIST, probe_tick, NULL);
	if (!h.conns || !h.since || !h.http || !h.ev_sweep || !h.ev_probe)
		return -1;
	evhttp_set_allowed_methods(h.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(h.http, MAX_HEADERS);
	evhttp_set_max_body_size(h.http, MAX_BODY);
	struct timeval tv = {(time_t)(c->metrics_timeout_ms / 1000),
	                     (suseconds_t)(c->metrics_timeout_ms % 1000 * 1000)};
	evhttp_set_timeout_tv(h.http, &tv);
	evhttp_set_bevcb(h.http, new_conn, NULL);
	evhttp_set_gencb(h.http, request_cb, NULL);
	if (c->metrics_listen) {
		int fd = bind_tcp(c);
		if (fd < 0 || add_listener(fd) < 0)
			return -1;
	}
	if (c->metrics_socket) {
		int fd = control_listen_unix(c->metrics_socket, c->socket_group,
		                             c->socket_mode);
		if (fd < 0)
			return -1;
		h.socket_path = strdup(c->metrics_socket);
		if (add_listener(fd) < 0)
			return -1;
	}
	struct timeval ptv = {PROBE_MS / 1000, PROBE_MS % 1000 * 1000};
	if (event_add(h.ev_probe, &ptv) < 0)
		return -1;
	log_info("metrics on %s%s%s", c->metrics_listen ? c->metrics_listen : "",
	         c->metrics_listen && c->metrics_socket ? " and " : "",
	         c->metrics_socket ? c->metrics_socket : "");
	return 0;
}

void httpd_finish(void)
{
	if (h.probe)
		js_cancel(h.probe);
	if (h.http)
		evhttp_free(h.http); /* frees its connections and listeners */
	for (size_t i = 0; i < h.n_conns; i++)
		bufferevent_decref(h.conns[i]);
	if (h.ev_sweep)
		event_free(h.ev_sweep);
	if (h.ev_probe)
		event_free(h.ev_probe);
	if (h.socket_path)
		unlink(h.socket_path);
	free(h.socket_path);
	free(h.conns);
	free(h.since);
	memset(&h, 0, sizeof(h));
}
