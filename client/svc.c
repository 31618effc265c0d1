/* SPDX-License-Identifier: MIT */
/* libshipc's Services: service instances hosted through shipd (the NATS
 * micro protocol), their requests and answers, and discovery. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "shipc-private.h"

#define SVC_TIMEOUT_MS 30000   /* shipd's answer to an add or a reply */
#define SVC_DRAIN_MS 5000      /* shipd's default drain */
#define STOP_MARGIN_MS 2000    /* past the drain, for the StreamEnd */
#define DISCOVER_WAIT_MS 2000
#define RUN_SLICE_MS 100       /* how often shipc_svc_run() reads *stop */
#define MAX_HEADERS 256
#define STACK_HEADERS 16

/*
 * A service is a stream of the handle, like a subscription: a struct sub
 * keeps its packed ServiceAdd (re-sent with the same id after a
 * reconnect, which makes a new instance) and catches its StreamEnd. The
 * other frames of its id (ServiceStarted, ServiceRequest, or the add's
 * refusal) reach it through a route: a call registered under the same id
 * and put back after each frame, as the object transfers do (obj.c).
 *
 * The sub lives as long as the struct: when shipd ends the instance for
 * good, a sub with an empty opening frame (nothing to re-send) takes its
 * place, so that shipc_close() still finds and frees the service.
 *
 * References: the app's (until shipc_svc_stop(), shipc_svc_run()'s end or
 * the handle closing), the sub's, and the route's, which a request being
 * handled holds, so a handler may stop its own service. Everything here
 * is under h->mu.
 */

struct svc_cmd {
	char *name;
	shipc_svc_fn *fn;
	void *arg;
};

struct svc_ep {
	shipc_svc_fn *fn;
	void *arg;
	struct svc_cmd *cmds;
	size_t n_cmds;
};

struct shipc_svc {
	struct shipc *h;
	struct shipc_svc *next; /* on h->svcs, once added */
	unsigned refs;
	uint64_t stream;        /* the ServiceAdd's frame id */
	struct sub *s;
	struct call *route;     /* registered for the next frame, or NULL */
	bool listed;
	bool started;           /* shipd has the instance on this connection */
	bool ended;             /* and never will again */
	bool stopping;          /* the app asked it to drain */
	bool unsubscribed;      /* and shipd was told */
	uint64_t gone_gen;      /* shipd has no instance on this connection */
	int err;                /* why it ended */
	uint32_t drain_ms;
	char *name;
	struct svc_ep *eps;
	size_t n_eps;
	char id[128];
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

static int bad(struct shipc *h, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int bad(struct shipc *h, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&h->mu);
	bad_arg(h, what);
	pthread_mutex_unlock(&h->mu);
	return -1;
}

static bool meta_valid(const struct shipc_header *m, size_t n)
{
	if (n && !m)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!m[i].key || !m[i].key[0] || !m[i].value)
			return false;
	return true;
}

/* An endpoint's subject: wildcards only without prefix routing (shipd
 * checks the rest: no leading wildcard, no _INBOX). */
static bool subject_ok(const char *s, bool wildcards)
{
	return (wildcards ? ipc_subject_pattern_valid(s) : ipc_subject_valid(s)) &&
	       !ipc_subject_system(s);
}

static int check_commands(struct shipc *h, const struct shipc_svc_endpoint *e)
{
	if (e->n_commands && !e->prefix)
		return bad(h, "endpoint %s: commands need prefix routing",
		           e->name);
	if (e->n_commands && !e->commands)
		return bad(h, "endpoint %s: no commands", e->name);
	for (size_t i = 0; i < e->n_commands; i++) {
		const struct shipc_svc_command *c = &e->commands[i];
		if (!ipc_subject_valid(c->name))
			return bad(h, "endpoint %s: invalid command '%.64s'",
			           e->name, or_empty(c->name));
		if (!c->fn)
			return bad(h, "endpoint %s: command %s has no handler",
			           e->name, c->name);
	}
	return 0;
}

static int check_endpoint(struct shipc *h, const struct shipc_svc_endpoint *e)
{
	if (!ipc_svc_name_valid(e->name))
		return bad(h, "invalid endpoint name '%.64s' (letters, digits, "
		              "_ and -)", or_empty(e->name));
	if (e->subject && !subject_ok(e->subject, !e->prefix))
		return bad(h, "endpoint %s: invalid subject '%.64s'%s", e->name,
		           e->subject,
		           e->prefix ? " (no wildcards with prefix routing)" : "");
	if (e->group && !subject_ok(e->group, false))
		return bad(h, "endpoint %s: invalid group '%.64s'", e->name,
		           e->group);
	if (e->queue_group && (!e->queue_group[0] ||
	                       !ipc_queue_valid(e->queue_group)))
		return bad(h, "endpoint %s: invalid queue group '%.64s'",
		           e->name, e->queue_group);
	if (!meta_valid(e->metadata, e->n_metadata))
		return bad(h, "endpoint %s: metadata without key or value",
		           e->name);
	/* A prefix-routed endpoint without one: shipd answers unknown
	 * commands itself. */
	if (!e->fn && !e->prefix)
		return bad(h, "endpoint %s has no handler", e->name);
	return check_commands(h, e);
}

static int check_config(struct shipc *h, const struct shipc_svc_config *cfg)
{
	if (!cfg)
		return bad(h, "no service configuration");
	if (!ipc_svc_name_valid(cfg->name))
		return bad(h, "invalid service name '%.64s' (letters, digits, _ "
		              "and -)", or_empty(cfg->name));
	if (!ipc_semver_valid(cfg->version))
		return bad(h, "service %s: invalid version '%.64s' (semantic "
		              "versioning: 1.0.0)", cfg->name,
		           or_empty(cfg->version));
	if (!meta_valid(cfg->metadata, cfg->n_metadata))
		return bad(h, "service %s: metadata without key or value",
		           cfg->name);
	if (cfg->n_endpoints && !cfg->endpoints)
		return bad(h, "service %s: no endpoints", cfg->name);
	if (cfg->event_prefix && !ipc_subject_valid(cfg->event_prefix))
		return bad(h, "service %s: invalid event prefix '%.64s'",
		           cfg->name, cfg->event_prefix);
	for (size_t i = 0; i < cfg->n_endpoints; i++)
		if (check_endpoint(h, &cfg->endpoints[i]) < 0)
			return -1;
	return 0;
}

/* ---- the struct and its references ---- */

static void svc_free(struct shipc_svc *svc)
{
	for (size_t i = 0; i < svc->n_eps; i++) {
		for (size_t j = 0; j < svc->eps[i].n_cmds; j++)
			free(svc->eps[i].cmds[j].name);
		free(svc->eps[i].cmds);
	}
	free(svc->eps);
	free(svc->name);
	free(svc);
}

/* Lock held. */
static void svc_unref(struct shipc_svc *svc)
{
	if (--svc->refs == 0)
		svc_free(svc);
}

/* The handlers: the configuration's functions and command names. */
static struct shipc_svc *svc_new(struct shipc *h,
                                 const struct shipc_svc_config *cfg)
{
	struct shipc_svc *svc = calloc(1, sizeof(*svc));
	if (!svc)
		return NULL;
	svc->h = h;
	svc->refs = 1;
	svc->drain_ms = cfg->drain_ms ? cfg->drain_ms : SVC_DRAIN_MS;
	svc->n_eps = cfg->n_endpoints;
	if (!(svc->name = strdup(cfg->name)) ||
	    !(svc->eps = calloc(svc->n_eps + 1, sizeof(*svc->eps))))
		goto error;
	for (size_t i = 0; i < svc->n_eps; i++) {
		const struct shipc_svc_endpoint *e = &cfg->endpoints[i];
		struct svc_ep *ep = &svc->eps[i];
		ep->fn = e->fn;
		ep->arg = e->arg;
		if (!(ep->cmds = calloc(e->n_commands + 1, sizeof(*ep->cmds))))
			goto error;
		for (size_t j = 0; j < e->n_commands; j++) {
			ep->cmds[j].fn = e->commands[j].fn;
			ep->cmds[j].arg = e->commands[j].arg;
			if (!(ep->cmds[j].name = strdup(e->commands[j].name)))
				goto error;
			ep->n_cmds = j + 1;
		}
	}
	return svc;
error:
	svc_free(svc);
	return NULL;
}

/* ---- the ServiceAdd frame ---- */

struct add_frame {
	Ship__ClientFrame f;
	Ship__ServiceAdd add;
	Ship__ServiceEndpoint *eps, **epp;
	Ship__Header *hs, **hp; /* the service's metadata, then endpoints' */
	char **cmds;
};

static void add_frame_finish(struct add_frame *a)
{
	free(a->eps);
	free(a->epp);
	free(a->hs);
	free(a->hp);
	free(a->cmds);
}

static Ship__Header **headers_of(struct add_frame *a, size_t *used,
                                 const struct shipc_header *m, size_t n)
{
	Ship__Header **first = a->hp + *used;
	for (size_t i = 0; i < n; i++, (*used)++) {
		Ship__Header *hd = &a->hs[*used];
		ship__header__init(hd);
		hd->key = (char *)m[i].key;
		hd->value = (char *)m[i].value;
		a->hp[*used] = hd;
	}
	return first;
}

static void endpoint_frame(struct add_frame *a, size_t i,
                           const struct shipc_svc_endpoint *e, size_t *nh,
                           size_t *nc)
{
	Ship__ServiceEndpoint *p = &a->eps[i];
	ship__service_endpoint__init(p);
	p->name = (char *)e->name;
	p->subject = (char *)or_empty(e->subject);
	p->group = (char *)or_empty(e->group);
	p->queue_group = (char *)or_empty(e->queue_group);
	p->no_queue = e->no_queue != 0;
	p->metadata = headers_of(a, nh, e->metadata, e->n_metadata);
	p->n_metadata = e->n_metadata;
	p->prefix = e->prefix != 0;
	p->default_handler = e->fn != NULL;
	p->commands = a->cmds + *nc;
	p->n_commands = e->n_commands;
	for (size_t j = 0; j < e->n_commands; j++)
		a->cmds[(*nc)++] = (char *)e->commands[j].name;
	a->epp[i] = p;
}

/* Fill a with cfg's ServiceAdd (pointing into cfg). 0 or -1 (ENOMEM). */
static int add_frame_init(struct add_frame *a,
                          const struct shipc_svc_config *cfg)
{
	size_t n = cfg->n_endpoints, n_hs = cfg->n_metadata, n_cmds = 0;
	for (size_t i = 0; i < n; i++) {
		n_hs += cfg->endpoints[i].n_metadata;
		n_cmds += cfg->endpoints[i].n_commands;
	}
	*a = (struct add_frame){0};
	a->eps = calloc(n + 1, sizeof(*a->eps));
	a->epp = calloc(n + 1, sizeof(*a->epp));
	a->hs = calloc(n_hs + 1, sizeof(*a->hs));
	a->hp = calloc(n_hs + 1, sizeof(*a->hp));
	a->cmds = calloc(n_cmds + 1, sizeof(*a->cmds));
	if (!a->eps || !a->epp || !a->hs || !a->hp || !a->cmds) {
		add_frame_finish(a);
		return -1;
	}
	ship__client_frame__init(&a->f);
	ship__service_add__init(&a->add);
	Ship__ServiceAdd *s = &a->add;
	size_t nh = 0, nc = 0;
	s->name = (char *)cfg->name;
	s->version = (char *)cfg->version;
	s->description = (char *)or_empty(cfg->description);
	s->metadata = headers_of(a, &nh, cfg->metadata, cfg->n_metadata);
	s->n_metadata = cfg->n_metadata;
	for (size_t i = 0; i < n; i++)
		endpoint_frame(a, i, &cfg->endpoints[i], &nh, &nc);
	s->endpoints = a->epp;
	s->n_endpoints = n;
	s->timeout_ms = cfg->timeout_ms;
	s->drain_ms = cfg->drain_ms;
	s->max_pending = cfg->max_pending;
	s->event_prefix = (char *)or_empty(cfg->event_prefix);
	s->event_source = (char *)or_empty(cfg->event_source);
	a->f.body_case = SHIP__CLIENT_FRAME__BODY_SERVICE_ADD;
	a->f.service_add = s;
	return 0;
}

/* ---- the route: frames of the service's id other than its end ---- */

static void on_push(struct shipc *h, struct call *c, const Ship__ServerFrame *f);
static void on_route_lost(struct shipc *h, const struct shipc_msg *m, int err,
                          void *arg);

/* Lock held: route the next frame of svc's id to on_push. */
static int route(struct shipc_svc *svc)
{
	struct call *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	c->id = svc->stream;
	c->on_reply = on_push;
	c->cb = on_route_lost;
	c->arg = svc;
	c->out = svc;
	if (ipc_idmap_put(&svc->h->calls, svc->stream, c) < 0) {
		free(c);
		return -1;
	}
	svc->route = c;
	svc->refs++;
	return 0;
}

/* Lock held: take the route back unless a frame is on its way to it. */
static void unroute(struct shipc_svc *svc)
{
	struct shipc *h = svc->h;
	if (!svc->route || ipc_idmap_get(&h->calls, svc->stream) != svc->route)
		return;
	ipc_idmap_del(&h->calls, svc->stream);
	free(svc->route);
	svc->route = NULL;
	svc_unref(svc);
}

/* Lock held: forget svc's stream here (shipd has no instance of it, or
 * must not be told): no sub, no route. */
static void drop(struct shipc_svc *svc)
{
	struct shipc *h = svc->h;
	svc->ended = true;
	svc->started = false;
	unroute(svc);
	if (svc->s && ipc_idmap_get(&h->subs, svc->stream) == svc->s) {
		ipc_idmap_del(&h->subs, svc->stream);
		sub_free(svc->s);
		svc->s = NULL;
		svc_unref(svc);
	}
}

/* Lock held: svc ended for good (err: why); the sub stays, with nothing
 * to re-send. */
static void end_for_good(struct shipc_svc *svc, int err)
{
	svc->ended = true;
	svc->started = false;
	svc->err = err;
	if (svc->s)
		ipc_buf_reset(&svc->s->open, 0);
	unroute(svc);
}

/* A request as the app sees it, and its handler. */
struct dispatch {
	shipc_svc_fn *fn;
	void *arg;
	struct shipc_svc_req req;
	struct shipc_header stack[STACK_HEADERS];
	struct shipc_header *hs;
};

static void handler_of(const struct svc_ep *ep, const char *command,
                       struct dispatch *d)
{
	d->fn = ep->fn;
	d->arg = ep->arg;
	if (!command[0])
		return;
	for (size_t i = 0; i < ep->n_cmds; i++) {
		if (!strcmp(ep->cmds[i].name, command)) {
			d->fn = ep->cmds[i].fn;
			d->arg = ep->cmds[i].arg;
			return;
		}
	}
}

/* Lock held: a ServiceRequest into d (valid while f is). */
static void take_request(struct shipc_svc *svc, const Ship__ServiceRequest *r,
                         struct dispatch *d)
{
	const Ship__Msg *m = r->msg;
	if (!m || r->endpoint >= svc->n_eps) {
		shipc_log(LOG_WARNING, "libshipc: service %s: a request for no "
		          "endpoint of it", svc->name);
		return;
	}
	handler_of(&svc->eps[r->endpoint], r->command, d);
	if (!d->fn) {
		shipc_log(LOG_WARNING, "libshipc: service %s: no handler for "
		          "command '%s'", svc->name, r->command);
		return;
	}
	d->hs = d->stack;
	if (m->n_headers > STACK_HEADERS &&
	    !(d->hs = calloc(m->n_headers, sizeof(*d->hs)))) {
		d->fn = NULL; /* shipd answers it 504 in time */
		return;
	}
	struct shipc_msg msg;
	msg_from_ship(&msg, d->hs, m, 0);
	d->req = (struct shipc_svc_req){
		.svc = svc,
		.token = r->token,
		.endpoint = r->endpoint,
		.command = r->command,
		.subject = msg.subject,
		.reply = msg.reply,
		.data = msg.data,
		.len = msg.len,
		.headers = msg.headers,
		.n_headers = msg.n_headers,
		.timeout_ms = r->timeout_ms,
	};
}

/* Lock held: shipd refused the ServiceAdd (the first, or the one sent
 * again after a reconnect). No StreamEnd follows. */
static void refused(struct shipc_svc *svc, int err)
{
	struct shipc *h = svc->h;
	if (svc->listed && err == EAGAIN) {
		/* shipd is stopping: the next connection adds it again. */
		svc->gone_gen = h->gen;
		shipc_log(LOG_WARNING, "libshipc: service %s not added again "
		          "yet: %s", svc->name, h->last_error);
		return;
	}
	if (svc->listed)
		shipc_log(LOG_ERR, "libshipc: service %s could not be added "
		          "again: %s", svc->name, h->last_error);
	end_for_good(svc, err);
}

static void started(struct shipc_svc *svc, const Ship__ServiceStarted *st)
{
	snprintf(svc->id, sizeof(svc->id), "%s", st->id);
	svc->started = true;
	svc->gone_gen = 0;
	if (svc->listed)
		shipc_log(LOG_INFO, "libshipc: service %s added again as %s",
		          svc->name, svc->id);
}

/* Without the lock, holding the route's reference: a frame of the
 * service's id that is not its end. */
static void on_push(struct shipc *h, struct call *c, const Ship__ServerFrame *f)
{
	struct shipc_svc *svc = c->out;
	struct dispatch d = {0};
	pthread_mutex_lock(&h->mu);
	if (svc->route == c)
		svc->route = NULL; /* the connection frees c */
	if (c->err && !svc->ended) {
		refused(svc, c->err);
	} else if (!svc->ended && !c->err) {
		if (f->body_case == SHIP__SERVER_FRAME__BODY_SERVICE_STARTED)
			started(svc, f->service_started);
		else if (f->body_case == SHIP__SERVER_FRAME__BODY_SERVICE_REQUEST)
			take_request(svc, f->service_request, &d);
	}
	/* Before the handler: it may wait for shipd, which reads on. */
	if (!svc->ended && !svc->route && route(svc) < 0) {
		set_error(h, "service %s: out of memory", svc->name);
		end_for_good(svc, ENOMEM);
	}
	pthread_mutex_unlock(&h->mu);
	if (d.fn)
		d.fn(h, &d.req, d.arg);
	if (d.hs != d.stack)
		free(d.hs);
	pthread_mutex_lock(&h->mu);
	svc_unref(svc);
	pthread_mutex_unlock(&h->mu);
}

/* Without the lock: the route dropped unanswered: the connection was lost
 * (its instance with it) or the handle is closing. */
static void on_route_lost(struct shipc *h, const struct shipc_msg *m, int err,
                          void *arg)
{
	(void)m;
	struct shipc_svc *svc = arg;
	pthread_mutex_lock(&h->mu);
	svc->route = NULL;
	svc->started = false;
	/* The ServiceAdd goes again on the next connection, before anything
	 * of it is read: its answer must find a route. */
	if (err == ECONNRESET && !h->stop && !svc->ended && route(svc) < 0)
		end_for_good(svc, ENOMEM);
	svc_unref(svc);
	pthread_mutex_unlock(&h->mu);
}

/* ---- the sub: the StreamEnd ---- */

static void svc_end(struct shipc *h, const struct shipc_msg *m, int err,
                    void *arg);

/* Lock held: a new sub for svc under its id, with open (may be empty). */
static struct sub *sub_for(struct shipc_svc *svc, const struct ipc_buf *open)
{
	struct sub *s = calloc(1, sizeof(*s));
	if (!s || !(s->what = strdup(svc->name)) ||
	    ipc_buf_append(&s->open, ipc_buf_head(open), ipc_buf_used(open)) < 0 ||
	    ipc_idmap_put(&svc->h->subs, svc->stream, s) < 0) {
		if (s)
			sub_free(s);
		return NULL;
	}
	s->id = svc->stream;
	s->cb = svc_end;
	s->arg = svc;
	s->confirmed = true;
	return s;
}

static void unlist(struct shipc_svc *svc)
{
	if (!svc->listed)
		return;
	for (struct shipc_svc **p = &svc->h->svcs; *p; p = &(*p)->next) {
		if (*p == svc) {
			*p = svc->next;
			break;
		}
	}
	svc->listed = false;
}

/* Without the lock: the StreamEnd (the connection frees the sub), or the
 * handle closing. */
static void svc_end(struct shipc *h, const struct shipc_msg *m, int err,
                    void *arg)
{
	struct shipc_svc *svc = arg;
	if (m)
		return; /* no messages on a service's stream */
	pthread_mutex_lock(&h->mu);
	struct sub *old = svc->s;
	svc->s = NULL;
	if (h->stop) {
		/* shipc_close(): the handle frees what it owns. */
		svc->ended = true;
		unlist(svc);
		if (!svc->stopping) {
			svc->stopping = true;
			svc_unref(svc); /* the app's */
		}
	} else if (svc->stopping) {
		end_for_good(svc, err);
	} else if (!err || err == EAGAIN) {
		/* Unasked, shipd drains its services when it stops: add it
		 * again on the next connection, with the same frame. */
		svc->started = false;
		svc->gone_gen = h->gen;
		if (old && (svc->s = sub_for(svc, &old->open)))
			svc->refs++;
		else
			end_for_good(svc, ENOMEM);
		shipc_log(LOG_INFO, "libshipc: shipd stopped service %s; it is "
		          "added again when shipd is back", svc->name);
	} else {
		/* The instance failed: the app learns it from
		 * shipc_svc_ended() or shipc_svc_run(). Keep a sub so that
		 * the handle still owns it, sending nothing again. */
		shipc_log(LOG_WARNING, "libshipc: shipd ended service %s: %s",
		          svc->name, h->last_error);
		end_for_good(svc, err);
		struct ipc_buf none = {0};
		if (old && (svc->s = sub_for(svc, &none)))
			svc->refs++;
	}
	svc_unref(svc); /* the old sub's */
	pthread_mutex_unlock(&h->mu);
}

/* ---- add, id ---- */

/* Lock held: register svc's sub and route and send its ServiceAdd. */
static int open_stream(struct shipc_svc *svc, struct add_frame *a)
{
	struct shipc *h = svc->h;
	struct ipc_buf open = {0};
	if (wait_for_space(h) < 0)
		return -1;
	svc->stream = ++h->next_id;
	a->f.id = svc->stream;
	if (ipc_frame_pack(&open, &a->f.base, IPC_FRAME_LIMIT) < 0) {
		ipc_buf_finish(&open);
		set_error(h, "service %s: its description is too large",
		          svc->name);
		errno = EMSGSIZE;
		return -1;
	}
	svc->s = sub_for(svc, &open);
	ipc_buf_finish(&open);
	if (!svc->s)
		return -1;
	svc->refs++;
	if (route(svc) < 0)
		return -1;
	return queue_frame(h, &a->f, true);
}

/* Lock held: wait for the ServiceStarted; 0 or -1 (errno). */
static int wait_started(struct shipc_svc *svc)
{
	struct shipc *h = svc->h;
	uint64_t gen = h->gen;
	uint64_t deadline = mono_ms() + SVC_TIMEOUT_MS + STOP_MARGIN_MS;
	while (!svc->started && !svc->ended) {
		uint64_t now = mono_ms();
		if (!h->connected || h->gen != gen) {
			set_error(h, "lost shipd while adding service %s",
			          svc->name);
			errno = ECONNRESET;
			return -1;
		}
		if (now >= deadline) {
			set_error(h, "no answer from shipd");
			errno = ETIMEDOUT;
			return -1;
		}
		read_once(h, (int)(deadline - now));
	}
	if (svc->ended) {
		errno = svc->err ? svc->err : EPROTO;
		return -1;
	}
	return 0;
}

/* Lock held: tell shipd to end svc's stream (it drains). */
static void send_unsubscribe(struct shipc_svc *svc)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Unsubscribe u = SHIP__UNSUBSCRIBE__INIT;
	u.stream = svc->stream;
	f.body_case = SHIP__CLIENT_FRAME__BODY_UNSUBSCRIBE;
	f.unsubscribe = &u;
	queue_frame(svc->h, &f, true);
	svc->unsubscribed = true;
}

/* Lock held: whether h hosts a service named name (until it is
 * stopped, even ended). */
static bool hosted(struct shipc *h, const char *name)
{
	for (struct shipc_svc *svc = h->svcs; svc; svc = svc->next) {
		if (!svc->stopping && !strcmp(svc->name, name)) {
			set_error(h, "this handle hosts service %s already", name);
			errno = EEXIST;
			return true;
		}
	}
	return false;
}

SHIPC_EXPORT struct shipc_svc *shipc_svc_add(struct shipc *h,
                                             const struct shipc_svc_config *cfg)
{
	if (check_config(h, cfg) < 0)
		return NULL;
	struct shipc_svc *svc = svc_new(h, cfg);
	struct add_frame a;
	if (!svc)
		return NULL;
	if (add_frame_init(&a, cfg) < 0) {
		svc_free(svc);
		return NULL;
	}
	pthread_mutex_lock(&h->mu);
	int r = hosted(h, cfg->name) ? -1 : open_stream(svc, &a);
	if (r == 0)
		r = wait_started(svc);
	if (r < 0) {
		int saved = errno;
		/* Unanswered: shipd may still make it; it must not stay. */
		if (saved == ETIMEDOUT && h->connected)
			send_unsubscribe(svc);
		drop(svc);
		svc_unref(svc);
		svc = NULL;
		errno = saved;
	} else {
		svc->next = h->svcs;
		h->svcs = svc;
		svc->listed = true;
	}
	pthread_mutex_unlock(&h->mu);
	add_frame_finish(&a);
	return svc;
}

SHIPC_EXPORT const char *shipc_svc_id(const struct shipc_svc *svc)
{
	return svc ? svc->id : "";
}

/* Lock held. */
static int ended_err(const struct shipc_svc *svc)
{
	return svc->ended ? (svc->err ? svc->err : ECONNABORTED) : 0;
}

SHIPC_EXPORT int shipc_svc_ended(const struct shipc_svc *svc)
{
	if (!svc)
		return EINVAL;
	pthread_mutex_lock(&svc->h->mu);
	int err = ended_err(svc);
	pthread_mutex_unlock(&svc->h->mu);
	return err;
}

/* ---- answers ---- */

struct respond_frame {
	Ship__ClientFrame f;
	Ship__ServiceRespond r;
	Ship__Header *hs, **hp;
};

static int check_reply(struct shipc *h, const struct shipc_svc_reply *r)
{
	if (r->len && !r->data)
		return bad(h, "reply data missing");
	if (r->n_headers > MAX_HEADERS || (r->n_headers && !r->headers))
		return bad(h, "invalid reply headers");
	for (size_t i = 0; i < r->n_headers; i++)
		if (!ipc_header_key_valid(r->headers[i].key) ||
		    !ipc_header_value_valid(r->headers[i].value))
			return bad(h, "invalid header '%.64s'",
			           or_empty(r->headers[i].key));
	if (r->error_code && (!r->error_text || !r->error_text[0] ||
	                      !ipc_header_value_valid(r->error_text)))
		return bad(h, "an error needs a text of one line");
	if (!r->error_code && r->error_text)
		return bad(h, "an error text needs an error code");
	if (r->event_type && !ipc_subject_valid(r->event_type))
		return bad(h, "invalid event type '%.64s'", r->event_type);
	if (r->event_json && !r->event_type)
		return bad(h, "an event payload needs an event type");
	return 0;
}

static int respond_frame_init(struct respond_frame *rf, struct shipc_svc *svc,
                              uint64_t token, const struct shipc_svc_reply *r)
{
	size_t n = r->n_headers;
	rf->hs = calloc(n + 1, sizeof(*rf->hs));
	rf->hp = calloc(n + 1, sizeof(*rf->hp));
	if (!rf->hs || !rf->hp) {
		free(rf->hs);
		free(rf->hp);
		return -1;
	}
	ship__client_frame__init(&rf->f);
	ship__service_respond__init(&rf->r);
	for (size_t i = 0; i < n; i++) {
		ship__header__init(&rf->hs[i]);
		rf->hs[i].key = (char *)r->headers[i].key;
		rf->hs[i].value = (char *)r->headers[i].value;
		rf->hp[i] = &rf->hs[i];
	}
	rf->r.service = svc->stream;
	rf->r.token = token;
	rf->r.data.data = (uint8_t *)r->data;
	rf->r.data.len = r->len;
	rf->r.headers = rf->hp;
	rf->r.n_headers = n;
	rf->r.error_code = r->error_code;
	rf->r.error = (char *)or_empty(r->error_text);
	rf->r.event_type = (char *)or_empty(r->event_type);
	rf->r.event_json = (char *)or_empty(r->event_json);
	rf->f.body_case = SHIP__CLIENT_FRAME__BODY_SERVICE_RESPOND;
	rf->f.service_respond = &rf->r;
	return 0;
}

/* Lock held: whether svc can answer now (else errno and last_error). */
static bool answerable(struct shipc_svc *svc)
{
	if (svc->ended) {
		set_error(svc->h, "service %s has ended", svc->name);
		errno = ENOENT;
		return false;
	}
	return true;
}

/* Send an answer: not waited for (frame id 0), or waited for. */
static int answer(struct shipc_svc *svc, uint64_t token,
                  const struct shipc_svc_reply *r, bool wait)
{
	if (!svc) {
		errno = EINVAL;
		return -1;
	}
	struct shipc *h = svc->h;
	struct respond_frame rf;
	if (check_reply(h, r) < 0 || respond_frame_init(&rf, svc, token, r) < 0)
		return -1;
	int ret;
	pthread_mutex_lock(&h->mu);
	bool ok = answerable(svc);
	pthread_mutex_unlock(&h->mu);
	if (!ok) {
		ret = -1;
	} else if (wait) {
		ret = call_wait_reply(h, &rf.f, NULL, NULL, SVC_TIMEOUT_MS);
	} else {
		/* A caller waits for it: write it now, as shipc_respond(). */
		pthread_mutex_lock(&h->mu);
		ret = wait_for_space(h);
		if (ret == 0)
			ret = queue_frame(h, &rf.f, true);
		pthread_mutex_unlock(&h->mu);
	}
	int saved = errno;
	free(rf.hs);
	free(rf.hp);
	errno = saved;
	return ret;
}

SHIPC_EXPORT int shipc_svc_respond(struct shipc_svc *svc, uint64_t token,
                                   const void *data, size_t len)
{
	struct shipc_svc_reply r = {.data = data, .len = len};
	return answer(svc, token, &r, false);
}

SHIPC_EXPORT int shipc_svc_error(struct shipc_svc *svc, uint64_t token,
                                 unsigned code, const char *text,
                                 const void *data, size_t len)
{
	if (svc && !code)
		return bad(svc->h, "an error needs a code (> 0)");
	struct shipc_svc_reply r = {.data = data, .len = len,
	                            .error_code = code, .error_text = text};
	return answer(svc, token, &r, false);
}

SHIPC_EXPORT int shipc_svc_reply(struct shipc_svc *svc, uint64_t token,
                                 const struct shipc_svc_reply *r)
{
	if (svc && !r)
		return bad(svc->h, "no reply");
	return answer(svc, token, r, true);
}

/* ---- stop and run ---- */

/* Lock held: drain every service of h marked stopping, for up to the
 * longest drain (plus a margin), then free them. 0, or -1 with errno
 * (ETIMEDOUT: shipd did not end one in time; it is forgotten all the
 * same). */
static int stop_marked(struct shipc *h)
{
	uint32_t drain = 0;
	uint64_t gen = h->gen;
	for (struct shipc_svc *svc = h->svcs; svc; svc = svc->next) {
		if (!svc->stopping)
			continue;
		if (svc->drain_ms > drain)
			drain = svc->drain_ms;
		/* Not connected, or drained by a shipd that is stopping:
		 * there is no instance to drain. */
		if (!svc->ended &&
		    (!h->connected || svc->gone_gen == h->gen))
			drop(svc);
		else if (!svc->ended && !svc->unsubscribed)
			send_unsubscribe(svc);
	}
	uint64_t deadline = mono_ms() + drain + STOP_MARGIN_MS;
	int err = 0;
	for (;;) {
		bool waiting = false;
		for (struct shipc_svc *svc = h->svcs; svc; svc = svc->next)
			waiting |= svc->stopping && !svc->ended;
		uint64_t now = mono_ms();
		if (!waiting)
			break;
		if (!h->connected || h->gen != gen)
			break; /* the instances went with the connection */
		if (now >= deadline) {
			set_error(h, "shipd did not end the service in time");
			err = ETIMEDOUT;
			break;
		}
		read_once(h, (int)(deadline - now));
	}
	struct shipc_svc **p = &h->svcs;
	while (*p) {
		struct shipc_svc *svc = *p;
		if (!svc->stopping) {
			p = &svc->next;
			continue;
		}
		*p = svc->next;
		svc->listed = false;
		drop(svc);
		svc_unref(svc); /* the app's */
	}
	errno = err;
	return err ? -1 : 0;
}

SHIPC_EXPORT int shipc_svc_stop(struct shipc_svc *svc)
{
	if (!svc) {
		errno = EINVAL;
		return -1;
	}
	struct shipc *h = svc->h;
	pthread_mutex_lock(&h->mu);
	/* Others stopping (from other threads) are waited for too: they
	 * are freed by whoever is done first. */
	svc->stopping = true;
	int r = stop_marked(h);
	pthread_mutex_unlock(&h->mu);
	return r;
}

/* Lock held: why a service of h ended on its own, or 0. */
static int ended_alone(struct shipc *h)
{
	for (struct shipc_svc *svc = h->svcs; svc; svc = svc->next)
		if (svc->ended && !svc->stopping)
			return ended_err(svc);
	return h->dead ? ENOTCONN : 0;
}

SHIPC_EXPORT int shipc_svc_run(struct shipc *h, volatile int *stop)
{
	int err;
	for (;;) {
		pthread_mutex_lock(&h->mu);
		err = ended_alone(h);
		pthread_mutex_unlock(&h->mu);
		if (err || (stop && *stop))
			break;
		shipc_dispatch(h, RUN_SLICE_MS);
	}
	pthread_mutex_lock(&h->mu);
	for (struct shipc_svc *svc = h->svcs; svc; svc = svc->next)
		svc->stopping = true;
	int r = stop_marked(h);
	pthread_mutex_unlock(&h->mu);
	if (err) {
		errno = err;
		return -1;
	}
	return r;
}

/* ---- discovery ---- */

struct discover_out {
	char **replies;
	size_t n;
};

SHIPC_EXPORT void shipc_svc_replies_free(char **replies, size_t n)
{
	for (size_t i = 0; replies && i < n; i++)
		free(replies[i]);
	free(replies);
}

static void discover_reply(struct shipc *h, struct call *c,
                           const Ship__ServerFrame *f)
{
	(void)h;
	struct discover_out *out = c->out;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_SERVICE_DISCOVERED))
		return;
	const Ship__ServiceDiscovered *d = f->service_discovered;
	/* One more than needed: an empty list is not NULL. */
	if (!(out->replies = calloc(d->n_replies + 1, sizeof(char *)))) {
		c->err = ENOMEM;
		return;
	}
	for (size_t i = 0; i < d->n_replies; i++) {
		if (!(out->replies[i] = strdup(d->replies[i]))) {
			c->err = ENOMEM;
			return; /* the caller frees the first out->n */
		}
		out->n = i + 1;
	}
}

static const char *verb_of(const char *verb)
{
	static const char *const verbs[] = {"PING", "INFO", "STATS"};
	for (size_t i = 0; verb && i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcasecmp(verb, verbs[i]))
			return verbs[i];
	return NULL;
}

SHIPC_EXPORT int shipc_svc_discover(struct shipc *h, const char *verb,
                                    const char *name, const char *id,
                                    uint32_t wait_ms, char ***replies,
                                    size_t *n)
{
	const char *v = verb_of(verb);
	if (!v)
		return bad(h, "verb '%.16s' is not PING, INFO or STATS",
		           or_empty(verb));
	if (!replies || !n)
		return bad(h, "nowhere to put the replies");
	if (name && !ipc_svc_name_valid(name))
		return bad(h, "invalid service name '%.64s'", name);
	if (id && (!name || !id[0] || !ipc_subject_valid(id) ||
	           strchr(id, '.') || strchr(id, '*') || strchr(id, '>')))
		return bad(h, "%s", name ? "invalid instance id"
		                         : "an instance id needs a name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ServiceDiscover sd = SHIP__SERVICE_DISCOVER__INIT;
	sd.verb = (char *)v;
	sd.name = (char *)or_empty(name);
	sd.id = (char *)or_empty(id);
	sd.wait_ms = wait_ms;
	f.body_case = SHIP__CLIENT_FRAME__BODY_SERVICE_DISCOVER;
	f.service_discover = &sd;
	struct discover_out out = {0};
	uint32_t wait = wait_ms ? wait_ms : DISCOVER_WAIT_MS;
	int timeout = wait > INT_MAX / 2 ? INT_MAX / 2 : (int)wait;
	if (call_wait_reply(h, &f, discover_reply, &out, timeout) < 0) {
		int saved = errno;
		shipc_svc_replies_free(out.replies, out.n);
		errno = saved;
		return -1;
	}
	*replies = out.replies;
	*n = out.n;
	return 0;
}
