/*
 * ar_store - the archive's object store. See ar_store.h.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <zstd.h>

#include "ar_store.h"
#include "mk_util.h"

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
#define AR_TMP_PREFIX		".tmp-"
#define AR_SYNC_ONE_BY_ONE	4       /* more files than this: one syncfs() */
/* "xx/" + 64 hex digits, or a temporary name: room for both. */
#define AR_NAME_MAX		128

/* An object written under its temporary name, waiting for ar_store_sync(). */
struct ar_pending {
    unsigned char hash[32];
    char tmp[AR_NAME_MAX];
};

struct ar_store {
    char *dir;
    char *objects;                      /* DIR/objects, for messages */
    int objfd;                          /* DIR/objects, for *at() calls */
    unsigned char master[32];
    EVP_MD *sha256;
    EVP_MD_CTX *md;
    EVP_CIPHER_CTX *cipher;             /* AES-256-GCM, set once, rekeyed per object */
    EVP_KDF_CTX *kdf;                   /* HKDF-SHA256 keyed with master */
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    unsigned char *work;                /* an object file's image */
    size_t work_cap;
    unsigned char *plain;               /* ar_store_check()'s output */
    size_t plain_cap;
    struct ar_pending *pending;
    size_t npending, pending_cap;
    unsigned char dirty[256 / 8];       /* object directories changed since the last sync */
    bool objects_dirty;                 /* a directory was made in objects/ */
    unsigned long tmp_count;
};

/* Hex */

static const signed char ar_hex_value[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15,
    ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};                                      /* value + 1; 0 = not a hex digit */

void ar_hex(const unsigned char hash[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";

    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[hash[i] >> 4];
        out[2 * i + 1] = digits[hash[i] & 15];
    }
    out[64] = '\0';
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
    if (EVP_Digest(data ? data : "", len, out, NULL, EVP_sha256(), NULL) != 1) {
        fprintf(stderr, "fatal: SHA-256 failed\n");
        abort();
    }
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

/* "xx/HASH", relative to objfd. */
static void ar_store_name(const unsigned char hash[32], char name[AR_NAME_MAX])
{
    char hex[65];

    ar_hex(hash, hex);
    snprintf(name, AR_NAME_MAX, "%.2s/%s", hex, hex);
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

static int ar_fsync_dir_at(int dirfd, const char *name, const char *shown, char **error)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) < 0) {
        *error = mk_xasprintf("%s: cannot sync directory: %s", shown, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int ar_write_all(int fd, const void *data, size_t len)
{
    const unsigned char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t) n;
    }
    return 0;
}

/* Open and close */

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

struct ar_store *ar_store_open(const char *dir, const unsigned char master[32], char **error)
{
    struct ar_store *s = mk_xcalloc(1, sizeof(*s));
    char ebuf[256];
    int made = 0;

    *error = NULL;
    s->objfd = -1;
    s->dir = mk_xstrdup(dir);
    s->objects = mk_xasprintf("%s/objects", dir);
    memcpy(s->master, master, sizeof(s->master));
    if (ar_make_dir(dir, error) < 0 || (made = ar_make_dir(s->objects, error)) < 0)
        goto fail;
    if ((s->objfd = open(s->objects, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        *error = mk_xasprintf("%s: cannot open: %s", s->objects, strerror(errno));
        goto fail;
    }
    if (made && ar_fsync_dir_at(AT_FDCWD, dir, dir, error) < 0)
        goto fail;
    if (ar_store_crypto_init(s) < 0) {
        *error = mk_xasprintf("%s: cannot set up SHA-256, AES-256-GCM or HKDF: %s", dir,
                              ar_ossl_error(ebuf, sizeof(ebuf)));
        goto fail;
    }
    if (ar_store_zstd_init(s) < 0) {
        *error = mk_xasprintf("%s: cannot set up zstd", dir);
        goto fail;
    }
    return s;
fail:
    ar_store_close(s);
    return NULL;
}

void ar_store_close(struct ar_store *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->npending; i++)   /* never synced, so never logged */
        unlinkat(s->objfd, s->pending[i].tmp, 0);
    free(s->pending);
    OPENSSL_cleanse(s->master, sizeof(s->master));
    EVP_MD_free(s->sha256);
    EVP_MD_CTX_free(s->md);
    EVP_CIPHER_CTX_free(s->cipher);
    EVP_KDF_CTX_free(s->kdf);
    ZSTD_freeCCtx(s->cctx);
    ZSTD_freeDCtx(s->dctx);
    if (s->objfd >= 0)
        close(s->objfd);
    free(s->work);
    free(s->plain);
    free(s->objects);
    free(s->dir);
    free(s);
}

/* Crypto */

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

/* Put */

/* Build the object file's image in s->work; returns its length, or 0 on failure. */
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

/* Create a temporary file in hash's directory, making that directory if needed. */
static int ar_store_tmp(struct ar_store *s, const char *name, char tmp[AR_NAME_MAX],
                        char **error)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd;

        snprintf(tmp, AR_NAME_MAX, "%.2s/" AR_TMP_PREFIX "%ld-%lu-%.16s", name, (long) getpid(),
                 ++s->tmp_count, name + 3);
        if ((fd = openat(s->objfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400)) >= 0)
            return fd;
        if (errno == ENOENT) {
            char sub[3] = {name[0], name[1], '\0'};

            if (mkdirat(s->objfd, sub, 0700) < 0 && errno != EEXIST)
                break;
            s->objects_dirty = true;
        } else if (errno != EEXIST) {
            break;
        }
    }
    *error = mk_xasprintf("%s/%s: cannot create: %s", s->objects, tmp, strerror(errno));
    return -1;
}

static void ar_store_mark(struct ar_store *s, const unsigned char hash[32])
{
    s->dirty[hash[0] / 8] |= (unsigned char) (1u << (hash[0] % 8));
}

static struct ar_pending *ar_store_pending(struct ar_store *s, const unsigned char hash[32])
{
    for (size_t i = 0; i < s->npending; i++)
        if (s->pending[i].hash[0] == hash[0] && memcmp(s->pending[i].hash, hash, 32) == 0)
            return &s->pending[i];
    return NULL;
}

static void ar_store_add_pending(struct ar_store *s, const unsigned char hash[32],
                                 const char *tmp)
{
    if (s->npending == s->pending_cap) {
        s->pending_cap = s->pending_cap ? 2 * s->pending_cap : 64;
        s->pending = mk_xrealloc(s->pending, s->pending_cap * sizeof(*s->pending));
    }
    memcpy(s->pending[s->npending].hash, hash, 32);
    snprintf(s->pending[s->npending].tmp, AR_NAME_MAX, "%s", tmp);
    s->npending++;
}

/* Write the sealed image to a new temporary file and start its writeback. */
static int ar_store_write(struct ar_store *s, const char *name, size_t flen,
                          char tmp[AR_NAME_MAX], char **error)
{
    int fd, err;

    if ((fd = ar_store_tmp(s, name, tmp, error)) < 0)
        return -1;
    err = ar_write_all(fd, s->work, flen) < 0 ? errno : 0;
#ifdef SYNC_FILE_RANGE_WRITE
    /* Only a hint: start writing now, while the batch goes on, so ar_store_sync() waits less. */
    if (err == 0)
        (void) sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
    if (close(fd) < 0 && err == 0)
        err = errno;
    if (err != 0) {
        *error = mk_xasprintf("%s/%s: cannot write: %s", s->objects, tmp, strerror(err));
        unlinkat(s->objfd, tmp, 0);
        return -1;
    }
    return 0;
}

int ar_store_put(struct ar_store *s, const void *data, size_t len, unsigned char hash[32],
                 bool *existed, char **error)
{
    char name[AR_NAME_MAX], tmp[AR_NAME_MAX];
    size_t flen;
    struct stat st;

    *error = NULL;
    *existed = false;
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
    ar_store_name(hash, name);
    if (ar_store_pending(s, hash) != NULL || fstatat(s->objfd, name, &st,
                                                     AT_SYMLINK_NOFOLLOW) == 0) {
        *existed = true;
        return 0;
    }
    if (errno != ENOENT) {
        *error = mk_xasprintf("%s/%s: %s", s->objects, name, strerror(errno));
        return -1;
    }
    flen = ar_store_seal(s, data, len, hash, error);
    if (flen == 0 || ar_store_write(s, name, flen, tmp, error) < 0)
        return -1;
    ar_trim(&s->work, &s->work_cap);
    ar_store_add_pending(s, hash, tmp);
    ar_store_mark(s, hash);
    if (s->npending >= AR_STORE_MAX_PENDING)
        return ar_store_sync(s, error);
    return 0;
}

/*
 * A file system commits its journal and flushes the disk's cache at each
 * fsync, and ext4 flushes again for every further file even when the
 * commit is done: hundreds of flushes for one batch. Past a few files,
 * one syncfs() (Linux) does the same work with a single commit and flush.
 * It also writes back whatever else is dirty on that file system: an
 * archive on a file system of its own keeps the commits short.
 */
static bool ar_store_use_syncfs(size_t files)
{
#ifdef __linux__
    return files > AR_SYNC_ONE_BY_ONE;
#else
    (void) files;
    return false;
#endif
}

static int ar_store_syncfs(struct ar_store *s, char **error)
{
#ifdef __linux__
    if (syncfs(s->objfd) == 0)
        return 0;
    *error = mk_xasprintf("%s: cannot sync the file system: %s", s->objects, strerror(errno));
#else
    *error = mk_xasprintf("%s: syncfs() is not available", s->objects);
#endif
    return -1;
}

static int ar_store_sync_file(struct ar_store *s, const char *tmp, char **error)
{
    int fd = openat(s->objfd, tmp, O_RDONLY | O_CLOEXEC), err = 0;

    if (fd < 0 || fdatasync(fd) < 0)
        err = errno;
    if (fd >= 0)
        close(fd);
    if (err != 0)
        *error = mk_xasprintf("%s/%s: cannot sync: %s", s->objects, tmp, strerror(err));
    return err ? -1 : 0;
}

/* Sync every pending file, then rename each into place: never a name before its data. */
static int ar_store_sync_pending(struct ar_store *s, char **error)
{
    size_t done = 0;
    int rc = 0;

    if (ar_store_use_syncfs(s->npending)) {
        if (ar_store_syncfs(s, error) < 0)
            return -1;
    } else {
        for (size_t i = 0; i < s->npending; i++)
            if (ar_store_sync_file(s, s->pending[i].tmp, error) < 0)
                return -1;
    }
    for (; done < s->npending; done++) {
        char name[AR_NAME_MAX];

        ar_store_name(s->pending[done].hash, name);
        if (renameat(s->objfd, s->pending[done].tmp, s->objfd, name) < 0) {
            *error = mk_xasprintf("%s/%s: cannot rename into place: %s", s->objects,
                                  s->pending[done].tmp, strerror(errno));
            rc = -1;
            break;
        }
    }
    if (done > 0) {
        memmove(s->pending, s->pending + done, (s->npending - done) * sizeof(*s->pending));
        s->npending -= done;
    }
    return rc;
}

/* Make the names durable: the directories changed, one by one or all at once. */
static int ar_store_sync_dirs(struct ar_store *s, char **error)
{
    size_t ndirty = s->objects_dirty;

    for (int i = 0; i < 256; i++)
        ndirty += (s->dirty[i / 8] >> (i % 8)) & 1;
    if (ar_store_use_syncfs(ndirty)) {
        if (ar_store_syncfs(s, error) < 0)
            return -1;
        memset(s->dirty, 0, sizeof(s->dirty));
        s->objects_dirty = false;
        return 0;
    }
    if (s->objects_dirty) {
        if (ar_fsync_dir_at(s->objfd, ".", s->objects, error) < 0)
            return -1;
        s->objects_dirty = false;
    }
    for (int i = 0; i < 256; i++) {
        char sub[3], shown[PATH_MAX];

        if (!(s->dirty[i / 8] & (1u << (i % 8))))
            continue;
        snprintf(sub, sizeof(sub), "%02x", i);
        snprintf(shown, sizeof(shown), "%s/%s", s->objects, sub);
        if (ar_fsync_dir_at(s->objfd, sub, shown, error) < 0)
            return -1;
        s->dirty[i / 8] &= (unsigned char) ~(1u << (i % 8));
    }
    return 0;
}

int ar_store_sync(struct ar_store *s, char **error)
{
    *error = NULL;
    if (ar_store_sync_pending(s, error) < 0)
        return -1;
    return ar_store_sync_dirs(s, error);
}

/* Get */

/* Read an object file into s->work; sets *flen. */
static enum ar_check ar_store_load(struct ar_store *s, const char *name, size_t *flen,
                                   char **error)
{
    size_t limit = AR_HEADER_LEN + ZSTD_compressBound(AR_STORE_MAX_OBJECT) + AR_TAG_LEN;
    int fd = openat(s->objfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    size_t used = 0;

    if (fd < 0) {
        int e = errno;

        *error = mk_xasprintf("%s/%s: %s", s->objects, name, e == ENOENT ? "missing"
                              : e == ELOOP ? "a symbolic link, not an object file" : strerror(e));
        return e == ENOENT ? AR_MISSING : e == ELOOP ? AR_CORRUPT : AR_IOERR;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t) st.st_size < AR_HEADER_LEN
        + AR_TAG_LEN || (size_t) st.st_size > limit) {
        *error = mk_xasprintf("%s/%s: not an object file (type or size)", s->objects, name);
        close(fd);
        return AR_CORRUPT;
    }
    ar_reserve(&s->work, &s->work_cap, (size_t) st.st_size);
    while (used < (size_t) st.st_size) {
        ssize_t n = read(fd, s->work + used, (size_t) st.st_size - used);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            *error = mk_xasprintf("%s/%s: read error: %s", s->objects, name,
                                  n < 0 ? strerror(errno) : "file shrank");
            close(fd);
            return n < 0 ? AR_IOERR : AR_CORRUPT;
        }
        used += (size_t) n;
    }
    close(fd);
    *flen = used;
    return AR_OK;
}

/* Decrypt s->work in place; on success the zstd frame is at work + AR_HEADER_LEN. */
static enum ar_check ar_store_open_seal(struct ar_store *s, const unsigned char hash[32],
                                        const char *name, size_t flen, size_t *clen,
                                        char **error)
{
    unsigned char tag[AR_TAG_LEN];
    int outl;

    if (memcmp(s->work, AR_MAGIC, 4) != 0 || s->work[4] != AR_VERSION) {
        *error = mk_xasprintf("%s/%s: not an object file (bad magic or version)", s->objects,
                              name);
        return AR_CORRUPT;
    }
    *clen = flen - AR_HEADER_LEN - AR_TAG_LEN;
    memcpy(tag, s->work + flen - AR_TAG_LEN, AR_TAG_LEN);
    if (ar_store_gcm(s, 0, hash, s->work + 5, s->work + AR_HEADER_LEN, *clen) < 0
        || EVP_CIPHER_CTX_ctrl(s->cipher, EVP_CTRL_GCM_SET_TAG, AR_TAG_LEN, tag) != 1
        || EVP_CipherFinal_ex(s->cipher, s->work + AR_HEADER_LEN + *clen, &outl) != 1) {
        ERR_clear_error();
        *error = mk_xasprintf("%s/%s: authentication failed: the object was modified, is "
                              "stored under another name, or the master key is wrong",
                              s->objects, name);
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
static enum ar_check ar_store_inflate(struct ar_store *s, const char *name, size_t clen,
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
    *error = mk_xasprintf("%s/%s: authenticated, yet not a valid zstd frame of at most %zu "
                          "bytes", s->objects, name, AR_STORE_MAX_OBJECT);
    return AR_CORRUPT;
}

static enum ar_check ar_store_read(struct ar_store *s, const unsigned char hash[32],
                                   unsigned char **buf, size_t *cap, size_t *len, char **error)
{
    struct ar_pending *p = ar_store_pending(s, hash);
    char name[AR_NAME_MAX];
    unsigned char actual[32];
    size_t flen, clen;
    enum ar_check rc;

    *error = NULL;
    if (p != NULL)
        snprintf(name, sizeof(name), "%s", p->tmp);
    else
        ar_store_name(hash, name);
    if ((rc = ar_store_load(s, name, &flen, error)) == AR_OK
        && (rc = ar_store_open_seal(s, hash, name, flen, &clen, error)) == AR_OK
        && (rc = ar_store_inflate(s, name, clen, buf, cap, len, error)) == AR_OK) {
        if (ar_store_hash(s, *buf, *len, actual) < 0) {
            *error = mk_xasprintf("%s/%s: SHA-256 failed", s->objects, name);
            rc = AR_IOERR;
        } else if (memcmp(actual, hash, 32) != 0) {
            char hex[65];

            ar_hex(actual, hex);
            *error = mk_xasprintf("%s/%s: content does not match its name (its SHA-256 is %s)",
                                  s->objects, name, hex);
            rc = AR_MISMATCH;
        }
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

/* Remove and walk */

int ar_store_remove(struct ar_store *s, const unsigned char hash[32], char **error)
{
    struct ar_pending *p = ar_store_pending(s, hash);
    char name[AR_NAME_MAX];

    *error = NULL;
    if (p != NULL) {
        snprintf(name, sizeof(name), "%s", p->tmp);
        *p = s->pending[--s->npending];
    } else {
        ar_store_name(hash, name);
    }
    if (unlinkat(s->objfd, name, 0) < 0) {
        *error = mk_xasprintf("%s/%s: cannot remove: %s", s->objects, name,
                              errno == ENOENT ? "no such object" : strerror(errno));
        return -1;
    }
    ar_store_mark(s, hash);
    return 0;
}

static bool ar_is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return s[n] == '\0';
}

static int ar_store_walk_dir(struct ar_store *s, const char *sub,
                             int (*cb)(void *arg, const unsigned char hash[32]), void *arg,
                             char **error)
{
    int fd = openat(s->objfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct dirent *d;
    DIR *dir;
    int rc = 0;

    if (fd < 0 || (dir = fdopendir(fd)) == NULL) {
        *error = mk_xasprintf("%s/%s: cannot read directory: %s", s->objects, sub,
                              strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    while (rc == 0 && (errno = 0, d = readdir(dir)) != NULL) {
        unsigned char hash[32];

        if (strncmp(d->d_name, sub, 2) != 0 || !ar_is_lower_hex(d->d_name, 64)
            || ar_unhex(d->d_name, hash) < 0)
            continue;                   /* ".", "..", temporary and foreign names */
        rc = cb(arg, hash);
    }
    if (d == NULL && errno != 0) {
        *error = mk_xasprintf("%s/%s: cannot read directory: %s", s->objects, sub,
                              strerror(errno));
        rc = -1;
    }
    closedir(dir);
    return rc;
}

int ar_store_walk(struct ar_store *s, int (*cb)(void *arg, const unsigned char hash[32]),
                  void *arg, char **error)
{
    int fd = openat(s->objfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct dirent *d;
    DIR *dir;
    int rc = 0;

    *error = NULL;
    if (fd < 0 || (dir = fdopendir(fd)) == NULL) {
        *error = mk_xasprintf("%s: cannot read directory: %s", s->objects, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    while (rc == 0 && (errno = 0, d = readdir(dir)) != NULL)
        if (ar_is_lower_hex(d->d_name, 2))
            rc = ar_store_walk_dir(s, d->d_name, cb, arg, error);
    if (rc == 0 && d == NULL && errno != 0) {
        *error = mk_xasprintf("%s: cannot read directory: %s", s->objects, strerror(errno));
        rc = -1;
    }
    closedir(dir);
    return rc;
}
