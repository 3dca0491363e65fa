/*
 * dlp_policy - mailkeep-dlp's rules. See dlp_policy.h.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <pthread.h>

#include "dlp_policy.h"
#include "mk_util.h"

struct dlp_scratch_pool {
    pthread_mutex_t lock;
    struct mk_detect_scratch **free;
    size_t nfree, cap;
};

struct mk_detect_scratch *dlp_scratch_take(struct dlp_policy *p)
{
    struct mk_detect_scratch *s = NULL;

    pthread_mutex_lock(&p->scratch->lock);
    if (p->scratch->nfree)
        s = p->scratch->free[--p->scratch->nfree];
    pthread_mutex_unlock(&p->scratch->lock);
    return s ? s : mk_detect_scratch_new(p->detect);
}

void dlp_scratch_give(struct dlp_policy *p, struct mk_detect_scratch *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&p->scratch->lock);
    if (p->scratch->nfree == p->scratch->cap) {
        p->scratch->cap = p->scratch->cap ? p->scratch->cap * 2 : 8;
        p->scratch->free = mk_xrealloc(p->scratch->free, p->scratch->cap * sizeof(*p->scratch->free));
    }
    p->scratch->free[p->scratch->nfree++] = s;
    pthread_mutex_unlock(&p->scratch->lock);
}

static const char *const dlp_action_names[] = {"pass", "log", "tag", "warn", "quarantine", "reject"};

const char *dlp_action_name(enum dlp_action action)
{
    return dlp_action_names[action];
}

int dlp_action_parse(const char *name, enum dlp_action *action)
{
    for (size_t i = 1; i < MK_ARRAY_LEN(dlp_action_names); i++)
        if (strcasecmp(name, dlp_action_names[i]) == 0) {
            *action = (enum dlp_action) i;
            return 0;
        }
    return -1;
}

static int dlp_detector_index(const struct mk_detect *d, const char *name)
{
    for (unsigned i = 0; i < mk_detect_count(d); i++)
        if (strcmp(mk_detect_name(d, i), name) == 0)
            return (int) i;
    return -1;
}

/* Build the detectors: the chosen built-ins plus [detector NAME] sections. */
static struct mk_detect *dlp_detectors_load(const struct mk_config *cfg, char **error)
{
    char **sections = mk_config_sections(cfg, "detector");
    char **builtin = mk_config_list(cfg, "dlp", "builtin_detectors");
    char ***keywords;
    struct mk_detector_spec *specs;
    struct mk_detect *detect;
    size_t n = 0;
    bool all = builtin[0] && strcasecmp(builtin[0], "all") == 0 && builtin[1] == NULL;
    bool none = builtin[0] && strcasecmp(builtin[0], "none") == 0 && builtin[1] == NULL;
    char *empty[] = {NULL};

    while (sections[n])
        n++;
    specs = mk_xcalloc(n ? n : 1, sizeof(*specs));
    keywords = mk_xcalloc(n ? n : 1, sizeof(*keywords));
    for (size_t i = 0; i < n; i++) {
        keywords[i] = mk_config_list(cfg, sections[i], "keywords");
        for (char **k = keywords[i]; *k; k++) {
            char *t = mk_str_trim(*k);

            memmove(*k, t, strlen(t) + 1);
        }
        specs[i].name = strchr(sections[i], ' ') + 1;
        specs[i].pattern = mk_config_str(cfg, sections[i], "pattern");
        specs[i].validator = mk_config_str(cfg, sections[i], "validator");
        specs[i].keywords = keywords[i];
        specs[i].window = (int) mk_config_num(cfg, sections[i], "window");
        specs[i].min_count = (int) mk_config_num(cfg, sections[i], "min_count");
        specs[i].keyword_required = mk_config_bool(cfg, sections[i], "keyword_required");
    }
    detect = mk_detect_create(specs, n, all ? NULL : none ? (const char *const *) empty
                              : (const char *const *) builtin, error);
    if (detect == NULL && *error) {
        char *located = mk_xasprintf("%s: %s", mk_config_path(cfg), *error);

        free(*error);
        *error = located;
    }
    for (size_t i = 0; i < n; i++)
        mk_str_array_free(keywords[i]);
    free(keywords);
    free(specs);
    mk_str_array_free(sections);
    mk_str_array_free(builtin);
    return detect;
}

/* "name", "name:confidence" or "name:confidence:count" */
static int dlp_term_parse(const struct dlp_policy *p, const char *text, enum mk_confidence conf,
                          unsigned count, struct dlp_term *term, char **why)
{
    char **parts = mk_str_split(text, ":", NULL);
    long long n;
    int idx;

    *why = NULL;
    if (parts[0] == NULL || (idx = dlp_detector_index(p->detect, parts[0])) < 0) {
        *why = mk_xasprintf("'%s': no such detector", text);
    } else if (parts[1] && (mk_confidence_parse(parts[1], &conf) < 0 || conf == MK_CONF_NONE)) {
        *why = mk_xasprintf("'%s': confidence is low, medium or high", text);
    } else if (parts[1] && parts[2] && (mk_parse_int(parts[2], &n) < 0 || n < 1 || n > 1000000)) {
        *why = mk_xasprintf("'%s': count is a whole number from 1", text);
    } else if (parts[1] && parts[2] && parts[3]) {
        *why = mk_xasprintf("'%s': write name[:confidence[:count]]", text);
    } else {
        if (parts[1] && parts[2])
            count = (unsigned) n;
        term->detector = (unsigned) idx;
        term->min_confidence = conf;
        term->min_count = count;
        if ((int) term->min_count < mk_detect_min_count(p->detect, (unsigned) idx))
            term->min_count = (unsigned) mk_detect_min_count(p->detect, (unsigned) idx);
    }
    mk_str_array_free(parts);
    return *why ? -1 : 0;
}

static int dlp_rule_load(struct dlp_policy *p, const struct mk_config *cfg, const char *section,
                         struct dlp_rule *rule, char **error)
{
    char **dirs = mk_config_list(cfg, section, "direction");
    char **terms = mk_config_list(cfg, section, "detectors");
    enum mk_confidence conf = MK_CONF_MEDIUM;
    unsigned count = (unsigned) mk_config_num(cfg, section, "min_count");
    char *why = NULL;
    int rc = -1;

    rule->name = mk_xstrdup(strchr(section, ' ') + 1);
    (void) mk_confidence_parse(mk_config_str(cfg, section, "min_confidence"), &conf);
    for (char **d = dirs; *d; d++) {
        enum mk_direction dir;

        if (mk_direction_parse(*d, &dir) < 0) {
            *error = mk_xasprintf("%s:%d: [%s] direction: '%s' is not inbound, outbound or internal",
                                  mk_config_path(cfg), mk_config_line(cfg, section, "direction"),
                                  section, *d);
            goto out;
        }
        rule->directions |= 1u << dir;
    }
    if (rule->directions == 0) {
        *error = mk_xasprintf("%s:%d: [%s] direction: name at least one of inbound, outbound, internal",
                              mk_config_path(cfg), mk_config_line(cfg, section, "direction"), section);
        goto out;
    }
    rule->sender_groups = mk_config_list(cfg, section, "sender_groups");
    rule->recipient_groups = mk_config_list(cfg, section, "recipient_groups");
    for (char **t = terms; *t; t++) {
        rule->terms = mk_xrealloc(rule->terms, (rule->nterms + 1) * sizeof(*rule->terms));
        if (dlp_term_parse(p, *t, conf, count, &rule->terms[rule->nterms], &why) < 0) {
            *error = mk_xasprintf("%s:%d: [%s] detectors: %s", mk_config_path(cfg),
                                  mk_config_line(cfg, section, "detectors"), section, why);
            free(why);
            goto out;
        }
        rule->nterms++;
    }
    if (rule->nterms == 0) {
        *error = mk_xasprintf("%s:%d: [%s] detectors: name at least one detector",
                              mk_config_path(cfg), mk_config_line(cfg, section, "detectors"), section);
        goto out;
    }
    (void) dlp_action_parse(mk_config_str(cfg, section, "action"), &rule->action);
    rule->subject_prefix = mk_xstrdup(mk_config_str(cfg, section, "subject_prefix"));
    rule->reply = mk_xstrdup(mk_config_str(cfg, section, "reply"));
    rc = 0;
out:
    mk_str_array_free(dirs);
    mk_str_array_free(terms);
    return rc;
}

struct dlp_policy *dlp_policy_load(const struct mk_config *cfg, char **error)
{
    struct dlp_policy *p = mk_xcalloc(1, sizeof(*p));
    char **sections;

    *error = NULL;
    p->scratch = mk_xcalloc(1, sizeof(*p->scratch));
    pthread_mutex_init(&p->scratch->lock, NULL);
    if ((p->detect = dlp_detectors_load(cfg, error)) == NULL) {
        if (*error == NULL)
            *error = mk_xasprintf("%s: the detectors could not be built", mk_config_path(cfg));
        dlp_policy_free(p);
        return NULL;
    }
    sections = mk_config_sections(cfg, "rule");
    for (char **s = sections; *s; s++) {
        p->rules = mk_xrealloc(p->rules, (p->nrules + 1) * sizeof(*p->rules));
        memset(&p->rules[p->nrules], 0, sizeof(*p->rules));
        p->nrules++;
        if (dlp_rule_load(p, cfg, *s, &p->rules[p->nrules - 1], error) < 0) {
            mk_str_array_free(sections);
            dlp_policy_free(p);
            return NULL;
        }
    }
    mk_str_array_free(sections);
    mk_mime_limits_default(&p->limits);
    p->limits.max_depth = (size_t) mk_config_num(cfg, "dlp", "max_depth");
    p->limits.max_total = (size_t) mk_config_num(cfg, "dlp", "max_total");
    p->limits.max_part = (size_t) mk_config_num(cfg, "dlp", "max_part");
    p->limits.max_ratio = (double) mk_config_num(cfg, "dlp", "max_ratio");
    p->limits.max_members = (size_t) mk_config_num(cfg, "dlp", "max_members");
    p->max_message = (size_t) mk_config_num(cfg, "dlp", "max_message");
    p->max_scans = (long) mk_config_num(cfg, "dlp", "max_concurrent_scans");
    (void) dlp_action_parse(mk_config_str(cfg, "dlp", "unscannable_action"), &p->unscannable_action);
    p->tag_header = mk_xstrdup(mk_config_str(cfg, "dlp", "tag_header"));
    p->notify_from = mk_xstrdup(mk_config_str(cfg, "dlp", "notify_from"));
    p->notify_command = mk_str_split(mk_config_str(cfg, "dlp", "notify_command"), " \t", NULL);
    p->incident_log = mk_xstrdup(mk_config_str(cfg, "dlp", "incident_log"));
    return p;
}

void dlp_policy_free(struct dlp_policy *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nrules; i++) {
        free(p->rules[i].name);
        mk_str_array_free(p->rules[i].sender_groups);
        mk_str_array_free(p->rules[i].recipient_groups);
        free(p->rules[i].terms);
        free(p->rules[i].subject_prefix);
        free(p->rules[i].reply);
    }
    free(p->rules);
    if (p->scratch) {
        for (size_t i = 0; i < p->scratch->nfree; i++)
            mk_detect_scratch_free(p->scratch->free[i]);
        free(p->scratch->free);
        pthread_mutex_destroy(&p->scratch->lock);
        free(p->scratch);
    }
    mk_detect_free(p->detect);
    free(p->tag_header);
    free(p->notify_from);
    mk_str_array_free(p->notify_command);
    free(p->incident_log);
    free(p);
}

static bool dlp_in_groups(const struct mk_dir_user *user, char *const *groups)
{
    if (groups[0] == NULL)
        return true;                    /* no group condition */
    for (char *const *g = groups; *g; g++)
        if (mk_dir_user_in_group(user, *g))
            return true;
    return false;
}

static const struct dlp_term *dlp_rule_met(const struct dlp_rule *rule,
                                           const struct mk_scan_report *report)
{
    for (size_t i = 0; i < rule->nterms; i++)
        if (mk_scan_count(report, rule->terms[i].detector, rule->terms[i].min_confidence)
            >= rule->terms[i].min_count)
            return &rule->terms[i];
    return NULL;
}

/* "tw_national_id x3 (high) in attachment "a.xlsx"; payment_card x1 (medium) in body" */
static void dlp_describe(const struct dlp_policy *p, const struct dlp_rule *rule,
                         const struct mk_scan_report *report, char *out, size_t outlen)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < rule->nterms && used + 1 < outlen; i++) {
        const struct dlp_term *t = &rule->terms[i];
        unsigned n = mk_scan_count(report, t->detector, t->min_confidence);
        enum mk_confidence best = MK_CONF_LOW;
        char *where;

        if (n < t->min_count)
            continue;
        for (int c = MK_CONF_HIGH; c >= MK_CONF_LOW; c--)
            if (report->findings[t->detector].count[c]) {
                best = (enum mk_confidence) c;
                break;
            }
        where = mk_scan_describe(report, t->detector, t->min_confidence);
        used += (size_t) snprintf(out + used, outlen - used, "%s%s x%u (%s)%s%s",
                                  used ? "; " : "", mk_detect_name(p->detect, t->detector), n,
                                  mk_confidence_name(best), strncmp(where, "in ", 3) == 0 ? " " : ": ",
                                  where);
        free(where);
    }
    if (used >= outlen && outlen > 4)
        memcpy(out + outlen - 4, "...", 4);
}

void dlp_evaluate(const struct dlp_policy *p, const struct mk_scan_report *report,
                  const struct mk_dir_user *sender, const struct dlp_party *rcpts, size_t nrcpts,
                  struct dlp_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->action = DLP_PASS;
    for (size_t r = 0; r < p->nrules; r++) {
        const struct dlp_rule *rule = &p->rules[r];

        if (dlp_rule_met(rule, report) == NULL || !dlp_in_groups(sender, rule->sender_groups))
            continue;
        for (size_t i = 0; i < nrcpts; i++) {
            if (!(rule->directions & (1u << rcpts[i].direction))
                || !dlp_in_groups(rcpts[i].user, rule->recipient_groups))
                continue;
            if (v->nfired < DLP_MAX_FIRED) {
                v->fired[v->nfired].rule = rule;
                v->fired[v->nfired].recipient = i;
                v->nfired++;
            }
            if (rule->action > v->action) {
                v->action = rule->action;
                v->deciding = rule;
                dlp_describe(p, rule, report, v->reason, sizeof(v->reason));
            }
            break;                      /* one recipient is enough for this rule */
        }
    }
    if (report->unscannable) {
        v->unscannable = true;
        if (p->unscannable_action > v->action) {
            size_t used = 0;

            v->action = p->unscannable_action;
            v->deciding = NULL;
            v->reason[0] = '\0';
            for (size_t i = 0; i < report->nproblems && used + 1 < sizeof(v->reason); i++)
                if (report->problems[i].unscannable)
                    used += (size_t) snprintf(v->reason + used, sizeof(v->reason) - used,
                                              "%s%s in %s", used ? "; " : "",
                                              report->problems[i].reason,
                                              report->problems[i].location);
        }
    }
}
