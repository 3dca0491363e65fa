/* Unit tests for au_log: the audit log's chain, files, checkpoints and verifier. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "au_keys.h"
#include "au_log.h"
#include "mk_crypto.h"
#include "mk_lines.h"
#include "mk_test.h"
#include "mk_util.h"

#define DAY ((int64_t) 86400 * 1000000)

static char tmpdir[64];
static EVP_PKEY *sign_key, *verify_key;
static int64_t t0;                      /* 2026-11-23T10:00:00Z */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove(path);
}

static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *dir_of(const char *name)
{
    char *d = mk_xasprintf("%s/%s", tmpdir, name);

    remove_tree(d);
    mkdir(d, 0700);
    return d;
}

/* Lines of a file, each without its newline; a torn last line is kept. */
struct lines {
    char **v;
    size_t n;
    bool torn;
};

static struct lines read_lines(const char *path)
{
    char *error = NULL, *text, *p;
    struct lines l = {NULL, 0, false};
    size_t len;

    if ((text = mk_file_read(path, &len, NULL, &error)) == NULL) {
        free(error);
        return l;
    }
    l.torn = len > 0 && text[len - 1] != '\n';
    for (p = text; p < text + len; ) {
        char *nl = memchr(p, '\n', (size_t) (text + len - p));
        size_t n = nl ? (size_t) (nl - p) : (size_t) (text + len - p);

        l.v = mk_xrealloc(l.v, (l.n + 1) * sizeof(*l.v));
        l.v[l.n++] = mk_xstrndup(p, n);
        p += n + (nl != NULL);
    }
    free(text);
    return l;
}

static void write_lines(const char *path, const struct lines *l)
{
    FILE *fp = fopen(path, "w");

    for (size_t i = 0; i < l->n; i++)
        fprintf(fp, "%s%s", l->v[i], i + 1 == l->n && l->torn ? "" : "\n");
    fclose(fp);
}

static void free_lines(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void remove_line(struct lines *l, size_t i)
{
    free(l->v[i]);
    memmove(l->v + i, l->v + i + 1, (l->n - i - 1) * sizeof(*l->v));
    l->n--;
}

static void insert_line(struct lines *l, size_t i, const char *text)
{
    l->v = mk_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    memmove(l->v + i + 1, l->v + i, (l->n - i) * sizeof(*l->v));
    l->v[i] = mk_xstrdup(text);
    l->n++;
}

/* Replace the prev and hash of a line so that its text gives them: what a forger can do. */
static void rehash(char **line, const unsigned char prev[32], unsigned char out[32])
{
    struct au_log_record r;
    char prev_hex[65], hash_hex[65], sig_hex[129], *fixed;
    unsigned char *buf;
    size_t hashed;

    if (au_log_parse(*line, strlen(*line), &r) != NULL)
        return;
    hashed = r.hashed;
    buf = mk_xmalloc(32 + hashed);
    memcpy(buf, prev, 32);
    memcpy(buf + 32, *line, hashed);
    mk_crypto_hex(prev, 32, prev_hex);  /* prev and out may be the same */
    mk_crypto_sha256(buf, 32 + hashed, out);
    mk_crypto_hex(out, 32, hash_hex);
    mk_crypto_hex(r.sig, 64, sig_hex);
    if (r.checkpoint)
        fixed = mk_xasprintf("%.*s,\"prev\":\"%s\",\"hash\":\"%s\",\"sig\":\"%s\"}", (int) hashed,
                             *line, prev_hex, hash_hex, sig_hex);
    else
        fixed = mk_xasprintf("%.*s,\"prev\":\"%s\",\"hash\":\"%s\"}", (int) hashed, *line,
                             prev_hex, hash_hex);
    free(buf);
    free(*line);
    *line = fixed;
}

static void hash_of_line(const char *line, unsigned char out[32])
{
    struct au_log_record r;

    memset(out, 0, 32);
    if (au_log_parse(line, strlen(line), &r) == NULL)
        memcpy(out, r.hash, 32);
}

/* Re-hash every line of l from index from on, chaining from prev (or the line before). */
static void rehash_from(struct lines *l, size_t from, const unsigned char *start_prev)
{
    unsigned char prev[32] = {0};

    if (start_prev)
        memcpy(prev, start_prev, 32);
    else if (from > 0)
        hash_of_line(l->v[from - 1], prev);
    for (size_t i = from; i < l->n; i++)
        rehash(&l->v[i], prev, prev);
}

/* Problems seen by verify */

struct seen {
    int problems[8];
    int total;
    uint64_t first_seq[8], first_line[8];
    char first_file[8][300];
    char last_detail[512];
    struct au_log_stats st;
};

static void on_problem(void *arg, const struct au_log_problem *p)
{
    struct seen *s = arg;
    const char *base = p->file ? strrchr(p->file, '/') : NULL;

    if (s->problems[p->kind]++ == 0) {
        s->first_seq[p->kind] = p->seq;
        s->first_line[p->kind] = p->line;
        snprintf(s->first_file[p->kind], sizeof(s->first_file[0]), "%s",
                 base ? base + 1 : p->file ? p->file : "");
    }
    s->total++;
    snprintf(s->last_detail, sizeof(s->last_detail), "%s", p->detail);
    if (getenv("TEST_VERBOSE"))
        printf("    problem: %s:%" PRIu64 ": seq %" PRIu64 ": %s: %s\n", p->file, p->line, p->seq,
               au_log_problem_name(p->kind), p->detail);
}

static int verify(const char *dir, struct seen *s)
{
    char *error = NULL;
    int rc;

    memset(s, 0, sizeof(*s));
    rc = au_log_verify(dir, verify_key, on_problem, s, &s->st, &error);
    if (rc < 0) {
        printf("    verify: %s\n", error);
        free(error);
    }
    return rc;
}

/* Writing */

static struct au_log *open_log(const char *dir)
{
    char *error = NULL, *note;
    struct au_log *l = au_log_open(dir, sign_key, verify_key, &error);

    if (l == NULL) {
        printf("    open: %s\n", error);
        free(error);
        return NULL;
    }
    note = au_log_take_note(l);
    if (note && getenv("TEST_VERBOSE"))
        printf("    note: %s\n", note);
    free(note);
    return l;
}

static int add(struct au_log *l, int i, int64_t time)
{
    char members[128], *error = NULL;
    uint64_t seq;
    int n = snprintf(members, sizeof(members), "\"op\":\"read\",\"user\":\"user%d\",\"uid\":%d",
                     i, i);

    if (au_log_append(l, members, (size_t) n, 1000 + i, 8, time, &seq, &error) < 0) {
        printf("    append: %s\n", error);
        free(error);
        return -1;
    }
    return 0;
}

static int checkpoint_and_flush(struct au_log *l, int64_t time)
{
    char *error = NULL;

    if (au_log_checkpoint(l, time, &error) < 0 || au_log_flush(l, &error) < 0) {
        printf("    %s\n", error);
        free(error);
        return -1;
    }
    return 0;
}

static int flush(struct au_log *l)
{
    char *error = NULL;

    if (au_log_flush(l, &error) < 0) {
        printf("    flush: %s\n", error);
        free(error);
        return -1;
    }
    return 0;
}

/*
 * The reference log used by the damage tests, one file of day t0:
 * records 1-3, checkpoint 4, records 5-7, checkpoint 8, records 9-10,
 * checkpoint 11 (lines 1 to 11).
 */
static char *make_reference(const char *name)
{
    char *dir = dir_of(name);
    struct au_log *l = open_log(dir);

    for (int i = 1; i <= 3; i++)
        add(l, i, t0 + i);
    checkpoint_and_flush(l, t0 + 4);
    for (int i = 5; i <= 7; i++)
        add(l, i, t0 + i);
    checkpoint_and_flush(l, t0 + 8);
    for (int i = 9; i <= 10; i++)
        add(l, i, t0 + i);
    checkpoint_and_flush(l, t0 + 11);
    au_log_close(l);
    return dir;
}

static char *file_of(const char *dir, int64_t time)
{
    char name[AU_LOG_NAME_LEN + 1];

    au_log_file_name(time, name);
    return mk_xasprintf("%s/%s", dir, name);
}

/* A copy of the reference log to damage; returns its lines. */
static struct lines damaged_copy(const char *ref, const char *dir, char **path)
{
    char *from = file_of(ref, t0), *head_from = mk_xasprintf("%s/head", ref);
    char *head_to = mk_xasprintf("%s/head", dir), *error = NULL, *text;
    struct lines l;
    size_t len;
    FILE *fp;

    remove_tree(dir);
    mkdir(dir, 0700);
    *path = file_of(dir, t0);
    l = read_lines(from);
    write_lines(*path, &l);
    if ((text = mk_file_read(head_from, &len, NULL, &error)) != NULL) {
        fp = fopen(head_to, "w");
        fwrite(text, 1, len, fp);
        fclose(fp);
        free(text);
    }
    free(error);
    free(from);
    free(head_from);
    free(head_to);
    return l;
}

/* ------------------------------------------------------------- cases */

static void test_times(void)
{
    char text[AU_LOG_TIME_LEN + 1], name[AU_LOG_NAME_LEN + 1];
    int64_t t;

    test_begin("time: format and parse are each other's inverse");
    test_assert_int(au_log_parse_time("2026-11-23T10:11:12.123456Z", 27, &t), 0);
    test_assert_int(au_log_format_time(t, text), 27);
    test_assert_str(text, "2026-11-23T10:11:12.123456Z");
    test_assert_int(t % 1000000, 123456);
    test_assert_int(au_log_parse_time("1970-01-01T00:00:00.000000Z", 27, &t), 0);
    test_assert_int(t, 0);
    test_assert_int(au_log_parse_time("2024-02-29T23:59:59.999999Z", 27, &t), 0);
    au_log_format_time(t + 1, text);
    test_assert_str(text, "2024-03-01T00:00:00.000000Z");
    test_end();

    test_begin("time: malformed times are refused");
    test_assert_int(au_log_parse_time("2025-02-29T00:00:00.000000Z", 27, &t), -1);
    test_assert_int(au_log_parse_time("2026-04-31T00:00:00.000000Z", 27, &t), -1);
    test_assert_int(au_log_parse_time("2026-11-23T24:00:00.000000Z", 27, &t), -1);
    test_assert_int(au_log_parse_time("2026-11-23T10:60:00.000000Z", 27, &t), -1);
    test_assert_int(au_log_parse_time("2026-11-23 10:11:12.123456Z", 27, &t), -1);
    test_assert_int(au_log_parse_time("2026-11-23T10:11:12.123456+", 27, &t), -1);
    test_assert_int(au_log_parse_time("2026-11-23T10:11:12.12345Z", 26, &t), -1);
    test_assert_int(au_log_parse_time("1969-12-31T23:59:59.000000Z", 27, &t), -1);
    test_end();

    test_begin("time: a record's file is its UTC day's");
    au_log_file_name(t0, name);
    test_assert_str(name, "2026-11-23.log");
    au_log_file_name(t0 + 14 * 3600 * (int64_t) 1000000 - 1, name);
    test_assert_str(name, "2026-11-23.log");
    au_log_file_name(t0 + 14 * 3600 * (int64_t) 1000000, name);
    test_assert_str(name, "2026-11-24.log");
    test_end();
}

static void test_parse(void)
{
    struct au_log_record r;
    const char *line = "{\"seq\":12,\"time\":\"2026-11-23T10:11:12.123456Z\",\"op\":\"x\",\"user\":"
        "\"u\",\"n\":{\"peer\":{\"pid\":1,\"uid\":2},\"prev\":\"z\"},\"peer\":{\"pid\":77,\"uid\":"
        "8},\"prev\":\"0000000000000000000000000000000000000000000000000000000000000000\","
        "\"hash\":\"00000000000000000000000000000000000000000000000000000000000000ff\"}";
    char *bad;

    test_begin("parse: a record, with peer and prev nested in its fields");
    test_assert(au_log_parse(line, strlen(line), &r) == NULL);
    test_assert_int(r.seq, 12);
    test_assert(!r.checkpoint);
    test_assert_int(r.pid, 77);
    test_assert_int(r.uid, 8);
    test_assert_int(r.hash[31], 0xff);
    test_assert(r.members_len > 0 && strncmp(r.members, "\"op\":\"x\"", 8) == 0);
    test_assert(r.members[r.members_len - 1] == '}');
    test_assert(strncmp(line + r.hashed, ",\"prev\":\"", 9) == 0);
    test_end();

    test_begin("parse: malformed lines are refused");
    test_assert(au_log_parse("", 0, &r) != NULL);
    test_assert(au_log_parse("{\"seq\":0,", 9, &r) != NULL);
    bad = mk_xstrdup(line);
    bad[7] = '0';                       /* seq 02: a leading zero */
    test_assert(au_log_parse(bad, strlen(bad), &r) != NULL);
    free(bad);
    bad = mk_xstrdup(line);
    bad[strlen(bad) - 3] = 'F';         /* upper-case hex */
    test_assert(au_log_parse(bad, strlen(bad), &r) != NULL);
    free(bad);
    bad = mk_xstrdup(line);
    *strstr(bad, ",\"peer\":{\"pid\":77") = ';';
    test_assert(au_log_parse(bad, strlen(bad), &r) != NULL);   /* no nested one stands in */
    free(bad);
    bad = mk_xasprintf("%.*s", (int) strlen(line) - 1, line);  /* no closing brace */
    test_assert(au_log_parse(bad, strlen(bad), &r) != NULL);
    free(bad);
    test_end();
}

static void test_write(void)
{
    char *dir = dir_of("write"), *path = file_of(dir, t0), *error = NULL, *head;
    struct au_log *l, *l2;
    struct lines lines;
    struct seen s;
    struct au_log_record r;
    unsigned char zero[32] = {0}, h[32];
    struct stat st;
    uint64_t seq;
    size_t len;

    test_begin("log: append, flush, checkpoint: the contract's format");
    l = open_log(dir);
    test_assert(l != NULL);
    test_assert_int(au_log_last_seq(l), 0);
    test_assert_int(add(l, 1, t0 + 1), 0);
    test_assert_int(add(l, 2, t0 + 2), 0);
    test_assert_int(au_log_pending_seq(l), 2);
    test_assert_int(au_log_last_seq(l), 0);   /* not written yet */
    test_assert(au_log_pending_bytes(l) > 0);
    test_assert_int(flush(l), 0);
    test_assert_int(au_log_last_seq(l), 2);
    test_assert_int(au_log_pending_bytes(l), 0);
    test_assert_int(au_log_unsigned(l), 2);
    test_assert_int(checkpoint_and_flush(l, t0 + 3), 0);
    test_assert_int(au_log_unsigned(l), 0);
    test_assert_int(checkpoint_and_flush(l, t0 + 4), 0);       /* nothing to sign */
    test_assert_int(au_log_last_seq(l), 3);
    lines = read_lines(path);
    test_assert_int(lines.n, 3);
    test_assert(lines.n == 3 && strncmp(lines.v[0], "{\"seq\":1,\"time\":\"2026-11-23T10:00:00."
                                        "000001Z\",\"op\":\"read\",\"user\":\"user1\",\"uid\":1,"
                                        "\"peer\":{\"pid\":1001,\"uid\":8},\"prev\":\"00000000",
                                        125) == 0);
    test_assert(lines.n == 3 && strncmp(lines.v[2], "{\"seq\":3,\"time\":\"2026-11-23T10:00:00."
                                        "000003Z\",\"op\":\"checkpoint\",\"prev\":\"", 72) == 0);
    /* the hash is SHA-256(prev || the line before ,"prev":") */
    if (lines.n == 3 && au_log_parse(lines.v[0], strlen(lines.v[0]), &r) == NULL) {
        unsigned char *buf = mk_xmalloc(32 + r.hashed);

        memcpy(buf, zero, 32);
        memcpy(buf + 32, lines.v[0], r.hashed);
        mk_crypto_sha256(buf, 32 + r.hashed, h);
        test_assert(memcmp(h, r.hash, 32) == 0);
        free(buf);
    } else
        test_assert(!"line 1 parses");
    /* the checkpoint's signature, over the contract's text */
    if (lines.n == 3 && au_log_parse(lines.v[2], strlen(lines.v[2]), &r) == NULL) {
        char text[160], hex[65];

        mk_crypto_hex(r.hash, 32, hex);
        snprintf(text, sizeof(text), "mailkeep audit checkpoint v1 seq=3 hash=%s", hex);
        test_assert(r.checkpoint);
        test_assert(mk_crypto_verify(verify_key, text, strlen(text), r.sig));
        head = mk_xasprintf("%s/head", dir);
        free(error);
        error = NULL;
        {
            char *text2 = mk_file_read(head, &len, NULL, &error);
            char *want = mk_xasprintf("seq=3 hash=%s file=2026-11-23.log sig=", hex);

            test_assert(text2 && strncmp(text2, want, strlen(want)) == 0 && len == strlen(want)
                        + 129);
            free(text2);
            free(want);
        }
        free(head);
    } else
        test_assert(!"line 3 parses");
    free_lines(&lines);
    test_assert(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);
    test_end();

    test_begin("log: one writer at a time; readers see it live");
    l2 = au_log_open(dir, sign_key, verify_key, &error);
    test_assert(l2 == NULL);
    test_assert(error && strstr(error, "in use by another writer"));
    free(error);
    error = NULL;
    test_assert_int(add(l, 4, t0 + 5), 0);
    test_assert_int(flush(l), 0);
    test_assert_int(verify(dir, &s), 0);    /* an unsigned tail is normal while live */
    test_assert(s.st.live);
    test_assert_int(s.st.unsigned_live, 1);
    test_assert_int(s.st.records, 3);
    test_assert_int(s.st.checkpoints, 1);
    test_end();

    test_begin("log: records that cannot be formed are refused");
    test_assert_int(au_log_append(l, "", 0, 1, 1, t0, &seq, &error), -1);
    free(error);
    test_assert_int(au_log_append(l, "\"a\":\n1", 6, 1, 1, t0, &seq, &error), -1);
    free(error);
    test_assert_int(au_log_append(l, "\"a\":1", 5, 1, 1, -1, &seq, &error), -1);
    free(error);
    {
        size_t big = AU_LOG_MAX_LINE;
        char *m = mk_xmalloc(big + 1);

        memset(m, 'a', big);
        memcpy(m, "\"x\":\"", 5);
        m[big - 1] = '"';
        test_assert_int(au_log_append(l, m, big, 1, 1, t0 + 6, &seq, &error), -1);
        test_assert(error && strstr(error, "more than"));
        free(error);
        error = NULL;
        free(m);
    }
    test_assert_int(au_log_pending_seq(l), 4);    /* nothing was chained */
    test_end();

    test_begin("log: restart continues the seq and the chain, signing the tail");
    au_log_close(l);
    test_assert_int(verify(dir, &s), 1);    /* no writer now: the tail is a problem */
    test_assert_int(s.problems[AU_LOG_UNSIGNED_TAIL], 1);
    test_assert_int(s.first_seq[AU_LOG_UNSIGNED_TAIL], 4);
    test_assert_int(s.first_line[AU_LOG_UNSIGNED_TAIL], 4);
    l = open_log(dir);
    test_assert(l != NULL);
    test_assert_int(au_log_last_seq(l), 4);
    test_assert_int(au_log_unsigned(l), 1);
    test_assert_int(checkpoint_and_flush(l, t0 + 7), 0);
    test_assert_int(add(l, 6, t0 + 8), 0);
    test_assert_int(checkpoint_and_flush(l, t0 + 9), 0);
    test_assert_int(au_log_last_seq(l), 7);
    au_log_close(l);
    test_assert_int(verify(dir, &s), 0);
    test_assert_int(s.st.records, 4);     /* 1, 2, 4, 6 */
    test_assert_int(s.st.checkpoints, 3);
    test_assert_int(s.st.last_seq, 7);
    test_assert(!s.st.live);
    test_end();
    free(dir);
    free(path);
}

static int collect(void *arg, const struct au_log_record *r)
{
    struct lines *l = arg;
    char *text = mk_xasprintf("%" PRIu64 "%s", r->seq, r->checkpoint ? "c" : "");

    l->v = mk_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n++] = text;
    return 0;
}

static char *joined(const struct lines *l)
{
    char *s = mk_xstrdup("");

    for (size_t i = 0; i < l->n; i++) {
        char *next = mk_xasprintf("%s%s%s", s, i ? " " : "", l->v[i]);

        free(s);
        s = next;
    }
    return s;
}

static char *read_range(const char *dir, int64_t since, int64_t until)
{
    struct lines got = {NULL, 0, false};
    char *error = NULL, *s;

    if (au_log_read(dir, since, until, collect, &got, &error) < 0) {
        s = mk_xasprintf("error: %s", error);
        free(error);
    } else
        s = joined(&got);
    free_lines(&got);
    return s;
}

static void test_rotation(void)
{
    char *dir = dir_of("rotate"), *s, *path;
    struct au_log *l = open_log(dir);
    struct lines lines;
    struct seen st;

    test_begin("rotation: a file per UTC day, each closed by a checkpoint");
    add(l, 1, t0);
    add(l, 2, t0 + 1);
    flush(l);
    add(l, 3, t0 + DAY);              /* a new day: checkpoint 3 closes the first file */
    add(l, 4, t0 + DAY + 1);
    test_assert_int(au_log_pending_seq(l), 5);
    test_assert_int(flush(l), 0);
    add(l, 5, t0 + 3 * DAY);          /* a day without records: no file for it */
    test_assert_int(checkpoint_and_flush(l, t0 + 3 * DAY + 1), 0);
    add(l, 6, t0 + 2 * DAY);          /* the clock set back: the current file goes on */
    test_assert_int(checkpoint_and_flush(l, t0 + 3 * DAY + 2), 0);
    au_log_close(l);
    path = file_of(dir, t0);
    lines = read_lines(path);
    test_assert_int(lines.n, 3);
    test_assert(lines.n == 3 && strstr(lines.v[2], "\"op\":\"checkpoint\""));
    free_lines(&lines);
    free(path);
    path = file_of(dir, t0 + DAY);
    lines = read_lines(path);
    test_assert_int(lines.n, 3);        /* 4, 5 and the checkpoint 6 before the next day */
    test_assert(lines.n == 3 && strncmp(lines.v[0], "{\"seq\":4,", 9) == 0);
    free_lines(&lines);
    free(path);
    path = file_of(dir, t0 + 2 * DAY);
    test_assert(access(path, F_OK) < 0);
    free(path);
    path = file_of(dir, t0 + 3 * DAY);
    lines = read_lines(path);
    test_assert_int(lines.n, 4);        /* 7, checkpoint 8, 9 (set back), checkpoint 10 */
    free_lines(&lines);
    free(path);
    test_assert_int(verify(dir, &st), 0);
    test_assert_int(st.st.files, 3);
    test_assert_int(st.st.records, 6);
    test_assert_int(st.st.checkpoints, 4);
    test_end();

    test_begin("read: records between two times, from the right files");
    s = read_range(dir, 0, INT64_MAX);
    test_assert_str(s, "1 2 3c 4 5 6c 7 8c 9 10c");
    free(s);
    s = read_range(dir, t0 + 1, t0 + DAY + 1);
    test_assert_str(s, "2 3c 4");
    free(s);
    s = read_range(dir, t0 + DAY, t0 + DAY + 1);
    test_assert_str(s, "4");            /* checkpoint 3 closes the first day's file */
    free(s);
    s = read_range(dir, t0 + 2 * DAY, INT64_MAX);       /* 9 is in the 4th day's file */
    test_assert_str(s, "7 8c 9 10c");
    free(s);
    s = read_range(dir, t0 + 4 * DAY, INT64_MAX);
    test_assert_str(s, "");
    free(s);
    test_end();

    test_begin("read: a damaged line stops it, with file and line");
    path = file_of(dir, t0 + DAY);
    lines = read_lines(path);
    lines.v[1][strlen(lines.v[1]) - 160] ^= 1;
    write_lines(path, &lines);
    free_lines(&lines);
    s = read_range(dir, 0, INT64_MAX);
    test_assert(strstr(s, "2026-11-24.log:2: ") && strstr(s, "mailkeep audit verify"));
    free(s);
    test_assert_int(verify(dir, &st), 1);
    test_assert_int(st.problems[AU_LOG_MODIFIED], 1);
    test_assert_int(st.first_seq[AU_LOG_MODIFIED], 5);
    test_assert_int(st.first_line[AU_LOG_MODIFIED], 2);
    test_assert_str(st.first_file[AU_LOG_MODIFIED], "2026-11-24.log");
    free(path);
    test_end();
    free(dir);
}

static void test_damage(void)
{
    char *ref = make_reference("ref"), *bad = mk_xasprintf("%s/bad", tmpdir), *path = NULL;
    struct lines l;
    struct seen s;

    test_begin("verify: the reference log is intact");
    test_assert_int(verify(ref, &s), 0);
    test_assert_int(s.st.records, 8);
    test_assert_int(s.st.checkpoints, 3);
    test_end();

    test_begin("verify: a changed field is modified, at its line and seq");
    l = damaged_copy(ref, bad, &path);
    *strstr(l.v[5], "user6") = 'U';    /* line 6: seq 6 */
    write_lines(path, &l);
    test_assert_int(verify(bad, &s), 1);
    test_assert_int(s.problems[AU_LOG_MODIFIED], 1);
    test_assert_int(s.first_seq[AU_LOG_MODIFIED], 6);
    test_assert_int(s.first_line[AU_LOG_MODIFIED], 6);
    test_assert_str(s.first_file[AU_LOG_MODIFIED], "2026-11-23.log");
    free_lines(&l);
    free(path);
    test_end();

    test_begin("verify: a removed line is missing");
    l = damaged_copy(ref, bad, &path);
    remove_line(&l, 1);                 /* seq 2 */
    write_lines(path, &l);
    test_assert_int(verify(bad, &s), 1);
    test_assert_int(s.problems[AU_LOG_MISSING], 1);
    test_assert_int(s.first_seq[AU_LOG_MISSING], 2);
    test_assert_int(s.first_line[AU_LOG_MISSING], 2);  /* where the gap shows */
    free_lines(&l);
    free(path);
    test_end();

    test_begin("verify: a duplicated line is added");
    l = damaged_copy(ref, bad, &path);
    insert_line(&l, 3, l.v[2]);         /* seq 3 twice, the copy at line 4 */
    write_lines(path, &l);
    test_assert_int(verify(bad, &s), 1);
    test_assert_int(s.problems[AU_LOG_ADDED], 1);
    test_assert_int(s.first_seq[AU_LOG_ADDED], 3);
    test_assert_int(s.first_line[AU_LOG_ADDED], 4);
    free_lines(&l);
    free(path);
    test_end();

    test_begin("verify: swapped lines are reordered");
    l = damaged_copy(ref, bad, &path);
    {
        char *t = l.v[5];

        l.v[5] = l.v[6];
        l.v[6] = t;                     /* seq 7 at line 6, seq 6 at line 7 */
    }
    write_lines(path, &l);
    test_assert_int(verify(bad, &s), 1);
    test_assert_int(s.problems[AU_LOG_REORDERED], 1);
    test_assert_int(s.first_seq[AU_LOG_REORDERED], 6);
    test_assert_int(s.first_line[AU_LOG_REORDERED], 7);
    free_lines(&l);
    free(path);
    test_end();

    test_begin("verify: an edit re-hashed is a bad signature at the next checkpoint");
    l = damaged_copy(ref, bad, &path);
    *strstr(l.v[4], "user5") = 'U';    /* seq 5; checkpoint 8 covers it */
    rehash_from(&l, 4, NULL);
    write_lines(path, &l);
    test_assert(verify(bad, &s) >= 1);
    test_assert_int(s.problems[AU_LOG_MODIFIED], 0);
    test_assert_int(s.problems[AU_LOG_BAD_SIGNATURE] >= 1, 1);
    test_assert_int(s.first_seq[AU_LOG_BAD_SIGNATURE], 8);
    test_assert_int(s.first_line[AU_LOG_BAD_SIGNATURE], 8);
    free_lines(&l);
    free(path);
    test_end();

    test_begin("verify: an altered signature is a bad signature");
    l = damaged_copy(ref, bad, &path);
    {
        char *sig = strstr(l.v[3], "\"sig\":\"") + 7;

        *sig = *sig == '0' ? '1' : '0';
    }
    write_lines(path, &l);
    test_assert_int(verify(bad, &s), 1);
    test_assert_int(s.problems[AU_LOG_BAD_SIGNATURE], 1);
    test_assert_int(s.first_seq[AU_LOG_BAD_SIGNATURE], 4);
    free_lines(&l);
    free(path);
    test_end();

    test_begin("verify: a log cut back to a checkpoint is truncated");
    l = damaged_copy(ref, bad, &path);
    l.n -= 3;                           /* drop 9, 10 and checkpoint 11 */
    write_lines(path, &l);
    l.n += 3;
    test_assert_int(verify(bad, &s), 1);
    test_assert_int(s.problems[AU_LOG_TRUNCATED], 1);
    test_assert_int(s.first_seq[AU_LOG_TRUNCATED], 11);
    test_assert_str(s.first_file[AU_LOG_TRUNCATED], "head");
    {
        char *error = NULL;
        struct au_log *w = au_log_open(bad, sign_key, verify_key, &error);

        test_assert(w == NULL);         /* and the writer refuses it */
        test_assert(error && strstr(error, "cut short"));
        free(error);
    }
    free_lines(&l);
    free(path);
    test_end();

    test_begin("verify: a missing head is truncated");
    l = damaged_copy(ref, bad, &path);
    {
        char *head = mk_xasprintf("%s/head", bad);

        unlink(head);
        free(head);
    }
    test_assert_int(verify(bad, &s), 1);
    test_assert_int(s.problems[AU_LOG_TRUNCATED], 1);
    free_lines(&l);
    free(path);
    test_end();

    test_begin("verify: records without a checkpoint are an unsigned tail");
    l = damaged_copy(ref, bad, &path);
    l.n -= 1;                           /* drop checkpoint 11 ... */
    write_lines(path, &l);
    l.n += 1;
    test_assert(verify(bad, &s) >= 1);
    test_assert_int(s.problems[AU_LOG_UNSIGNED_TAIL], 1);
    test_assert_int(s.first_seq[AU_LOG_UNSIGNED_TAIL], 9);
    test_assert_int(s.first_line[AU_LOG_UNSIGNED_TAIL], 9);
    free_lines(&l);
    free(path);
    test_end();

    test_begin("verify: a malformed and an over-long line are modified");
    l = damaged_copy(ref, bad, &path);
    free(l.v[1]);
    l.v[1] = mk_xstrdup("{\"seq\":2,garbage");
    {
        char *lng = mk_xmalloc(AU_LOG_MAX_LINE + 100);

        memset(lng, 'x', AU_LOG_MAX_LINE + 99);
        lng[AU_LOG_MAX_LINE + 99] = '\0';
        free(l.v[6]);
        l.v[6] = lng;                   /* seq 7 */
    }
    write_lines(path, &l);
    test_assert_int(verify(bad, &s), 2);       /* the chain goes on after each */
    test_assert_int(s.problems[AU_LOG_MODIFIED], 2);
    test_assert_int(s.first_seq[AU_LOG_MODIFIED], 2);
    test_assert_int(s.first_line[AU_LOG_MODIFIED], 2);
    free_lines(&l);
    free(path);
    test_end();

    test_begin("verify: problems in a later file name that file");
    {
        char *dir = dir_of("two"), *p2;
        struct au_log *w = open_log(dir);

        for (int i = 1; i <= 4; i++)
            add(w, i, t0 + i);
        for (int i = 5; i <= 8; i++)
            add(w, i, t0 + DAY + i);
        checkpoint_and_flush(w, t0 + DAY + 9);
        au_log_close(w);
        p2 = file_of(dir, t0 + DAY);
        l = read_lines(p2);
        remove_line(&l, 2);             /* seq 8 (7 is at line 2: 5 is the checkpoint) */
        write_lines(p2, &l);
        test_assert(verify(dir, &s) >= 1);
        test_assert_int(s.problems[AU_LOG_MISSING], 1);
        test_assert_int(s.first_seq[AU_LOG_MISSING], 8);
        test_assert_int(s.first_line[AU_LOG_MISSING], 3);
        test_assert_str(s.first_file[AU_LOG_MISSING], "2026-11-24.log");
        free_lines(&l);
        /* an older file cut in the middle of a line */
        free(p2);
        p2 = file_of(dir, t0);
        l = read_lines(p2);
        l.v[l.n - 1][100] = '\0';
        l.torn = true;
        write_lines(p2, &l);
        test_assert(verify(dir, &s) >= 2);
        test_assert(s.problems[AU_LOG_MODIFIED] >= 1);
        test_assert_str(s.first_file[AU_LOG_MODIFIED], "2026-11-23.log");
        test_assert_int(s.first_line[AU_LOG_MODIFIED], 5);
        free_lines(&l);
        free(p2);
        free(dir);
    }
    test_end();

    test_begin("verify: another key's signatures do not verify");
    {
        char *kdir = mk_xasprintf("%s/otherkeys", tmpdir), *error = NULL;
        EVP_PKEY *other_sign = NULL, *other = NULL;
        struct au_log_stats st;

        au_keys_create(kdir, &error);
        au_keys_load(kdir, false, &other_sign, &other, &error);
        memset(&s, 0, sizeof(s));
        test_assert_int(au_log_verify(ref, other, on_problem, &s, &st, &error), 4);
        test_assert_int(s.problems[AU_LOG_BAD_SIGNATURE], 4);      /* 3 and the head */
        EVP_PKEY_free(other);
        free(kdir);
    }
    test_end();
    free(ref);
    free(bad);
}

static void test_crash(void)
{
    char *dir = dir_of("crash"), *path = file_of(dir, t0), *dpath, *error = NULL, *note;
    struct au_log *l = open_log(dir);
    struct lines lines;
    struct seen s;
    FILE *fp;
    int fd;

    for (int i = 1; i <= 3; i++)
        add(l, i, t0 + i);
    checkpoint_and_flush(l, t0 + 4);
    add(l, 5, t0 + 5);
    flush(l);
    au_log_close(l);

    test_begin("crash: a torn last line is cut off into NAME.discarded");
    fp = fopen(path, "a");
    fputs("{\"seq\":6,\"time\":\"2026-11-23T10:00:", fp);
    fclose(fp);
    l = au_log_open(dir, sign_key, verify_key, &error);
    test_assert(l != NULL);
    note = l ? au_log_take_note(l) : NULL;
    test_assert(note && strstr(note, "torn last line") && strstr(note, ".discarded"));
    test_assert(note && strstr(note, "1 records after the last checkpoint"));
    free(note);
    dpath = mk_xasprintf("%s.discarded", path);
    lines = read_lines(dpath);
    test_assert_int(lines.n, 2);
    test_assert(lines.n == 2 && strcmp(lines.v[1], "{\"seq\":6,\"time\":\"2026-11-23T10:00:")
                == 0);
    free_lines(&lines);
    test_assert_int(au_log_last_seq(l), 5);
    test_assert_int(au_log_unsigned(l), 1);
    add(l, 6, t0 + 6);
    checkpoint_and_flush(l, t0 + 7);
    au_log_close(l);
    test_assert_int(verify(dir, &s), 0);
    test_assert_int(s.st.last_seq, 7);
    test_end();

    test_begin("crash: zeros after the last line (a file grown before its data)");
    fd = open(path, O_WRONLY | O_APPEND);
    {
        char *zeros = mk_xcalloc(1, 3 * AU_LOG_MAX_LINE);

        test_assert(write(fd, "{\"seq\":8,", 9) == 9);
        test_assert(write(fd, zeros, 3 * AU_LOG_MAX_LINE) == 3 * AU_LOG_MAX_LINE);
        free(zeros);
    }
    close(fd);
    l = open_log(dir);
    test_assert(l != NULL);
    au_log_close(l);
    test_assert_int(verify(dir, &s), 0);
    test_end();

    test_begin("crash: a long unterminated tail is not an interrupted write");
    fd = open(path, O_WRONLY | O_APPEND);
    {
        char *junk = mk_xmalloc(2 * AU_LOG_MAX_LINE);

        memset(junk, 'j', 2 * AU_LOG_MAX_LINE);
        test_assert(write(fd, junk, 2 * AU_LOG_MAX_LINE) == 2 * AU_LOG_MAX_LINE);
        free(junk);
    }
    close(fd);
    l = au_log_open(dir, sign_key, verify_key, &error);
    test_assert(l == NULL);
    test_assert(error && strstr(error, "without a newline"));
    free(error);
    error = NULL;
    test_end();

    test_begin("crash: a damaged record after the last checkpoint is refused with its line");
    lines = read_lines(path);
    lines.torn = false;
    lines.n--;                          /* the junk */
    write_lines(path, &lines);
    lines.n++;
    free_lines(&lines);
    l = open_log(dir);
    add(l, 8, t0 + 8);
    add(l, 9, t0 + 9);
    flush(l);
    au_log_close(l);
    lines = read_lines(path);
    *strstr(lines.v[lines.n - 2], "user8") = 'U';
    write_lines(path, &lines);
    l = au_log_open(dir, sign_key, verify_key, &error);
    test_assert(l == NULL);
    test_assert(error && strstr(error, "2026-11-23.log:8: the record does not match its hash"));
    free(error);
    error = NULL;
    *strstr(lines.v[lines.n - 2], "User8") = 'u';
    write_lines(path, &lines);
    free_lines(&lines);
    test_end();

    test_begin("crash: a head lagging behind the log is written again");
    {
        char *head = mk_xasprintf("%s/head", dir), *old;
        size_t len;

        old = mk_file_read(head, &len, NULL, &error);
        l = open_log(dir);          /* signs 8 and 9: checkpoint 10 */
        test_assert(l != NULL);
        checkpoint_and_flush(l, t0 + 10);
        au_log_close(l);
        fp = fopen(head, "w");      /* the crash between the log's sync and the head's */
        fwrite(old, 1, len, fp);
        fclose(fp);
        l = au_log_open(dir, sign_key, verify_key, &error);
        test_assert(l != NULL);
        note = l ? au_log_take_note(l) : NULL;
        free(note);
        au_log_close(l);
        free(old);
        old = mk_file_read(head, &len, NULL, &error);
        test_assert(old && strncmp(old, "seq=10 ", 7) == 0);
        free(old);
        free(head);
        test_assert_int(verify(dir, &s), 0);
    }
    test_end();
    free(dpath);
    free(path);
    free(dir);
}

static void test_write_failure(void)
{
    char *dir = dir_of("full"), *path = file_of(dir, t0), *error = NULL;
    struct au_log *l = open_log(dir);
    struct rlimit old, small;
    struct lines lines;
    struct seen s;
    struct stat st;
    int rc;

    test_begin("full disk: records stay pending, in order, and are written later");
    for (int i = 1; i <= 3; i++)
        add(l, i, t0 + i);
    checkpoint_and_flush(l, t0 + 4);
    stat(path, &st);
    /* a file size limit stands in for a full disk: the write fails part way */
    signal(SIGXFSZ, SIG_IGN);
    getrlimit(RLIMIT_FSIZE, &old);
    small = old;
    small.rlim_cur = (rlim_t) st.st_size + 300;
    setrlimit(RLIMIT_FSIZE, &small);
    for (int i = 5; i <= 9; i++)
        add(l, i, t0 + i);
    rc = au_log_flush(l, &error);
    test_assert_int(rc, -1);
    test_assert(error && strstr(error, "cannot write"));
    free(error);
    error = NULL;
    test_assert_int(au_log_last_seq(l), 4);
    test_assert_int(au_log_pending_seq(l), 9);
    add(l, 10, t0 + 10);                /* more comes in meanwhile */
    test_assert_int(au_log_flush(l, &error), -1);
    free(error);
    error = NULL;
    setrlimit(RLIMIT_FSIZE, &old);
    test_assert_int(checkpoint_and_flush(l, t0 + 11), 0);
    test_assert_int(au_log_last_seq(l), 11);
    test_assert_int(au_log_pending_bytes(l), 0);
    au_log_close(l);
    lines = read_lines(path);
    test_assert_int(lines.n, 11);       /* the part written at the failure was cut back */
    test_assert(!lines.torn);
    free_lines(&lines);
    test_assert_int(verify(dir, &s), 0);
    test_assert_int(s.st.records, 9);
    test_end();

    test_begin("full disk: a failed rotation leaves the day's records in order");
    l = open_log(dir);
    add(l, 12, t0 + 12);
    add(l, 13, t0 + DAY);             /* checkpoint 13 closes day 1; 14 opens day 2 */
    small.rlim_cur = 10;
    setrlimit(RLIMIT_FSIZE, &small);  /* nothing fits at all */
    test_assert_int(au_log_flush(l, &error), -1);
    free(error);
    error = NULL;
    test_assert_int(au_log_last_seq(l), 11);
    add(l, 15, t0 + DAY + 1);
    setrlimit(RLIMIT_FSIZE, &old);
    test_assert_int(checkpoint_and_flush(l, t0 + DAY + 2), 0);
    test_assert_int(au_log_last_seq(l), 16);
    au_log_close(l);
    test_assert_int(verify(dir, &s), 0);
    test_assert_int(s.st.files, 2);
    signal(SIGXFSZ, SIG_DFL);
    test_end();
    free(path);
    free(dir);
}

static void test_lines(void)
{
    char *path = mk_xasprintf("%s/lines", tmpdir);
    struct mk_lines r;
    struct mk_line ln;
    FILE *fp = fopen(path, "w");
    int fd, n = 0, rc;

    test_begin("lines: long lines are cut and skipped, a torn end comes last");
    fputs("one\n", fp);
    for (int i = 0; i < 3000000; i++)
        fputc('x', fp);
    fputs("\ntwo\nthree", fp);
    fclose(fp);
    fd = open(path, O_RDONLY);
    mk_lines_init(&r, fd, 0, 1000);
    while ((rc = mk_lines_next(&r, &ln)) > 0) {
        n++;
        if (n == 1)
            test_assert(ln.len == 3 && !ln.too_long && ln.number == 1 && ln.offset == 0);
        if (n == 2)
            test_assert(ln.too_long && ln.len == 1001 && ln.number == 2);
        if (n == 3)
            test_assert(ln.len == 3 && memcmp(ln.text, "two", 3) == 0 && ln.number == 3
                        && ln.offset == 3000005);
        if (n == 4)
            test_assert(ln.torn && ln.len == 5);
    }
    test_assert_int(rc, 0);
    test_assert_int(n, 4);
    mk_lines_free(&r);
    close(fd);
    unlink(path);
    free(path);
    test_end();
}

int main(void)
{
    char *error = NULL, *kdir;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/mk-au-log-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    kdir = mk_xasprintf("%s/keys", tmpdir);
    if (au_keys_create(kdir, &error) < 0
        || au_keys_load(kdir, true, &sign_key, &verify_key, &error) < 0) {
        printf("%s\n", error);
        return 2;
    }
    au_log_parse_time("2026-11-23T10:00:00.000000Z", 27, &t0);
    test_times();
    test_parse();
    test_write();
    test_rotation();
    test_damage();
    test_crash();
    test_write_failure();
    test_lines();
    EVP_PKEY_free(sign_key);
    EVP_PKEY_free(verify_key);
    remove_tree(tmpdir);
    free(kdir);
    return test_done();
}
