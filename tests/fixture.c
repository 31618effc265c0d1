/* SPDX-License-Identifier: MIT */
/* Starts and stops the real servers the integration tests talk to. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "fixture-internal.h"
#include "shipc.h"

uint64_t fx_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void fx_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

bool fx_wait(bool (*cond)(void *), void *arg, int timeout_ms)
{
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
	do {
		if (cond(arg))
			return true;
		fx_sleep_ms(10);
	} while (fx_now_ms() < end);
	return cond(arg);
}

int fx_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return ntohs(sa.sin_port);
}

bool fxi_tcp_up(void *arg)
{
	int port = *(int *)arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

/* Whether environment entry e names the variable of change c ("NAME" or
 * "NAME=VALUE"). */
static bool env_same_name(const char *e, const char *c)
{
	size_t n = strcspn(c, "=");
	return strncmp(e, c, n) == 0 && e[n] == '=';
}

/* environ with the changes applied (see fx_spawn); free the array only. */
static char **env_build(const char *const *changes)
{
	size_t n = 0, m = 0, k = 0;
	while (environ[n])
		n++;
	while (changes[m])
		m++;
	char **env = calloc(n + m + 1, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		bool changed = false;
		for (size_t j = 0; j < m && !changed; j++)
			changed = env_same_name(environ[i], changes[j]);
		if (!changed)
			env[k++] = environ[i];
	}
	for (size_t j = 0; j < m; j++)
		if (strchr(changes[j], '='))
			env[k++] = (char *)changes[j];
	return env;
}

pid_t fx_spawn(char *const argv[], const char *log, const char *const *env)
{
	/* Built before fork: the child of a threaded test only execs. */
	char **envp = env ? env_build(env) : NULL;
	if (env && !envp)
		return -1;
	pid_t pid = fork();
	if (pid != 0) {
		free(envp);
		return pid;
	}
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	setpgid(0, 0);
	/* Never outlive a test that crashed. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (envp)
		execvpe(argv[0], argv, envp);
	else
		execvp(argv[0], argv);
	_exit(127);
}

pid_t fxi_spawn(char *const argv[], const char *log)
{
	return fx_spawn(argv, log, NULL);
}

const char *fxi_nats_server_bin(void)
{
	const char *e = getenv("NATS_SERVER");
	if (e && *e)
		return e;
	if (access("/usr/sbin/nats-server", X_OK) == 0)
		return "/usr/sbin/nats-server";
	return "nats-server";
}

int natsd_restart(struct natsd *n)
{
	if (n->pid > 0) {
		/* Reap a server the test killed itself. */
		waitpid(n->pid, NULL, 0);
		n->pid = 0;
	}
	char port[16], store[300], log[300];
	snprintf(port, sizeof(port), "%d", n->port);
	snprintf(store, sizeof(store), "%s/js", n->dir);
	snprintf(log, sizeof(log), "%s/nats.log", n->dir);
	char *argv[32] = {(char *)fxi_nats_server_bin(), "-js", "-a", "127.0.0.1",
	                  "-p", port, "-sd", store};
	int argc = 8;
	for (int i = 0; n->extra && n->extra[i] && argc < 31; i++)
		argv[argc++] = (char *)n->extra[i];
	argv[argc] = NULL;
	n->pid = fxi_spawn(argv, log);
	if (n->pid < 0)
		return -1;
	/* Wait for the port; a failed start (port taken) ends early. */
	uint64_t end = fx_now_ms() + 10000;
	while (fx_now_ms() < end) {
		if (fxi_tcp_up(&n->port))
			return 0;
		if (waitpid(n->pid, NULL, WNOHANG) == n->pid) {
			n->pid = 0;
			return -1;
		}
		fx_sleep_ms(20);
	}
	return -1;
}

int natsd_start(struct natsd *n, int port)
{
	return natsd_start_args(n, port, NULL);
}

int natsd_start_args(struct natsd *n, int port, const char *const *extra)
{
	memset(n, 0, sizeof(*n));
	n->extra = extra;
	snprintf(n->dir, sizeof(n->dir), "/tmp/shiptest-nats-XXXXXX");
	if (!mkdtemp(n->dir))
		return -1;
	for (int tries = 0; tries < 5; tries++) {
		n->port = port ? port : fx_free_port();
		snprintf(n->url, sizeof(n->url), "nats://127.0.0.1:%d", n->port);
		if (natsd_restart(n) == 0)
			return 0;
		if (port)
			break;
	}
	return -1;
}

void fxi_stop_pid(pid_t *pid, int sig)
{
	if (*pid <= 0)
		return;
	kill(*pid, sig);
	/* Bounded: escalate to SIGKILL after 5 s. */
	for (int i = 0; i < 500; i++) {
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {
			*pid = 0;
			return;
		}
		fx_sleep_ms(10);
	}
	kill(*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	*pid = 0;
}

void natsd_stop(struct natsd *n)
{
	fxi_stop_pid(&n->pid, SIGTERM);
}

void fxi_rm_rf(const char *dir)
{
	if (!dir[0] || strncmp(dir, "/tmp/shiptest-", 14) != 0)
		return;
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

void natsd_cleanup(struct natsd *n)
{
	natsd_stop(n);
	fxi_rm_rf(n->dir);
}

static bool sock_up(void *arg)
{
	const char *path = arg;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", path);
	bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

bool fx_shipd_verbose = true;

const char *fx_shipd_bin(void)
{
	const char *e = getenv("SHIPD_BIN");
	return e && *e ? e : "shipd";
}

static int shipd_dir(struct shipdp *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "/tmp/shiptest-shipd-XXXXXX");
	if (!mkdtemp(s->dir))
		return -1;
	snprintf(s->sock, sizeof(s->sock), "%s/shipd.sock", s->dir);
	snprintf(s->log, sizeof(s->log), "%s/shipd.log", s->dir);
	return 0;
}

/* shipd's command line: argv has room for 64 entries. */
static void shipd_argv(const char **argv, struct shipdp *s, const char *url,
                       const char *const *extra)
{
	int n = 0;
	argv[n++] = fx_shipd_bin();
	if (fx_shipd_verbose)
		argv[n++] = "-v";
	argv[n++] = "-c";
	argv[n++] = "/dev/null";
	argv[n++] = "-s";
	argv[n++] = s->sock;
	argv[n++] = "--nats";
	argv[n++] = url;
	for (int i = 0; extra && extra[i] && n < 62; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
}

int shipd_spawn(struct shipdp *s, const char *url, const char *const *extra,
                const char *const *env)
{
	const char *argv[64];
	if (shipd_dir(s) < 0)
		return -1;
	shipd_argv(argv, s, url, extra);
	s->pid = fx_spawn((char *const *)argv, s->log, env);
	return s->pid < 0 ? -1 : 0;
}

int shipd_restart(struct shipdp *s, const char *url, const char *const *extra)
{
	const char *argv[64];
	shipd_argv(argv, s, url, extra);
	s->pid = fxi_spawn((char *const *)argv, s->log);
	if (s->pid < 0)
		return -1;
	uint64_t end = fx_now_ms() + 10000;
	while (fx_now_ms() < end) {
		if (sock_up(s->sock))
			return 0;
		if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
			s->pid = 0;
			return -1;
		}
		fx_sleep_ms(10);
	}
	return -1;
}

int shipd_start(struct shipdp *s, const char *url, const char *const *extra)
{
	if (shipd_dir(s) < 0)
		return -1;
	return shipd_restart(s, url, extra);
}

int shipd_stop(struct shipdp *s)
{
	if (s->pid <= 0)
		return -1;
	kill(s->pid, SIGTERM);
	int status = 0;
	for (int i = 0; i < 1000; i++) {
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		fx_sleep_ms(10);
	}
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
	return -1;
}

void shipd_kill(struct shipdp *s)
{
	fxi_stop_pid(&s->pid, SIGKILL);
}

void fxi_dump_log(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];
	if (!f)
		return;
	fprintf(stderr, "---- %s ----\n", path);
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fclose(f);
}

int shipd_cleanup(struct shipdp *s)
{
	int rc = 0;
	if (s->pid > 0)
		rc = shipd_stop(s);
	/* A sanitizer report or a crash at exit fails the test. */
	if (rc != 0)
		fxi_dump_log(s->log);
	/* Keep the log of a failed run visible in the test output. */
	if (getenv("SHIPTEST_KEEP")) {
		fprintf(stderr, "shipd log kept in %s\n", s->log);
		return rc;
	}
	fxi_rm_rf(s->dir);
	return rc;
}

long fx_rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kib = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* Whether every thread of pid is stopped ('T' in its stat). */
static bool all_stopped(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return false;
	bool all = true;
	int seen = 0;
	struct dirent *e;
	while (all && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char stat[128], line[512];
		snprintf(stat, sizeof(stat), "/proc/%d/task/%.16s/stat", (int)pid,
		         e->d_name);
		FILE *f = fopen(stat, "r");
		if (!f)
			continue; /* the thread ended */
		const char *close_paren = NULL;
		if (fgets(line, sizeof(line), f))
			close_paren = strrchr(line, ')');
		fclose(f);
		all = close_paren && close_paren[1] == ' ' &&
		      (close_paren[2] == 'T' || close_paren[2] == 't');
		seen++;
	}
	closedir(d);
	return all && seen > 0;
}

int fx_freeze(pid_t pid, int timeout_ms)
{
	if (kill(pid, SIGSTOP) != 0)
		return -1;
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
	while (!all_stopped(pid)) {
		if (fx_now_ms() >= end)
			return -1;
		fx_sleep_ms(1);
	}
	return 0;
}

int fx_wait_exit(pid_t pid, int timeout_ms)
{
	int status;
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
	do {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status)
			                         : 128 + WTERMSIG(status);
		fx_sleep_ms(10);
	} while (fx_now_ms() < end);
	return -1;
}

bool fx_wait_link(const char *sock, int timeout_ms)
{
	struct shipc *h = shipc_connect(sock, "fixture");
	if (!h)
		return false;
	struct shipc_status st = {0};
	uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
	do {
		if (shipc_status(h, &st) == 0 && st.link == SHIPC_LINK_CONNECTED)
			break;
		fx_sleep_ms(10);
	} while (fx_now_ms() < end);
	shipc_close(h);
	return st.link == SHIPC_LINK_CONNECTED;
}

int fx_up(struct natsd *n, struct shipdp *s, const char *const *extra)
{
	if (natsd_start(n, 0) < 0 || shipd_start(s, n->url, extra) < 0)
		return -1;
	return fx_wait_link(s->sock, 10000) ? 0 : -1;
}

int fx_down(struct natsd *n, struct shipdp *s)
{
	int rc = shipd_cleanup(s);
	natsd_cleanup(n);
	return rc;
}

pid_t fx_fork(void (*child)(int fd, void *arg), void *arg, int *fd)
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		child(p[1], arg);
		_exit(0);
	}
	close(p[1]);
	*fd = p[0];
	return pid;
}

int fx_child_wait(pid_t pid, int fd, char *msg, size_t size, int timeout_ms)
{
	size_t len = 0;
	ssize_t n;
	while (len < size - 1 && (n = read(fd, msg + len, size - 1 - len)) > 0)
		len += (size_t)n;
	msg[len] = '\0';
	close(fd);
	int st = fx_wait_exit(pid, timeout_ms);
	if (st < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return st;
}

size_t fx_strcopy(char *buf, size_t size, const void *data, size_t len)
{
	size_t n = len < size - 1 ? len : size - 1;
	if (n)
		memcpy(buf, data, n);
	buf[n] = '\0';
	return n;
}

struct shipc *fx_connect(const char *sock, const char *name, int timeout_ms)
{
	struct shipc *h = shipc_connect(sock, name);
	struct shipc_status st;
	for (int i = 0; h && i < timeout_ms / 25; i++) {
		if (shipc_status(h, &st) == 0 && st.link == SHIPC_LINK_CONNECTED)
			break;
		fx_sleep_ms(25);
	}
	return h;
}

static void *app_loop(void *arg)
{
	struct fx_app *a = arg;
	while (!atomic_load(&a->stop))
		if (shipc_dispatch(a->h, 50) < 0)
			fx_sleep_ms(10); /* not connected: do not spin */
	return NULL;
}

int fx_app_start(struct fx_app *a, struct shipc *h)
{
	a->h = h;
	atomic_init(&a->stop, false);
	int err = pthread_create(&a->t, NULL, app_loop, a);
	if (err) {
		errno = err;
		return -1;
	}
	return 0;
}

void fx_app_end(struct fx_app *a)
{
	atomic_store(&a->stop, true);
	pthread_join(a->t, NULL);
	shipc_close(a->h);
}
