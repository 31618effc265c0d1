/* SPDX-License-Identifier: MIT */
/* libshipc's internals, shared by its source files; not installed. */
#ifndef SHIPC_PRIVATE_H
#define SHIPC_PRIVATE_H

#include <pthread.h>
#include <stdbool.h>

#include "ipc.h"
#include "shipc.h"

#define SHIPC_EXPORT __attribute__((visibility("default")))

struct shipc;
struct call;

/* Runs in the reading thread, without the lock, for the call's reply. */
typedef void call_reply_fn(struct shipc *h, struct call *c,
                           const Ship__ServerFrame *f);

struct call {
	uint64_t id;
	call_reply_fn *on_reply;
	/* CALL_CB: the app's callback; waiters have none. */
	shipc_reply_fn *cb;
	void *arg;
	void *out; /* where on_reply stores its result */
	bool waiter;
	bool done;
	int err;
	struct call *next; /* in the completion list */
};

/* A stream the app opened: a subscription, an event subscription or a
 * channel listen. Its opening frame is kept to open it again after a
 * reconnect. */
struct sub {
	uint64_t id;
	char *what;             /* subject or pattern, for messages */
	struct ipc_buf open;    /* the packed opening frame */
	shipc_msg_fn *cb;       /* core messages */
	shipc_event_fn *ecb;    /* JetStream deliveries */
	void *arg;
	bool confirmed; /* shipd acknowledged it on this connection */
	struct sub *next; /* in the completion list */
	int end_err;
};

struct shipc {
	pthread_mutex_t mu;
	pthread_cond_t cv;    /* calls done, reader released, space, state */
	pthread_cond_t bg_cv; /* wakes the background thread */
	char *path;
	char *name;
	int sock;  /* stays the same number across reconnects (dup2) */
	int epfd;  /* what apps poll */
	int wakefd;
	uint64_t gen; /* connection generation */
	uint64_t in_gen;
	bool connected;
	bool stop;
	bool dead;
	uint32_t max_frame;
	struct ipc_buf out;
	size_t writing; /* bytes the background thread is writing */
	bool bg_busy;
	size_t out_limit;
	struct ipc_buf in;
	bool reading;
	pthread_t reader;
	int depth; /* nested reads in the reading thread */
	bool close_pending;
	struct ipc_idmap calls;
	struct ipc_idmap subs;
	uint64_t next_id;
	struct call *done_calls; /* completions to run */
	struct sub *done_subs;
	struct shipc_svc *svcs; /* services added (svc.c) */
	pthread_t bg;
	bool bg_started;
	char last_error[256];
	bool outcome_unknown; /* of the failure in last_error */
};

/* shipc.c */
void shipc_log(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void set_error(struct shipc *h, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int code_errno(Ship__Code code);
/* With the lock held: queue a frame; write at once when latency counts. */
int queue_frame(struct shipc *h, const Ship__ClientFrame *f, bool now);
int queue_publish(struct shipc *h, const struct ipc_publish *p, bool now);
/* Register c under a new id (lock held). */
int call_register(struct shipc *h, struct call *c);
/* Wait for a registered waiter's reply; 0 or -1 with errno. */
int call_wait(struct shipc *h, struct call *c, int timeout_ms);
/* With the lock held: register a call, send f with its id and wait for
 * the reply (waiter) or return at once (callback). Returns 0 or -1. */
int call_start(struct shipc *h, struct call *c, Ship__ClientFrame *f,
               int timeout_ms);
/* Lock not held: wait for room, send f as a waiting call and wait up to
 * timeout_ms for its reply, which fn takes into out. 0 or -1 (errno). */
int call_wait_reply(struct shipc *h, Ship__ClientFrame *f, call_reply_fn *fn,
                    void *out, int timeout_ms);
/* In a call_reply_fn: whether f is the reply body wanted (else c->err is
 * set: shipd's error, or EPROTO for another body). */
bool reply_is(struct call *c, const Ship__ServerFrame *f,
              Ship__ServerFrame__BodyCase body);
/* Refuse a call's argument: what in last_error, EINVAL, -1. */
int bad_arg(struct shipc *h, const char *what);
struct sub *sub_find(struct shipc *h, uint64_t id);
/* Open the stream f describes as s (lock held; s->cb or s->ecb, arg and
 * what set): registers it, sends f and waits for shipd's answer. On
 * failure s is freed and 0 returned with errno set. */
uint64_t stream_open(struct shipc *h, struct sub *s, Ship__ClientFrame *f);
void sub_free(struct sub *s);
int wait_for_space(struct shipc *h);
int read_once(struct shipc *h, int timeout_ms);
void event_from_ship(struct shipc_event *ev, const Ship__EventDelivery *d);
/* View a protocol message as a shipc_msg; hs has room for n headers. */
void msg_from_ship(struct shipc_msg *out, struct shipc_header *hs,
                   const Ship__Msg *m, uint64_t dropped);

#endif
