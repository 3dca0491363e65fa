/*
 * NAME
 *	mk_mime 3h
 * SUMMARY
 *	a message as labelled UTF-8 text: the MIME walk under DLP and the index
 * SYNOPSIS
 *	#include "mk_mime.h"
 *
 *	void	mk_mime_init(void);
 *	void	mk_mime_shutdown(void);
 *	void	mk_mime_limits_default(struct mk_mime_limits *l);
 *	int	mk_mime_walk(const char *message, size_t len,
 *			     const struct mk_mime_limits *limits,
 *			     const struct mk_mime_walk_cb *cb);
 *	int	mk_mime_walk_at(const char *message, size_t len,
 *				const struct mk_mime_limits *limits, size_t depth,
 *				const char *location, const struct mk_mime_walk_cb *cb);
 *	char	*mk_mime_to_utf8(const char *charset, const char *data, size_t len,
 *				 size_t *out_len);
 *
 *	For mk_extract, which the walk and these call in turn:
 *	const struct mk_mime_walk_cb *mk_mime_budget_enter(struct mk_mime_budget *b,
 *				const struct mk_mime_limits *limits,
 *				const struct mk_mime_walk_cb *cb);
 *	int	mk_mime_emit(const struct mk_mime_walk_cb *cb, enum mk_mime_where where,
 *			     const char *location, const char *text, size_t len);
 *	void	mk_mime_report(const struct mk_mime_walk_cb *cb, const char *location,
 *			       const char *reason, bool unscannable);
 * DESCRIPTION
 *	mk_mime_walk() parses a raw RFC 5322 message (GMime) and hands every
 *	piece of text in it to cb->segment, in UTF-8 and labelled with where
 *	it came from, so that a detector can scan it and a person can be
 *	told "3 IDs in attachment \"salary.xlsx\"":
 *	    subject			the Subject, RFC 2047 decoded
 *	    header NAME		the display names of From, To, Cc, ...
 *				and any unstructured header (Comments, ...)
 *	    body, body (html)	each text part, its transfer encoding
 *				undone, its charset converted, HTML
 *				reduced to its text
 *	    attachment "NAME"	the name (MK_WHERE_ATTACHMENT_NAME) and
 *				the text of an attachment (mk_extract_file)
 *	    attached message > ...	the same, inside a message/rfc822 part
 *	A nameless attachment is "attachment (TYPE)"; members of archives
 *	add " > \"MEMBER\"". Header values that are 8-bit without a declared
 *	charset are read as UTF-8, else Big5, else GB18030.
 *
 *	What cannot be read is reported to cb->problem, with a location, a
 *	reason and whether the message must count as not scanned: the
 *	reasons are "encrypted archive", "encrypted document", "encrypted
 *	PDF", "encrypted message", "depth limit", "size limit", "expansion
 *	limit", "member limit", "malformed" and "unsupported document TYPE"
 *	(a format that carries text but that no library here reads:
 *	legacy Office, Outlook's TNEF), all unscannable, and "unsupported type
 *	TYPE" (images, audio and other parts that carry no text) and "no
 *	text in PDF" (a scan), informational. After a problem the walk goes on with the rest of the
 *	message; once max_total bytes of text have been handed over it
 *	stops, after reporting "size limit".
 *
 *	cb->segment returns nonzero to stop the walk; segment text is valid
 *	only during the call and is not NUL-terminated. Either callback may
 *	be NULL. Limits come from struct mk_mime_limits (NULL: the
 *	defaults), each bounding what an attacker can make the walk spend.
 *	mk_mime_walk() returns 0, also when stopped, or -1 when the message
 *	could not be parsed at all, which is reported as "malformed" too.
 *
 *	mk_mime_walk_at() walks a message found inside something else
 *	(an .eml file in an archive): depth is the nesting it is found at
 *	and location, when not NULL, is put before its locations with " > ".
 *
 *	mk_mime_to_utf8() converts text in the named charset (NULL when
 *	none is declared) to UTF-8: a byte order mark wins, then the
 *	declared charset when the text converts without error (text
 *	declared ASCII or Latin-1 that is valid UTF-8 is taken as UTF-8, the
 *	commonest mislabelling; 8-bit text declared ASCII is taken as
 *	undeclared), then valid UTF-8, Big5 (as CP950), Big5-HKSCS and
 *	GB18030 in that order, then Windows-1252 for text whose 8-bit
 *	bytes stand mostly alone, as accented letters do; text none of
 *	them takes is converted with the fewest replacement characters. The result is allocated and
 *	NUL-terminated; *out_len is its length.
 *
 *	mk_mime_init() initialises GMime and libxml2 once per process and
 *	may be called from any thread any number of times; the walk calls
 *	it. mk_mime_shutdown() releases their global state at exit, when no
 *	walk runs, so that a leak checker sees only real leaks.
 *
 *	mk_mime_budget_enter() puts the whole-walk accounting in front of
 *	cb: the total of text (max_total), the stop requested by the
 *	caller, text made valid UTF-8. A cb that already is one is returned
 *	as it is, so mk_mime_walk() and mk_extract_file() may call each
 *	other and a message keeps one budget. mk_mime_emit() hands text to
 *	it (empty or white text is not handed over) and returns nonzero
 *	when the walk must stop; mk_mime_report() reports a problem.
 */
#ifndef MK_MIME_H
#define MK_MIME_H

#include <stdbool.h>
#include <stddef.h>

#define MK_MIME_MIB	((size_t) 1024 * 1024)

struct mk_mime_limits {
    size_t max_depth;           /* nesting of multiparts, messages and archives; 8 */
    size_t max_total;           /* bytes of text over the whole message; 64 MiB */
    size_t max_part;            /* decoded bytes of one part or archive member; 32 MiB */
    double max_ratio;           /* archive member size over its compressed size; 100 */
    size_t max_members;         /* archive members; 10000 */
};

enum mk_mime_where {
    MK_WHERE_SUBJECT,
    MK_WHERE_HEADER,
    MK_WHERE_BODY,
    MK_WHERE_ATTACHMENT_NAME,
    MK_WHERE_ATTACHMENT
};

struct mk_mime_segment {
    enum mk_mime_where where;
    const char *location;       /* "subject", "body (html)", "attachment \"a.zip\" > \"b.docx\"" */
    const char *text;           /* UTF-8, valid during the callback */
    size_t len;
};

struct mk_mime_problem {
    const char *location;
    const char *reason;         /* "encrypted archive", "size limit", ... */
    bool unscannable;           /* false: informational only */
};

struct mk_mime_walk_cb {
    int (*segment)(void *arg, const struct mk_mime_segment *s); /* nonzero stops the walk */
    void (*problem)(void *arg, const struct mk_mime_problem *p);
    void *arg;
};

/* One walk's accounting; lives on the stack of whoever entered it first. */
struct mk_mime_budget {
    struct mk_mime_walk_cb cb;  /* what nested calls are given */
    const struct mk_mime_walk_cb *user;
    size_t total, max_total;
    bool stopped;
};

void mk_mime_init(void);
void mk_mime_shutdown(void);
void mk_mime_limits_default(struct mk_mime_limits *l);
int mk_mime_walk(const char *message, size_t len, const struct mk_mime_limits *limits,
                 const struct mk_mime_walk_cb *cb);
int mk_mime_walk_at(const char *message, size_t len, const struct mk_mime_limits *limits,
                    size_t depth, const char *location, const struct mk_mime_walk_cb *cb);
char *mk_mime_to_utf8(const char *charset, const char *data, size_t len, size_t *out_len);

const struct mk_mime_walk_cb *mk_mime_budget_enter(struct mk_mime_budget *b,
                                                   const struct mk_mime_limits *limits,
                                                   const struct mk_mime_walk_cb *cb);
int mk_mime_emit(const struct mk_mime_walk_cb *cb, enum mk_mime_where where,
                 const char *location, const char *text, size_t len);
void mk_mime_report(const struct mk_mime_walk_cb *cb, const char *location, const char *reason,
                    bool unscannable);

#endif
