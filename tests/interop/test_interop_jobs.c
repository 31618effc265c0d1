/* SPDX-License-Identifier: MIT */
/* JobQueue interop with the official NATS JavaScript client (@nats-io/kv):
 * a job shipd stores is plain KV JSON that nats.js reads with the
 * documented field names, and a job nats.js writes by hand in that form
 * is claimed and completed by a shipd worker. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "fixture.h"
#include "shipc.h"

#ifndef INTEROP_DIR
#define INTEROP_DIR "tests/interop"
#endif

static struct natsd nd;
static struct shipdp sd;

static const char *dir(void)
{
	const char *e = getenv("INTEROP_DIR");
	return e && *e ? e : INTEROP_DIR;
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_up(&nd, &sd, NULL), 0);
}

static void teardown(void)
{
	int rc = fx_down(&nd, &sd);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

static const char *why(struct shipc *h)
{
	static char buf[256];
	return shipc_last_error(h, buf, sizeof(buf));
}

/* Run kv.mjs and parse the one JSON object it prints. */
static json_t *node(const char *args)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "timeout 60 node '%s/jobs.mjs' %s", dir(), args);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	json_error_t err;
	json_t *j = json_loadf(p, JSON_DISABLE_EOF_CHECK, &err);
	int rc = pclose(p);
	ck_assert_msg(rc == 0, "'%s' failed with %d", cmd, rc);
	ck_assert_msg(j != NULL, "node printed no JSON: %s", err.text);
	return j;
}

static struct shipc *conn(void)
{
	struct shipc *h = shipc_connect(sd.sock, "interop");
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	for (int i = 0; i < 200; i++) {
		if (shipc_status(h, &st) == 0 && st.link == SHIPC_LINK_CONNECTED)
			break;
		fx_sleep_ms(25);
	}
	return h;
}

START_TEST(nodejs_reads_a_job_shipd_stored)
{
	struct shipc *h = conn();
	struct shipc_job_submit s = {.payload_json = "{\"model\":\"nav-v3\"}",
	                             .worker = "dgx-1",
	                             .priority = 5,
	                             .queued_by = "trainer"};
	struct shipc_job *j = NULL;
	ck_assert_msg(shipc_job_submit(h, "gpu", &s, &j) == 0, "%s", why(h));
	char args[512];
	snprintf(args, sizeof(args), "read %s gpu %s", nd.url, j->id);
	json_t *out = node(args);
	json_t *job = json_object_get(out, "job");
	ck_assert(json_is_object(job));
	ck_assert_uint_eq(json_integer_value(json_object_get(out, "revision")),
	                  j->revision);
	/* noesis-ship's fields, with their JSON types */
	ck_assert_str_eq(json_string_value(json_object_get(job, "id")), j->id);
	ck_assert_str_eq(json_string_value(json_object_get(
	                         json_object_get(job, "payload"), "model")),
	                 "nav-v3");
	ck_assert_str_eq(json_string_value(json_object_get(job, "status")),
	                 "queued");
	ck_assert_str_eq(json_string_value(json_object_get(job, "worker")),
	                 "dgx-1");
	ck_assert_str_eq(json_string_value(json_object_get(job, "queued_by")),
	                 "trainer");
	ck_assert_uint_eq(json_integer_value(json_object_get(job, "queued_at")),
	                  j->queued_at_ms);
	ck_assert(json_is_null(json_object_get(job, "started_at")));
	ck_assert(json_is_null(json_object_get(job, "completed_at")));
	ck_assert(json_is_null(json_object_get(job, "result")));
	ck_assert(json_is_null(json_object_get(job, "error")));
	ck_assert_int_eq(json_integer_value(json_object_get(job, "priority")), 5);
	ck_assert_int_eq(json_integer_value(json_object_get(job, "attempts")), 0);
	json_decref(out);

	/* Claimed and completed: nats.js sees it finished, with its result. */
	struct shipc_job *c = NULL;
	ck_assert_int_eq(shipc_job_claim(h, "gpu", "dgx-1", 5000, &c), 0);
	ck_assert_str_eq(c->id, j->id);
	ck_assert_int_eq(shipc_job_complete(h, "gpu", c->id, "{\"loss\":0.03}",
	                                    NULL),
	                 0);
	out = node(args);
	job = json_object_get(out, "job");
	ck_assert_str_eq(json_string_value(json_object_get(job, "status")),
	                 "complete");
	ck_assert(json_is_real(json_object_get(json_object_get(job, "result"),
	                                       "loss")));
	ck_assert_uint_ge(json_integer_value(json_object_get(job, "completed_at")),
	                  json_integer_value(json_object_get(job, "started_at")));
	ck_assert_str_eq(json_string_value(json_object_get(job, "claimed_by")),
	                 "dgx-1");
	json_decref(out);
	shipc_job_free(c);
	shipc_job_free(j);
	shipc_close(h);
}
END_TEST

START_TEST(shipd_claims_a_job_nodejs_wrote)
{
	struct shipc *h = conn();
	struct shipc_job_queue_config qc = {.queue = "handmade"};
	ck_assert_msg(shipc_job_queue_create(h, &qc, NULL) == 0, "%s", why(h));
	/* A worker waiting before the job exists gets it when it comes. */
	char args[512];
	snprintf(args, sizeof(args), "submit %s handmade JS-1 '{\"n\":7}'",
	         nd.url);
	struct shipc_job *none = NULL;
	ck_assert_int_eq(shipc_job_claim(h, "handmade", "w", 0, &none), -1);
	ck_assert_int_eq(errno, ENOENT);
	json_t *out = node(args);
	ck_assert_uint_gt(json_integer_value(json_object_get(out, "revision")), 0);
	json_decref(out);
	struct shipc_job *c = NULL;
	ck_assert_msg(shipc_job_claim(h, "handmade", "w", 10000, &c) == 0,
	              "claim: %s", why(h));
	ck_assert_str_eq(c->id, "JS-1");
	ck_assert_str_eq(c->payload_json, "{\"n\":7}");
	ck_assert_str_eq(c->queued_by, "nats.js");
	ck_assert_uint_eq(c->attempts, 1);
	ck_assert_int_eq(shipc_job_complete(h, "handmade", "JS-1", "true", NULL),
	                 0);
	snprintf(args, sizeof(args), "read %s handmade JS-1", nd.url);
	out = node(args);
	ck_assert_str_eq(json_string_value(json_object_get(
	                         json_object_get(out, "job"), "status")),
	                 "complete");
	json_decref(out);
	shipc_job_free(c);
	shipc_close(h);
}
END_TEST

int main(void)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/node_modules/@nats-io/kv/package.json",
	         dir());
	if (access(path, R_OK) != 0) {
		printf("SKIP: %s/node_modules is missing (run: npm ci --prefix %s)\n",
		       dir(), dir());
		return 77;
	}
	if (system("node --version >/dev/null 2>&1") != 0) {
		printf("SKIP: node is not installed\n");
		return 77;
	}
	Suite *s = suite_create("interop-jobs");
	TCase *tc = tcase_create("nats.js");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, nodejs_reads_a_job_shipd_stored);
	tcase_add_test(tc, shipd_claims_a_job_nodejs_wrote);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
