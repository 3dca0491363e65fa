/*
 * mailkeep password, mailkeep report passwords - what pam_mailkeep's
 * password policy knows of accounts. See mailkeep(8), PASSWORDS.
 *
 *	mailkeep password expire USER...	require a change at the next login
 *	mailkeep password status USER		the password's age and state
 *	mailkeep report passwords [-m] [-s]	accounts by password age, expired,
 *						locked, second factor
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "mailkeep.h"
#include "mk_config.h"
#include "mk_directory.h"
#include "mk_notify.h"
#include "mk_otppolicy.h"
#include "mk_otpstore.h"
#include "mk_util.h"

/* A time in the listings, "-" when there is none. */
#define PW_DATE(t, buf) mailkeep_time((t), "%Y-%m-%d", "-", (buf), sizeof(buf))

struct pw_account {
    char *user;
    struct mk_password_state st;
    long age_days;                      /* -1: unknown */
    bool locked;
    bool enrolled;
    size_t napppass;
    enum mk_otp_policy policy;
};

static struct mk_otp_store *pw_store(const struct mk_config *cfg)
{
    struct mk_otp_store *store;
    char *error = NULL;

    store = mk_otp_store_open(mk_config_str(cfg, "otp", "store"),
                              mk_config_str(cfg, "otp", "key_file"), true, &error);
    if (store == NULL) {
        fprintf(stderr, "mailkeep: %s\n", error);
        free(error);
    }
    return store;
}

/* One account's state: 0, or an exit code after saying why. */
static int pw_account(const struct mk_config *cfg, struct mk_directory *dir,
                      struct mk_otp_store *store, const char *user, time_t now,
                      struct pw_account *a)
{
    struct mk_dir_user *u = NULL;
    struct mk_otp_record r;
    const char *source;
    char *error = NULL;

    memset(a, 0, sizeof(*a));
    if (mk_directory_user(dir, user, &u) == MK_DIR_TEMPFAIL) {
        fprintf(stderr, "mailkeep: %s: the directory does not answer\n", user);
        return EX_TEMPFAIL;
    }
    if (mk_otp_store_read(store, user, &r, &error) != 0) {
        fprintf(stderr, "mailkeep: %s\n", error);
        free(error);
        if (u != NULL)
            mk_dir_user_unref(u);
        return EX_IOERR;
    }
    a->user = mk_xstrdup(user);
    mk_password_state(cfg, &r, u, now, &a->st);
    a->age_days = a->st.changed != 0 ? (long) ((now - a->st.changed) / 86400) : -1;
    a->locked = r.locked && (r.locked_until == 0 || now < r.locked_until);
    a->enrolled = r.token.present;
    a->napppass = r.napppass;
    if (mk_otp_policy_of(cfg, u, &a->policy, &source, &error) != 0) {
        fprintf(stderr, "mailkeep: %s\n", error);
        free(error);
        a->policy = MK_OTP_REQUIRED;
    }
    mk_otp_record_free(&r);
    if (u != NULL)
        mk_dir_user_unref(u);
    return 0;
}

static int pw_expire(const struct mk_config *cfg, int argc, char **argv)
{
    struct mk_otp_store *store;
    int rc = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: mailkeep password expire USER...\n");
        return EX_USAGE;
    }
    if ((store = pw_store(cfg)) == NULL)
        return EX_CONFIG;
    for (int i = 1; i < argc; i++) {
        struct mk_otp_record r;
        struct mk_otp_lock *lock;
        char *user, *error = NULL;
        int urc;

        if ((user = mailkeep_account(cfg, argv[i], &urc)) == NULL) {
            rc = urc;
            continue;
        }
        if ((lock = mk_otp_store_lock(store, user, &r, &error)) == NULL) {
            fprintf(stderr, "mailkeep: %s\n", error);
            free(error);
            free(user);
            rc = EX_IOERR;
            continue;
        }
        free(r.must_change);
        r.must_change = mk_xstrdup("reset");
        r.must_changed = time(NULL);
        if (mk_otp_store_write(lock, &r, &error) != 0) {
            fprintf(stderr, "mailkeep: %s\n", error);
            free(error);
            rc = EX_IOERR;
        } else {
            printf("%s: must change the password at the next login\n", user);
        }
        mk_otp_store_unlock(lock);
        mk_otp_record_free(&r);
        free(user);
    }
    mk_otp_store_close(store);
    return rc;
}

static const char *pw_state_word(const struct pw_account *a)
{
    if (a->locked)
        return "locked";
    if (a->st.must_change)
        return a->st.reason;
    if (a->st.warn)
        return "expiring";
    return "ok";
}

static void pw_line(FILE *fp, const struct pw_account *a)
{
    char b1[32], b2[32], age[24];

    if (a->age_days < 0)
        snprintf(age, sizeof(age), "?");
    else
        snprintf(age, sizeof(age), "%ld", a->age_days);
    fprintf(fp, "%-32s %6s  %-10s %-10s %-9s %-14s %-4s %zu\n", a->user, age,
            PW_DATE(a->st.changed, b1), PW_DATE(a->st.expires, b2),
            pw_state_word(a), mk_otp_policy_name(a->policy), a->enrolled ? "yes" : "no",
            a->napppass);
}

static int pw_status(const struct mk_config *cfg, int argc, char **argv)
{
    struct mk_otp_store *store;
    struct mk_directory *dir;
    struct pw_account a;
    char *user, *error = NULL;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: mailkeep password status USER\n");
        return EX_USAGE;
    }
    if ((store = pw_store(cfg)) == NULL)
        return EX_CONFIG;
    if ((dir = mk_directory_open(cfg, &error)) == NULL) {
        fprintf(stderr, "mailkeep: directory: %s\n", error);
        free(error);
        mk_otp_store_close(store);
        return EX_CONFIG;
    }
    user = mk_xstrdup(argv[1]);
    mk_str_lower(user);
    if ((rc = pw_account(cfg, dir, store, user, time(NULL), &a)) == 0) {
        printf("%-32s %6s  %-10s %-10s %-9s %-14s %-4s %s\n", "ACCOUNT", "AGE", "CHANGED",
               "EXPIRES", "STATE", "2FA POLICY", "2FA", "APP");
        pw_line(stdout, &a);
        free(a.user);
    }
    free(user);
    mk_directory_unref(dir);
    mk_otp_store_close(store);
    return rc;
}

int mailkeep_password(const char *config_path, int argc, char **argv)
{
    struct mk_config *cfg;
    int rc;

    if (argc < 1) {
        fprintf(stderr, "usage: mailkeep password expire USER... | status USER\n");
        return EX_USAGE;
    }
    if ((cfg = mailkeep_load_config(config_path)) == NULL)
        return EX_CONFIG;
    if (strcmp(argv[0], "expire") == 0) {
        rc = pw_expire(cfg, argc, argv);
    } else if (strcmp(argv[0], "status") == 0) {
        rc = pw_status(cfg, argc, argv);
    } else {
        fprintf(stderr, "usage: mailkeep password expire USER... | status USER\n");
        rc = EX_USAGE;
    }
    mk_config_unref(cfg);
    return rc;
}

static int pw_cmp(const void *pa, const void *pb)
{
    const struct pw_account *a = pa, *b = pb;

    if (a->age_days != b->age_days)
        return a->age_days < b->age_days ? 1 : -1;      /* oldest first, unknown last */
    return strcmp(a->user, b->user);
}

static bool pw_listed(char **users, size_t n, const char *user)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(users[i], user) == 0)
            return true;
    return false;
}

/* The report's text: a summary, then one line per account. */
static char *pw_report_text(const struct mk_config *cfg, struct pw_account *a, size_t n)
{
    size_t expired = 0, reset = 0, expiring = 0, locked = 0, enrolled = 0, missing = 0,
           unknown = 0, buckets[4] = {0, 0, 0, 0};
    long long max_age = mk_config_num(cfg, "password", "max_age");
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);

    if (fp == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (a[i].st.must_change && strcmp(a[i].st.reason, "expired") == 0)
            expired++;
        else if (a[i].st.must_change)
            reset++;
        if (a[i].st.warn)
            expiring++;
        if (a[i].locked)
            locked++;
        if (a[i].enrolled)
            enrolled++;
        else if (a[i].policy != MK_OTP_OPTIONAL)
            missing++;
        if (a[i].age_days < 0)
            unknown++;
        else
            buckets[a[i].age_days < 30 ? 0 : a[i].age_days < 90 ? 1 : a[i].age_days < 365 ? 2 : 3]++;
    }
    fprintf(fp, "Mailkeep password report: %zu accounts\n\n", n);
    fprintf(fp, "  password age        under 30 days %zu, 30-89 %zu, 90-364 %zu, "
                "a year or more %zu, unknown %zu\n", buckets[0], buckets[1], buckets[2],
            buckets[3], unknown);
    if (max_age > 0)
        fprintf(fp, "  expired             %zu (maximum age %lld days), expiring soon %zu\n",
                expired, max_age / 86400, expiring);
    else
        fprintf(fp, "  expired             no maximum age is set ([password] max_age)\n");
    fprintf(fp, "  must change         %zu (reset by an administrator, or first login)\n", reset);
    fprintf(fp, "  locked out          %zu\n", locked);
    fprintf(fp, "  second factor       %zu enrolled; %zu whose policy requires one have none\n\n",
            enrolled, missing);
    fprintf(fp, "%-32s %6s  %-10s %-10s %-9s %-14s %-4s %s\n", "ACCOUNT", "AGE", "CHANGED",
            "EXPIRES", "STATE", "2FA POLICY", "2FA", "APP");
    for (size_t i = 0; i < n; i++)
        pw_line(fp, &a[i]);
    fclose(fp);
    return text;
}

int mailkeep_report(const char *config_path, int argc, char **argv)
{
    struct mk_config *cfg;
    struct mk_otp_store *store = NULL;
    struct mk_directory *dir = NULL;
    struct pw_account *accounts = NULL;
    char **mail_users = NULL, **store_users = NULL, *error = NULL, *text = NULL;
    size_t n = 0, nmail = 0;
    bool mail = false, only_store = false;
    time_t now = time(NULL);
    int ch, rc = 0;

    if (argc < 1 || strcmp(argv[0], "passwords") != 0) {
        fprintf(stderr, "usage: mailkeep report passwords [-m] [-s]\n");
        return EX_USAGE;
    }
    optind = 1;
    while ((ch = getopt(argc, argv, "ms")) != -1) {
        if (ch == 'm')
            mail = true;
        else if (ch == 's')
            only_store = true;
        else {
            fprintf(stderr, "usage: mailkeep report passwords [-m] [-s]\n");
            return EX_USAGE;
        }
    }
    if ((cfg = mailkeep_load_config(config_path)) == NULL)
        return EX_CONFIG;
    if (mail) {
        char **to = mk_config_list(cfg, "password", "report_to");
        bool none = to[0] == NULL;

        mk_str_array_free(to);
        if (none) {
            fprintf(stderr, "mailkeep: -m: [password] report_to names no one\n");
            rc = EX_CONFIG;
            goto out;
        }
    }
    if ((store = pw_store(cfg)) == NULL || (dir = mk_directory_open(cfg, &error)) == NULL) {
        if (error != NULL)
            fprintf(stderr, "mailkeep: directory: %s\n", error);
        free(error);
        rc = EX_CONFIG;
        goto out;
    }
    /* Every mail account, and whoever else the store knows (system accounts). */
    if (!only_store && (mail_users = mailkeep_mail_users(cfg)) == NULL) {
        rc = EX_UNAVAILABLE;
        goto out;
    }
    if ((store_users = mk_otp_store_users(store, &error)) == NULL) {
        fprintf(stderr, "mailkeep: %s\n", error);
        free(error);
        rc = EX_IOERR;
        goto out;
    }
    while (mail_users != NULL && mail_users[nmail] != NULL)
        nmail++;
    for (size_t i = 0; i < nmail || store_users[i - nmail] != NULL; i++) {
        char *user = i < nmail ? mail_users[i] : store_users[i - nmail];

        mk_str_lower(user);
        if (i >= nmail && pw_listed(mail_users, nmail, user))
            continue;
        accounts = mk_xrealloc(accounts, (n + 1) * sizeof(*accounts));
        if ((rc = pw_account(cfg, dir, store, user, now, &accounts[n])) != 0)
            goto out;
        n++;
    }
    qsort(accounts, n, sizeof(*accounts), pw_cmp);
    if ((text = pw_report_text(cfg, accounts, n)) == NULL) {
        rc = EX_OSERR;
        goto out;
    }
    if (!mail) {
        fputs(text, stdout);
    } else {
        char **to = mk_config_list(cfg, "password", "report_to");
        size_t nto = 0;
        char *list, *msg, **cmd;

        while (to[nto] != NULL)
            nto++;
        list = mk_notify_join(to, nto);
        msg = mk_notify_compose(mk_config_str(cfg, "password", "report_from"), list,
                                "Mailkeep password report", text);
        cmd = mk_str_split(mk_config_str(cfg, "password", "notify_command"), " \t", NULL);
        if (mk_notify_send(cmd, msg) != 0) {
            fprintf(stderr, "mailkeep: the report could not be mailed (%s)\n",
                    mk_config_str(cfg, "password", "notify_command"));
            rc = EX_UNAVAILABLE;
        } else {
            printf("report on %zu accounts mailed to %s\n", n, list);
        }
        mk_str_array_free(cmd);
        free(msg);
        free(list);
        mk_str_array_free(to);
    }
out:
    for (size_t i = 0; i < n; i++)
        free(accounts[i].user);
    free(accounts);
    free(text);
    mk_str_array_free(mail_users);
    mk_str_array_free(store_users);
    if (dir != NULL)
        mk_directory_unref(dir);
    mk_otp_store_close(store);
    mk_config_unref(cfg);
    return rc;
}
