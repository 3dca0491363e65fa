/*
 * NAME
 *	ar_keys 3h
 * SUMMARY
 *	the archive's keys: the master key for objects, the log's signing key
 * SYNOPSIS
 *	#include "ar_keys.h"
 *
 *	int	ar_keys_create(const char *dir, char **error);
 *	int	ar_keys_load(const char *dir, struct ar_keys *k, bool need_private,
 *			     char **error);
 *	void	ar_keys_free(struct ar_keys *k);
 * DESCRIPTION
 *	A key directory holds three files:
 *	    archive.key	32 random bytes, the master key from which each
 *			object's encryption key is derived (mode 0600)
 *	    signing.key	the Ed25519 private key that signs the log's
 *			checkpoints, PEM (PKCS#8) (mode 0600)
 *	    signing.pub	its public key, PEM (SubjectPublicKeyInfo) (0644)
 *	Losing archive.key makes every object unreadable: back it up apart
 *	from the archive. signing.pub may be copied to auditors, who need
 *	nothing else to verify the log.
 *
 *	ar_keys_create() makes DIR (mode 0700) if it is missing and writes
 *	the three files, each synced to disk. It refuses to run when any of
 *	them already exists: keys are never overwritten.
 *
 *	ar_keys_load() loads the master key and signing.pub, and with
 *	need_private also signing.key (a process that only reads and
 *	verifies has no use for it: k->sign stays NULL). It refuses a key
 *	file that is not a regular file, that group or others may read or
 *	write (signing.pub: write), a master key that is not exactly 32
 *	bytes, a key that is not Ed25519 and a private key that does not
 *	match signing.pub.
 *
 *	ar_keys_free() wipes the master key and frees the signing keys; it
 *	may be called on a zeroed or partly loaded structure.
 *
 *	On failure the functions return -1 with an allocated
 *	"PATH: problem" in *error, and leave nothing loaded.
 */
#ifndef AR_KEYS_H
#define AR_KEYS_H

#include <stdbool.h>

#include <openssl/evp.h>

#define AR_KEYS_MASTER_FILE	"archive.key"
#define AR_KEYS_SIGN_FILE	"signing.key"
#define AR_KEYS_VERIFY_FILE	"signing.pub"

struct ar_keys {
    unsigned char master[32];
    EVP_PKEY *sign;                     /* NULL unless loaded with need_private */
    EVP_PKEY *verify;
};

int ar_keys_create(const char *dir, char **error);
int ar_keys_load(const char *dir, struct ar_keys *k, bool need_private, char **error);
void ar_keys_free(struct ar_keys *k);

#endif
