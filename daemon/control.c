/* SPDX-License-Identifier: MIT */
/* The local socket: accept clients, read their frames, dispatch them, and
 * write replies and pushes back within each client's output limit. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-login.h>

#include "config.h"
#include "shipd.h"

#define READ_CHUNK 65536
/* Past this much output waiting for the NATS server, clients are not
 * read: their publishes would only pile up in nats.c's buffer. */
#define NATS_BACKLOG_MAX (2u << 20)
#define RESUME_CHECK_MS 2
#define ACCEPT_BACKOFF_MS 1000
#define LISTEN_BACKLOG 128

static struct {
	int fd;
	bool activated; /* handed over by systemd: do not unlink */
	char *path;     /* bound here (unlinked at the end), or NULL */
	char *name;     /* where clients connect: path, or the passed socket's */
	struct event *ev_accept;
	struct event *ev_resume;
	struct event *ev_flush;
	struct event *ev_resume_reads;
	struct event *ev_reap;
	TAILQ_HEAD(, client) paused;
	TAILQ_HEAD(, client) reap;
	TAILQ_HEAD(, client) clients;
	TAILQ_HEAD(, client) dirty;
	TAILQ_HEAD(, app) apps;
	unsigned n_clients;
	uint32_t n_ops; /* requests in flight, all clients */
	size_t held;    /* bytes held for all clients' ops and streams */
	uint64_t next_cid;
	struct ipc_arena arena;
	bool early_close; /* the backend tells a peer's close (EV_CLOSED) */
} ctl = {.fd = -1};

static void client_close(struct client *c);
static bool privileged(uid_t uid);
static void client_free(struct client *c);
static void client_write_cb(evutil_socket_t fd, short what, void *arg);

unsigned control_client_count(void)
{
	return ctl.n_clients;
}

uint32_t control_requests_in_flight(void)
{
	return ctl.n_ops;
}

size_t control_held_bytes(void)
{
	return ctl.held;
}

void control_each_client(void (*fn)(struct client *c, void *arg), void *arg)
{
	struct client *c;
	TAILQ_FOREACH(c, &ctl.clients, entry)
		fn(c, arg);
}

/* ---- output ---- */

static void mark_dirty(struct client *c)
{
	if (c->dirty || c->dead)
		return;
	c->dirty = true;
	TAILQ_INSERT_TAIL(&ctl.dirty, c, dirty_entry);
	/* Written after this turn's other callbacks, so many frames share
	 * one system call. */
	event_active(ctl.ev_flush, EV_WRITE, 0);
}

static bool client_write(struct client *c);

static int queue_frame(struct client *c, const Ship__ServerFrame *f,
                       size_t limit)
{
	/* Over the limit: the socket may have room that this turn has not
	 * used yet; only a client whose socket is full too loses messages. */
	if (ipc_buf_used(&c->out) > limit && !c->want_write) {
		ssize_t n = ipc_buf_write(&c->out, c->fd);
		if (n > 0)
			c->st.bytes_out += (size_t)n;
	}
	if (ipc_buf_used(&c->out) > limit)
		return -1;
	if (ipc_frame_pack(&c->out, &f->base, IPC_FRAME_LIMIT) < 0) {
		log_warn("%s: client %" PRIu64, __func__, c->cid);
		return -1;
	}
	c->st.frames_out++;
	mark_dirty(c);
	return 0;
}

int client_push(struct client *c, const Ship__ServerFrame *f)
{
	if (!c || c->closing)
		return -1;
	return queue_frame(c, f, conf->client_output_limit);
}

int client_send(struct client *c, const Ship__ServerFrame *f)
{
	if (!c || c->closing)
		return -1;
	/* One answer too large to ever be queued is that request's error,
	 * not the client's end: the app asks for less (or pages). */
	size_t size = protobuf_c_message_get_packed_size(&f->base);
	if (size > IPC_FRAME_LIMIT && f->code == SHIP__CODE__OK) {
		client_error(c, f->id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "the answer is %zu bytes, over the frame limit of "
		             "%u; ask for less",
		             size, IPC_FRAME_LIMIT);
		return -1;
	}
	metrics_answer(c, f->id, f->code);
	/* Replies are not dropped; a client that lets twice its limit pile
	 * up is not reading at all and is let go. */
	if (queue_frame(c, f, 2 * (size_t)conf->client_output_limit) < 0) {
		log_warnx("%s: client %" PRIu64 " (%s, pid %d) is not reading; "
		          "closing it",
		          __func__, c->cid, c->name, (int)c->pid);
		c->closing = true;
		ipc_buf_reset(&c->out, 0);
		mark_dirty(c);
		return -1;
	}
	return 0;
}

/* What an answer with outcome_unknown adds to its message. */
#define OUTCOME_UNKNOWN_TEXT                                                \
	"outcome unknown: it may have been applied; check, or retry with "  \
	"the same msg id"

static void send_error(struct client *c, uint64_t id, Ship__Code code,
                       bool unknown, const char *fmt, va_list ap)
{
	char msg[512];
	if (!c)
		return; /* the app left: nobody to tell */
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Only a request that got no answer can have an unknown outcome;
	 * any other code is the server's (or shipd's) own word. */
	unknown = unknown && (code == SHIP__CODE__TIMEOUT ||
	                      code == SHIP__CODE__UNAVAILABLE);
	if (unknown && !strstr(msg, "outcome unknown")) {
		size_t n = strlen(msg);
		snprintf(msg + n, sizeof(msg) - n, "%s" OUTCOME_UNKNOWN_TEXT,
		         n ? "; " : "");
	}
	log_debug("client %" PRIu64 " request %" PRIu64 ": %s: %s", c->cid, id,
	          ipc_code_name(code), msg);
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	f.id = id;
	f.code = code;
	f.error = msg;
	f.outcome_unknown = unknown;
	client_send(c, &f);
}

void client_error(struct client *c, uint64_t id, Ship__Code code,
                  const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	send_error(c, id, code, false, fmt, ap);
	va_end(ap);
}

void client_error_ex(struct client *c, uint64_t id, Ship__Code code,
                     bool unknown, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	send_error(c, id, code, unknown, fmt, ap);
	va_end(ap);
}

void client_js_error(struct client *c, uint64_t id, const struct js_err *e)
{
	client_error_ex(c, id, e->code, e->unknown, "%s", e->text);
}

/* ---- access control ---- */

static uint32_t hash32(uint32_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

bool client_allowed(struct client *c, uint64_t id, enum pol_op op,
                    const char *resource)
{
	char why[512];
	if (policy_allows(c->pol, op, resource, why, sizeof(why)))
		return true;
	c->denied++;
	stats.denied++;
	metrics_denied(c);
	/* Logged once per client and denial: an app that retries in a loop
	 * does not flood the journal. */
	uint32_t h = hash32(hash32(2166136261u, pol_op_name(op)), resource) | 1;
	bool seen = false;
	for (size_t i = 0; i < NITEMS(c->denied_seen); i++)
		if (c->denied_seen[i] == h)
			seen = true;
	if (!seen) {
		c->denied_seen[c->denied % NITEMS(c->denied_seen)] = h;
		log_info("client %" PRIu64 " (%s, uid %u%s%s): denied %s on "
		         "'%.200s': %s",
		         c->cid, c->name[0] ? c->name : "?", (unsigned)c->id.uid,
		         c->id.unit[0] ? ", unit " : "", c->id.unit,
		         pol_op_name(op), resource, why);
	}
	client_error(c, id, SHIP__CODE__PERMISSION_DENIED,
	             "%s on '%.200s' is not allowed: %s", pol_op_name(op),
	             resource, why);
	return false;
}

/* ---- apps: what the connections of one uid and unit hold together ---- */

struct app {
	TAILQ_ENTRY(app) entry;
	uid_t uid;
	char unit[sizeof(((struct identity *)0)->unit)];
	unsigned n_conns; /* its connections, which keep it */
	uint32_t n_subs;
	uint32_t n_requests;
	size_t held;
};

static struct app *app_find(const struct identity *id)
{
	struct app *a;
	TAILQ_FOREACH(a, &ctl.apps, entry)
		if (a->uid == id->uid && !strcmp(a->unit, id->unit))
			return a;
	return NULL;
}

static struct app *app_join(const struct identity *id)
{
	struct app *a = app_find(id);
	if (!a) {
		if (!(a = calloc(1, sizeof(*a))))
			return NULL;
		a->uid = id->uid;
		snprintf(a->unit, sizeof(a->unit), "%s", id->unit);
		TAILQ_INSERT_TAIL(&ctl.apps, a, entry);
	}
	a->n_conns++;
	return a;
}

/* NULL-safe; called once everything c held is given back. */
static void app_leave(struct app *a)
{
	if (!a || --a->n_conns > 0)
		return;
	TAILQ_REMOVE(&ctl.apps, a, entry);
	free(a);
}

/* How messages name an app: "uid 1000 unit driver.service". */
static const char *app_name(const struct identity *id, char *buf, size_t size)
{
	snprintf(buf, size, "uid %u %s%s", (unsigned)id->uid,
	         id->unit[0] ? "unit " : "(no unit)", id->unit);
	return buf;
}

/* Whether c's app already has its quota's worth of k. */
static bool app_full(const struct client *c, enum quota_key k, uint32_t have)
{
	return c->app && have >= c->quota.max[k];
}

/* ---- operations in flight ---- */

static void unhold(struct client *c, size_t n);

void op_track(struct op *o, struct client *c, uint64_t id,
              op_cancel_fn *cancel)
{
	o->c = c;
	o->id = id;
	o->cancel = cancel;
	TAILQ_INSERT_TAIL(&c->ops, o, entry);
	c->n_requests++;
	if (c->app)
		c->app->n_requests++;
	ctl.n_ops++;
}

bool op_begin(struct op *o, struct client *c, uint64_t id,
              op_cancel_fn *cancel)
{
	if (c->n_requests >= conf->max_requests) {
		client_error(c, id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "%u requests in flight, the limit", c->n_requests);
		return false;
	}
	if (ctl.n_ops >= conf->max_requests_total) {
		client_error(c, id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "%u requests in flight in shipd, the limit "
		             "(max_requests_total); try again later",
		             ctl.n_ops);
		return false;
	}
	if (app_full(c, QUOTA_REQUESTS, c->app ? c->app->n_requests : 0)) {
		char app[300];
		client_error(c, id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "%s: %u requests in flight, its quota (%s)",
		             app_name(&c->id, app, sizeof(app)), c->app->n_requests,
		             c->quota.where);
		return false;
	}
	op_track(o, c, id, cancel);
	return true;
}

void op_end(struct op *o)
{
	if (!o || !o->c)
		return;
	TAILQ_REMOVE(&o->c->ops, o, entry);
	o->c->n_requests--;
	if (o->c->app)
		o->c->app->n_requests--;
	ctl.n_ops--;
	unhold(o->c, o->held);
	o->held = 0;
	o->c = NULL;
}

/* ---- bytes held for clients ---- */

/* Which limit n more bytes would pass, if any. */
enum over { OVER_NONE, OVER_CLIENT, OVER_APP, OVER_ALL };

static enum over hold(struct client *c, size_t n)
{
	if (c->held + n > conf->client_memory_limit)
		return OVER_CLIENT;
	if (c->app && c->app->held + n > c->quota.max[QUOTA_BYTES])
		return OVER_APP;
	if (ctl.held + n > conf->memory_limit)
		return OVER_ALL;
	c->held += n;
	if (c->app)
		c->app->held += n;
	ctl.held += n;
	return OVER_NONE;
}

static void unhold(struct client *c, size_t n)
{
	c->held -= n;
	if (c->app)
		c->app->held -= n;
	ctl.held -= n;
}

bool op_hold(struct op *o, size_t n)
{
	if (!o->c)
		return true; /* shipd's own work */
	enum over why = hold(o->c, n);
	if (why == OVER_NONE) {
		o->held += n;
		return true;
	}
	if (why == OVER_APP) {
		char app[300];
		client_error(o->c, o->id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "%s: %zu more bytes would pass its quota of %u "
		             "bytes held (%s; %zu held); try again once other "
		             "requests are answered",
		             app_name(&o->c->id, app, sizeof(app)), n,
		             o->c->quota.max[QUOTA_BYTES], o->c->quota.where,
		             o->c->app->held);
		return false;
	}
	bool mine = why == OVER_CLIENT;
	client_error(o->c, o->id, SHIP__CODE__RESOURCE_EXHAUSTED,
	             "%zu more bytes would pass %s (%zu held); try again "
	             "once other requests are answered",
	             n, mine ? "client_memory_limit" : "memory_limit",
	             mine ? o->c->held : ctl.held);
	return false;
}

bool stream_hold(struct stream *s, size_t n)
{
	if (!s->c || hold(s->c, n) != OVER_NONE)
		return false;
	s->held += n;
	return true;
}

void stream_unhold(struct stream *s, size_t n)
{
	if (!s->c)
		return;
	n = n < s->held ? n : s->held;
	s->held -= n;
	unhold(s->c, n);
}

/* ---- streams ---- */

bool stream_open(struct stream *s, const struct stream_kind *k,
                 struct client *c, uint64_t id)
{
	/* The id map keeps UINT64_MAX for itself. */
	if (id == 0 || id == UINT64_MAX) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "a %s needs an id from 1 to 2^64 - 2", k->name);
		return false;
	}
	if (ipc_idmap_get(&c->streams, id)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "id %" PRIu64 " names an open stream", id);
		return false;
	}
	if (c->n_subs >= conf->max_subscriptions) {
		client_error(c, id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "%u subscriptions, consumers and watches, the limit",
		             c->n_subs);
		return false;
	}
	if (app_full(c, QUOTA_SUBSCRIPTIONS, c->app ? c->app->n_subs : 0)) {
		char app[300];
		client_error(c, id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "%s: %u subscriptions, consumers and watches, its "
		             "quota (%s)",
		             app_name(&c->id, app, sizeof(app)), c->app->n_subs,
		             c->quota.where);
		return false;
	}
	if (ipc_idmap_put(&c->streams, id, s) < 0) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return false;
	}
	s->kind = k;
	s->c = c;
	s->id = id;
	s->held = 0;
	c->n_subs++;
	if (c->app)
		c->app->n_subs++;
	return true;
}

void stream_end_send(struct stream *s, Ship__Code code, bool unknown,
                     const char *why, uint64_t delivered, uint64_t dropped)
{
	if (!s->c)
		return;
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__StreamEnd e = SHIP__STREAM_END__INIT;
	e.delivered = delivered;
	e.dropped = dropped;
	f.id = s->id;
	f.code = code;
	f.error = (char *)(why ? why : "");
	f.outcome_unknown = unknown;
	f.body_case = SHIP__SERVER_FRAME__BODY_END;
	f.end = &e;
	client_send(s->c, &f);
}

void stream_close(struct stream *s)
{
	if (!s || !s->c)
		return;
	ipc_idmap_del(&s->c->streams, s->id);
	s->c->n_subs--;
	if (s->c->app)
		s->c->app->n_subs--;
	unhold(s->c, s->held);
	s->held = 0;
	s->c = NULL;
}

struct stream *stream_find(struct client *c, uint64_t id,
                           const struct stream_kind *k)
{
	struct stream *s = ipc_idmap_get(&c->streams, id);
	return s && s->kind == k ? s : NULL;
}

/* The client is going: its streams end quietly. */
static void streams_gone(struct client *c)
{
	size_t pos = 0;
	void *v;
	while (ipc_idmap_next(&c->streams, &pos, NULL, &v)) {
		struct stream *s = v;
		stream_close(s);
		s->kind->gone(s);
	}
}

static void handle_unsubscribe(struct client *c, uint64_t id,
                               const Ship__Unsubscribe *u)
{
	struct stream *s = ipc_idmap_get(&c->streams, u->stream);
	if (!s) {
		client_error(c, id, SHIP__CODE__NOT_FOUND,
		             "no open stream %" PRIu64, u->stream);
		return;
	}
	s->kind->end(s);
	if (id)
		client_ok(c, id);
}

/* The client is going: every op it has in flight stops, unanswered. */
static void ops_cancel(struct client *c)
{
	struct op *o;
	while ((o = TAILQ_FIRST(&c->ops))) {
		op_cancel_fn *fn = o->cancel;
		op_end(o);
		fn(o);
	}
}


void client_ok(struct client *c, uint64_t id)
{
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	f.id = id;
	client_send(c, &f);
}

/* Returns false if the client was closed. */
static bool client_write(struct client *c)
{
	while (ipc_buf_used(&c->out) > 0) {
		ssize_t n = ipc_buf_write(&c->out, c->fd);
		if (n < 0 && errno == EAGAIN) {
			if (!c->want_write) {
				event_add(c->ev_write, NULL);
				c->want_write = true;
			}
			return true;
		}
		if (n < 0) {
			log_debug("%s: client %" PRIu64 ": %s", __func__, c->cid,
			          strerror(errno));
			client_close(c);
			return false;
		}
		c->st.bytes_out += (size_t)n;
	}
	if (c->want_write) {
		event_del(c->ev_write);
		c->want_write = false;
	}
	/* All written: an idle client holds no buffer. */
	ipc_buf_reset(&c->out, 0);
	if (c->closing) {
		client_close(c);
		return false;
	}
	return true;
}

void control_flush(void)
{
	struct client *c;
	while ((c = TAILQ_FIRST(&ctl.dirty))) {
		TAILQ_REMOVE(&ctl.dirty, c, dirty_entry);
		c->dirty = false;
		client_write(c);
	}
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	control_flush();
}

static void client_write_cb(evutil_socket_t fd, short what, void *arg)
{
	client_write(arg);
}

/* ---- dispatch ---- */

static void handle_hello(struct client *c, uint64_t id, const Ship__Hello *h)
{
	if (c->hello) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "hello sent twice");
		return;
	}
	if (h->version != IPC_VERSION) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "protocol version %u not supported (this shipd "
		             "speaks %d)",
		             h->version, IPC_VERSION);
		c->closing = true;
		return;
	}
	c->hello = true;
	snprintf(c->name, sizeof(c->name), "%s", h->name[0] ? h->name : "?");
	for (char *p = c->name; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	metrics_client_named(c);
	log_debug("client %" PRIu64 " is %s (pid %d, uid %d)", c->cid, c->name,
	          (int)c->pid, (int)c->uid);
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__HelloReply r = SHIP__HELLO_REPLY__INIT;
	r.version = IPC_VERSION;
	r.daemon_version = SHIP_VERSION;
	r.max_frame = conf->max_frame;
	r.max_payload = (uint64_t)(link_info()->max_payload > 0
	                                   ? link_info()->max_payload
	                                   : 0);
	r.max_subscriptions = conf->max_subscriptions;
	r.max_requests = conf->max_requests;
	f.id = id;
	f.body_case = SHIP__SERVER_FRAME__BODY_HELLO;
	f.hello = &r;
	client_send(c, &f);
}

static void handle_status(struct client *c, uint64_t id)
{
	const struct link_info *li = link_info();
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__StatusReply r = SHIP__STATUS_REPLY__INIT;
	uint64_t now = now_ms();
	r.daemon_version = SHIP_VERSION;
	r.uptime_ms = now - start_ms();
	r.link = (Ship__LinkState)li->state;
	r.server_url = (char *)li->url;
	r.server_id = (char *)li->server_id;
	r.rtt_us = li->rtt_us;
	r.reconnects = li->reconnects;
	r.clients = ctl.n_clients;
	r.subscriptions = pubsub_sub_count();
	r.requests_in_flight = ctl.n_ops;
	r.dropped = stats.dropped;
	r.link_changed_ms = now - li->changed_ms;
	r.last_error = (char *)li->last_error;
	r.msgs_in = stats.msgs_in;
	r.msgs_out = stats.msgs_out;
	r.pid = (uint32_t)getpid();
	r.socket = (char *)control_socket_path();
	r.max_clients = conf->max_clients;
	r.max_requests_total = conf->max_requests_total;
	r.held_bytes = ctl.held;
	r.memory_limit = conf->memory_limit;
	r.max_requests = conf->max_requests;
	r.max_subscriptions = conf->max_subscriptions;
	r.client_memory_limit = conf->client_memory_limit;
	r.client_output_limit = conf->client_output_limit;
	Ship__UplinkStatus up = SHIP__UPLINK_STATUS__INIT;
	Ship__UplinkStream ups[16], *upp[16];
	uplink_status(&up, ups, upp, 16);
	r.uplink = &up;
	f.id = id;
	f.body_case = SHIP__SERVER_FRAME__BODY_STATUS;
	f.status = &r;
	client_send(c, &f);
}

/* The admin operations (reload, clients, policy): root and shipd's own
 * user; others only by a rule, so never without rules. With answer, a
 * refusal is answered (PERMISSION_DENIED) and counted. */
static bool admin_may(struct client *c, uint64_t id, const char *what,
                      bool answer)
{
	if (c->id.privileged)
		return true;
	if (!c->pol) {
		if (answer)
			client_error(c, id, SHIP__CODE__PERMISSION_DENIED,
			             "admin %s: only root or shipd's own user (no "
			             "rules grant it to others)",
			             what);
		return false;
	}
	if (answer)
		return client_allowed(c, id, POL_ADMIN, what);
	return policy_allows(c->pol, POL_ADMIN, what, NULL, 0);
}

static void handle_clients(struct client *c, uint64_t id)
{
	/* Without the grant, an app sees its own user's connections only. */
	bool all = admin_may(c, id, "clients", false);
	Ship__ClientInfo *infos = calloc(ctl.n_clients, sizeof(*infos));
	Ship__ClientInfo **ptrs = calloc(ctl.n_clients, sizeof(*ptrs));
	if (ctl.n_clients && (!infos || !ptrs)) {
		free(infos);
		free(ptrs);
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	size_t n = 0;
	uint64_t now = now_ms();
	struct client *o;
	TAILQ_FOREACH(o, &ctl.clients, entry) {
		if (!all && o->uid != c->uid)
			continue;
		Ship__ClientInfo *i = &infos[n];
		ship__client_info__init(i);
		i->id = o->cid;
		i->pid = (uint32_t)o->pid;
		i->uid = (uint32_t)o->uid;
		i->gid = (uint32_t)o->gid;
		i->name = o->name;
		i->subscriptions = o->n_subs;
		i->requests = o->n_requests;
		i->bytes_in = o->st.bytes_in;
		i->bytes_out = o->st.bytes_out;
		i->frames_in = o->st.frames_in;
		i->frames_out = o->st.frames_out;
		i->dropped = o->st.dropped;
		i->connected_ms = now - o->connected_ms;
		i->queued = ipc_buf_used(&o->out);
		i->held = o->held;
		i->unit = o->id.unit;
		i->user = o->id.user;
		i->groups = (uint32_t *)o->id.groups; /* gid_t is 32 bits */
		i->n_groups = (size_t)o->id.n_groups;
		i->denied = o->denied;
		ptrs[n++] = i;
	}
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__ClientsReply r = SHIP__CLIENTS_REPLY__INIT;
	r.n_clients = n;
	r.clients = ptrs;
	f.id = id;
	f.body_case = SHIP__SERVER_FRAME__BODY_CLIENTS;
	f.clients = &r;
	client_send(c, &f);
	free(infos);
	free(ptrs);
}

/* Root and shipd's own user: they may reload, and they get in even when
 * apps took every slot (with max_clients of 2 or more, the last one is
 * theirs; max_clients stays the bound on descriptors). */
static bool privileged(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

static void handle_reload(struct client *c, uint64_t id)
{
	if (!admin_may(c, id, "reload", true))
		return;
	char **applied, **restart, err[512];
	size_t na, nr;
	log_info("client %" PRIu64 " (%s, pid %d) asked for a reload", c->cid,
	         c->name, (int)c->pid);
	if (shipd_reload(&applied, &na, &restart, &nr, err, sizeof(err)) < 0) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT, "%s", err);
		return;
	}
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__ReloadReply r = SHIP__RELOAD_REPLY__INIT;
	r.applied = applied;
	r.n_applied = na;
	r.needs_restart = restart;
	r.n_needs_restart = nr;
	f.id = id;
	f.body_case = SHIP__SERVER_FRAME__BODY_RELOAD;
	f.reload = &r;
	client_send(c, &f);
	free(applied);
	free(restart);
}

/* What the socket layer itself answers: the protocol's own requests and
 * the operator's. */
static void req_unsubscribe(struct client *c, const Ship__ClientFrame *f)
{
	handle_unsubscribe(c, f->id, f->unsubscribe);
}

static void req_status(struct client *c, const Ship__ClientFrame *f)
{
	handle_status(c, f->id);
}

static void req_clients(struct client *c, const Ship__ClientFrame *f)
{
	handle_clients(c, f->id);
}

static void req_reload(struct client *c, const Ship__ClientFrame *f)
{
	handle_reload(c, f->id);
}

static void req_policy_show(struct client *c, const Ship__ClientFrame *f)
{
	if (!admin_may(c, f->id, "policy", true))
		return;
	size_t n = 0;
	char **rules = policy_rules(conf->policy, &n);
	Ship__ServerFrame r = SHIP__SERVER_FRAME__INIT;
	Ship__PolicyShowReply p = SHIP__POLICY_SHOW_REPLY__INIT;
	p.rules = rules;
	p.n_rules = n;
	p.enforced = policy_enforced(conf->policy);
	r.id = f->id;
	r.body_case = SHIP__SERVER_FRAME__BODY_POLICY;
	r.policy = &p;
	client_send(c, &r);
	for (size_t i = 0; i < n; i++)
		free(rules[i]);
	free(rules);
}

static void req_policy_check(struct client *c, const Ship__ClientFrame *f)
{
	const Ship__PolicyCheck *q = f->policy_check;
	if (!admin_may(c, f->id, "policy", true))
		return;
	int op = pol_op_parse(q->op);
	if (op < 0 || !q->resource[0]) {
		client_error(c, f->id, SHIP__CODE__INVALID_ARGUMENT,
		             "policy check: '%.64s' is not an operation, or no "
		             "resource",
		             q->op);
		return;
	}
	/* The identity asked about, as if it connected now. */
	struct identity id = {0};
	id.uid = q->has_uid ? q->uid : c->id.uid;
	id.gid = q->has_uid ? q->gid : c->id.gid;
	id.privileged = privileged(id.uid);
	for (size_t i = 0; i < q->n_groups && i < NITEMS(id.groups); i++)
		id.groups[id.n_groups++] = q->groups[i];
	snprintf(id.unit, sizeof(id.unit), "%s", q->unit);
	struct passwd pw, *res = NULL;
	char buf[1024];
	if (getpwuid_r(id.uid, &pw, buf, sizeof(buf), &res) == 0 && res)
		snprintf(id.user, sizeof(id.user), "%s", pw.pw_name);
	else
		snprintf(id.user, sizeof(id.user), "%u", (unsigned)id.uid);
	struct policy_view *v = policy_bind(conf->policy, &id);
	char rule[512];
	Ship__ServerFrame r = SHIP__SERVER_FRAME__INIT;
	Ship__PolicyCheckReply p = SHIP__POLICY_CHECK_REPLY__INIT;
	p.allowed = policy_allows(v, (enum pol_op)op, q->resource, rule,
	                          sizeof(rule));
	if ((op == POL_ADMIN || op == POL_MONITOR) && !id.privileged && !v) {
		p.allowed = false;
		snprintf(rule, sizeof(rule),
		         "%s: only root or shipd's own user (no rules)",
		         pol_op_name((enum pol_op)op));
	}
	p.rule = rule;
	policy_view_free(v);
	r.id = f->id;
	r.body_case = SHIP__SERVER_FRAME__BODY_POLICY_CHECK;
	r.policy_check = &p;
	client_send(c, &r);
}

const struct block admin_block = {
	.name = "admin",
	.requests = (const struct block_request[]){
		{SHIP__CLIENT_FRAME__BODY_UNSUBSCRIBE, req_unsubscribe, false},
		{SHIP__CLIENT_FRAME__BODY_STATUS, req_status, false},
		{SHIP__CLIENT_FRAME__BODY_CLIENTS, req_clients, false},
		{SHIP__CLIENT_FRAME__BODY_RELOAD, req_reload, false},
		{SHIP__CLIENT_FRAME__BODY_POLICY_SHOW, req_policy_show, false},
		{SHIP__CLIENT_FRAME__BODY_POLICY_CHECK, req_policy_check, false},
		{0, NULL, false},
	},
};

static void dispatch_frame(struct client *c, const Ship__ClientFrame *f)
{
	if (f->body_case == SHIP__CLIENT_FRAME__BODY_HELLO) {
		handle_hello(c, f->id, f->hello);
		return;
	}
	if (!c->hello) {
		client_error(c, f->id, SHIP__CODE__INVALID_ARGUMENT,
		             "the first frame must be a hello");
		c->closing = true;
		return;
	}
	block_request_fn *fn = blocks_handler(f->body_case);
	if (fn)
		fn(c, f);
	else
		client_error(c, f->id, SHIP__CODE__UNIMPLEMENTED,
		             "unknown request (a newer client?)");
}

/* Every request is counted, and its answer timed, here. */
static void dispatch(struct client *c, const Ship__ClientFrame *f)
{
	metrics_request(c, (int)f->body_case, f->id);
	dispatch_frame(c, f);
	metrics_request_done();
}

/* The id of a frame refused before decoding, so the app knows which
 * request failed: field 1 comes first as every encoder writes it. */
static uint64_t frame_id(const uint8_t *p, size_t n)
{
	uint64_t id = 0;
	if (n < 2 || p[0] != 0x08)
		return 0;
	for (size_t i = 1, shift = 0; i < n && shift < 64; i++, shift += 7) {
		id |= (uint64_t)(p[i] & 0x7f) << shift;
		if (!(p[i] & 0x80))
			return id;
	}
	return 0;
}

/* ---- reading, and pausing what NATS cannot take ---- */

static void arm_resume(void)
{
	if (!evtimer_pending(ctl.ev_resume_reads, NULL)) {
		struct timeval tv = {0, RESUME_CHECK_MS * 1000};
		evtimer_add(ctl.ev_resume_reads, &tv);
	}
}

/* Only a connected link pushes back: while it is down, publishes are kept
 * by the link within nats_reconnect_buffer and refused past it. */
static bool nats_backlogged(size_t limit)
{
	return link_connected() && link_buffered() > limit;
}

static void client_read_cb(evutil_socket_t fd, short what, void *arg);

/* Watch c's socket for what it is read for: data, or, while c is paused,
 * only its peer closing (the data waits in the socket meanwhile). */
static void watch_reads(struct client *c, bool paused)
{
	event_del(c->ev_read);
	event_assign(c->ev_read, base, c->fd,
	             (paused ? EV_CLOSED : EV_READ) | EV_PERSIST, client_read_cb,
	             c);
	if (!paused || ctl.early_close)
		event_add(c->ev_read, NULL);
}

/* c's next frame carries a payload to NATS, which takes nothing more: c
 * is not read until it does, the frame and what follows stay in c->in
 * (one read chunk at most, and one frame cut in two). Other clients go
 * on. */
static void pause_client(struct client *c)
{
	if (c->paused)
		return;
	c->paused = true;
	TAILQ_INSERT_TAIL(&ctl.paused, c, paused_entry);
	watch_reads(c, true);
	arm_resume();
}

/* Whether NATS takes nothing more (state: -1 until looked up, once per
 * batch of frames: one read chunk passes the limit at most); if so, c is
 * paused before the frame that would add to it. */
static bool hold_back(struct client *c, int *state)
{
	if (*state < 0)
		*state = nats_backlogged(NATS_BACKLOG_MAX);
	if (*state)
		pause_client(c);
	return *state;
}

/* Handle the whole frames in data; returns the bytes used. A frame that
 * pauses c is not used: it stays, with what follows, in c's input. */
static size_t read_frames(struct client *c, const uint8_t *data, size_t len)
{
	size_t max_body = conf->max_frame - IPC_HDR_LEN;
	size_t used = 0;
	int backlog = -1;
	while (!c->closing && !c->paused) {
		const uint8_t *body;
		size_t blen, flen;
		enum ipc_frame_status st = ipc_frame_peek(
			data + used, len - used, max_body, &body, &blen, &flen);
		if (st == IPC_FRAME_PARTIAL)
			break;
		if (st != IPC_FRAME_OK) {
			log_warnx("client %" PRIu64 " (pid %d): %s; closing it",
			          c->cid, (int)c->pid, ipc_frame_strerror(st));
			client_error(c, 0,
			             st == IPC_FRAME_TOO_BIG
			                     ? SHIP__CODE__RESOURCE_EXHAUSTED
			                     : SHIP__CODE__INVALID_ARGUMENT,
			             "%s (limit %u bytes)", ipc_frame_strerror(st),
			             conf->max_frame);
			c->closing = true;
			break;
		}
		struct ipc_publish_view pv;
		if (c->hello && ipc_parse_publish(body, blen, &pv)) {
			if (hold_back(c, &backlog))
				break;
			used += flen;
			c->st.frames_in++;
			metrics_request(c, SHIP__CLIENT_FRAME__BODY_PUBLISH, pv.id);
			pubsub_publish_view(c, &pv);
			metrics_request_done();
			continue;
		}
		/* Vetted first: protobuf-c would cut strings at a NUL and
		 * allocate for a million empty repeated elements. */
		char why[160];
		if (ipc_pb_check(&ship__client_frame__descriptor, body, blen,
		                 NULL, why, sizeof(why)) < 0) {
			used += flen;
			c->st.frames_in++;
			client_error(c, frame_id(body, blen),
			             SHIP__CODE__INVALID_ARGUMENT, "%s", why);
			continue;
		}
		Ship__ClientFrame *f = ship__client_frame__unpack(&ctl.arena.pb,
		                                                  blen, body);
		/* Decoded again when c is resumed: once per pause. */
		if (f && c->hello && blocks_payload(f->body_case) &&
		    hold_back(c, &backlog)) {
			ipc_arena_reset(&ctl.arena);
			break;
		}
		used += flen;
		c->st.frames_in++;
		if (!f) {
			/* The framing is intact, so the client may go on. */
			client_error(c, 0, SHIP__CODE__INVALID_ARGUMENT,
			             "malformed frame (protobuf decode failed)");
		} else {
			dispatch(c, f);
		}
		ipc_arena_reset(&ctl.arena);
	}
	return used;
}

/* Handle the whole frames c->in holds (what a pause left there). */
static void read_input(struct client *c)
{
	ipc_buf_consume(&c->in, read_frames(c, ipc_buf_head(&c->in),
	                                    ipc_buf_used(&c->in)));
	if (ipc_buf_used(&c->in) == 0)
		ipc_buf_reset(&c->in, 0);
}

/* What a client is left with after a turn of reading: a client that
 * must go stops being read and has its answers written. */
static void after_read(struct client *c)
{
	if (c->closing && !c->dead) {
		if (c->paused) {
			TAILQ_REMOVE(&ctl.paused, c, paused_entry);
			c->paused = false;
		}
		event_del(c->ev_read);
		mark_dirty(c);
	}
}

static void resume_reads_cb(evutil_socket_t fd, short what, void *arg)
{
	if (nats_backlogged(NATS_BACKLOG_MAX / 2)) {
		arm_resume();
		return;
	}
	/* Those paused now, in order; one that pauses again meanwhile goes
	 * to the tail and waits for the next turn. */
	struct client *c;
	for (size_t n = 0, max = ctl.n_clients;
	     n < max && (c = TAILQ_FIRST(&ctl.paused)); n++) {
		TAILQ_REMOVE(&ctl.paused, c, paused_entry);
		c->paused = false;
		/* Its input may hold whole frames, and no more may ever
		 * come: they are handled now, not on a read event. */
		read_input(c);
		if (!c->paused && !c->closing)
			watch_reads(c, false);
		after_read(c);
	}
}

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
	/* Reads land in one buffer shared by all clients; a client keeps
	 * bytes of its own only for a frame cut in two, or the frames a
	 * pause left unread, so an idle client holds no buffer at all. */
	static uint8_t scratch[READ_CHUNK];
	struct client *c = arg;
	if (c->paused) {
		/* Only its peer closing wakes a paused client: what it
		 * wrote and shipd did not take is dropped with it. */
		log_debug("%s: client %" PRIu64 " closed while paused, %zu "
		          "bytes unread",
		          __func__, c->cid, ipc_buf_used(&c->in));
		client_close(c);
		return;
	}
	bool own = ipc_buf_used(&c->in) > 0;
	ssize_t n;
	if (own) {
		n = ipc_buf_read(&c->in, fd, READ_CHUNK);
	} else {
		do
			n = read(fd, scratch, sizeof(scratch));
		while (n < 0 && errno == EINTR);
	}
	if (n == 0 || (n < 0 && errno != EAGAIN)) {
		if (n < 0)
			log_debug("%s: client %" PRIu64 ": %s", __func__, c->cid,
			          strerror(errno));
		client_close(c);
		return;
	}
	if (n < 0)
		return;
	c->st.bytes_in += (size_t)n;
	if (own) {
		read_input(c);
	} else {
		size_t used = read_frames(c, scratch, (size_t)n);
		if (!c->closing && used < (size_t)n &&
		    ipc_buf_append(&c->in, scratch + used, (size_t)n - used) < 0) {
			log_warn("%s: client %" PRIu64, __func__, c->cid);
			c->closing = true;
		}
	}
	after_read(c);
}

/* ---- clients ---- */

/* Close c: it stops being read or written now and is freed by reap_cb,
 * at the top of a loop callback of its own, so that no caller deeper in
 * the stack (a completion walking a list, a frame being read) is left
 * holding a freed client. */
static void client_close(struct client *c)
{
	if (c->dead)
		return;
	c->dead = c->closing = true;
	event_del(c->ev_read);
	event_del(c->ev_write);
	if (c->dirty)
		TAILQ_REMOVE(&ctl.dirty, c, dirty_entry);
	if (c->paused)
		TAILQ_REMOVE(&ctl.paused, c, paused_entry);
	c->dirty = c->paused = false;
	TAILQ_INSERT_TAIL(&ctl.reap, c, reap_entry);
	event_active(ctl.ev_reap, EV_READ, 0);
}

static void client_free(struct client *c)
{
	log_debug("client %" PRIu64 " (%s) gone", c->cid, c->name);
	if (c->paused) /* at shutdown, not closed first */
		TAILQ_REMOVE(&ctl.paused, c, paused_entry);
	ops_cancel(c);
	streams_gone(c);
	blocks_client_gone(c);
	metrics_client_gone(c);
	app_leave(c->app); /* its ops and streams gave back what they held */
	TAILQ_REMOVE(&ctl.clients, c, entry);
	ctl.n_clients--;
	event_free(c->ev_read);
	event_free(c->ev_write);
	close(c->fd);
	ipc_buf_finish(&c->in);
	ipc_buf_finish(&c->out);
	ipc_idmap_finish(&c->streams);
	policy_view_free(c->pol);
	free(c);
	if (!event_pending(ctl.ev_accept, EV_READ, NULL) &&
	    !evtimer_pending(ctl.ev_resume, NULL) && ctl.fd >= 0)
		event_add(ctl.ev_accept, NULL);
}

static void reap(void)
{
	struct client *c;
	while ((c = TAILQ_FIRST(&ctl.reap))) {
		TAILQ_REMOVE(&ctl.reap, c, reap_entry);
		client_free(c);
	}
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	reap();
}

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

/* Who the peer is, from the kernel, once: its credentials, supplementary
 * groups, user name and systemd unit. */
static void identity_read(int fd, const struct ucred *cr, struct identity *id)
{
	memset(id, 0, sizeof(*id));
	id->uid = cr->uid;
	id->gid = cr->gid;
	id->pid = cr->pid;
	id->privileged = privileged(cr->uid);
	socklen_t len = sizeof(id->groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, id->groups, &len) == 0)
		id->n_groups = (int)(len / sizeof(gid_t));
	/* (more than 64 groups: ERANGE, and only the primary one counts) */
	struct passwd pw, *res = NULL;
	char buf[1024];
	if (getpwuid_r(cr->uid, &pw, buf, sizeof(buf), &res) == 0 && res)
		snprintf(id->user, sizeof(id->user), "%s", pw.pw_name);
	else
		snprintf(id->user, sizeof(id->user), "%u", (unsigned)cr->uid);
	char *unit = NULL;
	if (cr->pid > 0 && (sd_pid_get_unit(cr->pid, &unit) >= 0 ||
	                    sd_pid_get_user_unit(cr->pid, &unit) >= 0)) {
		snprintf(id->unit, sizeof(id->unit), "%s", unit);
		free(unit);
	}
}

static unsigned clients_of_uid(uid_t uid)
{
	unsigned n = 0;
	struct client *c;
	TAILQ_FOREACH(c, &ctl.clients, entry)
		n += c->uid == uid;
	return n;
}

static unsigned clients_max(uid_t uid)
{
	unsigned max = conf->max_clients;
	return privileged(uid) || max < 2 ? max : max - 1;
}

static void refuse(int fd, Ship__Code code, const char *why)
{
	/* Best effort: the socket is new, so the frame fits its buffer. */
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	struct ipc_buf b = {0};
	f.code = code;
	f.error = (char *)why;
	if (ipc_frame_pack(&b, &f.base, IPC_FRAME_LIMIT) == 0)
		(void)!send(fd, ipc_buf_head(&b), ipc_buf_used(&b), MSG_NOSIGNAL);
	ipc_buf_finish(&b);
	close(fd);
}

static void refuse_full(int fd, const struct ucred *cr)
{
	char why[160];
	int n = snprintf(why, sizeof(why), "too many clients (%u): max_clients "
	                 "is %u", ctl.n_clients, conf->max_clients);
	if (ctl.n_clients < conf->max_clients)
		snprintf(why + n, sizeof(why) - (size_t)n,
		         ", the last slot is kept for root and shipd's user");
	log_warnx("%s: %s; refusing pid %d uid %d", __func__, why,
	          (int)cr->pid, (int)cr->uid);
	refuse(fd, SHIP__CODE__RESOURCE_EXHAUSTED, why);
}

/* The quota of id's app into q (no limits if none), or refuse fd when the
 * app has its quota's worth of connections already. */
static bool quota_bind(int fd, const struct identity *id, struct quota *q)
{
	if (!policy_quota(conf->policy, id, q)) {
		*q = (struct quota){0};
		for (int k = 0; k < QUOTA_N; k++)
			q->max[k] = QUOTA_NONE;
		return true;
	}
	struct app *a = app_find(id);
	unsigned n = a ? a->n_conns : 0;
	if (n < q->max[QUOTA_CONNECTIONS])
		return true;
	char why[512], app[300];
	snprintf(why, sizeof(why),
	         "too many clients for %s: %u connections, its quota (%s)",
	         app_name(id, app, sizeof(app)), n, q->where);
	log_warnx("%s: %s, refusing pid %d", __func__, why, (int)id->pid);
	refuse(fd, SHIP__CODE__RESOURCE_EXHAUSTED, why);
	return false;
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM) {
			/* Pause rather than spin; a leaving client or the
			 * timer resumes accepting. */
			log_warn("%s: accept; pausing", __func__);
			event_del(ctl.ev_accept);
			struct timeval tv = {ACCEPT_BACKOFF_MS / 1000, 0};
			evtimer_add(ctl.ev_resume, &tv);
		} else if (errno != EAGAIN && errno != EINTR &&
		           errno != ECONNABORTED) {
			log_warn("%s: accept", __func__);
		}
		return;
	}
	struct ucred cr;
	socklen_t crl = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0) {
		log_warn("%s: SO_PEERCRED", __func__);
		close(fd);
		return;
	}
	if (ctl.n_clients >= clients_max(cr.uid)) {
		refuse_full(fd, &cr);
		return;
	}
	if (clients_of_uid(cr.uid) >= conf->max_clients_per_uid) {
		char why[128];
		snprintf(why, sizeof(why),
		         "too many clients for uid %d (max_clients_per_uid is "
		         "%u)",
		         (int)cr.uid, conf->max_clients_per_uid);
		log_warnx("%s: %s, refusing pid %d", __func__, why, (int)cr.pid);
		refuse(fd, SHIP__CODE__RESOURCE_EXHAUSTED, why);
		return;
	}
	struct identity id;
	struct quota q;
	identity_read(fd, &cr, &id);
	if (!quota_bind(fd, &id, &q))
		return;
	struct client *c = calloc(1, sizeof(*c));
	if (!c || (!id.privileged && !(c->app = app_join(&id)))) {
		free(c);
		close(fd);
		return;
	}
	c->cid = ++ctl.next_cid;
	c->fd = fd;
	c->uid = cr.uid;
	c->gid = cr.gid;
	c->pid = cr.pid;
	c->id = id;
	c->quota = q;
	c->pol = policy_bind(conf->policy, &c->id);
	c->connected_ms = now_ms();
	snprintf(c->name, sizeof(c->name), "?");
	c->mapp = -1;
	metrics_client_named(c);
	TAILQ_INIT(&c->ops);
	c->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, client_read_cb, c);
	c->ev_write = event_new(base, fd, EV_WRITE | EV_PERSIST,
	                        client_write_cb, c);
	if (!c->ev_read || !c->ev_write || event_add(c->ev_read, NULL) < 0) {
		if (c->ev_read)
			event_free(c->ev_read);
		if (c->ev_write)
			event_free(c->ev_write);
		policy_view_free(c->pol);
		app_leave(c->app);
		free(c);
		close(fd);
		return;
	}
	TAILQ_INSERT_TAIL(&ctl.clients, c, entry);
	ctl.n_clients++;
	log_debug("client %" PRIu64 ": pid %d uid %d gid %d", c->cid,
	          (int)cr.pid, (int)cr.uid, (int)cr.gid);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	if (ctl.fd >= 0)
		event_add(ctl.ev_accept, NULL);
}

/* ---- the listening socket ---- */

static int check_dir(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	struct stat st;
	if (stat(dir, &st) < 0) {
		if (errno != ENOENT) {
			log_warn("%s: %s", __func__, dir);
			return -1;
		}
		if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
			log_warn("%s: mkdir %s", __func__, dir);
			return -1;
		}
		return 0;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_warnx("%s: %s is not a directory", __func__, dir);
		return -1;
	}
	if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
		log_warnx("%s: %s is writable by anyone; refusing to put the "
		          "socket there",
		          __func__, dir);
		return -1;
	}
	/* Only fix the mode of a directory we own: /run or /tmp are not ours. */
	if (st.st_uid == geteuid() && !(st.st_mode & S_ISVTX) &&
	    (st.st_mode & 07777) != 0750 && strcmp(dir, "/run") != 0 &&
	    chmod(dir, 0750) < 0) {
		log_warn("%s: chmod %s", __func__, dir);
		return -1;
	}
	return 0;
}

/* Refuse a live daemon or a non-socket at path; remove a stale socket. */
static int clear_path(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		log_warnx("%s: %s exists and is not a socket; not touching it",
		          __func__, path);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (r == 0) {
		log_warnx("%s: a shipd is already running on %s", __func__, path);
		return -1;
	}
	log_debug("%s: removing stale socket %s", __func__, path);
	if (unlink(path) < 0 && errno != ENOENT) {
		log_warn("%s: unlink %s", __func__, path);
		return -1;
	}
	return 0;
}

int control_listen_unix(const char *path, const char *group, unsigned mode)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_warnx("%s: socket path too long: %s", __func__, path);
		return -1;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (check_dir(path) < 0 || clear_path(path) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("%s: socket", __func__);
		return -1;
	}
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0) {
		log_warn("%s: bind %s", __func__, path);
		goto error;
	}
	if (group) {
		struct group *g = getgrnam(group);
		if (!g) {
			log_warnx("%s: no group %s", __func__, group);
			goto error_unlink;
		}
		if (chown(path, (uid_t)-1, g->gr_gid) < 0) {
			log_warn("%s: chown %s", __func__, path);
			goto error_unlink;
		}
	}
	if (chmod(path, mode) < 0) {
		log_warn("%s: chmod %s", __func__, path);
		goto error_unlink;
	}
	if (listen(fd, LISTEN_BACKLOG) < 0) {
		log_warn("%s: listen", __func__);
		goto error_unlink;
	}
	return fd;
error_unlink:
	unlink(path);
error:
	close(fd);
	return -1;
}

static int listen_activated(void)
{
	int n = sd_listen_fds(1);
	if (n <= 0)
		return -1;
	if (n > 1)
		log_warnx("%s: %d sockets passed, using the first", __func__, n);
	int fd = SD_LISTEN_FDS_START;
	if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
		log_warnx("%s: the passed socket is not a listening Unix stream "
		          "socket",
		          __func__);
		return -2;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -2;
	return fd;
}

/* The file system path a listening socket is bound to, or NULL (abstract
 * or unnamed). */
static char *socket_name(int fd)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	size_t off = offsetof(struct sockaddr_un, sun_path);
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0 || len <= off ||
	    sa.sun_path[0] == '\0')
		return NULL;
	return strndup(sa.sun_path, len - off);
}

const char *control_socket_path(void)
{
	return ctl.name ? ctl.name : conf->socket_path;
}

int control_init(struct event_base *b, const struct config *c)
{
	TAILQ_INIT(&ctl.clients);
	TAILQ_INIT(&ctl.dirty);
	TAILQ_INIT(&ctl.paused);
	TAILQ_INIT(&ctl.reap);
	TAILQ_INIT(&ctl.apps);
	ipc_arena_init(&ctl.arena);
	int fd = listen_activated();
	if (fd == -2)
		return -1;
	if (fd >= 0) {
		ctl.activated = true;
		ctl.name = socket_name(fd);
		log_info("using the socket passed by systemd (%s)",
		         ctl.name ? ctl.name : "unnamed");
	} else if ((fd = control_listen_unix(c->socket_path, c->socket_group,
	                                     c->socket_mode)) < 0) {
		return -1;
	} else {
		ctl.path = strdup(c->socket_path);
		ctl.name = strdup(c->socket_path);
	}
	ctl.fd = fd;
	/* Without it a paused client that left is found when resumed. */
	ctl.early_close = event_base_get_features(b) & EV_FEATURE_EARLY_CLOSE;
	ctl.ev_accept = event_new(b, fd, EV_READ | EV_PERSIST, accept_cb, NULL);
	ctl.ev_resume = evtimer_new(b, resume_cb, NULL);
	ctl.ev_flush = event_new(b, -1, 0, flush_cb, NULL);
	ctl.ev_resume_reads = evtimer_new(b, resume_reads_cb, NULL);
	ctl.ev_reap = event_new(b, -1, 0, reap_cb, NULL);
	if (!ctl.ev_accept || !ctl.ev_resume || !ctl.ev_flush ||
	    !ctl.ev_resume_reads || !ctl.ev_reap)
		return -1;
	/* Flushing runs after everything else that is ready, reaping after
	 * that. */
	event_priority_set(ctl.ev_flush, 2);
	event_priority_set(ctl.ev_reap, 2);
	if (event_add(ctl.ev_accept, NULL) < 0)
		return -1;
	return 0;
}

void control_stop_accepting(void)
{
	if (ctl.ev_accept)
		event_del(ctl.ev_accept);
	if (ctl.ev_resume)
		event_del(ctl.ev_resume);
	if (ctl.fd >= 0)
		close(ctl.fd);
	ctl.fd = -1;
	if (ctl.path)
		unlink(ctl.path);
}

void control_shutdown_clients(void)
{
	struct client *c, *tmp;
	reap();
	/* Best effort: hand over what is queued, then close. */
	TAILQ_FOREACH_SAFE(c, &ctl.clients, entry, tmp) {
		int fl = fcntl(c->fd, F_GETFL);
		if (fl >= 0)
			fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
		struct timeval tv = {0, 200000};
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		while (ipc_buf_used(&c->out) > 0 && ipc_buf_write(&c->out, c->fd) > 0)
			;
		client_free(c);
	}
}

void control_finish(void)
{
	control_stop_accepting();
	if (ctl.ev_accept)
		event_free(ctl.ev_accept);
	if (ctl.ev_resume)
		event_free(ctl.ev_resume);
	if (ctl.ev_flush)
		event_free(ctl.ev_flush);
	if (ctl.ev_resume_reads)
		event_free(ctl.ev_resume_reads);
	if (ctl.ev_reap)
		event_free(ctl.ev_reap);
	ctl.ev_accept = ctl.ev_resume = ctl.ev_flush = ctl.ev_resume_reads = NULL;
	ctl.ev_reap = NULL;
	free(ctl.path);
	free(ctl.name);
	ctl.path = ctl.name = NULL;
	ipc_arena_finish(&ctl.arena);
}
