/* SPDX-License-Identifier: MIT */
/* ipc_pb_check: what a hostile client could make protobuf-c truncate or
 * balloon is refused before unpacking, and nothing else is. */
#include <check.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"

/* ---- helpers ---- */

static const struct ipc_pb_limits limits = {1024, 4096};

static Ship__Header header(const char *key, const char *value)
{
	Ship__Header h = SHIP__HEADER__INIT;
	h.key = (char *)key;
	h.value = (char *)value;
	return h;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *p = malloc(*len ? *len : 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(protobuf_c_message_pack(m, p), *len);
	return p;
}

static int check(const uint8_t *p, size_t n, const struct ipc_pb_limits *lim,
                 char *why, size_t whylen)
{
	return ipc_pb_check(&ship__client_frame__descriptor, p, n, lim, why,
	                    whylen);
}

static bool unpacks(const uint8_t *p, size_t n)
{
	Ship__ClientFrame *f = ship__client_frame__unpack(NULL, n, p);
	ship__client_frame__free_unpacked(f, NULL);
	return f != NULL;
}

static void assert_passes(const uint8_t *p, size_t n)
{
	char why[128] = "unset";
	ck_assert_msg(check(p, n, &limits, why, sizeof(why)) == 0, "%s", why);
	ck_assert_str_eq(why, "");
	ck_assert(unpacks(p, n));
}

static void assert_refused(const uint8_t *p, size_t n,
                           const struct ipc_pb_limits *lim, const char *reason)
{
	char why[128] = "";
	ck_assert_int_eq(check(p, n, lim, why, sizeof(why)), -1);
	ck_assert_str_eq(why, reason);
}

/* Set the byte at offset off of the first copy of needle in p to c. */
static void patch(uint8_t *p, size_t n, const char *needle, size_t off,
                  uint8_t c)
{
	uint8_t *at = memmem(p, n, needle, strlen(needle));
	ck_assert_ptr_nonnull(at);
	at[off] = c;
}

/* Hand encoding, for what protobuf-c would never write. */
static void put_varint(struct ipc_buf *b, uint64_t v)
{
	uint8_t tmp[10];
	size_t n = 0;
	for (; v >= 0x80; v >>= 7)
		tmp[n++] = (uint8_t)(v | 0x80);
	tmp[n++] = (uint8_t)v;
	ck_assert_int_eq(ipc_buf_append(b, tmp, n), 0);
}

static void put_tag(struct ipc_buf *b, uint32_t field, unsigned wire)
{
	put_varint(b, (uint64_t)field << 3 | wire);
}

static void put_ld(struct ipc_buf *b, uint32_t field, const void *p, size_t n)
{
	put_tag(b, field, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
	put_varint(b, n);
	if (n)
		ck_assert_int_eq(ipc_buf_append(b, p, n), 0);
}

/* A ClientFrame holding body as field `field` (a oneof member). */
static void put_frame(struct ipc_buf *out, uint32_t field,
                      const struct ipc_buf *body)
{
	put_ld(out, field, body->data, body->len);
}

/* ClientFrame{hello{name = s}}, s as raw bytes. */
static void hello_name(struct ipc_buf *out, const void *s, size_t n)
{
	struct ipc_buf h = {0};
	put_ld(&h, 2, s, n);
	put_frame(out, 2, &h);
	ipc_buf_finish(&h);
}

/* A Publish ClientFrame with n copies of header h. */
static uint8_t *publish(const char *subject, const char *reply,
                        const Ship__Header *h, size_t n, size_t *len)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Publish pb = SHIP__PUBLISH__INIT;
	Ship__Msg m = SHIP__MSG__INIT;
	Ship__Header **hp = calloc(n ? n : 1, sizeof(*hp));
	ck_assert_ptr_nonnull(hp);
	for (size_t i = 0; i < n; i++)
		hp[i] = (Ship__Header *)h;
	m.subject = (char *)subject;
	m.reply = (char *)reply;
	m.data.data = (uint8_t *)"d\0ta";
	m.data.len = 4;
	m.headers = hp;
	m.n_headers = n;
	pb.msg = &m;
	f.id = 9;
	f.body_case = SHIP__CLIENT_FRAME__BODY_PUBLISH;
	f.publish = &pb;
	uint8_t *p = pack(&f.base, len);
	free(hp);
	return p;
}

static uint8_t *ack(const uint64_t *tokens, size_t n, size_t *len)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__EventAck a = SHIP__EVENT_ACK__INIT;
	a.stream = 4;
	a.tokens = (uint64_t *)tokens;
	a.n_tokens = n;
	f.id = 5;
	f.body_case = SHIP__CLIENT_FRAME__BODY_EVENT_ACK;
	f.event_ack = &a;
	return pack(&f.base, len);
}

static uint8_t *kv_write(const char *key, size_t *len)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__KvWrite w = SHIP__KV_WRITE__INIT;
	w.bucket = "b";
	w.key = (char *)key;
	w.value.data = (uint8_t *)"\0\xff\xfe";
	w.value.len = 3; /* bytes, not a string: anything goes */
	f.id = 3;
	f.body_case = SHIP__CLIENT_FRAME__BODY_KV_WRITE;
	f.kv_write = &w;
	return pack(&f.base, len);
}

/* ---- frames that must pass ---- */

START_TEST(valid_frames_pass)
{
	Ship__Header hd = header("X-Key", "valeur \xc3\xa9");
	uint8_t *p;
	size_t n;

	p = publish("caf\xc3\xa9.\xe2\x82\xac", "_INBOX.r", &hd, 3, &n);
	assert_passes(p, n);
	free(p);
	p = kv_write("a/b=c", &n);
	assert_passes(p, n);
	free(p);
	static const uint64_t tokens[] = {1, 300, UINT64_MAX};
	p = ack(tokens, 3, &n);
	assert_passes(p, n);
	free(p);

	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__StreamDeclare sd = SHIP__STREAM_DECLARE__INIT;
	char *subjects[] = {"a.>", "b.*", "c"};
	sd.name = "S";
	sd.subjects = subjects;
	sd.n_subjects = 3;
	f.body_case = SHIP__CLIENT_FRAME__BODY_STREAM_DECLARE;
	f.stream_declare = &sd;
	p = pack(&f.base, &n);
	assert_passes(p, n);
	free(p);

	Ship__EventSubscribe es = SHIP__EVENT_SUBSCRIBE__INIT;
	uint32_t backoff[] = {100, 2000, 70000};
	es.backoff_ms = backoff;
	es.n_backoff_ms = 3;
	es.max_deliver = 5;
	f.body_case = SHIP__CLIENT_FRAME__BODY_EVENT_SUBSCRIBE;
	f.event_subscribe = &es;
	p = pack(&f.base, &n);
	assert_passes(p, n);
	free(p);

	Ship__KvBucketCreate kc = SHIP__KV_BUCKET_CREATE__INIT;
	Ship__KvBucketConfig cfg = SHIP__KV_BUCKET_CONFIG__INIT;
	cfg.bucket = "b";
	cfg.max_value_size = -1;
	kc.config = &cfg;
	f.body_case = SHIP__CLIENT_FRAME__BODY_KV_BUCKET_CREATE;
	f.kv_bucket_create = &kc;
	p = pack(&f.base, &n);
	assert_passes(p, n);
	free(p);

	/* Nothing at all is a ClientFrame with every field unset. */
	assert_passes((const uint8_t *)"", 0);
	ck_assert_int_eq(check(NULL, 0, NULL, NULL, 0), 0);
}
END_TEST

START_TEST(unknown_fields_pass)
{
	static const uint8_t wire[] = {
		0x08, 0x07,             /* id = 7 */
		0xc0, 0x07, 0x2a,       /* field 120, varint 42 */
		0xca, 0x07, 0x03, 'a', 0, 'c', /* field 121, bytes */
		0xd5, 0x07, 1, 2, 3, 4, /* field 122, fixed32 */
		0xd9, 0x07, 1, 2, 3, 4, 5, 6, 7, 8, /* field 123, fixed64 */
		0x3a, 0x00,             /* field 7: status {} */
		0xba, 0x0c, 0x00,       /* field 199 (unassigned), empty */
	};
	assert_passes(wire, sizeof(wire));
}
END_TEST

/* ---- NUL and UTF-8 ---- */

START_TEST(nul_in_string_refused)
{
	Ship__Header hd = header("KeyX", "ValX");
	size_t n;
	uint8_t *p = kv_write("aXevil", &n);
	patch(p, n, "aXevil", 1, 0);
	assert_refused(p, n, &limits, "field 'key' holds a NUL byte");
	free(p);

	/* At the start, in the middle and at the end of each string. */
	const char *where[] = {"okXx", "Xok", "okX"};
	for (size_t i = 0; i < 3; i++) {
		const char *x = strchr(where[i], 'X');
		p = publish(where[i], "r", NULL, 0, &n);
		patch(p, n, where[i], (size_t)(x - where[i]), 0);
		assert_refused(p, n, &limits, "field 'subject' holds a NUL byte");
		free(p);
		p = publish("s", where[i], NULL, 0, &n);
		patch(p, n, where[i], (size_t)(x - where[i]), 0);
		assert_refused(p, n, &limits, "field 'reply' holds a NUL byte");
		free(p);
	}
	p = publish("s", "", &hd, 2, &n);
	patch(p, n, "KeyX", 3, 0);
	assert_refused(p, n, &limits, "field 'key' holds a NUL byte");
	free(p);
	p = publish("s", "", &hd, 2, &n);
	patch(p, n, "ValX", 3, 0);
	assert_refused(p, n, &limits, "field 'value' holds a NUL byte");
	free(p);

	struct ipc_buf b = {0};
	hello_name(&b, "\0", 1);
	assert_refused(b.data, b.len, &limits, "field 'name' holds a NUL byte");
	ipc_buf_finish(&b);
}
END_TEST

START_TEST(bad_utf8_refused)
{
	static const char *bad[] = {
		"\x80",             /* a continuation byte alone */
		"\xbf",
		"\xc0\x80",         /* overlong NUL */
		"\xc1\xbf",         /* overlong U+007F */
		"\xe0\x80\x80",     /* overlong */
		"\xe0\x9f\xbf",     /* overlong U+07FF */
		"\xed\xa0\x80",     /* U+D800, a surrogate */
		"\xed\xbf\xbf",     /* U+DFFF */
		"\xf0\x80\x80\x80", /* overlong */
		"\xf0\x8f\xbf\xbf", /* overlong U+FFFF */
		"\xf4\x90\x80\x80", /* U+110000 */
		"\xf5\x80\x80\x80",
		"\xf8\x88\x80\x80\x80", /* 5 bytes */
		"\xff",
		"\xfe",
		"\xe2\x82",         /* cut short */
		"a\xc3",
		"\xf0\x9d\x84",
		"\xe2\x28\xa1",     /* second byte not a continuation */
		"\xe2\x82\x28",     /* third byte not a continuation */
		"ok \xc3\xa9\xc3",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ipc_buf b = {0};
		hello_name(&b, bad[i], strlen(bad[i]));
		assert_refused(b.data, b.len, &limits,
		               "field 'name' is not valid UTF-8");
		ck_assert(!ipc_pb_string_ok(bad[i], strlen(bad[i])));
		ipc_buf_finish(&b);
	}
}
END_TEST

START_TEST(multibyte_utf8_passes)
{
	static const char *good[] = {
		"\xc2\x80",         /* U+0080 */
		"\xdf\xbf",         /* U+07FF */
		"\xe0\xa0\x80",     /* U+0800 */
		"\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
		"\xee\x80\x80",     /* U+E000, just above */
		"\xef\xbf\xbf",     /* U+FFFF */
		"\xf0\x90\x80\x80", /* U+10000 */
		"\xf4\x8f\xbf\xbf", /* U+10FFFF */
		/* naïve ☃ 𝄞 */
		"na\xc3\xafve \xe2\x98\x83 \xf0\x9d\x84\x9e",
		"",
		"\x7f",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct ipc_buf b = {0};
		hello_name(&b, good[i], strlen(good[i]));
		assert_passes(b.data, b.len);
		ck_assert(ipc_pb_string_ok(good[i], strlen(good[i])));
		ipc_buf_finish(&b);
	}
	ck_assert(ipc_pb_string_ok(NULL, 0));
	ck_assert(!ipc_pb_string_ok("a\0b", 3));
}
END_TEST

/* ---- counts ---- */

START_TEST(many_headers_refused)
{
	Ship__Header empty = SHIP__HEADER__INIT;
	size_t n;
	uint8_t *p = publish("s", "", &empty, 2000, &n);
	assert_refused(p, n, &limits,
	               "field 'headers' has more than 1024 elements");
	free(p);
	p = publish("s", "", &empty, 1025, &n);
	assert_refused(p, n, &limits,
	               "field 'headers' has more than 1024 elements");
	free(p);
	p = publish("s", "", &empty, 1024, &n);
	assert_passes(p, n);
	/* publish, msg and 1024 headers: 1026 submessages. */
	struct ipc_pb_limits few = {1024, 1025};
	assert_refused(p, n, &few, "more than 1025 messages");
	few.max_messages = 1026;
	ck_assert_int_eq(check(p, n, &few, NULL, 0), 0);
	free(p);
}
END_TEST

START_TEST(many_tokens_refused)
{
	static uint64_t tokens[1025];
	for (size_t i = 0; i < 1025; i++)
		tokens[i] = i * 1000;
	size_t n;
	uint8_t *p = ack(tokens, 1025, &n); /* one packed run */
	assert_refused(p, n, &limits,
	               "field 'tokens' has more than 1024 elements");
	free(p);
	p = ack(tokens, 1024, &n);
	assert_passes(p, n);
	free(p);

	/* One record per token and a packed run, mixed (legal): all count. */
	struct ipc_buf a = {0}, b = {0}, f = {0};
	for (size_t i = 0; i < 1000; i++) {
		put_tag(&a, 2, PROTOBUF_C_WIRE_TYPE_VARINT);
		put_varint(&a, i);
	}
	uint8_t run[600];
	memset(run, 7, sizeof(run));
	put_ld(&a, 2, run, 24);
	put_frame(&f, 44, &a);
	assert_passes(f.data, f.len);
	ipc_buf_reset(&f, 0);
	put_tag(&a, 2, PROTOBUF_C_WIRE_TYPE_VARINT);
	put_varint(&a, 1);
	put_frame(&f, 44, &a);
	assert_refused(f.data, f.len, &limits,
	               "field 'tokens' has more than 1024 elements");
	/* Or several packed runs. */
	ipc_buf_reset(&f, 0);
	put_ld(&b, 2, run, sizeof(run));
	put_ld(&b, 2, run, sizeof(run));
	put_frame(&f, 44, &b);
	assert_refused(f.data, f.len, &limits,
	               "field 'tokens' has more than 1024 elements");
	ipc_buf_finish(&a);
	ipc_buf_finish(&b);
	ipc_buf_finish(&f);
}
END_TEST

START_TEST(empty_packed_runs_refused)
{
	/* Each holds no element but costs protobuf-c a record. */
	struct ipc_buf a = {0}, f = {0};
	for (size_t i = 0; i < 1025; i++)
		put_ld(&a, 2, NULL, 0);
	put_frame(&f, 44, &a);
	assert_refused(f.data, f.len, &limits,
	               "field 'tokens' has more than 1024 elements");
	ipc_buf_finish(&a);
	ipc_buf_finish(&f);
}
END_TEST

START_TEST(bad_packed_refused)
{
	struct ipc_buf a = {0}, f = {0};
	put_ld(&a, 2, "\x01\x80", 2); /* the second varint never ends */
	put_frame(&f, 44, &a);
	assert_refused(f.data, f.len, &limits,
	               "field 'tokens' holds a malformed packed array");
	ck_assert(!unpacks(f.data, f.len));
	ipc_buf_finish(&a);
	ipc_buf_finish(&f);
}
END_TEST

START_TEST(unknown_fields_counted)
{
	struct ipc_buf b = {0};
	for (size_t i = 0; i < 1024; i++) {
		put_tag(&b, 1000, PROTOBUF_C_WIRE_TYPE_VARINT);
		put_varint(&b, 0);
	}
	assert_passes(b.data, b.len);
	put_tag(&b, 1001, PROTOBUF_C_WIRE_TYPE_VARINT);
	put_varint(&b, 0);
	assert_refused(b.data, b.len, &limits, "more than 1024 unknown fields");
	ipc_buf_finish(&b);
}
END_TEST

START_TEST(singular_twice_refused)
{
	struct ipc_buf b = {0}, f = {0};
	put_ld(&b, 1, "a", 1);
	put_ld(&b, 1, "b", 1);
	put_frame(&f, 24, &b); /* kv_get{bucket, bucket} */
	assert_refused(f.data, f.len, &limits,
	               "field 'bucket' appears more than once");
	ipc_buf_reset(&f, 0);
	put_tag(&f, 1, PROTOBUF_C_WIRE_TYPE_VARINT);
	put_varint(&f, 1);
	put_tag(&f, 1, PROTOBUF_C_WIRE_TYPE_VARINT);
	put_varint(&f, 2);
	assert_refused(f.data, f.len, &limits,
	               "field 'id' appears more than once");

	/* A singular submessage twice: protobuf-c would merge them. */
	static const uint8_t pub[] = {0x1a, 0x04, 0x0a, 0x00, 0x0a, 0x00};
	assert_refused(pub, sizeof(pub), &limits,
	               "field 'msg' appears more than once");
	ipc_buf_finish(&b);
	ipc_buf_finish(&f);
}
END_TEST

START_TEST(two_oneof_members_refused)
{
	/* hello{}, status{} */
	static const uint8_t two[] = {0x12, 0x00, 0x3a, 0x00};
	assert_refused(two, sizeof(two), &limits,
	               "fields 'hello' and 'status' are both set, in one oneof");
	static const uint8_t same[] = {0x3a, 0x00, 0x3a, 0x00};
	assert_refused(same, sizeof(same), &limits,
	               "field 'status' appears more than once");
}
END_TEST

/* ---- malformed ---- */

START_TEST(truncated_refused)
{
	Ship__Header hd = header("K", "v\xc3\xa9");
	size_t n;
	uint8_t *p = publish("s.\xe2\x82\xac", "r", &hd, 2, &n);
	/* Cut anywhere, it is refused exactly when protobuf-c fails. */
	for (size_t k = 0; k < n; k++) {
		char why[128] = "";
		int rc = check(p, k, &limits, why, sizeof(why));
		ck_assert_msg((rc == 0) == unpacks(p, k), "cut at %zu: %s", k,
		              why);
		if (rc != 0)
			ck_assert_msg(!strncmp(why, "malformed protobuf: ", 20) ||
			                      strstr(why, "UTF-8"),
			              "%s", why);
	}
	/* The id alone is a frame; a cut inside publish never is. */
	ck_assert_int_eq(check(p, 2, &limits, NULL, 0), 0);
	assert_refused(p, n - 1, &limits,
	               "malformed protobuf: field runs past the end");
	free(p);
}
END_TEST

START_TEST(malformed_refused)
{
#define BAD "malformed protobuf: "
	static const struct {
		uint8_t wire[8];
		size_t len;
		const char *why;
	} cases[] = {
		{{0x08}, 1, BAD "truncated or overlong varint"},
		{{0x08, 0x80, 0x80}, 3, BAD "truncated or overlong varint"},
		{{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8,
		 BAD "truncated or overlong varint"},
		{{0x80}, 1, BAD "truncated or overlong tag"},
		{{0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 6,
		 BAD "truncated or overlong tag"},
		{{0x00, 0x00}, 2, BAD "field number out of range"},
		{{0x0b}, 1, BAD "groups are not supported"},
		{{0x0c}, 1, BAD "groups are not supported"},
		{{0x0e}, 1, BAD "unknown wire type"},
		{{0x12, 0x05, 0x00}, 3, BAD "field runs past the end"},
		{{0x12, 0x80}, 2, BAD "truncated or overlong length"},
		{{0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 7,
		 BAD "truncated or overlong length"},
		{{0x09, 1, 2, 3}, 4, BAD "field runs past the end"},
		{{0x0a, 0x00}, 2, "field 'id' has the wrong wire type"},
		{{0x12, 0x01, 0x08}, 3, BAD "truncated or overlong varint"},
		{{0x12, 0x02, 0x12, 0x01}, 4, BAD "field runs past the end"},
		{{0x12, 0x02, 0x10, 0x01}, 4, "field 'name' has the wrong wire type"},
		{{0x12, 0x05, 0x0d, 1, 2, 3, 4}, 7,
		 "field 'version' has the wrong wire type"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_refused(cases[i].wire, cases[i].len, &limits, cases[i].why);
		ck_assert_msg(!unpacks(cases[i].wire, cases[i].len), "case %zu",
		              i);
	}
}
#undef BAD
END_TEST

/* ---- depth, with a message that holds itself ---- */

typedef struct Node {
	ProtobufCMessage base;
	struct Node *child;
} Node;

static const ProtobufCMessageDescriptor node_descriptor;

static const ProtobufCFieldDescriptor node_fields[] = {{
	.name = "child",
	.id = 1,
	.label = PROTOBUF_C_LABEL_NONE,
	.type = PROTOBUF_C_TYPE_MESSAGE,
	.offset = offsetof(Node, child),
	.descriptor = &node_descriptor,
}};
static const unsigned node_by_name[] = {0};
static const ProtobufCIntRange node_ranges[] = {{1, 0}, {0, 1}};

static const ProtobufCMessageDescriptor node_descriptor = {
	.magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
	.name = "test.Node",
	.short_name = "Node",
	.c_name = "Test__Node",
	.package_name = "test",
	.sizeof_message = sizeof(Node),
	.n_fields = 1,
	.fields = node_fields,
	.fields_sorted_by_name = node_by_name,
	.n_field_ranges = 1,
	.field_ranges = node_ranges,
};

/* A Node with depth more Nodes inside it, one in each. */
static void nest(struct ipc_buf *b, unsigned depth)
{
	struct ipc_buf in = {0}, out = {0};
	for (unsigned i = 0; i < depth; i++) {
		ipc_buf_reset(&out, 0);
		put_ld(&out, 1, in.data, in.len);
		ipc_buf_reset(&in, 0);
		ck_assert_int_eq(ipc_buf_append(&in, out.data, out.len), 0);
	}
	ck_assert_int_eq(ipc_buf_append(b, in.data, in.len), 0);
	ipc_buf_finish(&in);
	ipc_buf_finish(&out);
}

START_TEST(depth_bomb_refused)
{
	struct ipc_buf b = {0};
	char why[128];
	nest(&b, IPC_PB_MAX_DEPTH);
	ck_assert_int_eq(ipc_pb_check(&node_descriptor, b.data, b.len, &limits,
	                              why, sizeof(why)),
	                 0);
	ProtobufCMessage *m =
		protobuf_c_message_unpack(&node_descriptor, NULL, b.len, b.data);
	ck_assert_ptr_nonnull(m);
	protobuf_c_message_free_unpacked(m, NULL);

	ipc_buf_reset(&b, 0);
	nest(&b, IPC_PB_MAX_DEPTH + 1);
	ck_assert_int_eq(ipc_pb_check(&node_descriptor, b.data, b.len, &limits,
	                              why, sizeof(why)),
	                 -1);
	ck_assert_str_eq(why, "field 'child' is nested more than 16 deep");

	ipc_buf_reset(&b, 0);
	nest(&b, 1000); /* no deeper in the stack for it */
	ck_assert_int_eq(ipc_pb_check(&node_descriptor, b.data, b.len, NULL,
	                              why, sizeof(why)),
	                 -1);
	ck_assert_str_eq(why, "field 'child' is nested more than 16 deep");
	ipc_buf_finish(&b);
}
END_TEST

/* The walk can hold every message a client may send. */
static void assert_checkable(const ProtobufCMessageDescriptor *d,
                             unsigned depth)
{
	ck_assert_uint_le(d->n_fields, IPC_PB_MAX_FIELDS);
	ck_assert_uint_le(depth, IPC_PB_MAX_DEPTH);
	for (unsigned i = 0; i < d->n_fields; i++)
		if (d->fields[i].type == PROTOBUF_C_TYPE_MESSAGE)
			assert_checkable(d->fields[i].descriptor, depth + 1);
}

START_TEST(client_frame_checkable)
{
	assert_checkable(&ship__client_frame__descriptor, 0);
	assert_checkable(&ship__server_frame__descriptor, 0);
}
END_TEST

/* ---- the reason ---- */

START_TEST(reason_buffer)
{
	struct ipc_buf b = {0};
	hello_name(&b, "\xff", 1);
	ck_assert_int_eq(check(b.data, b.len, &limits, NULL, 100), -1);
	char why[8] = "xxxxxxx";
	ck_assert_int_eq(check(b.data, b.len, &limits, why, 0), -1);
	ck_assert_str_eq(why, "xxxxxxx");
	ck_assert_int_eq(check(b.data, b.len, &limits, why, sizeof(why)), -1);
	ck_assert_str_eq(why, "field '");
	ck_assert_int_eq(check(b.data, b.len, NULL, why, sizeof(why)), -1);
	ipc_buf_finish(&b);
}
END_TEST

/* ---- the fast path admits nothing the check refuses ---- */

static bool fast(const uint8_t *p, size_t n)
{
	struct ipc_publish_view v;
	return ipc_parse_publish(p + IPC_HDR_LEN, n - IPC_HDR_LEN, &v);
}

START_TEST(fast_path_refuses_nul)
{
	struct ipc_buf b = {0};
	struct ipc_publish pb = {.id = 1, .subject = "okXx", .reply = "rX"};
	ck_assert_int_eq(ipc_pack_publish(&b, &pb, IPC_FRAME_LIMIT), 0);
	ck_assert(fast(b.data, b.len));
	patch(b.data, b.len, "okXx", 2, 0);
	ck_assert(!fast(b.data, b.len));
	assert_refused(b.data + IPC_HDR_LEN, b.len - IPC_HDR_LEN, &limits,
	               "field 'subject' holds a NUL byte");

	ipc_buf_reset(&b, 0);
	ck_assert_int_eq(ipc_pack_publish(&b, &pb, IPC_FRAME_LIMIT), 0);
	patch(b.data, b.len, "rX", 1, 0);
	ck_assert(!fast(b.data, b.len));
	assert_refused(b.data + IPC_HDR_LEN, b.len - IPC_HDR_LEN, &limits,
	               "field 'reply' holds a NUL byte");

	/* Not UTF-8 either; but UTF-8 is fine. */
	ipc_buf_reset(&b, 0);
	pb.subject = "caf\xc3\xa9";
	ck_assert_int_eq(ipc_pack_publish(&b, &pb, IPC_FRAME_LIMIT), 0);
	ck_assert(fast(b.data, b.len));
	patch(b.data, b.len, "caf\xc3\xa9", 4, 0x28);
	ck_assert(!fast(b.data, b.len));
	assert_refused(b.data + IPC_HDR_LEN, b.len - IPC_HDR_LEN, &limits,
	               "field 'subject' is not valid UTF-8");
	ipc_buf_finish(&b);
}
END_TEST

START_TEST(fast_path_refuses_twice)
{
	/* id 1, id 2, publish{msg{subject "a"}} */
	static const uint8_t ids[] = {0x08, 1, 0x08, 2, 0x1a, 5, 0x0a, 3,
	                              0x0a, 1, 'a'};
	/* publish{msg{subject "a", subject "b"}} */
	static const uint8_t subj[] = {0x1a, 8, 0x0a, 6, 0x0a, 1, 'a',
	                               0x0a, 1, 'b'};
	/* publish{msg{subject "a"}, fail 1, fail 1} */
	static const uint8_t fail2[] = {0x1a, 9, 0x0a, 3, 0x0a, 1, 'a',
	                                0x10, 1, 0x10, 1};
	static const uint8_t fail1[] = {0x1a, 7,    0x0a, 3,   0x0a,
	                                1,    'a',  0x10, 1};
	struct ipc_publish_view v;
	ck_assert(!ipc_parse_publish(ids, sizeof(ids), &v));
	ck_assert(!ipc_parse_publish(subj, sizeof(subj), &v));
	ck_assert(!ipc_parse_publish(fail2, sizeof(fail2), &v));
	ck_assert(ipc_parse_publish(fail1, sizeof(fail1), &v));
	ck_assert_int_eq(check(fail1, sizeof(fail1), &limits, NULL, 0), 0);
	ck_assert_int_eq(check(ids, sizeof(ids), &limits, NULL, 0), -1);
	ck_assert_int_eq(check(subj, sizeof(subj), &limits, NULL, 0), -1);
	ck_assert_int_eq(check(fail2, sizeof(fail2), &limits, NULL, 0), -1);
}
END_TEST

/* ---- against protobuf-c on damaged frames ---- */

static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* Whatever passes unpacks, and what the fast path takes passes. */
START_TEST(damaged_frames_agree)
{
	Ship__Header hd = header("K", "v");
	static const uint64_t tokens[] = {1, 2, 300};
	size_t lens[3];
	uint8_t *frames[3] = {publish("a.b", "r", &hd, 2, &lens[0]),
	                      ack(tokens, 3, &lens[1]), kv_write("k", &lens[2])};
	uint32_t seed = 0x9e3779b9;
	uint8_t buf[256];
	for (unsigned i = 0; i < 200000; i++) {
		size_t which = rnd(&seed) % 3, n = lens[which];
		memcpy(buf, frames[which], n);
		for (unsigned k = rnd(&seed) % 3 + 1; k > 0; k--)
			buf[rnd(&seed) % n] = (uint8_t)rnd(&seed);
		n -= rnd(&seed) % 4 == 0 ? rnd(&seed) % n : 0;
		char why[128];
		int rc = check(buf, n, &limits, why, sizeof(why));
		ck_assert_msg(rc < 0 || unpacks(buf, n), "iteration %u", i);
		struct ipc_publish_view v;
		ck_assert_msg(!ipc_parse_publish(buf, n, &v) || rc == 0,
		              "iteration %u: %s", i, why);
	}
	for (size_t i = 0; i < 3; i++)
		free(frames[i]);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pbcheck");
	TCase *t = tcase_create("pass");
	tcase_add_test(t, valid_frames_pass);
	tcase_add_test(t, unknown_fields_pass);
	tcase_add_test(t, multibyte_utf8_passes);
	tcase_add_test(t, client_frame_checkable);
	suite_add_tcase(s, t);

	t = tcase_create("strings");
	tcase_add_test(t, nul_in_string_refused);
	tcase_add_test(t, bad_utf8_refused);
	suite_add_tcase(s, t);

	t = tcase_create("counts");
	tcase_add_test(t, many_headers_refused);
	tcase_add_test(t, many_tokens_refused);
	tcase_add_test(t, empty_packed_runs_refused);
	tcase_add_test(t, unknown_fields_counted);
	tcase_add_test(t, singular_twice_refused);
	tcase_add_test(t, two_oneof_members_refused);
	tcase_add_test(t, depth_bomb_refused);
	suite_add_tcase(s, t);

	t = tcase_create("malformed");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, truncated_refused);
	tcase_add_test(t, malformed_refused);
	tcase_add_test(t, bad_packed_refused);
	tcase_add_test(t, reason_buffer);
	tcase_add_test(t, damaged_frames_agree);
	suite_add_tcase(s, t);

	t = tcase_create("fastpath");
	tcase_add_test(t, fast_path_refuses_nul);
	tcase_add_test(t, fast_path_refuses_twice);
	suite_add_tcase(s, t);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
