/*
 * NAME
 *	au_keys 3h
 * SUMMARY
 *	the audit log's signing key pair
 * SYNOPSIS
 *	#include "au_keys.h"
 *
 *	int	au_keys_create(const char *dir, char **error);
 *	int	au_keys_load(const char *dir, bool need_private, EVP_PKEY **sign,
 *			     EVP_PKEY **verify, char **error);
 *	EVP_PKEY *au_keys_load_public(const char *path, char **error);
 * DESCRIPTION
 *	[audit] keys_dir holds audit-signing.key, the Ed25519 private key
 *	that signs the log's checkpoints (PKCS#8 PEM, mode 0600, read by
 *	mailkeep-auditd before it drops privileges), and audit-signing.pub,
 *	its public key (0644), all an auditor needs to verify the log.
 *
 *	au_keys_create() makes DIR (0700) if it is missing and writes a new
 *	pair; it refuses when either file exists: keys are never
 *	overwritten. au_keys_load() loads the public key, and with
 *	need_private the private one, which must match it.
 *	au_keys_load_public() loads a public key from any file (verify -k).
 *	They return 0 (or the key), or -1 (NULL) with an allocated
 *	"PATH: problem" in *error. See mk_crypto(3h) for the checks on the
 *	files' modes.
 */
#ifndef AU_KEYS_H
#define AU_KEYS_H

#include <stdbool.h>

#include <openssl/evp.h>

#define AU_KEYS_SIGN_FILE	"audit-signing.key"
#define AU_KEYS_VERIFY_FILE	"audit-signing.pub"

int au_keys_create(const char *dir, char **error);
int au_keys_load(const char *dir, bool need_private, EVP_PKEY **sign, EVP_PKEY **verify,
                 char **error);
EVP_PKEY *au_keys_load_public(const char *path, char **error);

#endif
