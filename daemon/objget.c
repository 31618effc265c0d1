/* SPDX-License-Identifier: MIT */
/* Object Store gets: the meta, then chunks by direct get as the app
 * grants credit, the digest checked at the end. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objstore.h"

/* ---- get: the meta, then chunks by direct get, as the app grants ---- */

struct objget {
	struct stream st; /* st.c is NULL once the app is gone */
	char bucket[KV_NAME_MAX];
	char name[OBJ_NAME_MAX + 1];
	char chunks_subj[KV_NAME_MAX + 160];
	char digest[DIGEST_MAX];
	bool linked;   /* a link was followed already */
	bool chunking; /* the info went out, chunks come */
	uint64_t credit;
	uint64_t size, got_size;
	uint32_t chunks, fetched;
	uint64_t next_seq;
	uint64_t delivered;
	struct ipc_sha256 sha;
	struct link_wait *wait;
	struct lookup *lk;
	natsMsg *held; /* fetched, waiting for credit or room */
	struct event *later;
};

static void get_free(struct objget *g)
{
	stream_close(&g->st);
	link_wait_cancel(g->wait);
	obj_lookup_cancel(g->lk);
	link_msg_destroy(g->held);
	if (g->later)
		event_free(g->later);
	free(g);
}

static void get_end(struct objget *g, Ship__Code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void get_end(struct objget *g, Ship__Code code, const char *fmt, ...)
{
	if (g->st.c) {
		char text[512];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
		stream_end_send(&g->st, code, false, text, g->delivered, 0);
	}
	get_free(g);
}

/* A digest "SHA-256=<base64>" as its 32 bytes: base64url or the standard
 * alphabet, padded or not (nats.js writes either). */
static bool digest_bytes(const char *s, uint8_t out[IPC_SHA256_LEN])
{
	static const char prefix[] = "SHA-256=";
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0;
	if (strncmp(s, prefix, sizeof(prefix) - 1))
		return false;
	for (s += sizeof(prefix) - 1; *s && *s != '='; s++) {
		int v;
		if (*s >= 'A' && *s <= 'Z')
			v = *s - 'A';
		else if (*s >= 'a' && *s <= 'z')
			v = *s - 'a' + 26;
		else if (*s >= '0' && *s <= '9')
			v = *s - '0' + 52;
		else if (*s == '-' || *s == '+')
			v = 62;
		else if (*s == '_' || *s == '/')
			v = 63;
		else
			return false;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == IPC_SHA256_LEN)
				return false;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	while (*s == '=')
		s++;
	return !*s && n == IPC_SHA256_LEN;
}

static void get_verify(struct objget *g)
{
	uint8_t d[IPC_SHA256_LEN], want[IPC_SHA256_LEN];
	char enc[48];
	ipc_sha256_final(&g->sha, d);
	ipc_base64url(d, sizeof(d), enc, sizeof(enc));
	if (g->got_size != g->size)
		get_end(g, SHIP__CODE__CORRUPT,
			"object '%.*s' in bucket '%s': %" PRIu64
			" bytes stored, its info says %" PRIu64,
			CUT(g->name, 200), g->bucket, g->got_size, g->size);
	else if (!digest_bytes(g->digest, want) || memcmp(d, want, sizeof(d)))
		get_end(g, SHIP__CODE__CORRUPT,
			"object '%.*s' in bucket '%s' is corrupt: digest "
			"SHA-256=%s, "
			"its info says %s",
			CUT(g->name, 200), g->bucket, enc, g->digest);
	else
		get_end(g, SHIP__CODE__OK, "%s", "");
}

static void get_later(struct objget *g)
{
	struct timeval tv = {0, GET_LATER_MS * 1000};
	evtimer_add(g->later, &tv);
}

static void chunk_got(void *arg, natsMsg *msg, natsStatus st);

static void get_fetch(struct objget *g)
{
	char body[KV_NAME_MAX + 256];
	if (g->wait || g->held || g->fetched >= g->chunks)
		return;
	/* Not while the app's socket holds half of what it may. */
	if (g->st.c &&
	    ipc_buf_used(&g->st.c->out) > conf->client_output_limit / 2) {
		get_later(g);
		return;
	}
	if (!link_connected()) {
		get_end(g, SHIP__CODE__UNAVAILABLE,
			"NATS is not connected (%s)",
			link_state_name(link_info()->state));
		return;
	}
	snprintf(body, sizeof(body),
		 "{\"seq\":%" PRIu64 ",\"next_by_subj\":\"%s\"}", g->next_seq,
		 g->chunks_subj);
	g->wait = link_wait_new(conf->request_timeout_ms, false, chunk_got, g);
	if (obj_direct_get(g->bucket, g->wait, body) < 0) {
		link_wait_cancel(g->wait);
		g->wait = NULL;
		get_end(g, SHIP__CODE__UNAVAILABLE, "cannot send to NATS");
	}
}

/* Push what is held while the app has credit and room; then fetch on. */
static void get_deliver(struct objget *g)
{
	if (g->held && g->credit) {
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__ObjChunk oc = SHIP__OBJ_CHUNK__INIT;
		oc.data.data = (uint8_t *)natsMsg_GetData(g->held);
		oc.data.len = (size_t)natsMsg_GetDataLength(g->held);
		f.id = g->st.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_OBJ_CHUNK;
		f.obj_chunk = &oc;
		if (client_push(g->st.c, &f) < 0) {
			get_later(g);
			return;
		}
		stream_unhold(&g->st, oc.data.len);
		link_msg_destroy(g->held);
		g->held = NULL;
		g->credit--;
		g->delivered++;
	}
	if (!g->held && g->fetched >= g->chunks) {
		get_verify(g);
		return;
	}
	get_fetch(g);
}

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
	get_deliver(arg);
	control_flush();
}

/* A chunk that no frame to the app can carry would be tried forever; one
 * held is charged to the app until it is delivered. false: msg is freed
 * and the get ended. */
static bool get_fits(struct objget *g, natsMsg *msg, size_t len)
{
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__ObjChunk oc = SHIP__OBJ_CHUNK__INIT;
	oc.data.data = (uint8_t *)natsMsg_GetData(msg);
	oc.data.len = len;
	f.id = g->st.id;
	f.body_case = SHIP__SERVER_FRAME__BODY_OBJ_CHUNK;
	f.obj_chunk = &oc;
	size_t size = ship__server_frame__get_packed_size(&f);
	if (size > IPC_FRAME_LIMIT || size + IPC_HDR_LEN > conf->max_frame) {
		link_msg_destroy(msg);
		get_end(g, SHIP__CODE__RESOURCE_EXHAUSTED,
			"object '%.*s' in bucket '%s': a chunk of %zu bytes "
			"does not "
			"fit a frame (max_frame %u)",
			CUT(g->name, 200), g->bucket, len, conf->max_frame);
		return false;
	}
	if (!stream_hold(&g->st, len)) {
		link_msg_destroy(msg);
		get_end(g, SHIP__CODE__RESOURCE_EXHAUSTED,
			"object '%.*s' in bucket '%s': a chunk of %zu bytes is "
			"over "
			"the memory this app may hold",
			CUT(g->name, 200), g->bucket, len);
		return false;
	}
	return true;
}

static void chunk_got(void *arg, natsMsg *msg, natsStatus st)
{
	struct objget *g = arg;
	const char *status = NULL, *seq = NULL, *subj = NULL;
	g->wait = NULL;
	if (st != NATS_OK) {
		get_end(g,
			st == NATS_TIMEOUT ? SHIP__CODE__TIMEOUT
					   : SHIP__CODE__UNAVAILABLE,
			"object '%.*s' in bucket '%s': %s", CUT(g->name, 200),
			g->bucket,
			st == NATS_TIMEOUT ? "JetStream did not answer in time"
					   : "NATS connection lost");
		return;
	}
	natsMsgHeader_Get(msg, "Status", &status);
	natsMsgHeader_Get(msg, "Nats-Sequence", &seq);
	natsMsgHeader_Get(msg, "Nats-Subject", &subj);
	if (status && !strcmp(status, "404")) {
		link_msg_destroy(msg);
		get_end(
		    g, SHIP__CODE__CORRUPT,
		    "object '%.*s' in bucket '%s': missing chunks (%u of %u "
		    "found)",
		    CUT(g->name, 200), g->bucket, g->fetched, g->chunks);
		return;
	}
	if (status || !seq || !subj || strcmp(subj, g->chunks_subj)) {
		link_msg_destroy(msg);
		get_end(g, SHIP__CODE__INTERNAL,
			"object '%.*s' in bucket '%s': direct get answered "
			"status %s",
			CUT(g->name, 200), g->bucket, status ? status : "?");
		return;
	}
	size_t len = (size_t)natsMsg_GetDataLength(msg);
	g->next_seq = strtoull(seq, NULL, 10) + 1;
	g->fetched++;
	g->got_size += len;
	ipc_sha256_update(&g->sha, natsMsg_GetData(msg), len);
	if (g->got_size > g->size) {
		link_msg_destroy(msg);
		get_verify(g); /* says the sizes differ */
		return;
	}
	if (!get_fits(g, msg, len))
		return;
	g->held = msg;
	get_deliver(g);
}

static void meta_got(void *arg, natsMsg *msg, natsStatus st);

static int get_lookup(struct objget *g)
{
	char meta[IPC_SUBJECT_MAX + 1];
	if (!obj_meta_subject(g->bucket, g->name, meta, sizeof(meta))) {
		get_end(g, SHIP__CODE__INVALID_ARGUMENT,
			"object name '%.*s' makes no meta subject",
			CUT(g->name, 64));
		return -1;
	}
	if (!(g->lk = obj_get_meta(g->bucket, meta, meta_got, g))) {
		get_end(g, SHIP__CODE__UNAVAILABLE,
			"NATS is not connected (%s)",
			link_state_name(link_info()->state));
		return -1;
	}
	return 0;
}

/* A link is followed once: to an object of this or another bucket. */
static void get_follow(struct objget *g, json_t *j)
{
	json_t *link = json_object_get(json_object_get(j, "options"), "link");
	const char *lb = obj_jstr(link, "bucket"), *ln = obj_jstr(link, "name");
	if (!*ln) {
		get_end(
		    g, SHIP__CODE__INVALID_ARGUMENT,
		    "object '%.*s' in bucket '%s' is a link to bucket '%.*s'",
		    CUT(g->name, 200), g->bucket, CUT(lb, 64));
		return;
	}
	if (g->linked || !obj_bucket_valid(lb)) {
		get_end(
		    g, SHIP__CODE__INVALID_ARGUMENT,
		    "object '%.*s' in bucket '%s' is a link to a link or to "
		    "an invalid bucket",
		    CUT(g->name, 200), g->bucket);
		return;
	}
	if (g->st.c &&
	    !policy_allows(g->st.c->pol, POL_OBJ_READ, lb, NULL, 0)) {
		get_end(g, SHIP__CODE__PERMISSION_DENIED,
			"object '%.*s' in bucket '%s' links to bucket '%.*s', "
			"which this app may not obj-read",
			CUT(g->name, 200), g->bucket, CUT(lb, 64));
		return;
	}
	g->linked = true;
	snprintf(g->bucket, sizeof(g->bucket), "%s", lb);
	snprintf(g->name, sizeof(g->name), "%s", ln);
	get_lookup(g);
}

static void meta_got(void *arg, natsMsg *msg, natsStatus st)
{
	struct objget *g = arg;
	struct js_err err;
	json_t *j;
	uint64_t mtime = 0;
	g->lk = NULL;
	int rc = obj_meta_result(msg, st, g->bucket, &j, &mtime, &err);
	if (rc < 0) {
		get_end(g, err.code, "%s", err.text);
		return;
	}
	if (rc == 0 || obj_jdeleted(j)) {
		json_decref(j);
		get_end(g, SHIP__CODE__NOT_FOUND,
			"object '%.*s' not found in bucket '%s'",
			CUT(g->name, 200), g->bucket);
		return;
	}
	if (json_object_get(json_object_get(j, "options"), "link")) {
		get_follow(g, j);
		json_decref(j);
		return;
	}
	if (!*obj_jstr(j, "nuid")) {
		json_decref(j);
		get_end(g, SHIP__CODE__INTERNAL,
			"object '%.*s' in bucket '%s' has a meta without nuid",
			CUT(g->name, 200), g->bucket);
		return;
	}
	g->size = obj_juint(j, "size");
	g->chunks = (uint32_t)obj_juint(j, "chunks");
	snprintf(g->digest, sizeof(g->digest), "%s", obj_jstr(j, "digest"));
	snprintf(g->chunks_subj, sizeof(g->chunks_subj), "$O.%s.C.%.100s",
		 g->bucket, obj_jstr(j, "nuid"));
	g->next_seq = 1;
	g->chunking = true;
	obj_send_info(g->st.c, g->st.id, j, mtime);
	json_decref(j);
	if (g->size == 0)
		g->chunks = 0; /* nats.go reads no chunks then */
	get_deliver(g);
}

/* OK, as every stream the app closes, but never said to be verified:
 * only a get read to its end is checked. */
static void get_stream_end(struct stream *st)
{
	get_end(container_of(st, struct objget, st), SHIP__CODE__OK, "%s",
		"closed by the app before its end: not verified");
}

static void get_stream_gone(struct stream *st)
{
	get_free(container_of(st, struct objget, st));
}

static const struct stream_kind get_kind = {
    .name = "object get",
    .end = get_stream_end,
    .gone = get_stream_gone,
};

void obj_handle_get(struct client *c, uint64_t id, const Ship__ObjGet *r)
{
	char meta[IPC_SUBJECT_MAX + 1];
	if (!obj_check_bucket(c, id, r->bucket) ||
	    !obj_check_name(c, id, r->bucket, r->name, meta, sizeof(meta)) ||
	    !client_allowed(c, id, POL_OBJ_READ, r->bucket))
		return;
	if (!link_connected()) {
		struct js_err err;
		obj_unavailable(&err);
		client_js_error(c, id, &err);
		return;
	}
	struct objget *g = calloc(1, sizeof(*g));
	if (!g || !(g->later = evtimer_new(base, later_cb, g))) {
		free(g);
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	if (!stream_open(&g->st, &get_kind, c, id)) {
		get_free(g);
		return;
	}
	snprintf(g->bucket, sizeof(g->bucket), "%s", r->bucket);
	snprintf(g->name, sizeof(g->name), "%s", r->name);
	g->credit = r->credit ? r->credit : GET_CREDIT_DEFAULT;
	ipc_sha256_init(&g->sha);
	get_lookup(g);
}

void obj_handle_credit(struct client *c, uint64_t id,
			  const Ship__ObjCredit *cr)
{
	struct stream *st = stream_find(c, cr->stream, &get_kind);
	if (!st) {
		client_error(c, id, SHIP__CODE__NOT_FOUND,
			     "no object get %" PRIu64 " open", cr->stream);
		return;
	}
	struct objget *g = container_of(st, struct objget, st);
	g->credit += cr->chunks;
	if (g->chunking)
		get_deliver(g);
}
