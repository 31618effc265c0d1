/* SPDX-License-Identifier: MIT */
/* Channels: conversations between agents on the CHANNELS stream, in
 * noesis-ship's ChannelMessage JSON; history gives the newest messages. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shipd.h"

#define CHANNEL_PREFIX "ship.channel"
#define CHANNEL_STREAM "CHANNELS"
#define API_TIMEOUT_MS 5000
#define HISTORY_DEFAULT 100
#define HISTORY_MAX 1000
#define SCAN_BATCH 256
/* Bytes one pull may bring at most (batch x the server's max_payload). */
#define SCAN_BYTES (4u << 20)
#define SCAN_MAX 200000 /* messages one history may read */
/* What of a channel fits ship.channel.<channel> (sizeof counts the dot). */
#define CHANNEL_MAX (IPC_SUBJECT_MAX - sizeof(CHANNEL_PREFIX))
#define DURABLE_MAX 255 /* js_name_valid */

/* A history in the making: an ephemeral consumer read to its end, keeping
 * the newest messages in a ring. */
struct history {
	struct op op;
	uint64_t before;
	uint32_t want;
	Ship__ChannelMessage **ring;
	size_t n, head; /* count kept, next slot */
	size_t bytes, max_bytes; /* kept, and what one answer may carry */
	uint32_t batch;          /* messages asked for per pull */
	uint64_t older; /* seq of the newest message dropped from the ring */
	uint64_t pending, scanned;
	char *consumer;
	struct js_call *call;
	struct link_wait *wait;
	uint32_t outstanding;
	char filter[IPC_SUBJECT_MAX + 1];
};

/* The subject of a channel, or false, answered, if the channel is too
 * long for one. */
static bool channel_subject(struct client *c, uint64_t id,
                            char buf[IPC_SUBJECT_MAX + 1], const char *channel)
{
	if (ipc_fmt_fits(buf, IPC_SUBJECT_MAX + 1, "%s.%s", CHANNEL_PREFIX, channel))
		return true;
	client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
	             "a channel has at most %zu characters", CHANNEL_MAX);
	return false;
}

/* ---- the envelope ---- */

static void cm_free(Ship__ChannelMessage *cm)
{
	if (!cm)
		return;
	free(cm->sender);
	free(cm->content);
	free(cm->channel);
	free(cm->message_id);
	free(cm->metadata_json);
	free(cm);
}

/* Parse noesis-ship's ChannelMessage; NULL if it is not one. */
static Ship__ChannelMessage *cm_parse(const char *data, size_t len)
{
	json_t *j = json_loadb(data, len, 0, NULL);
	const char *sender = json_string_value(json_object_get(j, "sender"));
	const char *content = json_string_value(json_object_get(j, "content"));
	const char *channel = json_string_value(json_object_get(j, "channel"));
	const char *mid = json_string_value(json_object_get(j, "message_id"));
	json_t *ts = json_object_get(j, "timestamp");
	json_t *meta = json_object_get(j, "metadata");
	Ship__ChannelMessage *cm = NULL;
	if (json_is_object(j) && sender && content && channel && mid &&
	    json_is_number(ts) && (cm = calloc(1, sizeof(*cm)))) {
		ship__channel_message__init(cm);
		cm->sender = strdup(sender);
		cm->content = strdup(content);
		cm->channel = strdup(channel);
		cm->message_id = strdup(mid);
		cm->timestamp = json_number_value(ts);
		cm->metadata_json = meta && !json_is_null(meta)
		                            ? json_dumps(meta, JSON_COMPACT |
		                                                       JSON_ENCODE_ANY)
		                            : strdup("");
		if (!cm->sender || !cm->content || !cm->channel ||
		    !cm->message_id || !cm->metadata_json) {
			cm_free(cm);
			cm = NULL;
		}
	}
	json_decref(j);
	return cm;
}

/* ---- send ---- */

/* The Nats-Msg-Id of a message the app gave none: its message_id, unless
 * a long channel makes that too long for one; then a random id (a fresh
 * one either way, so nothing is lost by it). */
static const char *nats_id(const char *mid, char rid[33])
{
	if (strlen(mid) <= EVENTS_MSG_ID_MAX)
		return mid;
	events_random_hex(rid, 32);
	return rid;
}

static void handle_send(struct client *c, uint64_t id,
                        const Ship__ChannelSend *s)
{
	if (!events_token_valid(s->channel) || !s->sender[0]) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "a channel is one token (no dots, spaces or "
		             "wildcards) and a message needs a sender");
		return;
	}
	char mid[IPC_SUBJECT_MAX + 32], subject[IPC_SUBJECT_MAX + 1];
	if (!channel_subject(c, id, subject, s->channel))
		return;
	json_t *meta = NULL;
	if (s->metadata_json[0] &&
	    !(meta = json_loads(s->metadata_json, JSON_DECODE_ANY, NULL))) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "metadata is not JSON");
		return;
	}
	if (!client_allowed(c, id, POL_CHANNEL, s->channel)) {
		json_decref(meta);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	/* Fits: the channel fits a subject, 32 more bytes hold "-<ns>". */
	snprintf(mid, sizeof(mid), "%s-%" PRIu64, s->channel, ns);
	/* noesis-ship's field order; metadata left out when absent. */
	json_t *env = json_pack("{s:s, s:s, s:f, s:s, s:s}", "sender", s->sender,
	                        "content", s->content, "timestamp",
	                        (double)ns / 1e9, "channel", s->channel,
	                        "message_id", mid);
	if (env && meta && !json_is_null(meta))
		json_object_set(env, "metadata", meta);
	json_decref(meta);
	char *text = env ? json_dumps(env, JSON_COMPACT) : NULL;
	json_decref(env);
	if (!text) {
		client_error(c, id, SHIP__CODE__INTERNAL, "cannot encode the message");
		return;
	}
	char rid[33];
	events_publish(c, id, subject, text,
	               s->msg_id[0] ? s->msg_id : nats_id(mid, rid),
	               CHANNEL_STREAM);
	free(text);
}

/* ---- listen ---- */

static void describe_channel(struct consumer *k, natsMsg *msg,
                             Ship__EventDelivery *d)
{
	d->channel = cm_parse(natsMsg_GetData(msg),
	                      (size_t)natsMsg_GetDataLength(msg));
	if (d->channel)
		d->channel->seq = d->stream_seq;
	else
		d->raw = true;
}

static bool own_message(struct consumer *k, natsMsg *msg)
{
	Ship__ChannelMessage *cm = cm_parse(natsMsg_GetData(msg),
	                                    (size_t)natsMsg_GetDataLength(msg));
	bool own = cm && k->agent && !strcmp(cm->sender, k->agent);
	cm_free(cm);
	return own;
}

static void handle_listen(struct client *c, uint64_t id,
                          const Ship__ChannelListen *l)
{
	if (id == 0 || !events_token_valid(l->channel) ||
	    !events_token_valid(l->agent)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "channel and agent are single tokens (no dots, "
		             "spaces or wildcards)");
		return;
	}
	char durable[DURABLE_MAX + 1], filter[IPC_SUBJECT_MAX + 1];
	if (!channel_subject(c, id, filter, l->channel))
		return;
	if (!ipc_fmt_fits(durable, sizeof(durable), "%s_%s", l->agent,
	              l->channel) ||
	    !js_name_valid(durable)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "agent and channel make no valid consumer name "
		             "(<agent>_<channel>, at most %d characters)",
		             DURABLE_MAX);
		return;
	}
	/* Listening as an agent resumes its durable consumer: the app must
	 * be that agent (a being it may act as), or it would take over
	 * another's place in the conversation. */
	if (!client_allowed(c, id, POL_CHANNEL, l->channel) ||
	    !client_allowed(c, id, POL_BEING, l->agent))
		return;
	json_t *cfg = events_consumer_config(
		durable, filter,
		l->replay ? SHIP__DELIVER_FROM__DELIVER_ALL
		          : SHIP__DELIVER_FROM__DELIVER_NEW,
		0, 0, 0, 0, NULL, 0);
	struct consumer_spec spec = {
		.dom = conf->channels_domain,
		.stream = CHANNEL_STREAM,
		.durable = durable,
		.filter = filter,
		.agent = l->agent,
		.auto_ack = true,
		.credit = l->credit ? l->credit : 64,
		.config = cfg,
		.describe = describe_channel,
		.free_delivery = events_free_delivery,
		.skip = own_message,
		/* One listener per agent and channel; resumed as it is. */
		.fixed = true,
	};
	if (cfg)
		consumer_open(c, id, &spec);
	else
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
	json_decref(cfg);
}

/* ---- history: the newest N, oldest first ---- */

static void history_free(struct history *h)
{
	op_end(&h->op);
	js_cancel(h->call);
	link_wait_cancel(h->wait);
	if (h->consumer)
		js_consumer_delete(conf->channels_domain, CHANNEL_STREAM,
		                   h->consumer);
	for (size_t i = 0; i < h->want; i++)
		cm_free(h->ring[i]);
	free(h->ring);
	free(h->consumer);
	free(h);
}

static void history_cancel(struct op *o)
{
	history_free(container_of(o, struct history, op));
}

static void history_reply(struct history *h)
{
	Ship__ChannelMessage **out = calloc(h->n ? h->n : 1, sizeof(*out));
	if (!out) {
		client_error(h->op.c, h->op.id, SHIP__CODE__INTERNAL, "out of memory");
		history_free(h);
		return;
	}
	size_t start = (h->head + h->want - h->n) % h->want; /* the oldest */
	for (size_t i = 0; i < h->n; i++)
		out[i] = h->ring[(start + i) % h->want];
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__ChannelHistoryReply r = SHIP__CHANNEL_HISTORY_REPLY__INIT;
	r.messages = out;
	r.n_messages = h->n;
	r.more_before = h->older && h->n ? out[0]->seq : 0;
	f.id = h->op.id;
	f.body_case = SHIP__SERVER_FRAME__BODY_HISTORY;
	f.history = &r;
	client_send(h->op.c, &f);
	free(out);
	history_free(h);
}

static void history_fail(struct history *h, Ship__Code code, const char *why)
{
	client_error(h->op.c, h->op.id, code, "history of %s: %s", h->filter, why);
	history_free(h);
}

/* What a message costs in the answer (and here), near enough. */
static size_t cm_size(const Ship__ChannelMessage *cm)
{
	return strlen(cm->sender) + strlen(cm->content) + strlen(cm->channel) +
	       strlen(cm->message_id) + strlen(cm->metadata_json) + 64;
}

/* Drop the oldest message kept: the answer says where to page from. */
static void history_drop(struct history *h)
{
	size_t oldest = (h->head + h->want - h->n) % h->want;
	Ship__ChannelMessage *cm = h->ring[oldest];
	h->older = cm->seq;
	h->bytes -= cm_size(cm);
	cm_free(cm);
	h->ring[oldest] = NULL;
	h->n--;
}

/* Keep the newest: at most want messages and, past the first, max_bytes
 * of them, so the answer always fits what the app may be sent. */
static void history_keep(struct history *h, natsMsg *msg, uint64_t seq)
{
	Ship__ChannelMessage *cm = cm_parse(natsMsg_GetData(msg),
	                                    (size_t)natsMsg_GetDataLength(msg));
	if (!cm)
		return; /* not a channel message: not history */
	cm->seq = seq;
	if (h->n == h->want)
		history_drop(h);
	h->ring[h->head] = cm;
	h->head = (h->head + 1) % h->want;
	h->n++;
	h->bytes += cm_size(cm);
	while (h->n > 1 && h->bytes > h->max_bytes)
		history_drop(h);
}

static void history_pull(struct history *h);

static void on_history_msg(void *arg, natsMsg *msg, natsStatus st)
{
	struct history *h = arg;
	if (st != NATS_OK) {
		h->wait = NULL;
		history_fail(h, st == NATS_TIMEOUT ? SHIP__CODE__TIMEOUT
		                                   : SHIP__CODE__UNAVAILABLE,
		             "JetStream stopped answering");
		return;
	}
	const char *status = NULL;
	if (natsMsg_GetDataLength(msg) == 0 &&
	    natsMsgHeader_Get(msg, "Status", &status) == NATS_OK) {
		/* status points into msg: read it before msg goes. */
		bool heartbeat = status && !strcmp(status, "100");
		link_msg_destroy(msg);
		if (heartbeat)
			return;
		/* 404/408: nothing more now. */
		history_reply(h);
		return;
	}
	struct js_meta meta = {0};
	js_ack_meta(natsMsg_GetReply(msg), &meta);
	uint64_t seq = meta.stream_seq, pending = meta.pending;
	h->scanned++;
	h->outstanding -= h->outstanding ? 1 : 0;
	bool stop = h->before && seq >= h->before;
	if (!stop)
		history_keep(h, msg, seq);
	link_msg_destroy(msg);
	if (stop || pending == 0 || h->scanned >= SCAN_MAX) {
		history_reply(h);
		return;
	}
	if (h->outstanding == 0)
		history_pull(h); /* on the same wait */
}

static void history_pull(struct history *h)
{
	char subject[512];
	if (!js_subject(conf->channels_domain, subject, sizeof(subject),
	                "CONSUMER.MSG.NEXT.%s.%s", CHANNEL_STREAM, h->consumer)) {
		history_fail(h, SHIP__CODE__INTERNAL, "consumer name too long");
		return;
	}
	char body[64];
	snprintf(body, sizeof(body), "{\"batch\":%u,\"no_wait\":true}",
	         h->batch);
	/* One wait (one subscription) for all of the history's pulls. */
	if (h->wait)
		link_wait_rearm(h->wait, API_TIMEOUT_MS);
	else
		h->wait = link_wait_new(API_TIMEOUT_MS, true, on_history_msg, h);
	natsConnection *nc = link_conn();
	if (!h->wait || !nc ||
	    natsConnection_PublishRequestString(nc, subject,
	                                        link_wait_inbox(h->wait),
	                                        body) != NATS_OK) {
		history_fail(h, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
		return;
	}
	h->outstanding = h->batch;
}

static void on_history_consumer(void *arg, json_t *reply,
                                const struct js_err *e)
{
	struct history *h = arg;
	h->call = NULL;
	if (e) {
		history_fail(h, e->code, e->text);
		return;
	}
	const char *name = json_string_value(json_object_get(reply, "name"));
	h->pending = (uint64_t)json_integer_value(json_object_get(reply, "num_pending"));
	if (!name || !(h->consumer = strdup(name))) {
		history_fail(h, SHIP__CODE__INTERNAL, "no consumer name");
		return;
	}
	if (h->pending == 0) {
		history_reply(h);
		return;
	}
	history_pull(h);
}

static void handle_history(struct client *c, uint64_t id,
                           const Ship__ChannelHistory *q)
{
	if (!events_token_valid(q->channel)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "a channel is one token (no dots, spaces or "
		             "wildcards)");
		return;
	}
	char filter[IPC_SUBJECT_MAX + 1];
	if (!channel_subject(c, id, filter, q->channel) ||
	    !client_allowed(c, id, POL_CHANNEL, q->channel))
		return;
	uint32_t want = q->last ? q->last : HISTORY_DEFAULT;
	if (want > HISTORY_MAX)
		want = HISTORY_MAX;
	struct history *h = calloc(1, sizeof(*h));
	if (!h || !(h->ring = calloc(want, sizeof(*h->ring)))) {
		free(h);
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	if (!op_begin(&h->op, c, id, history_cancel)) {
		free(h->ring);
		free(h);
		return;
	}
	/* The answer carries at most what one answer may hold, and that is
	 * reserved for it; older messages are paged to. */
	h->max_bytes = config_answer_limit(conf);
	if (!op_hold(&h->op, h->max_bytes)) {
		history_free(h);
		return;
	}
	int64_t maxp = link_info()->max_payload;
	h->batch = maxp > 0 && (uint64_t)maxp * SCAN_BATCH > SCAN_BYTES
	                   ? (uint32_t)(SCAN_BYTES / (uint64_t)maxp)
	                   : SCAN_BATCH;
	if (h->batch == 0)
		h->batch = 1;
	h->want = want;
	h->before = q->before_seq;
	memcpy(h->filter, filter, sizeof(h->filter));
	json_t *body = json_pack(
		"{s:s, s:{s:s, s:s, s:s, s:I, s:b, s:i}}", "stream_name",
		CHANNEL_STREAM, "config", "deliver_policy", "all", "ack_policy",
		"none", "filter_subject", h->filter, "inactive_threshold",
		(json_int_t)30 * 1000000000, "mem_storage", 1, "num_replicas", 1);
	h->call = js_api_in(conf->channels_domain,
	                    "CONSUMER.CREATE." CHANNEL_STREAM, body,
	                    API_TIMEOUT_MS, on_history_consumer, h);
	if (!h->call)
		history_fail(h, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
}

/* ---- the block ---- */

static void req_send(struct client *c, const Ship__ClientFrame *f)
{
	handle_send(c, f->id, f->channel_send);
}

static void req_listen(struct client *c, const Ship__ClientFrame *f)
{
	handle_listen(c, f->id, f->channel_listen);
}

static void req_history(struct client *c, const Ship__ClientFrame *f)
{
	handle_history(c, f->id, f->channel_history);
}

const struct block channels_block = {
	.name = "channels",
	.requests = (const struct block_request[]){
		{SHIP__CLIENT_FRAME__BODY_CHANNEL_SEND, req_send, true},
		{SHIP__CLIENT_FRAME__BODY_CHANNEL_LISTEN, req_listen, false},
		{SHIP__CLIENT_FRAME__BODY_CHANNEL_HISTORY, req_history, false},
		{0, NULL, false},
	},
};
