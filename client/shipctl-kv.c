/* SPDX-License-Identifier: MIT */
/* shipctl's KV commands: buckets, entries, watches, and the noesis-ship
 * stores (beings, config, health). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shipctl.h"

static int usage_of(const char *u)
{
	fprintf(stderr, "usage: shipctl %s\n", u);
	return 2;
}

static const char *op_name(enum shipc_kv_op op)
{
	return op == SHIPC_KV_DEL ? "DEL" : op == SHIPC_KV_PURGE ? "PURGE" : "PUT";
}

static void print_time(uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;
	char buf[32];
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fputs(buf, stdout);
}

static void print_entry(const struct shipc_kv_entry *e)
{
	if (json) {
		fputs("{\"key\":", stdout);
		json_str(stdout, e->key, strlen(e->key));
		printf(",\"revision\":%" PRIu64 ",\"operation\":\"%s\",\"created_ns\":"
		       "%" PRIu64 ",\"delta\":%" PRIu64 ",\"value\":",
		       e->revision, op_name(e->op), e->created_ns, e->delta);
		json_str(stdout, e->value, e->len);
		fputs("}\n", stdout);
	} else {
		printf("[%" PRIu64 "] %s %s ", e->revision, op_name(e->op), e->key);
		print_time(e->created_ns);
		if (e->op == SHIPC_KV_PUT) {
			fputs(": ", stdout);
			fwrite(e->value, 1, e->len, stdout);
		}
		fputc('\n', stdout);
	}
	fflush(stdout);
}

static void print_status(const struct shipc_kv_status *s)
{
	if (json) {
		fputs("{\"bucket\":", stdout);
		json_str(stdout, s->bucket, strlen(s->bucket));
		fputs(",\"description\":", stdout);
		json_str(stdout, s->description, strlen(s->description));
		printf(",\"history\":%u,\"ttl_ms\":%" PRIu64 ",\"max_value_size\":%d,"
		       "\"max_bytes\":%" PRId64 ",\"storage\":\"%s\",\"replicas\":%u,"
		       "\"values\":%" PRIu64 ",\"bytes\":%" PRIu64
		       ",\"last_revision\":%" PRIu64 "}",
		       s->history, s->ttl_ms, s->max_value_size, s->max_bytes,
		       s->memory ? "memory" : "file", s->replicas, s->values,
		       s->bytes, s->last_revision);
		return;
	}
	char ttl[32];
	snprintf(ttl, sizeof(ttl), "%" PRIu64 "s", s->ttl_ms / 1000);
	printf("%-24s history %-2u ttl %-9s values %-8" PRIu64
	       " bytes %-10" PRIu64 " revision %" PRIu64 "%s%s\n",
	       s->bucket, s->history, s->ttl_ms ? ttl : "-", s->values, s->bytes,
	       s->last_revision, s->description[0] ? "  " : "", s->description);
}

/* ---- buckets ---- */

static int cmd_ls(int argc, char **argv)
{
	struct shipc_kv_status *list;
	size_t n;
	if (argc != 1)
		return usage_of("kv ls");
	if (open_handle() < 0)
		return 1;
	if (shipc_kv_bucket_list(h, &list, &n) < 0)
		return fail("kv ls", errno);
	if (json)
		fputc('[', stdout);
	for (size_t i = 0; i < n; i++) {
		if (json && i)
			fputc(',', stdout);
		print_status(&list[i]);
	}
	if (json)
		fputs("]\n", stdout);
	shipc_kv_bucket_list_free(list);
	return 0;
}

static int cmd_add(int argc, char **argv)
{
	static const struct option opts[] = {
		{"history", required_argument, NULL, 'H'},
		{"ttl", required_argument, NULL, 't'},
		{"replicas", required_argument, NULL, 'r'},
		{"max-value-size", required_argument, NULL, 'm'},
		{"max-bytes", required_argument, NULL, 'b'},
		{"description", required_argument, NULL, 'd'},
		{"memory", no_argument, NULL, 'M'},
		{NULL, 0, NULL, 0}};
	const char *u = "kv add BUCKET [--history N] [--ttl SECONDS] "
	                "[--replicas N] [--max-value-size BYTES] [--max-bytes "
	                "BYTES] [--description TEXT] [--memory]";
	struct shipc_kv_config c = {0};
	uint64_t v;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'd') {
			c.description = optarg;
			continue;
		}
		if (ch == 'M') {
			c.memory = 1;
			continue;
		}
		if (ch == '?' || !parse_uint(optarg, &v))
			return usage_of(u);
		if (ch == 'H' && v <= 64)
			c.history = (uint32_t)v;
		else if (ch == 't' && v < UINT64_MAX / 1000)
			c.ttl_ms = v * 1000;
		else if (ch == 'r' && v <= 5)
			c.replicas = (uint32_t)v;
		else if (ch == 'm' && v <= INT32_MAX)
			c.max_value_size = (int32_t)v;
		else if (ch == 'b' && v <= INT64_MAX)
			c.max_bytes = (int64_t)v;
		else
			return usage_of(u);
	}
	if (argc - optind != 1)
		return usage_of(u);
	c.bucket = argv[optind];
	struct shipc_kv_status st;
	if (open_handle() < 0)
		return 1;
	if (shipc_kv_bucket_create(h, &c, &st) < 0)
		return fail("kv add", errno);
	print_status(&st);
	if (json)
		fputc('\n', stdout);
	return 0;
}

static int cmd_info(int argc, char **argv)
{
	struct shipc_kv_status st;
	if (argc != 2)
		return usage_of("kv info BUCKET");
	if (open_handle() < 0)
		return 1;
	if (shipc_kv_bucket_info(h, argv[1], &st) < 0)
		return fail("kv info", errno);
	print_status(&st);
	if (json)
		fputc('\n', stdout);
	return 0;
}

static int cmd_rm(int argc, char **argv)
{
	if (argc != 2)
		return usage_of("kv rm BUCKET");
	if (open_handle() < 0)
		return 1;
	if (shipc_kv_bucket_delete(h, argv[1]) < 0)
		return fail("kv rm", errno);
	return 0;
}

/* ---- entries ---- */

static void print_revision(uint64_t rev)
{
	if (json)
		printf("{\"revision\":%" PRIu64 "}\n", rev);
	else
		printf("%" PRIu64 "\n", rev);
}

/* put, create: BUCKET KEY [VALUE]; update also takes --revision N */
static int write_cmd(int argc, char **argv, const char *name, bool update)
{
	static const struct option opts[] = {
		{"revision", required_argument, NULL, 'r'}, {NULL, 0, NULL, 0}};
	char u[128];
	snprintf(u, sizeof(u), "kv %s BUCKET KEY %s", name,
	         update ? "VALUE --revision N" : "[VALUE]");
	uint64_t expected = 0, rev = 0;
	int ch, rc = 1;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1)
		if (ch != 'r' || !update || !parse_uint(optarg, &expected))
			return usage_of(u);
	int left = argc - optind;
	if (left < 2 || left > 3 || (update && (left != 3 || !expected)))
		return usage_of(u);
	struct msg_args a = {0};
	if (left == 3) {
		a.data = argv[optind + 2];
		a.len = strlen(a.data);
	} else if (read_stdin(&a) < 0) {
		return 1;
	}
	const char *b = argv[optind], *k = argv[optind + 1];
	if (open_handle() < 0)
		goto out;
	int r = update ? shipc_kv_update(h, b, k, a.data, a.len, expected, &rev)
	        : !strcmp(name, "create")
	                ? shipc_kv_create(h, b, k, a.data, a.len, &rev)
	                : shipc_kv_put(h, b, k, a.data, a.len, &rev);
	if (r < 0) {
		char what[64];
		snprintf(what, sizeof(what), "kv %s", name);
		fail(what, errno);
		goto out;
	}
	print_revision(rev);
	rc = 0;
out:
	msg_args_finish(&a);
	return rc;
}

static int cmd_put(int argc, char **argv)
{
	return write_cmd(argc, argv, "put", false);
}

static int cmd_create(int argc, char **argv)
{
	return write_cmd(argc, argv, "create", false);
}

static int cmd_update(int argc, char **argv)
{
	return write_cmd(argc, argv, "update", true);
}

static int cmd_get(int argc, char **argv)
{
	static const struct option opts[] = {
		{"revision", required_argument, NULL, 'r'}, {NULL, 0, NULL, 0}};
	uint64_t rev = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1)
		if (ch != 'r' || !parse_uint(optarg, &rev))
			return usage_of("kv get BUCKET KEY [--revision N]");
	if (argc - optind != 2)
		return usage_of("kv get BUCKET KEY [--revision N]");
	struct shipc_kv_entry *e;
	if (open_handle() < 0)
		return 1;
	if (shipc_kv_get(h, argv[optind], argv[optind + 1], rev, &e) < 0)
		return fail("kv get", errno);
	if (json) {
		print_entry(e);
	} else {
		fwrite(e->value, 1, e->len, stdout);
		if (isatty(STDOUT_FILENO))
			fputc('\n', stdout);
	}
	shipc_kv_entry_free(e);
	return 0;
}

static int marker_cmd(int argc, char **argv, bool purge)
{
	const char *u = purge ? "kv purge BUCKET KEY" : "kv del BUCKET KEY";
	if (argc != 3)
		return usage_of(u);
	if (open_handle() < 0)
		return 1;
	int r = purge ? shipc_kv_purge(h, argv[1], argv[2])
	              : shipc_kv_delete(h, argv[1], argv[2]);
	return r < 0 ? fail(u, errno) : 0;
}

static int cmd_del(int argc, char **argv)
{
	return marker_cmd(argc, argv, false);
}

static int cmd_purge(int argc, char **argv)
{
	return marker_cmd(argc, argv, true);
}

static void print_keys(char **keys, size_t n)
{
	if (json)
		fputc('[', stdout);
	for (size_t i = 0; i < n; i++) {
		if (json) {
			if (i)
				fputc(',', stdout);
			json_str(stdout, keys[i], strlen(keys[i]));
		} else {
			puts(keys[i]);
		}
	}
	if (json)
		fputs("]\n", stdout);
}

static int cmd_keys(int argc, char **argv)
{
	if (argc < 2 || argc > 3)
		return usage_of("kv keys BUCKET [FILTER]");
	char **keys;
	size_t n;
	if (open_handle() < 0)
		return 1;
	if (shipc_kv_keys(h, argv[1], argc == 3 ? argv[2] : NULL, &keys, &n) < 0)
		return fail("kv keys", errno);
	print_keys(keys, n);
	shipc_kv_keys_free(keys, n);
	return 0;
}

static void print_entries(struct shipc_kv_entry *list, size_t n)
{
	if (json)
		fputc('[', stdout);
	for (size_t i = 0; i < n; i++) {
		if (json && i)
			fputc(',', stdout);
		print_entry(&list[i]);
	}
	if (json)
		fputs("]\n", stdout);
}

static int cmd_history(int argc, char **argv)
{
	if (argc != 3)
		return usage_of("kv history BUCKET KEY");
	struct shipc_kv_entry *list;
	size_t n;
	if (open_handle() < 0)
		return 1;
	if (shipc_kv_history(h, argv[1], argv[2], &list, &n) < 0)
		return fail("kv history", errno);
	print_entries(list, n);
	shipc_kv_entries_free(list, n);
	return 0;
}

struct watch_state {
	uint64_t count, max;
	bool ended;
	int err;
};

static void on_entry(struct shipc *hh, const struct shipc_kv_entry *e,
                     void *arg)
{
	struct watch_state *st = arg;
	if (!e) {
		if (!json)
			fprintf(stderr, "(initial values done)\n");
		return;
	}
	print_entry(e);
	if (st->max && ++st->count >= st->max)
		st->ended = true;
}

static void on_end(struct shipc *hh, int err, void *arg)
{
	struct watch_state *st = arg;
	st->ended = true;
	st->err = err;
}

static int cmd_watch(int argc, char **argv)
{
	static const struct option opts[] = {
		{"count", required_argument, NULL, 'c'},
		{"history", no_argument, NULL, 'H'},
		{"updates-only", no_argument, NULL, 'u'},
		{"ignore-deletes", no_argument, NULL, 'i'},
		{"meta-only", no_argument, NULL, 'm'},
		{NULL, 0, NULL, 0}};
	const char *u = "kv watch BUCKET [PATTERN] [-c N] [--history] "
	                "[--updates-only] [--ignore-deletes] [--meta-only]";
	struct watch_state st = {0};
	int ch, flags = 0;
	while ((ch = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			if (!parse_uint(optarg, &st.max) || !st.max)
				return usage_of(u);
			break;
		case 'H':
			flags |= SHIPC_KV_WATCH_HISTORY;
			break;
		case 'u':
			flags |= SHIPC_KV_WATCH_UPDATES_ONLY;
			break;
		case 'i':
			flags |= SHIPC_KV_WATCH_IGNORE_DELETES;
			break;
		case 'm':
			flags |= SHIPC_KV_WATCH_META_ONLY;
			break;
		default:
			return usage_of(u);
		}
	}
	if (argc - optind < 1 || argc - optind > 2)
		return usage_of(u);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (open_handle() < 0)
		return 1;
	uint64_t id = shipc_kv_watch(h, argv[optind],
	                             argc - optind == 2 ? argv[optind + 1] : NULL,
	                             flags, on_entry, on_end, &st);
	if (!id)
		return fail("kv watch", errno);
	while (!interrupted && !st.ended)
		if (shipc_dispatch(h, 500) < 0 && errno != EINTR)
			return fail("dispatch", errno);
	if (st.ended && st.err)
		return fail("watch ended", st.err);
	return 0;
}

/* ---- the noesis-ship stores ---- */

static int cmd_beings(int argc, char **argv)
{
	static const struct option opts[] = {{"all", no_argument, NULL, 'a'},
	                                     {NULL, 0, NULL, 0}};
	int ch, all = 0;
	while ((ch = getopt_long(argc, argv, "a", opts, NULL)) != -1)
		if (ch == 'a')
			all = 1;
		else
			return usage_of("beings ls [--all]");
	if (argc != optind)
		return usage_of("beings ls [--all]");
	struct shipc_being *list;
	size_t n;
	if (open_handle() < 0)
		return 1;
	if (shipc_beings_list(h, all, 0, &list, &n) < 0)
		return fail("beings ls", errno);
	if (json)
		fputc('[', stdout);
	for (size_t i = 0; i < n; i++) {
		const struct shipc_being *b = &list[i];
		if (json) {
			printf("%s{\"online\":%s,\"revision\":%" PRIu64 ",\"status\":%s}",
			       i ? "," : "", b->online ? "true" : "false", b->revision,
			       b->json);
			continue;
		}
		printf("%-20s %-8s %-7s %s %s\n", b->being_id, b->state,
		       b->online ? "online" : "-", b->last_heartbeat,
		       b->current_task ? b->current_task : "");
	}
	if (json)
		fputs("]\n", stdout);
	shipc_beings_free(list, n);
	return 0;
}

static int cmd_config_get(int argc, char **argv)
{
	if (argc < 2 || argc > 3)
		return usage_of("config get KEY [DEFAULT_JSON]");
	char *v;
	if (open_handle() < 0)
		return 1;
	if (shipc_config_get(h, argv[1], argc == 3 ? argv[2] : NULL, &v) < 0)
		return fail("config get", errno);
	puts(v);
	free(v);
	return 0;
}

static int cmd_config_set(int argc, char **argv)
{
	if (argc != 3)
		return usage_of("config set KEY JSON");
	if (open_handle() < 0)
		return 1;
	if (shipc_config_set(h, argv[1], argv[2]) < 0)
		return fail("config set", errno);
	return 0;
}

static int cmd_config_keys(int argc, char **argv)
{
	if (argc != 1)
		return usage_of("config keys");
	char **keys;
	size_t n;
	if (open_handle() < 0)
		return 1;
	if (shipc_config_keys(h, &keys, &n) < 0)
		return fail("config keys", errno);
	print_keys(keys, n);
	shipc_kv_keys_free(keys, n);
	return 0;
}

static int cmd_health(int argc, char **argv)
{
	if (argc != 1)
		return usage_of("health ls");
	struct shipc_kv_entry *list;
	size_t n;
	if (open_handle() < 0)
		return 1;
	if (shipc_health_list(h, &list, &n) < 0)
		return fail("health ls", errno);
	if (json)
		fputc('[', stdout);
	for (size_t i = 0; i < n; i++) {
		if (json) {
			printf("%s{\"source\":", i ? "," : "");
			json_str(stdout, list[i].key, strlen(list[i].key));
			printf(",\"revision\":%" PRIu64 ",\"report\":%.*s}",
			       list[i].revision, (int)list[i].len,
			       (const char *)list[i].value);
		} else {
			printf("%-20s ", list[i].key);
			print_time(list[i].created_ns);
			printf(" %.*s\n", (int)list[i].len, (const char *)list[i].value);
		}
	}
	if (json)
		fputs("]\n", stdout);
	shipc_kv_entries_free(list, n);
	return 0;
}

const struct cmd kv_cmds[] = {
	{"kv ls", cmd_ls, "", "list KV buckets"},
	{"kv add", cmd_add, "BUCKET [--history N] [--ttl S] ...",
	 "create a bucket"},
	{"kv info", cmd_info, "BUCKET", "show a bucket's settings and state"},
	{"kv rm", cmd_rm, "BUCKET", "delete a bucket and everything in it"},
	{"kv put", cmd_put, "BUCKET KEY [VALUE]",
	 "store VALUE (or stdin); prints the revision"},
	{"kv get", cmd_get, "BUCKET KEY [--revision N]", "print a value"},
	{"kv create", cmd_create, "BUCKET KEY [VALUE]",
	 "store only if the key is absent"},
	{"kv update", cmd_update, "BUCKET KEY VALUE --revision N",
	 "store only if the key is at revision N"},
	{"kv del", cmd_del, "BUCKET KEY", "delete a key (history kept)"},
	{"kv purge", cmd_purge, "BUCKET KEY", "delete a key and its history"},
	{"kv keys", cmd_keys, "BUCKET [FILTER]", "list keys"},
	{"kv history", cmd_history, "BUCKET KEY", "print a key's revisions"},
	{"kv watch", cmd_watch, "BUCKET [PATTERN] [-c N] [--history] ...",
	 "print entries as they change"},
	{"beings ls", cmd_beings, "[--all]", "list online beings (all: every one)"},
	{"config get", cmd_config_get, "KEY [DEFAULT_JSON]",
	 "print a ship_config value"},
	{"config set", cmd_config_set, "KEY JSON", "set a ship_config value"},
	{"config keys", cmd_config_keys, "", "list ship_config keys"},
	{"health ls", cmd_health, "", "list ship_health reports"},
	{NULL, NULL, NULL, NULL},
};
