/*
 * NAME
 *	av_replace 3h
 * SUMMARY
 *	the "replace" action: infected parts of a message cut out, a notice in their place
 * SYNOPSIS
 *	#include "av_replace.h"
 *
 *	int	av_replace(const struct av_engine *engine, const char *message, size_t len,
 *			   struct av_replaced *out);
 *	void	av_replaced_free(struct av_replaced *out);
 * DESCRIPTION
 *	av_replace() parses the message (GMime), scans each part of its
 *	multipart tree on its own (decoded; an attached message as a
 *	whole) and replaces every infected part by a short text/plain
 *	notice, in English and Chinese, that names the part and the
 *	threat. It then scans the rewritten message once more. It returns
 *	1 when the rewritten message is clean: out->body holds the new body
 *	(CRLF line ends, for smfi_replacebody; the top-level headers are
 *	unchanged) and out->what says what was removed ("Eicar in
 *	\"a.com\", ..."). It returns 0 when the message cannot be cleaned
 *	this way (it is not multipart, no single part is infected, or the
 *	rewritten message still is), for the caller to fall back to
 *	quarantine, and -1 when a scan fails (tempfail).
 */
#ifndef AV_REPLACE_H
#define AV_REPLACE_H

#include <stddef.h>

#include "av_engine.h"

struct av_replaced {
    char *body;
    size_t body_len;
    char *what;
    size_t parts;
};

void av_replace_init(void);
int av_replace(const struct av_engine *engine, const char *message, size_t len,
               struct av_replaced *out);
void av_replaced_free(struct av_replaced *out);

#endif
