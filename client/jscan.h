/* SPDX-License-Identifier: MIT */
/* jscan: libshipc's strict, bounded JSON scanner; it checks and slices JSON
 * text in place and builds no tree. */
#ifndef JSCAN_H
#define JSCAN_H

#include <stddef.h>

/* Nesting deeper than this is refused (serde_json's own limit, so what we
 * accept a noesis-ship peer reads). */
#define JSCAN_MAX_DEPTH 128

/*
 * The rules are RFC 8259's, strictly: one value, whitespace around it
 * allowed; strings of well-formed UTF-8 without control characters, their
 * \u escapes forming no lone surrogate; numbers without leading zeros or
 * a bare sign or point. No function reads past p[n - 1] or allocates;
 * time is linear in n.
 */

/* 0 if p[0..n) is one JSON value, else -1. */
int jscan_valid(const char *p, size_t n);

/* Skip the value at *pos (after any whitespace) and set *pos just past
 * it. Returns 0, or -1 (*pos unchanged) if no valid value starts there. */
int jscan_skip(const char *p, size_t n, size_t *pos);

/*
 * p[0..n) must be one JSON object: find the member named key (compared
 * after unescaping) among its own members and set *off and *len to its
 * value's text. Returns 1 if found, 0 if absent, -1 if the text is not a
 * valid object or names key twice (which a reader could take either way).
 */
int jscan_member(const char *p, size_t n, const char *key, size_t *off,
                 size_t *len);

/* Copy valid JSON text p[0..n) to out (room for n bytes) without the
 * whitespace outside its strings. Returns the length written. */
size_t jscan_compact(const char *p, size_t n, char *out);

/*
 * Write UTF-8 s[0..n) as the inside of a JSON string into out (NULL: only
 * count), escaping what serde_json escapes and as it does: " \ and the
 * control characters (\b \f \n \r \t, else \u00xx). Returns the length,
 * or (size_t)-1 if s is not well-formed UTF-8.
 */
size_t jscan_escape(const char *s, size_t n, char *out);

#endif
