/* SPDX-License-Identifier: MIT */
/* Who may do what: the "allow" rules of the configuration, bound to each
 * connection's kernel identity when it connects. */
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shipd.h"

#define MAX_RULES 1024
#define MAX_PATTERN 255
/* "*" in a rule's operations: all but admin and monitor (which shows
 * other apps' traffic), which must be named. */
#define ALL_BUT_ADMIN                                                      \
	(((1u << POL_N) - 1) & ~(1u << POL_ADMIN) & ~(1u << POL_MONITOR))

static const char *const op_names[POL_N] = {
	[POL_PUBLISH] = "publish",     [POL_SUBSCRIBE] = "subscribe",
	[POL_REQUEST] = "request",     [POL_EMIT] = "emit",
	[POL_CONSUME] = "consume",     [POL_CHANNEL] = "channel",
	[POL_KV_READ] = "kv-read",     [POL_KV_WRITE] = "kv-write",
	[POL_KV_ADMIN] = "kv-admin",   [POL_STREAM_ADMIN] = "stream-admin",
	[POL_BEING] = "being",         [POL_OBJ_READ] = "obj-read",
	[POL_OBJ_WRITE] = "obj-write", [POL_OBJ_ADMIN] = "obj-admin",
	[POL_JOBS_SUBMIT] = "jobs-submit",
	[POL_JOBS_CLAIM] = "jobs-claim",
	[POL_JOBS_ADMIN] = "jobs-admin", [POL_SERVICE] = "service",
	[POL_ADMIN] = "admin",         [POL_MONITOR] = "monitor",
};

/* Names that stand for several operations. */
static const struct {
	const char *name;
	uint32_t ops;
} shorthands[] = {
	{"pubsub", 1u << POL_PUBLISH | 1u << POL_SUBSCRIBE | 1u << POL_REQUEST},
	{"kv", 1u << POL_KV_READ | 1u << POL_KV_WRITE},
	{"jobs", 1u << POL_JOBS_SUBMIT | 1u << POL_JOBS_CLAIM},
	{"*", ALL_BUT_ADMIN},
};

static const char *const admin_names[] = {"reload", "clients", "policy"};

const char *pol_op_name(enum pol_op op)
{
	return op < POL_N ? op_names[op] : "?";
}

int pol_op_parse(const char *name)
{
	for (int i = 0; i < POL_N; i++)
		if (!strcmp(name, op_names[i]))
			return i;
	return -1;
}

enum who_kind { WHO_ANY, WHO_USER, WHO_UID, WHO_GROUP, WHO_GID, WHO_UNIT };

/* Whom a line names: the WHO of "allow" and "quota". */
struct who {
	enum who_kind kind;
	char *name;   /* user, group or unit (a trailing '*' globs) */
	uint32_t num; /* uid or gid */
};

struct rule {
	char *where; /* "file:line" */
	char *text;  /* "WHO OPS RESOURCES", as written, blanks normalized */
	struct who who;
	uint32_t ops; /* bit per enum pol_op */
	char **res;
	size_t n_res;
};

/* A "quota" line: the limits of each app it names. */
struct quota_line {
	char *where;
	char *text; /* "WHO KEY=VALUE...", blanks normalized */
	struct who who;
	struct quota q;
};

struct policy {
	struct rule *rules;
	size_t n, cap;
	struct quota_line *quotas;
	size_t n_quotas, cap_quotas;
};

/* A rule as bound to one identity: placeholders filled in. */
struct bound {
	uint32_t ops;
	char **res;
	size_t n_res;
	char *rule; /* "file:line: allow = ..." */
};

struct policy_view {
	bool privileged;
	bool oom; /* the snapshot could not be made: refuse everything */
	char who[400];
	struct bound *rules;
	size_t n;
};

/* What a failed bind hands out, so that shipd fails closed. */
static struct policy_view no_memory = {.oom = true};

/* ---- parsing ---- */

static void rule_free(struct rule *r)
{
	free(r->where);
	free(r->text);
	free(r->who.name);
	for (size_t i = 0; i < r->n_res; i++)
		free(r->res[i]);
	free(r->res);
}

static bool parse_num(const char *s, uint32_t *out)
{
	char *end;
	if (!isdigit((unsigned char)*s))
		return false;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (errno || *end || n >= UINT32_MAX) /* (uid_t)-1 names nobody */
		return false;
	*out = (uint32_t)n;
	return true;
}

/* WHO of line key ("allow" or "quota", for the messages). */
static int parse_who(struct who *w, const char *key, const char *s, char *err,
                     size_t errlen)
{
	static const struct {
		const char *prefix;
		enum who_kind who;
	} kinds[] = {
		{"user:", WHO_USER}, {"uid:", WHO_UID},   {"group:", WHO_GROUP},
		{"gid:", WHO_GID},   {"unit:", WHO_UNIT},
	};
	if (!strcmp(s, "*")) {
		w->kind = WHO_ANY;
		return 0;
	}
	for (size_t i = 0; i < NITEMS(kinds); i++) {
		size_t n = strlen(kinds[i].prefix);
		if (strncmp(s, kinds[i].prefix, n))
			continue;
		const char *v = s + n;
		w->kind = kinds[i].who;
		if (w->kind == WHO_UID || w->kind == WHO_GID) {
			if (parse_num(v, &w->num))
				return 0;
			snprintf(err, errlen, "%s: '%s': '%s' is not a number", key,
			         s, v);
			return -1;
		}
		const char *star = strchr(v, '*');
		if (!*v || (star && (w->kind != WHO_UNIT || star[1]))) {
			snprintf(err, errlen, "%s: '%s': expected a name%s", key, s,
			         w->kind == WHO_UNIT ? " (a '*' only at its end)"
			                             : "");
			return -1;
		}
		if (!(w->name = strdup(v))) {
			snprintf(err, errlen, "%s: out of memory", key);
			return -1;
		}
		return 0;
	}
	snprintf(err, errlen,
	         "%s: '%s' is not *, user:NAME, uid:N, group:NAME, gid:N or "
	         "unit:NAME",
	         key, s);
	return -1;
}

static int parse_ops(struct rule *r, char *s, char *err, size_t errlen)
{
	char *save = NULL;
	if (*s == ',' || s[strlen(s) - 1] == ',' || strstr(s, ",,")) {
		snprintf(err, errlen, "allow: empty operation in '%s'", s);
		return -1;
	}
	for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int op = pol_op_parse(t);
		if (op >= 0) {
			r->ops |= 1u << op;
			continue;
		}
		size_t i = 0;
		while (i < NITEMS(shorthands) && strcmp(t, shorthands[i].name))
			i++;
		if (i == NITEMS(shorthands)) {
			snprintf(err, errlen,
			         "allow: unknown operation '%s' (publish, subscribe, "
			         "request, emit, consume, channel, kv-read, kv-write, "
			         "kv-admin, stream-admin, being, obj-read, obj-write, "
			         "obj-admin, jobs-submit, jobs-claim, jobs-admin, "
			         "service, admin, pubsub, kv, jobs or *)",
			         t);
			return -1;
		}
		r->ops |= shorthands[i].ops;
	}
	return 0;
}

/* A subject pattern: tokens separated by dots, "*" for one token, ">" for
 * the rest (last only), and the placeholders {user} and {unit}. */
static int check_pattern(const char *p, char *err, size_t errlen)
{
	size_t len = strlen(p);
	if (len > MAX_PATTERN) {
		snprintf(err, errlen, "allow: '%.40s...' is longer than %d bytes", p,
		         MAX_PATTERN);
		return -1;
	}
	for (const char *t = p;; t++) {
		size_t n = strcspn(t, ".");
		if (n == 0) {
			snprintf(err, errlen, "allow: empty token in '%s'", p);
			return -1;
		}
		bool wild = memchr(t, '*', n) || memchr(t, '>', n);
		if (wild && n != 1) {
			snprintf(err, errlen,
			         "allow: '%s': * and > stand for whole tokens", p);
			return -1;
		}
		if (*t == '>' && t[1]) {
			snprintf(err, errlen, "allow: '%s': > only as the last token",
			         p);
			return -1;
		}
		for (const char *c = t; c < t + n; c++) {
			if (*c == '{' && (!strncmp(c, "{user}", 6) ||
			                  !strncmp(c, "{unit}", 6))) {
				c += 5;
			} else if (*c == '{' || *c == '}') {
				snprintf(err, errlen,
				         "allow: '%s': the placeholders are {user} and "
				         "{unit}",
				         p);
				return -1;
			}
		}
		t += n;
		if (!*t)
			return 0;
	}
}

static bool is_admin_name(const char *s)
{
	for (size_t i = 0; i < NITEMS(admin_names); i++)
		if (!strcmp(s, admin_names[i]))
			return true;
	return !strcmp(s, "*") || !strcmp(s, ">");
}

static int parse_resources(struct rule *r, char *s, char *err, size_t errlen)
{
	char *save = NULL;
	if (*s == ',' || s[strlen(s) - 1] == ',' || strstr(s, ",,")) {
		snprintf(err, errlen, "allow: empty resource in '%s'", s);
		return -1;
	}
	for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (check_pattern(t, err, errlen) < 0)
			return -1;
		/* A rule only for admin names admin operations: catch typos. */
		if (r->ops == 1u << POL_ADMIN && !is_admin_name(t)) {
			snprintf(err, errlen,
			         "allow: '%s' is not an admin operation (reload, "
			         "clients, policy or *)",
			         t);
			return -1;
		}
		char **res = realloc(r->res, (r->n_res + 1) * sizeof(*res));
		if (!res)
			return -1;
		r->res = res;
		if (!(r->res[r->n_res] = strdup(t)))
			return -1;
		r->n_res++;
	}
	return 0;
}

/* The value with blanks around commas taken out and others squeezed to
 * one space, so "a, b" lists read as one word. */
static char *normalize(const char *v)
{
	char *out = malloc(strlen(v) + 1), *o = out;
	if (!out)
		return NULL;
	for (const char *s = v; *s;) {
		if (!isspace((unsigned char)*s)) {
			*o++ = *s++;
			continue;
		}
		while (isspace((unsigned char)*s))
			s++;
		if (o > out && o[-1] != ',' && *s && *s != ',')
			*o++ = ' ';
	}
	*o = '\0';
	return out;
}

static int parse_rule(struct rule *r, const char *value, char *err,
                      size_t errlen)
{
	char *words[4] = {0}, *save = NULL;
	int n = 0;
	r->text = normalize(value);
	char *copy = r->text ? strdup(r->text) : NULL;
	if (!copy) {
		snprintf(err, errlen, "allow: out of memory");
		return -1;
	}
	for (char *t = strtok_r(copy, " ", &save); t && n < 4;
	     t = strtok_r(NULL, " ", &save))
		words[n++] = t;
	int rc = -1;
	err[0] = '\0';
	if (n != 3)
		snprintf(err, errlen,
		         "allow: expected WHO OP[,OP...] RESOURCE[,RESOURCE...]");
	else if (parse_who(&r->who, "allow", words[0], err, errlen) == 0 &&
	         parse_ops(r, words[1], err, errlen) == 0 &&
	         parse_resources(r, words[2], err, errlen) == 0)
		rc = 0;
	if (rc < 0 && !err[0])
		snprintf(err, errlen, "allow: out of memory");
	free(copy);
	return rc;
}

int policy_add_rule(struct policy **pp, const char *value, const char *file,
                    int line, char *err, size_t errlen)
{
	struct policy *p = *pp;
	if (p && p->n == MAX_RULES) {
		snprintf(err, errlen, "allow: more than %d rules", MAX_RULES);
		return -1;
	}
	struct rule r = {0};
	if (parse_rule(&r, value, err, errlen) < 0)
		goto error;
	int wn = line > 0 ? asprintf(&r.where, "%s:%d", file, line)
	                  : asprintf(&r.where, "%s", file);
	if (wn < 0) {
		r.where = NULL;
		goto oom;
	}
	if (!p && !(p = *pp = calloc(1, sizeof(*p))))
		goto oom;
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 16;
		struct rule *rules = realloc(p->rules, cap * sizeof(*rules));
		if (!rules)
			goto oom;
		p->rules = rules;
		p->cap = cap;
	}
	p->rules[p->n++] = r;
	return 0;
oom:
	snprintf(err, errlen, "allow: out of memory");
error:
	rule_free(&r);
	return -1;
}

/* ---- quotas ---- */

static const struct {
	const char *name;
	uint32_t min, max;
} quota_keys[QUOTA_N] = {
	[QUOTA_CONNECTIONS] = {"connections", 1, 1000000},
	[QUOTA_SUBSCRIPTIONS] = {"subscriptions", 0, 10000000},
	[QUOTA_REQUESTS] = {"requests", 0, 10000000},
	[QUOTA_BYTES] = {"bytes", 0, UINT32_MAX},
};

const char *quota_key_name(enum quota_key k)
{
	return k < QUOTA_N ? quota_keys[k].name : "?";
}

/* A number with an optional k or M (times 1024), as the other limits. */
static int parse_limit(enum quota_key k, const char *v, uint32_t *out,
                       char *err, size_t errlen)
{
	const char *name = quota_keys[k].name;
	char *end;
	errno = 0;
	unsigned long long n = isdigit((unsigned char)*v) ? strtoull(v, &end, 10)
	                                                 : 0;
	unsigned long long mult = 1;
	if (!isdigit((unsigned char)*v) || errno) {
		snprintf(err, errlen, "quota: %s: '%s' is not a number", name, v);
		return -1;
	}
	if (*end == 'k' || *end == 'K')
		mult = 1024, end++;
	else if (*end == 'M')
		mult = 1024 * 1024, end++;
	if (*end) {
		snprintf(err, errlen, "quota: %s: '%s' is not a number", name, v);
		return -1;
	}
	if (n > UINT32_MAX / mult || n * mult < quota_keys[k].min ||
	    n * mult > quota_keys[k].max) {
		snprintf(err, errlen, "quota: %s: %s is out of range %u..%u", name,
		         v, quota_keys[k].min, quota_keys[k].max);
		return -1;
	}
	*out = (uint32_t)(n * mult);
	return 0;
}

static int parse_setting(struct quota *q, bool *seen, char *s, char *err,
                         size_t errlen)
{
	char *eq = strchr(s, '=');
	if (!eq || eq == s) {
		snprintf(err, errlen, "quota: '%s' is not KEY=VALUE", s);
		return -1;
	}
	*eq = '\0';
	int k = 0;
	while (k < QUOTA_N && strcmp(s, quota_keys[k].name))
		k++;
	if (k == QUOTA_N) {
		snprintf(err, errlen,
		         "quota: unknown key '%s' (connections, subscriptions, "
		         "requests or bytes)",
		         s);
		return -1;
	}
	if (seen[k]) {
		snprintf(err, errlen, "quota: %s given twice", s);
		return -1;
	}
	seen[k] = true;
	return parse_limit(k, eq + 1, &q->max[k], err, errlen);
}

static void quota_line_free(struct quota_line *l)
{
	free(l->where);
	free(l->text);
	free(l->who.name);
}

static int parse_quota(struct quota_line *l, const char *value, char *err,
                       size_t errlen)
{
	bool seen[QUOTA_N] = {0};
	char *save = NULL;
	for (int k = 0; k < QUOTA_N; k++)
		l->q.max[k] = QUOTA_NONE;
	l->text = normalize(value);
	char *copy = l->text ? strdup(l->text) : NULL;
	if (!copy) {
		snprintf(err, errlen, "quota: out of memory");
		return -1;
	}
	int rc = 0, n = 0;
	for (char *t = strtok_r(copy, " ", &save); t && rc == 0;
	     t = strtok_r(NULL, " ", &save), n++)
		rc = n == 0 ? parse_who(&l->who, "quota", t, err, errlen)
		            : parse_setting(&l->q, seen, t, err, errlen);
	if (rc == 0 && n < 2) {
		snprintf(err, errlen,
		         "quota: expected WHO KEY=VALUE [KEY=VALUE...] (keys: "
		         "connections, subscriptions, requests, bytes)");
		rc = -1;
	}
	free(copy);
	return rc;
}

int policy_add_quota(struct policy **pp, const char *value, const char *file,
                     int line, char *err, size_t errlen)
{
	struct policy *p = *pp;
	if (p && p->n_quotas == MAX_RULES) {
		snprintf(err, errlen, "quota: more than %d lines", MAX_RULES);
		return -1;
	}
	struct quota_line l = {0};
	if (parse_quota(&l, value, err, errlen) < 0)
		goto error;
	int wn = line > 0 ? asprintf(&l.where, "%s:%d", file, line)
	                  : asprintf(&l.where, "%s", file);
	if (wn < 0) {
		l.where = NULL;
		goto oom;
	}
	if (!p && !(p = *pp = calloc(1, sizeof(*p))))
		goto oom;
	if (p->n_quotas == p->cap_quotas) {
		size_t cap = p->cap_quotas ? p->cap_quotas * 2 : 8;
		struct quota_line *q = realloc(p->quotas, cap * sizeof(*q));
		if (!q)
			goto oom;
		p->quotas = q;
		p->cap_quotas = cap;
	}
	snprintf(l.q.where, sizeof(l.q.where), "%s", l.where);
	p->quotas[p->n_quotas++] = l;
	return 0;
oom:
	snprintf(err, errlen, "quota: out of memory");
error:
	quota_line_free(&l);
	return -1;
}

size_t policy_quota_count(const struct policy *p)
{
	return p ? p->n_quotas : 0;
}

void policy_print_quotas(const struct policy *p, FILE *f)
{
	for (size_t i = 0; p && i < p->n_quotas; i++)
		fprintf(f, "quota = %s\n", p->quotas[i].text);
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		rule_free(&p->rules[i]);
	free(p->rules);
	for (size_t i = 0; i < p->n_quotas; i++)
		quota_line_free(&p->quotas[i]);
	free(p->quotas);
	free(p);
}

void policy_print(const struct policy *p, FILE *f)
{
	for (size_t i = 0; p && i < p->n; i++)
		fprintf(f, "allow = %s\n", p->rules[i].text);
}

char **policy_rules(const struct policy *p, size_t *n)
{
	size_t nr = p ? p->n : 0, nq = p ? p->n_quotas : 0;
	/* Never NULL for an empty list: NULL means out of memory. */
	char **list = calloc(nr + nq + 1, sizeof(*list));
	*n = 0;
	if (!list)
		return NULL;
	/* The rules, then the quotas: one list, so show keeps its proto. */
	for (size_t i = 0; i < nr + nq; i++) {
		int rc = i < nr ? asprintf(&list[i], "%s: allow = %s",
		                           p->rules[i].where, p->rules[i].text)
		                : asprintf(&list[i], "%s: quota = %s",
		                           p->quotas[i - nr].where,
		                           p->quotas[i - nr].text);
		if (rc < 0) {
			while (i > 0)
				free(list[--i]);
			free(list);
			return NULL;
		}
	}
	*n = nr + nq;
	return list;
}

bool policy_enforced(const struct policy *p)
{
	return p && p->n > 0;
}

/* ---- binding ---- */

static bool in_groups(const struct identity *id, gid_t g)
{
	if (id->gid == g)
		return true;
	int n = id->n_groups < (int)NITEMS(id->groups) ? id->n_groups
	                                               : (int)NITEMS(id->groups);
	for (int i = 0; i < n; i++)
		if (id->groups[i] == g)
			return true;
	return false;
}

/* The group's gid, looked up now: groups may be made after shipd read its
 * configuration. */
static bool group_gid(const char *name, gid_t *gid)
{
	struct group gr, *res = NULL;
	size_t size = 1024;
	for (;;) {
		char *buf = malloc(size);
		if (!buf)
			return false;
		int e = getgrnam_r(name, &gr, buf, size, &res);
		if (e == ERANGE && size < (1u << 20)) {
			free(buf);
			size *= 4;
			continue;
		}
		bool found = e == 0 && res;
		if (found)
			*gid = gr.gr_gid;
		free(buf);
		return found;
	}
}

/* The last group looked up while binding: rules tend to name one group
 * on several lines, and each lookup may read /etc/group. */
struct group_cache {
	const char *name;
	bool found;
	gid_t gid;
};

static bool names(const struct who *r, const struct identity *id,
                  struct group_cache *gc)
{
	switch (r->kind) {
	case WHO_ANY:
		return true;
	case WHO_USER:
		return !strcmp(r->name, id->user);
	case WHO_UID:
		return r->num == id->uid;
	case WHO_GID:
		return in_groups(id, r->num);
	case WHO_GROUP:
		if (!gc->name || strcmp(gc->name, r->name)) {
			gc->name = r->name;
			gc->found = group_gid(r->name, &gc->gid);
		}
		return gc->found && in_groups(id, gc->gid);
	case WHO_UNIT: {
		size_t n = strlen(r->name);
		if (!id->unit[0])
			return false;
		if (r->name[n - 1] == '*')
			return !strncmp(r->name, id->unit, n - 1);
		return !strcmp(r->name, id->unit);
	}
	}
	return false;
}

/* A value put into a pattern must stay one token and no wildcard. */
static bool safe_value(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s == '.' || *s == '*' || *s == '>' ||
		    isspace((unsigned char)*s) || iscntrl((unsigned char)*s))
			return false;
	return true;
}

/* p with its placeholders filled in; NULL in *out (and 0) when a value
 * is unsafe or missing, so the rule names nothing; -1 out of memory. */
static int substitute(const char *p, const char *user, const char *unit,
                      char **out)
{
	char *buf = NULL;
	size_t len = 0;
	*out = NULL;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return -1;
	bool ok = true;
	for (const char *c = p; *c; c++) {
		const char *v = !strncmp(c, "{user}", 6)   ? user
		                : !strncmp(c, "{unit}", 6) ? unit
		                                           : NULL;
		if (!v) {
			fputc(*c, f);
			continue;
		}
		ok = ok && safe_value(v);
		fputs(v, f);
		c += 5;
	}
	if (fclose(f) != 0) {
		free(buf);
		return -1;
	}
	if (ok)
		*out = buf;
	else
		free(buf);
	return 0;
}

static void bound_free(struct bound *b)
{
	for (size_t i = 0; i < b->n_res; i++)
		free(b->res[i]);
	free(b->res);
	free(b->rule);
}

/* r for id into b; 0 with b->n_res 0 when r names id with nothing. */
static int bind_rule(const struct rule *r, const struct identity *id,
                     const char *unit, struct bound *b)
{
	*b = (struct bound){.ops = r->ops};
	if (asprintf(&b->rule, "%s: allow = %s", r->where, r->text) < 0) {
		b->rule = NULL;
		return -1;
	}
	if (!(b->res = calloc(r->n_res, sizeof(*b->res))))
		return -1;
	for (size_t i = 0; i < r->n_res; i++) {
		char *s;
		if (substitute(r->res[i], id->user, unit, &s) < 0)
			return -1;
		if (!s) { /* the whole rule names nothing for id */
			bound_free(b);
			*b = (struct bound){0};
			return 0;
		}
		b->res[b->n_res++] = s;
	}
	return 0;
}

static void describe(char *buf, size_t size, const struct identity *id)
{
	int n = snprintf(buf, size, "user %s (uid %u)", id->user,
	                 (unsigned)id->uid);
	if (id->unit[0] && n >= 0 && (size_t)n < size)
		snprintf(buf + n, size - (size_t)n, ", unit %s", id->unit);
}

struct policy_view *policy_bind(const struct policy *p,
                                const struct identity *id)
{
	if (!policy_enforced(p))
		return NULL;
	struct policy_view *v = calloc(1, sizeof(*v));
	if (!v)
		return &no_memory;
	describe(v->who, sizeof(v->who), id);
	if ((v->privileged = id->privileged))
		return v;
	if (!(v->rules = calloc(p->n, sizeof(*v->rules))))
		goto error;
	/* {unit} is the unit's name without its type: driver.service is
	 * "driver". */
	char unit[sizeof(id->unit)];
	snprintf(unit, sizeof(unit), "%s", id->unit);
	char *dot = strrchr(unit, '.');
	if (dot)
		*dot = '\0';
	struct group_cache gc = {0};
	for (size_t i = 0; i < p->n; i++) {
		if (!names(&p->rules[i].who, id, &gc))
			continue;
		struct bound *b = &v->rules[v->n];
		if (bind_rule(&p->rules[i], id, unit, b) < 0) {
			bound_free(b);
			goto error;
		}
		if (b->n_res)
			v->n++;
	}
	return v;
error:
	policy_view_free(v);
	return &no_memory;
}

void policy_view_free(struct policy_view *v)
{
	if (!v || v == &no_memory)
		return;
	for (size_t i = 0; i < v->n; i++)
		bound_free(&v->rules[i]);
	free(v->rules);
	free(v);
}

bool policy_quota(const struct policy *p, const struct identity *id,
                  struct quota *q)
{
	struct group_cache gc = {0};
	if (!p || id->privileged)
		return false;
	/* The first line that names the app: a specific line goes above a
	 * wide one, as in a firewall. */
	for (size_t i = 0; i < p->n_quotas; i++) {
		if (names(&p->quotas[i].who, id, &gc)) {
			*q = p->quotas[i].q;
			return true;
		}
	}
	return false;
}

/* ---- matching ---- */

/* Whether pattern covers every subject that want matches, token by token
 * ("*" one token, ">" one or more). A literal matches only itself. */
bool policy_covers(const char *pattern, const char *want)
{
	const char *p = pattern, *w = want;
	for (;;) {
		size_t pn = strcspn(p, "."), wn = strcspn(w, ".");
		if (pn == 1 && *p == '>')
			return true; /* w has at least this token */
		if (wn == 1 && *w == '>')
			return false; /* only ">" covers any tail */
		if (!(pn == 1 && *p == '*') &&
		    (pn != wn || memcmp(p, w, pn) || (wn == 1 && *w == '*')))
			return false;
		p += pn;
		w += wn;
		if (!*p || !*w)
			return !*p && !*w;
		p++;
		w++;
	}
}

bool policy_allows(const struct policy_view *v, enum pol_op op,
                   const char *resource, char *rule, size_t rulelen)
{
	const char *why = NULL;
	bool ok = false;
	if (!v) {
		why = "no rules: every app may do everything";
		ok = true;
	} else if (v->oom) {
		why = "shipd ran out of memory binding the rules at connect";
	} else if (v->privileged) {
		why = "root and shipd's own user may do everything";
		ok = true;
	} else if (op < POL_N && resource) {
		for (size_t i = 0; i < v->n && !ok; i++) {
			const struct bound *b = &v->rules[i];
			if (!(b->ops & 1u << op))
				continue;
			for (size_t j = 0; j < b->n_res && !ok; j++)
				if (policy_covers(b->res[j], resource))
					ok = true, why = b->rule;
		}
	}
	if (!rule || !rulelen)
		return ok;
	if (why)
		snprintf(rule, rulelen, "%s", why);
	else
		snprintf(rule, rulelen, "no rule grants %s on '%.200s' to %s",
		         pol_op_name(op), resource ? resource : "", v->who);
	return ok;
}
