/* SPDX-License-Identifier: MIT */
/* shipctl's EventBus and Channels commands. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "shipctl.h"

static int cmd_emit(int argc, char **argv)
{
	static const struct option opts[] = {
		{"source", required_argument, NULL, 's'},
		{"id", required_argument, NULL, 'i'},
		{"correlation", required_argument, NULL, 'C'},
		{NULL, 0, NULL, 0}};
	struct shipc_emit e = {.source = "shipctl"};
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 's':
			e.source = optarg;
			break;
		case 'i':
			e.msg_id = optarg;
			break;
		case 'C':
			e.correlation_id = optarg;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind < 1 || argc - optind > 2)
		goto usage;
	e.event_type = argv[optind];
	e.payload_json = argc - optind == 2 ? argv[optind + 1] : NULL;
	if (open_handle() < 0)
		return 1;
	struct shipc_emit_result r;
	if (shipc_emit(h, &e, &r) < 0)
		return fail("emit", errno);
	if (json) {
		/* An id may hold '"' and '\\': escaped like every string. */
		printf("{\"seq\":%" PRIu64 ",\"duplicate\":%s,\"msg_id\":",
		       r.seq, r.duplicate ? "true" : "false");
		json_str(stdout, r.msg_id, strlen(r.msg_id));
		fputs("}\n", stdout);
	} else
		printf("%" PRIu64 "%s\n", r.seq, r.duplicate ? " (duplicate)" : "");
	return 0;
usage:
	fprintf(stderr, "usage: shipctl events emit TYPE [PAYLOAD_JSON] "
	                "[--source S] [--id MSGID]\n");
	return 2;
}

struct tail {
	uint64_t sub;
	uint64_t count, max;
	bool ended;
	int err;
	bool channel;
};

/* A valid envelope as stored, on one line: shipd parsed it as JSON, where
 * a line break can only be white space between tokens. */
static void print_envelope(const struct shipc_event *ev)
{
	const char *d = ev->data;
	for (size_t i = 0; i < ev->len; i++)
		fputc(d[i] == '\n' || d[i] == '\r' ? ' ' : d[i], stdout);
	fputc('\n', stdout);
}

/* Anything else on the stream (another app's message, not JSON or not
 * an envelope) as a JSON object with the message as a string. */
static void print_raw_json(const struct shipc_event *ev)
{
	printf("{\"raw\":true,\"stream_seq\":%" PRIu64 ",\"subject\":",
	       ev->stream_seq);
	json_str(stdout, ev->subject, strlen(ev->subject));
	fputs(",\"data\":", stdout);
	json_str(stdout, ev->data, ev->len);
	fputs("}\n", stdout);
}

static void print_event(const struct shipc_event *ev, bool channel)
{
	if (json && ev->raw) {
		print_raw_json(ev);
	} else if (json) {
		print_envelope(ev);
	} else if (ev->raw) {
		fwrite(ev->data, 1, ev->len, stdout);
		fputc('\n', stdout);
	} else if (channel) {
		printf("[%" PRIu64 "] %s: %s\n", ev->stream_seq, ev->sender,
		       ev->content);
	} else {
		printf("[%" PRIu64 "] %s %s from %s: %s\n", ev->stream_seq,
		       ev->timestamp, ev->event_type, ev->source, ev->payload_json);
	}
	fflush(stdout);
}

static void on_tail(struct shipc *hh, const struct shipc_event *ev, int err,
                    void *arg)
{
	struct tail *t = arg;
	if (!ev) {
		t->ended = true;
		t->err = err;
		return;
	}
	print_event(ev, t->channel);
	if (ev->token)
		shipc_event_ack(hh, t->sub, ev->token, SHIPC_ACK, 0);
	/* Credit as we go: one more for each printed. */
	shipc_event_credit(hh, t->sub, 1);
	if (t->max && ++t->count >= t->max)
		t->ended = true;
}

static int run_tail(struct tail *t)
{
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	int rc = 0;
	while (!interrupted && !t->ended && !rc)
		if (shipc_dispatch(h, 500) < 0 && errno != EINTR)
			rc = fail("dispatch", errno);
	if (!rc) {
		shipc_flush(h, 2000); /* the last acks */
		if (t->err)
			rc = fail("subscription ended", t->err);
	}
	/* The subscription's callback runs once more as the handle closes:
	 * close it here, while t (the caller's) still exists. */
	shipc_close(h);
	h = NULL;
	return rc;
}

static int cmd_tail(int argc, char **argv)
{
	static const struct option opts[] = {
		{"durable", required_argument, NULL, 'd'},
		{"all", no_argument, NULL, 'a'},
		{"new", no_argument, NULL, 'n'},
		{"since-seq", required_argument, NULL, 'S'},
		{"count", required_argument, NULL, 'c'},
		{"stream", required_argument, NULL, 't'},
		{"prefix", required_argument, NULL, 'p'},
		{"update", no_argument, NULL, 'u'},
		{"shared", no_argument, NULL, 'H'},
		{NULL, 0, NULL, 0}};
	/* New events by default; a durable that exists resumes where it
	 * was whatever the start option says. */
	struct shipc_event_sub s = {.deliver = SHIPC_DELIVER_NEW, .credit = 64};
	struct tail t = {0};
	int ch, flags = 0;
	while ((ch = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			s.durable = optarg;
			break;
		case 'a':
			s.deliver = SHIPC_DELIVER_ALL;
			break;
		case 'n':
			s.deliver = SHIPC_DELIVER_NEW;
			break;
		case 'S':
			if (!parse_uint(optarg, &s.start_seq) || !s.start_seq)
				goto usage;
			s.deliver = SHIPC_DELIVER_BY_SEQ;
			break;
		case 'c':
			if (!parse_uint(optarg, &t.max) || !t.max)
				goto usage;
			break;
		case 't':
			s.stream = optarg;
			break;
		case 'p':
			s.prefix = optarg;
			break;
		case 'u':
			flags |= SHIPC_EVENT_UPDATE;
			break;
		case 'H':
			flags |= SHIPC_EVENT_SHARED;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind > 1 || (flags && !s.durable))
		goto usage;
	s.pattern = argc - optind == 1 ? argv[optind] : ">";
	if (t.max && t.max < s.credit)
		s.credit = (uint32_t)t.max;
	if (open_handle() < 0)
		return 1;
	t.sub = shipc_event_subscribe_flags(h, &s, flags, on_tail, &t);
	if (!t.sub)
		return fail("subscribe", errno);
	return run_tail(&t);
usage:
	fprintf(stderr, "usage: shipctl events tail [PATTERN] [--durable NAME "
	                "[--update] [--shared]] [--all|--new|--since-seq N] "
	                "[-c N]\n");
	return 2;
}

static int cmd_streams(int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "usage: shipctl events streams\n");
		return 2;
	}
	struct shipc_stream_info *list;
	size_t n;
	if (open_handle() < 0)
		return 1;
	if (shipc_streams(h, &list, &n) < 0)
		return fail("streams", errno);
	if (json)
		fputc('[', stdout);
	else
		printf("%-20s %-24s %10s %12s %10s %9s %8s\n", "STREAM", "SUBJECTS",
		       "MESSAGES", "BYTES", "LAST SEQ", "CONSUMERS", "STORAGE");
	for (size_t i = 0; i < n; i++) {
		const struct shipc_stream_info *s = &list[i];
		if (json) {
			printf("%s{\"name\":", i ? "," : "");
			json_str(stdout, s->name, strlen(s->name));
			printf(",\"subjects\":");
			json_str(stdout, s->subjects, strlen(s->subjects));
			printf(",\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64
			       ",\"first_seq\":%" PRIu64 ",\"last_seq\":%" PRIu64
			       ",\"consumers\":%u,\"max_age_ms\":%" PRIu64
			       ",\"max_msgs\":%" PRId64 ",\"storage\":",
			       s->messages, s->bytes, s->first_seq, s->last_seq,
			       s->consumers, s->max_age_ms, s->max_msgs);
			/* The server's word, whatever it is. */
			json_str(stdout, s->storage, strlen(s->storage));
			fputs(",\"problem\":", stdout);
			json_str(stdout, s->problem, strlen(s->problem));
			fputc('}', stdout);
		} else {
			printf("%-20s %-24s %10" PRIu64 " %12" PRIu64 " %10" PRIu64
			       " %9u %8s\n",
			       s->name, s->subjects, s->messages, s->bytes,
			       s->last_seq, s->consumers, s->storage);
			if (s->problem[0])
				printf("  ! %s\n", s->problem);
		}
	}
	if (json)
		fputs("]\n", stdout);
	shipc_streams_free(list);
	return 0;
}

static int cmd_chan_send(int argc, char **argv)
{
	static const struct option opts[] = {
		{"as", required_argument, NULL, 'a'},
		{"metadata", required_argument, NULL, 'm'},
		{NULL, 0, NULL, 0}};
	const char *agent = NULL, *meta = NULL;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'a')
			agent = optarg;
		else if (ch == 'm')
			meta = optarg;
		else
			goto usage;
	}
	if (argc - optind != 2 || !agent)
		goto usage;
	if (open_handle() < 0)
		return 1;
	struct shipc_emit_result r;
	if (shipc_channel_send(h, argv[optind], agent, argv[optind + 1], meta,
	                       &r) < 0)
		return fail("send", errno);
	if (json)
		printf("{\"seq\":%" PRIu64 "}\n", r.seq);
	else
		printf("%" PRIu64 "\n", r.seq);
	return 0;
usage:
	fprintf(stderr, "usage: shipctl chan send CHANNEL TEXT --as AGENT "
	                "[--metadata JSON]\n");
	return 2;
}

static int cmd_chan_history(int argc, char **argv)
{
	static const struct option opts[] = {
		{"last", required_argument, NULL, 'l'},
		{"before", required_argument, NULL, 'b'},
		{NULL, 0, NULL, 0}};
	uint64_t last = 20, before = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'l' && parse_uint(optarg, &last) && last && last <= 1000)
			continue;
		if (ch == 'b' && parse_uint(optarg, &before))
			continue;
		goto usage;
	}
	if (argc - optind != 1)
		goto usage;
	struct shipc_channel_msg *list;
	size_t n;
	uint64_t more;
	if (open_handle() < 0)
		return 1;
	if (shipc_channel_history(h, argv[optind], (uint32_t)last, before, &list,
	                          &n, &more) < 0)
		return fail("history", errno);
	for (size_t i = 0; i < n; i++) {
		const struct shipc_channel_msg *m = &list[i];
		if (json) {
			/* noesis-ship's ChannelMessage, as stored. */
			printf("{\"sender\":");
			json_str(stdout, m->sender, strlen(m->sender));
			printf(",\"content\":");
			json_str(stdout, m->content, strlen(m->content));
			printf(",\"timestamp\":%.9f,\"channel\":", m->sent_at);
			json_str(stdout, m->channel, strlen(m->channel));
			printf(",\"message_id\":");
			json_str(stdout, m->message_id, strlen(m->message_id));
			if (m->metadata_json[0])
				printf(",\"metadata\":%s", m->metadata_json);
			printf("}\n");
		} else {
			printf("[%" PRIu64 "] %s: %s\n", m->seq, m->sender, m->content);
		}
	}
	if (!json && more)
		printf("(older messages: --before %" PRIu64 ")\n", more);
	shipc_channel_history_free(list, n);
	return 0;
usage:
	fprintf(stderr, "usage: shipctl chan history CHANNEL [--last N] "
	                "[--before SEQ]\n");
	return 2;
}

static int cmd_chan_listen(int argc, char **argv)
{
	static const struct option opts[] = {
		{"as", required_argument, NULL, 'a'},
		{"replay", no_argument, NULL, 'r'},
		{"count", required_argument, NULL, 'c'},
		{NULL, 0, NULL, 0}};
	const char *agent = NULL;
	bool replay = false;
	struct tail t = {.channel = true};
	int ch;
	while ((ch = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			agent = optarg;
			break;
		case 'r':
			replay = true;
			break;
		case 'c':
			if (!parse_uint(optarg, &t.max) || !t.max)
				goto usage;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 1 || !agent)
		goto usage;
	if (open_handle() < 0)
		return 1;
	uint32_t credit = t.max && t.max < 64 ? (uint32_t)t.max : 64;
	t.sub = shipc_channel_listen(h, argv[optind], agent, replay, credit,
	                             on_tail, &t);
	if (!t.sub)
		return fail("listen", errno);
	return run_tail(&t);
usage:
	fprintf(stderr, "usage: shipctl chan listen CHANNEL --as AGENT "
	                "[--replay] [-c N]\n");
	return 2;
}

const struct cmd event_cmds[] = {
	{"events emit", cmd_emit, "TYPE [PAYLOAD_JSON] [--source S] [--id ID]",
	 "emit a durable event; prints its sequence"},
	{"events tail", cmd_tail,
	 "[PATTERN] [--durable N] [--all|--new|--since-seq N] [-c N]",
	 "print events as they come (or from the start)"},
	{"events streams", cmd_streams, "", "list JetStream streams"},
	{"chan send", cmd_chan_send, "CHANNEL TEXT --as AGENT",
	 "send a message on a channel"},
	{"chan history", cmd_chan_history, "CHANNEL [--last N] [--before SEQ]",
	 "the newest messages of a channel, oldest first"},
	{"chan listen", cmd_chan_listen, "CHANNEL --as AGENT [--replay] [-c N]",
	 "print a channel's messages, without the agent's own"},
	{NULL, NULL, NULL, NULL},
};
