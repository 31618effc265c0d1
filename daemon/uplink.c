/* SPDX-License-Identifier: MIT */
/*
 * The fleet uplink, as shipd sees it: whether the hub's JetStream answers
 * through the robot's leaf server, since when, and how far the hub's
 * streams are behind in sourcing the robot's.
 *
 * With hub_domain set, shipd asks $JS.<hub>.API.INFO every
 * uplink_probe_ms. An answer (even an error) is the hub; no responders
 * or no answer in time is the uplink down. Each change between up and
 * down is logged and emitted as a ShipEvent (uplink.up, uplink.down) on
 * the robot's own event stream, which keeps it while the hub is out of
 * reach and gives it to the hub once sourced.
 *
 * What the hub has not sourced yet: while up, each stream of hub_streams
 * is asked for its sources, and a source whose external API is this
 * robot's ($JS.<domain>.API) gives its lag; with the robot stream's last
 * sequence at that moment, that fixes the last sequence the hub has.
 * While down, the robot's streams are still read: what they gained past
 * that sequence is waiting.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "shipd.h"

#define STREAMS_MAX 16
#define NAME_MAX_LEN 256

struct ustream {
	char stream[NAME_MAX_LEN];     /* the robot's */
	char hub_stream[NAME_MAX_LEN];
	uint64_t last_seq;
	uint64_t msgs, bytes;          /* the robot stream's, for the mean */
	uint64_t hub_has;              /* last sequence the hub has sourced */
	uint64_t hub_seen;             /* now_ms() of that figure; 0: never */
	uint64_t lag;                  /* the hub's, this round */
	bool seen_this_round;
};

static struct {
	struct event *timer;
	uint32_t period; /* ms the timer runs at */
	Ship__UplinkState state;
	uint64_t changed;      /* now_ms() */
	uint64_t since_unix;   /* wall clock ms */
	uint64_t changes;
	uint64_t down_since;   /* now_ms() when it went down; 0: not down */
	char last_error[256];
	char domain[JS_DOMAIN_MAX + 1]; /* the robot's, from $JS.API.INFO */
	bool domain_asked;              /* answered: domain is what it is */
	bool hub_all_seen;              /* every hub stream answered this round */
	bool full_warned;
	bool domain_warned;
	struct js_call *probe;
	struct js_call *info;           /* one stream question at a time */
	struct ustream streams[STREAMS_MAX];
	int n_streams;
	int next_hub;   /* index in hub_streams of the next to ask */
	int next_local; /* index in streams of the next robot stream */
} up;

static uint64_t unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void emit_change(void)
{
	char since[64];
	events_timestamp(since, sizeof(since));
	json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "state",
	                      up.state == SHIP__UPLINK_STATE__UPLINK_UP ? "up"
	                                                                 : "down",
	                      "hub_domain", conf->hub_domain, "domain", up.domain,
	                      "since", since);
	if (!j)
		return;
	if (up.state == SHIP__UPLINK_STATE__UPLINK_DOWN)
		json_object_set_new(j, "error", json_string(up.last_error));
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!text)
		return;
	char corr[9];
	events_random_hex(corr, 8);
	events_emit_system(up.state == SHIP__UPLINK_STATE__UPLINK_UP
	                           ? "uplink.up"
	                           : "uplink.down",
	                   "shipd", text, corr, NULL);
	free(text);
}

static void set_state(Ship__UplinkState s, const char *why)
{
	if (s == SHIP__UPLINK_STATE__UPLINK_DOWN && why)
		snprintf(up.last_error, sizeof(up.last_error), "%s", why);
	if (s == up.state)
		return;
	Ship__UplinkState was = up.state;
	up.state = s;
	uplinkcap_uplink(s == SHIP__UPLINK_STATE__UPLINK_UP);
	up.changed = now_ms();
	up.since_unix = unix_ms();
	if (s == SHIP__UPLINK_STATE__UPLINK_UNKNOWN)
		return;
	if (s == SHIP__UPLINK_STATE__UPLINK_DOWN) {
		up.down_since = up.changed;
		log_warnx("uplink: the hub's JetStream (domain %s) is out of "
		          "reach: %s",
		          conf->hub_domain, up.last_error);
	} else if (up.down_since) {
		log_info("uplink: the hub's JetStream (domain %s) answers again "
		         "after %" PRIu64 " ms",
		         conf->hub_domain, up.changed - up.down_since);
		up.down_since = 0;
	} else {
		log_info("uplink: the hub's JetStream (domain %s) answers",
		         conf->hub_domain);
	}
	/* The first finding is an event only when it is bad news; every
	 * change between up and down is one. */
	if (was != SHIP__UPLINK_STATE__UPLINK_UNKNOWN ||
	    s == SHIP__UPLINK_STATE__UPLINK_DOWN) {
		up.changes++;
		emit_change();
	}
}

/* The entry of robot stream name as hub_stream sources it, made if
 * new; NULL for names that are no stream names, or with the table full
 * (said once). */
static struct ustream *ustream_find(const char *name, const char *hub_stream)
{
	for (int i = 0; i < up.n_streams; i++)
		if (!strcmp(up.streams[i].stream, name) &&
		    !strcmp(up.streams[i].hub_stream, hub_stream))
			return &up.streams[i];
	if (!js_name_valid(name) || strlen(name) >= NAME_MAX_LEN)
		return NULL;
	if (up.n_streams == STREAMS_MAX) {
		if (!up.full_warned)
			log_warnx("uplink: the hub sources more than %d streams of "
			          "this robot: %s of %s and others not followed",
			          STREAMS_MAX, name, hub_stream);
		up.full_warned = true;
		return NULL;
	}
	struct ustream *s = &up.streams[up.n_streams++];
	memset(s, 0, sizeof(*s));
	snprintf(s->stream, sizeof(s->stream), "%s", name);
	snprintf(s->hub_stream, sizeof(s->hub_stream), "%s", hub_stream);
	return s;
}

/* The name'th of a list of names separated by commas and blanks, into
 * out; false past the end. */
static bool list_nth(const char *list, int nth, char *out, size_t size)
{
	for (const char *p = list; p && *p;) {
		p += strspn(p, ", \t");
		size_t n = strcspn(p, ", \t");
		if (!n)
			break;
		if (nth-- == 0) {
			snprintf(out, size, "%.*s", (int)n, p);
			return n < size;
		}
		p += n;
	}
	return false;
}

static void ask_next(void);

/* The robot's stream: its last sequence and mean size. */
static void local_info(void *arg, json_t *reply, const struct js_err *e)
{
	struct ustream *s = arg;
	up.info = NULL;
	if (!e) {
		json_t *st = json_object_get(reply, "state");
		s->last_seq = (uint64_t)json_integer_value(
			json_object_get(st, "last_seq"));
		s->msgs = (uint64_t)json_integer_value(
			json_object_get(st, "messages"));
		s->bytes = (uint64_t)json_integer_value(
			json_object_get(st, "bytes"));
	}
	ask_next();
}

/* A hub stream: its sources from this robot, and how far behind each is. */
static void hub_info(void *arg, json_t *reply, const struct js_err *e)
{
	(void)arg;
	up.info = NULL;
	const char *hub_stream =
		e ? NULL
		  : json_string_value(json_object_get(
			    json_object_get(reply, "config"), "name"));
	if (!hub_stream || !js_name_valid(hub_stream)) {
		up.hub_all_seen = false; /* keep what the table has */
		ask_next();
		return;
	}
	char api[JS_DOMAIN_MAX + 16];
	snprintf(api, sizeof(api), "$JS.%s.API", up.domain);
	size_t i;
	json_t *src;
	json_array_foreach(json_object_get(reply, "sources"), i, src) {
		const char *name = json_string_value(json_object_get(src, "name"));
		const char *ext = json_string_value(json_object_get(
			json_object_get(src, "external"), "api"));
		if (!name || !ext || strcmp(ext, api))
			continue;
		struct ustream *s = ustream_find(name, hub_stream);
		if (!s)
			continue;
		uint64_t lag = (uint64_t)json_integer_value(
			json_object_get(src, "lag"));
		/* The lag is as of the hub's last message from us: taken
		 * against the stream's last sequence read after it. */
		s->lag = lag;
		s->seen_this_round = true;
	}
	ask_next();
}

/* One question at a time: the hub's streams while up, then each robot
 * stream. A round ends when all were asked. */
static void ask_next(void)
{
	char what[NAME_MAX_LEN + 32], name[NAME_MAX_LEN];
	if (!link_connected())
		return;
	if (up.state == SHIP__UPLINK_STATE__UPLINK_UP &&
	    list_nth(conf->hub_streams, up.next_hub, name, sizeof(name))) {
		up.next_hub++;
		if (!js_name_valid(name)) {
			ask_next();
			return;
		}
		snprintf(what, sizeof(what), "STREAM.INFO.%s", name);
		up.info = js_api_in(JS_HUB, what, NULL, 2000, hub_info, NULL);
		return;
	}
	if (up.next_local < up.n_streams) {
		struct ustream *s = &up.streams[up.next_local++];
		snprintf(what, sizeof(what), "STREAM.INFO.%s", s->stream);
		up.info = js_api_in(JS_LOCAL, what, NULL, 2000, local_info, s);
		return;
	}
	/* The round is over: a lag seen this round becomes the sequence the
	 * hub has, against the last sequence just read. When every hub
	 * stream answered, a source none of them names any more is gone. */
	int kept = 0;
	for (int i = 0; i < up.n_streams; i++) {
		struct ustream *s = &up.streams[i];
		if (s->seen_this_round) {
			uplinkcap_sourced(s->stream, s->msgs ? s->bytes / s->msgs : 0);
			s->hub_has = s->last_seq > s->lag ? s->last_seq - s->lag : 0;
			s->hub_seen = now_ms();
			s->seen_this_round = false;
		} else if (up.hub_all_seen) {
			continue;
		}
		if (kept != i)
			up.streams[kept] = *s;
		kept++;
	}
	up.n_streams = kept;
	if (kept < STREAMS_MAX)
		up.full_warned = false;
}

static void start_round(void)
{
	if (up.info)
		return; /* the last one is still going */
	/* What a round cut short (a link loss) saw is not this round's. */
	for (int i = 0; i < up.n_streams; i++)
		up.streams[i].seen_this_round = false;
	up.hub_all_seen = up.state == SHIP__UPLINK_STATE__UPLINK_UP;
	up.next_hub = 0;
	up.next_local = 0;
	ask_next();
}

/* The robot's own JetStream domain, asked once it answers (the hub's
 * streams name the robot's by it). */
static void domain_known(void *arg, json_t *reply, const struct js_err *e)
{
	(void)arg;
	up.probe = NULL;
	if (e) {
		/* Asked again after the next probe. */
		if (!up.domain_warned)
			log_warnx("uplink: the local server's JetStream: %s",
			          e->text);
		up.domain_warned = true;
		start_round();
		return;
	}
	up.domain_asked = true;
	const char *d = json_string_value(json_object_get(reply, "domain"));
	if (d && js_domain_valid(d)) {
		snprintf(up.domain, sizeof(up.domain), "%s", d);
		if (!strcmp(d, conf->hub_domain))
			log_warnx("uplink: the local server's JetStream domain is "
			          "the hub's (%s): shipd is not on a robot's leaf "
			          "server",
			          d);
	} else {
		log_warnx("uplink: the local server has no JetStream domain: the "
		          "hub cannot source its streams");
	}
	start_round();
}

static void probed(void *arg, json_t *reply, const struct js_err *e)
{
	(void)arg;
	(void)reply;
	up.probe = NULL;
	if (!e || !(e->unreachable || e->code == SHIP__CODE__TIMEOUT)) {
		/* Any answer is the hub's JetStream answering. */
		set_state(SHIP__UPLINK_STATE__UPLINK_UP, NULL);
	} else {
		set_state(SHIP__UPLINK_STATE__UPLINK_DOWN, e->text);
	}
	if (!up.domain_asked) {
		up.probe = js_api_in(JS_LOCAL, "INFO", NULL, 2000, domain_known,
		                     NULL);
		if (up.probe)
			return;
	}
	start_round();
}

static void arm(void)
{
	up.period = conf->uplink_probe_ms;
	struct timeval tv = {up.period / 1000, (up.period % 1000) * 1000};
	event_add(up.timer, &tv);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (up.period != conf->uplink_probe_ms) /* a reload changed it */
		arm();
	if (!link_connected()) {
		set_state(SHIP__UPLINK_STATE__UPLINK_UNKNOWN, NULL);
		return;
	}
	uplinkcap_tick();
	if (up.probe)
		return; /* still waiting (its timeout is below the period) */
	up.probe = js_api_in(JS_HUB, "INFO", NULL,
	                     conf->uplink_probe_ms < 2000 ? conf->uplink_probe_ms
	                                                  : 2000,
	                     probed, NULL);
}

static void uplink_link_changed(bool linked)
{
	if (!conf->hub_domain || !up.timer)
		return;
	uplinkcap_link_changed(linked);
	if (!linked) {
		js_cancel(up.probe);
		js_cancel(up.info);
		up.probe = up.info = NULL;
		set_state(SHIP__UPLINK_STATE__UPLINK_UNKNOWN, NULL);
	} else {
		event_active(up.timer, EV_TIMEOUT, 0);
	}
}

void uplink_init(void)
{
	up.state = conf->hub_domain ? SHIP__UPLINK_STATE__UPLINK_UNKNOWN
	                            : SHIP__UPLINK_STATE__UPLINK_NONE;
	up.changed = now_ms();
	up.since_unix = unix_ms();
	if (!conf->hub_domain)
		return;
	up.timer = event_new(base, -1, EV_PERSIST, tick, NULL);
	if (!up.timer)
		fatal("%s: event_new", __func__);
	arm();
	uplinkcap_init();
}

static void uplink_finish(void)
{
	uplinkcap_finish();
	js_cancel(up.probe);
	js_cancel(up.info);
	up.probe = up.info = NULL;
	if (up.timer)
		event_free(up.timer);
	up.timer = NULL;
}

void uplink_status(Ship__UplinkStatus *st, Ship__UplinkStream *buf,
                   Ship__UplinkStream **ptrs, size_t max)
{
	uint64_t now = now_ms();
	st->state = up.state;
	st->hub_domain = conf->hub_domain ? conf->hub_domain : "";
	st->domain = up.domain;
	st->changed_ms = now - up.changed;
	st->since_unix_ms = up.since_unix;
	st->changes = up.changes;
	st->events_on_hub = js_dom_remote(conf->events_domain);
	st->channels_on_hub = js_dom_remote(conf->channels_domain);
	st->kv_on_hub = js_dom_remote(conf->kv_domain);
	st->jobs_on_hub = js_dom_remote(conf->jobs_domain);
	st->hub_buckets = conf->hub_domain && conf->hub_buckets
	                          ? conf->hub_buckets
	                          : "";
	st->rate_limit = conf->hub_domain ? conf->uplink_rate_limit : 0;
	st->priority = conf->hub_domain && conf->uplink_priority
	                       ? conf->uplink_priority
	                       : "";
	st->last_error = up.state == SHIP__UPLINK_STATE__UPLINK_DOWN
	                         ? up.last_error
	                         : "";
	size_t n = 0;
	for (int i = 0; i < up.n_streams && n < max; i++) {
		struct ustream *s = &up.streams[i];
		Ship__UplinkStream *o = &buf[n];
		ship__uplink_stream__init(o);
		o->stream = s->stream;
		o->hub_stream = s->hub_stream;
		o->last_seq = s->last_seq;
		if (s->hub_seen) {
			o->waiting_msgs =
				s->last_seq > s->hub_has ? s->last_seq - s->hub_has : 0;
			o->waiting_bytes = s->msgs ? o->waiting_msgs * (s->bytes /
			                                                s->msgs)
			                           : 0;
			/* + 1: 0 says "never". */
			o->hub_seen_ms = now - s->hub_seen + 1;
		}
		uplinkcap_describe(s->stream, o);
		if (o->consumers) {
			/* What the hub's consumers on this server have not sent:
			 * exact and current, where the hub's lag is as of the
			 * last message it got. */
			o->waiting_msgs = o->pending;
			o->waiting_bytes = s->msgs ? o->pending * (s->bytes /
			                                           s->msgs)
			                           : 0;
		}
		ptrs[n++] = o;
	}
	st->n_streams = n;
	st->streams = ptrs;
}

const struct block uplink_block = {
	.name = "uplink",
	.link_changed = uplink_link_changed,
	.finish = uplink_finish,
};
