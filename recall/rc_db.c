/*
 * rc_db - the recall database. See rc_db.h.
 *
 * Messages from many milter threads share commits: a thread that finds
 * no commit under way writes every message waiting at that moment in
 * one transaction (one fsync) while the others wait for it, so that the
 * cost of durability is paid per batch, not per message.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mk_util.h"
#include "rc_db.h"

#define RC_DB_BUSY_MS	10000
#define RC_DB_STR2(x)	#x
#define RC_DB_STR(x)	RC_DB_STR2(x)

static const char rc_db_schema[] =
    "CREATE TABLE IF NOT EXISTS messages ("
    " id INTEGER PRIMARY KEY,"
    " message_id TEXT NOT NULL,"
    " queue_id TEXT NOT NULL,"
    " time INTEGER NOT NULL,"
    " sender TEXT NOT NULL,"
    " header_from TEXT,"
    " subject TEXT,"
    " sasl_user TEXT,"
    " owner TEXT,"
    " owner_domain TEXT,"
    " origin TEXT NOT NULL,"
    " added_id INTEGER NOT NULL DEFAULT 0,"
    " hold_until INTEGER,"
    " hold_state TEXT);"
    "CREATE INDEX IF NOT EXISTS messages_message_id ON messages(message_id);"
    "CREATE INDEX IF NOT EXISTS messages_owner ON messages(owner, time);"
    "CREATE INDEX IF NOT EXISTS messages_owner_domain ON messages(owner_domain, time);"
    "CREATE INDEX IF NOT EXISTS messages_time ON messages(time);"
    "CREATE INDEX IF NOT EXISTS messages_held ON messages(hold_until)"
    " WHERE hold_state = 'held';"
    "CREATE TABLE IF NOT EXISTS recipients ("
    " message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,"
    " address TEXT NOT NULL,"
    " direction TEXT NOT NULL,"
    " status TEXT,"
    " status_time INTEGER,"
    " PRIMARY KEY (message, address)) WITHOUT ROWID;";

/* A message waiting for a commit. */
struct rc_db_pending {
    struct rc_message *m;
    struct rc_db_pending *next;
    bool done;
    char *error;
};

struct rc_db {
    sqlite3 *db;
    char *path;
    pthread_mutex_t lock;
    pthread_cond_t committed;
    bool writing;
    struct rc_db_pending *pending, **pending_tail;
    sqlite3_stmt *add_message, *add_rcpt;
    int64_t changes;                    /* rows the last rc_db_update() changed */
};

static char *rc_db_error(struct rc_db *db, const char *what)
{
    return mk_xasprintf("%s: %s: %s", db->path, what, sqlite3_errmsg(db->db));
}

static int rc_db_exec(struct rc_db *db, const char *sql, const char *what, char **error)
{
    if (sqlite3_exec(db->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        *error = rc_db_error(db, what);
        return -1;
    }
    return 0;
}

/* The super-user keeps the database's owner on the files SQLite adds. */
static void rc_db_keep_owner(const struct rc_db *db)
{
    struct stat st;

    if (geteuid() != 0 || stat(db->path, &st) < 0 || st.st_uid == 0)
        return;
    for (const char *suffix = "-wal"; suffix; suffix = strcmp(suffix, "-wal") == 0 ? "-shm" : NULL) {
        char *side = mk_xasprintf("%s%s", db->path, suffix);
        struct stat sst;

        if (stat(side, &sst) == 0 && sst.st_uid != st.st_uid)
            (void) chown(side, st.st_uid, st.st_gid);
        free(side);
    }
}

struct rc_db *rc_db_open(const char *path, bool writer, char **error)
{
    struct rc_db *db = mk_xcalloc(1, sizeof(*db));
    int flags = writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
    sqlite3_stmt *st;
    int version = 0;

    *error = NULL;
    db->path = mk_xstrdup(path);
    pthread_mutex_init(&db->lock, NULL);
    pthread_cond_init(&db->committed, NULL);
    db->pending_tail = &db->pending;
    if (sqlite3_open_v2(path, &db->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        *error = db->db ? rc_db_error(db, "cannot open")
                        : mk_xasprintf("%s: cannot open: out of memory", path);
        goto fail;
    }
    sqlite3_busy_timeout(db->db, RC_DB_BUSY_MS);
    if (sqlite3_prepare_v2(db->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) {
        *error = rc_db_error(db, "cannot read the schema version");
        goto fail;
    }
    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > RC_DB_VERSION) {
        *error = mk_xasprintf("%s: schema version %d is newer than this program knows (%d)",
                              path, version, RC_DB_VERSION);
        goto fail;
    }
    if (!writer) {
        if (version == 0) {
            *error = mk_xasprintf("%s: not a recall database (has mailkeep-recall run?)", path);
            goto fail;
        }
        return db;
    }
    if (sqlite3_db_readonly(db->db, "main") == 1) {
        /* SQLite falls back to reading when it may not write */
        *error = mk_xasprintf("%s: cannot be written by this user (uid %ld): who owns it?",
                              path, (long) geteuid());
        goto fail;
    }
    if (rc_db_exec(db, "PRAGMA journal_mode=WAL", "cannot switch to WAL", error) < 0
        || rc_db_exec(db, "PRAGMA synchronous=FULL", "cannot set synchronous", error) < 0
        || rc_db_exec(db, "PRAGMA foreign_keys=ON", "cannot enable foreign keys", error) < 0)
        goto fail;
    if (version < RC_DB_VERSION
        && (rc_db_exec(db, "BEGIN IMMEDIATE", "cannot create the tables", error) < 0
            || rc_db_exec(db, rc_db_schema, "cannot create the tables", error) < 0
            || rc_db_exec(db, "PRAGMA user_version = " RC_DB_STR(RC_DB_VERSION),
                          "cannot create the tables", error) < 0
            || rc_db_exec(db, "COMMIT", "cannot create the tables", error) < 0))
        goto fail;
    rc_db_keep_owner(db);
    if (sqlite3_prepare_v3(db->db,
                           "INSERT INTO messages (message_id, queue_id, time, sender, header_from,"
                           " subject, sasl_user, owner, owner_domain, origin, added_id,"
                           " hold_until, hold_state) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, SQLITE_PREPARE_PERSISTENT, &db->add_message, NULL) != SQLITE_OK
        || sqlite3_prepare_v3(db->db,
                              "INSERT OR IGNORE INTO recipients (message, address, direction)"
                              " VALUES (?,?,?)", -1, SQLITE_PREPARE_PERSISTENT, &db->add_rcpt,
                              NULL) != SQLITE_OK) {
        *error = rc_db_error(db, "cannot prepare a statement");
        goto fail;
    }
    return db;
fail:
    rc_db_close(db);
    return NULL;
}

void rc_db_close(struct rc_db *db)
{
    if (db == NULL)
        return;
    sqlite3_finalize(db->add_message);
    sqlite3_finalize(db->add_rcpt);
    sqlite3_close(db->db);
    pthread_mutex_destroy(&db->lock);
    pthread_cond_destroy(&db->committed);
    free(db->path);
    free(db);
}

static void rc_db_text(sqlite3_stmt *st, int col, const char *value)
{
    if (value != NULL)
        sqlite3_bind_text(st, col, value, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, col);
}

/* Inside a transaction: one message and its recipients. */
static int rc_db_insert(struct rc_db *db, struct rc_message *m, char **error)
{
    sqlite3_stmt *st = db->add_message;
    int rc;

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    rc_db_text(st, 1, m->message_id);
    rc_db_text(st, 2, m->queue_id);
    sqlite3_bind_int64(st, 3, m->time);
    rc_db_text(st, 4, m->sender ? m->sender : "");
    rc_db_text(st, 5, m->header_from);
    rc_db_text(st, 6, m->subject);
    rc_db_text(st, 7, m->sasl_user);
    rc_db_text(st, 8, m->owner);
    rc_db_text(st, 9, m->owner_domain);
    rc_db_text(st, 10, m->origin ? m->origin : "none");
    sqlite3_bind_int(st, 11, m->added_id);
    if (m->hold_until > 0)
        sqlite3_bind_int64(st, 12, m->hold_until);
    rc_db_text(st, 13, m->hold_state);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        *error = rc_db_error(db, "cannot add a message");
        return -1;
    }
    m->id = sqlite3_last_insert_rowid(db->db);
    st = db->add_rcpt;
    for (size_t i = 0; i < m->nrcpts; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, m->id);
        rc_db_text(st, 2, m->rcpts[i].address);
        rc_db_text(st, 3, m->rcpts[i].direction ? m->rcpts[i].direction : "unknown");
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            *error = rc_db_error(db, "cannot add a recipient");
            return -1;
        }
    }
    return 0;
}

/* Write a batch in one transaction; on failure every message in it fails. */
static void rc_db_write_batch(struct rc_db *db, struct rc_db_pending *batch)
{
    char *error = NULL;
    struct rc_db_pending *p;

    if (rc_db_exec(db, "BEGIN IMMEDIATE", "cannot begin", &error) == 0) {
        for (p = batch; p && error == NULL; p = p->next)
            (void) rc_db_insert(db, p->m, &error);
        if (error == NULL)
            (void) rc_db_exec(db, "COMMIT", "cannot commit", &error);
        if (error != NULL)
            sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
    }
    for (p = batch; p; p = p->next)
        p->error = error ? mk_xstrdup(error) : NULL;
    free(error);
}

int rc_db_add(struct rc_db *db, struct rc_message *m, char **error)
{
    struct rc_db_pending me = {.m = m};

    *error = NULL;
    if (db->add_message == NULL) {
        *error = mk_xasprintf("%s: opened read-only", db->path);
        return -1;
    }
    pthread_mutex_lock(&db->lock);
    *db->pending_tail = &me;
    db->pending_tail = &me.next;
    while (!me.done) {
        if (!db->writing) {
            struct rc_db_pending *batch = db->pending, *p;

            db->pending = NULL;
            db->pending_tail = &db->pending;
            db->writing = true;
            pthread_mutex_unlock(&db->lock);
            rc_db_write_batch(db, batch);
            pthread_mutex_lock(&db->lock);
            for (p = batch; p; p = p->next)
                p->done = true;
            db->writing = false;
            pthread_cond_broadcast(&db->committed);
        } else {
            pthread_cond_wait(&db->committed, &db->lock);
        }
    }
    pthread_mutex_unlock(&db->lock);
    if (me.error != NULL) {
        *error = me.error;
        return -1;
    }
    return 0;
}

static char *rc_db_col(sqlite3_stmt *st, int col)
{
    const unsigned char *v = sqlite3_column_text(st, col);

    return v ? mk_xstrdup((const char *) v) : NULL;
}

static int rc_db_load_rcpts(struct rc_db *db, struct rc_message *m, char **error)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(db->db, "SELECT address, direction, status, status_time"
                           " FROM recipients WHERE message = ? ORDER BY address", -1, &st,
                           NULL) != SQLITE_OK) {
        *error = rc_db_error(db, "cannot read recipients");
        return -1;
    }
    sqlite3_bind_int64(st, 1, m->id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct rc_rcpt *r;

        m->rcpts = mk_xrealloc(m->rcpts, (m->nrcpts + 1) * sizeof(*m->rcpts));
        r = &m->rcpts[m->nrcpts++];
        r->address = rc_db_col(st, 0);
        r->direction = rc_db_col(st, 1);
        r->status = rc_db_col(st, 2);
        r->status_time = sqlite3_column_int64(st, 3);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        *error = rc_db_error(db, "cannot read recipients");
        return -1;
    }
    return 0;
}

int rc_db_find(struct rc_db *db, const struct rc_filter *f, struct rc_message **out, size_t *n,
               char **error)
{
    char sql[1024];
    sqlite3_stmt *st;
    int rc, col = 0;

    *error = NULL;
    *out = NULL;
    *n = 0;
    snprintf(sql, sizeof(sql),
             "SELECT id, message_id, queue_id, time, sender, header_from, subject, sasl_user,"
             " owner, owner_domain, origin, added_id, hold_until, hold_state FROM messages"
             " WHERE 1%s%s%s%s%s%s ORDER BY time DESC, id DESC%s",
             f->id ? " AND id = ?" : "",
             f->message_id ? " AND message_id = ?" : "",
             f->owner ? " AND owner = ? COLLATE NOCASE" : "",
             f->owner_domain ? " AND owner_domain = ? COLLATE NOCASE" : "",
             f->since ? " AND time >= ?" : "",
             f->held_due ? " AND hold_state = 'held' AND hold_until <= ?" : "",
             f->limit ? " LIMIT ?" : "");
    pthread_mutex_lock(&db->lock);
    if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK) {
        *error = rc_db_error(db, "cannot search");
        pthread_mutex_unlock(&db->lock);
        return -1;
    }
    if (f->id)
        sqlite3_bind_int64(st, ++col, f->id);
    if (f->message_id)
        sqlite3_bind_text(st, ++col, f->message_id, -1, SQLITE_STATIC);
    if (f->owner)
        sqlite3_bind_text(st, ++col, f->owner, -1, SQLITE_STATIC);
    if (f->owner_domain)
        sqlite3_bind_text(st, ++col, f->owner_domain, -1, SQLITE_STATIC);
    if (f->since)
        sqlite3_bind_int64(st, ++col, f->since);
    if (f->held_due)
        sqlite3_bind_int64(st, ++col, f->held_due);
    if (f->limit)
        sqlite3_bind_int64(st, ++col, (sqlite3_int64) f->limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct rc_message *m;

        *out = mk_xrealloc(*out, (*n + 1) * sizeof(**out));
        m = &(*out)[(*n)++];
        memset(m, 0, sizeof(*m));
        m->id = sqlite3_column_int64(st, 0);
        m->message_id = rc_db_col(st, 1);
        m->queue_id = rc_db_col(st, 2);
        m->time = sqlite3_column_int64(st, 3);
        m->sender = rc_db_col(st, 4);
        m->header_from = rc_db_col(st, 5);
        m->subject = rc_db_col(st, 6);
        m->sasl_user = rc_db_col(st, 7);
        m->owner = rc_db_col(st, 8);
        m->owner_domain = rc_db_col(st, 9);
        m->origin = rc_db_col(st, 10);
        m->added_id = sqlite3_column_int(st, 11) != 0;
        m->hold_until = sqlite3_column_int64(st, 12);
        m->hold_state = rc_db_col(st, 13);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        *error = rc_db_error(db, "cannot search");
    for (size_t i = 0; i < *n && *error == NULL; i++)
        (void) rc_db_load_rcpts(db, &(*out)[i], error);
    pthread_mutex_unlock(&db->lock);
    if (*error != NULL) {
        rc_messages_free(*out, *n);
        *out = NULL;
        *n = 0;
        return -1;
    }
    return 0;
}

/* One statement that changes the database, under the lock: its parameters
   are ?1 and ?2 (text) and ?3 and ?4 (integers); it need not use them all
   (binding one it lacks fails harmlessly). */
static int rc_db_update(struct rc_db *db, const char *sql, const char *what, const char *t1,
                        const char *t2, int64_t i1, int64_t i2, char **error)
{
    sqlite3_stmt *st;
    int rc;

    *error = NULL;
    pthread_mutex_lock(&db->lock);
    if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK) {
        *error = rc_db_error(db, what);
        pthread_mutex_unlock(&db->lock);
        return -1;
    }
    rc_db_text(st, 1, t1);
    rc_db_text(st, 2, t2);
    sqlite3_bind_int64(st, 3, i1);
    sqlite3_bind_int64(st, 4, i2);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        *error = rc_db_error(db, what);
    db->changes = sqlite3_changes(db->db);
    rc_db_keep_owner(db);
    pthread_mutex_unlock(&db->lock);
    return *error ? -1 : 0;
}

int rc_db_set_status(struct rc_db *db, int64_t message, const char *address, const char *status,
                     int64_t time, char **error)
{
    return rc_db_update(db, "UPDATE recipients SET status = ?1, status_time = ?4"
                        " WHERE address = ?2 AND message = ?3", "cannot record the outcome",
                        status, address, message, time, error);
}

int rc_db_set_hold(struct rc_db *db, int64_t message, const char *state, char **error)
{
    return rc_db_update(db, "UPDATE messages SET hold_state = ?1 WHERE id = ?3",
                        "cannot record the hold's state", state, NULL, message,
                        0, error);
}

int rc_db_next_release(struct rc_db *db, int64_t *when, char **error)
{
    sqlite3_stmt *st;
    int rc;

    *error = NULL;
    *when = 0;
    pthread_mutex_lock(&db->lock);
    if (sqlite3_prepare_v2(db->db, "SELECT min(hold_until) FROM messages"
                           " WHERE hold_state = 'held'", -1, &st, NULL) != SQLITE_OK) {
        *error = rc_db_error(db, "cannot read the holds");
        pthread_mutex_unlock(&db->lock);
        return -1;
    }
    if ((rc = sqlite3_step(st)) == SQLITE_ROW)
        *when = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        *error = rc_db_error(db, "cannot read the holds");
    pthread_mutex_unlock(&db->lock);
    return *error ? -1 : 0;
}

int rc_db_expire(struct rc_db *db, int64_t before, int64_t *removed, char **error)
{
    int rc = rc_db_update(db, "DELETE FROM messages WHERE time < ?3"
                          " AND (hold_state IS NULL OR hold_state != 'held')",
                          "cannot remove old messages", NULL, NULL, before, 0, error);

    *removed = rc == 0 ? db->changes : 0;
    return rc;
}

void rc_message_clear(struct rc_message *m)
{
    for (size_t k = 0; k < m->nrcpts; k++) {
        free(m->rcpts[k].address);
        free(m->rcpts[k].direction);
        free(m->rcpts[k].status);
    }
    free(m->rcpts);
    free(m->message_id);
    free(m->queue_id);
    free(m->sender);
    free(m->header_from);
    free(m->subject);
    free(m->sasl_user);
    free(m->owner);
    free(m->owner_domain);
    free(m->origin);
    free(m->hold_state);
    memset(m, 0, sizeof(*m));
}

void rc_messages_free(struct rc_message *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rc_message_clear(&m[i]);
    free(m);
}
