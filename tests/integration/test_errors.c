/* SPDX-License-Identifier: MIT */
/* Errors apps act on: the code says whether a retry can help, the text
 * keeps the server's own words. Publish failures, JetStream API errors,
 * and a daemon full of clients that still lets root in. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include "fixture.h"
#include "raw.h"
#include "shipc.h"
#include "shipd.h"

/* What shipd.c defines, for the daemon modules linked in to call
 * js_code() directly. */
struct config *conf;
struct shipd_stats stats;
struct event_base *base;
uint64_t now_ms(void)
{
	return 0;
}
uint64_t start_ms(void)
{
	return 0;
}
int shipd_reload(char ***applied, size_t *n_applied, char ***restart,
                 size_t *n_restart, char *err, size_t errlen)
{
	return -1;
}

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

static void assert_error(Ship__ServerFrame *r, Ship__Code code,
                         const char *words)
{
	ck_assert_msg(r->code == code, "code %d, not %d: %s", r->code, code,
	              r->error);
	ck_assert_msg(strstr(r->error, words), "'%s' does not say '%s'",
	              r->error, words);
	ship__server_frame__free_unpacked(r, NULL);
}

static Ship__ServerFrame *emit(const char *prefix, const char *stream,
                               const char *payload)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Emit e = SHIP__EMIT__INIT;
	e.event_type = "errors.test";
	e.payload_json = (char *)payload;
	if (prefix)
		e.prefix = (char *)prefix;
	if (stream)
		e.stream = (char *)stream;
	f.body_case = SHIP__CLIENT_FRAME__BODY_EMIT;
	f.emit = &e;
	return ask(&f);
}

/* A JSON string of about n bytes. */
static char *big_json(size_t n)
{
	char *s = malloc(n + 3);
	ck_assert_ptr_nonnull(s);
	s[0] = '"';
	memset(s + 1, 'x', n);
	s[n + 1] = '"';
	s[n + 2] = '\0';
	return s;
}

/* ---- publish failures ---- */

/* shipd declares SHIP_EVENTS once linked: wait until an emit is stored. */
static void wait_events_stream(void)
{
	for (int i = 0; i < 500; i++) {
		Ship__ServerFrame *r = emit(NULL, NULL, "0");
		bool ok = r->code == SHIP__CODE__OK;
		ship__server_frame__free_unpacked(r, NULL);
		if (ok)
			return;
		fx_sleep_ms(20);
	}
	ck_abort_msg("SHIP_EVENTS never took an emit");
}

START_TEST(emit_over_max_payload)
{
	wait_events_stream();
	/* Under shipd's own JSON limit, over the server's 1 MiB. */
	char *payload = big_json(1048500);
	Ship__ServerFrame *r = emit(NULL, NULL, payload);
	free(payload);
	ck_assert_msg(r->code == SHIP__CODE__INVALID_ARGUMENT, "code %d: %s",
	              r->code, r->error);
	ck_assert_ptr_nonnull(strstr(r->error, "1048576")); /* the limit */
	ck_assert_ptr_nonnull(strstr(r->error, "bytes"));
	ck_assert_ptr_null(strstr(r->error, "not connected"));
	ship__server_frame__free_unpacked(r, NULL);
	/* Nothing broke: the next emit is stored. */
	r = emit(NULL, NULL, "1");
	ck_assert_int_eq(r->code, SHIP__CODE__OK);
	ship__server_frame__free_unpacked(r, NULL);
}
END_TEST

START_TEST(emit_near_max_payload)
{
	/* max_payload counts the headers (Nats-Msg-Id) too: around the
	 * limit every emit is stored or refused as too large, never taken
	 * for a lost connection, and the next one goes through. */
	wait_events_stream();
	for (size_t n = 1048576 - 400; n <= 1048576 - 100; n += 10) {
		char *payload = big_json(n);
		Ship__ServerFrame *r = emit(NULL, NULL, payload);
		free(payload);
		ck_assert_msg(r->code == SHIP__CODE__OK ||
		                      r->code == SHIP__CODE__INVALID_ARGUMENT,
		              "%zu: code %d: %s", n, r->code, r->error);
		ship__server_frame__free_unpacked(r, NULL);
		r = emit(NULL, NULL, "1");
		ck_assert_msg(r->code == SHIP__CODE__OK, "after %zu: %s", n,
		              r->error);
		ship__server_frame__free_unpacked(r, NULL);
	}
}
END_TEST

START_TEST(channel_send_over_max_payload)
{
	char *content = malloc(1048600);
	ck_assert_ptr_nonnull(content);
	memset(content, 'c', 1048599);
	content[1048599] = '\0';
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__ChannelSend s = SHIP__CHANNEL_SEND__INIT;
	s.channel = "errors";
	s.sender = "tester";
	s.content = content;
	f.body_case = SHIP__CLIENT_FRAME__BODY_CHANNEL_SEND;
	f.channel_send = &s;
	Ship__ServerFrame *r = ask(&f);
	free(content);
	assert_error(r, SHIP__CODE__INVALID_ARGUMENT, "1048576");
}
END_TEST

/* A stream that refuses new messages once full (shipd's StreamDeclare
 * has no discard policy, so it is made here, as another app would). */
static void add_discard_new(const char *name, const char *subject,
                            int64_t max_msgs, int64_t max_bytes)
{
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	jsStreamConfig cfg;
	jsErrCode jerr = 0;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, nd.url), NATS_OK);
	ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
	jsStreamConfig_Init(&cfg);
	cfg.Name = name;
	cfg.Subjects = &subject;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_MemoryStorage;
	cfg.Discard = js_DiscardNew;
	cfg.MaxMsgs = max_msgs;
	cfg.MaxBytes = max_bytes;
	ck_assert_int_eq(js_AddStream(NULL, js, &cfg, NULL, &jerr), NATS_OK);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}

START_TEST(emit_to_full_stream)
{
	add_discard_new("FULL", "full.>", 1, -1);
	Ship__ServerFrame *r = emit("full", "FULL", "1");
	ck_assert_msg(r->code == SHIP__CODE__OK, "%s", r->error);
	ship__server_frame__free_unpacked(r, NULL);
	/* JetStream's 10077: full, with discard new. Retry after room. */
	assert_error(emit("full", "FULL", "2"), SHIP__CODE__RESOURCE_EXHAUSTED,
	             "maximum messages exceeded");

	add_discard_new("FULLB", "fullb.>", -1, 800);
	char *payload = big_json(300);
	r = emit("fullb", "FULLB", payload);
	ck_assert_msg(r->code == SHIP__CODE__OK, "%s", r->error);
	ship__server_frame__free_unpacked(r, NULL);
	assert_error(emit("fullb", "FULLB", payload),
	             SHIP__CODE__RESOURCE_EXHAUSTED, "maximum bytes exceeded");
	free(payload);
}
END_TEST

/* ---- JetStream API errors ---- */

START_TEST(js_code_table)
{
	static const struct {
		int http, err_code;
		Ship__Code want;
	} cases[] = {
		{400, 10003, SHIP__CODE__INVALID_ARGUMENT},  /* bad request */
		{500, 10052, SHIP__CODE__INVALID_ARGUMENT},  /* bad config */
		{400, 10054, SHIP__CODE__INVALID_ARGUMENT},  /* message size */
		{404, 10059, SHIP__CODE__NOT_FOUND},         /* stream */
		{404, 10014, SHIP__CODE__NOT_FOUND},         /* consumer */
		{404, 0, SHIP__CODE__NOT_FOUND},
		{400, 10058, SHIP__CODE__ALREADY_EXISTS},    /* other config */
		{400, 10013, SHIP__CODE__ALREADY_EXISTS},    /* consumer name */
		{409, 0, SHIP__CODE__ALREADY_EXISTS},
		{400, 10071, SHIP__CODE__WRONG_REVISION},    /* last sequence */
		{400, 10164, SHIP__CODE__WRONG_REVISION},
		{503, 10023, SHIP__CODE__RESOURCE_EXHAUSTED}, /* resources */
		{400, 10026, SHIP__CODE__RESOURCE_EXHAUSTED}, /* consumers */
		{400, 10027, SHIP__CODE__RESOURCE_EXHAUSTED}, /* streams */
		{500, 10028, SHIP__CODE__RESOURCE_EXHAUSTED}, /* memory */
		{500, 10047, SHIP__CODE__RESOURCE_EXHAUSTED}, /* storage */
		{503, 10077, SHIP__CODE__RESOURCE_EXHAUSTED}, /* store full */
		{400, 10002, SHIP__CODE__RESOURCE_EXHAUSTED}, /* account */
		{503, 10076, SHIP__CODE__UNAVAILABLE},       /* not enabled */
		{503, 10008, SHIP__CODE__UNAVAILABLE},       /* cluster */
		{503, 0, SHIP__CODE__UNAVAILABLE},
		{408, 0, SHIP__CODE__TIMEOUT},
		{500, 10999, SHIP__CODE__INTERNAL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(js_code(cases[i].http, cases[i].err_code) ==
		                      cases[i].want,
		              "%d/%d gives %d, not %d", cases[i].http,
		              cases[i].err_code,
		              js_code(cases[i].http, cases[i].err_code),
		              cases[i].want);
}
END_TEST

/* StreamDeclare of a memory stream; replicas and max_bytes 0: defaults. */
static Ship__ServerFrame *declare_with(const char *name, const char *subject,
                                       uint32_t replicas, int64_t max_bytes)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__StreamDeclare d = SHIP__STREAM_DECLARE__INIT;
	char *subjects[] = {(char *)subject};
	d.name = (char *)name;
	d.subjects = subjects;
	d.n_subjects = 1;
	d.memory = true;
	d.replicas = replicas;
	d.max_bytes = max_bytes;
	f.body_case = SHIP__CLIENT_FRAME__BODY_STREAM_DECLARE;
	f.stream_declare = &d;
	return ask(&f);
}

static Ship__ServerFrame *declare(const char *name, const char *subject,
                                  uint32_t replicas)
{
	return declare_with(name, subject, replicas, 0);
}

START_TEST(declare_refused_by_server)
{
	/* The server checks the config (10052, sent as HTTP 500): nothing
	 * internal about it, the app asked for what cannot be. */
	assert_error(declare("TOOMANY", "toomany.>", 7),
	             SHIP__CODE__INVALID_ARGUMENT, "maximum replicas is 5");
	/* Subjects another stream holds (10065). */
	Ship__ServerFrame *r = declare("MINE", "mine.>", 0);
	ck_assert_int_eq(r->code, SHIP__CODE__OK);
	ship__server_frame__free_unpacked(r, NULL);
	assert_error(declare("THEIRS", "mine.>", 0),
	             SHIP__CODE__INVALID_ARGUMENT, "subjects overlap");
}
END_TEST

/* A server whose JetStream may keep little in memory. */
static void setup_small(void)
{
	static char conf_path[64];
	static const char *extra[] = {"-c", conf_path, NULL};
	signal(SIGPIPE, SIG_IGN);
	snprintf(conf_path, sizeof(conf_path), "/tmp/shiptest-js-%d.conf",
	         (int)getpid());
	FILE *f = fopen(conf_path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("jetstream {\n  max_memory_store: 1MB\n}\n", f);
	fclose(f);
	ck_assert_int_eq(natsd_start_args(&nd, 0, extra), 0);
	unlink(conf_path); /* read at start; a restart is not needed */
	ck_assert_int_eq(shipd_start(&sd, nd.url, NULL), 0);
	ck_assert(fx_wait_link(sd.sock, 10000));
}

static Ship__ServerFrame *declare_mem(const char *name, const char *subject,
                                      int64_t max_bytes)
{
	return declare_with(name, subject, 0, max_bytes);
}

START_TEST(server_out_of_memory_store)
{
	/* More than the server has: refused when declared (10028, sent
	 * as HTTP 500, once INTERNAL). */
	assert_error(declare_mem("HUGE", "huge.>", 8 << 20),
	             SHIP__CODE__RESOURCE_EXHAUSTED,
	             "insufficient memory resources");
	/* Or when the store fills up (10023, sent as HTTP 503, once
	 * UNAVAILABLE: an app would have waited for a NATS that is up). */
	Ship__ServerFrame *r = declare_mem("FILL", "fill.>", 0);
	ck_assert_msg(r->code == SHIP__CODE__OK, "%s", r->error);
	ship__server_frame__free_unpacked(r, NULL);
	char *payload = big_json(200000);
	for (int i = 0; i < 20; i++) {
		r = emit("fill", "FILL", payload);
		if (r->code != SHIP__CODE__OK)
			break;
		ship__server_frame__free_unpacked(r, NULL);
	}
	free(payload);
	assert_error(r, SHIP__CODE__RESOURCE_EXHAUSTED,
	             "insufficient resources");
}
END_TEST

static Ship__ServerFrame *subscribe_durable(int fd, uint64_t id,
                                            Ship__DeliverFrom from)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__EventSubscribe s = SHIP__EVENT_SUBSCRIBE__INIT;
	s.durable = "errors_durable";
	s.deliver = from;
	f.id = id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_EVENT_SUBSCRIBE;
	f.event_subscribe = &s;
	raw_frame(fd, &f);
	Ship__ServerFrame *r = raw_reply(fd, id);
	ck_assert_ptr_nonnull(r);
	return r;
}

START_TEST(durable_option_mismatch)
{
	wait_events_stream();
	/* The durable exists with deliver all; asking for it with deliver
	 * new resumes it: the start applies only when it is created (sent
	 * to JetStream it would be 10012 "... can not be updated"). */
	int fd = raw_open(sd.sock);
	Ship__ServerFrame *r =
		subscribe_durable(fd, 3, SHIP__DELIVER_FROM__DELIVER_ALL);
	ck_assert_msg(r->code == SHIP__CODE__OK, "%s", r->error);
	ship__server_frame__free_unpacked(r, NULL);
	close(fd);
	/* shipd may not have read the first connection's end yet: until it
	 * has, the durable is that one's (CONFLICT, "in use"). */
	for (int i = 0; i < 100; i++) {
		fd = raw_open(sd.sock);
		r = subscribe_durable(fd, 3, SHIP__DELIVER_FROM__DELIVER_NEW);
		if (r->code != SHIP__CODE__CONFLICT || !strstr(r->error, "in use"))
			break;
		ship__server_frame__free_unpacked(r, NULL);
		close(fd);
		fx_sleep_ms(20);
	}
	ck_assert_msg(r->code == SHIP__CODE__OK, "%s", r->error);
	ship__server_frame__free_unpacked(r, NULL);
	close(fd);
}
END_TEST

/* ---- a daemon full of clients ---- */

static char refusal[512];

static void keep_refusal(int level, const char *msg, void *arg)
{
	if (strstr(msg, "refused"))
		snprintf(refusal, sizeof(refusal), "%s", msg);
}

/* In a child as nobody: take the ordinary slots (max_clients - 1), check
 * the next is refused clearly, tell the parent, hold on until it is done. */
static int fill_as_nobody(int report, int hold, unsigned n)
{
	if (setgid(65534) < 0 || setuid(65534) < 0)
		return 3;
	shipc_set_log_handler(keep_refusal, NULL);
	struct shipc *h[8];
	for (unsigned i = 0; i < n; i++)
		if (!(h[i] = shipc_connect(sd.sock, "nobody")))
			return 4;
	if (shipc_connect(sd.sock, "one-too-many") || errno != ENOBUFS)
		return 5;
	if (write(report, refusal, strlen(refusal) + 1) < 0)
		return 6;
	char c;
	(void)!read(hold, &c, 1);
	for (unsigned i = 0; i < n; i++)
		shipc_close(h[i]);
	return 0;
}

static void setup_full(void)
{
	signal(SIGPIPE, SIG_IGN);
	static const char *const extra[] = {"-o", "max_clients=3", "-o",
	                                    "socket_mode=0666", NULL};
	ck_assert_int_eq(fx_up(&nd, &sd, extra), 0);
	ck_assert_int_eq(chmod(sd.dir, 0755), 0);
}

static bool contains_file(const char *path, const char *words)
{
	char buf[4096] = "";
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 && strstr(buf, words);
}

START_TEST(root_gets_the_last_slot)
{
	int report[2], hold[2];
	ck_assert_int_eq(pipe(report), 0);
	ck_assert_int_eq(pipe(hold), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(report[0]);
		close(hold[1]);
		_exit(fill_as_nobody(report[1], hold[0], 2));
	}
	close(report[1]);
	close(hold[0]);
	char msg[512] = "";
	ssize_t n = read(report[0], msg, sizeof(msg) - 1);
	if (n <= 0) {
		int status;
		waitpid(pid, &status, 0);
		ck_abort_msg("the child as nobody failed (%d)",
		             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
	/* The daemon's words reach the app, not just ENOBUFS. */
	ck_assert_msg(strstr(msg, "too many clients (2)"), "%s", msg);
	ck_assert_msg(strstr(msg, "kept for root"), "%s", msg);

	/* Root still gets in, and status works. */
	struct shipc *h = shipc_connect(sd.sock, "root");
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(h, &st), 0);
	ck_assert_uint_eq(st.clients, 3);

	/* Now it is full for everyone; shipctl says so in plain words. */
	const char *bin = getenv("SHIPCTL_BIN");
	ck_assert_ptr_nonnull(bin);
	char log[400];
	snprintf(log, sizeof(log), "%s/shipctl.log", nd.dir);
	char *argv[] = {(char *)bin, "-s", sd.sock, "status", NULL};
	pid_t ctl = fx_spawn(argv, log, NULL);
	ck_assert_int_gt(ctl, 0);
	ck_assert_int_eq(fx_wait_exit(ctl, 10000), 1);
	ck_assert_msg(contains_file(log, "shipd refused the connection: "
	                                 "too many clients (3)"),
	              "shipctl said something else (%s)", log);

	shipc_close(h);
	close(hold[1]);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	close(report[0]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("errors");
	TCase *unit = tcase_create("unit");
	tcase_add_test(unit, js_code_table);
	suite_add_tcase(s, unit);
	TCase *tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, emit_over_max_payload);
	tcase_add_test(tc, emit_near_max_payload);
	tcase_add_test(tc, channel_send_over_max_payload);
	tcase_add_test(tc, emit_to_full_stream);
	tcase_add_test(tc, declare_refused_by_server);
	tcase_add_test(tc, durable_option_mismatch);
	suite_add_tcase(s, tc);
	TCase *small = tcase_create("small");
	tcase_add_checked_fixture(small, setup_small, teardown);
	tcase_set_timeout(small, 60);
	tcase_add_test(small, server_out_of_memory_store);
	suite_add_tcase(s, small);
	TCase *full = tcase_create("full");
	tcase_add_checked_fixture(full, setup_full, teardown);
	tcase_set_timeout(full, 60);
	tcase_add_test(full, root_gets_the_last_slot);
	suite_add_tcase(s, full);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
