/* SPDX-License-Identifier: MIT */
/* The hand-coded Publish frames must be what protobuf-c writes and reads. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"

/* Pack the same publish with protobuf-c and by hand; compare bytes. */
static void same_bytes(const struct ipc_publish *p)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Publish pb = SHIP__PUBLISH__INIT;
	Ship__Msg m = SHIP__MSG__INIT;
	Ship__Header hs[8], *hp[8];
	m.subject = (char *)p->subject;
	m.reply = (char *)(p->reply ? p->reply : "");
	m.data.data = (uint8_t *)p->data;
	m.data.len = p->len;
	for (size_t i = 0; i < p->n_headers; i++) {
		ship__header__init(&hs[i]);
		hs[i].key = (char *)p->headers[i].key;
		hs[i].value = (char *)p->headers[i].value;
		hp[i] = &hs[i];
	}
	m.n_headers = p->n_headers;
	m.headers = hp;
	pb.msg = &m;
	pb.fail_if_disconnected = p->fail_if_disconnected;
	f.id = p->id;
	f.body_case = SHIP__CLIENT_FRAME__BODY_PUBLISH;
	f.publish = &pb;
	struct ipc_buf a = {0}, b = {0};
	ck_assert_int_eq(ipc_frame_pack(&a, &f.base, IPC_FRAME_LIMIT), 0);
	ck_assert_int_eq(ipc_pack_publish(&b, p, IPC_FRAME_LIMIT), 0);
	ck_assert_uint_eq(ipc_buf_used(&a), ipc_buf_used(&b));
	ck_assert_mem_eq(ipc_buf_head(&a), ipc_buf_head(&b), ipc_buf_used(&a));

	/* And the in-place reader sees it as protobuf-c does. */
	struct ipc_publish_view v;
	bool simple = p->n_headers == 0;
	ck_assert_int_eq(ipc_parse_publish(ipc_buf_head(&b) + IPC_HDR_LEN,
	                                   ipc_buf_used(&b) - IPC_HDR_LEN, &v),
	                 simple);
	if (simple) {
		ck_assert_uint_eq(v.id, p->id);
		ck_assert_uint_eq(v.subject_len, strlen(p->subject));
		ck_assert_mem_eq(v.subject, p->subject, v.subject_len);
		size_t rl = p->reply ? strlen(p->reply) : 0;
		ck_assert_uint_eq(v.reply_len, rl);
		if (rl)
			ck_assert_mem_eq(v.reply, p->reply, rl);
		ck_assert_uint_eq(v.len, p->len);
		if (p->len)
			ck_assert_mem_eq(v.data, p->data, p->len);
		ck_assert_int_eq(v.fail_if_disconnected, p->fail_if_disconnected);
	}
	ipc_buf_finish(&a);
	ipc_buf_finish(&b);
}

START_TEST(pack_matches_protobuf_c)
{
	static char big[300000];
	memset(big, 'b', sizeof(big));
	struct ipc_header hd[] = {{"X-A", "1"}, {"K", ""}, {"Long-Key", "v v"}};
	struct ipc_publish cases[] = {
		{.subject = "a"},
		{.subject = "a.b.c", .data = "hello", .len = 5},
		{.id = 1, .subject = "x", .reply = "_INBOX.r", .data = "d", .len = 1},
		{.id = UINT64_MAX, .subject = "s", .fail_if_disconnected = true},
		{.id = 300, .subject = "s.t", .data = big, .len = sizeof(big)},
		{.id = 127, .subject = "s", .reply = "", .data = big, .len = 128},
		{.id = 128, .subject = "h", .data = "x", .len = 1, .headers = hd,
		 .n_headers = 3},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		same_bytes(&cases[i]);
}
END_TEST

START_TEST(pack_refuses_oversize)
{
	static char big[5000];
	struct ipc_publish p = {.subject = "s", .data = big, .len = sizeof(big)};
	struct ipc_buf b = {0};
	ck_assert_int_eq(ipc_pack_publish(&b, &p, 4096), -1);
	ck_assert_uint_eq(ipc_buf_used(&b), 0);
	ipc_buf_finish(&b);
}
END_TEST

START_TEST(parse_leaves_other_frames_alone)
{
	struct ipc_publish_view v;
	/* A Subscribe frame is not a publish. */
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Subscribe s = SHIP__SUBSCRIBE__INIT;
	s.subject = "a";
	f.id = 3;
	f.body_case = SHIP__CLIENT_FRAME__BODY_SUBSCRIBE;
	f.subscribe = &s;
	uint8_t buf[64];
	size_t n = ship__client_frame__pack(&f, buf);
	ck_assert(!ipc_parse_publish(buf, n, &v));
	/* No truncation of a valid publish is taken for the whole. */
	struct ipc_publish p = {.id = 9, .subject = "a.b", .data = "xyz", .len = 3};
	struct ipc_buf b = {0};
	ck_assert_int_eq(ipc_pack_publish(&b, &p, IPC_FRAME_LIMIT), 0);
	const uint8_t *body = ipc_buf_head(&b) + IPC_HDR_LEN;
	size_t len = ipc_buf_used(&b) - IPC_HDR_LEN;
	ck_assert(ipc_parse_publish(body, len, &v));
	for (size_t cut = 1; cut < len; cut++)
		ck_assert_msg(!ipc_parse_publish(body, cut, &v), "cut %zu", cut);
	/* Garbage: an overlong varint, an empty body. */
	uint8_t junk[] = {0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	                  0xff, 0xff, 0x01};
	ck_assert(!ipc_parse_publish(junk, sizeof(junk), &v));
	ck_assert(!ipc_parse_publish((const uint8_t *)"", 0, &v));
	ipc_buf_finish(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fastpack");
	TCase *tc = tcase_create("publish");
	tcase_add_test(tc, pack_matches_protobuf_c);
	tcase_add_test(tc, pack_refuses_oversize);
	tcase_add_test(tc, parse_leaves_other_frames_alone);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
