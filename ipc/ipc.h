/* SPDX-License-Identifier: MIT */
/* Private library shared by shipd and libshipc: framing, buffers, id maps,
 * subject rules and the protobuf glue. Nothing here is installed. */
#ifndef SHIP_IPC_H
#define SHIP_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/sha.h>

#include "ship.pb-c.h"

#define IPC_VERSION 1          /* protocol version, in Hello */
#define IPC_FRAME_VERSION 1    /* framing version, in every frame header */
#define IPC_HDR_LEN 4
#define IPC_FRAME_LIMIT 0xffffffu /* 24-bit length field, header excluded */
/* How long libshipc waits for the answer to a call beyond the call's own
 * timeout (most have none): shipd answers every request, so this only
 * guards against a daemon that stopped answering. Whatever shipd waits
 * for before answering such a call must end well within it. */
#define IPC_REPLY_MARGIN_MS 2000

/* ---- buf.c: a byte buffer with a consumed prefix ---- */

struct ipc_buf {
	uint8_t *data;
	size_t off; /* first unconsumed byte */
	size_t len; /* end of valid data */
	size_t cap;
};

void ipc_buf_finish(struct ipc_buf *b);
static inline size_t ipc_buf_used(const struct ipc_buf *b)
{
	return b->len - b->off;
}
static inline uint8_t *ipc_buf_head(const struct ipc_buf *b)
{
	return b->data + b->off;
}
/* Make room for n more bytes at the tail; returns the tail or NULL. */
uint8_t *ipc_buf_reserve(struct ipc_buf *b, size_t n);
int ipc_buf_append(struct ipc_buf *b, const void *p, size_t n);
void ipc_buf_consume(struct ipc_buf *b, size_t n);
/* Drop everything and give back memory beyond keep bytes of capacity. */
void ipc_buf_reset(struct ipc_buf *b, size_t keep);
/* read(2) up to max bytes into the tail: >0 bytes, 0 EOF, -1 errno. */
ssize_t ipc_buf_read(struct ipc_buf *b, int fd, size_t max);
/* write(2) from the head: bytes written or -1 with errno (EAGAIN too). */
ssize_t ipc_buf_write(struct ipc_buf *b, int fd);

/* ---- frame.c: 4-byte header = version:8 | length:24, big endian ---- */

enum ipc_frame_status {
	IPC_FRAME_OK = 0,       /* a whole frame is there */
	IPC_FRAME_PARTIAL,      /* need more bytes */
	IPC_FRAME_BAD_VERSION,  /* header names another framing version */
	IPC_FRAME_TOO_BIG,      /* length over the limit */
};

/* Look at the head of buf: on IPC_FRAME_OK *body and *body_len describe
 * the message after the header; *frame_len is what to consume. */
enum ipc_frame_status ipc_frame_peek(const uint8_t *buf, size_t len,
                                     size_t max_body, const uint8_t **body,
                                     size_t *body_len, size_t *frame_len);
const char *ipc_frame_strerror(enum ipc_frame_status st);
void ipc_frame_header(uint8_t hdr[IPC_HDR_LEN], size_t body_len);
/* Append header + packed message. -1 (ENOBUFS/EMSGSIZE) if it does not
 * fit max_body or the buffer cannot grow. */
int ipc_frame_pack(struct ipc_buf *b, const ProtobufCMessage *m,
                   size_t max_body);

/* ---- fastpack.c: a Publish frame without protobuf-c's generic packer ---- */

struct ipc_header {
	const char *key;
	const char *value;
};

struct ipc_publish {
	uint64_t id;
	const char *subject;
	const char *reply; /* NULL or "" for none */
	const void *data;
	size_t len;
	const struct ipc_header *headers;
	size_t n_headers;
	bool fail_if_disconnected;
};

/* Append header + a ClientFrame{id, publish} encoded exactly as protobuf-c
 * would. -1 (EMSGSIZE/ENOMEM) as ipc_frame_pack. */
int ipc_pack_publish(struct ipc_buf *b, const struct ipc_publish *p,
                     size_t max_body);

/* A Publish without headers, seen in place: strings are not terminated. */
struct ipc_publish_view {
	uint64_t id;
	const char *subject;
	size_t subject_len;
	const char *reply;
	size_t reply_len;
	const uint8_t *data;
	size_t len;
	bool fail_if_disconnected;
};

/* True if body is a ClientFrame carrying exactly such a Publish; anything
 * else (headers, other fields, malformed) is left to protobuf-c. */
bool ipc_parse_publish(const uint8_t *body, size_t len,
                       struct ipc_publish_view *v);

/* ---- pbcheck.c: a client's protobuf bytes vetted before protobuf-c ---- */

#define IPC_PB_MAX_DEPTH 16     /* submessages within submessages */
#define IPC_PB_MAX_FIELDS 128   /* fields of one message type it can track */
#define IPC_PB_MAX_REPEATED 1024
#define IPC_PB_MAX_MESSAGES 2048

struct ipc_pb_limits {
	/* Elements of one repeated field in one message (a packed run counts
	 * its elements); also unknown fields in the whole frame. */
	size_t max_repeated;
	size_t max_messages; /* submessages in the whole frame */
};

/* 0 if data is safe to unpack as a message of desc: well-formed with each
 * known field of its declared wire type, every string valid UTF-8 without a
 * NUL (protobuf-c would cut it there), no singular field twice and no two
 * members of one oneof, and within lim (NULL: the IPC_PB_MAX_ values) and
 * IPC_PB_MAX_DEPTH. Otherwise -1 and a reason for a person naming the
 * field, in why (whylen bytes; why may be NULL). Allocates nothing. */
int ipc_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                 size_t len, const struct ipc_pb_limits *lim, char *why,
                 size_t whylen);
/* The bytes of a string as ipc_pb_check takes them: UTF-8, no NUL. */
bool ipc_pb_string_ok(const void *s, size_t len);

/* ---- arena.c: a bump allocator for protobuf unpacking ---- */

struct ipc_arena {
	uint8_t *mem;
	size_t used, cap;
	size_t spill; /* bytes of oversized blocks allocated aside */
	void **big;   /* blocks too large for mem, freed on reset */
	size_t nbig, capbig;
	ProtobufCAllocator pb;
};

void ipc_arena_init(struct ipc_arena *a);
void ipc_arena_reset(struct ipc_arena *a);
void ipc_arena_finish(struct ipc_arena *a);

/* ---- idmap.c: uint64 key -> pointer, open addressing; key 0 is unused ---- */

struct ipc_idmap {
	uint64_t *keys;
	void **vals;
	size_t cap; /* power of two or 0 */
	size_t count;
	size_t tombs;
};

void ipc_idmap_finish(struct ipc_idmap *m);
void *ipc_idmap_get(const struct ipc_idmap *m, uint64_t key);
/* -1 with ENOMEM; replaces an existing value. */
int ipc_idmap_put(struct ipc_idmap *m, uint64_t key, void *val);
void *ipc_idmap_del(struct ipc_idmap *m, uint64_t key);
/* Iterate: start *pos at 0; returns false at the end. */
bool ipc_idmap_next(const struct ipc_idmap *m, size_t *pos, uint64_t *key,
                    void **val);

/* ---- subject.c: NATS subject rules ---- */

#define IPC_SUBJECT_MAX 1024

/* A subject to publish to: tokens of printable non-space characters
 * separated by single dots, no wildcards. */
bool ipc_subject_valid(const char *s);
/* A subject to subscribe to: as above, but a token may be * and the last
 * token may be >. */
bool ipc_subject_pattern_valid(const char *s);
/* Whether s's first token is tok. */
bool ipc_first_token(const char *s, const char *tok);
/* A system subject (or pattern): JetStream's, KV's, Object Store's,
 * services' or the system account's ($JS, $KV, $O, $SRV, $SYS). */
bool ipc_subject_system(const char *s);
/* A queue group name: printable, no spaces; "" is allowed (no group). */
bool ipc_queue_valid(const char *s);
/* A service's or endpoint's name (NATS micro): 1 to IPC_SVC_NAME_MAX
 * letters, digits, _ and -. */
#define IPC_SVC_NAME_MAX 128
bool ipc_svc_name_valid(const char *s);
/* A version by Semantic Versioning 2.0.0, the regex nats.go checks
 * (1.0.0, 1.2.3-rc.1+build.5), at most IPC_SEMVER_MAX bytes. */
#define IPC_SEMVER_MAX 256
bool ipc_semver_valid(const char *s);
/* snprintf for names built from a client's input: false if it was cut,
 * since a cut name is another, valid, name (someone else's). */
bool ipc_fmt_fits(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Header key (RFC 822 field name characters) and value (no CR/LF). */
bool ipc_header_key_valid(const char *s);
bool ipc_header_value_valid(const char *s);

/* ---- code.c: status codes ---- */

const char *ipc_code_name(Ship__Code c);

/* ---- sha256.c: SHA-256 and padded base64url (Object Store digests) ---- */

#define IPC_SHA256_LEN 32
struct ipc_sha256 {
	SHA256_CTX c;
};
void ipc_sha256_init(struct ipc_sha256 *s);
void ipc_sha256_update(struct ipc_sha256 *s, const void *p, size_t n);
void ipc_sha256_final(struct ipc_sha256 *s, uint8_t out[IPC_SHA256_LEN]);
/* RFC 4648 URL-safe base64 with '=' padding, NUL-terminated; its length,
 * or 0 (out untouched) when it does not fit in size bytes. */
size_t ipc_base64url(const void *p, size_t n, char *out, size_t size);

#endif
