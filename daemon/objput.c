/* SPDX-License-Identifier: MIT */
/* Object Store puts: chunks from the app, acked one by one, then the
 * meta; and the settling of puts a previous run left in its journal. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objstore.h"

/* ---- put: chunks from the app, acked one by one, then the meta ---- */

enum put_state { PUT_LOOKUP, PUT_CHUNKS, PUT_META, PUT_PURGE };

struct objput;
struct pchunk { /* a chunk to publish in its turn, then its ack awaited */
	TAILQ_ENTRY(pchunk) entry;
	uint8_t *data; /* held until published, then NULL */
	bool published;
	struct objput *p;
	struct js_call *call;
	size_t len;
};

/* Once the meta is sent, the put is the object's: an abort, an
 * Unsubscribe or the app leaving no longer undo it. It finishes (alone,
 * st.c NULL, on loose_puts, if the app left) and only a definite "no" to
 * the meta purges its chunks; the old version's chunks are purged once
 * it is stored. A put undone before waits for the acks of the chunks in
 * flight (or their timeouts), so that its purge comes after them. */
struct objput {
	struct stream st; /* st.c is NULL once the app is gone */
	enum put_state state;
	char bucket[KV_NAME_MAX];
	char meta[IPC_SUBJECT_MAX + 1];
	char chunks_subj[KV_NAME_MAX + NUID_LEN + 16];
	char nuid[NUID_LEN + 1];
	char *old_nuid; /* the version this one replaces, if any */
	json_t *info;   /* the meta to store, without its counts */
	uint32_t chunk_size;
	uint32_t credit; /* chunks the app may still send */
	uint32_t inflight;
	bool last;
	bool published; /* some chunk went to NATS */
	bool draining;  /* undone: purge once the chunks in flight are acked */
	bool too_late;  /* aborted once the meta was sent */
	bool loose;     /* on loose_puts */
	bool if_absent;
	uint64_t expect; /* the meta's last sequence, for if_absent */
	uint64_t size;
	uint32_t chunks;
	struct ipc_sha256 sha;
	struct lookup *lookup;
	struct js_call *call; /* the meta, then the old chunks' purge */
	struct event *idle;   /* no chunk for PUT_IDLE_S ends it */
	TAILQ_HEAD(, pchunk) pending;
	uint32_t unpublished; /* of pending: waiting for their turn */
	bool gated;           /* on gate_queue */
	TAILQ_ENTRY(objput) gate_entry;
	TAILQ_ENTRY(objput) entry;
};

static TAILQ_HEAD(, objput) loose_puts = TAILQ_HEAD_INITIALIZER(loose_puts);

/* Chunks of all puts on their way to NATS share one budget: every other
 * app's message on the link queues behind them, so two puts with their
 * whole windows out would hold a third app's request back by megabytes.
 * A chunk that finds the budget spent waits, in its put's order; puts
 * take turns. */
#define LINK_CHUNKS_MAX 2
static TAILQ_HEAD(, objput) gate_queue = TAILQ_HEAD_INITIALIZER(gate_queue);
static unsigned link_chunks; /* published, not yet acked */

static void gate_leave(struct objput *p)
{
	if (p->gated) {
		TAILQ_REMOVE(&gate_queue, p, gate_entry);
		p->gated = false;
	}
}

static void put_free(struct objput *p)
{
	struct pchunk *pc, *t;
	stream_close(&p->st);
	if (p->loose)
		TAILQ_REMOVE(&loose_puts, p, entry);
	gate_leave(p);
	obj_lookup_cancel(p->lookup);
	js_cancel(p->call);
	TAILQ_FOREACH_SAFE(pc, &p->pending, entry, t)
	{
		if (pc->published)
			link_chunks--;
		js_cancel(pc->call);
		free(pc->data);
		free(pc);
	}
	if (p->idle)
		event_free(p->idle);
	json_decref(p->info);
	free(p->old_nuid);
	free(p);
}

/* Answer nobody from now on; the put goes on alone. */
static void put_detach(struct objput *p)
{
	stream_close(&p->st);
	if (p->idle)
		evtimer_del(p->idle);
	if (!p->loose) {
		p->loose = true;
		TAILQ_INSERT_TAIL(&loose_puts, p, entry);
	}
}

/* Nothing of the put may stay: purge its chunks once none is in flight. */
static void put_undo(struct objput *p)
{
	struct pchunk *pc, *t;
	gate_leave(p);
	TAILQ_FOREACH_SAFE(pc, &p->pending, entry, t)
	{
		if (pc->published)
			continue;
		TAILQ_REMOVE(&p->pending, pc, entry);
		stream_unhold(&p->st, pc->len);
		p->inflight--;
		p->unpublished--;
		free(pc->data);
		free(pc);
	}
	if (p->inflight) {
		p->draining = true;
		put_detach(p);
		return;
	}
	if (p->published) {
		ojournal_purge(p->bucket, p->nuid);
		obj_purge_forget(p->bucket, p->nuid);
	} else
		ojournal_end(p->nuid);
	put_free(p);
}

static void put_end_frame(struct objput *p, Ship__Code code, bool unknown,
			  const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put_end_frame(struct objput *p, Ship__Code code, bool unknown,
			  const char *fmt, ...)
{
	if (!p->st.c)
		return;
	char text[640];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	stream_end_send(&p->st, code, unknown, text, p->chunks, 0);
}

/* End the put with e. Before the meta, nothing is visible and its
 * chunks are purged; after it (e is the meta's answer), they are purged
 * on a definite no, and kept when it may be stored. */
static void put_fail(struct objput *p, const struct js_err *e)
{
	bool unknown = p->state >= PUT_META && e->unknown;
	const char *name = obj_jstr(p->info, "name");
	put_end_frame(p, e->code, unknown, "put of '%.*s' in bucket '%s': %s",
		      CUT(name, 64), p->bucket, e->text);
	stream_close(&p->st);
	if (unknown)
		put_free(p);
	else
		put_undo(p);
}

static void put_fail_code(struct objput *p, Ship__Code code, const char *why)
{
	struct js_err e;
	kv_set_err(&e, code, "%s", why);
	put_fail(p, &e);
}

static void put_idle_arm(struct objput *p)
{
	struct timeval tv = {PUT_IDLE_S, 0};
	if (p->idle && p->st.c)
		evtimer_add(p->idle, &tv);
}

/* An app that stops sending would hold its stream, credit and memory
 * forever: PUT_IDLE_S without a chunk (while it has credit) ends the put
 * with TIMEOUT, nothing stored. */
static void put_idle(evutil_socket_t fd, short what, void *arg)
{
	struct objput *p = arg;
	if (p->state == PUT_CHUNKS && !p->last && p->credit) {
		char why[64];
		snprintf(why, sizeof(why), "no chunk for %d s", PUT_IDLE_S);
		put_fail_code(p, SHIP__CODE__TIMEOUT, why);
	}
	control_flush();
}

static void push_credit(struct objput *p, uint32_t n)
{
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__ObjPutCredit pc = SHIP__OBJ_PUT_CREDIT__INIT;
	pc.stream = p->st.id;
	pc.chunks = n;
	f.id = p->st.id;
	f.body_case = SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT;
	f.obj_put_credit = &pc;
	p->credit += n;
	/* Not droppable: credit lost would stall the put. */
	client_send(p->st.c, &f);
	put_idle_arm(p);
}

static void put_done(struct objput *p)
{
	if (p->st.c) {
		obj_send_info(p->st.c, p->st.id, p->info, obj_wall_ns());
		put_end_frame(p, SHIP__CODE__OK, false, "%s",
			      p->too_late ? "too late to abort: stored" : "");
	}
	put_free(p);
}

static void old_purged(void *arg, json_t *reply, const struct js_err *e)
{
	struct objput *p = arg;
	p->call = NULL;
	if (e) { /* The object is stored; the old chunks are only waste. */
		log_warnx("%s: bucket %s: old chunks %s not purged: %s",
			  __func__, p->bucket, p->old_nuid, e->text);
		obj_purge_failed(p->bucket, p->old_nuid, e);
	} else
		ojournal_end(p->old_nuid);
	put_done(p);
}

static void meta_stored(void *arg, uint64_t seq, bool dup,
			const struct js_err *e)
{
	struct objput *p = arg;
	p->call = NULL;
	if (e && p->if_absent && e->err_code == 10071) {
		/* Taken since the lookup: nothing of this put is stored. */
		struct js_err taken;
		kv_set_err(&taken, SHIP__CODE__ALREADY_EXISTS,
			   "the name was taken while the put was on its way");
		put_fail(p, &taken);
		return;
	}
	if (e) {
		put_fail(p, e);
		return;
	}
	p->state = PUT_PURGE;
	bool old = p->old_nuid && strcmp(p->old_nuid, p->nuid);
	if (old)
		ojournal_purge(p->bucket, p->old_nuid);
	ojournal_end(p->nuid);
	if (old && (p->call = obj_purge(p->bucket, p->old_nuid, old_purged, p)))
		return;
	put_done(p);
}

static void put_meta(struct objput *p)
{
	char digest[DIGEST_MAX], now[48];
	struct js_err err;
	if (p->idle)
		evtimer_del(p->idle);
	obj_digest_string(&p->sha, digest, sizeof(digest));
	json_object_set_new(p->info, "size", json_integer((json_int_t)p->size));
	/* Any RFC 3339 time reads (Go writes its zero time, nats.js now):
	 * readers take the message's own time. */
	obj_rfc3339_now(now, sizeof(now));
	json_object_set_new(p->info, "mtime", json_string(now));
	json_object_set_new(p->info, "chunks", json_integer(p->chunks));
	json_object_set_new(p->info, "digest", json_string(digest));
	p->state = PUT_META;
	ojournal_meta(p->nuid);
	if (!(p->call = obj_publish_meta_if(p->meta, json_incref(p->info),
					p->if_absent ? p->expect : NO_EXPECT,
					meta_stored, p, &err)))
		put_fail(p, &err); /* not sent: a definite no */
}

static void chunk_acked(void *arg, uint64_t seq, bool dup,
			const struct js_err *e);

/* Publish waiting chunks while the link's budget allows, a put at a
 * time round the queue. */
static void gate_run(void)
{
	struct objput *p;
	while (link_chunks < LINK_CHUNKS_MAX &&
	       (p = TAILQ_FIRST(&gate_queue))) {
		struct pchunk *pc;
		gate_leave(p);
		TAILQ_FOREACH(pc, &p->pending, entry)
		if (!pc->published)
			break;
		if (!pc)
			continue;
		pc->call = js_publish_id(p->chunks_subj, NULL, pc->data, pc->len,
					 conf->request_timeout_ms, chunk_acked,
					 pc);
		if (!pc->call) {
			struct js_err err;
			obj_unavailable(&err);
			put_fail(p, &err);
			continue;
		}
		free(pc->data);
		pc->data = NULL;
		pc->published = true;
		p->published = true;
		p->unpublished--;
		link_chunks++;
		if (p->unpublished) {
			TAILQ_INSERT_TAIL(&gate_queue, p, gate_entry);
			p->gated = true;
		}
	}
}

static void chunk_done(struct objput *p, const struct js_err *e)
{
	if (p->draining) {
		if (!p->inflight)
			put_undo(p);
		return;
	}
	if (e) {
		put_fail(p, e);
		return;
	}
	if (!p->last)
		push_credit(p, 1);
	else if (!p->inflight)
		put_meta(p);
}

static void chunk_acked(void *arg, uint64_t seq, bool dup,
			const struct js_err *e)
{
	struct pchunk *pc = arg;
	struct objput *p = pc->p;
	TAILQ_REMOVE(&p->pending, pc, entry);
	stream_unhold(&p->st, pc->len);
	free(pc);
	p->inflight--;
	link_chunks--;
	chunk_done(p, e);
	gate_run();
}

/* The old version is known: the app may send. */
static void put_looked_up(void *arg, natsMsg *msg, natsStatus st)
{
	struct objput *p = arg;
	struct js_err err;
	json_t *j;
	uint64_t mtime;
	const char *seq = NULL;
	p->lookup = NULL;
	if (st == NATS_OK && msg &&
	    natsMsgHeader_Get(msg, "Nats-Sequence", &seq) == NATS_OK && seq)
		p->expect = strtoull(seq, NULL, 10);
	int rc = obj_meta_result(msg, st, p->bucket, &j, &mtime, &err);
	if (rc == -2) /* unreadable: as if there were no version */
		log_warnx("%s: %s", __func__, err.text);
	else if (rc < 0) {
		put_fail(p, &err);
		return;
	}
	if (p->if_absent && (rc != 0 && (rc < 0 || !obj_jdeleted(j)))) {
		json_decref(j);
		put_fail_code(p, SHIP__CODE__ALREADY_EXISTS,
			      "an object of that name exists");
		return;
	}
	if (rc == 0)
		p->expect = 0;
	if (rc > 0 && !obj_jdeleted(j) && *obj_jstr(j, "nuid") &&
	    !(p->old_nuid = strdup(obj_jstr(j, "nuid")))) {
		json_decref(j);
		put_fail_code(p, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	json_decref(j);
	p->state = PUT_CHUNKS;
	ojournal_begin(p->bucket, p->nuid, p->old_nuid, p->meta);
	push_credit(p, PUT_WINDOW);
}

/* An abort or an Unsubscribe: undone before the meta; after, the put's
 * own end says it came too late. */
static void put_abort(struct objput *p)
{
	if (p->state >= PUT_META) {
		p->too_late = true;
		return;
	}
	put_fail_code(p, SHIP__CODE__OK, "aborted: nothing stored");
}

static void put_stream_end(struct stream *st)
{
	put_abort(container_of(st, struct objput, st));
}

static void put_stream_gone(struct stream *st)
{
	struct objput *p = container_of(st, struct objput, st);
	if (p->state >= PUT_META)
		put_detach(p);
	else
		put_undo(p);
}

static const struct stream_kind put_kind = {
    .name = "object put",
    .end = put_stream_end,
    .gone = put_stream_gone,
};

/* The meta the put stores, without what the chunks make. */
static json_t *put_info(const Ship__ObjPut *r, uint32_t chunk_size,
			const char *nuid, char *why, size_t size)
{
	json_t *j = json_object();
	if (!j) {
		snprintf(why, size, "out of memory");
		return NULL;
	}
	json_object_set_new(j, "name", json_string(r->name));
	if (obj_meta_fields(j, r->description, r->headers, r->n_headers,
			r->metadata, r->n_metadata, why, size) < 0) {
		json_decref(j);
		return NULL;
	}
	json_object_set_new(
	    j, "options",
	    json_pack("{s:i}", "max_chunk_size", (int)chunk_size));
	json_object_set_new(j, "bucket", json_string(r->bucket));
	json_object_set_new(j, "nuid", json_string(nuid));
	return j;
}

void obj_handle_put(struct client *c, uint64_t id, const Ship__ObjPut *r)
{
	char meta[IPC_SUBJECT_MAX + 1], why[128];
	if (!obj_check_bucket(c, id, r->bucket) ||
	    !obj_check_name(c, id, r->bucket, r->name, meta, sizeof(meta)))
		return;
	uint32_t cs = r->chunk_size ? r->chunk_size : CHUNK_DEFAULT;
	int64_t maxp = link_info()->max_payload;
	/* A chunk and its frame's few bytes of fields fit one frame. */
	if ((maxp > 0 && cs > maxp) || (uint64_t)cs + 64 > conf->max_frame) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
			     "chunk size %u is over the server's max payload "
			     "(%" PRId64 ") or the frame limit (%u)",
			     cs, maxp, conf->max_frame);
		return;
	}
	if (strlen(r->description) > DESCRIPTION_MAX) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
			     "description over %d bytes", DESCRIPTION_MAX);
		return;
	}
	if (!client_allowed(c, id, POL_OBJ_WRITE, r->bucket))
		return;
	if (!link_connected()) {
		struct js_err err;
		obj_unavailable(&err);
		client_js_error(c, id, &err);
		return;
	}
	struct objput *p = calloc(1, sizeof(*p));
	if (!p) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	TAILQ_INIT(&p->pending);
	obj_new_nuid(p->nuid);
	if (!(p->info = put_info(r, cs, p->nuid, why, sizeof(why)))) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT, "%s", why);
		put_free(p);
		return;
	}
	/* The meta is one message: what the chunks add (size, chunks, mtime,
	 * digest) is under META_COUNTS bytes. It is held until the put ends. */
	char *text = json_dumps(p->info, JSON_COMPACT);
	bool dumped = text != NULL;
	size_t meta_len = (text ? strlen(text) : 0) + META_COUNTS;
	free(text);
	if (!dumped || (maxp > 0 && meta_len > (uint64_t)maxp)) {
		if (dumped)
			client_error(
			    c, id, SHIP__CODE__INVALID_ARGUMENT,
			    "the object's meta (name, description, headers and "
			    "metadata) is %zu bytes, over the server's max "
			    "payload "
			    "(%" PRId64 ")",
			    meta_len, maxp);
		else
			client_error(c, id, SHIP__CODE__INTERNAL,
				     "out of memory");
		put_free(p);
		return;
	}
	if (!(p->idle = evtimer_new(base, put_idle, p))) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		put_free(p);
		return;
	}
	if (!stream_open(&p->st, &put_kind, c, id)) {
		put_free(p);
		return;
	}
	snprintf(p->bucket, sizeof(p->bucket), "%s", r->bucket);
	snprintf(p->meta, sizeof(p->meta), "%s", meta);
	snprintf(p->chunks_subj, sizeof(p->chunks_subj), "$O.%s.C.%s",
		 r->bucket, p->nuid);
	p->chunk_size = cs;
	p->if_absent = r->if_absent;
	ipc_sha256_init(&p->sha);
	if (!stream_hold(&p->st, meta_len)) {
		put_fail_code(p, SHIP__CODE__RESOURCE_EXHAUSTED,
			      "its meta is over the memory this app may hold");
		return;
	}
	log_debug("%s: client %" PRIu64 " put %s in %s as %s", __func__, c->cid,
		  r->name, r->bucket, p->nuid);
	if (!(p->lookup = obj_get_meta(p->bucket, meta, put_looked_up, p))) {
		struct js_err err;
		obj_unavailable(&err);
		put_fail(p, &err);
	}
}

void obj_handle_chunk(struct client *c, uint64_t id,
			 const Ship__ObjPutChunk *ch)
{
	struct stream *st = stream_find(c, ch->stream, &put_kind);
	if (!st) {
		client_error(c, id, SHIP__CODE__NOT_FOUND,
			     "no object put %" PRIu64 " open", ch->stream);
		return;
	}
	struct objput *p = container_of(st, struct objput, st);
	size_t len = ch->data.len;
	char why[160];
	if (ch->abort) {
		put_abort(p);
		return;
	}
	if (p->state >= PUT_META) {
		/* The object is being stored: this chunk changes nothing. */
		if (id)
			client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
				     "a chunk after the last of put %" PRIu64,
				     ch->stream);
		return;
	}
	if (p->state != PUT_CHUNKS || p->last || !p->credit) {
		snprintf(why, sizeof(why), "a chunk past the credit granted");
		goto bad;
	}
	if (len > p->chunk_size || (!len && !ch->last)) {
		snprintf(why, sizeof(why),
			 "a chunk of %zu bytes (1 to %u; 0 only with last)",
			 len, p->chunk_size);
		goto bad;
	}
	if (p->chunks == UINT32_MAX - 1) {
		snprintf(why, sizeof(why), "too many chunks");
		goto bad;
	}
	p->credit--;
	p->last = ch->last;
	put_idle_arm(p);
	if (len) {
		struct pchunk *pc = calloc(1, sizeof(*pc));
		if (!pc || !stream_hold(&p->st, len)) {
			free(pc);
			put_fail_code(p, SHIP__CODE__RESOURCE_EXHAUSTED,
				      "over the memory this app may hold");
			return;
		}
		pc->p = p;
		pc->len = len;
		if (!(pc->data = malloc(len))) {
			stream_unhold(&p->st, len);
			free(pc);
			put_fail_code(p, SHIP__CODE__INTERNAL, "out of memory");
			return;
		}
		memcpy(pc->data, ch->data.data, len);
		TAILQ_INSERT_TAIL(&p->pending, pc, entry);
		p->inflight++;
		p->unpublished++;
		if (!p->gated) {
			TAILQ_INSERT_TAIL(&gate_queue, p, gate_entry);
			p->gated = true;
		}
		ipc_sha256_update(&p->sha, ch->data.data, len);
		p->size += len;
		p->chunks++;
	}
	if (p->last && !p->inflight)
		put_meta(p);
	gate_run(); /* p may be gone after */
	return;
bad:
	put_fail_code(p, SHIP__CODE__INVALID_ARGUMENT, why);
}

/* ---- what a put cut by shipd's end left: settled once NATS is up ---- */

/* A put journaled open by the last run: if its meta is the object's now,
 * the version it replaced is waste; if not, its own chunks are, unless
 * its meta was sent and no meta of that name is found: stored, then
 * renamed, cannot be told from never stored, and the chunks stay. */
#define SETTLE_INFLIGHT 8

struct settle {
	TAILQ_ENTRY(settle) entry;
	struct ojentry *e;
	struct lookup *lk;
	struct js_call *call;
};
static TAILQ_HEAD(, settle) settles = TAILQ_HEAD_INITIALIZER(settles);
static unsigned n_settling;

static void settle_more(void);

static void settle_end(struct settle *s, bool done)
{
	TAILQ_REMOVE(&settles, s, entry);
	n_settling--;
	obj_lookup_cancel(s->lk);
	js_cancel(s->call);
	if (done)
		ojournal_end(s->e->nuid); /* frees s->e */
	else
		s->e->settling = false; /* again at the next link up */
	free(s);
}

static void settle_purged(void *arg, json_t *reply, const struct js_err *e)
{
	struct settle *s = arg;
	s->call = NULL;
	bool done = !e || kv_no_stream(e);
	if (!done)
		log_warnx("%s: OBJ_%s: chunks of %s: %s", __func__,
			  s->e->bucket, s->e->nuid, e->text);
	else
		log_info("objstore: settled put %s of OBJ_%s left by the last "
			 "run",
			 s->e->nuid, s->e->bucket);
	settle_end(s, done);
	if (done)
		settle_more();
}

static bool settle_purge(struct settle *s, const char *nuid)
{
	char what[KV_NAME_MAX + 32], filter[IPC_SUBJECT_MAX + 1];
	snprintf(what, sizeof(what), "STREAM.PURGE.OBJ_%s", s->e->bucket);
	snprintf(filter, sizeof(filter), "$O.%s.C.%s", s->e->bucket, nuid);
	s->call = js_api(what, json_pack("{s:s}", "filter", filter),
			 API_TIMEOUT_MS, settle_purged, s);
	return s->call != NULL;
}

static void settle_looked_up(void *arg, natsMsg *msg, natsStatus st)
{
	struct settle *s = arg;
	struct ojentry *e = s->e;
	struct js_err err;
	json_t *j;
	uint64_t mtime;
	s->lk = NULL;
	int rc = obj_meta_result(msg, st, e->bucket, &j, &mtime, &err);
	if (st == NATS_NO_RESPONDERS) { /* the bucket went, chunks and all */
		settle_end(s, true);
		settle_more();
		return;
	}
	if (rc == -1) {
		log_warnx("%s: OBJ_%s: put %s: %s", __func__, e->bucket,
			  e->nuid, err.text);
		settle_end(s, false);
		return;
	}
	bool ours = rc > 0 && !obj_jdeleted(j) &&
		    !strcmp(obj_jstr(j, "nuid"), e->nuid);
	json_decref(j);
	const char *waste = NULL;
	if (ours)
		waste = e->old[0] && strcmp(e->old, e->nuid) ? e->old : NULL;
	else if (rc == 0 && e->meta_sent)
		log_warnx("objstore: put %s of OBJ_%s was cut after its meta "
			  "was sent and no meta of its name is found: its "
			  "chunks stay (it may have been stored and renamed)",
			  e->nuid, e->bucket);
	else
		waste = e->nuid;
	if (!waste) {
		settle_end(s, true);
		settle_more();
	} else if (!settle_purge(s, waste))
		settle_end(s, false);
}

static void settle_more(void)
{
	struct ojentry *e;
	while (n_settling < SETTLE_INFLIGHT && link_connected() &&
	       (e = ojournal_next(NULL))) {
		struct settle *s = calloc(1, sizeof(*s));
		if (!s)
			return;
		s->e = e;
		e->settling = true;
		TAILQ_INSERT_TAIL(&settles, s, entry);
		n_settling++;
		bool sent = e->kind == 'X'
				? settle_purge(s, e->nuid)
				: (s->lk = obj_get_meta(e->bucket, e->meta,
						    settle_looked_up, s)) != NULL;
		if (!sent) {
			settle_end(s, false);
			return;
		}
	}
}

void objput_link_up(void)
{
	settle_more();
}

/* Puts that outlived their app stop; what they would purge stays, in the
 * journal. */
void objput_finish(void)
{
	struct objput *p;
	struct settle *s;
	while ((p = TAILQ_FIRST(&loose_puts)))
		put_free(p);
	while ((s = TAILQ_FIRST(&settles)))
		settle_end(s, false);
}
