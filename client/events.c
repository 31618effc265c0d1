/* SPDX-License-Identifier: MIT */
/* libshipc's EventBus and Channels calls. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shipc-private.h"

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

void event_from_ship(struct shipc_event *ev, const Ship__EventDelivery *d)
{
	memset(ev, 0, sizeof(*ev));
	ev->token = d->token;
	ev->stream_seq = d->stream_seq;
	ev->delivered = d->delivered;
	ev->pending = d->pending;
	ev->time_ns = d->time_ns;
	ev->subject = d->subject;
	ev->data = d->data.data;
	ev->len = d->data.len;
	ev->raw = d->raw;
	if (d->event) {
		ev->event_type = d->event->event_type;
		ev->timestamp = d->event->timestamp;
		ev->source = d->event->source;
		ev->payload_json = d->event->payload_json;
		ev->correlation_id = d->event->correlation_id;
		ev->version = d->event->version;
	}
	if (d->channel) {
		ev->sender = d->channel->sender;
		ev->content = d->channel->content;
		ev->channel = d->channel->channel;
		ev->message_id = d->channel->message_id;
		ev->metadata_json = d->channel->metadata_json;
		ev->sent_at = d->channel->timestamp;
	}
}

/* ---- emits and channel sends: answered with an EmitReply ---- */

struct emit_call {
	struct call c; /* first: the call machinery frees it as a call */
	struct shipc_emit_result res;
	shipc_emit_fn *cb;
	void *arg;
};

static void emit_reply(struct shipc *h, struct call *c,
                       const Ship__ServerFrame *f)
{
	struct emit_call *ec = (struct emit_call *)c;
	if (!c->err && f->body_case != SHIP__SERVER_FRAME__BODY_EMITTED)
		c->err = EPROTO;
	if (!c->err) {
		ec->res.seq = f->emitted->seq;
		ec->res.duplicate = f->emitted->duplicate;
		snprintf(ec->res.msg_id, sizeof(ec->res.msg_id), "%s",
		         f->emitted->msg_id);
	}
	if (ec->cb)
		ec->cb(h, c->err ? NULL : &ec->res, c->err, ec->arg);
}

/* Async callbacks get the error path through the generic completion
 * (res NULL); adapt its signature. */
static void emit_failed(struct shipc *h, const struct shipc_msg *m, int err,
                        void *arg)
{
	(void)m;
	struct emit_call *ec = arg;
	ec->cb(h, NULL, err, ec->arg);
}

static int emit_send(struct shipc *h, Ship__ClientFrame *f,
                     struct shipc_emit_result *res, shipc_emit_fn *cb,
                     void *arg)
{
	if (!cb) {
		struct emit_call ec = {.c = {.waiter = true, .on_reply = emit_reply}};
		pthread_mutex_lock(&h->mu);
		int r = wait_for_space(h);
		if (r == 0)
			r = call_start(h, &ec.c, f, 10000);
		pthread_mutex_unlock(&h->mu);
		if (r == 0 && res)
			*res = ec.res;
		return r;
	}
	struct emit_call *ec = calloc(1, sizeof(*ec));
	if (!ec)
		return -1;
	ec->c.on_reply = emit_reply;
	ec->cb = cb;
	ec->arg = arg;
	/* On teardown the call completes through c.cb: point it at ec. */
	ec->c.cb = emit_failed;
	ec->c.arg = ec;
	pthread_mutex_lock(&h->mu);
	int r = wait_for_space(h);
	if (r == 0)
		r = call_start(h, &ec->c, f, 0);
	pthread_mutex_unlock(&h->mu);
	if (r < 0)
		free(ec);
	return r;
}

static void emit_frame(Ship__ClientFrame *f, Ship__Emit *m,
                       const struct shipc_emit *e)
{
	m->event_type = (char *)or_empty(e->event_type);
	m->source = (char *)or_empty(e->source);
	m->payload_json = (char *)or_empty(e->payload_json);
	m->correlation_id = (char *)or_empty(e->correlation_id);
	m->msg_id = (char *)or_empty(e->msg_id);
	m->stream = (char *)or_empty(e->stream);
	m->prefix = (char *)or_empty(e->prefix);
	f->body_case = SHIP__CLIENT_FRAME__BODY_EMIT;
	f->emit = m;
}

SHIPC_EXPORT int shipc_emit(struct shipc *h, const struct shipc_emit *e,
                            struct shipc_emit_result *res)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Emit m = SHIP__EMIT__INIT;
	if (!e || !e->event_type) {
		errno = EINVAL;
		return -1;
	}
	emit_frame(&f, &m, e);
	return emit_send(h, &f, res, NULL, NULL);
}

SHIPC_EXPORT int shipc_emit_async(struct shipc *h, const struct shipc_emit *e,
                                  shipc_emit_fn *cb, void *arg)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Emit m = SHIP__EMIT__INIT;
	if (!e || !e->event_type || !cb) {
		errno = EINVAL;
		return -1;
	}
	emit_frame(&f, &m, e);
	return emit_send(h, &f, NULL, cb, arg);
}

SHIPC_EXPORT int shipc_channel_send(struct shipc *h, const char *channel,
                                    const char *sender, const char *content,
                                    const char *metadata_json,
                                    struct shipc_emit_result *res)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ChannelSend m = SHIP__CHANNEL_SEND__INIT;
	if (!channel || !sender || !content) {
		errno = EINVAL;
		return -1;
	}
	m.channel = (char *)channel;
	m.sender = (char *)sender;
	m.content = (char *)content;
	m.metadata_json = (char *)or_empty(metadata_json);
	f.body_case = SHIP__CLIENT_FRAME__BODY_CHANNEL_SEND;
	f.channel_send = &m;
	return emit_send(h, &f, res, NULL, NULL);
}

/* ---- streams ---- */

SHIPC_EXPORT int shipc_stream_declare(struct shipc *h,
                                      const struct shipc_stream_decl *d)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__StreamDeclare m = SHIP__STREAM_DECLARE__INIT;
	if (!d || !d->name) {
		errno = EINVAL;
		return -1;
	}
	m.name = (char *)d->name;
	m.subjects = (char **)d->subjects;
	m.n_subjects = d->n_subjects;
	m.max_age_ms = d->max_age_ms;
	m.max_msgs = d->max_msgs;
	m.max_bytes = d->max_bytes;
	m.memory = d->memory;
	m.replicas = d->replicas;
	f.body_case = SHIP__CLIENT_FRAME__BODY_STREAM_DECLARE;
	f.stream_declare = &m;
	struct call c = {.waiter = true};
	pthread_mutex_lock(&h->mu);
	int r = call_start(h, &c, &f, 10000);
	pthread_mutex_unlock(&h->mu);
	return r;
}

struct streams_out {
	struct shipc_stream_info *list;
	size_t n;
};

static void streams_reply(struct shipc *h, struct call *c,
                          const Ship__ServerFrame *f)
{
	struct streams_out *out = c->out;
	if (c->err)
		return;
	if (f->body_case != SHIP__SERVER_FRAME__BODY_STREAMS) {
		c->err = EPROTO;
		return;
	}
	size_t n = f->streams->n_streams;
	if (!(out->list = calloc(n ? n : 1, sizeof(*out->list)))) {
		c->err = ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const Ship__StreamInfo *s = f->streams->streams[i];
		struct shipc_stream_info *o = &out->list[i];
		snprintf(o->name, sizeof(o->name), "%s", s->name);
		for (size_t k = 0; k < s->n_subjects; k++) {
			size_t used = strlen(o->subjects);
			snprintf(o->subjects + used, sizeof(o->subjects) - used,
			         "%s%s", k ? "," : "", s->subjects[k]);
		}
		o->messages = s->messages;
		o->bytes = s->bytes;
		o->first_seq = s->first_seq;
		o->last_seq = s->last_seq;
		o->consumers = s->consumers;
		o->max_age_ms = s->max_age_ms;
		o->max_msgs = s->max_msgs;
		snprintf(o->storage, sizeof(o->storage), "%s", s->storage);
		snprintf(o->problem, sizeof(o->problem), "%s", s->problem);
	}
	out->n = n;
}

SHIPC_EXPORT int shipc_streams(struct shipc *h, struct shipc_stream_info **list,
                               size_t *n)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__StreamsRequest m = SHIP__STREAMS_REQUEST__INIT;
	f.body_case = SHIP__CLIENT_FRAME__BODY_STREAMS;
	f.streams = &m;
	struct streams_out out = {0};
	struct call c = {.waiter = true, .on_reply = streams_reply, .out = &out};
	pthread_mutex_lock(&h->mu);
	int r = call_start(h, &c, &f, 10000);
	pthread_mutex_unlock(&h->mu);
	if (r < 0) {
		free(out.list);
		return -1;
	}
	*list = out.list;
	*n = out.n;
	return 0;
}

SHIPC_EXPORT void shipc_streams_free(struct shipc_stream_info *list)
{
	free(list);
}

/* ---- consumers ---- */

static uint64_t open_consumer(struct shipc *h, Ship__ClientFrame *f,
                              const char *what, shipc_event_fn *cb,
                              void *arg)
{
	if (!cb) {
		errno = EINVAL;
		return 0;
	}
	struct sub *s = calloc(1, sizeof(*s));
	if (!s || !(s->what = strdup(what))) {
		free(s);
		return 0;
	}
	s->ecb = cb;
	s->arg = arg;
	pthread_mutex_lock(&h->mu);
	uint64_t id = stream_open(h, s, f);
	pthread_mutex_unlock(&h->mu);
	return id;
}

SHIPC_EXPORT uint64_t shipc_event_subscribe(struct shipc *h,
                                            const struct shipc_event_sub *s,
                                            shipc_event_fn *cb, void *arg)
{
	return shipc_event_subscribe_flags(h, s, 0, cb, arg);
}

/* The options struct is the app's and has no size: new options are
 * flags here, so that it never grows under an older binary. */
SHIPC_EXPORT uint64_t shipc_event_subscribe_flags(struct shipc *h,
                                                  const struct shipc_event_sub *s,
                                                  int flags, shipc_event_fn *cb,
                                                  void *arg)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__EventSubscribe m = SHIP__EVENT_SUBSCRIBE__INIT;
	if (!s || (flags & ~(SHIPC_EVENT_UPDATE | SHIPC_EVENT_SHARED))) {
		errno = EINVAL;
		return 0;
	}
	m.pattern = (char *)or_empty(s->pattern);
	m.durable = (char *)or_empty(s->durable);
	m.deliver = (Ship__DeliverFrom)s->deliver;
	m.start_seq = s->start_seq;
	m.start_time_ms = s->start_time_ms;
	m.ack = s->auto_ack ? SHIP__ACK_MODE__ACK_AUTO : SHIP__ACK_MODE__ACK_EXPLICIT;
	m.ack_wait_ms = s->ack_wait_ms;
	m.max_deliver = s->max_deliver;
	m.backoff_ms = (uint32_t *)s->backoff_ms;
	m.n_backoff_ms = s->n_backoff;
	m.credit = s->credit;
	m.stream = (char *)or_empty(s->stream);
	m.prefix = (char *)or_empty(s->prefix);
	m.update = (flags & SHIPC_EVENT_UPDATE) != 0;
	m.shared = (flags & SHIPC_EVENT_SHARED) != 0;
	f.body_case = SHIP__CLIENT_FRAME__BODY_EVENT_SUBSCRIBE;
	f.event_subscribe = &m;
	return open_consumer(h, &f, s->pattern ? s->pattern : ">", cb, arg);
}

SHIPC_EXPORT uint64_t shipc_channel_listen(struct shipc *h, const char *channel,
                                           const char *agent, int replay,
                                           uint32_t credit, shipc_event_fn *cb,
                                           void *arg)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ChannelListen m = SHIP__CHANNEL_LISTEN__INIT;
	if (!channel || !agent) {
		errno = EINVAL;
		return 0;
	}
	m.channel = (char *)channel;
	m.agent = (char *)agent;
	m.replay = replay != 0;
	m.credit = credit;
	f.body_case = SHIP__CLIENT_FRAME__BODY_CHANNEL_LISTEN;
	f.channel_listen = &m;
	return open_consumer(h, &f, channel, cb, arg);
}

/* Credit and acks are fire-and-forget (id 0): errors come back as such. */
static int send_nowait(struct shipc *h, Ship__ClientFrame *f)
{
	pthread_mutex_lock(&h->mu);
	int r = wait_for_space(h);
	if (r == 0)
		r = queue_frame(h, f, false);
	pthread_mutex_unlock(&h->mu);
	return r;
}

SHIPC_EXPORT int shipc_event_credit(struct shipc *h, uint64_t sub,
                                    uint32_t credit)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__EventCredit m = SHIP__EVENT_CREDIT__INIT;
	m.stream = sub;
	m.credit = credit;
	f.body_case = SHIP__CLIENT_FRAME__BODY_EVENT_CREDIT;
	f.event_credit = &m;
	return send_nowait(h, &f);
}

SHIPC_EXPORT int shipc_event_ack(struct shipc *h, uint64_t sub, uint64_t token,
                                 enum shipc_ack kind, uint32_t nak_delay_ms)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__EventAck m = SHIP__EVENT_ACK__INIT;
	m.stream = sub;
	m.tokens = &token;
	m.n_tokens = 1;
	m.kind = (Ship__AckKind)kind;
	m.nak_delay_ms = nak_delay_ms;
	f.body_case = SHIP__CLIENT_FRAME__BODY_EVENT_ACK;
	f.event_ack = &m;
	return send_nowait(h, &f);
}

/* ---- channel history ---- */

struct history_out {
	struct shipc_channel_msg *list;
	size_t n;
	uint64_t more_before;
};

static char *dup_str(const char *s, int *err)
{
	char *d = strdup(s ? s : "");
	if (!d)
		*err = ENOMEM;
	return d;
}

static void history_reply(struct shipc *h, struct call *c,
                          const Ship__ServerFrame *f)
{
	struct history_out *out = c->out;
	if (c->err)
		return;
	if (f->body_case != SHIP__SERVER_FRAME__BODY_HISTORY) {
		c->err = EPROTO;
		return;
	}
	size_t n = f->history->n_messages;
	if (!(out->list = calloc(n ? n : 1, sizeof(*out->list)))) {
		c->err = ENOMEM;
		return;
	}
	out->n = n;
	out->more_before = f->history->more_before;
	for (size_t i = 0; i < n; i++) {
		const Ship__ChannelMessage *m = f->history->messages[i];
		struct shipc_channel_msg *o = &out->list[i];
		o->seq = m->seq;
		o->sent_at = m->timestamp;
		o->sender = dup_str(m->sender, &c->err);
		o->content = dup_str(m->content, &c->err);
		o->channel = dup_str(m->channel, &c->err);
		o->message_id = dup_str(m->message_id, &c->err);
		o->metadata_json = dup_str(m->metadata_json, &c->err);
	}
}

SHIPC_EXPORT int shipc_channel_history(struct shipc *h, const char *channel,
                                       uint32_t last, uint64_t before_seq,
                                       struct shipc_channel_msg **list,
                                       size_t *n, uint64_t *more_before)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ChannelHistory m = SHIP__CHANNEL_HISTORY__INIT;
	if (!channel) {
		errno = EINVAL;
		return -1;
	}
	m.channel = (char *)channel;
	m.last = last;
	m.before_seq = before_seq;
	f.body_case = SHIP__CLIENT_FRAME__BODY_CHANNEL_HISTORY;
	f.channel_history = &m;
	struct history_out out = {0};
	struct call c = {.waiter = true, .on_reply = history_reply, .out = &out};
	pthread_mutex_lock(&h->mu);
	int r = call_start(h, &c, &f, 30000);
	pthread_mutex_unlock(&h->mu);
	if (r < 0) {
		shipc_channel_history_free(out.list, out.n);
		return -1;
	}
	*list = out.list;
	*n = out.n;
	if (more_before)
		*more_before = out.more_before;
	return 0;
}

SHIPC_EXPORT void shipc_channel_history_free(struct shipc_channel_msg *list,
                                             size_t n)
{
	for (size_t i = 0; list && i < n; i++) {
		free(list[i].sender);
		free(list[i].content);
		free(list[i].channel);
		free(list[i].message_id);
		free(list[i].metadata_json);
	}
	free(list);
}
