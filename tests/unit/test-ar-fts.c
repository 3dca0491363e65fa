/* Unit tests for ar_fts: the CJK bigram tokenizer, alone and inside FTS5. */
#include "config.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "ar_fts.h"
#include "mk_test.h"
#include "mk_util.h"

struct collect {
    char out[4096];
    size_t len;
    int limit;                  /* stop after this many tokens; 0 = never */
    int count;
    bool offsets;
};

static int collect_token(void *arg, const char *token, size_t len, int start, int end)
{
    struct collect *c = arg;
    int n;

    n = snprintf(c->out + c->len, sizeof(c->out) - c->len, "%s%.*s", c->len ? "|" : "",
                 (int) len, token);
    if (n > 0)
        c->len += (size_t) n;
    if (c->offsets && c->len < sizeof(c->out)) {
        n = snprintf(c->out + c->len, sizeof(c->out) - c->len, "@%d-%d", start, end);
        if (n > 0)
            c->len += (size_t) n;
    }
    if (c->len >= sizeof(c->out))
        c->len = sizeof(c->out) - 1;
    return c->limit && ++c->count >= c->limit;
}

/* The tokens of text, joined by '|'. Static buffer: one call per assertion. */
static const char *tokens_n(const char *text, size_t len, bool offsets, int limit)
{
    static struct collect c;

    memset(&c, 0, sizeof(c));
    c.offsets = offsets;
    c.limit = limit;
    ar_tokenize(text, len, collect_token, &c);
    return c.out;
}

static const char *tokens(const char *text)
{
    return tokens_n(text, strlen(text), false, 0);
}

static void test_cjk(void)
{
    test_begin("tokenize: a CJK run gives overlapping bigrams and its last char");
    test_assert_str(tokens("個資法"), "個資|資法|法");
    test_assert_str(tokens("員工個資外洩"), "員工|工個|個資|資外|外洩|洩");
    test_end();

    test_begin("tokenize: a run of one CJK char gives that char");
    test_assert_str(tokens("個"), "個");
    test_assert_str(tokens("A個B"), "a|個|b");
    test_assert_str(tokens("個 資"), "個|資");
    test_end();

    test_begin("tokenize: CJK punctuation and spaces end a run");
    test_assert_str(tokens("個資，法規。"), "個資|資|法規|規");
    test_assert_str(tokens("「資料」\xE3\x80\x80外洩"), "資料|料|外洩|洩");
    test_end();

    test_begin("tokenize: kana, hangul, bopomofo, 々 are bigrammed");
    test_assert_str(tokens("ひらがな 한국어"), "ひら|らが|がな|な|한국|국어|어");
    test_assert_str(tokens("ㄅㄆ 人々"), "ㄅㄆ|ㄆ|人々|々");
    test_assert_str(tokens("ｶﾀｶﾅ"), "ｶﾀ|ﾀｶ|ｶﾅ|ﾅ");
    test_end();

    test_begin("tokenize: extension B, compatibility and private-use (Big5 EUDC) chars");
    test_assert_str(tokens("\xF0\xA0\x80\x80\xF0\xA0\x80\x81"),
                    "\xF0\xA0\x80\x80\xF0\xA0\x80\x81|\xF0\xA0\x80\x81");
    test_assert_str(tokens("\xEE\x80\x80明"), "\xEE\x80\x80明|明");
    test_assert_str(tokens("\xEF\xA4\x80"), "\xEF\xA4\x80");
    test_end();

    test_begin("tokenize: variation selectors and joiners are ignored");
    test_assert_str(tokens("葛\xEF\xB8\x80城"), "葛城|城");
    test_assert_str(tokens("co\xC2\xADoperate"), "cooperate");
    test_end();
}

static void test_words(void)
{
    test_begin("tokenize: mixed Latin and CJK");
    test_assert_str(tokens("ID號碼A123456789"), "id|號碼|碼|a123456789");
    test_assert_str(tokens("2026年3月"), "2026|年|3|月");
    test_end();

    test_begin("tokenize: e-mail addresses split on @ . - _ +");
    test_assert_str(tokens("Alice.Smith@Example.COM"), "alice|smith|example|com");
    test_assert_str(tokens("no-reply_bot+tag@x.example"), "no|reply|bot|tag|x|example");
    test_end();

    test_begin("tokenize: case folding, accents kept");
    test_assert_str(tokens("HELLO World"), "hello|world");
    test_assert_str(tokens("ÉCOLE Straße ĞÜŞ ŸÀ"), "école|straße|ğüş|ÿà");
    test_assert_str(tokens("ΑΘΗΝΑ МОСКВА Ёж"), "αθηνα|москва|ёж");
    test_end();

    test_begin("tokenize: full-width letters and digits become ASCII");
    test_assert_str(tokens("ＡＢＣ１２３"), "abc123");
    test_assert_str(tokens("身分證Ａ１２３"), "身分|分證|證|a123");
    test_end();

    test_begin("tokenize: punctuation, symbols and emoji separate");
    test_assert_str(tokens("a,b;c!d?e(f)g[h]i{j}k<l>m/n\\o|p\"q'r`s~t"),
                    "a|b|c|d|e|f|g|h|i|j|k|l|m|n|o|p|q|r|s|t");
    test_assert_str(tokens("x\xE2\x80\x94y \xF0\x9F\x98\x80z \xC2\xA9w"), "x|y|z|w");
    test_assert_str(tokens(""), "");
    test_assert_str(tokens(" .,;- "), "");
    test_end();
}

static void test_bad_input(void)
{
    char longword[200], expect[AR_FTS_MAX_TOKEN + 1];

    test_begin("tokenize: invalid UTF-8 bytes are skipped");
    test_assert_str(tokens("ab\xFF\xFE" "cd"), "ab|cd");
    test_assert_str(tokens("\xC0\xAF" "x"), "x");                      /* overlong */
    test_assert_str(tokens("a\xED\xA0\x80" "b"), "a|b");               /* surrogate */
    test_assert_str(tokens("個\xE8\xB3"), "個");                        /* truncated */
    test_assert_str(tokens("\xF4\x90\x80\x80" "z"), "z");              /* past U+10FFFF */
    test_assert_str(tokens("\x80\x80\x80"), "");
    test_end();

    test_begin("tokenize: a NUL byte separates, the length is honoured");
    test_assert_str(tokens_n("ab\0cd", 5, false, 0), "ab|cd");
    test_assert_str(tokens_n("abcdef", 3, false, 0), "abc");
    test_end();

    test_begin("tokenize: long words are cut at AR_FTS_MAX_TOKEN bytes");
    memset(longword, 'A', 100);
    longword[100] = '\0';
    memset(expect, 'a', AR_FTS_MAX_TOKEN);
    expect[AR_FTS_MAX_TOKEN] = '\0';
    test_assert_str(tokens(longword), expect);
    test_assert_str(strstr(tokens_n(longword, 100, true, 0), "@"), "@0-100");
    for (int i = 0; i < 50; i++)
        memcpy(longword + 2 * i, "\xC3\x89", 2);                     /* É x 50 */
    longword[100] = '\0';
    test_assert_int(strlen(tokens(longword)), AR_FTS_MAX_TOKEN);
    test_assert(strncmp(tokens(longword), "\xC3\xA9\xC3\xA9", 4) == 0);
    test_end();
}

static void test_positions(void)
{
    test_begin("tokenize: byte offsets of words, bigrams and run ends");
    test_assert_str(tokens_n("ab 個資法", strlen("ab 個資法"), true, 0),
                    "ab@0-2|個資@3-9|資法@6-12|法@9-12");
    test_assert_str(tokens_n("x個y", strlen("x個y"), true, 0), "x@0-1|個@1-4|y@4-5");
    test_end();

    test_begin("tokenize: the callback can stop the scan");
    test_assert_str(tokens_n("one two three", 13, false, 2), "one|two");
    test_end();

    test_begin("ar_fts_cjk: exactly one CJK character");
    test_assert(ar_fts_cjk("個", strlen("個")));
    test_assert(ar_fts_cjk("\xF0\xA0\x80\x80", 4));
    test_assert(!ar_fts_cjk("個資", strlen("個資")));
    test_assert(!ar_fts_cjk("a", 1));
    test_assert(!ar_fts_cjk("é", strlen("é")));
    test_assert(!ar_fts_cjk("\xE5\x80", 2));
    test_end();
}

static sqlite3 *open_db(void)
{
    sqlite3 *db;
    char *error = NULL;

    if (sqlite3_open(":memory:", &db) != SQLITE_OK || ar_fts_register(db, &error) < 0) {
        printf("cannot set up SQLite: %s\n", error ? error : sqlite3_errmsg(db));
        exit(2);
    }
    return db;
}

static int matches(sqlite3 *db, const char *expr, char *out, size_t size)
{
    sqlite3_stmt *st;
    size_t len = 0;
    int rc;

    out[0] = '\0';
    if (sqlite3_prepare_v2(db, "SELECT rowid FROM t WHERE t MATCH ?1 ORDER BY rowid", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, expr, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        len += (size_t) snprintf(out + len, size - len, "%s%lld", len ? " " : "",
                                 (long long) sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static const char *match(sqlite3 *db, const char *expr)
{
    static char out[256];

    if (matches(db, expr, out, sizeof(out)) < 0)
        snprintf(out, sizeof(out), "ERROR %s", sqlite3_errmsg(db));
    return out;
}

static void test_sqlite(void)
{
    static const char *const docs[] = {
        "員工個資外洩事件",                     /* 1 */
        "個資保護，投資法人說明",               /* 2: 個資 and 資法 apart */
        "依個資法辦理",                         /* 3 */
        "資",                                   /* 4 */
        "一個人",                               /* 5 */
        "這個",                                 /* 6 */
        "Reports from Alice@Example.com",       /* 7 */
    };
    sqlite3 *db = open_db();
    sqlite3_stmt *st;
    char *err = NULL;

    test_begin("fts5: mkcjk tables are created; arguments are refused");
    test_assert_int(sqlite3_exec(db, "CREATE VIRTUAL TABLE t USING fts5(body, tokenize='mkcjk')",
                                 NULL, NULL, NULL), SQLITE_OK);
    test_assert(sqlite3_exec(db, "CREATE VIRTUAL TABLE u USING fts5(b, tokenize='mkcjk x')",
                             NULL, NULL, &err) != SQLITE_OK);
    sqlite3_free(err);
    test_end();
    for (size_t i = 0; i < MK_ARRAY_LEN(docs); i++) {
        sqlite3_prepare_v2(db, "INSERT INTO t(rowid, body) VALUES (?1, ?2)", -1, &st, NULL);
        sqlite3_bind_int(st, 1, (int) i + 1);
        sqlite3_bind_text(st, 2, docs[i], -1, SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }

    test_begin("fts5: a two-character word is found inside longer runs");
    test_assert_str(match(db, "\"個資\""), "1 2 3");
    test_end();

    test_begin("fts5: a longer string is a phrase of adjacent bigrams");
    test_assert_str(match(db, "\"個資法\""), "3");
    test_assert_str(match(db, "\"資法\""), "2 3");
    test_end();

    test_begin("fts5: queries have no run-end synonyms (個資 does not find 資)");
    test_assert_str(match(db, "\"資\""), "4");
    test_assert_str(match(db, "\"外洩\""), "1");
    test_end();

    test_begin("fts5: one character: alone only where a run ends, as a prefix everywhere");
    test_assert_str(match(db, "\"個\""), "6");                  /* 這個: run end */
    test_assert_str(match(db, "\"個\" *"), "1 2 3 5 6");
    test_end();

    test_begin("fts5: Latin words, addresses as phrases, prefixes, case");
    test_assert_str(match(db, "\"alice@example.com\""), "7");
    test_assert_str(match(db, "\"REPORT\" *"), "7");
    test_assert_str(match(db, "\"example alice\""), "");
    test_end();

    test_begin("fts5: positions of synonyms (fts5vocab instance)");
    test_assert_int(sqlite3_exec(db, "CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)",
                                 NULL, NULL, NULL), SQLITE_OK);
    sqlite3_prepare_v2(db, "SELECT group_concat(term || ':' || offset, ' ') FROM "
                       "(SELECT term, offset FROM v WHERE doc = 3 ORDER BY offset, term)",
                       -1, &st, NULL);
    test_assert_int(sqlite3_step(st), SQLITE_ROW);
    test_assert_str((const char *) sqlite3_column_text(st, 0),
                    "依個:0 個資:1 資法:2 法辦:3 理:4 辦理:4");
    sqlite3_finalize(st);
    test_end();
    sqlite3_close(db);
}

int main(void)
{
    test_cjk();
    test_words();
    test_bad_input();
    test_positions();
    test_sqlite();
    return test_done();
}
