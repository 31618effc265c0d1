/* SPDX-License-Identifier: MIT */
/* A raw protocol client for tests: frames written and read by hand, so a
 * test can do what libshipc never would (close mid-request, pipeline odd
 * sequences, send hostile frames). */
#ifndef SHIP_TEST_RAW_H
#define SHIP_TEST_RAW_H

#include <stdbool.h>
#include <stddef.h>

#include "ipc.h"

/* Connect to shipd's socket (5 s receive timeout); aborts the test on
 * failure. */
int raw_connect(const char *sock);
/* Connect and say hello (protocol version), reading the answer. */
int raw_open(const char *sock);
void raw_send(int fd, const void *p, size_t n);
void raw_hello(int fd, unsigned version);
/* Append one client frame to b (to send several in one write). */
void raw_pack(struct ipc_buf *b, const Ship__ClientFrame *f);
void raw_frame(int fd, const Ship__ClientFrame *f);
/* Read one server frame; NULL on EOF or timeout. Free with
 * ship__server_frame__free_unpacked(f, NULL). */
Ship__ServerFrame *raw_read(int fd);
/* Read frames until the one answering id (pushes skipped); NULL on EOF. */
Ship__ServerFrame *raw_reply(int fd, uint64_t id);
/* True if shipd closed the connection. */
bool raw_closed(int fd);

#endif
