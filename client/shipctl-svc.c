/* SPDX-License-Identifier: MIT */
/* shipctl's Services commands: discovery (the NATS micro protocol's PING,
 * INFO and STATS), calling an endpoint, and hosting a trivial service. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "jscan.h"
#include "shipctl.h"

#define MAX_ENDPOINTS 64
#define MAX_META 64
#define TEXT_MAX 4096

static int usage_of(const char *u)
{
	fprintf(stderr, "usage: shipctl %s\n", u);
	return 2;
}

/* ---- reading the replies' JSON (checked whole by jscan first) ---- */

/* A JSON value's text within a reply; p NULL: absent. */
struct jv {
	const char *p;
	size_t n;
};

static size_t skip_ws(struct jv v, size_t i)
{
	while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == '\n' ||
	                   v.p[i] == '\r'))
		i++;
	return i;
}

/* The member key of object o, or an absent value. */
static struct jv jget(struct jv o, const char *key)
{
	size_t off, len;
	struct jv v = {NULL, 0};
	if (o.p && jscan_member(o.p, o.n, key, &off, &len) == 1) {
		v.p = o.p + off;
		v.n = len;
	}
	return v;
}

/* The next element of array a, or member of object a with key set: *pos
 * starts at 0. false at the end. */
static bool jnext(struct jv a, size_t *pos, struct jv *key, struct jv *val)
{
	size_t i = skip_ws(a, *pos);
	if (!a.p || i >= a.n)
		return false;
	if (*pos == 0 && a.p[i] != (key ? '{' : '['))
		return false;
	if (*pos != 0 && a.p[i] != ',')
		return false;
	i = skip_ws(a, i + 1);
	if (key) {
		size_t k = i;
		if (i >= a.n || a.p[i] != '"' || jscan_skip(a.p, a.n, &i) < 0)
			return false;
		*key = (struct jv){a.p + k, i - k};
		i = skip_ws(a, i);
		if (i >= a.n || a.p[i] != ':')
			return false;
		i = skip_ws(a, i + 1);
	}
	size_t start = i;
	if (jscan_skip(a.p, a.n, &i) < 0)
		return false;
	*val = (struct jv){a.p + start, i - start};
	*pos = i;
	return true;
}

static unsigned hex4(const char *p)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	return v;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A string's escape at s[0] (after the backslash) into o; *used gets
 * the characters read after it. Returns the bytes written. */
static size_t unescape(const char *s, char *o, size_t *used)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *k = strchr(from, s[0]);
	*used = 0;
	if (s[0] != 'u') {
		if (!k)
			return 0;
		o[0] = to[k - from];
		return 1;
	}
	unsigned cp = hex4(s + 1);
	*used = 4;
	/* jscan let no lone surrogate through: a high one has its pair. */
	if (cp >= 0xd800 && cp < 0xdc00) {
		cp = 0x10000 + ((cp - 0xd800) << 10) + (hex4(s + 7) - 0xdc00);
		*used = 10;
	}
	return put_utf8(o, cp);
}

/* The text of v into buf: a string unescaped, null or absent as "",
 * anything else as written. Cut to fit. */
static char *jtext(struct jv v, char *buf, size_t size)
{
	size_t o = 0;
	if (!v.p || (v.n == 4 && !memcmp(v.p, "null", 4))) {
		buf[0] = '\0';
		return buf;
	}
	if (v.p[0] != '"') {
		o = v.n < size ? v.n : size - 1;
		memcpy(buf, v.p, o);
		buf[o] = '\0';
		return buf;
	}
	for (size_t i = 1; i + 1 < v.n && o + 5 < size; i++) {
		size_t used;
		if (v.p[i] != '\\') {
			buf[o++] = v.p[i];
			continue;
		}
		o += unescape(v.p + i + 1, buf + o, &used);
		i += used + 1;
	}
	buf[o] = '\0';
	return buf;
}

static double jnum(struct jv o, const char *key)
{
	struct jv v = jget(o, key);
	char buf[64];
	return v.p ? strtod(jtext(v, buf, sizeof(buf)), NULL) : 0;
}

/* For one line of a table: control characters become spaces. */
static char *one_line(char *s)
{
	for (char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	return s;
}

/* "k=v, k2=v2" of a JSON object of strings; "-" when empty. */
static const char *meta_str(struct jv o, char *buf, size_t size)
{
	struct jv k, v;
	size_t pos = 0, used = 0;
	char ks[256], vs[1024];
	buf[0] = '\0';
	while (jnext(o, &pos, &k, &v) && used + 1 < size) {
		int n = snprintf(buf + used, size - used, "%s%s=%s",
		                 used ? ", " : "", jtext(k, ks, sizeof(ks)),
		                 jtext(v, vs, sizeof(vs)));
		used += n > 0 ? (size_t)n : 0;
	}
	return buf[0] ? one_line(buf) : "-";
}

/* ---- discovery ---- */

/* One instance's answer. */
struct inst {
	struct jv v;
	char name[256], version[128], id[128];
};

static int inst_cmp(const void *a, const void *b)
{
	const struct inst *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->id, y->id);
}

struct found {
	char **raw;
	size_t n_raw;
	struct inst *list;
	size_t n;
};

static void found_finish(struct found *f)
{
	shipc_svc_replies_free(f->raw, f->n_raw);
	free(f->list);
}

/* Ask the instances (of name, of id); those whose answer is not JSON are
 * left out, with a word. 0, or an exit status. */
static int discover(const char *what, const char *verb, const char *name,
                    const char *id, struct found *f)
{
	*f = (struct found){0};
	if (open_handle() < 0)
		return 1;
	if (shipc_svc_discover(h, verb, name, id, 0, &f->raw, &f->n_raw) < 0) {
		if (errno != ESRCH)
			return fail(what, errno);
		f->raw = NULL; /* nobody listens: no instance */
		f->n_raw = 0;
	}
	if (!(f->list = calloc(f->n_raw + 1, sizeof(*f->list))))
		return fail(what, errno);
	for (size_t i = 0; i < f->n_raw; i++) {
		struct jv v = {f->raw[i], strlen(f->raw[i])};
		if (jscan_valid(v.p, v.n) < 0 || v.p[skip_ws(v, 0)] != '{') {
			fprintf(stderr, "shipctl: %s: an answer is not a JSON "
			                "object: %.80s\n", what, v.p);
			continue;
		}
		struct inst *in = &f->list[f->n++];
		in->v = v;
		one_line(jtext(jget(v, "name"), in->name,
		                       sizeof(in->name)));
		one_line(jtext(jget(v, "version"), in->version,
		                       sizeof(in->version)));
		one_line(jtext(jget(v, "id"), in->id, sizeof(in->id)));
	}
	qsort(f->list, f->n, sizeof(*f->list), inst_cmp);
	return 0;
}

/* --json: the answers as received, in an array. */
static void print_raw(const struct found *f)
{
	fputc('[', stdout);
	for (size_t i = 0; i < f->n; i++) {
		fputs(i ? "," : "", stdout);
		fwrite(f->list[i].v.p, 1, f->list[i].v.n, stdout);
	}
	fputs("]\n", stdout);
}

static int cmd_ls(int argc, char **argv)
{
	if (argc > 2)
		return usage_of("svc ls [NAME]");
	struct found f;
	int rc = discover("svc ls", "PING", argc == 2 ? argv[1] : NULL, NULL,
	                  &f);
	if (rc == 0 && json) {
		print_raw(&f);
	} else if (rc == 0 && f.n) {
		int wn = 4, wv = 7;
		for (size_t i = 0; i < f.n; i++) {
			int n = (int)strlen(f.list[i].name);
			int v = (int)strlen(f.list[i].version);
			wn = n > wn ? n : wn;
			wv = v > wv ? v : wv;
		}
		printf("%-*s  %-*s  %s\n", wn, "NAME", wv, "VERSION", "ID");
		for (size_t i = 0; i < f.n; i++)
			printf("%-*s  %-*s  %s\n", wn, f.list[i].name, wv,
			       f.list[i].version, f.list[i].id);
	} else if (rc == 0) {
		fprintf(stderr, "no service answered\n");
	}
	found_finish(&f);
	return rc;
}

/* info and stats: NAME [ID]; prints the answers with fn. */
static int show(int argc, char **argv, const char *verb,
                void (*fn)(const struct inst *))
{
	char what[32];
	snprintf(what, sizeof(what), "svc %s", argv[0]);
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: shipctl %s NAME [ID]\n", what);
		return 2;
	}
	struct found f;
	int rc = discover(what, verb, argv[1], argc == 3 ? argv[2] : NULL, &f);
	if (rc == 0 && json)
		print_raw(&f);
	for (size_t i = 0; rc == 0 && !json && i < f.n; i++) {
		if (i)
			fputc('\n', stdout);
		fn(&f.list[i]);
	}
	if (rc == 0 && !f.n) {
		fprintf(stderr, "shipctl: %s: no instance of %s answered\n", what,
		        argv[1]);
		rc = 1;
	}
	found_finish(&f);
	return rc;
}

static void print_info(const struct inst *in)
{
	char buf[TEXT_MAX];
	printf("%s %s, id %s\n", in->name, in->version, in->id);
	jtext(jget(in->v, "description"), buf, sizeof(buf));
	printf("description: %s\n", buf[0] ? one_line(buf) : "-");
	printf("metadata:    %s\n",
	       meta_str(jget(in->v, "metadata"), buf, sizeof(buf)));
	struct jv eps = jget(in->v, "endpoints"), ep;
	size_t pos = 0;
	printf("endpoints:\n");
	while (jnext(eps, &pos, NULL, &ep)) {
		char name[256], subject[1100], queue[300];
		jtext(jget(ep, "name"), name, sizeof(name));
		jtext(jget(ep, "subject"), subject, sizeof(subject));
		jtext(jget(ep, "queue_group"), queue, sizeof(queue));
		printf("  %s: subject %s, %s%s", one_line(name), one_line(subject),
		       queue[0] ? "queue group " : "no queue group",
		       one_line(queue));
		const char *m = meta_str(jget(ep, "metadata"), buf, sizeof(buf));
		printf(strcmp(m, "-") ? ", metadata %s\n" : "\n", m);
	}
}

/* Nanoseconds as people read them: 950ns, 12.5us, 3.2ms, 1.50s. */
static void dur_str(char *buf, size_t size, double ns)
{
	if (ns < 1e3)
		snprintf(buf, size, "%.0fns", ns);
	else if (ns < 1e6)
		snprintf(buf, size, "%.1fus", ns / 1e3);
	else if (ns < 1e9)
		snprintf(buf, size, "%.1fms", ns / 1e6);
	else
		snprintf(buf, size, "%.2fs", ns / 1e9);
}

static void print_stats(const struct inst *in)
{
	char started[64];
	jtext(jget(in->v, "started"), started, sizeof(started));
	printf("%s %s, id %s, started %s\n", in->name, in->version, in->id,
	       one_line(started));
	printf("  %-16s %-24s %9s %7s %10s %10s  %s\n", "ENDPOINT", "SUBJECT",
	       "REQUESTS", "ERRORS", "TIME", "AVERAGE", "LAST ERROR");
	struct jv eps = jget(in->v, "endpoints"), ep;
	size_t pos = 0;
	while (jnext(eps, &pos, NULL, &ep)) {
		char name[256], subject[1100], last[TEXT_MAX], t[32], avg[32];
		jtext(jget(ep, "name"), name, sizeof(name));
		jtext(jget(ep, "subject"), subject, sizeof(subject));
		jtext(jget(ep, "last_error"), last, sizeof(last));
		dur_str(t, sizeof(t), jnum(ep, "processing_time"));
		dur_str(avg, sizeof(avg), jnum(ep, "average_processing_time"));
		printf("  %-16s %-24s %9.0f %7.0f %10s %10s  %s\n",
		       one_line(name), one_line(subject), jnum(ep, "num_requests"),
		       jnum(ep, "num_errors"), t, avg,
		       last[0] ? one_line(last) : "-");
		struct jv data = jget(ep, "data");
		if (data.p && !(data.n == 4 && !memcmp(data.p, "null", 4)))
			printf("  %-16s data %.*s\n", "", (int)data.n, data.p);
	}
}

static int cmd_info(int argc, char **argv)
{
	return show(argc, argv, "INFO", print_info);
}

static int cmd_stats(int argc, char **argv)
{
	return show(argc, argv, "STATS", print_stats);
}

/* ---- call ---- */

static const char *header_of(const struct shipc_msg *m, const char *key)
{
	for (size_t i = 0; i < m->n_headers; i++)
		if (!strcasecmp(m->headers[i].key, key))
			return m->headers[i].value;
	return NULL;
}

/* Print a reply; 1 when it is a service error (ADR-32 headers). */
static int print_reply(const struct shipc_msg *r)
{
	const char *code = header_of(r, "Nats-Service-Error-Code");
	const char *text = header_of(r, "Nats-Service-Error");
	if (json) {
		print_msg(r, 1, false);
	} else if (!code || r->len) {
		fwrite(r->data, 1, r->len, stdout);
		fputc('\n', stdout);
	}
	if (!code)
		return 0;
	fflush(stdout);
	fprintf(stderr, "error %s: %s\n", code, text ? text : "");
	return 1;
}

static int cmd_call(int argc, char **argv)
{
	return request_cmd(argc, argv, "svc call", print_reply);
}

/* ---- serve ---- */

enum answer { ANSWER_ECHO, ANSWER_REPLY, ANSWER_ERROR };

struct serve {
	enum answer answer;
	const char *text;
	unsigned code;
	struct shipc_svc_endpoint eps[MAX_ENDPOINTS];
	struct shipc_header meta[MAX_META];
	struct shipc_svc_config cfg;
};

static void serve_fn(struct shipc *hh, const struct shipc_svc_req *req,
                     void *arg)
{
	const struct serve *s = arg;
	int r;
	switch (s->answer) {
	case ANSWER_REPLY:
		r = shipc_svc_respond(req->svc, req->token, s->text,
		                      strlen(s->text));
		break;
	case ANSWER_ERROR:
		r = shipc_svc_error(req->svc, req->token, s->code, s->text, NULL,
		                    0);
		break;
	default:
		r = shipc_svc_respond(req->svc, req->token, req->data, req->len);
	}
	if (r < 0)
		fail("svc serve: answer", errno);
}

/* NAME or NAME=SUBJECT, into the next endpoint (strings stay in arg). */
static bool endpoint_arg(struct serve *s, char *arg)
{
	if (s->cfg.n_endpoints == MAX_ENDPOINTS)
		return false;
	struct shipc_svc_endpoint *e = &s->eps[s->cfg.n_endpoints++];
	char *eq = strchr(arg, '=');
	if (eq) {
		*eq = '\0';
		e->subject = eq + 1;
	}
	e->name = arg;
	e->fn = serve_fn;
	e->arg = s;
	return true;
}

static bool meta_arg(struct serve *s, char *arg)
{
	char *eq = strchr(arg, '=');
	if (!eq || eq == arg || s->cfg.n_metadata == MAX_META)
		return false;
	*eq = '\0';
	s->meta[s->cfg.n_metadata].key = arg;
	s->meta[s->cfg.n_metadata++].value = eq + 1;
	return true;
}

/* CODE:TEXT */
static bool error_arg(struct serve *s, char *arg)
{
	char *colon = strchr(arg, ':');
	uint64_t code;
	if (!colon || !colon[1])
		return false;
	*colon = '\0';
	if (!parse_uint(arg, &code) || !code || code > UINT32_MAX)
		return false;
	s->answer = ANSWER_ERROR;
	s->code = (unsigned)code;
	s->text = colon + 1;
	return true;
}

/* Apply the options that hold for every endpoint. */
static void endpoints_finish(struct serve *s, const char *queue, bool no_queue,
                             bool prefix)
{
	if (!s->cfg.n_endpoints) {
		/* One, named as the service. */
		s->eps[0].name = s->cfg.name;
		s->eps[0].fn = serve_fn;
		s->eps[0].arg = s;
		s->cfg.n_endpoints = 1;
	}
	for (size_t i = 0; i < s->cfg.n_endpoints; i++) {
		s->eps[i].queue_group = queue;
		s->eps[i].no_queue = no_queue;
		s->eps[i].prefix = prefix;
	}
	s->cfg.endpoints = s->eps;
	s->cfg.metadata = s->meta;
}

static int serve_loop(struct shipc_svc *svc, const char *name)
{
	char id[128];
	snprintf(id, sizeof(id), "%s", shipc_svc_id(svc));
	printf("serving %s id %s\n", name, id);
	fflush(stdout);
	while (!interrupted) {
		shipc_dispatch(h, 200);
		int err = shipc_svc_ended(svc);
		if (err) {
			fail("svc serve: the service ended", err);
			shipc_svc_stop(svc);
			return 1;
		}
		if (strcmp(id, shipc_svc_id(svc))) {
			/* Added again (shipd restarted): a new instance. */
			snprintf(id, sizeof(id), "%s", shipc_svc_id(svc));
			printf("serving %s id %s\n", name, id);
			fflush(stdout);
		}
	}
	if (shipc_svc_stop(svc) < 0)
		return fail("svc serve: stop", errno);
	return 0;
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		{"version", required_argument, NULL, 'v'},
		{"endpoint", required_argument, NULL, 'e'},
		{"queue", required_argument, NULL, 'q'},
		{"no-queue", no_argument, NULL, 'Q'},
		{"description", required_argument, NULL, 'd'},
		{"meta", required_argument, NULL, 'm'},
		{"echo", no_argument, NULL, 'E'},
		{"reply", required_argument, NULL, 'r'},
		{"error", required_argument, NULL, 'x'},
		{"timeout-ms", required_argument, NULL, 't'},
		{"prefix", no_argument, NULL, 'p'},
		{NULL, 0, NULL, 0}};
	const char *u = "svc serve NAME --version V [--endpoint NAME[=SUBJECT]]"
	                "... [--queue Q | --no-queue] [--description D] "
	                "[--meta K=V]... [--echo | --reply TEXT | --error "
	                "CODE:TEXT] [--timeout-ms N] [--prefix]";
	struct serve s = {0};
	const char *queue = NULL;
	bool no_queue = false, prefix = false;
	uint64_t v = 0;
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		bool ok = true;
		switch (ch) {
		case 'v':
			s.cfg.version = optarg;
			break;
		case 'e':
			ok = endpoint_arg(&s, optarg);
			break;
		case 'q':
			queue = optarg;
			break;
		case 'Q':
			no_queue = true;
			break;
		case 'd':
			s.cfg.description = optarg;
			break;
		case 'm':
			ok = meta_arg(&s, optarg);
			break;
		case 'E':
			s.answer = ANSWER_ECHO;
			break;
		case 'r':
			s.answer = ANSWER_REPLY;
			s.text = optarg;
			break;
		case 'x':
			ok = error_arg(&s, optarg);
			break;
		case 't':
			ok = parse_uint(optarg, &v) && v && v <= UINT32_MAX;
			s.cfg.timeout_ms = (uint32_t)v;
			break;
		case 'p':
			prefix = true;
			break;
		default:
			ok = false;
		}
		if (!ok)
			return usage_of(u);
	}
	if (argc - optind != 1 || !s.cfg.version || (queue && no_queue))
		return usage_of(u);
	s.cfg.name = argv[optind];
	endpoints_finish(&s, queue, no_queue, prefix);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (open_handle() < 0)
		return 1;
	struct shipc_svc *svc = shipc_svc_add(h, &s.cfg);
	if (!svc)
		return fail("svc serve", errno);
	return serve_loop(svc, s.cfg.name);
}

const struct cmd svc_cmds[] = {
	{"svc ls", cmd_ls, "[NAME]",
	 "list the service instances that answer (NATS micro)"},
	{"svc info", cmd_info, "NAME [ID]",
	 "show a service's description, metadata and endpoints"},
	{"svc stats", cmd_stats, "NAME [ID]",
	 "show a service's requests, errors and processing times"},
	{"svc call", cmd_call, "SUBJECT [DATA] [--timeout MS] [-H K=V]",
	 "call an endpoint; a service error exits 1"},
	{"svc serve", cmd_serve, "NAME --version V [--endpoint E[=S]]...",
	 "host a trivial service until SIGTERM (--echo, --reply, --error)"},
	{NULL, NULL, NULL, NULL},
};
