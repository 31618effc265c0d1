/* SPDX-License-Identifier: MIT */
/* Services interop with the official NATS JavaScript client
 * (@nats-io/services): nats.js discovers a shipd-hosted service with
 * ping, info and stats on all nine $SRV subjects, every answer holding
 * what the micro JSON schemas require with the right types; its requests
 * get the answers, and the error headers as ServiceError reads them. The
 * other way, a service nats.js hosts is found by `shipctl svc ls` and
 * called by `shipctl svc call`. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "interop.h"

static const char *show(json_t *j)
{
	static __thread char buf[8192];
	size_t n = json_dumpb(j, buf, sizeof(buf) - 1, JSON_COMPACT | JSON_ENCODE_ANY);
	buf[n < sizeof(buf) ? n : sizeof(buf) - 1] = '\0';
	return buf;
}

/* ---- a shipd-hosted service ---- */

static void on_echo(struct shipc *h, const struct shipc_svc_req *r, void *arg)
{
	shipc_svc_respond(r->svc, r->token, r->data, r->len);
}

static void on_fail(struct shipc *h, const struct shipc_svc_req *r, void *arg)
{
	shipc_svc_error(r->svc, r->token, 422, "unprocessable entity", "no", 2);
}

static const char *jstr(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	ck_assert_msg(json_is_string(v), "%s is not a string in %s", k, show(o));
	return json_string_value(v);
}

static json_int_t jint(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	ck_assert_msg(json_is_integer(v), "%s is not an integer in %s", k,
	              show(o));
	return json_integer_value(v);
}

static json_t *endpoint_named(json_t *eps, const char *name)
{
	size_t i;
	json_t *e;
	json_array_foreach(eps, i, e)
		if (json_is_string(json_object_get(e, "name")) &&
		    !strcmp(json_string_value(json_object_get(e, "name")), name))
			return e;
	ck_abort_msg("no endpoint %s in %s", name, show(eps));
	return NULL;
}

START_TEST(nodejs_discovers_and_calls_shipd_service)
{
	struct shipc *app = interop_conn("interop-app");
	const struct shipc_header smd[] = {{"robot", "r1"}};
	const struct shipc_header emd[] = {{"lang", "c"}};
	struct shipc_svc_endpoint eps[] = {
		{.name = "echo", .group = "js", .metadata = emd, .n_metadata = 1,
		 .fn = on_echo},
		{.name = "fail", .subject = "interop.fail", .fn = on_fail},
		{.name = "idle", .subject = "interop.idle", .fn = on_echo},
	};
	struct shipc_svc_config cfg = {
		.name = "interop", .version = "2.0.1-beta.2",
		.description = "hosted by shipd", .metadata = smd, .n_metadata = 1,
		.endpoints = eps, .n_endpoints = 3};
	struct shipc_svc *s = shipc_svc_add(app, &cfg);
	ck_assert_msg(s != NULL, "add: %s", interop_why(app));
	char id[64];
	snprintf(id, sizeof(id), "%s", shipc_svc_id(s));
	struct fx_app a;
	ck_assert_int_eq(fx_app_start(&a, app), 0);

	/* nats.js calls: the answer, then an error answer. */
	char args[512];
	snprintf(args, sizeof(args), "call %s js.echo 'hello from js'",
	         interop_nats.url);
	json_t *out = interop_node("svc.mjs", args);
	ck_assert_str_eq(jstr(out, "data"), "hello from js");
	ck_assert(json_is_false(json_object_get(out, "service_error")));
	ck_assert_uint_eq(json_object_size(json_object_get(out, "headers")), 0);
	json_decref(out);
	snprintf(args, sizeof(args), "call %s interop.fail x", interop_nats.url);
	out = interop_node("svc.mjs", args);
	ck_assert_msg(json_is_true(json_object_get(out, "service_error")),
	              "not a ServiceError: %s", show(out));
	ck_assert_int_eq(jint(out, "code"), 422);
	ck_assert_str_eq(jstr(out, "message"), "unprocessable entity");
	ck_assert_str_eq(jstr(out, "data"), "no");
	json_t *h = json_object_get(out, "headers");
	ck_assert_str_eq(show(json_object_get(h, "Nats-Service-Error")),
	                 "[\"unprocessable entity\"]");
	ck_assert_str_eq(show(json_object_get(h, "Nats-Service-Error-Code")),
	                 "[\"422\"]");
	json_decref(out);

	/* Discovery through @nats-io/services' client, checked there against
	 * the schemas; here against what was configured and done. */
	snprintf(args, sizeof(args), "discover %s interop %s", interop_nats.url,
	         id);
	out = interop_node("svc.mjs", args);
	json_t *problems = json_object_get(out, "problems");
	ck_assert_msg(json_is_array(problems) && json_array_size(problems) == 0,
	              "schema problems: %s", show(problems));
	json_t *replies = json_object_get(out, "replies");
	static const char *const verbs[] = {"PING", "INFO", "STATS"};
	for (int v = 0; v < 3; v++) {
		for (int scope = 0; scope < 3; scope++) {
			/* $SRV.<verb>, .interop, .interop.<id> */
			char key[128];
			snprintf(key, sizeof(key), "%s%s%s%s", verbs[v],
			         scope ? ".interop" : "", scope == 2 ? "." : "",
			         scope == 2 ? id : "");
			json_t *rs = json_object_get(replies, key);
			ck_assert_msg(json_array_size(rs) == 1,
			              "nats.js got %zu answers on $SRV.%s",
			              json_array_size(rs), key);
			json_t *r = json_array_get(rs, 0);
			ck_assert_str_eq(jstr(r, "name"), "interop");
			ck_assert_str_eq(jstr(r, "id"), id);
			ck_assert_str_eq(jstr(r, "version"), "2.0.1-beta.2");
			ck_assert_str_eq(show(json_object_get(r, "metadata")),
			                 "{\"robot\":\"r1\"}");
			if (v == 1) {
				ck_assert_str_eq(jstr(r, "description"), "hosted by shipd");
				json_t *e = endpoint_named(json_object_get(r, "endpoints"),
				                           "echo");
				ck_assert_str_eq(jstr(e, "subject"), "js.echo");
				ck_assert_str_eq(jstr(e, "queue_group"), "q");
				ck_assert_str_eq(show(json_object_get(e, "metadata")),
				                 "{\"lang\":\"c\"}");
			}
			if (v == 2) {
				json_t *eps_j = json_object_get(r, "endpoints");
				ck_assert_uint_eq(json_array_size(eps_j), 3);
				json_t *e = endpoint_named(eps_j, "echo");
				ck_assert_int_eq(jint(e, "num_requests"), 1);
				ck_assert_int_eq(jint(e, "num_errors"), 0);
				ck_assert_str_eq(jstr(e, "last_error"), "");
				e = endpoint_named(eps_j, "fail");
				ck_assert_int_eq(jint(e, "num_requests"), 1);
				ck_assert_int_eq(jint(e, "num_errors"), 1);
				ck_assert_str_eq(jstr(e, "last_error"),
				                 "422:unprocessable entity");
				/* Never called: every field all the same. */
				e = endpoint_named(eps_j, "idle");
				ck_assert_int_eq(jint(e, "num_requests"), 0);
				ck_assert_int_eq(jint(e, "processing_time"), 0);
				ck_assert_int_eq(jint(e, "average_processing_time"), 0);
				ck_assert_str_eq(jstr(e, "last_error"), "");
			}
		}
	}
	json_decref(out);
	ck_assert_int_eq(shipc_svc_stop(s), 0);
	fx_app_end(&a);
}
END_TEST

/* ---- a service nats.js hosts, seen by shipctl ---- */

/* Run shipctl -s <sock> with args; stdout and stderr go to out. Returns
 * its exit status. */
static int shipctl(const char *out, const char *const *args)
{
	const char *bin = getenv("SHIPCTL_BIN");
	ck_assert_msg(bin != NULL, "SHIPCTL_BIN is not set");
	char *argv[24] = {(char *)bin, "-s", interop_shipd.sock};
	int n = 3;
	for (int i = 0; args[i] && n < 23; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	unlink(out);
	pid_t pid = fx_spawn(argv, out, NULL);
	ck_assert_int_gt(pid, 0);
	return fx_wait_exit(pid, 30000);
}

/* The text of path ("" before it exists). */
static char *slurp(const char *path)
{
	static char buf[65536];
	FILE *f = fopen(path, "r");
	buf[0] = '\0';
	if (!f)
		return buf;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* The JSON documents of path: one, or one per line. */
static json_t *json_doc(const char *path)
{
	const char *text = slurp(path);
	json_error_t err;
	json_t *j = json_loads(text, 0, &err);
	if (j)
		return j;
	/* JSON lines: gather them in an array. */
	json_t *arr = json_array();
	const char *p = text;
	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len) {
			json_t *x = json_loadb(p, len, 0, &err);
			ck_assert_msg(x, "not JSON: %.*s (%s)", (int)len, p, err.text);
			json_array_append_new(arr, x);
		}
		p += len + (nl ? 1 : 0);
	}
	return arr;
}

/* Whether any object in j (at any depth) has "name": name and "id": id. */
static bool holds_instance(json_t *j, const char *name, const char *id)
{
	if (json_is_object(j)) {
		json_t *n = json_object_get(j, "name"), *i = json_object_get(j, "id");
		if (json_is_string(n) && json_is_string(i) &&
		    !strcmp(json_string_value(n), name) &&
		    !strcmp(json_string_value(i), id))
			return true;
		const char *k;
		json_t *v;
		json_object_foreach(j, k, v)
			if (holds_instance(v, name, id))
				return true;
	} else if (json_is_array(j)) {
		size_t x;
		json_t *v;
		json_array_foreach(j, x, v)
			if (holds_instance(v, name, id))
				return true;
	}
	return false;
}

START_TEST(shipctl_finds_nodejs_service)
{
	char log[400];
	snprintf(log, sizeof(log), "%s/serve.log", interop_nats.dir);
	char script[600];
	snprintf(script, sizeof(script), "%s/svc.mjs", interop_dir());
	char *argv[] = {"node", script, "serve", interop_nats.url, "jshost",
	                "0.3.0", NULL};
	/* node resolves the packages beside the script. */
	pid_t pid = fx_spawn(argv, log, NULL);
	ck_assert_int_gt(pid, 0);
	char id[64] = "";
	uint64_t end = fx_now_ms() + 30000;
	while (!id[0] && fx_now_ms() < end) {
		const char *text = slurp(log);
		const char *r = strstr(text, "{\"ready\":true");
		if (r) {
			json_t *j = json_loadb(r, strcspn(r, "\n"), 0, NULL);
			ck_assert_msg(j, "serve printed %s", text);
			snprintf(id, sizeof(id), "%s",
			         json_string_value(json_object_get(j, "id")));
			json_decref(j);
		} else {
			ck_assert_msg(waitpid(pid, NULL, WNOHANG) == 0,
			              "svc.mjs serve ended: %s", text);
			fx_sleep_ms(50);
		}
	}
	ck_assert_msg(id[0], "svc.mjs serve never said ready: %s", slurp(log));

	char out[400];
	snprintf(out, sizeof(out), "%s/shipctl.out", interop_nats.dir);
	const char *ls[] = {"svc", "ls", "--json", NULL};
	int rc = shipctl(out, ls);
	ck_assert_msg(rc == 0, "shipctl svc ls --json: %d: %s", rc, slurp(out));
	json_t *j = json_doc(out);
	ck_assert_msg(holds_instance(j, "jshost", id),
	              "shipctl svc ls --json does not list jshost %s: %s", id,
	              slurp(out));
	json_decref(j);
	/* The plain listing names it too. */
	const char *ls_plain[] = {"svc", "ls", NULL};
	rc = shipctl(out, ls_plain);
	ck_assert_msg(rc == 0, "shipctl svc ls: %d: %s", rc, slurp(out));
	ck_assert_msg(strstr(slurp(out), "jshost") && strstr(slurp(out), id),
	              "shipctl svc ls: %s", slurp(out));

	/* info and stats read nats.js's answers (no last_error, no
	 * service metadata in its STATS). */
	const char *info_args[] = {"svc", "info", "jshost", NULL};
	rc = shipctl(out, info_args);
	ck_assert_msg(rc == 0, "shipctl svc info: %d: %s", rc, slurp(out));
	ck_assert_msg(strstr(slurp(out), "jshost.grp.hello") &&
	                      strstr(slurp(out), "hosted by nats.js"),
	              "shipctl svc info: %s", slurp(out));
	const char *stats_args[] = {"svc", "stats", "jshost", id, NULL};
	rc = shipctl(out, stats_args);
	ck_assert_msg(rc == 0, "shipctl svc stats: %d: %s", rc, slurp(out));
	ck_assert_msg(strstr(slurp(out), "jshost.echo"), "shipctl svc stats: %s",
	              slurp(out));

	const char *call[] = {"svc", "call", "jshost.grp.hello", "shipctl", NULL};
	rc = shipctl(out, call);
	ck_assert_msg(rc == 0, "shipctl svc call: %d: %s", rc, slurp(out));
	ck_assert_msg(strstr(slurp(out), "hello shipctl"), "svc call printed %s",
	              slurp(out));
	/* An error answer: non-zero, and the code and text shown. */
	const char *fail[] = {"svc", "call", "jshost.fail", "x", NULL};
	rc = shipctl(out, fail);
	ck_assert_msg(rc != 0, "shipctl svc call of an error answer exited 0: %s",
	              slurp(out));
	ck_assert_msg(strstr(slurp(out), "409") && strstr(slurp(out), "js says no"),
	              "svc call of an error printed %s", slurp(out));

	/* libshipc's discovery finds the nats.js instance too. */
	struct shipc *h = interop_conn("interop");
	char **rs = NULL;
	size_t n = 0;
	ck_assert_msg(shipc_svc_discover(h, "INFO", "jshost", id, 0, &rs, &n) == 0,
	              "%s", interop_why(h));
	ck_assert_uint_eq(n, 1);
	json_t *info = json_loads(rs[0], 0, NULL);
	ck_assert_str_eq(jstr(info, "description"), "hosted by nats.js");
	ck_assert_uint_eq(json_array_size(json_object_get(info, "endpoints")), 3);
	json_decref(info);
	shipc_svc_replies_free(rs, n);
	shipc_close(h);

	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(fx_wait_exit(pid, 10000), 0);
}
END_TEST

int main(void)
{
	const TTest *tests[] = {nodejs_discovers_and_calls_shipd_service,
	                        shipctl_finds_nodejs_service, NULL};
	return interop_main("interop-svc", "@nats-io/services", 180, tests);
}
