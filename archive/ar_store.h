/*
 * NAME
 *	ar_store 3h
 * SUMMARY
 *	the archive's object store: content-addressed, compressed, encrypted
 * SYNOPSIS
 *	#include "ar_store.h"
 *
 *	struct ar_store *ar_store_open(const char *dir, const unsigned char master[32],
 *				       char **error);
 *	void	ar_store_close(struct ar_store *s);
 *	int	ar_store_put(struct ar_store *s, const void *data, size_t len,
 *			     unsigned char hash[32], bool *existed, char **error);
 *	int	ar_store_sync(struct ar_store *s, char **error);
 *	enum ar_check ar_store_get(struct ar_store *s, const unsigned char hash[32],
 *				   char **data, size_t *len, char **error);
 *	enum ar_check ar_store_check(struct ar_store *s, const unsigned char hash[32],
 *				     char **error);
 *	int	ar_store_remove(struct ar_store *s, const unsigned char hash[32],
 *				char **error);
 *	int	ar_store_walk(struct ar_store *s,
 *			      int (*cb)(void *arg, const unsigned char hash[32]),
 *			      void *arg, char **error);
 *	const char *ar_check_name(enum ar_check c);
 *
 *	void	ar_sha256(const void *data, size_t len, unsigned char out[32]);
 *	void	ar_hex(const unsigned char hash[32], char out[65]);
 *	int	ar_unhex(const char *hex, unsigned char hash[32]);
 * DESCRIPTION
 *	An object is a message or an envelope, named by the SHA-256 of its
 *	original bytes and kept in DIR/objects/XX/HASH, XX being the first
 *	two of the 64 lower-case hex digits. Identical copies are stored
 *	once. An object file is
 *	    "MKAO"  version (1)  nonce (12 random bytes)
 *	    AES-256-GCM ciphertext of the zstd frame of the original
 *	    GCM tag (16 bytes)
 *	under the key HKDF-SHA256(master, no salt, info = "mailkeep archive
 *	object v1" || hash), with "MKAO", the version byte and the 32-byte
 *	hash as additional data: an object copied under another name does
 *	not authenticate. Objects are at most AR_STORE_MAX_OBJECT bytes.
 *
 *	ar_store_open() creates DIR and DIR/objects (mode 0700) when they
 *	are missing. The store keeps a copy of the master key, wiped by
 *	ar_store_close(), and its compression and cipher contexts.
 *
 *	ar_store_put() computes the hash; when the object exists (or is
 *	pending) it sets *existed and writes nothing: an existing object is
 *	trusted, not read (ar_store_check() finds a damaged one). Otherwise
 *	it writes the object to a temporary file ".tmp-*" in the object's
 *	directory and starts its writeback; the object is pending: get,
 *	check and remove find it, walk does not. ar_store_sync() syncs
 *	every pending file, renames each into place (mode 0400), then syncs
 *	the directories changed: only then are the objects durable. So put
 *	a batch, sync once, then log the batch: one sync costs about what
 *	one object's fsync would. Beyond AR_STORE_MAX_PENDING pending
 *	objects put syncs by itself. ar_store_close() deletes the objects
 *	still pending: they were never made durable, so never logged.
 *
 *	ar_store_get() returns AR_OK with the original bytes in *data
 *	(allocated, NUL-terminated, *len not counting the NUL), or
 *	AR_MISSING (no such object), AR_CORRUPT (not an object file,
 *	authentication fails: modified or misnamed, or the frame is bad or
 *	claims more than AR_STORE_MAX_OBJECT bytes), AR_MISMATCH (decrypts,
 *	yet its SHA-256 differs: only a holder of the master key can make
 *	one) or AR_IOERR; all but AR_OK with an allocated "PATH: problem"
 *	in *error. ar_store_check() does the same work and keeps nothing.
 *
 *	ar_store_remove() deletes an object (for purging); the removal is
 *	durable after ar_store_sync(). Removing a missing object is an
 *	error.
 *
 *	ar_store_walk() calls cb for each object file in place, in no
 *	particular order, skipping temporary files (those a crash leaves
 *	can be deleted once older than any running ingest) and foreign
 *	names.
 *	A non-zero return from cb ends the walk and is returned; otherwise
 *	it returns 0, or -1 with *error when a directory cannot be read.
 *
 *	The other functions return 0, or -1 with an allocated error.
 *
 *	A store is used by one thread at a time; several stores (one per
 *	thread or process) may share a directory: file names are unique
 *	per writer, renames atomic and objects immutable.
 *
 *	ar_sha256() hashes a buffer; ar_hex() writes a hash as 64
 *	lower-case hex digits; ar_unhex() reads exactly 64 hex digits,
 *	returning 0, or -1 on anything else.
 */
#ifndef AR_STORE_H
#define AR_STORE_H

#include <stdbool.h>
#include <stddef.h>

#define AR_STORE_MAX_OBJECT	((size_t) 1 << 30)
#define AR_STORE_MAX_PENDING	4096

enum ar_check {
    AR_OK,
    AR_MISSING,
    AR_CORRUPT,                         /* bad format, or authentication fails */
    AR_MISMATCH,                        /* decrypts, but the content's SHA-256 differs */
    AR_IOERR
};

struct ar_store;

struct ar_store *ar_store_open(const char *dir, const unsigned char master[32], char **error);
void ar_store_close(struct ar_store *s);
int ar_store_put(struct ar_store *s, const void *data, size_t len, unsigned char hash[32],
                 bool *existed, char **error);
int ar_store_sync(struct ar_store *s, char **error);
enum ar_check ar_store_get(struct ar_store *s, const unsigned char hash[32], char **data,
                           size_t *len, char **error);
enum ar_check ar_store_check(struct ar_store *s, const unsigned char hash[32], char **error);
int ar_store_remove(struct ar_store *s, const unsigned char hash[32], char **error);
int ar_store_walk(struct ar_store *s, int (*cb)(void *arg, const unsigned char hash[32]),
                  void *arg, char **error);
const char *ar_check_name(enum ar_check c);

void ar_sha256(const void *data, size_t len, unsigned char out[32]);
void ar_hex(const unsigned char hash[32], char out[65]);
int ar_unhex(const char *hex, unsigned char hash[32]);

#endif
