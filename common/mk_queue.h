/*
 * NAME
 *	mk_queue 3h
 * SUMMARY
 *	a Postfix instance's mail queue: list, delete, release, read a header
 * SYNOPSIS
 *	#include "mk_queue.h"
 *
 *	bool	mk_queue_id_valid(const char *id);
 *	int	mk_queue_parse(const char *text, struct mk_queue_msg **msgs, size_t *n);
 *	int	mk_queue_list(const char *pfdir, struct mk_queue_msg **msgs, size_t *n,
 *			      char **error);
 *	const struct mk_queue_msg *mk_queue_find(const struct mk_queue_msg *msgs,
 *						 size_t n, const char *id);
 *	void	mk_queue_free(struct mk_queue_msg *msgs, size_t n);
 *	int	mk_queue_delete(const char *pfdir, const char *id, const char *queue,
 *				char **error);
 *	int	mk_queue_release(const char *pfdir, const char *id, char **error);
 *	char	*mk_queue_header(const char *pfdir, const char *id, const char *name);
 * DESCRIPTION
 *	The queue of the Postfix instance whose configuration directory is
 *	pfdir, through Postfix's own commands (postqueue, postsuper,
 *	postcat with -c pfdir): the queue files are Postfix's, never
 *	touched directly. Deleting and releasing need the super-user, as
 *	postsuper does.
 *
 *	mk_queue_id_valid() tells whether id can be a queue ID (1 to 64
 *	characters of [0-9A-Za-z], and not "ALL", which postsuper takes
 *	for every message); nothing else is passed to postsuper.
 *
 *	mk_queue_parse() reads postqueue -j output (one JSON object per
 *	line) into an array of messages; a line that is not such an object,
 *	or lacks queue_name or queue_id, or has an invalid queue ID, is
 *	skipped and counted: the count is returned. mk_queue_list() runs
 *	postqueue and parses its output; it returns 0, or -1 with *error.
 *	mk_queue_find() returns the message with that queue ID, or NULL.
 *
 *	mk_queue_delete() deletes a message from the named queue (NULL: any
 *	queue) with postsuper -d. It returns 1 when the message was there
 *	and is gone, 0 when it was not in the queue (already delivered, or
 *	never queued), -1 with *error when postsuper failed.
 *	mk_queue_release() moves a held message to the deferred queue
 *	(postsuper -H) and asks for its delivery now (postqueue -i); it
 *	returns 1, 0 when no such message was on hold, or -1.
 *
 *	mk_queue_header() returns the values of every header named name of
 *	a queued message, joined with "; ", or NULL when it has none or
 *	cannot be read.
 */
#ifndef MK_QUEUE_H
#define MK_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

struct mk_queue_rcpt {
    char *address;
    char *reason;                       /* delay_reason, or NULL */
};

struct mk_queue_msg {
    char *id;
    char *queue;                        /* maildrop, incoming, active, deferred, hold */
    char *sender;                       /* "" for the null sender */
    long long arrival, size;
    struct mk_queue_rcpt *rcpts;
    size_t nrcpts;
};

bool mk_queue_id_valid(const char *id);
int mk_queue_parse(const char *text, struct mk_queue_msg **msgs, size_t *n);
int mk_queue_list(const char *pfdir, struct mk_queue_msg **msgs, size_t *n, char **error);
const struct mk_queue_msg *mk_queue_find(const struct mk_queue_msg *msgs, size_t n,
                                         const char *id);
void mk_queue_free(struct mk_queue_msg *msgs, size_t n);
int mk_queue_delete(const char *pfdir, const char *id, const char *queue, char **error);
int mk_queue_release(const char *pfdir, const char *id, char **error);
char *mk_queue_header(const char *pfdir, const char *id, const char *name);

#endif
