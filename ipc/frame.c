/* SPDX-License-Identifier: MIT */
/* Frame headers: checked before anything is allocated for the body. */
#include <errno.h>

#include "ipc.h"

enum ipc_frame_status ipc_frame_peek(const uint8_t *buf, size_t len,
                                     size_t max_body, const uint8_t **body,
                                     size_t *body_len, size_t *frame_len)
{
	if (len < 1)
		return IPC_FRAME_PARTIAL;
	/* The version byte comes first, so garbage is refused at once. */
	if (buf[0] != IPC_FRAME_VERSION)
		return IPC_FRAME_BAD_VERSION;
	if (len < IPC_HDR_LEN)
		return IPC_FRAME_PARTIAL;
	size_t n = (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3];
	if (n > max_body)
		return IPC_FRAME_TOO_BIG;
	if (len - IPC_HDR_LEN < n)
		return IPC_FRAME_PARTIAL;
	*body = buf + IPC_HDR_LEN;
	*body_len = n;
	*frame_len = IPC_HDR_LEN + n;
	return IPC_FRAME_OK;
}

const char *ipc_frame_strerror(enum ipc_frame_status st)
{
	switch (st) {
	case IPC_FRAME_OK:
		return "ok";
	case IPC_FRAME_PARTIAL:
		return "incomplete frame";
	case IPC_FRAME_BAD_VERSION:
		return "bad framing version (not a shipd client?)";
	case IPC_FRAME_TOO_BIG:
		return "frame larger than the limit";
	}
	return "unknown frame status";
}

void ipc_frame_header(uint8_t hdr[IPC_HDR_LEN], size_t body_len)
{
	hdr[0] = IPC_FRAME_VERSION;
	hdr[1] = (uint8_t)(body_len >> 16);
	hdr[2] = (uint8_t)(body_len >> 8);
	hdr[3] = (uint8_t)body_len;
}

int ipc_frame_pack(struct ipc_buf *b, const ProtobufCMessage *m,
                   size_t max_body)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	if (n > max_body || n > IPC_FRAME_LIMIT) {
		errno = EMSGSIZE;
		return -1;
	}
	uint8_t *t = ipc_buf_reserve(b, IPC_HDR_LEN + n);
	if (!t)
		return -1;
	ipc_frame_header(t, n);
	protobuf_c_message_pack(m, t + IPC_HDR_LEN);
	b->len += IPC_HDR_LEN + n;
	return 0;
}
