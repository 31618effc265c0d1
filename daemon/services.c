/* SPDX-License-Identifier: MIT */
/* Services: request/reply services hosted by local apps, found with the
 * NATS micro protocol (ADR-32). shipd holds the NATS side: the endpoints'
 * (queue) subscriptions, the $SRV PING/INFO/STATS answers and statistics,
 * deadlines and drains. The app holds a stream on which requests come and
 * answers each by its token. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shipd.h"

#define SVC_MAX 1024          /* instances on one shipd */
#define SVC_DESC_MAX 4096
#define SVC_EPS_MAX 64
#define SVC_META_MAX 64       /* pairs, of the service and of each endpoint */
#define SVC_META_BYTES 16384  /* of one metadata */
#define SVC_COMMANDS_MAX 256  /* named commands of a prefix-routed endpoint */
#define SVC_TIMEOUT_MS 10000
#define SVC_DRAIN_MS 5000
#define SVC_DRAIN_MAX_MS 60000
#define SVC_PENDING 1024
#define SVC_PENDING_MAX 65536
#define SVC_DISCOVER_MS 2000
#define SVC_DISCOVER_STALL_MS 300
#define SVC_DISCOVER_MAX 10000 /* answers collected */
#define SVC_DRAIN_TICK_MS 20
#define SVC_INFO_MAX (256 * 1024)
#define SVC_PER_CLIENT 64     /* instances one connection hosts */

/* The error codes shipd answers with itself (HTTP's, as services use). */
#define SVC_E_UNKNOWN 404
#define SVC_E_INVALID 500
#define SVC_E_GONE 503
#define SVC_E_TIMEOUT 504

enum verb { V_PING, V_INFO, V_STATS, N_VERBS };
static const char *const verb_names[N_VERBS] = {"PING", "INFO", "STATS"};

struct svc;

struct svc_ep {
	struct svc *svc;
	unsigned idx;
	char *name;
	char *subject; /* as subscribed: with ".>" when prefix-routed */
	char *queue;   /* "" for a plain subscription */
	json_t *metadata; /* NULL: none */
	bool prefix;
	bool default_handler;
	size_t base_len;  /* prefix: the subject's length without ">" */
	char **commands;
	size_t n_commands;
	struct sub *sub;
	uint64_t num_requests;
	uint64_t num_errors;
	uint64_t processing_ns;
	char last_error[256];
};

struct svc_verb {
	struct svc *svc;
	enum verb verb;
	struct sub *sub;
};

/* A request the app has and has not answered. */
struct svc_req {
	TAILQ_ENTRY(svc_req) entry; /* by deadline (all have the same timeout) */
	struct svc_ep *ep;
	uint64_t token;
	uint64_t start_ns;
	uint64_t deadline_ms;
	size_t held; /* charged to the app's stream */
	char reply[]; /* "" when nobody waits for an answer */
};

struct svc {
	struct stream st; /* st.c is NULL once the app is gone */
	TAILQ_ENTRY(svc) entry;
	char id[NUID_LEN + 1];
	char *name;
	char *version;
	char *event_prefix; /* "" for none */
	char *event_source;
	char started[48];
	char *ping_json;
	char *info_json;
	json_t *metadata; /* {} when none */
	struct svc_ep *eps;
	size_t n_eps;
	struct svc_verb verbs[N_VERBS * 3];
	struct ipc_idmap reqs; /* token -> struct svc_req */
	TAILQ_HEAD(, svc_req) pending;
	size_t n_pending;
	uint64_t next_token;
	uint32_t timeout_ms;
	uint32_t drain_ms;
	uint32_t max_pending;
	struct event *timer;
	struct link_wait *ack; /* the round trip before ServiceStarted */
	bool draining;
	bool shutdown; /* draining because shipd stops */
	uint64_t drain_until;
};

/* An answer waiting for its mutation event to be stored. */
struct svc_answer {
	TAILQ_ENTRY(svc_answer) entry;
	struct op op; /* with the frame's id, when the app waits */
	bool tracked;
	size_t bytes;
	struct js_call *call;
	natsMsg *msg; /* the answer; NULL when nobody waits for it */
	char subject[IPC_SUBJECT_MAX + 1]; /* the event's */
};

/* A discovery in flight. */
struct svc_find {
	struct op op;
	struct link_wait *wait;
	uint64_t until_ms;
	char **replies;
	size_t n, cap;
};

static TAILQ_HEAD(, svc) svcs = TAILQ_HEAD_INITIALIZER(svcs);
static size_t n_svcs;
static TAILQ_HEAD(, svc_answer) answers = TAILQ_HEAD_INITIALIZER(answers);
/* Answers waiting for their events, and their bytes: bounded. */
static size_t n_answers, answers_bytes;
#define SVC_ANSWERS_MAX 4096
static bool stopping;

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- names ---- */

/* A metadata map as JSON; NULL with why set if it is not one. */
static json_t *metadata_json(Ship__Header **h, size_t n, bool empty_null,
                             char *why, size_t whylen)
{
	if (n > SVC_META_MAX) {
		snprintf(why, whylen, "%zu metadata entries, at most %d", n,
		         SVC_META_MAX);
		return NULL;
	}
	if (n == 0 && empty_null)
		return json_null();
	json_t *o = json_object();
	size_t bytes = 0;
	for (size_t i = 0; o && i < n; i++) {
		bytes += strlen(h[i]->key) + strlen(h[i]->value);
		if (!h[i]->key[0] || bytes > SVC_META_BYTES) {
			snprintf(why, whylen,
			         "metadata: empty key, or over %d bytes",
			         SVC_META_BYTES);
			json_decref(o);
			return NULL;
		}
		if (json_object_get(o, h[i]->key)) {
			snprintf(why, whylen, "metadata key '%.64s' twice",
			         h[i]->key);
			json_decref(o);
			return NULL;
		}
		json_object_set_new(o, h[i]->key, json_string(h[i]->value));
	}
	if (!o)
		snprintf(why, whylen, "out of memory");
	return o;
}

/* ---- answering callers ---- */

/* An answer's headers: the app's, then the error's. */
struct reply_hdrs {
	Ship__Header *ptrs[PUBSUB_MAX_HEADERS + 2];
	Ship__Header h[2];
	char code[16];
};

static void reply_view(Ship__Msg *m, struct reply_hdrs *rh, const void *data,
                       size_t len, Ship__Header **hdrs, size_t n_hdrs,
                       unsigned code, const char *text)
{
	ship__msg__init(m);
	m->data.data = (uint8_t *)data;
	m->data.len = len;
	size_t n = 0;
	for (size_t i = 0; i < n_hdrs && n < PUBSUB_MAX_HEADERS; i++)
		rh->ptrs[n++] = hdrs[i];
	if (code) {
		snprintf(rh->code, sizeof(rh->code), "%u", code);
		ship__header__init(&rh->h[0]);
		rh->h[0].key = "Nats-Service-Error";
		rh->h[0].value = (char *)text;
		ship__header__init(&rh->h[1]);
		rh->h[1].key = "Nats-Service-Error-Code";
		rh->h[1].value = rh->code;
		rh->ptrs[n++] = &rh->h[0];
		rh->ptrs[n++] = &rh->h[1];
	}
	m->headers = rh->ptrs;
	m->n_headers = n;
}

/* Copy src into dst (size bytes) as UTF-8: bytes that are not become
 * '?', and a cut falls between characters. Text from NATS (subjects) or
 * an app must not break the JSON and frames it goes into. */
static void utf8_copy(char *dst, size_t size, const char *src)
{
	size_t o = 0;
	while (*src && o + 1 < size) {
		unsigned char c = (unsigned char)*src;
		size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
		if (c >= 0x80 && (strnlen(src, n) < n || !ipc_pb_string_ok(src, n)))
			n = 0;
		if (n == 0) {
			dst[o++] = '?';
			src++;
			continue;
		}
		if (o + n >= size)
			break;
		memcpy(dst + o, src, n);
		o += n;
		src += n;
	}
	dst[o] = '\0';
}

static void count(struct svc_ep *ep, uint64_t start_ns, unsigned code,
                  const char *text)
{
	ep->num_requests++;
	uint64_t now = mono_ns();
	ep->processing_ns += now > start_ns ? now - start_ns : 0;
	if (code) {
		char e[sizeof(ep->last_error) + 4]; /* utf8_copy cuts */
		ep->num_errors++;
		snprintf(e, sizeof(e), "%u:%s", code, text);
		utf8_copy(ep->last_error, sizeof(ep->last_error), e);
	}
}

/* Send an answer (nothing if nobody waits for one). */
static natsStatus send_answer(const char *reply, const void *data, size_t len,
                              Ship__Header **hdrs, size_t n_hdrs,
                              unsigned code, const char *text)
{
	if (!reply[0])
		return NATS_OK;
	Ship__Msg m;
	struct reply_hdrs rh;
	reply_view(&m, &rh, data, len, hdrs, n_hdrs, code, text);
	natsStatus s = pubsub_send(reply, "", data, len, &m);
	if (s == NATS_OK)
		stats.msgs_out++;
	else
		log_debug("%s: answer to %s: %s", __func__, reply,
		          natsStatus_GetText(s));
	return s;
}

/* shipd answers a request itself with an error, and counts it. */
static void fail_request(struct svc_ep *ep, const char *reply,
                         uint64_t start_ns, unsigned code, const char *text,
                         const char *body)
{
	count(ep, start_ns, code, text);
	send_answer(reply, body, body ? strlen(body) : 0, NULL, 0, code, text);
}

static void req_free(struct svc *s, struct svc_req *r)
{
	ipc_idmap_del(&s->reqs, r->token);
	TAILQ_REMOVE(&s->pending, r, entry);
	s->n_pending--;
	stream_unhold(&s->st, r->held);
	free(r);
}

/* Every request still with the app gets code: the app went, or the drain
 * ran out of time. */
static void fail_pending(struct svc *s, unsigned code, const char *text)
{
	struct svc_req *r;
	while ((r = TAILQ_FIRST(&s->pending))) {
		fail_request(r->ep, r->reply, r->start_ns, code, text, NULL);
		req_free(s, r);
	}
}

/* ---- the instance's life ---- */

static void svc_schedule(struct svc *s);

static void svc_free(struct svc *s)
{
	for (size_t i = 0; i < N_VERBS * 3; i++)
		pubsub_own_end(s->verbs[i].sub);
	for (size_t i = 0; i < s->n_eps; i++) {
		struct svc_ep *ep = &s->eps[i];
		pubsub_own_end(ep->sub);
		free(ep->name);
		free(ep->subject);
		free(ep->queue);
		json_decref(ep->metadata);
		for (size_t j = 0; j < ep->n_commands; j++)
			free(ep->commands[j]);
		free(ep->commands);
	}
	struct svc_req *r;
	while ((r = TAILQ_FIRST(&s->pending)))
		req_free(s, r);
	ipc_idmap_finish(&s->reqs);
	link_wait_cancel(s->ack);
	if (s->timer)
		event_free(s->timer);
	TAILQ_REMOVE(&svcs, s, entry);
	n_svcs--;
	free(s->eps);
	free(s->name);
	free(s->version);
	free(s->event_prefix);
	free(s->event_source);
	free(s->ping_json);
	free(s->info_json);
	json_decref(s->metadata);
	free(s);
}

/* The end: what is left pending fails, the app is told (StreamEnd). */
static void svc_end(struct svc *s, Ship__Code code, const char *why)
{
	fail_pending(s, SVC_E_GONE, "service stopped before it answered");
	stream_end_send(&s->st, code, false, why, 0, 0);
	stream_close(&s->st);
	log_debug("service %s (%s) ended", s->name, s->id);
	svc_free(s);
}

static bool drained(const struct svc *s)
{
	if (s->n_pending)
		return false;
	for (size_t i = 0; i < s->n_eps; i++)
		if (s->eps[i].sub && !pubsub_own_drained(s->eps[i].sub))
			return false;
	return true;
}

/* Returns false if s was freed. */
static bool drain_check(struct svc *s)
{
	if (!s->draining)
		return true;
	if (drained(s) || now_ms() >= s->drain_until) {
		/* An end the app did not ask for says so: its library adds
		 * the service again once a shipd is back. */
		if (s->shutdown)
			svc_end(s, SHIP__CODE__UNAVAILABLE, "shipd is stopping");
		else
			svc_end(s, SHIP__CODE__OK, NULL);
		return false;
	}
	return true;
}

static void svc_drain(struct svc *s)
{
	if (s->draining)
		return;
	s->draining = true;
	s->drain_until = now_ms() + s->drain_ms;
	for (size_t i = 0; i < s->n_eps; i++)
		if (s->eps[i].sub)
			pubsub_own_drain(s->eps[i].sub, s->drain_ms);
	if (drain_check(s))
		svc_schedule(s);
}

static void svc_timer(evutil_socket_t fd, short what, void *arg)
{
	struct svc *s = arg;
	uint64_t now = now_ms();
	struct svc_req *r;
	while ((r = TAILQ_FIRST(&s->pending)) && r->deadline_ms <= now) {
		char text[96];
		snprintf(text, sizeof(text), "service did not answer in %u ms",
		         s->timeout_ms);
		/* Nobody waits for an answer that is not wanted: not an
		 * error of the service. */
		if (r->reply[0])
			fail_request(r->ep, r->reply, r->start_ns,
			             SVC_E_TIMEOUT, text, NULL);
		else
			count(r->ep, r->start_ns, 0, NULL);
		req_free(s, r);
	}
	if (drain_check(s))
		svc_schedule(s);
}

static void svc_schedule(struct svc *s)
{
	uint64_t now = now_ms(), at = UINT64_MAX;
	struct svc_req *r = TAILQ_FIRST(&s->pending);
	if (r)
		at = r->deadline_ms;
	if (s->draining && now + SVC_DRAIN_TICK_MS < at)
		at = now + SVC_DRAIN_TICK_MS;
	if (at == UINT64_MAX) {
		evtimer_del(s->timer);
		return;
	}
	uint64_t in = at > now ? at - now : 0;
	struct timeval tv = {(time_t)(in / 1000), (suseconds_t)(in % 1000 * 1000)};
	evtimer_add(s->timer, &tv);
}

/* ---- requests from NATS ---- */

/* A reply subject shipd may answer to with its own account: not a system
 * subject ($JS.API..., $KV...) and in shipd's inbox only a request's or a
 * wait's (a local app calling, a local discovery), never the liveness
 * probe's. A request naming another is dropped. */
static bool reply_ok(const char *reply)
{
	if (!ipc_subject_system(reply) &&
	    link_inbox_kind(reply) != LINK_INBOX_OTHER)
		return true;
	stats.dropped++;
	log_debug("service request with reply '%.64s' dropped", reply);
	return false;
}

static bool has_command(const struct svc_ep *ep, const char *cmd)
{
	for (size_t i = 0; i < ep->n_commands; i++)
		if (!strcmp(ep->commands[i], cmd))
			return true;
	return false;
}

static void ep_msg(void *arg, natsMsg *msg)
{
	struct svc_ep *ep = arg;
	struct svc *s = ep->svc;
	uint64_t start = mono_ns();
	const char *subject = natsMsg_GetSubject(msg);
	const char *reply = natsMsg_GetReply(msg);
	if (!reply)
		reply = "";
	if (!reply_ok(reply)) {
		link_msg_destroy(msg);
		return;
	}
	const char *command = "";
	if (ep->prefix)
		command = strlen(subject) > ep->base_len ? subject + ep->base_len
		                                         : "";
	if (!ipc_pb_string_ok(subject, strlen(subject))) {
		/* The app's frames carry text: a subject that is not UTF-8
		 * (NATS takes any bytes) cannot reach it. */
		fail_request(ep, reply, start, SVC_E_INVALID,
		             "the subject is not UTF-8", NULL);
		link_msg_destroy(msg);
		return;
	}
	if (ep->prefix && !ep->default_handler && !has_command(ep, command)) {
		char text[IPC_SUBJECT_MAX + 32];
		snprintf(text, sizeof(text), "UNKNOWN_COMMAND: %s", command);
		json_t *body = json_pack("{s:s,s:i}", "error", text, "code",
		                         SVC_E_UNKNOWN);
		char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
		fail_request(ep, reply, start, SVC_E_UNKNOWN, text,
		             b ? b : "{\"error\":\"UNKNOWN_COMMAND\",\"code\":404}");
		free(b);
		json_decref(body);
		link_msg_destroy(msg);
		return;
	}
	if (!s->st.c || s->n_pending >= s->max_pending) {
		char text[96];
		snprintf(text, sizeof(text),
		         "service busy: %u requests wait for it", s->max_pending);
		fail_request(ep, reply, start, SVC_E_GONE, text, NULL);
		link_msg_destroy(msg);
		return;
	}
	size_t rlen = strlen(reply);
	size_t held = sizeof(struct svc_req) + rlen + 1 + 64;
	if (!stream_hold(&s->st, held)) {
		/* What the app may hold is held: it is behind. */
		fail_request(ep, reply, start, SVC_E_GONE,
		             "service busy: its memory limit is reached", NULL);
		link_msg_destroy(msg);
		return;
	}
	struct svc_req *r = calloc(1, sizeof(*r) + rlen + 1);
	uint64_t token = ++s->next_token;
	if (!r || ipc_idmap_put(&s->reqs, token, r) < 0) {
		free(r);
		stream_unhold(&s->st, held);
		fail_request(ep, reply, start, SVC_E_INVALID,
		             "shipd is out of memory", NULL);
		link_msg_destroy(msg);
		return;
	}
	r->held = held;
	r->ep = ep;
	r->token = token;
	r->start_ns = start;
	r->deadline_ms = now_ms() + s->timeout_ms;
	memcpy(r->reply, reply, rlen + 1);
	TAILQ_INSERT_TAIL(&s->pending, r, entry);
	s->n_pending++;

	static struct pubsub_hdrs hs;
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__ServiceRequest q = SHIP__SERVICE_REQUEST__INIT;
	Ship__Msg m;
	pubsub_msg_view(&m, &hs, msg);
	q.token = token;
	q.endpoint = ep->idx;
	q.command = (char *)command;
	q.msg = &m;
	q.timeout_ms = s->timeout_ms;
	f.id = s->st.id;
	f.body_case = SHIP__SERVER_FRAME__BODY_SERVICE_REQUEST;
	f.service_request = &q;
	int rc = client_push(s->st.c, &f);
	pubsub_hdrs_free(&hs);
	link_msg_destroy(msg);
	if (rc < 0) {
		s->st.c->st.dropped++;
		fail_request(ep, r->reply, start, SVC_E_GONE,
		             "service is not reading its requests", NULL);
		req_free(s, r);
		return;
	}
	stats.msgs_in++;
	if (TAILQ_FIRST(&s->pending) == r)
		svc_schedule(s);
}

/* ---- $SRV ---- */

static char *stats_json(const struct svc *s)
{
	json_t *eps = json_array();
	for (size_t i = 0; eps && i < s->n_eps; i++) {
		const struct svc_ep *ep = &s->eps[i];
		uint64_t avg = ep->num_requests
		                       ? ep->processing_ns / ep->num_requests
		                       : 0;
		json_t *e = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:I,s:I}",
			               "name", ep->name, "subject", ep->subject,
			               "queue_group", ep->queue, "num_requests",
			               (json_int_t)ep->num_requests, "num_errors",
			               (json_int_t)ep->num_errors, "last_error",
			               ep->last_error, "processing_time",
			               (json_int_t)ep->processing_ns,
			               "average_processing_time",
			               (json_int_t)avg);
		if (!e || json_array_append_new(eps, e) < 0) {
			json_decref(eps);
			return NULL;
		}
	}
	json_t *o = json_pack("{s:s,s:s,s:s,s:O,s:s,s:s,s:o}", "name", s->name,
	                      "id", s->id, "version", s->version, "metadata",
	                      s->metadata, "type",
	                      "io.nats.micro.v1.stats_response", "started",
	                      s->started, "endpoints", eps);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return text;
}

static void verb_msg(void *arg, natsMsg *msg)
{
	struct svc_verb *v = arg;
	const char *reply = natsMsg_GetReply(msg);
	if (reply && reply[0] && reply_ok(reply)) {
		char *dyn = v->verb == V_STATS ? stats_json(v->svc) : NULL;
		const char *text = v->verb == V_PING   ? v->svc->ping_json
		                   : v->verb == V_INFO ? v->svc->info_json
		                                       : dyn;
		if (text && pubsub_send(reply, "", text, strlen(text), NULL) ==
		                    NATS_OK)
			stats.msgs_out++;
		free(dyn);
	}
	link_msg_destroy(msg);
}

/* ---- ServiceAdd ---- */

static void add_acked(void *arg, natsMsg *msg, natsStatus st)
{
	struct svc *s = arg;
	link_msg_destroy(msg);
	s->ack = NULL;
	if (!s->st.c)
		return;
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__ServiceStarted ss = SHIP__SERVICE_STARTED__INIT;
	char *subjects[SVC_EPS_MAX];
	for (size_t i = 0; i < s->n_eps; i++)
		subjects[i] = s->eps[i].subject;
	ss.id = s->id;
	ss.subjects = subjects;
	ss.n_subjects = s->n_eps;
	f.id = s->st.id;
	f.body_case = SHIP__SERVER_FRAME__BODY_SERVICE_STARTED;
	f.service_started = &ss;
	client_send(s->st.c, &f);
}

/* Answer once the server has the subscriptions: a message to our own
 * inbox sent after them comes back after the server processed them. */
static void add_ack(struct svc *s)
{
	natsConnection *nc = link_conn();
	if (nc && (s->ack = link_wait_new(SVC_DISCOVER_MS, false, add_acked,
	                                  s)) &&
	    natsConnection_Publish(nc, link_wait_inbox(s->ack), NULL, 0) ==
	            NATS_OK)
		return;
	link_wait_cancel(s->ack);
	add_acked(s, NULL, NATS_OK);
}

static void svc_stream_end(struct stream *st)
{
	struct svc *s = container_of(st, struct svc, st);
	svc_drain(s);
}

static void svc_stream_gone(struct stream *st)
{
	struct svc *s = container_of(st, struct svc, st);
	/* The app is gone: its callers learn it now, not at their
	 * deadlines. */
	fail_pending(s, SVC_E_GONE, "service instance went away");
	svc_free(s);
}

static const struct stream_kind svc_kind = {
	.name = "service",
	.end = svc_stream_end,
	.gone = svc_stream_gone,
};

/* A subject an endpoint may take: not a system subject or a reply. */
static bool ep_subject_ok(const char *subject)
{
	return ipc_subject_pattern_valid(subject) &&
	       !ipc_subject_system(subject) &&
	       !ipc_first_token(subject, "_INBOX") &&
	       !ipc_first_token(subject, "*") && !ipc_first_token(subject, ">");
}

/* Fill ep from e; false with why set. */
static bool ep_setup(struct svc_ep *ep, const Ship__ServiceEndpoint *e,
                     char *why, size_t whylen)
{
	if (!ipc_svc_name_valid(e->name)) {
		snprintf(why, whylen,
		         "invalid endpoint name '%.64s' (1 to %d letters, "
		         "digits, _ and -)",
		         e->name, IPC_SVC_NAME_MAX);
		return false;
	}
	const char *subj = e->subject[0] ? e->subject : e->name;
	char full[IPC_SUBJECT_MAX + 1];
	bool fits = e->group[0] ? ipc_fmt_fits(full, sizeof(full), "%s.%s%s",
	                                       e->group, subj,
	                                       e->prefix ? ".>" : "")
	                        : ipc_fmt_fits(full, sizeof(full), "%s%s", subj,
	                                       e->prefix ? ".>" : "");
	if (!fits || !ep_subject_ok(full) ||
	    (e->group[0] && !ipc_subject_valid(e->group)) ||
	    (e->prefix && !ipc_subject_valid(subj))) {
		snprintf(why, whylen,
		         "endpoint %s: invalid subject '%.128s' (a subject; "
		         "not $..., _INBOX... or a leading wildcard; no "
		         "wildcards with prefix routing)",
		         e->name, fits ? full : subj);
		return false;
	}
	const char *queue = e->no_queue ? ""
	                    : e->queue_group[0] ? e->queue_group : "q";
	if (queue[0] && !ipc_queue_valid(queue)) {
		snprintf(why, whylen, "endpoint %s: invalid queue group '%.64s'",
		         e->name, queue);
		return false;
	}
	if (e->n_commands > SVC_COMMANDS_MAX) {
		snprintf(why, whylen, "endpoint %s: %zu commands, at most %d",
		         e->name, e->n_commands, SVC_COMMANDS_MAX);
		return false;
	}
	if (e->n_commands && !e->prefix) {
		snprintf(why, whylen,
		         "endpoint %s: commands need prefix routing", e->name);
		return false;
	}
	for (size_t i = 0; i < e->n_commands; i++) {
		if (!ipc_subject_valid(e->commands[i])) {
			snprintf(why, whylen,
			         "endpoint %s: invalid command '%.64s' (subject "
			         "tokens, no wildcards)",
			         e->name, e->commands[i]);
			return false;
		}
	}
	if (!(ep->metadata = metadata_json(e->metadata, e->n_metadata, true,
	                                   why, whylen)))
		return false;
	ep->name = strdup(e->name);
	ep->subject = strdup(full);
	ep->queue = strdup(queue);
	ep->prefix = e->prefix;
	ep->default_handler = e->default_handler;
	ep->base_len = e->prefix ? strlen(full) - 1 : 0;
	if (e->n_commands)
		ep->commands = calloc(e->n_commands, sizeof(char *));
	bool ok = ep->name && ep->subject && ep->queue &&
	          (!e->n_commands || ep->commands);
	for (size_t i = 0; ok && i < e->n_commands; i++) {
		if (!(ep->commands[i] = strdup(e->commands[i])))
			ok = false;
		else
			ep->n_commands++;
	}
	if (!ok)
		snprintf(why, whylen, "out of memory");
	return ok;
}

static char *info_json(const struct svc *s, const char *description)
{
	json_t *eps = json_array();
	for (size_t i = 0; eps && i < s->n_eps; i++) {
		const struct svc_ep *ep = &s->eps[i];
		json_array_append_new(eps,
		                      json_pack("{s:s,s:s,s:s,s:O}", "name",
		                                ep->name, "subject", ep->subject,
		                                "queue_group", ep->queue,
		                                "metadata", ep->metadata));
	}
	json_t *o = json_pack("{s:s,s:s,s:s,s:O,s:s,s:s,s:o}", "name", s->name,
	                      "id", s->id, "version", s->version, "metadata",
	                      s->metadata, "type",
	                      "io.nats.micro.v1.info_response", "description",
	                      description, "endpoints", eps);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return text;
}

static char *ping_json(const struct svc *s)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:O,s:s}", "name", s->name, "id",
	                      s->id, "version", s->version, "metadata",
	                      s->metadata, "type",
	                      "io.nats.micro.v1.ping_response");
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return text;
}

/* RFC 3339 UTC with nanoseconds and Z, as nats.go writes a time. */
static void started_now(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%09ldZ", ts.tv_nsec);
}

static bool add_check(struct client *c, uint64_t id, const Ship__ServiceAdd *a)
{
	if (!ipc_svc_name_valid(a->name)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid service name '%.64s' (1 to %d letters, "
		             "digits, _ and -)",
		             a->name, IPC_SVC_NAME_MAX);
		return false;
	}
	if (!ipc_semver_valid(a->version)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid version '%.64s': semantic versioning "
		             "(1.0.0, 1.2.3-rc.1)",
		             a->version);
		return false;
	}
	if (strlen(a->description) > SVC_DESC_MAX) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "description over %d bytes", SVC_DESC_MAX);
		return false;
	}
	if (a->n_endpoints > SVC_EPS_MAX) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "%zu endpoints, at most %d", a->n_endpoints,
		             SVC_EPS_MAX);
		return false;
	}
	if (a->event_prefix[0] && !ipc_subject_valid(a->event_prefix)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid event prefix '%.64s'", a->event_prefix);
		return false;
	}
	if (strlen(a->event_source) > IPC_SVC_NAME_MAX * 2) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "event source over %d bytes", IPC_SVC_NAME_MAX * 2);
		return false;
	}
	if (a->drain_ms > SVC_DRAIN_MAX_MS ||
	    a->timeout_ms > conf->max_request_timeout_ms ||
	    a->max_pending > SVC_PENDING_MAX) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "drain_ms at most %d, timeout_ms at most %u "
		             "(max_request_timeout_ms), max_pending at most %d",
		             SVC_DRAIN_MAX_MS, conf->max_request_timeout_ms,
		             SVC_PENDING_MAX);
		return false;
	}
	if (n_svcs >= SVC_MAX) {
		client_error(c, id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "%d services on this shipd already", SVC_MAX);
		return false;
	}
	size_t mine = 0;
	struct svc *o;
	TAILQ_FOREACH(o, &svcs, entry)
		mine += o->st.c == c;
	if (mine >= SVC_PER_CLIENT) {
		client_error(c, id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "this connection hosts %d services already",
		             SVC_PER_CLIENT);
		return false;
	}
	if (stopping) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE, "shipd is stopping");
		return false;
	}
	return client_allowed(c, id, POL_SERVICE, a->name);
}

static void handle_add(struct client *c, uint64_t id, const Ship__ServiceAdd *a)
{
	if (!add_check(c, id, a))
		return;
	char why[256] = "out of memory";
	struct svc *s = calloc(1, sizeof(*s));
	if (!s) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	TAILQ_INSERT_TAIL(&svcs, s, entry);
	n_svcs++;
	TAILQ_INIT(&s->pending);
	s->eps = calloc(a->n_endpoints ? a->n_endpoints : 1, sizeof(*s->eps));
	s->name = strdup(a->name);
	s->version = strdup(a->version);
	s->event_prefix = strdup(a->event_prefix);
	s->event_source = strdup(a->event_source[0] ? a->event_source : a->name);
	s->timer = evtimer_new(base, svc_timer, s);
	s->timeout_ms = a->timeout_ms ? a->timeout_ms : SVC_TIMEOUT_MS;
	s->drain_ms = a->drain_ms ? a->drain_ms : SVC_DRAIN_MS;
	s->max_pending = a->max_pending ? a->max_pending : SVC_PENDING;
	obj_new_nuid(s->id);
	started_now(s->started, sizeof(s->started));
	bool ok = s->eps && s->name && s->version && s->event_prefix &&
	          s->event_source && s->timer;
	Ship__Code code = SHIP__CODE__INTERNAL;
	if (ok && !(s->metadata = metadata_json(a->metadata, a->n_metadata,
	                                        false, why, sizeof(why)))) {
		ok = false;
		code = SHIP__CODE__INVALID_ARGUMENT;
	}
	for (size_t i = 0; ok && i < a->n_endpoints; i++) {
		struct svc_ep *ep = &s->eps[i];
		ep->svc = s;
		ep->idx = (unsigned)i;
		s->n_eps++;
		if (!ep_setup(ep, a->endpoints[i], why, sizeof(why))) {
			ok = false;
			code = SHIP__CODE__INVALID_ARGUMENT;
		}
		for (size_t j = 0; ok && j < i; j++) {
			if (!strcmp(s->eps[j].name, ep->name)) {
				snprintf(why, sizeof(why),
				         "endpoint name '%s' twice", ep->name);
				ok = false;
				code = SHIP__CODE__INVALID_ARGUMENT;
			}
		}
	}
	if (!ok) {
		client_error(c, id, code, "%s", why);
		svc_free(s);
		return;
	}
	/* Hosting an endpoint is taking its requests: the app needs the
	 * right to subscribe to its subject too. */
	for (size_t i = 0; i < s->n_eps; i++) {
		if (!client_allowed(c, id, POL_SUBSCRIBE, s->eps[i].subject)) {
			svc_free(s);
			return;
		}
	}
	s->ping_json = ping_json(s);
	s->info_json = info_json(s, a->description);
	if (!s->ping_json || !s->info_json) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		svc_free(s);
		return;
	}
	/* INFO and STATS go out as one message each: they must fit. */
	if (strlen(s->info_json) > SVC_INFO_MAX) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "description, metadata and endpoints make an INFO "
		             "of %zu bytes, at most %d",
		             strlen(s->info_json), SVC_INFO_MAX);
		svc_free(s);
		return;
	}
	if (!stream_open(&s->st, &svc_kind, c, id)) {
		svc_free(s);
		return;
	}
	for (size_t i = 0; ok && i < N_VERBS * 3; i++) {
		struct svc_verb *v = &s->verbs[i];
		char subject[IPC_SUBJECT_MAX + 1];
		v->svc = s;
		v->verb = (enum verb)(i / 3);
		const char *vn = verb_names[v->verb];
		if (i % 3 == 0)
			snprintf(subject, sizeof(subject), "$SRV.%s", vn);
		else if (i % 3 == 1)
			snprintf(subject, sizeof(subject), "$SRV.%s.%s", vn,
			         s->name);
		else
			snprintf(subject, sizeof(subject), "$SRV.%s.%s.%s", vn,
			         s->name, s->id);
		ok = (v->sub = pubsub_own(subject, NULL, verb_msg, v)) != NULL;
	}
	for (size_t i = 0; ok && i < s->n_eps; i++) {
		struct svc_ep *ep = &s->eps[i];
		ok = (ep->sub = pubsub_own(ep->subject, ep->queue, ep_msg,
		                           ep)) != NULL;
	}
	if (!ok) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		stream_close(&s->st);
		svc_free(s);
		return;
	}
	log_debug("client %" PRIu64 " hosts service %s %s (%s), %zu endpoints",
	          c->cid, s->name, s->version, s->id, s->n_eps);
	add_ack(s);
}

/* ---- ServiceRespond ---- */

static void answer_free(struct svc_answer *a)
{
	TAILQ_REMOVE(&answers, a, entry);
	n_answers--;
	answers_bytes -= a->bytes;
	js_cancel(a->call);
	op_end(&a->op);
	link_msg_destroy(a->msg);
	free(a);
}

static void answer_cancel(struct op *o)
{
	/* The app is gone; its answer still goes out once the event is
	 * stored. */
	(void)o;
}

static void answer_stored(void *arg, uint64_t seq, bool dup,
                          const struct js_err *e)
{
	struct svc_answer *a = arg;
	a->call = NULL;
	if (a->msg) {
		natsMsg *m = a->msg;
		natsConnection *nc = link_conn();
		natsStatus st;
		a->msg = NULL;
		if (nc) {
			st = natsConnection_PublishMsg(nc, m);
			link_msg_destroy(m);
		} else {
			st = link_hold(m); /* takes m */
		}
		if (st == NATS_OK)
			stats.msgs_out++;
	}
	if (e)
		log_warnx("service event %s not stored: %s", a->subject,
		          e->text);
	if (a->tracked && a->op.c) {
		if (e)
			client_js_error(a->op.c, a->op.id, e);
		else
			client_ok(a->op.c, a->op.id);
	}
	answer_free(a);
}

/* The answer as a natsMsg (for after the event). */
static natsMsg *answer_msg(const char *reply, const Ship__Msg *m)
{
	natsMsg *msg = NULL;
	if (!reply[0])
		return NULL;
	natsStatus st = natsMsg_Create(&msg, reply, NULL,
	                               (const char *)m->data.data,
	                               (int)m->data.len);
	for (size_t i = 0; st == NATS_OK && i < m->n_headers; i++)
		st = natsMsgHeader_Add(msg, m->headers[i]->key,
		                       m->headers[i]->value);
	if (st != NATS_OK) {
		link_msg_destroy(msg);
		return NULL;
	}
	return msg;
}

static bool respond_check(struct client *c, uint64_t id,
                          const Ship__ServiceRespond *r, char *why,
                          size_t whylen)
{
	if (r->n_headers > PUBSUB_MAX_HEADERS) {
		snprintf(why, whylen, "%zu headers, at most %d", r->n_headers,
		         PUBSUB_MAX_HEADERS);
		return false;
	}
	for (size_t i = 0; i < r->n_headers; i++) {
		if (!ipc_header_key_valid(r->headers[i]->key) ||
		    !ipc_header_value_valid(r->headers[i]->value)) {
			snprintf(why, whylen, "invalid header '%.64s'",
			         r->headers[i]->key);
			return false;
		}
	}
	if (r->error_code && (!r->error[0] || !ipc_header_value_valid(r->error) ||
	                      strlen(r->error) > 1024)) {
		snprintf(why, whylen,
		         "an error needs its text (printable, one line, at most "
		         "1024 bytes)");
		return false;
	}
	(void)c;
	(void)id;
	return true;
}

/* Send a prepared answer now (nothing if nobody waits for one). */
static natsStatus send_view(const char *reply, const Ship__Msg *m)
{
	if (!reply[0])
		return NATS_OK;
	natsStatus st = pubsub_send(reply, "", m->data.data, m->data.len, m);
	if (st == NATS_OK)
		stats.msgs_out++;
	return st;
}

/* Publish the mutation event, then the answer once it is stored. When
 * the event cannot be published the answer goes at once and the app is
 * told why (if it waits). */
static void respond_with_event(struct client *c, uint64_t id, struct svc *s,
                               const char *reply, const Ship__Msg *m,
                               const Ship__ServiceRespond *r)
{
	char sub[IPC_SUBJECT_MAX + 1];
	bool fits = s->event_prefix[0]
	                    ? ipc_fmt_fits(sub, sizeof(sub), "%s.%s",
	                                   s->event_prefix, r->event_type)
	                    : ipc_fmt_fits(sub, sizeof(sub), "%s",
	                                   r->event_type);
	if (!fits || !ipc_subject_valid(sub) || ipc_subject_system(sub) ||
	    ipc_first_token(sub, "_INBOX")) {
		send_view(reply, m);
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "event not published: invalid event type '%.64s' "
		             "(subject tokens; not $... or _INBOX)",
		             r->event_type);
		return;
	}
	if (!client_allowed(c, id, POL_EMIT, sub)) {
		send_view(reply, m);
		return;
	}
	/* Answers wait for their events within a bound (JetStream may be
	 * slow: a stream without its quorum). */
	size_t bytes = sizeof(struct svc_answer) + m->data.len + strlen(reply) +
	               strlen(r->event_json) + 256;
	if (n_answers >= SVC_ANSWERS_MAX ||
	    answers_bytes + bytes > conf->memory_limit / 4) {
		send_view(reply, m);
		client_error(c, id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "event not published: %zu answers wait for their "
		             "events already",
		             n_answers);
		return;
	}
	struct svc_answer *a = calloc(1, sizeof(*a));
	if (!a || (reply[0] && !(a->msg = answer_msg(reply, m)))) {
		free(a);
		send_view(reply, m);
		client_error(c, id, SHIP__CODE__INTERNAL,
		             "event not published: out of memory");
		return;
	}
	TAILQ_INSERT_TAIL(&answers, a, entry);
	n_answers++;
	a->bytes = bytes;
	answers_bytes += bytes;
	snprintf(a->subject, sizeof(a->subject), "%s", sub);
	/* The app's payload goes in as it is when it is JSON; else null,
	 * as noesis-ship does. */
	json_t *payload = NULL;
	if (r->event_json[0])
		payload = json_loads(r->event_json,
		                     JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
		                     NULL);
	struct ipc_buf b = {0};
	events_envelope(&b, r->event_type, s->event_source,
	                payload ? r->event_json : NULL);
	json_decref(payload);
	char msg_id[NUID_LEN + 32];
	snprintf(msg_id, sizeof(msg_id), "%s-%" PRIu64, s->id, r->token);
	a->call = js_publish_id(a->subject, msg_id, ipc_buf_head(&b),
	                        ipc_buf_used(&b), conf->request_timeout_ms,
	                        answer_stored, a);
	ipc_buf_finish(&b);
	if (!a->call) {
		natsMsg *msg = a->msg;
		a->msg = NULL;
		if (msg && link_hold(msg) == NATS_OK)
			stats.msgs_out++;
		client_error(c, id, SHIP__CODE__UNAVAILABLE,
		             "event not published: NATS is not connected");
		answer_free(a);
		return;
	}
	if (id) {
		op_track(&a->op, c, id, answer_cancel);
		a->tracked = true;
	}
}

static void handle_respond(struct client *c, uint64_t id,
                           const Ship__ServiceRespond *r)
{
	struct stream *st = stream_find(c, r->service, &svc_kind);
	if (!st) {
		client_error(c, id, SHIP__CODE__NOT_FOUND,
		             "no service %" PRIu64 " on this connection",
		             r->service);
		return;
	}
	struct svc *s = container_of(st, struct svc, st);
	struct svc_req *q = ipc_idmap_get(&s->reqs, r->token);
	if (!q) {
		client_error(c, id, SHIP__CODE__NOT_FOUND,
		             "request %" PRIu64 " of service %s is not waiting "
		             "(answered, or past its %u ms)",
		             r->token, s->name, s->timeout_ms);
		return;
	}
	char why[256];
	struct svc_ep *ep = q->ep;
	if (!respond_check(c, id, r, why, sizeof(why))) {
		/* The caller learns the service failed, not nothing. */
		char text[300];
		snprintf(text, sizeof(text), "service gave an invalid answer: %s",
		         why);
		fail_request(ep, q->reply, q->start_ns, SVC_E_INVALID, text,
		             NULL);
		req_free(s, q);
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT, "%s", why);
		drain_check(s);
		return;
	}
	Ship__Msg m;
	struct reply_hdrs rh;
	reply_view(&m, &rh, r->data.data, r->data.len, r->headers, r->n_headers,
	           r->error_code, r->error);
	/* q (and its reply subject, of any length) goes after the answer. */
	if (r->event_type[0]) {
		count(ep, q->start_ns, r->error_code, r->error);
		respond_with_event(c, id, s, q->reply, &m, r);
	} else {
		natsStatus ns = send_view(q->reply, &m);
		if (ns == NATS_MAX_PAYLOAD) {
			static const char big[] = "the service's answer is over "
			                          "the NATS payload limit";
			fail_request(ep, q->reply, q->start_ns, SVC_E_INVALID,
			             big, NULL);
		} else {
			count(ep, q->start_ns, r->error_code, r->error);
		}
		if (id && ns != NATS_OK)
			client_error(c, id, pubsub_code(ns), "answer: %s",
			             natsStatus_GetText(ns));
		else if (id)
			client_ok(c, id);
	}
	req_free(s, q);
	drain_check(s);
}

/* ---- discovery ---- */

static void find_free(struct svc_find *f)
{
	link_wait_cancel(f->wait);
	op_end(&f->op);
	for (size_t i = 0; i < f->n; i++)
		free(f->replies[i]);
	free(f->replies);
	free(f);
}

static void find_cancel(struct op *o)
{
	find_free(container_of(o, struct svc_find, op));
}

static void find_answer(struct svc_find *f)
{
	Ship__ServerFrame fr = SHIP__SERVER_FRAME__INIT;
	Ship__ServiceDiscovered d = SHIP__SERVICE_DISCOVERED__INIT;
	d.replies = f->replies;
	d.n_replies = f->n;
	fr.id = f->op.id;
	fr.body_case = SHIP__SERVER_FRAME__BODY_SERVICE_DISCOVERED;
	fr.service_discovered = &d;
	client_send(f->op.c, &fr);
}

static void find_reply(void *arg, natsMsg *msg, natsStatus st)
{
	struct svc_find *f = arg;
	if (!msg) {
		f->wait = NULL; /* gone after a NULL callback */
		if (st == NATS_CONNECTION_DISCONNECTED && !f->n)
			client_error(f->op.c, f->op.id, SHIP__CODE__UNAVAILABLE,
			             "NATS connection lost");
		else
			find_answer(f); /* timed out, or nobody answers */
		find_free(f);
		return;
	}
	size_t len = (size_t)natsMsg_GetDataLength(msg);
	if (f->n == SVC_DISCOVER_MAX) {
		link_msg_destroy(msg);
		find_answer(f); /* enough: what came is the answer */
		find_free(f);
		return;
	}
	if (!op_hold(&f->op, len + 64)) {
		link_msg_destroy(msg); /* answered: more than the app may hold */
		find_free(f);
		return;
	}
	char *text = malloc(len + 1);
	char **grown = f->replies;
	if (text && f->n == f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 16;
		if ((grown = realloc(f->replies, cap * sizeof(char *)))) {
			f->replies = grown;
			f->cap = cap;
		}
	}
	if (!text || !grown) {
		free(text);
		link_msg_destroy(msg);
		client_error(f->op.c, f->op.id, SHIP__CODE__INTERNAL,
		             "out of memory");
		find_free(f);
		return;
	}
	memcpy(text, natsMsg_GetData(msg), len);
	text[len] = '\0';
	link_msg_destroy(msg);
	if (ipc_pb_string_ok(text, len))
		f->replies[f->n++] = text;
	else
		free(text); /* not JSON, and no frame could carry it */
	uint64_t now = now_ms();
	uint64_t left = f->until_ms > now ? f->until_ms - now : 0;
	link_wait_rearm(f->wait, left < SVC_DISCOVER_STALL_MS
	                                 ? (uint32_t)left
	                                 : SVC_DISCOVER_STALL_MS);
}

static void handle_discover(struct client *c, uint64_t id,
                            const Ship__ServiceDiscover *d)
{
	int verb = -1;
	for (int i = 0; i < N_VERBS; i++)
		if (!strcmp(d->verb, verb_names[i]))
			verb = i;
	if (verb < 0 || (d->name[0] && !ipc_svc_name_valid(d->name)) ||
	    (d->id[0] && (!d->name[0] || !ipc_svc_name_valid(d->id)))) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "discover: verb PING, INFO or STATS; a service name; "
		             "an instance id only with a name");
		return;
	}
	char subject[IPC_SUBJECT_MAX + 1];
	snprintf(subject, sizeof(subject), "$SRV.%s%s%s%s%s", d->verb,
	         d->name[0] ? "." : "", d->name, d->id[0] ? "." : "", d->id);
	if (!client_allowed(c, id, POL_REQUEST, subject))
		return;
	uint32_t wait = d->wait_ms ? d->wait_ms : SVC_DISCOVER_MS;
	if (wait > conf->max_request_timeout_ms)
		wait = conf->max_request_timeout_ms;
	natsConnection *nc = link_conn();
	if (!nc) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE,
		             "NATS is not connected (%s)",
		             link_state_name(link_info()->state));
		return;
	}
	struct svc_find *f = calloc(1, sizeof(*f));
	if (!f) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	if (!op_begin(&f->op, c, id, find_cancel)) {
		free(f);
		return;
	}
	f->until_ms = now_ms() + wait;
	if (!(f->wait = link_wait_new(wait, true, find_reply, f)) ||
	    natsConnection_PublishRequest(nc, subject, link_wait_inbox(f->wait),
	                                  NULL, 0) != NATS_OK) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE,
		             "NATS is not connected");
		find_free(f);
	}
}

/* ---- the block ---- */

static void req_add(struct client *c, const Ship__ClientFrame *f)
{
	handle_add(c, f->id, f->service_add);
}

static void req_respond(struct client *c, const Ship__ClientFrame *f)
{
	handle_respond(c, f->id, f->service_respond);
}

static void req_discover(struct client *c, const Ship__ClientFrame *f)
{
	handle_discover(c, f->id, f->service_discover);
}

static bool svc_block_drain(void)
{
	stopping = true;
	struct svc *s, *tmp;
	TAILQ_FOREACH_SAFE(s, &svcs, entry, tmp) {
		if (!s->draining)
			s->shutdown = true;
		svc_drain(s);
	}
	return !TAILQ_EMPTY(&svcs);
}

static bool svc_busy(void)
{
	return !TAILQ_EMPTY(&answers);
}

static void svc_finish(void)
{
	struct svc *s;
	while ((s = TAILQ_FIRST(&svcs)))
		svc_free(s);
	struct svc_answer *a;
	while ((a = TAILQ_FIRST(&answers)))
		answer_free(a);
}

const struct block svc_block = {
	.name = "services",
	.drain = svc_block_drain,
	.busy = svc_busy,
	.finish = svc_finish,
	.requests = (const struct block_request[]){
		{SHIP__CLIENT_FRAME__BODY_SERVICE_ADD, req_add, false},
		{SHIP__CLIENT_FRAME__BODY_SERVICE_RESPOND, req_respond, true},
		{SHIP__CLIENT_FRAME__BODY_SERVICE_DISCOVER, req_discover, false},
		{0, NULL, false},
	},
};
