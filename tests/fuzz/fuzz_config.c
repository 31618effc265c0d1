/* SPDX-License-Identifier: MIT */
/* libFuzzer: shipd's configuration parser on arbitrary files, and the
 * printed configuration read back to the same result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_file.h"
#include "shipd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *print(const struct config *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_print(c, f);
	fclose(f);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[] = "/tmp/fuzz-shipd-XXXXXX";
	if (fuzz_file(data, size, path) < 0)
		return 0;
	FILE *errs = fopen("/dev/null", "w");
	struct config c;
	config_defaults(&c);
	if (config_load(&c, path, errs) == 0) {
		/* What -nv prints must read back to itself. */
		char *once = print(&c);
		FILE *f = fopen(path, "w");
		fputs(once, f);
		fclose(f);
		struct config again;
		config_defaults(&again);
		if (config_load(&again, path, errs) != 0)
			__builtin_trap();
		char *twice = print(&again);
		if (strcmp(once, twice) != 0)
			__builtin_trap();
		free(once);
		free(twice);
		config_finish(&again);
	}
	config_finish(&c);
	fclose(errs);
	unlink(path);
	return 0;
}
