/* SPDX-License-Identifier: MIT */
/* libshipc's KV calls: buckets, entries, watches, and the noesis-ship
 * stores (being registry, ship_config, ship_health). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shipc-private.h"

#define KV_TIMEOUT_MS 30000

/* ---- calls ---- */

static int kv_call(struct shipc *h, Ship__ClientFrame *f, call_reply_fn *fn,
                   void *out)
{
	return call_wait_reply(h, f, fn, out, KV_TIMEOUT_MS);
}

/* ---- buckets ---- */

static void status_from(struct shipc_kv_status *st, const Ship__KvBucketInfo *bi)
{
	memset(st, 0, sizeof(*st));
	if (bi->config) {
		const Ship__KvBucketConfig *c = bi->config;
		snprintf(st->bucket, sizeof(st->bucket), "%s", c->bucket);
		snprintf(st->description, sizeof(st->description), "%s",
		         c->description);
		st->history = c->history;
		st->ttl_ms = c->ttl_ms;
		st->max_value_size = c->max_value_size;
		st->max_bytes = c->max_bytes;
		st->memory = c->memory;
		st->replicas = c->replicas;
	}
	st->values = bi->values;
	st->bytes = bi->bytes;
	st->last_revision = bi->last_revision;
}

static void bucket_reply(struct shipc *h, struct call *c,
                         const Ship__ServerFrame *f)
{
	if (reply_is(c, f, SHIP__SERVER_FRAME__BODY_KV_BUCKET) && c->out)
		status_from(c->out, f->kv_bucket);
}

SHIPC_EXPORT int shipc_kv_bucket_create(struct shipc *h,
                                        const struct shipc_kv_config *cfg,
                                        struct shipc_kv_status *st)
{
	if (!cfg || !cfg->bucket)
		return bad_arg(h, "no bucket name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__KvBucketCreate bc = SHIP__KV_BUCKET_CREATE__INIT;
	Ship__KvBucketConfig kc = SHIP__KV_BUCKET_CONFIG__INIT;
	kc.bucket = (char *)cfg->bucket;
	kc.description = (char *)(cfg->description ? cfg->description : "");
	kc.history = cfg->history;
	kc.ttl_ms = cfg->ttl_ms;
	kc.max_value_size = cfg->max_value_size;
	kc.max_bytes = cfg->max_bytes;
	kc.memory = cfg->memory != 0;
	kc.replicas = cfg->replicas;
	bc.config = &kc;
	f.body_case = SHIP__CLIENT_FRAME__BODY_KV_BUCKET_CREATE;
	f.kv_bucket_create = &bc;
	return kv_call(h, &f, bucket_reply, st);
}

SHIPC_EXPORT int shipc_kv_bucket_info(struct shipc *h, const char *bucket,
                                      struct shipc_kv_status *st)
{
	if (!bucket)
		return bad_arg(h, "no bucket name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__KvBucketInfoRequest r = SHIP__KV_BUCKET_INFO_REQUEST__INIT;
	r.bucket = (char *)bucket;
	f.body_case = SHIP__CLIENT_FRAME__BODY_KV_BUCKET_INFO;
	f.kv_bucket_info = &r;
	return kv_call(h, &f, bucket_reply, st);
}

struct list_out {
	struct shipc_kv_status *list;
	size_t n;
};

static void buckets_reply(struct shipc *h, struct call *c,
                          const Ship__ServerFrame *f)
{
	struct list_out *out = c->out;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_KV_BUCKETS))
		return;
	size_t n = f->kv_buckets->n_buckets;
	if (!(out->list = calloc(n ? n : 1, sizeof(*out->list)))) {
		c->err = ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++)
		status_from(&out->list[i], f->kv_buckets->buckets[i]);
	out->n = n;
}

SHIPC_EXPORT int shipc_kv_bucket_list(struct shipc *h,
                                      struct shipc_kv_status **list, size_t *n)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__KvBucketListRequest r = SHIP__KV_BUCKET_LIST_REQUEST__INIT;
	struct list_out out = {0};
	f.body_case = SHIP__CLIENT_FRAME__BODY_KV_BUCKET_LIST;
	f.kv_bucket_list = &r;
	if (kv_call(h, &f, buckets_reply, &out) < 0) {
		free(out.list);
		return -1;
	}
	*list = out.list;
	*n = out.n;
	return 0;
}

SHIPC_EXPORT void shipc_kv_bucket_list_free(struct shipc_kv_status *list)
{
	free(list);
}

SHIPC_EXPORT int shipc_kv_bucket_delete(struct shipc *h, const char *bucket)
{
	if (!bucket)
		return bad_arg(h, "no bucket name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__KvBucketDelete r = SHIP__KV_BUCKET_DELETE__INIT;
	r.bucket = (char *)bucket;
	f.body_case = SHIP__CLIENT_FRAME__BODY_KV_BUCKET_DELETE;
	f.kv_bucket_delete = &r;
	return kv_call(h, &f, NULL, NULL);
}

/* ---- entries ---- */

static void view_entry(struct shipc_kv_entry *e, const Ship__KvEntry *pe)
{
	e->bucket = pe->bucket;
	e->key = pe->key;
	e->value = pe->value.data ? (const void *)pe->value.data : "";
	e->len = pe->value.len;
	e->revision = pe->revision;
	e->created_ns = pe->created_ns;
	e->delta = pe->delta;
	e->op = (enum shipc_kv_op)pe->op;
}

/* Copy into one allocation per string; returns 0 or -1. */
static int copy_entry(struct shipc_kv_entry *e, const Ship__KvEntry *pe)
{
	char *v = malloc(pe->value.len + 1);
	char *b = strdup(pe->bucket);
	char *k = strdup(pe->key);
	if (!v || !b || !k) {
		free(v);
		free(b);
		free(k);
		return -1;
	}
	if (pe->value.len)
		memcpy(v, pe->value.data, pe->value.len);
	v[pe->value.len] = '\0';
	view_entry(e, pe);
	e->bucket = b;
	e->key = k;
	e->value = v;
	return 0;
}

static void entry_clear(struct shipc_kv_entry *e)
{
	free((void *)e->bucket);
	free((void *)e->key);
	free((void *)e->value);
}

SHIPC_EXPORT void shipc_kv_entry_free(struct shipc_kv_entry *e)
{
	if (!e)
		return;
	entry_clear(e);
	free(e);
}

SHIPC_EXPORT void shipc_kv_entries_free(struct shipc_kv_entry *list, size_t n)
{
	for (size_t i = 0; list && i < n; i++)
		entry_clear(&list[i]);
	free(list);
}

static void entry_reply(struct shipc *h, struct call *c,
                        const Ship__ServerFrame *f)
{
	struct shipc_kv_entry **out = c->out;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_KV_ENTRY))
		return;
	struct shipc_kv_entry *e = calloc(1, sizeof(*e));
	if (!e || copy_entry(e, f->kv_entry) < 0) {
		free(e);
		c->err = ENOMEM;
		return;
	}
	*out = e;
}

static void get_frame(Ship__ClientFrame *f, Ship__KvGet *g, const char *bucket,
                      const char *key, uint64_t revision)
{
	g->bucket = (char *)bucket;
	g->key = (char *)key;
	g->revision = revision;
	f->body_case = SHIP__CLIENT_FRAME__BODY_KV_GET;
	f->kv_get = g;
}

SHIPC_EXPORT int shipc_kv_get(struct shipc *h, const char *bucket,
                              const char *key, uint64_t revision,
                              struct shipc_kv_entry **e)
{
	if (!bucket || !key || !e)
		return bad_arg(h, "no bucket or key");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__KvGet g = SHIP__KV_GET__INIT;
	get_frame(&f, &g, bucket, key, revision);
	*e = NULL;
	int r = kv_call(h, &f, entry_reply, e);
	if (r < 0 && *e) {
		shipc_kv_entry_free(*e);
		*e = NULL;
	}
	return r;
}

static void revision_reply(struct shipc *h, struct call *c,
                           const Ship__ServerFrame *f)
{
	uint64_t *rev = c->out;
	if (reply_is(c, f, SHIP__SERVER_FRAME__BODY_KV_ENTRY) && rev)
		*rev = f->kv_entry->revision;
}

static void write_frame(Ship__ClientFrame *f, Ship__KvWrite *w,
                        const char *bucket, const char *key,
                        Ship__KvWriteOp op, const void *value, size_t len,
                        uint64_t expected)
{
	w->bucket = (char *)bucket;
	w->key = (char *)key;
	w->op = op;
	w->value.data = (uint8_t *)value;
	w->value.len = value ? len : 0;
	w->revision = expected;
	f->body_case = SHIP__CLIENT_FRAME__BODY_KV_WRITE;
	f->kv_write = w;
}

static int kv_write(struct shipc *h, const char *bucket, const char *key,
                    Ship__KvWriteOp op, const void *value, size_t len,
                    uint64_t expected, uint64_t *revision)
{
	if (!bucket || !key || (len && !value))
		return bad_arg(h, "no bucket, key or value");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__KvWrite w = SHIP__KV_WRITE__INIT;
	write_frame(&f, &w, bucket, key, op, value, len, expected);
	return kv_call(h, &f, revision_reply, revision);
}

SHIPC_EXPORT int shipc_kv_put(struct shipc *h, const char *bucket,
                              const char *key, const void *value, size_t len,
                              uint64_t *revision)
{
	return kv_write(h, bucket, key, SHIP__KV_WRITE_OP__KV_WRITE_PUT, value,
	                len, 0, revision);
}

SHIPC_EXPORT int shipc_kv_create(struct shipc *h, const char *bucket,
                                 const char *key, const void *value,
                                 size_t len, uint64_t *revision)
{
	return kv_write(h, bucket, key, SHIP__KV_WRITE_OP__KV_WRITE_CREATE, value,
	                len, 0, revision);
}

SHIPC_EXPORT int shipc_kv_update(struct shipc *h, const char *bucket,
                                 const char *key, const void *value,
                                 size_t len, uint64_t expected,
                                 uint64_t *revision)
{
	return kv_write(h, bucket, key, SHIP__KV_WRITE_OP__KV_WRITE_UPDATE, value,
	                len, expected, revision);
}

SHIPC_EXPORT int shipc_kv_delete(struct shipc *h, const char *bucket,
                                 const char *key)
{
	return kv_write(h, bucket, key, SHIP__KV_WRITE_OP__KV_WRITE_DELETE, NULL,
	                0, 0, NULL);
}

SHIPC_EXPORT int shipc_kv_purge(struct shipc *h, const char *bucket,
                                const char *key)
{
	return kv_write(h, bucket, key, SHIP__KV_WRITE_OP__KV_WRITE_PURGE, NULL, 0,
	                0, NULL);
}

/* ---- pipelined get and put ---- */

struct async_kv {
	shipc_kv_put_fn *put_cb;
	shipc_kv_get_fn *get_cb;
	void *arg;
};

/* The library's error path (lost connection, close): no frame. */
static void async_failed(struct shipc *h, const struct shipc_msg *m, int err,
                         void *arg)
{
	struct async_kv *a = arg;
	if (a->put_cb)
		a->put_cb(h, 0, err, a->arg);
	else
		a->get_cb(h, NULL, err, a->arg);
	free(a);
}

static void async_reply(struct shipc *h, struct call *c,
                        const Ship__ServerFrame *f)
{
	struct async_kv *a = c->arg;
	int err = c->err;
	if (!err && f->body_case != SHIP__SERVER_FRAME__BODY_KV_ENTRY)
		err = EPROTO;
	if (a->put_cb) {
		a->put_cb(h, err ? 0 : f->kv_entry->revision, err, a->arg);
	} else if (err) {
		a->get_cb(h, NULL, err, a->arg);
	} else {
		struct shipc_kv_entry e;
		view_entry(&e, f->kv_entry);
		a->get_cb(h, &e, 0, a->arg);
	}
	free(a);
}

static int async_start(struct shipc *h, Ship__ClientFrame *f,
                       struct async_kv *a)
{
	struct call *c = calloc(1, sizeof(*c));
	if (!c) {
		free(a);
		return -1;
	}
	c->on_reply = async_reply;
	c->cb = async_failed;
	c->arg = a;
	pthread_mutex_lock(&h->mu);
	int r = wait_for_space(h);
	if (r == 0)
		r = call_start(h, c, f, 0);
	pthread_mutex_unlock(&h->mu);
	if (r < 0) {
		free(c);
		free(a);
	}
	return r;
}

SHIPC_EXPORT int shipc_kv_put_async(struct shipc *h, const char *bucket,
                                    const char *key, const void *value,
                                    size_t len, shipc_kv_put_fn *cb, void *arg)
{
	if (!bucket || !key || !cb || (len && !value))
		return bad_arg(h, "no bucket, key, value or callback");
	struct async_kv *a = calloc(1, sizeof(*a));
	if (!a)
		return -1;
	a->put_cb = cb;
	a->arg = arg;
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__KvWrite w = SHIP__KV_WRITE__INIT;
	write_frame(&f, &w, bucket, key, SHIP__KV_WRITE_OP__KV_WRITE_PUT, value,
	            len, 0);
	return async_start(h, &f, a);
}

SHIPC_EXPORT int shipc_kv_get_async(struct shipc *h, const char *bucket,
                                    const char *key, uint64_t revision,
                                    shipc_kv_get_fn *cb, void *arg)
{
	if (!bucket || !key || !cb)
		return bad_arg(h, "no bucket, key or callback");
	struct async_kv *a = calloc(1, sizeof(*a));
	if (!a)
		return -1;
	a->get_cb = cb;
	a->arg = arg;
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__KvGet g = SHIP__KV_GET__INIT;
	get_frame(&f, &g, bucket, key, revision);
	return async_start(h, &f, a);
}

/* ---- keys and history ---- */

struct keys_out {
	char **keys;
	size_t n;
};

static void keys_reply(struct shipc *h, struct call *c,
                       const Ship__ServerFrame *f)
{
	struct keys_out *out = c->out;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_KV_KEYS))
		return;
	size_t n = f->kv_keys->n_keys;
	if (!(out->keys = calloc(n ? n : 1, sizeof(char *)))) {
		c->err = ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (!(out->keys[i] = strdup(f->kv_keys->keys[i]))) {
			c->err = ENOMEM;
			break;
		}
		out->n++;
	}
}

SHIPC_EXPORT void shipc_kv_keys_free(char **keys, size_t n)
{
	for (size_t i = 0; keys && i < n; i++)
		free(keys[i]);
	free(keys);
}

static int keys_call(struct shipc *h, Ship__ClientFrame *f, char ***keys,
                     size_t *n)
{
	struct keys_out out = {0};
	if (kv_call(h, f, keys_reply, &out) < 0) {
		shipc_kv_keys_free(out.keys, out.n);
		return -1;
	}
	*keys = out.keys;
	*n = out.n;
	return 0;
}

SHIPC_EXPORT int shipc_kv_keys(struct shipc *h, const char *bucket,
                               const char *filter, char ***keys, size_t *n)
{
	if (!bucket)
		return bad_arg(h, "no bucket name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__KvKeys k = SHIP__KV_KEYS__INIT;
	k.bucket = (char *)bucket;
	k.filter = (char *)(filter ? filter : "");
	f.body_case = SHIP__CLIENT_FRAME__BODY_KV_KEYS;
	f.kv_keys = &k;
	return keys_call(h, &f, keys, n);
}

struct entries_out {
	struct shipc_kv_entry *list;
	size_t n;
};

static void entries_reply(struct shipc *h, struct call *c,
                          const Ship__ServerFrame *f)
{
	struct entries_out *out = c->out;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_KV_ENTRIES))
		return;
	size_t n = f->kv_entries->n_entries;
	if (!(out->list = calloc(n ? n : 1, sizeof(*out->list)))) {
		c->err = ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (copy_entry(&out->list[i], f->kv_entries->entries[i]) < 0) {
			c->err = ENOMEM;
			break;
		}
		out->n++;
	}
}

static int entries_call(struct shipc *h, Ship__ClientFrame *f,
                        struct shipc_kv_entry **list, size_t *n)
{
	struct entries_out out = {0};
	if (kv_call(h, f, entries_reply, &out) < 0) {
		shipc_kv_entries_free(out.list, out.n);
		return -1;
	}
	*list = out.list;
	*n = out.n;
	return 0;
}

SHIPC_EXPORT int shipc_kv_history(struct shipc *h, const char *bucket,
                                  const char *key, struct shipc_kv_entry **list,
                                  size_t *n)
{
	if (!bucket || !key)
		return bad_arg(h, "no bucket or key");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__KvHistory k = SHIP__KV_HISTORY__INIT;
	k.bucket = (char *)bucket;
	k.key = (char *)key;
	f.body_case = SHIP__CLIENT_FRAME__BODY_KV_HISTORY;
	f.kv_history = &k;
	return entries_call(h, &f, list, n);
}

/* ---- watches: streams of Delivery pushes (see ship.proto) ---- */

struct kv_watcher {
	shipc_kv_watch_fn *cb;
	shipc_kv_end_fn *end;
	void *arg;
	char *bucket;
};

static const char *hdr(const struct shipc_msg *m, const char *key)
{
	for (size_t i = 0; i < m->n_headers; i++)
		if (!strcmp(m->headers[i].key, key))
			return m->headers[i].value;
	return NULL;
}

static uint64_t hdr_u64(const struct shipc_msg *m, const char *key)
{
	const char *v = hdr(m, key);
	return v ? strtoull(v, NULL, 10) : 0;
}

static void watch_msg(struct shipc *h, const struct shipc_msg *m, int err,
                      void *arg)
{
	struct kv_watcher *w = arg;
	if (!m) {
		if (w->end)
			w->end(h, err, w->arg);
		free(w->bucket);
		free(w);
		return;
	}
	if (!m->subject[0]) {
		w->cb(h, NULL, w->arg); /* initial values done */
		return;
	}
	const char *op = hdr(m, "KV-Operation");
	struct shipc_kv_entry e = {
		.bucket = w->bucket,
		.key = m->subject,
		.value = m->len ? m->data : "",
		.len = m->len,
		.revision = hdr_u64(m, "KV-Revision"),
		.created_ns = hdr_u64(m, "KV-Created"),
		.delta = hdr_u64(m, "KV-Delta"),
		.op = op && !strcmp(op, "DEL")     ? SHIPC_KV_DEL
		      : op && !strcmp(op, "PURGE") ? SHIPC_KV_PURGE
		                                   : SHIPC_KV_PUT,
	};
	w->cb(h, &e, w->arg);
}

SHIPC_EXPORT uint64_t shipc_kv_watch(struct shipc *h, const char *bucket,
                                     const char *pattern, int flags,
                                     shipc_kv_watch_fn *cb,
                                     shipc_kv_end_fn *end, void *arg)
{
	if (!bucket || !cb) {
		bad_arg(h, "no bucket or callback");
		return 0;
	}
	struct sub *s = calloc(1, sizeof(*s));
	struct kv_watcher *w = calloc(1, sizeof(*w));
	if (!s || !w || !(w->bucket = strdup(bucket)) ||
	    !(s->what = strdup(pattern ? pattern : ">"))) {
		if (w)
			free(w->bucket);
		free(w);
		free(s);
		return 0;
	}
	w->cb = cb;
	w->end = end;
	w->arg = arg;
	s->cb = watch_msg;
	s->arg = w;
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__KvWatch kw = SHIP__KV_WATCH__INIT;
	kw.bucket = (char *)bucket;
	kw.pattern = (char *)(pattern ? pattern : "");
	kw.include_history = flags & SHIPC_KV_WATCH_HISTORY;
	kw.updates_only = flags & SHIPC_KV_WATCH_UPDATES_ONLY;
	kw.ignore_deletes = flags & SHIPC_KV_WATCH_IGNORE_DELETES;
	kw.meta_only = flags & SHIPC_KV_WATCH_META_ONLY;
	f.body_case = SHIP__CLIENT_FRAME__BODY_KV_WATCH;
	f.kv_watch = &kw;
	pthread_mutex_lock(&h->mu);
	uint64_t id = stream_open(h, s, &f); /* frees s on failure */
	pthread_mutex_unlock(&h->mu);
	if (!id) {
		int saved = errno;
		free(w->bucket);
		free(w);
		errno = saved;
	}
	return id;
}

SHIPC_EXPORT int shipc_kv_watch_stop(struct shipc *h, uint64_t id)
{
	/* shipd ends any stream on an Unsubscribe; only check it is a watch. */
	pthread_mutex_lock(&h->mu);
	struct sub *s = sub_find(h, id);
	bool watch = s && s->cb == watch_msg;
	pthread_mutex_unlock(&h->mu);
	if (!watch) {
		errno = ENOENT;
		return -1;
	}
	return shipc_unsubscribe(h, id);
}

/* ---- the being registry ---- */

static void being_clear(struct shipc_being *b)
{
	free(b->being_id);
	free(b->state);
	free(b->current_task);
	free(b->last_heartbeat);
	for (size_t i = 0; b->capabilities && i < b->n_capabilities; i++)
		free(b->capabilities[i]);
	free(b->capabilities);
	free(b->metadata_json);
	free(b->json);
}

SHIPC_EXPORT void shipc_beings_free(struct shipc_being *list, size_t n)
{
	for (size_t i = 0; list && i < n; i++)
		being_clear(&list[i]);
	free(list);
}

static int being_copy(struct shipc_being *b, const Ship__BeingStatus *s)
{
	memset(b, 0, sizeof(*b));
	b->being_id = strdup(s->being_id);
	b->state = strdup(s->state);
	b->current_task = s->has_task ? strdup(s->current_task) : NULL;
	b->last_heartbeat = strdup(s->last_heartbeat);
	b->uptime_seconds = s->uptime_seconds;
	b->memory_mb = s->memory_mb;
	b->has_memory = s->has_memory;
	b->metadata_json = s->metadata_json[0] ? strdup(s->metadata_json) : NULL;
	b->online = s->online;
	b->revision = s->revision;
	b->json = strdup(s->json);
	b->capabilities = calloc(s->n_capabilities + 1, sizeof(char *));
	bool ok = b->being_id && b->state && b->last_heartbeat && b->json &&
	          b->capabilities && (!s->has_task || b->current_task) &&
	          (!s->metadata_json[0] || b->metadata_json);
	for (size_t i = 0; ok && i < s->n_capabilities; i++) {
		ok = (b->capabilities[i] = strdup(s->capabilities[i])) != NULL;
		b->n_capabilities += ok;
	}
	return ok ? 0 : -1;
}

struct beings_out {
	struct shipc_being *list;
	size_t n;
};

static void beings_reply(struct shipc *h, struct call *c,
                         const Ship__ServerFrame *f)
{
	struct beings_out *out = c->out;
	if (!out)
		return;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_BEINGS))
		return;
	size_t n = f->beings->n_beings;
	if (!(out->list = calloc(n ? n : 1, sizeof(*out->list)))) {
		c->err = ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		out->n++;
		if (being_copy(&out->list[i], f->beings->beings[i]) < 0) {
			c->err = ENOMEM;
			break;
		}
	}
}

static int being_call(struct shipc *h, Ship__BeingRequest *r,
                      struct beings_out *out)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	f.body_case = SHIP__CLIENT_FRAME__BODY_BEING;
	f.being = r;
	int ret = kv_call(h, &f, beings_reply, out);
	if (ret < 0 && out) {
		shipc_beings_free(out->list, out->n);
		out->list = NULL;
		out->n = 0;
	}
	return ret;
}

static int being_one(struct shipc *h, Ship__BeingRequest *r,
                     struct shipc_being **res)
{
	struct beings_out out = {0};
	if (being_call(h, r, &out) < 0)
		return -1;
	if (out.n != 1) {
		shipc_beings_free(out.list, out.n);
		errno = EPROTO;
		return -1;
	}
	if (res)
		*res = out.list;
	else
		shipc_beings_free(out.list, out.n);
	return 0;
}

SHIPC_EXPORT int shipc_being_register(struct shipc *h, const char *id,
                                      const char *const *caps, size_t n,
                                      struct shipc_being **out)
{
	if (!id || (n && !caps))
		return bad_arg(h, "no being id");
	Ship__BeingRequest r = SHIP__BEING_REQUEST__INIT;
	r.op = SHIP__BEING_OP__BEING_REGISTER;
	r.being_id = (char *)id;
	r.capabilities = (char **)caps;
	r.n_capabilities = n;
	return being_one(h, &r, out);
}

SHIPC_EXPORT int shipc_being_update(struct shipc *h, const char *id,
                                    const char *state, const char *task,
                                    struct shipc_being **out)
{
	if (!id || !state)
		return bad_arg(h, "no being id or state");
	Ship__BeingRequest r = SHIP__BEING_REQUEST__INIT;
	r.op = SHIP__BEING_OP__BEING_UPDATE;
	r.being_id = (char *)id;
	r.state = (char *)state;
	r.current_task = (char *)(task ? task : "");
	r.has_task = task != NULL;
	return being_one(h, &r, out);
}

SHIPC_EXPORT int shipc_being_heartbeat(struct shipc *h, const char *id)
{
	if (!id)
		return bad_arg(h, "no being id");
	Ship__BeingRequest r = SHIP__BEING_REQUEST__INIT;
	r.op = SHIP__BEING_OP__BEING_HEARTBEAT;
	r.being_id = (char *)id;
	return being_one(h, &r, NULL);
}

SHIPC_EXPORT int shipc_being_get(struct shipc *h, const char *id,
                                 struct shipc_being **out)
{
	if (!id || !out)
		return bad_arg(h, "no being id");
	Ship__BeingRequest r = SHIP__BEING_REQUEST__INIT;
	r.op = SHIP__BEING_OP__BEING_GET;
	r.being_id = (char *)id;
	return being_one(h, &r, out);
}

static int being_simple(struct shipc *h, const char *id, Ship__BeingOp op,
                        uint32_t interval_ms)
{
	if (!id)
		return bad_arg(h, "no being id");
	Ship__BeingRequest r = SHIP__BEING_REQUEST__INIT;
	r.op = op;
	r.being_id = (char *)id;
	r.interval_ms = interval_ms;
	return being_call(h, &r, NULL);
}

SHIPC_EXPORT int shipc_being_unregister(struct shipc *h, const char *id)
{
	return being_simple(h, id, SHIP__BEING_OP__BEING_UNREGISTER, 0);
}

SHIPC_EXPORT int shipc_being_keepalive(struct shipc *h, const char *id,
                                       uint32_t interval_ms)
{
	return being_simple(h, id, SHIP__BEING_OP__BEING_KEEPALIVE, interval_ms);
}

SHIPC_EXPORT int shipc_being_keepalive_stop(struct shipc *h, const char *id)
{
	return being_simple(h, id, SHIP__BEING_OP__BEING_KEEPALIVE_STOP, 0);
}

SHIPC_EXPORT int shipc_beings_list(struct shipc *h, int all,
                                   uint32_t threshold_ms,
                                   struct shipc_being **list, size_t *n)
{
	Ship__BeingRequest r = SHIP__BEING_REQUEST__INIT;
	struct beings_out out = {0};
	r.op = SHIP__BEING_OP__BEING_LIST;
	r.all = all != 0;
	r.online_threshold_ms = threshold_ms;
	if (being_call(h, &r, &out) < 0)
		return -1;
	*list = out.list;
	*n = out.n;
	return 0;
}

/* ---- ship_config and ship_health ---- */

static void store_frame(Ship__ClientFrame *f, Ship__StoreRequest *r,
                        Ship__Store store, Ship__StoreOp op, const char *key,
                        const char *json)
{
	r->store = store;
	r->op = op;
	r->key = (char *)(key ? key : "");
	r->value_json = (char *)(json ? json : "");
	f->body_case = SHIP__CLIENT_FRAME__BODY_STORE;
	f->store = r;
}

static int store_value(struct shipc *h, Ship__Store store, Ship__StoreOp op,
                       const char *key, const char *json, bool has_default,
                       char **out)
{
	if (!key || (op == SHIP__STORE_OP__STORE_SET && !json))
		return bad_arg(h, "no key or value");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__StoreRequest r = SHIP__STORE_REQUEST__INIT;
	struct shipc_kv_entry *list = NULL;
	size_t n = 0;
	store_frame(&f, &r, store, op, key, json);
	r.has_default = has_default;
	if (entries_call(h, &f, &list, &n) < 0)
		return -1;
	if (n != 1) {
		shipc_kv_entries_free(list, n);
		errno = EPROTO;
		return -1;
	}
	if (out) {
		*out = (char *)list[0].value;
		list[0].value = NULL;
	}
	shipc_kv_entries_free(list, n);
	return 0;
}

SHIPC_EXPORT int shipc_config_get(struct shipc *h, const char *key,
                                  const char *default_json, char **json)
{
	if (!json)
		return bad_arg(h, "nowhere to put the value");
	return store_value(h, SHIP__STORE__STORE_CONFIG, SHIP__STORE_OP__STORE_GET,
	                   key, default_json, default_json != NULL, json);
}

SHIPC_EXPORT int shipc_config_set(struct shipc *h, const char *key,
                                  const char *json)
{
	return store_value(h, SHIP__STORE__STORE_CONFIG, SHIP__STORE_OP__STORE_SET,
	                   key, json, false, NULL);
}

SHIPC_EXPORT int shipc_config_keys(struct shipc *h, char ***keys, size_t *n)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__StoreRequest r = SHIP__STORE_REQUEST__INIT;
	store_frame(&f, &r, SHIP__STORE__STORE_CONFIG, SHIP__STORE_OP__STORE_KEYS,
	            NULL, NULL);
	return keys_call(h, &f, keys, n);
}

SHIPC_EXPORT uint64_t shipc_config_watch(struct shipc *h, const char *pattern,
                                         int flags, shipc_kv_watch_fn *cb,
                                         shipc_kv_end_fn *end, void *arg)
{
	/* Listing the keys makes shipd create the bucket if need be. */
	char **keys;
	size_t n;
	if (shipc_config_keys(h, &keys, &n) < 0)
		return 0;
	shipc_kv_keys_free(keys, n);
	return shipc_kv_watch(h, "ship_config", pattern, flags, cb, end, arg);
}

SHIPC_EXPORT int shipc_health_report(struct shipc *h, const char *source,
                                     const char *json)
{
	return store_value(h, SHIP__STORE__STORE_HEALTH, SHIP__STORE_OP__STORE_SET,
	                   source, json, false, NULL);
}

SHIPC_EXPORT int shipc_health_get(struct shipc *h, const char *source,
                                  char **json)
{
	if (!json)
		return bad_arg(h, "nowhere to put the value");
	return store_value(h, SHIP__STORE__STORE_HEALTH, SHIP__STORE_OP__STORE_GET,
	                   source, NULL, false, json);
}

SHIPC_EXPORT int shipc_health_list(struct shipc *h,
                                   struct shipc_kv_entry **list, size_t *n)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__StoreRequest r = SHIP__STORE_REQUEST__INIT;
	store_frame(&f, &r, SHIP__STORE__STORE_HEALTH, SHIP__STORE_OP__STORE_LIST,
	            NULL, NULL);
	return entries_call(h, &f, list, n);
}
