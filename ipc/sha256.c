/* SPDX-License-Identifier: MIT */
/* SHA-256 and padded base64url (RFC 4648 §5): the digest and the name
 * encoding of the NATS Object Store. The hash is libcrypto's (which nats.c
 * links already): it uses the CPU's SHA extensions, about ten times the
 * speed of portable C, and every object byte shipd moves is hashed on its
 * one loop thread. */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_*: a plain struct, no alloc */
#include <string.h>

#include "ipc.h"

void ipc_sha256_init(struct ipc_sha256 *s)
{
	SHA256_Init(&s->c);
}

void ipc_sha256_update(struct ipc_sha256 *s, const void *data, size_t n)
{
	SHA256_Update(&s->c, data, n);
}

void ipc_sha256_final(struct ipc_sha256 *s, uint8_t out[IPC_SHA256_LEN])
{
	SHA256_Final(out, &s->c);
}

size_t ipc_base64url(const void *data, size_t n, char *out, size_t size)
{
	static const char al[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789-_";
	const uint8_t *p = data;
	size_t len = (n + 2) / 3 * 4;
	if (len >= size)
		return 0;
	char *o = out;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = al[v >> 18 & 63];
		*o++ = al[v >> 12 & 63];
		*o++ = i + 1 < n ? al[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? al[v & 63] : '=';
	}
	*o = '\0';
	return len;
}
