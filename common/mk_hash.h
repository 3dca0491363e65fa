/*
 * NAME
 *	mk_hash 3h
 * SUMMARY
 *	hash table with byte-string keys
 * SYNOPSIS
 *	#include "mk_hash.h"
 *
 *	struct mk_hash *mk_hash_create(void (*free_value)(void *));
 *	void	*mk_hash_find(const struct mk_hash *h, const void *key, size_t len);
 *	void	mk_hash_set(struct mk_hash *h, const void *key, size_t len, void *value);
 *	bool	mk_hash_delete(struct mk_hash *h, const void *key, size_t len);
 *	size_t	mk_hash_count(const struct mk_hash *h);
 *	void	mk_hash_walk(struct mk_hash *h, bool (*keep)(void *value, void *arg), void *arg);
 *	void	mk_hash_free(struct mk_hash *h);
 * DESCRIPTION
 *	A chained hash table that copies its keys and owns its values
 *	(freed with free_value, which may be NULL). Keys are hashed with a
 *	per-process random seed, so that a client choosing the keys (its
 *	address, a sender) cannot force collisions.
 *
 *	mk_hash_set() replaces and frees an existing value. mk_hash_walk()
 *	visits every value and deletes those for which keep() returns false.
 *
 *	Not thread-safe: callers lock around it.
 */
#ifndef MK_HASH_H
#define MK_HASH_H

#include <stdbool.h>
#include <stddef.h>

struct mk_hash;

struct mk_hash *mk_hash_create(void (*free_value)(void *));
void *mk_hash_find(const struct mk_hash *h, const void *key, size_t len);
void mk_hash_set(struct mk_hash *h, const void *key, size_t len, void *value);
bool mk_hash_delete(struct mk_hash *h, const void *key, size_t len);
size_t mk_hash_count(const struct mk_hash *h);
void mk_hash_walk(struct mk_hash *h, bool (*keep)(void *value, void *arg), void *arg);
void mk_hash_free(struct mk_hash *h);

#endif
