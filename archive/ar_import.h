/*
 * NAME
 *	ar_import 3h
 * SUMMARY
 *	walk existing mail (mbox, Maildir, .eml files) for `mailkeep archive import`
 * SYNOPSIS
 *	#include "ar_import.h"
 *
 *	int	ar_import_walk(const char *path,
 *			       int (*cb)(void *arg, const struct ar_import_item *it),
 *			       void *arg, char **error);
 * DESCRIPTION
 *	ar_import_walk() calls cb once for every message found at PATH, in
 *	a stable order (directory entries sorted by name), and once for
 *	every file or message that cannot be read. PATH may be:
 *	    a file whose first line begins "From "
 *			an mbox (mboxrd, mboxo, mboxcl; see ar_mbox.h), read
 *			without loading it whole;
 *	    any other file
 *			one message (an .eml file, a file from a Maildir);
 *	    a Maildir	(a directory with cur/ and/or new/): the files in
 *			cur/ and new/, then those of each Maildir++
 *			subfolder .NAME/ (also with cur/ or new/); tmp/ is
 *			not read, nor files whose name begins with '.';
 *	    another directory
 *			a tree, walked down (up to AR_IMPORT_MAX_DEPTH levels;
 *			names beginning with '.' and symbolic links to
 *			directories are skipped): its *.eml files (any
 *			case) as files above, its *.mbox files as mboxes,
 *			its subdirectories that are Maildirs as Maildirs.
 *	The same test makes an mbox of any file: a Maildir or .eml file
 *	that begins with a "From " line gives one message, without that
 *	line. Dovecot's own files (dovecot.*, dovecot-*, subscriptions,
 *	maildirfolder) are never taken for mail. An empty file is reported
 *	as unreadable (an empty *.mbox simply holds no messages).
 *
 *	The item describes one message, valid during the call only:
 *	    msg, len	the bytes exactly as stored (NUL-terminated after
 *			len; for an mbox, as ar_mbox_next() gives them);
 *	    origin	the file's path (PATH joined with the names below
 *			it), or "FILE#N" for the Nth message (from 1) of
 *			the mbox FILE;
 *	    sender	the mbox separator's sender, or NULL;
 *	    received	when known, else 0: an mbox separator's date; for a
 *			Maildir file its mtime (Dovecot's received date,
 *			kept by migrations), or if that is not positive the
 *			UNIX time that begins its name; 0 for .eml files;
 *	    error	NULL, or for something that could not be read
 *			(msg then NULL, len 0) its "PATH: problem".
 *	cb returns 0 to go on; anything else stops the walk.
 *
 *	A file or directory that cannot be read does not stop the walk: it
 *	is given to cb with error set (so the caller can log it where it
 *	logs messages, with its origin), counted, and the walk goes on.
 *	ar_import_walk() returns that count (0 when all was read), or -1
 *	with an allocated "PATH: problem" in *error when PATH itself cannot
 *	be read or cb stopped the walk.
 */
#ifndef AR_IMPORT_H
#define AR_IMPORT_H

#include <stddef.h>
#include <time.h>

#define AR_IMPORT_MAX_DEPTH	32

struct ar_import_item {
    const char *msg;
    size_t len;
    const char *origin;                 /* "FILE" or "MBOX#N" */
    const char *sender;                 /* mbox separator sender or NULL */
    time_t received;                    /* 0 if unknown */
    const char *error;                  /* NULL, or "PATH: problem" (msg NULL) */
};

int ar_import_walk(const char *path, int (*cb)(void *arg, const struct ar_import_item *it),
                   void *arg, char **error);

#endif
