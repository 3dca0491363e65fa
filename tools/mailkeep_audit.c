/*
 * mailkeep audit - the audit log's command. See mailkeep(8).
 *
 * init, verify, search, reads: each a thin layer over au_keys, au_log and
 * au_db, which know nothing of the command line. mailkeep-auditd is the
 * log's only writer; everything here reads (init only creates).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "au_db.h"
#include "au_keys.h"
#include "au_log.h"
#include "au_proto.h"
#include "mailkeep.h"
#include "mk_config.h"
#include "mk_util.h"

/* verify's own exit codes, which scripts test */
#define MKAU_INTACT	0
#define MKAU_PROBLEMS	1
#define MKAU_ERROR	2

struct mkau_ctx {
    struct mk_config *cfg;
    const char *log_dir, *db, *keys_dir, *user;
};

static const char mkau_usage[] =
    "usage: mailkeep audit init\n"
    "       mailkeep audit verify [-k PUBKEY]\n"
    "       mailkeep audit search [-u USER] [-o OP,...] [-s SINCE] [-e UNTIL] [-m MAILBOX]\n"
    "                             [-a] [-j]\n"
    "       mailkeep audit reads [-u USER] [-i MESSAGE-ID]\n"
    "SINCE and UNTIL: YYYY-MM-DD[THH:MM[:SS]] (local time) or an age: 30m, 12h, 7d, 2w\n";

static void mkau_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void mkau_err(const char *fmt, ...)
{
    va_list ap;

    fputs("mailkeep audit: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---------------------------------------------------------------- init */

/* mkdir -p, the last component with mode. */
static int mkau_make_dirs(const char *path, mode_t mode, char **error)
{
    char *p = mk_xstrdup(path);
    struct stat st;

    for (char *s = p + 1; ; s++) {
        bool last = *s == '\0';

        if (*s != '/' && !last)
            continue;
        *s = '\0';
        if (mkdir(p, last ? mode : 0755) < 0 && (errno != EEXIST || stat(p, &st) < 0
                                                  || !S_ISDIR(st.st_mode))) {
            *error = mk_xasprintf("%s: cannot create directory: %s", p,
                                  errno == EEXIST ? "exists and is not a directory"
                                                  : strerror(errno));
            free(p);
            return -1;
        }
        if (last)
            break;
        *s = '/';
    }
    free(p);
    return 0;
}

static int mkau_init(const struct mkau_ctx *x, int argc, char **argv)
{
    char *error = NULL, *key, *pub;
    struct stat st;
    bool have_key, have_pub;

    (void) argv;
    if (argc != 1) {
        fputs(mkau_usage, stderr);
        return EX_USAGE;
    }
    key = mk_xasprintf("%s/%s", x->keys_dir, AU_KEYS_SIGN_FILE);
    pub = mk_xasprintf("%s/%s", x->keys_dir, AU_KEYS_VERIFY_FILE);
    have_key = lstat(key, &st) == 0;
    have_pub = lstat(pub, &st) == 0;
    free(key);
    free(pub);
    if (have_key && have_pub)
        printf("keys: %s already holds %s and %s: kept (keys are never overwritten)\n",
               x->keys_dir, AU_KEYS_SIGN_FILE, AU_KEYS_VERIFY_FILE);
    else if (au_keys_create(x->keys_dir, &error) < 0) {
        mkau_err("init: %s", error);
        free(error);
        return EX_CANTCREAT;
    } else
        printf("keys: %s/%s made; give %s to the auditors, who verify the log with it\n",
               x->keys_dir, AU_KEYS_SIGN_FILE, AU_KEYS_VERIFY_FILE);
    if (mkau_make_dirs(x->log_dir, 0750, &error) < 0) {
        mkau_err("init: %s", error);
        free(error);
        return EX_CANTCREAT;
    }
    /* the daemon writes as [audit] user: the log directory is its */
    if (*x->user && geteuid() == 0) {
        struct passwd *pw = getpwnam(x->user);

        if (pw == NULL) {
            mkau_err("init: [audit] user: no user '%s'", x->user);
            return EX_NOUSER;
        }
        if (chown(x->log_dir, pw->pw_uid, pw->pw_gid) < 0) {
            mkau_err("init: chown %s: %s", x->log_dir, strerror(errno));
            return EX_CANTCREAT;
        }
    }
    printf("log: %s ready%s%s\n", x->log_dir, *x->user ? ", owned by " : "",
           *x->user ? x->user : "");
    return 0;
}

/* -------------------------------------------------------------- verify */

struct mkau_verify {
    uint64_t problems;
};

static void mkau_problem(void *arg, const struct au_log_problem *p)
{
    struct mkau_verify *v = arg;
    char where[64] = "", seq[48] = "";

    if (p->line)
        snprintf(where, sizeof(where), ":%" PRIu64, p->line);
    if (p->seq)
        snprintf(seq, sizeof(seq), " seq %" PRIu64 ":", p->seq);
    printf("%s%s:%s %s: %s\n", p->file ? p->file : "", where, seq, au_log_problem_name(p->kind),
           p->detail);
    v->problems++;
}

static int mkau_verify(const struct mkau_ctx *x, int argc, char **argv)
{
    struct mkau_verify v = {0};
    struct au_log_stats st;
    EVP_PKEY *sign = NULL, *key = NULL;
    const char *key_path = NULL;
    char *error = NULL;
    int c, rc;

    optind = 1;
    while ((c = getopt(argc, argv, "k:")) != -1) {
        if (c != 'k') {
            fputs(mkau_usage, stderr);
            return MKAU_ERROR;
        }
        key_path = optarg;
    }
    if (optind != argc) {
        fputs(mkau_usage, stderr);
        return MKAU_ERROR;
    }
    if (key_path ? (key = au_keys_load_public(key_path, &error)) == NULL
                 : au_keys_load(x->keys_dir, false, &sign, &key, &error) < 0) {
        mkau_err("verify: %s", error);
        free(error);
        return MKAU_ERROR;
    }
    rc = au_log_verify(x->log_dir, key, mkau_problem, &v, &st, &error);
    EVP_PKEY_free(key);
    if (rc < 0) {
        mkau_err("verify: %s", error);
        free(error);
        return MKAU_ERROR;
    }
    printf("%" PRIu64 " records and %" PRIu64 " checkpoints in %" PRIu64 " files checked (last "
           "seq %" PRIu64 "): %s\n", st.records, st.checkpoints, st.files, st.last_seq,
           rc == 0 ? "intact" : "PROBLEMS FOUND");
    if (rc > 0)
        printf("%d problem%s; the first is the first damaged record\n", rc, rc == 1 ? "" : "s");
    if (st.live && st.unsigned_live > 0)
        printf("mailkeep-auditd is writing the log: its last %" PRIu64 " records are not signed "
               "yet (it signs them within [audit] checkpoint_interval)\n", st.unsigned_live);
    return rc == 0 ? MKAU_INTACT : MKAU_PROBLEMS;
}

/* -------------------------------------------------------------- search */

/*
 * A time for -s and -e: YYYY-MM-DD[THH:MM[:SS]] in local time (a space
 * may stand for the T), or an age before now (30m, 12h, 7d, 2w).
 */
static int mkau_parse_when(const char *text, time_t now, int64_t *us)
{
    struct tm tm;
    long long age;
    char *end;

    memset(&tm, 0, sizeof(tm));
    if (strlen(text) >= 10 && text[4] == '-') {
        end = strptime(text, "%Y-%m-%d", &tm);
        if (end && (*end == 'T' || *end == ' ') && end[1] != '\0') {
            char *rest = strptime(end + 1, "%H:%M", &tm);

            if (rest && *rest == ':')
                rest = strptime(rest + 1, "%S", &tm);
            end = rest;
        }
        if (end == NULL || *end != '\0')
            return -1;
        tm.tm_isdst = -1;
        now = mktime(&tm);
        if (now == (time_t) -1)
            return -1;
        *us = (int64_t) now * 1000000;
        return 0;
    }
    if (strspn(text, "0123456789") == strlen(text) || mk_parse_duration(text, &age) < 0
        || age > (long long) now)
        return -1;                      /* an age needs its unit */
    *us = ((int64_t) now - age) * 1000000;
    return 0;
}

struct mkau_search {
    const char *user, *mailbox;
    char **ops;
    bool admin, json, want_checkpoints;
    uint64_t shown;
};

static bool mkau_op_wanted(const struct mkau_search *s, const char *op)
{
    if (s->ops == NULL)
        return true;
    for (char **o = s->ops; *o; o++)
        if (strcmp(*o, op) == 0)
            return true;
    return false;
}

/* A value as it is shown: a plain word as it is, anything else as JSON. */
static void mkau_print_value(const json_t *v)
{
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    char *text;

    if (s != NULL && *s != '\0') {
        bool plain = true;

        for (const unsigned char *p = (const unsigned char *) s; *p && plain; p++)
            plain = *p > 0x20 && *p != 0x7f && *p != '"' && *p != '\\';
        if (plain) {
            fputs(s, stdout);
            return;
        }
    }
    /* ensure_ascii: a terminal sees no control character or odd byte */
    text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
    fputs(text ? text : "?", stdout);
    free(text);
}

static void mkau_print(const struct au_log_record *r, const json_t *obj)
{
    static const char *const skip[] = {"seq", "time", "op", "user", "peer", "prev", "hash",
                                       "sig"};
    time_t t = (time_t) (r->time / 1000000);
    const char *key;
    const json_t *v;
    char when[32];
    struct tm tm;

    localtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
    printf("%s  ", when);
    mkau_print_value(json_object_get(obj, "op"));
    fputs("  ", stdout);
    v = json_object_get(obj, "user");
    if (v && json_string_length(v) > 0)
        mkau_print_value(v);
    else
        fputs("-", stdout);
    json_object_foreach((json_t *) obj, key, v) {
        bool shown = true;

        for (size_t i = 0; i < MK_ARRAY_LEN(skip) && shown; i++)
            shown = strcmp(key, skip[i]) != 0;
        if (!shown)
            continue;
        printf(" %s=", key);
        mkau_print_value(v);
    }
    printf("  seq=%" PRIu64 "\n", r->seq);
}

static int mkau_search_record(void *arg, const struct au_log_record *r)
{
    struct mkau_search *s = arg;
    const char *op, *user, *mailbox, *from;
    json_t *obj;

    if (r->checkpoint && !s->want_checkpoints)
        return 0;
    if ((obj = json_loadb(r->text, r->len, 0, NULL)) == NULL) {
        mkau_err("%s:%" PRIu64 ": seq %" PRIu64 ": not JSON; check the log with mailkeep audit "
                 "verify", r->file, r->line, r->seq);
        return 0;
    }
    op = au_proto_str(obj, "op");
    user = au_proto_str(obj, "user");
    mailbox = au_proto_str(obj, "mailbox");
    from = au_proto_str(obj, "from_mailbox");
    if (op && mkau_op_wanted(s, op) && (s->user == NULL || (user && strcmp(user, s->user) == 0))
        && (s->mailbox == NULL || (mailbox && strcmp(mailbox, s->mailbox) == 0)
            || (from && strcmp(from, s->mailbox) == 0))
        && (!s->admin || json_object_get(obj, "admin") != NULL)) {
        if (s->json)
            printf("%.*s\n", (int) r->len, r->text);
        else
            mkau_print(r, obj);
        s->shown++;
    }
    json_decref(obj);
    return ferror(stdout) ? -2 : 0;
}

static int mkau_search(const struct mkau_ctx *x, int argc, char **argv)
{
    struct mkau_search s;
    int64_t since = 0, until = INT64_MAX;
    time_t now = time(NULL);
    char *error = NULL;
    int c, rc;

    memset(&s, 0, sizeof(s));
    optind = 1;
    while ((c = getopt(argc, argv, "u:o:s:e:m:aj")) != -1) {
        switch (c) {
        case 'u':
            s.user = optarg;
            break;
        case 'o':
            mk_str_array_free(s.ops);
            s.ops = mk_str_split(optarg, ",", NULL);
            for (char **o = s.ops; *o; o++) {
                if (strcmp(*o, "checkpoint") == 0)
                    s.want_checkpoints = true;
                else if (!au_proto_op_valid(*o)) {
                    mkau_err("search: -o %s: not an operation (a-z and -)", *o);
                    mk_str_array_free(s.ops);
                    return EX_USAGE;
                }
            }
            break;
        case 's':
        case 'e':
            if (mkau_parse_when(optarg, now, c == 's' ? &since : &until) < 0) {
                mkau_err("search: -%c %s: not YYYY-MM-DD[THH:MM[:SS]] nor an age like 7d", c,
                         optarg);
                mk_str_array_free(s.ops);
                return EX_USAGE;
            }
            break;
        case 'm':
            s.mailbox = optarg;
            break;
        case 'a':
            s.admin = true;
            break;
        case 'j':
            s.json = true;
            break;
        default:
            fputs(mkau_usage, stderr);
            mk_str_array_free(s.ops);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        fputs(mkau_usage, stderr);
        mk_str_array_free(s.ops);
        return EX_USAGE;
    }
    rc = au_log_read(x->log_dir, since, until, mkau_search_record, &s, &error);
    mk_str_array_free(s.ops);
    if (rc == -2) {
        mkau_err("search: cannot write: %s", strerror(errno));
        return EX_IOERR;
    }
    if (rc < 0) {
        mkau_err("search: %s", error);
        free(error);
        return EX_DATAERR;
    }
    if (!s.json)
        printf("%" PRIu64 " record%s\n", s.shown, s.shown == 1 ? "" : "s");
    return 0;
}

/* --------------------------------------------------------------- reads */

static void mkau_time(int64_t t, char out[32])
{
    time_t tt = (time_t) t;
    struct tm tm;

    localtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm);
}

static int mkau_read_row(void *arg, const struct au_db_read *r)
{
    char first[32], last[32];

    (void) arg;
    mkau_time(r->first, first);
    mkau_time(r->last, last);
    printf("%s  %s  uid=%" PRId64 "  %s  first=%s  last=%s  count=%" PRId64 "\n", r->user,
           r->mailbox ? r->mailbox : r->mailbox_guid, r->uid,
           r->message_id ? r->message_id : "-", first, last, r->count);
    return ferror(stdout) ? -2 : 0;
}

static int mkau_reads(const struct mkau_ctx *x, int argc, char **argv)
{
    const char *user = NULL, *message_id = NULL;
    struct au_db *db;
    char *error = NULL;
    int c, rc;

    optind = 1;
    while ((c = getopt(argc, argv, "u:i:")) != -1) {
        if (c == 'u')
            user = optarg;
        else if (c == 'i')
            message_id = optarg;
        else {
            fputs(mkau_usage, stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        fputs(mkau_usage, stderr);
        return EX_USAGE;
    }
    if ((db = au_db_open(x->db, false, &error)) == NULL) {
        mkau_err("reads: %s (mailkeep-auditd creates it when it starts)", error);
        free(error);
        return EX_NOINPUT;
    }
    rc = au_db_reads(db, user, message_id, mkau_read_row, NULL, &error);
    au_db_close(db);
    if (rc == -2) {
        mkau_err("reads: cannot write: %s", strerror(errno));
        return EX_IOERR;
    }
    if (rc < 0) {
        mkau_err("reads: %s", error);
        free(error);
        return EX_SOFTWARE;
    }
    return 0;
}

int mailkeep_audit(const char *config_path, int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(const struct mkau_ctx *, int, char **);
    } commands[] = {
        {"init", mkau_init}, {"verify", mkau_verify}, {"search", mkau_search},
        {"reads", mkau_reads},
    };
    struct mkau_ctx x;
    int rc = -1;

    if (argc < 1) {
        fputs(mkau_usage, stderr);
        return EX_USAGE;
    }
    if ((x.cfg = mailkeep_load_config(config_path)) == NULL)
        return strcmp(argv[0], "verify") == 0 ? MKAU_ERROR : EX_CONFIG;
    x.log_dir = mk_config_str(x.cfg, "audit", "log_dir");
    x.db = mk_config_str(x.cfg, "audit", "db");
    x.keys_dir = mk_config_str(x.cfg, "audit", "keys_dir");
    x.user = mk_config_str(x.cfg, "audit", "user");
    for (size_t i = 0; i < MK_ARRAY_LEN(commands); i++)
        if (strcmp(argv[0], commands[i].name) == 0)
            rc = commands[i].run(&x, argc, argv);
    if (rc == -1) {
        fputs(mkau_usage, stderr);
        rc = EX_USAGE;
    }
    mk_config_unref(x.cfg);
    return rc;
}
