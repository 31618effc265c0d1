/* SPDX-License-Identifier: MIT */
/* For harnesses of readers that take a path: the input as a file. */
#ifndef FUZZ_FILE_H
#define FUZZ_FILE_H

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* Write data to a new temporary file, its name into path (from a
 * "/tmp/...-XXXXXX" template); 0, or -1 with nothing left behind. */
static inline int fuzz_file(const uint8_t *data, size_t size, char *path)
{
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

#endif
