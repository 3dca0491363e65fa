/*
 * NAME
 *	au_log 3h
 * SUMMARY
 *	the audit log: daily files of JSON lines, one hash chain, signed checkpoints
 * SYNOPSIS
 *	#include "au_log.h"
 *
 *	struct au_log *au_log_open(const char *dir, EVP_PKEY *sign, EVP_PKEY *verify,
 *				   char **error);
 *	char	*au_log_take_note(struct au_log *l);
 *	int	au_log_append(struct au_log *l, const char *members, size_t len,
 *			      int64_t pid, int64_t uid, int64_t time, uint64_t *seq,
 *			      char **error);
 *	int	au_log_checkpoint(struct au_log *l, int64_t time, char **error);
 *	int	au_log_flush(struct au_log *l, char **error);
 *	uint64_t au_log_last_seq(const struct au_log *l);
 *	uint64_t au_log_pending_seq(const struct au_log *l);
 *	size_t	au_log_pending_bytes(const struct au_log *l);
 *	uint64_t au_log_unsigned(const struct au_log *l);
 *	void	au_log_close(struct au_log *l);
 *
 *	int	au_log_read(const char *dir, int64_t since, int64_t until,
 *			    int (*cb)(void *arg, const struct au_log_record *r), void *arg,
 *			    char **error);
 *	int	au_log_verify(const char *dir, EVP_PKEY *verify,
 *			      void (*problem)(void *arg, const struct au_log_problem *p),
 *			      void *arg, struct au_log_stats *stats, char **error);
 *
 *	const char *au_log_parse(const char *line, size_t len, struct au_log_record *r);
 *	size_t	au_log_format_time(int64_t time, char out[AU_LOG_TIME_LEN + 1]);
 *	int	au_log_parse_time(const char *text, size_t len, int64_t *time);
 *	void	au_log_file_name(int64_t time, char out[AU_LOG_NAME_LEN + 1]);
 *	const char *au_log_problem_name(enum au_log_problem_kind kind);
 * DESCRIPTION
 *	The format is fixed by docs/audit-protocol.md. DIR holds one file
 *	per UTC day, YYYY-MM-DD.log, of one line per record, numbered from 1
 *	without gaps across the files:
 *	    {"seq":N,"time":"T",MEMBERS,"peer":{"pid":P,"uid":U},"prev":"H","hash":"H"}
 *	    {"seq":N,"time":"T","op":"checkpoint","prev":"H","hash":"H","sig":"S"}
 *	T is UTC with microseconds (2026-11-23T10:11:12.123456Z); MEMBERS
 *	are the client's, as au_proto_members() writes them. A record's
 *	hash is SHA-256(prev || the line before ,"prev":"), prev being the
 *	32 bytes of the previous record's hash (zero before record 1). A
 *	checkpoint's sig is the Ed25519 signature of "mailkeep audit
 *	checkpoint v1 seq=N hash=H"; it vouches for every record up to it.
 *	DIR/head, "seq=N hash=H file=NAME sig=S", repeats the newest
 *	checkpoint, so that a log cut back is noticed (whoever can write DIR
 *	can also put an older signed head back: copy checkpoints off the
 *	host for more). Times here are microseconds since 1970 UTC, never
 *	negative.
 *
 *	The writer. au_log_open() locks DIR (flock: one writer; readers see
 *	the lock and know the log is live), finds the last checkpoint (in
 *	the newest file, or an older one), checks its hash and signature
 *	and then the chain of every record after it. Those records stay:
 *	they were synced, and maybe acknowledged. A torn last line (a write
 *	cut short) is moved to NAME.discarded and a note says so
 *	(au_log_take_note(): an allocated text for the caller to log, or
 *	NULL). A malformed or unchained line after the checkpoint, a torn
 *	line in an older file, a head naming a checkpoint the log lacks or
 *	a different one make it fail with "PATH:LINE: problem": such a log
 *	must be examined with au_log_verify(), never appended to. A lagging
 *	or missing head is written again, with a note. After opening,
 *	au_log_unsigned() counts the records after the last checkpoint: the
 *	caller should sign them (au_log_checkpoint(), au_log_flush()).
 *
 *	au_log_append() chains one record and adds it to the pending
 *	buffer; nothing is written. members is the client's fields (no
 *	newline, not empty), pid and uid the sender's credentials, time
 *	the daemon's clock. A record whose UTC day is later than the
 *	current file's starts the next file; before it, a checkpoint closes
 *	the current file when records came after the last one. (A clock set
 *	back keeps writing into the current file.) It fails only for a
 *	record it cannot form (empty members, a newline, a line over
 *	AU_LOG_MAX_LINE, a negative time) or a failed signature.
 *	au_log_checkpoint() adds a checkpoint when records came after the
 *	last one, and does nothing otherwise.
 *
 *	au_log_flush() writes what is pending, file by file, and
 *	fdatasyncs each; a new file's directory entry is synced too. Then
 *	it replaces the head when a checkpoint became durable (a new file,
 *	synced, renamed; a failure there is a note, the records are safe).
 *	When a write or sync fails (a full disk), the records stay pending,
 *	in order, and the next au_log_flush() cuts the file back to its
 *	last good length and writes them again: nothing accepted is lost
 *	while the process lives, and more can be appended meanwhile.
 *	au_log_last_seq() is the last durable seq, au_log_pending_seq()
 *	the last appended, au_log_pending_bytes() what waits in memory.
 *	au_log_close() unlocks and frees; what is pending is dropped, so
 *	checkpoint and flush first.
 *
 *	Reading. au_log_read() calls cb for each line, checkpoints
 *	included, whose time is in [since, until), in log order. It reads
 *	the files from the one named for since's day on, up to the one for
 *	until's (a record is never in the file of an earlier day than its
 *	own; the checkpoint that closes a file has the time of the record
 *	that starts the next, and is read with the file it closes), checks
 *	each line's form, hash and chain, and fails with
 *	"PATH:LINE: problem; check the log with mailkeep audit verify" at
 *	the first damaged one. The torn last line of the newest file is
 *	being written: it is skipped. A non-zero return from cb stops it and
 *	is returned; otherwise 0, or -1 with *error. r->text is the line,
 *	for the caller to parse; it and r->file are valid during the call.
 *
 *	au_log_verify() reads every file and the head and calls problem
 *	for each problem, in log order, with the file's path, line and seq:
 *	    modified	a line is malformed, or does not give its hash, or its
 *			prev is not the previous record's hash; an older file
 *			that does not end in a newline
 *	    missing	seq skips numbers: records were removed
 *	    added	seq repeats: a record was inserted or duplicated
 *	    reordered	a record appears after a later one
 *	    bad-signature  a checkpoint's (or the head's) signature fails:
 *			also what a chain re-hashed after an edit gives
 *	    truncated	the head names a checkpoint the log lacks, or a
 *			different one; the head is missing
 *	    unsigned-tail  records after the last checkpoint, or a torn last
 *			line, while no writer holds the log
 *	While the daemon holds the lock, records after the last checkpoint
 *	are normal (it signs them within its checkpoint interval), and so is
 *	a torn last line: stats->live is set, stats->unsigned_live counts
 *	them, and they are no problem. It returns the number of problems, 0
 *	when the log is intact, or -1 with *error when it cannot be read.
 *
 *	au_log_parse() checks one line's form (without the newline) and
 *	fills r (seq, time, checkpoint, members, pid, uid, prev, hash,
 *	sig, hashed): NULL, or what is wrong. It does not check the hash.
 *	au_log_format_time() writes a time as T above and returns its
 *	length; au_log_parse_time() reads exactly that form (0, or -1).
 *	au_log_file_name() is the file a time's day goes to.
 *
 *	Limits: a line has at most AU_LOG_MAX_LINE bytes, newline excluded.
 *	A struct au_log is used by one thread at a time.
 */
#ifndef AU_LOG_H
#define AU_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define AU_LOG_MAX_LINE		(65536 + 1024)  /* a client's line and what the daemon adds */
#define AU_LOG_TIME_LEN		27              /* 2026-11-23T10:11:12.123456Z */
#define AU_LOG_NAME_LEN		14              /* 2026-11-23.log */
#define AU_LOG_HEAD_FILE	"head"
#define AU_LOG_SIGNED_TEXT	"mailkeep audit checkpoint v1"

struct au_log_record {
    uint64_t seq;
    int64_t time;
    bool checkpoint;
    const char *text;                   /* the line, without its newline */
    size_t len;
    size_t hashed;                      /* the bytes of text that the hash covers */
    const char *members;                /* the client's fields (not for a checkpoint) */
    size_t members_len;
    int64_t pid, uid;                   /* the sender (not for a checkpoint) */
    unsigned char prev[32], hash[32];
    unsigned char sig[64];              /* a checkpoint's */
    const char *file;                   /* au_log_read(): the file's path */
    uint64_t line;                      /* au_log_read(): the line in it */
};

enum au_log_problem_kind {
    AU_LOG_MODIFIED,
    AU_LOG_MISSING,
    AU_LOG_ADDED,
    AU_LOG_REORDERED,
    AU_LOG_BAD_SIGNATURE,
    AU_LOG_TRUNCATED,
    AU_LOG_UNSIGNED_TAIL
};

struct au_log_problem {
    enum au_log_problem_kind kind;
    const char *file;                   /* the path concerned (a log file, the head) */
    uint64_t line;                      /* 0 when none */
    uint64_t seq;                       /* 0 when none */
    const char *detail;                 /* one line, for a person */
};

struct au_log_stats {
    uint64_t files, records, checkpoints, last_seq;
    bool live;                          /* a writer holds the log */
    uint64_t unsigned_live;             /* then: records it has not signed yet */
};

struct au_log;

struct au_log *au_log_open(const char *dir, EVP_PKEY *sign, EVP_PKEY *verify, char **error);
char *au_log_take_note(struct au_log *l);
int au_log_append(struct au_log *l, const char *members, size_t len, int64_t pid, int64_t uid,
                  int64_t time, uint64_t *seq, char **error);
int au_log_checkpoint(struct au_log *l, int64_t time, char **error);
int au_log_flush(struct au_log *l, char **error);
uint64_t au_log_last_seq(const struct au_log *l);
uint64_t au_log_pending_seq(const struct au_log *l);
size_t au_log_pending_bytes(const struct au_log *l);
uint64_t au_log_unsigned(const struct au_log *l);
void au_log_close(struct au_log *l);

int au_log_read(const char *dir, int64_t since, int64_t until,
                int (*cb)(void *arg, const struct au_log_record *r), void *arg, char **error);
int au_log_verify(const char *dir, EVP_PKEY *verify,
                  void (*problem)(void *arg, const struct au_log_problem *p), void *arg,
                  struct au_log_stats *stats, char **error);

const char *au_log_parse(const char *line, size_t len, struct au_log_record *r);
size_t au_log_format_time(int64_t time, char out[AU_LOG_TIME_LEN + 1]);
int au_log_parse_time(const char *text, size_t len, int64_t *time);
void au_log_file_name(int64_t time, char out[AU_LOG_NAME_LEN + 1]);
const char *au_log_problem_name(enum au_log_problem_kind kind);

#endif
