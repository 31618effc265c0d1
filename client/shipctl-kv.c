/* SPDX-License-Identifier: MIT */
/* shipctl's KV commands. */
#include "shipctl.h"

const struct cmd kv_cmds[] = {
	{NULL, NULL, NULL, NULL},
};
