/* SPDX-License-Identifier: MIT */
/* KV buckets and entries (NATS KV, ADR-8) for local apps: names checked
 * the nats.go way, every operation an async JetStream request. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shipd.h"

#define API_TIMEOUT_MS 5000
#define DUP_WINDOW_NS (120LL * 1000000000LL)
#define LIST_PAGES_MAX 64
#define DESCRIPTION_MAX 4096

/* ---- names ---- */

bool kv_bucket_valid(const char *s)
{
	if (!s || !*s || strlen(s) > KV_NAME_MAX - 3)
		return false;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
			return false;
	return true;
}

static bool key_chars(const char *s, bool wild)
{
	size_t n = strlen(s);
	if (!n || n > IPC_SUBJECT_MAX - KV_NAME_MAX || s[0] == '.' ||
	    s[n - 1] == '.' || strstr(s, ".."))
		return false;
	for (const char *p = s; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (isalnum(ch) || ch == '-' || ch == '/' || ch == '_' ||
		    ch == '=' || ch == '.')
			continue;
		if (wild && ch == '*')
			continue;
		if (wild && ch == '>' && p[1] == '\0')
			continue;
		return false;
	}
	return true;
}

bool kv_key_valid(const char *s)
{
	return s && key_chars(s, false);
}

bool kv_pattern_valid(const char *s)
{
	if (!s || !key_chars(s, true))
		return false;
	/* Wildcards are whole tokens, as NATS subjects want them. */
	for (const char *p = s; *p; p++)
		if ((*p == '*' || *p == '>') &&
		    ((p > s && p[-1] != '.') || (p[1] && p[1] != '.')))
			return false;
	return true;
}

/* ---- errors ---- */

static void set_err(struct js_err *e, Ship__Code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(struct js_err *e, Ship__Code code, const char *fmt, ...)
{
	va_list ap;
	memset(e, 0, sizeof(*e));
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
}

uint64_t kv_current_revision(const struct js_err *e)
{
	const char *p = strstr(e->text, "current revision ");
	if (!p)
		p = strstr(e->text, "wrong last sequence: ");
	if (!p)
		return 0;
	p = strpbrk(p, "0123456789");
	return p ? strtoull(p, NULL, 10) : 0;
}

/* No responder on a KV subject or API: no such stream (JetStream itself
 * answers everything else). */
static bool no_stream(const struct js_err *e)
{
	return (e->code == SHIP__CODE__UNAVAILABLE &&
	        strstr(e->text, "no responders")) ||
	       e->err_code == 10059;
}

/* ---- buckets known to exist ---- */

/* A direct get to a stream that does not exist gets no answer at all
 * (the API subject has interest, nobody replies), so a bucket is looked
 * up once, as nats.go does when it binds one, and remembered. */
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

static void known_del(const char *b)
{
	for (unsigned i = 0; i < KNOWN_MAX; i++)
		if (!strcmp(known[i], b))
			known[i][0] = '\0';
}

/* ---- get and put ---- */

struct kv_req {
	int op; /* -1: get */
	char bucket[KV_NAME_MAX];
	char *key;
	void *value;
	size_t len;
	uint64_t expected;
	uint64_t revision;
	bool retried;
	kv_get_fn *get_fn;
	kv_put_fn *put_fn;
	void *arg;
	struct js_call *call;
	struct link_wait *wait;
};

static void req_free(struct kv_req *r)
{
	js_cancel(r->call);
	link_wait_cancel(r->wait);
	free(r->key);
	free(r->value);
	free(r);
}

void kv_req_cancel(struct kv_req *r)
{
	if (r)
		req_free(r);
}

static struct kv_req *req_new(const char *bucket, const char *key)
{
	struct kv_req *r = calloc(1, sizeof(*r));
	if (!r || !(r->key = strdup(key))) {
		free(r);
		return NULL;
	}
	snprintf(r->bucket, sizeof(r->bucket), "%s", bucket);
	return r;
}

/* RFC 3339 (2.9 writes nanoseconds and Z) to Unix ns; 0 if unreadable. */
uint64_t kv_parse_time_ns(const char *s)
{
	struct tm tm = {0};
	int used = 0;
	if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
	                 &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec,
	                 &used) != 6)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t t = timegm(&tm);
	uint64_t ns = 0, scale = 100000000;
	const char *p = s + used;
	if (*p == '.')
		for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
			ns += (uint64_t)(*p - '0') * scale;
	int sign = 0, oh = 0, om = 0;
	if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		sscanf(p + 1, "%2d:%2d", &oh, &om);
	}
	t -= sign * (oh * 3600 + om * 60);
	return t < 0 ? 0 : (uint64_t)t * 1000000000u + ns;
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

static int put_publish(struct kv_req *r, uint64_t expected, bool cas,
                       struct js_err *err);
static void put_finish(struct kv_req *r, uint64_t seq, const struct js_err *e);

/* The last entry of a key, after a failed create. */
static void create_check(struct kv_req *r, const struct kv_entry *e,
                         const struct js_err *err)
{
	struct js_err ce;
	if (e && e->op != SHIP__KV_OP__KV_PUT) {
		r->retried = true;
		if (put_publish(r, e->revision, true, &ce) < 0)
			put_finish(r, 0, &ce);
		return;
	}
	if (e)
		set_err(&ce, SHIP__CODE__WRONG_REVISION,
		        "key '%s' exists (current revision %" PRIu64 ")", r->key,
		        e->revision);
	else if (err->code == SHIP__CODE__NOT_FOUND)
		/* Purged meanwhile: say so, the app may try again. */
		set_err(&ce, SHIP__CODE__WRONG_REVISION,
		        "key '%s' changed during create (current revision 0)",
		        r->key);
	else
		ce = *err;
	put_finish(r, 0, &ce);
}

static void get_done(void *arg, natsMsg *msg, natsStatus st)
{
	struct kv_req *r = arg;
	struct js_err err;
	r->wait = NULL;
	if (st != NATS_OK)
		known_del(r->bucket); /* look it up again next time */
	if (st == NATS_NO_RESPONDERS)
		set_err(&err, SHIP__CODE__NOT_FOUND, "bucket '%s' not found",
		        r->bucket);
	else if (st == NATS_TIMEOUT)
		set_err(&err, SHIP__CODE__TIMEOUT, "JetStream did not answer in time");
	else if (st != NATS_OK)
		set_err(&err, SHIP__CODE__UNAVAILABLE,
		        "NATS connection lost before JetStream answered");
	if (st != NATS_OK)
		goto fail;
	const char *status = NULL, *subj = NULL, *seq = NULL, *ts = NULL;
	natsMsgHeader_Get(msg, "Status", &status);
	if (status && !strcmp(status, "404")) {
		if (r->revision)
			set_err(&err, SHIP__CODE__NOT_FOUND,
			        "revision %" PRIu64 " of key '%s' not found",
			        r->revision, r->key);
		else
			set_err(&err, SHIP__CODE__NOT_FOUND, "key '%s' not found",
			        r->key);
		goto fail;
	}
	if (status) {
		const char *d = NULL;
		natsMsgHeader_Get(msg, "Description", &d);
		set_err(&err, SHIP__CODE__INTERNAL, "direct get: status %s %s",
		        status, d ? d : "");
		goto fail;
	}
	natsMsgHeader_Get(msg, "Nats-Subject", &subj);
	natsMsgHeader_Get(msg, "Nats-Sequence", &seq);
	natsMsgHeader_Get(msg, "Nats-Time-Stamp", &ts);
	char want[IPC_SUBJECT_MAX + 1];
	snprintf(want, sizeof(want), "$KV.%s.%s", r->bucket, r->key);
	if (!subj || strcmp(subj, want) != 0 || !seq) {
		set_err(&err, SHIP__CODE__NOT_FOUND,
		        "revision %" PRIu64 " is not an entry of key '%s'",
		        r->revision, r->key);
		goto fail;
	}
	struct kv_entry e = {
		.key = r->key,
		.value = natsMsg_GetData(msg),
		.len = (size_t)natsMsg_GetDataLength(msg),
		.revision = strtoull(seq, NULL, 10),
		.created_ns = kv_parse_time_ns(ts),
		.op = op_of(msg),
	};
	if (r->op == SHIP__KV_WRITE_OP__KV_WRITE_CREATE) {
		create_check(r, &e, NULL);
	} else {
		r->get_fn(r->arg, &e, NULL);
		req_free(r);
	}
	natsMsg_Destroy(msg);
	return;
fail:
	natsMsg_Destroy(msg);
	if (r->op == SHIP__KV_WRITE_OP__KV_WRITE_CREATE) {
		create_check(r, NULL, &err);
		return;
	}
	r->get_fn(r->arg, NULL, &err);
	req_free(r);
}

static int direct_get(struct kv_req *r, uint64_t revision, struct js_err *err);

static void looked_up(void *arg, json_t *reply, const struct js_err *e)
{
	struct kv_req *r = arg;
	struct js_err err;
	r->call = NULL;
	if (!e) {
		known_add(r->bucket);
		if (direct_get(r, r->revision, &err) == 0)
			return;
	} else if (no_stream(e)) {
		set_err(&err, SHIP__CODE__NOT_FOUND, "bucket '%s' not found",
		        r->bucket);
	} else {
		err = *e;
	}
	if (r->op == SHIP__KV_WRITE_OP__KV_WRITE_CREATE) {
		create_check(r, NULL, &err);
		return;
	}
	r->get_fn(r->arg, NULL, &err);
	req_free(r);
}

static int direct_get(struct kv_req *r, uint64_t revision, struct js_err *err)
{
	char subj[KV_NAME_MAX + 64], body[IPC_SUBJECT_MAX + 64];
	if (!link_connected()) {
		set_err(err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
		        link_state_name(link_info()->state));
		return -1;
	}
	if (!known_has(r->bucket)) {
		snprintf(subj, sizeof(subj), "STREAM.INFO.KV_%s", r->bucket);
		r->revision = revision;
		r->call = js_api(subj, NULL, conf->request_timeout_ms, looked_up, r);
		if (!r->call) {
			set_err(err, SHIP__CODE__UNAVAILABLE, "cannot send to NATS");
			return -1;
		}
		return 0;
	}
	snprintf(subj, sizeof(subj), "$JS.API.DIRECT.GET.KV_%s", r->bucket);
	if (revision)
		snprintf(body, sizeof(body), "{\"seq\":%" PRIu64 "}", revision);
	else
		snprintf(body, sizeof(body), "{\"last_by_subj\":\"$KV.%s.%s\"}",
		         r->bucket, r->key);
	r->revision = revision;
	r->wait = link_wait_new(conf->request_timeout_ms, false, get_done, r);
	if (!r->wait ||
	    natsConnection_PublishRequest(link_conn(), subj,
	                                  link_wait_inbox(r->wait), body,
	                                  (int)strlen(body)) != NATS_OK) {
		link_wait_cancel(r->wait);
		r->wait = NULL;
		set_err(err, SHIP__CODE__UNAVAILABLE, "cannot send to NATS");
		return -1;
	}
	return 0;
}

struct kv_req *kv_get(const char *bucket, const char *key, uint64_t revision,
                      kv_get_fn *fn, void *arg, struct js_err *err)
{
	struct kv_req *r = req_new(bucket, key);
	if (!r) {
		set_err(err, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	r->op = -1;
	r->get_fn = fn;
	r->arg = arg;
	if (direct_get(r, revision, err) < 0) {
		req_free(r);
		return NULL;
	}
	return r;
}

static void put_finish(struct kv_req *r, uint64_t seq, const struct js_err *e)
{
	r->put_fn(r->arg, seq, e);
	req_free(r);
}

static void put_done(void *arg, uint64_t seq, bool dup,
                     const struct js_err *e)
{
	struct kv_req *r = arg;
	struct js_err err;
	r->call = NULL;
	if (!e) {
		put_finish(r, seq, NULL);
		return;
	}
	if (e->err_code == 10071 && r->op == SHIP__KV_WRITE_OP__KV_WRITE_CREATE &&
	    !r->retried) {
		/* Maybe only a delete marker is there: look. */
		if (direct_get(r, 0, &err) < 0)
			put_finish(r, 0, &err);
		return;
	}
	if (e->err_code == 10071) {
		uint64_t cur = kv_current_revision(e);
		if (r->op == SHIP__KV_WRITE_OP__KV_WRITE_CREATE)
			set_err(&err, SHIP__CODE__WRONG_REVISION,
			        "key '%s' exists (current revision %" PRIu64 ")",
			        r->key, cur);
		else
			set_err(&err, SHIP__CODE__WRONG_REVISION,
			        "key '%s' is not at revision %" PRIu64
			        " (current revision %" PRIu64 ")",
			        r->key, r->expected, cur);
	} else if (no_stream(e)) {
		known_del(r->bucket);
		set_err(&err, SHIP__CODE__NOT_FOUND, "bucket '%s' not found",
		        r->bucket);
	} else if (e->err_code == 10054) {
		set_err(&err, SHIP__CODE__RESOURCE_EXHAUSTED,
		        "value of %zu bytes is over bucket '%s''s max value size",
		        r->len, r->bucket);
	} else {
		err = *e;
	}
	put_finish(r, 0, &err);
}

static int put_publish(struct kv_req *r, uint64_t expected, bool cas,
                       struct js_err *err)
{
	char subj[IPC_SUBJECT_MAX + 1], num[24];
	natsMsg *m = NULL;
	snprintf(subj, sizeof(subj), "$KV.%s.%s", r->bucket, r->key);
	natsStatus s = natsMsg_Create(&m, subj, NULL, r->value, (int)r->len);
	if (s == NATS_OK && cas) {
		snprintf(num, sizeof(num), "%" PRIu64, expected);
		s = natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", num);
	}
	if (s == NATS_OK && r->op == SHIP__KV_WRITE_OP__KV_WRITE_DELETE)
		s = natsMsgHeader_Set(m, "KV-Operation", "DEL");
	if (s == NATS_OK && r->op == SHIP__KV_WRITE_OP__KV_WRITE_PURGE) {
		s = natsMsgHeader_Set(m, "KV-Operation", "PURGE");
		if (s == NATS_OK)
			s = natsMsgHeader_Set(m, "Nats-Rollup", "sub");
	}
	if (s != NATS_OK) {
		natsMsg_Destroy(m);
		set_err(err, SHIP__CODE__INTERNAL, "cannot build the message");
		return -1;
	}
	r->call = js_publish(m, conf->request_timeout_ms, put_done, r);
	if (!r->call) {
		set_err(err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
		        link_state_name(link_info()->state));
		return -1;
	}
	return 0;
}

struct kv_req *kv_put(const char *bucket, const char *key, int op,
                      const void *value, size_t len, uint64_t expected,
                      kv_put_fn *fn, void *arg, struct js_err *err)
{
	int64_t maxp = link_info()->max_payload;
	if (maxp > 0 && len > (uint64_t)maxp) {
		set_err(err, SHIP__CODE__RESOURCE_EXHAUSTED,
		        "value of %zu bytes is over the server's max payload of "
		        "%" PRId64,
		        len, maxp);
		return NULL;
	}
	if (!link_connected()) {
		set_err(err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
		        link_state_name(link_info()->state));
		return NULL;
	}
	struct kv_req *r = req_new(bucket, key);
	if (!r || (len && !(r->value = malloc(len)))) {
		if (r)
			req_free(r);
		set_err(err, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	if (len)
		memcpy(r->value, value, len);
	if (op == SHIP__KV_WRITE_OP__KV_WRITE_DELETE ||
	    op == SHIP__KV_WRITE_OP__KV_WRITE_PURGE)
		r->len = 0;
	else
		r->len = len;
	r->op = op;
	r->expected = expected;
	r->put_fn = fn;
	r->arg = arg;
	bool cas = op == SHIP__KV_WRITE_OP__KV_WRITE_CREATE ||
	           op == SHIP__KV_WRITE_OP__KV_WRITE_UPDATE;
	if (put_publish(r, op == SHIP__KV_WRITE_OP__KV_WRITE_UPDATE ? expected : 0,
	                cas, err) < 0) {
		req_free(r);
		return NULL;
	}
	return r;
}

/* ---- bucket configuration ---- */

int kv_bucket_cfg(struct js_stream_cfg *cfg, const Ship__KvBucketConfig *bc,
                  struct js_err *err)
{
	static char subject[KV_NAME_MAX + 8];
	static char name[KV_NAME_MAX + 4];
	static char *subjects[1];
	if (!kv_bucket_valid(bc->bucket)) {
		set_err(err, SHIP__CODE__INVALID_ARGUMENT,
		        "invalid bucket name '%.64s' (letters, digits, _ and - only)",
		        bc->bucket);
		return -1;
	}
	if (bc->history > KV_MAX_HISTORY) {
		set_err(err, SHIP__CODE__INVALID_ARGUMENT,
		        "history %u is over the limit of %d", bc->history,
		        KV_MAX_HISTORY);
		return -1;
	}
	if (bc->max_value_size < 0 || bc->max_bytes < 0 || bc->replicas > 5 ||
	    bc->ttl_ms > INT64_MAX / 1000000) {
		set_err(err, SHIP__CODE__INVALID_ARGUMENT,
		        "negative size, over 5 replicas or a TTL out of range");
		return -1;
	}
	if (strlen(bc->description) > DESCRIPTION_MAX) {
		set_err(err, SHIP__CODE__INVALID_ARGUMENT,
		        "description over %d bytes", DESCRIPTION_MAX);
		return -1;
	}
	snprintf(name, sizeof(name), "KV_%s", bc->bucket);
	snprintf(subject, sizeof(subject), "$KV.%s.>", bc->bucket);
	subjects[0] = subject;
	memset(cfg, 0, sizeof(*cfg));
	cfg->name = name;
	cfg->description = bc->description;
	cfg->subjects = subjects;
	cfg->n_subjects = 1;
	cfg->max_age_ns = (int64_t)bc->ttl_ms * 1000000;
	cfg->max_bytes = bc->max_bytes;
	cfg->max_msgs_per_subject = bc->history ? bc->history : 1;
	cfg->max_msg_size = bc->max_value_size;
	/* nats.go: 2 min, or the TTL if shorter (a longer one is refused). */
	cfg->duplicate_window_ns = cfg->max_age_ns && cfg->max_age_ns < DUP_WINDOW_NS
	                                   ? cfg->max_age_ns
	                                   : DUP_WINDOW_NS;
	cfg->replicas = bc->replicas ? (int)bc->replicas : 1;
	cfg->memory = bc->memory;
	cfg->discard_new = true;
	cfg->allow_rollup = true;
	cfg->deny_delete = true;
	cfg->allow_direct = true;
	/* The statics are copied by js_stream_ensure before it returns. */
	return 0;
}

struct ensure_ctx {
	kv_ensure_fn *fn;
	void *arg;
	bool tolerant;
};

static void ensured(void *arg, const struct js_err *e, bool created)
{
	struct ensure_ctx *x = arg;
	if (e && e->code == SHIP__CODE__ALREADY_EXISTS && x->tolerant)
		e = NULL;
	x->fn(x->arg, e);
	free(x);
}

int kv_ensure(const char *bucket, uint32_t history, uint64_t ttl_ms,
              bool tolerant, kv_ensure_fn *fn, void *arg)
{
	Ship__KvBucketConfig bc = SHIP__KV_BUCKET_CONFIG__INIT;
	struct js_stream_cfg cfg;
	struct js_err err;
	bc.bucket = (char *)bucket;
	bc.history = history;
	bc.ttl_ms = ttl_ms;
	if (kv_bucket_cfg(&cfg, &bc, &err) < 0)
		return -1;
	struct ensure_ctx *x = calloc(1, sizeof(*x));
	if (!x)
		return -1;
	x->fn = fn;
	x->arg = arg;
	x->tolerant = tolerant;
	if (js_stream_ensure(&cfg, ensured, x) < 0) {
		free(x);
		return -1;
	}
	return 0;
}

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
	TAILQ_ENTRY(kvop) entry;
	enum op_kind kind;
	struct client *c; /* NULL once the app is gone */
	uint64_t id;
	char bucket[KV_NAME_MAX];
	char key[IPC_SUBJECT_MAX + 1];
	struct kv_req *req;
	struct js_call *call;
	struct kv_collect *coll;
	bool ensuring; /* in kv_ensure, which cannot be cancelled */
	size_t page;
	json_t *list;
};

static TAILQ_HEAD(, kvop) ops = TAILQ_HEAD_INITIALIZER(ops);

static struct kvop *op_new(struct client *c, uint64_t id, enum op_kind kind,
                           const char *bucket, const char *key)
{
	if (c->n_requests >= conf->max_requests) {
		client_error(c, id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "%u requests in flight, the limit", c->n_requests);
		return NULL;
	}
	struct kvop *o = calloc(1, sizeof(*o));
	if (!o) {
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	o->kind = kind;
	o->c = c;
	o->id = id;
	snprintf(o->bucket, sizeof(o->bucket), "%s", bucket ? bucket : "");
	snprintf(o->key, sizeof(o->key), "%s", key ? key : "");
	c->n_requests++;
	TAILQ_INSERT_TAIL(&ops, o, entry);
	return o;
}

static void op_free(struct kvop *o)
{
	TAILQ_REMOVE(&ops, o, entry);
	if (o->c)
		o->c->n_requests--;
	kv_req_cancel(o->req);
	js_cancel(o->call);
	kv_collect_cancel(o->coll);
	json_decref(o->list);
	free(o);
}

static void op_fail(struct kvop *o, const struct js_err *e)
{
	if (o->c)
		client_error(o->c, o->id, e->code, "%s", e->text);
	op_free(o);
}

static bool check_bucket(struct client *c, uint64_t id, const char *b)
{
	if (kv_bucket_valid(b))
		return true;
	client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
	             "invalid bucket name '%.64s' (letters, digits, _ and - only)",
	             b);
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
	f.id = o->id;
	f.body_case = SHIP__SERVER_FRAME__BODY_KV_ENTRY;
	f.kv_entry = &pe;
	client_send(o->c, &f);
}

static void got(void *arg, const struct kv_entry *e, const struct js_err *err)
{
	struct kvop *o = arg;
	o->req = NULL;
	if (e && e->op != SHIP__KV_OP__KV_PUT) {
		struct js_err nf;
		set_err(&nf, SHIP__CODE__NOT_FOUND, "key '%s' was %s at revision %" PRIu64,
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
	if (!check_bucket(c, id, g->bucket) || !check_key(c, id, g->key))
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

static void info_done(void *arg, json_t *reply, const struct js_err *e)
{
	struct kvop *o = arg;
	o->call = NULL;
	if (e) {
		struct js_err nf;
		if (no_stream(e)) {
			set_err(&nf, SHIP__CODE__NOT_FOUND, "bucket '%s' not found",
			        o->bucket);
			e = &nf;
		}
		op_fail(o, e);
		return;
	}
	Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
	Ship__KvBucketInfo bi;
	Ship__KvBucketConfig bc;
	info_from_json(&bi, &bc, reply);
	f.id = o->id;
	f.body_case = SHIP__SERVER_FRAME__BODY_KV_BUCKET;
	f.kv_bucket = &bi;
	client_send(o->c, &f);
	op_free(o);
}

static int start_info(struct kvop *o, struct js_err *err)
{
	char what[KV_NAME_MAX + 32];
	snprintf(what, sizeof(what), "STREAM.INFO.KV_%s", o->bucket);
	o->kind = OP_INFO;
	o->call = js_api(what, NULL, API_TIMEOUT_MS, info_done, o);
	if (!o->call) {
		set_err(err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
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
	if (!o->c) {
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
	struct ensure_ctx *x = calloc(1, sizeof(*x));
	if (x) {
		x->fn = created;
		x->arg = o;
	}
	if (!x || js_stream_ensure(&cfg, ensured, x) < 0) {
		free(x);
		o->ensuring = false;
		set_err(&err, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
		op_fail(o, &err);
	}
}

static void handle_bucket_info(struct client *c, uint64_t id, const char *b)
{
	struct js_err err;
	if (!check_bucket(c, id, b))
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
	o->call = js_api("STREAM.LIST", body, API_TIMEOUT_MS, listed, o);
	if (!o->call) {
		set_err(err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
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
		client_error(o->c, o->id, SHIP__CODE__INTERNAL, "out of memory");
	} else {
		for (size_t i = 0; i < n; i++) {
			info_from_json(&infos[i], &cfgs[i], json_array_get(o->list, i));
			ptrs[i] = &infos[i];
		}
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__KvBucketList bl = SHIP__KV_BUCKET_LIST__INIT;
		bl.n_buckets = n;
		bl.buckets = ptrs;
		f.id = o->id;
		f.body_case = SHIP__SERVER_FRAME__BODY_KV_BUCKETS;
		f.kv_buckets = &bl;
		client_send(o->c, &f);
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
		if (name && !strncmp(name, "KV_", 3) && kv_bucket_valid(name + 3))
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
			set_err(&err, SHIP__CODE__INTERNAL, "out of memory");
		op_fail(o, &err);
	}
}

static void deleted(void *arg, json_t *reply, const struct js_err *e)
{
	struct kvop *o = arg;
	o->call = NULL;
	if (e) {
		struct js_err nf;
		if (no_stream(e)) {
			set_err(&nf, SHIP__CODE__NOT_FOUND, "bucket '%s' not found",
			        o->bucket);
			e = &nf;
		}
		op_fail(o, e);
		return;
	}
	known_del(o->bucket);
	log_info("client %" PRIu64 " deleted bucket %s", o->c ? o->c->cid : 0,
	         o->bucket);
	client_ok(o->c, o->id);
	op_free(o);
}

static void handle_bucket_delete(struct client *c, uint64_t id, const char *b)
{
	char what[KV_NAME_MAX + 32];
	if (!check_bucket(c, id, b))
		return;
	struct kvop *o = op_new(c, id, OP_DELETE, b, NULL);
	if (!o)
		return;
	snprintf(what, sizeof(what), "STREAM.DELETE.KV_%s", b);
	if (!(o->call = js_api(what, NULL, API_TIMEOUT_MS, deleted, o))) {
		struct js_err err;
		set_err(&err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
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
	f.id = o->id;
	if (o->kind == OP_KEYS) {
		Ship__KvKeysReply kr = SHIP__KV_KEYS_REPLY__INIT;
		char **keys = calloc(n ? n : 1, sizeof(*keys));
		if (!keys) {
			client_error(o->c, o->id, SHIP__CODE__INTERNAL, "out of memory");
			op_free(o);
			return;
		}
		for (size_t i = 0; i < n; i++)
			keys[i] = (char *)es[i].key;
		kr.n_keys = n;
		kr.keys = keys;
		f.body_case = SHIP__SERVER_FRAME__BODY_KV_KEYS;
		f.kv_keys = &kr;
		client_send(o->c, &f);
		free(keys);
		op_free(o);
		return;
	}
	if (n == 0) {
		client_error(o->c, o->id, SHIP__CODE__NOT_FOUND, "key '%s' not found",
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
		client_send(o->c, &f);
	} else {
		client_error(o->c, o->id, SHIP__CODE__INTERNAL, "out of memory");
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
	struct kvop *o = op_new(c, id, kind, bucket, pattern);
	if (!o)
		return;
	struct kv_watch_spec spec = {
		.bucket = bucket,
		.pattern = pattern,
		.include_history = kind == OP_HISTORY,
		.ignore_deletes = kind == OP_KEYS,
		.meta_only = kind == OP_KEYS,
	};
	/* What fits one reply the app is sure to take. */
	o->coll = kv_collect(&spec, conf->client_output_limit, collected, o);
	if (!o->coll) {
		struct js_err err;
		set_err(&err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
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

bool kv_dispatch(struct client *c, const Ship__ClientFrame *f)
{
	switch (f->body_case) {
	case SHIP__CLIENT_FRAME__BODY_KV_BUCKET_CREATE:
		handle_bucket_create(c, f->id, f->kv_bucket_create);
		return true;
	case SHIP__CLIENT_FRAME__BODY_KV_BUCKET_INFO:
		handle_bucket_info(c, f->id, f->kv_bucket_info->bucket);
		return true;
	case SHIP__CLIENT_FRAME__BODY_KV_BUCKET_LIST:
		handle_bucket_list(c, f->id);
		return true;
	case SHIP__CLIENT_FRAME__BODY_KV_BUCKET_DELETE:
		handle_bucket_delete(c, f->id, f->kv_bucket_delete->bucket);
		return true;
	case SHIP__CLIENT_FRAME__BODY_KV_GET:
		handle_get(c, f->id, f->kv_get);
		return true;
	case SHIP__CLIENT_FRAME__BODY_KV_WRITE:
		handle_write(c, f->id, f->kv_write);
		return true;
	case SHIP__CLIENT_FRAME__BODY_KV_WATCH:
		handle_watch(c, f->id, f->kv_watch);
		return true;
	case SHIP__CLIENT_FRAME__BODY_KV_WATCH_STOP:
		handle_watch_stop(c, f->id, f->kv_watch_stop);
		return true;
	case SHIP__CLIENT_FRAME__BODY_KV_KEYS:
		handle_collect(c, f->id, OP_KEYS, f->kv_keys->bucket,
		               f->kv_keys->filter);
		return true;
	case SHIP__CLIENT_FRAME__BODY_KV_HISTORY:
		handle_collect(c, f->id, OP_HISTORY, f->kv_history->bucket,
		               f->kv_history->key);
		return true;
	case SHIP__CLIENT_FRAME__BODY_BEING:
		registry_being(c, f->id, f->being);
		return true;
	case SHIP__CLIENT_FRAME__BODY_STORE:
		registry_store(c, f->id, f->store);
		return true;
	default:
		return false;
	}
}

void kv_client_gone(struct client *c)
{
	struct kvop *o, *tmp;
	TAILQ_FOREACH_SAFE(o, &ops, entry, tmp) {
		if (o->c != c)
			continue;
		o->c = NULL;
		if (!o->ensuring)
			op_free(o);
	}
	kvwatch_client_gone(c);
	registry_client_gone(c);
}

void kv_link_changed(bool up)
{
	kvwatch_link_changed(up);
	registry_link_changed(up);
}

void kv_finish(void)
{
	struct kvop *o, *tmp;
	TAILQ_FOREACH_SAFE(o, &ops, entry, tmp) {
		o->c = NULL;
		/* One in kv_ensure is freed by its callback, which the link
		 * runs (with an error) when it finishes. */
		if (!o->ensuring)
			op_free(o);
	}
	kvwatch_finish();
	registry_finish();
}
