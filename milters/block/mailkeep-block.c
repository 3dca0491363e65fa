/*
 * NAME
 *	mailkeep-block 8
 * SUMMARY
 *	gateway sender blocking milter
 * DESCRIPTION
 *	The milter shell (mk_milter) runs this daemon; block_policy holds
 *	the rules. This file only maps milter callbacks to policy checks and
 *	verdicts to SMTP replies, and logs each refusal once with the rule
 *	that fired. See mailkeep-block(8).
 *
 *	Per-connection state hangs on the milter context (smfi_setpriv) and
 *	holds a reference to the configuration generation the connection
 *	started with; rate counters and bans live in one table shared by all
 *	connections and kept across reloads.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "block_policy.h"
#include "mk_log.h"
#include "mk_milter.h"
#include "mk_util.h"

#define BLOCK_MAX_TAGGED 1000

struct block_conn {
    struct mk_milter_gen *gen;
    struct block_client client;
    struct block_decision refused;      /* a refusal at connect, given later */
    char *sender;                       /* normalized; per message */
    char **tagged;                      /* recipients whose Junk gets the message */
    size_t ntagged;
    int incoming_tags;                  /* tag headers the message arrived with */
    bool connected;                     /* the connect callback has run */
    bool no_header_reply;               /* SMFIP_NR_HDR was negotiated */
};

static struct mk_rate *block_state;

static struct block_policy *block_policy_of(const struct block_conn *c)
{
    return c->gen->policy;
}

static void block_message_reset(struct block_conn *c)
{
    free(c->sender);
    c->sender = NULL;
    for (size_t i = 0; i < c->ntagged; i++)
        free(c->tagged[i]);
    free(c->tagged);
    c->tagged = NULL;
    c->ntagged = 0;
    c->incoming_tags = 0;
}

static struct block_conn *block_conn_new(SMFICTX *ctx)
{
    struct block_conn *c = mk_xcalloc(1, sizeof(*c));

    c->gen = mk_milter_acquire();
    smfi_setpriv(ctx, c);
    return c;
}

static void block_conn_free(struct block_conn *c)
{
    if (c == NULL)
        return;
    block_message_reset(c);
    mk_milter_release(c->gen);
    free(c);
}

/* Log a refusal and turn a decision into a milter answer. */
static sfsistat block_act(SMFICTX *ctx, const struct block_conn *c,
                          const struct block_decision *d, const char *stage)
{
    const char *what;

    switch (d->verdict) {
    case BLOCK_PASS:
    case BLOCK_TAG:
        return SMFIS_CONTINUE;
    case BLOCK_REJECT:
        what = "reject";
        break;
    case BLOCK_DISCONNECT:
        what = "disconnect";
        break;
    case BLOCK_TEMPFAIL:
    default:
        what = "tempfail";
        break;
    }
    if (d->rule && d->rule->line > 0)
        mk_log(MK_LOG_INFO, mk_milter_queue_id(ctx), "%s: %s from [%s]: %s (%s:%d): %s %s",
               what, stage, c->client.ip_text, d->check, d->rule->source, d->rule->line,
               d->rcode, d->xcode);
    else
        mk_log(MK_LOG_INFO, mk_milter_queue_id(ctx), "%s: %s from [%s]: %s: %s %s",
               what, stage, c->client.ip_text, d->check, d->rcode, d->xcode);
    if (mk_milter_reply(ctx, d->rcode, d->xcode, "%s", d->text) == MI_FAILURE)
        mk_log(MK_LOG_WARNING, mk_milter_queue_id(ctx), "cannot set reply text");
    return d->verdict == BLOCK_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
}

static sfsistat block_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
    struct block_conn *c = smfi_getpriv(ctx);
    struct block_decision d;
    struct mk_ip ip;
    bool have_ip;

    (void) hostname;
    /* A connect without negotiation, or a second one: start afresh. */
    if (c == NULL || c->connected) {
        block_conn_free(c);
        c = block_conn_new(ctx);
    }
    c->connected = true;
    have_ip = mk_ip_from_sockaddr(hostaddr, &ip) == 0;
    if (!have_ip) {
        const char *addr = mk_milter_macro(ctx, "{client_addr}");

        have_ip = addr && mk_ip_parse(addr, &ip) == 0;
    }
    block_client_init(&c->client, block_policy_of(c), c->gen->origin, have_ip ? &ip : NULL,
                      mk_milter_macro(ctx, "{daemon_name}"));
    block_check_client(block_policy_of(c), block_state, &c->client, time(NULL), &d);
    if (d.verdict != BLOCK_PASS && block_policy_of(c)->delay_client_reject) {
        c->refused = d;
        return SMFIS_CONTINUE;
    }
    return block_act(ctx, c, &d, "CONNECT");
}

/* With delay_client_reject, a client refused at connect is told why at each command. */
static sfsistat block_refused_later(SMFICTX *ctx, const struct block_conn *c, const char *stage)
{
    return c->refused.verdict != BLOCK_PASS ? block_act(ctx, c, &c->refused, stage) : SMFIS_CONTINUE;
}

static sfsistat block_helo(SMFICTX *ctx, char *name)
{
    struct block_conn *c = smfi_getpriv(ctx);

    (void) name;
    return c ? block_refused_later(ctx, c, "HELO") : SMFIS_TEMPFAIL;
}

static sfsistat block_envfrom(SMFICTX *ctx, char **argv)
{
    struct block_conn *c = smfi_getpriv(ctx);
    struct block_decision d;

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    if (c->refused.verdict != BLOCK_PASS)
        return block_refused_later(ctx, c, "MAIL");
    block_message_reset(c);
    if (c->client.login[0] == '\0')
        block_client_authenticated(&c->client, block_policy_of(c),
                                   mk_milter_macro(ctx, "{auth_authen}"));
    if ((c->sender = mk_addr_normalize(argv[0])) == NULL) {
        mk_milter_reply(ctx, "553", "5.1.7", "Malformed sender address");
        mk_log(MK_LOG_INFO, mk_milter_queue_id(ctx), "reject: MAIL from [%s]: malformed sender address",
               c->client.ip_text);
        return SMFIS_REJECT;
    }
    block_check_sender(block_policy_of(c), block_state, &c->client, c->sender, time(NULL), &d);
    return block_act(ctx, c, &d, "MAIL");
}

static sfsistat block_envrcpt(SMFICTX *ctx, char **argv)
{
    struct block_conn *c = smfi_getpriv(ctx);
    struct block_decision d;
    char *rcpt;
    sfsistat rc;

    if (c == NULL || c->sender == NULL)
        return SMFIS_TEMPFAIL;
    if (c->refused.verdict != BLOCK_PASS)
        return block_refused_later(ctx, c, "RCPT");
    if ((rcpt = mk_addr_normalize(argv[0])) == NULL) {
        mk_milter_reply(ctx, "553", "5.1.3", "Malformed recipient address");
        return SMFIS_REJECT;
    }
    block_check_recipient(block_policy_of(c), block_state, c->gen->dir, &c->client, c->sender,
                          rcpt, time(NULL), &d);
    if (d.verdict == BLOCK_TAG && c->ntagged < BLOCK_MAX_TAGGED) {
        bool seen = false;

        for (size_t i = 0; i < c->ntagged; i++)
            seen |= strcmp(c->tagged[i], rcpt) == 0;
        if (!seen) {
            c->tagged = mk_xrealloc(c->tagged, (c->ntagged + 1) * sizeof(char *));
            c->tagged[c->ntagged++] = mk_xstrdup(rcpt);
        }
    }
    rc = block_act(ctx, c, &d, "RCPT");
    free(rcpt);
    return rc;
}

static sfsistat block_header(SMFICTX *ctx, char *name, char *value)
{
    struct block_conn *c = smfi_getpriv(ctx);

    (void) value;
    if (c && strcasecmp(name, block_policy_of(c)->tag_header) == 0)
        c->incoming_tags++;
    /* Negotiated SMFIP_NR_HDR: the MTA does not wait for an answer. */
    return c && c->no_header_reply ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat block_eom(SMFICTX *ctx)
{
    struct block_conn *c = smfi_getpriv(ctx);
    const char *header;

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    header = block_policy_of(c)->tag_header;
    /* Only we say whose Junk a message goes to: drop what the sender wrote. */
    for (int i = c->incoming_tags; i > 0; i--)
        if (smfi_chgheader(ctx, (char *) header, i, NULL) == MI_FAILURE)
            return SMFIS_TEMPFAIL;
    for (size_t i = 0; i < c->ntagged; i++)
        if (smfi_addheader(ctx, (char *) header, c->tagged[i]) == MI_FAILURE)
            return SMFIS_TEMPFAIL;
    if (c->ntagged)
        mk_log(MK_LOG_INFO, mk_milter_queue_id(ctx), "tag: from [%s]: personal_list: %zu recipient%s",
               c->client.ip_text, c->ntagged, c->ntagged == 1 ? "" : "s");
    block_message_reset(c);
    return SMFIS_CONTINUE;
}

static sfsistat block_abort(SMFICTX *ctx)
{
    struct block_conn *c = smfi_getpriv(ctx);

    if (c)
        block_message_reset(c);
    return SMFIS_CONTINUE;
}

static sfsistat block_close(SMFICTX *ctx)
{
    block_conn_free(smfi_getpriv(ctx));
    smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

/*
 * Ask the MTA for as little as the rules need: every exchange is a round
 * trip per SMTP session. Headers are wanted (to strip forged tags) but
 * need no answer; HELO only when refusals wait for it. The connection's
 * generation is taken here, since it decides what to ask for.
 */
static sfsistat block_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                                unsigned long f2, unsigned long f3, unsigned long *pf0,
                                unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    struct block_conn *c;
    unsigned long wanted = SMFIP_NOBODY | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOEOH
        | SMFIP_NR_HDR;

    (void) f2;
    (void) f3;
    if ((f0 & (SMFIF_ADDHDRS | SMFIF_CHGHDRS)) != (SMFIF_ADDHDRS | SMFIF_CHGHDRS))
        return SMFIS_REJECT;
    block_conn_free(smfi_getpriv(ctx));
    c = block_conn_new(ctx);
    if (!block_policy_of(c)->delay_client_reject)
        wanted |= SMFIP_NOHELO;
    *pf0 = SMFIF_ADDHDRS | SMFIF_CHGHDRS;
    *pf1 = f1 & wanted;
    c->no_header_reply = (*pf1 & SMFIP_NR_HDR) != 0;
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

static void *block_load(const struct mk_config *cfg, struct mk_directory *dir,
                        struct mk_milter_watch *watch, char **error)
{
    struct block_policy *policy = block_policy_load(cfg, error);

    (void) dir;
    if (policy)
        for (int i = 0; i < 4; i++)
            mk_milter_watch(watch, policy->files[i]);
    return policy;
}

static void block_unload(void *policy)
{
    block_policy_free(policy);
}

static struct smfiDesc block_desc = {
    .xxfi_name = "mailkeep-block",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS,
    .xxfi_connect = block_connect,
    .xxfi_helo = block_helo,
    .xxfi_envfrom = block_envfrom,
    .xxfi_envrcpt = block_envrcpt,
    .xxfi_header = block_header,
    .xxfi_eom = block_eom,
    .xxfi_abort = block_abort,
    .xxfi_close = block_close,
    .xxfi_negotiate = block_negotiate,
};

static const struct mk_milter_app block_app = {
    "mailkeep-block", "block", &block_desc, block_load, block_unload,
};

int main(int argc, char **argv)
{
    int rc;

    block_state = mk_rate_create(200000);
    rc = mk_milter_main(&block_app, argc, argv);
    mk_rate_free(block_state);
    return rc;
}
