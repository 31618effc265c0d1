/* SPDX-License-Identifier: MIT */
/* libFuzzer: libshipc's JSON scanner on arbitrary bytes; what it accepts
 * compacts to valid JSON, members lie inside valid text, and escaped
 * strings read back as the names they came from. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_valid(const char *p, size_t n)
{
	size_t pos = 0;
	char *out = malloc(n ? n : 1);
	if (!out)
		return;
	if (jscan_skip(p, n, &pos) != 0 || pos > n)
		abort();
	size_t m = jscan_compact(p, n, out);
	if (m > n || m == 0 || jscan_valid(out, m) != 0)
		abort();
	char *again = malloc(m);
	if (!again || jscan_compact(out, m, again) != m ||
	    memcmp(out, again, m))
		abort();
	free(again);
	free(out);
}

static void check_member(const char *p, size_t n)
{
	size_t off = 0, len = 0;
	int r = jscan_member(p, n, "state", &off, &len);
	if (r >= 0 && jscan_valid(p, n) != 0)
		abort();
	if (r == 1 && (off > n || len > n - off || len == 0 ||
	               jscan_valid(p + off, len) != 0))
		abort();
}

static void check_escape(const char *p, size_t n)
{
	size_t len = jscan_escape(p, n, NULL);
	if (len == SIZE_MAX)
		return;
	char *doc = malloc(len + 8), *key = malloc(n + 1);
	if (!doc || !key)
		abort();
	doc[0] = '{';
	doc[1] = '"';
	if (jscan_escape(p, n, doc + 2) != len)
		abort();
	memcpy(doc + 2 + len, "\":0}", 4);
	if (jscan_valid(doc + 1, len + 2) != 0 || jscan_valid(doc, len + 6))
		abort();
	memcpy(key, p, n);
	key[n] = '\0';
	size_t off, vlen;
	/* A name with a NUL is cut short in key: it must not match. */
	int want = memchr(p, '\0', n) ? 0 : 1;
	if (jscan_member(doc, len + 6, key, &off, &vlen) != want)
		abort();
	free(doc);
	free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exactly size bytes: an over-read is caught. */
	char *p = malloc(size ? size : 1);
	if (!p)
		return 0;
	memcpy(p, data, size);
	if (jscan_valid(p, size) == 0)
		check_valid(p, size);
	check_member(p, size);
	check_escape(p, size);
	free(p);
	return 0;
}
