/*
 * NAME
 *	mk_rate 3h
 * SUMMARY
 *	event rates per key (client address, sender) and timed bans
 * SYNOPSIS
 *	#include "mk_rate.h"
 *
 *	struct mk_rate *mk_rate_create(size_t max_keys);
 *	double	mk_rate_hit(struct mk_rate *rate, const char *key, long long window, time_t now);
 *	double	mk_rate_peek(struct mk_rate *rate, const char *key, long long window, time_t now);
 *	void	mk_rate_ban(struct mk_rate *rate, const char *key, time_t now, time_t until);
 *	time_t	mk_rate_banned(struct mk_rate *rate, const char *key, time_t now);
 *	void	mk_rate_free(struct mk_rate *rate);
 * DESCRIPTION
 *	mk_rate_hit() counts one event for the key and returns the number of
 *	events in the last window seconds, including this one. It uses a
 *	sliding-window counter: the current fixed window's count plus the
 *	previous window's count weighted by how much of it still overlaps.
 *	That costs two counters per key, whatever the limit, and is exact
 *	when events are spread evenly. mk_rate_peek() returns the same
 *	without counting. The window of a key is fixed by its first use.
 *
 *	mk_rate_ban() bans a key until a time; mk_rate_banned() returns that
 *	time while the ban lasts, else 0.
 *
 *	Keys idle for two windows, and expired bans, are dropped as the
 *	table is used; when it still holds max_keys keys, the keys not used
 *	in the current second go, then every key but the bans. Thread-safe.
 */
#ifndef MK_RATE_H
#define MK_RATE_H

#include <stddef.h>
#include <time.h>

struct mk_rate;

struct mk_rate *mk_rate_create(size_t max_keys);
double mk_rate_hit(struct mk_rate *rate, const char *key, long long window, time_t now);
double mk_rate_peek(struct mk_rate *rate, const char *key, long long window, time_t now);
void mk_rate_ban(struct mk_rate *rate, const char *key, time_t now, time_t until);
time_t mk_rate_banned(struct mk_rate *rate, const char *key, time_t now);
void mk_rate_free(struct mk_rate *rate);

#endif
