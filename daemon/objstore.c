/* SPDX-License-Identifier: MIT */
/* The NATS Object Store for local apps (ADR-20, as nats.go writes it):
 * what the parts share (names, subjects, digests, purges owed, meta
 * lookups) and the block. Buckets, info, list, delete, update, links and
 * watch are in objmeta.c; puts in objput.c; gets in objget.c. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "objstore.h"

/* ---- names, subjects, digests ---- */

bool obj_bucket_valid(const char *b)
{
	return kv_bucket_valid(b) && strlen(b) <= OBJ_BUCKET_MAX;
}

bool obj_check_bucket(struct client *c, uint64_t id, const char *b)
{
	if (obj_bucket_valid(b))
		return true;
	client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		     "invalid bucket name '%.*s' (" BUCKET_RULE ")",
		     CUT(b, 64));
	return false;
}

/* $O.<b>.M.<base64url padded name>; false if the name cannot be one. */
bool obj_meta_subject(const char *b, const char *name, char *out,
			 size_t size)
{
	char enc[OBJ_ENC_MAX];
	size_t n = strlen(name);
	if (n == 0 || n > OBJ_NAME_MAX ||
	    !ipc_base64url(name, n, enc, sizeof(enc)))
		return false;
	return ipc_fmt_fits(out, size, "$O.%s.M.%s", b, enc);
}

bool obj_check_name(struct client *c, uint64_t id, const char *b,
		       const char *name, char *meta, size_t size)
{
	if (obj_meta_subject(b, name, meta, size))
		return true;
	client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		     "invalid object name '%.*s' (1 to %d bytes of UTF-8 whose "
		     "meta subject fits %d characters)",
		     CUT(name, 64), OBJ_NAME_MAX, IPC_SUBJECT_MAX);
	return false;
}

void obj_digest_string(struct ipc_sha256 *s, char *out, size_t size)
{
	uint8_t d[IPC_SHA256_LEN];
	char enc[48];
	ipc_sha256_final(s, d);
	ipc_base64url(d, sizeof(d), enc, sizeof(enc));
	snprintf(out, size, "SHA-256=%s", enc);
}

/* A new object id: 22 base62 characters, as long as a NUID. */
void obj_new_nuid(char out[NUID_LEN + 1])
{
	static const char al[] =
	    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	uint8_t r[NUID_LEN];
	size_t got = 0;
	while (got < sizeof(r)) {
		ssize_t n = getrandom(r + got, sizeof(r) - got, 0);
		if (n < 0 && errno != EINTR)
			fatal("%s: getrandom", __func__);
		if (n > 0)
			got += (size_t)n;
	}
	for (int i = 0; i < NUID_LEN; i++)
		out[i] = al[r[i] % 62];
	out[NUID_LEN] = '\0';
}

void obj_rfc3339_now(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	char sec[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%09ldZ", sec, ts.tv_nsec);
}

uint64_t obj_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void obj_unavailable(struct js_err *e)
{
	kv_set_err(e, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
		   link_state_name(link_info()->state));
}

/* ---- purges of chunks nobody answers for ---- */

/* A purge sent and not waited for, or owed: one that could not be sent
 * (NATS not connected, or the connection lost before the answer) waits
 * here, at most PURGES_OWED_MAX of them, and goes out when the link comes
 * back. Purging twice is harmless. */
struct owed {
	TAILQ_ENTRY(owed) entry;
	struct js_call *call; /* on the way; NULL while owed */
	char bucket[KV_NAME_MAX];
	char filter[IPC_SUBJECT_MAX + 1];
	char nuid[NUID_LEN + 1]; /* the chunks' (journaled), or "" */
};
static TAILQ_HEAD(, owed) owed_list = TAILQ_HEAD_INITIALIZER(owed_list);
static TAILQ_HEAD(, owed) sent_list = TAILQ_HEAD_INITIALIZER(sent_list);
static size_t n_owed, n_owed_lost;

static void owe(struct owed *w)
{
	if (n_owed >= PURGES_OWED_MAX) {
		n_owed_lost++;
		log_warnx(
		    "%s: %d purges owed already; chunks %s of OBJ_%s stay "
		    "(%zu given up so far)",
		    __func__, PURGES_OWED_MAX, w->filter, w->bucket,
		    n_owed_lost);
		free(w);
		return;
	}
	w->call = NULL;
	TAILQ_INSERT_TAIL(&owed_list, w, entry);
	n_owed++;
}

static void owed_answered(void *arg, json_t *reply, const struct js_err *e)
{
	struct owed *w = arg;
	TAILQ_REMOVE(&sent_list, w, entry);
	w->call = NULL;
	if (e && e->code == SHIP__CODE__UNAVAILABLE) {
		owe(w);
		return;
	}
	if (e && !kv_no_stream(e))
		log_warnx("%s: purge of %s: %s", __func__, w->filter, e->text);
	else if (w->nuid[0])
		ojournal_end(w->nuid);
	free(w);
}

static void owed_send(struct owed *w)
{
	char what[KV_NAME_MAX + 32];
	snprintf(what, sizeof(what), "STREAM.PURGE.OBJ_%s", w->bucket);
	w->call = js_api(what, json_pack("{s:s}", "filter", w->filter),
			 API_TIMEOUT_MS, owed_answered, w);
	if (w->call)
		TAILQ_INSERT_TAIL(&sent_list, w, entry);
	else
		owe(w);
}

/* Purge the chunks of nuid, not waiting for the answer. */
void obj_purge_forget(const char *b, const char *nuid)
{
	struct owed *w = calloc(1, sizeof(*w));
	if (!w) {
		log_warnx("%s: out of memory; chunks %s of OBJ_%s stay",
			  __func__, nuid, b);
		return;
	}
	snprintf(w->bucket, sizeof(w->bucket), "%s", b);
	snprintf(w->filter, sizeof(w->filter), "$O.%s.C.%s", b, nuid);
	snprintf(w->nuid, sizeof(w->nuid), "%s", nuid);
	owed_send(w);
}

static void purges_link_changed(bool up)
{
	struct owed *w;
	if (!up || !n_owed)
		return;
	log_info("%s: sending %zu owed purges", __func__, n_owed);
	/* Those that cannot go again go to the back, after these n. */
	for (size_t n = n_owed; n > 0 && (w = TAILQ_FIRST(&owed_list)); n--) {
		TAILQ_REMOVE(&owed_list, w, entry);
		n_owed--;
		owed_send(w);
	}
}

static void purges_finish(void)
{
	struct owed *w;
	if (n_owed)
		log_warnx("%s: %zu purges owed at exit: their chunks stay",
			  __func__, n_owed);
	while ((w = TAILQ_FIRST(&owed_list))) {
		TAILQ_REMOVE(&owed_list, w, entry);
		free(w);
	}
	while ((w = TAILQ_FIRST(&sent_list))) {
		TAILQ_REMOVE(&sent_list, w, entry);
		js_cancel(w->call);
		free(w);
	}
	n_owed = 0;
}

static void owe_filter(const char *b, const char *filter, const char *nuid)
{
	struct owed *w = calloc(1, sizeof(*w));
	if (!w) {
		log_warnx("%s: out of memory; %s of OBJ_%s stays", __func__,
			  filter, b);
		return;
	}
	snprintf(w->bucket, sizeof(w->bucket), "%s", b);
	snprintf(w->filter, sizeof(w->filter), "%s", filter);
	snprintf(w->nuid, sizeof(w->nuid), "%s", nuid ? nuid : "");
	owe(w);
}

/* A purge of filter in OBJ_<b> (the chunks of nuid, or NULL) whose
 * answer fn takes; NULL (and the purge owed) if it cannot be sent. */
struct js_call *obj_purge_subject(const char *b, const char *filter,
				     const char *nuid, js_api_fn *fn,
				     void *arg)
{
	char what[KV_NAME_MAX + 32];
	snprintf(what, sizeof(what), "STREAM.PURGE.OBJ_%s", b);
	struct js_call *call =
	    js_api(what, json_pack("{s:s}", "filter", filter), API_TIMEOUT_MS,
		   fn, arg);
	if (!call)
		owe_filter(b, filter, nuid);
	return call;
}

/* The same for the chunks of nuid. */
struct js_call *obj_purge(const char *b, const char *nuid, js_api_fn *fn,
			     void *arg)
{
	char filter[IPC_SUBJECT_MAX + 1];
	snprintf(filter, sizeof(filter), "$O.%s.C.%s", b, nuid);
	return obj_purge_subject(b, filter, nuid, fn, arg);
}

/* A purge answered with the link lost: owed. */
void obj_purge_failed(const char *b, const char *nuid,
			 const struct js_err *e)
{
	char filter[IPC_SUBJECT_MAX + 1];
	if (e->code == SHIP__CODE__UNAVAILABLE) {
		snprintf(filter, sizeof(filter), "$O.%s.C.%s", b, nuid);
		owe_filter(b, filter, nuid);
	}
}

/* Ask $JS.API.DIRECT.GET.OBJ_<b> with body; the answer goes to w. */
int obj_direct_get(const char *b, struct link_wait *w, const char *body)
{
	char subj[KV_NAME_MAX + 32];
	natsConnection *nc = link_conn();
	snprintf(subj, sizeof(subj), "$JS.API.DIRECT.GET.OBJ_%s", b);
	if (!w || !nc ||
	    natsConnection_PublishRequest(nc, subj, link_wait_inbox(w), body,
					  (int)strlen(body)) != NATS_OK)
		return -1;
	return 0;
}

/* Buckets seen to exist: a direct get on a stream that does not exist
 * is not answered at all (JetStream takes all of $JS.API.>), so an
 * unknown bucket is looked up with STREAM.INFO first. */
#define KNOWN_MAX 64
static char known[KNOWN_MAX][KV_NAME_MAX];
static unsigned known_next;

static bool known_has(const char *b)
{
	for (unsigned i = 0; i < KNOWN_MAX; i++)
		if (!strcmp(known[i], b))
			return true;
	return false;
}

static void known_add(const char *b)
{
	if (known_has(b))
		return;
	snprintf(known[known_next], sizeof(known[0]), "%s", b);
	known_next = (known_next + 1) % KNOWN_MAX;
}

void obj_known_forget(const char *b)
{
	for (unsigned i = 0; i < KNOWN_MAX; i++)
		if (!strcmp(known[i], b))
			known[i][0] = '\0';
}

/* Meta lookups (struct lookup). */

void obj_lookup_cancel(struct lookup *l)
{
	if (!l)
		return;
	js_cancel(l->call);
	link_wait_cancel(l->wait);
	free(l);
}

static void lookup_got(void *arg, natsMsg *msg, natsStatus st)
{
	struct lookup *l = arg;
	link_reply_fn *fn = l->fn;
	void *fa = l->arg;
	if (st != NATS_OK)
		obj_known_forget(l->bucket);
	free(l);
	fn(fa, msg, st);
}

static int lookup_send(struct lookup *l)
{
	l->wait = link_wait_new(conf->request_timeout_ms, false, lookup_got, l);
	if (obj_direct_get(l->bucket, l->wait, l->body) < 0) {
		link_wait_cancel(l->wait);
		l->wait = NULL;
		return -1;
	}
	return 0;
}

static void lookup_stream(void *arg, json_t *reply, const struct js_err *e)
{
	struct lookup *l = arg;
	l->call = NULL;
	if (!e) {
		known_add(l->bucket);
		if (lookup_send(l) == 0)
			return;
	}
	natsStatus st = !e                ? NATS_CONNECTION_DISCONNECTED
			: kv_no_stream(e) ? NATS_NO_RESPONDERS
			: e->code == SHIP__CODE__TIMEOUT
			    ? NATS_TIMEOUT
			    : NATS_CONNECTION_DISCONNECTED;
	lookup_got(l, NULL, st);
}

struct lookup *obj_get_meta(const char *b, const char *meta,
			       link_reply_fn *fn, void *arg)
{
	if (!link_connected())
		return NULL;
	struct lookup *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	snprintf(l->bucket, sizeof(l->bucket), "%s", b);
	snprintf(l->body, sizeof(l->body), "{\"last_by_subj\":\"%s\"}", meta);
	l->fn = fn;
	l->arg = arg;
	if (known_has(b)) {
		if (lookup_send(l) < 0) {
			free(l);
			return NULL;
		}
		return l;
	}
	char what[KV_NAME_MAX + 32];
	snprintf(what, sizeof(what), "STREAM.INFO.OBJ_%s", b);
	if (!(l->call = js_api(what, NULL, API_TIMEOUT_MS, lookup_stream, l))) {
		free(l);
		return NULL;
	}
	return l;
}

/* A direct get's answer: 1 with the message's data as JSON (*info) and
 * its time; 0 for none (404); -1 with err; -2 with err for a meta that is
 * no ObjectInfo (another writer's), which lists skip and writes replace.
 * msg is consumed. */
int obj_meta_result(natsMsg *msg, natsStatus st, const char *b,
		       json_t **info, uint64_t *mtime_ns, struct js_err *err)
{
	const char *status = NULL, *ts = NULL;
	int rc = -1;
	*info = NULL;
	if (st == NATS_NO_RESPONDERS)
		kv_set_err(err, SHIP__CODE__NOT_FOUND, "bucket '%s' not found",
			   b);
	else if (st == NATS_TIMEOUT)
		kv_set_err(err, SHIP__CODE__TIMEOUT,
			   "JetStream did not answer in time");
	else if (st != NATS_OK)
		kv_set_err(err, SHIP__CODE__UNAVAILABLE,
			   "NATS connection lost before JetStream answered");
	if (st != NATS_OK)
		goto out;
	natsMsgHeader_Get(msg, "Status", &status);
	if (status && !strcmp(status, "404")) {
		rc = 0;
		goto out;
	}
	if (status) {
		const char *d = NULL;
		natsMsgHeader_Get(msg, "Description", &d);
		kv_set_err(err, SHIP__CODE__INTERNAL,
			   "direct get: status %s %s", status, d ? d : "");
		goto out;
	}
	json_error_t je;
	json_t *j = json_loadb(natsMsg_GetData(msg),
			       (size_t)natsMsg_GetDataLength(msg), 0, &je);
	if (!json_is_object(j) || !json_is_string(json_object_get(j, "name"))) {
		json_decref(j);
		kv_set_err(err, SHIP__CODE__INTERNAL,
			   "bucket '%s' holds an object meta that is not an "
			   "ObjectInfo (%s)",
			   b, j ? "no name" : je.text);
		rc = -2;
		goto out;
	}
	natsMsgHeader_Get(msg, "Nats-Time-Stamp", &ts);
	*mtime_ns = kv_parse_time_ns(ts);
	*info = j;
	rc = 1;
out:
	link_msg_destroy(msg);
	return rc;
}

const char *obj_jstr(json_t *j, const char *key)
{
	const char *s = json_string_value(json_object_get(j, key));
	return s ? s : "";
}

uint64_t obj_juint(json_t *j, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(j, key));
	return v > 0 ? (uint64_t)v : 0;
}

bool obj_jdeleted(json_t *j)
{
	return json_is_true(json_object_get(j, "deleted"));
}

/* An ObjectInfo pointing into j (which must outlive it);
 * obj_pinfo_clear frees the arrays. */
int obj_pinfo_fill(struct pinfo *p, json_t *j, uint64_t mtime_ns)
{
	json_t *hdrs = json_object_get(j, "headers"),
	       *md = json_object_get(j, "metadata"),
	       *opt = json_object_get(j, "options"),
	       *link = json_object_get(opt, "link"), *v, *x;
	const char *k;
	size_t n = 0, i;
	ship__object_info__init(&p->pi);
	json_object_foreach(hdrs, k, v) n +=
	    json_is_array(v) ? json_array_size(v) : 0;
	n += json_object_size(md);
	p->h = calloc(n ? n : 1, sizeof(*p->h));
	p->hp = calloc(n ? n : 1, sizeof(*p->hp));
	if (!p->h || !p->hp) {
		free(p->h);
		free(p->hp);
		return -1;
	}
	size_t nh = 0;
	json_object_foreach(hdrs, k, v)
	{
		json_array_foreach(v, i, x)
		{
			if (!json_is_string(x))
				continue;
			ship__header__init(&p->h[nh]);
			p->h[nh].key = (char *)k;
			p->h[nh].value = (char *)json_string_value(x);
			p->hp[nh] = &p->h[nh];
			nh++;
		}
	}
	size_t nm = 0;
	json_object_foreach(md, k, v)
	{
		if (!json_is_string(v))
			continue;
		ship__header__init(&p->h[nh + nm]);
		p->h[nh + nm].key = (char *)k;
		p->h[nh + nm].value = (char *)json_string_value(v);
		p->hp[nh + nm] = &p->h[nh + nm];
		nm++;
	}
	p->pi.bucket = (char *)obj_jstr(j, "bucket");
	p->pi.name = (char *)obj_jstr(j, "name");
	p->pi.description = (char *)obj_jstr(j, "description");
	p->pi.n_headers = nh;
	p->pi.headers = p->hp;
	p->pi.n_metadata = nm;
	p->pi.metadata = p->hp + nh;
	p->pi.nuid = (char *)obj_jstr(j, "nuid");
	p->pi.size = obj_juint(j, "size");
	p->pi.chunks = (uint32_t)obj_juint(j, "chunks");
	p->pi.digest = (char *)obj_jstr(j, "digest");
	p->pi.deleted = obj_jdeleted(j);
	p->pi.mtime_ns = mtime_ns;
	p->pi.link_bucket = (char *)obj_jstr(link, "bucket");
	p->pi.link_name = (char *)obj_jstr(link, "name");
	p->pi.max_chunk_size = (uint32_t)obj_juint(opt, "max_chunk_size");
	return 0;
}

void obj_pinfo_clear(struct pinfo *p)
{
	free(p->h);
	free(p->hp);
}

/* Send (reply) or push j as an ObjectInfo on id. */
void obj_send_info(struct client *c, uint64_t id, json_t *j,
		      uint64_t mtime_ns)
{
	struct pinfo p;
	if (obj_pinfo_fill(&p, j, mtime_ns) < 0) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	f.id = id;
	f.body_case = SHIP__SERVER_FRAME__BODY_OBJ_INFO;
	f.obj_info = &p.pi;
	client_send(c, &f);
	obj_pinfo_clear(&p);
}

/* ---- the block ---- */

static void req_bucket_create(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_bucket_create(c, f->id, f->obj_bucket_create);
}

static void req_bucket_status(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_bucket_status(c, f->id, f->obj_bucket_status->bucket);
}

static void req_bucket_list(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_bucket_list(c, f->id);
}

static void req_bucket_delete(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_bucket_delete(c, f->id, f->obj_bucket_delete->bucket);
}

static void req_bucket_seal(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_bucket_seal(c, f->id, f->obj_bucket_seal->bucket);
}

static void req_put(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_put(c, f->id, f->obj_put);
}

static void req_put_chunk(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_chunk(c, f->id, f->obj_put_chunk);
}

static void req_get(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_get(c, f->id, f->obj_get);
}

static void req_credit(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_credit(c, f->id, f->obj_credit);
}

static void req_info(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_info(c, f->id, f->obj_info);
}

static void req_list(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_list(c, f->id, f->obj_list);
}

static void req_delete(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_delete(c, f->id, f->obj_delete);
}

static void req_update_meta(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_update_meta(c, f->id, f->obj_update_meta);
}

static void req_link(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_link(c, f->id, f->obj_link);
}

static void req_watch(struct client *c, const Ship__ClientFrame *f)
{
	obj_handle_watch(c, f->id, f->obj_watch);
}

static void obj_link_changed(bool up)
{
	purges_link_changed(up);
	if (up)
		objput_link_up();
}

/* Work that outlived its app stops; what it would purge stays. */
static void obj_finish(void)
{
	objput_finish();
	objmeta_finish();
	purges_finish();
}

const struct block obj_block = {
    .name = "obj",
    .link_changed = obj_link_changed,
    .finish = obj_finish,
    .requests =
	(const struct block_request[]){
	    {SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_CREATE, req_bucket_create,
	     false},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_STATUS, req_bucket_status,
	     false},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_LIST, req_bucket_list, false},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_DELETE, req_bucket_delete,
	     false},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_SEAL, req_bucket_seal, false},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_PUT, req_put, true},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_PUT_CHUNK, req_put_chunk, true},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_GET, req_get, false},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_CREDIT, req_credit, false},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_INFO, req_info, false},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_LIST, req_list, false},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_DELETE, req_delete, false},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_UPDATE_META, req_update_meta,
	     false},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_LINK, req_link, false},
	    {SHIP__CLIENT_FRAME__BODY_OBJ_WATCH, req_watch, false},
	    {0, NULL, false},
	},
};
