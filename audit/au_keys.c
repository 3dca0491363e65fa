/*
 * au_keys - the audit log's signing key pair. See au_keys.h.
 */
#include "config.h"

#include "au_keys.h"
#include "mk_crypto.h"

int au_keys_create(const char *dir, char **error)
{
    return mk_crypto_keypair_create(dir, AU_KEYS_SIGN_FILE, AU_KEYS_VERIFY_FILE, error);
}

int au_keys_load(const char *dir, bool need_private, EVP_PKEY **sign, EVP_PKEY **verify,
                 char **error)
{
    return mk_crypto_keypair_load(dir, AU_KEYS_SIGN_FILE, AU_KEYS_VERIFY_FILE, need_private,
                                  sign, verify, error);
}

EVP_PKEY *au_keys_load_public(const char *path, char **error)
{
    *error = NULL;
    return mk_crypto_key_load(path, false, error);
}
