/* SPDX-License-Identifier: MIT */
/*
 * Priorities and a bandwidth cap for the uplink: uplink_priority (what
 * the hub catches up first after an outage) and uplink_rate_limit (bytes
 * per second the hub may source from this robot, all streams together).
 *
 * NATS 2.9 has neither for sourcing, but the pieces are there. The hub
 * sources a robot stream through a consumer it makes on the robot's own
 * server ($JS.<robot>.API.CONSUMER.CREATE): a direct push consumer with
 * flow control, delivering on $JS.S.<id> across the leafnode. Such a
 * consumer takes rate_limit_bps, which nats-server enforces itself, and
 * an update of it by name keeps everything else. So shipd:
 *
 *   - learns each such consumer of a robot stream the hub sources (as
 *     uplink.c reads the hub's streams) or that uplink_priority names,
 *     from the robot server's advisory
 *     ($JS.EVENT.ADVISORY.CONSUMER.CREATED.<stream>.<name>) the moment
 *     the hub makes it; for the ones made before shipd was there (a
 *     reboot starts the leaf server first) or while its link to the
 *     server was down, from the ack subject of the messages they deliver
 *     ($JS.ACK.<stream>.<name>...), looked at for PEEK_MS while the
 *     uplink is up and such a stream has no consumer known, at most
 *     every PEEK_EVERY_MS (a copy of what they deliver meanwhile: the
 *     robot profile keeps other robots' from coming in);
 *   - asks each for its state every uplink_probe_ms (CONSUMER.INFO: what
 *     it has not sent, whether anyone takes its messages);
 *   - gives each the rate of the plan below, by sending its own
 *     configuration back with rate_limit_bps set (CONSUMER.CREATE with
 *     its name, an update), and again whenever the plan changes.
 *
 * The plan: a stream whose consumers have messages not sent is behind.
 * A stream is let through when no stream of a higher priority (a lower
 * number) is behind; the others are held to a trickle: a 64th of the cap
 * (at least 1 KiB/s), 16 KiB/s without one, and at least two of the
 * stream's mean messages a second. Of the streams let through,
 * those behind share what the trickles leave of the cap, and those not
 * behind get a trickle; with none behind, they share it. Without a cap,
 * the streams let through have no limit. A trickle, not a stop: while
 * nats-server sleeps out a message's delay, its consumer sends no
 * heartbeat, and the hub takes 3 s of silence for a stalled source and
 * makes a new consumer (unlimited until shipd sets it); and a delay is
 * slept out at the old rate after a change.
 *
 * What nats-server's limiter does not do: every update starts a new
 * limiter with a full bucket of one maximum message (the stream's
 * max_msg_size, else the server's max_payload, 1 MiB by default), so a
 * change of the plan lets that much through at once; what a consumer
 * sent before shipd set its rate went at full speed; a consumer made to
 * start at a time cannot be updated (2.9.10 compares the start times as
 * pointers: error 10012), so it is not limited. Other traffic on the
 * leafnode (requests, hub KV writes, jobs) is not limited. At a clean
 * stop shipd lifts the rates it set; after a crash they stay until the
 * hub makes its consumers anew or a new shipd finds them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>
#include <nats/nats.h>

#include "shipd.h"

#define CAP_STREAMS 16
#define CAP_CONSUMERS 4 /* per stream: the hub's, one per hub stream */
#define PEEK_MS 5000
#define PEEK_EVERY_MS 60000
#define TRICKLE_MIN 1024u
#define TRICKLE_FREE 16384u /* held, without a cap */
/* After the hub is back, how long a stream it sourced before and has no
 * consumer of yet still holds the streams below it: the hub makes its
 * consumers one by one, within a second or two. */
#define GRACE_MS 3000

struct ccons {
	bool used;
	char name[JS_NAME_MAX + 1];
	struct cstream *s;
	json_t *cfg;          /* its configuration, from CONSUMER.INFO */
	uint64_t pending;     /* num_pending then */
	bool behind;          /* pending at two INFOs running, or at the
	                       * first: it has a backlog to catch up */
	bool bound;           /* someone takes what it delivers */
	bool known;           /* INFO answered: it is a sourcing consumer */
	bool stale;           /* asked for again */
	bool set;             /* shipd gave it a rate */
	bool fixed;           /* nats-server refuses updates of it */
	uint64_t rate;        /* that rate, bytes/s (0: no limit) */
	uint64_t want;        /* the plan's */
	uint64_t sending;     /* the rate of the update in flight */
	struct js_call *call;
};

struct cstream {
	bool used;
	bool named;    /* in uplink_priority: kept when it has no consumer */
	bool sourced;  /* the hub sources it (uplink.c) or had a consumer */
	uint64_t mean; /* bytes of its mean message (uplink.c), 0: unknown */
	char name[JS_NAME_MAX + 1];
	int priority;
	bool held;
	struct ccons cons[CAP_CONSUMERS];
};

static struct {
	struct cstream streams[CAP_STREAMS];
	struct sub *created, *deleted, *peek;
	struct event *peek_end;
	uint32_t cap;      /* uplink_rate_limit the plan was made with */
	uint64_t back_at;  /* now_ms() a consumer was bound after none was */
	uint64_t peek_at;  /* now_ms() the last peek began; 0: none since
	                    * the link came up */
	bool uplink_up;    /* uplink.c's state */
	bool warned_full;
	bool warned_set;
} cap;

static bool enabled(void)
{
	return conf->hub_domain &&
	       (conf->uplink_rate_limit || conf->uplink_priority);
}

static void cons_next(struct ccons *k);

static void cons_drop(struct ccons *k)
{
	js_cancel(k->call);
	json_decref(k->cfg);
	struct cstream *s = k->s;
	memset(k, 0, sizeof(*k));
	for (int i = 0; i < CAP_CONSUMERS; i++)
		if (s->cons[i].used)
			return;
	/* A stream with no consumer left is forgotten, but for the named and
	 * those the hub sources. */
	s->used = s->named || s->sourced;
}

static struct cstream *stream_get(const char *name, bool make)
{
	struct cstream *free_slot = NULL;
	for (int i = 0; i < CAP_STREAMS; i++) {
		struct cstream *s = &cap.streams[i];
		if (s->used && !strcmp(s->name, name))
			return s;
		if (!s->used && !free_slot)
			free_slot = s;
	}
	if (!make || !js_name_valid(name))
		return NULL;
	if (!free_slot) {
		if (!cap.warned_full)
			log_warnx("uplink: more than %d streams are sourced from "
			          "this robot: %s is not limited",
			          CAP_STREAMS, name);
		cap.warned_full = true;
		return NULL;
	}
	cap.warned_full = false;
	memset(free_slot, 0, sizeof(*free_slot));
	free_slot->used = true;
	snprintf(free_slot->name, sizeof(free_slot->name), "%s", name);
	free_slot->priority = config_priority(conf->uplink_priority, name);
	return free_slot;
}

/* A consumer of stream (new to shipd or not) to follow. */
static void cons_found(const char *stream, const char *name, const char *how)
{
	/* Only the streams the hub sources or uplink_priority names: the
	 * advisories of the whole account come in (other robots', the
	 * hub's, anybody's fakes). */
	struct cstream *s = enabled() && js_name_valid(name)
	                            ? stream_get(stream, false)
	                            : NULL;
	if (!s || !s->sourced)
		return;
	struct ccons *slot = NULL;
	for (int i = 0; i < CAP_CONSUMERS; i++) {
		struct ccons *k = &s->cons[i];
		if (k->used && !strcmp(k->name, name))
			return; /* followed already */
		if (!k->used && !slot)
			slot = k;
	}
	if (!slot) {
		/* Four already: one no longer taking messages (a sourcing
		 * cut off) makes room; else the new one is not followed. */
		for (int i = 0; i < CAP_CONSUMERS && !slot; i++)
			if (s->cons[i].known && !s->cons[i].bound)
				slot = &s->cons[i];
		if (!slot)
			return;
		cons_drop(slot);
		s->used = true; /* cons_drop may have let it go */
	}
	memset(slot, 0, sizeof(*slot));
	slot->used = true;
	slot->s = s;
	slot->stale = true;
	snprintf(slot->name, sizeof(slot->name), "%s", name);
	log_debug("uplink: following consumer %s of stream %s (%s)", name,
	          stream, how);
	cons_next(slot);
}

/* ---- the plan ---- */

static bool stream_bound(const struct cstream *s)
{
	for (int i = 0; i < CAP_CONSUMERS; i++)
		if (s->cons[i].used && s->cons[i].known && s->cons[i].bound)
			return true;
	return false;
}

/* Whether s holds the streams below it: a consumer of it has messages
 * to catch up; or, while the hub is just back from an outage, one may
 * have (not asked yet), or the hub has not made it yet. */
static bool stream_behind(const struct cstream *s)
{
	bool back = cap.back_at && now_ms() - cap.back_at < GRACE_MS;
	for (int i = 0; i < CAP_CONSUMERS; i++) {
		const struct ccons *k = &s->cons[i];
		if (k->used && k->known && k->bound && k->behind)
			return true;
		if (k->used && !k->known && back)
			return true;
	}
	return back && s->sourced && !stream_bound(s);
}

static bool any_bound(void)
{
	for (int i = 0; i < CAP_STREAMS; i++)
		if (cap.streams[i].used && stream_bound(&cap.streams[i]))
			return true;
	return false;
}

static int stream_takers(const struct cstream *s)
{
	int n = 0;
	for (int i = 0; i < CAP_CONSUMERS; i++)
		n += s->cons[i].used && s->cons[i].known && s->cons[i].bound;
	return n;
}

/* A held stream's rate: the base trickle, but at least two of its mean
 * messages a second (a message slower than 3 s makes the hub give up on
 * the consumer), never above the cap c. */
static uint64_t trickle_of(const struct cstream *s, uint64_t c,
                           uint64_t floor_rate)
{
	uint64_t t = floor_rate > 2 * s->mean ? floor_rate : 2 * s->mean;
	return c && t > c ? c : t;
}

static void plan(void)
{
	uint64_t c = enabled() ? conf->uplink_rate_limit : 0;
	uint64_t floor_rate = c ? c / 64 : TRICKLE_FREE;
	if (floor_rate < TRICKLE_MIN)
		floor_rate = TRICKLE_MIN;
	/* Held, let through with messages to catch up (busy), let through
	 * with none (idle): the busy share what the trickles of the others
	 * leave of the cap, or, with none busy, the idle share it (for
	 * what comes next). Streams nobody takes from (the uplink is down)
	 * keep what they have: nothing flows. */
	int busy = 0, idle = 0;
	uint64_t held_t = 0, idle_t = 0; /* their trickles together */
	for (int i = 0; i < CAP_STREAMS; i++) {
		struct cstream *s = &cap.streams[i];
		s->held = false;
		if (!s->used || !stream_bound(s))
			continue;
		for (int j = 0; j < CAP_STREAMS && enabled(); j++) {
			struct cstream *t = &cap.streams[j];
			if (t->used && t->priority < s->priority &&
			    stream_behind(t))
				s->held = true;
		}
		if (s->held)
			held_t += trickle_of(s, c, floor_rate);
		else if (stream_behind(s))
			busy++;
		else {
			idle++;
			idle_t += trickle_of(s, c, floor_rate);
		}
	}
	cap.cap = conf->uplink_rate_limit;
	for (int i = 0; i < CAP_STREAMS; i++) {
		struct cstream *s = &cap.streams[i];
		if (!s->used || !stream_bound(s))
			continue;
		uint64_t t = trickle_of(s, c, floor_rate), rate = 0, taken = held_t;
		int n = 0;
		if (s->held) {
			rate = t;
		} else if (c && busy && !stream_behind(s)) {
			rate = t;
		} else if (c) {
			taken += busy ? idle_t : 0;
			n = busy ? busy : idle;
			rate = c > taken ? (c - taken) / (uint64_t)n : 0;
			if (rate < t)
				rate = t;
		}
		int takers = stream_takers(s);
		if (takers > 1 && rate) /* each takes all: each a part */
			rate = rate / (uint64_t)takers ? rate / (uint64_t)takers : 1;
		for (int j = 0; j < CAP_CONSUMERS; j++) {
			struct ccons *k = &s->cons[j];
			if (!k->used || (k->known && !k->bound))
				continue;
			k->want = rate;
			cons_next(k);
		}
	}
}

/* ---- one consumer's questions ---- */

static void cons_updated(void *arg, json_t *reply, const struct js_err *e)
{
	(void)reply;
	struct ccons *k = arg;
	k->call = NULL;
	if (e && (e->err_code == 10014 || e->err_code == 10059)) {
		cons_drop(k); /* gone meanwhile */
		return;
	}
	if (e && e->err_code == 10012) {
		/* Made to start at a time: 2.9.10 refuses every update. */
		log_warnx("uplink: the hub's consumer %s of %s cannot be "
		          "limited: %s",
		          k->name, k->s->name, e->text);
		k->fixed = true;
		return;
	}
	if (e) {
		if (!cap.warned_set && link_connected())
			log_warnx("uplink: could not limit the hub's consumer %s "
			          "of %s: %s",
			          k->name, k->s->name, e->text);
		cap.warned_set = link_connected();
		k->stale = true; /* asked again at the next tick */
		return;
	}
	k->set = true;
	k->rate = k->sending;
	log_debug("uplink: consumer %s of %s: %" PRIu64 " bytes/s%s", k->name,
	          k->s->name, k->rate, k->s->held ? " (held)" : "");
	cons_next(k);
}

static void cons_update(struct ccons *k)
{
	json_t *cfg = json_deep_copy(k->cfg);
	json_t *body = cfg ? json_pack("{s:s, s:o}", "stream_name", k->s->name,
	                               "config", cfg)
	                   : NULL;
	if (!body) {
		json_decref(cfg);
		return;
	}
	json_object_set_new(cfg, "rate_limit_bps",
	                    json_integer((json_int_t)(k->want * 8)));
	if (!k->want)
		json_object_del(cfg, "rate_limit_bps");
	char what[2 * JS_NAME_MAX + 32];
	snprintf(what, sizeof(what), "CONSUMER.CREATE.%s.%s", k->s->name,
	         k->name);
	k->sending = k->want;
	k->call = js_api_in(JS_LOCAL, what, body, 2000, cons_updated, k);
}

/* Whether an INFO's configuration is that of a sourcing consumer as
 * nats-server makes them (stream.go, setSourceConsumer): direct, push,
 * flow control, no acks. */
static bool sourcing(json_t *cfg)
{
	const char *ack = json_string_value(json_object_get(cfg, "ack_policy"));
	const char *dsub =
		json_string_value(json_object_get(cfg, "deliver_subject"));
	return json_is_true(json_object_get(cfg, "direct")) &&
	       json_is_true(json_object_get(cfg, "flow_control")) && ack &&
	       !strcmp(ack, "none") && dsub && *dsub;
}

static void cons_info(void *arg, json_t *reply, const struct js_err *e)
{
	struct ccons *k = arg;
	k->call = NULL;
	if (e && (e->err_code == 10014 || e->err_code == 10059)) {
		cons_drop(k);
		plan();
		return;
	}
	if (e) {
		k->stale = true;
		return;
	}
	json_t *cfg = json_object_get(reply, "config");
	if (!sourcing(cfg)) {
		log_debug("uplink: consumer %s of %s is not the hub's", k->name,
		          k->s->name);
		cons_drop(k);
		return;
	}
	json_decref(k->cfg);
	k->cfg = json_incref(cfg);
	uint64_t pending = (uint64_t)json_integer_value(
		json_object_get(reply, "num_pending"));
	/* A consumer the hub just made with messages to send is catching
	 * up after an outage; one that had none at the last look and has
	 * some now is most likely just busy with new ones (they are sent
	 * within milliseconds), and counts as behind from the next look
	 * on if it still has. Each change of the plan costs a burst. */
	k->behind = pending && (!k->known || k->pending);
	bool bound = json_is_true(json_object_get(reply, "push_bound"));
	if (bound && !any_bound())
		cap.back_at = now_ms(); /* the first after an outage */
	if (pending != k->pending || bound != k->bound || !k->known)
		log_debug("uplink: consumer %s of %s: %" PRIu64 " not sent%s",
		          k->name, k->s->name, pending,
		          bound ? "" : ", nobody takes them");
	k->known = true;
	k->pending = pending;
	k->bound = bound;
	if (bound)
		k->s->sourced = true;
	uint64_t bps = (uint64_t)json_integer_value(
		json_object_get(cfg, "rate_limit_bps"));
	if (!k->set || k->rate * 8 != bps) {
		/* Made anew, or changed by someone else: what it has. */
		k->set = bps != 0;
		k->rate = bps / 8;
	}
	plan();
}

static void cons_next(struct ccons *k)
{
	if (!k->used || k->call || !link_connected())
		return;
	if (k->stale) {
		char what[2 * JS_NAME_MAX + 32];
		snprintf(what, sizeof(what), "CONSUMER.INFO.%s.%s", k->s->name,
		         k->name);
		k->stale = false;
		k->call = js_api_in(JS_LOCAL, what, NULL, 2000, cons_info, k);
		if (!k->call)
			k->stale = true;
		return;
	}
	if (k->known && !k->fixed &&
	    (k->set ? k->rate != k->want : k->want != 0))
		cons_update(k);
}

/* ---- finding the consumers ---- */

/* The n'th dot-separated token of subject into out (false if none). */
static bool token(const char *subject, int n, char *out, size_t size)
{
	const char *p = subject;
	for (; n > 0 && p; n--)
		if ((p = strchr(p, '.')))
			p++;
	if (!p)
		return false;
	size_t len = strcspn(p, ".");
	if (!len || len >= size)
		return false;
	memcpy(out, p, len);
	out[len] = '\0';
	return true;
}

static void on_created(void *arg, natsMsg *msg)
{
	(void)arg;
	char stream[JS_NAME_MAX + 1], name[JS_NAME_MAX + 1];
	/* $JS.EVENT.ADVISORY.CONSUMER.CREATED.<stream>.<consumer> */
	const char *subj = natsMsg_GetSubject(msg);
	if (token(subj, 5, stream, sizeof(stream)) &&
	    token(subj, 6, name, sizeof(name)))
		cons_found(stream, name, "made");
	link_msg_destroy(msg);
}

/* A consumer deleted: asked again (anyone may publish an advisory; the
 * server's answer, 10014, is what drops it). */
static void on_deleted(void *arg, natsMsg *msg)
{
	(void)arg;
	char stream[JS_NAME_MAX + 1], name[JS_NAME_MAX + 1];
	const char *subj = natsMsg_GetSubject(msg);
	struct cstream *s = token(subj, 5, stream, sizeof(stream)) &&
	                                    token(subj, 6, name, sizeof(name))
	                            ? stream_get(stream, false)
	                            : NULL;
	for (int i = 0; s && i < CAP_CONSUMERS; i++)
		if (s->cons[i].used && !strcmp(s->cons[i].name, name)) {
			s->cons[i].stale = true;
			cons_next(&s->cons[i]);
			break;
		}
	link_msg_destroy(msg);
}

/* A message a sourcing consumer delivers: its ack subject names it. */
static void on_peek(void *arg, natsMsg *msg)
{
	(void)arg;
	char stream[JS_NAME_MAX + 1], name[JS_NAME_MAX + 1];
	const char *reply = natsMsg_GetReply(msg);
	if (reply && !strncmp(reply, "$JS.ACK.", 8) &&
	    token(reply, 2, stream, sizeof(stream)) &&
	    token(reply, 3, name, sizeof(name)))
		cons_found(stream, name, "seen delivering");
	link_msg_destroy(msg);
}

static void peek_stop(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	pubsub_own_end(cap.peek);
	cap.peek = NULL;
}

/* Whether a stream the hub sources has no consumer known. */
static bool missing(void)
{
	for (int i = 0; i < CAP_STREAMS; i++)
		if (cap.streams[i].used && cap.streams[i].sourced &&
		    !stream_bound(&cap.streams[i]))
			return true;
	return false;
}

/* The advisories are followed while there is something to limit (they
 * come from the whole account, across the uplink). */
static void subs_sync(void)
{
	if (enabled() && !cap.created) {
		cap.created = pubsub_own(
			"$JS.EVENT.ADVISORY.CONSUMER.CREATED.*.*", NULL,
			on_created, NULL);
		cap.deleted = pubsub_own(
			"$JS.EVENT.ADVISORY.CONSUMER.DELETED.*.*", NULL,
			on_deleted, NULL);
		if (!cap.created || !cap.deleted)
			fatal("%s: out of memory", __func__);
	} else if (!enabled() && cap.created) {
		pubsub_own_end(cap.created);
		pubsub_own_end(cap.deleted);
		pubsub_own_end(cap.peek);
		cap.created = cap.deleted = cap.peek = NULL;
	}
}

static void peek_maybe(void)
{
	uint64_t now = now_ms();
	if (!enabled() || !cap.uplink_up || cap.peek || !missing() ||
	    (cap.peek_at && now - cap.peek_at < PEEK_EVERY_MS))
		return;
	/* Consumers made while shipd was away deliver on $JS.S.<id>. */
	cap.peek = pubsub_own("$JS.S.>", NULL, on_peek, NULL);
	cap.peek_at = now;
	struct timeval tv = {PEEK_MS / 1000, (PEEK_MS % 1000) * 1000};
	event_add(cap.peek_end, &tv);
}

/* ---- uplink.c's ---- */

void uplinkcap_link_changed(bool linked)
{
	if (!conf->hub_domain)
		return;
	if (linked)
		return; /* the next tick asks and peeks */
	for (int i = 0; i < CAP_STREAMS; i++)
		for (int j = 0; j < CAP_CONSUMERS; j++) {
			struct ccons *k = &cap.streams[i].cons[j];
			js_cancel(k->call);
			k->call = NULL;
			k->stale = k->used;
		}
	cap.peek_at = 0; /* advisories may have been missed meanwhile */
}

void uplinkcap_uplink(bool up)
{
	cap.uplink_up = up;
	if (!up)
		peek_stop(-1, 0, NULL);
}

void uplinkcap_sourced(const char *stream, uint64_t mean)
{
	struct cstream *s = stream_get(stream, true);
	if (s) {
		s->sourced = true;
		s->mean = mean;
	}
}

void uplinkcap_tick(void)
{
	if (!conf->hub_domain)
		return;
	subs_sync();
	for (int i = 0; i < CAP_STREAMS; i++)
		for (int j = 0; j < CAP_CONSUMERS; j++) {
			struct ccons *k = &cap.streams[i].cons[j];
			if (!k->used)
				continue;
			k->stale = true;
			cons_next(k);
		}
	peek_maybe();
	if (cap.cap != conf->uplink_rate_limit)
		plan(); /* a reload changed the cap */
}

void uplinkcap_init(void)
{
	if (!conf->hub_domain)
		return;
	cap.peek_end = evtimer_new(base, peek_stop, NULL);
	if (!cap.peek_end)
		fatal("%s: out of memory", __func__);
	cap.cap = conf->uplink_rate_limit;
	subs_sync();
	/* The named streams are followed from the start; each holds the ones
	 * below it from when the hub is back until its consumer is seen
	 * (GRACE_MS at most). */
	const char *p = conf->uplink_priority;
	for (size_t n; p && *(p += strspn(p, ", \t")); p += n) {
		char name[JS_NAME_MAX + 1];
		n = strcspn(p, ", \t");
		size_t len = strcspn(p, ":");
		if (len > n || len >= sizeof(name))
			continue;
		memcpy(name, p, len);
		name[len] = '\0';
		struct cstream *s = stream_get(name, true);
		if (s)
			s->named = s->sourced = true;
	}
}

static void ignore_reply(void *arg, json_t *reply, const struct js_err *e)
{
	(void)arg, (void)reply, (void)e;
}

void uplinkcap_finish(void)
{
	for (int i = 0; i < CAP_STREAMS; i++)
		for (int j = 0; j < CAP_CONSUMERS; j++) {
			struct ccons *k = &cap.streams[i].cons[j];
			if (!k->used)
				continue;
			/* A clean stop lifts the rates shipd set: nobody would
			 * change them back (sent, not waited for). */
			if (k->set && k->rate && k->known && !k->fixed &&
			    k->cfg && link_connected()) {
				json_t *cfg = json_deep_copy(k->cfg);
				json_object_del(cfg, "rate_limit_bps");
				json_t *body = json_pack("{s:s, s:o}", "stream_name",
				                         k->s->name, "config", cfg);
				char what[2 * JS_NAME_MAX + 32];
				snprintf(what, sizeof(what), "CONSUMER.CREATE.%s.%s",
				         k->s->name, k->name);
				if (body)
					js_api_in(JS_LOCAL, what, body, 2000,
					          ignore_reply, NULL);
			}
			cons_drop(k);
		}
	pubsub_own_end(cap.created);
	pubsub_own_end(cap.deleted);
	pubsub_own_end(cap.peek);
	cap.created = cap.deleted = cap.peek = NULL;
	if (cap.peek_end)
		event_free(cap.peek_end);
	cap.peek_end = NULL;
}

void uplinkcap_describe(const char *stream, Ship__UplinkStream *o)
{
	o->priority = (uint32_t)config_priority(conf->uplink_priority, stream);
	struct cstream *s = stream_get(stream, false);
	if (!s)
		return;
	o->held = s->held;
	for (int i = 0; i < CAP_CONSUMERS; i++) {
		const struct ccons *k = &s->cons[i];
		if (!k->used || !k->known || !k->bound)
			continue;
		o->consumers++;
		if (k->pending > o->pending)
			o->pending = k->pending; /* each hub stream's own */
		o->rate_limit += k->set ? k->rate : 0;
	}
}
