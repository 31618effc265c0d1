/* SPDX-License-Identifier: MIT */
/* Unit tests of daemon/config.c: defaults, the file parser and its error
 * messages, the checks between keys, and printing the result back. */
#include <check.h>
#include <sys/socket.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "shipd.h"

/* ---- helpers ---- */

/* The whole content of a file, NUL-terminated. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	char *s = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&s, &len);
	ck_assert_ptr_nonnull(m);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, m);
	fclose(f);
	fclose(m);
	return s;
}

/* A temporary file holding len bytes of text; returns its path. */
static char *write_temp_len(const char *text, size_t len)
{
	char tmpl[] = "/tmp/shipd-unit-conf-XXXXXX";
	int fd = mkstemp(tmpl);
	ck_assert_int_ge(fd, 0);
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, text + off, len - off);
		ck_assert_int_gt(w, 0);
		off += (size_t)w;
	}
	close(fd);
	char *path = strdup(tmpl);
	ck_assert_ptr_nonnull(path);
	return path;
}

static char *write_temp(const char *text)
{
	return write_temp_len(text, strlen(text));
}

/* config_load with what it prints to the real stderr (fd 2) captured. */
static int load_capture(struct config *c, const char *path, char **errs)
{
	char tmpl[] = "/tmp/shipd-unit-err-XXXXXX";
	int fd = mkstemp(tmpl);
	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
	int rc = config_load(c, path, stderr);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
	*errs = slurp(tmpl);
	unlink(tmpl);
	return rc;
}

/* A file loaded over c: its path, the return code and the errors. */
struct loaded {
	char *path;
	char *errs;
	int rc;
};

/* The file goes at once: only its name is needed to check the messages,
 * and a failing test leaves nothing behind. */
static void load_text(struct config *c, const char *text, struct loaded *l)
{
	l->path = write_temp(text);
	l->rc = load_capture(c, l->path, &l->errs);
	unlink(l->path);
}

static void loaded_free(struct loaded *l)
{
	free(l->path);
	free(l->errs);
}

/* The errors hold "path:line: msg" as one whole line. */
static void assert_line_error(const struct loaded *l, int line,
                              const char *msg)
{
	char *want;
	ck_assert_int_gt(asprintf(&want, "%s:%d: %s\n", l->path, line, msg), 0);
	const char *p = strstr(l->errs, want);
	ck_assert_msg(p && (p == l->errs || p[-1] == '\n'),
	              "expected '%s' in:\n%s", want, l->errs);
	free(want);
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static char *print_config(const struct config *c)
{
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);
	ck_assert_ptr_nonnull(f);
	config_print(c, f);
	fclose(f);
	return s;
}

/* Load a one-line file "key = value" over c; returns the rc, no errors
 * expected when it succeeds. */
static int load_one(struct config *c, const char *key, const char *value)
{
	char *text;
	ck_assert_int_gt(asprintf(&text, "%s = %s\n", key, value), 0);
	struct loaded l;
	load_text(c, text, &l);
	int rc = l.rc;
	if (rc == 0)
		ck_assert_str_eq(l.errs, "");
	else
		ck_assert_int_eq(count_lines(l.errs), 1);
	loaded_free(&l);
	free(text);
	return rc;
}

/* ---- defaults ---- */

START_TEST(test_defaults)
{
	struct config c;
	config_defaults(&c);
	ck_assert_str_eq(c.socket_path, SHIP_DEFAULT_SOCKET);
	ck_assert_ptr_null(c.socket_group);
	ck_assert_uint_eq(c.socket_mode, 0660);
	ck_assert_int_eq(c.n_nats_urls, 1);
	ck_assert_str_eq(c.nats_urls[0], "nats://127.0.0.1:4222");
	ck_assert_ptr_null(c.nats_name);
	ck_assert_ptr_null(c.nats_user);
	ck_assert_ptr_null(c.nats_password_file);
	ck_assert_ptr_null(c.nats_token_file);
	ck_assert_ptr_null(c.nats_nkey);
	ck_assert_ptr_null(c.nats_nkey_seed_file);
	ck_assert_ptr_null(c.nats_creds_file);
	ck_assert(!c.nats_tls);
	ck_assert_ptr_null(c.nats_tls_ca);
	ck_assert_ptr_null(c.nats_tls_cert);
	ck_assert_ptr_null(c.nats_tls_key);
	ck_assert_uint_eq(c.nats_connect_timeout_ms, 2000);
	ck_assert_uint_eq(c.nats_reconnect_wait_min_ms, 100);
	ck_assert_uint_eq(c.nats_reconnect_wait_max_ms, 5000);
	ck_assert_uint_eq(c.nats_reconnect_buffer, 8u << 20);
	ck_assert_uint_eq(c.max_frame, 2u << 20);
	ck_assert_uint_eq(c.client_output_limit, 4u << 20);
	ck_assert_uint_eq(c.max_answer, 1u << 20);
	ck_assert_uint_eq(config_answer_limit(&c), 1u << 20);
	c.client_output_limit = 65536; /* the client must take it whole */
	ck_assert_uint_eq(config_answer_limit(&c), 65536);
	c.client_output_limit = 4u << 20;
	ck_assert_uint_eq(c.max_clients, 4096);
	ck_assert_uint_eq(c.max_clients_per_uid, 1024);
	ck_assert_uint_eq(c.max_subscriptions, 4096);
	ck_assert_uint_eq(c.max_requests, 4096);
	ck_assert_uint_eq(c.max_requests_total, 65536);
	ck_assert_uint_eq(c.client_memory_limit, 16u << 20);
	ck_assert_uint_eq(c.memory_limit, 256u << 20);
	ck_assert_uint_eq(c.request_timeout_ms, 5000);
	ck_assert_uint_eq(c.max_request_timeout_ms, 600000);
	ck_assert_uint_eq(c.inbound_limit, 16u << 20);
	ck_assert_int_eq(c.log_level, 0);
	char err[256] = "";
	ck_assert_int_eq(config_check(&c, err, sizeof(err)), 0);

	/* An empty file changes nothing. */
	char *before = print_config(&c);
	struct loaded l;
	load_text(&c, "", &l);
	ck_assert_int_eq(l.rc, 0);
	ck_assert_str_eq(l.errs, "");
	char *after = print_config(&c);
	ck_assert_str_eq(after, before);
	ck_assert_ptr_nonnull(strstr(before, "# nats_user = (unset)\n"));
	ck_assert_ptr_nonnull(strstr(before, "socket_mode = 0660\n"));
	loaded_free(&l);
	free(before);
	free(after);
	config_finish(&c);
	ck_assert_ptr_null(c.socket_path);
	ck_assert_int_eq(c.n_nats_urls, 0);
}
END_TEST

/* ---- syntax ---- */

START_TEST(test_syntax)
{
	struct config c;
	config_defaults(&c);
	struct loaded l;
	load_text(&c,
	          "# a comment\n"
	          "   # an indented comment\n"
	          "\t \n"
	          "\n"
	          "socket_mode=640\n"
	          "\tmax_clients\t=\t77\t\n"
	          "nats_name = \"robot 17\"\n"
	          "nats_token_file = /etc/ship/token # not a comment\n"
	          "nats_password_file = /etc/ship/pass word\n"
	          "nats_user = first\n"
	          "nats_user = second\n"
	          "socket_group = \"\n"
	          "nats_tls_ca = \"/etc/ship/ca.pem\"   \n"
	          "log_level = \"debug\"\n"
	          "nats_tls = on\r\n"
	          "max_requests = 33\r\n",
	          &l);
	ck_assert_msg(l.rc == 0, "errors:\n%s", l.errs);
	ck_assert_str_eq(l.errs, "");
	ck_assert_uint_eq(c.socket_mode, 0640);
	ck_assert_uint_eq(c.max_clients, 77);
	ck_assert_str_eq(c.nats_name, "robot 17");
	ck_assert_str_eq(c.nats_token_file, "/etc/ship/token # not a comment");
	ck_assert_str_eq(c.nats_password_file, "/etc/ship/pass word");
	ck_assert_str_eq(c.nats_user, "second");
	ck_assert_str_eq(c.socket_group, "\"");
	ck_assert_str_eq(c.nats_tls_ca, "/etc/ship/ca.pem");
	ck_assert_int_eq(c.log_level, 1);
	ck_assert(c.nats_tls);
	ck_assert_uint_eq(c.max_requests, 33);
	/* Untouched keys keep their defaults. */
	ck_assert_uint_eq(c.max_subscriptions, 4096);
	ck_assert_str_eq(c.socket_path, SHIP_DEFAULT_SOCKET);
	loaded_free(&l);
	config_finish(&c);
}
END_TEST

START_TEST(test_string_values)
{
	struct config c;
	config_defaults(&c);
	struct loaded l;
	load_text(&c,
	          "nats_name = kept\n"
	          "nats_name =\n"
	          "nats_name = \"\"\n"
	          "socket = \"/run/a b/shipd.sock\"\n"
	          "nats_creds_file = \"\"\"\n",
	          &l);
	ck_assert_int_eq(l.rc, -1);
	assert_line_error(&l, 2, "nats_name: empty value");
	assert_line_error(&l, 3, "nats_name: empty value");
	ck_assert_int_eq(count_lines(l.errs), 2);
	ck_assert_str_eq(c.nats_name, "kept");
	ck_assert_str_eq(c.socket_path, "/run/a b/shipd.sock");
	/* Only one pair of quotes is taken off; no escapes. */
	ck_assert_str_eq(c.nats_creds_file, "\"");
	loaded_free(&l);
	config_finish(&c);
}
END_TEST

START_TEST(test_bool_values)
{
	static const char *const yes[] = {"yes", "true", "on"};
	static const char *const no[] = {"no", "false", "off"};
	struct config c;
	config_defaults(&c);
	for (size_t i = 0; i < 3; i++) {
		c.nats_tls = false;
		ck_assert_int_eq(load_one(&c, "nats_tls", yes[i]), 0);
		ck_assert_msg(c.nats_tls, "%s", yes[i]);
		ck_assert_int_eq(load_one(&c, "nats_tls", no[i]), 0);
		ck_assert_msg(!c.nats_tls, "%s", no[i]);
	}
	struct loaded l;
	c.nats_tls = true;
	load_text(&c,
	          "nats_tls = maybe\n"
	          "nats_tls = YES\n"
	          "nats_tls = 1\n"
	          "nats_tls =\n",
	          &l);
	ck_assert_int_eq(l.rc, -1);
	assert_line_error(&l, 1, "nats_tls: 'maybe' is not yes or no");
	assert_line_error(&l, 2, "nats_tls: 'YES' is not yes or no");
	assert_line_error(&l, 3, "nats_tls: '1' is not yes or no");
	assert_line_error(&l, 4, "nats_tls: '' is not yes or no");
	ck_assert_int_eq(count_lines(l.errs), 4);
	ck_assert(c.nats_tls);
	loaded_free(&l);
	config_finish(&c);
}
END_TEST

START_TEST(test_uint_values)
{
	struct config c;
	config_defaults(&c);
	struct loaded l;
	load_text(&c,
	          "max_clients = 1\n"
	          "max_clients_per_uid = 1000000\n"
	          "max_subscriptions = 2k\n"
	          "max_requests = 3K\n"
	          "inbound_limit = 1M\n"
	          "client_output_limit = 64k\n"
	          "max_frame = 16777219\n"
	          "nats_reconnect_buffer = 0\n"
	          "nats_connect_timeout_ms = 600000\n"
	          "request_timeout_ms = 010\n",
	          &l);
	ck_assert_msg(l.rc == 0, "errors:\n%s", l.errs);
	ck_assert_uint_eq(c.max_clients, 1);
	ck_assert_uint_eq(c.max_clients_per_uid, 1000000);
	ck_assert_uint_eq(c.max_subscriptions, 2048);
	ck_assert_uint_eq(c.max_requests, 3072);
	ck_assert_uint_eq(c.inbound_limit, 1048576);
	ck_assert_uint_eq(c.client_output_limit, 65536);
	ck_assert_uint_eq(c.max_frame, IPC_FRAME_LIMIT + IPC_HDR_LEN);
	ck_assert_uint_eq(c.nats_reconnect_buffer, 0);
	ck_assert_uint_eq(c.nats_connect_timeout_ms, 600000);
	/* Decimal, even with a leading zero. */
	ck_assert_uint_eq(c.request_timeout_ms, 10);
	loaded_free(&l);
	config_finish(&c);
}
END_TEST

START_TEST(test_uint_errors)
{
	struct config c;
	config_defaults(&c);
	struct loaded l;
	load_text(&c,
	          "max_clients = 0\n"
	          "max_clients = 1000001\n"
	          "max_frame = 4095\n"
	          "max_frame = 17M\n"
	          "inbound_limit = 4294967296\n"
	          "inbound_limit = 4194304k\n"
	          "max_requests = abc\n"
	          "max_requests = -1\n"
	          "max_requests = 12x\n"
	          "max_requests = 1.5\n"
	          "max_requests = 1 k\n"
	          "max_requests = 0x10\n"
	          "max_requests = 1m\n"
	          "max_requests = +5\n"
	          "max_requests =\n"
	          "max_requests = 99999999999999999999999\n",
	          &l);
	ck_assert_int_eq(l.rc, -1);
	assert_line_error(&l, 1, "max_clients: 0 is out of range 1..1000000");
	assert_line_error(&l, 2,
	                  "max_clients: 1000001 is out of range 1..1000000");
	assert_line_error(&l, 3, "max_frame: 4095 is out of range 4096..16777219");
	assert_line_error(&l, 4, "max_frame: 17M is out of range 4096..16777219");
	assert_line_error(&l, 5, "inbound_limit: 4294967296 is out of range "
	                         "65536..1073741824");
	assert_line_error(&l, 6, "inbound_limit: 4194304k is out of range "
	                         "65536..1073741824");
	assert_line_error(&l, 7, "max_requests: 'abc' is not a number");
	assert_line_error(&l, 8, "max_requests: '-1' is not a number");
	assert_line_error(&l, 9, "max_requests: '12x' is not a number");
	assert_line_error(&l, 10, "max_requests: '1.5' is not a number");
	assert_line_error(&l, 11, "max_requests: '1 k' is not a number");
	assert_line_error(&l, 12, "max_requests: '0x10' is not a number");
	assert_line_error(&l, 13, "max_requests: '1m' is not a number");
	assert_line_error(&l, 14, "max_requests: '+5' is not a number");
	assert_line_error(&l, 15, "max_requests: '' is not a number");
	/* Too large for any integer: refused, whatever the wording. */
	char *want;
	ck_assert_int_gt(asprintf(&want, "%s:16: max_requests: ", l.path), 0);
	ck_assert_ptr_nonnull(strstr(l.errs, want));
	free(want);
	ck_assert_int_eq(count_lines(l.errs), 16);
	/* Nothing was taken. */
	ck_assert_uint_eq(c.max_clients, 4096);
	ck_assert_uint_eq(c.max_frame, 2u << 20);
	ck_assert_uint_eq(c.inbound_limit, 16u << 20);
	ck_assert_uint_eq(c.max_requests, 4096);
	loaded_free(&l);
	config_finish(&c);
}
END_TEST

START_TEST(test_mode_values)
{
	static const struct {
		const char *v;
		unsigned mode;
	} good[] = {{"0640", 0640}, {"750", 0750}, {"0", 0}, {"0777", 0777},
	            {"00600", 0600}};
	struct config c;
	config_defaults(&c);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		c.socket_mode = 01234;
		ck_assert_int_eq(load_one(&c, "socket_mode", good[i].v), 0);
		ck_assert_uint_eq(c.socket_mode, good[i].mode);
	}
	c.socket_mode = 0640;
	struct loaded l;
	load_text(&c,
	          "socket_mode = 0778\n"
	          "socket_mode = 1000\n"
	          "socket_mode = abc\n"
	          "socket_mode = -1\n"
	          "socket_mode =\n"
	          "socket_mode = 0x1ff\n"
	          "socket_mode = 06 40\n",
	          &l);
	ck_assert_int_eq(l.rc, -1);
	assert_line_error(&l, 1, "socket_mode: '0778' is not an octal mode");
	assert_line_error(&l, 2, "socket_mode: '1000' is not an octal mode");
	assert_line_error(&l, 3, "socket_mode: 'abc' is not an octal mode");
	assert_line_error(&l, 4, "socket_mode: '-1' is not an octal mode");
	assert_line_error(&l, 5, "socket_mode: '' is not an octal mode");
	assert_line_error(&l, 6, "socket_mode: '0x1ff' is not an octal mode");
	assert_line_error(&l, 7, "socket_mode: '06 40' is not an octal mode");
	ck_assert_int_eq(count_lines(l.errs), 7);
	ck_assert_uint_eq(c.socket_mode, 0640);
	loaded_free(&l);
	config_finish(&c);
}
END_TEST

static void assert_round_trip(const struct config *c, const char *must);

START_TEST(test_url_values)
{
	struct config c;
	config_defaults(&c);
	ck_assert_int_eq(
		load_one(&c, "nats",
	                 "nats://a:4222, nats://b:4222\t nats://c:4222"),
		0);
	ck_assert_int_eq(c.n_nats_urls, 3);
	ck_assert_str_eq(c.nats_urls[0], "nats://a:4222");
	ck_assert_str_eq(c.nats_urls[1], "nats://b:4222");
	ck_assert_str_eq(c.nats_urls[2], "nats://c:4222");
	ck_assert_int_eq(load_one(&c, "nats", "tls://x:4443,,host:4222,"), 0);
	ck_assert_int_eq(c.n_nats_urls, 2);
	ck_assert_str_eq(c.nats_urls[0], "tls://x:4443");
	ck_assert_str_eq(c.nats_urls[1], "host:4222");
	/* Any blank separates, as the line parser trims any: a URL never
	 * ends in a vertical tab that printing would then lose. */
	ck_assert_int_eq(load_one(&c, "nats", "h:1\v\v,\fh:2\rh:3"), 0);
	ck_assert_int_eq(c.n_nats_urls, 3);
	ck_assert_str_eq(c.nats_urls[0], "h:1");
	ck_assert_str_eq(c.nats_urls[1], "h:2");
	ck_assert_str_eq(c.nats_urls[2], "h:3");
	assert_round_trip(&c, "nats = h:1,h:2,h:3\n");
	ck_assert_int_eq(load_one(&c, "nats", "tls://x:4443,,host:4222,"), 0);

	struct loaded l;
	load_text(&c,
	          "nats = nats://ok:1, localhost\n"
	          "nats = ,\n"
	          "nats =\n",
	          &l);
	ck_assert_int_eq(l.rc, -1);
	assert_line_error(&l, 1,
	                  "nats: 'localhost' is not a URL (nats://host:port)");
	assert_line_error(&l, 2, "nats: no URL given");
	assert_line_error(&l, 3, "nats: no URL given");
	ck_assert_int_eq(count_lines(l.errs), 3);
	/* A refused list leaves the previous one in place. */
	ck_assert_int_eq(c.n_nats_urls, 2);
	ck_assert_str_eq(c.nats_urls[0], "tls://x:4443");
	loaded_free(&l);

	/* At most CONFIG_MAX_URLS. */
	char list[64 * (CONFIG_MAX_URLS + 1)] = "";
	for (int i = 0; i < CONFIG_MAX_URLS; i++) {
		char one[64];
		snprintf(one, sizeof(one), "%snats://h%d:4222", i ? "," : "", i);
		strcat(list, one);
	}
	char err[256] = "";
	ck_assert_int_eq(config_set(&c, "nats", list, err, sizeof(err)), 0);
	ck_assert_int_eq(c.n_nats_urls, CONFIG_MAX_URLS);
	ck_assert_str_eq(c.nats_urls[CONFIG_MAX_URLS - 1], "nats://h15:4222");
	strcat(list, ",nats://one-more:4222");
	ck_assert_int_eq(config_set(&c, "nats", list, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "nats: more than 16 URLs");
	ck_assert_int_eq(c.n_nats_urls, CONFIG_MAX_URLS);
	config_finish(&c);
}
END_TEST

START_TEST(test_domain_values)
{
	struct config c;
	config_defaults(&c);
	/* The defaults: the fleet's registry, configuration and jobs on the
	 * hub, the rest on the robot. */
	ck_assert_int_eq(c.jobs_domain, JS_HUB);
	ck_assert_int_eq(c.events_domain, JS_LOCAL);
	ck_assert_int_eq(c.kv_domain, JS_LOCAL);
	ck_assert(config_listed(c.hub_buckets, "beings_status"));
	ck_assert(config_listed(c.hub_buckets, "ship_health"));
	ck_assert(!config_listed(c.hub_buckets, "ship"));
	ck_assert(!config_listed(c.hub_buckets, "beings_status2"));
	ck_assert_ptr_null(c.hub_domain);
	ck_assert_int_eq(load_one(&c, "events_domain", "hub"), 0);
	ck_assert_int_eq(c.events_domain, JS_HUB);
	ck_assert_int_eq(load_one(&c, "jobs_domain", "local"), 0);
	ck_assert_int_eq(c.jobs_domain, JS_LOCAL);
	ck_assert_int_eq(load_one(&c, "hub_buckets", "x ,\ty"), 0);
	ck_assert(config_listed(c.hub_buckets, "x"));
	ck_assert(config_listed(c.hub_buckets, "y"));
	ck_assert(!config_listed(c.hub_buckets, "beings_status"));
	struct loaded l;
	load_text(&c, "kv_domain = remote\nchannels_domain = HUB\n", &l);
	ck_assert_int_eq(l.rc, -1);
	assert_line_error(&l, 1, "kv_domain: 'remote' is not local or hub");
	assert_line_error(&l, 2, "channels_domain: 'HUB' is not local or hub");
	ck_assert_int_eq(c.kv_domain, JS_LOCAL);
	loaded_free(&l);
	assert_round_trip(&c, "events_domain = hub\n");
	config_finish(&c);
}
END_TEST

START_TEST(test_uplink_priority)
{
	const char *list = "CHANNELS:1, SHIP_EVENTS:2\tCHAN:3,TELEMETRY:9";
	ck_assert_int_eq(config_priority(list, "CHANNELS"), 1);
	ck_assert_int_eq(config_priority(list, "SHIP_EVENTS"), 2);
	ck_assert_int_eq(config_priority(list, "CHAN"), 3);
	ck_assert_int_eq(config_priority(list, "TELEMETRY"), 9);
	ck_assert_int_eq(config_priority(list, "CHANNEL"), CONFIG_PRIORITY_OTHER);
	ck_assert_int_eq(config_priority(list, "1"), CONFIG_PRIORITY_OTHER);
	ck_assert_int_eq(config_priority(NULL, "CHANNELS"),
	                 CONFIG_PRIORITY_OTHER);
	ck_assert_int_eq(config_priority("A:12", "A"), CONFIG_PRIORITY_OTHER);
	struct config c;
	char err[256];
	config_defaults(&c);
	ck_assert_ptr_null(c.uplink_priority);
	ck_assert_uint_eq(c.uplink_rate_limit, 0);
	static const char *const bad[] = {"A", "A:", "A:0", "A:10", ":1",
	                                  "A:1,B", "A.B:1", "A:1:2", "A:x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(load_one(&c, "uplink_priority", bad[i]) == -1,
		              "%s", bad[i]);
	}
	ck_assert_int_eq(load_one(&c, "uplink_priority", list), 0);
	ck_assert_int_eq(config_check(&c, err, sizeof(err)), 0);
	ck_assert_int_eq(load_one(&c, "uplink_rate_limit", "4294967295"), 0);
	ck_assert_uint_eq(c.uplink_rate_limit, 4294967295u);
	config_finish(&c);
}
END_TEST

START_TEST(test_log_level_values)
{
	struct config c;
	config_defaults(&c);
	ck_assert_int_eq(load_one(&c, "log_level", "debug"), 0);
	ck_assert_int_eq(c.log_level, 1);
	ck_assert_int_eq(load_one(&c, "log_level", "info"), 0);
	ck_assert_int_eq(c.log_level, 0);
	struct loaded l;
	load_text(&c, "log_level = trace\nlog_level = DEBUG\n", &l);
	ck_assert_int_eq(l.rc, -1);
	assert_line_error(&l, 1, "log_level: 'trace' is not info or debug");
	assert_line_error(&l, 2, "log_level: 'DEBUG' is not info or debug");
	ck_assert_int_eq(c.log_level, 0);
	loaded_free(&l);
	config_finish(&c);
}
END_TEST

/* ---- errors ---- */

/* Every bad line is reported, in order, with its number; nothing else. */
START_TEST(test_error_lines)
{
	struct config c;
	config_defaults(&c);
	struct loaded l;
	load_text(&c,
	          "# header\n"
	          "nats_name = fine\n"
	          "bogus = 1\n"
	          "this line has no equals sign\n"
	          "\n"
	          "nats_tls = maybe\n"
	          "= orphan\n"
	          "request_timeout_ms = 700000\n",
	          &l);
	ck_assert_int_eq(l.rc, -1);
	char *want;
	ck_assert_int_gt(asprintf(&want,
	                          "%s:3: unknown key 'bogus'\n"
	                          "%s:4: expected 'key = value'\n"
	                          "%s:6: nats_tls: 'maybe' is not yes or no\n"
	                          "%s:7: unknown key ''\n",
	                          l.path, l.path, l.path, l.path),
	                 0);
	/* No cross-key message (line 8 would give one) after line errors. */
	ck_assert_str_eq(l.errs, want);
	free(want);
	ck_assert_str_eq(c.nats_name, "fine");
	loaded_free(&l);
	config_finish(&c);
}
END_TEST

/* Lines up to 4094 characters; a longer one is an error, and the lines
 * after it keep their numbers. */
START_TEST(test_long_lines)
{
	enum { MAXLINE = 4094 };
	size_t cap = 3 * MAXLINE + 20000;
	char *text = malloc(cap);
	ck_assert_ptr_nonnull(text);
	size_t n = 0;
	n += (size_t)sprintf(text + n, "nats_name = ");
	memset(text + n, 'x', MAXLINE - 12);
	n += MAXLINE - 12;
	text[n++] = '\n';
	n += (size_t)sprintf(text + n, "nats_user = ");
	memset(text + n, 'y', MAXLINE + 1 - 12);
	n += MAXLINE + 1 - 12;
	text[n++] = '\n';
	n += (size_t)sprintf(text + n, "bogus = 1\n");
	memset(text + n, 'z', 10000);
	n += 10000;
	text[n++] = '\n';
	n += (size_t)sprintf(text + n, "nats_tls = maybe\n");
	ck_assert_uint_lt(n, cap);
	text[n] = '\0';

	struct config c;
	config_defaults(&c);
	struct loaded l;
	load_text(&c, text, &l);
	ck_assert_int_eq(l.rc, -1);
	assert_line_error(&l, 2, "line too long");
	assert_line_error(&l, 3, "unknown key 'bogus'");
	assert_line_error(&l, 4, "line too long");
	assert_line_error(&l, 5, "nats_tls: 'maybe' is not yes or no");
	ck_assert_int_eq(count_lines(l.errs), 4);
	ck_assert_ptr_nonnull(c.nats_name);
	ck_assert_uint_eq(strlen(c.nats_name), MAXLINE - 12);
	ck_assert_ptr_null(c.nats_user);
	loaded_free(&l);

	/* The longest line also works as the last one, without a newline. */
	char *end = strchr(text, '\n');
	char *path = write_temp_len(text, (size_t)(end - text));
	char *errs;
	free(c.nats_name);
	c.nats_name = NULL;
	ck_assert_int_eq(load_capture(&c, path, &errs), 0);
	ck_assert_str_eq(errs, "");
	ck_assert_uint_eq(strlen(c.nats_name), MAXLINE - 12);
	unlink(path);
	free(path);
	free(errs);
	free(text);
	config_finish(&c);
}
END_TEST

START_TEST(test_missing_file)
{
	char tmpl[] = "/tmp/shipd-unit-gone-XXXXXX";
	int fd = mkstemp(tmpl);
	ck_assert_int_ge(fd, 0);
	close(fd);
	unlink(tmpl);
	struct config c;
	config_defaults(&c);
	char *errs;
	ck_assert_int_eq(load_capture(&c, tmpl, &errs), -1);
	char *want;
	ck_assert_int_gt(asprintf(&want, "%s: %s\n", tmpl, strerror(ENOENT)),
	                 0);
	ck_assert_str_eq(errs, want);
	free(want);
	free(errs);
	config_finish(&c);
}
END_TEST

/* ---- checks between keys ---- */

/* Apply key = value pairs (NULL-terminated) to fresh defaults, then
 * config_check: returns its message, or "" when it passes. */
static void check_pairs(const char *const *kv, char *err, size_t errlen)
{
	struct config c;
	config_defaults(&c);
	for (; kv[0]; kv += 2) {
		char e[256];
		ck_assert_msg(config_set(&c, kv[0], kv[1], e, sizeof(e)) == 0,
		              "%s", e);
	}
	err[0] = '\0';
	int rc = config_check(&c, err, errlen);
	ck_assert_int_eq(rc, err[0] ? -1 : 0);
	config_finish(&c);
}

START_TEST(test_check_cross_keys)
{
	static const struct {
		const char *kv[7];
		const char *err;
	} cases[] = {
		{{"nats_reconnect_wait_min_ms", "6000", NULL},
		 "nats_reconnect_wait_min_ms is above nats_reconnect_wait_max_ms"},
		{{"nats_reconnect_wait_min_ms", "5000", NULL}, ""},
		{{"nats_reconnect_wait_max_ms", "50", NULL},
		 "nats_reconnect_wait_min_ms is above nats_reconnect_wait_max_ms"},
		{{"request_timeout_ms", "600001", NULL},
		 "request_timeout_ms is above max_request_timeout_ms"},
		{{"request_timeout_ms", "600000", NULL}, ""},
		{{"max_request_timeout_ms", "4999", NULL},
		 "request_timeout_ms is above max_request_timeout_ms"},
		{{"nats_nkey", "UABC", NULL},
		 "nats_nkey and nats_nkey_seed_file go together"},
		{{"nats_nkey_seed_file", "/etc/seed", NULL},
		 "nats_nkey and nats_nkey_seed_file go together"},
		{{"nats_nkey", "UABC", "nats_nkey_seed_file", "/etc/seed", NULL},
		 ""},
		{{"nats_tls_cert", "/c.pem", NULL},
		 "nats_tls_cert and nats_tls_key go together"},
		{{"nats_tls_key", "/k.pem", NULL},
		 "nats_tls_cert and nats_tls_key go together"},
		{{"nats_tls_cert", "/c.pem", "nats_tls_key", "/k.pem", NULL}, ""},
		{{"nats_creds_file", "/x.creds", "nats_nkey", "UABC",
		  "nats_nkey_seed_file", "/etc/seed", NULL},
		 "nats_creds_file and nats_nkey exclude each other"},
		{{"nats_creds_file", "/x.creds", NULL}, ""},
		{{"socket", "run/shipd.sock", NULL},
		 "socket: 'run/shipd.sock' is not an absolute path"},
		{{"socket", "/tmp/s", NULL}, ""},
		{{"hub_domain", "hub-1_a", NULL}, ""},
		{{"hub_domain", "hub.a", NULL},
		 "hub_domain: 'hub.a' is not a JetStream domain (letters, digits, "
		 "'-' and '_', at most 64)"},
		{{"hub_buckets", "a, b_1 ,c-2", NULL}, ""},
		{{"hub_buckets", "a,b.c", NULL},
		 "hub_buckets: 'b.c' is not a bucket name"},
		{{"hub_streams", "A,B>", NULL},
		 "hub_streams: 'B>' is not a stream name"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256];
		check_pairs(cases[i].kv, err, sizeof(err));
		ck_assert_msg(strcmp(err, cases[i].err) == 0,
		              "case %zu: got '%s', want '%s'", i, err,
		              cases[i].err);
	}
}
END_TEST

/* config_load runs the checks after the whole file, and reports the
 * first problem as "file: message". */
START_TEST(test_check_in_load)
{
	struct config c;
	config_defaults(&c);
	struct loaded l;
	load_text(&c,
	          "request_timeout_ms = 700000\n"
	          "max_request_timeout_ms = 800000\n",
	          &l);
	ck_assert_msg(l.rc == 0, "errors:\n%s", l.errs);
	ck_assert_uint_eq(c.request_timeout_ms, 700000);
	loaded_free(&l);

	load_text(&c,
	          "max_request_timeout_ms = 1000\n"
	          "socket = relative.sock\n",
	          &l);
	ck_assert_int_eq(l.rc, -1);
	char *want;
	ck_assert_int_gt(asprintf(&want,
	                          "%s: request_timeout_ms is above "
	                          "max_request_timeout_ms\n",
	                          l.path),
	                 0);
	ck_assert_str_eq(l.errs, want);
	free(want);
	loaded_free(&l);
	config_finish(&c);
}
END_TEST

/* ---- printing ---- */

/* Print, load what was printed over fresh defaults, print again. */
static void assert_round_trip(const struct config *c, const char *must)
{
	char *p1 = print_config(c);
	if (must)
		ck_assert_msg(strstr(p1, must), "'%s' not in:\n%s", must, p1);
	struct config d;
	config_defaults(&d);
	struct loaded l;
	load_text(&d, p1, &l);
	ck_assert_msg(l.rc == 0, "printed config refused:\n%s\n%s", l.errs, p1);
	ck_assert_str_eq(l.errs, "");
	char *p2 = print_config(&d);
	ck_assert_str_eq(p2, p1);
	loaded_free(&l);
	free(p1);
	free(p2);
	config_finish(&d);
}

START_TEST(test_streams)
{
	struct config c;
	config_defaults(&c);
	struct loaded l;
	load_text(&c, "stream = TELEMETRY robot.t.>,robot.u.> max_age=60 "
	              "max_msgs=10 storage=memory\n"
	              "stream = AUDIT audit.>\n", &l);
	ck_assert_msg(l.rc == 0, "errors:\n%s", l.errs);
	loaded_free(&l);
	ck_assert_int_eq(c.n_streams, 2);
	ck_assert_str_eq(c.streams[0].name, "TELEMETRY");
	ck_assert_str_eq(c.streams[0].subjects, "robot.t.>,robot.u.>");
	ck_assert_uint_eq(c.streams[0].max_age_s, 60);
	ck_assert_int_eq(c.streams[0].max_msgs, 10);
	ck_assert(c.streams[0].memory);
	ck_assert_uint_eq(c.streams[1].replicas, 1);
	ck_assert(!c.streams[1].memory);
	assert_round_trip(&c, "stream = AUDIT audit.> max_age=0 max_msgs=0 "
	                      "max_bytes=0 storage=file replicas=1\n");
	config_finish(&c);

	config_defaults(&c);
	load_text(&c, "stream = a.b x.>\n"
	              "stream = X\n"
	              "stream = X x.> storage=tape\n"
	              "stream = X x.> replicas=9\n", &l);
	ck_assert_int_eq(l.rc, -1);
	assert_line_error(&l, 1, "stream: expected NAME SUBJECT[,SUBJECT...] (a name without dots or wildcards)");
	assert_line_error(&l, 2, "stream: expected NAME SUBJECT[,SUBJECT...] (a name without dots or wildcards)");
	assert_line_error(&l, 3, "stream X: bad storage=tape");
	assert_line_error(&l, 4, "stream X: bad replicas=9");
	loaded_free(&l);
	ck_assert_int_eq(c.n_streams, 0);
	config_finish(&c);
}
END_TEST

/* "allow" rules keep their order, file and line; errors name the line. */
START_TEST(test_allow)
{
	struct config c;
	config_defaults(&c);
	struct loaded l;
	load_text(&c, "# rules\n"
	              "allow = unit:driver.service publish robot.drive.>\n"
	              "allow = group:ship pubsub, kv  *\n", &l);
	ck_assert_msg(l.rc == 0, "errors:\n%s", l.errs);
	ck_assert(policy_enforced(c.policy));
	char err[256];
	ck_assert_int_eq(config_set(&c, "allow", "uid:7 admin clients", err,
	                            sizeof(err)),
	                 0);
	size_t n;
	char **rules = policy_rules(c.policy, &n);
	ck_assert_uint_eq(n, 3);
	char *want;
	ck_assert_int_gt(asprintf(&want, "%s:2: allow = unit:driver.service "
	                                 "publish robot.drive.>",
	                          l.path),
	                 0);
	ck_assert_str_eq(rules[0], want);
	free(want);
	ck_assert_str_eq(rules[2], "-o: allow = uid:7 admin clients");
	for (size_t i = 0; i < n; i++)
		free(rules[i]);
	free(rules);
	loaded_free(&l);
	assert_round_trip(&c, "allow = unit:driver.service publish "
	                      "robot.drive.>\n"
	                      "allow = group:ship pubsub,kv *\n"
	                      "allow = uid:7 admin clients\n");
	ck_assert_int_eq(config_set(&c, "allow", "* frob x", err, sizeof(err)),
	                 -1);
	ck_assert_str_eq(err, "allow: unknown operation 'frob' (publish, "
	                      "subscribe, request, emit, consume, channel, "
	                      "kv-read, kv-write, kv-admin, stream-admin, being, "
	                      "obj-read, obj-write, obj-admin, jobs-submit, "
	                      "jobs-claim, jobs-admin, service, admin, pubsub, "
	                      "kv, jobs or *)");
	config_finish(&c);

	config_defaults(&c);
	load_text(&c, "allow = * publish a.b\n"
	              "allow = nobody publish a\n"
	              "allow = * publish\n", &l);
	ck_assert_int_eq(l.rc, -1);
	assert_line_error(&l, 2, "allow: 'nobody' is not *, user:NAME, uid:N, "
	                         "group:NAME, gid:N or unit:NAME");
	assert_line_error(&l, 3, "allow: expected WHO OP[,OP...] "
	                         "RESOURCE[,RESOURCE...]");
	ck_assert_int_eq(count_lines(l.errs), 2);
	loaded_free(&l);
	config_finish(&c);
}
END_TEST

/* "quota" lines: kept with the rules, listed after them, errors with
 * their line; they alone do not turn deny by default on. */
START_TEST(test_quota)
{
	struct config c;
	config_defaults(&c);
	struct loaded l;
	load_text(&c, "quota = unit:planner.service connections=4 "
	              "subscriptions=256\n"
	              "allow = * * >\n"
	              "quota = *   requests=64  bytes=4M\n", &l);
	ck_assert_msg(l.rc == 0, "errors:\n%s", l.errs);
	size_t n;
	char **rules = policy_rules(c.policy, &n);
	ck_assert_uint_eq(n, 3);
	ck_assert_ptr_nonnull(strstr(rules[0], ":2: allow = * * >"));
	char *want;
	ck_assert_int_gt(asprintf(&want, "%s:1: quota = unit:planner.service "
	                                 "connections=4 subscriptions=256",
	                          l.path),
	                 0);
	ck_assert_str_eq(rules[1], want);
	free(want);
	ck_assert_ptr_nonnull(strstr(rules[2], ":3: quota = * requests=64 "
	                                       "bytes=4M"));
	for (size_t i = 0; i < n; i++)
		free(rules[i]);
	free(rules);
	loaded_free(&l);
	assert_round_trip(&c, "allow = * * >\n"
	                      "quota = unit:planner.service connections=4 "
	                      "subscriptions=256\n"
	                      "quota = * requests=64 bytes=4M\n");
	config_finish(&c);

	config_defaults(&c);
	char err[256];
	ck_assert_int_eq(config_set(&c, "quota", "uid:7 requests=8", err,
	                            sizeof(err)),
	                 0);
	ck_assert(!policy_enforced(c.policy));
	ck_assert_uint_eq(policy_quota_count(c.policy), 1);
	ck_assert_int_eq(config_set(&c, "quota", "uid:7 frobs=8", err,
	                            sizeof(err)),
	                 -1);
	ck_assert_str_eq(err, "quota: unknown key 'frobs' (connections, "
	                      "subscriptions, requests or bytes)");
	config_finish(&c);

	config_defaults(&c);
	load_text(&c, "quota = * requests=1\n"
	              "quota = nobody requests=1\n"
	              "quota = uid:1000\n"
	              "quota = * connections=0\n", &l);
	ck_assert_int_eq(l.rc, -1);
	assert_line_error(&l, 2, "quota: 'nobody' is not *, user:NAME, uid:N, "
	                         "group:NAME, gid:N or unit:NAME");
	assert_line_error(&l, 3, "quota: expected WHO KEY=VALUE [KEY=VALUE...] "
	                         "(keys: connections, subscriptions, requests, "
	                         "bytes)");
	assert_line_error(&l, 4, "quota: connections: 0 is out of range "
	                         "1..1000000");
	ck_assert_int_eq(count_lines(l.errs), 3);
	loaded_free(&l);
	config_finish(&c);
}
END_TEST

START_TEST(test_print_round_trip)
{
	struct config c;
	config_defaults(&c);
	assert_round_trip(&c, "nats = nats://127.0.0.1:4222\n");

	struct loaded l;
	load_text(&c,
	          "socket = /tmp/ship test/shipd.sock\n"
	          "socket_group = ship\n"
	          "socket_mode = 0600\n"
	          "nats = nats://a:4222, tls://b:4443 c:4222\n"
	          "nats_name = robot 17\n"
	          "nats_user = \"user\"\n"
	          "nats_password_file = /etc/ship/password\n"
	          "nats_token_file = /etc/ship/token # hash\n"
	          "nats_nkey = UABC\n"
	          "nats_nkey_seed_file = /etc/ship/seed\n"
	          "nats_tls = yes\n"
	          "nats_tls_ca = /etc/ship/ca.pem\n"
	          "nats_tls_cert = /etc/ship/cert.pem\n"
	          "nats_tls_key = /etc/ship/key.pem\n"
	          "nats_connect_timeout_ms = 1500\n"
	          "nats_reconnect_wait_min_ms = 50\n"
	          "nats_reconnect_wait_max_ms = 9000\n"
	          "nats_reconnect_buffer = 16M\n"
	          "max_frame = 64k\n"
	          "client_output_limit = 2M\n"
	          "max_clients = 10\n"
	          "max_clients_per_uid = 5\n"
	          "max_subscriptions = 100\n"
	          "max_requests = 200\n"
	          "request_timeout_ms = 1000\n"
	          "max_request_timeout_ms = 2000\n"
	          "inbound_limit = 1M\n"
	          "log_level = debug\n",
	          &l);
	ck_assert_msg(l.rc == 0, "errors:\n%s", l.errs);
	loaded_free(&l);
	char *p = print_config(&c);
	static const char *const lines[] = {
		"socket = /tmp/ship test/shipd.sock\n",
		"socket_mode = 0600\n",
		"nats = nats://a:4222,tls://b:4443,c:4222\n",
		"nats_user = user\n",
		"nats_tls = yes\n",
		"max_frame = 65536\n",
		"nats_reconnect_buffer = 16777216\n",
		"# nats_creds_file = (unset)\n",
		"log_level = debug\n",
	};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		ck_assert_msg(strstr(p, lines[i]), "'%s' not in:\n%s", lines[i],
		              p);
	/* One line per key, in the documented order. */
	static const char tail[] =
		"\nlog_level = debug\n# hub_domain = (unset)\n"
		"events_domain = local\nchannels_domain = local\n"
		"kv_domain = local\n"
		"hub_buckets = beings_status,ship_config,ship_health\n"
		"jobs_domain = hub\n"
		"hub_streams = FLEET_EVENTS,FLEET_CHANNELS\n"
		"uplink_probe_ms = 2000\n# uplink_priority = (unset)\n"
		"uplink_rate_limit = 0\n# metrics_listen = (unset)\n"
		"# metrics_socket = (unset)\nmetrics_allow_remote = no\n"
		"metrics_max_connections = 16\nmetrics_timeout_ms = 5000\n"
		"metrics_max_apps = 64\n# stream = (none)\n# allow = (none)\n"
		"# quota = (none)\n";
	ck_assert_int_eq(count_lines(p), 54);
	ck_assert_ptr_eq(strstr(p, "socket = "), p);
	ck_assert_uint_gt(strlen(p), strlen(tail));
	ck_assert_str_eq(p + strlen(p) - strlen(tail), tail);
	free(p);
	assert_round_trip(&c, NULL);

	/* The other values of each type. */
	char err[256];
	ck_assert_int_eq(config_set(&c, "socket_mode", "0", err, sizeof(err)),
	                 0);
	ck_assert_int_eq(config_set(&c, "nats_tls", "off", err, sizeof(err)), 0);
	ck_assert_int_eq(config_set(&c, "log_level", "info", err, sizeof(err)),
	                 0);
	ck_assert_int_eq(config_set(&c, "nats", "host:1", err, sizeof(err)), 0);
	assert_round_trip(&c, "socket_mode = 0000\n");
	config_finish(&c);
}
END_TEST

START_TEST(test_print_quotes)
{
	struct config c;
	config_defaults(&c);
	struct loaded l;
	load_text(&c, "nats_name = \"  padded  \"\n"
	              "nats_user = \"\"quoted\"\"\n"
	              "nats_tls_ca = \"\tca\"\n"
	              "socket_group = \"\n"
	              "nats_token_file = /a \"b\" c\n", &l);
	ck_assert_msg(l.rc == 0, "errors:\n%s", l.errs);
	loaded_free(&l);
	ck_assert_str_eq(c.nats_name, "  padded  ");
	ck_assert_str_eq(c.nats_user, "\"quoted\"");
	assert_round_trip(&c, "nats_name = \"  padded  \"\n");
	char *p = print_config(&c);
	ck_assert_ptr_nonnull(strstr(p, "\nsocket_group = \"\n"));
	ck_assert_ptr_nonnull(strstr(p, "\nnats_token_file = /a \"b\" c\n"));
	free(p);
	config_finish(&c);
}
END_TEST


/* ---- applying a reload ---- */

static void record(const char *key, bool applied, void *arg)
{
	FILE *f = arg;
	fprintf(f, "%s:%s\n", key, applied ? "applied" : "restart");
}

START_TEST(test_apply)
{
	struct config cur, next;
	config_defaults(&cur);
	config_defaults(&next);
	char err[256];
	ck_assert_int_eq(config_set(&next, "max_clients", "10", err,
	                            sizeof(err)),
	                 0);
	ck_assert_int_eq(config_set(&next, "log_level", "debug", err,
	                            sizeof(err)),
	                 0);
	ck_assert_int_eq(config_set(&next, "nats_name", "n", err, sizeof(err)),
	                 0);
	ck_assert_int_eq(config_set(&next, "socket_mode", "0600", err,
	                            sizeof(err)),
	                 0);
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);
	ck_assert_ptr_nonnull(f);
	config_apply(&cur, &next, record, f);
	fclose(f);
	ck_assert_str_eq(s, "socket_mode:restart\n"
	                    "nats_name:restart\n"
	                    "max_clients:applied\n"
	                    "log_level:applied\n");
	ck_assert_uint_eq(cur.max_clients, 10);
	ck_assert_int_eq(cur.log_level, 1);
	ck_assert_ptr_null(cur.nats_name);
	ck_assert_uint_eq(cur.socket_mode, 0660);
	free(s);
	config_finish(&cur);
	config_finish(&next);
}
END_TEST

/* ---- secrets ---- */

/* New rules move into the running configuration; a change is reported
 * (it applies to new connections), rules that moved lines are not. */
START_TEST(test_apply_policy)
{
	struct config cur, next;
	char err[256];
	config_defaults(&cur);
	config_defaults(&next);
	ck_assert_int_eq(config_set(&next, "allow", "* publish a", err,
	                            sizeof(err)),
	                 0);
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);
	config_apply(&cur, &next, record, f);
	fclose(f);
	ck_assert_str_eq(s, "allow:applied\n");
	free(s);
	ck_assert(policy_enforced(cur.policy));
	ck_assert(!policy_enforced(next.policy));
	config_finish(&next);

	config_defaults(&next);
	ck_assert_int_eq(config_set(&next, "allow", "*  publish a", err,
	                            sizeof(err)),
	                 0);
	f = open_memstream(&s, &len);
	config_apply(&cur, &next, record, f);
	fclose(f);
	ck_assert_str_eq(s, "");
	free(s);
	config_finish(&next);

	config_defaults(&next); /* every rule gone: all allowed again */
	f = open_memstream(&s, &len);
	config_apply(&cur, &next, record, f);
	fclose(f);
	ck_assert_str_eq(s, "allow:applied\n");
	free(s);
	ck_assert(!policy_enforced(cur.policy));
	config_finish(&next);

	/* Quotas: reported on their own, also without rules. */
	config_defaults(&next);
	ck_assert_int_eq(config_set(&next, "quota", "* requests=8", err,
	                            sizeof(err)),
	                 0);
	f = open_memstream(&s, &len);
	config_apply(&cur, &next, record, f);
	fclose(f);
	ck_assert_str_eq(s, "quota:applied\n");
	free(s);
	ck_assert_uint_eq(policy_quota_count(cur.policy), 1);
	config_finish(&next);
	config_defaults(&next);
	ck_assert_int_eq(config_set(&next, "allow", "* publish a", err,
	                            sizeof(err)),
	                 0);
	f = open_memstream(&s, &len);
	config_apply(&cur, &next, record, f);
	fclose(f);
	ck_assert_str_eq(s, "allow:applied\nquota:applied\n");
	free(s);
	ck_assert_uint_eq(policy_quota_count(cur.policy), 0);
	config_finish(&next);
	config_finish(&cur);
}
END_TEST

START_TEST(test_read_secret)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
		{"s3cret\nsecond line\n", "s3cret"},
		{"no-newline", "no-newline"},
		{"crlf\r\n", "crlf"},
		{" spaces kept \n", " spaces kept "},
		{"\nafter an empty line\n", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *path = write_temp(cases[i].text);
		char *s = config_read_secret(path);
		ck_assert_ptr_nonnull(s);
		ck_assert_str_eq(s, cases[i].want);
		free(s);
		unlink(path);
		free(path);
	}
	char *path = write_temp("");
	errno = 0;
	ck_assert_ptr_null(config_read_secret(path));
	ck_assert_int_eq(errno, EINVAL);
	unlink(path);
	errno = 0;
	ck_assert_ptr_null(config_read_secret(path));
	ck_assert_int_eq(errno, ENOENT);
	free(path);
}
END_TEST

/* metrics_listen: numeric, a port, loopback unless remote is allowed. */
START_TEST(test_metrics_listen)
{
	static const struct {
		const char *s;
		bool remote, ok;
	} cases[] = {
		{"127.0.0.1:9464", false, true},
		{"127.9.9.9:1", false, true},
		{"[::1]:9464", false, true},
		{"0.0.0.0:9464", false, false},
		{"0.0.0.0:9464", true, true},
		{"[::]:9464", false, false},
		{"10.1.2.3:9464", true, true},
		{"[::ffff:127.0.0.1]:9464", false, false},
		{"localhost:9464", false, false},
		{"127.0.0.1", false, false},
		{"127.0.0.1:", false, false},
		{"127.0.0.1:0", false, false},
		{"127.0.0.1:65536", false, false},
		{"127.0.0.1:94x", false, false},
		{"[::1:9464", false, false},
		{":9464", false, false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len;
		char err[256] = "";
		int r = config_parse_listen(cases[i].s, cases[i].remote, &ss, &len,
		                            err, sizeof(err));
		ck_assert_msg((r == 0) == cases[i].ok, "%s: %d (%s)", cases[i].s,
		              r, err);
		ck_assert(r == 0 || err[0]);
	}
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *t = tcase_create("values");
	tcase_add_test(t, test_defaults);
	tcase_add_test(t, test_syntax);
	tcase_add_test(t, test_string_values);
	tcase_add_test(t, test_bool_values);
	tcase_add_test(t, test_uint_values);
	tcase_add_test(t, test_uint_errors);
	tcase_add_test(t, test_mode_values);
	tcase_add_test(t, test_url_values);
	tcase_add_test(t, test_log_level_values);
	tcase_add_test(t, test_domain_values);
	tcase_add_test(t, test_uplink_priority);
	tcase_add_test(t, test_metrics_listen);
	suite_add_tcase(s, t);

	t = tcase_create("errors");
	tcase_add_test(t, test_error_lines);
	tcase_add_test(t, test_long_lines);
	tcase_add_test(t, test_missing_file);
	tcase_add_test(t, test_check_cross_keys);
	tcase_add_test(t, test_check_in_load);
	suite_add_tcase(s, t);

	t = tcase_create("output");
	tcase_add_test(t, test_print_round_trip);
	tcase_add_test(t, test_streams);
	tcase_add_test(t, test_print_quotes);
	tcase_add_test(t, test_apply);
	tcase_add_test(t, test_apply_policy);
	tcase_add_test(t, test_allow);
	tcase_add_test(t, test_quota);
	tcase_add_test(t, test_read_secret);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
