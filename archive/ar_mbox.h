/*
 * NAME
 *	ar_mbox 3h
 * SUMMARY
 *	mbox files: write mboxrd, read mboxrd, mboxo and mboxcl as found in the wild
 * SYNOPSIS
 *	#include "ar_mbox.h"
 *
 *	int	ar_mbox_write(FILE *out, const char *envelope_sender, time_t received,
 *			      const char *msg, size_t len);
 *
 *	struct ar_mbox_reader *ar_mbox_open(const char *path, char **error);
 *	struct ar_mbox_reader *ar_mbox_open_mem(const char *data, size_t len);
 *	int	ar_mbox_next(struct ar_mbox_reader *r, char **msg, size_t *len,
 *			     char **sender, time_t *received);
 *	const char *ar_mbox_error(const struct ar_mbox_reader *r);
 *	void	ar_mbox_close(struct ar_mbox_reader *r);
 * DESCRIPTION
 *	ar_mbox_write() appends one message in mboxrd form: the separator
 *	line "From SENDER DATE", DATE being received in UTC in asctime()
 *	form ("Thu Jan  1 00:00:00 1970", English names whatever the
 *	locale); then the message with its bytes and line ends as they
 *	are (CR LF stays CR LF, so that an export reads back with the
 *	SHA-256 it was archived under), every line that
 *	matches ^>*From  (with the space) given one more leading '>'; a
 *	final LF added to a non-empty message that lacks one; then one
 *	empty line. An empty envelope sender is written "MAILER-DAEMON";
 *	in others, white space and control characters become '_' (so the
 *	separator stays one line of three fields) and only the first
 *	AR_MBOX_MAX_SENDER bytes are kept. It returns 0, or -1 with errno
 *	set when writing fails.
 *
 *	ar_mbox_open() maps the file PATH into memory (files of any size
 *	are read a page at a time, never loaded whole; pages already read
 *	are released as the reader moves on). On failure it returns NULL
 *	and an allocated "PATH: problem" in *error. ar_mbox_open_mem()
 *	reads a buffer the caller keeps unchanged until ar_mbox_close().
 *
 *	ar_mbox_next() gives the next message: 1 and an allocated copy in
 *	*msg (with *len, which counts any NUL bytes; a NUL is added after
 *	it), the separator's sender in *sender (allocated, "" when the
 *	separator has none; control characters become '_') and its date
 *	in *received (0 when it cannot be parsed); 0 at the end; -1 on an
 *	error, described by ar_mbox_error() as "PATH: problem". sender and
 *	received may be NULL. Empty lines before the first separator are
 *	skipped; a non-empty file whose first other line does not begin
 *	"From " is an error ("not an mbox file"); an empty file holds no
 *	messages.
 *
 *	A line beginning "From " separates messages only at the start of
 *	the file or after an empty line (LF or CR LF). A message is the
 *	text between two separators, less the empty line before the next
 *	separator (or the empty line at the end of the file, when there is
 *	one: a missing final empty line is tolerated), with one '>' taken
 *	from every line that matches ^>+From . Line ends are returned as
 *	they are in the file: a CR LF file gives CR LF messages. Dates are
 *	read in any order of their parts: weekday, month name, day,
 *	hh:mm[:ss], 4- or 2-digit year, an optional +hhmm zone (so
 *	asctime, Google Takeout's "Sat Jan 03 10:21:47 +0000 2015" and RFC
 *	5322 dates all parse); zone names are taken as UTC.
 *
 *	What this cannot know: an mboxo file (Thunderbird, old mutt)
 *	escapes "From " but not ">From ", so its original ">From " lines
 *	come back as "From ", as every mboxrd reader does to them; and a
 *	Content-Length header (mboxcl2) is ignored, so an unescaped "From "
 *	line after an empty line in such a body starts a new message.
 *
 *	Round trip: messages written with ar_mbox_write() read back
 *	identical except that a non-empty message ends with LF; the sender comes back as written (so an
 *	empty one as "MAILER-DAEMON") and received exactly for the years
 *	1000 to 9999.
 *
 *	A file that is truncated while it is being read may make the
 *	process receive SIGBUS (it is mapped); export files are not
 *	changed under a reader.
 */
#ifndef AR_MBOX_H
#define AR_MBOX_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

#define AR_MBOX_MAX_SENDER	1000

struct ar_mbox_reader;

int ar_mbox_write(FILE *out, const char *envelope_sender, time_t received, const char *msg,
                  size_t len);

struct ar_mbox_reader *ar_mbox_open(const char *path, char **error);
struct ar_mbox_reader *ar_mbox_open_mem(const char *data, size_t len);
int ar_mbox_next(struct ar_mbox_reader *r, char **msg, size_t *len, char **sender,
                 time_t *received);
const char *ar_mbox_error(const struct ar_mbox_reader *r);
void ar_mbox_close(struct ar_mbox_reader *r);

#endif
