/*
 * ar_spool - the journal spool. See ar_spool.h.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "ar_spool.h"
#include "mk_util.h"

#define AR_TRAILER_LEN 48
#define AR_ENVELOPE_MAX (1024 * 1024)

/* ------------------------------------------------------------- envelope */

static void ar_put(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = mk_xrealloc(*buf, *cap);
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
}

static void ar_put_value(char **buf, size_t *len, size_t *cap, const char *v)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *) v; *p; p++) {
        if (*p <= 0x20 || *p == '%' || *p == 0x7f) {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};

            ar_put(buf, len, cap, esc, 3);
        } else {
            ar_put(buf, len, cap, (const char *) p, 1);
        }
    }
}

static void ar_put_field(char **buf, size_t *len, size_t *cap, const char *key, const char *v)
{
    if (v == NULL)
        return;
    ar_put(buf, len, cap, key, strlen(key));
    ar_put(buf, len, cap, " ", 1);
    ar_put_value(buf, len, cap, v);
    ar_put(buf, len, cap, "\n", 1);
}

char *ar_envelope_format(const struct ar_envelope *e, size_t *out_len)
{
    char *buf = NULL, num[32];
    size_t len = 0, cap = 0;

    ar_put(&buf, &len, &cap, "version 1\n", 10);
    snprintf(num, sizeof(num), "%" PRId64, e->time);
    ar_put_field(&buf, &len, &cap, "time", num);
    ar_put_field(&buf, &len, &cap, "queue-id", e->queue_id);
    ar_put_field(&buf, &len, &cap, "sender", e->sender ? e->sender : "");
    ar_put_field(&buf, &len, &cap, "client", e->client);
    ar_put_field(&buf, &len, &cap, "client-name", e->client_name);
    ar_put_field(&buf, &len, &cap, "helo", e->helo);
    ar_put_field(&buf, &len, &cap, "login", e->login);
    ar_put_field(&buf, &len, &cap, "daemon", e->daemon);
    ar_put_field(&buf, &len, &cap, "source", e->source);
    ar_put_field(&buf, &len, &cap, "origin", e->origin);
    for (size_t i = 0; i < e->nrcpts; i++) {
        ar_put(&buf, &len, &cap, "rcpt ", 5);
        ar_put_value(&buf, &len, &cap, e->rcpts[i]);
        ar_put(&buf, &len, &cap, " ", 1);
        ar_put_value(&buf, &len, &cap, e->directions[i]);
        ar_put(&buf, &len, &cap, "\n", 1);
    }
    if (out_len)
        *out_len = len;
    return buf;
}

static int ar_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Undo the percent-encoding of s[0..n); NULL when it is malformed. */
static char *ar_decode(const char *s, size_t n)
{
    char *out = mk_xmalloc(n + 1), *o = out;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? ar_hexval((unsigned char) s[i + 1]) : -1;
            int lo = hi >= 0 ? ar_hexval((unsigned char) s[i + 2]) : -1;

            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            *o++ = (char) (hi << 4 | lo);
            i += 2;
        } else if ((unsigned char) s[i] <= 0x20 || s[i] == 0x7f) {
            free(out);
            return NULL;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

void ar_envelope_add_rcpt(struct ar_envelope *e, const char *rcpt, const char *direction)
{
    e->rcpts = mk_xrealloc(e->rcpts, (e->nrcpts + 1) * sizeof(char *));
    e->directions = mk_xrealloc(e->directions, (e->nrcpts + 1) * sizeof(char *));
    e->rcpts[e->nrcpts] = mk_xstrdup(rcpt);
    e->directions[e->nrcpts] = mk_xstrdup(direction ? direction : "unknown");
    e->nrcpts++;
}

static char **ar_envelope_slot(struct ar_envelope *e, const char *key, size_t klen)
{
    static const struct {
        const char *key;
        size_t offset;
    } fields[] = {
        {"queue-id", offsetof(struct ar_envelope, queue_id)},
        {"sender", offsetof(struct ar_envelope, sender)},
        {"client", offsetof(struct ar_envelope, client)},
        {"client-name", offsetof(struct ar_envelope, client_name)},
        {"helo", offsetof(struct ar_envelope, helo)},
        {"login", offsetof(struct ar_envelope, login)},
        {"daemon", offsetof(struct ar_envelope, daemon)},
        {"source", offsetof(struct ar_envelope, source)},
        {"origin", offsetof(struct ar_envelope, origin)},
    };

    for (size_t i = 0; i < MK_ARRAY_LEN(fields); i++)
        if (strlen(fields[i].key) == klen && memcmp(fields[i].key, key, klen) == 0)
            return (char **) ((char *) e + fields[i].offset);
    return NULL;
}

int ar_envelope_parse(const char *text, size_t len, struct ar_envelope *e, char **error)
{
    const char *p = text, *end = text + len;
    bool version = false, have_time = false;
    int line = 0;

    memset(e, 0, sizeof(*e));
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        const char *sp;
        char **slot;
        char *value;

        line++;
        if (nl == NULL) {
            *error = mk_xasprintf("envelope line %d: not terminated", line);
            goto fail;
        }
        sp = memchr(p, ' ', (size_t) (nl - p));
        if (sp == NULL) {
            *error = mk_xasprintf("envelope line %d: no value", line);
            goto fail;
        }
        if (sp - p == 4 && memcmp(p, "rcpt", 4) == 0) {
            const char *sp2 = memchr(sp + 1, ' ', (size_t) (nl - sp - 1));
            char *rcpt, *dir;

            if (sp2 == NULL || (rcpt = ar_decode(sp + 1, (size_t) (sp2 - sp - 1))) == NULL) {
                *error = mk_xasprintf("envelope line %d: bad recipient", line);
                goto fail;
            }
            if ((dir = ar_decode(sp2 + 1, (size_t) (nl - sp2 - 1))) == NULL) {
                free(rcpt);
                *error = mk_xasprintf("envelope line %d: bad direction", line);
                goto fail;
            }
            ar_envelope_add_rcpt(e, rcpt, dir);
            free(rcpt);
            free(dir);
        } else if ((value = ar_decode(sp + 1, (size_t) (nl - sp - 1))) == NULL) {
            *error = mk_xasprintf("envelope line %d: bad value", line);
            goto fail;
        } else if (sp - p == 7 && memcmp(p, "version", 7) == 0) {
            version = strcmp(value, "1") == 0;
            free(value);
            if (!version) {
                *error = mk_xasprintf("envelope line %d: unknown version", line);
                goto fail;
            }
        } else if (sp - p == 4 && memcmp(p, "time", 4) == 0) {
            long long t;

            have_time = mk_parse_int(value, &t) == 0 && t >= 0;
            e->time = t;
            free(value);
            if (!have_time) {
                *error = mk_xasprintf("envelope line %d: bad time", line);
                goto fail;
            }
        } else if ((slot = ar_envelope_slot(e, p, (size_t) (sp - p))) != NULL && *slot == NULL) {
            *slot = value;
        } else {
            free(value);
            *error = mk_xasprintf("envelope line %d: unknown or repeated field \"%.*s\"", line,
                                  (int) (sp - p), p);
            goto fail;
        }
        p = nl + 1;
    }
    if (!version || !have_time || e->sender == NULL) {
        *error = mk_xstrdup("envelope: version, time or sender missing");
        goto fail;
    }
    return 0;
fail:
    ar_envelope_free(e);
    return -1;
}

const char *ar_envelope_direction(const struct ar_envelope *e)
{
    for (size_t i = 0; i < e->nrcpts; i++)
        if (strcmp(e->directions[i], "outbound") == 0)
            return "outbound";
    return e->nrcpts ? e->directions[0] : "unknown";
}

void ar_envelope_free(struct ar_envelope *e)
{
    free(e->queue_id);
    free(e->sender);
    free(e->client);
    free(e->client_name);
    free(e->helo);
    free(e->login);
    free(e->daemon);
    free(e->source);
    free(e->origin);
    for (size_t i = 0; i < e->nrcpts; i++) {
        free(e->rcpts[i]);
        free(e->directions[i]);
    }
    free(e->rcpts);
    free(e->directions);
    memset(e, 0, sizeof(*e));
}

/* ---------------------------------------------------------------- write */


int ar_spool_prepare(const char *dir, char **error)
{
    static const char *const subdirs[] = {"", "/tmp", "/new"};

    for (size_t i = 0; i < MK_ARRAY_LEN(subdirs); i++) {
        char *path = mk_xasprintf("%s%s", dir, subdirs[i]);

        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            *error = mk_xasprintf("%s: %s", path, strerror(errno));
            free(path);
            return -1;
        }
        free(path);
    }
    return 0;
}

static char *ar_spool_name(void)
{
    static atomic_ulong counter;
    char host[256];
    struct timeval tv;

    if (gethostname(host, sizeof(host)) < 0)
        strcpy(host, "localhost");
    host[sizeof(host) - 1] = '\0';
    /* the name must stay one safe word: dots are separators in it */
    for (char *h = host; *h; h++)
        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9')
              || *h == '-'))
            *h = '-';
    gettimeofday(&tv, NULL);
    return mk_xasprintf("%010lld.%06ld.%s.%ld.%lu", (long long) tv.tv_sec, (long) tv.tv_usec,
                        host, (long) getpid(), atomic_fetch_add(&counter, 1));
}

int ar_spool_begin(struct ar_spool_file *f, const char *dir, char **error)
{
    memset(f, 0, sizeof(*f));
    f->name = ar_spool_name();
    f->dir = mk_xstrdup(dir);
    f->tmp_path = mk_xasprintf("%s/tmp/%s", dir, f->name);
    f->fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (f->fd < 0) {
        *error = mk_xasprintf("%s: %s", f->tmp_path, strerror(errno));
        free(f->name);
        free(f->dir);
        free(f->tmp_path);
        memset(f, 0, sizeof(*f));
        f->fd = -1;
        return -1;
    }
    return 0;
}


void ar_spool_write(struct ar_spool_file *f, const void *data, size_t len)
{
    if (f->fd < 0 || f->error)
        return;
    f->error = mk_write_all(f->fd, data, len) < 0 ? errno : 0;
    f->len += len;
}

static void ar_spool_file_free(struct ar_spool_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    free(f->name);
    free(f->dir);
    free(f->tmp_path);
    memset(f, 0, sizeof(*f));
    f->fd = -1;
}

int ar_spool_commit(struct ar_spool_file *f, const struct ar_envelope *e, char **error)
{
    size_t env_len;
    char *env = ar_envelope_format(e, &env_len), trailer[AR_TRAILER_LEN + 1], *new_path;
    const char *step = "write";

    snprintf(trailer, sizeof(trailer), "\nMKJ1 %020zu %020zu\n", f->len, env_len);
    ar_spool_write(f, env, env_len);
    ar_spool_write(f, trailer, AR_TRAILER_LEN);
    f->len -= env_len + AR_TRAILER_LEN;
    free(env);
    if (f->fd < 0) {
        *error = mk_xstrdup("spool file not open");
        return -1;
    }
    if (f->error == 0 && fsync(f->fd) < 0) {
        f->error = errno;
        step = "fsync";
    }
    if (f->error == 0 && close(f->fd) < 0) {
        f->error = errno;
        step = "close";
    }
    f->fd = -1;
    new_path = mk_xasprintf("%s/new/%s", f->dir, f->name);
    if (f->error == 0 && rename(f->tmp_path, new_path) < 0) {
        f->error = errno;
        step = "rename";
    }
    if (f->error == 0) {
        char *new_dir = mk_xasprintf("%s/new", f->dir);

        if (mk_fsync_dir(new_dir) < 0) {
            /* renamed but perhaps not durable: the MTA must try again; the
             * file stays, and a duplicate is stored once, logged twice */
            *error = mk_xasprintf("%s: fsync: %s", new_dir, strerror(errno));
            free(new_dir);
            free(new_path);
            ar_spool_file_free(f);
            return -1;
        }
        free(new_dir);
        free(new_path);
        ar_spool_file_free(f);
        return 0;
    }
    *error = mk_xasprintf("%s: %s: %s", f->tmp_path, step, strerror(f->error));
    unlink(f->tmp_path);
    free(new_path);
    ar_spool_file_free(f);
    return -1;
}

void ar_spool_abort(struct ar_spool_file *f)
{
    if (f->tmp_path)
        unlink(f->tmp_path);
    ar_spool_file_free(f);
}

/* ----------------------------------------------------------------- read */

static bool ar_spool_name_ok(const char *name)
{
    return name[0] >= '0' && name[0] <= '9' && strchr(name, '/') == NULL
           && strlen(name) < 200;
}

static int ar_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

int ar_spool_list(const char *dir, char ***names, char **error)
{
    char *path = mk_xasprintf("%s/new", dir);
    DIR *d = opendir(path);
    struct dirent *de;
    size_t n = 0;

    *names = NULL;
    if (d == NULL) {
        *error = mk_xasprintf("%s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    *names = mk_xcalloc(1, sizeof(char *));
    while ((de = readdir(d)) != NULL) {
        if (!ar_spool_name_ok(de->d_name))
            continue;
        *names = mk_xrealloc(*names, (n + 2) * sizeof(char *));
        (*names)[n++] = mk_xstrdup(de->d_name);
        (*names)[n] = NULL;
    }
    closedir(d);
    free(path);
    qsort(*names, n, sizeof(char *), ar_strcmp);
    return 0;
}

int ar_spool_read(const char *dir, const char *name, struct ar_spool_item *it, char **error)
{
    char *path = mk_xasprintf("%s/new/%s", dir, name), *env_error = NULL;
    unsigned long long msg_len, env_len;
    const char *t;
    struct stat st;
    int fd;

    memset(it, 0, sizeof(*it));
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
        *error = mk_xasprintf("%s: %s", path, strerror(errno));
        goto fail;
    }
    if (st.st_size < AR_TRAILER_LEN) {
        *error = mk_xasprintf("%s: too short for a spool file", path);
        goto fail;
    }
    it->map_len = (size_t) st.st_size;
    it->map = mmap(NULL, it->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (it->map == MAP_FAILED) {
        it->map = NULL;
        *error = mk_xasprintf("%s: mmap: %s", path, strerror(errno));
        goto fail;
    }
    t = (const char *) it->map + it->map_len - AR_TRAILER_LEN;
    if (memcmp(t, "\nMKJ1 ", 6) != 0 || t[26] != ' ' || t[47] != '\n'
        || sscanf(t + 6, "%20llu %20llu", &msg_len, &env_len) != 2
        || env_len > AR_ENVELOPE_MAX || msg_len + env_len + AR_TRAILER_LEN != it->map_len) {
        *error = mk_xasprintf("%s: no valid spool trailer (damaged or not a spool file)", path);
        goto fail;
    }
    if (ar_envelope_parse((const char *) it->map + msg_len, (size_t) env_len, &it->env,
                          &env_error) < 0) {
        *error = mk_xasprintf("%s: %s", path, env_error);
        free(env_error);
        goto fail;
    }
    it->msg = it->map;
    it->msg_len = (size_t) msg_len;
    it->name = mk_xstrdup(name);
    close(fd);
    free(path);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    ar_spool_item_free(it);
    free(path);
    return -1;
}

void ar_spool_item_free(struct ar_spool_item *it)
{
    if (it->map)
        munmap(it->map, it->map_len);
    ar_envelope_free(&it->env);
    free(it->name);
    memset(it, 0, sizeof(*it));
}

int ar_spool_remove(const char *dir, const char *name, char **error)
{
    char *path = mk_xasprintf("%s/new/%s", dir, name);

    if (unlink(path) < 0 && errno != ENOENT) {
        *error = mk_xasprintf("%s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    free(path);
    return 0;
}
