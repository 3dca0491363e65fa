/*
 * ar_log - the archive's append-only, tamper-evident log. See ar_log.h.
 */
#include "config.h"

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

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "ar_log.h"
#include "ar_store.h"
#include "mk_crypto.h"
#include "mk_lines.h"
#include "mk_util.h"

#define AR_LOG_SIGNED_TEXT	"mailkeep log checkpoint v1"
#define AR_LOG_SCAN_BLOCK	((size_t) 65536)
#define AR_LOG_SEEK_SPAN	((off_t) 65536)         /* binary search stops below this */
#define AR_LOG_WINDOW		64                      /* verify looks this far for a moved entry */
#define AR_LOG_MAX_MISSING	32
#define AR_LOG_CHECKPOINT_MARK	" kind=checkpoint "

/* Parsing: one cursor over a line, strict, no allocation */

static bool ar_spool_char(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f;
}

static bool ar_cur_spool(struct mk_lines_cur *c, char out[256])
{
    const char *p = c->p;
    size_t n;

    while (p < c->end && ar_spool_char((unsigned char) *p))
        p++;
    n = (size_t) (p - c->p);
    if (n == 0 || n > AR_LOG_MAX_SPOOL_ID)
        return false;
    memcpy(out, c->p, n);
    out[n] = '\0';
    c->p = p;
    return true;
}

/*
 * Parse one line (without its newline). Returns NULL, or what is wrong.
 * *text_len is the length of the hashed text, the line before " prev=".
 */
static const char *ar_log_parse(const char *line, size_t len, struct ar_log_entry *e,
                                size_t *text_len)
{
    struct mk_lines_cur c = {line, line + len};
    uint64_t t;

    memset(e, 0, sizeof(*e));
    if (!MK_LINES_LIT(&c, "seq=") || !mk_lines_u64(&c, &e->seq) || e->seq == 0)
        return "no valid seq= at the start";
    if (!MK_LINES_LIT(&c, " time=") || !mk_lines_u64(&c, &t) || t > INT64_MAX)
        return "no valid time= after seq=";
    e->time = (int64_t) t;
    if (MK_LINES_LIT(&c, " kind=ingest")) {
        if (!MK_LINES_LIT(&c, " object=") || !mk_lines_hex(&c, e->object, 32))
            return "no valid object= hash";
        if (!MK_LINES_LIT(&c, " envelope=") || !mk_lines_hex(&c, e->envelope, 32))
            return "no valid envelope= hash";
        if (!MK_LINES_LIT(&c, " spool=") || !ar_cur_spool(&c, e->spool_id))
            return "no valid spool= ID";
    } else if (MK_LINES_LIT(&c, " kind=tombstone")) {
        e->kind = AR_LOG_TOMBSTONE;
        if (!MK_LINES_LIT(&c, " object=") || !mk_lines_hex(&c, e->object, 32))
            return "no valid object= hash";
    } else if (MK_LINES_LIT(&c, " kind=checkpoint")) {
        e->kind = AR_LOG_CHECKPOINT;
    } else {
        return "no known kind= (ingest, tombstone, checkpoint)";
    }
    *text_len = (size_t) (c.p - line);
    if (!MK_LINES_LIT(&c, " prev=") || !mk_lines_hex(&c, e->prev, 32))
        return "no valid prev= hash";
    if (!MK_LINES_LIT(&c, " hash=") || !mk_lines_hex(&c, e->hash, 32))
        return "no valid hash=";
    if (e->kind == AR_LOG_CHECKPOINT
        && (!MK_LINES_LIT(&c, " sig=") || !mk_lines_hex(&c, e->sig, 64)))
        return "no valid sig= on a checkpoint";
    if (c.p != c.end)
        return "unexpected text after the last field";
    return NULL;
}

/* Only the seq at the start of a line, for seeking. */
static bool ar_log_line_seq(const char *line, size_t len, uint64_t *seq)
{
    struct mk_lines_cur c = {line, line + len};

    return MK_LINES_LIT(&c, "seq=") && mk_lines_u64(&c, seq);
}

bool ar_log_spool_id_valid(const char *id)
{
    size_t n = 0;

    for (; id[n] != '\0'; n++)
        if (!ar_spool_char((unsigned char) id[n]) || n >= AR_LOG_MAX_SPOOL_ID)
            return false;
    return n > 0;
}

const char *ar_log_kind_name(enum ar_log_kind kind)
{
    static const char *const names[] = {"ingest", "tombstone", "checkpoint"};

    return (unsigned) kind < MK_ARRAY_LEN(names) ? names[kind] : "unknown";
}

const char *ar_log_problem_name(enum ar_log_problem_kind kind)
{
    static const char *const names[] = {"modified", "missing", "added", "reordered",
                                        "bad-signature", "truncated", "unsigned-tail"};

    return (unsigned) kind < MK_ARRAY_LEN(names) ? names[kind] : "unknown";
}

/* Hashing and signing */

/* File helpers */


/* Seeking */

/*
 * A line start at or before the first line whose seq is greater than
 * after: 0, or a line whose seq is at most after. Binary search on
 * seq, which the lines of a sound log hold in increasing order; on
 * anything unexpected it stops early, leaving a longer scan.
 */
static off_t ar_log_seek(int fd, off_t size, uint64_t after)
{
    char buf[2 * AR_LOG_MAX_LINE + 2];
    off_t lo = 0, hi = size;

    if (after == 0)
        return 0;
    while (hi - lo > AR_LOG_SEEK_SPAN) {
        off_t mid = lo + (hi - lo) / 2, start;
        ssize_t n = mk_pread_full(fd, buf, sizeof(buf), mid - 1);
        char *nl = n > 0 ? memchr(buf, '\n', (size_t) n) : NULL;
        uint64_t seq;

        if (nl == NULL)
            break;
        start = mid + (nl - buf);
        if (start >= hi) {
            hi = mid;
            continue;
        }
        if (!ar_log_line_seq(nl + 1, (size_t) (buf + n - (nl + 1)), &seq))
            break;
        if (seq <= after)
            lo = start;
        else
            hi = start;
    }
    return lo;
}

/* The head file: "seq=N hash=H sig=S\n" */

struct ar_log_head {
    uint64_t seq;
    unsigned char hash[32];
    unsigned char sig[64];
};

/* 1 read, 0 missing, -1 unreadable, -2 malformed; *error set for -1 and -2. */
static int ar_log_read_head(const char *path, struct ar_log_head *h, char **error)
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
    ok = MK_LINES_LIT(&c, "seq=") && mk_lines_u64(&c, &h->seq) && MK_LINES_LIT(&c, " hash=")
        && mk_lines_hex(&c, h->hash, 32) && MK_LINES_LIT(&c, " sig=")
        && mk_lines_hex(&c, h->sig, 64)
        && MK_LINES_LIT(&c, "\n") && c.p == c.end;
    free(text);
    if (!ok) {
        *error = mk_xasprintf("%s: malformed (expected \"seq=N hash=H sig=S\")", path);
        return -2;
    }
    return 1;
}

/* The writer */

struct ar_log {
    char *path, *head_path;
    int fd, dirfd;
    const struct ar_keys *keys;
    struct mk_crypto_chain h;
    uint64_t seq;                       /* the last committed entry: a checkpoint */
    unsigned char hash[32], sig[64];
    off_t size;                         /* committed bytes */
    uint64_t pend_seq;                  /* the last buffered entry */
    unsigned char pend_hash[32], pend_sig[64];
    char *buf;                          /* buffered lines */
    size_t len, cap;
    char *note;
    bool head_synced;                   /* its name is durable */
    bool broken;
};

char *ar_log_take_note(struct ar_log *l)
{
    char *note = l->note;

    l->note = NULL;
    return note;
}

static char *ar_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return mk_xstrdup(".");
    if (slash == path)
        return mk_xstrdup("/");
    return mk_xstrndup(path, (size_t) (slash - path));
}

static int ar_log_write_head(struct ar_log *l, char **error)
{
    char *tmp = mk_xasprintf("%s.tmp", l->head_path), hex[65], sig[129], text[256];
    int fd, n, err = 0;

    ar_hex(l->hash, hex);
    for (int i = 0; i < 2; i++)
        ar_hex(l->sig + 32 * i, sig + 64 * i);
    n = snprintf(text, sizeof(text), "seq=%" PRIu64 " hash=%s sig=%s\n", l->seq, hex, sig);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0)
        err = errno;
    else {
        if (mk_write_all(fd, text, (size_t) n) < 0 || fsync(fd) < 0)
            err = errno;
        if (close(fd) < 0 && err == 0)
            err = errno;
        /*
         * Once the head exists, its directory is not synced: a crash may
         * bring back the previous head, which open and verify accept as
         * lagging. That saves a disk flush per commit.
         */
        if (err == 0 && (rename(tmp, l->head_path) < 0
                         || (!l->head_synced && fsync(l->dirfd) < 0)))
            err = errno;
        if (err == 0)
            l->head_synced = true;
        if (err != 0)
            unlink(tmp);
    }
    free(tmp);
    if (err != 0) {
        *error = mk_xasprintf("%s: cannot replace: %s", l->head_path, strerror(err));
        return -1;
    }
    return 0;
}

/* Where the complete lines end: before a torn last line, if any. */
static int ar_log_data_end(struct ar_log *l, off_t size, off_t *end, char **error)
{
    char buf[AR_LOG_MAX_LINE + 1];
    size_t want = size < (off_t) sizeof(buf) ? (size_t) size : sizeof(buf);
    ssize_t n;
    char *nl;

    *end = size;
    if (size == 0)
        return 0;
    if ((n = mk_pread_full(l->fd, buf, want, size - (off_t) want)) != (ssize_t) want) {
        *error = mk_xasprintf("%s: read error: %s", l->path, n < 0 ? strerror(errno) : "short");
        return -1;
    }
    if (buf[want - 1] == '\n')
        return 0;
    if ((nl = memrchr(buf, '\n', want)) != NULL)
        *end = size - (off_t) want + (nl - buf) + 1;
    else if (size <= AR_LOG_MAX_LINE)
        *end = 0;
    else {
        *error = mk_xasprintf("%s: ends in more than %d bytes without a newline: not an "
                              "interrupted append; check the log with verify", l->path,
                              AR_LOG_MAX_LINE);
        return -1;
    }
    return 0;
}

/* The start of the last checkpoint line in [0, end), or -1; end follows a newline. */
static int ar_log_last_checkpoint(struct ar_log *l, off_t end, off_t *found, char **error)
{
    char *buf = mk_xmalloc(AR_LOG_SCAN_BLOCK);
    off_t hi = end;

    *found = -1;
    while (hi > 0 && *found < 0) {
        off_t lo = hi > (off_t) AR_LOG_SCAN_BLOCK ? hi - (off_t) AR_LOG_SCAN_BLOCK : 0;
        size_t n = (size_t) (hi - lo), stop = n - 1;    /* buf[stop]: a line's newline */

        if (mk_pread_full(l->fd, buf, n, lo) != (ssize_t) n) {
            *error = mk_xasprintf("%s: read error: %s", l->path, strerror(errno));
            free(buf);
            return -1;
        }
        for (;;) {
            char *nl = memrchr(buf, '\n', stop);
            size_t start = nl ? (size_t) (nl - buf) + 1 : 0;

            if (nl == NULL && lo > 0)
                break;                  /* the line starts in an earlier block */
            if (memmem(buf + start, stop - start, AR_LOG_CHECKPOINT_MARK,
                       sizeof(AR_LOG_CHECKPOINT_MARK) - 1) != NULL) {
                *found = lo + (off_t) start;
                break;
            }
            if (start == 0)
                break;
            stop = start - 1;
        }
        if (lo == 0 || *found >= 0)
            break;
        if (stop + 1 == n) {
            *error = mk_lines_error_at(l->path, l->fd, lo, 0, "line longer than %d bytes",
                                       AR_LOG_MAX_LINE);
            free(buf);
            return -1;
        }
        hi = lo + (off_t) stop + 1;
    }
    free(buf);
    return 0;
}

/* Read and check the checkpoint at offset: its hash and signature. Sets the state. */
static int ar_log_load_checkpoint(struct ar_log *l, off_t offset, off_t *after, char **error)
{
    char buf[AR_LOG_MAX_LINE + 1], *nl;
    struct ar_log_entry e;
    unsigned char computed[32];
    const char *why;
    size_t text_len;
    ssize_t n = mk_pread_full(l->fd, buf, sizeof(buf), offset);

    if (n < 0 || (nl = memchr(buf, '\n', (size_t) n)) == NULL) {
        *error = mk_lines_error_at(l->path, l->fd, offset, 0, "cannot read the last checkpoint");
        return -1;
    }
    if ((why = ar_log_parse(buf, (size_t) (nl - buf), &e, &text_len)) != NULL
        || e.kind != AR_LOG_CHECKPOINT) {
        *error = mk_lines_error_at(l->path, l->fd, offset, 0, "malformed checkpoint: %s",
                                   why ? why : "not a checkpoint");
        return -1;
    }
    mk_crypto_chain_hash(&l->h, e.prev, buf, text_len, computed);
    if (memcmp(computed, e.hash, 32) != 0) {
        *error = mk_lines_error_at(l->path, l->fd, offset, 0, "checkpoint %" PRIu64 " does not "
                                   "match its hash: the log was modified", e.seq);
        return -1;
    }
    if (!mk_crypto_chain_verify(l->keys->verify, AR_LOG_SIGNED_TEXT, e.seq, e.hash, e.sig)) {
        *error = mk_lines_error_at(l->path, l->fd, offset, 0, "the signature of checkpoint %"
                                   PRIu64 " does not verify: the log was modified, or this is "
                                   "not its key", e.seq);
        return -1;
    }
    l->seq = e.seq;
    memcpy(l->hash, e.hash, 32);
    memcpy(l->sig, e.sig, 64);
    *after = offset + (nl - buf) + 1;
    return 0;
}

/* Check the lines after the last checkpoint: complete entries, chained to it. */
static int ar_log_check_tail(struct ar_log *l, off_t from, off_t end, uint64_t *count,
                             char **error)
{
    uint64_t seq = l->seq;
    unsigned char prev[32];
    struct mk_lines r;
    struct mk_line ln;
    int rc;

    memcpy(prev, l->hash, 32);
    *count = 0;
    mk_lines_init(&r, l->fd, from, AR_LOG_MAX_LINE);
    while ((rc = mk_lines_next(&r, &ln)) > 0 && ln.offset < end) {
        struct ar_log_entry e;
        unsigned char computed[32];
        size_t text_len;
        const char *why = ln.too_long ? "line too long"
                                      : ar_log_parse(ln.text, ln.len, &e, &text_len);

        if (why == NULL && e.seq != seq + 1)
            why = "seq does not follow the entry before";
        if (why == NULL && memcmp(e.prev, prev, 32) != 0)
            why = "prev is not the hash of the entry before";
        if (why == NULL) {
            mk_crypto_chain_hash(&l->h, e.prev, ln.text, text_len, computed);
            if (memcmp(computed, e.hash, 32) != 0)
                why = "the entry does not match its hash";
        }
        if (why != NULL) {
            *error = mk_lines_error_at(l->path, l->fd, ln.offset, 0, "after the last checkpoint: "
                                       "%s; check the log with verify", why);
            mk_lines_free(&r);
            return -1;
        }
        seq = e.seq;
        memcpy(prev, e.hash, 32);
        (*count)++;
    }
    if (rc < 0)
        *error = mk_xasprintf("%s: read error: %s", l->path, strerror(errno));
    mk_lines_free(&r);
    return rc < 0 ? -1 : 0;
}

/* The head lags behind the log: its checkpoint must be in the log. */
static int ar_log_find_checkpoint(struct ar_log *l, const struct ar_log_head *h, off_t end,
                                  char **error)
{
    struct mk_lines r;
    struct mk_line ln;
    int rc, found = 0;

    mk_lines_init(&r, l->fd, ar_log_seek(l->fd, end, h->seq - 1), AR_LOG_MAX_LINE);
    while (found == 0 && (rc = mk_lines_next(&r, &ln)) > 0 && ln.offset < end) {
        struct ar_log_entry e;
        size_t text_len;
        uint64_t seq;

        if (!ln.too_long && ar_log_line_seq(ln.text, ln.len, &seq) && seq >= h->seq)
            found = seq == h->seq && ar_log_parse(ln.text, ln.len, &e, &text_len) == NULL
                && e.kind == AR_LOG_CHECKPOINT && memcmp(e.hash, h->hash, 32) == 0 ? 1 : -1;
    }
    mk_lines_free(&r);
    if (found <= 0)
        *error = mk_xasprintf("%s: names checkpoint %" PRIu64 ", which %s has not, or not "
                              "with that hash: the log was cut short or rewritten; check it "
                              "with verify", l->head_path, h->seq, l->path);
    return found > 0 ? 0 : -1;
}

static int ar_log_check_head(struct ar_log *l, bool have_checkpoint, off_t end, bool *rewrite,
                             char **error)
{
    struct ar_log_head h;
    int rc = ar_log_read_head(l->head_path, &h, error);

    *rewrite = false;
    if (rc < 0)
        return -1;
    l->head_synced = rc == 1;           /* it outlived the process that made it */
    if (rc == 0) {
        if (have_checkpoint) {
            *rewrite = true;
            mk_notes_addf(&l->note,
                          "%s: missing; written again from the log's last checkpoint (%"
                          PRIu64 ")", l->head_path, l->seq);
        }
        return 0;
    }
    if (!mk_crypto_chain_verify(l->keys->verify, AR_LOG_SIGNED_TEXT, h.seq, h.hash, h.sig)) {
        *error = mk_xasprintf("%s: the signature does not verify", l->head_path);
        return -1;
    }
    if (!have_checkpoint || h.seq > l->seq) {
        *error = mk_xasprintf("%s: names checkpoint %" PRIu64 ", but the last checkpoint in %s "
                              "is %" PRIu64 ": the log was cut short; check it with verify",
                              l->head_path, h.seq, l->path, have_checkpoint ? l->seq : 0);
        return -1;
    }
    if (h.seq == l->seq) {
        if (memcmp(h.hash, l->hash, 32) == 0)
            return 0;
        *error = mk_xasprintf("%s: checkpoint %" PRIu64 " differs from the one in %s: the log "
                              "was rewritten; check it with verify", l->head_path, h.seq,
                              l->path);
        return -1;
    }
    if (ar_log_find_checkpoint(l, &h, end, error) < 0)
        return -1;
    *rewrite = true;                    /* a crash between the log's sync and the head's */
    return 0;
}

/* Cut the log back to offset, keeping what is cut in PATH.discarded. */
static int ar_log_cut(struct ar_log *l, off_t offset, off_t size, uint64_t entries, bool torn,
                      char **error)
{
    char *dpath = mk_xasprintf("%s.discarded", l->path), header[256], buf[65536];
    int dfd = open(dpath, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    int n, err = 0;
    char last = '\n';

    n = snprintf(header, sizeof(header), "# %lld: %" PRIu64 " uncommitted entries%s cut from "
                 "byte %lld\n", (long long) time(NULL), entries, torn ? " and a torn line" : "",
                 (long long) offset);
    if (dfd < 0 || mk_write_all(dfd, header, (size_t) n) < 0)
        err = errno;
    for (off_t pos = offset; err == 0 && pos < size; ) {
        size_t want = size - pos < (off_t) sizeof(buf) ? (size_t) (size - pos) : sizeof(buf);
        ssize_t got = mk_pread_full(l->fd, buf, want, pos);

        if (got <= 0 || mk_write_all(dfd, buf, (size_t) got) < 0)
            err = got == 0 ? EIO : errno;
        else
            last = buf[got - 1];
        pos += got;
    }
    if (err == 0 && ((last != '\n' && mk_write_all(dfd, "\n", 1) < 0) || fsync(dfd) < 0))
        err = errno;
    if (dfd >= 0 && close(dfd) < 0 && err == 0)
        err = errno;
    if (err == 0 && (ftruncate(l->fd, offset) < 0 || fsync(l->fd) < 0))
        err = errno;
    if (err != 0)
        *error = mk_xasprintf("%s: cannot cut off uncommitted entries (into %s): %s", l->path,
                              dpath, strerror(err));
    else
        mk_notes_addf(&l->note,
                      "%s: cut off %" PRIu64 " uncommitted entries%s (a crash before a commit "
                      "ended); kept in %s", l->path, entries, torn ? " and a torn last line" : "",
                      dpath);
    free(dpath);
    return err ? -1 : 0;
}

static int ar_log_open_file(struct ar_log *l, bool *created, char **error)
{
    char *dir = ar_dirname(l->path);

    *created = false;
    if ((l->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        *error = mk_xasprintf("%s: cannot open: %s", dir, strerror(errno));
        free(dir);
        return -1;
    }
    free(dir);
    l->fd = open(l->path, O_RDWR | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (l->fd >= 0)
        *created = true;
    else if (errno == EEXIST)
        l->fd = open(l->path, O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    if (l->fd < 0) {
        *error = mk_xasprintf("%s: cannot open: %s", l->path, strerror(errno));
        return -1;
    }
    if (flock(l->fd, LOCK_EX | LOCK_NB) < 0) {
        *error = mk_xasprintf("%s: %s", l->path, errno == EWOULDBLOCK
                              ? "in use by another writer" : strerror(errno));
        return -1;
    }
    return 0;
}

struct ar_log *ar_log_open(const char *path, const struct ar_keys *keys, char **error)
{
    struct ar_log *l = mk_xcalloc(1, sizeof(*l));
    off_t data_end = 0, cp_off = -1, cp_end = 0;
    bool created = false, rewrite = false;
    uint64_t tail = 0;
    struct stat st;

    *error = NULL;
    l->fd = l->dirfd = -1;
    l->path = mk_xstrdup(path);
    l->head_path = mk_xasprintf("%s.head", path);
    l->keys = keys;
    if (keys == NULL || keys->sign == NULL || keys->verify == NULL) {
        *error = mk_xasprintf("%s: the signing key is not loaded", path);
        goto fail;
    }
    if (mk_crypto_chain_init(&l->h) < 0) {
        *error = mk_xasprintf("%s: cannot set up SHA-256", path);
        goto fail;
    }
    if (ar_log_open_file(l, &created, error) < 0)
        goto fail;
    if (fstat(l->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        *error = mk_xasprintf("%s: not a regular file", path);
        goto fail;
    }
    if (ar_log_data_end(l, st.st_size, &data_end, error) < 0
        || ar_log_last_checkpoint(l, data_end, &cp_off, error) < 0
        || (cp_off >= 0 && ar_log_load_checkpoint(l, cp_off, &cp_end, error) < 0)
        || ar_log_check_tail(l, cp_end, data_end, &tail, error) < 0
        || ar_log_check_head(l, cp_off >= 0, cp_end, &rewrite, error) < 0)
        goto fail;
    if (st.st_size > cp_end && ar_log_cut(l, cp_end, st.st_size, tail, data_end < st.st_size,
                                          error) < 0)
        goto fail;
    if (created && fsync(l->dirfd) < 0) {
        *error = mk_xasprintf("%s: cannot sync its directory: %s", path, strerror(errno));
        goto fail;
    }
    if (rewrite && ar_log_write_head(l, error) < 0)
        goto fail;
    l->size = cp_end;
    l->pend_seq = l->seq;
    memcpy(l->pend_hash, l->hash, 32);
    return l;
fail:
    ar_log_close(l);
    return NULL;
}

static int ar_log_usable(struct ar_log *l, char **error)
{
    *error = NULL;
    if (!l->broken)
        return 0;
    *error = mk_xasprintf("%s: a commit failed; close and reopen the log", l->path);
    return -1;
}

static void ar_log_put(struct ar_log *l, const char *text, size_t len)
{
    memcpy(l->buf + l->len, text, len);
    l->len += len;
}

/* Buffer one entry: text is its hashed part; a checkpoint is signed. */
static int ar_log_add(struct ar_log *l, const char *text, size_t len, bool checkpoint)
{
    unsigned char hash[32], sig[64];
    char hex[129];
    size_t need;

    mk_crypto_chain_hash(&l->h, l->pend_hash, text, len, hash);
    if (checkpoint
        && mk_crypto_chain_sign(l->keys->sign, AR_LOG_SIGNED_TEXT, l->pend_seq + 1, hash, sig) < 0)
        return -1;
    need = l->len + len + 2 * (6 + 64) + (checkpoint ? 5 + 128 : 0) + 1;
    if (need > l->cap) {
        l->cap = need > 2 * l->cap ? need : 2 * l->cap;
        l->buf = mk_xrealloc(l->buf, l->cap);
    }
    ar_log_put(l, text, len);
    ar_hex(l->pend_hash, hex);
    ar_log_put(l, " prev=", 6);
    ar_log_put(l, hex, 64);
    ar_hex(hash, hex);
    ar_log_put(l, " hash=", 6);
    ar_log_put(l, hex, 64);
    if (checkpoint) {
        ar_hex(sig, hex);
        ar_hex(sig + 32, hex + 64);
        ar_log_put(l, " sig=", 5);
        ar_log_put(l, hex, 128);
        memcpy(l->pend_sig, sig, 64);
    }
    ar_log_put(l, "\n", 1);
    l->pend_seq++;
    memcpy(l->pend_hash, hash, 32);
    return 0;
}

int ar_log_append_ingest(struct ar_log *l, const unsigned char object[32],
                         const unsigned char envelope[32], const char *spool_id, int64_t time,
                         uint64_t *seq, char **error)
{
    char text[AR_LOG_MAX_LINE], object_hex[65], envelope_hex[65];
    int n;

    if (ar_log_usable(l, error) < 0)
        return -1;
    if (spool_id == NULL || !ar_log_spool_id_valid(spool_id)) {
        *error = mk_xasprintf("%s: a spool ID has 1 to %d printable characters, no space",
                              l->path, AR_LOG_MAX_SPOOL_ID);
        return -1;
    }
    if (time < 0) {
        *error = mk_xasprintf("%s: negative time %" PRId64, l->path, time);
        return -1;
    }
    ar_hex(object, object_hex);
    ar_hex(envelope, envelope_hex);
    n = snprintf(text, sizeof(text), "seq=%" PRIu64 " time=%" PRId64 " kind=ingest object=%s "
                 "envelope=%s spool=%s", l->pend_seq + 1, time, object_hex, envelope_hex,
                 spool_id);
    ar_log_add(l, text, (size_t) n, false);
    *seq = l->pend_seq;
    return 0;
}

int ar_log_append_tombstone(struct ar_log *l, const unsigned char object[32], int64_t time,
                            uint64_t *seq, char **error)
{
    char text[AR_LOG_MAX_LINE], object_hex[65];
    int n;

    if (ar_log_usable(l, error) < 0)
        return -1;
    if (time < 0) {
        *error = mk_xasprintf("%s: negative time %" PRId64, l->path, time);
        return -1;
    }
    ar_hex(object, object_hex);
    n = snprintf(text, sizeof(text), "seq=%" PRIu64 " time=%" PRId64 " kind=tombstone "
                 "object=%s", l->pend_seq + 1, time, object_hex);
    ar_log_add(l, text, (size_t) n, false);
    *seq = l->pend_seq;
    return 0;
}

int ar_log_commit(struct ar_log *l, char **error)
{
    char text[128], *head_error = NULL, ebuf[256];
    int n, err;

    if (ar_log_usable(l, error) < 0)
        return -1;
    if (l->len == 0)
        return 0;
    n = snprintf(text, sizeof(text), "seq=%" PRIu64 " time=%" PRId64 " kind=checkpoint",
                 l->pend_seq + 1, (int64_t) time(NULL));
    if (ar_log_add(l, text, (size_t) n, true) < 0) {
        ERR_error_string_n(ERR_get_error(), ebuf, sizeof(ebuf));
        ERR_clear_error();
        *error = mk_xasprintf("%s: cannot sign the checkpoint: %s", l->path, ebuf);
        return -1;
    }
    if (mk_write_all(l->fd, l->buf, l->len) < 0 || fdatasync(l->fd) < 0) {
        err = errno;
        *error = mk_xasprintf("%s: cannot write: %s", l->path, strerror(err));
        if (ftruncate(l->fd, l->size) < 0) {
            /* reopening cuts the torn entries off */
        }
        l->broken = true;
        return -1;
    }
    l->size += (off_t) l->len;
    l->len = 0;
    l->seq = l->pend_seq;
    memcpy(l->hash, l->pend_hash, 32);
    memcpy(l->sig, l->pend_sig, 64);
    if (ar_log_write_head(l, &head_error) < 0) {
        mk_notes_addf(&l->note,
                      "%s (the entries are committed; it is written again at the next "
                      "commit)", head_error);
        free(head_error);
    }
    return 0;
}

uint64_t ar_log_last_seq(const struct ar_log *l)
{
    return l->seq;
}

void ar_log_close(struct ar_log *l)
{
    if (l == NULL)
        return;
    if (l->fd >= 0)
        close(l->fd);
    if (l->dirfd >= 0)
        close(l->dirfd);
    mk_crypto_chain_free(&l->h);
    free(l->buf);
    free(l->note);
    free(l->path);
    free(l->head_path);
    free(l);
}

/* Reading */

int ar_log_read(const char *path, uint64_t after_seq,
                int (*cb)(void *arg, const struct ar_log_entry *e), void *arg, char **error)
{
    struct mk_crypto_chain h = {NULL, NULL};
    struct mk_lines r;
    struct mk_line ln;
    struct ar_log_entry e;
    unsigned char prev[32] = {0};
    uint64_t last = 0;
    bool chained;
    struct stat st;
    int fd, rc = 0;

    *error = NULL;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
        *error = mk_xasprintf("%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (mk_crypto_chain_init(&h) < 0) {
        *error = mk_xasprintf("%s: cannot set up SHA-256", path);
        mk_crypto_chain_free(&h);
        close(fd);
        return -1;
    }
    mk_lines_init(&r, fd, ar_log_seek(fd, st.st_size, after_seq), AR_LOG_MAX_LINE);
    chained = r.base == 0;              /* from the start: entry 1 follows zero */
    for (;;) {
        unsigned char computed[32];
        size_t text_len;
        const char *why;
        int n = mk_lines_next(&r, &ln);

        if (n < 0) {
            *error = mk_xasprintf("%s: read error: %s", path, strerror(errno));
            rc = -1;
            break;
        }
        if (n == 0 || ln.torn)
            break;                      /* a torn line is being written, or was never committed */
        why = ln.too_long ? "line too long" : ar_log_parse(ln.text, ln.len, &e, &text_len);
        if (why == NULL && chained && e.seq != last + 1)
            why = "seq does not follow the entry before";
        if (why == NULL && chained && memcmp(e.prev, prev, 32) != 0)
            why = "prev is not the hash of the entry before";
        if (why == NULL) {
            mk_crypto_chain_hash(&h, e.prev, ln.text, text_len, computed);
            if (memcmp(computed, e.hash, 32) != 0)
                why = "the entry does not match its hash";
        }
        if (why != NULL) {
            *error = mk_lines_error_at(path, fd, ln.offset, ln.number, "%s; check the log with "
                                       "verify", why);
            rc = -1;
            break;
        }
        last = e.seq;
        memcpy(prev, e.hash, 32);
        chained = true;
        if (e.seq > after_seq && (rc = cb(arg, &e)) != 0)
            break;
    }
    mk_lines_free(&r);
    mk_crypto_chain_free(&h);
    close(fd);
    return rc;
}

/* Verifying */

enum ar_vstatus { AR_V_OK, AR_V_MALFORMED, AR_V_TORN };

struct ar_vitem {
    enum ar_vstatus status;
    struct ar_log_entry e;
    unsigned char computed[32];
    uint64_t line;
    const char *why;
};

struct ar_verify {
    const char *path;
    EVP_PKEY *key;
    void (*problem)(void *arg, const struct ar_log_problem *p);
    int (*entry)(void *arg, const struct ar_log_entry *e);
    void *arg;
    struct mk_lines r;
    struct mk_crypto_chain h;
    bool eof;
    struct ar_vitem q[AR_LOG_WINDOW];   /* the lines read ahead: a ring */
    size_t qstart, qlen;
    int problems;
    bool stopped;
    uint64_t expect;                    /* the seq the next entry should have */
    unsigned char prev[32];             /* the hash of the last entry taken */
    bool chain_known;                   /* false just after a gap or a malformed line */
    uint64_t last_seq, checkpoints;
    uint64_t unsigned_first, unsigned_count;   /* entries since the last checkpoint */
    uint64_t unsigned_line;
    int have_head;                      /* as ar_log_read_head() returns */
    struct ar_log_head head;
    bool head_found, head_same;
    struct { uint64_t from, to; } missing[AR_LOG_MAX_MISSING];
    size_t nmissing;
};

static void ar_verify_report(struct ar_verify *v, enum ar_log_problem_kind kind, uint64_t seq,
                             uint64_t line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void ar_verify_report(struct ar_verify *v, enum ar_log_problem_kind kind, uint64_t seq,
                             uint64_t line, const char *fmt, ...)
{
    char detail[512];
    struct ar_log_problem p = {kind, seq, line, detail};
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    v->problems++;
    if (v->problem)
        v->problem(v->arg, &p);
}

static struct ar_vitem *ar_verify_item(struct ar_verify *v, size_t i)
{
    return &v->q[(v->qstart + i) % AR_LOG_WINDOW];
}

static void ar_verify_remove(struct ar_verify *v, size_t i)
{
    for (; i + 1 < v->qlen; i++)
        *ar_verify_item(v, i) = *ar_verify_item(v, i + 1);
    v->qlen--;
}

static void ar_verify_pop(struct ar_verify *v)
{
    v->qstart = (v->qstart + 1) % AR_LOG_WINDOW;
    v->qlen--;
}

/* Read ahead until the window is full; -1 on a read error. */
static int ar_verify_fill(struct ar_verify *v, char **error)
{
    while (!v->eof && v->qlen < AR_LOG_WINDOW) {
        struct ar_vitem *it = ar_verify_item(v, v->qlen);
        struct mk_line ln;
        size_t text_len;
        int rc = mk_lines_next(&v->r, &ln);

        if (rc < 0) {
            *error = mk_xasprintf("%s: read error: %s", v->path, strerror(errno));
            return -1;
        }
        if (rc == 0) {
            v->eof = true;
            break;
        }
        it->line = ln.number;
        it->status = ln.torn ? AR_V_TORN : AR_V_OK;
        it->why = ln.too_long ? "line too long"
                              : ar_log_parse(ln.text, ln.len, &it->e, &text_len);
        if (it->why != NULL && !ln.torn)
            it->status = AR_V_MALFORMED;
        if (it->status == AR_V_OK)
            mk_crypto_chain_hash(&v->h, it->e.prev, ln.text, text_len, it->computed);
        v->qlen++;
    }
    return 0;
}

static void ar_verify_note_missing(struct ar_verify *v, uint64_t from, uint64_t to)
{
    if (v->nmissing == AR_LOG_MAX_MISSING) {
        memmove(v->missing, v->missing + 1, sizeof(v->missing) - sizeof(v->missing[0]));
        v->nmissing--;
    }
    v->missing[v->nmissing].from = from;
    v->missing[v->nmissing].to = to;
    v->nmissing++;
}

static bool ar_verify_was_missing(const struct ar_verify *v, uint64_t seq)
{
    for (size_t i = 0; i < v->nmissing; i++)
        if (seq >= v->missing[i].from && seq <= v->missing[i].to)
            return true;
    return false;
}

static void ar_verify_checkpoint(struct ar_verify *v, const struct ar_vitem *it)
{
    const struct ar_log_entry *e = &it->e;

    if (!mk_crypto_chain_verify(v->key, AR_LOG_SIGNED_TEXT, e->seq, e->hash, e->sig))
        ar_verify_report(v, AR_LOG_BAD_SIGNATURE, e->seq, it->line, "the signature of "
                         "checkpoint %" PRIu64 " does not verify: the entries before it were "
                         "changed and re-hashed, or the signature was altered", e->seq);
    if (v->have_head == 1 && e->seq == v->head.seq) {
        v->head_found = true;
        v->head_same = memcmp(e->hash, v->head.hash, 32) == 0;
    }
    v->checkpoints++;
    v->unsigned_count = 0;
}

/* Take an entry into the chain, in its place. */
static void ar_verify_take(struct ar_verify *v, const struct ar_vitem *it)
{
    const struct ar_log_entry *e = &it->e;

    if (memcmp(it->computed, e->hash, 32) != 0)
        ar_verify_report(v, AR_LOG_MODIFIED, e->seq, it->line, "entry %" PRIu64 " does not "
                         "match its hash: its fields were changed", e->seq);
    else if (v->chain_known && memcmp(e->prev, v->prev, 32) != 0)
        ar_verify_report(v, AR_LOG_MODIFIED, e->seq, it->line, "entry %" PRIu64 " does not "
                         "follow the hash of entry %" PRIu64 ": the chain is broken (an entry "
                         "was changed and re-hashed, or replaced)", e->seq, e->seq - 1);
    if (e->kind == AR_LOG_CHECKPOINT)
        ar_verify_checkpoint(v, it);
    else {
        if (v->unsigned_count++ == 0) {
            v->unsigned_first = e->seq;
            v->unsigned_line = it->line;
        }
        if (v->entry && v->entry(v->arg, e) != 0)
            v->stopped = true;
    }
    memcpy(v->prev, e->hash, 32);
    v->chain_known = true;
    v->expect = e->seq + 1;
    v->last_seq = e->seq;
}

/* One step: the first line in the window, or the entry that belongs before it. */
static void ar_verify_step(struct ar_verify *v)
{
    struct ar_vitem *it = ar_verify_item(v, 0);
    uint64_t seq = it->e.seq;

    if (it->status == AR_V_TORN) {
        ar_verify_report(v, AR_LOG_UNSIGNED_TAIL, 0, it->line, "the last line has no newline: "
                         "an append was interrupted");
    } else if (it->status == AR_V_MALFORMED) {
        const struct ar_vitem *next = v->qlen > 1 ? ar_verify_item(v, 1) : NULL;

        ar_verify_report(v, AR_LOG_MODIFIED, v->expect, it->line, "malformed line: %s",
                         it->why);
        if (next == NULL || next->status != AR_V_OK || next->e.seq != v->expect) {
            v->expect++;                /* it was the entry expected, damaged */
            v->chain_known = false;
        }
    } else if (seq == v->expect) {
        ar_verify_take(v, it);
    } else if (seq > v->expect) {
        for (size_t i = 1; i < v->qlen; i++) {
            struct ar_vitem *later = ar_verify_item(v, i);

            if (later->status == AR_V_OK && later->e.seq == v->expect) {
                struct ar_vitem moved = *later;

                ar_verify_report(v, AR_LOG_REORDERED, moved.e.seq, moved.line, "entry %" PRIu64
                                 " comes after entry %" PRIu64, moved.e.seq, seq);
                ar_verify_remove(v, i);
                ar_verify_take(v, &moved);
                return;                 /* it stays first */
            }
        }
        if (seq == v->expect + 1)
            ar_verify_report(v, AR_LOG_MISSING, v->expect, it->line, "entry %" PRIu64
                             " is missing", v->expect);
        else
            ar_verify_report(v, AR_LOG_MISSING, v->expect, it->line, "entries %" PRIu64
                             " to %" PRIu64 " are missing", v->expect, seq - 1);
        ar_verify_note_missing(v, v->expect, seq - 1);
        v->chain_known = false;
        ar_verify_take(v, it);
    } else if (ar_verify_was_missing(v, seq)) {
        ar_verify_report(v, AR_LOG_REORDERED, seq, it->line, "entry %" PRIu64 " comes after "
                         "entry %" PRIu64, seq, v->last_seq);
    } else {
        ar_verify_report(v, AR_LOG_ADDED, seq, it->line, "seq %" PRIu64 " again after %" PRIu64
                         ": an entry was inserted or duplicated", seq, v->expect - 1);
    }
    ar_verify_pop(v);
}

static void ar_verify_head(struct ar_verify *v)
{
    if (v->have_head == 0) {
        if (v->checkpoints > 0)
            ar_verify_report(v, AR_LOG_TRUNCATED, 0, 0, "%s.head is missing: the end of the "
                             "log cannot be checked", v->path);
        return;
    }
    if (!mk_crypto_chain_verify(v->key, AR_LOG_SIGNED_TEXT, v->head.seq, v->head.hash, v->head.sig))
        ar_verify_report(v, AR_LOG_BAD_SIGNATURE, v->head.seq, 0, "the signature in %s.head "
                         "does not verify", v->path);
    else if (!v->head_found)
        ar_verify_report(v, AR_LOG_TRUNCATED, v->head.seq, 0, "%s.head names checkpoint %"
                         PRIu64 ", which the log (last seq %" PRIu64 ") has not: it was cut "
                         "short", v->path, v->head.seq, v->last_seq);
    else if (!v->head_same)
        ar_verify_report(v, AR_LOG_TRUNCATED, v->head.seq, 0, "checkpoint %" PRIu64 " differs "
                         "from the one in %s.head: the log was rewritten", v->head.seq,
                         v->path);
}

static int ar_verify_run(struct ar_verify *v, int fd, char **error)
{
    mk_lines_init(&v->r, fd, 0, AR_LOG_MAX_LINE);
    v->expect = 1;
    v->chain_known = true;              /* entry 1 follows 32 zero bytes */
    for (;;) {
        if (ar_verify_fill(v, error) < 0) {
            mk_lines_free(&v->r);
            return -1;
        }
        if (v->qlen == 0 || v->stopped)
            break;
        ar_verify_step(v);
    }
    mk_lines_free(&v->r);
    if (v->stopped) {
        *error = mk_xasprintf("%s: verification stopped by the caller", v->path);
        return -1;
    }
    if (v->unsigned_count > 0)
        ar_verify_report(v, AR_LOG_UNSIGNED_TAIL, v->unsigned_first, v->unsigned_line,
                         "%" PRIu64 " entries after the last checkpoint are not signed "
                         "(a commit cut short, or entries added without the key)",
                         v->unsigned_count);
    return 0;
}

int ar_log_verify(const char *dir_or_path, EVP_PKEY *verify,
                  void (*problem)(void *arg, const struct ar_log_problem *p),
                  int (*entry)(void *arg, const struct ar_log_entry *e), void *arg,
                  char **error)
{
    struct ar_verify *v = mk_xcalloc(1, sizeof(*v));
    char *path, *head_path;
    struct stat st;
    int fd = -1, rc = -1;

    *error = NULL;
    if (stat(dir_or_path, &st) == 0 && S_ISDIR(st.st_mode))
        path = mk_xasprintf("%s/log", dir_or_path);
    else
        path = mk_xstrdup(dir_or_path);
    head_path = mk_xasprintf("%s.head", path);
    v->path = path;
    v->key = verify;
    v->problem = problem;
    v->entry = entry;
    v->arg = arg;
    if (verify == NULL) {
        *error = mk_xasprintf("%s: no public key to verify with", path);
        goto out;
    }
    if (mk_crypto_chain_init(&v->h) < 0) {
        *error = mk_xasprintf("%s: cannot set up SHA-256", path);
        goto out;
    }
    if ((v->have_head = ar_log_read_head(head_path, &v->head, error)) == -1)
        goto out;
    if (v->have_head == -2) {
        ar_verify_report(v, AR_LOG_TRUNCATED, 0, 0, "%s", *error);
        free(*error);
        *error = NULL;
    }
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 && !(errno == ENOENT && v->have_head)) {
        *error = mk_xasprintf("%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    if (fd < 0)
        ar_verify_report(v, AR_LOG_TRUNCATED, 0, 0, "%s is missing, though its head is there",
                         path);
    else if (ar_verify_run(v, fd, error) < 0)
        goto out;
    if (v->have_head >= 0)
        ar_verify_head(v);
    rc = v->problems;
out:
    if (fd >= 0)
        close(fd);
    mk_crypto_chain_free(&v->h);
    free(head_path);
    free(path);
    free(v);
    return rc;
}
