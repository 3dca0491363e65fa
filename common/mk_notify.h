/*
 * NAME
 *	mk_notify 3h
 * SUMMARY
 *	notices the milters send about a message: composed, then piped to sendmail
 * SYNOPSIS
 *	#include "mk_notify.h"
 *
 *	char	*mk_notify_compose(const char *from, const char *to, const char *subject,
 *				   const char *body);
 *	int	mk_notify_send(char *const *command, const char *text);
 *	char	*mk_notify_join(char *const *addresses, size_t count);
 * DESCRIPTION
 *	mk_notify_compose() makes a complete message: From, To, Subject
 *	(RFC 2047 encoded when it is not ASCII), Date, Auto-Submitted (so
 *	that no auto-reply answers it), a UTF-8 text/plain body. A notice
 *	never quotes the message it is about, whose subject or content may
 *	be what caused it; the caller names the message by its queue ID,
 *	sender and recipients.
 *
 *	mk_notify_send() pipes the text to the command (a configured
 *	"sendmail -oi -t", split into words) with a null envelope sender,
 *	so that a notice can never bounce back and forth, and returns the
 *	command's exit status, or -1 when it could not run.
 *
 *	mk_notify_join() returns "a@x, b@y".
 */
#ifndef MK_NOTIFY_H
#define MK_NOTIFY_H

#include <stddef.h>

char *mk_notify_compose(const char *from, const char *to, const char *subject, const char *body);
int mk_notify_send(char *const *command, const char *text);
char *mk_notify_join(char *const *addresses, size_t count);

#endif
