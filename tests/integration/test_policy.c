/* SPDX-License-Identifier: MIT */
/* Access control in the building blocks: apps running as other uids and
 * gids (forked children that drop root) may emit, consume, use channels,
 * KV buckets, streams and beings as the "allow" rules grant and no more;
 * a denial is EACCES naming the operation and resource, and leaves
 * nothing in NATS. Without rules every app may do everything. */
#include <check.h>
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "shipc.h"

static struct natsd nd;
static struct shipdp sd;
static char confdir[64];
static char confpath[128];

/* Two apps: "nobody" in the supplementary group "users", and uid 1234
 * that has no passwd entry (its {user} is "1234"). */
struct who {
	uid_t uid;
	gid_t gid;
	gid_t groups[4];
	size_t n_groups;
};
static const struct who A = {65534, 65534, {100}, 1};
static const struct who B = {1234, 1234, {0}, 0};

static const char rules[] =
	"allow = user:nobody emit ship.events.robot.>\n"
	"allow = uid:1234 emit ship.events.{user}.*\n"
	"allow = group:users consume ship.events.robot.>\n"
	"allow = gid:1234 consume ship.events.b.*\n"
	"allow = user:nobody stream-admin PSTREAM_A\n"
	"allow = * channel ops,team-{user}\n"
	"allow = * being {user},{user}.>\n"
	"allow = * kv-read beings_status,ship_config\n"
	"allow = uid:65534 kv-read pub,u_{user}\n"
	"allow = uid:65534 kv-write,kv-admin u_{user}\n"
	"allow = uid:1234 kv-read,kv-write u_{user}\n"
	"allow = user:nobody kv-write ship_health\n";

/* ---- servers ---- */

static void up(const char *allow)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(confdir, sizeof(confdir), "/tmp/shiptest-policy-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(confdir));
	snprintf(confpath, sizeof(confpath), "%s/shipd.conf", confdir);
	FILE *f = fopen(confpath, "w");
	ck_assert_ptr_nonnull(f);
	/* Apps of other uids may open the socket; the rules decide. */
	fprintf(f, "socket_mode = 0666\n%s", allow);
	ck_assert_int_eq(fclose(f), 0);
	/* After the fixture's "-c /dev/null": the last one counts. */
	const char *const extra[] = {"-c", confpath, NULL};
	ck_assert_msg(fx_up(&nd, &sd, extra) == 0, "shipd did not start with:\n%s",
	              allow);
	/* shipd keeps its directory 0750: let the others through. */
	ck_assert_int_eq(chmod(sd.dir, 0711), 0);
}

static void setup_rules(void)
{
	up(rules);
}

static void setup_none(void)
{
	up("");
}

static void teardown(void)
{
	int rc = fx_down(&nd, &sd);
	unlink(confpath);
	rmdir(confdir);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

/* shipd itself (root) may do everything, rules or not. The handle is
 * closed before any fork: libshipc has a thread. */
static struct shipc *root(void)
{
	struct shipc *h = shipc_connect(sd.sock, "policy-root");
	ck_assert_ptr_nonnull(h);
	return h;
}

/* The default streams are declared once NATS is up: wait for them. */
static void wait_streams(void)
{
	struct shipc *h = root();
	struct shipc_emit e = {.event_type = "warmup"};
	int r = -1, s = -1;
	for (int i = 0; i < 200 && (r < 0 || s < 0); i++) {
		if (r < 0)
			r = shipc_emit(h, &e, NULL);
		if (s < 0)
			s = shipc_channel_send(h, "warmup", "root", "hi", NULL, NULL);
		if (r < 0 || s < 0)
			fx_sleep_ms(50);
	}
	char why[256];
	ck_assert_msg(r == 0 && s == 0, "default streams: %s",
	              shipc_last_error(h, why, sizeof(why)));
	shipc_close(h);
}

/* Messages and consumers of a stream, as root sees them. */
static void stream_counts(const char *name, uint64_t *msgs, uint32_t *cons,
                          bool *exists)
{
	struct shipc *h = root();
	struct shipc_stream_info *list = NULL;
	size_t n = 0;
	ck_assert_int_eq(shipc_streams(h, &list, &n), 0);
	*exists = false;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i].name, name))
			continue;
		*exists = true;
		if (msgs)
			*msgs = list[i].messages;
		if (cons)
			*cons = list[i].consumers;
	}
	shipc_streams_free(list);
	shipc_close(h);
}

/* ---- apps of other users ---- */

static int report_fd = -1;

static void __attribute__((format(printf, 2, 3), noreturn))
child_fail(int line, const char *fmt, ...)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "line %d: ", line);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	if (write(report_fd, buf, strlen(buf)) < 0)
		_exit(2);
	_exit(1);
}

#define EXPECT(cond, ...)                                                     \
	do {                                                                  \
		if (!(cond))                                                  \
			child_fail(__LINE__, __VA_ARGS__);                    \
	} while (0)

/* call (0 or more on success) works. */
#define OK(h, call)                                                           \
	do {                                                                  \
		errno = 0;                                                    \
		int r_ = (call);                                              \
		int e_ = errno;                                               \
		char m_[512];                                                 \
		EXPECT(r_ >= 0, "%s: %s (%s)", #call, strerror(e_),           \
		       shipc_last_error(h, m_, sizeof(m_)));                  \
	} while (0)

/* call fails with EACCES, and the message names op and resource. */
#define DENIED(h, call, op, res)                                              \
	do {                                                                  \
		errno = 0;                                                    \
		int r_ = (call);                                              \
		int e_ = errno;                                               \
		char m_[512], want_[300];                                     \
		shipc_last_error(h, m_, sizeof(m_));                          \
		snprintf(want_, sizeof(want_), "'%s'", res);                  \
		EXPECT(r_ < 0 && e_ == EACCES && strstr(m_, op) &&            \
		               strstr(m_, want_),                             \
		       "%s: want EACCES naming %s on %s, got %d, %s: %s",     \
		       #call, op, want_, r_, strerror(e_), m_);               \
	} while (0)

/* A stream-opening call: its id, or 0 with errno. */
#define OPENED(x) ((x) ? 0 : -1)

/* Run fn as w, connected to shipd; the test fails with its message. */
static void run_as(const struct who *w, void (*fn)(struct shipc *h))
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		report_fd = p[1];
		if (setgroups(w->n_groups, w->groups) < 0 || setgid(w->gid) < 0 ||
		    setuid(w->uid) < 0)
			child_fail(__LINE__, "dropping to uid %u: %s",
			           (unsigned)w->uid, strerror(errno));
		EXPECT(getuid() == w->uid && geteuid() == w->uid, "still root");
		struct shipc *h = shipc_connect(sd.sock, "policy-app");
		EXPECT(h, "connect as uid %u: %s", (unsigned)w->uid,
		       strerror(errno));
		fn(h);
		shipc_close(h);
		_exit(0);
	}
	close(p[1]);
	char msg[1024] = "";
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(msg) - 1 &&
	       (n = read(p[0], msg + len, sizeof(msg) - 1 - len)) > 0)
		len += (size_t)n;
	msg[len] = '\0';
	close(p[0]);
	int st = fx_wait_exit(pid, 30000);
	if (st < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	ck_assert_msg(st == 0, "as uid %u (exit %d): %s", (unsigned)w->uid, st,
	              msg);
}

static void on_event(struct shipc *h, const struct shipc_event *ev, int err,
                     void *arg)
{
}

static void on_entry(struct shipc *h, const struct shipc_kv_entry *e, void *arg)
{
}

static int emit(struct shipc *h, const char *prefix, const char *type,
                const char *stream)
{
	struct shipc_emit e = {.event_type = type, .prefix = prefix,
	                       .stream = stream, .payload_json = "{}"};
	return shipc_emit(h, &e, NULL);
}

static uint64_t consume(struct shipc *h, const char *prefix,
                        const char *pattern, const char *stream,
                        const char *durable)
{
	struct shipc_event_sub s = {.pattern = pattern, .prefix = prefix,
	                            .stream = stream, .durable = durable,
	                            .deliver = SHIPC_DELIVER_NEW};
	return shipc_event_subscribe(h, &s, on_event, NULL);
}

/* ---- emit ---- */

static void emit_a(struct shipc *h)
{
	OK(h, emit(h, NULL, "robot.arm.moved", NULL));
	/* The same subject through a prefix of the app's choosing. */
	OK(h, emit(h, "ship.events.robot", "x", NULL));
	DENIED(h, emit(h, NULL, "other.x", NULL), "emit", "ship.events.other.x");
	/* A prefix cannot carry it out of what the rules grant. */
	DENIED(h, emit(h, "ship", "events.other.x", NULL), "emit",
	       "ship.events.other.x");
	DENIED(h, emit(h, "ship.channel", "ops", "CHANNELS"), "emit",
	       "ship.channel.ops");
	DENIED(h, emit(h, "ship.channel", "robot.x", NULL), "emit",
	       "ship.channel.robot.x");
	/* Input is checked before the rules. */
	errno = 0;
	EXPECT(emit(h, NULL, "bad..type", NULL) < 0 && errno == EINVAL,
	       "bad type: %s", strerror(errno));
}

static void emit_b(struct shipc *h)
{
	OK(h, emit(h, NULL, "1234.started", NULL)); /* {user} */
	DENIED(h, emit(h, NULL, "1234.a.b", NULL), "emit",
	       "ship.events.1234.a.b"); /* '*' is one token */
	DENIED(h, emit(h, NULL, "robot.arm.moved", NULL), "emit",
	       "ship.events.robot.arm.moved");
	DENIED(h, emit(h, NULL, "nobody.started", NULL), "emit",
	       "ship.events.nobody.started");
}

START_TEST(test_emit)
{
	wait_streams();
	uint64_t ev0 = 0, ch0 = 0, ev1 = 0, ch1 = 0;
	bool ok;
	stream_counts("SHIP_EVENTS", &ev0, NULL, &ok);
	stream_counts("CHANNELS", &ch0, NULL, &ok);
	run_as(&A, emit_a);
	run_as(&B, emit_b);
	stream_counts("SHIP_EVENTS", &ev1, NULL, &ok);
	stream_counts("CHANNELS", &ch1, NULL, &ok);
	/* Two of A's, one of B's: the denied ones never reached NATS. */
	ck_assert_uint_eq(ev1, ev0 + 3);
	ck_assert_uint_eq(ch1, ch0);
}
END_TEST

/* ---- event subscriptions ---- */

static void consume_denied_a(struct shipc *h)
{
	DENIED(h, OPENED(consume(h, NULL, ">", NULL, "wide")), "consume",
	       "ship.events.>");
	DENIED(h, OPENED(consume(h, NULL, NULL, NULL, NULL)), "consume",
	       "ship.events.>");
	DENIED(h, OPENED(consume(h, NULL, "robot", NULL, NULL)), "consume",
	       "ship.events.robot");
	/* Another stream, another prefix: the check is on the filter. */
	DENIED(h, OPENED(consume(h, "ship.channel", "ops", "CHANNELS", "spy")),
	       "consume", "ship.channel.ops");
	DENIED(h, OPENED(consume(h, "ship", "events.>", NULL, NULL)), "consume",
	       "ship.events.>");
}

static void consume_a(struct shipc *h)
{
	uint64_t s;
	OK(h, OPENED(s = consume(h, NULL, "robot.>", NULL, NULL)));
	OK(h, shipc_unsubscribe(h, s));
	OK(h, OPENED(s = consume(h, NULL, "robot.*.moved", NULL, "arm_watch")));
	OK(h, shipc_unsubscribe(h, s));
	OK(h, OPENED(s = consume(h, "ship.events.robot", ">", NULL, NULL)));
	OK(h, shipc_unsubscribe(h, s));
}

static void consume_b(struct shipc *h)
{
	uint64_t s;
	OK(h, OPENED(s = consume(h, NULL, "b.x", NULL, NULL)));
	OK(h, shipc_unsubscribe(h, s));
	/* Not covered: b.* is one token, not all of b.> */
	DENIED(h, OPENED(consume(h, NULL, "b.>", NULL, NULL)), "consume",
	       "ship.events.b.>");
	/* B is not in "users". */
	DENIED(h, OPENED(consume(h, NULL, "robot.>", NULL, NULL)), "consume",
	       "ship.events.robot.>");
}

START_TEST(test_consume)
{
	wait_streams();
	uint32_t ev0 = 0, ch0 = 0, ev1 = 0, ch1 = 0;
	bool ok;
	stream_counts("SHIP_EVENTS", NULL, &ev0, &ok);
	stream_counts("CHANNELS", NULL, &ch0, &ok);
	run_as(&A, consume_denied_a);
	stream_counts("SHIP_EVENTS", NULL, &ev1, &ok);
	stream_counts("CHANNELS", NULL, &ch1, &ok);
	/* No durable was made for a denied subscription. */
	ck_assert_uint_eq(ev1, ev0);
	ck_assert_uint_eq(ch1, ch0);
	run_as(&A, consume_a);
	run_as(&B, consume_b);
}
END_TEST

/* ---- streams ---- */

static int declare(struct shipc *h, const char *name, const char *subject)
{
	const char *subjects[] = {subject};
	struct shipc_stream_decl d = {.name = name, .subjects = subjects,
	                              .n_subjects = 1, .memory = 1};
	return shipc_stream_declare(h, &d);
}

static void streams_a(struct shipc *h)
{
	OK(h, declare(h, "PSTREAM_A", "pa.>"));
	DENIED(h, declare(h, "PSTREAM_B", "pb.>"), "stream-admin", "PSTREAM_B");
	/* Listing streams is for everyone. */
	struct shipc_stream_info *list = NULL;
	size_t n = 0;
	OK(h, shipc_streams(h, &list, &n));
	shipc_streams_free(list);
}

static void streams_b(struct shipc *h)
{
	DENIED(h, declare(h, "PSTREAM_A", "pa.>"), "stream-admin", "PSTREAM_A");
	struct shipc_stream_info *list = NULL;
	size_t n = 0;
	OK(h, shipc_streams(h, &list, &n));
	shipc_streams_free(list);
}

START_TEST(test_streams)
{
	wait_streams();
	run_as(&A, streams_a);
	run_as(&B, streams_b);
	bool a, b;
	stream_counts("PSTREAM_A", NULL, NULL, &a);
	stream_counts("PSTREAM_B", NULL, NULL, &b);
	ck_assert(a);
	ck_assert(!b);
}
END_TEST

/* ---- channels ---- */

static int history(struct shipc *h, const char *channel, size_t *n)
{
	struct shipc_channel_msg *list = NULL;
	uint64_t more = 0;
	int r = shipc_channel_history(h, channel, 10, 0, &list, n, &more);
	if (r == 0)
		shipc_channel_history_free(list, *n);
	return r;
}

static void channels_a(struct shipc *h)
{
	size_t n = 0;
	uint64_t s;
	OK(h, shipc_channel_send(h, "ops", "nobody", "hello", NULL, NULL));
	OK(h, shipc_channel_send(h, "team-nobody", "nobody", "hi", NULL, NULL));
	DENIED(h, shipc_channel_send(h, "secret", "nobody", "x", NULL, NULL),
	       "channel", "secret");
	DENIED(h, shipc_channel_send(h, "team-1234", "nobody", "x", NULL, NULL),
	       "channel", "team-1234");
	OK(h, history(h, "ops", &n));
	EXPECT(n >= 1, "ops history has %zu messages", n);
	DENIED(h, history(h, "secret", &n), "channel", "secret");
	OK(h, OPENED(s = shipc_channel_listen(h, "ops", "nobody", 0, 0, on_event,
	                                      NULL)));
	OK(h, shipc_unsubscribe(h, s));
	/* Its own agent, on its own team ({user} in both rules). */
	OK(h, OPENED(s = shipc_channel_listen(h, "team-nobody", "nobody", 0, 0,
	                                      on_event, NULL)));
	OK(h, shipc_unsubscribe(h, s));
	/* Another agent's durable consumer is not for the taking. */
	DENIED(h, OPENED(shipc_channel_listen(h, "ops", "1234", 0, 0, on_event,
	                                      NULL)),
	       "being", "1234");
	DENIED(h, OPENED(shipc_channel_listen(h, "secret", "nobody", 0, 0,
	                                      on_event, NULL)),
	       "channel", "secret");
	errno = 0;
	EXPECT(shipc_channel_send(h, "a.b", "nobody", "x", NULL, NULL) < 0 &&
	               errno == EINVAL,
	       "bad channel: %s", strerror(errno));
}

static void channels_b(struct shipc *h)
{
	uint64_t s;
	OK(h, shipc_channel_send(h, "team-1234", "1234", "hi", NULL, NULL));
	DENIED(h, shipc_channel_send(h, "team-nobody", "1234", "x", NULL, NULL),
	       "channel", "team-nobody");
	OK(h, OPENED(s = shipc_channel_listen(h, "ops", "1234", 0, 0, on_event,
	                                      NULL)));
	OK(h, shipc_unsubscribe(h, s));
	DENIED(h, OPENED(shipc_channel_listen(h, "ops", "nobody", 0, 0, on_event,
	                                      NULL)),
	       "being", "nobody");
}

START_TEST(test_channels)
{
	wait_streams();
	uint64_t m0 = 0, m1 = 0;
	uint32_t c0 = 0, c1 = 0;
	bool ok;
	stream_counts("CHANNELS", &m0, &c0, &ok);
	run_as(&A, channels_a);
	run_as(&B, channels_b);
	stream_counts("CHANNELS", &m1, &c1, &ok);
	/* Three sends were allowed, and only their messages are stored;
	 * the denied listens made no durable: nobody_ops, nobody_team-nobody
	 * and 1234_ops are the only new ones. */
	ck_assert_uint_eq(m1, m0 + 3);
	ck_assert_uint_eq(c1, c0 + 3);
	struct shipc *h = root();
	size_t n = 99;
	ck_assert_int_eq(history(h, "secret", &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(history(h, "team-1234", &n), 0);
	ck_assert_uint_eq(n, 1);
	shipc_close(h);
}
END_TEST

/* ---- KV ---- */

static bool listed(struct shipc_kv_status *list, size_t n, const char *b)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i].bucket, b))
			return true;
	return false;
}

static void kv_a(struct shipc *h)
{
	struct shipc_kv_entry *e = NULL;
	struct shipc_kv_status st;
	char **keys = NULL;
	size_t n = 0;
	OK(h, shipc_kv_get(h, "pub", "k", 0, &e));
	shipc_kv_entry_free(e);
	OK(h, shipc_kv_bucket_info(h, "pub", &st));
	OK(h, shipc_kv_keys(h, "pub", NULL, &keys, &n));
	shipc_kv_keys_free(keys, n);
	/* Read, not write. */
	DENIED(h, shipc_kv_put(h, "pub", "k", "x", 1, NULL), "kv-write", "pub");
	DENIED(h, shipc_kv_delete(h, "pub", "k"), "kv-write", "pub");
	DENIED(h, shipc_kv_bucket_delete(h, "pub"), "kv-admin", "pub");
	/* Nothing of priv. */
	DENIED(h, shipc_kv_get(h, "priv", "k", 0, &e), "kv-read", "priv");
	DENIED(h, shipc_kv_keys(h, "priv", NULL, &keys, &n), "kv-read", "priv");
	struct shipc_kv_entry *hist = NULL;
	DENIED(h, shipc_kv_history(h, "priv", "k", &hist, &n), "kv-read", "priv");
	DENIED(h, OPENED(shipc_kv_watch(h, "priv", NULL, 0, on_entry, NULL,
	                                NULL)),
	       "kv-read", "priv");
	DENIED(h, shipc_kv_bucket_info(h, "priv", &st), "kv-read", "priv");
	DENIED(h, shipc_kv_put(h, "priv", "x", "x", 1, NULL), "kv-write", "priv");
	DENIED(h, shipc_kv_create(h, "priv", "x", "x", 1, NULL), "kv-write",
	       "priv");
	DENIED(h, shipc_kv_purge(h, "priv", "k"), "kv-write", "priv");
	DENIED(h, shipc_kv_bucket_delete(h, "priv"), "kv-admin", "priv");
	struct shipc_kv_config cfg = {.bucket = "priv2", .memory = 1};
	DENIED(h, shipc_kv_bucket_create(h, &cfg, NULL), "kv-admin", "priv2");
	/* Its own bucket ({user}): everything. */
	cfg.bucket = "u_nobody";
	OK(h, shipc_kv_bucket_create(h, &cfg, NULL));
	uint64_t rev = 0;
	OK(h, shipc_kv_put(h, "u_nobody", "k", "v", 1, &rev));
	OK(h, shipc_kv_update(h, "u_nobody", "k", "w", 1, rev, NULL));
	OK(h, shipc_kv_get(h, "u_nobody", "k", 0, &e));
	shipc_kv_entry_free(e);
	uint64_t w;
	OK(h, OPENED(w = shipc_kv_watch(h, "u_nobody", NULL, 0, on_entry, NULL,
	                                NULL)));
	OK(h, shipc_kv_watch_stop(h, w));
	/* The list shows what it may read, and only that. */
	struct shipc_kv_status *list = NULL;
	OK(h, shipc_kv_bucket_list(h, &list, &n));
	bool pub = listed(list, n, "pub"), own = listed(list, n, "u_nobody"),
	     priv = listed(list, n, "priv"), other = listed(list, n, "u_1234");
	shipc_kv_bucket_list_free(list);
	EXPECT(pub && own && !priv && !other,
	       "bucket list: pub %d u_nobody %d priv %d u_1234 %d", pub, own,
	       priv, other);
	/* Input is checked before the rules. */
	errno = 0;
	EXPECT(shipc_kv_get(h, "priv", "..", 0, &e) < 0 && errno == EINVAL,
	       "bad key: %s", strerror(errno));
}

static void kv_b(struct shipc *h)
{
	struct shipc_kv_entry *e = NULL;
	size_t n = 0;
	OK(h, shipc_kv_put(h, "u_1234", "k", "b", 1, NULL));
	OK(h, shipc_kv_get(h, "u_1234", "k", 0, &e));
	shipc_kv_entry_free(e);
	DENIED(h, shipc_kv_get(h, "u_nobody", "k", 0, &e), "kv-read", "u_nobody");
	DENIED(h, shipc_kv_get(h, "pub", "k", 0, &e), "kv-read", "pub");
	DENIED(h, shipc_kv_bucket_delete(h, "u_1234"), "kv-admin", "u_1234");
	struct shipc_kv_status *list = NULL;
	OK(h, shipc_kv_bucket_list(h, &list, &n));
	bool own = listed(list, n, "u_1234"), pub = listed(list, n, "pub"),
	     other = listed(list, n, "u_nobody");
	shipc_kv_bucket_list_free(list);
	EXPECT(own && !pub && !other, "bucket list: u_1234 %d pub %d u_nobody %d",
	       own, pub, other);
}

static void bucket(struct shipc *h, const char *name)
{
	struct shipc_kv_config cfg = {.bucket = name, .memory = 1};
	char why[256];
	ck_assert_msg(shipc_kv_bucket_create(h, &cfg, NULL) == 0, "create %s: %s",
	              name, shipc_last_error(h, why, sizeof(why)));
}

START_TEST(test_kv)
{
	struct shipc *h = root();
	bucket(h, "pub");
	bucket(h, "priv");
	bucket(h, "u_1234");
	ck_assert_int_eq(shipc_kv_put(h, "pub", "k", "p", 1, NULL), 0);
	ck_assert_int_eq(shipc_kv_put(h, "priv", "k", "s", 1, NULL), 0);
	shipc_close(h);
	run_as(&A, kv_a);
	run_as(&B, kv_b);
	h = root();
	struct shipc_kv_entry *e = NULL;
	struct shipc_kv_status st;
	/* The denied calls left everything as it was. */
	ck_assert_int_eq(shipc_kv_get(h, "pub", "k", 0, &e), 0);
	ck_assert_uint_eq(e->len, 1);
	ck_assert_int_eq(((const char *)e->value)[0], 'p');
	shipc_kv_entry_free(e);
	ck_assert_int_eq(shipc_kv_get(h, "priv", "k", 0, &e), 0);
	ck_assert_uint_eq(e->revision, 1); /* the root's put, alone */
	shipc_kv_entry_free(e);
	ck_assert_int_eq(shipc_kv_get(h, "priv", "x", 0, &e), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_kv_bucket_info(h, "priv2", &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_kv_bucket_info(h, "u_1234", &st), 0);
	ck_assert_int_eq(shipc_kv_get(h, "u_nobody", "k", 0, &e), 0);
	shipc_kv_entry_free(e);
	shipc_close(h);
}
END_TEST

/* ---- beings and the noesis-ship stores ---- */

static void beings_a(struct shipc *h)
{
	struct shipc_being *b = NULL, *list = NULL;
	size_t n = 0;
	char *json = NULL;
	char **keys = NULL;
	OK(h, shipc_being_register(h, "nobody", NULL, 0, NULL));
	OK(h, shipc_being_register(h, "nobody.arm", NULL, 0, NULL));
	OK(h, shipc_being_update(h, "nobody", "working", "t1", NULL));
	OK(h, shipc_being_heartbeat(h, "nobody"));
	OK(h, shipc_being_keepalive(h, "nobody", 0));
	OK(h, shipc_being_keepalive_stop(h, "nobody"));
	OK(h, shipc_being_unregister(h, "nobody.arm"));
	DENIED(h, shipc_being_register(h, "1234", NULL, 0, NULL), "being",
	       "1234");
	DENIED(h, shipc_being_register(h, "nobodyelse", NULL, 0, NULL), "being",
	       "nobodyelse");
	DENIED(h, shipc_being_update(h, "root-being", "idle", NULL, NULL),
	       "being", "root-being");
	DENIED(h, shipc_being_heartbeat(h, "root-being"), "being", "root-being");
	DENIED(h, shipc_being_keepalive(h, "root-being", 0), "being",
	       "root-being");
	DENIED(h, shipc_being_unregister(h, "root-being"), "being", "root-being");
	/* Reading the registry is reading its bucket: granted to all. */
	OK(h, shipc_being_get(h, "root-being", &b));
	shipc_beings_free(b, 1);
	OK(h, shipc_beings_list(h, 1, 0, &list, &n));
	shipc_beings_free(list, n);
	/* ship_config: read only; ship_health: write only. */
	OK(h, shipc_config_get(h, "mode", NULL, &json));
	free(json);
	OK(h, shipc_config_keys(h, &keys, &n));
	shipc_kv_keys_free(keys, n);
	uint64_t w;
	OK(h, OPENED(w = shipc_config_watch(h, NULL, 0, on_entry, NULL, NULL)));
	OK(h, shipc_kv_watch_stop(h, w));
	DENIED(h, shipc_config_set(h, "mode", "\"evil\""), "kv-write",
	       "ship_config");
	OK(h, shipc_health_report(h, "nobody", "{\"ok\":true}"));
	DENIED(h, shipc_health_get(h, "nobody", &json), "kv-read", "ship_health");
	struct shipc_kv_entry *es = NULL;
	DENIED(h, shipc_health_list(h, &es, &n), "kv-read", "ship_health");
	/* Malformed input is still INVALID_ARGUMENT. */
	errno = 0;
	EXPECT(shipc_being_register(h, "a..b", NULL, 0, NULL) < 0 &&
	               errno == EINVAL,
	       "bad id: %s", strerror(errno));
}

static void beings_b(struct shipc *h)
{
	OK(h, shipc_being_register(h, "1234", NULL, 0, NULL));
	DENIED(h, shipc_being_unregister(h, "nobody"), "being", "nobody");
	DENIED(h, shipc_being_update(h, "nobody", "offline", NULL, NULL), "being",
	       "nobody");
	DENIED(h, shipc_health_report(h, "1234", "{}"), "kv-write", "ship_health");
}

START_TEST(test_beings)
{
	struct shipc *h = root();
	char why[256];
	ck_assert_msg(shipc_being_register(h, "root-being", NULL, 0, NULL) == 0,
	              "%s", shipc_last_error(h, why, sizeof(why)));
	ck_assert_int_eq(shipc_config_set(h, "mode", "\"auto\""), 0);
	ck_assert_int_eq(shipc_health_report(h, "root", "{}"), 0);
	shipc_close(h);
	run_as(&A, beings_a);
	run_as(&B, beings_b);
	h = root();
	struct shipc_being *b = NULL;
	char *json = NULL;
	ck_assert_int_eq(shipc_being_get(h, "root-being", &b), 0);
	ck_assert_str_eq(b->state, "idle");
	shipc_beings_free(b, 1);
	ck_assert_int_eq(shipc_being_get(h, "nobody", &b), 0);
	ck_assert_str_eq(b->state, "working");
	shipc_beings_free(b, 1);
	ck_assert_int_eq(shipc_being_get(h, "1234", &b), 0);
	shipc_beings_free(b, 1);
	ck_assert_int_eq(shipc_being_get(h, "nobodyelse", &b), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_config_get(h, "mode", NULL, &json), 0);
	ck_assert_str_eq(json, "\"auto\"");
	free(json);
	ck_assert_int_eq(shipc_health_get(h, "nobody", &json), 0);
	free(json);
	ck_assert_int_eq(shipc_health_get(h, "1234", &json), -1);
	ck_assert_int_eq(errno, ENOENT);
	shipc_close(h);
}
END_TEST

/* ---- no rules: every app may do everything, as before ---- */

static void everything(struct shipc *h)
{
	uint64_t s;
	size_t n = 0;
	OK(h, emit(h, NULL, "anything.at.all", NULL));
	OK(h, emit(h, "ship.channel", "free", "CHANNELS"));
	OK(h, OPENED(s = consume(h, NULL, ">", NULL, "all_of_it")));
	OK(h, shipc_unsubscribe(h, s));
	OK(h, declare(h, "FREE", "free.>"));
	OK(h, shipc_channel_send(h, "free", "someone", "hi", NULL, NULL));
	OK(h, history(h, "free", &n));
	OK(h, OPENED(s = shipc_channel_listen(h, "free", "someone", 0, 0,
	                                      on_event, NULL)));
	OK(h, shipc_unsubscribe(h, s));
	struct shipc_kv_config cfg = {.bucket = "free", .memory = 1};
	OK(h, shipc_kv_bucket_create(h, &cfg, NULL));
	OK(h, shipc_kv_put(h, "free", "k", "v", 1, NULL));
	struct shipc_kv_entry *e = NULL;
	OK(h, shipc_kv_get(h, "free", "k", 0, &e));
	shipc_kv_entry_free(e);
	struct shipc_kv_status *list = NULL;
	OK(h, shipc_kv_bucket_list(h, &list, &n));
	bool found = listed(list, n, "free");
	shipc_kv_bucket_list_free(list);
	EXPECT(found, "bucket free not listed");
	OK(h, shipc_being_register(h, "someone", NULL, 0, NULL));
	OK(h, shipc_config_set(h, "k", "1"));
	OK(h, shipc_health_report(h, "someone", "{}"));
	OK(h, shipc_kv_bucket_delete(h, "free"));
}

/* What other blocks own, events never reach, even with everything
 * allowed: a KV write by emit, a KV read by a consumer, a stream that
 * takes in replies or system subjects, a bucket's stream made by hand. */
static void reserved(struct shipc *h)
{
	const char *why = "belongs to another building block";
	struct shipc_kv_config cfg = {.bucket = "resv", .memory = 1};
	OK(h, shipc_kv_bucket_create(h, &cfg, NULL));
	DENIED(h, emit(h, "$KV.resv", "k", "KV_resv"), why, "$KV.resv.k");
	DENIED(h, OPENED(consume(h, "$KV.resv", ">", "KV_resv", NULL)), why,
	       "KV_resv");
	DENIED(h, OPENED(consume(h, "*", ">", "KV_resv", NULL)), why, "KV_resv");
	DENIED(h, OPENED(consume(h, "_INBOX", ">", NULL, NULL)), why,
	       "_INBOX.>");
	DENIED(h, OPENED(consume(h, "$JS", ">", NULL, NULL)), why, "$JS.>");
	DENIED(h, declare(h, "SPY", "_INBOX.>"), why, "_INBOX.>");
	DENIED(h, declare(h, "SPY", ">"), why, ">");
	DENIED(h, declare(h, "SPY", "*.x"), why, "*.x");
	DENIED(h, declare(h, "SPY", "$KV.>"), why, "$KV.>");
	DENIED(h, declare(h, "KV_fake", "fake.>"), why, "KV_fake");
}

START_TEST(test_no_rules)
{
	wait_streams();
	run_as(&B, everything);
	run_as(&B, reserved);
	struct shipc *h = root();
	struct shipc_kv_entry *e = NULL;
	ck_assert_int_eq(shipc_kv_get(h, "resv", "k", 0, &e), -1);
	ck_assert_int_eq(errno, ENOENT);
	shipc_close(h);
	bool spy, fake;
	stream_counts("SPY", NULL, NULL, &spy);
	stream_counts("KV_fake", NULL, NULL, &fake);
	ck_assert(!spy && !fake);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("rules");
	tcase_add_checked_fixture(tc, setup_rules, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_emit);
	tcase_add_test(tc, test_consume);
	tcase_add_test(tc, test_streams);
	tcase_add_test(tc, test_channels);
	tcase_add_test(tc, test_kv);
	tcase_add_test(tc, test_beings);
	suite_add_tcase(s, tc);
	tc = tcase_create("none");
	tcase_add_checked_fixture(tc, setup_none, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_no_rules);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "policy tests drop privileges: run as root\n");
		return 77; /* skipped */
	}
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
