/* SPDX-License-Identifier: MIT */
/* Hand-written encoding of the hottest frame, a Publish, byte for byte what
 * protobuf-c would write (tests compare the two), without its per-field
 * descriptor walks. */
#include <errno.h>
#include <string.h>

#include "ipc.h"

static size_t varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Size of a length-delimited field (tag byte, length, body). */
static size_t ld_len(size_t body)
{
	return 1 + varint_len(body) + body;
}

static uint8_t *put_ld(uint8_t *p, uint8_t tag, const void *body, size_t n)
{
	*p++ = tag;
	p = put_varint(p, n);
	if (n)
		memcpy(p, body, n);
	return p + n;
}

int ipc_pack_publish(struct ipc_buf *b, const struct ipc_publish *pb,
                     size_t max_body)
{
	size_t subj = strlen(pb->subject);
	size_t reply = pb->reply ? strlen(pb->reply) : 0;
	size_t msg = ld_len(subj);
	if (reply)
		msg += ld_len(reply);
	if (pb->len)
		msg += ld_len(pb->len);
	for (size_t i = 0; i < pb->n_headers; i++) {
		size_t k = strlen(pb->headers[i].key);
		size_t v = strlen(pb->headers[i].value);
		size_t h = (k ? ld_len(k) : 0) + (v ? ld_len(v) : 0);
		msg += ld_len(h);
	}
	size_t publish = ld_len(msg) + (pb->fail_if_disconnected ? 2 : 0);
	size_t frame = (pb->id ? 1 + varint_len(pb->id) : 0) + ld_len(publish);
	if (frame > max_body || frame > IPC_FRAME_LIMIT) {
		errno = EMSGSIZE;
		return -1;
	}
	uint8_t *p = ipc_buf_reserve(b, IPC_HDR_LEN + frame);
	if (!p)
		return -1;
	ipc_frame_header(p, frame);
	p += IPC_HDR_LEN;
	if (pb->id) {
		*p++ = 0x08; /* ClientFrame.id = 1, varint */
		p = put_varint(p, pb->id);
	}
	*p++ = 0x1a; /* ClientFrame.publish = 3 */
	p = put_varint(p, publish);
	*p++ = 0x0a; /* Publish.msg = 1 */
	p = put_varint(p, msg);
	p = put_ld(p, 0x0a, pb->subject, subj); /* Msg.subject = 1 */
	if (reply)
		p = put_ld(p, 0x12, pb->reply, reply); /* Msg.reply = 2 */
	if (pb->len)
		p = put_ld(p, 0x1a, pb->data, pb->len); /* Msg.data = 3 */
	for (size_t i = 0; i < pb->n_headers; i++) {
		size_t k = strlen(pb->headers[i].key);
		size_t v = strlen(pb->headers[i].value);
		*p++ = 0x22; /* Msg.headers = 4 */
		p = put_varint(p, (k ? ld_len(k) : 0) + (v ? ld_len(v) : 0));
		if (k)
			p = put_ld(p, 0x0a, pb->headers[i].key, k);
		if (v)
			p = put_ld(p, 0x12, pb->headers[i].value, v);
	}
	if (pb->fail_if_disconnected) {
		*p++ = 0x10; /* Publish.fail_if_disconnected = 2 */
		*p++ = 1;
	}
	b->len += IPC_HDR_LEN + frame;
	return 0;
}

static const uint8_t *get_varint(const uint8_t *p, const uint8_t *end,
                                 uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned shift = 0; p < end && shift < 64; shift += 7) {
		uint8_t c = *p++;
		r |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*v = r;
			return p;
		}
	}
	return NULL;
}

/* A length-delimited field's body; NULL if it runs past end or its length
 * takes more than the 5 bytes protobuf-c reads. */
static const uint8_t *get_ld(const uint8_t *p, const uint8_t *end,
                             const uint8_t **body, size_t *n)
{
	const uint8_t *start = p;
	uint64_t len;
	p = get_varint(p, end, &len);
	if (!p || p - start > 5 || len > (uint64_t)(end - p))
		return NULL;
	*body = p;
	*n = (size_t)len;
	return p + len;
}

/* Anything the slow path would refuse (a field twice, a string with a NUL
 * or not UTF-8, which protobuf-c would cut) is left to it, to say why. */
static bool parse_msg(const uint8_t *p, const uint8_t *end,
                      struct ipc_publish_view *v)
{
	unsigned seen = 0;
	while (p < end) {
		uint8_t tag = *p++;
		const uint8_t *body;
		size_t n;
		if (tag != 0x0a && tag != 0x12 && tag != 0x1a)
			return false; /* headers or anything else: slow path */
		if (seen & 1u << (tag >> 3) || !(p = get_ld(p, end, &body, &n)))
			return false;
		seen |= 1u << (tag >> 3);
		if (tag != 0x1a && !ipc_pb_string_ok(body, n))
			return false;
		if (tag == 0x0a) {
			v->subject = (const char *)body;
			v->subject_len = n;
		} else if (tag == 0x12) {
			v->reply = (const char *)body;
			v->reply_len = n;
		} else {
			v->data = body;
			v->len = n;
		}
	}
	return true;
}

bool ipc_parse_publish(const uint8_t *p, size_t n, struct ipc_publish_view *v)
{
	const uint8_t *end = p + n, *body, *mbody = NULL;
	size_t blen, mlen = 0;
	*v = (struct ipc_publish_view){0};
	bool seen_id = false, seen_publish = false, seen_fail = false;
	while (p < end) {
		uint8_t tag = *p++;
		if (tag == 0x08 && !seen_id) {
			seen_id = true;
			if (!(p = get_varint(p, end, &v->id)))
				return false;
		} else if (tag == 0x1a && !seen_publish) {
			if (!(p = get_ld(p, end, &body, &blen)))
				return false;
			seen_publish = true;
			const uint8_t *q = body, *qend = body + blen;
			while (q < qend) {
				uint8_t t = *q++;
				if (t == 0x0a && !mbody) {
					if (!(q = get_ld(q, qend, &mbody, &mlen)))
						return false;
				} else if (t == 0x10 && !seen_fail) {
					uint64_t f;
					seen_fail = true;
					if (!(q = get_varint(q, qend, &f)))
						return false;
					v->fail_if_disconnected = f != 0;
				} else {
					return false;
				}
			}
		} else {
			return false;
		}
	}
	return seen_publish && mbody && parse_msg(mbody, mbody + mlen, v);
}
