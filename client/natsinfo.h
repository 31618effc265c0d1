/* SPDX-License-Identifier: MIT */
/* natsinfo: what a NATS server says of itself to every connection, read
 * without a NATS client (shipctl links libshipc only). */
#ifndef NATSINFO_H
#define NATSINFO_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Host and port of a URL as nats-server and shipd.conf write them:
 * [scheme://][user[:password]@]host[:port], [v6]:port, or a port alone
 * (listen: 4222; host is then ""). A missing port is default_port.
 * false if the port is not one.
 */
bool natsinfo_hostport(const char *url, char *host, size_t size, int *port,
                       int default_port);

/*
 * Connect to the server at url and read its greeting, "INFO {json}",
 * within timeout_ms; nothing is sent. Returns the JSON (malloc'd, the
 * caller frees it), or NULL with the reason in err (errlen bytes).
 */
char *natsinfo_fetch(const char *url, int timeout_ms, char *err,
                     size_t errlen);

/* The member key of the INFO JSON, a string unquoted (not unescaped) or
 * any other value as written, into out; "" if absent. */
void natsinfo_member(const char *info, const char *key, char *out,
                     size_t size);

#endif
