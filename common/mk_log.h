/*
 * NAME
 *	mk_log 3h
 * SUMMARY
 *	one-line logging to syslog or standard error
 * SYNOPSIS
 *	#include "mk_log.h"
 *
 *	void	mk_log_open(const char *ident, enum mk_log_dest dest, int facility);
 *	void	mk_log_set_level(enum mk_log_level level);
 *	int	mk_log_parse_level(const char *name, enum mk_log_level *level);
 *	int	mk_log_parse_facility(const char *name, int *facility);
 *	void	mk_log(enum mk_log_level level, const char *queue_id, const char *fmt, ...);
 *	void	mk_log_fatal(const char *fmt, ...);
 * DESCRIPTION
 *	Every decision a component takes is one line, in the form
 *	"ident[pid]: QUEUEID: what: detail", like Postfix's own log, so that
 *	a person can grep for the queue ID across MTA and Mailkeep. With no
 *	queue ID the field is omitted. Warnings and errors carry the prefix
 *	"warning:" or "error:", as Postfix does.
 *
 *	Callers never pass message content or personal data: a detector
 *	name and a count, a rule's file and line, never the matched text.
 *
 *	MK_LOG_HOST is for code loaded into another program (a PAM module):
 *	it logs to syslog with the given facility but leaves the program's
 *	openlog() identity alone, naming itself at the start of each line.
 *
 *	mk_log_fatal() logs and exits with status 1.
 */
#ifndef MK_LOG_H
#define MK_LOG_H

enum mk_log_level { MK_LOG_ERROR, MK_LOG_WARNING, MK_LOG_INFO, MK_LOG_DEBUG };
enum mk_log_dest { MK_LOG_SYSLOG, MK_LOG_STDERR, MK_LOG_HOST };

void mk_log_open(const char *ident, enum mk_log_dest dest, int facility);
void mk_log_set_level(enum mk_log_level level);
int mk_log_parse_level(const char *name, enum mk_log_level *level);
int mk_log_parse_facility(const char *name, int *facility);
void mk_log(enum mk_log_level level, const char *queue_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mk_log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
