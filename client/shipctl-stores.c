/* SPDX-License-Identifier: MIT */
/* shipctl's snapshot and artifact commands: noesis-ship's BeingSnapshots
 * and ArtifactStore. */
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

static void time_str(char buf[32], uint64_t ns)
{
	time_t t = (time_t)(ns / 1000000000u);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void field(const char *key, const char *v, bool comma)
{
	printf("%s\"%s\":", comma ? "," : "", key);
	json_str(stdout, v, strlen(v));
}

/* ---- snapshots ---- */

static int cmd_take(int argc, char **argv)
{
	static const struct option opts[] = {
		{"reason", required_argument, NULL, 'r'}, {NULL, 0, NULL, 0}};
	const char *u = "snapshot take BEING [--reason TEXT] (STATE_JSON | -)";
	const char *reason = "";
	struct msg_args a = {0};
	int ch;
	while ((ch = getopt_long(argc, argv, "r:", opts, NULL)) != -1) {
		if (ch != 'r')
			return usage_of(u);
		reason = optarg;
	}
	if (argc - optind != 2)
		return usage_of(u);
	const char *being = argv[optind], *state = argv[optind + 1];
	char *text = NULL, *id = NULL;
	if (!strcmp(state, "-")) {
		/* The library takes a C string: end what was read with one. */
		if (read_stdin(&a) < 0 || !(text = malloc(a.len + 1))) {
			msg_args_finish(&a);
			return fail("snapshot take", errno ? errno : ENOMEM);
		}
		memcpy(text, a.data, a.len);
		text[a.len] = '\0';
		msg_args_finish(&a);
		state = text;
	}
	int r = open_handle();
	if (r == 0 && (r = shipc_snapshot_take(h, being, state, reason, &id)) < 0)
		fail("snapshot take", errno);
	free(text);
	if (r < 0)
		return 1;
	if (json) {
		fputc('{', stdout);
		field("id", id, false);
		fputs("}\n", stdout);
	} else {
		printf("%s\n", id);
	}
	free(id);
	return 0;
}

static int cmd_restore(int argc, char **argv)
{
	if (argc != 2)
		return usage_of("snapshot restore ID");
	char *state;
	if (open_handle() < 0)
		return 1;
	if (shipc_snapshot_restore(h, argv[1], &state, NULL) < 0)
		return fail("snapshot restore", errno);
	if (json) {
		fputc('{', stdout);
		field("id", argv[1], false);
		printf(",\"state\":%s}\n", state);
	} else {
		printf("%s\n", state);
	}
	free(state);
	return 0;
}

static void print_snapshot(const struct shipc_snapshot *s, bool comma)
{
	char t[32];
	time_str(t, s->created_ns);
	if (!json) {
		printf("%-40s %-20s %s %10" PRIu64 "  %s\n", s->id,
		       s->being_id[0] ? s->being_id : "?", t, s->size,
		       s->reason);
		return;
	}
	printf("%s{", comma ? "," : "");
	field("id", s->id, false);
	field("being_id", s->being_id, true);
	field("reason", s->reason, true);
	field("created", t, true);
	printf(",\"created_ns\":%" PRIu64 ",\"size\":%" PRIu64 "}",
	       s->created_ns, s->size);
}

static int cmd_snapshot_ls(int argc, char **argv)
{
	if (argc > 2)
		return usage_of("snapshot ls [BEING]");
	struct shipc_snapshot *list;
	size_t n;
	if (open_handle() < 0)
		return 1;
	if (shipc_snapshot_list(h, argc == 2 ? argv[1] : NULL, &list, &n) < 0)
		return fail("snapshot ls", errno);
	if (json)
		fputc('[', stdout);
	for (size_t i = 0; i < n; i++)
		print_snapshot(&list[i], i > 0);
	if (json)
		fputs("]\n", stdout);
	shipc_snapshot_list_free(list, n);
	return 0;
}

static int cmd_snapshot_rm(int argc, char **argv)
{
	if (argc != 2)
		return usage_of("snapshot rm ID");
	if (open_handle() < 0)
		return 1;
	if (shipc_snapshot_delete(h, argv[1]) < 0)
		return fail("snapshot rm", errno);
	return 0;
}

static int cmd_cleanup(int argc, char **argv)
{
	static const struct option opts[] = {
		{"older-than", required_argument, NULL, 'o'},
		{"keep", required_argument, NULL, 'k'},
		{NULL, 0, NULL, 0}};
	const char *u = "snapshot cleanup [BEING] --older-than DURATION "
	                "[--keep N]";
	uint64_t age = 0, keep = 1;
	bool has_age = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'o' && parse_duration(optarg, &age))
			has_age = true;
		else if (!(ch == 'k' && parse_uint(optarg, &keep) &&
		           keep <= UINT32_MAX))
			return usage_of(u);
	}
	if (!has_age || argc - optind > 1)
		return usage_of(u);
	size_t deleted;
	if (open_handle() < 0)
		return 1;
	int r = shipc_snapshot_cleanup(h, argc - optind ? argv[optind] : NULL,
	                               age, (uint32_t)keep, &deleted);
	int e = errno;
	if (json)
		printf("{\"deleted\":%zu}\n", deleted);
	else if (deleted || r == 0)
		printf("%zu deleted\n", deleted);
	return r < 0 ? fail("snapshot cleanup", e) : 0;
}

/* ---- artifacts ---- */

static void print_artifact(const struct shipc_artifact *a, bool comma)
{
	char t[32];
	time_str(t, a->mtime_ns);
	if (!json) {
		printf("%-32s %-12s %-12s %10" PRIu64 "  %s  %s\n", a->name,
		       a->type, a->expedition[0] ? a->expedition : "-", a->size,
		       t, a->digest);
		return;
	}
	printf("%s{", comma ? "," : "");
	field("name", a->name, false);
	field("type", a->type, true);
	field("expedition", a->expedition, true);
	printf(",\"size\":%" PRIu64, a->size);
	field("mtime", t, true);
	printf(",\"mtime_ns\":%" PRIu64, a->mtime_ns);
	field("digest", a->digest, true);
	fputc('}', stdout);
}

static int cmd_artifact_put(int argc, char **argv)
{
	static const struct option opts[] = {
		{"type", required_argument, NULL, 't'},
		{"expedition", required_argument, NULL, 'e'},
		{NULL, 0, NULL, 0}};
	const char *u = "artifact put NAME (FILE | -) --type TYPE "
	                "[--expedition ID]";
	const char *type = NULL, *exp = NULL;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 't')
			type = optarg;
		else if (ch == 'e')
			exp = optarg;
		else
			return usage_of(u);
	}
	if (argc - optind != 2 || !type || !*type)
		return usage_of(u);
	const char *name = argv[optind], *file = argv[optind + 1];
	struct shipc_obj_info *o;
	if (open_handle() < 0)
		return 1;
	int r = strcmp(file, "-")
	                ? shipc_artifact_store_file(h, name, file, type, exp, &o)
	                : shipc_artifact_store_fd(h, name, STDIN_FILENO, type,
	                                          exp, &o);
	if (r < 0)
		return fail("artifact put", errno);
	struct shipc_artifact a = {.name = o->name, .type = type,
	                           .expedition = exp ? exp : "",
	                           .digest = o->digest, .size = o->size,
	                           .mtime_ns = o->mtime_ns};
	if (json) {
		print_artifact(&a, false);
		fputc('\n', stdout);
	} else {
		printf("%s %" PRIu64 " %s\n", a.name, a.size, a.digest);
	}
	shipc_obj_info_free(o);
	return 0;
}

static int cmd_artifact_get(int argc, char **argv)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'}, {NULL, 0, NULL, 0}};
	const char *u = "artifact get NAME [-o FILE]";
	const char *out = NULL;
	int ch;
	while ((ch = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		if (ch != 'o')
			return usage_of(u);
		out = optarg;
	}
	if (argc - optind != 1)
		return usage_of(u);
	const char *name = argv[optind];
	bool to_file = out && strcmp(out, "-");
	struct shipc_obj_info *o;
	if (open_handle() < 0)
		return 1;
	int r = to_file ? shipc_artifact_get_file(h, name, out, &o)
	                : shipc_artifact_get_fd(h, name, STDOUT_FILENO, &o);
	if (r < 0)
		return fail("artifact get", errno);
	/* With the data on stdout, the information goes nowhere. */
	if (json && to_file) {
		fputc('{', stdout);
		field("name", o->name, false);
		printf(",\"size\":%" PRIu64, o->size);
		field("digest", o->digest, true);
		fputs("}\n", stdout);
	}
	shipc_obj_info_free(o);
	return 0;
}

static int cmd_artifact_ls(int argc, char **argv)
{
	if (argc != 1)
		return usage_of("artifact ls");
	struct shipc_artifact *list;
	size_t n;
	if (open_handle() < 0)
		return 1;
	if (shipc_artifact_list(h, &list, &n) < 0)
		return fail("artifact ls", errno);
	if (json)
		fputc('[', stdout);
	for (size_t i = 0; i < n; i++)
		print_artifact(&list[i], i > 0);
	if (json)
		fputs("]\n", stdout);
	shipc_artifact_list_free(list, n);
	return 0;
}

const struct cmd store_cmds[] = {
	{"snapshot take", cmd_take, "BEING [--reason R] (JSON | -)",
	 "store a being's state as a new snapshot; prints its id"},
	{"snapshot restore", cmd_restore, "ID", "print a snapshot's state"},
	{"snapshot ls", cmd_snapshot_ls, "[BEING]",
	 "list snapshots (of one being), newest first"},
	{"snapshot rm", cmd_snapshot_rm, "ID", "delete a snapshot"},
	{"snapshot cleanup", cmd_cleanup, "[BEING] --older-than DUR [--keep N]",
	 "delete old snapshots, keeping each being's newest N (1)"},
	{"artifact put", cmd_artifact_put, "NAME FILE --type T [--expedition E]",
	 "store FILE (- for stdin) as an artifact"},
	{"artifact get", cmd_artifact_get, "NAME [-o FILE]",
	 "fetch an artifact to stdout or FILE, verified"},
	{"artifact ls", cmd_artifact_ls, "", "list artifacts with their type"},
	{NULL, NULL, NULL, NULL},
};
