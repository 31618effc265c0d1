/* SPDX-License-Identifier: MIT */
/* The metrics and health server: figures that move with traffic, per-app
 * labels kept bounded, readiness that follows NATS away and back, the
 * text parsed by Debian's python3-prometheus-client, and hostile HTTP
 * clients (huge headers, many connections, slow ones) while apps go on.
 * Then what a review found at the edges of metrics and monitor: monitor
 * is not everybody's when there are no rules, never shows shipd's reply
 * inboxes, and its drops are shipd's; a HEAD answer has no body; job
 * queues keep their whole names as labels; label slots of gone apps are
 * taken back. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "raw.h"
#include "shipc.h"

#define BODY_MAX (512 * 1024)

static struct natsd nd;
static struct shipdp sd;
static int port;
static char body[BODY_MAX];

/* shipd with its metrics on a free port and more -o settings. */
static void up(const char *const *more)
{
	static char listen[64];
	/* Apps of other uids may connect (the monitor cases); the rules
	 * decide. */
	const char *extra[16] = {"-o", listen, "-o", "socket_mode=0666"};
	size_t n = 4;
	signal(SIGPIPE, SIG_IGN);
	port = fx_free_port();
	snprintf(listen, sizeof(listen), "metrics_listen=127.0.0.1:%d", port);
	for (; more && *more && n < 15; more++)
		extra[n++] = *more;
	extra[n] = NULL;
	ck_assert_int_eq(fx_up(&nd, &sd, extra), 0);
	ck_assert_int_eq(chmod(sd.dir, 0711), 0); /* let the others through */
}

static void down(void)
{
	ck_assert_int_eq(fx_down(&nd, &sd), 0);
}

static void scrape(void)
{
	ck_assert_int_eq(fx_http_status(port, "/metrics", body, sizeof(body)),
	                 200);
}

/* The value of one series (its name and labels exactly as written), or
 * -1 if the scrape has no such line. */
static double series(const char *text, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (!strncmp(p, name, n) && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return -1;
}

static double now_of(const char *name)
{
	scrape();
	double v = series(body, name);
	return v < 0 ? 0 : v;
}

static int get(const char *path)
{
	static char buf[8192];
	return fx_http_status(port, path, buf, sizeof(buf));
}

#define KV_GETS "shipd_rpc_requests_total{block=\"kv\",method=\"kv_get\"}"
#define KV_NOT_FOUND                                                        \
	"shipd_rpc_responses_total{block=\"kv\",method=\"kv_get\","         \
	"code=\"not_found\"}"
#define KV_TIMED                                                            \
	"shipd_rpc_request_duration_seconds_count{block=\"kv\","            \
	"method=\"kv_get\"}"
#define PUBLISHES                                                           \
	"shipd_rpc_requests_total{block=\"pubsub\",method=\"publish\"}"
#define APP_KV "shipd_app_requests_total{app=\"meter\",block=\"kv\"}"
#define APP_IN "shipd_app_received_bytes_total{app=\"meter\"}"

START_TEST(counters_move_with_traffic)
{
	up(NULL);
	struct shipc *h = fx_connect(sd.sock, "meter", 10000);
	ck_assert_ptr_nonnull(h);
	double gets = now_of(KV_GETS), nf = series(body, KV_NOT_FOUND);
	double timed = series(body, KV_TIMED), pubs = series(body, PUBLISHES);
	double app_kv = series(body, APP_KV), app_in = series(body, APP_IN);
	double sent = series(body, "shipd_messages_sent_total");
	ck_assert(series(body, "shipd_clients") >= 1);
	for (int i = 0; i < 3; i++) {
		struct shipc_kv_entry *e = NULL;
		ck_assert_int_eq(shipc_kv_get(h, "nobucket", "k", 0, &e), -1);
		ck_assert_int_eq(errno, ENOENT);
	}
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(shipc_publish(h, "meter.x", "y", 1), 0);
	/* Answered after the publishes, so they were all dispatched. */
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(h, &st), 0);
	scrape();
	ck_assert_double_eq(series(body, KV_GETS), gets + 3);
	ck_assert_double_eq(series(body, KV_NOT_FOUND), (nf < 0 ? 0 : nf) + 3);
	ck_assert_double_eq(series(body, KV_TIMED), (timed < 0 ? 0 : timed) + 3);
	ck_assert_double_eq(series(body, PUBLISHES), (pubs < 0 ? 0 : pubs) + 5);
	ck_assert_double_eq(series(body, APP_KV), (app_kv < 0 ? 0 : app_kv) + 3);
	ck_assert_double_eq(series(body, "shipd_messages_sent_total"), sent + 5);
	ck_assert(series(body, APP_IN) > app_in);
	ck_assert_double_eq(series(body, "shipd_app_clients{app=\"meter\"}"), 1);
	/* No subject, bucket or key is ever a label. */
	ck_assert_ptr_null(strstr(body, "meter.x"));
	ck_assert_ptr_null(strstr(body, "nobucket"));
	shipc_close(h);
	down();
}
END_TEST

static bool ready_is(void *arg)
{
	return get("/readyz") == *(int *)arg;
}

START_TEST(readiness_follows_nats)
{
	up(NULL);
	int ok = 200, no = 503;
	ck_assert(fx_wait(ready_is, &ok, 10000));
	ck_assert_int_eq(get("/healthz"), 200);
	natsd_stop(&nd);
	ck_assert(fx_wait(ready_is, &no, 15000));
	char text[512];
	ck_assert_int_eq(fx_http_status(port, "/readyz", text, sizeof(text)),
	                 503);
	ck_assert_ptr_nonnull(strstr(text, "not ready"));
	/* Alive all the same: the loop turns without NATS. */
	ck_assert_int_eq(get("/healthz"), 200);
	scrape();
	ck_assert_double_eq(series(body, "shipd_nats_connected"), 0);
	ck_assert_double_eq(series(body, "shipd_jetstream_ready"), 0);
	ck_assert_int_eq(natsd_restart(&nd), 0);
	ck_assert(fx_wait(ready_is, &ok, 20000));
	scrape();
	ck_assert_double_eq(series(body, "shipd_nats_connected"), 1);
	ck_assert(series(body, "shipd_nats_reconnects_total") >= 1);
	down();
}
END_TEST

START_TEST(app_labels_are_bounded)
{
	static const char *const more[] = {"-o", "metrics_max_apps=2", NULL};
	up(more);
	struct shipc *h[5];
	char name[32];
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "app-%d", i);
		h[i] = fx_connect(sd.sock, name, 10000);
		ck_assert_ptr_nonnull(h[i]);
		struct shipc_status st;
		ck_assert_int_eq(shipc_status(h[i], &st), 0);
	}
	scrape();
	int labels = 0;
	for (const char *p = body; (p = strstr(p, "shipd_app_clients{app=\""));
	     p++)
		labels++;
	ck_assert_int_eq(labels, 3);
	ck_assert(series(body, "shipd_app_clients{app=\"other\"}") >= 3);
	for (int i = 0; i < 5; i++)
		shipc_close(h[i]);
	down();
}
END_TEST

static bool depth_is(void *arg)
{
	const double *want = arg;
	scrape();
	return series(body, "shipd_job_queue_jobs{queue=\"depth\","
	                    "state=\"queued\"}") == want[0] &&
	       series(body, "shipd_job_queue_jobs{queue=\"depth\","
	                    "state=\"running\"}") == want[1] &&
	       series(body, "shipd_job_queue_held_jobs{queue=\"depth\"}") ==
	               want[2];
}

START_TEST(job_queue_depths)
{
	up(NULL);
	struct shipc *h = fx_connect(sd.sock, "worker", 10000);
	ck_assert_ptr_nonnull(h);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(shipc_job_submit(h, "depth", NULL, NULL), 0);
	struct shipc_job *j = NULL;
	ck_assert_int_eq(shipc_job_claim(h, "depth", "w", 5000, &j), 0);
	shipc_job_free(j);
	/* The index follows the bucket: it is there within moments. */
	double want[] = {2, 1, 1};
	ck_assert(fx_wait(depth_is, want, 10000));
	shipc_close(h);
	down();
}
END_TEST

static void count_msg(struct shipc *h, const struct shipc_msg *m, int err,
                      void *arg)
{
	if (m)
		(*(unsigned *)arg)++;
}

static bool dropped_for_slow(void *arg)
{
	scrape();
	return series(body, "shipd_app_dropped_messages_total{app=\"slow\"}") >
	       0;
}

/* An app that does not read loses messages: counted as its drops, and
 * in shipd's, while the app that publishes sees none. */
START_TEST(drops_are_counted_per_app)
{
	static const char *const more[] = {"-o", "client_output_limit=65536",
	                                   NULL};
	up(more);
	struct shipc *slow = fx_connect(sd.sock, "slow", 10000);
	struct shipc *pub = fx_connect(sd.sock, "pub", 10000);
	ck_assert_ptr_nonnull(slow);
	ck_assert_ptr_nonnull(pub);
	unsigned got = 0;
	ck_assert_uint_gt(shipc_subscribe(slow, "drop.x", NULL, 0, count_msg,
	                                  &got),
	                  0);
	static char data[1024];
	memset(data, 'd', sizeof(data));
	/* 8 MiB while slow never dispatches: far past its 64 KiB and what
	 * its socket holds. */
	for (int i = 0; i < 8192; i++)
		ck_assert_int_eq(shipc_publish(pub, "drop.x", data, sizeof(data)),
		                 0);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(pub, &st), 0);
	ck_assert(fx_wait(dropped_for_slow, NULL, 10000));
	ck_assert_double_eq(series(body, "shipd_app_subscriptions{app=\"slow\"}"),
	                    1);
	ck_assert_double_eq(series(body, "shipd_app_dropped_messages_total"
	                                 "{app=\"pub\"}"),
	                    0);
	ck_assert(series(body, "shipd_messages_dropped_total") >=
	          series(body, "shipd_app_dropped_messages_total{app=\"slow\"}"));
	shipc_close(pub);
	shipc_close(slow);
	down();
}
END_TEST

/* An id used again before its answer came: one of the two is timed,
 * the other counted as untimed, and nothing is kept for either after. */
START_TEST(ids_used_twice_stay_bounded)
{
	up(NULL);
	double untimed = now_of("shipd_requests_untimed_total");
	double timed = series(body, KV_TIMED);
	int fd = raw_open(sd.sock);
	Ship__KvGet g = SHIP__KV_GET__INIT;
	g.bucket = "nobucket";
	g.key = "k";
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	f.id = 7;
	f.body_case = SHIP__CLIENT_FRAME__BODY_KV_GET;
	f.kv_get = &g;
	struct ipc_buf b = {0};
	raw_pack(&b, &f);
	raw_pack(&b, &f);
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
	for (int i = 0; i < 2; i++) {
		Ship__ServerFrame *r = raw_reply(fd, 7);
		ck_assert_ptr_nonnull(r);
		ck_assert_int_eq(r->code, SHIP__CODE__NOT_FOUND);
		ship__server_frame__free_unpacked(r, NULL);
	}
	scrape();
	ck_assert_double_eq(series(body, "shipd_requests_untimed_total"),
	                    untimed + 1);
	ck_assert_double_eq(series(body, KV_TIMED), (timed < 0 ? 0 : timed) + 1);
	close(fd);
	down();
}
END_TEST

/* Bytes sent as they are, on a new connection; what came back (up to
 * len - 1 bytes, within 5 s) into buf. */
static void raw(const void *req, size_t n, char *buf, size_t len)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 5};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	send(fd, req, n, MSG_NOSIGNAL);
	size_t got = 0;
	ssize_t r;
	while (got < len - 1 && (r = recv(fd, buf + got, len - 1 - got, 0)) > 0)
		got += (size_t)r;
	buf[got] = '\0';
	close(fd);
}

static int idle_conn(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

START_TEST(hostile_clients_get_errors)
{
	static const char *const more[] = {"-o", "metrics_max_connections=2",
	                                   "-o", "metrics_timeout_ms=1000",
	                                   NULL};
	up(more);
	struct shipc *h = fx_connect(sd.sock, "bystander", 10000);
	ck_assert_ptr_nonnull(h);
	static char big[32768], got[4096];
	int n = snprintf(big, sizeof(big), "GET /metrics HTTP/1.1\r\nX-Big: ");
	memset(big + n, 'a', sizeof(big) - (size_t)n - 5);
	memcpy(big + sizeof(big) - 5, "\r\n\r\n", 5);
	raw(big, sizeof(big) - 1, got, sizeof(got));
	ck_assert_msg(!strncmp(got, "HTTP/1.1 400", 12), "got: %.80s", got);
	raw("POST /metrics HTTP/1.0\r\nContent-Length: 1\r\n\r\nx", 47, got,
	    sizeof(got));
	ck_assert_msg(!strncmp(got, "HTTP/1.1 501", 12), "got: %.80s", got);
	ck_assert_int_eq(get("/nowhere"), 404);

	/* Eight connections that say nothing: two are taken, the rest wait;
	 * each is dropped after metrics_timeout_ms and a probe gets its
	 * turn. Apps were never kept waiting. */
	int idle[8];
	for (int i = 0; i < 8; i++)
		idle[i] = idle_conn();
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(h, &st), 0);
	int ok = 200;
	ck_assert(fx_wait(ready_is, &ok, 15000));
	for (int i = 0; i < 8; i++)
		close(idle[i]);

	/* A client sending a byte every quarter of the timeout is cut at 4
	 * timeouts, with a 408 it can read. */
	int fd = idle_conn();
	struct timeval tv = {0, 100000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	static const char slow[] = "GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaa"
	                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	size_t got_n = 0;
	for (size_t i = 0; i < sizeof(slow) - 1 && got_n == 0; i++) {
		send(fd, slow + i, 1, MSG_NOSIGNAL);
		fx_sleep_ms(250);
		ssize_t r = recv(fd, got, sizeof(got) - 1, 0);
		got_n = r > 0 ? (size_t)r : 0;
		if (r == 0)
			break;
	}
	close(fd);
	got[got_n] = '\0';
	ck_assert_msg(!strncmp(got, "HTTP/1.1 408", 12), "got: %.80s", got);
	ck_assert_int_eq(get("/healthz"), 200);
	ck_assert_int_eq(shipc_status(h, &st), 0);
	shipc_close(h);
	down();
}
END_TEST

/* A client that asks again and again on one connection is not cut by
 * the bound on a request's time: each answer starts it again. */
START_TEST(keep_alive_clients_stay)
{
	static const char *const more[] = {"-o", "metrics_timeout_ms=1000",
	                                   NULL};
	up(more);
	int fd = idle_conn();
	struct timeval tv = {1, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	/* 16 x 300 ms: past 4 x 1000 ms in all. */
	for (int i = 0; i < 16; i++) {
		char got[1024];
		ck_assert_int_eq(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL),
		                 (ssize_t)sizeof(req) - 1);
		ssize_t r = recv(fd, got, sizeof(got) - 1, 0);
		ck_assert_msg(r > 0, "request %d: no answer", i);
		got[r] = '\0';
		ck_assert_msg(!strncmp(got, "HTTP/1.1 200", 12), "%d: %.60s", i,
		              got);
		fx_sleep_ms(300);
	}
	close(fd);
	down();
}
END_TEST

START_TEST(unix_socket_serves_the_same)
{
	static char opt[400];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char *path = sa.sun_path;
	ck_assert_int_eq(natsd_start(&nd, 0), 0);
	ck_assert_int_lt(snprintf(path, sizeof(sa.sun_path), "%s/metrics.sock",
	                          nd.dir),
	                 (int)sizeof(sa.sun_path));
	snprintf(opt, sizeof(opt), "metrics_socket=%s", path);
	const char *extra[] = {"-o", opt, NULL};
	ck_assert_int_eq(shipd_start(&sd, nd.url, extra), 0);
	ck_assert(fx_wait_link(sd.sock, 10000));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
	ck_assert_int_eq(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL),
	                 (ssize_t)sizeof(req) - 1);
	size_t got = 0;
	ssize_t r;
	while (got < sizeof(body) - 1 &&
	       (r = recv(fd, body + got, sizeof(body) - 1 - got, 0)) > 0)
		got += (size_t)r;
	body[got] = '\0';
	close(fd);
	ck_assert(!strncmp(body, "HTTP/1.1 200", 12) ||
	          !strncmp(body, "HTTP/1.0 200", 12));
	ck_assert_ptr_nonnull(strstr(body, "\nshipd_nats_connected 1\n"));
	ck_assert_int_eq(shipd_stop(&sd), 0);
	ck_assert_int_ne(access(path, F_OK), 0); /* removed at exit */
	down();
}
END_TEST

static bool uplink_down(void *arg)
{
	scrape();
	return series(body, "shipd_uplink_up") == 0;
}

/* With a hub_domain nothing answers for, the uplink is down in the
 * figures; without one there is no uplink figure at all. */
START_TEST(uplink_figures_with_a_hub)
{
	static const char *const more[] = {"-o", "hub_domain=nohub", NULL};
	up(more);
	ck_assert(fx_wait(uplink_down, NULL, 15000));
	ck_assert(series(body, "shipd_uplink_changes_total") >= 0);
	down();
	up(NULL);
	scrape();
	ck_assert_ptr_null(strstr(body, "shipd_uplink_"));
	down();
}
END_TEST

/* shipctl with args (NULL-terminated), its output into out; its exit
 * status. */
static int shipctl(const char *const *args, char *out, size_t len)
{
	const char *bin = getenv("SHIPCTL_BIN");
	ck_assert_msg(bin, "SHIPCTL_BIN is not set");
	char *argv[16] = {(char *)bin};
	size_t n = 1;
	for (; *args && n < 15; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	char log[340];
	snprintf(log, sizeof(log), "%s/shipctl.log", nd.dir);
	unlink(log);
	pid_t pid = fx_spawn(argv, log, NULL);
	ck_assert_int_gt(pid, 0);
	int rc = fx_wait_exit(pid, 30000);
	out[0] = '\0';
	FILE *f = fopen(log, "r");
	if (f) {
		out[fread(out, 1, len - 1, f)] = '\0';
		fclose(f);
	}
	return rc;
}

/* shipctl top reads the same figures: as JSON once, as tables, and says
 * so when there is no metrics server. */
START_TEST(top_shows_the_same_figures)
{
	up(NULL);
	struct shipc *h = fx_connect(sd.sock, "meter", 10000);
	ck_assert_ptr_nonnull(h);
	for (int i = 0; i < 2; i++) {
		struct shipc_kv_entry *e = NULL;
		ck_assert_int_eq(shipc_kv_get(h, "nobucket", "k", 0, &e), -1);
	}
	char addr[64], out[16384];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	const char *js[] = {"--json", "top", "-m", addr, NULL};
	ck_assert_int_eq(shipctl(js, out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "{\"app\":\"meter\",\"clients\":1,"), "%s",
	              out);
	ck_assert_msg(strstr(out, "\"errors\":2,"), "%s", out);
	ck_assert_msg(strstr(out, "\"nats_connected\":true"), "%s", out);
	const char *live[] = {"top", "-m", addr, "-n", "2", "-i", "100ms", NULL};
	ck_assert_int_eq(shipctl(live, out, sizeof(out)), 0);
	const char *second = strstr(out, "APP ");
	ck_assert_ptr_nonnull(second);
	ck_assert_ptr_nonnull(strstr(second + 1, "APP "));
	ck_assert_ptr_nonnull(strstr(second, "\nmeter "));
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", fx_free_port());
	const char *none[] = {"top", "-m", addr, NULL};
	ck_assert_int_eq(shipctl(none, out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "no metrics server"), "%s", out);
	shipc_close(h);
	down();
}
END_TEST

/* The scrape as Debian's python3-prometheus-client reads it, and the
 * naming rules checked on every family (metrics_parse.py). */
START_TEST(prometheus_client_parses_it)
{
	up(NULL);
	struct shipc *h = fx_connect(sd.sock, "parsed", 10000);
	ck_assert_ptr_nonnull(h);
	struct shipc_kv_entry *e = NULL;
	ck_assert_int_eq(shipc_kv_get(h, "nobucket", "k", 0, &e), -1);
	ck_assert_int_eq(shipc_publish(h, "parsed.x", "y", 1), 0);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(h, &st), 0);
	scrape();
	char file[320];
	snprintf(file, sizeof(file), "%s/scrape.txt", nd.dir);
	FILE *f = fopen(file, "w");
	ck_assert_ptr_nonnull(f);
	fputs(body, f);
	fclose(f);
	const char *py = getenv("PYTHON3"), *script = getenv("METRICS_PARSE");
	ck_assert_msg(py && script, "PYTHON3 and METRICS_PARSE are not set");
	char log[340];
	snprintf(log, sizeof(log), "%s/parse.log", nd.dir);
	char *const argv[] = {(char *)py, (char *)script, file, NULL};
	pid_t pid = fx_spawn(argv, log, NULL);
	ck_assert_int_gt(pid, 0);
	int rc = fx_wait_exit(pid, 60000);
	if (rc != 0) {
		char text[4096] = "";
		FILE *l = fopen(log, "r");
		if (l) {
			text[fread(text, 1, sizeof(text) - 1, l)] = '\0';
			fclose(l);
		}
		ck_abort_msg("metrics_parse.py exited with %d:\n%s", rc, text);
	}
	shipc_close(h);
	down();
}
END_TEST

/* ---- edges (review) ---- */

static int count_lines(const char *text, const char *prefix)
{
	int n = 0;
	size_t len = strlen(prefix);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (!strncmp(p, prefix, len))
			n++;
	return n;
}

/* Without an allow line, monitor is root's and shipd's user's only. */

static void on_any(struct shipc *h, const struct shipc_msg *m, int err,
                   void *arg)
{
	(void)h, (void)m, (void)err, (void)arg;
}

static int as_nobody(void)
{
	struct shipc *h = shipc_connect(sd.sock, "curious");
	if (!h)
		return 91;
	errno = 0;
	uint64_t id = shipc_monitor(h, ">", SHIPC_MONITOR_PAYLOAD, on_any, NULL);
	int rc = id ? 1 : errno == EACCES ? 0 : 2;
	shipc_close(h);
	return rc;
}

/* Like admin (which shipd.conf(5) keeps for root and shipd's own user
 * when there is no allow line), and like "shipctl clients", which shows
 * an app only its own user's connections: a right that "must be named"
 * must not be everybody's when nothing names it. */
START_TEST(monitor_is_not_everybodys_without_rules)
{
	up(NULL);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(65534) < 0 ||
		    setuid(65534) < 0)
			_exit(90);
		_exit(as_nobody());
	}
	int st = fx_wait_exit(pid, 30000);
	ck_assert_msg(st == 0,
	              "uid 65534, no allow line: shipc_monitor(\">\", "
	              "PAYLOAD) %s",
	              st == 1 ? "succeeded" : "failed oddly");
	down();
}
END_TEST

/* A HEAD answer has headers only. */

START_TEST(head_answer_has_no_body)
{
	up(NULL);
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	/* A keep-alive client: HEAD, then GET on the same connection. */
	static const char req[] = "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	                          "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	ck_assert_int_eq(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL),
	                 (ssize_t)sizeof(req) - 1);
	static char got[8192];
	size_t n = 0;
	ssize_t r;
	uint64_t end = fx_now_ms() + 2000;
	while (n < sizeof(got) - 1 && fx_now_ms() < end &&
	       (r = recv(fd, got + n, sizeof(got) - 1 - n, 0)) > 0)
		n += (size_t)r;
	got[n] = '\0';
	close(fd);
	const char *eoh = strstr(got, "\r\n\r\n");
	ck_assert_ptr_nonnull(eoh);
	/* Right after the HEAD answer's headers: the GET's status line. */
	ck_assert_msg(!strncmp(eoh + 4, "HTTP/1.1 200", 12),
	              "after the HEAD answer's headers came: %.60s", eoh + 4);
	down();
}
END_TEST

/* Two job queues with a long common beginning stay two series. */

START_TEST(job_queue_labels_stay_distinct)
{
	up(NULL);
	struct shipc *h = fx_connect(sd.sock, "worker", 10000);
	ck_assert_ptr_nonnull(h);
	char q[2][80];
	for (int i = 0; i < 2; i++) {
		memset(q[i], 'q', 70);
		q[i][70] = (char)('a' + i);
		q[i][71] = '\0';
		ck_assert_int_eq(shipc_job_submit(h, q[i], NULL, NULL), 0);
		struct shipc_job *j = NULL;
		ck_assert_int_eq(shipc_job_claim(h, q[i], "w", 5000, &j), 0);
		shipc_job_free(j);
	}
	char prefix[128];
	snprintf(prefix, sizeof(prefix),
	         "shipd_job_queue_held_jobs{queue=\"%.64s", q[0]);
	int lines = 0;
	for (int t = 0; t < 100 && lines < 2; t++) {
		scrape();
		lines = count_lines(body, prefix);
		fx_sleep_ms(100);
	}
	ck_assert_int_eq(lines, 2);
	/* Two queues must be two series, not one series written twice. */
	const char *a = strstr(body, prefix);
	const char *nl = strchr(a, '\n');
	const char *b = strstr(nl, prefix);
	const char *a_end = strchr(a, '}'), *b_end = strchr(b, '}');
	ck_assert_msg(a_end - a != b_end - b || strncmp(a, b, (size_t)(a_end - a)),
	              "the same series twice: %.*s}", (int)(a_end - a), a);
	shipc_close(h);
	down();
}
END_TEST

/* App label slots of apps that are gone are taken back. */

START_TEST(gone_apps_do_not_keep_label_slots)
{
	static const char *const more[] = {"-o", "metrics_max_apps=2", NULL};
	up(more);
	/* Anyone who may open the socket: two hellos, then gone. */
	for (int i = 0; i < 2; i++) {
		char name[32];
		snprintf(name, sizeof(name), "junk-%d", i);
		struct shipc *j = fx_connect(sd.sock, name, 10000);
		ck_assert_ptr_nonnull(j);
		shipc_close(j);
	}
	struct shipc *h = fx_connect(sd.sock, "navigation", 10000);
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(h, &st), 0);
	scrape();
	ck_assert_msg(series(body, "shipd_app_clients{app=\"navigation\"}") == 1,
	              "the only app connected is counted as \"other\" (%g); "
	              "junk-0: %g",
	              series(body, "shipd_app_clients{app=\"other\"}"),
	              series(body, "shipd_app_clients{app=\"junk-0\"}"));
	shipc_close(h);
	down();
}
END_TEST

/* A monitor never sees shipd's reply inboxes (nor their secret). */

#define SEEN 64
struct seen {
	int n;
	char subject[SEEN][256];
};

static void on_seen(struct shipc *h, const struct shipc_msg *m, int err,
                    void *arg)
{
	(void)h, (void)err;
	struct seen *s = arg;
	if (m && s->n < SEEN)
		snprintf(s->subject[s->n++], sizeof(s->subject[0]), "%s",
		         m->subject);
}

static void on_request(struct shipc *h, const struct shipc_msg *m, int err,
                       void *arg)
{
	(void)err, (void)arg;
	if (m && m->reply[0])
		shipc_respond(h, m, "pong", 4);
}

START_TEST(monitor_never_shows_shipd_inboxes)
{
	up(NULL);
	struct shipc *mon = fx_connect(sd.sock, "operator", 5000);
	struct shipc *a = fx_connect(sd.sock, "app-a", 5000);
	struct shipc *rh = fx_connect(sd.sock, "responder", 5000);
	ck_assert(mon && a && rh);
	static struct seen s;
	ck_assert_uint_gt(shipc_monitor(mon, ">", 0, on_seen, &s), 0);
	ck_assert_uint_gt(shipc_subscribe(rh, "rv.svc", NULL, 0, on_request,
	                                  NULL),
	                  0);
	struct fx_app responder;
	ck_assert_int_eq(fx_app_start(&responder, rh), 0);
	struct shipc_msg *reply = NULL;
	ck_assert_int_eq(shipc_request(a, "rv.svc", "ping", 4, 5000, &reply),
	                 0);
	shipc_msg_free(reply);
	uint64_t end = fx_now_ms() + 1500;
	while (fx_now_ms() < end)
		shipc_dispatch(mon, 50);
	fx_app_end(&responder);
	ck_assert_int_ge(s.n, 3);
	for (int i = 0; i < s.n; i++)
		ck_assert_msg(strncmp(s.subject[i], "_INBOX.", 7) != 0,
		              "the monitor saw %s", s.subject[i]);
	shipc_close(a);
	shipc_close(mon);
	down();
}
END_TEST

/* A monitor's drops are the app's and shipd's. */

START_TEST(monitor_drops_are_shipds_drops_too)
{
	static const char *const more[] = {"-o", "client_output_limit=65536",
	                                   NULL};
	up(more);
	struct shipc *mon = fx_connect(sd.sock, "slowmon", 10000);
	struct shipc *pub = fx_connect(sd.sock, "pub", 10000);
	ck_assert(mon && pub);
	static struct seen s;
	ck_assert_uint_gt(shipc_monitor(mon, ">", SHIPC_MONITOR_PAYLOAD,
	                                on_seen, &s),
	                  0);
	static char data[1024];
	memset(data, 'd', sizeof(data));
	/* 8 MiB while the monitor never dispatches. */
	for (int i = 0; i < 8192; i++)
		ck_assert_int_eq(shipc_publish(pub, "nobody.x", data,
		                               sizeof(data)),
		                 0);
	struct shipc_status st;
	ck_assert_int_eq(shipc_status(pub, &st), 0);
	scrape();
	double app = series(body, "shipd_app_dropped_messages_total"
	                          "{app=\"slowmon\"}");
	double all = series(body, "shipd_messages_dropped_total");
	ck_assert_msg(app > 0, "the monitor dropped nothing (%g)", app);
	/* test_metrics' own rule: shipd's drops are at least an app's. */
	ck_assert_msg(all >= app, "shipd_messages_dropped_total %g < slowmon's "
	              "%g", all, app);
	shipc_close(pub);
	shipc_close(mon);
	down();
}
END_TEST

int main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, counters_move_with_traffic);
	tcase_add_test(tc, readiness_follows_nats);
	tcase_add_test(tc, uplink_figures_with_a_hub);
	tcase_add_test(tc, app_labels_are_bounded);
	tcase_add_test(tc, job_queue_depths);
	tcase_add_test(tc, ids_used_twice_stay_bounded);
	tcase_add_test(tc, drops_are_counted_per_app);
	tcase_add_test(tc, hostile_clients_get_errors);
	tcase_add_test(tc, keep_alive_clients_stay);
	tcase_add_test(tc, unix_socket_serves_the_same);
	tcase_add_test(tc, prometheus_client_parses_it);
	tcase_add_test(tc, top_shows_the_same_figures);
	suite_add_tcase(s, tc);
	tc = tcase_create("edges");
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, monitor_is_not_everybodys_without_rules);
	tcase_add_test(tc, head_answer_has_no_body);
	tcase_add_test(tc, job_queue_labels_stay_distinct);
	tcase_add_test(tc, gone_apps_do_not_keep_label_slots);
	tcase_add_test(tc, monitor_never_shows_shipd_inboxes);
	tcase_add_test(tc, monitor_drops_are_shipds_drops_too);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
