/* SPDX-License-Identifier: MIT */
/* The table of building blocks: which block handles each kind of request,
 * and the hooks every block has for a client gone, the NATS link coming
 * up or going down, and shutdown. The socket layer dispatches through it
 * and names no block. */
#include <stdlib.h>

#include "shipd.h"

#define KINDS_MAX 256 /* ClientFrame body field numbers */

static const struct block *const blocks[] = {
	&admin_block,  &pubsub_block, &kv_block,
	&registry_block, &events_block, &channels_block,
	&obj_block,    &jobs_block,     &svc_block,
	&uplink_block, &monitor_block,
};

#define N_BLOCKS (sizeof(blocks) / sizeof(blocks[0]))

static block_request_fn *handlers[KINDS_MAX];
static bool payloads[KINDS_MAX];
static signed char owners[KINDS_MAX]; /* index in blocks + 1, 0: none */

void blocks_init(void)
{
	for (size_t i = 0; i < N_BLOCKS; i++) {
		for (const struct block_request *r = blocks[i]->requests;
		     r && r->kind; r++) {
			if ((unsigned)r->kind >= KINDS_MAX || handlers[r->kind])
				fatalx("%s: block %s: request kind %d taken or "
				       "out of range",
				       __func__, blocks[i]->name, (int)r->kind);
			handlers[r->kind] = r->fn;
			payloads[r->kind] = r->payload;
			owners[r->kind] = (signed char)(i + 1);
		}
	}
}

block_request_fn *blocks_handler(int kind)
{
	return kind > 0 && kind < KINDS_MAX ? handlers[kind] : NULL;
}

bool blocks_payload(int kind)
{
	return kind > 0 && kind < KINDS_MAX && payloads[kind];
}

int blocks_index(int kind)
{
	return kind > 0 && kind < KINDS_MAX ? owners[kind] - 1 : -1;
}

size_t blocks_count(void)
{
	return N_BLOCKS;
}

const char *blocks_name(int i)
{
	return i >= 0 && (size_t)i < N_BLOCKS ? blocks[i]->name : NULL;
}

void blocks_client_gone(struct client *c)
{
	for (size_t i = 0; i < N_BLOCKS; i++)
		if (blocks[i]->client_gone)
			blocks[i]->client_gone(c);
}

void blocks_link_changed(bool up)
{
	for (size_t i = 0; i < N_BLOCKS; i++)
		if (blocks[i]->link_changed)
			blocks[i]->link_changed(up);
}

bool blocks_busy(void)
{
	for (size_t i = 0; i < N_BLOCKS; i++)
		if (blocks[i]->busy && blocks[i]->busy())
			return true;
	return false;
}

void blocks_finish(void)
{
	for (size_t i = 0; i < N_BLOCKS; i++)
		if (blocks[i]->finish)
			blocks[i]->finish();
}

bool blocks_drain(void)
{
	bool any = false;
	for (size_t i = 0; i < N_BLOCKS; i++)
		if (blocks[i]->drain && blocks[i]->drain())
			any = true;
	return any;
}
