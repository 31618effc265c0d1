/* SPDX-License-Identifier: MIT */
/* libshipc's noesis-ship stores on the Object Store: being snapshots and
 * artifacts, in noesis-ship's names, JSON and descriptions. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jscan.h"
#include "shipc-private.h"

#define SNAPSHOTS SHIPC_SNAPSHOT_BUCKET
#define ARTIFACTS SHIPC_ARTIFACT_BUCKET
/* Ids tried for the snapshots of one being in one second. */
#define TAKE_TRIES 100
/* "_YYYYMMDD_HHMMSS", the suffix of every snapshot id. */
#define STAMP_LEN 16
#define EXPEDITION_SEP ", expedition="

static int fail(struct shipc *h, int err, const char *why)
{
	set_error(h, "%s", why);
	errno = err;
	return -1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char *meta_of(const struct shipc_obj_info *o, const char *key)
{
	for (size_t i = 0; i < o->n_metadata; i++)
		if (!strcmp(o->metadata[i].key, key))
			return o->metadata[i].value;
	return NULL;
}

/* Copy k strings (of the lengths given) into one allocation, each
 * NUL-terminated, and point out[i] at each; out[0] owns the block. */
static int pack(size_t k, const char *const *s, const size_t *len,
                const char **out)
{
	size_t total = 0;
	for (size_t i = 0; i < k; i++)
		total += len[i] + 1;
	char *p = malloc(total);
	if (!p)
		return -1;
	for (size_t i = 0; i < k; i++) {
		memcpy(p, s[i], len[i]);
		p[len[i]] = '\0';
		out[i] = p;
		p += len[i] + 1;
	}
	return 0;
}

/* ---- buckets, got or created as noesis-ship does ---- */

/* Create bucket with the defaults; one that exists (with other settings,
 * or created meanwhile) is used as it is. */
static int make_bucket(struct shipc *h, const char *bucket)
{
	struct shipc_obj_bucket_config c = {.bucket = bucket};
	if (shipc_obj_bucket_create(h, &c, NULL) == 0 || errno == EEXIST)
		return 0;
	return -1;
}

static int ensure_bucket(struct shipc *h, const char *bucket)
{
	struct shipc_obj_bucket_status st;
	if (shipc_obj_bucket_status(h, bucket, &st) == 0)
		return 0;
	return errno == ENOENT ? make_bucket(h, bucket) : -1;
}

/* Memory can be sent twice: try, and create the bucket only when it is
 * missing (a put fails with ENOENT for nothing else). */
static int put_mem(struct shipc *h, const char *bucket, const char *name,
                   const void *data, size_t len,
                   const struct shipc_obj_put_opts *o,
                   struct shipc_obj_info **info)
{
	if (shipc_obj_put_mem(h, bucket, name, data, len, o, info) == 0)
		return 0;
	if (errno != ENOENT || make_bucket(h, bucket) < 0)
		return -1;
	return shipc_obj_put_mem(h, bucket, name, data, len, o, info);
}

/* ---- snapshots ---- */

/* The id's time part (without its '_') and the body's "created", from
 * one clock reading.
 * "created" as chrono's to_rfc3339() writes it: UTC as +00:00, and the
 * fewest of 0, 3, 6 or 9 digits that keep the nanoseconds. */
static void stamps(char id[STAMP_LEN], char created[64])
{
	struct timespec ts;
	struct tm tm;
	char base[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(id, STAMP_LEN, "%Y%m%d_%H%M%S", &tm);
	strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	long ns = ts.tv_nsec;
	if (ns == 0)
		snprintf(created, 64, "%s+00:00", base);
	else if (ns % 1000000 == 0)
		snprintf(created, 64, "%s.%03ld+00:00", base, ns / 1000000);
	else if (ns % 1000 == 0)
		snprintf(created, 64, "%s.%06ld+00:00", base, ns / 1000);
	else
		snprintf(created, 64, "%s.%09ld+00:00", base, ns);
}

static char *put_str(char *p, const char *s)
{
	size_t n = strlen(s);
	memcpy(p, s, n);
	return p + n;
}

/* {"being_id":..,"reason":..,"state":..,"created":..}, compact, as
 * noesis-ship writes it; NULL with errno set. */
static char *snapshot_body(const char *being_id, const char *reason,
                           const char *state, const char *created,
                           size_t *len)
{
	size_t bl = jscan_escape(being_id, strlen(being_id), NULL);
	size_t rl = jscan_escape(reason, strlen(reason), NULL);
	size_t sl = strlen(state);
	if (bl == SIZE_MAX || rl == SIZE_MAX) {
		errno = EINVAL;
		return NULL;
	}
	char *body = malloc(bl + rl + sl + strlen(created) + 64);
	if (!body)
		return NULL;
	char *p = put_str(body, "{\"being_id\":\"");
	p += jscan_escape(being_id, strlen(being_id), p);
	p = put_str(p, "\",\"reason\":\"");
	p += jscan_escape(reason, strlen(reason), p);
	p = put_str(p, "\",\"state\":");
	p += jscan_compact(state, sl, p);
	p = put_str(p, ",\"created\":\"");
	p = put_str(p, created);
	p = put_str(p, "\"}");
	*len = (size_t)(p - body);
	return body;
}

/* Store body under the first free id of the second: if_absent makes a
 * taken id a refusal, even one another app takes at the same moment. */
static int put_first_free(struct shipc *h, const char *being_id,
                          const char *stamp, const char *body, size_t len,
                          const struct shipc_obj_put_opts *o, char **id)
{
	size_t cap = strlen(being_id) + STAMP_LEN + 16;
	char *name = malloc(cap);
	if (!name)
		return fail(h, ENOMEM, "out of memory");
	for (unsigned k = 1; k <= TAKE_TRIES; k++) {
		if (k == 1)
			snprintf(name, cap, "%s_%s", being_id, stamp);
		else
			snprintf(name, cap, "%s_%s_%u", being_id, stamp, k);
		if (put_mem(h, SNAPSHOTS, name, body, len, o, NULL) == 0) {
			*id = name;
			return 0;
		}
		if (errno != EEXIST)
			break;
	}
	int e = errno;
	free(name);
	if (e == EEXIST)
		set_error(h, "%d snapshots of '%.64s' taken in second %s "
		          "already: no id left",
		          TAKE_TRIES, being_id, stamp);
	errno = e;
	return -1;
}

SHIPC_EXPORT int shipc_snapshot_take(struct shipc *h, const char *being_id,
                                     const char *state_json,
                                     const char *reason, char **id)
{
	char stamp[STAMP_LEN], created[64], *name;
	size_t len;
	if (!being_id || !*being_id || !state_json)
		return fail(h, EINVAL, "no being id or no state");
	if (!reason)
		reason = "";
	size_t sl = strlen(state_json);
	if (sl > SHIPC_SNAPSHOT_MAX)
		return fail(h, EFBIG, "the state is over SHIPC_SNAPSHOT_MAX");
	if (jscan_valid(state_json, sl) < 0)
		return fail(h, EINVAL, "the state is not valid JSON");
	stamps(stamp, created);
	char *body = snapshot_body(being_id, reason, state_json, created, &len);
	if (!body)
		return fail(h, errno, errno == EINVAL
		                          ? "the being id or reason is not UTF-8"
		                          : "out of memory");
	/* What is taken can be restored: the bound is the stored data's. */
	if (len > SHIPC_SNAPSHOT_MAX) {
		free(body);
		return fail(h, EFBIG, "the snapshot is over SHIPC_SNAPSHOT_MAX");
	}
	/* The metadata spare lists reading any data; noesis-ship ignores it. */
	const struct shipc_header md[] = {{"being_id", being_id},
	                                  {"reason", reason}};
	struct shipc_obj_put_opts o = {.description = reason,
	                               .metadata = md,
	                               .n_metadata = 2,
	                               .if_absent = 1};
	int r = put_first_free(h, being_id, stamp, body, len, &o, &name);
	int e = errno;
	free(body);
	if (r < 0) {
		errno = e;
		return -1;
	}
	if (id)
		*id = name;
	else
		free(name);
	return 0;
}

SHIPC_EXPORT int shipc_snapshot_restore(struct shipc *h, const char *id,
                                        char **state_json, size_t *len)
{
	void *data;
	size_t n, off, vlen;
	if (!id || !state_json)
		return fail(h, EINVAL, "no snapshot id or nowhere to put it");
	if (shipc_obj_get_mem(h, SNAPSHOTS, id, &data, &n, SHIPC_SNAPSHOT_MAX,
	                      NULL) < 0)
		return -1;
	/* Only "state" counts: Python's "timestamp" and layout read too. */
	int r = jscan_member(data, n, "state", &off, &vlen);
	char *s = r > 0 ? malloc(vlen + 1) : NULL;
	if (!s) {
		free(data);
		if (r > 0)
			return fail(h, ENOMEM, "out of memory");
		set_error(h, "snapshot '%.128s': %s", id,
		          r < 0 ? "its data is not one JSON object"
		                : "its data has no \"state\"");
		errno = EBADMSG;
		return -1;
	}
	size_t m = jscan_compact((const char *)data + off, vlen, s);
	s[m] = '\0';
	free(data);
	*state_json = s;
	if (len)
		*len = m;
	return 0;
}

static bool stamp_ends_at(const char *id, size_t end)
{
	if (end < STAMP_LEN + 1)
		return false;
	const char *s = id + end - STAMP_LEN;
	for (size_t i = 0; i < STAMP_LEN; i++) {
		bool sep = i == 0 || i == 9;
		if (sep ? s[i] != '_' : (s[i] < '0' || s[i] > '9'))
			return false;
	}
	return true;
}

/* The being of a snapshot noesis-ship wrote: the length of its id without
 * "_YYYYMMDD_HHMMSS" and a take's "_<n>" (2 to TAKE_TRIES), 0 if the id
 * has no such suffix. */
static size_t being_len(const char *id)
{
	size_t n = strlen(id), d = n;
	while (d > 0 && id[d - 1] >= '0' && id[d - 1] <= '9')
		d--;
	if (d > 0 && id[d - 1] == '_' && n - d >= 1 && n - d <= 3 &&
	    id[d] != '0' && strtoul(id + d, NULL, 10) >= 2 &&
	    stamp_ends_at(id, d - 1))
		return d - 1 - STAMP_LEN;
	return stamp_ends_at(id, n) ? n - STAMP_LEN : 0;
}

static int newest_first(const void *a, const void *b)
{
	const struct shipc_snapshot *x = a, *y = b;
	if (x->created_ns != y->created_ns)
		return x->created_ns > y->created_ns ? -1 : 1;
	return strcmp(y->id, x->id);
}

static int by_being(const void *a, const void *b)
{
	const struct shipc_snapshot *x = a, *y = b;
	int c = strcmp(x->being_id, y->being_id);
	return c ? c : newest_first(a, b);
}

/* One listed snapshot from its object, if it is being's (NULL: any).
 * 1 if filled, 0 if not wanted, -1 out of memory. */
static int snapshot_of(const struct shipc_obj_info *o, const char *being,
                       struct shipc_snapshot *s)
{
	const char *b = meta_of(o, "being_id"), *r = meta_of(o, "reason");
	size_t blen = b ? strlen(b) : being_len(o->name);
	if (!b)
		b = o->name;
	if (!r)
		r = o->description;
	if (o->link_bucket[0] ||
	    (being && (strlen(being) != blen || strncmp(being, b, blen))))
		return 0;
	const char *str[] = {o->name, b, r};
	const size_t len[] = {strlen(o->name), blen, strlen(r)};
	const char *out[3];
	if (pack(3, str, len, out) < 0)
		return -1;
	*s = (struct shipc_snapshot){.id = out[0], .being_id = out[1],
	                             .reason = out[2],
	                             .created_ns = o->mtime_ns,
	                             .size = o->size};
	return 1;
}

SHIPC_EXPORT int shipc_snapshot_list(struct shipc *h, const char *being_id,
                                     struct shipc_snapshot **list, size_t *n)
{
	struct shipc_obj_info *objs = NULL;
	size_t no = 0, k = 0;
	if (!list || !n)
		return fail(h, EINVAL, "nowhere to put the list");
	/* No bucket yet: no snapshots. */
	if (shipc_obj_list(h, SNAPSHOTS, 0, &objs, &no) < 0) {
		if (errno != ENOENT)
			return -1;
		objs = NULL;
		no = 0;
	}
	struct shipc_snapshot *out = calloc(no ? no : 1, sizeof(*out));
	int r = out ? 0 : -1;
	for (size_t i = 0; i < no && r == 0; i++) {
		r = snapshot_of(&objs[i], being_id, &out[k]);
		if (r > 0)
			k++;
		r = r < 0 ? -1 : 0;
	}
	shipc_obj_list_free(objs, no);
	if (r < 0) {
		shipc_snapshot_list_free(out, k);
		return fail(h, ENOMEM, "out of memory");
	}
	qsort(out, k, sizeof(*out), newest_first);
	*list = out;
	*n = k;
	return 0;
}

SHIPC_EXPORT void shipc_snapshot_list_free(struct shipc_snapshot *list,
                                           size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free((char *)list[i].id);
	free(list);
}

SHIPC_EXPORT int shipc_snapshot_delete(struct shipc *h, const char *id)
{
	if (!id || !*id)
		return fail(h, EINVAL, "no snapshot id");
	/* shipd marks a deleted object deleted again without a word: ask
	 * first, so that a snapshot deleted already is ENOENT. */
	if (shipc_obj_info(h, SNAPSHOTS, id, 0, NULL) < 0)
		return -1;
	return shipc_obj_delete(h, SNAPSHOTS, id);
}

SHIPC_EXPORT int shipc_snapshot_cleanup(struct shipc *h, const char *being_id,
                                        uint64_t older_than_ms, uint32_t keep,
                                        size_t *deleted)
{
	struct shipc_snapshot *list;
	size_t n, done = 0, rank = 0;
	int r = 0;
	if (deleted)
		*deleted = 0;
	if (shipc_snapshot_list(h, being_id, &list, &n) < 0)
		return -1;
	/* Each being's snapshots together, newest first: rank counts them. */
	qsort(list, n, sizeof(*list), by_being);
	uint64_t now = now_ns();
	uint64_t age = older_than_ms > UINT64_MAX / 1000000
	                       ? UINT64_MAX
	                       : older_than_ms * 1000000;
	for (size_t i = 0; i < n && r == 0; i++) {
		const struct shipc_snapshot *s = &list[i];
		rank = i && !strcmp(s->being_id, list[i - 1].being_id) ? rank + 1
		                                                        : 0;
		if (!s->being_id[0] || rank < keep || s->created_ns >= now ||
		    now - s->created_ns <= age)
			continue;
		if (shipc_snapshot_delete(h, s->id) == 0)
			done++;
		else if (errno != ENOENT)
			r = -1;
	}
	int e = errno;
	shipc_snapshot_list_free(list, n);
	if (deleted)
		*deleted = done;
	errno = e;
	return r;
}

/* ---- artifacts ---- */

struct artifact_put {
	char *description;
	struct shipc_header md[2];
	struct shipc_obj_put_opts o;
};

/* The description and metadata of an artifact's put; -1 with errno. */
static int artifact_put_init(struct shipc *h, struct artifact_put *a,
                             const char *type, const char *expedition)
{
	if (!type || !*type)
		return fail(h, EINVAL, "no artifact type");
	bool exp = expedition && *expedition;
	size_t cap = strlen(type) + (exp ? strlen(expedition) : 0) + 32;
	if (!(a->description = malloc(cap)))
		return fail(h, ENOMEM, "out of memory");
	if (exp)
		snprintf(a->description, cap, "type=%s" EXPEDITION_SEP "%s", type,
		         expedition);
	else
		snprintf(a->description, cap, "type=%s", type);
	a->md[0] = (struct shipc_header){"type", type};
	a->md[1] = (struct shipc_header){"expedition", expedition};
	a->o = (struct shipc_obj_put_opts){.description = a->description,
	                                   .metadata = a->md,
	                                   .n_metadata = exp ? 2 : 1};
	return 0;
}

SHIPC_EXPORT int shipc_artifact_store_mem(struct shipc *h, const char *name,
                                          const void *data, size_t len,
                                          const char *type,
                                          const char *expedition,
                                          struct shipc_obj_info **info)
{
	struct artifact_put a;
	if (artifact_put_init(h, &a, type, expedition) < 0)
		return -1;
	int r = put_mem(h, ARTIFACTS, name, data, len, &a.o, info);
	int e = errno;
	free(a.description);
	errno = e;
	return r;
}

/* A stream is read once: the bucket is made sure of before, never after
 * a put that may have read some of it. */
SHIPC_EXPORT int shipc_artifact_store_fd(struct shipc *h, const char *name,
                                         int fd, const char *type,
                                         const char *expedition,
                                         struct shipc_obj_info **info)
{
	struct artifact_put a;
	if (artifact_put_init(h, &a, type, expedition) < 0)
		return -1;
	int r = ensure_bucket(h, ARTIFACTS);
	if (r == 0)
		r = shipc_obj_put_fd(h, ARTIFACTS, name, fd, &a.o, info);
	int e = errno;
	free(a.description);
	errno = e;
	return r;
}

SHIPC_EXPORT int shipc_artifact_store_file(struct shipc *h, const char *name,
                                           const char *path, const char *type,
                                           const char *expedition,
                                           struct shipc_obj_info **info)
{
	struct artifact_put a;
	if (artifact_put_init(h, &a, type, expedition) < 0)
		return -1;
	int r = ensure_bucket(h, ARTIFACTS);
	if (r == 0)
		r = shipc_obj_put_file(h, ARTIFACTS, name, path, &a.o, info);
	int e = errno;
	free(a.description);
	errno = e;
	return r;
}

SHIPC_EXPORT int shipc_artifact_get_mem(struct shipc *h, const char *name,
                                        void **data, size_t *len, size_t max,
                                        struct shipc_obj_info **info)
{
	return shipc_obj_get_mem(h, ARTIFACTS, name, data, len, max, info);
}

SHIPC_EXPORT int shipc_artifact_get_fd(struct shipc *h, const char *name,
                                       int fd, struct shipc_obj_info **info)
{
	return shipc_obj_get_fd(h, ARTIFACTS, name, fd, NULL, info);
}

SHIPC_EXPORT int shipc_artifact_get_file(struct shipc *h, const char *name,
                                         const char *path,
                                         struct shipc_obj_info **info)
{
	return shipc_obj_get_file(h, ARTIFACTS, name, path, NULL, info);
}

/* One listed artifact: type and expedition from the metadata, else from a
 * description noesis-ship wrote ("type=T" or "type=T, expedition=E"). */
static int artifact_of(const struct shipc_obj_info *o, struct shipc_artifact *a)
{
	const char *type = meta_of(o, "type"), *exp = "";
	size_t tlen = 0;
	if (type) {
		exp = meta_of(o, "expedition");
		exp = exp ? exp : "";
		tlen = strlen(type);
	} else if (!strncmp(o->description, "type=", 5)) {
		type = o->description + 5;
		const char *sep = strstr(type, EXPEDITION_SEP);
		tlen = sep ? (size_t)(sep - type) : strlen(type);
		exp = sep ? sep + strlen(EXPEDITION_SEP) : "";
	} else {
		type = "";
	}
	const char *str[] = {o->name, type, exp, o->digest};
	const size_t len[] = {strlen(o->name), tlen, strlen(exp),
	                      strlen(o->digest)};
	const char *out[4];
	if (pack(4, str, len, out) < 0)
		return -1;
	*a = (struct shipc_artifact){.name = out[0], .type = out[1],
	                             .expedition = out[2], .digest = out[3],
	                             .size = o->size, .mtime_ns = o->mtime_ns};
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct shipc_artifact *)a)->name,
	              ((const struct shipc_artifact *)b)->name);
}

SHIPC_EXPORT int shipc_artifact_list(struct shipc *h,
                                     struct shipc_artifact **list, size_t *n)
{
	struct shipc_obj_info *objs = NULL;
	size_t no = 0, k = 0;
	if (!list || !n)
		return fail(h, EINVAL, "nowhere to put the list");
	if (shipc_obj_list(h, ARTIFACTS, 0, &objs, &no) < 0) {
		if (errno != ENOENT)
			return -1;
		objs = NULL;
		no = 0;
	}
	struct shipc_artifact *out = calloc(no ? no : 1, sizeof(*out));
	int r = out ? 0 : -1;
	for (size_t i = 0; i < no && r == 0; i++)
		if (!objs[i].link_bucket[0] && (r = artifact_of(&objs[i], &out[k])) == 0)
			k++;
	shipc_obj_list_free(objs, no);
	if (r < 0) {
		shipc_artifact_list_free(out, k);
		return fail(h, ENOMEM, "out of memory");
	}
	qsort(out, k, sizeof(*out), by_name);
	*list = out;
	*n = k;
	return 0;
}

SHIPC_EXPORT void shipc_artifact_list_free(struct shipc_artifact *list,
                                           size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free((char *)list[i].name);
	free(list);
}
