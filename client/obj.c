/* SPDX-License-Identifier: MIT */
/* libshipc's Object Store calls: buckets, object information, and puts
 * and gets streamed one chunk at a time under shipd's credit. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shipc-private.h"

#define OBJ_TIMEOUT_MS 30000
/* A transfer fails when shipd says nothing for this long. */
#define XFER_IDLE_MS 60000
/* What an ended stream is given to say so after a cancel. */
#define CANCEL_WAIT_MS 5000
#define DEFAULT_CHUNK (128u * 1024)
#define DEFAULT_CREDIT 8
#define PROGRESS_STEP 65536

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int obj_call(struct shipc *h, Ship__ClientFrame *f, call_reply_fn *fn,
                    void *out)
{
	return call_wait_reply(h, f, fn, out, OBJ_TIMEOUT_MS);
}

/* ---- object information: one allocation per object ---- */

static size_t headers_size(Ship__Header **hs, size_t n)
{
	size_t sz = 0;
	for (size_t i = 0; i < n; i++)
		sz += strlen(hs[i]->key) + strlen(hs[i]->value) + 2;
	return sz;
}

static const char *put_str(char **p, const char *s)
{
	size_t n = strlen(s) + 1;
	const char *d = memcpy(*p, s, n);
	*p += n;
	return d;
}

static void put_headers(struct shipc_header *dst, Ship__Header **hs, size_t n,
                        char **p)
{
	for (size_t i = 0; i < n; i++) {
		dst[i].key = put_str(p, hs[i]->key);
		dst[i].value = put_str(p, hs[i]->value);
	}
}

/* Bytes info_fill() needs beyond the struct. */
static size_t info_blob_size(const Ship__ObjectInfo *oi)
{
	return (oi->n_headers + oi->n_metadata) * sizeof(struct shipc_header) +
	       headers_size(oi->headers, oi->n_headers) +
	       headers_size(oi->metadata, oi->n_metadata) + strlen(oi->bucket) +
	       strlen(oi->name) + strlen(oi->description) + strlen(oi->nuid) +
	       strlen(oi->digest) + strlen(oi->link_bucket) +
	       strlen(oi->link_name) + 7;
}

/* Fill dst with copies in blob: the header arrays first (aligned), so
 * dst->headers is the blob and what frees it. */
static void info_fill(struct shipc_obj_info *dst, const Ship__ObjectInfo *oi,
                      void *blob)
{
	struct shipc_header *hs = blob;
	char *p = (char *)(hs + oi->n_headers + oi->n_metadata);
	put_headers(hs, oi->headers, oi->n_headers, &p);
	put_headers(hs + oi->n_headers, oi->metadata, oi->n_metadata, &p);
	dst->headers = hs;
	dst->n_headers = oi->n_headers;
	dst->metadata = hs + oi->n_headers;
	dst->n_metadata = oi->n_metadata;
	dst->bucket = put_str(&p, oi->bucket);
	dst->name = put_str(&p, oi->name);
	dst->description = put_str(&p, oi->description);
	dst->nuid = put_str(&p, oi->nuid);
	dst->digest = put_str(&p, oi->digest);
	dst->link_bucket = put_str(&p, oi->link_bucket);
	dst->link_name = put_str(&p, oi->link_name);
	dst->size = oi->size;
	dst->chunks = oi->chunks;
	dst->max_chunk_size = oi->max_chunk_size;
	dst->deleted = oi->deleted;
	dst->mtime_ns = oi->mtime_ns;
}

static struct shipc_obj_info *info_dup(const Ship__ObjectInfo *oi)
{
	/* The struct is pointer-aligned, so the arrays after it are too. */
	struct shipc_obj_info *info =
		malloc(sizeof(*info) + info_blob_size(oi));
	if (info)
		info_fill(info, oi, info + 1);
	return info;
}

SHIPC_EXPORT void shipc_obj_info_free(struct shipc_obj_info *info)
{
	free(info);
}

SHIPC_EXPORT void shipc_obj_list_free(struct shipc_obj_info *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free((void *)list[i].headers);
	free(list);
}

/* ---- buckets ---- */

static void status_from(struct shipc_obj_bucket_status *st,
                        const Ship__ObjBucketInfo *bi)
{
	memset(st, 0, sizeof(*st));
	snprintf(st->bucket, sizeof(st->bucket), "%s", bi->bucket);
	snprintf(st->description, sizeof(st->description), "%s",
	         bi->description);
	st->ttl_ms = bi->ttl_ms;
	st->max_bytes = bi->max_bytes;
	st->memory = bi->memory;
	st->replicas = bi->replicas;
	st->sealed = bi->sealed;
	st->size = bi->size;
}

static void bucket_reply(struct shipc *h, struct call *c,
                         const Ship__ServerFrame *f)
{
	(void)h;
	if (reply_is(c, f, SHIP__SERVER_FRAME__BODY_OBJ_BUCKET) && c->out)
		status_from(c->out, f->obj_bucket);
}

SHIPC_EXPORT int shipc_obj_bucket_create(struct shipc *h,
                                         const struct shipc_obj_bucket_config *cfg,
                                         struct shipc_obj_bucket_status *st)
{
	if (!cfg || !cfg->bucket)
		return bad_arg(h, "no bucket name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjBucketCreate bc = SHIP__OBJ_BUCKET_CREATE__INIT;
	bc.bucket = (char *)cfg->bucket;
	bc.description = (char *)(cfg->description ? cfg->description : "");
	bc.ttl_ms = cfg->ttl_ms;
	bc.max_bytes = cfg->max_bytes;
	bc.memory = cfg->memory != 0;
	bc.replicas = cfg->replicas;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_CREATE;
	f.obj_bucket_create = &bc;
	return obj_call(h, &f, bucket_reply, st);
}

/* Status, delete and seal name only the bucket. */
static int bucket_request(struct shipc *h, const char *bucket,
                          Ship__ClientFrame__BodyCase body,
                          struct shipc_obj_bucket_status *st)
{
	if (!bucket)
		return bad_arg(h, "no bucket name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjBucketRequest r = SHIP__OBJ_BUCKET_REQUEST__INIT;
	r.bucket = (char *)bucket;
	f.body_case = body;
	/* The three share the message type, in different fields. */
	switch (body) {
	case SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_STATUS:
		f.obj_bucket_status = &r;
		return obj_call(h, &f, bucket_reply, st);
	case SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_DELETE:
		f.obj_bucket_delete = &r;
		break;
	default:
		f.obj_bucket_seal = &r;
		break;
	}
	return obj_call(h, &f, NULL, NULL);
}

SHIPC_EXPORT int shipc_obj_bucket_status(struct shipc *h, const char *bucket,
                                         struct shipc_obj_bucket_status *st)
{
	return bucket_request(h, bucket,
	                      SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_STATUS, st);
}

SHIPC_EXPORT int shipc_obj_bucket_delete(struct shipc *h, const char *bucket)
{
	return bucket_request(h, bucket,
	                      SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_DELETE, NULL);
}

SHIPC_EXPORT int shipc_obj_bucket_seal(struct shipc *h, const char *bucket)
{
	return bucket_request(h, bucket, SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_SEAL,
	                      NULL);
}

struct bucket_list {
	struct shipc_obj_bucket_status *list;
	size_t n;
};

static void buckets_reply(struct shipc *h, struct call *c,
                          const Ship__ServerFrame *f)
{
	(void)h;
	struct bucket_list *out = c->out;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_OBJ_BUCKETS))
		return;
	size_t n = f->obj_buckets->n_buckets;
	if (!(out->list = calloc(n ? n : 1, sizeof(*out->list)))) {
		c->err = ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++)
		status_from(&out->list[i], f->obj_buckets->buckets[i]);
	out->n = n;
}

SHIPC_EXPORT int shipc_obj_bucket_list(struct shipc *h,
                                       struct shipc_obj_bucket_status **list,
                                       size_t *n)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjBucketListRequest r = SHIP__OBJ_BUCKET_LIST_REQUEST__INIT;
	struct bucket_list out = {0};
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_LIST;
	f.obj_bucket_list = &r;
	if (obj_call(h, &f, buckets_reply, &out) < 0) {
		free(out.list);
		return -1;
	}
	*list = out.list;
	*n = out.n;
	return 0;
}

SHIPC_EXPORT void shipc_obj_bucket_list_free(struct shipc_obj_bucket_status *list)
{
	free(list);
}

/* ---- objects: information, list, delete ---- */

static void info_reply(struct shipc *h, struct call *c,
                       const Ship__ServerFrame *f)
{
	(void)h;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_OBJ_INFO))
		return;
	if (!(*(struct shipc_obj_info **)c->out = info_dup(f->obj_info)))
		c->err = ENOMEM;
}

SHIPC_EXPORT int shipc_obj_info(struct shipc *h, const char *bucket,
                                const char *name, int show_deleted,
                                struct shipc_obj_info **info)
{
	if (!bucket || !name || !*name)
		return bad_arg(h, "no bucket or object name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjInfoRequest r = SHIP__OBJ_INFO_REQUEST__INIT;
	struct shipc_obj_info *out = NULL;
	r.bucket = (char *)bucket;
	r.name = (char *)name;
	r.show_deleted = show_deleted != 0;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_INFO;
	f.obj_info = &r;
	if (obj_call(h, &f, info_reply, &out) < 0) {
		free(out);
		return -1;
	}
	if (info)
		*info = out;
	else
		free(out);
	return 0;
}

struct info_list {
	struct shipc_obj_info *list;
	size_t n;
};

static void infos_reply(struct shipc *h, struct call *c,
                        const Ship__ServerFrame *f)
{
	(void)h;
	struct info_list *out = c->out;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_OBJ_INFOS))
		return;
	size_t n = f->obj_infos->n_objects;
	if (!(out->list = calloc(n ? n : 1, sizeof(*out->list)))) {
		c->err = ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const Ship__ObjectInfo *oi = f->obj_infos->objects[i];
		void *blob = malloc(info_blob_size(oi));
		if (!blob) {
			c->err = ENOMEM;
			return;
		}
		info_fill(&out->list[i], oi, blob);
		out->n = i + 1;
	}
}

SHIPC_EXPORT int shipc_obj_list(struct shipc *h, const char *bucket,
                                int show_deleted, struct shipc_obj_info **list,
                                size_t *n)
{
	if (!bucket)
		return bad_arg(h, "no bucket name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjListRequest r = SHIP__OBJ_LIST_REQUEST__INIT;
	struct info_list out = {0};
	r.bucket = (char *)bucket;
	r.show_deleted = show_deleted != 0;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_LIST;
	f.obj_list = &r;
	if (obj_call(h, &f, infos_reply, &out) < 0) {
		shipc_obj_list_free(out.list, out.n);
		return -1;
	}
	*list = out.list;
	*n = out.n;
	return 0;
}

SHIPC_EXPORT int shipc_obj_delete(struct shipc *h, const char *bucket,
                                  const char *name)
{
	if (!bucket || !name || !*name)
		return bad_arg(h, "no bucket or object name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjDelete r = SHIP__OBJ_DELETE__INIT;
	r.bucket = (char *)bucket;
	r.name = (char *)name;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_DELETE;
	f.obj_delete = &r;
	return obj_call(h, &f, NULL, NULL);
}

/* ---- transfers ----
 *
 * A put or get is a stream: its pushes (credit, chunks, the ObjectInfo)
 * come with the stream's id and its StreamEnd ends it. The connection
 * hands an id's StreamEnd to a registered sub and any other frame to a
 * registered call; a transfer keeps a sub and one call (its route) under
 * its id, and puts a new route in place after each push. Both are owned
 * by the connection like any call and sub: each runs its callback exactly
 * once (a push, the end, or a lost connection), and each holds a reference
 * on the transfer, so that a push dispatched by another thread never finds
 * it freed. Everything in struct xfer is under h->mu.
 */

struct xfer {
	struct shipc *h;
	unsigned refs;      /* the caller, the route, the sub */
	bool closed;        /* the caller is done: routes no more */
	struct call *route; /* registered for the next push, or NULL */
	struct sub *s;      /* catches the StreamEnd */
	uint64_t id;
	uint64_t gen;
	uint64_t pushes;    /* anything heard: the idle timer restarts */
	bool ended;
	int err;            /* shipd's, or the connection's */
	char why[256];      /* shipd's message with err: chunks it refused
	                     * after the end may answer errors of their own */
	int local_err;      /* ours: a source or sink failed, a timeout */
	bool cancelled;
	bool busy;          /* a chunk is being written out */
	uint32_t credit;    /* put: chunks we may still send */
	struct shipc_obj_info *info;
	/* get: where chunks go, fd or memory */
	int fd;
	bool to_mem;
	uint8_t *mem;
	size_t mem_cap;
	size_t max;
	uint64_t done;
	uint64_t reported;
	bool reported_once;
	shipc_obj_progress_fn *progress;
	void *progress_arg;
};

static struct xfer *xfer_new(struct shipc *h, shipc_obj_progress_fn *fn,
                             void *arg)
{
	struct xfer *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->h = h;
	x->refs = 1;
	x->fd = -1;
	x->progress = fn;
	x->progress_arg = arg;
	return x;
}

/* Lock held. */
static void xfer_unref(struct xfer *x)
{
	if (--x->refs)
		return;
	free(x->info);
	free(x->mem);
	free(x);
}

static void on_push(struct shipc *h, struct call *c, const Ship__ServerFrame *f);
static void on_route_lost(struct shipc *h, const struct shipc_msg *m, int err,
                          void *arg);

/* Lock held: route the next frame of x's id to on_push. */
static int route(struct xfer *x)
{
	struct call *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	c->id = x->id;
	c->on_reply = on_push;
	c->cb = on_route_lost;
	c->arg = x;
	c->out = x;
	if (ipc_idmap_put(&x->h->calls, x->id, c) < 0) {
		free(c);
		return -1;
	}
	x->route = c;
	x->refs++;
	return 0;
}

/* Lock held: take the route back unless a frame is on its way to it. */
static void unroute(struct xfer *x)
{
	if (!x->route || ipc_idmap_get(&x->h->calls, x->id) != x->route)
		return;
	ipc_idmap_del(&x->h->calls, x->id);
	free(x->route);
	x->route = NULL;
	xfer_unref(x);
}

static void progress(struct xfer *x, uint64_t total, bool force)
{
	if (!x->progress || (!force && x->done - x->reported < PROGRESS_STEP) ||
	    (force && x->reported_once && x->reported == x->done))
		return;
	x->reported = x->done;
	x->reported_once = true;
	x->progress(x->done, total, x->progress_arg);
}

/* Lock held: stop a get shipd is still sending. */
static void cancel(struct xfer *x, int err)
{
	if (!x->local_err)
		x->local_err = err;
	if (x->cancelled || x->ended)
		return;
	x->cancelled = true;
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Unsubscribe u = SHIP__UNSUBSCRIBE__INIT;
	u.stream = x->id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_UNSUBSCRIBE;
	f.unsubscribe = &u;
	queue_frame(x->h, &f, true);
}

/* After EAGAIN: wait for a non-blocking fd; a blocking one that says
 * EAGAIN timed out (SO_RCVTIMEO, SO_SNDTIMEO), an error. */
static bool wait_fd(int fd, short events)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || !(fl & O_NONBLOCK))
		return false;
	struct pollfd pfd = {fd, events, 0};
	return poll(&pfd, 1, -1) >= 0 || errno == EINTR;
}

static int write_full(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && (errno == EINTR ||
		              (errno == EAGAIN && wait_fd(fd, POLLOUT))))
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int sink_mem(struct xfer *x, const uint8_t *p, size_t n)
{
	if (x->done + n > x->max)
		return EFBIG;
	if (x->done + n > x->mem_cap) {
		size_t cap = x->mem_cap ? x->mem_cap : 65536;
		while (cap < x->done + n)
			cap *= 2;
		if (cap > x->max)
			cap = x->max;
		uint8_t *m = realloc(x->mem, cap ? cap : 1);
		if (!m)
			return ENOMEM;
		x->mem = m;
		x->mem_cap = cap;
	}
	memcpy(x->mem + x->done, p, n);
	return 0;
}

/* Lock held: a chunk of a get, written out at once (without the lock:
 * the sink may block), so the library never holds more than the frame it
 * came in. x->busy keeps the caller from taking x->mem or closing meanwhile. */
static void on_chunk(struct xfer *x, const ProtobufCBinaryData *d)
{
	struct shipc *h = x->h;
	if (x->local_err)
		return;
	if (!x->info || x->done + d->len > x->info->size) {
		set_error(h, "object %s: more data than its size",
		          x->info ? x->info->name : "?");
		cancel(x, EBADMSG);
		return;
	}
	x->busy = true;
	pthread_mutex_unlock(&h->mu);
	int e = 0;
	if (x->to_mem)
		e = sink_mem(x, d->data, d->len);
	else if (write_full(x->fd, d->data, d->len) < 0)
		e = errno;
	pthread_mutex_lock(&h->mu);
	x->busy = false;
	pthread_cond_broadcast(&h->cv);
	if (e) {
		set_error(h, "%s", e == EFBIG ? "object larger than allowed"
		                              : strerror(e));
		cancel(x, e);
		return;
	}
	x->done += d->len;
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjCredit cr = SHIP__OBJ_CREDIT__INIT;
	cr.stream = x->id;
	cr.chunks = 1;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_CREDIT;
	f.obj_credit = &cr;
	queue_frame(h, &f, true);
}

static void on_info(struct xfer *x, const Ship__ObjectInfo *oi)
{
	free(x->info);
	if (!(x->info = info_dup(oi))) {
		cancel(x, ENOMEM);
		return;
	}
	if (x->to_mem && oi->size > x->max) {
		set_error(x->h, "object %s: %llu bytes, more than allowed",
		          oi->name, (unsigned long long)oi->size);
		cancel(x, EFBIG);
	}
}

/* Without the lock, holding the route's reference: a frame of the
 * transfer's id that is not its end. */
static void on_push(struct shipc *h, struct call *c, const Ship__ServerFrame *f)
{
	struct xfer *x = c->out;
	pthread_mutex_lock(&h->mu);
	if (x->route == c)
		x->route = NULL; /* the connection frees c */
	x->pushes++;
	if (c->err) {
		/* The opening refused: no StreamEnd follows. */
		x->err = c->err;
		x->ended = true;
		snprintf(x->why, sizeof(x->why), "%s", h->last_error);
	} else if (!x->closed) {
		switch (f->body_case) {
		case SHIP__SERVER_FRAME__BODY__NOT_SET:
			break; /* the opening accepted */
		case SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT:
			x->credit += f->obj_put_credit->chunks;
			break;
		case SHIP__SERVER_FRAME__BODY_OBJ_INFO:
			on_info(x, f->obj_info);
			break;
		case SHIP__SERVER_FRAME__BODY_OBJ_CHUNK:
			on_chunk(x, &f->obj_chunk->data);
			break;
		default:
			set_error(h, "unexpected frame in an object transfer");
			cancel(x, EPROTO);
			break;
		}
	}
	if (!x->ended && !x->closed && route(x) < 0)
		cancel(x, ENOMEM);
	uint64_t total = x->info ? x->info->size : 0;
	bool chunk = f->body_case == SHIP__SERVER_FRAME__BODY_OBJ_CHUNK &&
	             !x->local_err && !x->closed;
	pthread_mutex_unlock(&h->mu);
	/* The app's callback runs without the lock. */
	if (chunk)
		progress(x, total, false);
	pthread_mutex_lock(&h->mu);
	xfer_unref(x);
	pthread_mutex_unlock(&h->mu);
}

/* Without the lock: the route dropped unanswered (connection lost, handle
 * closed). */
static void on_route_lost(struct shipc *h, const struct shipc_msg *m, int err,
                          void *arg)
{
	(void)m;
	struct xfer *x = arg;
	pthread_mutex_lock(&h->mu);
	x->route = NULL;
	if (!x->ended) {
		x->ended = true;
		x->err = err ? err : ECONNRESET;
	}
	xfer_unref(x);
	pthread_mutex_unlock(&h->mu);
}

/* Without the lock: the StreamEnd (or the handle closing). The
 * connection frees the sub. */
static void on_end(struct shipc *h, const struct shipc_msg *m, int err,
                   void *arg)
{
	(void)m;
	struct xfer *x = arg;
	pthread_mutex_lock(&h->mu);
	x->s = NULL;
	x->ended = true;
	x->err = err;
	if (err)
		snprintf(x->why, sizeof(x->why), "%s", h->last_error);
	unroute(x);
	xfer_unref(x);
	pthread_mutex_unlock(&h->mu);
}

/* Lock held: register x under a new id and send the opening frame. */
static int xfer_open(struct xfer *x, Ship__ClientFrame *f)
{
	struct shipc *h = x->h;
	if (wait_for_space(h) < 0)
		return -1;
	struct sub *s = calloc(1, sizeof(*s));
	if (!s || !(s->what = strdup("object transfer"))) {
		free(s);
		errno = ENOMEM;
		return -1;
	}
	/* Its open frame stays empty: a transfer is not re-opened after a
	 * reconnect, it fails. */
	s->cb = on_end;
	s->arg = x;
	x->id = s->id = ++h->next_id;
	x->gen = h->gen;
	if (ipc_idmap_put(&h->subs, x->id, s) < 0) {
		sub_free(s);
		errno = ENOMEM;
		return -1;
	}
	x->s = s;
	x->refs++;
	f->id = x->id;
	if (route(x) < 0) {
		errno = ENOMEM;
		return -1;
	}
	return queue_frame(h, f, true);
}

/* Lock held: wait until ready(x) or the end (0), or give up (-1): the
 * connection went (x->ended, x->err set) or shipd said nothing for
 * idle_ms (x->local_err set; the caller stops the stream). */
static int xfer_wait(struct xfer *x, bool (*ready)(const struct xfer *),
                     int idle_ms)
{
	struct shipc *h = x->h;
	uint64_t seen = x->pushes, deadline = now_ms() + (uint64_t)idle_ms;
	while (!x->ended && !(ready && ready(x))) {
		if (!h->connected || h->gen != x->gen) {
			set_error(h, "lost shipd during an object transfer");
			x->err = ECONNRESET;
			x->ended = true;
			return -1;
		}
		if (x->pushes != seen) {
			seen = x->pushes;
			deadline = now_ms() + (uint64_t)idle_ms;
		}
		uint64_t now = now_ms();
		if (now >= deadline) {
			set_error(h, "no answer from shipd");
			if (!x->local_err)
				x->local_err = ETIMEDOUT;
			return -1;
		}
		read_once(h, (int)(deadline - now));
	}
	return 0;
}

/* Lock held: the caller is done with the stream: forget its sub and
 * route. */
static void xfer_drop(struct xfer *x)
{
	struct shipc *h = x->h;
	x->closed = true;
	while (x->busy)
		pthread_cond_wait(&h->cv, &h->mu);
	unroute(x);
	if (x->s && ipc_idmap_get(&h->subs, x->id) == x->s) {
		ipc_idmap_del(&h->subs, x->id);
		sub_free(x->s);
		x->s = NULL;
		xfer_unref(x);
	}
}

/* Lock held: xfer_drop(), and the transfer's outcome (0 or an errno). */
static int xfer_close(struct xfer *x)
{
	struct shipc *h = x->h;
	xfer_drop(x);
	int err = x->local_err ? x->local_err : x->err;
	if (err && !x->local_err && x->why[0])
		set_error(h, "%s", x->why);
	if (!err && !x->info) {
		set_error(h, "shipd sent no object information");
		err = EPROTO;
	}
	return err;
}

/* Lock held, released: hand over the information and drop the caller's
 * reference. Returns 0 or -1 with errno err. */
static int xfer_finish(struct xfer *x, int err, struct shipc_obj_info **info)
{
	struct shipc *h = x->h;
	if (!err && info) {
		*info = x->info;
		x->info = NULL;
	}
	xfer_unref(x);
	pthread_mutex_unlock(&h->mu);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

/* ---- put ---- */

/* Where a put reads: an fd or memory. */
struct source {
	int fd;
	const uint8_t *mem;
	size_t len;
	size_t off;
	bool have_peek;
	uint8_t peek; /* read ahead to tell the last chunk */
};

static ssize_t source_read(struct source *src, uint8_t *p, size_t n)
{
	if (src->mem) {
		size_t k = src->len - src->off < n ? src->len - src->off : n;
		memcpy(p, src->mem + src->off, k);
		src->off += k;
		return (ssize_t)k;
	}
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(src->fd, p + got, n - got);
		if (r < 0 && (errno == EINTR ||
		              (errno == EAGAIN && wait_fd(src->fd, POLLIN))))
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

/* Fill buf with the next chunk; *last when the source ended with it. */
static ssize_t source_chunk(struct source *src, uint8_t *buf, size_t size,
                            bool *last)
{
	size_t off = 0;
	if (src->have_peek) {
		buf[off++] = src->peek;
		src->have_peek = false;
	}
	ssize_t r = source_read(src, buf + off, size - off);
	if (r < 0)
		return -1;
	off += (size_t)r;
	*last = off < size;
	if (!*last) {
		r = source_read(src, &src->peek, 1);
		if (r < 0)
			return -1;
		src->have_peek = r == 1;
		*last = r == 0;
	}
	return (ssize_t)off;
}

static bool has_credit(const struct xfer *x)
{
	return x->credit > 0;
}

static Ship__Header **ship_headers(const struct shipc_header *hs, size_t n,
                                   Ship__Header *store)
{
	Ship__Header **hp = calloc(n ? n : 1, sizeof(*hp));
	if (!hp)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		ship__header__init(&store[i]);
		store[i].key = (char *)hs[i].key;
		store[i].value = (char *)hs[i].value;
		hp[i] = &store[i];
	}
	return hp;
}

/* Lock held: wait until less than limit bytes wait to go to shipd, so
 * that the library holds one chunk beside the frame of the one before. */
static int wait_for_room(struct shipc *h, size_t limit)
{
	uint64_t deadline = now_ms() + XFER_IDLE_MS;
	while (h->connected && ipc_buf_used(&h->out) + h->writing >= limit) {
		uint64_t now = now_ms();
		if (now >= deadline) {
			set_error(h, "output to shipd stayed full");
			errno = ETIMEDOUT;
			return -1;
		}
		/* The condition variable runs on the monotonic clock. */
		uint64_t until = now + 100 < deadline ? now + 100 : deadline;
		struct timespec ts = {(time_t)(until / 1000),
		                      (long)(until % 1000) * 1000000};
		pthread_cond_timedwait(&h->cv, &h->mu, &ts);
	}
	if (!h->connected) {
		errno = ENOTCONN;
		return -1;
	}
	return 0;
}

/* Lock held: send one chunk (or the abort). */
static int send_chunk(struct xfer *x, const uint8_t *p, size_t n, bool last,
                      bool abort)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjPutChunk ch = SHIP__OBJ_PUT_CHUNK__INIT;
	ch.stream = x->id;
	ch.data.data = (uint8_t *)p;
	ch.data.len = n;
	ch.last = last;
	ch.abort = abort;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_PUT_CHUNK;
	f.obj_put_chunk = &ch;
	if (wait_for_room(x->h, n > 4096 ? n : 4096) < 0 ||
	    queue_frame(x->h, &f, true) < 0)
		return -1;
	if (!abort)
		x->credit--;
	return 0;
}

/* Lock held, the stream open: move the source's chunks under credit. */
static void put_chunks(struct xfer *x, struct source *src, uint8_t *buf,
                       size_t size, uint64_t total)
{
	bool last = false;
	while (!last) {
		if (xfer_wait(x, has_credit, XFER_IDLE_MS) < 0)
			goto stop;
		if (x->ended)
			return;
		pthread_mutex_unlock(&x->h->mu);
		ssize_t n = source_chunk(src, buf, size, &last);
		int e = errno;
		pthread_mutex_lock(&x->h->mu);
		if (n < 0) {
			set_error(x->h, "reading the object: %s", strerror(e));
			x->local_err = e;
			goto stop;
		}
		if (x->ended)
			return;
		errno = 0;
		if (send_chunk(x, buf, (size_t)n, last, false) < 0) {
			/* Only a frame too large leaves errno alone. */
			x->local_err = errno ? errno : EMSGSIZE;
			goto stop;
		}
		x->done += (uint64_t)n;
		pthread_mutex_unlock(&x->h->mu);
		progress(x, total, last);
		pthread_mutex_lock(&x->h->mu);
	}
	if (xfer_wait(x, NULL, XFER_IDLE_MS) == 0)
		return;
stop:
	/* Tell shipd, which drops what it stored of this put. */
	if (!x->ended && x->h->connected &&
	    send_chunk(x, NULL, 0, false, true) == 0)
		xfer_wait(x, NULL, CANCEL_WAIT_MS);
}

static int put(struct shipc *h, const char *bucket, const char *name,
               struct source *src, const struct shipc_obj_put_opts *o,
               uint64_t size_hint, struct shipc_obj_info **info)
{
	static const struct shipc_obj_put_opts none;
	if (!o)
		o = &none;
	if (!bucket || !name || !*name)
		return bad_arg(h, "no bucket or object name");
	size_t size = o->chunk_size ? o->chunk_size : DEFAULT_CHUNK;
	Ship__Header *hs = calloc(o->n_headers + o->n_metadata + 1, sizeof(*hs));
	Ship__Header **hp = hs ? ship_headers(o->headers, o->n_headers, hs) : NULL;
	Ship__Header **mp = hs ? ship_headers(o->metadata, o->n_metadata,
	                                      hs + o->n_headers)
	                       : NULL;
	uint8_t *buf = malloc(size);
	struct xfer *x = xfer_new(h, o->progress, o->progress_arg);
	int r = -1;
	if (!hs || !hp || !mp || !buf || !x) {
		free(x);
		errno = ENOMEM;
		goto out;
	}
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjPut op = SHIP__OBJ_PUT__INIT;
	op.bucket = (char *)bucket;
	op.name = (char *)name;
	op.description = (char *)(o->description ? o->description : "");
	op.headers = hp;
	op.n_headers = o->n_headers;
	op.metadata = mp;
	op.n_metadata = o->n_metadata;
	op.chunk_size = o->chunk_size;
	op.if_absent = o->if_absent != 0;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_PUT;
	f.obj_put = &op;
	pthread_mutex_lock(&h->mu);
	int err;
	if (xfer_open(x, &f) < 0) {
		err = errno;
		xfer_drop(x);
	} else {
		put_chunks(x, src, buf, size,
		           o->size_hint ? o->size_hint : size_hint);
		err = xfer_close(x);
	}
	r = xfer_finish(x, err, info);
out:
	free(buf);
	free(hp);
	free(mp);
	free(hs);
	return r;
}

SHIPC_EXPORT int shipc_obj_put_fd(struct shipc *h, const char *bucket,
                                  const char *name, int fd,
                                  const struct shipc_obj_put_opts *o,
                                  struct shipc_obj_info **info)
{
	struct source src = {.fd = fd};
	return put(h, bucket, name, &src, o, 0, info);
}

SHIPC_EXPORT int shipc_obj_put_file(struct shipc *h, const char *bucket,
                                    const char *name, const char *path,
                                    const struct shipc_obj_put_opts *o,
                                    struct shipc_obj_info **info)
{
	if (!path)
		return bad_arg(h, "no file");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		set_error(h, "%s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	uint64_t hint = fstat(fd, &st) == 0 && S_ISREG(st.st_mode)
	                        ? (uint64_t)st.st_size
	                        : 0;
	struct source src = {.fd = fd};
	int r = put(h, bucket, name, &src, o, hint, info);
	int saved = errno;
	close(fd);
	errno = saved;
	return r;
}

SHIPC_EXPORT int shipc_obj_put_mem(struct shipc *h, const char *bucket,
                                   const char *name, const void *data,
                                   size_t len,
                                   const struct shipc_obj_put_opts *o,
                                   struct shipc_obj_info **info)
{
	if (len && !data)
		return bad_arg(h, "no data");
	static const uint8_t empty;
	struct source src = {.fd = -1, .mem = len ? data : &empty, .len = len};
	return put(h, bucket, name, &src, o, len, info);
}

/* ---- get ---- */

/* Run the get x describes; on success *mem (if not NULL) takes what it
 * gathered in memory and *len its size. Consumes x. */
static int get(struct xfer *x, const char *bucket, const char *name,
               uint32_t credit, struct shipc_obj_info **info, uint8_t **mem,
               size_t *len)
{
	struct shipc *h = x->h;
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjGet og = SHIP__OBJ_GET__INIT;
	og.bucket = (char *)bucket;
	og.name = (char *)name;
	og.credit = credit ? credit : DEFAULT_CREDIT;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_GET;
	f.obj_get = &og;
	pthread_mutex_lock(&h->mu);
	int err = 0;
	if (xfer_open(x, &f) < 0) {
		err = errno;
		xfer_drop(x);
		return xfer_finish(x, err, info);
	}
	if (xfer_wait(x, NULL, XFER_IDLE_MS) < 0 && !x->ended)
		cancel(x, ETIMEDOUT);
	if (x->cancelled && !x->ended)
		xfer_wait(x, NULL, CANCEL_WAIT_MS);
	if (!x->err && !x->local_err && x->info && x->done != x->info->size) {
		set_error(h, "object %s: %llu bytes received of %llu",
		          x->info->name, (unsigned long long)x->done,
		          (unsigned long long)x->info->size);
		x->local_err = EBADMSG;
	}
	err = xfer_close(x);
	if (!err) {
		pthread_mutex_unlock(&h->mu);
		progress(x, x->done, true);
		pthread_mutex_lock(&h->mu);
		if (mem) {
			/* Never NULL, even for an empty object. */
			*mem = x->mem ? x->mem : malloc(1);
			*len = (size_t)x->done;
			x->mem = NULL;
			if (!*mem)
				err = ENOMEM;
		}
	}
	return xfer_finish(x, err, info);
}

SHIPC_EXPORT int shipc_obj_get_fd(struct shipc *h, const char *bucket,
                                  const char *name, int fd,
                                  const struct shipc_obj_get_opts *o,
                                  struct shipc_obj_info **info)
{
	static const struct shipc_obj_get_opts none;
	if (!o)
		o = &none;
	if (!bucket || !name || !*name)
		return bad_arg(h, "no bucket or object name");
	struct xfer *x = xfer_new(h, o->progress, o->progress_arg);
	if (!x)
		return -1;
	x->fd = fd;
	return get(x, bucket, name, o->credit, info, NULL, NULL);
}

SHIPC_EXPORT int shipc_obj_get_file(struct shipc *h, const char *bucket,
                                    const char *name, const char *path,
                                    const struct shipc_obj_get_opts *o,
                                    struct shipc_obj_info **info)
{
	if (!path)
		return bad_arg(h, "no file");
	size_t n = strlen(path) + sizeof(".part-XXXXXX");
	char *tmp = malloc(n);
	if (!tmp)
		return -1;
	snprintf(tmp, n, "%s.part-XXXXXX", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		set_error(h, "%s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	/* As open(2) with 0666 would have made it. */
	mode_t mask = umask(0);
	umask(mask);
	fchmod(fd, 0666 & ~mask);
	struct shipc_obj_info *got = NULL;
	int r = shipc_obj_get_fd(h, bucket, name, fd, o, &got);
	if (r == 0 && (fsync(fd) < 0 || rename(tmp, path) < 0)) {
		set_error(h, "%s: %s", path, strerror(errno));
		r = -1;
	}
	int saved = errno;
	close(fd);
	if (r < 0) {
		unlink(tmp);
		shipc_obj_info_free(got);
	} else if (info) {
		*info = got;
	} else {
		shipc_obj_info_free(got);
	}
	free(tmp);
	errno = saved;
	return r;
}

SHIPC_EXPORT int shipc_obj_get_mem(struct shipc *h, const char *bucket,
                                   const char *name, void **data, size_t *len,
                                   size_t max, struct shipc_obj_info **info)
{
	if (!bucket || !name || !*name || !data || !len)
		return bad_arg(h, "no bucket, object name or output");
	struct xfer *x = xfer_new(h, NULL, NULL);
	if (!x)
		return -1;
	x->to_mem = true;
	x->max = max;
	uint8_t *mem;
	size_t n;
	if (get(x, bucket, name, 0, info, &mem, &n) < 0)
		return -1;
	*data = mem;
	*len = n;
	return 0;
}

/* ---- update meta and links ---- */

SHIPC_EXPORT int shipc_obj_update_meta(struct shipc *h, const char *bucket,
                                       const char *name,
                                       const struct shipc_obj_meta *m)
{
	static const struct shipc_obj_meta none;
	if (!m)
		m = &none;
	if (!bucket || !name || !*name || (m->n_headers && !m->headers) ||
	    (m->n_metadata && !m->metadata))
		return bad_arg(h, "no bucket or object name, or headers missing");
	Ship__Header *hs = calloc(m->n_headers + m->n_metadata + 1, sizeof(*hs));
	Ship__Header **hp = hs ? ship_headers(m->headers, m->n_headers, hs) : NULL;
	Ship__Header **mp = hs ? ship_headers(m->metadata, m->n_metadata,
	                                      hs + m->n_headers)
	                       : NULL;
	int r = -1;
	if (!hs || !hp || !mp) {
		errno = ENOMEM;
		goto out;
	}
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjUpdateMeta u = SHIP__OBJ_UPDATE_META__INIT;
	u.bucket = (char *)bucket;
	u.name = (char *)name;
	u.new_name = (char *)(m->new_name ? m->new_name : "");
	u.description = (char *)(m->description ? m->description : "");
	u.headers = hp;
	u.n_headers = m->n_headers;
	u.metadata = mp;
	u.n_metadata = m->n_metadata;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_UPDATE_META;
	f.obj_update_meta = &u;
	r = obj_call(h, &f, NULL, NULL);
out:
	free(hp);
	free(mp);
	free(hs);
	return r;
}

SHIPC_EXPORT int shipc_obj_link(struct shipc *h, const char *bucket,
                                const char *name, const char *target_bucket,
                                const char *target_name,
                                struct shipc_obj_info **info)
{
	if (!bucket || !name || !*name || !target_bucket)
		return bad_arg(h, "no bucket, object name or target bucket");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjLink l = SHIP__OBJ_LINK__INIT;
	struct shipc_obj_info *out = NULL;
	l.bucket = (char *)bucket;
	l.name = (char *)name;
	l.target_bucket = (char *)target_bucket;
	l.target_name = (char *)(target_name ? target_name : "");
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_LINK;
	f.obj_link = &l;
	if (obj_call(h, &f, info_reply, &out) < 0) {
		free(out);
		return -1;
	}
	if (info)
		*info = out;
	else
		free(out);
	return 0;
}

/* ---- watch ----
 *
 * A watch is a stream whose pushes are ObjectInfo frames, which the
 * connection hands to a call registered under the stream's id (a route,
 * as for transfers, put back after each push), and whose StreamEnd goes
 * to a sub. The route also takes the answer to the opening. A watch is
 * not re-opened after a reconnect: it ends with ECONNRESET. Each of the
 * route, the sub and the opening caller holds a reference; everything in
 * struct obj_watch is under h->mu.
 */

struct obj_watch {
	struct shipc *h;
	shipc_obj_watch_fn *cb;
	void *arg;
	uint64_t id;
	uint64_t gen;
	unsigned refs;
	struct call *route; /* registered for the next frame, or NULL */
	struct sub *s;      /* catches the StreamEnd, or NULL */
	bool answered;      /* shipd took or refused the opening */
	int open_err;
	bool ended;         /* the last callback ran or runs */
	bool stopped;       /* shipc_obj_watch_stop(), or ours: */
	int stop_err;       /* why we stopped it (0: the app did) */
};

static void watch_unref(struct obj_watch *w)
{
	if (!--w->refs)
		free(w);
}

static void watch_push(struct shipc *h, struct call *c,
                       const Ship__ServerFrame *f);
static void watch_lost(struct shipc *h, const struct shipc_msg *m, int err,
                       void *arg);

static int watch_route(struct obj_watch *w)
{
	struct call *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	c->id = w->id;
	c->on_reply = watch_push;
	c->cb = watch_lost;
	c->arg = w;
	c->out = w;
	if (ipc_idmap_put(&w->h->calls, w->id, c) < 0) {
		free(c);
		return -1;
	}
	w->route = c;
	w->refs++;
	return 0;
}

/* Take back the route and the sub, unless the connection has them. */
static void watch_detach(struct obj_watch *w)
{
	struct shipc *h = w->h;
	if (w->route && ipc_idmap_get(&h->calls, w->id) == w->route) {
		ipc_idmap_del(&h->calls, w->id);
		free(w->route);
		w->route = NULL;
		watch_unref(w);
	}
	if (w->s && ipc_idmap_get(&h->subs, w->id) == w->s) {
		ipc_idmap_del(&h->subs, w->id);
		sub_free(w->s);
		w->s = NULL;
		watch_unref(w);
	}
}

/* Lock held, the caller holding a reference: the end, told once. */
static void watch_end(struct obj_watch *w, int err)
{
	if (w->ended)
		return;
	w->ended = true;
	watch_detach(w);
	if (!w->answered) {
		w->answered = true;
		w->open_err = err ? err : ECONNRESET;
		return; /* the opening caller says it */
	}
	pthread_mutex_unlock(&w->h->mu);
	if (w->stopped)
		err = w->stop_err ? w->stop_err : ECANCELED;
	w->cb(w->h, NULL, err ? err : ECANCELED, w->arg);
	pthread_mutex_lock(&w->h->mu);
}

/* Without the lock, holding the route's reference: a frame of the
 * watch's id that is not its end. */
static void watch_push(struct shipc *h, struct call *c,
                       const Ship__ServerFrame *f)
{
	struct obj_watch *w = c->out;
	struct shipc_obj_info *info = NULL;
	bool tell = false;
	pthread_mutex_lock(&h->mu);
	w->route = NULL; /* the connection frees c */
	if (c->err) {
		watch_end(w, c->err);
		goto out;
	}
	if (f->body_case == SHIP__SERVER_FRAME__BODY__NOT_SET)
		w->answered = true;
	if (w->ended)
		goto out;
	/* Put back before the callback, which may read the frames after. */
	if (!h->connected || h->gen != w->gen) {
		watch_end(w, ECONNRESET);
		goto out;
	}
	if (watch_route(w) < 0) {
		watch_end(w, ENOMEM);
		goto out;
	}
	if (f->body_case == SHIP__SERVER_FRAME__BODY_OBJ_INFO && !w->stopped) {
		tell = true;
		if (f->obj_info->name[0] && !(info = info_dup(f->obj_info))) {
			set_error(h, "out of memory for an object watch");
			w->stopped = true;
			w->stop_err = ENOMEM;
			pthread_mutex_unlock(&h->mu);
			shipc_unsubscribe(h, w->id);
			pthread_mutex_lock(&h->mu);
			tell = false;
		}
	}
	if (tell) {
		pthread_mutex_unlock(&h->mu);
		w->cb(h, info, 0, w->arg); /* NULL: the initial ones are done */
		pthread_mutex_lock(&h->mu);
		free(info);
	}
out:
	watch_unref(w);
	pthread_mutex_unlock(&h->mu);
}

/* Without the lock: the route dropped unanswered (connection lost, or
 * the handle closing: ECANCELED). */
static void watch_lost(struct shipc *h, const struct shipc_msg *m, int err,
                       void *arg)
{
	(void)m;
	struct obj_watch *w = arg;
	pthread_mutex_lock(&h->mu);
	w->route = NULL;
	watch_end(w, err ? err : ECONNRESET);
	watch_unref(w);
	pthread_mutex_unlock(&h->mu);
}

/* Without the lock: the StreamEnd (or the handle closing). The
 * connection frees the sub. */
static void watch_sub_end(struct shipc *h, const struct shipc_msg *m, int err,
                          void *arg)
{
	struct obj_watch *w = arg;
	if (m)
		return; /* no deliveries on a watch */
	pthread_mutex_lock(&h->mu);
	w->s = NULL;
	watch_end(w, err);
	watch_unref(w);
	pthread_mutex_unlock(&h->mu);
}

/* Lock held: register w under a new id and send the opening frame. */
static int watch_open(struct obj_watch *w, Ship__ClientFrame *f)
{
	struct shipc *h = w->h;
	if (wait_for_space(h) < 0)
		return -1;
	struct sub *s = calloc(1, sizeof(*s));
	if (!s || !(s->what = strdup("object watch"))) {
		free(s);
		errno = ENOMEM;
		return -1;
	}
	/* Its open frame stays empty: not re-opened after a reconnect. */
	s->cb = watch_sub_end;
	s->arg = w;
	w->id = s->id = ++h->next_id;
	w->gen = h->gen;
	if (ipc_idmap_put(&h->subs, w->id, s) < 0) {
		sub_free(s);
		errno = ENOMEM;
		return -1;
	}
	w->s = s;
	w->refs++;
	f->id = w->id;
	if (watch_route(w) < 0) {
		errno = ENOMEM;
		return -1;
	}
	return queue_frame(h, f, true);
}

/* Lock held: wait for shipd to take the watch (0) or refuse it (an
 * errno); a watch it does not answer in time is stopped. */
static int watch_answer(struct obj_watch *w)
{
	struct shipc *h = w->h;
	uint64_t deadline = now_ms() + OBJ_TIMEOUT_MS;
	while (!w->answered) {
		uint64_t now = now_ms();
		if (now >= deadline) {
			set_error(h, "no answer from shipd");
			watch_end(w, ETIMEDOUT);
			break;
		}
		read_once(h, (int)(deadline - now));
	}
	if (w->open_err == ETIMEDOUT && h->connected) {
		/* Its StreamEnd, if any, finds no sub. */
		Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
		Ship__Unsubscribe u = SHIP__UNSUBSCRIBE__INIT;
		u.stream = w->id;
		f.body_case = SHIP__CLIENT_FRAME__BODY_UNSUBSCRIBE;
		f.unsubscribe = &u;
		queue_frame(h, &f, true);
	}
	return w->open_err;
}

SHIPC_EXPORT uint64_t shipc_obj_watch(struct shipc *h, const char *bucket,
                                      int flags, shipc_obj_watch_fn *cb,
                                      void *arg)
{
	if (!bucket || !cb) {
		bad_arg(h, "no bucket or callback");
		return 0;
	}
	struct obj_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return 0;
	w->h = h;
	w->cb = cb;
	w->arg = arg;
	w->refs = 1;
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjWatch ow = SHIP__OBJ_WATCH__INIT;
	ow.bucket = (char *)bucket;
	ow.include_history = flags & SHIPC_OBJ_WATCH_HISTORY;
	ow.updates_only = flags & SHIPC_OBJ_WATCH_UPDATES_ONLY;
	ow.ignore_deletes = flags & SHIPC_OBJ_WATCH_IGNORE_DELETES;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_WATCH;
	f.obj_watch = &ow;
	pthread_mutex_lock(&h->mu);
	uint64_t id = 0;
	int err;
	if (watch_open(w, &f) < 0) {
		err = errno;
		w->ended = w->answered = true;
		watch_detach(w);
	} else if ((err = watch_answer(w)) == 0) {
		id = w->id;
	}
	watch_unref(w);
	pthread_mutex_unlock(&h->mu);
	if (!id)
		errno = err;
	return id;
}

SHIPC_EXPORT int shipc_obj_watch_stop(struct shipc *h, uint64_t watch)
{
	pthread_mutex_lock(&h->mu);
	struct sub *s = sub_find(h, watch);
	bool ok = s && s->cb == watch_sub_end;
	if (ok)
		((struct obj_watch *)s->arg)->stopped = true;
	pthread_mutex_unlock(&h->mu);
	if (!ok) {
		errno = ENOENT;
		return -1;
	}
	/* shipd ends the stream; its StreamEnd says ECANCELED. */
	return shipc_unsubscribe(h, watch);
}
