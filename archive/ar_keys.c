/*
 * ar_keys - the archive's keys. See ar_keys.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "ar_keys.h"
#include "mk_util.h"

#define AR_KEYS_MAX_FILE	65536   /* far more than any PEM key we write */

/* The newest OpenSSL error as text, clearing the queue. */
static const char *ar_keys_ossl_error(char *buf, size_t size)
{
    unsigned long e = ERR_get_error();

    if (e == 0)
        snprintf(buf, size, "unknown OpenSSL error");
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return buf;
}

static int ar_keys_fsync_dir(const char *dir, char **error)
{
    if (mk_fsync_dir(dir) < 0) {
        *error = mk_xasprintf("%s: cannot sync directory: %s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* Create PATH, which must not exist, holding exactly data, with exactly mode; synced. */
static int ar_keys_write_new(const char *path, const void *data, size_t len, mode_t mode,
                             char **error)
{
    const unsigned char *p = data;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0600);

    if (fd < 0) {
        *error = mk_xasprintf("%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    if (mk_write_all(fd, p, len) < 0)
        goto fail;
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    return 0;
fail:
    *error = mk_xasprintf("%s: cannot write: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(path);
    return -1;
}

/* The PEM text of a key, through a memory BIO. */
static char *ar_keys_pem(EVP_PKEY *pkey, bool private_key, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *pem = NULL;
    long n;
    int ok;

    if (bio == NULL)
        return NULL;
    ok = private_key ? PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)
                     : PEM_write_bio_PUBKEY(bio, pkey);
    if (ok == 1 && (n = BIO_get_mem_data(bio, &data)) > 0) {
        pem = mk_xstrndup(data, (size_t) n);
        *len = (size_t) n;
        OPENSSL_cleanse(data, (size_t) n);
    }
    BIO_free(bio);
    return pem;
}

static char *ar_keys_path(const char *dir, const char *file)
{
    return mk_xasprintf("%s/%s", dir, file);
}

static int ar_keys_make_dir(const char *dir, char **error)
{
    struct stat st;

    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    *error = mk_xasprintf("%s: cannot create directory: %s", dir,
                          errno == EEXIST ? "exists and is not a directory" : strerror(errno));
    return -1;
}

int ar_keys_create(const char *dir, char **error)
{
    static const char *const files[] = {AR_KEYS_MASTER_FILE, AR_KEYS_SIGN_FILE,
                                        AR_KEYS_VERIFY_FILE};
    static const mode_t modes[] = {0600, 0600, 0644};
    unsigned char master[32];
    char *paths[3], *pem[3] = {NULL, NULL, NULL}, ebuf[256];
    size_t lens[3] = {sizeof(master), 0, 0};
    EVP_PKEY *pkey = NULL;
    struct stat st;
    int done = 0, rc = -1;

    *error = NULL;
    if (ar_keys_make_dir(dir, error) < 0)
        return -1;
    for (int i = 0; i < 3; i++)
        paths[i] = ar_keys_path(dir, files[i]);
    for (int i = 0; i < 3 && *error == NULL; i++)
        if (lstat(paths[i], &st) == 0 || errno != ENOENT)
            *error = mk_xasprintf("%s: already exists; keys are never overwritten", paths[i]);
    if (*error)
        goto out;
    if (RAND_priv_bytes(master, sizeof(master)) != 1
        || (pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) == NULL
        || (pem[1] = ar_keys_pem(pkey, true, &lens[1])) == NULL
        || (pem[2] = ar_keys_pem(pkey, false, &lens[2])) == NULL) {
        *error = mk_xasprintf("%s: cannot generate keys: %s", dir,
                              ar_keys_ossl_error(ebuf, sizeof(ebuf)));
        goto out;
    }
    for (done = 0; done < 3; done++)
        if (ar_keys_write_new(paths[done], done == 0 ? (char *) master : pem[done], lens[done],
                              modes[done], error) < 0)
            goto out;
    rc = ar_keys_fsync_dir(dir, error);
out:
    if (rc < 0)                         /* a half-made key set would block the next try */
        for (int i = 0; i < done; i++)
            unlink(paths[i]);
    OPENSSL_cleanse(master, sizeof(master));
    for (int i = 0; i < 3; i++) {
        if (pem[i])
            OPENSSL_cleanse(pem[i], lens[i]);
        free(pem[i]);
        free(paths[i]);
    }
    EVP_PKEY_free(pkey);
    return rc;
}

/*
 * Read a key file after checking its type and mode: a secret must be
 * neither readable nor writable by group or others, a public key not
 * writable by them.
 */
static char *ar_keys_read(const char *path, bool secret, size_t *len, char **error)
{
    mode_t forbidden = secret ? 0077 : 0022;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    size_t used = 0;
    char *data;

    if (fd < 0) {
        *error = mk_xasprintf("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > AR_KEYS_MAX_FILE) {
        *error = mk_xasprintf("%s: not a key file (a regular file of at most %d bytes)", path,
                              AR_KEYS_MAX_FILE);
        close(fd);
        return NULL;
    }
    if (st.st_mode & forbidden) {
        *error = mk_xasprintf("%s: mode %04o lets %s; run chmod %s %s", path,
                              (unsigned) (st.st_mode & 07777),
                              secret ? "group or others read or write the key"
                                     : "group or others write the key",
                              secret ? "600" : "644", path);
        close(fd);
        return NULL;
    }
    data = mk_xmalloc((size_t) st.st_size + 1);
    while (used < (size_t) st.st_size) {
        ssize_t n = read(fd, data + used, (size_t) st.st_size - used);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            *error = mk_xasprintf("%s: read error: %s", path, n < 0 ? strerror(errno)
                                                                  : "file shrank");
            OPENSSL_cleanse(data, used);
            free(data);
            close(fd);
            return NULL;
        }
        used += (size_t) n;
    }
    close(fd);
    data[used] = '\0';
    *len = used;
    return data;
}

/* Never prompt for a passphrase: an encrypted key is simply refused. */
static int ar_keys_no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void) buf, (void) size, (void) rwflag, (void) arg;
    return -1;
}

static EVP_PKEY *ar_keys_load_pem(const char *dir, const char *file, bool private_key,
                                  char **error)
{
    char *path = ar_keys_path(dir, file), ebuf[256];
    EVP_PKEY *pkey = NULL;
    size_t len;
    char *pem;
    BIO *bio;

    if ((pem = ar_keys_read(path, private_key, &len, error)) == NULL) {
        free(path);
        return NULL;
    }
    if ((bio = BIO_new_mem_buf(pem, (int) len)) != NULL)
        pkey = private_key ? PEM_read_bio_PrivateKey(bio, NULL, ar_keys_no_passphrase, NULL)
                           : PEM_read_bio_PUBKEY(bio, NULL, ar_keys_no_passphrase, NULL);
    BIO_free(bio);
    OPENSSL_cleanse(pem, len);
    free(pem);
    if (pkey == NULL)
        *error = mk_xasprintf("%s: not a PEM %s key: %s", path, private_key ? "private" : "public",
                              ar_keys_ossl_error(ebuf, sizeof(ebuf)));
    else if (!EVP_PKEY_is_a(pkey, "ED25519")) {
        *error = mk_xasprintf("%s: not an Ed25519 key", path);
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    free(path);
    return pkey;
}

static int ar_keys_load_master(const char *dir, struct ar_keys *k, char **error)
{
    char *path = ar_keys_path(dir, AR_KEYS_MASTER_FILE);
    size_t len;
    char *data = ar_keys_read(path, true, &len, error);
    int rc = -1;

    if (data != NULL && len != sizeof(k->master))
        *error = mk_xasprintf("%s: %zu bytes, a master key has exactly %zu", path, len,
                              sizeof(k->master));
    else if (data != NULL) {
        memcpy(k->master, data, sizeof(k->master));
        rc = 0;
    }
    if (data != NULL) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
    free(path);
    return rc;
}

int ar_keys_load(const char *dir, struct ar_keys *k, bool need_private, char **error)
{
    memset(k, 0, sizeof(*k));
    *error = NULL;
    if (ar_keys_load_master(dir, k, error) < 0
        || (k->verify = ar_keys_load_pem(dir, AR_KEYS_VERIFY_FILE, false, error)) == NULL)
        goto fail;
    if (need_private) {
        if ((k->sign = ar_keys_load_pem(dir, AR_KEYS_SIGN_FILE, true, error)) == NULL)
            goto fail;
        if (EVP_PKEY_eq(k->sign, k->verify) != 1) {
            *error = mk_xasprintf("%s/%s: does not match %s", dir, AR_KEYS_SIGN_FILE,
                                  AR_KEYS_VERIFY_FILE);
            goto fail;
        }
    }
    return 0;
fail:
    ar_keys_free(k);
    return -1;
}

void ar_keys_free(struct ar_keys *k)
{
    if (k == NULL)
        return;
    OPENSSL_cleanse(k->master, sizeof(k->master));
    EVP_PKEY_free(k->sign);
    EVP_PKEY_free(k->verify);
    k->sign = k->verify = NULL;
}
