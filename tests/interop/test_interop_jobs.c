/* SPDX-License-Identifier: MIT */
/* JobQueue interop with the official NATS JavaScript client (@nats-io/kv):
 * a job shipd stores is plain KV JSON that nats.js reads with the
 * documented field names, and a job nats.js writes by hand in that form
 * is claimed and completed by a shipd worker. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "interop.h"

START_TEST(nodejs_reads_a_job_shipd_stored)
{
	struct shipc *h = interop_conn("interop");
	struct shipc_job_submit s = {.payload_json = "{\"model\":\"nav-v3\"}",
	                             .worker = "dgx-1",
	                             .priority = 5,
	                             .queued_by = "trainer"};
	struct shipc_job *j = NULL;
	ck_assert_msg(shipc_job_submit(h, "gpu", &s, &j) == 0, "%s",
	              interop_why(h));
	char args[512];
	snprintf(args, sizeof(args), "read %s gpu %s", interop_nats.url, j->id);
	json_t *out = interop_node("jobs.mjs", args);
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
	out = interop_node("jobs.mjs", args);
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
	struct shipc *h = interop_conn("interop");
	struct shipc_job_queue_config qc = {.queue = "handmade"};
	ck_assert_msg(shipc_job_queue_create(h, &qc, NULL) == 0, "%s",
	              interop_why(h));
	/* A worker waiting before the job exists gets it when it comes. */
	char args[512];
	snprintf(args, sizeof(args), "submit %s handmade JS-1 '{\"n\":7}'",
	         interop_nats.url);
	struct shipc_job *none = NULL;
	ck_assert_int_eq(shipc_job_claim(h, "handmade", "w", 0, &none), -1);
	ck_assert_int_eq(errno, ENOENT);
	json_t *out = interop_node("jobs.mjs", args);
	ck_assert_uint_gt(json_integer_value(json_object_get(out, "revision")), 0);
	json_decref(out);
	struct shipc_job *c = NULL;
	ck_assert_msg(shipc_job_claim(h, "handmade", "w", 10000, &c) == 0,
	              "claim: %s", interop_why(h));
	ck_assert_str_eq(c->id, "JS-1");
	ck_assert_str_eq(c->payload_json, "{\"n\":7}");
	ck_assert_str_eq(c->queued_by, "nats.js");
	ck_assert_uint_eq(c->attempts, 1);
	ck_assert_int_eq(shipc_job_complete(h, "handmade", "JS-1", "true", NULL),
	                 0);
	snprintf(args, sizeof(args), "read %s handmade JS-1", interop_nats.url);
	out = interop_node("jobs.mjs", args);
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
	const TTest *tests[] = {nodejs_reads_a_job_shipd_stored,
	                        shipd_claims_a_job_nodejs_wrote, NULL};
	return interop_main("interop-jobs", "@nats-io/kv", 120, tests);
}
