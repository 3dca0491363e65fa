/* Unit tests for ar_query: the search language, run against an in-memory index. */
#include "config.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ar_fts.h"
#include "ar_query.h"
#include "mk_test.h"
#include "mk_util.h"

#define TAIWAN (8 * 3600)

static const char schema[] =
    "CREATE TABLE messages (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL UNIQUE,"
    " object BLOB NOT NULL, time INTEGER NOT NULL, direction TEXT NOT NULL,"
    " size INTEGER NOT NULL, attachments INTEGER NOT NULL, sender TEXT, recipients TEXT,"
    " from_hdr TEXT, to_hdr TEXT, cc_hdr TEXT, subject TEXT, message_id TEXT, client TEXT,"
    " login TEXT, queue_id TEXT, source TEXT NOT NULL, hidden INTEGER NOT NULL DEFAULT 0);"
    "CREATE VIRTUAL TABLE fts USING fts5(sender, recipients, from_, to_, cc, bcc, subject,"
    " body, attachment, content='', tokenize='mkcjk');";

/* Message n has id time * 2^20 + n: results are shown as the n, newest first. */
static const struct message {
    const char *time;           /* UTC */
    const char *direction;
    long size;
    int attachments, hidden;
    const char *sender, *recipients, *from, *to, *cc, *bcc, *subject, *body, *attachment;
} messages[] = {
    {"2025-12-31 23:30", "inbound", 2000, 0, 0, "alice@example.com", "carol@corp.example",
     "Alice Smith <alice@example.com>", "carol@corp.example", "", "", "Year end",
     "Happy new year", ""},
    {"2026-01-05 09:00", "internal", 15000, 1, 0, "bob@corp.example", "carol@corp.example",
     "Bob <bob@corp.example>", "Carol <carol@corp.example>", "", "", "Quarterly report draft",
     "請看附件 numbers", "salary_2026.xlsx 薪資 總表"},
    {"2026-01-20 09:00", "internal", 3000, 0, 0, "bob@corp.example", "carol@corp.example",
     "Bob <bob@corp.example>", "carol@corp.example", "", "", "個資法 briefing",
     "依照個資法規定辦理", ""},
    {"2026-02-03 09:00", "inbound", 4000, 0, 0, "news@vendor.example", "dave@corp.example",
     "Vendor News <news@vendor.example>", "dave@corp.example", "", "", "新聞",
     "員工個資外洩事件調查", ""},
    {"2026-02-14 09:00", "inbound", 5000, 0, 0, "eve@other.example", "dave@corp.example",
     "eve@other.example", "dave@corp.example", "", "", "說明", "個資保護，投資法人說明", ""},
    {"2026-02-28 20:00", "outbound", 6000, 0, 0, "carol@corp.example", "frank@partner.example",
     "carol@corp.example", "frank@partner.example", "", "", "Evening note", "sent late", ""},
    {"2026-03-01 10:00", "outbound", 7000, 0, 0, "carol@corp.example", "frank@partner.example",
     "carol@corp.example", "frank@partner.example", "", "", "Morning", "一個人", ""},
    {"2026-03-15 09:00", "internal", 120000, 2, 0, "bob@corp.example",
     "carol@corp.example dave@corp.example", "bob@corp.example", "carol@corp.example",
     "dave@corp.example", "", "Q1 Quarterly Report", "see attached reports", "q1.pdf"},
    {"2026-03-20 09:00", "internal", 9000, 0, 0, "bob@corp.example", "carol@corp.example",
     "bob@corp.example", "carol@corp.example", "", "", "report quarterly figures",
     "reporting done", ""},
    {"2026-03-31 23:00", "inbound", 200, 0, 0, "alice@example.com", "carol@corp.example",
     "alice@example.com", "carol@corp.example", "", "", "這個", "這個", ""},
    {"2026-04-01 01:00", "inbound", 5 * 1048576 + 10, 1, 0, "alice@example.com",
     "carol@corp.example", "alice@example.com", "carol@corp.example", "", "", "big file", "個",
     "photo.jpg"},
    {"2026-04-10 09:00", "outbound", 1048576, 0, 0, "carol@corp.example",
     "grace@partner.example henry@partner.example", "carol@corp.example",
     "grace@partner.example", "", "henry@partner.example", "Contract",
     "ID號碼A123456789 請核對", ""},
    {"2026-04-11 09:00", "unknown", 1024, 0, 0, "mailer-daemon@corp.example", "bob@corp.example",
     "Mail Delivery System <mailer-daemon@corp.example>", "postmaster@corp.example", "", "",
     "Undelivered", "delivery failed", ""},
    {"2026-04-12 09:00", "inbound", 3000, 0, 1, "alice@example.com", "carol@corp.example",
     "alice@example.com", "carol@corp.example", "", "", "hidden",
     "個資 quarterly report secret", ""},
    {"2026-04-13 09:00", "inbound", 2500, 0, 0, "ivan@example.org", "carol@corp.example",
     "ivan@example.org", "Carol <carol@corp.example>", "alice@example.com", "", "Meeting",
     "Let us meet", ""},
    {"2026-04-14 09:00", "internal", 100, 1, 0, "bob@corp.example", "carol@corp.example",
     "bob@corp.example", "carol@corp.example", "", "", "Straße ÉCOLE", "résumé attached",
     "résumé.docx"},
    {"2026-05-01 09:00", "inbound", 50000, 0, 0, "spam@bad.example", "carol@corp.example",
     "spam@bad.example", "carol@corp.example", "", "", "Win 個人 money", "click now", ""},
    {"2026-06-01 09:00", "internal", 80000, 1, 0, "bob@corp.example", "carol@corp.example",
     "bob@corp.example", "carol@corp.example", "", "", "salary review", "confidential",
     "review.pdf"},
    {"2027-01-02 09:00", "inbound", 3000, 0, 0, "alice@example.com", "carol@corp.example",
     "alice@example.com", "carol@corp.example", "", "", "New year 2027", "happy 2027", ""},
};

static sqlite3 *db;

static long long utc(const char *when)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (sscanf(when, "%d-%d-%d %d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min) != 5)
        abort();
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (long long) timegm(&tm);
}

static void exec(const char *sql)
{
    char *err = NULL;

    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        printf("%s: %s\n", sql, err);
        exit(2);
    }
}

static void insert(int n, const struct message *m)
{
    sqlite3_stmt *st;
    long long t = utc(m->time), id = t * 1048576 + n;

    sqlite3_prepare_v2(db, "INSERT INTO messages (id, seq, object, time, direction, size,"
                       " attachments, sender, recipients, from_hdr, to_hdr, cc_hdr, subject,"
                       " source, hidden) VALUES (?1, ?2, x'00', ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
                       " ?10, ?11, ?12, 'test', ?13)", -1, &st, NULL);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, n);
    sqlite3_bind_int64(st, 3, t);
    sqlite3_bind_text(st, 4, m->direction, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, m->size);
    sqlite3_bind_int(st, 6, m->attachments);
    sqlite3_bind_text(st, 7, m->sender, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, m->recipients, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, m->from, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, m->to, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, m->cc, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 12, m->subject, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 13, m->hidden);
    if (sqlite3_step(st) != SQLITE_DONE)
        exit(2);
    sqlite3_finalize(st);
    sqlite3_prepare_v2(db, "INSERT INTO fts (rowid, sender, recipients, from_, to_, cc, bcc,"
                       " subject, body, attachment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,"
                       " ?10)", -1, &st, NULL);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, m->sender, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, m->recipients, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, m->from, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, m->to, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, m->cc, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, m->bcc, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, m->subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, m->body, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, m->attachment, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        exit(2);
    sqlite3_finalize(st);
}

static void setup(void)
{
    char *error = NULL;

    if (sqlite3_open(":memory:", &db) != SQLITE_OK || ar_fts_register(db, &error) < 0) {
        printf("cannot set up SQLite: %s\n", error);
        exit(2);
    }
    exec(schema);
    exec("BEGIN");
    for (size_t i = 0; i < MK_ARRAY_LEN(messages); i++)
        insert((int) i + 1, &messages[i]);
    exec("COMMIT");
}

/*
 * Run a query: the message numbers found, newest first, separated by
 * spaces; "ERROR: ..." for a parse, compile or SQLite error.
 */
static const char *search_full(const char *query, long offset, const char *scope,
                               const char *scope_value, int limit, int skip)
{
    static char out[1024];
    struct ar_query *q;
    struct ar_sql s;
    sqlite3_stmt *st;
    char *error = NULL;
    size_t len = 0;
    int rc, next;

    out[0] = '\0';
    if ((q = ar_query_parse(query, &error)) == NULL
        || ar_query_compile(q, offset, scope, &s, &error) < 0) {
        snprintf(out, sizeof(out), "ERROR: %s", error);
        free(error);
        ar_query_free(q);
        return out;
    }
    ar_query_free(q);
    if (sqlite3_prepare_v2(db, s.sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(out, sizeof(out), "ERROR: %s in %s", sqlite3_errmsg(db), s.sql);
        ar_sql_free(&s);
        return out;
    }
    if (scope_value)
        sqlite3_bind_text(st, 1, scope_value, -1, SQLITE_STATIC);
    next = ar_sql_bind(st, &s, scope_value ? 2 : 1);
    sqlite3_bind_int(st, next, limit);
    sqlite3_bind_int(st, next + 1, skip);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && len < sizeof(out) - 16)
        len += (size_t) snprintf(out + len, sizeof(out) - len, "%s%lld", len ? " " : "",
                                 (long long) (sqlite3_column_int64(st, 0) % 1048576));
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        snprintf(out, sizeof(out), "ERROR: %s in %s", sqlite3_errmsg(db), s.sql);
    if (next != (int) s.nparams + (scope_value ? 2 : 1)
        || sqlite3_bind_parameter_count(st) != next + 1)
        snprintf(out, sizeof(out), "ERROR: %d parameters, LIMIT at %d", (int) s.nparams, next);
    sqlite3_finalize(st);
    ar_sql_free(&s);
    return out;
}

static const char *search(const char *query)
{
    return search_full(query, 0, NULL, NULL, 100, 0);
}

static const char *search_tz(const char *query, long offset)
{
    return search_full(query, offset, NULL, NULL, 100, 0);
}

static void test_text(void)
{
    test_begin("search: a two-character word inside a longer run");
    test_assert_str(search("個資"), "5 4 3");
    test_end();

    test_begin("search: a three-character phrase needs adjacent bigrams");
    test_assert_str(search("個資法"), "3");
    test_assert_str(search("投資法人"), "5");
    test_end();

    test_begin("search: a single CJK character, as a prefix");
    test_assert_str(search("個"), "17 11 10 7 5 4 3");
    test_assert_str(search("subject:個"), "17 10 3");
    test_end();

    test_begin("search: Latin words, case, accents, mixed text");
    test_assert_str(search("SALARY"), "18 2");
    test_assert_str(search("straße"), "16");
    test_assert_str(search("école résumé"), "16");
    test_assert_str(search("a123456789"), "12");
    test_assert_str(search("號碼"), "12");
    test_assert_str(search("ｓａｌａｒｙ"), "18 2");
    test_end();

    test_begin("search: hidden messages are never found");
    test_assert_str(search("secret"), "");
    test_assert_str(search("quarterly report"), "9 8 2");
    test_end();

    test_begin("search: from: envelope sender or From header");
    test_assert_str(search("from:alice@example.com"), "19 11 10 1");
    test_assert_str(search("from:\"Alice Smith\""), "1");
    test_assert_str(search("FROM:bob"), "18 16 9 8 3 2");
    test_end();

    test_begin("search: to: envelope recipients or To header, cc:, bcc:");
    test_assert_str(search("to:dave@corp.example"), "8 5 4");
    test_assert_str(search("to:postmaster"), "13");
    test_assert_str(search("cc:dave"), "8");
    test_assert_str(search("cc:alice"), "15");
    test_assert_str(search("bcc:henry"), "12");
    test_assert_str(search("bcc:grace"), "");
    test_end();

    test_begin("search: subject: phrase, body:, attachment:");
    test_assert_str(search("subject:\"quarterly report\""), "8 2");
    test_assert_str(search("subject:\"report quarterly\""), "9");
    test_assert_str(search("body:quarterly"), "");
    test_assert_str(search("attachment:salary"), "2");
    test_assert_str(search("attachment:薪資"), "2");
    test_assert_str(search("attachment:pdf"), "18 8");
    test_end();

    test_begin("search: bare words search every column");
    test_assert_str(search("alice"), "19 15 11 10 1");
    test_assert_str(search("henry"), "12");
    test_end();

    test_begin("search: prefixes");
    test_assert_str(search("report*"), "9 8 2");
    test_assert_str(search("subject:repo*"), "9 8 2");
    test_assert_str(search("body:report*"), "9 8");
    test_assert_str(search("\"quarterly rep\"*"), "8 2");
    test_end();
}

static void test_structured(void)
{
    test_begin("search: date: a day, UTC and local");
    test_assert_str(search("date:2026-03-01"), "7");
    test_assert_str(search_tz("date:2026-03-01", TAIWAN), "7 6");
    test_assert_str(search("date:2026/3/1"), "7");
    test_end();

    test_begin("search: date: a month, a year");
    test_assert_str(search("date:2026-03"), "10 9 8 7");
    test_assert_str(search_tz("date:2026-03", TAIWAN), "9 8 7 6");
    test_assert_str(search("date:2025"), "1");
    test_assert_str(search_tz("date:2025", TAIWAN), "");
    test_end();

    test_begin("search: date ranges and comparisons");
    test_assert_str(search("date:2026-01-01..2026-01-31"), "3 2");
    test_assert_str(search("date:2026-02..2026-03"), "10 9 8 7 6 5 4");
    test_assert_str(search("date:>=2026-04-01"), "19 18 17 16 15 13 12 11");
    test_assert_str(search("date:>2026-04-12"), "19 18 17 16 15");
    test_assert_str(search("date:<2026-01-06"), "2 1");
    test_assert_str(search("date:<=2025-12-31"), "1");
    test_assert_str(search("date:2026-06.."), "19 18");
    test_assert_str(search("date:..2025"), "1");
    test_assert_str(search("after:2026-06-01"), "19 18");
    test_assert_str(search("before:2026-01-05"), "1");
    test_end();

    test_begin("search: size");
    test_assert_str(search("size:>1M"), "11");
    test_assert_str(search("size:>=1M"), "12 11");
    test_assert_str(search("size:<1k"), "16 10");
    test_assert_str(search("size:1k..5M"), "19 18 17 15 13 12 9 8 7 6 5 4 3 2 1");
    test_assert_str(search("size:100k..200KB"), "8");
    test_assert_str(search("size:>0.5m size:<1.5M"), "12");
    test_end();

    test_begin("search: direction, has:attachment, negated");
    test_assert_str(search("direction:outbound"), "12 7 6");
    test_assert_str(search("direction:unknown"), "13");
    test_assert_str(search("Direction:INTERNAL"), "18 16 9 8 3 2");
    test_assert_str(search("has:attachment"), "18 16 11 8 2");
    test_assert_str(search("-has:attachment"), "19 17 15 13 12 10 9 7 6 5 4 3 1");
    test_assert_str(search("NOT direction:inbound NOT direction:internal"), "13 12 7 6");
    test_end();
}

static void test_boolean(void)
{
    test_begin("search: OR, NOT, -, parentheses among words");
    test_assert_str(search("salary OR 個資法"), "18 3 2");
    test_assert_str(search("report -draft"), "9 8");
    test_assert_str(search("report NOT draft"), "9 8");
    test_assert_str(search("quarterly (draft OR figures)"), "9 2");
    test_assert_str(search("report AND NOT (draft OR figures)"), "8");
    test_assert_str(search("-from:bob"), "19 17 15 13 12 11 10 7 6 5 4 1");
    test_assert_str(search("NOT NOT salary"), "18 2");
    test_end();

    test_begin("search: words with structured terms");
    test_assert_str(search("(salary OR 個資法) direction:internal"), "18 3 2");
    test_assert_str(search("個資 date:2026-02"), "5 4");
    test_assert_str(search("report* -has:attachment"), "9");
    test_assert_str(search("alice size:>1M"), "11");
    test_end();

    test_begin("search: OR between words and structured terms");
    test_assert_str(search("salary OR direction:unknown"), "18 13 2");
    test_assert_str(search("(個資 date:2026-02) OR has:attachment"), "18 16 11 8 5 4 2");
    test_assert_str(search("henry OR (date:2025 -salary)"), "12 1");
    test_assert_str(search("(-salary OR has:attachment) date:2026-01"), "3 2");
    test_end();
}

static void test_paging_scope(void)
{
    test_begin("search: paging with LIMIT and OFFSET");
    test_assert_str(search_full("date:2026", 0, NULL, NULL, 5, 0), "18 17 16 15 13");
    test_assert_str(search_full("date:2026", 0, NULL, NULL, 5, 5), "12 11 10 9 8");
    test_assert_str(search_full("report*", 0, NULL, NULL, 2, 1), "8 2");
    test_end();

    test_begin("search: a caller's scope is ANDed in, its parameters first");
    test_assert_str(search_full("salary", 0, "m.sender = ?1", "bob@corp.example", 100, 0),
                    "18 2");
    test_assert_str(search_full("salary OR has:attachment", 0, "m.sender = ?1",
                                "alice@example.com", 100, 0), "11");
    test_assert_str(search_full("report*", 0, "m.size < 10000", NULL, 100, 0), "9");
    test_assert_str(search_full("has:attachment", 0, "m.size < 100000", NULL, 100, 0),
                    "18 16 2");
    test_end();
}

static char *plan(const char *query)
{
    struct ar_query *q;
    struct ar_sql s;
    sqlite3_stmt *st;
    char *error = NULL, *sql, *out = mk_xstrdup("");

    if ((q = ar_query_parse(query, &error)) == NULL || ar_query_compile(q, 0, NULL, &s, &error))
        return error;
    ar_query_free(q);
    sql = mk_xasprintf("EXPLAIN QUERY PLAN %s", s.sql);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            char *more = mk_xasprintf("%s%s\n", out, (const char *) sqlite3_column_text(st, 3));

            free(out);
            out = more;
        }
        sqlite3_finalize(st);
    }
    free(sql);
    ar_sql_free(&s);
    return out;
}

static void test_plan(void)
{
    char *p;

    test_begin("plan: text queries walk FTS5 newest first, no sorting");
    p = plan("report* from:bob direction:internal date:2026 size:<1M");
    test_assert(strstr(p, "SCAN fts VIRTUAL TABLE") != NULL);
    test_assert(strstr(p, "SEARCH m USING INTEGER PRIMARY KEY") != NULL);
    test_assert(strstr(p, "TEMP B-TREE") == NULL);
    free(p);
    p = plan("個資 -salary");
    test_assert(strstr(p, "TEMP B-TREE") == NULL);
    free(p);
    test_end();

    test_begin("plan: structured queries scan messages by id, no sorting");
    p = plan("date:2026-03 has:attachment");
    test_assert(strstr(p, "SEARCH m USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)") != NULL);
    test_assert(strstr(p, "TEMP B-TREE") == NULL);
    free(p);
    test_end();

    test_begin("plan: OR of text and the rest merges arms, no sorting");
    p = plan("salary OR direction:unknown");
    test_assert(strstr(p, "MERGE (UNION)") != NULL);
    test_assert(strstr(p, "SCAN fts VIRTUAL TABLE") != NULL);
    test_assert(strstr(p, "TEMP B-TREE") == NULL);
    free(p);
    p = plan("(個資 date:2026-02) OR has:attachment OR (report direction:inbound)");
    test_assert(strstr(p, "TEMP B-TREE") == NULL);
    free(p);
    test_end();
}

static void test_sql_shape(void)
{
    struct ar_query *q;
    struct ar_sql s;
    char *error = NULL;

    test_begin("compile: one MATCH, typed text only in parameters");
    q = ar_query_parse("from:alice@example.com subject:\"q1 report\" -x date:2026", &error);
    test_assert(q != NULL && ar_query_compile(q, 0, NULL, &s, &error) == 0);
    test_assert_str(s.sql, "SELECT fts.rowid AS id FROM fts CROSS JOIN messages AS m "
                    "ON m.id = fts.rowid WHERE fts MATCH ? AND m.hidden = 0 AND "
                    "(fts.rowid >= ? AND fts.rowid < ?) ORDER BY fts.rowid DESC LIMIT ? OFFSET ?");
    test_assert_int(s.nparams, 3);
    test_assert_str(s.params[0].text, "(({sender from_} : \"alice@example.com\" AND "
                    "{subject} : \"q1 report\") NOT (\"x\"))");
    test_assert_int(s.params[1].value, 1767225600LL * 1048576);
    ar_sql_free(&s);
    ar_query_free(q);
    test_end();

    test_begin("compile: no words: messages by id");
    q = ar_query_parse("direction:inbound -has:attachment", &error);
    test_assert(q != NULL && ar_query_compile(q, 0, "m.login IS NULL", &s, &error) == 0);
    test_assert_str(s.sql, "SELECT m.id AS id FROM messages AS m WHERE (m.login IS NULL) AND "
                    "m.hidden = 0 AND m.direction = ? AND NOT (m.attachments > 0) "
                    "ORDER BY m.id DESC LIMIT ? OFFSET ?");
    ar_sql_free(&s);
    ar_query_free(q);
    test_end();

    test_begin("compile: OR of text and the rest: a UNION of arms, newest first");
    q = ar_query_parse("(salary OR 個資 date:2026-02 OR has:attachment) -x", &error);
    test_assert(q != NULL && ar_query_compile(q, 0, NULL, &s, &error) == 0);
    test_assert_str(s.sql, "SELECT fts.rowid AS id FROM fts CROSS JOIN messages AS m "
                    "ON m.id = fts.rowid WHERE fts MATCH ? AND m.hidden = 0 UNION "
                    "SELECT fts.rowid AS id FROM fts CROSS JOIN messages AS m "
                    "ON m.id = fts.rowid WHERE fts MATCH ? AND m.hidden = 0 AND "
                    "(fts.rowid >= ? AND fts.rowid < ?) UNION "
                    "SELECT m.id AS id FROM messages AS m WHERE m.hidden = 0 AND "
                    "m.id NOT IN (SELECT rowid FROM fts WHERE fts MATCH ?) AND "
                    "m.attachments > 0 ORDER BY 1 DESC LIMIT ? OFFSET ?");
    test_assert_int(s.nparams, 5);
    test_assert_str(s.params[0].text, "((\"salary\") NOT (\"x\"))");
    test_assert_str(s.params[1].text, "((\"個資\") NOT (\"x\"))");
    ar_sql_free(&s);
    ar_query_free(q);
    test_end();
}

static void test_hostile(void)
{
    static const char *const queries[] = {
        "a' OR '1'='1", "x\"; DROP TABLE messages; --", "subject:\"\"\"\"", "{body}:x",
        "NEAR(a b)", "^start", "body:*x", "a:b", "12:30", "a\"b\"c", "\"OR\" \"NOT\" \"AND\"",
        "col : x", "x*y*", "+a", "\"*\" x", "* x", "\xff\xfe\x80", "個*", "\"\xE5\x80\"",
        "(((a)))", "-(-(-a))", "a OR b OR c OR d", "a b c d e f g h",
    };

    test_begin("hostile input never breaks the SQL or the MATCH syntax");
    for (size_t i = 0; i < MK_ARRAY_LEN(queries); i++) {
        const char *r = search(queries[i]);

        if (strncmp(r, "ERROR: position", 15) != 0 && strncmp(r, "ERROR", 5) == 0) {
            printf("  %s -> %s\n", queries[i], r);
            test_assert(!"SQL error");
        }
    }
    test_end();
}

static void test_errors(void)
{
    char deep[200], many[400], *longq = mk_xmalloc(5000);

    test_begin("errors: empty and blank queries");
    test_assert_str(search(""), "ERROR: empty query");
    test_assert_str(search("  \t \xE3\x80\x80"), "ERROR: empty query");
    test_end();

    test_begin("errors: unknown field, with position and the list");
    test_assert_str(search("subject:x form:alice"), "ERROR: position 11: unknown field \"form\" "
                    "(fields: from, to, cc, bcc, subject, body, attachment, date, after, before, "
                    "size, direction, has; put a value with \":\" in quotes)");
    test_assert(strncmp(search("個資 Form:x"), "ERROR: position 4: unknown field \"Form\"",
                        39) == 0);
    test_assert(strncmp(search("http://example.com"), "ERROR: position 1: unknown field "
                        "\"http\"", 38) == 0);
    test_end();

    test_begin("errors: parentheses");
    test_assert_str(search("(a OR b"), "ERROR: position 1: unbalanced parenthesis");
    test_assert_str(search("a OR b)"), "ERROR: position 7: unbalanced parenthesis");
    test_assert_str(search("a ((b) c"), "ERROR: position 3: unbalanced parenthesis");
    test_assert_str(search("a ()"), "ERROR: position 3: empty parentheses");
    test_end();

    test_begin("errors: operators without terms");
    test_assert_str(search("OR a"), "ERROR: position 1: OR needs a term on each side");
    test_assert_str(search("a OR"), "ERROR: position 3: OR needs a term on each side");
    test_assert_str(search("a OR OR b"), "ERROR: position 3: OR needs a term on each side");
    test_assert_str(search("a AND"), "ERROR: position 3: AND needs a term on each side");
    test_assert_str(search("a NOT"), "ERROR: position 3: NOT must be followed by a term");
    test_assert_str(search("a -"), "ERROR: position 3: - must be followed by a term");
    test_assert_str(search("(NOT)"), "ERROR: position 2: NOT must be followed by a term");
    test_end();

    test_begin("errors: values");
    test_assert_str(search("date:2026-13-01"),
                    "ERROR: position 1: date \"2026-13-01\": not a date "
                    "(use 2026-03-01, 2026-03 or 2026)");
    test_assert(strncmp(search("a date:2026-02-29"), "ERROR: position 3: date \"2026-02-29\": "
                        "not a date", 48) == 0);
    test_assert(strncmp(search("date:2024-02-29"), "ERROR", 5) != 0);
    test_assert(strncmp(search("after:yesterday"), "ERROR: position 1: date \"yesterday\": "
                        "not a date", 47) == 0);
    test_assert(strncmp(search("date:2026-01..2026-13"), "ERROR: position 1: date \"2026-13\"",
                        33) == 0);
    test_assert_str(search("date:2026-03..2026-01"),
                    "ERROR: position 1: date range \"2026-03..2026-01\" ends before it starts");
    test_assert_str(search("size:1M"),
                    "ERROR: position 1: size \"1M\": say size:>N, size:<N or size:N..M");
    test_assert_str(search("size:>lots"),
                    "ERROR: position 1: size \"lots\": not a size (use 100k, 1.5M or 2G)");
    test_assert_str(search("size:>99999999999G"),
                    "ERROR: position 1: size \"99999999999G\": not a size (use 100k, 1.5M or 2G)");
    test_assert_str(search("direction:sideways"), "ERROR: position 1: direction \"sideways\": "
                    "use inbound, outbound, internal or unknown");
    test_assert_str(search("has:virus"),
                    "ERROR: position 1: has \"virus\": only has:attachment is known");
    test_assert_str(search("has:attachment*"), "ERROR: position 1: has: does not take *");
    test_end();

    test_begin("errors: words and quotes");
    test_assert_str(search("from:"), "ERROR: position 1: from: needs a value");
    test_assert_str(search("a \"abc"), "ERROR: position 3: unterminated quote");
    test_assert_str(search("subject:\"abc"), "ERROR: position 9: unterminated quote");
    test_assert_str(search("*"), "ERROR: position 1: * must follow a word");
    test_assert_str(search("a !!!"), "ERROR: position 3: \"!!!\" has no words to search for");
    test_assert_str(search("\"\""), "ERROR: position 1: \"\" has no words to search for");
    test_end();

    test_begin("errors: limits on depth, terms and length");
    memset(deep, '(', 40);
    strcpy(deep + 40, "a");
    memset(deep + 41, ')', 40);
    deep[81] = '\0';
    test_assert_str(search(deep), "ERROR: position 33: nested too deeply (at most 32 levels)");
    memset(deep, '-', 40);
    strcpy(deep + 40, "a");
    test_assert_str(search(deep), "ERROR: position 33: nested too deeply (at most 32 levels)");
    memset(deep, '(', 32);
    strcpy(deep + 32, "a");
    memset(deep + 33, ')', 32);
    deep[65] = '\0';
    test_assert_str(search(deep), "");
    many[0] = '\0';
    for (int i = 0; i < 65; i++)
        strcat(many, "ab ");
    test_assert_str(search(many), "ERROR: position 193: more than 64 terms");
    many[64 * 3] = '\0';
    test_assert_str(search(many), "");
    memset(longq, 'a', 4999);
    longq[4999] = '\0';
    test_assert_str(search(longq), "ERROR: the query is longer than 4096 bytes");
    test_end();
    free(longq);
}

int main(void)
{
    setup();
    test_text();
    test_structured();
    test_boolean();
    test_paging_scope();
    test_plan();
    test_sql_shape();
    test_hostile();
    test_errors();
    sqlite3_close(db);
    return test_done();
}
