/* SPDX-License-Identifier: MIT */
/* Unit tests of the ipc library: framing, protobuf decoding, buffers, the
 * arena, the id map and the subject rules. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc.h"

/* ---- helpers ---- */

static void make_pair(int sv[2])
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv),
	                 0);
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	ck_assert_int_ge(fl, 0);
	ck_assert_int_eq(fcntl(fd, F_SETFL, fl | O_NONBLOCK), 0);
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		ck_assert_int_gt(w, 0);
		p += w;
		n -= (size_t)w;
	}
}

/* A string of n copies of c, for length limits. */
static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);
	ck_assert_ptr_nonnull(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* The publish every decoding test sends: headers, data with a NUL, a reply. */
static const uint8_t sample_data[] = {'p', 'a', 'y', 0, 'l', 'o', 'a', 'd'};

struct sample {
	Ship__ClientFrame f;
	Ship__Publish pub;
	Ship__Msg msg;
	Ship__Header h[2];
	Ship__Header *hp[2];
};

static void sample_init(struct sample *s, uint64_t id)
{
	ship__client_frame__init(&s->f);
	ship__publish__init(&s->pub);
	ship__msg__init(&s->msg);
	ship__header__init(&s->h[0]);
	ship__header__init(&s->h[1]);
	s->h[0].key = "Content-Type";
	s->h[0].value = "application/octet-stream";
	s->h[1].key = "X-Trace";
	s->h[1].value = "abc def";
	s->hp[0] = &s->h[0];
	s->hp[1] = &s->h[1];
	s->msg.subject = "orders.eu.created";
	s->msg.reply = "_INBOX.reply.1";
	s->msg.data.data = (uint8_t *)sample_data;
	s->msg.data.len = sizeof(sample_data);
	s->msg.n_headers = 2;
	s->msg.headers = s->hp;
	s->pub.msg = &s->msg;
	s->pub.fail_if_disconnected = true;
	s->f.id = id;
	s->f.body_case = SHIP__CLIENT_FRAME__BODY_PUBLISH;
	s->f.publish = &s->pub;
}

/* Check that f is the sample sent with this id. */
static void assert_sample(const Ship__ClientFrame *f, uint64_t id)
{
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->id, id);
	ck_assert_int_eq(f->body_case, SHIP__CLIENT_FRAME__BODY_PUBLISH);
	ck_assert_ptr_nonnull(f->publish);
	ck_assert(f->publish->fail_if_disconnected);
	const Ship__Msg *m = f->publish->msg;
	ck_assert_ptr_nonnull(m);
	ck_assert_str_eq(m->subject, "orders.eu.created");
	ck_assert_str_eq(m->reply, "_INBOX.reply.1");
	ck_assert_uint_eq(m->data.len, sizeof(sample_data));
	ck_assert_mem_eq(m->data.data, sample_data, sizeof(sample_data));
	ck_assert_uint_eq(m->n_headers, 2);
	ck_assert_str_eq(m->headers[0]->key, "Content-Type");
	ck_assert_str_eq(m->headers[0]->value, "application/octet-stream");
	ck_assert_str_eq(m->headers[1]->key, "X-Trace");
	ck_assert_str_eq(m->headers[1]->value, "abc def");
}

/* ---- framing ---- */

START_TEST(test_frame_header_bytes)
{
	uint8_t h[IPC_HDR_LEN];
	ipc_frame_header(h, 0x123456);
	ck_assert_uint_eq(h[0], IPC_FRAME_VERSION);
	ck_assert_uint_eq(h[1], 0x12);
	ck_assert_uint_eq(h[2], 0x34);
	ck_assert_uint_eq(h[3], 0x56);
	ipc_frame_header(h, 0);
	ck_assert_uint_eq(h[0], IPC_FRAME_VERSION);
	ck_assert_uint_eq(h[1] | h[2] | h[3], 0);
	ipc_frame_header(h, IPC_FRAME_LIMIT);
	ck_assert_uint_eq(h[1] & h[2] & h[3], 0xff);
}
END_TEST

START_TEST(test_frame_peek_partial)
{
	uint8_t f[IPC_HDR_LEN + 3] = {0, 0, 0, 0, 'a', 'b', 'c'};
	ipc_frame_header(f, 3);
	const uint8_t *body = NULL;
	size_t blen = 99, flen = 99;
	for (size_t len = 0; len < sizeof(f); len++) {
		ck_assert_int_eq(ipc_frame_peek(f, len, 100, &body, &blen, &flen),
		                 IPC_FRAME_PARTIAL);
		/* Nothing is reported for an incomplete frame. */
		ck_assert_ptr_null(body);
		ck_assert_uint_eq(blen, 99);
		ck_assert_uint_eq(flen, 99);
	}
	ck_assert_int_eq(ipc_frame_peek(f, sizeof(f), 100, &body, &blen, &flen),
	                 IPC_FRAME_OK);
	ck_assert_ptr_eq(body, f + IPC_HDR_LEN);
	ck_assert_uint_eq(blen, 3);
	ck_assert_uint_eq(flen, sizeof(f));
}
END_TEST

/* The sample is written split at byte k, for every k: until the last byte
 * is there the reader sees a partial frame, then exactly the sample. */
START_TEST(test_frame_split_every_byte)
{
	struct sample s;
	sample_init(&s, 42);
	struct ipc_buf out = {0};
	ck_assert_int_eq(ipc_frame_pack(&out, &s.f.base, IPC_FRAME_LIMIT), 0);
	size_t total = ipc_buf_used(&out);
	const uint8_t *wire = ipc_buf_head(&out);
	ck_assert_uint_gt(total, 60);

	int sv[2];
	make_pair(sv);
	struct ipc_arena arena;
	ipc_arena_init(&arena);
	struct ipc_buf in = {0};
	ck_assert_ptr_nonnull(ipc_buf_reserve(&in, 4096));
	for (size_t k = 0; k <= total; k++) {
		const uint8_t *body;
		size_t blen, flen;
		ipc_buf_reset(&in, 4096);
		write_all(sv[0], wire, k);
		for (int i = 0; i < 100 && ipc_buf_used(&in) < k; i++)
			ck_assert_int_gt(ipc_buf_read(&in, sv[1], 4096), 0);
		ck_assert_uint_eq(ipc_buf_used(&in), k);
		enum ipc_frame_status st =
			ipc_frame_peek(ipc_buf_head(&in), ipc_buf_used(&in),
		                       IPC_FRAME_LIMIT, &body, &blen, &flen);
		ck_assert_int_eq(st, k == total ? IPC_FRAME_OK : IPC_FRAME_PARTIAL);

		write_all(sv[0], wire + k, total - k);
		for (int i = 0; i < 100 && st == IPC_FRAME_PARTIAL; i++) {
			ck_assert_int_gt(ipc_buf_read(&in, sv[1], 4096), 0);
			st = ipc_frame_peek(ipc_buf_head(&in), ipc_buf_used(&in),
			                    IPC_FRAME_LIMIT, &body, &blen, &flen);
		}
		ck_assert_int_eq(st, IPC_FRAME_OK);
		ck_assert_uint_eq(flen, total);
		ck_assert_uint_eq(blen, total - IPC_HDR_LEN);
		ck_assert_uint_eq(ipc_buf_used(&in), total);

		Ship__ClientFrame *f =
			ship__client_frame__unpack(&arena.pb, blen, body);
		assert_sample(f, 42);
		ipc_arena_reset(&arena);
		ipc_buf_consume(&in, flen);
		ck_assert_uint_eq(ipc_buf_used(&in), 0);
	}
	ipc_arena_finish(&arena);
	ipc_buf_finish(&in);
	ipc_buf_finish(&out);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* The reader takes one byte at a time: partial until the very last one. */
START_TEST(test_frame_byte_by_byte_reads)
{
	struct sample s;
	sample_init(&s, 7);
	struct ipc_buf out = {0}, in = {0};
	ck_assert_int_eq(ipc_frame_pack(&out, &s.f.base, IPC_FRAME_LIMIT), 0);
	size_t total = ipc_buf_used(&out);
	int sv[2];
	make_pair(sv);
	write_all(sv[0], ipc_buf_head(&out), total);
	const uint8_t *body = NULL;
	size_t blen = 0, flen = 0;
	for (size_t i = 1; i <= total; i++) {
		ck_assert_int_eq(ipc_buf_read(&in, sv[1], 1), 1);
		ck_assert_int_eq(ipc_frame_peek(ipc_buf_head(&in), ipc_buf_used(&in),
		                                IPC_FRAME_LIMIT, &body, &blen,
		                                &flen),
		                 i == total ? IPC_FRAME_OK : IPC_FRAME_PARTIAL);
	}
	Ship__ClientFrame *f = ship__client_frame__unpack(NULL, blen, body);
	assert_sample(f, 7);
	ship__client_frame__free_unpacked(f, NULL);
	ipc_buf_finish(&in);
	ipc_buf_finish(&out);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_frame_pipelined)
{
	struct ipc_buf b = {0};
	Ship__ClientFrame hello = SHIP__CLIENT_FRAME__INIT;
	Ship__Hello h = SHIP__HELLO__INIT;
	h.version = IPC_VERSION;
	h.name = "unit";
	hello.id = 1;
	hello.body_case = SHIP__CLIENT_FRAME__BODY_HELLO;
	hello.hello = &h;
	struct sample s;
	sample_init(&s, 2);
	Ship__ClientFrame status = SHIP__CLIENT_FRAME__INIT;
	Ship__StatusRequest sr = SHIP__STATUS_REQUEST__INIT;
	status.id = 3;
	status.body_case = SHIP__CLIENT_FRAME__BODY_STATUS;
	status.status = &sr;
	ck_assert_int_eq(ipc_frame_pack(&b, &hello.base, IPC_FRAME_LIMIT), 0);
	ck_assert_int_eq(ipc_frame_pack(&b, &s.f.base, IPC_FRAME_LIMIT), 0);
	ck_assert_int_eq(ipc_frame_pack(&b, &status.base, IPC_FRAME_LIMIT), 0);
	/* And half of a fourth one. */
	ck_assert_int_eq(ipc_frame_pack(&b, &hello.base, IPC_FRAME_LIMIT), 0);
	size_t fourth = protobuf_c_message_get_packed_size(&hello.base);
	b.len -= fourth / 2;

	struct ipc_arena arena;
	ipc_arena_init(&arena);
	const uint8_t *body;
	size_t blen, flen;
	for (uint64_t id = 1; id <= 3; id++) {
		ck_assert_int_eq(ipc_frame_peek(ipc_buf_head(&b), ipc_buf_used(&b),
		                                IPC_FRAME_LIMIT, &body, &blen,
		                                &flen),
		                 IPC_FRAME_OK);
		Ship__ClientFrame *f =
			ship__client_frame__unpack(&arena.pb, blen, body);
		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(f->id, id);
		if (id == 1) {
			ck_assert_int_eq(f->body_case, SHIP__CLIENT_FRAME__BODY_HELLO);
			ck_assert_uint_eq(f->hello->version, IPC_VERSION);
			ck_assert_str_eq(f->hello->name, "unit");
		} else if (id == 2) {
			assert_sample(f, 2);
		} else {
			ck_assert_int_eq(f->body_case, SHIP__CLIENT_FRAME__BODY_STATUS);
		}
		ipc_arena_reset(&arena);
		ipc_buf_consume(&b, flen);
	}
	ck_assert_uint_eq(ipc_buf_used(&b), IPC_HDR_LEN + fourth - fourth / 2);
	ck_assert_int_eq(ipc_frame_peek(ipc_buf_head(&b), ipc_buf_used(&b),
	                                IPC_FRAME_LIMIT, &body, &blen, &flen),
	                 IPC_FRAME_PARTIAL);
	ipc_arena_finish(&arena);
	ipc_buf_finish(&b);
}
END_TEST

/* A body of exactly max_body bytes is taken, one more byte is refused as
 * soon as the header is there: the body is never waited for. */
START_TEST(test_frame_max_size)
{
	static const size_t limits[] = {0, 1, 4096, 65535, 65536,
	                                IPC_FRAME_LIMIT - 1};
	const uint8_t *body;
	size_t blen, flen;
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		size_t max = limits[i];
		uint8_t h[IPC_HDR_LEN];
		ipc_frame_header(h, max + 1);
		ck_assert_int_eq(ipc_frame_peek(h, sizeof(h), max, &body, &blen,
		                                &flen),
		                 IPC_FRAME_TOO_BIG);
		ipc_frame_header(h, max);
		ck_assert_int_eq(ipc_frame_peek(h, sizeof(h), max, &body, &blen,
		                                &flen),
		                 max == 0 ? IPC_FRAME_OK : IPC_FRAME_PARTIAL);
	}

	/* The whole 24-bit range, with a real buffer. */
	size_t max = IPC_FRAME_LIMIT;
	uint8_t *big = calloc(1, IPC_HDR_LEN + max);
	ck_assert_ptr_nonnull(big);
	ipc_frame_header(big, max);
	ck_assert_int_eq(ipc_frame_peek(big, IPC_HDR_LEN + max, max, &body,
	                                &blen, &flen),
	                 IPC_FRAME_OK);
	ck_assert_uint_eq(blen, max);
	ck_assert_uint_eq(flen, IPC_HDR_LEN + max);
	ck_assert_int_eq(ipc_frame_peek(big, IPC_HDR_LEN + max, max - 1, &body,
	                                &blen, &flen),
	                 IPC_FRAME_TOO_BIG);
	free(big);
}
END_TEST

/* Over a socket: only the header of an oversized frame is read, and the
 * reader's buffer never grows toward the announced length. */
START_TEST(test_frame_too_big_before_allocation)
{
	int sv[2];
	make_pair(sv);
	uint8_t h[IPC_HDR_LEN];
	size_t max = 65536;
	ipc_frame_header(h, max + 1);
	write_all(sv[0], h, sizeof(h));
	struct ipc_buf in = {0};
	ck_assert_int_eq(ipc_buf_read(&in, sv[1], 4096), IPC_HDR_LEN);
	const uint8_t *body;
	size_t blen, flen;
	ck_assert_int_eq(ipc_frame_peek(ipc_buf_head(&in), ipc_buf_used(&in), max,
	                                &body, &blen, &flen),
	                 IPC_FRAME_TOO_BIG);
	ck_assert_uint_le(in.cap, 4096);
	ipc_buf_finish(&in);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* ipc_frame_pack against max_body and the 24-bit limit. */
START_TEST(test_frame_pack_limits)
{
	struct sample s;
	sample_init(&s, 9);
	size_t n = protobuf_c_message_get_packed_size(&s.f.base);
	struct ipc_buf b = {0};
	ck_assert_int_eq(ipc_frame_pack(&b, &s.f.base, n), 0);
	ck_assert_uint_eq(ipc_buf_used(&b), IPC_HDR_LEN + n);
	errno = 0;
	ck_assert_int_eq(ipc_frame_pack(&b, &s.f.base, n - 1), -1);
	ck_assert_int_eq(errno, EMSGSIZE);
	ck_assert_uint_eq(ipc_buf_used(&b), IPC_HDR_LEN + n);

	/* A body of exactly IPC_FRAME_LIMIT bytes: grow the data until the
	 * packed size hits it (the varint lengths are stable around 16 MiB). */
	size_t d = IPC_FRAME_LIMIT - n;
	uint8_t *data = calloc(1, IPC_FRAME_LIMIT + 1);
	ck_assert_ptr_nonnull(data);
	for (size_t i = 0; i < IPC_FRAME_LIMIT + 1; i += 4096)
		data[i] = (uint8_t)(i >> 12);
	s.msg.data.data = data;
	for (int i = 0; i < 8; i++) {
		s.msg.data.len = d;
		n = protobuf_c_message_get_packed_size(&s.f.base);
		if (n == IPC_FRAME_LIMIT)
			break;
		d = d + IPC_FRAME_LIMIT - n;
	}
	ck_assert_uint_eq(n, IPC_FRAME_LIMIT);
	ipc_buf_reset(&b, 0);
	ck_assert_int_eq(ipc_frame_pack(&b, &s.f.base, IPC_FRAME_LIMIT), 0);
	ck_assert_uint_eq(ipc_buf_used(&b), IPC_HDR_LEN + IPC_FRAME_LIMIT);
	const uint8_t *head = ipc_buf_head(&b);
	ck_assert_uint_eq(head[0], IPC_FRAME_VERSION);
	ck_assert_uint_eq(head[1] & head[2] & head[3], 0xff);

	const uint8_t *body;
	size_t blen, flen;
	ck_assert_int_eq(ipc_frame_peek(head, ipc_buf_used(&b), IPC_FRAME_LIMIT,
	                                &body, &blen, &flen),
	                 IPC_FRAME_OK);
	struct ipc_arena arena;
	ipc_arena_init(&arena);
	Ship__ClientFrame *f = ship__client_frame__unpack(&arena.pb, blen, body);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->publish->msg->data.len, d);
	ck_assert_mem_eq(f->publish->msg->data.data, data, d);
	ipc_arena_finish(&arena);

	/* One more byte does not fit the header, whatever max_body says. */
	s.msg.data.len = d + 1;
	ipc_buf_reset(&b, 0);
	errno = 0;
	ck_assert_int_eq(ipc_frame_pack(&b, &s.f.base, SIZE_MAX), -1);
	ck_assert_int_eq(errno, EMSGSIZE);
	ck_assert_uint_eq(ipc_buf_used(&b), 0);
	free(data);
	ipc_buf_finish(&b);
}
END_TEST

START_TEST(test_frame_bad_version)
{
	const uint8_t *body;
	size_t blen, flen;
	for (unsigned v = 0; v < 256; v++) {
		uint8_t h[IPC_HDR_LEN] = {(uint8_t)v, 0, 0, 0};
		if (v == IPC_FRAME_VERSION)
			continue;
		/* Refused at the first byte, and with the whole header. */
		ck_assert_int_eq(ipc_frame_peek(h, 1, IPC_FRAME_LIMIT, &body,
		                                &blen, &flen),
		                 IPC_FRAME_BAD_VERSION);
		ck_assert_int_eq(ipc_frame_peek(h, sizeof(h), IPC_FRAME_LIMIT,
		                                &body, &blen, &flen),
		                 IPC_FRAME_BAD_VERSION);
	}
}
END_TEST

START_TEST(test_frame_garbage)
{
	static const char *const junk[] = {
		"GET / HTTP/1.1\r\n",
		"\x16\x03\x01\x02\x00", /* a TLS ClientHello */
		"{\"hello\":1}",
		"\x00\x00\x00\x05hello",
	};
	const uint8_t *body;
	size_t blen, flen;
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		const uint8_t *p = (const uint8_t *)junk[i];
		size_t len = i == 3 ? 9 : strlen(junk[i]);
		ck_assert_int_eq(ipc_frame_peek(p, len, IPC_FRAME_LIMIT, &body,
		                                &blen, &flen),
		                 IPC_FRAME_BAD_VERSION);
		ck_assert_int_eq(ipc_frame_peek(p, 1, IPC_FRAME_LIMIT, &body,
		                                &blen, &flen),
		                 IPC_FRAME_BAD_VERSION);
	}
}
END_TEST

START_TEST(test_frame_empty_body)
{
	/* An all-default message packs to nothing: a bare header. */
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	struct ipc_buf b = {0};
	ck_assert_int_eq(ipc_frame_pack(&b, &f.base, 0), 0);
	ck_assert_uint_eq(ipc_buf_used(&b), IPC_HDR_LEN);
	static const uint8_t want[IPC_HDR_LEN] = {IPC_FRAME_VERSION, 0, 0, 0};
	ck_assert_mem_eq(ipc_buf_head(&b), want, IPC_HDR_LEN);

	const uint8_t *body = NULL;
	size_t blen = 99, flen = 99;
	ck_assert_int_eq(ipc_frame_peek(ipc_buf_head(&b), ipc_buf_used(&b), 0,
	                                &body, &blen, &flen),
	                 IPC_FRAME_OK);
	ck_assert_uint_eq(blen, 0);
	ck_assert_uint_eq(flen, IPC_HDR_LEN);
	ck_assert_ptr_eq(body, ipc_buf_head(&b) + IPC_HDR_LEN);
	Ship__ClientFrame *u = ship__client_frame__unpack(NULL, blen, body);
	ck_assert_ptr_nonnull(u);
	ck_assert_uint_eq(u->id, 0);
	ck_assert_int_eq(u->body_case, SHIP__CLIENT_FRAME__BODY__NOT_SET);
	ship__client_frame__free_unpacked(u, NULL);
	ipc_buf_finish(&b);
}
END_TEST

START_TEST(test_frame_strerror)
{
	const char *s[4] = {
		ipc_frame_strerror(IPC_FRAME_OK),
		ipc_frame_strerror(IPC_FRAME_PARTIAL),
		ipc_frame_strerror(IPC_FRAME_BAD_VERSION),
		ipc_frame_strerror(IPC_FRAME_TOO_BIG),
	};
	for (int i = 0; i < 4; i++) {
		ck_assert_ptr_nonnull(s[i]);
		ck_assert_uint_gt(strlen(s[i]), 1);
		for (int j = 0; j < i; j++)
			ck_assert_str_ne(s[i], s[j]);
	}
}
END_TEST

/* ---- protobuf decoding ---- */

/* Every cut inside the Publish field fails; the one cut after the id (a
 * field boundary) is a valid, shorter frame. */
START_TEST(test_pb_truncated)
{
	struct sample s;
	sample_init(&s, 5);
	size_t n = protobuf_c_message_get_packed_size(&s.f.base);
	uint8_t *wire = malloc(n);
	ck_assert_ptr_nonnull(wire);
	ck_assert_uint_eq(protobuf_c_message_pack(&s.f.base, wire), n);
	/* Field 1 (id) varint 5, then field 3 (publish) length-delimited. */
	ck_assert_uint_eq(wire[0], 0x08);
	ck_assert_uint_eq(wire[1], 0x05);
	ck_assert_uint_eq(wire[2], 0x1a);

	struct ipc_arena arena;
	ipc_arena_init(&arena);
	for (size_t k = 1; k < n; k++) {
		Ship__ClientFrame *f =
			ship__client_frame__unpack(&arena.pb, k, wire);
		if (k == 2) {
			ck_assert_ptr_nonnull(f);
			ck_assert_uint_eq(f->id, 5);
			ck_assert_int_eq(f->body_case,
			                 SHIP__CLIENT_FRAME__BODY__NOT_SET);
		} else {
			ck_assert_msg(f == NULL, "prefix of %zu/%zu bytes decoded",
			              k, n);
		}
		ipc_arena_reset(&arena);
	}
	Ship__ClientFrame *f = ship__client_frame__unpack(&arena.pb, n, wire);
	assert_sample(f, 5);
	/* The message lives in the arena, not on the heap. */
	ck_assert_ptr_nonnull(arena.mem);
	ck_assert((const uint8_t *)f >= arena.mem &&
	          (const uint8_t *)f < arena.mem + arena.cap);
	ipc_arena_finish(&arena);
	free(wire);
}
END_TEST

START_TEST(test_pb_garbage)
{
	static const struct {
		const char *what;
		uint8_t b[16];
		size_t len;
	} cases[] = {
		{"wire type 7", {0x0f, 0x00}, 2},
		{"wire type 6", {0x0e, 0x00}, 2},
		{"field number 0", {0x00, 0x01}, 2},
		{"varint of 11 bytes",
		 {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		  0x01},
		 12},
		{"varint cut", {0x08, 0x80}, 2},
		{"length past the end", {0x1a, 0x7f, 0x00}, 3},
		{"huge length", {0x1a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00}, 7},
		{"submessage with bad inside", {0x1a, 0x02, 0x0f, 0x00}, 4},
		{"fixed32 cut", {0x0d, 0x01, 0x02}, 3},
		{"fixed64 cut", {0x09, 0x01, 0x02, 0x03, 0x04}, 5},
		{"id as a string", {0x0a, 0x01, 0x41}, 3},
	};
	struct ipc_arena arena;
	ipc_arena_init(&arena);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		Ship__ClientFrame *f = ship__client_frame__unpack(
			&arena.pb, cases[i].len, cases[i].b);
		ck_assert_msg(f == NULL, "%s decoded", cases[i].what);
		ipc_arena_reset(&arena);
	}
	static const char http[] = "GET / HTTP/1.1\r\n";
	ck_assert_ptr_null(ship__client_frame__unpack(
		&arena.pb, sizeof(http) - 1, (const uint8_t *)http));
	ipc_arena_reset(&arena);
	ck_assert_ptr_null(ship__server_frame__unpack(
		&arena.pb, sizeof(http) - 1, (const uint8_t *)http));
	ipc_arena_finish(&arena);
}
END_TEST

/* Fields this build does not know (a newer peer) are skipped. */
START_TEST(test_pb_unknown_fields)
{
	static const uint8_t wire[] = {
		0x08, 0x07,             /* id = 7 */
		0xc0, 0x07, 0x2a,       /* field 120, varint 42 */
		0xca, 0x07, 0x03, 'a', 'b', 'c', /* field 121, bytes "abc" */
		0xd5, 0x07, 1, 2, 3, 4, /* field 122, fixed32 */
		0xd9, 0x07, 1, 2, 3, 4, 5, 6, 7, 8, /* field 123, fixed64 */
		0x3a, 0x00,             /* field 7: status {} */
		0xba, 0x0c, 0x00,       /* field 199 (unassigned), empty */
	};
	struct ipc_arena arena;
	ipc_arena_init(&arena);
	Ship__ClientFrame *f =
		ship__client_frame__unpack(&arena.pb, sizeof(wire), wire);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(f->id, 7);
	ck_assert_int_eq(f->body_case, SHIP__CLIENT_FRAME__BODY_STATUS);
	ck_assert_ptr_nonnull(f->status);
	ck_assert_uint_eq(f->base.n_unknown_fields, 5);
	ipc_arena_finish(&arena);
}
END_TEST

/* ---- ipc_buf ---- */

START_TEST(test_buf_append_consume)
{
	struct ipc_buf b = {0};
	ck_assert_uint_eq(ipc_buf_used(&b), 0);
	ck_assert_int_eq(ipc_buf_append(&b, "hello", 5), 0);
	ck_assert_int_eq(ipc_buf_append(&b, NULL, 0), 0);
	ck_assert_int_eq(ipc_buf_append(&b, " world", 6), 0);
	ck_assert_uint_eq(ipc_buf_used(&b), 11);
	ck_assert_mem_eq(ipc_buf_head(&b), "hello world", 11);
	ipc_buf_consume(&b, 6);
	ck_assert_uint_eq(ipc_buf_used(&b), 5);
	ck_assert_mem_eq(ipc_buf_head(&b), "world", 5);
	ipc_buf_consume(&b, 5);
	ck_assert_uint_eq(ipc_buf_used(&b), 0);
	/* Emptied: the next append starts at the front again. */
	ck_assert_uint_eq(b.off, 0);
	ck_assert_int_eq(ipc_buf_append(&b, "x", 1), 0);
	ck_assert_ptr_eq(ipc_buf_head(&b), b.data);
	ipc_buf_finish(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.cap, 0);
}
END_TEST

START_TEST(test_buf_reserve)
{
	struct ipc_buf b = {0};
	uint8_t *t = ipc_buf_reserve(&b, 100);
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_ge(b.cap, 100);
	memcpy(t, "abcd", 4);
	b.len += 4;
	ck_assert_mem_eq(ipc_buf_head(&b), "abcd", 4);

	/* Fill to capacity, consume a prefix: reserving what the prefix freed
	 * slides the data down instead of growing. */
	size_t cap = b.cap;
	uint8_t *fill = malloc(cap);
	ck_assert_ptr_nonnull(fill);
	for (size_t i = 0; i < cap; i++)
		fill[i] = (uint8_t)(i * 7);
	ipc_buf_reset(&b, cap);
	ck_assert_int_eq(ipc_buf_append(&b, fill, cap), 0);
	ck_assert_uint_eq(b.cap, cap);
	uint8_t *data = b.data;
	ipc_buf_consume(&b, 1000);
	t = ipc_buf_reserve(&b, 1000);
	ck_assert_ptr_eq(b.data, data);
	ck_assert_uint_eq(b.cap, cap);
	ck_assert_uint_eq(b.off, 0);
	ck_assert_ptr_eq(t, b.data + cap - 1000);
	ck_assert_mem_eq(ipc_buf_head(&b), fill + 1000, cap - 1000);

	/* One byte more than fits: it grows and keeps the data. */
	t = ipc_buf_reserve(&b, 1001);
	ck_assert_ptr_nonnull(t);
	ck_assert_uint_ge(b.cap - b.len, 1001);
	ck_assert_mem_eq(ipc_buf_head(&b), fill + 1000, cap - 1000);

	/* Absurd sizes fail cleanly and leave the buffer as it was. */
	size_t used = ipc_buf_used(&b);
	errno = 0;
	ck_assert_ptr_null(ipc_buf_reserve(&b, SIZE_MAX));
	ck_assert_int_eq(errno, ENOMEM);
	ck_assert_int_eq(ipc_buf_append(&b, fill, SIZE_MAX / 2), -1);
	ck_assert_uint_eq(ipc_buf_used(&b), used);
	ck_assert_mem_eq(ipc_buf_head(&b), fill + 1000, cap - 1000);
	free(fill);
	ipc_buf_finish(&b);
}
END_TEST

START_TEST(test_buf_grow)
{
	struct ipc_buf b = {0};
	uint8_t chunk[1000];
	for (int i = 0; i < 100; i++) {
		memset(chunk, i, sizeof(chunk));
		ck_assert_int_eq(ipc_buf_append(&b, chunk, sizeof(chunk)), 0);
		if (i % 3 == 0)
			ipc_buf_consume(&b, 10);
	}
	size_t consumed = 34 * 10;
	ck_assert_uint_eq(ipc_buf_used(&b), 100 * 1000 - consumed);
	ck_assert_uint_ge(b.cap, ipc_buf_used(&b));
	/* Byte j of the stream came from chunk j / 1000. */
	const uint8_t *h = ipc_buf_head(&b);
	for (size_t j = consumed; j < 100 * 1000; j += 333)
		ck_assert_uint_eq(h[j - consumed], (j / 1000) & 0xff);
	ipc_buf_finish(&b);
}
END_TEST

START_TEST(test_buf_reset)
{
	struct ipc_buf b = {0};
	ck_assert_int_eq(ipc_buf_append(&b, "abc", 3), 0);
	size_t cap = b.cap;
	uint8_t *data = b.data;
	/* Within keep: the memory stays. */
	ipc_buf_reset(&b, cap);
	ck_assert_uint_eq(ipc_buf_used(&b), 0);
	ck_assert_ptr_eq(b.data, data);
	ck_assert_uint_eq(b.cap, cap);
	/* Beyond keep: it goes. */
	ck_assert_int_eq(ipc_buf_append(&b, "abc", 3), 0);
	ipc_buf_reset(&b, cap - 1);
	ck_assert_uint_eq(ipc_buf_used(&b), 0);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.cap, 0);
	/* And the buffer is usable again. */
	ck_assert_int_eq(ipc_buf_append(&b, "z", 1), 0);
	ck_assert_mem_eq(ipc_buf_head(&b), "z", 1);
	ipc_buf_finish(&b);
}
END_TEST

START_TEST(test_buf_socket_io)
{
	int sv[2];
	make_pair(sv);
	set_nonblock(sv[0]);
	set_nonblock(sv[1]);
	enum { TOTAL = 1 << 20 };
	struct ipc_buf out = {0}, in = {0};
	uint8_t *src = malloc(TOTAL);
	ck_assert_ptr_nonnull(src);
	for (size_t i = 0; i < TOTAL; i++)
		src[i] = (uint8_t)(i * 31 + (i >> 8));
	ck_assert_int_eq(ipc_buf_append(&out, src, TOTAL), 0);

	/* Nothing to read yet. */
	errno = 0;
	ck_assert_int_eq(ipc_buf_read(&in, sv[1], 4096), -1);
	ck_assert_int_eq(errno, EAGAIN);

	/* A megabyte does not fit the socket: write until EAGAIN, with the
	 * unsent rest kept in the buffer. */
	bool saw_eagain = false;
	for (int i = 0; i < 1000 && !saw_eagain; i++) {
		ssize_t w = ipc_buf_write(&out, sv[0]);
		if (w < 0) {
			ck_assert_int_eq(errno, EAGAIN);
			saw_eagain = true;
		} else {
			ck_assert_int_gt(w, 0);
		}
	}
	ck_assert(saw_eagain);
	ck_assert_uint_gt(ipc_buf_used(&out), 0);
	ck_assert_uint_lt(ipc_buf_used(&out), TOTAL);

	/* Then pump both ways until all is across. */
	for (int i = 0; i < 100000 && ipc_buf_used(&in) < TOTAL; i++) {
		if (ipc_buf_used(&out) > 0) {
			ssize_t w = ipc_buf_write(&out, sv[0]);
			if (w < 0)
				ck_assert_int_eq(errno, EAGAIN);
		}
		ssize_t r = ipc_buf_read(&in, sv[1], 65536);
		if (r < 0)
			ck_assert_int_eq(errno, EAGAIN);
		else
			ck_assert_int_gt(r, 0);
	}
	ck_assert_uint_eq(ipc_buf_used(&out), 0);
	ck_assert_uint_eq(ipc_buf_used(&in), TOTAL);
	ck_assert_mem_eq(ipc_buf_head(&in), src, TOTAL);

	/* EOF reads as 0; writing to a closed peer is EPIPE, no SIGPIPE. */
	close(sv[0]);
	ck_assert_int_eq(ipc_buf_read(&in, sv[1], 4096), 0);
	ck_assert_int_eq(ipc_buf_append(&out, "x", 1), 0);
	close(sv[1]);
	make_pair(sv);
	close(sv[1]);
	errno = 0;
	ck_assert_int_eq(ipc_buf_write(&out, sv[0]), -1);
	ck_assert_int_eq(errno, EPIPE);
	ck_assert_uint_eq(ipc_buf_used(&out), 1);
	close(sv[0]);
	free(src);
	ipc_buf_finish(&in);
	ipc_buf_finish(&out);
}
END_TEST

/* ---- ipc_arena ---- */

START_TEST(test_arena_allocations)
{
	struct ipc_arena a;
	ipc_arena_init(&a);
	ck_assert_ptr_null(a.mem);
	enum { N = 2000 };
	uint8_t *p[N];
	size_t sz[N];
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < N; i++) {
			/* Mostly small, some 20000 bytes (over the 16 KiB block). */
			sz[i] = i % 97 == 5 ? 20000 : 1 + (i * 37) % 200;
			p[i] = a.pb.alloc(a.pb.allocator_data, sz[i]);
			ck_assert_ptr_nonnull(p[i]);
			ck_assert_uint_eq((uintptr_t)p[i] % 16, 0);
			memset(p[i], (int)(i & 0xff), sz[i]);
		}
		/* No block overlaps another. */
		for (size_t i = 0; i < N; i++)
			for (size_t j = 0; j < sz[i]; j += 19)
				ck_assert_uint_eq(p[i][j], i & 0xff);
		ck_assert_ptr_nonnull(a.mem);
		ck_assert_uint_le(a.used, a.cap);
		ck_assert_uint_gt(a.nbig, 20);
		ck_assert_uint_ge(a.spill, 20 * 20000);
		a.pb.free(a.pb.allocator_data, p[0]);
		uint8_t *mem = a.mem;
		ipc_arena_reset(&a);
		ck_assert_uint_eq(a.used, 0);
		ck_assert_uint_eq(a.nbig, 0);
		ck_assert_uint_eq(a.spill, 0);
		/* The block is kept for the next frame. */
		ck_assert_ptr_eq(a.mem, mem);
		ck_assert_ptr_eq(a.pb.alloc(a.pb.allocator_data, 8), mem);
		ipc_arena_reset(&a);
	}
	ipc_arena_finish(&a);
	ck_assert_ptr_null(a.mem);
	ck_assert_ptr_null(a.big);
	ck_assert_uint_eq(a.nbig, 0);
	/* Still usable after finish. */
	void *q = a.pb.alloc(a.pb.allocator_data, 1);
	ck_assert_ptr_nonnull(q);
	ipc_arena_finish(&a);
}
END_TEST

START_TEST(test_arena_big_first)
{
	struct ipc_arena a;
	ipc_arena_init(&a);
	/* A first block over 16 KiB goes aside; the arena block comes later. */
	uint8_t *big = a.pb.alloc(a.pb.allocator_data, 16385);
	ck_assert_ptr_nonnull(big);
	memset(big, 0xaa, 16385);
	ck_assert_ptr_null(a.mem);
	ck_assert_uint_eq(a.nbig, 1);
	uint8_t *small = a.pb.alloc(a.pb.allocator_data, 16384);
	ck_assert_ptr_eq(small, a.mem);
	ck_assert_uint_eq(a.used, 16384);
	/* The block is full now: the next one goes aside too. */
	uint8_t *more = a.pb.alloc(a.pb.allocator_data, 1);
	ck_assert_ptr_nonnull(more);
	ck_assert_uint_eq(a.nbig, 2);
	ipc_arena_finish(&a);
}
END_TEST

/* Unpacking a message with more than 16 KiB of data through the arena. */
START_TEST(test_arena_unpack_big)
{
	struct sample s;
	sample_init(&s, 11);
	enum { LEN = 50000 };
	uint8_t *data = malloc(LEN);
	ck_assert_ptr_nonnull(data);
	for (size_t i = 0; i < LEN; i++)
		data[i] = (uint8_t)(i ^ (i >> 7));
	s.msg.data.data = data;
	s.msg.data.len = LEN;
	struct ipc_buf b = {0};
	ck_assert_int_eq(ipc_frame_pack(&b, &s.f.base, IPC_FRAME_LIMIT), 0);
	struct ipc_arena arena;
	ipc_arena_init(&arena);
	for (int i = 0; i < 3; i++) {
		Ship__ClientFrame *f = ship__client_frame__unpack(
			&arena.pb, ipc_buf_used(&b) - IPC_HDR_LEN,
			ipc_buf_head(&b) + IPC_HDR_LEN);
		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(f->publish->msg->data.len, LEN);
		ck_assert_mem_eq(f->publish->msg->data.data, data, LEN);
		ck_assert_uint_ge(arena.spill, LEN);
		ipc_arena_reset(&arena);
	}
	ipc_arena_finish(&arena);
	ipc_buf_finish(&b);
	free(data);
}
END_TEST

/* ---- ipc_idmap ---- */

/* The counters agree with the slots: live keys, and tombstones (~0). */
static void assert_idmap_consistent(const struct ipc_idmap *m)
{
	size_t live = 0, tombs = 0;
	for (size_t i = 0; i < m->cap; i++) {
		if (m->keys[i] == UINT64_MAX)
			tombs++;
		else if (m->keys[i] != 0)
			live++;
	}
	ck_assert_uint_eq(m->count, live);
	ck_assert_uint_eq(m->tombs, tombs);
	ck_assert_uint_lt(live + tombs, m->cap);
}

START_TEST(test_idmap_basic)
{
	struct ipc_idmap m = {0};
	int a, b, c;
	ck_assert_ptr_null(ipc_idmap_get(&m, 1));
	ck_assert_ptr_null(ipc_idmap_del(&m, 1));
	ck_assert_int_eq(ipc_idmap_put(&m, 1, &a), 0);
	ck_assert_int_eq(ipc_idmap_put(&m, 2, &b), 0);
	ck_assert_uint_eq(m.count, 2);
	ck_assert_ptr_eq(ipc_idmap_get(&m, 1), &a);
	ck_assert_ptr_eq(ipc_idmap_get(&m, 2), &b);
	ck_assert_ptr_null(ipc_idmap_get(&m, 3));
	/* Replace. */
	ck_assert_int_eq(ipc_idmap_put(&m, 1, &c), 0);
	ck_assert_uint_eq(m.count, 2);
	ck_assert_ptr_eq(ipc_idmap_get(&m, 1), &c);
	ck_assert_ptr_eq(ipc_idmap_del(&m, 1), &c);
	ck_assert_ptr_null(ipc_idmap_get(&m, 1));
	ck_assert_ptr_null(ipc_idmap_del(&m, 1));
	ck_assert_uint_eq(m.count, 1);
	ck_assert_ptr_eq(ipc_idmap_get(&m, 2), &b);
	/* A NULL value is stored like any other. */
	ck_assert_int_eq(ipc_idmap_put(&m, 9, NULL), 0);
	ck_assert_uint_eq(m.count, 2);
	assert_idmap_consistent(&m);
	/* Putting a deleted key back takes a tombstone. */
	size_t tombs = m.tombs;
	ck_assert_ptr_null(ipc_idmap_del(&m, 9));
	ck_assert_uint_eq(m.tombs, tombs + 1);
	ck_assert_int_eq(ipc_idmap_put(&m, 9, &a), 0);
	ck_assert_uint_eq(m.tombs, tombs);
	ck_assert_ptr_eq(ipc_idmap_get(&m, 9), &a);
	assert_idmap_consistent(&m);
	ipc_idmap_finish(&m);
	ck_assert_uint_eq(m.count, 0);
	ck_assert_ptr_null(ipc_idmap_get(&m, 2));
}
END_TEST

START_TEST(test_idmap_reserved_keys)
{
	struct ipc_idmap m = {0};
	int a;
	errno = 0;
	ck_assert_int_eq(ipc_idmap_put(&m, 0, &a), -1);
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_int_eq(ipc_idmap_put(&m, UINT64_MAX, &a), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(m.count, 0);
	ck_assert_int_eq(ipc_idmap_put(&m, UINT64_MAX - 1, &a), 0);
	ck_assert_ptr_eq(ipc_idmap_get(&m, UINT64_MAX - 1), &a);
	/* After a delete there is a tombstone: it must not answer as a key. */
	ck_assert_int_eq(ipc_idmap_put(&m, 5, &a), 0);
	ck_assert_ptr_eq(ipc_idmap_del(&m, 5), &a);
	ck_assert_ptr_null(ipc_idmap_get(&m, 0));
	ck_assert_ptr_null(ipc_idmap_get(&m, UINT64_MAX));
	ck_assert_ptr_null(ipc_idmap_del(&m, 0));
	ck_assert_ptr_null(ipc_idmap_del(&m, UINT64_MAX));
	ck_assert_uint_eq(m.count, 1);
	ipc_idmap_finish(&m);
}
END_TEST

/* Key i of the big test: spread over the whole range, never 0 or ~0. */
static uint64_t big_key(size_t i)
{
	return i % 2 ? (uint64_t)i + 1 : (uint64_t)i * 0x9e3779b97f4a7c15ULL | 1;
}

START_TEST(test_idmap_many)
{
	enum { N = 10000 };
	struct ipc_idmap m = {0};
	static int vals[N];
	static bool live[N];
	static unsigned seen[N];
	memset(live, 0, sizeof(live));
	size_t nlive = 0;
	for (size_t i = 0; i < N; i++) {
		ck_assert_int_eq(ipc_idmap_put(&m, big_key(i), &vals[i]), 0);
		live[i] = true;
		nlive++;
		/* Delete an older key now and then, leaving tombstones. */
		if (i % 3 == 2) {
			size_t j = i / 2;
			ck_assert_ptr_eq(ipc_idmap_del(&m, big_key(j)),
			                 live[j] ? &vals[j] : NULL);
			if (live[j])
				nlive--;
			live[j] = false;
		}
		/* And bring some back. */
		if (i % 7 == 6 && !live[i / 4]) {
			ck_assert_int_eq(ipc_idmap_put(&m, big_key(i / 4),
			                               &vals[i / 4]),
			                 0);
			live[i / 4] = true;
			nlive++;
		}
	}
	ck_assert_uint_eq(m.count, nlive);
	assert_idmap_consistent(&m);
	ck_assert_uint_lt(nlive, N);
	ck_assert_uint_gt(nlive, N / 2);
	for (size_t i = 0; i < N; i++)
		ck_assert_ptr_eq(ipc_idmap_get(&m, big_key(i)),
		                 live[i] ? &vals[i] : NULL);

	/* Iteration: each live key once, with its value. */
	memset(seen, 0, sizeof(seen));
	size_t pos = 0, visits = 0;
	uint64_t key;
	void *val;
	while (visits <= N && ipc_idmap_next(&m, &pos, &key, &val)) {
		ck_assert_ptr_nonnull(val);
		size_t i = (size_t)((int *)val - vals);
		ck_assert_uint_lt(i, N);
		ck_assert_uint_eq(key, big_key(i));
		seen[i]++;
		visits++;
	}
	ck_assert_uint_eq(visits, nlive);
	for (size_t i = 0; i < N; i++)
		ck_assert_uint_eq(seen[i], live[i] ? 1 : 0);

	/* NULL key/val pointers are allowed while iterating. */
	pos = 0;
	visits = 0;
	while (visits <= N && ipc_idmap_next(&m, &pos, NULL, NULL))
		visits++;
	ck_assert_uint_eq(visits, nlive);

	/* Delete everything: the map is empty but still works. */
	for (size_t i = 0; i < N; i++)
		if (live[i])
			ck_assert_ptr_eq(ipc_idmap_del(&m, big_key(i)), &vals[i]);
	ck_assert_uint_eq(m.count, 0);
	assert_idmap_consistent(&m);
	pos = 0;
	ck_assert(!ipc_idmap_next(&m, &pos, &key, &val));
	ck_assert_int_eq(ipc_idmap_put(&m, 12345, &vals[0]), 0);
	ck_assert_ptr_eq(ipc_idmap_get(&m, 12345), &vals[0]);
	ipc_idmap_finish(&m);
}
END_TEST

/* Put and delete churn with few live keys: tombstones are cleaned up by
 * rehashing, so the table neither grows without end nor fills up. */
START_TEST(test_idmap_churn)
{
	struct ipc_idmap m = {0};
	int v[4];
	for (uint64_t k = 1; k <= 100000; k++) {
		ck_assert_int_eq(ipc_idmap_put(&m, k, &v[k % 4]), 0);
		if (k > 3)
			ck_assert_ptr_eq(ipc_idmap_del(&m, k - 3),
			                 &v[(k - 3) % 4]);
	}
	ck_assert_uint_eq(m.count, 3);
	ck_assert_uint_le(m.cap, 16);
	assert_idmap_consistent(&m);
	for (uint64_t k = 1; k <= 100000; k++)
		ck_assert_ptr_eq(ipc_idmap_get(&m, k),
		                 k > 99997 ? &v[k % 4] : NULL);
	ipc_idmap_finish(&m);
}
END_TEST

/* ---- subject rules ---- */

START_TEST(test_subject_valid)
{
	static const char *const good[] = {
		"foo", "foo.bar", "a.b.c.d.e", "$JS.API.INFO", "_INBOX.abc123",
		"foo*.bar", "f>o", "a>", "*a", "orders-eu_1", "caf\xc3\xa9.\xe2\x82\xac",
		"~!@#%^&()[]{}|/\\", "a.b",
	};
	static const char *const bad[] = {
		"", ".", "..", "foo.", ".foo", "foo..bar", "*", ">", "foo.*",
		"foo.>", "*.foo", ">.foo", "a.*.b", "foo bar", "foo\tbar",
		"foo\r", "foo\n", "foo\rbar", "\nfoo", "foo\x7f", "foo\x01",
		" foo", "foo ",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(ipc_subject_valid(good[i]), "refused '%s'", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!ipc_subject_valid(bad[i]), "took '%s'", bad[i]);
	ck_assert(!ipc_subject_valid(NULL));
}
END_TEST

START_TEST(test_subject_pattern_valid)
{
	static const char *const good[] = {
		"foo", "*", ">", "foo.*", "foo.>", "*.foo", "a.*.c", "*.*.>",
		"foo*", "foo*.bar", "*.*", "a.b.c.>", "a>", ">a.b",
	};
	static const char *const bad[] = {
		"", ".", "a.>.b", ">.a", "foo.", ".foo", "foo..bar", "foo *",
		"foo.* ", "*.\t", "a.>.>", "foo.\n", ">.", ".>",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(ipc_subject_pattern_valid(good[i]), "refused '%s'",
		              good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!ipc_subject_pattern_valid(bad[i]), "took '%s'",
		              bad[i]);
	ck_assert(!ipc_subject_pattern_valid(NULL));
}
END_TEST

START_TEST(test_subject_length)
{
	char *s = repeat('a', IPC_SUBJECT_MAX + 1);
	ck_assert(!ipc_subject_valid(s));
	ck_assert(!ipc_subject_pattern_valid(s));
	s[IPC_SUBJECT_MAX] = '\0';
	ck_assert(ipc_subject_valid(s));
	ck_assert(ipc_subject_pattern_valid(s));
	/* "a.a. ... .a.>", 1023 bytes: a wildcard as the very last token. */
	for (size_t i = 0; i < IPC_SUBJECT_MAX - 2; i++)
		s[i] = i % 2 ? '.' : 'a';
	s[IPC_SUBJECT_MAX - 2] = '>';
	s[IPC_SUBJECT_MAX - 1] = '\0';
	ck_assert_uint_eq(strlen(s), IPC_SUBJECT_MAX - 1);
	ck_assert(ipc_subject_pattern_valid(s));
	ck_assert(!ipc_subject_valid(s));
	s[IPC_SUBJECT_MAX - 2] = 'a';
	ck_assert(ipc_subject_valid(s));
	free(s);
}
END_TEST

START_TEST(test_queue_valid)
{
	ck_assert(ipc_queue_valid(""));
	ck_assert(ipc_queue_valid("workers"));
	ck_assert(ipc_queue_valid("q.1-eu"));
	ck_assert(!ipc_queue_valid(NULL));
	ck_assert(!ipc_queue_valid("a b"));
	ck_assert(!ipc_queue_valid("a\tb"));
	ck_assert(!ipc_queue_valid("a\n"));
	ck_assert(!ipc_queue_valid("a\x7f"));
	char *s = repeat('q', 257);
	ck_assert(!ipc_queue_valid(s));
	s[256] = '\0';
	ck_assert(ipc_queue_valid(s));
	free(s);
}
END_TEST

/* Service names and versions as nats.go checks them (ADR-32). */
START_TEST(test_svc_names)
{
	ck_assert(ipc_svc_name_valid("kanban"));
	ck_assert(ipc_svc_name_valid("a-b_C9"));
	ck_assert(!ipc_svc_name_valid(NULL));
	ck_assert(!ipc_svc_name_valid(""));
	ck_assert(!ipc_svc_name_valid("a.b"));
	ck_assert(!ipc_svc_name_valid("a b"));
	ck_assert(!ipc_svc_name_valid("caf\xc3\xa9"));
	char *s = repeat('n', IPC_SVC_NAME_MAX + 1);
	ck_assert(!ipc_svc_name_valid(s));
	s[IPC_SVC_NAME_MAX] = '\0';
	ck_assert(ipc_svc_name_valid(s));
	free(s);

	static const char *const good[] = {
		"0.0.0", "1.0.0", "10.20.30", "1.1.2-prerelease+meta",
		"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-0.3.7", "1.0.0-x.7.z.92",
		"1.0.0-alpha+001", "1.0.0+20130313144700", "1.0.0-rc.1+build.1",
		"1.0.0-alpha-a.b-c", "1.0.0+0.build.1-rc.10000aaa-kk-0.1",
		"1.2.3----RC-SNAPSHOT.12.9.1--.12+788", "1.0.0-0A.is.legal",
	};
	static const char *const bad[] = {
		"", "1", "1.2", "1.2.3.4", "01.1.1", "1.01.1", "1.1.01",
		"1.2.3-0123", "1.2.3-0123.0123", "1.2.3-", "1.2.3+", "1.2.3-a..b",
		"+invalid", "-invalid", "alpha", "1.2.3-beta!", "1.2.3 ", " 1.2.3",
		"1.2.3+meta+meta", "v1.2.3", "1.2-SNAPSHOT",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(ipc_semver_valid(good[i]), "%s refused", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!ipc_semver_valid(bad[i]), "'%s' taken", bad[i]);
	ck_assert(!ipc_semver_valid(NULL));
}
END_TEST

START_TEST(test_header_key_valid)
{
	ck_assert(ipc_header_key_valid("Content-Type"));
	ck_assert(ipc_header_key_valid("X-Ship_id.1"));
	ck_assert(ipc_header_key_valid("Nats-Msg-Id"));
	ck_assert(!ipc_header_key_valid(NULL));
	ck_assert(!ipc_header_key_valid(""));
	ck_assert(!ipc_header_key_valid("a:b"));
	ck_assert(!ipc_header_key_valid("key:"));
	ck_assert(!ipc_header_key_valid("a b"));
	ck_assert(!ipc_header_key_valid(" a"));
	ck_assert(!ipc_header_key_valid("a\tb"));
	ck_assert(!ipc_header_key_valid("a\r\n"));
	ck_assert(!ipc_header_key_valid("a\x7f"));
	ck_assert(!ipc_header_key_valid("k\xc3\xa9"));
	char *s = repeat('k', 257);
	ck_assert(!ipc_header_key_valid(s));
	s[256] = '\0';
	ck_assert(ipc_header_key_valid(s));
	free(s);
}
END_TEST

START_TEST(test_header_value_valid)
{
	ck_assert(ipc_header_value_valid(""));
	ck_assert(ipc_header_value_valid("text/plain; charset=utf-8"));
	ck_assert(ipc_header_value_valid("a: b\tc \xc3\xa9"));
	ck_assert(!ipc_header_value_valid(NULL));
	ck_assert(!ipc_header_value_valid("a\rb"));
	ck_assert(!ipc_header_value_valid("a\nb"));
	ck_assert(!ipc_header_value_valid("v\r\nX-Injected: 1"));
	char *s = repeat('v', 4097);
	ck_assert(!ipc_header_value_valid(s));
	s[4096] = '\0';
	ck_assert(ipc_header_value_valid(s));
	free(s);
}
END_TEST

START_TEST(test_code_names)
{
	/* Every code has its own name; unknown ones share a fallback. */
	const char *unknown = ipc_code_name((Ship__Code)1000);
	ck_assert_str_eq(unknown, "unknown status");
	ck_assert_str_eq(ipc_code_name(SHIP__CODE__OK), "ok");
	const char *names[SHIP__CODE__UNIMPLEMENTED + 1];
	for (int c = 0; c <= SHIP__CODE__UNIMPLEMENTED; c++) {
		names[c] = ipc_code_name((Ship__Code)c);
		ck_assert_str_ne(names[c], unknown);
		for (int d = 0; d < c; d++)
			ck_assert_str_ne(names[c], names[d]);
	}
}
END_TEST

static Suite *ipc_suite(void)
{
	Suite *s = suite_create("ipc");
	TCase *t = tcase_create("frame");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, test_frame_header_bytes);
	tcase_add_test(t, test_frame_peek_partial);
	tcase_add_test(t, test_frame_split_every_byte);
	tcase_add_test(t, test_frame_byte_by_byte_reads);
	tcase_add_test(t, test_frame_pipelined);
	tcase_add_test(t, test_frame_max_size);
	tcase_add_test(t, test_frame_too_big_before_allocation);
	tcase_add_test(t, test_frame_pack_limits);
	tcase_add_test(t, test_frame_bad_version);
	tcase_add_test(t, test_frame_garbage);
	tcase_add_test(t, test_frame_empty_body);
	tcase_add_test(t, test_frame_strerror);
	suite_add_tcase(s, t);

	t = tcase_create("protobuf");
	tcase_add_test(t, test_pb_truncated);
	tcase_add_test(t, test_pb_garbage);
	tcase_add_test(t, test_pb_unknown_fields);
	suite_add_tcase(s, t);

	t = tcase_create("buf");
	tcase_set_timeout(t, 30);
	tcase_add_test(t, test_buf_append_consume);
	tcase_add_test(t, test_buf_reserve);
	tcase_add_test(t, test_buf_grow);
	tcase_add_test(t, test_buf_reset);
	tcase_add_test(t, test_buf_socket_io);
	suite_add_tcase(s, t);

	t = tcase_create("arena");
	tcase_add_test(t, test_arena_allocations);
	tcase_add_test(t, test_arena_big_first);
	tcase_add_test(t, test_arena_unpack_big);
	suite_add_tcase(s, t);

	t = tcase_create("idmap");
	tcase_set_timeout(t, 30);
	tcase_add_test(t, test_idmap_basic);
	tcase_add_test(t, test_idmap_reserved_keys);
	tcase_add_test(t, test_idmap_many);
	tcase_add_test(t, test_idmap_churn);
	suite_add_tcase(s, t);

	t = tcase_create("subject");
	tcase_add_test(t, test_subject_valid);
	tcase_add_test(t, test_subject_pattern_valid);
	tcase_add_test(t, test_subject_length);
	tcase_add_test(t, test_queue_valid);
	tcase_add_test(t, test_svc_names);
	tcase_add_test(t, test_header_key_valid);
	tcase_add_test(t, test_header_value_valid);
	tcase_add_test(t, test_code_names);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ipc_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
