/*
 * NAME
 *	mk_crypto 3h
 * SUMMARY
 *	SHA-256, hex, Ed25519 signing keys in PEM files
 * SYNOPSIS
 *	#include "mk_crypto.h"
 *
 *	void	mk_crypto_sha256(const void *data, size_t len, unsigned char out[32]);
 *	void	mk_crypto_hex(const unsigned char *in, size_t n, char *out);
 *	int	mk_crypto_unhex(const char *hex, size_t n, unsigned char *out);
 *
 *	int	mk_crypto_keypair_create(const char *dir, const char *key_file,
 *					 const char *pub_file, char **error);
 *	int	mk_crypto_file_create(const char *path, const void *data, size_t len,
 *				      mode_t mode, char **error);
 *	char	*mk_crypto_file_read(const char *path, bool secret, size_t *len,
 *				     char **error);
 *	char	*mk_crypto_pem(EVP_PKEY *key, bool private_key, size_t *len);
 *	EVP_PKEY *mk_crypto_key_load(const char *path, bool private_key, char **error);
 *	int	mk_crypto_keypair_load(const char *dir, const char *key_file,
 *				       const char *pub_file, bool need_private,
 *				       EVP_PKEY **sign, EVP_PKEY **verify, char **error);
 *	int	mk_crypto_sign(EVP_PKEY *key, const void *msg, size_t len,
 *			       unsigned char sig[64]);
 *	bool	mk_crypto_verify(EVP_PKEY *key, const void *msg, size_t len,
 *				 const unsigned char sig[64]);
 *	const char *mk_crypto_error(char *buf, size_t size);
 *
 *	int	mk_crypto_chain_init(struct mk_crypto_chain *h);
 *	void	mk_crypto_chain_free(struct mk_crypto_chain *h);
 *	void	mk_crypto_chain_hash(struct mk_crypto_chain *h,
 *				     const unsigned char prev[32], const char *text,
 *				     size_t len, unsigned char out[32]);
 *	int	mk_crypto_chain_sign(EVP_PKEY *key, const char *what, uint64_t seq,
 *				     const unsigned char hash[32], unsigned char sig[64]);
 *	bool	mk_crypto_chain_verify(EVP_PKEY *key, const char *what, uint64_t seq,
 *				       const unsigned char hash[32],
 *				       const unsigned char sig[64]);
 * DESCRIPTION
 *	What the archive and the audit log share to hash, sign and keep
 *	their keys.
 *
 *	mk_crypto_sha256() hashes a buffer (it aborts if OpenSSL cannot,
 *	which only a broken installation does). mk_crypto_hex() writes n
 *	bytes as 2n lower-case hex digits and a NUL; mk_crypto_unhex() reads
 *	exactly 2n lower-case hex digits (what our logs write, nothing else)
 *	into n bytes, returning 0, or -1 leaving out untouched.
 *
 *	mk_crypto_keypair_create() makes DIR (mode 0700) if it is missing
 *	and writes a new Ed25519 key pair: key_file, PKCS#8 PEM, mode 0600,
 *	and pub_file, SubjectPublicKeyInfo PEM, mode 0644, each synced, and
 *	the directory synced. It refuses to run when either file exists:
 *	keys are never overwritten. mk_crypto_file_create() creates one
 *	such file (which must not exist) with exactly the data and mode,
 *	synced; it removes what it made when it fails. mk_crypto_pem() is
 *	the PEM text of a key (NULL when OpenSSL fails).
 *
 *	mk_crypto_file_read() reads a key file after checking that it is a
 *	regular file of at most 64 KiB, not a symbolic link, and that group
 *	and others may neither read nor write it (secret) or not write it
 *	(a public key); the message then names the chmod that fixes it.
 *	mk_crypto_key_load() reads a PEM private or public key that way,
 *	refusing an encrypted key (it never prompts) and a key that is not
 *	Ed25519. mk_crypto_keypair_load() loads DIR/pub_file, and with
 *	need_private DIR/key_file, which must match it (*sign stays NULL
 *	otherwise).
 *
 *	mk_crypto_sign() signs msg with an Ed25519 key (0, or -1 with the
 *	reason in OpenSSL's error queue, see mk_crypto_error());
 *	mk_crypto_verify() tells whether sig is msg's signature by key.
 *	mk_crypto_error() writes the newest OpenSSL error into buf and
 *	clears the queue.
 *
 *	The hash chains of the archive's log and of the audit log: an
 *	entry's hash is SHA-256(prev || text), prev the hash of the entry
 *	before. mk_crypto_chain_init() sets up a reusable SHA-256 context
 *	(0, or -1 when OpenSSL cannot), mk_crypto_chain_free() drops it,
 *	mk_crypto_chain_hash() computes one link (it aborts if OpenSSL
 *	fails mid-way). A checkpoint signs the text "WHAT seq=N hash=HEX",
 *	WHAT naming the log and its version, so that a signature cannot be
 *	moved from one kind of log to the other: mk_crypto_chain_sign() and
 *	mk_crypto_chain_verify() sign and check it.
 *
 *	On failure the functions that take error return -1 or NULL with an
 *	allocated "PATH: problem" in *error.
 */
#ifndef MK_CRYPTO_H
#define MK_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>

#define MK_CRYPTO_MAX_KEY_FILE	65536   /* far more than any PEM key we write */

void mk_crypto_sha256(const void *data, size_t len, unsigned char out[32]);
void mk_crypto_hex(const unsigned char *in, size_t n, char *out);
int mk_crypto_unhex(const char *hex, size_t n, unsigned char *out);

int mk_crypto_keypair_create(const char *dir, const char *key_file, const char *pub_file,
                             char **error);
int mk_crypto_file_create(const char *path, const void *data, size_t len, mode_t mode,
                          char **error);
char *mk_crypto_file_read(const char *path, bool secret, size_t *len, char **error);
char *mk_crypto_pem(EVP_PKEY *key, bool private_key, size_t *len);
EVP_PKEY *mk_crypto_key_load(const char *path, bool private_key, char **error);
int mk_crypto_keypair_load(const char *dir, const char *key_file, const char *pub_file,
                           bool need_private, EVP_PKEY **sign, EVP_PKEY **verify,
                           char **error);
int mk_crypto_sign(EVP_PKEY *key, const void *msg, size_t len, unsigned char sig[64]);
bool mk_crypto_verify(EVP_PKEY *key, const void *msg, size_t len, const unsigned char sig[64]);
const char *mk_crypto_error(char *buf, size_t size);

struct mk_crypto_chain {
    EVP_MD *md;
    EVP_MD_CTX *ctx;
};

int mk_crypto_chain_init(struct mk_crypto_chain *h);
void mk_crypto_chain_free(struct mk_crypto_chain *h);
void mk_crypto_chain_hash(struct mk_crypto_chain *h, const unsigned char prev[32],
                          const char *text, size_t len, unsigned char out[32]);
int mk_crypto_chain_sign(EVP_PKEY *key, const char *what, uint64_t seq,
                         const unsigned char hash[32], unsigned char sig[64]);
bool mk_crypto_chain_verify(EVP_PKEY *key, const char *what, uint64_t seq,
                            const unsigned char hash[32], const unsigned char sig[64]);

#endif
