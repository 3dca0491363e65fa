/*
 * mk_rate - sliding-window event rates and bans. See mk_rate.h.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mk_hash.h"
#include "mk_rate.h"
#include "mk_util.h"

struct mk_rate_entry {
    time_t window_start;                /* start of the current fixed window */
    long long window;
    unsigned long current, previous;
    time_t banned_until;
    time_t last_used;
};

struct mk_rate {
    pthread_mutex_t lock;
    struct mk_hash *keys;
    size_t max_keys;
    time_t swept;
};

struct mk_rate *mk_rate_create(size_t max_keys)
{
    struct mk_rate *rate = mk_xcalloc(1, sizeof(*rate));

    pthread_mutex_init(&rate->lock, NULL);
    rate->keys = mk_hash_create(free);
    rate->max_keys = max_keys ? max_keys : 1;
    return rate;
}

struct mk_rate_sweep {
    time_t now;
    time_t cutoff;                      /* drop entries last used before this */
};

static bool mk_rate_keep(void *value, void *arg)
{
    const struct mk_rate_entry *e = value;
    const struct mk_rate_sweep *s = arg;

    if (e->banned_until > s->now)
        return true;
    if (s->cutoff)
        return e->last_used >= s->cutoff;
    return e->window > 0 && e->window_start + 2 * e->window > s->now;
}

static void mk_rate_sweep(struct mk_rate *rate, time_t now)
{
    struct mk_rate_sweep s = {now, 0};

    if (now != rate->swept && mk_hash_count(rate->keys) > 0) {
        rate->swept = now;
        mk_hash_walk(rate->keys, mk_rate_keep, &s);
    }
    /*
     * Still full of live keys (an attack from many addresses): keep only
     * the keys used this second, then only the bans.
     */
    if (mk_hash_count(rate->keys) >= rate->max_keys) {
        s.cutoff = now;
        mk_hash_walk(rate->keys, mk_rate_keep, &s);
    }
    if (mk_hash_count(rate->keys) >= rate->max_keys) {
        s.cutoff = now + 1;
        mk_hash_walk(rate->keys, mk_rate_keep, &s);
    }
}

static struct mk_rate_entry *mk_rate_entry(struct mk_rate *rate, const char *key, time_t now,
                                           bool create)
{
    struct mk_rate_entry *e = mk_hash_find(rate->keys, key, strlen(key));

    if (e == NULL && create) {
        mk_rate_sweep(rate, now);
        e = mk_xcalloc(1, sizeof(*e));
        mk_hash_set(rate->keys, key, strlen(key), e);
    }
    return e;
}

/* Move the fixed windows forward to now. */
static void mk_rate_advance(struct mk_rate_entry *e, long long window, time_t now)
{
    time_t start = now - now % window;

    if (e->window != window) {
        e->window = window;
        e->window_start = start;
        e->current = e->previous = 0;
        return;
    }
    if (start == e->window_start)
        return;
    e->previous = start - e->window_start == window ? e->current : 0;
    e->current = 0;
    e->window_start = start;
}

static double mk_rate_estimate(const struct mk_rate_entry *e, time_t now)
{
    double elapsed = (double) (now - e->window_start) / (double) e->window;

    return (double) e->current + (double) e->previous * (1.0 - elapsed);
}

double mk_rate_hit(struct mk_rate *rate, const char *key, long long window, time_t now)
{
    struct mk_rate_entry *e;
    double count;

    if (window <= 0)
        window = 1;
    pthread_mutex_lock(&rate->lock);
    e = mk_rate_entry(rate, key, now, true);
    mk_rate_advance(e, window, now);
    e->current++;
    e->last_used = now;
    count = mk_rate_estimate(e, now);
    pthread_mutex_unlock(&rate->lock);
    return count;
}

double mk_rate_peek(struct mk_rate *rate, const char *key, long long window, time_t now)
{
    struct mk_rate_entry *e;
    double count = 0;

    if (window <= 0)
        window = 1;
    pthread_mutex_lock(&rate->lock);
    if ((e = mk_rate_entry(rate, key, now, false)) != NULL) {
        mk_rate_advance(e, window, now);
        count = mk_rate_estimate(e, now);
    }
    pthread_mutex_unlock(&rate->lock);
    return count;
}

void mk_rate_ban(struct mk_rate *rate, const char *key, time_t now, time_t until)
{
    struct mk_rate_entry *e;

    pthread_mutex_lock(&rate->lock);
    e = mk_rate_entry(rate, key, now, true);
    e->last_used = now;
    e->banned_until = until;
    pthread_mutex_unlock(&rate->lock);
}

time_t mk_rate_banned(struct mk_rate *rate, const char *key, time_t now)
{
    struct mk_rate_entry *e;
    time_t until = 0;

    pthread_mutex_lock(&rate->lock);
    if ((e = mk_rate_entry(rate, key, now, false)) != NULL && e->banned_until > now)
        until = e->banned_until;
    pthread_mutex_unlock(&rate->lock);
    return until;
}

void mk_rate_free(struct mk_rate *rate)
{
    if (rate == NULL)
        return;
    mk_hash_free(rate->keys);
    pthread_mutex_destroy(&rate->lock);
    free(rate);
}
