/*
 * NAME
 *	au_db 3h
 * SUMMARY
 *	the usage database: mailbox sizes, last logins, body-read marks
 * SYNOPSIS
 *	#include "au_db.h"
 *
 *	struct au_db *au_db_open(const char *path, bool writer, char **error);
 *	void	au_db_close(struct au_db *db);
 *	int	au_db_begin(struct au_db *db, char **error);
 *	int	au_db_commit(struct au_db *db, char **error);
 *	void	au_db_rollback(struct au_db *db);
 *	int	au_db_apply_usage(struct au_db *db, const json_t *u, int64_t time,
 *				  char **error);
 *	bool	au_db_wants(const json_t *record);
 *	int	au_db_apply_audit(struct au_db *db, const json_t *record, int64_t time,
 *				  char **error);
 *	int	au_db_reads(struct au_db *db, const char *user, const char *message_id,
 *			    int (*cb)(void *arg, const struct au_db_read *r), void *arg,
 *			    char **error);
 *	sqlite3	*au_db_handle(struct au_db *db);
 * DESCRIPTION
 *	The schema is docs/audit-protocol.md's: mailbox_usage, last_login,
 *	body_reads (times in UNIX seconds). mailkeep-auditd is its only
 *	writer; reports open it read-only.
 *
 *	au_db_open() opens the database. A writer creates it and its
 *	tables when they are missing, in WAL mode with synchronous FULL
 *	(a commit is durable when it returns: the daemon answers S only
 *	then); a reader opens it read-only and fails when it is missing.
 *	A database whose user_version is newer than this code knows is
 *	refused.
 *
 *	A batch goes between au_db_begin() and au_db_commit() (or
 *	au_db_rollback(), which leaves the database as before the batch).
 *	au_db_apply_usage() applies one U update, already checked by
 *	au_proto_parse(): "mailbox" sets a mailbox's name, count and size,
 *	"mailbox-delete" forgets it, "login" sets the user's last login
 *	through the service. au_db_wants() tells whether an audit record
 *	changes the database, and au_db_apply_audit() applies it:
 *	- a "read" with mailbox_guid and uid marks that message's body as
 *	  read (first and last time, count);
 *	- a "copy" or "move" of a message already marked marks the copy
 *	  (mailbox_guid, uid) with the same times and count. The original
 *	  is found by "from_mailbox_guid" and "from_uid" when the record
 *	  has them, else by "from_mailbox" among the user's mailboxes in
 *	  mailbox_usage, else (no way to tell the mailbox) by the user and
 *	  "message_id". The original keeps its mark (it was read there).
 *	Other records change nothing. time is microseconds since 1970, the
 *	record's. These fail (-1 with *error) only when SQLite does: a full
 *	disk, a locked or damaged database; the caller rolls back the batch
 *	and tries it again later.
 *
 *	au_db_reads() calls cb for each body-read mark of user and/or
 *	message_id (NULL: any), by user then last read; r->mailbox is the
 *	mailbox's name when mailbox_usage knows it, else NULL. A non-zero
 *	return from cb stops it and is returned.
 *
 *	au_db_handle() is the SQLite handle, for reports of their own.
 */
#ifndef AU_DB_H
#define AU_DB_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#define AU_DB_VERSION	2     /* 2: the accounts table */

struct au_db_read {
    const char *user, *mailbox_guid, *mailbox, *message_id;
    int64_t uid, first, last, count;
};

struct au_db;

struct au_db *au_db_open(const char *path, bool writer, char **error);
void au_db_close(struct au_db *db);
int au_db_begin(struct au_db *db, char **error);
int au_db_commit(struct au_db *db, char **error);
void au_db_rollback(struct au_db *db);
int au_db_apply_usage(struct au_db *db, const json_t *u, int64_t time, char **error);
bool au_db_wants(const json_t *record);
int au_db_apply_audit(struct au_db *db, const json_t *record, int64_t time, char **error);
int au_db_reads(struct au_db *db, const char *user, const char *message_id,
                int (*cb)(void *arg, const struct au_db_read *r), void *arg, char **error);
sqlite3 *au_db_handle(struct au_db *db);

#endif
