/* SPDX-License-Identifier: MIT */
/* shipctl's shared parts: the command table and helpers for command files. */
#ifndef SHIPCTL_H
#define SHIPCTL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "shipc.h"

#define MAX_HDRS 64

/* One command; name may be two words ("kv put"). Tables end with NULL. */
struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *args;
	const char *summary;
};

extern const struct cmd kv_cmds[];    /* shipctl-kv.c */
extern const struct cmd event_cmds[]; /* shipctl-events.c */
extern const struct cmd obj_cmds[];   /* shipctl-obj.c */
extern const struct cmd store_cmds[]; /* shipctl-stores.c */
extern const struct cmd jobs_cmds[];  /* shipctl-jobs.c */
extern const struct cmd svc_cmds[];   /* shipctl-svc.c */
extern const struct cmd fleet_cmds[]; /* shipctl-fleet.c */
extern const struct cmd top_cmds[];   /* shipctl-top.c */

extern bool json;          /* --json */
extern struct shipc *h;    /* set by open_handle() */
extern volatile sig_atomic_t interrupted;

/* Print "shipctl: what: reason (shipd's message)"; returns 1. */
int fail(const char *what, int err);
/* The socket shipctl uses: -s, else $SHIP_SOCKET, else the default. */
const char *ctl_socket(void);
/* Connect to shipd (or say why not); 0 or -1. */
int open_handle(void);
void on_signal(int sig);
/* Write s (n bytes) as a JSON string. */
void json_str(FILE *f, const char *s, size_t n);
/* The fleet uplink (shipctl status, shipctl fleet status). */
const char *uplink_state_name(enum shipc_uplink_state s);
void uplink_print(FILE *f, const struct shipc_uplink *u);
void uplink_json(FILE *f, const struct shipc_uplink *u);
void print_msg(const struct shipc_msg *m, uint64_t n, bool raw);
bool parse_uint(const char *s, uint64_t *out);
/* n bytes as "812B", "10.2K" or "3.4M". */
void human_bytes(char *buf, size_t size, uint64_t n);
/* "90", "90s", "15m", "2h", "7d" or "500ms" into milliseconds. */
bool parse_duration(const char *s, uint64_t *ms);

struct msg_args {
	struct shipc_header hdrs[MAX_HDRS];
	char *hdr_store[MAX_HDRS];
	size_t n_hdrs;
	char *data;
	size_t len;
	bool data_alloc;
};

int add_header(struct msg_args *a, const char *arg);
/* shipctl req and svc call: send SUBJECT [DATA] (-H, --timeout) and
 * print the reply with print, whose result is the exit status. */
int request_cmd(int argc, char **argv, const char *name,
                int (*print)(const struct shipc_msg *reply));
/* Read all of stdin (bounded) into a->data. */
int read_stdin(struct msg_args *a);
void msg_args_finish(struct msg_args *a);

#endif
