/* SPDX-License-Identifier: MIT */
/* The Object Store through shipd against a real nats-server -js: buckets,
 * streamed puts and gets from memory, fds and files, deletes, overwrites,
 * corruption, a failing source, shipd's memory while 256 MiB pass, and
 * metadata updates, links and watches. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>

#include "fixture.h"
#include "ipc.h"
#include "shipc.h"

#define CHUNK 131072
#define RSS_BOUND_KIB (64 * 1024)

static struct natsd nd;
static struct shipdp sd;

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_up(&nd, &sd, NULL), 0);
}

static void teardown(void)
{
	int rc = fx_down(&nd, &sd);
	nats_CloseAndWait(2000);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

static struct shipc *conn(void)
{
	struct shipc *h = shipc_connect(sd.sock, "test_obj");
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	for (int i = 0; i < 200; i++) {
		if (shipc_status(h, &st) == 0 && st.link == SHIPC_LINK_CONNECTED)
			break;
		fx_sleep_ms(25);
	}
	return h;
}

static const char *why(struct shipc *h)
{
	static char buf[256];
	return shipc_last_error(h, buf, sizeof(buf));
}

static void bucket(struct shipc *h, const char *name)
{
	struct shipc_obj_bucket_config c = {.bucket = name};
	ck_assert_msg(shipc_obj_bucket_create(h, &c, NULL) == 0, "create %s: %s",
	              name, why(h));
}

static uint8_t *random_bytes(size_t n, uint64_t seed)
{
	uint8_t *p = malloc(n ? n : 1);
	ck_assert_ptr_nonnull(p);
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
	return p;
}

static void digest_of(const void *p, size_t n, char out[64])
{
	struct ipc_sha256 s;
	uint8_t sum[IPC_SHA256_LEN];
	ipc_sha256_init(&s);
	ipc_sha256_update(&s, p, n);
	ipc_sha256_final(&s, sum);
	memcpy(out, "SHA-256=", 8);
	ck_assert_uint_eq(ipc_base64url(sum, sizeof(sum), out + 8, 56), 44);
}

static void check_info(const struct shipc_obj_info *o, const char *b,
                       const char *name, const void *data, size_t n)
{
	char want[64];
	digest_of(data, n, want);
	ck_assert_str_eq(o->bucket, b);
	ck_assert_str_eq(o->name, name);
	ck_assert_uint_eq(o->size, n);
	ck_assert_uint_eq(o->chunks, (n + CHUNK - 1) / CHUNK);
	ck_assert_uint_eq(strlen(o->digest), 52);
	ck_assert_int_eq(o->digest[51], '=');
	ck_assert_str_eq(o->digest, want);
	ck_assert_int_eq(o->deleted, 0);
	ck_assert_uint_gt(strlen(o->nuid), 0);
	ck_assert_uint_gt(o->mtime_ns, 1600000000ull * 1000000000ull);
}

static int mem_fd(const void *data, size_t n)
{
	int fd = memfd_create("obj", MFD_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, n), (ssize_t)n);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static void expect_fd(int fd, const void *data, size_t n)
{
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_size, (off_t)n);
	uint8_t *got = malloc(n ? n : 1);
	ck_assert_int_eq(pread(fd, got, n, 0), (ssize_t)n);
	ck_assert(memcmp(got, data, n) == 0);
	free(got);
}

static uint64_t msgs_in(const char *bucket_name)
{
	natsConnection *nc;
	jsCtx *js;
	jsStreamInfo *si = NULL;
	char stream[128];
	snprintf(stream, sizeof(stream), "OBJ_%s", bucket_name);
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	ck_assert_int_eq(js_GetStreamInfo(&si, js, stream, NULL, NULL), NATS_OK);
	uint64_t n = si->State.Msgs;
	jsStreamInfo_Destroy(si);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return n;
}

struct msgs_arg {
	const char *bucket;
	uint64_t want;
};

static bool msgs_are(void *arg)
{
	struct msgs_arg *a = arg;
	return msgs_in(a->bucket) == a->want;
}

/* ---- buckets ---- */

START_TEST(bucket_lifecycle)
{
	struct shipc *h = conn();
	struct shipc_obj_bucket_config c = {.bucket = "maps",
	                                    .description = "robot maps",
	                                    .ttl_ms = 3600000,
	                                    .max_bytes = 64 << 20};
	struct shipc_obj_bucket_status st;
	ck_assert_msg(shipc_obj_bucket_create(h, &c, &st) == 0, "%s", why(h));
	ck_assert_str_eq(st.bucket, "maps");
	ck_assert_str_eq(st.description, "robot maps");
	ck_assert_uint_eq(st.ttl_ms, 3600000);
	ck_assert_int_eq(st.max_bytes, 64 << 20);
	ck_assert_int_eq(st.memory, 0);
	ck_assert_int_eq(st.sealed, 0);
	/* Again with the same settings: accepted; with others: refused. */
	ck_assert_int_eq(shipc_obj_bucket_create(h, &c, NULL), 0);
	c.ttl_ms = 1000;
	ck_assert_int_eq(shipc_obj_bucket_create(h, &c, NULL), -1);
	ck_assert_int_eq(errno, EEXIST);
	struct shipc_obj_bucket_config m = {.bucket = "ram", .memory = 1};
	ck_assert_int_eq(shipc_obj_bucket_create(h, &m, &st), 0);
	ck_assert_int_eq(st.memory, 1);
	ck_assert_uint_eq(st.replicas, 1);

	struct shipc_obj_bucket_status *list;
	size_t n;
	ck_assert_int_eq(shipc_obj_bucket_list(h, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	bool maps = false, ram = false;
	for (size_t i = 0; i < n; i++) {
		maps |= !strcmp(list[i].bucket, "maps");
		ram |= !strcmp(list[i].bucket, "ram");
	}
	ck_assert(maps && ram);
	shipc_obj_bucket_list_free(list);

	ck_assert_int_eq(shipc_obj_put_mem(h, "maps", "a", "x", 1, NULL, NULL), 0);
	ck_assert_int_eq(shipc_obj_bucket_status(h, "maps", &st), 0);
	ck_assert_uint_gt(st.size, 0);
	ck_assert_int_eq(shipc_obj_bucket_seal(h, "maps"), 0);
	ck_assert_int_eq(shipc_obj_bucket_status(h, "maps", &st), 0);
	ck_assert_int_eq(st.sealed, 1);
	ck_assert_int_eq(shipc_obj_put_mem(h, "maps", "b", "y", 1, NULL, NULL),
	                 -1);
	ck_assert_int_eq(shipc_obj_delete(h, "maps", "a"), -1);
	/* Still readable. */
	void *d;
	size_t len;
	ck_assert_int_eq(shipc_obj_get_mem(h, "maps", "a", &d, &len, 10, NULL), 0);
	ck_assert_uint_eq(len, 1);
	free(d);

	ck_assert_int_eq(shipc_obj_bucket_delete(h, "maps"), 0);
	ck_assert_int_eq(shipc_obj_bucket_status(h, "maps", &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_obj_bucket_delete(h, "ram"), 0);
	ck_assert_int_eq(shipc_obj_bucket_list(h, &list, &n), 0);
	ck_assert_uint_eq(n, 0);
	shipc_obj_bucket_list_free(list);
	ck_assert_int_eq(shipc_obj_bucket_create(
				 h, &(struct shipc_obj_bucket_config){.bucket = "a.b"},
				 NULL),
	                 -1);
	ck_assert_int_eq(errno, EINVAL);
	shipc_close(h);
}
END_TEST

/* ---- round trips ---- */

static const size_t sizes[] = {0,         1,         CHUNK,
                               CHUNK + 1, 3 * CHUNK + 5, 5 << 20};

struct prog {
	uint64_t calls, last, total;
	bool backwards;
};

static void on_progress(uint64_t done, uint64_t total, void *arg)
{
	struct prog *p = arg;
	p->backwards |= done < p->last;
	p->calls++;
	p->last = done;
	p->total = total;
}

START_TEST(round_trip_sizes)
{
	struct shipc *h = conn();
	bucket(h, "rt");
	size_t n = sizes[_i];
	char name[64];
	snprintf(name, sizeof(name), "obj-%zu", n);
	uint8_t *data = random_bytes(n, n + 7);
	struct shipc_header hdrs[] = {{"Content-Type", "application/x-map"},
	                              {"X-Multi", "1"},
	                              {"X-Multi", "2"}};
	struct shipc_header meta[] = {{"robot", "r2"}, {"floor", "3"}};
	struct prog pp = {0};
	struct shipc_obj_put_opts o = {.description = "a map",
	                               .headers = hdrs,
	                               .n_headers = 3,
	                               .metadata = meta,
	                               .n_metadata = 2,
	                               .progress = on_progress,
	                               .progress_arg = &pp};
	struct shipc_obj_info *info = NULL;

	/* From memory. */
	ck_assert_msg(shipc_obj_put_mem(h, "rt", name, data, n, &o, &info) == 0,
	              "put %zu: %s", n, why(h));
	check_info(info, "rt", name, data, n);
	ck_assert_str_eq(info->description, "a map");
	ck_assert_uint_eq(info->n_headers, 3);
	ck_assert_uint_eq(info->n_metadata, 2);
	ck_assert_uint_eq(info->max_chunk_size, CHUNK);
	shipc_obj_info_free(info);
	ck_assert(!pp.backwards);
	ck_assert_uint_eq(pp.last, n);
	ck_assert_uint_le(pp.calls, n / 65536 + 2);

	info = NULL;
	ck_assert_int_eq(shipc_obj_info(h, "rt", name, 0, &info), 0);
	check_info(info, "rt", name, data, n);
	bool ct = false, m1 = false, m2 = false, robot = false, floor = false;
	for (size_t i = 0; i < info->n_headers; i++) {
		const struct shipc_header *x = &info->headers[i];
		ct |= !strcmp(x->key, "Content-Type") &&
		      !strcmp(x->value, "application/x-map");
		m1 |= !strcmp(x->key, "X-Multi") && !strcmp(x->value, "1");
		m2 |= !strcmp(x->key, "X-Multi") && !strcmp(x->value, "2");
	}
	for (size_t i = 0; i < info->n_metadata; i++) {
		const struct shipc_header *x = &info->metadata[i];
		robot |= !strcmp(x->key, "robot") && !strcmp(x->value, "r2");
		floor |= !strcmp(x->key, "floor") && !strcmp(x->value, "3");
	}
	ck_assert(ct && m1 && m2 && robot && floor);
	shipc_obj_info_free(info);

	void *got;
	size_t len;
	info = NULL;
	ck_assert_msg(shipc_obj_get_mem(h, "rt", name, &got, &len, n + 1, &info) ==
	                      0,
	              "get %zu: %s", n, why(h));
	ck_assert_uint_eq(len, n);
	ck_assert(memcmp(got, data, n) == 0);
	check_info(info, "rt", name, data, n);
	shipc_obj_info_free(info);
	free(got);

	/* From an fd, to an fd. */
	int in = mem_fd(data, n);
	info = NULL;
	ck_assert_msg(shipc_obj_put_fd(h, "rt", "fd", in, NULL, &info) == 0,
	              "put_fd: %s", why(h));
	check_info(info, "rt", "fd", data, n);
	ck_assert_str_eq(info->description, "");
	shipc_obj_info_free(info);
	close(in);
	int out = memfd_create("out", MFD_CLOEXEC);
	pp = (struct prog){0};
	struct shipc_obj_get_opts go = {.credit = 2, .progress = on_progress,
	                                .progress_arg = &pp};
	ck_assert_msg(shipc_obj_get_fd(h, "rt", "fd", out, &go, NULL) == 0,
	              "get_fd: %s", why(h));
	expect_fd(out, data, n);
	close(out);
	ck_assert_uint_eq(pp.last, n);
	if (n)
		ck_assert_uint_eq(pp.total, n);

	/* From a file, to a file. */
	char dir[] = "/tmp/test_obj-XXXXXX", src[300], dst[300];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(src, sizeof(src), "%s/src", dir);
	snprintf(dst, sizeof(dst), "%s/dst", dir);
	int fd = open(src, O_WRONLY | O_CREAT, 0644);
	ck_assert_int_eq(write(fd, data, n), (ssize_t)n);
	close(fd);
	ck_assert_int_eq(shipc_obj_put_file(h, "rt", "file", src, NULL, NULL), 0);
	ck_assert_msg(shipc_obj_get_file(h, "rt", "file", dst, NULL, NULL) == 0,
	              "get_file: %s", why(h));
	fd = open(dst, O_RDONLY);
	expect_fd(fd, data, n);
	close(fd);
	unlink(src);
	unlink(dst);
	ck_assert_int_eq(rmdir(dir), 0); /* no .part file left */

	free(data);
	shipc_close(h);
}
END_TEST

START_TEST(small_chunks_and_limits)
{
	struct shipc *h = conn();
	bucket(h, "small");
	size_t n = 100000;
	uint8_t *data = random_bytes(n, 3);
	struct shipc_obj_put_opts o = {.chunk_size = 1000};
	struct shipc_obj_info *info;
	ck_assert_msg(shipc_obj_put_mem(h, "small", "x", data, n, &o, &info) == 0,
	              "%s", why(h));
	ck_assert_uint_eq(info->chunks, 100);
	ck_assert_uint_eq(info->max_chunk_size, 1000);
	shipc_obj_info_free(info);
	void *got;
	size_t len;
	ck_assert_int_eq(shipc_obj_get_mem(h, "small", "x", &got, &len, n, NULL),
	                 0);
	ck_assert(len == n && memcmp(got, data, n) == 0);
	free(got);
	/* Past max: EFBIG, and the handle goes on. */
	got = NULL;
	ck_assert_int_eq(
		shipc_obj_get_mem(h, "small", "x", &got, &len, n - 1, NULL), -1);
	ck_assert_int_eq(errno, EFBIG);
	ck_assert_int_eq(shipc_obj_info(h, "small", "x", 0, NULL), 0);
	/* A sink that fails: its error, the get cancelled at once. */
	int ro = open("/dev/null", O_RDONLY);
	uint64_t t0 = fx_now_ms();
	ck_assert_int_eq(shipc_obj_get_fd(h, "small", "x", ro, NULL, NULL), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_uint_lt(fx_now_ms() - t0, 3000);
	close(ro);
	ck_assert_int_eq(shipc_obj_get_mem(h, "small", "x", &got, &len, n, NULL),
	                 0);
	free(got);
	/* Missing things. */
	ck_assert_msg(shipc_obj_get_mem(h, "small", "nope", &got, &len, 10,
	                                NULL) == -1 &&
	                      errno == ENOENT,
	              "missing object: %s", why(h));
	ck_assert_int_eq(shipc_obj_put_mem(h, "small", "", "x", 1, NULL, NULL),
	                 -1);
	ck_assert_int_eq(errno, EINVAL);
	/* A chunk size over what NATS takes: refused, nothing stored. */
	struct shipc_obj_put_opts huge = {.chunk_size = 8 << 20};
	ck_assert_int_eq(shipc_obj_put_mem(h, "small", "huge", data, n, &huge,
	                                   NULL),
	                 -1);
	ck_assert_msg(errno == EINVAL || errno == EMSGSIZE, "errno %d: %s", errno,
	              why(h));
	ck_assert_int_eq(shipc_obj_info(h, "small", "huge", 1, NULL), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_msg(shipc_obj_get_mem(h, "nobucket", "x", &got, &len, 10,
	                                NULL) == -1 &&
	                      errno == ENOENT,
	              "missing bucket: errno %d: %s", errno, why(h));
	free(data);
	shipc_close(h);
}
END_TEST

/* ---- list, delete, overwrite ---- */

START_TEST(list_delete_overwrite)
{
	struct shipc *h = conn();
	bucket(h, "ld");
	uint8_t *big = random_bytes(3 * CHUNK + 5, 11);
	ck_assert_int_eq(shipc_obj_put_mem(h, "ld", "a", big, 3 * CHUNK + 5,
	                                   NULL, NULL),
	                 0);
	ck_assert_int_eq(shipc_obj_put_mem(h, "ld", "b", "bb", 2, NULL, NULL), 0);
	ck_assert_int_eq(shipc_obj_put_mem(h, "ld", "c d/é", "c", 1, NULL, NULL),
	                 0);
	struct shipc_obj_info *list;
	size_t n;
	ck_assert_int_eq(shipc_obj_list(h, "ld", 0, &list, &n), 0);
	ck_assert_uint_eq(n, 3);
	shipc_obj_list_free(list, n);

	/* Overwrite: the old chunks go, 1 chunk + 1 meta remain for a. */
	ck_assert_uint_eq(msgs_in("ld"), (4 + 1) + (1 + 1) + (1 + 1));
	ck_assert_int_eq(shipc_obj_put_mem(h, "ld", "a", "new", 3, NULL, NULL), 0);
	struct msgs_arg ma = {"ld", 2 + 2 + 2};
	ck_assert_msg(fx_wait(msgs_are, &ma, 5000), "%llu messages",
	              (unsigned long long)msgs_in("ld"));
	void *got;
	size_t len;
	ck_assert_int_eq(shipc_obj_get_mem(h, "ld", "a", &got, &len, 10, NULL), 0);
	ck_assert(len == 3 && !memcmp(got, "new", 3));
	free(got);

	/* Delete: a marker, chunks purged, get says ENOENT. */
	ck_assert_int_eq(shipc_obj_delete(h, "ld", "a"), 0);
	ma.want = 1 + 2 + 2;
	ck_assert(fx_wait(msgs_are, &ma, 5000));
	ck_assert_int_eq(shipc_obj_get_mem(h, "ld", "a", &got, &len, 10, NULL),
	                 -1);
	ck_assert_int_eq(errno, ENOENT);
	struct shipc_obj_info *info;
	ck_assert_int_eq(shipc_obj_info(h, "ld", "a", 0, &info), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_obj_info(h, "ld", "a", 1, &info), 0);
	ck_assert_int_eq(info->deleted, 1);
	ck_assert_uint_eq(info->size, 0);
	ck_assert_str_eq(info->digest, "");
	shipc_obj_info_free(info);

	ck_assert_int_eq(shipc_obj_list(h, "ld", 0, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	for (size_t i = 0; i < n; i++)
		ck_assert_str_ne(list[i].name, "a");
	shipc_obj_list_free(list, n);
	ck_assert_int_eq(shipc_obj_list(h, "ld", 1, &list, &n), 0);
	ck_assert_uint_eq(n, 3);
	bool seen = false;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i].name, "a"))
			seen = list[i].deleted;
	ck_assert(seen);
	shipc_obj_list_free(list, n);
	ck_assert_int_eq(shipc_obj_delete(h, "ld", "never"), -1);
	ck_assert_int_eq(errno, ENOENT);
	free(big);
	shipc_close(h);
}
END_TEST

/* ---- corruption ---- */

START_TEST(corrupt_digest_fails_get)
{
	struct shipc *h = conn();
	bucket(h, "bad");
	size_t n = 2 * CHUNK + 17;
	uint8_t *data = random_bytes(n, 5);
	ck_assert_int_eq(shipc_obj_put_mem(h, "bad", "victim", data, n, NULL,
	                                   NULL),
	                 0);
	/* Rewrite the meta with a wrong digest, as a broken writer would. */
	char enc[64], subj[128];
	ck_assert_uint_gt(ipc_base64url("victim", 6, enc, sizeof(enc)), 0);
	snprintf(subj, sizeof(subj), "$O.bad.M.%s", enc);
	natsConnection *nc;
	jsCtx *js;
	natsMsg *last = NULL, *m = NULL;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	ck_assert_int_eq(js_GetLastMsg(&last, js, "OBJ_bad", subj, NULL, NULL),
	                 NATS_OK);
	json_t *j = json_loadb(natsMsg_GetData(last),
	                       (size_t)natsMsg_GetDataLength(last), 0, NULL);
	ck_assert_ptr_nonnull(j);
	char wrong[64];
	digest_of("not it", 6, wrong);
	json_object_set_new(j, "digest", json_string(wrong));
	char *s = json_dumps(j, JSON_COMPACT);
	ck_assert_int_eq(natsMsg_Create(&m, subj, NULL, s, (int)strlen(s)),
	                 NATS_OK);
	ck_assert_int_eq(natsMsgHeader_Set(m, "Nats-Rollup", "sub"), NATS_OK);
	ck_assert_int_eq(js_PublishMsg(NULL, js, m, NULL, NULL), NATS_OK);
	natsMsg_Destroy(m);
	natsMsg_Destroy(last);
	free(s);
	json_decref(j);

	void *got = NULL;
	size_t len;
	ck_assert_int_eq(shipc_obj_get_mem(h, "bad", "victim", &got, &len, n + 1,
	                                   NULL),
	                 -1);
	ck_assert_int_eq(errno, EBADMSG);
	ck_assert_ptr_nonnull(strstr(why(h), "victim"));
	int out = memfd_create("out", MFD_CLOEXEC);
	ck_assert_int_eq(shipc_obj_get_fd(h, "bad", "victim", out, NULL, NULL),
	                 -1);
	ck_assert_int_eq(errno, EBADMSG);
	close(out);
	char dir[] = "/tmp/test_obj-XXXXXX", dst[300];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(dst, sizeof(dst), "%s/dst", dir);
	ck_assert_int_eq(shipc_obj_get_file(h, "bad", "victim", dst, NULL, NULL),
	                 -1);
	ck_assert_int_eq(errno, EBADMSG);
	ck_assert_int_eq(rmdir(dir), 0); /* neither dst nor a .part */

	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	free(data);
	shipc_close(h);
}
END_TEST

/* ---- a source that fails midway ---- */

struct feeder {
	int fd;
	const uint8_t *data;
	size_t n;
};

static void *feed(void *arg)
{
	struct feeder *f = arg;
	size_t off = 0;
	while (off < f->n) {
		ssize_t w = write(f->fd, f->data + off, f->n - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	return NULL;
}

START_TEST(failed_read_leaves_previous)
{
	struct shipc *h = conn();
	bucket(h, "keep");
	size_t n = CHUNK + 9;
	uint8_t *v1 = random_bytes(n, 21);
	struct shipc_obj_info *before;
	ck_assert_int_eq(shipc_obj_put_mem(h, "keep", "doc", v1, n, NULL,
	                                   &before),
	                 0);
	uint64_t msgs = msgs_in("keep");

	/* 300 KiB then silence: the read times out (EAGAIN) mid-object. */
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct timeval tv = {.tv_usec = 500000};
	setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	uint8_t *v2 = random_bytes(300 * 1024, 22);
	struct feeder f = {sv[1], v2, 300 * 1024};
	pthread_t t;
	pthread_create(&t, NULL, feed, &f);
	ck_assert_int_eq(shipc_obj_put_fd(h, "keep", "doc", sv[0], NULL, NULL),
	                 -1);
	ck_assert_int_eq(errno, EAGAIN);
	pthread_join(t, NULL);
	close(sv[0]);
	close(sv[1]);

	struct shipc_obj_info *after;
	ck_assert_int_eq(shipc_obj_info(h, "keep", "doc", 0, &after), 0);
	ck_assert_str_eq(after->nuid, before->nuid);
	ck_assert_str_eq(after->digest, before->digest);
	void *got;
	size_t len;
	ck_assert_int_eq(shipc_obj_get_mem(h, "keep", "doc", &got, &len, n, NULL),
	                 0);
	ck_assert(len == n && !memcmp(got, v1, n));
	free(got);
	/* No orphaned chunks once shipd cleaned up. */
	struct msgs_arg ma = {"keep", msgs};
	ck_assert_msg(fx_wait(msgs_are, &ma, 5000), "%llu messages, was %llu",
	              (unsigned long long)msgs_in("keep"),
	              (unsigned long long)msgs);
	/* And a name never stored stays absent. */
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	f.fd = sv[1];
	pthread_create(&t, NULL, feed, &f);
	ck_assert_int_eq(shipc_obj_put_fd(h, "keep", "fresh", sv[0], NULL, NULL),
	                 -1);
	pthread_join(t, NULL);
	close(sv[0]);
	close(sv[1]);
	ck_assert_int_eq(shipc_obj_info(h, "keep", "fresh", 1, NULL), -1);
	ck_assert_int_eq(errno, ENOENT);
	shipc_obj_info_free(before);
	shipc_obj_info_free(after);
	free(v1);
	free(v2);
	shipc_close(h);
}
END_TEST

/* ---- memory: 256 MiB through a pipe each way ---- */

#define BIG (256u << 20)

struct pump {
	int fd;
	uint64_t bytes;
	struct ipc_sha256 sha;
};

static void *produce(void *arg)
{
	struct pump *p = arg;
	uint8_t *buf = random_bytes(1 << 20, 99);
	for (unsigned i = 0; i < BIG >> 20; i++) {
		buf[0] = (uint8_t)i; /* no two MiB alike */
		ipc_sha256_update(&p->sha, buf, 1 << 20);
		size_t off = 0;
		while (off < 1u << 20) {
			ssize_t w = write(p->fd, buf + off, (1u << 20) - off);
			if (w <= 0)
				goto out;
			off += (size_t)w;
		}
		p->bytes += 1 << 20;
	}
out:
	close(p->fd);
	free(buf);
	return NULL;
}

static void *consume(void *arg)
{
	struct pump *p = arg;
	uint8_t *buf = malloc(1 << 16);
	ssize_t r;
	while ((r = read(p->fd, buf, 1 << 16)) > 0) {
		ipc_sha256_update(&p->sha, buf, (size_t)r);
		p->bytes += (uint64_t)r;
	}
	free(buf);
	return NULL;
}

static volatile bool sampling;
static long max_rss;

static void *sample(void *arg)
{
	(void)arg;
	while (sampling) {
		long k = fx_rss_kib(sd.pid);
		if (k > max_rss)
			max_rss = k;
		fx_sleep_ms(20);
	}
	return NULL;
}

START_TEST(big_object_bounded_memory)
{
	struct shipc *h = conn();
	bucket(h, "big");
	max_rss = 0;
	sampling = true;
	pthread_t st;
	pthread_create(&st, NULL, sample, NULL);

	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	struct pump in = {.fd = p[1]};
	ipc_sha256_init(&in.sha);
	pthread_t t;
	pthread_create(&t, NULL, produce, &in);
	struct shipc_obj_info *info;
	ck_assert_msg(shipc_obj_put_fd(h, "big", "blob", p[0], NULL, &info) == 0,
	              "put: %s", why(h));
	pthread_join(t, NULL);
	close(p[0]);
	ck_assert_uint_eq(info->size, BIG);
	ck_assert_uint_eq(info->chunks, BIG / CHUNK);
	uint8_t sum[IPC_SHA256_LEN];
	char want[64] = "SHA-256=";
	ipc_sha256_final(&in.sha, sum);
	ipc_base64url(sum, sizeof(sum), want + 8, 56);
	ck_assert_str_eq(info->digest, want);
	shipc_obj_info_free(info);

	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	struct pump out = {.fd = p[0]};
	ipc_sha256_init(&out.sha);
	pthread_create(&t, NULL, consume, &out);
	ck_assert_msg(shipc_obj_get_fd(h, "big", "blob", p[1], NULL, NULL) == 0,
	              "get: %s", why(h));
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	ck_assert_uint_eq(out.bytes, BIG);
	char got[64] = "SHA-256=";
	ipc_sha256_final(&out.sha, sum);
	ipc_base64url(sum, sizeof(sum), got + 8, 56);
	ck_assert_str_eq(got, want);

	sampling = false;
	pthread_join(st, NULL);
	fprintf(stderr, "shipd peak RSS while moving 256 MiB: %ld KiB\n",
	        max_rss);
	ck_assert_int_gt(max_rss, 0);
#ifndef SHIP_SANITIZED
	ck_assert_msg(max_rss < RSS_BOUND_KIB, "shipd RSS %ld KiB", max_rss);
#endif
	shipc_close(h);
}
END_TEST

/* ---- threads and a lost shipd ---- */

struct dispatcher {
	struct shipc *h;
	volatile bool stop;
};

static void *dispatch_loop(void *arg)
{
	struct dispatcher *d = arg;
	while (!d->stop)
		shipc_dispatch(d->h, 20);
	return NULL;
}

/* Another thread dispatching the handle meanwhile: pushes reach the
 * transfer from it. */
START_TEST(transfers_beside_a_dispatch_thread)
{
	struct shipc *h = conn();
	bucket(h, "mt");
	struct dispatcher d = {.h = h};
	pthread_t t;
	pthread_create(&t, NULL, dispatch_loop, &d);
	for (unsigned i = 0; i < 8; i++) {
		size_t n = (size_t)(i * 300007) % (2 << 20);
		uint8_t *data = random_bytes(n, i);
		ck_assert_msg(shipc_obj_put_mem(h, "mt", "x", data, n, NULL, NULL) ==
		                      0,
		              "put: %s", why(h));
		void *got;
		size_t len;
		ck_assert_msg(shipc_obj_get_mem(h, "mt", "x", &got, &len, n,
		                                NULL) == 0,
		              "get: %s", why(h));
		ck_assert(len == n && !memcmp(got, data, n));
		free(got);
		if (n > 10) {
			ck_assert_int_eq(shipc_obj_get_mem(h, "mt", "x", &got, &len,
			                                   n / 2, NULL),
			                 -1);
			ck_assert_int_eq(errno, EFBIG);
		}
		free(data);
	}
	d.stop = true;
	pthread_join(t, NULL);
	shipc_close(h);
}
END_TEST

static void *slow_drain(void *arg)
{
	struct pump *p = arg;
	uint8_t buf[16384];
	ssize_t r;
	while ((r = read(p->fd, buf, sizeof(buf))) > 0) {
		p->bytes += (uint64_t)r;
		fx_sleep_ms(5);
	}
	return NULL;
}

/* shipd killed mid-get and mid-put: ECONNRESET, and the handle goes on
 * with the next shipd. */
START_TEST(shipd_killed_mid_transfer)
{
	struct shipc *h = conn();
	bucket(h, "kill");
	size_t n = 5 << 20;
	uint8_t *data = random_bytes(n, 8);
	ck_assert_int_eq(shipc_obj_put_mem(h, "kill", "x", data, n, NULL, NULL),
	                 0);
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	struct pump out = {.fd = p[0]};
	pthread_t t;
	pthread_create(&t, NULL, slow_drain, &out);
	pid_t pid = fork();
	if (pid == 0) {
		usleep(300000);
		kill(sd.pid, SIGKILL);
		_exit(0);
	}
	ck_assert_int_eq(shipc_obj_get_fd(h, "kill", "x", p[1], NULL, NULL), -1);
	ck_assert_int_eq(errno, ECONNRESET);
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	ck_assert_uint_lt(out.bytes, n);
	waitpid(pid, NULL, 0);
	shipd_kill(&sd);
	ck_assert_int_eq(shipd_restart(&sd, nd.url, NULL), 0);
	/* The same handle, once reconnected. */
	void *got;
	size_t len;
	int r = -1;
	for (int i = 0; i < 200 && r < 0; i++) {
		r = shipc_obj_get_mem(h, "kill", "x", &got, &len, n, NULL);
		if (r < 0)
			fx_sleep_ms(50);
	}
	ck_assert_msg(r == 0, "get after restart: %s", why(h));
	ck_assert(len == n && !memcmp(got, data, n));
	free(got);
	free(data);
	shipc_close(h);
}
END_TEST

static void *feed_and_close(void *arg)
{
	struct feeder *f = arg;
	feed(f);
	close(f->fd);
	return NULL;
}

/* Non-blocking fds either way: the library waits for them. */
START_TEST(nonblocking_fds)
{
	struct shipc *h = conn();
	bucket(h, "nb");
	size_t n = (1 << 20) + 3;
	uint8_t *data = random_bytes(n, 31);
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	int fl = fcntl(p[1], F_GETFL);
	fcntl(p[1], F_SETFL, fl & ~O_NONBLOCK);
	struct feeder f = {p[1], data, n};
	pthread_t t;
	struct shipc_obj_info *info;
	pthread_create(&t, NULL, feed_and_close, &f);
	ck_assert_msg(shipc_obj_put_fd(h, "nb", "x", p[0], NULL, &info) == 0,
	              "put: %s", why(h));
	pthread_join(t, NULL);
	close(p[0]);
	check_info(info, "nb", "x", data, n);
	shipc_obj_info_free(info);

	ck_assert_int_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	fl = fcntl(p[0], F_GETFL);
	fcntl(p[0], F_SETFL, fl & ~O_NONBLOCK);
	struct pump out = {.fd = p[0]};
	pthread_create(&t, NULL, slow_drain, &out);
	ck_assert_msg(shipc_obj_get_fd(h, "nb", "x", p[1], NULL, NULL) == 0,
	              "get: %s", why(h));
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	ck_assert_uint_eq(out.bytes, n);
	free(data);
	shipc_close(h);
}
END_TEST

/* ---- shipctl ---- */

/* Run a shell command line with $C as shipctl; its exit status. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[2048], line[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	const char *bin = getenv("SHIPCTL_BIN");
	snprintf(line, sizeof(line), "C='%s'; export SHIP_SOCKET='%s'; %s",
	         bin ? bin : "shipctl", sd.sock, cmd);
	int st = system(line);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(shipctl_obj)
{
	char dir[] = "/tmp/test_obj-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(sh("$C obj add ctl --description 'ctl test' --ttl 2h "
	                    "--max-bytes 64M >/dev/null"),
	                 0);
	ck_assert_int_eq(sh("$C --json obj info ctl | grep -q "
	                    "'\"ttl_ms\":7200000,\"max_bytes\":67108864'"),
	                 0);
	ck_assert_int_eq(sh("head -c 3000000 /dev/urandom > %s/in", dir), 0);
	/* Not a terminal: no progress bar, nothing on stderr. */
	ck_assert_int_eq(sh("$C obj put ctl %s/in --name big 2>%s/err | grep -q "
	                    "'^big 3000000 SHA-256='",
	                    dir, dir),
	                 0);
	ck_assert_int_eq(sh("test ! -s %s/err", dir), 0);
	ck_assert_int_eq(sh("$C obj get ctl big 2>%s/err | cmp - %s/in", dir,
	                    dir),
	                 0);
	ck_assert_int_eq(sh("test ! -s %s/err", dir), 0);
	ck_assert_int_eq(sh("$C obj get ctl big -o %s/out && cmp %s/in %s/out",
	                    dir, dir, dir),
	                 0);
	ck_assert_int_eq(sh("printf hi | $C obj put ctl - >/dev/null 2>&1"), 2);
	ck_assert_int_eq(sh("printf hi | $C --json obj put ctl - --name hi "
	                    "--description d --chunk-size 1 | grep -q "
	                    "'\"size\":2,\"chunks\":2,\"max_chunk_size\":1,'"),
	                 0);
	ck_assert_int_eq(sh("test \"$($C obj get ctl hi)\" = hi"), 0);
	ck_assert_int_eq(sh("$C obj ls ctl | grep -c . | grep -qx 2"), 0);
	ck_assert_int_eq(sh("$C obj rm ctl hi"), 0);
	ck_assert_int_eq(sh("$C obj get ctl hi >/dev/null 2>&1"), 1);
	ck_assert_int_eq(sh("$C obj ls ctl | grep -c . | grep -qx 1"), 0);
	ck_assert_int_eq(sh("$C obj ls ctl --all | grep -q 'hi .*deleted'"), 0);
	ck_assert_int_eq(sh("$C --json obj ls | grep -q '\"bucket\":\"ctl\"'"),
	                 0);
	ck_assert_int_eq(sh("$C obj seal ctl"), 0);
	ck_assert_int_eq(sh("$C obj put ctl %s/in >/dev/null 2>&1", dir), 1);
	ck_assert_int_eq(sh("$C obj info ctl | grep -q sealed"), 0);
	ck_assert_int_eq(sh("$C obj rm-bucket ctl"), 0);
	ck_assert_int_eq(sh("$C obj info ctl >/dev/null 2>&1"), 1);
	ck_assert_int_eq(sh("$C obj add >/dev/null 2>&1"), 2);
	ck_assert_int_eq(sh("rm -r %s", dir), 0);
}
END_TEST

/* ---- metadata, links, watch ---- */

static struct shipc_obj_info *info_of(struct shipc *h, const char *b,
                                      const char *name)
{
	struct shipc_obj_info *o = NULL;
	ck_assert_msg(shipc_obj_info(h, b, name, 0, &o) == 0, "info %s: %s",
	              name, why(h));
	return o;
}

static const char *meta_value(const struct shipc_obj_info *o, const char *k)
{
	for (size_t i = 0; i < o->n_metadata; i++)
		if (!strcmp(o->metadata[i].key, k))
			return o->metadata[i].value;
	return NULL;
}

START_TEST(update_meta_and_rename)
{
	struct shipc *h = conn();
	bucket(h, "um");
	size_t n = 3 * CHUNK + 5;
	uint8_t *data = random_bytes(n, 7);
	struct shipc_header md1[] = {{"k", "v"}}, hd[] = {{"X-A", "1"}};
	struct shipc_obj_put_opts po = {.description = "first",
	                                .metadata = md1,
	                                .n_metadata = 1};
	ck_assert_int_eq(shipc_obj_put_mem(h, "um", "a", data, n, &po, NULL), 0);
	struct shipc_obj_info *before = info_of(h, "um", "a");

	/* Rename with new fields: the data, digest and nuid go along. */
	struct shipc_header md2[] = {{"x", "y"}, {"z", "w"}};
	struct shipc_obj_meta m = {.new_name = "b",
	                           .description = "second",
	                           .headers = hd,
	                           .n_headers = 1,
	                           .metadata = md2,
	                           .n_metadata = 2};
	ck_assert_msg(shipc_obj_update_meta(h, "um", "a", &m) == 0, "%s",
	              why(h));
	ck_assert_int_eq(shipc_obj_info(h, "um", "a", 1, NULL), -1);
	ck_assert_int_eq(errno, ENOENT);
	struct shipc_obj_info *o = info_of(h, "um", "b");
	ck_assert_str_eq(o->name, "b");
	ck_assert_str_eq(o->description, "second");
	ck_assert_str_eq(o->nuid, before->nuid);
	ck_assert_str_eq(o->digest, before->digest);
	ck_assert_uint_eq(o->size, n);
	ck_assert_uint_eq(o->n_metadata, 2);
	ck_assert_str_eq(meta_value(o, "x"), "y");
	ck_assert_ptr_null(meta_value(o, "k"));
	ck_assert_uint_eq(o->n_headers, 1);
	ck_assert_str_eq(o->headers[0].key, "X-A");
	ck_assert_uint_eq(o->max_chunk_size, CHUNK);
	shipc_obj_info_free(o);
	void *got;
	size_t len;
	ck_assert_msg(shipc_obj_get_mem(h, "um", "b", &got, &len, n, NULL) == 0,
	              "get: %s", why(h));
	ck_assert_uint_eq(len, n);
	ck_assert(memcmp(got, data, n) == 0);
	free(got);

	/* Only the fields, no rename: NULL clears them. */
	struct shipc_obj_meta m2 = {.description = "third"};
	ck_assert_int_eq(shipc_obj_update_meta(h, "um", "b", &m2), 0);
	o = info_of(h, "um", "b");
	ck_assert_str_eq(o->description, "third");
	ck_assert_uint_eq(o->n_metadata, 0);
	ck_assert_uint_eq(o->n_headers, 0);
	ck_assert_str_eq(o->digest, before->digest);
	shipc_obj_info_free(o);

	/* Onto a live object: refused; onto a deleted one: allowed. */
	ck_assert_int_eq(shipc_obj_put_mem(h, "um", "c", "c", 1, NULL, NULL), 0);
	struct shipc_obj_meta to_c = {.new_name = "c"};
	ck_assert_int_eq(shipc_obj_update_meta(h, "um", "b", &to_c), -1);
	ck_assert_int_eq(errno, EEXIST);
	ck_assert_int_eq(shipc_obj_delete(h, "um", "c"), 0);
	ck_assert_int_eq(shipc_obj_update_meta(h, "um", "c", &m2), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_obj_update_meta(h, "um", "nope", &m2), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_msg(shipc_obj_update_meta(h, "um", "b", &to_c) == 0, "%s",
	              why(h));
	ck_assert_msg(shipc_obj_get_mem(h, "um", "c", &got, &len, n, NULL) == 0,
	              "get: %s", why(h));
	ck_assert_uint_eq(len, n);
	free(got);
	/* The old name's meta is purged: one object left. */
	struct shipc_obj_info *list;
	size_t k;
	ck_assert_int_eq(shipc_obj_list(h, "um", 1, &list, &k), 0);
	ck_assert_uint_eq(k, 1);
	ck_assert_str_eq(list[0].name, "c");
	shipc_obj_list_free(list, k);
	ck_assert_int_eq(shipc_obj_update_meta(h, "nob", "c", &m2), -1);
	ck_assert_int_eq(errno, ENOENT);
	shipc_obj_info_free(before);
	free(data);
	shipc_close(h);
}
END_TEST

START_TEST(links)
{
	struct shipc *h = conn();
	bucket(h, "l1");
	bucket(h, "l2");
	uint8_t *data = random_bytes(CHUNK + 1, 9);
	ck_assert_int_eq(
		shipc_obj_put_mem(h, "l2", "t", data, CHUNK + 1, NULL, NULL), 0);
	ck_assert_int_eq(shipc_obj_put_mem(h, "l1", "own", "o", 1, NULL, NULL),
	                 0);

	struct shipc_obj_info *o = NULL;
	ck_assert_msg(shipc_obj_link(h, "l1", "ln", "l2", "t", &o) == 0, "%s",
	              why(h));
	ck_assert_str_eq(o->name, "ln");
	ck_assert_str_eq(o->bucket, "l1");
	ck_assert_str_eq(o->link_bucket, "l2");
	ck_assert_str_eq(o->link_name, "t");
	ck_assert_uint_eq(o->size, 0);
	ck_assert_uint_gt(strlen(o->nuid), 0);
	shipc_obj_info_free(o);
	void *got;
	size_t len;
	struct shipc_obj_info *gi = NULL;
	ck_assert_msg(shipc_obj_get_mem(h, "l1", "ln", &got, &len, 1 << 20,
	                                &gi) == 0,
	              "get through the link: %s", why(h));
	ck_assert_uint_eq(len, CHUNK + 1);
	ck_assert(memcmp(got, data, len) == 0);
	ck_assert_str_eq(gi->name, "t");
	shipc_obj_info_free(gi);
	free(got);

	/* A bucket link: shown, not readable. */
	ck_assert_int_eq(shipc_obj_link(h, "l1", "bl", "l2", NULL, NULL), 0);
	o = info_of(h, "l1", "bl");
	ck_assert_str_eq(o->link_bucket, "l2");
	ck_assert_str_eq(o->link_name, "");
	shipc_obj_info_free(o);
	ck_assert_int_eq(shipc_obj_get_mem(h, "l1", "bl", &got, &len, 10, NULL),
	                 -1);
	ck_assert_int_eq(errno, EINVAL);

	/* Over a live object: no; to a link: no; a link over a link or a
	 * deleted object: yes. */
	ck_assert_int_eq(shipc_obj_link(h, "l1", "own", "l2", "t", NULL), -1);
	ck_assert_int_eq(errno, EEXIST);
	ck_assert_int_eq(shipc_obj_link(h, "l1", "ln2", "l1", "ln", NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shipc_obj_link(h, "l1", "x", "l2", "missing", NULL), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_obj_link(h, "l1", "x", "nob", "t", NULL), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_obj_link(h, "l1", "x", "nob", NULL, NULL), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_obj_link(h, "l1", "ln", "l2", "t", NULL), 0);
	ck_assert_int_eq(shipc_obj_link(h, "l1", "bl", "l1", "own", NULL), 0);
	ck_assert_int_eq(shipc_obj_get_mem(h, "l1", "bl", &got, &len, 10, NULL),
	                 0);
	ck_assert_uint_eq(len, 1);
	free(got);
	ck_assert_int_eq(shipc_obj_delete(h, "l1", "own"), 0);
	ck_assert_int_eq(shipc_obj_link(h, "l1", "own", "l2", "t", NULL), 0);
	ck_assert_int_eq(shipc_obj_delete(h, "l2", "t"), 0);
	ck_assert_int_eq(shipc_obj_get_mem(h, "l1", "own", &got, &len, 10, NULL),
	                 -1);
	ck_assert_int_eq(errno, ENOENT);
	free(data);
	shipc_close(h);
}
END_TEST

#define WEV_MAX 32

struct wev {
	char names[WEV_MAX][64];
	int n;
	bool ended;
	int err;
};

/* Each object as its name ("-name" when deleted), "|" for the marker. */
static void on_obj(struct shipc *h, const struct shipc_obj_info *o, int err,
                   void *arg)
{
	(void)h;
	struct wev *w = arg;
	if (err) {
		ck_assert(!w->ended);
		w->ended = true;
		w->err = err;
		return;
	}
	ck_assert(!w->ended);
	ck_assert_int_lt(w->n, WEV_MAX);
	if (o)
		ck_assert_uint_gt(o->mtime_ns, 1600000000ull * 1000000000ull);
	snprintf(w->names[w->n++], 64, "%s%s", o && o->deleted ? "-" : "",
	         o ? o->name : "|");
}

/* Dispatch until w has n events (or ended), at most 10 s. */
static void pump(struct shipc *h, struct wev *w, int n)
{
	for (int i = 0; i < 200 && w->n < n && !w->ended; i++)
		shipc_dispatch(h, 50);
}

static void expect_events(struct wev *w, const char *const *want, int n)
{
	ck_assert_msg(w->n == n, "%d events, want %d", w->n, n);
	for (int i = 0; i < n; i++)
		ck_assert_str_eq(w->names[i], want[i]);
}

static void stop_watch(struct shipc *h, uint64_t id, struct wev *w)
{
	ck_assert_int_eq(shipc_obj_watch_stop(h, id), 0);
	for (int i = 0; i < 200 && !w->ended; i++)
		shipc_dispatch(h, 50);
	ck_assert(w->ended);
	ck_assert_int_eq(w->err, ECANCELED);
	ck_assert_int_eq(shipc_obj_watch_stop(h, id), -1);
	ck_assert_int_eq(errno, ENOENT);
}

START_TEST(watch)
{
	struct shipc *h = conn();
	bucket(h, "wb");
	ck_assert_int_eq(shipc_obj_watch(h, "nob", 0, on_obj, NULL), 0);
	ck_assert_int_eq(errno, ENOENT);

	/* An empty bucket: the marker at once. */
	struct wev w0 = {0};
	uint64_t id = shipc_obj_watch(h, "wb", 0, on_obj, &w0);
	ck_assert_msg(id != 0, "watch: %s", why(h));
	pump(h, &w0, 1);
	expect_events(&w0, (const char *const[]){"|"}, 1);
	stop_watch(h, id, &w0);

	ck_assert_int_eq(shipc_obj_put_mem(h, "wb", "a", "1", 1, NULL, NULL), 0);
	ck_assert_int_eq(shipc_obj_put_mem(h, "wb", "b", "22", 2, NULL, NULL),
	                 0);
	struct wev w = {0};
	id = shipc_obj_watch(h, "wb", 0, on_obj, &w);
	ck_assert_msg(id != 0, "watch: %s", why(h));
	pump(h, &w, 3);
	expect_events(&w, (const char *const[]){"a", "b", "|"}, 3);
	ck_assert_int_eq(shipc_obj_put_mem(h, "wb", "c", "3", 1, NULL, NULL), 0);
	pump(h, &w, 4);
	ck_assert_int_eq(shipc_obj_delete(h, "wb", "a"), 0);
	pump(h, &w, 5);
	expect_events(&w, (const char *const[]){"a", "b", "|", "c", "-a"}, 5);

	/* Beside it: deletes left out; then updates only. */
	struct wev wi = {0}, wu = {0};
	uint64_t idi = shipc_obj_watch(h, "wb", SHIPC_OBJ_WATCH_IGNORE_DELETES,
	                               on_obj, &wi);
	ck_assert_msg(idi != 0, "watch: %s", why(h));
	pump(h, &wi, 3);
	expect_events(&wi, (const char *const[]){"b", "c", "|"}, 3);
	uint64_t idu = shipc_obj_watch(h, "wb", SHIPC_OBJ_WATCH_UPDATES_ONLY,
	                               on_obj, &wu);
	ck_assert_msg(idu != 0, "watch: %s", why(h));
	ck_assert_int_eq(shipc_obj_delete(h, "wb", "b"), 0);
	ck_assert_int_eq(shipc_obj_put_mem(h, "wb", "d", "4", 1, NULL, NULL), 0);
	pump(h, &w, 7);
	pump(h, &wi, 4);
	pump(h, &wu, 2);
	expect_events(&w,
	              (const char *const[]){"a", "b", "|", "c", "-a", "-b", "d"},
	              7);
	expect_events(&wi, (const char *const[]){"b", "c", "|", "d"}, 4);
	expect_events(&wu, (const char *const[]){"-b", "d"}, 2);

	/* A rename shows as the new name (the old meta is purged, unseen)
	 * and a link as its own object. */
	struct shipc_obj_meta m = {.new_name = "e"};
	ck_assert_int_eq(shipc_obj_update_meta(h, "wb", "d", &m), 0);
	ck_assert_int_eq(shipc_obj_link(h, "wb", "l", "wb", "c", NULL), 0);
	pump(h, &wu, 4);
	expect_events(&wu, (const char *const[]){"-b", "d", "e", "l"}, 4);
	stop_watch(h, id, &w);
	stop_watch(h, idi, &wi);
	stop_watch(h, idu, &wu);

	/* Closing the handle ends a watch with ECANCELED too. */
	struct wev wc = {0};
	ck_assert_uint_ne(shipc_obj_watch(h, "wb", 0, on_obj, &wc), 0);
	shipc_close(h);
	ck_assert(wc.ended);
	ck_assert_int_eq(wc.err, ECANCELED);
}
END_TEST

START_TEST(shipctl_obj_edit_link_watch)
{
	char dir[] = "/tmp/test_obj-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(sh("$C obj add ed >/dev/null"), 0);
	ck_assert_int_eq(sh("printf hi | $C obj put ed - --name a "
	                    "--description keep >/dev/null"),
	                 0);
	ck_assert_int_eq(sh("$C obj edit ed a --name b --meta k=v"), 0);
	ck_assert_int_eq(sh("$C obj info ed a >/dev/null 2>&1"), 1);
	ck_assert_int_eq(sh("$C --json obj info ed b | grep -q "
	                    "'\"description\":\"keep\".*\"metadata\":{\"k\":\"v\"}'"),
	                 0);
	ck_assert_int_eq(sh("$C obj edit ed b --description new"), 0);
	ck_assert_int_eq(sh("$C --json obj info ed b | grep -q "
	                    "'\"description\":\"new\".*\"metadata\":{\"k\":\"v\"}'"),
	                 0);
	ck_assert_int_eq(sh("$C obj edit ed b --meta novalue >/dev/null 2>&1"), 2);
	ck_assert_int_eq(sh("$C obj link ed l ed b"), 0);
	ck_assert_int_eq(sh("test \"$($C obj get ed l)\" = hi"), 0);
	ck_assert_int_eq(sh("$C obj link ed b ed l >/dev/null 2>&1"), 1);
	ck_assert_int_eq(sh("$C --json obj link ed bl ed | grep -q "
	                    "'\"link\":{\"bucket\":\"ed\"}'"),
	                 0);
	ck_assert_int_eq(sh("timeout -s INT 2 $C obj watch ed --json > %s/w; "
	                    "test $? = 124",
	                    dir),
	                 0);
	ck_assert_int_eq(sh("grep -c . %s/w | grep -qx 4", dir), 0);
	ck_assert_int_eq(sh("sed -n 4p %s/w | grep -qx '{\"initial_done\":true}'",
	                    dir),
	                 0);
	ck_assert_int_eq(sh("timeout -s INT 2 $C obj watch ed --updates-only "
	                    "> %s/w; test -s %s/w",
	                    dir, dir),
	                 1);
	ck_assert_int_eq(sh("$C obj watch >/dev/null 2>&1"), 2);
	ck_assert_int_eq(sh("rm -r %s", dir), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("obj");
	TCase *tc = tcase_create("obj");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, bucket_lifecycle);
	tcase_add_loop_test(tc, round_trip_sizes, 0,
	                    (int)(sizeof(sizes) / sizeof(sizes[0])));
	tcase_add_test(tc, small_chunks_and_limits);
	tcase_add_test(tc, list_delete_overwrite);
	tcase_add_test(tc, corrupt_digest_fails_get);
	tcase_add_test(tc, failed_read_leaves_previous);
	tcase_add_test(tc, big_object_bounded_memory);
	tcase_add_test(tc, transfers_beside_a_dispatch_thread);
	tcase_add_test(tc, shipd_killed_mid_transfer);
	tcase_add_test(tc, nonblocking_fds);
	tcase_add_test(tc, shipctl_obj);
	tcase_add_test(tc, update_meta_and_rename);
	tcase_add_test(tc, links);
	tcase_add_test(tc, watch);
	tcase_add_test(tc, shipctl_obj_edit_link_watch);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
