/* SPDX-License-Identifier: MIT */
/* Object Store interop with the official NATS JavaScript client
 * (@nats-io/obj from npm, run with the machine's Node.js): it reads what
 * shipd stored, with the same digest, size and metadata, an object shipd
 * renamed and one through a link shipd made; and shipd reads what it
 * stored, byte for byte with the digest checked. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interop.h"
#include "ipc.h"

#define CHUNK 131072

static void digest_of(const void *p, size_t n, char out[64])
{
	struct ipc_sha256 s;
	uint8_t sum[IPC_SHA256_LEN];
	ipc_sha256_init(&s);
	ipc_sha256_update(&s, p, n);
	ipc_sha256_final(&s, sum);
	memcpy(out, "SHA-256=", 8);
	ck_assert_uint_eq(ipc_base64url(sum, sizeof(sum), out + 8, 56), 44);
}

static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	ck_assert_msg(s != NULL, "no string %s", key);
	return s;
}

static const size_t sizes[] = {0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5};

START_TEST(nodejs_reads_what_shipd_wrote)
{
	struct shipc *h = interop_conn("interop");
	struct shipc_obj_bucket_config c = {.bucket = "shared",
	                                    .description = "from shipd"};
	ck_assert_msg(shipc_obj_bucket_create(h, &c, NULL) == 0, "%s",
	              interop_why(h));
	char names[512] = "", digests[6][64];
	struct shipc_header hdrs[] = {{"X-From", "shipd"}, {"X-Two", "a"},
	                              {"X-Two", "b"}};
	struct shipc_header meta[] = {{"robot", "r2"}};
	for (size_t i = 0; i < 5; i++) {
		size_t n = sizes[i];
		uint8_t *d = malloc(n + 1);
		for (size_t k = 0; k < n; k++)
			d[k] = (uint8_t)(rand() >> 8);
		char name[32];
		snprintf(name, sizeof(name), "c-%zu", n);
		struct shipc_obj_put_opts o = {.description = "from shipd",
		                               .headers = hdrs,
		                               .n_headers = 3,
		                               .metadata = meta,
		                               .n_metadata = 1};
		struct shipc_obj_info *info;
		ck_assert_msg(shipc_obj_put_mem(h, "shared", name, d, n, &o,
		                                &info) == 0,
		              "put %s: %s", name, interop_why(h));
		digest_of(d, n, digests[i]);
		ck_assert_str_eq(info->digest, digests[i]);
		shipc_obj_info_free(info);
		free(d);
		strcat(names, n == 1 ? "c-one" : name);
		strcat(names, " ");
	}
	/* Renamed by shipd: nats.js finds it under the new name only. */
	struct shipc_obj_meta m = {.new_name = "c-one",
	                           .description = "from shipd",
	                           .headers = hdrs,
	                           .n_headers = 3,
	                           .metadata = meta,
	                           .n_metadata = 1};
	ck_assert_msg(shipc_obj_update_meta(h, "shared", "c-1", &m) == 0, "%s",
	              interop_why(h));
	struct shipc_obj_put_opts small = {.chunk_size = 1000};
	uint8_t blob[10000];
	for (size_t k = 0; k < sizeof(blob); k++)
		blob[k] = (uint8_t)k;
	ck_assert_int_eq(shipc_obj_put_mem(h, "shared", "c-small", blob,
	                                   sizeof(blob), &small, NULL),
	                 0);
	digest_of(blob, sizeof(blob), digests[5]);
	ck_assert_int_eq(shipc_obj_put_mem(h, "shared", "c-gone", "x", 1, NULL,
	                                   NULL),
	                 0);
	ck_assert_int_eq(shipc_obj_delete(h, "shared", "c-gone"), 0);
	/* A link shipd made: nats.js reads through it. */
	ck_assert_msg(shipc_obj_link(h, "shared", "c-link", "shared", "c-small",
	                             NULL) == 0,
	              "%s", interop_why(h));

	char args[1024];
	snprintf(args, sizeof(args),
	         "read %s shared %sc-small c-gone c-never c-1 c-link",
	         interop_nats.url, names);
	json_t *j = interop_node("obj.mjs", args);
	for (size_t i = 0; i < 5; i++) {
		char name[32];
		snprintf(name, sizeof(name), "c-%zu", sizes[i]);
		if (sizes[i] == 1)
			snprintf(name, sizeof(name), "c-one");
		json_t *o = json_object_get(j, name);
		ck_assert_msg(o && !json_object_get(o, "error"), "%s: %s", name,
		              o ? str(o, "error") : "missing");
		json_t *raw = json_object_get(o, "raw");
		ck_assert_str_eq(str(raw, "name"), name);
		ck_assert_str_eq(str(raw, "bucket"), "shared");
		ck_assert_str_eq(str(raw, "digest"), digests[i]);
		ck_assert_str_eq(str(o, "data_digest"), digests[i]);
		ck_assert_int_eq(json_integer_value(json_object_get(o, "data_len")),
		                 (json_int_t)sizes[i]);
		ck_assert_int_eq(json_integer_value(json_object_get(raw, "size")),
		                 (json_int_t)sizes[i]);
		ck_assert_int_eq(json_integer_value(json_object_get(raw, "chunks")),
		                 (json_int_t)((sizes[i] + CHUNK - 1) / CHUNK));
		ck_assert_str_eq(str(raw, "description"), "from shipd");
		ck_assert_str_eq(str(json_object_get(raw, "metadata"), "robot"),
		                 "r2");
		json_t *hs = json_object_get(raw, "headers");
		ck_assert_str_eq(json_string_value(json_array_get(
					 json_object_get(hs, "X-From"), 0)),
		                 "shipd");
		ck_assert_uint_eq(json_array_size(json_object_get(hs, "X-Two")), 2);
		json_t *opts = json_object_get(raw, "options");
		ck_assert_int_eq(json_integer_value(
					 json_object_get(opts, "max_chunk_size")),
		                 CHUNK);
	}
	json_t *s = json_object_get(j, "c-small");
	ck_assert_str_eq(str(s, "data_digest"), digests[5]);
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_object_get(s, "raw"), "chunks")),
	                 10);
	/* The delete marker is one to nats.js too. */
	json_t *g = json_object_get(j, "c-gone");
	ck_assert(json_is_true(json_object_get(json_object_get(g, "raw"),
	                                       "deleted")));
	ck_assert(json_is_null(json_object_get(g, "data")));
	ck_assert(json_is_null(json_object_get(j, "c-never")));
	ck_assert(json_is_null(json_object_get(j, "c-1")));
	json_t *l = json_object_get(j, "c-link");
	ck_assert_msg(l && !json_object_get(l, "error"), "c-link: %s",
	              l ? str(l, "error") : "missing");
	ck_assert_str_eq(str(l, "data_digest"), digests[5]);
	json_t *lk = json_object_get(
		json_object_get(json_object_get(l, "raw"), "options"), "link");
	ck_assert_str_eq(str(lk, "bucket"), "shared");
	ck_assert_str_eq(str(lk, "name"), "c-small");
	json_t *list = json_object_get(j, "$list");
	ck_assert_uint_eq(json_array_size(list), 7);
	ck_assert_str_eq(str(json_object_get(j, "$status"), "description"),
	                 "from shipd");
	json_decref(j);
	shipc_close(h);
}
END_TEST

static uint8_t *pattern(size_t n, unsigned seed)
{
	uint8_t *a = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		a[i] = (uint8_t)((i * i + 7 * i + seed) % 251);
	return a;
}

START_TEST(shipd_reads_what_nodejs_wrote)
{
	struct shipc *h = interop_conn("interop");
	char args[512];
	snprintf(args, sizeof(args), "write %s fromjs", interop_nats.url);
	json_t *j = interop_node("obj.mjs", args);
	const char *key;
	json_t *o;
	json_object_foreach(j, key, o) {
		size_t n = (size_t)json_integer_value(json_object_get(o, "size"));
		unsigned seed =
			(unsigned)json_integer_value(json_object_get(o, "seed"));
		uint8_t *want = pattern(n, seed);
		char d[64];
		digest_of(want, n, d);
		ck_assert_str_eq(str(o, "digest"), d);

		void *got;
		size_t len;
		struct shipc_obj_info *info;
		ck_assert_msg(shipc_obj_get_mem(h, "fromjs", key, &got, &len, n,
		                                &info) == 0,
		              "get %s: %s", key, interop_why(h));
		ck_assert_uint_eq(len, n);
		ck_assert_msg(memcmp(got, want, n) == 0, "%s differs", key);
		ck_assert_str_eq(info->digest, d);
		ck_assert_uint_eq(info->size, n);
		ck_assert_int_eq(info->chunks,
		                 json_integer_value(json_object_get(o, "chunks")));
		if (strcmp(key, "js-small-chunks")) {
			char desc[32];
			snprintf(desc, sizeof(desc), "%zu bytes", n);
			ck_assert_str_eq(info->description, desc);
			ck_assert_uint_eq(info->n_headers, 1);
			ck_assert_str_eq(info->headers[0].key, "X-From");
			ck_assert_str_eq(info->headers[0].value, "nats.js");
			ck_assert_uint_eq(info->n_metadata, 2);
		} else {
			ck_assert_uint_eq(info->max_chunk_size, 1000);
		}
		shipc_obj_info_free(info);
		free(got);
		free(want);
	}
	/* What nats.js deleted is gone for shipd too. */
	void *got;
	size_t len;
	ck_assert_int_eq(shipc_obj_get_mem(h, "fromjs", "js-gone", &got, &len,
	                                   100, NULL),
	                 -1);
	ck_assert_int_eq(errno, ENOENT);
	struct shipc_obj_info *list;
	size_t n;
	ck_assert_int_eq(shipc_obj_list(h, "fromjs", 0, &list, &n), 0);
	ck_assert_uint_eq(n, json_object_size(j));
	shipc_obj_list_free(list, n);
	ck_assert_int_eq(shipc_obj_list(h, "fromjs", 1, &list, &n), 0);
	ck_assert_uint_eq(n, json_object_size(j) + 1);
	shipc_obj_list_free(list, n);
	struct shipc_obj_bucket_status st;
	ck_assert_int_eq(shipc_obj_bucket_status(h, "fromjs", &st), 0);
	ck_assert_str_eq(st.description, "from nats.js");
	/* And shipd overwrites what nats.js wrote. */
	ck_assert_int_eq(shipc_obj_put_mem(h, "fromjs", "js-multi", "new", 3,
	                                   NULL, NULL),
	                 0);
	ck_assert_int_eq(shipc_obj_get_mem(h, "fromjs", "js-multi", &got, &len,
	                                   3, NULL),
	                 0);
	ck_assert(len == 3 && !memcmp(got, "new", 3));
	free(got);
	json_decref(j);
	shipc_close(h);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {nodejs_reads_what_shipd_wrote,
	                        shipd_reads_what_nodejs_wrote, NULL};
	return interop_main("interop-obj", "@nats-io/obj", 120, tests);
}
