/*
 * mailkeep usage - accounts by login activity and mailbox space, and
 * purging mail from them.
 *
 * The mailkeep_usage Dovecot plugin keeps each mailbox's message count
 * and size, and each account's last login per protocol, current in
 * mailkeep-auditd's usage database ([audit] db) as they change. This
 * command reads that database (report), fills it from doveadm for
 * accounts the plugin has not seen yet (scan), and removes mail through
 * doveadm (purge), recording each purge in the audit log first: a purge
 * that cannot be audited does not happen.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <jansson.h>
#include <pwd.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "au_client.h"
#include "mailkeep.h"
#include "mk_config.h"
#include "mk_run.h"
#include "mk_util.h"

#define MKU_DAY (24 * 3600LL)

struct mku_filter {
    const char *domain;                 /* -d */
    long long inactive_days;            /* -i; -1 = no filter */
    long long over_bytes;               /* -o; -1 = no filter */
    char **users;                       /* -u, NULL-terminated */
    size_t n_users;
    bool all;                           /* -A */
};

struct mku_account {
    char *user;
    long long messages, vsize, mailboxes;
    long long last_login, imap, pop3;   /* 0 = never seen */
};

static void mku_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void mku_err(const char *fmt, ...)
{
    va_list ap;

    fputs("mailkeep usage: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void mku_accounts_free(struct mku_account *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(a[i].user);
    free(a);
}

static sqlite3 *mku_db_open(const struct mk_config *cfg)
{
    const char *path = mk_config_str(cfg, "audit", "db");
    sqlite3 *db = NULL;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        mku_err("%s: %s (is mailkeep-auditd running with the usage plugin?)", path,
                db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 10000);
    return db;
}

/*
 * Every account the database knows, with the filters applied. An
 * account appears once a mailbox of it changed, it logged in, or
 * `mailkeep usage scan` saw it.
 */
static int mku_accounts(sqlite3 *db, const struct mku_filter *f, struct mku_account **out,
                        size_t *n_out)
{
    static const char sql[] =
        "WITH accts AS (SELECT user FROM mailbox_usage UNION SELECT user FROM last_login"
        "        UNION SELECT user FROM accounts),"
        " sz AS (SELECT user, SUM(messages) AS m, SUM(vsize) AS v, COUNT(*) AS b"
        "        FROM mailbox_usage GROUP BY user),"
        " ll AS (SELECT user, MAX(time) AS t,"
        "        MAX(CASE WHEN service = 'imap' THEN time END) AS imap,"
        "        MAX(CASE WHEN service = 'pop3' THEN time END) AS pop3"
        "        FROM last_login GROUP BY user)"
        " SELECT a.user, COALESCE(sz.m, 0), COALESCE(sz.v, 0), COALESCE(sz.b, 0),"
        "        COALESCE(ll.t, 0), COALESCE(ll.imap, 0), COALESCE(ll.pop3, 0)"
        " FROM accts a LEFT JOIN sz ON sz.user = a.user LEFT JOIN ll ON ll.user = a.user"
        " WHERE (?1 IS NULL OR substr(a.user, instr(a.user, '@') + 1) = ?1 COLLATE NOCASE)"
        "   AND (?2 IS NULL OR COALESCE(ll.t, 0) < ?2)"
        "   AND (?3 IS NULL OR COALESCE(sz.v, 0) > ?3)"
        " ORDER BY a.user";
    sqlite3_stmt *st;
    struct mku_account *a = NULL;
    size_t n = 0, cap = 0;
    int rc;

    *out = NULL;
    *n_out = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        mku_err("usage database: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (f->domain != NULL)
        sqlite3_bind_text(st, 1, f->domain, -1, SQLITE_STATIC);
    if (f->inactive_days >= 0)
        sqlite3_bind_int64(st, 2, (long long) time(NULL) - f->inactive_days * MKU_DAY);
    if (f->over_bytes >= 0)
        sqlite3_bind_int64(st, 3, f->over_bytes);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *user = (const char *) sqlite3_column_text(st, 0);
        bool wanted = f->n_users == 0;

        for (size_t i = 0; i < f->n_users && !wanted; i++)
            wanted = strcasecmp(f->users[i], user) == 0;
        if (!wanted)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            a = mk_xrealloc(a, cap * sizeof(*a));
        }
        a[n] = (struct mku_account) {
            .user = mk_xstrdup(user),
            .messages = sqlite3_column_int64(st, 1),
            .vsize = sqlite3_column_int64(st, 2),
            .mailboxes = sqlite3_column_int64(st, 3),
            .last_login = sqlite3_column_int64(st, 4),
            .imap = sqlite3_column_int64(st, 5),
            .pop3 = sqlite3_column_int64(st, 6),
        };
        n++;
    }
    if (rc != SQLITE_DONE) {
        mku_err("usage database: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        mku_accounts_free(a, n);
        return -1;
    }
    sqlite3_finalize(st);
    *out = a;
    *n_out = n;
    return 0;
}

#define MKU_WHEN "%Y-%m-%d %H:%M"      /* when an account was last used */

static const char *mku_size(long long bytes, char *buf, size_t len)
{
    if (bytes >= 1024LL * 1024 * 1024)
        snprintf(buf, len, "%.1fG", bytes / (1024.0 * 1024 * 1024));
    else if (bytes >= 1024LL * 1024)
        snprintf(buf, len, "%.1fM", bytes / (1024.0 * 1024));
    else if (bytes >= 1024)
        snprintf(buf, len, "%.1fK", bytes / 1024.0);
    else
        snprintf(buf, len, "%lld", bytes);
    return buf;
}

enum mku_sort { MKU_BY_USER, MKU_BY_LOGIN, MKU_BY_SIZE };

static enum mku_sort mku_sort_key;

static int mku_compare(const void *pa, const void *pb)
{
    const struct mku_account *a = pa, *b = pb;

    switch (mku_sort_key) {
    case MKU_BY_LOGIN:                  /* longest inactive first */
        if (a->last_login != b->last_login)
            return a->last_login < b->last_login ? -1 : 1;
        break;
    case MKU_BY_SIZE:                   /* largest first */
        if (a->vsize != b->vsize)
            return a->vsize > b->vsize ? -1 : 1;
        break;
    case MKU_BY_USER:
        break;
    }
    return strcasecmp(a->user, b->user);
}

/* -d, -i, -o and -u: the filters report and purge share. */
static int mku_filter_option(struct mku_filter *f, int ch, const char *arg)
{
    long long v;

    switch (ch) {
    case 'd':
        f->domain = arg;
        return 0;
    case 'i':
        if (mk_parse_int(arg, &v) != 0 || v < 0) {
            mku_err("-i wants a number of days, not \"%s\"", arg);
            return -1;
        }
        f->inactive_days = v;
        return 0;
    case 'o':
        if (mk_parse_size(arg, &v) != 0 || v < 0) {
            mku_err("-o wants a size such as 500M, not \"%s\"", arg);
            return -1;
        }
        f->over_bytes = v;
        return 0;
    case 'u':
        f->users = mk_xrealloc(f->users, (f->n_users + 2) * sizeof(char *));
        f->users[f->n_users++] = (char *) arg;
        f->users[f->n_users] = NULL;
        return 0;
    case 'A':
        f->all = true;
        return 0;
    }
    return -1;
}

static int mku_report(const struct mk_config *cfg, int argc, char **argv)
{
    struct mku_filter f = {.inactive_days = -1, .over_bytes = -1};
    struct mku_account *a;
    sqlite3 *db;
    size_t n;
    bool json = false;
    int ch;

    mku_sort_key = MKU_BY_USER;
    optind = 1;
    while ((ch = getopt(argc, argv, "d:i:o:u:s:j")) != -1) {
        switch (ch) {
        case 's':
            if (strcmp(optarg, "login") == 0)
                mku_sort_key = MKU_BY_LOGIN;
            else if (strcmp(optarg, "size") == 0)
                mku_sort_key = MKU_BY_SIZE;
            else if (strcmp(optarg, "user") == 0)
                mku_sort_key = MKU_BY_USER;
            else {
                mku_err("-s wants login, size or user");
                free(f.users);
                return EX_USAGE;
            }
            break;
        case 'j':
            json = true;
            break;
        case '?':
            free(f.users);
            return EX_USAGE;
        default:
            if (mku_filter_option(&f, ch, optarg) != 0) {
                free(f.users);
                return EX_USAGE;
            }
        }
    }
    if (optind != argc) {
        mku_err("report takes options only");
        free(f.users);
        return EX_USAGE;
    }
    if ((db = mku_db_open(cfg)) == NULL) {
        free(f.users);
        return EX_NOINPUT;
    }
    if (mku_accounts(db, &f, &a, &n) != 0) {
        sqlite3_close(db);
        free(f.users);
        return EX_SOFTWARE;
    }
    sqlite3_close(db);
    free(f.users);
    qsort(a, n, sizeof(*a), mku_compare);
    if (!json)
        printf("%-32s %9s %8s %5s  %-16s  %-16s  %-16s\n", "ACCOUNT", "MESSAGES", "SIZE",
               "BOXES", "LAST LOGIN", "IMAP", "POP3");
    for (size_t i = 0; i < n; i++) {
        char s[32], l[32], im[32], po[32];

        if (json) {
            json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "user", a[i].user,
                                  "messages", (json_int_t) a[i].messages,
                                  "vsize", (json_int_t) a[i].vsize,
                                  "mailboxes", (json_int_t) a[i].mailboxes,
                                  "last_login", (json_int_t) a[i].last_login,
                                  "imap", (json_int_t) a[i].imap,
                                  "pop3", (json_int_t) a[i].pop3);
            char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

            puts(text);
            free(text);
            json_decref(o);
            continue;
        }
        printf("%-32s %9lld %8s %5lld  %-16s  %-16s  %-16s\n", a[i].user, a[i].messages,
               mku_size(a[i].vsize, s, sizeof(s)), a[i].mailboxes,
               mailkeep_time((time_t) a[i].last_login, MKU_WHEN, "never", l, sizeof(l)),
               mailkeep_time((time_t) a[i].imap, MKU_WHEN, "never", im, sizeof(im)),
               mailkeep_time((time_t) a[i].pop3, MKU_WHEN, "never", po, sizeof(po)));
    }
    mku_accounts_free(a, n);
    return EX_OK;
}

/* Run doveadm ARGS, collect its standard output. */
static int mku_doveadm(const struct mk_config *cfg, const char *const *args, char **out)
{
    return mk_run_cmd(mk_config_str(cfg, "usage", "doveadm"), args, NULL, 0, out);
}

/*
 * scan: ask doveadm for every mailbox of the accounts and send the
 * figures to mailkeep-auditd, forgetting mailboxes that are gone.
 */
static int mku_scan_user(struct au_client *c, sqlite3 *db, const struct mk_config *cfg,
                         const char *user, long long *boxes)
{
    const char *args[] = {"-f", "tab", "mailbox", "status", "-u", user,
                          "guid messages vsize", "*", NULL};
    char *out, *cursor, *line, *error = NULL;
    char **seen = NULL;
    size_t n_seen = 0;
    bool header = true;
    /* doveadm orders the columns its own way: find them by name */
    int col_name = -1, col_guid = -1, col_messages = -1, col_vsize = -1;
    int rc = 0;

    if (mku_doveadm(cfg, args, &out) != 0) {
        mku_err("%s: doveadm mailbox status failed", user);
        return -1;
    }
    cursor = out;
    while ((line = mk_str_next_line(&cursor)) != NULL) {
        size_t nf;
        char **fields;

        fields = mk_str_split(line, "\t", &nf);
        if (header) {                   /* doveadm -f tab names its columns first */
            header = false;
            for (size_t i = 0; i < nf; i++) {
                if (strcmp(fields[i], "mailbox") == 0)
                    col_name = (int) i;
                else if (strcmp(fields[i], "guid") == 0)
                    col_guid = (int) i;
                else if (strcmp(fields[i], "messages") == 0)
                    col_messages = (int) i;
                else if (strcmp(fields[i], "vsize") == 0)
                    col_vsize = (int) i;
            }
            mk_str_array_free(fields);
            if (col_name < 0 || col_guid < 0 || col_messages < 0 || col_vsize < 0) {
                mku_err("%s: doveadm mailbox status: unexpected columns \"%s\"", user, line);
                rc = -1;
                break;
            }
            continue;
        }
        if (nf == 4) {
            json_t *u = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "kind", "mailbox", "user", user,
                                  "mailbox_guid", fields[col_guid], "mailbox", fields[col_name],
                                  "messages",
                                  (json_int_t) strtoll(fields[col_messages], NULL, 10),
                                  "vsize", (json_int_t) strtoll(fields[col_vsize], NULL, 10));

            if (au_client_send(c, 'U', u, &error) != 0)
                rc = -1;
            json_decref(u);
            seen = mk_xrealloc(seen, (n_seen + 1) * sizeof(char *));
            seen[n_seen++] = mk_xstrdup(fields[col_guid]);
            (*boxes)++;
        }
        mk_str_array_free(fields);
        if (rc != 0)
            break;
    }
    free(out);
    /* The account exists, with or without mailboxes (one never used has
       none): the report lists it. */
    if (rc == 0) {
        json_t *u = json_pack("{s:s,s:s}", "kind", "account", "user", user);

        if (au_client_send(c, 'U', u, &error) != 0)
            rc = -1;
        json_decref(u);
    }
    /* Mailboxes the database has and Dovecot no longer has. */
    if (rc == 0 && db != NULL) {
        sqlite3_stmt *st;

        if (sqlite3_prepare_v2(db, "SELECT mailbox_guid FROM mailbox_usage WHERE user = ?1",
                               -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
            while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
                const char *guid = (const char *) sqlite3_column_text(st, 0);
                bool found = false;

                for (size_t i = 0; i < n_seen && !found; i++)
                    found = strcmp(seen[i], guid) == 0;
                if (!found) {
                    json_t *u = json_pack("{s:s,s:s,s:s}", "kind", "mailbox-delete",
                                          "user", user, "mailbox_guid", guid);

                    if (au_client_send(c, 'U', u, &error) != 0)
                        rc = -1;
                    json_decref(u);
                }
            }
            sqlite3_finalize(st);
        }
    }
    for (size_t i = 0; i < n_seen; i++)
        free(seen[i]);
    free(seen);
    if (error != NULL) {
        mku_err("%s", error);
        free(error);
    }
    return rc;
}

static int mku_scan(const struct mk_config *cfg, int argc, char **argv)
{
    struct mku_filter f = {.inactive_days = -1, .over_bytes = -1};
    struct au_client *c;
    char **users, *error = NULL;
    sqlite3 *db = NULL;
    long long boxes = 0;
    size_t done = 0;
    int ch, rc = EX_OK;

    optind = 1;
    while ((ch = getopt(argc, argv, "u:A")) != -1) {
        if (ch == '?' || mku_filter_option(&f, ch, optarg) != 0) {
            free(f.users);
            return EX_USAGE;
        }
    }
    if (optind != argc || (f.n_users == 0) == !f.all) {
        mku_err("scan wants -u USER (repeatable) or -A");
        free(f.users);
        return EX_USAGE;
    }
    users = f.all ? mailkeep_mail_users(cfg) : f.users;
    if (users == NULL)
        return EX_UNAVAILABLE;
    if ((c = au_client_open(mk_config_str(cfg, "audit", "socket"), &error)) == NULL) {
        mku_err("%s", error);
        free(error);
        rc = EX_UNAVAILABLE;
        goto out;
    }
    /* The database may not exist yet: mailkeep-auditd creates it. */
    if (sqlite3_open_v2(mk_config_str(cfg, "audit", "db"), &db, SQLITE_OPEN_READONLY, NULL)
        != SQLITE_OK) {
        sqlite3_close(db);
        db = NULL;
    } else
        sqlite3_busy_timeout(db, 10000);
    for (size_t i = 0; users[i] != NULL; i++) {
        if (mku_scan_user(c, db, cfg, users[i], &boxes) != 0) {
            rc = EX_TEMPFAIL;
            continue;
        }
        done++;
    }
    if (au_client_sync(c, &error) != 0) {
        mku_err("%s", error);
        free(error);
        rc = EX_TEMPFAIL;
    }
    au_client_close(c);
    sqlite3_close(db);
    printf("scanned %zu accounts, %lld mailboxes\n", done, boxes);
out:
    if (f.all)
        mk_str_array_free(users);
    else
        free(f.users);
    return rc;
}

/* doveadm's exit code for "not found" (DOVEADM_EX_NOTFOUND): a search
   that names one mailbox the account does not have. */
#define MKU_DOVEADM_NOTFOUND 68

/* How many messages a doveadm search query finds, and in how many
   mailboxes: 0, or doveadm's exit code, or -1. */
static int mku_count(const struct mk_config *cfg, const char *user, char **query,
                     long long *messages, long long *mailboxes)
{
    const char *args[64];
    char *out, *cursor, *line, *last_guid = NULL;
    size_t k = 0;
    int rc;

    args[k++] = "search";
    args[k++] = "-u";
    args[k++] = user;
    for (size_t i = 0; query[i] != NULL && k < 62; i++)
        args[k++] = query[i];
    args[k] = NULL;
    *messages = *mailboxes = 0;
    if ((rc = mku_doveadm(cfg, args, &out)) != 0)
        return rc;
    cursor = out;
    while ((line = mk_str_next_line(&cursor)) != NULL) {
        char *sp = strchr(line, ' ');

        if (sp == NULL)
            continue;
        *sp = '\0';                     /* "MAILBOX-GUID UID" */
        (*messages)++;
        if (last_guid == NULL || strcmp(last_guid, line) != 0) {
            (*mailboxes)++;
            free(last_guid);
            last_guid = mk_xstrdup(line);
        }
    }
    free(last_guid);
    free(out);
    return 0;
}

/*
 * purge: for each chosen account, count what the query finds, record
 * the purge in the audit log (refusing to go on if that fails), expunge
 * through doveadm, and record the outcome.
 */
static int mku_purge(const struct mk_config *cfg, int argc, char **argv)
{
    struct mku_filter f = {.inactive_days = -1, .over_bytes = -1};
    char **mailboxes = NULL, **query = NULL, *error = NULL;
    const char *before = NULL, *larger = NULL;
    size_t n_mailboxes = 0, n_query = 0;
    bool dry_run = false, all_mail = false;
    struct mku_account *accounts = NULL;
    size_t n_accounts = 0;
    struct au_client *c = NULL;
    long long total = 0, v;
    char criteria[512];
    int ch, rc = EX_OK;

    optind = 1;
    while ((ch = getopt(argc, argv, "d:i:o:u:Am:b:l:an")) != -1) {
        switch (ch) {
        case 'm':
            mailboxes = mk_xrealloc(mailboxes, (n_mailboxes + 1) * sizeof(char *));
            mailboxes[n_mailboxes++] = optarg;
            break;
        case 'b':
            if (mk_parse_duration(optarg, &v) != 0 || v <= 0) {
                mku_err("-b wants an age such as 365d, not \"%s\"", optarg);
                rc = EX_USAGE;
                goto out;
            }
            before = optarg;
            break;
        case 'l':
            if (mk_parse_size(optarg, &v) != 0 || v < 0) {
                mku_err("-l wants a size such as 10M, not \"%s\"", optarg);
                rc = EX_USAGE;
                goto out;
            }
            larger = optarg;
            break;
        case 'a':
            all_mail = true;
            break;
        case 'n':
            dry_run = true;
            break;
        case '?':
            rc = EX_USAGE;
            goto out;
        default:
            if (mku_filter_option(&f, ch, optarg) != 0) {
                rc = EX_USAGE;
                goto out;
            }
        }
    }
    if (optind != argc) {
        mku_err("purge takes options only");
        rc = EX_USAGE;
        goto out;
    }
    if (f.n_users == 0 && f.domain == NULL && f.inactive_days < 0 && f.over_bytes < 0 && !f.all) {
        mku_err("purge: choose accounts with -u, -d, -i, -o, or -A for every account");
        rc = EX_USAGE;
        goto out;
    }
    if (before == NULL && larger == NULL && n_mailboxes == 0 && !all_mail) {
        mku_err("purge: choose mail with -b AGE, -l SIZE or -m MAILBOX, or -a for all of it");
        rc = EX_USAGE;
        goto out;
    }

    {
        sqlite3 *db = mku_db_open(cfg);

        if (db == NULL) {
            rc = EX_NOINPUT;
            goto out;
        }
        if (mku_accounts(db, &f, &accounts, &n_accounts) != 0) {
            sqlite3_close(db);
            rc = EX_SOFTWARE;
            goto out;
        }
        sqlite3_close(db);
    }
    /* -u names accounts the database may not know yet: take them as given. */
    for (size_t i = 0; i < f.n_users; i++) {
        bool known = false;

        for (size_t j = 0; j < n_accounts && !known; j++)
            known = strcasecmp(accounts[j].user, f.users[i]) == 0;
        if (!known && f.domain == NULL && f.inactive_days < 0 && f.over_bytes < 0) {
            accounts = mk_xrealloc(accounts, (n_accounts + 1) * sizeof(*accounts));
            accounts[n_accounts++] = (struct mku_account) {.user = mk_xstrdup(f.users[i])};
        }
    }

    /* The doveadm query: (mailbox A OR mailbox B) savedbefore X larger Y */
    query = mk_xcalloc(4 * n_mailboxes + 16, sizeof(char *));
    if (n_mailboxes > 1)
        query[n_query++] = mk_xstrdup("(");
    for (size_t i = 0; i < n_mailboxes; i++) {
        if (i > 0)
            query[n_query++] = mk_xstrdup("OR");
        query[n_query++] = mk_xstrdup("mailbox");
        query[n_query++] = mk_xstrdup(mailboxes[i]);
    }
    if (n_mailboxes > 1)
        query[n_query++] = mk_xstrdup(")");
    if (n_mailboxes == 0) {
        query[n_query++] = mk_xstrdup("mailbox");
        query[n_query++] = mk_xstrdup("*");
    }
    if (before != NULL) {
        query[n_query++] = mk_xstrdup("savedbefore");
        query[n_query++] = mk_xstrdup(before);
    }
    if (larger != NULL) {
        mk_parse_size(larger, &v);
        query[n_query++] = mk_xstrdup("larger");
        query[n_query++] = mk_xasprintf("%lld", v);
    }
    if (before == NULL && larger == NULL) {
        query[n_query++] = mk_xstrdup("all");
    }
    criteria[0] = '\0';
    for (size_t i = 0; i < n_query; i++) {
        size_t len = strlen(criteria);

        snprintf(criteria + len, sizeof(criteria) - len, "%s%s", i ? " " : "", query[i]);
    }

    /* What doveadm does (its searches, a dry run's too, and its expunges)
       is recorded by the plugin under this name. */
    setenv("MAILKEEP_ADMIN", mailkeep_admin_name(), 1);
    if (!dry_run
        && (c = au_client_open(mk_config_str(cfg, "audit", "socket"), &error)) == NULL) {
        mku_err("%s: nothing purged, since the purge could not be audited", error);
        free(error);
        rc = EX_UNAVAILABLE;
        goto out;
    }
    for (size_t i = 0; i < n_accounts; i++) {
        const char *user = accounts[i].user;
        long long messages = 0, boxes = 0;
        const char **args;
        json_t *rec;
        int erc;

        if ((erc = mku_count(cfg, user, query, &messages, &boxes)) == MKU_DOVEADM_NOTFOUND
            && n_mailboxes == 1) {
            printf("%s: no mailbox %s: nothing to remove\n", user, mailboxes[0]);
            continue;
        }
        if (erc != 0) {
            mku_err("%s: doveadm search failed; skipped", user);
            rc = EX_TEMPFAIL;
            continue;
        }
        if (dry_run) {
            printf("%s: would remove %lld messages from %lld mailboxes (%s)\n", user, messages,
                   boxes, criteria);
            total += messages;
            continue;
        }
        if (messages == 0) {
            printf("%s: nothing to remove\n", user);
            continue;
        }
        rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "op", "purge", "user", user,
                        "admin", mailkeep_admin_name(), "via", "mailkeep usage purge",
                        "criteria", criteria, "messages", (json_int_t) messages,
                        "mailboxes", (json_int_t) boxes);
        if (au_client_send(c, 'A', rec, &error) != 0 || au_client_sync(c, &error) != 0) {
            mku_err("%s: %s: not purged, since the purge could not be audited", user, error);
            free(error);
            error = NULL;
            json_decref(rec);
            rc = EX_UNAVAILABLE;
            break;
        }
        json_decref(rec);
        args = mk_xcalloc(n_query + 4, sizeof(char *));
        args[0] = "expunge";
        args[1] = "-u";
        args[2] = user;
        for (size_t k = 0; k < n_query; k++)
            args[3 + k] = query[k];
        {
            char *out = NULL;

            erc = mku_doveadm(cfg, args, &out);
            free(out);
        }
        free(args);
        if (erc != 0) {
            mku_err("%s: doveadm expunge failed (%d)", user, erc);
            rc = EX_TEMPFAIL;
            continue;
        }
        printf("%s: removed %lld messages from %lld mailboxes\n", user, messages, boxes);
        total += messages;
    }
    if (n_accounts > 1 || dry_run)
        printf("%s%lld messages from %zu accounts\n", dry_run ? "dry run: would remove " : "removed ",
               total, n_accounts);
out:
    if (c != NULL)
        au_client_close(c);
    mku_accounts_free(accounts, n_accounts);
    if (query != NULL)
        mk_str_array_free(query);
    free(mailboxes);
    free(f.users);
    return rc;
}

int mailkeep_usage(const char *config_path, int argc, char **argv)
{
    struct mk_config *cfg;
    int rc;

    if (argc < 1) {
        fprintf(stderr, "usage: mailkeep usage report [-s login|size|user] [-d DOMAIN] "
                "[-i DAYS] [-o SIZE] [-u USER] [-j]\n"
                "       mailkeep usage scan -u USER... | -A\n"
                "       mailkeep usage purge (-u USER... | -d DOMAIN | -i DAYS | -o SIZE | -A)\n"
                "                            (-b AGE | -l SIZE | -m MAILBOX... | -a) [-n]\n");
        return EX_USAGE;
    }
    if ((cfg = mailkeep_load_config(config_path)) == NULL)
        return EX_CONFIG;
    if (strcmp(argv[0], "report") == 0)
        rc = mku_report(cfg, argc, argv);
    else if (strcmp(argv[0], "scan") == 0)
        rc = mku_scan(cfg, argc, argv);
    else if (strcmp(argv[0], "purge") == 0)
        rc = mku_purge(cfg, argc, argv);
    else {
        mku_err("unknown subcommand \"%s\"", argv[0]);
        rc = EX_USAGE;
    }
    mk_config_unref(cfg);
    return rc;
}
