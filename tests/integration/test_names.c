/* SPDX-License-Identifier: MIT */
/* Names shipd puts into subjects and JSON: a long name is refused, never
 * cut to another one; an emit says which stream stored it; shipctl --json
 * prints what parses, whatever the ids and messages hold. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>

#include "fixture.h"
#include "raw.h"
#include "shipc.h"

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
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

/* n copies of c (static: one name at a time). */
static const char *name_of(char c, size_t n)
{
	static char buf[2][1024];
	static int which;
	char *s = buf[which ^= 1];
	ck_assert_uint_lt(n, sizeof(buf[0]));
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* Send f on a fresh connection and return shipd's answer to it. */
static Ship__ServerFrame *ask(Ship__ClientFrame *f)
{
	int fd = raw_open(sd.sock);
	f->id = 7;
	raw_frame(fd, f);
	Ship__ServerFrame *r = raw_reply(fd, 7);
	close(fd);
	ck_assert_ptr_nonnull(r);
	return r;
}

/* ---- KV buckets whose stream's API subjects outgrow a short buffer ---- */

static int bucket_create(struct shipc *h, const char *bucket,
                         uint32_t history)
{
	struct shipc_kv_config cfg = {.bucket = bucket, .history = history,
	                              .memory = 1};
	return shipc_kv_bucket_create(h, &cfg, NULL);
}

/* A bucket made by another app (as nats CLI would). */
static void other_app_bucket(const char *bucket, int64_t history)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	kvStore *kv = NULL;
	kvConfig cfg;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	kvConfig_Init(&cfg);
	cfg.Bucket = bucket;
	cfg.History = history;
	cfg.StorageType = js_MemoryStorage;
	ck_assert_int_eq(js_CreateKeyValue(&kv, js, &cfg), NATS_OK);
	kvStore_Destroy(kv);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}

START_TEST(kv_long_bucket_is_its_own)
{
	/* "STREAM.INFO.KV_<250>" was cut to "STREAM.INFO.KV_<240>": the
	 * shorter bucket's stream, taken for the longer one. */
	const char *shorter = name_of('n', 240), *longer = name_of('n', 250);
	other_app_bucket(shorter, 1);
	struct shipc *h = shipc_connect(sd.sock, "names");
	ck_assert_ptr_nonnull(h);
	int rc = bucket_create(h, longer, 5);
	char err[256] = "";
	shipc_last_error(h, err, sizeof(err));
	ck_assert_msg(rc == 0, "create of a 250-character bucket: %s (%s)",
	              strerror(errno), err);
	struct shipc_kv_status st;
	ck_assert_int_eq(shipc_kv_bucket_info(h, longer, &st), 0);
	ck_assert_uint_eq(st.history, 5);
	ck_assert_int_eq(shipc_kv_bucket_info(h, shorter, &st), 0);
	ck_assert_uint_eq(st.history, 1);
	/* Each bucket keeps its own keys. */
	ck_assert_int_eq(shipc_kv_put(h, longer, "k", "long", 4, NULL), 0);
	struct shipc_kv_entry *e = NULL;
	ck_assert_int_eq(shipc_kv_get(h, longer, "k", 0, &e), 0);
	ck_assert_str_eq(e->value, "long");
	shipc_kv_entry_free(e);
	ck_assert_int_eq(shipc_kv_get(h, shorter, "k", 0, &e), -1);
	ck_assert_int_eq(errno, ENOENT);
	shipc_close(h);
}
END_TEST

START_TEST(kv_bucket_past_stream_name_max)
{
	/* KV_ and 253 characters: 256, one more than a stream name may
	 * have. Refused as such, not matched with KV_<240>. */
	other_app_bucket(name_of('m', 240), 1);
	struct shipc *h = shipc_connect(sd.sock, "names");
	ck_assert_ptr_nonnull(h);
	ck_assert_int_eq(bucket_create(h, name_of('m', 253), 1), -1);
	char err[256] = "";
	shipc_last_error(h, err, sizeof(err));
	ck_assert_msg(errno == EINVAL, "%s (%s)", strerror(errno), err);
	ck_assert_msg(strstr(err, "255"), "'%s' does not give the limit", err);
	shipc_close(h);
}
END_TEST

/* ---- the stream an emit names ---- */

static Ship__ServerFrame *emit(const char *prefix, const char *stream,
                               const char *msg_id)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Emit e = SHIP__EMIT__INIT;
	e.event_type = "names.test";
	e.payload_json = "1";
	if (prefix)
		e.prefix = (char *)prefix;
	if (stream)
		e.stream = (char *)stream;
	if (msg_id)
		e.msg_id = (char *)msg_id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_EMIT;
	f.emit = &e;
	return ask(&f);
}

/* shipd declares SHIP_EVENTS once linked: wait until an emit is stored. */
static void wait_events_stream(void)
{
	for (int i = 0; i < 500; i++) {
		Ship__ServerFrame *r = emit(NULL, NULL, NULL);
		bool ok = r->code == SHIP__CODE__OK;
		ship__server_frame__free_unpacked(r, NULL);
		if (ok)
			return;
		fx_sleep_ms(20);
	}
	ck_abort_msg("SHIP_EVENTS never took an emit");
}

START_TEST(emit_reply_names_storing_stream)
{
	wait_events_stream();
	struct shipc *h = shipc_connect(sd.sock, "names");
	ck_assert_ptr_nonnull(h);
	const char *subjects[] = {"other.>"};
	struct shipc_stream_decl d = {.name = "OTHER", .subjects = subjects,
	                              .n_subjects = 1, .memory = 1};
	ck_assert_int_eq(shipc_stream_declare(h, &d), 0);
	shipc_close(h);
	/* No stream named: the server picks it by subject. */
	Ship__ServerFrame *r = emit("other", NULL, NULL);
	ck_assert_msg(r->code == SHIP__CODE__OK, "%s", r->error);
	ck_assert_int_eq(r->body_case, SHIP__SERVER_FRAME__BODY_EMITTED);
	ck_assert_str_eq(r->emitted->stream, "OTHER");
	ship__server_frame__free_unpacked(r, NULL);
	r = emit(NULL, NULL, NULL);
	ck_assert_int_eq(r->code, SHIP__CODE__OK);
	ck_assert_str_eq(r->emitted->stream, "SHIP_EVENTS");
	ship__server_frame__free_unpacked(r, NULL);
}
END_TEST

/* ---- shipctl --json ---- */

/* Run shipctl with args after "-s <sock> --json"; its output (stdout and
 * stderr) goes to out. Returns its exit status. */
static int shipctl(const char *out, const char *const *args)
{
	const char *bin = getenv("SHIPCTL_BIN");
	ck_assert_ptr_nonnull(bin);
	char *argv[16] = {(char *)bin, "-s", sd.sock, "--json"};
	int n = 4;
	for (int i = 0; args[i] && n < 15; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	unlink(out);
	pid_t pid = fx_spawn(argv, out, NULL);
	ck_assert_int_gt(pid, 0);
	return fx_wait_exit(pid, 20000);
}

/* Each line of path as JSON; returns the number of lines (objects in
 * objs, owned by the caller). */
static size_t json_lines(const char *path, json_t **objs, size_t max)
{
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	char line[8192];
	size_t n = 0;
	while (fgets(line, sizeof(line), f)) {
		json_error_t jerr;
		json_t *j = json_loads(line, 0, &jerr);
		ck_assert_msg(j, "not JSON: %s (%s)", line, jerr.text);
		ck_assert_uint_lt(n, max);
		objs[n++] = j;
	}
	fclose(f);
	return n;
}

START_TEST(shipctl_emit_json_escapes_id)
{
	wait_events_stream();
	char out[400];
	snprintf(out, sizeof(out), "%s/emit.out", nd.dir);
	const char *id = "q\"uote\\back";
	const char *args[] = {"events", "emit", "names.ctl", "{}", "--id", id,
	                      NULL};
	ck_assert_int_eq(shipctl(out, args), 0);
	json_t *lines[4];
	ck_assert_uint_eq(json_lines(out, lines, 4), 1);
	ck_assert_str_eq(json_string_value(json_object_get(lines[0], "msg_id")),
	                 id);
	ck_assert(json_integer_value(json_object_get(lines[0], "seq")) > 0);
	json_decref(lines[0]);
}
END_TEST

/* Store data on subject in whatever stream holds it, as another app
 * would (no envelope), and wait for the stream's ack. */
static void store_raw(const char *subject, const char *data, size_t len)
{
	natsConnection *nc = NULL;
	natsMsg *ack = NULL;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_Request(&ack, nc, subject, data,
	                                        (int)len, 5000),
	                 NATS_OK);
	ck_assert_ptr_null(strstr(natsMsg_GetData(ack), "error"));
	natsMsg_Destroy(ack);
	natsConnection_Destroy(nc);
}

START_TEST(shipctl_tail_json_any_message)
{
	wait_events_stream();
	/* Not JSON, a quote, a backslash, a line break and bytes that are
	 * not UTF-8; then an envelope written over two lines. */
	static const char junk[] = "not \"json\" \\ at\nall \xff\xfe";
	store_raw("ship.events.junk.one", junk, sizeof(junk) - 1);
	static const char env[] =
		"{\"event_type\":\"junk.two\",\n\"timestamp\":\"2024-01-01T00:00:"
		"00+00:00\",\"source\":\"s\",\"payload\":{\"a\":\n1},"
		"\"correlation_id\":\"c\",\"version\":\"1.0\"}";
	store_raw("ship.events.junk.two", env, sizeof(env) - 1);
	char out[400];
	snprintf(out, sizeof(out), "%s/tail.out", nd.dir);
	const char *args[] = {"events", "tail", "junk.>", "--all", "-c", "2",
	                      NULL};
	ck_assert_int_eq(shipctl(out, args), 0);
	json_t *lines[4];
	ck_assert_uint_eq(json_lines(out, lines, 4), 2);
	/* The junk as a string, what is not UTF-8 replaced. */
	ck_assert(json_is_true(json_object_get(lines[0], "raw")));
	ck_assert_str_eq(json_string_value(json_object_get(lines[0], "subject")),
	                 "ship.events.junk.one");
	ck_assert_str_eq(json_string_value(json_object_get(lines[0], "data")),
	                 "not \"json\" \\ at\nall \xef\xbf\xbd\xef\xbf\xbd");
	/* The envelope as stored, on its own line. */
	ck_assert_str_eq(
		json_string_value(json_object_get(lines[1], "event_type")),
		"junk.two");
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_object_get(lines[1], "payload"), "a")),
	                 1);
	json_decref(lines[0]);
	json_decref(lines[1]);
}
END_TEST

/* ---- a JetStream that names its consumer oddly ---- */

/* Played by the test on a server without JetStream: every API subject
 * shipd asks on is kept. */
static struct {
	pthread_mutex_t lock;
	char *subjects[256];
	size_t n;
} seen = {.lock = PTHREAD_MUTEX_INITIALIZER};

#define FAKE_CONSUMER_NAME_LEN 600

static void fake_js(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                    void *closure)
{
	const char *subject = natsMsg_GetSubject(msg);
	pthread_mutex_lock(&seen.lock);
	if (seen.n < 256)
		seen.subjects[seen.n++] = strdup(subject);
	pthread_mutex_unlock(&seen.lock);
	const char *reply = natsMsg_GetReply(msg);
	if (!strcmp(subject, "$JS.API.CONSUMER.CREATE.FAKE")) {
		/* A name that no API subject shipd builds could hold. */
		json_t *j = json_pack(
			"{s:s, s:s, s:s, s:{s:s}}", "type",
			"io.nats.jetstream.api.v1.consumer_create_response",
			"stream_name", "FAKE", "name",
			name_of('e', FAKE_CONSUMER_NAME_LEN), "config",
			"ack_policy", "explicit");
		char *text = json_dumps(j, JSON_COMPACT);
		natsConnection_PublishString(nc, reply, text);
		free(text);
		json_decref(j);
	} else if (reply && *reply) {
		natsConnection_PublishString(
			nc, reply,
			"{\"error\":{\"code\":503,\"err_code\":10039,"
			"\"description\":\"JetStream not enabled for account\"}}");
	}
	natsMsg_Destroy(msg);
}

static natsConnection *fake_nc;
static natsSubscription *fake_sub;

static void setup_fake(void)
{
	/* The fixture's nats-server, with JetStream off again. */
	static const char *const no_js[] = {"-js=false", NULL};
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(natsd_start_args(&nd, 0, no_js), 0);
	ck_assert_int_eq(natsConnection_ConnectTo(&fake_nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_Subscribe(&fake_sub, fake_nc, "$JS.API.>",
	                                          fake_js, NULL),
	                 NATS_OK);
	ck_assert_int_eq(natsConnection_Flush(fake_nc), NATS_OK);
	ck_assert_int_eq(shipd_start(&sd, nd.url, NULL), 0);
	ck_assert(fx_wait_link(sd.sock, 10000));
}

static void teardown_fake(void)
{
	natsSubscription_Destroy(fake_sub);
	natsConnection_Destroy(fake_nc);
	teardown();
	pthread_mutex_lock(&seen.lock);
	for (size_t i = 0; i < seen.n; i++)
		free(seen.subjects[i]);
	seen.n = 0;
	pthread_mutex_unlock(&seen.lock);
}

START_TEST(consumer_name_never_cut)
{
	int fd = raw_open(sd.sock);
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__EventSubscribe s = SHIP__EVENT_SUBSCRIBE__INIT;
	s.stream = "FAKE";
	s.credit = 8;
	f.id = 5;
	f.body_case = SHIP__CLIENT_FRAME__BODY_EVENT_SUBSCRIBE;
	f.event_subscribe = &s;
	raw_frame(fd, &f);
	Ship__ServerFrame *r = raw_reply(fd, 5);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(r->code == SHIP__CODE__INTERNAL, "code %d: %s", r->code,
	              r->error);
	ck_assert_msg(strstr(r->error, "no consumer name"), "%s", r->error);
	ship__server_frame__free_unpacked(r, NULL);
	/* Time for a pull, and for the delete of an ephemeral once its
	 * app is gone. */
	fx_sleep_ms(300);
	close(fd);
	fx_sleep_ms(300);
	pthread_mutex_lock(&seen.lock);
	bool created = false;
	for (size_t i = 0; i < seen.n; i++) {
		const char *subj = seen.subjects[i];
		created |= !strcmp(subj, "$JS.API.CONSUMER.CREATE.FAKE");
		/* Any subject naming a consumer of FAKE is cut. */
		ck_assert_msg(strncmp(subj, "$JS.API.CONSUMER.MSG.NEXT.FAKE.",
		                      31) != 0 &&
		                      strncmp(subj,
		                              "$JS.API.CONSUMER.DELETE.FAKE.",
		                              29) != 0,
		              "shipd sent %.80s... (%zu characters)", subj,
		              strlen(subj));
	}
	pthread_mutex_unlock(&seen.lock);
	ck_assert(created);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("names");
	TCase *tc = tcase_create("names");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, kv_long_bucket_is_its_own);
	tcase_add_test(tc, kv_bucket_past_stream_name_max);
	tcase_add_test(tc, emit_reply_names_storing_stream);
	tcase_add_test(tc, shipctl_emit_json_escapes_id);
	tcase_add_test(tc, shipctl_tail_json_any_message);
	suite_add_tcase(s, tc);
	TCase *fake = tcase_create("fake");
	tcase_add_checked_fixture(fake, setup_fake, teardown_fake);
	tcase_set_timeout(fake, 60);
	tcase_add_test(fake, consumer_name_never_cut);
	suite_add_tcase(s, fake);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
