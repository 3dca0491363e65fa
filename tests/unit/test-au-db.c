/* Unit tests for au_db: the usage database mailkeep-auditd keeps. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "au_db.h"
#include "au_proto.h"
#include "mk_test.h"
#include "mk_util.h"

static char tmpdir[64];

#define T(s) ((int64_t) (s) * 1000000)

/* Apply one line (A or U) in its own batch: 0 or -1. */
static int apply(struct au_db *db, const char *line, int64_t time)
{
    struct au_proto_line l;
    char *error = NULL;
    int rc;

    if (au_proto_parse(line, strlen(line), &l, &error) < 0) {
        printf("    parse: %s\n", error);
        free(error);
        return -1;
    }
    rc = au_db_begin(db, &error);
    if (rc == 0)
        rc = l.kind == AU_PROTO_USAGE ? au_db_apply_usage(db, l.obj, time, &error)
                                      : au_db_apply_audit(db, l.obj, time, &error);
    if (rc == 0)
        rc = au_db_commit(db, &error);
    else
        au_db_rollback(db);
    if (rc < 0) {
        printf("    apply: %s\n", error);
        free(error);
    }
    au_proto_line_free(&l);
    return rc;
}

/* One SQL value as text, "-" for none: for checking the tables directly. */
static char *query(struct au_db *db, const char *sql)
{
    sqlite3_stmt *st;
    char *out = NULL;

    if (sqlite3_prepare_v2(au_db_handle(db), sql, -1, &st, NULL) != SQLITE_OK)
        return mk_xasprintf("error: %s", sqlite3_errmsg(au_db_handle(db)));
    if (sqlite3_step(st) == SQLITE_ROW)
        out = mk_xstrdup(sqlite3_column_text(st, 0) ? (const char *) sqlite3_column_text(st, 0)
                                                     : "NULL");
    sqlite3_finalize(st);
    return out ? out : mk_xstrdup("-");
}

static bool query_is(struct au_db *db, const char *sql, const char *want)
{
    char *got = query(db, sql);
    bool ok = strcmp(got, want) == 0;

    if (!ok)
        printf("    %s: \"%s\", expected \"%s\"\n", sql, got, want);
    free(got);
    return ok;
}

struct rows {
    char text[2048];
    int n;
};

static int collect(void *arg, const struct au_db_read *r)
{
    struct rows *rows = arg;
    size_t used = strlen(rows->text);

    snprintf(rows->text + used, sizeof(rows->text) - used, "%s%s/%s/%lld/%s/%lld-%lld/%lld",
             rows->n++ ? " " : "", r->user, r->mailbox ? r->mailbox : r->mailbox_guid,
             (long long) r->uid, r->message_id ? r->message_id : "-", (long long) r->first,
             (long long) r->last, (long long) r->count);
    return 0;
}

static char *reads(struct au_db *db, const char *user, const char *message_id)
{
    struct rows rows;
    char *error = NULL;

    memset(&rows, 0, sizeof(rows));
    if (au_db_reads(db, user, message_id, collect, &rows, &error) < 0) {
        char *e = mk_xasprintf("error: %s", error);

        free(error);
        return e;
    }
    return mk_xstrdup(rows.text);
}

static void test_usage(struct au_db *db)
{
    test_begin("db: a fresh database has the contract's schema, in WAL mode");
    test_assert(query_is(db, "PRAGMA journal_mode", "wal"));
    test_assert(query_is(db, "PRAGMA user_version", "2"));
    test_assert(query_is(db, "SELECT count(*) FROM sqlite_master WHERE name IN ('mailbox_usage',"
                         "'last_login','body_reads','body_reads_message_id','accounts')", "5"));
    test_end();

    test_begin("db: mailbox updates set, replace and forget a mailbox's usage");
    test_assert_int(apply(db, "U {\"kind\":\"mailbox\",\"user\":\"bob\",\"mailbox_guid\":\"a1\","
                          "\"mailbox\":\"INBOX\",\"messages\":3,\"vsize\":300}", T(1000)), 0);
    test_assert_int(apply(db, "U {\"kind\":\"mailbox\",\"user\":\"bob\",\"mailbox_guid\":\"b2\","
                          "\"mailbox\":\"Sent\",\"messages\":1,\"vsize\":10}", T(1001)), 0);
    test_assert_int(apply(db, "U {\"kind\":\"mailbox\",\"user\":\"bob\",\"mailbox_guid\":\"a1\","
                          "\"mailbox\":\"INBOX\",\"messages\":4,\"vsize\":420}", T(1002)), 0);
    test_assert(query_is(db, "SELECT messages || '/' || vsize || '/' || updated FROM "
                         "mailbox_usage WHERE user = 'bob' AND mailbox_guid = 'a1'",
                         "4/420/1002"));
    test_assert(query_is(db, "SELECT count(*) FROM mailbox_usage", "2"));
    test_assert_int(apply(db, "U {\"kind\":\"mailbox-delete\",\"user\":\"bob\",\"mailbox_guid\":"
                          "\"b2\"}", T(1003)), 0);
    test_assert(query_is(db, "SELECT count(*) FROM mailbox_usage", "1"));
    test_end();

    test_begin("db: a login sets the user's last login per service");
    test_assert_int(apply(db, "U {\"kind\":\"login\",\"user\":\"bob\",\"service\":\"imap\","
                          "\"ip\":\"192.0.2.1\"}", T(2000)), 0);
    test_assert_int(apply(db, "U {\"kind\":\"login\",\"user\":\"bob\",\"service\":\"pop3\"}",
                          T(2001)), 0);
    test_assert_int(apply(db, "U {\"kind\":\"login\",\"user\":\"bob\",\"service\":\"imap\","
                          "\"ip\":\"192.0.2.9\"}", T(2002)), 0);
    test_assert(query_is(db, "SELECT time || ' ' || ip FROM last_login WHERE service = 'imap'",
                         "2002 192.0.2.9"));
    test_assert(query_is(db, "SELECT coalesce(ip, 'none') FROM last_login WHERE service = "
                         "'pop3'", "none"));
    test_end();
}

static void test_reads(struct au_db *db)
{
    char *s;

    test_begin("db: a read marks the body, again and again");
    test_assert_int(apply(db, "A {\"op\":\"read\",\"user\":\"bob\",\"mailbox_guid\":\"a1\","
                          "\"uid\":5,\"message_id\":\"<m5@x>\",\"part\":\"full\"}", T(3000)), 0);
    test_assert_int(apply(db, "A {\"op\":\"read\",\"user\":\"bob\",\"mailbox_guid\":\"a1\","
                          "\"uid\":5,\"part\":\"body\"}", T(3010)), 0);
    test_assert_int(apply(db, "A {\"op\":\"read\",\"user\":\"bob\",\"mailbox_guid\":\"a1\","
                          "\"uid\":5}", T(2990)), 0);      /* an earlier clock */
    s = reads(db, "bob", NULL);
    test_assert_str(s, "bob/INBOX/5/<m5@x>/2990-3010/3");
    free(s);
    test_end();

    test_begin("db: records that change nothing");
    test_assert_int(apply(db, "A {\"op\":\"read\",\"user\":\"bob\",\"uid\":6}", T(3001)), 0);
    test_assert_int(apply(db, "A {\"op\":\"read\",\"user\":\"bob\",\"mailbox_guid\":\"a1\"}",
                          T(3001)), 0);
    test_assert_int(apply(db, "A {\"op\":\"select\",\"user\":\"bob\",\"mailbox_guid\":\"a1\","
                          "\"uid\":6}", T(3001)), 0);
    test_assert(query_is(db, "SELECT count(*) FROM body_reads", "1"));
    test_end();

    test_begin("db: a copy of a read message is marked, found by its mailbox's name");
    test_assert_int(apply(db, "A {\"op\":\"copy\",\"user\":\"bob\",\"from_mailbox\":\"INBOX\","
                          "\"from_uid\":5,\"mailbox\":\"Keep\",\"mailbox_guid\":\"c3\","
                          "\"uid\":1}", T(4000)), 0);
    s = reads(db, NULL, "<m5@x>");
    test_assert_str(s, "bob/INBOX/5/<m5@x>/2990-3010/3 bob/c3/1/<m5@x>/2990-3010/3");
    free(s);
    test_end();

    test_begin("db: a move found by from_mailbox_guid; the original keeps its mark");
    test_assert_int(apply(db, "A {\"op\":\"move\",\"user\":\"bob\",\"from_mailbox\":\"Keep\","
                          "\"from_mailbox_guid\":\"c3\",\"from_uid\":1,\"mailbox\":\"Old\","
                          "\"mailbox_guid\":\"d4\",\"uid\":9,\"message_id\":\"<m5@x>\"}",
                          T(4001)), 0);
    test_assert(query_is(db, "SELECT count(*) FROM body_reads WHERE message_id = '<m5@x>'",
                         "3"));
    test_end();

    test_begin("db: without a known mailbox, the user and Message-ID tell");
    test_assert_int(apply(db, "A {\"op\":\"copy\",\"user\":\"bob\",\"from_mailbox\":\"Nowhere\","
                          "\"from_uid\":1,\"mailbox\":\"X\",\"mailbox_guid\":\"e5\",\"uid\":2,"
                          "\"message_id\":\"<m5@x>\"}", T(4002)), 0);
    test_assert(query_is(db, "SELECT first || '-' || last || '/' || count FROM body_reads "
                         "WHERE mailbox_guid = 'e5'", "2990-3010/3"));
    test_assert_int(apply(db, "A {\"op\":\"copy\",\"user\":\"carol\",\"mailbox\":\"X\","
                          "\"mailbox_guid\":\"f6\",\"uid\":2,\"message_id\":\"<m5@x>\"}",
                          T(4003)), 0);
    test_assert(query_is(db, "SELECT count(*) FROM body_reads WHERE user = 'carol'", "0"));
    test_end();

    test_begin("db: a copy of an unread message is not marked");
    test_assert_int(apply(db, "A {\"op\":\"copy\",\"user\":\"bob\",\"from_mailbox\":\"INBOX\","
                          "\"from_uid\":77,\"mailbox\":\"Keep\",\"mailbox_guid\":\"c3\","
                          "\"uid\":2}", T(4004)), 0);
    test_assert(query_is(db, "SELECT count(*) FROM body_reads WHERE mailbox_guid = 'c3'", "1"));
    test_end();
}

static void test_batches(struct au_db *db, const char *path)
{
    struct au_proto_line l;
    char *error = NULL, *s;
    struct au_db *ro;

    test_begin("db: a batch rolled back leaves nothing");
    {
        static const char line[] = "U {\"kind\":\"login\",\"user\":\"dave\",\"service\":\"imap\"}";

        test_assert_int(au_proto_parse(line, sizeof(line) - 1, &l, &error), 0);
    }
    test_assert_int(au_db_begin(db, &error), 0);
    test_assert_int(au_db_apply_usage(db, l.obj, T(5000), &error), 0);
    au_db_rollback(db);
    au_proto_line_free(&l);
    test_assert(query_is(db, "SELECT count(*) FROM last_login WHERE user = 'dave'", "0"));
    test_end();

    test_begin("db: a reader opens it read-only and sees the writer's commits");
    ro = au_db_open(path, false, &error);
    test_assert(ro != NULL);
    s = ro ? reads(ro, "bob", "<m5@x>") : NULL;
    test_assert(s && strncmp(s, "bob/", 4) == 0);
    free(s);
    test_assert(ro && sqlite3_exec(au_db_handle(ro), "DELETE FROM body_reads", NULL, NULL, NULL)
                == SQLITE_READONLY);
    au_db_close(ro);
    test_end();

    test_begin("db: a missing database is not made by a reader");
    {
        char *missing = mk_xasprintf("%s/none.sqlite", tmpdir);

        test_assert(au_db_open(missing, false, &error) == NULL);
        test_assert(error && strstr(error, "none.sqlite: cannot open"));
        free(error);
        error = NULL;
        test_assert(access(missing, F_OK) < 0);
        free(missing);
    }
    test_end();
}

int main(void)
{
    char *path, *error = NULL;
    struct au_db *db;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/mk-au-db-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    path = mk_xasprintf("%s/usage.sqlite", tmpdir);
    if ((db = au_db_open(path, true, &error)) == NULL) {
        printf("%s\n", error);
        return 2;
    }
    test_usage(db);
    test_reads(db);
    test_batches(db, path);
    au_db_close(db);

    test_begin("db: a version 1 database gets the accounts table, its data kept");
    db = au_db_open(path, true, &error);
    sqlite3_exec(au_db_handle(db), "DROP TABLE accounts; PRAGMA user_version = 1", NULL, NULL,
                 NULL);
    au_db_close(db);
    db = au_db_open(path, true, &error);
    test_assert(db != NULL);
    if (db != NULL) {
        test_assert(query_is(db, "PRAGMA user_version", "2"));
        test_assert(query_is(db, "SELECT count(*) FROM accounts", "0"));
        test_assert(!query_is(db, "SELECT count(*) FROM mailbox_usage", "0"));
        au_db_close(db);
    }
    test_end();

    test_begin("db: a schema newer than the program's is refused");
    db = au_db_open(path, true, &error);
    sqlite3_exec(au_db_handle(db), "PRAGMA user_version = 9", NULL, NULL, NULL);
    au_db_close(db);
    test_assert(au_db_open(path, true, &error) == NULL);
    test_assert(error && strstr(error, "schema version 9 is newer"));
    free(error);
    test_end();

    for (const char *suffix = ""; ; suffix = suffix[0] == '\0' ? "-wal" : "-shm") {
        char *p = mk_xasprintf("%s%s", path, suffix);

        unlink(p);
        free(p);
        if (strcmp(suffix, "-shm") == 0)
            break;
    }
    rmdir(tmpdir);
    free(path);
    return test_done();
}
