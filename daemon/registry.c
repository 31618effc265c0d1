/* SPDX-License-Identifier: MIT */
/* noesis-ship's KV stores: the being registry (beings_status) with
 * compare-and-swap updates and keep-alive, ship_config and ship_health. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shipd.h"

#define BEINGS "beings_status"
#define CONFIG "ship_config"
#define HEALTH "ship_health"
#define STORE_HISTORY 5
#define CAS_TRIES 32
#define KEEPALIVE_MS 30000
#define KEEPALIVE_MIN_MS 100
/* Beings one client keeps alive, and all clients together: each is a
 * timer and a KV write per interval. */
#define KEEPALIVES_PER_CLIENT 64
#define KEEPALIVES_MAX 4096
#define ONLINE_MS 90000
#define LIST_MAX_BYTES (4u << 20)

enum rkind { R_BEING, R_STORE };

struct keepalive {
	TAILQ_ENTRY(keepalive) entry;
	struct client *c;
	char being[IPC_SUBJECT_MAX + 1];
	struct event *timer;
	uint32_t interval_ms;
	struct rop *beat; /* the heartbeat in flight */
};

struct rop {
	TAILQ_ENTRY(rop) entry;
	struct op base;   /* base.c NULL: shipd's own (keep-alive, offline) */
	struct event *backoff; /* a CAS retry waiting its turn */
	enum rkind kind;
	bool gone;        /* the app left: finish quietly */
	int op;           /* Ship__BeingOp or Ship__StoreOp */
	const char *bucket;
	char key[IPC_SUBJECT_MAX + 1];
	char *state;
	char *task;
	bool has_task;
	json_t *caps;
	char *value;      /* store: JSON text */
	bool has_default;
	bool all;
	uint32_t threshold_ms;
	int tries;
	bool ensuring;
	struct kv_req *req;
	struct kv_collect *coll;
	struct keepalive *ka;
};

static TAILQ_HEAD(, rop) rops = TAILQ_HEAD_INITIALIZER(rops);
static TAILQ_HEAD(, keepalive) kas = TAILQ_HEAD_INITIALIZER(kas);
static unsigned n_kas;
static bool ensured[3]; /* beings, config, health */

static void step(struct rop *o);
static void rop_cancel(struct op *op);

static int store_index(const char *bucket)
{
	return !strcmp(bucket, BEINGS) ? 0 : !strcmp(bucket, CONFIG) ? 1 : 2;
}

/* ---- lifetime ---- */

static struct rop *rop_new(struct client *c, uint64_t id, enum rkind kind,
                           int op, const char *bucket, const char *key)
{
	struct rop *o = calloc(1, sizeof(*o));
	if (!o) {
		if (c)
			client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	if (c && !op_begin(&o->base, c, id, rop_cancel)) {
		free(o);
		return NULL;
	}
	o->kind = kind;
	o->op = op;
	o->bucket = bucket;
	snprintf(o->key, sizeof(o->key), "%s", key ? key : "");
	TAILQ_INSERT_TAIL(&rops, o, entry);
	return o;
}

static void rop_free(struct rop *o)
{
	TAILQ_REMOVE(&rops, o, entry);
	op_end(&o->base);
	if (o->ka && o->ka->beat == o)
		o->ka->beat = NULL;
	kv_req_cancel(o->req);
	kv_collect_cancel(o->coll);
	if (o->backoff)
		event_free(o->backoff);
	free(o->state);
	free(o->task);
	free(o->value);
	json_decref(o->caps);
	free(o);
}

/* The app left: finish quietly. One in kv_ensure cannot be stopped: its
 * callback frees it. */
static void rop_cancel(struct op *op)
{
	struct rop *o = container_of(op, struct rop, base);
	o->gone = true;
	if (o->ka) {
		if (o->ka->beat == o)
			o->ka->beat = NULL;
		o->ka = NULL;
	}
	if (!o->ensuring)
		rop_free(o);
}

static void backoff_cb(evutil_socket_t fd, short what, void *arg)
{
	step(arg);
}

static void reply_js_error(struct rop *o, const struct js_err *e)
{
	if (o->base.c)
		client_js_error(o->base.c, o->base.id, e);
	else if (e->code != SHIP__CODE__OK)
		log_debug("registry: %s %s: %s", o->bucket, o->key, e->text);
}

static void reply_error(struct rop *o, Ship__Code code, const char *text)
{
	struct js_err e = {.code = code};
	snprintf(e.text, sizeof(e.text), "%s", text);
	reply_js_error(o, &e);
}

static void ka_free(struct keepalive *k);

static void rop_fail(struct rop *o, const struct js_err *e)
{
	/* A keep-alive whose first heartbeat failed is not kept. */
	struct keepalive *k = o->op == SHIP__BEING_OP__BEING_KEEPALIVE &&
	                                      o->kind == R_BEING
	                              ? o->ka
	                              : NULL;
	reply_js_error(o, e);
	rop_free(o);
	if (k)
		ka_free(k);
}

static void on_ensured(void *arg, const struct js_err *e)
{
	struct rop *o = arg;
	o->ensuring = false;
	if (o->gone) {
		rop_free(o);
		return;
	}
	if (e) {
		/* The store's own write was never sent: its outcome is
		 * known, whatever became of the bucket. */
		struct js_err known = *e;
		known.unknown = false;
		rop_fail(o, &known);
		return;
	}
	ensured[store_index(o->bucket)] = true;
	step(o);
}

static void start(struct rop *o)
{
	int i = store_index(o->bucket);
	if (ensured[i]) {
		step(o);
		return;
	}
	/* noesis-ship's get-or-create: an existing bucket is used as it is. */
	uint64_t ttl = i == 0 ? 300000 : i == 2 ? 120000 : 0;
	o->ensuring = true;
	if (kv_ensure(o->bucket, STORE_HISTORY, ttl, true, on_ensured, o) < 0) {
		o->ensuring = false;
		struct js_err e = {.code = SHIP__CODE__UNAVAILABLE};
		snprintf(e.text, sizeof(e.text), "NATS is not connected (%s)",
		         link_state_name(link_info()->state));
		rop_fail(o, &e);
	}
}

/* ---- BeingStatus JSON ---- */

static json_t *being_new(const char *id, json_t *caps)
{
	char ts[64];
	events_timestamp(ts, sizeof(ts));
	json_t *j = json_object();
	/* noesis-ship's field order; every field present, nulls written. */
	json_object_set_new(j, "being_id", json_string(id));
	json_object_set_new(j, "state", json_string("idle"));
	json_object_set_new(j, "current_task", json_null());
	json_object_set_new(j, "last_heartbeat", json_string(ts));
	json_object_set_new(j, "uptime_seconds", json_integer(0));
	json_object_set_new(j, "memory_mb", json_null());
	json_object_set(j, "capabilities", caps ? caps : json_array());
	json_object_set_new(j, "metadata", json_null());
	if (!caps)
		json_decref(json_object_get(j, "capabilities"));
	return j;
}

static bool state_valid(const char *s)
{
	return s && (!strcmp(s, "idle") || !strcmp(s, "working") ||
	             !strcmp(s, "blocked") || !strcmp(s, "offline"));
}

static bool online(json_t *j, uint32_t threshold_ms)
{
	const char *state = json_string_value(json_object_get(j, "state"));
	uint64_t hb = kv_parse_time_ns(
		json_string_value(json_object_get(j, "last_heartbeat")));
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	uint64_t win = (uint64_t)(threshold_ms ? threshold_ms : ONLINE_MS) * 1000000;
	return state && strcmp(state, "offline") != 0 && hb && hb + win >= now;
}

/* Fill b from j (strings borrowed from j and text). */
static void being_view(Ship__BeingStatus *b, json_t *j, const char *text,
                       uint64_t rev, uint32_t threshold_ms, char **caps,
                       char *meta)
{
	ship__being_status__init(b);
	const char *s;
	json_t *v;
	b->being_id = (char *)((s = json_string_value(json_object_get(j, "being_id"))) ? s : "");
	b->state = (char *)((s = json_string_value(json_object_get(j, "state"))) ? s : "");
	s = json_string_value(json_object_get(j, "current_task"));
	b->current_task = (char *)(s ? s : "");
	b->has_task = s != NULL;
	b->last_heartbeat = (char *)((s = json_string_value(json_object_get(j, "last_heartbeat"))) ? s : "");
	b->uptime_seconds = (uint64_t)json_integer_value(json_object_get(j, "uptime_seconds"));
	v = json_object_get(j, "memory_mb");
	b->has_memory = json_is_number(v);
	b->memory_mb = json_number_value(v);
	json_t *arr = json_object_get(j, "capabilities");
	size_t n = 0;
	for (size_t i = 0; caps && i < json_array_size(arr) && i < 64; i++)
		if ((s = json_string_value(json_array_get(arr, i))))
			caps[n++] = (char *)s;
	b->capabilities = caps;
	b->n_capabilities = n;
	b->metadata_json = meta ? meta : "";
	b->online = online(j, threshold_ms);
	b->revision = rev;
	b->json = (char *)text;
}

static void send_beings(struct rop *o, json_t **objs, const char **texts,
                        const uint64_t *revs, size_t n)
{
	Ship__BeingStatus *bs = calloc(n ? n : 1, sizeof(*bs));
	Ship__BeingStatus **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	char **caps = calloc(n ? n * 64 : 1, sizeof(*caps));
	char **metas = calloc(n ? n : 1, sizeof(*metas));
	if (!bs || !ptrs || !caps || !metas) {
		reply_error(o, SHIP__CODE__INTERNAL, "out of memory");
		n = 0;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *m = json_object_get(objs[i], "metadata");
		metas[i] = m && !json_is_null(m)
		                   ? json_dumps(m, JSON_COMPACT | JSON_ENCODE_ANY)
		                   : NULL;
		being_view(&bs[i], objs[i], texts[i], revs[i], o->threshold_ms,
		           caps + i * 64, metas[i]);
		ptrs[i] = &bs[i];
	}
	if (bs && ptrs && caps && metas && o->base.c) {
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__BeingsReply r = SHIP__BEINGS_REPLY__INIT;
		r.n_beings = n;
		r.beings = ptrs;
		f.id = o->base.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_BEINGS;
		f.beings = &r;
		client_send(o->base.c, &f);
	}
	for (size_t i = 0; metas && i < n; i++)
		free(metas[i]);
	free(bs);
	free(ptrs);
	free(caps);
	free(metas);
}

static void send_one_being(struct rop *o, json_t *j, uint64_t rev)
{
	char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	const char *t = text ? text : "";
	send_beings(o, &j, &t, &rev, 1);
	free(text);
}

/* ---- being operations ---- */

static void being_written(void *arg, uint64_t rev, const struct js_err *e);

static int write_json(struct rop *o, json_t *j, int op, uint64_t expected)
{
	struct js_err err;
	char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!text) {
		err.code = SHIP__CODE__INTERNAL;
		snprintf(err.text, sizeof(err.text), "cannot write JSON");
		rop_fail(o, &err);
		return -1;
	}
	free(o->value);
	o->value = text;
	o->req = kv_put(o->bucket, o->key, op, text, strlen(text), expected,
	                being_written, o, &err);
	if (!o->req) {
		rop_fail(o, &err);
		return -1;
	}
	return 0;
}

static void being_written(void *arg, uint64_t rev, const struct js_err *e)
{
	struct rop *o = arg;
	o->req = NULL;
	if (e && e->code == SHIP__CODE__WRONG_REVISION && o->tries < CAS_TRIES) {
		/* Someone else changed it between our read and write: read
		 * their change and apply ours on top; after a few lost races,
		 * wait a random while so the writers fall out of step. */
		o->tries++;
		if (o->tries > 2 &&
		    (o->backoff || (o->backoff = evtimer_new(base, backoff_cb, o)))) {
			unsigned span = 1u << (o->tries < 7 ? o->tries : 7);
			struct timeval tv = {0, (suseconds_t)(rand() % span) * 1000};
			evtimer_add(o->backoff, &tv);
			return;
		}
		step(o);
		return;
	}
	if (e && e->code == SHIP__CODE__NOT_FOUND && strstr(e->text, "bucket"))
		ensured[store_index(o->bucket)] = false;
	if (e) {
		rop_fail(o, e);
		return;
	}
	if (o->kind == R_STORE) {
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__KvEntries ke = SHIP__KV_ENTRIES__INIT;
		Ship__KvEntry pe = SHIP__KV_ENTRY__INIT, *pp = &pe;
		pe.bucket = (char *)o->bucket;
		pe.key = o->key;
		pe.value.data = (uint8_t *)o->value;
		pe.value.len = strlen(o->value);
		pe.revision = rev;
		ke.n_entries = 1;
		ke.entries = &pp;
		f.id = o->base.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_KV_ENTRIES;
		f.kv_entries = &ke;
		if (o->base.c)
			client_send(o->base.c, &f);
	} else if (o->op == SHIP__BEING_OP__BEING_UNREGISTER ||
	           o->op == SHIP__BEING_OP__BEING_KEEPALIVE) {
		if (o->base.c)
			client_ok(o->base.c, o->base.id);
	} else {
		json_t *j = json_loads(o->value, 0, NULL);
		if (o->base.c)
			send_one_being(o, j, rev);
		json_decref(j);
	}
	rop_free(o);
}

/* Apply this operation's change to the stored status. */
static void modify(struct rop *o, json_t *j)
{
	char ts[64];
	events_timestamp(ts, sizeof(ts));
	json_object_set_new(j, "last_heartbeat", json_string(ts));
	if (o->op != SHIP__BEING_OP__BEING_UPDATE)
		return;
	json_object_set_new(j, "state", json_string(o->state));
	json_object_set_new(j, "current_task",
	                    o->has_task ? json_string(o->task) : json_null());
}

static void being_read(void *arg, const struct kv_entry *e,
                       const struct js_err *err)
{
	struct rop *o = arg;
	o->req = NULL;
	struct js_err nf = {.code = SHIP__CODE__NOT_FOUND};
	if (e && e->op != SHIP__KV_OP__KV_PUT) {
		snprintf(nf.text, sizeof(nf.text), "being '%.64s' is not registered",
		         o->key);
		err = &nf;
		e = NULL;
	}
	if (!e) {
		if (err->code == SHIP__CODE__NOT_FOUND && strstr(err->text, "key"))
			snprintf(nf.text, sizeof(nf.text),
			         "being '%.64s' is not registered", o->key);
		else
			nf = *err;
		rop_fail(o, &nf);
		return;
	}
	json_t *j = json_loadb(e->value, e->len, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		struct js_err be = {.code = SHIP__CODE__INTERNAL};
		snprintf(be.text, sizeof(be.text),
		         "being '%.64s' holds a value that is not BeingStatus JSON",
		         o->key);
		rop_fail(o, &be);
		return;
	}
	if (o->op == SHIP__BEING_OP__BEING_GET) {
		send_one_being(o, j, e->revision);
		json_decref(j);
		rop_free(o);
		return;
	}
	modify(o, j);
	write_json(o, j, SHIP__KV_WRITE_OP__KV_WRITE_UPDATE, e->revision);
	json_decref(j);
}

static void beings_listed(void *arg, const struct kv_entry *es, size_t n,
                          const struct js_err *err)
{
	struct rop *o = arg;
	o->coll = NULL;
	if (err) {
		rop_fail(o, err);
		return;
	}
	json_t **objs = calloc(n ? n : 1, sizeof(*objs));
	const char **texts = calloc(n ? n : 1, sizeof(*texts));
	char **bufs = calloc(n ? n : 1, sizeof(*bufs));
	uint64_t *revs = calloc(n ? n : 1, sizeof(*revs));
	size_t k = 0;
	for (size_t i = 0; objs && texts && bufs && revs && i < n; i++) {
		json_t *j = json_loadb(es[i].value, es[i].len, 0, NULL);
		if (!json_is_object(j) || (!o->all && !online(j, o->threshold_ms))) {
			json_decref(j);
			continue;
		}
		bufs[k] = strndup(es[i].value, es[i].len);
		texts[k] = bufs[k] ? bufs[k] : "";
		revs[k] = es[i].revision;
		objs[k++] = j;
	}
	send_beings(o, objs, texts, revs, k);
	for (size_t i = 0; i < k; i++) {
		json_decref(objs[i]);
		free(bufs[i]);
	}
	free(objs);
	free(texts);
	free(bufs);
	free(revs);
	rop_free(o);
}

static void being_step(struct rop *o)
{
	struct js_err err;
	switch (o->op) {
	case SHIP__BEING_OP__BEING_REGISTER: {
		json_t *j = being_new(o->key, o->caps);
		write_json(o, j, SHIP__KV_WRITE_OP__KV_WRITE_PUT, 0);
		json_decref(j);
		return;
	}
	case SHIP__BEING_OP__BEING_UNREGISTER:
		o->req = kv_put(o->bucket, o->key, SHIP__KV_WRITE_OP__KV_WRITE_DELETE,
		                NULL, 0, 0, being_written, o, &err);
		if (!o->req)
			rop_fail(o, &err);
		return;
	case SHIP__BEING_OP__BEING_LIST: {
		struct kv_watch_spec spec = {.bucket = o->bucket,
		                             .ignore_deletes = true};
		o->coll = kv_collect(&spec, LIST_MAX_BYTES, beings_listed, o);
		if (!o->coll) {
			err.code = SHIP__CODE__UNAVAILABLE;
			snprintf(err.text, sizeof(err.text), "NATS is not connected");
			rop_fail(o, &err);
		}
		return;
	}
	default: /* GET, UPDATE, HEARTBEAT, KEEPALIVE: read first */
		o->req = kv_get(o->bucket, o->key, 0, being_read, o, &err);
		if (!o->req)
			rop_fail(o, &err);
		return;
	}
}

/* ---- ship_config and ship_health ---- */

static void store_entries(struct rop *o, const struct kv_entry *es, size_t n)
{
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__KvEntries ke = SHIP__KV_ENTRIES__INIT;
	Ship__KvEntry *pes = calloc(n ? n : 1, sizeof(*pes));
	Ship__KvEntry **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	if (!pes || !ptrs) {
		reply_error(o, SHIP__CODE__INTERNAL, "out of memory");
	} else if (o->base.c) {
		for (size_t i = 0; i < n; i++) {
			ship__kv_entry__init(&pes[i]);
			pes[i].bucket = (char *)o->bucket;
			pes[i].key = (char *)es[i].key;
			pes[i].value.data = (uint8_t *)es[i].value;
			pes[i].value.len = es[i].len;
			pes[i].revision = es[i].revision;
			pes[i].created_ns = es[i].created_ns;
			ptrs[i] = &pes[i];
		}
		ke.n_entries = n;
		ke.entries = ptrs;
		f.id = o->base.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_KV_ENTRIES;
		f.kv_entries = &ke;
		client_send(o->base.c, &f);
	}
	free(pes);
	free(ptrs);
}

static void store_read(void *arg, const struct kv_entry *e,
                       const struct js_err *err)
{
	struct rop *o = arg;
	o->req = NULL;
	if (e && e->op == SHIP__KV_OP__KV_PUT) {
		store_entries(o, e, 1);
	} else if (e || err->code == SHIP__CODE__NOT_FOUND) {
		if (o->has_default) {
			struct kv_entry d = {.key = o->key, .value = o->value,
			                     .len = strlen(o->value)};
			store_entries(o, &d, 1);
		} else {
			reply_error(o, SHIP__CODE__NOT_FOUND, "key not found");
		}
	} else {
		reply_js_error(o, err);
	}
	rop_free(o);
}

static void store_listed(void *arg, const struct kv_entry *es, size_t n,
                         const struct js_err *err)
{
	struct rop *o = arg;
	o->coll = NULL;
	if (err) {
		rop_fail(o, err);
		return;
	}
	if (o->op == SHIP__STORE_OP__STORE_LIST) {
		store_entries(o, es, n);
	} else if (o->base.c) {
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__KvKeysReply kr = SHIP__KV_KEYS_REPLY__INIT;
		char **keys = calloc(n ? n : 1, sizeof(*keys));
		for (size_t i = 0; keys && i < n; i++)
			keys[i] = (char *)es[i].key;
		kr.n_keys = keys ? n : 0;
		kr.keys = keys;
		f.id = o->base.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_KV_KEYS;
		f.kv_keys = &kr;
		client_send(o->base.c, &f);
		free(keys);
	}
	rop_free(o);
}

static void store_step(struct rop *o)
{
	struct js_err err;
	if (o->op == SHIP__STORE_OP__STORE_GET) {
		o->req = kv_get(o->bucket, o->key, 0, store_read, o, &err);
	} else if (o->op == SHIP__STORE_OP__STORE_SET) {
		o->req = kv_put(o->bucket, o->key, SHIP__KV_WRITE_OP__KV_WRITE_PUT,
		                o->value, strlen(o->value), 0, being_written, o,
		                &err);
	} else {
		struct kv_watch_spec spec = {
			.bucket = o->bucket,
			.ignore_deletes = true,
			.meta_only = o->op == SHIP__STORE_OP__STORE_KEYS};
		o->coll = kv_collect(&spec, LIST_MAX_BYTES, store_listed, o);
		if (o->coll)
			return;
		err.code = SHIP__CODE__UNAVAILABLE;
		snprintf(err.text, sizeof(err.text), "NATS is not connected");
	}
	if (!o->req)
		rop_fail(o, &err);
}

static void step(struct rop *o)
{
	if (o->kind == R_BEING)
		being_step(o);
	else
		store_step(o);
}

/* ---- keep-alive ---- */

static void ka_free(struct keepalive *k)
{
	TAILQ_REMOVE(&kas, k, entry);
	n_kas--;
	if (k->beat)
		k->beat->ka = NULL;
	event_free(k->timer);
	free(k);
}

static void ka_beat(evutil_socket_t fd, short what, void *arg)
{
	struct keepalive *k = arg;
	struct timeval tv = {k->interval_ms / 1000, (k->interval_ms % 1000) * 1000};
	evtimer_add(k->timer, &tv);
	if (k->beat || !link_connected())
		return;
	struct rop *o = rop_new(NULL, 0, R_BEING, SHIP__BEING_OP__BEING_HEARTBEAT,
	                        BEINGS, k->being);
	if (!o)
		return;
	o->ka = k;
	k->beat = o;
	start(o);
}

/* The app is gone: mark its beings offline (compare-and-swap too). */
static void ka_offline(struct keepalive *k)
{
	struct rop *o = rop_new(NULL, 0, R_BEING, SHIP__BEING_OP__BEING_UPDATE,
	                        BEINGS, k->being);
	if (!o)
		return;
	o->state = strdup("offline");
	if (!o->state) {
		rop_free(o);
		return;
	}
	log_info("being %s: its app left; marking it offline", k->being);
	start(o);
}

/* ---- requests ---- */

static bool check_being(struct client *c, uint64_t id, const char *b)
{
	if (kv_key_valid(b))
		return true;
	client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
	             "invalid being id '%.64s' (a KV key: letters, digits and "
	             "-/_=. only)",
	             b);
	return false;
}

static struct keepalive *ka_find(struct client *c, const char *being)
{
	struct keepalive *k;
	TAILQ_FOREACH(k, &kas, entry)
		if (k->c == c && !strcmp(k->being, being))
			return k;
	return NULL;
}

static bool ka_budget(struct client *c, uint64_t id)
{
	unsigned mine = 0;
	struct keepalive *k;
	TAILQ_FOREACH(k, &kas, entry)
		mine += k->c == c;
	if (mine < KEEPALIVES_PER_CLIENT && n_kas < KEEPALIVES_MAX)
		return true;
	client_error(c, id, SHIP__CODE__RESOURCE_EXHAUSTED,
	             "%u keep-alives for this client, %u in all: the limits are "
	             "%d and %d",
	             mine, n_kas, KEEPALIVES_PER_CLIENT, KEEPALIVES_MAX);
	return false;
}

static void keepalive_start(struct client *c, uint64_t id,
                            const Ship__BeingRequest *r)
{
	if (ka_find(c, r->being_id)) {
		client_ok(c, id);
		return;
	}
	if (!ka_budget(c, id))
		return;
	struct keepalive *k = calloc(1, sizeof(*k));
	if (!k || !(k->timer = evtimer_new(base, ka_beat, k))) {
		free(k);
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	k->c = c;
	k->interval_ms = r->interval_ms ? r->interval_ms : KEEPALIVE_MS;
	if (k->interval_ms < KEEPALIVE_MIN_MS)
		k->interval_ms = KEEPALIVE_MIN_MS;
	snprintf(k->being, sizeof(k->being), "%s", r->being_id);
	TAILQ_INSERT_TAIL(&kas, k, entry);
	n_kas++;
	struct timeval tv = {k->interval_ms / 1000, (k->interval_ms % 1000) * 1000};
	evtimer_add(k->timer, &tv);
	/* The first heartbeat answers the app (NOT_FOUND if unregistered). */
	struct rop *o = rop_new(c, id, R_BEING, SHIP__BEING_OP__BEING_KEEPALIVE,
	                        BEINGS, r->being_id);
	if (!o) {
		ka_free(k);
		return;
	}
	o->ka = k;
	k->beat = o;
	start(o);
}

/* Reading the registry is reading its bucket; changing a being, or
 * keeping it alive, is acting as that being. Stopping a keep-alive is
 * always allowed: it is the app's own. */
static bool being_allowed(struct client *c, uint64_t id,
                          const Ship__BeingRequest *r)
{
	switch (r->op) {
	case SHIP__BEING_OP__BEING_GET:
	case SHIP__BEING_OP__BEING_LIST:
		return client_allowed(c, id, POL_KV_READ, BEINGS);
	case SHIP__BEING_OP__BEING_KEEPALIVE_STOP:
		return true;
	default:
		return client_allowed(c, id, POL_BEING, r->being_id);
	}
}

static void handle_being(struct client *c, uint64_t id,
                         const Ship__BeingRequest *r)
{
	if (r->op == SHIP__BEING_OP__BEING_LIST) {
		if (!being_allowed(c, id, r))
			return;
		struct rop *o = rop_new(c, id, R_BEING, r->op, BEINGS, NULL);
		/* What the list may collect is reserved for it. */
		if (o && !op_hold(&o->base, LIST_MAX_BYTES)) {
			rop_free(o);
			o = NULL;
		}
		if (o) {
			o->all = r->all;
			o->threshold_ms = r->online_threshold_ms;
			start(o);
		}
		return;
	}
	if (!check_being(c, id, r->being_id))
		return;
	if (r->op == SHIP__BEING_OP__BEING_UPDATE && !state_valid(r->state)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "state '%.32s' is not idle, working, blocked or offline",
		             r->state);
		return;
	}
	if (r->op > SHIP__BEING_OP__BEING_KEEPALIVE_STOP) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "unknown being operation %d", (int)r->op);
		return;
	}
	if (!being_allowed(c, id, r))
		return;
	if (r->op == SHIP__BEING_OP__BEING_KEEPALIVE) {
		keepalive_start(c, id, r);
		return;
	}
	if (r->op == SHIP__BEING_OP__BEING_KEEPALIVE_STOP) {
		struct keepalive *k = ka_find(c, r->being_id);
		if (!k) {
			client_error(c, id, SHIP__CODE__NOT_FOUND,
			             "no keep-alive for '%.64s'", r->being_id);
			return;
		}
		ka_free(k);
		client_ok(c, id);
		return;
	}
	struct rop *o = rop_new(c, id, R_BEING, r->op, BEINGS, r->being_id);
	if (!o)
		return;
	o->threshold_ms = r->online_threshold_ms;
	o->has_task = r->has_task;
	if (r->op == SHIP__BEING_OP__BEING_REGISTER) {
		o->caps = json_array();
		for (size_t i = 0; o->caps && i < r->n_capabilities; i++)
			json_array_append_new(o->caps, json_string(r->capabilities[i]));
	}
	if ((r->state[0] && !(o->state = strdup(r->state))) ||
	    !(o->task = strdup(r->current_task))) {
		struct js_err e = {.code = SHIP__CODE__INTERNAL, .text = "out of memory"};
		rop_fail(o, &e);
		return;
	}
	start(o);
}

static void handle_store(struct client *c, uint64_t id,
                         const Ship__StoreRequest *r)
{
	if (r->store > SHIP__STORE__STORE_HEALTH ||
	    r->op > SHIP__STORE_OP__STORE_LIST) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "unknown store or operation");
		return;
	}
	bool keyed = r->op == SHIP__STORE_OP__STORE_GET ||
	             r->op == SHIP__STORE_OP__STORE_SET;
	if (keyed && !kv_key_valid(r->key)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid key '%.64s' (letters, digits and -/_=. only)",
		             r->key);
		return;
	}
	char *text = NULL;
	if (r->op == SHIP__STORE_OP__STORE_SET || r->has_default) {
		json_error_t jerr;
		json_t *j = json_loads(r->value_json, JSON_DECODE_ANY, &jerr);
		if (!j) {
			client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
			             "value is not JSON: %s", jerr.text);
			return;
		}
		/* Compact, as noesis-ship writes it. */
		text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY |
		                             JSON_PRESERVE_ORDER);
		json_decref(j);
	}
	const char *bucket = r->store == SHIP__STORE__STORE_HEALTH ? HEALTH
	                                                           : CONFIG;
	if (!client_allowed(c, id,
	                    r->op == SHIP__STORE_OP__STORE_SET ? POL_KV_WRITE
	                                                       : POL_KV_READ,
	                    bucket)) {
		free(text);
		return;
	}
	struct rop *o = rop_new(c, id, R_STORE, r->op, bucket, r->key);
	if (o && (r->op == SHIP__STORE_OP__STORE_LIST ||
	          r->op == SHIP__STORE_OP__STORE_KEYS) &&
	    !op_hold(&o->base, LIST_MAX_BYTES)) {
		rop_free(o);
		o = NULL;
	}
	if (!o) {
		free(text);
		return;
	}
	o->value = text;
	o->has_default = r->has_default;
	start(o);
}

/* ---- the block ---- */

static void client_gone(struct client *c)
{
	struct keepalive *k, *ktmp;
	TAILQ_FOREACH_SAFE(k, &kas, entry, ktmp) {
		if (k->c != c)
			continue;
		if (k->beat) {
			/* A heartbeat of shipd's own: let it go. */
			k->beat->ka = NULL;
			k->beat = NULL;
		}
		ka_offline(k);
		ka_free(k);
	}
}

static void link_changed(bool up)
{
	if (!up)
		memset(ensured, 0, sizeof(ensured));
}

static void finish(void)
{
	struct keepalive *k;
	while ((k = TAILQ_FIRST(&kas)))
		ka_free(k);
	struct rop *o, *tmp;
	TAILQ_FOREACH_SAFE(o, &rops, entry, tmp) {
		o->gone = true;
		/* One in kv_ensure is freed by its callback. */
		if (!o->ensuring)
			rop_free(o);
	}
}

static void req_being(struct client *c, const Ship__ClientFrame *f)
{
	handle_being(c, f->id, f->being);
}

static void req_store(struct client *c, const Ship__ClientFrame *f)
{
	handle_store(c, f->id, f->store);
}

const struct block registry_block = {
	.name = "registry",
	.requests = (const struct block_request[]){
		{SHIP__CLIENT_FRAME__BODY_BEING, req_being, true},
		{SHIP__CLIENT_FRAME__BODY_STORE, req_store, true},
		{0, NULL, false},
	},
	.client_gone = client_gone,
	.link_changed = link_changed,
	.finish = finish,
};
