/*
 * ar_archive - the archive as a whole. See ar_archive.h.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ar_archive.h"
#include "ar_keys.h"
#include "ar_log.h"
#include "ar_spool.h"
#include "mk_hash.h"
#include "mk_util.h"

struct ar_archive {
    char *dir, *keys_dir, *index_path, *spool_dir, *log_path;
    struct ar_keys keys;
    struct ar_store *store;
    struct ar_log *log;                 /* the writer's */
    struct ar_index *index;
    char *note;
    size_t index_pending;               /* rows in the open index transaction */
    bool index_behind;                  /* an index transaction failed: catch up */
};

/* Index rows go in transactions of this many (or fewer, at the end of an ingest):
 * FTS5 merges less with fewer, larger commits. The log is committed per batch. */
#define AR_INDEX_TXN 4096

/* Files in the spool's tmp/ older than this were never acknowledged: removed. */
#define AR_SPOOL_TMP_AGE (24 * 3600)

static int ar_archive_index_commit(struct ar_archive *a, char **error);

/* Takes note, which may be NULL. */
static void ar_note(struct ar_archive *a, char *note)
{
    if (note == NULL)
        return;
    mk_notes_add(&a->note, note);
    free(note);
}

char *ar_archive_take_note(struct ar_archive *a)
{
    char *note = a->note;

    a->note = NULL;
    return note;
}

struct ar_index *ar_archive_index(struct ar_archive *a)
{
    return a->index;
}

struct ar_store *ar_archive_store(struct ar_archive *a)
{
    return a->store;
}

static char *ar_index_path(const struct ar_archive_paths *p)
{
    return p->index && *p->index ? mk_xstrdup(p->index) : mk_xasprintf("%s/index.sqlite", p->dir);
}

/* mkdir -p, the last one 0700 */
static int ar_mkdirs(const char *path, char **error)
{
    char *p = mk_xstrdup(path);

    for (char *slash = strchr(p + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST) {
            *error = mk_xasprintf("%s: %s", p, strerror(errno));
            free(p);
            return -1;
        }
        *slash = '/';
    }
    free(p);
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        *error = mk_xasprintf("%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int ar_archive_init(const struct ar_archive_paths *paths, char **error)
{
    if (ar_mkdirs(paths->dir, error) < 0)
        return -1;
    if (strrchr(paths->keys_dir, '/') && strrchr(paths->keys_dir, '/') != paths->keys_dir) {
        char *parent = mk_xstrndup(paths->keys_dir,
                                   (size_t) (strrchr(paths->keys_dir, '/') - paths->keys_dir));
        int rc = ar_mkdirs(parent, error);

        free(parent);
        if (rc < 0)
            return -1;
    }
    return ar_keys_create(paths->keys_dir, error);
}

void ar_archive_close(struct ar_archive *a)
{
    char *error = NULL;

    if (a == NULL)
        return;
    if (a->index && a->index_pending && ar_archive_index_commit(a, &error) < 0)
        free(error);                    /* caught up from the log at the next open */
    ar_index_close(a->index);
    ar_log_close(a->log);
    ar_store_close(a->store);
    ar_keys_free(&a->keys);
    free(a->dir);
    free(a->keys_dir);
    free(a->index_path);
    free(a->spool_dir);
    free(a->log_path);
    free(a->note);
    free(a);
}

/* ------------------------------------------------------------- indexing */

/* Index one logged ingest entry from the store (catch-up and reindex). */
static int ar_index_from_store(struct ar_archive *a, struct ar_index *ix,
                               const struct ar_log_entry *e, char **error)
{
    struct ar_envelope env;
    struct ar_doc doc;
    struct ar_index_entry entry;
    char *env_text = NULL, *msg = NULL, *problem = NULL;
    size_t env_len = 0, len = 0;
    char hex[65];
    int rc;

    memset(&doc, 0, sizeof(doc));
    memset(&env, 0, sizeof(env));
    if (ar_store_get(a->store, e->envelope, &env_text, &env_len, &problem) != AR_OK
        || ar_envelope_parse(env_text, env_len, &env, &problem) < 0) {
        /* index what the log says; verify reports the object */
        ar_hex(e->envelope, hex);
        ar_note(a, mk_xasprintf("log entry %llu: envelope %s unreadable (%s): indexed without it",
                                (unsigned long long) e->seq, hex, problem ? problem : "?"));
        free(problem);
        problem = NULL;
        memset(&env, 0, sizeof(env));
        env.time = e->time;
        env.sender = mk_xstrdup("");
        env.source = mk_xstrdup("unknown");
    }
    free(env_text);
    if (ar_store_get(a->store, e->object, &msg, &len, &problem) == AR_OK) {
        (void) ar_doc_extract(msg, len, &env, &doc);
    } else {
        ar_hex(e->object, hex);
        ar_note(a, mk_xasprintf("log entry %llu: message %s unreadable (%s): indexed by envelope",
                                (unsigned long long) e->seq, hex, problem ? problem : "?"));
        free(problem);
    }
    entry = (struct ar_index_entry) {e->seq, {0}, {0}, env.time, len, &env, e->spool_id};
    memcpy(entry.object, e->object, 32);
    memcpy(entry.envelope, e->envelope, 32);
    rc = ar_index_add(ix, &entry, &doc, NULL, error);
    free(msg);
    ar_doc_free(&doc);
    ar_envelope_free(&env);
    return rc;
}

struct ar_catch_up {
    struct ar_archive *a;
    struct ar_index *ix;
    struct mk_hash *tombstoned;         /* reindex: objects purged, not indexed */
    const struct ar_progress *progress;
    size_t done, total, in_txn;
    char *error;
};

static int ar_catch_up_entry(void *arg, const struct ar_log_entry *e)
{
    struct ar_catch_up *c = arg;

    if (e->kind != AR_LOG_INGEST)
        return 0;
    if (c->tombstoned && mk_hash_find(c->tombstoned, e->object, 32))
        return 0;
    if (c->in_txn == 0 && ar_index_begin(c->ix, &c->error) < 0)
        return 1;
    if (ar_index_from_store(c->a, c->ix, e, &c->error) < 0)
        return 1;
    if (++c->in_txn == 256) {
        c->in_txn = 0;
        if (ar_index_commit(c->ix, &c->error) < 0)
            return 1;
    }
    c->done++;
    if (c->progress && c->progress->update)
        c->progress->update(c->progress->arg, c->done, c->total);
    return 0;
}

static int ar_catch_up_run(struct ar_catch_up *c, uint64_t after, char **error)
{
    int rc = ar_log_read(c->a->log_path, after, ar_catch_up_entry, c, error);

    if (rc == 0 && c->in_txn && ar_index_commit(c->ix, &c->error) < 0)
        rc = 1;
    if (rc > 0) {
        if (c->in_txn)
            sqlite3_exec(ar_index_db(c->ix), "ROLLBACK", NULL, NULL, NULL);
        *error = c->error ? c->error : mk_xstrdup("catch-up stopped");
        c->error = NULL;
        return -1;
    }
    return rc;
}

static int ar_archive_catch_up(struct ar_archive *a, char **error)
{
    struct ar_catch_up c = {a, a->index, NULL, NULL, 0, 0, 0, NULL};
    int64_t last = ar_index_last_seq(a->index);

    if (last < 0) {
        *error = mk_xasprintf("%s: cannot read the index", a->index_path);
        return -1;
    }
    if ((uint64_t) last >= ar_log_last_seq(a->log))
        return 0;
    if (ar_catch_up_run(&c, (uint64_t) last, error) < 0)
        return -1;
    if (c.done)
        ar_note(a, mk_xasprintf("%zu logged message(s) were not indexed yet: indexed now", c.done));
    return 0;
}

struct ar_archive *ar_archive_open(const struct ar_archive_paths *paths, bool writer,
                                   char **error)
{
    struct ar_archive *a = mk_xcalloc(1, sizeof(*a));
    struct stat st;

    a->dir = mk_xstrdup(paths->dir);
    a->keys_dir = mk_xstrdup(paths->keys_dir);
    a->index_path = ar_index_path(paths);
    a->spool_dir = paths->spool ? mk_xstrdup(paths->spool) : NULL;
    a->log_path = mk_xasprintf("%s/log", paths->dir);
    if (stat(a->dir, &st) < 0) {
        *error = mk_xasprintf("%s: %s (run \"mailkeep archive init\" first)", a->dir,
                              strerror(errno));
        goto fail;
    }
    if (ar_keys_load(a->keys_dir, &a->keys, writer, error) < 0)
        goto fail;
    if ((a->store = ar_store_open(a->dir, a->keys.master, writer, error)) == NULL)
        goto fail;
    ar_note(a, ar_store_take_note(a->store));
    if (writer) {
        if ((a->log = ar_log_open(a->log_path, &a->keys, error)) == NULL)
            goto fail;
        ar_note(a, ar_log_take_note(a->log));
    } else if (stat(a->index_path, &st) < 0) {
        *error = mk_xasprintf("%s: no index yet (run \"mailkeep archive ingest\")",
                              a->index_path);
        goto fail;
    }
    if ((a->index = ar_index_open(a->index_path, writer, error)) == NULL)
        goto fail;
    if (writer && ar_archive_catch_up(a, error) < 0)
        goto fail;
    return a;
fail:
    ar_archive_close(a);
    return NULL;
}

/* --------------------------------------------------------------- ingest */

struct ar_batch_item {
    struct ar_spool_item spool;
    struct ar_doc doc;
    unsigned char object[32], envelope[32];
    uint64_t seq;
};

struct ar_extractor {
    struct ar_batch_item *items;
    size_t count;
    atomic_size_t next;
};

static void *ar_extract_worker(void *arg)
{
    struct ar_extractor *x = arg;
    size_t i;

    while ((i = atomic_fetch_add(&x->next, 1)) < x->count) {
        struct ar_batch_item *it = &x->items[i];

        (void) ar_doc_extract(it->spool.msg, it->spool.msg_len, &it->spool.env, &it->doc);
    }
    return NULL;
}

/* Give up the open index transaction: the next ingest catches up from the log. */
static void ar_index_abandon(struct ar_archive *a)
{
    sqlite3_exec(ar_index_db(a->index), "ROLLBACK", NULL, NULL, NULL);
    a->index_pending = 0;
    a->index_behind = true;
}

static int ar_archive_index_commit(struct ar_archive *a, char **error)
{
    if (a->index_pending == 0)
        return 0;
    if (ar_index_commit(a->index, error) < 0) {
        ar_index_abandon(a);
        return -1;
    }
    a->index_pending = 0;
    return 0;
}

/* Move a spool file that cannot be archived out of the way, keeping it. */
static void ar_spool_damaged(struct ar_archive *a, const char *name, const char *why)
{
    char *dir = mk_xasprintf("%s/damaged", a->spool_dir);
    char *from = mk_xasprintf("%s/new/%s", a->spool_dir, name);
    char *to = mk_xasprintf("%s/%s", dir, name);

    (void) mkdir(dir, 0700);
    if (rename(from, to) < 0)
        ar_note(a, mk_xasprintf("%s: cannot move it aside: %s", from, strerror(errno)));
    ar_note(a, mk_xasprintf("%s: damaged, moved to %s: %s", name, dir, why));
    free(dir);
    free(from);
    free(to);
}

/*
 * The indexer: a thread that adds the rows of logged batches to the index
 * while the next batch is read, extracted, stored and logged. It alone
 * uses the index connection while an ingest runs.
 */
struct ar_indexed_batch {
    struct ar_batch_item *items;
    size_t count, n;
    struct ar_indexed_batch *next;
};

struct ar_indexer {
    struct ar_archive *a;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct ar_indexed_batch *head, *tail;
    size_t queued;
    bool done;
    char *error;                        /* the first index error */
};

static void ar_batch_free(struct ar_batch_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ar_spool_item_free(&items[i].spool);
        ar_doc_free(&items[i].doc);
    }
    free(items);
}

static void ar_indexer_add(struct ar_indexer *x, struct ar_indexed_batch *b)
{
    struct ar_archive *a = x->a;
    char *error = NULL;

    if (a->index_behind)
        return;                         /* caught up from the log at the next ingest */
    if (a->index_pending == 0 && ar_index_begin(a->index, &error) < 0) {
        a->index_behind = true;
        goto fail;
    }
    for (size_t i = 0; i < b->count; i++) {
        struct ar_batch_item *it = &b->items[i];
        struct ar_index_entry e = {it->seq, {0}, {0}, it->spool.env.time, it->spool.msg_len,
                                   &it->spool.env, it->spool.name};

        memcpy(e.object, it->object, 32);
        memcpy(e.envelope, it->envelope, 32);
        if (ar_index_add(a->index, &e, &it->doc, NULL, &error) < 0) {
            ar_index_abandon(a);
            goto fail;
        }
        a->index_pending++;
    }
    if (a->index_pending >= AR_INDEX_TXN && ar_archive_index_commit(a, &error) < 0)
        goto fail;
    return;
fail:
    pthread_mutex_lock(&x->lock);
    if (x->error == NULL)
        x->error = error;
    else
        free(error);
    pthread_mutex_unlock(&x->lock);
}

static void *ar_indexer_run(void *arg)
{
    struct ar_indexer *x = arg;

    for (;;) {
        struct ar_indexed_batch *b;

        pthread_mutex_lock(&x->lock);
        while (x->head == NULL && !x->done)
            pthread_cond_wait(&x->changed, &x->lock);
        if ((b = x->head) == NULL) {
            pthread_mutex_unlock(&x->lock);
            break;
        }
        x->head = b->next;
        if (x->head == NULL)
            x->tail = NULL;
        pthread_mutex_unlock(&x->lock);
        ar_indexer_add(x, b);
        ar_batch_free(b->items, b->n);
        free(b);
        pthread_mutex_lock(&x->lock);
        x->queued--;
        pthread_cond_broadcast(&x->changed);
        pthread_mutex_unlock(&x->lock);
    }
    return NULL;
}

/* Queue a logged batch; wait while two are queued, to bound memory. */
static void ar_indexer_push(struct ar_indexer *x, struct ar_batch_item *items, size_t count,
                            size_t n)
{
    struct ar_indexed_batch *b = mk_xcalloc(1, sizeof(*b));

    b->items = items;
    b->count = count;
    b->n = n;
    pthread_mutex_lock(&x->lock);
    while (x->queued >= 2)
        pthread_cond_wait(&x->changed, &x->lock);
    if (x->tail)
        x->tail->next = b;
    else
        x->head = b;
    x->tail = b;
    x->queued++;
    pthread_cond_broadcast(&x->changed);
    pthread_mutex_unlock(&x->lock);
}

static int ar_ingest_batch(struct ar_archive *a, struct ar_indexer *ix, char **names, size_t n,
                           struct ar_ingest_stats *stats, char **error)
{
    struct ar_batch_item *items = mk_xcalloc(n ? n : 1, sizeof(*items));
    struct ar_extractor x = {items, 0, 0};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    pthread_t threads[16];
    size_t nthreads = 0, count = 0;

    for (size_t i = 0; i < n; i++) {
        char *problem = NULL;

        if (ar_spool_read(a->spool_dir, names[i], &items[count].spool, &problem) < 0) {
            ar_spool_damaged(a, names[i], problem);
            free(problem);
            stats->damaged++;
            continue;
        }
        if (!ar_log_spool_id_valid(names[i])) {
            ar_spool_item_free(&items[count].spool);
            ar_spool_damaged(a, names[i], "not a valid spool ID");
            stats->damaged++;
            continue;
        }
        count++;
    }
    /* the text of every message, on every CPU; the main thread stores */
    x.count = count;
    for (long t = 1; t < cpus && t < 16 && (size_t) t < count; t++)
        if (pthread_create(&threads[nthreads], NULL, ar_extract_worker, &x) == 0)
            nthreads++;
    for (size_t i = 0; i < count; i++) {
        struct ar_batch_item *it = &items[i];
        size_t env_len;
        char *env_text = ar_envelope_format(&it->spool.env, &env_len);
        bool existed = false, env_existed;

        if (ar_store_put(a->store, it->spool.msg, it->spool.msg_len, it->object, &existed,
                         error) < 0
            || ar_store_put(a->store, env_text, env_len, it->envelope, &env_existed, error) < 0) {
            free(env_text);
            (void) ar_extract_worker(&x);
            for (size_t t = 0; t < nthreads; t++)
                pthread_join(threads[t], NULL);
            goto fail;
        }
        free(env_text);
        stats->new_objects += !existed;
        stats->bytes += it->spool.msg_len;
    }
    (void) ar_extract_worker(&x);
    for (size_t t = 0; t < nthreads; t++)
        pthread_join(threads[t], NULL);
    if (count == 0) {
        ar_batch_free(items, n);
        return 0;
    }
    if (ar_store_sync(a->store, error) < 0)
        goto fail;
    for (size_t i = 0; i < count; i++)
        if (ar_log_append_ingest(a->log, items[i].object, items[i].envelope, items[i].spool.name,
                                 items[i].spool.env.time, &items[i].seq, error) < 0)
            goto fail;
    if (ar_log_commit(a->log, error) < 0)
        goto fail;
    ar_note(a, ar_log_take_note(a->log));
    /*
     * Logged is archived: the spool files can go. The index is only a
     * view of the log and the store; what a crash keeps out of it is
     * caught up from them (at the next open, or the next ingest).
     */
    for (size_t i = 0; i < count; i++)
        if (ar_spool_remove(a->spool_dir, items[i].spool.name, error) < 0) {
            ar_indexer_push(ix, items, count, n);
            return -1;
        }
    stats->messages += count;
    ar_indexer_push(ix, items, count, n);
    return 0;
fail:
    ar_batch_free(items, n);
    return -1;
}

/*
 * A message whose receipt was cut off (the journal killed, the client
 * gone without the MTA aborting) leaves its file in the spool's tmp/: it
 * was never acknowledged, so the MTA still has the message. Files there
 * older than a day are such leftovers.
 */
static void ar_spool_sweep(struct ar_archive *a, struct ar_ingest_stats *stats)
{
    char *dir = mk_xasprintf("%s/tmp", a->spool_dir);
    DIR *d = opendir(dir);
    struct dirent *e;
    time_t old = time(NULL) - AR_SPOOL_TMP_AGE;

    while (d && (e = readdir(d)) != NULL) {
        struct stat st;

        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0
            || !S_ISREG(st.st_mode) || st.st_mtime >= old)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            stats->swept++;
    }
    if (d)
        closedir(d);
    free(dir);
}

int ar_archive_ingest(struct ar_archive *a, size_t batch, const struct ar_progress *progress,
                      struct ar_ingest_stats *stats, char **error)
{
    struct ar_indexer ix;
    char **names = NULL;
    size_t total = 0, kept = 0;
    int rc = 0;

    memset(stats, 0, sizeof(*stats));
    if (a->log == NULL || a->spool_dir == NULL) {
        *error = mk_xstrdup("ingest needs the archive opened for writing, with a spool");
        return -1;
    }
    if (batch == 0)
        batch = 256;
    if (a->index_behind) {
        if (ar_archive_catch_up(a, error) < 0)
            return -1;
        a->index_behind = false;
    }
    ar_spool_sweep(a, stats);
    if (ar_spool_list(a->spool_dir, &names, error) < 0)
        return -1;
    /* archived before a crash cut the removal short (the index is caught up) */
    for (size_t i = 0; names[i]; i++) {
        int has = ar_index_has_spool_id(a->index, names[i]);

        if (has < 0) {
            *error = mk_xasprintf("%s: cannot read the index", a->index_path);
            mk_str_array_free(names);
            return -1;
        }
        if (has == 0) {
            names[kept++] = names[i];
            continue;
        }
        if (ar_spool_remove(a->spool_dir, names[i], error) < 0) {
            mk_str_array_free(names);
            return -1;
        }
        free(names[i]);
        stats->already++;
    }
    names[kept] = NULL;
    total = kept;
    memset(&ix, 0, sizeof(ix));
    ix.a = a;
    pthread_mutex_init(&ix.lock, NULL);
    pthread_cond_init(&ix.changed, NULL);
    if (pthread_create(&ix.thread, NULL, ar_indexer_run, &ix) != 0) {
        *error = mk_xstrdup("cannot start the indexing thread");
        mk_str_array_free(names);
        return -1;
    }
    for (size_t i = 0; i < total && rc == 0; i += batch) {
        size_t n = total - i < batch ? total - i : batch;

        rc = ar_ingest_batch(a, &ix, names + i, n, stats, error);
        if (progress && progress->update)
            progress->update(progress->arg, i + n, total);
    }
    mk_str_array_free(names);
    pthread_mutex_lock(&ix.lock);
    ix.done = true;
    pthread_cond_broadcast(&ix.changed);
    pthread_mutex_unlock(&ix.lock);
    pthread_join(ix.thread, NULL);
    pthread_mutex_destroy(&ix.lock);
    pthread_cond_destroy(&ix.changed);
    /* what was archived is searchable when ingest returns */
    if (ix.error == NULL && ar_archive_index_commit(a, &ix.error) < 0)
        a->index_behind = true;
    if (ix.error) {
        /* archived all the same: the log has it; the index catches up next time */
        ar_note(a, mk_xasprintf("index: %s (caught up at the next ingest)", ix.error));
        free(ix.error);
    }
    return rc;
}

/* ---------------------------------------------------------------- fetch */

int ar_archive_fetch(struct ar_archive *a, int64_t id, struct ar_index_row *row, char **msg,
                     size_t *len, enum ar_check *check, char **error)
{
    int rc = ar_index_get(a->index, id, row, error);

    *msg = NULL;
    *len = 0;
    if (rc <= 0)
        return rc;
    *check = ar_store_get(a->store, row->object, msg, len, error);
    return 1;
}

/* --------------------------------------------------------------- verify */

struct ar_logged {
    unsigned char object[32];
    uint64_t seq;
};

struct ar_verify {
    struct ar_archive *a;
    const struct ar_verify_cb *cb;
    struct ar_verify_stats *stats;
    struct mk_hash *objects;            /* hash -> struct ar_logged: every object the log names */
    struct mk_hash *seqs;               /* seq -> struct ar_logged (message object) */
    struct mk_hash *tombstoned;
};

static void ar_problem(struct ar_verify *v, const char *kind, char *detail)
{
    v->stats->problems++;
    if (v->cb && v->cb->problem)
        v->cb->problem(v->cb->arg, kind, detail);
    free(detail);
}

static void ar_verify_log_problem(void *arg, const struct ar_log_problem *p)
{
    struct ar_verify *v = arg;

    if (p->seq)
        ar_problem(v, ar_log_problem_name(p->kind),
                   mk_xasprintf("log entry %llu (line %llu): %s", (unsigned long long) p->seq,
                                (unsigned long long) p->line, p->detail));
    else
        ar_problem(v, ar_log_problem_name(p->kind), mk_xasprintf("log: %s", p->detail));
}

static void ar_logged_set(struct mk_hash *h, const void *key, size_t klen,
                          const unsigned char object[32], uint64_t seq)
{
    struct ar_logged *l;

    if (mk_hash_find(h, key, klen))
        return;
    l = mk_xmalloc(sizeof(*l));
    memcpy(l->object, object, 32);
    l->seq = seq;
    mk_hash_set(h, key, klen, l);
}

static int ar_verify_entry(void *arg, const struct ar_log_entry *e)
{
    struct ar_verify *v = arg;

    v->stats->entries++;
    if (e->kind == AR_LOG_TOMBSTONE) {
        ar_logged_set(v->tombstoned, e->object, 32, e->object, e->seq);
        return 0;
    }
    ar_logged_set(v->objects, e->object, 32, e->object, e->seq);
    ar_logged_set(v->objects, e->envelope, 32, e->envelope, e->seq);
    ar_logged_set(v->seqs, &e->seq, sizeof(e->seq), e->object, e->seq);
    return 0;
}

struct ar_object_walk {
    struct ar_verify *v;
    size_t done, total;
};

static bool ar_verify_object(void *value, void *arg)
{
    struct ar_object_walk *w = arg;
    struct ar_verify *v = w->v;
    struct ar_logged *l = value;
    char *problem = NULL, hex[65];
    enum ar_check c;

    if (!mk_hash_find(v->tombstoned, l->object, 32)) {
        c = ar_store_check(v->a->store, l->object, &problem);
        v->stats->objects++;
        if (c != AR_OK) {
            ar_hex(l->object, hex);
            ar_problem(v, c == AR_MISSING ? "missing" : "modified",
                       mk_xasprintf("object %s (log entry %llu): %s: %s", hex,
                                    (unsigned long long) l->seq, ar_check_name(c),
                                    problem ? problem : ""));
        }
        free(problem);
    }
    w->done++;
    if (v->cb && v->cb->progress && v->cb->progress->update)
        v->cb->progress->update(v->cb->progress->arg, w->done, w->total);
    return true;
}

static int ar_verify_present(void *arg, const unsigned char hash[32])
{
    struct ar_verify *v = arg;
    char hex[65];

    if (!mk_hash_find(v->objects, hash, 32)) {
        ar_hex(hash, hex);
        ar_problem(v, "added", mk_xasprintf("object %s is in the store but in no log entry", hex));
    }
    return 0;
}

static int ar_verify_index(struct ar_verify *v, char **error)
{
    sqlite3_stmt *st;
    size_t rows = 0;
    int rc;

    if (sqlite3_prepare_v2(ar_index_db(v->a->index), "SELECT id, seq, object FROM messages", -1,
                           &st, NULL) != SQLITE_OK) {
        *error = mk_xasprintf("%s: %s", v->a->index_path, sqlite3_errmsg(ar_index_db(v->a->index)));
        return -1;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint64_t seq = (uint64_t) sqlite3_column_int64(st, 1);
        const struct ar_logged *l = mk_hash_find(v->seqs, &seq, sizeof(seq));

        rows++;
        if (l == NULL || sqlite3_column_bytes(st, 2) != 32
            || memcmp(sqlite3_column_blob(st, 2), l->object, 32) != 0)
            ar_problem(v, "index", mk_xasprintf("index row %lld (log entry %llu) matches no log "
                                                "entry: rebuild it with \"mailkeep archive "
                                                "reindex\"", sqlite3_column_int64(st, 0),
                                                (unsigned long long) seq));
    }
    sqlite3_finalize(st);
    v->stats->rows = rows;
    if (rows < mk_hash_count(v->seqs))
        ar_problem(v, "unindexed", mk_xasprintf("%zu logged message(s) are not in the index "
                                                "(the next ingest indexes them)",
                                                mk_hash_count(v->seqs) - rows));
    return rc == SQLITE_DONE ? 0 : -1;
}

int ar_archive_verify(struct ar_archive *a, const struct ar_verify_cb *cb,
                      struct ar_verify_stats *stats, char **error)
{
    struct ar_verify v = {a, cb, stats, mk_hash_create(free), mk_hash_create(free),
                          mk_hash_create(free)};
    struct ar_object_walk w = {&v, 0, 0};
    int rc;

    memset(stats, 0, sizeof(*stats));
    rc = ar_log_verify(a->dir, a->keys.verify, ar_verify_log_problem, ar_verify_entry, &v, error);
    if (rc >= 0) {
        w.total = mk_hash_count(v.objects);
        mk_hash_walk(v.objects, ar_verify_object, &w);
        char *damage = NULL;

        /* damage in a pack is a problem to report, not a reason to stop */
        if (ar_store_walk(a->store, ar_verify_present, &v, &damage) < 0)
            ar_problem(&v, "damaged", damage);
        else
            free(damage);
        if (ar_verify_index(&v, error) < 0)
            rc = -1;
    }
    mk_hash_free(v.objects);
    mk_hash_free(v.seqs);
    mk_hash_free(v.tombstoned);
    return rc < 0 ? -1 : (int) stats->problems;
}

/* -------------------------------------------------------------- reindex */

struct ar_tomb_scan {
    struct mk_hash *tombstoned;
    size_t ingests;
};

static int ar_tomb_entry(void *arg, const struct ar_log_entry *e)
{
    struct ar_tomb_scan *t = arg;

    if (e->kind == AR_LOG_TOMBSTONE)
        mk_hash_set(t->tombstoned, e->object, 32, mk_xstrdup(""));
    else if (e->kind == AR_LOG_INGEST)
        t->ingests++;
    return 0;
}

int ar_archive_reindex(struct ar_archive *a, const struct ar_progress *progress, char **error)
{
    char *tmp = mk_xasprintf("%s.new", a->index_path), *wal = NULL;
    struct ar_tomb_scan t = {mk_hash_create(free), 0};
    struct ar_catch_up c = {a, NULL, t.tombstoned, progress, 0, 0, 0, NULL};
    struct stat st;
    int rc = -1;

    if (a->log == NULL) {
        *error = mk_xstrdup("reindex needs the archive opened for writing");
        goto out;
    }
    if (ar_log_read(a->log_path, 0, ar_tomb_entry, &t, error) < 0)
        goto out;
    c.total = t.ingests;
    (void) unlink(tmp);
    if ((c.ix = ar_index_open(tmp, true, error)) == NULL)
        goto out;
    if (ar_catch_up_run(&c, 0, error) < 0) {
        ar_index_close(c.ix);
        unlink(tmp);
        goto out;
    }
    sqlite3_exec(ar_index_db(c.ix), "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
    ar_index_close(c.ix);
    /* the old index's write-ahead log must not outlive it */
    ar_index_close(a->index);
    a->index = NULL;
    wal = mk_xasprintf("%s-wal", a->index_path);
    if (stat(wal, &st) == 0 && st.st_size > 0) {
        *error = mk_xasprintf("%s: the index is in use (a search is running): try again", wal);
        unlink(tmp);
    } else if (rename(tmp, a->index_path) < 0) {
        *error = mk_xasprintf("%s: %s", a->index_path, strerror(errno));
        unlink(tmp);
    } else {
        rc = 0;
    }
    if ((a->index = ar_index_open(a->index_path, true, rc == 0 ? error : &c.error)) == NULL)
        rc = -1;
    free(c.error);
out:
    mk_hash_free(t.tombstoned);
    free(tmp);
    free(wal);
    return rc;
}
