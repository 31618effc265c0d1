/* SPDX-License-Identifier: MIT */
/*
 * JobQueue: fleet-wide jobs in NATS KV.
 *
 * A queue is the KV bucket JOBS_<queue>: "job.<id>" holds a job's JSON,
 * "config" the queue's settings, "seq" the counter of ids and
 * "idem.<sha-256 hex>" the id an idempotency key made. Every change of a
 * job reads it and writes it back only if its revision is still the one
 * read (compare-and-swap), so two shipds never both claim one job and one
 * requeue of an expired lease wins.
 *
 * A queue some local app claims from is followed (kv_follow): its index
 * (struct jidx, no payloads) says which jobs are ready, and waiting claims
 * are served from it as jobs come. A claimed job is held for its client
 * (struct held): shipd renews its lease while the client is connected and
 * requeues it when the client goes. Running jobs of a followed queue whose
 * lease ran out (their worker or its shipd died) are requeued by whichever
 * shipd gets there first, or failed for good (dead letter) after their
 * last attempt.
 *
 * A complete or fail records the claim it ended, "<holder>#<attempt>", in
 * the job's "finished_claim" (until the next claim, cancel or requeue):
 * an app whose finish went unanswered (a timeout, NATS away a moment)
 * tries it again after the first was applied, and that same finish by the
 * same connection of the same claim is answered as the first was.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shipd.h"

#define QUEUE_MAX 200       /* bytes of a queue name: JOBS_ + it fits */
#define QUEUES_MAX 256      /* queues one shipd knows at once */
#define ID_MAX 64
#define PREFIX_MAX 32
#define WORKER_MAX 128
#define HOLDER_MAX 192
#define INDEX_MAX 100000    /* jobs of one followed queue */
#define EDIT_TRIES 8        /* lost compare-and-swaps before giving up */
#define CLAIM_TRIES 16      /* jobs one claim tries */
#define EXPIRY_GRACE_MS 2000
#define TICK_MS 500
#define FOLLOW_IDLE_MS 60000
#define LIST_LIMIT 1000
#define HELD_MAX 1024       /* jobs one connection holds in a queue */
#define PRUNE_EVERY_MS 10000
#define PRUNE_MAX 256       /* finished jobs purged per round */
#define LIST_MAX 100000
#define BACKOFF_MAX_MS (3600 * 1000ull)

#define DEF_MAX_ATTEMPTS 3
#define DEF_LEASE_MS 30000
#define DEF_BACKOFF_MS 1000
#define DEF_KEEP 1000
#define DEF_KEEP_MS (7 * 86400 * 1000ull)

enum jstatus { J_QUEUED, J_RUNNING, J_COMPLETE, J_FAILED, J_UNKNOWN };
static const char *const status_names[] = {"queued", "running", "complete",
                                           "failed"};

struct qconfig {
	uint32_t max_attempts;
	uint64_t lease_ms, backoff_ms, keep, keep_ms;
	char prefix[PREFIX_MAX + 1];
};

/* A job as the index knows it. */
struct jidx {
	struct jidx *next; /* hash chain */
	char id[ID_MAX + 1];
	uint64_t revision;
	enum jstatus status;
	int32_t priority;
	uint64_t queued_at, not_before, lease_until, completed_at;
	char worker[WORKER_MAX + 1];
	bool cancelled;
	bool dead;          /* dead letter: kept until requeued */
	bool busy;          /* an edit of ours is on it */
	uint64_t tried_rev; /* a claim lost it at this revision */
	uint64_t expired_rev; /* an expiry was tried at this revision */
};

struct jreq;
TAILQ_HEAD(jreq_list, jreq);

struct held {
	TAILQ_ENTRY(held) entry;
	struct client *c; /* NULL once the client went */
	char id[ID_MAX + 1];
	uint64_t renew_at;
	bool busy;
};

struct queue {
	TAILQ_ENTRY(queue) entry;
	char name[QUEUE_MAX + 1];
	char bucket[KV_NAME_MAX];
	struct qconfig cfg;
	bool ready;    /* bucket there, config read */
	bool starting; /* ensuring the bucket, reading the config */
	bool finished; /* shipd stops: freed by the ensure still on its way */
	struct jreq_list starting_reqs; /* wait for ready */
	struct kv_req *cfg_req;
	/* following: the index */
	struct kv_follow *follow;
	bool indexed; /* the follow's first values are in */
	struct jidx **table;
	size_t tsize, n_jobs;
	bool index_full;
	struct jreq_list waiters; /* claims waiting for a job */
	TAILQ_HEAD(, held) held;
	struct jreq_list work;    /* detached edits: renewals, requeues */
	struct jreq_list active;  /* the other requests in flight */
	struct js_call *info_call; /* does the queue exist? */
	bool ensuring;            /* kv_ensure on its way (not cancellable) */
	uint64_t pruned_ms;
	uint64_t used_ms;         /* a claim or a held job, last */
	struct event *dispatch;   /* serve the waiters, out of a callback */
};

static TAILQ_HEAD(, queue) queues = TAILQ_HEAD_INITIALIZER(queues);
static size_t n_queues;
static struct event *tick;
static char holder_base[HOLDER_MAX / 2]; /* "<host>/<instance>" */

enum jkind {
	K_SUBMIT, K_CLAIM, K_FINISH, K_CHANGE, K_GET, K_LIST, K_COUNTS,
	K_QCREATE, K_QINFO, K_QDELETE,
	K_RENEW, K_RELEASE, K_EXPIRE, /* detached */
};

/* An edit changes the job and returns 0 (it is written), -1 (taken or
 * changed: not for this request), EDIT_KEEP (nothing to write: answered
 * as read) or a refusal's Ship__Code (refuse()). */
typedef int edit_fn(struct jreq *x, json_t *job, uint64_t now);
#define EDIT_KEEP (-2)

/* A request in flight, or work of shipd's own (op.c NULL, detached). */
struct jreq {
	struct op op;
	TAILQ_ENTRY(jreq) qentry; /* on one of its queue's lists, or none */
	struct jreq_list *on;
	struct queue *q;
	enum jkind kind;
	bool detached;
	bool orphan; /* a claim whose client went while its write was out */
	struct kv_req *kv;
	struct kv_collect *coll;
	struct js_call *call;
	struct event *timer;
	int step, tries, claims;
	bool immediate; /* a claim that does not wait */
	uint64_t deadline; /* a claim's, now_ms() */
	bool create;    /* it makes the queue if missing */
	bool unheld;    /* a finish of a job not held: only a repeat is done */
	char event[24]; /* the lifecycle event the edit makes */
	char id[ID_MAX + 1];
	char worker[WORKER_MAX + 1];
	char holder[HOLDER_MAX + 1];
	/* the edit */
	edit_fn *edit;
	void (*after)(struct jreq *x, const struct js_err *e);
	json_t *job;      /* as written (or read) */
	uint64_t rev;     /* its revision */
	/* what the request said */
	Ship__JobSubmit *sub;
	Ship__JobFinish *fin;
	Ship__JobChange__Op change;
	Ship__JobList *list;
	Ship__JobQueueConfig *qcfg;
	char idem_key[72]; /* "idem.<hex>" */
	uint64_t seq;
};

/* ---- small things ---- */

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool name_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (!n || n > max)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
			return false;
	return true;
}

static bool printable(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n > max)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static enum jstatus status_of(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (s && !strcmp(s, status_names[i]))
			return (enum jstatus)i;
	return J_UNKNOWN;
}

static const char *js(json_t *j, const char *k)
{
	const char *v = json_string_value(json_object_get(j, k));
	return v ? v : "";
}

static uint64_t ju(json_t *j, const char *k)
{
	json_t *v = json_object_get(j, k);
	return json_is_integer(v) && json_integer_value(v) > 0
	               ? (uint64_t)json_integer_value(v)
	               : 0;
}

static void set_u(json_t *j, const char *k, uint64_t v)
{
	json_object_set_new(j, k, json_integer((json_int_t)v));
}

static void set_s(json_t *j, const char *k, const char *v)
{
	json_object_set_new(j, k, v ? json_string(v) : json_null());
}

static void holder_of(struct client *c, char *out, size_t size)
{
	snprintf(out, size, "%s/%" PRIu64, holder_base, c ? c->cid : 0);
}

/* ---- the queue's settings ---- */

static void cfg_defaults(struct qconfig *c)
{
	c->max_attempts = DEF_MAX_ATTEMPTS;
	c->lease_ms = DEF_LEASE_MS;
	c->backoff_ms = DEF_BACKOFF_MS;
	c->keep = DEF_KEEP;
	c->keep_ms = DEF_KEEP_MS;
	snprintf(c->prefix, sizeof(c->prefix), "JOB");
}

static void cfg_from_proto(struct qconfig *c, const Ship__JobQueueConfig *p)
{
	cfg_defaults(c);
	if (p->max_attempts)
		c->max_attempts = p->max_attempts;
	if (p->lease_ms)
		c->lease_ms = p->lease_ms;
	if (p->backoff_ms)
		c->backoff_ms = p->backoff_ms;
	if (p->keep_finished)
		c->keep = p->keep_finished;
	if (p->keep_finished_ms)
		c->keep_ms = p->keep_finished_ms;
	if (p->prefix[0])
		snprintf(c->prefix, sizeof(c->prefix), "%s", p->prefix);
}

static json_t *cfg_json(const struct qconfig *c)
{
	return json_pack("{s:i, s:I, s:I, s:I, s:I, s:s}", "max_attempts",
	                 (int)c->max_attempts, "lease_ms", (json_int_t)c->lease_ms,
	                 "backoff_ms", (json_int_t)c->backoff_ms, "keep_finished",
	                 (json_int_t)c->keep, "keep_finished_ms",
	                 (json_int_t)c->keep_ms, "prefix", c->prefix);
}

static void cfg_from_json(struct qconfig *c, json_t *j)
{
	cfg_defaults(c);
	if (ju(j, "max_attempts"))
		c->max_attempts = (uint32_t)ju(j, "max_attempts");
	if (ju(j, "lease_ms"))
		c->lease_ms = ju(j, "lease_ms");
	if (ju(j, "backoff_ms"))
		c->backoff_ms = ju(j, "backoff_ms");
	if (ju(j, "keep_finished"))
		c->keep = ju(j, "keep_finished");
	if (ju(j, "keep_finished_ms"))
		c->keep_ms = ju(j, "keep_finished_ms");
	if (name_ok(js(j, "prefix"), PREFIX_MAX))
		snprintf(c->prefix, sizeof(c->prefix), "%s", js(j, "prefix"));
}

static void cfg_to_proto(const struct queue *q, Ship__JobQueueConfig *p)
{
	p->queue = (char *)q->name;
	p->max_attempts = q->cfg.max_attempts;
	p->lease_ms = q->cfg.lease_ms;
	p->backoff_ms = q->cfg.backoff_ms;
	p->keep_finished = q->cfg.keep;
	p->keep_finished_ms = q->cfg.keep_ms;
	p->prefix = (char *)q->cfg.prefix;
}

static bool cfg_same(const struct qconfig *a, const struct qconfig *b)
{
	return a->max_attempts == b->max_attempts && a->lease_ms == b->lease_ms &&
	       a->backoff_ms == b->backoff_ms && a->keep == b->keep &&
	       a->keep_ms == b->keep_ms && !strcmp(a->prefix, b->prefix);
}

/* ---- the index ---- */

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static struct jidx *idx_find(struct queue *q, const char *id)
{
	if (!q->tsize)
		return NULL;
	for (struct jidx *x = q->table[hash(id) % q->tsize]; x; x = x->next)
		if (!strcmp(x->id, id))
			return x;
	return NULL;
}

static bool idx_grow(struct queue *q)
{
	size_t ns = q->tsize ? q->tsize * 2 : 64;
	struct jidx **t = calloc(ns, sizeof(*t));
	if (!t)
		return false;
	for (size_t i = 0; i < q->tsize; i++) {
		struct jidx *x, *next;
		for (x = q->table[i]; x; x = next) {
			next = x->next;
			x->next = t[hash(x->id) % ns];
			t[hash(x->id) % ns] = x;
		}
	}
	free(q->table);
	q->table = t;
	q->tsize = ns;
	return true;
}

static void idx_remove(struct queue *q, const char *id)
{
	if (!q->tsize)
		return;
	struct jidx **p = &q->table[hash(id) % q->tsize];
	for (; *p; p = &(*p)->next)
		if (!strcmp((*p)->id, id)) {
			struct jidx *x = *p;
			*p = x->next;
			free(x);
			q->n_jobs--;
			return;
		}
}

static void idx_clear(struct queue *q)
{
	for (size_t i = 0; i < q->tsize; i++) {
		struct jidx *x, *next;
		for (x = q->table[i]; x; x = next) {
			next = x->next;
			free(x);
		}
	}
	free(q->table);
	q->table = NULL;
	q->tsize = q->n_jobs = 0;
	q->indexed = false;
}

static void idx_take(struct queue *q, const char *id, json_t *j, uint64_t rev)
{
	struct jidx *x = idx_find(q, id);
	if (!x) {
		if (q->n_jobs >= INDEX_MAX) {
			if (!q->index_full)
				log_warnx("jobs: queue %s has over %d jobs: those "
				          "past it are not claimed from this shipd",
				          q->name, INDEX_MAX);
			q->index_full = true;
			return;
		}
		if (q->n_jobs >= q->tsize && !idx_grow(q))
			return;
		if (!(x = calloc(1, sizeof(*x))))
			return;
		snprintf(x->id, sizeof(x->id), "%s", id);
		size_t b = hash(id) % q->tsize;
		x->next = q->table[b];
		q->table[b] = x;
		q->n_jobs++;
	} else if (rev < x->revision) {
		return; /* ours was written after: the follow catches up */
	}
	x->revision = rev;
	x->status = status_of(js(j, "status"));
	x->priority = (int32_t)json_integer_value(json_object_get(j, "priority"));
	x->queued_at = ju(j, "queued_at");
	x->not_before = ju(j, "not_before");
	x->lease_until = ju(j, "lease_until");
	x->completed_at = ju(j, "completed_at");
	x->cancelled = json_is_true(json_object_get(j, "cancelled"));
	x->dead = json_is_true(json_object_get(j, "dead_letter"));
	snprintf(x->worker, sizeof(x->worker), "%s", js(j, "worker"));
}

/* Whether a claim by worker may take x now. */
static bool claimable(const struct jidx *x, const char *worker, uint64_t now)
{
	return x->status == J_QUEUED && !x->cancelled && !x->busy &&
	       x->tried_rev != x->revision && x->not_before <= now &&
	       (!x->worker[0] || !strcmp(x->worker, worker));
}

/* Higher priority first, then the oldest, then the smaller id. */
static bool better(const struct jidx *a, const struct jidx *b)
{
	if (!b)
		return true;
	if (a->priority != b->priority)
		return a->priority > b->priority;
	if (a->queued_at != b->queued_at)
		return a->queued_at < b->queued_at;
	return strcmp(a->id, b->id) < 0;
}

static struct jidx *pick(struct queue *q, const char *worker, uint64_t now)
{
	struct jidx *best = NULL;
	for (size_t i = 0; i < q->tsize; i++)
		for (struct jidx *x = q->table[i]; x; x = x->next)
			if (claimable(x, worker, now) && better(x, best))
				best = x;
	return best;
}

/* ---- requests: lifetime ---- */

static void req_unlist(struct jreq *x)
{
	if (x->on) {
		TAILQ_REMOVE(x->on, x, qentry);
		x->on = NULL;
	}
}

static void req_list(struct jreq *x, struct jreq_list *l)
{
	req_unlist(x);
	TAILQ_INSERT_TAIL(l, x, qentry);
	x->on = l;
}

static void req_free(struct jreq *x)
{
	op_end(&x->op);
	req_unlist(x);
	kv_req_cancel(x->kv);
	kv_collect_cancel(x->coll);
	js_cancel(x->call);
	if (x->timer)
		event_free(x->timer);
	json_decref(x->job);
	if (x->sub)
		ship__job_submit__free_unpacked(x->sub, NULL);
	if (x->fin)
		ship__job_finish__free_unpacked(x->fin, NULL);
	if (x->list)
		ship__job_list__free_unpacked(x->list, NULL);
	if (x->qcfg)
		ship__job_queue_config__free_unpacked(x->qcfg, NULL);
	free(x);
}

static void claim_gone(struct jreq *x);

static void req_cancel(struct op *o)
{
	struct jreq *x = container_of(o, struct jreq, op);
	if (x->kind == K_CLAIM && x->kv && x->step == 2) {
		/* Its write is out: if it wins, the job is released. */
		claim_gone(x);
		return;
	}
	struct jidx *ix = x->q ? idx_find(x->q, x->id) : NULL;
	if (ix && x->kind == K_CLAIM && x->step)
		ix->busy = false;
	req_free(x);
}

static struct jreq *req_new(struct client *c, uint64_t id, enum jkind kind)
{
	struct jreq *x = calloc(1, sizeof(*x));
	if (!x) {
		if (c)
			client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	x->kind = kind;
	if (!c) {
		x->detached = true;
		return x;
	}
	if (!op_begin(&x->op, c, id, req_cancel)) {
		free(x);
		return NULL;
	}
	return x;
}

static struct queue *queue_get(struct client *c, uint64_t id,
                               const char *name);

/* A request of kind on queue name that c may make with op; NULL when
 * refused (answered). */
static struct jreq *req_on(struct client *c, uint64_t id, enum pol_op op,
                           const char *name, enum jkind kind)
{
	if (!client_allowed(c, id, op, name))
		return NULL;
	struct queue *q = queue_get(c, id, name);
	if (!q)
		return NULL;
	struct jreq *x = req_new(c, id, kind);
	if (x)
		x->q = q;
	return x;
}

/* A copy of a request's message that outlives its frame; NULL: out of
 * memory. */
static void *msg_copy(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	void *copy = NULL;
	if (buf) {
		protobuf_c_message_pack(m, buf);
		copy = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
		free(buf);
	}
	return copy;
}

static void fail(struct jreq *x, const struct js_err *e)
{
	/* The bucket went (deleted through another shipd): the queue is
	 * looked up, or made, again at its next use. */
	if (x->q && (kv_no_stream(e) || (e->code == SHIP__CODE__NOT_FOUND &&
	                                  !strncmp(e->text, "bucket '", 8)))) {
		bool was_ready = x->q->ready;
		x->q->ready = false;
		if (was_ready && x->op.c) {
			/* It was there a moment ago. After a NATS restart
			 * JetStream says so until it has loaded its streams:
			 * a worker told "not found" would drop a job it
			 * holds. Try again; a queue really deleted says so
			 * at the next call, which looks it up. */
			struct js_err u = {.code = SHIP__CODE__UNAVAILABLE,
			                   .unknown = e->unknown};
			snprintf(u.text, sizeof(u.text),
			         "queue '%.64s' is not reachable now (%.120s): "
			         "try again",
			         x->q->name, e->text);
			client_js_error(x->op.c, x->op.id, &u);
			req_free(x);
			return;
		}
	}
	if (x->op.c)
		client_js_error(x->op.c, x->op.id, e);
	req_free(x);
}

static void fail_code(struct jreq *x, Ship__Code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail_code(struct jreq *x, Ship__Code code, const char *fmt, ...)
{
	struct js_err e = {.code = code};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e.text, sizeof(e.text), fmt, ap);
	va_end(ap);
	fail(x, &e);
}

/* ---- answers ---- */

/* Fill p from j; payload and result are dumped (free them after). */
static void job_to_proto(json_t *j, uint64_t rev, const char *queue,
                         Ship__Job *p)
{
	json_t *v;
	p->id = (char *)js(j, "id");
	p->queue = (char *)queue;
	v = json_object_get(j, "payload");
	p->payload_json = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)
	                    : NULL;
	p->status = (char *)js(j, "status");
	p->worker = (char *)js(j, "worker");
	p->queued_by = (char *)js(j, "queued_by");
	p->queued_at_ms = ju(j, "queued_at");
	p->started_at_ms = ju(j, "started_at");
	p->completed_at_ms = ju(j, "completed_at");
	v = json_object_get(j, "result");
	p->result_json = v && !json_is_null(v)
	                         ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)
	                         : NULL;
	p->error = (char *)js(j, "error");
	p->attempts = (uint32_t)ju(j, "attempts");
	p->max_attempts = (uint32_t)ju(j, "max_attempts");
	p->priority = (int32_t)json_integer_value(json_object_get(j, "priority"));
	p->not_before_ms = ju(j, "not_before");
	p->lease_until_ms = ju(j, "lease_until");
	p->claimed_by = (char *)js(j, "claimed_by");
	p->holder = (char *)js(j, "holder");
	p->dead_letter = json_is_true(json_object_get(j, "dead_letter"));
	p->cancelled = json_is_true(json_object_get(j, "cancelled"));
	p->idempotency_key = (char *)js(j, "idempotency_key");
	p->revision = rev;
	if (!p->payload_json)
		p->payload_json = strdup("null");
	if (!p->result_json)
		p->result_json = strdup("");
}

static void job_proto_free(Ship__Job *p)
{
	free(p->payload_json);
	free(p->result_json);
}

static void answer_job(struct jreq *x, json_t *j, uint64_t rev)
{
	if (x->op.c) {
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__Job p = SHIP__JOB__INIT;
		job_to_proto(j, rev, x->q->name, &p);
		f.id = x->op.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_JOB;
		f.job = &p;
		client_send(x->op.c, &f);
		job_proto_free(&p);
	}
	req_free(x);
}

/* A lifecycle event in the ShipEvent envelope, the job as payload. */
static void job_event(struct queue *q, const char *type, json_t *j)
{
	char *payload = json_dumps(j, JSON_COMPACT);
	char source[HOLDER_MAX];
	if (!payload)
		return;
	snprintf(source, sizeof(source), "shipd/%s", holder_base);
	events_emit_system(type, source, payload, js(j, "id"), NULL);
	free(payload);
}

/* ---- edits: read a job, change it, write it back if unchanged ---- */

static void edit_start(struct jreq *x);

static void edit_put(void *arg, uint64_t revision, const struct js_err *e)
{
	struct jreq *x = arg;
	x->kv = NULL;
	if (e && e->code == SHIP__CODE__WRONG_REVISION &&
	    ++x->tries < EDIT_TRIES && x->kind != K_CLAIM) {
		edit_start(x);
		return;
	}
	if (!e) {
		x->rev = revision;
		if (x->q->indexed)
			idx_take(x->q, x->id, x->job, revision);
	}
	x->after(x, e);
}

static void edit_got(void *arg, const struct kv_entry *ent,
                     const struct js_err *err)
{
	struct jreq *x = arg;
	struct js_err e = {0};
	x->kv = NULL;
	if (err || ent->op != SHIP__KV_OP__KV_PUT) {
		if (err && err->code != SHIP__CODE__NOT_FOUND) {
			x->after(x, err);
			return;
		}
		kv_set_err(&e, SHIP__CODE__NOT_FOUND,
		           "no job '%s' in queue '%s'", x->id, x->q->name);
		x->after(x, &e);
		return;
	}
	json_decref(x->job);
	x->job = json_loadb(ent->value, ent->len, 0, NULL);
	if (!json_is_object(x->job)) {
		kv_set_err(&e, SHIP__CODE__INTERNAL,
		           "job '%s' of queue '%s' is not a JSON object", x->id,
		           x->q->name);
		x->after(x, &e);
		return;
	}
	x->rev = ent->revision;
	if (!x->edit) { /* a read */
		x->after(x, NULL);
		return;
	}
	int rc = x->edit(x, x->job, wall_ms());
	if (rc == EDIT_KEEP) {
		x->after(x, NULL);
		return;
	}
	if (rc < 0) {
		x->after(x, &(struct js_err){.code = SHIP__CODE__WRONG_REVISION});
		return;
	}
	if (rc > 0) { /* refused: x->job holds the reason in "why" */
		kv_set_err(&e, (Ship__Code)rc, "%s",
		           js(x->job, "__why"));
		json_object_del(x->job, "__why");
		x->after(x, &e);
		return;
	}
	char *text = json_dumps(x->job, JSON_COMPACT);
	char key[ID_MAX + 8];
	snprintf(key, sizeof(key), "job.%s", x->id);
	if (!text) {
		kv_set_err(&e, SHIP__CODE__INTERNAL, "out of memory");
		x->after(x, &e);
		return;
	}
	x->step = 2;
	x->kv = kv_put(x->q->bucket, key, SHIP__KV_WRITE_OP__KV_WRITE_UPDATE,
	               text, strlen(text), x->rev, edit_put, x, &e);
	free(text);
	if (!x->kv)
		x->after(x, &e);
}

/* The edit refuses with code and why (returned by x->edit). */
static int refuse(json_t *job, Ship__Code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int refuse(json_t *job, Ship__Code code, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	json_object_set_new(job, "__why", json_string(why));
	return (int)code;
}

static void edit_start(struct jreq *x)
{
	char key[ID_MAX + 8];
	struct js_err e;
	snprintf(key, sizeof(key), "job.%s", x->id);
	x->step = 1;
	x->kv = kv_get(x->q->bucket, key, 0, edit_got, x, &e);
	if (!x->kv)
		x->after(x, &e);
}

/* A running job back to the queue after a backoff, or failed for good
 * (dead letter) after its last attempt. Returns the event's type. */
static const char *requeue_or_dead(struct queue *q, json_t *j, uint64_t now,
                                   const char *why)
{
	uint64_t attempts = ju(j, "attempts");
	uint64_t max = ju(j, "max_attempts");
	set_s(j, "holder", NULL);
	set_s(j, "claimed_by", NULL);
	json_object_set_new(j, "lease_until", json_null());
	if (why)
		set_s(j, "error", why);
	if (max && attempts >= max) {
		set_s(j, "status", "failed");
		json_object_set_new(j, "dead_letter", json_true());
		set_u(j, "completed_at", now);
		return "job.failed";
	}
	uint64_t backoff = q->cfg.backoff_ms;
	for (uint64_t i = 1; i < attempts && backoff < BACKOFF_MAX_MS; i++)
		backoff *= 2;
	if (backoff > BACKOFF_MAX_MS)
		backoff = BACKOFF_MAX_MS;
	set_s(j, "status", "queued");
	set_u(j, "not_before", now + backoff);
	return "job.requeued";
}

/* ---- the queue: found, made ready, followed ---- */

static void queue_starting_done(struct queue *q, const struct js_err *e);
static void dispatch_later(struct queue *q);
static void dispatch_cb(evutil_socket_t fd, short what, void *arg);

static void jobs_start(void);

static struct queue *queue_get(struct client *c, uint64_t id, const char *name)
{
	struct queue *q;
	if (!name_ok(name, QUEUE_MAX)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid queue name '%.64s' (1 to %d letters, "
		             "digits, _ and -)",
		             name, QUEUE_MAX);
		return NULL;
	}
	jobs_start();
	TAILQ_FOREACH(q, &queues, entry)
	if (!strcmp(q->name, name)) {
		q->used_ms = now_ms();
		return q;
	}
	if (n_queues >= QUEUES_MAX) {
		client_error(c, id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "shipd knows %d queues already", QUEUES_MAX);
		return NULL;
	}
	if (!(q = calloc(1, sizeof(*q))) ||
	    !(q->dispatch = event_new(base, -1, 0, dispatch_cb, q))) {
		free(q);
		client_error(c, id, SHIP__CODE__INTERNAL, "out of memory");
		return NULL;
	}
	snprintf(q->name, sizeof(q->name), "%s", name);
	snprintf(q->bucket, sizeof(q->bucket), "JOBS_%s", name);
	cfg_defaults(&q->cfg);
	TAILQ_INIT(&q->starting_reqs);
	TAILQ_INIT(&q->waiters);
	TAILQ_INIT(&q->held);
	TAILQ_INIT(&q->work);
	TAILQ_INIT(&q->active);
	TAILQ_INSERT_TAIL(&queues, q, entry);
	n_queues++;
	q->used_ms = now_ms();
	return q;
}

/* Every request of q ends: answered with gone (NULL: not answered). */
static void queue_drop_reqs(struct queue *q, const struct js_err *gone)
{
	struct jreq_list *lists[] = {&q->starting_reqs, &q->waiters, &q->work,
	                             &q->active};
	struct jreq *x;
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
		while ((x = TAILQ_FIRST(lists[i]))) {
			struct jidx *ix = idx_find(q, x->id);
			if (ix)
				ix->busy = false;
			if (gone)
				fail(x, gone);
			else
				req_free(x);
		}
}

static void queue_free(struct queue *q, const struct js_err *gone)
{
	struct held *h;
	TAILQ_REMOVE(&queues, q, entry);
	n_queues--;
	kv_req_cancel(q->cfg_req);
	q->cfg_req = NULL;
	kv_follow_cancel(q->follow);
	q->follow = NULL;
	idx_clear(q);
	js_cancel(q->info_call);
	q->info_call = NULL;
	queue_drop_reqs(q, gone);
	while ((h = TAILQ_FIRST(&q->held))) {
		TAILQ_REMOVE(&q->held, h, entry);
		free(h);
	}
	event_free(q->dispatch);
	if (q->ensuring)
		q->finished = true; /* its ensure answers later: freed there */
	else
		free(q);
}

static void cfg_created(void *arg, uint64_t revision, const struct js_err *e);

static void cfg_got(void *arg, const struct kv_entry *ent,
                    const struct js_err *err)
{
	struct queue *q = arg;
	struct js_err e;
	q->cfg_req = NULL;
	if (err && err->code != SHIP__CODE__NOT_FOUND) {
		queue_starting_done(q, err);
		return;
	}
	if (!err && ent->op == SHIP__KV_OP__KV_PUT) {
		json_t *j = json_loadb(ent->value, ent->len, 0, NULL);
		cfg_from_json(&q->cfg, j);
		json_decref(j);
		queue_starting_done(q, NULL);
		return;
	}
	/* None yet: the defaults (or the create's), stored if still none. */
	json_t *j = cfg_json(&q->cfg);
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!text) {
		kv_set_err(&e, SHIP__CODE__INTERNAL, "out of memory");
		queue_starting_done(q, &e);
		return;
	}
	q->cfg_req = kv_put(q->bucket, "config", SHIP__KV_WRITE_OP__KV_WRITE_CREATE,
	                    text, strlen(text), 0, cfg_created, q, &e);
	free(text);
	if (!q->cfg_req)
		queue_starting_done(q, &e);
}

static void cfg_created(void *arg, uint64_t revision, const struct js_err *e)
{
	struct queue *q = arg;
	struct js_err ge;
	q->cfg_req = NULL;
	if (e && e->code == SHIP__CODE__WRONG_REVISION) {
		/* Another shipd stored one meanwhile: read it. */
		q->cfg_req = kv_get(q->bucket, "config", 0, cfg_got, q, &ge);
		if (!q->cfg_req)
			queue_starting_done(q, &ge);
		return;
	}
	queue_starting_done(q, e);
}

static void ensured(void *arg, const struct js_err *e)
{
	struct queue *q = arg;
	struct js_err ge;
	q->ensuring = false;
	if (q->finished) {
		free(q);
		return;
	}
	if (e) {
		queue_starting_done(q, e);
		return;
	}
	q->cfg_req = kv_get(q->bucket, "config", 0, cfg_got, q, &ge);
	if (!q->cfg_req)
		queue_starting_done(q, &ge);
}

static void req_ready(struct jreq *x);
static void queue_starting_done(struct queue *q, const struct js_err *e);

static bool queue_idle(const struct queue *q)
{
	return TAILQ_EMPTY(&q->starting_reqs) && TAILQ_EMPTY(&q->waiters) &&
	       TAILQ_EMPTY(&q->work) && TAILQ_EMPTY(&q->active) &&
	       TAILQ_EMPTY(&q->held) && !q->follow && !q->ensuring &&
	       !q->cfg_req && !q->info_call;
}

/* Whether the queue's bucket exists, for what does not make it. */
static void queue_info(void *arg, json_t *reply, const struct js_err *e)
{
	struct queue *q = arg;
	struct js_err ne;
	q->info_call = NULL;
	if (e && kv_no_stream(e)) {
		struct jreq *x, *t;
		bool create = false;
		kv_set_err(&ne, SHIP__CODE__NOT_FOUND,
		           "no queue '%s' (a submit makes it)", q->name);
		TAILQ_FOREACH_SAFE(x, &q->starting_reqs, qentry, t)
		{
			if (x->create)
				create = true;
			else
				fail(x, &ne);
		}
		if (!create) {
			queue_starting_done(q, &ne);
			if (queue_idle(q)) /* lookups of made-up names keep none */
				queue_free(q, NULL);
			return;
		}
		/* A submit or a claim came meanwhile: make it. */
		q->ensuring = true;
		if (kv_ensure(q->bucket, 1, 0, true, ensured, q) < 0) {
			q->ensuring = false;
			kv_set_err(&ne, SHIP__CODE__UNAVAILABLE,
			           "NATS is not connected");
			queue_starting_done(q, &ne);
		}
		return;
	}
	if (e) {
		queue_starting_done(q, e);
		return;
	}
	ensured(q, NULL);
}

static void queue_starting_done(struct queue *q, const struct js_err *e)
{
	struct jreq *x;
	q->starting = false;
	q->ready = !e;
	if (e)
		log_warnx("jobs: queue %s: %s", q->name, e->text);
	while ((x = TAILQ_FIRST(&q->starting_reqs))) {
		req_list(x, &q->active);
		if (e)
			fail(x, e);
		else
			req_ready(x);
	}
	control_flush();
}

/* x goes on once its queue is ready (the bucket made if create). */
static void queue_use(struct jreq *x, bool create)
{
	struct queue *q = x->q;
	x->create = create;
	/* Every request of q is on one of its lists: a delete of q ends
	 * them all, none is left pointing at it. */
	req_list(x, &q->active);
	if (q->ready) {
		req_ready(x);
		return;
	}
	req_list(x, &q->starting_reqs);
	if (q->starting)
		return;
	if (!link_connected()) {
		struct js_err e;
		kv_set_err(&e, SHIP__CODE__UNAVAILABLE, "NATS is not connected (%s)",
		           link_state_name(link_info()->state));
		queue_starting_done(q, &e);
		return;
	}
	q->starting = true;
	if (create) {
		q->ensuring = true;
		if (kv_ensure(q->bucket, 1, 0, true, ensured, q) < 0) {
			struct js_err e;
			q->ensuring = false;
			kv_set_err(&e, SHIP__CODE__UNAVAILABLE,
			           "NATS is not connected");
			queue_starting_done(q, &e);
		}
		return;
	}
	char what[KV_NAME_MAX + 32];
	snprintf(what, sizeof(what), "STREAM.INFO.KV_%s", q->bucket);
	q->info_call =
		js_api_in(kv_dom(q->bucket), what, NULL, 5000, queue_info, q);
	if (!q->info_call) {
		struct js_err e;
		kv_set_err(&e, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
		queue_starting_done(q, &e);
	}
}

static void follow_entry(void *arg, const struct kv_entry *e,
                         const struct js_err *err)
{
	struct queue *q = arg;
	if (err) { /* the bucket went */
		struct jreq *x;
		struct js_err ne;
		q->follow = NULL;
		idx_clear(q);
		q->ready = false;
		kv_set_err(&ne, SHIP__CODE__NOT_FOUND, "queue '%s' was deleted",
		           q->name);
		while ((x = TAILQ_FIRST(&q->waiters)))
			fail(x, &ne);
		return;
	}
	if (!e) {
		q->indexed = true;
		dispatch_later(q);
		return;
	}
	if (!strcmp(e->key, "config")) {
		if (e->op == SHIP__KV_OP__KV_PUT) {
			json_t *j = json_loadb(e->value, e->len, 0, NULL);
			cfg_from_json(&q->cfg, j);
			json_decref(j);
		}
		return;
	}
	if (strncmp(e->key, "job.", 4))
		return;
	const char *id = e->key + 4;
	if (e->op != SHIP__KV_OP__KV_PUT) {
		idx_remove(q, id);
		return;
	}
	json_t *j = json_loadb(e->value, e->len, 0, NULL);
	if (json_is_object(j)) {
		idx_take(q, id, j, e->revision);
		if (q->indexed && !TAILQ_EMPTY(&q->waiters))
			dispatch_later(q);
	}
	json_decref(j);
}

static void queue_follow(struct queue *q)
{
	q->used_ms = now_ms();
	if (q->follow)
		return;
	struct kv_watch_spec s = {.bucket = q->bucket, .pattern = ">"};
	q->follow = kv_follow(&s, follow_entry, q);
}

/* ---- submit ---- */

static void submit_create(struct jreq *x);
static void submit_seq(struct jreq *x);
static void submit_idem(struct jreq *x);

static void submit_created(void *arg, uint64_t revision,
                           const struct js_err *e)
{
	struct jreq *x = arg;
	x->kv = NULL;
	if (e && e->code == SHIP__CODE__WRONG_REVISION && x->idem_key[0] &&
	    ++x->tries < EDIT_TRIES) {
		submit_idem(x); /* made by a retry meanwhile: answer it */
		return;
	}
	if (e) {
		fail(x, e);
		return;
	}
	job_event(x->q, "job.queued", x->job);
	if (x->q->indexed) /* a claim right after sees it */
		idx_take(x->q, x->id, x->job, revision);
	json_t *j = json_incref(x->job);
	answer_job(x, j, revision);
	json_decref(j);
}

static void submit_create(struct jreq *x)
{
	const Ship__JobSubmit *s = x->sub;
	struct js_err e;
	uint64_t now = wall_ms();
	json_t *payload = json_loads(s->payload_json, JSON_DECODE_ANY, NULL);
	json_t *j = json_pack(
	        "{s:s, s:s, s:o, s:s, s:s, s:s, s:I, s:n, s:n, s:n, s:n, s:i, "
	        "s:i, s:i, s:I, s:n, s:n, s:n, s:b, s:b}",
	        "id", x->id, "queue", x->q->name, "payload",
	        payload ? payload : json_null(), "status", "queued", "worker",
	        s->worker, "queued_by", s->queued_by, "queued_at", (json_int_t)now,
	        "started_at", "completed_at", "result", "error", "attempts", 0,
	        "max_attempts",
	        (int)(s->max_attempts ? s->max_attempts : x->q->cfg.max_attempts),
	        "priority", (int)s->priority, "not_before",
	        (json_int_t)(now + s->delay_ms), "lease_until", "claimed_by",
	        "holder", "dead_letter", 0, "cancelled", 0);
	if (!j) {
		fail_code(x, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	set_s(j, "idempotency_key",
	      s->idempotency_key[0] ? s->idempotency_key : NULL);
	json_decref(x->job);
	x->job = j;
	char *text = json_dumps(j, JSON_COMPACT);
	char key[ID_MAX + 8];
	snprintf(key, sizeof(key), "job.%s", x->id);
	if (!text) {
		fail_code(x, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	x->kv = kv_put(x->q->bucket, key, SHIP__KV_WRITE_OP__KV_WRITE_CREATE,
	               text, strlen(text), 0, submit_created, x, &e);
	free(text);
	if (!x->kv)
		fail(x, &e);
}

/* The id the idempotency key made, stored before the job: a submit cut
 * in between makes the job with that id when it is tried again. */
static void idem_stored(void *arg, uint64_t revision, const struct js_err *e)
{
	struct jreq *x = arg;
	x->kv = NULL;
	if (e && e->code == SHIP__CODE__WRONG_REVISION &&
	    ++x->tries < EDIT_TRIES) {
		submit_idem(x); /* another submit with the key won */
		return;
	}
	if (e) {
		fail(x, e);
		return;
	}
	submit_create(x);
}

static void seq_stored(void *arg, uint64_t revision, const struct js_err *e)
{
	struct jreq *x = arg;
	struct js_err ie;
	x->kv = NULL;
	if (e && e->code == SHIP__CODE__WRONG_REVISION &&
	    ++x->tries < 64) {
		submit_seq(x);
		return;
	}
	if (e) {
		fail(x, e);
		return;
	}
	snprintf(x->id, sizeof(x->id), "%s-%03" PRIu64, x->q->cfg.prefix,
	         x->seq);
	if (!x->idem_key[0]) {
		submit_create(x);
		return;
	}
	x->kv = kv_put(x->q->bucket, x->idem_key,
	               SHIP__KV_WRITE_OP__KV_WRITE_CREATE, x->id, strlen(x->id),
	               0, idem_stored, x, &ie);
	if (!x->kv)
		fail(x, &ie);
}

static void seq_got(void *arg, const struct kv_entry *ent,
                    const struct js_err *err)
{
	struct jreq *x = arg;
	struct js_err e;
	uint64_t n = 0, expect = 0;
	char text[32];
	x->kv = NULL;
	if (err && err->code != SHIP__CODE__NOT_FOUND) {
		fail(x, err);
		return;
	}
	if (!err) {
		expect = ent->revision;
		if (ent->op == SHIP__KV_OP__KV_PUT && ent->len < sizeof(text)) {
			memcpy(text, ent->value, ent->len);
			text[ent->len] = '\0';
			n = strtoull(text, NULL, 10);
		}
	}
	x->seq = n + 1;
	snprintf(text, sizeof(text), "%" PRIu64, x->seq);
	x->kv = kv_put(x->q->bucket, "seq",
	               expect ? SHIP__KV_WRITE_OP__KV_WRITE_UPDATE
	                      : SHIP__KV_WRITE_OP__KV_WRITE_CREATE,
	               text, strlen(text), expect, seq_stored, x, &e);
	if (!x->kv)
		fail(x, &e);
}

static void submit_seq(struct jreq *x)
{
	struct js_err e;
	x->kv = kv_get(x->q->bucket, "seq", 0, seq_got, x, &e);
	if (!x->kv)
		fail(x, &e);
}

static void idem_job_got(void *arg, const struct kv_entry *ent,
                         const struct js_err *err)
{
	struct jreq *x = arg;
	x->kv = NULL;
	if (err && err->code == SHIP__CODE__NOT_FOUND) {
		submit_create(x); /* the submit before was cut: make it */
		return;
	}
	if (err) {
		fail(x, err);
		return;
	}
	if (ent->op != SHIP__KV_OP__KV_PUT) {
		/* Made, finished and purged by retention: not run again. */
		fail_code(x, SHIP__CODE__ALREADY_EXISTS,
		          "job '%s' of this idempotency key is finished and no "
		          "longer kept",
		          x->id);
		return;
	}
	json_t *j = json_loadb(ent->value, ent->len, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		submit_create(x);
		return;
	}
	answer_job(x, j, ent->revision);
	json_decref(j);
}

static void idem_got(void *arg, const struct kv_entry *ent,
                     const struct js_err *err)
{
	struct jreq *x = arg;
	struct js_err e;
	char key[ID_MAX + 8];
	x->kv = NULL;
	if (err && err->code != SHIP__CODE__NOT_FOUND) {
		fail(x, err);
		return;
	}
	if (err || ent->op != SHIP__KV_OP__KV_PUT || !ent->len ||
	    ent->len > ID_MAX) {
		submit_seq(x);
		return;
	}
	memcpy(x->id, ent->value, ent->len);
	x->id[ent->len] = '\0';
	snprintf(key, sizeof(key), "job.%s", x->id);
	x->kv = kv_get(x->q->bucket, key, 0, idem_job_got, x, &e);
	if (!x->kv)
		fail(x, &e);
}

static void submit_idem(struct jreq *x)
{
	struct js_err e;
	x->kv = kv_get(x->q->bucket, x->idem_key, 0, idem_got, x, &e);
	if (!x->kv)
		fail(x, &e);
}

static void handle_submit(struct client *c, uint64_t id,
                          const Ship__JobSubmit *s)
{
	json_error_t jerr;
	json_t *payload;
	if (!s->payload_json[0] ||
	    !(payload = json_loads(s->payload_json,
	                           JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
	                           &jerr))) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "payload is not JSON: %s",
		             s->payload_json[0] ? jerr.text : "empty");
		return;
	}
	json_decref(payload);
	if (!printable(s->worker, WORKER_MAX) ||
	    !printable(s->queued_by, WORKER_MAX) ||
	    !printable(s->idempotency_key, 1024)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "worker and queued_by are at most %d printable "
		             "bytes, an idempotency key at most 1024",
		             WORKER_MAX);
		return;
	}
	if (s->delay_ms > 366ull * 86400 * 1000) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "a delay of more than a year");
		return;
	}
	struct jreq *x = req_on(c, id, POL_JOBS_SUBMIT, s->queue, K_SUBMIT);
	if (!x)
		return;
	/* Kept: the request's strings outlive this call. */
	x->sub = msg_copy(&s->base);
	if (!x->sub) {
		fail_code(x, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	if (!x->sub->queued_by[0]) {
		/* The empty default is protobuf-c's own, not to be freed; what
		 * replaces it is freed with the message. */
		char *by = strdup(c->name[0] ? c->name : "app");
		if (!by) {
			fail_code(x, SHIP__CODE__INTERNAL, "out of memory");
			return;
		}
		x->sub->queued_by = by;
	}
	if (s->idempotency_key[0]) {
		struct ipc_sha256 sh;
		uint8_t d[IPC_SHA256_LEN];
		ipc_sha256_init(&sh);
		ipc_sha256_update(&sh, s->idempotency_key,
		                  strlen(s->idempotency_key));
		ipc_sha256_final(&sh, d);
		int n = snprintf(x->idem_key, sizeof(x->idem_key), "idem.");
		for (int i = 0; i < 32; i++)
			n += snprintf(x->idem_key + n, sizeof(x->idem_key) - (size_t)n,
			              "%02x", d[i]);
	}
	queue_use(x, true);
}

/* ---- claim ---- */

static void held_add(struct queue *q, struct client *c, const char *id)
{
	struct held *h = calloc(1, sizeof(*h));
	if (!h)
		return; /* its lease runs out and another takes it */
	h->c = c;
	snprintf(h->id, sizeof(h->id), "%s", id);
	h->renew_at = now_ms() + q->cfg.lease_ms / 3;
	TAILQ_INSERT_TAIL(&q->held, h, entry);
}

static struct held *held_find(struct queue *q, struct client *c,
                              const char *id)
{
	struct held *h;
	TAILQ_FOREACH(h, &q->held, entry)
	if (h->c == c && !strcmp(h->id, id))
		return h;
	return NULL;
}

static void held_remove(struct queue *q, struct held *h)
{
	TAILQ_REMOVE(&q->held, h, entry);
	free(h);
}

static int claim_edit(struct jreq *x, json_t *j, uint64_t now)
{
	if (status_of(js(j, "status")) != J_QUEUED ||
	    json_is_true(json_object_get(j, "cancelled")) ||
	    ju(j, "not_before") > now ||
	    (*js(j, "worker") && strcmp(js(j, "worker"), x->worker)))
		return -1; /* taken or changed: the next one */
	set_s(j, "status", "running");
	set_u(j, "started_at", now);
	set_u(j, "attempts", ju(j, "attempts") + 1);
	set_u(j, "lease_until", now + x->q->cfg.lease_ms);
	set_s(j, "claimed_by", x->worker);
	set_s(j, "holder", x->holder);
	set_s(j, "error", NULL);
	json_object_del(j, "finished_claim"); /* a new claim: no repeat */
	return 0;
}

static void claim_next(struct jreq *x);
static void release_start(struct queue *q, const char *id, const char *holder,
                          const char *why);

static void claim_after(struct jreq *x, const struct js_err *e)
{
	struct queue *q = x->q;
	struct jidx *ix = idx_find(q, x->id);
	if (ix)
		ix->busy = false;
	if (e && (e->code == SHIP__CODE__WRONG_REVISION ||
	          e->code == SHIP__CODE__NOT_FOUND)) {
		if (ix)
			ix->tried_rev = ix->revision;
		claim_next(x); /* lost the race: the next job */
		return;
	}
	if (e) {
		if (e->unknown) /* it may be ours: back to the queue if so */
			release_start(q, x->id, x->holder, "its claim went "
			              "unanswered");
		fail(x, e);
		return;
	}
	held_add(q, x->op.c, x->id);
	job_event(q, "job.claimed", x->job);
	json_t *j = json_incref(x->job);
	answer_job(x, j, x->rev);
	json_decref(j);
}

/* The client went while its claim's write was out. */
static void orphan_after(struct jreq *x, const struct js_err *e)
{
	struct jidx *ix = idx_find(x->q, x->id);
	if (ix)
		ix->busy = false;
	if (!e)
		release_start(x->q, x->id, x->holder, "its worker left");
	req_free(x);
}

static void claim_gone(struct jreq *x)
{
	x->orphan = true;
	x->after = orphan_after;
	req_list(x, &x->q->work);
}

static void claim_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct jreq *x = arg;
	fail_code(x, SHIP__CODE__NOT_FOUND, "no job ready in queue '%s'",
	          x->q->name);
	control_flush();
}

/* Take the best job for x, or wait, or answer NOT_FOUND. */
static void claim_next(struct jreq *x)
{
	struct queue *q = x->q;
	uint64_t now = wall_ms();
	struct jidx *ix;
	if (q->indexed && x->claims < CLAIM_TRIES &&
	    (ix = pick(q, x->worker, now))) {
		x->claims++;
		ix->busy = true;
		req_list(x, &q->active);
		if (x->timer)
			evtimer_del(x->timer);
		snprintf(x->id, sizeof(x->id), "%s", ix->id);
		x->edit = claim_edit;
		x->after = claim_after;
		x->tries = 0;
		edit_start(x);
		return;
	}
	x->claims = 0;
	if (!x->timer || (x->immediate && q->indexed)) {
		fail_code(x, SHIP__CODE__NOT_FOUND, "no job ready in queue '%s'",
		          q->name);
		return;
	}
	if (x->on != &q->waiters) { /* kept in its place: first come first */
		/* Back from a lost race: its wait goes on for what is left. */
		uint64_t mono = now_ms();
		if (mono >= x->deadline) {
			fail_code(x, SHIP__CODE__NOT_FOUND,
			          "no job ready in queue '%s'", q->name);
			return;
		}
		uint64_t left = x->deadline - mono;
		struct timeval tv = {(time_t)(left / 1000),
		                     (suseconds_t)(left % 1000) * 1000};
		evtimer_add(x->timer, &tv);
		req_list(x, &q->waiters);
	}
	if (!q->indexed)
		queue_follow(q);
}

static void dispatch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q = arg;
	struct jreq *x, *t;
	TAILQ_FOREACH_SAFE(x, &q->waiters, qentry, t)
	claim_next(x);
	control_flush();
}

static void dispatch_later(struct queue *q)
{
	event_active(q->dispatch, 0, 0);
}

static void handle_claim(struct client *c, uint64_t id, const Ship__JobClaim *r)
{
	if (!r->worker[0] || !printable(r->worker, WORKER_MAX)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "a claim names its worker (1 to %d printable bytes)",
		             WORKER_MAX);
		return;
	}
	if (!client_allowed(c, id, POL_JOBS_CLAIM, r->queue))
		return;
	struct queue *q = queue_get(c, id, r->queue);
	if (!q)
		return;
	struct held *h;
	size_t n = 0;
	TAILQ_FOREACH(h, &q->held, entry)
	n += h->c == c;
	if (n >= HELD_MAX) {
		client_error(c, id, SHIP__CODE__RESOURCE_EXHAUSTED,
		             "this connection holds %zu jobs of queue '%s' "
		             "already: finish some first",
		             n, r->queue);
		return;
	}
	struct jreq *x = req_new(c, id, K_CLAIM);
	if (!x)
		return;
	x->q = q;
	snprintf(x->worker, sizeof(x->worker), "%s", r->worker);
	holder_of(c, x->holder, sizeof(x->holder));
	uint32_t wait = r->wait_ms;
	if (wait > conf->max_request_timeout_ms)
		wait = conf->max_request_timeout_ms;
	/* Even without waiting, a first claim waits for the index. */
	if (!wait) {
		x->immediate = true;
		wait = conf->request_timeout_ms;
	}
	x->deadline = now_ms() + wait;
	if (wait) {
		struct timeval tv = {wait / 1000, (wait % 1000) * 1000};
		if (!(x->timer = evtimer_new(base, claim_timeout, x)) ||
		    evtimer_add(x->timer, &tv) < 0) {
			fail_code(x, SHIP__CODE__INTERNAL, "out of memory");
			return;
		}
	}
	queue_use(x, true); /* a worker may come before the first job */
}

/* ---- renewals, releases, expiries: shipd's own edits ---- */

static int renew_edit(struct jreq *x, json_t *j, uint64_t now)
{
	if (status_of(js(j, "status")) != J_RUNNING ||
	    strcmp(js(j, "holder"), x->holder))
		return refuse(j, SHIP__CODE__CONFLICT, "no longer held here");
	set_u(j, "lease_until", now + x->q->cfg.lease_ms);
	return 0;
}

static void renew_after(struct jreq *x, const struct js_err *e)
{
	struct queue *q = x->q;
	struct held *h;
	TAILQ_FOREACH(h, &q->held, entry)
	if (!strcmp(h->id, x->id) && h->busy) {
		h->busy = false;
		if (e && e->code == SHIP__CODE__CONFLICT) {
			log_warnx("jobs: %s of queue %s was taken from its "
			          "worker (its lease ran out)",
			          x->id, q->name);
			held_remove(q, h);
		} else if (e) {
			h->renew_at = now_ms() + 1000; /* again soon */
		} else {
			h->renew_at = now_ms() + q->cfg.lease_ms / 3;
		}
		break;
	}
	req_free(x);
}

static int release_edit(struct jreq *x, json_t *j, uint64_t now)
{
	if (status_of(js(j, "status")) != J_RUNNING ||
	    strcmp(js(j, "holder"), x->holder))
		return refuse(j, SHIP__CODE__CONFLICT, "no longer held here");
	snprintf(x->event, sizeof(x->event), "%s",
	         requeue_or_dead(x->q, j, now, "its worker left"));
	return 0;
}

static void work_after(struct jreq *x, const struct js_err *e)
{
	struct jidx *ix = idx_find(x->q, x->id);
	if (ix)
		ix->busy = false;
	if (!e) {
		job_event(x->q, x->event, x->job);
	} else if (e->code != SHIP__CODE__CONFLICT &&
	           e->code != SHIP__CODE__WRONG_REVISION &&
	           e->code != SHIP__CODE__NOT_FOUND) {
		log_warnx("jobs: %s of queue %s: %s", x->id, x->q->name, e->text);
		if (ix)
			ix->expired_rev = 0; /* tried again */
	}
	req_free(x);
}

static void release_start(struct queue *q, const char *id, const char *holder,
                          const char *why)
{
	struct jreq *x = req_new(NULL, 0, K_RELEASE);
	if (!x)
		return; /* its lease runs out instead */
	x->q = q;
	snprintf(x->id, sizeof(x->id), "%s", id);
	snprintf(x->holder, sizeof(x->holder), "%s", holder);
	x->edit = release_edit;
	x->after = work_after;
	req_list(x, &q->work);
	log_info("jobs: %s of queue %s back to the queue: %s", id, q->name, why);
	edit_start(x);
}

static int expire_edit(struct jreq *x, json_t *j, uint64_t now)
{
	uint64_t lease = ju(j, "lease_until");
	if (status_of(js(j, "status")) != J_RUNNING || !lease ||
	    lease + EXPIRY_GRACE_MS > now)
		return refuse(j, SHIP__CODE__CONFLICT, "not expired");
	snprintf(x->event, sizeof(x->event), "%s",
	         requeue_or_dead(x->q, j, now, "its lease ran out"));
	return 0;
}

static void expire_start(struct queue *q, struct jidx *ix)
{
	struct jreq *x = req_new(NULL, 0, K_EXPIRE);
	if (!x)
		return;
	ix->busy = true;
	ix->expired_rev = ix->revision;
	x->q = q;
	snprintf(x->id, sizeof(x->id), "%s", ix->id);
	x->edit = expire_edit;
	x->after = work_after;
	req_list(x, &q->work);
	edit_start(x);
}

static void renew_start(struct queue *q, struct held *h)
{
	struct jreq *x = req_new(NULL, 0, K_RENEW);
	if (!x)
		return;
	h->busy = true;
	x->q = q;
	snprintf(x->id, sizeof(x->id), "%s", h->id);
	holder_of(h->c, x->holder, sizeof(x->holder));
	x->edit = renew_edit;
	x->after = renew_after;
	req_list(x, &q->work);
	edit_start(x);
}

static bool held_here(struct queue *q, const char *id)
{
	struct held *h;
	TAILQ_FOREACH(h, &q->held, entry)
	if (!strcmp(h->id, id))
		return true;
	return false;
}

struct fin {
	struct jidx *x;
};

static int fin_cmp(const void *a, const void *b)
{
	const struct jidx *x = ((const struct fin *)a)->x;
	const struct jidx *y = ((const struct fin *)b)->x;
	if (x->completed_at != y->completed_at)
		return x->completed_at > y->completed_at ? -1 : 1;
	return strcmp(x->id, y->id);
}

static void pruned(void *arg, uint64_t revision, const struct js_err *e)
{
	struct jreq *x = arg;
	x->kv = NULL;
	if (e) {
		struct jidx *ix = idx_find(x->q, x->id);
		if (ix)
			ix->busy = false; /* tried again next round */
		log_debug("jobs: %s of queue %s not purged: %s", x->id,
		          x->q->name, e->text);
	}
	req_free(x);
}

/* Finished jobs past the queue's retention (the newest keep_finished,
 * none older than keep_finished_ms) are purged; dead letters wait for
 * an operator. Any shipd following the queue does it. */
static void prune(struct queue *q, uint64_t now)
{
	struct fin *f = calloc(q->n_jobs ? q->n_jobs : 1, sizeof(*f));
	size_t n = 0, purged = 0;
	if (!f)
		return;
	for (size_t i = 0; i < q->tsize; i++)
		for (struct jidx *x = q->table[i]; x; x = x->next)
			if ((x->status == J_COMPLETE || x->status == J_FAILED) &&
			    !x->dead && !x->busy && n < q->n_jobs)
				f[n++].x = x;
	qsort(f, n, sizeof(*f), fin_cmp);
	for (size_t i = 0; i < n && purged < PRUNE_MAX; i++) {
		struct jidx *x = f[i].x;
		if (i < q->cfg.keep && x->completed_at + q->cfg.keep_ms >= now)
			continue;
		struct jreq *w = req_new(NULL, 0, K_EXPIRE);
		struct js_err e;
		char key[ID_MAX + 8];
		if (!w)
			break;
		w->q = q;
		snprintf(w->id, sizeof(w->id), "%s", x->id);
		snprintf(key, sizeof(key), "job.%s", x->id);
		req_list(w, &q->work);
		/* At the revision the index has: a job changed since (a
		 * requeue) is not purged. */
		w->kv = kv_purge_at(q->bucket, key, x->revision, pruned, w, &e);
		if (!w->kv) {
			req_free(w);
			break;
		}
		x->busy = true; /* until the purge shows in the index */
		purged++;
	}
	free(f);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct queue *q, *t;
	uint64_t mono = now_ms(), now = wall_ms();
	if (!link_connected())
		return;
	TAILQ_FOREACH_SAFE(q, &queues, entry, t) {
		struct held *h;
		TAILQ_FOREACH(h, &q->held, entry)
		if (h->c && !h->busy && mono >= h->renew_at)
			renew_start(q, h);
		if (!TAILQ_EMPTY(&q->held) || !TAILQ_EMPTY(&q->waiters))
			q->used_ms = mono;
		if (queue_idle(q) && mono - q->used_ms > FOLLOW_IDLE_MS) {
			/* Unused for a while: known again at the next use. */
			queue_free(q, NULL);
			continue;
		}
		if (!q->indexed)
			continue;
		for (size_t i = 0; i < q->tsize; i++)
			for (struct jidx *ix = q->table[i]; ix; ix = ix->next)
				if (ix->status == J_RUNNING && !ix->busy &&
				    ix->lease_until &&
				    ix->lease_until + EXPIRY_GRACE_MS < now &&
				    ix->expired_rev != ix->revision &&
				    !held_here(q, ix->id))
					expire_start(q, ix);
		if (mono - q->pruned_ms >= PRUNE_EVERY_MS) {
			q->pruned_ms = mono;
			prune(q, now);
		}
		if (!TAILQ_EMPTY(&q->waiters))
			dispatch_later(q); /* delays and backoffs run out */
		else if (q->follow && TAILQ_EMPTY(&q->held) &&
		         TAILQ_EMPTY(&q->work) &&
		         mono - q->used_ms > FOLLOW_IDLE_MS) {
			kv_follow_cancel(q->follow);
			q->follow = NULL;
			idx_clear(q);
		}
	}
	control_flush();
}

/* ---- finish, cancel, requeue ---- */

/* The claim x's connection holds or held of job j: "<holder>#<attempt>".
 * The attempt tells a claim from a later one by the same connection, even
 * one by a writer that does not know finished_claim (and keeps it). */
static void claim_of(const struct jreq *x, json_t *j, char *out, size_t size)
{
	snprintf(out, size, "%s#%" PRIu64, x->holder, ju(j, "attempts"));
}

/* Whether x is the finish that ended this connection's claim of j, again
 * (its answer lost): the same outcome, nothing done to the job since. A
 * complete after a fail, a fail after a complete, or a fail with retry
 * after one without (and the reverse) is not: refused like any finish of
 * a job not held. */
static bool finish_repeated(const struct jreq *x, json_t *j)
{
	const Ship__JobFinish *f = x->fin;
	enum jstatus st = status_of(js(j, "status"));
	bool dead = json_is_true(json_object_get(j, "dead_letter"));
	char mine[HOLDER_MAX + 24];
	claim_of(x, j, mine, sizeof(mine));
	if (strcmp(js(j, "finished_claim"), mine))
		return false;
	if (!f->failed)
		return st == J_COMPLETE;
	if (!f->retry)
		return st == J_FAILED && !dead;
	return st == J_QUEUED || (st == J_FAILED && dead);
}

static int finish_edit(struct jreq *x, json_t *j, uint64_t now)
{
	const Ship__JobFinish *f = x->fin;
	char mine[HOLDER_MAX + 24];
	if (finish_repeated(x, j)) {
		x->event[0] = '\0'; /* the first said it */
		return EDIT_KEEP;
	}
	if (x->unheld)
		return refuse(j, SHIP__CODE__CONFLICT,
		              "job '%s' of queue '%s' is not held by this "
		              "connection: claim it first",
		              x->id, x->q->name);
	if (status_of(js(j, "status")) != J_RUNNING ||
	    strcmp(js(j, "holder"), x->holder))
		return refuse(j, SHIP__CODE__CONFLICT,
		              "job '%s' is not held by this connection (%s)",
		              x->id, js(j, "status"));
	claim_of(x, j, mine, sizeof(mine));
	set_s(j, "finished_claim", mine);
	set_s(j, "holder", NULL);
	json_object_set_new(j, "lease_until", json_null());
	if (!f->failed) {
		json_t *res = f->result_json[0]
		                      ? json_loads(f->result_json, JSON_DECODE_ANY,
		                                   NULL)
		                      : json_null();
		json_object_set_new(j, "result", res ? res : json_null());
		set_s(j, "status", "complete");
		set_u(j, "completed_at", now);
		snprintf(x->event, sizeof(x->event), "job.completed");
		return 0;
	}
	if (f->retry) {
		snprintf(x->event, sizeof(x->event), "%s",
		         requeue_or_dead(x->q, j, now, f->error));
		return 0;
	}
	set_s(j, "status", "failed");
	set_s(j, "error", f->error);
	set_u(j, "completed_at", now);
	snprintf(x->event, sizeof(x->event), "job.failed");
	return 0;
}

static void finish_after(struct jreq *x, const struct js_err *e)
{
	struct queue *q = x->q;
	struct held *h = x->op.c ? held_find(q, x->op.c, x->id) : NULL;
	if (h)
		h->busy = false;
	if (e) {
		if (e->code == SHIP__CODE__CONFLICT && h)
			held_remove(q, h); /* it is not ours any more */
		fail(x, e);
		return;
	}
	if (h)
		held_remove(q, h);
	if (x->event[0])
		job_event(q, x->event, x->job);
	json_t *j = json_incref(x->job);
	answer_job(x, j, x->rev);
	json_decref(j);
}

static void handle_finish(struct client *c, uint64_t id,
                          const Ship__JobFinish *r)
{
	json_t *res = NULL;
	if (!r->failed && r->result_json[0] &&
	    !(res = json_loads(r->result_json, JSON_DECODE_ANY, NULL))) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "result is not JSON");
		return;
	}
	json_decref(res);
	if (!name_ok(r->id, ID_MAX) || !printable(r->error, 4096)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid job id '%.64s' or error text", r->id);
		return;
	}
	if (!client_allowed(c, id, POL_JOBS_CLAIM, r->queue))
		return;
	struct queue *q = queue_get(c, id, r->queue);
	if (!q)
		return;
	struct jreq *x = req_new(c, id, K_FINISH);
	if (!x)
		return;
	x->q = q;
	/* Not held: it may be this finish again, the first applied and its
	 * answer lost (the job no longer held). The job says. */
	struct held *h = held_find(q, c, r->id);
	x->unheld = !h;
	if (h)
		h->busy = true; /* no renewal races the finish */
	snprintf(x->id, sizeof(x->id), "%s", r->id);
	holder_of(c, x->holder, sizeof(x->holder));
	x->fin = msg_copy(&r->base);
	if (!x->fin) {
		if (h)
			h->busy = false;
		fail_code(x, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	x->edit = finish_edit;
	x->after = finish_after;
	queue_use(x, false);
}

static int change_edit(struct jreq *x, json_t *j, uint64_t now)
{
	enum jstatus st = status_of(js(j, "status"));
	if (x->change == SHIP__JOB_CHANGE__OP__CANCEL) {
		if (st != J_QUEUED && st != J_RUNNING)
			return refuse(j, SHIP__CODE__CONFLICT,
			              "job '%s' is %s: only a queued or running "
			              "job is cancelled",
			              x->id, js(j, "status"));
		set_s(j, "status", "failed");
		json_object_set_new(j, "cancelled", json_true());
		set_s(j, "error", "cancelled");
		set_s(j, "holder", NULL);
		json_object_set_new(j, "lease_until", json_null());
		set_u(j, "completed_at", now);
		json_object_del(j, "finished_claim"); /* no holder finished it */
		snprintf(x->event, sizeof(x->event), "job.failed");
		return 0;
	}
	if (st != J_FAILED)
		return refuse(j, SHIP__CODE__CONFLICT,
		              "job '%s' is %s: only a failed job is requeued",
		              x->id, js(j, "status"));
	set_s(j, "status", "queued");
	set_u(j, "attempts", 0);
	json_object_del(j, "finished_claim"); /* its attempts start over */
	json_object_set_new(j, "dead_letter", json_false());
	json_object_set_new(j, "cancelled", json_false());
	set_s(j, "error", NULL);
	json_object_set_new(j, "completed_at", json_null());
	set_u(j, "not_before", now);
	snprintf(x->event, sizeof(x->event), "job.requeued");
	return 0;
}

static void change_after(struct jreq *x, const struct js_err *e)
{
	if (e) {
		fail(x, e);
		return;
	}
	job_event(x->q, x->event, x->job);
	json_t *j = json_incref(x->job);
	answer_job(x, j, x->rev);
	json_decref(j);
}

static void handle_change(struct client *c, uint64_t id,
                          const Ship__JobChange *r)
{
	if (!name_ok(r->id, ID_MAX)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid job id '%.64s'", r->id);
		return;
	}
	struct jreq *x = req_on(c, id, POL_JOBS_ADMIN, r->queue, K_CHANGE);
	if (!x)
		return;
	x->change = r->op;
	snprintf(x->id, sizeof(x->id), "%s", r->id);
	x->edit = change_edit;
	x->after = change_after;
	queue_use(x, false);
}

/* ---- get, list, counts ---- */

static void get_after(struct jreq *x, const struct js_err *e)
{
	if (e) {
		fail(x, e);
		return;
	}
	json_t *j = json_incref(x->job);
	answer_job(x, j, x->rev);
	json_decref(j);
}

static void handle_get(struct client *c, uint64_t id, const Ship__JobGet *r)
{
	if (!name_ok(r->id, ID_MAX)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "invalid job id '%.64s'", r->id);
		return;
	}
	struct jreq *x = req_on(c, id, POL_JOBS_SUBMIT, r->queue, K_GET);
	if (!x)
		return;
	snprintf(x->id, sizeof(x->id), "%s", r->id);
	x->after = get_after;
	queue_use(x, false);
}

struct listed {
	json_t *j;
	uint64_t rev;
};

static int listed_cmp(const void *a, const void *b)
{
	const struct listed *x = a, *y = b;
	uint64_t qa = ju(x->j, "queued_at"), qb = ju(y->j, "queued_at");
	if (qa != qb)
		return qa < qb ? -1 : 1;
	return strcmp(js(x->j, "id"), js(y->j, "id"));
}

static void collected(void *arg, const struct kv_entry *ents, size_t n,
                      const struct js_err *err)
{
	struct jreq *x = arg;
	x->coll = NULL;
	if (err) {
		fail(x, err);
		return;
	}
	struct listed *l = calloc(n ? n : 1, sizeof(*l));
	size_t m = 0;
	Ship__JobCounts counts = SHIP__JOB_COUNTS__INIT;
	uint64_t now = wall_ms();
	if (!l) {
		fail_code(x, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (ents[i].op != SHIP__KV_OP__KV_PUT ||
		    strncmp(ents[i].key, "job.", 4))
			continue;
		json_t *j = json_loadb(ents[i].value, ents[i].len, 0, NULL);
		if (!json_is_object(j)) {
			json_decref(j);
			continue;
		}
		enum jstatus st = status_of(js(j, "status"));
		bool dead = json_is_true(json_object_get(j, "dead_letter"));
		if (x->kind == K_COUNTS) {
			counts.queued += st == J_QUEUED;
			counts.delayed += st == J_QUEUED && ju(j, "not_before") > now;
			counts.running += st == J_RUNNING;
			counts.complete += st == J_COMPLETE;
			counts.failed += st == J_FAILED;
			counts.dead_letter += st == J_FAILED && dead;
			json_decref(j);
			continue;
		}
		const Ship__JobList *f = x->list;
		if ((f->status[0] && strcmp(js(j, "status"), f->status)) ||
		    (f->worker[0] && strcmp(js(j, "worker"), f->worker) &&
		     strcmp(js(j, "claimed_by"), f->worker)) ||
		    (f->dead_letter && !dead)) {
			json_decref(j);
			continue;
		}
		l[m].j = j;
		l[m].rev = ents[i].revision;
		m++;
	}
	Ship__ServerFrame fr = SHIP__SERVER_FRAME__INIT;
	fr.id = x->op.id;
	if (x->kind == K_COUNTS) {
		fr.body_case = SHIP__SERVER_FRAME__BODY_JOB_COUNTS;
		fr.job_counts = &counts;
		if (x->op.c)
			client_send(x->op.c, &fr);
	} else {
		qsort(l, m, sizeof(*l), listed_cmp);
		uint32_t limit = x->list->limit ? x->list->limit : LIST_LIMIT;
		if (limit > LIST_MAX)
			limit = LIST_MAX;
		size_t k = m < limit ? m : limit;
		Ship__Jobs jobs = SHIP__JOBS__INIT;
		Ship__Job *pj = calloc(k ? k : 1, sizeof(*pj));
		Ship__Job **pp = calloc(k ? k : 1, sizeof(*pp));
		if (pj && pp) {
			for (size_t i = 0; i < k; i++) {
				ship__job__init(&pj[i]);
				job_to_proto(l[i].j, l[i].rev, x->q->name, &pj[i]);
				pp[i] = &pj[i];
			}
			jobs.n_jobs = k;
			jobs.jobs = pp;
			jobs.truncated = m > k;
			fr.body_case = SHIP__SERVER_FRAME__BODY_JOBS;
			fr.jobs = &jobs;
			if (x->op.c &&
			    ship__server_frame__get_packed_size(&fr) + 16 >
			            conf->max_frame) {
				client_error(x->op.c, x->op.id,
				             SHIP__CODE__RESOURCE_EXHAUSTED,
				             "%zu jobs are over the frame limit: "
				             "ask for fewer (limit)",
				             k);
			} else if (x->op.c) {
				client_send(x->op.c, &fr);
			}
			for (size_t i = 0; i < k; i++)
				job_proto_free(&pj[i]);
		} else if (x->op.c) {
			client_error(x->op.c, x->op.id, SHIP__CODE__INTERNAL,
			             "out of memory");
		}
		free(pj);
		free(pp);
	}
	for (size_t i = 0; i < m; i++)
		json_decref(l[i].j);
	free(l);
	req_free(x);
}

static void collect_start(struct jreq *x)
{
	struct kv_watch_spec s = {.bucket = x->q->bucket, .pattern = "job.>"};
	x->coll = kv_collect(&s, conf->client_memory_limit, collected, x);
	if (!x->coll)
		fail_code(x, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
}

static void handle_list(struct client *c, uint64_t id, const Ship__JobList *r,
                        enum jkind kind, const char *queue)
{
	if (r && r->status[0] && status_of(r->status) == J_UNKNOWN) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "status '%.32s' is none of queued, running, "
		             "complete, failed",
		             r->status);
		return;
	}
	struct jreq *x = req_on(c, id, POL_JOBS_SUBMIT, queue, kind);
	if (!x)
		return;
	if (r) {
		x->list = msg_copy(&r->base);
		if (!x->list) {
			fail_code(x, SHIP__CODE__INTERNAL, "out of memory");
			return;
		}
	}
	queue_use(x, false);
}

/* ---- queues ---- */

static void answer_queue(struct jreq *x)
{
	if (x->op.c) {
		Ship__ServerFrame f = SHIP__SERVER_FRAME__INIT;
		Ship__JobQueueConfig p = SHIP__JOB_QUEUE_CONFIG__INIT;
		cfg_to_proto(x->q, &p);
		f.id = x->op.id;
		f.body_case = SHIP__SERVER_FRAME__BODY_JOB_QUEUE;
		f.job_queue = &p;
		client_send(x->op.c, &f);
	}
	req_free(x);
}

static void handle_queue_create(struct client *c, uint64_t id,
                                const Ship__JobQueueConfig *r)
{
	if (r->prefix[0] && !name_ok(r->prefix, PREFIX_MAX)) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "a prefix is 1 to %d letters, digits, _ and -",
		             PREFIX_MAX);
		return;
	}
	if (r->max_attempts > 1000) {
		client_error(c, id, SHIP__CODE__INVALID_ARGUMENT,
		             "max_attempts over 1000");
		return;
	}
	struct jreq *x = req_on(c, id, POL_JOBS_ADMIN, r->queue, K_QCREATE);
	if (!x)
		return;
	struct queue *q = x->q;
	x->qcfg = msg_copy(&r->base);
	if (!x->qcfg) {
		fail_code(x, SHIP__CODE__INTERNAL, "out of memory");
		return;
	}
	if (!q->ready && !q->starting)
		cfg_from_proto(&q->cfg, r); /* stored if none is there */
	queue_use(x, true);
}

static void deleted(void *arg, json_t *reply, const struct js_err *e)
{
	struct jreq *x = arg;
	x->call = NULL;
	if (e && !kv_no_stream(e)) {
		fail(x, e);
		return;
	}
	struct queue *q = x->q;
	struct js_err gone;
	kv_forget_bucket(q->bucket);
	if (x->op.c)
		client_ok(x->op.c, x->op.id);
	req_free(x);
	kv_set_err(&gone, SHIP__CODE__NOT_FOUND, "queue '%s' was deleted",
	           q->name);
	queue_free(q, &gone);
}

static void handle_queue(struct client *c, uint64_t id, const char *name,
                         enum jkind kind)
{
	if (!client_allowed(c, id,
	                    kind == K_QDELETE ? POL_JOBS_ADMIN : POL_JOBS_SUBMIT,
	                    name))
		return;
	struct queue *q = queue_get(c, id, name);
	if (!q)
		return;
	struct jreq *x = req_new(c, id, kind);
	if (!x)
		return;
	x->q = q;
	if (kind == K_QINFO) {
		queue_use(x, false);
		return;
	}
	char what[KV_NAME_MAX + 32];
	req_list(x, &q->active);
	snprintf(what, sizeof(what), "STREAM.DELETE.KV_%s", q->bucket);
	x->call = js_api_in(kv_dom(q->bucket), what, NULL, 5000, deleted, x);
	if (!x->call)
		fail_code(x, SHIP__CODE__UNAVAILABLE, "NATS is not connected");
}

/* The queue is ready: each kind goes on. */
static void req_ready(struct jreq *x)
{
	switch (x->kind) {
	case K_SUBMIT:
		if (x->idem_key[0])
			submit_idem(x);
		else
			submit_seq(x);
		break;
	case K_CLAIM:
		queue_follow(x->q);
		claim_next(x);
		break;
	case K_FINISH:
	case K_CHANGE:
	case K_GET:
		edit_start(x);
		break;
	case K_LIST:
	case K_COUNTS:
		collect_start(x);
		break;
	case K_QCREATE: {
		struct qconfig want;
		cfg_from_proto(&want, x->qcfg);
		if (!cfg_same(&want, &x->q->cfg)) {
			fail_code(x, SHIP__CODE__CONFLICT,
			          "queue '%s' exists with other settings",
			          x->q->name);
			break;
		}
		answer_queue(x);
		break;
	}
	case K_QINFO:
		answer_queue(x);
		break;
	default:
		req_free(x);
		break;
	}
}

/* ---- the block ---- */

static void jobs_client_gone(struct client *c)
{
	struct queue *q;
	TAILQ_FOREACH(q, &queues, entry)
	{
		struct held *h, *t;
		TAILQ_FOREACH_SAFE(h, &q->held, entry, t)
		{
			if (h->c != c)
				continue;
			char holder[HOLDER_MAX + 1], id[ID_MAX + 1];
			holder_of(c, holder, sizeof(holder));
			snprintf(id, sizeof(id), "%s", h->id);
			held_remove(q, h);
			release_start(q, id, holder, "its worker left");
		}
	}
}

/* Who holds claims here, and the tick: at the first use. */
static void jobs_start(void)
{
	if (tick)
		return;
	char host[64] = "host", inst[20];
	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	events_random_hex(inst, 16);
	snprintf(holder_base, sizeof(holder_base), "%.48s/%s", host, inst);
	tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	struct timeval tv = {0, TICK_MS * 1000};
	if (tick)
		event_add(tick, &tv);
}

static void jobs_link_changed(bool up)
{
	struct queue *q;
	jobs_start();
	if (!up)
		return;
	TAILQ_FOREACH(q, &queues, entry)
	if (!TAILQ_EMPTY(&q->waiters))
		dispatch_later(q);
}

static void jobs_finish(void)
{
	struct queue *q;
	while ((q = TAILQ_FIRST(&queues)))
		queue_free(q, NULL);
	if (tick)
		event_free(tick);
	tick = NULL;
}

static void req_job_queue_create(struct client *c, const Ship__ClientFrame *f)
{
	handle_queue_create(c, f->id, f->job_queue_create);
}

static void req_job_queue_info(struct client *c, const Ship__ClientFrame *f)
{
	handle_queue(c, f->id, f->job_queue_info->queue, K_QINFO);
}

static void req_job_queue_delete(struct client *c, const Ship__ClientFrame *f)
{
	handle_queue(c, f->id, f->job_queue_delete->queue, K_QDELETE);
}

static void req_job_submit(struct client *c, const Ship__ClientFrame *f)
{
	handle_submit(c, f->id, f->job_submit);
}

static void req_job_claim(struct client *c, const Ship__ClientFrame *f)
{
	handle_claim(c, f->id, f->job_claim);
}

static void req_job_finish(struct client *c, const Ship__ClientFrame *f)
{
	handle_finish(c, f->id, f->job_finish);
}

static void req_job_change(struct client *c, const Ship__ClientFrame *f)
{
	handle_change(c, f->id, f->job_change);
}

static void req_job_get(struct client *c, const Ship__ClientFrame *f)
{
	handle_get(c, f->id, f->job_get);
}

static void req_job_list(struct client *c, const Ship__ClientFrame *f)
{
	handle_list(c, f->id, f->job_list, K_LIST, f->job_list->queue);
}

static void req_job_counts(struct client *c, const Ship__ClientFrame *f)
{
	handle_list(c, f->id, NULL, K_COUNTS, f->job_counts->queue);
}

/* Jobs given back at shutdown (their clients went) are still on their
 * way: shipd waits a little for them rather than leave them held until
 * their leases run out. */
static bool jobs_busy(void)
{
	struct queue *q;
	struct jreq *x;
	TAILQ_FOREACH(q, &queues, entry)
	TAILQ_FOREACH(x, &q->work, qentry)
	if (x->kind == K_RELEASE)
		return true;
	return false;
}

void jobs_each_depth(jobs_depth_fn *fn, void *arg)
{
	struct queue *q;
	TAILQ_FOREACH(q, &queues, entry) {
		if (!q->indexed)
			continue;
		struct jobs_depth d = {0};
		for (size_t i = 0; i < q->tsize; i++)
			for (struct jidx *x = q->table[i]; x; x = x->next)
				if (x->dead)
					d.dead++;
				else if (x->status == J_QUEUED)
					d.queued++;
				else if (x->status == J_RUNNING)
					d.running++;
		struct jreq *r;
		struct held *h;
		TAILQ_FOREACH(r, &q->waiters, qentry)
			d.waiting_claims++;
		TAILQ_FOREACH(h, &q->held, entry)
			d.held++;
		fn(q->name, &d, arg);
	}
}

const struct block jobs_block = {
	.name = "jobs",
	.busy = jobs_busy,
	.client_gone = jobs_client_gone,
	.link_changed = jobs_link_changed,
	.finish = jobs_finish,
	.requests =
		(const struct block_request[]){
			{SHIP__CLIENT_FRAME__BODY_JOB_QUEUE_CREATE,
			 req_job_queue_create, false},
			{SHIP__CLIENT_FRAME__BODY_JOB_QUEUE_INFO,
			 req_job_queue_info, false},
			{SHIP__CLIENT_FRAME__BODY_JOB_QUEUE_DELETE,
			 req_job_queue_delete, false},
			{SHIP__CLIENT_FRAME__BODY_JOB_SUBMIT, req_job_submit, true},
			{SHIP__CLIENT_FRAME__BODY_JOB_CLAIM, req_job_claim, false},
			{SHIP__CLIENT_FRAME__BODY_JOB_FINISH, req_job_finish, true},
			{SHIP__CLIENT_FRAME__BODY_JOB_CHANGE, req_job_change, false},
			{SHIP__CLIENT_FRAME__BODY_JOB_GET, req_job_get, false},
			{SHIP__CLIENT_FRAME__BODY_JOB_LIST, req_job_list, false},
			{SHIP__CLIENT_FRAME__BODY_JOB_COUNTS, req_job_counts, false},
			{0, NULL, false},
		},
};
