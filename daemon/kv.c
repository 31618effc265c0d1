/* SPDX-License-Identifier: MIT */
/* kv: placeholder until the building block lands. */
#include "shipd.h"

bool kv_dispatch(struct client *c, const Ship__ClientFrame *f)
{
	return false;
}

void kv_client_gone(struct client *c)
{
}

void kv_link_changed(bool up)
{
}

void kv_finish(void)
{
}
