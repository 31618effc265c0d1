/* SPDX-License-Identifier: MIT */
/* The noesis-ship stores read by the official NATS JavaScript client
 * (@nats-io/obj, through obj.mjs): a snapshot's and an artifact's data,
 * description and metadata as libshipc stored them. */
#include <check.h>
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

static struct shipc *conn(void)
{
	struct shipc *h = shipc_connect(sd.sock, "interop-stores");
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	for (int i = 0; i < 200; i++) {
		if (shipc_status(h, &st) == 0 && st.link == SHIPC_LINK_CONNECTED)
			break;
		fx_sleep_ms(25);
	}
	return h;
}

/* What nats.js reads of bucket's object name: obj.mjs's entry for it. */
static json_t *nodejs_read(const char *bucket, const char *name)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "timeout 60 node '%s/obj.mjs' read '%s' "
	         "'%s' '%s'", dir(), nd.url, bucket, name);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	json_error_t err;
	json_t *j = json_loadf(p, JSON_DISABLE_EOF_CHECK, &err);
	int rc = pclose(p);
	ck_assert_msg(rc == 0, "'%s' failed with %d", cmd, rc);
	ck_assert_msg(j != NULL, "node printed no JSON: %s", err.text);
	json_t *o = json_incref(json_object_get(j, name));
	json_decref(j);
	ck_assert_msg(json_is_object(o), "nats.js does not see %s", name);
	return o;
}

static const char *at(json_t *o, const char *path)
{
	char key[64];
	const char *dot;
	while ((dot = strchr(path, '.'))) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		o = json_object_get(o, key);
		path = dot + 1;
	}
	const char *s = json_string_value(json_object_get(o, path));
	ck_assert_msg(s != NULL, "no string %s", path);
	return s;
}

/* nats.js reads the data shipd stored: same length, same digest. */
static void same_data(json_t *o, const struct shipc_obj_info *info)
{
	ck_assert_ptr_null(json_object_get(o, "error"));
	ck_assert_int_eq(json_integer_value(json_object_get(o, "data_len")),
	                 (json_int_t)info->size);
	ck_assert_str_eq(at(o, "data_digest"), info->digest);
}

START_TEST(nodejs_reads_snapshots_and_artifacts)
{
	struct shipc *h = conn();
	char *id;
	ck_assert_msg(shipc_snapshot_take(h, "r2d2", "{\"battery\": 87}",
	                                  "before update", &id) == 0,
	              "%s", why(h));
	struct shipc_obj_info *info;
	void *body;
	size_t len;
	ck_assert_int_eq(shipc_obj_get_mem(h, "snapshots", id, &body, &len,
	                                   4096, &info),
	                 0);
	json_t *o = nodejs_read("snapshots", id);
	same_data(o, info);
	ck_assert_str_eq(at(o, "raw.description"), "before update");
	ck_assert_str_eq(at(o, "raw.metadata.being_id"), "r2d2");
	ck_assert_str_eq(at(o, "raw.metadata.reason"), "before update");
	json_decref(o);
	shipc_obj_info_free(info);
	free(body);

	ck_assert_int_eq(shipc_artifact_store_mem(h, "map-7", "MAPDATA", 7,
	                                          "map", "exp-42", &info),
	                 0);
	o = nodejs_read("artifacts", "map-7");
	same_data(o, info);
	ck_assert_str_eq(at(o, "raw.description"), "type=map, expedition=exp-42");
	ck_assert_str_eq(at(o, "raw.metadata.type"), "map");
	ck_assert_str_eq(at(o, "raw.metadata.expedition"), "exp-42");
	json_decref(o);
	shipc_obj_info_free(info);
	free(id);
	shipc_close(h);
}
END_TEST

int main(void)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/node_modules/@nats-io/obj/package.json",
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
	Suite *s = suite_create("interop-stores");
	TCase *tc = tcase_create("nats.js");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, nodejs_reads_snapshots_and_artifacts);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
