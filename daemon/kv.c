/* SPDX-License-Identifier: MIT */
/* KV for local apps: their get, put and watch requests and the bucket
 * calls, answered from the engine in kvstore.c. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shipd.h"

#define API_TIMEOUT_MS 5000
#define LIST_PAGES_MAX 64
#define DESCRIPTION_MAX 4096

/* ---- requests from apps ---- */

enum op_kind {
	OP_GET,
	OP_WRITE,
	OP_CREATE,
	OP_INFO,
	OP_LIST,
	OP_DELETE,
	OP_KEYS,
	OP_HISTORY,
};

struct kvop {
	struct op op; /* op.c is NULL once the app is gone */
	enum op_kind kind;
	char bucket[KV_NAME_MAX];
	char key[IPC_SUBJECT_MAX + 1];
	struct kv_req *req;
	struct js_call *call;
	struct kv_collect *coll;
	bool ensuring; /* in kv_ensure, which cannot be cancelled */
	size_t page;
	json_t *list;
	enum js_dom list_dom; /* the domain being listed */
};

static void op_free(struct kvop *o)
{
	op_end(&o->op);
	kv_req_cancel(o->req);
	js_cancel(o->call);
	kv_collect_cancel(o->coll);
	json_decref(o->list);
	free(o);
}

/* The app left. One in kv_ensure cannot be stopped: its callback, which
 * the link also runs at shutdown, frees it. */
static void op_cancel(struct op *op)
{
	struct kvop *o = container_of(op, struct kvop, op);
	if (!o->ensuring)
		op_free(o);
}

static struct kvop *op_new(struct client *c, uint64_t id, enum op_kind kind,
                           const char *bucket, const char *key)
{
	struct kvop *o = calloc(1, sizeof(*o));
	if (!o) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	if (!op_begin(&o->op, c, id, op_cancel)) {
		free(o);
		return NULL;
	}
	o->kind = kind;
	snprintf(o->bucket, sizeof(o->bucket), "%s", bucket ? bucket : "");
	snprintf(o->key, sizeof(o->key), "%s", key ? key : "");
	return o;
}

/* A write that got no answer says its outcome is unknown (e->unknown). */
static void op_fail(struct kvop *o, const struct js_err *e)
{
	client_js_error(o->op.c, o->op.id, e);
	op_free(o);
}

static bool check_bucket(struct client *c, uint64_t id, const char *b)
{
	if (kv_bucket_valid(b))
		return true;
	client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
	             "invalid bucket name '%.64s' (" KV_BUCKET_RULE ")", b);
	return false;
}

static bool check_key(struct client *c, uint64_t id, const char *k)
{
	if (kv_key_valid(k))
		return true;
	client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
	             "invalid key '%.64s' (letters, digits and -/_=. only; no "
	             "leading, trailing or double dot)",
	             k);
	return false;
}

static void entry_to_ship(Ship__KvEntry *pe, const char *bucket,
                          const struct kv_entry *e)
{
	ship__kv_entry__init(pe);
	pe->bucket = (char *)bucket;
	pe->key = (char *)e->key;
	pe->value.data = (uint8_t *)e->value;
	pe->value.len = e->len;
	pe->revision = e->revision;
	pe->created_ns = e->created_ns;
	pe->delta = e->delta;
	pe->op = e->op;
}

static void send_entry(struct kvop *o, const struct kv_entry *e)
{
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__KvEntry pe;
	entry_to_ship(&pe, o->bucket, e);
	f.id = o->op.id;
	f.body_case = SHIP__SERVER_FRAME__BODY_KV_ENTRY;
	f.kv_entry = &pe;
	client_send(o->op.c, &f);
}

static void got(void *arg, const struct kv_entry *e, const struct js_err *err)
{
	struct kvop *o = arg;
	o->req = NULL;
	if (e && e->op != SHIP__KV_OP__KV_PUT) {
		struct js_err nf;
		kv_set_err(&nf, SHIP__CODE__NOT_FOUND, "key '%s' was %s at revision %" PRIu64,
		        o->key, e->op == SHIP__KV_OP__KV_DEL ? "deleted" : "purged",
		        e->revision);
		op_fail(o, &nf);
		return;
	}
	if (!e) {
		op_fail(o, err);
		return;
	}
	send_entry(o, e);
	op_free(o);
}

static void handle_get(struct client *c, uint64_t id, const Ship__KvGet *g)
{
	if (!check_bucket(c, id, g->bucket) || !check_key(c, id, g->key) ||
	    !client_allowed(c, id, POL_KV_READ, g->bucket))
		return;
	struct kvop *o = op_new(c, id, OP_GET, g->bucket, g->key);
	struct js_err err;
	if (o && !(o->req = kv_get(g->bucket, g->key, g->revision, got, o, &err)))
		op_fail(o, &err);
}

static void written(void *arg, uint64_t rev, const struct js_err *err)
{
	struct kvop *o = arg;
	o->req = NULL;
	if (err) {
		op_fail(o, err);
		return;
	}
	struct kv_entry e = {.key = o->key, .revision = rev};
	send_entry(o, &e);
	op_free(o);
}

static void handle_write(struct client *c, uint64_t id, const Ship__KvWrite *w)
{
	if (!check_bucket(c, id, w->bucket) || !check_key(c, id, w->key))
		return;
	if (w->op > SHIP__KV_WRITE_OP__KV_WRITE_PURGE) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "unknown write operation %d", (int)w->op);
		return;
	}
	if (w->op == SHIP__KV_WRITE_OP__KV_WRITE_UPDATE && w->revision == 0) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "update needs the expected revision (use create for "
		             "a new key)");
		return;
	}
	if (!client_allowed(c, id, POL_KV_WRITE, w->bucket))
		return;
	struct kvop *o = op_new(c, id, OP_WRITE, w->bucket, w->key);
	if (!o)
		return;
	struct js_err err;
	o->req = kv_put(w->bucket, w->key, (int)w->op, w->value.data,
	                w->value.len, w->revision, written, o, &err);
	if (!o->req)
		op_fail(o, &err);
}

/* ---- buckets ---- */

static void config_from_json(Ship__KvBucketConfig *bc, json_t *cfg)
{
	const char *name = json_string_value(json_object_get(cfg, "name"));
	const char *desc = json_string_value(json_object_get(cfg, "description"));
	const char *storage = json_string_value(json_object_get(cfg, "storage"));
	json_int_t v;
	ship__kv_bucket_config__init(bc);
	bc->bucket = (char *)(name && !strncmp(name, "KV_", 3) ? name + 3 : "");
	bc->description = (char *)(desc ? desc : "");
	bc->history = (uint32_t)json_integer_value(
		json_object_get(cfg, "max_msgs_per_subject"));
	bc->ttl_ms = (uint64_t)json_integer_value(json_object_get(cfg, "max_age")) /
	             1000000;
	v = json_integer_value(json_object_get(cfg, "max_msg_size"));
	bc->max_value_size = v > 0 && v <= INT32_MAX ? (int32_t)v : 0;
	v = json_integer_value(json_object_get(cfg, "max_bytes"));
	bc->max_bytes = v > 0 ? v : 0;
	bc->memory = storage && !strcmp(storage, "memory");
	bc->replicas = (uint32_t)json_integer_value(json_object_get(cfg, "num_replicas"));
}

static void info_from_json(Ship__KvBucketInfo *bi, Ship__KvBucketConfig *bc,
                           json_t *si)
{
	json_t *st = json_object_get(si, "state");
	const char *storage =
		json_string_value(json_object_get(json_object_get(si, "config"), "storage"));
	ship__kv_bucket_info__init(bi);
	config_from_json(bc, json_object_get(si, "config"));
	bi->config = bc;
	bi->values = (uint64_t)json_integer_value(json_object_get(st, "messages"));
	bi->bytes = (uint64_t)json_integer_value(json_object_get(st, "bytes"));
	bi->last_revision = (uint64_t)json_integer_value(json_object_get(st, "last_seq"));
	bi->storage = (char *)(storage ? storage : "");
}

/* Fail o; a stream that does not exist is a bucket that does not. */
static void op_fail_bucket(struct kvop *o, const struct js_err *e)
{
	struct js_err nf;
	if (kv_no_stream(e)) {
		kv_set_err(&nf, SHIP__CODE__NOT_FOUND, "bucket '%s' not found",
		           o->bucket);
		e = &nf;
	}
	op_fail(o, e);
}

static void info_done(void *arg, json_t *reply, const struct js_err *e)
{
	struct kvop *o = arg;
	o->call = NULL;
	if (e) {
		op_fail_bucket(o, e);
		return;
	}
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__KvBucketInfo bi;
	Ship__KvBucketConfig bc;
	info_from_json(&bi, &bc, reply);
	f.id = o->op.id;
	f.body_case = SHIP__SERVER_FRAME__BODY_KV_BUCKET;
	f.kv_bucket = &bi;
	client_send(o->op.c, &f);
	op_free(o);
}

static int start_info(struct kvop *o, struct js_err *err)
{
	char what[KV_NAME_MAX + 32];
	snprintf(what, sizeof(what), "STREAM.INFO.KV_%s", o->bucket);
	o->kind = OP_INFO;
	o->call = js_api_in(kv_dom(o->bucket), what, NULL, API_TIMEOUT_MS,
	                    info_done, o);
	if (!o->call) {
		kv_set_err(err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
		        link_state_name(link_info()->state));
		return -1;
	}
	return 0;
}

static void created(void *arg, const struct js_err *e)
{
	struct kvop *o = arg;
	struct js_err err;
	o->ensuring = false;
	if (!o->op.c) {
		op_free(o); /* the app left meanwhile */
		return;
	}
	if (e) {
		op_fail(o, e);
		return;
	}
	if (start_info(o, &err) < 0)
		op_fail(o, &err);
}

static void handle_bucket_create(struct client *c, uint64_t id,
                                 const Ship__KvBucketCreate *bcr)
{
	Ship__KvBucketConfig empty = SHIP__KV_BUCKET_CONFIG__INIT;
	const Ship__KvBucketConfig *bc = bcr->config ? bcr->config : &empty;
	struct js_stream_cfg cfg;
	struct js_err err;
	if (kv_bucket_cfg(&cfg, bc, &err) < 0) {
		client_error(c, id, err.code, "%s", err.text);
		return;
	}
	if (!client_allowed(c, id, POL_KV_ADMIN, bc->bucket))
		return;
	if (!link_connected()) {
		client_error(c, id, SHIP__CODE__UNAVAILABLE,
		             "NATS is not connected (%s)",
		             link_state_name(link_info()->state));
		return;
	}
	struct kvop *o = op_new(c, id, OP_CREATE, bc->bucket, NULL);
	if (!o)
		return;
	o->ensuring = true;
	if (kv_ensure_cfg(&cfg, false, created, o) < 0) {
		o->ensuring = false;
		kv_set_err(&err, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
		op_fail(o, &err);
	}
}

static void handle_bucket_info(struct client *c, uint64_t id, const char *b)
{
	struct js_err err;
	if (!check_bucket(c, id, b) || !client_allowed(c, id, POL_KV_READ, b))
		return;
	struct kvop *o = op_new(c, id, OP_INFO, b, NULL);
	if (o && start_info(o, &err) < 0)
		op_fail(o, &err);
}

static void listed(void *arg, json_t *reply, const struct js_err *e);

static int list_page(struct kvop *o, struct js_err *err)
{
	json_t *body = json_pack("{s:I, s:s}", "offset", (json_int_t)o->page,
	                         "subject", "$KV.>");
	o->call = js_api_in(o->list_dom, "STREAM.LIST", body, API_TIMEOUT_MS,
	                    listed, o);
	if (!o->call) {
		kv_set_err(err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
		        link_state_name(link_info()->state));
		return -1;
	}
	return 0;
}

static void send_list(struct kvop *o)
{
	size_t n = json_array_size(o->list);
	Ship__KvBucketInfo *infos = calloc(n ? n : 1, sizeof(*infos));
	Ship__KvBucketConfig *cfgs = calloc(n ? n : 1, sizeof(*cfgs));
	Ship__KvBucketInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	if (!infos || !cfgs || !ptrs) {
		client_error(o->op.c, o->op.id, SHIP__CODE__INTERNAL, "out of memory");
	} else {
		for (size_t i = 0; i < n; i++) {
			info_from_json(&infos[i], &cfgs[i], json_array_get(o->list, i));
			ptrs[i] = &infos[i];
		}
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__KvBucketList bl = SHIP__KV_BUCKET_LIST__INIT;
		bl.n_buckets = n;
		bl.buckets = ptrs;
		f.id = o->op.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_KV_BUCKETS;
		f.kv_buckets = &bl;
		client_send(o->op.c, &f);
	}
	free(infos);
	free(cfgs);
	free(ptrs);
}

static void listed(void *arg, json_t *reply, const struct js_err *e)
{
	struct kvop *o = arg;
	struct js_err err;
	o->call = NULL;
	bool hub = js_dom_remote(o->list_dom);
	if (e && hub && e->unreachable) {
		/* The uplink is down: the robot's buckets are all there is. */
		send_list(o);
		op_free(o);
		return;
	}
	if (e) {
		op_fail(o, e);
		return;
	}
	json_t *arr = json_object_get(reply, "streams");
	size_t i, got_n = json_array_size(arr);
	json_t *si;
	json_array_foreach(arr, i, si) {
		const char *name = json_string_value(
			json_object_get(json_object_get(si, "config"), "name"));
		/* Only the buckets the app may read: the others' names are
		 * not its business (and asking is no denial). */
		/* A bucket is listed from the domain shipd uses it in (a
		 * same-named one elsewhere is not the one apps get). */
		if (name && !strncmp(name, "KV_", 3) && kv_bucket_valid(name + 3) &&
		    js_dom_remote(kv_dom(name + 3)) == hub && o->op.c &&
		    policy_allows(o->op.c->pol, POL_KV_READ, name + 3, NULL, 0))
			json_array_append(o->list, si);
	}
	o->page += got_n;
	json_int_t total = json_integer_value(json_object_get(reply, "total"));
	if (got_n && (json_int_t)o->page < total &&
	    o->page < (size_t)LIST_PAGES_MAX * 256) {
		if (list_page(o, &err) < 0)
			op_fail(o, &err);
		return;
	}
	if (!hub && conf->hub_domain) {
		/* Then the hub's. */
		o->list_dom = JS_HUB;
		o->page = 0;
		if (list_page(o, &err) < 0)
			op_fail(o, &err);
		return;
	}
	send_list(o);
	op_free(o);
}

static void handle_bucket_list(struct client *c, uint64_t id)
{
	struct js_err err;
	struct kvop *o = op_new(c, id, OP_LIST, NULL, NULL);
	if (!o)
		return;
	if (!(o->list = json_array()) || list_page(o, &err) < 0) {
		if (!o->list)
			kv_set_err(&err, SHIP__CODE__INTERNAL, "out of memory");
		op_fail(o, &err);
	}
}

static void deleted(void *arg, json_t *reply, const struct js_err *e)
{
	struct kvop *o = arg;
	o->call = NULL;
	if (e) {
		op_fail_bucket(o, e);
		return;
	}
	kv_forget_bucket(o->bucket);
	log_info("client %" PRIu64 " deleted bucket %s", o->op.c ? o->op.c->cid : 0,
	         o->bucket);
	client_ok(o->op.c, o->op.id);
	op_free(o);
}

static void handle_bucket_delete(struct client *c, uint64_t id, const char *b)
{
	char what[KV_NAME_MAX + 32];
	if (!check_bucket(c, id, b) || !client_allowed(c, id, POL_KV_ADMIN, b))
		return;
	struct kvop *o = op_new(c, id, OP_DELETE, b, NULL);
	if (!o)
		return;
	snprintf(what, sizeof(what), "STREAM.DELETE.KV_%s", b);
	if (!(o->call = js_api_in(kv_dom(b), what, NULL, API_TIMEOUT_MS,
	                          deleted, o))) {
		struct js_err err;
		kv_set_err(&err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
		        link_state_name(link_info()->state));
		op_fail(o, &err);
	}
}

/* ---- keys and history: collected by a watch ---- */

static void collected(void *arg, const struct kv_entry *es, size_t n,
                      const struct js_err *e)
{
	struct kvop *o = arg;
	o->coll = NULL;
	if (e) {
		op_fail(o, e);
		return;
	}
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	f.id = o->op.id;
	if (o->kind == OP_KEYS) {
		Ship__KvKeysReply kr = SHIP__KV_KEYS_REPLY__INIT;
		char **keys = calloc(n ? n : 1, sizeof(*keys));
		if (!keys) {
			client_error(o->op.c, o->op.id, SHIP__CODE__INTERNAL, "out of memory");
			op_free(o);
			return;
		}
		for (size_t i = 0; i < n; i++)
			keys[i] = (char *)es[i].key;
		kr.n_keys = n;
		kr.keys = keys;
		f.body_case = SHIP__SERVER_FRAME__BODY_KV_KEYS;
		f.kv_keys = &kr;
		client_send(o->op.c, &f);
		free(keys);
		op_free(o);
		return;
	}
	if (n == 0) {
		client_error(o->op.c, o->op.id, SHIP__CODE__NOT_FOUND, "key '%s' not found",
		             o->key);
		op_free(o);
		return;
	}
	Ship__KvEntries ke = SHIP__KV_ENTRIES__INIT;
	Ship__KvEntry *pes = calloc(n, sizeof(*pes));
	Ship__KvEntry **ptrs = calloc(n, sizeof(*ptrs));
	if (pes && ptrs) {
		for (size_t i = 0; i < n; i++) {
			entry_to_ship(&pes[i], o->bucket, &es[i]);
			ptrs[i] = &pes[i];
		}
		ke.n_entries = n;
		ke.entries = ptrs;
		f.body_case = SHIP__SERVER_FRAME__BODY_KV_ENTRIES;
		f.kv_entries = &ke;
		client_send(o->op.c, &f);
	} else {
		client_error(o->op.c, o->op.id, SHIP__CODE__INTERNAL, "out of memory");
	}
	free(pes);
	free(ptrs);
	op_free(o);
}

static void handle_collect(struct client *c, uint64_t id, enum op_kind kind,
                           const char *bucket, const char *pattern)
{
	if (!check_bucket(c, id, bucket))
		return;
	if (kind == OP_HISTORY && !check_key(c, id, pattern))
		return;
	if (kind == OP_KEYS && pattern[0] && !kv_pattern_valid(pattern)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid key filter '%.64s'", pattern);
		return;
	}
	if (!client_allowed(c, id, POL_KV_READ, bucket))
		return;
	struct kvop *o = op_new(c, id, kind, bucket, pattern);
	if (!o)
		return;
	/* What the collection may take is reserved before it starts. */
	if (!op_hold(&o->op, config_answer_limit(conf))) {
		op_free(o);
		return;
	}
	struct kv_watch_spec spec = {
		.bucket = bucket,
		.pattern = pattern,
		.include_history = kind == OP_HISTORY,
		.ignore_deletes = kind == OP_KEYS,
		.meta_only = kind == OP_KEYS,
	};
	/* What fits one reply the app is sure to take. */
	o->coll = kv_collect(&spec, config_answer_limit(conf), collected, o);
	if (!o->coll) {
		struct js_err err;
		kv_set_err(&err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
		        link_state_name(link_info()->state));
		op_fail(o, &err);
	}
}

/* ---- dispatch and lifetime ---- */

static void handle_watch(struct client *c, uint64_t id, const Ship__KvWatch *w)
{
	if (!check_bucket(c, id, w->bucket))
		return;
	if (w->pattern[0] && !kv_pattern_valid(w->pattern)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid key pattern '%.64s'", w->pattern);
		return;
	}
	if (w->include_history && w->updates_only) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "include_history and updates_only exclude each other");
		return;
	}
	if (!client_allowed(c, id, POL_KV_READ, w->bucket))
		return;
	struct kv_watch_spec spec = {
		.bucket = w->bucket,
		.pattern = w->pattern,
		.include_history = w->include_history,
		.updates_only = w->updates_only,
		.ignore_deletes = w->ignore_deletes,
		.meta_only = w->meta_only,
	};
	kvwatch_open(c, id, &spec);
}

static void handle_watch_stop(struct client *c, uint64_t id,
                              const Ship__KvWatchStop *s)
{
	if (kvwatch_stop(c, s->stream) < 0) {
		client_error(c, id, SHIP__CODE__NOT_FOUND,
		             "no open watch %" PRIu64, s->stream);
		return;
	}
	if (id)
		client_ok(c, id);
}

/* ---- the block ---- */

static void req_bucket_create(struct client *c, const Ship__ClientFrame *f)
{
	handle_bucket_create(c, f->id, f->kv_bucket_create);
}

static void req_bucket_info(struct client *c, const Ship__ClientFrame *f)
{
	handle_bucket_info(c, f->id, f->kv_bucket_info->bucket);
}

static void req_bucket_list(struct client *c, const Ship__ClientFrame *f)
{
	handle_bucket_list(c, f->id);
}

static void req_bucket_delete(struct client *c, const Ship__ClientFrame *f)
{
	handle_bucket_delete(c, f->id, f->kv_bucket_delete->bucket);
}

static void req_get(struct client *c, const Ship__ClientFrame *f)
{
	handle_get(c, f->id, f->kv_get);
}

static void req_write(struct client *c, const Ship__ClientFrame *f)
{
	handle_write(c, f->id, f->kv_write);
}

static void req_watch(struct client *c, const Ship__ClientFrame *f)
{
	handle_watch(c, f->id, f->kv_watch);
}

static void req_watch_stop(struct client *c, const Ship__ClientFrame *f)
{
	handle_watch_stop(c, f->id, f->kv_watch_stop);
}

static void req_keys(struct client *c, const Ship__ClientFrame *f)
{
	handle_collect(c, f->id, OP_KEYS, f->kv_keys->bucket, f->kv_keys->filter);
}

static void req_history(struct client *c, const Ship__ClientFrame *f)
{
	handle_collect(c, f->id, OP_HISTORY, f->kv_history->bucket,
	               f->kv_history->key);
}

static void finish(void)
{
	kvwatch_finish();
}

const struct block kv_block = {
	.name = "kv",
	.requests = (const struct block_request[]){
		{SHIP__CLIENT_FRAME__BODY_KV_BUCKET_CREATE, req_bucket_create, false},
		{SHIP__CLIENT_FRAME__BODY_KV_BUCKET_INFO, req_bucket_info, false},
		{SHIP__CLIENT_FRAME__BODY_KV_BUCKET_LIST, req_bucket_list, false},
		{SHIP__CLIENT_FRAME__BODY_KV_BUCKET_DELETE, req_bucket_delete, false},
		{SHIP__CLIENT_FRAME__BODY_KV_GET, req_get, false},
		{SHIP__CLIENT_FRAME__BODY_KV_WRITE, req_write, true},
		{SHIP__CLIENT_FRAME__BODY_KV_WATCH, req_watch, false},
		{SHIP__CLIENT_FRAME__BODY_KV_WATCH_STOP, req_watch_stop, false},
		{SHIP__CLIENT_FRAME__BODY_KV_KEYS, req_keys, false},
		{SHIP__CLIENT_FRAME__BODY_KV_HISTORY, req_history, false},
		{0, NULL, false},
	},
	.link_changed = kvwatch_link_changed,
	.finish = finish,
};
