/* SPDX-License-Identifier: MIT */
/* SHA-256 against the FIPS 180-4 examples, and the padded base64url that
 * Object Store digests and meta subjects use. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"

static void hex(const uint8_t *d, char *out)
{
	for (int i = 0; i < IPC_SHA256_LEN; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static void check_sum(const void *p, size_t n, const char *want)
{
	struct ipc_sha256 s;
	uint8_t d[IPC_SHA256_LEN];
	char h[2 * IPC_SHA256_LEN + 1];
	ipc_sha256_init(&s);
	ipc_sha256_update(&s, p, n);
	ipc_sha256_final(&s, d);
	hex(d, h);
	ck_assert_str_eq(h, want);
	/* The same fed one byte at a time. */
	ipc_sha256_init(&s);
	for (size_t i = 0; i < n; i++)
		ipc_sha256_update(&s, (const uint8_t *)p + i, 1);
	ipc_sha256_final(&s, d);
	hex(d, h);
	ck_assert_str_eq(h, want);
}

START_TEST(fips_vectors)
{
	check_sum(
	    "", 0,
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	check_sum(
	    "abc", 3,
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *two =
	    "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	check_sum(
	    two, strlen(two),
	    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	const char *four =
	    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
	    "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
	check_sum(
	    four, strlen(four),
	    "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}
END_TEST

START_TEST(million_a)
{
	char *a = malloc(1000000);
	ck_assert_ptr_nonnull(a);
	memset(a, 'a', 1000000);
	struct ipc_sha256 s;
	uint8_t d[IPC_SHA256_LEN];
	char h[2 * IPC_SHA256_LEN + 1];
	ipc_sha256_init(&s);
	/* Uneven pieces cross the block boundary every way. */
	for (size_t off = 0, step = 1; off < 1000000;
	     off += step, step = step % 131 + 7)
		ipc_sha256_update(&s, a + off,
				  off + step > 1000000 ? 1000000 - off : step);
	ipc_sha256_final(&s, d);
	hex(d, h);
	ck_assert_str_eq(
	    h,
	    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(a);
}
END_TEST

START_TEST(base64url_padded)
{
	char out[64];
	ck_assert_uint_eq(ipc_base64url("", 0, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "");
	ipc_base64url("f", 1, out, sizeof(out));
	ck_assert_str_eq(out, "Zg==");
	ipc_base64url("fo", 2, out, sizeof(out));
	ck_assert_str_eq(out, "Zm8=");
	ipc_base64url("foo", 3, out, sizeof(out));
	ck_assert_str_eq(out, "Zm9v");
	ck_assert_uint_eq(ipc_base64url("foobar", 6, out, sizeof(out)), 8);
	ck_assert_str_eq(out, "Zm9vYmFy");
	/* The URL alphabet: 0xfb 0xff -> "-_8=" (std would be "+/8="). */
	ipc_base64url("\xfb\xff", 2, out, sizeof(out));
	ck_assert_str_eq(out, "-_8=");
	/* No room: 0 and nothing written past size. */
	ck_assert_uint_eq(ipc_base64url("foobar", 6, out, 8), 0);
	/* ADR-20's digest example is 44 characters ending in '='. */
	struct ipc_sha256 s;
	uint8_t d[IPC_SHA256_LEN];
	ipc_sha256_init(&s);
	ipc_sha256_final(&s, d);
	ck_assert_uint_eq(ipc_base64url(d, sizeof(d), out, sizeof(out)), 44);
	ck_assert_str_eq(out, "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sha256");
	TCase *tc = tcase_create("digest");
	tcase_add_test(tc, fips_vectors);
	tcase_add_test(tc, million_a);
	tcase_add_test(tc, base64url_padded);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
