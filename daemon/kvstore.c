/* SPDX-License-Identifier: MIT */
/* The KV engine (NATS KV, ADR-8): names checked the nats.go way, gets and
 * puts as async JetStream requests, bucket configurations. */
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
	/* "KV_" and the name make a stream name: at most 255. */
	if (!s || !*s || strlen(s) > KV_BUCKET_MAX)
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

void kv_set_err(struct js_err *e, Ship__Code code, const char *fmt, ...)
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

/* No such stream: JetStream says so, or nothing took a publish on its
 * subjects. No responders on the API itself is not that: nothing serves
 * the API (JetStream off or starting; the hub out of reach). */
bool kv_no_stream(const struct js_err *e)
{
	return (e->no_responders && !e->unreachable) || e->err_code == 10059;
}

enum js_dom kv_dom(const char *bucket)
{
	if (!strncmp(bucket, "JOBS_", 5))
		return conf->jobs_domain;
	if (config_listed(conf->hub_buckets, bucket))
		return JS_HUB;
	return conf->kv_domain;
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

void kv_forget_bucket(const char *b)
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
	bool cas;
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
		kv_set_err(&ce, SHIP__CODE__WRONG_REVISION,
		        "key '%s' exists (current revision %" PRIu64 ")", r->key,
		        e->revision);
	else if (err->code == SHIP__CODE__NOT_FOUND)
		/* Purged meanwhile: say so, the app may try again. */
		kv_set_err(&ce, SHIP__CODE__WRONG_REVISION,
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
		kv_forget_bucket(r->bucket); /* look it up again next time */
	/* JetStream takes all of its API: nobody there is no JetStream. */
	if (st == NATS_NO_RESPONDERS) {
		kv_set_err(&err, SHIP__CODE__UNAVAILABLE,
		           "bucket '%s': JetStream (%s) is not reachable (no "
		           "responders)",
		           r->bucket, js_dom_label(kv_dom(r->bucket)));
		err.no_responders = err.unreachable = true;
	} else if (st == NATS_TIMEOUT)
		kv_set_err(&err, SHIP__CODE__TIMEOUT, "JetStream did not answer in time");
	else if (st != NATS_OK)
		kv_set_err(&err, SHIP__CODE__UNAVAILABLE,
		        "NATS connection lost before JetStream answered");
	if (st != NATS_OK)
		goto fail;
	const char *status = NULL, *subj = NULL, *seq = NULL, *ts = NULL;
	natsMsgHeader_Get(msg, "Status", &status);
	if (status && !strcmp(status, "404")) {
		if (r->revision)
			kv_set_err(&err, SHIP__CODE__NOT_FOUND,
			        "revision %" PRIu64 " of key '%s' not found",
			        r->revision, r->key);
		else
			kv_set_err(&err, SHIP__CODE__NOT_FOUND, "key '%s' not found",
			        r->key);
		goto fail;
	}
	if (status) {
		const char *d = NULL;
		natsMsgHeader_Get(msg, "Description", &d);
		kv_set_err(&err, SHIP__CODE__INTERNAL, "direct get: status %s %s",
		        status, d ? d : "");
		goto fail;
	}
	natsMsgHeader_Get(msg, "Nats-Subject", &subj);
	natsMsgHeader_Get(msg, "Nats-Sequence", &seq);
	natsMsgHeader_Get(msg, "Nats-Time-Stamp", &ts);
	char want[IPC_SUBJECT_MAX + 1];
	snprintf(want, sizeof(want), "$KV.%s.%s", r->bucket, r->key);
	if (!subj || strcmp(subj, want) != 0 || !seq) {
		kv_set_err(&err, SHIP__CODE__NOT_FOUND,
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
	link_msg_destroy(msg);
	return;
fail:
	link_msg_destroy(msg);
	if (r->op == SHIP__KV_WRITE_OP__KV_WRITE_CREATE) {
		create_check(r, NULL, &err);
		return;
	}
	r->get_fn(r->arg, NULL, &err);
	req_free(r);
}

static int direct_get(struct kv_req *r, uint64_t revision, struct js_err *err);

/* What a bucket's lookup (e) says: true if it is there, now known; else
 * err says why not. */
static bool bucket_found(struct kv_req *r, const struct js_err *e,
                         struct js_err *err)
{
	if (!e) {
		known_add(r->bucket);
		return true;
	}
	if (kv_no_stream(e))
		kv_set_err(err, SHIP__CODE__NOT_FOUND, "bucket '%s' not found",
		           r->bucket);
	else
		*err = *e;
	return false;
}

static void looked_up(void *arg, json_t *reply, const struct js_err *e)
{
	struct kv_req *r = arg;
	struct js_err err;
	r->call = NULL;
	if (bucket_found(r, e, &err) && direct_get(r, r->revision, &err) == 0)
		return;
	if (r->op == SHIP__KV_WRITE_OP__KV_WRITE_CREATE) {
		create_check(r, NULL, &err);
		return;
	}
	r->get_fn(r->arg, NULL, &err);
	req_free(r);
}

static int direct_get(struct kv_req *r, uint64_t revision, struct js_err *err)
{
	char subj[IPC_SUBJECT_MAX + 1], body[IPC_SUBJECT_MAX + 64];
	if (!link_connected()) {
		kv_set_err(err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
		        link_state_name(link_info()->state));
		return -1;
	}
	if (!known_has(r->bucket)) {
		snprintf(subj, sizeof(subj), "STREAM.INFO.KV_%s", r->bucket);
		r->revision = revision;
		r->call = js_api_in(kv_dom(r->bucket), subj, NULL,
		                    conf->request_timeout_ms, looked_up, r);
		if (!r->call) {
			kv_set_err(err, SHIP__CODE__UNAVAILABLE, "cannot send to NATS");
			return -1;
		}
		return 0;
	}
	if (!js_subject(kv_dom(r->bucket), subj, sizeof(subj),
	                "DIRECT.GET.KV_%s", r->bucket)) {
		kv_set_err(err, SHIP__CODE__INVALID_ARGUMENT,
		           "bucket '%.64s...' cannot be read in the %s",
		           r->bucket, js_dom_label(kv_dom(r->bucket)));
		return -1;
	}
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
		kv_set_err(err, SHIP__CODE__UNAVAILABLE, "cannot send to NATS");
		return -1;
	}
	return 0;
}

struct kv_req *kv_get(const char *bucket, const char *key, uint64_t revision,
                      kv_get_fn *fn, void *arg, struct js_err *err)
{
	struct kv_req *r = req_new(bucket, key);
	if (!r) {
		kv_set_err(err, SHIP__CODE__INTERNAL, "out of memory");
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

/* After a write nothing took: what the bucket's lookup says. */
static void put_looked_up(void *arg, json_t *reply, const struct js_err *e)
{
	struct kv_req *r = arg;
	struct js_err err;
	r->call = NULL;
	if (!e)
		kv_set_err(&err, SHIP__CODE__UNAVAILABLE,
		           "bucket '%s' is there but nothing took the write (no "
		           "responders)",
		           r->bucket);
	else if (kv_no_stream(e))
		kv_set_err(&err, SHIP__CODE__NOT_FOUND, "bucket '%s' not found",
		           r->bucket);
	else
		err = *e;
	put_finish(r, 0, &err);
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
			kv_set_err(&err, SHIP__CODE__WRONG_REVISION,
			        "key '%s' exists (current revision %" PRIu64 ")",
			        r->key, cur);
		else
			kv_set_err(&err, SHIP__CODE__WRONG_REVISION,
			        "key '%s' is not at revision %" PRIu64
			        " (current revision %" PRIu64 ")",
			        r->key, r->expected, cur);
	} else if (kv_no_stream(e)) {
		/* Nothing took the write: no such bucket, or nothing reachable
		 * at all (the hub's, with the uplink down). Ask which. */
		char what[KV_NAME_MAX + 16];
		kv_forget_bucket(r->bucket);
		snprintf(what, sizeof(what), "STREAM.INFO.KV_%s", r->bucket);
		r->call = js_api_in(kv_dom(r->bucket), what, NULL,
		                    conf->request_timeout_ms, put_looked_up, r);
		if (r->call)
			return;
		kv_set_err(&err, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
	} else if (e->code == SHIP__CODE__TIMEOUT &&
	           js_dom_remote(kv_dom(r->bucket))) {
		/* Maybe the bucket went: looked up again next time. */
		kv_forget_bucket(r->bucket);
		err = *e;
	} else if (e->err_code == 10054) {
		kv_set_err(&err, SHIP__CODE__RESOURCE_EXHAUSTED,
		        "value of %zu bytes is over bucket '%s''s max value size",
		        r->len, r->bucket);
	} else {
		err = *e;
	}
	put_finish(r, 0, &err);
}

static int put_send(struct kv_req *r, uint64_t expected, bool cas,
                    struct js_err *err);

/* A bucket in another domain, looked up before its first write there:
 * through $JS.<domain>.API a write to a bucket that does not exist is
 * not answered at all (a timeout, not 'no responders'). */
static void put_checked(void *arg, json_t *reply, const struct js_err *e)
{
	struct kv_req *r = arg;
	struct js_err err;
	r->call = NULL;
	if (bucket_found(r, e, &err) &&
	    put_send(r, r->revision, r->cas, &err) == 0)
		return;
	put_finish(r, 0, &err);
}

static int put_publish(struct kv_req *r, uint64_t expected, bool cas,
                       struct js_err *err)
{
	enum js_dom d = kv_dom(r->bucket);
	if (js_dom_remote(d) && !known_has(r->bucket)) {
		char what[KV_NAME_MAX + 16];
		snprintf(what, sizeof(what), "STREAM.INFO.KV_%s", r->bucket);
		r->revision = expected;
		r->cas = cas;
		r->call = js_api_in(d, what, NULL, conf->request_timeout_ms,
		                    put_checked, r);
		if (!r->call) {
			kv_set_err(err, SHIP__CODE__UNAVAILABLE,
			           "NATS is not connected");
			return -1;
		}
		return 0;
	}
	return put_send(r, expected, cas, err);
}

static int put_send(struct kv_req *r, uint64_t expected, bool cas,
                    struct js_err *err)
{
	char subj[IPC_SUBJECT_MAX + 1], num[24];
	natsMsg *m = NULL;
	/* Into another domain as nats.go writes: $JS.<domain>.API.$KV...,
	 * which that domain maps back to $KV..., so no same-named bucket on
	 * the way takes it. */
	enum js_dom d = kv_dom(r->bucket);
	if (js_dom_remote(d) &&
	    !js_subject(d, subj, sizeof(subj), "$KV.%s.%s", r->bucket, r->key)) {
		kv_set_err(err, SHIP__CODE__INVALID_ARGUMENT,
		           "key '%.64s...' is too long to be written in the %s",
		           r->key, js_dom_label(d));
		return -1;
	}
	if (!js_dom_remote(d))
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
		link_msg_destroy(m);
		kv_set_err(err, SHIP__CODE__INTERNAL, "cannot build the message");
		return -1;
	}
	r->call = js_publish(m, conf->request_timeout_ms, put_done, r);
	if (!r->call) {
		kv_set_err(err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
		        link_state_name(link_info()->state));
		return -1;
	}
	return 0;
}

static struct kv_req *put_start(const char *bucket, const char *key, int op,
                                const void *value, size_t len,
                                uint64_t expected, bool purge_cas,
                                kv_put_fn *fn, void *arg, struct js_err *err)
{
	int64_t maxp = link_info()->max_payload;
	if (maxp > 0 && len > (uint64_t)maxp) {
		kv_set_err(err, SHIP__CODE__RESOURCE_EXHAUSTED,
		        "value of %zu bytes is over the server's max payload of "
		        "%" PRId64,
		        len, maxp);
		return NULL;
	}
	if (!link_connected()) {
		kv_set_err(err, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
		        link_state_name(link_info()->state));
		return NULL;
	}
	struct kv_req *r = req_new(bucket, key);
	if (!r || (len && !(r->value = malloc(len)))) {
		if (r)
			req_free(r);
		kv_set_err(err, SHIP__CODE__INTERNAL, "out of memory");
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
	           op == SHIP__KV_WRITE_OP__KV_WRITE_UPDATE || purge_cas;
	if (put_publish(r,
	                op == SHIP__KV_WRITE_OP__KV_WRITE_UPDATE || purge_cas
	                        ? expected
	                        : 0,
	                cas, err) < 0) {
		req_free(r);
		return NULL;
	}
	return r;
}

struct kv_req *kv_put(const char *bucket, const char *key, int op,
                      const void *value, size_t len, uint64_t expected,
                      kv_put_fn *fn, void *arg, struct js_err *err)
{
	return put_start(bucket, key, op, value, len, expected, false, fn, arg,
	                 err);
}

struct kv_req *kv_purge_at(const char *bucket, const char *key,
                           uint64_t revision, kv_put_fn *fn, void *arg,
                           struct js_err *err)
{
	return put_start(bucket, key, SHIP__KV_WRITE_OP__KV_WRITE_PURGE, NULL, 0,
	                 revision, true, fn, arg, err);
}

/* ---- bucket configuration ---- */

int kv_bucket_cfg(struct js_stream_cfg *cfg, const Ship__KvBucketConfig *bc,
                  struct js_err *err)
{
	static char subject[KV_NAME_MAX + 8];
	static char name[KV_NAME_MAX + 4];
	static char *subjects[1];
	if (!kv_bucket_valid(bc->bucket)) {
		kv_set_err(err, SHIP__CODE__INVALID_ARGUMENT,
		           "invalid bucket name '%.64s' (" KV_BUCKET_RULE ")",
		           bc->bucket);
		return -1;
	}
	if (bc->history > KV_MAX_HISTORY) {
		kv_set_err(err, SHIP__CODE__INVALID_ARGUMENT,
		        "history %u is over the limit of %d", bc->history,
		        KV_MAX_HISTORY);
		return -1;
	}
	if (bc->max_value_size < 0 || bc->max_bytes < 0 || bc->replicas > 5 ||
	    bc->ttl_ms > INT64_MAX / 1000000) {
		kv_set_err(err, SHIP__CODE__INVALID_ARGUMENT,
		        "negative size, over 5 replicas or a TTL out of range");
		return -1;
	}
	if (strlen(bc->description) > DESCRIPTION_MAX) {
		kv_set_err(err, SHIP__CODE__INVALID_ARGUMENT,
		        "description over %d bytes", DESCRIPTION_MAX);
		return -1;
	}
	snprintf(name, sizeof(name), "KV_%s", bc->bucket);
	snprintf(subject, sizeof(subject), "$KV.%s.>", bc->bucket);
	subjects[0] = subject;
	memset(cfg, 0, sizeof(*cfg));
	cfg->dom = kv_dom(bc->bucket);
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

int kv_ensure_cfg(const struct js_stream_cfg *cfg, bool tolerant,
                  kv_ensure_fn *fn, void *arg)
{
	struct ensure_ctx *x = calloc(1, sizeof(*x));
	if (!x)
		return -1;
	x->fn = fn;
	x->arg = arg;
	x->tolerant = tolerant;
	if (js_stream_ensure(cfg, ensured, x) < 0) {
		free(x);
		return -1;
	}
	return 0;
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
	return kv_ensure_cfg(&cfg, tolerant, fn, arg);
}
