/* SPDX-License-Identifier: MIT */
/* What the interop tests share: their servers, the folder of the nats.js
 * scripts, running one of them, and a suite that skips without them. */
#ifndef SHIP_TEST_INTEROP_H
#define SHIP_TEST_INTEROP_H

#include <check.h>
#include <jansson.h>

#include "fixture.h"
#include "shipc.h"

/* The servers of the test running, started and stopped around each. */
extern struct natsd interop_nats;
extern struct shipdp interop_shipd;

/* The folder of the scripts and node_modules: $INTEROP_DIR, else the
 * source folder the build names. */
const char *interop_dir(void);
/* The last error of h, for messages (a buffer of the calling thread). */
const char *interop_why(struct shipc *h);
/* Run `node <dir>/<script> <args>` (args as a shell reads them, 60 s at
 * most) and parse the one JSON object it prints; the test fails if it
 * exits non-zero or prints none. The caller frees it. */
json_t *interop_node(const char *script, const char *args);
/* A handle to shipd as name, once its link to NATS is up (5 s at most). */
struct shipc *interop_conn(const char *name);
/* Run tests (NULL-terminated) as the suite name, each with its own
 * servers and timeout_s seconds. Without node or without the npm package
 * (its node_modules folder) it says so and returns 77 (skipped); else 1
 * if a test failed, 0 if none did. */
int interop_main(const char *name, const char *package, int timeout_s,
                 const TTest *const *tests);

#endif
