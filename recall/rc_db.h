/*
 * NAME
 *	rc_db 3h
 * SUMMARY
 *	the recall database: each accepted message, its recipients, its hold
 * SYNOPSIS
 *	#include "rc_db.h"
 *
 *	struct rc_db *rc_db_open(const char *path, bool writer, char **error);
 *	void	rc_db_close(struct rc_db *db);
 *	int	rc_db_add(struct rc_db *db, struct rc_message *m, char **error);
 *	int	rc_db_find(struct rc_db *db, const struct rc_filter *f,
 *			   struct rc_message **out, size_t *n, char **error);
 *	int	rc_db_set_status(struct rc_db *db, int64_t message, const char *address,
 *				 const char *status, int64_t time, char **error);
 *	int	rc_db_set_hold(struct rc_db *db, int64_t message, const char *state,
 *			       char **error);
 *	int	rc_db_next_release(struct rc_db *db, int64_t *when, char **error);
 *	int	rc_db_expire(struct rc_db *db, int64_t before, int64_t *removed,
 *			     char **error);
 *	void	rc_message_clear(struct rc_message *m);
 *	void	rc_messages_free(struct rc_message *m, size_t n);
 * DESCRIPTION
 *	One SQLite database (WAL, synchronous FULL: a message's record is on
 *	disk before mailkeep-recall lets the MTA accept it) written by
 *	mailkeep-recall and by mailkeep recall. Times are UNIX seconds.
 *
 *	rc_db_open() opens it; a writer creates it and its tables when
 *	missing. A reader opens it read-only. A database of a newer schema
 *	is refused. When the super-user opens a database that belongs to
 *	another user (the milter's), the files SQLite adds beside it (-wal,
 *	-shm) are given to that user too, so that the milter can still
 *	write. One handle may be shared by threads: each call holds the
 *	handle's lock.
 *
 *	rc_db_add() stores a message and its recipients in one transaction
 *	and sets m->id. rc_db_find() returns the messages that match every
 *	field set in the filter, newest first, with their recipients:
 *	    id			one message
 *	    message_id		exactly this Message-ID
 *	    owner		sent by this user
 *	    owner_domain	sent by a user of this domain
 *	    since		at or after this time
 *	    held_due		on hold for undo-send, and due at or before it
 *	    limit		at most this many (0: no limit)
 *	rc_db_set_status() records a recipient's recall outcome,
 *	rc_db_set_hold() a held message's state (released, recalled, gone,
 *	quarantined). rc_db_next_release() sets *when to the earliest
 *	release time of a held message, or 0 when none is held.
 *	rc_db_expire() removes the messages older than before (but never
 *	one still held) and sets *removed.
 *
 *	rc_message_clear() frees what a message holds (its strings and
 *	recipients, all allocated) and zeroes it; rc_messages_free() does it
 *	for an array that rc_db_find() returned, and frees the array.
 *
 *	The functions that take error return 0, or -1 with an allocated
 *	reason (the database's path and SQLite's message).
 */
#ifndef RC_DB_H
#define RC_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RC_DB_VERSION	1

struct rc_rcpt {
    char *address;
    char *direction;                    /* inbound, outbound, internal, unknown */
    char *status;                       /* the last recall's outcome, or NULL */
    int64_t status_time;
};

struct rc_message {
    int64_t id;
    char *message_id;                   /* "<...>" */
    char *queue_id;
    int64_t time;
    char *sender;                       /* envelope sender; "" for <> */
    char *header_from, *subject;        /* as in the header (raw), or NULL */
    char *sasl_user;                    /* or NULL */
    char *owner, *owner_domain;         /* who may recall it as its sender, or NULL */
    char *origin;                       /* sasl, network, daemon, local, none */
    bool added_id;                      /* the Message-ID is mailkeep-recall's */
    int64_t hold_until;                 /* undo-send: release time, or 0 */
    char *hold_state;                   /* held, released, recalled, gone, quarantined */
    struct rc_rcpt *rcpts;
    size_t nrcpts;
};

struct rc_filter {
    int64_t id;
    const char *message_id;
    const char *owner;
    const char *owner_domain;
    int64_t since;
    int64_t held_due;
    size_t limit;
};

struct rc_db;

struct rc_db *rc_db_open(const char *path, bool writer, char **error);
void rc_db_close(struct rc_db *db);
int rc_db_add(struct rc_db *db, struct rc_message *m, char **error);
int rc_db_find(struct rc_db *db, const struct rc_filter *f, struct rc_message **out, size_t *n,
               char **error);
int rc_db_set_status(struct rc_db *db, int64_t message, const char *address, const char *status,
                     int64_t time, char **error);
int rc_db_set_hold(struct rc_db *db, int64_t message, const char *state, char **error);
int rc_db_next_release(struct rc_db *db, int64_t *when, char **error);
int rc_db_expire(struct rc_db *db, int64_t before, int64_t *removed, char **error);
void rc_message_clear(struct rc_message *m);
void rc_messages_free(struct rc_message *m, size_t n);

#endif
