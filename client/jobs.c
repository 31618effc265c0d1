/* SPDX-License-Identifier: MIT */
/* libshipc's JobQueue calls: queues, jobs, claims and a worker loop. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "jscan.h"
#include "shipc-private.h"

#define JOB_TIMEOUT_MS 30000
#define WORK_WAIT_MS 5000
#define WORK_RETRY_MS 1000  /* after shipd or NATS was away */
#define WORK_SLICE_MS 100   /* how often an idle worker reads *stop */
#define ERROR_MAX 4096      /* shipd's limit on an error's text */

/* ---- calls ---- */

static int job_call(struct shipc *h, Ship__ClientFrame *f, call_reply_fn *fn,
                    void *out, int timeout_ms)
{
	return call_wait_reply(h, f, fn, out, timeout_ms);
}

/* ---- jobs: the struct and its strings in one allocation ---- */

static size_t job_blob_size(const Ship__Job *p)
{
	return strlen(p->id) + strlen(p->queue) + strlen(p->payload_json) +
	       strlen(p->status) + strlen(p->worker) + strlen(p->queued_by) +
	       strlen(p->result_json) + strlen(p->error) +
	       strlen(p->claimed_by) + strlen(p->holder) +
	       strlen(p->idempotency_key) + 11;
}

static char *put_str(char **p, const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = memcpy(*p, s, n);
	*p += n;
	return d;
}

/* Fill j with copies in blob; j->id is the blob's start. */
static void job_fill(struct shipc_job *j, const Ship__Job *p, char *blob)
{
	j->id = put_str(&blob, p->id);
	j->queue = put_str(&blob, p->queue);
	j->payload_json = put_str(&blob, p->payload_json);
	j->status = put_str(&blob, p->status);
	j->worker = put_str(&blob, p->worker);
	j->queued_by = put_str(&blob, p->queued_by);
	j->result_json = put_str(&blob, p->result_json);
	j->error = put_str(&blob, p->error);
	j->claimed_by = put_str(&blob, p->claimed_by);
	j->holder = put_str(&blob, p->holder);
	j->idempotency_key = put_str(&blob, p->idempotency_key);
	if (!j->result_json[0])
		j->result_json = NULL;
	if (!j->error[0])
		j->error = NULL;
	j->queued_at_ms = p->queued_at_ms;
	j->started_at_ms = p->started_at_ms;
	j->completed_at_ms = p->completed_at_ms;
	j->attempts = p->attempts;
	j->max_attempts = p->max_attempts;
	j->priority = p->priority;
	j->not_before_ms = p->not_before_ms;
	j->lease_until_ms = p->lease_until_ms;
	j->dead_letter = p->dead_letter;
	j->cancelled = p->cancelled;
	j->revision = p->revision;
}

SHIPC_EXPORT void shipc_job_free(struct shipc_job *job)
{
	free(job);
}

SHIPC_EXPORT void shipc_job_list_free(struct shipc_job *list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i].id);
	free(list);
}

static void job_reply(struct shipc *h, struct call *c,
                      const Ship__ServerFrame *f)
{
	(void)h;
	struct shipc_job **out = c->out;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_JOB) || !out)
		return;
	/* The struct is pointer-aligned: its strings follow it. */
	struct shipc_job *j = malloc(sizeof(*j) + job_blob_size(f->job));
	if (!j) {
		c->err = ENOMEM;
		return;
	}
	job_fill(j, f->job, (char *)(j + 1));
	*out = j;
}

/* A call answered with a job; *job (job may be NULL) gets it. */
static int job_request(struct shipc *h, Ship__ClientFrame *f,
                       struct shipc_job **job, int timeout_ms)
{
	struct shipc_job *j = NULL;
	int r = job_call(h, f, job_reply, job ? &j : NULL, timeout_ms);
	if (r < 0) {
		free(j);
		return -1;
	}
	if (job)
		*job = j;
	return 0;
}

/* ---- queues ---- */

static void queue_reply(struct shipc *h, struct call *c,
                        const Ship__ServerFrame *f)
{
	(void)h;
	struct shipc_job_queue_status *st = c->out;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_JOB_QUEUE) || !st)
		return;
	const Ship__JobQueueConfig *q = f->job_queue;
	memset(st, 0, sizeof(*st));
	snprintf(st->queue, sizeof(st->queue), "%s", q->queue);
	st->max_attempts = q->max_attempts;
	st->lease_ms = q->lease_ms;
	st->backoff_ms = q->backoff_ms;
	st->keep_finished = q->keep_finished;
	st->keep_finished_ms = q->keep_finished_ms;
	snprintf(st->prefix, sizeof(st->prefix), "%s", q->prefix);
}

SHIPC_EXPORT int shipc_job_queue_create(struct shipc *h,
                                        const struct shipc_job_queue_config *cfg,
                                        struct shipc_job_queue_status *st)
{
	if (!cfg || !cfg->queue)
		return bad_arg(h, "no queue name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__JobQueueConfig qc = SHIP__JOB_QUEUE_CONFIG__INIT;
	qc.queue = (char *)cfg->queue;
	qc.max_attempts = cfg->max_attempts;
	qc.lease_ms = cfg->lease_ms;
	qc.backoff_ms = cfg->backoff_ms;
	qc.keep_finished = cfg->keep_finished;
	qc.keep_finished_ms = cfg->keep_finished_ms;
	qc.prefix = (char *)(cfg->prefix ? cfg->prefix : "");
	f.body_case = SHIP__CLIENT_FRAME__BODY_JOB_QUEUE_CREATE;
	f.job_queue_create = &qc;
	return job_call(h, &f, queue_reply, st, JOB_TIMEOUT_MS);
}

SHIPC_EXPORT int shipc_job_queue_info(struct shipc *h, const char *queue,
                                      struct shipc_job_queue_status *st)
{
	if (!queue)
		return bad_arg(h, "no queue name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__JobQueueRequest r = SHIP__JOB_QUEUE_REQUEST__INIT;
	r.queue = (char *)queue;
	f.body_case = SHIP__CLIENT_FRAME__BODY_JOB_QUEUE_INFO;
	f.job_queue_info = &r;
	return job_call(h, &f, queue_reply, st, JOB_TIMEOUT_MS);
}

SHIPC_EXPORT int shipc_job_queue_delete(struct shipc *h, const char *queue)
{
	if (!queue)
		return bad_arg(h, "no queue name");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__JobQueueRequest r = SHIP__JOB_QUEUE_REQUEST__INIT;
	r.queue = (char *)queue;
	f.body_case = SHIP__CLIENT_FRAME__BODY_JOB_QUEUE_DELETE;
	f.job_queue_delete = &r;
	return job_call(h, &f, NULL, NULL, JOB_TIMEOUT_MS);
}

/* ---- submit and claim ---- */

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

SHIPC_EXPORT int shipc_job_submit(struct shipc *h, const char *queue,
                                  const struct shipc_job_submit *s,
                                  struct shipc_job **job)
{
	static const struct shipc_job_submit none = {0};
	if (!queue)
		return bad_arg(h, "no queue name");
	if (!s)
		s = &none;
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__JobSubmit js = SHIP__JOB_SUBMIT__INIT;
	js.queue = (char *)queue;
	js.payload_json = (char *)(s->payload_json ? s->payload_json : "null");
	js.worker = (char *)or_empty(s->worker);
	js.priority = s->priority;
	js.delay_ms = s->delay_ms;
	js.idempotency_key = (char *)or_empty(s->idempotency_key);
	js.max_attempts = s->max_attempts;
	js.queued_by = (char *)or_empty(s->queued_by);
	f.body_case = SHIP__CLIENT_FRAME__BODY_JOB_SUBMIT;
	f.job_submit = &js;
	return job_request(h, &f, job, JOB_TIMEOUT_MS);
}

SHIPC_EXPORT int shipc_job_claim(struct shipc *h, const char *queue,
                                 const char *worker, uint32_t wait_ms,
                                 struct shipc_job **job)
{
	if (!queue || !worker || !job)
		return bad_arg(h, "no queue, worker or job");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__JobClaim jc = SHIP__JOB_CLAIM__INIT;
	jc.queue = (char *)queue;
	jc.worker = (char *)worker;
	jc.wait_ms = wait_ms;
	f.body_case = SHIP__CLIENT_FRAME__BODY_JOB_CLAIM;
	f.job_claim = &jc;
	/* shipd answers once the wait is over; a claim given up on here
	 * could still be granted and held unseen until the handle closes,
	 * so the call outwaits it by the usual margin. */
	uint64_t timeout = (uint64_t)wait_ms + JOB_TIMEOUT_MS;
	*job = NULL;
	return job_request(h, &f, job, timeout > INT_MAX / 2 ? INT_MAX / 2
	                                                     : (int)timeout);
}

/* ---- finish, cancel, requeue, get ---- */

static int finish(struct shipc *h, const char *queue, const char *id,
                  Ship__JobFinish *fin, struct shipc_job **job)
{
	if (!queue || !id)
		return bad_arg(h, "no queue or job id");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	fin->queue = (char *)queue;
	fin->id = (char *)id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_JOB_FINISH;
	f.job_finish = fin;
	return job_request(h, &f, job, JOB_TIMEOUT_MS);
}

SHIPC_EXPORT int shipc_job_complete(struct shipc *h, const char *queue,
                                    const char *id, const char *result_json,
                                    struct shipc_job **job)
{
	Ship__JobFinish fin = SHIP__JOB_FINISH__INIT;
	fin.result_json = (char *)or_empty(result_json);
	return finish(h, queue, id, &fin, job);
}

SHIPC_EXPORT int shipc_job_fail(struct shipc *h, const char *queue,
                                const char *id, const char *error, int retry,
                                struct shipc_job **job)
{
	Ship__JobFinish fin = SHIP__JOB_FINISH__INIT;
	fin.failed = true;
	fin.error = (char *)or_empty(error);
	fin.retry = retry != 0;
	return finish(h, queue, id, &fin, job);
}

static int change(struct shipc *h, const char *queue, const char *id,
                  Ship__JobChange__Op op, struct shipc_job **job)
{
	if (!queue || !id)
		return bad_arg(h, "no queue or job id");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__JobChange jc = SHIP__JOB_CHANGE__INIT;
	jc.queue = (char *)queue;
	jc.id = (char *)id;
	jc.op = op;
	f.body_case = SHIP__CLIENT_FRAME__BODY_JOB_CHANGE;
	f.job_change = &jc;
	return job_request(h, &f, job, JOB_TIMEOUT_MS);
}

SHIPC_EXPORT int shipc_job_cancel(struct shipc *h, const char *queue,
                                  const char *id, struct shipc_job **job)
{
	return change(h, queue, id, SHIP__JOB_CHANGE__OP__CANCEL, job);
}

SHIPC_EXPORT int shipc_job_requeue(struct shipc *h, const char *queue,
                                   const char *id, struct shipc_job **job)
{
	return change(h, queue, id, SHIP__JOB_CHANGE__OP__REQUEUE, job);
}

SHIPC_EXPORT int shipc_job_get(struct shipc *h, const char *queue,
                               const char *id, struct shipc_job **job)
{
	if (!queue || !id || !job)
		return bad_arg(h, "no queue, job id or job");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__JobGet g = SHIP__JOB_GET__INIT;
	g.queue = (char *)queue;
	g.id = (char *)id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_JOB_GET;
	f.job_get = &g;
	*job = NULL;
	return job_request(h, &f, job, JOB_TIMEOUT_MS);
}

/* ---- list and counts ---- */

struct list_out {
	struct shipc_job *list;
	size_t n;
	bool truncated;
};

static void jobs_reply(struct shipc *h, struct call *c,
                       const Ship__ServerFrame *f)
{
	(void)h;
	struct list_out *out = c->out;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_JOBS))
		return;
	size_t n = f->jobs->n_jobs;
	if (!(out->list = calloc(n ? n : 1, sizeof(*out->list)))) {
		c->err = ENOMEM;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const Ship__Job *p = f->jobs->jobs[i];
		char *blob = malloc(job_blob_size(p));
		if (!blob) {
			c->err = ENOMEM;
			return; /* the caller frees the first out->n */
		}
		job_fill(&out->list[i], p, blob);
		out->n = i + 1;
	}
	out->truncated = f->jobs->truncated;
}

SHIPC_EXPORT int shipc_job_list(struct shipc *h, const char *queue,
                                const struct shipc_job_filter *filter,
                                struct shipc_job **list, size_t *n,
                                int *truncated)
{
	if (!queue || !list || !n)
		return bad_arg(h, "no queue or list");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__JobList jl = SHIP__JOB_LIST__INIT;
	jl.queue = (char *)queue;
	if (filter) {
		jl.status = (char *)or_empty(filter->status);
		jl.worker = (char *)or_empty(filter->worker);
		jl.dead_letter = filter->dead_letter != 0;
		jl.limit = filter->limit;
	}
	f.body_case = SHIP__CLIENT_FRAME__BODY_JOB_LIST;
	f.job_list = &jl;
	struct list_out out = {0};
	if (job_call(h, &f, jobs_reply, &out, JOB_TIMEOUT_MS) < 0) {
		int saved = errno;
		shipc_job_list_free(out.list, out.n);
		errno = saved;
		return -1;
	}
	*list = out.list;
	*n = out.n;
	if (truncated)
		*truncated = out.truncated;
	return 0;
}

static void counts_reply(struct shipc *h, struct call *c,
                         const Ship__ServerFrame *f)
{
	(void)h;
	struct shipc_job_counts *out = c->out;
	if (!reply_is(c, f, SHIP__SERVER_FRAME__BODY_JOB_COUNTS))
		return;
	const Ship__JobCounts *jc = f->job_counts;
	out->queued = jc->queued;
	out->running = jc->running;
	out->complete = jc->complete;
	out->failed = jc->failed;
	out->dead_letter = jc->dead_letter;
	out->delayed = jc->delayed;
}

SHIPC_EXPORT int shipc_job_counts(struct shipc *h, const char *queue,
                                  struct shipc_job_counts *counts)
{
	if (!queue || !counts)
		return bad_arg(h, "no queue or counts");
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__JobQueueRequest r = SHIP__JOB_QUEUE_REQUEST__INIT;
	r.queue = (char *)queue;
	f.body_case = SHIP__CLIENT_FRAME__BODY_JOB_COUNTS;
	f.job_counts = &r;
	return job_call(h, &f, counts_reply, counts, JOB_TIMEOUT_MS);
}

/* ---- the worker loop ---- */

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool stopped(volatile int *stop)
{
	return stop && *stop;
}

/* Sleep until deadline (monotonic ms), reading *stop in between. */
static void idle_until(uint64_t deadline, volatile int *stop)
{
	uint64_t now;
	while (!stopped(stop) && (now = mono_ms()) < deadline) {
		uint64_t ms = deadline - now;
		if (ms > WORK_SLICE_MS)
			ms = WORK_SLICE_MS;
		struct timespec ts = {0, (long)ms * 1000000};
		nanosleep(&ts, NULL);
	}
}

/* Errors that pass: shipd or NATS away, or nothing to do yet. */
static bool passing(int err)
{
	return err == ENOENT || err == ENOTCONN || err == ECONNRESET ||
	       err == EAGAIN || err == ETIMEDOUT;
}

/* Length of the well-formed UTF-8 sequence at p (n bytes) that is not
 * ASCII, or 0 (RFC 3629: no overlong forms, surrogates or beyond
 * U+10FFFF). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : 2;
	if (p[0] < 0xc2 || p[0] > 0xf4 || n < len)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
		return 0;
	return len;
}

/* shipd takes an error as one line of UTF-8: control characters become
 * spaces, bytes that are not UTF-8 question marks. */
static char *printable_error(const char *e)
{
	size_t n = strlen(e) > ERROR_MAX ? ERROR_MAX : strlen(e);
	unsigned char *s = malloc(n + 1);
	if (!s)
		return NULL;
	memcpy(s, e, n);
	s[n] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t len = s[i] >= 0x80 ? utf8_len(s + i, n - i) : 1;
		if (len > 1)
			i += len - 1;
		else if (s[i] >= 0x80)
			s[i] = '?';
		else if (s[i] < 0x20 || s[i] == 0x7f)
			s[i] = ' ';
	}
	return (char *)s;
}

/* Finish job as fn's answer says. 0, or -1 with errno set. */
static int finish_as(struct shipc *h, const struct shipc_job *job, int rc,
                     const char *result, const char *error)
{
	int r;
	if (rc == SHIPC_JOB_DONE && result &&
	    jscan_valid(result, strlen(result)) < 0) {
		rc = SHIPC_JOB_FAILED;
		error = "the worker's result is not JSON";
	}
	if (rc == SHIPC_JOB_DONE) {
		r = shipc_job_complete(h, job->queue, job->id, result, NULL);
	} else {
		char *e = printable_error(error ? error : "failed");
		if (!e)
			return -1;
		r = shipc_job_fail(h, job->queue, job->id, e,
		                   rc != SHIPC_JOB_FAILED, NULL);
		free(e);
	}
	if (r < 0 && (errno == EBUSY || passing(errno))) {
		/* Not ours any more, or shipd will requeue it: go on. */
		char why[256];
		shipc_log(LOG_WARNING, "libshipc: job %s of queue %s: %s",
		          job->id, job->queue,
		          shipc_last_error(h, why, sizeof(why)));
		return 0;
	}
	return r;
}

static int work_one(struct shipc *h, const struct shipc_job *job,
                    shipc_job_fn *fn, void *arg)
{
	char *result = NULL, *error = NULL;
	int rc = fn(h, job, &result, &error, arg);
	if (rc != SHIPC_JOB_DONE && rc != SHIPC_JOB_FAILED)
		rc = SHIPC_JOB_RETRY;
	int r = finish_as(h, job, rc, result, error);
	int saved = errno;
	free(result);
	free(error);
	errno = saved;
	return r;
}

SHIPC_EXPORT int shipc_job_work(struct shipc *h, const char *queue,
                                const char *worker, shipc_job_fn *fn,
                                void *arg,
                                const struct shipc_job_work_opts *o)
{
	if (!queue || !worker || !fn)
		return bad_arg(h, "no queue, worker or function");
	uint32_t wait = o && o->wait_ms ? o->wait_ms : WORK_WAIT_MS;
	uint64_t max = o ? o->max_jobs : 0, done = 0;
	volatile int *stop = o ? o->stop : NULL;
	while (!stopped(stop) && (!max || done < max)) {
		struct shipc_job *job;
		uint64_t start = mono_ms();
		if (shipc_job_claim(h, queue, worker, wait, &job) < 0) {
			if (!passing(errno))
				return -1;
			/* An early ENOENT (no queue yet) or an outage
			 * must not make this a busy loop. */
			idle_until(start + (errno == ENOENT || wait < WORK_RETRY_MS
			                            ? wait
			                            : WORK_RETRY_MS),
			           stop);
			continue;
		}
		int r = work_one(h, job, fn, arg);
		int saved = errno;
		shipc_job_free(job);
		if (r < 0) {
			errno = saved;
			return -1;
		}
		done++;
	}
	return 0;
}
