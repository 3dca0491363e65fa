/*
 * NAME
 *	mailkeep-dlp 8
 * SUMMARY
 *	personal-data detection milter
 * DESCRIPTION
 *	Buffers each message (up to [dlp] max_message), scans its subject,
 *	headers, body and attachments with mk_scan at end of message, decides
 *	per recipient's direction and groups with dlp_policy, and acts on the
 *	message: log, tag, warn, quarantine (Postfix hold queue) or reject.
 *	Every decision a rule took (and every message that could not be
 *	fully scanned) is one log line and one incident record. See mailkeep-dlp(8).
 *
 *	A scan is CPU work: at most [dlp] max_concurrent_scans run at once
 *	(default: the number of CPUs); the rest wait their turn, keeping the
 *	MTA informed with smfi_progress(). When the milter cannot decide
 *	(directory down, engine error, incident log not writable) the
 *	message is tempfailed, never passed unchecked.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <gmime/gmime.h>

#include "dlp_incident.h"
#include "dlp_notify.h"
#include "mk_notify.h"
#include "dlp_policy.h"
#include "mk_log.h"
#include "mk_message.h"
#include "mk_milter.h"
#include "mk_util.h"

#define DLP_MAX_RCPTS 10000

struct dlp_conn {
    struct mk_milter_gen *gen;
    struct mk_milter_client client;
    struct mk_message msg;              /* in memory, up to [dlp] max_message */
    char *subject;
    int own_headers[2];                 /* tag / quarantine headers it arrived with */
};


static struct dlp_policy *dlp_policy_of(const struct dlp_conn *c)
{
    return c->gen->policy;
}

static void dlp_message_reset(struct dlp_conn *c)
{
    mk_message_reset(&c->msg);
    free(c->subject);
    c->subject = NULL;
    c->own_headers[0] = c->own_headers[1] = 0;
}

static void dlp_conn_free(struct dlp_conn *c)
{
    if (c == NULL)
        return;
    dlp_message_reset(c);
    mk_milter_client_free(&c->client);
    mk_milter_release(c->gen);
    free(c);
}

static sfsistat dlp_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
    struct dlp_conn *c = smfi_getpriv(ctx);
    (void) hostname;
    dlp_conn_free(c);
    c = mk_xcalloc(1, sizeof(*c));
    c->msg.fd = -1;
    c->gen = mk_milter_acquire();
    smfi_setpriv(ctx, c);
    mk_milter_client_init(&c->client, ctx, hostaddr);
    return SMFIS_CONTINUE;
}

static sfsistat dlp_envfrom(SMFICTX *ctx, char **argv)
{
    struct dlp_conn *c = smfi_getpriv(ctx);
    size_t max;

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    dlp_message_reset(c);
    /* All in memory; past max_message it is not stored but reported unscannable. */
    max = dlp_policy_of(c)->max_message;
    mk_message_start(&c->msg, argv[0], mk_milter_macro(ctx, "{auth_authen}"), max, NULL, max);
    return SMFIS_CONTINUE;
}

static sfsistat dlp_envrcpt(SMFICTX *ctx, char **argv)
{
    struct dlp_conn *c = smfi_getpriv(ctx);

    if (c == NULL || c->msg.rcpts == NULL)
        return SMFIS_TEMPFAIL;
    if (c->msg.nrcpts >= DLP_MAX_RCPTS) {
        mk_milter_reply(ctx, "452", "4.5.3", "Too many recipients");
        return SMFIS_TEMPFAIL;
    }
    mk_message_add_rcpt(&c->msg, argv[0]);
    return SMFIS_CONTINUE;
}

static sfsistat dlp_header(SMFICTX *ctx, char *name, char *value)
{
    struct dlp_conn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    if (strcasecmp(name, dlp_policy_of(c)->tag_header) == 0)
        c->own_headers[0]++;
    else if (strcasecmp(name, "X-Mailkeep-Quarantine") == 0)
        c->own_headers[1]++;
    else if (strcasecmp(name, "Subject") == 0 && c->subject == NULL)
        c->subject = mk_xstrdup(value);
    mk_message_header(&c->msg, name, value);
    return SMFIS_CONTINUE;
}

static sfsistat dlp_eoh(SMFICTX *ctx)
{
    struct dlp_conn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    mk_message_append(&c->msg, "\r\n", 2);
    return SMFIS_CONTINUE;
}

static sfsistat dlp_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct dlp_conn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    mk_message_append(&c->msg, (const char *) chunk, len);
    return SMFIS_CONTINUE;
}

/* Direction and directory entry of each recipient; -1 when the directory cannot answer. */
static int dlp_parties(struct dlp_conn *c, const struct mk_origin *origin,
                       struct dlp_party *parties, struct mk_dir_user **users)
{
    struct mk_directory *dir = c->gen->dir;

    for (size_t i = 0; i < c->msg.nrcpts; i++) {
        const char *domain = mk_addr_domain(c->msg.rcpts[i]);
        enum mk_dir_status st = domain ? mk_directory_domain(dir, domain) : MK_DIR_FOUND;

        users[i] = NULL;
        if (st == MK_DIR_TEMPFAIL)
            return -1;
        if (st == MK_DIR_FOUND && domain && mk_directory_user(dir, c->msg.rcpts[i], &users[i])
            == MK_DIR_TEMPFAIL)
            return -1;
        parties[i].address = c->msg.rcpts[i];
        parties[i].direction = mk_direction_of(origin, st == MK_DIR_FOUND);
        parties[i].user = users[i];
    }
    return 0;
}

static struct mk_scan_report *dlp_scan(SMFICTX *ctx, struct dlp_conn *c)
{
    struct dlp_policy *p = dlp_policy_of(c);
    struct mk_detect_scratch *scratch;
    struct mk_scan_report *report;

    mk_milter_scan_begin(ctx, p->max_scans);
    scratch = dlp_scratch_take(p);
    if (c->msg.too_big) {
        /* Not scanned at all: an unscannable report that says why. */
        report = mk_scan_message(p->detect, scratch, "", 0, &p->limits);
        if (report) {
            report->problems = mk_xrealloc(report->problems,
                                           (report->nproblems + 1) * sizeof(*report->problems));
            report->problems[report->nproblems].location = mk_xstrdup("message");
            report->problems[report->nproblems].reason = mk_xstrdup("size limit");
            report->problems[report->nproblems].unscannable = true;
            report->nproblems++;
            report->unscannable = true;
        }
    } else {
        report = scratch ? mk_scan_message(p->detect, scratch, c->msg.buf ? c->msg.buf : "",
                                           c->msg.len, &p->limits) : NULL;
    }
    dlp_scratch_give(p, scratch);
    mk_milter_scan_end();
    return report;
}

static char *dlp_tag_value(const struct dlp_verdict *v)
{
    char *rules = mk_xstrdup(""), *next, *value;

    for (size_t i = 0; i < v->nfired; i++) {
        bool seen = false;

        for (size_t j = 0; j < i; j++)
            seen |= v->fired[j].rule == v->fired[i].rule;
        if (seen)
            continue;
        next = mk_xasprintf("%s%s%s", rules, *rules ? "," : "", v->fired[i].rule->name);
        free(rules);
        rules = next;
    }
    value = mk_xasprintf("action=%s; rules=%s; %s", dlp_action_name(v->action),
                         *rules ? rules : "-", v->reason);
    free(rules);
    return value;
}

/*
 * "PREFIX subject". A prefix in Chinese goes out as an RFC 2047 encoded
 * word. Decoders drop the white space between two encoded words, so
 * before an encoded subject the separating space is an encoded word too.
 */
static char *dlp_prefixed_subject(const char *prefix, const char *subject)
{
    bool ascii = true, encoded_next = subject && strncmp(subject, "=?", 2) == 0;
    char *encoded, *out;

    for (const char *p = prefix; *p; p++)
        ascii &= (unsigned char) *p < 0x80;
    if (ascii)
        return mk_xasprintf("%s %s", prefix, subject ? subject : "");
    encoded = g_mime_utils_header_encode_text(NULL, prefix, "utf-8");
    out = mk_xasprintf("%s %s%s", encoded, encoded_next ? "=?utf-8?q?_?= " : "",
                       subject ? subject : "");
    g_free(encoded);
    return out;
}

/* Whether the subject, decoded, already starts with the prefix. */
static bool dlp_has_prefix(const char *subject, const char *prefix)
{
    char *decoded;
    bool has;

    if (subject == NULL)
        return false;
    decoded = g_mime_utils_header_decode_text(NULL, subject);
    has = decoded && strncmp(decoded, prefix, strlen(prefix)) == 0;
    g_free(decoded);
    return has;
}

static sfsistat dlp_apply(SMFICTX *ctx, struct dlp_conn *c, const struct dlp_verdict *v)
{
    struct dlp_policy *p = dlp_policy_of(c);
    const char *qid = mk_milter_queue_id(ctx);
    const char *prefix = v->deciding ? v->deciding->subject_prefix : "";
    char *tag, *reason;

    /* Our headers are ours: drop any the message arrived with. */
    for (int i = c->own_headers[0]; i > 0; i--)
        smfi_chgheader(ctx, p->tag_header, i, NULL);
    for (int i = c->own_headers[1]; i > 0; i--)
        smfi_chgheader(ctx, "X-Mailkeep-Quarantine", i, NULL);
    if (v->action == DLP_PASS || v->action == DLP_LOG)
        return SMFIS_CONTINUE;
    if (v->action == DLP_REJECT) {
        if (v->deciding && *v->deciding->reply)
            mk_milter_reply(ctx, "550", "5.7.1", "%s", v->deciding->reply);
        else
            mk_milter_reply(ctx, "550", "5.7.1", "Message not sent: it contains personal data (%s)",
                            v->reason);
        return SMFIS_REJECT;
    }
    tag = dlp_tag_value(v);
    if (smfi_addheader(ctx, p->tag_header, tag) == MI_FAILURE) {
        free(tag);
        return SMFIS_TEMPFAIL;
    }
    free(tag);
    if (*prefix) {
        char *subject = dlp_prefixed_subject(prefix, c->subject);

        if (!dlp_has_prefix(c->subject, prefix)) {
            if (c->subject)
                smfi_chgheader(ctx, "Subject", 1, subject);
            else
                smfi_addheader(ctx, "Subject", subject);
        }
        free(subject);
    }
    if (v->action == DLP_QUARANTINE) {
        reason = mk_xasprintf("mailkeep-dlp: %s%s: %s", v->deciding ? "rule " : "",
                              v->deciding ? v->deciding->name : "unscannable", v->reason);
        if (smfi_addheader(ctx, "X-Mailkeep-Quarantine", reason) == MI_FAILURE
            || smfi_quarantine(ctx, reason) == MI_FAILURE) {
            mk_log(MK_LOG_ERROR, qid, "cannot quarantine; tempfail");
            free(reason);
            return SMFIS_TEMPFAIL;
        }
        free(reason);
    }
    if (v->action == DLP_WARN && c->msg.sender && *c->msg.sender) {
        char *to = mk_notify_join(c->msg.rcpts, c->msg.nrcpts);
        struct dlp_notice notice;
        char *text;
        int rc;

        notice = (struct dlp_notice) {p->notify_from, c->msg.sender, to, v->reason, qid};
        text = dlp_notify_text(&notice);
        rc = mk_notify_send(p->notify_command, text);
        if (rc != 0)
            mk_log(MK_LOG_WARNING, qid, "warn: the notice to the sender could not be sent (%d)", rc);
        free(text);
        free(to);
    }
    return SMFIS_CONTINUE;
}

static sfsistat dlp_eom(SMFICTX *ctx)
{
    struct dlp_conn *c = smfi_getpriv(ctx);
    struct dlp_policy *p;
    struct mk_origin origin;
    struct mk_dir_user *sender_user = NULL, **users;
    struct dlp_party *parties;
    struct mk_scan_report *report;
    struct dlp_verdict verdict;
    const char *qid = mk_milter_queue_id(ctx), *sender;
    sfsistat rc = SMFIS_TEMPFAIL;

    if (c == NULL || c->msg.rcpts == NULL)
        return SMFIS_TEMPFAIL;
    p = dlp_policy_of(c);
    sender = c->msg.sender;
    origin = mk_milter_origin(c->gen, &c->client, c->msg.login);
    parties = mk_xcalloc(c->msg.nrcpts + 1, sizeof(*parties));
    users = mk_xcalloc(c->msg.nrcpts + 1, sizeof(*users));
    if (dlp_parties(c, &origin, parties, users) < 0
        || (sender && mk_addr_domain(sender)
            && mk_directory_domain(c->gen->dir, mk_addr_domain(sender)) == MK_DIR_FOUND
            && mk_directory_user(c->gen->dir, sender, &sender_user) == MK_DIR_TEMPFAIL)) {
        mk_milter_reply(ctx, "451", "4.3.0", "Directory temporarily unavailable; try again later");
        mk_log(MK_LOG_WARNING, qid, "tempfail: directory unavailable");
        goto out;
    }
    if ((report = dlp_scan(ctx, c)) == NULL) {
        mk_milter_reply(ctx, "451", "4.3.0", "Content scanner failure; try again later");
        mk_log(MK_LOG_ERROR, qid, "tempfail: the detection engine failed");
        goto out;
    }
    dlp_evaluate(p, report, sender_user, parties, c->msg.nrcpts, &verdict);
    if (verdict.action != DLP_PASS || verdict.unscannable) {
        struct dlp_incident incident = {time(NULL), qid, c->client.ip_text, sender, parties,
                                        c->msg.nrcpts, p, report, &verdict};
        char *json = dlp_incident_json(&incident);

        if (dlp_incident_append(p->incident_log, json) < 0) {
            mk_log(MK_LOG_ERROR, qid, "tempfail: cannot write incident log %s: %s",
                   p->incident_log, strerror(errno));
            mk_milter_reply(ctx, "451", "4.3.0", "Temporary local problem; try again later");
            free(json);
            mk_scan_report_free(report);
            goto out;
        }
        free(json);
        mk_log(MK_LOG_INFO, qid, "%s: from [%s]: %s%s: %s", dlp_action_name(verdict.action),
               c->client.ip_text, verdict.deciding ? "rule " : "",
               verdict.deciding ? verdict.deciding->name
               : verdict.unscannable && verdict.action == p->unscannable_action ? "unscannable"
               : "-", verdict.reason);
    }
    rc = dlp_apply(ctx, c, &verdict);
    mk_scan_report_free(report);
out:
    for (size_t i = 0; i < c->msg.nrcpts; i++)
        mk_dir_user_unref(users[i]);
    mk_dir_user_unref(sender_user);
    free(users);
    free(parties);
    dlp_message_reset(c);
    return rc;
}

static sfsistat dlp_abort(SMFICTX *ctx)
{
    struct dlp_conn *c = smfi_getpriv(ctx);

    if (c)
        dlp_message_reset(c);
    return SMFIS_CONTINUE;
}

static sfsistat dlp_close(SMFICTX *ctx)
{
    dlp_conn_free(smfi_getpriv(ctx));
    smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

static sfsistat dlp_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                              unsigned long f2, unsigned long f3, unsigned long *pf0,
                              unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    unsigned long need = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE;

    (void) ctx;
    (void) f2;
    (void) f3;
    if ((f0 & need) != need)
        return SMFIS_REJECT;
    *pf0 = need;
    *pf1 = f1 & (SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA);
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

static void *dlp_load(const struct mk_config *cfg, struct mk_directory *dir,
                      struct mk_milter_watch *watch, char **error)
{
    (void) dir;
    (void) watch;
    return dlp_policy_load(cfg, error);
}

static void dlp_unload(void *policy)
{
    dlp_policy_free(policy);
}

static struct smfiDesc dlp_desc = {
    .xxfi_name = "mailkeep-dlp",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE,
    .xxfi_connect = dlp_connect,
    .xxfi_envfrom = dlp_envfrom,
    .xxfi_envrcpt = dlp_envrcpt,
    .xxfi_header = dlp_header,
    .xxfi_eoh = dlp_eoh,
    .xxfi_body = dlp_body,
    .xxfi_eom = dlp_eom,
    .xxfi_abort = dlp_abort,
    .xxfi_close = dlp_close,
    .xxfi_negotiate = dlp_negotiate,
};

static const struct mk_milter_app dlp_app = {
    "mailkeep-dlp", "dlp", &dlp_desc, dlp_load, dlp_unload,
};

int main(int argc, char **argv)
{
    mk_mime_init();
    return mk_milter_main(&dlp_app, argc, argv);
}
