/* SPDX-License-Identifier: MIT */
/* A walk over a client's protobuf bytes before protobuf-c unpacks them, so
 * what protobuf-c would silently cut (a string at its first NUL) or let
 * balloon (a million tiny elements, each its own allocation) is refused,
 * with a reason, instead of decoded. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ipc.h"

#define VARINT_MAX 10        /* bytes of a 64-bit varint */
#define PREFIX_MAX 5         /* bytes of a tag or length, as protobuf-c reads */
#define FIELD_MAX 0x1fffffff /* the largest field number */

struct walk {
	size_t max_repeated; /* at most what a counter in struct level holds */
	size_t max_messages;
	size_t messages; /* submessages so far, in the whole frame */
	size_t unknown;  /* unknown fields so far, in the whole frame */
	char *why;
	size_t whylen;
};

/* One message being walked. */
struct level {
	const ProtobufCMessageDescriptor *desc;
	unsigned depth; /* 0 for the outermost */
	/* Occurrences of each field (by index), elements for repeated ones. */
	uint32_t seen[IPC_PB_MAX_FIELDS];
};

/* One field as it lies on the wire. */
struct rec {
	uint32_t number;
	unsigned wire;
	const uint8_t *body; /* the value, or what the length prefixes */
	size_t len;
};

static int fail(struct walk *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(struct walk *w, const char *fmt, ...)
{
	if (w->whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(w->why, w->whylen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static const uint8_t *malformed(struct walk *w, const char *what)
{
	fail(w, "malformed protobuf: %s", what);
	return NULL;
}

/* ---- strings ---- */

/* Well-formed UTF-8 by its first byte (Unicode table 3-7): the ranges
 * leave out overlongs, surrogates and anything past U+10FFFF. */
static const struct {
	uint8_t first, last; /* lead bytes */
	uint8_t len;         /* bytes in the sequence */
	uint8_t lo, hi;      /* range of the second byte; later ones 80..BF */
} utf8_leads[] = {
	{0xc2, 0xdf, 2, 0x80, 0xbf}, {0xe0, 0xe0, 3, 0xa0, 0xbf},
	{0xe1, 0xec, 3, 0x80, 0xbf}, {0xed, 0xed, 3, 0x80, 0x9f},
	{0xee, 0xef, 3, 0x80, 0xbf}, {0xf0, 0xf0, 4, 0x90, 0xbf},
	{0xf1, 0xf3, 4, 0x80, 0xbf}, {0xf4, 0xf4, 4, 0x80, 0x8f},
};

/* Bytes of the well-formed sequence at p, or 0. */
static size_t utf8_seq(const uint8_t *p, const uint8_t *end)
{
	if (*p < 0x80)
		return 1;
	size_t nleads = sizeof(utf8_leads) / sizeof(utf8_leads[0]);
	for (size_t i = 0; i < nleads; i++) {
		if (*p < utf8_leads[i].first || *p > utf8_leads[i].last)
			continue;
		size_t n = utf8_leads[i].len;
		if ((size_t)(end - p) < n || p[1] < utf8_leads[i].lo ||
		    p[1] > utf8_leads[i].hi)
			return 0;
		for (size_t k = 2; k < n; k++)
			if ((p[k] & 0xc0) != 0x80)
				return 0;
		return n;
	}
	return 0;
}

static bool ascii8(const uint8_t *p)
{
	uint64_t w;
	memcpy(&w, p, sizeof(w));
	return !(w & 0x8080808080808080u);
}

/* Strings are mostly ASCII: that is taken a word at a time. */
static bool utf8_valid(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len;
	while (p < end) {
		if (end - p >= 8 && ascii8(p)) {
			p += 8;
			continue;
		}
		size_t n = utf8_seq(p, end);
		if (!n)
			return false;
		p += n;
	}
	return true;
}

bool ipc_pb_string_ok(const void *s, size_t len)
{
	return !len || (!memchr(s, 0, len) && utf8_valid(s, len));
}

static int check_string(struct walk *w, const ProtobufCFieldDescriptor *f,
                        const struct rec *r)
{
	if (r->len && memchr(r->body, 0, r->len))
		return fail(w, "field '%s' holds a NUL byte", f->name);
	if (r->len && !utf8_valid(r->body, r->len))
		return fail(w, "field '%s' is not valid UTF-8", f->name);
	return 0;
}

/* ---- the wire ---- */

/* A varint of at most max bytes; NULL if it has not ended by then. */
static const uint8_t *get_varint(const uint8_t *p, const uint8_t *end,
                                 size_t max, uint64_t *v)
{
	uint64_t r = 0;
	for (size_t i = 0; i < max && p < end; i++) {
		uint8_t c = *p++;
		r |= (uint64_t)(c & 0x7f) << (7 * i);
		if (!(c & 0x80)) {
			*v = r;
			return p;
		}
	}
	return NULL;
}

/* The length in *n of the value at p of a field with this wire type;
 * returns where the value starts (after a length prefix), or NULL. */
static const uint8_t *value_len(struct walk *w, unsigned wire,
                                const uint8_t *p, const uint8_t *end,
                                uint64_t *n)
{
	const uint8_t *q;
	switch (wire) {
	case PROTOBUF_C_WIRE_TYPE_VARINT:
		if (!(q = get_varint(p, end, VARINT_MAX, n)))
			return malformed(w, "truncated or overlong varint");
		*n = (uint64_t)(q - p);
		return p;
	case PROTOBUF_C_WIRE_TYPE_64BIT:
		*n = 8;
		return p;
	case PROTOBUF_C_WIRE_TYPE_32BIT:
		*n = 4;
		return p;
	case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED:
		if (!(q = get_varint(p, end, PREFIX_MAX, n)))
			return malformed(w, "truncated or overlong length");
		return q;
	case 3:
	case 4:
		return malformed(w, "groups are not supported");
	default:
		return malformed(w, "unknown wire type");
	}
}

/* Read the field at p into r; returns what follows it, or NULL. */
static const uint8_t *get_rec(struct walk *w, const uint8_t *p,
                              const uint8_t *end, struct rec *r)
{
	uint64_t key, n;
	if (!(p = get_varint(p, end, PREFIX_MAX, &key)))
		return malformed(w, "truncated or overlong tag");
	if (key >> 3 == 0 || key >> 3 > FIELD_MAX)
		return malformed(w, "field number out of range");
	r->number = (uint32_t)(key >> 3);
	r->wire = (unsigned)(key & 7);
	if (!(p = value_len(w, r->wire, p, end, &n)))
		return NULL;
	if (n > (uint64_t)(end - p))
		return malformed(w, "field runs past the end");
	r->body = p;
	r->len = (size_t)n;
	return p + n;
}

static unsigned wire_of(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return PROTOBUF_C_WIRE_TYPE_32BIT;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return PROTOBUF_C_WIRE_TYPE_64BIT;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
	default:
		return PROTOBUF_C_WIRE_TYPE_VARINT;
	}
}

/* A repeated scalar sent as one length-prefixed run (protobuf-c reads it
 * so whatever the field's packed flag says). */
static bool is_packed(const ProtobufCFieldDescriptor *f, const struct rec *r)
{
	return f->label == PROTOBUF_C_LABEL_REPEATED &&
	       r->wire == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED &&
	       wire_of(f->type) != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
}

/* Elements of a packed run; false if they do not tile its bytes. */
static bool count_packed(ProtobufCType t, const struct rec *r, size_t *n)
{
	unsigned wire = wire_of(t);
	if (wire != PROTOBUF_C_WIRE_TYPE_VARINT) {
		size_t size = wire == PROTOBUF_C_WIRE_TYPE_32BIT ? 4 : 8;
		*n = r->len / size;
		return r->len % size == 0;
	}
	const uint8_t *p = r->body, *end = r->body + r->len;
	uint64_t v;
	for (*n = 0; p < end; (*n)++)
		if (!(p = get_varint(p, end, VARINT_MAX, &v)))
			return false;
	return true;
}

/* ---- messages ---- */

static int walk_msg(struct walk *w, const ProtobufCMessageDescriptor *d,
                    const uint8_t *p, size_t len, unsigned depth);

/* Another member of f's oneof already in this message, or NULL. */
static const ProtobufCFieldDescriptor *
oneof_rival(const struct level *l, const ProtobufCFieldDescriptor *f)
{
	if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
		return NULL;
	for (unsigned i = 0; i < l->desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *g = &l->desc->fields[i];
		if (l->seen[i] && (g->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    g->quantifier_offset == f->quantifier_offset)
			return g;
	}
	return NULL;
}

/* Count n more elements of f. A singular field may come only once: a
 * second one is legal protobuf, but no encoder writes it, and protobuf-c
 * merges a submessage sent again into the first, copying their arrays each
 * time (quadratic in the repeats). */
static int tally(struct walk *w, struct level *l,
                 const ProtobufCFieldDescriptor *f, size_t n)
{
	uint32_t *seen = &l->seen[f - l->desc->fields];
	const ProtobufCFieldDescriptor *rival;
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		if (n > w->max_repeated - *seen)
			return fail(w, "field '%s' has more than %zu elements",
			            f->name, w->max_repeated);
		*seen += (uint32_t)n;
		return 0;
	}
	if (*seen)
		return fail(w, "field '%s' appears more than once", f->name);
	if ((rival = oneof_rival(l, f)))
		return fail(w,
		            "fields '%s' and '%s' are both set, in one oneof",
		            rival->name, f->name);
	*seen = 1;
	return 0;
}

static int submessage(struct walk *w, const struct level *l,
                      const ProtobufCFieldDescriptor *f, const struct rec *r)
{
	if (++w->messages > w->max_messages)
		return fail(w, "more than %zu messages", w->max_messages);
	if (l->depth >= IPC_PB_MAX_DEPTH)
		return fail(w, "field '%s' is nested more than %d deep",
		            f->name, IPC_PB_MAX_DEPTH);
	return walk_msg(w, f->descriptor, r->body, r->len, l->depth + 1);
}

static int known_field(struct walk *w, struct level *l,
                       const ProtobufCFieldDescriptor *f, const struct rec *r)
{
	size_t n = 1;
	if (is_packed(f, r)) {
		if (!count_packed(f->type, r, &n))
			return fail(w,
			            "field '%s' holds a malformed packed array",
			            f->name);
		/* Even an empty run is a record protobuf-c keeps. */
		n = n ? n : 1;
	} else if (r->wire != wire_of(f->type)) {
		return fail(w, "field '%s' has the wrong wire type", f->name);
	}
	if (tally(w, l, f, n) < 0)
		return -1;
	if (f->type == PROTOBUF_C_TYPE_STRING)
		return check_string(w, f, r);
	if (f->type == PROTOBUF_C_TYPE_MESSAGE)
		return submessage(w, l, f, r);
	return 0;
}

/* protobuf-c keeps a copy of each unknown field: they are counted in the
 * whole frame, not per message, so nesting cannot multiply them. */
static int unknown_field(struct walk *w)
{
	if (++w->unknown > w->max_repeated)
		return fail(w, "more than %zu unknown fields", w->max_repeated);
	return 0;
}

static int walk_msg(struct walk *w, const ProtobufCMessageDescriptor *d,
                    const uint8_t *p, size_t len, unsigned depth)
{
	struct level l;
	const uint8_t *end = p + len;
	if (d->n_fields > IPC_PB_MAX_FIELDS)
		return fail(w, "message '%s' has too many fields to check",
		            d->name);
	l.desc = d;
	l.depth = depth;
	memset(l.seen, 0, d->n_fields * sizeof(l.seen[0]));
	while (p < end) {
		struct rec r;
		if (!(p = get_rec(w, p, end, &r)))
			return -1;
		const ProtobufCFieldDescriptor *f =
			protobuf_c_message_descriptor_get_field(d, r.number);
		if ((f ? known_field(w, &l, f, &r) : unknown_field(w)) < 0)
			return -1;
	}
	return 0;
}

int ipc_pb_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                 size_t len, const struct ipc_pb_limits *lim, char *why,
                 size_t whylen)
{
	static const struct ipc_pb_limits defaults = {
		.max_repeated = IPC_PB_MAX_REPEATED,
		.max_messages = IPC_PB_MAX_MESSAGES,
	};
	if (!lim)
		lim = &defaults;
	struct walk w = {
		.max_repeated =
			lim->max_repeated < UINT32_MAX ? lim->max_repeated
			                               : UINT32_MAX,
		.max_messages = lim->max_messages,
		.why = why,
		.whylen = why ? whylen : 0,
	};
	if (w.whylen)
		why[0] = '\0';
	return len ? walk_msg(&w, desc, data, len, 0) : 0;
}
