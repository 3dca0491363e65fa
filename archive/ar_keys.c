/*
 * ar_keys - the archive's keys. See ar_keys.h.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ar_keys.h"
#include "mk_crypto.h"
#include "mk_util.h"

static char *ar_keys_path(const char *dir, const char *file)
{
    return mk_xasprintf("%s/%s", dir, file);
}

int ar_keys_create(const char *dir, char **error)
{
    unsigned char master[32];
    char *master_path, *paths[2], ebuf[256];
    struct stat st;
    int rc = -1;

    *error = NULL;
    master_path = ar_keys_path(dir, AR_KEYS_MASTER_FILE);
    paths[0] = ar_keys_path(dir, AR_KEYS_SIGN_FILE);
    paths[1] = ar_keys_path(dir, AR_KEYS_VERIFY_FILE);
    if (mkdir(dir, 0700) < 0 && (errno != EEXIST || stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))) {
        *error = mk_xasprintf("%s: cannot create directory: %s", dir,
                              errno == EEXIST ? "exists and is not a directory" : strerror(errno));
        goto out;
    }
    /* all three are checked before anything is written */
    if (lstat(master_path, &st) == 0 || errno != ENOENT)
        *error = mk_xasprintf("%s: already exists; keys are never overwritten", master_path);
    for (int i = 0; i < 2 && *error == NULL; i++)
        if (lstat(paths[i], &st) == 0 || errno != ENOENT)
            *error = mk_xasprintf("%s: already exists; keys are never overwritten", paths[i]);
    if (*error)
        goto out;
    if (RAND_priv_bytes(master, sizeof(master)) != 1) {
        *error = mk_xasprintf("%s: cannot generate keys: %s", dir,
                              mk_crypto_error(ebuf, sizeof(ebuf)));
        goto out;
    }
    if (mk_crypto_file_create(master_path, master, sizeof(master), 0600, error) < 0)
        goto out;
    /* it syncs the directory, the master key's entry with it */
    if (mk_crypto_keypair_create(dir, AR_KEYS_SIGN_FILE, AR_KEYS_VERIFY_FILE, error) < 0) {
        unlink(master_path);            /* a half-made key set would block the next try */
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(master, sizeof(master));
    free(master_path);
    free(paths[0]);
    free(paths[1]);
    return rc;
}

static int ar_keys_load_master(const char *dir, struct ar_keys *k, char **error)
{
    char *path = ar_keys_path(dir, AR_KEYS_MASTER_FILE);
    size_t len;
    char *data = mk_crypto_file_read(path, true, &len, error);
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
        || mk_crypto_keypair_load(dir, AR_KEYS_SIGN_FILE, AR_KEYS_VERIFY_FILE, need_private,
                                  &k->sign, &k->verify, error) < 0) {
        ar_keys_free(k);
        return -1;
    }
    return 0;
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
