/*
 * dlp_incident - DLP incident records as JSON lines. See dlp_incident.h.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dlp_incident.h"
#include "mk_log.h"
#include "mk_util.h"

/*
 * A JSON string from bytes that may not be UTF-8 (addresses and file
 * names come from outside): invalid sequences become U+FFFD, so one
 * odd byte never costs the whole record.
 */
static json_t *dlp_json_str(const char *s)
{
    size_t len = s ? strlen(s) : 0, o = 0;
    char *out = mk_xmalloc(len * 3 + 1);
    json_t *j;

    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char) s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
            : (c & 0xF8) == 0xF0 ? 4 : 0;
        bool ok = n > 0 && i + n <= len && !(n == 2 && c < 0xC2) && !(n == 4 && c > 0xF4);

        for (size_t k = 1; ok && k < n; k++)
            ok = ((unsigned char) s[i + k] & 0xC0) == 0x80;
        if (ok && n == 3) {
            unsigned char c1 = (unsigned char) s[i + 1];

            ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
        }
        if (ok && n == 4) {
            unsigned char c1 = (unsigned char) s[i + 1];

            ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
        }
        if (ok && c != 0) {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    j = json_stringn(out, o);
    free(out);
    return j ? j : json_string("");
}

static json_t *dlp_incident_findings(const struct dlp_incident *in)
{
    const struct mk_scan_report *r = in->report;
    json_t *list = json_array();

    for (size_t d = 0; r && d < r->ndetectors; d++) {
        const struct mk_scan_finding *f = &r->findings[d];
        json_t *item, *where, *samples;

        if (f->count[MK_CONF_LOW] + f->count[MK_CONF_MEDIUM] + f->count[MK_CONF_HIGH] == 0)
            continue;
        where = json_array();
        for (size_t i = 0; i < f->nlocations; i++)
            json_array_append_new(where, json_pack("{s:o, s:i, s:i, s:i}",
                                                   "location", dlp_json_str(f->locations[i].location),
                                                   "low", f->locations[i].count[MK_CONF_LOW],
                                                   "medium", f->locations[i].count[MK_CONF_MEDIUM],
                                                   "high", f->locations[i].count[MK_CONF_HIGH]));
        samples = json_array();
        for (size_t i = 0; i < f->nsamples; i++)
            json_array_append_new(samples, dlp_json_str(f->samples[i]));
        item = json_pack("{s:s, s:i, s:i, s:i, s:o, s:o}",
                         "detector", mk_detect_name(in->policy->detect, (unsigned) d),
                         "low", f->count[MK_CONF_LOW], "medium", f->count[MK_CONF_MEDIUM],
                         "high", f->count[MK_CONF_HIGH], "where", where, "samples", samples);
        json_array_append_new(list, item);
    }
    return list;
}

char *dlp_incident_json(const struct dlp_incident *in)
{
    json_t *root, *rcpts = json_array(), *rules = json_array(), *problems = json_array();
    char when[32];
    struct tm tm;
    char *out;

    gmtime_r(&in->when, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    for (size_t i = 0; i < in->nrcpts; i++)
        json_array_append_new(rcpts, json_pack("{s:o, s:s}", "address", dlp_json_str(in->rcpts[i].address),
                                               "direction",
                                               mk_direction_name(in->rcpts[i].direction)));
    for (size_t i = 0; i < in->verdict->nfired; i++)
        json_array_append_new(rules, json_pack("{s:s, s:s, s:o}",
                                               "rule", in->verdict->fired[i].rule->name,
                                               "action", dlp_action_name(in->verdict->fired[i].rule->action),
                                               "recipient",
                                               dlp_json_str(in->rcpts[in->verdict->fired[i].recipient].address)));
    for (size_t i = 0; in->report && i < in->report->nproblems; i++)
        json_array_append_new(problems, json_pack("{s:o, s:o, s:b}",
                                                  "location", dlp_json_str(in->report->problems[i].location),
                                                  "reason", dlp_json_str(in->report->problems[i].reason),
                                                  "unscannable", in->report->problems[i].unscannable));
    root = json_pack("{s:s, s:o, s:o, s:o, s:o, s:s, s:o, s:b, s:o, s:o, s:o}",
                     "time", when, "queue_id", dlp_json_str(in->queue_id ? in->queue_id : "NOQUEUE"),
                     "client", dlp_json_str(in->client ? in->client : "unknown"),
                     "sender", dlp_json_str(in->sender), "recipients", rcpts,
                     "action", dlp_action_name(in->verdict->action),
                     "reason", dlp_json_str(in->verdict->reason), "unscannable", in->verdict->unscannable,
                     "rules", rules, "findings", dlp_incident_findings(in),
                     "problems", problems);
    if (root == NULL)
        mk_log_fatal("internal error: cannot build an incident record");
    out = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(root);
    if (out == NULL)
        return mk_xstrdup("{\"error\":\"out of memory\"}");
    {
        char *copy = mk_xstrdup(out);

        free(out);
        return copy;
    }
}

int dlp_incident_append(const char *path, const char *json)
{
    size_t len = strlen(json);
    char *line = mk_xasprintf("%s\n", json);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    ssize_t n;
    int saved;

    if (fd < 0) {
        free(line);
        return -1;
    }
    n = write(fd, line, len + 1);
    saved = errno;
    free(line);
    if (n != (ssize_t) (len + 1) || fdatasync(fd) < 0) {
        if (n >= 0 && n != (ssize_t) (len + 1))
            saved = ENOSPC;
        close(fd);
        errno = saved;
        return -1;
    }
    return close(fd);
}
