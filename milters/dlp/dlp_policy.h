/*
 * NAME
 *	dlp_policy 3h
 * SUMMARY
 *	mailkeep-dlp's rules: which findings, for whom, lead to what action
 * SYNOPSIS
 *	#include "dlp_policy.h"
 *
 *	struct dlp_policy *dlp_policy_load(const struct mk_config *cfg, char **error);
 *	void	dlp_policy_free(struct dlp_policy *policy);
 *	void	dlp_evaluate(const struct dlp_policy *policy, const struct mk_scan_report *report,
 *			     const struct mk_dir_user *sender, const struct dlp_party *rcpts,
 *			     size_t nrcpts, struct dlp_verdict *verdict);
 *	const char *dlp_action_name(enum dlp_action action);
 *	struct mk_detect_scratch *dlp_scratch_take(struct dlp_policy *policy);
 *	void	dlp_scratch_give(struct dlp_policy *policy, struct mk_detect_scratch *scratch);
 * DESCRIPTION
 *	dlp_policy_load() builds the detectors (the built-in set named by
 *	[dlp] builtin_detectors, plus every [detector NAME] section) and the
 *	rules ([rule NAME] sections, in file order). A rule names detectors
 *	as "name", "name:confidence" or "name:confidence:count"; the
 *	defaults are the rule's min_confidence and min_count (and never less
 *	than the detector's own min_count). Unknown detectors, bad terms and
 *	bad patterns are errors naming file, line and rule.
 *
 *	dlp_evaluate() applies every rule to every recipient: a rule fires
 *	for a recipient when the recipient's direction is one of the rule's,
 *	the sender is in one of its sender_groups and the recipient in one of
 *	its recipient_groups (when those are set), and at least one of its
 *	terms is met by the report. The message gets the most severe action
 *	of all rules that fired (reject > quarantine > warn > tag > log): a
 *	milter acts on the whole message. Content that could not be scanned
 *	adds [dlp] unscannable_action. The verdict says which rules fired,
 *	for which recipients, and why, in words fit for a log line and an
 *	SMTP reply: detector names, counts, confidence and locations, never
 *	the data.
 *
 *	Detector scratch space is per scan; dlp_scratch_take() hands out a
 *	free one (or makes one) and dlp_scratch_give() returns it, so that
 *	concurrent scans never share one and none is made per message.
 */
#ifndef DLP_POLICY_H
#define DLP_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "mk_config.h"
#include "mk_detect.h"
#include "mk_direction.h"
#include "mk_directory.h"
#include "mk_mime.h"
#include "mk_scan.h"

enum dlp_action { DLP_PASS, DLP_LOG, DLP_TAG, DLP_WARN, DLP_QUARANTINE, DLP_REJECT };

struct dlp_term {
    unsigned detector;
    enum mk_confidence min_confidence;
    unsigned min_count;
};

struct dlp_rule {
    char *name;                         /* "rule NAME" section's NAME */
    unsigned directions;                /* bit (1 << enum mk_direction) */
    char **sender_groups, **recipient_groups;
    struct dlp_term *terms;
    size_t nterms;
    enum dlp_action action;
    char *subject_prefix;
    char *reply;
};

struct dlp_policy {
    struct mk_detect *detect;
    struct dlp_rule *rules;
    size_t nrules;
    struct mk_mime_limits limits;
    enum dlp_action unscannable_action;
    size_t max_message;
    long max_scans;                     /* 0: one per CPU */
    char *tag_header;
    char *notify_from;
    char **notify_command;
    char *incident_log;
    struct dlp_scratch_pool *scratch;   /* detector scratch, one per concurrent scan */
};

struct dlp_party {
    const char *address;
    enum mk_direction direction;
    const struct mk_dir_user *user;     /* NULL: not a local user */
};

#define DLP_MAX_FIRED 32

struct dlp_fired {
    const struct dlp_rule *rule;
    size_t recipient;                   /* the first recipient it fired for */
};

struct dlp_verdict {
    enum dlp_action action;
    struct dlp_fired fired[DLP_MAX_FIRED];
    size_t nfired;
    bool unscannable;
    const struct dlp_rule *deciding;    /* the rule whose action won, or NULL */
    char reason[768];                   /* "tw_national_id x3 (high) in attachment \"a.xlsx\"" */
};

struct dlp_policy *dlp_policy_load(const struct mk_config *cfg, char **error);
void dlp_policy_free(struct dlp_policy *policy);
void dlp_evaluate(const struct dlp_policy *policy, const struct mk_scan_report *report,
                  const struct mk_dir_user *sender, const struct dlp_party *rcpts, size_t nrcpts,
                  struct dlp_verdict *verdict);
const char *dlp_action_name(enum dlp_action action);
int dlp_action_parse(const char *name, enum dlp_action *action);
struct mk_detect_scratch *dlp_scratch_take(struct dlp_policy *policy);
void dlp_scratch_give(struct dlp_policy *policy, struct mk_detect_scratch *scratch);

#endif
