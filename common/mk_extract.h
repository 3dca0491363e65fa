/*
 * NAME
 *	mk_extract 3h
 * SUMMARY
 *	the text of an attachment or a file: documents, PDF, archives, text
 * SYNOPSIS
 *	#include "mk_extract.h"
 *
 *	int	mk_extract_file(const char *name, const char *content_type,
 *				const char *data, size_t len,
 *				const struct mk_mime_limits *limits, size_t depth,
 *				const char *location, const struct mk_mime_walk_cb *cb);
 *	int	mk_extract_text(const struct mk_mime_walk_cb *cb, enum mk_mime_where where,
 *				const char *location, const char *charset, bool html,
 *				const char *data, size_t len);
 *	char	*mk_extract_html(const char *utf8, size_t len, size_t *out_len);
 * DESCRIPTION
 *	mk_extract_file() hands the text of one file to cb->segment as
 *	MK_WHERE_ATTACHMENT segments labelled location, and what it cannot
 *	read to cb->problem, as mk_mime_walk() does (see mk_mime.h for the
 *	reasons). name (its file name) and content_type ("type/subtype",
 *	parameters allowed: a charset is used) may be NULL. The format is
 *	told by the content first, then by content_type, then by name, so a
 *	renamed file is read for what it is:
 *	    docx, xlsx, pptx	the document, headers, footers, comments,
 *				notes, worksheet cell values that were
 *				typed in, document properties (libarchive,
 *				libxml2); embedded files are extracted too
 *	    odt, ods, odp	content, styles (headers), properties
 *	    PDF			the text of every page and the document
 *				properties (poppler), read from memory; a
 *				PDF with no text at all (a scan) is
 *				reported "no text in PDF", for information
 *	    zip, 7z, rar, tar,	each member, recursively, its name as an
 *	    gzip, bzip2, xz	MK_WHERE_ATTACHMENT_NAME segment; locations
 *				grow by " > \"MEMBER\""
 *	    message/rfc822	the message, through mk_mime_walk_at()
 *	    HTML		its text, as mk_extract_html()
 *	    text, CSV, other	converted to UTF-8 as mk_mime_to_utf8()
 *	    content that reads as text
 *	A program with a zip at its end (a self-extracting archive) is read
 *	as the zip. Legacy Office files (OLE2) and Outlook's winmail.dat
 *	(TNEF) are reported "unsupported document"; an OLE2 file that holds
 *	an EncryptedPackage stream (how Office stores a password-protected
 *	docx, xlsx or pptx) "encrypted document", as is an ODF document
 *	whose manifest declares encryption; images, audio and other
 *	binary content "unsupported type", for information.
 *
 *	depth is the nesting the file is found at (0 when it is the file
 *	scanned); its members are at depth + 1. Every member is bounded by
 *	limits: its size (max_part), its expansion over its compressed
 *	size (max_ratio, judged once a member passes 1 MiB, so that small
 *	repetitive files are not refused), the number of members
 *	(max_members), the nesting (max_depth) and the text of the whole
 *	walk (max_total). A member over a bound is reported and skipped,
 *	and the rest of the archive is read. XML is parsed without network,
 *	DTD loading or entity substitution.
 *
 *	It returns nonzero when the walk must stop (the callback asked, or
 *	max_total was reached), else 0.
 *
 *	mk_extract_text() converts text from charset (NULL: none declared)
 *	as mk_mime_to_utf8() does, ends its lines in LF, reduces it to its
 *	text when html is true, and hands it to cb as one segment of kind
 *	where. It returns as mk_extract_file() does. The walk uses it for
 *	body parts.
 *
 *	mk_extract_html() returns the text of an HTML document in UTF-8:
 *	text nodes only, without scripts and styles, entities decoded, block
 *	elements on lines of their own. The result is allocated and
 *	NUL-terminated.
 */
#ifndef MK_EXTRACT_H
#define MK_EXTRACT_H

#include <stdbool.h>
#include <stddef.h>

#include "mk_mime.h"

int mk_extract_file(const char *name, const char *content_type, const char *data, size_t len,
                    const struct mk_mime_limits *limits, size_t depth, const char *location,
                    const struct mk_mime_walk_cb *cb);
int mk_extract_text(const struct mk_mime_walk_cb *cb, enum mk_mime_where where,
                    const char *location, const char *charset, bool html, const char *data,
                    size_t len);
char *mk_extract_html(const char *utf8, size_t len, size_t *out_len);

#endif
