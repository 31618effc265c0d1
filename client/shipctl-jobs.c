/* SPDX-License-Identifier: MIT */
/* shipctl's JobQueue commands: queues, jobs, and claims that run a
 * command while this shipctl holds the job. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shipctl.h"

#define RESULT_MAX (1u << 20) /* a command's stdout taken as its result */
#define ERROR_TAIL 2000       /* bytes of its stderr kept as the error */

static int usage_of(const char *u)
{
	fprintf(stderr, "usage: shipctl %s\n", u);
	return 2;
}

/* ---- printing ---- */

/* "2024-05-01T12:00:00.250Z", or "-" for 0. */
static void time_str(char buf[32], uint64_t ms)
{
	if (!ms) {
		snprintf(buf, 32, "-");
		return;
	}
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char s[24];
	gmtime_r(&t, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, 32, "%s.%03uZ", s, (unsigned)(ms % 1000));
}

static void field(const char *key, const char *v, bool comma)
{
	printf("%s\"%s\":", comma ? "," : "", key);
	if (v)
		json_str(stdout, v, strlen(v));
	else
		fputs("null", stdout);
}

static void field_ms(const char *key, uint64_t ms)
{
	if (ms)
		printf(",\"%s\":%" PRIu64, key, ms);
	else
		printf(",\"%s\":null", key);
}

/* A job as the JSON stored in KV names its members. */
static void job_json(const struct shipc_job *j)
{
	fputc('{', stdout);
	field("id", j->id, false);
	field("queue", j->queue, true);
	printf(",\"payload\":%s", j->payload_json);
	field("status", j->status, true);
	field("worker", j->worker, true);
	field("queued_by", j->queued_by, true);
	printf(",\"queued_at\":%" PRIu64, j->queued_at_ms);
	field_ms("started_at", j->started_at_ms);
	field_ms("completed_at", j->completed_at_ms);
	printf(",\"result\":%s", j->result_json ? j->result_json : "null");
	field("error", j->error, true);
	printf(",\"attempts\":%" PRIu32 ",\"max_attempts\":%" PRIu32
	       ",\"priority\":%" PRId32,
	       j->attempts, j->max_attempts, j->priority);
	field_ms("not_before", j->not_before_ms);
	field_ms("lease_until", j->lease_until_ms);
	field("claimed_by", j->claimed_by[0] ? j->claimed_by : NULL, true);
	field("holder", j->holder[0] ? j->holder : NULL, true);
	printf(",\"dead_letter\":%s,\"cancelled\":%s",
	       j->dead_letter ? "true" : "false",
	       j->cancelled ? "true" : "false");
	field("idempotency_key",
	      j->idempotency_key[0] ? j->idempotency_key : NULL, true);
	printf(",\"revision\":%" PRIu64 "}", j->revision);
}

/* "failed (dead letter)", "running (attempt 2 of 3)", ... */
static void state_str(char *buf, size_t n, const struct shipc_job *j)
{
	if (j->cancelled)
		snprintf(buf, n, "%s (cancelled)", j->status);
	else if (j->dead_letter)
		snprintf(buf, n, "%s (dead letter)", j->status);
	else if (!strcmp(j->status, "running") || j->attempts)
		snprintf(buf, n, "%s (attempt %" PRIu32 " of %" PRIu32 ")",
		         j->status, j->attempts, j->max_attempts);
	else
		snprintf(buf, n, "%s", j->status);
}

static void print_job(const struct shipc_job *j)
{
	if (json) {
		job_json(j);
		fputc('\n', stdout);
		return;
	}
	char st[64], q[32], s[32], c[32], nb[32], lu[32];
	state_str(st, sizeof(st), j);
	time_str(q, j->queued_at_ms);
	time_str(s, j->started_at_ms);
	time_str(c, j->completed_at_ms);
	time_str(nb, j->not_before_ms);
	time_str(lu, j->lease_until_ms);
	printf("id:          %s\nqueue:       %s\nstatus:      %s\n", j->id,
	       j->queue, st);
	printf("worker:      %s\n", j->worker[0] ? j->worker : "(any)");
	printf("priority:    %" PRId32 "\nqueued by:   %s\nqueued at:   %s\n",
	       j->priority, j->queued_by, q);
	if (j->not_before_ms > j->queued_at_ms)
		printf("not before:  %s\n", nb);
	printf("started at:  %s\ncompleted:   %s\n", s, c);
	if (j->claimed_by[0])
		printf("claimed by:  %s (%s)\n", j->claimed_by, j->holder);
	if (j->lease_until_ms)
		printf("lease until: %s\n", lu);
	if (j->idempotency_key[0])
		printf("key:         %s\n", j->idempotency_key);
	printf("payload:     %s\n", j->payload_json);
	if (j->result_json)
		printf("result:      %s\n", j->result_json);
	if (j->error)
		printf("error:       %s\n", j->error);
}

/* One line: what a change or a finish made of the job. */
static void print_outcome(const struct shipc_job *j)
{
	char st[64];
	if (json) {
		job_json(j);
		fputc('\n', stdout);
		return;
	}
	state_str(st, sizeof(st), j);
	printf("%s %s\n", j->id, st);
}

static void print_queue(const struct shipc_job_queue_status *q)
{
	if (json) {
		fputc('{', stdout);
		field("queue", q->queue, false);
		printf(",\"max_attempts\":%" PRIu32 ",\"lease_ms\":%" PRIu64
		       ",\"backoff_ms\":%" PRIu64 ",\"keep_finished\":%" PRIu64
		       ",\"keep_finished_ms\":%" PRIu64,
		       q->max_attempts, q->lease_ms, q->backoff_ms,
		       q->keep_finished, q->keep_finished_ms);
		field("prefix", q->prefix, true);
		fputs("}\n", stdout);
		return;
	}
	printf("queue:        %s\nprefix:       %s\nmax attempts: %" PRIu32
	       "\nlease:        %" PRIu64 " ms\nbackoff:      %" PRIu64
	       " ms (doubled per attempt)\nkeep:         %" PRIu64
	       " finished jobs, for at most %" PRIu64 " s\n",
	       q->queue, q->prefix, q->max_attempts, q->lease_ms, q->backoff_ms,
	       q->keep_finished, q->keep_finished_ms / 1000);
}

static bool parse_int32(const char *s, int32_t *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < INT32_MIN || v > INT32_MAX)
		return false;
	*out = (int32_t)v;
	return true;
}

/* ---- queues ---- */

static int cmd_queue_add(int argc, char **argv)
{
	static const struct option opts[] = {
		{"lease", required_argument, NULL, 'l'},
		{"max-attempts", required_argument, NULL, 'm'},
		{"backoff", required_argument, NULL, 'b'},
		{"keep", required_argument, NULL, 'k'},
		{"keep-for", required_argument, NULL, 'K'},
		{"prefix", required_argument, NULL, 'p'},
		{NULL, 0, NULL, 0}};
	const char *u = "jobs queue-add QUEUE [--lease DURATION] "
	                "[--max-attempts N] [--backoff DURATION] [--keep N] "
	                "[--keep-for DURATION] [--prefix P]";
	struct shipc_job_queue_config c = {0};
	uint64_t v;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			if (!parse_duration(optarg, &c.lease_ms))
				return usage_of(u);
			break;
		case 'm':
			if (!parse_uint(optarg, &v) || v > UINT32_MAX)
				return usage_of(u);
			c.max_attempts = (uint32_t)v;
			break;
		case 'b':
			if (!parse_duration(optarg, &c.backoff_ms))
				return usage_of(u);
			break;
		case 'k':
			if (!parse_uint(optarg, &c.keep_finished))
				return usage_of(u);
			break;
		case 'K':
			if (!parse_duration(optarg, &c.keep_finished_ms))
				return usage_of(u);
			break;
		case 'p':
			c.prefix = optarg;
			break;
		default:
			return usage_of(u);
		}
	}
	if (argc - optind != 1)
		return usage_of(u);
	c.queue = argv[optind];
	struct shipc_job_queue_status st;
	if (open_handle() < 0)
		return 1;
	if (shipc_job_queue_create(h, &c, &st) < 0)
		return fail("jobs queue-add", errno);
	print_queue(&st);
	return 0;
}

static int cmd_queue_info(int argc, char **argv)
{
	if (argc != 2)
		return usage_of("jobs queue-info QUEUE");
	struct shipc_job_queue_status st;
	if (open_handle() < 0)
		return 1;
	if (shipc_job_queue_info(h, argv[1], &st) < 0)
		return fail("jobs queue-info", errno);
	print_queue(&st);
	return 0;
}

static int cmd_queue_rm(int argc, char **argv)
{
	if (argc != 2)
		return usage_of("jobs queue-rm QUEUE");
	if (open_handle() < 0)
		return 1;
	if (shipc_job_queue_delete(h, argv[1]) < 0)
		return fail("jobs queue-rm", errno);
	return 0;
}

/* ---- jobs ---- */

/* PAYLOAD, or all of stdin for "-", NUL-terminated; free *buf after. */
static const char *payload_arg(const char *arg, char **buf)
{
	struct msg_args a = {0};
	*buf = NULL;
	if (strcmp(arg, "-"))
		return arg;
	if (read_stdin(&a) < 0 || !(*buf = malloc(a.len + 1))) {
		msg_args_finish(&a);
		return NULL;
	}
	memcpy(*buf, a.data, a.len);
	(*buf)[a.len] = '\0';
	msg_args_finish(&a);
	return *buf;
}

static int cmd_submit(int argc, char **argv)
{
	static const struct option opts[] = {
		{"worker", required_argument, NULL, 'w'},
		{"priority", required_argument, NULL, 'p'},
		{"delay", required_argument, NULL, 'd'},
		{"key", required_argument, NULL, 'k'},
		{"max-attempts", required_argument, NULL, 'm'},
		{NULL, 0, NULL, 0}};
	const char *u = "jobs submit QUEUE (PAYLOAD_JSON | -) [--worker W] "
	                "[--priority P] [--delay DURATION] "
	                "[--key IDEMPOTENCY_KEY] [--max-attempts N]";
	struct shipc_job_submit s = {0};
	uint64_t v;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'w':
			s.worker = optarg;
			break;
		case 'p':
			if (!parse_int32(optarg, &s.priority))
				return usage_of(u);
			break;
		case 'd':
			if (!parse_duration(optarg, &s.delay_ms))
				return usage_of(u);
			break;
		case 'k':
			s.idempotency_key = optarg;
			break;
		case 'm':
			if (!parse_uint(optarg, &v) || v > UINT32_MAX)
				return usage_of(u);
			s.max_attempts = (uint32_t)v;
			break;
		default:
			return usage_of(u);
		}
	}
	if (argc - optind != 2)
		return usage_of(u);
	char *buf;
	struct shipc_job *j;
	if (!(s.payload_json = payload_arg(argv[optind + 1], &buf)))
		return fail("jobs submit", errno ? errno : ENOMEM);
	int r = open_handle();
	if (r == 0 && (r = shipc_job_submit(h, argv[optind], &s, &j)) < 0)
		fail("jobs submit", errno);
	free(buf);
	if (r < 0)
		return 1;
	if (json) {
		job_json(j);
		fputc('\n', stdout);
	} else {
		printf("%s\n", j->id);
	}
	shipc_job_free(j);
	return 0;
}

static void print_row(const struct shipc_job *j)
{
	char st[64], q[32];
	state_str(st, sizeof(st), j);
	time_str(q, j->queued_at_ms);
	const char *w = j->claimed_by[0] ? j->claimed_by
	                : j->worker[0]   ? j->worker
	                                 : "-";
	printf("%-16s %-28s %-16s %4" PRId32 "  %s  %.60s\n", j->id, st, w,
	       j->priority, q, j->payload_json);
}

static int cmd_ls(int argc, char **argv)
{
	static const struct option opts[] = {
		{"status", required_argument, NULL, 's'},
		{"worker", required_argument, NULL, 'w'},
		{"dead", no_argument, NULL, 'd'},
		{"limit", required_argument, NULL, 'l'},
		{NULL, 0, NULL, 0}};
	const char *u = "jobs ls QUEUE [--status S] [--worker W] [--dead] "
	                "[--limit N]";
	struct shipc_job_filter flt = {0};
	uint64_t v;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			flt.status = optarg;
			break;
		case 'w':
			flt.worker = optarg;
			break;
		case 'd':
			flt.dead_letter = 1;
			break;
		case 'l':
			if (!parse_uint(optarg, &v) || !v || v > UINT32_MAX)
				return usage_of(u);
			flt.limit = (uint32_t)v;
			break;
		default:
			return usage_of(u);
		}
	}
	if (argc - optind != 1)
		return usage_of(u);
	struct shipc_job *list;
	size_t n;
	int truncated;
	if (open_handle() < 0)
		return 1;
	if (shipc_job_list(h, argv[optind], &flt, &list, &n, &truncated) < 0)
		return fail("jobs ls", errno);
	if (json) {
		fputs("{\"jobs\":[", stdout);
		for (size_t i = 0; i < n; i++) {
			if (i)
				fputc(',', stdout);
			job_json(&list[i]);
		}
		printf("],\"truncated\":%s}\n", truncated ? "true" : "false");
	} else {
		for (size_t i = 0; i < n; i++)
			print_row(&list[i]);
		if (truncated)
			printf("(more: raise --limit)\n");
	}
	shipc_job_list_free(list, n);
	return 0;
}

static int cmd_show(int argc, char **argv)
{
	if (argc != 3)
		return usage_of("jobs show QUEUE ID");
	struct shipc_job *j;
	if (open_handle() < 0)
		return 1;
	if (shipc_job_get(h, argv[1], argv[2], &j) < 0)
		return fail("jobs show", errno);
	print_job(j);
	shipc_job_free(j);
	return 0;
}

static int change(int argc, char **argv, bool cancel)
{
	const char *what = cancel ? "jobs cancel" : "jobs requeue";
	if (argc != 3) {
		fprintf(stderr, "usage: shipctl %s QUEUE ID\n", what);
		return 2;
	}
	struct shipc_job *j;
	if (open_handle() < 0)
		return 1;
	int r = cancel ? shipc_job_cancel(h, argv[1], argv[2], &j)
	               : shipc_job_requeue(h, argv[1], argv[2], &j);
	if (r < 0)
		return fail(what, errno);
	print_outcome(j);
	shipc_job_free(j);
	return 0;
}

static int cmd_cancel(int argc, char **argv)
{
	return change(argc, argv, true);
}

static int cmd_requeue(int argc, char **argv)
{
	return change(argc, argv, false);
}

static int cmd_counts(int argc, char **argv)
{
	if (argc != 2)
		return usage_of("jobs counts QUEUE");
	struct shipc_job_counts c;
	if (open_handle() < 0)
		return 1;
	if (shipc_job_counts(h, argv[1], &c) < 0)
		return fail("jobs counts", errno);
	if (json)
		printf("{\"queued\":%" PRIu64 ",\"running\":%" PRIu64
		       ",\"complete\":%" PRIu64 ",\"failed\":%" PRIu64
		       ",\"dead_letter\":%" PRIu64 ",\"delayed\":%" PRIu64 "}\n",
		       c.queued, c.running, c.complete, c.failed, c.dead_letter,
		       c.delayed);
	else
		printf("queued:   %" PRIu64 " (%" PRIu64 " delayed)\n"
		       "running:  %" PRIu64 "\ncomplete: %" PRIu64
		       "\nfailed:   %" PRIu64 " (%" PRIu64 " dead letters)\n",
		       c.queued, c.delayed, c.running, c.complete, c.failed,
		       c.dead_letter);
	return 0;
}

static int cmd_complete(int argc, char **argv)
{
	if (argc < 3 || argc > 4)
		return usage_of("jobs complete QUEUE ID [RESULT_JSON]");
	struct shipc_job *j;
	if (open_handle() < 0)
		return 1;
	if (shipc_job_complete(h, argv[1], argv[2], argc == 4 ? argv[3] : NULL,
	                       &j) < 0)
		return fail("jobs complete", errno);
	print_outcome(j);
	shipc_job_free(j);
	return 0;
}

static int cmd_fail(int argc, char **argv)
{
	static const struct option opts[] = {
		{"retry", no_argument, NULL, 'r'}, {NULL, 0, NULL, 0}};
	const char *u = "jobs fail QUEUE ID ERROR [--retry]";
	bool retry = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 'r')
			return usage_of(u);
		retry = true;
	}
	if (argc - optind != 3)
		return usage_of(u);
	struct shipc_job *j;
	if (open_handle() < 0)
		return 1;
	if (shipc_job_fail(h, argv[optind], argv[optind + 1], argv[optind + 2],
	                   retry, &j) < 0)
		return fail("jobs fail", errno);
	print_outcome(j);
	shipc_job_free(j);
	return 0;
}

/* ---- claim, and run a command on the job ---- */

struct outbuf {
	char *data;
	size_t len, cap, max;
	bool tail;      /* keep the last max bytes, not the first */
	bool overflow;  /* bytes were dropped */
};

static void out_add(struct outbuf *o, const char *p, size_t n)
{
	if (o->tail && n >= o->max) {
		p += n - o->max;
		n = o->max;
		o->len = 0;
		o->overflow = true;
	}
	if (o->len + n > o->max) {
		o->overflow = true;
		if (!o->tail) {
			n = o->max - o->len;
		} else {
			size_t drop = o->len + n - o->max;
			memmove(o->data, o->data + drop, o->len - drop);
			o->len -= drop;
		}
	}
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		while (cap < o->len + n + 1)
			cap *= 2;
		char *d = realloc(o->data, cap);
		if (!d) {
			o->overflow = true;
			return;
		}
		o->data = d;
		o->cap = cap;
	}
	memcpy(o->data + o->len, p, n);
	o->len += n;
	o->data[o->len] = '\0';
}

/* Run argv with the payload on its stdin until it exits; its stdout and
 * the tail of its stderr are kept. Returns its wait status, or -1. */
static int run(char **argv, const char *payload, struct outbuf *out,
               struct outbuf *err)
{
	FILE *in = tmpfile();
	int po[2] = {-1, -1}, pe[2] = {-1, -1}, status = -1;
	if (!in || fputs(payload, in) == EOF || fflush(in) == EOF ||
	    fseek(in, 0, SEEK_SET) < 0 || pipe(po) < 0 || pipe(pe) < 0) {
		perror("shipctl: jobs claim");
		goto out;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		perror("shipctl: jobs claim: fork");
		goto out;
	}
	if (pid == 0) {
		dup2(fileno(in), STDIN_FILENO);
		dup2(po[1], STDOUT_FILENO);
		dup2(pe[1], STDERR_FILENO);
		close(po[0]);
		close(po[1]);
		close(pe[0]);
		close(pe[1]);
		execvp(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	po[1] = pe[1] = -1;
	struct pollfd pf[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
	struct outbuf *bufs[2] = {out, err};
	int open_fds = 2;
	bool passed_on = false;
	while (open_fds > 0) {
		if (interrupted && !passed_on) {
			kill(pid, SIGTERM); /* shipctl is stopped: so is it */
			passed_on = true;
		}
		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			char chunk[8192];
			if (pf[i].fd < 0 || !pf[i].revents)
				continue;
			ssize_t n = read(pf[i].fd, chunk, sizeof(chunk));
			if (n > 0) {
				out_add(bufs[i], chunk, (size_t)n);
			} else if (n == 0 || errno != EINTR) {
				close(pf[i].fd);
				pf[i].fd = -1;
				open_fds--;
			}
		}
	}
	po[0] = pe[0] = -1;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
out:
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	if (in)
		fclose(in);
	return status;
}

/* Complete with the command's stdout: JSON as it is, else as a JSON
 * string (trailing newlines cut); nothing: null. */
static int complete_with(const struct shipc_job *j, struct outbuf *out,
                         struct shipc_job **done)
{
	if (!out->len)
		return shipc_job_complete(h, j->queue, j->id, NULL, done);
	if (shipc_job_complete(h, j->queue, j->id, out->data, done) == 0)
		return 0;
	if (errno != EINVAL) /* shipd took it for JSON, or other trouble */
		return -1;
	size_t n = out->len;
	while (n && out->data[n - 1] == '\n')
		n--;
	char *s = NULL;
	size_t len;
	FILE *f = open_memstream(&s, &len);
	if (!f)
		return -1;
	json_str(f, out->data, n);
	if (fclose(f) != 0) {
		free(s);
		return -1;
	}
	int r = shipc_job_complete(h, j->queue, j->id, s, done);
	free(s);
	return r;
}

/* Length of the well-formed UTF-8 sequence at p (n bytes) that is not
 * ASCII, or 0 (RFC 3629). */
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
 * spaces, bytes that are not UTF-8 (a tail cut mid-character, binary
 * output) question marks. */
static void one_line(char *e)
{
	unsigned char *s = (unsigned char *)e;
	size_t n = strlen(e);
	for (size_t i = 0; i < n; i++) {
		size_t len = s[i] >= 0x80 ? utf8_len(s + i, n - i) : 1;
		if (len > 1)
			i += len - 1;
		else if (s[i] >= 0x80)
			s[i] = '?';
		else if (s[i] < 0x20 || s[i] == 0x7f)
			s[i] = ' ';
	}
}

/* Fail with why it failed and the tail of its stderr, in one line. */
static int fail_with(const struct shipc_job *j, int status,
                     struct outbuf *err, bool retry, struct shipc_job **done)
{
	char head[64], *e;
	if (status == -2)
		snprintf(head, sizeof(head), "its output is over %u bytes",
		         RESULT_MAX);
	else if (status < 0)
		snprintf(head, sizeof(head), "could not be run");
	else if (WIFSIGNALED(status))
		snprintf(head, sizeof(head), "killed by signal %d",
		         WTERMSIG(status));
	else
		snprintf(head, sizeof(head), "exit status %d",
		         WEXITSTATUS(status));
	size_t n = err->len;
	while (n && (err->data[n - 1] == '\n' || err->data[n - 1] == ' '))
		n--;
	if (asprintf(&e, "%s%s%s%.*s", head, n ? ": " : "",
	             err->overflow && n ? "..." : "", (int)n,
	             n ? err->data : "") < 0)
		return -1;
	one_line(e);
	int r = shipc_job_fail(h, j->queue, j->id, e, retry, done);
	free(e);
	return r;
}

static int claim_run(const struct shipc_job *j, char **cmd, bool retry)
{
	struct outbuf out = {.max = RESULT_MAX}, err = {.max = ERROR_TAIL,
	                                                 .tail = true};
	struct shipc_job *done = NULL;
	int status = run(cmd, j->payload_json, &out, &err), r, rc = 1;
	if (interrupted) {
		fprintf(stderr, "shipctl: jobs claim: interrupted: %s goes back "
		                "to the queue\n", j->id);
		goto out;
	}
	bool ok = status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (ok && out.overflow) {
		ok = false;
		status = -2;
	}
	r = ok ? complete_with(j, &out, &done)
	       : fail_with(j, status, &err, retry, &done);
	if (r < 0) {
		fail(ok ? "jobs claim: complete" : "jobs claim: fail", errno);
		goto out;
	}
	print_outcome(done);
	if (!ok)
		fprintf(stderr, "shipctl: jobs claim: %s: %s\n", j->id,
		        done->error ? done->error : "failed");
	rc = ok ? 0 : 1;
out:
	shipc_job_free(done);
	free(out.data);
	free(err.data);
	return rc;
}

static int cmd_claim(int argc, char **argv)
{
	static const struct option opts[] = {
		{"as", required_argument, NULL, 'a'},
		{"wait", required_argument, NULL, 'w'},
		{"retry", no_argument, NULL, 'r'},
		{NULL, 0, NULL, 0}};
	const char *u = "jobs claim QUEUE --as WORKER [--wait DURATION] "
	                "[--retry] [-- COMMAND [ARG]...]";
	const char *worker = NULL;
	uint64_t wait = 0;
	bool retry = false;
	char **cmd = NULL;
	int ch;
	/* What follows "--" is the command, not ours to parse. */
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--")) {
			cmd = argv + i + 1;
			argc = i;
			break;
		}
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			worker = optarg;
			break;
		case 'w':
			if (!parse_duration(optarg, &wait))
				return usage_of(u);
			break;
		case 'r':
			retry = true;
			break;
		default:
			return usage_of(u);
		}
	}
	if (argc - optind != 1 || !worker || (cmd && !cmd[0]))
		return usage_of(u);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct shipc_job *j;
	if (open_handle() < 0)
		return 1;
	if (shipc_job_claim(h, argv[optind], worker,
	                    wait > UINT32_MAX ? UINT32_MAX : (uint32_t)wait,
	                    &j) < 0)
		return fail("jobs claim", errno);
	int rc = 0;
	if (cmd) {
		rc = claim_run(j, cmd, retry);
	} else {
		print_job(j);
		fprintf(stderr, "shipctl: %s is held until shipctl exits, then "
		                "queued again: give a command to run on it\n",
		        j->id);
	}
	shipc_job_free(j);
	return rc;
}

const struct cmd jobs_cmds[] = {
	{"jobs submit", cmd_submit, "QUEUE (JSON | -) [--worker W] ...",
	 "submit a job (--priority, --delay, --key, --max-attempts)"},
	{"jobs ls", cmd_ls, "QUEUE [--status S] [--worker W] [--dead]",
	 "list a queue's jobs, oldest first (--limit N)"},
	{"jobs show", cmd_show, "QUEUE ID", "show a job"},
	{"jobs cancel", cmd_cancel, "QUEUE ID", "cancel a queued or running job"},
	{"jobs requeue", cmd_requeue, "QUEUE ID",
	 "queue a failed (or dead) job again"},
	{"jobs counts", cmd_counts, "QUEUE", "count a queue's jobs by state"},
	{"jobs claim", cmd_claim, "QUEUE --as W [--wait D] [-- CMD...]",
	 "claim a job and run CMD on it (payload on stdin)"},
	{"jobs complete", cmd_complete, "QUEUE ID [RESULT_JSON]",
	 "complete a job this shipctl holds (see jobs claim)"},
	{"jobs fail", cmd_fail, "QUEUE ID ERROR [--retry]",
	 "fail a job this shipctl holds (see jobs claim)"},
	{"jobs queue-add", cmd_queue_add, "QUEUE [--lease D] [--max-attempts N]",
	 "create a queue (--backoff, --keep, --keep-for, --prefix)"},
	{"jobs queue-info", cmd_queue_info, "QUEUE", "show a queue's settings"},
	{"jobs queue-rm", cmd_queue_rm, "QUEUE",
	 "delete a queue and all of its jobs"},
	{NULL, NULL, NULL, NULL},
};
