/* SPDX-License-Identifier: MIT */
/* Unit tests of daemon/policy.c: parsing "allow" rules, binding them to an
 * identity, and matching operations and resources against them; "quota"
 * lines and which one names an app. */
#include <check.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shipd.h"

/* ---- helpers ---- */

static struct policy *rules(const char *const *lines)
{
	struct policy *p = NULL;
	char err[512];
	for (int i = 0; lines[i]; i++)
		ck_assert_msg(policy_add_rule(&p, lines[i], "t.conf", i + 1, err,
		                              sizeof(err)) == 0,
		              "'%s': %s", lines[i], err);
	return p;
}

static struct identity user(const char *name, uid_t uid, const char *unit)
{
	struct identity id = {.uid = uid, .gid = uid, .pid = 1};
	snprintf(id.user, sizeof(id.user), "%s", name);
	snprintf(id.unit, sizeof(id.unit), "%s", unit ? unit : "");
	return id;
}

static bool allows(const struct policy_view *v, enum pol_op op,
                   const char *res)
{
	char why[512];
	return policy_allows(v, op, res, why, sizeof(why));
}

/* A rule that fails to parse, with the error it gives. */
static void assert_bad(const char *rule, const char *msg)
{
	struct policy *p = NULL;
	char err[512] = "";
	ck_assert_msg(policy_add_rule(&p, rule, "t.conf", 1, err, sizeof(err)) <
	                      0,
	              "'%s' parsed", rule);
	ck_assert_msg(strstr(err, msg), "'%s': '%s' has no '%s'", rule, err,
	              msg);
	ck_assert_msg(!strncmp(err, "allow: ", 7), "'%s'", err);
	ck_assert(!policy_enforced(p));
	policy_free(p);
}

/* ---- parsing ---- */

START_TEST(test_parse_errors)
{
	assert_bad("someone publish a", "is not *, user:NAME");
	assert_bad("users:alice publish a", "is not *, user:NAME");
	assert_bad("uid:x publish a", "is not a number");
	assert_bad("uid:-1 publish a", "is not a number");
	assert_bad("gid:4294967295 publish a", "is not a number");
	assert_bad("user: publish a", "expected a name");
	assert_bad("group:wh*eel publish a", "expected a name");
	assert_bad("unit:a*b publish a", "only at its end");
	assert_bad("* shout a", "unknown operation 'shout'");
	assert_bad("* publish,Subscribe a", "unknown operation 'Subscribe'");
	assert_bad("* publish, a", "expected WHO");
	assert_bad("* publish,,kv a", "empty operation");
	assert_bad("* ,publish a", "expected WHO");
	assert_bad("* publish", "expected WHO");
	assert_bad("* publish a b", "expected WHO");
	assert_bad("", "expected WHO");
	assert_bad("* publish a,,b", "empty resource");
	assert_bad("* publish a,", "empty resource");
	assert_bad("* publish a..b", "empty token");
	assert_bad("* publish .a", "empty token");
	assert_bad("* publish a.", "empty token");
	assert_bad("* publish a.>.b", "> only as the last");
	assert_bad("* publish a*", "whole tokens");
	assert_bad("* publish a.b>", "whole tokens");
	assert_bad("* publish {users}", "placeholders");
	assert_bad("* publish a}", "placeholders");
	assert_bad("* admin shutdown", "not an admin operation");

	char longer[300];
	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	char *rule;
	ck_assert_int_gt(asprintf(&rule, "* publish %s", longer), 0);
	assert_bad(rule, "longer than 255 bytes");
	free(rule);
	longer[255] = '\0';
	ck_assert_int_gt(asprintf(&rule, "* publish %s", longer), 0);
	const char *const ok[] = {rule, NULL};
	policy_free(rules(ok));
	free(rule);
}
END_TEST

START_TEST(test_too_many)
{
	struct policy *p = NULL;
	char err[256];
	for (int i = 0; i < 1024; i++)
		ck_assert_int_eq(policy_add_rule(&p, "* publish a", "f", i + 1,
		                                 err, sizeof(err)),
		                 0);
	ck_assert_int_eq(policy_add_rule(&p, "* publish a", "f", 1025, err,
	                                 sizeof(err)),
	                 -1);
	ck_assert_str_eq(err, "allow: more than 1024 rules");
	size_t n;
	char **list = policy_rules(p, &n);
	ck_assert_uint_eq(n, 1024);
	ck_assert_str_eq(list[1023], "f:1024: allow = * publish a");
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
	policy_free(p);
}
END_TEST

START_TEST(test_print_and_rules)
{
	struct policy *p = NULL;
	char err[256];
	ck_assert_int_eq(policy_add_rule(&p, "  unit:a.service   publish , kv  "
	                                     "x.> ,  {unit}",
	                                 "/etc/ship/shipd.conf", 7, err,
	                                 sizeof(err)),
	                 0);
	ck_assert_int_eq(policy_add_rule(&p, "* admin policy", "-o", 0, err,
	                                 sizeof(err)),
	                 0);
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);
	policy_print(p, f);
	fclose(f);
	ck_assert_str_eq(s, "allow = unit:a.service publish,kv x.>,{unit}\n"
	                    "allow = * admin policy\n");
	free(s);
	size_t n;
	char **list = policy_rules(p, &n);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(list[0], "/etc/ship/shipd.conf:7: allow = "
	                          "unit:a.service publish,kv x.>,{unit}");
	ck_assert_str_eq(list[1], "-o: allow = * admin policy");
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
	policy_free(p);

	list = policy_rules(NULL, &n);
	ck_assert_ptr_nonnull(list);
	ck_assert_uint_eq(n, 0);
	free(list);
}
END_TEST

/* ---- quotas ---- */

/* A quota line that fails to parse, with the error it gives. */
static void assert_bad_quota(const char *line, const char *msg)
{
	struct policy *p = NULL;
	char err[512] = "";
	ck_assert_msg(policy_add_quota(&p, line, "t.conf", 1, err,
	                               sizeof(err)) < 0,
	              "'%s' parsed", line);
	ck_assert_msg(!strcmp(err, msg), "'%s': '%s', not '%s'", line, err,
	              msg);
	ck_assert_uint_eq(policy_quota_count(p), 0);
	policy_free(p);
}

START_TEST(test_quota_parse_errors)
{
	assert_bad_quota("", "quota: expected WHO KEY=VALUE [KEY=VALUE...] "
	                     "(keys: connections, subscriptions, requests, "
	                     "bytes)");
	assert_bad_quota("uid:1000", "quota: expected WHO KEY=VALUE "
	                             "[KEY=VALUE...] (keys: connections, "
	                             "subscriptions, requests, bytes)");
	assert_bad_quota("someone requests=1",
	                 "quota: 'someone' is not *, user:NAME, uid:N, "
	                 "group:NAME, gid:N or unit:NAME");
	assert_bad_quota("uid:x requests=1",
	                 "quota: 'uid:x': 'x' is not a number");
	assert_bad_quota("unit:a*b requests=1",
	                 "quota: 'unit:a*b': expected a name (a '*' only at "
	                 "its end)");
	assert_bad_quota("user:al*ce requests=1",
	                 "quota: 'user:al*ce': expected a name");
	assert_bad_quota("* requests", "quota: 'requests' is not KEY=VALUE");
	assert_bad_quota("* =5", "quota: '=5' is not KEY=VALUE");
	assert_bad_quota("* watches=5",
	                 "quota: unknown key 'watches' (connections, "
	                 "subscriptions, requests or bytes)");
	assert_bad_quota("* Requests=5",
	                 "quota: unknown key 'Requests' (connections, "
	                 "subscriptions, requests or bytes)");
	assert_bad_quota("* requests=5 requests=6",
	                 "quota: requests given twice");
	assert_bad_quota("* requests=", "quota: requests: '' is not a number");
	assert_bad_quota("* requests=-1",
	                 "quota: requests: '-1' is not a number");
	assert_bad_quota("* requests=5x",
	                 "quota: requests: '5x' is not a number");
	assert_bad_quota("* bytes=4G", "quota: bytes: '4G' is not a number");
	assert_bad_quota("* bytes=99999999999999999999999",
	                 "quota: bytes: '99999999999999999999999' is not a "
	                 "number");
	assert_bad_quota("* bytes=4096M",
	                 "quota: bytes: 4096M is out of range 0..4294967295");
	assert_bad_quota("* connections=0",
	                 "quota: connections: 0 is out of range 1..1000000");
	assert_bad_quota("* subscriptions=10000001",
	                 "quota: subscriptions: 10000001 is out of range "
	                 "0..10000000");
	/* Rules and quotas are kept apart: a quota is not an allow. */
	struct policy *p = NULL;
	char err[256];
	ck_assert_int_eq(policy_add_rule(&p, "* requests=5", "t.conf", 1, err,
	                                 sizeof(err)),
	                 -1);
	ck_assert_int_eq(policy_add_quota(&p, "* publish a", "t.conf", 1, err,
	                                  sizeof(err)),
	                 -1);
	ck_assert_str_eq(err, "quota: 'publish' is not KEY=VALUE");
	policy_free(p);
}
END_TEST

static struct policy *quotas(const char *const *lines)
{
	struct policy *p = NULL;
	char err[512];
	for (int i = 0; lines[i]; i++)
		ck_assert_msg(policy_add_quota(&p, lines[i], "t.conf", i + 1, err,
		                               sizeof(err)) == 0,
		              "'%s': %s", lines[i], err);
	return p;
}

START_TEST(test_quota_values_and_print)
{
	const char *const l[] = {"  unit:planner.service  connections=4 "
	                         "subscriptions=256",
	                         "* requests=64 bytes=2k",
	                         "uid:7 bytes=3M subscriptions=0", NULL};
	struct policy *p = quotas(l);
	ck_assert(!policy_enforced(p)); /* quotas alone deny nothing */
	ck_assert_uint_eq(policy_quota_count(p), 3);
	struct quota q;
	struct identity id = user("alice", 7, NULL);
	ck_assert(policy_quota(p, &id, &q));
	ck_assert_str_eq(q.where, "t.conf:2");
	ck_assert_uint_eq(q.max[QUOTA_REQUESTS], 64);
	ck_assert_uint_eq(q.max[QUOTA_BYTES], 2048);
	ck_assert_uint_eq(q.max[QUOTA_CONNECTIONS], QUOTA_NONE);
	ck_assert_uint_eq(q.max[QUOTA_SUBSCRIPTIONS], QUOTA_NONE);
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);
	policy_print_quotas(p, f);
	fclose(f);
	ck_assert_str_eq(s, "quota = unit:planner.service connections=4 "
	                    "subscriptions=256\n"
	                    "quota = * requests=64 bytes=2k\n"
	                    "quota = uid:7 bytes=3M subscriptions=0\n");
	free(s);
	/* Listed after the rules, with their file:line. */
	char err[256];
	ck_assert_int_eq(policy_add_rule(&p, "* publish a", "t.conf", 9, err,
	                                 sizeof(err)),
	                 0);
	size_t n;
	char **list = policy_rules(p, &n);
	ck_assert_uint_eq(n, 4);
	ck_assert_str_eq(list[0], "t.conf:9: allow = * publish a");
	ck_assert_str_eq(list[1], "t.conf:1: quota = unit:planner.service "
	                          "connections=4 subscriptions=256");
	ck_assert_str_eq(list[3], "t.conf:3: quota = uid:7 bytes=3M "
	                          "subscriptions=0");
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
	ck_assert_str_eq(quota_key_name(QUOTA_SUBSCRIPTIONS), "subscriptions");
	policy_free(p);
}
END_TEST

/* The first line naming the identity applies; root and shipd's own user
 * have none. */
START_TEST(test_quota_match)
{
	const char *const l[] = {"unit:planner.service connections=4",
	                         "unit:robot-* connections=5",
	                         "user:alice connections=6",
	                         "gid:500 connections=7",
	                         "uid:1001 connections=8", NULL};
	struct policy *p = quotas(l);
	struct quota q;
	struct identity id = user("alice", 1000, "planner.service");
	ck_assert(policy_quota(p, &id, &q));
	ck_assert_uint_eq(q.max[QUOTA_CONNECTIONS], 4); /* first, not alice's */
	id = user("alice", 1000, "robot-arm.service");
	ck_assert(policy_quota(p, &id, &q));
	ck_assert_uint_eq(q.max[QUOTA_CONNECTIONS], 5);
	ck_assert_str_eq(q.where, "t.conf:2");
	id = user("alice", 1000, NULL);
	ck_assert(policy_quota(p, &id, &q));
	ck_assert_uint_eq(q.max[QUOTA_CONNECTIONS], 6);
	id = user("bob", 1001, "planner.service.d");
	id.groups[0] = 500;
	id.n_groups = 1;
	ck_assert(policy_quota(p, &id, &q));
	ck_assert_uint_eq(q.max[QUOTA_CONNECTIONS], 7);
	id.n_groups = 0;
	ck_assert(policy_quota(p, &id, &q));
	ck_assert_uint_eq(q.max[QUOTA_CONNECTIONS], 8);
	id = user("carol", 1002, NULL);
	ck_assert(!policy_quota(p, &id, &q));
	ck_assert(!policy_quota(NULL, &id, &q));
	id = user("root", 0, "planner.service");
	id.privileged = true;
	ck_assert(!policy_quota(p, &id, &q));
	policy_free(p);

	const char *const any[] = {"* requests=1", NULL};
	p = quotas(any);
	id = user("carol", 1002, NULL);
	ck_assert(policy_quota(p, &id, &q));
	id.privileged = true;
	ck_assert(!policy_quota(p, &id, &q));
	policy_free(p);
}
END_TEST

/* ---- matching ---- */

START_TEST(test_no_rules)
{
	struct identity id = user("alice", 1000, NULL);
	ck_assert(!policy_enforced(NULL));
	struct policy_view *v = policy_bind(NULL, &id);
	ck_assert(allows(v, POL_PUBLISH, "$JS.API.STREAM.DELETE.X"));
	ck_assert(allows(v, POL_ADMIN, "reload"));
	policy_view_free(v);
}
END_TEST

START_TEST(test_deny_by_default)
{
	const char *const r[] = {"* publish a.b", NULL};
	struct policy *p = rules(r);
	ck_assert(policy_enforced(p));
	struct identity id = user("alice", 1000, "driver.service");
	struct policy_view *v = policy_bind(p, &id);
	char why[512];
	ck_assert(policy_allows(v, POL_PUBLISH, "a.b", why, sizeof(why)));
	ck_assert_str_eq(why, "t.conf:1: allow = * publish a.b");
	ck_assert(!policy_allows(v, POL_PUBLISH, "a.c", why, sizeof(why)));
	ck_assert_str_eq(why, "no rule grants publish on 'a.c' to user alice "
	                      "(uid 1000), unit driver.service");
	ck_assert(!policy_allows(v, POL_SUBSCRIBE, "a.b", why, sizeof(why)));
	ck_assert(!allows(v, POL_ADMIN, "clients"));
	ck_assert(!policy_allows(v, POL_PUBLISH, "a.c", NULL, 0));
	policy_view_free(v);
	id = user("bob", 1001, NULL);
	v = policy_bind(p, &id);
	ck_assert(!policy_allows(v, POL_KV_READ, "cfg", why, sizeof(why)));
	ck_assert_str_eq(why,
	                 "no rule grants kv-read on 'cfg' to user bob (uid 1001)");
	policy_view_free(v);
	policy_free(p);
}
END_TEST

START_TEST(test_privileged)
{
	const char *const r[] = {"uid:5 publish a", NULL};
	struct policy *p = rules(r);
	struct identity id = user("root", 0, NULL);
	id.privileged = true;
	struct policy_view *v = policy_bind(p, &id);
	ck_assert(allows(v, POL_ADMIN, "reload"));
	ck_assert(allows(v, POL_SUBSCRIBE, ">"));
	policy_view_free(v);
	policy_free(p);
}
END_TEST

START_TEST(test_wildcards)
{
	const char *const r[] = {"* publish robot.*.speed,robot.arm.>", NULL};
	struct policy *p = rules(r);
	struct identity id = user("alice", 1000, NULL);
	struct policy_view *v = policy_bind(p, &id);
	ck_assert(allows(v, POL_PUBLISH, "robot.left.speed"));
	ck_assert(!allows(v, POL_PUBLISH, "robot.left.speed.x"));
	ck_assert(!allows(v, POL_PUBLISH, "robot.speed"));
	ck_assert(allows(v, POL_PUBLISH, "robot.arm.x"));
	ck_assert(allows(v, POL_PUBLISH, "robot.arm.x.y.z"));
	ck_assert(!allows(v, POL_PUBLISH, "robot.arm"));
	ck_assert(!allows(v, POL_PUBLISH, "robot.armx.y"));
	/* A literal with wildcards must be covered as a pattern. */
	ck_assert(allows(v, POL_PUBLISH, "robot.*.speed"));
	ck_assert(!allows(v, POL_PUBLISH, "robot.>"));
	ck_assert(!allows(v, POL_PUBLISH, "*.left.speed"));
	policy_view_free(v);
	policy_free(p);
}
END_TEST

START_TEST(test_cover)
{
	const char *const r[] = {"uid:1 subscribe robot.>",
	                         "uid:2 subscribe robot.*",
	                         "uid:3 subscribe,consume >",
	                         "uid:4 subscribe a.*.c", NULL};
	struct policy *p = rules(r);
	struct identity id = user("u1", 1, NULL);
	struct policy_view *v = policy_bind(p, &id);
	ck_assert(allows(v, POL_SUBSCRIBE, "robot.a.*"));
	ck_assert(allows(v, POL_SUBSCRIBE, "robot.>"));
	ck_assert(allows(v, POL_SUBSCRIBE, "robot.*"));
	ck_assert(allows(v, POL_SUBSCRIBE, "robot.a.b.>"));
	ck_assert(!allows(v, POL_SUBSCRIBE, "robot"));
	ck_assert(!allows(v, POL_SUBSCRIBE, ">"));
	ck_assert(!allows(v, POL_SUBSCRIBE, "*.a"));
	ck_assert(!allows(v, POL_CONSUME, "robot.a"));
	policy_view_free(v);

	id = user("u2", 2, NULL);
	v = policy_bind(p, &id);
	ck_assert(allows(v, POL_SUBSCRIBE, "robot.*"));
	ck_assert(allows(v, POL_SUBSCRIBE, "robot.x"));
	ck_assert(!allows(v, POL_SUBSCRIBE, "robot.>"));
	ck_assert(!allows(v, POL_SUBSCRIBE, "robot.x.*"));
	policy_view_free(v);

	id = user("u3", 3, NULL);
	v = policy_bind(p, &id);
	ck_assert(allows(v, POL_SUBSCRIBE, ">"));
	ck_assert(allows(v, POL_CONSUME, "ship.events.>"));
	ck_assert(allows(v, POL_SUBSCRIBE, "*"));
	policy_view_free(v);

	id = user("u4", 4, NULL);
	v = policy_bind(p, &id);
	ck_assert(allows(v, POL_SUBSCRIBE, "a.*.c"));
	ck_assert(allows(v, POL_SUBSCRIBE, "a.b.c"));
	ck_assert(!allows(v, POL_SUBSCRIBE, "a.>"));
	ck_assert(!allows(v, POL_SUBSCRIBE, "a.*.*"));
	ck_assert(!allows(v, POL_SUBSCRIBE, "a.*.c.d"));
	policy_view_free(v);
	policy_free(p);
}
END_TEST

START_TEST(test_ops_and_shorthands)
{
	const char *const r[] = {"uid:1 pubsub,kv x", "uid:2 * *",
	                         "uid:3 admin clients,policy", NULL};
	struct policy *p = rules(r);
	struct identity id = user("u1", 1, NULL);
	struct policy_view *v = policy_bind(p, &id);
	ck_assert(allows(v, POL_PUBLISH, "x"));
	ck_assert(allows(v, POL_SUBSCRIBE, "x"));
	ck_assert(allows(v, POL_REQUEST, "x"));
	ck_assert(allows(v, POL_KV_READ, "x"));
	ck_assert(allows(v, POL_KV_WRITE, "x"));
	ck_assert(!allows(v, POL_KV_ADMIN, "x"));
	ck_assert(!allows(v, POL_EMIT, "x"));
	policy_view_free(v);

	id = user("u2", 2, NULL);
	v = policy_bind(p, &id);
	/* "*": everything but admin and monitor (other apps' traffic). */
	for (int op = 0; op < POL_N; op++)
		ck_assert_int_eq(allows(v, op, "name"),
		                 op != POL_ADMIN && op != POL_MONITOR);
	ck_assert(!allows(v, POL_ADMIN, "reload"));
	ck_assert(!allows(v, POL_MONITOR, ">"));
	policy_view_free(v);

	id = user("u3", 3, NULL);
	v = policy_bind(p, &id);
	ck_assert(allows(v, POL_ADMIN, "clients"));
	ck_assert(allows(v, POL_ADMIN, "policy"));
	ck_assert(!allows(v, POL_ADMIN, "reload"));
	policy_view_free(v);
	policy_free(p);
}
END_TEST

START_TEST(test_who)
{
	const char *const r[] = {"user:alice publish a",
	                         "uid:1001 publish b",
	                         "gid:500 publish c",
	                         "unit:driver.service publish d",
	                         "unit:robot-* publish e",
	                         "unit:* publish f",
	                         "* publish g", NULL};
	struct policy *p = rules(r);
	struct identity id = user("alice", 1000, NULL);
	struct policy_view *v = policy_bind(p, &id);
	ck_assert(allows(v, POL_PUBLISH, "a"));
	ck_assert(!allows(v, POL_PUBLISH, "b"));
	ck_assert(!allows(v, POL_PUBLISH, "f"));
	ck_assert(allows(v, POL_PUBLISH, "g"));
	policy_view_free(v);

	id = user("bob", 1001, "robot-arm.service");
	id.groups[0] = 500;
	id.n_groups = 1;
	v = policy_bind(p, &id);
	ck_assert(!allows(v, POL_PUBLISH, "a"));
	ck_assert(allows(v, POL_PUBLISH, "b"));
	ck_assert(allows(v, POL_PUBLISH, "c")); /* supplementary */
	ck_assert(!allows(v, POL_PUBLISH, "d"));
	ck_assert(allows(v, POL_PUBLISH, "e"));
	ck_assert(allows(v, POL_PUBLISH, "f"));
	policy_view_free(v);

	id = user("carol", 1002, "driver.service");
	id.gid = 500; /* primary */
	v = policy_bind(p, &id);
	ck_assert(allows(v, POL_PUBLISH, "c"));
	ck_assert(allows(v, POL_PUBLISH, "d"));
	ck_assert(!allows(v, POL_PUBLISH, "e"));
	policy_view_free(v);

	id = user("dave", 1003, "driver.service.d");
	v = policy_bind(p, &id);
	ck_assert(!allows(v, POL_PUBLISH, "d"));
	policy_view_free(v);
	policy_free(p);
}
END_TEST

START_TEST(test_group_names)
{
	/* Group 0 exists everywhere; its name varies (root, wheel). */
	struct group *g = getgrgid(0);
	ck_assert_ptr_nonnull(g);
	char *rule;
	ck_assert_int_gt(asprintf(&rule, "group:%s publish a", g->gr_name), 0);
	const char *const r[] = {rule, "group:no-such-group-here publish b",
	                         NULL};
	struct policy *p = rules(r);
	struct identity id = user("alice", 1000, NULL);
	struct policy_view *v = policy_bind(p, &id);
	ck_assert(!allows(v, POL_PUBLISH, "a"));
	policy_view_free(v);
	id.groups[0] = 7;
	id.groups[1] = 0;
	id.n_groups = 2;
	v = policy_bind(p, &id);
	ck_assert(allows(v, POL_PUBLISH, "a"));
	ck_assert(!allows(v, POL_PUBLISH, "b")); /* unknown: names nobody */
	policy_view_free(v);
	policy_free(p);
	free(rule);
}
END_TEST

START_TEST(test_substitution)
{
	const char *const r[] = {"* publish app.{user}.>",
	                         "unit:* being {unit}",
	                         "unit:* kv-read {unit}-{user},shared",
	                         "* channel {unit}", NULL};
	struct policy *p = rules(r);
	struct identity id = user("alice", 1000, "driver.service");
	struct policy_view *v = policy_bind(p, &id);
	ck_assert(allows(v, POL_PUBLISH, "app.alice.x"));
	ck_assert(!allows(v, POL_PUBLISH, "app.bob.x"));
	ck_assert(!allows(v, POL_PUBLISH, "app.*.x"));
	ck_assert(allows(v, POL_BEING, "driver"));
	ck_assert(!allows(v, POL_BEING, "driver.service"));
	ck_assert(!allows(v, POL_BEING, "planner"));
	ck_assert(allows(v, POL_KV_READ, "driver-alice"));
	ck_assert(allows(v, POL_KV_READ, "shared"));
	ck_assert(allows(v, POL_CHANNEL, "driver"));
	policy_view_free(v);

	/* No unit: a rule with {unit} names nothing, whatever its WHO. */
	id = user("bob", 1001, NULL);
	v = policy_bind(p, &id);
	ck_assert(allows(v, POL_PUBLISH, "app.bob.x"));
	ck_assert(!allows(v, POL_CHANNEL, ""));
	ck_assert(!allows(v, POL_CHANNEL, "*"));
	policy_view_free(v);

	/* Template instances keep their instance. */
	id = user("bob", 1001, "robot@left.service");
	v = policy_bind(p, &id);
	ck_assert(allows(v, POL_BEING, "robot@left"));
	policy_view_free(v);
	policy_free(p);
}
END_TEST

START_TEST(test_injection)
{
	const char *const r[] = {"* publish app.{user}.out",
	                         "unit:* being {unit}",
	                         "* subscribe in.{user}", NULL};
	struct policy *p = rules(r);
	/* Names that would widen the pattern name nothing instead. */
	static const char *const users[] = {"*", ">", "a.b", "a b", "x.>",
	                                    "a\tb", ""};
	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
		struct identity id = user(users[i], 2000, "evil.service");
		struct policy_view *v = policy_bind(p, &id);
		ck_assert_msg(!allows(v, POL_PUBLISH, "app.x.out"), "'%s'",
		              users[i]);
		ck_assert(!allows(v, POL_PUBLISH, "app.*.out"));
		ck_assert(!allows(v, POL_SUBSCRIBE, "in.x"));
		ck_assert(!allows(v, POL_SUBSCRIBE, "in.>"));
		ck_assert(!allows(v, POL_SUBSCRIBE, "in.a.b"));
		ck_assert(allows(v, POL_BEING, "evil")); /* other rules stay */
		policy_view_free(v);
	}
	static const char *const units[] = {"a.b.service", "*.service",
	                                    ">.service"};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		struct identity id = user("alice", 2000, units[i]);
		struct policy_view *v = policy_bind(p, &id);
		ck_assert_msg(!allows(v, POL_BEING, "a.b"), "'%s'", units[i]);
		ck_assert(!allows(v, POL_BEING, "a"));
		ck_assert(!allows(v, POL_BEING, "*"));
		ck_assert(!allows(v, POL_BEING, "x"));
		ck_assert(allows(v, POL_PUBLISH, "app.alice.out"));
		policy_view_free(v);
	}
	policy_free(p);
}
END_TEST

START_TEST(test_snapshot)
{
	const char *const r[] = {"user:alice publish a.{user}", NULL};
	struct policy *p = rules(r);
	struct identity id = user("alice", 1000, NULL);
	struct policy_view *v = policy_bind(p, &id);
	policy_free(p);
	/* Scribble over what the freed rules used. */
	for (int i = 0; i < 64; i++)
		free(memset(malloc(64), 'x', 64));
	char why[512];
	ck_assert(policy_allows(v, POL_PUBLISH, "a.alice", why, sizeof(why)));
	ck_assert_str_eq(why, "t.conf:1: allow = user:alice publish a.{user}");
	ck_assert(!allows(v, POL_PUBLISH, "a.bob"));
	policy_view_free(v);
	policy_view_free(NULL);
}
END_TEST

static Suite *policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *t = tcase_create("parse");
	tcase_add_test(t, test_parse_errors);
	tcase_add_test(t, test_too_many);
	tcase_add_test(t, test_print_and_rules);
	tcase_add_test(t, test_quota_parse_errors);
	tcase_add_test(t, test_quota_values_and_print);
	suite_add_tcase(s, t);
	t = tcase_create("match");
	tcase_add_test(t, test_no_rules);
	tcase_add_test(t, test_deny_by_default);
	tcase_add_test(t, test_privileged);
	tcase_add_test(t, test_wildcards);
	tcase_add_test(t, test_cover);
	tcase_add_test(t, test_ops_and_shorthands);
	tcase_add_test(t, test_who);
	tcase_add_test(t, test_group_names);
	tcase_add_test(t, test_substitution);
	tcase_add_test(t, test_injection);
	tcase_add_test(t, test_snapshot);
	tcase_add_test(t, test_quota_match);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *r = srunner_create(policy_suite());
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
