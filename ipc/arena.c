/* SPDX-License-Identifier: MIT */
/* A bump allocator so unpacking a frame costs no malloc in the common case. */
#include <stdlib.h>

#include "ipc.h"

#define ARENA_SIZE 16384
#define ARENA_ALIGN 16

static void *arena_alloc(void *data, size_t size)
{
	struct ipc_arena *a = data;
	size = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	if (a->mem && a->cap - a->used >= size) {
		void *p = a->mem + a->used;
		a->used += size;
		return p;
	}
	if (!a->mem && size <= ARENA_SIZE) {
		a->mem = malloc(ARENA_SIZE);
		if (!a->mem)
			return NULL;
		a->cap = ARENA_SIZE;
		a->used = size;
		return a->mem;
	}
	if (a->nbig == a->capbig) {
		size_t n = a->capbig ? a->capbig * 2 : 8;
		void **big = realloc(a->big, n * sizeof(*big));
		if (!big)
			return NULL;
		a->big = big;
		a->capbig = n;
	}
	void *p = malloc(size);
	if (!p)
		return NULL;
	a->big[a->nbig++] = p;
	a->spill += size;
	return p;
}

static void arena_free(void *data, void *p)
{
	/* Everything goes at reset. */
	(void)data;
	(void)p;
}

void ipc_arena_init(struct ipc_arena *a)
{
	*a = (struct ipc_arena){0};
	a->pb.alloc = arena_alloc;
	a->pb.free = arena_free;
	a->pb.allocator_data = a;
}

void ipc_arena_reset(struct ipc_arena *a)
{
	for (size_t i = 0; i < a->nbig; i++)
		free(a->big[i]);
	a->nbig = 0;
	a->used = 0;
	a->spill = 0;
}

void ipc_arena_finish(struct ipc_arena *a)
{
	ipc_arena_reset(a);
	free(a->big);
	free(a->mem);
	ipc_arena_init(a);
}
