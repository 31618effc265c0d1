/* SPDX-License-Identifier: MIT */
/*
 * The journal of object puts: what a put has published and who must
 * purge it, kept in a file of state_dir so that a put cut by shipd's own
 * end (a crash, a kill, a stop mid-put) is cleaned up after the restart.
 *
 * One line per record, appended with one write(2):
 *   P <nuid> <bucket> <old nuid or -> <meta subject>   a put began
 *   M <nuid>                                           its meta was sent
 *   X <nuid> <bucket>                                  chunks to purge
 *   E <nuid>                                           nothing left to do
 * The entries still open at start are left over: objstore.c settles them
 * once NATS is up (ojournal_next). The file is emptied whenever nothing
 * is open and rewritten from memory when it grows past JOURNAL_REWRITE.
 * Without fsync: it survives shipd's end, not the machine's; what a lost
 * line costs is chunks nobody refers to, never an object.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <limits.h>
#include <unistd.h>

#include "shipd.h"

#define JOURNAL_NAME "obj-puts"
#define JOURNAL_LINE_MAX 1400
#define JOURNAL_REWRITE (1u << 20)
#define JOURNAL_OPEN_MAX 16384

static TAILQ_HEAD(, ojentry) open_list = TAILQ_HEAD_INITIALIZER(open_list);
static size_t n_open, n_dropped;
static int jfd = -1;
static char path[PATH_MAX], tmp_path[PATH_MAX + 8];
static size_t written; /* bytes in the file */
static bool broken;    /* a write failed: memory only from then on */

static struct ojentry *find(const char *nuid)
{
	struct ojentry *e;
	TAILQ_FOREACH(e, &open_list, entry)
	if (!strcmp(e->nuid, nuid))
		return e;
	return NULL;
}

static int entry_line(const struct ojentry *e, char *buf, size_t size)
{
	if (e->kind == 'X' || !e->meta)
		return snprintf(buf, size, "X %s %s\n", e->nuid, e->bucket);
	int n = snprintf(buf, size, "P %s %s %s %s\n", e->nuid, e->bucket,
			 e->old[0] ? e->old : "-", e->meta);
	if (e->meta_sent && n > 0 && (size_t)n < size)
		n += snprintf(buf + n, size - (size_t)n, "M %s\n", e->nuid);
	return n;
}

static void fail(const char *what)
{
	if (!broken)
		log_warnx("objstore journal %s: %s: %s; puts cut by shipd's "
			  "end may leave chunks from now on",
			  path, what, strerror(errno));
	broken = true;
}

static void append(const char *line, size_t len)
{
	if (jfd < 0 || broken)
		return;
	ssize_t n = write(jfd, line, len);
	if (n != (ssize_t)len) {
		if (n >= 0)
			errno = ENOSPC;
		fail("write");
		return;
	}
	written += len;
}

/* The file again from what is open, by a rename over it. */
static void rewrite(void)
{
	if (jfd < 0 || broken)
		return;
	int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		fail("open");
		return;
	}
	char line[JOURNAL_LINE_MAX * 2];
	size_t total = 0;
	struct ojentry *e;
	TAILQ_FOREACH(e, &open_list, entry)
	{
		int n = entry_line(e, line, sizeof(line));
		if (n <= 0 || (size_t)n >= sizeof(line) ||
		    write(fd, line, (size_t)n) != n) {
			close(fd);
			unlink(tmp_path);
			fail("rewrite");
			return;
		}
		total += (size_t)n;
	}
	if (rename(tmp_path, path) < 0) {
		close(fd);
		unlink(tmp_path);
		fail("rename");
		return;
	}
	close(jfd);
	jfd = fd;
	/* O_APPEND from now on, as the file was opened at start. */
	fcntl(jfd, F_SETFL, O_APPEND);
	written = total;
}

static void drop(struct ojentry *e)
{
	TAILQ_REMOVE(&open_list, e, entry);
	n_open--;
	free(e->meta);
	free(e);
	if (!n_open) {
		if (jfd >= 0 && !broken && written && ftruncate(jfd, 0) < 0)
			fail("truncate");
		else
			written = 0;
	} else if (written > JOURNAL_REWRITE && written > 8 * n_open * 128) {
		rewrite();
	}
}

static struct ojentry *add(char kind, const char *nuid, const char *bucket)
{
	if (jfd < 0) /* no journal: nothing to keep */
		return NULL;
	if (n_open >= JOURNAL_OPEN_MAX) {
		if (!n_dropped++)
			log_warnx("objstore journal: %d puts open; more are not "
				  "journaled",
				  JOURNAL_OPEN_MAX);
		return NULL;
	}
	struct ojentry *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->kind = kind;
	snprintf(e->nuid, sizeof(e->nuid), "%s", nuid);
	snprintf(e->bucket, sizeof(e->bucket), "%s", bucket);
	TAILQ_INSERT_TAIL(&open_list, e, entry);
	n_open++;
	return e;
}

void ojournal_begin(const char *bucket, const char *nuid, const char *old,
		    const char *meta)
{
	char line[JOURNAL_LINE_MAX * 2];
	struct ojentry *e = add('P', nuid, bucket);
	if (!e)
		return;
	snprintf(e->old, sizeof(e->old), "%s", old ? old : "");
	if (!(e->meta = strdup(meta))) {
		drop(e);
		return;
	}
	int n = entry_line(e, line, sizeof(line));
	if (n > 0 && (size_t)n < sizeof(line))
		append(line, (size_t)n);
}

void ojournal_meta(const char *nuid)
{
	char line[64];
	struct ojentry *e = find(nuid);
	if (!e || e->kind != 'P')
		return;
	e->meta_sent = true;
	int n = snprintf(line, sizeof(line), "M %s\n", nuid);
	append(line, (size_t)n);
}

void ojournal_purge(const char *bucket, const char *nuid)
{
	char line[JOURNAL_LINE_MAX];
	struct ojentry *e = find(nuid);
	if (e) {
		e->kind = 'X';
		e->meta_sent = false;
		snprintf(e->bucket, sizeof(e->bucket), "%s", bucket);
	} else if (!(e = add('X', nuid, bucket)))
		return;
	int n = entry_line(e, line, sizeof(line));
	if (n > 0 && (size_t)n < sizeof(line))
		append(line, (size_t)n);
}

void ojournal_end(const char *nuid)
{
	char line[64];
	struct ojentry *e = find(nuid);
	if (!e)
		return;
	int n = snprintf(line, sizeof(line), "E %s\n", nuid);
	append(line, (size_t)n);
	drop(e);
}

struct ojentry *ojournal_next(struct ojentry *after)
{
	struct ojentry *e = after ? TAILQ_NEXT(after, entry)
				  : TAILQ_FIRST(&open_list);
	while (e && (!e->left || e->settling))
		e = TAILQ_NEXT(e, entry);
	return e;
}

size_t ojournal_open_count(void)
{
	return n_open;
}

/* One line read back: false if it is not one of ours (a line cut by
 * the end of a write is skipped). */
static bool load_line(char *line)
{
	char kind[2], nuid[64], bucket[KV_NAME_MAX], old[64];
	char meta[IPC_SUBJECT_MAX + 1];
	struct ojentry *e;
	size_t len = strlen(line);
	if (!len || line[len - 1] != '\n')
		return false;
	if (sscanf(line, "%1s %63s", kind, nuid) != 2 ||
	    strlen(nuid) > NUID_LEN)
		return false;
	switch (kind[0]) {
	case 'P':
		if (sscanf(line, "P %*s %255s %63s %1024s", bucket, old,
			   meta) != 3 ||
		    strlen(old) > NUID_LEN)
			return false;
		if ((e = find(nuid)) || (e = add('P', nuid, bucket))) {
			e->kind = 'P';
			snprintf(e->bucket, sizeof(e->bucket), "%s", bucket);
			snprintf(e->old, sizeof(e->old), "%.*s", NUID_LEN,
				 strcmp(old, "-") ? old : "");
			free(e->meta);
			if (!(e->meta = strdup(meta))) {
				drop(e);
				return true;
			}
		}
		return true;
	case 'M':
		if ((e = find(nuid)))
			e->meta_sent = true;
		return true;
	case 'X':
		if (sscanf(line, "X %*s %255s", bucket) != 1)
			return false;
		if ((e = find(nuid)) || (e = add('X', nuid, bucket))) {
			e->kind = 'X';
			e->meta_sent = false;
			snprintf(e->bucket, sizeof(e->bucket), "%s", bucket);
		}
		return true;
	case 'E':
		if ((e = find(nuid)))
			drop(e);
		return true;
	default:
		return false;
	}
}

int ojournal_open(const char *dir)
{
	if (!dir || !*dir) {
		log_info("objstore: no state_dir: a put cut by shipd's end "
			 "leaves its chunks in the bucket");
		return 0;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/" JOURNAL_NAME, dir) >=
	    sizeof(path)) {
		log_warnx("state_dir %s: path too long", dir);
		return -1;
	}
	snprintf(tmp_path, sizeof(tmp_path), "%s.new", path);
	jfd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (jfd < 0) {
		log_warn("objstore journal %s", path);
		return -1;
	}
	FILE *f = fdopen(dup(jfd), "r");
	size_t bad = 0;
	if (f) {
		char line[JOURNAL_LINE_MAX];
		while (fgets(line, sizeof(line), f))
			if (!load_line(line))
				bad++;
		fclose(f);
	}
	struct ojentry *e;
	TAILQ_FOREACH(e, &open_list, entry)
	e->left = true;
	if (n_open || bad)
		log_info("objstore journal %s: %zu puts left by the last run "
			 "to settle%s",
			 path, n_open, bad ? " (unreadable lines skipped)" : "");
	rewrite();
	if (!n_open && jfd >= 0 && !broken && ftruncate(jfd, 0) == 0)
		written = 0;
	return broken ? -1 : 0;
}

void ojournal_close(void)
{
	struct ojentry *e;
	if (n_open)
		log_info("objstore journal: %zu puts open at exit, settled "
			 "at the next start",
			 n_open);
	while ((e = TAILQ_FIRST(&open_list))) {
		TAILQ_REMOVE(&open_list, e, entry);
		free(e->meta);
		free(e);
	}
	n_open = 0;
	if (jfd >= 0)
		close(jfd);
	jfd = -1;
	broken = false;
	written = 0;
}
