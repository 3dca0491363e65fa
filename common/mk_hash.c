/*
 * mk_hash - hash table with byte-string keys. See mk_hash.h.
 */
#include "config.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "mk_hash.h"
#include "mk_util.h"

struct mk_hash_node {
    struct mk_hash_node *next;
    uint64_t hash;
    size_t len;
    void *value;
    unsigned char key[];
};

struct mk_hash {
    struct mk_hash_node **buckets;
    size_t size;                        /* power of two */
    size_t count;
    void (*free_value)(void *);
};

static uint64_t mk_hash_seed;
static pthread_once_t mk_hash_seed_once = PTHREAD_ONCE_INIT;

static void mk_hash_init_seed(void)
{
    if (getrandom(&mk_hash_seed, sizeof(mk_hash_seed), GRND_NONBLOCK) != sizeof(mk_hash_seed))
        mk_hash_seed = (uint64_t) time(NULL) * 0x9E3779B97F4A7C15ULL;
}

/* FNV-1a with a seeded basis and a final avalanche (splitmix64). */
static uint64_t mk_hash_bytes(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ULL ^ mk_hash_seed;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

struct mk_hash *mk_hash_create(void (*free_value)(void *))
{
    struct mk_hash *h = mk_xcalloc(1, sizeof(*h));

    pthread_once(&mk_hash_seed_once, mk_hash_init_seed);
    h->size = 16;
    h->buckets = mk_xcalloc(h->size, sizeof(*h->buckets));
    h->free_value = free_value;
    return h;
}

static struct mk_hash_node **mk_hash_slot(const struct mk_hash *h, const void *key,
                                          size_t len, uint64_t hash)
{
    struct mk_hash_node **np = &h->buckets[hash & (h->size - 1)];

    for (; *np; np = &(*np)->next)
        if ((*np)->hash == hash && (*np)->len == len && memcmp((*np)->key, key, len) == 0)
            break;
    return np;
}

void *mk_hash_find(const struct mk_hash *h, const void *key, size_t len)
{
    struct mk_hash_node *n = *mk_hash_slot(h, key, len, mk_hash_bytes(key, len));

    return n ? n->value : NULL;
}

static void mk_hash_grow(struct mk_hash *h)
{
    size_t nsize = h->size * 2;
    struct mk_hash_node **nb = mk_xcalloc(nsize, sizeof(*nb));

    for (size_t i = 0; i < h->size; i++) {
        struct mk_hash_node *n = h->buckets[i], *next;

        for (; n; n = next) {
            next = n->next;
            n->next = nb[n->hash & (nsize - 1)];
            nb[n->hash & (nsize - 1)] = n;
        }
    }
    free(h->buckets);
    h->buckets = nb;
    h->size = nsize;
}

void mk_hash_set(struct mk_hash *h, const void *key, size_t len, void *value)
{
    uint64_t hash = mk_hash_bytes(key, len);
    struct mk_hash_node **np = mk_hash_slot(h, key, len, hash);
    struct mk_hash_node *n;

    if (*np) {
        if (h->free_value && (*np)->value != value)
            h->free_value((*np)->value);
        (*np)->value = value;
        return;
    }
    if (h->count + 1 > h->size) {
        mk_hash_grow(h);
        np = mk_hash_slot(h, key, len, hash);
    }
    n = mk_xmalloc(sizeof(*n) + len);
    n->next = NULL;
    n->hash = hash;
    n->len = len;
    n->value = value;
    memcpy(n->key, key, len);
    *np = n;
    h->count++;
}

static void mk_hash_unlink(struct mk_hash *h, struct mk_hash_node **np)
{
    struct mk_hash_node *n = *np;

    *np = n->next;
    if (h->free_value)
        h->free_value(n->value);
    free(n);
    h->count--;
}

bool mk_hash_delete(struct mk_hash *h, const void *key, size_t len)
{
    struct mk_hash_node **np = mk_hash_slot(h, key, len, mk_hash_bytes(key, len));

    if (*np == NULL)
        return false;
    mk_hash_unlink(h, np);
    return true;
}

size_t mk_hash_count(const struct mk_hash *h)
{
    return h->count;
}

void mk_hash_walk(struct mk_hash *h, bool (*keep)(void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < h->size; i++) {
        struct mk_hash_node **np = &h->buckets[i];

        while (*np) {
            if (keep((*np)->value, arg))
                np = &(*np)->next;
            else
                mk_hash_unlink(h, np);
        }
    }
}

void mk_hash_free(struct mk_hash *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->size; i++) {
        struct mk_hash_node *n = h->buckets[i], *next;

        for (; n; n = next) {
            next = n->next;
            if (h->free_value)
                h->free_value(n->value);
            free(n);
        }
    }
    free(h->buckets);
    free(h);
}
