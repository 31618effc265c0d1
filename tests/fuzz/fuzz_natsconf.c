/* SPDX-License-Identifier: MIT */
/* libFuzzer: shipctl's reader of nats-server configuration files
 * (natsconf.c, compiled in) on arbitrary files: it reads them or says
 * why, and what it read can be looked up, variables and all. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_file.h"
#include "natsconf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The last value at path is "$NAME". */
static bool last_is_variable(const struct natsconf *c, const char *path)
{
	const char *v = NULL;
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->v[i].path, path))
			v = c->v[i].value;
	return v && v[0] == '$' && v[1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[] = "/tmp/fuzz-natsconf-XXXXXX";
	if (fuzz_file(data, size, path) < 0)
		return 0;
	struct natsconf c;
	char err[256];
	err[0] = '\0';
	if (natsconf_read(path, &c, err, sizeof(err)) == 0) {
		/* Every entry can be looked up by its path and is counted;
		 * only a $variable set nowhere reads as absent. */
		for (size_t i = 0; i < c.n; i++) {
			int line = 0;
			if (!c.v[i].path || !c.v[i].value || c.v[i].line < 1 ||
			    natsconf_count(&c, c.v[i].path) == 0)
				__builtin_trap();
			const char *v = natsconf_get(&c, c.v[i].path, &line);
			if (v ? line < 1 : !last_is_variable(&c, c.v[i].path))
				__builtin_trap();
		}
		natsconf_finish(&c);
	} else if (c.n || c.v || !err[0] || !memchr(err, '\0', sizeof(err))) {
		/* A failure leaves c empty and says why. */
		__builtin_trap();
	}
	unlink(path);
	return 0;
}
