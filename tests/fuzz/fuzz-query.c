/*
 * libFuzzer target: the archive search language (ar_query) and the
 * tokenizer (ar_fts). The raw input goes through ar_tokenize(); then,
 * up to its first NUL, it is parsed as a query. A query that parses
 * must compile to SQL that SQLite prepares and runs without error
 * against a small index (created once): any SQL or FTS5 syntax error
 * is a bug, and aborts.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ar_fts.h"
#include "ar_query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_schema[] =
    "CREATE TABLE messages (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL UNIQUE,"
    " object BLOB NOT NULL, time INTEGER NOT NULL, direction TEXT NOT NULL,"
    " size INTEGER NOT NULL, attachments INTEGER NOT NULL, sender TEXT, recipients TEXT,"
    " from_hdr TEXT, to_hdr TEXT, cc_hdr TEXT, subject TEXT, message_id TEXT, client TEXT,"
    " login TEXT, queue_id TEXT, source TEXT NOT NULL, hidden INTEGER NOT NULL DEFAULT 0);"
    "CREATE VIRTUAL TABLE fts USING fts5(sender, recipients, from_, to_, cc, bcc, subject,"
    " body, attachment, content='', tokenize='mkcjk');"
    "INSERT INTO messages VALUES (1853070350745601, 1, x'00', 1767225600, 'inbound', 2000, 0,"
    " 'alice@example.com', 'bob@corp.example', 'Alice <alice@example.com>',"
    " 'bob@corp.example', '', 'Quarterly report', NULL, NULL, NULL, NULL, 'fuzz', 0);"
    "INSERT INTO fts (rowid, sender, recipients, from_, to_, subject, body) VALUES"
    " (1853070350745601, 'alice@example.com', 'bob@corp.example', 'Alice <alice@example.com>',"
    " 'bob@corp.example', 'Quarterly report', '員工個資外洩 ID號碼A123456789');"
    "INSERT INTO messages VALUES (1858415571763202, 2, x'01', 1772323200, 'internal', 900000,"
    " 1, 'bob@corp.example', 'carol@corp.example', 'bob@corp.example', 'carol@corp.example',"
    " 'dave@corp.example', '個資法', NULL, NULL, NULL, NULL, 'fuzz', 0);"
    "INSERT INTO fts (rowid, sender, recipients, from_, to_, cc, bcc, subject, body, attachment)"
    " VALUES (1858415571763202, 'bob@corp.example', 'carol@corp.example', 'bob@corp.example',"
    " 'carol@corp.example', 'dave@corp.example', 'eve@corp.example', '個資法',"
    " '依照個資法規定 salary', 'salary_2026.xlsx 薪資');";

static void fuzz_die(sqlite3 *db, const char *what, const char *sql)
{
    fprintf(stderr, "%s: %s\n%s\n", what, sqlite3_errmsg(db), sql ? sql : "");
    abort();
}

static sqlite3 *fuzz_db(void)
{
    static sqlite3 *db;
    char *error = NULL;

    if (db)
        return db;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK || ar_fts_register(db, &error) < 0)
        fuzz_die(db, error ? error : "open", NULL);
    if (sqlite3_exec(db, fuzz_schema, NULL, NULL, NULL) != SQLITE_OK)
        fuzz_die(db, "schema", NULL);
    return db;
}

static int fuzz_token(void *arg, const char *token, size_t len, int start, int end)
{
    size_t *total = arg;

    if (len == 0 || len > AR_FTS_MAX_TOKEN * 2 || start < 0 || end < start)
        abort();
    *total += len + (unsigned char) token[len - 1];
    return 0;
}

static void fuzz_run(const struct ar_query *q, long offset, const char *scope)
{
    sqlite3 *db = fuzz_db();
    struct ar_sql s;
    sqlite3_stmt *st;
    char *error = NULL;
    int rc, next, rows = 0;

    if (ar_query_compile(q, offset, scope, &s, &error) < 0) {
        free(error);
        return;
    }
    if (sqlite3_prepare_v2(db, s.sql, -1, &st, NULL) != SQLITE_OK)
        fuzz_die(db, "prepare", s.sql);
    if (scope)
        sqlite3_bind_int(st, 1, 1000);
    if ((next = ar_sql_bind(st, &s, scope ? 2 : 1)) < 0)
        fuzz_die(db, "bind", s.sql);
    sqlite3_bind_int(st, next, 10);
    sqlite3_bind_int(st, next + 1, 0);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && ++rows < 10)
        ;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        fuzz_die(db, "step", s.sql);
    sqlite3_finalize(st);
    ar_sql_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ar_query *q;
    char *text, *error = NULL;
    size_t total = 0;

    ar_tokenize((const char *) data, size, fuzz_token, &total);
    text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    q = ar_query_parse(text, &error);
    if (q == NULL) {
        if (error == NULL || strlen(error) == 0)
            abort();
        free(error);
    } else {
        fuzz_run(q, size & 1 ? 28800 : 0, size & 2 ? "m.size >= ?1" : NULL);
        ar_query_free(q);
    }
    free(text);
    return 0;
}
