/* SPDX-License-Identifier: MIT */
/* The NATS Object Store for local apps (ADR-20, as nats.go writes it):
 * buckets, object info, list and delete, and puts and gets streamed chunk
 * by chunk with credit, SHA-256 checked on the way. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "shipd.h"

#define API_TIMEOUT_MS 5000
#define OBJ_BUCKET_MAX 251 /* "OBJ_" + 251 = 255, a stream name's limit */
#define OBJ_NAME_MAX 1024  /* bytes of an object name */
#define OBJ_ENC_MAX (OBJ_NAME_MAX / 3 * 4 + 8)
#define CHUNK_DEFAULT (128 * 1024)
#define PUT_WINDOW 8 /* chunks an app may have in flight */
#define GET_CREDIT_DEFAULT 8
#define LIST_MAX 10000  /* objects one list answers */
#define LIST_INFLIGHT 8 /* direct gets in flight for one list */
#define LIST_PAGES_MAX 64
#define DESCRIPTION_MAX 4096
#define GET_LATER_MS 20 /* look again at a full client socket */
#define DIGEST_MAX 64
#define BUCKET_RULE "1 to 251 letters, digits, _ and -"
#define PUT_IDLE_S 60   /* a put that gets no chunk this long ends */
#define META_COUNTS 256 /* meta bytes a put adds to the app's fields */
#define PURGES_OWED_MAX 1024
#define CUT(s, n) utf8_cut((s), (n)), (s) /* for "%.*s" */

/* How many bytes of s, at most max, end on a character boundary: names
 * quoted in messages are cut there, never inside a UTF-8 sequence. */
static int utf8_cut(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n <= max)
		return (int)n;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return (int)n;
}

/* ---- names, subjects, digests ---- */

static bool bucket_valid(const char *b)
{
	return kv_bucket_valid(b) && strlen(b) <= OBJ_BUCKET_MAX;
}

static bool check_bucket(struct client *c, uint64_t id, const char *b)
{
	if (bucket_valid(b))
		return true;
	client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		     "invalid bucket name '%.*s' (" BUCKET_RULE ")",
		     CUT(b, 64));
	return false;
}

/* $O.<b>.M.<base64url padded name>; false if the name cannot be one. */
static bool meta_subject(const char *b, const char *name, char *out,
			 size_t size)
{
	char enc[OBJ_ENC_MAX];
	size_t n = strlen(name);
	if (n == 0 || n > OBJ_NAME_MAX ||
	    !ipc_base64url(name, n, enc, sizeof(enc)))
		return false;
	return ipc_fmt_fits(out, size, "$O.%s.M.%s", b, enc);
}

static bool check_name(struct client *c, uint64_t id, const char *b,
		       const char *name, char *meta, size_t size)
{
	if (meta_subject(b, name, meta, size))
		return true;
	client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		     "invalid object name '%.*s' (1 to %d bytes of UTF-8 whose "
		     "meta subject fits %d characters)",
		     CUT(name, 64), OBJ_NAME_MAX, IPC_SUBJECT_MAX);
	return false;
}

static void digest_string(struct ipc_sha256 *s, char *out, size_t size)
{
	uint8_t d[IPC_SHA256_LEN];
	char enc[48];
	ipc_sha256_final(s, d);
	ipc_base64url(d, sizeof(d), enc, sizeof(enc));
	snprintf(out, size, "SHA-256=%s", enc);
}

/* A new object id: 22 base62 characters, as long as a NUID. */
static void new_nuid(char out[NUID_LEN + 1])
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

static void rfc3339_now(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	char sec[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%09ldZ", sec, ts.tv_nsec);
}

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void unavailable(struct js_err *e)
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
static void purge_forget(const char *b, const char *nuid)
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
static struct js_call *purge_subject(const char *b, const char *filter,
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
static struct js_call *purge(const char *b, const char *nuid, js_api_fn *fn,
			     void *arg)
{
	char filter[IPC_SUBJECT_MAX + 1];
	snprintf(filter, sizeof(filter), "$O.%s.C.%s", b, nuid);
	return purge_subject(b, filter, nuid, fn, arg);
}

/* A purge answered with the link lost: owed. */
static void purge_failed(const char *b, const char *nuid,
			 const struct js_err *e)
{
	char filter[IPC_SUBJECT_MAX + 1];
	if (e->code == SHIP__CODE__UNAVAILABLE) {
		snprintf(filter, sizeof(filter), "$O.%s.C.%s", b, nuid);
		owe_filter(b, filter, nuid);
	}
}

/* Ask $JS.API.DIRECT.GET.OBJ_<b> with body; the answer goes to w. */
static int direct_get(const char *b, struct link_wait *w, const char *body)
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

static void known_forget(const char *b)
{
	for (unsigned i = 0; i < KNOWN_MAX; i++)
		if (!strcmp(known[i], b))
			known[i][0] = '\0';
}

/* The last meta of an object: fn gets what a direct get answers, or
 * NATS_NO_RESPONDERS when the bucket does not exist. */
struct lookup {
	char bucket[KV_NAME_MAX];
	char body[IPC_SUBJECT_MAX + 32];
	struct js_call *call;
	struct link_wait *wait;
	link_reply_fn *fn;
	void *arg;
};

static void lookup_cancel(struct lookup *l)
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
		known_forget(l->bucket);
	free(l);
	fn(fa, msg, st);
}

static int lookup_send(struct lookup *l)
{
	l->wait = link_wait_new(conf->request_timeout_ms, false, lookup_got, l);
	if (direct_get(l->bucket, l->wait, l->body) < 0) {
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

static struct lookup *get_meta(const char *b, const char *meta,
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
static int meta_result(natsMsg *msg, natsStatus st, const char *b,
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
	natsMsg_Destroy(msg);
	return rc;
}

static const char *jstr(json_t *j, const char *key)
{
	const char *s = json_string_value(json_object_get(j, key));
	return s ? s : "";
}

static uint64_t juint(json_t *j, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(j, key));
	return v > 0 ? (uint64_t)v : 0;
}

static bool jdeleted(json_t *j)
{
	return json_is_true(json_object_get(j, "deleted"));
}

/* An ObjectInfo pointing into j (which must outlive it); pi_clear frees
 * the arrays. */
struct pinfo {
	Ship__ObjectInfo pi;
	Ship__Header *h;
	Ship__Header **hp;
};

static int pinfo_fill(struct pinfo *p, json_t *j, uint64_t mtime_ns)
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
	p->pi.bucket = (char *)jstr(j, "bucket");
	p->pi.name = (char *)jstr(j, "name");
	p->pi.description = (char *)jstr(j, "description");
	p->pi.n_headers = nh;
	p->pi.headers = p->hp;
	p->pi.n_metadata = nm;
	p->pi.metadata = p->hp + nh;
	p->pi.nuid = (char *)jstr(j, "nuid");
	p->pi.size = juint(j, "size");
	p->pi.chunks = (uint32_t)juint(j, "chunks");
	p->pi.digest = (char *)jstr(j, "digest");
	p->pi.deleted = jdeleted(j);
	p->pi.mtime_ns = mtime_ns;
	p->pi.link_bucket = (char *)jstr(link, "bucket");
	p->pi.link_name = (char *)jstr(link, "name");
	p->pi.max_chunk_size = (uint32_t)juint(opt, "max_chunk_size");
	return 0;
}

static void pinfo_clear(struct pinfo *p)
{
	free(p->h);
	free(p->hp);
}

/* Send (reply) or push j as an ObjectInfo on id. */
static void send_info(struct client *c, uint64_t id, json_t *j,
		      uint64_t mtime_ns)
{
	struct pinfo p;
	if (pinfo_fill(&p, j, mtime_ns) < 0) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	f.id = id;
	f.body_case = SHIP__SERVER_FRAME__BODY_OBJ_INFO;
	f.obj_info = &p.pi;
	client_send(c, &f);
	pinfo_clear(&p);
}

/* ---- requests: buckets, info, list, delete ---- */

struct objop {
	struct op op; /* op.c is NULL once the app is gone */
	char bucket[KV_NAME_MAX];
	char name[OBJ_NAME_MAX + 1];
	char meta[IPC_SUBJECT_MAX + 1];
	/* update meta: the new name; link: the target */
	char bucket2[KV_NAME_MAX];
	char name2[OBJ_NAME_MAX + 1];
	char meta2[IPC_SUBJECT_MAX + 1];
	json_t *fields; /* update meta: description, headers, metadata */
	bool show_deleted;
	bool ensuring; /* in js_stream_ensure, which cannot be cancelled */
	struct js_call *call;
	struct link_wait *wait;
	struct lookup *lk;
	json_t *info; /* delete: the meta looked up; list: results */
	size_t page;
	/* list: the meta subjects, and how far the gets went */
	char **subjects;
	size_t n_subjects, next, answered;
	uint64_t *mtimes;
	size_t bytes;
	size_t bad;    /* list: metas that are no ObjectInfo, left out */
	bool carry_on; /* delete, update: the meta is sent; it finishes
			* unowned */
	TAILQ_ENTRY(objop) loose; /* on loose_ops once its app left */
};

static TAILQ_HEAD(, objop) loose_ops = TAILQ_HEAD_INITIALIZER(loose_ops);

static void op_free(struct objop *o)
{
	if (o->carry_on && !o->op.c)
		TAILQ_REMOVE(&loose_ops, o, loose);
	op_end(&o->op);
	js_cancel(o->call);
	link_wait_cancel(o->wait);
	lookup_cancel(o->lk);
	json_decref(o->info);
	json_decref(o->fields);
	for (size_t i = 0; i < o->n_subjects; i++)
		free(o->subjects[i]);
	free(o->subjects);
	free(o->mtimes);
	free(o);
}

/* The app left. A delete whose marker is sent finishes without it:
 * stopped there, the chunks it replaced would stay forever; so does an
 * update whose meta is sent (a rename leaves the old name otherwise). */
static void op_cancel(struct op *op)
{
	struct objop *o = container_of(op, struct objop, op);
	if (o->carry_on)
		TAILQ_INSERT_TAIL(&loose_ops, o, loose);
	else if (!o->ensuring)
		op_free(o);
}

static struct objop *op_new(struct client *c, uint64_t id, const char *b,
			    const char *name)
{
	struct objop *o = calloc(1, sizeof(*o));
	if (!o) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	if (!op_begin(&o->op, c, id, op_cancel)) {
		free(o);
		return NULL;
	}
	snprintf(o->bucket, sizeof(o->bucket), "%s", b ? b : "");
	snprintf(o->name, sizeof(o->name), "%s", name ? name : "");
	return o;
}

static void op_fail(struct objop *o, const struct js_err *e)
{
	client_js_error(o->op.c, o->op.id, e);
	op_free(o);
}

/* A stream that does not exist is a bucket that does not. */
static void op_fail_bucket(struct objop *o, const struct js_err *e)
{
	struct js_err nf;
	if (kv_no_stream(e)) {
		kv_set_err(&nf, SHIP__CODE__NOT_FOUND, "bucket '%s' not found",
			   o->bucket);
		e = &nf;
	}
	op_fail(o, e);
}

static void bucket_from_json(Ship__ObjBucketInfo *bi, json_t *si)
{
	json_t *cfg = json_object_get(si, "config");
	const char *name = jstr(cfg, "name");
	json_int_t mb = json_integer_value(json_object_get(cfg, "max_bytes"));
	ship__obj_bucket_info__init(bi);
	bi->bucket = (char *)(strncmp(name, "OBJ_", 4) ? "" : name + 4);
	bi->description = (char *)jstr(cfg, "description");
	bi->ttl_ms = juint(cfg, "max_age") / 1000000;
	bi->max_bytes = mb > 0 ? mb : 0;
	bi->memory = !strcmp(jstr(cfg, "storage"), "memory");
	bi->replicas = (uint32_t)juint(cfg, "num_replicas");
	bi->sealed = json_is_true(json_object_get(cfg, "sealed"));
	bi->size = juint(json_object_get(si, "state"), "bytes");
}

static void send_bucket(struct objop *o, json_t *si)
{
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__ObjBucketInfo bi;
	bucket_from_json(&bi, si);
	f.id = o->op.id;
	f.body_case = SHIP__SERVER_FRAME__BODY_OBJ_BUCKET;
	f.obj_bucket = &bi;
	client_send(o->op.c, &f);
}

static void status_done(void *arg, json_t *reply, const struct js_err *e)
{
	struct objop *o = arg;
	o->call = NULL;
	if (e) {
		op_fail_bucket(o, e);
		return;
	}
	send_bucket(o, reply);
	op_free(o);
}

static int bucket_call(struct objop *o, const char *verb, json_t *body,
		       js_api_fn *fn)
{
	char what[KV_NAME_MAX + 32];
	snprintf(what, sizeof(what), "%s.OBJ_%s", verb, o->bucket);
	o->call = js_api(what, body, API_TIMEOUT_MS, fn, o);
	if (!o->call) {
		struct js_err err;
		unavailable(&err);
		op_fail(o, &err);
		return -1;
	}
	return 0;
}

static void created(void *arg, const struct js_err *e, bool made)
{
	struct objop *o = arg;
	o->ensuring = false;
	if (!o->op.c) {
		op_free(o); /* the app left meanwhile */
		return;
	}
	if (e) {
		op_fail(o, e);
		return;
	}
	if (made)
		log_info("client %" PRIu64 " created object bucket %s",
			 o->op.c->cid, o->bucket);
	bucket_call(o, "STREAM.INFO", NULL, status_done);
}

static void handle_bucket_create(struct client *c, uint64_t id,
				 const Ship__ObjBucketCreate *bc)
{
	if (!check_bucket(c, id, bc->bucket))
		return;
	if (strlen(bc->description) > DESCRIPTION_MAX || bc->max_bytes < 0 ||
	    bc->replicas > 5 || bc->ttl_ms > INT64_MAX / 1000000) {
		client_error(
		    c, id, SHIP__CODE__INVALID_ARGUMENT,
		    "description over %d bytes, negative max_bytes, over "
		    "5 replicas or a TTL out of range",
		    DESCRIPTION_MAX);
		return;
	}
	if (!client_allowed(c, id, POL_OBJ_ADMIN, bc->bucket))
		return;
	if (!link_connected()) {
		struct js_err err;
		unavailable(&err);
		client_js_error(c, id, &err);
		return;
	}
	char name[KV_NAME_MAX + 8], s_chunks[KV_NAME_MAX + 16],
	    s_meta[KV_NAME_MAX + 16];
	char *subjects[2] = {s_chunks, s_meta};
	snprintf(name, sizeof(name), "OBJ_%s", bc->bucket);
	snprintf(s_chunks, sizeof(s_chunks), "$O.%s.C.>", bc->bucket);
	snprintf(s_meta, sizeof(s_meta), "$O.%s.M.>", bc->bucket);
	struct js_stream_cfg cfg = {
	    .name = name,
	    .description = bc->description,
	    .subjects = subjects,
	    .n_subjects = 2,
	    .max_age_ns = (int64_t)bc->ttl_ms * 1000000,
	    .max_bytes = bc->max_bytes,
	    .replicas = bc->replicas ? (int)bc->replicas : 1,
	    .memory = bc->memory,
	    .discard_new = true,
	    .allow_rollup = true,
	    .allow_direct = true,
	};
	struct objop *o = op_new(c, id, bc->bucket, NULL);
	if (!o)
		return;
	o->ensuring = true;
	if (js_stream_ensure(&cfg, created, o) < 0) {
		struct js_err err;
		o->ensuring = false;
		unavailable(&err);
		op_fail(o, &err);
	}
}

/* A bucket request answered by one JetStream API call on its stream. */
static void bucket_request(struct client *c, uint64_t id, const char *b,
                           enum pol_op op, const char *api, js_api_fn *fn)
{
	if (!check_bucket(c, id, b) || !client_allowed(c, id, op, b))
		return;
	struct objop *o = op_new(c, id, b, NULL);
	if (o)
		bucket_call(o, api, NULL, fn);
}

static void handle_bucket_status(struct client *c, uint64_t id, const char *b)
{
	bucket_request(c, id, b, POL_OBJ_READ, "STREAM.INFO", status_done);
}

static void deleted_bucket(void *arg, json_t *reply, const struct js_err *e)
{
	struct objop *o = arg;
	o->call = NULL;
	if (e) {
		op_fail_bucket(o, e);
		return;
	}
	known_forget(o->bucket);
	log_info("client %" PRIu64 " deleted object bucket %s",
		 o->op.c ? o->op.c->cid : 0, o->bucket);
	client_ok(o->op.c, o->op.id);
	op_free(o);
}

static void handle_bucket_delete(struct client *c, uint64_t id, const char *b)
{
	bucket_request(c, id, b, POL_OBJ_ADMIN, "STREAM.DELETE", deleted_bucket);
}

static void seal_info(void *arg, json_t *reply, const struct js_err *e)
{
	struct objop *o = arg;
	o->call = NULL;
	if (e) {
		op_fail_bucket(o, e);
		return;
	}
	json_t *cfg = json_deep_copy(json_object_get(reply, "config"));
	if (!cfg || json_object_set_new(cfg, "sealed", json_true()) < 0) {
		json_decref(cfg);
		struct js_err err;
		kv_set_err(&err, SHIP__CODE__INTERNAL, "out of memory");
		op_fail(o, &err);
		return;
	}
	bucket_call(o, "STREAM.UPDATE", cfg, status_done);
}

static void handle_bucket_seal(struct client *c, uint64_t id, const char *b)
{
	bucket_request(c, id, b, POL_OBJ_ADMIN, "STREAM.INFO", seal_info);
}

static void buckets_listed(void *arg, json_t *reply, const struct js_err *e);

static void list_page(struct objop *o)
{
	json_t *body = json_pack("{s:I, s:s}", "offset", (json_int_t)o->page,
				 "subject", "$O.*.C.>");
	o->call =
	    js_api("STREAM.LIST", body, API_TIMEOUT_MS, buckets_listed, o);
	if (!o->call) {
		struct js_err err;
		unavailable(&err);
		op_fail(o, &err);
	}
}

static void send_buckets(struct objop *o)
{
	size_t n = json_array_size(o->info);
	Ship__ObjBucketInfo *infos = calloc(n ? n : 1, sizeof(*infos));
	Ship__ObjBucketInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	if (!infos || !ptrs) {
		client_error(o->op.c, o->op.id, SHIP__CODE__INTERNAL,
			     "out of memory");
	} else {
		for (size_t i = 0; i < n; i++) {
			bucket_from_json(&infos[i], json_array_get(o->info, i));
			ptrs[i] = &infos[i];
		}
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__ObjBucketList bl = SHIP__OBJ_BUCKET_LIST__INIT;
		bl.n_buckets = n;
		bl.buckets = ptrs;
		f.id = o->op.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_OBJ_BUCKETS;
		f.obj_buckets = &bl;
		client_send(o->op.c, &f);
	}
	free(infos);
	free(ptrs);
}

static void buckets_listed(void *arg, json_t *reply, const struct js_err *e)
{
	struct objop *o = arg;
	o->call = NULL;
	if (e) {
		op_fail(o, e);
		return;
	}
	json_t *arr = json_object_get(reply, "streams"), *si;
	size_t i, got_n = json_array_size(arr);
	json_array_foreach(arr, i, si)
	{
		const char *name = jstr(json_object_get(si, "config"), "name");
		/* Only the buckets the app may read. */
		if (!strncmp(name, "OBJ_", 4) && bucket_valid(name + 4) &&
		    o->op.c &&
		    policy_allows(o->op.c->pol, POL_OBJ_READ, name + 4, NULL,
				  0))
			json_array_append(o->info, si);
	}
	o->page += got_n;
	json_int_t total = json_integer_value(json_object_get(reply, "total"));
	if (got_n && (json_int_t)o->page < total &&
	    o->page < (size_t)LIST_PAGES_MAX * 256) {
		list_page(o);
		return;
	}
	send_buckets(o);
	op_free(o);
}

static void handle_bucket_list(struct client *c, uint64_t id)
{
	struct objop *o = op_new(c, id, NULL, NULL);
	if (!o)
		return;
	if (!(o->info = json_array())) {
		struct js_err err;
		kv_set_err(&err, SHIP__CODE__INTERNAL, "out of memory");
		op_fail(o, &err);
		return;
	}
	list_page(o);
}

/* ---- info and delete ---- */

static void not_found(struct js_err *e, const char *b, const char *name)
{
	kv_set_err(e, SHIP__CODE__NOT_FOUND,
		   "object '%.*s' not found in bucket '%s'", CUT(name, 200), b);
}

static void info_done(void *arg, natsMsg *msg, natsStatus st)
{
	struct objop *o = arg;
	struct js_err err;
	json_t *j;
	uint64_t mtime = 0;
	o->lk = NULL;
	int rc = meta_result(msg, st, o->bucket, &j, &mtime, &err);
	if (rc == 0 || (rc > 0 && jdeleted(j) && !o->show_deleted))
		not_found(&err, o->bucket, o->name);
	if (rc <= 0 || (jdeleted(j) && !o->show_deleted)) {
		json_decref(j);
		op_fail(o, &err);
		return;
	}
	send_info(o->op.c, o->op.id, j, mtime);
	json_decref(j);
	op_free(o);
}

static void handle_info(struct client *c, uint64_t id,
			const Ship__ObjInfoRequest *r)
{
	char meta[IPC_SUBJECT_MAX + 1];
	if (!check_bucket(c, id, r->bucket) ||
	    !check_name(c, id, r->bucket, r->name, meta, sizeof(meta)) ||
	    !client_allowed(c, id, POL_OBJ_READ, r->bucket))
		return;
	struct objop *o = op_new(c, id, r->bucket, r->name);
	if (!o)
		return;
	o->show_deleted = r->show_deleted;
	if (!(o->lk = get_meta(o->bucket, meta, info_done, o))) {
		struct js_err err;
		unavailable(&err);
		op_fail(o, &err);
	}
}

static void delete_purged(void *arg, json_t *reply, const struct js_err *e)
{
	struct objop *o = arg;
	o->call = NULL;
	if (e) {
		purge_failed(o->bucket, jstr(o->info, "nuid"), e);
		op_fail(o, e);
		return;
	}
	ojournal_end(jstr(o->info, "nuid"));
	client_ok(o->op.c, o->op.id);
	op_free(o);
}

static void delete_stored(void *arg, uint64_t seq, bool dup,
			  const struct js_err *e)
{
	struct objop *o = arg;
	o->call = NULL;
	if (e) {
		op_fail(o, e);
		return;
	}
	const char *nuid = jstr(o->info, "nuid");
	if (!*nuid) {
		client_ok(o->op.c, o->op.id);
		op_free(o);
		return;
	}
	ojournal_purge(o->bucket, nuid);
	/* Not sent: the marker is stored and the purge owed. */
	if (!(o->call = purge(o->bucket, nuid, delete_purged, o))) {
		client_ok(o->op.c, o->op.id);
		op_free(o);
	}
}

#define NO_EXPECT UINT64_MAX

/* Publish j (taken) as the meta of its object, with Nats-Rollup: sub;
 * unless expect is NO_EXPECT, only if the subject's last message is
 * sequence expect (0: none). */
static struct js_call *publish_meta_if(const char *meta, json_t *j,
				       uint64_t expect, js_pub_fn *fn,
				       void *arg, struct js_err *err)
{
	char *text = json_dumps(j, JSON_COMPACT);
	char seq[24];
	natsMsg *m = NULL;
	json_decref(j);
	snprintf(seq, sizeof(seq), "%" PRIu64, expect);
	if (!text ||
	    natsMsg_Create(&m, meta, NULL, text, (int)strlen(text)) !=
		NATS_OK ||
	    natsMsgHeader_Set(m, "Nats-Rollup", "sub") != NATS_OK ||
	    (expect != NO_EXPECT &&
	     natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence",
			       seq) != NATS_OK)) {
		free(text);
		natsMsg_Destroy(m);
		kv_set_err(err, SHIP__CODE__INTERNAL,
			   "cannot build the meta message");
		return NULL;
	}
	free(text);
	struct js_call *call = js_publish(m, conf->request_timeout_ms, fn, arg);
	if (!call)
		unavailable(err);
	return call;
}

static struct js_call *publish_meta(const char *meta, json_t *j, js_pub_fn *fn,
				    void *arg, struct js_err *err)
{
	return publish_meta_if(meta, j, NO_EXPECT, fn, arg, err);
}

static void delete_looked_up(void *arg, natsMsg *msg, natsStatus st)
{
	struct objop *o = arg;
	struct js_err err;
	json_t *j;
	uint64_t mtime = 0;
	char now[48];
	o->lk = NULL;
	int rc = meta_result(msg, st, o->bucket, &j, &mtime, &err);
	if (rc == -2) {
		/* Unreadable: as if there were no version; the marker replaces
		 * it. */
		log_warnx("%s: %s", __func__, err.text);
		j = json_pack("{s:s, s:s}", "name", o->name, "bucket",
			      o->bucket);
		rc = j ? 1 : -1;
		if (!j)
			kv_set_err(&err, SHIP__CODE__INTERNAL, "out of memory");
	}
	if (rc == 0)
		not_found(&err, o->bucket, o->name);
	if (rc <= 0) {
		op_fail(o, &err);
		return;
	}
	/* As nats.go: the same meta, deleted, empty, without a digest. */
	rfc3339_now(now, sizeof(now));
	json_object_set_new(j, "size", json_integer(0));
	json_object_set_new(j, "chunks", json_integer(0));
	json_object_set_new(j, "mtime", json_string(now));
	json_object_del(j, "digest");
	json_object_set_new(j, "deleted", json_true());
	o->info = json_incref(j);
	if (!(o->call = publish_meta(o->meta, j, delete_stored, o, &err)))
		op_fail(o, &err);
	else
		o->carry_on = true;
}

static void handle_delete(struct client *c, uint64_t id,
			  const Ship__ObjDelete *d)
{
	char meta[IPC_SUBJECT_MAX + 1];
	if (!check_bucket(c, id, d->bucket) ||
	    !check_name(c, id, d->bucket, d->name, meta, sizeof(meta)) ||
	    !client_allowed(c, id, POL_OBJ_WRITE, d->bucket))
		return;
	struct objop *o = op_new(c, id, d->bucket, d->name);
	if (!o)
		return;
	snprintf(o->meta, sizeof(o->meta), "%s", meta);
	if (!(o->lk = get_meta(o->bucket, meta, delete_looked_up, o))) {
		struct js_err err;
		unavailable(&err);
		op_fail(o, &err);
	}
}

/* ---- list: the meta subjects from STREAM.INFO, then each one's last ---- */

static void list_got(void *arg, natsMsg *msg, natsStatus st);

static void list_send(struct objop *o)
{
	size_t n = json_array_size(o->info);
	if (o->bad)
		log_warnx(
		    "%s: bucket %s: %zu metas that are no ObjectInfo left out",
		    __func__, o->bucket, o->bad);
	struct pinfo *ps = calloc(n ? n : 1, sizeof(*ps));
	Ship__ObjectInfo **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
	size_t filled = 0;
	for (; ps && ptrs && filled < n; filled++) {
		if (pinfo_fill(&ps[filled], json_array_get(o->info, filled),
			       o->mtimes[filled]) < 0)
			break;
		ptrs[filled] = &ps[filled].pi;
	}
	if (!ps || !ptrs || filled < n) {
		client_error(o->op.c, o->op.id, SHIP__CODE__INTERNAL,
			     "out of memory");
	} else {
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__ObjectInfos oi = SHIP__OBJECT_INFOS__INIT;
		oi.n_objects = n;
		oi.objects = ptrs;
		f.id = o->op.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_OBJ_INFOS;
		f.obj_infos = &oi;
		size_t size = ship__server_frame__get_packed_size(&f);
		if (size + IPC_HDR_LEN > conf->max_frame ||
		    size > conf->client_output_limit)
			client_error(
			    o->op.c, o->op.id, SHIP__CODE__RESOURCE_EXHAUSTED,
			    "the list of bucket '%s' is %zu bytes, over "
			    "what one answer may hold",
			    o->bucket, size);
		else
			client_send(o->op.c, &f);
	}
	for (size_t i = 0; ps && i < filled; i++)
		pinfo_clear(&ps[i]);
	free(ps);
	free(ptrs);
	op_free(o);
}

/* Keep LIST_INFLIGHT gets going on the one wait; answer when all came. */
static void list_more(struct objop *o)
{
	char body[IPC_SUBJECT_MAX + 32];
	while (o->next < o->n_subjects &&
	       o->next - o->answered < LIST_INFLIGHT) {
		snprintf(body, sizeof(body), "{\"last_by_subj\":\"%s\"}",
			 o->subjects[o->next]);
		if (direct_get(o->bucket, o->wait, body) < 0) {
			struct js_err err;
			unavailable(&err);
			op_fail(o, &err);
			return;
		}
		o->next++;
	}
	if (o->answered == o->n_subjects)
		list_send(o);
}

static void list_got(void *arg, natsMsg *msg, natsStatus st)
{
	struct objop *o = arg;
	struct js_err err;
	json_t *j;
	uint64_t mtime = 0;
	size_t len = msg ? (size_t)natsMsg_GetDataLength(msg) : 0;
	int rc = meta_result(msg, st, o->bucket, &j, &mtime, &err);
	if (rc == -2) {
		o->bad++; /* another writer's: left out, counted in the log */
		rc = 0;
	}
	if (rc < 0) {
		if (st != NATS_OK)
			o->wait = NULL; /* a failed wait is gone */
		op_fail(o, &err);
		return;
	}
	o->answered++;
	link_wait_rearm(o->wait, conf->request_timeout_ms);
	/* 404: purged since STREAM.INFO listed it. */
	if (rc > 0 && (!jdeleted(j) || o->show_deleted)) {
		o->bytes += len;
		if (o->bytes > conf->client_output_limit) {
			json_decref(j);
			kv_set_err(
			    &err, SHIP__CODE__RESOURCE_EXHAUSTED,
			    "the objects of bucket '%s' are over %u bytes "
			    "of meta, more than one answer may hold",
			    o->bucket, conf->client_output_limit);
			op_fail(o, &err);
			return;
		}
		o->mtimes[json_array_size(o->info)] = mtime;
		json_array_append_new(o->info, j);
	} else {
		json_decref(j);
	}
	list_more(o);
}

static void list_subjects(void *arg, json_t *reply, const struct js_err *e)
{
	struct objop *o = arg;
	struct js_err err;
	o->call = NULL;
	if (e) {
		op_fail_bucket(o, e);
		return;
	}
	json_t *subs =
	    json_object_get(json_object_get(reply, "state"), "subjects");
	size_t n = json_object_size(subs);
	if (n > LIST_MAX) {
		kv_set_err(
		    &err, SHIP__CODE__RESOURCE_EXHAUSTED,
		    "bucket '%s' holds %zu objects, over the %d one list "
		    "answers",
		    o->bucket, n, LIST_MAX);
		op_fail(o, &err);
		return;
	}
	o->subjects = calloc(n ? n : 1, sizeof(*o->subjects));
	o->mtimes = calloc(n ? n : 1, sizeof(*o->mtimes));
	o->info = json_array();
	if (!o->subjects || !o->mtimes || !o->info) {
		kv_set_err(&err, SHIP__CODE__INTERNAL, "out of memory");
		op_fail(o, &err);
		return;
	}
	const char *k;
	json_t *v;
	json_object_foreach(subs, k, v)
	{
		if (!(o->subjects[o->n_subjects] = strdup(k))) {
			kv_set_err(&err, SHIP__CODE__INTERNAL, "out of memory");
			op_fail(o, &err);
			return;
		}
		o->n_subjects++;
	}
	if (n && !(o->wait = link_wait_new(conf->request_timeout_ms, true,
					   list_got, o))) {
		unavailable(&err);
		op_fail(o, &err);
		return;
	}
	list_more(o);
}

static void handle_list(struct client *c, uint64_t id,
			const Ship__ObjListRequest *r)
{
	char filter[KV_NAME_MAX + 16];
	if (!check_bucket(c, id, r->bucket) ||
	    !client_allowed(c, id, POL_OBJ_READ, r->bucket))
		return;
	struct objop *o = op_new(c, id, r->bucket, NULL);
	if (!o)
		return;
	o->show_deleted = r->show_deleted;
	/* What the answer may take is reserved before it starts. */
	if (!op_hold(&o->op, conf->client_output_limit)) {
		op_free(o);
		return;
	}
	snprintf(filter, sizeof(filter), "$O.%s.M.>", r->bucket);
	bucket_call(o, "STREAM.INFO",
		    json_pack("{s:s}", "subjects_filter", filter),
		    list_subjects);
}

/* ---- update meta: as nats.go UpdateMeta ---- */

/* The fields an app names (description, headers, metadata) into j,
 * replacing j's; -1 with why if they cannot be. */
static int meta_fields(json_t *j, const char *description, Ship__Header **hs,
		       size_t nh, Ship__Header **ms, size_t nm, char *why,
		       size_t size)
{
	json_t *h = NULL, *md = NULL;
	json_object_del(j, "description");
	json_object_del(j, "headers");
	json_object_del(j, "metadata");
	if (*description)
		json_object_set_new(j, "description", json_string(description));
	for (size_t i = 0; i < nh; i++) {
		const char *k = hs[i]->key;
		if (!*k) {
			snprintf(why, size, "a header with an empty key");
			return -1;
		}
		if (!h && (!(h = json_object()) ||
			   json_object_set_new(j, "headers", h) < 0))
			goto oom;
		json_t *vals = json_object_get(h, k);
		if (!vals && (!(vals = json_array()) ||
			      json_object_set_new(h, k, vals) < 0))
			goto oom;
		json_array_append_new(vals, json_string(hs[i]->value));
	}
	for (size_t i = 0; i < nm; i++) {
		const char *k = ms[i]->key;
		if (!*k) {
			snprintf(why, size, "a metadata key that is empty");
			return -1;
		}
		if (!md && (!(md = json_object()) ||
			    json_object_set_new(j, "metadata", md) < 0))
			goto oom;
		if (json_object_get(md, k)) {
			snprintf(why, size, "metadata key '%.*s' given twice",
				 CUT(k, 64));
			return -1;
		}
		json_object_set_new(md, k, json_string(ms[i]->value));
	}
	return 0;
oom:
	snprintf(why, size, "out of memory");
	return -1;
}

static void updated(void *arg, json_t *reply, const struct js_err *e)
{
	struct objop *o = arg;
	o->call = NULL;
	if (e) {
		op_fail(o, e);
		return;
	}
	client_ok(o->op.c, o->op.id);
	op_free(o);
}

static void update_stored(void *arg, uint64_t seq, bool dup,
			  const struct js_err *e)
{
	struct objop *o = arg;
	o->call = NULL;
	if (e) {
		op_fail(o, e);
		return;
	}
	/* Renamed: the old name's meta goes (its chunks are the new
	 * name's). Not sent: stored, and the purge owed. */
	if (!strcmp(o->meta, o->meta2) ||
	    !(o->call = purge_subject(o->bucket, o->meta, NULL, updated, o))) {
		client_ok(o->op.c, o->op.id);
		op_free(o);
	}
}

/* The same meta (nuid, size, chunks, digest, options) under the new name
 * with the app's fields. */
static void update_publish(struct objop *o)
{
	struct js_err err;
	char now[48];
	json_t *j = o->info;
	rfc3339_now(now, sizeof(now));
	json_object_set_new(j, "name", json_string(o->name2));
	json_object_del(j, "description");
	json_object_del(j, "headers");
	json_object_del(j, "metadata");
	json_object_update(j, o->fields);
	json_object_set_new(j, "mtime", json_string(now));
	if (!(o->call = publish_meta(o->meta2, json_incref(j), update_stored,
				     o, &err)))
		op_fail(o, &err);
	else
		o->carry_on = true;
}

static void update_target(void *arg, natsMsg *msg, natsStatus st)
{
	struct objop *o = arg;
	struct js_err err;
	json_t *j;
	uint64_t mtime = 0;
	o->lk = NULL;
	int rc = meta_result(msg, st, o->bucket, &j, &mtime, &err);
	if (rc == -2) /* another writer's: replaced */
		rc = 0;
	bool live = rc > 0 && !jdeleted(j);
	json_decref(j);
	if (live)
		kv_set_err(&err, SHIP__CODE__ALREADY_EXISTS,
			   "object '%.*s' exists in bucket '%s'",
			   CUT(o->name2, 200), o->bucket);
	if (rc < 0 || live) {
		op_fail(o, &err);
		return;
	}
	update_publish(o);
}

static void update_looked_up(void *arg, natsMsg *msg, natsStatus st)
{
	struct objop *o = arg;
	struct js_err err;
	json_t *j;
	uint64_t mtime = 0;
	o->lk = NULL;
	int rc = meta_result(msg, st, o->bucket, &j, &mtime, &err);
	if (rc == 0 || (rc > 0 && jdeleted(j))) {
		json_decref(j);
		not_found(&err, o->bucket, o->name);
		rc = -1;
	}
	if (rc < 0) {
		op_fail(o, &err);
		return;
	}
	o->info = j;
	if (!strcmp(o->meta, o->meta2)) {
		update_publish(o);
	} else if (!(o->lk = get_meta(o->bucket, o->meta2, update_target,
				      o))) {
		unavailable(&err);
		op_fail(o, &err);
	}
}

static void handle_update_meta(struct client *c, uint64_t id,
			       const Ship__ObjUpdateMeta *r)
{
	char meta[IPC_SUBJECT_MAX + 1], meta2[IPC_SUBJECT_MAX + 1], why[128];
	const char *to = *r->new_name ? r->new_name : r->name;
	if (!check_bucket(c, id, r->bucket) ||
	    !check_name(c, id, r->bucket, r->name, meta, sizeof(meta)) ||
	    !check_name(c, id, r->bucket, to, meta2, sizeof(meta2)))
		return;
	if (strlen(r->description) > DESCRIPTION_MAX) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
			     "description over %d bytes", DESCRIPTION_MAX);
		return;
	}
	if (!client_allowed(c, id, POL_OBJ_WRITE, r->bucket))
		return;
	struct objop *o = op_new(c, id, r->bucket, r->name);
	if (!o)
		return;
	snprintf(o->meta, sizeof(o->meta), "%s", meta);
	snprintf(o->meta2, sizeof(o->meta2), "%s", meta2);
	snprintf(o->name2, sizeof(o->name2), "%s", to);
	if (!(o->fields = json_object()) ||
	    meta_fields(o->fields, r->description, r->headers, r->n_headers,
			r->metadata, r->n_metadata, why, sizeof(why)) < 0) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT, "%s",
			     o->fields ? why : "out of memory");
		op_free(o);
		return;
	}
	if (!(o->lk = get_meta(o->bucket, meta, update_looked_up, o))) {
		struct js_err err;
		unavailable(&err);
		op_fail(o, &err);
	}
}

/* ---- links: as nats.go AddLink and AddBucketLink ---- */

static json_t *jlink(json_t *j)
{
	return json_object_get(json_object_get(j, "options"), "link");
}

static void stored_link(void *arg, uint64_t seq, bool dup,
			const struct js_err *e)
{
	struct objop *o = arg;
	o->call = NULL;
	if (e) {
		op_fail(o, e);
		return;
	}
	send_info(o->op.c, o->op.id, o->info, wall_ns());
	op_free(o);
}

static void publish_link(struct objop *o)
{
	struct js_err err;
	char nuid[NUID_LEN + 1], now[48];
	new_nuid(nuid);
	rfc3339_now(now, sizeof(now));
	json_t *link = json_pack("{s:s}", "bucket", o->bucket2);
	if (link && *o->name2)
		json_object_set_new(link, "name", json_string(o->name2));
	json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:s, s:{s:o}}",
			      "name", o->name, "bucket", o->bucket, "nuid",
			      nuid, "size", 0, "chunks", 0, "mtime", now,
			      "options", "link", link);
	if (!j) {
		kv_set_err(&err, SHIP__CODE__INTERNAL, "out of memory");
		op_fail(o, &err);
		return;
	}
	o->info = json_incref(j);
	if (!(o->call = publish_meta(o->meta, j, stored_link, o, &err)))
		op_fail(o, &err);
}

/* What the name holds now: a live object stays, a link or a deleted
 * object is replaced. */
static void link_name_got(void *arg, natsMsg *msg, natsStatus st)
{
	struct objop *o = arg;
	struct js_err err;
	json_t *j;
	uint64_t mtime = 0;
	o->lk = NULL;
	int rc = meta_result(msg, st, o->bucket, &j, &mtime, &err);
	if (rc == -2) /* another writer's: replaced */
		rc = 0;
	bool live = rc > 0 && !jdeleted(j) && !jlink(j);
	json_decref(j);
	if (live)
		kv_set_err(&err, SHIP__CODE__ALREADY_EXISTS,
			   "object '%.*s' exists in bucket '%s' and is no link",
			   CUT(o->name, 200), o->bucket);
	if (rc < 0 || live) {
		op_fail(o, &err);
		return;
	}
	publish_link(o);
}

static void link_name_look(struct objop *o)
{
	if (!(o->lk = get_meta(o->bucket, o->meta, link_name_got, o))) {
		struct js_err err;
		unavailable(&err);
		op_fail(o, &err);
	}
}

static void link_target_got(void *arg, natsMsg *msg, natsStatus st)
{
	struct objop *o = arg;
	struct js_err err;
	json_t *j;
	uint64_t mtime = 0;
	o->lk = NULL;
	int rc = meta_result(msg, st, o->bucket2, &j, &mtime, &err);
	if (rc == 0 || (rc > 0 && jdeleted(j)))
		not_found(&err, o->bucket2, o->name2);
	else if (rc > 0 && jlink(j))
		kv_set_err(&err, SHIP__CODE__INVALID_ARGUMENT,
			   "object '%.*s' in bucket '%s' is a link: no link "
			   "to a link",
			   CUT(o->name2, 200), o->bucket2);
	else if (rc > 0)
		err.code = SHIP__CODE__OK;
	json_decref(j);
	if (rc <= 0 || err.code != SHIP__CODE__OK) {
		op_fail(o, &err);
		return;
	}
	link_name_look(o);
}

static void link_bucket_got(void *arg, json_t *reply, const struct js_err *e)
{
	struct objop *o = arg;
	struct js_err nf;
	o->call = NULL;
	if (e) {
		if (kv_no_stream(e)) {
			kv_set_err(&nf, SHIP__CODE__NOT_FOUND,
				   "bucket '%s' not found", o->bucket2);
			e = &nf;
		}
		op_fail(o, e);
		return;
	}
	link_name_look(o);
}

static void handle_link(struct client *c, uint64_t id, const Ship__ObjLink *r)
{
	char meta[IPC_SUBJECT_MAX + 1], meta2[IPC_SUBJECT_MAX + 1] = "";
	if (!check_bucket(c, id, r->bucket) ||
	    !check_name(c, id, r->bucket, r->name, meta, sizeof(meta)) ||
	    !check_bucket(c, id, r->target_bucket) ||
	    (*r->target_name && !check_name(c, id, r->target_bucket,
					    r->target_name, meta2,
					    sizeof(meta2))) ||
	    !client_allowed(c, id, POL_OBJ_WRITE, r->bucket) ||
	    !client_allowed(c, id, POL_OBJ_READ, r->target_bucket))
		return;
	struct objop *o = op_new(c, id, r->bucket, r->name);
	if (!o)
		return;
	snprintf(o->meta, sizeof(o->meta), "%s", meta);
	snprintf(o->bucket2, sizeof(o->bucket2), "%s", r->target_bucket);
	snprintf(o->name2, sizeof(o->name2), "%s", r->target_name);
	snprintf(o->meta2, sizeof(o->meta2), "%s", meta2);
	if (!*o->name2) {
		char what[KV_NAME_MAX + 32];
		snprintf(what, sizeof(what), "STREAM.INFO.OBJ_%s", o->bucket2);
		o->call = js_api(what, NULL, API_TIMEOUT_MS, link_bucket_got, o);
	} else {
		o->lk = get_meta(o->bucket2, meta2, link_target_got, o);
	}
	if (!o->call && !o->lk) {
		struct js_err err;
		unavailable(&err);
		op_fail(o, &err);
	}
}

/* ---- watch: the metas as they change, on kvwatch.c's consumer ---- */

/* A meta message as an ObjectInfo's JSON, or NULL (another writer's). */
static json_t *watch_meta(natsMsg *msg)
{
	json_t *j = json_loadb(natsMsg_GetData(msg),
			       (size_t)natsMsg_GetDataLength(msg), 0, NULL);
	if (!json_is_object(j) || !json_is_string(json_object_get(j, "name"))) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static bool watch_skip(natsMsg *msg, bool ignore_deletes)
{
	json_t *j = watch_meta(msg);
	bool skip = !j || (ignore_deletes && jdeleted(j));
	json_decref(j);
	return skip;
}

/* An ObjectInfo push; the end-of-initial marker has an empty name. */
static int watch_push(struct client *c, uint64_t id, natsMsg *msg,
		      uint64_t ns)
{
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__ObjectInfo marker = SHIP__OBJECT_INFO__INIT;
	struct pinfo p;
	json_t *j = NULL;
	f.id = id;
	f.body_case = SHIP__SERVER_FRAME__BODY_OBJ_INFO;
	f.obj_info = &marker;
	if (msg) {
		if (!(j = watch_meta(msg)))
			return 0; /* skipped already; changed meanwhile? */
		if (pinfo_fill(&p, j, ns) < 0) {
			json_decref(j);
			return -1; /* tried again */
		}
		f.obj_info = &p.pi;
	}
	int rc = client_push(c, &f);
	if (j) {
		pinfo_clear(&p);
		json_decref(j);
	}
	return rc;
}

static void handle_watch(struct client *c, uint64_t id,
			 const Ship__ObjWatch *r)
{
	char stream[KV_NAME_MAX + 8], filter[KV_NAME_MAX + 16];
	if (!check_bucket(c, id, r->bucket) ||
	    !client_allowed(c, id, POL_OBJ_READ, r->bucket))
		return;
	snprintf(stream, sizeof(stream), "OBJ_%s", r->bucket);
	snprintf(filter, sizeof(filter), "$O.%s.M.>", r->bucket);
	struct stream_watch_spec s = {
	    .bucket = r->bucket,
	    .stream = stream,
	    .filter = filter,
	    .prefix_len = strlen(filter) - 1,
	    .include_history = r->include_history,
	    .updates_only = r->updates_only,
	    .ignore_deletes = r->ignore_deletes,
	    .no_marker = r->updates_only,
	    .push = watch_push,
	    .skip = watch_skip,
	};
	kvwatch_open_stream(c, id, &s);
}

/* ---- put: chunks from the app, acked one by one, then the meta ---- */

enum put_state { PUT_LOOKUP, PUT_CHUNKS, PUT_META, PUT_PURGE };

struct objput;
struct pchunk { /* a chunk published, its ack awaited */
	TAILQ_ENTRY(pchunk) entry;
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
	TAILQ_ENTRY(objput) entry;
};

static TAILQ_HEAD(, objput) loose_puts = TAILQ_HEAD_INITIALIZER(loose_puts);

static void put_free(struct objput *p)
{
	struct pchunk *pc, *t;
	stream_close(&p->st);
	if (p->loose)
		TAILQ_REMOVE(&loose_puts, p, entry);
	lookup_cancel(p->lookup);
	js_cancel(p->call);
	TAILQ_FOREACH_SAFE(pc, &p->pending, entry, t)
	{
		js_cancel(pc->call);
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
	if (p->inflight) {
		p->draining = true;
		put_detach(p);
		return;
	}
	if (p->published) {
		ojournal_purge(p->bucket, p->nuid);
		purge_forget(p->bucket, p->nuid);
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
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__StreamEnd end = SHIP__STREAM_END__INIT;
	char text[640];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	end.delivered = p->chunks;
	f.id = p->st.id;
	f.code = code;
	f.error = text;
	f.outcome_unknown = unknown;
	f.body_case = SHIP__SERVER_FRAME__BODY_END;
	f.end = &end;
	client_send(p->st.c, &f);
}

/* End the put with e. Before the meta, nothing is visible and its
 * chunks are purged; after it (e is the meta's answer), they are purged
 * on a definite no, and kept when it may be stored. */
static void put_fail(struct objput *p, const struct js_err *e)
{
	bool unknown = p->state >= PUT_META && e->unknown;
	const char *name = jstr(p->info, "name");
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
		send_info(p->st.c, p->st.id, p->info, wall_ns());
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
		purge_failed(p->bucket, p->old_nuid, e);
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
	if (old && (p->call = purge(p->bucket, p->old_nuid, old_purged, p)))
		return;
	put_done(p);
}

static void put_meta(struct objput *p)
{
	char digest[DIGEST_MAX], now[48];
	struct js_err err;
	if (p->idle)
		evtimer_del(p->idle);
	digest_string(&p->sha, digest, sizeof(digest));
	json_object_set_new(p->info, "size", json_integer((json_int_t)p->size));
	/* Any RFC 3339 time reads (Go writes its zero time, nats.js now):
	 * readers take the message's own time. */
	rfc3339_now(now, sizeof(now));
	json_object_set_new(p->info, "mtime", json_string(now));
	json_object_set_new(p->info, "chunks", json_integer(p->chunks));
	json_object_set_new(p->info, "digest", json_string(digest));
	p->state = PUT_META;
	ojournal_meta(p->nuid);
	if (!(p->call = publish_meta_if(p->meta, json_incref(p->info),
					p->if_absent ? p->expect : NO_EXPECT,
					meta_stored, p, &err)))
		put_fail(p, &err); /* not sent: a definite no */
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

static void handle_chunk(struct client *c, uint64_t id,
			 const Ship__ObjPutChunk *ch);

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
	int rc = meta_result(msg, st, p->bucket, &j, &mtime, &err);
	if (rc == -2) /* unreadable: as if there were no version */
		log_warnx("%s: %s", __func__, err.text);
	else if (rc < 0) {
		put_fail(p, &err);
		return;
	}
	if (p->if_absent && (rc != 0 && (rc < 0 || !jdeleted(j)))) {
		json_decref(j);
		put_fail_code(p, SHIP__CODE__ALREADY_EXISTS,
			      "an object of that name exists");
		return;
	}
	if (rc == 0)
		p->expect = 0;
	if (rc > 0 && !jdeleted(j) && *jstr(j, "nuid") &&
	    !(p->old_nuid = strdup(jstr(j, "nuid")))) {
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
	if (meta_fields(j, r->description, r->headers, r->n_headers,
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

static void handle_put(struct client *c, uint64_t id, const Ship__ObjPut *r)
{
	char meta[IPC_SUBJECT_MAX + 1], why[128];
	if (!check_bucket(c, id, r->bucket) ||
	    !check_name(c, id, r->bucket, r->name, meta, sizeof(meta)))
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
		unavailable(&err);
		client_js_error(c, id, &err);
		return;
	}
	struct objput *p = calloc(1, sizeof(*p));
	if (!p) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	TAILQ_INIT(&p->pending);
	new_nuid(p->nuid);
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
	if (!(p->lookup = get_meta(p->bucket, meta, put_looked_up, p))) {
		struct js_err err;
		unavailable(&err);
		put_fail(p, &err);
	}
}

static void handle_chunk(struct client *c, uint64_t id,
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
		pc->call =
		    js_publish_id(p->chunks_subj, NULL, ch->data.data, len,
				  conf->request_timeout_ms, chunk_acked, pc);
		if (!pc->call) {
			stream_unhold(&p->st, len);
			free(pc);
			struct js_err err;
			unavailable(&err);
			put_fail(p, &err);
			return;
		}
		TAILQ_INSERT_TAIL(&p->pending, pc, entry);
		p->inflight++;
		p->published = true;
		ipc_sha256_update(&p->sha, ch->data.data, len);
		p->size += len;
		p->chunks++;
	}
	if (p->last && !p->inflight)
		put_meta(p);
	return;
bad:
	put_fail_code(p, SHIP__CODE__INVALID_ARGUMENT, why);
}

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
	lookup_cancel(g->lk);
	natsMsg_Destroy(g->held);
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
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__StreamEnd end = SHIP__STREAM_END__INIT;
		end.delivered = g->delivered;
		f.id = g->st.id;
		f.code = code;
		f.error = text;
		f.body_case = SHIP__SERVER_FRAME__BODY_END;
		f.end = &end;
		client_send(g->st.c, &f);
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
	if (direct_get(g->bucket, g->wait, body) < 0) {
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
		natsMsg_Destroy(g->held);
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
		natsMsg_Destroy(msg);
		get_end(g, SHIP__CODE__RESOURCE_EXHAUSTED,
			"object '%.*s' in bucket '%s': a chunk of %zu bytes "
			"does not "
			"fit a frame (max_frame %u)",
			CUT(g->name, 200), g->bucket, len, conf->max_frame);
		return false;
	}
	if (!stream_hold(&g->st, len)) {
		natsMsg_Destroy(msg);
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
		natsMsg_Destroy(msg);
		get_end(
		    g, SHIP__CODE__CORRUPT,
		    "object '%.*s' in bucket '%s': missing chunks (%u of %u "
		    "found)",
		    CUT(g->name, 200), g->bucket, g->fetched, g->chunks);
		return;
	}
	if (status || !seq || !subj || strcmp(subj, g->chunks_subj)) {
		natsMsg_Destroy(msg);
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
		natsMsg_Destroy(msg);
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
	if (!meta_subject(g->bucket, g->name, meta, sizeof(meta))) {
		get_end(g, SHIP__CODE__INVALID_ARGUMENT,
			"object name '%.*s' makes no meta subject",
			CUT(g->name, 64));
		return -1;
	}
	if (!(g->lk = get_meta(g->bucket, meta, meta_got, g))) {
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
	const char *lb = jstr(link, "bucket"), *ln = jstr(link, "name");
	if (!*ln) {
		get_end(
		    g, SHIP__CODE__INVALID_ARGUMENT,
		    "object '%.*s' in bucket '%s' is a link to bucket '%.*s'",
		    CUT(g->name, 200), g->bucket, CUT(lb, 64));
		return;
	}
	if (g->linked || !bucket_valid(lb)) {
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
	int rc = meta_result(msg, st, g->bucket, &j, &mtime, &err);
	if (rc < 0) {
		get_end(g, err.code, "%s", err.text);
		return;
	}
	if (rc == 0 || jdeleted(j)) {
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
	if (!*jstr(j, "nuid")) {
		json_decref(j);
		get_end(g, SHIP__CODE__INTERNAL,
			"object '%.*s' in bucket '%s' has a meta without nuid",
			CUT(g->name, 200), g->bucket);
		return;
	}
	g->size = juint(j, "size");
	g->chunks = (uint32_t)juint(j, "chunks");
	snprintf(g->digest, sizeof(g->digest), "%s", jstr(j, "digest"));
	snprintf(g->chunks_subj, sizeof(g->chunks_subj), "$O.%s.C.%.100s",
		 g->bucket, jstr(j, "nuid"));
	g->next_seq = 1;
	g->chunking = true;
	send_info(g->st.c, g->st.id, j, mtime);
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

static void handle_get(struct client *c, uint64_t id, const Ship__ObjGet *r)
{
	char meta[IPC_SUBJECT_MAX + 1];
	if (!check_bucket(c, id, r->bucket) ||
	    !check_name(c, id, r->bucket, r->name, meta, sizeof(meta)) ||
	    !client_allowed(c, id, POL_OBJ_READ, r->bucket))
		return;
	if (!link_connected()) {
		struct js_err err;
		unavailable(&err);
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

static void handle_credit(struct client *c, uint64_t id,
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

/* ---- the block ---- */

static void req_bucket_create(struct client *c, const Ship__ClientFrame *f)
{
	handle_bucket_create(c, f->id, f->obj_bucket_create);
}

static void req_bucket_status(struct client *c, const Ship__ClientFrame *f)
{
	handle_bucket_status(c, f->id, f->obj_bucket_status->bucket);
}

static void req_bucket_list(struct client *c, const Ship__ClientFrame *f)
{
	handle_bucket_list(c, f->id);
}

static void req_bucket_delete(struct client *c, const Ship__ClientFrame *f)
{
	handle_bucket_delete(c, f->id, f->obj_bucket_delete->bucket);
}

static void req_bucket_seal(struct client *c, const Ship__ClientFrame *f)
{
	handle_bucket_seal(c, f->id, f->obj_bucket_seal->bucket);
}

static void req_put(struct client *c, const Ship__ClientFrame *f)
{
	handle_put(c, f->id, f->obj_put);
}

static void req_put_chunk(struct client *c, const Ship__ClientFrame *f)
{
	handle_chunk(c, f->id, f->obj_put_chunk);
}

static void req_get(struct client *c, const Ship__ClientFrame *f)
{
	handle_get(c, f->id, f->obj_get);
}

static void req_credit(struct client *c, const Ship__ClientFrame *f)
{
	handle_credit(c, f->id, f->obj_credit);
}

static void req_info(struct client *c, const Ship__ClientFrame *f)
{
	handle_info(c, f->id, f->obj_info);
}

static void req_list(struct client *c, const Ship__ClientFrame *f)
{
	handle_list(c, f->id, f->obj_list);
}

static void req_delete(struct client *c, const Ship__ClientFrame *f)
{
	handle_delete(c, f->id, f->obj_delete);
}

static void req_update_meta(struct client *c, const Ship__ClientFrame *f)
{
	handle_update_meta(c, f->id, f->obj_update_meta);
}

static void req_link(struct client *c, const Ship__ClientFrame *f)
{
	handle_link(c, f->id, f->obj_link);
}

static void req_watch(struct client *c, const Ship__ClientFrame *f)
{
	handle_watch(c, f->id, f->obj_watch);
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
	lookup_cancel(s->lk);
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
	int rc = meta_result(msg, st, e->bucket, &j, &mtime, &err);
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
	bool ours = rc > 0 && !jdeleted(j) && !strcmp(jstr(j, "nuid"), e->nuid);
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
				: (s->lk = get_meta(e->bucket, e->meta,
						    settle_looked_up, s)) != NULL;
		if (!sent) {
			settle_end(s, false);
			return;
		}
	}
}

static void settles_finish(void)
{
	struct settle *s;
	while ((s = TAILQ_FIRST(&settles)))
		settle_end(s, false);
}

static void obj_link_changed(bool up)
{
	purges_link_changed(up);
	if (up)
		settle_more();
}

/* Work that outlived its app stops; what it would purge stays. */
static void obj_finish(void)
{
	struct objput *p;
	struct objop *o;
	while ((p = TAILQ_FIRST(&loose_puts)))
		put_free(p);
	while ((o = TAILQ_FIRST(&loose_ops)))
		op_free(o);
	purges_finish();
	settles_finish();
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
