/* SPDX-License-Identifier: MIT */
/* What the interop tests share: their servers, the folder of the nats.js
 * scripts, running one of them, and a suite that skips without them. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "interop.h"

#ifndef INTEROP_DIR
#define INTEROP_DIR "tests/interop"
#endif

struct natsd interop_nats;
struct shipdp interop_shipd;

const char *interop_dir(void)
{
	const char *e = getenv("INTEROP_DIR");
	return e && *e ? e : INTEROP_DIR;
}

const char *interop_why(struct shipc *h)
{
	static __thread char buf[256];
	return shipc_last_error(h, buf, sizeof(buf));
}

json_t *interop_node(const char *script, const char *args)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd), "timeout 60 node '%s/%s' %s", interop_dir(),
	         script, args);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	json_error_t err;
	json_t *j = json_loadf(p, JSON_DISABLE_EOF_CHECK, &err);
	int rc = pclose(p);
	ck_assert_msg(rc == 0, "'%s' failed with %d", cmd, rc);
	ck_assert_msg(j != NULL, "node printed no JSON: %s", err.text);
	return j;
}

struct shipc *interop_conn(const char *name)
{
	struct shipc *h = fx_connect(interop_shipd.sock, name, 5000);
	ck_assert_ptr_nonnull(h);
	return h;
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_up(&interop_nats, &interop_shipd, NULL), 0);
}

static void teardown(void)
{
	int rc = fx_down(&interop_nats, &interop_shipd);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

/* Whether node and the npm package are there; says what is missing. */
static bool have_nodejs(const char *package)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/node_modules/%s/package.json",
	         interop_dir(), package);
	if (access(path, R_OK) != 0) {
		printf("SKIP: %s/node_modules is missing (run: npm ci --prefix %s)\n",
		       interop_dir(), interop_dir());
		return false;
	}
	if (system("node --version >/dev/null 2>&1") != 0) {
		printf("SKIP: node is not installed\n");
		return false;
	}
	return true;
}

int interop_main(const char *name, const char *package, int timeout_s,
                 const TTest *const *tests)
{
	if (!have_nodejs(package))
		return 77;
	Suite *s = suite_create(name);
	TCase *tc = tcase_create("nats.js");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout_s);
	for (size_t i = 0; tests[i]; i++)
		tcase_add_test(tc, tests[i]);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
