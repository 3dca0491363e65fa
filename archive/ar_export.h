/*
 * NAME
 *	ar_export 3h
 * SUMMARY
 *	export archived messages as a zip of .eml files, an mbox or an ISO 9660 image
 * SYNOPSIS
 *	#include "ar_export.h"
 *
 *	struct ar_export *ar_export_open(const char *path, enum ar_export_format fmt,
 *					 char **error);
 *	int	ar_export_add(struct ar_export *e, const unsigned char sha256[32],
 *			      const char *envelope_sender, time_t received,
 *			      const char *msg, size_t len, char **error);
 *	int	ar_export_close(struct ar_export *e, char **error);
 *	void	ar_export_abort(struct ar_export *e);
 * DESCRIPTION
 *	`mailkeep archive export` writes what an auditor takes away. An
 *	export never overwrites: ar_export_open() refuses a PATH that
 *	exists (and, for an mbox, a PATH.sha256 that exists), and writes
 *	into PATH.tmp (and PATH.sha256.tmp), created exclusively with mode
 *	0600 (a PATH.tmp left by an interrupted export is reported, not
 *	reused). Only ar_export_close() gives the files their final names,
 *	after flushing them to disk, by linking them into place (so a file
 *	that appeared meanwhile is still not overwritten); a failed export
 *	leaves nothing under the final names. ar_export_abort() removes
 *	the temporary files and frees the export.
 *
 *	ar_export_add() adds one message. sha256 is the message's address
 *	in the archive, the SHA-256 of its original bytes; it is checked
 *	against msg, and a message that does not match is refused (-1 with
 *	the reason, nothing written: the export stays usable and the
 *	caller decides). Any other failure (a write error, a full disk)
 *	makes the export unusable: that and every later call fail, and
 *	the caller aborts.
 *
 *	AR_EXPORT_EML_ZIP (PATH is a .zip) and AR_EXPORT_ISO (an ISO 9660
 *	image with Rock Ridge and Joliet names, volume id
 *	"MAILKEEP_EXPORT", made with libarchive) hold the same layout:
 *	    messages/YYYYMMDD-HHMMSS-HHHHHHHHHHHH.eml
 *	one per message, the date being received in UTC ("undated" for 0)
 *	and the hex the first 12 of the SHA-256; a name already used gets
 *	"-2", "-3"... before ".eml". Each file holds the message's bytes
 *	exactly as given (CR LF or not) and has received as its mtime. At
 *	the root, MANIFEST.sha256 lists every message file as
 *	"<64 hex>  messages/NAME" (`sha256sum -c MANIFEST.sha256` checks
 *	the unpacked export). The names above are the Rock Ridge and
 *	Joliet ones that every current system shows; the ISO's primary
 *	names are level 2 (at most 30 characters, '-' made '_', the hex
 *	cut short: "20231114_221320_993C4EEC6A6.EML"), since 8.3 names
 *	would all begin with the date and libarchive resolves that many
 *	clashes in quadratic time.
 *
 *	AR_EXPORT_MBOX writes PATH in mboxrd form (see ar_mbox_write: CR LF
 *	becomes LF, ^>*From  lines get one more '>', a final LF is added)
 *	and PATH.sha256, one line per message in mbox order:
 *	"<64 hex>  BASENAME#N", N counting from 1. The hash is that of the
 *	original bytes, the archive address, not of the mbox form: a
 *	message read back from the mbox hashes the same only if it had LF
 *	line ends and a final LF.
 *
 *	Memory does not grow with the messages: a zip or mbox is streamed
 *	to disk, and the manifest is kept in an unlinked temporary file.
 *	What does grow is the set of names used (about 100 bytes a
 *	message) and libarchive's own per-file records: about 100 bytes a
 *	message for the zip central directory, but about 3.5 KB for the
 *	ISO writer's directory trees (350 MB for 100,000 messages). The
 *	ISO writer also copies every file's data into a temporary file in
 *	$TMPDIR and writes the image at ar_export_close(), so an ISO
 *	export needs free space there as large as the export, and its
 *	close takes about as long as its adds.
 */
#ifndef AR_EXPORT_H
#define AR_EXPORT_H

#include <stddef.h>
#include <time.h>

enum ar_export_format { AR_EXPORT_EML_ZIP, AR_EXPORT_MBOX, AR_EXPORT_ISO };

struct ar_export;

struct ar_export *ar_export_open(const char *path, enum ar_export_format fmt, char **error);
int ar_export_add(struct ar_export *e, const unsigned char sha256[32],
                  const char *envelope_sender, time_t received, const char *msg, size_t len,
                  char **error);
int ar_export_close(struct ar_export *e, char **error);
void ar_export_abort(struct ar_export *e);

#endif
