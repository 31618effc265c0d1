/* SPDX-License-Identifier: MIT */
/* Pull consumers for local apps: created without blocking, fed by the
 * app's credit, acked by the app or by shipd, resumed after NATS returns. */
#include <errno.h>
#include <inttypes.h>
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
#define PULL_LATER_MS 10
#define API_TIMEOUT_MS 5000
/* API subjects name a stream and a consumer, each a JetStream name of at
 * most 255 characters (js_name_valid, checked wherever a name comes in:
 * consumer_open, on_created), so they are never cut: a cut subject would
 * address another consumer. */
#define NAME_MAX_CHARS 255
#define SUBJECT_SIZE                                                           \
	(sizeof("$JS.API.CONSUMER.DURABLE.CREATE..") + 2 * NAME_MAX_CHARS)

static TAILQ_HEAD(, consumer) consumers = TAILQ_HEAD_INITIALIZER(consumers);

static void pull(struct consumer *k);
static void create(struct consumer *k);
static void send_ack(const char *reply, const char *what);

/* ---- lifetime ---- */

static void drain_pull(void *arg, natsMsg *msg, natsStatus st);

static void consumer_free(struct consumer *k)
{
	TAILQ_REMOVE(&consumers, k, entry);
	js_cancel(k->create_call);
	if (k->later)
		event_free(k->later);
	if (k->pull_wait && k->outstanding && link_connected())
		link_wait_retarget(k->pull_wait, drain_pull, k->pull_wait);
	else
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
 * left to wait out its ack wait. The wait ends at its expiry. */
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
	natsMsg_Destroy(msg);
}

/* End the stream once and forget the consumer; an ephemeral one is
 * deleted on the server (a durable one stays for the next subscribe). */
void consumer_end(struct consumer *k, Ship__Code code, const char *why)
{
	if (k->st.c) {
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__StreamEnd e = SHIP__STREAM_END__INIT;
		e.delivered = k->delivered;
		f.id = k->st.id;
		f.code = code;
		f.error = (char *)(why ? why : "");
		f.body_case = SHIP__SERVER_FRAME__BODY_END;
		f.end = &e;
		client_send(k->st.c, &f);
		stream_close(&k->st);
	}
	if (!k->durable && k->name)
		js_consumer_delete(k->stream, k->name);
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

/* ---- deliveries ---- */

static void send_ack(const char *reply, const char *what)
{
	if (link_conn())
		natsConnection_PublishString(link_conn(), reply, what);
}

static void deliver(struct consumer *k, natsMsg *msg)
{
	const char *reply = natsMsg_GetReply(msg);
	struct js_meta meta;
	if (!js_ack_meta(reply, &meta)) {
		natsMsg_Destroy(msg);
		return;
	}
	k->credit -= k->credit ? 1 : 0;
	if (k->skip && k->skip(k, msg)) {
		/* Filtered out (an agent's own message): acked, and the credit
		 * it used is given back. */
		send_ack(reply, "+ACK");
		k->credit++;
		natsMsg_Destroy(msg);
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
	natsMsg_Destroy(msg);
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

static void pull_done(struct consumer *k)
{
	link_wait_cancel(k->pull_wait);
	k->pull_wait = NULL;
	k->outstanding = 0;
	if (k->credit)
		pull(k);
}

static void on_pulled(void *arg, natsMsg *msg, natsStatus st)
{
	struct consumer *k = arg;
	if (st != NATS_OK) {
		/* Expired or the link went: the wait is gone already. */
		k->pull_wait = NULL;
		k->outstanding = 0;
		if (st == NATS_TIMEOUT && k->credit)
			pull(k);
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
	if (status == 409)
		log_debug("consumer %s: 409 %s", k->name, d ? d : "");
	natsMsg_Destroy(msg);
	if (status == 100)
		return; /* heartbeat */
	if (status == 404 || status == 408) {
		pull_done(k); /* no messages (now), or the request expired */
		return;
	}
	if (too_big && k->batch_got > 0) {
		pull_done(k); /* the batch is full by bytes: ask again */
		return;
	}
	if (status == 409) {
		if (too_big) {
			/* One message is more than the app's connection may
			 * hold at once: say so rather than ask again forever. */
			consumer_end(k, SHIP__CODE__RESOURCE_EXHAUSTED,
			             "a message is larger than half of "
			             "client_output_limit");
			control_flush();
			return;
		}
		/* Deleted or leader change: make it again. */
		link_wait_cancel(k->pull_wait);
		k->pull_wait = NULL;
		k->outstanding = 0;
		create(k);
		return;
	}
	pull_done(k);
}

static void pull_later_cb(evutil_socket_t fd, short what, void *arg)
{
	pull(arg);
	control_flush();
}

static void pull(struct consumer *k)
{
	if (k->pull_wait || !k->ready || !k->credit || !link_connected())
		return;
	/* Credit bounds the count, this the bytes: a batch fits in what the
	 * app's connection may hold, and none is asked for while half of
	 * that still waits to be written. */
	if (k->st.c && ipc_buf_used(&k->st.c->out) > conf->client_output_limit / 2) {
		struct timeval tv = {0, PULL_LATER_MS * 1000};
		evtimer_add(k->later, &tv);
		return;
	}
	uint32_t batch = k->credit < PULL_BATCH_MAX ? (uint32_t)k->credit
	                                           : PULL_BATCH_MAX;
	k->pull_wait = link_wait_new(PULL_EXPIRES_MS + 2000, true, on_pulled, k);
	if (!k->pull_wait)
		return;
	char subject[SUBJECT_SIZE], body[128];
	snprintf(subject, sizeof(subject), "$JS.API.CONSUMER.MSG.NEXT.%s.%s",
	         k->stream, k->name);
	snprintf(body, sizeof(body),
	         "{\"batch\":%u,\"expires\":%" PRIu64 ",\"max_bytes\":%u}",
	         batch, (uint64_t)PULL_EXPIRES_MS * 1000000,
	         conf->client_output_limit / 2);
	if (natsConnection_PublishRequestString(link_conn(), subject,
	                                        link_wait_inbox(k->pull_wait),
	                                        body) != NATS_OK) {
		link_wait_cancel(k->pull_wait);
		k->pull_wait = NULL;
		return;
	}
	k->outstanding = batch;
	k->batch_got = 0;
}

/* ---- creating ---- */

static void on_created(void *arg, json_t *reply, const struct js_err *e)
{
	struct consumer *k = arg;
	k->create_call = NULL;
	if (e) {
		if (!k->ready_once) {
			/* The subscribe itself fails: no stream was opened. */
			client_error(k->st.c, k->st.id, e->code,
			             "consumer on %s: %s", k->stream, e->text);
			stream_close(&k->st);
			consumer_free(k);
		} else if (e->code == SHIP__CODE__UNAVAILABLE ||
		           e->code == SHIP__CODE__TIMEOUT) {
			/* Try again when the link is back. */
		} else {
			consumer_end(k, e->code, e->text);
		}
		control_flush();
		return;
	}
	const char *name = json_string_value(json_object_get(reply, "name"));
	if (!name)
		name = k->name ? k->name : ""; /* a durable's */
	struct js_err bad = {.code = SHIP__CODE__INTERNAL};
	char *copy = NULL;
	if (!js_name_valid(name)) {
		/* Its pull and delete subjects would address another consumer
		 * (cut) or another subject (dots): not used, and not deleted
		 * either; an ephemeral one goes once inactive. */
		snprintf(bad.text, sizeof(bad.text),
		         "JetStream named the consumer '%.64s%s' (%zu "
		         "characters), which is no consumer name",
		         name, strlen(name) > 64 ? "..." : "", strlen(name));
		log_warnx("%s: stream %s: %s", __func__, k->stream, bad.text);
		on_created(k, NULL, &bad);
		return;
	}
	if (!k->name || strcmp(k->name, name)) {
		if (!(copy = strdup(name))) {
			snprintf(bad.text, sizeof(bad.text), "out of memory");
			on_created(k, NULL, &bad);
			return;
		}
		free(k->name);
		k->name = copy;
	}
	k->ready = true;
	if (!k->ready_once)
		client_ok(k->st.c, k->st.id);
	k->ready_once = true;
	pull(k);
	control_flush();
}

static void create(struct consumer *k)
{
	char what[SUBJECT_SIZE];
	if (k->create_call || !link_connected())
		return;
	k->ready = false;
	json_t *body = json_pack("{s:s, s:O}", "stream_name", k->stream, "config",
	                         k->config);
	if (k->durable)
		snprintf(what, sizeof(what), "CONSUMER.DURABLE.CREATE.%s.%s",
		         k->stream, k->name);
	else
		snprintf(what, sizeof(what), "CONSUMER.CREATE.%s", k->stream);
	k->create_call = js_api(what, body, API_TIMEOUT_MS, on_created, k);
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
	struct consumer *k = calloc(1, sizeof(*k));
	if (!k) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	TAILQ_INSERT_TAIL(&consumers, k, entry);
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
	k->config = json_incref(sp->config);
	k->later = evtimer_new(base, pull_later_cb, k);
	if (!k->stream || !k->filter || (sp->durable && !k->name) ||
	    (sp->agent && !k->agent) || !k->later) {
		consumer_free(k);
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	if (!stream_open(&k->st, &consumer_kind, c, id)) {
		consumer_free(k);
		return NULL;
	}
	create(k);
	if (!k->create_call) {
		stream_close(&k->st);
		consumer_free(k);
		client_error(c, id, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
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
	struct consumer *k;
	TAILQ_FOREACH(k, &consumers, entry) {
		if (!up) {
			k->ready = false;
			js_cancel(k->create_call);
			k->create_call = NULL;
			link_wait_cancel(k->pull_wait);
			k->pull_wait = NULL;
			k->outstanding = 0;
			/* Ack subjects of the old deliveries still work after a
			 * reconnect; keep the tokens. */
			continue;
		}
		/* A durable resumes where it was; an ephemeral one may have
		 * expired meanwhile and is made again from where it was. */
		create(k);
	}
}

void consumer_finish(void)
{
	struct consumer *k;
	while ((k = TAILQ_FIRST(&consumers)))
		consumer_free(k);
}
