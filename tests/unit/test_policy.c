/* SPDX-License-Identifier: MIT */
/* Unit tests of daemon/policy.c: parsing "allow" rules, binding them to an
 * identity, and matching operations and resources against them. */
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
	for (int op = 0; op < POL_N; op++)
		ck_assert_int_eq(allows(v, op, "name"), op != POL_ADMIN);
	ck_assert(!allows(v, POL_ADMIN, "reload"));
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
