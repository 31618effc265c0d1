/* SPDX-License-Identifier: MIT */
/* What no app reaches whatever its rules say: system subjects, shipd's
 * reply inbox, other apps' replies; the admin operations without a grant;
 * secrets in URLs. */
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

#include "fixture.h"
#include "shipc.h"

static struct natsd nd;
static struct shipdp sd;

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	static const char *const extra[] = {"-o", "socket_mode=0666", NULL};
	ck_assert_int_eq(fx_up(&nd, &sd, extra), 0);
	ck_assert_int_eq(chmod(sd.dir, 0755), 0);
}

static void teardown(void)
{
	ck_assert_int_eq(fx_down(&nd, &sd), 0);
}

struct seen {
	int n;
	int system;  /* on a system subject or an inbox */
	char last[256];
	char data[64];
};

static void seen_cb(struct shipc *h, const struct shipc_msg *m, int err,
                    void *arg)
{
	struct seen *s = arg;
	if (!m)
		return;
	s->n++;
	if (m->subject[0] == '$' || !strncmp(m->subject, "_INBOX.", 7))
		s->system++;
	snprintf(s->last, sizeof(s->last), "%s", m->subject);
	snprintf(s->data, sizeof(s->data), "%.*s", (int)m->len,
	         (const char *)m->data);
}

static void pump(struct shipc *h, int ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)ms;
	while (fx_now_ms() < end)
		shipc_dispatch(h, 20);
}

START_TEST(system_subjects_are_closed)
{
	/* Root, with no rules: every operation, but not these. */
	struct shipc *h = shipc_connect(sd.sock, "app");
	ck_assert_ptr_nonnull(h);
	struct seen s = {0};
	const char *pats[] = {"$JS.>",     "$KV.>",    "$O.>",   "$SRV.>",
	                      "$SYS.>",    "_INBOX.>", "_INBOX.*", "$JS.API.*",
	                      "$KV.b.key", "_INBOX"};
	for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++) {
		ck_assert_msg(shipc_subscribe(h, pats[i], NULL, 0, seen_cb, &s) ==
		                      0,
		              "subscribed to %s", pats[i]);
		ck_assert_int_eq(errno, EACCES);
	}
	struct shipc_msg m = {.subject = "$JS.API.STREAM.DELETE.SHIP_EVENTS",
	                      .data = "", .len = 0};
	ck_assert_int_eq(shipc_publish_msg(h, &m, SHIPC_PUB_CONFIRM), -1);
	ck_assert_int_eq(errno, EACCES);
	char buf[256];
	ck_assert_ptr_nonnull(strstr(shipc_last_error(h, buf, sizeof(buf)),
	                             "system subject"));
	struct shipc_msg *reply = NULL;
	ck_assert_int_eq(shipc_request(h, "$JS.API.INFO", "", 0, 1000, &reply),
	                 -1);
	ck_assert_int_eq(errno, EACCES);
	/* A reply subject there would make a responder write it. */
	struct shipc_msg r = {.subject = "svc.a", .reply = "$KV.b.k",
	                      .data = "x", .len = 1};
	ck_assert_int_eq(shipc_publish_msg(h, &r, SHIPC_PUB_CONFIRM), -1);
	ck_assert_int_eq(errno, EACCES);
	/* The stream is still there. */
	struct shipc_stream_info *list = NULL;
	size_t n = 0;
	ck_assert_int_eq(shipc_streams(h, &list, &n), 0);
	bool found = false;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i].name, "SHIP_EVENTS"))
			found = true;
	shipc_streams_free(list);
	ck_assert(found);
	shipc_close(h);
}
END_TEST

START_TEST(wildcards_never_deliver_system_subjects)
{
	struct shipc *spy = shipc_connect(sd.sock, "spy");
	struct shipc *app = shipc_connect(sd.sock, "app");
	ck_assert_ptr_nonnull(spy);
	ck_assert_ptr_nonnull(app);
	struct seen all = {0}, star = {0};
	ck_assert_uint_gt(shipc_subscribe(spy, ">", NULL, 0, seen_cb, &all), 0);
	ck_assert_uint_gt(shipc_subscribe(spy, "*.>", NULL, 0, seen_cb, &star),
	                  0);
	/* KV puts ($KV), JetStream API calls and acks ($JS, the inbox), an
	 * emit, and a request with its reply. */
	struct shipc_kv_config kc = {.bucket = "spied"};
	ck_assert_int_eq(shipc_kv_bucket_create(app, &kc, NULL), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(shipc_kv_put(app, "spied", "k", "secret", 6, NULL),
		                 0);
	struct shipc_emit e = {.event_type = "spied.thing", .source = "t",
	                       .payload_json = "{}"};
	ck_assert_int_eq(shipc_emit(app, &e, NULL), 0);
	ck_assert_int_eq(shipc_publish(app, "plain.subject", "p", 1), 0);
	ck_assert_int_eq(shipc_flush(app, 2000), 0);
	pump(spy, 500);
	ck_assert_int_eq(all.system, 0);
	ck_assert_int_eq(star.system, 0);
	/* What is an app's does arrive (the emit's subject too). */
	ck_assert_int_ge(all.n, 2);
	ck_assert_int_ge(star.n, 2);
	shipc_close(spy);
	shipc_close(app);
}
END_TEST

struct responder {
	char reply[256];
	int got;
};

static void respond_cb(struct shipc *h, const struct shipc_msg *m, int err,
                       void *arg)
{
	struct responder *r = arg;
	if (!m)
		return;
	r->got++;
	snprintf(r->reply, sizeof(r->reply), "%s", m->reply);
}

struct answer {
	int done;
	int err;
	char data[64];
};

static void answer_cb(struct shipc *h, const struct shipc_msg *reply, int err,
                      void *arg)
{
	struct answer *a = arg;
	a->done++;
	a->err = err;
	if (reply)
		snprintf(a->data, sizeof(a->data), "%.*s", (int)reply->len,
		         (const char *)reply->data);
}

START_TEST(replies_cannot_be_read_or_forged)
{
	struct shipc *asker = shipc_connect(sd.sock, "asker");
	struct shipc *svc = shipc_connect(sd.sock, "service");
	struct shipc *evil = shipc_connect(sd.sock, "evil");
	ck_assert_ptr_nonnull(asker);
	ck_assert_ptr_nonnull(svc);
	ck_assert_ptr_nonnull(evil);
	struct responder rs = {0};
	ck_assert_uint_gt(shipc_subscribe(svc, "svc.echo", NULL, 0, respond_cb,
	                                  &rs),
	                  0);
	struct seen spy = {0};
	ck_assert_uint_gt(shipc_subscribe(evil, ">", NULL, 0, seen_cb, &spy), 0);

	/* One request, answered: the service learns its reply subject. */
	struct shipc_msg q = {.subject = "svc.echo", .data = "q", .len = 1};
	struct answer a1 = {0};
	ck_assert_int_eq(shipc_request_async(asker, &q, 3000, answer_cb, &a1), 0);
	ck_assert_int_eq(shipc_flush(asker, 2000), 0);
	for (int i = 0; i < 100 && !rs.got; i++)
		shipc_dispatch(svc, 20);
	ck_assert_int_eq(rs.got, 1);
	char first[256];
	snprintf(first, sizeof(first), "%s", rs.reply);
	/* "<inbox>.<token>x<secret>" */
	char *x = strrchr(first, 'x');
	char *dot = strrchr(first, '.');
	ck_assert_ptr_nonnull(x);
	ck_assert_ptr_nonnull(dot);
	ck_assert(x > dot);
	struct shipc_msg ans = {.subject = first, .data = "genuine", .len = 7};
	ck_assert_int_eq(shipc_publish_msg(svc, &ans, SHIPC_PUB_CONFIRM), 0);
	for (int i = 0; i < 100 && !a1.done; i++)
		shipc_dispatch(asker, 20);
	ck_assert_int_eq(a1.err, 0);
	ck_assert_str_eq(a1.data, "genuine");

	/* The next request: the attacker knows the first reply subject and
	 * guesses the next token with the old secret, or keeps the token and
	 * changes the secret; neither reaches the asker. */
	struct answer a2 = {0};
	rs.got = 0;
	ck_assert_int_eq(shipc_request_async(asker, &q, 3000, answer_cb, &a2), 0);
	ck_assert_int_eq(shipc_flush(asker, 2000), 0);
	for (int i = 0; i < 100 && !rs.got; i++)
		shipc_dispatch(svc, 20);
	ck_assert_int_eq(rs.got, 1);
	unsigned long long tok = strtoull(dot + 1, NULL, 10);
	char guess[300];
	snprintf(guess, sizeof(guess), "%.*s.%llux%s", (int)(dot - first), first,
	         tok + 1, x + 1);
	struct shipc_msg forged = {.subject = guess, .data = "forged", .len = 6};
	ck_assert_int_eq(shipc_publish_msg(evil, &forged, SHIPC_PUB_CONFIRM), 0);
	snprintf(guess, sizeof(guess), "%.*s.%llux0000000000000000",
	         (int)(dot - first), first, tok + 1);
	ck_assert_int_eq(shipc_publish_msg(evil, &forged, SHIPC_PUB_CONFIRM), 0);
	pump(asker, 300);
	ck_assert_int_eq(a2.done, 0); /* nothing forged got through */
	ans.subject = rs.reply;
	ck_assert_int_eq(shipc_publish_msg(svc, &ans, SHIPC_PUB_CONFIRM), 0);
	for (int i = 0; i < 100 && !a2.done; i++)
		shipc_dispatch(asker, 20);
	ck_assert_int_eq(a2.err, 0);
	ck_assert_str_eq(a2.data, "genuine");

	/* The rest of the inbox is shipd's: the probe, consumers' inboxes. */
	char other[300];
	snprintf(other, sizeof(other), "%.*s.rtt", (int)(dot - first), first);
	struct shipc_msg rtt = {.subject = other, .data = "", .len = 0};
	ck_assert_int_eq(shipc_publish_msg(evil, &rtt, SHIPC_PUB_CONFIRM), -1);
	ck_assert_int_eq(errno, EACCES);
	snprintf(other, sizeof(other), "%.*s.m.1x0000000000000000",
	         (int)(dot - first), first);
	rtt.subject = other;
	ck_assert_int_eq(shipc_publish_msg(evil, &rtt, SHIPC_PUB_CONFIRM), -1);
	ck_assert_int_eq(errno, EACCES);

	/* And the spy on ">" saw the requests, never a reply. */
	pump(evil, 300);
	ck_assert_int_eq(spy.system, 0);
	ck_assert_int_ge(spy.n, 2);
	shipc_close(asker);
	shipc_close(svc);
	shipc_close(evil);
}
END_TEST

/* In a child as nobody: what an app without grants gets from the admin
 * operations. 0 if as expected. */
static int admin_as_nobody(void)
{
	if (setgid(65534) < 0 || setuid(65534) < 0)
		return 2;
	struct shipc *h = shipc_connect(sd.sock, "nobody");
	if (!h)
		return 3;
	char buf[256];
	if (shipc_reload(h, buf, sizeof(buf)) != -1 || errno != EACCES)
		return 4;
	struct shipc_client *list = NULL;
	size_t n = 0;
	if (shipc_clients(h, &list, &n) < 0)
		return 5;
	/* Root's connection is not shown: only its own user's. */
	for (size_t i = 0; i < n; i++)
		if (list[i].uid != 65534)
			return 6;
	if (n != 1)
		return 7;
	shipc_clients_free(list);
	/* Plain operations work (no rules: everything but admin). */
	if (shipc_publish(h, "nobody.x", "n", 1) < 0 || shipc_flush(h, 2000) < 0)
		return 8;
	shipc_close(h);
	return 0;
}

START_TEST(admin_needs_a_grant)
{
	/* Forked before this process has a handle (and its thread): a
	 * child of a threaded process may inherit a lock held. */
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(admin_as_nobody());
	int st = 0;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %d",
	              WEXITSTATUS(st));
	struct shipc *root = shipc_connect(sd.sock, "root");
	ck_assert_ptr_nonnull(root);
	/* Root sees everyone, with the identity read from the kernel. */
	struct shipc_client *list = NULL;
	size_t n = 0;
	ck_assert_int_eq(shipc_clients(root, &list, &n), 0);
	ck_assert_uint_ge(n, 1);
	shipc_clients_free(list);
	shipc_close(root);
}
END_TEST

static bool file_contains(const char *path, const char *what)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	char line[4096];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, what) != NULL;
	fclose(f);
	return found;
}

START_TEST(secrets_in_urls_stay_in_shipd)
{
	struct natsd n;
	struct shipdp s;
	ck_assert_int_eq(natsd_start(&n, 0), 0);
	char url[128];
	snprintf(url, sizeof(url), "nats://alice:s3cret@127.0.0.1:%d", n.port);
	const char *extra[] = {NULL};
	ck_assert_int_eq(shipd_start(&s, url, extra), 0);
	ck_assert(fx_wait_link(s.sock, 10000));
	struct shipc *h = shipc_connect(s.sock, "app");
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(h, &st), 0);
	ck_assert_ptr_null(strstr(st.server_url, "s3cret"));
	ck_assert_ptr_null(strstr(st.server_url, "alice"));
	ck_assert_ptr_nonnull(strstr(st.server_url, "127.0.0.1"));
	/* The link lost and back: errors and logs say where, not who. */
	natsd_stop(&n);
	fx_sleep_ms(500);
	ck_assert_int_eq(shipc_status(h, &st), 0);
	ck_assert_ptr_null(strstr(st.server_url, "s3cret"));
	ck_assert_ptr_null(strstr(st.last_error, "s3cret"));
	ck_assert_int_eq(natsd_restart(&n), 0);
	ck_assert(fx_wait_link(s.sock, 10000));
	shipc_close(h);
	ck_assert_int_eq(shipd_stop(&s), 0);
	ck_assert(file_contains(s.log, "127.0.0.1"));
	ck_assert(!file_contains(s.log, "s3cret"));
	shipd_cleanup(&s);
	natsd_cleanup(&n);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("access");
	TCase *tc = tcase_create("access");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, system_subjects_are_closed);
	tcase_add_test(tc, wildcards_never_deliver_system_subjects);
	tcase_add_test(tc, replies_cannot_be_read_or_forged);
	tcase_add_test(tc, admin_needs_a_grant);
	suite_add_tcase(s, tc);
	TCase *urls = tcase_create("urls");
	tcase_set_timeout(urls, 60);
	tcase_add_test(urls, secrets_in_urls_stay_in_shipd);
	suite_add_tcase(s, urls);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
