/*
 * NAME
 *	ar_index 3h
 * SUMMARY
 *	the archive's search index: envelope, headers and text of each message (SQLite)
 * SYNOPSIS
 *	#include "ar_index.h"
 *
 *	int	ar_doc_extract(const char *msg, size_t len, const struct ar_envelope *env,
 *			       struct ar_doc *doc);
 *	void	ar_doc_free(struct ar_doc *doc);
 *	char	*ar_doc_header(const char *msg, size_t len, const char *name);
 *	char	**ar_doc_addresses(const char *value);
 *	int64_t	ar_doc_date(const char *value);
 *
 *	struct ar_index *ar_index_open(const char *path, bool create, char **error);
 *	sqlite3	*ar_index_db(struct ar_index *ix);
 *	int	ar_index_begin(struct ar_index *ix, char **error);
 *	int	ar_index_commit(struct ar_index *ix, char **error);
 *	int	ar_index_add(struct ar_index *ix, const struct ar_index_entry *e,
 *			     const struct ar_doc *doc, int64_t *id, char **error);
 *	int64_t	ar_index_last_seq(struct ar_index *ix);
 *	int	ar_index_has_spool_id(struct ar_index *ix, const char *spool_id);
 *	int	ar_index_get(struct ar_index *ix, int64_t id, struct ar_index_row *row,
 *			     char **error);
 *	void	ar_index_row_free(struct ar_index_row *row);
 *	void	ar_index_close(struct ar_index *ix);
 * DESCRIPTION
 *	The index is separate from the store and can always be rebuilt
 *	from it. One row per archived arrival (table messages), keyed by
 *	an id that orders by time: the received time in seconds times
 *	2^20, plus a counter, so that "newest first" is the order of the
 *	key and a date range is a key range. Its full-text side (table
 *	fts, contentless FTS5 with the mkcjk tokenizer of ar_fts) holds
 *	envelope sender and recipients, From, To, Cc, the BCC recipients
 *	(envelope recipients named in neither To nor Cc), subject, body
 *	text and attachment names and text. The text is never stored in
 *	the index, only its tokens; a purge removes them with the text
 *	taken again from the store (the FTS5 'delete' command).
 *
 *	ar_doc_extract() takes that text out of a message with the MIME
 *	walk that DLP uses (mk_mime: every charset to UTF-8, attachments
 *	through mk_extract) and parses From, To, Cc, Subject and
 *	Message-ID. It is CPU work with no shared state: any number of
 *	threads may run it at once. It returns 0, or -1 when the message
 *	cannot be parsed at all (it is then indexed by its envelope only).
 *
 *	ar_doc_header() returns the unfolded value of a message's first
 *	header of that name (NULL when there is none);
 *	ar_doc_addresses() the addresses in a header value, lower-cased
 *	(a NULL-terminated array); ar_doc_date() a Date header as UNIX
 *	time, 0 when it cannot be read. Imports take their envelope from
 *	them.
 *
 *	ar_index_add() adds one row and its text, inside a transaction
 *	that ar_index_begin() opened; rows are durable at
 *	ar_index_commit(). The index remembers the archive log's seq of
 *	each row and the spool ID it came from: ar_index_last_seq() is
 *	where to catch up from the log after a crash, and
 *	ar_index_has_spool_id() (1 yes, 0 no, -1 error) tells ingest that a
 *	spool file left behind by a crash is archived already.
 *
 *	ar_index_get() reads one row: 1, or 0 when there is no such id (with
 *	a message in *error), or -1 on an error.
 *
 *	The database is opened in WAL mode, so searches run while ingest
 *	writes.
 */
#ifndef AR_INDEX_H
#define AR_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sqlite3.h>

#include "ar_spool.h"

struct ar_doc {
    char *from_hdr, *to_hdr, *cc_hdr, *subject, *message_id;
    char *bcc;                          /* envelope recipients in neither To nor Cc */
    char *body, *attachment;            /* UTF-8 text, "\n"-separated pieces */
    size_t body_len, attachment_len;
    int attachments;
    int64_t date;                       /* the Date header, 0 when none or unparsable */
};

struct ar_index_entry {
    uint64_t seq;                       /* the archive log's entry */
    unsigned char object[32], envelope[32];
    int64_t time;
    size_t size;
    const struct ar_envelope *env;
    const char *spool_id;
};

struct ar_index_row {
    int64_t id, seq, time, size;
    unsigned char object[32], envelope[32];
    char *direction, *sender, *recipients, *from_hdr, *to_hdr, *cc_hdr, *subject;
    char *message_id, *client, *login, *queue_id, *source, *spool_id;
    int attachments;
    bool hidden;
};

struct ar_index;

int ar_doc_extract(const char *msg, size_t len, const struct ar_envelope *env, struct ar_doc *doc);
void ar_doc_free(struct ar_doc *doc);
char *ar_doc_header(const char *msg, size_t len, const char *name);
char **ar_doc_addresses(const char *value);
int64_t ar_doc_date(const char *value);

struct ar_index *ar_index_open(const char *path, bool create, char **error);
sqlite3 *ar_index_db(struct ar_index *ix);
int ar_index_begin(struct ar_index *ix, char **error);
int ar_index_commit(struct ar_index *ix, char **error);
int ar_index_add(struct ar_index *ix, const struct ar_index_entry *e, const struct ar_doc *doc,
                 int64_t *id, char **error);
int64_t ar_index_last_seq(struct ar_index *ix);
int ar_index_has_spool_id(struct ar_index *ix, const char *spool_id);
int ar_index_get(struct ar_index *ix, int64_t id, struct ar_index_row *row, char **error);
void ar_index_row_free(struct ar_index_row *row);
void ar_index_close(struct ar_index *ix);

#endif
