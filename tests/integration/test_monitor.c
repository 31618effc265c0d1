/* SPDX-License-Identifier: MIT */
/* shipctl monitor's stream: an operator sees what other apps publish,
 * request, get as replies and receive on their subscriptions, with the
 * app, its client number and the size (the payload when asked), only on
 * subjects its pattern matches; and only with the "monitor" right on the
 * whole pattern, which "*" in a rule does not give. */
#include <check.h>
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "shipc.h"

#define SEEN_MAX 64

static struct natsd nd;
static struct shipdp sd;
static char confdir[64];

struct seen {
	int n;
	bool ended;
	int err;
	struct {
		char subject[128], dir[16], app[64], client[24], size[24];
		char data[64];
		size_t len;
	} e[SEEN_MAX];
};

static const char *header(const struct shipc_msg *m, const char *key)
{
	for (size_t i = 0; i < m->n_headers; i++)
		if (!strcmp(m->headers[i].key, key))
			return m->headers[i].value;
	return "";
}

static void on_seen(struct shipc *h, const struct shipc_msg *m, int err,
                    void *arg)
{
	(void)h;
	struct seen *s = arg;
	if (!m) {
		s->ended = true;
		s->err = err;
		return;
	}
	if (s->n == SEEN_MAX)
		return;
	int i = s->n++;
	fx_strcopy(s->e[i].subject, sizeof(s->e[i].subject), m->subject,
	           strlen(m->subject));
	snprintf(s->e[i].dir, sizeof(s->e[i].dir), "%s",
	         header(m, "Ship-Monitor-Dir"));
	snprintf(s->e[i].app, sizeof(s->e[i].app), "%s",
	         header(m, "Ship-Monitor-App"));
	snprintf(s->e[i].client, sizeof(s->e[i].client), "%s",
	         header(m, "Ship-Monitor-Client"));
	snprintf(s->e[i].size, sizeof(s->e[i].size), "%s",
	         header(m, "Ship-Monitor-Size"));
	s->e[i].len = fx_strcopy(s->e[i].data, sizeof(s->e[i].data), m->data,
	                         m->len);
}

/* The index of the first event of dir on subject from app, or -1. */
static int find(const struct seen *s, const char *dir, const char *subject,
                const char *app)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->e[i].dir, dir) &&
		    !strcmp(s->e[i].subject, subject) &&
		    !strcmp(s->e[i].app, app))
			return i;
	return -1;
}

/* Dispatch h until s has n events, up to timeout_ms. */
static bool wait_seen(struct shipc *h, struct seen *s, int n, int timeout_ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
	while (s->n < n && !s->ended && fx_now_ms() < end)
		shipc_dispatch(h, 50);
	return s->n >= n;
}

static void up(const char *rules)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(confdir, sizeof(confdir), "/tmp/shiptest-monitor-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(confdir));
	char path[128];
	snprintf(path, sizeof(path), "%s/shipd.conf", confdir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "socket_mode = 0666\n%s", rules);
	ck_assert_int_eq(fclose(f), 0);
	const char *const extra[] = {"-c", path, NULL};
	ck_assert_int_eq(fx_up(&nd, &sd, extra), 0);
	ck_assert_int_eq(chmod(sd.dir, 0711), 0);
}

static void setup_open(void)
{
	up("");
}

static void setup_rules(void)
{
	up("allow = user:nobody * >\n"
	   "allow = uid:1234 monitor mon.>\n"
	   "allow = uid:1234 pubsub >\n");
}

static void teardown(void)
{
	fx_down(&nd, &sd);
	char path[128];
	snprintf(path, sizeof(path), "%s/shipd.conf", confdir);
	unlink(path);
	rmdir(confdir);
}

/* Answers each request with "pong". */
static void on_request(struct shipc *h, const struct shipc_msg *m, int err,
                       void *arg)
{
	(void)err;
	(void)arg;
	if (m && m->reply[0])
		shipc_respond(h, m, "pong", 4);
}

static void on_msg(struct shipc *h, const struct shipc_msg *m, int err,
                   void *arg)
{
	(void)h, (void)m, (void)err, (void)arg;
}

START_TEST(sees_what_apps_send_and_receive)
{
	struct shipc *mon = fx_connect(sd.sock, "operator", 5000);
	struct shipc *quiet = fx_connect(sd.sock, "operator-2", 5000);
	struct shipc *a = fx_connect(sd.sock, "app-a", 5000);
	struct shipc *b = fx_connect(sd.sock, "app-b", 5000);
	struct shipc *rh = fx_connect(sd.sock, "responder", 5000);
	ck_assert(mon && quiet && a && b && rh);
	static struct seen full, bare;
	ck_assert_uint_gt(shipc_monitor(mon, "mon.>", SHIPC_MONITOR_PAYLOAD,
	                                on_seen, &full),
	                  0);
	ck_assert_uint_gt(shipc_monitor(quiet, "mon.>", 0, on_seen, &bare), 0);
	/* b subscribes; a publishes to it, and to a subject nobody
	 * monitors; a asks the responder. */
	ck_assert_uint_gt(shipc_subscribe(b, "mon.sub", NULL, 0, on_msg, NULL),
	                  0);
	struct fx_app responder;
	ck_assert_uint_gt(shipc_subscribe(rh, "mon.svc", NULL, 0, on_request,
	                                  NULL),
	                  0);
	ck_assert_int_eq(fx_app_start(&responder, rh), 0);
	ck_assert_int_eq(shipc_publish(a, "other.x", "no", 2), 0);
	ck_assert_int_eq(shipc_publish(a, "mon.sub", "hello", 5), 0);
	struct shipc_msg *reply = NULL;
	ck_assert_int_eq(shipc_request(a, "mon.svc", "ping", 4, 5000, &reply),
	                 0);
	shipc_msg_free(reply);
	/* publish (a), deliver (b), request (a), deliver (responder),
	 * publish of the answer (responder, to an inbox: not mon.>), reply
	 * (a). */
	ck_assert_msg(wait_seen(mon, &full, 5, 5000), "saw %d", full.n);
	for (int i = 0; i < 20; i++)
		shipc_dispatch(b, 10); /* b reads what it was sent */
	int pub = find(&full, "publish", "mon.sub", "app-a");
	int del = find(&full, "deliver", "mon.sub", "app-b");
	int req = find(&full, "request", "mon.svc", "app-a");
	int sdel = find(&full, "deliver", "mon.svc", "responder");
	int rep = find(&full, "reply", "mon.svc", "app-a");
	ck_assert_int_ge(pub, 0);
	ck_assert_int_ge(del, 0);
	ck_assert_int_ge(req, 0);
	ck_assert_int_ge(sdel, 0);
	ck_assert_int_ge(rep, 0);
	ck_assert_str_eq(full.e[pub].data, "hello");
	ck_assert_str_eq(full.e[pub].size, "5");
	ck_assert_str_eq(full.e[req].data, "ping");
	ck_assert_str_eq(full.e[rep].data, "pong");
	ck_assert_str_eq(full.e[rep].size, "4");
	ck_assert_int_gt(atoi(full.e[pub].client), 0);
	ck_assert_str_ne(full.e[pub].client, full.e[del].client);
	for (int i = 0; i < full.n; i++)
		ck_assert_msg(strncmp(full.e[i].subject, "mon.", 4) == 0,
		              "saw %s", full.e[i].subject);
	/* Without payloads: the same events, sizes but no data. */
	ck_assert(wait_seen(quiet, &bare, full.n, 5000));
	int bpub = find(&bare, "publish", "mon.sub", "app-a");
	ck_assert_int_ge(bpub, 0);
	ck_assert_str_eq(bare.e[bpub].size, "5");
	ck_assert_uint_eq(bare.e[bpub].len, 0);
	fx_app_end(&responder);
	shipc_close(a);
	shipc_close(b);
	shipc_close(quiet);
	shipc_close(mon);
}
END_TEST

/* Run fn as uid (gid the same), connected to shipd; its exit status. */
static int run_as(uid_t uid, int (*fn)(struct shipc *h, int ready_fd),
                  int ready_fd)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)
			_exit(90);
		struct shipc *h = shipc_connect(sd.sock, "monitor-app");
		if (!h)
			_exit(91);
		int rc = fn(h, ready_fd);
		shipc_close(h);
		_exit(rc);
	}
	int st = fx_wait_exit(pid, 30000);
	if (st < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return st;
}

/* "*" gives everything but monitor. */
static int as_nobody(struct shipc *h, int ready_fd)
{
	(void)ready_fd;
	static struct seen s;
	errno = 0;
	if (shipc_monitor(h, ">", 0, on_seen, &s) != 0 || errno != EACCES)
		return 1;
	if (shipc_monitor(h, "mon.>", 0, on_seen, &s) != 0 || errno != EACCES)
		return 2;
	if (shipc_publish(h, "mon.x", "x", 1) != 0)
		return 3; /* the rest of "*" works */
	return 0;
}

/* monitor on mon.> only: not more, and sees only mon.> */
static int as_1234(struct shipc *h, int ready_fd)
{
	static struct seen s;
	errno = 0;
	if (shipc_monitor(h, ">", 0, on_seen, &s) != 0 || errno != EACCES)
		return 1;
	if (shipc_monitor(h, "mon.x.>", 0, on_seen, &s) == 0)
		return 2; /* within the grant */
	static struct seen wide;
	if (shipc_monitor(h, "mon.>", 0, on_seen, &wide) == 0)
		return 3;
	if (write(ready_fd, "r", 1) != 1)
		return 4;
	if (!wait_seen(h, &wide, 1, 10000))
		return 5;
	/* What came in the next moments: only mon.> */
	wait_seen(h, &wide, SEEN_MAX, 500);
	for (int i = 0; i < wide.n; i++)
		if (strncmp(wide.e[i].subject, "mon.", 4))
			return 6;
	return find(&wide, "publish", "mon.y", "root-app") >= 0 ? 0 : 7;
}

START_TEST(needs_the_monitor_right)
{
	ck_assert_int_eq(run_as(65534, as_nobody, -1), 0);
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pub = fork();
	ck_assert_int_ge(pub, 0);
	if (pub == 0) {
		/* Publishes once the monitoring child is ready. */
		close(p[1]);
		char c;
		if (read(p[0], &c, 1) != 1)
			_exit(80);
		struct shipc *h = shipc_connect(sd.sock, "root-app");
		if (!h)
			_exit(81);
		for (int i = 0; i < 5; i++) {
			shipc_publish(h, "secret.y", "s", 1);
			shipc_publish(h, "mon.y", "m", 1);
		}
		shipc_flush(h, 2000);
		shipc_close(h);
		_exit(0);
	}
	close(p[0]);
	int st = run_as(1234, as_1234, p[1]);
	close(p[1]);
	ck_assert_int_eq(fx_wait_exit(pub, 10000), 0);
	ck_assert_msg(st == 0, "uid 1234's monitor: step %d failed", st);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("monitor");
	TCase *t = tcase_create("open");
	tcase_add_checked_fixture(t, setup_open, teardown);
	tcase_add_test(t, sees_what_apps_send_and_receive);
	suite_add_tcase(s, t);
	t = tcase_create("rules");
	tcase_add_checked_fixture(t, setup_rules, teardown);
	tcase_add_test(t, needs_the_monitor_right);
	suite_add_tcase(s, t);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
