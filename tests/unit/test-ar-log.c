/* Unit tests for ar_log: the archive's tamper-evident log. */
#include "config.h"

#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ar_keys.h"
#include "ar_log.h"
#include "ar_store.h"
#include "mk_test.h"
#include "mk_util.h"

static char tmpdir[64];
static struct ar_keys keys;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove(path);
}

static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
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
    for (p = text; *p; ) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t) (nl - p) : strlen(p);

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
}

static void copy_file(const char *from, const char *to)
{
    char *error = NULL, *text;
    size_t len;
    FILE *fp;

    if ((text = mk_file_read(from, &len, NULL, &error)) == NULL) {
        free(error);
        unlink(to);
        return;
    }
    fp = fopen(to, "w");
    fwrite(text, 1, len, fp);
    fclose(fp);
    free(text);
}

/* Replace a line's hash (and prev) so that its fields give it: what an attacker can do. */
static void rehash(char **line, const unsigned char prev[32], unsigned char out[32])
{
    char *p = strstr(*line, " prev="), *rest = p + 6 + 64 + 6 + 64, prev_hex[65], hash_hex[65];
    unsigned char buf[1100];
    size_t tlen = (size_t) (p - *line);
    char *fixed;

    ar_hex(prev, prev_hex);             /* prev and out may be the same */
    memcpy(buf, prev, 32);
    memcpy(buf + 32, *line, tlen);
    ar_sha256(buf, 32 + tlen, out);
    ar_hex(out, hash_hex);
    fixed = mk_xasprintf("%.*s prev=%s hash=%s%s", (int) tlen, *line, prev_hex, hash_hex, rest);
    free(*line);
    *line = fixed;
}

/* Re-hash every line from index from on, chaining from the line before. */
static void rehash_from(struct lines *l, size_t from)
{
    unsigned char prev[32] = {0};

    if (from > 0) {
        char hex[65];

        memcpy(hex, strstr(l->v[from - 1], " hash=") + 6, 64);
        hex[64] = '\0';
        ar_unhex(hex, prev);
    }
    for (size_t i = from; i < l->n; i++)
        rehash(&l->v[i], prev, prev);
}

struct seen {
    int problems[8];
    int total;
    int entries;
    uint64_t first_seq[8];
    char last_detail[512];
};

static void on_problem(void *arg, const struct ar_log_problem *p)
{
    struct seen *s = arg;

    if (s->problems[p->kind]++ == 0)
        s->first_seq[p->kind] = p->seq;
    s->total++;
    snprintf(s->last_detail, sizeof(s->last_detail), "%s", p->detail);
    if (getenv("TEST_VERBOSE"))
        printf("    problem: %s seq %" PRIu64 " line %" PRIu64 ": %s\n",
               ar_log_problem_name(p->kind), p->seq, p->line, p->detail);
}

static int on_entry(void *arg, const struct ar_log_entry *e)
{
    (void) e;
    ((struct seen *) arg)->entries++;
    return 0;
}

static int verify(const char *path, struct seen *s)
{
    char *error = NULL;
    int rc;

    memset(s, 0, sizeof(*s));
    rc = ar_log_verify(path, keys.verify, on_problem, on_entry, s, &error);
    if (rc < 0) {
        printf("    verify: %s\n", error);
        free(error);
    }
    return rc;
}

static void hash_of(int i, unsigned char h[32])
{
    char text[32];

    snprintf(text, sizeof(text), "object %d", i);
    ar_sha256(text, strlen(text), h);
}

/* Append n ingest entries numbered from first, and commit. */
static int add_batch(struct ar_log *l, int first, int n)
{
    char *error = NULL, spool[64];
    unsigned char o[32], e[32];
    uint64_t seq;

    for (int i = first; i < first + n; i++) {
        hash_of(i, o);
        hash_of(-i, e);
        snprintf(spool, sizeof(spool), "host.1700000000.%06d.42.%d", i, i);
        if (ar_log_append_ingest(l, o, e, spool, 1700000000 + i, &seq, &error) < 0) {
            printf("    %s\n", error);
            free(error);
            return -1;
        }
    }
    if (ar_log_commit(l, &error) < 0) {
        printf("    %s\n", error);
        free(error);
        return -1;
    }
    return 0;
}

struct collected {
    uint64_t seqs[16];
    int n;
    bool in_order;
    int kinds[3];
};

static int collect(void *arg, const struct ar_log_entry *e)
{
    struct collected *c = arg;

    if (c->n > 0 && e->seq != c->seqs[(c->n - 1) % 16] + 1)
        c->in_order = false;
    c->seqs[c->n++ % 16] = e->seq;
    c->kinds[e->kind]++;
    return 0;
}

static char *log_path;                  /* the good log, tmpdir/log */
static char *bad_path;                  /* a copy to damage, tmpdir/bad/log */

/* Copy the good log and head to bad_path, for damaging. */
static struct lines bad_copy(void)
{
    char *from = mk_xasprintf("%s.head", log_path), *to = mk_xasprintf("%s.head", bad_path);

    copy_file(log_path, bad_path);
    copy_file(from, to);
    free(from);
    free(to);
    return read_lines(bad_path);
}

static void test_write(void)
{
    char *error = NULL, *note;
    struct ar_log *l;
    struct seen s;
    struct lines lines;
    unsigned char o[32];
    uint64_t seq;
    struct stat st;

    test_begin("log: append and commit");
    l = ar_log_open(log_path, &keys, &error);
    test_assert(l != NULL);
    test_assert_int(ar_log_last_seq(l), 0);
    test_assert_int(add_batch(l, 1, 3), 0);
    hash_of(2, o);
    test_assert_int(ar_log_append_tombstone(l, o, 1700000100, &seq, &error), 0);
    test_assert_int(seq, 5);
    test_assert_int(ar_log_last_seq(l), 4);   /* not committed yet */
    test_assert_int(ar_log_commit(l, &error), 0);
    test_assert_int(ar_log_last_seq(l), 6);
    test_assert_int(ar_log_commit(l, &error), 0);     /* nothing to commit */
    test_assert_int(ar_log_last_seq(l), 6);
    lines = read_lines(log_path);
    test_assert_int(lines.n, 6);
    test_assert(lines.n == 6 && strncmp(lines.v[0], "seq=1 time=1700000001 kind=ingest object=",
                                        41) == 0);
    test_assert(lines.n == 6 && strstr(lines.v[0], " spool=host.1700000000.000001.42.1 prev="
                                       "0000000000000000000000000000000000000000000000000000"
                                       "000000000000 hash="));
    test_assert(lines.n == 6 && strncmp(lines.v[4], "seq=5 time=1700000100 kind=tombstone "
                                        "object=", 44) == 0);
    test_assert(lines.n == 6 && strstr(lines.v[5], " kind=checkpoint prev=")
                && strstr(lines.v[5], " sig="));
    free_lines(&lines);
    test_assert(stat(log_path, &st) == 0 && (st.st_mode & 0777) == 0600);
    test_assert_int(verify(log_path, &s), 0);
    test_assert_int(s.entries, 4);
    test_end();

    test_begin("log: one writer at a time");
    test_assert(ar_log_open(log_path, &keys, &error) == NULL);
    test_assert(error && strstr(error, "in use by another writer"));
    free(error);
    test_end();

    test_begin("log: bad spool IDs and times are refused");
    test_assert_int(ar_log_append_ingest(l, o, o, "has space", 1, &seq, &error), -1);
    test_assert(error && strstr(error, "spool ID"));
    free(error);
    test_assert_int(ar_log_append_ingest(l, o, o, "", 1, &seq, &error), -1);
    free(error);
    {
        char id[202];

        memset(id, 'a', 201);
        id[201] = '\0';
        test_assert_int(ar_log_append_ingest(l, o, o, id, 1, &seq, &error), -1);
        free(error);
        test_assert(!ar_log_spool_id_valid(id));
        id[200] = '\0';
        test_assert(ar_log_spool_id_valid(id));
        test_assert(!ar_log_spool_id_valid("tab\there"));
        test_assert(!ar_log_spool_id_valid("caf\xc3\xa9"));
    }
    test_assert_int(ar_log_append_tombstone(l, o, -1, &seq, &error), -1);
    free(error);
    test_end();
    ar_log_close(l);

    test_begin("log: reopening continues the seq and the chain");
    l = ar_log_open(log_path, &keys, &error);
    test_assert(l != NULL);
    note = l ? ar_log_take_note(l) : NULL;
    test_assert(note == NULL);
    free(note);
    test_assert_int(ar_log_last_seq(l), 6);
    test_assert_int(add_batch(l, 4, 2), 0);
    test_assert_int(ar_log_last_seq(l), 9);
    test_assert_int(add_batch(l, 6, 3), 0);
    test_assert_int(ar_log_last_seq(l), 13);
    ar_log_close(l);
    test_assert_int(verify(log_path, &s), 0);
    test_assert_int(s.entries, 9);
    test_end();

    test_begin("log: uncommitted entries are dropped at close");
    l = ar_log_open(log_path, &keys, &error);
    test_assert_int(ar_log_append_tombstone(l, o, 1, &seq, &error), 0);
    test_assert_int(seq, 14);
    ar_log_close(l);
    l = ar_log_open(log_path, &keys, &error);
    test_assert_int(ar_log_last_seq(l), 13);
    ar_log_close(l);
    test_end();
}

static void test_read(void)
{
    struct collected c;
    char *error = NULL;

    test_begin("log: read from the start and from a seq");
    memset(&c, 0, sizeof(c));
    c.in_order = true;
    test_assert_int(ar_log_read(log_path, 0, collect, &c, &error), 0);
    test_assert_int(c.n, 13);
    test_assert(c.in_order && c.seqs[0] == 1);
    test_assert_int(c.kinds[AR_LOG_INGEST], 8);
    test_assert_int(c.kinds[AR_LOG_TOMBSTONE], 1);
    test_assert_int(c.kinds[AR_LOG_CHECKPOINT], 4);
    memset(&c, 0, sizeof(c));
    c.in_order = true;
    test_assert_int(ar_log_read(log_path, 9, collect, &c, &error), 0);
    test_assert_int(c.n, 4);
    test_assert(c.in_order && c.seqs[0] == 10 && c.seqs[3] == 13);
    memset(&c, 0, sizeof(c));
    test_assert_int(ar_log_read(log_path, 13, collect, &c, &error), 0);
    test_assert_int(c.n, 0);
    test_end();
}

static void add_unsigned(const char *path, int n, bool torn);

static int stop_at_3(void *arg, const struct ar_log_entry *e)
{
    (void) arg;
    return e->seq == 3 ? 5 : 0;
}

static void test_read_large(void)
{
    char *path = mk_xasprintf("%s/large/log", tmpdir), *dir = mk_xasprintf("%s/large", tmpdir);
    char *error = NULL, *note;
    struct collected c;
    struct ar_log *l;
    int ok = 0;

    test_begin("log: read seeks into a large log");
    mkdir(dir, 0700);
    l = ar_log_open(path, &keys, &error);
    for (int b = 0; b < 50; b++)
        ok += add_batch(l, b * 100, 100) == 0;
    test_assert_int(ok, 50);
    test_assert_int(ar_log_last_seq(l), 5050);
    ar_log_close(l);
    for (uint64_t after = 0; after <= 5050; after += after < 10 ? 1 : 977) {
        memset(&c, 0, sizeof(c));
        c.in_order = true;
        test_assert_int(ar_log_read(path, after, collect, &c, &error), 0);
        test_assert_int(c.n, 5050 - after);
        test_assert(c.in_order);
        test_assert(c.n == 0 || c.seqs[(c.n - 1) % 16] == 5050);
    }
    memset(&c, 0, sizeof(c));
    test_assert_int(ar_log_read(path, 5049, collect, &c, &error), 0);
    test_assert(c.n == 1 && c.seqs[0] == 5050 && c.kinds[AR_LOG_CHECKPOINT] == 1);
    test_assert_int(ar_log_read(path, 0, stop_at_3, NULL, &error), 5);
    test_end();

    test_begin("open: finds the last checkpoint behind a long unsigned tail");
    add_unsigned(path, 400, true);      /* about 100 KB: more than one block back */
    l = ar_log_open(path, &keys, &error);
    test_assert(l != NULL && ar_log_last_seq(l) == 5050);
    note = l ? ar_log_take_note(l) : NULL;
    test_assert(note && strstr(note, "cut off 400 uncommitted entries and a torn last line"));
    free(note);
    ar_log_close(l);
    test_end();
    free(path);
    free(dir);
}

static void test_damage(void)
{
    char *error = NULL;
    struct lines lines;
    struct seen s;

    /* The good log: ingests 1-3, tombstone 5, ingests 7-8 and 10-12; checkpoints 4, 6, 9, 13. */
    test_begin("verify: a modified field");
    lines = bad_copy();
    *strstr(lines.v[1], " spool=") = '\0';
    {
        char *line = mk_xasprintf("%s spool=forged.id%s", lines.v[1],
                                  strstr(lines.v[1] + strlen(lines.v[1]) + 1, " prev="));
        free(lines.v[1]);
        lines.v[1] = line;
    }
    write_lines(bad_path, &lines);
    test_assert_int(verify(bad_path, &s), 1);
    test_assert_int(s.problems[AR_LOG_MODIFIED], 1);
    test_assert_int(s.first_seq[AR_LOG_MODIFIED], 2);
    free_lines(&lines);
    test_end();

    test_begin("verify: a deleted line");
    lines = bad_copy();
    free(lines.v[2]);
    memmove(lines.v + 2, lines.v + 3, (lines.n - 3) * sizeof(*lines.v));
    lines.n--;
    write_lines(bad_path, &lines);
    test_assert_int(verify(bad_path, &s), 1);
    test_assert_int(s.problems[AR_LOG_MISSING], 1);
    test_assert_int(s.first_seq[AR_LOG_MISSING], 3);
    free_lines(&lines);
    test_end();

    test_begin("verify: a duplicated line");
    lines = bad_copy();
    lines.v = mk_xrealloc(lines.v, (lines.n + 1) * sizeof(*lines.v));
    memmove(lines.v + 3, lines.v + 2, (lines.n - 2) * sizeof(*lines.v));
    lines.v[2] = mk_xstrdup(lines.v[3]);
    lines.n++;
    write_lines(bad_path, &lines);
    test_assert_int(verify(bad_path, &s), 1);
    test_assert_int(s.problems[AR_LOG_ADDED], 1);
    test_assert_int(s.first_seq[AR_LOG_ADDED], 3);
    test_assert_int(s.entries, 9);
    free_lines(&lines);
    test_end();

    test_begin("verify: an inserted entry");
    lines = bad_copy();
    lines.v = mk_xrealloc(lines.v, (lines.n + 1) * sizeof(*lines.v));
    memmove(lines.v + 4, lines.v + 3, (lines.n - 3) * sizeof(*lines.v));
    lines.v[3] = mk_xasprintf("seq=3 time=1 kind=tombstone object=%064d prev=%064d hash=%064d",
                              0, 0, 0);
    lines.n++;
    {
        unsigned char prev[32], h[32];
        char hex[65];

        memcpy(hex, strstr(lines.v[2], " hash=") + 6, 64);
        hex[64] = '\0';
        ar_unhex(hex, prev);
        rehash(&lines.v[3], prev, h);   /* well-formed and hashed, but seq 3 again */
    }
    write_lines(bad_path, &lines);
    test_assert(verify(bad_path, &s) >= 1);
    test_assert_int(s.problems[AR_LOG_ADDED], 1);
    free_lines(&lines);
    test_end();

    test_begin("verify: two lines swapped");
    lines = bad_copy();
    {
        char *t = lines.v[1];

        lines.v[1] = lines.v[2];
        lines.v[2] = t;
    }
    write_lines(bad_path, &lines);
    test_assert_int(verify(bad_path, &s), 1);
    test_assert_int(s.problems[AR_LOG_REORDERED], 1);
    test_assert_int(s.entries, 9);
    free_lines(&lines);
    test_end();

    test_begin("verify: a log cut back to an earlier checkpoint");
    lines = bad_copy();
    for (size_t i = 9; i < lines.n; i++)
        free(lines.v[i]);
    lines.n = 9;                        /* ends with checkpoint 9; the head names 13 */
    write_lines(bad_path, &lines);
    test_assert_int(verify(bad_path, &s), 1);
    test_assert_int(s.problems[AR_LOG_TRUNCATED], 1);
    test_assert_int(s.first_seq[AR_LOG_TRUNCATED], 13);
    test_assert(ar_log_open(bad_path, &keys, &error) == NULL);
    test_assert(error && strstr(error, "cut short"));
    free(error);
    free_lines(&lines);
    test_end();

    test_begin("verify: a missing head");
    lines = bad_copy();
    {
        char *head = mk_xasprintf("%s.head", bad_path);

        unlink(head);
        test_assert_int(verify(bad_path, &s), 1);
        test_assert_int(s.problems[AR_LOG_TRUNCATED], 1);
        free(head);
    }
    free_lines(&lines);
    test_end();

    test_begin("verify: an edit with the chain re-hashed fails the signatures");
    lines = bad_copy();
    {
        char *p = strstr(lines.v[1], " spool=") + 7;

        p[0] = p[0] == 'x' ? 'y' : 'x';
    }
    rehash_from(&lines, 1);
    write_lines(bad_path, &lines);
    test_assert(verify(bad_path, &s) >= 1);
    test_assert_int(s.problems[AR_LOG_MODIFIED], 0);
    test_assert_int(s.problems[AR_LOG_BAD_SIGNATURE], 4);
    test_assert_int(s.first_seq[AR_LOG_BAD_SIGNATURE], 4);
    test_assert(ar_log_open(bad_path, &keys, &error) == NULL);
    test_assert(error && strstr(error, "signature of checkpoint 13 does not verify"));
    free(error);
    free_lines(&lines);
    test_end();

    test_begin("verify: a bad signature");
    lines = bad_copy();
    {
        char *p = strstr(lines.v[8], " sig=") + 5 + 10;

        *p = *p == '0' ? '1' : '0';
    }
    write_lines(bad_path, &lines);
    test_assert_int(verify(bad_path, &s), 1);
    test_assert_int(s.problems[AR_LOG_BAD_SIGNATURE], 1);
    test_assert_int(s.first_seq[AR_LOG_BAD_SIGNATURE], 9);
    free_lines(&lines);
    test_end();

    test_begin("verify: another key");
    {
        char *dir = mk_xasprintf("%s/otherkeys", tmpdir);
        struct ar_keys other;

        lines = bad_copy();
        free_lines(&lines);
        ar_keys_create(dir, &error);
        ar_keys_load(dir, &other, false, &error);
        memset(&s, 0, sizeof(s));
        test_assert_int(ar_log_verify(bad_path, other.verify, on_problem, NULL, &s, &error), 5);
        test_assert_int(s.problems[AR_LOG_BAD_SIGNATURE], 5);    /* 4 checkpoints + head */
        ar_keys_free(&other);
        free(dir);
    }
    test_end();

    test_begin("verify: a malformed line");
    lines = bad_copy();
    lines.v[3][10] = '\0';
    write_lines(bad_path, &lines);
    test_assert(verify(bad_path, &s) >= 1);
    test_assert_int(s.problems[AR_LOG_MODIFIED], 1);
    test_assert_int(s.first_seq[AR_LOG_MODIFIED], 4);
    test_assert_int(s.total, 1);
    free_lines(&lines);
    test_end();
}

/* Write entries after the last checkpoint by hand, as a crash mid-commit leaves them. */
static void add_unsigned(const char *path, int n, bool torn)
{
    struct lines lines = read_lines(path);
    unsigned char prev[32];
    char hex[65];
    uint64_t seq = lines.n;

    memcpy(hex, strstr(lines.v[lines.n - 1], " hash=") + 6, 64);
    hex[64] = '\0';
    ar_unhex(hex, prev);
    lines.v = mk_xrealloc(lines.v, (lines.n + (size_t) n + 1) * sizeof(*lines.v));
    for (int i = 0; i < n; i++) {
        lines.v[lines.n] = mk_xasprintf("seq=%" PRIu64 " time=5 kind=tombstone object=%064d "
                                        "prev=%064d hash=%064d", ++seq, i, 0, 0);
        rehash(&lines.v[lines.n], prev, prev);
        lines.n++;
    }
    if (torn) {
        lines.v[lines.n++] = mk_xasprintf("seq=%" PRIu64 " time=5 kind=tombstone obj", ++seq);
        lines.torn = true;
    }
    write_lines(path, &lines);
    free_lines(&lines);
}

static void test_crash(void)
{
    char *error = NULL, *note, *discarded = mk_xasprintf("%s.discarded", bad_path);
    struct lines lines;
    struct ar_log *l;
    struct seen s;
    struct stat st;

    test_begin("verify: an unsigned tail");
    lines = bad_copy();
    free_lines(&lines);
    add_unsigned(bad_path, 2, false);
    test_assert_int(verify(bad_path, &s), 1);
    test_assert_int(s.problems[AR_LOG_UNSIGNED_TAIL], 1);
    test_assert_int(s.first_seq[AR_LOG_UNSIGNED_TAIL], 14);
    test_assert_int(s.entries, 11);
    test_end();

    test_begin("open: the unsigned tail is cut off and kept");
    unlink(discarded);
    l = ar_log_open(bad_path, &keys, &error);
    test_assert(l != NULL);
    note = l ? ar_log_take_note(l) : NULL;
    test_assert(note && strstr(note, "cut off 2 uncommitted entries") && strstr(note, discarded));
    free(note);
    test_assert(l && ar_log_last_seq(l) == 13);
    test_assert(l && add_batch(l, 100, 1) == 0 && ar_log_last_seq(l) == 15);
    ar_log_close(l);
    test_assert_int(verify(bad_path, &s), 0);
    lines = read_lines(discarded);
    test_assert_int(lines.n, 3);
    test_assert(lines.n == 3 && lines.v[0][0] == '#' && strncmp(lines.v[1], "seq=14 ", 7) == 0);
    free_lines(&lines);
    test_end();

    test_begin("open: a torn last line is cut off");
    lines = bad_copy();
    free_lines(&lines);
    add_unsigned(bad_path, 0, true);
    test_assert_int(verify(bad_path, &s), 1);
    test_assert_int(s.problems[AR_LOG_UNSIGNED_TAIL], 1);
    l = ar_log_open(bad_path, &keys, &error);
    test_assert(l != NULL);
    note = l ? ar_log_take_note(l) : NULL;
    test_assert(note && strstr(note, "torn last line"));
    free(note);
    ar_log_close(l);
    test_assert(stat(bad_path, &st) == 0);
    lines = read_lines(bad_path);
    test_assert(!lines.torn && lines.n == 13);
    free_lines(&lines);
    test_assert_int(verify(bad_path, &s), 0);
    test_end();

    test_begin("open: entries and a torn line after a crash mid-commit");
    lines = bad_copy();
    free_lines(&lines);
    add_unsigned(bad_path, 3, true);
    l = ar_log_open(bad_path, &keys, &error);
    test_assert(l != NULL && ar_log_last_seq(l) == 13);
    note = l ? ar_log_take_note(l) : NULL;
    test_assert(note && strstr(note, "3 uncommitted entries and a torn last line"));
    free(note);
    ar_log_close(l);
    test_assert_int(verify(bad_path, &s), 0);
    test_end();

    test_begin("open: a malformed line after the last checkpoint is refused");
    lines = bad_copy();
    lines.v = mk_xrealloc(lines.v, (lines.n + 1) * sizeof(*lines.v));
    lines.v[lines.n++] = mk_xstrdup("seq=14 garbage");
    write_lines(bad_path, &lines);
    free_lines(&lines);
    test_assert(ar_log_open(bad_path, &keys, &error) == NULL);
    test_assert(error && strstr(error, "/bad/log:14: after the last checkpoint"));
    free(error);
    test_end();

    test_begin("open: a lagging or missing head is brought up to date");
    lines = bad_copy();
    free_lines(&lines);
    {
        char *head = mk_xasprintf("%s.head", bad_path);
        struct lines h;
        FILE *fp;

        unlink(head);
        l = ar_log_open(bad_path, &keys, &error);
        note = l ? ar_log_take_note(l) : NULL;
        test_assert(note && strstr(note, "missing"));
        free(note);
        ar_log_close(l);
        h = read_lines(head);
        test_assert(h.n == 1 && strncmp(h.v[0], "seq=13 hash=", 12) == 0);
        free_lines(&h);
        test_assert_int(verify(bad_path, &s), 0);

        lines = read_lines(bad_path);   /* a head left at checkpoint 9 */
        fp = fopen(head, "w");
        fprintf(fp, "seq=9 hash=%.64s sig=%s\n", strstr(lines.v[8], " hash=") + 6,
                strstr(lines.v[8], " sig=") + 5);
        fclose(fp);
        free_lines(&lines);
        test_assert_int(verify(bad_path, &s), 0);
        l = ar_log_open(bad_path, &keys, &error);
        test_assert(l != NULL);
        ar_log_close(l);
        h = read_lines(head);
        test_assert(h.n == 1 && strncmp(h.v[0], "seq=13 hash=", 12) == 0);
        free_lines(&h);
        free(head);
    }
    test_end();
    free(discarded);
}

static void test_read_damaged(void)
{
    struct lines lines = bad_copy();
    char *error = NULL;
    struct collected c;

    test_begin("read: a changed entry stops the read with its line");
    *strstr(lines.v[6], "time=") = 'T';
    write_lines(bad_path, &lines);
    memset(&c, 0, sizeof(c));
    test_assert_int(ar_log_read(bad_path, 0, collect, &c, &error), -1);
    test_assert(error && strstr(error, "/bad/log:7: "));
    free(error);
    test_assert_int(c.n, 6);
    free_lines(&lines);
    test_end();
}

int main(void)
{
    char *error = NULL, *kdir, *bdir;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/mk-ar-log-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    kdir = mk_xasprintf("%s/keys", tmpdir);
    bdir = mk_xasprintf("%s/bad", tmpdir);
    if (ar_keys_create(kdir, &error) < 0 || ar_keys_load(kdir, &keys, true, &error) < 0) {
        printf("%s\n", error);
        return 2;
    }
    mkdir(bdir, 0700);
    log_path = mk_xasprintf("%s/log", tmpdir);
    bad_path = mk_xasprintf("%s/log", bdir);
    test_write();
    test_read();
    test_read_large();
    test_damage();
    test_crash();
    test_read_damaged();
    ar_keys_free(&keys);
    remove_tree(tmpdir);
    free(kdir);
    free(bdir);
    free(log_path);
    free(bad_path);
    return test_done();
}
