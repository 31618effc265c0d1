/* SPDX-License-Identifier: MIT */
/* natsconf: reads a nats-server configuration file into flat path = value
 * entries, enough for shipctl fleet check to look at a profile. */
#ifndef NATSCONF_H
#define NATSCONF_H

#include <stddef.h>

/*
 * One scalar of the file. Its path is the keys leading to it, lowercased
 * (nats-server's keys are case-insensitive) and joined by dots; elements
 * of an array share the array's path: the URLs of every remote are each
 * "leafnodes.remotes.urls". Each map is also counted by an entry "" at
 * its path and ".{}" ("leafnodes.remotes.{}": one per remote). Values are
 * as written, quotes removed; a $variable is resolved by natsconf_get().
 */
struct natsconf_entry {
	char *path;
	char *value;
	int line;
};

struct natsconf {
	struct natsconf_entry *v;
	size_t n;
};

/*
 * Read file into c (which the caller then frees with natsconf_finish()).
 * The syntax is nats-server's: key = value, key: value or key value;
 * { maps } and [ arrays ] separated by commas or newlines; "double" and
 * 'single' quoted strings; # and // comments. include is read as a key,
 * not followed. Returns 0, or -1 with "file:line: what" in err
 * (errlen bytes) and c empty.
 */
int natsconf_read(const char *file, struct natsconf *c, char *err,
                  size_t errlen);

/*
 * The last value at path (lowercase), or NULL; *line (if line is not
 * NULL) gets its line. A value "$NAME" is the top-level key NAME's value,
 * else the environment's NAME, as nats-server resolves variables.
 */
const char *natsconf_get(const struct natsconf *c, const char *path,
                         int *line);

/* How many values are at path. */
size_t natsconf_count(const struct natsconf *c, const char *path);

void natsconf_finish(struct natsconf *c);

#endif
