/* SPDX-License-Identifier: MIT */
/* libshipc's calls: publish, subscribe, request/reply, flush, status and
 * the operator's (clients, reload, policies). */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shipc-private.h"

#define MAX_HEADERS 256

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int call_register(struct shipc *h, struct call *c)
{
	c->id = ++h->next_id;
	return ipc_idmap_put(&h->calls, c->id, c);
}

int call_wait(struct shipc *h, struct call *c, int timeout_ms)
{
	/* shipd answers every request; the margin only guards against a
	 * daemon that stopped answering without closing the socket. */
	uint64_t deadline = timeout_ms < 0
	                            ? UINT64_MAX
	                            : mono_ms() + (uint64_t)timeout_ms +
	                                      IPC_REPLY_MARGIN_MS;
	while (!c->done) {
		uint64_t now = mono_ms();
		if (now >= deadline) {
			ipc_idmap_del(&h->calls, c->id);
			set_error(h, "no answer from shipd");
			errno = ETIMEDOUT;
			return -1;
		}
		uint64_t left = deadline - now;
		read_once(h, deadline == UINT64_MAX ? -1
		             : left > INT_MAX       ? INT_MAX
		                                    : (int)left);
	}
	if (c->err) {
		errno = c->err;
		return -1;
	}
	return 0;
}

int call_start(struct shipc *h, struct call *c, Ship__ClientFrame *f,
               int timeout_ms)
{
	if (call_register(h, c) < 0)
		return -1;
	f->id = c->id;
	/* A waiter's frame goes out now (latency); calls in flight by the
	 * many are batched by the writer thread. */
	if (queue_frame(h, f, c->waiter) < 0) {
		ipc_idmap_del(&h->calls, c->id);
		return -1;
	}
	return c->waiter ? call_wait(h, c, timeout_ms) : 0;
}

int call_wait_reply(struct shipc *h, Ship__ClientFrame *f, call_reply_fn *fn,
                    void *out, int timeout_ms)
{
	struct call c = {.waiter = true, .on_reply = fn, .out = out};
	pthread_mutex_lock(&h->mu);
	int r = wait_for_space(h);
	if (r == 0)
		r = call_start(h, &c, f, timeout_ms);
	pthread_mutex_unlock(&h->mu);
	return r;
}

bool reply_is(struct call *c, const Ship__ServerFrame *f,
              Ship__ServerFrame__BodyCase body)
{
	if (c->err)
		return false;
	if (f->body_case != body) {
		c->err = EPROTO;
		return false;
	}
	return true;
}

int bad_arg(struct shipc *h, const char *what)
{
	set_error(h, "%s", what);
	errno = EINVAL;
	return -1;
}

/* ---- messages ---- */

#define STACK_HEADERS 16

struct ship_msg {
	Ship__Msg m;
	Ship__Header **hp;
	Ship__Header *hs;
	Ship__Header *stack_hp[STACK_HEADERS];
	Ship__Header stack_hs[STACK_HEADERS];
};

static void ship_msg_finish(struct ship_msg *sm)
{
	if (sm->hp != sm->stack_hp) {
		free(sm->hp);
		free(sm->hs);
	}
}

static int ship_msg_init(struct shipc *h, struct ship_msg *sm,
                         const struct shipc_msg *msg, bool for_request)
{
	if (!msg || !ipc_subject_valid(msg->subject) ||
	    (!for_request && msg->reply && msg->reply[0] &&
	     !ipc_subject_valid(msg->reply)) ||
	    msg->n_headers > MAX_HEADERS || (msg->len && !msg->data)) {
		set_error(h, "invalid subject, reply or headers");
		errno = EINVAL;
		return -1;
	}
	sm->hp = sm->stack_hp;
	sm->hs = sm->stack_hs;
	if (msg->n_headers > STACK_HEADERS) {
		sm->hp = calloc(msg->n_headers, sizeof(*sm->hp));
		sm->hs = calloc(msg->n_headers, sizeof(*sm->hs));
		if (!sm->hp || !sm->hs) {
			free(sm->hp);
			free(sm->hs);
			sm->hp = sm->stack_hp;
			return -1;
		}
	}
	ship__msg__init(&sm->m);
	sm->m.subject = (char *)msg->subject;
	sm->m.reply = (char *)(!for_request && msg->reply ? msg->reply : "");
	sm->m.data.data = (uint8_t *)msg->data;
	sm->m.data.len = msg->len;
	for (size_t i = 0; i < msg->n_headers; i++) {
		const struct shipc_header *hd = &msg->headers[i];
		if (!ipc_header_key_valid(hd->key) ||
		    !ipc_header_value_valid(hd->value)) {
			set_error(h, "invalid header '%.64s'",
			          hd->key ? hd->key : "");
			ship_msg_finish(sm);
			errno = EINVAL;
			return -1;
		}
		ship__header__init(&sm->hs[i]);
		sm->hs[i].key = (char *)hd->key;
		sm->hs[i].value = (char *)hd->value;
		sm->hp[i] = &sm->hs[i];
	}
	sm->m.n_headers = msg->n_headers;
	sm->m.headers = sm->hp;
	return 0;
}

static bool msg_valid(struct shipc *h, const struct shipc_msg *msg)
{
	if (!msg || !ipc_subject_valid(msg->subject) ||
	    (msg->reply && msg->reply[0] && !ipc_subject_valid(msg->reply)) ||
	    msg->n_headers > MAX_HEADERS || (msg->len && !msg->data)) {
		set_error(h, "invalid subject, reply or headers");
		errno = EINVAL;
		return false;
	}
	for (size_t i = 0; i < msg->n_headers; i++) {
		if (!ipc_header_key_valid(msg->headers[i].key) ||
		    !ipc_header_value_valid(msg->headers[i].value)) {
			set_error(h, "invalid header '%.64s'",
			          msg->headers[i].key ? msg->headers[i].key : "");
			errno = EINVAL;
			return false;
		}
	}
	return true;
}

_Static_assert(sizeof(struct shipc_header) == sizeof(struct ipc_header) &&
                       offsetof(struct shipc_header, value) ==
                               offsetof(struct ipc_header, value),
               "header layouts differ");

static int publish(struct shipc *h, const struct shipc_msg *msg, int flags,
                   bool now)
{
	if (!msg_valid(h, msg))
		return -1;
	bool confirm = flags & SHIPC_PUB_CONFIRM;
	struct ipc_publish p = {
		.subject = msg->subject,
		.reply = msg->reply,
		.data = msg->data,
		.len = msg->len,
		.headers = (const struct ipc_header *)msg->headers,
		.n_headers = msg->n_headers,
		.fail_if_disconnected = confirm,
	};
	struct call c = {.waiter = true};
	pthread_mutex_lock(&h->mu);
	int r = wait_for_space(h);
	if (r == 0 && confirm) {
		r = call_register(h, &c);
		p.id = c.id;
	}
	if (r == 0)
		r = queue_publish(h, &p, now || confirm);
	if (r < 0 && confirm)
		ipc_idmap_del(&h->calls, c.id);
	else if (r == 0 && confirm)
		r = call_wait(h, &c, 0);
	pthread_mutex_unlock(&h->mu);
	return r;
}

SHIPC_EXPORT int shipc_publish_msg(struct shipc *h, const struct shipc_msg *msg,
                                   int flags)
{
	return publish(h, msg, flags, false);
}

SHIPC_EXPORT int shipc_publish(struct shipc *h, const char *subject,
                               const void *data, size_t len)
{
	struct shipc_msg m = {.subject = subject, .data = data, .len = len};
	return shipc_publish_msg(h, &m, 0);
}

SHIPC_EXPORT int shipc_respond(struct shipc *h, const struct shipc_msg *req,
                               const void *data, size_t len)
{
	if (!req || !req->reply || !req->reply[0]) {
		set_error(h, "the message has no reply subject");
		errno = EINVAL;
		return -1;
	}
	/* A reply is waited for: write it now rather than batch it. */
	struct shipc_msg m = {.subject = req->reply, .data = data, .len = len};
	return publish(h, &m, 0, true);
}

/* ---- status and flush: a status request is the cheapest barrier ---- */

/* What a status call fills: either, or neither (out NULL: a flush). */
struct status_out {
	struct shipc_status *st;
	struct shipc_limits *lim;
	struct shipc_uplink *up;
	bool too_old; /* lim asked of a shipd that does not report them */
};

static void fill_status(struct shipc_status *st, const Ship__StatusReply *r)
{
	memset(st, 0, sizeof(*st));
	snprintf(st->daemon_version, sizeof(st->daemon_version), "%s",
	         r->daemon_version);
	st->uptime_ms = r->uptime_ms;
	st->link = (enum shipc_link)r->link;
	st->link_changed_ms = r->link_changed_ms;
	snprintf(st->server_url, sizeof(st->server_url), "%s", r->server_url);
	snprintf(st->server_id, sizeof(st->server_id), "%s", r->server_id);
	st->rtt_us = r->rtt_us;
	st->reconnects = r->reconnects;
	st->clients = r->clients;
	st->subscriptions = r->subscriptions;
	st->requests_in_flight = r->requests_in_flight;
	st->dropped = r->dropped;
	st->msgs_in = r->msgs_in;
	st->msgs_out = r->msgs_out;
	snprintf(st->last_error, sizeof(st->last_error), "%s", r->last_error);
	st->pid = r->pid;
	snprintf(st->socket, sizeof(st->socket), "%s", r->socket);
}

static int fill_limits(struct shipc_limits *l, const Ship__StatusReply *r)
{
	/* Every limit is at least 1: 0 is a daemon from before them. */
	if (r->max_clients == 0)
		return ENOSYS;
	memset(l, 0, sizeof(*l));
	l->clients = r->clients;
	l->max_clients = r->max_clients;
	l->requests_in_flight = r->requests_in_flight;
	l->max_requests_total = r->max_requests_total;
	l->held = r->held_bytes;
	l->memory_limit = r->memory_limit;
	l->max_requests = r->max_requests;
	l->max_subscriptions = r->max_subscriptions;
	l->client_memory_limit = r->client_memory_limit;
	l->client_output_limit = r->client_output_limit;
	return 0;
}

static void fill_uplink(struct shipc_uplink *u, const Ship__UplinkStatus *r)
{
	memset(u, 0, sizeof(*u));
	if (!r)
		return; /* a shipd from before the fleet: no uplink */
	u->state = (enum shipc_uplink_state)r->state;
	snprintf(u->hub_domain, sizeof(u->hub_domain), "%s", r->hub_domain);
	snprintf(u->domain, sizeof(u->domain), "%s", r->domain);
	u->changed_ms = r->changed_ms;
	u->since_unix_ms = r->since_unix_ms;
	u->changes = r->changes;
	snprintf(u->last_error, sizeof(u->last_error), "%s", r->last_error);
	u->events_on_hub = r->events_on_hub;
	u->channels_on_hub = r->channels_on_hub;
	u->kv_on_hub = r->kv_on_hub;
	u->jobs_on_hub = r->jobs_on_hub;
	snprintf(u->hub_buckets, sizeof(u->hub_buckets), "%s", r->hub_buckets);
	u->rate_limit = r->rate_limit;
	snprintf(u->priority, sizeof(u->priority), "%s", r->priority);
	for (size_t i = 0; i < r->n_streams && i < SHIPC_UPLINK_STREAMS; i++) {
		const Ship__UplinkStream *s = r->streams[i];
		struct shipc_uplink_stream *o = &u->streams[u->n_streams++];
		snprintf(o->stream, sizeof(o->stream), "%s", s->stream);
		snprintf(o->hub_stream, sizeof(o->hub_stream), "%s", s->hub_stream);
		o->last_seq = s->last_seq;
		o->waiting_msgs = s->waiting_msgs;
		o->waiting_bytes = s->waiting_bytes;
		o->hub_seen_ms = s->hub_seen_ms;
		o->priority = s->priority;
		o->consumers = s->consumers;
		o->pending = s->pending;
		o->rate_limit = s->rate_limit;
		o->held = s->held;
	}
}

static void status_reply(struct shipc *h, struct call *c,
                         const Ship__ServerFrame *f)
{
	struct status_out *out = c->out;
	if (c->err || !out)
		return;
	if (f->body_case != SHIP__SERVER_FRAME__BODY_STATUS) {
		c->err = EPROTO;
		return;
	}
	if (out->st)
		fill_status(out->st, f->status);
	if (out->up)
		fill_uplink(out->up, f->status->uplink);
	if (out->lim) {
		c->err = fill_limits(out->lim, f->status);
		out->too_old = c->err == ENOSYS;
	}
}

static int status_call(struct shipc *h, struct status_out *out, int timeout)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__StatusRequest sr = SHIP__STATUS_REQUEST__INIT;
	f.body_case = SHIP__CLIENT_FRAME__BODY_STATUS;
	f.status = &sr;
	struct call c = {.waiter = true, .on_reply = status_reply, .out = out};
	pthread_mutex_lock(&h->mu);
	int r = call_start(h, &c, &f, timeout);
	if (out && out->too_old)
		set_error(h, "shipd is too old to report its limits");
	pthread_mutex_unlock(&h->mu);
	return r;
}

SHIPC_EXPORT int shipc_status(struct shipc *h, struct shipc_status *st)
{
	struct status_out out = {.st = st};
	return status_call(h, &out, 0);
}

SHIPC_EXPORT int shipc_uplink(struct shipc *h, struct shipc_uplink *out)
{
	struct status_out o = {.up = out};
	return status_call(h, &o, 0);
}

SHIPC_EXPORT int shipc_limits(struct shipc *h, struct shipc_limits *out)
{
	struct status_out o = {.lim = out};
	return status_call(h, &o, 0);
}

SHIPC_EXPORT int shipc_flush(struct shipc *h, int timeout_ms)
{
	/* shipd handles a connection's frames in order, so its answer to
	 * this comes after everything sent before. */
	return status_call(h, NULL, timeout_ms);
}

/* ---- operator calls ---- */

/* A list from shipc_clients() is the tail of a block that also keeps, by
 * client id, what struct shipc_client has no room for. */
struct client_extra {
	uint64_t id;
	uint64_t held;
	uint64_t denied;
	char user[64];
	char unit[256];
};

struct clients_block {
	size_t n;
	struct client_extra *extra; /* n, sorted by id, after the list */
	struct shipc_client list[];
};

static struct clients_block *block_of(const struct shipc_client *list)
{
	return (struct clients_block *)((char *)list -
	                                offsetof(struct clients_block, list));
}

static int extra_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct client_extra *)a)->id;
	uint64_t y = ((const struct client_extra *)b)->id;
	return (x > y) - (x < y);
}

static void client_from(struct shipc_client *o, const Ship__ClientInfo *ci)
{
	o->id = ci->id;
	o->pid = ci->pid;
	o->uid = ci->uid;
	o->gid = ci->gid;
	snprintf(o->name, sizeof(o->name), "%s", ci->name);
	o->subscriptions = ci->subscriptions;
	o->requests = ci->requests;
	o->bytes_in = ci->bytes_in;
	o->bytes_out = ci->bytes_out;
	o->frames_in = ci->frames_in;
	o->frames_out = ci->frames_out;
	o->dropped = ci->dropped;
	o->connected_ms = ci->connected_ms;
	o->queued = ci->queued;
}

static void clients_reply(struct shipc *h, struct call *c,
                          const Ship__ServerFrame *f)
{
	struct clients_block **out = c->out;
	if (c->err)
		return;
	if (f->body_case != SHIP__SERVER_FRAME__BODY_CLIENTS) {
		c->err = EPROTO;
		return;
	}
	size_t n = f->clients->n_clients;
	struct clients_block *b;
	b = calloc(1, sizeof(*b) + n * (sizeof(b->list[0]) + sizeof(*b->extra)));
	if (!b) {
		c->err = ENOMEM;
		return;
	}
	b->n = n;
	b->extra = (struct client_extra *)&b->list[n];
	for (size_t i = 0; i < n; i++) {
		const Ship__ClientInfo *ci = f->clients->clients[i];
		client_from(&b->list[i], ci);
		b->extra[i].id = ci->id;
		b->extra[i].held = ci->held;
		b->extra[i].denied = ci->denied;
		snprintf(b->extra[i].user, sizeof(b->extra[i].user), "%s",
		         ci->user);
		snprintf(b->extra[i].unit, sizeof(b->extra[i].unit), "%s",
		         ci->unit);
	}
	qsort(b->extra, n, sizeof(b->extra[0]), extra_cmp);
	*out = b;
}

SHIPC_EXPORT int shipc_clients(struct shipc *h, struct shipc_client **list,
                               size_t *n)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ClientsRequest cr = SHIP__CLIENTS_REQUEST__INIT;
	f.body_case = SHIP__CLIENT_FRAME__BODY_CLIENTS;
	f.clients = &cr;
	struct clients_block *b = NULL;
	struct call c = {.waiter = true, .on_reply = clients_reply, .out = &b};
	pthread_mutex_lock(&h->mu);
	int r = call_start(h, &c, &f, 0);
	pthread_mutex_unlock(&h->mu);
	if (r < 0) {
		free(b);
		return -1;
	}
	*list = b->list;
	*n = b->n;
	return 0;
}

SHIPC_EXPORT void shipc_clients_free(struct shipc_client *list)
{
	if (list)
		free(block_of(list));
}

/* What is kept beside list[i]; NULL past the list. */
static const struct client_extra *extra_of(const struct shipc_client *list,
                                           size_t i)
{
	if (!list || i >= block_of(list)->n)
		return NULL;
	const struct clients_block *b = block_of(list);
	const struct client_extra *e = &b->extra[i];
	/* In the order shipd sent; else the app sorted the list since. */
	if (e->id != list[i].id) {
		struct client_extra key = {.id = list[i].id};
		e = bsearch(&key, b->extra, b->n, sizeof(*e), extra_cmp);
	}
	return e;
}

SHIPC_EXPORT uint64_t shipc_client_held(const struct shipc_client *list,
                                        size_t i)
{
	const struct client_extra *e = extra_of(list, i);
	return e ? e->held : 0;
}

SHIPC_EXPORT const char *shipc_client_user(const struct shipc_client *list,
                                           size_t i)
{
	const struct client_extra *e = extra_of(list, i);
	return e ? e->user : "";
}

SHIPC_EXPORT const char *shipc_client_unit(const struct shipc_client *list,
                                           size_t i)
{
	const struct client_extra *e = extra_of(list, i);
	return e ? e->unit : "";
}

SHIPC_EXPORT uint64_t shipc_client_denied(const struct shipc_client *list,
                                          size_t i)
{
	const struct client_extra *e = extra_of(list, i);
	return e ? e->denied : 0;
}

struct text_out {
	char *buf;
	size_t size;
};

static void join(char *buf, size_t size, char **items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t used = strlen(buf);
		snprintf(buf + used, size - used, "%s%s", i ? ", " : "", items[i]);
	}
}

static void reload_reply(struct shipc *h, struct call *c,
                         const Ship__ServerFrame *f)
{
	struct text_out *out = c->out;
	if (c->err || !out->size)
		return;
	if (f->body_case != SHIP__SERVER_FRAME__BODY_RELOAD) {
		c->err = EPROTO;
		return;
	}
	const Ship__ReloadReply *r = f->reload;
	out->buf[0] = '\0';
	if (!r->n_applied && !r->n_needs_restart) {
		snprintf(out->buf, out->size, "nothing changed");
		return;
	}
	if (r->n_applied) {
		snprintf(out->buf, out->size, "applied: ");
		join(out->buf, out->size, r->applied, r->n_applied);
	}
	if (r->n_needs_restart) {
		size_t used = strlen(out->buf);
		snprintf(out->buf + used, out->size - used, "%sneeds a restart: ",
		         used ? "; " : "");
		join(out->buf, out->size, r->needs_restart, r->n_needs_restart);
	}
}

SHIPC_EXPORT int shipc_reload(struct shipc *h, char *buf, size_t size)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ReloadRequest rr = SHIP__RELOAD_REQUEST__INIT;
	f.body_case = SHIP__CLIENT_FRAME__BODY_RELOAD;
	f.reload = &rr;
	struct text_out out = {buf, size};
	struct call c = {.waiter = true, .on_reply = reload_reply, .out = &out};
	pthread_mutex_lock(&h->mu);
	int r = call_start(h, &c, &f, 0);
	pthread_mutex_unlock(&h->mu);
	return r;
}

struct policy_out {
	char **rules;
	size_t n;
	int enforced;
	int allowed;
	char *rule;
	size_t rulelen;
};

SHIPC_EXPORT void shipc_policy_rules_free(char **rules, size_t n)
{
	for (size_t i = 0; rules && i < n; i++)
		free(rules[i]);
	free(rules);
}

static void policy_show_reply(struct shipc *h, struct call *c,
                              const Ship__ServerFrame *f)
{
	struct policy_out *out = c->out;
	if (c->err)
		return;
	if (f->body_case != SHIP__SERVER_FRAME__BODY_POLICY) {
		c->err = EPROTO;
		return;
	}
	const Ship__PolicyShowReply *r = f->policy;
	/* One more than needed: an empty list is not NULL. */
	char **rules = calloc(r->n_rules + 1, sizeof(*rules));
	if (!rules) {
		c->err = ENOMEM;
		return;
	}
	for (size_t i = 0; i < r->n_rules; i++) {
		if (!(rules[i] = strdup(r->rules[i]))) {
			shipc_policy_rules_free(rules, i);
			c->err = ENOMEM;
			return;
		}
	}
	out->rules = rules;
	out->n = r->n_rules;
	out->enforced = r->enforced;
}

SHIPC_EXPORT int shipc_policy_show(struct shipc *h, char ***rules, size_t *n,
                                   int *enforced)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__PolicyShow ps = SHIP__POLICY_SHOW__INIT;
	f.body_case = SHIP__CLIENT_FRAME__BODY_POLICY_SHOW;
	f.policy_show = &ps;
	struct policy_out out = {0};
	struct call c = {.waiter = true, .on_reply = policy_show_reply,
	                 .out = &out};
	pthread_mutex_lock(&h->mu);
	int r = call_start(h, &c, &f, 0);
	pthread_mutex_unlock(&h->mu);
	if (r < 0) {
		shipc_policy_rules_free(out.rules, out.n);
		return -1;
	}
	*rules = out.rules;
	*n = out.n;
	if (enforced)
		*enforced = out.enforced;
	return 0;
}

static void policy_check_reply(struct shipc *h, struct call *c,
                               const Ship__ServerFrame *f)
{
	struct policy_out *out = c->out;
	if (c->err)
		return;
	if (f->body_case != SHIP__SERVER_FRAME__BODY_POLICY_CHECK) {
		c->err = EPROTO;
		return;
	}
	out->allowed = f->policy_check->allowed;
	if (out->rulelen)
		snprintf(out->rule, out->rulelen, "%s", f->policy_check->rule);
}

SHIPC_EXPORT int shipc_policy_check(struct shipc *h,
                                    const struct shipc_policy_query *q,
                                    int *allowed, char *rule, size_t rulelen)
{
	if (!q || !q->op || !q->resource || !allowed ||
	    (rulelen && !rule) || (q->n_groups && !q->groups)) {
		errno = EINVAL;
		return -1;
	}
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__PolicyCheck pc = SHIP__POLICY_CHECK__INIT;
	f.body_case = SHIP__CLIENT_FRAME__BODY_POLICY_CHECK;
	f.policy_check = &pc;
	pc.op = (char *)q->op;
	pc.resource = (char *)q->resource;
	pc.unit = (char *)(q->unit ? q->unit : "");
	pc.has_uid = q->has_uid != 0;
	pc.uid = q->uid;
	pc.gid = q->gid;
	pc.groups = (uint32_t *)q->groups;
	pc.n_groups = q->n_groups;
	struct policy_out out = {.rule = rule, .rulelen = rulelen};
	struct call c = {.waiter = true, .on_reply = policy_check_reply,
	                 .out = &out};
	pthread_mutex_lock(&h->mu);
	int r = call_start(h, &c, &f, 0);
	pthread_mutex_unlock(&h->mu);
	if (r < 0)
		return -1;
	*allowed = out.allowed;
	return 0;
}

/* ---- subscriptions ---- */

uint64_t stream_open(struct shipc *h, struct sub *s, Ship__ClientFrame *f)
{
	struct call c = {.waiter = true};
	/* The stream's id is its opening call's id; register it first so
	 * pushes that beat the answer find it. */
	s->id = h->next_id + 1;
	f->id = s->id;
	if (ipc_frame_pack(&s->open, &f->base, IPC_FRAME_LIMIT) < 0 ||
	    ipc_idmap_put(&h->subs, s->id, s) < 0) {
		sub_free(s);
		return 0;
	}
	if (call_start(h, &c, f, 0) < 0) {
		int saved = errno;
		/* Still registered only if no StreamEnd took it. */
		if (ipc_idmap_get(&h->subs, s->id) == s) {
			ipc_idmap_del(&h->subs, s->id);
			sub_free(s);
		}
		errno = saved;
		return 0;
	}
	s->confirmed = true;
	return s->id;
}

/* A subscription-like stream's state, delivering to cb; NULL if out of
 * memory. */
static struct sub *sub_new(const char *what, shipc_msg_fn *cb, void *arg)
{
	struct sub *s = calloc(1, sizeof(*s));
	if (!s || !(s->what = strdup(what))) {
		free(s);
		return NULL;
	}
	s->cb = cb;
	s->arg = arg;
	return s;
}

SHIPC_EXPORT uint64_t shipc_subscribe(struct shipc *h, const char *subject,
                                      const char *queue, uint64_t max_msgs,
                                      shipc_msg_fn *cb, void *arg)
{
	if (!cb || !ipc_subject_pattern_valid(subject) ||
	    (queue && !ipc_queue_valid(queue))) {
		set_error(h, "invalid subject or queue group");
		errno = EINVAL;
		return 0;
	}
	struct sub *s = sub_new(subject, cb, arg);
	if (!s)
		return 0;
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Subscribe sb = SHIP__SUBSCRIBE__INIT;
	sb.subject = (char *)subject;
	sb.queue = (char *)(queue ? queue : "");
	sb.max_msgs = max_msgs;
	f.body_case = SHIP__CLIENT_FRAME__BODY_SUBSCRIBE;
	f.subscribe = &sb;
	pthread_mutex_lock(&h->mu);
	uint64_t id = stream_open(h, s, &f);
	pthread_mutex_unlock(&h->mu);
	return id;
}

SHIPC_EXPORT uint64_t shipc_monitor(struct shipc *h, const char *pattern,
                                    int flags, shipc_msg_fn *cb, void *arg)
{
	if (!pattern || !*pattern)
		pattern = ">";
	if (!cb || !ipc_subject_pattern_valid(pattern) ||
	    (flags & ~SHIPC_MONITOR_PAYLOAD)) {
		set_error(h, "invalid subject pattern or flags");
		errno = EINVAL;
		return 0;
	}
	struct sub *s = sub_new(pattern, cb, arg);
	if (!s)
		return 0;
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__MonitorOpen mo = SHIP__MONITOR_OPEN__INIT;
	mo.pattern = (char *)pattern;
	mo.payload = (flags & SHIPC_MONITOR_PAYLOAD) != 0;
	f.body_case = SHIP__CLIENT_FRAME__BODY_MONITOR;
	f.monitor = &mo;
	pthread_mutex_lock(&h->mu);
	uint64_t id = stream_open(h, s, &f);
	pthread_mutex_unlock(&h->mu);
	return id;
}

SHIPC_EXPORT int shipc_unsubscribe(struct shipc *h, uint64_t id)
{
	pthread_mutex_lock(&h->mu);
	struct sub *s = sub_find(h, id);
	if (!s) {
		pthread_mutex_unlock(&h->mu);
		errno = ENOENT;
		return -1;
	}
	if (!h->connected) {
		/* Nothing to tell shipd; end it here. */
		ipc_idmap_del(&h->subs, id);
		s->end_err = 0;
		s->next = h->done_subs;
		h->done_subs = s;
		pthread_mutex_unlock(&h->mu);
		return 0;
	}
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Unsubscribe u = SHIP__UNSUBSCRIBE__INIT;
	u.stream = id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_UNSUBSCRIBE;
	f.unsubscribe = &u;
	int r = queue_frame(h, &f, true);
	pthread_mutex_unlock(&h->mu);
	return r;
}

/* ---- requests ---- */

struct reply_copy {
	struct shipc_msg msg;
	struct shipc_header headers[];
};

static char *copy_str(char **p, const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = memcpy(*p, s, n);
	*p += n;
	return d;
}

/* One allocation holding the message, its headers and strings. */
static struct shipc_msg *reply_dup(const Ship__Msg *m)
{
	size_t n = sizeof(struct reply_copy) +
	           m->n_headers * sizeof(struct shipc_header) +
	           strlen(m->subject) + strlen(m->reply) + 2 + m->data.len + 1;
	for (size_t i = 0; i < m->n_headers; i++)
		n += strlen(m->headers[i]->key) + strlen(m->headers[i]->value) + 2;
	struct reply_copy *rc = malloc(n);
	if (!rc)
		return NULL;
	char *p = (char *)&rc->headers[m->n_headers];
	rc->msg.subject = copy_str(&p, m->subject);
	rc->msg.reply = copy_str(&p, m->reply);
	for (size_t i = 0; i < m->n_headers; i++) {
		rc->headers[i].key = copy_str(&p, m->headers[i]->key);
		rc->headers[i].value = copy_str(&p, m->headers[i]->value);
	}
	if (m->data.len)
		memcpy(p, m->data.data, m->data.len);
	p[m->data.len] = '\0'; /* text replies print as strings */
	rc->msg.data = p;
	rc->msg.len = m->data.len;
	rc->msg.headers = rc->headers;
	rc->msg.n_headers = m->n_headers;
	rc->msg.dropped = 0;
	return &rc->msg;
}

SHIPC_EXPORT void shipc_msg_free(struct shipc_msg *msg)
{
	free(msg); /* the reply_copy starts with the message */
}

static void request_reply(struct shipc *h, struct call *c,
                          const Ship__ServerFrame *f)
{
	struct shipc_msg **out = c->out;
	if (c->err)
		return;
	if (f->body_case != SHIP__SERVER_FRAME__BODY_MSG) {
		c->err = EPROTO;
		return;
	}
	if (!(*out = reply_dup(f->msg)))
		c->err = ENOMEM;
}

static void request_reply_cb(struct shipc *h, struct call *c,
                             const Ship__ServerFrame *f)
{
	if (c->err || f->body_case != SHIP__SERVER_FRAME__BODY_MSG) {
		c->cb(h, NULL, c->err ? c->err : EPROTO, c->arg);
		return;
	}
	struct shipc_header stack[16], *hs = stack;
	if (f->msg->n_headers > 16 &&
	    !(hs = calloc(f->msg->n_headers, sizeof(*hs)))) {
		c->cb(h, NULL, ENOMEM, c->arg);
		return;
	}
	struct shipc_msg m;
	msg_from_ship(&m, hs, f->msg, 0);
	c->cb(h, &m, 0, c->arg);
	if (hs != stack)
		free(hs);
}

static void request_frame(Ship__ClientFrame *f, Ship__Request *r,
                          struct ship_msg *sm, int timeout_ms)
{
	r->msg = &sm->m;
	r->timeout_ms = timeout_ms > 0 ? (uint32_t)timeout_ms : 0;
	f->body_case = SHIP__CLIENT_FRAME__BODY_REQUEST;
	f->request = r;
}

SHIPC_EXPORT int shipc_request_msg(struct shipc *h, const struct shipc_msg *msg,
                                   int timeout_ms, struct shipc_msg **reply)
{
	struct ship_msg *sm = malloc(sizeof(*sm));
	if (!sm)
		return -1;
	if (ship_msg_init(h, sm, msg, true) < 0) {
		free(sm);
		return -1;
	}
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Request r = SHIP__REQUEST__INIT;
	request_frame(&f, &r, sm, timeout_ms);
	*reply = NULL;
	struct call c = {.waiter = true, .on_reply = request_reply, .out = reply};
	pthread_mutex_lock(&h->mu);
	int ret = wait_for_space(h);
	if (ret == 0)
		ret = call_start(h, &c, &f, timeout_ms > 0 ? timeout_ms : 60000);
	pthread_mutex_unlock(&h->mu);
	ship_msg_finish(sm);
	free(sm);
	if (ret < 0 && *reply) {
		shipc_msg_free(*reply);
		*reply = NULL;
	}
	return ret;
}

SHIPC_EXPORT int shipc_request(struct shipc *h, const char *subject,
                               const void *data, size_t len, int timeout_ms,
                               struct shipc_msg **reply)
{
	struct shipc_msg m = {.subject = subject, .data = data, .len = len};
	return shipc_request_msg(h, &m, timeout_ms, reply);
}

SHIPC_EXPORT int shipc_request_async(struct shipc *h,
                                     const struct shipc_msg *msg,
                                     int timeout_ms, shipc_reply_fn *cb,
                                     void *arg)
{
	if (!cb) {
		errno = EINVAL;
		return -1;
	}
	struct ship_msg *sm = malloc(sizeof(*sm));
	struct call *c = calloc(1, sizeof(*c));
	if (!sm || !c || ship_msg_init(h, sm, msg, true) < 0) {
		int saved = errno;
		free(sm);
		free(c);
		errno = saved;
		return -1;
	}
	c->cb = cb;
	c->arg = arg;
	c->on_reply = request_reply_cb;
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Request r = SHIP__REQUEST__INIT;
	request_frame(&f, &r, sm, timeout_ms);
	pthread_mutex_lock(&h->mu);
	int ret = wait_for_space(h);
	if (ret == 0)
		ret = call_start(h, c, &f, timeout_ms);
	pthread_mutex_unlock(&h->mu);
	ship_msg_finish(sm);
	free(sm);
	if (ret < 0)
		free(c);
	return ret;
}
