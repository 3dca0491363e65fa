/*
 * bench-archive - search latency of the archive's index at scale.
 *
 *	bench-archive [MESSAGES [INDEX]]
 *
 * Builds an index of MESSAGES synthetic messages (default 1,000,000;
 * kept in INDEX when given, so a second run only searches) through the
 * same code as ingest (ar_index_add), then times the first page (50
 * hits, newest first) of searches as "mailkeep archive search" runs
 * them: a rare Latin word, a common two-character Chinese word, a rare
 * one, one combined with a date range, against the baseline of fetching
 * a page with no search at all. Each query runs once on an empty page
 * cache ("cold", as root), then 50 times after a warm-up; p50, p95, the
 * worst and the cold run are printed in milliseconds.
 */
#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ar_index.h"
#include "ar_query.h"
#include "mk_util.h"

#define RUNS 50

static uint64_t rng = 88172645463325252ULL;

static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Zipf-like: small indexes far more often than large ones. */
static unsigned skewed(unsigned n)
{
    double u = (double) (next() % 1000000) / 1000000.0;

    return (unsigned) (u * u * u * n) % n;
}

static void put_utf8(char **o, unsigned cp)
{
    char *p = *o;

    if (cp < 0x80) {
        *p++ = (char) cp;
    } else if (cp < 0x800) {
        *p++ = (char) (0xC0 | cp >> 6);
        *p++ = (char) (0x80 | (cp & 0x3F));
    } else {
        *p++ = (char) (0xE0 | cp >> 12);
        *p++ = (char) (0x80 | ((cp >> 6) & 0x3F));
        *p++ = (char) (0x80 | (cp & 0x3F));
    }
    *o = p;
}

/* About len bytes of mixed English-like and Chinese text. */
static void synth(char *buf, size_t len)
{
    char *o = buf, *end = buf + len - 64;

    while (o < end) {
        if (next() % 3 == 0) {          /* a run of Chinese: 3,000 common ideographs */
            unsigned run = 2 + (unsigned) (next() % 10);

            for (unsigned i = 0; i < run; i++)
                put_utf8(&o, 0x4E00 + skewed(3000));
            put_utf8(&o, 0xFF0C);       /* ， */
        } else {                        /* a word of 20,000 */
            unsigned w = skewed(20000), wl = 3 + w % 7;

            for (unsigned i = 0; i < wl; i++)
                *o++ = (char) ('a' + (w * 7 + i * 13) % 26);
            *o++ = ' ';
        }
    }
    *o = '\0';
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void build(const char *path, long n)
{
    char *error = NULL, body[2048], subject[96];
    struct ar_index *ix = ar_index_open(path, true, &error);
    int64_t start = (int64_t) time(NULL) - 2 * 365 * 86400;
    double t0 = now_ms();

    if (ix == NULL) {
        fprintf(stderr, "bench-archive: %s\n", error);
        exit(1);
    }
    for (long i = 0; i < n; i++) {
        struct ar_envelope env = {0};
        struct ar_doc doc = {0};
        struct ar_index_entry e = {0};
        char sender[64], rcpt[64], spool[64];
        char *rcpts[1] = {rcpt}, *dirs[1] = {"inbound"};

        if (i % 10000 == 0 && (i == 0 || ar_index_commit(ix, &error) == 0))
            if (ar_index_begin(ix, &error) < 0)
                break;
        synth(body, sizeof(body));
        if (i % 20 == 3)
            memcpy(body + 40, "個資", 6);                /* 5%: a common word */
        if (i % 50000 == 11)
            memcpy(body + 100, "鬱蒸", 6);               /* 20 in a million */
        if (i % 100000 == 7)
            memcpy(body + 200, " quasarflux ", 12);      /* 10 in a million */
        synth(subject, sizeof(subject));
        snprintf(sender, sizeof(sender), "user%ld@example%ld.com", i % 5000, i % 97);
        snprintf(rcpt, sizeof(rcpt), "staff%ld@example.com", i % 800);
        snprintf(spool, sizeof(spool), "%ld.bench", i);
        env.time = start + i * (2 * 365 * 86400 / n);
        env.sender = sender;
        env.rcpts = rcpts;
        env.directions = dirs;
        env.nrcpts = 1;
        env.source = "journal";
        doc.subject = subject;
        doc.from_hdr = sender;
        doc.to_hdr = rcpt;
        doc.body = body;
        doc.body_len = strlen(body);
        doc.attachment = "";
        e.seq = (uint64_t) i + 1;
        e.time = env.time;
        e.size = 20000;
        e.env = &env;
        e.spool_id = spool;
        memcpy(e.object, &i, sizeof(i));
        if (ar_index_add(ix, &e, &doc, NULL, &error) < 0) {
            fprintf(stderr, "bench-archive: %s\n", error);
            exit(1);
        }
    }
    if (ar_index_commit(ix, &error) < 0) {
        fprintf(stderr, "bench-archive: %s\n", error);
        exit(1);
    }
    /* no 'optimize': searches run on the index as ingest leaves it */
    ar_index_close(ix);
    printf("index built: %ld messages in %.1f s (%.0f messages/s)\n", n,
           (now_ms() - t0) / 1000.0, n / ((now_ms() - t0) / 1000.0));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}

/* One page of a query as the search command runs it, rows fetched. */
static int page(struct ar_index *ix, const char *query)
{
    sqlite3 *db = ar_index_db(ix);
    struct ar_query *q;
    struct ar_sql sql;
    sqlite3_stmt *st;
    char *error = NULL;
    int at, hits = 0;

    if (query == NULL) {
        if (sqlite3_prepare_v2(db, "SELECT id FROM messages WHERE hidden = 0 ORDER BY id DESC "
                               "LIMIT 50", -1, &st, NULL) != SQLITE_OK)
            return -1;
        memset(&sql, 0, sizeof(sql));
    } else {
        if ((q = ar_query_parse(query, &error)) == NULL
            || ar_query_compile(q, 28800, NULL, &sql, &error) < 0) {
            fprintf(stderr, "bench-archive: %s\n", error);
            exit(1);
        }
        ar_query_free(q);
        if (sqlite3_prepare_v2(db, sql.sql, -1, &st, NULL) != SQLITE_OK
            || (at = ar_sql_bind(st, &sql, 1)) < 0)
            return -1;
        sqlite3_bind_int(st, at, 50);
        sqlite3_bind_int(st, at + 1, 0);
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct ar_index_row row;

        if (ar_index_get(ix, sqlite3_column_int64(st, 0), &row, &error) > 0)
            ar_index_row_free(&row);
        hits++;
    }
    sqlite3_finalize(st);
    ar_sql_free(&sql);
    return hits;
}

/* Empty the page cache (as root), so that a first search reads from disk. */
static bool drop_caches(void)
{
    FILE *f;

    sync();
    if ((f = fopen("/proc/sys/vm/drop_caches", "w")) == NULL)
        return false;
    fputs("3\n", f);
    return fclose(f) == 0;
}

static void measure(struct ar_index *ix, const char *label, const char *query)
{
    double ms[RUNS], cold = -1, start;
    int hits;

    if (drop_caches()) {
        start = now_ms();
        page(ix, query);
        cold = now_ms() - start;
    }
    hits = page(ix, query);             /* warm-up */

    for (int r = 0; r < RUNS; r++) {
        double t0 = now_ms();

        page(ix, query);
        ms[r] = now_ms() - t0;
    }
    qsort(ms, RUNS, sizeof(double), cmp_double);
    printf("  %-36s %3d hits  p50 %6.2f ms  p95 %6.2f ms  max %6.2f ms  cold %7.2f ms\n",
           label, hits, ms[RUNS / 2], ms[RUNS * 95 / 100], ms[RUNS - 1], cold);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    char tmp[] = "/var/tmp/bench-archive.XXXXXX", *path, *error = NULL;
    struct ar_index *ix;
    struct stat st;
    bool keep = argc > 2;

    if (n < 1000) {
        fprintf(stderr, "usage: bench-archive [MESSAGES (>= 1000) [INDEX]]\n");
        return 64;
    }
    if (keep) {
        path = mk_xstrdup(argv[2]);
    } else {
        if (mkdtemp(tmp) == NULL)
            return 1;
        path = mk_xasprintf("%s/index.sqlite", tmp);
    }
    if (stat(path, &st) < 0)
        build(path, n);
    if ((ix = ar_index_open(path, false, &error)) == NULL) {
        fprintf(stderr, "bench-archive: %s\n", error);
        return 1;
    }
    if (stat(path, &st) == 0)
        printf("index: %.0f MB for %ld messages (%.0f bytes each)\n", st.st_size / 1e6, n,
               (double) st.st_size / n);
    printf("first page (50), newest first, %d runs each:\n", RUNS);
    measure(ix, "baseline: a page, no search", NULL);
    measure(ix, "rare word (10 hits)", "quasarflux");
    measure(ix, "common Chinese word 個資 (5%)", "個資");
    measure(ix, "rare Chinese word 鬱蒸 (20 hits)", "鬱蒸");
    measure(ix, "個資 in one month", "個資 date:2026-03");
    measure(ix, "from: and a Chinese word (no hits)", "from:user42@example42.com 個資");
    ar_index_close(ix);
    if (!keep) {
        char *cmd = mk_xasprintf("rm -rf %s", tmp);

        if (system(cmd) != 0)
            fprintf(stderr, "bench-archive: cannot remove %s\n", tmp);
        free(cmd);
    }
    free(path);
    return 0;
}
