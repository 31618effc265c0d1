/* SPDX-License-Identifier: MIT */
/* What the Object Store's parts share (objstore.c, objmeta.c, objput.c,
 * objget.c); not for the rest of shipd. */
#ifndef SHIP_OBJSTORE_H
#define SHIP_OBJSTORE_H

#include <string.h>

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
static inline int utf8_cut(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);
	if (n <= max)
		return (int)n;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return (int)n;
}

/* obj_publish_meta_if: no condition on the subject's last sequence */
#define NO_EXPECT UINT64_MAX

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

/* An ObjectInfo frame and the headers it points to. */
struct pinfo {
	Ship__ObjectInfo pi;
	Ship__Header *h;
	Ship__Header **hp;
};

/* objstore.c: names, subjects, digests; purges owed; meta lookups */
bool obj_bucket_valid(const char *b);
bool obj_check_bucket(struct client *c, uint64_t id, const char *b);
bool obj_meta_subject(const char *b, const char *name, char *out,
		      size_t size);
bool obj_check_name(struct client *c, uint64_t id, const char *b,
		    const char *name, char *meta, size_t size);
void obj_digest_string(struct ipc_sha256 *s, char *out, size_t size);
void obj_rfc3339_now(char *buf, size_t size);
uint64_t obj_wall_ns(void);
void obj_unavailable(struct js_err *e);
void obj_purge_forget(const char *b, const char *nuid);
struct js_call *obj_purge_subject(const char *b, const char *filter,
				  const char *nuid, js_api_fn *fn, void *arg);
struct js_call *obj_purge(const char *b, const char *nuid, js_api_fn *fn,
			  void *arg);
void obj_purge_failed(const char *b, const char *nuid,
		      const struct js_err *e);
int obj_direct_get(const char *b, struct link_wait *w, const char *body);
void obj_known_forget(const char *b);
void obj_lookup_cancel(struct lookup *l);
struct lookup *obj_get_meta(const char *b, const char *meta,
			    link_reply_fn *fn, void *arg);
int obj_meta_result(natsMsg *msg, natsStatus st, const char *b,
		    json_t **info, uint64_t *mtime_ns, struct js_err *err);
const char *obj_jstr(json_t *j, const char *key);
uint64_t obj_juint(json_t *j, const char *key);
bool obj_jdeleted(json_t *j);
int obj_pinfo_fill(struct pinfo *p, json_t *j, uint64_t mtime_ns);
void obj_pinfo_clear(struct pinfo *p);
void obj_send_info(struct client *c, uint64_t id, json_t *j,
		   uint64_t mtime_ns);

/* objmeta.c: buckets, info, delete, list, update meta, links, watch */
struct js_call *obj_publish_meta_if(const char *meta, json_t *j,
				    uint64_t expect, js_pub_fn *fn, void *arg,
				    struct js_err *err);
int obj_meta_fields(json_t *j, const char *description, Ship__Header **hs,
		    size_t nh, Ship__Header **ms, size_t nm, char *why,
		    size_t size);
void obj_handle_bucket_create(struct client *c, uint64_t id,
			      const Ship__ObjBucketCreate *bc);
void obj_handle_bucket_status(struct client *c, uint64_t id, const char *b);
void obj_handle_bucket_delete(struct client *c, uint64_t id, const char *b);
void obj_handle_bucket_seal(struct client *c, uint64_t id, const char *b);
void obj_handle_bucket_list(struct client *c, uint64_t id);
void obj_handle_info(struct client *c, uint64_t id,
		     const Ship__ObjInfoRequest *r);
void obj_handle_delete(struct client *c, uint64_t id,
		       const Ship__ObjDelete *d);
void obj_handle_list(struct client *c, uint64_t id,
		     const Ship__ObjListRequest *r);
void obj_handle_update_meta(struct client *c, uint64_t id,
			    const Ship__ObjUpdateMeta *r);
void obj_handle_link(struct client *c, uint64_t id, const Ship__ObjLink *r);
void obj_handle_watch(struct client *c, uint64_t id,
		      const Ship__ObjWatch *r);
void objmeta_finish(void);

/* objput.c: puts, and the settling of the journal's left-overs */
void obj_handle_put(struct client *c, uint64_t id, const Ship__ObjPut *r);
void obj_handle_chunk(struct client *c, uint64_t id,
		      const Ship__ObjPutChunk *ch);
void objput_link_up(void);
void objput_finish(void);

/* objget.c: gets */
void obj_handle_get(struct client *c, uint64_t id, const Ship__ObjGet *r);
void obj_handle_credit(struct client *c, uint64_t id,
		       const Ship__ObjCredit *cr);

#endif
