/* SPDX-License-Identifier: MIT */
/* The JobQueue across a fleet: two shipds (two hosts on one machine) on
 * one nats-server. Eight workers drain 1,000 jobs, each completed once and
 * never run twice at a time; a worker killed mid-job and a shipd killed
 * mid-job lose nothing; claims racing for one job have one winner; NATS
 * restarted under the workers loses no job and completes none twice. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "shipc.h"

#define JOBS_N 1000
#define WORKERS 8

static struct natsd nd;
static struct shipdp sa, sb;

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(fx_up(&nd, &sa, NULL), 0);
	ck_assert_int_eq(shipd_start(&sb, nd.url, NULL), 0);
	ck_assert(fx_wait_link(sb.sock, 10000));
}

static void teardown(void)
{
	int rb = shipd_cleanup(&sb);
	int ra = fx_down(&nd, &sa);
	ck_assert_msg(ra == 0 && rb == 0, "shipd exited with %d / %d", ra, rb);
}

static struct shipc *conn(const char *sock, const char *name)
{
	struct shipc *h = shipc_connect(sock, name);
	ck_assert_ptr_nonnull(h);
	struct shipc_status st;
	for (int i = 0; i < 400; i++) {
		if (shipc_status(h, &st) == 0 && st.link == SHIPC_LINK_CONNECTED)
			break;
		fx_sleep_ms(25);
	}
	return h;
}

static const char *why(struct shipc *h)
{
	static __thread char buf[256];
	return shipc_last_error(h, buf, sizeof(buf));
}

static void make_queue(struct shipc *h, const char *q, uint64_t lease_ms)
{
	struct shipc_job_queue_config c = {
		.queue = q, .lease_ms = lease_ms, .backoff_ms = 100,
		.max_attempts = 5};
	ck_assert_msg(shipc_job_queue_create(h, &c, NULL) == 0, "%s", why(h));
}

static void submit_n(struct shipc *h, const char *q, int n)
{
	for (int i = 0; i < n; i++) {
		char p[32];
		snprintf(p, sizeof(p), "{\"n\":%d}", i);
		struct shipc_job_submit s = {.payload_json = p};
		ck_assert_msg(shipc_job_submit(h, q, &s, NULL) == 0,
		              "submit %d: %s", i, why(h));
	}
}

/* ---- workers ---- */

struct board {
	const char *queue;
	int n;
	atomic_int running[JOBS_N];
	atomic_int completed[JOBS_N];
	atomic_int done;      /* jobs known complete */
	atomic_int violations; /* a job claimed while it ran elsewhere */
	atomic_int errors;
	atomic_bool stop;
	uint64_t deadline;
};

struct worker {
	pthread_t t;
	struct board *b;
	const char *sock;
	char name[32];
	int finished;
};

static int job_n(const struct shipc_job *j)
{
	int n = -1;
	if (sscanf(j->payload_json, "{\"n\":%d}", &n) != 1)
		return -1;
	return n;
}

/* Whether job j is complete by me, from my claim (its attempt). */
static bool completed_by(struct shipc *h, struct board *b,
                         const struct shipc_job *j, const char *me)
{
	struct shipc_job *after = NULL;
	if (shipc_job_get(h, b->queue, j->id, &after) < 0)
		return false;
	bool ok = !strcmp(after->status, "complete") &&
	          !strcmp(after->claimed_by, me) &&
	          after->attempts == j->attempts;
	shipc_job_free(after);
	return ok;
}

/* Complete, trying again while the answer says nothing; true if this
 * worker's complete is the one that counts (its claim's, by attempt). */
static bool complete(struct shipc *h, struct board *b,
                     const struct shipc_job *j, const char *me)
{
	const char *id = j->id;
	bool ambiguous = false;
	/* Up to 30 s: NATS restarting on a loaded machine can leave the
	 * outcome unknown for several seconds, and a complete that was
	 * applied must still be counted. */
	for (int i = 0; i < 300; i++) {
		if (shipc_job_complete(h, b->queue, id, "{\"ok\":true}", NULL) == 0)
			return true;
		int e = errno;
		bool unknown = shipc_outcome_unknown(h);
		if (e == EAGAIN || e == ETIMEDOUT || unknown) {
			/* It may have been applied: look. */
			ambiguous = true;
			if (completed_by(h, b, j, me))
				return true;
			fx_sleep_ms(100);
			continue;
		}
		/* After an answer that said nothing, a refusal may be the
		 * earlier try's work (the job is complete, no longer held):
		 * look once more. */
		for (int k = 0; ambiguous && k < 50; k++) {
			if (completed_by(h, b, j, me))
				return true;
			if (errno != EAGAIN && errno != ETIMEDOUT)
				break;
			fx_sleep_ms(100);
		}
		fprintf(stderr, "complete of %s by %s refused: %s (%s)\n", id, me,
		        strerror(e), why(h));
		return false; /* not ours any more (its lease ran out) */
	}
	return false;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct board *b = w->b;
	struct shipc *h = conn(w->sock, w->name);
	while (!atomic_load(&b->stop) && atomic_load(&b->done) < b->n &&
	       fx_now_ms() < b->deadline) {
		struct shipc_job *j = NULL;
		if (shipc_job_claim(h, b->queue, w->name, 300, &j) < 0) {
			if (errno != ENOENT) {
				atomic_fetch_add(&b->errors, 1);
				fx_sleep_ms(50);
			}
			continue;
		}
		int n = job_n(j);
		if (n < 0 || n >= b->n) {
			atomic_fetch_add(&b->violations, 1);
			shipc_job_free(j);
			continue;
		}
		if (atomic_fetch_add(&b->running[n], 1) != 0)
			atomic_fetch_add(&b->violations, 1);
		if (n % 7 == 0)
			fx_sleep_ms(1);
		atomic_fetch_sub(&b->running[n], 1);
		if (complete(h, b, j, w->name)) {
			atomic_fetch_add(&b->completed[n], 1);
			atomic_fetch_add(&b->done, 1);
			w->finished++;
		}
		shipc_job_free(j);
	}
	shipc_close(h);
	return NULL;
}

static void start_workers(struct worker *ws, int n, struct board *b)
{
	for (int i = 0; i < n; i++) {
		ws[i].b = b;
		ws[i].sock = i % 2 ? sb.sock : sa.sock;
		snprintf(ws[i].name, sizeof(ws[i].name), "w%d%s", i,
		         i % 2 ? "b" : "a");
		ck_assert_int_eq(pthread_create(&ws[i].t, NULL, work, &ws[i]), 0);
	}
}

static void join_workers(struct worker *ws, int n)
{
	for (int i = 0; i < n; i++)
		pthread_join(ws[i].t, NULL);
}

/* The jobs not counted as done, as the queue has them (for a failure's
 * log). */
static void show_missing(struct shipc *h, struct board *b)
{
	struct shipc_job *list = NULL;
	size_t n = 0;
	if (shipc_job_list(h, b->queue, NULL, &list, &n, NULL) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		int k = job_n(&list[i]);
		if (k >= 0 && k < b->n && atomic_load(&b->completed[k]) == 1)
			continue;
		fprintf(stderr,
		        "job %s (n %d): %s attempts %u claimed_by '%s' holder "
		        "'%s' lease_until %llu (now %llu) not_before %llu "
		        "rev %llu\n",
		        list[i].id, k, list[i].status, list[i].attempts,
		        list[i].claimed_by, list[i].holder,
		        (unsigned long long)list[i].lease_until_ms,
		        (unsigned long long)time(NULL) * 1000,
		        (unsigned long long)list[i].not_before_ms,
		        (unsigned long long)list[i].revision);
	}
	shipc_job_list_free(list, n);
}

static void check_board(struct shipc *h, struct board *b)
{
	if (atomic_load(&b->done) != b->n)
		show_missing(h, b);
	ck_assert_int_eq(atomic_load(&b->violations), 0);
	ck_assert_int_eq(atomic_load(&b->done), b->n);
	for (int i = 0; i < b->n; i++)
		ck_assert_msg(atomic_load(&b->completed[i]) == 1,
		              "job %d completed %d times", i,
		              atomic_load(&b->completed[i]));
	struct shipc_job_counts c;
	ck_assert_msg(shipc_job_counts(h, b->queue, &c) == 0, "%s", why(h));
	ck_assert_uint_eq(c.complete, (uint64_t)b->n);
	ck_assert_uint_eq(c.queued + c.running + c.failed, 0);
}

START_TEST(two_shipds_drain_1000)
{
	struct shipc *h = conn(sa.sock, "submitter");
	make_queue(h, "fleet", 10000);
	submit_n(h, "fleet", JOBS_N);
	static struct board b;
	memset(&b, 0, sizeof(b));
	b.queue = "fleet";
	b.n = JOBS_N;
	b.deadline = fx_now_ms() + 150000;
	struct worker ws[WORKERS] = {0};
	start_workers(ws, WORKERS, &b);
	join_workers(ws, WORKERS);
	int on_a = 0, on_b = 0;
	for (int i = 0; i < WORKERS; i++)
		*(i % 2 ? &on_b : &on_a) += ws[i].finished;
	fprintf(stderr, "drain: %d jobs by shipd A's workers, %d by B's, %d "
	                "claim errors\n",
	        on_a, on_b, atomic_load(&b.errors));
	check_board(h, &b);
	ck_assert_int_gt(on_a, 0);
	ck_assert_int_gt(on_b, 0);
	shipc_close(h);
}
END_TEST

/* ---- one job, many claims ---- */

struct racer {
	pthread_t t;
	struct shipc *h;
	pthread_barrier_t *bar;
	char name[16];
	int got;
	int err;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	struct shipc_job *j = NULL;
	pthread_barrier_wait(r->bar);
	if (shipc_job_claim(r->h, "race", r->name, 0, &j) == 0) {
		r->got = 1;
		shipc_job_free(j);
	} else {
		r->err = errno;
	}
	return NULL;
}

START_TEST(claims_race_one_winner)
{
	struct shipc *h = conn(sa.sock, "submitter");
	make_queue(h, "race", 30000);
	struct racer rs[WORKERS];
	pthread_barrier_t bar;
	for (int i = 0; i < WORKERS; i++) {
		memset(&rs[i], 0, sizeof(rs[i]));
		snprintf(rs[i].name, sizeof(rs[i].name), "r%d", i);
		rs[i].h = conn(i % 2 ? sb.sock : sa.sock, rs[i].name);
		/* Each follows the queue before the race. */
		struct shipc_job *j = NULL;
		ck_assert_int_eq(shipc_job_claim(rs[i].h, "race", rs[i].name, 0,
		                                 &j),
		                 -1);
		ck_assert_int_eq(errno, ENOENT);
	}
	for (int round = 0; round < 5; round++) {
		submit_n(h, "race", 1);
		fx_sleep_ms(200); /* both shipds see it */
		pthread_barrier_init(&bar, NULL, WORKERS);
		for (int i = 0; i < WORKERS; i++) {
			rs[i].bar = &bar;
			rs[i].got = rs[i].err = 0;
			ck_assert_int_eq(
			        pthread_create(&rs[i].t, NULL, race, &rs[i]), 0);
		}
		int winners = 0;
		for (int i = 0; i < WORKERS; i++) {
			pthread_join(rs[i].t, NULL);
			winners += rs[i].got;
			if (!rs[i].got)
				ck_assert_msg(rs[i].err == ENOENT, "claim: %s",
				              strerror(rs[i].err));
		}
		pthread_barrier_destroy(&bar);
		ck_assert_int_eq(winners, 1);
	}
	struct shipc_job_counts c;
	ck_assert_int_eq(shipc_job_counts(h, "race", &c), 0);
	ck_assert_uint_eq(c.running, 5);
	for (int i = 0; i < WORKERS; i++)
		shipc_close(rs[i].h);
	shipc_close(h);
}
END_TEST

/* ---- faults ---- */

/* A worker process killed while it holds a job: its shipd sees it go and
 * puts the job back at once; another worker finishes it. */
START_TEST(worker_killed_mid_job)
{
	int p[2], go[2];
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(pipe(go), 0);
	pid_t pid = fork(); /* before this process has a libshipc handle */
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char g;
		close(p[0]);
		close(go[1]);
		if (read(go[0], &g, 1) != 1) /* the queue is made */
			_exit(1);
		struct shipc *h = shipc_connect(sa.sock, "doomed");
		struct shipc_job *j = NULL;
		if (!h || shipc_job_claim(h, "wk", "doomed", 20000, &j) < 0)
			_exit(1);
		if (write(p[1], "c", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	close(go[0]);
	struct shipc *h = conn(sa.sock, "submitter");
	make_queue(h, "wk", 30000); /* a lease far longer than the test */
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	close(go[1]);
	submit_n(h, "wk", 1);
	char c;
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	close(p[0]);
	kill(pid, SIGKILL);
	ck_assert_int_eq(fx_wait_exit(pid, 5000), 128 + SIGKILL);

	struct shipc *w = conn(sb.sock, "heir");
	struct shipc_job *j = NULL;
	uint64_t t0 = fx_now_ms();
	ck_assert_msg(shipc_job_claim(w, "wk", "heir", 15000, &j) == 0,
	              "the job did not come back: %s", why(w));
	fprintf(stderr, "worker killed: job back in %llu ms\n",
	        (unsigned long long)(fx_now_ms() - t0));
	ck_assert_uint_eq(j->attempts, 2);
	ck_assert_uint_lt(fx_now_ms() - t0, 15000);
	ck_assert_int_eq(shipc_job_complete(w, "wk", j->id, NULL, NULL), 0);
	shipc_job_free(j);
	shipc_close(w);
	shipc_close(h);
}
END_TEST

/* shipd B killed while its worker holds a job: nobody renews the lease;
 * shipd A's worker takes the job once it ran out. */
START_TEST(shipd_killed_mid_job)
{
	struct shipc *h = conn(sa.sock, "submitter");
	make_queue(h, "sk", 2000);
	submit_n(h, "sk", 1);
	struct shipc *wb = conn(sb.sock, "on-b");
	struct shipc_job *j = NULL;
	ck_assert_msg(shipc_job_claim(wb, "sk", "on-b", 5000, &j) == 0, "%s",
	              why(wb));
	ck_assert_uint_eq(j->attempts, 1);
	shipc_job_free(j);
	shipd_kill(&sb);
	shipc_close(wb);

	struct shipc *wa = conn(sa.sock, "on-a");
	uint64_t t0 = fx_now_ms();
	ck_assert_msg(shipc_job_claim(wa, "sk", "on-a", 20000, &j) == 0,
	              "the job did not come back: %s", why(wa));
	fprintf(stderr, "shipd killed: job back in %llu ms\n",
	        (unsigned long long)(fx_now_ms() - t0));
	ck_assert_uint_eq(j->attempts, 2);
	ck_assert_int_eq(shipc_job_complete(wa, "sk", j->id, "1", NULL), 0);
	shipc_job_free(j);
	struct shipc_job_counts c;
	ck_assert_int_eq(shipc_job_counts(h, "sk", &c), 0);
	ck_assert_uint_eq(c.complete, 1);
	shipc_close(wa);
	shipc_close(h);
}
END_TEST

/* NATS restarted while workers on both shipds claim and complete. */
START_TEST(nats_restarted_under_workers)
{
	struct shipc *h = conn(sa.sock, "submitter");
	make_queue(h, "nr", 5000);
	int n = 300;
	submit_n(h, "nr", n);
	static struct board b;
	memset(&b, 0, sizeof(b));
	b.queue = "nr";
	b.n = n;
	b.deadline = fx_now_ms() + 150000;
	struct worker ws[4] = {0};
	start_workers(ws, 4, &b);
	uint64_t t0 = fx_now_ms();
	while (atomic_load(&b.done) < n / 3 && fx_now_ms() - t0 < 60000)
		fx_sleep_ms(10);
	natsd_stop(&nd);
	fx_sleep_ms(1000);
	ck_assert_int_eq(natsd_restart(&nd), 0);
	join_workers(ws, 4);
	fprintf(stderr, "nats restarted: %d done, %d errors on the way\n",
	        atomic_load(&b.done), atomic_load(&b.errors));
	ck_assert(fx_wait_link(sa.sock, 20000));
	check_board(h, &b);
	shipc_close(h);
}
END_TEST

/* ---- retention ---- */

struct kept {
	struct shipc *h;
	const char *queue;
	uint64_t complete, failed;
};

static bool counts_are(void *arg)
{
	struct kept *k = arg;
	struct shipc_job_counts c;
	return shipc_job_counts(k->h, k->queue, &c) == 0 &&
	       c.complete == k->complete && c.failed == k->failed;
}

static void run_all(struct shipc *h, const char *q, int n, bool fail_last)
{
	for (int i = 0; i < n; i++) {
		struct shipc_job *j = NULL;
		ck_assert_msg(shipc_job_claim(h, q, "keeper", 5000, &j) == 0,
		              "%s", why(h));
		if (fail_last && i == n - 1)
			ck_assert_int_eq(shipc_job_fail(h, q, j->id, "no", 1, NULL),
			                 0);
		else
			ck_assert_int_eq(shipc_job_complete(h, q, j->id, NULL, NULL),
			                 0);
		shipc_job_free(j);
	}
}

/* Finished jobs past the newest keep_finished, or older than
 * keep_finished_ms, are purged by a shipd that follows the queue; a dead
 * letter stays for an operator. */
START_TEST(retention)
{
	struct shipc *h = conn(sa.sock, "keeper");
	struct shipc_job_queue_config by_count = {
		.queue = "keep2", .keep_finished = 2, .max_attempts = 1};
	ck_assert_msg(shipc_job_queue_create(h, &by_count, NULL) == 0, "%s",
	              why(h));
	submit_n(h, "keep2", 6);
	run_all(h, "keep2", 6, true); /* 5 complete, 1 dead letter */
	struct kept k = {h, "keep2", 2, 1};
	ck_assert_msg(fx_wait(counts_are, &k, 25000),
	              "not kept to the newest 2 and the dead letter");
	struct shipc_job *list = NULL;
	size_t n = 0;
	struct shipc_job_filter f = {.status = "complete"};
	ck_assert_int_eq(shipc_job_list(h, "keep2", &f, &list, &n, NULL), 0);
	ck_assert_uint_eq(n, 2);
	/* The newest two: the 4th and 5th of six. */
	ck_assert(strstr(list[0].payload_json, "\"n\":3") ||
	          strstr(list[0].payload_json, "\"n\":4"));
	ck_assert(strstr(list[1].payload_json, "\"n\":3") ||
	          strstr(list[1].payload_json, "\"n\":4"));
	shipc_job_list_free(list, n);

	struct shipc_job_queue_config by_age = {.queue = "keep-age",
	                                        .keep_finished_ms = 500};
	ck_assert_int_eq(shipc_job_queue_create(h, &by_age, NULL), 0);
	submit_n(h, "keep-age", 3);
	run_all(h, "keep-age", 3, false);
	struct kept gone = {h, "keep-age", 0, 0};
	ck_assert_msg(fx_wait(counts_are, &gone, 25000),
	              "finished jobs older than 500 ms kept");
	shipc_close(h);
}
END_TEST

/* ---- waiting claims that lose a race ---- */

struct waiter {
	pthread_t t;
	struct shipc *h;
	const char *name;
	int got, err;
	uint64_t took_ms;
};

static void *wait_claim(void *arg)
{
	struct waiter *w = arg;
	struct shipc_job *j = NULL;
	uint64_t t0 = fx_now_ms();
	w->got = shipc_job_claim(w->h, "wr", w->name, 1500, &j) == 0;
	w->err = w->got ? 0 : errno;
	w->took_ms = fx_now_ms() - t0;
	shipc_job_free(j);
	return NULL;
}

/* Two shipds' workers wait for one job: the one whose claim loses the
 * compare-and-swap goes on waiting for the rest of its time and is told
 * ENOENT then, and takes no later job for a caller that left. */
START_TEST(waiting_claims_lose_a_race)
{
	struct shipc *h = conn(sa.sock, "submitter");
	make_queue(h, "wr", 30000);
	struct waiter w[2] = {{.name = "wa"}, {.name = "wb"}};
	w[0].h = conn(sa.sock, "wa");
	w[1].h = conn(sb.sock, "wb");
	for (int i = 0; i < 2; i++) { /* both shipds follow the queue */
		struct shipc_job *j = NULL;
		ck_assert_int_eq(shipc_job_claim(w[i].h, "wr", w[i].name, 0, &j),
		                 -1);
	}
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 2; i++)
			ck_assert_int_eq(pthread_create(&w[i].t, NULL, wait_claim,
			                                &w[i]),
			                 0);
		fx_sleep_ms(200);
		submit_n(h, "wr", 1);
		for (int i = 0; i < 2; i++)
			pthread_join(w[i].t, NULL);
		ck_assert_int_eq(w[0].got + w[1].got, 1);
		for (int i = 0; i < 2; i++)
			if (!w[i].got) {
				ck_assert_msg(w[i].err == ENOENT, "round %d: %s",
				              round, strerror(w[i].err));
				ck_assert_uint_lt(w[i].took_ms, 5000);
			}
	}
	fx_sleep_ms(500);
	struct shipc_job_counts c;
	ck_assert_int_eq(shipc_job_counts(h, "wr", &c), 0);
	ck_assert_uint_eq(c.running, 5); /* each held by its round's winner */
	ck_assert_uint_eq(c.queued, 0);
	/* A job now goes to a claim made now, not to one that gave up. */
	submit_n(h, "wr", 1);
	struct shipc_job *j = NULL;
	ck_assert_msg(shipc_job_claim(w[0].h, "wr", "wa", 3000, &j) == 0,
	              "a claim that gave up took the job: %s", why(w[0].h));
	shipc_job_free(j);
	for (int i = 0; i < 2; i++)
		shipc_close(w[i].h);
	shipc_close(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("jobs-fleet");
	TCase *tc = tcase_create("fleet");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, two_shipds_drain_1000);
	tcase_add_test(tc, claims_race_one_winner);
	tcase_add_test(tc, worker_killed_mid_job);
	tcase_add_test(tc, shipd_killed_mid_job);
	tcase_add_test(tc, nats_restarted_under_workers);
	tcase_add_test(tc, retention);
	tcase_add_test(tc, waiting_claims_lose_a_race);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
