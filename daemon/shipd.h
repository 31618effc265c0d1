/* SPDX-License-Identifier: MIT */
/* shipd's internal interfaces: one header, one banner per module. */
#ifndef SHIPD_H
#define SHIPD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <event2/event.h>
#include <jansson.h>
#include <nats/nats.h>

#include "ipc.h"

/* The structure a member is embedded in (an op or a stream in a block's
 * own structure), wherever in it the member is. */
#define NITEMS(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member)                                    \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)                          \
	for ((var) = TAILQ_FIRST(head);                                     \
	     (var) && ((tvar) = TAILQ_NEXT(var, field), 1); (var) = (tvar))
#endif

struct client;
struct sub;

/* ---- log.c ---- */

void log_init(int debug, int use_prefix);
void log_setverbose(int debug);
int log_getverbose(void);
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

/* ---- config.c ---- */

#define CONFIG_MAX_URLS 16
#define CONFIG_MAX_STREAMS 32

/* Which JetStream a block talks to: the server shipd is connected to
 * (the robot's own), or the hub's through it ($JS.<hub_domain>.API);
 * without hub_domain both are the local one. */
enum js_dom { JS_LOCAL, JS_HUB };
#define JS_DOMAIN_MAX 64

/* A JetStream stream the configuration declares ("stream = ..."). */
struct config_stream {
	char *name;
	char *subjects; /* comma separated */
	uint64_t max_age_s;
	int64_t max_msgs;
	int64_t max_bytes;
	bool memory;
	uint32_t replicas;
};

struct config {
	char *socket_path;
	char *socket_group;   /* NULL: the daemon's group */
	char *state_dir;      /* NULL: none (no object put journal) */
	unsigned socket_mode; /* permission bits of the socket file */
	char *nats_urls[CONFIG_MAX_URLS];
	int n_nats_urls;
	char *nats_name;
	char *nats_user;
	char *nats_password_file;
	char *nats_token_file;
	char *nats_nkey;           /* public key of the seed */
	char *nats_nkey_seed_file;
	char *nats_creds_file;
	bool nats_tls;
	char *nats_tls_ca;
	char *nats_tls_cert;
	char *nats_tls_key;
	uint32_t nats_connect_timeout_ms;
	uint32_t nats_reconnect_wait_min_ms;
	uint32_t nats_reconnect_wait_max_ms;
	uint32_t nats_reconnect_buffer;  /* bytes kept while reconnecting */
	uint32_t nats_dead_after_ms;     /* silence that proves a link dead */
	uint32_t max_frame;              /* bytes, header included */
	uint32_t client_output_limit;    /* bytes queued to one client */
	uint32_t max_answer;             /* bytes of one listing answer */
	uint32_t max_clients;
	uint32_t max_clients_per_uid;
	uint32_t max_subscriptions;      /* per client */
	uint32_t max_requests;           /* per client, in flight */
	uint32_t max_requests_total;     /* all clients, in flight */
	uint32_t client_memory_limit;    /* bytes held for one client */
	uint32_t memory_limit;           /* bytes held for all clients */
	uint32_t request_timeout_ms;     /* default for requests */
	uint32_t max_request_timeout_ms;
	uint32_t inbound_limit;          /* bytes queued from NATS to the loop */
	int log_level;                   /* 0 info, 1 debug */
	char *hub_domain;                /* NULL: no hub, all is local */
	enum js_dom events_domain;
	enum js_dom channels_domain;
	enum js_dom kv_domain;
	char *hub_buckets;               /* KV buckets on the hub */
	enum js_dom jobs_domain;
	char *hub_streams;               /* the hub's, sourcing ours */
	char *metrics_listen;            /* HOST:PORT of the HTTP server */
	char *metrics_socket;            /* or a Unix socket; neither: off */
	bool metrics_allow_remote;       /* a non-loopback metrics_listen */
	uint32_t metrics_max_connections;
	uint32_t metrics_timeout_ms;     /* to read a request and answer */
	uint32_t metrics_max_apps;       /* app label values, then "other" */
	uint32_t uplink_probe_ms;
	char *uplink_priority;           /* "STREAM:N, ..." */
	uint32_t uplink_rate_limit;      /* bytes/s; 0: none */
	struct config_stream streams[CONFIG_MAX_STREAMS];
	int n_streams;
	struct policy *policy;  /* the "allow" rules; NULL: none */
};

void config_defaults(struct config *c);
/* Parse path over what c holds; errors are printed to errs as
 * file:line: message. Returns 0, or -1 after printing every error found. */
int config_load(struct config *c, const char *path, FILE *errs);
/* Take into cur the values of next that can change at run time; report
 * every key that differs, and whether it was applied. */
void config_apply(struct config *cur, const struct config *next,
                  void (*report)(const char *key, bool applied, void *arg),
                  void *arg);
/* Parse one "key = value" assignment (also used for command-line
 * overrides); err gets a message on failure. */
int config_set(struct config *c, const char *key, const char *value,
               char *err, size_t errlen);
/* Checks between keys (after file and flags). */
int config_check(const struct config *c, char *err, size_t errlen);
/* Print the effective configuration in the file's syntax. */
void config_print(const struct config *c, FILE *f);
void config_finish(struct config *c);
bool js_domain_valid(const char *s);
/* The bytes one answer listing many items may take: max_answer, or
 * client_output_limit if that is lower (the client must take it whole). */
uint32_t config_answer_limit(const struct config *c);
/* Whether name is one of list's (separated by commas and blanks). */
bool config_listed(const char *list, const char *name);
/* A stream's priority in an uplink_priority list; not named: after all. */
#define CONFIG_PRIORITY_OTHER 10
int config_priority(const char *list, const char *name);
struct sockaddr_storage;
/* "IPv4:PORT" or "[IPv6]:PORT", numeric, into ss; a non-loopback address
 * only with remote. -1 with err. */
int config_parse_listen(const char *s, bool remote,
                        struct sockaddr_storage *ss, socklen_t *len,
                        char *err, size_t errlen);
/* Read a secret file (first line, trailing newline removed). */
char *config_read_secret(const char *path);

/* ---- mailbox.c: the one queue from nats.c threads into the loop ---- */

enum mail_kind {
	MAIL_SUB_MSG,      /* ptr: struct sub; msg */
	MAIL_SUB_COMPLETE, /* arg: the natsSubscription's ticket (pubsub.c) */
	MAIL_INBOX_MSG,    /* msg on the reply inbox */
	MAIL_LINK_EVENT,   /* ptr: natsConnection; arg: enum link_event */
	MAIL_LINK_READY,   /* the connect thread finished; ptr: natsConnection */
};

struct mail {
	enum mail_kind kind;
	void *ptr;
	natsMsg *msg;
	natsConnection *nc; /* msg's, counted as posted (link_msg_posted) */
	uint64_t posted; /* T.posted with this one (mailbox_post) */
	uint64_t arg;
	size_t bytes;
};

typedef void mail_fn(struct mail *m);

int mailbox_init(struct event_base *base, mail_fn *fn, size_t max_bytes);
void mailbox_finish(void);
/* Drop what is queued, and all that is posted from now on (at shutdown,
 * while nats.c is still there). */
void mailbox_discard(void);
/* From any thread. A droppable mail is refused (-1) while more than the
 * limit of bytes are queued; others are always taken. */
int mailbox_post(const struct mail *m, bool droppable);
void mailbox_set_limit(size_t max_bytes);
size_t mailbox_queued_bytes(void);
/* On the loop: nothing posted is waiting to be dispatched. */
bool mailbox_idle(void);
/* Messages nats.c has handed over since start (taken or dropped): proof
 * that its reader parses what the server sends. */
uint64_t mailbox_msgs_seen(void);

/* ---- natslink.c: the NATS connection ---- */

enum link_state {
	LINK_CONNECTING = 0,
	LINK_CONNECTED = 1,
	LINK_RECONNECTING = 2,
	LINK_CLOSED = 3,
};

enum link_event {
	LINK_EV_CONNECTED,
	LINK_EV_DISCONNECTED,
	LINK_EV_RECONNECTED,
	LINK_EV_CLOSED,
	LINK_EV_ERROR,
};

struct link_info {
	enum link_state state;
	uint64_t changed_ms;
	char url[256];
	char server_id[64];
	uint64_t rtt_us;
	uint64_t reconnects;
	int64_t max_payload;
	char last_error[256];
	/* Messages on the reply inbox, taken where nats.c parsed them (on
	 * the loop) or handed over by its delivery thread. */
	uint64_t replies_loop;
	uint64_t replies_mailbox;
};

/* Starts the connect thread; never blocks the loop. */
int link_start(const struct config *conf);
void link_stop(void);
/* The connection while it is connected, else NULL: nothing on the loop
 * calls nats.c on a connection that is not. */
natsConnection *link_conn(void);
bool link_connected(void);
/* natsMsg_Destroy, small messages without nats.c's collector thread
 * (from any thread). */
void link_msg_destroy(natsMsg *msg);
/* A message of nc was posted (mailbox_post does it, under its lock) or
 * dropped by its callback: replies overtake nothing that came before. */
uint64_t link_msg_posted(natsConnection *nc);
/* Keep a publish (ownership passes) until the link is back, within
 * nats_reconnect_buffer bytes; NATS_INSUFFICIENT_BUFFER past it. */
natsStatus link_hold(natsMsg *msg);
size_t link_held_bytes(void);
/* Bytes written to the connection that the server has not taken yet. */
size_t link_buffered(void);
const struct link_info *link_info(void);
/* The reply inbox prefix ("_INBOX.<nuid>"), "" before the link exists. */
const char *link_inbox(void);
/* What a subject is to the reply inbox: not in it; the reply inbox of
 * one request (an app answering a request publishes there); the inbox of
 * a multi wait (shipd's own: a discovery, a pull); or anything else in
 * it. Only the first two are an app's to reach. */
enum link_inbox_kind {
	LINK_INBOX_NONE,
	LINK_INBOX_REPLY,
	LINK_INBOX_WAIT,
	LINK_INBOX_OTHER,
};
enum link_inbox_kind link_inbox_kind(const char *subject);
/* url with its user information (user:password@, token@) as "***@". */
void link_url_redact(const char *url, char *out, size_t size);
void link_handle_mail(struct mail *m);

/* A wait for replies on the reply inbox (publish with reply set to
 * link_wait_inbox()). fn runs on the loop: with a message (ownership
 * passes) and NATS_OK; or with NULL and NATS_TIMEOUT, NATS_NO_RESPONDERS
 * or NATS_CONNECTION_DISCONNECTED, after which the wait is gone. A multi
 * wait stays after a message until cancelled or timed out; a single one
 * is gone after its one callback. */
struct link_wait;
typedef void link_reply_fn(void *arg, natsMsg *msg, natsStatus st);
struct link_wait *link_wait_new(uint32_t timeout_ms, bool multi,
                                link_reply_fn *fn, void *arg);
const char *link_wait_inbox(const struct link_wait *w);
void link_wait_rearm(struct link_wait *w, uint32_t timeout_ms);
/* No callback after this. NULL is accepted. */
void link_wait_cancel(struct link_wait *w);
/* Send what is still to come to another callback. */
void link_wait_retarget(struct link_wait *w, link_reply_fn *fn, void *arg);
/* After link_stop() and once nats.c's threads are done. */
void link_finish(void);
const char *link_state_name(enum link_state s);

/* ---- policy.c: who may do what ---- */

/* An app's identity, read from the kernel when it connects and fixed for
 * the connection's life. */
struct identity {
	uid_t uid;
	gid_t gid;
	pid_t pid;
	int n_groups;
	gid_t groups[64];   /* supplementary (SO_PEERGROUPS) */
	char user[64];      /* uid's name, or the number */
	char unit[256];     /* systemd unit of pid at connect, "" if none */
	bool privileged;    /* root or shipd's own user: may do everything */
};

/* The operations rules grant, and what their resource is. */
enum pol_op {
	POL_PUBLISH,      /* subject */
	POL_SUBSCRIBE,    /* subject pattern: a rule must cover all of it */
	POL_REQUEST,      /* subject */
	POL_EMIT,         /* the event's subject (prefix.type) */
	POL_CONSUME,      /* the subscription's subject pattern (prefix.pattern) */
	POL_CHANNEL,      /* channel name: send, listen, history */
	POL_KV_READ,      /* bucket: get, keys, history, watch, info */
	POL_KV_WRITE,     /* bucket: put, create, update, delete, purge */
	POL_KV_ADMIN,     /* bucket: create, delete */
	POL_STREAM_ADMIN, /* stream name: declare */
	POL_BEING,        /* being id: register, update, heartbeat, unregister */
	POL_OBJ_READ,     /* object bucket */
	POL_OBJ_WRITE,
	POL_OBJ_ADMIN,
	POL_JOBS_SUBMIT,  /* job queue: submit, get, list, counts */
	POL_JOBS_CLAIM,   /* job queue: claim, complete, fail */
	POL_JOBS_ADMIN,   /* job queue: create, delete, cancel, requeue */
	POL_SERVICE,      /* service name: host */
	POL_ADMIN,        /* "reload", "clients", "policy" */
	POL_MONITOR,      /* subject pattern: see other apps' traffic */
	POL_N
};
const char *pol_op_name(enum pol_op op);
int pol_op_parse(const char *name); /* -1 if unknown */

struct policy;      /* the rules of a configuration */
struct policy_view; /* the rules that name one identity */

/* An "allow" line of the configuration (file and line kept for show and
 * check); -1 with err on a malformed rule. */
int policy_add_rule(struct policy **p, const char *value, const char *file,
                    int line, char *err, size_t errlen);
void policy_free(struct policy *p);
/* The rules in the file's syntax, one "allow = ..." line each. */
void policy_print(const struct policy *p, FILE *f);
/* Rules as text, with their file:line ("file:12: allow = ..."), then the
 * quota lines ("file:14: quota = ..."); n set. */
char **policy_rules(const struct policy *p, size_t *n);
bool policy_enforced(const struct policy *p);
/* A "quota" line: limits on what one app (the connections of one uid and
 * systemd unit) holds together. */
enum quota_key {
	QUOTA_CONNECTIONS,
	QUOTA_SUBSCRIPTIONS, /* streams of any kind */
	QUOTA_REQUESTS,      /* in flight */
	QUOTA_BYTES,         /* held for its requests and streams */
	QUOTA_N
};
#define QUOTA_NONE UINT32_MAX /* no limit on that key */
struct quota {
	uint32_t max[QUOTA_N];
	char where[128]; /* "file:line" of the line */
};
const char *quota_key_name(enum quota_key k);
/* A "quota" line (WHO KEY=VALUE...); -1 with err if malformed. */
int policy_add_quota(struct policy **p, const char *value, const char *file,
                     int line, char *err, size_t errlen);
/* The quota lines, one "quota = ..." each, and how many. */
void policy_print_quotas(const struct policy *p, FILE *f);
size_t policy_quota_count(const struct policy *p);
/* The first quota line naming id into q; false if none does or id is
 * privileged (exempt). */
bool policy_quota(const struct policy *p, const struct identity *id,
                  struct quota *q);
/* A connection's snapshot (NULL p: no rules, all allowed). */
struct policy_view *policy_bind(const struct policy *p,
                                const struct identity *id);
void policy_view_free(struct policy_view *v);
/* Whether op on resource is allowed; rule gets the rule that allows it or
 * why not (e.g. "no rule grants publish on 'a.b' to user alice, unit
 * driver.service"). rule may be NULL. */
bool policy_allows(const struct policy_view *v, enum pol_op op,
                   const char *resource, char *rule, size_t rulelen);
/* Whether pattern covers every subject want matches (token by token; a
 * literal want: whether pattern matches it). */
bool policy_covers(const char *pattern, const char *want);

/* ---- control.c: the local socket and its clients ---- */

struct client_stats {
	uint64_t bytes_in, bytes_out;
	uint64_t frames_in, frames_out;
	uint64_t dropped;
};

/* An operation in flight for a client (a request waiting for NATS or
 * JetStream), embedded in the block's own structure. It is on its
 * client's list and counted against the client's limits from op_begin()
 * to op_end(); when the client goes, each op's cancel function runs once
 * (after op_end, so o->c is NULL there) and must stop the work and free
 * it without answering. A completion finds o->c NULL once the client is
 * gone and answers nobody. */
struct op;
typedef void op_cancel_fn(struct op *o);
struct op {
	TAILQ_ENTRY(op) entry;
	struct client *c; /* NULL once over or cancelled */
	uint64_t id;
	op_cancel_fn *cancel;
	size_t held; /* bytes charged to c (op_hold), given back by op_end */
};

/* A stream a client opened (subscription, consumer, watch, ...), named by
 * the id of the request that opened it and embedded in the block's own
 * structure. The socket layer keeps every client's streams in one map,
 * so an id names at most one open stream of any kind. */
struct stream;
struct stream_kind {
	const char *name;
	/* The app closed it (Unsubscribe): end it, with a StreamEnd. */
	void (*end)(struct stream *s);
	/* The client is gone: stop it and free it, telling nobody. Runs
	 * after stream_close(), so s->c is NULL there. */
	void (*gone)(struct stream *s);
};
struct stream {
	const struct stream_kind *kind;
	struct client *c; /* NULL once closed */
	uint64_t id;
	size_t held; /* bytes charged to c, given back by stream_close */
};

/* The connections of one uid and unit, counted together for "quota". */
struct app;

struct client {
	TAILQ_ENTRY(client) entry;
	TAILQ_ENTRY(client) dirty_entry;
	TAILQ_ENTRY(client) paused_entry;
	TAILQ_ENTRY(client) reap_entry;
	uint64_t cid;
	int fd;
	struct event *ev_read;
	struct event *ev_write;
	uid_t uid;
	gid_t gid;
	pid_t pid;
	struct identity id;      /* read at accept, fixed */
	struct policy_view *pol; /* the rules bound at accept */
	uint64_t denied;         /* requests refused by policy */
	uint32_t denied_seen[16]; /* hashes of denials logged already */
	char name[64];
	bool hello;
	bool dirty;
	bool closing;   /* write what is queued, then close */
	bool dead;      /* closed: freed at the top of the next loop turn */
	bool want_write;
	bool paused;    /* not read until NATS takes what waits for it */
	struct ipc_buf in;
	struct ipc_buf out;
	struct ipc_idmap streams; /* stream id -> struct stream */
	TAILQ_HEAD(, op) ops;
	uint32_t n_requests; /* ops in flight */
	size_t held;         /* bytes held for its ops and streams */
	uint32_t n_subs;
	struct app *app;     /* its app's counters (uid + unit); NULL if exempt */
	struct quota quota;  /* the app's quota, bound at accept */
	struct client_stats st;
	uint64_t connected_ms;
	int mapp;                  /* its app label's slot (metrics.c) */
	struct ipc_idmap pending;  /* request id -> when it came (metrics.c) */
};

int control_init(struct event_base *base, const struct config *conf);
void control_finish(void);
void control_stop_accepting(void);
/* Queue a frame to a client. Replies may exceed the soft output limit up
 * to twice it; past that the client is closed. Returns 0 or -1. */
int client_send(struct client *c, const Ship__ServerFrame *f);
/* Queue a push; refused (-1) above the soft limit, so the caller drops. */
int client_push(struct client *c, const Ship__ServerFrame *f);
void client_error(struct client *c, uint64_t id, Ship__Code code,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Whether c's policy allows op on resource. If not, answers id with
 * PERMISSION_DENIED naming both, counts it, logs it once per client and
 * denial, and returns false. */
bool client_allowed(struct client *c, uint64_t id, enum pol_op op,
                    const char *resource);
/* The same for an operation that may have reached NATS: with unknown (and
 * code TIMEOUT or UNAVAILABLE) the answer has outcome_unknown set and its
 * message says the operation may have been applied. */
void client_error_ex(struct client *c, uint64_t id, Ship__Code code,
                     bool unknown, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
struct js_err;
/* Answer e (its code and text; e->unknown sets outcome_unknown). */
void client_js_error(struct client *c, uint64_t id, const struct js_err *e);
void client_ok(struct client *c, uint64_t id);
/* Start o as request id of c, or refuse it, answered, at max_requests. */
bool op_begin(struct op *o, struct client *c, uint64_t id,
              op_cancel_fn *cancel);
/* The same without the limit: work shipd starts for a client itself. */
void op_track(struct op *o, struct client *c, uint64_t id,
              op_cancel_fn *cancel);
/* o is over: no longer counted or cancelled, what it held given back.
 * NULL-safe, idempotent. */
void op_end(struct op *o);
/* Charge n bytes shipd will hold for o (reserve before the work), or
 * refuse it, answered (RESOURCE_EXHAUSTED), past client_memory_limit or
 * memory_limit: then o is still the caller's to free. */
bool op_hold(struct op *o, size_t n);
/* The same for a stream, unanswered (the caller ends the stream), and
 * giving back part of it. */
bool stream_hold(struct stream *s, size_t n);
void stream_unhold(struct stream *s, size_t n);
/* Open s as stream id of c. Refused (answered, false) if id is 0 or
 * names an open stream, or c has max_subscriptions streams. */
bool stream_open(struct stream *s, const struct stream_kind *k,
                 struct client *c, uint64_t id);
/* s is over: its id is free again. NULL-safe, idempotent. */
void stream_close(struct stream *s);
/* Send s's last frame (StreamEnd) to its client, if it is still there:
 * code and why (NULL: none), the counts, and outcome_unknown. The
 * caller closes the stream. */
void stream_end_send(struct stream *s, Ship__Code code, bool unknown,
                     const char *why, uint64_t delivered, uint64_t dropped);
/* Stream id of c if it is of kind k, else NULL. */
struct stream *stream_find(struct client *c, uint64_t id,
                           const struct stream_kind *k);
/* Write out what was queued to clients during this loop turn. Never
 * frees a client: one that must go is closed at the top of a later
 * callback. */
void control_flush(void);
unsigned control_client_count(void);
/* Where clients connect: the bound path, or the socket systemd passed. */
const char *control_socket_path(void);
void control_shutdown_clients(void);
/* fn for every connected client (it must not close one). */
void control_each_client(void (*fn)(struct client *c, void *arg), void *arg);
uint32_t control_requests_in_flight(void);
size_t control_held_bytes(void);
/* A listening Unix socket at path (its directory made 0750 if missing, a
 * stale socket removed, a live one refused), with group (NULL: ours) and
 * mode; -1 after logging why. */
int control_listen_unix(const char *path, const char *group, unsigned mode);

/* ---- blocks.c: the table of building blocks ---- */

/* One kind of request: f->body_case is the block's, and so is answering
 * f->id (or not, for fire-and-forget). */
typedef void block_request_fn(struct client *c, const Ship__ClientFrame *f);
struct block_request {
	Ship__ClientFrame__BodyCase kind;
	block_request_fn *fn;
	/* It carries a payload to NATS (publish, KV write, emit, ...): while
	 * NATS takes nothing, a client whose next frame is one is paused
	 * there, and the other clients go on. */
	bool payload;
};

/* A building block. Its requests' ops and its streams are the socket
 * layer's to cancel and end when a client goes (struct op, struct
 * stream); client_gone is for anything else the block keeps per client,
 * and runs after those. */
struct block {
	const char *name;
	const struct block_request *requests; /* ends with kind 0 */
	void (*client_gone)(struct client *c);
	void (*link_changed)(bool up); /* the NATS link came up or went down */
	void (*finish)(void);          /* at shutdown, once clients are gone */
	/* At shutdown, once clients are gone: work that should reach NATS
	 * before shipd stops (jobs given back) is still on its way. */
	bool (*busy)(void);
	/* At shutdown, before clients are closed: stop taking new work, and
	 * say whether work in flight still needs the clients (called again
	 * until no block says so, for a bounded time). */
	bool (*drain)(void);
};

extern const struct block admin_block, pubsub_block, kv_block,
	registry_block, events_block, channels_block, obj_block, jobs_block,
	svc_block, uplink_block, monitor_block;

/* Index the table's request kinds (fatal if two blocks claim one). */
void blocks_init(void);
/* The handler of a request kind, or NULL. */
block_request_fn *blocks_handler(int kind);
/* Whether a request kind carries a payload to NATS. */
bool blocks_payload(int kind);
void blocks_client_gone(struct client *c);
void blocks_link_changed(bool up);
void blocks_finish(void);
/* Whether some block's work should still reach NATS (see busy). */
bool blocks_busy(void);
/* Whether some block drains work that still needs the clients. */
bool blocks_drain(void);
/* The index in the table of the block handling a request kind, or -1;
 * the number of blocks, and the name of the block at an index (NULL out
 * of range). */
int blocks_index(int kind);
size_t blocks_count(void);
const char *blocks_name(int i);

/* ---- metrics.c: the figures of requests, apps and the process ---- */

struct evbuffer;
/* After blocks_init(), with the event base (the loop's turns are timed). */
int metrics_init(struct event_base *b, const struct config *c);
void metrics_finish(void);
uint64_t metrics_now_ns(void);
/* c's app label is known (at accept, and again after its hello). */
void metrics_client_named(struct client *c);
/* A request of kind arrives; with an id its answer is awaited and timed.
 * metrics_request_done() once its handler returned. */
void metrics_request(struct client *c, int kind, uint64_t id);
void metrics_request_done(void);
/* A frame answering id (0: a fire-and-forget request's error) with code
 * goes to c. */
void metrics_answer(struct client *c, uint64_t id, Ship__Code code);
void metrics_denied(struct client *c);
/* c is going: what it awaited is forgotten, its figures kept by its app. */
void metrics_client_gone(struct client *c);
/* How long since the loop last turned a steady timer, and its longest
 * turn of the last 30 to 60 seconds. */
uint64_t metrics_loop_idle_ms(void);
uint64_t metrics_loop_worst_ms(void);
/* Every figure, in the Prometheus text format (0.0.4). */
void metrics_render(struct evbuffer *out);

/* ---- httpd.c: the metrics and health HTTP server ---- */

/* Listen where metrics_listen and metrics_socket say (neither: off). */
int httpd_init(struct event_base *b, const struct config *c);
void httpd_finish(void);
/* Whether JetStream answered the last probe on the current link; why not
 * into why (may be NULL). */
bool httpd_jetstream_ready(char *why, size_t size);

/* ---- jobs.c: the JobQueue ---- */

/* What a queue this shipd follows (some local app claims from it) holds,
 * as its index says. */
struct jobs_depth {
	uint64_t queued, running, dead; /* jobs */
	uint64_t waiting_claims;        /* local claims waiting for a job */
	uint64_t held;                  /* jobs local workers hold */
};
typedef void jobs_depth_fn(const char *queue, const struct jobs_depth *d,
                           void *arg);
void jobs_each_depth(jobs_depth_fn *fn, void *arg);

/* ---- monitor.c: apps' traffic shown to an operator ---- */

enum mon_dir { MON_PUBLISH, MON_REQUEST, MON_REPLY, MON_DELIVER };
/* Monitors open; the taps test it before calling monitor_event. */
extern unsigned monitors_open;
/* A message of app from on subject (its payload data, len bytes). */
void monitor_event(const struct client *from, enum mon_dir dir,
                   const char *subject, const void *data, size_t len);
#define MONITOR_TAP(from, dir, subject, data, len)                         \
	do {                                                               \
		if (monitors_open)                                         \
			monitor_event(from, dir, subject, data, len);      \
	} while (0)

/* ---- pubsub.c: publish, subscribe, request/reply ---- */

struct request;

/* The hot path: a Publish frame read in place, without protobuf-c. */
void pubsub_publish_view(struct client *c, const struct ipc_publish_view *v);
void pubsub_handle_mail(struct mail *m);
Ship__Code pubsub_code(natsStatus s);
/* The link has a connection: create what waited for it. */
/* At shutdown: drop nats.c objects, then (after nats.c stopped) free. */
void pubsub_release_nats(void);
void pubsub_finish(void);
uint32_t pubsub_sub_count(void);
/* Build and send a message, with the headers of m if it has any (m may
 * be NULL); while the link is down it is kept (link_hold). */
natsStatus pubsub_send(const char *subject, const char *reply,
                       const void *data, size_t len, const Ship__Msg *m);

/* A NATS message as a Ship__Msg that points into it (and into hs). */
#define PUBSUB_MAX_HEADERS 256
struct pubsub_hdrs {
	Ship__Header *ptrs[PUBSUB_MAX_HEADERS];
	Ship__Header h[PUBSUB_MAX_HEADERS];
	size_t n;
	const char **keys;
};
void pubsub_msg_view(Ship__Msg *m, struct pubsub_hdrs *hs, natsMsg *msg);
void pubsub_hdrs_free(struct pubsub_hdrs *hs);

/* A subscription of shipd's own (no app's stream, no policy): fn gets
 * each message on the loop (ownership passes). It is made again on every
 * connection until drained or ended. NULL if out of memory. */
typedef void pubsub_own_fn(void *arg, natsMsg *msg);
struct sub *pubsub_own(const char *subject, const char *queue,
                       pubsub_own_fn *fn, void *arg);
/* Take nothing new; what the server sent before it saw that still comes
 * (nats.c's drain, up to timeout_ms). */
void pubsub_own_drain(struct sub *s, uint32_t timeout_ms);
/* Drained: nothing more can come. */
bool pubsub_own_drained(const struct sub *s);
/* No callback after this; pubsub frees it. NULL is accepted. */
void pubsub_own_end(struct sub *s);

/* ---- kv.c: KV buckets and the noesis-ship stores ---- */


struct js_err;        /* jetstream.c, below */
struct js_stream_cfg;

#define KV_MAX_HISTORY 64
#define KV_NAME_MAX 256
#define KV_BUCKET_MAX 252 /* "KV_" + 252 = 255, a stream name's limit */
#define KV_BUCKET_RULE \
	"1 to 252 letters, digits, _ and -: with KV_ a stream name, at most 255"

/* Names as nats.go checks them (nats.c 3.4.1 also accepts '\': not us). */
bool kv_bucket_valid(const char *s);
bool kv_key_valid(const char *s);
/* A key that may hold the wildcards * and > (watch, keys filter). */
bool kv_pattern_valid(const char *s);

/* One entry, borrowed for the duration of a callback. */
struct kv_entry {
	const char *key;
	const void *value;
	size_t len;
	uint64_t revision;   /* stream sequence */
	uint64_t created_ns; /* Unix ns */
	uint64_t delta;      /* entries pending after this one */
	Ship__KvOp op;
};

/* A KV operation in flight on NATS; cancelled, its callback never runs. */
struct kv_req;
/* e is the entry (also a DEL/PURGE marker: look at e->op), or NULL with
 * err set (NOT_FOUND when there is no entry at all). */
typedef void kv_get_fn(void *arg, const struct kv_entry *e,
                       const struct js_err *err);
typedef void kv_put_fn(void *arg, uint64_t revision, const struct js_err *err);
/* NULL (err set, fn never called) if it could not start; else fn runs
 * once, later, unless cancelled. */
struct kv_req *kv_get(const char *bucket, const char *key, uint64_t revision,
                      kv_get_fn *fn, void *arg, struct js_err *err);
/* op: a Ship__KvWriteOp; expected: the revision UPDATE expects. CREATE
 * over a DEL/PURGE marker becomes an update of the marker. A lost
 * compare-and-swap is WRONG_REVISION, its text says the current revision
 * ("current revision N"). Starts like kv_get. */
struct kv_req *kv_put(const char *bucket, const char *key, int op,
                      const void *value, size_t len, uint64_t expected,
                      kv_put_fn *fn, void *arg, struct js_err *err);
/* Purge key only if its last revision is still revision (else
 * WRONG_REVISION): for shipd's own clean-ups that must not race a write. */
struct kv_req *kv_purge_at(const char *bucket, const char *key,
                           uint64_t revision, kv_put_fn *fn, void *arg,
                           struct js_err *err);
void kv_req_cancel(struct kv_req *r);
/* RFC 3339 (Z or an offset, any fraction) to Unix ns; 0 if unreadable. */
uint64_t kv_parse_time_ns(const char *s);
/* The current revision named in a WRONG_REVISION text, 0 if none. */
uint64_t kv_current_revision(const struct js_err *e);
/* The ADR-8 stream config of a bucket (free with js_stream_cfg_finish). */
int kv_bucket_cfg(struct js_stream_cfg *cfg, const Ship__KvBucketConfig *bc,
                  struct js_err *err);
/* Ensure a bucket exists; an existing one with other settings is used as
 * it is (noesis-ship's get-or-create) when tolerant. fn runs once, also
 * after kv_finish (with an error): arg must stay valid until then. */
typedef void kv_ensure_fn(void *arg, const struct js_err *err);
int kv_ensure(const char *bucket, uint32_t history, uint64_t ttl_ms,
              bool tolerant, kv_ensure_fn *fn, void *arg);
/* The same for a whole configuration (kv_bucket_cfg's). */
int kv_ensure_cfg(const struct js_stream_cfg *cfg, bool tolerant,
                  kv_ensure_fn *fn, void *arg);
void kv_set_err(struct js_err *e, Ship__Code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The error says the bucket's stream does not exist. */
bool kv_no_stream(const struct js_err *e);
/* Whose JetStream keeps bucket: jobs_domain for job queues, the hub for
 * hub_buckets, else kv_domain. */
enum js_dom kv_dom(const char *bucket);
/* Forget that a bucket exists (it is looked up again on next use). */
void kv_forget_bucket(const char *b);

/* ---- kvwatch.c: watches, and keys/history/values collected by one ---- */

struct kv_watch_spec {
	const char *bucket;
	const char *pattern; /* NULL or "": every key */
	bool include_history;
	bool updates_only;
	bool ignore_deletes;
	bool meta_only;
};

/* Open a watch as stream id of c; answers the request. */
void kvwatch_open(struct client *c, uint64_t id, const struct kv_watch_spec *s);
/* -1 if c has no watch id. */
int kvwatch_stop(struct client *c, uint64_t id);

/* Collect the initial entries of a watch, then end it: fn gets them
 * (borrowed) or an error. Bounded by max_bytes of keys and values. */
struct kv_collect;
typedef void kv_collect_fn(void *arg, const struct kv_entry *entries,
                           size_t n, const struct js_err *err);
struct kv_collect *kv_collect(const struct kv_watch_spec *s, size_t max_bytes,
                              kv_collect_fn *fn, void *arg);
void kv_collect_cancel(struct kv_collect *k);

/* Follow a bucket for shipd itself: fn gets every entry (the last of
 * each key, then every change; borrowed for the call), then e and err
 * NULL once the first values are in, and err set when the follow ends
 * (the bucket is gone): the follow is freed after that call. It resumes
 * by itself across outages, after the last entry it gave. fn must not
 * cancel the follow. */
struct kv_follow;
typedef void kv_follow_fn(void *arg, const struct kv_entry *e,
                          const struct js_err *err);
struct kv_follow *kv_follow(const struct kv_watch_spec *s, kv_follow_fn *fn,
                            void *arg);
void kv_follow_cancel(struct kv_follow *k);

void kvwatch_link_changed(bool up);
void kvwatch_finish(void);

/* The same ordered-consumer watch on another block's stream: push sends
 * one message (NULL: the end-of-initial marker) to the app and returns
 * client_push's result; skip says which messages the app never sees. */
typedef int kvwatch_push_fn(struct client *c, uint64_t id, natsMsg *msg,
                            uint64_t ns);
typedef bool kvwatch_skip_fn(natsMsg *msg, bool ignore_deletes);
struct stream_watch_spec {
	const char *bucket; /* named in errors */
	const char *stream;
	const char *filter;
	size_t prefix_len;  /* subjects are longer than this */
	bool include_history;
	bool updates_only;
	bool ignore_deletes;
	bool no_marker;     /* no end-of-initial marker */
	kvwatch_push_fn *push;
	kvwatch_skip_fn *skip;
};
void kvwatch_open_stream(struct client *c, uint64_t id,
                         const struct stream_watch_spec *s);

/* ---- registry.c: being registry, ship_config, ship_health ---- */


/* ---- uplink.c: the fleet uplink, as shipd sees it ---- */

/* Start watching it (with hub_domain set); after the config and loop. */
/* uplinkcap.c: uplink_priority and uplink_rate_limit, on the hub's
 * sourcing consumers on the robot's server (called by uplink.c). */
void uplinkcap_init(void);
void uplinkcap_link_changed(bool linked);
void uplinkcap_tick(void);
/* The uplink went up or down. */
void uplinkcap_uplink(bool up);
/* A robot stream a hub stream sources, with its mean message size. */
void uplinkcap_sourced(const char *stream, uint64_t mean);
void uplinkcap_finish(void);
/* Fill o's priority, consumers, pending, rate_limit and held. */
void uplinkcap_describe(const char *stream, Ship__UplinkStream *o);
void uplink_init(void);
/* Fill st for a status reply; streams point into buf and ptrs (max
 * entries), valid until the loop turns. */
void uplink_status(Ship__UplinkStatus *st, Ship__UplinkStream *buf,
                   Ship__UplinkStream **ptrs, size_t max);

/* ---- events.c: EventBus and Channels ---- */

/* A Nats-Msg-Id's length at most (what shipc_emit_result holds). */
#define EVENTS_MSG_ID_MAX 127

/* Publish json to subject with Nats-Msg-Id and answer id with an
 * EmitReply once the stream acknowledged it (or an error). */
void events_publish(struct client *c, uint64_t id, const char *subject,
                    const char *json, const char *msg_id, const char *stream);
/* An event of shipd's own (type "job.queued", ...) in the ShipEvent
 * envelope to ship.events.<type>, not waited for: a failure is logged.
 * msg_id NULL: none. */
void events_emit_system(const char *type, const char *source,
                        const char *payload_json, const char *corr,
                        const char *msg_id);
/* A ShipEvent of type from source, stamped now with a new correlation
 * id, appended to b; payload_json is valid JSON text, or NULL or "" for
 * null. */
void events_envelope(struct ipc_buf *b, const char *type, const char *source,
                     const char *payload_json);
/* RFC 3339 UTC with nanoseconds and +00:00, as noesis-ship writes. */
void events_timestamp(char *buf, size_t size);
/* nchars random lowercase hex digits (buf has nchars + 1 bytes). */
void events_random_hex(char *buf, size_t nchars);
bool events_token_valid(const char *s);
void events_free_delivery(Ship__EventDelivery *d);
json_t *events_consumer_config(const char *durable, const char *filter,
                               Ship__DeliverFrom from, uint64_t start_seq,
                               uint64_t start_time_ms, uint32_t ack_wait_ms,
                               int32_t max_deliver, const uint32_t *backoff,
                               size_t n_backoff);
/* Why a default stream (SHIP_EVENTS, CHANNELS) does not match, or "". */
const char *events_default_problem(const char *stream);

/* ---- channels.c: conversations on CHANNELS ---- */


/* ---- consumer.c: pull consumers fed by the app's credit ---- */

struct consumer;
/* Fill in the parsed envelope of a delivery (d->data is the raw message);
 * free what that allocated. skip: filter a message out (acked, unseen). */
typedef void consumer_describe_fn(struct consumer *k, natsMsg *msg,
                                  Ship__EventDelivery *d);
typedef void consumer_free_fn(Ship__EventDelivery *d);
typedef bool consumer_skip_fn(struct consumer *k, natsMsg *msg);

struct consumer_spec {
	enum js_dom dom;     /* whose JetStream keeps the stream */
	const char *stream;
	const char *durable; /* NULL: ephemeral */
	const char *filter;
	const char *agent;   /* channels: whose own messages to skip */
	bool auto_ack;
	uint32_t credit;
	json_t *config;      /* the consumer config sent to JetStream */
	consumer_describe_fn *describe;
	consumer_free_fn *free_delivery;
	consumer_skip_fn *skip;
	bool update;         /* a durable's other settings are applied */
	bool shared;         /* a durable may be pulled by others that share */
	bool fixed;          /* the app names no settings (channels): no
	                      * update or shared to suggest in errors */
};

struct consumer {
	struct stream st; /* st.c is NULL once the app is gone */
	TAILQ_ENTRY(consumer) entry;
	enum js_dom dom;
	char *stream;
	char *name;       /* durable, or the server's name for an ephemeral */
	char *filter;
	char *agent;
	json_t *config;
	bool durable;
	bool auto_ack;
	bool ready;       /* exists on the server */
	bool ready_once;  /* the app got its OK */
	uint64_t credit;  /* messages the app still takes */
	uint32_t outstanding; /* asked for in the pull in flight */
	uint32_t batch_got;   /* received of it */
	uint64_t delivered;
	uint64_t next_token;
	struct ipc_idmap acks; /* token -> ack subject */
	struct js_call *create_call;
	/* One wait (one NATS subscription) for the consumer's pulls, kept
	 * from pull to pull; gone when the link fails it, made again. */
	struct link_wait *pull_wait;
	struct event *later; /* pull again once the app's socket drains */
	struct event *retry; /* look the consumer up again (backoff) */
	consumer_describe_fn *describe;
	consumer_free_fn *free_delivery;
	consumer_skip_fn *skip;
	bool update, shared, fixed; /* from the spec */
	bool updating;        /* the create in flight changes a durable */
	bool stream_new;      /* the stream was found missing: when it is
	                       * back it is another one */
	uint64_t created_ns;  /* when the server made the consumer */
	uint64_t last_seq;    /* stream seq of the last delivery */
	uint64_t lost_ms;     /* since when the stream is missing, or 0 */
	unsigned fails;       /* lookups in a row without a delivery */
	struct durable *use;  /* the durable in use by it (consumer.c) */
	TAILQ_ENTRY(consumer) use_entry; /* its other users */
};

/* Open a consumer as stream id of c; answers the app (OK once it exists
 * on the server, or an error). NULL if refused at once (answered). */
struct consumer *consumer_open(struct client *c, uint64_t id,
                               const struct consumer_spec *spec);
struct consumer *consumer_find(struct client *c, uint64_t id);
void consumer_credit(struct consumer *k, uint32_t credit);
/* -1 if token is unknown (already acked, or never given). */
int consumer_ack(struct consumer *k, uint64_t token, Ship__AckKind kind,
                 uint32_t nak_delay_ms);
void consumer_end(struct consumer *k, Ship__Code code, const char *why);
void consumer_link_changed(bool up);
void consumer_finish(void);

/* ---- durable.c: durables in use, and their settings ---- */

/* A durable (stream and consumer name) that consumers of this shipd pull:
 * one app's, or shared by all of them if each asked for it. */
struct durable;
struct durable *durable_find(const char *stream, const char *name);
/* k (its stream and name set) is one more user; -1 if out of memory. */
int durable_take(struct consumer *k, bool shared);
/* k is no user any more; NULL-safe about k->use. */
void durable_release(struct consumer *k);
/* Another subscription has sp's durable and they do not both share it:
 * refused, answered with CONFLICT, true. */
bool durable_busy(struct client *c, uint64_t id,
                  const struct consumer_spec *sp);
void durable_finish(void);

/* What differs between a durable's settings (have, its config as the
 * server gives it) and a request's (want): the settings an app names,
 * not its start. fixed: some difference no update can change. */
struct durable_diff {
	char text[400];
	size_t n;
	unsigned count;
	bool fixed;
};
void durable_diff(json_t *have, json_t *want, struct durable_diff *d);
/* have with want's settings: what an update sends (its start kept). */
json_t *durable_updated_config(json_t *have, json_t *want);
/* A string member of a JSON object, "" if there is none. */
const char *durable_str(json_t *obj, const char *key);

/* ---- jetstream.c: JetStream calls that never block the loop ---- */

struct js_err {
	Ship__Code code;
	int err_code; /* JetStream's own, 0 if none */
	char text[256];
	/* A write was sent and no answer came (TIMEOUT, or the connection
	 * lost): it may have been applied. */
	bool unknown;
	/* Nobody took the request (no responders): on an API subject,
	 * nothing answers that domain's API at all (unreachable); on a
	 * publish, no stream takes the subject. */
	bool no_responders;
	bool unreachable;
};

struct js_call;
/* reply is the API's JSON answer (borrowed) or NULL with err set. */
typedef void js_api_fn(void *arg, json_t *reply, const struct js_err *err);
typedef void js_pub_fn(void *arg, uint64_t seq, bool duplicate,
                       const struct js_err *err);

/* $JS.API.<what> with body (stolen, may be NULL). NULL if it could not be
 * sent (NATS not connected); else fn runs exactly once unless cancelled. */
struct js_call *js_api(const char *what, json_t *body, uint32_t timeout_ms,
                       js_api_fn *fn, void *arg);
/* The same in domain d's API. No responders there is UNAVAILABLE with
 * err->unreachable set: nothing answers that API at all (JetStream not
 * enabled or not started; for the hub, the uplink is down). */
struct js_call *js_api_in(enum js_dom d, const char *what, json_t *body,
                          uint32_t timeout_ms, js_api_fn *fn, void *arg);
/* out = d's API prefix, ".", and the rest formatted; false if it does not
 * fit in size. */
bool js_subject(enum js_dom d, char *out, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Whether d is really elsewhere (JS_HUB with hub_domain set). */
bool js_dom_remote(enum js_dom d);
/* "local", or "hub 'NAME'" for texts. */
const char *js_dom_label(enum js_dom d);
/* Publish msg (taken) and wait for the stream's ack. */
struct js_call *js_publish(natsMsg *msg, uint32_t timeout_ms, js_pub_fn *fn,
                           void *arg);
/* The same for data with an optional Nats-Msg-Id, without a natsMsg to
 * build first. */
struct js_call *js_publish_id(const char *subject, const char *msg_id,
                              const void *data, size_t len, uint32_t timeout_ms,
                              js_pub_fn *fn, void *arg);
void js_cancel(struct js_call *call);
/* During a js_pub_fn called without error: the stream that stored the
 * message, as its ack names it ("" if it names none). */
const char *js_acked_stream(void);
Ship__Code js_code(int http, int err_code);

struct js_stream_cfg {
	enum js_dom dom; /* whose JetStream keeps it */
	char *name;
	char *description;
	char **subjects;
	size_t n_subjects;
	int64_t max_age_ns;
	int64_t max_msgs;  /* 0: unlimited */
	int64_t max_bytes; /* 0: unlimited */
	int64_t max_msgs_per_subject; /* 0: unlimited */
	int64_t max_msg_size; /* 0: unlimited */
	int64_t duplicate_window_ns; /* 0: the server's default */
	int replicas;
	bool memory;
	bool discard_new;
	bool allow_rollup;
	bool deny_delete;
	bool allow_direct;
};

/* created: made now. An existing stream with other settings is an error
 * (ALREADY_EXISTS, saying what differs), never used as if it matched. */
typedef void js_ensure_fn(void *arg, const struct js_err *err, bool created);
int js_stream_ensure(const struct js_stream_cfg *cfg, js_ensure_fn *fn,
                     void *arg);
int js_stream_cfg_copy(struct js_stream_cfg *dst,
                       const struct js_stream_cfg *src);
void js_stream_cfg_finish(struct js_stream_cfg *c);
/* A name that can be a stream, consumer or bucket name. */
/* Stream, consumer and bucket names at most (js_name_valid): two of them
 * and an API verb fit in any subject. */
#define JS_NAME_MAX 255
bool js_name_valid(const char *s);
/* Delete a consumer, not waiting for the answer. */
void js_consumer_delete(enum js_dom d, const char *stream, const char *name);

/* What a consumer's message says of itself in its $JS.ACK reply subject. */
struct js_meta {
	uint64_t delivered;
	uint64_t stream_seq;
	uint64_t consumer_seq;
	uint64_t time_ns;
	uint64_t pending;
};
bool js_ack_meta(const char *reply, struct js_meta *m);

/* ---- objjournal.c: object puts in progress, kept on disk ---- */

#define NUID_LEN 22
/* A new id as nats.go makes them (22 base-62 characters, random). */
void obj_new_nuid(char out[NUID_LEN + 1]);

/* A put (P) whose meta may have been stored, or chunks to purge (X). */
struct ojentry {
	TAILQ_ENTRY(ojentry) entry;
	char kind;      /* 'P' or 'X' */
	bool meta_sent; /* P: its meta may be stored */
	bool left;      /* from the last run: settled by objstore.c */
	bool settling;  /* objstore.c is on it */
	char nuid[NUID_LEN + 1];
	char old[NUID_LEN + 1]; /* P: the version it replaces, or "" */
	char bucket[KV_NAME_MAX];
	char *meta; /* P: the meta subject */
};

/* Open the journal in dir (NULL: none) and load what the last run left
 * open. -1 if it cannot be used (shipd goes on without). */
int ojournal_open(const char *dir);
void ojournal_close(void);
/* A put of chunks nuid into bucket, replacing old (NULL or ""), whose
 * meta goes to the subject meta. */
void ojournal_begin(const char *bucket, const char *nuid, const char *old,
		    const char *meta);
/* Its meta was sent: from now on it may be stored. */
void ojournal_meta(const char *nuid);
/* Chunks nuid of bucket are to be purged, whatever happens. */
void ojournal_purge(const char *bucket, const char *nuid);
/* Nothing is left to do for nuid (no-op if it is not open). */
void ojournal_end(const char *nuid);
/* The left-over entries not being settled, after after (NULL: first). */
struct ojentry *ojournal_next(struct ojentry *after);
size_t ojournal_open_count(void);

/* ---- shipd.c ---- */

struct shipd_stats {
	uint64_t dropped;
	uint64_t msgs_in;  /* from NATS to clients */
	uint64_t msgs_out; /* from clients to NATS */
	uint64_t denied;   /* requests refused by policy */
};

extern struct config *conf;
extern struct shipd_stats stats;
extern struct event_base *base;

uint64_t now_ms(void);
/* Re-read the configuration; lists are the keys applied and the keys that
 * changed but need a restart (free the arrays, not the strings). */
int shipd_reload(char ***applied, size_t *n_applied, char ***restart,
                 size_t *n_restart, char *err, size_t errlen);
uint64_t start_ms(void);

#endif
