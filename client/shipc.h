/* SPDX-License-Identifier: MIT */
/* libshipc: the client library for shipd, the host's NATS sidecar. */
#ifndef SHIPC_H
#define SHIPC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Threads and ownership
 *
 * A handle may be used from several threads at once: every call takes the
 * handle's lock. Callbacks run in the thread that reads from shipd, that
 * is inside shipc_dispatch() or inside a blocking call (shipc_request(),
 * shipc_subscribe(), shipc_flush(), shipc_status()) while it waits; they run
 * without the handle's lock held, so a callback may call any function of
 * this library, including blocking ones and shipc_close().
 *
 * Everything a callback receives (the message, its strings and data) is
 * valid only during the callback: copy what you keep. Strings passed in are
 * copied before the call returns.
 *
 * Every callback registered runs exactly once for requests, and for
 * subscriptions once per message plus once at the end (msg == NULL).
 *
 * Publishes are buffered: the library writes them out from a background
 * thread, many per system call. The same thread reconnects to a restarted
 * shipd (with backoff) and re-opens the handle's subscriptions; while it is
 * not connected, calls fail with ENOTCONN.
 *
 * Errors: functions return -1 (or 0 for an id, NULL for a pointer) and set
 * errno. A status from shipd maps to errno:
 *   EINVAL   invalid argument     ENOENT  not found
 *   EEXIST   already exists       ESTALE  wrong revision
 *   EACCES   permission denied    EAGAIN  NATS unavailable
 *   ETIMEDOUT timeout             ENOBUFS resource exhausted
 *   ESRCH    no responders        EIO     internal error in shipd
 *   EBUSY    conflict: exists with other settings, or in use by another app
 *   EBADMSG  corrupt: stored data does not match its digest
 *   ENOTCONN not connected to shipd (reconnecting, or the handle is closed)
 *   EPROTO   shipd broke the protocol
 * shipc_last_error() gives the message of the last failure on the handle.
 * The library never prints; install a log handler to see its diagnostics.
 */

struct shipc;

/* A NATS header. Keys may repeat. */
struct shipc_header {
	const char *key;
	const char *value;
};

/* A message delivered to a subscription or received as a reply. */
struct shipc_msg {
	const char *subject;
	const char *reply; /* "" when none; answer with shipc_respond() */
	const void *data;
	size_t len;
	const struct shipc_header *headers;
	size_t n_headers;
	/* Messages shipd dropped on this subscription just before this one,
	 * because the app did not read fast enough. */
	uint64_t dropped;
};

/* Logging: the library calls this for its diagnostics; level is a syslog
 * priority (LOG_ERR .. LOG_DEBUG). Without a handler it is silent. */
typedef void shipc_log_fn(int level, const char *msg, void *arg);
void shipc_set_log_handler(shipc_log_fn *fn, void *arg);

/* The default socket: $SHIP_SOCKET if set, else /run/ship/shipd.sock. */
const char *shipc_default_socket(void);

/*
 * Connect to shipd at path (NULL: shipc_default_socket()), introduce the
 * app as name (NULL: the program's name) and wait for the daemon's hello.
 * Returns a new handle, or NULL with errno set (ENOENT or ECONNREFUSED when
 * shipd is not running, EPROTO on a protocol mismatch, ETIMEDOUT).
 */
struct shipc *shipc_connect(const char *path, const char *name);

/*
 * Close the handle: end every subscription (its callback gets msg == NULL,
 * err 0), fail every pending request callback with ECANCELED, stop the
 * background thread and free everything. Buffered publishes are written
 * first (for at most a second). Called from a callback, the close happens
 * when the dispatch that ran it returns. NULL is accepted.
 */
void shipc_close(struct shipc *h);

/*
 * Event-loop integration: a file descriptor that polls readable whenever
 * shipc_dispatch() has work. It stays the same across reconnects. Do not
 * read from it or close it.
 */
int shipc_get_fd(struct shipc *h);

/*
 * Read what shipd sent and run the callbacks it completes. Waits up to
 * timeout_ms for something to arrive (0: do not wait, -1: forever).
 * Returns the number of callbacks run, or -1 with errno set.
 */
int shipc_dispatch(struct shipc *h, int timeout_ms);

/*
 * Publish data to subject. Returns 0 once the message is buffered; it is
 * written to shipd in the background. Errors shipd reports later go to the
 * log handler and to shipc_last_error(). Fails with EINVAL for a bad subject,
 * ENOTCONN while not connected, ETIMEDOUT if the output buffer stayed full.
 */
int shipc_publish(struct shipc *h, const char *subject, const void *data,
                  size_t len);

/*
 * Publish with headers and an optional reply subject (msg->dropped is
 * ignored). With SHIPC_PUB_CONFIRM the call waits for shipd to accept the
 * message (and fails with EAGAIN when NATS is not connected instead of
 * letting shipd keep it for the reconnect).
 */
#define SHIPC_PUB_CONFIRM 0x1
int shipc_publish_msg(struct shipc *h, const struct shipc_msg *msg,
                      int flags);

/* Answer a request received on a subscription: publish data to its reply
 * subject. EINVAL if req has no reply subject. */
int shipc_respond(struct shipc *h, const struct shipc_msg *req,
                  const void *data, size_t len);

/*
 * Wait until everything buffered has been written to shipd and shipd has
 * handled it (up to timeout_ms; -1: forever). Returns 0 or -1.
 */
int shipc_flush(struct shipc *h, int timeout_ms);

/*
 * A subscription callback. It runs once per message with msg set and
 * err 0, then once at the end with msg NULL: err 0 after
 * shipc_unsubscribe(), max_msgs or shipc_close(), or an errno value when
 * shipd ended it (e.g. EINVAL for a bad subject found on re-subscribe).
 */
typedef void shipc_msg_fn(struct shipc *h, const struct shipc_msg *msg,
                          int err, void *arg);

/*
 * Subscribe to subject (wildcards * and > allowed); queue, if not NULL or
 * "", makes this a member of that queue group; max_msgs > 0 ends the
 * subscription after that many messages. Waits until shipd and the NATS
 * server have the subscription (or NATS is down, in which case it becomes
 * live on reconnect). Returns the subscription's id (> 0), or 0 with errno
 * set; on failure cb is never called.
 */
uint64_t shipc_subscribe(struct shipc *h, const char *subject,
                         const char *queue, uint64_t max_msgs,
                         shipc_msg_fn *cb, void *arg);

/*
 * Watch what local apps publish, request and receive through shipd on
 * subjects pattern matches (NULL or "": all). Each one is a message to cb
 * with the subject and headers Ship-Monitor-Dir (publish, request, reply,
 * deliver), Ship-Monitor-App (the app's client name), Ship-Monitor-Client
 * (shipd's number for it) and Ship-Monitor-Size (payload bytes); the
 * payload only with SHIPC_MONITOR_PAYLOAD. Needs the "monitor" right on
 * the whole pattern (EACCES). End it with shipc_unsubscribe(). Returns
 * the stream's id (> 0), or 0 with errno set.
 */
#define SHIPC_MONITOR_PAYLOAD 1
uint64_t shipc_monitor(struct shipc *h, const char *pattern, int flags,
                       shipc_msg_fn *cb, void *arg);

/* End a subscription. Its callback still runs once with msg == NULL.
 * ENOENT if sub is not open on this handle. */
int shipc_unsubscribe(struct shipc *h, uint64_t sub);

/*
 * Send a NATS request and wait up to timeout_ms (0: shipd's default) for
 * the reply. On success *reply is a message owned by the caller: free it
 * with shipc_msg_free(). ESRCH when nobody listens on subject, ETIMEDOUT,
 * EAGAIN when NATS is not connected.
 */
int shipc_request(struct shipc *h, const char *subject, const void *data,
                  size_t len, int timeout_ms, struct shipc_msg **reply);

/* The same, with headers (msg->reply is ignored). */
int shipc_request_msg(struct shipc *h, const struct shipc_msg *msg,
                      int timeout_ms, struct shipc_msg **reply);

/* Frees a reply from shipc_request(). NULL is accepted. */
void shipc_msg_free(struct shipc_msg *msg);

/* A request callback: reply set and err 0, or reply NULL and an errno. */
typedef void shipc_reply_fn(struct shipc *h, const struct shipc_msg *reply,
                            int err, void *arg);

/*
 * Send a request without waiting: cb runs once, from shipc_dispatch() or a
 * blocking call, with the reply or the error. Many may be in flight.
 * Returns 0, or -1 with errno set (then cb is never called).
 */
int shipc_request_async(struct shipc *h, const struct shipc_msg *msg,
                        int timeout_ms, shipc_reply_fn *cb, void *arg);

/* The state of shipd's link to NATS. */
enum shipc_link {
	SHIPC_LINK_CONNECTING = 0,
	SHIPC_LINK_CONNECTED = 1,
	SHIPC_LINK_RECONNECTING = 2,
	SHIPC_LINK_CLOSED = 3,
};

/* The daemon's state, as shipctl status shows it. */
struct shipc_status {
	char daemon_version[32];
	uint64_t uptime_ms;
	enum shipc_link link;
	uint64_t link_changed_ms; /* since the link last changed state */
	char server_url[256];
	char server_id[64];
	uint64_t rtt_us; /* 0: not measured yet */
	uint64_t reconnects;
	uint32_t clients;
	uint32_t subscriptions;
	uint32_t requests_in_flight;
	uint64_t dropped;
	uint64_t msgs_in;
	uint64_t msgs_out;
	char last_error[256];
	uint32_t pid;          /* of shipd */
	char socket[108];      /* the path shipd listens on */
};

/* Ask shipd for its state. Returns 0 or -1. */
int shipc_status(struct shipc *h, struct shipc_status *st);

/* The fleet uplink as shipd sees it (shipd.conf hub_domain): whether the
 * hub's JetStream answers through the robot's leaf server, and what each
 * robot stream has that the hub's streams have not sourced yet. */
enum shipc_uplink_state {
	SHIPC_UPLINK_NONE = 0,    /* no hub_domain: nothing to watch */
	SHIPC_UPLINK_UNKNOWN = 1, /* not asked yet, or shipd's NATS link down */
	SHIPC_UPLINK_UP = 2,
	SHIPC_UPLINK_DOWN = 3,
};

#define SHIPC_UPLINK_STREAMS 16

struct shipc_uplink_stream {
	char stream[256];      /* the robot's */
	char hub_stream[256];  /* the hub's that sources it */
	uint64_t last_seq;
	uint64_t waiting_msgs; /* not sourced by the hub yet */
	uint64_t waiting_bytes; /* about: at the stream's mean message size */
	uint64_t hub_seen_ms;  /* age of the hub's figure; 0: never seen */
	/* uplink_priority and uplink_rate_limit, as shipd applies them to
	 * the hub's consumers of this stream on the robot's server: */
	unsigned priority;     /* 1 first ... 10 (not named) */
	unsigned consumers;    /* the hub's, taking its messages */
	uint64_t pending;      /* messages they have not sent yet */
	uint64_t rate_limit;   /* bytes/s they may send; 0: no limit */
	int held;              /* slowed for a stream of a higher priority */
};

struct shipc_uplink {
	enum shipc_uplink_state state;
	char hub_domain[65];
	char domain[65];        /* the robot's own JetStream domain */
	uint64_t changed_ms;    /* since the state last changed */
	uint64_t since_unix_ms; /* when it did, wall clock */
	uint64_t changes;       /* between up and down */
	char last_error[256];   /* why it is down */
	/* Which blocks are on the hub (the rest are the robot's own). */
	int events_on_hub, channels_on_hub, kv_on_hub, jobs_on_hub;
	char hub_buckets[256];  /* KV buckets on the hub, comma separated */
	uint64_t rate_limit;    /* uplink_rate_limit, bytes/s; 0: none */
	char priority[256];     /* uplink_priority */
	size_t n_streams;
	struct shipc_uplink_stream streams[SHIPC_UPLINK_STREAMS];
};

/* Fill *out in one snapshot. Returns 0 or -1 (errno as for any call). */
int shipc_uplink(struct shipc *h, struct shipc_uplink *out);

/*
 * What clients cause in shipd, against the limits it holds them to, as
 * shipctl status shows it. Bytes held are what shipd keeps or reserves for
 * requests in flight (collections, histories, lists) and for streams
 * (watch entries waiting for the app). Not in struct shipc_status:
 * programs allocate that one, so it never grows.
 */
struct shipc_limits {
	uint32_t clients;            /* connected now */
	uint32_t max_clients;
	uint32_t requests_in_flight; /* all clients together */
	uint32_t max_requests_total;
	uint64_t held;               /* bytes held for all clients together */
	uint64_t memory_limit;
	/* Each client's own limits (its usage: shipc_clients()). */
	uint32_t max_requests;       /* requests in flight */
	uint32_t max_subscriptions;  /* subscriptions, consumers and watches */
	uint64_t client_memory_limit; /* bytes held */
	uint64_t client_output_limit; /* bytes queued to it before its
	                               * messages are dropped */
};

/*
 * Ask shipd for its usage and limits; *out is filled in one snapshot.
 * Returns 0, or -1 with errno set: ENOSYS when shipd is too old to report
 * its limits, or as for any call (ENOTCONN, ETIMEDOUT, ...).
 */
int shipc_limits(struct shipc *h, struct shipc_limits *out);

/* One connected client, as shipd sees it. */
struct shipc_client {
	uint64_t id;
	uint32_t pid, uid, gid; /* peer credentials */
	char name[64];          /* from its hello */
	uint32_t subscriptions;
	uint32_t requests;      /* in flight */
	uint64_t bytes_in, bytes_out;
	uint64_t frames_in, frames_out;
	uint64_t dropped;       /* messages dropped because it read too slowly */
	uint64_t connected_ms;  /* how long ago it connected */
	uint64_t queued;        /* bytes waiting to be written to it */
};

/* List the connected clients. On success *list is an array of *n entries
 * owned by the caller: free it with shipc_clients_free(). Returns 0 or -1. */
int shipc_clients(struct shipc *h, struct shipc_client **list, size_t *n);
void shipc_clients_free(struct shipc_client *list);

/*
 * Bytes shipd holds for the client list[i] (its requests and streams),
 * for a list from shipc_clients(), even sorted since. Kept beside the
 * list, not in struct shipc_client: programs built before it index
 * arrays of that struct. 0 when i is past the list.
 */
uint64_t shipc_client_held(const struct shipc_client *list, size_t i);
/* The rest of list[i]'s identity as shipd read it from the kernel when it
 * connected: its user name (the uid's number if it has none), its
 * systemd unit ("" if none), and its requests refused by policy. Kept
 * beside the list like shipc_client_held(); "" or 0 past the list. */
const char *shipc_client_user(const struct shipc_client *list, size_t i);
const char *shipc_client_unit(const struct shipc_client *list, size_t i);
uint64_t shipc_client_denied(const struct shipc_client *list, size_t i);

/*
 * Ask shipd to re-read its configuration file (as SIGHUP does). buf gets
 * a line saying which keys took effect and which need a restart. EACCES
 * unless the caller is root or shipd's user; EINVAL when the file has
 * errors (the running configuration is kept; shipc_last_error() says why).
 */
int shipc_reload(struct shipc *h, char *buf, size_t size);

/* The name of a link state ("connected", ...). */
const char *shipc_link_name(enum shipc_link link);

/*
 * The message of the last failure on this handle (from shipd, or the
 * library's own), copied into buf. Returns buf, "" when there was none.
 */
const char *shipc_last_error(struct shipc *h, char *buf, size_t size);

/*
 * 1 if the last failure on this handle (ETIMEDOUT or EAGAIN from shipd)
 * was of an operation that reached NATS and got no answer, so it may have
 * been applied all the same (a KV write, an emit, a request's responder):
 * check, or retry with the same id (an emit's msg_id). 0 otherwise, also
 * for a failure that happened before anything was sent.
 */
int shipc_outcome_unknown(struct shipc *h);

/* 1 while connected to shipd, 0 while reconnecting or closed. */
int shipc_is_connected(struct shipc *h);

/*
 * ---- EventBus and Channels (JetStream, noesis-ship's formats) ----
 *
 * Durable events are ShipEvent JSON on <prefix>.<event_type> (default
 * stream SHIP_EVENTS on ship.events.>); channel messages are
 * ChannelMessage JSON on ship.channel.<channel> (stream CHANNELS).
 */

struct shipc_emit {
	const char *event_type;     /* unprefixed: "item.created" */
	const char *source;         /* NULL: "" */
	const char *payload_json;   /* any JSON value; NULL: null */
	const char *correlation_id; /* NULL: 8 random hex characters */
	const char *msg_id;         /* Nats-Msg-Id (1 to 127 printable ASCII
	                             * characters, no spaces); NULL: a new
	                             * unique one */
	const char *stream;         /* NULL: SHIP_EVENTS; if set, stored only
	                             * if this stream holds the subject */
	const char *prefix;         /* NULL: ship.events */
};

struct shipc_emit_result {
	uint64_t seq;       /* stream sequence */
	int duplicate;      /* an earlier emit with this msg_id is stored */
	char msg_id[128];   /* use it to retry safely */
};

/*
 * Emit an event and wait until JetStream stored it. res may be NULL.
 * A retry with the same msg_id is stored once. EINVAL (bad type or
 * payload), EAGAIN (NATS unavailable), ETIMEDOUT.
 */
int shipc_emit(struct shipc *h, const struct shipc_emit *e,
               struct shipc_emit_result *res);

typedef void shipc_emit_fn(struct shipc *h,
                           const struct shipc_emit_result *res, int err,
                           void *arg);
/* The same without waiting: many may be in flight; cb runs once. */
int shipc_emit_async(struct shipc *h, const struct shipc_emit *e,
                     shipc_emit_fn *cb, void *arg);

/* Declare a stream: created if absent, EEXIST (with what differs in
 * shipc_last_error()) if it exists with other settings. */
struct shipc_stream_decl {
	const char *name;
	const char *const *subjects;
	size_t n_subjects;
	uint64_t max_age_ms; /* 0: unlimited */
	int64_t max_msgs;    /* 0: unlimited */
	int64_t max_bytes;   /* 0: unlimited */
	int memory;          /* memory storage instead of file */
	uint32_t replicas;   /* 0: 1 */
};
int shipc_stream_declare(struct shipc *h, const struct shipc_stream_decl *d);

enum shipc_deliver {
	SHIPC_DELIVER_ALL = 0, /* all retained; a durable resumes where it was */
	SHIPC_DELIVER_NEW = 1,
	SHIPC_DELIVER_LAST = 2,
	SHIPC_DELIVER_BY_SEQ = 3,
	SHIPC_DELIVER_BY_TIME = 4,
};

struct shipc_event_sub {
	const char *pattern;   /* after the prefix; NULL: ">" */
	const char *durable;   /* consumer name; NULL: ephemeral */
	enum shipc_deliver deliver;
	uint64_t start_seq;
	uint64_t start_time_ms; /* Unix ms */
	int auto_ack;          /* shipd acks when queued to the app */
	uint32_t ack_wait_ms;  /* 0: 30 s */
	int32_t max_deliver;   /* 0: unlimited */
	const uint32_t *backoff_ms;
	size_t n_backoff;
	uint32_t credit;       /* messages the app takes now; 0: 64 */
	const char *stream;    /* NULL: SHIP_EVENTS */
	const char *prefix;    /* NULL: ship.events */
};

/* A message from a JetStream consumer, valid during the callback. */
struct shipc_event {
	uint64_t token;      /* for shipc_event_ack() (explicit acks) */
	uint64_t stream_seq;
	uint64_t delivered;  /* > 1 when redelivered */
	uint64_t pending;
	uint64_t time_ns;    /* when stored (Unix ns) */
	const char *subject;
	const void *data;    /* the message as stored */
	size_t len;
	int raw;             /* not a valid envelope: only the above are set */
	/* ShipEvent fields (event subscriptions) */
	const char *event_type, *timestamp, *source, *payload_json,
		*correlation_id, *version;
	/* ChannelMessage fields (channel listens) */
	const char *sender, *content, *channel, *message_id, *metadata_json;
	double sent_at;      /* the message's timestamp, Unix seconds */
};

/* Runs per delivery (ev set, err 0), then once at the end (ev NULL). */
typedef void shipc_event_fn(struct shipc *h, const struct shipc_event *ev,
                            int err, void *arg);

/*
 * Subscribe to events; returns the subscription's id (end it with
 * shipc_unsubscribe()) or 0 with errno set. Deliveries come as credit
 * allows: grant more with shipc_event_credit().
 *
 * A durable that exists is resumed by its name alone: deliver, start_seq
 * and start_time_ms only apply when it is created. Other settings that
 * differ from the durable's (pattern, ack_wait_ms, max_deliver,
 * backoff_ms) fail with EBUSY, shipc_last_error() naming each with both
 * values; so does a durable another subscription (of any app) has open.
 */
uint64_t shipc_event_subscribe(struct shipc *h, const struct shipc_event_sub *s,
                               shipc_event_fn *cb, void *arg);

/* Flags of shipc_event_subscribe_flags(). */
#define SHIPC_EVENT_UPDATE 0x1 /* change an existing durable's settings to
                                * these (its start stays) */
#define SHIPC_EVENT_SHARED 0x2 /* share the durable with the others that
                                * set it: each message goes to one of them */
/* shipc_event_subscribe() with flags (0: the same). */
uint64_t shipc_event_subscribe_flags(struct shipc *h,
                                     const struct shipc_event_sub *s,
                                     int flags, shipc_event_fn *cb,
                                     void *arg);
int shipc_event_credit(struct shipc *h, uint64_t sub, uint32_t credit);

enum shipc_ack {
	SHIPC_ACK = 0,
	SHIPC_NAK = 1,         /* redeliver after nak_delay_ms */
	SHIPC_TERM = 2,        /* never redeliver */
	SHIPC_IN_PROGRESS = 3, /* more time */
};
/* Answer a delivery (explicit acks). Buffered like a publish. */
int shipc_event_ack(struct shipc *h, uint64_t sub, uint64_t token,
                    enum shipc_ack kind, uint32_t nak_delay_ms);

/* Send a channel message as sender; res may be NULL. */
int shipc_channel_send(struct shipc *h, const char *channel,
                       const char *sender, const char *content,
                       const char *metadata_json,
                       struct shipc_emit_result *res);
/* Listen on a channel as agent (durable consumer <agent>_<channel>),
 * without the agent's own messages; acknowledged by shipd. One listener
 * per agent and channel: another one fails with EBUSY while it lives.
 * replay applies when the durable is created; one that exists resumes. */
uint64_t shipc_channel_listen(struct shipc *h, const char *channel,
                              const char *agent, int replay, uint32_t credit,
                              shipc_event_fn *cb, void *arg);

struct shipc_channel_msg {
	uint64_t seq;
	char *sender, *content, *channel, *message_id, *metadata_json;
	double sent_at;
};
/*
 * The newest last (0: 100, at most 1000) messages of a channel, oldest
 * first, before before_seq if not 0. *more_before is where to page from
 * for older ones (0: none). Free the list with shipc_channel_history_free().
 */
int shipc_channel_history(struct shipc *h, const char *channel, uint32_t last,
                          uint64_t before_seq, struct shipc_channel_msg **list,
                          size_t *n, uint64_t *more_before);
void shipc_channel_history_free(struct shipc_channel_msg *list, size_t n);

struct shipc_stream_info {
	char name[256];
	char subjects[512];  /* comma separated */
	uint64_t messages, bytes, first_seq, last_seq;
	uint32_t consumers;
	uint64_t max_age_ms;
	int64_t max_msgs;
	char storage[16];
	char problem[256];   /* "" or how a stream shipd declares differs */
};
/* List JetStream streams. Free with shipc_streams_free(). */
int shipc_streams(struct shipc *h, struct shipc_stream_info **list, size_t *n);
void shipc_streams_free(struct shipc_stream_info *list);

/*
 * ---- KV (NATS KV buckets; the noesis-ship stores) ----
 *
 * A bucket is the JetStream stream KV_<bucket>, read and written the way
 * nats.go, nats.js and the nats CLI do. Bucket names: letters, digits, _
 * and -; keys: letters, digits and - / _ = . (no leading or trailing dot,
 * no ".."); watch and keys filters may also use the wildcards * and >.
 * A revision is the entry's stream sequence.
 *
 * Errors (errno): EINVAL bad name or value, ENOENT no such bucket or key
 * (a deleted key is absent), ESTALE compare-and-swap lost (create of an
 * existing key, update of a key at another revision; shipc_last_error()
 * says "current revision N"), ENOBUFS value over the bucket's or the
 * server's size limit, EAGAIN NATS unavailable, ETIMEDOUT.
 */

enum shipc_kv_op {
	SHIPC_KV_PUT = 0,
	SHIPC_KV_DEL = 1,   /* delete marker */
	SHIPC_KV_PURGE = 2, /* purge marker: older revisions removed */
};

struct shipc_kv_config {
	const char *bucket;
	const char *description; /* NULL: none */
	uint32_t history;        /* revisions kept per key, 1..64; 0: 1 */
	uint64_t ttl_ms;         /* the bucket's max age; 0: forever */
	int32_t max_value_size;  /* 0: unlimited */
	int64_t max_bytes;       /* 0: unlimited */
	int memory;              /* memory storage instead of file */
	uint32_t replicas;       /* 0: 1 */
};

struct shipc_kv_status {
	char bucket[256];
	char description[256];
	uint32_t history;
	uint64_t ttl_ms;
	int32_t max_value_size;
	int64_t max_bytes;
	int memory;
	uint32_t replicas;
	uint64_t values;        /* stored messages: revisions and markers */
	uint64_t bytes;
	uint64_t last_revision;
};

/* Create a bucket, or accept one that exists with the same settings
 * (EEXIST, saying what differs, otherwise). st may be NULL. */
int shipc_kv_bucket_create(struct shipc *h, const struct shipc_kv_config *cfg,
                           struct shipc_kv_status *st);
int shipc_kv_bucket_info(struct shipc *h, const char *bucket,
                         struct shipc_kv_status *st);
/* Every bucket; free the array with shipc_kv_bucket_list_free(). */
int shipc_kv_bucket_list(struct shipc *h, struct shipc_kv_status **list,
                         size_t *n);
void shipc_kv_bucket_list_free(struct shipc_kv_status *list);
int shipc_kv_bucket_delete(struct shipc *h, const char *bucket);

/* An entry. Handed to a callback it is valid during the callback; one
 * returned by a call is the caller's (free with the matching _free). */
struct shipc_kv_entry {
	const char *bucket;
	const char *key;
	const void *value; /* NUL-terminated for convenience; len excludes it */
	size_t len;
	uint64_t revision;
	uint64_t created_ns; /* Unix ns when stored */
	uint64_t delta;      /* entries after this one (watch, history) */
	enum shipc_kv_op op;
};

/* The latest value of key (revision 0) or the given revision. ENOENT if
 * absent or deleted. Free *e with shipc_kv_entry_free(). */
int shipc_kv_get(struct shipc *h, const char *bucket, const char *key,
                 uint64_t revision, struct shipc_kv_entry **e);
void shipc_kv_entry_free(struct shipc_kv_entry *e);
/* Store value; *revision (may be NULL) gets the new revision. */
int shipc_kv_put(struct shipc *h, const char *bucket, const char *key,
                 const void *value, size_t len, uint64_t *revision);
/* Only if the key is absent (or deleted/purged): else ESTALE. */
int shipc_kv_create(struct shipc *h, const char *bucket, const char *key,
                    const void *value, size_t len, uint64_t *revision);
/* Only if the key's latest revision is expected: else ESTALE. */
int shipc_kv_update(struct shipc *h, const char *bucket, const char *key,
                    const void *value, size_t len, uint64_t expected,
                    uint64_t *revision);
/* Write a delete marker (history kept) / a purge marker (history gone). */
int shipc_kv_delete(struct shipc *h, const char *bucket, const char *key);
int shipc_kv_purge(struct shipc *h, const char *bucket, const char *key);

/* Without waiting: many may be in flight; cb runs once (err 0 or errno). */
typedef void shipc_kv_put_fn(struct shipc *h, uint64_t revision, int err,
                             void *arg);
int shipc_kv_put_async(struct shipc *h, const char *bucket, const char *key,
                       const void *value, size_t len, shipc_kv_put_fn *cb,
                       void *arg);
/* e is valid during the callback; NULL with err set on failure. */
typedef void shipc_kv_get_fn(struct shipc *h, const struct shipc_kv_entry *e,
                             int err, void *arg);
int shipc_kv_get_async(struct shipc *h, const char *bucket, const char *key,
                       uint64_t revision, shipc_kv_get_fn *cb, void *arg);

/* Keys with a live value matching filter (NULL: all). Free the array with
 * shipc_kv_keys_free(). */
int shipc_kv_keys(struct shipc *h, const char *bucket, const char *filter,
                  char ***keys, size_t *n);
void shipc_kv_keys_free(char **keys, size_t n);
/* Every retained revision of key, oldest first (markers included). */
int shipc_kv_history(struct shipc *h, const char *bucket, const char *key,
                     struct shipc_kv_entry **list, size_t *n);
void shipc_kv_entries_free(struct shipc_kv_entry *list, size_t n);

#define SHIPC_KV_WATCH_HISTORY 0x1        /* every retained revision */
#define SHIPC_KV_WATCH_UPDATES_ONLY 0x2   /* no initial values */
#define SHIPC_KV_WATCH_IGNORE_DELETES 0x4 /* no DEL/PURGE entries */
#define SHIPC_KV_WATCH_META_ONLY 0x8      /* entries without values */

/* Runs per entry (e set, err 0), and once with e NULL when the initial
 * values have all been delivered (at once with UPDATES_ONLY or when there
 * are none). */
typedef void shipc_kv_watch_fn(struct shipc *h, const struct shipc_kv_entry *e,
                               void *arg);
/* Runs once when the watch ends: err 0 after shipc_kv_watch_stop() or
 * shipc_close(); ENOBUFS when the app read too slowly (shipd ends a watch
 * rather than drop entries); ENOENT when the bucket went away. */
typedef void shipc_kv_end_fn(struct shipc *h, int err, void *arg);

/*
 * Watch key or pattern (NULL: every key) of bucket. Returns the watch's
 * id, or 0 with errno set (then no callback runs). A watch survives NATS
 * reconnects without losing or repeating entries; after a reconnect to a
 * restarted shipd it starts over (initial values again).
 */
uint64_t shipc_kv_watch(struct shipc *h, const char *bucket,
                        const char *pattern, int flags, shipc_kv_watch_fn *cb,
                        shipc_kv_end_fn *end, void *arg);
int shipc_kv_watch_stop(struct shipc *h, uint64_t watch);

/* The being registry (beings_status, noesis-ship's BeingStatus JSON).
 * Changes are compare-and-swap read-modify-writes retried on conflict. */
struct shipc_being {
	char *being_id;
	char *state;        /* idle, working, blocked, offline */
	char *current_task; /* NULL when null */
	char *last_heartbeat; /* RFC 3339 */
	uint64_t uptime_seconds;
	double memory_mb;
	int has_memory;
	char **capabilities;
	size_t n_capabilities;
	char *metadata_json; /* NULL when null */
	int online;          /* heartbeat within the threshold, not offline */
	uint64_t revision;
	char *json;          /* the stored JSON */
};

/* out (may be NULL) gets the stored status; free with shipc_beings_free(out, 1). */
int shipc_being_register(struct shipc *h, const char *id,
                         const char *const *capabilities, size_t n,
                         struct shipc_being **out);
/* ENOENT if not registered. task NULL: null. */
int shipc_being_update(struct shipc *h, const char *id, const char *state,
                       const char *task, struct shipc_being **out);
int shipc_being_heartbeat(struct shipc *h, const char *id);
int shipc_being_unregister(struct shipc *h, const char *id);
int shipc_being_get(struct shipc *h, const char *id, struct shipc_being **out);
/* Online beings (all: every one still stored); threshold_ms 0: 90 s. */
int shipc_beings_list(struct shipc *h, int all, uint32_t threshold_ms,
                      struct shipc_being **list, size_t *n);
void shipc_beings_free(struct shipc_being *list, size_t n);
/* shipd heartbeats the (registered) being every interval_ms (0: 30 s)
 * while this connection lives, and marks it offline when it goes. */
int shipc_being_keepalive(struct shipc *h, const char *id,
                          uint32_t interval_ms);
int shipc_being_keepalive_stop(struct shipc *h, const char *id);

/* ship_config: JSON values. get returns default_json (if not NULL) when
 * the key is absent; *json is the caller's (free()). */
int shipc_config_get(struct shipc *h, const char *key,
                     const char *default_json, char **json);
int shipc_config_set(struct shipc *h, const char *key, const char *json);
int shipc_config_keys(struct shipc *h, char ***keys, size_t *n);
uint64_t shipc_config_watch(struct shipc *h, const char *pattern, int flags,
                            shipc_kv_watch_fn *cb, shipc_kv_end_fn *end,
                            void *arg);
/* ship_health: a JSON report per source (kept 120 s). */
int shipc_health_report(struct shipc *h, const char *source,
                        const char *json);
int shipc_health_get(struct shipc *h, const char *source, char **json);
int shipc_health_list(struct shipc *h, struct shipc_kv_entry **list,
                      size_t *n);

/* ---- access policies (shipd.conf(5), "allow") ---- */

/*
 * The effective rules, each as "file:line: allow = WHO OPS RESOURCES". On
 * success *rules is an array of *n strings owned by the caller (free it
 * with shipc_policy_rules_free()); *enforced is 0 when there is no rule
 * (every app may do everything). Needs the "policy" admin operation:
 * EACCES otherwise. Returns 0 or -1.
 */
int shipc_policy_show(struct shipc *h, char ***rules, size_t *n,
                      int *enforced);
void shipc_policy_rules_free(char **rules, size_t n);

/* Who asks: an identity as shipd reads it from the kernel. */
struct shipc_policy_query {
	const char *op;       /* as in the rules: "publish", "kv-read", ... */
	const char *resource; /* subject, pattern, bucket, "reload", ... */
	const char *unit;     /* systemd unit, or NULL for none */
	int has_uid;          /* 0: the caller's own uid */
	uint32_t uid, gid;
	const uint32_t *groups; /* supplementary groups */
	size_t n_groups;
};

/*
 * Would an app with q's identity be allowed q->op on q->resource? Sets
 * *allowed (1 or 0) and copies into rule (rulelen bytes, may be 0) the
 * rule that allows it, "file:line: allow = ...", or why not. Needs the
 * "policy" admin operation (EACCES); EINVAL for an unknown operation.
 * Returns 0 or -1.
 */
int shipc_policy_check(struct shipc *h, const struct shipc_policy_query *q,
                       int *allowed, char *rule, size_t rulelen);

/* ---- Object Store (NATS Object Store: nats.go, nats.js and the nats CLI
 * read and write the same buckets) ---- */

struct shipc_obj_bucket_config {
	const char *bucket;      /* letters, digits, _ and - */
	const char *description; /* NULL: none */
	uint64_t ttl_ms;         /* max age of objects; 0: forever */
	int64_t max_bytes;       /* 0: unlimited */
	int memory;              /* memory storage instead of file */
	uint32_t replicas;       /* 0: 1 */
};

struct shipc_obj_bucket_status {
	char bucket[256];
	char description[256];
	uint64_t ttl_ms;
	int64_t max_bytes;
	int memory;
	uint32_t replicas;
	int sealed;
	uint64_t size; /* bytes stored */
};

/* Create a bucket, or accept one that exists with the same settings
 * (EEXIST saying what differs otherwise). st may be NULL. */
int shipc_obj_bucket_create(struct shipc *h,
                            const struct shipc_obj_bucket_config *cfg,
                            struct shipc_obj_bucket_status *st);
int shipc_obj_bucket_status(struct shipc *h, const char *bucket,
                            struct shipc_obj_bucket_status *st);
int shipc_obj_bucket_list(struct shipc *h,
                          struct shipc_obj_bucket_status **list, size_t *n);
void shipc_obj_bucket_list_free(struct shipc_obj_bucket_status *list);
int shipc_obj_bucket_delete(struct shipc *h, const char *bucket);
/* No more changes to the bucket (puts and deletes fail from then on). */
int shipc_obj_bucket_seal(struct shipc *h, const char *bucket);

/* An object's information. Returned by a call it is the caller's: free
 * it with shipc_obj_info_free() (a list with shipc_obj_list_free()). */
struct shipc_obj_info {
	const char *bucket;
	const char *name;
	const char *description; /* "" when none */
	const char *nuid;
	const char *digest;      /* "SHA-256=<base64url>", "" when deleted */
	uint64_t size;
	uint32_t chunks;
	uint32_t max_chunk_size;
	int deleted;
	uint64_t mtime_ns;       /* when stored, Unix ns */
	const char *link_bucket; /* a link: "" when not */
	const char *link_name;   /* "" for a link to a whole bucket */
	const struct shipc_header *headers;
	size_t n_headers;
	const struct shipc_header *metadata; /* key/value, each key once */
	size_t n_metadata;
};
void shipc_obj_info_free(struct shipc_obj_info *info);

/* Bytes moved so far, and the object's size (0 when not known yet).
 * Called at most once per 64 KiB and once at the end, in the thread
 * moving the data (the caller's, or the one dispatching); it must not call
 * libshipc. */
typedef void shipc_obj_progress_fn(uint64_t done, uint64_t total, void *arg);

struct shipc_obj_put_opts {
	const char *description;
	const struct shipc_header *headers;
	size_t n_headers;
	const struct shipc_header *metadata;
	size_t n_metadata;
	uint32_t chunk_size;     /* 0: 128 KiB */
	uint64_t size_hint;      /* for progress: 0 when not known */
	shipc_obj_progress_fn *progress; /* NULL: none */
	void *progress_arg;
	/* Nonzero: store only if no object of that name exists (a deleted
	 * one's name is free), else fail with EEXIST; atomic against other
	 * writers, nothing of a refused put is left. */
	int if_absent;
};

/*
 * Store an object, streamed: read from fd until its end, from the file
 * at path, or from memory. shipd never holds the whole object, and
 * nothing is visible until the last chunk is stored: an error (or the
 * app leaving) leaves the previous version, if any. A read error of fd
 * aborts the put and is returned in errno. o and info may be NULL; *info
 * gets the stored object's information. Returns 0 or -1.
 */
int shipc_obj_put_fd(struct shipc *h, const char *bucket, const char *name,
                     int fd, const struct shipc_obj_put_opts *o,
                     struct shipc_obj_info **info);
int shipc_obj_put_file(struct shipc *h, const char *bucket, const char *name,
                       const char *path, const struct shipc_obj_put_opts *o,
                       struct shipc_obj_info **info);
int shipc_obj_put_mem(struct shipc *h, const char *bucket, const char *name,
                      const void *data, size_t len,
                      const struct shipc_obj_put_opts *o,
                      struct shipc_obj_info **info);

struct shipc_obj_get_opts {
	uint32_t credit;         /* chunks in flight; 0: 8 */
	shipc_obj_progress_fn *progress;
	void *progress_arg;
};

/*
 * Fetch an object, streamed to fd, to a file at path (written to
 * "<path>.part-XXXXXX" beside it and renamed when complete and verified,
 * removed on failure), or into memory (at most max bytes: EFBIG past it;
 * free *data, never NULL on success). The size and SHA-256 digest are
 * checked: EBADMSG when they do not match (the data written to fd is then
 * not to be trusted). ENOENT for a missing or deleted object. A write
 * error of fd stops the get and is returned in errno. o and info may be
 * NULL.
 */
int shipc_obj_get_fd(struct shipc *h, const char *bucket, const char *name,
                     int fd, const struct shipc_obj_get_opts *o,
                     struct shipc_obj_info **info);
int shipc_obj_get_file(struct shipc *h, const char *bucket, const char *name,
                       const char *path, const struct shipc_obj_get_opts *o,
                       struct shipc_obj_info **info);
int shipc_obj_get_mem(struct shipc *h, const char *bucket, const char *name,
                      void **data, size_t *len, size_t max,
                      struct shipc_obj_info **info);

/* An object's information; ENOENT when missing (or deleted, unless
 * show_deleted). info may be NULL (only whether it exists). */
int shipc_obj_info(struct shipc *h, const char *bucket, const char *name,
                   int show_deleted, struct shipc_obj_info **info);
/* Every object of the bucket (deleted ones too with show_deleted). */
int shipc_obj_list(struct shipc *h, const char *bucket, int show_deleted,
                   struct shipc_obj_info **list, size_t *n);
void shipc_obj_list_free(struct shipc_obj_info *list, size_t n);
/* Leave a delete marker and purge the object's chunks. */
int shipc_obj_delete(struct shipc *h, const char *bucket, const char *name);

/* What shipc_obj_update_meta() sets: new_name NULL or "" keeps the name;
 * the description, headers and metadata replace the object's. */
struct shipc_obj_meta {
	const char *new_name;
	const char *description;
	const struct shipc_header *headers;
	size_t n_headers;
	const struct shipc_header *metadata;
	size_t n_metadata;
};
/* EEXIST renaming onto a live object; ENOENT for a missing or deleted one. */
int shipc_obj_update_meta(struct shipc *h, const char *bucket, const char *name,
                          const struct shipc_obj_meta *m);
/* A link named name in bucket to target_name in target_bucket (to the
 * whole bucket when target_name is NULL or ""). EEXIST over a live object.
 * info may be NULL. */
int shipc_obj_link(struct shipc *h, const char *bucket, const char *name,
                   const char *target_bucket, const char *target_name,
                   struct shipc_obj_info **info);

/* Watch callback: info for each object, then once with info NULL and err 0
 * at the end of the initial ones (unless updates only), then changes; at
 * the end once with info NULL and err set: ECANCELED after
 * shipc_obj_watch_stop(), else why it ended. */
typedef void shipc_obj_watch_fn(struct shipc *h,
                                const struct shipc_obj_info *info, int err,
                                void *arg);
#define SHIPC_OBJ_WATCH_HISTORY 0x1        /* every stored meta */
#define SHIPC_OBJ_WATCH_UPDATES_ONLY 0x2   /* no initial objects */
#define SHIPC_OBJ_WATCH_IGNORE_DELETES 0x4
/* Returns the watch's id (> 0) or 0 with errno set. */
uint64_t shipc_obj_watch(struct shipc *h, const char *bucket, int flags,
                         shipc_obj_watch_fn *cb, void *arg);
int shipc_obj_watch_stop(struct shipc *h, uint64_t watch);

/*
 * ---- Snapshots and artifacts (noesis-ship's BeingSnapshots and
 * ArtifactStore, on the Object Store) ----
 *
 * Objects of the buckets "snapshots" and "artifacts", written as the Rust
 * crate noesis-ship writes them, so either reads what the other wrote.
 * Like noesis-ship, the first write creates a missing bucket with the
 * default settings; a bucket that exists is used as it is. Reading a
 * missing bucket finds nothing (an empty list, ENOENT) and creates none.
 *
 * A snapshot is the object <being_id>_<YYYYMMDD_HHMMSS> (UTC) whose data
 * is the compact JSON {"being_id":..,"reason":..,"state":<state>,
 * "created":"<RFC 3339 UTC>"} and whose description is the reason. Where
 * noesis-ship overwrites a snapshot taken in the same second, a take here
 * never replaces one: it stores under the first free id of
 * <being_id>_<YYYYMMDD_HHMMSS>, ..._2, ..._3 and so on. The metadata
 * "being_id" and "reason" make listing read no snapshot's data.
 *
 * An artifact's description is "type=<type>, expedition=<expedition>", or
 * "type=<type>" without an expedition; the metadata "type" and
 * "expedition" say the same.
 *
 * Errors (errno), besides the Object Store's: EINVAL for a state that is
 * not JSON, an empty being id or artifact type, text that is not UTF-8;
 * ENOENT for a missing snapshot or artifact; EBADMSG for a snapshot whose
 * data is not a snapshot's JSON; EFBIG for one over SHIPC_SNAPSHOT_MAX.
 */
#define SHIPC_SNAPSHOT_BUCKET "snapshots"
#define SHIPC_ARTIFACT_BUCKET "artifacts"
/* The largest snapshot data taken or restored. */
#define SHIPC_SNAPSHOT_MAX (256u << 20)

/* A snapshot as listed. Snapshots noesis-ship wrote carry no metadata:
 * their being id is the id without its time (and _<n>) suffix, their
 * reason the description. */
struct shipc_snapshot {
	const char *id;
	const char *being_id; /* "" when it cannot be told */
	const char *reason;
	uint64_t created_ns;  /* when stored, Unix ns */
	uint64_t size;        /* bytes of its JSON */
};

/*
 * Store state_json (any JSON value, stored compacted) as a new snapshot of
 * being_id; reason may be NULL (""). *id (may be NULL) gets the new id, to
 * free(). EINVAL when state_json is not JSON; EEXIST (saying so in
 * shipc_last_error()) when 100 snapshots of the being were taken in that
 * second already. Returns 0 or -1.
 */
int shipc_snapshot_take(struct shipc *h, const char *being_id,
                        const char *state_json, const char *reason,
                        char **id);
/*
 * The state of snapshot id, compact JSON in *state_json (the caller's, to
 * free(); NUL-terminated), its length in *len (may be NULL). Reads the
 * Python noesis-ship's snapshots too ("timestamp", pretty-printed).
 * ENOENT for a missing id; EBADMSG when its data has no JSON "state".
 */
int shipc_snapshot_restore(struct shipc *h, const char *id, char **state_json,
                           size_t *len);
/*
 * The snapshots of being_id (NULL: of every being), newest first. *list
 * is an array of *n entries owned by the caller: free it with
 * shipc_snapshot_list_free(). Links are left out. Returns 0 or -1.
 */
int shipc_snapshot_list(struct shipc *h, const char *being_id,
                        struct shipc_snapshot **list, size_t *n);
void shipc_snapshot_list_free(struct shipc_snapshot *list, size_t n);
/* Delete a snapshot. ENOENT when there is none of that id. */
int shipc_snapshot_delete(struct shipc *h, const char *id);
/*
 * Delete the snapshots of being_id (NULL: of each being) stored more than
 * older_than_ms ago, except each being's newest keep. Snapshots whose
 * being cannot be told are never deleted. *deleted (may be NULL) gets the
 * number deleted, also when a delete fails half way (-1, errno set);
 * snapshots deleted meanwhile by others are not counted and no error.
 */
int shipc_snapshot_cleanup(struct shipc *h, const char *being_id,
                           uint64_t older_than_ms, uint32_t keep,
                           size_t *deleted);

/* An artifact as listed; type and expedition from the metadata, or read
 * from the description of one noesis-ship wrote. */
struct shipc_artifact {
	const char *name;
	const char *type;
	const char *expedition; /* "" when none */
	const char *digest;     /* "SHA-256=<base64url>" */
	uint64_t size;
	uint64_t mtime_ns;      /* when stored, Unix ns */
};

/*
 * Store an artifact, replacing one of that name, read from memory, from
 * fd until its end, or from the file at path (streamed as
 * shipc_obj_put_fd() does). type must not be empty; expedition NULL or ""
 * means none. info (may be NULL) gets the stored object's information, to
 * free with shipc_obj_info_free(). Returns 0 or -1.
 */
int shipc_artifact_store_mem(struct shipc *h, const char *name,
                             const void *data, size_t len, const char *type,
                             const char *expedition,
                             struct shipc_obj_info **info);
int shipc_artifact_store_fd(struct shipc *h, const char *name, int fd,
                            const char *type, const char *expedition,
                            struct shipc_obj_info **info);
int shipc_artifact_store_file(struct shipc *h, const char *name,
                              const char *path, const char *type,
                              const char *expedition,
                              struct shipc_obj_info **info);
/* Fetch an artifact, as shipc_obj_get_mem(), shipc_obj_get_fd() and
 * shipc_obj_get_file() do (verified; ENOENT when missing). */
int shipc_artifact_get_mem(struct shipc *h, const char *name, void **data,
                           size_t *len, size_t max,
                           struct shipc_obj_info **info);
int shipc_artifact_get_fd(struct shipc *h, const char *name, int fd,
                          struct shipc_obj_info **info);
int shipc_artifact_get_file(struct shipc *h, const char *name,
                            const char *path, struct shipc_obj_info **info);
/* Every artifact, by name; free with shipc_artifact_list_free(). Links
 * are left out. */
int shipc_artifact_list(struct shipc *h, struct shipc_artifact **list,
                        size_t *n);
void shipc_artifact_list_free(struct shipc_artifact *list, size_t n);

/*
 * ---- JobQueue (fleet-wide jobs in NATS KV; noesis-ship's JobQueue) ----
 *
 * A queue is the KV bucket JOBS_<queue>; each job is the key job.<id>
 * holding plain JSON with noesis-ship's fields (id, payload, status,
 * worker, queued_by, queued_at, started_at, completed_at, result, error)
 * and more (attempts, priority, lease, ...). Ids are <prefix>-001, -002,
 * ... Every change is a compare-and-swap, so shipds on many hosts share a
 * queue and no job is claimed twice. Queue names: letters, digits, _ and
 * -. The first submit or claim makes a missing queue with the default
 * settings.
 *
 * A claim and its lease belong to the handle that claimed: shipd renews
 * the lease while the handle is connected, and only that handle may
 * complete or fail the job (others get EBUSY). When the handle closes (or
 * the app dies, or its shipd), the job goes back to the queue, its
 * attempts kept, and is claimed again after the queue's backoff; after
 * its last attempt it fails for good (a dead letter).
 *
 * Errors (errno), besides the usual: EINVAL (a bad queue name, id, or
 * payload or result that is not JSON), ENOENT (no such queue or job; a
 * claim with no job ready in time), EBUSY (a job not held by this handle,
 * a cancel or requeue of a job in the wrong state, a queue that exists
 * with other settings), EACCES (refused by shipd's policy).
 */

/* A job. Returned by a call it is the caller's: free it with
 * shipc_job_free() (a list with shipc_job_list_free()). Strings are never
 * NULL except result_json and error, which are NULL when there is none. */
struct shipc_job {
	char *id;
	char *queue;
	char *payload_json;  /* the payload as compact JSON */
	char *status;        /* "queued", "running", "complete", "failed" */
	char *worker;        /* the worker it is for; "": any */
	char *queued_by;
	uint64_t queued_at_ms;    /* Unix ms */
	uint64_t started_at_ms;   /* the last claim; 0: never */
	uint64_t completed_at_ms; /* 0: not finished */
	char *result_json;   /* a complete job's result, compact JSON */
	char *error;         /* why it failed (also kept while retried) */
	uint32_t attempts;   /* claims so far */
	uint32_t max_attempts;
	int32_t priority;    /* higher first */
	uint64_t not_before_ms;  /* not claimed before (a delay, a backoff) */
	uint64_t lease_until_ms; /* running: requeued after this, unless renewed */
	char *claimed_by;    /* the worker that holds it; "" */
	char *holder;        /* the shipd and connection holding it; "" */
	char *idempotency_key; /* "" */
	int dead_letter;     /* failed for good after its last attempt */
	int cancelled;
	uint64_t revision;   /* of its KV entry */
};
void shipc_job_free(struct shipc_job *job);
void shipc_job_list_free(struct shipc_job *list, size_t n);

/* A queue's settings; 0 or NULL: the default. */
struct shipc_job_queue_config {
	const char *queue;
	uint32_t max_attempts;     /* claims before a job is dead; 0: 3 */
	uint64_t lease_ms;         /* a claim lasts unless renewed; 0: 30 s */
	uint64_t backoff_ms;       /* before a retry, doubled per attempt; 0: 1 s */
	uint64_t keep_finished;    /* finished jobs kept; 0: 1000 */
	uint64_t keep_finished_ms; /* and for at most; 0: 7 days */
	const char *prefix;        /* of ids (1 to 32 letters, digits, _, -); "JOB" */
};

/* A queue's settings as shipd holds them (defaults filled in). */
struct shipc_job_queue_status {
	char queue[256];
	uint32_t max_attempts;
	uint64_t lease_ms;
	uint64_t backoff_ms;
	uint64_t keep_finished;
	uint64_t keep_finished_ms;
	char prefix[33];
};

/* Create a queue, or accept one that exists with the same settings (EBUSY
 * otherwise). st may be NULL. Returns 0 or -1. */
int shipc_job_queue_create(struct shipc *h,
                           const struct shipc_job_queue_config *cfg,
                           struct shipc_job_queue_status *st);
/* A queue's settings; ENOENT when there is no such queue. */
int shipc_job_queue_info(struct shipc *h, const char *queue,
                         struct shipc_job_queue_status *st);
/* Delete a queue and every job in it. */
int shipc_job_queue_delete(struct shipc *h, const char *queue);

/* A new job; NULL and 0 mean the default. */
struct shipc_job_submit {
	const char *payload_json;    /* any JSON value; NULL: null */
	const char *worker;          /* only this worker claims it; NULL: any */
	int32_t priority;            /* higher first */
	uint64_t delay_ms;           /* not claimed before (at most a year) */
	const char *idempotency_key; /* a submit again with it answers the
	                              * same job, made once */
	uint32_t max_attempts;       /* 0: the queue's */
	const char *queued_by;       /* NULL: the app's name */
};

/*
 * Submit a job to queue (made if missing). s may be NULL (a null payload
 * for any worker). *job (job may be NULL) gets the job as stored. EINVAL
 * for a payload that is not JSON. Returns 0 or -1.
 */
int shipc_job_submit(struct shipc *h, const char *queue,
                     const struct shipc_job_submit *s, struct shipc_job **job);

/*
 * Claim the best ready job of queue for worker (a job for worker or for
 * any worker: the highest priority, then the oldest), waiting up to
 * wait_ms for one (0: answer at once; shipd caps it with its
 * max_request_timeout_ms). The job is then running and held by this
 * handle until it is completed or failed, or the handle closes (it is
 * queued again). *job gets it. ENOENT when no job is ready in time. A
 * missing queue is made with the default settings (a worker may start
 * before the first submit). ENOBUFS when this handle holds too many jobs
 * of the queue already (shipd allows 1024). After ETIMEDOUT (shipd did not
 * answer in time) a job may still have been claimed for this handle: it
 * goes back to the queue when the handle closes.
 */
int shipc_job_claim(struct shipc *h, const char *queue, const char *worker,
                    uint32_t wait_ms, struct shipc_job **job);

/* Complete a job this handle holds, with result_json (any JSON value;
 * NULL: null). EBUSY when this handle does not hold it (no change is
 * made). job may be NULL; *job gets the finished job. Made again after
 * the first was applied (its answer lost: ETIMEDOUT, NATS away a moment),
 * by this handle for the same claim (not claimed, cancelled or requeued
 * since), it returns 0 and changes nothing, *job the job as the first
 * left it; a fail after a complete, or another handle's, is EBUSY. */
int shipc_job_complete(struct shipc *h, const char *queue, const char *id,
                       const char *result_json, struct shipc_job **job);
/* Fail a job this handle holds, with error (printable text, NULL: "").
 * With retry, it is queued again after the queue's backoff while attempts
 * remain, else it fails for good (a dead letter); without, it fails.
 * Again, with the same retry, as shipc_job_complete() again; a complete
 * after a fail is EBUSY. */
int shipc_job_fail(struct shipc *h, const char *queue, const char *id,
                   const char *error, int retry, struct shipc_job **job);
/* Cancel a queued or running job: it fails, cancelled (a holder finds it
 * gone when it finishes). EBUSY for a job that finished. */
int shipc_job_cancel(struct shipc *h, const char *queue, const char *id,
                     struct shipc_job **job);
/* Queue a failed job (a dead letter, a cancelled one) again, its attempts
 * reset. EBUSY for a job that did not fail. */
int shipc_job_requeue(struct shipc *h, const char *queue, const char *id,
                      struct shipc_job **job);
/* A job; ENOENT when there is no such job or queue. */
int shipc_job_get(struct shipc *h, const char *queue, const char *id,
                  struct shipc_job **job);

/* Which jobs shipc_job_list() returns; NULL or 0: all. */
struct shipc_job_filter {
	const char *status;  /* "queued", "running", "complete", "failed" */
	const char *worker;  /* for this worker, or claimed by it */
	int dead_letter;     /* only dead letters */
	uint32_t limit;      /* 0: 1000 */
};
/*
 * The jobs of queue matching filter (may be NULL), oldest first, at most
 * its limit; *truncated (may be NULL) is set when there were more. *list
 * is an array of *n jobs: free it with shipc_job_list_free(). Returns 0
 * or -1.
 */
int shipc_job_list(struct shipc *h, const char *queue,
                   const struct shipc_job_filter *filter,
                   struct shipc_job **list, size_t *n, int *truncated);

/* How many jobs the queue has in each state, as noesis-ship counts them
 * (queued, running, complete, failed), and of those how many are dead
 * letters (of failed) and delayed (of queued: not ready yet). */
struct shipc_job_counts {
	uint64_t queued, running, complete, failed;
	uint64_t dead_letter, delayed;
};
int shipc_job_counts(struct shipc *h, const char *queue,
                     struct shipc_job_counts *counts);

/* What a worker function returns: complete the job, fail it and let it
 * be retried (while attempts remain), or fail it for good. */
#define SHIPC_JOB_DONE 0
#define SHIPC_JOB_RETRY (-1)
#define SHIPC_JOB_FAILED (-2)

/*
 * A worker function for shipc_job_work(): do job. Return SHIPC_JOB_DONE
 * with *result_json set to a JSON value to complete it (malloc'd, freed
 * by the library; NULL: null), or SHIPC_JOB_RETRY or SHIPC_JOB_FAILED with
 * *error set to why (malloc'd, freed by the library; NULL: "failed"). Any
 * other return is taken as SHIPC_JOB_RETRY. job is valid during the call;
 * the function may call this library (on h too).
 */
typedef int shipc_job_fn(struct shipc *h, const struct shipc_job *job,
                         char **result_json, char **error, void *arg);

struct shipc_job_work_opts {
	uint32_t wait_ms;    /* each claim's wait; 0: 5 s */
	uint64_t max_jobs;   /* return after this many jobs; 0: no limit */
	volatile int *stop;  /* return when it becomes nonzero; NULL: never */
};

/*
 * A worker: claim a job of queue as worker (waiting), run fn on it,
 * complete or fail it as fn says, and again. A result that is not JSON
 * fails the job for good; an error's control characters become spaces
 * and its bytes that are not UTF-8 question marks.
 * Idle waits (ENOENT: no job ready) and shipd or NATS being away
 * (ENOTCONN, ECONNRESET, EAGAIN, ETIMEDOUT) are waited out; so is a job
 * lost before it was finished (its lease taken, the job cancelled or
 * deleted: the finish fails with EBUSY or ENOENT). *stop is read between
 * jobs and at least every wait_ms. o may be NULL. Returns 0 once max_jobs
 * were handed to fn or *stop was set, or -1 with errno set on any other
 * error (EINVAL, EACCES, ...). Jobs are held by h: closing it requeues
 * one that was claimed and not finished.
 */
int shipc_job_work(struct shipc *h, const char *queue, const char *worker,
                   shipc_job_fn *fn, void *arg,
                   const struct shipc_job_work_opts *o);

/*
 * ---- Services (request/reply services found with the NATS micro protocol) ----
 *
 * The handle hosts a service instance: shipd subscribes to its endpoints
 * on NATS (queue group "q" by default, so instances on many hosts share
 * the load), hands each request to a handler of this handle, and publishes
 * the answer. shipd answers `nats micro` discovery ($SRV.PING, INFO, STATS)
 * for the instance with statistics it measures. A request not answered in
 * timeout_ms gets error 504 from shipd; past max_pending unanswered ones,
 * error 503. When the handle closes (or the app dies) the instance is gone
 * at once and its callers get error 503; shipc_svc_stop() drains it. After
 * a reconnect to a restarted shipd the library adds the service again
 * (a new instance id).
 *
 * Names (service, endpoint): letters, digits, _ and -. Version: semantic
 * versioning (1.0.0). Errors: EINVAL (bad name, version, subject),
 * EACCES (the policy's "service" on the name, or "subscribe" on an
 * endpoint's subject), EEXIST (the handle hosts the same name already).
 */
struct shipc_svc;

/* A request, valid during the handler's call (copy what is kept; answer
 * later with its svc and token). */
struct shipc_svc_req {
	struct shipc_svc *svc;
	uint64_t token;
	unsigned endpoint;          /* index in shipc_svc_config.endpoints */
	const char *command;        /* prefix routing: the subject after the
	                             * endpoint's subject and '.'; "" else */
	const char *subject;
	const char *reply;          /* "" when the caller wants no answer
	                             * (answering it does no harm) */
	const void *data;
	size_t len;
	const struct shipc_header *headers;
	size_t n_headers;
	uint32_t timeout_ms;        /* left to answer */
};

/* A handler: answer with shipc_svc_respond() or shipc_svc_error(), now or
 * later (the token stays valid until answered or timed out). It may call
 * this library. */
typedef void shipc_svc_fn(struct shipc *h, const struct shipc_svc_req *req,
                          void *arg);

/* A named handler of a prefix-routed endpoint. */
struct shipc_svc_command {
	const char *name;           /* the command: one token or more (pr.merge) */
	shipc_svc_fn *fn;
	void *arg;
};

struct shipc_svc_endpoint {
	const char *name;
	const char *subject;        /* NULL: name */
	const char *group;          /* NULL: none; else the subject's prefix */
	const char *queue_group;    /* NULL: "q" */
	int no_queue;               /* every instance gets each request */
	const struct shipc_header *metadata;
	size_t n_metadata;
	/* The handler; with prefix routing the default handler (NULL: shipd
	 * answers an unknown command {"error":"UNKNOWN_COMMAND: x","code":404}). */
	shipc_svc_fn *fn;
	void *arg;
	/* Prefix routing (noesis-ship's NatsServiceBuilder): the endpoint
	 * takes <subject>.<command...>; commands go to their handler. */
	int prefix;
	const struct shipc_svc_command *commands;
	size_t n_commands;
};

struct shipc_svc_config {
	const char *name;
	const char *version;
	const char *description;    /* NULL: "" */
	const struct shipc_header *metadata;
	size_t n_metadata;
	const struct shipc_svc_endpoint *endpoints;
	size_t n_endpoints;
	uint32_t timeout_ms;        /* a request's time to be answered; 0: 10 s */
	uint32_t drain_ms;          /* what shipc_svc_stop() waits for; 0: 5 s */
	uint32_t max_pending;       /* unanswered requests; 0: 1024 */
	/* Mutation events (shipc_svc_reply.event_type) go to
	 * <event_prefix>.<type> as ShipEvents; NULL: to <type>. */
	const char *event_prefix;
	const char *event_source;   /* NULL: the service's name */
};

/* Add a service instance; waits until its subscriptions are made. NULL
 * with errno set on failure. The configuration is copied. Handlers may
 * run (with req->svc) before this returns. */
struct shipc_svc *shipc_svc_add(struct shipc *h,
                                const struct shipc_svc_config *cfg);
/* The instance id ($SRV.<verb>.<name>.<id>), valid until the service is
 * stopped; it changes when the library adds the service again. */
const char *shipc_svc_id(const struct shipc_svc *svc);
/* 0 while the service serves (or waits to be added again after a
 * reconnect); else the errno of why it ended for good: shipd ended it,
 * or refused to add it again (EACCES, ...). An ended service takes no
 * requests; it still needs shipc_svc_stop() to be freed. */
int shipc_svc_ended(const struct shipc_svc *svc);

/* Answer request token of svc with data. Not waited for: 0 once queued. */
int shipc_svc_respond(struct shipc_svc *svc, uint64_t token, const void *data,
                      size_t len);
/* Answer with an error: headers Nats-Service-Error: text and
 * Nats-Service-Error-Code: code (code > 0), and data (may be NULL). */
int shipc_svc_error(struct shipc_svc *svc, uint64_t token, unsigned code,
                    const char *text, const void *data, size_t len);

/* An answer with everything. */
struct shipc_svc_reply {
	const void *data;
	size_t len;
	const struct shipc_header *headers;
	size_t n_headers;
	unsigned error_code;        /* > 0: an error reply, with error_text */
	const char *error_text;
	/* A mutation event published (and acknowledged by JetStream) before
	 * the answer is sent: type, and its JSON payload (NULL: null). */
	const char *event_type;
	const char *event_json;
};
/* Answer and wait for shipd to have sent it: ENOENT when the request
 * timed out already, the event's error when it could not be stored (the
 * answer is sent all the same). */
int shipc_svc_reply(struct shipc_svc *svc, uint64_t token,
                    const struct shipc_svc_reply *r);

/* Stop taking requests, wait (up to drain_ms) for those in flight to be
 * answered, and remove the instance. svc is freed, also on failure
 * (ETIMEDOUT: shipd did not end it in time). May be called from one of
 * its handlers. shipc_close() frees the services of a handle without
 * draining (their callers get error 503). */
int shipc_svc_stop(struct shipc_svc *svc);

/* Serve: dispatch until *stop becomes nonzero (a signal handler may set
 * it; read at least every 100 ms) or a service of h ends for good, then
 * stop every service of h (draining; each svc is freed). 0 after *stop,
 * or -1 with errno: the ended service's (see shipc_svc_ended()), or
 * ETIMEDOUT from the stop. h must not be closed while this runs. */
int shipc_svc_run(struct shipc *h, volatile int *stop);

/* Discovery: send $SRV.<verb>[.<name>[.<id>]] ("PING", "INFO", "STATS";
 * name and id may be NULL) and collect every instance's JSON answer for
 * up to wait_ms (0: 2 s; it ends earlier once answers stop coming).
 * *replies gets n malloc'd strings (free with shipc_svc_replies_free()). */
int shipc_svc_discover(struct shipc *h, const char *verb, const char *name,
                       const char *id, uint32_t wait_ms, char ***replies,
                       size_t *n);
void shipc_svc_replies_free(char **replies, size_t n);

#ifdef __cplusplus
}
#endif

#endif
