/* SPDX-License-Identifier: MIT */
/* Durables: which ones subscriptions of this shipd have open (one app's,
 * or shared), and how an existing one's settings differ from a request. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shipd.h"

/* ---- durables in use ---- */

/* A durable (stream and name) pulled by subscriptions of this shipd: one
 * app's, or shared by every one of them if each asked for it. */
struct durable {
	struct durable *next; /* another durable with the same hash */
	uint64_t hash;
	char *key; /* "<stream> <name>": names have no spaces */
	bool shared;
	TAILQ_HEAD(, consumer) users;
};

static struct ipc_idmap durables; /* hash -> chain of struct durable */

static uint64_t hash_of(const char *key)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	return h == 0 || h == UINT64_MAX ? 1 : h; /* keys the map takes */
}

static char *key_of(const char *stream, const char *name)
{
	size_t n = strlen(stream) + strlen(name) + 2;
	char *key = malloc(n);
	if (key)
		snprintf(key, n, "%s %s", stream, name);
	return key;
}

struct durable *durable_find(const char *stream, const char *name)
{
	char *key = key_of(stream, name);
	struct durable *d = NULL;
	if (key)
		for (d = ipc_idmap_get(&durables, hash_of(key)); d;
		     d = d->next)
			if (!strcmp(d->key, key))
				break;
	free(key);
	return d;
}

/* k is one more user of its durable; -1 if out of memory. */
int durable_take(struct consumer *k, bool shared)
{
	struct durable *d = durable_find(k->stream, k->name);
	if (!d) {
		if (!(d = calloc(1, sizeof(*d))) ||
		    !(d->key = key_of(k->stream, k->name))) {
			free(d);
			return -1;
		}
		d->hash = hash_of(d->key);
		d->shared = shared;
		TAILQ_INIT(&d->users);
		d->next = ipc_idmap_get(&durables, d->hash);
		if (ipc_idmap_put(&durables, d->hash, d) < 0) {
			free(d->key);
			free(d);
			return -1;
		}
	}
	TAILQ_INSERT_TAIL(&d->users, k, use_entry);
	k->use = d;
	return 0;
}

void durable_release(struct consumer *k)
{
	struct durable *d = k->use;
	if (!d)
		return;
	k->use = NULL;
	TAILQ_REMOVE(&d->users, k, use_entry);
	if (!TAILQ_EMPTY(&d->users))
		return;
	struct durable *head = ipc_idmap_get(&durables, d->hash);
	if (head == d) {
		if (d->next)
			ipc_idmap_put(&durables, d->hash, d->next); /* replaces */
		else
			ipc_idmap_del(&durables, d->hash);
	} else {
		while (head->next != d)
			head = head->next;
		head->next = d->next;
	}
	free(d->key);
	free(d);
}

/* A durable another subscription of this shipd pulls: refused (answered,
 * true) unless both share it. */
bool durable_busy(struct client *c, uint64_t id,
                  const struct consumer_spec *sp)
{
	struct durable *d = durable_find(sp->stream, sp->durable);
	if (!d || (d->shared && sp->shared))
		return false;
	struct consumer *other = TAILQ_FIRST(&d->users);
	uint64_t cid = other && other->st.c ? other->st.c->cid : 0;
	if (sp->fixed)
		client_error(c, id, SHIP__CODE__CONFLICT,
		             "durable '%s' is in use by another listener "
		             "(client %" PRIu64 ")",
		             sp->durable, cid);
	else
		client_error(c, id, SHIP__CODE__CONFLICT,
		             "durable '%s' is in use by another subscription "
		             "(client %" PRIu64 "); set shared on both to share it",
		             sp->durable, cid);
	return true;
}

void durable_finish(void)
{
	ipc_idmap_finish(&durables);
}

/* ---- settings of an existing durable ---- */

static void diff_add(struct durable_diff *d, bool fixed, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void diff_add(struct durable_diff *d, bool fixed, const char *fmt, ...)
{
	va_list ap;
	if (d->n < sizeof(d->text) && d->count)
		d->n += (size_t)snprintf(d->text + d->n, sizeof(d->text) - d->n,
		                         ", ");
	if (d->n < sizeof(d->text)) {
		va_start(ap, fmt);
		d->n += (size_t)vsnprintf(d->text + d->n, sizeof(d->text) - d->n,
		                          fmt, ap);
		va_end(ap);
	}
	d->count++;
	d->fixed |= fixed;
}

const char *durable_str(json_t *cfg, const char *key)
{
	const char *s = json_string_value(json_object_get(cfg, key));
	return s ? s : "";
}

static json_int_t int_of(json_t *cfg, const char *key, json_int_t dflt)
{
	json_t *v = json_object_get(cfg, key);
	return json_is_integer(v) ? json_integer_value(v) : dflt;
}

/* "none", or the steps in ms. */
static void backoff_text(json_t *b, char *buf, size_t size)
{
	size_t n = 0, i;
	json_t *v;
	if (!json_array_size(b)) {
		snprintf(buf, size, "none");
		return;
	}
	json_array_foreach(b, i, v) {
		if (n < size)
			n += (size_t)snprintf(buf + n, size - n, "%s%" PRId64,
			                      i ? "," : "[",
			                      (int64_t)json_integer_value(v) / 1000000);
	}
	if (n < size)
		snprintf(buf + n, size - n, "] ms");
}

static bool backoff_equal(json_t *a, json_t *b)
{
	size_t n = json_array_size(a);
	if (n != json_array_size(b))
		return false;
	for (size_t i = 0; i < n; i++)
		if (json_integer_value(json_array_get(a, i)) !=
		    json_integer_value(json_array_get(b, i)))
			return false;
	return true;
}

static void max_deliver_text(json_int_t v, char *buf, size_t size)
{
	if (v <= 0)
		snprintf(buf, size, "unlimited");
	else
		snprintf(buf, size, "%" PRId64, (int64_t)v);
}

/* A subject pattern with a * or > token. */
static bool wildcard(const char *subject)
{
	for (const char *t = subject; t; t = strchr(t, '.')) {
		t += *t == '.';
		if ((t[0] == '*' || t[0] == '>') && (t[1] == '.' || !t[1]))
			return true;
	}
	return false;
}

/* Compare what the server has (have) with what is asked (want), in the
 * settings an app names: the start (deliver policy, start sequence or
 * time) is not one of them, it only applies when the durable is made. */
void durable_diff(json_t *have, json_t *want, struct durable_diff *d)
{
	const char *hs = durable_str(have, "deliver_subject");
	if (*hs)
		diff_add(d, true, "a push consumer (deliver_subject '%.64s')", hs);
	const char *ha = durable_str(have, "ack_policy"), *wa = durable_str(want, "ack_policy");
	if (strcmp(ha, wa))
		diff_add(d, true, "ack_policy %s (asked %s)", *ha ? ha : "none", wa);
	json_t *hb = json_object_get(have, "backoff");
	json_t *wb = json_object_get(want, "backoff");
	/* With a backoff the server takes its first step as the ack wait. */
	json_int_t hw = int_of(have, "ack_wait", 0);
	json_int_t ww = json_array_size(wb)
	                        ? json_integer_value(json_array_get(wb, 0))
	                        : int_of(want, "ack_wait", 0);
	if (hw != ww)
		diff_add(d, false, "ack_wait %" PRId64 " ms (asked %" PRId64 " ms)",
		         (int64_t)hw / 1000000, (int64_t)ww / 1000000);
	json_int_t hm = int_of(have, "max_deliver", -1);
	json_int_t wm = int_of(want, "max_deliver", -1);
	if ((hm <= 0 ? -1 : hm) != (wm <= 0 ? -1 : wm)) {
		char a[32], b[32];
		max_deliver_text(hm, a, sizeof(a));
		max_deliver_text(wm, b, sizeof(b));
		diff_add(d, false, "max_deliver %s (asked %s)", a, b);
	}
	if (!backoff_equal(hb, wb)) {
		char a[96], b[96];
		backoff_text(hb, a, sizeof(a));
		backoff_text(wb, b, sizeof(b));
		diff_add(d, false, "backoff %s (asked %s)", a, b);
	}
	const char *hf = durable_str(have, "filter_subject");
	const char *wf = durable_str(want, "filter_subject");
	/* JetStream 2.9.10 takes that update and then delivers nothing
	 * more (seen here): not asked of it. */
	bool to_wild = *hf && !wildcard(hf) && wildcard(wf);
	if (strcmp(hf, wf))
		diff_add(d, to_wild, "filter '%.96s%s' (asked '%.96s%s'%s)", hf,
		         strlen(hf) > 96 ? "..." : "", wf,
		         strlen(wf) > 96 ? "..." : "",
		         to_wild ? ", a wildcard where there was none" : "");
}

/* The durable's own config with the settings asked for: what an update
 * sends. Its start stays as it is (JetStream 2.9 refuses to change it). */
json_t *durable_updated_config(json_t *have, json_t *want)
{
	json_t *cfg = json_deep_copy(have);
	if (!cfg)
		return NULL;
	static const char *keys[] = {"filter_subject", "ack_wait", "max_deliver",
	                             "backoff"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(want, keys[i]);
		if (v)
			json_object_set(cfg, keys[i], v);
		else
			json_object_del(cfg, keys[i]);
	}
	return cfg;
}
