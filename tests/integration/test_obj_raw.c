/* SPDX-License-Identifier: MIT */
/* The Object Store over the raw protocol: buckets, puts with credit, gets
 * checked against their digest, delete markers, purges of old and
 * abandoned chunks, and corruption found on get. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nats/nats.h>

#include "fixture.h"
#include "ipc.h"
#include "raw.h"

#define CHUNK (128 * 1024)

static struct natsd nd;
static struct shipdp sd;
static natsConnection *nc;
static jsCtx *js;

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_up(&nd, &sd, NULL), 0);
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
}

static void teardown(void)
{
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	js = NULL;
	nc = NULL;
	int rc = fx_down(&nd, &sd);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

static Ship__ServerFrame *ask(int fd, uint64_t id, Ship__ClientFrame *f)
{
	f->id = id;
	raw_frame(fd, f);
	Ship__ServerFrame *r = raw_reply(fd, id);
	ck_assert_ptr_nonnull(r);
	return r;
}

static void expect(Ship__ServerFrame *r, Ship__Code code, const char *words)
{
	ck_assert_msg(r->code == code, "code %d, not %d: %s", r->code, code,
		      r->error);
	if (words)
		ck_assert_msg(strstr(r->error, words), "'%s' does not say '%s'",
			      r->error, words);
}

static Ship__ServerFrame *bucket_req(int fd, int kind, const char *b)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjBucketRequest r = SHIP__OBJ_BUCKET_REQUEST__INIT;
	r.bucket = (char *)b;
	f.body_case = kind;
	switch (kind) {
	case SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_STATUS:
		f.obj_bucket_status = &r;
		break;
	case SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_DELETE:
		f.obj_bucket_delete = &r;
		break;
	default:
		f.obj_bucket_seal = &r;
		break;
	}
	return ask(fd, 11, &f);
}

static Ship__ServerFrame *create(int fd, const char *b, uint64_t ttl_ms)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjBucketCreate c = SHIP__OBJ_BUCKET_CREATE__INIT;
	c.bucket = (char *)b;
	c.description = "test bucket";
	c.ttl_ms = ttl_ms;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_CREATE;
	f.obj_bucket_create = &c;
	return ask(fd, 10, &f);
}

static void create_ok(int fd, const char *b)
{
	Ship__ServerFrame *r = create(fd, b, 0);
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_BUCKET);
	ck_assert_str_eq(r->obj_bucket->bucket, b);
	ship__server_frame__free_unpacked(r, NULL);
}

static void send_chunk(int fd, uint64_t stream, const void *p, size_t n,
		       bool last)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjPutChunk ch = SHIP__OBJ_PUT_CHUNK__INIT;
	ch.stream = stream;
	ch.data.data = (uint8_t *)p;
	ch.data.len = n;
	ch.last = last;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_PUT_CHUNK;
	f.obj_put_chunk = &ch;
	raw_frame(fd, &f);
}

static void send_put(int fd, uint64_t id, const char *b, const char *name)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjPut p = SHIP__OBJ_PUT__INIT;
	Ship__Header h = SHIP__HEADER__INIT, m = SHIP__HEADER__INIT;
	Ship__Header *hp[] = {&h}, *mp[] = {&m};
	h.key = "X-Kind";
	h.value = "test";
	m.key = "owner";
	m.value = "raw";
	p.bucket = (char *)b;
	p.name = (char *)name;
	p.description = "an object";
	p.n_headers = 1;
	p.headers = hp;
	p.n_metadata = 1;
	p.metadata = mp;
	f.id = id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_PUT;
	f.obj_put = &p;
	raw_frame(fd, &f);
}

/* Put data as the protocol says: chunks as credit comes. The stored info
 * (nuid, digest) is copied out; the StreamEnd code returned. */
static Ship__Code put(int fd, uint64_t id, const char *b, const char *name,
		      const uint8_t *data, size_t len, char *nuid, char *digest,
		      char *err, size_t errlen)
{
	send_put(fd, id, b, name);
	size_t off = 0;
	bool sent_last = false;
	uint32_t credit = 0;
	for (;;) {
		Ship__ServerFrame *r = raw_reply(fd, id);
		ck_assert_ptr_nonnull(r);
		if (r->body_case == SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT) {
			credit += r->obj_put_credit->chunks;
			while (credit && !sent_last) {
				size_t n =
				    len - off > CHUNK ? CHUNK : len - off;
				bool last = off + n == len;
				send_chunk(fd, id, data + off, n, last);
				off += n;
				credit--;
				sent_last = last;
			}
		} else if (r->body_case == SHIP__SERVER_FRAME__BODY_OBJ_INFO) {
			if (nuid)
				strcpy(nuid, r->obj_info->nuid);
			if (digest)
				strcpy(digest, r->obj_info->digest);
			ck_assert_uint_eq(r->obj_info->size, len);
		} else {
			Ship__Code code = r->code;
			if (err)
				snprintf(err, errlen, "%s", r->error);
			ck_assert_msg(r->body_case ==
					      SHIP__SERVER_FRAME__BODY_END ||
					  code != SHIP__CODE__OK,
				      "unexpected frame %d", r->body_case);
			ship__server_frame__free_unpacked(r, NULL);
			return code;
		}
		ship__server_frame__free_unpacked(r, NULL);
	}
}

static void put_ok(int fd, uint64_t id, const char *b, const char *name,
		   const uint8_t *data, size_t len, char *nuid)
{
	char digest[80], err[512], want[80], enc[64];
	struct ipc_sha256 s;
	uint8_t d[IPC_SHA256_LEN];
	Ship__Code c =
	    put(fd, id, b, name, data, len, nuid, digest, err, sizeof(err));
	ck_assert_msg(c == SHIP__CODE__OK, "put %s: %d %s", name, c, err);
	ipc_sha256_init(&s);
	ipc_sha256_update(&s, data, len);
	ipc_sha256_final(&s, d);
	ipc_base64url(d, sizeof(d), enc, sizeof(enc));
	snprintf(want, sizeof(want), "SHA-256=%s", enc);
	ck_assert_str_eq(digest, want);
}

/* Get name; its bytes in *out (malloc'd), the StreamEnd's code and text. */
static Ship__Code get(int fd, uint64_t id, const char *b, const char *name,
		      uint8_t **out, size_t *len, char *err, size_t errlen)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjGet g = SHIP__OBJ_GET__INIT;
	g.bucket = (char *)b;
	g.name = (char *)name;
	g.credit = 2;
	f.id = id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_GET;
	f.obj_get = &g;
	raw_frame(fd, &f);
	*out = NULL;
	*len = 0;
	bool info = false;
	for (;;) {
		Ship__ServerFrame *r = raw_reply(fd, id);
		ck_assert_ptr_nonnull(r);
		if (r->body_case == SHIP__SERVER_FRAME__BODY_OBJ_INFO) {
			ck_assert(!info);
			info = true;
			ck_assert_str_eq(r->obj_info->name, name);
		} else if (r->body_case == SHIP__SERVER_FRAME__BODY_OBJ_CHUNK) {
			ck_assert(info);
			size_t n = r->obj_chunk->data.len;
			*out = realloc(*out, *len + n + 1);
			memcpy(*out + *len, r->obj_chunk->data.data, n);
			*len += n;
			Ship__ClientFrame cf = SHIP__CLIENT_FRAME__INIT;
			Ship__ObjCredit cr = SHIP__OBJ_CREDIT__INIT;
			cr.stream = id;
			cr.chunks = 1;
			cf.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_CREDIT;
			cf.obj_credit = &cr;
			raw_frame(fd, &cf);
		} else {
			Ship__Code code = r->code;
			snprintf(err, errlen, "%s", r->error);
			ship__server_frame__free_unpacked(r, NULL);
			return code;
		}
		ship__server_frame__free_unpacked(r, NULL);
	}
}

static void get_same(int fd, uint64_t id, const char *b, const char *name,
		     const uint8_t *data, size_t len)
{
	uint8_t *got;
	size_t n;
	char err[512];
	Ship__Code c = get(fd, id, b, name, &got, &n, err, sizeof(err));
	ck_assert_msg(c == SHIP__CODE__OK, "get %s: %d %s", name, c, err);
	ck_assert_uint_eq(n, len);
	ck_assert(len == 0 || memcmp(got, data, len) == 0);
	free(got);
}

static Ship__ServerFrame *info(int fd, const char *b, const char *name,
			       bool show_deleted)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjInfoRequest r = SHIP__OBJ_INFO_REQUEST__INIT;
	r.bucket = (char *)b;
	r.name = (char *)name;
	r.show_deleted = show_deleted;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_INFO;
	f.obj_info = &r;
	return ask(fd, 12, &f);
}

static Ship__ServerFrame *list(int fd, const char *b, bool show_deleted)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjListRequest r = SHIP__OBJ_LIST_REQUEST__INIT;
	r.bucket = (char *)b;
	r.show_deleted = show_deleted;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_LIST;
	f.obj_list = &r;
	return ask(fd, 13, &f);
}

static uint8_t *pattern(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n ? n : 1);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 31 + seed) ^ (i >> 8));
	return p;
}

/* Messages stored on subject (or the whole stream if NULL). */
static uint64_t stored(const char *stream, const char *subject)
{
	jsOptions o;
	jsStreamInfo *si = NULL;
	jsOptions_Init(&o);
	o.Stream.Info.SubjectsFilter = subject;
	ck_assert_int_eq(
	    js_GetStreamInfo(&si, js, stream, subject ? &o : NULL, NULL),
	    NATS_OK);
	uint64_t n = 0;
	if (!subject)
		n = si->State.Msgs;
	else if (si->State.Subjects)
		for (int i = 0; i < si->State.Subjects->Count; i++)
			n += si->State.Subjects->List[i].Msgs;
	jsStreamInfo_Destroy(si);
	return n;
}

struct count_arg {
	const char *stream, *subject;
	uint64_t want;
};

static bool count_is(void *arg)
{
	struct count_arg *a = arg;
	return stored(a->stream, a->subject) == a->want;
}

START_TEST(buckets)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "ob");
	create_ok(fd, "ob"); /* the same again is fine */
	Ship__ServerFrame *r = create(fd, "ob", 60000);
	expect(r, SHIP__CODE__ALREADY_EXISTS, "max_age");
	ship__server_frame__free_unpacked(r, NULL);
	r = create(fd, "bad.name", 0);
	expect(r, SHIP__CODE__INVALID_ARGUMENT, "bucket name");
	ship__server_frame__free_unpacked(r, NULL);

	/* The stream as ADR-20 makes it. */
	jsStreamInfo *si = NULL;
	ck_assert_int_eq(js_GetStreamInfo(&si, js, "OBJ_ob", NULL, NULL),
			 NATS_OK);
	ck_assert_int_eq(si->Config->SubjectsLen, 2);
	ck_assert_str_eq(si->Config->Subjects[0], "$O.ob.C.>");
	ck_assert_str_eq(si->Config->Subjects[1], "$O.ob.M.>");
	ck_assert(si->Config->AllowRollup);
	ck_assert(si->Config->AllowDirect);
	ck_assert_int_eq(si->Config->Discard, js_DiscardNew);
	ck_assert_int_eq(si->Config->MaxBytes, -1);
	jsStreamInfo_Destroy(si);

	r = bucket_req(fd, SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_STATUS, "ob");
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert_str_eq(r->obj_bucket->description, "test bucket");
	ck_assert(!r->obj_bucket->sealed);
	ship__server_frame__free_unpacked(r, NULL);

	create_ok(fd, "ob2");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjBucketListRequest lr = SHIP__OBJ_BUCKET_LIST_REQUEST__INIT;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_LIST;
	f.obj_bucket_list = &lr;
	r = ask(fd, 14, &f);
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_BUCKETS);
	ck_assert_uint_eq(r->obj_buckets->n_buckets, 2);
	ship__server_frame__free_unpacked(r, NULL);

	r = bucket_req(fd, SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_SEAL, "ob2");
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert(r->obj_bucket->sealed);
	ship__server_frame__free_unpacked(r, NULL);
	/* A put on a sealed bucket fails and says why. */
	char err[512];
	uint8_t one = 1;
	Ship__Code c =
	    put(fd, 20, "ob2", "x", &one, 1, NULL, NULL, err, sizeof(err));
	ck_assert_msg(c != SHIP__CODE__OK, "put on a sealed bucket: %s", err);
	ck_assert_msg(strstr(err, "sealed"), "'%s' does not say sealed", err);

	r = bucket_req(fd, SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_DELETE, "ob2");
	expect(r, SHIP__CODE__OK, NULL);
	ship__server_frame__free_unpacked(r, NULL);
	r = bucket_req(fd, SHIP__CLIENT_FRAME__BODY_OBJ_BUCKET_STATUS, "ob2");
	expect(r, SHIP__CODE__NOT_FOUND, "ob2");
	ship__server_frame__free_unpacked(r, NULL);
	r = info(fd, "nobucket", "x", false);
	expect(r, SHIP__CODE__NOT_FOUND, "nobucket");
	ship__server_frame__free_unpacked(r, NULL);
	close(fd);
}
END_TEST

START_TEST(put_get)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "pg");
	static const size_t sizes[] = {0, CHUNK, CHUNK + 1, 3 * CHUNK - 100};
	static const char *const names[] = {"empty", "one chunk", "one over",
					    "three/chunks.bin"};
	char nuid[64];
	for (size_t i = 0; i < 4; i++) {
		uint8_t *d = pattern(sizes[i], (unsigned)i);
		put_ok(fd, 100 + i, "pg", names[i], d, sizes[i], nuid);
		get_same(fd, 200 + i, "pg", names[i], d, sizes[i]);
		Ship__ServerFrame *r = info(fd, "pg", names[i], false);
		expect(r, SHIP__CODE__OK, NULL);
		ck_assert_uint_eq(r->obj_info->size, sizes[i]);
		ck_assert_uint_eq(r->obj_info->chunks,
				  (sizes[i] + CHUNK - 1) / CHUNK);
		ck_assert_str_eq(r->obj_info->nuid, nuid);
		ck_assert_str_eq(r->obj_info->description, "an object");
		ck_assert_uint_eq(r->obj_info->n_headers, 1);
		ck_assert_str_eq(r->obj_info->headers[0]->key, "X-Kind");
		ck_assert_uint_eq(r->obj_info->n_metadata, 1);
		ck_assert_str_eq(r->obj_info->metadata[0]->value, "raw");
		ck_assert_uint_eq(r->obj_info->max_chunk_size, CHUNK);
		ck_assert_uint_gt(r->obj_info->mtime_ns, 0);
		ship__server_frame__free_unpacked(r, NULL);
		free(d);
	}
	/* The meta subject as nats.go names it (padded base64url). */
	ck_assert_uint_eq(stored("OBJ_pg", "$O.pg.M.b25lIG92ZXI="), 1);
	/* The meta as nats.go writes it. */
	natsMsg *m = NULL;
	ck_assert_int_eq(natsConnection_RequestString(
			     &m, nc, "$JS.API.DIRECT.GET.OBJ_pg",
			     "{\"last_by_subj\":\"$O.pg.M.b25lIG92ZXI=\"}",
			     5000),
			 NATS_OK);
	const char *rollup = NULL, *meta = natsMsg_GetData(m);
	natsMsgHeader_Get(m, "Nats-Rollup", &rollup);
	ck_assert_str_eq(rollup, "sub");
	ck_assert_msg(
	    !strncmp(meta,
		     "{\"name\":\"one over\",\"description\":"
		     "\"an object\",\"headers\":{\"X-Kind\":[\"test\"]},"
		     "\"metadata\":{\"owner\":\"raw\"},\"options\":"
		     "{\"max_chunk_size\":131072},\"bucket\":\"pg\","
		     "\"nuid\":",
		     150) &&
		strstr(meta, "\"size\":131073,\"mtime\":\"") &&
		strstr(meta, "\"chunks\":2,\"digest\":\"SHA-256="),
	    "meta %s", meta);
	natsMsg_Destroy(m);
	Ship__ServerFrame *r = list(fd, "pg", false);
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert_uint_eq(r->obj_infos->n_objects, 4);
	ship__server_frame__free_unpacked(r, NULL);
	r = info(fd, "pg", "missing", false);
	expect(r, SHIP__CODE__NOT_FOUND, "missing");
	ship__server_frame__free_unpacked(r, NULL);
	close(fd);
}
END_TEST

START_TEST(delete_and_overwrite)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "dl");
	char old[64], cur[64], subj[128], err[512];
	uint8_t *a = pattern(2 * CHUNK + 7, 1), *b = pattern(CHUNK / 2, 2);
	put_ok(fd, 30, "dl", "obj", a, 2 * CHUNK + 7, old);
	put_ok(fd, 31, "dl", "obj", b, CHUNK / 2, cur);
	ck_assert_str_ne(old, cur);
	/* The old version's chunks are purged once the new meta is stored. */
	snprintf(subj, sizeof(subj), "$O.dl.C.%s", old);
	ck_assert_uint_eq(stored("OBJ_dl", subj), 0);
	snprintf(subj, sizeof(subj), "$O.dl.C.%s", cur);
	ck_assert_uint_eq(stored("OBJ_dl", subj), 1);
	get_same(fd, 32, "dl", "obj", b, CHUNK / 2);

	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjDelete d = SHIP__OBJ_DELETE__INIT;
	d.bucket = "dl";
	d.name = "obj";
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_DELETE;
	f.obj_delete = &d;
	Ship__ServerFrame *r = ask(fd, 33, &f);
	expect(r, SHIP__CODE__OK, NULL);
	ship__server_frame__free_unpacked(r, NULL);
	ck_assert_uint_eq(stored("OBJ_dl", subj), 0);
	/* A marker stays. */
	r = info(fd, "dl", "obj", false);
	expect(r, SHIP__CODE__NOT_FOUND, "obj");
	ship__server_frame__free_unpacked(r, NULL);
	r = info(fd, "dl", "obj", true);
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert(r->obj_info->deleted);
	ck_assert_uint_eq(r->obj_info->size, 0);
	ck_assert_str_eq(r->obj_info->digest, "");
	ship__server_frame__free_unpacked(r, NULL);
	uint8_t *got;
	size_t n;
	ck_assert_int_eq(get(fd, 34, "dl", "obj", &got, &n, err, sizeof(err)),
			 SHIP__CODE__NOT_FOUND);
	free(got);
	r = list(fd, "dl", false);
	ck_assert_uint_eq(r->obj_infos->n_objects, 0);
	ship__server_frame__free_unpacked(r, NULL);
	r = list(fd, "dl", true);
	ck_assert_uint_eq(r->obj_infos->n_objects, 1);
	ship__server_frame__free_unpacked(r, NULL);
	r = ask(fd, 35, &f); /* deleting again is fine, as in nats.go */
	expect(r, SHIP__CODE__OK, NULL);
	ship__server_frame__free_unpacked(r, NULL);
	d.name = "never";
	r = ask(fd, 36, &f);
	expect(r, SHIP__CODE__NOT_FOUND, "never");
	ship__server_frame__free_unpacked(r, NULL);
	free(a);
	free(b);
	close(fd);
}
END_TEST

START_TEST(corrupt)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "cr");
	char nuid[64], meta[512], err[512];
	uint8_t *a = pattern(CHUNK + 10, 3);
	put_ok(fd, 40, "cr", "bad", a, CHUNK + 10, nuid);
	/* Another writer stores a meta whose digest is not the data's. */
	snprintf(meta, sizeof(meta),
		 "{\"name\":\"bad\",\"bucket\":\"cr\",\"nuid\":\"%s\","
		 "\"size\":%d,\"mtime\":\"0001-01-01T00:00:00Z\",\"chunks\":2,"
		 "\"digest\":\"SHA-256=47DEQpj8HBSa-_TImW-"
		 "5JCeuQeRkm5NMpJWZG3hSuFU=\"}",
		 nuid, CHUNK + 10);
	natsMsg *m = NULL;
	ck_assert_int_eq(
	    natsMsg_Create(&m, "$O.cr.M.YmFk", NULL, meta, (int)strlen(meta)),
	    NATS_OK);
	natsMsgHeader_Set(m, "Nats-Rollup", "sub");
	ck_assert_int_eq(js_PublishMsg(NULL, js, m, NULL, NULL), NATS_OK);
	natsMsg_Destroy(m);
	uint8_t *got;
	size_t n;
	Ship__Code c = get(fd, 41, "cr", "bad", &got, &n, err, sizeof(err));
	ck_assert_msg(c == SHIP__CODE__CORRUPT, "code %d: %s", c, err);
	ck_assert_msg(strstr(err, "'bad'") && strstr(err, "'cr'") &&
			  strstr(err, "47DEQ"),
		      "'%s' names no object, bucket or digest", err);
	ck_assert_uint_eq(n, CHUNK + 10); /* the data went out, as in nats.go */
	free(got);

	/* Chunks gone: missing chunks. */
	put_ok(fd, 42, "cr", "gone", a, CHUNK + 10, nuid);
	char filter[128], body[200];
	snprintf(filter, sizeof(filter), "$O.cr.C.%s", nuid);
	snprintf(body, sizeof(body), "{\"filter\":\"%s\"}", filter);
	natsMsg *reply = NULL;
	ck_assert_int_eq(
	    natsConnection_RequestString(
		&reply, nc, "$JS.API.STREAM.PURGE.OBJ_cr", body, 5000),
	    NATS_OK);
	natsMsg_Destroy(reply);
	c = get(fd, 43, "cr", "gone", &got, &n, err, sizeof(err));
	ck_assert_msg(c == SHIP__CODE__CORRUPT && strstr(err, "missing chunks"),
		      "code %d: %s", c, err);
	free(got);
	free(a);
	close(fd);
}
END_TEST

START_TEST(refused_and_abandoned)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "ab");
	uint8_t *a = pattern(CHUNK + 1, 4);
	/* A chunk larger than the chunk size. */
	send_put(fd, 50, "ab", "big");
	Ship__ServerFrame *r = raw_reply(fd, 50);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT);
	ship__server_frame__free_unpacked(r, NULL);
	send_chunk(fd, 50, a, CHUNK, false);
	send_chunk(fd, 50, a, CHUNK + 1, true);
	r = raw_reply(fd, 50);
	expect(r, SHIP__CODE__INVALID_ARGUMENT, "chunk");
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_END);
	ship__server_frame__free_unpacked(r, NULL);
	/* A chunk before any credit. */
	send_put(fd, 51, "ab", "early");
	send_chunk(fd, 51, a, 10, true);
	for (;;) {
		r = raw_reply(fd, 51);
		if (r->body_case != SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT)
			break;
		ship__server_frame__free_unpacked(r, NULL);
	}
	expect(r, SHIP__CODE__INVALID_ARGUMENT, "credit");
	ship__server_frame__free_unpacked(r, NULL);
	/* Nothing visible, the chunks purged. */
	struct count_arg none = {"OBJ_ab", NULL, 0};
	ck_assert(fx_wait(count_is, &none, 3000));
	r = info(fd, "ab", "big", true);
	expect(r, SHIP__CODE__NOT_FOUND, NULL);
	ship__server_frame__free_unpacked(r, NULL);

	/* The app leaves mid-put. */
	int fd2 = raw_open(sd.sock);
	send_put(fd2, 52, "ab", "left");
	r = raw_reply(fd2, 52);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT);
	ship__server_frame__free_unpacked(r, NULL);
	send_chunk(fd2, 52, a, CHUNK, false);
	send_chunk(fd2, 52, a, CHUNK, false);
	r = raw_reply(fd2, 52); /* a chunk acked: credit again */
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT);
	ship__server_frame__free_unpacked(r, NULL);
	close(fd2);
	ck_assert(fx_wait(count_is, &none, 3000));
	r = info(fd, "ab", "left", true);
	expect(r, SHIP__CODE__NOT_FOUND, NULL);
	ship__server_frame__free_unpacked(r, NULL);

	/* Abort: nothing stored either. */
	send_put(fd, 53, "ab", "aborted");
	r = raw_reply(fd, 53);
	ship__server_frame__free_unpacked(r, NULL);
	send_chunk(fd, 53, a, 100, false);
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjPutChunk ch = SHIP__OBJ_PUT_CHUNK__INIT;
	ch.stream = 53;
	ch.abort = true;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_PUT_CHUNK;
	f.obj_put_chunk = &ch;
	raw_frame(fd, &f);
	for (;;) {
		r = raw_reply(fd, 53);
		if (r->body_case == SHIP__SERVER_FRAME__BODY_END)
			break;
		ship__server_frame__free_unpacked(r, NULL);
	}
	ship__server_frame__free_unpacked(r, NULL);
	ck_assert(fx_wait(count_is, &none, 3000));
	free(a);
	close(fd);
}
END_TEST

/* What a count that may fail (the server restarting) says: false then. */
static bool count_try(void *arg)
{
	struct count_arg *a = arg;
	jsOptions o;
	jsStreamInfo *si = NULL;
	jsOptions_Init(&o);
	o.Stream.Info.SubjectsFilter = a->subject;
	if (js_GetStreamInfo(&si, js, a->stream, &o, NULL) != NATS_OK)
		return false;
	uint64_t n = 0;
	if (si->State.Subjects)
		for (int i = 0; i < si->State.Subjects->Count; i++)
			n += si->State.Subjects->List[i].Msgs;
	jsStreamInfo_Destroy(si);
	return n == a->want;
}

static void send_abort(int fd, uint64_t stream)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjPutChunk ch = SHIP__OBJ_PUT_CHUNK__INIT;
	ch.stream = stream;
	ch.abort = true;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_PUT_CHUNK;
	f.obj_put_chunk = &ch;
	raw_frame(fd, &f);
}

/* Read a stream's frames up to its StreamEnd, which is returned. */
static Ship__ServerFrame *until_end(int fd, uint64_t id, bool *saw_info)
{
	for (;;) {
		Ship__ServerFrame *r = raw_reply(fd, id);
		ck_assert_ptr_nonnull(r);
		if (r->body_case == SHIP__SERVER_FRAME__BODY_END || r->code)
			return r;
		if (saw_info &&
		    r->body_case == SHIP__SERVER_FRAME__BODY_OBJ_INFO)
			*saw_info = true;
		ship__server_frame__free_unpacked(r, NULL);
	}
}

/* Store meta (JSON) as the meta of name in bucket b, as another writer. */
static void raw_meta(const char *b, const char *name, const char *meta)
{
	char subj[256], enc[128];
	natsMsg *m = NULL;
	ipc_base64url(name, strlen(name), enc, sizeof(enc));
	snprintf(subj, sizeof(subj), "$O.%s.M.%s", b, enc);
	ck_assert_int_eq(
	    natsMsg_Create(&m, subj, NULL, meta, (int)strlen(meta)), NATS_OK);
	natsMsgHeader_Set(m, "Nats-Rollup", "sub");
	ck_assert_int_eq(js_PublishMsg(NULL, js, m, NULL, NULL), NATS_OK);
	natsMsg_Destroy(m);
}

static void sha_b64(const uint8_t *data, size_t len, char *out, size_t size)
{
	struct ipc_sha256 s;
	uint8_t d[IPC_SHA256_LEN];
	ipc_sha256_init(&s);
	ipc_sha256_update(&s, data, len);
	ipc_sha256_final(&s, d);
	ipc_base64url(d, sizeof(d), out, size);
}

/* An abort once the meta is sent undoes nothing: the put ends saying it
 * came too late, and the object is there (not "nothing stored"). */
START_TEST(abort_after_last)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "al");
	send_put(fd, 60, "al", "late");
	Ship__ServerFrame *r = raw_reply(fd, 60);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT);
	ship__server_frame__free_unpacked(r, NULL);
	/* The last chunk and the abort in one write: the abort comes while the
	 * meta is on its way. */
	struct ipc_buf b = {0};
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT,
			  fa = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjPutChunk ch = SHIP__OBJ_PUT_CHUNK__INIT,
			  ab = SHIP__OBJ_PUT_CHUNK__INIT;
	ch.stream = ab.stream = 60;
	ch.last = true;
	ab.abort = true;
	f.body_case = fa.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_PUT_CHUNK;
	f.obj_put_chunk = &ch;
	fa.obj_put_chunk = &ab;

	raw_pack(&b, &f);
	raw_pack(&b, &fa);
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	bool saw_info = false;
	r = until_end(fd, 60, &saw_info);
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert_msg(!strstr(r->error, "nothing stored"), "told '%s'",
		      r->error);
	ck_assert_msg(strstr(r->error, "too late"), "told '%s'", r->error);
	ck_assert(saw_info);
	ship__server_frame__free_unpacked(r, NULL);
	r = info(fd, "al", "late", false);
	expect(r, SHIP__CODE__OK, NULL);
	ship__server_frame__free_unpacked(r, NULL);
	close(fd);
}
END_TEST

/* An app that leaves once its meta is sent: the put finishes without it,
 * and the version it replaced is purged. */
START_TEST(left_after_last)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "lf");
	char old[64], subj[128];
	uint8_t *a = pattern(2 * CHUNK, 5);
	put_ok(fd, 70, "lf", "o", a, 2 * CHUNK, old);
	int fd2 = raw_open(sd.sock);
	send_put(fd2, 71, "lf", "o");
	Ship__ServerFrame *r = raw_reply(fd2, 71);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT);
	ship__server_frame__free_unpacked(r, NULL);
	send_chunk(fd2, 71, NULL, 0, true); /* empty: the meta goes at once */
	close(fd2);
	snprintf(subj, sizeof(subj), "$O.lf.C.%s", old);
	struct count_arg gone = {"OBJ_lf", subj, 0};
	ck_assert_msg(fx_wait(count_is, &gone, 5000), "old chunks stay");
	r = info(fd, "lf", "o", false);
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert_uint_eq(r->obj_info->size, 0);
	ship__server_frame__free_unpacked(r, NULL);
	free(a);
	close(fd);
}
END_TEST

/* A purge that cannot be sent (NATS down) is sent when NATS is back. */
START_TEST(purge_owed)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "ow");
	uint8_t *a = pattern(CHUNK, 6);
	send_put(fd, 80, "ow", "half");
	Ship__ServerFrame *r = raw_reply(fd, 80);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT);
	ship__server_frame__free_unpacked(r, NULL);
	send_chunk(fd, 80, a, CHUNK, false);
	r = raw_reply(fd, 80); /* acked: credit again */
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT);
	ship__server_frame__free_unpacked(r, NULL);
	struct count_arg one = {"OBJ_ow", "$O.ow.C.>", 1};
	ck_assert(count_try(&one));
	natsd_stop(&nd);
	fx_sleep_ms(500);
	send_abort(fd, 80);
	r = until_end(fd, 80, NULL);
	expect(r, SHIP__CODE__OK, "nothing stored");
	ship__server_frame__free_unpacked(r, NULL);
	ck_assert_int_eq(natsd_restart(&nd), 0);
	struct count_arg none = {"OBJ_ow", "$O.ow.C.>", 0};
	ck_assert_msg(fx_wait(count_try, &none, 20000), "chunks stay");
	free(a);
	close(fd);
}
END_TEST

/* Another writer's meta that is no ObjectInfo breaks neither list nor
 * delete nor an overwrite. */
START_TEST(bad_meta)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "bm");
	uint8_t *a = pattern(100, 7);
	put_ok(fd, 90, "bm", "good", a, 100, NULL);
	raw_meta("bm", "bad", "not json");
	raw_meta("bm", "nameless", "{\"nuid\":\"x\",\"size\":3}");
	Ship__ServerFrame *r = list(fd, "bm", false);
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert_uint_eq(r->obj_infos->n_objects, 1);
	ck_assert_str_eq(r->obj_infos->objects[0]->name, "good");
	ship__server_frame__free_unpacked(r, NULL);

	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjDelete d = SHIP__OBJ_DELETE__INIT;
	d.bucket = "bm";
	d.name = "bad";
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_DELETE;
	f.obj_delete = &d;
	r = ask(fd, 91, &f);
	expect(r, SHIP__CODE__OK, NULL);
	ship__server_frame__free_unpacked(r, NULL);
	r = info(fd, "bm", "bad", true);
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert(r->obj_info->deleted);
	ship__server_frame__free_unpacked(r, NULL);

	put_ok(fd, 92, "bm", "nameless", a, 100, NULL);
	get_same(fd, 93, "bm", "nameless", a, 100);
	r = list(fd, "bm", false);
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert_uint_eq(r->obj_infos->n_objects, 2);
	ship__server_frame__free_unpacked(r, NULL);
	free(a);
	close(fd);
}
END_TEST

/* A digest in the standard alphabet without padding (nats.js) is the
 * same digest. */
START_TEST(digest_alphabets)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "dg");
	char nuid[64], enc[64], meta[512];
	size_t len = CHUNK + 33;
	uint8_t *a = NULL;
	/* Data whose digest has both '-' or '_' in base64url, so the alphabets
	 * differ. */
	for (unsigned seed = 8;; seed++) {
		free(a);
		a = pattern(len, seed);
		sha_b64(a, len, enc, sizeof(enc));
		if (strpbrk(enc, "-_"))
			break;
	}
	put_ok(fd, 95, "dg", "d", a, len, nuid);
	for (char *q = enc; *q; q++)
		*q = *q == '-' ? '+' : *q == '_' ? '/' : *q;
	*strchr(enc, '=') = '\0';
	snprintf(
	    meta, sizeof(meta),
	    "{\"name\":\"d\",\"bucket\":\"dg\",\"nuid\":\"%s\",\"size\":%zu,"
	    "\"mtime\":\"0001-01-01T00:00:00Z\",\"chunks\":2,"
	    "\"digest\":\"SHA-256=%s\"}",
	    nuid, len, enc);
	raw_meta("dg", "d", meta);
	get_same(fd, 96, "dg", "d", a, len);
	free(a);
	close(fd);
}
END_TEST

/* A get the app closes early ends OK, as any stream it closes, but is
 * not said to be verified. */
START_TEST(get_closed_early)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "ge");
	uint8_t *a = pattern(3 * CHUNK, 9);
	put_ok(fd, 100, "ge", "g", a, 3 * CHUNK, NULL);
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjGet g = SHIP__OBJ_GET__INIT;
	g.bucket = "ge";
	g.name = "g";
	g.credit = 1;
	f.id = 101;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_GET;
	f.obj_get = &g;
	raw_frame(fd, &f);
	Ship__ServerFrame *r;
	do {
		r = raw_reply(fd, 101);
		ck_assert_ptr_nonnull(r);
		ck_assert_int_ne(r->body_case, SHIP__SERVER_FRAME__BODY_END);
		bool chunk = r->body_case == SHIP__SERVER_FRAME__BODY_OBJ_CHUNK;
		ship__server_frame__free_unpacked(r, NULL);
		if (chunk)
			break;
	} while (1);
	Ship__ClientFrame uf = SHIP__CLIENT_FRAME__INIT;
	Ship__Unsubscribe u = SHIP__UNSUBSCRIBE__INIT;
	u.stream = 101;
	uf.body_case = SHIP__CLIENT_FRAME__BODY_UNSUBSCRIBE;
	uf.unsubscribe = &u;
	raw_frame(fd, &uf);
	r = until_end(fd, 101, NULL);
	expect(r, SHIP__CODE__OK, "not verified");
	ship__server_frame__free_unpacked(r, NULL);
	free(a);
	close(fd);
}
END_TEST

/* ---- with a small max_frame: a chunk no frame can carry ---- */

static void setup_small_frame(void)
{
	static const char *const extra[] = {"-o", "max_frame=65536", NULL};
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_up(&nd, &sd, extra), 0);
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
}

START_TEST(chunk_over_frame)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "fr");
	size_t len = 100000;
	uint8_t *a = pattern(len, 10);
	char enc[64], meta[512];
	sha_b64(a, len, enc, sizeof(enc));
	ck_assert_int_eq(
	    js_Publish(NULL, js, "$O.fr.C.BIGNUID", a, (int)len, NULL, NULL),
	    NATS_OK);
	snprintf(meta, sizeof(meta),
		 "{\"name\":\"big\",\"bucket\":\"fr\",\"nuid\":\"BIGNUID\","
		 "\"size\":%zu,\"mtime\":\"0001-01-01T00:00:00Z\",\"chunks\":1,"
		 "\"digest\":\"SHA-256=%s\"}",
		 len, enc);
	raw_meta("fr", "big", meta);
	uint8_t *got;
	size_t n;
	char err[512];
	Ship__Code c = get(fd, 110, "fr", "big", &got, &n, err, sizeof(err));
	ck_assert_msg(c == SHIP__CODE__RESOURCE_EXHAUSTED &&
			  strstr(err, "100000"),
		      "code %d: %s", c, err);
	free(got);
	free(a);
	close(fd);
}
END_TEST

/* ---- with a small max payload: a meta NATS would refuse ---- */

static char nats_conf[64];

static void setup_small_payload(void)
{
	static const char *extra[3] = {"-c", nats_conf, NULL};
	snprintf(nats_conf, sizeof(nats_conf), "/tmp/shiptest-objp-XXXXXX");
	int cfd = mkstemp(nats_conf);
	ck_assert_int_ge(cfd, 0);
	static const char text[] = "max_payload: 65536\n";
	ck_assert_int_eq(write(cfd, text, sizeof(text) - 1), sizeof(text) - 1);
	close(cfd);
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(natsd_start_args(&nd, 0, extra), 0);
	ck_assert_int_eq(shipd_start(&sd, nd.url, NULL), 0);
	ck_assert(fx_wait_link(sd.sock, 10000));
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
}

static void teardown_small_payload(void)
{
	teardown();
	unlink(nats_conf);
}

START_TEST(meta_over_payload)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "mp");
	size_t vlen = 70000;
	char *v = malloc(vlen + 1);
	memset(v, 'v', vlen);
	v[vlen] = '\0';
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjPut p = SHIP__OBJ_PUT__INIT;
	Ship__Header m = SHIP__HEADER__INIT;
	Ship__Header *mp[] = {&m};
	m.key = "big";
	m.value = v;
	p.bucket = "mp";
	p.name = "o";
	p.description = "";
	p.n_metadata = 1;
	p.metadata = mp;
	p.chunk_size = 32768;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_PUT;
	f.obj_put = &p;
	Ship__ServerFrame *r = ask(fd, 120, &f);
	expect(r, SHIP__CODE__INVALID_ARGUMENT, "max payload");
	ship__server_frame__free_unpacked(r, NULL);
	free(v);
	close(fd);
}
END_TEST

/* A watch answers its opening before any push; metas of other writers
 * that are no ObjectInfo are skipped; the marker is an ObjectInfo with
 * an empty name; an Unsubscribe ends it with StreamEnd OK. */
START_TEST(watch_frames)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "wf");
	uint8_t *a = pattern(10, 3);
	put_ok(fd, 90, "wf", "good", a, 10, NULL);
	raw_meta("wf", "bad", "not json");

	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjWatch w = SHIP__OBJ_WATCH__INIT;
	w.bucket = "wf";
	f.id = 100;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_WATCH;
	f.obj_watch = &w;
	raw_frame(fd, &f);
	Ship__ServerFrame *r = raw_read(fd);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->id, 100);
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY__NOT_SET);
	ship__server_frame__free_unpacked(r, NULL);
	const char *want[] = {"good", ""};
	for (int i = 0; i < 2; i++) {
		r = raw_read(fd);
		ck_assert_ptr_nonnull(r);
		ck_assert_uint_eq(r->id, 100);
		ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_INFO);
		ck_assert_str_eq(r->obj_info->name, want[i]);
		if (i == 0) {
			ck_assert_uint_eq(r->obj_info->size, 10);
			ck_assert_uint_gt(r->obj_info->mtime_ns, 0);
		}
		ship__server_frame__free_unpacked(r, NULL);
	}

	/* A rename: its answer and the new name's push, in either order. */
	Ship__ObjUpdateMeta u = SHIP__OBJ_UPDATE_META__INIT;
	u.bucket = "wf";
	u.name = "good";
	u.new_name = "g2";
	f.id = 101;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_UPDATE_META;
	f.obj_update_meta = &u;
	raw_frame(fd, &f);
	bool answered = false, pushed = false;
	while (!answered || !pushed) {
		r = raw_read(fd);
		ck_assert_ptr_nonnull(r);
		if (r->id == 101) {
			expect(r, SHIP__CODE__OK, NULL);
			answered = true;
		} else {
			ck_assert_uint_eq(r->id, 100);
			ck_assert_str_eq(r->obj_info->name, "g2");
			ck_assert_uint_eq(r->obj_info->size, 10);
			pushed = true;
		}
		ship__server_frame__free_unpacked(r, NULL);
	}

	Ship__Unsubscribe un = SHIP__UNSUBSCRIBE__INIT;
	un.stream = 100;
	f.id = 0;
	f.body_case = SHIP__CLIENT_FRAME__BODY_UNSUBSCRIBE;
	f.unsubscribe = &un;
	raw_frame(fd, &f);
	r = until_end(fd, 100, NULL);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_END);
	expect(r, SHIP__CODE__OK, NULL);
	ship__server_frame__free_unpacked(r, NULL);

	/* A link made here reads as nats.go writes one. */
	Ship__ObjLink l = SHIP__OBJ_LINK__INIT;
	l.bucket = "wf";
	l.name = "ln";
	l.target_bucket = "wf";
	l.target_name = "g2";
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_LINK;
	f.obj_link = &l;
	r = ask(fd, 102, &f);
	expect(r, SHIP__CODE__OK, NULL);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_INFO);
	ship__server_frame__free_unpacked(r, NULL);
	natsMsg *jm = NULL;
	ck_assert_int_eq(js_GetLastMsg(&jm, js, "OBJ_wf", "$O.wf.M.bG4=", NULL,
	                               NULL),
	                 NATS_OK);
	/* As nats.go's AddLink: a fresh nuid, no size, the link. */
	char *text = strndup(natsMsg_GetData(jm),
	                     (size_t)natsMsg_GetDataLength(jm));
	ck_assert_ptr_nonnull(text);
	ck_assert_msg(strstr(text, "\"name\":\"ln\",\"bucket\":\"wf\","
	                           "\"nuid\":\""),
	              "%s", text);
	ck_assert_msg(strstr(text, "\"size\":0,\"chunks\":0,"), "%s", text);
	ck_assert_msg(strstr(text, "\"options\":{\"link\":{\"bucket\":"
	                           "\"wf\",\"name\":\"g2\"}}"),
	              "%s", text);
	free(text);
	natsMsg_Destroy(jm);
	free(a);
	close(fd);
}
END_TEST

/* ---- shipd's end mid-put: the journal in state_dir ---- */

static char state_dir[300];
static const char *journal_args[4];
static char state_arg[320];

static void setup_journal(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(natsd_start(&nd, 0), 0);
	snprintf(state_dir, sizeof(state_dir), "%s/state", nd.dir);
	ck_assert_int_eq(mkdir(state_dir, 0700), 0);
	snprintf(state_arg, sizeof(state_arg), "state_dir=%s", state_dir);
	journal_args[0] = "-o";
	journal_args[1] = state_arg;
	journal_args[2] = NULL;
	ck_assert_int_eq(shipd_start(&sd, nd.url, journal_args), 0);
	ck_assert(fx_wait_link(sd.sock, 10000));
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
}

static long journal_size(void)
{
	char path[400];
	struct stat st;
	snprintf(path, sizeof(path), "%s/obj-puts", state_dir);
	return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static bool journal_empty(void *arg)
{
	(void)arg;
	return journal_size() == 0;
}

/* shipd killed mid-put: after the restart the cut put's chunks go, the
 * version it would have replaced stays whole, and the name takes a put. */
START_TEST(killed_mid_put)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "kj");
	char old[64];
	uint8_t *a = pattern(CHUNK, 1), *b = pattern(4 * CHUNK, 2);
	put_ok(fd, 10, "kj", "k", a, CHUNK, old);
	ck_assert_int_eq(journal_size(), 0);

	send_put(fd, 11, "kj", "k");
	Ship__ServerFrame *r = raw_reply(fd, 11);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT);
	ship__server_frame__free_unpacked(r, NULL);
	for (int i = 0; i < 3; i++)
		send_chunk(fd, 11, b + i * CHUNK, CHUNK, false);
	for (int i = 0; i < 3; i++) { /* each ack gives a credit back */
		r = raw_reply(fd, 11);
		ck_assert_int_eq(r->body_case,
				 SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT);
		ship__server_frame__free_unpacked(r, NULL);
	}
	struct count_arg four = {"OBJ_kj", "$O.kj.C.>", 4};
	ck_assert(count_try(&four));
	ck_assert_int_gt(journal_size(), 0);
	shipd_kill(&sd);
	close(fd);

	ck_assert_int_eq(shipd_restart(&sd, nd.url, journal_args), 0);
	struct count_arg one = {"OBJ_kj", "$O.kj.C.>", 1};
	ck_assert_msg(fx_wait(count_try, &one, 15000),
		      "the cut put's chunks stay");
	char subj[128];
	snprintf(subj, sizeof(subj), "$O.kj.C.%s", old);
	struct count_arg kept = {"OBJ_kj", subj, 1};
	ck_assert_msg(count_try(&kept), "the stored version lost its chunk");
	ck_assert_msg(fx_wait(journal_empty, NULL, 5000),
		      "journal not emptied: %ld bytes", journal_size());
	fd = raw_open(sd.sock);
	get_same(fd, 12, "kj", "k", a, CHUNK);
	put_ok(fd, 13, "kj", "k", b, 4 * CHUNK, NULL);
	struct count_arg new4 = {"OBJ_kj", "$O.kj.C.>", 4};
	ck_assert_msg(fx_wait(count_try, &new4, 5000), "old chunks stay");
	get_same(fd, 14, "kj", "k", b, 4 * CHUNK);
	free(a);
	free(b);
	close(fd);
}
END_TEST

static void raw_chunk(const char *b, const char *nuid)
{
	char subj[128];
	snprintf(subj, sizeof(subj), "$O.%s.C.%s", b, nuid);
	ck_assert_int_eq(js_Publish(NULL, js, subj, "chunk", 5, NULL, NULL),
			 NATS_OK);
}

static uint64_t chunks_of(const char *b, const char *nuid)
{
	char stream[64], subj[128];
	snprintf(stream, sizeof(stream), "OBJ_%s", b);
	snprintf(subj, sizeof(subj), "$O.%s.C.%s", b, nuid);
	return stored(stream, subj);
}

#define NUID_A "AAAAAAAAAAAAAAAAAAAAAA"
#define NUID_B "BBBBBBBBBBBBBBBBBBBBBB"
#define NUID_C "CCCCCCCCCCCCCCCCCCCCCC"
#define NUID_D "DDDDDDDDDDDDDDDDDDDDDD"
#define NUID_O "OOOOOOOOOOOOOOOOOOOOOO"

static bool journal_settled(void *arg)
{
	const char *b = arg;
	return chunks_of(b, NUID_A) == 0 && chunks_of(b, NUID_O) == 0 &&
	       chunks_of(b, NUID_D) == 0 && journal_size() == 0;
}

/* What each kind of journal line left by a run leads to at the start. */
START_TEST(journal_left_over)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "jl");
	close(fd);
	ck_assert_int_eq(shipd_stop(&sd), 0);
	char meta_b[128], meta_c[128], meta_a[128], enc[64], text[512];
	ipc_base64url("b", 1, enc, sizeof(enc));
	snprintf(meta_b, sizeof(meta_b), "$O.jl.M.%s", enc);
	ipc_base64url("c", 1, enc, sizeof(enc));
	snprintf(meta_c, sizeof(meta_c), "$O.jl.M.%s", enc);
	ipc_base64url("a", 1, enc, sizeof(enc));
	snprintf(meta_a, sizeof(meta_a), "$O.jl.M.%s", enc);
	const char *all[] = {NUID_A, NUID_B, NUID_C, NUID_D, NUID_O};
	for (int i = 0; i < 5; i++)
		raw_chunk("jl", all[i]);
	/* b's meta is B's: B was stored, O (the version before) is waste. */
	snprintf(text, sizeof(text),
		 "{\"name\":\"b\",\"bucket\":\"jl\",\"nuid\":\"%s\","
		 "\"size\":5,\"chunks\":1,\"digest\":\"\"}",
		 NUID_B);
	raw_meta("jl", "b", text);

	char path[400];
	snprintf(path, sizeof(path), "%s/obj-puts", state_dir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "P %s jl - %s\n", NUID_A, meta_a);   /* cut mid-chunks */
	fprintf(f, "P %s jl %s %s\nM %s\n", NUID_B, NUID_O, meta_b, NUID_B);
	fprintf(f, "P %s jl - %s\nM %s\n", NUID_C, meta_c, NUID_C);
	fprintf(f, "X %s jl\n", NUID_D);
	fprintf(f, "P %s jl - %s\nE %s\n", "EEEEEEEEEEEEEEEEEEEEEE", meta_a,
		"EEEEEEEEEEEEEEEEEEEEEE");
	fprintf(f, "P FFFFFFFFFFFFFFF"); /* cut by the end of a write */
	fclose(f);

	ck_assert_int_eq(shipd_restart(&sd, nd.url, journal_args), 0);
	ck_assert_msg(fx_wait(journal_settled, "jl", 15000),
		      "not settled: A %llu, O %llu, D %llu, journal %ld",
		      (unsigned long long)chunks_of("jl", NUID_A),
		      (unsigned long long)chunks_of("jl", NUID_O),
		      (unsigned long long)chunks_of("jl", NUID_D),
		      journal_size());
	/* Stored B keeps its chunks; C's meta was sent and is nowhere: its
	 * chunks are kept rather than risk an object. */
	ck_assert_uint_eq(chunks_of("jl", NUID_B), 1);
	ck_assert_uint_eq(chunks_of("jl", NUID_C), 1);
}
END_TEST

/* if_absent: a live name refuses, a free or deleted one takes, and a
 * refused put leaves no chunk. */
START_TEST(put_if_absent)
{
	int fd = raw_open(sd.sock);
	create_ok(fd, "ia");
	uint8_t *a = pattern(CHUNK + 1, 3);
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ObjPut p = SHIP__OBJ_PUT__INIT;
	p.bucket = "ia";
	p.name = "x";
	p.description = "";
	p.if_absent = true;
	f.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_PUT;
	f.obj_put = &p;
	/* Free: it takes. */
	f.id = 20;
	raw_frame(fd, &f);
	Ship__ServerFrame *r = raw_reply(fd, 20);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT);
	ship__server_frame__free_unpacked(r, NULL);
	send_chunk(fd, 20, a, CHUNK, false);
	send_chunk(fd, 20, a + CHUNK, 1, true);
	r = until_end(fd, 20, NULL);
	expect(r, SHIP__CODE__OK, NULL);
	ship__server_frame__free_unpacked(r, NULL);
	/* Taken: refused before any chunk. */
	f.id = 21;
	raw_frame(fd, &f);
	r = until_end(fd, 21, NULL);
	expect(r, SHIP__CODE__ALREADY_EXISTS, "exists");
	ship__server_frame__free_unpacked(r, NULL);
	struct count_arg two = {"OBJ_ia", "$O.ia.C.>", 2};
	ck_assert(count_try(&two));
	/* Taken while the put was on its way: the meta is refused by the
	 * server and the put's chunks are purged. */
	f.id = 22;
	p.name = "y";
	raw_frame(fd, &f);
	r = raw_reply(fd, 22);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT);
	ship__server_frame__free_unpacked(r, NULL);
	send_chunk(fd, 22, a, CHUNK, false);
	raw_meta("ia", "y", "{\"name\":\"y\",\"bucket\":\"ia\",\"nuid\":\"\"}");
	send_chunk(fd, 22, a + CHUNK, 1, true);
	r = until_end(fd, 22, NULL);
	expect(r, SHIP__CODE__ALREADY_EXISTS, "taken");
	ship__server_frame__free_unpacked(r, NULL);
	ck_assert_msg(fx_wait(count_try, &two, 5000), "refused chunks stay");
	/* Deleted: free again. */
	Ship__ObjDelete d = SHIP__OBJ_DELETE__INIT;
	Ship__ClientFrame fd_ = SHIP__CLIENT_FRAME__INIT;
	d.bucket = "ia";
	d.name = "x";
	fd_.body_case = SHIP__CLIENT_FRAME__BODY_OBJ_DELETE;
	fd_.obj_delete = &d;
	r = ask(fd, 23, &fd_);
	expect(r, SHIP__CODE__OK, NULL);
	ship__server_frame__free_unpacked(r, NULL);
	p.name = "x";
	f.id = 24;
	raw_frame(fd, &f);
	r = raw_reply(fd, 24);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_OBJ_PUT_CREDIT);
	ship__server_frame__free_unpacked(r, NULL);
	send_chunk(fd, 24, a, 10, true);
	r = until_end(fd, 24, NULL);
	expect(r, SHIP__CODE__OK, NULL);
	ship__server_frame__free_unpacked(r, NULL);
	free(a);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("obj-raw");
	TCase *tc = tcase_create("obj");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, buckets);
	tcase_add_test(tc, put_get);
	tcase_add_test(tc, delete_and_overwrite);
	tcase_add_test(tc, corrupt);
	tcase_add_test(tc, refused_and_abandoned);
	tcase_add_test(tc, abort_after_last);
	tcase_add_test(tc, left_after_last);
	tcase_add_test(tc, purge_owed);
	tcase_add_test(tc, bad_meta);
	tcase_add_test(tc, digest_alphabets);
	tcase_add_test(tc, get_closed_early);
	tcase_add_test(tc, watch_frames);
	tcase_add_test(tc, put_if_absent);
	suite_add_tcase(s, tc);
	TCase *tj = tcase_create("journal");
	tcase_add_checked_fixture(tj, setup_journal, teardown);
	tcase_set_timeout(tj, 120);
	tcase_add_test(tj, killed_mid_put);
	tcase_add_test(tj, journal_left_over);
	suite_add_tcase(s, tj);
	TCase *tf = tcase_create("small frame");
	tcase_add_checked_fixture(tf, setup_small_frame, teardown);
	tcase_set_timeout(tf, 120);
	tcase_add_test(tf, chunk_over_frame);
	suite_add_tcase(s, tf);
	TCase *tp = tcase_create("small payload");
	tcase_add_checked_fixture(tp, setup_small_payload,
				  teardown_small_payload);
	tcase_set_timeout(tp, 120);
	tcase_add_test(tp, meta_over_payload);
	suite_add_tcase(s, tp);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
