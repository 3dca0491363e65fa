/*
 * mailkeep archive - the compliance archive's command. See mailkeep(8).
 *
 * init, ingest [-w], search, show, verify, export, import, reindex: each
 * a thin layer over ar_archive and its modules, which know nothing of
 * the command line.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "ar_archive.h"
#include "ar_export.h"
#include "ar_import.h"
#include "ar_query.h"
#include "ar_spool.h"
#include "mailkeep.h"
#include "mk_config.h"
#include "mk_log.h"
#include "mk_run.h"
#include "mk_util.h"

struct mka_ctx {
    struct ar_archive_paths paths;
    struct mk_config *cfg;
};

static const char mka_usage[] =
    "usage: mailkeep archive init\n"
    "       mailkeep archive ingest [-w] [-q]\n"
    "       mailkeep archive search [-n COUNT] [-p PAGE] QUERY...\n"
    "       mailkeep archive show [-e] ID\n"
    "       mailkeep archive verify [ID]\n"
    "       mailkeep archive export -f eml|mbox|iso -o PATH QUERY...\n"
    "       mailkeep archive export -u USER [-m MAILBOX] QUERY...\n"
    "       mailkeep archive import PATH...\n"
    "       mailkeep archive reindex\n";

static void mka_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void mka_err(const char *fmt, ...)
{
    va_list ap;

    fputs("mailkeep archive: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ------------------------------------------------------------- progress */

struct mka_bar {
    const char *what;
    time_t last;
};

static void mka_bar_update(void *arg, size_t done, size_t total)
{
    struct mka_bar *b = arg;
    time_t now = time(NULL);
    int width = 30, filled;

    if (done < total && now == b->last)
        return;
    b->last = now;
    filled = total ? (int) ((double) done / (double) total * width) : width;
    fprintf(stderr, "\r%s [%.*s%*s] %zu/%zu", b->what, filled,
            "##############################", width - filled, "", done, total);
    if (done >= total)
        fputc('\n', stderr);
    fflush(stderr);
}

/* A progress bar when standard error is a terminal, nothing otherwise. */
static const struct ar_progress *mka_progress(struct ar_progress *p, struct mka_bar *b,
                                              const char *what)
{
    if (!isatty(STDERR_FILENO))
        return NULL;
    b->what = what;
    b->last = 0;
    p->update = mka_bar_update;
    p->arg = b;
    return p;
}

/* --------------------------------------------------------------- common */

static struct ar_archive *mka_open(const struct mka_ctx *x, bool writer)
{
    char *error = NULL, *note;
    struct ar_archive *a = ar_archive_open(&x->paths, writer, &error);

    if (a == NULL) {
        mka_err("%s", error);
        free(error);
        return NULL;
    }
    if ((note = ar_archive_take_note(a)) != NULL) {
        mk_log(MK_LOG_WARNING, NULL, "archive: %s", note);
        free(note);
    }
    return a;
}

static long mka_utc_offset(void)
{
    time_t now = time(NULL);
    struct tm tm;

    localtime_r(&now, &tm);
    return tm.tm_gmtoff;
}

static char *mka_join(int argc, char **argv)
{
    char *q = mk_xstrdup("");

    for (int i = 0; i < argc; i++) {
        char *next = mk_xasprintf("%s%s%s", q, i ? " " : "", argv[i]);

        free(q);
        q = next;
    }
    return q;
}

/* The ids a query matches, newest first: limit 0 is all of them. */
static int mka_query(struct ar_archive *a, const char *text, size_t limit, size_t offset,
                     int64_t **ids, size_t *n)
{
    struct ar_query *q;
    struct ar_sql sql;
    sqlite3_stmt *st;
    sqlite3 *db = ar_index_db(ar_archive_index(a));
    char *error = NULL;
    int at, rc;

    *ids = NULL;
    *n = 0;
    if ((q = ar_query_parse(text, &error)) == NULL
        || ar_query_compile(q, mka_utc_offset(), NULL, &sql, &error) < 0) {
        mka_err("query: %s", error);
        free(error);
        ar_query_free(q);
        return EX_USAGE;
    }
    ar_query_free(q);
    if (sqlite3_prepare_v2(db, sql.sql, -1, &st, NULL) != SQLITE_OK
        || (at = ar_sql_bind(st, &sql, 1)) < 0) {
        mka_err("search: %s", sqlite3_errmsg(db));
        ar_sql_free(&sql);
        return EX_SOFTWARE;
    }
    sqlite3_bind_int64(st, at, limit ? (sqlite3_int64) limit : -1);
    sqlite3_bind_int64(st, at + 1, (sqlite3_int64) offset);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        *ids = mk_xrealloc(*ids, (*n + 1) * sizeof(int64_t));
        (*ids)[(*n)++] = sqlite3_column_int64(st, 0);
    }
    if (rc != SQLITE_DONE)
        mka_err("search: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    ar_sql_free(&sql);
    return rc == SQLITE_DONE ? 0 : EX_SOFTWARE;
}

static const char *mka_check_word(enum ar_check c)
{
    switch (c) {
    case AR_OK:
        return "ok";
    case AR_MISSING:
        return "MISSING";
    case AR_IOERR:
        return "UNREADABLE";
    default:
        return "MODIFIED";
    }
}

static void mka_time(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t) t;
    struct tm tm;

    localtime_r(&tt, &tm);
    strftime(buf, size, "%Y-%m-%d %H:%M", &tm);
}

/* One line of a header value for the table, padded to width columns (CJK is two wide). */
static void mka_cell(const char *s, int width, char *out, size_t size)
{
    size_t o = 0;
    int cols = 0;

    for (const unsigned char *p = (const unsigned char *) (s ? s : ""); *p && o + 5 < size;) {
        int len = *p < 0x80 ? 1 : *p >= 0xF0 ? 4 : *p >= 0xE0 ? 3 : 2;
        int w = len >= 3 ? 2 : 1;       /* CJK is two columns wide */

        if (cols + w > width)
            break;
        for (int i = 0; i < len && p[i]; i++)
            out[o++] = (char) (p[i] == '\n' || p[i] == '\t' ? ' ' : p[i]);
        cols += w;
        p += len;
    }
    while (cols++ < width && o + 1 < size)
        out[o++] = ' ';
    out[o] = '\0';
}

/* ---------------------------------------------------------------- init */

static int mka_init(const struct mka_ctx *x, int argc, char **argv)
{
    char *error = NULL;

    (void) argv;
    if (argc != 1) {
        fputs(mka_usage, stderr);
        return EX_USAGE;
    }
    if (ar_archive_init(&x->paths, &error) < 0 || ar_spool_prepare(x->paths.spool, &error) < 0) {
        mka_err("init: %s", error);
        free(error);
        return EX_CANTCREAT;
    }
    printf("archive %s ready; keys in %s (keep a copy of them apart from the archive:\n"
           "without archive.key nothing archived can be read)\n", x->paths.dir,
           x->paths.keys_dir);
    return 0;
}

/* --------------------------------------------------------------- ingest */

static volatile sig_atomic_t mka_stop;

static void mka_on_signal(int sig)
{
    (void) sig;
    mka_stop = 1;
}

static int mka_ingest_once(const struct mka_ctx *x, struct ar_archive *a, bool quiet)
{
    struct ar_ingest_stats stats;
    struct ar_progress p;
    struct mka_bar bar;
    char *error = NULL, *note;
    int rc = ar_archive_ingest(a, (size_t) mk_config_num(x->cfg, "archive", "batch"),
                               quiet ? NULL : mka_progress(&p, &bar, "ingest"), &stats, &error);

    if ((note = ar_archive_take_note(a)) != NULL) {
        mk_log(MK_LOG_WARNING, NULL, "archive: %s", note);
        free(note);
    }
    if (stats.messages || stats.damaged || stats.already || stats.swept)
        mk_log(MK_LOG_INFO, NULL, "archive: ingested %zu message(s), %zu new object(s), "
               "%zu byte(s); %zu damaged, %zu already archived, %zu unfinished receipt(s) "
               "swept from tmp/", stats.messages, stats.new_objects, stats.bytes, stats.damaged,
               stats.already, stats.swept);
    if (rc < 0) {
        mk_log(MK_LOG_ERROR, NULL, "archive: ingest: %s", error);
        free(error);
        return EX_TEMPFAIL;
    }
    return stats.damaged ? 1 : 0;
}

static int mka_ingest(const struct mka_ctx *x, int argc, char **argv)
{
    bool watch = false, quiet = false;
    struct ar_archive *a;
    int c, rc;

    optind = 1;
    while ((c = getopt(argc, argv, "wq")) != -1) {
        if (c == 'w')
            watch = true;
        else if (c == 'q')
            quiet = true;
        else {
            fputs(mka_usage, stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        fputs(mka_usage, stderr);
        return EX_USAGE;
    }
    if ((a = mka_open(x, true)) == NULL)
        return EX_TEMPFAIL;
    if (!watch) {
        rc = mka_ingest_once(x, a, quiet);
        ar_archive_close(a);
        return rc;
    }
    signal(SIGTERM, mka_on_signal);
    signal(SIGINT, mka_on_signal);
    signal(SIGHUP, mka_on_signal);
    mk_log(MK_LOG_INFO, NULL, "archive: ingest watching %s", x->paths.spool);
    while (!mka_stop) {
        /* after a failure (a log or store that refuses more work until
         * reopened, a full disk), start again from a fresh open */
        if (a == NULL)
            a = mka_open(x, true);
        if (a && mka_ingest_once(x, a, true) == EX_TEMPFAIL) {
            ar_archive_close(a);
            a = NULL;
        }
        for (long t = mk_config_num(x->cfg, "archive", "ingest_interval") * 10; t > 0 && !mka_stop;
             t--)
            usleep(100000);
    }
    mk_log(MK_LOG_INFO, NULL, "archive: ingest stopped");
    ar_archive_close(a);
    return 0;
}

/* --------------------------------------------------------------- search */

static int mka_search(const struct mka_ctx *x, int argc, char **argv)
{
    long long count = 50, page = 1;
    struct ar_archive *a;
    int64_t *ids;
    size_t n;
    char *text;
    int c, rc;

    optind = 1;
    while ((c = getopt(argc, argv, "+n:p:")) != -1) {
        long long *v = c == 'n' ? &count : &page;

        if ((c != 'n' && c != 'p') || mk_parse_int(optarg, v) < 0 || *v < 1 || *v > 100000) {
            fputs(mka_usage, stderr);
            return EX_USAGE;
        }
    }
    if (optind >= argc) {
        fputs(mka_usage, stderr);
        return EX_USAGE;
    }
    if ((a = mka_open(x, false)) == NULL)
        return EX_UNAVAILABLE;
    text = mka_join(argc - optind, argv + optind);
    rc = mka_query(a, text, (size_t) count, (size_t) ((page - 1) * count), &ids, &n);
    free(text);
    if (rc == 0) {
        printf("%-16s  %-16s  %-8s  %-24s  %-24s  %-30s  %8s  %s\n", "ID", "DATE", "DIR", "FROM",
               "TO", "SUBJECT", "SIZE", "CHECK");
        for (size_t i = 0; i < n; i++) {
            struct ar_index_row row;
            char *error = NULL, date[32], from[128], to[128], subject[160];
            enum ar_check check;

            if (ar_index_get(ar_archive_index(a), ids[i], &row, &error) <= 0) {
                free(error);
                continue;
            }
            check = ar_store_check(ar_archive_store(a), row.object, &error);
            free(error);
            mka_time(row.time, date, sizeof(date));
            mka_cell(row.sender && *row.sender ? row.sender : "<>", 24, from, sizeof(from));
            mka_cell(row.recipients, 24, to, sizeof(to));
            mka_cell(row.subject, 30, subject, sizeof(subject));
            printf("%-16lld  %-16s  %-8s  %s  %s  %s  %8lld  %s\n", (long long) row.id, date,
                   row.direction, from, to, subject, (long long) row.size, mka_check_word(check));
            ar_index_row_free(&row);
        }
        printf("%zu message(s) on page %lld\n", n, page);
    }
    free(ids);
    ar_archive_close(a);
    return rc;
}

/* ----------------------------------------------------------------- show */

static int mka_show(const struct mka_ctx *x, int argc, char **argv)
{
    bool envelope = false;
    struct ar_index_row row;
    struct ar_archive *a;
    enum ar_check check = AR_OK;
    long long id;
    char *msg = NULL, *error = NULL;
    size_t len;
    int c, rc;

    optind = 1;
    while ((c = getopt(argc, argv, "e")) != -1) {
        if (c != 'e') {
            fputs(mka_usage, stderr);
            return EX_USAGE;
        }
        envelope = true;
    }
    if (optind + 1 != argc || mk_parse_int(argv[optind], &id) < 0) {
        fputs(mka_usage, stderr);
        return EX_USAGE;
    }
    if ((a = mka_open(x, false)) == NULL)
        return EX_UNAVAILABLE;
    rc = ar_archive_fetch(a, (int64_t) id, &row, &msg, &len, &check, &error);
    if (rc <= 0) {
        mka_err("show: %s", error);
        free(error);
        ar_archive_close(a);
        return rc == 0 ? 1 : EX_SOFTWARE;
    }
    if (check != AR_OK) {
        /* loudly, and never the bytes of a message that is not what was archived */
        fprintf(stderr,
                "mailkeep archive: WARNING: message %lld FAILS VERIFICATION: %s\n"
                "mailkeep archive: its stored object is %s; it is not shown.\n"
                "mailkeep archive: run \"mailkeep archive verify\" and restore from a copy.\n",
                id, error ? error : "", check == AR_MISSING ? "missing" : "not what was archived");
        free(error);
        ar_index_row_free(&row);
        ar_archive_close(a);
        return 2;
    }
    if (envelope) {
        char date[32], hex[65], *pack = NULL, *where = NULL;
        uint64_t offset = 0, length = 0;

        mka_time(row.time, date, sizeof(date));
        ar_hex(row.object, hex);
        if (ar_store_locate(ar_archive_store(a), row.object, &pack, &offset, &length, &where) == 1)
            where = mk_xasprintf("%s offset %llu length %llu", pack, (unsigned long long) offset,
                                 (unsigned long long) length);
        printf("ID: %lld\nReceived: %s\nDirection: %s\nSender: %s\nRecipients: %s\n"
               "Client: %s\nLogin: %s\nQueue-ID: %s\nSource: %s\nSHA-256: %s\nStored: %s\n"
               "Verified: ok\n",
               (long long) row.id, date, row.direction, row.sender ? row.sender : "",
               row.recipients ? row.recipients : "", row.client ? row.client : "",
               row.login ? row.login : "", row.queue_id ? row.queue_id : "",
               row.source ? row.source : "", hex, where ? where : "?");
        free(pack);
        free(where);
    } else if (fwrite(msg, 1, len, stdout) != len || fflush(stdout) != 0) {
        mka_err("show: cannot write: %s", strerror(errno));
        rc = -1;
    }
    free(msg);
    ar_index_row_free(&row);
    ar_archive_close(a);
    return rc < 0 ? EX_IOERR : 0;
}

/* --------------------------------------------------------------- verify */

static void mka_verify_problem(void *arg, const char *kind, const char *detail)
{
    (void) arg;
    printf("%s: %s\n", kind, detail);
}

static int mka_verify_one(struct ar_archive *a, long long id)
{
    struct ar_index_row row;
    char *msg = NULL, *error = NULL, hex[65];
    enum ar_check check = AR_OK;
    size_t len;
    int rc = ar_archive_fetch(a, (int64_t) id, &row, &msg, &len, &check, &error);

    if (rc <= 0) {
        mka_err("verify: %s", error);
        free(error);
        return rc == 0 ? 1 : EX_SOFTWARE;
    }
    ar_hex(row.object, hex);
    if (check == AR_OK)
        printf("message %lld: ok (sha256 %s)\n", id, hex);
    else
        printf("%s: message %lld: object %s: %s\n", check == AR_MISSING ? "missing" : "modified",
               id, hex, error ? error : mka_check_word(check));
    free(error);
    free(msg);
    ar_index_row_free(&row);
    return check == AR_OK ? 0 : 1;
}

static int mka_verify(const struct mka_ctx *x, int argc, char **argv)
{
    struct ar_verify_stats stats;
    struct ar_progress p;
    struct mka_bar bar;
    struct ar_verify_cb cb = {mka_verify_problem, NULL, NULL};
    struct ar_archive *a;
    long long id;
    char *error = NULL;
    int rc;

    if (argc > 2 || (argc == 2 && mk_parse_int(argv[1], &id) < 0)) {
        fputs(mka_usage, stderr);
        return EX_USAGE;
    }
    if ((a = mka_open(x, false)) == NULL)
        return EX_UNAVAILABLE;
    if (argc == 2) {
        rc = mka_verify_one(a, id);
        ar_archive_close(a);
        return rc;
    }
    cb.progress = mka_progress(&p, &bar, "verify");
    rc = ar_archive_verify(a, &cb, &stats, &error);
    ar_archive_close(a);
    if (rc < 0) {
        mka_err("verify: %s", error);
        free(error);
        return EX_SOFTWARE;
    }
    printf("%zu log entries, %zu objects, %zu index rows checked: %s\n", stats.entries,
           stats.objects, stats.rows, rc == 0 ? "intact" : "PROBLEMS FOUND");
    if (rc)
        printf("%d problem(s)\n", rc);
    return rc == 0 ? 0 : 1;
}

/* --------------------------------------------------------------- export */

static int mka_to_mailbox(const struct mka_ctx *x, const char *user, const char *mailbox,
                          const char *msg, size_t len)
{
    const char *args[] = {"save", "-u", user, "-m", mailbox, NULL};

    return mk_run_cmd(mk_config_str(x->cfg, "archive", "doveadm"), args, msg, len, NULL);
}

static int mka_make_mailbox(const struct mka_ctx *x, const char *user, const char *mailbox)
{
    const char *args[] = {"mailbox", "create", "-u", user, mailbox, NULL};

    return mk_run_cmd(mk_config_str(x->cfg, "archive", "doveadm"), args, NULL, 0, NULL);
}

static int mka_export(const struct mka_ctx *x, int argc, char **argv)
{
    const char *format = NULL, *output = NULL, *user = NULL, *mailbox = NULL;
    enum ar_export_format fmt = AR_EXPORT_EML_ZIP;
    struct ar_export *e = NULL;
    struct ar_progress p;
    const struct ar_progress *progress;
    struct mka_bar bar;
    struct ar_archive *a;
    int64_t *ids;
    size_t n, bad = 0;
    char *text, *error = NULL;
    int c, rc;

    optind = 1;
    while ((c = getopt(argc, argv, "+f:o:u:m:")) != -1) {
        switch (c) {
        case 'f':
            format = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        case 'u':
            user = optarg;
            break;
        case 'm':
            mailbox = optarg;
            break;
        default:
            fputs(mka_usage, stderr);
            return EX_USAGE;
        }
    }
    if (optind >= argc || (user == NULL) == (output == NULL) || (output && format == NULL)
        || (user && format)) {
        fputs(mka_usage, stderr);
        return EX_USAGE;
    }
    if (format && strcmp(format, "eml") == 0)
        fmt = AR_EXPORT_EML_ZIP;
    else if (format && strcmp(format, "mbox") == 0)
        fmt = AR_EXPORT_MBOX;
    else if (format && strcmp(format, "iso") == 0)
        fmt = AR_EXPORT_ISO;
    else if (format) {
        mka_err("export: unknown format \"%s\" (eml, mbox, iso; pst is not supported yet)",
                format);
        return EX_USAGE;
    }
    if (mailbox == NULL)
        mailbox = mk_config_str(x->cfg, "archive", "export_mailbox");
    if ((a = mka_open(x, false)) == NULL)
        return EX_UNAVAILABLE;
    text = mka_join(argc - optind, argv + optind);
    rc = mka_query(a, text, 0, 0, &ids, &n);
    free(text);
    if (rc != 0)
        goto out;
    if (output && (e = ar_export_open(output, fmt, &error)) == NULL) {
        mka_err("export: %s", error);
        rc = EX_CANTCREAT;
        goto out;
    }
    if (user)
        (void) mka_make_mailbox(x, user, mailbox);  /* it may exist: saving says if it cannot */
    progress = mka_progress(&p, &bar, "export");
    for (size_t i = 0; i < n; i++) {
        struct ar_index_row row;
        enum ar_check check = AR_OK;
        char *msg = NULL;
        size_t len;

        if (ar_archive_fetch(a, ids[i], &row, &msg, &len, &check, &error) <= 0) {
            mka_err("export: %s", error);
            free(error);
            error = NULL;
            rc = EX_SOFTWARE;
            break;
        }
        if (check != AR_OK) {
            /* a message that fails verification is never exported as if it were sound */
            mka_err("export: message %lld FAILS VERIFICATION (%s): left out", (long long) ids[i],
                    error ? error : mka_check_word(check));
            free(error);
            error = NULL;
            bad++;
        } else if (e && ar_export_add(e, row.object, row.sender, (time_t) row.time, msg, len,
                                      &error) < 0) {
            mka_err("export: %s", error);
            rc = EX_IOERR;
        } else if (user && mka_to_mailbox(x, user, mailbox, msg, len) != 0) {
            mka_err("export: doveadm save into %s's \"%s\" failed", user, mailbox);
            rc = EX_UNAVAILABLE;
        }
        free(msg);
        ar_index_row_free(&row);
        if (progress)
            progress->update(progress->arg, i + 1, n);
        if (rc)
            break;
    }
    if (e && rc == 0 && ar_export_close(e, &error) < 0) {
        mka_err("export: %s", error);
        rc = EX_IOERR;
    } else if (e && rc) {
        ar_export_abort(e);
    }
    e = NULL;
    if (rc == 0) {
        if (output)
            printf("%zu message(s) exported to %s\n", n - bad, output);
        else
            printf("%zu message(s) saved into %s's mailbox \"%s\"\n", n - bad, user, mailbox);
        if (bad) {
            printf("%zu message(s) left out: they fail verification\n", bad);
            rc = 1;
        }
    }
out:
    free(error);
    free(ids);
    ar_archive_close(a);
    return rc;
}

/* --------------------------------------------------------------- import */

struct mka_import {
    const struct mka_ctx *x;
    const char *path;
    size_t spooled, failed;
    int error;
};

/* The envelope of an imported message, from its headers, marked as such. */
static int mka_import_item(void *arg, const struct ar_import_item *it)
{
    struct mka_import *im = arg;
    static const char *const rcpt_headers[] = {"To", "Cc", "Bcc"};
    struct ar_envelope env;
    struct ar_spool_file f;
    char *error = NULL, *from, *date;

    if (it->msg == NULL) {
        mka_err("import: %s", it->error ? it->error : "unreadable");
        im->failed++;
        return 0;
    }
    memset(&env, 0, sizeof(env));
    date = ar_doc_header(it->msg, it->len, "Date");
    env.time = it->received ? it->received : ar_doc_date(date);
    if (env.time <= 0)
        env.time = time(NULL);
    free(date);
    if (it->sender && *it->sender && strcmp(it->sender, "MAILER-DAEMON") != 0) {
        env.sender = mk_xstrdup(it->sender);
    } else if ((from = ar_doc_header(it->msg, it->len, "From")) != NULL) {
        char **addrs = ar_doc_addresses(from);

        env.sender = mk_xstrdup(addrs[0] ? addrs[0] : "");
        mk_str_array_free(addrs);
        free(from);
    } else {
        env.sender = mk_xstrdup("");
    }
    for (size_t h = 0; h < MK_ARRAY_LEN(rcpt_headers); h++) {
        char *value = ar_doc_header(it->msg, it->len, rcpt_headers[h]);
        char **addrs = value ? ar_doc_addresses(value) : NULL;

        for (char **r = addrs; r && *r; r++)
            ar_envelope_add_rcpt(&env, *r, "unknown");
        mk_str_array_free(addrs);
        free(value);
    }
    env.source = mk_xstrdup("import");
    env.origin = mk_xstrdup(it->origin && *it->origin ? it->origin : im->path);
    if (ar_spool_begin(&f, im->x->paths.spool, &error) < 0) {
        mka_err("import: %s", error);
        free(error);
        ar_envelope_free(&env);
        im->error = EX_CANTCREAT;
        return 1;
    }
    ar_spool_write(&f, it->msg, it->len);
    if (ar_spool_commit(&f, &env, &error) < 0) {
        mka_err("import: %s", error);
        free(error);
        ar_envelope_free(&env);
        im->error = EX_IOERR;
        return 1;
    }
    ar_envelope_free(&env);
    im->spooled++;
    return 0;
}

static int mka_import(const struct mka_ctx *x, int argc, char **argv)
{
    struct mka_import im = {x, NULL, 0, 0, 0};
    struct ar_archive *a;
    char *error = NULL;
    int rc;

    if (argc < 2) {
        fputs(mka_usage, stderr);
        return EX_USAGE;
    }
    if (ar_spool_prepare(x->paths.spool, &error) < 0) {
        mka_err("import: %s", error);
        free(error);
        return EX_CANTCREAT;
    }
    for (int i = 1; i < argc && im.error == 0; i++) {
        im.path = argv[i];
        if (ar_import_walk(argv[i], mka_import_item, &im, &error) < 0 && im.error == 0) {
            mka_err("import: %s", error);
            free(error);
            error = NULL;
            im.error = EX_NOINPUT;
        }
    }
    printf("%zu message(s) read into the journal spool, %zu unreadable\n", im.spooled,
           im.failed);
    if (im.error)
        return im.error;
    /* archive them now; if an ingest is running, it will */
    if ((a = ar_archive_open(&x->paths, true, &error)) == NULL) {
        printf("not archived yet (%s): the running ingest will archive them\n", error);
        free(error);
        return 0;
    }
    rc = mka_ingest_once(x, a, false);
    ar_archive_close(a);
    if (rc == 0)
        printf("archived\n");
    return rc ? rc : im.failed ? 1 : 0;
}

/* -------------------------------------------------------------- reindex */

static int mka_reindex(const struct mka_ctx *x, int argc, char **argv)
{
    struct ar_progress p;
    struct mka_bar bar;
    struct ar_archive *a;
    char *error = NULL;
    int rc;

    (void) argv;
    if (argc != 1) {
        fputs(mka_usage, stderr);
        return EX_USAGE;
    }
    if ((a = mka_open(x, true)) == NULL)
        return EX_TEMPFAIL;
    rc = ar_archive_reindex(a, mka_progress(&p, &bar, "reindex"), &error);
    ar_archive_close(a);
    if (rc < 0) {
        mka_err("reindex: %s", error);
        free(error);
        return EX_SOFTWARE;
    }
    printf("index rebuilt from the log and the store\n");
    return 0;
}

int mailkeep_archive(const char *config_path, int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(const struct mka_ctx *, int, char **);
    } commands[] = {
        {"init", mka_init},       {"ingest", mka_ingest}, {"search", mka_search},
        {"show", mka_show},       {"verify", mka_verify}, {"export", mka_export},
        {"import", mka_import},   {"reindex", mka_reindex},
    };
    struct mka_ctx x;
    int rc = -1;

    if (argc < 1) {
        fputs(mka_usage, stderr);
        return EX_USAGE;
    }
    if ((x.cfg = mailkeep_load_config(config_path)) == NULL)
        return EX_CONFIG;
    x.paths.dir = mk_config_str(x.cfg, "archive", "dir");
    x.paths.keys_dir = mk_config_str(x.cfg, "archive", "keys_dir");
    x.paths.index = mk_config_str(x.cfg, "archive", "index");
    x.paths.spool = mk_config_str(x.cfg, "journal", "spool_dir");
    for (size_t i = 0; i < MK_ARRAY_LEN(commands); i++)
        if (strcmp(argv[0], commands[i].name) == 0)
            rc = commands[i].run(&x, argc, argv);
    if (rc == -1) {
        fputs(mka_usage, stderr);
        rc = EX_USAGE;
    }
    mk_config_unref(x.cfg);
    return rc;
}
