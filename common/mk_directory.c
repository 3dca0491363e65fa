/*
 * mk_directory - the user database front end and its cache. See mk_directory.h.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mk_addr.h"
#include "mk_directory.h"
#include "mk_hash.h"
#include "mk_log.h"
#include "mk_util.h"

const struct mk_dir_attr_map mk_dir_attrs[] = {
    {"role", "mailkeepRole"},
    {"blocked_sender", "mailkeepBlockedSender"},
    {"allowed_sender", "mailkeepAllowedSender"},
    {"block_mode", "mailkeepBlockMode"},
    {"policy_group", "mailkeepPolicyGroup"},
    {"otp_policy", "mailkeepOTPPolicy"},
    {"option", "mailkeepOption"},
    {"name", "cn"},
    /* ppolicy's operational attributes, for the password policy (pam_mailkeep) */
    {"password_changed", "pwdChangedTime"},
    {"password_reset", "pwdReset"},
};
const size_t mk_dir_attrs_count = MK_ARRAY_LEN(mk_dir_attrs);

struct mk_dir_cache_entry {
    time_t expires;
    enum mk_dir_status status;
    struct mk_dir_user *user;
};

struct mk_directory {
    atomic_int refs;
    const struct mk_dir_backend *backend;
    void *ctx;
    char **static_domains;
    char delimiter;                     /* '+' of user+tag@, or 0 */
    /* Lookup cache, for backends that ask a server. */
    pthread_mutex_t lock;
    struct mk_hash *cache;
    long long ttl, negative_ttl, max_entries;
};

/* ------------------------------------------------------------------ users */

struct mk_dir_user *mk_dir_user_new(const char *address)
{
    struct mk_dir_user *user = mk_xcalloc(1, sizeof(*user));

    atomic_init(&user->refs, 1);
    user->address = mk_xstrdup(address);
    user->groups = mk_xcalloc(1, sizeof(char *));
    return user;
}

struct mk_dir_user *mk_dir_user_ref(struct mk_dir_user *user)
{
    atomic_fetch_add(&user->refs, 1);
    return user;
}

void mk_dir_user_unref(struct mk_dir_user *user)
{
    if (user == NULL || atomic_fetch_sub(&user->refs, 1) != 1)
        return;
    for (size_t i = 0; i < user->nattrs; i++) {
        free(user->attrs[i].name);
        mk_str_array_free(user->attrs[i].values);
    }
    free(user->attrs);
    mk_str_array_free(user->groups);
    free(user->dn);
    free(user->address);
    free(user);
}

static void mk_str_array_append(char ***array, size_t *count, const char *value)
{
    *array = mk_xrealloc(*array, (*count + 2) * sizeof(char *));
    (*array)[(*count)++] = mk_xstrdup(value);
    (*array)[*count] = NULL;
}

void mk_dir_user_add_value(struct mk_dir_user *user, const char *attr, const char *value)
{
    struct mk_dir_attr *a = NULL;

    for (size_t i = 0; i < user->nattrs; i++)
        if (strcmp(user->attrs[i].name, attr) == 0)
            a = &user->attrs[i];
    if (a == NULL) {
        user->attrs = mk_xrealloc(user->attrs, (user->nattrs + 1) * sizeof(*user->attrs));
        a = &user->attrs[user->nattrs++];
        a->name = mk_xstrdup(attr);
        a->values = mk_xcalloc(1, sizeof(char *));
        a->count = 0;
    }
    mk_str_array_append(&a->values, &a->count, value);
}

void mk_dir_user_add_group(struct mk_dir_user *user, const char *group)
{
    mk_str_array_append(&user->groups, &user->ngroups, group);
}

enum mk_dir_status mk_directory_bind(struct mk_directory *dir, const struct mk_dir_user *user,
                                     const char *password)
{
    if (dir->backend->bind == NULL) {
        mk_log(MK_LOG_ERROR, NULL, "a password check by bind needs the ldap directory");
        return MK_DIR_TEMPFAIL;
    }
    return dir->backend->bind(dir->ctx, user, password);
}

char *const *mk_dir_user_values(const struct mk_dir_user *user, const char *attr)
{
    static char *const none[] = {NULL};

    for (size_t i = 0; user && i < user->nattrs; i++)
        if (strcmp(user->attrs[i].name, attr) == 0)
            return user->attrs[i].values;
    return none;
}

const char *mk_dir_user_value(const struct mk_dir_user *user, const char *attr)
{
    return mk_dir_user_values(user, attr)[0];
}

bool mk_dir_user_in_group(const struct mk_dir_user *user, const char *group)
{
    for (size_t i = 0; user && i < user->ngroups; i++)
        if (strcasecmp(user->groups[i], group) == 0)
            return true;
    return false;
}

bool mk_dir_attr_known(const char *name)
{
    for (size_t i = 0; i < mk_dir_attrs_count; i++)
        if (strcmp(mk_dir_attrs[i].name, name) == 0)
            return true;
    return false;
}

/* -------------------------------------------------------------- directory */

static void mk_dir_cache_entry_free(void *p)
{
    struct mk_dir_cache_entry *e = p;

    mk_dir_user_unref(e->user);
    free(e);
}

struct mk_directory *mk_directory_open(const struct mk_config *cfg, char **error)
{
    const char *kind = mk_config_str(cfg, "global", "directory");
    const struct mk_dir_backend *backend = NULL;
    struct mk_directory *dir;
    void *ctx = NULL;

    *error = NULL;
    if (strcasecmp(kind, "files") == 0) {
        backend = &mk_dir_files_backend;
        ctx = mk_dir_files_open(cfg, error);
    } else if (strcasecmp(kind, "ldap") == 0) {
#ifdef HAVE_LDAP
        backend = &mk_dir_ldap_backend;
        ctx = mk_dir_ldap_open(cfg, error);
#else
        *error = mk_xasprintf("%s:%d: [global] directory: this build has no LDAP support",
                              mk_config_path(cfg), mk_config_line(cfg, "global", "directory"));
#endif
    }
    if (ctx == NULL)
        return NULL;
    dir = mk_xcalloc(1, sizeof(*dir));
    atomic_init(&dir->refs, 1);
    dir->backend = backend;
    dir->ctx = ctx;
    dir->static_domains = mk_config_list(cfg, "global", "local_domains");
    dir->delimiter = mk_config_str(cfg, "global", "recipient_delimiter")[0];
    for (char **d = dir->static_domains; *d; d++)
        mk_str_lower(*d);
    pthread_mutex_init(&dir->lock, NULL);
    if (backend->cached) {
        dir->cache = mk_hash_create(mk_dir_cache_entry_free);
        dir->ttl = mk_config_num(cfg, "ldap", "cache_ttl");
        dir->negative_ttl = mk_config_num(cfg, "ldap", "negative_cache_ttl");
        dir->max_entries = mk_config_num(cfg, "ldap", "cache_size");
    }
    return dir;
}

struct mk_directory *mk_directory_ref(struct mk_directory *dir)
{
    atomic_fetch_add(&dir->refs, 1);
    return dir;
}

void mk_directory_unref(struct mk_directory *dir)
{
    if (dir == NULL || atomic_fetch_sub(&dir->refs, 1) != 1)
        return;
    dir->backend->close(dir->ctx);
    mk_hash_free(dir->cache);
    mk_str_array_free(dir->static_domains);
    pthread_mutex_destroy(&dir->lock);
    free(dir);
}

const char *mk_directory_backend(const struct mk_directory *dir)
{
    return dir->backend->name;
}

static bool mk_dir_cache_keep(void *value, void *arg)
{
    const struct mk_dir_cache_entry *e = value;

    return e->expires > *(const time_t *) arg;
}

/* Returns true and fills in the answer when the cache has a live one. */
static bool mk_dir_cache_get(struct mk_directory *dir, const char *key,
                             enum mk_dir_status *status, struct mk_dir_user **user)
{
    struct mk_dir_cache_entry *e;
    bool hit = false;

    pthread_mutex_lock(&dir->lock);
    e = mk_hash_find(dir->cache, key, strlen(key));
    if (e && e->expires > time(NULL)) {
        *status = e->status;
        if (user)
            *user = e->user ? mk_dir_user_ref(e->user) : NULL;
        hit = true;
    }
    pthread_mutex_unlock(&dir->lock);
    return hit;
}

static void mk_dir_cache_put(struct mk_directory *dir, const char *key,
                             enum mk_dir_status status, struct mk_dir_user *user)
{
    struct mk_dir_cache_entry *e;
    long long ttl = status == MK_DIR_FOUND ? dir->ttl : dir->negative_ttl;
    time_t now = time(NULL);

    if (status == MK_DIR_TEMPFAIL || ttl <= 0)
        return;
    e = mk_xmalloc(sizeof(*e));
    e->expires = now + ttl;
    e->status = status;
    e->user = user ? mk_dir_user_ref(user) : NULL;
    pthread_mutex_lock(&dir->lock);
    if ((long long) mk_hash_count(dir->cache) >= dir->max_entries) {
        mk_hash_walk(dir->cache, mk_dir_cache_keep, &now);
        /* Still full of live entries: start over rather than grow without bound. */
        if ((long long) mk_hash_count(dir->cache) >= dir->max_entries) {
            mk_hash_free(dir->cache);
            dir->cache = mk_hash_create(mk_dir_cache_entry_free);
        }
    }
    mk_hash_set(dir->cache, key, strlen(key), e);
    pthread_mutex_unlock(&dir->lock);
}

enum mk_dir_status mk_directory_domain(struct mk_directory *dir, const char *domain)
{
    enum mk_dir_status status;
    char *key;

    for (char **d = dir->static_domains; *d; d++)
        if (strcasecmp(*d, domain) == 0)
            return MK_DIR_FOUND;
    if (!dir->cache)
        return dir->backend->domain(dir->ctx, domain);
    key = mk_xasprintf("d:%s", domain);
    mk_str_lower(key);
    if (!mk_dir_cache_get(dir, key, &status, NULL)) {
        status = dir->backend->domain(dir->ctx, domain);
        mk_dir_cache_put(dir, key, status, NULL);
    }
    free(key);
    return status;
}

static enum mk_dir_status mk_directory_user_exact(struct mk_directory *dir, const char *address,
                                                  struct mk_dir_user **user)
{
    enum mk_dir_status status;
    char *key;

    *user = NULL;
    if (!dir->cache)
        return dir->backend->user(dir->ctx, address, user);
    key = mk_xasprintf("u:%s", address);
    if (!mk_dir_cache_get(dir, key, &status, user)) {
        status = dir->backend->user(dir->ctx, address, user);
        mk_dir_cache_put(dir, key, status, *user);
    }
    free(key);
    return status;
}

/* user+tag@domain is user@domain when no entry has the tag. */
enum mk_dir_status mk_directory_user(struct mk_directory *dir, const char *address,
                                     struct mk_dir_user **user)
{
    enum mk_dir_status status = mk_directory_user_exact(dir, address, user);
    const char *at = strrchr(address, '@'), *delim;
    char *base;

    if (status != MK_DIR_NOT_FOUND || dir->delimiter == 0 || at == NULL)
        return status;
    delim = memchr(address, dir->delimiter, (size_t) (at - address));
    if (delim == NULL || delim == address)
        return status;
    base = mk_xasprintf("%.*s%s", (int) (delim - address), address, at);
    status = mk_directory_user_exact(dir, base, user);
    free(base);
    return status;
}
