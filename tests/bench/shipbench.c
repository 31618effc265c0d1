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
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "fixture.h"
#include "ipc.h"
#include "shipc.h"

#define SHIPD_OPTS_MAX 8

static struct {
	const char *nats_url;
	const char *socket;
	size_t size;
	unsigned count;
	unsigned clients;
	unsigned obj_mib; /* 0: 256, or 4 with --quick */
	unsigned jobs;    /* 0: 2000, or 200 with --quick */
	unsigned fleet;   /* events per robot; 0: 20000, or 2000 with --quick */
	unsigned rounds;  /* of each scenario, direct and shipd in turn */
	const char *shipd_args[2 * SHIPD_OPTS_MAX + 1]; /* -o K=V ... */
	unsigned shipd_opts;
	bool allow_loss;  /* core NATS drops shipd owns up to pass */
	bool json;
	bool quick;
} opt = {.size = 128, .count = 200000, .clients = 4, .rounds = 3};

static struct natsd nd;
static struct shipdp sd;
static pid_t shipd_pid; /* 0 when pointed at a shipd we did not start */
static char *payload;
static bool first_row = true;
static unsigned bench_failures; /* scenarios that failed: exit 1 */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Time since t, 0 if t is later (another thread's "now" taken after ours). */
static uint64_t ns_since(uint64_t t)
{
	uint64_t now = now_ns();
	return now > t ? now - t : 0;
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

/* Of a shipd (none when pid is 0). */
static void usage_begin_at(struct usage *u, pid_t pid)
{
	if (!pid)
		return;
	/* Writing 5 to clear_refs resets the peak RSS (VmHWM). */
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)pid);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs("5", f);
		fclose(f);
	}
	u->cpu_s = proc_cpu_s(pid);
}

static void usage_end_at(struct usage *u, pid_t pid)
{
	if (!pid)
		return;
	u->cpu_s = proc_cpu_s(pid) - u->cpu_s;
	u->peak_kib = proc_status_kib(pid, "VmHWM");
}

static void usage_begin(struct usage *u)
{
	usage_begin_at(u, shipd_pid);
}

static void usage_end(struct usage *u)
{
	usage_end_at(u, shipd_pid);
}

/* ---- output ---- */

/* Quotes, backslashes and control characters replaced, so that why goes
 * into the JSON output as it is. */
static void json_safe(char *why)
{
	for (char *p = why; *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = '\'';
}

/* ---- rounds: each side of a scenario several times, interleaved ----
 *
 * A scenario has sides: sides[0] is direct nats.c, the others go through
 * shipd (on one end, or on both). Each round runs every side once, in
 * turn (the order reversed every other round, so that neither side always
 * runs on a machine the other just warmed or loaded). Each run is a
 * sample: its figures, what it sent, what arrived and what shipd said it
 * dropped, and shipd's CPU over it. A row gives each side's median and
 * spread over its rounds, the ratio of the medians and shipd's CPU per
 * operation; a side that lost anything has no figure, its loss instead. */

#define ROUNDS_MAX 25
#define METRICS_MAX 4
#define SIDES_MAX 3

struct metric {
	const char *name;
	bool higher_better;
};

struct sample {
	bool failed;
	char why[256];
	double v[METRICS_MAX]; /* in the order of the scenario's metrics */
	uint64_t sent;         /* messages, requests, jobs ... */
	uint64_t delivered;    /* of those, what arrived (or was acknowledged) */
	uint64_t dropped;      /* of the rest, what shipd (or nats.c) said */
	uint64_t ops;          /* operations of shipd, for its CPU per op */
	struct usage u;        /* shipd's; peak_kib < 0: none taken */
	pid_t extra_pid;       /* a second shipd whose CPU counts too */
	double extra_cpu_s;
};

struct side {
	const char *name;
	void (*run)(void *ctx, struct sample *s);
};

struct scenario {
	const char *name;
	const struct metric *metrics; /* ends at a NULL name */
	const struct side *sides;     /* ends at a NULL name */
	bool best_effort; /* core NATS: may drop, if it says so (--allow-loss) */
	void *ctx;
	/* Filled by run_scenario(): each side's medians, if it has figures. */
	bool good[SIDES_MAX];
	double med[SIDES_MAX][METRICS_MAX];
};

static void sample_fail(struct sample *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A run failed: the first reason is kept, json_safe. */
static void fail_once(bool *failed, char *why, size_t size, const char *fmt,
                      va_list ap)
{
	if (*failed)
		return;
	vsnprintf(why, size, fmt, ap);
	json_safe(why);
	*failed = true;
}

static void sample_fail(struct sample *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_once(&s->failed, s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
}

/* shipd's CPU and peak over a sample (and a second shipd's CPU). */
static void sample_begin(struct sample *s)
{
	usage_begin(&s->u);
	if (s->extra_pid)
		s->extra_cpu_s = proc_cpu_s(s->extra_pid);
}

static void sample_end(struct sample *s)
{
	usage_end(&s->u);
	if (s->extra_pid)
		s->u.cpu_s += proc_cpu_s(s->extra_pid) - s->extra_cpu_s;
}

/* A part measured on its own (sample_begin/end) into s. */
static void sample_add(struct sample *s, const struct sample *part)
{
	s->u.cpu_s += part->u.cpu_s;
	if (part->u.peak_kib > s->u.peak_kib)
		s->u.peak_kib = part->u.peak_kib;
}

/* A side over its rounds. */
struct tally {
	unsigned rounds, failed;
	const char *why;
	uint64_t sent, delivered, dropped, lost, unaccounted;
	double cpu_us_op; /* all rounds' CPU over their operations; < 0: none */
	long peak_kib;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median_of(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void tally_side(struct tally *t, struct sample *s, unsigned rounds)
{
	double cpu_s = 0;
	uint64_t ops = 0;
	*t = (struct tally){.rounds = rounds, .cpu_us_op = -1};
	for (unsigned r = 0; r < rounds; r++) {
		if (s[r].failed && !t->failed++)
			t->why = s[r].why;
		t->sent += s[r].sent;
		t->delivered += s[r].delivered;
		t->dropped += s[r].dropped;
		if (s[r].delivered < s[r].sent) {
			uint64_t lost = s[r].sent - s[r].delivered;
			t->lost += lost;
			if (lost > s[r].dropped)
				t->unaccounted += lost - s[r].dropped;
		}
		/* Summed: /proc counts CPU in ticks of 10 ms, coarse for a
		 * short round. */
		if (s[r].ops && s[r].u.peak_kib >= 0) {
			cpu_s += s[r].u.cpu_s;
			ops += s[r].ops;
		}
		if (s[r].u.peak_kib > t->peak_kib)
			t->peak_kib = s[r].u.peak_kib;
	}
	if (ops)
		t->cpu_us_op = cpu_s * 1e6 / (double)ops;
}

/* Median, least and most of metric m over the rounds that did not fail. */
static unsigned figures(struct sample *s, unsigned rounds, int m,
                        double *med, double *lo, double *hi)
{
	double v[ROUNDS_MAX];
	unsigned n = 0;
	for (unsigned r = 0; r < rounds; r++)
		if (!s[r].failed)
			v[n++] = s[r].v[m];
	*med = *lo = *hi = 0;
	if (!n)
		return 0;
	*med = median_of(v, n);
	*lo = v[0];
	*hi = v[n - 1];
	return n;
}

static bool tally_fails(const struct scenario *sc, const struct tally *t)
{
	return t->failed || t->unaccounted ||
	       (t->lost && !(sc->best_effort && opt.allow_loss));
}

/* The verdict of a side: "" if good, else why it has no figure: its
 * loss first, then a failure. Loss fails the run, but a best-effort
 * scenario's loss, all of it told by shipd, does not with --allow-loss. */
static const char *verdict(const struct scenario *sc, const struct tally *t,
                           char *buf, size_t size)
{
	int n = 0;
	buf[0] = '\0';
	if (t->lost)
		n = snprintf(buf, size,
		             "LOSSY: %" PRIu64 " of %" PRIu64 " lost (%.2f %%), "
		             "%" PRIu64 " of them told as dropped or failed, rate "
		             "not reported%s",
		             t->lost, t->sent,
		             100.0 * (double)t->lost / (double)(t->sent ? t->sent : 1),
		             t->lost - t->unaccounted,
		             tally_fails(sc, t) ? "" : " (--allow-loss)");
	if (t->failed && n >= 0 && (size_t)n < size)
		snprintf(buf + n, size - (size_t)n,
		         "%sFAILED in %u of %u rounds: %s", n ? "; " : "",
		         t->failed, t->rounds, t->why);
	return buf;
}

static void print_value(char *out, size_t size, bool good, unsigned n,
                        double med, double lo, double hi, const char *bad)
{
	if (!good || !n) {
		snprintf(out, size, "%s", bad);
		return;
	}
	double spread = med > 0 ? 50.0 * (hi - lo) / med : 0;
	snprintf(out, size, "%.1f \xc2\xb1%.0f%%", med, spread);
}

static void json_side(const char *key, struct sample *s, unsigned rounds,
                      const struct tally *t, int m, bool good,
                      const char *why)
{
	double med, lo, hi;
	unsigned n = figures(s, rounds, m, &med, &lo, &hi);
	if (good && n)
		printf(",\"%s\":%.3f,\"%s_min\":%.3f,\"%s_max\":%.3f", key, med, key,
		       lo, key, hi);
	else
		printf(",\"%s_error\":\"%s\"", key, why);
	printf(",\"%s_rounds\":[", key);
	for (unsigned r = 0; r < rounds; r++)
		if (s[r].failed)
			printf("%snull", r ? "," : "");
		else
			printf("%s%.3f", r ? "," : "", s[r].v[m]);
	printf("],\"%s_sent\":%" PRIu64 ",\"%s_delivered\":%" PRIu64
	       ",\"%s_dropped\":%" PRIu64 ",\"%s_lost\":%" PRIu64,
	       key, t->sent, key, t->delivered, key, t->dropped, key, t->lost);
}

/* One row: direct (side 0) against side k, for metric m. */
static void report_row(const struct scenario *sc, struct sample **s,
                       unsigned rounds, int k, int m,
                       const struct tally *td, const struct tally *ts)
{
	char dv[64], sv[64], dwhy[512], swhy[512];
	const char *dver = verdict(sc, td, dwhy, sizeof(dwhy));
	const char *sver = verdict(sc, ts, swhy, sizeof(swhy));
	double dmed, dlo, dhi, smed, slo, shi;
	unsigned dn = figures(s[0], rounds, m, &dmed, &dlo, &dhi);
	unsigned sn = figures(s[k], rounds, m, &smed, &slo, &shi);
	bool good = !*dver && !*sver && dn && sn;
	double ratio = good && dmed > 0 ? smed / dmed : 0;
	const struct metric *mt = &sc->metrics[m];
	if (opt.json) {
		printf("%s{\"scenario\":\"%s\",\"side\":\"%s\",\"metric\":\"%s\","
		       "\"higher_is_better\":%s,\"rounds\":%u",
		       first_row ? "" : ",\n", sc->name, sc->sides[k].name,
		       mt->name, mt->higher_better ? "true" : "false", rounds);
		json_side("direct", s[0], rounds, td, m, !*dver, dver);
		json_side("shipd", s[k], rounds, ts, m, !*sver, sver);
		if (good)
			printf(",\"ratio\":%.3f", ratio);
		if (td->lost || ts->lost)
			printf(",\"lossy\":true");
		if (tally_fails(sc, td) || tally_fails(sc, ts))
			printf(",\"failed\":true");
		if (ts->cpu_us_op >= 0)
			printf(",\"shipd_cpu_us_per_op\":%.3f,\"shipd_peak_rss_kib\":"
			       "%ld",
			       ts->cpu_us_op, ts->peak_kib);
		printf("}");
	} else {
		print_value(dv, sizeof(dv), !*dver, dn, dmed, dlo, dhi,
		            td->failed ? "FAILED" : "LOSSY");
		print_value(sv, sizeof(sv), !*sver, sn, smed, slo, shi,
		            ts->failed ? "FAILED" : "LOSSY");
		printf("%-8s %-12s %-16s %18s %18s", sc->name, sc->sides[k].name,
		       mt->name, dv, sv);
		if (good)
			printf(" %6.3f", ratio);
		else
			printf(" %6s", "-");
		if (ts->cpu_us_op >= 0)
			printf(" %9.2f %7.1f", ts->cpu_us_op,
			       (double)ts->peak_kib / 1024.0);
		if (!good)
			printf("   %s", *sver ? sver : dver);
		printf("\n");
	}
	first_row = false;
	fflush(stdout);
}

/* What a side moved over all rounds, with its verdict: one line. */
static void report_tally(const struct scenario *sc, int k,
                         const struct tally *t, const struct sample *s)
{
	char why[512];
	const char *v = verdict(sc, t, why, sizeof(why));
	if (opt.json) {
		printf(",\n{\"scenario\":\"%s\",\"side\":\"%s\",\"tally\":true,"
		       "\"rounds\":%u,\"failed_rounds\":%u,\"sent\":%" PRIu64
		       ",\"delivered\":%" PRIu64 ",\"dropped\":%" PRIu64
		       ",\"lost\":%" PRIu64 ",\"unaccounted\":%" PRIu64
		       ",\"verdict\":\"%s\"",
		       sc->name, sc->sides[k].name, t->rounds, t->failed, t->sent,
		       t->delivered, t->dropped, t->lost, t->unaccounted,
		       *v ? v : "ok");
		if (k && t->cpu_us_op >= 0)
			printf(",\"shipd_cpu_us_per_op\":%.3f", t->cpu_us_op);
		printf("}");
		return;
	}
	printf("%-8s %-12s %u rounds: sent %" PRIu64 ", delivered %" PRIu64
	       ", dropped %" PRIu64 ", lost %" PRIu64 "%s%s",
	       sc->name, sc->sides[k].name, t->rounds, t->sent, t->delivered,
	       t->dropped, t->lost, *v ? ": " : ": ok", v);
	for (unsigned r = 0; t->lost && r < t->rounds; r++)
		printf("%s%.2f %%", r ? ", " : " (lost per round: ",
		       s[r].sent ? 100.0 * (double)(s[r].sent - s[r].delivered) /
		                       (double)s[r].sent
		                 : 0.0);
	printf("%s\n", t->lost ? ")" : "");
}

static void run_scenario(struct scenario *sc)
{
	int nsides = 0, nm = 0;
	while (sc->sides[nsides].name)
		nsides++;
	while (sc->metrics[nm].name)
		nm++;
	unsigned rounds = opt.rounds;
	struct sample *s[SIDES_MAX];
	struct tally t[SIDES_MAX];
	for (int k = 0; k < nsides; k++)
		s[k] = calloc(rounds, sizeof(*s[k]));
	for (unsigned r = 0; r < rounds; r++)
		for (int j = 0; j < nsides; j++) {
			int k = r % 2 ? nsides - 1 - j : j;
			s[k][r].u.peak_kib = -1;
			sc->sides[k].run(sc->ctx, &s[k][r]);
			if (!opt.json && s[k][r].failed)
				fprintf(stderr, "shipbench: %s: %s, round %u: %s\n",
				        sc->name, sc->sides[k].name, r + 1, s[k][r].why);
		}
	bool fails = false;
	for (int k = 0; k < nsides; k++) {
		tally_side(&t[k], s[k], rounds);
		fails = fails || tally_fails(sc, &t[k]);
	}
	if (fails)
		bench_failures++;
	for (int k = 0; k < nsides; k++) {
		char why[512];
		sc->good[k] = !*verdict(sc, &t[k], why, sizeof(why));
		for (int m = 0; m < nm; m++) {
			double lo, hi;
			sc->good[k] = figures(s[k], rounds, m, &sc->med[k][m], &lo,
			                      &hi) &&
			              sc->good[k];
		}
	}
	for (int k = 1; k < nsides; k++)
		for (int m = 0; m < nm; m++)
			report_row(sc, s, rounds, k, m, &t[0], &t[k]);
	for (int k = 0; k < nsides; k++)
		report_tally(sc, k, &t[k], s[k]);
	for (int k = 0; k < nsides; k++)
		free(s[k]);
}

/* asap: write each message at once, the best nats.c does for latency;
 * otherwise its flusher thread batches, the best for throughput. */
static natsConnection *nats_connect_url(const char *url, bool asap)
{
	natsConnection *nc = NULL;
	natsOptions *o = NULL;
	natsOptions_Create(&o);
	natsOptions_SetURL(o, url);
	natsOptions_SetSendAsap(o, asap);
	natsOptions_SetMaxPendingMsgs(o, 1000000);
	if (natsConnection_Connect(&nc, o) != NATS_OK) {
		fprintf(stderr, "shipbench: cannot connect to %s\n", url);
		exit(1);
	}
	natsOptions_Destroy(o);
	return nc;
}

static natsConnection *nats_connect_opts(bool asap)
{
	return nats_connect_url(opt.nats_url, asap);
}

static natsConnection *nats_connect(void)
{
	return nats_connect_opts(false);
}

static struct shipc *ship_connect_at(const char *sock, const char *name)
{
	struct shipc *h = shipc_connect(sock, name);
	if (!h) {
		fprintf(stderr, "shipbench: cannot connect to shipd at %s: %s\n",
		        sock, strerror(errno));
		exit(1);
	}
	return h;
}

static struct shipc *ship_connect(const char *name)
{
	return ship_connect_at(opt.socket, name);
}

/* A second shipd B on the same nats-server, linked, and A linked too;
 * false (told, counted as a failure) if B did not come up. B only beside
 * an A of ours: another shipd might use another NATS. */
static bool shipd_b(struct shipdp *b, const char *scenario)
{
	if (shipd_pid && (shipd_start(b, opt.nats_url, opt.shipd_args) < 0 ||
	                  !fx_wait_link(b->sock, 10000))) {
		fprintf(stderr, "shipbench: %s: cannot start a second shipd\n",
		        scenario);
		shipd_cleanup(b);
		bench_failures++;
		return false;
	}
	if (!fx_wait_link(opt.socket, 10000))
		fprintf(stderr, "shipbench: %s: shipd is not linked to NATS\n",
		        scenario);
	return true;
}

/* ---- rtt: a bare Unix socket ping-pong, the floor for any sidecar ---- */

/* The echo's own CPU time, in ns: what a wake-up, a read and a write cost
 * a process on this machine, the least a sidecar pays per hop. */
static uint64_t echo_cpu_ns;

static void *echo_thread(void *arg)
{
	int fd = *(int *)arg;
	char buf[4096];
	size_t sz = opt.size < sizeof(buf) ? opt.size : sizeof(buf);
	for (;;) {
		ssize_t n = read(fd, buf, sz);
		if (n <= 0 || write(fd, buf, (size_t)n) != n)
			break;
	}
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	echo_cpu_ns += (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	return NULL;
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

/* One round: n round trips, the p50 and p99 in us; how many came back. */
static unsigned rtt_round(unsigned n, double *p50, double *p99)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 0;
	pthread_t t;
	pthread_create(&t, NULL, echo_thread, &sv[1]);
	uint64_t *lat = calloc(n, sizeof(*lat));
	char buf[4096];
	size_t sz = opt.size < sizeof(buf) ? opt.size : sizeof(buf);
	unsigned done = 0;
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
		if (got < sz)
			break;
		lat[done++] = now_ns() - t0;
	}
	close(sv[0]);
	pthread_join(t, NULL);
	close(sv[1]);
	if (done) {
		qsort(lat, done, sizeof(*lat), cmp_u64);
		*p50 = pct(lat, done, 0.5);
		*p99 = pct(lat, done, 0.99);
	}
	free(lat);
	return done;
}

/* The floor, no shipd: median and spread of the rounds' p50. */
static void bench_rtt(void)
{
	unsigned n = opt.quick ? 2000 : 20000, rounds = opt.rounds;
	double p50[ROUNDS_MAX], p99[ROUNDS_MAX];
	uint64_t done = 0;
	echo_cpu_ns = 0;
	for (unsigned r = 0; r < rounds; r++)
		done += rtt_round(n, &p50[r], &p99[r]);
	double cpu_us = (double)echo_cpu_ns / 1000.0 / (double)done;
	if (done < (uint64_t)n * rounds) {
		fprintf(stderr, "shipbench: rtt: %" PRIu64 " of %" PRIu64
		                " round trips\n",
		        done, (uint64_t)n * rounds);
		bench_failures++;
		return;
	}
	bare_rtt_p50_us = median_of(p50, rounds);
	double lo = p50[0], hi = p50[rounds - 1], p99m = median_of(p99, rounds);
	if (opt.json)
		printf("%s{\"scenario\":\"rtt\",\"metric\":\"p50_us\",\"value\":%.3f,"
		       "\"min\":%.3f,\"max\":%.3f,\"p99_us\":%.3f,\"rounds\":%u,"
		       "\"sent\":%" PRIu64 ",\"delivered\":%" PRIu64 ","
		       "\"echo_cpu_us\":%.3f}",
		       first_row ? "" : ",\n", bare_rtt_p50_us, lo, hi, p99m,
		       rounds, done, done, cpu_us);
	else {
		char v[64];
		print_value(v, sizeof(v), true, rounds, bare_rtt_p50_us, lo, hi,
		            "");
		printf("%-8s %-12s %-16s %18s %18s   (p99 %.1f us; %" PRIu64
		       " of %" PRIu64 " echoed; a bare socket, no shipd)\n",
		       "rtt", "bare", "p50 us", v, "-", p99m, done, done);
		printf("%-8s %-12s echo's CPU %.1f us a round trip: one wake-up,"
		       " read and write (a request costs a relay two)\n",
		       "rtt", "bare", cpu_us);
	}
	first_row = false;
}

/* ---- pub, pubsub and fanout: what was sent, delivered and dropped ----
 *
 * Every message is counted where it arrives: by nats.c subscribers
 * (pending limits off, so nats.c drops nothing) or by apps subscribed
 * through shipd, whose deliveries say how many shipd dropped just before
 * them. Drops after the last delivery would go untold, so a run through
 * shipd ends with a fence: a message on the same subject, published
 * directly until every subscriber has it, which carries that count. */

#define FENCE "shipbench-fence"

struct counter {
	atomic_uint n;
	atomic_uint_fast64_t dropped; /* what shipd (or nats.c) said */
	atomic_bool fenced;
	atomic_uint_fast64_t last_ns;
};

static bool is_fence(const void *data, size_t len)
{
	return len == sizeof(FENCE) - 1 && !memcmp(data, FENCE, len);
}

static void direct_count_cb(natsConnection *nc, natsSubscription *sub,
                            natsMsg *m, void *arg)
{
	struct counter *c = arg;
	if (is_fence(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m))) {
		atomic_store(&c->fenced, true);
	} else {
		atomic_fetch_add(&c->n, 1);
		atomic_store(&c->last_ns, now_ns());
	}
	natsMsg_Destroy(m);
}

static void ship_count_cb(struct shipc *h, const struct shipc_msg *m, int err,
                          void *arg)
{
	struct counter *c = arg;
	if (!m)
		return;
	atomic_fetch_add(&c->dropped, m->dropped);
	if (is_fence(m->data, m->len)) {
		atomic_store(&c->fenced, true);
		return;
	}
	atomic_fetch_add(&c->n, 1);
	atomic_store(&c->last_ns, now_ns());
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

/* k subscribers to one subject, nats.c's or apps' through shipd. */
struct receivers {
	unsigned k;
	bool via_shipd;
	const char *subject;
	struct counter *c;
	natsConnection **nc;
	natsSubscription **ns;
	struct pump *p;
};

static void receivers_open(struct receivers *rx, unsigned k, bool via_shipd,
                           const char *subject)
{
	*rx = (struct receivers){.k = k, .via_shipd = via_shipd,
	                         .subject = subject};
	rx->c = calloc(k, sizeof(*rx->c));
	rx->nc = calloc(k, sizeof(*rx->nc));
	rx->ns = calloc(k, sizeof(*rx->ns));
	rx->p = calloc(k, sizeof(*rx->p));
	for (unsigned i = 0; i < k; i++) {
		if (via_shipd) {
			rx->p[i].h = ship_connect("bench-sub");
			shipc_subscribe(rx->p[i].h, subject, NULL, 0, ship_count_cb,
			                &rx->c[i]);
			pthread_create(&rx->p[i].t, NULL, pump_thread, &rx->p[i]);
			continue;
		}
		rx->nc[i] = nats_connect();
		natsConnection_Subscribe(&rx->ns[i], rx->nc[i], subject,
		                         direct_count_cb, &rx->c[i]);
		natsSubscription_SetPendingLimits(rx->ns[i], -1, -1);
		natsConnection_Flush(rx->nc[i]);
	}
}

/* Each has n delivered or said dropped, or nothing came for a second. */
static void receivers_settle(struct receivers *rx, unsigned n)
{
	uint64_t idle_since = now_ns(), last_total = 0;
	for (;;) {
		uint64_t total = 0;
		bool all = true;
		for (unsigned i = 0; i < rx->k; i++) {
			uint64_t v = atomic_load(&rx->c[i].n) +
			             atomic_load(&rx->c[i].dropped);
			total += v;
			all = all && v >= n;
		}
		if (all)
			return;
		if (total != last_total) {
			last_total = total;
			idle_since = now_ns();
		} else if (now_ns() - idle_since > 1000000000u) {
			return;
		}
		fx_sleep_ms(1);
	}
}

/* Every subscriber had a fence and has n delivered or told dropped. */
static bool receivers_told(struct receivers *rx, unsigned n)
{
	for (unsigned i = 0; i < rx->k; i++)
		if (!atomic_load(&rx->c[i].fenced) ||
		    atomic_load(&rx->c[i].n) + atomic_load(&rx->c[i].dropped) < n)
			return false;
	return true;
}

/* Through shipd: a fence every 100 ms until every subscriber has n
 * delivered or told dropped (10 s at most). One fence is enough when the
 * burst is over, but it comes on another connection than the burst and
 * may overtake its last messages. */
static void receivers_fence(struct receivers *rx, unsigned n)
{
	if (!rx->via_shipd)
		return;
	natsConnection *nc = nats_connect();
	for (int t = 0; t < 1000 && !receivers_told(rx, n); t++) {
		if (t % 10 == 0) {
			natsConnection_PublishString(nc, rx->subject, FENCE);
			natsConnection_Flush(nc);
		}
		fx_sleep_ms(10);
	}
	natsConnection_Destroy(nc);
}

/* The run's accounting into s (n sent to each); the last delivery. */
static uint64_t receivers_close(struct receivers *rx, unsigned n,
                                struct sample *s)
{
	uint64_t last = 0;
	s->sent += (uint64_t)n * rx->k;
	for (unsigned i = 0; i < rx->k; i++) {
		struct counter *c = &rx->c[i];
		if (rx->via_shipd) {
			if (!atomic_load(&c->fenced))
				sample_fail(s, "the fence did not reach subscriber %u",
				            i);
			atomic_store(&rx->p[i].stop, true);
			pthread_join(rx->p[i].t, NULL);
			shipc_close(rx->p[i].h);
		} else {
			int64_t d = 0;
			natsSubscription_GetDropped(rx->ns[i], &d);
			atomic_fetch_add(&c->dropped, (uint64_t)d);
			natsSubscription_Destroy(rx->ns[i]);
			natsConnection_Destroy(rx->nc[i]);
		}
		uint64_t got = atomic_load(&c->n), told = atomic_load(&c->dropped);
		/* Told more than it lost, or got what nobody sent: wrong. */
		if (got + told > n)
			sample_fail(s, "subscriber %u got %" PRIu64 " and was told of "
			               "%" PRIu64 " dropped, of %u sent",
			            i, got, told, n);
		s->delivered += got;
		s->dropped += told;
		if (atomic_load(&c->last_ns) > last)
			last = atomic_load(&c->last_ns);
	}
	free(rx->c);
	free(rx->nc);
	free(rx->ns);
	free(rx->p);
	return last;
}

/* n messages on subject, directly or through shipd, until the publisher
 * flushed; its time from the first publish, which *t0 gets (after the
 * publisher connected). */
static uint64_t publish_n(bool via_shipd, const char *subject, unsigned n,
                          struct sample *s, uint64_t *first)
{
	uint64_t t0, flushed;
	if (!via_shipd) {
		natsConnection *nc = nats_connect();
		*first = t0 = now_ns();
		for (unsigned i = 0; i < n; i++)
			natsConnection_Publish(nc, subject, payload, (int)opt.size);
		if (natsConnection_FlushTimeout(nc, 60000) != NATS_OK)
			sample_fail(s, "direct flush failed");
		flushed = now_ns();
		natsConnection_Destroy(nc);
		return flushed - t0;
	}
	struct shipc *h = ship_connect("bench-pub");
	*first = t0 = now_ns();
	for (unsigned i = 0; i < n; i++)
		if (shipc_publish(h, subject, payload, opt.size) < 0) {
			sample_fail(s, "publish %u: %s", i, strerror(errno));
			break;
		}
	if (shipc_flush(h, 60000) < 0)
		sample_fail(s, "shipd flush: %s", strerror(errno));
	flushed = now_ns();
	shipc_close(h);
	return flushed - t0;
}

/* pub: publishes per second from one app; a nats.c subscriber counts. */
static void pub_run(bool via_shipd, struct sample *s)
{
	unsigned n = opt.count;
	struct receivers rx;
	receivers_open(&rx, 1, false, "bench.pub");
	sample_begin(s);
	uint64_t t0;
	double secs = (double)publish_n(via_shipd, "bench.pub", n, s, &t0) / 1e9;
	receivers_settle(&rx, n);
	sample_end(s);
	receivers_close(&rx, n, s);
	s->ops = n;
	s->v[0] = n / secs;
	s->v[1] = s->v[0] * (double)opt.size / 1e6;
}

static void pub_direct(void *ctx, struct sample *s)
{
	pub_run(false, s);
}

static void pub_shipd(void *ctx, struct sample *s)
{
	pub_run(true, s);
}

static void bench_pub(void)
{
	static const struct metric m[] = {{"msgs/s", true}, {"MB/s", true}, {0}};
	static const struct side sides[] = {
	    {"direct", pub_direct}, {"shipd", pub_shipd}, {0}};
	struct scenario sc = {.name = "pub", .metrics = m, .sides = sides,
	                      .best_effort = true};
	run_scenario(&sc);
}

/* pubsub and fanout: k subscribers (ctx), deliveries per second from the
 * first publish to the last delivery; shipd CPU per delivery. */
static void fan_run(unsigned k, bool pub_shipd, bool sub_shipd,
                    struct sample *s)
{
	unsigned n = opt.count / k;
	struct receivers rx;
	receivers_open(&rx, k, sub_shipd, "bench.fan");
	sample_begin(s);
	uint64_t t0;
	publish_n(pub_shipd, "bench.fan", n, s, &t0);
	receivers_settle(&rx, n);
	receivers_fence(&rx, n);
	sample_end(s);
	uint64_t last = receivers_close(&rx, n, s);
	s->ops = s->sent;
	s->v[0] = last > t0 ? s->delivered / ((double)(last - t0) / 1e9) : 0;
}

static void fan_direct(void *ctx, struct sample *s)
{
	fan_run(*(unsigned *)ctx, false, false, s);
}

static void fan_one_end(void *ctx, struct sample *s)
{
	fan_run(*(unsigned *)ctx, true, false, s);
}

static void fan_both_ends(void *ctx, struct sample *s)
{
	fan_run(*(unsigned *)ctx, true, true, s);
}

static void bench_fan(const char *name, unsigned k)
{
	static const struct metric m[] = {{"delivered/s", true}, {0}};
	static const struct side sides[] = {{"direct", fan_direct},
	                                    {"shipd 1 end", fan_one_end},
	                                    {"shipd 2 ends", fan_both_ends},
	                                    {0}};
	struct scenario sc = {.name = name, .metrics = m, .sides = sides,
	                      .best_effort = true, .ctx = &k};
	run_scenario(&sc);
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

/* Percentiles 50, 90 and 99 of n latencies in ns, into v[0..2] in us. */
static void latency_figures(uint64_t *lat, unsigned n, double *v)
{
	if (!n)
		return;
	qsort(lat, n, sizeof(*lat), cmp_u64);
	v[0] = pct(lat, n, 0.5);
	v[1] = pct(lat, n, 0.9);
	v[2] = pct(lat, n, 0.99);
}

static const struct metric latency_metrics[] = {
    {"p50 us", false}, {"p90 us", false}, {"p99 us", false}, {0}};

/* What shipd adds to the median round trip, against the bare socket's. */
static void tell_added(const struct scenario *sc, int k, const char *what)
{
	if (opt.json || bare_rtt_p50_us <= 0 || !sc->good[0] || !sc->good[k])
		return;
	double added = sc->med[k][0] - sc->med[0][0];
	printf("%-8s %-12s added p50 %.1f us = %.2f x bare socket RTT (%.1f us)"
	       "%s\n",
	       sc->name, sc->sides[k].name, added, added / bare_rtt_p50_us,
	       bare_rtt_p50_us, what);
}

#define REQ_GIVE_UP 10 /* requests without an answer: the run stops */

/* n requests one at a time from a requester (nats.c or an app through
 * shipd) to an echo responder (likewise); a request without its answer
 * within 5 s is lost. */
static void req_run(bool req_shipd, bool rsp_shipd, struct sample *s)
{
	unsigned n = opt.quick ? 500 : 10000;
	uint64_t *lat = calloc(n, sizeof(*lat));
	natsConnection *srv = NULL, *cli = NULL;
	natsSubscription *ns = NULL;
	struct pump p = {0};
	struct shipc *c = NULL;
	if (rsp_shipd) {
		p.h = ship_connect("bench-echo");
		shipc_subscribe(p.h, "bench.req", NULL, 0, ship_echo_cb, NULL);
		pthread_create(&p.t, NULL, pump_thread, &p);
	} else {
		srv = nats_connect_opts(true);
		natsConnection_Subscribe(&ns, srv, "bench.req", direct_echo_cb,
		                         NULL);
		natsConnection_Flush(srv);
	}
	if (req_shipd)
		c = ship_connect("bench-req");
	else
		cli = nats_connect_opts(true);
	sample_begin(s);
	for (unsigned i = 0; i < n && s->sent - s->delivered < REQ_GIVE_UP;
	     i++) {
		uint64_t t0 = now_ns();
		bool ok;
		s->sent++;
		if (c) {
			struct shipc_msg *rep = NULL;
			ok = shipc_request(c, "bench.req", payload, opt.size, 5000,
			                   &rep) == 0 &&
			     rep->len == opt.size;
			shipc_msg_free(rep);
		} else {
			natsMsg *rep = NULL;
			ok = natsConnection_Request(&rep, cli, "bench.req", payload,
			                            (int)opt.size, 5000) == NATS_OK &&
			     natsMsg_GetDataLength(rep) == (int)opt.size;
			natsMsg_Destroy(rep);
		}
		if (ok)
			lat[s->delivered++] = now_ns() - t0;
	}
	sample_end(s);
	s->ops = s->sent;
	if (s->sent < n)
		sample_fail(s, "%u requests in a row lost", REQ_GIVE_UP);
	latency_figures(lat, (unsigned)s->delivered, s->v);
	if (rsp_shipd) {
		atomic_store(&p.stop, true);
		pthread_join(p.t, NULL);
		shipc_close(p.h);
	} else {
		natsSubscription_Destroy(ns);
		natsConnection_Destroy(srv);
	}
	shipc_close(c);
	natsConnection_Destroy(cli);
	free(lat);
}

static void req_direct(void *ctx, struct sample *s)
{
	req_run(false, false, s);
}

static void req_one_end(void *ctx, struct sample *s)
{
	req_run(true, false, s);
}

static void req_both_ends(void *ctx, struct sample *s)
{
	req_run(true, true, s);
}

static void bench_req(void)
{
	static const struct side sides[] = {{"direct", req_direct},
	                                    {"shipd 1 end", req_one_end},
	                                    {"shipd 2 ends", req_both_ends},
	                                    {0}};
	struct scenario sc = {.name = "req", .metrics = latency_metrics,
	                      .sides = sides, .best_effort = false};
	run_scenario(&sc);
	tell_added(&sc, 1, " (one side through shipd)");
	tell_added(&sc, 2, " (both sides)");
}

/* ---- scrape: requests while the metrics endpoint is scraped ---- */

#define SCRAPE_MS 100

static int metrics_port; /* of the shipd shipbench started; 0: none */

struct scraper {
	pthread_t t;
	atomic_bool stop;
	unsigned done, failed;
	size_t bytes; /* of the last scrape */
};

static void *scrape_thread(void *arg)
{
	struct scraper *sc = arg;
	size_t size = 4u << 20;
	char *buf = malloc(size);
	while (buf && !atomic_load(&sc->stop)) {
		if (fx_http_status(metrics_port, "/metrics", buf, size) == 200) {
			sc->done++;
			sc->bytes = strlen(buf);
		} else {
			sc->failed++;
		}
		struct timespec ts = {0, SCRAPE_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
	free(buf);
	return NULL;
}

static void req_scraped(void *ctx, struct sample *s)
{
	struct scraper sc = {0};
	pthread_create(&sc.t, NULL, scrape_thread, &sc);
	req_run(true, false, s);
	atomic_store(&sc.stop, true);
	pthread_join(sc.t, NULL);
	if (sc.failed || !sc.done)
		sample_fail(s, "%u of %u scrapes of /metrics failed", sc.failed,
		            sc.done + sc.failed);
}

/* The cost of being watched: the request round trip through shipd, with
 * and without a scrape of its /metrics every SCRAPE_MS (a Prometheus at
 * ten times the usual rate). The "direct" column is the unscraped one. */
static void bench_scrape(void)
{
	if (!metrics_port) {
		printf("scrape   needs a shipd that shipbench starts (no "
		       "--socket)\n");
		return;
	}
	static const struct side sides[] = {{"not scraped", req_one_end},
	                                    {"scraped", req_scraped},
	                                    {0}};
	struct scenario sc = {.name = "scrape", .metrics = latency_metrics,
	                      .sides = sides, .best_effort = false};
	run_scenario(&sc);
	tell_added(&sc, 1, " (requests with /metrics scraped every 100 ms)");
}

/* ---- jspub: acknowledged JetStream publishes, pipelined ---- */

#define JSPUB_WINDOW 1024

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

/* The payload of a benchmark event: --size bytes as a JSON string. */
static char *event_payload_json(void)
{
	char *p = malloc(opt.size + 3);
	if (!p)
		exit(1);
	p[0] = '"';
	memset(p + 1, 'p', opt.size);
	p[opt.size + 1] = '"';
	p[opt.size + 2] = '\0';
	return p;
}

/* What shipd stores for an emit of type with payload_json: the bytes a
 * direct publisher sends to compare with it. */
static char *event_envelope(const char *type, const char *payload_json)
{
	char *envelope = NULL;
	if (asprintf(&envelope,
	             "{\"event_type\":\"%s\",\"timestamp\":\"2026-01-01T00:"
	             "00:00.000000000+00:00\",\"source\":\"shipbench\",\"payload\""
	             ":%s,\"correlation_id\":\"0123abcd\",\"version\":\"1.0\"}",
	             type, payload_json) < 0)
		exit(1);
	return envelope;
}

struct jspub_ctx {
	struct shipc_emit e;
	char *envelope;
};

static void jspub_direct(void *ctx, struct sample *s)
{
	struct jspub_ctx *c = ctx;
	unsigned n = opt.quick ? 2000 : 50000;
	natsConnection *nc = nats_connect();
	jsCtx *js = NULL;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = JSPUB_WINDOW;
	jo.PublishAsync.ErrHandler = direct_js_err;
	natsConnection_JetStream(&js, nc, &jo);
	atomic_store(&js_errors, 0);
	unsigned refused = 0;
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < n; i++) {
		char id[32];
		jsPubOptions po;
		jsPubOptions_Init(&po);
		snprintf(id, sizeof(id), "d-%u-%" PRIu64, i, t0);
		po.MsgId = id;
		po.MaxWait = 10000;
		if (js_PublishAsync(js, "ship.events.bench.js", c->envelope,
		                    (int)strlen(c->envelope), &po) != NATS_OK)
			refused++;
	}
	jsPubOptions cpo;
	jsPubOptions_Init(&cpo);
	cpo.MaxWait = 60000;
	if (js_PublishAsyncComplete(js, &cpo) != NATS_OK)
		sample_fail(s, "js_PublishAsyncComplete did not complete");
	double secs = (double)(now_ns() - t0) / 1e9;
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	s->sent = n;
	s->dropped = refused + atomic_load(&js_errors);
	s->delivered = n - s->dropped;
	s->v[0] = s->delivered / secs;
}

static void jspub_shipd(void *ctx, struct sample *s)
{
	struct jspub_ctx *c = ctx;
	unsigned n = opt.quick ? 2000 : 50000;
	struct shipc *h = ship_connect("bench-js");
	struct emit_window w = {0};
	sample_begin(s);
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < n; i++) {
		while (w.inflight >= JSPUB_WINDOW)
			shipc_dispatch(h, 10);
		if (shipc_emit_async(h, &c->e, emit_done, &w) == 0)
			w.inflight++;
		else
			w.failed++;
	}
	while (w.inflight)
		shipc_dispatch(h, 10);
	double secs = (double)(now_ns() - t0) / 1e9;
	sample_end(s);
	shipc_close(h);
	s->sent = s->ops = n;
	s->delivered = w.acked;
	s->dropped = w.failed;
	s->v[0] = w.acked / secs;
}

static void bench_jspub(void)
{
	static const struct metric m[] = {{"acked msgs/s", true}, {0}};
	static const struct side sides[] = {
	    {"direct", jspub_direct}, {"shipd", jspub_shipd}, {0}};
	/* The same bytes both ways: an event envelope around the payload. */
	char *payload_json = event_payload_json();
	struct jspub_ctx c = {
	    .e = {.event_type = "bench.js", .source = "shipbench",
	          .payload_json = payload_json}};
	struct shipc *probe = ship_connect("bench-js-probe");
	for (int i = 0; i < 100 && shipc_emit(probe, &c.e, NULL) < 0; i++)
		fx_sleep_ms(50); /* SHIP_EVENTS is declared when NATS is up */
	shipc_close(probe);
	c.envelope = event_envelope("bench.js", payload_json);
	struct scenario sc = {.name = "jspub", .metrics = m, .sides = sides,
	                      .best_effort = false, .ctx = &c};
	run_scenario(&sc);
	free(c.envelope);
	free(payload_json);
}

/* ---- kv: put and get latency, and throughput with concurrent apps ---- */

#define KV_BUCKET "shipbench"

struct kv_worker {
	pthread_t t;
	bool via_shipd;
	unsigned ops;   /* put + get pairs */
	unsigned tried; /* pairs begun */
	unsigned done;  /* pairs whose get returned what the put wrote */
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

#define KV_GIVE_UP 10 /* failed pairs: the app stops */

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
	for (unsigned i = 0; i < w->ops && w->tried - w->done < KV_GIVE_UP;
	     i++) {
		uint64_t t0 = now_ns();
		uint64_t rev = 0;
		int ok;
		w->tried++;
		if (h)
			ok = shipc_kv_put(h, KV_BUCKET, key, payload, opt.size, &rev) == 0;
		else
			ok = kvStore_Put(&rev, kv, key, payload, (int)opt.size) == NATS_OK;
		uint64_t t1 = now_ns();
		if (h) {
			struct shipc_kv_entry *e = NULL;
			ok = ok && shipc_kv_get(h, KV_BUCKET, key, 0, &e) == 0 &&
			     e->revision == rev && e->len == opt.size;
			shipc_kv_entry_free(e);
		} else {
			kvEntry *e = NULL;
			ok = ok && kvStore_Get(&e, kv, key) == NATS_OK &&
			     kvEntry_Revision(e) == rev &&
			     kvEntry_ValueLen(e) == (int)opt.size;
			kvEntry_Destroy(e);
		}
		uint64_t t2 = now_ns();
		if (!ok)
			continue;
		if (w->put_ns) {
			w->put_ns[w->done] = t1 - t0;
			w->get_ns[w->done] = t2 - t1;
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

/* k apps doing ops put+get pairs each: pairs per second into s->v[0];
 * a pair whose get did not return what the put wrote is lost. */
static void kv_run(bool via_shipd, unsigned k, unsigned ops, uint64_t *put,
                   uint64_t *get, struct sample *s)
{
	struct kv_worker *w = calloc(k, sizeof(*w));
	if (via_shipd)
		sample_begin(s);
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < k; i++) {
		w[i] = (struct kv_worker){.via_shipd = via_shipd, .ops = ops,
		                          .idx = (int)i, .put_ns = put, .get_ns = get};
		pthread_create(&w[i].t, NULL, kv_work, &w[i]);
	}
	for (unsigned i = 0; i < k; i++) {
		pthread_join(w[i].t, NULL);
		s->sent += w[i].tried;
		s->delivered += w[i].done;
		if (w[i].tried < ops)
			sample_fail(s, "app %u gave up after %u failed pairs", i,
			            KV_GIVE_UP);
	}
	double secs = (double)(now_ns() - t0) / 1e9;
	if (via_shipd)
		sample_end(s);
	s->ops = 2 * s->sent;
	s->v[0] = s->delivered / secs;
	free(w);
}

/* Latency: one app, put then get, one at a time. */
static void kv_latency(bool via_shipd, struct sample *s)
{
	unsigned n = opt.quick ? 200 : 2000;
	uint64_t *p = calloc(n, sizeof(*p)), *g = calloc(n, sizeof(*g));
	kv_run(via_shipd, 1, n, p, g, s);
	unsigned got = (unsigned)s->delivered;
	if (got) {
		qsort(p, got, sizeof(*p), cmp_u64);
		qsort(g, got, sizeof(*g), cmp_u64);
		s->v[0] = pct(p, got, 0.5);
		s->v[1] = pct(p, got, 0.99);
		s->v[2] = pct(g, got, 0.5);
		s->v[3] = pct(g, got, 0.99);
	}
	free(p);
	free(g);
}

static void kv_lat_direct(void *ctx, struct sample *s)
{
	kv_latency(false, s);
}

static void kv_lat_shipd(void *ctx, struct sample *s)
{
	kv_latency(true, s);
}

static void kv_pairs_direct(void *ctx, struct sample *s)
{
	kv_run(false, *(unsigned *)ctx, opt.quick ? 50 : 500, NULL, NULL, s);
}

static void kv_pairs_shipd(void *ctx, struct sample *s)
{
	kv_run(true, *(unsigned *)ctx, opt.quick ? 50 : 500, NULL, NULL, s);
}

static void bench_kv(void)
{
	static const struct metric ml[] = {{"put p50 us", false},
	                                   {"put p99 us", false},
	                                   {"get p50 us", false},
	                                   {"get p99 us", false},
	                                   {0}};
	static const struct metric m1[] = {{"1 app pairs/s", true}, {0}};
	static const struct metric m16[] = {{"16 apps pairs/s", true}, {0}};
	static const struct side lat[] = {
	    {"direct", kv_lat_direct}, {"shipd", kv_lat_shipd}, {0}};
	static const struct side pairs[] = {
	    {"direct", kv_pairs_direct}, {"shipd", kv_pairs_shipd}, {0}};
	struct shipc *h = ship_connect("bench-kv-setup");
	struct shipc_kv_config cfg = {.bucket = KV_BUCKET, .history = 1};
	if (shipc_kv_bucket_create(h, &cfg, NULL) < 0) {
		fprintf(stderr, "shipbench: kv: cannot create the bucket: %s\n",
		        strerror(errno));
		exit(1);
	}
	shipc_close(h);
	struct scenario sl = {.name = "kv", .metrics = ml, .sides = lat,
	                      .best_effort = false};
	run_scenario(&sl);
	if (!opt.json && bare_rtt_p50_us > 0 && sl.good[0] && sl.good[1])
		printf("%-8s added p50: put %.1f us, get %.1f us = %.2f / %.2f x "
		       "bare socket RTT\n",
		       "kv", sl.med[1][0] - sl.med[0][0], sl.med[1][2] - sl.med[0][2],
		       (sl.med[1][0] - sl.med[0][0]) / bare_rtt_p50_us,
		       (sl.med[1][2] - sl.med[0][2]) / bare_rtt_p50_us);
	unsigned one = 1, sixteen = 16;
	struct scenario s1 = {.name = "kv", .metrics = m1, .sides = pairs,
	                      .best_effort = false, .ctx = &one};
	run_scenario(&s1);
	struct scenario s16 = {.name = "kv", .metrics = m16, .sides = pairs,
	                       .best_effort = false, .ctx = &sixteen};
	run_scenario(&s16);
	if (!opt.json && s1.good[0] && s1.good[1] && s16.good[0] && s16.good[1])
		printf("%-8s 16 apps / 1 app: direct %.1f x, shipd %.1f x\n", "kv",
		       s16.med[0][0] / s1.med[0][0], s16.med[1][0] / s1.med[1][0]);
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
	double cpu0 = proc_cpu_s(shipd_pid);
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
	/* Per subscription made; one round: it measures memory, not a rate. */
	unsigned sent = nclients * 10;
	double cpu_us = (proc_cpu_s(shipd_pid) - cpu0) * 1e6 / sent;
	bool all = st.subscriptions >= sent;
	if (!all)
		bench_failures++;
	if (opt.json)
		printf(",\n{\"scenario\":\"idle\",\"clients\":%u,"
		       "\"subscriptions\":%u,\"sent\":%u,\"rss_before_kib\":%ld,"
		       "\"rss_kib\":%ld,\"shipd_cpu_us_per_op\":%.3f%s}",
		       st.clients - 1, st.subscriptions, sent, before, rss, cpu_us,
		       all ? "" : ",\"failed\":true");
	else
		printf("%-8s %u clients, %u of %u subscriptions held: shipd RSS "
		       "%.1f MiB (%.1f MiB before), %.2f us cpu a subscription%s\n",
		       "idle", st.clients - 1, st.subscriptions, sent,
		       (double)rss / 1024.0, (double)before / 1024.0, cpu_us,
		       all ? "" : ": FAILED, not all held");
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
	double mbps;
	char why[256];
};

static void obj_fail(struct obj_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Only the first reason is kept, json_safe. */
static void obj_fail(struct obj_run *r, const char *fmt, ...)
{
	if (!r->ok && r->why[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
	json_safe(r->why);
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

/* A transfer into a sample: one sent, delivered if it went well. */
static void obj_count(struct sample *s, struct obj_run *r, int m)
{
	s->sent++;
	s->v[m] = r->mbps;
	if (r->ok)
		s->delivered++;
	else
		sample_fail(s, "%s", r->why);
}

struct obj_ctx {
	uint8_t *data;
	size_t len;
	char digest[64];
	struct shipc *h;
};

static uint64_t obj_chunks(size_t len)
{
	return (len + OBJ_CHUNK - 1) / OBJ_CHUNK;
}

static void obj_side_direct(void *ctx, struct sample *s)
{
	struct obj_ctx *c = ctx;
	struct obj_run put = {.ok = true}, get = {.ok = true},
	               dget = {.ok = true};
	char err[256];
	obj_put_direct("direct", c->data, c->len, &put);
	if (put.ok) {
		/* A real object: shipd, as any Object Store reader, sees it. */
		struct shipc_obj_info *info = NULL;
		if (shipc_obj_info(c->h, OBJ_BUCKET, "direct", 0, &info) < 0)
			obj_fail(&put, "direct put: shipd does not see it: %s",
			         shipc_last_error(c->h, err, sizeof(err)));
		else
			obj_check_info(c->len, c->digest, info, "direct put", &put);
		shipc_obj_info_free(info);
	}
	if (put.ok) {
		obj_get_direct("direct", false, c->len, c->digest, &get);
		obj_get_direct("direct", true, c->len, c->digest, &dget);
	} else {
		obj_fail(&get, "direct get: nothing was put");
		obj_fail(&dget, "direct get: nothing was put");
	}
	obj_count(s, &put, 0);
	obj_count(s, &get, 1);
	obj_count(s, &dget, 2);
}

/* shipd's CPU per 128 KiB chunk, its put's and get's together. */
static void obj_side_shipd(void *ctx, struct sample *s)
{
	struct obj_ctx *c = ctx;
	struct obj_run put = {.ok = true}, get = {.ok = true};
	struct usage uput = {.peak_kib = -1}, uget = {.peak_kib = -1};
	obj_put_shipd(c->h, "shipd", c->data, c->len, c->digest, &put, &uput);
	if (put.ok)
		obj_get_shipd(c->h, "shipd", c->len, c->digest, &get, &uget);
	else
		obj_fail(&get, "shipd get: nothing was put");
	s->u.cpu_s = uput.cpu_s + uget.cpu_s;
	s->u.peak_kib = uput.peak_kib > uget.peak_kib ? uput.peak_kib
	                                              : uget.peak_kib;
	s->ops = 2 * obj_chunks(c->len);
	obj_count(s, &put, 0);
	obj_count(s, &get, 1);
	s->v[2] = s->v[1]; /* shipd has one way to get */
}

static void bench_obj(void)
{
	static const struct metric m[] = {{"put MB/s", true},
	                                  {"get MB/s", true},
	                                  {"get MB/s dget", true},
	                                  {0}};
	static const struct side sides[] = {
	    {"direct", obj_side_direct}, {"shipd", obj_side_shipd}, {0}};
	unsigned mib = opt.obj_mib ? opt.obj_mib : opt.quick ? 4 : 256;
	struct obj_ctx c = {.len = (size_t)mib << 20};
	c.data = obj_data(c.len, c.digest, sizeof(c.digest));
	c.h = ship_connect("bench-obj");
	struct shipc_obj_bucket_config cfg = {.bucket = OBJ_BUCKET};
	char err[256];
	if (shipc_obj_bucket_create(c.h, &cfg, NULL) < 0) {
		fprintf(stderr, "shipbench: obj: cannot create the bucket: %s\n",
		        shipc_last_error(c.h, err, sizeof(err)));
		exit(1);
	}
	long before = shipd_pid ? proc_status_kib(shipd_pid, "VmRSS") : 0;
	struct scenario sc = {.name = "obj", .metrics = m, .sides = sides,
	                      .best_effort = false, .ctx = &c};
	run_scenario(&sc);
	if (opt.json)
		printf(",\n{\"scenario\":\"obj\",\"object_mib\":%u,\"chunk_kib\":%d,"
		       "\"rss_before_kib\":%ld}",
		       mib, OBJ_CHUNK / 1024, before);
	else if (shipd_pid)
		printf("%-8s %u MiB object, put and got each round; shipd cpu per "
		       "128 KiB chunk; %.1f MiB RSS before\n",
		       "obj", mib, (double)before / 1024.0);
	free(c.data);
	/* Leave no chunks behind on a server we were pointed at. */
	shipc_obj_delete(c.h, OBJ_BUCKET, "direct");
	shipc_obj_delete(c.h, OBJ_BUCKET, "shipd");
	shipc_close(c.h);
}

/* ---- jobs: a JobQueue across two shipds, against one written by hand ----
 *
 * JOBS_SUBMITTERS apps submit the jobs as fast as they can while
 * JOBS_WORKERS apps claim them (waiting) and complete them: jobs/s is from
 * the first submit to the last complete. Then one app submits jobs one at
 * a time, each once the one before was claimed: "claim p50 us" is from a
 * submit call to the claim's answer with the workers idle, what a job
 * waits on a quiet queue. Through shipd the submitters use shipd A and
 * half the workers a second shipd B on the same nats-server (when
 * shipbench started shipd A itself).
 *
 * Direct is a queue on KV written by hand with nats.c, every app on a
 * connection of its own: a submit is kvStore_Create of job.<n>; a worker
 * follows the bucket with a watcher of its own, reads the oldest job it
 * saw queued (kvStore_Get) and claims it by kvStore_Update at the revision
 * read (a lost race goes on to the next job), then completes it by
 * kvStore_Update at the claim's revision. Its values carry shipd's fields.
 * shipd does more per job, for its own reasons: a submit also takes the
 * next id from a counter (a compare-and-swap of its own), a complete reads
 * the job again, and each step publishes a lifecycle event.
 *
 * Every job must be completed exactly once: a job lost, claimed or
 * completed twice fails the scenario, it is not rated. */

#define JOBS_SUBMITTERS 2
#define JOBS_WORKERS 4
#define JOBS_CLAIM_WAIT_MS 200
#define JOBS_IDLE_MS 15000 /* no progress for so long: the rest are lost */
#define JOBS_VALUE_MAX 640
#define JOBS_MAX 1000000

struct jobs_run {
	const char *name;     /* the queue, or the direct queue's bucket */
	unsigned n;
	bool paced;           /* one submitter, a job once the last is claimed */
	const char *socks[2]; /* shipd A and B (B may be A) */
	struct shipc *admin;  /* makes, checks and deletes shipd's queue */
	atomic_uint next;     /* the next job to submit */
	atomic_uint done;     /* completes */
	atomic_uint *claims, *completes;            /* per job */
	atomic_uint_fast64_t *submit_ns, *claim_ns; /* per job, the first */
	atomic_uint_fast64_t progress_ns; /* the last submit or complete */
	atomic_uint_fast64_t last_ns;     /* the last complete */
	atomic_uint lost_races;           /* direct: compare-and-swaps lost */
	unsigned lost, twice, reclaimed;  /* jobs done not once, claimed twice */
	atomic_bool stop;
	pthread_mutex_t mu; /* failed, why; claims, when paced */
	pthread_cond_t claimed;
	bool failed;
	char why[256];
	double rate, wait_p50_us, wait_p99_us;
};

/* One app: a submitter or a worker, with its own handle or connection. */
struct jobs_app {
	struct jobs_run *r;
	pthread_t t;
	bool started;
	char name[32];
	struct shipc *h;
	natsConnection *nc;
	jsCtx *js;
	kvStore *kv;
	/* a direct worker: what its watcher saw, the oldest first */
	kvWatcher *w;
	pthread_t feed;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	uint8_t *seen; /* per job: 0 not yet, 1 queued, 2 taken */
	unsigned *fifo, head, tail;
};

static void jobs_fail(struct jobs_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The first reason is kept; every app stops. */
static void jobs_fail(struct jobs_run *r, const char *fmt, ...)
{
	pthread_mutex_lock(&r->mu);
	if (!r->failed) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(r->why, sizeof(r->why), fmt, ap);
		va_end(ap);
		json_safe(r->why);
		r->failed = true;
	}
	pthread_mutex_unlock(&r->mu);
	atomic_store(&r->stop, true);
}

static void atomic_max_u64(atomic_uint_fast64_t *a, uint64_t v)
{
	uint_fast64_t cur = atomic_load(a);
	while (cur < v && !atomic_compare_exchange_weak(a, &cur, v))
		;
}

static struct timespec deadline_in_ms(long ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += ms % 1000 * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

/* Job i was submitted; paced, return once it was claimed. */
static void jobs_submitted(struct jobs_run *r, unsigned i)
{
	atomic_max_u64(&r->progress_ns, now_ns());
	if (!r->paced)
		return;
	pthread_mutex_lock(&r->mu);
	while (!atomic_load(&r->claim_ns[i]) && !atomic_load(&r->stop)) {
		struct timespec ts = deadline_in_ms(100);
		pthread_cond_timedwait(&r->claimed, &r->mu, &ts);
	}
	pthread_mutex_unlock(&r->mu);
}

static void jobs_claimed(struct jobs_run *r, unsigned i)
{
	uint_fast64_t none = 0;
	atomic_compare_exchange_strong(&r->claim_ns[i], &none, now_ns());
	atomic_fetch_add(&r->claims[i], 1);
	if (r->paced) {
		pthread_mutex_lock(&r->mu);
		pthread_cond_broadcast(&r->claimed);
		pthread_mutex_unlock(&r->mu);
	}
}

static void jobs_completed(struct jobs_run *r, unsigned i)
{
	uint64_t t = now_ns();
	atomic_fetch_add(&r->completes[i], 1);
	atomic_fetch_add(&r->done, 1);
	atomic_max_u64(&r->last_ns, t);
	atomic_max_u64(&r->progress_ns, t);
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- jobs through shipd ---- */

/* A fresh queue keeping every finished job, so that its counts can be
 * checked after the run. */
static bool jobs_prepare_shipd(struct jobs_run *r)
{
	struct shipc_job_queue_config cfg = {.queue = r->name,
	                                     .keep_finished = 10000000};
	char err[256];
	if (shipc_job_queue_delete(r->admin, r->name) < 0 && errno != ENOENT)
		fprintf(stderr, "shipbench: jobs: cannot delete queue %s: %s\n",
		        r->name, shipc_last_error(r->admin, err, sizeof(err)));
	if (shipc_job_queue_create(r->admin, &cfg, NULL) == 0)
		return true;
	jobs_fail(r, "cannot create queue %s: %s", r->name,
	          shipc_last_error(r->admin, err, sizeof(err)));
	return false;
}

/* What shipd's store says after the run: every job complete. */
static void jobs_verify_shipd(struct jobs_run *r)
{
	struct shipc_job_counts c = {0};
	char err[256];
	if (shipc_job_counts(r->admin, r->name, &c) < 0)
		jobs_fail(r, "shipd counts: %s",
		          shipc_last_error(r->admin, err, sizeof(err)));
	else if (c.complete != r->n || c.queued || c.running || c.failed)
		jobs_fail(r, "shipd counts %" PRIu64 " complete of %u, %" PRIu64
		             " queued, %" PRIu64 " running, %" PRIu64 " failed",
		          c.complete, r->n, c.queued, c.running, c.failed);
}

static void jobs_drop_shipd(struct jobs_run *r)
{
	shipc_job_queue_delete(r->admin, r->name);
}

static void jobs_open_shipd(struct jobs_app *a, int idx, bool worker)
{
	struct jobs_run *r = a->r;
	/* Workers alternate between A and B; submitters use A. */
	const char *sock = worker ? r->socks[idx % 2] : r->socks[0];
	snprintf(a->name, sizeof(a->name), "bench-%s%d%s",
	         worker ? "work" : "submit", idx,
	         worker ? (idx % 2 ? "b" : "a") : "");
	a->h = ship_connect_at(sock, a->name);
	if (!worker)
		return;
	/* A first claim returns once its shipd follows the queue: the
	 * measurement does not include reading the queue's index. */
	struct shipc_job *job = NULL;
	char err[256];
	if (shipc_job_claim(a->h, r->name, a->name, 0, &job) == 0 ||
	    errno != ENOENT)
		jobs_fail(r, "shipd first claim: %s",
		          job ? "a job in a new queue"
		              : shipc_last_error(a->h, err, sizeof(err)));
	shipc_job_free(job);
}

static void jobs_close_shipd(struct jobs_app *a)
{
	shipc_close(a->h);
}

static void *jobs_submit_shipd(void *arg)
{
	struct jobs_app *a = arg;
	struct jobs_run *r = a->r;
	char payload_json[32], err[256];
	unsigned i;
	while (!atomic_load(&r->stop) &&
	       (i = atomic_fetch_add(&r->next, 1)) < r->n) {
		struct shipc_job_submit s = {.payload_json = payload_json};
		snprintf(payload_json, sizeof(payload_json), "{\"n\":%u}", i);
		atomic_store(&r->submit_ns[i], now_ns());
		if (shipc_job_submit(a->h, r->name, &s, NULL) < 0) {
			jobs_fail(r, "shipd submit of job %u: %s", i,
			          shipc_last_error(a->h, err, sizeof(err)));
			break;
		}
		jobs_submitted(r, i);
	}
	return NULL;
}

static void *jobs_work_shipd(void *arg)
{
	struct jobs_app *a = arg;
	struct jobs_run *r = a->r;
	char err[256];
	while (!atomic_load(&r->stop)) {
		struct shipc_job *job = NULL;
		unsigned i;
		uint64_t t0 = now_ns();
		if (shipc_job_claim(a->h, r->name, a->name, JOBS_CLAIM_WAIT_MS,
		                    &job) < 0) {
			if (errno == ENOENT)
				continue; /* none ready yet */
			jobs_fail(r, "shipd claim by %s (%u done): %s after %.1f s",
			          a->name, atomic_load(&r->done),
			          shipc_last_error(a->h, err, sizeof(err)),
			          (double)(now_ns() - t0) / 1e9);
			break;
		}
		if (sscanf(job->payload_json, "{\"n\":%u}", &i) != 1 || i >= r->n) {
			jobs_fail(r, "shipd claim: job %s, payload %.64s", job->id,
			          job->payload_json);
			shipc_job_free(job);
			break;
		}
		jobs_claimed(r, i);
		if (shipc_job_complete(a->h, r->name, job->id, NULL, NULL) < 0) {
			jobs_fail(r, "shipd complete of %s: %s", job->id,
			          shipc_last_error(a->h, err, sizeof(err)));
			shipc_job_free(job);
			break;
		}
		jobs_completed(r, i);
		shipc_job_free(job);
	}
	return NULL;
}

/* ---- jobs directly on KV ---- */

/* A fresh bucket (kvStore_Create fails on keys of an earlier run); with
 * make false, it is only deleted. */
static bool djob_bucket(struct jobs_run *r, bool make)
{
	natsConnection *nc = nats_connect();
	jsCtx *js = NULL;
	kvStore *kv = NULL;
	kvConfig kc;
	natsStatus s = NATS_OK;
	natsConnection_JetStream(&js, nc, NULL);
	js_DeleteKeyValue(js, r->name);
	if (make) {
		kvConfig_Init(&kc);
		kc.Bucket = r->name;
		kc.History = 1; /* as shipd's queues */
		if ((s = js_CreateKeyValue(&kv, js, &kc)) != NATS_OK)
			jobs_fail(r, "cannot create bucket %s: %s", r->name,
			          nats_why(s));
		kvStore_Destroy(kv);
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return s == NATS_OK;
}

static bool jobs_prepare_direct(struct jobs_run *r)
{
	return djob_bucket(r, true);
}

static void jobs_drop_direct(struct jobs_run *r)
{
	djob_bucket(r, false);
}

/* A job's value: the fields shipd keeps, about as long. */
static int djob_value(char *buf, unsigned i, const char *status,
                      const char *worker, uint64_t queued_at,
                      uint64_t started_at, uint64_t completed_at)
{
	return snprintf(
	    buf, JOBS_VALUE_MAX,
	    "{\"id\":\"D-%u\",\"queue\":\"direct\",\"payload\":{\"n\":%u},"
	    "\"status\":\"%s\",\"worker\":\"\",\"queued_by\":\"bench-submit\","
	    "\"queued_at\":%" PRIu64 ",\"started_at\":%" PRIu64
	    ",\"completed_at\":%" PRIu64 ",\"result\":null,\"error\":null,"
	    "\"attempts\":%d,\"max_attempts\":3,\"priority\":0,"
	    "\"not_before\":%" PRIu64 ",\"lease_until\":%" PRIu64
	    ",\"claimed_by\":\"%s\",\"holder\":\"%s\",\"dead_letter\":false,"
	    "\"cancelled\":false,\"idempotency_key\":null}",
	    i, i, status, queued_at, started_at, completed_at,
	    started_at ? 1 : 0, queued_at,
	    started_at && !completed_at ? started_at + 30000 : 0, worker,
	    started_at && !completed_at ? worker : "");
}

static bool djob_queued(const char *value)
{
	return strstr(value, "\"status\":\"queued\"") != NULL;
}

/* What the watcher sees, into the worker's list of queued jobs. */
static void *djob_feed(void *arg)
{
	struct jobs_app *a = arg;
	for (;;) {
		kvEntry *e = NULL;
		natsStatus s = kvWatcher_Next(&e, a->w, 1000);
		if (s == NATS_TIMEOUT)
			continue;
		if (s != NATS_OK)
			return NULL; /* stopped */
		unsigned i;
		if (e && kvEntry_Operation(e) == kvOp_Put &&
		    sscanf(kvEntry_Key(e), "job.%u", &i) == 1 && i < a->r->n) {
			bool queued = djob_queued(kvEntry_ValueString(e));
			pthread_mutex_lock(&a->mu);
			if (queued && !a->seen[i]) {
				a->seen[i] = 1;
				a->fifo[a->tail++] = i;
				pthread_cond_signal(&a->cond);
			} else if (!queued) {
				a->seen[i] = 2;
			}
			pthread_mutex_unlock(&a->mu);
		}
		kvEntry_Destroy(e);
	}
}

static void jobs_open_direct(struct jobs_app *a, int idx, bool worker)
{
	struct jobs_run *r = a->r;
	snprintf(a->name, sizeof(a->name), "direct-%s%d",
	         worker ? "work" : "submit", idx);
	a->nc = nats_connect_opts(true);
	natsConnection_JetStream(&a->js, a->nc, NULL);
	if (js_KeyValue(&a->kv, a->js, r->name) != NATS_OK) {
		jobs_fail(r, "direct: no bucket %s", r->name);
		return;
	}
	if (!worker)
		return;
	a->seen = calloc(r->n, 1);
	a->fifo = calloc(r->n, sizeof(*a->fifo));
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cond, NULL);
	kvWatchOptions wo;
	kvWatchOptions_Init(&wo);
	wo.IgnoreDeletes = true;
	natsStatus s = kvStore_Watch(&a->w, a->kv, "job.>", &wo);
	if (s != NATS_OK) {
		jobs_fail(r, "direct watch: %s", nats_why(s));
		return;
	}
	pthread_create(&a->feed, NULL, djob_feed, a);
}

static void jobs_close_direct(struct jobs_app *a)
{
	if (a->w) {
		kvWatcher_Stop(a->w);
		pthread_join(a->feed, NULL);
		kvWatcher_Destroy(a->w);
	}
	if (a->fifo) {
		pthread_mutex_destroy(&a->mu);
		pthread_cond_destroy(&a->cond);
	}
	free(a->seen);
	free(a->fifo);
	kvStore_Destroy(a->kv);
	jsCtx_Destroy(a->js);
	natsConnection_Destroy(a->nc);
}

static void *jobs_submit_direct(void *arg)
{
	struct jobs_app *a = arg;
	struct jobs_run *r = a->r;
	char key[32], value[JOBS_VALUE_MAX];
	unsigned i;
	while (!atomic_load(&r->stop) &&
	       (i = atomic_fetch_add(&r->next, 1)) < r->n) {
		snprintf(key, sizeof(key), "job.%u", i);
		int len = djob_value(value, i, "queued", "", wall_ms(), 0, 0);
		atomic_store(&r->submit_ns[i], now_ns());
		natsStatus s = kvStore_Create(NULL, a->kv, key, value, len);
		if (s != NATS_OK) {
			jobs_fail(r, "direct submit of job %u: %s", i, nats_why(s));
			break;
		}
		jobs_submitted(r, i);
	}
	return NULL;
}

/* The oldest job the watcher saw queued and nobody took since; false
 * when the run stops first. */
static bool djob_next(struct jobs_app *a, unsigned *i)
{
	bool got = false;
	pthread_mutex_lock(&a->mu);
	while (!atomic_load(&a->r->stop)) {
		while (a->head < a->tail && a->seen[a->fifo[a->head]] != 1)
			a->head++;
		if (a->head < a->tail) {
			*i = a->fifo[a->head++];
			got = true;
			break;
		}
		struct timespec ts = deadline_in_ms(100);
		pthread_cond_timedwait(&a->cond, &a->mu, &ts);
	}
	pthread_mutex_unlock(&a->mu);
	return got;
}

static bool lost_race(natsStatus s)
{
	const char *text = nats_GetLastError(NULL);
	return s == NATS_ERR && text && strstr(text, "wrong last sequence");
}

/* Claim job i: 1, 0 when another worker has it, -1 on an error. */
static int djob_claim(struct jobs_app *a, unsigned i, const char *key,
                      uint64_t *rev, uint64_t *queued_at)
{
	struct jobs_run *r = a->r;
	kvEntry *e = NULL;
	char value[JOBS_VALUE_MAX];
	natsStatus s = kvStore_Get(&e, a->kv, key);
	if (s != NATS_OK) {
		jobs_fail(r, "direct get of %s: %s", key, nats_why(s));
		return -1;
	}
	const char *old = kvEntry_ValueString(e);
	const char *qa = strstr(old, "\"queued_at\":");
	bool queued = djob_queued(old);
	uint64_t read = kvEntry_Revision(e);
	*queued_at = qa ? strtoull(qa + 12, NULL, 10) : 0;
	kvEntry_Destroy(e);
	if (!queued)
		return 0;
	int len = djob_value(value, i, "running", a->name, *queued_at,
	                     wall_ms(), 0);
	s = kvStore_Update(rev, a->kv, key, value, len, read);
	if (s == NATS_OK)
		return 1;
	if (lost_race(s)) {
		atomic_fetch_add(&r->lost_races, 1);
		return 0;
	}
	jobs_fail(r, "direct claim of %s: %s", key, nats_why(s));
	return -1;
}

static void *jobs_work_direct(void *arg)
{
	struct jobs_app *a = arg;
	struct jobs_run *r = a->r;
	char key[32], value[JOBS_VALUE_MAX];
	unsigned i;
	while (djob_next(a, &i)) {
		uint64_t rev = 0, queued_at = 0;
		snprintf(key, sizeof(key), "job.%u", i);
		int rc = djob_claim(a, i, key, &rev, &queued_at);
		if (rc < 0)
			break;
		if (rc == 0)
			continue;
		jobs_claimed(r, i);
		uint64_t now = wall_ms();
		int len = djob_value(value, i, "complete", a->name, queued_at, now,
		                     now);
		natsStatus s = kvStore_Update(NULL, a->kv, key, value, len, rev);
		if (s != NATS_OK) {
			jobs_fail(r, "direct complete of %s: %s", key, nats_why(s));
			break;
		}
		jobs_completed(r, i);
	}
	return NULL;
}

/* ---- jobs: a run, either way ---- */

struct jobs_side {
	const char *name;
	bool (*prepare)(struct jobs_run *r); /* a fresh queue */
	void (*open)(struct jobs_app *a, int idx, bool worker);
	void (*close)(struct jobs_app *a);
	void *(*submit)(void *arg);
	void *(*work)(void *arg);
	void (*verify)(struct jobs_run *r); /* after a good run; or NULL */
	void (*drop)(struct jobs_run *r);
};

static const struct jobs_side jobs_direct = {
	"direct", jobs_prepare_direct, jobs_open_direct, jobs_close_direct,
	jobs_submit_direct, jobs_work_direct, NULL, jobs_drop_direct};
static const struct jobs_side jobs_shipd = {
	"shipd", jobs_prepare_shipd, jobs_open_shipd, jobs_close_shipd,
	jobs_submit_shipd, jobs_work_shipd, jobs_verify_shipd, jobs_drop_shipd};

/* Every job completed once and claimed once; the rate and the wait from
 * submit to claim. */
static void jobs_check(struct jobs_run *r, uint64_t t0)
{
	unsigned nw = 0;
	uint64_t *wait = calloc(r->n, sizeof(*wait));
	for (unsigned i = 0; i < r->n; i++) {
		unsigned c = atomic_load(&r->completes[i]);
		r->lost += c == 0;
		r->twice += c > 1;
		r->reclaimed += atomic_load(&r->claims[i]) > 1;
		uint64_t s = atomic_load(&r->submit_ns[i]);
		uint64_t cl = atomic_load(&r->claim_ns[i]);
		if (s && cl)
			wait[nw++] = cl > s ? cl - s : 0;
	}
	if (r->lost || r->twice || r->reclaimed)
		jobs_fail(r, "%u of %u jobs lost, %u completed twice, %u claimed "
		             "twice",
		          r->lost, r->n, r->twice, r->reclaimed);
	uint64_t last = atomic_load(&r->last_ns);
	r->rate = last > t0 ? r->n / ((double)(last - t0) / 1e9) : 0;
	if (nw) {
		qsort(wait, nw, sizeof(*wait), cmp_u64);
		r->wait_p50_us = pct(wait, nw, 0.5);
		r->wait_p99_us = pct(wait, nw, 0.99);
	}
	free(wait);
}

/* Until every job is done, or none progressed for JOBS_IDLE_MS. The apps
 * move progress_ns on while this reads it: ns_since() takes it before the
 * clock and never goes below 0. */
static void jobs_wait(struct jobs_run *r)
{
	while (!atomic_load(&r->stop) && atomic_load(&r->done) < r->n &&
	       ns_since(atomic_load(&r->progress_ns)) <
	           (uint64_t)JOBS_IDLE_MS * 1000000u)
		fx_sleep_ms(1);
	atomic_store(&r->stop, true);
}

/* The apps of a run: workers first, waiting, then the clock starts with
 * the submitters. */
static void jobs_apps(const struct jobs_side *side, struct jobs_run *r,
                      struct sample *s, uint64_t *t0)
{
	struct sample part = {.extra_pid = s->extra_pid};
	int nsub = r->paced ? 1 : JOBS_SUBMITTERS;
	struct jobs_app sub[JOBS_SUBMITTERS] = {0}, wk[JOBS_WORKERS] = {0};
	for (int i = 0; i < nsub; i++) {
		sub[i].r = r;
		side->open(&sub[i], i, false);
	}
	for (int i = 0; i < JOBS_WORKERS; i++) {
		wk[i].r = r;
		side->open(&wk[i], i, true);
	}
	for (int i = 0; i < JOBS_WORKERS && !atomic_load(&r->stop); i++)
		wk[i].started =
		    !pthread_create(&wk[i].t, NULL, side->work, &wk[i]);
	sample_begin(&part);
	*t0 = now_ns();
	atomic_store(&r->progress_ns, *t0);
	for (int i = 0; i < nsub && !atomic_load(&r->stop); i++)
		sub[i].started =
		    !pthread_create(&sub[i].t, NULL, side->submit, &sub[i]);
	jobs_wait(r);
	for (int i = 0; i < nsub; i++)
		if (sub[i].started)
			pthread_join(sub[i].t, NULL);
	for (int i = 0; i < JOBS_WORKERS; i++)
		if (wk[i].started)
			pthread_join(wk[i].t, NULL);
	sample_end(&part);
	sample_add(s, &part);
	for (int i = 0; i < nsub; i++)
		side->close(&sub[i]);
	for (int i = 0; i < JOBS_WORKERS; i++)
		side->close(&wk[i]);
}

static void jobs_run(const struct jobs_side *side, struct jobs_run *r,
                     struct sample *s)
{
	uint64_t t0 = 0;
	if (side->prepare(r)) {
		jobs_apps(side, r, s, &t0);
		jobs_check(r, t0);
		if (!r->failed && side->verify)
			side->verify(r);
	}
	side->drop(r);
	if (r->failed)
		fprintf(stderr, "shipbench: jobs: %s%s: %s (of %u jobs %u lost, "
		                "%u completed twice, %u claimed twice; %.1f jobs/s "
		                "until the last, claim p50 %.1f us)\n",
		        side->name, r->paced ? " paced" : "", r->why, r->n, r->lost,
		        r->twice, r->reclaimed, r->rate, r->wait_p50_us);
}

static struct jobs_run *jobs_run_new(const char *name, unsigned n,
                                     bool paced)
{
	struct jobs_run *r = calloc(1, sizeof(*r));
	r->name = name;
	r->n = n;
	r->paced = paced;
	r->claims = calloc(n, sizeof(*r->claims));
	r->completes = calloc(n, sizeof(*r->completes));
	r->submit_ns = calloc(n, sizeof(*r->submit_ns));
	r->claim_ns = calloc(n, sizeof(*r->claim_ns));
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->claimed, NULL);
	return r;
}

static void jobs_run_free(struct jobs_run *r)
{
	pthread_cond_destroy(&r->claimed);
	pthread_mutex_destroy(&r->mu);
	free(r->claims);
	free(r->completes);
	free(r->submit_ns);
	free(r->claim_ns);
	free(r);
}

static void jobs_use_shipd(struct jobs_run *r, struct shipc *admin,
                           const char *b_sock)
{
	r->socks[0] = opt.socket;
	r->socks[1] = b_sock;
	r->admin = admin;
}

struct jobs_ctx {
	unsigned n, np; /* jobs at full load, and paced */
	struct shipdp b;
	struct shipc *admin;
	unsigned lost_races;    /* direct, over all rounds */
	double loaded_p50_us[2]; /* at full load, the last round's */
};

/* A round of one side: jobs/s at full load, then the paced claim wait;
 * every job of both counts (shipd's CPU per job: A's and B's). */
static void jobs_side_run(const struct jobs_side *side, struct jobs_ctx *c,
                          struct sample *s)
{
	bool ship = side == &jobs_shipd;
	struct jobs_run *r =
	    jobs_run_new(ship ? "shipbench" : "shipbench_jobs", c->n, false);
	struct jobs_run *p = jobs_run_new(
	    ship ? "shipbench_paced" : "shipbench_jobs_paced", c->np, true);
	if (ship) {
		const char *b = c->b.pid ? c->b.sock : opt.socket;
		jobs_use_shipd(r, c->admin, b);
		jobs_use_shipd(p, c->admin, b);
		s->extra_pid = c->b.pid;
	}
	jobs_run(side, r, s);
	jobs_run(side, p, s);
	s->sent = s->ops = r->n + p->n;
	s->delivered = s->sent - r->lost - p->lost;
	if (r->failed)
		sample_fail(s, "%s", r->why);
	if (p->failed)
		sample_fail(s, "paced: %s", p->why);
	s->v[0] = r->rate;
	s->v[1] = p->wait_p50_us;
	s->v[2] = p->wait_p99_us;
	if (!ship)
		c->lost_races += atomic_load(&r->lost_races);
	c->loaded_p50_us[ship] = r->wait_p50_us;
	jobs_run_free(r);
	jobs_run_free(p);
}

static void jobs_side_direct(void *ctx, struct sample *s)
{
	jobs_side_run(&jobs_direct, ctx, s);
}

static void jobs_side_shipd(void *ctx, struct sample *s)
{
	jobs_side_run(&jobs_shipd, ctx, s);
}

static void bench_jobs(void)
{
	static const struct metric m[] = {{"jobs/s", true},
	                                  {"claim p50 us", false},
	                                  {"claim p99 us", false},
	                                  {0}};
	static const struct side sides[] = {
	    {"direct", jobs_side_direct}, {"shipd", jobs_side_shipd}, {0}};
	struct jobs_ctx c = {.n = opt.jobs ? opt.jobs : opt.quick ? 200 : 2000};
	c.np = c.n / 10 > 200 ? 200 : c.n / 10; /* paced */
	if (c.np < 20)
		c.np = c.n < 20 ? c.n : 20;
	if (!shipd_b(&c.b, "jobs"))
		return;
	c.admin = ship_connect("bench-jobs");
	struct scenario sc = {.name = "jobs", .metrics = m, .sides = sides,
	                      .best_effort = false, .ctx = &c};
	run_scenario(&sc);
	if (opt.json)
		printf(",\n{\"scenario\":\"jobs\",\"jobs\":%u,\"paced_jobs\":%u,"
		       "\"submitters\":%d,\"workers\":%d,\"shipds\":%d,"
		       "\"direct_cas_lost\":%u,\"direct_loaded_claim_p50_us\":%.3f,"
		       "\"shipd_loaded_claim_p50_us\":%.3f}",
		       c.n, c.np, JOBS_SUBMITTERS, JOBS_WORKERS, c.b.pid ? 2 : 1,
		       c.lost_races, c.loaded_p50_us[0], c.loaded_p50_us[1]);
	else
		printf("%-8s %u jobs (%u paced) a round, %d submitters on A, %d "
		       "workers on %s%s\n"
		       "%-8s direct lost %u claim races; at full load a claim "
		       "waited %.1f ms direct, %.1f ms shipd (p50, last round)\n",
		       "jobs", c.n, c.np, JOBS_SUBMITTERS, JOBS_WORKERS,
		       c.b.pid ? "A and B" : "A",
		       c.b.pid ? "; shipd cpu per job: A + B" : "", "jobs",
		       c.lost_races, c.loaded_p50_us[0] / 1000,
		       c.loaded_p50_us[1] / 1000);
	shipc_close(c.admin);
	shipd_cleanup(&c.b);
}

/* ---- svc: a service call through two shipds, against nats.c ----
 *
 * Direct, one nats.c connection hosts the service (a queue subscription
 * answering each request with its data from nats.c's callback) and another
 * calls it. Through shipd, an app on shipd B hosts it with the Services
 * API (an endpoint whose handler answers at once with shipc_svc_respond(),
 * served by shipc_svc_run() in a thread of its own) and an app on shipd A
 * calls it, both shipds on one nats-server (B only beside an A of ours).
 * First requests one at a time after a warm-up (the round trip:
 * natsConnection_Request against shipc_request), then SVC_WINDOW in
 * flight (answers/s from the first request to the last answer:
 * natsConnection_PublishRequest to one inbox against
 * shipc_request_async).
 *
 * A request carries its number and a pattern made from it, and every
 * answer is checked against what was sent: an answer lost, duplicated,
 * not as sent or an error fails the scenario, it is not rated. Then the
 * service's own count (calls of its handler, and shipd B's $SRV.STATS)
 * must be the number of requests sent. */

#define SVC_NAME "shipbench"
#define SVC_SUBJECT "bench.svc.echo"
#define SVC_WINDOW 64
#define SVC_WAIT_MS 5000  /* a request's timeout */
#define SVC_IDLE_MS 10000 /* no answer for so long: the rest are lost */
#define SVC_SEQ_LEN 10    /* the request's number, in decimal, leads */
#define SVC_SIZE_MIN 16

struct svc_call;

struct svc_run {
	const char *what;
	unsigned n;    /* requests */
	unsigned warm; /* of which the first are not timed */
	size_t size;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	unsigned sent;
	unsigned done;   /* requests whose fate is known */
	unsigned bad;    /* answers not as sent, or for another request */
	unsigned errors; /* error answers */
	unsigned *got;   /* per request: answers as sent */
	uint64_t t0, last_ns, progress_ns;
	uint64_t *lat; /* one at a time: per request */
	struct svc_call *calls; /* through shipd, in flight: per request */
	bool bad_run;
	char first[160]; /* the first thing that went wrong */
	char why[256];
	double rate;
};

static void svc_run_init(struct svc_run *r, const char *what, unsigned n,
                         unsigned warm)
{
	*r = (struct svc_run){.what = what, .n = n, .warm = warm};
	r->size = opt.size < SVC_SIZE_MIN ? SVC_SIZE_MIN : opt.size;
	r->got = calloc(n, sizeof(*r->got));
	r->lat = calloc(n, sizeof(*r->lat));
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cond, NULL);
}

static void svc_run_finish(struct svc_run *r)
{
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->mu);
	free(r->got);
	free(r->lat);
	free(r->calls);
}

static void svc_note(struct svc_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Keeps the first thing that went wrong; r->mu held. */
static void svc_note(struct svc_run *r, const char *fmt, ...)
{
	if (r->first[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->first, sizeof(r->first), fmt, ap);
	va_end(ap);
}

static void svc_payload(char *buf, size_t size, unsigned seq)
{
	snprintf(buf, size, "%0*u", SVC_SEQ_LEN, seq);
	for (size_t k = SVC_SEQ_LEN; k < size; k++)
		buf[k] = (char)('a' + (seq + k) % 26);
}

/* The request whose payload data is, or -1. */
static long svc_seq_of(const struct svc_run *r, const void *data, size_t len)
{
	const char *p = data;
	char digits[SVC_SEQ_LEN + 1];
	if (len != r->size)
		return -1;
	memcpy(digits, p, SVC_SEQ_LEN);
	digits[SVC_SEQ_LEN] = '\0';
	if (strspn(digits, "0123456789") != SVC_SEQ_LEN)
		return -1;
	unsigned long seq = strtoul(digits, NULL, 10);
	if (seq >= r->n)
		return -1;
	for (size_t k = SVC_SEQ_LEN; k < len; k++)
		if (p[k] != (char)('a' + (seq + k) % 26))
			return -1;
	return (long)seq;
}

/* An answer to request want (-1: to the one its data names). */
static void svc_got(struct svc_run *r, long want, const void *data, size_t len)
{
	long seq = svc_seq_of(r, data, len);
	uint64_t now = now_ns();
	pthread_mutex_lock(&r->mu);
	if (seq < 0) {
		r->bad++;
		svc_note(r, "an answer of %zu bytes not as sent (request %ld)",
		         len, want);
	} else if (want >= 0 && seq != want) {
		r->bad++;
		svc_note(r, "request %ld got the answer to request %ld", want,
		         seq);
	}
	if (seq >= 0 && r->got[seq]++ == 0 && want < 0)
		r->done++;
	else if (seq >= 0 && r->got[seq] > 1)
		svc_note(r, "request %ld answered %u times", seq, r->got[seq]);
	if (want >= 0)
		r->done++;
	r->last_ns = r->progress_ns = now;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->mu);
}

static void svc_failed(struct svc_run *r, bool error_answer, const char *fmt,
                       ...) __attribute__((format(printf, 3, 4)));

/* A request ended without an answer as sent: an error answer, or none. */
static void svc_failed(struct svc_run *r, bool error_answer, const char *fmt,
                       ...)
{
	va_list ap;
	pthread_mutex_lock(&r->mu);
	if (!r->first[0]) {
		va_start(ap, fmt);
		vsnprintf(r->first, sizeof(r->first), fmt, ap);
		va_end(ap);
	}
	r->errors += error_answer;
	r->done++;
	r->progress_ns = now_ns();
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->mu);
}

/* Nothing answered for SVC_IDLE_MS: true, and the rest are lost; r->mu
 * held. */
static bool svc_stalled(struct svc_run *r)
{
	if (ns_since(r->progress_ns) < (uint64_t)SVC_IDLE_MS * 1000000u)
		return false;
	svc_note(r, "no answer for %d ms with %u in flight", SVC_IDLE_MS,
	         r->sent - r->done);
	return true;
}

/* Wait, r->mu held, until at most max requests are in flight; false if
 * answers stopped coming. */
static bool svc_wait_direct(struct svc_run *r, unsigned max)
{
	while (r->sent - r->done > max) {
		if (svc_stalled(r))
			return false;
		struct timespec ts = deadline_in_ms(100);
		pthread_cond_timedwait(&r->cond, &r->mu, &ts);
	}
	return true;
}

/* Every request answered once, as sent; the rate, and the round trips
 * sorted. */
static void svc_check(struct svc_run *r)
{
	unsigned lost = 0, dup = 0;
	for (unsigned i = 0; i < r->n; i++) {
		lost += r->got[i] == 0;
		dup += r->got[i] > 1 ? r->got[i] - 1u : 0;
	}
	if (lost || dup || r->bad || r->errors) {
		r->bad_run = true;
		snprintf(r->why, sizeof(r->why),
		         "%s: %u sent of %u, %u answers lost, %u duplicated, %u not "
		         "as sent, %u errors (first: %s)",
		         r->what, r->sent, r->n, lost, dup, r->bad, r->errors,
		         r->first);
		json_safe(r->why);
		fprintf(stderr, "shipbench: svc: %s\n", r->why);
	}
	if (r->t0 && r->last_ns > r->t0)
		r->rate = (r->n - r->warm) / ((double)(r->last_ns - r->t0) / 1e9);
	qsort(r->lat + r->warm, r->n - r->warm, sizeof(*r->lat), cmp_u64);
}

/* ---- svc directly on nats.c ---- */

static void svc_direct_answer(natsConnection *nc, natsSubscription *sub,
                              natsMsg *m, void *arg)
{
	svc_got(arg, -1, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
	natsMsg_Destroy(m);
}

static natsSubscription *svc_direct_serve(natsConnection *nc)
{
	natsSubscription *ss = NULL;
	if (natsConnection_QueueSubscribe(&ss, nc, SVC_SUBJECT, "q",
	                                  direct_echo_cb, NULL) != NATS_OK) {
		fprintf(stderr, "shipbench: svc: direct: cannot subscribe\n");
		exit(1);
	}
	natsSubscription_SetPendingLimits(ss, -1, -1);
	natsConnection_Flush(nc);
	return ss;
}

static void svc_direct_seq(struct svc_run *r)
{
	natsConnection *srv = nats_connect_opts(true);
	natsConnection *cli = nats_connect_opts(true);
	natsSubscription *ss = svc_direct_serve(srv);
	char *buf = malloc(r->size);
	for (unsigned i = 0; i < r->n; i++) {
		natsMsg *rep = NULL;
		svc_payload(buf, r->size, i);
		uint64_t t0 = now_ns();
		natsStatus s = natsConnection_Request(&rep, cli, SVC_SUBJECT, buf,
		                                      (int)r->size, SVC_WAIT_MS);
		r->lat[i] = now_ns() - t0;
		r->sent++;
		if (s != NATS_OK) {
			svc_failed(r, false, "request %u: %s", i, nats_why(s));
			break;
		}
		svc_got(r, i, natsMsg_GetData(rep),
		        (size_t)natsMsg_GetDataLength(rep));
		natsMsg_Destroy(rep);
	}
	free(buf);
	natsSubscription_Destroy(ss);
	natsConnection_Destroy(srv);
	natsConnection_Destroy(cli);
}

/* Both connections write at once (SendAsap), as for the round trip: with
 * nats.c's flusher on either side or both it was no faster here. */
static void svc_direct_window(struct svc_run *r)
{
	natsConnection *srv = nats_connect_opts(true);
	natsConnection *cli = nats_connect_opts(true);
	natsSubscription *ss = svc_direct_serve(srv), *rs = NULL;
	natsInbox *inbox = NULL;
	char *buf = malloc(r->size);
	if (natsInbox_Create(&inbox) != NATS_OK ||
	    natsConnection_Subscribe(&rs, cli, inbox, svc_direct_answer, r) !=
	        NATS_OK) {
		fprintf(stderr, "shipbench: svc: direct: no inbox\n");
		exit(1);
	}
	natsSubscription_SetPendingLimits(rs, -1, -1);
	natsConnection_Flush(cli);
	pthread_mutex_lock(&r->mu);
	r->t0 = r->progress_ns = now_ns();
	for (unsigned i = 0; i < r->n && svc_wait_direct(r, SVC_WINDOW - 1); i++) {
		pthread_mutex_unlock(&r->mu);
		svc_payload(buf, r->size, i);
		natsStatus s = natsConnection_PublishRequest(cli, SVC_SUBJECT, inbox,
		                                             buf, (int)r->size);
		pthread_mutex_lock(&r->mu);
		if (s != NATS_OK) {
			svc_note(r, "request %u: %s", i, nats_why(s));
			break;
		}
		r->sent++;
	}
	svc_wait_direct(r, 0);
	pthread_mutex_unlock(&r->mu);
	/* An answer sent twice comes before the PONG of a flush of both
	 * connections, and into the subscription's queue: it is counted. */
	natsConnection_Flush(srv);
	natsConnection_Flush(cli);
	int queued = 0;
	for (int k = 0; k < 1000; k++) {
		if (natsSubscription_GetPending(rs, &queued, NULL) != NATS_OK ||
		    queued == 0)
			break;
		fx_sleep_ms(1);
	}
	natsSubscription_Destroy(rs);
	natsSubscription_Destroy(ss);
	natsConnection_Destroy(srv);
	natsConnection_Destroy(cli);
	natsInbox_Destroy(inbox);
	free(buf);
}

/* ---- svc through shipd A (the caller) and B (the service) ---- */

struct svc_host {
	struct shipc *h;
	struct shipc_svc *svc;
	pthread_t t;
	volatile int stop; /* read by shipc_svc_run() every 100 ms */
	int run_rc, run_errno;
	atomic_uint calls;
	atomic_uint respond_failed;
	atomic_int respond_errno;
};

static void svc_echo(struct shipc *h, const struct shipc_svc_req *req,
                     void *arg)
{
	struct svc_host *host = arg;
	atomic_fetch_add(&host->calls, 1);
	if (shipc_svc_respond(req->svc, req->token, req->data, req->len) < 0) {
		atomic_store(&host->respond_errno, errno);
		atomic_fetch_add(&host->respond_failed, 1);
	}
}

/* The app's thread: serve, then stop the service (draining). */
static void *svc_host_run(void *arg)
{
	struct svc_host *host = arg;
	host->run_rc = shipc_svc_run(host->h, &host->stop);
	host->run_errno = errno;
	return NULL;
}

static bool svc_host_start(struct svc_host *host, const char *sock)
{
	struct shipc_svc_endpoint ep = {.name = "echo", .subject = SVC_SUBJECT,
	                                .fn = svc_echo, .arg = host};
	struct shipc_svc_config cfg = {.name = SVC_NAME, .version = "1.0.0",
	                               .description = "shipbench's echo",
	                               .endpoints = &ep, .n_endpoints = 1};
	char err[256];
	host->h = ship_connect_at(sock, "bench-svc");
	host->svc = shipc_svc_add(host->h, &cfg);
	if (!host->svc) {
		fprintf(stderr, "shipbench: svc: shipc_svc_add: %s (%s)\n",
		        strerror(errno), shipc_last_error(host->h, err, sizeof(err)));
		shipc_close(host->h);
		return false;
	}
	pthread_create(&host->t, NULL, svc_host_run, host);
	return true;
}

/* false (told) if shipc_svc_run() failed. */
static bool svc_host_stop(struct svc_host *host)
{
	host->stop = 1;
	pthread_join(host->t, NULL);
	shipc_close(host->h);
	if (host->run_rc == 0)
		return true;
	fprintf(stderr, "shipbench: svc: shipc_svc_run: %s\n",
	        strerror(host->run_errno));
	return false;
}

/* An error answer: the value of Nats-Service-Error (or "") and its code. */
static const char *svc_error_of(const struct shipc_msg *m, const char **code)
{
	const char *text = NULL;
	*code = "";
	for (size_t k = 0; k < m->n_headers; k++) {
		if (!strcasecmp(m->headers[k].key, "Nats-Service-Error"))
			text = m->headers[k].value;
		else if (!strcasecmp(m->headers[k].key, "Nats-Service-Error-Code"))
			*code = m->headers[k].value;
	}
	return text ? text : **code ? "" : NULL;
}

static void svc_ship_seq(struct svc_run *r, struct shipc *h)
{
	char *buf = malloc(r->size), err[256];
	for (unsigned i = 0; i < r->n; i++) {
		struct shipc_msg *rep = NULL;
		const char *text, *code;
		svc_payload(buf, r->size, i);
		uint64_t t0 = now_ns();
		int rc = shipc_request(h, SVC_SUBJECT, buf, r->size, SVC_WAIT_MS,
		                       &rep);
		r->lat[i] = now_ns() - t0;
		r->sent++;
		if (rc < 0) {
			svc_failed(r, false, "request %u: %s (%s)", i, strerror(errno),
			           shipc_last_error(h, err, sizeof(err)));
			break;
		}
		if ((text = svc_error_of(rep, &code))) {
			svc_failed(r, true, "request %u: error %s %s", i, code, text);
			shipc_msg_free(rep);
			break;
		}
		svc_got(r, i, rep->data, rep->len);
		shipc_msg_free(rep);
	}
	free(buf);
}

struct svc_call {
	struct svc_run *r;
	unsigned i;
};

static void svc_ship_answer(struct shipc *h, const struct shipc_msg *rep,
                            int err, void *arg)
{
	struct svc_call *c = arg;
	const char *text, *code;
	if (!rep)
		svc_failed(c->r, false, "request %u: %s", c->i, strerror(err));
	else if ((text = svc_error_of(rep, &code)))
		svc_failed(c->r, true, "request %u: error %s %s", c->i, code, text);
	else
		svc_got(c->r, c->i, rep->data, rep->len);
}

/* Dispatch until at most max requests are in flight; false if answers
 * stopped coming. Callbacks run in this thread, from shipc_dispatch();
 * r->mu is taken anyway, as everywhere else. */
static bool svc_wait_ship(struct svc_run *r, struct shipc *h, unsigned max)
{
	for (;;) {
		pthread_mutex_lock(&r->mu);
		bool room = r->sent - r->done <= max;
		bool stalled = !room && svc_stalled(r);
		pthread_mutex_unlock(&r->mu);
		if (room || stalled)
			return room;
		shipc_dispatch(h, 10);
	}
}

static void svc_ship_window(struct svc_run *r, struct shipc *h)
{
	/* A callback still pending when the run gives up runs from
	 * shipc_close(): r->calls stays until then. */
	struct svc_call *calls = r->calls = calloc(r->n, sizeof(*calls));
	char *buf = malloc(r->size), err[256];
	struct shipc_msg m = {.subject = SVC_SUBJECT, .reply = "", .data = buf,
	                      .len = r->size};
	r->t0 = r->progress_ns = now_ns();
	for (unsigned i = 0; i < r->n && svc_wait_ship(r, h, SVC_WINDOW - 1);
	     i++) {
		calls[i] = (struct svc_call){r, i};
		svc_payload(buf, r->size, i);
		if (shipc_request_async(h, &m, SVC_WAIT_MS, svc_ship_answer,
		                        &calls[i]) < 0) {
			pthread_mutex_lock(&r->mu);
			svc_note(r, "request %u: %s (%s)", i, strerror(errno),
			         shipc_last_error(h, err, sizeof(err)));
			pthread_mutex_unlock(&r->mu);
			break;
		}
		pthread_mutex_lock(&r->mu);
		r->sent++;
		pthread_mutex_unlock(&r->mu);
	}
	svc_wait_ship(r, h, 0);
	free(buf);
}

/* What shipd B's $SRV.STATS says of the endpoint. */
struct svc_stats {
	bool ok;
	uint64_t requests, errors;
	double avg_us;
};

static void svc_stats(struct shipc *h, struct svc_host *host,
                      struct svc_stats *st)
{
	char **rep = NULL, req[32], errs[32], avg[32], err[256];
	size_t n = 0;
	if (shipc_svc_discover(h, "STATS", SVC_NAME, shipc_svc_id(host->svc), 0,
	                       &rep, &n) < 0) {
		fprintf(stderr, "shipbench: svc: STATS: %s (%s)\n", strerror(errno),
		        shipc_last_error(h, err, sizeof(err)));
		return;
	}
	/* One endpoint: its keys are the first of their names. */
	if (n != 1) {
		fprintf(stderr, "shipbench: svc: STATS: %zu answers, not 1\n", n);
	} else if (!json_get(rep[0], "num_requests", req, sizeof(req)) ||
	           !json_get(rep[0], "num_errors", errs, sizeof(errs)) ||
	           !json_get(rep[0], "average_processing_time", avg,
	                     sizeof(avg))) {
		fprintf(stderr, "shipbench: svc: STATS: %.300s\n", rep[0]);
	} else {
		st->ok = true;
		st->requests = strtoull(req, NULL, 10);
		st->errors = strtoull(errs, NULL, 10);
		st->avg_us = strtod(avg, NULL) / 1000.0;
	}
	shipc_svc_replies_free(rep, n);
}

/* ---- svc: a run, both ways ---- */

/* The service saw each request sent once, and shipd B counts the same;
 * false (told on stderr) if not. */
static bool svc_counts_ok(struct svc_host *host, const struct svc_stats *st,
                          unsigned sent)
{
	unsigned calls = atomic_load(&host->calls);
	unsigned rf = atomic_load(&host->respond_failed);
	bool ok = calls == sent && !rf && st->ok && st->requests == calls &&
	          !st->errors;
	if (rf)
		fprintf(stderr, "shipbench: svc: %u shipc_svc_respond() failed "
		                "(last: %s)\n",
		        rf, strerror(atomic_load(&host->respond_errno)));
	if (calls != sent || (st->ok && (st->requests != calls || st->errors)))
		fprintf(stderr, "shipbench: svc: %u requests sent through shipd, "
		                "the handler ran %u times, shipd B's STATS count "
		                "%" PRIu64 " requests and %" PRIu64 " errors\n",
		        sent, calls, st->requests, st->errors);
	return ok;
}

static void svc_usage_begin(struct sample *part, pid_t b)
{
	*part = (struct sample){.extra_pid = b};
	sample_begin(part);
}

static void svc_usage_end(struct sample *s, struct sample *part)
{
	sample_end(part);
	sample_add(s, part);
}

/* Both runs into s: requests sent, answered once as sent; the round
 * trips of the first and the rate of the second. */
static void svc_sample(struct sample *s, struct svc_run *seq,
                       struct svc_run *win)
{
	struct svc_run *both[2] = {seq, win};
	for (int k = 0; k < 2; k++) {
		struct svc_run *r = both[k];
		svc_check(r);
		s->sent += r->n;
		for (unsigned i = 0; i < r->n; i++)
			s->delivered += r->got[i] == 1;
		if (r->bad_run)
			sample_fail(s, "%s", r->why);
	}
	s->ops = s->sent;
	unsigned n = seq->n - seq->warm;
	s->v[0] = pct(seq->lat + seq->warm, n, 0.5);
	s->v[1] = pct(seq->lat + seq->warm, n, 0.9);
	s->v[2] = pct(seq->lat + seq->warm, n, 0.99);
	s->v[3] = win->rate;
}

struct svc_ctx {
	unsigned warm, nl, nw;
	struct shipdp b;
	size_t size;
	unsigned calls;         /* the handler's, over all rounds */
	struct svc_stats st;    /* shipd B's, the last round's */
};

static void svc_side_direct(void *ctx, struct sample *s)
{
	struct svc_ctx *c = ctx;
	struct svc_run seq, win;
	svc_run_init(&seq, "direct one at a time", c->warm + c->nl, c->warm);
	svc_run_init(&win, "direct windowed", c->nw, 0);
	svc_direct_seq(&seq);
	svc_direct_window(&win);
	svc_sample(s, &seq, &win);
	svc_run_finish(&seq);
	svc_run_finish(&win);
}

/* A service hosted anew on B each round, its counts checked. */
static void svc_side_shipd(void *ctx, struct sample *s)
{
	struct svc_ctx *c = ctx;
	struct svc_run seq, win;
	struct svc_host host = {0};
	struct sample part;
	svc_run_init(&seq, "shipd one at a time", c->warm + c->nl, c->warm);
	svc_run_init(&win, "shipd windowed", c->nw, 0);
	c->size = seq.size;
	bool served = svc_host_start(&host, c->b.pid ? c->b.sock : opt.socket);
	if (served) {
		struct shipc *h = ship_connect("bench-svc-call");
		svc_usage_begin(&part, c->b.pid);
		svc_ship_seq(&seq, h);
		svc_usage_end(s, &part);
		svc_usage_begin(&part, c->b.pid);
		svc_ship_window(&win, h);
		svc_usage_end(s, &part);
		c->st = (struct svc_stats){0};
		svc_stats(h, &host, &c->st);
		served = svc_host_stop(&host);
		shipc_close(h);
		c->calls += atomic_load(&host.calls);
	} else {
		svc_note(&seq, "no service: shipc_svc_add failed");
		svc_note(&win, "no service: shipc_svc_add failed");
	}
	svc_sample(s, &seq, &win);
	if (!served)
		sample_fail(s, "the service did not run");
	else if (!svc_counts_ok(&host, &c->st, seq.sent + win.sent))
		sample_fail(s, "the service's counts are not the requests sent");
	svc_run_finish(&seq);
	svc_run_finish(&win);
}

static void bench_svc(void)
{
	static const struct metric m[] = {{"p50 us", false},
	                                  {"p90 us", false},
	                                  {"p99 us", false},
	                                  {"answers/s", true},
	                                  {0}};
	static const struct side sides[] = {
	    {"direct", svc_side_direct}, {"shipd", svc_side_shipd}, {0}};
	struct svc_ctx c = {.warm = opt.quick ? 20 : 200,
	                    .nl = opt.quick ? 200 : 2000,
	                    .nw = opt.quick ? 5000 : 50000};
	if (!shipd_b(&c.b, "svc"))
		return;
	struct scenario sc = {.name = "svc", .metrics = m, .sides = sides,
	                      .best_effort = false, .ctx = &c};
	run_scenario(&sc);
	tell_added(&sc, 1, "");
	if (opt.json)
		printf(",\n{\"scenario\":\"svc\",\"requests\":%u,\"warm_up\":%u,"
		       "\"windowed\":%u,\"window\":%d,\"size\":%zu,\"shipds\":%d,"
		       "\"handler_calls\":%u,\"stats_ok\":%s,\"stats_requests\":%"
		       PRIu64 ",\"stats_errors\":%" PRIu64 ","
		       "\"stats_avg_processing_us\":%.3f}",
		       c.nl, c.warm, c.nw, SVC_WINDOW, c.size, c.b.pid ? 2 : 1,
		       c.calls, c.st.ok ? "true" : "false", c.st.requests,
		       c.st.errors, c.st.avg_us);
	else
		printf("%-8s %u one at a time (after %u), %u with %d in flight, "
		       "%zu bytes a round; service on %s, caller on A%s\n"
		       "%-8s the handler ran %u times in all; shipd B's STATS (last "
		       "round): %" PRIu64 " requests, %" PRIu64 " errors, %.1f us "
		       "average from NATS to answer\n",
		       "svc", c.nl, c.warm, c.nw, SVC_WINDOW, c.size,
		       c.b.pid ? "B" : "A", c.b.pid ? "; shipd cpu: A + B" : "",
		       "svc", c.calls, c.st.requests, c.st.errors, c.st.avg_us);
	shipd_cleanup(&c.b);
}

/* ---- fleet: events from two robots to the hub, and catch-up ----
 *
 * The topology of tests/integration/test_fleet_domains.c with two robots:
 * a hub of 3 nodes (JetStream domain hub), each robot a leaf server
 * (domain robot1, robot2) whose uplink runs through a proxy of ours, a
 * shipd on each robot (-o hub_domain=hub), and on the hub FLEET_EVENTS
 * (R3) sourcing both robots' SHIP_EVENTS. The scenario brings all of it:
 * it uses neither --nats nor --socket.
 *
 * hub events/s: both robots emit the same number of events at once, a
 * thread each, FLEET_WINDOW in flight; the clock runs from the first emit
 * until FLEET_EVENTS holds every event the robots stored (STREAM.INFO on
 * a hub node every FLEET_POLL_MS). Direct is nats.c's async JetStream
 * publish to the leaf, on the same subject with the bytes shipd stores;
 * through shipd it is shipc_emit_async. robot acked/s is the same run
 * until the last acknowledgement, on the robots alone.
 *
 * catch-up s: both uplinks cut, each robot emits as many through shipd
 * (every one must be acknowledged on the robot), then the uplinks come
 * back: from the restore until FLEET_EVENTS holds them all, the leaves'
 * reconnect included (and given apart). That is NATS's sourcing, the same
 * with or without shipd: there is no direct run to compare with.
 *
 * The hub must hold exactly what the robots stored (their streams' last
 * sequence, so shipd's own uplink.* events count too) and each robot at
 * least what it acknowledged: a run that lost or duplicated an event, or
 * whose emits failed, is a failure, not a rate. */

#define FLEET_ROBOTS 2
#define FLEET_WINDOW 1024
#define FLEET_POLL_MS 10
#define FLEET_IDLE_MS 10000 /* the hub gained nothing for so long: lost */
#define FLEET_WAIT_MS 40000 /* the longest a run waits for the hub */
/* Per robot and run: three runs stay under SHIP_EVENTS' 100,000
 * messages, so the robots' streams never drop what the hub needs. */
#define FLEET_EVENTS_MAX 30000

struct fleet_robot {
	char name[16]; /* also its JetStream domain */
	struct fx_proxy uplink;
	struct fx_node leaf;
	struct shipdp sd;
	natsConnection *nc; /* asks the leaf about SHIP_EVENTS */
};

struct fleet {
	struct fx_hub hub;
	struct fleet_robot robot[FLEET_ROBOTS];
	natsConnection *hub_nc; /* asks a hub node about FLEET_EVENTS */
	char *payload_json, *envelope;
	unsigned n;     /* events per robot and run */
	unsigned extra; /* shipd's own events the robots stored, all rounds */
};

/* One robot's emits in a run, in a thread of its own. */
struct fleet_emitter {
	struct fleet *f;
	struct fleet_robot *r;
	pthread_barrier_t *go;
	pthread_t t;
	unsigned acked;
	atomic_uint failed;
	uint64_t last_ns; /* the last acknowledgement (or failure) */
	atomic_bool done;
};

struct fleet_emit {
	struct fleet_emitter m[FLEET_ROBOTS];
	pthread_barrier_t go;
	uint64_t t0;
};

struct fleet_run {
	const char *what;
	bool failed, robot_bad; /* robot_bad: on the robots already */
	char why[256];
	unsigned acked, emit_failed, extra;
	long long hub, want; /* FLEET_EVENTS' messages; what the robots hold */
	uint64_t t0, acked_ns, hub_ns;
	double hub_rate, robot_rate, reconnect_s, catchup_s;
};

static void fleet_fail(struct fleet_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void fleet_fail(struct fleet_run *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fail_once(&r->failed, r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
}

/* A stream's state (the JetStream of the server nc is connected to):
 * messages and last sequence. false if no answer came. */
static bool fleet_stream(natsConnection *nc, const char *stream,
                         long long *msgs, long long *last_seq)
{
	char subj[128], buf[16384];
	natsMsg *rep = NULL;
	snprintf(subj, sizeof(subj), "$JS.API.STREAM.INFO.%s", stream);
	if (natsConnection_RequestString(&rep, nc, subj, "", 2000) != NATS_OK)
		return false;
	fx_strcopy(buf, sizeof(buf), natsMsg_GetData(rep),
	           (size_t)natsMsg_GetDataLength(rep));
	natsMsg_Destroy(rep);
	if (strstr(buf, "\"error\""))
		return false;
	*msgs = fx_json_int(buf, "\"state\"", "messages");
	*last_seq = fx_json_int(buf, "\"state\"", "last_seq");
	return *msgs >= 0 && *last_seq >= 0;
}

static bool fleet_hub_msgs(struct fleet *f, long long *msgs)
{
	long long last;
	return fleet_stream(f->hub_nc, "FLEET_EVENTS", msgs, &last);
}

/* Every event the robots ever stored, and each one's (seq may be NULL). */
static bool fleet_robots_seq(struct fleet *f, long long *total,
                             long long *seq)
{
	*total = 0;
	for (int i = 0; i < FLEET_ROBOTS; i++) {
		long long msgs, last;
		if (!fleet_stream(f->robot[i].nc, "SHIP_EVENTS", &msgs, &last))
			return false;
		*total += last;
		if (seq)
			seq[i] = last;
	}
	return true;
}

/* What a server's JetStream says of stream, from its state on (the
 * hub adds its sources), on stderr: why a run waited in vain. */
static void fleet_show(natsConnection *nc, const char *who,
                       const char *stream)
{
	char subj[128], buf[16384];
	natsMsg *rep = NULL;
	snprintf(subj, sizeof(subj), "$JS.API.STREAM.INFO.%s", stream);
	if (natsConnection_RequestString(&rep, nc, subj, "", 2000) != NATS_OK)
		return;
	fx_strcopy(buf, sizeof(buf), natsMsg_GetData(rep),
	           (size_t)natsMsg_GetDataLength(rep));
	natsMsg_Destroy(rep);
	const char *state = strstr(buf, "\"state\":");
	fprintf(stderr, "shipbench: fleet: %s %s: %s\n", who, stream,
	        state ? state : buf);
}

static void fleet_show_all(struct fleet *f)
{
	fleet_show(f->hub_nc, "hub", "FLEET_EVENTS");
	for (int i = 0; i < FLEET_ROBOTS; i++)
		fleet_show(f->robot[i].nc, f->robot[i].name, "SHIP_EVENTS");
}

/* ---- fleet: the emitters ---- */

static void *fleet_emit_shipd(void *arg)
{
	struct fleet_emitter *m = arg;
	char name[32];
	snprintf(name, sizeof(name), "bench-fleet-%s", m->r->name);
	struct shipc *h = ship_connect_at(m->r->sd.sock, name);
	struct shipc_emit e = {.event_type = "bench.fleet",
	                       .source = "shipbench",
	                       .payload_json = m->f->payload_json};
	struct emit_window w = {0};
	pthread_barrier_wait(m->go);
	for (unsigned i = 0; i < m->f->n; i++) {
		while (w.inflight >= FLEET_WINDOW)
			shipc_dispatch(h, 10);
		if (shipc_emit_async(h, &e, emit_done, &w) == 0)
			w.inflight++;
		else
			w.failed++;
	}
	uint64_t end = now_ns() + (uint64_t)FLEET_WAIT_MS * 1000000u;
	while (w.inflight && now_ns() < end)
		shipc_dispatch(h, 10);
	m->last_ns = now_ns();
	shipc_close(h); /* what is still in flight fails now */
	m->acked = w.acked;
	atomic_store(&m->failed, w.failed);
	atomic_store(&m->done, true);
	return NULL;
}

static void fleet_js_err(jsCtx *js, jsPubAckErr *pae, void *arg)
{
	struct fleet_emitter *m = arg;
	atomic_fetch_add(&m->failed, 1);
}

static void *fleet_emit_direct(void *arg)
{
	struct fleet_emitter *m = arg;
	natsConnection *nc = nats_connect_url(m->r->leaf.url, false);
	jsCtx *js = NULL;
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = FLEET_WINDOW;
	jo.PublishAsync.ErrHandler = fleet_js_err;
	jo.PublishAsync.ErrHandlerClosure = m;
	/* A full window waits for room, it does not fail the publish. */
	jo.PublishAsync.StallWait = FLEET_WAIT_MS;
	natsConnection_JetStream(&js, nc, &jo);
	int len = (int)strlen(m->f->envelope);
	unsigned sent = 0, pending = 0;
	pthread_barrier_wait(m->go);
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < m->f->n; i++) {
		char id[64];
		jsPubOptions po;
		jsPubOptions_Init(&po);
		snprintf(id, sizeof(id), "%s-%u-%" PRIu64, m->r->name, i, t0);
		po.MsgId = id;
		po.MaxWait = 10000;
		if (js_PublishAsync(js, "ship.events.bench.fleet", m->f->envelope,
		                    len, &po) == NATS_OK)
			sent++;
	}
	jsPubOptions cpo;
	jsPubOptions_Init(&cpo);
	cpo.MaxWait = FLEET_WAIT_MS;
	if (js_PublishAsyncComplete(js, &cpo) != NATS_OK) {
		natsMsgList l = {0};
		if (js_PublishAsyncGetPendingList(&l, js) == NATS_OK) {
			pending = (unsigned)l.Count;
			natsMsgList_Destroy(&l);
		}
	}
	m->last_ns = now_ns();
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	unsigned errs = atomic_load(&m->failed) + pending; /* ack errors too */
	m->acked = sent > errs ? sent - errs : 0;
	atomic_store(&m->failed, m->f->n - m->acked);
	atomic_store(&m->done, true);
	return NULL;
}

/* Start an emitter on each robot; they begin together at e->t0. */
static void fleet_emit_start(struct fleet *f, struct fleet_emit *e,
                             bool via_shipd)
{
	memset(e, 0, sizeof(*e));
	pthread_barrier_init(&e->go, NULL, FLEET_ROBOTS + 1);
	for (int i = 0; i < FLEET_ROBOTS; i++) {
		struct fleet_emitter *m = &e->m[i];
		m->f = f;
		m->r = &f->robot[i];
		m->go = &e->go;
		if (pthread_create(&m->t, NULL,
		                   via_shipd ? fleet_emit_shipd : fleet_emit_direct,
		                   m) != 0) {
			fprintf(stderr, "shipbench: fleet: no thread\n");
			exit(1);
		}
	}
	pthread_barrier_wait(&e->go);
	e->t0 = now_ns();
}

static bool fleet_emit_done(struct fleet_emit *e)
{
	for (int i = 0; i < FLEET_ROBOTS; i++)
		if (!atomic_load(&e->m[i].done))
			return false;
	return true;
}

/* Join the emitters (each bounded by FLEET_WAIT_MS) and count. */
static void fleet_emit_join(struct fleet_emit *e, struct fleet_run *r)
{
	r->t0 = e->t0;
	for (int i = 0; i < FLEET_ROBOTS; i++) {
		struct fleet_emitter *m = &e->m[i];
		pthread_join(m->t, NULL);
		r->acked += m->acked;
		r->emit_failed += atomic_load(&m->failed);
		if (m->last_ns > r->acked_ns)
			r->acked_ns = m->last_ns;
	}
	pthread_barrier_destroy(&e->go);
	if (r->acked_ns > r->t0)
		r->robot_rate = r->acked / ((double)(r->acked_ns - r->t0) / 1e9);
	if (r->emit_failed) {
		r->robot_bad = true;
		fleet_fail(r, "%u of %u emits failed", r->emit_failed,
		           r->emit_failed + r->acked);
	}
}

/* ---- fleet: waiting for the hub ---- */

/* The leaves whose uplink is back, each the first time it is seen. */
static void fleet_watch_leaves(struct fleet *f, uint64_t *up_ns)
{
	for (int i = 0; i < FLEET_ROBOTS; i++)
		if (!up_ns[i] && fx_leaf_connected(&f->robot[i].leaf))
			up_ns[i] = now_ns();
}

/* Poll until FLEET_EVENTS holds every event the robots stored, once the
 * emitters of e (if any) are done: r->hub_ns is when it did. Fails r if
 * the hub gained nothing for FLEET_IDLE_MS, or took over FLEET_WAIT_MS
 * from start, or holds more. up_ns (or NULL): the leaves' reconnects. */
static void fleet_wait_hub(struct fleet *f, struct fleet_emit *e,
                           struct fleet_run *r, uint64_t start,
                           uint64_t *up_ns)
{
	uint64_t progress = start;
	long long hub = -1, want = -1;
	for (;;) {
		uint64_t t = now_ns();
		long long got;
		if (up_ns)
			fleet_watch_leaves(f, up_ns);
		/* The hub first: what the robots hold after cannot be less. */
		if (fleet_hub_msgs(f, &got) && got != hub) {
			hub = got;
			progress = t;
		}
		bool emitted = !e || fleet_emit_done(e);
		if (emitted && hub >= want && hub >= 0)
			fleet_robots_seq(f, &want, NULL);
		if (emitted && hub == want) {
			r->hub_ns = t;
			break;
		}
		if (emitted && hub > want && want >= 0) {
			fleet_fail(r, "FLEET_EVENTS holds %lld events, the robots "
			              "stored %lld: duplicated",
			           hub, want);
			fleet_show_all(f);
			break;
		}
		if (t - progress > (uint64_t)FLEET_IDLE_MS * 1000000u ||
		    t - start > (uint64_t)FLEET_WAIT_MS * 1000000u) {
			fleet_fail(r, "FLEET_EVENTS holds %lld of the %lld events the "
			              "robots stored after %.1f s: lost",
			           hub, want, (double)(t - start) / 1e9);
			fleet_show_all(f);
			break;
		}
		fx_sleep_ms(FLEET_POLL_MS);
	}
	r->hub = hub;
	r->want = want;
}

/* Before a run: the hub holds what the robots stored; each one's last
 * sequence into seq. */
static bool fleet_settled(struct fleet *f, struct fleet_run *r,
                          long long *seq)
{
	struct fleet_run before = {0};
	long long total;
	fleet_wait_hub(f, NULL, &before, now_ns(), NULL);
	if (before.failed) {
		fleet_fail(r, "before the run: %s", before.why);
		return false;
	}
	if (!fleet_robots_seq(f, &total, seq)) {
		fleet_fail(r, "a robot's SHIP_EVENTS did not answer");
		return false;
	}
	return true;
}

/* Each robot stored at least what it acknowledged (more: shipd's own
 * uplink.* events). */
static void fleet_check_robots(struct fleet *f, struct fleet_run *r,
                               const long long *base, struct fleet_emit *e)
{
	long long seq[FLEET_ROBOTS], total;
	if (!fleet_robots_seq(f, &total, seq)) {
		fleet_fail(r, "a robot's SHIP_EVENTS did not answer");
		return;
	}
	for (int i = 0; i < FLEET_ROBOTS; i++) {
		long long stored = seq[i] - base[i];
		if (stored < (long long)e->m[i].acked) {
			r->robot_bad = true;
			fleet_fail(r, "%s stored %lld of the %u events it "
			              "acknowledged",
			           f->robot[i].name, stored, e->m[i].acked);
		} else {
			r->extra += (unsigned)(stored - e->m[i].acked);
		}
	}
}

static void fleet_usage_begin(struct fleet *f, struct usage *u)
{
	for (int i = 0; i < FLEET_ROBOTS; i++)
		usage_begin_at(&u[i], f->robot[i].sd.pid);
}

/* Both shipds' CPU together, the larger peak, into u[0]. */
static void fleet_usage_end(struct fleet *f, struct usage *u)
{
	for (int i = 0; i < FLEET_ROBOTS; i++)
		usage_end_at(&u[i], f->robot[i].sd.pid);
	for (int i = 1; i < FLEET_ROBOTS; i++) {
		u[0].cpu_s += u[i].cpu_s;
		if (u[i].peak_kib > u[0].peak_kib)
			u[0].peak_kib = u[i].peak_kib;
	}
}

/* ---- fleet: the runs ---- */

static void fleet_rate(struct fleet *f, bool via_shipd, struct fleet_run *r,
                       struct usage *u)
{
	long long base[FLEET_ROBOTS];
	struct fleet_emit e;
	if (!fleet_settled(f, r, base)) {
		r->robot_bad = true; /* nothing measured */
		return;
	}
	if (via_shipd)
		fleet_usage_begin(f, u);
	fleet_emit_start(f, &e, via_shipd);
	fleet_wait_hub(f, &e, r, e.t0, NULL);
	fleet_emit_join(&e, r);
	if (via_shipd)
		fleet_usage_end(f, u);
	fleet_check_robots(f, r, base, &e);
	if (r->hub_ns > r->t0)
		r->hub_rate = r->acked / ((double)(r->hub_ns - r->t0) / 1e9);
}

static void fleet_catchup(struct fleet *f, struct fleet_run *r)
{
	long long base[FLEET_ROBOTS], hub_cut = -1, hub_after = -1;
	uint64_t up_ns[FLEET_ROBOTS] = {0};
	struct fleet_emit e;
	if (!fleet_settled(f, r, base))
		return;
	fleet_hub_msgs(f, &hub_cut);
	for (int i = 0; i < FLEET_ROBOTS; i++)
		fx_proxy_cut(&f->robot[i].uplink);
	for (int i = 0; i < FLEET_ROBOTS; i++) {
		struct fx_node *l = &f->robot[i].leaf;
		for (int k = 0; k < 100 && fx_leaf_connected(l); k++)
			fx_sleep_ms(50); /* it sees EOF at once */
		if (fx_leaf_connected(l))
			fleet_fail(r, "%s's uplink is still up after the cut", l->name);
	}
	fleet_emit_start(f, &e, true);
	fleet_emit_join(&e, r);
	fleet_check_robots(f, r, base, &e);
	if (hub_cut >= 0 && fleet_hub_msgs(f, &hub_after) &&
	    hub_after != hub_cut)
		fleet_fail(r, "FLEET_EVENTS went from %lld to %lld while cut",
		           hub_cut, hub_after);
	uint64_t restored = now_ns();
	for (int i = 0; i < FLEET_ROBOTS; i++)
		fx_proxy_restore(&f->robot[i].uplink);
	if (!r->failed)
		fleet_wait_hub(f, NULL, r, restored, up_ns);
	for (int i = 0; i < FLEET_ROBOTS; i++) {
		if (!up_ns[i] && !fx_leaf_wait_connected(&f->robot[i].leaf, 15000))
			fleet_fail(r, "%s's uplink did not come back",
			           f->robot[i].name);
		else if (!up_ns[i])
			up_ns[i] = now_ns();
		double s = (double)(up_ns[i] - restored) / 1e9;
		if (s > r->reconnect_s)
			r->reconnect_s = s;
	}
	if (r->hub_ns > restored)
		r->catchup_s = (double)(r->hub_ns - restored) / 1e9;
}

/* ---- fleet: the topology ---- */

/* The hub, the robots with their shipds, FLEET_EVENTS; false (told on
 * stderr) if any of it did not come up. */
static bool fleet_up(struct fleet *f)
{
	static const char *const extra[] = {"-o", "hub_domain=hub", NULL};
	int ports[FX_HUB_MAX];
	if (fx_hub_start(&f->hub, 3, "hub") < 0) {
		fprintf(stderr, "shipbench: fleet: the hub did not start\n");
		return false;
	}
	int np = fx_hub_leaf_ports(&f->hub, ports, FX_HUB_MAX);
	for (int i = 0; i < FLEET_ROBOTS; i++) {
		struct fleet_robot *r = &f->robot[i];
		snprintf(r->name, sizeof(r->name), "robot%d", i + 1);
		if (fx_proxy_start(&r->uplink, ports, np) < 0 ||
		    fx_leaf_start(&r->leaf, r->name, &r->uplink.port, 1) < 0) {
			fprintf(stderr, "shipbench: fleet: %s did not start\n",
			        r->name);
			return false;
		}
	}
	for (int i = 0; i < FLEET_ROBOTS; i++) {
		struct fleet_robot *r = &f->robot[i];
		if (!fx_leaf_wait_connected(&r->leaf, 15000) ||
		    shipd_start(&r->sd, r->leaf.url, extra) < 0 ||
		    !fx_wait_link(r->sd.sock, 10000)) {
			fprintf(stderr, "shipbench: fleet: %s: no uplink or no "
			                "shipd\n",
			        r->name);
			return false;
		}
		r->nc = nats_connect_url(r->leaf.url, false);
	}
	f->hub_nc = nats_connect_url(f->hub.node[0].url, false);
	/* One event each: shipd declares SHIP_EVENTS on its robot. */
	for (int i = 0; i < FLEET_ROBOTS; i++) {
		struct shipc *h = ship_connect_at(f->robot[i].sd.sock,
		                                  "bench-fleet-probe");
		struct shipc_emit e = {.event_type = "bench.fleet",
		                       .source = "shipbench",
		                       .payload_json = f->payload_json};
		int rc = -1;
		for (int k = 0; k < 100 && (rc = shipc_emit(h, &e, NULL)) < 0; k++)
			fx_sleep_ms(50);
		shipc_close(h);
		if (rc < 0) {
			fprintf(stderr, "shipbench: fleet: %s: no SHIP_EVENTS\n",
			        f->robot[i].name);
			return false;
		}
	}
	/* conf/fleet/hub/FLEET_EVENTS.json without its age and size limits. */
	char cfg[1024], buf[4096];
	size_t off = (size_t)snprintf(cfg, sizeof(cfg),
	                              "{\"name\":\"FLEET_EVENTS\",\"storage\":"
	                              "\"file\",\"num_replicas\":3,\"discard\":"
	                              "\"old\",\"duplicate_window\":100000000,"
	                              "\"sources\":[");
	for (int i = 0; i < FLEET_ROBOTS; i++)
		off += (size_t)snprintf(cfg + off, sizeof(cfg) - off,
		                        "%s{\"name\":\"SHIP_EVENTS\",\"external\":"
		                        "{\"api\":\"$JS.%s.API\",\"deliver\":\"\"}}",
		                        i ? "," : "", f->robot[i].name);
	snprintf(cfg + off, sizeof(cfg) - off, "]}");
	natsMsg *rep = NULL;
	if (natsConnection_RequestString(&rep, f->hub_nc,
	                                 "$JS.API.STREAM.CREATE.FLEET_EVENTS", cfg,
	                                 10000) != NATS_OK) {
		fprintf(stderr, "shipbench: fleet: no answer to STREAM.CREATE\n");
		return false;
	}
	fx_strcopy(buf, sizeof(buf), natsMsg_GetData(rep),
	           (size_t)natsMsg_GetDataLength(rep));
	natsMsg_Destroy(rep);
	if (strstr(buf, "\"error\"")) {
		fprintf(stderr, "shipbench: fleet: FLEET_EVENTS: %s\n", buf);
		return false;
	}
	return true;
}

static void fleet_down(struct fleet *f)
{
	natsConnection_Destroy(f->hub_nc);
	for (int i = 0; i < FLEET_ROBOTS; i++) {
		struct fleet_robot *r = &f->robot[i];
		natsConnection_Destroy(r->nc);
		shipd_cleanup(&r->sd);
		fx_proxy_stop(&r->uplink);
		fx_leaf_cleanup(&r->leaf);
	}
	fx_hub_cleanup(&f->hub);
}

/* ---- fleet: the rows ---- */

/* The catch-up: absolute, NATS's sourcing, no direct run. */
static void fleet_catchup_row(struct fleet_run *c)
{
	if (c->failed)
		bench_failures++;
	if (opt.json) {
		printf(",\n{\"scenario\":\"fleet\",\"metric\":\"catch-up s\","
		       "\"absolute\":true,\"sent\":%u,\"acked\":%u",
		       c->acked + c->emit_failed, c->acked);
		if (c->failed)
			printf(",\"failed\":true,\"shipd_error\":\"%s\"}", c->why);
		else
			printf(",\"shipd\":%.3f,\"reconnect_s\":%.3f}", c->catchup_s,
			       c->reconnect_s);
	} else if (c->failed) {
		printf("%-8s %-12s %-16s %18s %18s   FAILED: %s\n", "fleet", "shipd",
		       "catch-up s", "-", "FAILED", c->why);
	} else {
		printf("%-8s %-12s %-16s %18s %18.2f   (absolute: NATS sourcing, "
		       "no direct run, one round; %u acked while cut, all held by "
		       "the hub; uplinks back after %.2f s)\n",
		       "fleet", "shipd", "catch-up s", "-", c->catchup_s, c->acked,
		       c->reconnect_s);
	}
	first_row = false;
}

static void fleet_tell(struct fleet_run *r)
{
	if (r->failed)
		fprintf(stderr, "shipbench: fleet: %s: %s (%u acknowledged, %u "
		                "failed; FLEET_EVENTS %lld of %lld)\n",
		        r->what, r->why, r->acked, r->emit_failed, r->hub, r->want);
}

/* A round: both robots emit; every event acknowledged and held by the
 * hub, exactly what the robots stored. shipd cpu: both robots' shipds. */
static void fleet_side(struct fleet *f, bool via_shipd, struct sample *s)
{
	struct fleet_run r = {.what = via_shipd ? "shipd" : "direct"};
	struct usage u[FLEET_ROBOTS] = {0};
	fleet_rate(f, via_shipd, &r, u);
	fleet_tell(&r);
	if (via_shipd)
		s->u = u[0];
	s->sent = s->ops = (uint64_t)FLEET_ROBOTS * f->n;
	s->delivered = r.acked;
	s->dropped = r.emit_failed;
	if (r.failed)
		sample_fail(s, "%s", r.why);
	s->v[0] = r.hub_rate;
	s->v[1] = r.robot_rate;
	f->extra += r.extra;
}

static void fleet_side_direct(void *ctx, struct sample *s)
{
	fleet_side(ctx, false, s);
}

static void fleet_side_shipd(void *ctx, struct sample *s)
{
	fleet_side(ctx, true, s);
}

static void bench_fleet(void)
{
	static const struct metric m[] = {
	    {"hub events/s", true}, {"robot acked/s", true}, {0}};
	static const struct side sides[] = {
	    {"direct", fleet_side_direct}, {"shipd", fleet_side_shipd}, {0}};
	struct fleet f = {0};
	f.n = opt.fleet ? opt.fleet : opt.quick ? 2000 : 20000;
	f.payload_json = event_payload_json();
	f.envelope = event_envelope("bench.fleet", f.payload_json);
	struct fleet_run c = {.what = "catch-up"};
	uint64_t t0 = now_ns();
	if (!fleet_up(&f)) {
		bench_failures++;
		goto out;
	}
	double setup_s = (double)(now_ns() - t0) / 1e9;
	struct scenario sc = {.name = "fleet", .metrics = m, .sides = sides,
	                      .best_effort = false, .ctx = &f};
	run_scenario(&sc);
	fleet_catchup(&f, &c);
	fleet_tell(&c);
	fleet_catchup_row(&c);
	double cut_rate = c.robot_rate;
	if (opt.json)
		printf(",\n{\"scenario\":\"fleet\",\"robots\":%d,\"hub_nodes\":3,"
		       "\"events_per_robot\":%u,\"window\":%d,"
		       "\"cut_acked_per_s\":%.3f,\"shipd_own_events\":%u,"
		       "\"setup_s\":%.3f,\"total_s\":%.3f}",
		       FLEET_ROBOTS, f.n, FLEET_WINDOW, cut_rate, f.extra + c.extra,
		       setup_s, (double)(now_ns() - t0) / 1e9);
	else
		printf("%-8s %d robots x %u events a round, %d in flight each, to "
		       "FLEET_EVENTS (R3) on a 3-node hub; shipd cpu: both robots'\n"
		       "%-8s catch-up: %u events per robot emitted through shipd "
		       "while cut (acked %.1f/s), from the restore until the hub "
		       "held all; %.1f s in all (%.1f s set-up)\n",
		       "fleet", FLEET_ROBOTS, f.n, FLEET_WINDOW, "fleet", f.n,
		       cut_rate, (double)(now_ns() - t0) / 1e9, setup_s);
out:
	fleet_down(&f);
	free(f.envelope);
	free(f.payload_json);
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: shipbench [--nats URL] [--socket PATH] [--size N] "
	        "[--count N]\n"
	        "                 [--clients N] [--obj-mib N] [--jobs N] [--quick]\n"
	        "                 [--fleet-events N] [--rounds N] [--allow-loss] "
	        "[--json]\n"
	        "                 [--shipd-opt KEY=VALUE]... [SCENARIO...]\n"
	        "scenarios: rtt pub pubsub fanout req scrape jspub kv obj jobs svc "
	        "fleet idle\n"
	        "(default: all)\n"
	        "obj puts and gets one object of --obj-mib MiB (256; 4 with "
	        "--quick).\n"
	        "jobs submits and completes --jobs jobs (2000; 200 with --quick)\n"
	        "across two shipds on one nats-server; svc calls a service\n"
	        "hosted on the second (--size bytes, at least %d).\n"
	        "fleet starts a 3-node hub and two robots (leaf servers, a shipd\n"
	        "each) of its own; each robot emits --fleet-events events (20000;\n"
	        "2000 with --quick; at most %d) per run: at once, and while\n"
	        "its uplink is cut.\n"
	        "Each scenario runs --rounds rounds (3), direct and through shipd\n"
	        "in turn; a run that lost anything has no figure and fails, but\n"
	        "--allow-loss lets pub, pubsub and fanout pass when shipd said\n"
	        "what it dropped (core NATS is best effort).\n"
	        "scrape times requests through shipd with and without a scrape\n"
	        "of its /metrics every 100 ms (\"direct\" is the unscraped).\n"
	        "--shipd-opt goes to the shipds shipbench starts (not the\n"
	        "fleet's) as -o KEY=VALUE.\n"
	        "Without --nats a temporary nats-server -js is started; without\n"
	        "--socket a shipd is started (SHIPD_BIN or the one built beside).\n",
	        SVC_SIZE_MIN, FLEET_EVENTS_MAX);
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

/* A count option of 1 to max into *out; false (said on stderr) if not. */
static bool opt_count(const char *arg, const char *name, unsigned max,
                      unsigned *out)
{
	char *end;
	unsigned long n = strtoul(arg, &end, 10);
	if (!*arg || *end || n == 0 || n > max) {
		fprintf(stderr, "shipbench: %s: 1 to %u\n", name, max);
		return false;
	}
	*out = (unsigned)n;
	return true;
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
		{"jobs", required_argument, NULL, 'b'},
		{"fleet-events", required_argument, NULL, 'f'},
		{"rounds", required_argument, NULL, 'r'},
		{"allow-loss", no_argument, NULL, 'a'},
		{"shipd-opt", required_argument, NULL, 'O'},
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
			if (!opt_count(optarg, "--obj-mib", OBJ_MIB_MAX, &opt.obj_mib))
				return 2;
			break;
		case 'b':
			if (!opt_count(optarg, "--jobs", JOBS_MAX, &opt.jobs))
				return 2;
			break;
		case 'f':
			if (!opt_count(optarg, "--fleet-events", FLEET_EVENTS_MAX,
			               &opt.fleet))
				return 2;
			break;
		case 'r':
			if (!opt_count(optarg, "--rounds", ROUNDS_MAX, &opt.rounds))
				return 2;
			break;
		case 'a':
			opt.allow_loss = true;
			break;
		case 'O':
			if (opt.shipd_opts == SHIPD_OPTS_MAX) {
				fprintf(stderr, "shipbench: --shipd-opt: at most %d\n",
				        SHIPD_OPTS_MAX);
				return 2;
			}
			opt.shipd_args[2 * opt.shipd_opts] = "-o";
			opt.shipd_args[2 * opt.shipd_opts++ + 1] = optarg;
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
		/* Its metrics server, for the scrape scenario (this shipd's
		 * only: the others started later would take the same port). */
		static char listen_opt[64];
		static const char *main_args[2 * SHIPD_OPTS_MAX + 3];
		metrics_port = fx_free_port();
		snprintf(listen_opt, sizeof(listen_opt),
		         "metrics_listen=127.0.0.1:%d", metrics_port);
		memcpy(main_args, opt.shipd_args,
		       2 * opt.shipd_opts * sizeof(*main_args));
		main_args[2 * opt.shipd_opts] = "-o";
		main_args[2 * opt.shipd_opts + 1] = listen_opt;
		fx_shipd_verbose = false;
		if (shipd_start(&sd, opt.nats_url, main_args) < 0) {
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
		printf("shipbench: %zu-byte messages, %u per run, %u rounds (direct "
		       "and shipd in turn), on %ld CPUs\n"
		       "figures: median \xc2\xb1half the range over the rounds; "
		       "ratio of the medians; shipd's CPU per operation (us) and "
		       "peak RSS (MiB)\n"
		       "%-8s %-12s %-16s %18s %18s %6s %9s %7s\n",
		       opt.size, opt.count, opt.rounds,
		       sysconf(_SC_NPROCESSORS_ONLN), "scenario", "side",
		       "metric", "direct", "shipd", "ratio", "cpu us/op", "peak");
	if (want(argc, argv, "rtt") || want(argc, argv, "req") ||
	    want(argc, argv, "kv") || want(argc, argv, "svc"))
		bench_rtt();
	if (want(argc, argv, "pub"))
		bench_pub();
	if (want(argc, argv, "pubsub"))
		bench_fan("pubsub", 1);
	if (want(argc, argv, "fanout"))
		bench_fan("fanout", opt.clients);
	if (want(argc, argv, "req"))
		bench_req();
	if (want(argc, argv, "scrape"))
		bench_scrape();
	if (want(argc, argv, "jspub"))
		bench_jspub();
	if (want(argc, argv, "kv"))
		bench_kv();
	if (want(argc, argv, "obj"))
		bench_obj();
	if (want(argc, argv, "jobs"))
		bench_jobs();
	if (want(argc, argv, "svc"))
		bench_svc();
	if (want(argc, argv, "fleet"))
		bench_fleet();
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
