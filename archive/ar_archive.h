/*
 * NAME
 *	ar_archive 3h
 * SUMMARY
 *	the compliance archive as a whole: ingest, catch-up, fetch, verify, reindex
 * SYNOPSIS
 *	#include "ar_archive.h"
 *
 *	int	ar_archive_init(const struct ar_archive_paths *paths, char **error);
 *	struct ar_archive *ar_archive_open(const struct ar_archive_paths *paths, bool writer,
 *					   char **error);
 *	void	ar_archive_close(struct ar_archive *a);
 *	char	*ar_archive_take_note(struct ar_archive *a);
 *
 *	int	ar_archive_ingest(struct ar_archive *a, size_t batch,
 *				  const struct ar_progress *progress,
 *				  struct ar_ingest_stats *stats, char **error);
 *	int	ar_archive_fetch(struct ar_archive *a, int64_t id, struct ar_index_row *row,
 *				 char **msg, size_t *len, enum ar_check *check, char **error);
 *	int	ar_archive_verify(struct ar_archive *a, const struct ar_verify_cb *cb,
 *				  struct ar_verify_stats *stats, char **error);
 *	int	ar_archive_reindex(struct ar_archive *a, const struct ar_progress *progress,
 *				   char **error);
 * DESCRIPTION
 *	An archive is a directory: objects/ (ar_store: each message and
 *	each envelope once, compressed and encrypted), log and log.head
 *	(ar_log: every ingest, tamper-evident, with signed checkpoints)
 *	and the index (ar_index, by default index.sqlite there). The keys
 *	live apart (paths->keys_dir) so that a copy of the archive is not
 *	a copy of its keys. ar_archive_init() makes the directory and the
 *	keys; it refuses to replace existing keys.
 *
 *	ar_archive_open() with writer (ingest, import, reindex) takes the
 *	log's lock, so one writer runs at a time, and first catches the
 *	index up with the log: entries a crash left logged but not
 *	indexed are indexed from the store. Readers (search, show, verify,
 *	export) need the keys but not the lock. Notes worth logging (the
 *	log cut back to its last checkpoint after a crash) come from
 *	ar_archive_take_note().
 *
 *	ar_archive_ingest() archives what is in the spool's new/, in
 *	spool order, batch files at a time: the text of each message is
 *	extracted on every CPU, message and envelope are stored, the store
 *	is synced, the batch is logged and committed (one fsync and one
 *	signature a batch), and only then are the spool files removed: a
 *	logged message is archived. Index rows are added as batches are
 *	logged and committed every few thousand messages and when ingest
 *	returns (fewer, larger FTS5 commits merge far less); what a crash
 *	keeps out of the index is caught up from the log and the store at
 *	the next open, or by the next ingest after an index error. A kill
 *	at any point loses nothing (a spool file stays until its message
 *	is logged) and duplicates nothing (a spool file whose ID the index
 *	already has, after the catch-up, is only removed; objects are
 *	content-addressed). A spool file that cannot be read
 *	is moved to the spool's damaged/ directory and counted; the others
 *	go on. Files in the spool's tmp/ older than a day are removed: a
 *	message whose receipt was cut off leaves one, never acknowledged,
 *	so the MTA still has the message.
 *
 *	ar_archive_fetch() returns a row of the index and the original
 *	message, checked against its hash: *check is AR_OK, or what is
 *	wrong with the stored object (then *msg is NULL). It returns 1, 0
 *	when there is no such id, -1 on an error.
 *
 *	ar_archive_verify() checks everything: the log's chain, signatures
 *	and head (ar_log_verify), then every object the log names (present,
 *	authentic, its content's hash its name), then that every object
 *	present is named by the log ("added" otherwise), then that each
 *	index row points at a logged entry and object. Each problem goes to
 *	cb->problem as a line for a person. It returns the number of
 *	problems, -1 when the archive cannot be read.
 *
 *	ar_archive_reindex() builds a new index from the log and the store
 *	beside the old one and renames it into place; searches keep using
 *	the old one until then.
 */
#ifndef AR_ARCHIVE_H
#define AR_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ar_index.h"
#include "ar_store.h"

struct ar_archive_paths {
    const char *dir;                    /* [archive] dir */
    const char *keys_dir;               /* [archive] keys_dir */
    const char *index;                  /* [archive] index, NULL or "": DIR/index.sqlite */
    const char *spool;                  /* [journal] spool_dir */
};

struct ar_progress {
    void (*update)(void *arg, size_t done, size_t total);
    void *arg;
};

struct ar_ingest_stats {
    size_t messages, new_objects, bytes, damaged, already;
    size_t swept;                       /* unacknowledged leftovers removed from tmp/ */
};

struct ar_verify_stats {
    size_t entries, objects, rows, problems;
};

struct ar_verify_cb {
    void (*problem)(void *arg, const char *kind, const char *detail);
    const struct ar_progress *progress;
    void *arg;
};

struct ar_archive;

int ar_archive_init(const struct ar_archive_paths *paths, char **error);
struct ar_archive *ar_archive_open(const struct ar_archive_paths *paths, bool writer,
                                   char **error);
void ar_archive_close(struct ar_archive *a);
char *ar_archive_take_note(struct ar_archive *a);
struct ar_index *ar_archive_index(struct ar_archive *a);
struct ar_store *ar_archive_store(struct ar_archive *a);

int ar_archive_ingest(struct ar_archive *a, size_t batch, const struct ar_progress *progress,
                      struct ar_ingest_stats *stats, char **error);
int ar_archive_fetch(struct ar_archive *a, int64_t id, struct ar_index_row *row, char **msg,
                     size_t *len, enum ar_check *check, char **error);
int ar_archive_verify(struct ar_archive *a, const struct ar_verify_cb *cb,
                      struct ar_verify_stats *stats, char **error);
int ar_archive_reindex(struct ar_archive *a, const struct ar_progress *progress, char **error);

#endif
