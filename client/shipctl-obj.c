/* SPDX-License-Identifier: MIT */
/* shipctl's Object Store commands: buckets, objects, and streamed puts
 * and gets with a progress bar on a terminal. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shipctl.h"

#define BAR_MIN_BYTES (1u << 20)
#define BAR_INTERVAL_MS 200

static int usage_of(const char *u)
{
	fprintf(stderr, "usage: shipctl %s\n", u);
	return 2;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* "1048576", "512K", "64M", "2G" (powers of 1024). */
static bool parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return false;
	unsigned shift = 0;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if ((shift && end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B")) ||
	    (!shift && *end))
		return false;
	if (shift && v > (UINT64_MAX >> shift))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

static void human(char *buf, size_t n, double v)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	size_t u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, n, "%.0f %s", v, units[u]);
	else
		snprintf(buf, n, "%.1f %s", v, units[u]);
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

/* ---- progress bar: stderr, a terminal, more than 1 MiB ---- */

struct bar {
	bool tty;
	bool shown;
	uint64_t start;
	uint64_t last;
};

static void on_progress(uint64_t done, uint64_t total, void *arg)
{
	struct bar *b = arg;
	uint64_t now = mono_ms();
	if (!b->tty || (total ? total : done) <= BAR_MIN_BYTES)
		return;
	if (b->shown && now - b->last < BAR_INTERVAL_MS && done != total)
		return;
	b->last = now;
	b->shown = true;
	double secs = (double)(now - b->start) / 1000.0;
	double rate = secs > 0 ? (double)done / secs : 0;
	char d[32], t[32], r[32], left[32] = "";
	human(d, sizeof(d), (double)done);
	human(r, sizeof(r), rate);
	if (total) {
		human(t, sizeof(t), (double)total);
		if (rate > 0 && done < total) {
			unsigned s = (unsigned)((double)(total - done) / rate);
			snprintf(left, sizeof(left), "  %u:%02u left", s / 60,
			         s % 60);
		}
		fprintf(stderr, "\r\033[K%s / %s (%3.0f%%)  %s/s%s", d, t,
		        100.0 * (double)done / (double)total, r, left);
	} else {
		fprintf(stderr, "\r\033[K%s  %s/s", d, r);
	}
}

static void bar_end(struct bar *b)
{
	if (b->shown)
		fputc('\n', stderr);
}

static void bar_init(struct bar *b)
{
	*b = (struct bar){.tty = isatty(STDERR_FILENO) == 1,
	                  .start = mono_ms()};
}

/* ---- printing ---- */

static void json_headers(const struct shipc_header *hs, size_t n, bool multi)
{
	/* Headers as nats.go writes them: key to a list of values. */
	fputc('{', stdout);
	for (size_t i = 0; i < n; i++) {
		if (multi) {
			bool seen = false;
			for (size_t j = 0; j < i && !seen; j++)
				seen = !strcmp(hs[j].key, hs[i].key);
			if (seen)
				continue;
		}
		if (i)
			fputc(',', stdout);
		json_str(stdout, hs[i].key, strlen(hs[i].key));
		fputc(':', stdout);
		if (!multi) {
			json_str(stdout, hs[i].value, strlen(hs[i].value));
			continue;
		}
		fputc('[', stdout);
		for (size_t j = i, k = 0; j < n; j++) {
			if (strcmp(hs[j].key, hs[i].key))
				continue;
			if (k++)
				fputc(',', stdout);
			json_str(stdout, hs[j].value, strlen(hs[j].value));
		}
		fputc(']', stdout);
	}
	fputc('}', stdout);
}

static void json_field(const char *key, const char *v, bool comma)
{
	printf("%s\"%s\":", comma ? "," : "", key);
	json_str(stdout, v, strlen(v));
}

static void print_info_json(const struct shipc_obj_info *o)
{
	fputc('{', stdout);
	json_field("bucket", o->bucket, false);
	json_field("name", o->name, true);
	json_field("description", o->description, true);
	json_field("nuid", o->nuid, true);
	printf(",\"size\":%" PRIu64 ",\"chunks\":%" PRIu32
	       ",\"max_chunk_size\":%" PRIu32 ",\"mtime_ns\":%" PRIu64,
	       o->size, o->chunks, o->max_chunk_size, o->mtime_ns);
	json_field("digest", o->digest, true);
	printf(",\"deleted\":%s", o->deleted ? "true" : "false");
	if (o->link_bucket[0]) {
		fputs(",\"link\":{", stdout);
		json_field("bucket", o->link_bucket, false);
		if (o->link_name[0])
			json_field("name", o->link_name, true);
		fputc('}', stdout);
	}
	fputs(",\"headers\":", stdout);
	json_headers(o->headers, o->n_headers, true);
	fputs(",\"metadata\":", stdout);
	json_headers(o->metadata, o->n_metadata, false);
	fputc('}', stdout);
}

static void print_info(const struct shipc_obj_info *o)
{
	if (json) {
		print_info_json(o);
		fputc('\n', stdout);
		return;
	}
	char sz[32];
	human(sz, sizeof(sz), (double)o->size);
	printf("name:        %s\nbucket:      %s\n", o->name, o->bucket);
	if (o->description[0])
		printf("description: %s\n", o->description);
	printf("size:        %" PRIu64 " (%s)\nchunks:      %" PRIu32
	       " of at most %" PRIu32 " bytes\ndigest:      %s\nnuid:        "
	       "%s\nmodified:    ",
	       o->size, sz, o->chunks, o->max_chunk_size,
	       o->digest[0] ? o->digest : "-", o->nuid);
	print_time(o->mtime_ns);
	fputc('\n', stdout);
	if (o->deleted)
		printf("deleted:     yes\n");
	if (o->link_bucket[0])
		printf("link:        %s/%s\n", o->link_bucket, o->link_name);
	for (size_t i = 0; i < o->n_headers; i++)
		printf("header:      %s: %s\n", o->headers[i].key,
		       o->headers[i].value);
	for (size_t i = 0; i < o->n_metadata; i++)
		printf("metadata:    %s=%s\n", o->metadata[i].key,
		       o->metadata[i].value);
}

static void print_bucket(const struct shipc_obj_bucket_status *s)
{
	if (json) {
		fputc('{', stdout);
		json_field("bucket", s->bucket, false);
		json_field("description", s->description, true);
		printf(",\"ttl_ms\":%" PRIu64 ",\"max_bytes\":%" PRId64
		       ",\"storage\":\"%s\",\"replicas\":%" PRIu32
		       ",\"sealed\":%s,\"size\":%" PRIu64 "}",
		       s->ttl_ms, s->max_bytes, s->memory ? "memory" : "file",
		       s->replicas, s->sealed ? "true" : "false", s->size);
		return;
	}
	char ttl[32], sz[32];
	snprintf(ttl, sizeof(ttl), "%" PRIu64 "s", s->ttl_ms / 1000);
	human(sz, sizeof(sz), (double)s->size);
	printf("%-24s %-6s ttl %-9s size %-10s%s%s%s\n", s->bucket,
	       s->memory ? "memory" : "file", s->ttl_ms ? ttl : "-", sz,
	       s->sealed ? "  sealed" : "", s->description[0] ? "  " : "",
	       s->description);
}

/* ---- buckets ---- */

static int list_buckets(void)
{
	struct shipc_obj_bucket_status *list;
	size_t n;
	if (shipc_obj_bucket_list(h, &list, &n) < 0)
		return fail("obj ls", errno);
	if (json)
		fputc('[', stdout);
	for (size_t i = 0; i < n; i++) {
		if (json && i)
			fputc(',', stdout);
		print_bucket(&list[i]);
	}
	if (json)
		fputs("]\n", stdout);
	shipc_obj_bucket_list_free(list);
	return 0;
}

static int list_objects(const char *bucket, bool all)
{
	struct shipc_obj_info *list;
	size_t n;
	if (shipc_obj_list(h, bucket, all, &list, &n) < 0)
		return fail("obj ls", errno);
	if (json)
		fputc('[', stdout);
	for (size_t i = 0; i < n; i++) {
		const struct shipc_obj_info *o = &list[i];
		if (json) {
			if (i)
				fputc(',', stdout);
			print_info_json(o);
			continue;
		}
		char sz[32];
		human(sz, sizeof(sz), (double)o->size);
		printf("%-32s %10s  ", o->name, sz);
		print_time(o->mtime_ns);
		printf("%s\n", o->deleted ? "  deleted" : "");
	}
	if (json)
		fputs("]\n", stdout);
	shipc_obj_list_free(list, n);
	return 0;
}

static int cmd_ls(int argc, char **argv)
{
	static const struct option opts[] = {{"all", no_argument, NULL, 'a'},
	                                     {NULL, 0, NULL, 0}};
	bool all = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "a", opts, NULL)) != -1) {
		if (ch != 'a')
			return usage_of("obj ls [BUCKET] [--all]");
		all = true;
	}
	if (argc - optind > 1 || (all && argc - optind == 0))
		return usage_of("obj ls [BUCKET] [--all]");
	if (open_handle() < 0)
		return 1;
	return argc - optind == 1 ? list_objects(argv[optind], all)
	                          : list_buckets();
}

static int cmd_add(int argc, char **argv)
{
	static const struct option opts[] = {
		{"description", required_argument, NULL, 'd'},
		{"ttl", required_argument, NULL, 't'},
		{"max-bytes", required_argument, NULL, 'b'},
		{"memory", no_argument, NULL, 'M'},
		{"replicas", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0}};
	const char *u = "obj add BUCKET [--description TEXT] [--ttl DURATION] "
	                "[--max-bytes SIZE] [--memory] [--replicas N]";
	struct shipc_obj_bucket_config c = {0};
	uint64_t v;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'd')
			c.description = optarg;
		else if (ch == 'M')
			c.memory = 1;
		else if (ch == 't' && parse_duration(optarg, &v))
			c.ttl_ms = v;
		else if (ch == 'b' && parse_size(optarg, &v) && v <= INT64_MAX)
			c.max_bytes = (int64_t)v;
		else if (ch == 'r' && parse_uint(optarg, &v) && v >= 1 && v <= 5)
			c.replicas = (uint32_t)v;
		else
			return usage_of(u);
	}
	if (argc - optind != 1)
		return usage_of(u);
	c.bucket = argv[optind];
	struct shipc_obj_bucket_status st;
	if (open_handle() < 0)
		return 1;
	if (shipc_obj_bucket_create(h, &c, &st) < 0)
		return fail("obj add", errno);
	print_bucket(&st);
	if (json)
		fputc('\n', stdout);
	return 0;
}

static int cmd_info(int argc, char **argv)
{
	if (argc != 2 && argc != 3)
		return usage_of("obj info BUCKET [NAME]");
	if (open_handle() < 0)
		return 1;
	if (argc == 3) {
		struct shipc_obj_info *o;
		if (shipc_obj_info(h, argv[1], argv[2], 0, &o) < 0)
			return fail("obj info", errno);
		print_info(o);
		shipc_obj_info_free(o);
		return 0;
	}
	struct shipc_obj_bucket_status st;
	if (shipc_obj_bucket_status(h, argv[1], &st) < 0)
		return fail("obj info", errno);
	print_bucket(&st);
	if (json)
		fputc('\n', stdout);
	return 0;
}

static int cmd_rm(int argc, char **argv)
{
	if (argc != 3)
		return usage_of("obj rm BUCKET NAME");
	if (open_handle() < 0)
		return 1;
	if (shipc_obj_delete(h, argv[1], argv[2]) < 0)
		return fail("obj rm", errno);
	return 0;
}

static int cmd_rm_bucket(int argc, char **argv)
{
	if (argc != 2)
		return usage_of("obj rm-bucket BUCKET");
	if (open_handle() < 0)
		return 1;
	if (shipc_obj_bucket_delete(h, argv[1]) < 0)
		return fail("obj rm-bucket", errno);
	return 0;
}

static int cmd_seal(int argc, char **argv)
{
	if (argc != 2)
		return usage_of("obj seal BUCKET");
	if (open_handle() < 0)
		return 1;
	if (shipc_obj_bucket_seal(h, argv[1]) < 0)
		return fail("obj seal", errno);
	return 0;
}

/* ---- transfers ---- */

static int cmd_put(int argc, char **argv)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'},
		{"description", required_argument, NULL, 'd'},
		{"chunk-size", required_argument, NULL, 'c'},
		{NULL, 0, NULL, 0}};
	const char *u = "obj put BUCKET FILE [--name NAME] [--description "
	                "TEXT] [--chunk-size SIZE]";
	struct shipc_obj_put_opts o = {.progress = on_progress};
	const char *name = NULL;
	uint64_t v;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'n')
			name = optarg;
		else if (ch == 'd')
			o.description = optarg;
		else if (ch == 'c' && parse_size(optarg, &v) && v > 0 &&
		         v <= UINT32_MAX)
			o.chunk_size = (uint32_t)v;
		else
			return usage_of(u);
	}
	if (argc - optind != 2)
		return usage_of(u);
	const char *bucket = argv[optind], *file = argv[optind + 1];
	bool std_in = !strcmp(file, "-");
	if (std_in && !name) {
		fprintf(stderr, "shipctl: obj put: --name is needed with stdin\n");
		return 2;
	}
	char *copy = strdup(file);
	if (!copy)
		return fail("obj put", errno);
	if (!name)
		name = basename(copy);
	struct bar b;
	bar_init(&b);
	o.progress_arg = &b;
	struct shipc_obj_info *info = NULL;
	int r = open_handle();
	if (r == 0)
		r = std_in ? shipc_obj_put_fd(h, bucket, name, STDIN_FILENO, &o,
		                              &info)
		           : shipc_obj_put_file(h, bucket, name, file, &o, &info);
	int e = errno;
	bar_end(&b);
	free(copy);
	if (r < 0)
		return h ? fail("obj put", e) : 1;
	if (json)
		print_info(info);
	else
		printf("%s %" PRIu64 " %s\n", info->name, info->size,
		       info->digest);
	shipc_obj_info_free(info);
	return 0;
}

static int cmd_get(int argc, char **argv)
{
	static const struct option opts[] = {
		{"output", required_argument, NULL, 'o'}, {NULL, 0, NULL, 0}};
	const char *u = "obj get BUCKET NAME [-o FILE]";
	const char *out = NULL;
	int ch;
	while ((ch = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		if (ch != 'o')
			return usage_of(u);
		out = optarg;
	}
	if (argc - optind != 2)
		return usage_of(u);
	struct bar b;
	bar_init(&b);
	struct shipc_obj_get_opts o = {.progress = on_progress,
	                               .progress_arg = &b};
	struct shipc_obj_info *info = NULL;
	const char *bucket = argv[optind], *name = argv[optind + 1];
	if (open_handle() < 0)
		return 1;
	int r = out && strcmp(out, "-")
	                ? shipc_obj_get_file(h, bucket, name, out, &o, &info)
	                : shipc_obj_get_fd(h, bucket, name, STDOUT_FILENO, &o,
	                                   &info);
	int e = errno;
	bar_end(&b);
	if (r < 0)
		return fail("obj get", e);
	/* With the data on stdout, the information goes nowhere. */
	if (json && out && strcmp(out, "-"))
		print_info(info);
	shipc_obj_info_free(info);
	return 0;
}

/* ---- metadata, links, watch ---- */

/* What is not named stays as it is: the library replaces all of it. */
static int cmd_edit(int argc, char **argv)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'},
		{"description", required_argument, NULL, 'd'},
		{"meta", required_argument, NULL, 'm'},
		{NULL, 0, NULL, 0}};
	const char *u = "obj edit BUCKET NAME [--name NEW] [--description "
	                "TEXT] [--meta KEY=VALUE]...";
	struct shipc_header md[MAX_HDRS];
	struct shipc_obj_meta m = {0};
	bool desc = false;
	size_t n = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *eq;
		if (ch == 'n') {
			m.new_name = optarg;
		} else if (ch == 'd') {
			m.description = optarg;
			desc = true;
		} else if (ch == 'm' && n < MAX_HDRS &&
		           (eq = strchr(optarg, '=')) && eq != optarg) {
			*eq = '\0';
			md[n].key = optarg;
			md[n++].value = eq + 1;
		} else {
			return usage_of(u);
		}
	}
	if (argc - optind != 2)
		return usage_of(u);
	const char *bucket = argv[optind], *name = argv[optind + 1];
	struct shipc_obj_info *o;
	if (open_handle() < 0)
		return 1;
	if (shipc_obj_info(h, bucket, name, 0, &o) < 0)
		return fail("obj edit", errno);
	if (!desc)
		m.description = o->description;
	m.headers = o->headers;
	m.n_headers = o->n_headers;
	m.metadata = n ? md : o->metadata;
	m.n_metadata = n ? n : o->n_metadata;
	int r = shipc_obj_update_meta(h, bucket, name, &m);
	int e = errno;
	shipc_obj_info_free(o);
	return r < 0 ? fail("obj edit", e) : 0;
}

static int cmd_link(int argc, char **argv)
{
	if (argc != 4 && argc != 5)
		return usage_of("obj link BUCKET NAME TARGET_BUCKET "
		                "[TARGET_NAME]");
	struct shipc_obj_info *o;
	if (open_handle() < 0)
		return 1;
	if (shipc_obj_link(h, argv[1], argv[2], argv[3],
	                   argc == 5 ? argv[4] : NULL, &o) < 0)
		return fail("obj link", errno);
	if (json)
		print_info(o);
	shipc_obj_info_free(o);
	return 0;
}

struct obj_watch_state {
	bool ended;
	int err;
};

static void on_change(struct shipc *hh, const struct shipc_obj_info *o,
                      int err, void *arg)
{
	(void)hh;
	struct obj_watch_state *st = arg;
	if (err) {
		st->ended = true;
		st->err = err == ECANCELED ? 0 : err;
		return;
	}
	if (!o) {
		if (json)
			fputs("{\"initial_done\":true}\n", stdout);
		else
			puts("-- initial objects done --");
	} else if (json) {
		print_info_json(o);
		fputc('\n', stdout);
	} else {
		char sz[32];
		human(sz, sizeof(sz), (double)o->size);
		print_time(o->mtime_ns);
		printf("  %-7s %s %s", o->deleted ? "DELETED" : "PUT", o->name,
		       sz);
		if (o->link_bucket[0])
			printf(" -> %s/%s", o->link_bucket, o->link_name);
		fputc('\n', stdout);
	}
	fflush(stdout);
}

static int cmd_watch(int argc, char **argv)
{
	static const struct option opts[] = {
		{"history", no_argument, NULL, 'H'},
		{"updates-only", no_argument, NULL, 'u'},
		{"ignore-deletes", no_argument, NULL, 'i'},
		{"json", no_argument, NULL, 'j'},
		{NULL, 0, NULL, 0}};
	const char *u = "obj watch BUCKET [--history] [--updates-only] "
	                "[--ignore-deletes] [--json]";
	struct obj_watch_state st = {0};
	int ch, flags = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'H')
			flags |= SHIPC_OBJ_WATCH_HISTORY;
		else if (ch == 'u')
			flags |= SHIPC_OBJ_WATCH_UPDATES_ONLY;
		else if (ch == 'i')
			flags |= SHIPC_OBJ_WATCH_IGNORE_DELETES;
		else if (ch == 'j')
			json = true;
		else
			return usage_of(u);
	}
	if (argc - optind != 1)
		return usage_of(u);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (open_handle() < 0)
		return 1;
	uint64_t id = shipc_obj_watch(h, argv[optind], flags, on_change, &st);
	if (!id)
		return fail("obj watch", errno);
	while (!interrupted && !st.ended)
		if (shipc_dispatch(h, 500) < 0 && errno != EINTR)
			return fail("dispatch", errno);
	if (st.ended && st.err)
		return fail("watch ended", st.err);
	return 0;
}

const struct cmd obj_cmds[] = {
	{"obj ls", cmd_ls, "[BUCKET] [--all]",
	 "list object buckets, or a bucket's objects"},
	{"obj add", cmd_add, "BUCKET [--ttl DUR] [--memory] ...",
	 "create an object bucket"},
	{"obj info", cmd_info, "BUCKET [NAME]",
	 "show a bucket's settings, or an object's information"},
	{"obj put", cmd_put, "BUCKET FILE [--name N] ...",
	 "store FILE (- for stdin) as an object"},
	{"obj get", cmd_get, "BUCKET NAME [-o FILE]",
	 "fetch an object to stdout or FILE, verified"},
	{"obj rm", cmd_rm, "BUCKET NAME", "delete an object"},
	{"obj rm-bucket", cmd_rm_bucket, "BUCKET",
	 "delete a bucket and every object in it"},
	{"obj seal", cmd_seal, "BUCKET", "forbid further changes to a bucket"},
	{"obj edit", cmd_edit, "BUCKET NAME [--name NEW] [--meta K=V] ...",
	 "rename an object or change its description or metadata"},
	{"obj link", cmd_link, "BUCKET NAME TARGET_BUCKET [TARGET_NAME]",
	 "make NAME a link to an object, or to a whole bucket"},
	{"obj watch", cmd_watch, "BUCKET [--history] [--updates-only] ...",
	 "print each change to a bucket's objects until interrupted"},
	{NULL, NULL, NULL, NULL},
};
