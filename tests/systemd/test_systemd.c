/* SPDX-License-Identifier: MIT */
/* shipd under systemd's protocols, without systemd as PID 1: sd_notify
 * (READY, STATUS, WATCHDOG, STOPPING) read from a socket of the test's own,
 * and socket activation through systemd-socket-activate. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "shipc.h"

#define WATCHDOG_USEC 200000
#define MAX_NOTES 4096
#define FOREVER UINT64_MAX

static struct natsd nd;
static struct shipdp sd;

/* ---- the notify socket: what shipd tells "systemd" ---- */

struct note {
	uint64_t ms;    /* fx_now_ms() when it was read */
	pid_t pid;      /* the sender, from SCM_CREDENTIALS */
	char text[256]; /* one assignment, "READY=1" */
};

static struct {
	int fd;
	char dir[64];
	char path[128];
	struct note notes[MAX_NOTES];
	size_t n;
	size_t lost; /* past MAX_NOTES */
	/* Whether shipd's socket took a connection the moment READY=1 was
	 * read: -1 no READY yet, else 0 or the connect errno. */
	int ready_connect;
} nt = {.fd = -1, .ready_connect = -1};

/* sa for path; false if it does not fit. */
static bool unix_addr(struct sockaddr_un *sa, const char *path)
{
	size_t len = strlen(path);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (len >= sizeof(sa->sun_path))
		return false;
	memcpy(sa->sun_path, path, len + 1);
	return true;
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sa;
	if (!unix_addr(&sa, path))
		return ENAMETOOLONG;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno;
	int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : errno;
	close(fd);
	return r;
}

static void notify_open(void)
{
	snprintf(nt.dir, sizeof(nt.dir), "/tmp/shiptest-notify-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(nt.dir));
	snprintf(nt.path, sizeof(nt.path), "%s/notify", nt.dir);
	nt.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ck_assert_int_ge(nt.fd, 0);
	int one = 1;
	ck_assert_int_eq(setsockopt(nt.fd, SOL_SOCKET, SO_PASSCRED, &one,
	                            sizeof(one)),
	                 0);
	struct sockaddr_un sa;
	ck_assert(unix_addr(&sa, nt.path));
	ck_assert_int_eq(bind(nt.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
}

static void notify_close(void)
{
	if (nt.fd >= 0)
		close(nt.fd);
	nt.fd = -1;
	unlink(nt.path);
	rmdir(nt.dir);
}

static void add_note(const char *text, size_t len, pid_t pid)
{
	if (nt.n == MAX_NOTES) {
		nt.lost++;
		return;
	}
	struct note *n = &nt.notes[nt.n++];
	n->ms = fx_now_ms();
	n->pid = pid;
	snprintf(n->text, sizeof(n->text), "%.*s", (int)len, text);
	/* Right now, before anything else runs: a READY=1 sent before the
	 * socket listens would fail here. */
	if (nt.ready_connect < 0 && !strcmp(n->text, "READY=1"))
		nt.ready_connect = unix_connect(sd.sock);
}

/* One datagram: newline-separated assignments. Returns false if none was
 * waiting. */
static bool notify_recv_one(void)
{
	char buf[4096];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(struct ucred))];
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf) - 1};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = ctl.buf,
	                    .msg_controllen = sizeof(ctl.buf)};
	ssize_t len = recvmsg(nt.fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (len < 0) {
		ck_assert_msg(errno == EAGAIN || errno == EINTR,
		              "recvmsg: %s", strerror(errno));
		return false;
	}
	pid_t pid = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
			pid = ((struct ucred *)(void *)CMSG_DATA(c))->pid;
	const char *p = buf, *end = buf + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (l)
			add_note(p, l, pid);
		p += l + 1;
	}
	return true;
}

/* Read what arrives within ms (0: only what is queued now). */
static void notify_read(int ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)ms;
	for (;;) {
		/* Bounded: a flood cannot keep this from returning. */
		for (int i = 0; i < 1000 && notify_recv_one(); i++)
			;
		uint64_t now = fx_now_ms();
		if (now >= end)
			return;
		struct pollfd pfd = {.fd = nt.fd, .events = POLLIN};
		poll(&pfd, 1, (int)(end - now));
	}
}

static bool note_is(const struct note *n, const char *prefix,
                    const char *contains)
{
	return !strncmp(n->text, prefix, strlen(prefix)) &&
	       (!contains || strstr(n->text, contains));
}

/* Index of the first note from index from on that starts with prefix (and
 * contains contains, unless NULL), reading for up to ms; -1 if none. */
static ssize_t notify_wait(size_t from, const char *prefix,
                           const char *contains, int ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)ms;
	for (;;) {
		for (size_t i = from; i < nt.n; i++)
			if (note_is(&nt.notes[i], prefix, contains))
				return (ssize_t)i;
		from = nt.n;
		uint64_t now = fx_now_ms();
		if (now >= end)
			return -1;
		notify_read((int)(end - now < 20 ? end - now : 20));
	}
}

/* Notes starting with prefix read in [t0, t1). */
static unsigned notify_count(const char *prefix, uint64_t t0, uint64_t t1)
{
	unsigned k = 0;
	for (size_t i = 0; i < nt.n; i++)
		if (nt.notes[i].ms >= t0 && nt.notes[i].ms < t1 &&
		    note_is(&nt.notes[i], prefix, NULL))
			k++;
	return k;
}

static void notify_dump(void)
{
	fprintf(stderr, "---- %zu notifications (%zu lost) ----\n", nt.n,
	        nt.lost);
	uint64_t t0 = nt.n ? nt.notes[0].ms : 0;
	for (size_t i = 0; i < nt.n; i++)
		fprintf(stderr, "%6llu ms pid %d %s\n",
		        (unsigned long long)(nt.notes[i].ms - t0),
		        (int)nt.notes[i].pid, nt.notes[i].text);
}

/* The READY=1 note, read within 10 s. */
static const struct note *wait_ready(void)
{
	ssize_t i = notify_wait(0, "READY=1", NULL, 10000);
	if (i < 0)
		notify_dump();
	ck_assert_msg(i >= 0, "no READY=1 within 10 s");
	return &nt.notes[i];
}

/* ---- shipd with NOTIFY_SOCKET and WATCHDOG_USEC ---- */

static void setup_notify(void)
{
	static char notify_env[160], watchdog_env[64];
	static const char *const extra[] = {
		"-o", "nats_reconnect_wait_max_ms=500", NULL};
	signal(SIGPIPE, SIG_IGN);
	memset(&nt.notes, 0, sizeof(nt.notes));
	nt.n = nt.lost = 0;
	nt.ready_connect = -1;
	notify_open();
	snprintf(notify_env, sizeof(notify_env), "NOTIFY_SOCKET=%s", nt.path);
	snprintf(watchdog_env, sizeof(watchdog_env), "WATCHDOG_USEC=%d",
	         WATCHDOG_USEC);
	/* Unset WATCHDOG_PID: the watchdog is then meant for whichever
	 * process reads WATCHDOG_USEC (sd_watchdog_enabled(3)); and no
	 * stray activation variables from whatever runs the tests. */
	const char *const env[] = {notify_env, watchdog_env, "WATCHDOG_PID",
	                           "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
	                           NULL};
	ck_assert_int_eq(natsd_start(&nd, 0), 0);
	ck_assert_int_eq(shipd_spawn(&sd, nd.url, extra, env), 0);
}

static void teardown_notify(void)
{
	int rc = shipd_cleanup(&sd);
	natsd_cleanup(&nd);
	notify_close();
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

START_TEST(test_ready_after_listening)
{
	const struct note *ready = wait_ready();
	ck_assert_msg(nt.ready_connect == 0,
	              "READY=1 came before %s took connections: %s", sd.sock,
	              strerror(nt.ready_connect));
	ck_assert_int_eq(ready->pid, sd.pid);
	/* Once only; and every notification is from shipd's main process
	 * (NotifyAccess=main would drop others). */
	notify_read(300);
	ck_assert_uint_eq(notify_count("READY=1", 0, FOREVER), 1);
	ck_assert_uint_eq(nt.lost, 0);
	for (size_t i = 0; i < nt.n; i++)
		ck_assert_msg(nt.notes[i].pid == sd.pid, "%s from pid %d",
		              nt.notes[i].text, (int)nt.notes[i].pid);
}
END_TEST

START_TEST(test_status_tells_link_and_clients)
{
	size_t from = (size_t)(wait_ready() - nt.notes);
	/* Sent right after READY=1 too, then at every watchdog ping. */
	ssize_t i = notify_wait(from, "STATUS=", NULL, 1000);
	ck_assert_msg(i >= 0, "no STATUS= within 1 s of READY=1");
	i = notify_wait(from, "STATUS=connected", ", 0 client", 10000);
	if (i < 0)
		notify_dump();
	ck_assert_msg(i >= 0, "no STATUS=connected ..., 0 clients");
	ck_assert_msg(strstr(nt.notes[i].text, nd.url), "%s: not %s",
	              nt.notes[i].text, nd.url);

	struct shipc *h = shipc_connect(sd.sock, "status-test");
	ck_assert_msg(h != NULL, "connect: %s", strerror(errno));
	i = notify_wait(nt.n, "STATUS=connected", ", 1 client", 5000);
	ck_assert_msg(i >= 0, "STATUS= never counted the client");
	shipc_close(h);
	i = notify_wait(nt.n, "STATUS=connected", ", 0 client", 5000);
	ck_assert_msg(i >= 0, "STATUS= never saw the client go");

	natsd_stop(&nd);
	i = notify_wait(nt.n, "STATUS=reconnecting", NULL, 10000);
	if (i < 0)
		notify_dump();
	ck_assert_msg(i >= 0, "STATUS= never said reconnecting without NATS");
	ck_assert_int_eq(natsd_restart(&nd), 0);
	i = notify_wait(nt.n, "STATUS=connected", NULL, 15000);
	ck_assert_msg(i >= 0, "STATUS= never said connected again");
}
END_TEST

START_TEST(test_watchdog_pings)
{
	uint64_t t0 = wait_ready()->ms, now = fx_now_ms();
	notify_read(now < t0 + 1000 ? (int)(t0 + 1000 - now) : 0);
	/* WATCHDOG_USEC=200 ms: a ping every 100 ms, so about ten. */
	unsigned k = notify_count("WATCHDOG=1", t0, t0 + 1000);
	if (k < 3 || k > 30)
		notify_dump();
	ck_assert_msg(k >= 3, "%u WATCHDOG=1 in the first second", k);
	ck_assert_msg(k <= 30, "%u WATCHDOG=1 in a second: too many", k);
}
END_TEST

/* The state letter of /proc/<pid>/task/<tid>/stat ('?' if unknown). */
static char proc_state(pid_t pid, pid_t tid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid,
	         (int)tid);
	FILE *f = fopen(path, "r");
	if (!f)
		return '?';
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')'); /* after "pid (comm)" */
	return p && p[1] == ' ' ? p[2] : '?';
}

static bool is_stopped(void *arg)
{
	pid_t pid = *(pid_t *)arg;
	return proc_state(pid, pid) == 'T';
}

/* Threads of pid other than the main one that are not stopped. */
static unsigned other_threads_running(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	unsigned k = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		pid_t tid = (pid_t)atoi(e->d_name);
		if (tid <= 0 || tid == pid)
			continue;
		char st = proc_state(pid, tid);
		if (st != 't' && st != 'T' && st != '?')
			k++;
	}
	closedir(d);
	return k;
}

START_TEST(test_watchdog_stops_with_the_process)
{
	wait_ready();
	ck_assert_int_ge(notify_wait(nt.n, "WATCHDOG=1", NULL, 1000), 0);

	ck_assert_int_eq(kill(sd.pid, SIGSTOP), 0);
	ck_assert_msg(fx_wait(is_stopped, &sd.pid, 2000), "shipd did not stop");
	/* What it sent before it stopped is queued already. */
	notify_read(0);
	uint64_t t0 = fx_now_ms();
	notify_read(500);
	unsigned stopped = notify_count("WATCHDOG=1", t0, FOREVER);

	uint64_t t1 = fx_now_ms();
	ck_assert_int_eq(kill(sd.pid, SIGCONT), 0);
	notify_read(1000);
	unsigned resumed = notify_count("WATCHDOG=1", t1, FOREVER);
	if (stopped || resumed < 3)
		notify_dump();
	ck_assert_msg(stopped == 0, "%u WATCHDOG=1 while shipd was stopped",
	              stopped);
	ck_assert_msg(resumed >= 3, "%u WATCHDOG=1 in the second after SIGCONT",
	              resumed);
}
END_TEST

/* Stop only thread tid (ptrace), leaving the others running. Returns 0,
 * or -1 with errno when tracing is not allowed here. */
static int thread_freeze(pid_t tid)
{
	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0)
		return -1;
	ck_assert_int_eq(ptrace(PTRACE_INTERRUPT, tid, NULL, NULL), 0);
	int status;
	pid_t r = 0;
	uint64_t end = fx_now_ms() + 2000;
	while ((r = waitpid(tid, &status, __WALL | WNOHANG)) == 0 &&
	       fx_now_ms() < end)
		fx_sleep_ms(5);
	ck_assert_msg(r == tid && WIFSTOPPED(status),
	              "thread %d did not stop", (int)tid);
	return 0;
}

START_TEST(test_watchdog_is_the_loops)
{
	wait_ready();
	ck_assert_int_ge(notify_wait(nt.n, "WATCHDOG=1", NULL, 1000), 0);
	/* Stop the thread that runs the loop (main) and nothing else: a
	 * ping from any other thread would go on. */
	if (thread_freeze(sd.pid) < 0) {
		fprintf(stderr, "ptrace not allowed here (%s): not checked\n",
		        strerror(errno));
		return;
	}
	unsigned others = other_threads_running(sd.pid);
	notify_read(0);
	uint64_t t0 = fx_now_ms();
	notify_read(500);
	unsigned frozen = notify_count("WATCHDOG=1", t0, FOREVER);
	uint64_t t1 = fx_now_ms();
	ck_assert_int_eq(ptrace(PTRACE_DETACH, sd.pid, NULL, NULL), 0);
	notify_read(1000);
	unsigned resumed = notify_count("WATCHDOG=1", t1, FOREVER);
	if (frozen || resumed < 3)
		notify_dump();
	ck_assert_msg(others > 0, "no other thread ran: the check proves "
	                          "nothing");
	ck_assert_msg(frozen == 0, "%u WATCHDOG=1 with the loop's thread "
	                           "stopped",
	              frozen);
	ck_assert_msg(resumed >= 3, "%u WATCHDOG=1 in the second after",
	              resumed);
}
END_TEST

START_TEST(test_stopping_on_sigterm)
{
	wait_ready();
	ck_assert_int_eq(kill(sd.pid, SIGTERM), 0);
	ssize_t i = notify_wait(nt.n, "STOPPING=1", NULL, 10000);
	ck_assert_msg(i >= 0, "no STOPPING=1 within 10 s of SIGTERM");
	int rc = fx_wait_exit(sd.pid, 10000);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
	sd.pid = 0;
	/* The loop is over: nothing claims to be alive after STOPPING. */
	notify_read(0);
	for (size_t j = (size_t)i + 1; j < nt.n; j++)
		ck_assert_msg(!note_is(&nt.notes[j], "WATCHDOG=1", NULL) &&
		                      !note_is(&nt.notes[j], "READY=1", NULL),
		              "%s after STOPPING=1", nt.notes[j].text);
}
END_TEST

/* ---- socket activation ---- */

static const char *socket_activate_bin(void)
{
	static const char *const paths[] = {
		"/usr/bin/systemd-socket-activate",
		"/lib/systemd/systemd-socket-activate",
		"/usr/lib/systemd/systemd-socket-activate",
	};
	const char *e = getenv("SYSTEMD_SOCKET_ACTIVATE");
	if (e && *e)
		return e;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

/* What the configuration names; it must stay untouched. */
static char config_sock[300];

static void setup_activation(void)
{
	signal(SIGPIPE, SIG_IGN);
	const char *sa = socket_activate_bin();
	ck_assert_msg(sa != NULL, "systemd-socket-activate not found");
	ck_assert_int_eq(natsd_start(&nd, 0), 0);

	memset(&sd, 0, sizeof(sd));
	snprintf(sd.dir, sizeof(sd.dir), "/tmp/shiptest-shipd-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(sd.dir));
	snprintf(sd.sock, sizeof(sd.sock), "%s/shipd.sock", sd.dir);
	snprintf(sd.log, sizeof(sd.log), "%s/shipd.log", sd.dir);
	snprintf(config_sock, sizeof(config_sock), "%s/configured.sock", sd.dir);

	const char *argv[32];
	int n = 0;
	argv[n++] = sa;
	argv[n++] = "-l";
	argv[n++] = sd.sock;
	/* It hands the program only TERM, PATH, USER, HOME and what -E
	 * names: keep a sanitizer build's settings. */
	static const char *const keep[] = {"ASAN_OPTIONS", "LSAN_OPTIONS",
	                                   "UBSAN_OPTIONS"};
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		if (getenv(keep[i])) {
			argv[n++] = "-E";
			argv[n++] = keep[i];
		}
	}
	argv[n++] = fx_shipd_bin();
	argv[n++] = "-v";
	argv[n++] = "-c";
	argv[n++] = "/dev/null";
	argv[n++] = "-s";
	argv[n++] = config_sock;
	argv[n++] = "--nats";
	argv[n++] = nd.url;
	argv[n] = NULL;
	const char *const env[] = {"NOTIFY_SOCKET", "WATCHDOG_USEC",
	                           "WATCHDOG_PID", NULL};
	sd.pid = fx_spawn((char *const *)argv, sd.log, env);
	ck_assert_int_gt(sd.pid, 0);
}

static void teardown_activation(void)
{
	int rc = shipd_cleanup(&sd);
	natsd_cleanup(&nd);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

static bool is_socket(void *arg)
{
	struct stat st;
	return stat(arg, &st) == 0 && S_ISSOCK(st.st_mode);
}

static bool log_has(const char *what)
{
	FILE *f = fopen(sd.log, "r");
	char line[1024];
	bool found = false;
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, what) != NULL;
	fclose(f);
	return found;
}

static struct shipc *connect_retry(const char *name)
{
	struct shipc *h = NULL;
	/* The first connection starts shipd; give it a few seconds (each
	 * try can wait for a hello up to libshipc's own timeout). */
	uint64_t end = fx_now_ms() + 10000;
	for (int i = 0; i < 50 && !h && fx_now_ms() < end; i++) {
		h = shipc_connect(sd.sock, name);
		if (!h)
			fx_sleep_ms(100);
	}
	ck_assert_msg(h != NULL, "connect %s: %s", sd.sock, strerror(errno));
	return h;
}

static void on_ping(struct shipc *h, const struct shipc_msg *m, int err,
                    void *arg)
{
	if (m)
		shipc_respond(h, m, "pong", 4);
}

START_TEST(test_socket_activation)
{
	ck_assert_msg(fx_wait(is_socket, sd.sock, 5000),
	              "systemd-socket-activate did not create %s", sd.sock);
	/* Started on demand: nothing but the listener so far. */
	fx_sleep_ms(100);
	ck_assert_msg(!log_has("using the socket passed by systemd"),
	              "shipd ran before the first connection");

	struct shipc *h = connect_retry("activation-test");
	ck_assert_msg(log_has("using the socket passed by systemd"),
	              "shipd did not log that it took the passed socket");
	ck_assert_msg(!is_socket(config_sock),
	              "shipd bound %s besides the passed socket", config_sock);

	struct shipc_status st;
	uint64_t end = fx_now_ms() + 10000;
	do {
		ck_assert_msg(shipc_status(h, &st) == 0, "status: %s",
		              strerror(errno));
		if (st.link == SHIPC_LINK_CONNECTED)
			break;
		fx_sleep_ms(50);
	} while (fx_now_ms() < end);
	ck_assert_int_eq(st.link, SHIPC_LINK_CONNECTED);
	/* systemd-socket-activate execs shipd in its own place. */
	ck_assert_int_eq(st.pid, sd.pid);
	ck_assert_uint_eq(st.clients, 1);
	ck_assert_str_eq(st.socket, sd.sock);

	/* The socket stays shipd's: a second app, and NATS through it. */
	struct shipc *h2 = connect_retry("activation-test-2");
	ck_assert_int_eq(shipc_status(h2, &st), 0);
	ck_assert_uint_eq(st.clients, 2);
	ck_assert_uint_ne(shipc_subscribe(h, "activation.ping", NULL, 0,
	                                  on_ping, NULL),
	                  0);
	struct shipc_msg *reply = NULL;
	/* h answers itself: callbacks run inside its blocking calls. */
	ck_assert_msg(shipc_request(h, "activation.ping", "ping", 4, 5000,
	                            &reply) == 0,
	              "request: %s", strerror(errno));
	ck_assert_uint_eq(reply->len, 4);
	ck_assert_mem_eq(reply->data, "pong", 4);
	shipc_msg_free(reply);
	shipc_close(h2);
	shipc_close(h);
}
END_TEST

static Suite *notify_suite(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = tcase_create("notify");
	tcase_add_checked_fixture(tc, setup_notify, teardown_notify);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_ready_after_listening);
	tcase_add_test(tc, test_status_tells_link_and_clients);
	tcase_add_test(tc, test_watchdog_pings);
	tcase_add_test(tc, test_watchdog_stops_with_the_process);
	tcase_add_test(tc, test_watchdog_is_the_loops);
	tcase_add_test(tc, test_stopping_on_sigterm);
	suite_add_tcase(s, tc);
	return s;
}

static Suite *activation_suite(void)
{
	Suite *s = suite_create("activation");
	TCase *tc = tcase_create("activation");
	tcase_add_checked_fixture(tc, setup_activation, teardown_activation);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_socket_activation);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* CK_RUN_SUITE=activation without systemd-socket-activate: skipped
	 * (77), not failed. */
	const char *only = getenv("CK_RUN_SUITE");
	if (only && !strcmp(only, "activation") && !socket_activate_bin()) {
		fprintf(stderr, "systemd-socket-activate not found: skipped\n");
		return 77;
	}
	SRunner *sr = srunner_create(notify_suite());
	srunner_add_suite(sr, activation_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
