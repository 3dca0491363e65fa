/*
 * NAME
 *	mailkeep-journal 8
 * SUMMARY
 *	capture every message and its envelope for the compliance archive
 * DESCRIPTION
 *	The last milter in the list: it writes each message, as the MTA
 *	passes it, straight into a file in the journal spool while it
 *	arrives, and at the end of the message adds the envelope (sender,
 *	every recipient with its direction, BCC included, client, SASL
 *	login, queue ID, time), fsyncs the file, moves it into the spool's
 *	new/ directory and fsyncs that. Only then does it let the MTA accept
 *	the message: what the MTA accepted is in the spool. When it cannot
 *	write ([journal] on_failure = tempfail, the default), or the spool's
 *	file system has less than min_free left, the MTA is told to try
 *	again later, so that no mail passes unarchived. `mailkeep archive
 *	ingest` moves the spool into the archive. See mailkeep-journal(8).
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>
#include <time.h>

#include "ar_spool.h"
#include "mk_addr.h"
#include "mk_log.h"
#include "mk_milter.h"
#include "mk_util.h"

struct jr_policy {
    char *spool_dir;
    bool tempfail;                      /* on_failure = tempfail */
    unsigned long long min_free;
};

struct jr_conn {
    struct mk_milter_gen *gen;
    struct mk_milter_client client;
    char *client_name, *helo;
    bool no_header_reply, no_body_reply, leading_space, connected;
    bool in_message;
    struct ar_spool_file file;
    struct ar_envelope env;
    char *open_error;                   /* the spool file could not be created */
};

static struct jr_policy *jr_policy_of(const struct jr_conn *c)
{
    return c->gen->policy;
}

static void jr_message_reset(struct jr_conn *c)
{
    if (c->in_message && c->file.fd >= 0)
        ar_spool_abort(&c->file);
    memset(&c->file, 0, sizeof(c->file));
    c->file.fd = -1;
    ar_envelope_free(&c->env);
    free(c->open_error);
    c->open_error = NULL;
    c->in_message = false;
}

static void jr_conn_free(struct jr_conn *c)
{
    if (c == NULL)
        return;
    jr_message_reset(c);
    mk_milter_client_free(&c->client);
    free(c->client_name);
    free(c->helo);
    mk_milter_release(c->gen);
    free(c);
}

/* The MTA does not wait for an answer where that was negotiated. */
static sfsistat jr_ok(bool no_reply)
{
    return no_reply ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

/* The tempfail that on_failure asks for, or acceptance without archiving. */
static sfsistat jr_failed(SMFICTX *ctx, struct jr_conn *c, const char *qid, const char *why)
{
    if (jr_policy_of(c)->tempfail) {
        mk_log(MK_LOG_ERROR, qid, "tempfail: %s", why);
        mk_milter_reply(ctx, "451", "4.3.0", "Message could not be archived; try again later");
        return SMFIS_TEMPFAIL;
    }
    mk_log(MK_LOG_ERROR, qid, "accepted NOT ARCHIVED (on_failure = accept): %s", why);
    return SMFIS_CONTINUE;
}

static struct jr_conn *jr_conn_new(SMFICTX *ctx)
{
    struct jr_conn *c = mk_xcalloc(1, sizeof(*c));

    c->file.fd = -1;
    c->gen = mk_milter_acquire();
    smfi_setpriv(ctx, c);
    return c;
}

static sfsistat jr_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
    struct jr_conn *c = smfi_getpriv(ctx);

    /* A connect without negotiation, or a second one: start afresh. */
    if (c == NULL || c->connected) {
        jr_conn_free(c);
        c = jr_conn_new(ctx);
    }
    c->connected = true;
    c->client_name = hostname && *hostname ? mk_xstrdup(hostname) : NULL;
    mk_milter_client_init(&c->client, ctx, hostaddr);
    return SMFIS_CONTINUE;
}

static sfsistat jr_helo(SMFICTX *ctx, char *name)
{
    struct jr_conn *c = smfi_getpriv(ctx);

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    free(c->helo);
    c->helo = name && *name ? mk_xstrdup(name) : NULL;
    return SMFIS_CONTINUE;
}

static bool jr_space_left(const struct jr_policy *p)
{
    struct statvfs vfs;

    if (p->min_free == 0 || statvfs(p->spool_dir, &vfs) < 0)
        return true;                    /* a real write problem shows at the write */
    return (unsigned long long) vfs.f_bavail * vfs.f_frsize >= p->min_free;
}

static sfsistat jr_envfrom(SMFICTX *ctx, char **argv)
{
    struct jr_conn *c = smfi_getpriv(ctx);
    struct jr_policy *p;
    char *sender, *error = NULL;
    const char *login;

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    p = jr_policy_of(c);
    jr_message_reset(c);
    if (!jr_space_left(p) && p->tempfail) {
        mk_log(MK_LOG_ERROR, mk_milter_queue_id(ctx),
               "tempfail: less than min_free left in %s", p->spool_dir);
        mk_milter_reply(ctx, "452", "4.3.1", "Insufficient system storage; try again later");
        return SMFIS_TEMPFAIL;
    }
    c->in_message = true;
    sender = mk_addr_normalize(argv[0]);
    c->env.sender = sender ? sender : mk_xstrdup(argv[0]);
    if ((login = mk_milter_macro(ctx, "{auth_authen}")) != NULL)
        c->env.login = mk_xstrdup(login);
    if (ar_spool_begin(&c->file, p->spool_dir, &error) < 0)
        c->open_error = error;          /* told at the end of the message */
    return SMFIS_CONTINUE;
}

static sfsistat jr_envrcpt(SMFICTX *ctx, char **argv)
{
    struct jr_conn *c = smfi_getpriv(ctx);
    char *rcpt;

    if (c == NULL || !c->in_message)
        return SMFIS_TEMPFAIL;
    rcpt = mk_addr_normalize(argv[0]);
    /* the direction is decided at the end, when the origin is complete */
    ar_envelope_add_rcpt(&c->env, rcpt ? rcpt : argv[0], "unknown");
    free(rcpt);
    return SMFIS_CONTINUE;
}

static sfsistat jr_header(SMFICTX *ctx, char *name, char *value)
{
    struct jr_conn *c = smfi_getpriv(ctx);

    if (c == NULL || !c->in_message)
        return SMFIS_TEMPFAIL;
    /* With SMFIP_HDR_LEADSPC the value keeps the space after the colon:
     * the header is rebuilt as it was received, folding included. */
    ar_spool_write(&c->file, name, strlen(name));
    ar_spool_write(&c->file, ":", 1);
    if (!c->leading_space)              /* LEADSPC was not offered: the usual one space */
        ar_spool_write(&c->file, " ", 1);
    for (const char *v = value, *nl; *v; v = nl + 1) {
        nl = strchr(v, '\n');
        if (nl == NULL) {
            ar_spool_write(&c->file, v, strlen(v));
            break;
        }
        ar_spool_write(&c->file, v, (size_t) (nl - v - (nl > v && nl[-1] == '\r')));
        ar_spool_write(&c->file, "\r\n", 2);
    }
    ar_spool_write(&c->file, "\r\n", 2);
    return jr_ok(c->no_header_reply);
}

static sfsistat jr_eoh(SMFICTX *ctx)
{
    struct jr_conn *c = smfi_getpriv(ctx);

    if (c == NULL || !c->in_message)
        return SMFIS_TEMPFAIL;
    ar_spool_write(&c->file, "\r\n", 2);
    return SMFIS_CONTINUE;
}

static sfsistat jr_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct jr_conn *c = smfi_getpriv(ctx);

    if (c == NULL || !c->in_message)
        return SMFIS_TEMPFAIL;
    ar_spool_write(&c->file, chunk, len);
    return jr_ok(c->no_body_reply);
}

/* Each recipient's direction; "unknown" where the directory cannot say. */
static void jr_directions(struct jr_conn *c)
{
    struct mk_origin origin = mk_milter_origin(c->gen, &c->client, c->env.login);

    for (size_t i = 0; i < c->env.nrcpts; i++) {
        enum mk_direction d;

        free(c->env.directions[i]);
        c->env.directions[i] = mk_xstrdup(mk_milter_direction(c->gen, &origin, c->env.rcpts[i],
                                                              &d) < 0 ? "unknown"
                                          : mk_direction_name(d));
    }
}

static sfsistat jr_eom(SMFICTX *ctx)
{
    struct jr_conn *c = smfi_getpriv(ctx);
    const char *qid = mk_milter_queue_id(ctx), *daemon;
    char *error = NULL, *name;
    sfsistat rc;

    if (c == NULL || !c->in_message)
        return SMFIS_TEMPFAIL;
    if (c->open_error) {
        rc = jr_failed(ctx, c, qid, c->open_error);
        jr_message_reset(c);
        return rc;
    }
    c->env.time = (int64_t) time(NULL);
    c->env.queue_id = mk_xstrdup(qid);
    c->env.client = mk_xstrdup(c->client.ip_text);
    c->env.client_name = c->client_name ? mk_xstrdup(c->client_name) : NULL;
    c->env.helo = c->helo ? mk_xstrdup(c->helo) : NULL;
    if ((daemon = c->client.daemon_name) != NULL)
        c->env.daemon = mk_xstrdup(daemon);
    c->env.source = mk_xstrdup("journal");
    jr_directions(c);
    name = mk_xstrdup(c->file.name);
    if (ar_spool_commit(&c->file, &c->env, &error) < 0) {
        c->in_message = false;          /* commit removed the file */
        rc = jr_failed(ctx, c, qid, error);
        free(error);
    } else {
        mk_log(MK_LOG_DEBUG, qid, "journaled as %s: %zu recipient(s)", name, c->env.nrcpts);
        c->in_message = false;
        rc = SMFIS_CONTINUE;
    }
    free(name);
    jr_message_reset(c);
    return rc;
}

static sfsistat jr_abort(SMFICTX *ctx)
{
    struct jr_conn *c = smfi_getpriv(ctx);

    if (c)
        jr_message_reset(c);
    return SMFIS_CONTINUE;
}

static sfsistat jr_close(SMFICTX *ctx)
{
    jr_conn_free(smfi_getpriv(ctx));
    smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

static sfsistat jr_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3)
{
    struct jr_conn *c;
    /* The headers exactly as received need the space after the colon kept
     * (LEADSPC); headers and body need no answer, which saves a round trip
     * per header and per body chunk. */
    unsigned long wanted = SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_HDR_LEADSPC | SMFIP_NR_HDR
        | SMFIP_NR_BODY;

    (void) f0;
    (void) f2;
    (void) f3;
    jr_conn_free(smfi_getpriv(ctx));
    c = jr_conn_new(ctx);
    *pf0 = 0;
    *pf1 = f1 & wanted;
    *pf2 = 0;
    *pf3 = 0;
    c->leading_space = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
    c->no_header_reply = (*pf1 & SMFIP_NR_HDR) != 0;
    c->no_body_reply = (*pf1 & SMFIP_NR_BODY) != 0;
    return SMFIS_CONTINUE;
}

static void jr_unload(void *policy)
{
    struct jr_policy *p = policy;

    if (p == NULL)
        return;
    free(p->spool_dir);
    free(p);
}

static void *jr_load(const struct mk_config *cfg, struct mk_directory *dir,
                     struct mk_milter_watch *watch, char **error)
{
    struct jr_policy *p = mk_xcalloc(1, sizeof(*p));

    (void) dir;
    (void) watch;
    p->spool_dir = mk_xstrdup(mk_config_str(cfg, "journal", "spool_dir"));
    p->tempfail = strcmp(mk_config_str(cfg, "journal", "on_failure"), "tempfail") == 0;
    p->min_free = (unsigned long long) mk_config_num(cfg, "journal", "min_free");
    if (ar_spool_prepare(p->spool_dir, error) < 0) {
        jr_unload(p);
        return NULL;
    }
    return p;
}

static struct smfiDesc jr_desc = {
    .xxfi_name = "mailkeep-journal",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = 0,
    .xxfi_connect = jr_connect,
    .xxfi_helo = jr_helo,
    .xxfi_envfrom = jr_envfrom,
    .xxfi_envrcpt = jr_envrcpt,
    .xxfi_header = jr_header,
    .xxfi_eoh = jr_eoh,
    .xxfi_body = jr_body,
    .xxfi_eom = jr_eom,
    .xxfi_abort = jr_abort,
    .xxfi_close = jr_close,
    .xxfi_negotiate = jr_negotiate,
};

static const struct mk_milter_app jr_app = {
    "mailkeep-journal", "journal", &jr_desc, jr_load, jr_unload,
};

int main(int argc, char **argv)
{
    return mk_milter_main(&jr_app, argc, argv);
}
