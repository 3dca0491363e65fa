/*
 * NAME
 *	mailkeep-recall 8
 * SUMMARY
 *	record every accepted message so that it can be recalled; hold mail
 *	to external recipients for an undo-send window
 * DESCRIPTION
 *	At the end of each message it records, in the recall database: the
 *	Message-ID (adding one when the message has none), the envelope
 *	sender, the header From and Subject, the SASL login, every
 *	recipient with its direction, the queue ID, the time, and the owner
 *	(the user who may recall it as its sender, recall_policy.h). The
 *	record is on disk before the MTA is told to accept: what was
 *	accepted can be found. When the owner has an undo-send delay and
 *	the message has an external recipient, the message is put on hold
 *	(smfi_quarantine: Postfix's hold queue) with its release time in the
 *	record; `mailkeep recall release` releases it when the time comes,
 *	and `mailkeep recall` can take it back until then. Whatever it
 *	cannot decide (database unwritable, directory down) makes the MTA
 *	try again later. The body is never asked for. See mailkeep-recall(8).
 */
#include "config.h"

#include <libgen.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "mk_addr.h"
#include "mk_log.h"
#include "mk_milter.h"
#include "mk_util.h"
#include "rc_db.h"
#include "rc_msgid.h"
#include "recall_policy.h"

#define RECALL_HEADER_MAX	998     /* bytes of From or Subject kept */
/* Add or replace the Message-ID; hold for undo-send. */
#define RECALL_ACTIONS		(SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE)

struct recall_gen {
    struct recall_policy *policy;
    char *db_path;
    pthread_mutex_t lock;
    struct rc_db *db;                   /* opened at the first message */
};

struct recall_conn {
    struct mk_milter_gen *gen;
    struct mk_milter_client client;
    bool connected, no_header_reply;
    bool in_message;
    struct rc_message msg;
    size_t rcpt_cap;
    bool bad_message_id;                /* a Message-ID header without an identifier */
};

static struct recall_gen *recall_gen_of(const struct recall_conn *c)
{
    return c->gen->policy;
}

static void recall_message_reset(struct recall_conn *c)
{
    rc_message_clear(&c->msg);
    c->rcpt_cap = 0;
    c->bad_message_id = false;
    c->in_message = false;
}

static void recall_conn_free(struct recall_conn *c)
{
    if (c == NULL)
        return;
    recall_message_reset(c);
    mk_milter_client_free(&c->client);
    mk_milter_release(c->gen);
    free(c);
}

static struct recall_conn *recall_conn_new(SMFICTX *ctx)
{
    struct recall_conn *c = mk_xcalloc(1, sizeof(*c));

    c->gen = mk_milter_acquire();
    smfi_setpriv(ctx, c);
    return c;
}

/* The database, opened by the first message: by then the daemon runs as
   its own user, who must own what SQLite creates. */
static struct rc_db *recall_db(struct recall_gen *g, char **error)
{
    struct rc_db *db;

    pthread_mutex_lock(&g->lock);
    if (g->db == NULL)
        g->db = rc_db_open(g->db_path, true, error);
    db = g->db;
    pthread_mutex_unlock(&g->lock);
    return db;
}

static sfsistat recall_tempfail(SMFICTX *ctx, const char *qid, const char *why)
{
    mk_log(MK_LOG_ERROR, qid, "tempfail: %s", why);
    mk_milter_reply(ctx, "451", "4.3.0", "Message could not be recorded; try again later");
    return SMFIS_TEMPFAIL;
}

static sfsistat recall_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
    struct recall_conn *c = smfi_getpriv(ctx);

    (void) hostname;
    if (c == NULL || c->connected) {
        recall_conn_free(c);
        c = recall_conn_new(ctx);
    }
    c->connected = true;
    mk_milter_client_init(&c->client, ctx, hostaddr);
    return SMFIS_CONTINUE;
}

static sfsistat recall_envfrom(SMFICTX *ctx, char **argv)
{
    struct recall_conn *c = smfi_getpriv(ctx);
    const char *login;
    char *sender;

    if (c == NULL)
        return SMFIS_TEMPFAIL;
    recall_message_reset(c);
    c->in_message = true;
    sender = mk_addr_normalize(argv[0]);
    c->msg.sender = sender ? sender : mk_xstrdup(argv[0]);
    mk_str_lower(c->msg.sender);
    if ((login = mk_milter_macro(ctx, "{auth_authen}")) != NULL)
        c->msg.sasl_user = mk_xstrdup(login);
    return SMFIS_CONTINUE;
}

static sfsistat recall_envrcpt(SMFICTX *ctx, char **argv)
{
    struct recall_conn *c = smfi_getpriv(ctx);
    char *rcpt;

    if (c == NULL || !c->in_message)
        return SMFIS_TEMPFAIL;
    if ((rcpt = mk_addr_normalize(argv[0])) == NULL)
        rcpt = mk_xstrdup(argv[0]);
    mk_str_lower(rcpt);
    if (c->msg.nrcpts == c->rcpt_cap) {
        c->rcpt_cap = c->rcpt_cap ? 2 * c->rcpt_cap : 4;
        c->msg.rcpts = mk_xrealloc(c->msg.rcpts, c->rcpt_cap * sizeof(*c->msg.rcpts));
    }
    c->msg.rcpts[c->msg.nrcpts++] = (struct rc_rcpt) {.address = rcpt};
    return SMFIS_CONTINUE;
}

/* A header value kept for display: unfolded, at most RECALL_HEADER_MAX bytes. */
static char *recall_header_copy(const char *value)
{
    size_t len = strlen(value);
    char *copy, *w;

    if (len > RECALL_HEADER_MAX)
        len = RECALL_HEADER_MAX;
    while (len > 0 && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    copy = mk_xstrndup(value, len);
    for (w = copy; *w; w++)
        if (*w == '\r' || *w == '\n' || *w == '\t')
            *w = ' ';
    return copy;
}

static sfsistat recall_header(SMFICTX *ctx, char *name, char *value)
{
    struct recall_conn *c = smfi_getpriv(ctx);
    sfsistat ok;

    if (c == NULL || !c->in_message)
        return SMFIS_TEMPFAIL;
    ok = c->no_header_reply ? SMFIS_NOREPLY : SMFIS_CONTINUE;
    if (strcasecmp(name, "Message-ID") == 0) {
        if (c->msg.message_id == NULL && !c->bad_message_id
            && (c->msg.message_id = rc_msgid_parse(value, strlen(value))) == NULL)
            c->bad_message_id = true;
    } else if (strcasecmp(name, "From") == 0 && c->msg.header_from == NULL) {
        c->msg.header_from = recall_header_copy(value);
    } else if (strcasecmp(name, "Subject") == 0 && c->msg.subject == NULL) {
        c->msg.subject = recall_header_copy(value);
    }
    return ok;
}

/* Directions, owner and hold; false when the directory could not answer. */
static bool recall_decide(struct recall_conn *c, long long *hold)
{
    struct mk_origin origin = mk_milter_origin(c->gen, &c->client, c->msg.sasl_user);
    struct recall_gen *g = recall_gen_of(c);
    enum mk_dir_status st;
    bool external = false;
    const char *domain;

    *hold = 0;
    for (size_t i = 0; i < c->msg.nrcpts; i++) {
        enum mk_direction d;

        if (mk_milter_direction(c->gen, &origin, c->msg.rcpts[i].address, &d) < 0)
            return false;
        external |= d == MK_OUTBOUND;
        c->msg.rcpts[i].direction = mk_xstrdup(mk_direction_name(d));
    }
    c->msg.owner = recall_owner(c->gen->dir, &origin, c->msg.sasl_user, c->msg.sender, &st);
    if (st == MK_DIR_TEMPFAIL)
        return false;
    if (c->msg.owner != NULL && (domain = mk_addr_domain(c->msg.owner)) != NULL)
        c->msg.owner_domain = mk_xstrdup(domain);
    c->msg.origin = mk_xstrdup(mk_origin_reason(&origin));
    if (external && c->msg.owner != NULL
        && recall_undo_delay(g->policy, c->gen->dir, c->msg.owner, hold) == MK_DIR_TEMPFAIL)
        return false;
    if (!external)
        *hold = 0;
    return true;
}

static sfsistat recall_eom(SMFICTX *ctx)
{
    struct recall_conn *c = smfi_getpriv(ctx);
    const char *qid = mk_milter_queue_id(ctx);
    struct recall_gen *g;
    struct rc_db *db;
    char *error = NULL, until[16] = "";
    long long hold;
    sfsistat rc = SMFIS_CONTINUE;

    if (c == NULL || !c->in_message)
        return SMFIS_TEMPFAIL;
    g = recall_gen_of(c);
    c->msg.time = (int64_t) time(NULL);
    c->msg.queue_id = mk_xstrdup(qid);
    if (!recall_decide(c, &hold)) {
        rc = recall_tempfail(ctx, qid, "the directory did not answer");
        goto out;
    }
    if (c->msg.message_id == NULL) {
        /* Without an identifier the message could never be found again;
           one that cannot be read is replaced, not joined by a second. */
        c->msg.message_id = rc_msgid_new(g->policy->id_domain);
        c->msg.added_id = true;
        if ((c->bad_message_id ? smfi_chgheader(ctx, "Message-ID", 1, c->msg.message_id)
             : smfi_addheader(ctx, "Message-ID", c->msg.message_id)) == MI_FAILURE) {
            rc = recall_tempfail(ctx, qid, "the MTA refused the Message-ID header");
            goto out;
        }
    }
    if (hold > 0) {
        time_t t;
        struct tm tm;
        char *reason;

        c->msg.hold_until = c->msg.time + hold;
        c->msg.hold_state = mk_xstrdup("held");
        t = (time_t) c->msg.hold_until;
        localtime_r(&t, &tm);
        strftime(until, sizeof(until), "%H:%M:%S", &tm);
        reason = mk_xasprintf("mailkeep-recall: undo-send until %s", until);
        if (smfi_quarantine(ctx, reason) == MI_FAILURE) {
            free(reason);
            rc = recall_tempfail(ctx, qid, "the MTA refused to hold the message");
            goto out;
        }
        free(reason);
    }
    if ((db = recall_db(g, &error)) == NULL || rc_db_add(db, &c->msg, &error) < 0) {
        rc = recall_tempfail(ctx, qid, error);
        free(error);
        goto out;
    }
    if (hold > 0)
        mk_log(MK_LOG_INFO, qid, "held for undo-send until %s: %s from %s, %zu recipient(s)",
               until, c->msg.message_id, c->msg.owner, c->msg.nrcpts);
    else
        mk_log(MK_LOG_DEBUG, qid, "recorded %s%s from %s, %zu recipient(s)", c->msg.message_id,
               c->msg.added_id ? " (added)" : "", c->msg.owner ? c->msg.owner : "outside",
               c->msg.nrcpts);
out:
    recall_message_reset(c);
    return rc;
}

static sfsistat recall_abort(SMFICTX *ctx)
{
    struct recall_conn *c = smfi_getpriv(ctx);

    if (c)
        recall_message_reset(c);
    return SMFIS_CONTINUE;
}

static sfsistat recall_close(SMFICTX *ctx)
{
    recall_conn_free(smfi_getpriv(ctx));
    smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

static sfsistat recall_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                                 unsigned long f2, unsigned long f3, unsigned long *pf0,
                                 unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
    struct recall_conn *c;
    /* Headers need no answer; the body is never sent to us. */
    unsigned long wanted = SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOBODY | SMFIP_NOHELO
        | SMFIP_NR_HDR;

    (void) f2;
    (void) f3;
    if ((f0 & RECALL_ACTIONS) != RECALL_ACTIONS)
        return SMFIS_REJECT;            /* libmilter: the MTA cannot do what we need */
    recall_conn_free(smfi_getpriv(ctx));
    c = recall_conn_new(ctx);
    *pf0 = RECALL_ACTIONS;
    *pf1 = f1 & wanted;
    *pf2 = 0;
    *pf3 = 0;
    c->no_header_reply = (*pf1 & SMFIP_NR_HDR) != 0;
    return SMFIS_CONTINUE;
}

static void recall_unload(void *policy)
{
    struct recall_gen *g = policy;

    if (g == NULL)
        return;
    rc_db_close(g->db);
    recall_policy_free(g->policy);
    pthread_mutex_destroy(&g->lock);
    free(g->db_path);
    free(g);
}

static void *recall_load(const struct mk_config *cfg, struct mk_directory *dir,
                         struct mk_milter_watch *watch, char **error)
{
    struct recall_gen *g = mk_xcalloc(1, sizeof(*g));
    char *copy, *parent;
    struct stat st;

    (void) dir;
    (void) watch;
    pthread_mutex_init(&g->lock, NULL);
    g->db_path = mk_xstrdup(mk_config_str(cfg, "recall", "db"));
    if ((g->policy = recall_policy_create(cfg, error)) == NULL) {
        recall_unload(g);
        return NULL;
    }
    copy = mk_xstrdup(g->db_path);
    parent = dirname(copy);
    if (stat(parent, &st) < 0 || !S_ISDIR(st.st_mode)) {
        *error = mk_xasprintf("[recall] db: %s: no such directory", parent);
        free(copy);
        recall_unload(g);
        return NULL;
    }
    free(copy);
    return g;
}

static struct smfiDesc recall_desc = {
    .xxfi_name = "mailkeep-recall",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = RECALL_ACTIONS,
    .xxfi_connect = recall_connect,
    .xxfi_envfrom = recall_envfrom,
    .xxfi_envrcpt = recall_envrcpt,
    .xxfi_header = recall_header,
    .xxfi_eom = recall_eom,
    .xxfi_abort = recall_abort,
    .xxfi_close = recall_close,
    .xxfi_negotiate = recall_negotiate,
};

static const struct mk_milter_app recall_app = {
    "mailkeep-recall", "recall", &recall_desc, recall_load, recall_unload,
};

int main(int argc, char **argv)
{
    return mk_milter_main(&recall_app, argc, argv);
}
