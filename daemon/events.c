/* SPDX-License-Identifier: MIT */
/* events: placeholder until the building block lands. */
#include "shipd.h"

bool events_dispatch(struct client *c, const Ship__ClientFrame *f)
{
	return false;
}

void events_client_gone(struct client *c)
{
}

void events_link_changed(bool up)
{
}

void events_finish(void)
{
}
