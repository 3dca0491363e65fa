/*
 * NAME
 *	rc_msgid 3h
 * SUMMARY
 *	Message-IDs as recall matches them: read from a header, made anew
 * SYNOPSIS
 *	#include "rc_msgid.h"
 *
 *	char	*rc_msgid_parse(const char *value, size_t len);
 *	char	*rc_msgid_new(const char *domain);
 * DESCRIPTION
 *	Recall matches a message by its Message-ID exactly, so the milter,
 *	the command line and the check of what doveadm finds must all read
 *	one the same way. rc_msgid_parse() reads a Message-ID header's value
 *	(len bytes; it may be folded and carry comments) or what a person
 *	types ("abc@example.com", with or without the angle brackets), and
 *	returns "<id-left@id-right>" without white space or comments, or
 *	NULL when there is no identifier: nothing but white space and
 *	comments, no "@", a control character, an unclosed bracket, or more
 *	than RC_MSGID_MAX bytes.
 *
 *	rc_msgid_new() makes a new, unique Message-ID for a message that has
 *	none: "<YYYYMMDDhhmmss.RANDOM@domain>" (UTC, 64 random bits).
 */
#ifndef RC_MSGID_H
#define RC_MSGID_H

#include <stddef.h>

#define RC_MSGID_MAX	998

char *rc_msgid_parse(const char *value, size_t len);
char *rc_msgid_new(const char *domain);

#endif
