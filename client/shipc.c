/* SPDX-License-Identifier: MIT */
/* libshipc's connection: handshake, the background writer and reconnector,
 * reading and dispatching frames, and teardown. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "shipc-private.h"

#define HANDSHAKE_TIMEOUT_MS 5000
#define READ_CHUNK 65536
#define OUT_LIMIT (4u << 20)
#define RECONNECT_MIN_MS 50
#define RECONNECT_MAX_MS 2000
#define MAX_STACK_HEADERS 16

static shipc_log_fn *log_fn;
static void *log_arg;

SHIPC_EXPORT void shipc_set_log_handler(shipc_log_fn *fn, void *arg)
{
	log_fn = fn;
	log_arg = arg;
}

void shipc_log(int level, const char *fmt, ...)
{
	if (!log_fn)
		return;
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_fn(level, buf, log_arg);
}

void set_error(struct shipc *h, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(h->last_error, sizeof(h->last_error), fmt, ap);
	va_end(ap);
	h->outcome_unknown = false;
}

/* The error of an answer from shipd (lock held). */
static void set_error_from(struct shipc *h, const Ship__ServerFrame *f)
{
	set_error(h, "%s", f->error);
	h->outcome_unknown = f->outcome_unknown;
}

SHIPC_EXPORT int shipc_outcome_unknown(struct shipc *h)
{
	pthread_mutex_lock(&h->mu);
	int r = h->outcome_unknown;
	pthread_mutex_unlock(&h->mu);
	return r;
}

SHIPC_EXPORT const char *shipc_last_error(struct shipc *h, char *buf,
                                          size_t size)
{
	if (!size)
		return buf;
	pthread_mutex_lock(&h->mu);
	snprintf(buf, size, "%s", h->last_error);
	pthread_mutex_unlock(&h->mu);
	return buf;
}

SHIPC_EXPORT const char *shipc_default_socket(void)
{
	const char *s = getenv("SHIP_SOCKET");
	return s && *s ? s : SHIP_DEFAULT_SOCKET;
}

SHIPC_EXPORT const char *shipc_link_name(enum shipc_link link)
{
	switch (link) {
	case SHIPC_LINK_CONNECTING:
		return "connecting";
	case SHIPC_LINK_CONNECTED:
		return "connected";
	case SHIPC_LINK_RECONNECTING:
		return "reconnecting";
	case SHIPC_LINK_CLOSED:
		return "closed";
	}
	return "unknown";
}

int code_errno(Ship__Code code)
{
	switch (code) {
	case SHIP__CODE__OK:
		return 0;
	case SHIP__CODE__INVALID_ARGUMENT:
		return EINVAL;
	case SHIP__CODE__NOT_FOUND:
		return ENOENT;
	case SHIP__CODE__ALREADY_EXISTS:
		return EEXIST;
	case SHIP__CODE__WRONG_REVISION:
		return ESTALE;
	case SHIP__CODE__PERMISSION_DENIED:
		return EACCES;
	case SHIP__CODE__UNAVAILABLE:
		return EAGAIN;
	case SHIP__CODE__TIMEOUT:
		return ETIMEDOUT;
	case SHIP__CODE__RESOURCE_EXHAUSTED:
		return ENOBUFS;
	case SHIP__CODE__NO_RESPONDERS:
		return ESRCH;
	case SHIP__CODE__UNIMPLEMENTED:
		return ENOSYS;
	case SHIP__CODE__CONFLICT:
		return EBUSY;
	case SHIP__CODE__CORRUPT:
		return EBADMSG;
	default:
		return EIO;
	}
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct timespec deadline_ts(uint64_t deadline_ms)
{
	struct timespec ts = {(time_t)(deadline_ms / 1000),
	                      (long)(deadline_ms % 1000) * 1000000};
	return ts;
}

/* ---- handshake: plain blocking I/O on a new socket ---- */

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t deadline)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		uint64_t now = mono_ms();
		if (now >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
		struct pollfd pfd = {fd, POLLOUT, 0};
		poll(&pfd, 1, (int)(deadline - now));
	}
	return 0;
}

/* Connect and exchange hellos. Returns the socket or -1 with errno set;
 * *max_frame gets the daemon's limit. */
static int handshake(const char *path, const char *name, uint32_t *max_frame,
                     char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long");
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "cannot connect to shipd at %s: %s", path,
		         strerror(errno));
		goto error;
	}
	uint64_t deadline = mono_ms() + HANDSHAKE_TIMEOUT_MS;
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Hello hello = SHIP__HELLO__INIT;
	hello.version = IPC_VERSION;
	hello.name = (char *)name;
	f.id = 1;
	f.body_case = SHIP__CLIENT_FRAME__BODY_HELLO;
	f.hello = &hello;
	struct ipc_buf b = {0};
	if (ipc_frame_pack(&b, &f.base, IPC_FRAME_LIMIT) < 0 ||
	    (write_all(fd, ipc_buf_head(&b), ipc_buf_used(&b), deadline) < 0 &&
	     errno != EPIPE && errno != ECONNRESET)) {
		/* A refusal (too many clients) may already wait to be read:
		 * only other failures end here. */
		snprintf(err, errlen, "cannot send hello: %s", strerror(errno));
		ipc_buf_finish(&b);
		goto error;
	}
	ipc_buf_reset(&b, 0);
	for (;;) {
		const uint8_t *body;
		size_t blen, flen;
		enum ipc_frame_status st = ipc_frame_peek(
			ipc_buf_head(&b), ipc_buf_used(&b), IPC_FRAME_LIMIT, &body,
			&blen, &flen);
		if (st == IPC_FRAME_OK) {
			Ship__ServerFrame *r =
				ship__server_frame__unpack(NULL, blen, body);
			int e = 0;
			if (!r || (r->code == SHIP__CODE__OK &&
			           r->body_case != SHIP__SERVER_FRAME__BODY_HELLO)) {
				snprintf(err, errlen, "bad hello reply from shipd");
				e = EPROTO;
			} else if (r->code != SHIP__CODE__OK) {
				snprintf(err, errlen, "shipd refused: %s", r->error);
				e = code_errno(r->code);
				if (r->code == SHIP__CODE__INVALID_ARGUMENT)
					e = EPROTO;
			} else {
				*max_frame = r->hello->max_frame;
			}
			if (r)
				ship__server_frame__free_unpacked(r, NULL);
			ipc_buf_finish(&b);
			if (e) {
				errno = e;
				goto error;
			}
			return fd;
		}
		if (st != IPC_FRAME_PARTIAL) {
			snprintf(err, errlen, "shipd: %s", ipc_frame_strerror(st));
			ipc_buf_finish(&b);
			errno = EPROTO;
			goto error;
		}
		uint64_t now = mono_ms();
		struct pollfd pfd = {fd, POLLIN, 0};
		if (now >= deadline ||
		    poll(&pfd, 1, (int)(deadline - now)) == 0) {
			snprintf(err, errlen, "no hello from shipd");
			ipc_buf_finish(&b);
			errno = ETIMEDOUT;
			goto error;
		}
		ssize_t n = ipc_buf_read(&b, fd, 4096);
		if (n <= 0 && !(n < 0 && errno == EAGAIN)) {
			snprintf(err, errlen, "shipd closed the connection");
			ipc_buf_finish(&b);
			errno = ECONNRESET;
			goto error;
		}
	}
error:
	close(fd);
	return -1;
}

/* ---- connection state, all with the lock held ---- */

static void wake_dispatch(struct shipc *h)
{
	uint64_t one = 1;
	(void)!write(h->wakefd, &one, sizeof(one));
}

/* The connection broke: fail what waited on it; subscriptions stay and
 * are re-opened by the background thread. */
static void lose_connection(struct shipc *h, const char *why)
{
	if (!h->connected)
		return;
	h->connected = false;
	epoll_ctl(h->epfd, EPOLL_CTL_DEL, h->sock, NULL);
	shutdown(h->sock, SHUT_RDWR);
	ipc_buf_reset(&h->out, 0);
	set_error(h, "lost shipd: %s", why);
	shipc_log(LOG_WARNING, "libshipc: lost shipd (%s); reconnecting", why);
	size_t pos = 0;
	void *v;
	while (ipc_idmap_next(&h->calls, &pos, NULL, &v)) {
		struct call *c = v;
		ipc_idmap_del(&h->calls, c->id);
		c->done = true;
		c->err = ECONNRESET;
		if (!c->waiter) {
			c->next = h->done_calls;
			h->done_calls = c;
		}
	}
	pos = 0;
	while (ipc_idmap_next(&h->subs, &pos, NULL, &v))
		((struct sub *)v)->confirmed = false;
	pthread_cond_broadcast(&h->cv);
	pthread_cond_signal(&h->bg_cv);
	wake_dispatch(h);
}

static void resubscribe(struct shipc *h)
{
	size_t pos = 0;
	void *v;
	while (ipc_idmap_next(&h->subs, &pos, NULL, &v)) {
		struct sub *s = v;
		/* The same id: pushes keep finding the app's callback. */
		if (ipc_buf_append(&h->out, ipc_buf_head(&s->open),
		                   ipc_buf_used(&s->open)) < 0)
			shipc_log(LOG_ERR, "libshipc: cannot re-open %s", s->what);
	}
	if (ipc_buf_used(&h->out))
		pthread_cond_signal(&h->bg_cv);
}

/* Install a new connected socket in place of the old one. */
static void install(struct shipc *h, int fd, uint32_t max_frame)
{
	if (dup3(fd, h->sock, O_CLOEXEC) < 0) {
		close(fd);
		return;
	}
	close(fd);
	int fl = fcntl(h->sock, F_GETFL);
	fcntl(h->sock, F_SETFL, fl | O_NONBLOCK);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = h->sock};
	epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->sock, &ev);
	h->max_frame = max_frame;
	h->gen++;
	h->connected = true;
	resubscribe(h);
	shipc_log(LOG_INFO, "libshipc: reconnected to shipd at %s", h->path);
	pthread_cond_broadcast(&h->cv);
	wake_dispatch(h);
}

/* ---- the background thread: writes buffered frames, reconnects ---- */

static void bg_write(struct shipc *h)
{
	struct ipc_buf b = h->out;
	h->out = (struct ipc_buf){0};
	h->writing = ipc_buf_used(&b);
	h->bg_busy = true;
	int fd = h->sock;
	uint64_t gen = h->gen;
	pthread_mutex_unlock(&h->mu);
	int err = 0;
	while (ipc_buf_used(&b) > 0) {
		ssize_t n = ipc_buf_write(&b, fd);
		if (n >= 0)
			continue;
		if (errno != EAGAIN) {
			err = errno;
			break;
		}
		struct pollfd pfd = {fd, POLLOUT, 0};
		poll(&pfd, 1, 1000);
	}
	pthread_mutex_lock(&h->mu);
	h->bg_busy = false;
	h->writing = 0;
	/* Keep the bigger buffer for reuse when the new one is empty. */
	if (ipc_buf_used(&h->out) == 0 && h->out.cap < b.cap &&
	    b.cap <= 4 * READ_CHUNK) {
		ipc_buf_finish(&h->out);
		ipc_buf_reset(&b, SIZE_MAX);
		h->out = b;
	} else {
		ipc_buf_finish(&b);
	}
	if (err && gen == h->gen)
		lose_connection(h, strerror(err));
	pthread_cond_broadcast(&h->cv);
}

static void bg_reconnect(struct shipc *h, unsigned *delay)
{
	/* Wait first: a daemon that just went away needs a moment. */
	struct timespec ts = deadline_ts(mono_ms() + *delay);
	while (!h->stop && pthread_cond_timedwait(&h->bg_cv, &h->mu, &ts) == 0)
		;
	if (h->stop)
		return;
	char *path = strdup(h->path), *name = strdup(h->name);
	pthread_mutex_unlock(&h->mu);
	uint32_t max_frame = 0;
	char err[256];
	int fd = path && name ? handshake(path, name, &max_frame, err, sizeof(err))
	                      : -1;
	free(path);
	free(name);
	pthread_mutex_lock(&h->mu);
	if (fd < 0) {
		*delay = *delay * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS
		                                       : *delay * 2;
		return;
	}
	if (h->stop) {
		close(fd);
		return;
	}
	*delay = RECONNECT_MIN_MS;
	install(h, fd, max_frame);
}

static void *bg_main(void *arg)
{
	struct shipc *h = arg;
	unsigned delay = RECONNECT_MIN_MS;
	pthread_mutex_lock(&h->mu);
	while (!h->stop) {
		if (!h->connected && !h->dead) {
			bg_reconnect(h, &delay);
			continue;
		}
		if (ipc_buf_used(&h->out) > 0) {
			bg_write(h);
			continue;
		}
		pthread_cond_wait(&h->bg_cv, &h->mu);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

/* After a frame was appended to out: write it now (latency) when the
 * writer is idle, else leave it to the writer's next round. */
static int kick(struct shipc *h, bool now)
{
	if (h->bg_busy)
		return 0;
	if (now) {
		ssize_t n = ipc_buf_write(&h->out, h->sock);
		if (n < 0 && errno != EAGAIN) {
			lose_connection(h, strerror(errno));
			errno = ENOTCONN;
			return -1;
		}
		if (ipc_buf_used(&h->out) == 0)
			return 0;
	}
	pthread_cond_signal(&h->bg_cv);
	return 0;
}

static size_t max_body(const struct shipc *h)
{
	return h->max_frame > IPC_HDR_LEN ? h->max_frame - IPC_HDR_LEN
	                                  : IPC_FRAME_LIMIT;
}

static int not_connected(struct shipc *h)
{
	set_error(h, "not connected to shipd");
	errno = ENOTCONN;
	return -1;
}

static int too_big(struct shipc *h)
{
	set_error(h, "frame too large for shipd (limit %u bytes)", h->max_frame);
	return -1;
}

int queue_frame(struct shipc *h, const Ship__ClientFrame *f, bool now)
{
	if (!h->connected)
		return not_connected(h);
	if (ipc_frame_pack(&h->out, &f->base, max_body(h)) < 0)
		return too_big(h);
	return kick(h, now);
}

int queue_publish(struct shipc *h, const struct ipc_publish *p, bool now)
{
	if (!h->connected)
		return not_connected(h);
	if (ipc_pack_publish(&h->out, p, max_body(h)) < 0)
		return too_big(h);
	return kick(h, now);
}

/* Wait (lock held) until the output buffer has room. */
int wait_for_space(struct shipc *h)
{
	if (ipc_buf_used(&h->out) + h->writing < h->out_limit)
		return 0;
	struct timespec ts = deadline_ts(mono_ms() + HANDSHAKE_TIMEOUT_MS);
	while (h->connected &&
	       ipc_buf_used(&h->out) + h->writing >= h->out_limit) {
		if (pthread_cond_timedwait(&h->cv, &h->mu, &ts) == ETIMEDOUT) {
			set_error(h, "output to shipd stayed full");
			errno = ETIMEDOUT;
			return -1;
		}
	}
	if (!h->connected) {
		errno = ENOTCONN;
		return -1;
	}
	return 0;
}

/* ---- reading and dispatching, in one thread at a time ---- */

void msg_from_ship(struct shipc_msg *out, struct shipc_header *hs,
                   const Ship__Msg *m, uint64_t dropped)
{
	out->subject = m->subject;
	out->reply = m->reply;
	out->data = m->data.data;
	out->len = m->data.len;
	for (size_t i = 0; i < m->n_headers; i++) {
		hs[i].key = m->headers[i]->key;
		hs[i].value = m->headers[i]->value;
	}
	out->headers = hs;
	out->n_headers = m->n_headers;
	out->dropped = dropped;
}

void sub_free(struct sub *s)
{
	free(s->what);
	ipc_buf_finish(&s->open);
	free(s);
}

static void sub_ended(struct shipc *h, struct sub *s, int err)
{
	if (s->ecb)
		s->ecb(h, NULL, err, s->arg);
	else
		s->cb(h, NULL, err, s->arg);
}

struct sub *sub_find(struct shipc *h, uint64_t id)
{
	return ipc_idmap_get(&h->subs, id);
}

/* Runs a callback without the lock; returns 1. */
static int deliver(struct shipc *h, struct sub *s, const Ship__Delivery *d)
{
	struct shipc_header stack[MAX_STACK_HEADERS], *hs = stack;
	struct shipc_msg msg;
	if (!d->msg)
		return 0;
	if (d->msg->n_headers > MAX_STACK_HEADERS &&
	    !(hs = calloc(d->msg->n_headers, sizeof(*hs))))
		return 0;
	msg_from_ship(&msg, hs, d->msg, d->dropped);
	shipc_msg_fn *cb = s->cb;
	void *arg = s->arg;
	pthread_mutex_unlock(&h->mu);
	cb(h, &msg, 0, arg);
	pthread_mutex_lock(&h->mu);
	if (hs != stack)
		free(hs);
	return 1;
}

static int deliver_event(struct shipc *h, struct sub *s,
                         const Ship__EventDelivery *d)
{
	struct shipc_event ev;
	event_from_ship(&ev, d);
	shipc_event_fn *cb = s->ecb;
	void *arg = s->arg;
	pthread_mutex_unlock(&h->mu);
	cb(h, &ev, 0, arg);
	pthread_mutex_lock(&h->mu);
	return 1;
}

static int end_sub(struct shipc *h, struct sub *s, int err)
{
	ipc_idmap_del(&h->subs, s->id);
	pthread_mutex_unlock(&h->mu);
	sub_ended(h, s, err);
	pthread_mutex_lock(&h->mu);
	sub_free(s);
	return 1;
}

static int handle_frame(struct shipc *h, const Ship__ServerFrame *f)
{
	if (f->body_case == SHIP__SERVER_FRAME__BODY_DELIVERY ||
	    f->body_case == SHIP__SERVER_FRAME__BODY_EVENT ||
	    f->body_case == SHIP__SERVER_FRAME__BODY_END) {
		struct sub *s = sub_find(h, f->id);
		if (!s)
			return 0;
		if (f->body_case == SHIP__SERVER_FRAME__BODY_END) {
			if (f->code != SHIP__CODE__OK)
				set_error_from(h, f);
			return end_sub(h, s, code_errno(f->code));
		}
		if (f->body_case == SHIP__SERVER_FRAME__BODY_EVENT)
			return s->ecb ? deliver_event(h, s, f->event) : 0;
		return s->cb ? deliver(h, s, f->delivery) : 0;
	}
	struct call *c = f->id ? ipc_idmap_del(&h->calls, f->id) : NULL;
	if (c) {
		c->err = code_errno(f->code);
		if (c->err)
			set_error_from(h, f);
		pthread_mutex_unlock(&h->mu);
		if (c->on_reply)
			c->on_reply(h, c, f);
		pthread_mutex_lock(&h->mu);
		c->done = true;
		if (c->waiter) {
			pthread_cond_broadcast(&h->cv);
			return 0;
		}
		free(c);
		return 1;
	}
	struct sub *s = f->id ? sub_find(h, f->id) : NULL;
	if (s) {
		/* The answer to a re-subscribe after a reconnect. */
		if (f->code == SHIP__CODE__OK) {
			s->confirmed = true;
			return 0;
		}
		set_error_from(h, f);
		shipc_log(LOG_WARNING, "libshipc: re-open %s: %s", s->what,
		          f->error);
		return end_sub(h, s, code_errno(f->code));
	}
	if (f->code != SHIP__CODE__OK) {
		/* A fire-and-forget request failed. */
		set_error_from(h, f);
		shipc_log(LOG_WARNING, "libshipc: shipd: %s", f->error);
	}
	return 0;
}

static int process_frames(struct shipc *h)
{
	struct ipc_arena arena;
	int n = 0;
	ipc_arena_init(&arena);
	while (!h->close_pending && h->connected) {
		const uint8_t *body;
		size_t blen, flen;
		enum ipc_frame_status st =
			ipc_frame_peek(ipc_buf_head(&h->in), ipc_buf_used(&h->in),
		                       IPC_FRAME_LIMIT, &body, &blen, &flen);
		if (st == IPC_FRAME_PARTIAL)
			break;
		Ship__ServerFrame *f = NULL;
		if (st == IPC_FRAME_OK)
			f = ship__server_frame__unpack(&arena.pb, blen, body);
		if (!f) {
			/* shipd does not send garbage: give up on it. */
			h->dead = true;
			lose_connection(h, st == IPC_FRAME_OK ? "malformed frame"
			                                      : ipc_frame_strerror(st));
			break;
		}
		ipc_buf_consume(&h->in, flen);
		n += handle_frame(h, f);
		ipc_arena_reset(&arena);
	}
	ipc_arena_finish(&arena);
	if (ipc_buf_used(&h->in) == 0 && h->in.cap > 4 * READ_CHUNK)
		ipc_buf_reset(&h->in, 0);
	return n;
}

static int run_completions(struct shipc *h)
{
	int n = 0;
	while (h->done_calls || h->done_subs) {
		struct call *c = h->done_calls;
		if (c) {
			h->done_calls = c->next;
			pthread_mutex_unlock(&h->mu);
			if (c->cb)
				c->cb(h, NULL, c->err, c->arg);
			free(c);
			pthread_mutex_lock(&h->mu);
			n++;
			continue;
		}
		struct sub *s = h->done_subs;
		h->done_subs = s->next;
		pthread_mutex_unlock(&h->mu);
		sub_ended(h, s, s->end_err);
		sub_free(s);
		pthread_mutex_lock(&h->mu);
		n++;
	}
	return n;
}

/* With the lock held: read once (waiting up to timeout_ms) and run what
 * arrived, or wait for the thread that is reading. */
int read_once(struct shipc *h, int timeout_ms)
{
	pthread_t self = pthread_self();
	bool nested = h->reading && pthread_equal(h->reader, self);
	if (h->reading && !nested) {
		if (timeout_ms < 0) {
			pthread_cond_wait(&h->cv, &h->mu);
		} else {
			struct timespec ts = deadline_ts(mono_ms() + (uint64_t)timeout_ms);
			pthread_cond_timedwait(&h->cv, &h->mu, &ts);
		}
		return 0;
	}
	h->reading = true;
	h->reader = self;
	h->depth++;
	int n = run_completions(h);
	if (ipc_buf_used(&h->in) > 0 && h->in_gen == h->gen)
		n += process_frames(h);
	if (n == 0 && !h->close_pending) {
		pthread_mutex_unlock(&h->mu);
		struct epoll_event evs[4];
		epoll_wait(h->epfd, evs, 4, timeout_ms);
		uint64_t v;
		(void)!read(h->wakefd, &v, sizeof(v));
		pthread_mutex_lock(&h->mu);
		if (h->connected) {
			if (h->in_gen != h->gen) {
				ipc_buf_reset(&h->in, 0);
				h->in_gen = h->gen;
			}
			ssize_t r = ipc_buf_read(&h->in, h->sock, READ_CHUNK);
			if (r == 0)
				lose_connection(h, "shipd closed the connection");
			else if (r < 0 && errno != EAGAIN)
				lose_connection(h, strerror(errno));
		}
		n += process_frames(h);
		n += run_completions(h);
	}
	h->depth--;
	if (!nested) {
		h->reading = false;
		pthread_cond_broadcast(&h->cv);
	}
	return n;
}

/* ---- public: connect, fd, dispatch, close ---- */

SHIPC_EXPORT struct shipc *shipc_connect(const char *path, const char *name)
{
	if (!path)
		path = shipc_default_socket();
	if (!name)
		name = program_invocation_short_name;
	struct shipc *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->sock = h->epfd = h->wakefd = -1;
	pthread_mutex_init(&h->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cv, &ca);
	pthread_cond_init(&h->bg_cv, &ca);
	pthread_condattr_destroy(&ca);
	h->out_limit = OUT_LIMIT;
	h->path = strdup(path);
	h->name = strdup(name);
	char err[256];
	int saved;
	if (!h->path || !h->name)
		goto error;
	h->sock = handshake(path, name, &h->max_frame, err, sizeof(err));
	if (h->sock < 0) {
		shipc_log(LOG_DEBUG, "libshipc: %s", err);
		goto error;
	}
	int fl = fcntl(h->sock, F_GETFL);
	fcntl(h->sock, F_SETFL, fl | O_NONBLOCK);
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	h->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->epfd < 0 || h->wakefd < 0)
		goto error;
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = h->sock};
	struct epoll_event wev = {.events = EPOLLIN, .data.fd = h->wakefd};
	if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->sock, &ev) < 0 ||
	    epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->wakefd, &wev) < 0)
		goto error;
	h->connected = true;
	h->gen = h->in_gen = 1;
	h->next_id = 1; /* 1 was the hello */
	if (pthread_create(&h->bg, NULL, bg_main, h) != 0)
		goto error;
	h->bg_started = true;
	return h;
error:
	saved = errno;
	if (h->sock >= 0)
		close(h->sock);
	if (h->epfd >= 0)
		close(h->epfd);
	if (h->wakefd >= 0)
		close(h->wakefd);
	free(h->path);
	free(h->name);
	pthread_cond_destroy(&h->cv);
	pthread_cond_destroy(&h->bg_cv);
	pthread_mutex_destroy(&h->mu);
	free(h);
	errno = saved;
	return NULL;
}

SHIPC_EXPORT int shipc_get_fd(struct shipc *h)
{
	return h->epfd;
}

SHIPC_EXPORT int shipc_is_connected(struct shipc *h)
{
	pthread_mutex_lock(&h->mu);
	int r = h->connected;
	pthread_mutex_unlock(&h->mu);
	return r;
}

static void destroy(struct shipc *h);

SHIPC_EXPORT int shipc_dispatch(struct shipc *h, int timeout_ms)
{
	pthread_mutex_lock(&h->mu);
	int n = read_once(h, timeout_ms);
	bool close_now = h->close_pending && !h->reading;
	pthread_mutex_unlock(&h->mu);
	if (close_now)
		destroy(h);
	return n;
}

SHIPC_EXPORT void shipc_close(struct shipc *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->mu);
	if (h->reading && pthread_equal(h->reader, pthread_self())) {
		h->close_pending = true; /* from a callback: after dispatch */
		pthread_mutex_unlock(&h->mu);
		return;
	}
	pthread_mutex_unlock(&h->mu);
	destroy(h);
}

static void destroy(struct shipc *h)
{
	pthread_mutex_lock(&h->mu);
	/* Hand over buffered publishes, for at most a second. */
	struct timespec ts = deadline_ts(mono_ms() + 1000);
	while (h->connected && (ipc_buf_used(&h->out) > 0 || h->bg_busy)) {
		pthread_cond_signal(&h->bg_cv);
		if (pthread_cond_timedwait(&h->cv, &h->mu, &ts) == ETIMEDOUT)
			break;
	}
	h->stop = true;
	pthread_cond_signal(&h->bg_cv);
	pthread_mutex_unlock(&h->mu);
	if (h->bg_started)
		pthread_join(h->bg, NULL);

	/* Alone now: run every callback still owed, once. */
	pthread_mutex_lock(&h->mu);
	size_t pos = 0;
	void *v;
	while (ipc_idmap_next(&h->calls, &pos, NULL, &v)) {
		struct call *c = v;
		if (c->waiter)
			continue;
		c->err = ECANCELED;
		c->next = h->done_calls;
		h->done_calls = c;
	}
	pos = 0;
	while (ipc_idmap_next(&h->subs, &pos, NULL, &v)) {
		struct sub *s = v;
		s->end_err = 0;
		s->next = h->done_subs;
		h->done_subs = s;
	}
	ipc_idmap_finish(&h->calls);
	ipc_idmap_finish(&h->subs);
	h->reading = true;
	h->reader = pthread_self();
	run_completions(h);
	pthread_mutex_unlock(&h->mu);

	close(h->sock);
	close(h->epfd);
	close(h->wakefd);
	ipc_buf_finish(&h->in);
	ipc_buf_finish(&h->out);
	free(h->path);
	free(h->name);
	pthread_cond_destroy(&h->cv);
	pthread_cond_destroy(&h->bg_cv);
	pthread_mutex_destroy(&h->mu);
	free(h);
}
