/*
 * mailkeep - the administration command. See mailkeep(8).
 */
#include "config.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "mailkeep.h"
#include "mk_config.h"
#include "mk_directory.h"
#include "mk_log.h"
#include "mk_run.h"
#include "mk_util.h"

#ifndef MK_SYSCONFDIR
#define MK_SYSCONFDIR "/etc"
#endif

static const struct {
    const char *name;
    int (*run)(const char *, int, char **);
    const char *summary;
} mailkeep_commands[] = {
    {"config", mailkeep_config, "check | show [-a]: check or print mailkeep.conf"},
    {"directory", mailkeep_directory, "domain DOMAIN | user ADDRESS: ask the directory"},
#ifdef HAVE_DLP
    {"dlp", mailkeep_dlp, "scan [-m|-f] [-d DIRECTION] FILE|-: what the detectors find"},
    {"quarantine", mailkeep_quarantine, "list | show ID | release ID... | delete ID...: held mail"},
#endif
#ifdef HAVE_ARCHIVE
    {"archive", mailkeep_archive,
     "init | ingest | search | show | verify | export | import | reindex: the archive"},
    {"crypt", mailkeep_crypt,
     "init | status | rotate | encrypt-existing | password | request | approve | recover"},
#endif
#ifdef HAVE_AUDIT
    {"audit", mailkeep_audit, "init | verify | search | reads: the audit log (mailkeep-auditd)"},
    {"usage", mailkeep_usage, "report | scan | purge: accounts by last login and mailbox space"},
#endif
#ifdef HAVE_PAM
    {"otp", mailkeep_otp,
     "enroll | confirm | list | revoke | recovery | apppass | unlock: second factors"},
    {"password", mailkeep_password, "expire | status USER: password changes required"},
    {"report", mailkeep_report, "passwords [-m]: accounts by password age, lockout, 2FA"},
#endif
#ifdef HAVE_RECALL
    {"recall", mailkeep_recall, "MESSAGE-ID | list | release: recall sent mail, undo-send"},
#endif
};

static void mailkeep_help(FILE *fp)
{
    fprintf(fp, "usage: mailkeep [-c config] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(mailkeep_commands) / sizeof(mailkeep_commands[0]); i++)
        fprintf(fp, "  %-10s %s\n", mailkeep_commands[i].name, mailkeep_commands[i].summary);
}

struct mk_config *mailkeep_load_config(const char *path)
{
    struct mk_config *cfg;
    char *error = NULL;

    if ((cfg = mk_config_load(path, &error)) == NULL) {
        fprintf(stderr, "%s\n", error);
        free(error);
    }
    return cfg;
}

const char *mailkeep_admin_name(void)
{
    const char *name = getenv("SUDO_USER");
    struct passwd *pw;

    if (name != NULL && *name != '\0')
        return name;
    if ((pw = getpwuid(getuid())) != NULL)
        return pw->pw_name;
    return "";
}

const char *mailkeep_time(time_t t, const char *format, const char *none, char *buf,
                          size_t len)
{
    struct tm tm;

    if (t <= 0)
        return none;
    localtime_r(&t, &tm);
    /* The callers' formats are checked at their calls (format(strftime)). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    strftime(buf, len, format, &tm);
#pragma GCC diagnostic pop
    return buf;
}

char *mailkeep_account(const struct mk_config *cfg, const char *arg, int *rc)
{
    struct mk_directory *dir;
    struct mk_dir_user *u = NULL;
    char *error = NULL, *user = mk_xstrdup(arg);
    enum mk_dir_status st;

    mk_str_lower(user);
    if (strchr(user, '@') == NULL)
        return user;                    /* a system account: PAM knows it, not the directory */
    if ((dir = mk_directory_open(cfg, &error)) == NULL) {
        fprintf(stderr, "mailkeep: directory: %s\n", error);
        free(error);
        free(user);
        *rc = EX_CONFIG;
        return NULL;
    }
    st = mk_directory_user(dir, user, &u);
    mk_directory_unref(dir);
    if (u != NULL)
        mk_dir_user_unref(u);
    if (st == MK_DIR_FOUND)
        return user;
    fprintf(stderr, "mailkeep: %s: %s\n", user,
            st == MK_DIR_NOT_FOUND ? "not in the directory" : "the directory does not answer");
    *rc = st == MK_DIR_NOT_FOUND ? 1 : EX_TEMPFAIL;
    free(user);
    return NULL;
}

char **mailkeep_mail_users(const struct mk_config *cfg)
{
    const char *args[] = {"user", "*", NULL};
    char *out, *cursor, *line;
    char **users = NULL;
    size_t n = 0;

    if (mk_run_cmd(mk_config_str(cfg, "usage", "doveadm"), args, NULL, 0, &out) != 0) {
        fprintf(stderr, "mailkeep: doveadm user '*' failed: does the userdb support "
                        "iteration?\n");
        return NULL;
    }
    cursor = out;
    while ((line = mk_str_next_line(&cursor)) != NULL) {
        line = mk_str_trim(line);
        if (*line == '\0')
            continue;
        users = mk_xrealloc(users, (n + 2) * sizeof(char *));
        users[n++] = mk_xstrdup(line);
        users[n] = NULL;
    }
    free(out);
    if (users == NULL)
        users = mk_xcalloc(1, sizeof(char *));
    return users;
}

int main(int argc, char **argv)
{
    const char *config_path = MK_SYSCONFDIR "/mailkeep/mailkeep.conf";
    int ch;

    mk_log_open("mailkeep", MK_LOG_STDERR, 0);
    while ((ch = getopt(argc, argv, "+c:hV")) != -1) {
        switch (ch) {
        case 'c':
            config_path = optarg;
            break;
        case 'h':
            mailkeep_help(stdout);
            return 0;
        case 'V':
            printf("mailkeep %s\n", PACKAGE_VERSION);
            return 0;
        default:
            mailkeep_help(stderr);
            return EX_USAGE;
        }
    }
    if (optind >= argc) {
        mailkeep_help(stderr);
        return EX_USAGE;
    }
    for (size_t i = 0; i < sizeof(mailkeep_commands) / sizeof(mailkeep_commands[0]); i++)
        if (strcmp(argv[optind], mailkeep_commands[i].name) == 0)
            return mailkeep_commands[i].run(config_path, argc - optind - 1, argv + optind + 1);
    fprintf(stderr, "mailkeep: unknown command '%s'\n", argv[optind]);
    mailkeep_help(stderr);
    return EX_USAGE;
}
