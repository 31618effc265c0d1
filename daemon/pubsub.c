/* SPDX-License-Identifier: MIT */
/* PubSub for local apps: publish, subscribe, request/reply over core NATS. */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shipd.h"

/* A subscribe is answered once the server has the SUB, or after this if
 * the server is slow to show it: the app, which gave the call no timeout,
 * waits IPC_REPLY_MARGIN_MS, and the answer must still find it waiting
 * when shipd's loop and the socket are late too (a busy or sanitized
 * shipd; with equal bounds the app gave up first, and saw ETIMEDOUT for a
 * subscription shipd then opened). */
#define SUBACK_WAIT_MS (IPC_REPLY_MARGIN_MS / 2)

struct request;

struct sub {
	struct stream st; /* st.c is NULL once the stream has ended */
	TAILQ_ENTRY(sub) entry;
	struct request *ack; /* the subscribe's answer, waiting for the server */
	char *subject;
	char *queue;
	uint64_t max_msgs;
	uint64_t received;  /* from NATS, delivered or dropped */
	uint64_t delivered;
	uint64_t dropped;   /* in all */
	uint64_t unreported; /* dropped since the last delivery */
	_Atomic uint64_t dropped_early; /* refused by the mailbox */
	uint64_t nats_dropped;          /* nats.c's count, last seen */
	natsSubscription *ns; /* on the present connection */
	uint64_t ticket;      /* ns's, in `tickets` */
	/* natsSubscriptions made for it that nats.c has not completed yet
	 * (ns, and those of connections gone): until then nats.c may still
	 * call back with it, so it stays. */
	unsigned live;
	bool ended;
	/* A subscription of shipd's own (pubsub_own): no stream, messages
	 * go to own(own_arg, msg). */
	pubsub_own_fn *own;
	void *own_arg;
	bool draining; /* own: taking nothing new, delivering what comes */
	bool done;     /* own: nats.c ended it (drained); freed at the end */
};

enum req_kind { REQ_REQUEST, REQ_SUBACK };

struct request {
	struct op op;
	enum req_kind kind;
	struct sub *sub; /* REQ_SUBACK: the stream it belongs to */
	struct link_wait *wait;
	char subject[];
};

static TAILQ_HEAD(, sub) subs = TAILQ_HEAD_INITIALIZER(subs);
static uint32_t n_subs;
/* One per natsSubscription: its completion names it, so the completion
 * of one on a connection gone is not taken for the present one's. */
static struct ipc_idmap tickets;
static uint64_t next_ticket;

Ship__Code pubsub_code(natsStatus s)
{
	switch (s) {
	case NATS_OK:
		return SHIP__CODE__OK;
	case NATS_INVALID_ARG:
	case NATS_INVALID_SUBJECT:
	case NATS_MAX_PAYLOAD:
		return SHIP__CODE__INVALID_ARGUMENT;
	case NATS_TIMEOUT:
		return SHIP__CODE__TIMEOUT;
	case NATS_NO_RESPONDERS:
		return SHIP__CODE__NO_RESPONDERS;
	case NATS_NOT_FOUND:
		return SHIP__CODE__NOT_FOUND;
	case NATS_NO_MEMORY:
	case NATS_INSUFFICIENT_BUFFER:
	case NATS_SLOW_CONSUMER:
		return SHIP__CODE__RESOURCE_EXHAUSTED;
	case NATS_CONNECTION_CLOSED:
	case NATS_CONNECTION_DISCONNECTED:
	case NATS_NO_SERVER:
	case NATS_NOT_YET_CONNECTED:
	case NATS_STALE_CONNECTION:
	case NATS_IO_ERROR:
		return SHIP__CODE__UNAVAILABLE;
	case NATS_NOT_PERMITTED:
	case NATS_CONNECTION_AUTH_FAILED:
		return SHIP__CODE__PERMISSION_DENIED;
	default:
		return SHIP__CODE__INTERNAL;
	}
}

uint32_t pubsub_sub_count(void)
{
	return n_subs;
}

/* ---- checking what clients send ---- */

static bool check_headers(struct client *c, uint64_t id, const Ship__Msg *m)
{
	if (m->n_headers > PUBSUB_MAX_HEADERS) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "%zu headers, at most %d", m->n_headers, PUBSUB_MAX_HEADERS);
		return false;
	}
	for (size_t i = 0; i < m->n_headers; i++) {
		const Ship__Header *h = m->headers[i];
		if (!ipc_header_key_valid(h->key) ||
		    !ipc_header_value_valid(h->value)) {
			client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
			             "invalid header '%.64s'", h->key);
			return false;
		}
	}
	return true;
}

static bool check_subjects(struct client *c, uint64_t id, const char *subject,
                           const char *reply, size_t len)
{
	if (!ipc_subject_valid(subject)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid subject '%.128s'", subject);
		return false;
	}
	if (reply[0] && !ipc_subject_valid(reply)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid reply subject '%.128s'", reply);
		return false;
	}
	int64_t maxp = link_info()->max_payload;
	if (maxp > 0 && len > (uint64_t)maxp) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "payload of %zu bytes is over the server's limit "
		             "of %" PRId64,
		             len, maxp);
		return false;
	}
	return true;
}

static bool check_msg(struct client *c, uint64_t id, const Ship__Msg *m)
{
	if (!m) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT, "no message");
		return false;
	}
	return check_subjects(c, id, m->subject, m->reply, m->data.len) &&
	       check_headers(c, id, m);
}

/* Build and send a message, with headers if it has any (m may be NULL);
 * while the link is down it is kept for later. */
natsStatus pubsub_send(const char *subject, const char *reply,
                       const void *data, size_t len, const Ship__Msg *m)
{
	natsConnection *nc = link_conn();
	if (!nc) {
		natsMsg *msg;
		natsStatus s = natsMsg_Create(&msg, subject,
		                              reply[0] ? reply : NULL, data,
		                              (int)len);
		for (size_t i = 0; s == NATS_OK && m && i < m->n_headers; i++)
			s = natsMsgHeader_Add(msg, m->headers[i]->key,
			                      m->headers[i]->value);
		if (s != NATS_OK) {
			link_msg_destroy(msg);
			return s;
		}
		return link_hold(msg);
	}
	if ((!m || m->n_headers == 0) && !reply[0])
		return natsConnection_Publish(nc, subject, data, (int)len);
	if (!m || m->n_headers == 0)
		return natsConnection_PublishRequest(nc, subject, reply, data,
		                                     (int)len);
	natsMsg *msg;
	natsStatus s = natsMsg_Create(&msg, subject, reply[0] ? reply : NULL,
	                              data, (int)len);
	for (size_t i = 0; s == NATS_OK && i < m->n_headers; i++)
		s = natsMsgHeader_Add(msg, m->headers[i]->key,
		                      m->headers[i]->value);
	if (s == NATS_OK)
		s = natsConnection_PublishMsg(nc, msg);
	link_msg_destroy(msg);
	return s;
}

/* ---- what apps may reach ---- */

/* A subject an app publishes or requests to, or names as a reply: not a
 * system subject, and in shipd's reply inbox only the inbox of a request
 * (which the app answers). Then what its policy says. */
static bool may_send(struct client *c, uint64_t id, enum pol_op op,
                     const char *subject, const char *reply)
{
	const char *bad = NULL;
	if (ipc_subject_system(subject) ||
	    link_inbox_kind(subject) >= LINK_INBOX_WAIT)
		bad = subject;
	else if (reply[0] && (ipc_subject_system(reply) ||
	                      link_inbox_kind(reply) != LINK_INBOX_NONE))
		bad = reply;
	if (bad) {
		client_error(c, id, SHIP__CODE__PERMISSION_DENIED,
		             "'%.128s' is a system subject: only the building "
		             "block that owns it reaches it",
		             bad);
		return false;
	}
	/* Answering a request needs no grant: having the request is it. */
	if (op == POL_PUBLISH && link_inbox_kind(subject) == LINK_INBOX_REPLY)
		return true;
	return client_allowed(c, id, op, subject);
}

/* A pattern an app subscribes to: none that names system subjects or
 * could match shipd's reply inbox. A pattern starting with a wildcard is
 * allowed; what it would match there is never delivered (sub_deliver). */
static bool may_subscribe(struct client *c, uint64_t id, const char *pattern)
{
	bool bad = ipc_subject_system(pattern) ||
	           link_inbox_kind(pattern) != LINK_INBOX_NONE;
	if (ipc_first_token(pattern, "_INBOX")) {
		/* _INBOX.* and _INBOX.> would match shipd's. */
		const char *second = pattern[6] ? pattern + 7 : "";
		if (!*second || ipc_first_token(second, "*") ||
		    ipc_first_token(second, ">"))
			bad = true;
	}
	if (bad) {
		client_error(c, id, SHIP__CODE__PERMISSION_DENIED,
		             "'%.128s' would reach system subjects or other "
		             "apps' replies: only the building blocks reach them",
		             pattern);
		return false;
	}
	return client_allowed(c, id, POL_SUBSCRIBE, pattern);
}

/* What a subscription never delivers, whatever its pattern: system
 * subjects, and replies (its own pattern not naming _INBOX). */
static bool never_delivered(const struct sub *s, const char *subject)
{
	if (ipc_subject_system(subject) ||
	    link_inbox_kind(subject) != LINK_INBOX_NONE)
		return true;
	return ipc_first_token(subject, "_INBOX") &&
	       !ipc_first_token(s->subject, "_INBOX");
}

static void publish(struct client *c, uint64_t id, const char *subject,
                    const char *reply, const void *data, size_t len,
                    const Ship__Msg *m, bool fail_if_disconnected)
{
	if (!may_send(c, id, POL_PUBLISH, subject, reply))
		return;
	if (fail_if_disconnected && !link_connected()) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE,
		             "NATS is not connected (%s)",
		             link_state_name(link_info()->state));
		return;
	}
	natsStatus s = pubsub_send(subject, reply, data, len, m);
	if (s == NATS_INSUFFICIENT_BUFFER && !link_connected()) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE,
		             "NATS is not connected (%s) and the %u bytes kept "
		             "for it are full",
		             link_state_name(link_info()->state),
		             conf->nats_reconnect_buffer);
		return;
	}
	if (s != NATS_OK) {
		client_error(c, id, pubsub_code(s), "publish to '%.128s': %s",
		             subject, natsStatus_GetText(s));
		return;
	}
	stats.msgs_out++;
	MONITOR_TAP(c, MON_PUBLISH, subject, data, len);
	if (id)
		client_ok(c, id);
}

static void handle_publish(struct client *c, uint64_t id,
                           const Ship__Publish *p)
{
	if (!check_msg(c, id, p->msg))
		return;
	publish(c, id, p->msg->subject, p->msg->reply, p->msg->data.data,
	        p->msg->data.len, p->msg, p->fail_if_disconnected);
}

void pubsub_publish_view(struct client *c, const struct ipc_publish_view *v)
{
	/* The hot path: the frame was read in place, without protobuf-c. */
	char subject[IPC_SUBJECT_MAX + 1], reply[IPC_SUBJECT_MAX + 1];
	if (v->subject_len > IPC_SUBJECT_MAX || v->reply_len > IPC_SUBJECT_MAX ||
	    (v->subject_len && memchr(v->subject, 0, v->subject_len)) ||
	    (v->reply_len && memchr(v->reply, 0, v->reply_len))) {
		client_error(c, v->id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid subject");
		return;
	}
	if (v->subject_len)
		memcpy(subject, v->subject, v->subject_len);
	subject[v->subject_len] = '\0';
	if (v->reply_len)
		memcpy(reply, v->reply, v->reply_len);
	reply[v->reply_len] = '\0';
	if (!check_subjects(c, v->id, subject, reply, v->len))
		return;
	publish(c, v->id, subject, reply, v->data, v->len, NULL,
	        v->fail_if_disconnected);
}

/* ---- requests in flight ---- */

static void request_free(struct request *r)
{
	link_wait_cancel(r->wait);
	op_end(&r->op);
	if (r->sub)
		r->sub->ack = NULL;
	free(r);
}

static void request_cancel(struct op *o)
{
	request_free(container_of(o, struct request, op));
}

static void request_done(void *arg, natsMsg *msg, natsStatus st);

/* A request of c, counted against its limit; a subscribe's barrier is
 * shipd's own and not limited. NULL if refused (answered). */
static struct request *request_new(struct client *c, uint64_t id,
                                   enum req_kind kind, const char *subject,
                                   uint32_t timeout_ms)
{
	size_t sl = strlen(subject) + 1;
	struct request *r = calloc(1, sizeof(*r) + sl);
	if (!r) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	r->kind = kind;
	memcpy(r->subject, subject, sl);
	if (!(r->wait = link_wait_new(timeout_ms, false, request_done, r))) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		free(r);
		return NULL;
	}
	if (kind == REQ_SUBACK) {
		op_track(&r->op, c, id, request_cancel);
	} else if (!op_begin(&r->op, c, id, request_cancel)) {
		link_wait_cancel(r->wait);
		free(r);
		return NULL;
	}
	return r;
}

static void handle_request(struct client *c, uint64_t id,
                           const Ship__Request *rq)
{
	if (id == 0) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "a request needs an id");
		return;
	}
	if (!check_msg(c, id, rq->msg))
		return;
	if (!may_send(c, id, POL_REQUEST, rq->msg->subject, ""))
		return;
	if (!link_connected()) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE,
		             "NATS is not connected (%s)",
		             link_state_name(link_info()->state));
		return;
	}
	uint32_t t = rq->timeout_ms ? rq->timeout_ms : conf->request_timeout_ms;
	if (t > conf->max_request_timeout_ms)
		t = conf->max_request_timeout_ms;
	struct request *r = request_new(c, id, REQ_REQUEST, rq->msg->subject, t);
	if (!r)
		return;
	natsStatus s = pubsub_send(rq->msg->subject, link_wait_inbox(r->wait),
	                        rq->msg->data.data, rq->msg->data.len, rq->msg);
	if (s != NATS_OK) {
		client_error(c, id, pubsub_code(s), "request to '%.128s': %s",
		             rq->msg->subject, natsStatus_GetText(s));
		request_free(r);
		return;
	}
	stats.msgs_out++;
	MONITOR_TAP(c, MON_REQUEST, rq->msg->subject, rq->msg->data.data,
	            rq->msg->data.len);
}

/* ---- NATS messages to frames ---- */


/* Collect a message's headers; the strings stay owned by msg. */
static void hdrs_get(struct pubsub_hdrs *hs, natsMsg *msg)
{
	const char **keys = NULL;
	int nk = 0;
	hs->n = 0;
	hs->keys = NULL;
	if (natsMsgHeader_Keys(msg, &keys, &nk) != NATS_OK)
		return;
	hs->keys = keys;
	for (int i = 0; i < nk; i++) {
		const char **vals = NULL;
		int nv = 0;
		if (natsMsgHeader_Values(msg, keys[i], &vals, &nv) != NATS_OK)
			continue;
		for (int j = 0; j < nv && hs->n < PUBSUB_MAX_HEADERS; j++) {
			Ship__Header *h = &hs->h[hs->n];
			ship__header__init(h);
			h->key = (char *)keys[i];
			h->value = (char *)vals[j];
			hs->ptrs[hs->n++] = h;
		}
		free((void *)vals);
	}
}

void pubsub_hdrs_free(struct pubsub_hdrs *hs)
{
	free((void *)hs->keys);
}

/* Fill m from msg; m points into msg and hs. */
void pubsub_msg_view(Ship__Msg *m, struct pubsub_hdrs *hs, natsMsg *msg)
{
	ship__msg__init(m);
	m->subject = (char *)natsMsg_GetSubject(msg);
	const char *reply = natsMsg_GetReply(msg);
	m->reply = reply ? (char *)reply : "";
	m->data.data = (uint8_t *)natsMsg_GetData(msg);
	m->data.len = (size_t)natsMsg_GetDataLength(msg);
	hdrs_get(hs, msg);
	m->n_headers = hs->n;
	m->headers = hs->ptrs;
}

static void request_done(void *arg, natsMsg *msg, natsStatus st)
{
	struct request *r = arg;
	struct client *c = r->op.c;
	r->wait = NULL; /* a single wait is gone after its callback */
	if (r->kind == REQ_SUBACK) {
		/* Answered, or lost with NATS: either way the subscription is
		 * registered with nats.c and live (again) on reconnect. A
		 * stream that ended meanwhile cancelled this wait. */
		client_ok(c, r->op.id);
	} else if (st == NATS_OK) {
		static struct pubsub_hdrs hs;
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__Msg m;
		pubsub_msg_view(&m, &hs, msg);
		f.id = r->op.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_MSG;
		f.msg = &m;
		client_send(c, &f);
		if (c)
			MONITOR_TAP(c, MON_REPLY, r->subject, m.data.data,
			            m.data.len);
		pubsub_hdrs_free(&hs);
		stats.msgs_in++;
	} else if (st == NATS_NO_RESPONDERS) {
		client_error(c, r->op.id, SHIP__CODE__NO_RESPONDERS,
		             "no responders on '%.128s'", r->subject);
	} else if (st == NATS_TIMEOUT) {
		/* A responder may have acted and not answered in time. */
		client_error_ex(c, r->op.id, SHIP__CODE__TIMEOUT, true,
		                "no reply on '%.128s' in time", r->subject);
	} else {
		client_error_ex(c, r->op.id, SHIP__CODE__UNAVAILABLE, true,
		                "NATS connection lost during the request");
	}
	link_msg_destroy(msg);
	request_free(r);
}

/* ---- subscriptions ---- */

static void sub_msg_cb(natsConnection *nc, natsSubscription *ns, natsMsg *msg,
                       void *arg)
{
	struct sub *s = arg;
	const char *subj = natsMsg_GetSubject(msg);
	struct mail m = {
		.kind = MAIL_SUB_MSG,
		.ptr = s,
		.msg = msg,
		.nc = nc,
		/* What the message really costs: its data and subject and
		 * nats.c's bookkeeping around them. */
		.bytes = (size_t)natsMsg_GetDataLength(msg) + strlen(subj) + 256,
	};
	/* Past the inbound limit the loop is behind: drop, count, go on. */
	if (mailbox_post(&m, true) < 0) {
		atomic_fetch_add(&s->dropped_early, 1);
		link_msg_destroy(msg);
		link_msg_posted(nc); /* settled: never dispatched */
	}
}

static void sub_complete_cb(void *arg)
{
	struct mail m = {.kind = MAIL_SUB_COMPLETE,
	                 .arg = (uint64_t)(uintptr_t)arg};
	mailbox_post(&m, false);
}

static void sub_free(struct sub *s)
{
	if (s->ticket)
		ipc_idmap_del(&tickets, s->ticket);
	TAILQ_REMOVE(&subs, s, entry);
	free(s->subject);
	free(s->queue);
	free(s);
}

/* End the stream once: tell the client (if still there), stop NATS. */
static void sub_end(struct sub *s, Ship__Code code, const char *why)
{
	if (s->ended)
		return;
	s->ended = true;
	if (!s->own)
		n_subs--;
	if (s->ack)
		request_free(s->ack); /* the stream's end answers instead */
	if (s->st.c) {
		stream_end_send(&s->st, code, false, why, s->delivered,
		                s->dropped);
		stream_close(&s->st);
	}
	if (s->ns)
		natsSubscription_Unsubscribe(s->ns); /* completes later */
	else if (!s->live)
		sub_free(s);
}

static void sub_stream_end(struct stream *st)
{
	sub_end(container_of(st, struct sub, st), SHIP__CODE__OK, NULL);
}

static const struct stream_kind sub_kind = {
	.name = "subscription",
	.end = sub_stream_end,
	.gone = sub_stream_end, /* closed already: nobody is told */
};

static natsStatus sub_open(struct sub *s)
{
	natsConnection *nc = link_conn();
	uint64_t ticket = ++next_ticket;
	if (ipc_idmap_put(&tickets, ticket, s) < 0)
		return NATS_NO_MEMORY;
	natsStatus st =
		s->queue[0] ? natsConnection_QueueSubscribe(&s->ns, nc, s->subject,
		                                            s->queue, sub_msg_cb, s)
		            : natsConnection_Subscribe(&s->ns, nc, s->subject,
		                                       sub_msg_cb, s);
	if (st != NATS_OK) {
		ipc_idmap_del(&tickets, ticket);
		s->ns = NULL;
		return st;
	}
	/* This fails only if the connection closed the subscription right
	 * after it was made, when messages may be on their way with s: then
	 * s stays until shipd stops (no completion will free it). */
	natsSubscription_SetOnCompleteCB(s->ns, sub_complete_cb,
	                                 (void *)(uintptr_t)ticket);
	s->ticket = ticket;
	s->live++;
	s->done = false;
	s->nats_dropped = 0; /* a new natsSubscription counts from 0 */
	/* Messages nats.c read but its delivery thread has not handed over
	 * yet are bounded too; what it drops there is counted below. The
	 * count is nats.c's own default (a burst a direct subscriber takes
	 * whole, shipd's does too), the bytes a quarter of it. */
	natsSubscription_SetPendingLimits(s->ns, 65536, 16 << 20);
	/* After a reconnect, only what is left of max_msgs. */
	uint64_t left = s->max_msgs > s->received ? s->max_msgs - s->received : 1;
	if (s->max_msgs && left <= INT32_MAX)
		natsSubscription_AutoUnsubscribe(s->ns, (int)left);
	return NATS_OK;
}

static void sub_ack(struct sub *s)
{
	/* Answer once the server has the SUB: a message to our own inbox
	 * published after it comes back after the server processed both. */
	if (!link_connected() || !s->ns) {
		client_ok(s->st.c, s->st.id);
		return;
	}
	struct request *r = request_new(s->st.c, s->st.id, REQ_SUBACK,
	                                s->subject, SUBACK_WAIT_MS);
	if (!r)
		return;
	r->sub = s;
	s->ack = r;
	if (natsConnection_Publish(link_conn(), link_wait_inbox(r->wait), NULL,
	                           0) != NATS_OK) {
		client_ok(s->st.c, s->st.id);
		request_free(r);
	}
}

static void handle_subscribe(struct client *c, uint64_t id,
                             const Ship__Subscribe *sb)
{
	if (!ipc_subject_pattern_valid(sb->subject)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid subject '%.128s'", sb->subject);
		return;
	}
	if (!ipc_queue_valid(sb->queue)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid queue group '%.128s'", sb->queue);
		return;
	}
	if (!may_subscribe(c, id, sb->subject))
		return;
	struct sub *s = calloc(1, sizeof(*s));
	if (!s || !(s->subject = strdup(sb->subject)) ||
	    !(s->queue = strdup(sb->queue))) {
		if (s) {
			free(s->subject);
			free(s->queue);
		}
		free(s);
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	TAILQ_INSERT_TAIL(&subs, s, entry);
	if (!stream_open(&s->st, &sub_kind, c, id)) {
		sub_free(s);
		return;
	}
	s->max_msgs = sb->max_msgs;
	n_subs++;
	if (link_conn()) {
		natsStatus st = sub_open(s);
		if (st != NATS_OK) {
			client_error(c, id, pubsub_code(st), "subscribe to '%.128s': %s",
			             s->subject, natsStatus_GetText(st));
			/* No stream was opened: drop it without a StreamEnd. */
			stream_close(&s->st);
			n_subs--;
			sub_free(s);
			return;
		}
	}
	log_debug("%s: client %" PRIu64 " stream %" PRIu64 " on %s%s%s", __func__,
	          c->cid, id, s->subject, s->queue[0] ? " queue " : "", s->queue);
	sub_ack(s);
}

/* Drops nobody told us about: nats.c's own, past its pending limits. */
static uint64_t nats_dropped(struct sub *s)
{
	int64_t d = 0;
	if (!s->ns || natsSubscription_GetDropped(s->ns, &d) != NATS_OK ||
	    d <= (int64_t)s->nats_dropped)
		return 0;
	uint64_t n = (uint64_t)d - s->nats_dropped;
	s->nats_dropped = (uint64_t)d;
	return n;
}

static void sub_deliver(struct sub *s, natsMsg *msg)
{
	if (s->own) {
		/* What the loop could not take is lost like any message: a
		 * caller times out; it is counted. */
		uint64_t early = atomic_exchange(&s->dropped_early, 0) +
		                 nats_dropped(s);
		stats.dropped += early;
		s->received += 1 + early;
		if (s->ended)
			link_msg_destroy(msg);
		else
			s->own(s->own_arg, msg);
		return;
	}
	if (never_delivered(s, natsMsg_GetSubject(msg))) {
		link_msg_destroy(msg); /* not counted: not the app's at all */
		return;
	}
	uint64_t early = atomic_exchange(&s->dropped_early, 0) + nats_dropped(s);
	s->received += 1 + early;
	s->dropped += early;
	s->unreported += early;
	stats.dropped += early;
	if (s->ended) {
		link_msg_destroy(msg);
		return;
	}
	static struct pubsub_hdrs hs;
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__Delivery d = SHIP__DELIVERY__INIT;
	Ship__Msg m;
	pubsub_msg_view(&m, &hs, msg);
	d.msg = &m;
	d.dropped = s->unreported;
	f.id = s->st.id;
	f.body_case = SHIP__SERVER_FRAME__BODY_DELIVERY;
	f.delivery = &d;
	if (client_push(s->st.c, &f) < 0) {
		s->dropped++;
		s->unreported++;
		s->st.c->st.dropped++;
		stats.dropped++;
	} else {
		s->delivered++;
		s->unreported = 0;
		stats.msgs_in++;
		MONITOR_TAP(s->st.c, MON_DELIVER, m.subject, m.data.data,
		            m.data.len);
	}
	pubsub_hdrs_free(&hs);
	link_msg_destroy(msg);
	if (s->max_msgs && s->received >= s->max_msgs)
		sub_end(s, SHIP__CODE__OK, NULL);
}

static void sub_complete(uint64_t ticket)
{
	struct sub *s = ipc_idmap_del(&tickets, ticket);
	if (!s)
		return;
	s->live--;
	if (ticket != s->ticket) {
		/* One of a connection gone: ended when that connection did. */
		if (s->ended && !s->live && !s->ns)
			sub_free(s);
		return;
	}
	s->ticket = 0;
	natsSubscription_Destroy(s->ns);
	s->ns = NULL;
	if (s->ended) {
		if (!s->live)
			sub_free(s);
		return;
	}
	if (s->own) {
		/* Drained: nothing more comes; its owner ends it. Else the
		 * connection closed it: made again on the next (link_up). */
		if (s->draining)
			s->done = true;
		return;
	}
	natsConnection *nc = link_conn();
	if (!nc || natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED)
		return; /* the connection closed: made again on the next */
	/* nats.c ended it: max_msgs reached while some were dropped early. */
	uint64_t early = atomic_exchange(&s->dropped_early, 0);
	s->dropped += early;
	stats.dropped += early;
	sub_end(s, SHIP__CODE__OK, NULL);
}

void pubsub_handle_mail(struct mail *m)
{
	if (m->kind == MAIL_SUB_MSG)
		sub_deliver(m->ptr, m->msg);
	else if (m->kind == MAIL_SUB_COMPLETE)
		sub_complete(m->arg);
}

/* The connection is gone: its natsSubscriptions with it. Each completes
 * later under its own ticket; the streams go on, and are subscribed again
 * on the next connection. */
static void link_lost(void)
{
	struct sub *s;
	TAILQ_FOREACH(s, &subs, entry) {
		if (!s->ns)
			continue;
		natsSubscription_Destroy(s->ns);
		s->ns = NULL;
		s->ticket = 0;
	}
}

static void link_up(void)
{
	struct sub *s, *tmp;
	TAILQ_FOREACH_SAFE(s, &subs, entry, tmp) {
		if (s->ended || s->ns || s->draining)
			continue;
		if (s->max_msgs && s->received >= s->max_msgs) {
			sub_end(s, SHIP__CODE__OK, NULL);
			continue;
		}
		natsStatus st = sub_open(s);
		if (st != NATS_OK && s->own) {
			log_warnx("subscribe to '%s': %s", s->subject,
			          natsStatus_GetText(st));
			continue; /* tried again on the next connection */
		}
		if (st != NATS_OK) {
			char why[160];
			snprintf(why, sizeof(why), "subscribe to '%.100s': %s",
			         s->subject, natsStatus_GetText(st));
			sub_end(s, pubsub_code(st), why);
		}
	}
}

/* ---- subscriptions of shipd's own ---- */

struct sub *pubsub_own(const char *subject, const char *queue,
                       pubsub_own_fn *fn, void *arg)
{
	struct sub *s = calloc(1, sizeof(*s));
	if (!s || !(s->subject = strdup(subject)) ||
	    !(s->queue = strdup(queue ? queue : ""))) {
		if (s) {
			free(s->subject);
			free(s->queue);
		}
		free(s);
		return NULL;
	}
	s->own = fn;
	s->own_arg = arg;
	TAILQ_INSERT_TAIL(&subs, s, entry);
	if (link_conn()) {
		natsStatus st = sub_open(s);
		if (st != NATS_OK)
			log_warnx("subscribe to '%s': %s", subject,
			          natsStatus_GetText(st));
	}
	return s;
}

void pubsub_own_drain(struct sub *s, uint32_t timeout_ms)
{
	if (s->draining || s->ended)
		return;
	s->draining = true;
	if (!s->ns || natsSubscription_DrainTimeout(s->ns, timeout_ms) !=
	                      NATS_OK) {
		/* Nothing is on its way, or nats.c will not say when it
		 * is: nothing more is taken. */
		if (s->ns)
			natsSubscription_Unsubscribe(s->ns);
		s->done = true;
	}
}

bool pubsub_own_drained(const struct sub *s)
{
	return s->done || !s->ns;
}

void pubsub_own_end(struct sub *s)
{
	if (s)
		sub_end(s, SHIP__CODE__OK, NULL);
}

/* ---- the block ---- */

static void req_publish(struct client *c, const Ship__ClientFrame *f)
{
	handle_publish(c, f->id, f->publish);
}

static void req_subscribe(struct client *c, const Ship__ClientFrame *f)
{
	handle_subscribe(c, f->id, f->subscribe);
}

static void req_request(struct client *c, const Ship__ClientFrame *f)
{
	handle_request(c, f->id, f->request);
}

static void pubsub_link_changed(bool up)
{
	if (up)
		link_up();
	else
		link_lost();
}

const struct block pubsub_block = {
	.name = "pubsub",
	.link_changed = pubsub_link_changed,
	.requests = (const struct block_request[]){
		{SHIP__CLIENT_FRAME__BODY_PUBLISH, req_publish, true},
		{SHIP__CLIENT_FRAME__BODY_SUBSCRIBE, req_subscribe, false},
		{SHIP__CLIENT_FRAME__BODY_REQUEST, req_request, true},
		{0, NULL, false},
	},
};

void pubsub_release_nats(void)
{
	struct sub *s;
	TAILQ_FOREACH(s, &subs, entry) {
		natsSubscription_Destroy(s->ns);
		s->ns = NULL;
	}
}

void pubsub_finish(void)
{
	struct sub *s;
	while ((s = TAILQ_FIRST(&subs)))
		sub_free(s);
	ipc_idmap_finish(&tickets);
}
