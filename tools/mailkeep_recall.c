/*
 * mailkeep recall - list and recall messages that mailkeep-recall
 * recorded, and release undo-send holds. See mailkeep(8) and
 * mailkeep-recall(8).
 *
 * A recall finds the message's records (its Message-ID, in the caller's
 * scope), writes to the audit log that it is going to act, then for each
 * recorded recipient: removes the message from the Postfix queue when it
 * is still there; otherwise, for a local recipient, finds the message in
 * every folder of the mailbox (doveadm), leaves it when its body reached
 * a client (the audit plugin's body-read marks) or it was marked read,
 * and expunges it otherwise; an external recipient that left the queue
 * has it already. Every outcome goes to the audit log and the recall
 * database.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <gmime/gmime.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "au_client.h"
#include "au_db.h"
#include "mailkeep.h"
#include "mk_addr.h"
#include "mk_auth.h"
#include "mk_config.h"
#include "mk_directory.h"
#include "mk_log.h"
#include "mk_queue.h"
#include "mk_run.h"
#include "mk_util.h"
#include "rc_db.h"
#include "rc_msgid.h"

#define MKRC_PASSWORD_MAX	1024

static const char mkrc_usage[] =
    "usage: mailkeep recall [-a ADDRESS [-P FILE]] [-n] [-N] [-j] MESSAGE-ID\n"
    "       mailkeep recall list [-a ADDRESS [-P FILE]] [-s SENDER] [-d DOMAIN] [-t AGE]\n"
    "                            [-l LIMIT] [-j]\n"
    "       mailkeep recall release [-w]\n";

enum mkrc_role { MKRC_USER, MKRC_DOMAIN_ADMIN, MKRC_ORG_ADMIN };

/* Who asks, and what they may see. */
struct mkrc_actor {
    char *name;                         /* the address, or the administrator's login */
    enum mkrc_role role;
    char *domain;                       /* a domain administrator's */
    bool system;                        /* the administrator of this host (no -a) */
};

struct mkrc_ctx {
    struct mk_config *cfg;
    struct rc_db *db;
    struct mk_directory *dir;
    struct mkrc_actor actor;
    bool json, dry_run, notice;
};

static void mkrc_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int mkrc_open_db(struct mkrc_ctx *x);

static void mkrc_err(const char *fmt, ...)
{
    va_list ap;

    fputs("mailkeep recall: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static const char *mkrc_role_name(enum mkrc_role role)
{
    return role == MKRC_ORG_ADMIN ? "org-admin" : role == MKRC_DOMAIN_ADMIN ? "domain-admin"
        : "user";
}

static void mkrc_when(int64_t t, char *buf, size_t len)
{
    time_t tt = (time_t) t;
    struct tm tm;

    localtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

/* A header as a person reads it (RFC 2047 decoded), to free with g_free(). */
static char *mkrc_decoded(const char *raw)
{
    static bool ready;

    if (!ready) {
        g_mime_init();
        ready = true;
    }
    return g_mime_utils_header_decode_text(NULL, raw ? raw : "");
}

/* ------------------------------------------------------------- the caller */

/* A password: the first line of FILE ("-": standard input), or asked for
   on the terminal without echo. */
static char *mkrc_password(const char *file, const char *user)
{
    char buf[MKRC_PASSWORD_MAX];
    FILE *fp;
    bool tty = false;
    struct termios old, quiet;

    if (file != NULL && strcmp(file, "-") != 0) {
        if ((fp = fopen(file, "re")) == NULL) {
            mkrc_err("%s: %s", file, strerror(errno));
            return NULL;
        }
    } else if (file != NULL) {
        fp = stdin;
    } else {
        if ((fp = fopen("/dev/tty", "r+e")) == NULL) {
            mkrc_err("-a %s needs a password: give it with -P FILE, or run on a terminal", user);
            return NULL;
        }
        tty = tcgetattr(fileno(fp), &old) == 0;
        fprintf(fp, "Password for %s: ", user);
        fflush(fp);
        if (tty) {
            quiet = old;
            quiet.c_lflag &= ~(tcflag_t) ECHO;
            tcsetattr(fileno(fp), TCSAFLUSH, &quiet);
        }
    }
    if (fgets(buf, sizeof(buf), fp) == NULL)
        buf[0] = '\0';
    if (tty) {
        tcsetattr(fileno(fp), TCSAFLUSH, &old);
        fputc('\n', fp);
    }
    if (fp != stdin)
        fclose(fp);
    buf[strcspn(buf, "\r\n")] = '\0';
    {
        char *password = mk_xstrdup(buf);

        explicit_bzero(buf, sizeof(buf));
        return password;
    }
}

/* The caller: -a ADDRESS proven by its password (Dovecot checks it), with
   the role the directory gives it; without -a, this host's administrator. */
static int mkrc_identify(struct mkrc_ctx *x, const char *address, const char *password_file)
{
    struct mk_dir_user *user = NULL;
    char *password, *canonical = NULL, *error = NULL;
    const char *role, *domain;
    int ok;

    if (address == NULL) {
        x->actor.name = mk_xstrdup(mailkeep_admin_name());
        x->actor.role = MKRC_ORG_ADMIN;
        x->actor.system = true;
        return 0;
    }
    if ((password = mkrc_password(password_file, address)) == NULL)
        return EX_USAGE;
    ok = mk_auth_check(mk_config_str(x->cfg, "recall", "auth_socket"), "mailkeep", address,
                       password, &canonical, &error);
    explicit_bzero(password, strlen(password));
    free(password);
    if (ok <= 0) {
        mkrc_err("%s: %s", address, ok < 0 ? error : "authentication failed");
        free(error);
        return ok < 0 ? EX_UNAVAILABLE : EX_NOPERM;
    }
    mk_str_lower(canonical);
    x->actor.name = canonical;
    x->actor.role = MKRC_USER;
    switch (mk_directory_user(x->dir, canonical, &user)) {
    case MK_DIR_TEMPFAIL:
        mkrc_err("%s: the directory did not answer", canonical);
        return EX_TEMPFAIL;
    case MK_DIR_FOUND:
        role = mk_dir_user_value(user, "role");
        if (role != NULL && strcasecmp(role, "org-admin") == 0)
            x->actor.role = MKRC_ORG_ADMIN;
        else if (role != NULL && strcasecmp(role, "domain-admin") == 0)
            x->actor.role = MKRC_DOMAIN_ADMIN;
        mk_dir_user_unref(user);
        break;
    case MK_DIR_NOT_FOUND:
        break;
    }
    if ((domain = mk_addr_domain(canonical)) != NULL)
        x->actor.domain = mk_xstrdup(domain);
    else if (x->actor.role == MKRC_DOMAIN_ADMIN)
        x->actor.role = MKRC_USER;      /* a domain administrator needs a domain */
    return 0;
}

/* Whether the caller may see and recall this message. */
static bool mkrc_in_scope(const struct mkrc_actor *a, const struct rc_message *m)
{
    switch (a->role) {
    case MKRC_ORG_ADMIN:
        return true;
    case MKRC_DOMAIN_ADMIN:
        return m->owner_domain != NULL && strcasecmp(m->owner_domain, a->domain) == 0;
    case MKRC_USER:
    default:
        return m->owner != NULL && strcasecmp(m->owner, a->name) == 0;
    }
}

/* ------------------------------------------------------------ the audit */

/* One audit record about a recall; the fields after user are key/value
   string pairs, then NULL. */
static int mkrc_audit(struct au_client *c, const struct mkrc_actor *a, const char *user,
                      const char *message_id, bool sync, char **error, ...)
{
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s}", "op", "recall", "user", user, "by", a->name,
                            "role", mkrc_role_name(a->role), "message_id", message_id);
    const char *key, *value;
    va_list ap;
    int rc;

    if (a->system)
        json_object_set_new(rec, "admin", json_string(a->name));
    va_start(ap, error);
    while ((key = va_arg(ap, const char *)) != NULL) {
        value = va_arg(ap, const char *);
        if (value != NULL)
            json_object_set_new(rec, key, json_string(value));
    }
    va_end(ap);
    rc = au_client_send(c, 'A', rec, error);
    if (rc == 0 && sync)
        rc = au_client_sync(c, error);
    json_decref(rec);
    return rc;
}

/* ------------------------------------------------------------- the list */

static int mkrc_list(struct mkrc_ctx *x, int argc, char **argv)
{
    struct rc_filter f = {.limit = 50};
    struct rc_message *msgs = NULL;
    char *error = NULL;
    json_t *out = NULL;
    size_t n, shown = 0;
    long long v;
    int ch;

    optind = 1;
    while ((ch = getopt(argc, argv, "s:d:t:l:j")) != -1) {
        switch (ch) {
        case 's':
            f.owner = optarg;
            break;
        case 'd':
            f.owner_domain = optarg;
            break;
        case 't':
            if (mk_parse_duration(optarg, &v) != 0 || v <= 0) {
                mkrc_err("-t wants an age such as 2h or 7d, not \"%s\"", optarg);
                return EX_USAGE;
            }
            f.since = (int64_t) time(NULL) - v;
            break;
        case 'l':
            if (mk_parse_int(optarg, &v) != 0 || v < 0) {
                mkrc_err("-l wants a number, not \"%s\"", optarg);
                return EX_USAGE;
            }
            f.limit = (size_t) v;
            break;
        case 'j':
            x->json = true;
            break;
        default:
            fputs(mkrc_usage, stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        fputs(mkrc_usage, stderr);
        return EX_USAGE;
    }
    /* Nobody sees beyond their scope, whatever they ask for. */
    if (x->actor.role == MKRC_USER)
        f.owner = x->actor.name;
    else if (x->actor.role == MKRC_DOMAIN_ADMIN)
        f.owner_domain = x->actor.domain;
    if (rc_db_find(x->db, &f, &msgs, &n, &error) < 0) {
        mkrc_err("%s", error);
        free(error);
        return EX_UNAVAILABLE;
    }
    if (x->json)
        out = json_array();
    for (size_t i = 0; i < n; i++) {
        const struct rc_message *m = &msgs[i];
        char when[32], *subject, *from;

        if (!mkrc_in_scope(&x->actor, m))
            continue;
        shown++;
        subject = mkrc_decoded(m->subject);
        from = mkrc_decoded(m->header_from);
        mkrc_when(m->time, when, sizeof(when));
        if (x->json) {
            json_t *o = json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:s,s:o,s:b}", "message_id",
                                  m->message_id, "time", (json_int_t) m->time, "queue_id",
                                  m->queue_id, "sender", m->sender, "from", from, "subject",
                                  subject, "origin", m->origin ? m->origin : "none", "owner",
                                  m->owner ? json_string(m->owner) : json_null(), "added_id",
                                  m->added_id);
            json_t *rcpts = json_array();

            if (m->hold_state != NULL) {
                json_object_set_new(o, "hold", json_string(m->hold_state));
                json_object_set_new(o, "hold_until", json_integer(m->hold_until));
            }
            for (size_t k = 0; k < m->nrcpts; k++) {
                json_t *r = json_pack("{s:s,s:s}", "address", m->rcpts[k].address, "direction",
                                      m->rcpts[k].direction);

                if (m->rcpts[k].status != NULL) {
                    json_object_set_new(r, "status", json_string(m->rcpts[k].status));
                    json_object_set_new(r, "status_time", json_integer(m->rcpts[k].status_time));
                }
                json_array_append_new(rcpts, r);
            }
            json_object_set_new(o, "recipients", rcpts);
            json_array_append_new(out, o);
        } else {
            printf("%s  %s\n    from %s (%s), \"%s\"\n", when, m->message_id,
                   m->owner ? m->owner : m->sender, *from ? from : "no From", subject);
            if (m->hold_state != NULL) {
                char until[32];

                mkrc_when(m->hold_until, until, sizeof(until));
                printf("    undo-send: %s (until %s)\n", m->hold_state, until);
            }
            for (size_t k = 0; k < m->nrcpts; k++)
                printf("    %-32s %-8s %s\n", m->rcpts[k].address, m->rcpts[k].direction,
                       m->rcpts[k].status ? m->rcpts[k].status : "");
        }
        g_free(subject);
        g_free(from);
    }
    if (x->json) {
        json_dumpf(out, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(out);
    } else if (shown == 0) {
        printf("no messages\n");
    }
    rc_messages_free(msgs, n);
    return EX_OK;
}

/* ----------------------------------------------------------- the recall */

/* What happened for one recipient. */
struct mkrc_outcome {
    const char *status;                 /* recalled, queue, read, gone, sent, unknown-user, error */
    char *detail;                       /* for a person */
};

/* A copy of the message in a mailbox, as doveadm found it. */
struct mkrc_copy {
    char *mailbox, *guid, *uid;
    bool seen, deleted;
};

static void mkrc_copies_free(struct mkrc_copy *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(c[i].mailbox);
        free(c[i].guid);
        free(c[i].uid);
    }
    free(c);
}

/* Every copy of message_id in user's mailboxes, all folders: 0, or
   doveadm's exit code. */
static int mkrc_find_copies(const struct mkrc_ctx *x, const char *user, const char *message_id,
                            struct mkrc_copy **copies, size_t *n)
{
    const char *args[] = {"-f", "tab", "fetch", "-u", user,
                          "mailbox-guid uid flags mailbox hdr.message-id", "mailbox", "*",
                          "header", "message-id", message_id, NULL};
    char *out = NULL, *cursor, *line;
    bool header = true;
    int rc;

    *copies = NULL;
    *n = 0;
    if ((rc = mk_run_cmd(mk_config_str(x->cfg, "recall", "doveadm"), args, NULL, 0, &out)) != 0)
        return rc;
    cursor = out;
    while ((line = mk_str_next_line(&cursor)) != NULL) {
        char *f[5], *id;
        size_t k = 0;

        if (header) {                   /* doveadm -f tab names its columns first */
            header = false;
            continue;
        }
        for (char *p = line; k < 5; k++) {
            f[k] = p;
            if (k < 4) {
                if ((p = strchr(p, '\t')) == NULL)
                    break;
                *p++ = '\0';
            }
        }
        if (k < 5)
            continue;
        /* the search matched a substring; recall wants this very ID */
        id = rc_msgid_parse(f[4], strlen(f[4]));
        if (id != NULL && strcmp(id, message_id) == 0) {
            struct mkrc_copy *c;

            *copies = mk_xrealloc(*copies, (*n + 1) * sizeof(**copies));
            c = &(*copies)[(*n)++];
            c->guid = mk_xstrdup(f[0]);
            c->uid = mk_xstrdup(f[1]);
            c->seen = strstr(f[2], "\\Seen") != NULL;
            c->deleted = strstr(f[2], "\\Deleted") != NULL;
            c->mailbox = mk_xstrdup(f[3]);
        }
        free(id);
    }
    free(out);
    return 0;
}

struct mkrc_read_search {
    const char *message_id;
    int64_t first;                      /* earliest read, UNIX seconds */
    bool found;
};

static int mkrc_read_cb(void *arg, const struct au_db_read *r)
{
    struct mkrc_read_search *s = arg;
    char *id;
    bool same;

    /* The plugin keeps the header as it was; compare identifiers. */
    if (r->message_id == NULL)
        return 0;
    id = rc_msgid_parse(r->message_id, strlen(r->message_id));
    same = id != NULL && strcmp(id, s->message_id) == 0;
    free(id);
    if (!same)
        return 0;
    if (!s->found || r->first < s->first)
        s->first = r->first;
    s->found = true;
    return 0;
}

/* Whether the body of a copy of message_id in user's mailboxes reached a
   client: 1 (and when first, in *first), 0, or -1 (cannot tell). */
static int mkrc_was_read(struct au_db *audit_db, const char *user, const char *message_id,
                         int64_t *first)
{
    struct mkrc_read_search s = {.message_id = message_id};
    char *error = NULL;

    if (audit_db == NULL)
        return -1;
    if (au_db_reads(audit_db, user, NULL, mkrc_read_cb, &s, &error) != 0) {
        free(error);
        return -1;
    }
    *first = s.first;
    return s.found;
}

/* The notice left where a recalled message was. */
static char *mkrc_notice(const struct mkrc_ctx *x, const struct rc_message *m, const char *to,
                         size_t *len)
{
    char date[64], when[32], *subject = mkrc_decoded(m->subject), *text;
    const char *from = mk_config_str(x->cfg, "recall", "notice_from");
    const char *domain = mk_addr_domain(to);
    char *from_addr = strchr(from, '@') ? mk_xstrdup(from)
        : mk_xasprintf("%s@%s", from, domain ? domain : "localhost");
    char *msgid = rc_msgid_new(m->owner_domain ? m->owner_domain : "localhost");
    time_t now = time(NULL);
    struct tm tm;

    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
    mkrc_when(m->time, when, sizeof(when));
    text = mk_xasprintf("From: %s\r\nTo: <%s>\r\nSubject: =?UTF-8?B?%s?=\r\nDate: %s\r\n"
                        "Message-ID: %s\r\nAuto-Submitted: auto-generated\r\n"
                        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                        "Content-Transfer-Encoding: 8bit\r\n\r\n"
                        "The message \"%s\" sent by %s at %s was recalled by its sender.\r\n"
                        "\r\n"
                        "\xe5\xaf\x84\xe4\xbb\xb6\xe8\x80\x85 %s \xe5\xb7\xb2\xe6\x94\xb6\xe5\x9b\x9e"
                        " %s \xe5\xaf\x84\xe5\x87\xba\xe7\x9a\x84\xe9\x83\xb5\xe4\xbb\xb6"
                        "\xe3\x80\x8c%s\xe3\x80\x8d\xe3\x80\x82\r\n",
                        from_addr, to,
                        /* "Recalled: 郵件已收回" */
                        "UmVjYWxsZWQ6IOmDteS7tuW3suaUtuWbng==", date, msgid, subject,
                        m->owner ? m->owner : m->sender, when, m->owner ? m->owner : m->sender,
                        when, subject);
    g_free(subject);
    free(msgid);
    free(from_addr);
    *len = strlen(text);
    return text;
}

/* One local recipient: find every copy, leave it if read, expunge it otherwise. */
static void mkrc_mailbox(const struct mkrc_ctx *x, struct au_client *ac, struct au_db *audit_db,
                         const struct rc_message *m, const char *user, struct mkrc_outcome *o)
{
    struct mkrc_copy *copies = NULL;
    size_t n = 0, live = 0, seen = 0;
    int64_t first = 0;
    const char *notice_box = NULL;
    char *error = NULL, *boxes = NULL;
    int rc, read;

    rc = mkrc_find_copies(x, user, m->message_id, &copies, &n);
    if (rc == 67) {                     /* EX_NOUSER */
        o->status = "unknown-user";
        o->detail = mk_xstrdup("not recalled: no such mailbox here");
        return;
    }
    if (rc != 0) {
        o->status = "error";
        o->detail = mk_xasprintf("not recalled: doveadm fetch failed (%d)", rc);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        live += !copies[i].deleted;
        seen += !copies[i].deleted && copies[i].seen;
    }
    if (live == 0) {
        o->status = "gone";
        o->detail = mk_xstrdup("not recalled: already deleted or moved away");
        goto out;
    }
    /* What the plugins sent before now is in the database once this returns. */
    if (au_client_sync(ac, &error) != 0) {
        o->status = "error";
        o->detail = mk_xasprintf("not recalled: %s", error);
        goto out;
    }
    read = mkrc_was_read(audit_db, user, m->message_id, &first);
    if (read < 0) {
        o->status = "error";
        o->detail = mk_xstrdup("not recalled: cannot tell whether it was read "
                               "(the audit database cannot be read)");
        goto out;
    }
    if (read) {
        char when[32];

        mkrc_when(first, when, sizeof(when));
        o->status = "read";
        o->detail = mk_xasprintf("not recalled: read (its body reached a mail client at %s)",
                                 when);
        goto out;
    }
    if (seen > 0) {
        o->status = "read";
        o->detail = mk_xstrdup("not recalled: marked as read");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *expunge[] = {"expunge", "-u", user, "mailbox-guid", copies[i].guid, "uid",
                                 copies[i].uid, NULL};
        char *next;

        if (copies[i].deleted)
            continue;
        if (!x->dry_run
            && (rc = mk_run_cmd(mk_config_str(x->cfg, "recall", "doveadm"), expunge, NULL, 0,
                                NULL)) != 0) {
            o->status = "error";
            o->detail = mk_xasprintf("not recalled from %s: doveadm expunge failed (%d)",
                                     copies[i].mailbox, rc);
            goto out;
        }
        if (notice_box == NULL)
            notice_box = copies[i].mailbox;
        next = mk_xasprintf("%s%s%s", boxes ? boxes : "", boxes ? ", " : "", copies[i].mailbox);
        free(boxes);
        boxes = next;
    }
    if (x->dry_run) {
        o->status = "would-recall";
        o->detail = mk_xasprintf("would be recalled from %s", boxes);
        goto out;
    }
    o->status = "recalled";
    /* There was no read mark at the check: one now means that a client
       fetched it between the check and the expunge. */
    if (au_client_sync(ac, &error) == 0 && mkrc_was_read(audit_db, user, m->message_id,
                                                         &first) > 0)
        o->detail = mk_xasprintf("recalled from %s, but its body reached a mail client "
                                 "during the recall", boxes);
    else
        o->detail = mk_xasprintf("recalled from %s", boxes);
    if (x->notice) {
        size_t len;
        char *text = mkrc_notice(x, m, user, &len);
        const char *save[] = {"save", "-u", user, "-m", notice_box, NULL};

        if (mk_run_cmd(mk_config_str(x->cfg, "recall", "doveadm"), save, text, len, NULL) != 0) {
            char *more = mk_xasprintf("%s (the notice could not be saved)", o->detail);

            free(o->detail);
            o->detail = more;
        }
        free(text);
    }
out:
    free(error);
    free(boxes);
    mkrc_copies_free(copies, n);
}

/* Whether the recipient's domain is one of ours: 1, 0, -1 (cannot tell). */
static int mkrc_local(const struct mkrc_ctx *x, const char *address)
{
    const char *domain = mk_addr_domain(address);

    if (domain == NULL)
        return 1;
    switch (mk_directory_domain(x->dir, domain)) {
    case MK_DIR_FOUND:
        return 1;
    case MK_DIR_NOT_FOUND:
        return 0;
    default:
        return -1;
    }
}

static bool mkrc_in_queue(const struct mk_queue_msg *q, const char *address)
{
    for (size_t i = 0; q != NULL && i < q->nrcpts; i++)
        if (strcasecmp(q->rcpts[i].address, address) == 0)
            return true;
    return false;
}

/* Recall one recorded message: the queue first, then each recipient. */
static int mkrc_recall_one(const struct mkrc_ctx *x, struct au_client *ac,
                           struct au_db *audit_db, struct rc_message *m,
                           const struct mk_queue_msg *queued, json_t *report)
{
    const char *pfdir = mk_config_str(x->cfg, "recall", "postfix_config");
    bool removed = false, was_held = false, queue_failed = false;
    char *error = NULL, when[32], *subject = mkrc_decoded(m->subject);
    int rc = EX_OK;
    json_t *rcpts = json_array();

    mkrc_when(m->time, when, sizeof(when));
    if (!x->json)
        printf("%s from %s, \"%s\" (%s, queue ID %s):\n", m->message_id,
               m->owner ? m->owner : *m->sender ? m->sender : "<>", subject, when, m->queue_id);
    /* Postfix's queue IDs are reused in time: the sender must match too. */
    if (queued != NULL && strcasecmp(queued->sender, m->sender) != 0)
        queued = NULL;
    if (queued != NULL) {
        was_held = strcmp(queued->queue, "hold") == 0;
        if (x->dry_run) {
            removed = true;
        } else {
            int d = mk_queue_delete(pfdir, queued->id, NULL, &error);

            if (d < 0) {
                mkrc_err("%s: %s", queued->id, error);
                free(error);
                error = NULL;
                rc = EX_TEMPFAIL;
                queue_failed = true;
            }
            removed = d > 0;
            if (removed && was_held)
                (void) rc_db_set_hold(x->db, m->id, "recalled", &error);
            free(error);
            error = NULL;
        }
    }
    for (size_t i = 0; i < m->nrcpts; i++) {
        const char *addr = m->rcpts[i].address;
        struct mkrc_outcome o = {0};
        int local;

        if (queue_failed && mkrc_in_queue(queued, addr)) {
            o.status = "error";
            o.detail = mk_xasprintf("not recalled: still in the queue (%s), which postsuper "
                                    "could not change", queued->queue);
        } else if (removed && mkrc_in_queue(queued, addr)) {
            o.status = x->dry_run ? "would-recall" : "recalled";
            o.detail = mk_xasprintf("%s from the queue%s", x->dry_run ? "would be removed"
                                    : "recalled: removed", was_held
                                    ? " (held for undo-send)" : " (not yet delivered)");
        } else if ((local = mkrc_local(x, addr)) < 0) {
            o.status = "error";
            o.detail = mk_xstrdup("not recalled: the directory did not answer");
        } else if (!local) {
            o.status = "sent";
            o.detail = mk_xstrdup("not recalled: external, already sent");
        } else {
            mkrc_mailbox(x, ac, audit_db, m, addr, &o);
        }
        if (strcmp(o.status, "error") == 0)
            rc = EX_TEMPFAIL;
        if (!x->dry_run) {
            if (mkrc_audit(ac, &x->actor, addr, m->message_id, false, &error, "result", o.status,
                           "detail", o.detail, "queue_id", m->queue_id, NULL) != 0) {
                mkrc_err("%s: %s", addr, error);
                free(error);
                error = NULL;
                rc = EX_UNAVAILABLE;
            }
            if (rc_db_set_status(x->db, m->id, addr, o.status, (int64_t) time(NULL), &error) < 0) {
                mkrc_err("%s", error);
                free(error);
                error = NULL;
            }
        }
        if (x->json)
            json_array_append_new(rcpts, json_pack("{s:s,s:s,s:s}", "address", addr, "status",
                                                   o.status, "detail", o.detail));
        else
            printf("  %-32s %s\n", addr, o.detail);
        free(o.detail);
    }
    if (x->json)
        json_array_append_new(report, json_pack("{s:s,s:s,s:I,s:s,s:o}", "message_id",
                                                m->message_id, "queue_id", m->queue_id, "time",
                                                (json_int_t) m->time, "subject", subject,
                                                "recipients", rcpts));
    else
        json_decref(rcpts);
    g_free(subject);
    return rc;
}

static int mkrc_recall(struct mkrc_ctx *x, const char *arg)
{
    struct rc_filter f = {0};
    struct rc_message *msgs = NULL;
    struct mk_queue_msg *queue = NULL;
    size_t n, nqueue = 0, mine = 0;
    struct au_client *ac = NULL;
    struct au_db *audit_db = NULL;
    char *id = rc_msgid_parse(arg, strlen(arg)), *error = NULL;
    json_t *report = json_array();
    int rc = EX_OK;

    if (id == NULL) {
        mkrc_err("\"%s\" is not a Message-ID", arg);
        json_decref(report);
        return EX_USAGE;
    }
    f.message_id = id;
    if (rc_db_find(x->db, &f, &msgs, &n, &error) < 0) {
        mkrc_err("%s", error);
        rc = EX_UNAVAILABLE;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        mine += mkrc_in_scope(&x->actor, &msgs[i]);
    /* Every recall, refused or done, is in the audit log before anything
       is done: without it, nothing is. */
    if (!x->dry_run
        && (ac = au_client_open(mk_config_str(x->cfg, "audit", "socket"), &error)) == NULL) {
        mkrc_err("%s: nothing recalled, since the recall could not be audited", error);
        rc = EX_UNAVAILABLE;
        goto out;
    }
    if (n == 0 || mine == 0) {
        const char *why = n == 0 ? "no such message" : x->actor.role == MKRC_USER
            ? "not the sender" : "another domain's message";

        if (ac != NULL
            && mkrc_audit(ac, &x->actor, x->actor.name, id, true, &error, "result", "refused",
                          "detail", why, NULL) != 0) {
            mkrc_err("%s", error);
            rc = EX_UNAVAILABLE;
            goto out;
        }
        /* The same answer whether the message exists or not: a user
           learns nothing of mail that is not theirs. */
        mkrc_err("%s: %s", id, n == 0 || x->actor.role == MKRC_USER
                 ? "no message of yours with this Message-ID"
                 : "no message of your domain with this Message-ID");
        rc = n == 0 || x->actor.role == MKRC_USER ? EX_DATAERR : EX_NOPERM;
        goto out;
    }
    if (ac != NULL && mkrc_audit(ac, &x->actor, x->actor.name, id, true, &error, "result",
                                 "started", NULL) != 0) {
        mkrc_err("%s: nothing recalled, since the recall could not be audited", error);
        rc = EX_UNAVAILABLE;
        goto out;
    }
    if (mk_queue_list(mk_config_str(x->cfg, "recall", "postfix_config"), &queue, &nqueue,
                      &error) < 0) {
        mkrc_err("%s: nothing recalled", error);
        rc = EX_UNAVAILABLE;
        goto out;
    }
    if ((audit_db = au_db_open(mk_config_str(x->cfg, "audit", "db"), false, &error)) == NULL) {
        /* Local recipients are then left alone: see mkrc_mailbox. */
        mkrc_err("%s", error);
        free(error);
        error = NULL;
    }
    if (ac == NULL && x->dry_run)
        ac = au_client_open(mk_config_str(x->cfg, "audit", "socket"), &error);
    if (ac == NULL) {
        mkrc_err("%s: a dry run needs mailkeep-auditd too (to know what was read)", error);
        rc = EX_UNAVAILABLE;
        goto out;
    }
    /* doveadm's own records (the plugin's) name who recalled */
    setenv("MAILKEEP_ADMIN", x->actor.name, 1);
    for (size_t i = 0; i < n; i++) {
        int one;

        if (!mkrc_in_scope(&x->actor, &msgs[i]))
            continue;
        one = mkrc_recall_one(x, ac, audit_db, &msgs[i],
                              mk_queue_find(queue, nqueue, msgs[i].queue_id), report);
        if (one != EX_OK)
            rc = one;
    }
    if (!x->dry_run && au_client_sync(ac, &error) != 0) {
        mkrc_err("%s: the outcome may be missing from the audit log", error);
        rc = EX_UNAVAILABLE;
    }
    if (x->json) {
        json_dumpf(report, stdout, JSON_INDENT(2));
        putchar('\n');
    }
out:
    free(error);
    free(id);
    json_decref(report);
    if (ac != NULL)
        au_client_close(ac);
    au_db_close(audit_db);
    mk_queue_free(queue, nqueue);
    rc_messages_free(msgs, n);
    return rc;
}

/* ---------------------------------------------------------- the release */

static volatile sig_atomic_t mkrc_stop;

static void mkrc_on_signal(int sig)
{
    (void) sig;
    mkrc_stop = 1;
}

/* Release every hold that is due; 0, or -1 when the queue or database failed. */
static int mkrc_release_due(struct mkrc_ctx *x)
{
    const char *pfdir = mk_config_str(x->cfg, "recall", "postfix_config");
    struct rc_filter f = {.held_due = (int64_t) time(NULL)};
    struct rc_message *due = NULL;
    struct mk_queue_msg *queue = NULL;
    size_t n = 0, nqueue = 0;
    char *error = NULL;
    int rc = 0;

    if (rc_db_find(x->db, &f, &due, &n, &error) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "%s", error);
        free(error);
        return -1;
    }
    if (n > 0 && mk_queue_list(pfdir, &queue, &nqueue, &error) < 0) {
        mk_log(MK_LOG_ERROR, NULL, "%s; will try again", error);
        free(error);
        rc_messages_free(due, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const struct rc_message *m = &due[i];
        const struct mk_queue_msg *q = mk_queue_find(queue, nqueue, m->queue_id);
        const char *state;
        char *other;

        if (q == NULL || strcasecmp(q->sender, m->sender) != 0) {
            state = "gone";
            mk_log(MK_LOG_INFO, m->queue_id, "undo-send: no longer in the queue (recalled or "
                   "deleted)");
        } else if (strcmp(q->queue, "hold") != 0) {
            state = "released";
            mk_log(MK_LOG_INFO, m->queue_id, "undo-send: already released by hand");
        } else if ((other = mk_queue_header(pfdir, m->queue_id, "X-Mailkeep-Quarantine"))) {
            /* Held by mailkeep-dlp or mailkeep-av as well: that hold is a
               person's to lift, not ours. */
            state = "quarantined";
            mk_log(MK_LOG_INFO, m->queue_id, "undo-send over, left in the quarantine: %s",
                   other);
            free(other);
        } else {
            switch (mk_queue_release(pfdir, m->queue_id, &error)) {
            case 1:
                state = "released";
                mk_log(MK_LOG_INFO, m->queue_id, "undo-send over: released %s",
                       m->message_id);
                break;
            case 0:
                state = "gone";
                break;
            default:
                mk_log(MK_LOG_ERROR, m->queue_id, "undo-send: %s; will try again", error);
                free(error);
                error = NULL;
                rc = -1;
                continue;
            }
        }
        if (rc_db_set_hold(x->db, m->id, state, &error) < 0) {
            mk_log(MK_LOG_ERROR, m->queue_id, "%s", error);
            free(error);
            error = NULL;
            rc = -1;
        }
    }
    mk_queue_free(queue, nqueue);
    rc_messages_free(due, n);
    return rc;
}

static int mkrc_release(struct mkrc_ctx *x, int argc, char **argv)
{
    bool watch = false;
    time_t last_expire = 0;
    char *error = NULL;
    int ch, rc = EX_OK;

    optind = 1;
    while ((ch = getopt(argc, argv, "w")) != -1) {
        if (ch != 'w') {
            fputs(mkrc_usage, stderr);
            return EX_USAGE;
        }
        watch = true;
    }
    if (optind != argc) {
        fputs(mkrc_usage, stderr);
        return EX_USAGE;
    }
    if (mk_config_line(x->cfg, "global", "log") != 0
        && strcasecmp(mk_config_str(x->cfg, "global", "log"), "syslog") == 0) {
        int facility = 0;

        (void) mk_log_parse_facility(mk_config_str(x->cfg, "global", "log_facility"), &facility);
        mk_log_open("mailkeep-recall-release", MK_LOG_SYSLOG, facility);
    }
    signal(SIGTERM, mkrc_on_signal);
    signal(SIGINT, mkrc_on_signal);
    signal(SIGHUP, mkrc_on_signal);
    /* Until the milter has recorded its first message there is nothing
       to release: wait for it (-w) or say so. */
    while ((ch = mkrc_open_db(x)) == 1 && watch && !mkrc_stop)
        sleep(1);
    if (ch < 0)
        return EX_UNAVAILABLE;
    if (ch == 1) {
        if (!watch)
            printf("nothing recorded yet: %s does not exist\n",
                   mk_config_str(x->cfg, "recall", "db"));
        return EX_OK;
    }
    if (watch)
        mk_log(MK_LOG_INFO, NULL, "releasing undo-send holds as they fall due");
    do {
        time_t now = time(NULL);
        int64_t next;

        bool failed = mkrc_release_due(x) < 0;

        if (failed)
            rc = EX_TEMPFAIL;
        if (now - last_expire >= 3600) {
            int64_t removed = 0;

            if (rc_db_expire(x->db, (int64_t) now - mk_config_num(x->cfg, "recall", "keep"),
                             &removed, &error) < 0) {
                mk_log(MK_LOG_ERROR, NULL, "%s", error);
                free(error);
                error = NULL;
            } else if (removed > 0) {
                mk_log(MK_LOG_INFO, NULL, "forgot %lld message(s) older than [recall] keep",
                       (long long) removed);
            }
            last_expire = now;
        }
        if (!watch)
            break;
        /* New holds appear at any time: look at least once a second. */
        if (rc_db_next_release(x->db, &next, &error) < 0) {
            free(error);
            error = NULL;
        }
        if (!failed && next > 0 && next <= (int64_t) time(NULL))
            continue;                   /* more fell due meanwhile */
        sleep(1);
    } while (!mkrc_stop);
    return watch ? EX_OK : rc;
}

/* --------------------------------------------------------------- entry */

/* The database the milter made: 0, 1 when it has made none yet, or -1.
   It is never created here, as root, lest the milter cannot write it. */
static int mkrc_open_db(struct mkrc_ctx *x)
{
    const char *path = mk_config_str(x->cfg, "recall", "db");
    char *error = NULL;

    if (access(path, F_OK) != 0) {
        if (errno == ENOENT)
            return 1;
        mkrc_err("%s: %s", path, strerror(errno));
        return -1;
    }
    if ((x->db = rc_db_open(path, true, &error)) == NULL) {
        mkrc_err("%s", error);
        free(error);
        return -1;
    }
    return 0;
}

int mailkeep_recall(const char *config_path, int argc, char **argv)
{
    struct mkrc_ctx x = {0};
    const char *as = NULL, *password_file = NULL, *sub = NULL;
    char *error = NULL;
    int rc;

    /* the subcommand is the first word that is neither an option nor -a's
       or -P's value: "recall -a ADDRESS list" and "recall list -a ADDRESS" */
    for (int i = 0; i < argc && sub == NULL; i++) {
        if (strcmp(argv[i], "-a") == 0 || strcmp(argv[i], "-P") == 0)
            i++;
        else if (strcmp(argv[i], "list") == 0 || strcmp(argv[i], "release") == 0)
            sub = argv[i];
        else if (argv[i][0] != '-')
            break;
    }
    /* -a and -P anywhere; the recall's own flags; the rest is the
       subcommand's (its getopt sees them) or the Message-ID */
    {
        char **rest = mk_xcalloc((size_t) argc + 2, sizeof(char *));
        int nrest = 0;

        rest[nrest++] = (char *) (sub ? sub : "recall");
        for (int i = 0; i < argc; i++) {
            if (argv[i] == sub) {
                continue;
            } else if ((strcmp(argv[i], "-a") == 0 || strcmp(argv[i], "-P") == 0) && i + 1 < argc) {
                *(argv[i][1] == 'a' ? &as : &password_file) = argv[i + 1];
                i++;
            } else if (!sub && strcmp(argv[i], "-n") == 0) {
                x.dry_run = true;
            } else if (!sub && strcmp(argv[i], "-N") == 0) {
                x.notice = true;
            } else if (!sub && strcmp(argv[i], "-j") == 0) {
                x.json = true;
            } else {
                rest[nrest++] = argv[i];
            }
        }
        if (!sub && (nrest != 2 || rest[1][0] == '-')) {
            fputs(mkrc_usage, stderr);
            free(rest);
            return EX_USAGE;
        }
        argc = nrest;
        argv = rest;
    }
    if ((x.cfg = mailkeep_load_config(config_path)) == NULL) {
        free(argv);
        return EX_CONFIG;
    }
    x.notice |= mk_config_bool(x.cfg, "recall", "notice");
    if (sub != NULL && strcmp(sub, "release") == 0) {
        if (as != NULL) {
            mkrc_err("release is for this host's administrator: no -a");
            rc = EX_USAGE;
            goto out;
        }
        rc = mkrc_release(&x, argc, argv);
        goto out;
    }
    rc = EX_UNAVAILABLE;
    switch (mkrc_open_db(&x)) {
    case 1:
        mkrc_err("%s: no message recorded yet (has mailkeep-recall run?)",
                 mk_config_str(x.cfg, "recall", "db"));
        /* fall through */
    case -1:
        goto out;
    }
    if ((x.dir = mk_directory_open(x.cfg, &error)) == NULL) {
        mkrc_err("%s", error);
        goto out;
    }
    if ((rc = mkrc_identify(&x, as, password_file)) != 0)
        goto out;
    if (sub != NULL)
        rc = mkrc_list(&x, argc, argv);
    else
        rc = mkrc_recall(&x, argv[1]);
out:
    free(error);
    free(argv);
    free(x.actor.name);
    free(x.actor.domain);
    if (x.dir)
        mk_directory_unref(x.dir);
    rc_db_close(x.db);
    mk_config_unref(x.cfg);
    return rc;
}
