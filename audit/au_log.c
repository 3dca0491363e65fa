/*
 * au_log - the audit log: daily files, one hash chain, signed checkpoints.
 * See au_log.h.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "au_log.h"
#include "mk_crypto.h"
#include "mk_lines.h"
#include "mk_util.h"

#define AU_US_PER_DAY		((int64_t) 86400 * 1000000)
#define AU_MAX_DAY		((int64_t) 2932896)     /* 9999-12-31: four-digit years */
#define AU_CP_OP		",\"op\":\"checkpoint\""
#define AU_PEER_MARK		",\"peer\":{\"pid\":"
#define AU_REC_SUFFIX_LEN	(9 + 64 + 10 + 64 + 2)  /* ,"prev":"H","hash":"H"} */
#define AU_CP_SUFFIX_LEN	(9 + 64 + 10 + 64 + 9 + 128 + 2)
#define AU_CP_MAX_LEN		(7 + 20 + 9 + AU_LOG_TIME_LEN + 1 + 18 + AU_CP_SUFFIX_LEN)
#define AU_SCAN_BLOCK		((size_t) 131072)       /* more than two checkpoint lines */
#define AU_WINDOW		64      /* verify looks this far for a moved record */
#define AU_MAX_MISSING		32
#define AU_DISCARDED		".discarded"

/* ------------------------------------------------------------- times */

static int64_t au_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned) (y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t) doe - 719468;
}

static void au_civil_from_days(int64_t z, int *year, unsigned *month, unsigned *day)
{
    int64_t era, y;
    unsigned doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = (unsigned) (z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = (int64_t) yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *day = doy - (153 * mp + 2) / 5 + 1;
    *month = mp < 10 ? mp + 3 : mp - 9;
    *year = (int) (y + (*month <= 2));
}

/* n decimal digits; -1 when one is not a digit */
static int au_digits(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* "YYYY-MM-DD" at s: the day number since 1970, or -1. */
static int64_t au_parse_date(const char *s)
{
    int y = au_digits(s, 4), m = au_digits(s + 5, 2), d = au_digits(s + 8, 2), y2;
    unsigned m2, d2;
    int64_t day;

    if (y < 1970 || m < 1 || m > 12 || d < 1 || d > 31 || s[4] != '-' || s[7] != '-')
        return -1;
    day = au_days_from_civil(y, (unsigned) m, (unsigned) d);
    au_civil_from_days(day, &y2, &m2, &d2);
    return y2 == y && (int) m2 == m && (int) d2 == d ? day : -1;     /* no 31 April */
}

size_t au_log_format_time(int64_t time, char out[AU_LOG_TIME_LEN + 1])
{
    int64_t t = time < 0 ? 0 : time / AU_US_PER_DAY > AU_MAX_DAY ? 0 : time;
    unsigned secs = (unsigned) (t % AU_US_PER_DAY / 1000000), us = (unsigned) (t % 1000000);
    unsigned month, mday;
    char buf[64];
    int year;

    au_civil_from_days(t / AU_US_PER_DAY, &year, &month, &mday);
    snprintf(buf, sizeof(buf), "%04d-%02u-%02uT%02u:%02u:%02u.%06uZ", year, month, mday,
             secs / 3600, secs / 60 % 60, secs % 60, us);
    memcpy(out, buf, AU_LOG_TIME_LEN);
    out[AU_LOG_TIME_LEN] = '\0';
    return AU_LOG_TIME_LEN;
}

int au_log_parse_time(const char *t, size_t len, int64_t *time)
{
    int64_t day;
    int h, m, s, us;

    if (len != AU_LOG_TIME_LEN || t[10] != 'T' || t[13] != ':' || t[16] != ':' || t[19] != '.'
        || t[26] != 'Z' || (day = au_parse_date(t)) < 0)
        return -1;
    h = au_digits(t + 11, 2);
    m = au_digits(t + 14, 2);
    s = au_digits(t + 17, 2);
    us = au_digits(t + 20, 6);
    if (h < 0 || h > 23 || m < 0 || m > 59 || s < 0 || s > 59 || us < 0)
        return -1;
    *time = day * AU_US_PER_DAY + ((int64_t) h * 3600 + m * 60 + s) * 1000000 + us;
    return 0;
}

void au_log_file_name(int64_t time, char out[AU_LOG_NAME_LEN + 1])
{
    unsigned month, mday;
    int year;

    au_civil_from_days(time / AU_US_PER_DAY, &year, &month, &mday);
    snprintf(out, AU_LOG_NAME_LEN + 1, "%04d-%02u-%02u.log", year, month, mday);
}

/* A log file's day, or -1 when the name is not YYYY-MM-DD.log. */
static int64_t au_name_day(const char *name)
{
    if (strlen(name) != AU_LOG_NAME_LEN || strcmp(name + 10, ".log") != 0)
        return -1;
    return au_parse_date(name);
}

const char *au_log_problem_name(enum au_log_problem_kind kind)
{
    static const char *const names[] = {"modified", "missing", "added", "reordered",
                                        "bad-signature", "truncated", "unsigned-tail"};

    return (unsigned) kind < MK_ARRAY_LEN(names) ? names[kind] : "unknown";
}

/* ----------------------------------------------------------- parsing */

/* The last occurrence of needle in [from, to), or NULL. */
static const char *au_memrmem(const char *from, const char *to, const char *needle, size_t n)
{
    if ((size_t) (to - from) < n)
        return NULL;
    for (const char *p = to - n; p >= from; p--)
        if (*p == *needle && memcmp(p, needle, n) == 0)
            return p;
    return NULL;
}

const char *au_log_parse(const char *line, size_t len, struct au_log_record *r)
{
    struct mk_lines_cur c = {line, line + len};
    const char *pos, *suffix, *peer;

    memset(r, 0, sizeof(*r));
    r->text = line;
    r->len = len;
    if (len > AU_LOG_MAX_LINE)
        return "line too long";
    if (!MK_LINES_LIT(&c, "{\"seq\":") || !mk_lines_u64(&c, &r->seq) || r->seq == 0)
        return "no valid seq at the start";
    if (!MK_LINES_LIT(&c, ",\"time\":\"") || c.end - c.p < AU_LOG_TIME_LEN + 1
        || au_log_parse_time(c.p, AU_LOG_TIME_LEN, &r->time) < 0)
        return "no valid time after seq";
    c.p += AU_LOG_TIME_LEN;
    if (!MK_LINES_LIT(&c, "\""))
        return "no valid time after seq";
    pos = c.p;
    if ((size_t) (c.end - pos) == sizeof(AU_CP_OP) - 1 + AU_CP_SUFFIX_LEN
        && memcmp(pos, AU_CP_OP, sizeof(AU_CP_OP) - 1) == 0) {
        r->checkpoint = true;
        c.p += sizeof(AU_CP_OP) - 1;
        r->hashed = (size_t) (c.p - line);
        if (!MK_LINES_LIT(&c, ",\"prev\":\"") || !mk_lines_hex(&c, r->prev, 32)
            || !MK_LINES_LIT(&c, "\",\"hash\":\"") || !mk_lines_hex(&c, r->hash, 32)
            || !MK_LINES_LIT(&c, "\",\"sig\":\"") || !mk_lines_hex(&c, r->sig, 64)
            || !MK_LINES_LIT(&c, "\"}") || c.p != c.end)
            return "malformed checkpoint";
        return NULL;
    }
    if ((size_t) (c.end - pos) < AU_REC_SUFFIX_LEN + 2 + sizeof(AU_PEER_MARK) - 1)
        return "too short for a record";
    suffix = c.end - AU_REC_SUFFIX_LEN;
    c.p = suffix;
    if (!MK_LINES_LIT(&c, ",\"prev\":\"") || !mk_lines_hex(&c, r->prev, 32)
        || !MK_LINES_LIT(&c, "\",\"hash\":\"") || !mk_lines_hex(&c, r->hash, 32)
        || !MK_LINES_LIT(&c, "\"}"))
        return "no valid prev and hash at the end";
    r->hashed = (size_t) (suffix - line);
    if (*pos != ',')
        return "no fields after time";
    if ((peer = au_memrmem(pos + 1, suffix, AU_PEER_MARK, sizeof(AU_PEER_MARK) - 1)) == NULL)
        return "no peer before prev";
    c.p = peer + sizeof(AU_PEER_MARK) - 1;
    c.end = suffix;
    if (!mk_lines_i64(&c, &r->pid) || !MK_LINES_LIT(&c, ",\"uid\":") || !mk_lines_i64(&c, &r->uid)
        || !MK_LINES_LIT(&c, "}") || c.p != c.end)
        return "malformed peer";
    r->members = pos + 1;
    r->members_len = (size_t) (peer - (pos + 1));
    if (r->members_len == 0)
        return "no fields of the client's";
    return NULL;
}

/* ----------------------------------------------------------- hashing */

/* -------------------------------------------------- files and the head */

struct au_files {
    char (*names)[AU_LOG_NAME_LEN + 1];
    size_t n;
};

static int au_name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The log files of dir, sorted by name (which is by day). */
static int au_files_list(const char *dir, struct au_files *f, char **error)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t cap = 0;

    f->names = NULL;
    f->n = 0;
    if (d == NULL) {
        *error = mk_xasprintf("%s: cannot open: %s", dir, strerror(errno));
        return -1;
    }
    while ((errno = 0, de = readdir(d)) != NULL) {
        if (au_name_day(de->d_name) < 0)
            continue;
        if (f->n == cap) {
            cap = cap ? 2 * cap : 64;
            f->names = mk_xrealloc(f->names, cap * sizeof(*f->names));
        }
        memcpy(f->names[f->n++], de->d_name, AU_LOG_NAME_LEN + 1);
    }
    if (errno != 0) {
        *error = mk_xasprintf("%s: cannot list: %s", dir, strerror(errno));
        closedir(d);
        free(f->names);
        f->names = NULL;
        return -1;
    }
    closedir(d);
    if (f->n > 1)
        qsort(f->names, f->n, sizeof(*f->names), au_name_cmp);
    return 0;
}

struct au_head {
    uint64_t seq;
    unsigned char hash[32], sig[64];
    char file[AU_LOG_NAME_LEN + 1];
};

/* 1 read, 0 missing, -1 unreadable, -2 malformed; *error set for -1 and -2. */
static int au_head_read(const char *path, struct au_head *h, char **error)
{
    struct stat st;
    struct mk_lines_cur c;
    size_t len;
    char *text;
    bool ok;

    if (lstat(path, &st) < 0 && errno == ENOENT)
        return 0;
    if ((text = mk_file_read(path, &len, NULL, error)) == NULL)
        return -1;
    c.p = text;
    c.end = text + len;
    ok = MK_LINES_LIT(&c, "seq=") && mk_lines_u64(&c, &h->seq) && h->seq > 0
        && MK_LINES_LIT(&c, " hash=") && mk_lines_hex(&c, h->hash, 32) && MK_LINES_LIT(&c, " file=")
        && (size_t) (c.end - c.p) > AU_LOG_NAME_LEN;
    if (ok) {
        memcpy(h->file, c.p, AU_LOG_NAME_LEN);
        h->file[AU_LOG_NAME_LEN] = '\0';
        c.p += AU_LOG_NAME_LEN;
        ok = au_name_day(h->file) >= 0 && MK_LINES_LIT(&c, " sig=") && mk_lines_hex(&c, h->sig, 64)
            && MK_LINES_LIT(&c, "\n") && c.p == c.end;
    }
    free(text);
    if (!ok) {
        *error = mk_xasprintf("%s: malformed (expected \"seq=N hash=H file=NAME sig=S\")", path);
        return -2;
    }
    return 1;
}

/* ------------------------------------------------------------ writer */

struct au_seg {
    char name[AU_LOG_NAME_LEN + 1];
    size_t start;                       /* in buf */
    uint64_t last_seq;
    unsigned char last_hash[32];
    bool has_cp;                        /* the newest checkpoint in it */
    struct au_head cp;
};

struct au_log {
    char *dir;
    int dirfd, fd;
    EVP_PKEY *sign, *verify;
    struct mk_crypto_chain h;
    char cur[AU_LOG_NAME_LEN + 1];      /* the open file; "" before the first */
    int64_t cur_day;
    off_t size;                         /* its durable bytes */
    bool dirty;                         /* bytes of a failed write may follow them */
    uint64_t seq;                       /* durable */
    unsigned char hash[32];
    bool have_cp, head_stale, head_synced;
    struct au_head cp;                  /* the newest durable checkpoint */
    uint64_t pend_seq;                  /* appended */
    unsigned char pend_hash[32];
    uint64_t since_cp;                  /* records appended after the last checkpoint */
    char *buf;
    size_t len, cap;
    struct au_seg *segs;
    size_t nsegs, segs_cap;
    char *note;
};

char *au_log_take_note(struct au_log *l)
{
    char *note = l->note;

    l->note = NULL;
    return note;
}

static int au_log_write_head(struct au_log *l, char **error)
{
    char hex[65], sig[129], text[320];
    int fd, n, err = 0;

    mk_crypto_hex(l->cp.hash, 32, hex);
    mk_crypto_hex(l->cp.sig, 64, sig);
    n = snprintf(text, sizeof(text), "seq=%" PRIu64 " hash=%s file=%s sig=%s\n", l->cp.seq, hex,
                 l->cp.file, sig);
    fd = openat(l->dirfd, AU_LOG_HEAD_FILE ".tmp",
                O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0)
        err = errno;
    else {
        if (mk_write_all(fd, text, (size_t) n) < 0 || fsync(fd) < 0)
            err = errno;
        if (close(fd) < 0 && err == 0)
            err = errno;
        /* Once the head exists, a crash may bring back the one before,
         * which open and verify accept as lagging: no directory sync. */
        if (err == 0 && (renameat(l->dirfd, AU_LOG_HEAD_FILE ".tmp", l->dirfd,
                                  AU_LOG_HEAD_FILE) < 0
                         || (!l->head_synced && fsync(l->dirfd) < 0)))
            err = errno;
        if (err == 0)
            l->head_synced = true;
        else
            unlinkat(l->dirfd, AU_LOG_HEAD_FILE ".tmp", 0);
    }
    if (err != 0) {
        *error = mk_xasprintf("%s/%s: cannot replace: %s", l->dir, AU_LOG_HEAD_FILE,
                              strerror(err));
        return -1;
    }
    return 0;
}

/*
 * Where the complete lines of the newest file end: before a torn last
 * line. What follows the last newline is one line cut short, or that and
 * zeros (a file system that grew the file before writing its data).
 */
static int au_log_data_end(const char *path, int fd, off_t size, off_t *end, char **error)
{
    char *buf = mk_xmalloc(AU_SCAN_BLOCK);
    off_t hi = size, tail = 0;
    int rc = 0;

    *end = size;
    while (hi > 0) {                    /* the last newline, backwards */
        off_t lo = hi > (off_t) AU_SCAN_BLOCK ? hi - (off_t) AU_SCAN_BLOCK : 0;
        size_t n = (size_t) (hi - lo);
        char *nl;

        if (mk_pread_full(fd, buf, n, lo) != (ssize_t) n) {
            rc = -1;
            break;
        }
        if ((nl = memrchr(buf, '\n', n)) != NULL) {
            tail = lo + (nl - buf) + 1;
            break;
        }
        hi = lo;
    }
    for (off_t pos = tail + AU_LOG_MAX_LINE; rc == 0 && pos < size; ) {
        size_t want = size - pos < (off_t) AU_SCAN_BLOCK ? (size_t) (size - pos) : AU_SCAN_BLOCK;

        if (mk_pread_full(fd, buf, want, pos) != (ssize_t) want)
            rc = -1;
        for (size_t i = 0; rc == 0 && i < want; i++)
            if (buf[i] != '\0') {
                *error = mk_xasprintf("%s: ends in more than %d bytes without a newline: not an "
                                      "interrupted write; check the log with mailkeep audit "
                                      "verify", path, AU_LOG_MAX_LINE);
                free(buf);
                return -1;
            }
        pos += (off_t) want;
    }
    free(buf);
    if (rc < 0) {
        *error = mk_xasprintf("%s: read error: %s", path, strerror(errno ? errno : EIO));
        return -1;
    }
    *end = tail;
    return 0;
}

/*
 * The last checkpoint line in [0, end) of fd (end follows a newline):
 * its offset, or -1.
 */
static int au_log_last_checkpoint(const char *path, int fd, off_t end, off_t *found,
                                  char **error)
{
    char *buf = mk_xmalloc(AU_SCAN_BLOCK);
    off_t hi = end;
    bool skip = false;

    *found = -1;
    while (hi > 0 && *found < 0) {
        off_t lo = hi > (off_t) AU_SCAN_BLOCK ? hi - (off_t) AU_SCAN_BLOCK : 0;
        size_t n = (size_t) (hi - lo), e = n;
        bool reread = false;

        if (mk_pread_full(fd, buf, n, lo) != (ssize_t) n) {
            *error = mk_xasprintf("%s: read error: %s", path, strerror(errno ? errno : EIO));
            free(buf);
            return -1;
        }
        if (skip) {                     /* the rest of a long line, which is no checkpoint */
            char *nl = memrchr(buf, '\n', n);

            if (nl == NULL) {
                hi = lo;
                continue;
            }
            e = (size_t) (nl - buf) + 1;
            skip = false;
        }
        while (e > 0) {
            char *nl = e >= 2 ? memrchr(buf, '\n', e - 1) : NULL;
            size_t start = nl ? (size_t) (nl - buf) + 1 : 0;
            struct au_log_record r;

            if (nl == NULL && lo > 0) { /* the line starts in an earlier block */
                if (e > AU_CP_MAX_LEN + 1)
                    skip = true, hi = lo;
                else
                    hi = lo + (off_t) e;
                reread = true;
                break;
            }
            if (e - 1 - start <= AU_CP_MAX_LEN
                && au_log_parse(buf + start, e - 1 - start, &r) == NULL && r.checkpoint) {
                *found = lo + (off_t) start;
                break;
            }
            e = start;
        }
        if (!reread)
            hi = lo;
    }
    free(buf);
    return 0;
}

struct au_chain {
    uint64_t seq;
    unsigned char hash[32];
    uint64_t tail;                      /* records after the last checkpoint */
    bool have_cp;
    struct au_head cp;
};

/* The chain stands at a checkpoint: seq, hash and signature, in file name. */
static void au_chain_at_checkpoint(struct au_chain *ch, const struct au_log_record *cp,
                                   const char *name)
{
    ch->seq = cp->seq;
    memcpy(ch->hash, cp->hash, 32);
    ch->tail = 0;
    ch->have_cp = true;
    ch->cp.seq = cp->seq;
    memcpy(ch->cp.hash, cp->hash, 32);
    memcpy(ch->cp.sig, cp->sig, 64);
    memcpy(ch->cp.file, name, AU_LOG_NAME_LEN + 1);
}

/*
 * Check the lines of one file in [from, end) against the chain so far:
 * each well-formed, hashed, following the one before; checkpoints signed.
 */
static int au_log_check_file(struct au_log *l, const char *name, int fd, off_t from, off_t end,
                             struct au_chain *ch, char **error)
{
    char *path = mk_xasprintf("%s/%s", l->dir, name);
    struct mk_lines r;
    struct mk_line ln;
    int rc;

    mk_lines_init(&r, fd, from, AU_LOG_MAX_LINE);
    while ((rc = mk_lines_next(&r, &ln)) > 0 && ln.offset < end) {
        struct au_log_record rec;
        unsigned char computed[32];
        const char *why = ln.too_long ? "line too long"
                        : ln.torn ? "no newline at the end of an older file: it was cut"
                                  : au_log_parse(ln.text, ln.len, &rec);

        if (why == NULL && rec.seq != ch->seq + 1)
            why = "seq does not follow the record before";
        if (why == NULL && memcmp(rec.prev, ch->hash, 32) != 0)
            why = "prev is not the hash of the record before";
        if (why == NULL) {
            mk_crypto_chain_hash(&l->h, rec.prev, ln.text, rec.hashed, computed);
            if (memcmp(computed, rec.hash, 32) != 0)
                why = "the record does not match its hash";
        }
        if (why == NULL && rec.checkpoint
            && !mk_crypto_chain_verify(l->verify, AU_LOG_SIGNED_TEXT, rec.seq, rec.hash,
                                       rec.sig))
            why = "the checkpoint's signature does not verify";
        if (why != NULL) {
            *error = mk_lines_error_at(path, fd, ln.offset, ln.number, "%s; check the log with "
                                       "mailkeep audit verify", why);
            mk_lines_free(&r);
            free(path);
            return -1;
        }
        if (rec.checkpoint)
            au_chain_at_checkpoint(ch, &rec, name);
        else {
            ch->seq = rec.seq;
            memcpy(ch->hash, rec.hash, 32);
            ch->tail++;
        }
    }
    if (rc < 0)
        *error = mk_xasprintf("%s: read error: %s", path, strerror(errno));
    mk_lines_free(&r);
    free(path);
    return rc < 0 ? -1 : 0;
}

/* Read and check the checkpoint at offset: form, hash, signature. */
static int au_log_load_checkpoint(struct au_log *l, const char *name, int fd, off_t offset,
                                  struct au_chain *ch, off_t *after, char **error)
{
    char buf[AU_CP_MAX_LEN + 2], *nl, *path = mk_xasprintf("%s/%s", l->dir, name);
    struct au_log_record r;
    unsigned char computed[32];
    ssize_t n = mk_pread_full(fd, buf, sizeof(buf), offset);
    const char *why = NULL;

    if (n < 0 || (nl = memchr(buf, '\n', (size_t) n)) == NULL)
        why = "cannot read the last checkpoint";
    else if (au_log_parse(buf, (size_t) (nl - buf), &r) != NULL || !r.checkpoint)
        why = "malformed checkpoint";
    else {
        mk_crypto_chain_hash(&l->h, r.prev, buf, r.hashed, computed);
        if (memcmp(computed, r.hash, 32) != 0)
            why = "the checkpoint does not match its hash: the log was modified";
        else if (!mk_crypto_chain_verify(l->verify, AU_LOG_SIGNED_TEXT, r.seq, r.hash, r.sig))
            why = "the checkpoint's signature does not verify: the log was modified, or this "
                  "is not its key";
    }
    if (why != NULL) {
        *error = mk_lines_error_at(path, fd, offset, 0, "%s; check the log with mailkeep audit "
                                   "verify", why);
        free(path);
        return -1;
    }
    free(path);
    au_chain_at_checkpoint(ch, &r, name);
    *after = offset + (nl - buf) + 1;
    return 0;
}

/* Binary search on seq: a line start at or before the first line whose seq >= seq. */
static off_t au_log_seek(int fd, off_t size, uint64_t seq)
{
    size_t bufsize = 2 * AU_LOG_MAX_LINE + 2;
    char *buf = mk_xmalloc(bufsize);
    off_t lo = 0, hi = size;

    while (hi - lo > 65536) {
        off_t mid = lo + (hi - lo) / 2, start;
        ssize_t n = mk_pread_full(fd, buf, bufsize, mid - 1);
        char *nl = n > 0 ? memchr(buf, '\n', (size_t) n) : NULL;
        struct mk_lines_cur c;
        uint64_t s;

        if (nl == NULL)
            break;
        start = mid + (nl - buf);
        if (start >= hi) {
            hi = mid;
            continue;
        }
        c.p = nl + 1;
        c.end = buf + n;
        if (!MK_LINES_LIT(&c, "{\"seq\":") || !mk_lines_u64(&c, &s))
            break;
        if (s < seq)
            lo = start;
        else
            hi = start;
    }
    free(buf);
    return lo;
}

/* A lagging head: its checkpoint must be in the file it names, with its hash. */
static int au_log_find_head(struct au_log *l, const struct au_head *h, char **error)
{
    int fd = openat(l->dirfd, h->file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), rc, found = 0;
    struct mk_lines r;
    struct mk_line ln;
    struct stat st;

    if (fd >= 0 && fstat(fd, &st) == 0) {
        mk_lines_init(&r, fd, au_log_seek(fd, st.st_size, h->seq), AU_LOG_MAX_LINE);
        while (found == 0 && (rc = mk_lines_next(&r, &ln)) > 0 && !ln.torn) {
            struct au_log_record rec;

            if (!ln.too_long && au_log_parse(ln.text, ln.len, &rec) == NULL
                && rec.seq >= h->seq)
                found = rec.seq == h->seq && rec.checkpoint
                    && memcmp(rec.hash, h->hash, 32) == 0 ? 1 : -1;
        }
        mk_lines_free(&r);
    }
    if (fd >= 0)
        close(fd);
    if (found <= 0)
        *error = mk_xasprintf("%s/%s: names checkpoint %" PRIu64 " in %s, which has not that "
                              "checkpoint: the log was cut short or rewritten; check it with "
                              "mailkeep audit verify", l->dir, AU_LOG_HEAD_FILE, h->seq, h->file);
    return found > 0 ? 0 : -1;
}

static int au_log_check_head(struct au_log *l, const struct au_chain *ch, bool any_file,
                             bool *rewrite, char **error)
{
    char *path = mk_xasprintf("%s/%s", l->dir, AU_LOG_HEAD_FILE);
    struct au_head h;
    int rc = au_head_read(path, &h, error);

    *rewrite = false;
    free(path);
    if (rc < 0)
        return -1;
    l->head_synced = rc == 1;
    if (rc == 0) {
        if (ch->have_cp) {
            *rewrite = true;
            mk_notes_addf(&l->note,
                          "%s/%s: missing; written again from the last checkpoint (%" PRIu64
                          ")", l->dir, AU_LOG_HEAD_FILE, ch->cp.seq);
        }
        return 0;
    }
    if (!mk_crypto_chain_verify(l->verify, AU_LOG_SIGNED_TEXT, h.seq, h.hash, h.sig)) {
        *error = mk_xasprintf("%s/%s: the signature does not verify", l->dir, AU_LOG_HEAD_FILE);
        return -1;
    }
    if (!ch->have_cp || h.seq > ch->cp.seq) {
        *error = mk_xasprintf("%s/%s: names checkpoint %" PRIu64 " in %s, but the last "
                              "checkpoint in the log is %" PRIu64 "%s: the log was cut short; "
                              "check it with mailkeep audit verify", l->dir, AU_LOG_HEAD_FILE,
                              h.seq, h.file, ch->have_cp ? ch->cp.seq : 0,
                              any_file ? "" : " (there are no log files)");
        return -1;
    }
    if (h.seq == ch->cp.seq) {
        if (memcmp(h.hash, ch->cp.hash, 32) == 0 && strcmp(h.file, ch->cp.file) == 0)
            return 0;
        *error = mk_xasprintf("%s/%s: checkpoint %" PRIu64 " differs from the one in %s: the "
                              "log was rewritten; check it with mailkeep audit verify", l->dir,
                              AU_LOG_HEAD_FILE, h.seq, ch->cp.file);
        return -1;
    }
    if (au_log_find_head(l, &h, error) < 0)
        return -1;
    *rewrite = true;                    /* a crash between the log's sync and the head's */
    return 0;
}

/* Move a torn last line (offset to size) to NAME.discarded and cut it off. */
static int au_log_cut(struct au_log *l, const char *name, int fd, off_t offset, off_t size,
                      char **error)
{
    char *dname = mk_xasprintf("%s" AU_DISCARDED, name), header[256], buf[65536];
    int dfd = openat(l->dirfd, dname, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                     0640);
    int n, err = 0;

    n = snprintf(header, sizeof(header), "# %lld: a torn line of %lld bytes cut from byte "
                 "%lld of %s\n", (long long) time(NULL), (long long) (size - offset),
                 (long long) offset, name);
    if (dfd < 0 || mk_write_all(dfd, header, (size_t) n) < 0)
        err = errno;
    for (off_t pos = offset; err == 0 && pos < size; ) {
        size_t want = size - pos < (off_t) sizeof(buf) ? (size_t) (size - pos) : sizeof(buf);
        ssize_t got = mk_pread_full(fd, buf, want, pos);

        if (got <= 0 || mk_write_all(dfd, buf, (size_t) got) < 0)
            err = got == 0 ? EIO : errno;
        pos += got;
    }
    if (err == 0 && (mk_write_all(dfd, "\n", 1) < 0 || fsync(dfd) < 0))
        err = errno;
    if (dfd >= 0 && close(dfd) < 0 && err == 0)
        err = errno;
    if (err == 0 && (ftruncate(fd, offset) < 0 || fsync(fd) < 0 || fsync(l->dirfd) < 0))
        err = errno;
    if (err != 0)
        *error = mk_xasprintf("%s/%s: cannot cut off a torn last line (into %s): %s", l->dir,
                              name, dname, strerror(err));
    else
        mk_notes_addf(&l->note,
                      "%s/%s: cut off a torn last line of %lld bytes (a write cut short); "
                      "kept in %s", l->dir, name, (long long) (size - offset), dname);
    free(dname);
    return err ? -1 : 0;
}

/* Find the end of the chain: the last checkpoint, and every record after it checked. */
static int au_log_recover(struct au_log *l, const struct au_files *f, struct au_chain *ch,
                          off_t *data_end, off_t *size, char **error)
{
    size_t newest = f->n - 1, from_file = 0;
    off_t cp_off = -1, from = 0;
    struct stat st;
    int rc = -1;
    int *fds = mk_xcalloc(f->n, sizeof(int));

    for (size_t i = 0; i < f->n; i++)
        fds[i] = -1;
    memset(ch, 0, sizeof(*ch));
    fds[newest] = openat(l->dirfd, f->names[newest], O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    if (fds[newest] < 0 || fstat(fds[newest], &st) < 0 || !S_ISREG(st.st_mode)) {
        *error = mk_xasprintf("%s/%s: cannot open: %s", l->dir, f->names[newest],
                              fds[newest] < 0 ? strerror(errno) : "not a regular file");
        goto out;
    }
    *size = st.st_size;
    {
        char *path = mk_xasprintf("%s/%s", l->dir, f->names[newest]);

        rc = au_log_data_end(path, fds[newest], st.st_size, data_end, error);
        free(path);
        if (rc < 0)
            goto out;
        rc = -1;
    }
    for (size_t i = f->n; i-- > 0 && cp_off < 0; ) {
        char *path = mk_xasprintf("%s/%s", l->dir, f->names[i]);
        off_t end = *data_end;
        int r;

        if (i != newest) {
            fds[i] = openat(l->dirfd, f->names[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fds[i] < 0 || fstat(fds[i], &st) < 0) {
                *error = mk_xasprintf("%s: cannot open: %s", path, strerror(errno));
                free(path);
                goto out;
            }
            end = st.st_size;         /* a torn end shows in the check that follows */
        }
        r = au_log_last_checkpoint(path, fds[i], end, &cp_off, error);
        free(path);
        if (r < 0)
            goto out;
        if (cp_off >= 0) {
            from_file = i;
            if (au_log_load_checkpoint(l, f->names[i], fds[i], cp_off, ch, &from, error) < 0)
                goto out;
        }
    }
    for (size_t i = from_file; i < f->n; i++) {
        off_t end;

        if (fds[i] < 0) {
            fds[i] = openat(l->dirfd, f->names[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fds[i] < 0 || fstat(fds[i], &st) < 0) {
                *error = mk_xasprintf("%s/%s: cannot open: %s", l->dir, f->names[i],
                                      strerror(errno));
                goto out;
            }
        }
        if (i == newest)
            end = *data_end;
        else if (fstat(fds[i], &st) == 0)
            end = st.st_size;
        else {
            *error = mk_xasprintf("%s/%s: %s", l->dir, f->names[i], strerror(errno));
            goto out;
        }
        if (au_log_check_file(l, f->names[i], fds[i], i == from_file ? from : 0, end, ch,
                              error) < 0)
            goto out;
    }
    l->fd = fds[newest];
    fds[newest] = -1;
    rc = 0;
out:
    for (size_t i = 0; i < f->n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    return rc;
}

struct au_log *au_log_open(const char *dir, EVP_PKEY *sign, EVP_PKEY *verify, char **error)
{
    struct au_log *l = mk_xcalloc(1, sizeof(*l));
    struct au_files f = {NULL, 0};
    struct au_chain ch;
    off_t data_end = 0, size = 0;
    bool rewrite = false;

    *error = NULL;
    l->fd = -1;
    l->cur_day = -1;
    l->dir = mk_xstrdup(dir);
    l->sign = sign;
    l->verify = verify;
    memset(&ch, 0, sizeof(ch));
    if (sign == NULL || verify == NULL) {
        *error = mk_xasprintf("%s: the signing key is not loaded", dir);
        goto fail;
    }
    if (mk_crypto_chain_init(&l->h) < 0) {
        *error = mk_xasprintf("%s: cannot set up SHA-256", dir);
        goto fail;
    }
    if ((l->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        *error = mk_xasprintf("%s: cannot open: %s", dir, strerror(errno));
        goto fail;
    }
    if (flock(l->dirfd, LOCK_EX | LOCK_NB) < 0) {
        *error = mk_xasprintf("%s: %s", dir, errno == EWOULDBLOCK
                              ? "in use by another writer (mailkeep-auditd)" : strerror(errno));
        goto fail;
    }
    if (au_files_list(dir, &f, error) < 0)
        goto fail;
    if (f.n > 0 && au_log_recover(l, &f, &ch, &data_end, &size, error) < 0)
        goto fail;
    if (au_log_check_head(l, &ch, f.n > 0, &rewrite, error) < 0)
        goto fail;
    if (f.n > 0) {
        memcpy(l->cur, f.names[f.n - 1], AU_LOG_NAME_LEN + 1);
        l->cur_day = au_name_day(l->cur);
        if (size > data_end && au_log_cut(l, l->cur, l->fd, data_end, size, error) < 0)
            goto fail;
        l->size = data_end;
    }
    l->seq = l->pend_seq = ch.seq;
    memcpy(l->hash, ch.hash, 32);
    memcpy(l->pend_hash, ch.hash, 32);
    l->since_cp = ch.tail;
    l->have_cp = ch.have_cp;
    l->cp = ch.cp;
    if (rewrite && au_log_write_head(l, error) < 0)
        goto fail;
    if (ch.tail > 0)
        mk_notes_addf(&l->note,
                      "%s: %" PRIu64 " records after the last checkpoint (the daemon stopped "
                      "without signing them): checked and kept", dir, ch.tail);
    free(f.names);
    return l;
fail:
    free(f.names);
    au_log_close(l);
    return NULL;
}

static int64_t au_log_tail_day(const struct au_log *l)
{
    return l->nsegs > 0 ? au_name_day(l->segs[l->nsegs - 1].name) : l->cur_day;
}

/* Make the last pending segment the one for file name. */
static void au_log_seg_for(struct au_log *l, const char *name)
{
    struct au_seg *s;

    if (l->nsegs > 0 && strcmp(l->segs[l->nsegs - 1].name, name) == 0)
        return;
    if (l->nsegs == l->segs_cap) {
        l->segs_cap = l->segs_cap ? 2 * l->segs_cap : 4;
        l->segs = mk_xrealloc(l->segs, l->segs_cap * sizeof(*l->segs));
    }
    s = &l->segs[l->nsegs++];
    memset(s, 0, sizeof(*s));
    memcpy(s->name, name, AU_LOG_NAME_LEN + 1);
    s->start = l->len;
}

static void au_log_put(struct au_log *l, const char *text, size_t len)
{
    memcpy(l->buf + l->len, text, len);
    l->len += len;
}

/* Chain one line into the last segment: a record (members) or a checkpoint (NULL). */
static int au_log_add(struct au_log *l, int64_t time, const char *members, size_t mlen,
                      int64_t pid, int64_t uid, char **error)
{
    struct au_seg *s = &l->segs[l->nsegs - 1];
    bool checkpoint = members == NULL;
    size_t start = l->len, need = l->len + mlen + 512;
    unsigned char hash[32], sig[64];
    char tbuf[AU_LOG_TIME_LEN + 1], hex[129], ebuf[256], num[96];
    uint64_t seq = l->pend_seq + 1;
    int n;

    if (need > l->cap) {
        l->cap = need > 2 * l->cap ? need : 2 * l->cap;
        l->buf = mk_xrealloc(l->buf, l->cap);
    }
    au_log_format_time(time, tbuf);
    n = snprintf(num, sizeof(num), "{\"seq\":%" PRIu64 ",\"time\":\"", seq);
    au_log_put(l, num, (size_t) n);
    au_log_put(l, tbuf, AU_LOG_TIME_LEN);
    if (checkpoint)
        au_log_put(l, "\"" AU_CP_OP, sizeof(AU_CP_OP));
    else {
        au_log_put(l, "\",", 2);
        au_log_put(l, members, mlen);
        n = snprintf(num, sizeof(num), AU_PEER_MARK "%" PRId64 ",\"uid\":%" PRId64 "}", pid,
                     uid);
        au_log_put(l, num, (size_t) n);
    }
    if (l->len - start + (checkpoint ? AU_CP_SUFFIX_LEN : AU_REC_SUFFIX_LEN) > AU_LOG_MAX_LINE) {
        l->len = start;
        *error = mk_xasprintf("a record of more than %d bytes", AU_LOG_MAX_LINE);
        return -1;
    }
    mk_crypto_chain_hash(&l->h, l->pend_hash, l->buf + start, l->len - start, hash);
    if (checkpoint && mk_crypto_chain_sign(l->sign, AU_LOG_SIGNED_TEXT, seq, hash, sig) < 0) {
        l->len = start;
        *error = mk_xasprintf("%s: cannot sign a checkpoint: %s", l->dir,
                              mk_crypto_error(ebuf, sizeof(ebuf)));
        return -1;
    }
    au_log_put(l, ",\"prev\":\"", 9);
    mk_crypto_hex(l->pend_hash, 32, hex);
    au_log_put(l, hex, 64);
    au_log_put(l, "\",\"hash\":\"", 10);
    mk_crypto_hex(hash, 32, hex);
    au_log_put(l, hex, 64);
    if (checkpoint) {
        au_log_put(l, "\",\"sig\":\"", 9);
        mk_crypto_hex(sig, 64, hex);
        au_log_put(l, hex, 128);
        s->has_cp = true;
        s->cp.seq = seq;
        memcpy(s->cp.hash, hash, 32);
        memcpy(s->cp.sig, sig, 64);
        memcpy(s->cp.file, s->name, AU_LOG_NAME_LEN + 1);
        l->since_cp = 0;
    } else
        l->since_cp++;
    au_log_put(l, "\"}\n", 3);
    l->pend_seq = seq;
    memcpy(l->pend_hash, hash, 32);
    s->last_seq = seq;
    memcpy(s->last_hash, hash, 32);
    return 0;
}

static bool au_log_time_ok(const struct au_log *l, int64_t time, char **error)
{
    if (time < 0 || time / AU_US_PER_DAY > AU_MAX_DAY) {
        *error = mk_xasprintf("%s: time %" PRId64 " out of range", l->dir, time);
        return false;
    }
    return true;
}

int au_log_append(struct au_log *l, const char *members, size_t len, int64_t pid, int64_t uid,
                  int64_t time, uint64_t *seq, char **error)
{
    int64_t day, tail;
    char name[AU_LOG_NAME_LEN + 1];

    *error = NULL;
    if (len == 0 || memchr(members, '\n', len) != NULL) {
        *error = mk_xasprintf("%s: a record's fields are not empty and have no newline", l->dir);
        return -1;
    }
    if (!au_log_time_ok(l, time, error))
        return -1;
    day = time / AU_US_PER_DAY;
    tail = au_log_tail_day(l);
    if (tail >= 0 && day > tail && l->since_cp > 0) {
        /* the day's file ends with a checkpoint */
        au_log_seg_for(l, l->nsegs > 0 ? l->segs[l->nsegs - 1].name : l->cur);
        if (au_log_add(l, time, NULL, 0, 0, 0, error) < 0)
            return -1;
    }
    if (tail < 0 || day > tail)
        au_log_file_name(time, name);
    else
        memcpy(name, l->nsegs > 0 ? l->segs[l->nsegs - 1].name : l->cur, sizeof(name));
    au_log_seg_for(l, name);
    if (au_log_add(l, time, members, len, pid, uid, error) < 0)
        return -1;
    *seq = l->pend_seq;
    return 0;
}

int au_log_checkpoint(struct au_log *l, int64_t time, char **error)
{
    *error = NULL;
    if (l->since_cp == 0)
        return 0;
    if (!au_log_time_ok(l, time, error))
        return -1;
    au_log_seg_for(l, l->nsegs > 0 ? l->segs[l->nsegs - 1].name : l->cur);
    return au_log_add(l, time, NULL, 0, 0, 0, error);
}

/* Make name the open file, creating it (and syncing its directory entry). */
static int au_log_switch(struct au_log *l, const char *name, char **error)
{
    int fd = openat(l->dirfd, name, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                    0640);
    const char *why = NULL;
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0 || fsync(l->dirfd) < 0)
        why = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        why = "not a regular file";
    if (why != NULL) {
        *error = mk_xasprintf("%s/%s: cannot open: %s", l->dir, name, why);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (l->fd >= 0)
        close(l->fd);
    l->fd = fd;
    memcpy(l->cur, name, AU_LOG_NAME_LEN + 1);
    l->cur_day = au_name_day(name);
    l->size = st.st_size;
    l->dirty = false;
    return 0;
}

int au_log_flush(struct au_log *l, char **error)
{
    size_t done = 0, shift;
    int rc = 0;

    *error = NULL;
    for (size_t i = 0; i < l->nsegs; i++) {
        struct au_seg *s = &l->segs[i];
        size_t end = i + 1 < l->nsegs ? l->segs[i + 1].start : l->len, n = end - s->start;

        if ((l->fd < 0 || strcmp(l->cur, s->name) != 0) && au_log_switch(l, s->name, error) < 0) {
            rc = -1;
            break;
        }
        if (l->dirty && ftruncate(l->fd, l->size) < 0) {
            *error = mk_xasprintf("%s/%s: cannot cut back a failed write: %s", l->dir, l->cur,
                                  strerror(errno));
            rc = -1;
            break;
        }
        l->dirty = false;
        if (mk_write_all(l->fd, l->buf + s->start, n) < 0 || fdatasync(l->fd) < 0) {
            *error = mk_xasprintf("%s/%s: cannot write: %s", l->dir, l->cur, strerror(errno));
            l->dirty = true;
            rc = -1;
            break;
        }
        l->size += (off_t) n;
        l->seq = s->last_seq;
        memcpy(l->hash, s->last_hash, 32);
        if (s->has_cp) {
            l->have_cp = true;
            l->cp = s->cp;
            l->head_stale = true;
        }
        done++;
    }
    if (done > 0) {
        shift = done < l->nsegs ? l->segs[done].start : l->len;
        memmove(l->buf, l->buf + shift, l->len - shift);
        l->len -= shift;
        memmove(l->segs, l->segs + done, (l->nsegs - done) * sizeof(*l->segs));
        l->nsegs -= done;
        for (size_t i = 0; i < l->nsegs; i++)
            l->segs[i].start -= shift;
    }
    if (l->head_stale) {
        char *head_error = NULL;

        if (au_log_write_head(l, &head_error) == 0)
            l->head_stale = false;
        else {
            mk_notes_addf(&l->note,
                          "%s (the records are safe; it is written again at the next "
                          "checkpoint)", head_error);
            free(head_error);
        }
    }
    return rc;
}

uint64_t au_log_last_seq(const struct au_log *l)
{
    return l->seq;
}

uint64_t au_log_pending_seq(const struct au_log *l)
{
    return l->pend_seq;
}

size_t au_log_pending_bytes(const struct au_log *l)
{
    return l->len;
}

uint64_t au_log_unsigned(const struct au_log *l)
{
    return l->since_cp;
}

void au_log_close(struct au_log *l)
{
    if (l == NULL)
        return;
    if (l->fd >= 0)
        close(l->fd);
    if (l->dirfd >= 0)
        close(l->dirfd);              /* and the lock with it */
    mk_crypto_chain_free(&l->h);
    free(l->buf);
    free(l->segs);
    free(l->note);
    free(l->dir);
    free(l);
}

/* ------------------------------------------------------------ reader */

int au_log_read(const char *dir, int64_t since, int64_t until,
                int (*cb)(void *arg, const struct au_log_record *r), void *arg, char **error)
{
    struct mk_crypto_chain h = {NULL, NULL};
    struct au_files f;
    unsigned char prev[32];
    uint64_t last = 0;
    bool chained = false;
    int64_t first_day = since > 0 ? since / AU_US_PER_DAY : 0;
    int64_t last_day = until > 0 ? (until - 1) / AU_US_PER_DAY : -1;
    int rc = 0;

    *error = NULL;
    if (au_files_list(dir, &f, error) < 0)
        return -1;
    if (mk_crypto_chain_init(&h) < 0) {
        *error = mk_xasprintf("%s: cannot set up SHA-256", dir);
        mk_crypto_chain_free(&h);
        free(f.names);
        return -1;
    }
    for (size_t i = 0; i < f.n && rc == 0; i++) {
        int64_t day = au_name_day(f.names[i]);
        char *path;
        struct mk_lines r;
        struct mk_line ln;
        int fd, n;

        if (day < first_day) {
            chained = false;
            continue;
        }
        if (day > last_day)
            break;
        path = mk_xasprintf("%s/%s", dir, f.names[i]);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
            *error = mk_xasprintf("%s: cannot open: %s", path, strerror(errno));
            free(path);
            rc = -1;
            break;
        }
        mk_lines_init(&r, fd, 0, AU_LOG_MAX_LINE);
        while (rc == 0 && (n = mk_lines_next(&r, &ln)) != 0) {
            struct au_log_record rec;
            unsigned char computed[32];
            const char *why = NULL;

            if (n < 0) {
                *error = mk_xasprintf("%s: read error: %s", path, strerror(errno));
                rc = -1;
                break;
            }
            if (ln.torn && i + 1 == f.n)
                break;                  /* being written */
            if (ln.torn)
                why = "no newline at the end of an older file: it was cut";
            else if (ln.too_long)
                why = "line too long";
            else
                why = au_log_parse(ln.text, ln.len, &rec);
            if (why == NULL && chained && rec.seq != last + 1)
                why = "seq does not follow the record before";
            if (why == NULL && chained && memcmp(rec.prev, prev, 32) != 0)
                why = "prev is not the hash of the record before";
            if (why == NULL) {
                mk_crypto_chain_hash(&h, rec.prev, ln.text, rec.hashed, computed);
                if (memcmp(computed, rec.hash, 32) != 0)
                    why = "the record does not match its hash";
            }
            if (why != NULL) {
                *error = mk_xasprintf("%s:%" PRIu64 ": %s; check the log with mailkeep audit "
                                      "verify", path, ln.number, why);
                rc = -1;
                break;
            }
            last = rec.seq;
            memcpy(prev, rec.hash, 32);
            chained = true;
            if (rec.time >= since && rec.time < until) {
                rec.file = path;
                rec.line = ln.number;
                rc = cb(arg, &rec);
            }
        }
        mk_lines_free(&r);
        close(fd);
        free(path);
    }
    mk_crypto_chain_free(&h);
    free(f.names);
    return rc;
}

/* ---------------------------------------------------------- verifier */

enum au_vstatus { AU_V_OK, AU_V_MALFORMED, AU_V_TORN };

struct au_vitem {
    enum au_vstatus status;
    size_t file;
    uint64_t line;
    uint64_t seq;
    bool checkpoint;
    unsigned char prev[32], hash[32], sig[64], computed[32];
    const char *why;
};

struct au_verify {
    const char *dir;
    EVP_PKEY *key;
    void (*problem)(void *arg, const struct au_log_problem *p);
    void *arg;
    struct au_files f;
    char **paths;
    size_t fi;                          /* the file being read */
    int fd;
    bool reading, eof;
    struct mk_lines r;
    struct mk_crypto_chain h;
    struct au_vitem q[AU_WINDOW];       /* the lines read ahead: a ring */
    size_t qstart, qlen;
    int problems;
    uint64_t expect;
    unsigned char prev[32];
    bool chain_known;
    uint64_t last_seq, checkpoints, records;
    uint64_t unsigned_first, unsigned_count, unsigned_line;
    size_t unsigned_file;
    bool live;
    int have_head;
    char *head_path;
    struct au_head head;
    bool head_found, head_same;
    size_t head_in;                     /* the file the head's checkpoint is in */
    struct { uint64_t from, to; } missing[AU_MAX_MISSING];
    size_t nmissing;
};

static void au_verify_report(struct au_verify *v, enum au_log_problem_kind kind,
                             const char *file, uint64_t line, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void au_verify_report(struct au_verify *v, enum au_log_problem_kind kind,
                             const char *file, uint64_t line, uint64_t seq, const char *fmt, ...)
{
    char detail[512];
    struct au_log_problem p = {kind, file, line, seq, detail};
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    v->problems++;
    if (v->problem)
        v->problem(v->arg, &p);
}

static struct au_vitem *au_verify_item(struct au_verify *v, size_t i)
{
    return &v->q[(v->qstart + i) % AU_WINDOW];
}

static void au_verify_remove(struct au_verify *v, size_t i)
{
    for (; i + 1 < v->qlen; i++)
        *au_verify_item(v, i) = *au_verify_item(v, i + 1);
    v->qlen--;
}

static void au_verify_pop(struct au_verify *v)
{
    v->qstart = (v->qstart + 1) % AU_WINDOW;
    v->qlen--;
}

/* Read ahead, across files, until the window is full; -1 on a read error. */
static int au_verify_fill(struct au_verify *v, char **error)
{
    while (!v->eof && v->qlen < AU_WINDOW) {
        struct au_vitem *it = au_verify_item(v, v->qlen);
        struct au_log_record rec;
        struct mk_line ln;
        int rc;

        if (!v->reading) {
            if (v->fi == v->f.n) {
                v->eof = true;
                break;
            }
            if ((v->fd = open(v->paths[v->fi], O_RDONLY | O_CLOEXEC)) < 0) {
                *error = mk_xasprintf("%s: cannot open: %s", v->paths[v->fi], strerror(errno));
                return -1;
            }
            mk_lines_init(&v->r, v->fd, 0, AU_LOG_MAX_LINE);
            v->reading = true;
        }
        if ((rc = mk_lines_next(&v->r, &ln)) < 0) {
            *error = mk_xasprintf("%s: read error: %s", v->paths[v->fi], strerror(errno));
            return -1;
        }
        if (rc == 0) {
            mk_lines_free(&v->r);
            close(v->fd);
            v->fd = -1;
            v->reading = false;
            v->fi++;
            continue;
        }
        memset(it, 0, sizeof(*it));
        it->file = v->fi;
        it->line = ln.number;
        it->status = ln.torn ? AU_V_TORN : AU_V_OK;
        it->why = ln.too_long ? "line too long" : au_log_parse(ln.text, ln.len, &rec);
        if (it->why != NULL && !ln.torn)
            it->status = AU_V_MALFORMED;
        if (it->status == AU_V_OK) {
            it->seq = rec.seq;
            it->checkpoint = rec.checkpoint;
            memcpy(it->prev, rec.prev, 32);
            memcpy(it->hash, rec.hash, 32);
            memcpy(it->sig, rec.sig, 64);
            mk_crypto_chain_hash(&v->h, rec.prev, ln.text, rec.hashed, it->computed);
        }
        v->qlen++;
    }
    return 0;
}

static void au_verify_note_missing(struct au_verify *v, uint64_t from, uint64_t to)
{
    if (v->nmissing == AU_MAX_MISSING) {
        memmove(v->missing, v->missing + 1, sizeof(v->missing) - sizeof(v->missing[0]));
        v->nmissing--;
    }
    v->missing[v->nmissing].from = from;
    v->missing[v->nmissing].to = to;
    v->nmissing++;
}

static bool au_verify_was_missing(const struct au_verify *v, uint64_t seq)
{
    for (size_t i = 0; i < v->nmissing; i++)
        if (seq >= v->missing[i].from && seq <= v->missing[i].to)
            return true;
    return false;
}

static void au_verify_checkpoint(struct au_verify *v, const struct au_vitem *it)
{
    if (!mk_crypto_chain_verify(v->key, AU_LOG_SIGNED_TEXT, it->seq, it->hash, it->sig))
        au_verify_report(v, AU_LOG_BAD_SIGNATURE, v->paths[it->file], it->line, it->seq,
                         "the signature of checkpoint %" PRIu64 " does not verify: the records "
                         "before it were changed and re-hashed, or the signature was altered",
                         it->seq);
    if (v->have_head == 1 && it->seq == v->head.seq) {
        v->head_found = true;
        v->head_same = memcmp(it->hash, v->head.hash, 32) == 0;
        v->head_in = it->file;
    }
    v->checkpoints++;
    v->unsigned_count = 0;
}

/* Take a record into the chain, in its place. */
static void au_verify_take(struct au_verify *v, const struct au_vitem *it)
{
    if (memcmp(it->computed, it->hash, 32) != 0)
        au_verify_report(v, AU_LOG_MODIFIED, v->paths[it->file], it->line, it->seq,
                         "record %" PRIu64 " does not match its hash: its fields were changed",
                         it->seq);
    else if (v->chain_known && memcmp(it->prev, v->prev, 32) != 0)
        au_verify_report(v, AU_LOG_MODIFIED, v->paths[it->file], it->line, it->seq,
                         "record %" PRIu64 " does not follow the hash of record %" PRIu64
                         ": the chain is broken (a record was changed and re-hashed, or "
                         "replaced)", it->seq, it->seq - 1);
    if (it->checkpoint)
        au_verify_checkpoint(v, it);
    else {
        if (v->unsigned_count++ == 0) {
            v->unsigned_first = it->seq;
            v->unsigned_line = it->line;
            v->unsigned_file = it->file;
        }
        v->records++;
    }
    memcpy(v->prev, it->hash, 32);
    v->chain_known = true;
    v->expect = it->seq + 1;
    v->last_seq = it->seq;
}

/* One step: the first line in the window, or the record that belongs before it. */
static void au_verify_step(struct au_verify *v)
{
    struct au_vitem *it = au_verify_item(v, 0);
    const char *path = v->paths[it->file];
    uint64_t seq = it->seq;

    if (it->status == AU_V_TORN) {
        if (it->file + 1 < v->f.n)
            au_verify_report(v, AU_LOG_MODIFIED, path, it->line, v->expect, "the last line has "
                             "no newline, in a file that is not the newest: the file was cut");
        else if (!v->live)
            au_verify_report(v, AU_LOG_UNSIGNED_TAIL, path, it->line, v->expect, "the last "
                             "line has no newline: a write was interrupted");
    } else if (it->status == AU_V_MALFORMED) {
        const struct au_vitem *next = v->qlen > 1 ? au_verify_item(v, 1) : NULL;

        au_verify_report(v, AU_LOG_MODIFIED, path, it->line, v->expect, "malformed line: %s",
                         it->why);
        if (next == NULL || next->status != AU_V_OK || next->seq != v->expect) {
            v->expect++;                /* it was the record expected, damaged */
            v->chain_known = false;
        }
    } else if (seq == v->expect) {
        au_verify_take(v, it);
    } else if (seq > v->expect) {
        for (size_t i = 1; i < v->qlen; i++) {
            struct au_vitem *later = au_verify_item(v, i);

            if (later->status == AU_V_OK && later->seq == v->expect) {
                struct au_vitem moved = *later;

                au_verify_report(v, AU_LOG_REORDERED, v->paths[moved.file], moved.line,
                                 moved.seq, "record %" PRIu64 " comes after record %" PRIu64,
                                 moved.seq, seq);
                au_verify_remove(v, i);
                au_verify_take(v, &moved);
                return;                 /* it stays first */
            }
        }
        if (seq == v->expect + 1)
            au_verify_report(v, AU_LOG_MISSING, path, it->line, v->expect, "record %" PRIu64
                             " is missing", v->expect);
        else
            au_verify_report(v, AU_LOG_MISSING, path, it->line, v->expect, "records %" PRIu64
                             " to %" PRIu64 " are missing", v->expect, seq - 1);
        au_verify_note_missing(v, v->expect, seq - 1);
        v->chain_known = false;
        au_verify_take(v, it);
    } else if (au_verify_was_missing(v, seq)) {
        au_verify_report(v, AU_LOG_REORDERED, path, it->line, seq, "record %" PRIu64 " comes "
                         "after record %" PRIu64, seq, v->last_seq);
    } else {
        au_verify_report(v, AU_LOG_ADDED, path, it->line, seq, "seq %" PRIu64 " again after %"
                         PRIu64 ": a record was inserted or duplicated", seq, v->expect - 1);
    }
    au_verify_pop(v);
}

static void au_verify_head(struct au_verify *v)
{
    if (v->have_head == 0) {
        if (v->checkpoints > 0)
            au_verify_report(v, AU_LOG_TRUNCATED, v->head_path, 0, 0, "the head is missing: "
                             "the end of the log cannot be checked");
        return;
    }
    if (!mk_crypto_chain_verify(v->key, AU_LOG_SIGNED_TEXT, v->head.seq, v->head.hash, v->head.sig))
        au_verify_report(v, AU_LOG_BAD_SIGNATURE, v->head_path, 0, v->head.seq, "the head's "
                         "signature does not verify");
    else if (!v->head_found)
        au_verify_report(v, AU_LOG_TRUNCATED, v->head_path, 0, v->head.seq, "the head names "
                         "checkpoint %" PRIu64 " in %s, which the log (last seq %" PRIu64
                         ") has not: it was cut short", v->head.seq, v->head.file, v->last_seq);
    else if (!v->head_same)
        au_verify_report(v, AU_LOG_TRUNCATED, v->head_path, 0, v->head.seq, "checkpoint %"
                         PRIu64 " differs from the one the head names: the log was rewritten",
                         v->head.seq);
    else if (strcmp(v->f.names[v->head_in], v->head.file) != 0)
        au_verify_report(v, AU_LOG_MODIFIED, v->head_path, 0, v->head.seq, "the head puts "
                         "checkpoint %" PRIu64 " in %s, but it is in %s: files were renamed",
                         v->head.seq, v->head.file, v->f.names[v->head_in]);
}

/* Whether a writer holds the log (its lock on the directory). */
static bool au_verify_live(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool live = false;

    if (fd < 0)
        return false;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0)
        live = errno == EWOULDBLOCK;
    close(fd);                          /* and the lock, if we took it */
    return live;
}

int au_log_verify(const char *dir, EVP_PKEY *verify,
                  void (*problem)(void *arg, const struct au_log_problem *p), void *arg,
                  struct au_log_stats *stats, char **error)
{
    struct au_verify *v = mk_xcalloc(1, sizeof(*v));
    int rc = -1;

    *error = NULL;
    memset(stats, 0, sizeof(*stats));
    v->dir = dir;
    v->key = verify;
    v->problem = problem;
    v->arg = arg;
    v->fd = -1;
    v->head_path = mk_xasprintf("%s/%s", dir, AU_LOG_HEAD_FILE);
    if (verify == NULL) {
        *error = mk_xasprintf("%s: no public key to verify with", dir);
        goto out;
    }
    if (mk_crypto_chain_init(&v->h) < 0) {
        *error = mk_xasprintf("%s: cannot set up SHA-256", dir);
        goto out;
    }
    v->live = au_verify_live(dir);
    /* the head before the files: its checkpoint is in what is listed after */
    if ((v->have_head = au_head_read(v->head_path, &v->head, error)) == -1)
        goto out;
    if (v->have_head == -2) {
        au_verify_report(v, AU_LOG_TRUNCATED, v->head_path, 0, 0, "%s", *error);
        free(*error);
        *error = NULL;
    }
    if (au_files_list(dir, &v->f, error) < 0)
        goto out;
    v->paths = mk_xcalloc(v->f.n + 1, sizeof(char *));
    for (size_t i = 0; i < v->f.n; i++)
        v->paths[i] = mk_xasprintf("%s/%s", dir, v->f.names[i]);
    v->expect = 1;
    v->chain_known = true;              /* record 1 follows 32 zero bytes */
    for (;;) {
        if (au_verify_fill(v, error) < 0)
            goto out;
        if (v->qlen == 0)
            break;
        au_verify_step(v);
    }
    if (v->unsigned_count > 0 && !v->live)
        au_verify_report(v, AU_LOG_UNSIGNED_TAIL, v->paths[v->unsigned_file], v->unsigned_line,
                         v->unsigned_first, "%" PRIu64 " records after the last checkpoint are "
                         "not signed (the daemon stopped without signing them, or they were "
                         "added without the key)", v->unsigned_count);
    if (v->have_head >= 0)
        au_verify_head(v);
    stats->files = v->f.n;
    stats->records = v->records;
    stats->checkpoints = v->checkpoints;
    stats->last_seq = v->last_seq;
    stats->live = v->live;
    stats->unsigned_live = v->live ? v->unsigned_count : 0;
    rc = v->problems;
out:
    if (v->reading) {
        mk_lines_free(&v->r);
        close(v->fd);
    }
    for (size_t i = 0; v->paths && i < v->f.n; i++)
        free(v->paths[i]);
    free(v->paths);
    free(v->f.names);
    free(v->head_path);
    mk_crypto_chain_free(&v->h);
    free(v);
    return rc;
}
