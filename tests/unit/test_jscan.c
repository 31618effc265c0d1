/* SPDX-License-Identifier: MIT */
/* libshipc's JSON scanner: RFC 8259 accepted and refused, depth, strings
 * and their escapes, members, compaction, and escaping as serde_json does. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"

/* The text in a buffer of exactly its size: reading past it is caught
 * under AddressSanitizer. */
static char *exact(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);
	ck_assert_ptr_nonnull(p);
	memcpy(p, s, n);
	return p;
}

static int valid_n(const char *s, size_t n)
{
	char *p = exact(s, n);
	int r = jscan_valid(p, n);
	free(p);
	return r;
}

static int valid(const char *s)
{
	return valid_n(s, strlen(s));
}

static const char *const good[] = {
	"0", "-0", "1", "-12", "1.5", "1e10", "1E+2", "-1.0e-3", "123456789012345678901234567890",
	"true", "false", "null", "\"\"", "\"a\"", " \t\r\n1\n",
	"[]", "{}", "[1,2,3]", " [ 1 , \"x\" , [ ] , { } ] ",
	"{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}",
	"\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\"\\u0000\"", "\"\\u00e9\\u00E9\"",
	"\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"", "\"\xc3\xa9\xe2\x82\xac\"",
	"\"\xef\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\"", "\"\x7f\"",
	"{\"\":0}", "[[[[[]]]]]",
};

static const char *const bad[] = {
	"", " ", "01", "+1", "1.", ".5", "-", "1e", "1e+", "0x10", "NaN",
	"Infinity", "-Infinity", "tru", "nul", "True", "truex", "[truex]",
	"1 2", "{}{}", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{1:2}",
	"{\"a\"}", "{\"a\":}", "[1 2]", "[", "]", "{", "}", "\"", "\"abc",
	"\"\\\"", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"\\ud83d\"",
	"\"\\ude00\"", "\"\\ude00\\ud83d\"", "\"\\ud83d\\u0041\"", "\"\\ud83dx\"",
	"\"\t\"", "\"\n\"", "\"\x01\"", "\"\xc0\x80\"", "\"\xc1\xbf\"",
	"\"\xe0\x80\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
	"\"\xf5\x80\x80\x80\"", "\"\x80\"", "\"\xc3\"", "\"\xe2\x82\"",
	"\"\xff\"", "'a'", "[1]]", "{\"a\":1}}", "\xef\xbb\xbf{}", "/*c*/1",
	"[1,2", "{\"a\":[1,{\"b\":2]}}",
};

START_TEST(accepts_json)
{
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(valid(good[i]) == 0, "refused: %s", good[i]);
	ck_assert_int_eq(valid_n("\"a\0b\"", 5), -1); /* raw NUL */
	ck_assert_int_eq(valid_n("1\0", 2), -1);
}
END_TEST

START_TEST(refuses_what_is_not)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(valid(bad[i]) == -1, "accepted: %s", bad[i]);
}
END_TEST

/* Every proper prefix of a document that ends with a bracket is refused:
 * nothing reads the bytes it was not given. */
START_TEST(every_prefix_refused)
{
	const char *doc = "{\"being_id\":\"r2\",\"state\":{\"pos\":[1.5,-2e3,"
	                  "true,null],\"name\":\"\\u00e9\\ud83d\\ude00 x\"},"
	                  "\"created\":\"2026-03-19T12:00:00+00:00\"}";
	size_t n = strlen(doc);
	ck_assert_int_eq(valid(doc), 0);
	for (size_t k = 0; k < n; k++)
		ck_assert_msg(valid_n(doc, k) == -1, "prefix of %zu accepted", k);
}
END_TEST

static char *nested(size_t depth, const char *inner)
{
	size_t n = 2 * depth + strlen(inner);
	char *s = malloc(n + 1);
	ck_assert_ptr_nonnull(s);
	memset(s, '[', depth);
	memcpy(s + depth, inner, strlen(inner));
	memset(s + depth + strlen(inner), ']', depth);
	s[n] = '\0';
	return s;
}

START_TEST(depth_bound)
{
	char *ok = nested(JSCAN_MAX_DEPTH, "");
	char *deep = nested(JSCAN_MAX_DEPTH + 1, "1");
	char *huge = nested(100000, "");
	ck_assert_int_eq(valid(ok), 0);
	ck_assert_int_eq(valid(deep), -1);
	ck_assert_int_eq(valid(huge), -1);
	/* The same bound through a member: the object is one level. */
	for (size_t d = JSCAN_MAX_DEPTH - 1; d <= JSCAN_MAX_DEPTH; d++) {
		char *in = nested(d, "");
		char *doc = malloc(strlen(in) + 8);
		size_t off, len;
		ck_assert_ptr_nonnull(doc);
		sprintf(doc, "{\"s\":%s}", in);
		int want = d < JSCAN_MAX_DEPTH ? 0 : -1;
		ck_assert_int_eq(valid(doc), want);
		ck_assert_int_eq(jscan_member(doc, strlen(doc), "s", &off, &len),
		                 want ? -1 : 1);
		free(in);
		free(doc);
	}
	free(ok);
	free(deep);
	free(huge);
}
END_TEST

START_TEST(skip_values)
{
	const char *s = "  [1,{\"a\":\"]\"}] tail";
	size_t pos = 0;
	ck_assert_int_eq(jscan_skip(s, strlen(s), &pos), 0);
	ck_assert_uint_eq(pos, 15);
	pos = 1;
	ck_assert_int_eq(jscan_skip("x1", 2, &pos), 0);
	ck_assert_uint_eq(pos, 2);
	pos = 0;
	ck_assert_int_eq(jscan_skip("[1,", 3, &pos), -1);
	ck_assert_uint_eq(pos, 0);
	pos = 3;
	ck_assert_int_eq(jscan_skip("abc", 3, &pos), -1);
	ck_assert_uint_eq(pos, 3);
}
END_TEST

static int member(const char *doc, const char *key, char *out, size_t size)
{
	size_t off = 0, len = 0, n = strlen(doc);
	char *p = exact(doc, n);
	int r = jscan_member(p, n, key, &off, &len);
	if (r == 1)
		snprintf(out, size, "%.*s", (int)len, p + off);
	free(p);
	return r;
}

START_TEST(members)
{
	char v[256];
	const char *rust = "{\"being_id\":\"r2\",\"reason\":\"pre\",\"state\":"
	                   "{\"state\":1,\"x\":[2]},\"created\":\"t\"}";
	ck_assert_int_eq(member(rust, "state", v, sizeof(v)), 1);
	ck_assert_str_eq(v, "{\"state\":1,\"x\":[2]}");
	ck_assert_int_eq(member(rust, "x", v, sizeof(v)), 0);
	ck_assert_int_eq(member(rust, "being_id", v, sizeof(v)), 1);
	ck_assert_str_eq(v, "\"r2\"");
	/* Python's: pretty-printed, "timestamp" for "created". */
	const char *py = "{\n  \"being_id\": \"r2\",\n  \"reason\": \"x\",\n"
	                 "  \"state\": {\n    \"a\": [\n      1,\n      2\n"
	                 "    ]\n  },\n  \"timestamp\": \"t\"\n}\n";
	ck_assert_int_eq(member(py, "state", v, sizeof(v)), 1);
	ck_assert_str_eq(v, "{\n    \"a\": [\n      1,\n      2\n    ]\n  }");
	/* Names compare unescaped. */
	ck_assert_int_eq(member("{\"st\\u0061te\":7}", "state", v, sizeof(v)), 1);
	ck_assert_str_eq(v, "7");
	ck_assert_int_eq(member("{\"\\u00e9\":1}", "\xc3\xa9", v, sizeof(v)), 1);
	ck_assert_int_eq(member("{\"\\ud83d\\ude00\":1}", "\xf0\x9f\x98\x80", v,
	                        sizeof(v)),
	                 1);
	ck_assert_int_eq(member("{\"stat\":1,\"states\":2}", "state", v,
	                        sizeof(v)),
	                 0);
	ck_assert_int_eq(member("{\"\":3}", "", v, sizeof(v)), 1);
	ck_assert_str_eq(v, "3");
	/* Twice is ambiguous; not an object or broken text is refused. */
	ck_assert_int_eq(member("{\"state\":1,\"state\":2}", "state", v,
	                        sizeof(v)),
	                 -1);
	ck_assert_int_eq(member("{\"s\\u0074ate\":1,\"state\":2}", "state", v,
	                        sizeof(v)),
	                 -1);
	ck_assert_int_eq(member("[\"state\",1]", "state", v, sizeof(v)), -1);
	ck_assert_int_eq(member("{\"state\":1} x", "state", v, sizeof(v)), -1);
	ck_assert_int_eq(member("{\"state\":1,\"b\":[}", "state", v, sizeof(v)),
	                 -1);
	ck_assert_int_eq(member("{\"state\":01}", "state", v, sizeof(v)), -1);
	ck_assert_int_eq(member(" {} ", "state", v, sizeof(v)), 0);
	ck_assert_int_eq(member("{", "state", v, sizeof(v)), -1);
	ck_assert_int_eq(member("", "state", v, sizeof(v)), -1);
}
END_TEST

START_TEST(compaction)
{
	const char *in = " {\n \"a b\" : [ 1 , \"x \\\" y\\\\\" ,\t{ } ] ,\r\n"
	                 "  \"c\":\"\\\\\" } ";
	char out[128];
	size_t m = jscan_compact(in, strlen(in), out);
	out[m] = '\0';
	ck_assert_str_eq(out, "{\"a b\":[1,\"x \\\" y\\\\\",{}],\"c\":\"\\\\\"}");
	ck_assert_int_eq(valid(out), 0);
	/* Compact text stays as it is. */
	char again[128];
	size_t m2 = jscan_compact(out, m, again);
	ck_assert_uint_eq(m2, m);
	ck_assert(memcmp(out, again, m) == 0);
}
END_TEST

static void check_escape(const char *s, size_t n, const char *want)
{
	char out[256];
	size_t len = jscan_escape(s, n, NULL);
	ck_assert_uint_eq(len, strlen(want));
	ck_assert_uint_eq(jscan_escape(s, n, out), len);
	out[len] = '\0';
	ck_assert_str_eq(out, want);
}

START_TEST(escaping)
{
	check_escape("plain", 5, "plain");
	check_escape("", 0, "");
	check_escape("a\"b\\c/", 6, "a\\\"b\\\\c/");
	check_escape("\b\f\n\r\t", 5, "\\b\\f\\n\\r\\t");
	check_escape("\x01\x1f\x7f", 3, "\\u0001\\u001f\x7f");
	check_escape("\0x", 2, "\\u0000x");
	check_escape("\xc3\xa9\xf0\x9f\x98\x80", 6, "\xc3\xa9\xf0\x9f\x98\x80");
	ck_assert_uint_eq(jscan_escape("\xc3", 1, NULL), SIZE_MAX);
	ck_assert_uint_eq(jscan_escape("a\xff", 2, NULL), SIZE_MAX);
	ck_assert_uint_eq(jscan_escape("\xed\xa0\x80", 3, NULL), SIZE_MAX);
	ck_assert_uint_eq(jscan_escape("\xc0\x80", 2, NULL), SIZE_MAX);
}
END_TEST

/* What escaping writes reads back: as a valid string, and as a member
 * name that matches the original. */
START_TEST(escape_round_trip)
{
	char s[64], doc[512];
	uint32_t x = 12345;
	for (int round = 0; round < 2000; round++) {
		size_t n = 1 + (size_t)(round % 40);
		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			/* Mostly ASCII and controls, some UTF-8 pieces. */
			unsigned b = (x >> 16) % 140;
			if (b >= 128)
				s[i] = "\xc3\xa9"[b % 2];
			else
				s[i] = b ? (char)b : 'z';
		}
		s[n] = '\0';
		size_t len = jscan_escape(s, n, NULL);
		if (len == SIZE_MAX)
			continue; /* a cut UTF-8 piece */
		doc[0] = '{';
		doc[1] = '"';
		jscan_escape(s, n, doc + 2);
		memcpy(doc + 2 + len, "\":[1]}", 7);
		size_t off, vlen;
		ck_assert_int_eq(valid(doc), 0);
		ck_assert_int_eq(jscan_member(doc, strlen(doc), s, &off, &vlen),
		                 1);
		ck_assert_uint_eq(vlen, 3);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("jscan");
	TCase *tc = tcase_create("jscan");
	tcase_add_test(tc, accepts_json);
	tcase_add_test(tc, refuses_what_is_not);
	tcase_add_test(tc, every_prefix_refused);
	tcase_add_test(tc, depth_bound);
	tcase_add_test(tc, skip_values);
	tcase_add_test(tc, members);
	tcase_add_test(tc, compaction);
	tcase_add_test(tc, escaping);
	tcase_add_test(tc, escape_round_trip);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
