/* SPDX-License-Identifier: MIT */
/* A raw protocol client for tests. */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <check.h>

#include "raw.h"

int raw_connect(const char *sock)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", sock);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	/* What shipd answers after a few JetStream round trips (a rename)
	 * can take seconds on a loaded 2-core machine: 5 s failed in CI. */
	struct timeval tv = {15, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

int raw_open(const char *sock)
{
	int fd = raw_connect(sock);
	raw_hello(fd, IPC_VERSION);
	Ship__ServerFrame *f = raw_read(fd);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->code, SHIP__CODE__OK);
	ship__server_frame__free_unpacked(f, NULL);
	return fd;
}

Ship__ServerFrame *raw_read(int fd)
{
	struct ipc_buf b = {0};
	for (;;) {
		const uint8_t *body;
		size_t blen, flen;
		if (ipc_frame_peek(ipc_buf_head(&b), ipc_buf_used(&b),
		                   IPC_FRAME_LIMIT, &body, &blen,
		                   &flen) == IPC_FRAME_OK) {
			Ship__ServerFrame *f =
				ship__server_frame__unpack(NULL, blen, body);
			/* One frame at a time: give back what follows it. */
			ck_assert_uint_eq(ipc_buf_used(&b), flen);
			ipc_buf_finish(&b);
			return f;
		}
		/* Never read past the frame being assembled. */
		size_t want = ipc_buf_used(&b) < IPC_HDR_LEN
		                      ? IPC_HDR_LEN - ipc_buf_used(&b)
		                      : 0;
		if (!want) {
			const uint8_t *h = ipc_buf_head(&b);
			size_t blen2 = ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3];
			want = IPC_HDR_LEN + blen2 - ipc_buf_used(&b);
		}
		if (ipc_buf_read(&b, fd, want) <= 0) {
			ipc_buf_finish(&b);
			return NULL;
		}
	}
}

Ship__ServerFrame *raw_reply(int fd, uint64_t id)
{
	for (int i = 0; i < 100000; i++) {
		Ship__ServerFrame *f = raw_read(fd);
		if (!f || f->id == id)
			return f;
		ship__server_frame__free_unpacked(f, NULL);
	}
	return NULL;
}

bool raw_closed(int fd)
{
	char c;
	for (int i = 0; i < 100000; i++) {
		ssize_t n = read(fd, &c, 1);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0)
			return false;
	}
	return false;
}

void raw_send(int fd, const void *p, size_t n)
{
	ck_assert_int_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

void raw_pack(struct ipc_buf *b, const Ship__ClientFrame *f)
{
	ck_assert_int_eq(ipc_frame_pack(b, &f->base, IPC_FRAME_LIMIT), 0);
}

void raw_frame(int fd, const Ship__ClientFrame *f)
{
	struct ipc_buf b = {0};
	raw_pack(&b, f);
	raw_send(fd, ipc_buf_head(&b), ipc_buf_used(&b));
	ipc_buf_finish(&b);
}

void raw_hello(int fd, unsigned version)
{
	Ship__ClientFrame f = SHIP__CLIENT_FRAME__INIT;
	Ship__Hello h = SHIP__HELLO__INIT;
	h.version = version;
	h.name = "raw";
	f.id = 1;
	f.body_case = SHIP__CLIENT_FRAME__BODY_HELLO;
	f.hello = &h;
	raw_frame(fd, &f);
}
