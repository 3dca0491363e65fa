/*
 * Unit tests for mk_mime and mk_extract: a message or a file as labelled
 * UTF-8 text. The fixtures are written at start by
 * data/make-mime-fixtures.py into a temporary directory.
 */
#include "config.h"

#include <dirent.h>
#include <libgen.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "mk_extract.h"
#include "mk_mime.h"
#include "mk_test.h"
#include "mk_util.h"

static char fixtures[256];

/* ------------------------------------------------- what a walk handed over */

struct seg {
    enum mk_mime_where where;
    char *location, *text;
};

struct prob {
    char *location, *reason;
    bool unscannable;
};

struct result {
    struct seg *segs;
    size_t nsegs;
    struct prob *probs;
    size_t nprobs;
    size_t stop_after;          /* stop the walk after this many segments; 0: never */
    char joined[65536];         /* scratch for text_at() */
    int rc;
};

static int on_segment(void *arg, const struct mk_mime_segment *s)
{
    struct result *r = arg;

    r->segs = mk_xrealloc(r->segs, (r->nsegs + 1) * sizeof(*r->segs));
    r->segs[r->nsegs].where = s->where;
    r->segs[r->nsegs].location = mk_xstrdup(s->location);
    r->segs[r->nsegs].text = mk_xstrndup(s->text, s->len);
    r->nsegs++;
    return r->stop_after && r->nsegs >= r->stop_after;
}

static void on_problem(void *arg, const struct mk_mime_problem *p)
{
    struct result *r = arg;

    r->probs = mk_xrealloc(r->probs, (r->nprobs + 1) * sizeof(*r->probs));
    r->probs[r->nprobs].location = mk_xstrdup(p->location);
    r->probs[r->nprobs].reason = mk_xstrdup(p->reason);
    r->probs[r->nprobs].unscannable = p->unscannable;
    r->nprobs++;
}

static void result_free(struct result *r)
{
    for (size_t i = 0; i < r->nsegs; i++) {
        free(r->segs[i].location);
        free(r->segs[i].text);
    }
    for (size_t i = 0; i < r->nprobs; i++) {
        free(r->probs[i].location);
        free(r->probs[i].reason);
    }
    free(r->segs);
    free(r->probs);
    free(r);
}

static char *fixture(const char *name, size_t *len)
{
    char *path = mk_xasprintf("%s/%s", fixtures, name), *error = NULL;
    char *data = mk_file_read(path, len, NULL, &error);

    if (data == NULL) {
        printf("  cannot read fixture: %s\n", error);
        exit(2);
    }
    free(path);
    return data;
}

static struct result *walk_with(const char *name, const struct mk_mime_limits *limits,
                                size_t stop_after)
{
    struct result *r = mk_xcalloc(1, sizeof(*r));
    struct mk_mime_walk_cb cb = {on_segment, on_problem, r};
    size_t len;
    char *data = fixture(name, &len);

    r->stop_after = stop_after;
    r->rc = mk_mime_walk(data, len, limits, &cb);
    free(data);
    return r;
}

static struct result *walk(const char *name)
{
    return walk_with(name, NULL, 0);
}

static struct result *extract_with(const char *name, const char *type,
                                   const struct mk_mime_limits *limits)
{
    struct result *r = mk_xcalloc(1, sizeof(*r));
    struct mk_mime_walk_cb cb = {on_segment, on_problem, r};
    size_t len;
    char *data = fixture(name, &len), *loc = mk_xasprintf("file \"%s\"", name);

    r->rc = mk_extract_file(name, type, data, len, limits, 0, loc, &cb);
    free(loc);
    free(data);
    return r;
}

static struct result *extract(const char *name)
{
    return extract_with(name, NULL, NULL);
}

/* The text of every segment of a kind at a location, joined by "|"; NULL when there is none. */
static const char *text_at(struct result *r, enum mk_mime_where where, const char *location)
{
    size_t used = 0;
    bool found = false;

    r->joined[0] = '\0';
    for (size_t i = 0; i < r->nsegs; i++) {
        if (r->segs[i].where != where || strcmp(r->segs[i].location, location) != 0)
            continue;
        used += (size_t) snprintf(r->joined + used, sizeof(r->joined) - used, "%s%s",
                                  found ? "|" : "", r->segs[i].text);
        if (used >= sizeof(r->joined))
            used = sizeof(r->joined) - 1;
        found = true;
    }
    return found ? r->joined : NULL;
}

static bool has_problem(const struct result *r, const char *location, const char *reason,
                        bool unscannable)
{
    for (size_t i = 0; i < r->nprobs; i++)
        if (strcmp(r->probs[i].location, location) == 0 && strcmp(r->probs[i].reason, reason) == 0
            && r->probs[i].unscannable == unscannable)
            return true;
    return false;
}

static bool any_text_has(const struct result *r, const char *needle)
{
    for (size_t i = 0; i < r->nsegs; i++)
        if (strstr(r->segs[i].text, needle))
            return true;
    return false;
}

static void dump(const struct result *r)
{
    for (size_t i = 0; i < r->nsegs; i++)
        printf("    segment %d [%s] \"%s\"\n", r->segs[i].where, r->segs[i].location,
               r->segs[i].text);
    for (size_t i = 0; i < r->nprobs; i++)
        printf("    problem [%s] %s%s\n", r->probs[i].location, r->probs[i].reason,
               r->probs[i].unscannable ? " (unscannable)" : "");
}

/* Print what was handed over when a case fails: the assertion alone rarely says why. */
#define test_end_dump(r) do { if (test_case_failed) dump(r); test_end(); } while (0)

/* ------------------------------------------------------------ the cases */

static void test_headers(void)
{
    struct result *r = walk("headers.eml");

    test_begin("headers: RFC 2047 in Big5 and UTF-8, raw 8-bit, names only");
    test_assert_int(r->rc, 0);
    test_assert_str(text_at(r, MK_WHERE_SUBJECT, "subject"), "薪資單 身分證");
    test_assert_str(text_at(r, MK_WHERE_HEADER, "header From"), "王小明\n");
    test_assert_str(text_at(r, MK_WHERE_HEADER, "header To"), "陳大文\nTeam\n林美玲\n");
    test_assert_str(text_at(r, MK_WHERE_HEADER, "header Comments"), "備註 A123456789");
    test_assert_str(text_at(r, MK_WHERE_HEADER, "header Keywords"), "薪資");
    test_assert_str(text_at(r, MK_WHERE_HEADER, "header Organization"), "人事室");
    test_assert(text_at(r, MK_WHERE_HEADER, "header Date") == NULL);
    test_assert(text_at(r, MK_WHERE_HEADER, "header Message-ID") == NULL);
    test_assert(text_at(r, MK_WHERE_HEADER, "header Content-Type") == NULL);
    test_assert_str(text_at(r, MK_WHERE_BODY, "body"), "plain body\n");
    test_assert_int(r->nprobs, 0);
    test_end_dump(r);
    result_free(r);

    r = walk("subject-utf8.eml");
    test_begin("headers: RFC 2047 subject in UTF-8");
    test_assert_str(text_at(r, MK_WHERE_SUBJECT, "subject"), "身分證號碼 A123456789");
    test_end_dump(r);
    result_free(r);
}

static void test_bodies(void)
{
    static const struct {
        const char *file, *text;
    } cases[] = {
        {"body-utf8.eml", "身分證字號 A123456789\n"},
        {"body-big5.eml", "身分證字號 A123456789\n"},
        {"body-big5hkscs.eml", "嘅 A123456789\n"},
        {"body-gb18030.eml", "身份证号码 A123456789 €\n"},
        {"body-gb2312.eml", "身份证号码 A123456789\n"},
        {"body-iso2022jp.eml", "個人番号 A123456789\n"},
        {"body-utf16.eml", "身分證字號 A123456789\n"},
        {"body-cp1252.eml", "Café “quoted” €5\n"},
        {"body-wrong.eml", "身分證字號 A123456789\n"},       /* Big5 declared us-ascii */
        {"body-missing.eml", "身分證字號 A123456789\n"},     /* Big5, no charset */
        {"body-unknown.eml", "身分證字號 A123456789\n"},     /* UTF-8, unknown charset */
        {"body-latin1-utf8.eml", "Café 身分證\n"},           /* UTF-8 declared Latin-1 */
    };

    for (size_t i = 0; i < MK_ARRAY_LEN(cases); i++) {
        struct result *r = walk(cases[i].file);
        char *name = mk_xasprintf("body in %s", cases[i].file);

        test_begin(name);
        test_assert_int(r->rc, 0);
        test_assert_str(text_at(r, MK_WHERE_BODY, "body"), cases[i].text);
        test_assert_int(r->nprobs, 0);
        test_end_dump(r);
        result_free(r);
        free(name);
    }
}

static void test_html(void)
{
    struct result *r = walk("html.eml");

    test_begin("html body: text nodes, entities, blocks; no script or style");
    test_assert_str(text_at(r, MK_WHERE_BODY, "body (html)"),
                    "Page title\nCafé & 身分證\nA123456789\none\ntwo\na\tb\n");
    test_assert(!any_text_has(r, "script text"));
    test_assert(!any_text_has(r, "color"));
    test_end_dump(r);
    result_free(r);

    r = walk("alternative.eml");
    test_begin("multipart/alternative: both versions");
    test_assert_str(text_at(r, MK_WHERE_BODY, "body"), "plain version");
    test_assert_str(text_at(r, MK_WHERE_BODY, "body (html)"), "html <version>\n");
    test_end_dump(r);
    result_free(r);
}

static void test_documents(void)
{
    struct result *r = extract("report.docx");

    test_begin("docx: document, header, footer, comments, properties");
    test_assert_int(r->rc, 0);
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "file \"report.docx\""),
                    "身分證字號 A123456789\ntab\tbed\ncell one\ncell two\n|Header text\n"
                    "|Footer text\n|Comment text\n|Docx title\nHR\n");
    test_assert(!any_text_has(r, "not text"));
    test_assert_int(r->nprobs, 0);
    test_end_dump(r);
    result_free(r);

    r = extract("salary.xlsx");
    test_begin("xlsx: shared strings, typed-in number, inline string, formula value");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "file \"salary.xlsx\""),
                    "身分證\nrich text\n|987654321\tinline A123456789\n1975308642\n"
                    "|Salaries 2024\nHR\n");
    test_assert(!any_text_has(r, "B1*2"));      /* formulas are not text */
    test_assert_int(r->nprobs, 0);
    test_end_dump(r);
    result_free(r);

    r = extract("slides.pptx");
    test_begin("pptx: slides and notes, not layouts");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "file \"slides.pptx\""),
                    "Slide title\nA123456789\n|Speaker notes\n");
    test_assert(!any_text_has(r, "layout"));
    test_end_dump(r);
    result_free(r);

    r = extract("letter.odt");
    test_begin("odt: content and the header in styles");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "file \"letter.odt\""),
                    "ODT heading\n身分證 A123456789\n|ODT header\n");
    test_end_dump(r);
    result_free(r);

    r = extract("sheet.ods");
    test_begin("ods: cells");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "file \"sheet.ods\""), "ODS cell\n42\n");
    test_end_dump(r);
    result_free(r);

    r = extract("doc.pdf");
    test_begin("pdf: properties and page text, CJK through ToUnicode");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "file \"doc.pdf\""),
                    "PDF title\n|PDF text A123456789\n身分證");
    test_assert_int(r->nprobs, 0);
    test_end_dump(r);
    result_free(r);

    r = extract("locked.pdf");
    test_begin("pdf: encrypted is unscannable");
    test_assert(r->nsegs == 0);
    test_assert(has_problem(r, "file \"locked.pdf\"", "encrypted PDF", true));
    test_end_dump(r);
    result_free(r);

    r = mk_xcalloc(1, sizeof(*r));
    test_begin("pdf: a page without text is reported for information");
    {
        struct mk_mime_walk_cb cb = {on_segment, on_problem, r};
        size_t len;
        char *pdf = fixture("doc.pdf", &len), *bt;

        /* "BT" ... "ET" text objects become comments: the page draws nothing */
        for (bt = pdf; (bt = memmem(bt, len - (size_t) (bt - pdf), "BT ", 3)) != NULL; bt++)
            bt[0] = '%';
        mk_extract_file("scan.pdf", NULL, pdf, len, NULL, 0, "scan", &cb);
        test_assert(has_problem(r, "scan", "no text in PDF", false));
        test_assert_int(r->nprobs, 1);
        free(pdf);
    }
    test_end_dump(r);
    result_free(r);

    r = extract("people.csv");
    test_begin("csv in Big5 without a charset");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "file \"people.csv\""),
                    "姓名,身分證字號\n王小明,A123456789\n");
    test_end_dump(r);
    result_free(r);
}

static void test_archives(void)
{
    struct result *r = extract("nested.zip");

    test_begin("zip in zip holding a docx, member names in UTF-8");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT_NAME, "file \"nested.zip\" > \"inner.zip\""),
                    "inner.zip");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT_NAME,
                            "file \"nested.zip\" > \"inner.zip\" > \"report.docx\""),
                    "report.docx");
    test_assert(text_at(r, MK_WHERE_ATTACHMENT,
                        "file \"nested.zip\" > \"inner.zip\" > \"report.docx\"") != NULL
                && strstr(r->joined, "身分證字號 A123456789\n"));
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT,
                            "file \"nested.zip\" > \"inner.zip\" > \"薪資.txt\""),
                    "inner text A123456789\n");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "file \"nested.zip\" > \"top.txt\""),
                    "top level\n");
    test_assert_int(r->nprobs, 0);
    test_end_dump(r);
    result_free(r);

    r = extract("encrypted.zip");
    test_begin("encrypted zip member: unscannable, the others read");
    test_assert(has_problem(r, "file \"encrypted.zip\" > \"secret.txt\"", "encrypted archive",
                            true));
    test_assert(text_at(r, MK_WHERE_ATTACHMENT, "file \"encrypted.zip\" > \"secret.txt\"") == NULL);
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "file \"encrypted.zip\" > \"readme.txt\""),
                    "open text\n");
    test_assert(!any_text_has(r, "A123456789"));
    test_end_dump(r);
    result_free(r);

    r = extract("bomb.zip");
    test_begin("zip bomb: expansion limit, the next member read");
    test_assert(has_problem(r, "file \"bomb.zip\" > \"zeros.txt\"", "expansion limit", true));
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "file \"bomb.zip\" > \"after.txt\""),
                    "after the bomb A123456789\n");
    test_end_dump(r);
    result_free(r);

    r = extract("notes.tar.gz");
    test_begin("tar.gz through libarchive");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "file \"notes.tar.gz\" > \"notes.txt\""),
                    "tar member A123456789\n");
    test_end_dump(r);
    result_free(r);
}

static void test_attachments(void)
{
    struct result *r = walk("attachments.eml");

    test_begin("message with attachments: names decoded, content by magic");
    test_assert_int(r->rc, 0);
    test_assert_str(text_at(r, MK_WHERE_BODY, "body"), "see attached\n");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT_NAME, "attachment \"salary.xlsx\""),
                    "salary.xlsx");
    test_assert(text_at(r, MK_WHERE_ATTACHMENT, "attachment \"salary.xlsx\"")
                && strstr(r->joined, "987654321"));
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT_NAME, "attachment \"報告.docx\""),
                    "報告.docx");
    test_assert(text_at(r, MK_WHERE_ATTACHMENT, "attachment \"報告.docx\"")
                && strstr(r->joined, "身分證字號 A123456789"));
    test_assert(text_at(r, MK_WHERE_ATTACHMENT, "attachment \"slides.pptx\"") != NULL);
    test_assert(text_at(r, MK_WHERE_ATTACHMENT, "attachment \"letter.odt\"") != NULL);
    /* declared application/octet-stream: told by its content */
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "attachment \"sheet.ods\""), "ODS cell\n42\n");
    test_assert(text_at(r, MK_WHERE_ATTACHMENT, "attachment \"doc.pdf\"")
                && strstr(r->joined, "PDF text A123456789"));
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT_NAME, "attachment \"名單.csv\""), "名單.csv");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "attachment \"名單.csv\""),
                    "姓名,身分證字號\n王小明,A123456789\n");
    test_assert(has_problem(r, "attachment \"pixel.png\"", "unsupported type image/png", false));
    test_assert_int(r->nprobs, 1);
    test_end_dump(r);
    result_free(r);

    r = walk("archives.eml");
    test_begin("message with archives: nested, encrypted, bomb, locked PDF");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT,
                            "attachment \"nested.zip\" > \"inner.zip\" > \"薪資.txt\""),
                    "inner text A123456789\n");
    test_assert(has_problem(r, "attachment \"encrypted.zip\" > \"secret.txt\"",
                            "encrypted archive", true));
    test_assert(has_problem(r, "attachment \"bomb.zip\" > \"zeros.txt\"", "expansion limit", true));
    test_assert(has_problem(r, "attachment \"locked.pdf\"", "encrypted PDF", true));
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "attachment \"notes.tar.gz\" > \"notes.txt\""),
                    "tar member A123456789\n");
    test_assert_int(r->nprobs, 3);
    test_end_dump(r);
    result_free(r);

    r = walk("forward.eml");
    test_begin("message/rfc822 with an attachment of its own");
    test_assert_str(text_at(r, MK_WHERE_BODY, "body"), "outer body\n");
    test_assert_str(text_at(r, MK_WHERE_SUBJECT, "attached message > subject"), "inner subject");
    test_assert_str(text_at(r, MK_WHERE_BODY, "attached message > body"), "inner body\n");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT_NAME,
                            "attached message > attachment \"inner.txt\""), "inner.txt");
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "attached message > attachment \"inner.txt\""),
                    "inner file A123456789\n");
    test_end_dump(r);
    result_free(r);
}

static void test_hostile(void)
{
    struct result *r = walk("deep.eml");

    test_begin("nesting beyond max_depth: reported, shallower parts read");
    test_assert(has_problem(r, "message", "depth limit", true));
    test_assert(text_at(r, MK_WHERE_BODY, "body") && strstr(r->joined, "level 8"));
    test_assert(!any_text_has(r, "level 9") && !any_text_has(r, "bottom"));
    test_end_dump(r);
    result_free(r);

    r = walk("malformed.eml");
    test_begin("multipart without a boundary: malformed");
    test_assert_int(r->rc, 0);
    test_assert(has_problem(r, "message", "malformed", true));
    test_assert_str(text_at(r, MK_WHERE_SUBJECT, "subject"), "malformed");
    test_end_dump(r);
    result_free(r);

    r = walk("unterminated.eml");
    test_begin("multipart whose boundary never comes: malformed, text still read");
    test_assert(has_problem(r, "body (MIME preamble)", "malformed", true));
    test_assert(any_text_has(r, "never comes A123456789"));
    test_end_dump(r);
    result_free(r);

    {
        static const char *const junk[] = {"", "\x01\x02\x03", "no headers here\njust text\n"};

        test_begin("no message at all: -1 and malformed");
        for (size_t i = 0; i < MK_ARRAY_LEN(junk); i++) {
            struct result *j = mk_xcalloc(1, sizeof(*j));
            struct mk_mime_walk_cb cb = {on_segment, on_problem, j};

            test_assert_int(mk_mime_walk(junk[i], strlen(junk[i]), NULL, &cb), -1);
            test_assert(has_problem(j, "message", "malformed", true));
            result_free(j);
        }
        test_end();
    }
}

static void test_limits(void)
{
    struct mk_mime_limits l;
    struct result *r;

    mk_mime_limits_default(&l);
    test_begin("limits: defaults");
    test_assert_int(l.max_depth, 8);
    test_assert_int(l.max_total, 64 << 20);
    test_assert_int(l.max_part, 32 << 20);
    test_assert(l.max_ratio == 100);
    test_assert_int(l.max_members, 10000);
    test_end();

    l.max_total = 30;
    r = walk_with("headers.eml", &l, 0);
    test_begin("max_total: text cut on a character, size limit, walk stopped");
    {
        size_t total = 0;

        for (size_t i = 0; i < r->nsegs; i++)
            total += strlen(r->segs[i].text);
        test_assert(total <= 30);
    }
    test_assert_int(r->nprobs, 1);
    test_assert(r->nprobs == 1 && strcmp(r->probs[0].reason, "size limit") == 0);
    test_assert(text_at(r, MK_WHERE_BODY, "body") == NULL);
    test_end_dump(r);
    result_free(r);

    mk_mime_limits_default(&l);
    l.max_part = 100;
    r = walk_with("attachments.eml", &l, 0);
    test_begin("max_part: large attachments reported, small ones read");
    test_assert(has_problem(r, "attachment \"salary.xlsx\"", "size limit", true));
    test_assert(text_at(r, MK_WHERE_ATTACHMENT, "attachment \"名單.csv\"") != NULL);
    test_end_dump(r);
    result_free(r);

    mk_mime_limits_default(&l);
    l.max_members = 1;
    r = extract_with("nested.zip", NULL, &l);
    test_begin("max_members: reported at the archive");
    test_assert(has_problem(r, "file \"nested.zip\"", "member limit", true));
    test_assert(text_at(r, MK_WHERE_ATTACHMENT, "file \"nested.zip\" > \"top.txt\"") == NULL);
    test_end_dump(r);
    result_free(r);

    mk_mime_limits_default(&l);
    l.max_depth = 1;
    r = extract_with("nested.zip", NULL, &l);
    test_begin("max_depth: an archive in an archive");
    test_assert(has_problem(r, "file \"nested.zip\" > \"inner.zip\"", "depth limit", true));
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "file \"nested.zip\" > \"top.txt\""),
                    "top level\n");
    test_end_dump(r);
    result_free(r);

    mk_mime_limits_default(&l);
    l.max_ratio = 1e9;
    l.max_part = MK_MIME_MIB;
    r = extract_with("bomb.zip", NULL, &l);
    test_begin("max_part stops a bomb that max_ratio lets through");
    test_assert(has_problem(r, "file \"bomb.zip\" > \"zeros.txt\"", "size limit", true));
    test_assert(text_at(r, MK_WHERE_ATTACHMENT, "file \"bomb.zip\" > \"after.txt\"") != NULL);
    test_end_dump(r);
    result_free(r);

    r = walk_with("attachments.eml", NULL, 2);
    test_begin("a nonzero return from the callback stops the walk");
    test_assert_int(r->rc, 0);
    test_assert_int(r->nsegs, 2);
    test_end_dump(r);
    result_free(r);
}

static void test_claims(void)
{
    struct result *r = mk_xcalloc(1, sizeof(*r));
    struct mk_mime_walk_cb cb = {on_segment, on_problem, r};
    static const char binary[] = "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x00garbage";

    test_begin("extract: a text renamed .docx is read as text");
    mk_extract_file("notes.docx", NULL, "secret A123456789\n", 18, NULL, 0, "x", &cb);
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "x"), "secret A123456789\n");
    test_end_dump(r);

    test_begin("extract: binary claimed to be a PDF is malformed");
    mk_extract_file("a.pdf", "application/pdf", binary, sizeof(binary), NULL, 0, "y", &cb);
    test_assert(has_problem(r, "y", "malformed", true));
    test_end_dump(r);

    test_begin("extract: unknown binary is informational");
    mk_extract_file(NULL, "application/x-foo", binary, sizeof(binary), NULL, 0, "z", &cb);
    test_assert(has_problem(r, "z", "unsupported type application/x-foo", false));
    test_end_dump(r);

    test_begin("extract: charset from the content type");
    mk_extract_file("a.txt", "text/plain; charset=gb18030", "\xc9\xed\xb7\xdd", 4, NULL, 0, "w",
                    &cb);
    test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "w"), "身份");
    test_end_dump(r);

    test_begin("extract: OLE2 named docx is an encrypted document");
    {
        static const char ole[] = "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1....E\0n\0c\0r\0y\0p\0t\0e\0d\0"
            "P\0a\0c\0k\0a\0g\0e\0";

        mk_extract_file("q.docx", NULL, ole, sizeof(ole), NULL, 0, "o", &cb);
        test_assert(has_problem(r, "o", "encrypted document", true));
        mk_extract_file("q.xls", NULL, ole, 16, NULL, 0, "p", &cb);
        test_assert(has_problem(r, "p", "unsupported document application/vnd.ms-excel", true));
    }
    test_end_dump(r);

    test_begin("extract: winmail.dat is an unsupported document");
    mk_extract_file("winmail.dat", "application/ms-tnef", "\x78\x9F\x3E\x22\x01\x06\x90", 7,
                    NULL, 0, "t", &cb);
    test_assert(has_problem(r, "t", "unsupported document application/ms-tnef", true));
    test_end_dump(r);

    test_begin("extract: a self-extracting zip is read as the zip");
    {
        size_t len;
        char *zip = fixture("encrypted.zip", &len), *sfx = mk_xmalloc(len + 512);

        memset(sfx, 0, 512);
        memcpy(sfx, "MZ", 2);
        memcpy(sfx + 512, zip, len);
        mk_extract_file("setup.exe", NULL, sfx, len + 512, NULL, 0, "s", &cb);
        test_assert(has_problem(r, "s > \"secret.txt\"", "encrypted archive", true));
        test_assert_str(text_at(r, MK_WHERE_ATTACHMENT, "s > \"readme.txt\""), "open text\n");
        free(zip);
        free(sfx);
    }
    test_end_dump(r);
    result_free(r);
}

static void test_to_utf8(void)
{
    size_t n;
    char *s;

    test_begin("to_utf8: declared, BOM, fallbacks, lossy");
    s = mk_mime_to_utf8("big5", "\xa8\xad\xa4\xc0\xc3\xd2", 6, &n);
    test_assert_str(s, "身分證");
    test_assert_int(n, 9);
    free(s);
    s = mk_mime_to_utf8("utf-8", "\xff\xfe" "A\0B\0", 6, &n);
    test_assert_str(s, "AB");
    free(s);
    s = mk_mime_to_utf8(NULL, "Caf\xe9 au lait", 12, &n);
    test_assert_str(s, "Café au lait");
    free(s);
    /* Big5 with a byte cut off at the end: the rest is kept */
    s = mk_mime_to_utf8(NULL, "\xa8\xad\xa4\xc0\xc3", 5, &n);
    test_assert(strncmp(s, "身分", 6) == 0 && strstr(s, "\xEF\xBF\xBD") != NULL);
    free(s);
    s = mk_mime_to_utf8("no-such-charset", "plain", 5, &n);
    test_assert_str(s, "plain");
    free(s);
    s = mk_mime_to_utf8(NULL, "", 0, &n);
    test_assert_str(s, "");
    test_assert_int(n, 0);
    free(s);
    test_end();

    test_begin("html: scripts out, cells and lines");
    s = mk_extract_html("<p>a&nbsp;b</p><script>x</script><ul><li>1<li>2</ul>", 51, &n);
    test_assert_str(s, "a\xC2\xA0" "b\n1\n2\n");
    free(s);
    test_end();
}

/* ------------------------------------------------------------- threads */

static void *walk_thread(void *arg)
{
    struct result *r = walk("attachments.eml");

    *(size_t *) arg = r->nsegs;
    result_free(r);
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[4];
    size_t nsegs[4], expected;
    struct result *r = walk("attachments.eml");

    expected = r->nsegs;
    result_free(r);
    test_begin("walks in several threads at once agree");
    for (size_t i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, walk_thread, &nsegs[i]);
    for (size_t i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        test_assert_int(nsegs[i], expected);
    }
    test_end();
}

/* -------------------------------------------------------------- set-up */

static void make_fixtures(void)
{
    const char *srcdir = getenv("MK_TEST_SRCDIR");
    char here[] = __FILE__;
    char *script;
    pid_t pid;
    int status;

    snprintf(fixtures, sizeof(fixtures), "%s/mk-mime-XXXXXX",
             getenv("TMPDIR") && strlen(getenv("TMPDIR")) < 200 ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(fixtures) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    script = mk_xasprintf("%s/data/make-mime-fixtures.py", srcdir ? srcdir : dirname(here));
    if ((pid = fork()) == 0) {
        execl("/usr/bin/python3", "python3", script, fixtures, (char *) NULL);
        perror("/usr/bin/python3");
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)
        || WEXITSTATUS(status) != 0) {
        printf("cannot write the fixtures with %s\n", script);
        exit(2);
    }
    free(script);
}

static void remove_fixtures(void)
{
    DIR *dir = opendir(fixtures);
    struct dirent *d;

    while (dir && (d = readdir(dir)) != NULL) {
        if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0) {
            char *path = mk_xasprintf("%s/%s", fixtures, d->d_name);

            unlink(path);
            free(path);
        }
    }
    if (dir)
        closedir(dir);
    rmdir(fixtures);
}

int main(void)
{
    int rc;

    make_fixtures();
    mk_mime_init();
    mk_mime_init();             /* more than once is allowed */
    test_headers();
    test_bodies();
    test_html();
    test_documents();
    test_archives();
    test_attachments();
    test_hostile();
    test_limits();
    test_claims();
    test_to_utf8();
    test_threads();
    remove_fixtures();
    rc = test_done();
    mk_mime_shutdown();
    return rc;
}
