/* SPDX-License-Identifier: MIT */
/* EventBus: durable events on JetStream in noesis-ship's ShipEvent JSON,
 * acknowledged emits with a Nats-Msg-Id, consumers fed by credit. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
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
/* ms that still fit an int64 of ns (JetStream's durations). */
#define MS_MAX ((uint64_t)INT64_MAX / 1000000)
/* The last ms of 9999: RFC 3339 has four-digit years. */
#define TIME_MS_MAX 253402300799999ull
/* jetstream.c names a stream in a 256-byte "STREAM.CREATE.<name>". */
#define STREAM_NAME_MAX (256 - sizeof("STREAM.CREATE."))
/* consumer.c and jetstream.c build a consumer's API subjects in 512
 * bytes; this is the longest of them. */
#define CONSUMER_API "$JS.API.CONSUMER.DURABLE.CREATE.%s.%s"
#define LIST_MAX_PAGES 64
#define LIST_MAX_BYTES (4u << 20) /* of stream infos kept for one answer */

/* JetStream's "expected stream does not match". */
#define JS_ERR_WRONG_STREAM 10060

/* An acknowledged publish in flight for a client. */
struct pending {
	struct op op;
	struct js_call *call;
	char stream[256]; /* js_name_valid: at most 255 */
	char msg_id[EVENTS_MSG_ID_MAX + 1];
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
	/* Neither fails for a clock this side of year 2^31; if one did,
	 * the epoch is a timestamp, garbage from tm is not. */
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0 ||
	    !gmtime_r(&ts.tv_sec, &tm)) {
		ts = (struct timespec){0};
		gmtime_r(&ts.tv_sec, &tm);
	}
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

/* A Nats-Msg-Id: printable ASCII without spaces, since nats.c rewrites
 * CR and LF in a header value, and an id stored as something else than
 * the app's would not make its retry a duplicate. */
static bool msg_id_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > EVENTS_MSG_ID_MAX)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
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
	pending_free(container_of(o, struct pending, op));
}

static void on_acked(void *arg, uint64_t seq, bool dup, const struct js_err *e)
{
	struct pending *p = arg;
	p->call = NULL;
	if (e && e->err_code == JS_ERR_WRONG_STREAM) {
		/* Not stored: a retry would fail the same way. */
		client_error(p->op.c, p->op.id, SHIP__CODE__INVALID_ARGUMENT,
		             "the subject is not stored by stream %s: %s",
		             p->stream, e->text);
	} else if (e && (e->code == SHIP__CODE__UNAVAILABLE ||
	                 e->code == SHIP__CODE__TIMEOUT)) {
		/* Maybe stored: the id makes a retry safe. */
		client_error_ex(p->op.c, p->op.id, e->code, e->unknown,
		                "%s (Nats-Msg-Id %s; retrying with the same id "
		                "is safe)",
		                e->text, p->msg_id);
	} else if (e) {
		client_error(p->op.c, p->op.id, e->code, "%s (Nats-Msg-Id %s)",
		             e->text, p->msg_id);
	} else {
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__EmitReply r = SHIP__EMIT_REPLY__INIT;
		r.seq = seq;
		r.duplicate = dup;
		r.msg_id = p->msg_id;
		/* Where the server stored it (by subject), not what the
		 * app named. */
		const char *stored = js_acked_stream();
		r.stream = (char *)(*stored ? stored : p->stream);
		f.id = p->op.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_EMITTED;
		f.emitted = &r;
		client_send(p->op.c, &f);
	}
	pending_free(p);
}

/* With expect, the server stores it only if stream is the stream that
 * holds subject (else JetStream error 10060). */
static struct js_call *start_publish(struct pending *p, const char *subject,
                                     const char *json, bool expect)
{
	if (!expect)
		return js_publish_id(subject, p->msg_id, json, strlen(json),
		                     EMIT_TIMEOUT_MS, on_acked, p);
	natsMsg *m = NULL;
	if (natsMsg_Create(&m, subject, NULL, json, (int)strlen(json)) !=
	            NATS_OK ||
	    natsMsgHeader_Set(m, "Nats-Msg-Id", p->msg_id) != NATS_OK ||
	    natsMsgHeader_Set(m, "Nats-Expected-Stream", p->stream) != NATS_OK) {
		link_msg_destroy(m);
		return NULL;
	}
	return js_publish(m, EMIT_TIMEOUT_MS, on_acked, p);
}

/* events_publish, stored only by stream if expect (the app named it). */
static void publish(struct client *c, uint64_t id, const char *subject,
                    const char *json, const char *msg_id, const char *stream,
                    bool expect)
{
	if (id == 0) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "an acknowledged publish needs an id");
		return;
	}
	if (!msg_id_valid(msg_id)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "a msg_id is 1 to %d printable ASCII characters "
		             "without spaces",
		             EVENTS_MSG_ID_MAX);
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
	/* Both fit: the stream is a valid name, the id was checked. */
	snprintf(p->stream, sizeof(p->stream), "%s", stream);
	snprintf(p->msg_id, sizeof(p->msg_id), "%s", msg_id);
	p->call = start_publish(p, subject, json, expect);
	if (!p->call) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
		pending_free(p);
	}
}

void events_publish(struct client *c, uint64_t id, const char *subject,
                    const char *json, const char *msg_id, const char *stream)
{
	publish(c, id, subject, json, msg_id, stream, false);
}

/* ---- what other blocks own ---- */

/* System subjects (ipc_subject_system) and reply inboxes: only the blocks
 * that own them reach them, never an event, whatever the rules grant
 * (else an emit on $KV.<b>.<k> to KV_<b> would be a KV write no kv-write
 * rule allowed). wild: a leading wildcard counts too (a stream on it
 * would take in system subjects and replies). */
static bool reserved_subject(const char *s, bool wild)
{
	if (ipc_subject_system(s) || ipc_first_token(s, "_INBOX"))
		return true;
	return wild && (ipc_first_token(s, "*") || ipc_first_token(s, ">"));
}

/* The streams of KV buckets and object stores. */
static bool reserved_stream(const char *name)
{
	return !strncmp(name, "KV_", 3) || !strncmp(name, "OBJ_", 4);
}

static void refuse_reserved(struct client *c, uint64_t id, const char *what)
{
	client_error(c, id, SHIP__CODE__PERMISSION_DENIED,
	             "'%.128s' belongs to another building block (KV, Object "
	             "Store, JetStream, services or replies): events do not "
	             "reach it",
	             what);
}

/* ---- emit ---- */

/* Append s as a JSON string: controls, quote and backslash escaped,
 * UTF-8 as it is (every string of a frame was checked to be UTF-8 before
 * it was decoded: ipc_pb_check). */
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

/* A ShipEvent: noesis-ship's fields in its order, written directly: no
 * need to build a tree only to print it. */
static void envelope(struct ipc_buf *b, const char *type, const char *ts,
                     const char *source, const char *payload,
                     const char *corr)
{
	ipc_buf_append(b, "{\"event_type\":", 14);
	json_quote(b, type);
	ipc_buf_append(b, ",\"timestamp\":\"", 14);
	ipc_buf_append(b, ts, strlen(ts));
	ipc_buf_append(b, "\",\"source\":", 11);
	json_quote(b, source);
	ipc_buf_append(b, ",\"payload\":", 11);
	if (payload && payload[0])
		ipc_buf_append(b, payload, strlen(payload));
	else
		ipc_buf_append(b, "null", 4);
	ipc_buf_append(b, ",\"correlation_id\":", 18);
	json_quote(b, corr);
	ipc_buf_append(b, ",\"version\":\"1.0\"}", 17);
}

static void system_acked(void *arg, uint64_t seq, bool dup,
                         const struct js_err *e)
{
	char *subject = arg;
	if (e)
		log_warnx("event %s not stored: %s", subject, e->text);
	free(subject);
}

void events_envelope(struct ipc_buf *b, const char *type, const char *source,
                     const char *payload_json)
{
	char ts[64], corr[9];
	events_timestamp(ts, sizeof(ts));
	events_random_hex(corr, 8);
	envelope(b, type, ts, source, payload_json, corr);
}

void events_emit_system(const char *type, const char *source,
                        const char *payload_json, const char *corr,
                        const char *msg_id)
{
	char subject[IPC_SUBJECT_MAX + 1], ts[64];
	if (!ipc_fmt_fits(subject, sizeof(subject), "ship.events.%s", type) ||
	    !link_connected())
		return;
	events_timestamp(ts, sizeof(ts));
	struct ipc_buf b = {0};
	envelope(&b, type, ts, source, payload_json, corr);
	char *arg = strdup(subject);
	if (arg && !ipc_buf_append(&b, "", 1) &&
	    js_publish_id(subject, msg_id, ipc_buf_head(&b),
	                  ipc_buf_used(&b) - 1, conf->request_timeout_ms,
	                  system_acked, arg))
		arg = NULL;
	free(arg);
	ipc_buf_finish(&b);
}

static void handle_emit(struct client *c, uint64_t id, const Ship__Emit *e)
{
	const char *stream = or_default(e->stream, "SHIP_EVENTS");
	const char *prefix = or_default(e->prefix, "ship.events");
	char subject[IPC_SUBJECT_MAX + 1];
	if (!ipc_fmt_fits(subject, sizeof(subject), "%s.%s", prefix,
	              e->event_type)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "prefix and event type make a subject of more "
		             "than %d characters",
		             IPC_SUBJECT_MAX);
		return;
	}
	if (!e->event_type[0] || !ipc_subject_valid(subject) ||
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
	if (reserved_subject(subject, false)) {
		refuse_reserved(c, id, subject);
		return;
	}
	/* On the subject itself: a prefix of the app's choosing cannot put
	 * an event where the rules do not let it. */
	if (!client_allowed(c, id, POL_EMIT, subject))
		return;
	char ts[64], corr[16], msg_id[64];
	events_timestamp(ts, sizeof(ts));
	if (!e->correlation_id[0])
		events_random_hex(corr, 8);
	if (!e->msg_id[0])
		events_random_hex(msg_id, 32);
	struct ipc_buf b = {0};
	envelope(&b, e->event_type, ts, e->source, e->payload_json,
	         e->correlation_id[0] ? e->correlation_id : corr);
	if (!ipc_buf_append(&b, "", 1)) /* NUL, not sent */
		publish(c, id, subject, (const char *)ipc_buf_head(&b),
		        e->msg_id[0] ? e->msg_id : msg_id, stream,
		        e->stream[0] != '\0');
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
		client_js_error(d->op.c, d->op.id, e);
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

/* What in a configured stream cannot be declared as written, or NULL. */
static const char *configured_problem(const struct config_stream *cs,
                                      char *subjects, size_t size,
                                      char **list, size_t *n)
{
	if (!js_name_valid(cs->name) || strlen(cs->name) > STREAM_NAME_MAX)
		return "its name is not a stream name (no spaces, dots or "
		       "wildcards, at most 241 characters)";
	if (cs->max_age_s > (uint64_t)INT64_MAX / 1000000000)
		return "max_age is too large for an int64 of ns";
	if (!ipc_fmt_fits(subjects, size, "%s", cs->subjects))
		return "its subjects are too long";
	char *save = NULL;
	*n = 0;
	for (char *t = strtok_r(subjects, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		if (*n == 64)
			return "it has more than 64 subjects";
		list[(*n)++] = t;
	}
	return NULL;
}

/* A stream of the configuration; what became of it goes to ds. */
static void declare_configured(const struct config_stream *cs,
                               struct declared_stream *ds)
{
	char subjects[1024], *list[64];
	size_t n = 0;
	snprintf(ds->name, sizeof(ds->name), "%s", cs->name);
	const char *why = configured_problem(cs, subjects, sizeof(subjects),
	                                     list, &n);
	if (why) {
		snprintf(ds->problem, sizeof(ds->problem), "%s", why);
		log_warnx("stream %s from the configuration: %s", cs->name, why);
		return;
	}
	struct js_stream_cfg cfg = {
		.dom = conf->events_domain,
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
	d->conf = ds;
	if (js_stream_ensure(&cfg, on_declared, d) < 0)
		free(d);
}

static void declare_defaults(void)
{
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
		struct default_stream *ds = &defaults[i];
		char *subjects[] = {(char *)ds->subject};
		struct js_stream_cfg cfg = {
			/* CHANNELS is the Channels block's. */
			.dom = strcmp(ds->name, "CHANNELS") ? conf->events_domain
			                                    : conf->channels_domain,
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
	for (int i = 0; i < conf->n_streams; i++)
		declare_configured(&conf->streams[i], &declared[i]);
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
	if (strlen(sd->name) > STREAM_NAME_MAX) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "a stream name has at most %zu characters",
		             STREAM_NAME_MAX);
		return;
	}
	if (sd->max_age_ms > MS_MAX) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "max_age_ms is at most %" PRIu64 " (an int64 of ns)",
		             MS_MAX);
		return;
	}
	for (size_t i = 0; i < sd->n_subjects; i++) {
		if (!ipc_subject_pattern_valid(sd->subjects[i])) {
			client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
			             "invalid subject '%.128s'", sd->subjects[i]);
			return;
		}
	}
	if (reserved_stream(sd->name)) {
		refuse_reserved(c, id, sd->name);
		return;
	}
	for (size_t i = 0; i < sd->n_subjects; i++) {
		if (reserved_subject(sd->subjects[i], true)) {
			refuse_reserved(c, id, sd->subjects[i]);
			return;
		}
	}
	if (!client_allowed(c, id, POL_STREAM_ADMIN, sd->name))
		return;
	struct js_stream_cfg cfg = {
		.dom = conf->events_domain,
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
		if (start_time_ms > TIME_MS_MAX || !gmtime_r(&t, &tm)) {
			json_decref(cfg);
			return NULL;
		}
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
	char filter[IPC_SUBJECT_MAX + 1], api[512];
	if (!ipc_fmt_fits(filter, sizeof(filter), "%s.%s", prefix,
	              or_default(s->pattern, ">"))) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "prefix and pattern make a subject of more than %d "
		             "characters",
		             IPC_SUBJECT_MAX);
		return;
	}
	if (id == 0 || !ipc_subject_pattern_valid(filter) ||
	    !js_name_valid(stream) ||
	    (s->durable[0] && !js_name_valid(s->durable)) ||
	    s->deliver > SHIP__DELIVER_FROM__DELIVER_BY_TIME) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid pattern, stream or durable name (names "
		             "have no dots, spaces or wildcards)");
		return;
	}
	/* Cut, the subject a durable is pulled on would name another. The
	 * format's two "%s" are not in the subject: + 4. */
	if (!ipc_fmt_fits(api, sizeof(api), CONSUMER_API, stream, s->durable)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "stream and durable names together have at most "
		             "%zu characters",
		             sizeof(api) - sizeof(CONSUMER_API) + 4);
		return;
	}
	if (s->deliver == SHIP__DELIVER_FROM__DELIVER_BY_TIME &&
	    s->start_time_ms > TIME_MS_MAX) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "start_time_ms is at most %llu (9999-12-31)",
		             TIME_MS_MAX);
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
	if (reserved_subject(filter, false) || reserved_stream(stream)) {
		refuse_reserved(c, id,
		                reserved_stream(stream) ? stream : filter);
		return;
	}
	/* The filter is what the consumer reads, whichever stream it is
	 * on: the rules must cover all of it. */
	if (!client_allowed(c, id, POL_CONSUME, filter))
		return;
	json_t *cfg = events_consumer_config(
		s->durable[0] ? s->durable : NULL, filter, s->deliver, s->start_seq,
		s->start_time_ms, s->ack_wait_ms, s->max_deliver, s->backoff_ms,
		s->n_backoff_ms);
	struct consumer_spec spec = {
		.dom = conf->events_domain,
		.stream = stream,
		.durable = s->durable[0] ? s->durable : NULL,
		.filter = filter,
		.auto_ack = s->ack == SHIP__ACK_MODE__ACK_AUTO,
		.credit = s->credit ? s->credit : DEFAULT_CREDIT,
		.config = cfg,
		.describe = describe_event,
		.free_delivery = events_free_delivery,
		.update = s->update,
		.shared = s->shared,
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

/* STREAM.LIST answers a page (256 streams) at a time: pages are asked
 * for until the total is reached, copied out of each page's JSON (freed
 * once the page is handled) and answered in one reply. */
struct listing {
	struct op op;
	struct js_call *call; /* the page in flight */
	Ship__StreamInfo **infos;
	size_t n, cap;
	size_t bytes; /* of strings kept in infos */
	unsigned pages;
};

static void info_free(Ship__StreamInfo *o)
{
	if (!o)
		return;
	free(o->name);
	for (size_t i = 0; i < o->n_subjects; i++)
		free(o->subjects[i]);
	free(o->subjects);
	free(o->storage);
	free(o);
}

static char *dup_string(json_t *j)
{
	const char *s = json_string_value(j);
	return strdup(s ? s : "");
}

static uint64_t uint_of(json_t *obj, const char *key)
{
	return (uint64_t)json_integer_value(json_object_get(obj, key));
}

/* One stream of a page, with its strings copied (counted in *bytes). */
static Ship__StreamInfo *info_copy(json_t *si, size_t *bytes)
{
	json_t *cfg = json_object_get(si, "config");
	json_t *st = json_object_get(si, "state");
	json_t *subs = json_object_get(cfg, "subjects");
	size_t ns = json_array_size(subs);
	Ship__StreamInfo *o = malloc(sizeof(*o));
	if (!o)
		return NULL;
	ship__stream_info__init(o);
	o->name = dup_string(json_object_get(cfg, "name"));
	o->storage = dup_string(json_object_get(cfg, "storage"));
	o->subjects = calloc(ns ? ns : 1, sizeof(*o->subjects));
	if (!o->name || !o->storage || !o->subjects) {
		info_free(o);
		return NULL;
	}
	for (; o->n_subjects < ns; o->n_subjects++) {
		char *sub = dup_string(json_array_get(subs, o->n_subjects));
		if (!sub) {
			info_free(o);
			return NULL;
		}
		o->subjects[o->n_subjects] = sub;
		*bytes += strlen(sub) + 8;
	}
	*bytes += strlen(o->name) + strlen(o->storage) + 64;
	o->messages = uint_of(st, "messages");
	o->bytes = uint_of(st, "bytes");
	o->first_seq = uint_of(st, "first_seq");
	o->last_seq = uint_of(st, "last_seq");
	o->consumers = (uint32_t)uint_of(st, "consumer_count");
	o->max_age_ms = uint_of(cfg, "max_age") / 1000000;
	o->max_msgs = json_integer_value(json_object_get(cfg, "max_msgs"));
	/* Borrowed: static storage that lives as long as shipd. */
	o->problem = (char *)events_default_problem(o->name);
	return o;
}

/* Copy a page's streams into l; -1 when out of memory. */
static int listing_take(struct listing *l, json_t *streams)
{
	size_t n = json_array_size(streams);
	if (l->n + n > l->cap) {
		size_t cap = l->n + n + l->cap;
		Ship__StreamInfo **p = realloc(l->infos, cap * sizeof(*p));
		if (!p)
			return -1;
		l->infos = p;
		l->cap = cap;
	}
	for (size_t i = 0; i < n; i++) {
		Ship__StreamInfo *o = info_copy(json_array_get(streams, i),
		                                &l->bytes);
		if (!o)
			return -1;
		l->infos[l->n++] = o;
	}
	return 0;
}

static void listing_free(struct listing *l)
{
	js_cancel(l->call);
	op_end(&l->op);
	for (size_t i = 0; i < l->n; i++)
		info_free(l->infos[i]);
	free(l->infos);
	free(l);
}

static void listing_cancel(struct op *o)
{
	listing_free(container_of(o, struct listing, op));
}

static void listing_reply(struct listing *l)
{
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__StreamsReply r = SHIP__STREAMS_REPLY__INIT;
	r.n_streams = l->n;
	r.streams = l->infos;
	f.id = l->op.id;
	f.body_case = SHIP__SERVER_FRAME__BODY_STREAMS;
	f.streams = &r;
	client_send(l->op.c, &f);
	listing_free(l);
}

static void on_listed(void *arg, json_t *reply, const struct js_err *e);

/* Ask for the page after what l has; if that cannot be sent, l is
 * answered and freed. */
static void listing_next(struct listing *l)
{
	json_t *body = json_pack("{s:I}", "offset", (json_int_t)l->n);
	if (body)
		l->call = js_api_in(conf->events_domain, "STREAM.LIST", body,
		                    API_TIMEOUT_MS, on_listed, l);
	if (!l->call) {
		client_error(l->op.c, l->op.id,
		             body ? SHIP__CODE__UNAVAILABLE : SHIP__CODE__INTERNAL,
		             body ? "NATS is not connected" : "out of memory");
		listing_free(l);
		return;
	}
	l->pages++;
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
	json_t *streams = json_object_get(reply, "streams");
	size_t got = json_array_size(streams);
	uint64_t total = uint_of(reply, "total");
	if (listing_take(l, streams) < 0) {
		client_error(l->op.c, l->op.id, SHIP__CODE__INTERNAL, "out of memory");
		listing_free(l);
		return;
	}
	/* An empty page ends it too: streams deleted meanwhile. */
	if (got == 0 || l->n >= total) {
		listing_reply(l);
		return;
	}
	if (l->pages >= LIST_MAX_PAGES || l->bytes > LIST_MAX_BYTES) {
		client_error(l->op.c, l->op.id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "%" PRIu64 " streams are more than one answer "
		             "holds (%zu listed in %u pages)",
		             total, l->n, l->pages);
		listing_free(l);
		return;
	}
	listing_next(l);
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
	if (!op_hold(&l->op, LIST_MAX_BYTES)) {
		listing_free(l);
		return;
	}
	listing_next(l);
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
		{SHIP__CLIENT_FRAME__BODY_STREAM_DECLARE, req_declare, false},
		{SHIP__CLIENT_FRAME__BODY_EMIT, req_emit, true},
		{SHIP__CLIENT_FRAME__BODY_EVENT_SUBSCRIBE, req_subscribe, false},
		{SHIP__CLIENT_FRAME__BODY_EVENT_CREDIT, req_credit, false},
		{SHIP__CLIENT_FRAME__BODY_EVENT_ACK, req_ack, false},
		{SHIP__CLIENT_FRAME__BODY_STREAMS, req_streams, false},
		{0, NULL, false},
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
