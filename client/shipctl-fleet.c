/* SPDX-License-Identifier: MIT */
/* shipctl's fleet commands: fleet check looks at a robot's profile (its
 * shipd.conf and its leaf server's nats-server.conf) and at the path it
 * sets up, from shipd through the leaf server to the hub's JetStream. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "jscan.h"
#include "natsconf.h"
#include "natsinfo.h"
#include "shipctl.h"

#define DEFAULT_CONFIG SHIP_SYSCONFDIR "/ship/shipd.conf"
#define DEFAULT_LEAF_CONF SHIP_SYSCONFDIR "/ship/nats-server.conf"
#define DEFAULT_NATS "nats://127.0.0.1:4222"
#define DEFAULT_HUB_BUCKETS "beings_status,ship_config,ship_health"
#define DOMAIN_MAX 64   /* shipd's JS_DOMAIN_MAX */
#define PROBE_MS 2000   /* for the leaf server's INFO */
#define TEXT_MAX 512

/* The placeholders of conf/fleet/robot/nats-server.conf. */
static const char *const placeholders[] = {"ROBOT_NAME", "HUB_LEAF_URLS"};

/* What the checks learn, for the checks after them. */
struct fleet {
	const char *conf_path, *leaf_path;
	bool conf_read;             /* shipd.conf */
	char *nats, *hub_domain, *hub_buckets, *kv_domain;
	char *events_domain, *channels_domain;
	char *uplink_priority, *uplink_rate_limit;
	bool leaf_read;             /* the leaf server's file */
	struct natsconf leaf;
	const char *domain;         /* its JetStream domain, if valid */
	bool server_up;             /* the server at nats answered */
	char server_url[256];
	char *info;                 /* its INFO, JSON */
	bool shipd_up;
};

enum result { CHECK_OK, CHECK_FAIL, CHECK_SKIP };

struct check {
	const char *name;
	enum result (*fn)(struct fleet *f, char *text, size_t size);
};

/* ---- reading ---- */

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	char *e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
	                 e[-1] == '\n'))
		*--e = '\0';
	return s;
}

static int set(char **slot, const char *value)
{
	char *v = strdup(value);
	if (!v)
		return -1;
	free(*slot);
	*slot = v;
	return 0;
}

/*
 * The few keys of shipd.conf the checks need, as shipd reads them: one
 * "key = value" per line, '#' lines are comments, a value may be in
 * double quotes, the last of a key counts. The rest of the file is
 * shipd -n's to check.
 */
static int read_shipd_conf(struct fleet *f, char *err, size_t errlen)
{
	static const struct {
		const char *key;
		size_t off;
	} wanted[] = {
		{"nats", offsetof(struct fleet, nats)},
		{"hub_domain", offsetof(struct fleet, hub_domain)},
		{"hub_buckets", offsetof(struct fleet, hub_buckets)},
		{"kv_domain", offsetof(struct fleet, kv_domain)},
		{"events_domain", offsetof(struct fleet, events_domain)},
		{"channels_domain", offsetof(struct fleet, channels_domain)},
		{"uplink_priority", offsetof(struct fleet, uplink_priority)},
		{"uplink_rate_limit", offsetof(struct fleet, uplink_rate_limit)},
	};
	FILE *fp = fopen(f->conf_path, "r");
	if (!fp) {
		snprintf(err, errlen, "%s: %s", f->conf_path, strerror(errno));
		return -1;
	}
	char line[4096];
	int rc = 0;
	for (int n = 1; rc == 0 && fgets(line, sizeof(line), fp); n++) {
		char *s = trim(line), *eq = strchr(s, '=');
		if (!*s || *s == '#')
			continue;
		if (!eq) {
			snprintf(err, errlen, "%s:%d: expected key = value",
			         f->conf_path, n);
			rc = -1;
			break;
		}
		*eq = '\0';
		char *key = trim(s), *value = trim(eq + 1);
		size_t len = strlen(value);
		if (len >= 2 && value[0] == '"' && value[len - 1] == '"') {
			value[len - 1] = '\0';
			value++;
		}
		for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
			if (!strcmp(key, wanted[i].key) &&
			    set((char **)((char *)f + wanted[i].off), value) < 0)
				rc = -1;
	}
	fclose(fp);
	if (rc == 0 && ((!f->nats && set(&f->nats, DEFAULT_NATS) < 0) ||
	                (!f->hub_buckets &&
	                 set(&f->hub_buckets, DEFAULT_HUB_BUCKETS) < 0)))
		rc = -1;
	return rc;
}

/* A JetStream domain as shipd takes one: letters, digits, - and _. */
static bool domain_valid(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

/* The next URL of a nats = list (separated by commas and blanks) into
 * out; false at the end. */
static bool next_url(const char **list, char *out, size_t size)
{
	const char *s = *list + strspn(*list, ", \t");
	size_t n = strcspn(s, ", \t");
	if (!n)
		return false;
	snprintf(out, size, "%.*s", (int)n, s);
	*list = s + n;
	return true;
}

static bool loopback(const char *host)
{
	return !strcasecmp(host, "localhost") || !strncmp(host, "127.", 4) ||
	       !strcmp(host, "::1");
}

/* ---- the checks, in order: each may use what those before learned ---- */

static enum result check_config(struct fleet *f, char *text, size_t size)
{
	if (read_shipd_conf(f, text, size) < 0)
		return CHECK_FAIL;
	f->conf_read = true;
	snprintf(text, size, "%s read (nats %s); shipd -n -c FILE checks the rest",
	         f->conf_path, f->nats);
	return CHECK_OK;
}

static enum result check_hub_domain(struct fleet *f, char *text, size_t size)
{
	if (!f->conf_read) {
		snprintf(text, size, "no shipd.conf");
		return CHECK_SKIP;
	}
	if (!f->hub_domain || !f->hub_domain[0]) {
		snprintf(text, size, "not set in %s: shipd would not use the hub",
		         f->conf_path);
		return CHECK_FAIL;
	}
	if (!domain_valid(f->hub_domain)) {
		snprintf(text, size, "'%.64s' is not a JetStream domain (letters, "
		         "digits, - and _, at most 64)", f->hub_domain);
		return CHECK_FAIL;
	}
	snprintf(text, size, "'%s'", f->hub_domain);
	return CHECK_OK;
}

static enum result check_leaf_conf(struct fleet *f, char *text, size_t size)
{
	if (natsconf_read(f->leaf_path, &f->leaf, text, size) < 0)
		return CHECK_FAIL;
	f->leaf_read = true;
	const char *inc = natsconf_get(&f->leaf, "include", NULL);
	snprintf(text, size, "%s read%s%.200s%s", f->leaf_path,
	         inc ? " (not followed: include " : "", inc ? inc : "",
	         inc ? ")" : "");
	return CHECK_OK;
}

static enum result check_placeholders(struct fleet *f, char *text, size_t size)
{
	if (!f->leaf_read) {
		snprintf(text, size, "no leaf conf");
		return CHECK_SKIP;
	}
	/* Entries hold no comments: the file's head names the placeholders
	 * in comments, and those stay. */
	for (size_t i = 0; i < f->leaf.n; i++) {
		const struct natsconf_entry *e = &f->leaf.v[i];
		for (size_t k = 0; k < sizeof(placeholders) / sizeof(*placeholders);
		     k++) {
			if (!strstr(e->value, placeholders[k]) &&
			    !strcasestr(e->path, placeholders[k]))
				continue;
			snprintf(text, size, "%s:%d: %s is still there (replace "
			         "it: see the file's head)",
			         f->leaf_path, e->line, placeholders[k]);
			return CHECK_FAIL;
		}
	}
	snprintf(text, size, "none left (ROBOT_NAME, HUB_LEAF_URLS)");
	return CHECK_OK;
}

static enum result check_domain(struct fleet *f, char *text, size_t size)
{
	if (!f->leaf_read) {
		snprintf(text, size, "no leaf conf");
		return CHECK_SKIP;
	}
	int line = 0;
	const char *d = natsconf_get(&f->leaf, "jetstream.domain", &line);
	if (!d) {
		snprintf(text, size, "no jetstream { domain }: the robot needs a "
		         "JetStream domain of its own (its name)");
		return CHECK_FAIL;
	}
	if (!domain_valid(d)) {
		snprintf(text, size, "%s:%d: '%.64s' is not a JetStream domain "
		         "(letters, digits, - and _, at most 64)",
		         f->leaf_path, line, d);
		return CHECK_FAIL;
	}
	if (f->hub_domain && !strcmp(d, f->hub_domain)) {
		snprintf(text, size, "%s:%d: '%s' is the hub's domain too "
		         "(hub_domain): the robot's must be its own",
		         f->leaf_path, line, d);
		return CHECK_FAIL;
	}
	f->domain = d;
	snprintf(text, size, "'%s', not the hub's", d);
	return CHECK_OK;
}

static enum result check_remote(struct fleet *f, char *text, size_t size)
{
	if (!f->leaf_read) {
		snprintf(text, size, "no leaf conf");
		return CHECK_SKIP;
	}
	size_t n = natsconf_count(&f->leaf, "leafnodes.remotes.urls") +
	           natsconf_count(&f->leaf, "leafnodes.remotes.url");
	if (!n) {
		snprintf(text, size, "no leafnodes { remotes } with a URL: the "
		         "robot would never reach the hub");
		return CHECK_FAIL;
	}
	const char *rc = natsconf_get(&f->leaf, "leafnodes.reconnect", NULL);
	snprintf(text, size, "%zu hub URL%s, reconnect every %s s%s", n,
	         n == 1 ? "" : "s", rc ? rc : "1", rc ? "" : " (default)");
	return CHECK_OK;
}

/* The subjects of shipd's blocks whose streams are on the robot unless
 * shipd.conf puts them on the hub. */
static const struct {
	const char *key;
	size_t off;
	const char *subject;
} block_subjects[] = {
	{"events_domain", offsetof(struct fleet, events_domain), "ship.events.>"},
	{"channels_domain", offsetof(struct fleet, channels_domain),
	 "ship.channel.>"},
};

/* How many values at path are s. */
static size_t listed(const struct natsconf *c, const char *path,
                     const char *s)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n; i++)
		n += !strcmp(c->v[i].path, path) && !strcmp(c->v[i].value, s);
	return n;
}

/*
 * The robot and the hub are one account: a subject the leafnode carries
 * reaches every robot's streams of the same subjects. A block on the
 * robot keeps its subject from crossing either way; a block on the hub
 * must send it.
 */
static enum result check_subjects(struct fleet *f, char *text, size_t size)
{
	if (!f->leaf_read || !f->conf_read) {
		snprintf(text, size, "no %s", f->conf_read ? "leaf conf"
		                                           : "shipd.conf");
		return CHECK_SKIP;
	}
	for (size_t i = 0; i < sizeof(block_subjects) / sizeof(*block_subjects);
	     i++) {
		const char *key = block_subjects[i].key,
		           *subj = block_subjects[i].subject;
		const char *dom = *(char **)((char *)f + block_subjects[i].off);
		bool hub = dom && !strcmp(dom, "hub");
		/* Every remote must say so: their members share a path, so
		 * the subject is there once per remote. */
		size_t remotes = natsconf_count(&f->leaf, "leafnodes.remotes.{}");
		if (remotes == 0)
			remotes = 1;
		bool out = listed(&f->leaf, "leafnodes.remotes.deny_exports",
		                  subj) >= remotes,
		     in = listed(&f->leaf, "leafnodes.remotes.deny_imports",
		                 subj) >= remotes;
		bool some_out =
			listed(&f->leaf, "leafnodes.remotes.deny_exports", subj) > 0;
		if (hub && some_out) {
			snprintf(text, size, "%s = hub, but the leaf server keeps "
			         "%s from the hub (deny_exports)", key, subj);
			return CHECK_FAIL;
		}
		if (!hub && (!out || !in)) {
			snprintf(text, size, "%s is the robot's (%s = local) but "
			         "crosses the leafnode: every robot's stream would "
			         "store the others' (it belongs in deny_exports and "
			         "deny_imports of every remote)", subj, key);
			return CHECK_FAIL;
		}
	}
	/* With limits on the uplink, shipd follows the consumer advisories
	 * and now and then looks at what the hub's consumers deliver on
	 * $JS.S.>: the leafnode must not bring it the rest of the fleet's. */
	bool limits = (f->uplink_priority && *f->uplink_priority) ||
	              (f->uplink_rate_limit &&
	               strtoull(f->uplink_rate_limit, NULL, 10) != 0);
	size_t remotes = natsconf_count(&f->leaf, "leafnodes.remotes.{}");
	static const char *const fleet_wide[] = {"$JS.EVENT.>", "$JS.S.>"};
	for (size_t i = 0; limits && i < 2; i++)
		if (listed(&f->leaf, "leafnodes.remotes.deny_imports",
		           fleet_wide[i]) < (remotes ? remotes : 1)) {
			snprintf(text, size, "uplink_priority or uplink_rate_limit "
			         "is set, but %s is not in deny_imports of every "
			         "remote: the hub would send this robot the whole "
			         "fleet's %s while shipd follows its own",
			         fleet_wide[i],
			         i ? "sourcing deliveries" : "JetStream advisories");
			return CHECK_FAIL;
		}
	snprintf(text, size, "events and channels stay where shipd.conf puts "
	         "them (deny_exports, deny_imports)%s",
	         limits ? "; $JS.EVENT.> and $JS.S.> do not come in" : "");
	return CHECK_OK;
}

static enum result check_ping(struct fleet *f, char *text, size_t size)
{
	if (!f->leaf_read) {
		snprintf(text, size, "no leaf conf");
		return CHECK_SKIP;
	}
	const char *iv = natsconf_get(&f->leaf, "ping_interval", NULL);
	const char *max = natsconf_get(&f->leaf, "ping_max", NULL);
	if (!iv) {
		snprintf(text, size, "ping_interval not set: a silently cut "
		         "uplink would go unnoticed for minutes (the profile "
		         "has \"2s\")");
		return CHECK_FAIL;
	}
	snprintf(text, size, "ping_interval %s, ping_max %s", iv,
	         max ? max : "2 (default)");
	return CHECK_OK;
}

/* shipd must use the robot's own server and only that. */
static enum result check_listen(struct fleet *f, char *text, size_t size)
{
	if (!f->leaf_read || !f->conf_read) {
		snprintf(text, size, "no %s", f->conf_read ? "leaf conf"
		                                           : "shipd.conf");
		return CHECK_SKIP;
	}
	char lhost[256], host[256], url[256];
	int lport, port;
	const char *listen = natsconf_get(&f->leaf, "listen", NULL);
	const char *lh = natsconf_get(&f->leaf, "host", NULL);
	const char *lp = natsconf_get(&f->leaf, "port", NULL);
	if (!natsinfo_hostport(listen ? listen : "", lhost, sizeof(lhost), &lport,
	                    lp ? atoi(lp) : 4222)) {
		snprintf(text, size, "cannot read listen: %s", listen);
		return CHECK_FAIL;
	}
	if (!listen && lh)
		snprintf(lhost, sizeof(lhost), "%s", lh);
	bool any = !lhost[0] || !strcmp(lhost, "0.0.0.0") || !strcmp(lhost, "::");
	const char *list = f->nats;
	while (next_url(&list, url, sizeof(url))) {
		bool same = natsinfo_hostport(url, host, sizeof(host), &port, 4222) &&
		            port == lport &&
		            (!strcasecmp(host, lhost) ||
		             (loopback(host) && (any || loopback(lhost))));
		if (!same) {
			snprintf(text, size, "nats = %s is not the leaf server's "
			         "listener (%s:%d): shipd must use the robot's "
			         "own server only", url, lhost[0] ? lhost : "0.0.0.0",
			         lport);
			return CHECK_FAIL;
		}
	}
	snprintf(text, size, "shipd's nats is the leaf server's %s:%d",
	         lhost[0] ? lhost : "0.0.0.0", lport);
	return CHECK_OK;
}

static enum result check_server(struct fleet *f, char *text, size_t size)
{
	if (!f->conf_read) {
		snprintf(text, size, "no shipd.conf");
		return CHECK_SKIP;
	}
	const char *list = f->nats;
	char name[128], version[32];
	next_url(&list, f->server_url, sizeof(f->server_url));
	f->info = natsinfo_fetch(f->server_url, PROBE_MS, text, size);
	if (!f->info) {
		char why[256];
		snprintf(why, sizeof(why), "%s", text);
		snprintf(text, size, "no NATS server answers at %s: %s "
		         "(is ship-nats.service running?)", f->server_url, why);
		return CHECK_FAIL;
	}
	f->server_up = true;
	natsinfo_member(f->info, "server_name", name, sizeof(name));
	natsinfo_member(f->info, "version", version, sizeof(version));
	snprintf(text, size, "'%s' (nats-server %s) answers at %s", name,
	         version, f->server_url);
	return CHECK_OK;
}

static enum result check_server_domain(struct fleet *f, char *text,
                                       size_t size)
{
	if (!f->server_up || !f->domain) {
		snprintf(text, size, "%s", f->server_up ? "no valid domain in "
		                                          "the leaf conf"
		                                        : "no server");
		return CHECK_SKIP;
	}
	char js[16], domain[DOMAIN_MAX + 8];
	natsinfo_member(f->info, "jetstream", js, sizeof(js));
	natsinfo_member(f->info, "domain", domain, sizeof(domain));
	if (strcmp(js, "true")) {
		snprintf(text, size, "JetStream is off on the server at %s",
		         f->server_url);
		return CHECK_FAIL;
	}
	if (strcmp(domain, f->domain)) {
		snprintf(text, size, "the server at %s is in domain '%s', the "
		         "leaf conf says '%s' (does it run another file? "
		         "restart ship-nats.service)",
		         f->server_url, domain, f->domain);
		return CHECK_FAIL;
	}
	snprintf(text, size, "the server's JetStream domain is '%s'", domain);
	return CHECK_OK;
}

static enum result check_shipd(struct fleet *f, char *text, size_t size)
{
	const char *path = ctl_socket();
	struct shipc_status st;
	h = shipc_connect(path, "shipctl");
	if (!h) {
		snprintf(text, size, "shipd does not answer at %s: %s", path,
		         strerror(errno));
		return CHECK_FAIL;
	}
	if (shipc_status(h, &st) < 0) {
		snprintf(text, size, "status: %s", strerror(errno));
		return CHECK_FAIL;
	}
	if (st.link != SHIPC_LINK_CONNECTED) {
		snprintf(text, size, "shipd's NATS link is %s%s%.200s",
		         shipc_link_name(st.link), st.last_error[0] ? ": " : "",
		         st.last_error);
		return CHECK_FAIL;
	}
	/* shipd reads its configuration at start: one edited since is not
	 * what it runs. */
	char url[256];
	const char *list = f->nats;
	bool configured = !f->conf_read;
	while (!configured && next_url(&list, url, sizeof(url)))
		configured = !strcmp(url, st.server_url);
	if (!configured) {
		snprintf(text, size, "shipd is connected to %s, not to %s's nats "
		         "(restart shipd to apply it)", st.server_url,
		         f->conf_path);
		return CHECK_FAIL;
	}
	f->shipd_up = true;
	snprintf(text, size, "shipd (pid %u) is connected to %s", st.pid,
	         st.server_url);
	return CHECK_OK;
}

/* A bucket shipd keeps on the hub: the first of hub_buckets, or any
 * with kv_domain = hub. NULL if none. */
static const char *hub_bucket(struct fleet *f, char *buf, size_t size)
{
	const char *list = f->hub_buckets;
	if (next_url(&list, buf, size))
		return buf;
	return f->kv_domain && !strcmp(f->kv_domain, "hub") ? "beings_status"
	                                                    : NULL;
}

/* Before shipd's first probe of the uplink: ask the hub's JetStream for
 * a bucket of the hub ($JS.<hub>.API through the leaf server). Any answer
 * of it, "not found" too, is the hub. */
static enum result hub_by_bucket(struct fleet *f, char *text, size_t size)
{
	char name[256], why[256] = "";
	const char *bucket = f->conf_read ? hub_bucket(f, name, sizeof(name))
	                                  : NULL;
	struct shipc_kv_status st;
	if (!bucket) {
		snprintf(text, size, "shipd has not asked the hub yet, and no "
		         "bucket of shipd.conf is on the hub to ask");
		return CHECK_SKIP;
	}
	int rc = shipc_kv_bucket_info(h, bucket, &st);
	int e = errno;
	if (rc == 0 || e == ENOENT) {
		snprintf(text, size, "the hub's JetStream ('%s') answers through "
		         "the leaf server (bucket %s %s)", f->hub_domain, bucket,
		         rc == 0 ? "is there" : "is not made yet");
		return CHECK_OK;
	}
	shipc_last_error(h, why, sizeof(why));
	snprintf(text, size, "the hub's JetStream ('%s') does not answer "
	         "through the leaf server: %s%s%.200s", f->hub_domain,
	         strerror(e), why[0] ? "; shipd: " : "", why);
	return CHECK_FAIL;
}

/*
 * shipd asks $JS.<hub_domain>.API.INFO through the leaf server every
 * uplink_probe_ms and says what came of it: the hub as the running shipd
 * sees it (its hub_domain is the one it started with).
 */
static enum result check_hub(struct fleet *f, char *text, size_t size)
{
	struct shipc_uplink u;
	if (!f->shipd_up || !f->hub_domain) {
		snprintf(text, size, "%s", !f->shipd_up ? "no shipd" : "no hub_domain");
		return CHECK_SKIP;
	}
	if (shipc_uplink(h, &u) < 0) {
		snprintf(text, size, "status: %s", strerror(errno));
		return CHECK_FAIL;
	}
	/* shipd reads hub_domain at start: one edited since is not its. */
	if (u.state == SHIPC_UPLINK_NONE) {
		snprintf(text, size, "the running shipd has no hub_domain "
		         "(restart it to apply %s)", f->conf_path);
		return CHECK_FAIL;
	}
	if (strcmp(u.hub_domain, f->hub_domain)) {
		snprintf(text, size, "the running shipd's hub_domain is '%s' "
		         "(restart it to apply %s)", u.hub_domain, f->conf_path);
		return CHECK_FAIL;
	}
	if (u.state == SHIPC_UPLINK_UNKNOWN)
		return hub_by_bucket(f, text, size);
	if (u.state == SHIPC_UPLINK_DOWN) {
		snprintf(text, size, "the hub's JetStream ('%s') does not answer "
		         "through the leaf server, for %" PRIu64 " s%s%.200s",
		         u.hub_domain, u.changed_ms / 1000,
		         u.last_error[0] ? ": " : "", u.last_error);
		return CHECK_FAIL;
	}
	snprintf(text, size, "the hub's JetStream ('%s') answers through the "
	         "leaf server, for %" PRIu64 " s", u.hub_domain,
	         u.changed_ms / 1000);
	return CHECK_OK;
}

static const struct check checks[] = {
	{"config", check_config},
	{"hub_domain", check_hub_domain},
	{"leaf-conf", check_leaf_conf},
	{"placeholders", check_placeholders},
	{"domain", check_domain},
	{"remote", check_remote},
	{"subjects", check_subjects},
	{"ping", check_ping},
	{"listen", check_listen},
	{"server", check_server},
	{"server-domain", check_server_domain},
	{"shipd", check_shipd},
	{"hub", check_hub},
};

/* ---- commands ---- */

static void report(const char *name, enum result r, const char *text,
                   bool first)
{
	static const char *const words[] = {"ok", "FAIL", "skip"};
	if (!json) {
		printf("%-4s %-13s %s\n", words[r], name, text);
		return;
	}
	fputs(first ? "" : ",", stdout);
	printf("{\"check\":\"%s\",\"result\":\"%s\",\"detail\":", name, words[r]);
	json_str(stdout, text, strlen(text));
	fputc('}', stdout);
}

static void fleet_finish(struct fleet *f)
{
	free(f->nats);
	free(f->hub_domain);
	free(f->hub_buckets);
	free(f->kv_domain);
	free(f->events_domain);
	free(f->channels_domain);
	free(f->uplink_priority);
	free(f->uplink_rate_limit);
	free(f->info);
	natsconf_finish(&f->leaf);
}

static int cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"leaf-conf", required_argument, NULL, 'l'},
		{NULL, 0, NULL, 0}};
	struct fleet f = {.conf_path = DEFAULT_CONFIG,
	                  .leaf_path = DEFAULT_LEAF_CONF};
	int ch;
	while ((ch = getopt_long(argc, argv, "c:l:", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			f.conf_path = optarg;
			break;
		case 'l':
			f.leaf_path = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc)
		goto usage;
	int failed = 0;
	if (json)
		fputs("{\"checks\":[", stdout);
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		char text[TEXT_MAX] = "";
		enum result r = checks[i].fn(&f, text, sizeof(text));
		failed += r == CHECK_FAIL;
		report(checks[i].name, r, text, i == 0);
	}
	if (json)
		printf("],\"ok\":%s}\n", failed ? "false" : "true");
	fleet_finish(&f);
	return failed ? 1 : 0;
usage:
	fprintf(stderr, "usage: shipctl fleet check [--config FILE] "
	                "[--leaf-conf FILE]\n");
	return 2;
}

static int cmd_status(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "usage: shipctl fleet status\n");
		return 2;
	}
	struct shipc_uplink u;
	if (open_handle() < 0)
		return 1;
	if (shipc_uplink(h, &u) < 0)
		return fail("fleet status", errno);
	if (json) {
		uplink_json(stdout, &u);
		fputc('\n', stdout);
	} else {
		uplink_print(stdout, &u);
	}
	/* Exit 1 unless the hub answers: scripts can wait on it. */
	return u.state == SHIPC_UPLINK_UP ? 0 : 1;
}

/* A string member of a being's status, into out ("-" if absent or not
 * a string). */
static void being_str(const char *v, size_t n, const char *key, char *out,
                      size_t size)
{
	size_t off, len;
	snprintf(out, size, "-");
	if (jscan_member(v, n, key, &off, &len) != 1 || len < 2 ||
	    v[off] != '"')
		return;
	snprintf(out, size, "%.*s", (int)(len - 2), v + off + 1);
}

static int cmd_robots(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		fprintf(stderr, "usage: shipctl fleet robots\n");
		return 2;
	}
	char **keys = NULL;
	size_t n = 0;
	if (open_handle() < 0)
		return 1;
	/* The being registry (noesis-ship's BeingRegistry): a being is
	 * there while it keeps re-putting its status (the bucket's 5 min
	 * max age). */
	if (shipc_kv_keys(h, "beings_status", NULL, &keys, &n) < 0) {
		if (errno == ENOENT) {
			if (json)
				puts("[]");
			else
				puts("no being registry (bucket beings_status) yet");
			return 0;
		}
		return fail("fleet robots", errno);
	}
	if (json)
		fputc('[', stdout);
	else
		printf("%-24s %-8s %-30s %s\n", "BEING", "STATE", "LAST HEARTBEAT",
		       "TASK");
	int shown = 0;
	for (size_t i = 0; i < n; i++) {
		struct shipc_kv_entry *e = NULL;
		if (shipc_kv_get(h, "beings_status", keys[i], 0, &e) < 0)
			continue; /* gone meanwhile */
		const char *v = e->value;
		if (json) {
			if (jscan_valid(v, e->len) == 0) {
				fputs(shown++ ? "," : "", stdout);
				fwrite(v, 1, e->len, stdout);
			}
		} else {
			char state[32], beat[64], task[128];
			being_str(v, e->len, "state", state, sizeof(state));
			being_str(v, e->len, "last_heartbeat", beat, sizeof(beat));
			being_str(v, e->len, "current_task", task, sizeof(task));
			printf("%-24s %-8s %-30s %s\n", keys[i], state, beat, task);
			shown++;
		}
		shipc_kv_entry_free(e);
	}
	if (json)
		puts("]");
	shipc_kv_keys_free(keys, n);
	return 0;
}

const struct cmd fleet_cmds[] = {
	{"fleet check", cmd_check, "[--config FILE] [--leaf-conf FILE]",
	 "check this robot's fleet profile and its path to the hub"},
	{"fleet status", cmd_status, "",
	 "the uplink to the hub, where each block is, what the hub has not "
	 "sourced yet (exit 1 unless the hub answers)"},
	{"fleet robots", cmd_robots, "",
	 "the beings in the fleet's registry (bucket beings_status)"},
	{NULL, NULL, NULL, NULL},
};
