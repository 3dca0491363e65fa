/*
 * NAME
 *	ar_store 3h
 * SUMMARY
 *	the archive's object store: content-addressed, compressed, encrypted,
 *	appended to pack files
 * SYNOPSIS
 *	#include "ar_store.h"
 *
 *	struct ar_store *ar_store_open(const char *dir, const unsigned char master[32],
 *				       bool writer, char **error);
 *	void	ar_store_close(struct ar_store *s);
 *	char	*ar_store_take_note(struct ar_store *s);
 *	int	ar_store_put(struct ar_store *s, const void *data, size_t len,
 *			     unsigned char hash[32], bool *existed, char **error);
 *	int	ar_store_sync(struct ar_store *s, char **error);
 *	enum ar_check ar_store_get(struct ar_store *s, const unsigned char hash[32],
 *				   char **data, size_t *len, char **error);
 *	enum ar_check ar_store_check(struct ar_store *s, const unsigned char hash[32],
 *				     char **error);
 *	int	ar_store_locate(struct ar_store *s, const unsigned char hash[32],
 *				char **pack_path, uint64_t *offset, uint64_t *length,
 *				char **error);
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
 *	original bytes; identical copies are stored once. Its image is
 *	    "MKAO"  version (1)  nonce (12 random bytes)
 *	    AES-256-GCM ciphertext of the zstd frame of the original
 *	    GCM tag (16 bytes)
 *	under the key HKDF-SHA256(master, no salt, info = "mailkeep archive
 *	object v1" || hash), with "MKAO", the version byte and the 32-byte
 *	hash as additional data: an image stored under another name does
 *	not authenticate. Objects are at most AR_STORE_MAX_OBJECT bytes.
 *
 *	Layout. Images are appended, never rewritten, to the pack files
 *	DIR/objects/packs/pack-NNNNNNNN (8 decimal digits from 00000001,
 *	mode 0600), each as a record:
 *	    "MKAR"  version (1)  state (0 live, 1 removed)  2 zero bytes
 *	    the object's hash (32 bytes)
 *	    the image's length (8 bytes, big-endian)
 *	    the image
 *	A record starts a new pack when it would take the current one past
 *	AR_STORE_PACK_MAX bytes (a larger record goes alone in a pack). For
 *	tests only, the environment variable MK_AR_PACK_MAX (bytes) read by
 *	ar_store_open() replaces that limit. DIR/objects/objects.sqlite
 *	(SQLite, WAL) indexes the records: objects (hash, pack, offset of
 *	the record, length of the image) and packs (pack, indexed_end: every
 *	live record below it is indexed). The packs alone are the truth:
 *	the index can always be rebuilt from them, and a writer does so
 *	when it is missing or empty (delete it to force a rebuild). Nothing
 *	is created per object: one pack per AR_STORE_PACK_MAX bytes.
 *
 *	ar_store_open() with writer creates DIR, DIR/objects and the packs
 *	directory (mode 0700) when missing, and takes an exclusive lock
 *	(flock) on DIR/objects/packs/lock, failing at once when another
 *	writer holds it. It then recovers: every pack whose size is not
 *	its indexed_end is scanned from there, and each complete live
 *	record found is indexed (written before a crash, or by a sync whose
 *	index transaction a power loss undid: re-indexing is safe, the
 *	store is content-addressed, and an indexed hash keeps its row).
 *	A tail that is no complete record (an append a crash cut short) is
 *	truncated; bytes that are no record followed by a record are left
 *	in place and skipped (damage); a pack shorter than its indexed_end
 *	(truncated or restored from an older copy) is not appended to again.
 *	Each of these, and a rebuild, leaves a note for ar_store_take_note(),
 *	which returns it (allocated) or NULL. Without writer the store is a
 *	reader: it creates nothing, takes no lock, opens the index read-only
 *	(when there is none yet it sees no object) and can neither put,
 *	sync nor remove. Readers and one writer, in any processes, may use a
 *	directory at the same time. The store keeps a copy of the master
 *	key, wiped by ar_store_close(), and its compression and cipher
 *	contexts.
 *
 *	ar_store_put() computes the hash; when the object is indexed or
 *	pending it sets *existed and writes nothing: an existing object is
 *	trusted, not read (ar_store_check() finds a damaged one). Otherwise
 *	it appends the record to the current pack and the object is pending:
 *	this store's get, check, locate and remove find it, and walk (which
 *	reads the packs) reports it, but other stores do not see it.
 *	ar_store_sync() makes the packs written since the last sync durable
 *	(fdatasync; the packs directory too when a pack was made), and only
 *	then indexes the pending objects in one transaction: when it
 *	returns they are durable. So put a batch, sync once, then log the
 *	batch. Beyond AR_STORE_MAX_PENDING pending objects put syncs by
 *	itself. After a failed write or sync of a pack (whose data the
 *	kernel may have dropped) the store refuses to put or sync: close
 *	it, and opening again recovers. ar_store_close() cuts the packs
 *	back to where the last sync left them: pending objects were never
 *	durable, so never logged. After a crash instead, the next writer
 *	indexes the complete ones.
 *
 *	ar_store_get() returns AR_OK with the original bytes in *data
 *	(allocated, NUL-terminated, *len not counting the NUL), or
 *	AR_MISSING (not indexed, or removed), AR_CORRUPT (the record is not
 *	where the index says, or its header names another hash: moved or
 *	overwritten; the pack ends inside it; authentication fails: the
 *	image was modified, or stored under another name; or the frame is
 *	bad or claims more than AR_STORE_MAX_OBJECT bytes), AR_MISMATCH
 *	(decrypts, yet its SHA-256 differs: only a holder of the master key
 *	can make one) or AR_IOERR; all but AR_OK with an allocated
 *	"PATH: problem" in *error. ar_store_check() does the same work and
 *	keeps nothing. A reader never sees a record appended but not yet
 *	indexed.
 *
 *	ar_store_locate() gives an indexed or pending object's image: the
 *	pack's path (allocated), the image's offset in it and its length.
 *	It returns 1, 0 when the store has no such object, or -1.
 *
 *	ar_store_remove() erases an object (for purging): its record's
 *	header is rewritten as removed, with the hash zeroed and the length
 *	kept so that scans step over it; the image is deallocated
 *	(fallocate PUNCH_HOLE), or overwritten with zeros where the file
 *	system cannot; then the index row is deleted (index pages are
 *	zeroed on delete). A reader reading it at that moment gets
 *	AR_MISSING. The removal is durable after ar_store_sync(). Removing
 *	an object the store does not have is an error.
 *
 *	ar_store_walk() reads the packs, not the index, in order, and calls
 *	cb for each live record's hash, pending or appended by anyone and
 *	never indexed included; a hash stored twice is reported twice. A
 *	non-zero return from cb ends the walk and is returned. Bytes that
 *	are no record (damage) are skipped to the next record, and the walk
 *	goes on, then returns -1 with *error naming the first such place
 *	and how many there were; so it does when a pack cannot be read. An
 *	incomplete record ending the last pack (an append under way, or a
 *	crash's leftover the next writer cuts off) is not damage. Otherwise
 *	it returns 0.
 *
 *	The other functions return 0, or -1 with an allocated error.
 *
 *	A store is used by one thread at a time.
 *
 *	Limits: 99999999 packs; the index has a row of about 60 bytes per
 *	object (some 6 GB at 100 million), looked up by hash at each put,
 *	so ingest speed depends on its pages staying in memory. A removed
 *	record keeps its 48-byte header. Space is reclaimed only by holes.
 *
 *	ar_sha256() hashes a buffer; ar_hex() writes a hash as 64
 *	lower-case hex digits; ar_unhex() reads exactly 64 hex digits,
 *	returning 0, or -1 on anything else.
 */
#ifndef AR_STORE_H
#define AR_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AR_STORE_MAX_OBJECT	((size_t) 1 << 30)
#define AR_STORE_MAX_PENDING	4096
#define AR_STORE_PACK_MAX	((uint64_t) 1 << 30)

enum ar_check {
    AR_OK,
    AR_MISSING,
    AR_CORRUPT,                         /* bad format, or authentication fails */
    AR_MISMATCH,                        /* decrypts, but the content's SHA-256 differs */
    AR_IOERR
};

struct ar_store;

struct ar_store *ar_store_open(const char *dir, const unsigned char master[32], bool writer,
                               char **error);
void ar_store_close(struct ar_store *s);
char *ar_store_take_note(struct ar_store *s);
int ar_store_put(struct ar_store *s, const void *data, size_t len, unsigned char hash[32],
                 bool *existed, char **error);
int ar_store_sync(struct ar_store *s, char **error);
enum ar_check ar_store_get(struct ar_store *s, const unsigned char hash[32], char **data,
                           size_t *len, char **error);
enum ar_check ar_store_check(struct ar_store *s, const unsigned char hash[32], char **error);
int ar_store_locate(struct ar_store *s, const unsigned char hash[32], char **pack_path,
                    uint64_t *offset, uint64_t *length, char **error);
int ar_store_remove(struct ar_store *s, const unsigned char hash[32], char **error);
int ar_store_walk(struct ar_store *s, int (*cb)(void *arg, const unsigned char hash[32]),
                  void *arg, char **error);
const char *ar_check_name(enum ar_check c);

void ar_sha256(const void *data, size_t len, unsigned char out[32]);
void ar_hex(const unsigned char hash[32], char out[65]);
int ar_unhex(const char *hex, unsigned char hash[32]);

#endif
