/* SPDX-License-Identifier: MIT */
/* NATS subject, queue and header rules, checked before anything reaches NATS. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ipc.h"

/* A token character: printable ASCII or UTF-8, never space, control or
 * DEL (the NATS protocol splits on whitespace). */
static bool token_char(unsigned char c)
{
	return c > 0x20 && c != 0x7f;
}

static bool subject_check(const char *s, bool wildcards)
{
	if (!s || !*s || strlen(s) > IPC_SUBJECT_MAX)
		return false;
	const char *tok = s;
	for (const char *p = s;; p++) {
		if (*p != '.' && *p != '\0') {
			if (!token_char((unsigned char)*p))
				return false;
			continue;
		}
		size_t n = (size_t)(p - tok);
		if (n == 0)
			return false; /* empty token: leading, trailing or ".." */
		bool star = n == 1 && tok[0] == '*';
		bool gt = n == 1 && tok[0] == '>';
		if (!wildcards && (star || gt))
			return false;
		if (gt && *p != '\0')
			return false; /* > only as the last token */
		if (*p == '\0')
			return true;
		tok = p + 1;
	}
}

bool ipc_subject_valid(const char *s)
{
	if (!subject_check(s, false))
		return false;
	/* A wildcard character inside a longer token is legal in NATS but
	 * useless for publishing; it is only refused as a whole token. */
	return true;
}

bool ipc_subject_pattern_valid(const char *s)
{
	return subject_check(s, true);
}

bool ipc_queue_valid(const char *s)
{
	if (!s)
		return false;
	if (strlen(s) > 256)
		return false;
	for (const char *p = s; *p; p++)
		if (!token_char((unsigned char)*p))
			return false;
	return true;
}

bool ipc_header_key_valid(const char *s)
{
	if (!s || !*s || strlen(s) > 256)
		return false;
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c >= 0x7f || c == ':')
			return false;
	}
	return true;
}

bool ipc_header_value_valid(const char *s)
{
	if (!s || strlen(s) > 4096)
		return false;
	for (const char *p = s; *p; p++)
		if (*p == '\r' || *p == '\n')
			return false;
	return true;
}

bool ipc_fmt_fits(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n >= 0 && (size_t)n < size;
}

bool ipc_first_token(const char *s, const char *tok)
{
	size_t n = strlen(tok);
	return !strncmp(s, tok, n) && (s[n] == '.' || s[n] == '\0');
}

bool ipc_subject_system(const char *s)
{
	static const char *const roots[] = {"$JS", "$KV", "$O", "$SRV", "$SYS"};
	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
		if (ipc_first_token(s, roots[i]))
			return true;
	return false;
}

/* ---- the NATS micro protocol's names (ADR-32) ---- */

static bool digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool alnum(char c)
{
	return digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool ipc_svc_name_valid(const char *s)
{
	if (!s || !*s || strlen(s) > IPC_SVC_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!alnum(*s) && *s != '_' && *s != '-')
			return false;
	return true;
}

/* A numeric identifier: 0, or digits without a leading zero. */
static bool semver_number(const char **p)
{
	const char *s = *p;
	if (*s == '0') {
		*p = s + 1;
		return !digit(s[1]);
	}
	while (digit(**p))
		(*p)++;
	return *p > s;
}

/* Dot-separated identifiers of [0-9A-Za-z-]; in a pre-release, one of
 * digits alone has no leading zero. */
static bool semver_idents(const char **p, bool pre)
{
	for (;;) {
		const char *s = *p;
		bool digits = true;
		while (alnum(**p) || **p == '-') {
			digits &= digit(**p);
			(*p)++;
		}
		if (*p == s || (pre && digits && *s == '0' && *p - s > 1))
			return false;
		if (**p != '.')
			return true;
		(*p)++;
	}
}

bool ipc_semver_valid(const char *s)
{
	if (!s || strlen(s) > IPC_SEMVER_MAX)
		return false;
	for (int i = 0; i < 3; i++) {
		if (!semver_number(&s) || (i < 2 && *s++ != '.'))
			return false;
	}
	if (*s == '-') {
		s++;
		if (!semver_idents(&s, true))
			return false;
	}
	if (*s == '+') {
		s++;
		if (!semver_idents(&s, false))
			return false;
	}
	return *s == '\0';
}
