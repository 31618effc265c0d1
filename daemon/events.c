/* SPDX-License-Identifier: MIT */
/* EventBus: durable events on JetStream in noesis-ship's ShipEvent JSON,
 * acknowledged emits with a Nats-Msg-Id, consumers fed by credit. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "shipd.h"

#define EMIT_TIMEOUT_MS 5000
#define API_TIMEOUT_MS 5000
#define DEFAULT_CREDIT 64
#define MAX_PAYLOAD_JSON (1u << 20)

/* An acknowledged publish in flight for a client. */
struct pending {
	struct op op;
	struct js_call *call;
	char stream[64];
	char msg_id[128];
};

/* The streams shipd declares itself, checked whenever NATS comes up. */
static struct default_stream {
	const char *name;
	const char *subject;
	int64_t max_age_s;
	int64_t max_msgs;
	bool ok;
	char problem[256];
} defaults[] = {
	{"SHIP_EVENTS", "ship.events.>", 86400, 100000, false, ""},
	{"CHANNELS", "ship.channel.>", 2592000, 10000, false, ""},
};

/* The streams the configuration declares, and what became of them. */
static struct declared_stream {
	char name[256];
	char problem[256];
} declared[CONFIG_MAX_STREAMS];

/* ---- shared helpers ---- */

void events_timestamp(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	/* noesis-ship (chrono) writes nanoseconds and a +00:00 offset. */
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%09ld+00:00", ts.tv_nsec);
}

/* Ids need to be unique and unpredictable enough to never collide, not
 * secret: one getrandom() seeds a splitmix64 stream. */
static uint64_t rng_next(void)
{
	static uint64_t state;
	static bool seeded;
	if (!seeded) {
		if (getrandom(&state, sizeof(state), 0) != sizeof(state))
			state = now_ms() ^ ((uint64_t)getpid() << 32);
		seeded = true;
	}
	uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void events_random_hex(char *buf, size_t nchars)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t r = 0;
	for (size_t i = 0; i < nchars; i++) {
		if (i % 16 == 0)
			r = rng_next();
		buf[i] = hex[r & 0xf];
		r >>= 4;
	}
	buf[nchars] = '\0';
}

/* One token of a subject: no dots, wildcards or whitespace. */
bool events_token_valid(const char *s)
{
	return s && *s && ipc_subject_valid(s) && !strchr(s, '.') &&
	       !strchr(s, '*') && !strchr(s, '>');
}

static void pending_free(struct pending *p)
{
	js_cancel(p->call);
	op_end(&p->op);
	free(p);
}

/* The app left: the publish may still be stored, and the app retries
 * with the same Nats-Msg-Id if it cares. */
static void pending_cancel(struct op *o)
{
	pending_free((struct pending *)o);
}

static void on_acked(void *arg, uint64_t seq, bool dup, const struct js_err *e)
{
	struct pending *p = arg;
	p->call = NULL;
	if (e) {
		client_error(p->op.c, p->op.id,
		             e->code, "%s (Nats-Msg-Id %s; retrying with the same "
		             "id is safe)",
		             e->text, p->msg_id);
	} else {
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__EmitReply r = SHIP__EMIT_REPLY__INIT;
		r.seq = seq;
		r.duplicate = dup;
		r.msg_id = p->msg_id;
		r.stream = p->stream;
		f.id = p->op.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_EMITTED;
		f.emitted = &r;
		client_send(p->op.c, &f);
	}
	pending_free(p);
}

void events_publish(struct client *c, uint64_t id, const char *subject,
                    const char *json, const char *msg_id, const char *stream)
{
	if (id == 0) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "an acknowledged publish needs an id");
		return;
	}
	if (!link_connected()) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE,
		             "NATS is not connected (%s)",
		             link_state_name(link_info()->state));
		return;
	}
	struct pending *p = calloc(1, sizeof(*p));
	if (!p) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	if (!op_begin(&p->op, c, id, pending_cancel)) {
		free(p);
		return;
	}
	snprintf(p->stream, sizeof(p->stream), "%s", stream);
	snprintf(p->msg_id, sizeof(p->msg_id), "%s", msg_id);
	p->call = js_publish_id(subject, msg_id, json, strlen(json),
	                        EMIT_TIMEOUT_MS, on_acked, p);
	if (!p->call) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
		pending_free(p);
	}
}

/* ---- emit ---- */

/* Append s as a JSON string (UTF-8 passes through; controls, quote and
 * backslash escaped). */
static void json_quote(struct ipc_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	ipc_buf_append(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			char esc[2] = {'\\', (char)*p};
			ipc_buf_append(b, esc, 2);
		} else if (*p < 0x20) {
			char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
			ipc_buf_append(b, esc, 6);
		} else {
			ipc_buf_append(b, p, 1);
		}
	}
	ipc_buf_append(b, "\"", 1);
}

static const char *or_default(const char *s, const char *d)
{
	return s && *s ? s : d;
}

static void handle_emit(struct client *c, uint64_t id, const Ship__Emit *e)
{
	const char *stream = or_default(e->stream, "SHIP_EVENTS");
	const char *prefix = or_default(e->prefix, "ship.events");
	char subject[IPC_SUBJECT_MAX + 1];
	if ((size_t)snprintf(subject, sizeof(subject), "%s.%s", prefix,
	                     e->event_type) >= sizeof(subject) ||
	    !e->event_type[0] || !ipc_subject_valid(subject) ||
	    !js_name_valid(stream)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid event type '%.128s' (tokens separated by "
		             "dots, no wildcards) or stream",
		             e->event_type);
		return;
	}
	if (e->payload_json[0]) {
		/* Validate only; the app's text goes in as it is. */
		json_error_t jerr;
		json_t *payload = NULL;
		if (strlen(e->payload_json) > MAX_PAYLOAD_JSON ||
		    !(payload = json_loads(e->payload_json,
		                           JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
		                           &jerr))) {
			client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
			             "payload is not JSON: %s", jerr.text);
			return;
		}
		json_decref(payload);
	}
	char ts[64], corr[16], msg_id[64];
	events_timestamp(ts, sizeof(ts));
	if (!e->correlation_id[0])
		events_random_hex(corr, 8);
	if (!e->msg_id[0])
		events_random_hex(msg_id, 32);
	/* noesis-ship's fields in its order, written directly: no need to
	 * build a tree only to print it. */
	struct ipc_buf b = {0};
	ipc_buf_append(&b, "{\"event_type\":", 14);
	json_quote(&b, e->event_type);
	ipc_buf_append(&b, ",\"timestamp\":\"", 14);
	ipc_buf_append(&b, ts, strlen(ts));
	ipc_buf_append(&b, "\",\"source\":", 11);
	json_quote(&b, e->source);
	ipc_buf_append(&b, ",\"payload\":", 11);
	if (e->payload_json[0])
		ipc_buf_append(&b, e->payload_json, strlen(e->payload_json));
	else
		ipc_buf_append(&b, "null", 4);
	ipc_buf_append(&b, ",\"correlation_id\":", 18);
	json_quote(&b, e->correlation_id[0] ? e->correlation_id : corr);
	ipc_buf_append(&b, ",\"version\":\"1.0\"}", 17);
	if (!ipc_buf_append(&b, "", 1)) /* NUL, not sent */
		events_publish(c, id, subject, (const char *)ipc_buf_head(&b),
		               e->msg_id[0] ? e->msg_id : msg_id, stream);
	else
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
	ipc_buf_finish(&b);
}

/* ---- declaring streams ---- */

struct declare {
	struct op op; /* an app's declaration; none for shipd's own */
	struct default_stream *def;
	struct declared_stream *conf;
};

static void on_declared(void *arg, const struct js_err *e, bool created)
{
	struct declare *d = arg;
	if (d->def) {
		d->def->ok = e == NULL;
		snprintf(d->def->problem, sizeof(d->def->problem), "%s",
		         e ? e->text : "");
	} else if (d->conf) {
		snprintf(d->conf->problem, sizeof(d->conf->problem), "%s",
		         e ? e->text : "");
		if (e)
			log_warnx("stream %s from the configuration: %s",
			          d->conf->name, e->text);
	} else if (!d->op.c) {
		/* The app left; the declaration went on without it. */
	} else if (e) {
		client_error(d->op.c, d->op.id, e->code, "%s", e->text);
	} else {
		client_ok(d->op.c, d->op.id);
	}
	op_end(&d->op);
	free(d);
}

/* js_stream_ensure cannot be stopped: it finishes without the app. */
static void declare_cancel(struct op *o)
{
}

static void declare_defaults(void)
{
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
		struct default_stream *ds = &defaults[i];
		char *subjects[] = {(char *)ds->subject};
		struct js_stream_cfg cfg = {
			.name = (char *)ds->name,
			.subjects = subjects,
			.n_subjects = 1,
			.max_age_ns = ds->max_age_s * 1000000000,
			.max_msgs = ds->max_msgs,
		};
		struct declare *d = calloc(1, sizeof(*d));
		if (!d)
			return;
		d->def = ds;
		if (js_stream_ensure(&cfg, on_declared, d) < 0)
			free(d);
	}
	for (int i = 0; i < conf->n_streams; i++) {
		const struct config_stream *cs = &conf->streams[i];
		char subjects[1024], *save = NULL, *list[64];
		size_t n = 0;
		snprintf(subjects, sizeof(subjects), "%s", cs->subjects);
		for (char *t = strtok_r(subjects, ",", &save); t && n < 64;
		     t = strtok_r(NULL, ",", &save))
			list[n++] = t;
		struct js_stream_cfg cfg = {
			.name = cs->name,
			.subjects = list,
			.n_subjects = n,
			.max_age_ns = (int64_t)cs->max_age_s * 1000000000,
			.max_msgs = cs->max_msgs,
			.max_bytes = cs->max_bytes,
			.memory = cs->memory,
			.replicas = (int)cs->replicas,
		};
		struct declare *d = calloc(1, sizeof(*d));
		if (!d)
			return;
		d->conf = &declared[i];
		snprintf(declared[i].name, sizeof(declared[i].name), "%s", cs->name);
		if (js_stream_ensure(&cfg, on_declared, d) < 0)
			free(d);
	}
}

static void handle_declare(struct client *c, uint64_t id,
                           const Ship__StreamDeclare *sd)
{
	if (!js_name_valid(sd->name) || sd->n_subjects == 0 ||
	    sd->n_subjects > 64) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "a stream needs a name (no dots or wildcards) and "
		             "1 to 64 subjects");
		return;
	}
	for (size_t i = 0; i < sd->n_subjects; i++) {
		if (!ipc_subject_pattern_valid(sd->subjects[i])) {
			client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
			             "invalid subject '%.128s'", sd->subjects[i]);
			return;
		}
	}
	struct js_stream_cfg cfg = {
		.name = sd->name,
		.subjects = sd->subjects,
		.n_subjects = sd->n_subjects,
		.max_age_ns = (int64_t)sd->max_age_ms * 1000000,
		.max_msgs = sd->max_msgs,
		.max_bytes = sd->max_bytes,
		.memory = sd->memory,
		.replicas = (int)sd->replicas,
	};
	if (!link_connected()) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
		return;
	}
	struct declare *d = calloc(1, sizeof(*d));
	if (!d) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	if (!op_begin(&d->op, c, id, declare_cancel)) {
		free(d);
		return;
	}
	if (js_stream_ensure(&cfg, on_declared, d) < 0) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
		op_end(&d->op);
		free(d);
	}
}

/* ---- subscribing ---- */

static char *json_text(json_t *j)
{
	return j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

/* A ShipEvent needs all six fields with their types (correlation_id is
 * required: noesis-ship fails to decode without it). */
static void describe_event(struct consumer *k, natsMsg *msg,
                           Ship__EventDelivery *d)
{
	json_t *j = json_loadb(natsMsg_GetData(msg),
	                       (size_t)natsMsg_GetDataLength(msg), 0, NULL);
	const char *et = json_string_value(json_object_get(j, "event_type"));
	const char *ts = json_string_value(json_object_get(j, "timestamp"));
	const char *src = json_string_value(json_object_get(j, "source"));
	const char *corr = json_string_value(json_object_get(j, "correlation_id"));
	const char *ver = json_string_value(json_object_get(j, "version"));
	json_t *payload = json_object_get(j, "payload");
	if (!json_is_object(j) || !et || !ts || !src || !corr || !ver ||
	    !payload) {
		d->raw = true;
		json_decref(j);
		return;
	}
	Ship__ShipEvent *ev = malloc(sizeof(*ev));
	if (!ev) {
		d->raw = true;
		json_decref(j);
		return;
	}
	ship__ship_event__init(ev);
	ev->event_type = strdup(et);
	ev->timestamp = strdup(ts);
	ev->source = strdup(src);
	ev->correlation_id = strdup(corr);
	ev->version = strdup(ver);
	ev->payload_json = json_text(payload);
	json_decref(j);
	if (!ev->event_type || !ev->timestamp || !ev->source ||
	    !ev->correlation_id || !ev->version || !ev->payload_json) {
		d->event = ev;
		events_free_delivery(d);
		d->raw = true;
		return;
	}
	d->event = ev;
}

void events_free_delivery(Ship__EventDelivery *d)
{
	Ship__ShipEvent *ev = d->event;
	if (ev) {
		free(ev->event_type);
		free(ev->timestamp);
		free(ev->source);
		free(ev->correlation_id);
		free(ev->version);
		free(ev->payload_json);
		free(ev);
		d->event = NULL;
	}
	Ship__ChannelMessage *cm = d->channel;
	if (cm) {
		free(cm->sender);
		free(cm->content);
		free(cm->channel);
		free(cm->message_id);
		free(cm->metadata_json);
		free(cm);
		d->channel = NULL;
	}
}

json_t *events_consumer_config(const char *durable, const char *filter,
                               Ship__DeliverFrom from, uint64_t start_seq,
                               uint64_t start_time_ms, uint32_t ack_wait_ms,
                               int32_t max_deliver, const uint32_t *backoff,
                               size_t n_backoff)
{
	static const char *policies[] = {"all", "new", "last", "by_start_sequence",
	                                 "by_start_time"};
	json_t *cfg = json_pack("{s:s, s:s, s:s, s:I, s:I, s:i}", "deliver_policy",
	                        policies[from], "ack_policy", "explicit",
	                        "filter_subject", filter, "ack_wait",
	                        (json_int_t)(ack_wait_ms ? ack_wait_ms : 30000) *
	                                1000000,
	                        "max_deliver",
	                        (json_int_t)(max_deliver ? max_deliver : -1),
	                        "max_ack_pending", 1000);
	if (!cfg)
		return NULL;
	if (durable)
		json_object_set_new(cfg, "durable_name", json_string(durable));
	else
		json_object_set_new(cfg, "inactive_threshold",
		                    json_integer((json_int_t)60 * 1000000000));
	if (from == SHIP__DELIVER_FROM__DELIVER_BY_SEQ)
		json_object_set_new(cfg, "opt_start_seq",
		                    json_integer((json_int_t)start_seq));
	if (from == SHIP__DELIVER_FROM__DELIVER_BY_TIME) {
		char ts[64];
		time_t t = (time_t)(start_time_ms / 1000);
		struct tm tm;
		gmtime_r(&t, &tm);
		size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(ts + n, sizeof(ts) - n, ".%03uZ",
		         (unsigned)(start_time_ms % 1000));
		json_object_set_new(cfg, "opt_start_time", json_string(ts));
	}
	if (n_backoff) {
		json_t *b = json_array();
		for (size_t i = 0; i < n_backoff; i++)
			json_array_append_new(b, json_integer((json_int_t)backoff[i] *
			                                      1000000));
		json_object_set_new(cfg, "backoff", b);
	}
	return cfg;
}

static void handle_subscribe(struct client *c, uint64_t id,
                             const Ship__EventSubscribe *s)
{
	const char *stream = or_default(s->stream, "SHIP_EVENTS");
	const char *prefix = or_default(s->prefix, "ship.events");
	char filter[IPC_SUBJECT_MAX + 1];
	if (id == 0 ||
	    (size_t)snprintf(filter, sizeof(filter), "%s.%s", prefix,
	                     or_default(s->pattern, ">")) >= sizeof(filter) ||
	    !ipc_subject_pattern_valid(filter) || !js_name_valid(stream) ||
	    (s->durable[0] && !js_name_valid(s->durable)) ||
	    s->deliver > SHIP__DELIVER_FROM__DELIVER_BY_TIME) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid pattern, stream or durable name (names "
		             "have no dots, spaces or wildcards)");
		return;
	}
	if (s->n_backoff_ms && s->max_deliver > 0 &&
	    (size_t)s->max_deliver <= s->n_backoff_ms) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "max_deliver must be more than the %zu backoff steps",
		             s->n_backoff_ms);
		return;
	}
	if (s->n_backoff_ms > 64) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "at most 64 backoff steps");
		return;
	}
	json_t *cfg = events_consumer_config(
		s->durable[0] ? s->durable : NULL, filter, s->deliver, s->start_seq,
		s->start_time_ms, s->ack_wait_ms, s->max_deliver, s->backoff_ms,
		s->n_backoff_ms);
	struct consumer_spec spec = {
		.stream = stream,
		.durable = s->durable[0] ? s->durable : NULL,
		.filter = filter,
		.auto_ack = s->ack == SHIP__ACK_MODE__ACK_AUTO,
		.credit = s->credit ? s->credit : DEFAULT_CREDIT,
		.config = cfg,
		.describe = describe_event,
		.free_delivery = events_free_delivery,
	};
	if (cfg)
		consumer_open(c, id, &spec);
	else
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
	json_decref(cfg);
}

static void handle_credit(struct client *c, uint64_t id,
                          const Ship__EventCredit *cr)
{
	struct consumer *k = consumer_find(c, cr->stream);
	if (!k) {
		client_error(c, id, SHIP__CODE__NOT_FOUND,
		             "no open subscription %" PRIu64, cr->stream);
		return;
	}
	consumer_credit(k, cr->credit);
	if (id)
		client_ok(c, id);
}

static void handle_ack(struct client *c, uint64_t id, const Ship__EventAck *a)
{
	struct consumer *k = consumer_find(c, a->stream);
	if (!k) {
		client_error(c, id, SHIP__CODE__NOT_FOUND,
		             "no open subscription %" PRIu64, a->stream);
		return;
	}
	size_t unknown = 0;
	for (size_t i = 0; i < a->n_tokens; i++)
		if (consumer_ack(k, a->tokens[i], a->kind, a->nak_delay_ms) < 0)
			unknown++;
	if (unknown)
		client_error(c, id, SHIP__CODE__NOT_FOUND,
		             "%zu of %zu tokens unknown (acked already?)", unknown,
		             a->n_tokens);
	else if (id)
		client_ok(c, id);
}

/* ---- listing streams ---- */

struct listing {
	struct op op;
	struct js_call *call;
};

static void listing_free(struct listing *l)
{
	js_cancel(l->call);
	op_end(&l->op);
	free(l);
}

static void listing_cancel(struct op *o)
{
	listing_free((struct listing *)o);
}

static void on_listed(void *arg, json_t *reply, const struct js_err *e)
{
	struct listing *l = arg;
	l->call = NULL;
	if (e) {
		client_error(l->op.c, l->op.id, e->code, "%s", e->text);
		listing_free(l);
		return;
	}
	json_t *arr = json_object_get(reply, "streams");
	size_t n = json_array_size(arr);
	Ship__StreamInfo *infos = calloc(n ? n : 1, sizeof(*infos));
	Ship__StreamInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	char ***subjects = calloc(n ? n : 1, sizeof(*subjects));
	if (!infos || !ptrs || !subjects) {
		client_error(l->op.c, l->op.id, SHIP__CODE__INTERNAL, "out of memory");
		n = 0;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *si = json_array_get(arr, i);
		json_t *cfg = json_object_get(si, "config");
		json_t *st = json_object_get(si, "state");
		Ship__StreamInfo *o = &infos[i];
		ship__stream_info__init(o);
		o->name = (char *)json_string_value(json_object_get(cfg, "name"));
		if (!o->name)
			o->name = "";
		json_t *subs = json_object_get(cfg, "subjects");
		size_t ns = json_array_size(subs);
		subjects[i] = calloc(ns ? ns : 1, sizeof(char *));
		for (size_t k = 0; subjects[i] && k < ns; k++)
			subjects[i][k] = (char *)json_string_value(json_array_get(subs, k));
		o->subjects = subjects[i];
		o->n_subjects = subjects[i] ? ns : 0;
		o->messages = (uint64_t)json_integer_value(json_object_get(st, "messages"));
		o->bytes = (uint64_t)json_integer_value(json_object_get(st, "bytes"));
		o->first_seq = (uint64_t)json_integer_value(json_object_get(st, "first_seq"));
		o->last_seq = (uint64_t)json_integer_value(json_object_get(st, "last_seq"));
		o->consumers = (uint32_t)json_integer_value(json_object_get(st, "consumer_count"));
		o->max_age_ms = (uint64_t)json_integer_value(json_object_get(cfg, "max_age")) / 1000000;
		o->max_msgs = json_integer_value(json_object_get(cfg, "max_msgs"));
		o->storage = (char *)json_string_value(json_object_get(cfg, "storage"));
		if (!o->storage)
			o->storage = "";
		o->problem = (char *)events_default_problem(o->name);
		ptrs[i] = o;
	}
	if (infos && ptrs && subjects) {
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__StreamsReply r = SHIP__STREAMS_REPLY__INIT;
		r.n_streams = n;
		r.streams = ptrs;
		f.id = l->op.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_STREAMS;
		f.streams = &r;
		client_send(l->op.c, &f);
	}
	for (size_t i = 0; subjects && i < n; i++)
		free(subjects[i]);
	free(subjects);
	free(infos);
	free(ptrs);
	listing_free(l);
}

static void handle_streams(struct client *c, uint64_t id)
{
	struct listing *l = calloc(1, sizeof(*l));
	if (!l) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	if (!op_begin(&l->op, c, id, listing_cancel)) {
		free(l);
		return;
	}
	/* One page of up to 256 streams is what the server sends. */
	l->call = js_api("STREAM.LIST", json_pack("{s:i}", "offset", 0),
	                 API_TIMEOUT_MS, on_listed, l);
	if (!l->call) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
		listing_free(l);
	}
}

/* ---- the block ---- */

static void req_declare(struct client *c, const Ship__ClientFrame *f)
{
	handle_declare(c, f->id, f->stream_declare);
}

static void req_emit(struct client *c, const Ship__ClientFrame *f)
{
	handle_emit(c, f->id, f->emit);
}

static void req_subscribe(struct client *c, const Ship__ClientFrame *f)
{
	handle_subscribe(c, f->id, f->event_subscribe);
}

static void req_credit(struct client *c, const Ship__ClientFrame *f)
{
	handle_credit(c, f->id, f->event_credit);
}

static void req_ack(struct client *c, const Ship__ClientFrame *f)
{
	handle_ack(c, f->id, f->event_ack);
}

static void req_streams(struct client *c, const Ship__ClientFrame *f)
{
	handle_streams(c, f->id);
}

static void link_changed(bool up)
{
	if (up)
		declare_defaults();
	consumer_link_changed(up);
}

const struct block events_block = {
	.name = "events",
	.requests = (const struct block_request[]){
		{SHIP__CLIENT_FRAME__BODY_STREAM_DECLARE, req_declare},
		{SHIP__CLIENT_FRAME__BODY_EMIT, req_emit},
		{SHIP__CLIENT_FRAME__BODY_EVENT_SUBSCRIBE, req_subscribe},
		{SHIP__CLIENT_FRAME__BODY_EVENT_CREDIT, req_credit},
		{SHIP__CLIENT_FRAME__BODY_EVENT_ACK, req_ack},
		{SHIP__CLIENT_FRAME__BODY_STREAMS, req_streams},
		{0, NULL},
	},
	.link_changed = link_changed,
	.finish = consumer_finish,
};

const char *events_default_problem(const char *stream)
{
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
		if (!strcmp(defaults[i].name, stream))
			return defaults[i].problem;
	for (int i = 0; i < conf->n_streams && i < CONFIG_MAX_STREAMS; i++)
		if (!strcmp(declared[i].name, stream))
			return declared[i].problem;
	return "";
}
