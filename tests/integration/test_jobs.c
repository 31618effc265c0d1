/* SPDX-License-Identifier: MIT */
/* The JobQueue through libshipc against a real nats-server -js: submit,
 * claim order and waits, complete, fail, retries with backoff and dead
 * letters, cancel and requeue, idempotency keys, claims that belong to
 * their handle (refused to others, requeued when it closes), the worker
 * loop, and the job JSON in KV with noesis-ship's field names. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fixture.h"
#include "shipc.h"

static struct natsd nd;
static struct shipdp sd;

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_up(&nd, &sd, NULL), 0);
}

static void teardown(void)
{
	int rc = fx_down(&nd, &sd);
	ck_assert_msg(rc == 0, "shipd exited with %d", rc);
}

static struct shipc *conn(void)
{
	struct shipc *h = shipc_connect(sd.sock, "test_jobs");
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	for (int i = 0; i < 200; i++) {
		if (shipc_status(h, &st) == 0 && st.link == SHIPC_LINK_CONNECTED)
			break;
		fx_sleep_ms(25);
	}
	return h;
}

static const char *why(struct shipc *h)
{
	static char buf[256];
	return shipc_last_error(h, buf, sizeof(buf));
}

static void queue(struct shipc *h, const char *name, uint32_t max_attempts,
                  uint64_t backoff_ms)
{
	struct shipc_job_queue_config c = {.queue = name,
	                                   .max_attempts = max_attempts,
	                                   .backoff_ms = backoff_ms};
	ck_assert_msg(shipc_job_queue_create(h, &c, NULL) == 0, "create %s: %s",
	              name, why(h));
}

/* Submit payload for worker (NULL: any) at priority; returns the job. */
static struct shipc_job *submit(struct shipc *h, const char *q,
                                const char *payload, const char *worker,
                                int32_t priority)
{
	struct shipc_job_submit s = {.payload_json = payload, .worker = worker,
	                             .priority = priority};
	struct shipc_job *j = NULL;
	ck_assert_msg(shipc_job_submit(h, q, &s, &j) == 0, "submit to %s: %s",
	              q, why(h));
	ck_assert_ptr_nonnull(j);
	return j;
}

static char *submit_id(struct shipc *h, const char *q, const char *payload,
                       const char *worker, int32_t priority)
{
	struct shipc_job *j = submit(h, q, payload, worker, priority);
	char *id = strdup(j->id);
	shipc_job_free(j);
	return id;
}

static struct shipc_job *claim(struct shipc *h, const char *q,
                               const char *worker, uint32_t wait_ms)
{
	struct shipc_job *j = NULL;
	ck_assert_msg(shipc_job_claim(h, q, worker, wait_ms, &j) == 0,
	              "claim %s as %s: %s", q, worker, why(h));
	ck_assert_ptr_nonnull(j);
	return j;
}

static struct shipc_job *get(struct shipc *h, const char *q, const char *id)
{
	struct shipc_job *j = NULL;
	ck_assert_msg(shipc_job_get(h, q, id, &j) == 0, "get %s: %s", id,
	              why(h));
	return j;
}

static void expect_status(struct shipc *h, const char *q, const char *id,
                          const char *status)
{
	struct shipc_job *j = get(h, q, id);
	ck_assert_str_eq(j->status, status);
	shipc_job_free(j);
}

static void expect_no_claim(struct shipc *h, const char *q, const char *w)
{
	struct shipc_job *j = NULL;
	ck_assert_int_eq(shipc_job_claim(h, q, w, 0, &j), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_ptr_null(j);
}

/* ---- submit, get, list, counts ---- */

START_TEST(submit_get_list_counts)
{
	struct shipc *h = conn();
	struct shipc_job *j = submit(h, "build", "{ \"target\" : \"arm64\" }",
	                             "dgx", 0);
	ck_assert_str_eq(j->id, "JOB-001");
	ck_assert_str_eq(j->queue, "build");
	ck_assert_str_eq(j->payload_json, "{\"target\":\"arm64\"}");
	ck_assert_str_eq(j->status, "queued");
	ck_assert_str_eq(j->worker, "dgx");
	ck_assert_str_eq(j->queued_by, "test_jobs");
	ck_assert_uint_gt(j->queued_at_ms, 1600000000000ull);
	ck_assert_uint_eq(j->started_at_ms, 0);
	ck_assert_uint_eq(j->completed_at_ms, 0);
	ck_assert_ptr_null(j->result_json);
	ck_assert_ptr_null(j->error);
	ck_assert_uint_eq(j->attempts, 0);
	ck_assert_uint_eq(j->max_attempts, 3);
	ck_assert_int_eq(j->dead_letter, 0);
	ck_assert_int_eq(j->cancelled, 0);
	ck_assert_uint_gt(j->revision, 0);
	uint64_t queued_at = j->queued_at_ms;
	shipc_job_free(j);

	/* The first submit made the queue, with the defaults. */
	struct shipc_job_queue_status st;
	ck_assert_int_eq(shipc_job_queue_info(h, "build", &st), 0);
	ck_assert_str_eq(st.queue, "build");
	ck_assert_str_eq(st.prefix, "JOB");
	ck_assert_uint_eq(st.max_attempts, 3);
	ck_assert_uint_eq(st.lease_ms, 30000);
	ck_assert_uint_eq(st.backoff_ms, 1000);

	struct shipc_job_submit s = {.payload_json = "[1,2]", .priority = 5,
	                             .queued_by = "ci", .max_attempts = 7};
	ck_assert_int_eq(shipc_job_submit(h, "build", &s, &j), 0);
	ck_assert_str_eq(j->id, "JOB-002");
	ck_assert_str_eq(j->worker, "");
	ck_assert_str_eq(j->queued_by, "ci");
	ck_assert_int_eq(j->priority, 5);
	ck_assert_uint_eq(j->max_attempts, 7);
	shipc_job_free(j);
	/* job NULL is fine; a NULL payload is null. */
	ck_assert_int_eq(shipc_job_submit(h, "build", NULL, NULL), 0);
	s = (struct shipc_job_submit){.payload_json = "\"later\"",
	                              .delay_ms = 60000};
	ck_assert_int_eq(shipc_job_submit(h, "build", &s, &j), 0);
	ck_assert_uint_ge(j->not_before_ms, j->queued_at_ms + 60000);
	shipc_job_free(j);

	j = get(h, "build", "JOB-001");
	ck_assert_str_eq(j->payload_json, "{\"target\":\"arm64\"}");
	ck_assert_uint_eq(j->queued_at_ms, queued_at);
	shipc_job_free(j);
	j = get(h, "build", "JOB-003");
	ck_assert_str_eq(j->payload_json, "null");
	shipc_job_free(j);

	struct shipc_job *list;
	size_t n;
	int truncated = -1;
	ck_assert_int_eq(shipc_job_list(h, "build", NULL, &list, &n, &truncated),
	                 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_int_eq(truncated, 0);
	for (size_t i = 0; i < n; i++) {
		char want[32];
		snprintf(want, sizeof(want), "JOB-%03zu", i + 1);
		ck_assert_str_eq(list[i].id, want); /* oldest first */
		if (i)
			ck_assert_uint_ge(list[i].queued_at_ms,
			                  list[i - 1].queued_at_ms);
	}
	ck_assert_str_eq(list[1].payload_json, "[1,2]");
	shipc_job_list_free(list, n);
	struct shipc_job_filter f = {.worker = "dgx"};
	ck_assert_int_eq(shipc_job_list(h, "build", &f, &list, &n, NULL), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0].id, "JOB-001");
	shipc_job_list_free(list, n);
	f = (struct shipc_job_filter){.limit = 2};
	ck_assert_int_eq(shipc_job_list(h, "build", &f, &list, &n, &truncated),
	                 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(truncated, 1);
	shipc_job_list_free(list, n);
	f = (struct shipc_job_filter){.status = "running"};
	ck_assert_int_eq(shipc_job_list(h, "build", &f, &list, &n, NULL), 0);
	ck_assert_uint_eq(n, 0);
	shipc_job_list_free(list, n);
	f = (struct shipc_job_filter){.status = "sleeping"};
	ck_assert_int_eq(shipc_job_list(h, "build", &f, &list, &n, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);

	struct shipc_job_counts c;
	ck_assert_int_eq(shipc_job_counts(h, "build", &c), 0);
	ck_assert_uint_eq(c.queued, 4);
	ck_assert_uint_eq(c.delayed, 1);
	ck_assert_uint_eq(c.running, 0);
	ck_assert_uint_eq(c.complete, 0);
	ck_assert_uint_eq(c.failed, 0);
	ck_assert_uint_eq(c.dead_letter, 0);
	shipc_close(h);
}
END_TEST

/* ---- claims ---- */

START_TEST(claim_order)
{
	struct shipc *h = conn();
	queue(h, "order", 0, 0);
	char *low = submit_id(h, "order", "1", NULL, 0);
	fx_sleep_ms(5);
	char *old = submit_id(h, "order", "2", NULL, 10);
	fx_sleep_ms(5);
	char *young = submit_id(h, "order", "3", NULL, 10);
	char *other = submit_id(h, "order", "4", "w2", 99);
	char *mine = submit_id(h, "order", "5", "w1", 10);
	fx_sleep_ms(5);
	char *mine2 = submit_id(h, "order", "6", "w1", 10);

	/* w1: the highest priority of its own and any worker's, oldest first;
	 * never w2's. */
	const char *want[] = {old, young, mine, mine2, low};
	for (size_t i = 0; i < 5; i++) {
		uint64_t before = fx_now_ms();
		struct shipc_job *j = claim(h, "order", "w1", 0);
		ck_assert_str_eq(j->id, want[i]);
		ck_assert_str_eq(j->status, "running");
		ck_assert_str_eq(j->claimed_by, "w1");
		ck_assert_str_ne(j->holder, "");
		ck_assert_uint_eq(j->attempts, 1);
		ck_assert_uint_ge(j->started_at_ms + 5, before);
		ck_assert_uint_gt(j->lease_until_ms, j->started_at_ms + 20000);
		shipc_job_free(j);
	}
	expect_no_claim(h, "order", "w1");
	struct shipc_job *j = claim(h, "order", "w2", 0);
	ck_assert_str_eq(j->id, other);
	shipc_job_free(j);
	expect_no_claim(h, "order", "w2");

	struct shipc_job_counts c;
	ck_assert_int_eq(shipc_job_counts(h, "order", &c), 0);
	ck_assert_uint_eq(c.running, 6);
	ck_assert_uint_eq(c.queued, 0);
	struct shipc_job_filter f = {.status = "running", .worker = "w2"};
	struct shipc_job *list;
	size_t n;
	ck_assert_int_eq(shipc_job_list(h, "order", &f, &list, &n, NULL), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0].id, other);
	shipc_job_list_free(list, n);
	free(low);
	free(old);
	free(young);
	free(other);
	free(mine);
	free(mine2);
	shipc_close(h);
}
END_TEST

struct waiter {
	const char *queue;
	uint32_t wait_ms;
	int rc, err;
	uint64_t took_ms;
	char id[64];
};

static void *claim_thread(void *arg)
{
	struct waiter *w = arg;
	struct shipc *h = shipc_connect(sd.sock, "waiter");
	struct shipc_job *j = NULL;
	uint64_t t0 = fx_now_ms();
	w->rc = h ? shipc_job_claim(h, w->queue, "w", w->wait_ms, &j) : -1;
	w->err = errno;
	w->took_ms = fx_now_ms() - t0;
	if (j)
		snprintf(w->id, sizeof(w->id), "%s", j->id);
	shipc_job_free(j);
	/* Still held: the job goes back when h closes. */
	shipc_close(h);
	return NULL;
}

START_TEST(claim_waits)
{
	struct shipc *h = conn();
	queue(h, "waits", 0, 0);

	/* No wait on an empty queue: ENOENT at once. */
	uint64_t t0 = fx_now_ms();
	expect_no_claim(h, "waits", "w");
	ck_assert_uint_lt(fx_now_ms() - t0, 3000);
	t0 = fx_now_ms();
	expect_no_claim(h, "waits", "w");
	ck_assert_uint_lt(fx_now_ms() - t0, 1000);

	/* A wait that nothing ends: ENOENT after it. */
	struct shipc_job *j = NULL;
	t0 = fx_now_ms();
	ck_assert_int_eq(shipc_job_claim(h, "waits", "w", 700, &j), -1);
	ck_assert_int_eq(errno, ENOENT);
	uint64_t took = fx_now_ms() - t0;
	ck_assert_uint_ge(took, 650);
	ck_assert_uint_lt(took, 3000);

	/* A job submitted during the wait ends it. */
	struct waiter w = {.queue = "waits", .wait_ms = 10000};
	pthread_t th;
	pthread_create(&th, NULL, claim_thread, &w);
	fx_sleep_ms(500);
	char *id = submit_id(h, "waits", "{\"late\":true}", NULL, 0);
	pthread_join(th, NULL);
	ck_assert_msg(w.rc == 0, "claim during the wait: %s", strerror(w.err));
	ck_assert_str_eq(w.id, id);
	ck_assert_uint_ge(w.took_ms, 400);
	ck_assert_uint_lt(w.took_ms, 5000);

	/* A wait longer than libshipc's usual call timeout is allowed. */
	struct waiter w2 = {.queue = "waits", .wait_ms = 34000};
	pthread_create(&th, NULL, claim_thread, &w2);
	fx_sleep_ms(33000);
	char *id2 = submit_id(h, "waits", "{\"later\":true}", NULL, 0);
	pthread_join(th, NULL);
	ck_assert_msg(w2.rc == 0, "claim in a long wait: %s", strerror(w2.err));
	ck_assert_msg(strcmp(w2.id, id2) == 0 || strcmp(w2.id, id) == 0,
	              "claimed %s", w2.id);
	free(id);
	free(id2);
	shipc_close(h);
}
END_TEST

/* ---- finishing ---- */

START_TEST(complete_and_fail)
{
	struct shipc *h = conn();
	queue(h, "fin", 0, 0);
	char *a = submit_id(h, "fin", "1", NULL, 0);
	struct shipc_job *j = claim(h, "fin", "w", 0);
	ck_assert_str_eq(j->id, a);
	shipc_job_free(j);
	ck_assert_int_eq(shipc_job_complete(h, "fin", a, "{ \"ok\" : true }", &j),
	                 0);
	ck_assert_str_eq(j->status, "complete");
	ck_assert_str_eq(j->result_json, "{\"ok\":true}");
	ck_assert_uint_ge(j->completed_at_ms, j->started_at_ms);
	ck_assert_str_eq(j->holder, "");
	ck_assert_uint_eq(j->lease_until_ms, 0);
	shipc_job_free(j);
	/* Done: no longer claimable (a complete again is answered as the
	 * first was: finish_again_after_a_lost_answer). */
	expect_no_claim(h, "fin", "w");

	/* A result of null. */
	char *b = submit_id(h, "fin", "2", NULL, 0);
	shipc_job_free(claim(h, "fin", "w", 0));
	ck_assert_int_eq(shipc_job_complete(h, "fin", b, NULL, NULL), 0);
	j = get(h, "fin", b);
	ck_assert_str_eq(j->status, "complete");
	ck_assert_ptr_null(j->result_json);
	shipc_job_free(j);

	/* Fail without retry: failed at once, the error kept. */
	char *c = submit_id(h, "fin", "3", NULL, 0);
	shipc_job_free(claim(h, "fin", "w", 0));
	ck_assert_int_eq(shipc_job_fail(h, "fin", c, "disk full", 0, &j), 0);
	ck_assert_str_eq(j->status, "failed");
	ck_assert_str_eq(j->error, "disk full");
	ck_assert_uint_gt(j->completed_at_ms, 0);
	ck_assert_uint_eq(j->attempts, 1);
	shipc_job_free(j);
	expect_no_claim(h, "fin", "w");

	/* A result that is not JSON is refused; the job stays held. */
	char *d = submit_id(h, "fin", "4", NULL, 0);
	shipc_job_free(claim(h, "fin", "w", 0));
	ck_assert_int_eq(shipc_job_complete(h, "fin", d, "{nope", NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	expect_status(h, "fin", d, "running");
	ck_assert_int_eq(shipc_job_complete(h, "fin", d, "\"fine\"", NULL), 0);

	struct shipc_job_counts n;
	ck_assert_int_eq(shipc_job_counts(h, "fin", &n), 0);
	ck_assert_uint_eq(n.complete, 3);
	ck_assert_uint_eq(n.failed, 1);
	ck_assert_uint_eq(n.running, 0);
	free(a);
	free(b);
	free(c);
	free(d);
	shipc_close(h);
}
END_TEST

START_TEST(retry_backoff_dead_letter)
{
	struct shipc *h = conn();
	queue(h, "retry", 2, 300);
	char *id = submit_id(h, "retry", "{\"flaky\":1}", NULL, 0);

	struct shipc_job *j = claim(h, "retry", "w", 0);
	ck_assert_uint_eq(j->attempts, 1);
	shipc_job_free(j);
	uint64_t t0 = fx_now_ms();
	ck_assert_int_eq(shipc_job_fail(h, "retry", id, "timeout talking to x", 1,
	                                &j),
	                 0);
	/* Queued again after the backoff, the attempt counted. */
	ck_assert_str_eq(j->status, "queued");
	ck_assert_uint_eq(j->attempts, 1);
	ck_assert_str_eq(j->error, "timeout talking to x");
	ck_assert_str_eq(j->claimed_by, "");
	ck_assert_uint_ge(j->not_before_ms + 50, t0 + 300);
	ck_assert_int_eq(j->dead_letter, 0);
	shipc_job_free(j);
	struct shipc_job_counts c;
	ck_assert_int_eq(shipc_job_counts(h, "retry", &c), 0);
	ck_assert_uint_eq(c.queued, 1);
	ck_assert_uint_eq(c.delayed, 1);
	expect_no_claim(h, "retry", "w"); /* not before the backoff */
	j = claim(h, "retry", "w", 5000);
	ck_assert_str_eq(j->id, id);
	ck_assert_uint_ge(fx_now_ms() - t0, 250);
	ck_assert_uint_eq(j->attempts, 2);
	shipc_job_free(j);

	/* The last attempt failed: a dead letter, whatever retry says. */
	ck_assert_int_eq(shipc_job_fail(h, "retry", id, "again", 1, &j), 0);
	ck_assert_str_eq(j->status, "failed");
	ck_assert_int_eq(j->dead_letter, 1);
	ck_assert_uint_eq(j->attempts, 2);
	shipc_job_free(j);
	ck_assert_int_eq(shipc_job_counts(h, "retry", &c), 0);
	ck_assert_uint_eq(c.failed, 1);
	ck_assert_uint_eq(c.dead_letter, 1);
	ck_assert_uint_eq(c.queued, 0);
	struct shipc_job_filter f = {.dead_letter = 1};
	struct shipc_job *list;
	size_t n;
	ck_assert_int_eq(shipc_job_list(h, "retry", &f, &list, &n, NULL), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(list[0].id, id);
	shipc_job_list_free(list, n);
	fx_sleep_ms(400);
	expect_no_claim(h, "retry", "w");

	/* Requeued by hand: attempts start over. */
	ck_assert_int_eq(shipc_job_requeue(h, "retry", id, &j), 0);
	ck_assert_str_eq(j->status, "queued");
	ck_assert_uint_eq(j->attempts, 0);
	ck_assert_int_eq(j->dead_letter, 0);
	shipc_job_free(j);
	j = claim(h, "retry", "w", 2000);
	ck_assert_str_eq(j->id, id);
	ck_assert_uint_eq(j->attempts, 1);
	shipc_job_free(j);
	/* Only a failed job is requeued. */
	ck_assert_int_eq(shipc_job_requeue(h, "retry", id, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	free(id);
	shipc_close(h);
}
END_TEST

START_TEST(cancel_and_requeue)
{
	struct shipc *h = conn();
	queue(h, "cancel", 0, 0);
	char *id = submit_id(h, "cancel", "{}", NULL, 0);
	struct shipc_job *j;
	ck_assert_int_eq(shipc_job_cancel(h, "cancel", id, &j), 0);
	ck_assert_str_eq(j->status, "failed");
	ck_assert_int_eq(j->cancelled, 1);
	shipc_job_free(j);
	expect_no_claim(h, "cancel", "w");
	ck_assert_int_eq(shipc_job_cancel(h, "cancel", id, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(shipc_job_requeue(h, "cancel", id, &j), 0);
	ck_assert_str_eq(j->status, "queued");
	ck_assert_int_eq(j->cancelled, 0);
	shipc_job_free(j);
	j = claim(h, "cancel", "w", 2000);
	ck_assert_str_eq(j->id, id);
	shipc_job_free(j);
	ck_assert_int_eq(shipc_job_cancel(h, "cancel", "JOB-999", NULL), -1);
	ck_assert_int_eq(errno, ENOENT);
	free(id);
	shipc_close(h);
}
END_TEST

START_TEST(idempotency_key)
{
	struct shipc *h = conn();
	struct shipc_job_submit s = {.payload_json = "{\"n\":1}",
	                             .idempotency_key = "order-42"};
	struct shipc_job *a, *b, *c;
	ck_assert_int_eq(shipc_job_submit(h, "idem", &s, &a), 0);
	s.payload_json = "{\"n\":2}"; /* the same key: the first job */
	ck_assert_int_eq(shipc_job_submit(h, "idem", &s, &b), 0);
	ck_assert_str_eq(a->id, b->id);
	ck_assert_str_eq(b->payload_json, "{\"n\":1}");
	ck_assert_str_eq(b->idempotency_key, "order-42");
	s.idempotency_key = "order-43";
	ck_assert_int_eq(shipc_job_submit(h, "idem", &s, &c), 0);
	ck_assert_str_ne(a->id, c->id);
	struct shipc_job *list;
	size_t n;
	ck_assert_int_eq(shipc_job_list(h, "idem", NULL, &list, &n, NULL), 0);
	ck_assert_uint_eq(n, 2);
	shipc_job_list_free(list, n);
	shipc_job_free(a);
	shipc_job_free(b);
	shipc_job_free(c);
	shipc_close(h);
}
END_TEST

/* ---- a claim belongs to its handle ---- */

START_TEST(held_by_the_claimer)
{
	struct shipc *a = conn(), *b = conn();
	queue(a, "held", 0, 0);
	char *id = submit_id(a, "held", "{}", NULL, 0);
	struct shipc_job *j = claim(a, "held", "wa", 0);
	uint64_t rev = j->revision;
	char holder[256];
	snprintf(holder, sizeof(holder), "%s", j->holder);
	shipc_job_free(j);

	ck_assert_int_eq(shipc_job_complete(b, "held", id, "1", &j), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(shipc_job_fail(b, "held", id, "x", 1, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	/* Nothing changed. */
	j = get(b, "held", id);
	ck_assert_str_eq(j->status, "running");
	ck_assert_str_eq(j->holder, holder);
	ck_assert_uint_eq(j->revision, rev);
	ck_assert_ptr_null(j->result_json);
	shipc_job_free(j);

	ck_assert_int_eq(shipc_job_complete(a, "held", id, "1", NULL), 0);
	expect_status(b, "held", id, "complete");
	free(id);
	shipc_close(a);
	shipc_close(b);
}
END_TEST

/* An app whose complete (or fail) went unanswered (a timeout, NATS away
 * for a moment) tries it again, but the first try was applied: the job is
 * no longer held. The same finish by the same handle of the same claim is
 * answered as the first was; anything else is refused. */
START_TEST(finish_again_after_a_lost_answer)
{
	struct shipc *a = conn(), *b = conn();
	queue(a, "again", 0, 50);
	struct shipc_job *j;

	/* Complete, complete again: the job as the first left it, unwritten. */
	char *c = submit_id(a, "again", "1", NULL, 0);
	shipc_job_free(claim(a, "again", "wa", 0));
	ck_assert_int_eq(shipc_job_complete(a, "again", c, "{\"n\":1}", &j), 0);
	uint64_t rev = j->revision, done = j->completed_at_ms;
	shipc_job_free(j);
	j = NULL;
	ck_assert_msg(shipc_job_complete(a, "again", c, "{\"n\":1}", &j) == 0,
	              "complete again: %s", why(a));
	ck_assert_str_eq(j->status, "complete");
	ck_assert_str_eq(j->result_json, "{\"n\":1}");
	ck_assert_uint_eq(j->revision, rev);
	ck_assert_uint_eq(j->completed_at_ms, done);
	shipc_job_free(j);
	/* The first result stays, as a submit with its idempotency key
	 * answers the first job. */
	ck_assert_int_eq(shipc_job_complete(a, "again", c, "2", &j), 0);
	ck_assert_str_eq(j->result_json, "{\"n\":1}");
	shipc_job_free(j);
	/* Not another handle's complete or fail, not a fail after it. */
	ck_assert_int_eq(shipc_job_complete(b, "again", c, "{\"n\":1}", NULL),
	                 -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(shipc_job_fail(b, "again", c, "x", 0, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(shipc_job_fail(a, "again", c, "x", 0, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	j = get(a, "again", c);
	ck_assert_str_eq(j->status, "complete");
	ck_assert_uint_eq(j->revision, rev);
	shipc_job_free(j);

	/* Fail, fail again; not a complete after it, nor a fail with
	 * another outcome (with retry it would have been queued again). */
	char *f = submit_id(a, "again", "2", NULL, 0);
	shipc_job_free(claim(a, "again", "wa", 0));
	ck_assert_int_eq(shipc_job_fail(a, "again", f, "boom", 0, NULL), 0);
	ck_assert_msg(shipc_job_fail(a, "again", f, "boom", 0, &j) == 0,
	              "fail again: %s", why(a));
	ck_assert_str_eq(j->status, "failed");
	ck_assert_str_eq(j->error, "boom");
	shipc_job_free(j);
	ck_assert_int_eq(shipc_job_fail(a, "again", f, "boom", 1, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(shipc_job_complete(a, "again", f, NULL, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(shipc_job_fail(b, "again", f, "boom", 0, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);

	/* Failed with retry: again while it waits in the queue, but once it
	 * is claimed again (another attempt, another holder) a's claim is
	 * over: neither its fail nor a complete counts, before or after b
	 * completes it. */
	char *r = submit_id(a, "again", "3", NULL, 0);
	j = claim(a, "again", "wa", 0);
	ck_assert_uint_eq(j->attempts, 1);
	shipc_job_free(j);
	ck_assert_int_eq(shipc_job_fail(a, "again", r, "flaky", 1, NULL), 0);
	ck_assert_msg(shipc_job_fail(a, "again", r, "flaky", 1, &j) == 0,
	              "fail with retry again: %s", why(a));
	ck_assert_str_eq(j->status, "queued");
	ck_assert_uint_eq(j->attempts, 1);
	shipc_job_free(j);
	j = claim(b, "again", "wb", 5000);
	ck_assert_str_eq(j->id, r);
	ck_assert_uint_eq(j->attempts, 2);
	shipc_job_free(j);
	ck_assert_int_eq(shipc_job_fail(a, "again", r, "flaky", 1, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(shipc_job_complete(a, "again", r, NULL, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	expect_status(a, "again", r, "running");
	ck_assert_int_eq(shipc_job_complete(b, "again", r, "true", NULL), 0);
	ck_assert_int_eq(shipc_job_complete(a, "again", r, "true", NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(shipc_job_complete(b, "again", r, "true", NULL), 0);

	/* Cancelled under its holder, requeued and claimed by b: a's claim
	 * was never finished by a, so a's complete is refused throughout. */
	char *k = submit_id(a, "again", "4", NULL, 0);
	shipc_job_free(claim(a, "again", "wa", 0));
	ck_assert_int_eq(shipc_job_cancel(b, "again", k, NULL), 0);
	ck_assert_int_eq(shipc_job_complete(a, "again", k, NULL, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(shipc_job_requeue(b, "again", k, NULL), 0);
	j = claim(b, "again", "wb", 5000);
	ck_assert_str_eq(j->id, k);
	shipc_job_free(j);
	ck_assert_int_eq(shipc_job_complete(a, "again", k, NULL, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(shipc_job_complete(b, "again", k, NULL, NULL), 0);
	ck_assert_int_eq(shipc_job_complete(a, "again", k, NULL, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);

	/* A job there never was: looked up, like any finish of a job this
	 * handle does not hold. */
	ck_assert_int_eq(shipc_job_complete(a, "again", "JOB-999", NULL, NULL),
	                 -1);
	ck_assert_int_eq(errno, ENOENT);
	free(c);
	free(f);
	free(r);
	free(k);
	shipc_close(a);
	shipc_close(b);
}
END_TEST

START_TEST(close_requeues)
{
	struct shipc *a = conn();
	queue(a, "close", 0, 100);
	char *id = submit_id(a, "close", "{\"x\":1}", NULL, 0);
	struct shipc_job *j = claim(a, "close", "wa", 0);
	ck_assert_uint_eq(j->attempts, 1);
	shipc_job_free(j);
	shipc_close(a);

	/* Another handle waiting for it gets it once its backoff is over. */
	struct shipc *b = conn();
	j = claim(b, "close", "wb", 15000);
	ck_assert_str_eq(j->id, id);
	ck_assert_uint_eq(j->attempts, 2); /* the first one counted */
	ck_assert_str_eq(j->claimed_by, "wb");
	shipc_job_free(j);
	ck_assert_int_eq(shipc_job_complete(b, "close", id, "true", NULL), 0);
	expect_status(b, "close", id, "complete");
	free(id);
	shipc_close(b);
}
END_TEST

/* ---- bad input ---- */

START_TEST(bad_input)
{
	struct shipc *h = conn();
	struct shipc_job *j = NULL;
	struct shipc_job_queue_status st;
	/* No queue: nothing to claim (the claim makes the queue, as a
	 * worker may start before the first submit). */
	ck_assert_int_eq(shipc_job_claim(h, "empty", "w", 0, &j), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_ptr_null(j);
	ck_assert_int_eq(shipc_job_claim(h, "empty", "w", 300, &j), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_job_queue_info(h, "empty", &st), 0);
	/* What only reads makes none. */
	ck_assert_int_eq(shipc_job_get(h, "nosuch", "JOB-001", &j), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_ptr_null(j);
	ck_assert_int_eq(shipc_job_queue_info(h, "nosuch", &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	struct shipc_job_counts c;
	ck_assert_int_eq(shipc_job_counts(h, "nosuch", &c), -1);
	ck_assert_int_eq(errno, ENOENT);

	struct shipc_job_submit s = {.payload_json = "{nope"};
	ck_assert_int_eq(shipc_job_submit(h, "bad", &s, &j), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_msg(strstr(why(h), "not JSON"), "%s", why(h));
	s.payload_json = "";
	ck_assert_int_eq(shipc_job_submit(h, "bad", &s, &j), -1);
	ck_assert_int_eq(errno, EINVAL);
	s.payload_json = "1";
	const char *names[] = {"a b", "a.b", "", "x*", "a/b"};
	for (size_t i = 0; i < 5; i++) {
		ck_assert_int_eq(shipc_job_submit(h, names[i], &s, &j), -1);
		ck_assert_int_eq(errno, EINVAL);
		ck_assert_int_eq(shipc_job_claim(h, names[i], "w", 0, &j), -1);
		ck_assert_int_eq(errno, EINVAL);
	}
	ck_assert_int_eq(shipc_job_submit(h, NULL, &s, &j), -1);
	ck_assert_int_eq(errno, EINVAL);
	s.worker = "tab\there";
	ck_assert_int_eq(shipc_job_submit(h, "bad", &s, &j), -1);
	ck_assert_int_eq(errno, EINVAL);
	s.worker = NULL;

	char *id = submit_id(h, "bad", "1", NULL, 0);
	ck_assert_int_eq(shipc_job_claim(h, "bad", "", 0, &j), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shipc_job_get(h, "bad", "JOB-999", &j), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_job_get(h, "bad", "no such id", &j), -1);
	ck_assert_int_eq(errno, EINVAL);
	/* Complete what was never claimed: refused, nothing changes. */
	ck_assert_int_eq(shipc_job_complete(h, "bad", id, NULL, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	expect_status(h, "bad", id, "queued");

	/* Queues: the same settings again are fine, others are not. */
	struct shipc_job_queue_config qc = {.queue = "made", .prefix = "BUILD",
	                                    .max_attempts = 5,
	                                    .lease_ms = 10000};
	ck_assert_int_eq(shipc_job_queue_create(h, &qc, &st), 0);
	ck_assert_str_eq(st.prefix, "BUILD");
	ck_assert_uint_eq(st.max_attempts, 5);
	ck_assert_uint_eq(st.lease_ms, 10000);
	ck_assert_int_eq(shipc_job_queue_create(h, &qc, NULL), 0);
	qc.max_attempts = 6;
	ck_assert_int_eq(shipc_job_queue_create(h, &qc, NULL), -1);
	ck_assert_int_eq(errno, EBUSY);
	qc.max_attempts = 5;
	qc.prefix = "no.dots";
	ck_assert_int_eq(shipc_job_queue_create(h, &qc, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	j = submit(h, "made", "{}", NULL, 0);
	ck_assert_str_eq(j->id, "BUILD-001");
	ck_assert_uint_eq(j->max_attempts, 5);
	shipc_job_free(j);

	/* A deleted queue is gone with its jobs. */
	ck_assert_int_eq(shipc_job_queue_delete(h, "made"), 0);
	ck_assert_int_eq(shipc_job_get(h, "made", "BUILD-001", &j), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(shipc_job_queue_info(h, "made", &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	free(id);
	shipc_close(h);
}
END_TEST

/* ---- the worker loop ---- */

struct work_state {
	int calls;
	int stop_after;
	volatile int stop;
};

static int doubler(struct shipc *h, const struct shipc_job *job,
                   char **result, char **error, void *arg)
{
	struct work_state *ws = arg;
	(void)h;
	ws->calls++;
	if (ws->stop_after && ws->calls >= ws->stop_after)
		ws->stop = 1;
	int n = atoi(job->payload_json + strlen("{\"n\":"));
	if (n == 3) {
		*error = strdup("three is\nright \xffout");
		return SHIPC_JOB_FAILED;
	}
	if (n == 4) {
		*result = strdup("not json");
		return SHIPC_JOB_DONE;
	}
	if (asprintf(result, "{\"double\":%d}", 2 * n) < 0)
		return SHIPC_JOB_RETRY;
	return SHIPC_JOB_DONE;
}

/* Sets the flag after 1.5 s, as a signal handler would. */
static void *stop_later(void *arg)
{
	volatile int *flag = arg;
	fx_sleep_ms(1500);
	*flag = 1;
	return NULL;
}

START_TEST(worker_loop)
{
	struct shipc *h = conn();
	queue(h, "work", 0, 0);
	char *ids[6];
	for (int i = 0; i < 6; i++) {
		char p[32];
		snprintf(p, sizeof(p), "{\"n\":%d}", i);
		ids[i] = submit_id(h, "work", p, NULL, 0);
	}
	struct shipc *w = conn();
	struct work_state ws = {0};
	struct shipc_job_work_opts o = {.wait_ms = 1000, .max_jobs = 6};
	uint64_t t0 = fx_now_ms();
	ck_assert_msg(shipc_job_work(w, "work", "wk", doubler, &ws, &o) == 0,
	              "work: %s", why(w));
	ck_assert_int_eq(ws.calls, 6);
	ck_assert_uint_lt(fx_now_ms() - t0, 20000);

	struct shipc_job_counts c;
	ck_assert_int_eq(shipc_job_counts(h, "work", &c), 0);
	ck_assert_uint_eq(c.complete, 4);
	ck_assert_uint_eq(c.failed, 2);
	ck_assert_uint_eq(c.running, 0);
	ck_assert_uint_eq(c.queued, 0);
	struct shipc_job *j = get(h, "work", ids[5]);
	ck_assert_str_eq(j->result_json, "{\"double\":10}");
	ck_assert_str_eq(j->claimed_by, "wk");
	shipc_job_free(j);
	j = get(h, "work", ids[3]);
	ck_assert_str_eq(j->status, "failed");
	ck_assert_str_eq(j->error, "three is right ?out");
	ck_assert_uint_eq(j->attempts, 1); /* for good: not retried */
	shipc_job_free(j);
	j = get(h, "work", ids[4]);
	ck_assert_str_eq(j->status, "failed");
	ck_assert_ptr_nonnull(strstr(j->error, "not JSON"));
	shipc_job_free(j);

	/* *stop set by the function: returns after that job. */
	for (int i = 0; i < 3; i++)
		free(submit_id(h, "work", "{\"n\":7}", NULL, 0));
	ws = (struct work_state){.stop_after = 2};
	o = (struct shipc_job_work_opts){.wait_ms = 1000, .stop = &ws.stop};
	ck_assert_int_eq(shipc_job_work(w, "work", "wk", doubler, &ws, &o), 0);
	ck_assert_int_eq(ws.calls, 2);
	ck_assert_int_eq(shipc_job_counts(h, "work", &c), 0);
	ck_assert_uint_eq(c.queued, 1);

	/* Idle, and on a queue that does not exist yet: it waits, without
	 * spinning, until stopped. */
	ws = (struct work_state){0};
	o = (struct shipc_job_work_opts){.wait_ms = 300, .max_jobs = 1,
	                                 .stop = &ws.stop};
	t0 = fx_now_ms();
	pthread_t th;
	pthread_create(&th, NULL, stop_later, (void *)&ws.stop);
	ck_assert_int_eq(shipc_job_work(w, "notyet", "wk", doubler, &ws, &o), 0);
	pthread_join(th, NULL);
	uint64_t took = fx_now_ms() - t0;
	ck_assert_uint_ge(took, 1400);
	ck_assert_uint_lt(took, 4000);
	ck_assert_int_eq(ws.calls, 0);
	for (int i = 0; i < 6; i++)
		free(ids[i]);
	shipc_close(w);
	shipc_close(h);
}
END_TEST

/* ---- the job JSON in KV ---- */

static json_t *stored(struct shipc *h, const char *q, const char *id)
{
	char bucket[64], key[64];
	struct shipc_kv_entry *e;
	snprintf(bucket, sizeof(bucket), "JOBS_%s", q);
	snprintf(key, sizeof(key), "job.%s", id);
	ck_assert_msg(shipc_kv_get(h, bucket, key, 0, &e) == 0, "kv get %s: %s",
	              key, why(h));
	json_error_t err;
	json_t *j = json_loadb(e->value, e->len, 0, &err);
	ck_assert_msg(json_is_object(j), "%s: %s", key, err.text);
	shipc_kv_entry_free(e);
	return j;
}

static const char *jstr(json_t *j, const char *k)
{
	json_t *v = json_object_get(j, k);
	ck_assert_msg(json_is_string(v), "%s is not a string", k);
	return json_string_value(v);
}

static void jnull(json_t *j, const char *k)
{
	json_t *v = json_object_get(j, k);
	ck_assert_msg(v && json_is_null(v), "%s is not null", k);
}

static uint64_t jint(json_t *j, const char *k)
{
	json_t *v = json_object_get(j, k);
	ck_assert_msg(json_is_integer(v), "%s is not an integer", k);
	return (uint64_t)json_integer_value(v);
}

START_TEST(json_in_kv)
{
	struct shipc *h = conn();
	char *a = submit_id(h, "train", "{\"epochs\":3,\"lr\":0.5}", "dgx", 0);
	json_t *j = stored(h, "train", a);
	ck_assert_str_eq(jstr(j, "id"), a);
	json_t *want = json_loads("{\"epochs\":3,\"lr\":0.5}", 0, NULL);
	ck_assert(json_equal(json_object_get(j, "payload"), want));
	json_decref(want);
	ck_assert_str_eq(jstr(j, "status"), "queued");
	ck_assert_str_eq(jstr(j, "worker"), "dgx");
	ck_assert_str_eq(jstr(j, "queued_by"), "test_jobs");
	ck_assert_uint_gt(jint(j, "queued_at"), 1600000000000ull);
	jnull(j, "started_at");
	jnull(j, "completed_at");
	jnull(j, "result");
	jnull(j, "error");
	json_decref(j);

	struct shipc_job *c = claim(h, "train", "dgx", 0);
	ck_assert_str_eq(c->id, a);
	shipc_job_free(c);
	j = stored(h, "train", a);
	ck_assert_str_eq(jstr(j, "status"), "running");
	ck_assert_uint_gt(jint(j, "started_at"), 0);
	jnull(j, "completed_at");
	json_decref(j);
	ck_assert_int_eq(shipc_job_complete(h, "train", a,
	                                    "{\"loss\":0.25,\"ok\":[true]}", NULL),
	                 0);
	j = stored(h, "train", a);
	ck_assert_str_eq(jstr(j, "status"), "complete");
	ck_assert_uint_ge(jint(j, "completed_at"), jint(j, "started_at"));
	want = json_loads("{\"loss\":0.25,\"ok\":[true]}", 0, NULL);
	ck_assert(json_equal(json_object_get(j, "result"), want));
	json_decref(want);
	jnull(j, "error");
	json_decref(j);

	char *b = submit_id(h, "train", "\"text\"", NULL, 0);
	shipc_job_free(claim(h, "train", "any", 0));
	ck_assert_int_eq(shipc_job_fail(h, "train", b, "oom", 0, NULL), 0);
	j = stored(h, "train", b);
	ck_assert_str_eq(jstr(j, "status"), "failed");
	ck_assert_str_eq(jstr(j, "error"), "oom");
	ck_assert_str_eq(jstr(j, "worker"), "");
	ck_assert_str_eq(json_string_value(json_object_get(j, "payload")),
	                 "text");
	jnull(j, "result");
	ck_assert_uint_gt(jint(j, "completed_at"), 0);
	json_decref(j);
	free(a);
	free(b);
	shipc_close(h);
}
END_TEST

/* ---- review: lifecycle events on the EventBus ---- */

struct jev {
	pthread_mutex_t mu;
	int n;
	char type[32][32];
	char id[32][96];
	char status[32][16];
	char corr[32][96];
	char source[32][128];
	int payload_ok[32];
};

static void on_job_event(struct shipc *h, const struct shipc_event *ev,
                         int err, void *arg)
{
	struct jev *g = arg;
	(void)h;
	(void)err;
	if (!ev)
		return;
	pthread_mutex_lock(&g->mu);
	if (g->n < 32) {
		int i = g->n++;
		snprintf(g->type[i], sizeof(g->type[i]), "%s",
		         ev->event_type ? ev->event_type : "");
		snprintf(g->corr[i], sizeof(g->corr[i]), "%s",
		         ev->correlation_id ? ev->correlation_id : "");
		snprintf(g->source[i], sizeof(g->source[i]), "%s",
		         ev->source ? ev->source : "");
		json_t *j = ev->payload_json
		                    ? json_loads(ev->payload_json, 0, NULL)
		                    : NULL;
		g->payload_ok[i] = json_is_object(j);
		const char *id = json_string_value(json_object_get(j, "id"));
		const char *st = json_string_value(json_object_get(j, "status"));
		snprintf(g->id[i], sizeof(g->id[i]), "%s", id ? id : "");
		snprintf(g->status[i], sizeof(g->status[i]), "%s", st ? st : "");
		json_decref(j);
	}
	pthread_mutex_unlock(&g->mu);
}

static int jev_n(struct jev *g)
{
	pthread_mutex_lock(&g->mu);
	int n = g->n;
	pthread_mutex_unlock(&g->mu);
	return n;
}

/* Index of the event of type for job id (status as given), or -1. */
static int jev_find(struct jev *g, const char *type, const char *id,
                    const char *status)
{
	for (int i = 0; i < g->n; i++)
		if (!strcmp(g->type[i], type) && !strcmp(g->id[i], id) &&
		    !strcmp(g->status[i], status))
			return i;
	return -1;
}

START_TEST(lifecycle_events)
{
	struct shipc *h = conn(), *ev = conn();
	queue(h, "evq", 0, 50);
	struct jev g = {.mu = PTHREAD_MUTEX_INITIALIZER};
	struct shipc_event_sub s = {.pattern = "job.>", .auto_ack = 1};
	uint64_t sub = shipc_event_subscribe(ev, &s, on_job_event, &g);
	ck_assert_msg(sub > 0, "subscribe: %s", why(ev));

	/* a: queued, claimed, completed. */
	char *a = submit_id(h, "evq", "{\"a\":1}", NULL, 0);
	struct shipc_job *j = claim(h, "evq", "w", 0);
	ck_assert_str_eq(j->id, a);
	shipc_job_free(j);
	ck_assert_int_eq(shipc_job_complete(h, "evq", a, "{\"ok\":1}", NULL), 0);
	/* b: queued, claimed, failed with retry (requeued), claimed, failed. */
	char *b = submit_id(h, "evq", "{\"b\":1}", NULL, 0);
	j = claim(h, "evq", "w", 0);
	ck_assert_str_eq(j->id, b);
	shipc_job_free(j);
	ck_assert_int_eq(shipc_job_fail(h, "evq", b, "flaky", 1, NULL), 0);
	j = claim(h, "evq", "w", 3000);
	ck_assert_str_eq(j->id, b);
	shipc_job_free(j);
	ck_assert_int_eq(shipc_job_fail(h, "evq", b, "broken", 0, NULL), 0);

	uint64_t end = fx_now_ms() + 10000;
	while (jev_n(&g) < 8 && fx_now_ms() < end)
		shipc_dispatch(ev, 20);
	end = fx_now_ms() + 300; /* nothing more than these */
	while (fx_now_ms() < end)
		shipc_dispatch(ev, 20);
	pthread_mutex_lock(&g.mu);
	struct {
		const char *type, *id, *status;
	} want[] = {
		{"job.queued", a, "queued"},    {"job.claimed", a, "running"},
		{"job.completed", a, "complete"}, {"job.queued", b, "queued"},
		{"job.claimed", b, "running"},  {"job.requeued", b, "queued"},
		{"job.failed", b, "failed"},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		int k = jev_find(&g, want[i].type, want[i].id, want[i].status);
		ck_assert_msg(k >= 0, "no %s event for %s (%s); %d events",
		              want[i].type, want[i].id, want[i].status, g.n);
		ck_assert_msg(g.payload_ok[k], "%s: payload is not the job",
		              want[i].type);
		ck_assert_str_eq(g.corr[k], want[i].id);
		ck_assert_msg(!strncmp(g.source[k], "shipd/", 6), "source %s",
		              g.source[k]);
	}
	/* Two claims of b, and one of each other kind. */
	ck_assert_int_eq(g.n, 8);
	pthread_mutex_unlock(&g.mu);
	free(a);
	free(b);
	shipc_close(ev);
	shipc_close(h);
}
END_TEST

/* ---- review: a deleted queue and the requests that point at it ---- */

struct deleter {
	pthread_barrier_t *bar;
	const char *queue;
	int rc, err;
};

static void *delete_thread(void *arg)
{
	struct deleter *d = arg;
	struct shipc *h = shipc_connect(sd.sock, "deleter");
	pthread_barrier_wait(d->bar);
	d->rc = h ? shipc_job_queue_delete(h, d->queue) : -1;
	d->err = errno;
	shipc_close(h);
	return NULL;
}

/* Two deletes of one queue in flight at once: the request of a delete
 * is on none of the queue's lists, so the first delete's queue_free()
 * leaves the second pointing at a freed queue; its answer then reads
 * it and frees it again (jobs.c deleted()). */
START_TEST(queue_deleted_twice_at_once)
{
	struct shipc *h = conn();
	for (int round = 0; round < 5; round++) {
		queue(h, "twice", 0, 0);
		free(submit_id(h, "twice", "1", NULL, 0));
		pthread_barrier_t bar;
		pthread_barrier_init(&bar, NULL, 3);
		struct deleter d[2] = {{&bar, "twice", 0, 0},
		                       {&bar, "twice", 0, 0}};
		pthread_t t[2];
		for (int i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, delete_thread, &d[i]);
		pthread_barrier_wait(&bar);
		for (int i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&bar);
		for (int i = 0; i < 2; i++)
			ck_assert_msg(d[i].rc == 0 || d[i].err == ENOENT,
			              "round %d: delete %d: %s", round, i,
			              strerror(d[i].err));
		/* shipd is still there and the queue is gone. */
		struct shipc_job_queue_status st;
		ck_assert_int_eq(shipc_job_queue_info(h, "twice", &st), -1);
		ck_assert_msg(errno == ENOENT, "round %d: info: %s", round,
		              why(h));
	}
	shipc_close(h);
}
END_TEST

struct getter {
	const char *queue, *id;
	bool submit;
	volatile int stop;
	int n;
};

static void *get_loop(void *arg)
{
	struct getter *g = arg;
	struct shipc *h = shipc_connect(sd.sock, "getter");
	while (h && !g->stop) {
		struct shipc_job *j = NULL;
		if (g->submit) {
			struct shipc_job_submit s = {.payload_json = "2"};
			shipc_job_submit(h, g->queue, &s, &j);
		} else {
			shipc_job_get(h, g->queue, g->id, &j);
		}
		shipc_job_free(j);
		g->n++;
	}
	shipc_close(h);
	return NULL;
}

/* A get or a submit (or a finish, change, list) on a ready queue is on
 * none of the queue's lists either: a delete answered while one is out
 * frees the queue under it, and its next step reads x->q (ASan:
 * heap-use-after-free in edit_got, seq_got, submit_created, ...). */
START_TEST(queue_deleted_under_requests)
{
	struct shipc *h = conn();
	for (int round = 0; round < 20; round++) {
		queue(h, "busyq", 0, 0);
		char *id = submit_id(h, "busyq", "1", NULL, 0);
		enum { T = 6 };
		struct getter g[T];
		pthread_t t[T];
		for (int i = 0; i < T; i++) {
			g[i] = (struct getter){.queue = "busyq", .id = id,
			                       .submit = i % 2 == 0};
			pthread_create(&t[i], NULL, get_loop, &g[i]);
		}
		fx_sleep_ms(150);
		shipc_job_queue_delete(h, "busyq"); /* ENOENT if just made */
		fx_sleep_ms(50);
		for (int i = 0; i < T; i++) {
			g[i].stop = 1;
			pthread_join(t[i], NULL);
		}
		free(id);
		struct shipc_status st;
		ck_assert_msg(shipc_status(h, &st) == 0, "round %d: shipd: %s",
		              round, why(h));
	}
	shipc_close(h);
}
END_TEST

/* ---- review: queues only looked up fill the table for good ---- */

/* queue_get() makes a struct queue for any valid name before the
 * permission check and before anything says the queue exists, and only
 * a delete frees one: 256 gets of queues that do not exist leave shipd
 * refusing every new queue (RESOURCE_EXHAUSTED) until it restarts. */
START_TEST(lookups_do_not_use_up_queues)
{
	struct shipc *h = conn();
	for (int i = 0; i < 260; i++) {
		char q[32];
		struct shipc_job *j = NULL;
		snprintf(q, sizeof(q), "ghost%d", i);
		ck_assert_int_eq(shipc_job_get(h, q, "JOB-001", &j), -1);
		ck_assert_msg(errno == ENOENT || errno == ENOBUFS, "%s: %s", q,
		              why(h));
	}
	struct shipc_job_submit s = {.payload_json = "1"};
	struct shipc_job *j = NULL;
	ck_assert_msg(shipc_job_submit(h, "real", &s, &j) == 0,
	              "a submit to a new queue after 260 lookups of missing "
	              "ones: %s",
	              why(h));
	shipc_job_free(j);
	shipc_close(h);
}
END_TEST

/* ---- review: a waiting claim that lost a job ---- */

/* claim_next() deletes the claim's timer when it tries a job; if that
 * try is lost (another shipd won the compare-and-swap, the job changed
 * or is gone) the claim goes back to the waiters with no timer, and its
 * wait_ms never ends it. Here the lost try is made certain with a job
 * whose key is longer than the index keeps (written by another NATS
 * client): the index holds the id cut at 64, the claim reads a key
 * that does not exist. */
START_TEST(claim_wait_ends_after_a_lost_try)
{
	struct shipc *h = conn();
	queue(h, "lost", 0, 0);
	char id[80], key[96], val[256];
	memset(id, 'x', 70);
	id[70] = '\0';
	snprintf(key, sizeof(key), "job.%s", id);
	snprintf(val, sizeof(val),
	         "{\"id\":\"%s\",\"queue\":\"lost\",\"payload\":1,"
	         "\"status\":\"queued\",\"worker\":\"\",\"queued_at\":1,"
	         "\"not_before\":0,\"attempts\":0,\"max_attempts\":3,"
	         "\"priority\":0}",
	         id);
	ck_assert_msg(shipc_kv_put(h, "JOBS_lost", key, val, strlen(val), NULL) ==
	                      0,
	              "kv put: %s", why(h));
	struct shipc_job *j = NULL;
	uint64_t t0 = fx_now_ms();
	int rc = shipc_job_claim(h, "lost", "w", 1000, &j);
	int e = errno;
	uint64_t took = fx_now_ms() - t0;
	shipc_job_free(j);
	/* What the claim left behind: a real job submitted now must go to
	 * a worker that asks for it, not to the claim h gave up on (which
	 * would hold it, its lease renewed, for as long as h is open). */
	struct shipc *other = conn();
	char *real = submit_id(other, "lost", "{\"real\":1}", NULL, 0);
	j = NULL;
	int rc2 = shipc_job_claim(other, "lost", "w", 3000, &j);
	int e2 = errno;
	shipc_job_free(j);
	ck_assert_msg(rc == -1 && e == ENOENT && took < 5000,
	              "a claim waiting 1000 ms ended after %llu ms with %s; "
	              "then a fresh claim of job %s: %s",
	              (unsigned long long)took, strerror(e), real,
	              rc2 == 0 ? "ok" : strerror(e2));
	ck_assert_msg(rc2 == 0, "job %s went to an abandoned claim: %s", real,
	              strerror(e2));
	free(real);
	shipc_close(other);
	shipc_close(h);
}
END_TEST

/* ---- review: retention against a requeue ---- */

struct cycler {
	char queue[32];
	char worker[16];
	uint64_t end_ms;
	int cycles, lost, purged_failed, errors;
	char lost_id[64];
	char why[256];
};

/* Cancel and requeue one job of our own over and over. A requeue that
 * was answered leaves a queued job, which retention must never purge. */
static void *cycle_thread(void *arg)
{
	struct cycler *c = arg;
	struct shipc *h = shipc_connect(sd.sock, c->worker);
	char id[64] = "";
	while (h && fx_now_ms() < c->end_ms) {
		struct shipc_job *j = NULL;
		if (!id[0]) {
			struct shipc_job_submit s = {.payload_json = "1",
			                             .worker = c->worker};
			if (shipc_job_submit(h, c->queue, &s, &j) < 0) {
				c->errors++;
				continue;
			}
			snprintf(id, sizeof(id), "%s", j->id);
			shipc_job_free(j);
		}
		if (shipc_job_cancel(h, c->queue, id, NULL) < 0) {
			if (errno == ENOENT) {
				/* Queued since its requeue was answered: gone. */
				c->lost++;
				snprintf(c->lost_id, sizeof(c->lost_id), "%s", id);
				break;
			}
			c->errors++;
			continue;
		}
		if (shipc_job_requeue(h, c->queue, id, NULL) < 0) {
			if (errno == ENOENT)
				c->purged_failed++; /* purged while failed: fine */
			else
				c->errors++;
			id[0] = '\0';
			continue;
		}
		c->cycles++;
	}
	shipc_close(h);
	return NULL;
}

/* prune() purges by the index, with no expected revision (the PURGE is
 * no compare-and-swap), and a requeue (K_CHANGE) does not mark the job
 * busy: a requeue whose write is out when the tick prunes is answered
 * "queued", then the purge lands after it and the job is gone. */
START_TEST(retention_never_purges_a_requeued_job)
{
	struct shipc *h = conn();
	struct shipc_job_queue_config qc = {.queue = "prq", .keep_finished = 1,
	                                    .keep_finished_ms = 1};
	ck_assert_msg(shipc_job_queue_create(h, &qc, NULL) == 0, "%s", why(h));
	/* Followed from now on (retention runs where a queue is followed). */
	expect_no_claim(h, "prq", "nobody");
	enum { N = 16 };
	struct cycler c[N];
	pthread_t t[N];
	uint64_t end = fx_now_ms() + 22000; /* two or three prune rounds */
	for (int i = 0; i < N; i++) {
		c[i] = (struct cycler){.end_ms = end};
		snprintf(c[i].queue, sizeof(c[i].queue), "prq");
		snprintf(c[i].worker, sizeof(c[i].worker), "cy%d", i);
		pthread_create(&t[i], NULL, cycle_thread, &c[i]);
	}
	int lost = 0, cycles = 0, purged = 0;
	char which[64] = "";
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		lost += c[i].lost;
		cycles += c[i].cycles;
		purged += c[i].purged_failed;
		if (c[i].lost)
			snprintf(which, sizeof(which), "%s", c[i].lost_id);
	}
	fprintf(stderr, "retention vs requeue: %d cycles, %d purged while "
	                "failed, %d lost after an answered requeue\n",
	        cycles, purged, lost);
	ck_assert_msg(lost == 0,
	              "%d requeued jobs purged after the requeue was answered "
	              "(e.g. %s)",
	              lost, which);
	shipc_close(h);
}
END_TEST

/* ---- review: idempotency outlives retention ---- */

static bool job_gone(void *arg)
{
	struct shipc *h = arg;
	struct shipc_job *j = NULL;
	int rc = shipc_job_get(h, "idem-keep", "JOB-001", &j);
	shipc_job_free(j);
	return rc < 0 && errno == ENOENT;
}

/* "A submit again with it answers the same job, made once": after
 * retention purged the finished job, idem_job_got() finds no job under
 * the key's id and makes it again, so the work runs twice. */
START_TEST(idempotent_submit_not_run_again_after_retention)
{
	struct shipc *h = conn();
	struct shipc_job_queue_config qc = {.queue = "idem-keep",
	                                    .keep_finished_ms = 1};
	ck_assert_int_eq(shipc_job_queue_create(h, &qc, NULL), 0);
	struct shipc_job_submit s = {.payload_json = "{\"pay\":100}",
	                             .idempotency_key = "invoice-7"};
	struct shipc_job *j = NULL;
	ck_assert_int_eq(shipc_job_submit(h, "idem-keep", &s, &j), 0);
	ck_assert_str_eq(j->id, "JOB-001");
	shipc_job_free(j);
	j = claim(h, "idem-keep", "w", 0);
	ck_assert_int_eq(shipc_job_complete(h, "idem-keep", j->id, NULL, NULL), 0);
	shipc_job_free(j);
	ck_assert_msg(fx_wait(job_gone, h, 25000), "never purged");
	/* The client retries its submit (say its first answer was lost). */
	j = NULL;
	int rc = shipc_job_submit(h, "idem-keep", &s, &j);
	shipc_job_free(j);
	(void)rc; /* an answer or an error may both be fine; a rerun is not */
	struct shipc_job *again = NULL;
	ck_assert_msg(shipc_job_claim(h, "idem-keep", "w", 0, &again) == -1,
	              "the job of key invoice-7 runs a second time (%s)",
	              again ? again->id : "?");
	shipc_job_free(again);
	shipc_close(h);
}
END_TEST

/* ---- review: a stop gives held jobs back ---- */

/* At SIGTERM, control_shutdown_clients() runs jobs_client_gone(), whose
 * release_start() sends the release's read; blocks_finish() then runs
 * jobs_finish(), whose queue_drop_reqs() cancels that release at once.
 * Every job held through shipd is left running under a holder that no
 * longer exists, until its lease (30 s by default) runs out. */
START_TEST(stop_gives_held_jobs_back)
{
	struct shipc *a = conn();
	struct shipc_job_queue_config qc = {.queue = "stopq", .lease_ms = 30000,
	                                    .backoff_ms = 1};
	ck_assert_int_eq(shipc_job_queue_create(a, &qc, NULL), 0);
	char *id = submit_id(a, "stopq", "{}", NULL, 0);
	shipc_job_free(claim(a, "stopq", "wa", 0));
	ck_assert_int_eq(shipd_stop(&sd), 0);
	shipc_close(a);
	ck_assert_int_eq(shipd_restart(&sd, nd.url, NULL), 0);
	struct shipc *b = conn();
	struct shipc_job *j = NULL;
	uint64_t t0 = fx_now_ms();
	int rc = shipc_job_claim(b, "stopq", "wb", 8000, &j);
	ck_assert_msg(rc == 0, "the job held at the stop was not back after "
	                       "%llu ms: %s",
	              (unsigned long long)(fx_now_ms() - t0), why(b));
	ck_assert_str_eq(j->id, id);
	ck_assert_uint_eq(j->attempts, 2);
	shipc_job_free(j);
	free(id);
	shipc_close(b);
}
END_TEST

/* ---- review: a queue deleted and made again, seen by another shipd ---- */

static struct shipc *conn_at(const char *sock)
{
	struct shipc *h = shipc_connect(sock, "test_jobs_b");
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	for (int i = 0; i < 200; i++) {
		if (shipc_status(h, &st) == 0 && st.link == SHIPC_LINK_CONNECTED)
			break;
		fx_sleep_ms(25);
	}
	return h;
}

/* ---- review: a queue deleted by another shipd ---- */

/* Shipd A knows queue dq as ready (a submit went through it) but does
 * not follow it. Shipd B deletes it. queue_use() on A still takes
 * q->ready as true and goes straight to the seq read, which fails with
 * "bucket not found", every time: "the first submit makes a missing
 * queue" never happens again on A until it restarts. */
START_TEST(queue_deleted_elsewhere_is_made_again)
{
	struct shipdp sb = {0};
	ck_assert_int_eq(shipd_start(&sb, nd.url, NULL), 0);
	ck_assert(fx_wait_link(sb.sock, 10000));
	struct shipc *a = conn(), *b = conn_at(sb.sock);
	free(submit_id(a, "dq", "1", NULL, 0));
	int del = shipc_job_queue_delete(b, "dq");
	char delwhy[300];
	snprintf(delwhy, sizeof(delwhy), "%s", why(b));
	int rc = -1;
	char msg[300] = "";
	for (int i = 0; i < 3 && rc != 0; i++) { /* a retry is fine too */
		struct shipc_job_submit s = {.payload_json = "2"};
		rc = shipc_job_submit(a, "dq", &s, NULL);
		if (rc != 0)
			snprintf(msg, sizeof(msg), "%s", why(a));
	}
	shipc_close(b);
	shipc_close(a);
	int down = shipd_cleanup(&sb);
	ck_assert_msg(del == 0, "delete on B: %s", delwhy);
	ck_assert_msg(rc == 0, "3 submits on A after B deleted the queue: %s",
	              msg);
	ck_assert_int_eq(down, 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("jobs");
	TCase *tc = tcase_create("jobs");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, submit_get_list_counts);
	tcase_add_test(tc, claim_order);
	tcase_add_test(tc, claim_waits);
	tcase_add_test(tc, complete_and_fail);
	tcase_add_test(tc, retry_backoff_dead_letter);
	tcase_add_test(tc, cancel_and_requeue);
	tcase_add_test(tc, idempotency_key);
	tcase_add_test(tc, held_by_the_claimer);
	tcase_add_test(tc, finish_again_after_a_lost_answer);
	tcase_add_test(tc, close_requeues);
	tcase_add_test(tc, bad_input);
	tcase_add_test(tc, worker_loop);
	tcase_add_test(tc, json_in_kv);
	tcase_add_test(tc, lifecycle_events);
	tcase_add_test(tc, queue_deleted_twice_at_once);
	tcase_add_test(tc, queue_deleted_under_requests);
	tcase_add_test(tc, lookups_do_not_use_up_queues);
	tcase_add_test(tc, claim_wait_ends_after_a_lost_try);
	tcase_add_test(tc, retention_never_purges_a_requeued_job);
	tcase_add_test(tc, idempotent_submit_not_run_again_after_retention);
	tcase_add_test(tc, stop_gives_held_jobs_back);
	tcase_add_test(tc, queue_deleted_elsewhere_is_made_again);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
