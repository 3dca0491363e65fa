/*
 * NAME
 *	dlp_incident 3h
 * SUMMARY
 *	one incident record per DLP decision, for privacy officers and reports
 * SYNOPSIS
 *	#include "dlp_incident.h"
 *
 *	char	*dlp_incident_json(const struct dlp_incident *incident);
 *	int	dlp_incident_append(const char *path, const char *json);
 * DESCRIPTION
 *	An incident is a JSON object on one line: time, queue ID, client,
 *	sender, every recipient with its direction, the action and the
 *	rules that fired, and per detector the counts by confidence, where
 *	they were found and masked samples (never the data itself), plus the
 *	parts that could not be scanned.
 *
 *	dlp_incident_append() appends the line to the incident log with
 *	one write(2) on a file opened O_APPEND (so lines from concurrent
 *	messages never interleave) and syncs it; it returns -1 with errno
 *	set when that fails, and the caller tempfails rather than deliver
 *	mail whose incident was lost.
 */
#ifndef DLP_INCIDENT_H
#define DLP_INCIDENT_H

#include <time.h>

#include "dlp_policy.h"

struct dlp_incident {
    time_t when;
    const char *queue_id;
    const char *client;
    const char *sender;
    const struct dlp_party *rcpts;
    size_t nrcpts;
    const struct dlp_policy *policy;
    const struct mk_scan_report *report;
    const struct dlp_verdict *verdict;
};

char *dlp_incident_json(const struct dlp_incident *incident);
int dlp_incident_append(const char *path, const char *json);

#endif
