/* SPDX-License-Identifier: MIT */
/*
 * Monitor: what local apps publish, request and receive through shipd,
 * shown live to an operator (shipctl monitor), like ubus's monitor.
 *
 * A client opens a monitor on a subject pattern; it needs the "monitor"
 * right on all of it (a rule must cover the whole pattern, as for
 * subscribe; "*" in a rule's operations does not give it). Each message
 * an app publishes, each request it sends and the reply it gets, and
 * each message delivered to its subscriptions, whose subject the pattern
 * matches, becomes a Delivery on the monitor's stream: the subject, and
 * headers Ship-Monitor-Dir (publish, request, reply, deliver),
 * Ship-Monitor-App (the client's name), Ship-Monitor-Client (its number),
 * Ship-Monitor-Size (payload bytes); the payload itself only when the
 * monitor asked for it. Replies are shown under the request's subject.
 *
 * A monitor never slows the apps: what its client does not read in time
 * is dropped and counted, as for a subscription. While none is open, the
 * taps cost one test of a counter.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "shipd.h"

#define MONITORS_MAX 16

struct mon {
	TAILQ_ENTRY(mon) entry;
	struct stream st;
	bool payload;
	bool ended;
	uint64_t delivered, dropped, unreported;
	char pattern[IPC_SUBJECT_MAX + 1];
};

static TAILQ_HEAD(, mon) mons = TAILQ_HEAD_INITIALIZER(mons);
unsigned monitors_open;

static const char *const dir_names[] = {
	[MON_PUBLISH] = "publish",
	[MON_REQUEST] = "request",
	[MON_REPLY] = "reply",
	[MON_DELIVER] = "deliver",
};

static void mon_end(struct mon *m, Ship__Code code, const char *why)
{
	if (m->ended)
		return;
	m->ended = true;
	monitors_open--;
	TAILQ_REMOVE(&mons, m, entry);
	if (m->st.c) {
		stream_end_send(&m->st, code, false, why, m->delivered,
		                m->dropped);
		stream_close(&m->st);
	}
	free(m);
}

static void mon_stream_end(struct stream *st)
{
	mon_end(container_of(st, struct mon, st), SHIP__CODE__OK, NULL);
}

static const struct stream_kind mon_kind = {
	.name = "monitor",
	.end = mon_stream_end,
	.gone = mon_stream_end, /* closed already: nobody is told */
};

void monitor_event(const struct client *from, enum mon_dir dir,
                   const char *subject, const void *data, size_t len)
{
	char client[24], size[24];
	struct mon *m, *next;
	/* Replies to shipd's own inboxes (and their secrets) are shown as
	 * the requester's reply; system subjects never. */
	if (ipc_subject_system(subject) ||
	    link_inbox_kind(subject) != LINK_INBOX_NONE)
		return;
	TAILQ_FOREACH_SAFE(m, &mons, entry, next) {
		if (!m->st.c || !policy_covers(m->pattern, subject))
			continue;
		/* Other inboxes are replies of other apps: shown only to a
		 * monitor that names _INBOX (as a subscription's). */
		if (ipc_first_token(subject, "_INBOX") &&
		    !ipc_first_token(m->pattern, "_INBOX"))
			continue;
		Ship__Header hv[4], *hp[4];
		snprintf(client, sizeof(client), "%" PRIu64, from->cid);
		snprintf(size, sizeof(size), "%zu", len);
		const char *kv[4][2] = {
			{"Ship-Monitor-Dir", dir_names[dir]},
			{"Ship-Monitor-App", from->name[0] ? from->name : "?"},
			{"Ship-Monitor-Client", client},
			{"Ship-Monitor-Size", size},
		};
		for (int i = 0; i < 4; i++) {
			ship__header__init(&hv[i]);
			hv[i].key = (char *)kv[i][0];
			hv[i].value = (char *)kv[i][1];
			hp[i] = &hv[i];
		}
		Ship__Msg msg = SHIP__MSG__INIT;
		msg.subject = (char *)subject;
		msg.reply = "";
		msg.n_headers = 4;
		msg.headers = hp;
		if (m->payload && len) {
			msg.data.data = (uint8_t *)data;
			msg.data.len = len;
		}
		Ship__Delivery d = SHIP__DELIVERY__INIT;
		d.msg = &msg;
		d.dropped = m->unreported;
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		f.id = m->st.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_DELIVERY;
		f.delivery = &d;
		if (client_push(m->st.c, &f) < 0) {
			m->dropped++;
			m->unreported++;
			m->st.c->st.dropped++;
			stats.dropped++;
		} else {
			m->delivered++;
			m->unreported = 0;
		}
	}
}

static void req_monitor(struct client *c, const Ship__ClientFrame *f)
{
	const Ship__MonitorOpen *mo = f->monitor;
	const char *pattern = mo->pattern[0] ? mo->pattern : ">";
	if (!ipc_subject_pattern_valid(pattern) ||
	    strlen(pattern) > IPC_SUBJECT_MAX) {
		client_error(c, f->id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid subject pattern '%.128s'", pattern);
		return;
	}
	/* Like admin: without rules, only root and shipd's own user (other
	 * apps' payloads are not everybody's because nobody wrote rules). */
	if (!c->pol && !c->id.privileged) {
		client_error(c, f->id, SHIP__CODE__PERMISSION_DENIED,
		             "monitor: only root or shipd's own user (no rules "
		             "grant it to others)");
		return;
	}
	if (!client_allowed(c, f->id, POL_MONITOR, pattern))
		return;
	if (monitors_open >= MONITORS_MAX) {
		client_error(c, f->id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "%d monitors are open already", MONITORS_MAX);
		return;
	}
	struct mon *m = calloc(1, sizeof(*m));
	if (!m) {
		client_error(c, f->id, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	snprintf(m->pattern, sizeof(m->pattern), "%s", pattern);
	m->payload = mo->payload;
	if (!stream_open(&m->st, &mon_kind, c, f->id)) {
		free(m);
		return;
	}
	TAILQ_INSERT_TAIL(&mons, m, entry);
	monitors_open++;
	log_info("client %" PRIu64 " (%s) monitors %s%s", c->cid,
	         c->name[0] ? c->name : "?", pattern,
	         m->payload ? " with payloads" : "");
	client_ok(c, f->id);
}

static void monitor_finish(void)
{
	struct mon *m;
	while ((m = TAILQ_FIRST(&mons)))
		mon_end(m, SHIP__CODE__UNAVAILABLE, "shipd is stopping");
}

const struct block monitor_block = {
	.name = "monitor",
	.finish = monitor_finish,
	.requests = (const struct block_request[]){
		{SHIP__CLIENT_FRAME__BODY_MONITOR, req_monitor, false},
		{0, NULL, false},
	},
};
