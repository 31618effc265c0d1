/* SPDX-License-Identifier: MIT */
/* Test fixture: a real nats-server -js and a real shipd, each on a free
 * loopback port or a temporary socket, started and stopped by tests. */
#ifndef SHIP_TEST_FIXTURE_H
#define SHIP_TEST_FIXTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct shipc;

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

/* Fork a child that runs child(fd, arg) and then exits 0; fd is the write
 * end of a pipe whose read end is returned in *fd. The child is killed if
 * the test dies. Call it before the test opens a libshipc handle: a
 * handle has a thread, which the child would not have. Returns the pid
 * or -1. */
pid_t fx_fork(void (*child)(int fd, void *arg), void *arg, int *fd);
/* Read what a child writes on fd into msg (size bytes, NUL-terminated)
 * until it closes its end, close fd, then wait up to timeout_ms for its
 * exit (SIGKILL after). Its exit status as fx_wait_exit gives it. */
int fx_child_wait(pid_t pid, int fd, char *msg, size_t size, int timeout_ms);

/* data (len bytes, not NUL-terminated) as a string in buf, cut to fit
 * its size. Returns the length copied. */
size_t fx_strcopy(char *buf, size_t size, const void *data, size_t len);

/* Connect to the shipd at sock as name, then wait up to timeout_ms until
 * the handle's link to NATS is up (the handle is returned either way).
 * NULL with errno set if it did not connect. */
struct shipc *fx_connect(const char *sock, const char *name, int timeout_ms);

/* An app hosting services: its handle and a thread dispatching it. */
struct fx_app {
	struct shipc *h;
	pthread_t t;
	atomic_bool stop;
};

/* Start a thread dispatching h (which a takes over). 0, or -1 with errno
 * set if the thread did not start. */
int fx_app_start(struct fx_app *a, struct shipc *h);
/* Stop and join the thread, then close the handle. */
void fx_app_end(struct fx_app *a);

/* ---- Fleet topology: a hub cluster, leaf servers, a cuttable uplink ---- */

/* A TCP proxy in a thread of the test: listens on a free loopback port and
 * forwards each connection to the first of its target ports that accepts
 * (the one that worked last is tried first), so a leaf's uplink can be cut
 * without stopping the leaf. Fields up to ntargets are the caller's to
 * read; the rest belongs to fixture.c. */
#define FX_PROXY_TARGETS 8
#define FX_PROXY_LINKS 16

struct fx_proxy_link;

struct fx_proxy {
	int port;
	int targets[FX_PROXY_TARGETS];
	int ntargets;
	/* private */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int lfd, wake[2];
	int mode, next;
	unsigned asked, done;
	int nlinks;
	struct fx_proxy_link *links;
};

/* Listen on a free loopback port and forward to targets (1 to
 * FX_PROXY_TARGETS ports). 0, or -1 with errno set. */
int fx_proxy_start(struct fx_proxy *p, const int *targets, int ntargets);
/* Close every forwarded connection, and close new ones as soon as they
 * are accepted, until fx_proxy_restore(): the far end sees EOF at once.
 * Returns once the connections are closed. */
void fx_proxy_cut(struct fx_proxy *p);
/* Stop moving bytes but keep every connection open, and hold new ones
 * unconnected, until fx_proxy_restore(): a link that went silent, which
 * only pings find out. A side that closes meanwhile is closed alone; the
 * other learns it at the restore, as across a real partition. Returns
 * once nothing moves. */
void fx_proxy_hold(struct fx_proxy *p);
/* Forward again: held connections are connected to a target now, those
 * with a side closed are closed. */
void fx_proxy_restore(struct fx_proxy *p);
/* Connections open now (forwarded or held, either side still open). */
int fx_proxy_links(struct fx_proxy *p);
/* Close everything and join the thread; a zeroed or stopped proxy is
 * fine. */
void fx_proxy_stop(struct fx_proxy *p);

/* A nats-server run from a config file the fixture writes in dir: a node
 * of a hub cluster, or a leaf server with its own JetStream domain. Every
 * port is a free loopback one; http is the monitoring port (/varz /jsz
 * /leafz /routez). */
struct fx_node {
	pid_t pid;
	char name[80]; /* server_name; a leaf's JetStream domain too */
	int port;      /* clients */
	int http;
	int cluster;   /* route listener (hub nodes) */
	int leaf;      /* leafnode listener (hub nodes) */
	char dir[256]; /* node.conf, js/ (the store), nats.log */
	char url[64];
};

#define FX_HUB_MAX 5

/* A cluster of n nodes named <domain>1..<domain>n: JetStream in domain
 * <domain> (also the cluster's name), routes between all nodes, and a
 * leafnode listener on each. Each node advertises to leaves a leafnode
 * address where nothing answers (held open by dead_fd), because
 * nats-server 2.9.10 always tells a leaf its own leafnode address and the
 * leaf then reconnects there directly, around a proxy (see fixture.c). */
struct fx_hub {
	int n;
	char domain[80];
	char dir[256];
	int dead_fd, dead_port;
	struct fx_node node[FX_HUB_MAX];
};

/* Start a hub of n (1..FX_HUB_MAX) nodes in a temporary directory and wait
 * until every node names the same JetStream meta leader. 0, or -1 with
 * the nodes' logs on stderr; fx_hub_cleanup() either way. Like every
 * server here, the nodes die with the thread that started them. */
int fx_hub_start(struct fx_hub *h, int n, const char *domain);
/* The nodes' leafnode ports into ports (at most max); how many. */
int fx_hub_leaf_ports(const struct fx_hub *h, int *ports, int max);
/* Client URLs of the running nodes, comma-separated, into buf. */
void fx_hub_urls(const struct fx_hub *h, char *buf, size_t len);
/* Wait until every running node names the same meta leader, and copy its
 * name into leader (may be NULL). true if that happened in timeout_ms. */
bool fx_hub_wait_leader(struct fx_hub *h, char *leader, size_t len,
                        int timeout_ms);
/* The node named name (running or not), or NULL. */
struct fx_node *fx_hub_node(struct fx_hub *h, const char *name);
/* Stop every node, release the dead address, remove the directory. */
void fx_hub_cleanup(struct fx_hub *h);

/* Start a leaf server named name, JetStream domain name, in a temporary
 * directory, whose one leafnode remote lists nats-leaf://127.0.0.1:<port>
 * for each of ports (proxy ports, normally), reconnecting every second
 * (the 2.9.10 default, set explicitly; with a hub's dead address first in
 * its list, a lost uplink comes back after ~2 s), and, as the robot
 * profile, keeping its own streams' subjects (ship.events, ship.channel,
 * $KV, $O) from crossing the uplink. Returns once it accepts clients;
 * fx_leaf_wait_connected() waits for the uplink. 0 or -1. */
int fx_leaf_start(struct fx_node *l, const char *name, const int *ports,
                  int nports);
/* Whether the leaf has a leafnode connection up (its /leafz). */
bool fx_leaf_connected(struct fx_node *l);
bool fx_leaf_wait_connected(struct fx_node *l, int timeout_ms);
/* Stop the leaf and remove its directory. */
void fx_leaf_cleanup(struct fx_node *l);

/* Start a node again (stopping it first if it runs) with its config and
 * store; waits for its client port. 0 or -1. */
int fx_node_restart(struct fx_node *n);
/* SIGTERM (SIGKILL after 5 s) and reap. */
void fx_node_stop(struct fx_node *n);
/* SIGKILL and reap. */
void fx_node_kill(struct fx_node *n);
/* Append text (config lines, e.g. "ping_interval: \"1s\"\n") to the
 * node's config; it takes effect at fx_node_restart(). 0 or -1. */
int fx_node_conf_add(struct fx_node *n, const char *text);

/* GET http://127.0.0.1:port<path>; the body, NUL-terminated and cut to
 * len - 1 bytes, into buf. Bounded by 2 s. 0, or -1 if no 200 came. */
int fx_http_get(int port, const char *path, char *buf, size_t len);
/* The same for any answer: its status code (the body in buf), or -1 if
 * no HTTP answer came. */
int fx_http_status(int port, const char *path, char *buf, size_t len);
/* The string value of the first "key" after the first occurrence of
 * after (NULL: from the start) in the JSON text json, into out. true if
 * found. Good enough for the monitoring endpoints' flat answers. */
bool fx_json_str(const char *json, const char *after, const char *key,
                 char *out, size_t len);
/* The same for an integer value; -1 if not found. */
long long fx_json_int(const char *json, const char *after, const char *key);

#endif
