/* SPDX-License-Identifier: MIT */
/* Who may do what: the "allow" rules of the configuration, bound to each
 * connection's kernel identity when it connects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shipd.h"

static const char *const op_names[POL_N] = {
	[POL_PUBLISH] = "publish",     [POL_SUBSCRIBE] = "subscribe",
	[POL_REQUEST] = "request",     [POL_EMIT] = "emit",
	[POL_CONSUME] = "consume",     [POL_CHANNEL] = "channel",
	[POL_KV_READ] = "kv-read",     [POL_KV_WRITE] = "kv-write",
	[POL_KV_ADMIN] = "kv-admin",   [POL_STREAM_ADMIN] = "stream-admin",
	[POL_BEING] = "being",         [POL_OBJ_READ] = "obj-read",
	[POL_OBJ_WRITE] = "obj-write", [POL_OBJ_ADMIN] = "obj-admin",
	[POL_JOBS] = "jobs",           [POL_SERVICE] = "service",
	[POL_ADMIN] = "admin",
};

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

/* A skeleton: no rules yet, everything allowed. */
struct policy {
	int unused;
};

struct policy_view {
	int unused;
};

int policy_add_rule(struct policy **p, const char *value, const char *file,
                    int line, char *err, size_t errlen)
{
	snprintf(err, errlen, "allow: not supported yet");
	return -1;
}

void policy_free(struct policy *p)
{
	free(p);
}

void policy_print(const struct policy *p, FILE *f)
{
}

char **policy_rules(const struct policy *p, size_t *n)
{
	*n = 0;
	return NULL;
}

bool policy_enforced(const struct policy *p)
{
	return false;
}

struct policy_view *policy_bind(const struct policy *p,
                                const struct identity *id)
{
	return NULL;
}

void policy_view_free(struct policy_view *v)
{
	free(v);
}

bool policy_allows(const struct policy_view *v, enum pol_op op,
                   const char *resource, char *rule, size_t rulelen)
{
	if (rule && rulelen)
		snprintf(rule, rulelen, "no rules: every app may do everything");
	return true;
}
