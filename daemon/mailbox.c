/* SPDX-License-Identifier: MIT */
/* The one queue by which nats.c threads hand work to the loop thread. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "shipd.h"

struct ring {
	struct mail *m;
	size_t len, cap;
};

static struct {
	pthread_mutex_t mu;
	struct ring in;   /* filled by posters */
	struct ring work; /* drained by the loop */
	size_t bytes;     /* payload bytes in `in` and `work` */
	_Atomic size_t mails; /* in `in` and `work`, not yet dispatched */
	size_t max_bytes;
	bool signaled;
	bool closed; /* shutting down: posters dispose of their own mail */
	int efd;
	struct event *ev;
	mail_fn *fn;
} mb = {.mu = PTHREAD_MUTEX_INITIALIZER, .efd = -1};

static void mailbox_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("%s: read", __func__);

	/* Swap the rings so posters never wait for the loop's work. */
	pthread_mutex_lock(&mb.mu);
	struct ring r = mb.in;
	mb.in = mb.work;
	mb.work = r;
	mb.in.len = 0;
	mb.signaled = false;
	pthread_mutex_unlock(&mb.mu);

	size_t bytes = 0;
	for (size_t i = 0; i < mb.work.len; i++) {
		bytes += mb.work.m[i].bytes;
		mb.fn(&mb.work.m[i]);
	}
	atomic_fetch_sub(&mb.mails, mb.work.len);
	mb.work.len = 0;
	pthread_mutex_lock(&mb.mu);
	mb.bytes -= bytes;
	pthread_mutex_unlock(&mb.mu);
	/* Keep a huge burst from pinning memory. */
	if (mb.work.cap > 65536) {
		free(mb.work.m);
		mb.work = (struct ring){0};
	}
	control_flush();
}

int mailbox_init(struct event_base *b, mail_fn *fn, size_t max_bytes)
{
	mb.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (mb.efd < 0)
		return -1;
	mb.ev = event_new(b, mb.efd, EV_READ | EV_PERSIST, mailbox_cb, NULL);
	if (!mb.ev || event_add(mb.ev, NULL) < 0)
		return -1;
	mb.fn = fn;
	mb.max_bytes = max_bytes;
	return 0;
}

void mailbox_discard(void)
{
	pthread_mutex_lock(&mb.mu);
	mb.closed = true;
	for (size_t i = 0; i < mb.in.len; i++)
		link_msg_destroy(mb.in.m[i].msg);
	atomic_fetch_sub(&mb.mails, mb.in.len);
	mb.in.len = 0;
	pthread_mutex_unlock(&mb.mu);
}

void mailbox_finish(void)
{
	if (mb.ev)
		event_free(mb.ev);
	if (mb.efd >= 0)
		close(mb.efd);
	free(mb.in.m);
	free(mb.work.m);
	mb.in = mb.work = (struct ring){0};
	mb.ev = NULL;
	mb.efd = -1;
}

void mailbox_set_limit(size_t max_bytes)
{
	pthread_mutex_lock(&mb.mu);
	mb.max_bytes = max_bytes;
	pthread_mutex_unlock(&mb.mu);
}

size_t mailbox_queued_bytes(void)
{
	pthread_mutex_lock(&mb.mu);
	size_t n = mb.bytes;
	pthread_mutex_unlock(&mb.mu);
	return n;
}

bool mailbox_idle(void)
{
	return atomic_load(&mb.mails) == 0;
}

static _Atomic uint64_t msgs_seen;

uint64_t mailbox_msgs_seen(void)
{
	return atomic_load(&msgs_seen);
}

int mailbox_post(const struct mail *m, bool droppable)
{
	if (m->msg)
		atomic_fetch_add(&msgs_seen, 1);
	pthread_mutex_lock(&mb.mu);
	if (mb.closed) {
		/* nats.c's threads run on while shipd stops: the message goes
		 * back to nats.c now, while nats.c is still there. */
		pthread_mutex_unlock(&mb.mu);
		link_msg_destroy(m->msg);
		return 0;
	}
	if (droppable && mb.bytes + m->bytes > mb.max_bytes) {
		pthread_mutex_unlock(&mb.mu);
		return -1;
	}
	if (mb.in.len == mb.in.cap) {
		size_t cap = mb.in.cap ? mb.in.cap * 2 : 256;
		struct mail *n = realloc(mb.in.m, cap * sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&mb.mu);
			if (!droppable)
				fatalx("%s: out of memory", __func__);
			return -1;
		}
		mb.in.m = n;
		mb.in.cap = cap;
	}
	mb.in.m[mb.in.len] = *m;
	atomic_fetch_add(&mb.mails, 1);
	/* With its posting: what the loop dispatches is counted already. */
	mb.in.m[mb.in.len++].posted = link_msg_posted(m->nc);
	mb.bytes += m->bytes;
	bool wake = !mb.signaled;
	mb.signaled = true;
	pthread_mutex_unlock(&mb.mu);
	if (wake) {
		uint64_t one = 1;
		if (write(mb.efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_warn("%s: write", __func__);
	}
	return 0;
}
