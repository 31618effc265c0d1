/* SPDX-License-Identifier: MIT */
/* What operators use: clients, reload, limits, the socket's rules. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "shipc.h"

static struct natsd nd;
static struct shipdp sd;
static char conf_path[320];

static void write_conf(const char *text)
{
	FILE *f = fopen(conf_path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(natsd_start(&nd, 0), 0);
	snprintf(conf_path, sizeof(conf_path), "%s/shipd.conf", nd.dir);
	write_conf("max_subscriptions = 3\nmax_clients_per_uid = 4\n");
	/* -c after the fixture's own -c /dev/null: the last one counts. The
	 * budget's limits are each unlike the default, to be told apart. */
	const char *extra[] = {"-c", conf_path, "-o", "socket_mode=0666",
	                       "-o", "max_clients=50",
	                       "-o", "max_requests=17",
	                       "-o", "max_requests_total=123",
	                       "-o", "client_memory_limit=2097152",
	                       "-o", "memory_limit=8388608",
	                       "-o", "client_output_limit=262144", NULL};
	ck_assert_int_eq(shipd_start(&sd, nd.url, extra), 0);
	ck_assert(fx_wait_link(sd.sock, 10000));
}

static void teardown(void)
{
	int rc = fx_down(&nd, &sd);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

static void nop_cb(struct shipc *h, const struct shipc_msg *m, int err,
                   void *arg)
{
}

START_TEST(clients_lists_apps)
{
	struct shipc *a = shipc_connect(sd.sock, "alpha");
	struct shipc *b = shipc_connect(sd.sock, "beta");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_uint_gt(shipc_subscribe(a, "c.1", NULL, 0, nop_cb, NULL), 0);
	ck_assert_uint_gt(shipc_subscribe(a, "c.2", NULL, 0, nop_cb, NULL), 0);
	struct shipc_client *list;
	size_t n;
	ck_assert_int_eq(shipc_clients(b, &list, &n), 0);
	ck_assert_uint_eq(n, 2);
	bool saw_alpha = false;
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_eq(list[i].pid, (uint32_t)getpid());
		ck_assert_uint_eq(list[i].uid, (uint32_t)getuid());
		if (!strcmp(list[i].name, "alpha")) {
			saw_alpha = true;
			ck_assert_uint_eq(list[i].subscriptions, 2);
			ck_assert_uint_gt(list[i].bytes_in, 0);
			ck_assert_uint_gt(list[i].bytes_out, 0);
		}
	}
	ck_assert(saw_alpha);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(shipc_client_held(list, i), 0); /* idle */
	ck_assert_uint_eq(shipc_client_held(list, n), 0);
	shipc_clients_free(list);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(b, &st), 0);
	ck_assert_uint_eq(st.pid, (uint32_t)sd.pid);
	ck_assert_str_eq(st.socket, sd.sock);
	shipc_close(a);
	shipc_close(b);
}
END_TEST

START_TEST(limits_and_reload)
{
	struct shipc *h = shipc_connect(sd.sock, "limits");
	ck_assert_ptr_nonnull(h);
	const char *subjects[] = {"l.1", "l.2", "l.3", "l.4"};
	for (int i = 0; i < 3; i++)
		ck_assert_uint_gt(shipc_subscribe(h, subjects[i], NULL, 0, nop_cb,
		                                  NULL),
		                  0);
	/* The fourth is over max_subscriptions: a clear error. */
	ck_assert_uint_eq(shipc_subscribe(h, subjects[3], NULL, 0, nop_cb, NULL),
	                  0);
	ck_assert_int_eq(errno, ENOBUFS);
	char why[256];
	ck_assert_ptr_nonnull(strstr(shipc_last_error(h, why, sizeof(why)),
	                             "limit"));
	/* Raise the limit at run time; a restart-only key is reported. */
	write_conf("max_subscriptions = 10\nmax_clients_per_uid = 4\n"
	           "nats_connect_timeout_ms = 3000\n");
	char buf[512];
	ck_assert_int_eq(shipc_reload(h, buf, sizeof(buf)), 0);
	ck_assert_ptr_nonnull(strstr(buf, "applied: max_subscriptions"));
	ck_assert_ptr_nonnull(strstr(buf, "needs a restart: nats_connect_timeout_ms"));
	ck_assert_uint_gt(shipc_subscribe(h, subjects[3], NULL, 0, nop_cb, NULL),
	                  0);
	/* A broken file changes nothing and says where it is broken. */
	write_conf("max_subscriptions = 1\nbogus = 1\n");
	ck_assert_int_eq(shipc_reload(h, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_nonnull(strstr(shipc_last_error(h, why, sizeof(why)),
	                             ":2: unknown key 'bogus'"));
	ck_assert_uint_gt(shipc_subscribe(h, "l.5", NULL, 0, nop_cb, NULL), 0);
	/* SIGHUP does the same as shipctl reload. */
	write_conf("max_subscriptions = 5\nmax_clients_per_uid = 4\n");
	ck_assert_int_eq(kill(sd.pid, SIGHUP), 0);
	bool limited = false;
	for (int i = 0; i < 100 && !limited; i++) {
		char subj[32];
		snprintf(subj, sizeof(subj), "l.hup.%d", i);
		uint64_t id = shipc_subscribe(h, subj, NULL, 0, nop_cb, NULL);
		if (id)
			shipc_unsubscribe(h, id);
		else
			limited = errno == ENOBUFS;
		if (!limited)
			fx_sleep_ms(20);
	}
	ck_assert(limited); /* 5 open now: none more */
	shipc_close(h);
}
END_TEST

static bool read_limits(struct shipc *h, struct shipc_limits *l)
{
	return h && shipc_limits(h, l) == 0;
}

/* The budget shipctl status shows: the configured limits, and usage that
 * a request in flight moves (a KV keys request reserves what its answer
 * may take while NATS, stopped, cannot answer) and that comes back. */
START_TEST(status_shows_the_budget)
{
	struct shipc *h = shipc_connect(sd.sock, "budget");
	ck_assert_ptr_nonnull(h);
	struct shipc_limits l;
	ck_assert(read_limits(h, &l));
	ck_assert_uint_eq(l.max_clients, 50);
	ck_assert_uint_eq(l.max_requests_total, 123);
	ck_assert_uint_eq(l.memory_limit, 8388608);
	ck_assert_uint_eq(l.max_requests, 17);
	ck_assert_uint_eq(l.max_subscriptions, 3); /* from the file */
	ck_assert_uint_eq(l.client_memory_limit, 2097152);
	ck_assert_uint_eq(l.client_output_limit, 262144);
	ck_assert_uint_eq(l.clients, 1);
	ck_assert_uint_eq(l.requests_in_flight, 0);
	ck_assert_uint_eq(l.held, 0);
	struct shipc_kv_config cfg = {.bucket = "budget", .memory = 1};
	ck_assert_int_eq(shipc_kv_bucket_create(h, &cfg, NULL), 0);
	ck_assert_int_eq(shipc_kv_put(h, "budget", "k", "v", 1, NULL), 0);
	shipc_close(h); /* fork from a process without libshipc's threads */

	ck_assert_int_eq(fx_freeze(nd.pid, 2000), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct shipc *w = shipc_connect(sd.sock, "waiting");
		char **keys;
		size_t n;
		bool ok = w && shipc_kv_keys(w, "budget", NULL, &keys, &n) == 0;
		_exit(ok && n == 1 ? 0 : 1);
	}
	/* Read while NATS is stopped, assert once it runs again: a failed
	 * assertion must not leave it stopped. The first "budget" is gone
	 * once shipd has read its end, which a busy shipd may not have done
	 * yet: the count is waited for too, not taken from the first read
	 * that shows the request. */
	h = shipc_connect(sd.sock, "budget");
	bool in_flight = false;
	for (int i = 0; i < 300 && !(in_flight && l.clients == 2); i++) {
		in_flight = read_limits(h, &l) && l.requests_in_flight > 0 &&
		            l.held > 0;
		if (!(in_flight && l.clients == 2))
			fx_sleep_ms(10);
	}
	struct shipc_client *list = NULL;
	size_t n = 0;
	int listed = h ? shipc_clients(h, &list, &n) : -1;
	ck_assert_int_eq(kill(nd.pid, SIGCONT), 0);
	ck_assert_msg(in_flight, "no request in flight: %u, %llu bytes held",
	              l.requests_in_flight, (unsigned long long)l.held);
	ck_assert_int_eq(fx_wait_exit(pid, 10000), 0); /* it got its keys */
	ck_assert_uint_eq(l.clients, 2);
	ck_assert_uint_le(l.held, l.client_memory_limit);
	ck_assert_int_eq(listed, 0);
	bool saw = false;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i].name, "waiting"))
			continue;
		saw = true;
		ck_assert_uint_eq(list[i].requests, 1);
		ck_assert_uint_gt(shipc_client_held(list, i), 0);
	}
	ck_assert(saw);
	shipc_clients_free(list);

	/* The answer given, everything reserved comes back. */
	bool back = false;
	for (int i = 0; i < 500 && !back; i++) {
		back = read_limits(h, &l) && l.requests_in_flight == 0 &&
		       l.held == 0 && l.clients == 1;
		if (!back)
			fx_sleep_ms(10);
	}
	ck_assert_msg(back, "%u in flight, %llu bytes held, %u clients",
	              l.requests_in_flight, (unsigned long long)l.held,
	              l.clients);
	shipc_close(h);
}
END_TEST

START_TEST(per_uid_limit)
{
	struct shipc *h[4];
	for (int i = 0; i < 4; i++) {
		h[i] = shipc_connect(sd.sock, "many");
		ck_assert_ptr_nonnull(h[i]);
	}
	struct shipc *extra = shipc_connect(sd.sock, "one-too-many");
	ck_assert_ptr_null(extra);
	ck_assert_int_eq(errno, ENOBUFS);
	shipc_close(h[0]);
	/* A slot is free again once one leaves. */
	struct shipc *again = NULL;
	for (int i = 0; i < 100 && !again; i++) {
		again = shipc_connect(sd.sock, "again");
		if (!again)
			fx_sleep_ms(20);
	}
	ck_assert_ptr_nonnull(again);
	shipc_close(again);
	for (int i = 1; i < 4; i++)
		shipc_close(h[i]);
}
END_TEST

START_TEST(reload_needs_privilege)
{
	/* Another user may use shipd but not reconfigure it. */
	ck_assert_int_eq(chmod(sd.dir, 0755), 0);
	pid_t pid = fork();
	if (pid == 0) {
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(3);
		struct shipc *h = shipc_connect(sd.sock, "nobody");
		if (!h)
			_exit(4);
		struct shipc_status st;
		if (shipc_status(h, &st) < 0)
			_exit(5);
		char buf[128];
		int r = shipc_reload(h, buf, sizeof(buf));
		_exit(r == -1 && errno == EACCES ? 0 : 6);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

START_TEST(socket_rules)
{
	/* A live shipd on the path: a second one refuses to start. */
	struct shipdp second = sd;
	shipd_restart(&second, nd.url, NULL); /* the socket answers: sd's */
	if (second.pid > 0)
		ck_assert_int_eq(fx_wait_exit(second.pid, 5000), 1);
	ck_assert_int_eq(kill(sd.pid, 0), 0);
	struct shipc *h = shipc_connect(sd.sock, "still");
	ck_assert_ptr_nonnull(h);
	shipc_close(h);
	/* The socket has the configured mode; the directory 0750. */
	struct stat st;
	ck_assert_int_eq(stat(sd.sock, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0666);
	ck_assert_int_eq(stat(sd.dir, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0750);

	/* A stale socket (daemon killed) is replaced on start. */
	shipd_kill(&sd);
	ck_assert_int_eq(stat(sd.sock, &st), 0);
	ck_assert_int_eq(shipd_restart(&sd, nd.url, NULL), 0);

	/* Something that is not a socket is never touched. */
	struct shipdp other;
	char dir[] = "/tmp/shiptest-file-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	memset(&other, 0, sizeof(other));
	snprintf(other.dir, sizeof(other.dir), "%s", dir);
	snprintf(other.sock, sizeof(other.sock), "%s/shipd.sock", dir);
	snprintf(other.log, sizeof(other.log), "%s/shipd.log", dir);
	int fd = open(other.sock, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "keep", 4), 4);
	close(fd);
	ck_assert_int_ne(shipd_restart(&other, nd.url, NULL), 0);
	char buf[8] = "";
	fd = open(other.sock, O_RDONLY);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 4);
	close(fd);
	ck_assert_mem_eq(buf, "keep", 4);
	shipd_cleanup(&other);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ops");
	TCase *tc = tcase_create("ops");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, clients_lists_apps);
	tcase_add_test(tc, limits_and_reload);
	tcase_add_test(tc, status_shows_the_budget);
	tcase_add_test(tc, per_uid_limit);
	tcase_add_test(tc, reload_needs_privilege);
	tcase_add_test(tc, socket_rules);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
