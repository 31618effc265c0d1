/* SPDX-License-Identifier: MIT */
/* Byte buffers for socket I/O: append at the tail, consume from the head. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipc.h"

void ipc_buf_finish(struct ipc_buf *b)
{
	free(b->data);
	*b = (struct ipc_buf){0};
}

uint8_t *ipc_buf_reserve(struct ipc_buf *b, size_t n)
{
	if (b->cap - b->len >= n)
		return b->data + b->len;
	/* Slide the unconsumed bytes down before growing. */
	size_t used = b->len - b->off;
	if (b->off > 0 && b->cap - used >= n) {
		memmove(b->data, b->data + b->off, used);
		b->off = 0;
		b->len = used;
		return b->data + b->len;
	}
	if (n > SIZE_MAX / 2 - used) {
		errno = ENOMEM;
		return NULL;
	}
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < used + n)
		cap *= 2;
	uint8_t *p = malloc(cap);
	if (!p)
		return NULL;
	if (used)
		memcpy(p, b->data + b->off, used);
	free(b->data);
	b->data = p;
	b->cap = cap;
	b->off = 0;
	b->len = used;
	return p + used;
}

int ipc_buf_append(struct ipc_buf *b, const void *p, size_t n)
{
	uint8_t *t = ipc_buf_reserve(b, n);
	if (!t)
		return -1;
	if (n)
		memcpy(t, p, n);
	b->len += n;
	return 0;
}

void ipc_buf_consume(struct ipc_buf *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len)
		b->off = b->len = 0;
}

void ipc_buf_reset(struct ipc_buf *b, size_t keep)
{
	b->off = b->len = 0;
	if (b->cap > keep) {
		free(b->data);
		b->data = NULL;
		b->cap = 0;
	}
}

ssize_t ipc_buf_read(struct ipc_buf *b, int fd, size_t max)
{
	uint8_t *t = ipc_buf_reserve(b, max);
	if (!t)
		return -1;
	ssize_t n;
	do
		n = read(fd, t, max);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		b->len += (size_t)n;
	return n;
}

ssize_t ipc_buf_write(struct ipc_buf *b, int fd)
{
	ssize_t n;
	do
		n = send(fd, ipc_buf_head(b), ipc_buf_used(b), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		ipc_buf_consume(b, (size_t)n);
	return n;
}
