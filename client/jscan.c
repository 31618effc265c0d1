/* SPDX-License-Identifier: MIT */
/* jscan: check, skip, slice, compact and escape JSON text without a tree,
 * for the noesis-ship stores (libshipc carries no JSON library). */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "jscan.h"

static size_t ws(const char *p, size_t n, size_t i)
{
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' ||
	                 p[i] == '\r'))
		i++;
	return i;
}

/* Length of the well-formed UTF-8 sequence at p (n > 0 bytes left) that
 * starts with a byte of 0x80 or more, or 0 (RFC 3629: no overlong forms,
 * no surrogates, nothing past U+10FFFF). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
	    (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
		return 0;
	return len;
}

static size_t utf8_put(uint32_t cp, unsigned char out[4])
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Four hex digits at p[i]; -1 if there are not. */
static int hex4(const char *p, size_t n, size_t i, uint32_t *v)
{
	uint32_t x = 0;
	if (i > n || n - i < 4)
		return -1;
	for (size_t k = i; k < i + 4; k++) {
		char c = p[k];
		if (c >= '0' && c <= '9')
			x = x << 4 | (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			x = x << 4 | (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			x = x << 4 | (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*v = x;
	return 0;
}

/* The escape whose backslash is at p[*i - 1]: its character in *cp, *i
 * moved past it. A surrogate pair is one character; a lone half is
 * refused, as serde_json refuses it. */
static int escape_at(const char *p, size_t n, size_t *i, uint32_t *cp)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	uint32_t hi, lo;
	if (*i >= n)
		return -1;
	const char *c = p[*i] ? strchr(from, p[*i]) : NULL;
	if (c) {
		*cp = (unsigned char)to[c - from];
		(*i)++;
		return 0;
	}
	if (p[*i] != 'u' || hex4(p, n, *i + 1, &hi) < 0)
		return -1;
	*i += 5;
	if (hi >= 0xdc00 && hi <= 0xdfff)
		return -1;
	if (hi < 0xd800 || hi > 0xdbff) {
		*cp = hi;
		return 0;
	}
	if (n - *i < 6 || p[*i] != '\\' || p[*i + 1] != 'u' ||
	    hex4(p, n, *i + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
		return -1;
	*i += 6;
	*cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
	return 0;
}

/* The next character of a string whose opening quote is behind p[*i]:
 * its UTF-8 bytes in out and their count; 0 at the closing quote (*i then
 * past it); -1 if the string is not valid. */
static int str_next(const char *p, size_t n, size_t *i, unsigned char out[4])
{
	if (*i >= n)
		return -1;
	unsigned char c = (unsigned char)p[*i];
	if (c == '"') {
		(*i)++;
		return 0;
	}
	if (c < 0x20)
		return -1;
	if (c == '\\') {
		uint32_t cp;
		(*i)++;
		if (escape_at(p, n, i, &cp) < 0)
			return -1;
		return (int)utf8_put(cp, out);
	}
	size_t len = c < 0x80 ? 1 : utf8_len((const unsigned char *)p + *i,
	                                     n - *i);
	if (!len)
		return -1;
	memcpy(out, p + *i, len);
	*i += len;
	return (int)len;
}

/* The string at p[*i] (its opening quote); *eq (if key) tells whether it
 * reads key once unescaped. */
static int string(const char *p, size_t n, size_t *i, const char *key,
                  bool *eq)
{
	unsigned char ch[4];
	size_t j = *i + 1, k = 0, klen = key ? strlen(key) : 0;
	bool same = true;
	int r;
	while ((r = str_next(p, n, &j, ch)) > 0) {
		if (same && klen - k >= (size_t)r && !memcmp(key + k, ch, (size_t)r))
			k += (size_t)r;
		else
			same = false;
	}
	if (r < 0)
		return -1;
	if (eq)
		*eq = same && k == klen;
	*i = j;
	return 0;
}

static size_t digits(const char *p, size_t n, size_t i)
{
	while (i < n && p[i] >= '0' && p[i] <= '9')
		i++;
	return i;
}

static int number(const char *p, size_t n, size_t *i)
{
	size_t j = *i, d;
	if (j < n && p[j] == '-')
		j++;
	if (j < n && p[j] == '0')
		j++;
	else if (j < n && p[j] >= '1' && p[j] <= '9')
		j = digits(p, n, j);
	else
		return -1;
	if (j < n && p[j] == '.') {
		d = j + 1;
		if ((j = digits(p, n, d)) == d)
			return -1;
	}
	if (j < n && (p[j] == 'e' || p[j] == 'E')) {
		d = j + 1;
		if (d < n && (p[d] == '+' || p[d] == '-'))
			d++;
		if ((j = digits(p, n, d)) == d)
			return -1;
	}
	*i = j;
	return 0;
}

static int literal(const char *p, size_t n, size_t *i)
{
	static const char *const words[] = {"true", "false", "null"};
	for (size_t w = 0; w < 3; w++) {
		size_t len = strlen(words[w]);
		if (n - *i >= len && !memcmp(p + *i, words[w], len)) {
			*i += len;
			return 0;
		}
	}
	return -1;
}

/* A member's name and colon at p[*i]; *i is left at its value. */
static int member_name(const char *p, size_t n, size_t *i)
{
	if (*i >= n || p[*i] != '"' || string(p, n, i, NULL, NULL) < 0)
		return -1;
	*i = ws(p, n, *i);
	if (*i >= n || p[*i] != ':')
		return -1;
	*i = ws(p, n, *i + 1);
	return 0;
}

/*
 * One value at p[i] (after whitespace), nested at most max_depth deep,
 * walked without recursion: stack holds the open containers' brackets.
 * Returns the index past it, or -1 cast to size_t.
 */
static size_t value(const char *p, size_t n, size_t i, size_t max_depth)
{
	unsigned char stack[JSCAN_MAX_DEPTH];
	size_t depth = 0;
	i = ws(p, n, i);
	for (;;) {
		/* A value starts at p[i]. */
		if (i >= n)
			return SIZE_MAX;
		char c = p[i];
		if (c == '{' || c == '[') {
			if (depth == max_depth)
				return SIZE_MAX;
			stack[depth++] = (unsigned char)c;
			i = ws(p, n, i + 1);
			if (i < n && p[i] == (c == '{' ? '}' : ']')) {
				depth--;
				i++;
			} else if (c == '[' || member_name(p, n, &i) == 0) {
				continue;
			} else {
				return SIZE_MAX;
			}
		} else if (c == '"') {
			if (string(p, n, &i, NULL, NULL) < 0)
				return SIZE_MAX;
		} else if (c == 't' || c == 'f' || c == 'n') {
			if (literal(p, n, &i) < 0)
				return SIZE_MAX;
		} else if (number(p, n, &i) < 0) {
			return SIZE_MAX;
		}
		/* After a value: a comma and the next one, or the ends of the
		 * containers it closes. */
		for (;;) {
			if (depth == 0)
				return i;
			unsigned char open = stack[depth - 1];
			i = ws(p, n, i);
			if (i < n && p[i] == ',') {
				i = ws(p, n, i + 1);
				if (open == '{' && member_name(p, n, &i) < 0)
					return SIZE_MAX;
				break;
			}
			if (i >= n || p[i] != (open == '{' ? '}' : ']'))
				return SIZE_MAX;
			depth--;
			i++;
		}
	}
}

int jscan_valid(const char *p, size_t n)
{
	size_t end = value(p, n, 0, JSCAN_MAX_DEPTH);
	return end != SIZE_MAX && ws(p, n, end) == n ? 0 : -1;
}

int jscan_skip(const char *p, size_t n, size_t *pos)
{
	size_t end = value(p, n, *pos, JSCAN_MAX_DEPTH);
	if (end == SIZE_MAX)
		return -1;
	*pos = end;
	return 0;
}

int jscan_member(const char *p, size_t n, const char *key, size_t *off,
                 size_t *len)
{
	size_t i = ws(p, n, 0);
	int found = 0;
	if (i >= n || p[i] != '{')
		return -1;
	i = ws(p, n, i + 1);
	if (i < n && p[i] == '}')
		return ws(p, n, i + 1) == n ? 0 : -1;
	for (;;) {
		bool eq;
		if (i >= n || p[i] != '"' || string(p, n, &i, key, &eq) < 0)
			return -1;
		i = ws(p, n, i);
		if (i >= n || p[i] != ':')
			return -1;
		size_t start = ws(p, n, i + 1);
		/* The object itself is one level. */
		if ((i = value(p, n, start, JSCAN_MAX_DEPTH - 1)) == SIZE_MAX)
			return -1;
		if (eq) {
			if (found)
				return -1;
			found = 1;
			*off = start;
			*len = i - start;
		}
		i = ws(p, n, i);
		if (i < n && p[i] == ',') {
			i = ws(p, n, i + 1);
			continue;
		}
		if (i < n && p[i] == '}')
			return ws(p, n, i + 1) == n ? found : -1;
		return -1;
	}
}

size_t jscan_compact(const char *p, size_t n, char *out)
{
	size_t o = 0;
	bool in_str = false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (in_str) {
			out[o++] = c;
			if (c == '\\' && i + 1 < n)
				out[o++] = p[++i];
			else if (c == '"')
				in_str = false;
		} else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
			out[o++] = c;
			in_str = c == '"';
		}
	}
	return o;
}

size_t jscan_escape(const char *s, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	static const char from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
	size_t o = 0;
	if (n > SIZE_MAX / 6 - 1)
		return SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *k = c ? strchr(from, c) : NULL;
		char e[6] = {'\\'};
		size_t len = 2;
		if (c >= 0x80) {
			len = utf8_len((const unsigned char *)s + i, n - i);
			if (!len)
				return SIZE_MAX;
			if (out)
				memcpy(out + o, s + i, len);
			o += len;
			i += len - 1;
			continue;
		}
		if (k) {
			e[1] = to[k - from];
		} else if (c < 0x20) {
			memcpy(e + 1, "u00", 3);
			e[4] = hex[c >> 4];
			e[5] = hex[c & 15];
			len = 6;
		} else {
			e[0] = (char)c;
			len = 1;
		}
		if (out)
			memcpy(out + o, e, len);
		o += len;
	}
	return o;
}
