/*
 * mk_scan - scan a message or a file for personal data. See mk_scan.h.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_extract.h"
#include "mk_scan.h"
#include "mk_util.h"

struct mk_scan_state {
    const struct mk_detect *detect;
    struct mk_detect_scratch *scratch;
    struct mk_scan_report *report;
    const char *location;               /* of the segment being scanned */
    bool failed;
};

static struct mk_scan_location *mk_scan_location(struct mk_scan_finding *f, const char *where)
{
    for (size_t i = 0; i < f->nlocations; i++)
        if (strcmp(f->locations[i].location, where) == 0)
            return &f->locations[i];
    if (f->nlocations >= MK_SCAN_MAX_LOCATIONS)
        return &f->locations[f->nlocations - 1];    /* the last one stands for the rest */
    f->locations = mk_xrealloc(f->locations, (f->nlocations + 1) * sizeof(*f->locations));
    memset(&f->locations[f->nlocations], 0, sizeof(*f->locations));
    f->locations[f->nlocations].location = mk_xstrdup(where);
    return &f->locations[f->nlocations++];
}

static int mk_scan_on_match(void *arg, const struct mk_detect_match *m)
{
    struct mk_scan_state *st = arg;
    struct mk_scan_finding *f = &st->report->findings[m->detector];

    f->count[m->confidence]++;
    mk_scan_location(f, st->location)->count[m->confidence]++;
    if (f->nsamples < MK_SCAN_SAMPLES)
        mk_detect_mask(m->text, m->len, f->samples[f->nsamples++], sizeof(f->samples[0]));
    return 0;
}

static int mk_scan_on_segment(void *arg, const struct mk_mime_segment *s)
{
    struct mk_scan_state *st = arg;

    st->location = s->location;
    st->report->bytes += s->len;
    if (mk_detect_scan(st->detect, st->scratch, s->text, s->len, mk_scan_on_match, st) < 0) {
        st->failed = true;
        return 1;                       /* stop: the engine is broken */
    }
    return 0;
}

static void mk_scan_on_problem(void *arg, const struct mk_mime_problem *p)
{
    struct mk_scan_state *st = arg;
    struct mk_scan_report *r = st->report;

    r->problems = mk_xrealloc(r->problems, (r->nproblems + 1) * sizeof(*r->problems));
    r->problems[r->nproblems].location = mk_xstrdup(p->location ? p->location : "message");
    r->problems[r->nproblems].reason = mk_xstrdup(p->reason ? p->reason : "unknown");
    r->problems[r->nproblems].unscannable = p->unscannable;
    r->nproblems++;
    if (p->unscannable)
        r->unscannable = true;
}

static struct mk_scan_report *mk_scan_run(const struct mk_detect *detect,
                                          struct mk_detect_scratch *scratch, const char *name,
                                          const char *data, size_t len,
                                          const struct mk_mime_limits *limits)
{
    struct mk_scan_report *r = mk_xcalloc(1, sizeof(*r));
    struct mk_scan_state st = {detect, scratch, r, "message", false};
    struct mk_mime_walk_cb cb = {mk_scan_on_segment, mk_scan_on_problem, &st};
    struct mk_mime_limits defaults;

    if (limits == NULL) {
        mk_mime_limits_default(&defaults);
        limits = &defaults;
    }
    r->ndetectors = mk_detect_count(detect);
    r->findings = mk_xcalloc(r->ndetectors ? r->ndetectors : 1, sizeof(*r->findings));
    if (name == NULL)
        (void) mk_mime_walk(data, len, limits, &cb);
    else
        (void) mk_extract_file(name, NULL, data, len, limits, 0, name, &cb);
    if (st.failed) {
        mk_scan_report_free(r);
        return NULL;
    }
    return r;
}

struct mk_scan_report *mk_scan_message(const struct mk_detect *detect,
                                       struct mk_detect_scratch *scratch, const char *message,
                                       size_t len, const struct mk_mime_limits *limits)
{
    return mk_scan_run(detect, scratch, NULL, message, len, limits);
}

struct mk_scan_report *mk_scan_file(const struct mk_detect *detect,
                                    struct mk_detect_scratch *scratch, const char *name,
                                    const char *data, size_t len,
                                    const struct mk_mime_limits *limits)
{
    return mk_scan_run(detect, scratch, name ? name : "file", data, len, limits);
}

static unsigned mk_scan_sum(const unsigned *count, enum mk_confidence at_least)
{
    unsigned n = 0;

    for (int c = at_least > MK_CONF_LOW ? (int) at_least : MK_CONF_LOW; c <= MK_CONF_HIGH; c++)
        n += count[c];
    return n;
}

unsigned mk_scan_count(const struct mk_scan_report *report, unsigned detector,
                       enum mk_confidence at_least)
{
    if (detector >= report->ndetectors)
        return 0;
    return mk_scan_sum(report->findings[detector].count, at_least);
}

char *mk_scan_describe(const struct mk_scan_report *report, unsigned detector,
                       enum mk_confidence at_least)
{
    const struct mk_scan_finding *f;
    char *out = mk_xstrdup(""), *next;
    const char *last = NULL;
    size_t places = 0;

    if (detector >= report->ndetectors)
        return out;
    f = &report->findings[detector];
    for (size_t i = 0; i < f->nlocations; i++) {
        unsigned n = mk_scan_sum(f->locations[i].count, at_least);

        if (n == 0)
            continue;
        next = mk_xasprintf("%s%s%u in %s", out, *out ? ", " : "", n, f->locations[i].location);
        free(out);
        out = next;
        last = f->locations[i].location;
        places++;
    }
    /* One place: the total already says how many. */
    if (places == 1) {
        free(out);
        out = mk_xasprintf("in %s", last);
    }
    return out;
}

void mk_scan_report_free(struct mk_scan_report *report)
{
    if (report == NULL)
        return;
    for (size_t d = 0; d < report->ndetectors; d++) {
        for (size_t i = 0; i < report->findings[d].nlocations; i++)
            free(report->findings[d].locations[i].location);
        free(report->findings[d].locations);
    }
    free(report->findings);
    for (size_t i = 0; i < report->nproblems; i++) {
        free(report->problems[i].location);
        free(report->problems[i].reason);
    }
    free(report->problems);
    free(report);
}
