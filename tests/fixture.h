/* SPDX-License-Identifier: MIT */
/* Test fixture: a real nats-server -js and a real shipd, each on a free
 * loopback port or a temporary socket, started and stopped by tests. */
#ifndef SHIP_TEST_FIXTURE_H
#define SHIP_TEST_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct natsd {
	pid_t pid;
	int port;
	const char *const *extra; /* more nats-server arguments, or NULL */
	char dir[256]; /* store and log */
	char url[64];
};

struct shipdp {
	pid_t pid;
	char dir[256];
	char sock[300];
	char log[300];
};

/* A TCP port nobody listens on right now. */
int fx_free_port(void);
/* Start nats-server -js on 127.0.0.1 (port 0: a free one) with a temporary
 * store; waits until it accepts connections. Returns 0 or -1. */
int natsd_start(struct natsd *n, int port);
/* The same with more nats-server arguments (kept for restarts). */
int natsd_start_args(struct natsd *n, int port, const char *const *extra);
/* Start again on the same port and store. */
int natsd_restart(struct natsd *n);
void natsd_stop(struct natsd *n);
void natsd_cleanup(struct natsd *n);

/* Whether shipd is started with -v (debug logs); the benchmark turns it off. */
extern bool fx_shipd_verbose;

/* Start shipd against url with extra arguments (NULL-terminated), on a
 * socket in a new temporary directory; waits until the socket answers. */
int shipd_start(struct shipdp *s, const char *url, const char *const *extra);
/* Like shipd_start, but with env applied to shipd's environment (as
 * fx_spawn does) and without waiting for the socket: returns once shipd
 * was forked (s->pid), so a test can watch it come up. */
int shipd_spawn(struct shipdp *s, const char *url, const char *const *extra,
                const char *const *env);
/* Start again on the same socket. */
int shipd_restart(struct shipdp *s, const char *url, const char *const *extra);
/* SIGTERM and wait; returns the exit status (or -1). */
int shipd_stop(struct shipdp *s);
void shipd_kill(struct shipdp *s);
/* Stop (SIGTERM) if running and remove its files; returns the exit
 * status of that stop, 0 if it was not running. */
int shipd_cleanup(struct shipdp *s);
/* The shipd binary the tests run: $SHIPD_BIN, else "shipd" from PATH. */
const char *fx_shipd_bin(void);
/* Run argv (argv[0] looked up in PATH) in its own process group, with
 * stdout and stderr appended to log; it is killed if the test dies. env
 * (NULL-terminated, may be NULL) changes the child's environment:
 * "NAME=VALUE" sets, a bare "NAME" unsets. Returns the pid or -1. */
pid_t fx_spawn(char *const argv[], const char *log, const char *const *env);
/* A test's servers: nats-server, then shipd with extra arguments, then
 * wait for shipd's first NATS connection. 0 or -1. */
int fx_up(struct natsd *n, struct shipdp *s, const char *const *extra);
/* Stop both and remove their files; shipd's exit status (0: clean). */
int fx_down(struct natsd *n, struct shipdp *s);
/* Wait until the shipd at sock has made its first NATS connection (it
 * answers on its socket before). true if it did within timeout_ms. */
bool fx_wait_link(const char *sock, int timeout_ms);
/* Resident set size of a process, in KiB. */
long fx_rss_kib(pid_t pid);

/* SIGSTOP pid and wait until every one of its threads has stopped: a
 * stop is not taken at once, and a server that answers one more request
 * after kill() returned makes a test see what it did not set up. 0, or
 * -1 if it was not stopped within timeout_ms. */
int fx_freeze(pid_t pid, int timeout_ms);

/* Exit status of a child (128+signal if killed), or -1 if still running
 * after timeout_ms. */
int fx_wait_exit(pid_t pid, int timeout_ms);
uint64_t fx_now_ms(void);
/* Poll cond every 10 ms for at most timeout_ms. */
bool fx_wait(bool (*cond)(void *), void *arg, int timeout_ms);
void fx_sleep_ms(int ms);

#endif
