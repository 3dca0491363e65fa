/*
 * NAME
 *	mailkeep-av 8
 * SUMMARY
 *	antivirus milter with an embedded ClamAV engine
 * DESCRIPTION
 *	Each configuration generation (mk_milter) holds one compiled ClamAV
 *	engine. The shell watches the database directory and its files: a
 *	signature update builds a new generation, and so a new engine, in
 *	the background; scans in flight finish on the engine they started
 *	with. There is no moment where mail passes unscanned or is refused
 *	because of the swap.
 *
 *	Messages are kept in memory up to [av] memory_limit and beyond that
 *	in an unlinked temporary file; the whole message is scanned at end
 *	of message (ClamAV parses the MIME structure, archives and
 *	documents itself), at most max_concurrent_scans at once. The action
 *	for an infected message is the most severe one configured for the
 *	directions of its recipients; encrypted content and exceeded limits
 *	have their own actions, never a silent pass. A scan that fails makes
 *	the MTA tempfail. See mailkeep-av(8).
 */
#include "config.h"

#include <clamav.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "av_engine.h"
#include "av_replace.h"
#include "mk_log.h"
#include "mk_message.h"
#include "mk_milter.h"
#include "mk_notify.h"
#include "mk_util.h"

/* In rising severity: a message for several directions gets the most severe. */
enum av_action { AV_ACCEPT, AV_TAG, AV_REPLACE, AV_QUARANTINE, AV_REJECT, AV_DISCARD };

static const char *const av_action_names[] = {
    "accept", "tag", "replace", "quarantine", "reject", "discard",
};

enum av_notify_sender { AV_NOTIFY_NO, AV_NOTIFY_OUTBOUND, AV_NOTIFY_ALL };

struct av_policy {
    struct av_engine *engine;
    enum av_action direction_action[3];     /* by enum mk_direction */
    enum av_action encrypted_action, limits_action;
    size_t memory_limit;
    char *temp_dir;
    char *tag_header;
    long max_scans;
    char *notify_admin, *notify_from;
    char **notify_command;
    enum av_notify_sender notify_sender;
    bool notify_recipients;
};

struct av_conn {
    struct mk_milter_gen *gen;
    struct mk_milter_client client;
    struct mk_message msg;              /* in memory, or an unlinked file past memory_limit */
    int own_headers;                    /* tag headers it arrived with */
};

static struct av_policy *av_policy_of(const struct av_conn *c)
{
    return c->gen->policy;
}

static int av_action_parse(const char *name, enum av_action *a)
{
    for (size_t i = 0; i < MK_ARRAY_LEN(av_action_names); i++)
        if (strcasecmp(name, av_action_names[i]) == 0) {
            *a = (enum av_action) i;
            return 0;
        }
    return -1;
}

static void av_message_reset(struct av_conn *c)
{
    mk_message_reset(&c->msg);
    c->own_headers = 0;
}

static void av_conn_free(struct av_conn *c)
{
    if (c == NULL)
        return;
    av_message_reset(c);
    mk_milter_client_free(&c->client);
    mk_milter_release(c->gen);
    free(c);
}

static sfsistat av_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
    struct av_conn *c = smfi_getpriv(ctx);
    (void) hostname;
    av_conn_free(c);
    c = mk_xcalloc(1, sizeof(*c));
    c->msg.fd = -1;
    c->gen = mk_milter_acquire();
    smfi_setpriv(ctx, c);
    mk_milter_client_init(&c->client, ctx, hostaddr);
    return SMFIS_CONTINUE;
}

static sfsistat av_envfrom(SMFICTX *ctx, char **argv)
{
    struct av_conn *c = smfi_getpriv(ctx);
    struct av_policy *p;

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    p = av_policy_of(c);
    av_message_reset(c);
    mk_message_start(&c->msg, argv[0], mk_milter_macro(ctx, "{auth_authen}"), p->memory_limit,
                     p->temp_dir, 0);
    return SMFIS_CONTINUE;
}

static sfsistat av_envrcpt(SMFICTX *ctx, char **argv)
{
    struct av_conn *c = smfi_getpriv(ctx);

    if (c == NULL || c->msg.rcpts == NULL)
        return SMFIS_TEMPFAIL;
    mk_message_add_rcpt(&c->msg, argv[0]);
    return SMFIS_CONTINUE;
}

static sfsistat av_header(SMFICTX *ctx, char *name, char *value)
{
    struct av_conn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    if (strcasecmp(name, av_policy_of(c)->tag_header) == 0)
        c->own_headers++;
    mk_message_header(&c->msg, name, value);
    return SMFIS_CONTINUE;
}

static sfsistat av_eoh(SMFICTX *ctx)
{
    struct av_conn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    mk_message_append(&c->msg, "\r\n", 2);
    return SMFIS_CONTINUE;
}

static sfsistat av_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct av_conn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    mk_message_append(&c->msg, (const char *) chunk, len);
    return SMFIS_CONTINUE;
}

static enum av_result av_scan(SMFICTX *ctx, struct av_conn *c, const char **virus)
{
    struct av_policy *p = av_policy_of(c);
    enum av_result r;

    mk_milter_scan_begin(ctx, p->max_scans);
    if (c->msg.spilled)
        r = av_engine_scan_fd(p->engine, c->msg.fd, virus);
    else
        r = av_engine_scan_memory(p->engine, c->msg.buf ? c->msg.buf : "", c->msg.len, virus);
    mk_milter_scan_end();
    return r;
}

static void av_notify_one(const struct av_policy *p, const char *qid, const char *to,
                          const char *subject, const char *body)
{
    char *text = mk_notify_compose(p->notify_from, to, subject, body);
    int rc = mk_notify_send(p->notify_command, text);

    if (rc != 0)
        mk_log(MK_LOG_WARNING, qid, "the notice to %s could not be sent (%d)", to, rc);
    else
        mk_log(MK_LOG_INFO, qid, "notice sent to %s", to);
    free(text);
}

/* The most severe action among the directions of the recipients. */
static int av_infected_action(struct av_conn *c, enum av_action *action)
{
    struct av_policy *p = av_policy_of(c);
    struct mk_origin origin = mk_milter_origin(c->gen, &c->client, c->msg.login);

    *action = AV_ACCEPT;
    for (size_t i = 0; i < c->msg.nrcpts; i++) {
        enum mk_direction d;
        enum av_action a;

        if (mk_milter_direction(c->gen, &origin, c->msg.rcpts[i], &d) < 0)
            return -1;
        a = p->direction_action[d];
        if (a > *action)
            *action = a;
    }
    return 0;
}

/*
 * Notices: the administrator hears of every verdict that is acted on; the
 * sender (by default only a local, trusted one: an outside sender's
 * address is too often forged) of a message that did not arrive whole;
 * the recipients of one they will not get. A rejected message's sender
 * has the SMTP reply already.
 */
static void av_notify(struct av_conn *c, const char *qid, enum av_action action,
                      const char *what)
{
    struct av_policy *p = av_policy_of(c);
    const char *sender = c->msg.sender && *c->msg.sender ? c->msg.sender : NULL;
    const char *fate = action == AV_TAG ? "delivered with a warning header"
                       : action == AV_REPLACE ? "delivered with the infected parts removed"
                       : action == AV_QUARANTINE ? "held in quarantine"
                       : action == AV_REJECT ? "refused" : "discarded";
    const char *fate_zh = action == AV_TAG ? "已加註警告標頭後投遞"
                          : action == AV_REPLACE ? "已移除受感染的部分後投遞"
                          : action == AV_QUARANTINE ? "已被隔離"
                          : action == AV_REJECT ? "已被拒收" : "已被丟棄";
    char *rcpts = mk_notify_join(c->msg.rcpts, c->msg.nrcpts);
    char *body = mk_xasprintf(
        "A message from %s to %s\n"
        "was %s by the mail system's virus scanner:\n"
        "\n"
        "    %s\n"
        "\n"
        "(reference: %s)\n"
        "\n"
        "一封由 %s 寄給 %s 的郵件經病毒掃描後%s。\n"
        "原因：%s\n",
        sender ? sender : "<>", rcpts, fate, what, qid, sender ? sender : "<>", rcpts, fate_zh,
        what);
    bool unscannable = strncmp(what, "unscannable:", 12) == 0;
    struct mk_origin origin;
    bool to_sender;

    if (action == AV_ACCEPT)
        goto out;
    if (*p->notify_admin)
        av_notify_one(p, qid, p->notify_admin,
                      unscannable ? "Message could not be scanned for viruses" : "Virus alert",
                      body);
    origin = mk_milter_origin(c->gen, &c->client, c->msg.login);
    to_sender = sender && action != AV_TAG && action != AV_REJECT
                && (p->notify_sender == AV_NOTIFY_ALL
                    || (p->notify_sender == AV_NOTIFY_OUTBOUND && mk_origin_trusted(&origin)));
    if (to_sender)
        av_notify_one(p, qid, sender,
                      unscannable ? "Your message could not be scanned for viruses"
                                  : "Your message contained a virus", body);
    if (p->notify_recipients && action != AV_TAG && action != AV_REPLACE)
        for (size_t i = 0; i < c->msg.nrcpts; i++)
            av_notify_one(p, qid, c->msg.rcpts[i],
                          unscannable ? "A message to you could not be scanned for viruses"
                                      : "A message to you contained a virus", body);
out:
    free(body);
    free(rcpts);
}

/* The message in memory, for the replace action: mapped when it was spilled. */
static int av_try_replace(SMFICTX *ctx, struct av_conn *c, const char *qid, char **what)
{
    struct av_policy *p = av_policy_of(c);
    struct av_replaced out;
    const char *data = c->msg.buf ? c->msg.buf : "";
    void *map = NULL;
    int rc;

    if (c->msg.spilled) {
        if (c->msg.len == 0
            || (map = mmap(NULL, c->msg.len, PROT_READ, MAP_PRIVATE, c->msg.fd, 0)) == MAP_FAILED)
            return -1;
        data = map;
    }
    mk_milter_scan_begin(ctx, p->max_scans);
    rc = av_replace(p->engine, data, c->msg.len, &out);
    mk_milter_scan_end();
    if (map)
        munmap(map, c->msg.len);
    if (rc != 1)
        return rc;
    if (smfi_replacebody(ctx, (unsigned char *) out.body, (int) out.body_len) == MI_FAILURE) {
        av_replaced_free(&out);
        return -1;
    }
    mk_log(MK_LOG_INFO, qid, "replace: %zu part(s) removed: %s", out.parts, out.what);
    free(*what);
    *what = mk_xasprintf("removed: %s", out.what);
    av_replaced_free(&out);
    return 1;
}

static sfsistat av_eom(SMFICTX *ctx)
{
    struct av_conn *c = smfi_getpriv(ctx);
    const char *qid = mk_milter_queue_id(ctx), *virus = NULL;
    struct av_policy *p;
    enum av_action action;
    enum av_result r;
    char *what;
    sfsistat rc = SMFIS_CONTINUE;

    if (c == NULL || c->msg.rcpts == NULL)
        return SMFIS_TEMPFAIL;
    p = av_policy_of(c);
    if (c->msg.failed) {
        mk_log(MK_LOG_ERROR, qid, "tempfail: the message could not be stored for scanning");
        mk_milter_reply(ctx, "451", "4.3.0", "Temporary local problem; try again later");
        av_message_reset(c);
        return SMFIS_TEMPFAIL;
    }
    r = av_scan(ctx, c, &virus);
    /* Only we say what we found: drop tag headers the message arrived with. */
    if (r != AV_ERROR)
        for (int i = c->own_headers; i > 0; i--)
            smfi_chgheader(ctx, p->tag_header, i, NULL);
    switch (r) {
    case AV_CLEAN:
        av_message_reset(c);
        return SMFIS_CONTINUE;
    case AV_ERROR:
        mk_log(MK_LOG_ERROR, qid, "tempfail: scan failed: %s", virus);
        mk_milter_reply(ctx, "451", "4.3.0", "Virus scanner failure; try again later");
        av_message_reset(c);
        return SMFIS_TEMPFAIL;
    case AV_ENCRYPTED:
        action = p->encrypted_action;
        break;
    case AV_LIMITS:
        action = p->limits_action;
        break;
    case AV_INFECTED:
    default:
        if (av_infected_action(c, &action) < 0) {
            mk_milter_reply(ctx, "451", "4.3.0", "Directory temporarily unavailable; try again later");
            av_message_reset(c);
            return SMFIS_TEMPFAIL;
        }
        break;
    }
    mk_log(MK_LOG_INFO, qid, "%s: from [%s]: %s", av_action_names[action], c->client.ip_text,
           virus);
    what = mk_xasprintf("%s %s", r == AV_INFECTED ? "infected:" : "unscannable:", virus);
    if (action == AV_REPLACE) {
        switch (av_try_replace(ctx, c, qid, &what)) {
        case 1:
            break;
        case 0:
            mk_log(MK_LOG_INFO, qid, "quarantine: %s cannot be cut out of the message", virus);
            action = AV_QUARANTINE;
            break;
        default:
            mk_log(MK_LOG_ERROR, qid, "tempfail: the infected part could not be replaced");
            mk_milter_reply(ctx, "451", "4.3.0", "Virus scanner failure; try again later");
            free(what);
            av_message_reset(c);
            return SMFIS_TEMPFAIL;
        }
    }
    switch (action) {
    case AV_ACCEPT:
        break;
    case AV_TAG:
    case AV_REPLACE:
        if (smfi_addheader(ctx, p->tag_header, what) == MI_FAILURE)
            rc = SMFIS_TEMPFAIL;
        break;
    case AV_QUARANTINE: {
        char *reason = mk_xasprintf("mailkeep-av: %s", what);

        if (smfi_addheader(ctx, "X-Mailkeep-Quarantine", reason) == MI_FAILURE
            || smfi_quarantine(ctx, reason) == MI_FAILURE)
            rc = SMFIS_TEMPFAIL;
        free(reason);
        break;
    }
    case AV_REJECT:
        mk_milter_reply(ctx, "550", "5.7.1", "Message refused: %s %s",
                        r == AV_INFECTED ? "virus found:" : "cannot be scanned:", virus);
        rc = SMFIS_REJECT;
        break;
    case AV_DISCARD:
        rc = SMFIS_DISCARD;
        break;
    }
    if (rc != SMFIS_TEMPFAIL)
        av_notify(c, qid, action, what);
    free(what);
    av_message_reset(c);
    return rc;
}

static sfsistat av_abort(SMFICTX *ctx)
{
    struct av_conn *c = smfi_getpriv(ctx);

    if (c)
        av_message_reset(c);
    return SMFIS_CONTINUE;
}

static sfsistat av_close(SMFICTX *ctx)
{
    av_conn_free(smfi_getpriv(ctx));
    smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

static sfsistat av_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    unsigned long need = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_QUARANTINE;

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

static void av_unload(void *policy)
{
    struct av_policy *p = policy;

    if (p == NULL)
        return;
    av_engine_free(p->engine);
    free(p->temp_dir);
    free(p->tag_header);
    free(p->notify_admin);
    free(p->notify_from);
    mk_str_array_free(p->notify_command);
    free(p);
}

static void *av_load(const struct mk_config *cfg, struct mk_directory *dir,
                     struct mk_milter_watch *watch, char **error)
{
    static const char *const keys[3] = {"inbound_action", "outbound_action", "internal_action"};
    struct av_policy *p = mk_xcalloc(1, sizeof(*p));
    char **files = NULL;

    (void) dir;
    p->engine = av_engine_load(cfg, &files, error);
    /* Watch the databases even when they failed to load: a fix is a change. */
    for (char **f = files; f && *f; f++)
        if (f == files)
            mk_milter_watch_dir(watch, *f, av_engine_db_suffixes);
        else
            mk_milter_watch(watch, *f);
    mk_str_array_free(files);
    if (p->engine == NULL) {
        av_unload(p);
        return NULL;
    }
    for (int i = 0; i < 3; i++)
        (void) av_action_parse(mk_config_str(cfg, "av", keys[i]), &p->direction_action[i]);
    (void) av_action_parse(mk_config_str(cfg, "av", "encrypted_action"), &p->encrypted_action);
    (void) av_action_parse(mk_config_str(cfg, "av", "limits_action"), &p->limits_action);
    p->memory_limit = (size_t) mk_config_num(cfg, "av", "memory_limit");
    p->temp_dir = mk_xstrdup(mk_config_str(cfg, "av", "temp_dir"));
    p->tag_header = mk_xstrdup(mk_config_str(cfg, "av", "tag_header"));
    p->max_scans = (long) mk_config_num(cfg, "av", "max_concurrent_scans");
    p->notify_admin = mk_xstrdup(mk_config_str(cfg, "av", "notify_admin"));
    p->notify_from = mk_xstrdup(mk_config_str(cfg, "av", "notify_from"));
    p->notify_command = mk_str_split(mk_config_str(cfg, "av", "notify_command"), " \t", NULL);
    p->notify_sender = strcmp(mk_config_str(cfg, "av", "notify_sender"), "all") == 0
                       ? AV_NOTIFY_ALL
                       : strcmp(mk_config_str(cfg, "av", "notify_sender"), "outbound") == 0
                       ? AV_NOTIFY_OUTBOUND : AV_NOTIFY_NO;
    p->notify_recipients = mk_config_bool(cfg, "av", "notify_recipients");
    mk_log(MK_LOG_INFO, NULL, "ClamAV engine loaded: %u signatures", av_engine_signatures(p->engine));
    return p;
}

static struct smfiDesc av_desc = {
    .xxfi_name = "mailkeep-av",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_QUARANTINE,
    .xxfi_connect = av_connect,
    .xxfi_envfrom = av_envfrom,
    .xxfi_envrcpt = av_envrcpt,
    .xxfi_header = av_header,
    .xxfi_eoh = av_eoh,
    .xxfi_body = av_body,
    .xxfi_eom = av_eom,
    .xxfi_abort = av_abort,
    .xxfi_close = av_close,
    .xxfi_negotiate = av_negotiate,
};

static const struct mk_milter_app av_app = {
    "mailkeep-av", "av", &av_desc, av_load, av_unload,
};

int main(int argc, char **argv)
{
    cl_error_t rc;

    if ((rc = cl_init(CL_INIT_DEFAULT)) != CL_SUCCESS) {
        mk_log(MK_LOG_ERROR, NULL, "cannot initialise libclamav: %s", cl_strerror(rc));
        return 70;
    }
    av_engine_init();
    av_replace_init();
    return mk_milter_main(&av_app, argc, argv);
}
