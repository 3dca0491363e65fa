/*
 * NAME
 *	dlp_notify 3h
 * SUMMARY
 *	tell a sender what kinds of personal data their message carried
 * SYNOPSIS
 *	#include "dlp_notify.h"
 *
 *	char	*dlp_notify_text(const struct dlp_notice *notice);
 * DESCRIPTION
 *	The "warn" action delivers the message and sends its sender a
 *	notice: the message went out, it contained these kinds of data
 *	(detector names, counts, where: "tw_national_id x3 (high) in
 *	attachment \"salary.xlsx\""), never the data itself.
 *
 *	dlp_notify_text() composes the notice (UTF-8, with Auto-Submitted
 *	so that no auto-reply answers it). It does not repeat the message's
 *	subject, which may itself hold the data; the recipients and the
 *	queue ID identify the message. mk_notify_send() sends it.
 */
#ifndef DLP_NOTIFY_H
#define DLP_NOTIFY_H

struct dlp_notice {
    const char *from;                   /* [dlp] notify_from */
    const char *to;                     /* the envelope sender */
    const char *recipients;             /* "a@x, b@y" */
    const char *findings;               /* the verdict's reason */
    const char *queue_id;
};

char *dlp_notify_text(const struct dlp_notice *notice);

#endif
