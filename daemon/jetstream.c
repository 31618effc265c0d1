/* SPDX-License-Identifier: MIT */
/* JetStream without blocking: API calls, acknowledged publishes and stream
 * checks as requests on the reply inbox, their JSON read on the loop. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shipd.h"

#define JS_API "$JS.API"

struct js_call {
	enum js_dom dom;
	js_api_fn *api_fn;
	js_pub_fn *pub_fn;
	void *arg;
	struct link_wait *wait;
	struct event *failed; /* it never left: err is reported from here */
	struct js_err err;
	bool writes; /* unanswered, it may have been applied */
};

/* ---- errors ---- */

/* What an app can do about a JetStream error, by its err_code (the
 * server's errors.json). Where one code covers several causes, words of
 * the description pick the entry; the first match wins. The server's
 * HTTP-like status is often no guide: 2.9 sends config checks as 500 and
 * a full stream as 503. */
static const struct js_code_entry {
	int err_code;
	const char *words; /* NULL: any description */
	Ship__Code code;
} js_codes[] = {
	/* Absent: create it, or stop asking. */
	{10059, NULL, SHIP__CODE__NOT_FOUND}, /* stream not found */
	{10014, NULL, SHIP__CODE__NOT_FOUND}, /* consumer not found */
	{10037, NULL, SHIP__CODE__NOT_FOUND}, /* no message found */
	{10043, NULL, SHIP__CODE__NOT_FOUND}, /* sequence not found */
	/* There already, maybe with other settings: use it or rename. */
	{10058, NULL, SHIP__CODE__ALREADY_EXISTS}, /* stream, other config */
	{10013, NULL, SHIP__CODE__ALREADY_EXISTS}, /* consumer name in use */
	{10105, NULL, SHIP__CODE__ALREADY_EXISTS}, /* consumer still active */
	{10148, NULL, SHIP__CODE__ALREADY_EXISTS}, /* consumer exists */
	{10012, "can not be updated", SHIP__CODE__ALREADY_EXISTS}, /* durable */
	{10012, "can not update", SHIP__CODE__ALREADY_EXISTS}, /* push/pull */
	/* Compare-and-swap lost: read again. */
	{10071, NULL, SHIP__CODE__WRONG_REVISION}, /* wrong last sequence */
	{10164, NULL, SHIP__CODE__WRONG_REVISION}, /* the same, 2.11 */
	{10070, NULL, SHIP__CODE__WRONG_REVISION}, /* wrong last msg id */
	/* A limit: retry once there is room. */
	{10077, "store closed", SHIP__CODE__UNAVAILABLE},
	{10077, NULL, SHIP__CODE__RESOURCE_EXHAUSTED}, /* full, discard new */
	{10002, NULL, SHIP__CODE__RESOURCE_EXHAUSTED}, /* account limits */
	{10023, NULL, SHIP__CODE__RESOURCE_EXHAUSTED}, /* resources (503) */
	{10026, NULL, SHIP__CODE__RESOURCE_EXHAUSTED}, /* max consumers */
	{10027, NULL, SHIP__CODE__RESOURCE_EXHAUSTED}, /* max streams */
	{10028, NULL, SHIP__CODE__RESOURCE_EXHAUSTED}, /* memory */
	{10047, NULL, SHIP__CODE__RESOURCE_EXHAUSTED}, /* storage */
	{10053, NULL, SHIP__CODE__RESOURCE_EXHAUSTED}, /* stream limits */
	{10122, NULL, SHIP__CODE__RESOURCE_EXHAUSTED}, /* account max bytes */
	/* It can never work as asked: do not retry. */
	{10054, NULL, SHIP__CODE__INVALID_ARGUMENT}, /* message too large */
	{10052, NULL, SHIP__CODE__INVALID_ARGUMENT}, /* stream config (500) */
	{10074, NULL, SHIP__CODE__INVALID_ARGUMENT}, /* replicas (500) */
	{10111, NULL, SHIP__CODE__INVALID_ARGUMENT}, /* rollup not permitted */
	/* JetStream is off or busy: retry later. */
	{10039, NULL, SHIP__CODE__UNAVAILABLE}, /* not enabled for account */
	{10076, NULL, SHIP__CODE__UNAVAILABLE}, /* not enabled */
	{10158, NULL, SHIP__CODE__UNAVAILABLE}, /* msg id in process */
};

/* For err_codes not in the table (also ones newer servers add). */
static const struct js_status_entry {
	int lo, hi;
	Ship__Code code;
} js_statuses[] = {
	{404, 404, SHIP__CODE__NOT_FOUND},
	{408, 408, SHIP__CODE__TIMEOUT},
	{409, 409, SHIP__CODE__ALREADY_EXISTS},
	{429, 429, SHIP__CODE__RESOURCE_EXHAUSTED},
	{503, 503, SHIP__CODE__UNAVAILABLE},
	{400, 499, SHIP__CODE__INVALID_ARGUMENT},
};

static Ship__Code code_of(int http, int err_code, const char *desc)
{
	for (size_t i = 0; i < NITEMS(js_codes); i++) {
		const struct js_code_entry *t = &js_codes[i];
		if (t->err_code == err_code &&
		    (!t->words || (desc && strstr(desc, t->words))))
			return t->code;
	}
	for (size_t i = 0; i < NITEMS(js_statuses); i++)
		if (http >= js_statuses[i].lo && http <= js_statuses[i].hi)
			return js_statuses[i].code;
	return SHIP__CODE__INTERNAL;
}

Ship__Code js_code(int http, int err_code)
{
	return code_of(http, err_code, NULL);
}

/* The API calls that change something; the others (info, names, lists,
 * gets, and consumers, which reads create) only read. */
static const char *const write_verbs[] = {
	"STREAM.CREATE.", "STREAM.UPDATE.",     "STREAM.DELETE.",
	"STREAM.PURGE.",  "STREAM.MSG.DELETE.", "CONSUMER.DELETE.",
};

static bool api_writes(const char *what)
{
	for (size_t i = 0; i < NITEMS(write_verbs); i++)
		if (!strncmp(what, write_verbs[i], strlen(write_verbs[i])))
			return true;
	return false;
}

/* ---- domains ---- */

bool js_dom_remote(enum js_dom d)
{
	return d == JS_HUB && conf->hub_domain;
}

const char *js_dom_label(enum js_dom d)
{
	static char label[JS_DOMAIN_MAX + 16];
	if (!js_dom_remote(d))
		return "local";
	snprintf(label, sizeof(label), "hub '%s'", conf->hub_domain);
	return label;
}

static const char *dom_prefix(enum js_dom d, char *buf, size_t size)
{
	if (!js_dom_remote(d))
		return JS_API;
	snprintf(buf, size, "$JS.%s.API", conf->hub_domain);
	return buf;
}

bool js_subject(enum js_dom d, char *out, size_t size, const char *fmt, ...)
{
	char pre[JS_DOMAIN_MAX + 16], rest[IPC_SUBJECT_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(rest, sizeof(rest), fmt, ap);
	va_end(ap);
	return n >= 0 && (size_t)n < sizeof(rest) &&
	       ipc_fmt_fits(out, size, "%s.%s", dom_prefix(d, pre, sizeof(pre)),
	                    rest);
}

/* A request that was sent and got no answer (st): for a write the
 * outcome is unknown (client_js_error says so). No responders means
 * nobody took it: on an API subject, nothing serves that API at all. */
static void err_from_status(struct js_err *e, natsStatus st, bool writes,
                            enum js_dom d, bool api)
{
	e->unknown = writes && st != NATS_NO_RESPONDERS;
	switch (st) {
	case NATS_TIMEOUT:
		e->code = SHIP__CODE__TIMEOUT;
		snprintf(e->text, sizeof(e->text), "JetStream did not answer in time");
		break;
	case NATS_NO_RESPONDERS:
		e->code = SHIP__CODE__UNAVAILABLE;
		e->no_responders = true;
		e->unreachable = api;
		if (js_dom_remote(d) && api)
			snprintf(e->text, sizeof(e->text),
			         "JetStream of the %s is not reachable (no "
			         "responders: the uplink is down?)",
			         js_dom_label(d));
		else if (api)
			snprintf(e->text, sizeof(e->text),
			         "JetStream is not available (no responders: not "
			         "enabled, or not started yet)");
		else
			snprintf(e->text, sizeof(e->text),
			         "JetStream is not available (no responders: no "
			         "stream takes the subject)");
		break;
	default:
		e->code = SHIP__CODE__UNAVAILABLE;
		snprintf(e->text, sizeof(e->text),
		         "NATS connection lost before JetStream answered");
		break;
	}
}

/* A request nats.c would not send (len: its payload): a message over the
 * server's max_payload, no memory, or the connection lost just now; only
 * the last is UNAVAILABLE. */
static void err_from_send(struct js_err *e, natsStatus st, int len)
{
	e->code = pubsub_code(st);
	if (st == NATS_MAX_PAYLOAD)
		snprintf(e->text, sizeof(e->text),
		         "a message of %d bytes (and its headers) is over the "
		         "NATS server's max_payload of %" PRId64 " bytes",
		         len, link_info()->max_payload);
	else
		snprintf(e->text, sizeof(e->text), "cannot send to JetStream: %s",
		         natsStatus_GetText(st));
}

static void failed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct js_call *call = arg;
	event_free(call->failed);
	if (call->pub_fn)
		call->pub_fn(call->arg, 0, false, &call->err);
	else
		call->api_fn(call->arg, NULL, &call->err);
	free(call);
}

/* The request never left, call->err says why: answer on the next loop
 * turn, as JetStream would have, since the caller holds no call to be
 * called back on yet. NULL (call freed) only if even that cannot be
 * arranged. */
static struct js_call *answer_later(struct js_call *call)
{
	link_wait_cancel(call->wait);
	call->wait = NULL;
	call->failed = event_new(base, -1, 0, failed_cb, call);
	if (!call->failed) {
		free(call);
		return NULL;
	}
	event_active(call->failed, 0, 0);
	return call;
}

static struct js_call *fail_later(struct js_call *call, natsStatus st,
                                  int len)
{
	err_from_send(&call->err, st, len);
	return answer_later(call);
}

/* An API request that must not be sent (its subject would be cut, or
 * name something else): refused like JetStream refuses a bad request,
 * INVALID_ARGUMENT through fn. */
static struct js_call *refuse(json_t *body, js_api_fn *fn, void *arg,
                              const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static struct js_call *refuse(json_t *body, js_api_fn *fn, void *arg,
                              const char *fmt, ...)
{
	json_decref(body);
	struct js_call *call = calloc(1, sizeof(*call));
	if (!call)
		return NULL;
	call->api_fn = fn;
	call->arg = arg;
	call->err.code = SHIP__CODE__INVALID_ARGUMENT;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(call->err.text, sizeof(call->err.text), fmt, ap);
	va_end(ap);
	return answer_later(call);
}

/* A JSON reply: an object, or an API error in it. */
static json_t *parse_reply(natsMsg *msg, struct js_err *e)
{
	json_error_t jerr;
	json_t *j = json_loadb(natsMsg_GetData(msg),
	                       (size_t)natsMsg_GetDataLength(msg), 0, &jerr);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		e->code = SHIP__CODE__INTERNAL;
		snprintf(e->text, sizeof(e->text),
		         "JetStream sent a reply that is not JSON: %s", jerr.text);
		return NULL;
	}
	json_t *err = json_object_get(j, "error");
	if (err) {
		int http = (int)json_integer_value(json_object_get(err, "code"));
		e->err_code = (int)json_integer_value(json_object_get(err, "err_code"));
		const char *d = json_string_value(json_object_get(err, "description"));
		e->code = code_of(http, e->err_code, d);
		snprintf(e->text, sizeof(e->text), "%s (JetStream error %d)",
		         d ? d : "unknown error", e->err_code);
		json_decref(j);
		return NULL;
	}
	return j;
}

/* ---- API calls ---- */

static void api_done(void *arg, natsMsg *msg, natsStatus st)
{
	struct js_call *call = arg;
	struct js_err e = {0};
	json_t *j = NULL;
	if (st != NATS_OK)
		err_from_status(&e, st, call->writes, call->dom, true);
	else
		j = parse_reply(msg, &e);
	link_msg_destroy(msg);
	call->api_fn(call->arg, j, j ? NULL : &e);
	json_decref(j);
	free(call);
}

struct js_call *js_api(const char *what, json_t *body, uint32_t timeout_ms,
                       js_api_fn *fn, void *arg)
{
	return js_api_in(JS_LOCAL, what, body, timeout_ms, fn, arg);
}

struct js_call *js_api_in(enum js_dom d, const char *what, json_t *body,
                          uint32_t timeout_ms, js_api_fn *fn, void *arg)
{
	char subject[IPC_SUBJECT_MAX + 1], pre[JS_DOMAIN_MAX + 16];
	const char *prefix = dom_prefix(d, pre, sizeof(pre));
	/* A filter may end the subject (CONSUMER.CREATE.<s>.<c>.<filter>). */
	if (!ipc_fmt_fits(subject, sizeof(subject), "%s.%s", prefix, what) ||
	    !ipc_subject_pattern_valid(subject))
		return refuse(body, fn, arg,
		              "not a JetStream API subject: %s.%.64s%s (at most "
		              "%d characters, non-empty tokens without spaces)",
		              prefix, what, strlen(what) > 64 ? "..." : "",
		              IPC_SUBJECT_MAX);
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	struct js_call *call = calloc(1, sizeof(*call));
	if (!call || (body && !text) || !link_connected()) {
		free(text);
		free(call);
		return NULL;
	}
	call->dom = d;
	call->api_fn = fn;
	call->arg = arg;
	call->writes = api_writes(what);
	call->wait = link_wait_new(timeout_ms, false, api_done, call);
	int len = text ? (int)strlen(text) : 0;
	natsStatus s = call->wait ? natsConnection_PublishRequest(
	                                    link_conn(), subject,
	                                    link_wait_inbox(call->wait), text,
	                                    len)
	                          : NATS_NO_MEMORY;
	free(text);
	return s == NATS_OK ? call : fail_later(call, s, len);
}

void js_cancel(struct js_call *call)
{
	if (!call)
		return;
	link_wait_cancel(call->wait);
	if (call->failed)
		event_free(call->failed);
	free(call);
}

/* ---- acknowledged publishes ---- */

/* The stream named by the ack a js_pub_fn is called for, during it. */
static const char *acked_stream = "";

const char *js_acked_stream(void)
{
	return acked_stream;
}

/* The usual ack, {"stream":"S", "seq":N} or with "duplicate": true, read
 * without a JSON parser; anything else (errors, a stream name with
 * escapes) goes to jansson. */
static bool quick_ack(natsMsg *msg, uint64_t *seq, bool *dup, char *stream,
                      size_t size)
{
	int len = natsMsg_GetDataLength(msg);
	const char *d = natsMsg_GetData(msg);
	char buf[256];
	if (len <= 0 || len >= (int)sizeof(buf))
		return false;
	memcpy(buf, d, (size_t)len);
	buf[len] = '\0';
	if (strstr(buf, "\"error\"") || buf[0] != '{')
		return false;
	const char *sp = strstr(buf, "\"stream\":\"");
	if (!sp)
		return false;
	sp += 10;
	size_t n = strcspn(sp, "\"\\");
	if (sp[n] != '"' || n >= size)
		return false;
	memcpy(stream, sp, n);
	stream[n] = '\0';
	const char *p = strstr(buf, "\"seq\":");
	if (!p)
		return false;
	char *end;
	*seq = strtoull(p + 6, &end, 10);
	if (end == p + 6)
		return false;
	const char *dp = strstr(buf, "\"duplicate\":");
	*dup = dp && !strncmp(dp + 12 + strspn(dp + 12, " "), "true", 4);
	return *seq > 0;
}

static void pub_answer(struct js_call *call, uint64_t seq, bool dup,
                       const char *stream, const struct js_err *e)
{
	acked_stream = stream ? stream : "";
	call->pub_fn(call->arg, seq, dup, e);
	acked_stream = "";
	free(call);
}

static void pub_done(void *arg, natsMsg *msg, natsStatus st)
{
	struct js_call *call = arg;
	struct js_err e = {0};
	json_t *j = NULL;
	uint64_t seq = 0;
	bool dup = false;
	char stream[JS_NAME_MAX + 1];
	if (st == NATS_OK &&
	    quick_ack(msg, &seq, &dup, stream, sizeof(stream))) {
		link_msg_destroy(msg);
		pub_answer(call, seq, dup, stream, NULL);
		return;
	}
	if (st != NATS_OK)
		err_from_status(&e, st, call->writes, call->dom, false);
	else
		j = parse_reply(msg, &e);
	link_msg_destroy(msg);
	if (j) {
		seq = (uint64_t)json_integer_value(json_object_get(j, "seq"));
		dup = json_is_true(json_object_get(j, "duplicate"));
		if (!seq) {
			e.code = SHIP__CODE__INTERNAL;
			snprintf(e.text, sizeof(e.text), "publish ack without a sequence");
		}
	}
	pub_answer(call, seq, dup,
	           json_string_value(json_object_get(j, "stream")),
	           seq ? NULL : &e);
	json_decref(j);
}

struct js_call *js_publish(natsMsg *msg, uint32_t timeout_ms, js_pub_fn *fn,
                           void *arg)
{
	struct js_call *call = calloc(1, sizeof(*call));
	if (!call || !link_connected()) {
		free(call);
		link_msg_destroy(msg);
		return NULL;
	}
	call->pub_fn = fn;
	call->arg = arg;
	call->writes = true;
	call->wait = link_wait_new(timeout_ms, false, pub_done, call);
	natsStatus s = NATS_NO_MEMORY;
	if (call->wait) {
		/* natsMsg has no setter for the reply: rebuild with it. */
		natsMsg *out = NULL;
		s = natsMsg_Create(&out, natsMsg_GetSubject(msg),
		                   link_wait_inbox(call->wait), natsMsg_GetData(msg),
		                   natsMsg_GetDataLength(msg));
		const char **keys = NULL;
		int nk = 0;
		if (s == NATS_OK && natsMsgHeader_Keys(msg, &keys, &nk) == NATS_OK) {
			for (int i = 0; s == NATS_OK && i < nk; i++) {
				const char **vals = NULL;
				int nv = 0;
				if (natsMsgHeader_Values(msg, keys[i], &vals, &nv) != NATS_OK)
					continue;
				for (int k = 0; s == NATS_OK && k < nv; k++)
					s = natsMsgHeader_Add(out, keys[i], vals[k]);
				free((void *)vals);
			}
			free((void *)keys);
		}
		if (s == NATS_OK)
			s = natsConnection_PublishMsg(link_conn(), out);
		link_msg_destroy(out);
	}
	int len = natsMsg_GetDataLength(msg);
	link_msg_destroy(msg);
	return s == NATS_OK ? call : fail_later(call, s, len);
}

struct js_call *js_publish_id(const char *subject, const char *msg_id,
                              const void *data, size_t len, uint32_t timeout_ms,
                              js_pub_fn *fn, void *arg)
{
	struct js_call *call = calloc(1, sizeof(*call));
	if (!call || !link_connected()) {
		free(call);
		return NULL;
	}
	call->pub_fn = fn;
	call->arg = arg;
	call->writes = true;
	call->wait = link_wait_new(timeout_ms, false, pub_done, call);
	natsMsg *msg = NULL;
	natsStatus s = call->wait ? natsMsg_Create(&msg, subject,
	                                           link_wait_inbox(call->wait),
	                                           data, (int)len)
	                          : NATS_NO_MEMORY;
	if (s == NATS_OK && msg_id)
		s = natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id);
	if (s == NATS_OK)
		s = natsConnection_PublishMsg(link_conn(), msg);
	link_msg_destroy(msg);
	return s == NATS_OK ? call : fail_later(call, s, (int)len);
}

/* ---- streams: create, or check that what exists is what was declared ---- */

struct ensure {
	struct js_stream_cfg cfg;
	js_ensure_fn *fn;
	void *arg;
	struct js_call *call;
};

static json_t *stream_json(const struct js_stream_cfg *c)
{
	json_t *subjects = json_array();
	for (size_t i = 0; i < c->n_subjects; i++)
		json_array_append_new(subjects, json_string(c->subjects[i]));
	json_t *j = json_pack(
		"{s:s, s:o, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:s, s:b, s:b, s:b}",
		"name", c->name, "subjects", subjects, "retention", "limits",
		"storage", c->memory ? "memory" : "file", "max_age",
		(json_int_t)c->max_age_ns, "max_msgs",
		(json_int_t)(c->max_msgs ? c->max_msgs : -1), "max_bytes",
		(json_int_t)(c->max_bytes ? c->max_bytes : -1), "max_msgs_per_subject",
		(json_int_t)(c->max_msgs_per_subject ? c->max_msgs_per_subject : -1),
		"num_replicas", c->replicas ? c->replicas : 1, "discard",
		c->discard_new ? "new" : "old", "allow_rollup_hdrs", c->allow_rollup,
		"deny_delete", c->deny_delete, "allow_direct", c->allow_direct);
	if (j && c->description && *c->description)
		json_object_set_new(j, "description", json_string(c->description));
	if (j && c->max_msg_size)
		json_object_set_new(j, "max_msg_size",
		                    json_integer((json_int_t)c->max_msg_size));
	if (j && c->duplicate_window_ns)
		json_object_set_new(j, "duplicate_window",
		                    json_integer((json_int_t)c->duplicate_window_ns));
	return j;
}

static void differ(char *buf, size_t size, const char *what, long long have,
                   long long want)
{
	size_t n = strlen(buf);
	snprintf(buf + n, size - n, "%s%s is %lld, declared %lld", n ? ", " : "",
	         what, have, want);
}

/* Compare what the server has with what was declared. */
static bool stream_matches(const struct js_stream_cfg *c, json_t *config,
                           char *why, size_t size)
{
	why[0] = '\0';
	json_t *subs = json_object_get(config, "subjects");
	bool same = json_array_size(subs) == c->n_subjects;
	for (size_t i = 0; same && i < c->n_subjects; i++) {
		const char *have = json_string_value(json_array_get(subs, i));
		same = have && !strcmp(have, c->subjects[i]);
	}
	if (!same)
		snprintf(why, size, "its subjects differ");
#define CHECK(key, want)                                                        \
	do {                                                                    \
		long long have = json_integer_value(json_object_get(config, key)); \
		long long w = (want);                                           \
		if (have != w)                                                  \
			differ(why, size, key, have, w);                        \
	} while (0)
	CHECK("max_age", (long long)c->max_age_ns);
	CHECK("max_msgs", c->max_msgs ? (long long)c->max_msgs : -1);
	CHECK("max_bytes", c->max_bytes ? (long long)c->max_bytes : -1);
	CHECK("num_replicas", c->replicas ? c->replicas : 1);
	if (c->max_msgs_per_subject)
		CHECK("max_msgs_per_subject", (long long)c->max_msgs_per_subject);
#undef CHECK
	const char *storage = json_string_value(json_object_get(config, "storage"));
	if (!storage || strcmp(storage, c->memory ? "memory" : "file")) {
		size_t n = strlen(why);
		snprintf(why + n, size - n, "%sstorage is %s, declared %s",
		         n ? ", " : "", storage ? storage : "?",
		         c->memory ? "memory" : "file");
	}
	return why[0] == '\0';
}

/* $JS.API.<verb>.<stream>: a name that is no JetStream name would make
 * another subject (cut, or with more tokens), so it is refused through
 * fn, never sent. */
static struct js_call *api_stream(enum js_dom d, const char *verb,
                                  const char *stream, json_t *body,
                                  js_api_fn *fn, void *arg)
{
	char what[IPC_SUBJECT_MAX + 1];
	if (!js_name_valid(stream) ||
	    !ipc_fmt_fits(what, sizeof(what), "%s.%s", verb, stream))
		return refuse(body, fn, arg,
		              "stream name '%.64s%s' (%zu characters) is not a "
		              "JetStream name: 1 to %d printable characters, no "
		              "spaces, dots, wildcards or slashes",
		              stream, strlen(stream) > 64 ? "..." : "",
		              strlen(stream), JS_NAME_MAX);
	return js_api_in(d, what, body, 5000, fn, arg);
}

static void ensure_created(void *arg, json_t *reply, const struct js_err *e)
{
	struct ensure *en = arg;
	if (e && e->err_code == 10058) {
		/* Someone else created it meanwhile with other settings. */
		en->fn(en->arg, e, false);
	} else {
		if (!e)
			log_info("created stream %s", en->cfg.name);
		en->fn(en->arg, e, !e);
	}
	js_stream_cfg_finish(&en->cfg);
	free(en);
}

static void ensure_info(void *arg, json_t *reply, const struct js_err *e)
{
	struct ensure *en = arg;
	if (e && e->err_code == 10059) {
		en->call = api_stream(en->cfg.dom, "STREAM.CREATE", en->cfg.name,
		                      stream_json(&en->cfg), ensure_created, en);
		if (en->call)
			return;
		struct js_err ue = {.code = SHIP__CODE__UNAVAILABLE};
		snprintf(ue.text, sizeof(ue.text), "NATS is not connected");
		en->fn(en->arg, &ue, false);
	} else if (e) {
		en->fn(en->arg, e, false);
	} else {
		struct js_err de = {.code = SHIP__CODE__ALREADY_EXISTS};
		char why[192];
		if (stream_matches(&en->cfg, json_object_get(reply, "config"), why,
		                   sizeof(why))) {
			en->fn(en->arg, NULL, false);
		} else {
			snprintf(de.text, sizeof(de.text),
			         "stream %s exists with another configuration: %s",
			         en->cfg.name, why);
			log_warnx("%s", de.text);
			en->fn(en->arg, &de, false);
		}
	}
	js_stream_cfg_finish(&en->cfg);
	free(en);
}

int js_stream_ensure(const struct js_stream_cfg *cfg, js_ensure_fn *fn,
                     void *arg)
{
	struct ensure *en = calloc(1, sizeof(*en));
	if (!en || js_stream_cfg_copy(&en->cfg, cfg) < 0) {
		free(en);
		return -1;
	}
	en->fn = fn;
	en->arg = arg;
	en->call = api_stream(cfg->dom, "STREAM.INFO", cfg->name, NULL,
	                      ensure_info, en);
	if (!en->call) {
		js_stream_cfg_finish(&en->cfg);
		free(en);
		return -1;
	}
	return 0;
}

int js_stream_cfg_copy(struct js_stream_cfg *dst, const struct js_stream_cfg *src)
{
	*dst = *src;
	dst->name = strdup(src->name);
	dst->description = src->description ? strdup(src->description) : NULL;
	dst->subjects = calloc(src->n_subjects ? src->n_subjects : 1,
	                       sizeof(char *));
	if (!dst->name || !dst->subjects)
		goto error;
	for (size_t i = 0; i < src->n_subjects; i++)
		if (!(dst->subjects[i] = strdup(src->subjects[i])))
			goto error;
	return 0;
error:
	js_stream_cfg_finish(dst);
	return -1;
}

void js_stream_cfg_finish(struct js_stream_cfg *c)
{
	for (size_t i = 0; c->subjects && i < c->n_subjects; i++)
		free(c->subjects[i]);
	free(c->subjects);
	free(c->name);
	free(c->description);
	memset(c, 0, sizeof(*c));
}

static void ignore_reply(void *arg, json_t *reply, const struct js_err *e)
{
}

void js_consumer_delete(enum js_dom d, const char *stream, const char *name)
{
	char what[IPC_SUBJECT_MAX + 1];
	if (!link_connected())
		return; /* an ephemeral one goes by itself when inactive */
	/* Cut or with dots, the subject would delete another consumer. */
	if (!js_name_valid(stream) || !js_name_valid(name) ||
	    !ipc_fmt_fits(what, sizeof(what), "CONSUMER.DELETE.%s.%s", stream,
	                  name)) {
		log_warnx("%s: not deleting consumer '%.64s' of stream '%.64s': "
		          "not JetStream names",
		          __func__, name, stream);
		return;
	}
	js_api_in(d, what, NULL, 5000, ignore_reply, NULL);
}

bool js_ack_meta(const char *reply, struct js_meta *m)
{
	/* $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>
	 * (2.9 has no domain tokens). */
	if (!reply || strncmp(reply, "$JS.ACK.", 8) != 0)
		return false;
	const char *tok[9];
	int n = 0;
	for (const char *p = reply; *p && n < 9; p++)
		if (*p == '.')
			tok[n++] = p + 1;
	if (n < 8)
		return false;
	m->delivered = strtoull(tok[3], NULL, 10);
	m->stream_seq = strtoull(tok[4], NULL, 10);
	m->consumer_seq = strtoull(tok[5], NULL, 10);
	m->time_ns = strtoull(tok[6], NULL, 10);
	m->pending = strtoull(tok[7], NULL, 10);
	return true;
}

bool js_name_valid(const char *s)
{
	/* Stream, consumer and bucket names: no dots, wildcards, spaces or
	 * path separators (they end up in API subjects and file names). */
	if (!s || !*s || strlen(s) > JS_NAME_MAX)
		return false;
	for (const char *p = s; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch <= 0x20 || ch >= 0x7f || ch == '.' || ch == '*' ||
		    ch == '>' || ch == '/' || ch == '\\')
			return false;
	}
	return true;
}
