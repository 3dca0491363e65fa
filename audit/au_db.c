/*
 * au_db - the usage database. See au_db.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "au_db.h"
#include "au_proto.h"
#include "mk_util.h"

#define AU_DB_BUSY_MS	1000    /* the daemon's loop waits no longer for a lock */
#define AU_DB_STR_(x)	#x
#define AU_DB_STR(x)	AU_DB_STR_(x)

static const char au_db_schema[] =
    "CREATE TABLE IF NOT EXISTS mailbox_usage(user TEXT NOT NULL, mailbox_guid TEXT NOT NULL,"
    " mailbox TEXT NOT NULL, messages INTEGER NOT NULL, vsize INTEGER NOT NULL,"
    " updated INTEGER NOT NULL, PRIMARY KEY(user, mailbox_guid));"
    "CREATE TABLE IF NOT EXISTS last_login(user TEXT NOT NULL, service TEXT NOT NULL,"
    " time INTEGER NOT NULL, ip TEXT, PRIMARY KEY(user, service));"
    "CREATE TABLE IF NOT EXISTS body_reads(user TEXT NOT NULL, mailbox_guid TEXT NOT NULL,"
    " uid INTEGER NOT NULL, message_id TEXT, first INTEGER NOT NULL,"
    " last INTEGER NOT NULL, count INTEGER NOT NULL,"
    " PRIMARY KEY(user, mailbox_guid, uid)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS body_reads_message_id ON body_reads(message_id);"
    "CREATE TABLE IF NOT EXISTS accounts(user TEXT NOT NULL PRIMARY KEY,"
    " seen INTEGER NOT NULL);";

enum au_db_stmt {
    AU_SET_MAILBOX,
    AU_DELETE_MAILBOX,
    AU_SET_LOGIN,
    AU_SET_ACCOUNT,
    AU_MARK_READ,
    AU_FIND_GUID,
    AU_FIND_MARK,
    AU_FIND_MARK_BY_ID,
    AU_COPY_MARK,
    AU_NSTMT
};

static const char *const au_db_sql[AU_NSTMT] = {
    [AU_SET_MAILBOX] =
        "INSERT INTO mailbox_usage(user, mailbox_guid, mailbox, messages, vsize, updated)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(user, mailbox_guid) DO UPDATE SET"
        " mailbox = excluded.mailbox, messages = excluded.messages, vsize = excluded.vsize,"
        " updated = excluded.updated",
    [AU_DELETE_MAILBOX] = "DELETE FROM mailbox_usage WHERE user = ?1 AND mailbox_guid = ?2",
    [AU_SET_LOGIN] =
        "INSERT INTO last_login(user, service, time, ip) VALUES(?1, ?2, ?3, ?4)"
        " ON CONFLICT(user, service) DO UPDATE SET time = excluded.time, ip = excluded.ip",
    [AU_SET_ACCOUNT] =
        "INSERT INTO accounts(user, seen) VALUES(?1, ?2)"
        " ON CONFLICT(user) DO UPDATE SET seen = excluded.seen",
    [AU_MARK_READ] =
        "INSERT INTO body_reads(user, mailbox_guid, uid, message_id, first, last, count)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?5, 1) ON CONFLICT(user, mailbox_guid, uid) DO UPDATE SET"
        " first = min(first, excluded.first), last = max(last, excluded.last),"
        " count = count + 1, message_id = coalesce(excluded.message_id, message_id)",
    [AU_FIND_GUID] =
        "SELECT mailbox_guid FROM mailbox_usage WHERE user = ?1 AND mailbox = ?2"
        " ORDER BY updated DESC LIMIT 1",
    [AU_FIND_MARK] =
        "SELECT first, last, count, message_id FROM body_reads"
        " WHERE user = ?1 AND mailbox_guid = ?2 AND uid = ?3",
    [AU_FIND_MARK_BY_ID] =
        "SELECT min(first), max(last), max(count), message_id FROM body_reads"
        " WHERE user = ?1 AND message_id = ?2 HAVING count(*) > 0",
    [AU_COPY_MARK] =
        "INSERT INTO body_reads(user, mailbox_guid, uid, message_id, first, last, count)"
        " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(user, mailbox_guid, uid) DO UPDATE SET"
        " first = min(first, excluded.first), last = max(last, excluded.last),"
        " count = max(count, excluded.count),"
        " message_id = coalesce(message_id, excluded.message_id)",
};

struct au_db {
    char *path;
    sqlite3 *db;
    sqlite3_stmt *st[AU_NSTMT];
    bool writer, in_batch;
};

static char *au_db_error(struct au_db *db, const char *what)
{
    return mk_xasprintf("%s: %s: %s", db->path, what, sqlite3_errmsg(db->db));
}

void au_db_close(struct au_db *db)
{
    if (db == NULL)
        return;
    for (int i = 0; i < AU_NSTMT; i++)
        sqlite3_finalize(db->st[i]);
    sqlite3_close(db->db);
    free(db->path);
    free(db);
}

static int au_db_exec(struct au_db *db, const char *sql, const char *what, char **error)
{
    if (sqlite3_exec(db->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        *error = au_db_error(db, what);
        return -1;
    }
    return 0;
}

static int au_db_version(struct au_db *db, int *version, char **error)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(db->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) {
        *error = au_db_error(db, "cannot read its version");
        return -1;
    }
    rc = sqlite3_step(st);
    *version = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) {
        *error = au_db_error(db, "cannot read its version");
        return -1;
    }
    if (*version > AU_DB_VERSION) {
        *error = mk_xasprintf("%s: schema version %d is newer than this program's (%d)",
                              db->path, *version, AU_DB_VERSION);
        return -1;
    }
    return 0;
}

struct au_db *au_db_open(const char *path, bool writer, char **error)
{
    struct au_db *db = mk_xcalloc(1, sizeof(*db));
    int flags = writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY;
    int version;

    *error = NULL;
    db->path = mk_xstrdup(path);
    db->writer = writer;
    if (sqlite3_open_v2(path, &db->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        *error = db->db ? au_db_error(db, "cannot open")
                        : mk_xasprintf("%s: cannot open: out of memory", path);
        goto fail;
    }
    sqlite3_busy_timeout(db->db, AU_DB_BUSY_MS);
    if (au_db_version(db, &version, error) < 0)
        goto fail;
    if (!writer)
        return db;
    if (au_db_exec(db, "PRAGMA journal_mode=WAL", "cannot switch to WAL", error) < 0
        || au_db_exec(db, "PRAGMA synchronous=FULL", "cannot set synchronous", error) < 0)
        goto fail;
    if (version < AU_DB_VERSION
        && (au_db_exec(db, "BEGIN IMMEDIATE", "cannot create the tables", error) < 0
            || au_db_exec(db, au_db_schema, "cannot create the tables", error) < 0
            || au_db_exec(db, "PRAGMA user_version = " AU_DB_STR(AU_DB_VERSION),
                          "cannot create the tables", error) < 0
            || au_db_exec(db, "COMMIT", "cannot create the tables", error) < 0))
        goto fail;
    for (int i = 0; i < AU_NSTMT; i++)
        if (sqlite3_prepare_v3(db->db, au_db_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &db->st[i],
                               NULL) != SQLITE_OK) {
            *error = au_db_error(db, "cannot prepare a statement");
            goto fail;
        }
    return db;
fail:
    au_db_close(db);
    return NULL;
}

sqlite3 *au_db_handle(struct au_db *db)
{
    return db->db;
}

int au_db_begin(struct au_db *db, char **error)
{
    *error = NULL;
    if (au_db_exec(db, "BEGIN IMMEDIATE", "cannot begin a batch", error) < 0)
        return -1;
    db->in_batch = true;
    return 0;
}

int au_db_commit(struct au_db *db, char **error)
{
    *error = NULL;
    if (au_db_exec(db, "COMMIT", "cannot commit", error) < 0) {
        au_db_rollback(db);
        return -1;
    }
    db->in_batch = false;
    return 0;
}

void au_db_rollback(struct au_db *db)
{
    if (db->in_batch)
        sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
    db->in_batch = false;
}

static sqlite3_stmt *au_db_stmt(struct au_db *db, enum au_db_stmt which)
{
    sqlite3_stmt *st = db->st[which];

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static void au_db_bind_str(sqlite3_stmt *st, int at, const char *s)
{
    if (s)
        sqlite3_bind_text(st, at, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, at);
}

static int au_db_done(struct au_db *db, sqlite3_stmt *st, const char *what, char **error)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        *error = au_db_error(db, what);
        return -1;
    }
    return 0;
}

int au_db_apply_usage(struct au_db *db, const json_t *u, int64_t time, char **error)
{
    const char *kind = au_proto_str(u, "kind"), *user = au_proto_str(u, "user");
    long long messages = 0, vsize = 0;
    sqlite3_stmt *st;

    *error = NULL;
    if (kind == NULL || user == NULL)
        return 0;                       /* au_proto_parse() lets none through */
    if (strcmp(kind, "mailbox") == 0) {
        st = au_db_stmt(db, AU_SET_MAILBOX);
        au_proto_int(u, "messages", &messages);
        au_proto_int(u, "vsize", &vsize);
        au_db_bind_str(st, 1, user);
        au_db_bind_str(st, 2, au_proto_str(u, "mailbox_guid"));
        au_db_bind_str(st, 3, au_proto_str(u, "mailbox"));
        sqlite3_bind_int64(st, 4, messages);
        sqlite3_bind_int64(st, 5, vsize);
        sqlite3_bind_int64(st, 6, time / 1000000);
        return au_db_done(db, st, "cannot set a mailbox's usage", error);
    }
    if (strcmp(kind, "mailbox-delete") == 0) {
        st = au_db_stmt(db, AU_DELETE_MAILBOX);
        au_db_bind_str(st, 1, user);
        au_db_bind_str(st, 2, au_proto_str(u, "mailbox_guid"));
        return au_db_done(db, st, "cannot forget a mailbox", error);
    }
    if (strcmp(kind, "login") == 0) {
        st = au_db_stmt(db, AU_SET_LOGIN);
        au_db_bind_str(st, 1, user);
        au_db_bind_str(st, 2, au_proto_str(u, "service"));
        sqlite3_bind_int64(st, 3, time / 1000000);
        au_db_bind_str(st, 4, au_proto_str(u, "ip"));
        return au_db_done(db, st, "cannot set a login", error);
    }
    if (strcmp(kind, "account") == 0) {
        st = au_db_stmt(db, AU_SET_ACCOUNT);
        au_db_bind_str(st, 1, user);
        sqlite3_bind_int64(st, 2, time / 1000000);
        return au_db_done(db, st, "cannot note an account", error);
    }
    return 0;
}

bool au_db_wants(const json_t *record)
{
    const char *op = au_proto_str(record, "op");
    long long uid;

    if (op == NULL || au_proto_str(record, "user") == NULL
        || au_proto_str(record, "mailbox_guid") == NULL || !au_proto_int(record, "uid", &uid))
        return false;
    return strcmp(op, "read") == 0 || strcmp(op, "copy") == 0 || strcmp(op, "move") == 0;
}

struct au_db_mark {
    int64_t first, last, count;
    char *message_id;
};

/* 1 found, 0 not, -1 SQLite failed. */
static int au_db_row_mark(struct au_db *db, sqlite3_stmt *st, struct au_db_mark *m,
                          char **error)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        const unsigned char *id = sqlite3_column_text(st, 3);

        m->first = sqlite3_column_int64(st, 0);
        m->last = sqlite3_column_int64(st, 1);
        m->count = sqlite3_column_int64(st, 2);
        m->message_id = id ? mk_xstrdup((const char *) id) : NULL;
        sqlite3_reset(st);
        return 1;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        *error = au_db_error(db, "cannot look up a body-read mark");
        return -1;
    }
    return 0;
}

/* The mark of the message a copy or move came from. */
static int au_db_source_mark(struct au_db *db, const json_t *r, const char *user,
                             struct au_db_mark *m, char **error)
{
    const char *guid = au_proto_str(r, "from_mailbox_guid"), *from = au_proto_str(r,
                                                                                  "from_mailbox");
    const char *message_id = au_proto_str(r, "message_id");
    char *found = NULL;
    long long from_uid;
    sqlite3_stmt *st;
    int rc;

    if (!au_proto_int(r, "from_uid", &from_uid))
        guid = from = NULL;             /* only the message ID can tell then */
    if (guid == NULL && from != NULL) {
        st = au_db_stmt(db, AU_FIND_GUID);
        au_db_bind_str(st, 1, user);
        au_db_bind_str(st, 2, from);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            found = mk_xstrdup((const char *) sqlite3_column_text(st, 0));
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            *error = au_db_error(db, "cannot look up a mailbox");
            return -1;
        }
        guid = found;
    }
    if (guid != NULL) {
        st = au_db_stmt(db, AU_FIND_MARK);
        au_db_bind_str(st, 1, user);
        au_db_bind_str(st, 2, guid);
        sqlite3_bind_int64(st, 3, from_uid);
        rc = au_db_row_mark(db, st, m, error);
        free(found);
        return rc;
    }
    if (message_id == NULL)
        return 0;
    st = au_db_stmt(db, AU_FIND_MARK_BY_ID);
    au_db_bind_str(st, 1, user);
    au_db_bind_str(st, 2, message_id);
    return au_db_row_mark(db, st, m, error);
}

int au_db_apply_audit(struct au_db *db, const json_t *r, int64_t time, char **error)
{
    const char *op = au_proto_str(r, "op"), *user = au_proto_str(r, "user");
    const char *guid = au_proto_str(r, "mailbox_guid"), *message_id = au_proto_str(r,
                                                                                   "message_id");
    struct au_db_mark m = {0, 0, 0, NULL};
    long long uid = 0;
    sqlite3_stmt *st;
    int rc;

    *error = NULL;
    if (!au_db_wants(r))
        return 0;
    au_proto_int(r, "uid", &uid);
    if (strcmp(op, "read") == 0) {
        st = au_db_stmt(db, AU_MARK_READ);
        au_db_bind_str(st, 1, user);
        au_db_bind_str(st, 2, guid);
        sqlite3_bind_int64(st, 3, uid);
        au_db_bind_str(st, 4, message_id);
        sqlite3_bind_int64(st, 5, time / 1000000);
        return au_db_done(db, st, "cannot mark a body as read", error);
    }
    if ((rc = au_db_source_mark(db, r, user, &m, error)) <= 0)
        return rc;
    st = au_db_stmt(db, AU_COPY_MARK);
    au_db_bind_str(st, 1, user);
    au_db_bind_str(st, 2, guid);
    sqlite3_bind_int64(st, 3, uid);
    au_db_bind_str(st, 4, message_id ? message_id : m.message_id);
    sqlite3_bind_int64(st, 5, m.first);
    sqlite3_bind_int64(st, 6, m.last);
    sqlite3_bind_int64(st, 7, m.count);
    rc = au_db_done(db, st, "cannot mark a copy as read", error);
    free(m.message_id);
    return rc;
}

int au_db_reads(struct au_db *db, const char *user, const char *message_id,
                int (*cb)(void *arg, const struct au_db_read *r), void *arg, char **error)
{
    static const char sql[] =
        "SELECT b.user, b.mailbox_guid, m.mailbox, b.uid, b.message_id, b.first, b.last,"
        " b.count FROM body_reads b LEFT JOIN mailbox_usage m"
        " ON m.user = b.user AND m.mailbox_guid = b.mailbox_guid"
        " WHERE (?1 IS NULL OR b.user = ?1) AND (?2 IS NULL OR b.message_id = ?2)"
        " ORDER BY b.user, b.last, b.mailbox_guid, b.uid";
    sqlite3_stmt *st;
    int rc, stop = 0;

    *error = NULL;
    if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK) {
        *error = au_db_error(db, "cannot query body_reads");
        return -1;
    }
    au_db_bind_str(st, 1, user);
    au_db_bind_str(st, 2, message_id);
    while (stop == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct au_db_read r = {
            (const char *) sqlite3_column_text(st, 0), (const char *) sqlite3_column_text(st, 1),
            (const char *) sqlite3_column_text(st, 2), (const char *) sqlite3_column_text(st, 4),
            sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 5),
            sqlite3_column_int64(st, 6), sqlite3_column_int64(st, 7),
        };

        stop = cb(arg, &r);
    }
    if (stop == 0 && rc != SQLITE_DONE) {
        *error = au_db_error(db, "cannot query body_reads");
        stop = -1;
    }
    sqlite3_finalize(st);
    return stop;
}
