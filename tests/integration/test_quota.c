/* SPDX-License-Identifier: MIT */
/* Per-app quotas: the connections of one uid and unit (forked children
 * that drop root) share "quota" limits on connections, subscriptions and
 * requests in flight, over all their connections; other uids are not
 * counted with them, and a connection that leaves, even with requests in
 * flight, gives back what it held. */
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

static struct natsd nd;
static struct shipdp sd;
static char confdir[64];
static char confpath[128];
static char where[160]; /* "confpath:2", the quota line of nobody */

#define NOBODY 65534
#define OTHER 1234

static const char conf_text[] =
	"socket_mode = 0666\n"
	"quota = uid:65534 connections=3 subscriptions=4 requests=5\n"
	"quota = * connections=100\n";

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(confdir, sizeof(confdir), "/tmp/shiptest-quota-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(confdir));
	snprintf(confpath, sizeof(confpath), "%s/shipd.conf", confdir);
	snprintf(where, sizeof(where), "its quota (%s:2)", confpath);
	FILE *f = fopen(confpath, "w");
	ck_assert_ptr_nonnull(f);
	fputs(conf_text, f);
	ck_assert_int_eq(fclose(f), 0);
	/* After the fixture's "-c /dev/null": the last one counts. */
	const char *const extra[] = {"-c", confpath, NULL};
	ck_assert_int_eq(fx_up(&nd, &sd, extra), 0);
	/* shipd keeps its directory 0750: let the others through. */
	ck_assert_int_eq(chmod(sd.dir, 0755), 0);
}

static void teardown(void)
{
	ck_assert_int_eq(fx_down(&nd, &sd), 0);
	unlink(confpath);
	rmdir(confdir);
}

/* Run fn in a child as uid (and gid) and return its exit status. */
static int as(uid_t uid, int (*fn)(void))
{
	fflush(NULL);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)
			_exit(90);
		_exit(fn());
	}
	int st = 0;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

#define CHILD_OK(uid, fn)                                                    \
	do {                                                                 \
		int rc_ = as(uid, fn);                                       \
		ck_assert_msg(rc_ == 0, #fn " as uid %d: exit %d (see stderr)", \
		              (int)(uid), rc_);                              \
	} while (0)

/* In children: a failed check says which, on stderr, and exits non-zero. */
#define EXPECT(cond, code)                                                   \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: %s failed (errno %d)\n",     \
			        __func__, __LINE__, #cond, errno);           \
			return code;                                         \
		}                                                            \
	} while (0)

static bool says(struct shipc *h, const char *what)
{
	char buf[512];
	const char *e = shipc_last_error(h, buf, sizeof(buf));
	if (e && strstr(e, what))
		return true;
	fprintf(stderr, "last error '%s' has no '%s'\n", e ? e : "", what);
	return false;
}

static bool log_says(const char *what)
{
	FILE *f = fopen(sd.log, "r");
	char line[4096];
	bool found = false;
	while (f && !found && fgets(line, sizeof(line), f))
		found = strstr(line, what) != NULL;
	if (f)
		fclose(f);
	return found;
}

/* ---- connections ---- */

/* Connect as many as the app may; the next is refused, until one leaves. */
static int connections_of_nobody(void)
{
	struct shipc *h[3];
	for (int i = 0; i < 3; i++)
		EXPECT((h[i] = shipc_connect(sd.sock, "nobody")) != NULL, 2);
	errno = 0;
	struct shipc *over = shipc_connect(sd.sock, "nobody");
	EXPECT(over == NULL, 3);
	EXPECT(errno == ENOBUFS, 4);
	/* A connection that goes gives its place back (once shipd has seen
	 * it go: the close is read at its next loop turn). */
	shipc_close(h[0]);
	struct shipc *again = NULL;
	for (int i = 0; i < 100 && !again; i++) {
		again = shipc_connect(sd.sock, "nobody");
		if (!again)
			fx_sleep_ms(20);
	}
	EXPECT(again != NULL, 5);
	EXPECT(shipc_connect(sd.sock, "nobody") == NULL && errno == ENOBUFS, 6);
	shipc_close(again);
	shipc_close(h[1]);
	shipc_close(h[2]);
	return 0;
}

/* Another uid, with a wider quota, and while nobody holds all of its. */
static int connections_of_other(void)
{
	struct shipc *h[6];
	for (int i = 0; i < 6; i++)
		EXPECT((h[i] = shipc_connect(sd.sock, "other")) != NULL, 2);
	for (int i = 0; i < 6; i++)
		shipc_close(h[i]);
	return 0;
}

/* Holds nobody's three connections while the parent tries others; says
 * so on fd, then waits to be killed. */
static int hold_three(int fd)
{
	struct shipc *h[3];
	for (int i = 0; i < 3; i++)
		EXPECT((h[i] = shipc_connect(sd.sock, "holder")) != NULL, 2);
	EXPECT(write(fd, "h", 1) == 1, 3);
	pause();
	return 0;
}

START_TEST(connections_are_counted_per_app)
{
	CHILD_OK(NOBODY, connections_of_nobody);
	ck_assert(log_says("too many clients for uid 65534 "));
	ck_assert(log_says(where));
	/* While nobody holds its three, others connect. */
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	fflush(NULL);
	pid_t holder = fork();
	ck_assert_int_ge(holder, 0);
	if (holder == 0) {
		close(p[0]);
		if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 ||
		    setuid(NOBODY) < 0)
			_exit(90);
		_exit(hold_three(p[1]));
	}
	close(p[1]);
	char c = 0;
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	close(p[0]);
	struct shipc *fourth = shipc_connect(sd.sock, "nobody?");
	ck_assert_ptr_nonnull(fourth); /* root's, not nobody's */
	shipc_close(fourth);
	CHILD_OK(OTHER, connections_of_other);
	kill(holder, SIGKILL);
	ck_assert_int_eq(waitpid(holder, NULL, 0), holder);
}
END_TEST

/* ---- subscriptions ---- */

static void msg_cb(struct shipc *h, const struct shipc_msg *m, int err,
                   void *arg)
{
}

static void watch_cb(struct shipc *h, const struct shipc_kv_entry *e,
                     void *arg)
{
}

static void watch_end(struct shipc *h, int err, void *arg)
{
}

static int subscriptions_of_nobody(void)
{
	struct shipc *a = shipc_connect(sd.sock, "a");
	struct shipc *b = shipc_connect(sd.sock, "b");
	EXPECT(a && b, 2);
	uint64_t sa[3];
	for (int i = 0; i < 3; i++) {
		char subj[32];
		snprintf(subj, sizeof(subj), "q.a.%d", i);
		EXPECT((sa[i] = shipc_subscribe(a, subj, NULL, 0, msg_cb, NULL)),
		       3);
	}
	EXPECT(shipc_subscribe(b, "q.b.0", NULL, 0, msg_cb, NULL) != 0, 4);
	/* The fifth of the app, on either connection, of any kind. */
	errno = 0;
	EXPECT(shipc_subscribe(b, "q.b.1", NULL, 0, msg_cb, NULL) == 0, 5);
	EXPECT(errno == ENOBUFS, 6);
	EXPECT(says(b, "uid 65534 "), 7);
	EXPECT(says(b, "4 subscriptions, consumers and watches"), 8);
	EXPECT(says(b, where), 9);
	EXPECT(shipc_kv_watch(b, "quota", NULL, 0, watch_cb, watch_end,
	                      NULL) == 0,
	       10);
	EXPECT(errno == ENOBUFS, 11);
	EXPECT(shipc_subscribe(a, "q.a.9", NULL, 0, msg_cb, NULL) == 0, 12);
	/* One given back, one more taken. */
	EXPECT(shipc_unsubscribe(a, sa[0]) == 0, 13);
	EXPECT(shipc_flush(a, 2000) == 0, 14);
	EXPECT(shipc_kv_watch(b, "quota", NULL, 0, watch_cb, watch_end,
	                      NULL) != 0,
	       15);
	EXPECT(shipc_subscribe(b, "q.b.2", NULL, 0, msg_cb, NULL) == 0, 16);
	/* A connection that leaves with its streams gives them back. */
	shipc_close(a);
	uint64_t ok = 0;
	for (int i = 0; i < 100 && !ok; i++) {
		ok = shipc_subscribe(b, "q.b.3", NULL, 0, msg_cb, NULL);
		if (!ok)
			fx_sleep_ms(20);
	}
	EXPECT(ok != 0, 17);
	EXPECT(shipc_subscribe(b, "q.b.4", NULL, 0, msg_cb, NULL) != 0, 18);
	EXPECT(shipc_subscribe(b, "q.b.5", NULL, 0, msg_cb, NULL) == 0, 19);
	shipc_close(b);
	return 0;
}

/* Nothing of nobody's quota binds another uid. */
static int subscriptions_of_other(void)
{
	struct shipc *a = shipc_connect(sd.sock, "a");
	struct shipc *b = shipc_connect(sd.sock, "b");
	EXPECT(a && b, 2);
	for (int i = 0; i < 6; i++) {
		char subj[32];
		snprintf(subj, sizeof(subj), "q.o.%d", i);
		EXPECT(shipc_subscribe(i % 2 ? a : b, subj, NULL, 0, msg_cb,
		                       NULL) != 0,
		       3);
	}
	shipc_close(a);
	shipc_close(b);
	return 0;
}

START_TEST(subscriptions_are_summed_per_app)
{
	struct shipc *root = shipc_connect(sd.sock, "root");
	ck_assert_ptr_nonnull(root);
	struct shipc_kv_config kc = {.bucket = "quota"};
	ck_assert_int_eq(shipc_kv_bucket_create(root, &kc, NULL), 0);
	/* No handle (and its thread) while children are forked: a child of
	 * a threaded process may inherit a lock held. */
	shipc_close(root);
	CHILD_OK(NOBODY, subscriptions_of_nobody);
	CHILD_OK(OTHER, subscriptions_of_other);
	root = shipc_connect(sd.sock, "root");
	ck_assert_ptr_nonnull(root);
	/* Root has no quota. */
	for (int i = 0; i < 8; i++) {
		char subj[32];
		snprintf(subj, sizeof(subj), "q.r.%d", i);
		ck_assert_uint_gt(shipc_subscribe(root, subj, NULL, 0, msg_cb,
		                                  NULL),
		                  0);
	}
	shipc_close(root);
}
END_TEST

/* ---- requests in flight ---- */

struct answers {
	int done;
	int refused; /* ENOBUFS */
	int other;
};

static void answer_cb(struct shipc *h, const struct shipc_msg *reply, int err,
                      void *arg)
{
	struct answers *a = arg;
	a->done++;
	if (err == ENOBUFS)
		a->refused++;
	else if (err != ECANCELED)
		a->other++;
}

/* n requests on h to the responder that never answers; 0 once sent. */
static int ask(struct shipc *h, int n, struct answers *a)
{
	struct shipc_msg q = {.subject = "slow.q", .data = "q", .len = 1};
	for (int i = 0; i < n; i++)
		if (shipc_request_async(h, &q, 60000, answer_cb, a) < 0)
			return -1;
	return shipc_flush(h, 2000);
}

static void pump(struct shipc *h, struct answers *a, int want, int ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)ms;
	while (a->done < want && fx_now_ms() < end)
		shipc_dispatch(h, 20);
}

static int requests_of_nobody(void)
{
	struct shipc *a = shipc_connect(sd.sock, "a");
	struct shipc *b = shipc_connect(sd.sock, "b");
	EXPECT(a && b, 2);
	struct answers aa = {0}, ab = {0};
	EXPECT(ask(a, 3, &aa) == 0, 3);
	EXPECT(ask(b, 2, &ab) == 0, 4);
	/* In flight: five of the app's, nothing answered. */
	pump(b, &ab, 1, 300);
	EXPECT(ab.done == 0 && aa.done == 0, 5);
	/* The sixth, on either connection, is refused at once. */
	EXPECT(ask(b, 1, &ab) == 0, 6);
	pump(b, &ab, 1, 3000);
	EXPECT(ab.refused == 1, 7);
	EXPECT(says(b, "uid 65534 "), 8);
	EXPECT(says(b, "5 requests in flight"), 9);
	EXPECT(says(b, where), 10);
	EXPECT(ask(a, 1, &aa) == 0, 11);
	pump(a, &aa, 1, 3000);
	EXPECT(aa.refused == 1, 12);
	/* a leaves with three in flight: the app may have three more. */
	shipc_close(a);
	struct answers more = {0};
	int sent = 0;
	for (int i = 0; i < 100 && sent < 3; i++) {
		more = (struct answers){0};
		EXPECT(ask(b, 1, &more) == 0, 13);
		pump(b, &more, 1, 100);
		if (more.done == 0)
			sent++; /* in flight */
		else
			fx_sleep_ms(20);
	}
	EXPECT(sent == 3, 14);
	struct answers last = {0};
	EXPECT(ask(b, 1, &last) == 0, 15);
	pump(b, &last, 1, 3000);
	EXPECT(last.refused == 1, 16);
	EXPECT(ab.other == 0 && more.other == 0, 17);
	shipc_close(b);
	return 0;
}

/* Another uid has no requests quota: many in flight. */
static int requests_of_other(void)
{
	struct shipc *a = shipc_connect(sd.sock, "a");
	struct shipc *b = shipc_connect(sd.sock, "b");
	EXPECT(a && b, 2);
	struct answers aa = {0}, ab = {0};
	EXPECT(ask(a, 8, &aa) == 0, 3);
	EXPECT(ask(b, 8, &ab) == 0, 4);
	pump(a, &aa, 1, 300);
	pump(b, &ab, 1, 300);
	EXPECT(aa.done == 0 && ab.done == 0, 5);
	shipc_close(a);
	shipc_close(b);
	return 0;
}

START_TEST(requests_in_flight_are_summed_per_app)
{
	/* A responder that takes every request and answers none, in a
	 * process of its own: no handle here while children are forked. */
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	fflush(NULL);
	pid_t responder = fork();
	ck_assert_int_ge(responder, 0);
	if (responder == 0) {
		close(p[0]);
		struct shipc *h = shipc_connect(sd.sock, "responder");
		if (!h || !shipc_subscribe(h, "slow.>", NULL, 0, msg_cb, NULL))
			_exit(2);
		if (write(p[1], "r", 1) != 1)
			_exit(3);
		for (int i = 0; i < 6000; i++) /* bounded: 10 minutes */
			shipc_dispatch(h, 100);
		_exit(0);
	}
	close(p[1]);
	char c = 0;
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	close(p[0]);
	CHILD_OK(NOBODY, requests_of_nobody);
	CHILD_OK(OTHER, requests_of_other);
	/* And nobody's app is gone with its connections: a fresh start. */
	CHILD_OK(NOBODY, requests_of_nobody);
	kill(responder, SIGKILL);
	ck_assert_int_eq(waitpid(responder, NULL, 0), responder);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("quota");
	TCase *tc = tcase_create("quota");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, connections_are_counted_per_app);
	tcase_add_test(tc, subscriptions_are_summed_per_app);
	tcase_add_test(tc, requests_in_flight_are_summed_per_app);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
