/*
 * mailkeep dlp scan - run the configured detectors over a message or a
 * file and say what they find, where, and how sure, so administrators
 * can test their detectors and rules before mail meets them.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "dlp_policy.h"
#include "mailkeep.h"
#include "mk_config.h"
#include "mk_scan.h"
#include "mk_util.h"

static char *mailkeep_dlp_read(const char *path, size_t *len)
{
    size_t cap = 65536;
    char *buf;
    FILE *fp;

    if (strcmp(path, "-") != 0) {
        char *error = NULL, *text = mk_file_read(path, len, NULL, &error);

        if (text == NULL) {
            fprintf(stderr, "mailkeep dlp scan: %s\n", error);
            free(error);
        }
        return text;
    }
    fp = stdin;
    buf = mk_xmalloc(cap);
    *len = 0;
    for (;;) {
        size_t n = fread(buf + *len, 1, cap - *len - 1, fp);

        *len += n;
        if (n == 0)
            break;
        if (cap - *len < 4096) {
            cap *= 2;
            buf = mk_xrealloc(buf, cap);
        }
    }
    buf[*len] = '\0';
    return buf;
}

/* A message starts with a header field: a name of printable characters and a colon. */
static bool mailkeep_dlp_looks_like_message(const char *text, size_t len)
{
    size_t i = 0;

    while (i < len && text[i] > ' ' && text[i] < 0x7f && text[i] != ':')
        i++;
    return i > 0 && i < len && text[i] == ':';
}

static void mailkeep_dlp_print(const struct dlp_policy *p, const struct mk_scan_report *r)
{
    bool any = false;

    for (size_t d = 0; d < r->ndetectors; d++) {
        const struct mk_scan_finding *f = &r->findings[d];

        if (f->count[MK_CONF_LOW] + f->count[MK_CONF_MEDIUM] + f->count[MK_CONF_HIGH] == 0)
            continue;
        any = true;
        printf("%s: high %u, medium %u, low %u\n", mk_detect_name(p->detect, (unsigned) d),
               f->count[MK_CONF_HIGH], f->count[MK_CONF_MEDIUM], f->count[MK_CONF_LOW]);
        for (size_t i = 0; i < f->nlocations; i++)
            printf("  in %s: high %u, medium %u, low %u\n", f->locations[i].location,
                   f->locations[i].count[MK_CONF_HIGH], f->locations[i].count[MK_CONF_MEDIUM],
                   f->locations[i].count[MK_CONF_LOW]);
        for (size_t i = 0; i < f->nsamples; i++)
            printf("  sample: %s\n", f->samples[i]);
    }
    if (!any)
        printf("no personal data found\n");
    for (size_t i = 0; i < r->nproblems; i++)
        printf("%s: %s in %s\n", r->problems[i].unscannable ? "unscannable" : "note",
               r->problems[i].reason, r->problems[i].location);
    printf("scanned %zu bytes of text (engine %s)\n", r->bytes, mk_detect_engine(p->detect));
}

int mailkeep_dlp(const char *config_path, int argc, char **argv)
{
    const char *usage = "usage: mailkeep dlp scan [-m | -f] [-d DIRECTION] FILE|-\n";
    enum mk_direction direction = MK_OUTBOUND;
    bool have_direction = false;
    int mode = 0, ch, rc;
    struct mk_config *cfg;
    struct dlp_policy *policy;
    struct mk_detect_scratch *scratch;
    struct mk_scan_report *report;
    char *error = NULL, *data;
    size_t len;

    if (argc < 1 || strcmp(argv[0], "scan") != 0) {
        fputs(usage, stderr);
        return EX_USAGE;
    }
    optind = 1;
    while ((ch = getopt(argc, argv, "mfd:")) != -1) {
        switch (ch) {
        case 'm':
            mode = 'm';
            break;
        case 'f':
            mode = 'f';
            break;
        case 'd':
            if (mk_direction_parse(optarg, &direction) < 0) {
                fprintf(stderr, "mailkeep dlp scan: -d: inbound, outbound or internal\n");
                return EX_USAGE;
            }
            have_direction = true;
            break;
        default:
            fputs(usage, stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc - 1) {
        fputs(usage, stderr);
        return EX_USAGE;
    }
    if ((cfg = mailkeep_load_config(config_path)) == NULL)
        return EX_CONFIG;
    if ((policy = dlp_policy_load(cfg, &error)) == NULL) {
        fprintf(stderr, "%s\n", error);
        free(error);
        mk_config_unref(cfg);
        return EX_CONFIG;
    }
    if ((data = mailkeep_dlp_read(argv[optind], &len)) == NULL) {
        dlp_policy_free(policy);
        mk_config_unref(cfg);
        return EX_NOINPUT;
    }
    mk_mime_init();
    scratch = mk_detect_scratch_new(policy->detect);
    if (mode == 'm' || (mode == 0 && mailkeep_dlp_looks_like_message(data, len))) {
        report = mk_scan_message(policy->detect, scratch, data, len, &policy->limits);
    } else {
        const char *name = strrchr(argv[optind], '/');

        report = mk_scan_file(policy->detect, scratch, name ? name + 1 : argv[optind], data, len,
                              &policy->limits);
    }
    if (report == NULL) {
        fprintf(stderr, "mailkeep dlp scan: the detection engine failed\n");
        rc = EX_TEMPFAIL;
    } else {
        mailkeep_dlp_print(policy, report);
        if (have_direction) {
            struct dlp_party party = {"recipient", direction, NULL};
            struct dlp_verdict v;

            dlp_evaluate(policy, report, NULL, &party, 1, &v);
            printf("%s mail: %s%s%s%s%s\n", mk_direction_name(direction), dlp_action_name(v.action),
                   v.deciding ? " (rule " : "", v.deciding ? v.deciding->name : "",
                   v.deciding ? ")" : "", v.action == DLP_PASS ? "" : "");
            if (*v.reason)
                printf("  because: %s\n", v.reason);
        }
        /* 1 when not clean: something found, or something that could not be scanned. */
        rc = report->unscannable ? 1 : 0;
        for (size_t d = 0; d < report->ndetectors; d++)
            if (mk_scan_count(report, (unsigned) d, MK_CONF_LOW))
                rc = 1;
        mk_scan_report_free(report);
    }
    mk_detect_scratch_free(scratch);
    free(data);
    dlp_policy_free(policy);
    mk_config_unref(cfg);
    return rc;
}
