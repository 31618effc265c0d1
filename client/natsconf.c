/* SPDX-License-Identifier: MIT */
/* natsconf: a reader of nats-server configuration files for shipctl's
 * profile checks; it flattens the file and judges no value. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "natsconf.h"

#define FILE_MAX (1u << 20) /* a configuration is a few KiB */
#define PATH_MAX_LEN 512
#define DEPTH_MAX 32

struct reader {
	const char *file;
	const char *p, *end;
	int line;
	int depth;
	struct natsconf *c;
	char *err;
	size_t errlen;
	bool failed;
};

static void fail(struct reader *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void fail(struct reader *r, const char *fmt, ...)
{
	if (r->failed)
		return;
	va_list ap;
	int n = snprintf(r->err, r->errlen, "%s:%d: ", r->file, r->line);
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < r->errlen)
		vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	r->failed = true;
}

static int add(struct reader *r, const char *path, const char *value,
               size_t len, int line)
{
	struct natsconf *c = r->c;
	struct natsconf_entry *v = realloc(c->v, (c->n + 1) * sizeof(*v));
	if (!v) {
		fail(r, "out of memory");
		return -1;
	}
	c->v = v;
	v[c->n].path = strdup(path);
	v[c->n].value = strndup(value, len);
	v[c->n].line = line;
	if (!v[c->n].path || !v[c->n].value) {
		free(v[c->n].path);
		free(v[c->n].value);
		fail(r, "out of memory");
		return -1;
	}
	c->n++;
	return 0;
}

/* Blanks, and with newlines also line ends, commas, semicolons and
 * comments (a comment runs to the end of its line). */
static void skip(struct reader *r, bool newlines)
{
	while (r->p < r->end) {
		char ch = *r->p;
		if (ch == ' ' || ch == '\t' || ch == '\r') {
			r->p++;
		} else if (ch == '#' ||
		           (ch == '/' && r->p + 1 < r->end && r->p[1] == '/')) {
			while (r->p < r->end && *r->p != '\n')
				r->p++;
		} else if (newlines && (ch == '\n' || ch == ',' || ch == ';')) {
			r->line += ch == '\n';
			r->p++;
		} else {
			return;
		}
	}
}

/* A bare word ends at a blank, a line end or punctuation of the syntax. */
static bool bare_end(char ch, bool key)
{
	return isspace((unsigned char)ch) || strchr(",;[]{}#", ch) ||
	       (key && (ch == '=' || ch == ':'));
}

/* A quoted string at r->p, unescaped into out (at least its length). */
static int quoted(struct reader *r, char *out, size_t size, size_t *len)
{
	char q = *r->p++;
	int line = r->line;
	*len = 0;
	while (r->p < r->end && *r->p != q) {
		char ch = *r->p++;
		if (ch == '\n') {
			r->line = line;
			fail(r, "a string is not closed on its line");
			return -1;
		}
		if (ch == '\\' && q == '"' && r->p < r->end) {
			ch = *r->p++;
			ch = ch == 'n' ? '\n' : ch == 't' ? '\t' : ch == 'r' ? '\r' : ch;
		}
		if (*len + 1 >= size) {
			fail(r, "a string is too long");
			return -1;
		}
		out[(*len)++] = ch;
	}
	if (r->p == r->end) {
		fail(r, "a string is not closed");
		return -1;
	}
	r->p++;
	return 0;
}

static int value(struct reader *r, const char *path);

static int block(struct reader *r, const char *path, char close);

static int array(struct reader *r, const char *path)
{
	int line = r->line;
	r->p++;
	for (;;) {
		skip(r, true);
		if (r->p == r->end) {
			r->line = line;
			fail(r, "'[' is not closed");
			return -1;
		}
		if (*r->p == ']') {
			r->p++;
			return 0;
		}
		if (value(r, path) < 0)
			return -1;
	}
}

static int value(struct reader *r, const char *path)
{
	size_t len = 0;
	if (r->p == r->end || *r->p == '\n') {
		fail(r, "'%s' has no value", path);
		return -1;
	}
	if (*r->p == '{' || *r->p == '[') {
		if (++r->depth > DEPTH_MAX) {
			fail(r, "nested too deep");
			return -1;
		}
		/* Each map is counted at <path>.{} (the remotes of
		 * leafnodes.remotes, whose members share their paths). */
		char mark[PATH_MAX_LEN];
		if (*r->p == '{' &&
		    (size_t)snprintf(mark, sizeof(mark), "%s.{}", path) <
		            sizeof(mark) &&
		    add(r, mark, "", 0, r->line) < 0)
			return -1;
		int rc = *r->p == '{' ? (r->p++, block(r, path, '}'))
		                      : array(r, path);
		r->depth--;
		return rc;
	}
	const char *start = r->p;
	if (*r->p == '"' || *r->p == '\'') {
		char *buf = malloc((size_t)(r->end - r->p) + 1);
		if (!buf) {
			fail(r, "out of memory");
			return -1;
		}
		int rc = quoted(r, buf, (size_t)(r->end - r->p) + 1, &len);
		if (rc == 0)
			rc = add(r, path, buf, len, r->line);
		free(buf);
		return rc;
	}
	while (r->p < r->end && !bare_end(*r->p, false))
		r->p++;
	if (r->p == start) {
		fail(r, "unexpected '%c'", *r->p);
		return -1;
	}
	return add(r, path, start, (size_t)(r->p - start), r->line);
}

/* The members of a map up to close ('\0': the end of the file). */
static int block(struct reader *r, const char *path, char close)
{
	int line = r->line;
	for (;;) {
		skip(r, true);
		if (r->p == r->end) {
			if (!close)
				return 0;
			r->line = line;
			fail(r, "'{' is not closed");
			return -1;
		}
		if (*r->p == close) {
			r->p++;
			return 0;
		}
		char key[PATH_MAX_LEN], sub[PATH_MAX_LEN];
		size_t len = 0;
		if (*r->p == '"' || *r->p == '\'') {
			if (quoted(r, key, sizeof(key), &len) < 0)
				return -1;
		} else {
			while (r->p < r->end && !bare_end(*r->p, true) &&
			       len < sizeof(key) - 1)
				key[len++] = *r->p++;
		}
		key[len] = '\0';
		if (!len) {
			fail(r, "expected a key, found '%c'", *r->p);
			return -1;
		}
		for (size_t i = 0; i < len; i++)
			key[i] = (char)tolower((unsigned char)key[i]);
		skip(r, false);
		if (r->p < r->end && (*r->p == '=' || *r->p == ':')) {
			r->p++;
			skip(r, false);
		}
		int n = snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "",
		                 key);
		if (n < 0 || (size_t)n >= sizeof(sub)) {
			fail(r, "keys nested too long");
			return -1;
		}
		if (value(r, sub) < 0)
			return -1;
	}
}

static char *slurp(const char *file, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(file, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", file, strerror(errno));
		return NULL;
	}
	char *buf = malloc(FILE_MAX + 1);
	*len = buf ? fread(buf, 1, FILE_MAX + 1, f) : 0;
	bool bad = ferror(f);
	fclose(f);
	if (!buf || bad || *len > FILE_MAX) {
		snprintf(err, errlen, "%s: %s", file,
		         !buf ? "out of memory"
		              : bad ? "read error" : "larger than 1 MiB");
		free(buf);
		return NULL;
	}
	return buf;
}

int natsconf_read(const char *file, struct natsconf *c, char *err,
                  size_t errlen)
{
	size_t len;
	*c = (struct natsconf){0};
	char *buf = slurp(file, &len, err, errlen);
	if (!buf)
		return -1;
	struct reader r = {.file = file, .p = buf, .end = buf + len, .line = 1,
	                   .c = c, .err = err, .errlen = errlen};
	int rc = block(&r, "", '\0');
	free(buf);
	if (rc < 0)
		natsconf_finish(c);
	return rc;
}

const char *natsconf_get(const struct natsconf *c, const char *path,
                         int *line)
{
	const struct natsconf_entry *e = NULL;
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->v[i].path, path))
			e = &c->v[i];
	if (!e)
		return NULL;
	if (line)
		*line = e->line;
	if (e->value[0] != '$' || !e->value[1])
		return e->value;
	/* A variable: a top-level key (no dot, so not a path), else the
	 * environment's. Keys are stored lowercase. */
	const char *var = e->value + 1;
	for (size_t i = c->n; i-- > 0;)
		if (!strchr(c->v[i].path, '.') && !strcasecmp(c->v[i].path, var) &&
		    c->v[i].value[0] != '$')
			return c->v[i].value;
	return getenv(var);
}

size_t natsconf_count(const struct natsconf *c, const char *path)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n; i++)
		n += !strcmp(c->v[i].path, path);
	return n;
}

void natsconf_finish(struct natsconf *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].path);
		free(c->v[i].value);
	}
	free(c->v);
	*c = (struct natsconf){0};
}
