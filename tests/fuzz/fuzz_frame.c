/* SPDX-License-Identifier: MIT */
/* libFuzzer: what a client can send shipd, through the same steps shipd
 * takes (frame header, the in-place Publish reader, the check before
 * protobuf-c, protobuf-c). */
#include <stdint.h>
#include <string.h>

#include "ipc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ipc_arena arena;
	static bool ready;
	if (!ready) {
		ipc_arena_init(&arena);
		ready = true;
	}
	size_t off = 0;
	while (off < size) {
		const uint8_t *body;
		size_t blen, flen;
		if (ipc_frame_peek(data + off, size - off, 1u << 20, &body, &blen,
		                   &flen) != IPC_FRAME_OK)
			break;
		char why[128];
		bool safe = ipc_pb_check(&ship__client_frame__descriptor, body,
		                         blen, NULL, why, sizeof(why)) == 0;
		struct ipc_publish_view v;
		if (ipc_parse_publish(body, blen, &v)) {
			/* Everything it points at lies inside the frame, and the
			 * fast path takes nothing the check would refuse. */
			if (v.subject_len && (v.subject < (const char *)body ||
			                      v.subject + v.subject_len >
			                              (const char *)body + blen))
				__builtin_trap();
			if (v.len && (v.data < body || v.data + v.len > body + blen))
				__builtin_trap();
			if (!safe)
				__builtin_trap();
		}
		off += flen;
		if (!safe)
			continue;
		/* What the check passes, protobuf-c decodes. */
		Ship__ClientFrame *f =
			ship__client_frame__unpack(&arena.pb, blen, body);
		if (!f)
			__builtin_trap();
		if (f->body_case == SHIP__CLIENT_FRAME__BODY_SUBSCRIBE)
			(void)ipc_subject_pattern_valid(f->subscribe->subject);
		ipc_arena_reset(&arena);
	}
	return 0;
}
