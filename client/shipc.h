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

/* 1 while connected to shipd, 0 while reconnecting or closed. */
int shipc_is_connected(struct shipc *h);

#ifdef __cplusplus
}
#endif

#endif
