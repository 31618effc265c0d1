/* SPDX-License-Identifier: MIT */
/* daemon/uplink.c driven by hand: its JetStream calls are answered here
 * in the order it makes them, so rounds can be cut and sources listed
 * exactly as a test needs. */
#include <check.h>
#include <stdarg.h>

#include "../../daemon/uplink.c"

struct config *conf;
struct event_base *base;
static uint64_t clock_ms = 1000;
static bool linked = true;

uint64_t now_ms(void) { return clock_ms; }
bool link_connected(void) { return linked; }
bool js_name_valid(const char *s)
{
	return s && *s && !strpbrk(s, " .*>/\\");
}
bool js_domain_valid(const char *s) { return s && *s; }
bool js_dom_remote(enum js_dom d) { return d == JS_HUB; }
void events_timestamp(char *b, size_t n) { snprintf(b, n, "now"); }
void events_random_hex(char *b, size_t n)
{
	memset(b, 'a', n);
	b[n] = '\0';
}
static int events;
void events_emit_system(const char *type, const char *source,
                        const char *payload, const char *corr,
                        const char *msg_id)
{
	(void)type, (void)source, (void)payload, (void)corr, (void)msg_id;
	events++;
}
/* The limits on the hub's consumers have a test of their own. */
void uplinkcap_init(void) {}
void uplinkcap_link_changed(bool l) { (void)l; }
void uplinkcap_tick(void) {}
void uplinkcap_uplink(bool u) { (void)u; }
void uplinkcap_sourced(const char *s, uint64_t m) { (void)s, (void)m; }
void uplinkcap_finish(void) {}
void uplinkcap_describe(const char *s, Ship__UplinkStream *o)
{
	(void)s, (void)o;
}
void log_warnx(const char *f, ...) { (void)f; }
void log_info(const char *f, ...) { (void)f; }
void fatal(const char *f, ...)
{
	(void)f;
	abort();
}

/* The calls uplink.c made, not answered yet, oldest first. */
struct fake {
	js_api_fn *fn;
	void *arg;
	char what[300];
	enum js_dom d;
};
static struct fake pending[8];
static int npend;

struct js_call *js_api_in(enum js_dom d, const char *what, json_t *body,
                          uint32_t ms, js_api_fn *fn, void *arg)
{
	(void)body, (void)ms;
	ck_assert_int_lt(npend, 8);
	struct fake *f = &pending[npend++];
	f->fn = fn;
	f->arg = arg;
	f->d = d;
	snprintf(f->what, sizeof(f->what), "%s", what);
	return (struct js_call *)f;
}

void js_cancel(struct js_call *c)
{
	if (c)
		((struct fake *)c)->fn = NULL;
}

/* Answer the oldest call with json (NULL: unreachable), checking what it
 * asked when want is not NULL. */
static void answer(const char *want, const char *json)
{
	ck_assert_int_gt(npend, 0);
	struct fake f = pending[0];
	memmove(pending, pending + 1, (size_t)--npend * sizeof(f));
	if (!f.fn)
		return; /* cancelled */
	if (want)
		ck_assert_str_eq(f.what, want);
	struct js_err e = {.code = SHIP__CODE__UNAVAILABLE,
	                   .no_responders = true,
	                   .unreachable = true};
	snprintf(e.text, sizeof(e.text), "no responders");
	json_t *j = json ? json_loads(json, 0, NULL) : NULL;
	f.fn(f.arg, j, j ? NULL : &e);
	json_decref(j);
}

static void next_tick(void)
{
	clock_ms += 2000;
	tick(0, 0, NULL);
}

static char sources[8192];

/* FLEET_EVENTS's answer: the robot streams named (NULL-terminated) as
 * its sources from robot r1, each with lag. */
static const char *hub_answer(int lag, ...)
{
	va_list ap;
	size_t n = (size_t)snprintf(sources, sizeof(sources),
	                            "{\"config\":{\"name\":\"FLEET_EVENTS\"},"
	                            "\"sources\":[");
	va_start(ap, lag);
	const char *name;
	for (int i = 0; (name = va_arg(ap, const char *)); i++)
		n += (size_t)snprintf(sources + n, sizeof(sources) - n,
		                      "%s{\"name\":\"%s\",\"external\":"
		                      "{\"api\":\"$JS.r1.API\"},\"lag\":%d}",
		                      i ? "," : "", name, lag);
	va_end(ap);
	snprintf(sources + n, sizeof(sources) - n, "]}");
	return sources;
}

static const char *local_answer(int last_seq)
{
	static char buf[128];
	snprintf(buf, sizeof(buf),
	         "{\"state\":{\"last_seq\":%d,\"messages\":%d,\"bytes\":%d}}",
	         last_seq, last_seq, last_seq * 100);
	return buf;
}

static Ship__UplinkStatus st;
static Ship__UplinkStream sb[16], *sp[16];

static const Ship__UplinkStream *status_of(const char *stream)
{
	uplink_status(&st, sb, sp, 16);
	for (size_t i = 0; i < st.n_streams; i++)
		if (!strcmp(sb[i].stream, stream))
			return &sb[i];
	return NULL;
}

static struct config c;

static void setup(void)
{
	memset(&up, 0, sizeof(up));
	memset(&c, 0, sizeof(c));
	c.hub_domain = "hub";
	c.hub_streams = "FLEET_EVENTS";
	c.uplink_probe_ms = 2000;
	conf = &c;
	base = event_base_new();
	npend = 0;
	linked = true;
	uplink_init();
	/* The first round: up, the robot's domain, all of it sourced. */
	next_tick();
	answer("INFO", "{}");
	answer("INFO", "{\"domain\":\"r1\"}");
	answer("STREAM.INFO.FLEET_EVENTS", hub_answer(0, "SHIP_EVENTS", NULL));
	answer("STREAM.INFO.SHIP_EVENTS", local_answer(100));
	ck_assert_int_eq(npend, 0);
}

static void teardown(void)
{
	uplink_finish();
	event_base_free(base);
	base = NULL;
}

/* A round cut by a link loss after the hub said its lag: the next rounds,
 * with the hub out of reach, count what the robot gained since the hub
 * last had it (the lag of the cut round is not taken against them). */
START_TEST(round_cut_by_link_loss)
{
	const Ship__UplinkStream *s = status_of("SHIP_EVENTS");
	ck_assert_ptr_nonnull(s);
	ck_assert_uint_eq(s->waiting_msgs, 0);
	next_tick();
	answer("INFO", "{}");
	answer("STREAM.INFO.FLEET_EVENTS", hub_answer(0, "SHIP_EVENTS", NULL));
	linked = false;
	uplink_link_changed(false);
	answer(NULL, NULL); /* the robot stream's, cancelled */
	linked = true;
	next_tick();
	answer("INFO", NULL); /* the hub out of reach */
	answer("STREAM.INFO.SHIP_EVENTS", local_answer(600));
	s = status_of("SHIP_EVENTS");
	ck_assert_int_eq(st.state, SHIP__UPLINK_STATE__UPLINK_DOWN);
	ck_assert_uint_eq(s->waiting_msgs, 500);
	next_tick();
	answer("INFO", NULL);
	answer("STREAM.INFO.SHIP_EVENTS", local_answer(650));
	ck_assert_uint_eq(status_of("SHIP_EVENTS")->waiting_msgs, 550);
	ck_assert_int_eq(events, 1); /* uplink.down */
}
END_TEST

/* Sources that fill the table, or are no stream names, do not keep the
 * robot's real streams out for good: gone from the hub, they go. */
START_TEST(sources_come_and_go)
{
	next_tick();
	answer("INFO", "{}");
	answer("STREAM.INFO.FLEET_EVENTS",
	       hub_answer(7, "O0", "O1", "O2", "O3", "O4", "O5", "O6", "O7",
	                  "O8", "O9", "O10", "O11", "O12", "O13", "O14", "O15",
	                  "bad.name", "NEW", NULL));
	while (npend)
		answer(NULL, local_answer(100));
	/* The table was full (SHIP_EVENTS and 15 others); SHIP_EVENTS, which
	 * the hub no longer names, went at the round's end. */
	uplink_status(&st, sb, sp, 16);
	ck_assert_uint_eq(st.n_streams, 15);
	ck_assert_ptr_null(status_of("bad.name"));
	ck_assert_ptr_null(status_of("NEW"));
	/* The others gone from the hub: within two rounds only its real
	 * sources are followed. */
	for (int round = 0; round < 2; round++) {
		next_tick();
		answer("INFO", "{}");
		answer("STREAM.INFO.FLEET_EVENTS",
		       hub_answer(3, "SHIP_EVENTS", "NEW", NULL));
		while (npend)
			answer(NULL, local_answer(100));
	}
	uplink_status(&st, sb, sp, 16);
	ck_assert_uint_eq(st.n_streams, 2);
	ck_assert_uint_eq(status_of("SHIP_EVENTS")->waiting_msgs, 3);
	ck_assert_uint_eq(status_of("NEW")->waiting_msgs, 3);
	ck_assert_uint_gt(status_of("NEW")->hub_seen_ms, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("uplink");
	TCase *t = tcase_create("rounds");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, round_cut_by_link_loss);
	tcase_add_test(t, sources_come_and_go);
	suite_add_tcase(s, t);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
