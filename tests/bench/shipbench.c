/* SPDX-License-Identifier: MIT */
/* shipbench: the same workloads directly on nats.c and through shipd +
 * libshipc, in one run, with their ratio and shipd's CPU and memory. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "fixture.h"
#include "ipc.h"
#include "shipc.h"

static struct {
	const char *nats_url;
	const char *socket;
	size_t size;
	unsigned count;
	unsigned clients;
	bool json;
	bool quick;
} opt = {.size = 128, .count = 200000, .clients = 4};

static struct natsd nd;
static struct shipdp sd;
static pid_t shipd_pid; /* 0 when pointed at a shipd we did not start */
static char *payload;
static bool first_row = true;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- shipd's CPU and memory, from /proc ---- */

struct usage {
	double cpu_s;
	long peak_kib;
};

static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
	                        "%lu %lu",
	                 &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long proc_status_kib(pid_t pid, const char *key)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long v = -1;
	if (!f)
		return -1;
	size_t kl = strlen(key);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':')
			v = strtol(line + kl + 1, NULL, 10);
	fclose(f);
	return v;
}

static void usage_begin(struct usage *u)
{
	if (!shipd_pid)
		return;
	/* Writing 5 to clear_refs resets the peak RSS (VmHWM). */
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)shipd_pid);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs("5", f);
		fclose(f);
	}
	u->cpu_s = proc_cpu_s(shipd_pid);
}

static void usage_end(struct usage *u)
{
	if (!shipd_pid)
		return;
	u->cpu_s = proc_cpu_s(shipd_pid) - u->cpu_s;
	u->peak_kib = proc_status_kib(shipd_pid, "VmHWM");
}

/* ---- output ---- */

static void row(const char *scenario, const char *metric, double direct,
                double shipd, bool higher_better, const struct usage *u)
{
	double ratio = direct > 0 ? shipd / direct : 0;
	if (opt.json) {
		printf("%s{\"scenario\":\"%s\",\"metric\":\"%s\",\"direct\":%.3f,"
		       "\"shipd\":%.3f,\"ratio\":%.3f,\"higher_is_better\":%s",
		       first_row ? "" : ",\n", scenario, metric, direct, shipd,
		       ratio, higher_better ? "true" : "false");
		if (u && shipd_pid)
			printf(",\"shipd_cpu_s\":%.3f,\"shipd_peak_rss_kib\":%ld",
			       u->cpu_s, u->peak_kib);
		printf("}");
	} else {
		printf("%-8s %-16s %14.1f %14.1f %8.3f", scenario, metric, direct,
		       shipd, ratio);
		if (u && shipd_pid)
			printf(" %8.2f s %8.1f MiB", u->cpu_s,
			       (double)u->peak_kib / 1024.0);
		printf("\n");
	}
	first_row = false;
	fflush(stdout);
}

/* asap: write each message at once, the best nats.c does for latency;
 * otherwise its flusher thread batches, the best for throughput. */
static natsConnection *nats_connect_opts(bool asap)
{
	natsConnection *nc = NULL;
	natsOptions *o = NULL;
	natsOptions_Create(&o);
	natsOptions_SetURL(o, opt.nats_url);
	natsOptions_SetSendAsap(o, asap);
	natsOptions_SetMaxPendingMsgs(o, 1000000);
	if (natsConnection_Connect(&nc, o) != NATS_OK) {
		fprintf(stderr, "shipbench: cannot connect to %s\n", opt.nats_url);
		exit(1);
	}
	natsOptions_Destroy(o);
	return nc;
}

static natsConnection *nats_connect(void)
{
	return nats_connect_opts(false);
}

static struct shipc *ship_connect(const char *name)
{
	struct shipc *h = shipc_connect(opt.socket, name);
	if (!h) {
		fprintf(stderr, "shipbench: cannot connect to shipd at %s: %s\n",
		        opt.socket, strerror(errno));
		exit(1);
	}
	return h;
}

/* ---- rtt: a bare Unix socket ping-pong, the floor for any sidecar ---- */

static void *echo_thread(void *arg)
{
	int fd = *(int *)arg;
	char buf[4096];
	for (;;) {
		ssize_t n = read(fd, buf, opt.size);
		if (n <= 0 || write(fd, buf, (size_t)n) != n)
			return NULL;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, unsigned n, double p)
{
	return (double)v[(unsigned)((n - 1) * p)] / 1000.0; /* ns -> us */
}

static double bare_rtt_p50_us;

static void bench_rtt(void)
{
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	pthread_t t;
	pthread_create(&t, NULL, echo_thread, &sv[1]);
	unsigned n = opt.quick ? 2000 : 20000;
	uint64_t *lat = calloc(n, sizeof(*lat));
	char buf[4096];
	size_t sz = opt.size < sizeof(buf) ? opt.size : sizeof(buf);
	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		if (write(sv[0], payload, sz) != (ssize_t)sz)
			break;
		size_t got = 0;
		while (got < sz) {
			ssize_t r = read(sv[0], buf + got, sz - got);
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		lat[i] = now_ns() - t0;
	}
	close(sv[0]);
	pthread_join(t, NULL);
	close(sv[1]);
	qsort(lat, n, sizeof(*lat), cmp_u64);
	bare_rtt_p50_us = pct(lat, n, 0.5);
	if (opt.json)
		printf("%s{\"scenario\":\"rtt\",\"metric\":\"p50_us\",\"value\":%.3f,"
		       "\"p99_us\":%.3f}",
		       first_row ? "" : ",\n", bare_rtt_p50_us, pct(lat, n, 0.99));
	else
		printf("%-8s %-16s %14.1f %14s %8s   (p99 %.1f us)\n", "rtt",
		       "p50 us", bare_rtt_p50_us, "-", "-", pct(lat, n, 0.99));
	first_row = false;
	free(lat);
}

/* ---- pub: fire-and-forget publish from one app ---- */

static double pub_direct(unsigned n)
{
	natsConnection *nc = nats_connect();
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < n; i++)
		natsConnection_Publish(nc, "bench.pub", payload, (int)opt.size);
	natsConnection_FlushTimeout(nc, 60000);
	double s = (double)(now_ns() - t0) / 1e9;
	natsConnection_Destroy(nc);
	return n / s;
}

static double pub_shipd(unsigned n, struct usage *u)
{
	struct shipc *h = ship_connect("bench-pub");
	usage_begin(u);
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < n; i++)
		if (shipc_publish(h, "bench.pub", payload, opt.size) < 0) {
			fprintf(stderr, "shipbench: publish: %s\n", strerror(errno));
			exit(1);
		}
	shipc_flush(h, 60000);
	double s = (double)(now_ns() - t0) / 1e9;
	usage_end(u);
	shipc_close(h);
	return n / s;
}

static void bench_pub(void)
{
	unsigned n = opt.count;
	double d = pub_direct(n);
	struct usage u = {0};
	double s = pub_shipd(n, &u);
	row("pub", "msgs/s", d, s, true, &u);
	row("pub", "MB/s", d * (double)opt.size / 1e6,
	    s * (double)opt.size / 1e6, true, NULL);
}

/* ---- pubsub and fanout: delivered messages per second ---- */

struct counter {
	atomic_uint n;
	atomic_uint_fast64_t last_ns;
};

static void direct_count_cb(natsConnection *nc, natsSubscription *sub,
                            natsMsg *m, void *arg)
{
	struct counter *c = arg;
	atomic_fetch_add(&c->n, 1);
	atomic_store(&c->last_ns, now_ns());
	natsMsg_Destroy(m);
}

static void ship_count_cb(struct shipc *h, const struct shipc_msg *m, int err,
                          void *arg)
{
	struct counter *c = arg;
	if (!m)
		return;
	atomic_fetch_add(&c->n, 1 + (unsigned)m->dropped * 0);
	atomic_store(&c->last_ns, now_ns());
}

/* Wait until every counter has n, or nothing arrived for a second. */
static uint64_t wait_counts(struct counter *c, unsigned k, unsigned n)
{
	uint64_t idle_since = now_ns();
	unsigned last_total = 0;
	for (;;) {
		unsigned total = 0;
		bool all = true;
		for (unsigned i = 0; i < k; i++) {
			unsigned v = atomic_load(&c[i].n);
			total += v;
			all = all && v >= n;
		}
		if (all)
			break;
		if (total != last_total) {
			last_total = total;
			idle_since = now_ns();
		} else if (now_ns() - idle_since > 1000000000u) {
			break;
		}
		fx_sleep_ms(1);
	}
	uint64_t last = 0;
	for (unsigned i = 0; i < k; i++)
		if (atomic_load(&c[i].last_ns) > last)
			last = atomic_load(&c[i].last_ns);
	return last;
}

static double fan_direct(unsigned k, unsigned n)
{
	natsConnection *pub = nats_connect();
	natsConnection **subs = calloc(k, sizeof(*subs));
	natsSubscription **ss = calloc(k, sizeof(*ss));
	struct counter *c = calloc(k, sizeof(*c));
	for (unsigned i = 0; i < k; i++) {
		subs[i] = nats_connect();
		natsConnection_Subscribe(&ss[i], subs[i], "bench.fan",
		                         direct_count_cb, &c[i]);
		natsSubscription_SetPendingLimits(ss[i], -1, -1);
		natsConnection_Flush(subs[i]);
	}
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < n; i++)
		natsConnection_Publish(pub, "bench.fan", payload, (int)opt.size);
	natsConnection_FlushTimeout(pub, 60000);
	uint64_t last = wait_counts(c, k, n);
	unsigned total = 0;
	for (unsigned i = 0; i < k; i++) {
		total += atomic_load(&c[i].n);
		natsSubscription_Destroy(ss[i]);
		natsConnection_Destroy(subs[i]);
	}
	natsConnection_Destroy(pub);
	free(subs);
	free(ss);
	free(c);
	return total / ((double)(last - t0) / 1e9);
}

struct pump {
	struct shipc *h;
	atomic_bool stop;
	pthread_t t;
};

static void *pump_thread(void *arg)
{
	struct pump *p = arg;
	while (!atomic_load(&p->stop))
		shipc_dispatch(p->h, 50);
	return NULL;
}

static double fan_shipd(unsigned k, unsigned n, struct usage *u)
{
	struct shipc *pub = ship_connect("bench-pub");
	struct pump *p = calloc(k, sizeof(*p));
	struct counter *c = calloc(k, sizeof(*c));
	for (unsigned i = 0; i < k; i++) {
		p[i].h = ship_connect("bench-sub");
		shipc_subscribe(p[i].h, "bench.fan", NULL, 0, ship_count_cb, &c[i]);
		pthread_create(&p[i].t, NULL, pump_thread, &p[i]);
	}
	usage_begin(u);
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < n; i++)
		shipc_publish(pub, "bench.fan", payload, opt.size);
	shipc_flush(pub, 60000);
	uint64_t last = wait_counts(c, k, n);
	usage_end(u);
	unsigned total = 0;
	for (unsigned i = 0; i < k; i++) {
		total += atomic_load(&c[i].n);
		atomic_store(&p[i].stop, true);
		pthread_join(p[i].t, NULL);
		shipc_close(p[i].h);
	}
	shipc_close(pub);
	free(p);
	free(c);
	return total / ((double)(last - t0) / 1e9);
}

static void bench_fan(const char *name, unsigned k)
{
	unsigned n = opt.count / k;
	double d = fan_direct(k, n);
	struct usage u = {0};
	double s = fan_shipd(k, n, &u);
	row(name, "delivered/s", d, s, true, &u);
}

/* ---- req: request/reply round trip between two apps ---- */

static void direct_echo_cb(natsConnection *nc, natsSubscription *sub,
                           natsMsg *m, void *arg)
{
	natsConnection_Publish(nc, natsMsg_GetReply(m), natsMsg_GetData(m),
	                       natsMsg_GetDataLength(m));
	natsMsg_Destroy(m);
}

static void ship_echo_cb(struct shipc *h, const struct shipc_msg *m, int err,
                         void *arg)
{
	if (m)
		shipc_respond(h, m, m->data, m->len);
}

static void report_latency(const char *metric, uint64_t *d, uint64_t *s,
                           unsigned n, const struct usage *u)
{
	qsort(d, n, sizeof(*d), cmp_u64);
	qsort(s, n, sizeof(*s), cmp_u64);
	static const double ps[] = {0.5, 0.9, 0.99};
	static const char *names[] = {"p50 us", "p90 us", "p99 us"};
	for (int i = 0; i < 3; i++)
		row(metric, names[i], pct(d, n, ps[i]), pct(s, n, ps[i]), false,
		    i == 0 ? u : NULL);
	double added = pct(s, n, 0.5) - pct(d, n, 0.5);
	if (!opt.json && bare_rtt_p50_us > 0)
		printf("%-8s added p50 %.1f us = %.2f x bare socket RTT (%.1f us)\n",
		       metric, added, added / bare_rtt_p50_us, bare_rtt_p50_us);
}

static void bench_req(void)
{
	unsigned n = opt.quick ? 500 : 10000;
	uint64_t *d = calloc(n, sizeof(*d)), *s = calloc(n, sizeof(*s));
	natsConnection *srv = nats_connect_opts(true);
	natsConnection *cli = nats_connect_opts(true);
	natsSubscription *ns;
	natsConnection_Subscribe(&ns, srv, "bench.req", direct_echo_cb, NULL);
	natsConnection_Flush(srv);
	for (unsigned i = 0; i < n; i++) {
		natsMsg *rep = NULL;
		uint64_t t0 = now_ns();
		if (natsConnection_Request(&rep, cli, "bench.req", payload,
		                           (int)opt.size, 5000) != NATS_OK) {
			fprintf(stderr, "shipbench: direct request failed\n");
			exit(1);
		}
		d[i] = now_ns() - t0;
		natsMsg_Destroy(rep);
	}
	natsSubscription_Destroy(ns);
	natsConnection_Destroy(srv);
	natsConnection_Destroy(cli);

	struct pump p = {.h = ship_connect("bench-echo")};
	shipc_subscribe(p.h, "bench.req", NULL, 0, ship_echo_cb, NULL);
	pthread_create(&p.t, NULL, pump_thread, &p);
	struct shipc *c = ship_connect("bench-req");
	struct usage u = {0};
	usage_begin(&u);
	for (unsigned i = 0; i < n; i++) {
		struct shipc_msg *rep = NULL;
		uint64_t t0 = now_ns();
		if (shipc_request(c, "bench.req", payload, opt.size, 5000, &rep) < 0) {
			fprintf(stderr, "shipbench: request: %s\n", strerror(errno));
			exit(1);
		}
		s[i] = now_ns() - t0;
		shipc_msg_free(rep);
	}
	usage_end(&u);
	atomic_store(&p.stop, true);
	pthread_join(p.t, NULL);
	shipc_close(p.h);
	shipc_close(c);
	report_latency("req", d, s, n, &u);
	free(d);
	free(s);
}

/* ---- jspub: acknowledged JetStream publishes, pipelined ---- */

static atomic_uint js_errors;

static void direct_js_err(jsCtx *js, jsPubAckErr *pae, void *arg)
{
	atomic_fetch_add(&js_errors, 1);
}

struct emit_window {
	unsigned inflight, acked, failed;
};

static void emit_done(struct shipc *h, const struct shipc_emit_result *r,
                      int err, void *arg)
{
	struct emit_window *w = arg;
	w->inflight--;
	if (r)
		w->acked++;
	else
		w->failed++;
}

static void bench_jspub(void)
{
	unsigned n = opt.quick ? 2000 : 50000;
	unsigned window = 1024;
	/* The same bytes both ways: an event envelope around the payload. */
	char *payload_json = malloc(opt.size + 3);
	payload_json[0] = '"';
	memset(payload_json + 1, 'p', opt.size);
	payload_json[opt.size + 1] = '"';
	payload_json[opt.size + 2] = '\0';
	struct shipc *probe = ship_connect("bench-js-probe");
	struct shipc_emit e = {.event_type = "bench.js", .source = "shipbench",
	                       .payload_json = payload_json};
	for (int i = 0; i < 100 && shipc_emit(probe, &e, NULL) < 0; i++)
		fx_sleep_ms(50); /* SHIP_EVENTS is declared when NATS is up */
	shipc_close(probe);
	char *envelope = NULL;
	if (asprintf(&envelope,
	             "{\"event_type\":\"bench.js\",\"timestamp\":\"2026-01-01T00:"
	             "00:00.000000000+00:00\",\"source\":\"shipbench\",\"payload\""
	             ":%s,\"correlation_id\":\"0123abcd\",\"version\":\"1.0\"}",
	             payload_json) < 0)
		exit(1);

	natsConnection *nc = nats_connect();
	jsCtx *js = NULL;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = window;
	jo.PublishAsync.ErrHandler = direct_js_err;
	natsConnection_JetStream(&js, nc, &jo);
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < n; i++) {
		char id[32];
		jsPubOptions po;
		jsPubOptions_Init(&po);
		snprintf(id, sizeof(id), "d-%u-%" PRIu64, i, t0);
		po.MsgId = id;
		po.MaxWait = 10000;
		js_PublishAsync(js, "ship.events.bench.js", envelope,
		                (int)strlen(envelope), &po);
	}
	jsPubOptions cpo;
	jsPubOptions_Init(&cpo);
	cpo.MaxWait = 60000;
	js_PublishAsyncComplete(js, &cpo);
	double d = n / ((double)(now_ns() - t0) / 1e9);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);

	struct shipc *h = ship_connect("bench-js");
	struct emit_window w = {0};
	struct usage u = {0};
	usage_begin(&u);
	t0 = now_ns();
	for (unsigned i = 0; i < n; i++) {
		while (w.inflight >= window)
			shipc_dispatch(h, 10);
		if (shipc_emit_async(h, &e, emit_done, &w) == 0)
			w.inflight++;
		else
			w.failed++;
	}
	while (w.inflight)
		shipc_dispatch(h, 10);
	double sh = w.acked / ((double)(now_ns() - t0) / 1e9);
	usage_end(&u);
	shipc_close(h);
	if (w.failed || atomic_load(&js_errors))
		fprintf(stderr, "shipbench: jspub: %u shipd and %u direct failures\n",
		        w.failed, atomic_load(&js_errors));
	row("jspub", "acked msgs/s", d, sh, true, &u);
	free(envelope);
	free(payload_json);
}

/* ---- kv: put and get latency, and throughput with concurrent apps ---- */

#define KV_BUCKET "shipbench"

struct kv_worker {
	pthread_t t;
	bool via_shipd;
	unsigned ops; /* put + get pairs */
	unsigned done;
	int idx;
	uint64_t *put_ns, *get_ns; /* per op, or NULL */
};

static kvStore *direct_kv(natsConnection *nc, jsCtx **js)
{
	kvStore *kv = NULL;
	natsConnection_JetStream(js, nc, NULL);
	if (js_KeyValue(&kv, *js, KV_BUCKET) != NATS_OK) {
		fprintf(stderr, "shipbench: kv: no bucket %s\n", KV_BUCKET);
		exit(1);
	}
	return kv;
}

static void *kv_work(void *arg)
{
	struct kv_worker *w = arg;
	char key[64];
	snprintf(key, sizeof(key), "k%d", w->idx);
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	kvStore *kv = NULL;
	struct shipc *h = NULL;
	if (w->via_shipd)
		h = ship_connect("bench-kv");
	else
		kv = direct_kv(nc = nats_connect_opts(true), &js);
	for (unsigned i = 0; i < w->ops; i++) {
		uint64_t t0 = now_ns();
		uint64_t rev = 0;
		int ok;
		if (h)
			ok = shipc_kv_put(h, KV_BUCKET, key, payload, opt.size, &rev) == 0;
		else
			ok = kvStore_Put(&rev, kv, key, payload, (int)opt.size) == NATS_OK;
		uint64_t t1 = now_ns();
		if (h) {
			struct shipc_kv_entry *e = NULL;
			ok = ok && shipc_kv_get(h, KV_BUCKET, key, 0, &e) == 0;
			shipc_kv_entry_free(e);
		} else {
			kvEntry *e = NULL;
			ok = ok && kvStore_Get(&e, kv, key) == NATS_OK;
			kvEntry_Destroy(e);
		}
		uint64_t t2 = now_ns();
		if (!ok) {
			fprintf(stderr, "shipbench: kv %s failed\n",
			        h ? "through shipd" : "direct");
			exit(1);
		}
		if (w->put_ns) {
			w->put_ns[i] = t1 - t0;
			w->get_ns[i] = t2 - t1;
		}
		w->done++;
	}
	if (h)
		shipc_close(h);
	kvStore_Destroy(kv);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return NULL;
}

/* Pairs per second of k apps doing ops put+get pairs each. */
static double kv_run(bool via_shipd, unsigned k, unsigned ops, uint64_t *put,
                     uint64_t *get)
{
	struct kv_worker *w = calloc(k, sizeof(*w));
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < k; i++) {
		w[i] = (struct kv_worker){.via_shipd = via_shipd, .ops = ops,
		                          .idx = (int)i, .put_ns = put, .get_ns = get};
		pthread_create(&w[i].t, NULL, kv_work, &w[i]);
	}
	unsigned total = 0;
	for (unsigned i = 0; i < k; i++) {
		pthread_join(w[i].t, NULL);
		total += w[i].done;
	}
	double secs = (double)(now_ns() - t0) / 1e9;
	free(w);
	return total / secs;
}

static void bench_kv(void)
{
	unsigned n = opt.quick ? 200 : 2000;
	struct shipc *h = ship_connect("bench-kv-setup");
	struct shipc_kv_config cfg = {.bucket = KV_BUCKET, .history = 1};
	if (shipc_kv_bucket_create(h, &cfg, NULL) < 0) {
		fprintf(stderr, "shipbench: kv: cannot create the bucket: %s\n",
		        strerror(errno));
		exit(1);
	}
	shipc_close(h);
	uint64_t *dp = calloc(n, sizeof(*dp)), *dg = calloc(n, sizeof(*dg));
	uint64_t *sp = calloc(n, sizeof(*sp)), *sg = calloc(n, sizeof(*sg));
	kv_run(false, 1, n, dp, dg);
	struct usage u = {0};
	usage_begin(&u);
	kv_run(true, 1, n, sp, sg);
	usage_end(&u);
	qsort(dp, n, sizeof(*dp), cmp_u64);
	qsort(dg, n, sizeof(*dg), cmp_u64);
	qsort(sp, n, sizeof(*sp), cmp_u64);
	qsort(sg, n, sizeof(*sg), cmp_u64);
	row("kv", "put p50 us", pct(dp, n, 0.5), pct(sp, n, 0.5), false, &u);
	row("kv", "put p99 us", pct(dp, n, 0.99), pct(sp, n, 0.99), false, NULL);
	row("kv", "get p50 us", pct(dg, n, 0.5), pct(sg, n, 0.5), false, NULL);
	row("kv", "get p99 us", pct(dg, n, 0.99), pct(sg, n, 0.99), false, NULL);
	if (!opt.json && bare_rtt_p50_us > 0)
		printf("%-8s added p50: put %.1f us, get %.1f us = %.2f / %.2f x "
		       "bare socket RTT\n",
		       "kv", pct(sp, n, 0.5) - pct(dp, n, 0.5),
		       pct(sg, n, 0.5) - pct(dg, n, 0.5),
		       (pct(sp, n, 0.5) - pct(dp, n, 0.5)) / bare_rtt_p50_us,
		       (pct(sg, n, 0.5) - pct(dg, n, 0.5)) / bare_rtt_p50_us);
	free(dp);
	free(dg);
	free(sp);
	free(sg);
	unsigned per = opt.quick ? 50 : 500;
	double d1 = kv_run(false, 1, per, NULL, NULL);
	usage_begin(&u);
	double s1 = kv_run(true, 1, per, NULL, NULL);
	usage_end(&u);
	row("kv", "1 app pairs/s", d1, s1, true, &u);
	double d16 = kv_run(false, 16, per, NULL, NULL);
	usage_begin(&u);
	double s16 = kv_run(true, 16, per, NULL, NULL);
	usage_end(&u);
	row("kv", "16 apps pairs/s", d16, s16, true, &u);
	if (!opt.json)
		printf("%-8s 16 apps / 1 app: direct %.1f x, shipd %.1f x\n", "kv",
		       d16 / d1, s16 / s1);
}

/* ---- idle: 1,000 clients holding 10,000 subscriptions ---- */

static int raw_client(unsigned subs)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", opt.socket);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	struct ipc_buf b = {0};
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Hello h = SHIP__HELLO__INIT;
	h.version = IPC_VERSION;
	h.name = "bench-idle";
	f.id = 1;
	f.body_case = SHIP__CLIENT_FRAME__BODY_HELLO;
	f.hello = &h;
	ipc_frame_pack(&b, &f.base, IPC_FRAME_LIMIT);
	for (unsigned i = 0; i < subs; i++) {
		char subj[64];
		Ship__ClientFrame sf = SHIP__CLIENT_FRAME__INIT;
		Ship__Subscribe s = SHIP__SUBSCRIBE__INIT;
		snprintf(subj, sizeof(subj), "bench.idle.%d.%u", fd, i);
		s.subject = subj;
		sf.id = 2 + i;
		sf.body_case = SHIP__CLIENT_FRAME__BODY_SUBSCRIBE;
		sf.subscribe = &s;
		ipc_frame_pack(&b, &sf.base, IPC_FRAME_LIMIT);
	}
	(void)!write(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	return fd;
}

static void bench_idle(void)
{
	if (!shipd_pid)
		return;
	unsigned nclients = opt.quick ? 100 : 1000;
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	long before = proc_status_kib(shipd_pid, "VmRSS");
	int *fds = calloc(nclients, sizeof(*fds));
	struct shipc *obs = ship_connect("bench-observer");
	unsigned opened = 0;
	for (unsigned i = 0; i < nclients; i++)
		if ((fds[i] = raw_client(10)) >= 0)
			opened++;
	/* Bounded wait until shipd holds them all. */
	struct shipc_status st = {0};
	for (int i = 0; i < 3000; i++) {
		if (shipc_status(obs, &st) == 0 &&
		    st.subscriptions >= opened * 10)
			break;
		fx_sleep_ms(10);
	}
	fx_sleep_ms(500);
	long rss = proc_status_kib(shipd_pid, "VmRSS");
	if (opt.json)
		printf(",\n{\"scenario\":\"idle\",\"clients\":%u,\"subscriptions\":%u,"
		       "\"rss_before_kib\":%ld,\"rss_kib\":%ld}",
		       st.clients - 1, st.subscriptions, before, rss);
	else
		printf("%-8s %u clients, %u subscriptions: shipd RSS %.1f MiB "
		       "(%.1f MiB before)\n",
		       "idle", st.clients - 1, st.subscriptions,
		       (double)rss / 1024.0, (double)before / 1024.0);
	for (unsigned i = 0; i < nclients; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	shipc_close(obs);
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: shipbench [--nats URL] [--socket PATH] [--size N] "
	        "[--count N]\n"
	        "                 [--clients N] [--quick] [--json] [SCENARIO...]\n"
	        "scenarios: rtt pub pubsub fanout req jspub kv idle (default: all)\n"
	        "Without --nats a temporary nats-server -js is started; without\n"
	        "--socket a shipd is started (SHIPD_BIN or the one built beside).\n");
}

static bool want(int argc, char **argv, const char *name)
{
	if (optind >= argc)
		return true;
	for (int i = optind; i < argc; i++)
		if (!strcmp(argv[i], name))
			return true;
	return false;
}

static void find_shipd(const char *argv0)
{
	if (getenv("SHIPD_BIN"))
		return;
	static char path[4096];
	char self[2048];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (!slash)
		return;
	*slash = '\0';
	snprintf(path, sizeof(path), "%s/../../daemon/shipd", self);
	setenv("SHIPD_BIN", path, 0);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"nats", required_argument, NULL, 'n'},
		{"socket", required_argument, NULL, 's'},
		{"size", required_argument, NULL, 'z'},
		{"count", required_argument, NULL, 'c'},
		{"clients", required_argument, NULL, 'k'},
		{"quick", no_argument, NULL, 'q'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			opt.nats_url = optarg;
			break;
		case 's':
			opt.socket = optarg;
			break;
		case 'z':
			opt.size = strtoul(optarg, NULL, 10);
			break;
		case 'c':
			opt.count = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'k':
			opt.clients = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'q':
			opt.quick = true;
			break;
		case 'j':
			opt.json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (opt.size == 0 || opt.size > (512u << 10) || opt.count == 0 ||
	    opt.clients == 0 || opt.clients > 256) {
		usage(stderr);
		return 2;
	}
	if (opt.quick && opt.count > 20000)
		opt.count = 20000;
	signal(SIGPIPE, SIG_IGN);
	payload = malloc(opt.size);
	memset(payload, 'p', opt.size);
	if (!opt.nats_url) {
		if (natsd_start(&nd, 0) < 0) {
			fprintf(stderr, "shipbench: cannot start nats-server\n");
			return 1;
		}
		opt.nats_url = nd.url;
	}
	if (!opt.socket) {
		find_shipd(argv[0]);
		fx_shipd_verbose = false;
		if (shipd_start(&sd, opt.nats_url, NULL) < 0) {
			fprintf(stderr, "shipbench: cannot start shipd (%s)\n",
			        getenv("SHIPD_BIN"));
			natsd_cleanup(&nd);
			return 1;
		}
		opt.socket = sd.sock;
		shipd_pid = sd.pid;
	}
	if (opt.json)
		printf("[");
	else
		printf("shipbench: %zu-byte messages, %u per run, on %ld CPUs\n"
		       "%-8s %-16s %14s %14s %8s %10s %12s\n",
		       opt.size, opt.count, sysconf(_SC_NPROCESSORS_ONLN),
		       "scenario", "metric", "direct", "shipd", "ratio",
		       "shipd cpu", "shipd peak");
	if (want(argc, argv, "rtt") || want(argc, argv, "req") ||
	    want(argc, argv, "kv"))
		bench_rtt();
	if (want(argc, argv, "pub"))
		bench_pub();
	if (want(argc, argv, "pubsub"))
		bench_fan("pubsub", 1);
	if (want(argc, argv, "fanout"))
		bench_fan("fanout", opt.clients);
	if (want(argc, argv, "req"))
		bench_req();
	if (want(argc, argv, "jspub"))
		bench_jspub();
	if (want(argc, argv, "kv"))
		bench_kv();
	if (want(argc, argv, "idle"))
		bench_idle();
	if (opt.json)
		printf("]\n");
	if (shipd_pid) {
		long idle = proc_status_kib(shipd_pid, "VmRSS");
		if (!opt.json)
			printf("shipd RSS at the end: %.1f MiB\n", (double)idle / 1024.0);
		shipd_cleanup(&sd);
	}
	if (nd.pid)
		natsd_cleanup(&nd);
	free(payload);
	return 0;
}
