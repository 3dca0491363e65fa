/*
 * mk_crypto - SHA-256, hex, Ed25519 signing keys in PEM files. See mk_crypto.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "mk_crypto.h"
#include "mk_util.h"

/* Hashing and hex */

void mk_crypto_sha256(const void *data, size_t len, unsigned char out[32])
{
    if (EVP_Digest(data ? data : "", len, out, NULL, EVP_sha256(), NULL) != 1) {
        fprintf(stderr, "fatal: SHA-256 failed\n");
        abort();
    }
}

const char *mk_crypto_error(char *buf, size_t size)
{
    unsigned long e = ERR_get_error();

    if (e == 0)
        snprintf(buf, size, "unknown OpenSSL error");
    else
        ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return buf;
}

/* Key files */

int mk_crypto_file_create(const char *path, const void *data, size_t len, mode_t mode,
                          char **error)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0600);

    if (fd < 0) {
        *error = mk_xasprintf("%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    if (mk_write_all(fd, data, len) < 0 || fchmod(fd, mode) < 0 || fsync(fd) < 0)
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

char *mk_crypto_pem(EVP_PKEY *key, bool private_key, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data, *pem = NULL;
    long n;
    int ok;

    if (bio == NULL)
        return NULL;
    ok = private_key ? PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)
                     : PEM_write_bio_PUBKEY(bio, key);
    if (ok == 1 && (n = BIO_get_mem_data(bio, &data)) > 0) {
        pem = mk_xstrndup(data, (size_t) n);
        *len = (size_t) n;
        OPENSSL_cleanse(data, (size_t) n);
    }
    BIO_free(bio);
    return pem;
}

static int mk_crypto_make_dir(const char *dir, char **error)
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

int mk_crypto_keypair_create(const char *dir, const char *key_file, const char *pub_file,
                             char **error)
{
    char *paths[2], *pem[2] = {NULL, NULL}, ebuf[256];
    size_t lens[2] = {0, 0};
    EVP_PKEY *pkey = NULL;
    struct stat st;
    int done = 0, rc = -1;

    *error = NULL;
    if (mk_crypto_make_dir(dir, error) < 0)
        return -1;
    paths[0] = mk_xasprintf("%s/%s", dir, key_file);
    paths[1] = mk_xasprintf("%s/%s", dir, pub_file);
    for (int i = 0; i < 2 && *error == NULL; i++)
        if (lstat(paths[i], &st) == 0 || errno != ENOENT)
            *error = mk_xasprintf("%s: already exists; keys are never overwritten", paths[i]);
    if (*error)
        goto out;
    if ((pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) == NULL
        || (pem[0] = mk_crypto_pem(pkey, true, &lens[0])) == NULL
        || (pem[1] = mk_crypto_pem(pkey, false, &lens[1])) == NULL) {
        *error = mk_xasprintf("%s: cannot generate a key: %s", dir,
                              mk_crypto_error(ebuf, sizeof(ebuf)));
        goto out;
    }
    for (done = 0; done < 2; done++)
        if (mk_crypto_file_create(paths[done], pem[done], lens[done], done == 0 ? 0600 : 0644,
                                  error) < 0)
            goto out;
    if (mk_fsync_dir(dir) < 0) {
        *error = mk_xasprintf("%s: cannot sync directory: %s", dir, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (rc < 0)                         /* half a key pair would block the next try */
        for (int i = 0; i < done; i++)
            unlink(paths[i]);
    for (int i = 0; i < 2; i++) {
        if (pem[i])
            OPENSSL_cleanse(pem[i], lens[i]);
        free(pem[i]);
        free(paths[i]);
    }
    EVP_PKEY_free(pkey);
    return rc;
}

char *mk_crypto_file_read(const char *path, bool secret, size_t *len, char **error)
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
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MK_CRYPTO_MAX_KEY_FILE) {
        *error = mk_xasprintf("%s: not a key file (a regular file of at most %d bytes)", path,
                              MK_CRYPTO_MAX_KEY_FILE);
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
static int mk_crypto_no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void) buf, (void) size, (void) rwflag, (void) arg;
    return -1;
}

EVP_PKEY *mk_crypto_key_load(const char *path, bool private_key, char **error)
{
    EVP_PKEY *pkey = NULL;
    char ebuf[256], *pem;
    size_t len;
    BIO *bio;

    if ((pem = mk_crypto_file_read(path, private_key, &len, error)) == NULL)
        return NULL;
    if ((bio = BIO_new_mem_buf(pem, (int) len)) != NULL)
        pkey = private_key ? PEM_read_bio_PrivateKey(bio, NULL, mk_crypto_no_passphrase, NULL)
                           : PEM_read_bio_PUBKEY(bio, NULL, mk_crypto_no_passphrase, NULL);
    BIO_free(bio);
    OPENSSL_cleanse(pem, len);
    free(pem);
    if (pkey == NULL)
        *error = mk_xasprintf("%s: not a PEM %s key: %s", path, private_key ? "private" : "public",
                              mk_crypto_error(ebuf, sizeof(ebuf)));
    else if (!EVP_PKEY_is_a(pkey, "ED25519")) {
        *error = mk_xasprintf("%s: not an Ed25519 key", path);
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    return pkey;
}

int mk_crypto_keypair_load(const char *dir, const char *key_file, const char *pub_file,
                           bool need_private, EVP_PKEY **sign, EVP_PKEY **verify, char **error)
{
    char *path = mk_xasprintf("%s/%s", dir, pub_file);

    *error = NULL;
    *sign = NULL;
    *verify = mk_crypto_key_load(path, false, error);
    free(path);
    if (*verify == NULL)
        return -1;
    if (!need_private)
        return 0;
    path = mk_xasprintf("%s/%s", dir, key_file);
    *sign = mk_crypto_key_load(path, true, error);
    if (*sign != NULL && EVP_PKEY_eq(*sign, *verify) != 1)
        *error = mk_xasprintf("%s: does not match %s", path, pub_file);
    free(path);
    if (*error != NULL) {
        EVP_PKEY_free(*sign);
        EVP_PKEY_free(*verify);
        *sign = *verify = NULL;
        return -1;
    }
    return 0;
}

/* Signatures */

int mk_crypto_sign(EVP_PKEY *key, const void *msg, size_t len, unsigned char sig[64])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t siglen = 64;
    int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) == 1
        && EVP_DigestSign(ctx, sig, &siglen, msg, len) == 1 && siglen == 64;

    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

bool mk_crypto_verify(EVP_PKEY *key, const void *msg, size_t len, const unsigned char sig[64])
{
    EVP_MD_CTX *ctx = key ? EVP_MD_CTX_new() : NULL;
    bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1
        && EVP_DigestVerify(ctx, sig, 64, msg, len) == 1;

    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/* Hash chains with signed checkpoints */

int mk_crypto_chain_init(struct mk_crypto_chain *h)
{
    h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    h->ctx = EVP_MD_CTX_new();
    return h->md && h->ctx ? 0 : -1;
}

void mk_crypto_chain_free(struct mk_crypto_chain *h)
{
    EVP_MD_free(h->md);
    EVP_MD_CTX_free(h->ctx);
    h->md = NULL;
    h->ctx = NULL;
}

void mk_crypto_chain_hash(struct mk_crypto_chain *h, const unsigned char prev[32],
                          const char *text, size_t len, unsigned char out[32])
{
    if (EVP_DigestInit_ex(h->ctx, h->md, NULL) != 1 || EVP_DigestUpdate(h->ctx, prev, 32) != 1
        || EVP_DigestUpdate(h->ctx, text, len) != 1
        || EVP_DigestFinal_ex(h->ctx, out, NULL) != 1) {
        fprintf(stderr, "fatal: SHA-256 failed\n");
        abort();
    }
}

/* What a checkpoint's signature covers: "WHAT seq=N hash=HEX". */
static size_t mk_crypto_chain_text(const char *what, uint64_t seq, const unsigned char hash[32],
                                   char out[256])
{
    char hex[65];
    int n;

    mk_crypto_hex(hash, 32, hex);
    n = snprintf(out, 256, "%s seq=%" PRIu64 " hash=%s", what, seq, hex);
    return n < 0 ? 0 : (size_t) n >= 256 ? 255 : (size_t) n;
}

int mk_crypto_chain_sign(EVP_PKEY *key, const char *what, uint64_t seq,
                         const unsigned char hash[32], unsigned char sig[64])
{
    char text[256];
    size_t len = mk_crypto_chain_text(what, seq, hash, text);

    return mk_crypto_sign(key, text, len, sig);
}

bool mk_crypto_chain_verify(EVP_PKEY *key, const char *what, uint64_t seq,
                            const unsigned char hash[32], const unsigned char sig[64])
{
    char text[256];
    size_t len = mk_crypto_chain_text(what, seq, hash, text);

    return mk_crypto_verify(key, text, len, sig);
}
