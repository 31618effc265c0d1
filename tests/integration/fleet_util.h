/* SPDX-License-Identifier: MIT */
/* JetStream API requests of the fleet tests (a hub and robot leaf
 * servers), made with nats.c directly: Check assertions on failure. */
#ifndef FLEET_UTIL_H
#define FLEET_UTIL_H

#include <check.h>
#include <stdio.h>
#include <string.h>

#include <nats/nats.h>

#include "fixture.h"

/* A JetStream API request on nc; its answer must not be an error. */
static inline void fx_api_ok(natsConnection *nc, const char *subj,
                             const char *body)
{
	natsMsg *reply = NULL;
	ck_assert_int_eq(natsConnection_RequestString(&reply, nc, subj, body,
	                                              10000),
	                 NATS_OK);
	ck_assert_msg(!strstr(natsMsg_GetData(reply), "\"error\""), "%s: %s",
	              subj, natsMsg_GetData(reply));
	natsMsg_Destroy(reply);
}

/* A request to the server at url (its own JetStream: $JS.API); the
 * answer into buf, whatever it is. */
static inline void fx_api_at(const char *url, const char *subj,
                             const char *body, char *buf, size_t len)
{
	natsConnection *nc = NULL;
	natsMsg *reply = NULL;
	ck_assert_int_eq(natsConnection_ConnectTo(&nc, url), NATS_OK);
	ck_assert_int_eq(natsConnection_RequestString(&reply, nc, subj, body,
	                                              5000),
	                 NATS_OK);
	fx_strcopy(buf, len, natsMsg_GetData(reply),
	           (size_t)natsMsg_GetDataLength(reply));
	natsMsg_Destroy(reply);
	natsConnection_Destroy(nc);
}

/* A hub stream name (replicas copies) sourcing stream from each of the
 * n robots, through their domains (the robot's name). */
static inline void fx_fleet_stream(natsConnection *hub, const char *name,
                                   const char *stream,
                                   const char *const *robots, int n,
                                   int replicas)
{
	char subj[128], body[2048];
	int off = snprintf(body, sizeof(body),
	                   "{\"name\":\"%s\",\"storage\":\"file\","
	                   "\"num_replicas\":%d,\"duplicate_window\":100000000,"
	                   "\"sources\":[",
	                   name, replicas);
	for (int i = 0; i < n && off < (int)sizeof(body); i++)
		off += snprintf(body + off, sizeof(body) - (size_t)off,
		                "%s{\"name\":\"%s\",\"external\":{\"api\":"
		                "\"$JS.%s.API\",\"deliver\":\"\"}}",
		                i ? "," : "", stream, robots[i]);
	ck_assert_int_lt(off + 3, (int)sizeof(body));
	snprintf(body + off, sizeof(body) - (size_t)off, "]}");
	snprintf(subj, sizeof(subj), "$JS.API.STREAM.CREATE.%s", name);
	fx_api_ok(hub, subj, body);
}

#endif
