/* SPDX-License-Identifier: MIT */
/* KV watches: an ordered push consumer per watch, driven from the loop,
 * resumed after the last revision seen when NATS or the consumer comes
 * back; and collectors (keys, history, values) built on the same. Other
 * blocks watch their own streams with it (kvwatch_open_stream). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shipd.h"

#define API_TIMEOUT_MS 5000
#define HEARTBEAT_NS 5000000000LL
/* No message (not even a heartbeat) for this long: the consumer is gone. */
#define HB_MISS_MS 12000
#define RETRY_MS 1000
#define DRAIN_MS 5
/* A watch whose app takes nothing for this long is ended. */
#define STALL_MS 30000
#define INACTIVE_NS 10000000000LL
#define COLLECT_RESTARTS 3

enum wmode { W_STREAM, W_COLLECT, W_FOLLOW };

struct qitem {
	struct qitem *next;
	natsMsg *msg; /* NULL: the end-of-initial-values marker */
	uint64_t sseq, pending, ns;
	size_t bytes;
};

struct watch {
	struct stream st; /* W_STREAM: st.c is NULL once ended */
	TAILQ_ENTRY(watch) entry;
	enum wmode mode;
	char bucket[KV_NAME_MAX];
	char stream_name[KV_NAME_MAX + 8];
	char filter[IPC_SUBJECT_MAX + 1];
	size_t prefix_len; /* "$KV.<bucket>." */
	/* Another block's watch: how it pushes and what it skips. */
	kvwatch_push_fn *push;
	kvwatch_skip_fn *skip;
	bool no_marker; /* no end-of-initial marker */
	bool include_history, updates_only, ignore_deletes, meta_only;
	uint64_t last_sseq; /* last stream sequence taken */
	uint64_t cseq;      /* last consumer sequence of this consumer */
	bool init_done;
	bool answered;
	char consumer[64];
	struct link_wait *wait;
	struct js_call *create_call;
	struct event *retry_timer;
	struct event *drain_timer;
	/* W_STREAM: what waits for room in the app's output */
	struct qitem *qhead, *qtail;
	size_t qbytes;
	uint64_t stall_since;
	char fc_reply[IPC_SUBJECT_MAX + 1];
	uint64_t delivered;
	/* W_FOLLOW */
	kv_follow_fn *ffn;
	/* W_COLLECT (and W_FOLLOW's arg) */
	kv_collect_fn *fn;
	void *arg;
	struct kv_entry *entries;
	size_t n, cap, bytes, max_bytes;
	int restarts;
};

static TAILQ_HEAD(, watch) watches = TAILQ_HEAD_INITIALIZER(watches);
static bool finished; /* kvwatch_finish freed them all */

static void create_consumer(struct watch *w);

/* ---- lifetime ---- */

static void delete_consumer(struct watch *w)
{
	if (w->consumer[0])
		js_consumer_delete(kv_dom(w->bucket), w->stream_name, w->consumer);
	w->consumer[0] = '\0';
}

static void queue_clear(struct watch *w)
{
	struct qitem *q;
	while ((q = w->qhead)) {
		w->qhead = q->next;
		link_msg_destroy(q->msg);
		free(q);
	}
	w->qtail = NULL;
	stream_unhold(&w->st, w->qbytes);
	w->qbytes = 0;
}

static void collected_clear(struct watch *w)
{
	for (size_t i = 0; i < w->n; i++) {
		free((void *)w->entries[i].key);
		free((void *)w->entries[i].value);
	}
	w->n = 0;
	w->bytes = 0;
}

static void watch_free(struct watch *w)
{
	TAILQ_REMOVE(&watches, w, entry);
	link_wait_cancel(w->wait);
	js_cancel(w->create_call);
	delete_consumer(w);
	if (w->retry_timer)
		event_free(w->retry_timer);
	if (w->drain_timer)
		event_free(w->drain_timer);
	queue_clear(w);
	collected_clear(w);
	free(w->entries);
	free(w);
}

/* End a watch once: StreamEnd to the app, or the collector's callback. */
static void watch_end(struct watch *w, Ship__Code code, const char *why)
{
	if (w->mode == W_STREAM && w->st.c) {
		if (!w->answered && code != SHIP__CODE__OK)
			/* Failed before it opened: the request's error is all. */
			client_error(w->st.c, w->st.id, code, "%s",
			             why ? why : "");
		else
			stream_end_send(&w->st, code, false, why, w->delivered,
			                0);
		stream_close(&w->st);
	} else if (w->mode == W_COLLECT && w->fn) {
		struct js_err err = {.code = code};
		snprintf(err.text, sizeof(err.text), "%s", why ? why : "");
		w->fn(w->arg, NULL, 0, &err);
		w->fn = NULL;
	} else if (w->mode == W_FOLLOW && w->ffn) {
		struct js_err err = {.code = code};
		snprintf(err.text, sizeof(err.text), "%s", why ? why : "");
		kv_follow_fn *fn = w->ffn;
		w->ffn = NULL;
		fn(w->arg, NULL, &err);
	}
	watch_free(w);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct watch *w = arg;
	if (link_connected() && !w->wait && !w->create_call)
		create_consumer(w);
}

static void retry_later(struct watch *w)
{
	struct timeval tv = {RETRY_MS / 1000, (RETRY_MS % 1000) * 1000};
	evtimer_add(w->retry_timer, &tv);
}

/* ---- entries to the app ---- */

static void header(Ship__Header *h, Ship__Header **p, const char *k,
                   const char *v)
{
	ship__header__init(h);
	h->key = (char *)k;
	h->value = (char *)v;
	*p = h;
}

static Ship__KvOp op_of(natsMsg *msg)
{
	const char *v = NULL;
	if (natsMsgHeader_Get(msg, "KV-Operation", &v) != NATS_OK || !v)
		return SHIP__KV_OP__KV_PUT;
	if (!strcmp(v, "DEL"))
		return SHIP__KV_OP__KV_DEL;
	if (!strcmp(v, "PURGE"))
		return SHIP__KV_OP__KV_PURGE;
	return SHIP__KV_OP__KV_PUT;
}

static const char *op_name(Ship__KvOp op)
{
	return op == SHIP__KV_OP__KV_DEL     ? "DEL"
	       : op == SHIP__KV_OP__KV_PURGE ? "PURGE"
	                                     : "PUT";
}

static int push_item(struct watch *w, const struct qitem *q)
{
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__Delivery d = SHIP__DELIVERY__INIT;
	Ship__Msg m = SHIP__MSG__INIT;
	Ship__Header hs[4], *hp[4];
	char rev[24], delta[24], created[24];
	if (w->push)
		return w->push(w->st.c, w->st.id, q->msg, q->ns);
	if (q->msg) {
		Ship__KvOp op = op_of(q->msg);
		snprintf(rev, sizeof(rev), "%" PRIu64, q->sseq);
		snprintf(delta, sizeof(delta), "%" PRIu64, q->pending);
		snprintf(created, sizeof(created), "%" PRIu64, q->ns);
		m.subject = (char *)natsMsg_GetSubject(q->msg) + w->prefix_len;
		if (op == SHIP__KV_OP__KV_PUT && !w->meta_only) {
			m.data.data = (uint8_t *)natsMsg_GetData(q->msg);
			m.data.len = (size_t)natsMsg_GetDataLength(q->msg);
		}
		header(&hs[0], &hp[0], "KV-Operation", op_name(op));
		header(&hs[1], &hp[1], "KV-Revision", rev);
		header(&hs[2], &hp[2], "KV-Delta", delta);
		header(&hs[3], &hp[3], "KV-Created", created);
		m.n_headers = 4;
	} else {
		m.subject = "";
		header(&hs[0], &hp[0], "KV-Init-Done", "true");
		m.n_headers = 1;
	}
	m.headers = hp;
	d.msg = &m;
	f.id = w->st.id;
	f.body_case = SHIP__SERVER_FRAME__BODY_DELIVERY;
	f.delivery = &d;
	return client_push(w->st.c, &f);
}

static void answer_fc(struct watch *w)
{
	if (w->fc_reply[0] && link_conn())
		natsConnection_Publish(link_conn(), w->fc_reply, NULL, 0);
	w->fc_reply[0] = '\0';
}

/* Push what waits, oldest first; returns false if the watch ended. */
static bool drain(struct watch *w)
{
	bool moved = false;
	struct qitem *q;
	/* Nothing before the answer: a push is no answer to the opening. */
	if (!w->answered)
		return true;
	while ((q = w->qhead) && push_item(w, q) == 0) {
		w->qhead = q->next;
		if (!w->qhead)
			w->qtail = NULL;
		w->qbytes -= q->bytes;
		stream_unhold(&w->st, q->bytes);
		w->delivered += q->msg != NULL;
		stats.msgs_in += q->msg != NULL;
		link_msg_destroy(q->msg);
		free(q);
		moved = true;
	}
	if (!w->qhead) {
		w->stall_since = 0;
		/* Only now may the server send more. */
		answer_fc(w);
		return true;
	}
	uint64_t now = now_ms();
	if (moved || !w->stall_since)
		w->stall_since = now;
	if (now - w->stall_since > STALL_MS) {
		watch_end(w, SHIP__CODE__RESOURCE_EXHAUSTED,
		          "the app did not take the watch's entries for 30 s");
		return false;
	}
	struct timeval tv = {0, DRAIN_MS * 1000};
	evtimer_add(w->drain_timer, &tv);
	return true;
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
	drain(arg);
}

/* Takes msg (NULL: the marker). Returns false if the watch ended. */
static bool enqueue(struct watch *w, natsMsg *msg, uint64_t sseq,
                    uint64_t pending, uint64_t ns)
{
	struct qitem *q = calloc(1, sizeof(*q));
	if (!q) {
		link_msg_destroy(msg);
		watch_end(w, SHIP__CODE__INTERNAL, "out of memory");
		return false;
	}
	q->msg = msg;
	q->sseq = sseq;
	q->pending = pending;
	q->ns = ns;
	q->bytes = sizeof(*q) + (msg ? (size_t)natsMsg_GetDataLength(msg) + 256 : 0);
	/* What waits here counts against the client's memory too: many
	 * watches of one app that stopped reading stop there. */
	if (!stream_hold(&w->st, q->bytes)) {
		link_msg_destroy(msg);
		free(q);
		watch_end(w, SHIP__CODE__RESOURCE_EXHAUSTED,
		          "the app's watches hold client_memory_limit: ended "
		          "rather than drop entries");
		return false;
	}
	if (w->qtail)
		w->qtail->next = q;
	else
		w->qhead = q;
	w->qtail = q;
	w->qbytes += q->bytes;
	/* Flow control holds the server back while entries wait here, so
	 * this bound is only reached by an app that stopped reading. */
	if (w->qbytes > 4 * (size_t)conf->client_output_limit) {
		watch_end(w, SHIP__CODE__RESOURCE_EXHAUSTED,
		          "the app reads the watch too slowly: ended rather "
		          "than drop entries");
		return false;
	}
	if (w->qhead == q || !evtimer_pending(w->drain_timer, NULL))
		return drain(w);
	return true;
}

/* ---- collecting ---- */

static void collect_done(struct watch *w)
{
	kv_collect_fn *fn = w->fn;
	w->fn = NULL;
	fn(w->arg, w->entries, w->n, NULL);
	watch_free(w);
}

/* Returns false if the watch ended. */
static bool collect_add(struct watch *w, natsMsg *msg, uint64_t sseq,
                        uint64_t pending, uint64_t ns)
{
	const char *key = natsMsg_GetSubject(msg) + w->prefix_len;
	Ship__KvOp op = op_of(msg);
	size_t len = op == SHIP__KV_OP__KV_PUT && !w->meta_only
	                     ? (size_t)natsMsg_GetDataLength(msg)
	                     : 0;
	w->bytes += strlen(key) + len + 64;
	if (w->bytes > w->max_bytes) {
		link_msg_destroy(msg);
		watch_end(w, SHIP__CODE__RESOURCE_EXHAUSTED,
		          "the answer would be over the reply limit: use a narrower "
		          "filter or a watch");
		return false;
	}
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct kv_entry *e = realloc(w->entries, cap * sizeof(*e));
		if (!e) {
			link_msg_destroy(msg);
			watch_end(w, SHIP__CODE__INTERNAL, "out of memory");
			return false;
		}
		w->entries = e;
		w->cap = cap;
	}
	struct kv_entry *e = &w->entries[w->n];
	memset(e, 0, sizeof(*e));
	e->key = strdup(key);
	e->value = len ? malloc(len) : NULL;
	if (!e->key || (len && !e->value)) {
		free((void *)e->key);
		free((void *)e->value);
		link_msg_destroy(msg);
		watch_end(w, SHIP__CODE__INTERNAL, "out of memory");
		return false;
	}
	if (len)
		memcpy((void *)e->value, natsMsg_GetData(msg), len);
	e->len = len;
	e->revision = sseq;
	e->created_ns = ns;
	e->delta = pending;
	e->op = op;
	w->n++;
	link_msg_destroy(msg);
	return true;
}

/* ---- the consumer's messages ---- */

/* js_ack_meta, and only messages a consumer numbered. */
static bool ack_meta(const char *reply, uint64_t *sseq, uint64_t *cseq,
                     uint64_t *ns, uint64_t *pending)
{
	struct js_meta m;
	if (!js_ack_meta(reply, &m))
		return false;
	*sseq = m.stream_seq;
	*cseq = m.consumer_seq;
	*ns = m.time_ns;
	*pending = m.pending;
	return *sseq > 0 && *cseq > 0;
}

/* Start over after the last stream sequence taken. */
static void restart(struct watch *w, const char *why)
{
	log_debug("%s: watch on %s: %s; resuming after %" PRIu64, __func__,
	          w->filter, why, w->last_sseq);
	if (w->mode == W_COLLECT) {
		if (++w->restarts > COLLECT_RESTARTS) {
			watch_end(w, SHIP__CODE__UNAVAILABLE, why);
			return;
		}
		collected_clear(w);
		w->last_sseq = 0;
		w->init_done = false;
	}
	link_wait_cancel(w->wait);
	w->wait = NULL;
	js_cancel(w->create_call);
	w->create_call = NULL;
	delete_consumer(w);
	if (link_connected())
		create_consumer(w);
}

/* One entry to a follower, borrowed for the call. */
static void follow_entry(struct watch *w, natsMsg *msg, uint64_t sseq,
                         uint64_t pending, uint64_t ns)
{
	struct kv_entry e = {
		.key = natsMsg_GetSubject(msg) + w->prefix_len,
		.value = natsMsg_GetData(msg),
		.len = (size_t)natsMsg_GetDataLength(msg),
		.revision = sseq,
		.created_ns = ns,
		.delta = pending,
		.op = op_of(msg),
	};
	w->ffn(w->arg, &e, NULL);
	link_msg_destroy(msg);
}

static void init_done(struct watch *w)
{
	w->init_done = true;
	if (w->mode == W_COLLECT)
		collect_done(w);
	else if (w->mode == W_FOLLOW)
		w->ffn(w->arg, NULL, NULL);
	else if (!w->no_marker)
		enqueue(w, NULL, 0, 0, 0);
}

static void control_msg(struct watch *w, natsMsg *msg, const char *status)
{
	const char *reply = natsMsg_GetReply(msg);
	const char *v = NULL;
	if (strcmp(status, "100") != 0) {
		/* 409 Consumer Deleted and the like. */
		link_msg_destroy(msg);
		restart(w, "the consumer went away");
		return;
	}
	if (reply && *reply) {
		/* Flow control: answered once what came before is handed
		 * to the app. */
		snprintf(w->fc_reply, sizeof(w->fc_reply), "%s", reply);
		if (!w->qhead)
			answer_fc(w);
		link_msg_destroy(msg);
		return;
	}
	if (natsMsgHeader_Get(msg, "Nats-Consumer-Stalled", &v) == NATS_OK && v &&
	    link_conn())
		natsConnection_Publish(link_conn(), v, NULL, 0);
	v = NULL;
	natsMsgHeader_Get(msg, "Nats-Last-Consumer", &v);
	uint64_t last = v ? strtoull(v, NULL, 10) : 0;
	link_msg_destroy(msg);
	if (last > w->cseq)
		restart(w, "missed messages (heartbeat says so)");
}

static void on_msg(void *arg, natsMsg *msg, natsStatus st)
{
	struct watch *w = arg;
	if (st != NATS_OK) {
		w->wait = NULL; /* gone */
		if (st == NATS_CONNECTION_DISCONNECTED && !link_connected()) {
			if (w->mode == W_COLLECT)
				watch_end(w, SHIP__CODE__UNAVAILABLE,
				          "NATS connection lost");
			return; /* resumed when the link is back */
		}
		restart(w, st == NATS_TIMEOUT ? "no heartbeat" : "no responders");
		return;
	}
	link_wait_rearm(w->wait, HB_MISS_MS);
	const char *status = NULL;
	if (natsMsgHeader_Get(msg, "Status", &status) == NATS_OK && status) {
		control_msg(w, msg, status);
		return;
	}
	uint64_t sseq, cseq, ns, pending;
	if (!ack_meta(natsMsg_GetReply(msg), &sseq, &cseq, &ns, &pending) ||
	    strlen(natsMsg_GetSubject(msg)) <= w->prefix_len) {
		link_msg_destroy(msg);
		return;
	}
	if (cseq != w->cseq + 1) {
		link_msg_destroy(msg);
		restart(w, "gap in the consumer sequence");
		return;
	}
	w->cseq = cseq;
	if (sseq <= w->last_sseq) {
		link_msg_destroy(msg); /* seen before a restart */
	} else {
		w->last_sseq = sseq;
		bool skip = w->skip ? w->skip(msg, w->ignore_deletes)
		                    : w->ignore_deletes &&
		                              op_of(msg) != SHIP__KV_OP__KV_PUT;
		bool alive;
		if (skip) {
			link_msg_destroy(msg);
			alive = true;
		} else if (w->mode == W_COLLECT) {
			alive = collect_add(w, msg, sseq, pending, ns);
		} else if (w->mode == W_FOLLOW) {
			follow_entry(w, msg, sseq, pending, ns);
			alive = true;
		} else {
			alive = enqueue(w, msg, sseq, pending, ns);
		}
		if (!alive)
			return;
	}
	if (!w->init_done && pending == 0)
		init_done(w);
}

/* ---- creating the consumer ---- */

static void on_created(void *arg, json_t *reply, const struct js_err *e)
{
	struct watch *w = arg;
	w->create_call = NULL;
	if (e) {
		char why[320];
		if (e->err_code == 10059 || e->code == SHIP__CODE__NOT_FOUND) {
			snprintf(why, sizeof(why), "bucket '%s' not found", w->bucket);
			watch_end(w, SHIP__CODE__NOT_FOUND, why);
			return;
		}
		if (w->mode == W_COLLECT || !w->answered) {
			watch_end(w, e->code, e->text);
			return;
		}
		link_wait_cancel(w->wait);
		w->wait = NULL;
		if (link_connected())
			retry_later(w);
		return;
	}
	const char *name = json_string_value(json_object_get(reply, "name"));
	snprintf(w->consumer, sizeof(w->consumer), "%s", name ? name : "");
	uint64_t pending =
		(uint64_t)json_integer_value(json_object_get(reply, "num_pending"));
	if (w->updates_only) {
		/* "new" starts after what the stream held: resume from there. */
		uint64_t start = (uint64_t)json_integer_value(json_object_get(
			json_object_get(reply, "delivered"), "stream_seq"));
		if (start > w->last_sseq)
			w->last_sseq = start;
	}
	if (w->mode == W_STREAM && !w->answered) {
		w->answered = true;
		client_ok(w->st.c, w->st.id);
		if (w->qhead && !drain(w))
			return;
	}
	if (!w->init_done && pending == 0 && w->cseq == 0)
		init_done(w);
}

static void create_consumer(struct watch *w)
{
	char what[KV_NAME_MAX + 32];
	w->cseq = 0;
	w->wait = link_wait_new(HB_MISS_MS, true, on_msg, w);
	if (!w->wait) {
		retry_later(w);
		return;
	}
	json_t *cfg = json_pack(
		"{s:s, s:s, s:i, s:I, s:s, s:b, s:I, s:b, s:b, s:i, s:I}",
		"deliver_subject", link_wait_inbox(w->wait), "ack_policy", "none",
		"max_deliver", 1, "ack_wait", (json_int_t)79200 * 1000000000,
		"replay_policy", "instant", "flow_control", 1, "idle_heartbeat",
		(json_int_t)HEARTBEAT_NS, "headers_only", w->meta_only,
		"mem_storage", 1, "num_replicas", 1, "inactive_threshold",
		(json_int_t)INACTIVE_NS);
	if (cfg) {
		json_object_set_new(cfg, "filter_subject", json_string(w->filter));
		if (w->last_sseq) {
			json_object_set_new(cfg, "deliver_policy",
			                    json_string("by_start_sequence"));
			json_object_set_new(cfg, "opt_start_seq",
			                    json_integer((json_int_t)w->last_sseq + 1));
		} else {
			json_object_set_new(cfg, "deliver_policy",
			                    json_string(w->include_history ? "all"
			                                : w->updates_only
			                                        ? "new"
			                                        : "last_per_subject"));
		}
	}
	json_t *body = json_pack("{s:s, s:o}", "stream_name", w->stream_name,
	                         "config", cfg);
	snprintf(what, sizeof(what), "CONSUMER.CREATE.%s", w->stream_name);
	w->create_call = js_api_in(kv_dom(w->bucket), what, body,
	                           API_TIMEOUT_MS, on_created, w);
	if (!w->create_call) {
		link_wait_cancel(w->wait);
		w->wait = NULL;
		retry_later(w);
	}
}

static struct watch *watch_new(enum wmode mode, const struct kv_watch_spec *s)
{
	struct watch *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->mode = mode;
	snprintf(w->bucket, sizeof(w->bucket), "%s", s->bucket);
	snprintf(w->stream_name, sizeof(w->stream_name), "KV_%s", s->bucket);
	snprintf(w->filter, sizeof(w->filter), "$KV.%s.%s", s->bucket,
	         s->pattern && s->pattern[0] ? s->pattern : ">");
	w->prefix_len = 5 + strlen(s->bucket);
	w->include_history = s->include_history;
	w->updates_only = s->updates_only;
	w->ignore_deletes = s->ignore_deletes;
	w->meta_only = s->meta_only;
	w->retry_timer = evtimer_new(base, retry_cb, w);
	w->drain_timer = evtimer_new(base, drain_cb, w);
	if (!w->retry_timer || !w->drain_timer) {
		if (w->retry_timer)
			event_free(w->retry_timer);
		if (w->drain_timer)
			event_free(w->drain_timer);
		free(w);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&watches, w, entry);
	return w;
}

/* ---- the module's interface ---- */

static void watch_stream_end(struct stream *st)
{
	watch_end(container_of(st, struct watch, st), SHIP__CODE__OK, NULL);
}

static void watch_stream_gone(struct stream *st)
{
	watch_free(container_of(st, struct watch, st));
}

static const struct stream_kind watch_kind = {
	.name = "watch",
	.end = watch_stream_end,
	.gone = watch_stream_gone,
};

/* A watch as stream id of c; NULL if refused (answered). */
static struct watch *open_new(struct client *c, uint64_t id,
                              const struct kv_watch_spec *s)
{
	if (!link_connected()) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE,
		             "NATS is not connected (%s)",
		             link_state_name(link_info()->state));
		return NULL;
	}
	struct watch *w = watch_new(W_STREAM, s);
	if (!w) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	if (!stream_open(&w->st, &watch_kind, c, id)) {
		watch_free(w);
		return NULL;
	}
	return w;
}

void kvwatch_open_stream(struct client *c, uint64_t id,
                         const struct stream_watch_spec *s)
{
	struct kv_watch_spec ks = {
		.bucket = s->bucket,
		.include_history = s->include_history,
		.updates_only = s->updates_only,
		.ignore_deletes = s->ignore_deletes,
	};
	struct watch *w = open_new(c, id, &ks);
	if (!w)
		return;
	snprintf(w->stream_name, sizeof(w->stream_name), "%s", s->stream);
	snprintf(w->filter, sizeof(w->filter), "%s", s->filter);
	w->prefix_len = s->prefix_len;
	w->push = s->push;
	w->skip = s->skip;
	w->no_marker = s->no_marker;
	log_debug("%s: client %" PRIu64 " watch %" PRIu64 " on %s", __func__,
	          c->cid, id, w->filter);
	create_consumer(w);
}

void kvwatch_open(struct client *c, uint64_t id, const struct kv_watch_spec *s)
{
	struct watch *w = open_new(c, id, s);
	if (!w)
		return;
	log_debug("%s: client %" PRIu64 " watch %" PRIu64 " on %s", __func__,
	          c->cid, id, w->filter);
	create_consumer(w);
}

int kvwatch_stop(struct client *c, uint64_t id)
{
	struct stream *st = stream_find(c, id, &watch_kind);
	if (!st)
		return -1;
	watch_end(container_of(st, struct watch, st), SHIP__CODE__OK, NULL);
	return 0;
}

struct kv_collect *kv_collect(const struct kv_watch_spec *s, size_t max_bytes,
                              kv_collect_fn *fn, void *arg)
{
	if (!link_connected())
		return NULL;
	struct watch *w = watch_new(W_COLLECT, s);
	if (!w)
		return NULL;
	w->fn = fn;
	w->arg = arg;
	w->max_bytes = max_bytes;
	create_consumer(w);
	return (struct kv_collect *)w;
}

void kv_collect_cancel(struct kv_collect *k)
{
	if (k && !finished)
		watch_free((struct watch *)k);
}

struct kv_follow *kv_follow(const struct kv_watch_spec *s, kv_follow_fn *fn,
                            void *arg)
{
	struct watch *w = watch_new(W_FOLLOW, s);
	if (!w)
		return NULL;
	w->ffn = fn;
	w->arg = arg;
	w->answered = true; /* errors but "not found" are retried */
	if (link_connected())
		create_consumer(w);
	return (struct kv_follow *)w;
}

void kv_follow_cancel(struct kv_follow *k)
{
	/* After kvwatch_finish (the KV block finishes before the ones that
	 * follow buckets) every follow is freed already. */
	if (k && !finished)
		watch_free((struct watch *)k);
}

void kvwatch_link_changed(bool up)
{
	struct watch *w, *tmp;
	TAILQ_FOREACH_SAFE(w, &watches, entry, tmp) {
		if (!up) {
			js_cancel(w->create_call);
			w->create_call = NULL;
			link_wait_cancel(w->wait);
			w->wait = NULL;
			w->consumer[0] = '\0'; /* the server drops it by itself */
			if (w->mode == W_COLLECT)
				watch_end(w, SHIP__CODE__UNAVAILABLE,
				          "NATS connection lost");
			continue;
		}
		if (!w->wait && !w->create_call)
			create_consumer(w);
	}
}

void kvwatch_finish(void)
{
	struct watch *w;
	finished = true;
	while ((w = TAILQ_FIRST(&watches))) {
		stream_close(&w->st);
		w->fn = NULL;
		w->ffn = NULL;
		watch_free(w);
	}
}
