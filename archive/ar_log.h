/*
 * NAME
 *	ar_log 3h
 * SUMMARY
 *	the archive's append-only, tamper-evident log
 * SYNOPSIS
 *	#include "ar_log.h"
 *
 *	struct ar_log *ar_log_open(const char *path, const struct ar_keys *keys,
 *				   char **error);
 *	char	*ar_log_take_note(struct ar_log *l);
 *	int	ar_log_append_ingest(struct ar_log *l, const unsigned char object[32],
 *				     const unsigned char envelope[32], const char *spool_id,
 *				     int64_t time, uint64_t *seq, char **error);
 *	int	ar_log_append_tombstone(struct ar_log *l, const unsigned char object[32],
 *					int64_t time, uint64_t *seq, char **error);
 *	int	ar_log_commit(struct ar_log *l, char **error);
 *	uint64_t ar_log_last_seq(const struct ar_log *l);
 *	void	ar_log_close(struct ar_log *l);
 *
 *	int	ar_log_read(const char *path, uint64_t after_seq,
 *			    int (*cb)(void *arg, const struct ar_log_entry *e), void *arg,
 *			    char **error);
 *	int	ar_log_verify(const char *dir_or_path, EVP_PKEY *verify,
 *			      void (*problem)(void *arg, const struct ar_log_problem *p),
 *			      int (*entry)(void *arg, const struct ar_log_entry *e),
 *			      void *arg, char **error);
 *
 *	bool	ar_log_spool_id_valid(const char *id);
 *	const char *ar_log_kind_name(enum ar_log_kind kind);
 *	const char *ar_log_problem_name(enum ar_log_problem_kind kind);
 * DESCRIPTION
 *	The log (DIR/log) has one line per entry, numbered from 1 without
 *	gaps. Hashes are 64 and signatures 128 lower-case hex digits:
 *	    seq=N time=T kind=ingest object=H envelope=H spool=ID prev=H hash=H
 *	    seq=N time=T kind=tombstone object=H prev=H hash=H
 *	    seq=N time=T kind=checkpoint prev=H hash=H sig=S
 *	T is UNIX seconds (for an ingest, the caller's; for a checkpoint,
 *	when it was written). An entry's hash is SHA-256(prev || the text of
 *	the line before " prev="), prev being the hash of the entry before
 *	(32 zero bytes for entry 1). A checkpoint's sig is the Ed25519
 *	signature of "mailkeep log checkpoint v1 seq=N hash=H": it vouches
 *	for every entry up to it. A tombstone records that an object was
 *	purged, so the entries that name it still verify. DIR/log.head,
 *	"seq=N hash=H sig=S", repeats the newest checkpoint, so that a log
 *	cut back to an earlier checkpoint is noticed. The head protects
 *	against accidents and casual tampering only: whoever can write the
 *	directory can also put an older, genuinely signed head back. Copy
 *	checkpoints off the host (audit log, remote syslog) for more.
 *
 *	ar_log_open() opens or creates the log for appending, locks it
 *	(one writer at a time) and reads only its end: the last checkpoint,
 *	whose hash and signature it checks, and what follows it. Entries
 *	after the last checkpoint were never committed (a crash cut the
 *	commit short): they and a torn last line are cut off and kept in
 *	PATH.discarded, and ar_log_take_note() returns an allocated note
 *	saying so, for the caller to log (or NULL). A malformed or
 *	unverifiable line there, a head naming a checkpoint the log lacks,
 *	or a different one, make it fail with "PATH:LINE: problem": a log
 *	in that state must be examined with ar_log_verify(), never appended
 *	to. A lagging head (a crash between the log's sync and the head's)
 *	is brought up to date, a missing one too, with a note. Lines before
 *	the last checkpoint are not read: checking them is ar_log_verify()'s
 *	work. keys must hold the signing key and outlive the log.
 *
 *	ar_log_append_ingest() and ar_log_append_tombstone() add an entry
 *	to a buffer and set *seq; nothing is written. A spool ID has 1 to
 *	AR_LOG_MAX_SPOOL_ID printable ASCII characters, no space; a time is
 *	not negative. ar_log_commit() writes the buffered entries and a
 *	checkpoint, syncs the log, then replaces the head (a new file,
 *	synced, renamed). Only when it returns 0 are the entries durable.
 *	When it fails, the log refuses further work: close and reopen it.
 *	Nothing buffered: nothing done. A head that cannot be replaced is
 *	a note, not a failure: the entries are committed. ar_log_close()
 *	drops what was not committed.
 *
 *	ar_log_last_seq() is the seq of the last committed entry (0 for an
 *	empty log).
 *
 *	ar_log_read() calls cb for each entry with seq > after_seq, in
 *	order, checkpoints included (entries after the last one are not
 *	committed, or are being committed by a writer), ignoring a torn last
 *	line. It finds its starting point by binary search on seq, and
 *	checks every line it reads: well-formed, its hash, the chain, seq
 *	without gaps; anything else fails with "PATH:LINE: problem". A
 *	non-zero return from cb stops it and is returned; otherwise it
 *	returns 0, or -1 with *error.
 *
 *	ar_log_verify() reads the whole log (DIR/log, or PATH, with its
 *	head) and calls problem for each problem it finds:
 *	    modified	a line is malformed, its fields do not give its
 *			hash, or its prev is not the hash of the entry before
 *	    missing	seq skips numbers: entries were removed
 *	    added	seq repeats: an entry was inserted or duplicated
 *	    reordered	an entry appears after a later one
 *	    bad-signature  a checkpoint's (or the head's) signature fails:
 *			also what a chain re-hashed after an edit gives
 *	    truncated	the head names a checkpoint the log lacks, or a
 *			different one, or the head is missing
 *	    unsigned-tail  entries after the last checkpoint (a crash
 *			before the commit ended, or entries appended by
 *			someone without the key), or a torn last line
 *	and entry for each ingest and tombstone entry it takes into the
 *	chain, in seq order, so the caller can check the objects (entry
 *	returning non-zero stops it: -1). It returns the number of
 *	problems, 0 when the log is intact, or -1 with *error when the log
 *	cannot be read.
 *
 *	Limits: a line has at most AR_LOG_MAX_LINE bytes. The functions
 *	that take a struct ar_log are used by one thread at a time.
 */
#ifndef AR_LOG_H
#define AR_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "ar_keys.h"

#define AR_LOG_MAX_SPOOL_ID	200
#define AR_LOG_MAX_LINE		1024

enum ar_log_kind { AR_LOG_INGEST, AR_LOG_TOMBSTONE, AR_LOG_CHECKPOINT };

struct ar_log_entry {
    uint64_t seq;
    int64_t time;
    enum ar_log_kind kind;
    unsigned char object[32];           /* ingest, tombstone */
    unsigned char envelope[32];         /* ingest */
    char spool_id[256];                 /* ingest */
    unsigned char prev[32];
    unsigned char hash[32];
    unsigned char sig[64];              /* checkpoint */
};

enum ar_log_problem_kind {
    AR_LOG_MODIFIED,
    AR_LOG_MISSING,
    AR_LOG_ADDED,
    AR_LOG_REORDERED,
    AR_LOG_BAD_SIGNATURE,
    AR_LOG_TRUNCATED,
    AR_LOG_UNSIGNED_TAIL
};

struct ar_log_problem {
    enum ar_log_problem_kind kind;
    uint64_t seq;                       /* the entry concerned; 0 when none */
    uint64_t line;                      /* its line in the log; 0 when none */
    const char *detail;                 /* one line, for a person */
};

struct ar_log;

struct ar_log *ar_log_open(const char *path, const struct ar_keys *keys, char **error);
char *ar_log_take_note(struct ar_log *l);
int ar_log_append_ingest(struct ar_log *l, const unsigned char object[32],
                         const unsigned char envelope[32], const char *spool_id, int64_t time,
                         uint64_t *seq, char **error);
int ar_log_append_tombstone(struct ar_log *l, const unsigned char object[32], int64_t time,
                            uint64_t *seq, char **error);
int ar_log_commit(struct ar_log *l, char **error);
uint64_t ar_log_last_seq(const struct ar_log *l);
void ar_log_close(struct ar_log *l);

int ar_log_read(const char *path, uint64_t after_seq,
                int (*cb)(void *arg, const struct ar_log_entry *e), void *arg, char **error);
int ar_log_verify(const char *dir_or_path, EVP_PKEY *verify,
                  void (*problem)(void *arg, const struct ar_log_problem *p),
                  int (*entry)(void *arg, const struct ar_log_entry *e), void *arg,
                  char **error);

bool ar_log_spool_id_valid(const char *id);
const char *ar_log_kind_name(enum ar_log_kind kind);
const char *ar_log_problem_name(enum ar_log_problem_kind kind);

#endif
