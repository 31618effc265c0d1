/* SPDX-License-Identifier: MIT */
/* shipbench: the same workloads directly on nats.c and through shipd +
 * libshipc, in one run, with their ratio and shipd's CPU and memory. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
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
	unsigned obj_mib; /* 0: 256, or 4 with --quick */
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

/* ---- obj: one large object stored and fetched, 128 KiB chunk by chunk ----
 *
 * Direct is what nats.go does with nats.c: chunks published async to
 * $O.<b>.C.<nuid> with OBJ_WINDOW acks outstanding (shipd's own window),
 * then the meta with Nats-Rollup: sub; a get reads the meta by direct get,
 * then the chunks through an ordered consumer ("get MB/s") or by direct
 * gets one after the other, the way shipd fetches them ("get MB/s dget").
 * Both sides hash what they move and check size and digest. */

#define OBJ_BUCKET "shipbench"
#define OBJ_CHUNK (128 * 1024)
#define OBJ_WINDOW 8
#define OBJ_WAIT_MS 10000
#define OBJ_MIB_MAX 4096

struct obj_run {
	bool ok;
	bool told; /* why went to stderr already */
	double mbps;
	char why[256];
};

static unsigned bench_failures;

static void obj_fail(struct obj_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Only the first reason is kept; quotes and backslashes are replaced so
 * that it goes into the JSON output as it is. */
static void obj_fail(struct obj_run *r, const char *fmt, ...)
{
	if (!r->ok && r->why[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
	for (char *p = r->why; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = '\'';
	r->ok = false;
}

static void obj_done(struct obj_run *r, uint64_t bytes, uint64_t t0)
{
	double s = (double)(now_ns() - t0) / 1e9;
	r->mbps = s > 0 ? (double)bytes / 1e6 / s : 0;
}

static const char *nats_why(natsStatus s)
{
	const char *text = nats_GetLastError(NULL);
	return text && *text ? text : natsStatus_GetText(s);
}

static void sha_string(struct ipc_sha256 *sha, char *out, size_t size)
{
	uint8_t d[IPC_SHA256_LEN];
	char enc[48];
	ipc_sha256_final(sha, d);
	ipc_base64url(d, sizeof(d), enc, sizeof(enc));
	snprintf(out, size, "SHA-256=%s", enc);
}

static bool meta_subject_of(const char *name, char *out, size_t size)
{
	char enc[256];
	if (!ipc_base64url(name, strlen(name), enc, sizeof(enc)))
		return false;
	snprintf(out, size, "$O.%s.M.%s", OBJ_BUCKET, enc);
	return true;
}

/* The value of "key" in a flat JSON object: a string (without escapes,
 * which the metas read here never need) or an unsigned number. */
static bool json_get(const char *j, const char *key, char *out, size_t size)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(j, pat);
	if (!p)
		return false;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	size_t n;
	if (*p == '"') {
		p++;
		n = strcspn(p, "\"\\");
		if (p[n] != '"')
			return false;
	} else {
		n = strspn(p, "0123456789");
	}
	if (n == 0 || n >= size)
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

struct obj_acks {
	atomic_uint failed;
	atomic_int first_err; /* jsErrCode, or natsStatus when 0 */
};

static void obj_js_err(jsCtx *js, jsPubAckErr *pae, void *arg)
{
	struct obj_acks *a = arg;
	int expected = 0;
	atomic_fetch_add(&a->failed, 1);
	atomic_compare_exchange_strong(
	    &a->first_err, &expected,
	    pae->ErrCode ? (int)pae->ErrCode : -(int)pae->Err);
}

static jsCtx *obj_js(natsConnection *nc, struct obj_acks *a)
{
	jsCtx *js = NULL;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = OBJ_WAIT_MS;
	jo.PublishAsync.MaxPending = OBJ_WINDOW;
	jo.PublishAsync.StallWait = OBJ_WAIT_MS; /* wait for room, not fail */
	jo.PublishAsync.ErrHandler = obj_js_err;
	jo.PublishAsync.ErrHandlerClosure = a;
	if (natsConnection_JetStream(&js, nc, &jo) != NATS_OK) {
		fprintf(stderr, "shipbench: obj: no JetStream context\n");
		exit(1);
	}
	return js;
}

static void obj_put_direct(const char *name, const uint8_t *data, size_t len,
                           struct obj_run *r)
{
	natsConnection *nc = nats_connect();
	struct obj_acks acks = {0};
	jsCtx *js = obj_js(nc, &acks);
	char subj[128], meta_subj[300], digest[64], *meta = NULL;
	natsInbox *inbox = NULL;
	natsMsg *m = NULL;
	natsStatus s;
	jsPubOptions po;
	jsPubOptions_Init(&po);
	po.MaxWait = OBJ_WAIT_MS;
	uint32_t chunks = 0;
	struct ipc_sha256 sha;
	meta_subject_of(name, meta_subj, sizeof(meta_subj));
	/* "_INBOX.<nuid>": nats.c 3.4.1 has no public NUID call. */
	if (natsInbox_Create(&inbox) != NATS_OK)
		exit(1);
	const char *nuid = strchr(inbox, '.') + 1;
	uint64_t t0 = now_ns();
	snprintf(subj, sizeof(subj), "$O.%s.C.%s", OBJ_BUCKET, nuid);
	ipc_sha256_init(&sha);
	for (size_t off = 0; off < len; off += OBJ_CHUNK, chunks++) {
		size_t n = len - off < OBJ_CHUNK ? len - off : OBJ_CHUNK;
		ipc_sha256_update(&sha, data + off, n);
		if ((s = js_PublishAsync(js, subj, data + off, (int)n, &po)) !=
		    NATS_OK) {
			obj_fail(r, "direct put: chunk %u: %s", chunks, nats_why(s));
			goto out;
		}
	}
	sha_string(&sha, digest, sizeof(digest));
	if (asprintf(&meta,
	             "{\"name\":\"%s\",\"bucket\":\"%s\",\"nuid\":\"%s\","
	             "\"size\":%zu,\"mtime\":\"0001-01-01T00:00:00Z\","
	             "\"chunks\":%u,\"digest\":\"%s\",\"options\":"
	             "{\"max_chunk_size\":%d}}",
	             name, OBJ_BUCKET, nuid, len, chunks, digest, OBJ_CHUNK) < 0)
		exit(1);
	natsMsg_Create(&m, meta_subj, NULL, meta, (int)strlen(meta));
	natsMsgHeader_Set(m, "Nats-Rollup", "sub");
	if ((s = js_PublishMsgAsync(js, &m, &po)) != NATS_OK) {
		obj_fail(r, "direct put: meta: %s", nats_why(s));
		goto out;
	}
	po.MaxWait = 60000;
	if ((s = js_PublishAsyncComplete(js, &po)) != NATS_OK)
		obj_fail(r, "direct put: acks: %s", nats_why(s));
	else if (atomic_load(&acks.failed))
		obj_fail(r, "direct put: %u publishes failed (first error %d)",
		         atomic_load(&acks.failed), atomic_load(&acks.first_err));
	else
		obj_done(r, len, t0);
out:
	if (!r->ok) {
		/* What nats.go does too: no chunks without a meta left behind. */
		jsOptions o;
		jsOptions_Init(&o);
		o.Stream.Purge.Subject = subj;
		js_PurgeStream(js, "OBJ_" OBJ_BUCKET, &o, NULL);
	}
	natsMsg_Destroy(m);
	free(meta);
	natsInbox_Destroy(inbox);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}

/* The chunks of subj through an ordered consumer, as nats.go reads. */
static void chunks_ordered(jsCtx *js, const char *subj, uint32_t chunks,
                           struct ipc_sha256 *sha, uint64_t *got,
                           struct obj_run *r)
{
	natsSubscription *sub = NULL;
	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = "OBJ_" OBJ_BUCKET;
	so.Ordered = true;
	jsErrCode jerr = 0;
	natsStatus s = js_SubscribeSync(&sub, js, subj, NULL, &so, &jerr);
	if (s != NATS_OK) {
		obj_fail(r, "direct get: ordered consumer: %s (%d)", nats_why(s),
		         (int)jerr);
		return;
	}
	for (uint32_t i = 0; i < chunks; i++) {
		natsMsg *m = NULL;
		if ((s = natsSubscription_NextMsg(&m, sub, OBJ_WAIT_MS)) !=
		    NATS_OK) {
			obj_fail(r, "direct get: chunk %u of %u: %s", i, chunks,
			         nats_why(s));
			break;
		}
		ipc_sha256_update(sha, natsMsg_GetData(m),
		                  (size_t)natsMsg_GetDataLength(m));
		*got += (uint64_t)natsMsg_GetDataLength(m);
		natsMsg_Destroy(m);
	}
	natsSubscription_Unsubscribe(sub);
	natsSubscription_Destroy(sub);
}

/* The chunks of subj by direct gets, one after the other, as shipd does. */
static void chunks_dget(jsCtx *js, const char *subj, uint32_t chunks,
                        struct ipc_sha256 *sha, uint64_t *got,
                        struct obj_run *r)
{
	uint64_t seq = 1;
	for (uint32_t i = 0; i < chunks; i++) {
		natsMsg *m = NULL;
		const char *sseq = NULL;
		jsDirectGetMsgOptions dg;
		jsDirectGetMsgOptions_Init(&dg);
		dg.Sequence = seq;
		dg.NextBySubject = subj;
		natsStatus s = js_DirectGetMsg(&m, js, "OBJ_" OBJ_BUCKET, NULL, &dg);
		if (s != NATS_OK ||
		    natsMsgHeader_Get(m, "Nats-Sequence", &sseq) != NATS_OK) {
			obj_fail(r, "direct get: chunk %u of %u: %s", i, chunks,
			         s != NATS_OK ? nats_why(s) : "no Nats-Sequence");
			natsMsg_Destroy(m);
			return;
		}
		seq = strtoull(sseq, NULL, 10) + 1;
		ipc_sha256_update(sha, natsMsg_GetData(m),
		                  (size_t)natsMsg_GetDataLength(m));
		*got += (uint64_t)natsMsg_GetDataLength(m);
		natsMsg_Destroy(m);
	}
}

static void obj_get_direct(const char *name, bool by_dget, size_t want_len,
                           const char *want_digest, struct obj_run *r)
{
	natsConnection *nc = nats_connect();
	struct obj_acks acks = {0};
	jsCtx *js = obj_js(nc, &acks);
	char meta_subj[300], json[4096], nuid[64], size[32], chunks[32];
	char digest[64], got_digest[64], subj[128];
	natsMsg *m = NULL;
	jsDirectGetMsgOptions dg;
	jsDirectGetMsgOptions_Init(&dg);
	meta_subject_of(name, meta_subj, sizeof(meta_subj));
	dg.LastBySubject = meta_subj;
	uint64_t t0 = now_ns();
	natsStatus s = js_DirectGetMsg(&m, js, "OBJ_" OBJ_BUCKET, NULL, &dg);
	if (s != NATS_OK) {
		obj_fail(r, "direct get: meta: %s", nats_why(s));
		goto out;
	}
	snprintf(json, sizeof(json), "%.*s", natsMsg_GetDataLength(m),
	         natsMsg_GetData(m));
	if (!json_get(json, "nuid", nuid, sizeof(nuid)) ||
	    !json_get(json, "size", size, sizeof(size)) ||
	    !json_get(json, "chunks", chunks, sizeof(chunks)) ||
	    !json_get(json, "digest", digest, sizeof(digest))) {
		obj_fail(r, "direct get: meta without nuid, size, chunks or "
		            "digest");
		goto out;
	}
	snprintf(subj, sizeof(subj), "$O.%s.C.%s", OBJ_BUCKET, nuid);
	struct ipc_sha256 sha;
	ipc_sha256_init(&sha);
	uint64_t got = 0;
	uint32_t n = (uint32_t)strtoul(chunks, NULL, 10);
	if (by_dget)
		chunks_dget(js, subj, n, &sha, &got, r);
	else
		chunks_ordered(js, subj, n, &sha, &got, r);
	if (!r->ok)
		goto out;
	sha_string(&sha, got_digest, sizeof(got_digest));
	if (got != strtoull(size, NULL, 10) || got != want_len)
		obj_fail(r, "direct get: %" PRIu64 " bytes, the meta says %s, "
		            "%zu were put", got, size, want_len);
	else if (strcmp(got_digest, digest) || strcmp(digest, want_digest))
		obj_fail(r, "direct get: digest %s, the meta says %s", got_digest,
		         digest);
	else
		obj_done(r, got, t0);
out:
	natsMsg_Destroy(m);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}

static void obj_check_info(size_t len, const char *digest,
                           const struct shipc_obj_info *info, const char *what,
                           struct obj_run *r)
{
	if (!info)
		obj_fail(r, "%s: no object info", what);
	else if (info->size != len)
		obj_fail(r, "%s: %" PRIu64 " bytes stored of %zu", what, info->size,
		         len);
	else if (strcmp(info->digest, digest))
		obj_fail(r, "%s: digest %s, expected %s", what, info->digest,
		         digest);
}

static void obj_put_shipd(struct shipc *h, const char *name,
                          const uint8_t *data, size_t len, const char *digest,
                          struct obj_run *r, struct usage *u)
{
	struct shipc_obj_info *info = NULL;
	char err[256];
	usage_begin(u);
	uint64_t t0 = now_ns();
	if (shipc_obj_put_mem(h, OBJ_BUCKET, name, data, len, NULL, &info) < 0)
		obj_fail(r, "shipd put: %s", shipc_last_error(h, err, sizeof(err)));
	else
		obj_done(r, len, t0);
	usage_end(u);
	if (r->ok)
		obj_check_info(len, digest, info, "shipd put", r);
	shipc_obj_info_free(info);
}

static void count_progress(uint64_t done, uint64_t total, void *arg)
{
	*(uint64_t *)arg = done;
}

/* To /dev/null: libshipc checks the size and digest itself (EBADMSG). */
static void obj_get_shipd(struct shipc *h, const char *name, size_t len,
                          const char *digest, struct obj_run *r,
                          struct usage *u)
{
	struct shipc_obj_info *info = NULL;
	uint64_t got = 0;
	struct shipc_obj_get_opts go = {.progress = count_progress,
	                                .progress_arg = &got};
	char err[256];
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	usage_begin(u);
	uint64_t t0 = now_ns();
	if (shipc_obj_get_fd(h, OBJ_BUCKET, name, fd, &go, &info) < 0)
		obj_fail(r, "shipd get: %s (%s)", strerror(errno),
		         shipc_last_error(h, err, sizeof(err)));
	else
		obj_done(r, got, t0);
	usage_end(u);
	close(fd);
	if (r->ok && got != len)
		obj_fail(r, "shipd get: %" PRIu64 " bytes of %zu", got, len);
	if (r->ok)
		obj_check_info(len, digest, info, "shipd get", r);
	shipc_obj_info_free(info);
}

static void obj_tell(struct obj_run *r)
{
	if (!r->ok && !r->told)
		fprintf(stderr, "shipbench: obj: %s\n", r->why);
	r->told = true;
}

/* A failed transfer is a failure, not a rate: no ratio, and the run
 * exits non-zero. */
static void obj_row(const char *metric, struct obj_run *d, struct obj_run *s,
                    const struct usage *u)
{
	if (d->ok && s->ok) {
		row("obj", metric, d->mbps, s->mbps, true, u);
		return;
	}
	bench_failures++;
	if (opt.json) {
		printf("%s{\"scenario\":\"obj\",\"metric\":\"%s\",\"failed\":true",
		       first_row ? "" : ",\n", metric);
		if (d->ok)
			printf(",\"direct\":%.3f", d->mbps);
		else
			printf(",\"direct_error\":\"%s\"", d->why);
		if (s->ok)
			printf(",\"shipd\":%.3f}", s->mbps);
		else
			printf(",\"shipd_error\":\"%s\"}", s->why);
	} else {
		char dv[32] = "FAILED", sv[32] = "FAILED";
		if (d->ok)
			snprintf(dv, sizeof(dv), "%.1f", d->mbps);
		if (s->ok)
			snprintf(sv, sizeof(sv), "%.1f", s->mbps);
		printf("%-8s %-16s %14s %14s %8s\n", "obj", metric, dv, sv, "-");
	}
	first_row = false;
	fflush(stdout);
	obj_tell(d);
	obj_tell(s);
}

/* Bytes that no compression or deduplication would help with. */
static uint8_t *obj_data(size_t len, char *digest, size_t size)
{
	uint8_t *p = malloc(len);
	uint64_t x = 0x9E3779B97F4A7C15u;
	struct ipc_sha256 sha;
	if (!p) {
		fprintf(stderr, "shipbench: obj: no memory for %zu bytes\n", len);
		exit(1);
	}
	for (size_t i = 0; i < len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, len - i < 8 ? len - i : 8);
	}
	ipc_sha256_init(&sha);
	ipc_sha256_update(&sha, p, len);
	sha_string(&sha, digest, size);
	return p;
}

static void bench_obj(void)
{
	unsigned mib = opt.obj_mib ? opt.obj_mib : opt.quick ? 4 : 256;
	size_t len = (size_t)mib << 20;
	char digest[64];
	uint8_t *data = obj_data(len, digest, sizeof(digest));
	struct shipc *h = ship_connect("bench-obj");
	struct shipc_obj_bucket_config cfg = {.bucket = OBJ_BUCKET};
	char err[256];
	if (shipc_obj_bucket_create(h, &cfg, NULL) < 0) {
		fprintf(stderr, "shipbench: obj: cannot create the bucket: %s\n",
		        shipc_last_error(h, err, sizeof(err)));
		exit(1);
	}
	long before = shipd_pid ? proc_status_kib(shipd_pid, "VmRSS") : 0;
	struct obj_run dput = {.ok = true}, sput = {.ok = true};
	struct obj_run dget = {.ok = true}, dgget = {.ok = true};
	struct obj_run sget = {.ok = true};
	struct usage uput = {0}, uget = {0};

	obj_put_direct("direct", data, len, &dput);
	if (dput.ok) {
		/* A real object: shipd, as any Object Store reader, sees it. */
		struct shipc_obj_info *info = NULL;
		if (shipc_obj_info(h, OBJ_BUCKET, "direct", 0, &info) < 0)
			obj_fail(&dput, "direct put: shipd does not see it: %s",
			         shipc_last_error(h, err, sizeof(err)));
		else
			obj_check_info(len, digest, info, "direct put", &dput);
		shipc_obj_info_free(info);
	}
	obj_put_shipd(h, "shipd", data, len, digest, &sput, &uput);
	free(data);
	if (dput.ok) {
		obj_get_direct("direct", false, len, digest, &dget);
		obj_get_direct("direct", true, len, digest, &dgget);
	} else {
		obj_fail(&dget, "direct get: nothing was put");
		obj_fail(&dgget, "direct get: nothing was put");
	}
	if (sput.ok)
		obj_get_shipd(h, "shipd", len, digest, &sget, &uget);
	else
		obj_fail(&sget, "shipd get: nothing was put");

	obj_row("put MB/s", &dput, &sput, &uput);
	obj_row("get MB/s", &dget, &sget, &uget);
	obj_row("get MB/s dget", &dgget, &sget, NULL);
	if (opt.json)
		printf(",\n{\"scenario\":\"obj\",\"object_mib\":%u,\"chunk_kib\":%d,"
		       "\"rss_before_kib\":%ld,\"put_peak_rss_kib\":%ld,"
		       "\"get_peak_rss_kib\":%ld}",
		       mib, OBJ_CHUNK / 1024, before, uput.peak_kib, uget.peak_kib);
	else if (shipd_pid)
		printf("%-8s %u MiB object: shipd peak RSS %.1f MiB on put, %.1f "
		       "MiB on get (%.1f MiB before)\n",
		       "obj", mib, (double)uput.peak_kib / 1024.0,
		       (double)uget.peak_kib / 1024.0, (double)before / 1024.0);
	/* Leave no chunks behind on a server we were pointed at. */
	shipc_obj_delete(h, OBJ_BUCKET, "direct");
	shipc_obj_delete(h, OBJ_BUCKET, "shipd");
	shipc_close(h);
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: shipbench [--nats URL] [--socket PATH] [--size N] "
	        "[--count N]\n"
	        "                 [--clients N] [--obj-mib N] [--quick] [--json]\n"
	        "                 [SCENARIO...]\n"
	        "scenarios: rtt pub pubsub fanout req jspub kv obj idle "
	        "(default: all)\n"
	        "obj puts and gets one object of --obj-mib MiB (256; 4 with "
	        "--quick).\n"
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
		{"obj-mib", required_argument, NULL, 'o'},
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
		case 'o':
			opt.obj_mib = (unsigned)strtoul(optarg, NULL, 10);
			if (opt.obj_mib == 0 || opt.obj_mib > OBJ_MIB_MAX) {
				fprintf(stderr, "shipbench: --obj-mib: 1 to %d\n",
				        OBJ_MIB_MAX);
				return 2;
			}
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
	if (want(argc, argv, "obj"))
		bench_obj();
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
	return bench_failures ? 1 : 0;
}
