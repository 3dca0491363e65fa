/*
 * mailkeep otp - enrol and manage second factors and application
 * passwords in pam_mailkeep's store. See mailkeep(8), OTP.
 *
 *	mailkeep otp enroll [-fKq] [-t totp|hotp] [-a ALGO] [-d DIGITS] [-p PERIOD]
 *			    [-o FILE.png] USER
 *	mailkeep otp confirm USER CODE
 *	mailkeep otp list [USER]
 *	mailkeep otp revoke USER
 *	mailkeep otp recovery USER
 *	mailkeep otp apppass add -s SERVICE [-l LABEL] USER
 *	mailkeep otp apppass list USER
 *	mailkeep otp apppass revoke USER ID|all
 *	mailkeep otp unlock USER
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "mailkeep.h"
#include "mk_addr.h"
#include "mk_config.h"
#include "mk_directory.h"
#include "mk_otp.h"
#include "mk_otppolicy.h"
#include "mk_otpstore.h"
#include "mk_util.h"
#include "otp_qr.h"

/* A time in the listings, "-" when there is none. */
#define OTP_WHEN(t, buf) mailkeep_time((t), "%Y-%m-%d %H:%M", "-", (buf), sizeof(buf))

struct otp_cmd {
    struct mk_config *cfg;
    struct mk_otp_store *store;
};

static void otp_usage(void)
{
    fprintf(stderr,
            "usage: mailkeep otp enroll [-fKq] [-t totp|hotp] [-a sha1|sha256|sha512] [-d DIGITS]\n"
            "                           [-p PERIOD] [-o FILE.png] USER\n"
            "       mailkeep otp confirm [-c COUNTER] USER CODE\n"
            "       mailkeep otp list [USER]\n"
            "       mailkeep otp revoke USER\n"
            "       mailkeep otp recovery USER\n"
            "       mailkeep otp apppass add -s SERVICE [-l LABEL] USER\n"
            "       mailkeep otp apppass list USER\n"
            "       mailkeep otp apppass revoke USER ID|all\n"
            "       mailkeep otp unlock USER\n");
}

static struct mk_otp_lock *otp_lock(struct otp_cmd *c, const char *user, struct mk_otp_record *r)
{
    struct mk_otp_lock *lock;
    char *error = NULL;

    if ((lock = mk_otp_store_lock(c->store, user, r, &error)) == NULL) {
        fprintf(stderr, "mailkeep otp: %s\n", error);
        free(error);
    }
    return lock;
}

static int otp_commit(struct mk_otp_lock *lock, struct mk_otp_record *r)
{
    char *error = NULL;
    int rc = 0;

    if (mk_otp_store_write(lock, r, &error) != 0) {
        fprintf(stderr, "mailkeep otp: %s\n", error);
        free(error);
        rc = EX_IOERR;
    }
    mk_otp_store_unlock(lock);
    mk_otp_record_free(r);
    return rc;
}

static void otp_abort(struct mk_otp_lock *lock, struct mk_otp_record *r)
{
    mk_otp_store_unlock(lock);
    mk_otp_record_free(r);
}

static void otp_new_recovery(const struct mk_config *cfg, struct mk_otp_record *r, FILE *fp)
{
    long long n = mk_config_num(cfg, "otp", "recovery_codes");

    free(r->recovery);
    r->recovery = NULL;
    r->nrecovery = 0;
    if (n == 0)
        return;
    r->recovery = mk_xcalloc((size_t) n, sizeof(*r->recovery));
    fprintf(fp, "Recovery codes (each works once, in place of a code; shown only now):\n");
    for (long long i = 0; i < n; i++) {
        char *code = mk_otp_random_code(2);

        mk_otp_hash_make(code, &r->recovery[r->nrecovery++]);
        fprintf(fp, "  %s\n", code);
        OPENSSL_cleanse(code, strlen(code));
        free(code);
    }
}

/* counter: where an HOTP token is now (a hardware token used before; 0 for an app). */
static int otp_confirm_code(struct otp_cmd *c, const char *user, const char *code,
                            uint64_t counter)
{
    struct mk_otp_record r;
    struct mk_otp_lock *lock;
    struct mk_otp_token t;
    uint64_t matched;
    unsigned window;

    if ((lock = otp_lock(c, user, &r)) == NULL)
        return EX_IOERR;
    if (!r.pending.present) {
        fprintf(stderr, "mailkeep otp: %s: no enrolment waits for confirmation\n", user);
        otp_abort(lock, &r);
        return 1;
    }
    if (mk_otp_unseal(c->store, user, "pending", &r.pending, &t) != 0) {
        fprintf(stderr, "mailkeep otp: %s: cannot open the secret (wrong key file?)\n", user);
        otp_abort(lock, &r);
        return EX_CONFIG;
    }
    t.counter = t.kind == MK_OTP_HOTP ? counter : 0;
    window = (unsigned) mk_config_num(c->cfg, "otp", t.kind == MK_OTP_TOTP ? "window"
                                                                           : "hotp_window");
    if (mk_otp_verify(&t, code, time(NULL), window, 0, &matched) != 0) {
        OPENSSL_cleanse(&t, sizeof(t));
        fprintf(stderr, "mailkeep otp: %s: wrong code; the enrolment still waits\n", user);
        otp_abort(lock, &r);
        return 1;
    }
    r.last = t.kind == MK_OTP_TOTP ? matched : 0;
    r.counter = t.kind == MK_OTP_HOTP ? matched + 1 : 0;
    /* Sealed again: the line a box is on is part of what it is bound to. */
    mk_otp_sealed_move(&r.token, NULL);
    if (mk_otp_seal(c->store, user, "token", &t, &r.token) != 0) {
        OPENSSL_cleanse(&t, sizeof(t));
        fprintf(stderr, "mailkeep otp: cannot seal the secret\n");
        otp_abort(lock, &r);
        return EX_SOFTWARE;
    }
    OPENSSL_cleanse(&t, sizeof(t));
    mk_otp_sealed_move(&r.pending, NULL);
    r.used = 0;
    r.failures = 0;
    r.failed = 0;
    printf("%s: second factor confirmed\n", user);
    otp_new_recovery(c->cfg, &r, stdout);
    return otp_commit(lock, &r);
}

static int otp_enroll(struct otp_cmd *c, int argc, char **argv)
{
    struct mk_otp_token t;
    struct mk_otp_record r;
    struct mk_otp_lock *lock;
    const char *png = NULL;
    char *user, *uri, *error = NULL;
    bool force = false, quiet = false, import = false;
    long long v;
    int ch, rc = 0;

    memset(&t, 0, sizeof(t));
    t.kind = MK_OTP_TOTP;
    (void) mk_otp_parse_algo(mk_config_str(c->cfg, "otp", "algorithm"), &t.algo);
    t.digits = (unsigned) mk_config_num(c->cfg, "otp", "digits");
    t.period = (unsigned) mk_config_num(c->cfg, "otp", "period");
    optind = 1;
    while ((ch = getopt(argc, argv, "a:d:fKo:p:qt:")) != -1) {
        switch (ch) {
        case 'a':
            if (mk_otp_parse_algo(optarg, &t.algo) != 0) {
                fprintf(stderr, "mailkeep otp: -a: sha1, sha256 or sha512\n");
                return EX_USAGE;
            }
            break;
        case 'd':
            if (mk_parse_int(optarg, &v) != 0 || v < 6 || v > 8) {
                fprintf(stderr, "mailkeep otp: -d: 6, 7 or 8 digits\n");
                return EX_USAGE;
            }
            t.digits = (unsigned) v;
            break;
        case 'f':
            force = true;
            break;
        case 'K':
            import = true;
            break;
        case 'o':
            png = optarg;
            break;
        case 'p':
            if (mk_parse_int(optarg, &v) != 0 || v < 10 || v > 300) {
                fprintf(stderr, "mailkeep otp: -p: a period of 10 to 300 seconds\n");
                return EX_USAGE;
            }
            t.period = (unsigned) v;
            break;
        case 'q':
            quiet = true;
            break;
        case 't':
            if (mk_otp_parse_kind(optarg, &t.kind) != 0) {
                fprintf(stderr, "mailkeep otp: -t: totp or hotp\n");
                return EX_USAGE;
            }
            break;
        default:
            otp_usage();
            return EX_USAGE;
        }
    }
    if (optind != argc - 1) {
        otp_usage();
        return EX_USAGE;
    }
    if (t.kind == MK_OTP_HOTP) {
        t.algo = MK_OTP_SHA1;           /* RFC 4226 knows no other */
        t.period = 0;
    }
    if ((user = mailkeep_account(c->cfg, argv[optind], &rc)) == NULL)
        return rc;
    if (mk_otp_store_key(c->store, true, &error) != 0) {
        fprintf(stderr, "mailkeep otp: %s\n", error);
        free(error);
        free(user);
        return EX_CONFIG;
    }
    if ((lock = otp_lock(c, user, &r)) == NULL) {
        free(user);
        return EX_IOERR;
    }
    if (r.token.present && !force) {
        fprintf(stderr, "mailkeep otp: %s already has a second factor (-f replaces it once "
                        "the new one is confirmed)\n", user);
        otp_abort(lock, &r);
        free(user);
        return 1;
    }
    if (import) {
        char line[512];
        struct termios tio, quiet_tio;
        bool tty = tcgetattr(STDIN_FILENO, &tio) == 0;
        char *got;

        /* A seed typed at a terminal is a secret: not echoed. */
        if (tty) {
            fprintf(stderr, "Secret (base32, or hex:...): ");
            quiet_tio = tio;
            quiet_tio.c_lflag &= ~(tcflag_t) ECHO;
            (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet_tio);
        }
        got = fgets(line, sizeof(line), stdin);
        if (tty) {
            (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &tio);
            fprintf(stderr, "\n");
        }
        if (got == NULL
            || mk_otp_secret_parse(line, t.secret, &t.secret_len) != 0) {
            fprintf(stderr, "mailkeep otp: -K: standard input holds no secret (base32, or hex "
                            "after \"hex:\", 16 to %d bytes)\n", MK_OTP_SECRET_MAX);
            OPENSSL_cleanse(line, sizeof(line));
            otp_abort(lock, &r);
            free(user);
            return EX_DATAERR;
        }
        OPENSSL_cleanse(line, sizeof(line));
    } else {
        /* As long as the hash: 20 bytes for SHA-1, 32 and 64 for the others. */
        t.secret_len = t.algo == MK_OTP_SHA512 ? 64 : t.algo == MK_OTP_SHA256 ? 32 : 20;
    }
    if (!import && RAND_bytes(t.secret, (int) t.secret_len) != 1) {
        fprintf(stderr, "mailkeep otp: no randomness\n");
        otp_abort(lock, &r);
        free(user);
        return EX_SOFTWARE;
    }
    free(r.pending.box);
    if (mk_otp_seal(c->store, user, "pending", &t, &r.pending) != 0) {
        fprintf(stderr, "mailkeep otp: cannot seal the secret\n");
        otp_abort(lock, &r);
        free(user);
        return EX_SOFTWARE;
    }
    uri = mk_otp_uri(&t, mk_config_str(c->cfg, "otp", "issuer"), user);
    OPENSSL_cleanse(&t, sizeof(t));
    if ((rc = otp_commit(lock, &r)) != 0)
        goto out;
    printf("%s: scan this with an authenticator app, or enter the URI:\n\n%s\n\n", user, uri);
    if (!quiet && otp_qr_print(stdout, uri) != 0)
        fprintf(stderr, "mailkeep otp: cannot draw the QR code\n");
    if (png != NULL && otp_qr_png(png, uri, &error) != 0) {
        fprintf(stderr, "mailkeep otp: %s\n", error);
        free(error);
        rc = EX_CANTCREAT;
        goto out;
    }
    if (png != NULL)
        printf("\nQR code written to %s (mode 0600: it is the secret)\n", png);
    if (isatty(STDIN_FILENO)) {
        char code[32];

        printf("\nCode from the app: ");
        fflush(stdout);
        if (fgets(code, sizeof(code), stdin) != NULL) {
            code[strcspn(code, "\r\n")] = '\0';
            rc = otp_confirm_code(c, user, code, 0);
        }
    } else {
        printf("\nConfirm with: mailkeep otp confirm %s%s CODE\n",
               t.kind == MK_OTP_HOTP ? "[-c COUNTER] " : "", user);
    }
out:
    OPENSSL_cleanse(uri, strlen(uri));
    free(uri);
    free(user);
    return rc;
}

static void otp_show(const struct mk_config *cfg, const char *user, const struct mk_otp_record *r)
{
    char b1[32], b2[32];

    if (r->token.present)
        printf("%s: %s %s, %u digits", user, mk_otp_kind_name(r->token.kind),
               mk_otp_algo_name(r->token.algo), r->token.digits);
    else
        printf("%s: no second factor", user);
    if (r->token.present && r->token.kind == MK_OTP_TOTP)
        printf(", %u s", r->token.period);
    if (r->token.present)
        printf(", enrolled %s, last used %s, %zu recovery code%s left",
               OTP_WHEN(r->token.created, b1), OTP_WHEN(r->used, b2),
               r->nrecovery, r->nrecovery == 1 ? "" : "s");
    if (r->pending.present)
        printf("; an enrolment waits for confirmation");
    printf("\n");
    if (r->locked)
        printf("  locked until %s (after %u failures, the last %s)\n",
               r->locked_until != 0 ? OTP_WHEN(r->locked_until, b1)
                                    : "an administrator unlocks it",
               r->failures, OTP_WHEN(r->failed, b2));
    else if (r->failures > 0 && mk_config_num(cfg, "otp", "max_failures") > 0)
        printf("  %u failed attempt%s, the last %s (locked at %lld)\n", r->failures,
               r->failures == 1 ? "" : "s", OTP_WHEN(r->failed, b1),
               mk_config_num(cfg, "otp", "max_failures"));
    else if (r->failures > 0)
        printf("  %u failed attempt%s, the last %s\n", r->failures,
               r->failures == 1 ? "" : "s", OTP_WHEN(r->failed, b1));
    for (size_t i = 0; i < r->napppass; i++)
        printf("  application password %u: %s, service %s, created %s, last used %s from %s\n",
               r->apppass[i].id, r->apppass[i].label, r->apppass[i].service,
               OTP_WHEN(r->apppass[i].created, b1),
               OTP_WHEN(r->apppass[i].used, b2), r->apppass[i].host);
}

static int otp_list(struct otp_cmd *c, int argc, char **argv)
{
    struct mk_otp_record r;
    char *error = NULL, **users, *one[2] = {NULL, NULL};
    int rc = 0;

    if (argc > 2) {
        otp_usage();
        return EX_USAGE;
    }
    if (argc == 2) {
        one[0] = mk_xstrdup(argv[1]);
        mk_str_lower(one[0]);
        users = one;
    } else if ((users = mk_otp_store_users(c->store, &error)) == NULL) {
        fprintf(stderr, "mailkeep otp: %s\n", error);
        free(error);
        return EX_IOERR;
    }
    for (size_t i = 0; users[i] != NULL; i++) {
        if (mk_otp_store_read(c->store, users[i], &r, &error) != 0) {
            fprintf(stderr, "mailkeep otp: %s\n", error);
            free(error);
            error = NULL;
            rc = 1;
            continue;
        }
        otp_show(c->cfg, users[i], &r);
        mk_otp_record_free(&r);
    }
    if (users == one)
        free(one[0]);
    else
        mk_str_array_free(users);
    return rc;
}

/* Commands on one user's record under the lock: revoke, recovery, unlock. */
static int otp_change(struct otp_cmd *c, const char *what, const char *arg)
{
    struct mk_otp_record r;
    struct mk_otp_lock *lock;
    char *user = mk_xstrdup(arg);
    int rc;

    mk_str_lower(user);
    if ((lock = otp_lock(c, user, &r)) == NULL) {
        free(user);
        return EX_IOERR;
    }
    if (strcmp(what, "revoke") == 0) {
        if (!r.token.present && !r.pending.present) {
            fprintf(stderr, "mailkeep otp: %s has no second factor\n", user);
            otp_abort(lock, &r);
            free(user);
            return 1;
        }
        mk_otp_sealed_move(&r.token, NULL);
        mk_otp_sealed_move(&r.pending, NULL);
        free(r.recovery);
        r.recovery = NULL;
        r.nrecovery = 0;
        r.last = r.counter = 0;
        r.used = 0;
        printf("%s: second factor and recovery codes revoked (application passwords stay: "
               "mailkeep otp apppass revoke %s all)\n", user, user);
    } else if (strcmp(what, "recovery") == 0) {
        if (!r.token.present) {
            fprintf(stderr, "mailkeep otp: %s has no second factor\n", user);
            otp_abort(lock, &r);
            free(user);
            return 1;
        }
        otp_new_recovery(c->cfg, &r, stdout);
    } else {
        if (!r.locked && r.failures == 0) {
            printf("%s: not locked\n", user);
            otp_abort(lock, &r);
            free(user);
            return 0;
        }
        r.locked = false;
        r.locked_until = 0;
        r.failures = 0;
        r.failed = 0;
        printf("%s: unlocked\n", user);
    }
    rc = otp_commit(lock, &r);
    free(user);
    return rc;
}

static bool otp_label_ok(const char *s)
{
    if (*s == '\0' || strlen(s) > 200)
        return false;
    for (; *s != '\0'; s++)
        if ((unsigned char) *s < 0x20 || *s == 0x7f)
            return false;
    return true;
}

static int otp_apppass(struct otp_cmd *c, int argc, char **argv)
{
    struct mk_otp_record r;
    struct mk_otp_lock *lock;
    const char *service = NULL, *label = "-";
    char *user, *password, b[32];
    int ch, rc = 0;

    if (argc < 2) {
        otp_usage();
        return EX_USAGE;
    }
    if (strcmp(argv[1], "list") == 0) {
        if (argc != 3) {
            otp_usage();
            return EX_USAGE;
        }
        return otp_list(c, 2, argv + 1);
    }
    if (strcmp(argv[1], "revoke") == 0) {
        unsigned long id = 0;
        size_t kept = 0;
        bool all;

        if (argc != 4) {
            otp_usage();
            return EX_USAGE;
        }
        all = strcmp(argv[3], "all") == 0;
        if (!all && (id = strtoul(argv[3], NULL, 10)) == 0) {
            fprintf(stderr, "mailkeep otp: %s: not an application password id\n", argv[3]);
            return EX_USAGE;
        }
        user = mk_xstrdup(argv[2]);
        mk_str_lower(user);
        if ((lock = otp_lock(c, user, &r)) == NULL) {
            free(user);
            return EX_IOERR;
        }
        for (size_t i = 0; i < r.napppass; i++) {
            if (all || r.apppass[i].id == id) {
                printf("%s: application password %u (%s) revoked\n", user, r.apppass[i].id,
                       r.apppass[i].label);
                free(r.apppass[i].service);
                free(r.apppass[i].host);
                free(r.apppass[i].label);
            } else {
                r.apppass[kept++] = r.apppass[i];
            }
        }
        if (kept == r.napppass) {
            fprintf(stderr, "mailkeep otp: %s has no application password %s\n", user, argv[3]);
            otp_abort(lock, &r);
            free(user);
            return all ? 0 : 1;
        }
        r.napppass = kept;
        rc = otp_commit(lock, &r);
        free(user);
        return rc;
    }
    if (strcmp(argv[1], "add") != 0) {
        otp_usage();
        return EX_USAGE;
    }
    optind = 1;
    argc--;
    argv++;
    while ((ch = getopt(argc, argv, "l:s:")) != -1) {
        switch (ch) {
        case 'l':
            label = optarg;
            break;
        case 's':
            service = optarg;
            break;
        default:
            otp_usage();
            return EX_USAGE;
        }
    }
    if (optind != argc - 1) {
        otp_usage();
        return EX_USAGE;
    }
    /* No default: a password for every service (sshd too) is asked for by name. */
    if (service == NULL || *service == '\0') {
        fprintf(stderr, "mailkeep otp: apppass add: -s names the service it is for (imap, "
                "smtp, ...; * for all)\n");
        return EX_USAGE;
    }
    if (!otp_label_ok(label)) {
        fprintf(stderr, "mailkeep otp: -l: a label of 1 to 200 printable characters\n");
        return EX_USAGE;
    }
    for (const char *p = service; *p != '\0'; p++)
        if (strcmp(service, "*") != 0 && !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                                          || (*p >= '0' && *p <= '9') || strchr("._-", *p))) {
            fprintf(stderr, "mailkeep otp: -s: a PAM service name, or *\n");
            return EX_USAGE;
        }
    if ((user = mailkeep_account(c->cfg, argv[optind], &rc)) == NULL)
        return rc;
    if ((lock = otp_lock(c, user, &r)) == NULL) {
        free(user);
        return EX_IOERR;
    }
    if (r.napppass == MK_OTP_MAX_APPPASS) {
        fprintf(stderr, "mailkeep otp: %s has %d application passwords already\n", user,
                MK_OTP_MAX_APPPASS);
        otp_abort(lock, &r);
        free(user);
        return 1;
    }
    r.apppass = mk_xrealloc(r.apppass, (r.napppass + 1) * sizeof(*r.apppass));
    memset(&r.apppass[r.napppass], 0, sizeof(*r.apppass));
    r.apppass[r.napppass].id = 1;
    for (size_t i = 0; i < r.napppass; i++)
        if (r.apppass[i].id >= r.apppass[r.napppass].id)
            r.apppass[r.napppass].id = r.apppass[i].id + 1;
    r.apppass[r.napppass].service = mk_xstrdup(service);
    r.apppass[r.napppass].created = time(NULL);
    r.apppass[r.napppass].host = mk_xstrdup("-");
    r.apppass[r.napppass].label = mk_xstrdup(label);
    password = mk_otp_random_code(4);
    mk_otp_hash_make(password, &r.apppass[r.napppass].hash);
    r.napppass++;
    printf("%s: application password %u (%s), service %s, created %s:\n\n    %s\n\n"
           "It is shown only now. Use it instead of the password (and code) in the mail\n"
           "client; the dashes may be left out.\n",
           user, r.apppass[r.napppass - 1].id, label, service,
           OTP_WHEN(time(NULL), b), password);
    OPENSSL_cleanse(password, strlen(password));
    free(password);
    rc = otp_commit(lock, &r);
    free(user);
    return rc;
}

int mailkeep_otp(const char *config_path, int argc, char **argv)
{
    struct otp_cmd c;
    char *error = NULL;
    int rc;

    if (argc < 1) {
        otp_usage();
        return EX_USAGE;
    }
    if ((c.cfg = mailkeep_load_config(config_path)) == NULL)
        return EX_CONFIG;
    c.store = mk_otp_store_open(mk_config_str(c.cfg, "otp", "store"),
                                mk_config_str(c.cfg, "otp", "key_file"),
                                strcmp(argv[0], "enroll") == 0 || strcmp(argv[0], "apppass") == 0,
                                &error);
    if (c.store == NULL) {
        fprintf(stderr, "mailkeep otp: %s\n", error);
        free(error);
        mk_config_unref(c.cfg);
        return EX_CONFIG;
    }
    if (strcmp(argv[0], "enroll") == 0) {
        rc = otp_enroll(&c, argc, argv);
    } else if (strcmp(argv[0], "confirm") == 0) {
        long long counter = 0;

        if (argc == 5 && strcmp(argv[1], "-c") == 0) {
            if (mk_parse_int(argv[2], &counter) != 0 || counter < 0)
                counter = -1;
            argc -= 2;
            argv += 2;
        }
        if (counter < 0) {
            fprintf(stderr, "mailkeep otp: -c: the token's counter, a whole number\n");
            rc = EX_USAGE;
        } else if (argc != 3) {
            otp_usage();
            rc = EX_USAGE;
        } else if (mk_otp_store_key(c.store, false, &error) != 0) {
            fprintf(stderr, "mailkeep otp: %s\n", error);
            free(error);
            rc = EX_CONFIG;
        } else {
            char *user = mk_xstrdup(argv[1]);

            mk_str_lower(user);
            rc = otp_confirm_code(&c, user, argv[2], (uint64_t) counter);
            free(user);
        }
    } else if (strcmp(argv[0], "list") == 0) {
        rc = otp_list(&c, argc, argv);
    } else if (strcmp(argv[0], "revoke") == 0 || strcmp(argv[0], "recovery") == 0
               || strcmp(argv[0], "unlock") == 0) {
        if (argc != 2) {
            otp_usage();
            rc = EX_USAGE;
        } else {
            rc = otp_change(&c, argv[0], argv[1]);
        }
    } else if (strcmp(argv[0], "apppass") == 0) {
        rc = otp_apppass(&c, argc, argv);
    } else {
        otp_usage();
        rc = EX_USAGE;
    }
    mk_otp_store_close(c.store);
    mk_config_unref(c.cfg);
    return rc;
}
