/* SPDX-License-Identifier: MIT */
/* The noesis-ship stores read by the official NATS JavaScript client
 * (@nats-io/obj, through obj.mjs): a snapshot's and an artifact's data,
 * description and metadata as libshipc stored them. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interop.h"

/* What nats.js reads of bucket's object name: obj.mjs's entry for it. */
static json_t *nodejs_read(const char *bucket, const char *name)
{
	char args[1024];
	snprintf(args, sizeof(args), "read '%s' '%s' '%s'", interop_nats.url,
	         bucket, name);
	json_t *j = interop_node("obj.mjs", args);
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
	struct shipc *h = interop_conn("interop-stores");
	char *id;
	ck_assert_msg(shipc_snapshot_take(h, "r2d2", "{\"battery\": 87}",
	                                  "before update", &id) == 0,
	              "%s", interop_why(h));
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
	const TTest *tests[] = {nodejs_reads_snapshots_and_artifacts, NULL};
	return interop_main("interop-stores", "@nats-io/obj", 180, tests);
}
