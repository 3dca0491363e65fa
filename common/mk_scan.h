/*
 * NAME
 *	mk_scan 3h
 * SUMMARY
 *	scan a message or a file for personal data: what, how sure, where
 * SYNOPSIS
 *	#include "mk_scan.h"
 *
 *	struct mk_scan_report *mk_scan_message(const struct mk_detect *detect,
 *				struct mk_detect_scratch *scratch, const char *message,
 *				size_t len, const struct mk_mime_limits *limits);
 *	struct mk_scan_report *mk_scan_file(const struct mk_detect *detect,
 *				struct mk_detect_scratch *scratch, const char *name,
 *				const char *data, size_t len, const struct mk_mime_limits *limits);
 *	unsigned mk_scan_count(const struct mk_scan_report *report, unsigned detector,
 *				enum mk_confidence at_least);
 *	char	*mk_scan_describe(const struct mk_scan_report *report, unsigned detector,
 *				enum mk_confidence at_least);
 *	void	mk_scan_report_free(struct mk_scan_report *report);
 * DESCRIPTION
 *	The one place where text extraction (mk_mime, mk_extract) meets the
 *	detectors (mk_detect); the DLP milter, `mailkeep dlp scan` and later
 *	the archive all scan through it.
 *
 *	A report holds, for every detector, how many matches were found at
 *	each confidence level, in which locations ("subject", "attachment
 *	\"salary.xlsx\"", ...) with how many each, and up to
 *	MK_SCAN_SAMPLES masked samples (mk_detect_mask: never the data
 *	itself). It also lists every problem the extraction met; a problem
 *	that left content unscanned sets report->unscannable.
 *
 *	The scan functions return NULL only when the detection engine
 *	failed: the caller cannot decide and must tempfail. A message that
 *	cannot be parsed is reported as unscannable, not as an error.
 *
 *	mk_scan_count() counts matches of at least the given confidence.
 *	mk_scan_describe() says where they were, for people: "in
 *	attachment \"salary.xlsx\"" when they were in one place, else
 *	"3 in attachment \"salary.xlsx\", 1 in body" (allocated).
 */
#ifndef MK_SCAN_H
#define MK_SCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "mk_detect.h"
#include "mk_mime.h"

#define MK_SCAN_SAMPLES 3
#define MK_SCAN_MAX_LOCATIONS 100

struct mk_scan_location {
    char *location;
    unsigned count[4];                  /* by confidence */
};

struct mk_scan_finding {
    unsigned count[4];                  /* by confidence: MK_CONF_LOW .. MK_CONF_HIGH */
    struct mk_scan_location *locations;
    size_t nlocations;
    char samples[MK_SCAN_SAMPLES][64];
    size_t nsamples;
};

struct mk_scan_problem {
    char *location;
    char *reason;
    bool unscannable;
};

struct mk_scan_report {
    struct mk_scan_finding *findings;   /* one per detector */
    size_t ndetectors;
    struct mk_scan_problem *problems;
    size_t nproblems;
    bool unscannable;
    size_t bytes;                       /* text scanned */
};

struct mk_scan_report *mk_scan_message(const struct mk_detect *detect,
                                       struct mk_detect_scratch *scratch, const char *message,
                                       size_t len, const struct mk_mime_limits *limits);
struct mk_scan_report *mk_scan_file(const struct mk_detect *detect,
                                    struct mk_detect_scratch *scratch, const char *name,
                                    const char *data, size_t len,
                                    const struct mk_mime_limits *limits);
unsigned mk_scan_count(const struct mk_scan_report *report, unsigned detector,
                       enum mk_confidence at_least);
char *mk_scan_describe(const struct mk_scan_report *report, unsigned detector,
                       enum mk_confidence at_least);
void mk_scan_report_free(struct mk_scan_report *report);

#endif
