/*
 * ar_store - the archive's object store. See ar_store.h.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <zstd.h>

#include "ar_store.h"
#include "mk_crypto.h"
#include "mk_lines.h"
#include "mk_util.h"

/* The object image */
#define AR_MAGIC		"MKAO"
#define AR_VERSION		1
#define AR_NONCE_LEN		12
#define AR_TAG_LEN		16
#define AR_HEADER_LEN		(4 + 1 + AR_NONCE_LEN)
#define AR_AAD_LEN		(4 + 1 + 32)
#define AR_KDF_INFO		"mailkeep archive object v1"
#define AR_ZSTD_LEVEL		3
#define AR_GCM_CHUNK		((size_t) 1 << 26)      /* EVP lengths are ints */
#define AR_KEEP_BUFFER		((size_t) 16 << 20)     /* larger scratch is freed after use */
#define AR_IMAGE_MIN		((uint64_t) AR_HEADER_LEN + AR_TAG_LEN)
#define AR_IMAGE_MAX		((uint64_t) AR_HEADER_LEN \
                                 + ZSTD_COMPRESSBOUND(AR_STORE_MAX_OBJECT) + AR_TAG_LEN)

/* The pack record around it */
#define AR_REC_MAGIC		"MKAR"
#define AR_REC_VERSION		1
#define AR_REC_LEN		48      /* magic, version, state, 2 zero bytes, hash, length */
#define AR_REC_LIVE		0
#define AR_REC_REMOVED		1
#define AR_PACK_PREFIX		"pack-"
#define AR_PACK_DIGITS		8
#define AR_PACK_LAST		99999999u
#define AR_PACK_FDS		16      /* packs kept open for reading */
#define AR_LOCK_NAME		"lock"
#define AR_INDEX_NAME		"objects.sqlite"
#define AR_WRITEBACK_STEP	((uint64_t) 1 << 20)    /* start writeback every MiB appended */
#define AR_RECOVER_BATCH	100000  /* rows per transaction when rebuilding */
#define AR_RESYNC_CHUNK		65536
#define AR_WHERE_MAX		(PATH_MAX + 160)

/* A record: in which pack, where its header starts, how long its image is. */
struct ar_where {
    uint32_t pack;
    uint64_t offset;
    uint64_t length;
};

/* A record header, parsed. */
struct ar_rec {
    int state;
    unsigned char hash[32];
    uint64_t length;
};

/* An object appended since the last sync, not yet indexed. */
struct ar_pending {
    unsigned char hash[32];
    struct ar_where at;
};

struct ar_pack_fd {
    uint32_t pack;                      /* 0: a free slot */
    int fd;
    bool dirty;                         /* written (by a removal) since the last sync */
};

/* A pack's indexed_end, to record at the next sync. */
struct ar_pack_end {
    uint32_t pack;
    uint64_t end;
};

struct ar_store {
    char *dir;
    char *objects;                      /* DIR/objects */
    char *packs;                        /* DIR/objects/packs */
    char *index_path;                   /* DIR/objects/objects.sqlite */
    bool writer;
    unsigned char master[32];
    EVP_MD *sha256;
    EVP_MD_CTX *md;
    EVP_CIPHER_CTX *cipher;             /* AES-256-GCM, set once, rekeyed per object */
    EVP_KDF_CTX *kdf;                   /* HKDF-SHA256 keyed with master */
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    unsigned char *work;                /* an object's image */
    size_t work_cap;
    unsigned char *plain;               /* ar_store_check()'s output */
    size_t plain_cap;
    sqlite3 *db;                        /* the index; a reader's may be NULL (none yet) */
    sqlite3_stmt *lookup, *insert, *delete, *set_end;
    int packs_fd, lock_fd;              /* the writer's */
    struct ar_pack_fd fds[AR_PACK_FDS];
    unsigned fd_next;
    /* The writer's pack being appended to; cur_fd < 0: start a new one. */
    int cur_fd;
    uint32_t cur_pack;
    uint64_t cur_end, cur_hinted;
    bool cur_dirty;                     /* appended to since the last sync */
    bool packs_dirty;                   /* a pack was made since the last sync */
    uint32_t synced_pack;               /* where the last sync (or open) left the packs */
    uint64_t synced_end;
    uint64_t pack_max;
    struct ar_pack_end *ends;
    size_t nends, ends_cap;
    struct ar_pending *pending;
    size_t npending, pending_cap;
    bool index_new;                     /* the writer found no index, or an empty one */
    char *note;
    char *broken;                       /* why puts and syncs are refused */
};

/* Hex */

static const signed char ar_hex_value[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15,
    ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};                                      /* value + 1; 0 = not a hex digit */

void ar_hex(const unsigned char hash[32], char out[65])
{
    mk_crypto_hex(hash, 32, out);
}

int ar_unhex(const char *hex, unsigned char hash[32])
{
    unsigned char out[32];

    for (int i = 0; i < 32; i++) {
        int hi = ar_hex_value[(unsigned char) hex[2 * i]];
        int lo = hi ? ar_hex_value[(unsigned char) hex[2 * i + 1]] : 0;

        if (hi == 0 || lo == 0)
            return -1;
        out[i] = (unsigned char) ((hi - 1) << 4 | (lo - 1));
    }
    if (hex[64] != '\0')
        return -1;
    memcpy(hash, out, sizeof(out));
    return 0;
}

void ar_sha256(const void *data, size_t len, unsigned char out[32])
{
    mk_crypto_sha256(data, len, out);
}

const char *ar_check_name(enum ar_check c)
{
    static const char *const names[] = {"ok", "missing", "corrupt", "mismatch", "I/O error"};

    return (unsigned) c < MK_ARRAY_LEN(names) ? names[c] : "unknown";
}

/* Helpers */
static const char *ar_ossl_error(char *buf, size_t size)
{
    unsigned long e = ERR_get_error();

    if (e == 0)
        snprintf(buf, size, "OpenSSL error");
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return buf;
}

static void ar_reserve(unsigned char **buf, size_t *cap, size_t n)
{
    if (n > *cap) {
        free(*buf);
        *buf = mk_xmalloc(n);
        *cap = n;
    }
}

static void ar_trim(unsigned char **buf, size_t *cap)
{
    if (*cap > AR_KEEP_BUFFER) {
        free(*buf);
        *buf = NULL;
        *cap = 0;
    }
}

static int ar_make_dir(const char *path, char **error)
{
    struct stat st;

    if (mkdir(path, 0700) == 0)
        return 1;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    *error = mk_xasprintf("%s: cannot create directory: %s", path,
                          errno == EEXIST ? "exists and is not a directory" : strerror(errno));
    return -1;
}

static int ar_fsync_dir(const char *path, char **error)
{
    if (mk_fsync_dir(path) < 0) {
        *error = mk_xasprintf("%s: cannot sync directory: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int ar_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pwrite(fd, (const char *) buf + done, len - done, (off_t) (off + done));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        done += (size_t) n;
    }
    return 0;
}

/* A record's header and image in one system call, as a rule. */
static int ar_pwrite_record(int fd, const unsigned char head[AR_REC_LEN],
                            const unsigned char *image, size_t len, uint64_t off)
{
    ssize_t n;

    do {
        struct iovec iov[2] = {{(void *) head, AR_REC_LEN}, {(void *) image, len}};

        n = pwritev(fd, iov, 2, (off_t) off);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if ((size_t) n < AR_REC_LEN)        /* short writes: finish piece by piece */
        return ar_pwrite_all(fd, head + n, AR_REC_LEN - (size_t) n, off + (uint64_t) n) < 0
            || ar_pwrite_all(fd, image, len, off + AR_REC_LEN) < 0 ? -1 : 0;
    n -= AR_REC_LEN;
    return ar_pwrite_all(fd, image + n, len - (size_t) n, off + AR_REC_LEN + (uint64_t) n);
}

static void ar_put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char) (v & 0xff);
}

static uint64_t ar_get_be64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

char *ar_store_take_note(struct ar_store *s)
{
    char *note = s->note;

    s->note = NULL;
    return note;
}

/* Records and packs */

static void ar_pack_path(const struct ar_store *s, uint32_t pack, char path[PATH_MAX])
{
    snprintf(path, PATH_MAX, "%s/" AR_PACK_PREFIX "%08" PRIu32, s->packs, pack);
}

/* "PACK, record at offset N (object HEX)": where a problem is. */
static void ar_where_text(const struct ar_store *s, const unsigned char hash[32],
                          const struct ar_where *w, char out[AR_WHERE_MAX])
{
    char path[PATH_MAX], hex[65];

    ar_pack_path(s, w->pack, path);
    ar_hex(hash, hex);
    snprintf(out, AR_WHERE_MAX, "%s, record at offset %" PRIu64 " (object %s)", path,
             w->offset, hex);
}

static void ar_rec_make(unsigned char head[AR_REC_LEN], int state, const unsigned char *hash,
                        uint64_t length)
{
    memcpy(head, AR_REC_MAGIC, 4);
    head[4] = AR_REC_VERSION;
    head[5] = (unsigned char) state;
    head[6] = head[7] = 0;
    if (hash != NULL)
        memcpy(head + 8, hash, 32);
    else
        memset(head + 8, 0, 32);
    ar_put_be64(head + 40, length);
}

/* Whether head is a well-formed record header, its length within what an image can be. */
static bool ar_rec_parse(const unsigned char head[AR_REC_LEN], struct ar_rec *r)
{
    if (memcmp(head, AR_REC_MAGIC, 4) != 0 || head[4] != AR_REC_VERSION
        || (head[5] != AR_REC_LIVE && head[5] != AR_REC_REMOVED) || head[6] != 0 || head[7] != 0)
        return false;
    r->state = head[5];
    memcpy(r->hash, head + 8, 32);
    r->length = ar_get_be64(head + 40);
    return r->length >= AR_IMAGE_MIN && r->length <= AR_IMAGE_MAX;
}

enum ar_scan {
    AR_SCAN_RECORD,                     /* a complete record at off */
    AR_SCAN_TORN,                       /* a header, or a record, cut short by the end */
    AR_SCAN_MALFORMED,                  /* no record header at off */
    AR_SCAN_ERROR                       /* errno says */
};

/* What is at off, in a pack of size bytes (off < size). */
static enum ar_scan ar_scan_next(int fd, uint64_t size, uint64_t off, struct ar_rec *r)
{
    unsigned char head[AR_REC_LEN];
    ssize_t n = mk_pread_full(fd, head, AR_REC_LEN, (off_t) off);

    if (n < 0)
        return AR_SCAN_ERROR;
    if ((size_t) n < AR_REC_LEN || off + AR_REC_LEN > size)
        return AR_SCAN_TORN;
    if (!ar_rec_parse(head, r))
        return AR_SCAN_MALFORMED;
    if (r->length > size - off - AR_REC_LEN)
        return AR_SCAN_TORN;
    return AR_SCAN_RECORD;
}

/*
 * The offset of the first complete record at or after from, or -1 when
 * none is there; -2 on a read error. A well-formed header has 8 fixed
 * bytes and a bounded length: inside ciphertext, a false one is
 * practically impossible.
 */
static int64_t ar_resync(int fd, uint64_t size, uint64_t from)
{
    unsigned char *buf = mk_xmalloc(AR_RESYNC_CHUNK + AR_REC_LEN);
    int64_t found = -1;

    for (uint64_t pos = from; found == -1 && pos + AR_REC_LEN <= size; pos += AR_RESYNC_CHUNK) {
        ssize_t n = mk_pread_full(fd, buf, AR_RESYNC_CHUNK + AR_REC_LEN, (off_t) pos);
        const unsigned char *p = buf, *end;

        if (n < 0) {
            int e = errno;

            free(buf);
            errno = e;
            return -2;
        }
        end = buf + ((size_t) n < AR_RESYNC_CHUNK ? (size_t) n : AR_RESYNC_CHUNK);
        while (p < end && (p = memchr(p, AR_REC_MAGIC[0], (size_t) (end - p))) != NULL) {
            uint64_t at = pos + (uint64_t) (p - buf);
            struct ar_rec r;

            if (at + AR_REC_LEN > size || p + AR_REC_LEN > buf + n)
                break;
            if (ar_rec_parse(p, &r) && r.length <= size - at - AR_REC_LEN) {
                found = (int64_t) at;
                break;
            }
            p++;
        }
        if ((size_t) n < AR_RESYNC_CHUNK + AR_REC_LEN)
            break;
    }
    free(buf);
    return found;
}

static int ar_pack_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

    return x < y ? -1 : x > y;
}

/* The packs' numbers, in order; a reader without a packs directory has none. */
static int ar_list_packs(struct ar_store *s, uint32_t **packs, size_t *npacks, char **error)
{
    DIR *d = opendir(s->packs);
    size_t cap = 0;
    struct dirent *e;

    *packs = NULL;
    *npacks = 0;
    if (d == NULL) {
        if (errno == ENOENT && !s->writer)
            return 0;
        *error = mk_xasprintf("%s: cannot read directory: %s", s->packs, strerror(errno));
        return -1;
    }
    while ((errno = 0, e = readdir(d)) != NULL) {
        const char *digits = e->d_name + strlen(AR_PACK_PREFIX);
        uint32_t pack = 0;
        int i;

        if (strncmp(e->d_name, AR_PACK_PREFIX, strlen(AR_PACK_PREFIX)) != 0)
            continue;
        for (i = 0; i < AR_PACK_DIGITS && digits[i] >= '0' && digits[i] <= '9'; i++)
            pack = pack * 10 + (uint32_t) (digits[i] - '0');
        if (i < AR_PACK_DIGITS || digits[i] != '\0' || pack == 0)
            continue;                   /* a foreign name */
        if (*npacks == cap) {
            cap = cap ? 2 * cap : 64;
            *packs = mk_xrealloc(*packs, cap * sizeof(**packs));
        }
        (*packs)[(*npacks)++] = pack;
    }
    if (errno != 0) {
        *error = mk_xasprintf("%s: cannot read directory: %s", s->packs, strerror(errno));
        closedir(d);
        free(*packs);
        *packs = NULL;
        *npacks = 0;
        return -1;
    }
    closedir(d);
    if (*npacks > 1)
        qsort(*packs, *npacks, sizeof(**packs), ar_pack_cmp);
    return 0;
}

/* A pack opened for reading (a writer's also for removing), from a few kept open. */
static int ar_pack_fd(struct ar_store *s, uint32_t pack, struct ar_pack_fd **slot, char **error)
{
    struct ar_pack_fd *f;
    char path[PATH_MAX];
    int e;

    for (int i = 0; i < AR_PACK_FDS; i++)
        if (s->fds[i].pack == pack) {
            if (slot)
                *slot = &s->fds[i];
            return s->fds[i].fd;
        }
    f = &s->fds[s->fd_next++ % AR_PACK_FDS];
    if (f->pack != 0) {
        if (f->dirty && fdatasync(f->fd) < 0) {
            e = errno;
            ar_pack_path(s, f->pack, path);
            *error = mk_xasprintf("%s: cannot sync: %s", path, strerror(e));
            free(s->broken);
            s->broken = mk_xstrdup(*error);
            errno = e;
            return -1;
        }
        close(f->fd);
        f->pack = 0;
    }
    ar_pack_path(s, pack, path);
    f->fd = open(path, (s->writer ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC);
    if (f->fd < 0) {
        e = errno;
        *error = mk_xasprintf("%s: cannot open: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    f->pack = pack;
    f->dirty = false;
    if (slot)
        *slot = f;
    return f->fd;
}

/* The index */

static const char ar_index_schema[] =
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA secure_delete=ON;"
    "CREATE TABLE IF NOT EXISTS objects (hash BLOB PRIMARY KEY, pack INTEGER NOT NULL,"
    " offset INTEGER NOT NULL, length INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS packs (pack INTEGER PRIMARY KEY, indexed_end INTEGER NOT NULL);";

static int ar_index_error(struct ar_store *s, const char *what, char **error)
{
    *error = mk_xasprintf("%s: %s: %s", s->index_path, what,
                          s->db ? sqlite3_errmsg(s->db) : "out of memory");
    return -1;
}

static int ar_index_exec(struct ar_store *s, const char *sql, char **error)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return ar_index_error(s, sql, error);
    return 0;
}

static void ar_index_close(struct ar_store *s)
{
    sqlite3_finalize(s->lookup);
    sqlite3_finalize(s->insert);
    sqlite3_finalize(s->delete);
    sqlite3_finalize(s->set_end);
    s->lookup = s->insert = s->delete = s->set_end = NULL;
    sqlite3_close(s->db);
    s->db = NULL;
}

static int ar_index_prepare(struct ar_store *s, const char *sql, sqlite3_stmt **st, char **error)
{
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return ar_index_error(s, "prepare", error);
    return 0;
}

/*
 * The writer's index, made when missing (mode 0600: SQLite gives its
 * -wal and -shm files the same); a reader's, read-only, when there is
 * one with its tables: until then the reader sees no object.
 */
static int ar_index_open(struct ar_store *s, char **error)
{
    char *msg = NULL;

    if (s->db != NULL)
        return 0;
    if (s->writer) {
        int fd = open(s->index_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        struct stat st;

        s->index_new = fd >= 0 && fstat(fd, &st) == 0 && st.st_size == 0;
        if (fd < 0) {
            *error = mk_xasprintf("%s: cannot open: %s", s->index_path, strerror(errno));
            return -1;
        }
        close(fd);
    } else if (access(s->index_path, F_OK) < 0) {
        return 0;
    }
    if (sqlite3_open_v2(s->index_path, &s->db, (s->writer ? SQLITE_OPEN_READWRITE
                                                : SQLITE_OPEN_READONLY) | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        ar_index_error(s, "cannot open", error);
        ar_index_close(s);
        return -1;
    }
    sqlite3_busy_timeout(s->db, 10000);
    if (s->writer && sqlite3_exec(s->db, ar_index_schema, NULL, NULL, &msg) != SQLITE_OK) {
        *error = mk_xasprintf("%s: cannot set up the index: %s", s->index_path,
                              msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        ar_index_close(s);
        return -1;
    }
    if (!s->writer && sqlite3_prepare_v3(s->db, "SELECT pack, offset, length FROM objects"
                                         " WHERE hash = ?", -1, SQLITE_PREPARE_PERSISTENT,
                                         &s->lookup, NULL) != SQLITE_OK) {
        if (strstr(sqlite3_errmsg(s->db), "no such table") != NULL) {
            ar_index_close(s);          /* a writer is making it */
            return 0;
        }
        ar_index_error(s, "prepare", error);
        ar_index_close(s);
        return -1;
    }
    if (s->writer
        && (ar_index_prepare(s, "SELECT pack, offset, length FROM objects WHERE hash = ?",
                             &s->lookup, error) < 0
            || ar_index_prepare(s, "INSERT OR IGNORE INTO objects (hash, pack, offset, length)"
                                " VALUES (?, ?, ?, ?)", &s->insert, error) < 0
            || ar_index_prepare(s, "DELETE FROM objects WHERE hash = ?", &s->delete, error) < 0
            || ar_index_prepare(s, "INSERT OR REPLACE INTO packs (pack, indexed_end)"
                                " VALUES (?, ?)", &s->set_end, error) < 0)) {
        ar_index_close(s);
        return -1;
    }
    return 0;
}

/* 1 with *w when the index has hash, 0 when not, -1 on error. */
static int ar_index_find(struct ar_store *s, const unsigned char hash[32], struct ar_where *w,
                         char **error)
{
    int rc;

    if (ar_index_open(s, error) < 0)
        return -1;
    if (s->db == NULL)
        return 0;
    sqlite3_bind_blob(s->lookup, 1, hash, 32, SQLITE_STATIC);
    rc = sqlite3_step(s->lookup);
    if (rc == SQLITE_ROW) {
        sqlite3_int64 pack = sqlite3_column_int64(s->lookup, 0);
        sqlite3_int64 off = sqlite3_column_int64(s->lookup, 1);
        sqlite3_int64 len = sqlite3_column_int64(s->lookup, 2);

        /* an impossible row is reported by ar_store_load() */
        w->pack = pack >= 1 && pack <= AR_PACK_LAST ? (uint32_t) pack : 0;
        w->offset = off >= 0 ? (uint64_t) off : 0;
        w->length = len >= 0 ? (uint64_t) len : 0;
    }
    sqlite3_reset(s->lookup);
    sqlite3_clear_bindings(s->lookup);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return ar_index_error(s, "lookup", error);
    return rc == SQLITE_ROW;
}

static int ar_index_step(struct ar_store *s, sqlite3_stmt *st, const char *what, char **error)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : ar_index_error(s, what, error);
}

static int ar_index_insert(struct ar_store *s, const unsigned char hash[32],
                           const struct ar_where *w, char **error)
{
    sqlite3_bind_blob(s->insert, 1, hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(s->insert, 2, w->pack);
    sqlite3_bind_int64(s->insert, 3, (sqlite3_int64) w->offset);
    sqlite3_bind_int64(s->insert, 4, (sqlite3_int64) w->length);
    return ar_index_step(s, s->insert, "insert", error);
}

static int ar_index_set_end(struct ar_store *s, uint32_t pack, uint64_t end, char **error)
{
    sqlite3_bind_int64(s->set_end, 1, pack);
    sqlite3_bind_int64(s->set_end, 2, (sqlite3_int64) end);
    return ar_index_step(s, s->set_end, "record a pack's end", error);
}


/* Crypto */

static int ar_store_crypto_init(struct ar_store *s)
{
    EVP_CIPHER *aes = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    EVP_KDF *hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    OSSL_PARAM params[3];
    int ok;

    s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    s->md = EVP_MD_CTX_new();
    s->cipher = EVP_CIPHER_CTX_new();
    s->kdf = hkdf ? EVP_KDF_CTX_new(hkdf) : NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, s->master,
                                                  sizeof(s->master));
    params[2] = OSSL_PARAM_construct_end();
    ok = aes && s->sha256 && s->md && s->cipher && s->kdf
        && EVP_CipherInit_ex(s->cipher, aes, NULL, NULL, NULL, 1) == 1
        && EVP_KDF_CTX_set_params(s->kdf, params) == 1;
    EVP_CIPHER_free(aes);               /* the context holds its own reference */
    EVP_KDF_free(hkdf);
    return ok ? 0 : -1;
}

static int ar_store_zstd_init(struct ar_store *s)
{
    if ((s->cctx = ZSTD_createCCtx()) == NULL || (s->dctx = ZSTD_createDCtx()) == NULL)
        return -1;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_compressionLevel, AR_ZSTD_LEVEL))
        || ZSTD_isError(ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_checksumFlag, 0))
        || ZSTD_isError(ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_contentSizeFlag, 1)))
        return -1;
    return 0;
}

static int ar_store_hash(struct ar_store *s, const void *data, size_t len, unsigned char out[32])
{
    return EVP_DigestInit_ex(s->md, s->sha256, NULL) == 1
        && EVP_DigestUpdate(s->md, data, len) == 1
        && EVP_DigestFinal_ex(s->md, out, NULL) == 1 ? 0 : -1;
}

static int ar_store_key(struct ar_store *s, const unsigned char hash[32], unsigned char key[32])
{
    unsigned char info[sizeof(AR_KDF_INFO) - 1 + 32];
    OSSL_PARAM params[2];

    memcpy(info, AR_KDF_INFO, sizeof(AR_KDF_INFO) - 1);
    memcpy(info + sizeof(AR_KDF_INFO) - 1, hash, 32);
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, sizeof(info));
    params[1] = OSSL_PARAM_construct_end();
    return EVP_KDF_derive(s->kdf, key, 32, params) == 1 ? 0 : -1;
}

static void ar_store_aad(const unsigned char hash[32], unsigned char aad[AR_AAD_LEN])
{
    memcpy(aad, AR_MAGIC, 4);
    aad[4] = AR_VERSION;
    memcpy(aad + 5, hash, 32);
}

/* Encrypt or decrypt buf in place, len bytes, after the additional data. */
static int ar_store_gcm(struct ar_store *s, int enc, const unsigned char hash[32],
                        const unsigned char *nonce, unsigned char *buf, size_t len)
{
    unsigned char key[32], aad[AR_AAD_LEN];
    int outl, ok;

    ar_store_aad(hash, aad);
    ok = ar_store_key(s, hash, key) == 0
        && EVP_CipherInit_ex(s->cipher, NULL, NULL, key, nonce, enc) == 1
        && EVP_CipherUpdate(s->cipher, NULL, &outl, aad, sizeof(aad)) == 1;
    OPENSSL_cleanse(key, sizeof(key));
    for (size_t done = 0; ok && done < len; ) {
        size_t n = len - done < AR_GCM_CHUNK ? len - done : AR_GCM_CHUNK;

        ok = EVP_CipherUpdate(s->cipher, buf + done, &outl, buf + done, (int) n) == 1;
        done += n;
    }
    return ok ? 0 : -1;
}

/* Build the object's image in s->work; returns its length, or 0 on failure. */
static size_t ar_store_seal(struct ar_store *s, const void *data, size_t len,
                            const unsigned char hash[32], char **error)
{
    size_t bound = ZSTD_compressBound(len), clen;
    unsigned char *nonce;
    char ebuf[256];
    int outl;

    ar_reserve(&s->work, &s->work_cap, AR_HEADER_LEN + bound + AR_TAG_LEN);
    memcpy(s->work, AR_MAGIC, 4);
    s->work[4] = AR_VERSION;
    nonce = s->work + 5;
    clen = ZSTD_compress2(s->cctx, s->work + AR_HEADER_LEN, bound, data, len);
    if (ZSTD_isError(clen)) {
        *error = mk_xasprintf("%s: cannot compress: %s", s->dir, ZSTD_getErrorName(clen));
        return 0;
    }
    if (RAND_bytes(nonce, AR_NONCE_LEN) != 1
        || ar_store_gcm(s, 1, hash, nonce, s->work + AR_HEADER_LEN, clen) < 0
        || EVP_CipherFinal_ex(s->cipher, s->work + AR_HEADER_LEN + clen, &outl) != 1
        || EVP_CIPHER_CTX_ctrl(s->cipher, EVP_CTRL_GCM_GET_TAG, AR_TAG_LEN,
                               s->work + AR_HEADER_LEN + clen) != 1) {
        *error = mk_xasprintf("%s: cannot encrypt: %s", s->dir, ar_ossl_error(ebuf, sizeof(ebuf)));
        return 0;
    }
    return AR_HEADER_LEN + clen + AR_TAG_LEN;
}

/* Open, recover and close */

/* The packs table: each pack's indexed_end, in pack order. */
static int ar_index_ends(struct ar_store *s, struct ar_pack_end **ends, size_t *nends,
                         char **error)
{
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc;

    *ends = NULL;
    *nends = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT pack, indexed_end FROM packs ORDER BY pack", -1, &st,
                           NULL) != SQLITE_OK)
        return ar_index_error(s, "read the packs table", error);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_int64 pack = sqlite3_column_int64(st, 0), end = sqlite3_column_int64(st, 1);

        if (pack < 1 || pack > AR_PACK_LAST)
            continue;
        if (*nends == cap) {
            cap = cap ? 2 * cap : 64;
            *ends = mk_xrealloc(*ends, cap * sizeof(**ends));
        }
        (*ends)[*nends].pack = (uint32_t) pack;
        (*ends)[(*nends)++].end = end > 0 ? (uint64_t) end : 0;
    }
    if (rc != SQLITE_DONE) {
        ar_index_error(s, "read the packs table", error);
        sqlite3_finalize(st);
        free(*ends);
        *ends = NULL;
        return -1;
    }
    sqlite3_finalize(st);
    return 0;
}

static uint64_t ar_known_end(const struct ar_pack_end *ends, size_t nends, uint32_t pack)
{
    size_t lo = 0, hi = nends;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (ends[mid].pack == pack)
            return ends[mid].end;
        if (ends[mid].pack < pack)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;                           /* never indexed: scan it all */
}

struct ar_recovery {
    uint64_t found;                     /* records indexed */
    size_t batch;                       /* in the open transaction */
};

/* Index one pack's complete records from off on; cut off a tail that is none. */
static int ar_recover_pack(struct ar_store *s, uint32_t pack, int fd, uint64_t size, uint64_t off,
                           struct ar_recovery *rec, char **error)
{
    char path[PATH_MAX];

    ar_pack_path(s, pack, path);
    while (off < size) {
        struct ar_rec r;
        enum ar_scan k = ar_scan_next(fd, size, off, &r);
        int64_t next = -1;

        if (k == AR_SCAN_RECORD) {
            struct ar_where w = {pack, off, r.length};

            off += AR_REC_LEN + r.length;
            if (r.state != AR_REC_LIVE)
                continue;
            if (ar_index_insert(s, r.hash, &w, error) < 0)
                return -1;
            rec->found++;
            if (++rec->batch >= AR_RECOVER_BATCH) {
                /* a long rebuild cut short keeps what it did */
                if (ar_index_set_end(s, pack, off, error) < 0
                    || ar_index_exec(s, "COMMIT", error) < 0
                    || ar_index_exec(s, "BEGIN IMMEDIATE", error) < 0)
                    return -1;
                rec->batch = 0;
            }
            continue;
        }
        if (k == AR_SCAN_ERROR || (next = ar_resync(fd, size, off + 1)) == -2) {
            *error = mk_xasprintf("%s: read error: %s", path, strerror(errno));
            return -1;
        }
        if (next >= 0) {
            mk_notes_addf(&s->note,
                          "%s: %" PRIu64 " bytes at offset %" PRIu64 " are no record "
                          "(damage): skipped", path, (uint64_t) next - off, off);
            off = (uint64_t) next;
            continue;
        }
        if (ftruncate(fd, (off_t) off) < 0 || fsync(fd) < 0) {
            *error = mk_xasprintf("%s: cannot cut off its torn tail: %s", path, strerror(errno));
            return -1;
        }
        mk_notes_addf(&s->note,
                      "%s: %s of %" PRIu64 " bytes at offset %" PRIu64 " (an append a crash "
                      "cut short): truncated", path, k == AR_SCAN_TORN ? "an incomplete record"
                      : "a tail that is no record", size - off, off);
        size = off;
    }
    return ar_index_set_end(s, pack, off, error);
}

/*
 * Index what the packs hold past their indexed_end, all of them when the
 * index is new, and find where to append.
 */
static int ar_store_recover(struct ar_store *s, char **error)
{
    struct ar_recovery rec = {0, 0};
    struct ar_pack_end *known = NULL;
    uint32_t *packs = NULL;
    size_t npacks = 0, nknown = 0;
    bool shorter_last = false;
    char path[PATH_MAX];
    struct stat st;
    int rc = -1;

    if (ar_list_packs(s, &packs, &npacks, error) < 0
        || ar_index_ends(s, &known, &nknown, error) < 0
        || ar_index_exec(s, "BEGIN IMMEDIATE", error) < 0)
        goto out;
    for (size_t i = 0; i < npacks; i++) {
        uint64_t from = ar_known_end(known, nknown, packs[i]);
        int fd;

        ar_pack_path(s, packs[i], path);
        if ((fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
            *error = mk_xasprintf("%s: cannot open: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            goto rollback;
        }
        if ((uint64_t) st.st_size < from) {
            mk_notes_addf(&s->note,
                          "%s: %lld bytes, fewer than the %" PRIu64 " indexed: the objects "
                          "past its end are lost (restore the pack from a copy)", path,
                          (long long) st.st_size, from);
            shorter_last = i + 1 == npacks;
        } else if ((uint64_t) st.st_size > from
                   && ar_recover_pack(s, packs[i], fd, (uint64_t) st.st_size, from, &rec,
                                      error) < 0) {
            close(fd);
            goto rollback;
        }
        close(fd);
    }
    if (ar_index_exec(s, "COMMIT", error) < 0)
        goto rollback;
    if (npacks > 0 && s->index_new)
        mk_notes_addf(&s->note,
                      "%s: index rebuilt from %zu pack(s): %" PRIu64 " object(s)",
                      s->index_path, npacks, rec.found);
    else if (rec.found > 0)
        mk_notes_addf(&s->note,
                      "%s: %" PRIu64 " object(s) appended but not indexed (a crash before "
                      "the sync's end) indexed now", s->packs, rec.found);
    if (npacks > 0) {
        s->cur_pack = packs[npacks - 1];
        ar_pack_path(s, s->cur_pack, path);
        if ((s->cur_fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)) < 0
            || fstat(s->cur_fd, &st) < 0) {
            *error = mk_xasprintf("%s: cannot open: %s", path, strerror(errno));
            goto out;
        }
        s->cur_end = s->cur_hinted = (uint64_t) st.st_size;
        if (shorter_last) {             /* appends would land where the index points */
            close(s->cur_fd);
            s->cur_fd = -1;
        }
        s->synced_pack = s->cur_pack;
        s->synced_end = s->cur_end;
    }
    rc = 0;
    goto out;
rollback:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
    free(packs);
    free(known);
    return rc;
}

static int ar_store_pack_limit(struct ar_store *s, char **error)
{
    const char *v = getenv("MK_AR_PACK_MAX");      /* for tests */
    unsigned long long n;
    char *end;

    s->pack_max = AR_STORE_PACK_MAX;
    if (v == NULL || *v == '\0')
        return 0;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || n == 0 || *v == '-') {
        *error = mk_xasprintf("MK_AR_PACK_MAX=%s: not a number of bytes", v);
        return -1;
    }
    s->pack_max = n;
    return 0;
}

static int ar_store_open_writer(struct ar_store *s, char **error)
{
    int made;

    if (ar_make_dir(s->dir, error) < 0
        || (made = ar_make_dir(s->objects, error)) < 0
        || (made && ar_fsync_dir(s->dir, error) < 0)
        || (made = ar_make_dir(s->packs, error)) < 0
        || (made && ar_fsync_dir(s->objects, error) < 0))
        return -1;
    if ((s->packs_fd = open(s->packs, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        *error = mk_xasprintf("%s: cannot open: %s", s->packs, strerror(errno));
        return -1;
    }
    s->lock_fd = openat(s->packs_fd, AR_LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                        0600);
    if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        *error = mk_xasprintf("%s/" AR_LOCK_NAME ": %s", s->packs, s->lock_fd >= 0
                              && errno == EWOULDBLOCK ? "in use by another writer"
                              : strerror(errno));
        return -1;
    }
    return 0;
}

struct ar_store *ar_store_open(const char *dir, const unsigned char master[32], bool writer,
                               char **error)
{
    struct ar_store *s = mk_xcalloc(1, sizeof(*s));
    char ebuf[256];
    struct stat st;

    *error = NULL;
    s->writer = writer;
    s->packs_fd = s->lock_fd = s->cur_fd = -1;
    s->dir = mk_xstrdup(dir);
    s->objects = mk_xasprintf("%s/objects", dir);
    s->packs = mk_xasprintf("%s/packs", s->objects);
    s->index_path = mk_xasprintf("%s/" AR_INDEX_NAME, s->objects);
    memcpy(s->master, master, sizeof(s->master));
    if (writer ? ar_store_open_writer(s, error) < 0 : stat(dir, &st) < 0) {
        if (*error == NULL)
            *error = mk_xasprintf("%s: %s", dir, strerror(errno));
        goto fail;
    }
    if (ar_store_crypto_init(s) < 0) {
        *error = mk_xasprintf("%s: cannot set up SHA-256, AES-256-GCM or HKDF: %s", dir,
                              ar_ossl_error(ebuf, sizeof(ebuf)));
        goto fail;
    }
    if (ar_store_zstd_init(s) < 0) {
        *error = mk_xasprintf("%s: cannot set up zstd", dir);
        goto fail;
    }
    if (ar_store_pack_limit(s, error) < 0 || ar_index_open(s, error) < 0
        || (writer && ar_store_recover(s, error) < 0))
        goto fail;
    return s;
fail:
    ar_store_close(s);
    return NULL;
}

/* Cut the packs back to where the last sync left them: what follows was never indexed. */
static void ar_store_drop_unsynced(struct ar_store *s)
{
    char path[PATH_MAX];

    if (s->cur_pack == s->synced_pack && s->cur_end == s->synced_end)
        return;
    for (uint32_t pack = s->cur_pack; pack > s->synced_pack; pack--) {
        ar_pack_path(s, pack, path);
        unlink(path);
    }
    if (s->synced_pack != 0) {
        ar_pack_path(s, s->synced_pack, path);
        (void) truncate(path, (off_t) s->synced_end);
    }
}

void ar_store_close(struct ar_store *s)
{
    if (s == NULL)
        return;
    if (s->writer)
        ar_store_drop_unsynced(s);
    free(s->pending);
    free(s->ends);
    OPENSSL_cleanse(s->master, sizeof(s->master));
    EVP_MD_free(s->sha256);
    EVP_MD_CTX_free(s->md);
    EVP_CIPHER_CTX_free(s->cipher);
    EVP_KDF_CTX_free(s->kdf);
    ZSTD_freeCCtx(s->cctx);
    ZSTD_freeDCtx(s->dctx);
    ar_index_close(s);
    for (int i = 0; i < AR_PACK_FDS; i++)
        if (s->fds[i].pack != 0)
            close(s->fds[i].fd);
    if (s->cur_fd >= 0)
        close(s->cur_fd);
    if (s->packs_fd >= 0)
        close(s->packs_fd);
    if (s->lock_fd >= 0)
        close(s->lock_fd);              /* last: the lock covers all of the above */
    free(s->work);
    free(s->plain);
    free(s->note);
    free(s->broken);
    free(s->index_path);
    free(s->packs);
    free(s->objects);
    free(s->dir);
    free(s);
}

/* Put and sync */

static struct ar_pending *ar_store_pending(struct ar_store *s, const unsigned char hash[32])
{
    for (size_t i = 0; i < s->npending; i++)
        if (s->pending[i].hash[0] == hash[0] && memcmp(s->pending[i].hash, hash, 32) == 0)
            return &s->pending[i];
    return NULL;
}

static void ar_store_add_pending(struct ar_store *s, const unsigned char hash[32],
                                 const struct ar_where *w)
{
    if (s->npending == s->pending_cap) {
        s->pending_cap = s->pending_cap ? 2 * s->pending_cap : 64;
        s->pending = mk_xrealloc(s->pending, s->pending_cap * sizeof(*s->pending));
    }
    memcpy(s->pending[s->npending].hash, hash, 32);
    s->pending[s->npending++].at = *w;
}

static void ar_store_add_end(struct ar_store *s, uint32_t pack, uint64_t end)
{
    if (s->nends == s->ends_cap) {
        s->ends_cap = s->ends_cap ? 2 * s->ends_cap : 8;
        s->ends = mk_xrealloc(s->ends, s->ends_cap * sizeof(*s->ends));
    }
    s->ends[s->nends].pack = pack;
    s->ends[s->nends++].end = end;
}

/* 1 with *w when this store has hash (pending or indexed), 0 when not, -1 on error. */
static int ar_store_find(struct ar_store *s, const unsigned char hash[32], struct ar_where *w,
                         char **error)
{
    struct ar_pending *p = ar_store_pending(s, hash);

    if (p != NULL) {
        *w = p->at;
        return 1;
    }
    return ar_index_find(s, hash, w, error);
}

static int ar_store_writable(struct ar_store *s, char **error)
{
    if (!s->writer)
        *error = mk_xasprintf("%s: the store is open for reading only", s->objects);
    else if (s->broken != NULL)
        *error = mk_xasprintf("%s: refused after an earlier failure (%s): reopen the store",
                              s->objects, s->broken);
    return *error ? -1 : 0;
}

/*
 * After a failed fdatasync the kernel may have dropped the data and will
 * not report it again: never claim durability after one.
 */
static int ar_store_fail(struct ar_store *s, const char *path, const char *what, char **error)
{
    *error = mk_xasprintf("%s: %s: %s", path, what, strerror(errno));
    free(s->broken);
    s->broken = mk_xstrdup(*error);
    return -1;
}

/* Start the next pack; the one before is synced now, so a sync need not reopen it. */
static int ar_store_new_pack(struct ar_store *s, char **error)
{
    uint32_t next = s->cur_pack + 1;
    char path[PATH_MAX];
    int fd;

    if (next > AR_PACK_LAST) {
        *error = mk_xasprintf("%s: no pack numbers left", s->packs);
        return -1;
    }
    if (s->cur_fd >= 0) {
        if (s->cur_dirty && fdatasync(s->cur_fd) < 0) {
            ar_pack_path(s, s->cur_pack, path);
            return ar_store_fail(s, path, "cannot sync", error);
        }
        ar_store_add_end(s, s->cur_pack, s->cur_end);
        close(s->cur_fd);
        s->cur_fd = -1;
        s->cur_dirty = false;
    }
    ar_pack_path(s, next, path);
    if ((fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
        *error = mk_xasprintf("%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    s->cur_fd = fd;
    s->cur_pack = next;
    s->cur_end = s->cur_hinted = 0;
    s->cur_dirty = true;
    s->packs_dirty = true;
    return 0;
}

/* Append the record of the image in s->work to the current pack. */
static int ar_store_append(struct ar_store *s, const unsigned char hash[32], size_t flen,
                           struct ar_where *w, char **error)
{
    uint64_t size = AR_REC_LEN + (uint64_t) flen;
    unsigned char head[AR_REC_LEN];

    if ((s->cur_fd < 0 || (s->cur_end > 0 && s->cur_end + size > s->pack_max))
        && ar_store_new_pack(s, error) < 0)
        return -1;
    ar_rec_make(head, AR_REC_LIVE, hash, flen);
    if (ar_pwrite_record(s->cur_fd, head, s->work, flen, s->cur_end) < 0) {
        char path[PATH_MAX];
        int e = errno;

        ar_pack_path(s, s->cur_pack, path);
        if (ftruncate(s->cur_fd, (off_t) s->cur_end) < 0) {   /* no partial record left */
            errno = e;
            return ar_store_fail(s, path, "cannot write", error);
        }
        *error = mk_xasprintf("%s: cannot write: %s", path, strerror(e));
        return -1;
    }
    w->pack = s->cur_pack;
    w->offset = s->cur_end;
    w->length = flen;
    s->cur_end += size;
    s->cur_dirty = true;
#ifdef SYNC_FILE_RANGE_WRITE
    /* Only a hint: start writing now, while the batch goes on, so ar_store_sync() waits less. */
    if (s->cur_end - s->cur_hinted >= AR_WRITEBACK_STEP) {
        (void) sync_file_range(s->cur_fd, (off_t) s->cur_hinted,
                               (off_t) (s->cur_end - s->cur_hinted), SYNC_FILE_RANGE_WRITE);
        s->cur_hinted = s->cur_end;
    }
#endif
    return 0;
}

int ar_store_put(struct ar_store *s, const void *data, size_t len, unsigned char hash[32],
                 bool *existed, char **error)
{
    struct ar_where w;
    size_t flen;
    int found, rc;

    *error = NULL;
    *existed = false;
    if (ar_store_writable(s, error) < 0)
        return -1;
    if (data == NULL)
        data = "";
    if (len > AR_STORE_MAX_OBJECT) {
        *error = mk_xasprintf("%s: object of %zu bytes is larger than the limit of %zu",
                              s->dir, len, AR_STORE_MAX_OBJECT);
        return -1;
    }
    if (ar_store_hash(s, data, len, hash) < 0) {
        *error = mk_xasprintf("%s: SHA-256 failed", s->dir);
        return -1;
    }
    if ((found = ar_store_find(s, hash, &w, error)) != 0) {
        *existed = found > 0;
        return found > 0 ? 0 : -1;
    }
    flen = ar_store_seal(s, data, len, hash, error);
    rc = flen == 0 ? -1 : ar_store_append(s, hash, flen, &w, error);
    ar_trim(&s->work, &s->work_cap);
    if (rc < 0)
        return -1;
    ar_store_add_pending(s, hash, &w);
    if (s->npending >= AR_STORE_MAX_PENDING)
        return ar_store_sync(s, error);
    return 0;
}

/* Make the packs written since the last sync durable, their directory too when it changed. */
static int ar_store_flush(struct ar_store *s, char **error)
{
    char path[PATH_MAX];

    if (s->cur_fd >= 0 && s->cur_dirty) {
        if (fdatasync(s->cur_fd) < 0) {
            ar_pack_path(s, s->cur_pack, path);
            return ar_store_fail(s, path, "cannot sync", error);
        }
        s->cur_dirty = false;
    }
    for (int i = 0; i < AR_PACK_FDS; i++) {
        struct ar_pack_fd *f = &s->fds[i];

        if (f->pack != 0 && f->dirty) {
            if (fdatasync(f->fd) < 0) {
                ar_pack_path(s, f->pack, path);
                return ar_store_fail(s, path, "cannot sync", error);
            }
            f->dirty = false;
        }
    }
    if (s->packs_dirty) {
        if (fsync(s->packs_fd) < 0)
            return ar_store_fail(s, s->packs, "cannot sync directory", error);
        s->packs_dirty = false;
    }
    return 0;
}

/* Index the pending objects and the packs' new ends, in one transaction. */
static int ar_store_commit(struct ar_store *s, char **error)
{
    bool moved = s->cur_pack != s->synced_pack || s->cur_end != s->synced_end;

    if (s->npending == 0 && s->nends == 0 && !moved)
        return 0;
    if (ar_index_exec(s, "BEGIN IMMEDIATE", error) < 0)
        return -1;
    for (size_t i = 0; i < s->npending; i++)
        if (ar_index_insert(s, s->pending[i].hash, &s->pending[i].at, error) < 0)
            goto fail;
    for (size_t i = 0; i < s->nends; i++)
        if (ar_index_set_end(s, s->ends[i].pack, s->ends[i].end, error) < 0)
            goto fail;
    if (moved && s->cur_fd >= 0 && ar_index_set_end(s, s->cur_pack, s->cur_end, error) < 0)
        goto fail;
    if (ar_index_exec(s, "COMMIT", error) < 0)
        goto fail;
    s->npending = 0;
    s->nends = 0;
    s->synced_pack = s->cur_pack;
    s->synced_end = s->cur_end;
    return 0;
fail:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

int ar_store_sync(struct ar_store *s, char **error)
{
    *error = NULL;
    if (ar_store_writable(s, error) < 0 || ar_store_flush(s, error) < 0)
        return -1;
    return ar_store_commit(s, error);         /* never an index row before its record is durable */
}

/* Get */

/* Read the record at w into s->work, checking its header names hash. */
static enum ar_check ar_store_load(struct ar_store *s, const unsigned char hash[32],
                                   const struct ar_where *w, const char *where, char **error)
{
    unsigned char head[AR_REC_LEN];
    char hex[65];
    struct ar_rec r;
    ssize_t n;
    int fd;

    if (w->pack == 0 || w->length < AR_IMAGE_MIN || w->length > AR_IMAGE_MAX) {
        *error = mk_xasprintf("%s: not an object file (its index row is impossible: delete %s "
                              "to have the next writer rebuild it)", where, s->index_path);
        return AR_CORRUPT;
    }
    if ((fd = ar_pack_fd(s, w->pack, NULL, error)) < 0)
        return errno == ENOENT ? AR_MISSING : AR_IOERR;
    if ((n = mk_pread_full(fd, head, AR_REC_LEN, (off_t) w->offset)) < 0)
        goto ioerr;
    if ((size_t) n < AR_REC_LEN) {
        *error = mk_xasprintf("%s: not an object file (the pack ends before the record: "
                              "truncated)", where);
        return AR_CORRUPT;
    }
    if (!ar_rec_parse(head, &r)) {
        *error = mk_xasprintf("%s: not an object file (no record header there: the pack was "
                              "modified or damaged)", where);
        return AR_CORRUPT;
    }
    if (r.state == AR_REC_REMOVED) {
        *error = mk_xasprintf("%s: missing (removed)", where);
        return AR_MISSING;
    }
    if (memcmp(r.hash, hash, 32) != 0) {
        ar_hex(r.hash, hex);
        *error = mk_xasprintf("%s: the record there is object %s's: records were moved or "
                              "overwritten", where, hex);
        return AR_CORRUPT;
    }
    if (r.length != w->length) {
        *error = mk_xasprintf("%s: the record's image is %" PRIu64 " bytes, the index says %"
                              PRIu64, where, r.length, w->length);
        return AR_CORRUPT;
    }
    ar_reserve(&s->work, &s->work_cap, (size_t) w->length);
    if ((n = mk_pread_full(fd, s->work, (size_t) w->length, (off_t) (w->offset + AR_REC_LEN))) < 0)
        goto ioerr;
    if ((uint64_t) n < w->length) {
        *error = mk_xasprintf("%s: not an object file (the pack ends inside the record: "
                              "truncated)", where);
        return AR_CORRUPT;
    }
    return AR_OK;
ioerr:
    *error = mk_xasprintf("%s: read error: %s", where, strerror(errno));
    return AR_IOERR;
}

/* Decrypt s->work in place; on success the zstd frame is at work + AR_HEADER_LEN. */
static enum ar_check ar_store_open_seal(struct ar_store *s, const unsigned char hash[32],
                                        const char *where, size_t flen, size_t *clen,
                                        char **error)
{
    unsigned char tag[AR_TAG_LEN];
    int outl;

    if (memcmp(s->work, AR_MAGIC, 4) != 0 || s->work[4] != AR_VERSION) {
        *error = mk_xasprintf("%s: not an object file (bad magic or version)", where);
        return AR_CORRUPT;
    }
    *clen = flen - AR_HEADER_LEN - AR_TAG_LEN;
    memcpy(tag, s->work + flen - AR_TAG_LEN, AR_TAG_LEN);
    if (ar_store_gcm(s, 0, hash, s->work + 5, s->work + AR_HEADER_LEN, *clen) < 0
        || EVP_CIPHER_CTX_ctrl(s->cipher, EVP_CTRL_GCM_SET_TAG, AR_TAG_LEN, tag) != 1
        || EVP_CipherFinal_ex(s->cipher, s->work + AR_HEADER_LEN + *clen, &outl) != 1) {
        ERR_clear_error();
        *error = mk_xasprintf("%s: authentication failed: the object was modified, is "
                              "stored under another name, or the master key is wrong", where);
        return AR_CORRUPT;
    }
    return AR_OK;
}

/* A frame that does not say its size: decompress in steps, up to the limit. */
static int ar_store_inflate_stream(struct ar_store *s, const unsigned char *src, size_t slen,
                                   unsigned char **buf, size_t *cap, size_t *len)
{
    ZSTD_inBuffer in = {src, slen, 0};
    ZSTD_outBuffer out = {*buf, *cap ? *cap - 1 : 0, 0};

    ZSTD_DCtx_reset(s->dctx, ZSTD_reset_session_only);
    for (;;) {
        size_t rc;

        if (out.pos == out.size) {
            if (out.size > AR_STORE_MAX_OBJECT)
                return -1;              /* more than the limit */
            out.size = out.size < 65536 ? 65536 : out.size * 2;
            if (out.size > AR_STORE_MAX_OBJECT + 1)
                out.size = AR_STORE_MAX_OBJECT + 1;
            out.dst = *buf = mk_xrealloc(*buf, out.size + 1);
            *cap = out.size + 1;
        }
        rc = ZSTD_decompressStream(s->dctx, &out, &in);
        if (ZSTD_isError(rc))
            return -1;
        if (rc == 0 && in.pos == in.size)
            break;                      /* the last frame is complete */
        if (in.pos == in.size && out.pos < out.size)
            return -1;                  /* it wants input there is not: truncated */
    }
    if (out.pos > AR_STORE_MAX_OBJECT)
        return -1;
    *len = out.pos;
    return 0;
}

/* Decompress into *buf (grown as needed, room for a NUL); sets *len. */
static enum ar_check ar_store_inflate(struct ar_store *s, const char *where, size_t clen,
                                      unsigned char **buf, size_t *cap, size_t *len,
                                      char **error)
{
    const unsigned char *src = s->work + AR_HEADER_LEN;
    unsigned long long size = ZSTD_getFrameContentSize(src, clen);
    size_t rc;

    if (size == ZSTD_CONTENTSIZE_UNKNOWN) {
        if (ar_store_inflate_stream(s, src, clen, buf, cap, len) < 0)
            goto bad;
        return AR_OK;
    }
    if (size == ZSTD_CONTENTSIZE_ERROR || size > AR_STORE_MAX_OBJECT)
        goto bad;
    ar_reserve(buf, cap, (size_t) size + 1);
    rc = ZSTD_decompressDCtx(s->dctx, *buf, (size_t) size, src, clen);
    if (ZSTD_isError(rc) || rc != size)
        goto bad;
    *len = rc;
    return AR_OK;
bad:
    *error = mk_xasprintf("%s: authenticated, yet not a valid zstd frame of at most %zu "
                          "bytes", where, AR_STORE_MAX_OBJECT);
    return AR_CORRUPT;
}

/* Whether the record at w is marked removed: read as it was being erased. */
static bool ar_store_removed(struct ar_store *s, const struct ar_where *w)
{
    unsigned char head[AR_REC_LEN];
    char *error = NULL;
    struct ar_rec r;
    int fd = ar_pack_fd(s, w->pack, NULL, &error);

    free(error);
    return fd >= 0 && mk_pread_full(fd, head, AR_REC_LEN, (off_t) w->offset) == AR_REC_LEN
        && ar_rec_parse(head, &r) && r.state == AR_REC_REMOVED;
}

static enum ar_check ar_store_read(struct ar_store *s, const unsigned char hash[32],
                                   unsigned char **buf, size_t *cap, size_t *len, char **error)
{
    char where[AR_WHERE_MAX], hex[65];
    unsigned char actual[32];
    struct ar_where w;
    enum ar_check rc;
    size_t clen;
    int found;

    *error = NULL;
    if ((found = ar_store_find(s, hash, &w, error)) <= 0) {
        if (found < 0)
            return AR_IOERR;
        ar_hex(hash, hex);
        *error = mk_xasprintf("%s: object %s: missing", s->objects, hex);
        return AR_MISSING;
    }
    ar_where_text(s, hash, &w, where);
    if ((rc = ar_store_load(s, hash, &w, where, error)) == AR_OK
        && (rc = ar_store_open_seal(s, hash, where, (size_t) w.length, &clen, error)) == AR_OK
        && (rc = ar_store_inflate(s, where, clen, buf, cap, len, error)) == AR_OK) {
        if (ar_store_hash(s, *buf, *len, actual) < 0) {
            *error = mk_xasprintf("%s: SHA-256 failed", where);
            rc = AR_IOERR;
        } else if (memcmp(actual, hash, 32) != 0) {
            ar_hex(actual, hex);
            *error = mk_xasprintf("%s: content does not match its name (its SHA-256 is %s)",
                                  where, hex);
            rc = AR_MISMATCH;
        }
    }
    if (rc == AR_CORRUPT && ar_store_removed(s, &w)) {
        free(*error);
        *error = mk_xasprintf("%s: missing (removed)", where);
        rc = AR_MISSING;
    }
    ar_trim(&s->work, &s->work_cap);
    return rc;
}

enum ar_check ar_store_get(struct ar_store *s, const unsigned char hash[32], char **data,
                           size_t *len, char **error)
{
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    enum ar_check rc = ar_store_read(s, hash, &buf, &cap, &n, error);

    *data = NULL;
    *len = 0;
    if (rc != AR_OK) {
        free(buf);
        return rc;
    }
    if (buf == NULL)
        buf = mk_xmalloc(1);
    buf[n] = '\0';
    *data = (char *) buf;
    *len = n;
    return AR_OK;
}

enum ar_check ar_store_check(struct ar_store *s, const unsigned char hash[32], char **error)
{
    size_t n;
    enum ar_check rc = ar_store_read(s, hash, &s->plain, &s->plain_cap, &n, error);

    ar_trim(&s->plain, &s->plain_cap);
    return rc;
}

/* Locate, remove and walk */

int ar_store_locate(struct ar_store *s, const unsigned char hash[32], char **pack_path,
                    uint64_t *offset, uint64_t *length, char **error)
{
    char path[PATH_MAX];
    struct ar_where w;
    int found;

    *error = NULL;
    *pack_path = NULL;
    *offset = *length = 0;
    if ((found = ar_store_find(s, hash, &w, error)) <= 0)
        return found;
    ar_pack_path(s, w.pack, path);
    *pack_path = mk_xstrdup(path);
    *offset = w.offset + AR_REC_LEN;
    *length = w.length;
    return 1;
}

/* Make the bytes read as zeros: deallocated where the file system can. */
static int ar_erase(int fd, uint64_t off, uint64_t len)
{
    static const unsigned char zeros[65536];

#ifdef FALLOC_FL_PUNCH_HOLE
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t) off, (off_t) len) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS)
        return -1;
#endif
    while (len > 0) {
        size_t n = len < sizeof(zeros) ? (size_t) len : sizeof(zeros);

        if (ar_pwrite_all(fd, zeros, n, off) < 0)
            return -1;
        off += n;
        len -= n;
    }
    return 0;
}

/*
 * The header first (hash zeroed, length kept for scans), then the image,
 * then the index row: a crash between leaves a record that reads as
 * removed, never a row-less record a rebuild would bring back.
 */
int ar_store_remove(struct ar_store *s, const unsigned char hash[32], char **error)
{
    struct ar_pending *p;
    struct ar_pack_fd *slot = NULL;
    unsigned char head[AR_REC_LEN];
    char where[AR_WHERE_MAX], hex[65];
    struct ar_where w;
    struct ar_rec r;
    int fd, found;
    ssize_t n;

    *error = NULL;
    if (ar_store_writable(s, error) < 0)
        return -1;
    if ((p = ar_store_pending(s, hash)) != NULL) {
        w = p->at;
    } else if ((found = ar_index_find(s, hash, &w, error)) <= 0) {
        if (found == 0) {
            ar_hex(hash, hex);
            *error = mk_xasprintf("%s: object %s: cannot remove: no such object", s->objects,
                                  hex);
        }
        return -1;
    }
    ar_where_text(s, hash, &w, where);
    if (w.pack == 0 || (fd = ar_pack_fd(s, w.pack, &slot, error)) < 0) {
        if (w.pack != 0 && errno != ENOENT)
            return -1;
        free(*error);                   /* its pack is gone: so are its bytes */
        *error = NULL;
    } else if ((n = mk_pread_full(fd, head, AR_REC_LEN, (off_t) w.offset)) < 0) {
        *error = mk_xasprintf("%s: read error: %s", where, strerror(errno));
        return -1;
    } else if (n == AR_REC_LEN && ar_rec_parse(head, &r) && r.state == AR_REC_REMOVED) {
        ;                               /* erased already, the row was left */
    } else if (n < AR_REC_LEN || !ar_rec_parse(head, &r) || memcmp(r.hash, hash, 32) != 0
               || r.length != w.length) {
        *error = mk_xasprintf("%s: cannot remove: the record there is not this object's (the "
                              "pack was modified): nothing erased", where);
        return -1;
    } else {
        ar_rec_make(head, AR_REC_REMOVED, NULL, w.length);
        if (ar_pwrite_all(fd, head, AR_REC_LEN, w.offset) < 0
            || ar_erase(fd, w.offset + AR_REC_LEN, w.length) < 0) {
            *error = mk_xasprintf("%s: cannot erase: %s", where, strerror(errno));
            return -1;
        }
        slot->dirty = true;             /* durable at the next sync */
    }
    if (p != NULL) {
        *p = s->pending[--s->npending];
        return 0;
    }
    sqlite3_bind_blob(s->delete, 1, hash, 32, SQLITE_STATIC);
    return ar_index_step(s, s->delete, "delete", error);
}

/* Report each live record of one pack; note damage and step past it. */
static int ar_walk_pack(struct ar_store *s, uint32_t pack, bool last,
                        int (*cb)(void *arg, const unsigned char hash[32]), void *arg,
                        char **damage, size_t *ndamage, char **error)
{
    char path[PATH_MAX];
    uint64_t off = 0, size;
    struct stat st;
    int fd, rc = 0;

    ar_pack_path(s, pack, path);
    if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
        if (fd < 0 && errno == ENOENT)
            return 0;                   /* dropped by its writer since listed */
        *error = mk_xasprintf("%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size = (uint64_t) st.st_size;
    while (rc == 0 && off < size) {
        struct ar_rec r;
        enum ar_scan k = ar_scan_next(fd, size, off, &r);
        int64_t next = -1;

        if (k == AR_SCAN_RECORD) {
            if (r.state == AR_REC_LIVE)
                rc = cb(arg, r.hash);
            off += AR_REC_LEN + r.length;
            continue;
        }
        if (k == AR_SCAN_ERROR || (next = ar_resync(fd, size, off + 1)) == -2) {
            *error = mk_xasprintf("%s: read error: %s", path, strerror(errno));
            rc = -1;
            break;
        }
        if (next < 0 && k == AR_SCAN_TORN && last)
            break;                      /* an append under way, or one a crash cut short */
        if ((*ndamage)++ == 0)
            *damage = next >= 0
                ? mk_xasprintf("%s: %" PRIu64 " bytes at offset %" PRIu64 " are no record "
                               "(damage): skipped", path, (uint64_t) next - off, off)
                : mk_xasprintf("%s: the last %" PRIu64 " bytes, from offset %" PRIu64 ", are "
                               "no complete record (damage)", path, size - off, off);
        if (next < 0)
            break;
        off = (uint64_t) next;
    }
    close(fd);
    return rc;
}

int ar_store_walk(struct ar_store *s, int (*cb)(void *arg, const unsigned char hash[32]),
                  void *arg, char **error)
{
    char *damage = NULL;
    size_t npacks, ndamage = 0;
    uint32_t *packs;
    int rc = 0;

    *error = NULL;
    if (ar_list_packs(s, &packs, &npacks, error) < 0)
        return -1;
    for (size_t i = 0; rc == 0 && i < npacks; i++)
        rc = ar_walk_pack(s, packs[i], i + 1 == npacks, cb, arg, &damage, &ndamage, error);
    free(packs);
    if (rc == 0 && damage != NULL) {
        *error = ndamage == 1 ? damage : mk_xasprintf("%s (and %zu more damaged places)",
                                                      damage, ndamage - 1);
        if (ndamage == 1)
            damage = NULL;
        rc = -1;
    }
    free(damage);
    return rc;
}
