/* SPDX-License-Identifier: MIT */
/* libFuzzer: what a client can send shipd, through the same steps shipd
 * takes (frame header, the in-place Publish reader, protobuf-c). */
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
		struct ipc_publish_view v;
		if (ipc_parse_publish(body, blen, &v)) {
			/* Everything it points at lies inside the frame. */
			if (v.subject_len && (v.subject < (const char *)body ||
			                      v.subject + v.subject_len >
			                              (const char *)body + blen))
				__builtin_trap();
			if (v.len && (v.data < body || v.data + v.len > body + blen))
				__builtin_trap();
		}
		Ship__ClientFrame *f =
			ship__client_frame__unpack(&arena.pb, blen, body);
		if (f && f->body_case == SHIP__CLIENT_FRAME__BODY_SUBSCRIBE)
			(void)ipc_subject_pattern_valid(f->subscribe->subject);
		ipc_arena_reset(&arena);
		off += flen;
	}
	return 0;
}
