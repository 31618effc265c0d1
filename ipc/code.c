/* SPDX-License-Identifier: MIT */
/* Names of the protocol's status codes. */
#include "ipc.h"

const char *ipc_code_name(Ship__Code c)
{
	switch (c) {
	case SHIP__CODE__OK:
		return "ok";
	case SHIP__CODE__INVALID_ARGUMENT:
		return "invalid argument";
	case SHIP__CODE__NOT_FOUND:
		return "not found";
	case SHIP__CODE__ALREADY_EXISTS:
		return "already exists";
	case SHIP__CODE__WRONG_REVISION:
		return "wrong revision";
	case SHIP__CODE__PERMISSION_DENIED:
		return "permission denied";
	case SHIP__CODE__UNAVAILABLE:
		return "NATS unavailable";
	case SHIP__CODE__TIMEOUT:
		return "timeout";
	case SHIP__CODE__RESOURCE_EXHAUSTED:
		return "resource exhausted";
	case SHIP__CODE__INTERNAL:
		return "internal error";
	case SHIP__CODE__NO_RESPONDERS:
		return "no responders";
	case SHIP__CODE__UNIMPLEMENTED:
		return "unimplemented";
	case SHIP__CODE__CONFLICT:
		return "conflict";
	case SHIP__CODE__CORRUPT:
		return "corrupt";
	default:
		return "unknown status";
	}
}
