/* SPDX-License-Identifier: MIT */
/* The figures shipd keeps of its requests, its apps and itself, and their
 * exposition in the Prometheus text format. */
#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "config.h"
#include "shipd.h"

#define KINDS_MAX 256 /* ClientFrame body field numbers, as blocks.c */
#define CODES_MAX 16  /* Ship__Code values, with room for new ones */
#define LABEL_MAX 64  /* bytes of an app label value */
#define QUEUE_LABEL_MAX 200 /* a job queue's name, whole (jobs.c) */
#define LAG_TICK_MS 250
#define LAG_WINDOW_MS 30000
/* Requests awaited per client beyond max_requests (streams being opened,
 * answers queued this turn); past that a request is counted, not timed. */
#define PENDING_SLACK 64

/* Upper bounds of the latency buckets, in ns (0.5 ms to 10 s). */
static const uint64_t bounds_ns[] = {
	500000,    1000000,   2500000,    5000000,    10000000,
	25000000,  50000000,  100000000,  250000000,  500000000,
	1000000000, 2500000000, 5000000000, 10000000000,
};
#define N_BOUNDS NITEMS(bounds_ns)

struct hist {
	uint64_t n[N_BOUNDS + 1]; /* the last one: above every bound */
	uint64_t sum_ns;
};

/* What was asked and answered, for one method or one (app, block). */
struct rpc {
	uint64_t requests;
	uint64_t codes[CODES_MAX]; /* answers by status code */
	struct hist lat;           /* answered requests with an id */
};

/* One app label value: its requests per block, and what its clients
 * that are gone left behind (the live ones are added at each scrape). */
struct app_figs {
	char label[LABEL_MAX + 1];
	struct rpc *blocks; /* n_blocks + 1: the last for the socket layer */
	uint64_t bytes_in, bytes_out, dropped, denied;
	unsigned live; /* its clients connected (a slot with none may go) */
};

/* A request awaited: when it came and what it was. */
struct pending {
	uint64_t start_ns;
	int kind;
};

static struct {
	struct rpc methods[KINDS_MAX]; /* kind 0: answers to no request seen */
	const char *method_names[KINDS_MAX];
	struct app_figs *apps; /* max_apps + 1: the last one is "other" */
	size_t n_apps, max_apps, n_blocks;
	uint64_t untimed;       /* requests that could not be awaited */
	bool timed; /* a server shows the latencies: requests are timed */
	/* The request being dispatched: a synchronous answer without id
	 * (a fire-and-forget request refused) is its. */
	struct client *cur;
	int cur_kind;
	/* The loop's turns, measured by how late a steady timer fires. */
	struct event *ev_lag;
	uint64_t lag_due_ns, lag_last_ns;
	uint64_t lag_max_ns[2]; /* this window's worst and the last one's */
	uint64_t lag_window_start_ns;
	uint64_t lag_max_ever_ns;
	time_t started_wall;
} m;

uint64_t metrics_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- recording ---- */

static void hist_add(struct hist *h, uint64_t ns)
{
	size_t i = 0;
	while (i < N_BOUNDS && ns > bounds_ns[i])
		i++;
	h->n[i]++;
	h->sum_ns += ns;
}

static size_t code_index(Ship__Code code)
{
	return (unsigned)code < CODES_MAX ? (size_t)code : CODES_MAX - 1;
}

/* A label value that needs no escaping and stays short: what a client
 * names itself is not trusted. */
static void label_copy_n(char *dst, const char *src, size_t max)
{
	size_t n = 0;
	for (; *src && n < max; src++)
		dst[n++] = isalnum((unsigned char)*src) || strchr("._-@:/+", *src)
		                   ? *src
		                   : '_';
	dst[n] = '\0';
}

static void label_copy(char *dst, const char *src)
{
	label_copy_n(dst, src, LABEL_MAX);
}

/* The app label of a client: its systemd unit, else the name it gave in
 * its hello, else its user. */
static void app_label(const struct client *c, char *out)
{
	const char *s = c->id.unit[0]                          ? c->id.unit
	                : c->hello && strcmp(c->name, "?") != 0 ? c->name
	                                                        : c->id.user;
	label_copy(out, s[0] ? s : "unknown");
}

static void rpc_add(struct rpc *dst, const struct rpc *src)
{
	dst->requests += src->requests;
	for (size_t i = 0; i < CODES_MAX; i++)
		dst->codes[i] += src->codes[i];
	for (size_t i = 0; i <= N_BOUNDS; i++)
		dst->lat.n[i] += src->lat.n[i];
	dst->lat.sum_ns += src->lat.sum_ns;
}

/* Slot i's figures go to "other" and the slot is empty again: a label
 * whose clients are all gone does not keep its slot from a new app
 * (anyone who may connect can say any name in a hello). */
static void app_fold(size_t i)
{
	struct app_figs *a = &m.apps[i], *o = &m.apps[m.max_apps];
	for (size_t b = 0; b <= m.n_blocks; b++)
		rpc_add(&o->blocks[b], &a->blocks[b]);
	o->bytes_in += a->bytes_in;
	o->bytes_out += a->bytes_out;
	o->dropped += a->dropped;
	o->denied += a->denied;
	memset(a->blocks, 0, (m.n_blocks + 1) * sizeof(*a->blocks));
	a->bytes_in = a->bytes_out = a->dropped = a->denied = 0;
	a->live = 0;
}

static int app_slot(const char *label)
{
	for (size_t i = 0; i < m.n_apps; i++)
		if (!strcmp(m.apps[i].label, label))
			return (int)i;
	size_t slot = m.n_apps;
	if (m.n_apps == m.max_apps) {
		for (slot = 0; slot < m.n_apps && m.apps[slot].live; slot++)
			;
		if (slot == m.n_apps)
			return (int)m.max_apps; /* "other" */
		app_fold(slot);
	} else {
		m.n_apps++;
	}
	snprintf(m.apps[slot].label, sizeof(m.apps[0].label), "%s", label);
	return (int)slot;
}

void metrics_client_named(struct client *c)
{
	char label[LABEL_MAX + 1];
	/* Without a unit, the name in its hello names it: a slot is not
	 * taken for its user first. */
	if (!m.apps || (!c->hello && !c->id.unit[0]))
		return;
	app_label(c, label);
	if (c->mapp >= 0 && (size_t)c->mapp < m.max_apps)
		m.apps[c->mapp].live--; /* named again: counted once */
	c->mapp = app_slot(label);
	if ((size_t)c->mapp < m.max_apps)
		m.apps[c->mapp].live++;
}

static struct rpc *app_rpc(const struct client *c, int kind)
{
	if (!m.apps || c->mapp < 0)
		return NULL;
	int b = blocks_index(kind);
	return &m.apps[c->mapp].blocks[b < 0 ? m.n_blocks : (size_t)b];
}

void metrics_request(struct client *c, int kind, uint64_t id)
{
	if ((unsigned)kind >= KINDS_MAX)
		kind = 0;
	m.methods[kind].requests++;
	struct rpc *a = app_rpc(c, kind);
	if (a)
		a->requests++;
	m.cur = c;
	m.cur_kind = kind;
	/* Nobody could read a latency without the server (a restart starts
	 * it): no timing entry per request then. */
	if (!id || !m.timed)
		return;
	struct pending *p = ipc_idmap_get(&c->pending, id);
	size_t cap = (size_t)conf->max_requests + PENDING_SLACK;
	if (p) {
		m.untimed++; /* an id used again before its answer */
	} else if (c->pending.count >= cap || !(p = malloc(sizeof(*p))) ||
	           ipc_idmap_put(&c->pending, id, p) < 0) {
		free(p);
		m.untimed++;
		return;
	}
	p->start_ns = metrics_now_ns();
	p->kind = kind;
}

void metrics_request_done(void)
{
	m.cur = NULL;
}

static void count_answer(struct client *c, int kind, Ship__Code code,
                         const uint64_t *ns)
{
	struct rpc *r[2] = {&m.methods[kind], app_rpc(c, kind)};
	for (size_t i = 0; i < 2; i++) {
		if (!r[i])
			continue;
		r[i]->codes[code_index(code)]++;
		if (ns)
			hist_add(&r[i]->lat, *ns);
	}
}

void metrics_answer(struct client *c, uint64_t id, Ship__Code code)
{
	struct pending *p = id ? ipc_idmap_del(&c->pending, id) : NULL;
	if (p) {
		uint64_t ns = metrics_now_ns() - p->start_ns;
		count_answer(c, p->kind, code, &ns);
		free(p);
	} else if (!id && code != SHIP__CODE__OK) {
		/* A fire-and-forget request refused now is the one being
		 * dispatched; later, nobody knows which it was. */
		count_answer(c, m.cur == c ? m.cur_kind : 0, code, NULL);
	}
}

void metrics_denied(struct client *c)
{
	if (m.apps && c->mapp >= 0)
		m.apps[c->mapp].denied++;
}

void metrics_client_gone(struct client *c)
{
	size_t pos = 0;
	uint64_t key;
	void *val;
	while (ipc_idmap_next(&c->pending, &pos, &key, &val))
		free(val);
	ipc_idmap_finish(&c->pending);
	if (m.cur == c)
		m.cur = NULL;
	if (!m.apps)
		return;
	if (c->mapp < 0 && !c->st.bytes_in && !c->st.bytes_out)
		return; /* said nothing: no label for it */
	if (c->mapp < 0) { /* gone before its hello: its user's */
		char label[LABEL_MAX + 1];
		app_label(c, label);
		c->mapp = app_slot(label);
	} else if ((size_t)c->mapp < m.max_apps) {
		m.apps[c->mapp].live--;
	}
	struct app_figs *a = &m.apps[c->mapp];
	a->bytes_in += c->st.bytes_in;
	a->bytes_out += c->st.bytes_out;
	a->dropped += c->st.dropped;
}

/* ---- the loop's turns ---- */

static void lag_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = metrics_now_ns();
	uint64_t late = now > m.lag_due_ns ? now - m.lag_due_ns : 0;
	if (now - m.lag_window_start_ns >= LAG_WINDOW_MS * 1000000ull) {
		m.lag_max_ns[1] = m.lag_max_ns[0];
		m.lag_max_ns[0] = 0;
		m.lag_window_start_ns = now;
	}
	if (late > m.lag_max_ns[0])
		m.lag_max_ns[0] = late;
	if (late > m.lag_max_ever_ns)
		m.lag_max_ever_ns = late;
	m.lag_last_ns = now;
	m.lag_due_ns = now + LAG_TICK_MS * 1000000ull;
}

uint64_t metrics_loop_idle_ms(void)
{
	return (metrics_now_ns() - m.lag_last_ns) / 1000000u;
}

uint64_t metrics_loop_worst_ms(void)
{
	uint64_t w = m.lag_max_ns[0] > m.lag_max_ns[1] ? m.lag_max_ns[0]
	                                               : m.lag_max_ns[1];
	return w / 1000000u;
}

/* ---- setup ---- */

int metrics_init(struct event_base *b, const struct config *c)
{
	const ProtobufCMessageDescriptor *d = &ship__client_frame__descriptor;
	for (unsigned i = 0; i < d->n_fields; i++)
		if (d->fields[i].id < KINDS_MAX)
			m.method_names[d->fields[i].id] = d->fields[i].name;
	m.n_blocks = blocks_count();
	m.max_apps = c->metrics_max_apps;
	m.apps = calloc(m.max_apps + 1, sizeof(*m.apps));
	if (!m.apps)
		return -1;
	for (size_t i = 0; i <= m.max_apps; i++) {
		m.apps[i].blocks = calloc(m.n_blocks + 1, sizeof(struct rpc));
		if (!m.apps[i].blocks)
			return -1;
	}
	snprintf(m.apps[m.max_apps].label, sizeof(m.apps[0].label), "other");
	m.started_wall = time(NULL);
	m.lag_last_ns = m.lag_window_start_ns = metrics_now_ns();
	/* Nobody reads the loop's turns without the server: an idle shipd
	 * is not woken for them. */
	if (!c->metrics_listen && !c->metrics_socket)
		return 0;
	m.timed = true;
	m.lag_due_ns = m.lag_last_ns + LAG_TICK_MS * 1000000ull;
	m.ev_lag = event_new(b, -1, EV_PERSIST, lag_cb, NULL);
	struct timeval tv = {0, LAG_TICK_MS * 1000};
	if (!m.ev_lag || event_add(m.ev_lag, &tv) < 0)
		return -1;
	return 0;
}

void metrics_finish(void)
{
	if (m.ev_lag)
		event_free(m.ev_lag);
	for (size_t i = 0; m.apps && i <= m.max_apps; i++)
		free(m.apps[i].blocks);
	free(m.apps);
	memset(&m, 0, sizeof(m));
}

/* ---- exposition ---- */

static void family(struct evbuffer *o, const char *name, const char *type,
                   const char *help)
{
	evbuffer_add_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
	                    type);
}

/* One figure without labels; a counter's name ends in _total, its
 * family's too (the text format names a family by its samples). */
static void figure(struct evbuffer *o, const char *name, const char *type,
                   const char *help, double v)
{
	family(o, name, type, help);
	/* Whole numbers (counts, bytes) in full; the rest to 9 digits. */
	if (v == (double)(int64_t)v && v < 9e15 && v > -9e15)
		evbuffer_add_printf(o, "%s %.0f\n", name, v);
	else
		evbuffer_add_printf(o, "%s %.9g\n", name, v);
}

static void gauge(struct evbuffer *o, const char *name, const char *help,
                  double v)
{
	figure(o, name, "gauge", help, v);
}

static void counter(struct evbuffer *o, const char *name, const char *help,
                    double v)
{
	figure(o, name, "counter", help, v);
}

static const char *code_label(size_t code)
{
	const ProtobufCEnumValue *v =
		protobuf_c_enum_descriptor_get_value(&ship__code__descriptor,
	                                             (int)code);
	static char buf[32];
	snprintf(buf, sizeof(buf), "%s", v ? v->name : "unknown");
	for (char *p = buf; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return buf;
}

static void hist_print(struct evbuffer *o, const char *name,
                       const char *labels, const struct hist *h)
{
	uint64_t cum = 0;
	for (size_t i = 0; i < N_BOUNDS; i++) {
		cum += h->n[i];
		evbuffer_add_printf(o, "%s_bucket{%s,le=\"%g\"} %" PRIu64 "\n",
		                    name, labels, (double)bounds_ns[i] / 1e9, cum);
	}
	cum += h->n[N_BOUNDS];
	evbuffer_add_printf(o, "%s_bucket{%s,le=\"+Inf\"} %" PRIu64 "\n", name,
	                    labels, cum);
	evbuffer_add_printf(o, "%s_sum{%s} %.9f\n%s_count{%s} %" PRIu64 "\n",
	                    name, labels, (double)h->sum_ns / 1e9, name, labels,
	                    cum);
}

/* One family of struct rpc figures over a set of label values. */
struct rpc_set {
	const struct rpc *(*get)(size_t i, char *labels, size_t size);
	size_t n;
};

static const struct rpc *method_rpc(size_t i, char *labels, size_t size)
{
	const char *block = blocks_name(blocks_index((int)i));
	/* The socket layer answers a hello itself. */
	snprintf(labels, size, "block=\"%s\",method=\"%s\"",
	         block ? block : "control",
	         i && m.method_names[i] ? m.method_names[i] : "unknown");
	return &m.methods[i];
}

static const struct rpc *app_block_rpc(size_t i, char *labels, size_t size)
{
	size_t app = i / (m.n_blocks + 1), b = i % (m.n_blocks + 1);
	if (app >= m.n_apps && app != m.max_apps)
		return NULL;
	const char *block = b < m.n_blocks ? blocks_name((int)b) : NULL;
	snprintf(labels, size, "app=\"%s\",block=\"%s\"", m.apps[app].label,
	         block ? block : "control");
	return &m.apps[app].blocks[b];
}

static void rpc_family(struct evbuffer *o, const char *prefix,
                       const char *what, const struct rpc_set *s)
{
	char name[96], labels[256];
	snprintf(name, sizeof(name), "%s_requests_total", prefix);
	family(o, name, "counter", what);
	for (size_t i = 0; i < s->n; i++) {
		const struct rpc *r = s->get(i, labels, sizeof(labels));
		if (r && r->requests)
			evbuffer_add_printf(o, "%s{%s} %" PRIu64 "\n", name,
			                    labels, r->requests);
	}
	snprintf(name, sizeof(name), "%s_responses_total", prefix);
	family(o, name, "counter", "answers by status code");
	for (size_t i = 0; i < s->n; i++) {
		const struct rpc *r = s->get(i, labels, sizeof(labels));
		for (size_t k = 0; r && k < CODES_MAX; k++)
			if (r->codes[k])
				evbuffer_add_printf(o, "%s{%s,code=\"%s\"} %" PRIu64
				                       "\n",
				                    name, labels, code_label(k),
				                    r->codes[k]);
	}
	snprintf(name, sizeof(name), "%s_request_duration_seconds", prefix);
	family(o, name, "histogram",
	       "time from a request's arrival to its answer");
	for (size_t i = 0; i < s->n; i++) {
		const struct rpc *r = s->get(i, labels, sizeof(labels));
		uint64_t any = 0;
		for (size_t k = 0; r && k <= N_BOUNDS; k++)
			any += r->lat.n[k];
		if (any)
			hist_print(o, name, labels, &r->lat);
	}
}

/* Live clients' figures, added to what the gone ones left. */
struct app_live {
	uint64_t clients, subs, requests, bytes_in, bytes_out, dropped;
};

static void add_live(struct client *c, void *arg)
{
	struct app_live *l = arg;
	if (c->mapp < 0)
		return;
	l += c->mapp;
	l->clients++;
	l->subs += c->n_subs;
	l->requests += c->n_requests;
	l->bytes_in += c->st.bytes_in;
	l->bytes_out += c->st.bytes_out;
	l->dropped += c->st.dropped;
}

static void app_line(struct evbuffer *o, const char *name, size_t app,
                     uint64_t v)
{
	if (app < m.n_apps || app == m.max_apps)
		evbuffer_add_printf(o, "%s{app=\"%s\"} %" PRIu64 "\n", name,
		                    m.apps[app].label, v);
}

static void apps_print(struct evbuffer *o)
{
	struct app_live *l = calloc(m.max_apps + 1, sizeof(*l));
	if (!l)
		return;
	control_each_client(add_live, l);
	static const struct {
		const char *name, *type, *help;
		size_t live, gone; /* offsets, or SIZE_MAX */
	} figs[] = {
#define L(f) offsetof(struct app_live, f)
#define G(f) offsetof(struct app_figs, f)
		{"shipd_app_clients", "gauge", "connected clients", L(clients),
		 SIZE_MAX},
		{"shipd_app_subscriptions", "gauge", "open streams",
		 L(subs), SIZE_MAX},
		{"shipd_app_requests_in_flight", "gauge",
		 "requests waiting for NATS", L(requests), SIZE_MAX},
		{"shipd_app_received_bytes_total", "counter",
		 "bytes read from the app's connections", L(bytes_in),
		 G(bytes_in)},
		{"shipd_app_sent_bytes_total", "counter",
		 "bytes written to the app's connections", L(bytes_out),
		 G(bytes_out)},
		{"shipd_app_dropped_messages_total", "counter",
		 "messages dropped because the app read too slowly",
		 L(dropped), G(dropped)},
		{"shipd_app_denied_total", "counter",
		 "requests refused by the access rules", SIZE_MAX, G(denied)},
#undef L
#undef G
	};
	for (size_t f = 0; f < NITEMS(figs); f++) {
		family(o, figs[f].name, figs[f].type, figs[f].help);
		for (size_t a = 0; a <= m.max_apps; a++) {
			uint64_t v = 0;
			if (figs[f].live != SIZE_MAX)
				v += *(uint64_t *)((char *)&l[a] + figs[f].live);
			if (figs[f].gone != SIZE_MAX)
				v += *(uint64_t *)((char *)&m.apps[a] +
				                   figs[f].gone);
			if (v || a < m.n_apps)
				app_line(o, figs[f].name, a, v);
		}
	}
	free(l);
}

static void link_print(struct evbuffer *o)
{
	const struct link_info *li = link_info();
	gauge(o, "shipd_nats_connected", "1 while the NATS link is up",
	      li->state == LINK_CONNECTED);
	family(o, "shipd_nats_link_state", "gauge",
	       "the NATS link's state, 1 for the current one");
	for (int s = LINK_CONNECTING; s <= LINK_CLOSED; s++)
		evbuffer_add_printf(o, "shipd_nats_link_state{state=\"%s\"} %d\n",
		                    link_state_name((enum link_state)s),
		                    li->state == (enum link_state)s);
	family(o, "shipd_nats_replies_total", "counter",
	       "messages on shipd's reply inbox, by how they came in: taken "
	       "where they were read (loop) or through nats.c's delivery "
	       "thread (mailbox)");
	evbuffer_add_printf(o,
	                    "shipd_nats_replies_total{path=\"loop\"} %" PRIu64
	                    "\nshipd_nats_replies_total{path=\"mailbox\"} %" PRIu64
	                    "\n",
	                    li->replies_loop, li->replies_mailbox);
	counter(o, "shipd_nats_reconnects_total",
	        "times the NATS link was made again", li->reconnects);
	gauge(o, "shipd_nats_rtt_seconds",
	      "round trip to the NATS server, last measured",
	      (double)li->rtt_us / 1e6);
	gauge(o, "shipd_nats_link_changed_seconds",
	      "seconds since the link's state last changed",
	      (double)(now_ms() - li->changed_ms) / 1e3);
	gauge(o, "shipd_nats_buffered_bytes",
	      "bytes written to NATS that the server has not taken yet",
	      (double)link_buffered());
	gauge(o, "shipd_nats_held_bytes",
	      "publishes kept while NATS is away", (double)link_held_bytes());
	gauge(o, "shipd_jetstream_ready",
	      "1 while JetStream answered the last probe",
	      httpd_jetstream_ready(NULL, 0));
}

/* With a hub: whether its JetStream answers, and what the hub has not
 * sourced yet of each robot stream (the streams are configuration's,
 * so the label stays bounded). */
static void uplink_print(struct evbuffer *o)
{
	Ship__UplinkStatus st = SHIP__UPLINK_STATUS__INIT;
	Ship__UplinkStream buf[16], *ptrs[16];
	if (!conf->hub_domain)
		return;
	uplink_status(&st, buf, ptrs, NITEMS(buf));
	gauge(o, "shipd_uplink_up", "1 while the hub's JetStream answers",
	      st.state == SHIP__UPLINK_STATE__UPLINK_UP);
	counter(o, "shipd_uplink_changes_total",
	        "changes of the uplink between up and down", (double)st.changes);
	family(o, "shipd_uplink_waiting_messages", "gauge",
	       "messages of a robot stream the hub has not sourced yet");
	for (size_t i = 0; i < st.n_streams; i++) {
		char stream[LABEL_MAX + 1];
		label_copy(stream, st.streams[i]->stream);
		evbuffer_add_printf(o,
		                    "shipd_uplink_waiting_messages{stream=\"%s\"} "
		                    "%" PRIu64 "\n",
		                    stream, st.streams[i]->waiting_msgs);
	}
}

static void daemon_print(struct evbuffer *o)
{
	gauge(o, "shipd_clients", "connected clients",
	      control_client_count());
	gauge(o, "shipd_subscriptions", "core NATS subscriptions of apps",
	      pubsub_sub_count());
	gauge(o, "shipd_requests_in_flight", "requests waiting for NATS",
	      control_requests_in_flight());
	gauge(o, "shipd_held_bytes", "bytes held for all clients' requests",
	      (double)control_held_bytes());
	gauge(o, "shipd_inbound_queued_bytes",
	      "bytes of messages from NATS waiting for the loop",
	      (double)mailbox_queued_bytes());
	counter(o, "shipd_messages_received_total", "messages from NATS to apps",
	        stats.msgs_in);
	counter(o, "shipd_messages_sent_total", "messages from apps to NATS",
	        stats.msgs_out);
	counter(o, "shipd_messages_dropped_total",
	        "messages dropped for apps that read too slowly", stats.dropped);
	counter(o, "shipd_denied_total", "requests refused by the access rules",
	        stats.denied);
	counter(o, "shipd_requests_untimed_total",
	        "requests not timed: too many awaited on one connection",
	        m.untimed);
	uint64_t in = 0, out = 0;
	struct app_live *l = calloc(m.max_apps + 1, sizeof(*l));
	if (l) {
		control_each_client(add_live, l);
		for (size_t a = 0; a <= m.max_apps; a++) {
			in += l[a].bytes_in + m.apps[a].bytes_in;
			out += l[a].bytes_out + m.apps[a].bytes_out;
		}
		free(l);
	}
	counter(o, "shipd_received_bytes_total", "bytes read from clients", in);
	counter(o, "shipd_sent_bytes_total", "bytes written to clients", out);
	gauge(o, "shipd_loop_turn_max_seconds",
	      "the loop's longest turn in the last 30 to 60 seconds",
	      (double)metrics_loop_worst_ms() / 1e3);
	gauge(o, "shipd_loop_turn_max_ever_seconds",
	      "the loop's longest turn since start",
	      (double)m.lag_max_ever_ns / 1e9);
	gauge(o, "shipd_uptime_seconds", "seconds since shipd started",
	      (double)(now_ms() - start_ms()) / 1e3);
	family(o, "shipd_build_info", "gauge", "shipd's version");
	evbuffer_add_printf(o, "shipd_build_info{version=\"%s\"} 1\n",
	                    SHIP_VERSION);
}

/* The job queues' depths, one family each: lines gathered per family
 * in one walk of the queues. */
enum { DEPTH_JOBS, DEPTH_WAITING, DEPTH_HELD, DEPTH_N };
static const struct {
	const char *name, *help;
} depth_families[DEPTH_N] = {
	{"shipd_job_queue_jobs",
	 "jobs of the queues local workers claim from, by state"},
	{"shipd_job_queue_waiting_claims", "local claims waiting for a job"},
	{"shipd_job_queue_held_jobs", "jobs local workers hold"},
};

static void depth_line(const char *queue, const struct jobs_depth *d,
                       void *arg)
{
	struct evbuffer **b = arg;
	/* Whole: two queues cut to one value would be one series written
	 * twice, and one of them lost. Queue names are at most 200 bytes. */
	char q[QUEUE_LABEL_MAX + 1];
	label_copy_n(q, queue, QUEUE_LABEL_MAX);
	static const char *const states[] = {"queued", "running", "dead"};
	const uint64_t n[] = {d->queued, d->running, d->dead};
	for (size_t i = 0; i < NITEMS(states); i++)
		evbuffer_add_printf(b[DEPTH_JOBS],
		                    "%s{queue=\"%s\",state=\"%s\"} %" PRIu64 "\n",
		                    depth_families[DEPTH_JOBS].name, q, states[i],
		                    n[i]);
	evbuffer_add_printf(b[DEPTH_WAITING], "%s{queue=\"%s\"} %" PRIu64 "\n",
	                    depth_families[DEPTH_WAITING].name, q,
	                    d->waiting_claims);
	evbuffer_add_printf(b[DEPTH_HELD], "%s{queue=\"%s\"} %" PRIu64 "\n",
	                    depth_families[DEPTH_HELD].name, q, d->held);
}

static void jobs_print(struct evbuffer *o)
{
	struct evbuffer *b[DEPTH_N];
	bool ok = true;
	for (size_t i = 0; i < DEPTH_N; i++)
		ok &= (b[i] = evbuffer_new()) != NULL;
	if (ok)
		jobs_each_depth(depth_line, b);
	for (size_t i = 0; i < DEPTH_N; i++) {
		if (ok) {
			family(o, depth_families[i].name, "gauge",
			       depth_families[i].help);
			evbuffer_add_buffer(o, b[i]);
		}
		if (b[i])
			evbuffer_free(b[i]);
	}
}

/* What every Prometheus client calls them, so dashboards find them. */
static void process_print(struct evbuffer *o)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		counter(o, "process_cpu_seconds_total",
		        "user and system CPU time",
		      (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		              (double)ru.ru_stime.tv_sec +
		              ru.ru_stime.tv_usec / 1e6);
	unsigned long size = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &rss) == 2) {
			long page = sysconf(_SC_PAGESIZE);
			gauge(o, "process_resident_memory_bytes",
			      "resident memory", (double)rss * (double)page);
			gauge(o, "process_virtual_memory_bytes",
			      "virtual memory", (double)size * (double)page);
		}
		fclose(f);
	}
	DIR *d = opendir("/proc/self/fd");
	if (d) {
		unsigned n = 0;
		for (struct dirent *e; (e = readdir(d));)
			if (e->d_name[0] != '.')
				n++;
		closedir(d);
		gauge(o, "process_open_fds", "open file descriptors", n - 1);
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		gauge(o, "process_max_fds", "file descriptors allowed",
		      rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
	gauge(o, "process_start_time_seconds",
	      "start time, seconds since the epoch", (double)m.started_wall);
}

void metrics_render(struct evbuffer *o)
{
	link_print(o);
	uplink_print(o);
	daemon_print(o);
	struct rpc_set methods = {method_rpc, KINDS_MAX};
	rpc_family(o, "shipd_rpc", "requests per method", &methods);
	struct rpc_set apps = {app_block_rpc, (m.max_apps + 1) * (m.n_blocks + 1)};
	if (m.apps) {
		rpc_family(o, "shipd_app", "requests per app and block", &apps);
		apps_print(o);
	}
	jobs_print(o);
	process_print(o);
}
