/*
 * NAME
 *	mk_message 3h
 * SUMMARY
 *	a message as a content milter receives it: envelope and bytes
 * SYNOPSIS
 *	#include "mk_message.h"
 *
 *	void	mk_message_start(struct mk_message *m, const char *sender, const char *login,
 *				 size_t memory_limit, const char *temp_dir, size_t max_size);
 *	void	mk_message_add_rcpt(struct mk_message *m, const char *rcpt);
 *	void	mk_message_header(struct mk_message *m, const char *name, const char *value);
 *	void	mk_message_append(struct mk_message *m, const char *data, size_t len);
 *	void	mk_message_reset(struct mk_message *m);
 * DESCRIPTION
 *	The envelope (sender, SASL login, recipients, normalized where they
 *	can be) and the message as received (headers rebuilt as "Name:
 *	value", the blank line, the body), for mailkeep-dlp, mailkeep-av and
 *	later the journal.
 *
 *	The bytes stay in memory up to memory_limit. Past it, with a
 *	temp_dir, they move to an unlinked O_TMPFILE file there (m->fd);
 *	without one, or past max_size (0: no limit), storing stops and
 *	m->too_big is set, so the caller can treat the message as
 *	unscannable. When the file cannot be created or written, m->failed
 *	is set and the caller must tempfail. A zeroed struct is an empty
 *	message; mk_message_reset() frees everything and empties it.
 */
#ifndef MK_MESSAGE_H
#define MK_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>

struct mk_message {
    char *sender, *login;
    char **rcpts;                       /* NULL-terminated; NULL before MAIL FROM */
    size_t nrcpts;
    char *buf;
    size_t len, cap;
    int fd;                             /* -1 or the spill file (0 in a zeroed struct: see start) */
    bool spilled, too_big, failed;
    size_t memory_limit, max_size;
    char *temp_dir;
};

void mk_message_start(struct mk_message *m, const char *sender, const char *login,
                      size_t memory_limit, const char *temp_dir, size_t max_size);
void mk_message_add_rcpt(struct mk_message *m, const char *rcpt);
void mk_message_header(struct mk_message *m, const char *name, const char *value);
void mk_message_append(struct mk_message *m, const char *data, size_t len);
void mk_message_reset(struct mk_message *m);

#endif
