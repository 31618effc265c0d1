/* SPDX-License-Identifier: MIT */
/* Pull consumers for local apps: created without blocking, fed by the
 * app's credit, acked by the app or by shipd, resumed after NATS returns
 * and made again when their stream is. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shipd.h"

#define PULL_BATCH_MAX 256
/* Ack tokens kept per consumer: more than its max_ack_pending (1,000),
 * for redeliveries. */
#define ACK_TOKENS_MAX 4096
/* A pull waits this long on the server: short enough that a redelivery the
 * server holds for the next pull comes soon, and that a pull outliving its
 * consumer is soon over. */
#define PULL_EXPIRES_MS 5000
/* A pull's answer is late past this: the pull is taken as lost. */
#define PULL_WAIT_MS (PULL_EXPIRES_MS + 2000)
/* Between pulls (no credit) the wait stays this long, then goes; the next
 * pull makes a new one. */
#define PULL_IDLE_MS (3600u * 1000)
#define PULL_LATER_MS 10
/* What a pull still brings after its consumer ended is taken this long. */
#define PULL_DRAIN_MS 250
#define API_TIMEOUT_MS 5000
/* A running consumer whose stream is missing looks for it again, with a
 * backoff, this long: shipd declares its own streams as NATS comes up, an
 * app may declare its own a little later. */
#define STREAM_GONE_MS 30000
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 2000
#define JS_ERR_STREAM_NOT_FOUND 10059
#define JS_ERR_CONSUMER_NOT_FOUND 10014
/* API subjects name a stream and a consumer, each a JetStream name of at
 * most 255 characters (js_name_valid, checked wherever a name comes in:
 * consumer_open, on_created), so they are never cut: a cut subject would
 * address another consumer. */
#define NAME_MAX_CHARS 255
#define SUBJECT_SIZE                                                           \
	(sizeof("$JS.API.CONSUMER.DURABLE.CREATE..") + 2 * NAME_MAX_CHARS + \
	 JS_DOMAIN_MAX + 1)

static TAILQ_HEAD(, consumer) consumers = TAILQ_HEAD_INITIALIZER(consumers);

static void pull(struct consumer *k);
static bool lookup(struct consumer *k);
static void send_ack(const char *reply, const char *what);

/* ---- lifetime ---- */

static void drain_pull(void *arg, natsMsg *msg, natsStatus st);

static void consumer_free(struct consumer *k)
{
	TAILQ_REMOVE(&consumers, k, entry);
	durable_release(k);
	js_cancel(k->create_call);
	if (k->later)
		event_free(k->later);
	if (k->retry)
		event_free(k->retry);
	if (k->pull_wait && k->outstanding && link_connected()) {
		/* Only briefly: once the wait (its subscription) is gone, the
		 * server drops the pull for want of interest, rather than
		 * hand each new message to it until it expires. */
		link_wait_retarget(k->pull_wait, drain_pull, k->pull_wait);
		link_wait_rearm(k->pull_wait, PULL_DRAIN_MS);
	} else
		link_wait_cancel(k->pull_wait);
	size_t pos = 0;
	void *v;
	while (ipc_idmap_next(&k->acks, &pos, NULL, &v))
		free(v);
	ipc_idmap_finish(&k->acks);
	free(k->stream);
	free(k->name);
	free(k->filter);
	free(k->agent);
	json_decref(k->config);
	free(k);
}

/* A pull request cannot be taken back (not on 2.9): what it still brings
 * after its consumer ended is handed back at once with a NAK, rather than
 * left to wait out its ack wait, until the wait ends (PULL_DRAIN_MS). */
static void drain_pull(void *arg, natsMsg *msg, natsStatus st)
{
	struct link_wait *w = arg;
	if (st != NATS_OK)
		return; /* the wait is gone */
	const char *reply = natsMsg_GetReply(msg);
	if (reply && !strncmp(reply, "$JS.ACK.", 8))
		send_ack(reply, "-NAK");
	else if (natsMsg_GetDataLength(msg) == 0)
		link_wait_cancel(w); /* a status: the request is over */
	link_msg_destroy(msg);
}

/* End the stream once and forget the consumer; an ephemeral one is
 * deleted on the server (a durable one stays for the next subscribe). */
void consumer_end(struct consumer *k, Ship__Code code, const char *why)
{
	stream_end_send(&k->st, code, false, why, k->delivered, 0);
	stream_close(&k->st);
	if (!k->durable && k->name)
		js_consumer_delete(k->dom, k->stream, k->name);
	consumer_free(k);
}

/* Unacked messages are redelivered after their ack wait. */
static void consumer_stream_end(struct stream *st)
{
	consumer_end(container_of(st, struct consumer, st), SHIP__CODE__OK, NULL);
}

static const struct stream_kind consumer_kind = {
	.name = "subscription",
	.end = consumer_stream_end,
	.gone = consumer_stream_end, /* closed already: nobody is told */
};

struct consumer *consumer_find(struct client *c, uint64_t id)
{
	struct stream *st = stream_find(c, id, &consumer_kind);
	return st ? container_of(st, struct consumer, st) : NULL;
}

/* The subscribe fails (before its OK), or a running consumer ends. */
static void fail(struct consumer *k, Ship__Code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct consumer *k, Ship__Code code, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (k->ready_once) {
		consumer_end(k, code, why);
		return;
	}
	/* No stream was opened for the app: its request gets the error. */
	client_error(k->st.c, k->st.id, code, "%s", why);
	stream_close(&k->st);
	consumer_free(k);
}

/* Look the consumer up again soon: at once the first time, then with a
 * growing delay while it keeps failing (a consumer that exists but
 * refuses pulls must not make a busy loop). */
static void lookup_later(struct consumer *k)
{
	unsigned f = k->fails < 8 ? k->fails : 8;
	uint32_t ms = f == 0 ? 0 : RETRY_MIN_MS << (f - 1);
	struct timeval tv = {0, 0};
	if (ms > RETRY_MAX_MS)
		ms = RETRY_MAX_MS;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	k->fails++;
	k->ready = false;
	evtimer_add(k->retry, &tv);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct consumer *k = arg;
	if (!k->ready && !lookup(k))
		fail(k, SHIP__CODE__INTERNAL, "out of memory");
	control_flush();
}

/* ---- deliveries ---- */

static void send_ack(const char *reply, const char *what)
{
	natsConnection *nc = link_conn();
	if (nc)
		natsConnection_PublishString(nc, reply, what);
}

static void deliver(struct consumer *k, natsMsg *msg)
{
	const char *reply = natsMsg_GetReply(msg);
	struct js_meta meta;
	if (!js_ack_meta(reply, &meta)) {
		link_msg_destroy(msg);
		return;
	}
	k->credit -= k->credit ? 1 : 0;
	if (meta.stream_seq > k->last_seq) /* a redelivery is older */
		k->last_seq = meta.stream_seq;
	k->fails = 0;
	if (k->skip && k->skip(k, msg)) {
		/* Filtered out (an agent's own message): acked, and the credit
		 * it used is given back. */
		send_ack(reply, "+ACK");
		k->credit++;
		link_msg_destroy(msg);
		return;
	}
	Ship__EventDelivery d = SHIP__EVENT_DELIVERY__INIT;
	d.stream_seq = meta.stream_seq;
	d.delivered = meta.delivered;
	d.pending = meta.pending;
	d.time_ns = meta.time_ns;
	d.subject = (char *)natsMsg_GetSubject(msg);
	d.data.data = (uint8_t *)natsMsg_GetData(msg);
	d.data.len = (size_t)natsMsg_GetDataLength(msg);
	if (k->auto_ack) {
		send_ack(reply, "+ACK");
	} else {
		char *copy = strdup(reply);
		d.token = ++k->next_token;
		if (!copy || ipc_idmap_put(&k->acks, d.token, copy) < 0) {
			free(copy);
			d.token = 0; /* redelivered after ack wait */
		}
		/* Tokens an app never acks would pile up with every
		 * redelivery: only the newest ACK_TOKENS_MAX stay valid (an
		 * older one's message has been redelivered since, with a new
		 * token, or will be). */
		if (k->next_token > ACK_TOKENS_MAX)
			free(ipc_idmap_del(&k->acks,
			                   k->next_token - ACK_TOKENS_MAX));
	}
	k->describe(k, msg, &d);
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	f.id = k->st.id;
	f.body_case = SHIP__SERVER_FRAME__BODY_EVENT;
	f.event = &d;
	/* Credit bounds what is sent: never dropped. */
	client_send(k->st.c, &f);
	k->free_delivery(&d);
	k->delivered++;
	link_msg_destroy(msg);
}

/* ---- pulling ---- */

static int status_of(natsMsg *msg)
{
	const char *v = NULL;
	if (natsMsg_GetDataLength(msg) == 0 &&
	    natsMsgHeader_Get(msg, "Status", &v) == NATS_OK && v)
		return atoi(v);
	return 0;
}

/* The pull in flight is over; the wait stays for the next one. */
static void pull_over(struct consumer *k)
{
	k->outstanding = 0;
	if (k->pull_wait)
		link_wait_rearm(k->pull_wait, PULL_IDLE_MS);
}

static void pull_done(struct consumer *k)
{
	pull_over(k);
	if (k->credit)
		pull(k);
}

/* The pull found no consumer (deleted, or its stream): look it up, and
 * make it again if it is gone. */
static void pull_lost(struct consumer *k, const char *why)
{
	log_debug("consumer %s on %s: %s: looking it up", k->name, k->stream,
	          why);
	pull_over(k);
	lookup_later(k);
}

static void on_pulled(void *arg, natsMsg *msg, natsStatus st)
{
	struct consumer *k = arg;
	if (st != NATS_OK) {
		/* The wait is gone: timed out (a pull lost, or idle), no
		 * consumer answered, or the link went. A pull out for longer
		 * than its expiry got not even its 408: nothing took it (the
		 * consumer was deleted while no pull was out, or its leader
		 * moved), so the consumer is looked up, and made again if it
		 * is gone. */
		bool pulling = k->outstanding > 0;
		k->pull_wait = NULL;
		k->outstanding = 0;
		if (st == NATS_NO_RESPONDERS)
			pull_lost(k, "no responders");
		else if (st == NATS_TIMEOUT && pulling)
			pull_lost(k, "a pull went unanswered");
		control_flush();
		return;
	}
	int status = status_of(msg);
	if (status == 0) {
		k->outstanding -= k->outstanding ? 1 : 0;
		k->batch_got++;
		deliver(k, msg);
		if (k->outstanding == 0)
			pull_done(k);
		return;
	}
	const char *d = NULL;
	natsMsgHeader_Get(msg, "Description", &d);
	bool too_big = status == 409 && d && strstr(d, "MaxBytes");
	char desc[128];
	snprintf(desc, sizeof(desc), "%d %s", status, d ? d : "");
	link_msg_destroy(msg);
	if (status == 100)
		return; /* heartbeat */
	if (status == 408) {
		k->fails = 0;
		pull_done(k); /* the request expired */
		return;
	}
	if (too_big && k->batch_got > 0) {
		pull_done(k); /* the batch is full by bytes: ask again */
		return;
	}
	if (too_big) {
		/* One message is more than the app's connection may hold at
		 * once: say so rather than ask again forever. */
		consumer_end(k, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "a message is larger than half of "
		             "client_output_limit");
		control_flush();
		return;
	}
	if (status == 404 || status == 409) {
		/* Consumer deleted (with its stream?), leader change, or
		 * refused: see what is there. */
		pull_lost(k, desc);
		return;
	}
	pull_done(k);
}

static void pull_later_cb(evutil_socket_t fd, short what, void *arg)
{
	pull(arg);
	control_flush();
}

static void pull_later(struct consumer *k, uint32_t ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(k->later, &tv);
}

static void pull(struct consumer *k)
{
	if (k->outstanding || !k->ready || !k->credit || !link_connected())
		return;
	/* Credit bounds the count, this the bytes: a batch fits in what the
	 * app's connection may hold, and none is asked for while half of
	 * that still waits to be written. */
	if (k->st.c && ipc_buf_used(&k->st.c->out) > conf->client_output_limit / 2) {
		pull_later(k, PULL_LATER_MS);
		return;
	}
	natsConnection *nc = link_conn();
	if (!nc) {
		pull_later(k, RETRY_MIN_MS); /* the link is between states */
		return;
	}
	/* One wait for all pulls: each is sent with its inbox, and its
	 * timer is pushed on to cover this pull. */
	if (k->pull_wait)
		link_wait_rearm(k->pull_wait, PULL_WAIT_MS);
	else if (!(k->pull_wait = link_wait_new(PULL_WAIT_MS, true, on_pulled,
	                                        k))) {
		pull_later(k, RETRY_MIN_MS);
		return;
	}
	uint32_t batch = k->credit < PULL_BATCH_MAX ? (uint32_t)k->credit
	                                           : PULL_BATCH_MAX;
	char subject[SUBJECT_SIZE], body[128];
	js_subject(k->dom, subject, sizeof(subject), "CONSUMER.MSG.NEXT.%s.%s",
	           k->stream, k->name);
	snprintf(body, sizeof(body),
	         "{\"batch\":%u,\"expires\":%" PRIu64 ",\"max_bytes\":%u}",
	         batch, (uint64_t)PULL_EXPIRES_MS * 1000000,
	         conf->client_output_limit / 2);
	if (natsConnection_PublishRequestString(nc, subject,
	                                        link_wait_inbox(k->pull_wait),
	                                        body) != NATS_OK) {
		pull_over(k);
		pull_later(k, RETRY_MIN_MS);
		return;
	}
	k->outstanding = batch;
	k->batch_got = 0;
}

/* ---- creating ---- */

static void on_created(void *arg, json_t *reply, const struct js_err *e);

/* Create (or update) the consumer with cfg (stolen; NULL when it could
 * not be made: false, out of memory). Not sent while the link is down:
 * it is looked up again when the link is back. */
static bool send_create(struct consumer *k, json_t *cfg, bool updating)
{
	char what[SUBJECT_SIZE];
	json_t *body = cfg ? json_pack("{s:s, s:o}", "stream_name", k->stream,
	                               "config", cfg)
	                   : NULL;
	if (!body)
		return false;
	if (k->durable)
		snprintf(what, sizeof(what), "CONSUMER.DURABLE.CREATE.%s.%s",
		         k->stream, k->name);
	else
		snprintf(what, sizeof(what), "CONSUMER.CREATE.%s", k->stream);
	k->updating = updating;
	k->create_call =
		js_api_in(k->dom, what, body, API_TIMEOUT_MS, on_created, k);
	return true;
}

/* The same from a callback: out of memory ends it. */
static void create(struct consumer *k, json_t *cfg, bool updating)
{
	if (!send_create(k, cfg, updating))
		fail(k, SHIP__CODE__INTERNAL, "out of memory");
}

/* Where a consumer made again resumes: at the oldest message delivered
 * and not acknowledged yet (at least once), else after the last one. */
static uint64_t resume_seq(struct consumer *k)
{
	uint64_t min = k->last_seq + 1;
	size_t pos = 0;
	void *v;
	while (ipc_idmap_next(&k->acks, &pos, NULL, &v)) {
		struct js_meta meta;
		if (js_ack_meta(v, &meta) && meta.stream_seq < min)
			min = meta.stream_seq;
	}
	return min;
}

/* A running consumer's config to make it again: from the start of a new
 * stream (where it was means nothing there), else from resume_seq(). */
static json_t *again_config(struct consumer *k, bool new_stream)
{
	json_t *cfg = json_deep_copy(k->config);
	if (!cfg || (!new_stream && !k->last_seq))
		return cfg; /* nothing delivered yet: as first asked */
	json_object_del(cfg, "opt_start_seq");
	json_object_del(cfg, "opt_start_time");
	if (new_stream) {
		json_object_set_new(cfg, "deliver_policy", json_string("all"));
	} else {
		json_object_set_new(cfg, "deliver_policy",
		                    json_string("by_start_sequence"));
		json_object_set_new(cfg, "opt_start_seq",
		                    json_integer((json_int_t)resume_seq(k)));
	}
	return cfg;
}

/* The stream of a running consumer is not there (deleted, or NATS lost
 * its store): wait for it, within STREAM_GONE_MS. */
static void stream_missing(struct consumer *k, const struct js_err *e)
{
	if (!k->ready_once) {
		fail(k, e->code, "consumer on %s: %s", k->stream, e->text);
		return;
	}
	uint64_t now = now_ms();
	k->stream_new = true;
	if (!k->lost_ms) {
		k->lost_ms = now;
		log_info("consumer %s: stream %s is gone; waiting for it",
		         k->name ? k->name : "", k->stream);
	}
	if (now - k->lost_ms >= STREAM_GONE_MS) {
		fail(k, SHIP__CODE__NOT_FOUND,
		     "stream %s was not found for %d s", k->stream,
		     STREAM_GONE_MS / 1000);
		return;
	}
	lookup_later(k);
}

/* A call failed otherwise: a running consumer tries again. */
static void call_failed(struct consumer *k, Ship__Code code, const char *text)
{
	if (!k->ready_once)
		fail(k, code, "consumer on %s: %s", k->stream, text);
	else if (code == SHIP__CODE__UNAVAILABLE || code == SHIP__CODE__TIMEOUT)
		lookup_later(k); /* and once the link is back */
	else
		fail(k, code, "consumer on %s: %s", k->stream, text);
}

static void on_stream_info(void *arg, json_t *reply, const struct js_err *e)
{
	struct consumer *k = arg;
	k->create_call = NULL;
	if (e && e->err_code == JS_ERR_STREAM_NOT_FOUND) {
		stream_missing(k, e);
	} else if (e) {
		call_failed(k, e->code, e->text);
	} else {
		/* Made after the consumer was: another stream. */
		uint64_t made = kv_parse_time_ns(durable_str(reply, "created"));
		create(k, again_config(k, made > k->created_ns), false);
	}
	control_flush();
}

/* The consumer of a running subscription is gone. */
static void consumer_missing(struct consumer *k)
{
	char what[SUBJECT_SIZE];
	if (k->stream_new) {
		create(k, again_config(k, true), false);
		return;
	}
	/* Deleted alone, or with a stream made again since: the stream's
	 * age tells. */
	snprintf(what, sizeof(what), "STREAM.INFO.%s", k->stream);
	k->create_call = js_api_in(k->dom, what, NULL, API_TIMEOUT_MS,
	                           on_stream_info, k);
}

static void ready(struct consumer *k, json_t *reply);

/* The durable exists and this subscription opens it: as it is, updated,
 * or refused when its settings are not the ones asked for. */
static void open_existing(struct consumer *k, json_t *reply)
{
	json_t *have = json_object_get(reply, "config");
	struct durable_diff d = {.count = 0};
	durable_diff(have, k->config, &d);
	if (d.count == 0) {
		ready(k, reply);
	} else if (!k->update || d.fixed) {
		fail(k, SHIP__CODE__CONFLICT,
		     "durable '%s' exists with other settings: %s%s", k->name,
		     d.text,
		     d.fixed    ? " (cannot be changed: delete the durable first)"
		     : k->fixed ? ""
		                : "; set update to change it");
	} else {
		log_info("durable %s on %s: updated: %s", k->name, k->stream,
		         d.text);
		create(k, durable_updated_config(have, k->config), true);
	}
}

static void on_info(void *arg, json_t *reply, const struct js_err *e)
{
	struct consumer *k = arg;
	k->create_call = NULL;
	if (!e) {
		if (k->ready_once || !k->durable)
			ready(k, reply); /* resumed as it is */
		else
			open_existing(k, reply);
	} else if (e->err_code == JS_ERR_STREAM_NOT_FOUND) {
		stream_missing(k, e);
	} else if (e->err_code == JS_ERR_CONSUMER_NOT_FOUND) {
		if (k->ready_once)
			consumer_missing(k);
		else
			create(k, json_deep_copy(k->config), false);
	} else {
		call_failed(k, e->code, e->text);
	}
	control_flush();
}

static void on_created(void *arg, json_t *reply, const struct js_err *e)
{
	struct consumer *k = arg;
	k->create_call = NULL;
	if (e && e->err_code == JS_ERR_STREAM_NOT_FOUND) {
		stream_missing(k, e);
	} else if (e && k->updating && e->code == SHIP__CODE__ALREADY_EXISTS) {
		/* The server refuses the change ("... can not be updated"). */
		call_failed(k, SHIP__CODE__CONFLICT, e->text);
	} else if (e && k->ready_once && e->code == SHIP__CODE__ALREADY_EXISTS) {
		/* Made again meanwhile by another subscription sharing it:
		 * resume that one. */
		lookup_later(k);
	} else if (e) {
		call_failed(k, e->code, e->text);
	} else {
		ready(k, reply);
	}
	control_flush();
}

/* reply is the consumer's info (from INFO or CREATE). */
static void ready(struct consumer *k, json_t *reply)
{
	const char *name = json_string_value(json_object_get(reply, "name"));
	if (!name)
		name = k->name ? k->name : ""; /* a durable's */
	if (!js_name_valid(name)) {
		/* Its pull and delete subjects would address another consumer
		 * (cut) or another subject (dots): not used, and not deleted
		 * either; an ephemeral one goes once inactive. */
		log_warnx("%s: stream %s: JetStream named the consumer '%.64s%s' "
		          "(%zu characters)",
		          __func__, k->stream, name, strlen(name) > 64 ? "..." : "",
		          strlen(name));
		fail(k, SHIP__CODE__INTERNAL,
		     "JetStream named the consumer '%.64s%s' (%zu characters), "
		     "which is no consumer name",
		     name, strlen(name) > 64 ? "..." : "", strlen(name));
		return;
	}
	if (!k->name || strcmp(k->name, name)) {
		char *copy = strdup(name);
		if (!copy) {
			fail(k, SHIP__CODE__INTERNAL, "out of memory");
			return;
		}
		free(k->name);
		k->name = copy;
	}
	k->created_ns = kv_parse_time_ns(durable_str(reply, "created"));
	if (k->lost_ms)
		log_info("consumer %s: stream %s is back", k->name, k->stream);
	k->lost_ms = 0;
	k->stream_new = false;
	k->updating = false;
	k->ready = true;
	if (!k->ready_once)
		client_ok(k->st.c, k->st.id);
	k->ready_once = true;
	pull(k);
}

/* Find the consumer on the server before anything is sent to make it: a
 * durable that exists is resumed (JetStream 2.9 refuses a create that
 * would change its start), one that does not is made. Nothing is sent
 * while the link is down. false: out of memory (k is the caller's). */
static bool lookup(struct consumer *k)
{
	char what[SUBJECT_SIZE];
	if (k->create_call || !link_connected())
		return true;
	k->ready = false;
	if (!k->name) /* an ephemeral one not made yet */
		return send_create(k, json_deep_copy(k->config), false);
	snprintf(what, sizeof(what), "CONSUMER.INFO.%s.%s", k->stream, k->name);
	k->create_call =
		js_api_in(k->dom, what, NULL, API_TIMEOUT_MS, on_info, k);
	return true;
}

struct consumer *consumer_open(struct client *c, uint64_t id,
                               const struct consumer_spec *sp)
{
	if (!link_connected()) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE,
		             "NATS is not connected (%s)",
		             link_state_name(link_info()->state));
		return NULL;
	}
	if (!js_name_valid(sp->stream) ||
	    (sp->durable && !js_name_valid(sp->durable))) {
		/* In an API subject, a longer name would be cut to another
		 * one, a name with dots would be more tokens. */
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "stream '%.64s' or consumer '%.64s' is not a "
		             "JetStream name (1 to %d printable characters, no "
		             "spaces, dots, wildcards or slashes)",
		             sp->stream, sp->durable ? sp->durable : "",
		             NAME_MAX_CHARS);
		return NULL;
	}
	if (sp->durable && durable_busy(c, id, sp))
		return NULL;
	struct consumer *k = calloc(1, sizeof(*k));
	if (!k) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	TAILQ_INSERT_TAIL(&consumers, k, entry);
	k->dom = sp->dom;
	k->stream = strdup(sp->stream);
	k->name = sp->durable ? strdup(sp->durable) : NULL;
	k->filter = strdup(sp->filter);
	k->agent = sp->agent ? strdup(sp->agent) : NULL;
	k->durable = sp->durable != NULL;
	k->auto_ack = sp->auto_ack;
	k->credit = sp->credit;
	k->skip = sp->skip;
	k->describe = sp->describe;
	k->free_delivery = sp->free_delivery;
	k->update = sp->update;
	k->shared = sp->shared;
	k->fixed = sp->fixed;
	k->config = json_incref(sp->config);
	k->later = evtimer_new(base, pull_later_cb, k);
	k->retry = evtimer_new(base, retry_cb, k);
	if (!k->stream || !k->filter || (sp->durable && !k->name) ||
	    (sp->agent && !k->agent) || !k->later || !k->retry ||
	    (k->durable && durable_take(k, sp->shared) < 0)) {
		consumer_free(k);
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	if (!stream_open(&k->st, &consumer_kind, c, id)) {
		consumer_free(k);
		return NULL;
	}
	bool mem = lookup(k);
	if (!k->create_call) {
		stream_close(&k->st);
		consumer_free(k);
		if (mem)
			client_error(c, id, SHIP__CODE__UNAVAILABLE,
			             "NATS is not connected");
		else
			client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	return k;
}

/* ---- app requests on an open consumer ---- */

void consumer_credit(struct consumer *k, uint32_t credit)
{
	/* Bounded: an app cannot ask shipd to hold more than it can send. */
	uint64_t max = 65536;
	k->credit = k->credit + credit > max ? max : k->credit + credit;
	pull(k);
}

int consumer_ack(struct consumer *k, uint64_t token, Ship__AckKind kind,
                 uint32_t nak_delay_ms)
{
	char *reply = ipc_idmap_get(&k->acks, token);
	if (!reply)
		return -1;
	char body[64];
	switch (kind) {
	case SHIP__ACK_KIND__NAK:
		if (nak_delay_ms)
			snprintf(body, sizeof(body), "-NAK {\"delay\":%" PRIu64 "}",
			         (uint64_t)nak_delay_ms * 1000000);
		else
			snprintf(body, sizeof(body), "-NAK");
		break;
	case SHIP__ACK_KIND__TERM:
		snprintf(body, sizeof(body), "+TERM");
		break;
	case SHIP__ACK_KIND__IN_PROGRESS:
		snprintf(body, sizeof(body), "+WPI");
		send_ack(reply, body);
		return 0; /* the token stays valid */
	default:
		snprintf(body, sizeof(body), "+ACK");
		break;
	}
	send_ack(reply, body);
	ipc_idmap_del(&k->acks, token);
	free(reply);
	return 0;
}

/* ---- the rest of the daemon ---- */

void consumer_link_changed(bool up)
{
	struct consumer *k, *next;
	TAILQ_FOREACH_SAFE(k, &consumers, entry, next) {
		if (!up) {
			k->ready = false;
			js_cancel(k->create_call);
			k->create_call = NULL;
			evtimer_del(k->retry);
			/* The pull in flight is over. Its wait is the link's to
			 * fail (the callback forgets it); one it keeps serves
			 * the next pull. */
			k->outstanding = 0;
			/* Ack subjects of the old deliveries still work after a
			 * reconnect; keep the tokens. */
			continue;
		}
		/* A durable resumes where it was; one whose stream NATS lost
		 * waits for it again from now; an ephemeral one may have
		 * expired meanwhile and is made again from where it was. */
		k->lost_ms = 0;
		k->fails = 0;
		if (!lookup(k))
			fail(k, SHIP__CODE__INTERNAL, "out of memory");
	}
}

void consumer_finish(void)
{
	struct consumer *k;
	while ((k = TAILQ_FIRST(&consumers)))
		consumer_free(k);
	durable_finish();
}
