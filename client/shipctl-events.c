/* SPDX-License-Identifier: MIT */
/* shipctl's EventBus and Channels commands. */
#include "shipctl.h"

const struct cmd event_cmds[] = {
	{NULL, NULL, NULL, NULL},
};
