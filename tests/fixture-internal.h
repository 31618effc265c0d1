/* SPDX-License-Identifier: MIT */
/* What fixture.c shares with fxtopo.c, not with the tests. */
#ifndef SHIP_TEST_FIXTURE_INTERNAL_H
#define SHIP_TEST_FIXTURE_INTERNAL_H

#include <stdbool.h>
#include <sys/types.h>

/* A TCP listener on 127.0.0.1 at *(int *)arg accepts connections. */
bool fxi_tcp_up(void *arg);
/* Start argv with stdout and stderr to log; dies with the test. */
pid_t fxi_spawn(char *const argv[], const char *log);
/* $NATS_SERVER, or nats-server on PATH. */
const char *fxi_nats_server_bin(void);
/* Stop *pid with sig (SIGKILL after a while) and reap it; *pid = 0. */
void fxi_stop_pid(pid_t *pid, int sig);
void fxi_rm_rf(const char *dir);
/* A log's last lines to stderr. */
void fxi_dump_log(const char *path);

#endif
