/* SPDX-License-Identifier: MIT */
/* A small open-addressing map from request/stream ids to objects. */
#include <errno.h>
#include <stdlib.h>

#include "ipc.h"

#define EMPTY 0
#define TOMB UINT64_MAX

static size_t slot(uint64_t key, size_t cap)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	return (size_t)key & (cap - 1);
}

void ipc_idmap_finish(struct ipc_idmap *m)
{
	free(m->keys);
	free(m->vals);
	*m = (struct ipc_idmap){0};
}

void *ipc_idmap_get(const struct ipc_idmap *m, uint64_t key)
{
	if (!m->cap || key == EMPTY || key == TOMB)
		return NULL;
	for (size_t i = slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key)
			return m->vals[i];
		if (m->keys[i] == EMPTY)
			return NULL;
	}
}

static int grow(struct ipc_idmap *m)
{
	size_t cap = m->cap ? m->cap : 8;
	/* Rehash in place size when tombstones are the problem. */
	if (m->count * 2 >= cap)
		cap *= 2;
	uint64_t *keys = calloc(cap, sizeof(*keys));
	void **vals = calloc(cap, sizeof(*vals));
	if (!keys || !vals) {
		free(keys);
		free(vals);
		errno = ENOMEM;
		return -1;
	}
	for (size_t i = 0; i < m->cap; i++) {
		if (m->keys[i] == EMPTY || m->keys[i] == TOMB)
			continue;
		size_t j = slot(m->keys[i], cap);
		while (keys[j] != EMPTY)
			j = (j + 1) & (cap - 1);
		keys[j] = m->keys[i];
		vals[j] = m->vals[i];
	}
	free(m->keys);
	free(m->vals);
	m->keys = keys;
	m->vals = vals;
	m->cap = cap;
	m->tombs = 0;
	return 0;
}

int ipc_idmap_put(struct ipc_idmap *m, uint64_t key, void *val)
{
	if (key == EMPTY || key == TOMB) {
		errno = EINVAL;
		return -1;
	}
	if ((m->count + m->tombs + 1) * 4 > m->cap * 3 && grow(m) < 0)
		return -1;
	size_t tomb = SIZE_MAX;
	for (size_t i = slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key) {
			m->vals[i] = val;
			return 0;
		}
		if (m->keys[i] == TOMB && tomb == SIZE_MAX)
			tomb = i;
		if (m->keys[i] == EMPTY) {
			if (tomb != SIZE_MAX) {
				i = tomb;
				m->tombs--;
			}
			m->keys[i] = key;
			m->vals[i] = val;
			m->count++;
			return 0;
		}
	}
}

void *ipc_idmap_del(struct ipc_idmap *m, uint64_t key)
{
	if (!m->cap || key == EMPTY || key == TOMB)
		return NULL;
	for (size_t i = slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key) {
			void *v = m->vals[i];
			m->keys[i] = TOMB;
			m->vals[i] = NULL;
			m->count--;
			m->tombs++;
			return v;
		}
		if (m->keys[i] == EMPTY)
			return NULL;
	}
}

bool ipc_idmap_next(const struct ipc_idmap *m, size_t *pos, uint64_t *key,
                    void **val)
{
	for (; *pos < m->cap; (*pos)++) {
		if (m->keys[*pos] == EMPTY || m->keys[*pos] == TOMB)
			continue;
		if (key)
			*key = m->keys[*pos];
		if (val)
			*val = m->vals[*pos];
		(*pos)++;
		return true;
	}
	return false;
}
