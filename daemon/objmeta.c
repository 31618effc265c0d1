/* SPDX-License-Identifier: MIT */
/* Object Store requests on metas: buckets, info, delete, list, update
 * meta, links and watch. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objstore.h"

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
	obj_lookup_cancel(o->lk);
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
	const char *name = obj_jstr(cfg, "name");
	json_int_t mb = json_integer_value(json_object_get(cfg, "max_bytes"));
	ship__obj_bucket_info__init(bi);
	bi->bucket = (char *)(strncmp(name, "OBJ_", 4) ? "" : name + 4);
	bi->description = (char *)obj_jstr(cfg, "description");
	bi->ttl_ms = obj_juint(cfg, "max_age") / 1000000;
	bi->max_bytes = mb > 0 ? mb : 0;
	bi->memory = !strcmp(obj_jstr(cfg, "storage"), "memory");
	bi->replicas = (uint32_t)obj_juint(cfg, "num_replicas");
	bi->sealed = json_is_true(json_object_get(cfg, "sealed"));
	bi->size = obj_juint(json_object_get(si, "state"), "bytes");
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
		obj_unavailable(&err);
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

void obj_handle_bucket_create(struct client *c, uint64_t id,
				 const Ship__ObjBucketCreate *bc)
{
	if (!obj_check_bucket(c, id, bc->bucket))
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
		obj_unavailable(&err);
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
		obj_unavailable(&err);
		op_fail(o, &err);
	}
}

/* A bucket request answered by one JetStream API call on its stream. */
static void bucket_request(struct client *c, uint64_t id, const char *b,
                           enum pol_op op, const char *api, js_api_fn *fn)
{
	if (!obj_check_bucket(c, id, b) || !client_allowed(c, id, op, b))
		return;
	struct objop *o = op_new(c, id, b, NULL);
	if (o)
		bucket_call(o, api, NULL, fn);
}

void obj_handle_bucket_status(struct client *c, uint64_t id, const char *b)
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
	obj_known_forget(o->bucket);
	log_info("client %" PRIu64 " deleted object bucket %s",
		 o->op.c ? o->op.c->cid : 0, o->bucket);
	client_ok(o->op.c, o->op.id);
	op_free(o);
}

void obj_handle_bucket_delete(struct client *c, uint64_t id, const char *b)
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

void obj_handle_bucket_seal(struct client *c, uint64_t id, const char *b)
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
		obj_unavailable(&err);
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
		const char *name =
		    obj_jstr(json_object_get(si, "config"), "name");
		/* Only the buckets the app may read. */
		if (!strncmp(name, "OBJ_", 4) && obj_bucket_valid(name + 4) &&
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

void obj_handle_bucket_list(struct client *c, uint64_t id)
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
	int rc = obj_meta_result(msg, st, o->bucket, &j, &mtime, &err);
	if (rc == 0 || (rc > 0 && obj_jdeleted(j) && !o->show_deleted))
		not_found(&err, o->bucket, o->name);
	if (rc <= 0 || (obj_jdeleted(j) && !o->show_deleted)) {
		json_decref(j);
		op_fail(o, &err);
		return;
	}
	obj_send_info(o->op.c, o->op.id, j, mtime);
	json_decref(j);
	op_free(o);
}

void obj_handle_info(struct client *c, uint64_t id,
			const Ship__ObjInfoRequest *r)
{
	char meta[IPC_SUBJECT_MAX + 1];
	if (!obj_check_bucket(c, id, r->bucket) ||
	    !obj_check_name(c, id, r->bucket, r->name, meta, sizeof(meta)) ||
	    !client_allowed(c, id, POL_OBJ_READ, r->bucket))
		return;
	struct objop *o = op_new(c, id, r->bucket, r->name);
	if (!o)
		return;
	o->show_deleted = r->show_deleted;
	if (!(o->lk = obj_get_meta(o->bucket, meta, info_done, o))) {
		struct js_err err;
		obj_unavailable(&err);
		op_fail(o, &err);
	}
}

static void delete_purged(void *arg, json_t *reply, const struct js_err *e)
{
	struct objop *o = arg;
	o->call = NULL;
	if (e) {
		obj_purge_failed(o->bucket, obj_jstr(o->info, "nuid"), e);
		op_fail(o, e);
		return;
	}
	ojournal_end(obj_jstr(o->info, "nuid"));
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
	const char *nuid = obj_jstr(o->info, "nuid");
	if (!*nuid) {
		client_ok(o->op.c, o->op.id);
		op_free(o);
		return;
	}
	ojournal_purge(o->bucket, nuid);
	/* Not sent: the marker is stored and the purge owed. */
	if (!(o->call = obj_purge(o->bucket, nuid, delete_purged, o))) {
		client_ok(o->op.c, o->op.id);
		op_free(o);
	}
}

/* Publish j (taken) as the meta of its object, with Nats-Rollup: sub;
 * unless expect is NO_EXPECT, only if the subject's last message is
 * sequence expect (0: none). */
struct js_call *obj_publish_meta_if(const char *meta, json_t *j,
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
		link_msg_destroy(m);
		kv_set_err(err, SHIP__CODE__INTERNAL,
			   "cannot build the meta message");
		return NULL;
	}
	free(text);
	struct js_call *call = js_publish(m, conf->request_timeout_ms, fn, arg);
	if (!call)
		obj_unavailable(err);
	return call;
}

static struct js_call *publish_meta(const char *meta, json_t *j, js_pub_fn *fn,
				    void *arg, struct js_err *err)
{
	return obj_publish_meta_if(meta, j, NO_EXPECT, fn, arg, err);
}

static void delete_looked_up(void *arg, natsMsg *msg, natsStatus st)
{
	struct objop *o = arg;
	struct js_err err;
	json_t *j;
	uint64_t mtime = 0;
	char now[48];
	o->lk = NULL;
	int rc = obj_meta_result(msg, st, o->bucket, &j, &mtime, &err);
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
	obj_rfc3339_now(now, sizeof(now));
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

void obj_handle_delete(struct client *c, uint64_t id,
			  const Ship__ObjDelete *d)
{
	char meta[IPC_SUBJECT_MAX + 1];
	if (!obj_check_bucket(c, id, d->bucket) ||
	    !obj_check_name(c, id, d->bucket, d->name, meta, sizeof(meta)) ||
	    !client_allowed(c, id, POL_OBJ_WRITE, d->bucket))
		return;
	struct objop *o = op_new(c, id, d->bucket, d->name);
	if (!o)
		return;
	snprintf(o->meta, sizeof(o->meta), "%s", meta);
	if (!(o->lk = obj_get_meta(o->bucket, meta, delete_looked_up, o))) {
		struct js_err err;
		obj_unavailable(&err);
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
		if (obj_pinfo_fill(&ps[filled], json_array_get(o->info, filled),
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
		    size > config_answer_limit(conf))
			client_error(
			    o->op.c, o->op.id, SHIP__CODE__RESOURCE_EXHAUSTED,
			    "the list of bucket '%s' is %zu bytes, over "
			    "what one answer may hold",
			    o->bucket, size);
		else
			client_send(o->op.c, &f);
	}
	for (size_t i = 0; ps && i < filled; i++)
		obj_pinfo_clear(&ps[i]);
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
		if (obj_direct_get(o->bucket, o->wait, body) < 0) {
			struct js_err err;
			obj_unavailable(&err);
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
	int rc = obj_meta_result(msg, st, o->bucket, &j, &mtime, &err);
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
	if (rc > 0 && (!obj_jdeleted(j) || o->show_deleted)) {
		o->bytes += len;
		if (o->bytes > config_answer_limit(conf)) {
			json_decref(j);
			kv_set_err(
			    &err, SHIP__CODE__RESOURCE_EXHAUSTED,
			    "the objects of bucket '%s' are over %u bytes "
			    "of meta, more than one answer may hold",
			    o->bucket, config_answer_limit(conf));
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
		obj_unavailable(&err);
		op_fail(o, &err);
		return;
	}
	list_more(o);
}

void obj_handle_list(struct client *c, uint64_t id,
			const Ship__ObjListRequest *r)
{
	char filter[KV_NAME_MAX + 16];
	if (!obj_check_bucket(c, id, r->bucket) ||
	    !client_allowed(c, id, POL_OBJ_READ, r->bucket))
		return;
	struct objop *o = op_new(c, id, r->bucket, NULL);
	if (!o)
		return;
	o->show_deleted = r->show_deleted;
	/* What the answer may take is reserved before it starts. */
	if (!op_hold(&o->op, config_answer_limit(conf))) {
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
int obj_meta_fields(json_t *j, const char *description, Ship__Header **hs,
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
	    !(o->call = obj_purge_subject(o->bucket, o->meta, NULL, updated,
					  o))) {
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
	obj_rfc3339_now(now, sizeof(now));
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
	int rc = obj_meta_result(msg, st, o->bucket, &j, &mtime, &err);
	if (rc == -2) /* another writer's: replaced */
		rc = 0;
	bool live = rc > 0 && !obj_jdeleted(j);
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
	int rc = obj_meta_result(msg, st, o->bucket, &j, &mtime, &err);
	if (rc == 0 || (rc > 0 && obj_jdeleted(j))) {
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
	} else if (!(o->lk = obj_get_meta(o->bucket, o->meta2, update_target,
				      o))) {
		obj_unavailable(&err);
		op_fail(o, &err);
	}
}

void obj_handle_update_meta(struct client *c, uint64_t id,
			       const Ship__ObjUpdateMeta *r)
{
	char meta[IPC_SUBJECT_MAX + 1], meta2[IPC_SUBJECT_MAX + 1], why[128];
	const char *to = *r->new_name ? r->new_name : r->name;
	if (!obj_check_bucket(c, id, r->bucket) ||
	    !obj_check_name(c, id, r->bucket, r->name, meta, sizeof(meta)) ||
	    !obj_check_name(c, id, r->bucket, to, meta2, sizeof(meta2)))
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
	    obj_meta_fields(o->fields, r->description, r->headers, r->n_headers,
			r->metadata, r->n_metadata, why, sizeof(why)) < 0) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT, "%s",
			     o->fields ? why : "out of memory");
		op_free(o);
		return;
	}
	if (!(o->lk = obj_get_meta(o->bucket, meta, update_looked_up, o))) {
		struct js_err err;
		obj_unavailable(&err);
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
	obj_send_info(o->op.c, o->op.id, o->info, obj_wall_ns());
	op_free(o);
}

static void publish_link(struct objop *o)
{
	struct js_err err;
	char nuid[NUID_LEN + 1], now[48];
	obj_new_nuid(nuid);
	obj_rfc3339_now(now, sizeof(now));
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
	int rc = obj_meta_result(msg, st, o->bucket, &j, &mtime, &err);
	if (rc == -2) /* another writer's: replaced */
		rc = 0;
	bool live = rc > 0 && !obj_jdeleted(j) && !jlink(j);
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
	if (!(o->lk = obj_get_meta(o->bucket, o->meta, link_name_got, o))) {
		struct js_err err;
		obj_unavailable(&err);
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
	int rc = obj_meta_result(msg, st, o->bucket2, &j, &mtime, &err);
	if (rc == 0 || (rc > 0 && obj_jdeleted(j)))
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

void obj_handle_link(struct client *c, uint64_t id, const Ship__ObjLink *r)
{
	char meta[IPC_SUBJECT_MAX + 1], meta2[IPC_SUBJECT_MAX + 1] = "";
	if (!obj_check_bucket(c, id, r->bucket) ||
	    !obj_check_name(c, id, r->bucket, r->name, meta, sizeof(meta)) ||
	    !obj_check_bucket(c, id, r->target_bucket) ||
	    (*r->target_name && !obj_check_name(c, id, r->target_bucket,
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
		o->lk = obj_get_meta(o->bucket2, meta2, link_target_got, o);
	}
	if (!o->call && !o->lk) {
		struct js_err err;
		obj_unavailable(&err);
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
	bool skip = !j || (ignore_deletes && obj_jdeleted(j));
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
		if (obj_pinfo_fill(&p, j, ns) < 0) {
			json_decref(j);
			return -1; /* tried again */
		}
		f.obj_info = &p.pi;
	}
	int rc = client_push(c, &f);
	if (j) {
		obj_pinfo_clear(&p);
		json_decref(j);
	}
	return rc;
}

void obj_handle_watch(struct client *c, uint64_t id,
			 const Ship__ObjWatch *r)
{
	char stream[KV_NAME_MAX + 8], filter[KV_NAME_MAX + 16];
	if (!obj_check_bucket(c, id, r->bucket) ||
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

/* Requests that outlived their app stop. */
void objmeta_finish(void)
{
	struct objop *o;
	while ((o = TAILQ_FIRST(&loose_ops)))
		op_free(o);
}
