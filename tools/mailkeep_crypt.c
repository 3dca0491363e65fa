/*
 * mailkeep crypt - the keys of mailkeep_crypt(7).
 *
 *	mailkeep crypt init [-e ESCROW_PRIVATE]	the key directory, the server key,
 *						and an escrow key pair
 *	mailkeep crypt status [USER]		users' keys: active, older, escrow
 *	mailkeep crypt rotate [-r] USER...	a new active key; old ones stay (-r:
 *						the mail given to the new key)
 *	mailkeep crypt encrypt-existing [-k] USER...	convert mailboxes (dsync), keeping
 *						UIDs and flags
 *	mailkeep crypt password USER		old and new password on standard input:
 *						the user's keys sealed anew
 *	mailkeep crypt request USER REASON...	recovery, step 1: an administrator asks
 *	mailkeep crypt approve ID		step 2: another administrator approves
 *	mailkeep crypt recover [-s] -k ESCROW ID	step 3: the keys opened with escrow,
 *						sealed by a new password (standard
 *						input) or the server key (-s)
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#ifdef HAVE_AUDIT
#include <jansson.h>
#include "au_client.h"
#endif
#include "mailkeep.h"
#include "mk_ckeys.h"
#include "mk_config.h"
#include "mk_crypto.h"
#include "mk_mcrypt.h"
#include "mk_run.h"
#include "mk_util.h"

#include <ftw.h>

struct crypt_cmd {
    struct mk_config *cfg;
    const char *keys, *server_key, *escrow_key;
};

static int crypt_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static void crypt_usage(void)
{
    fprintf(stderr, "usage: mailkeep crypt init [-e ESCROW_PRIVATE_FILE]\n"
                    "       mailkeep crypt status [USER]\n"
                    "       mailkeep crypt rotate [-r] USER... [< OLD_PASSWORD]\n"
                    "       mailkeep crypt encrypt-existing [-k] USER...\n"
                    "       mailkeep crypt password USER < OLD_AND_NEW_PASSWORD\n"
                    "       mailkeep crypt request USER REASON...\n"
                    "       mailkeep crypt approve ID\n"
                    "       mailkeep crypt recover [-s] -k ESCROW_PRIVATE_FILE ID [< NEW_PASSWORD]\n");
}

/* Dovecot's mail user, who reads and writes the keys. */
static int crypt_owner(const struct mk_config *cfg, uid_t *uid, gid_t *gid)
{
    const char *name = mk_config_str(cfg, "crypt", "mail_user");
    struct passwd *pw = getpwnam(name);

    if (pw == NULL) {
        fprintf(stderr, "mailkeep crypt: [crypt] mail_user %s: no such user\n", name);
        return -1;
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

/* A new file of exactly text, mode 0600, owned by uid (or root when uid is -1). */
static int crypt_new_file(const char *path, const char *text, uid_t uid, gid_t gid)
{
    char *error = NULL;

    if (mk_crypto_file_create(path, text, strlen(text), 0600, &error) != 0) {
        fprintf(stderr, "mailkeep crypt: %s\n", error);
        free(error);
        return -1;
    }
    if (uid != (uid_t) -1 && chown(path, uid, gid) != 0) {
        fprintf(stderr, "mailkeep crypt: chown %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int crypt_init(struct crypt_cmd *c, int argc, char **argv)
{
    const char *escrow_private = NULL;
    uid_t uid;
    gid_t gid;
    int ch, made = 0;

    optind = 1;
    while ((ch = getopt(argc, argv, "e:")) != -1) {
        if (ch != 'e') {
            crypt_usage();
            return EX_USAGE;
        }
        escrow_private = optarg;
    }
    if (optind != argc) {
        crypt_usage();
        return EX_USAGE;
    }
    if (crypt_owner(c->cfg, &uid, &gid) != 0)
        return EX_CONFIG;
    if (mkdir(c->keys, 0700) == 0) {
        if (chown(c->keys, uid, gid) != 0) {
            fprintf(stderr, "mailkeep crypt: chown %s: %s\n", c->keys, strerror(errno));
            return EX_IOERR;
        }
        printf("made the key directory %s\n", c->keys);
        made++;
    } else if (errno != EEXIST) {
        fprintf(stderr, "mailkeep crypt: %s: %s\n", c->keys, strerror(errno));
        return EX_CANTCREAT;
    }
    if (access(c->server_key, F_OK) != 0) {
        uint8_t key[32];
        char hex[66];

        if (RAND_bytes(key, sizeof(key)) != 1) {
            fprintf(stderr, "mailkeep crypt: no randomness\n");
            return EX_SOFTWARE;
        }
        mk_crypto_hex(key, sizeof(key), hex);
        OPENSSL_cleanse(key, sizeof(key));
        strcat(hex, "\n");
        if (crypt_new_file(c->server_key, hex, uid, gid) != 0) {
            OPENSSL_cleanse(hex, sizeof(hex));
            return EX_CANTCREAT;
        }
        OPENSSL_cleanse(hex, sizeof(hex));
        printf("made the server key %s (keep it out of the mail's backups)\n", c->server_key);
        made++;
    }
    if (escrow_private != NULL) {
        struct mk_mc_keypair kp;
        char hex[66];

        if (*c->escrow_key == '\0') {
            fprintf(stderr, "mailkeep crypt: -e: [crypt] escrow_key names no file for the "
                            "public key\n");
            return EX_CONFIG;
        }
        if (access(c->escrow_key, F_OK) == 0) {
            fprintf(stderr, "mailkeep crypt: %s exists: an escrow key is never replaced\n",
                    c->escrow_key);
            return 1;
        }
        if (mk_mc_keypair_generate(&kp) != 0) {
            fprintf(stderr, "mailkeep crypt: cannot make a key pair\n");
            return EX_SOFTWARE;
        }
        mk_crypto_hex(kp.priv, MK_MC_KEY_LEN, hex);
        strcat(hex, "\n");
        if (crypt_new_file(escrow_private, hex, (uid_t) -1, 0) != 0) {
            OPENSSL_cleanse(hex, sizeof(hex));
            mk_mc_keypair_wipe(&kp);
            return EX_CANTCREAT;
        }
        OPENSSL_cleanse(hex, sizeof(hex));
        mk_crypto_hex(kp.pub.pub, MK_MC_KEY_LEN, hex);
        strcat(hex, "\n");
        mk_mc_keypair_wipe(&kp);
        if (crypt_new_file(c->escrow_key, hex, (uid_t) -1, 0) != 0
            || chmod(c->escrow_key, 0644) != 0)
            return EX_CANTCREAT;
        printf("made the escrow key pair: public %s, private %s\n"
               "Move the private key off this host (offline, split among officers): it opens "
               "every user's mail.\n", c->escrow_key, escrow_private);
        made++;
    }
    if (made == 0)
        printf("nothing to do: %s and %s exist\n", c->keys, c->server_key);
    return 0;
}

static void crypt_show(const struct mk_ck_file *f)
{
    for (unsigned i = 0; i < f->nkeys; i++) {
        const struct mk_ck_key *k = &f->keys[i];
        char id[2 * MK_MC_ID_LEN + 1], when[32];

        mk_crypto_hex(k->id, MK_MC_ID_LEN, id);
        printf("%s: key %s, made %s%s%s\n", f->user, id,
               mailkeep_time((time_t) k->created, "%Y-%m-%d %H:%M", "-", when, sizeof(when)),
               (int) i == f->active ? ", active" : "", k->has_escrow ? ", escrow" : ", no escrow");
    }
}

static int crypt_status(struct crypt_cmd *c, int argc, char **argv)
{
    struct mk_ck_file *f = mk_xcalloc(1, sizeof(*f));
    char why[512];
    int rc = 0;

    if (argc > 2) {
        crypt_usage();
        free(f);
        return EX_USAGE;
    }
    if (argc == 2) {
        char *user = mk_xstrdup(argv[1]), *path;

        mk_str_lower(user);
        path = mk_ck_path(c->keys, user);
        switch (mk_ck_load(path, f, why, sizeof(why))) {
        case 1:
            crypt_show(f);
            break;
        case 0:
            printf("%s: no keys (no encrypted mail yet)\n", user);
            rc = 1;
            break;
        default:
            fprintf(stderr, "mailkeep crypt: %s\n", why);
            rc = EX_DATAERR;
        }
        free(path);
        free(user);
    } else {
        DIR *d = opendir(c->keys);
        struct dirent *e;
        char **names = NULL;
        size_t n = 0;

        if (d == NULL) {
            fprintf(stderr, "mailkeep crypt: %s: %s\n", c->keys, strerror(errno));
            free(f);
            return EX_NOINPUT;
        }
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.' && strstr(e->d_name, ".tmp.") == NULL) {
                names = mk_xrealloc(names, (n + 1) * sizeof(*names));
                names[n++] = mk_xstrdup(e->d_name);
            }
        closedir(d);
        qsort(names, n, sizeof(*names), crypt_cmp);
        for (size_t i = 0; i < n; i++) {
            char *path = mk_xasprintf("%s/%s", c->keys, names[i]);

            if (mk_ck_load(path, f, why, sizeof(why)) == 1) {
                crypt_show(f);
            } else {
                fprintf(stderr, "mailkeep crypt: %s\n", why);
                rc = EX_DATAERR;
            }
            free(path);
            free(names[i]);
        }
        free(names);
    }
    free(f);
    return rc;
}

static int crypt_location(const struct crypt_cmd *c, const char *user, char **format,
                          char **path);
static char *crypt_read_line(void);
static void crypt_wipe_free(char *s);

struct crypt_rewrap {
    const struct mk_ck_file *f;
    struct mk_mc_keypair pairs[MK_CK_MAX_KEYS];
    bool opened[MK_CK_MAX_KEYS], failed[MK_CK_MAX_KEYS];
    const uint8_t *server;
    const char *password;
    const struct mk_mc_pubkey *escrow;
    struct mk_mc_pubkey active;
    unsigned done, current, unreadable, other;
};

static struct crypt_rewrap *crypt_rw;

/* One message file: a header for an older key of the user's is written
   anew for the active key (and escrow), in place, the same length. */
static int crypt_rewrap_file(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    struct crypt_rewrap *rw = crypt_rw;
    unsigned char buf[1024], dek[MK_MC_KEY_LEN], hdr[MK_MC_HEADER_MAX];
    struct mk_mc_header h;
    struct mk_mc_recipient r[2];
    const unsigned char *at;
    const struct mk_ck_key *k = NULL;
    const char *why, *base = path + ftw->base;
    size_t need, hlen, off;
    ssize_t n;
    unsigned idx, nr = 0;
    bool escrow_slot = false;
    int fd, ok;

    /* not Dovecot's own files, nor a maildir's tmp/ (files being written) */
    if (flag != FTW_F || !S_ISREG(st->st_mode) || strncmp(base, "dovecot", 7) == 0
        || (ftw->base >= 5 && strncmp(path + ftw->base - 5, "/tmp/", 5) == 0))
        return 0;
    if ((fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return 0;
    n = read(fd, buf, sizeof(buf));
    /* Maildir: the message is the file; sdbox: it follows dbox's text header. */
    at = n > 0 ? memmem(buf, (size_t) n, MK_MC_MAGIC, MK_MC_MAGIC_LEN) : NULL;
    if (at == NULL || (off = (size_t) (at - buf)) > 512
        || mk_mc_header_parse(at, (size_t) n - off, &h, &need, &why) != 1) {
        close(fd);
        return 0;
    }
    for (unsigned i = 0; i < h.nslots; i++) {
        if (h.slots[i].kind == MK_MC_SLOT_ESCROW)
            escrow_slot = true;
        else if (k == NULL)
            k = mk_ck_find(rw->f, h.slots[i].id);
    }
    if (k == NULL) {
        rw->other++;                    /* no key of this user's: leave it */
        close(fd);
        return 0;
    }
    if (memcmp(k->id, rw->active.id, MK_MC_ID_LEN) == 0) {
        rw->current++;
        close(fd);
        return 0;
    }
    idx = (unsigned) (k - rw->f->keys);
    if (!rw->opened[idx] && !rw->failed[idx]) {
        if (mk_ck_open(rw->f, k, rw->server, rw->password, &rw->pairs[idx]) == 0)
            rw->opened[idx] = true;
        else
            rw->failed[idx] = true;
    }
    r[nr].kind = MK_MC_SLOT_USER;
    r[nr++].key = &rw->active;
    if (escrow_slot && rw->escrow != NULL) {
        r[nr].kind = MK_MC_SLOT_ESCROW;
        r[nr++].key = rw->escrow;
    }
    ok = rw->opened[idx] && mk_mc_unwrap(&h, &rw->pairs[idx], dek) == 0
         && mk_mc_header_make(dek, h.chunk_shift, r, nr, hdr, &hlen) == 0 && hlen == h.len
         && pwrite(fd, hdr, hlen, (off_t) off) == (ssize_t) hlen && fsync(fd) == 0;
    OPENSSL_cleanse(dek, sizeof(dek));
    close(fd);
    if (ok)
        rw->done++;
    else
        rw->unreadable++;
    return 0;
}

static int crypt_rewrap_user(struct crypt_cmd *c, const char *user, const struct mk_ck_file *f,
                             const uint8_t *server, const struct mk_mc_pubkey *escrow)
{
    struct crypt_rewrap rw;
    char *format = NULL, *path = NULL, *password = NULL;
    bool need_password = false;

    memset(&rw, 0, sizeof(rw));
    for (unsigned i = 0; i < f->nkeys; i++)
        if ((int) i != f->active && f->keys[i].password)
            need_password = true;
    if (need_password && ((password = crypt_read_line()) == NULL || *password == '\0')) {
        fprintf(stderr, "mailkeep crypt: %s: older keys are sealed by the password: give it on "
                        "standard input\n", user);
        crypt_wipe_free(password);
        return EX_DATAERR;
    }
    if (crypt_location(c, user, &format, &path) != 0) {
        crypt_wipe_free(password);
        return EX_CONFIG;
    }
    rw.f = f;
    rw.server = server;
    rw.password = password;
    rw.escrow = escrow;
    mk_mc_pubkey_set(&rw.active, mk_ck_active(f)->pub);
    crypt_rw = &rw;
    (void) nftw(path, crypt_rewrap_file, 16, FTW_PHYS);
    crypt_rw = NULL;
    for (unsigned i = 0; i < MK_CK_MAX_KEYS; i++)
        mk_mc_keypair_wipe(&rw.pairs[i]);
    mk_mc_forget();
    crypt_wipe_free(password);
    printf("%s: %u message%s given to the new key, %u already on it\n", user, rw.done,
           rw.done == 1 ? "" : "s", rw.current);
    if (rw.unreadable > 0)
        fprintf(stderr, "mailkeep crypt: %s: %u message%s could not be given to the new key "
                        "(an older key that does not open, or a damaged header); they stay "
                        "readable with the older keys\n", user, rw.unreadable,
                rw.unreadable == 1 ? "" : "s");
    free(format);
    free(path);
    return rw.unreadable > 0 ? 1 : 0;
}

static int crypt_rotate(struct crypt_cmd *c, int argc, char **argv)
{
    struct mk_mc_pubkey escrow;
    uint8_t server[32];
    char why[512];
    bool have_escrow = *c->escrow_key != '\0', rewrap = false;
    uid_t uid;
    gid_t gid;
    int ch, rc = 0;

    optind = 1;
    while ((ch = getopt(argc, argv, "r")) != -1) {
        if (ch != 'r') {
            crypt_usage();
            return EX_USAGE;
        }
        rewrap = true;
    }
    argc -= optind - 1;
    argv += optind - 1;
    if (argc < 2) {
        crypt_usage();
        return EX_USAGE;
    }
    if (crypt_owner(c->cfg, &uid, &gid) != 0)
        return EX_CONFIG;
    if (mk_ck_server_key_load(c->server_key, server, why, sizeof(why)) != 0
        || (have_escrow && mk_ck_pubkey_load(c->escrow_key, &escrow, why, sizeof(why)) != 0)) {
        fprintf(stderr, "mailkeep crypt: %s\n", why);
        OPENSSL_cleanse(server, sizeof(server));
        return EX_CONFIG;
    }
    for (int i = 1; i < argc; i++) {
        struct mk_ck_file *f = mk_xcalloc(1, sizeof(*f));
        struct mk_mc_keypair kp;
        char *user = mk_xstrdup(argv[i]), *path, id[2 * MK_MC_ID_LEN + 1];

        mk_str_lower(user);
        path = mk_ck_path(c->keys, user);
        if (mk_ck_load(path, f, why, sizeof(why)) != 1) {
            fprintf(stderr, "mailkeep crypt: %s: %s\n", user,
                    why[0] != '\0' ? why : "no keys yet (the first message makes one)");
            rc = 1;
        } else if (mk_mc_keypair_generate(&kp) != 0
                   || mk_ck_add(f, &kp, server, have_escrow ? &escrow : NULL, time(NULL)) != 0) {
            fprintf(stderr, "mailkeep crypt: %s: cannot add a key (%u already?)\n", user,
                    f->nkeys);
            rc = EX_SOFTWARE;
        } else if (mk_ck_save(path, f, false, uid, gid, why, sizeof(why)) != 0) {
            fprintf(stderr, "mailkeep crypt: %s\n", why);
            rc = EX_IOERR;
        } else {
            mk_crypto_hex(kp.pub.id, MK_MC_ID_LEN, id);
            printf("%s: new active key %s; new mail is encrypted to it, older mail stays "
                   "readable with the %u older key%s\n", user, id, f->nkeys - 1,
                   f->nkeys == 2 ? "" : "s");
            if (rewrap) {
                int one = crypt_rewrap_user(c, user, f, server, have_escrow ? &escrow : NULL);

                if (one != 0)
                    rc = one;
            }
        }
        mk_mc_keypair_wipe(&kp);
        OPENSSL_cleanse(f, sizeof(*f));
        free(f);
        free(path);
        free(user);
    }
    OPENSSL_cleanse(server, sizeof(server));
    return rc;
}

/* ------------------------------------------------ converting mailboxes */

/* doveadm (as [crypt] doveadm says) with args; its output when out is not NULL. */
static int crypt_doveadm(const struct crypt_cmd *c, const char *const *args, char **out)
{
    return mk_run_cmd(mk_config_str(c->cfg, "crypt", "doveadm"), args, NULL, 0, out);
}

static char *crypt_trim(char *s)
{
    if (s != NULL)
        s[strcspn(s, "\r\n")] = '\0';
    return s;
}

/* The user's mail location, as FORMAT and an absolute PATH (malloc'ed). */
static int crypt_location(const struct crypt_cmd *c, const char *user, char **format, char **path)
{
    const char *mail_args[] = {"user", "-f", "mail", user, NULL};
    const char *home_args[] = {"user", "-f", "home", user, NULL};
    const char *conf_args[] = {"-h", "mail_location", NULL};
    char *loc = NULL, *home = NULL, *colon, *out;
    const char *at = strchr(user, '@');
    size_t len = 0;

    if (crypt_doveadm(c, mail_args, &loc) != 0 || *crypt_trim(loc) == '\0') {
        free(loc);
        loc = NULL;
        if (mk_run_cmd(mk_config_str(c->cfg, "crypt", "doveconf"), conf_args, NULL, 0, &loc) != 0
            || *crypt_trim(loc) == '\0') {
            fprintf(stderr, "mailkeep crypt: %s: no mail location (doveadm user, doveconf)\n", user);
            free(loc);
            return -1;
        }
    }
    if (crypt_doveadm(c, home_args, &home) != 0)
        home = NULL;
    crypt_trim(home);
    if ((colon = strchr(loc, ':')) == NULL || strchr(colon + 1, ':') != NULL
        || (strncmp(loc, "maildir:", 8) != 0 && strncmp(loc, "sdbox:", 6) != 0)) {
        fprintf(stderr, "mailkeep crypt: %s: mail location \"%s\": only maildir:PATH and "
                        "sdbox:PATH (without options) are converted\n", user, loc);
        free(loc);
        free(home);
        return -1;
    }
    *colon = '\0';
    *format = mk_xstrdup(loc);
    /* ~, %u, %n, %d, %h, as Dovecot expands them */
    out = mk_xcalloc(1, strlen(colon + 1) * 4 + (home ? strlen(home) : 0) * 4 + 1024);
    for (const char *p = colon + 1; *p != '\0'; p++) {
        const char *sub = NULL;
        size_t sub_len = 0;
        bool variable = false;

        if (p == colon + 1 && *p == '~' && home != NULL)
            sub = home, sub_len = strlen(home);
        else if (*p == '%' && p[1] != '\0') {
            variable = true;
            p++;
            if (*p == 'u')
                sub = user, sub_len = strlen(user);
            else if (*p == 'n')
                sub = user, sub_len = at != NULL ? (size_t) (at - user) : strlen(user);
            else if (*p == 'd')
                sub = at != NULL ? at + 1 : "", sub_len = strlen(sub);
            else if (*p == 'h' && home != NULL)
                sub = home, sub_len = strlen(home);
            else if (*p == '%')
                sub = "%", sub_len = 1;
        }
        if (sub != NULL) {
            memcpy(out + len, sub, sub_len);
            len += sub_len;
        } else if (variable) {
            fprintf(stderr, "mailkeep crypt: %s: cannot expand %%%c in the mail location\n",
                    user, *p);
            free(out);
            free(*format);
            free(loc);
            free(home);
            return -1;
        } else {
            out[len++] = *p;
        }
    }
    free(loc);
    free(home);
    if (out[0] != '/') {
        fprintf(stderr, "mailkeep crypt: %s: mail location %s is not absolute\n", user, out);
        free(out);
        free(*format);
        return -1;
    }
    *path = out;
    return 0;
}

/* The message count of every mailbox, as doveadm prints it ("NAME messages=N" lines). */
static char *crypt_counts(const struct crypt_cmd *c, const char *user, const char *location)
{
    char *opt = location != NULL ? mk_xasprintf("mail_location=%s", location) : NULL, *out = NULL;
    const char *with[] = {"-o", opt, "mailbox", "status", "-u", user, "messages", "*", NULL};
    const char *plain[] = {"mailbox", "status", "-u", user, "messages", "*", NULL};

    if (crypt_doveadm(c, location != NULL ? with : plain, &out) != 0) {
        free(out);
        out = NULL;
    }
    free(opt);
    return out;
}

static int crypt_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    return remove(path);
}

static int crypt_convert(struct crypt_cmd *c, const char *user, bool keep)
{
    char *format = NULL, *path = NULL, *fresh = NULL, *old = NULL, *target = NULL;
    char *before = NULL, *after = NULL;
    const char *kick[] = {"kick", user, NULL};
    int rc = 0;

    if (crypt_location(c, user, &format, &path) != 0)
        return EX_CONFIG;
    fresh = mk_xasprintf("%s.mkcrypt-new", path);
    old = mk_xasprintf("%s.mkcrypt-plain", path);
    target = mk_xasprintf("%s:%s", format, fresh);
    if (access(fresh, F_OK) == 0 || access(old, F_OK) == 0) {
        fprintf(stderr, "mailkeep crypt: %s: %s or %s exists: an earlier conversion did not "
                        "finish; look at them, remove them, and run this again\n", user, fresh,
                old);
        rc = 1;
        goto out;
    }
    {
        /* dsync writes every message through the plugin, encrypted; UIDs,
           UIDVALIDITY, flags and keywords stay. Twice: the second pass,
           after the user's sessions are ended, takes what changed meanwhile. */
        const char *backup[] = {"-o", "plugin/mailkeep_crypt=yes", "backup", "-u", user, target,
                                NULL};

        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1)
                (void) crypt_doveadm(c, kick, NULL);
            if (crypt_doveadm(c, backup, NULL) != 0) {
                fprintf(stderr, "mailkeep crypt: %s: doveadm backup to %s failed; the mailboxes "
                                "are untouched (remove %s)\n", user, target, fresh);
                rc = EX_TEMPFAIL;
                goto out;
            }
        }
    }
    if ((before = crypt_counts(c, user, NULL)) == NULL) {
        fprintf(stderr, "mailkeep crypt: %s: cannot count the messages\n", user);
        rc = EX_TEMPFAIL;
        goto out;
    }
    if (rename(path, old) != 0 || rename(fresh, path) != 0) {
        fprintf(stderr, "mailkeep crypt: %s: swapping %s and %s: %s\n", user, path, fresh,
                strerror(errno));
        rc = EX_IOERR;
        goto out;
    }
    (void) crypt_doveadm(c, kick, NULL);
    after = crypt_counts(c, user, NULL);
    if (after == NULL || strcmp(before, after) != 0) {
        fprintf(stderr, "mailkeep crypt: %s: the converted mailboxes do not count as many messages "
                        "as the old ones (a delivery during the swap?); the old ones are kept in "
                        "%s: bring the missing mail over with doveadm import\n", user, old);
        rc = 2;
        goto out;
    }
    if (!keep && nftw(old, crypt_rm, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        fprintf(stderr, "mailkeep crypt: %s: removing %s: %s\n", user, old, strerror(errno));
        rc = EX_IOERR;
        goto out;
    }
    printf("%s: %s encrypted in place (UIDs and flags kept)%s%s\n", user, path,
           keep ? "; the plain copy is in " : "", keep ? old : "");
out:
    free(before);
    free(after);
    free(target);
    free(old);
    free(fresh);
    free(path);
    free(format);
    return rc;
}

static int crypt_encrypt_existing(struct crypt_cmd *c, int argc, char **argv)
{
    bool keep = false;
    int ch, rc = 0;

    optind = 1;
    while ((ch = getopt(argc, argv, "k")) != -1) {
        if (ch != 'k') {
            crypt_usage();
            return EX_USAGE;
        }
        keep = true;
    }
    if (optind >= argc) {
        crypt_usage();
        return EX_USAGE;
    }
    for (int i = optind; i < argc; i++) {
        char *user = mk_xstrdup(argv[i]);
        int one;

        mk_str_lower(user);
        if ((one = crypt_convert(c, user, keep)) != 0)
            rc = one;
        free(user);
    }
    return rc;
}

/* One line of standard input, without its end (NULL at EOF); wiped by the caller. */
static char *crypt_read_line(void)
{
    char buf[1024];
    size_t n;

    if (fgets(buf, sizeof(buf), stdin) == NULL)
        return NULL;
    n = strcspn(buf, "\r\n");
    buf[n] = '\0';
    {
        char *line = mk_xstrdup(buf);

        OPENSSL_cleanse(buf, sizeof(buf));
        return line;
    }
}

static void crypt_wipe_free(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* Load a user's key file; 0, or an exit status after saying why. */
static int crypt_load(const struct crypt_cmd *c, const char *user, struct mk_ck_file *f,
                      char **path)
{
    char why[512];
    int rc;

    *path = mk_ck_path(c->keys, user);
    if ((rc = mk_ck_load(*path, f, why, sizeof(why))) == 1)
        return 0;
    if (rc == 0)
        fprintf(stderr, "mailkeep crypt: %s has no keys\n", user);
    else
        fprintf(stderr, "mailkeep crypt: %s\n", why);
    return rc == 0 ? 1 : EX_DATAERR;
}

/* Seal every key of f that open() opens, as sealed says; save. */
static int crypt_reseal(const struct crypt_cmd *c, struct mk_ck_file *f, const char *path,
                        int (*open_key)(void *, const struct mk_ck_file *, const struct mk_ck_key *,
                                        struct mk_mc_keypair *),
                        void *arg, const uint8_t *server, const char *password, unsigned *done)
{
    char why[512];
    uid_t uid;
    gid_t gid;

    *done = 0;
    for (unsigned i = 0; i < f->nkeys; i++) {
        struct mk_mc_keypair kp;

        if (open_key(arg, f, &f->keys[i], &kp) != 0)
            continue;
        if (mk_ck_protect(f, &f->keys[i], &kp, server, password) != 0) {
            mk_mc_keypair_wipe(&kp);
            fprintf(stderr, "mailkeep crypt: cannot seal a key\n");
            return EX_SOFTWARE;
        }
        mk_mc_keypair_wipe(&kp);
        (*done)++;
    }
    if (*done == 0)
        return 0;
    if (crypt_owner(c->cfg, &uid, &gid) != 0)
        return EX_CONFIG;
    if (mk_ck_save(path, f, false, uid, gid, why, sizeof(why)) != 0) {
        fprintf(stderr, "mailkeep crypt: %s\n", why);
        return EX_IOERR;
    }
    return 0;
}

static int crypt_open_password(void *arg, const struct mk_ck_file *f, const struct mk_ck_key *k,
                               struct mk_mc_keypair *kp)
{
    return k->password ? mk_ck_open(f, k, NULL, arg, kp) : -1;
}

/* The user changed the password: the keys it sealed are sealed by the new one. */
static int crypt_password(struct crypt_cmd *c, int argc, char **argv)
{
    struct mk_ck_file *f;
    char *user, *path = NULL, *old = NULL, *new = NULL;
    unsigned done = 0, sealed = 0;
    int rc;

    if (argc != 2) {
        crypt_usage();
        return EX_USAGE;
    }
    user = mk_xstrdup(argv[1]);
    mk_str_lower(user);
    f = mk_xcalloc(1, sizeof(*f));
    if ((rc = crypt_load(c, user, f, &path)) != 0)
        goto out;
    if ((old = crypt_read_line()) == NULL || (new = crypt_read_line()) == NULL || *new == '\0') {
        fprintf(stderr, "mailkeep crypt: password: standard input holds the old password, "
                        "then the new one, a line each\n");
        rc = EX_DATAERR;
        goto out;
    }
    for (unsigned i = 0; i < f->nkeys; i++)
        sealed += f->keys[i].password;
    if (sealed == 0) {
        printf("%s: no key is sealed by a password (the server key seals them)\n", user);
        goto out;
    }
    if ((rc = crypt_reseal(c, f, path, crypt_open_password, old, NULL, new, &done)) != 0)
        goto out;
    if (done < sealed) {
        fprintf(stderr, "mailkeep crypt: %s: the old password opens %u of %u keys%s\n", user,
                done, sealed, done == 0 ? "; nothing changed" : "; those were sealed anew");
        rc = 1;
        goto out;
    }
    printf("%s: %u key%s sealed by the new password\n", user, done, done == 1 ? "" : "s");
out:
    crypt_wipe_free(old);
    crypt_wipe_free(new);
    OPENSSL_cleanse(f, sizeof(*f));
    free(f);
    free(path);
    free(user);
    return rc;
}

/* ------------------------------------------- recovery under dual control */

struct crypt_request {
    char id[17];
    char user[256];
    char by[64];
    char approved_by[64];
    long long made, approved, used;
    char reason[512];
};

#define CRYPT_REQUEST_TTL (24 * 3600)

static char *crypt_requests_dir(const struct crypt_cmd *c)
{
    return mk_xasprintf("%s/crypt-requests", mk_config_str(c->cfg, "global", "state_dir"));
}

static int crypt_request_load(const struct crypt_cmd *c, const char *id, struct crypt_request *r)
{
    char *dir = crypt_requests_dir(c), *path, line[1024];
    FILE *fp;
    int fields = 0;

    memset(r, 0, sizeof(*r));
    for (const char *p = id; *p != '\0'; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')) || strlen(id) != 16) {
            fprintf(stderr, "mailkeep crypt: %s: not a request id\n", id);
            free(dir);
            return -1;
        }
    path = mk_xasprintf("%s/%s", dir, id);
    free(dir);
    if ((fp = fopen(path, "r")) == NULL) {
        fprintf(stderr, "mailkeep crypt: no request %s (%s)\n", id, strerror(errno));
        free(path);
        return -1;
    }
    free(path);
    strcpy(r->id, id);
    while (fgets(line, sizeof(line), fp) != NULL) {
        char *v = strchr(line, ' ');

        line[strcspn(line, "\n")] = '\0';
        if (v == NULL)
            continue;
        *v++ = '\0';
        if (strcmp(line, "user") == 0 && strlen(v) < sizeof(r->user))
            strcpy(r->user, v), fields++;
        else if (strcmp(line, "by") == 0 && strlen(v) < sizeof(r->by))
            strcpy(r->by, v), fields++;
        else if (strcmp(line, "made") == 0)
            r->made = atoll(v), fields++;
        else if (strcmp(line, "reason") == 0 && strlen(v) < sizeof(r->reason))
            strcpy(r->reason, v);
        else if (strcmp(line, "approved_by") == 0 && strlen(v) < sizeof(r->approved_by))
            strcpy(r->approved_by, v);
        else if (strcmp(line, "approved") == 0)
            r->approved = atoll(v);
        else if (strcmp(line, "used") == 0)
            r->used = atoll(v);
    }
    fclose(fp);
    if (fields != 3) {
        fprintf(stderr, "mailkeep crypt: request %s is damaged\n", id);
        return -1;
    }
    return 0;
}

static int crypt_request_save(const struct crypt_cmd *c, const struct crypt_request *r, bool create)
{
    char *dir = crypt_requests_dir(c), *path, *text, *error = NULL;
    int rc = 0;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "mailkeep crypt: %s: %s\n", dir, strerror(errno));
        free(dir);
        return -1;
    }
    path = mk_xasprintf("%s/%s", dir, r->id);
    text = mk_xasprintf("user %s\nby %s\nmade %lld\nreason %s\napproved_by %s\napproved %lld\n"
                        "used %lld\n", r->user, r->by, r->made, r->reason, r->approved_by,
                        r->approved, r->used);
    if (!create)
        (void) unlink(path);
    if (mk_crypto_file_create(path, text, strlen(text), 0600, &error) != 0) {
        fprintf(stderr, "mailkeep crypt: %s\n", error);
        free(error);
        rc = -1;
    }
    free(text);
    free(path);
    free(dir);
    return rc;
}

/* The audit log must take the record before the step is taken. */
static int crypt_audit(const struct crypt_cmd *c, const char *op, const struct crypt_request *r)
{
#ifdef HAVE_AUDIT
    const char *socket = mk_config_str(c->cfg, "audit", "socket");
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "op", op, "user", r->user,
                            "admin", mailkeep_admin_name(), "request", r->id,
                            "requested_by", r->by, "reason", r->reason);
    char *error = NULL;
    int rc;

    if (r->approved_by[0] != '\0')
        json_object_set_new(rec, "approved_by", json_string(r->approved_by));
    rc = au_client_record(socket, rec, 5000, NULL, &error);
    json_decref(rec);
    if (rc != 0) {
        fprintf(stderr, "mailkeep crypt: the audit log does not take the record, so nothing "
                        "is done: %s\n", error);
        free(error);
        return -1;
    }
    return 0;
#else
    (void) c;
    (void) op;
    (void) r;
    fprintf(stderr, "mailkeep crypt: built without the audit log: recovery is refused\n");
    return -1;
#endif
}

static int crypt_request(struct crypt_cmd *c, int argc, char **argv)
{
    struct crypt_request r;
    uint8_t raw[8];
    size_t len = 0;

    if (argc < 3) {
        crypt_usage();
        return EX_USAGE;
    }
    memset(&r, 0, sizeof(r));
    snprintf(r.user, sizeof(r.user), "%s", argv[1]);
    mk_str_lower(r.user);
    snprintf(r.by, sizeof(r.by), "%s", mailkeep_admin_name());
    for (int i = 2; i < argc && len + 1 < sizeof(r.reason); i++)
        len += (size_t) snprintf(r.reason + len, sizeof(r.reason) - len, "%s%s",
                                 i > 2 ? " " : "", argv[i]);
    for (char *p = r.reason; *p != '\0'; p++)
        if ((unsigned char) *p < 0x20)
            *p = ' ';
    r.made = (long long) time(NULL);
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return EX_SOFTWARE;
    mk_crypto_hex(raw, sizeof(raw), r.id);
    {
        struct mk_ck_file *f = mk_xcalloc(1, sizeof(*f));
        char *path;
        int rc = crypt_load(c, r.user, f, &path);

        free(f);
        free(path);
        if (rc != 0)
            return rc;
    }
    if (crypt_audit(c, "crypt-recovery-request", &r) != 0)
        return EX_UNAVAILABLE;
    if (crypt_request_save(c, &r, true) != 0)
        return EX_CANTCREAT;
    printf("request %s: recover %s's keys, asked by %s. Another administrator approves it with:\n"
           "  mailkeep crypt approve %s\n", r.id, r.user, r.by, r.id);
    return 0;
}

static int crypt_approve(struct crypt_cmd *c, int argc, char **argv)
{
    struct crypt_request r;
    time_t now = time(NULL);

    if (argc != 2) {
        crypt_usage();
        return EX_USAGE;
    }
    if (crypt_request_load(c, argv[1], &r) != 0)
        return 1;
    if (r.approved != 0 || r.used != 0 || now - r.made > CRYPT_REQUEST_TTL) {
        fprintf(stderr, "mailkeep crypt: request %s is %s\n", r.id,
                r.used ? "used" : r.approved ? "approved already" : "out of date (24 hours)");
        return 1;
    }
    if (strcmp(r.by, mailkeep_admin_name()) == 0) {
        fprintf(stderr, "mailkeep crypt: %s asked for request %s: another administrator must "
                        "approve it (dual control)\n", r.by, r.id);
        return 1;
    }
    snprintf(r.approved_by, sizeof(r.approved_by), "%s", mailkeep_admin_name());
    r.approved = (long long) now;
    if (crypt_audit(c, "crypt-recovery-approve", &r) != 0)
        return EX_UNAVAILABLE;
    if (crypt_request_save(c, &r, false) != 0)
        return EX_CANTCREAT;
    printf("request %s approved by %s: recover %s's keys with\n"
           "  mailkeep crypt recover -k ESCROW_PRIVATE_FILE %s\n", r.id, r.approved_by, r.user,
           r.id);
    return 0;
}

static int crypt_open_escrow(void *arg, const struct mk_ck_file *f, const struct mk_ck_key *k,
                             struct mk_mc_keypair *kp)
{
    (void) f;
    return mk_ck_open_escrow(k, arg, kp);
}

static int crypt_recover(struct crypt_cmd *c, int argc, char **argv)
{
    struct crypt_request r;
    struct mk_ck_file *f = NULL;
    struct mk_mc_keypair escrow;
    const char *escrow_file = NULL;
    uint8_t server[32], priv[32];
    char why[512], *path = NULL, *password = NULL;
    bool to_server = false;
    unsigned done = 0;
    int ch, rc;

    optind = 1;
    while ((ch = getopt(argc, argv, "k:s")) != -1) {
        switch (ch) {
        case 'k':
            escrow_file = optarg;
            break;
        case 's':
            to_server = true;
            break;
        default:
            crypt_usage();
            return EX_USAGE;
        }
    }
    if (escrow_file == NULL || optind != argc - 1) {
        crypt_usage();
        return EX_USAGE;
    }
    if (crypt_request_load(c, argv[optind], &r) != 0)
        return 1;
    if (r.approved == 0 || r.used != 0 || time(NULL) - r.made > CRYPT_REQUEST_TTL) {
        fprintf(stderr, "mailkeep crypt: request %s is %s\n", r.id,
                r.used ? "used" : r.approved == 0 ? "not approved (dual control)"
                                                  : "out of date (24 hours)");
        return 1;
    }
    if (mk_ck_server_key_load(escrow_file, priv, why, sizeof(why)) != 0
        || mk_mc_keypair_from_private(priv, &escrow) != 0) {
        OPENSSL_cleanse(priv, sizeof(priv));
        fprintf(stderr, "mailkeep crypt: escrow key: %s\n", why);
        return EX_CONFIG;
    }
    OPENSSL_cleanse(priv, sizeof(priv));
    if (to_server) {
        if (mk_ck_server_key_load(c->server_key, server, why, sizeof(why)) != 0) {
            fprintf(stderr, "mailkeep crypt: %s\n", why);
            rc = EX_CONFIG;
            goto out;
        }
    } else if ((password = crypt_read_line()) == NULL || *password == '\0') {
        fprintf(stderr, "mailkeep crypt: recover: standard input holds the user's new "
                        "password (or -s: seal by the server key)\n");
        rc = EX_DATAERR;
        goto out;
    }
    f = mk_xcalloc(1, sizeof(*f));
    if ((rc = crypt_load(c, r.user, f, &path)) != 0)
        goto out;
    if (crypt_audit(c, "crypt-recover", &r) != 0) {
        rc = EX_UNAVAILABLE;
        goto out;
    }
    r.used = (long long) time(NULL);
    if (crypt_request_save(c, &r, false) != 0) {
        rc = EX_CANTCREAT;
        goto out;
    }
    rc = crypt_reseal(c, f, path, crypt_open_escrow, &escrow, to_server ? server : NULL,
                      to_server ? NULL : password, &done);
    if (rc == 0 && done < f->nkeys)
        fprintf(stderr, "mailkeep crypt: %s: the escrow key opens %u of %u keys (the others "
                        "were made without escrow)\n", r.user, done, f->nkeys);
    if (rc == 0)
        printf("%s: %u key%s recovered with escrow (request %s, asked by %s, approved by %s), "
               "sealed by %s\n", r.user, done, done == 1 ? "" : "s", r.id, r.by, r.approved_by,
               to_server ? "the server key" : "the new password");
    if (rc == 0 && done == 0)
        rc = 1;
out:
    crypt_wipe_free(password);
    mk_mc_keypair_wipe(&escrow);
    mk_mc_forget();
    OPENSSL_cleanse(server, sizeof(server));
    if (f != NULL) {
        OPENSSL_cleanse(f, sizeof(*f));
        free(f);
    }
    free(path);
    return rc;
}

int mailkeep_crypt(const char *config_path, int argc, char **argv)
{
    struct crypt_cmd c;
    int rc;

    if (argc < 1) {
        crypt_usage();
        return EX_USAGE;
    }
    if ((c.cfg = mailkeep_load_config(config_path)) == NULL)
        return EX_CONFIG;
    c.keys = mk_config_str(c.cfg, "crypt", "keys");
    c.server_key = mk_config_str(c.cfg, "crypt", "server_key");
    c.escrow_key = mk_config_str(c.cfg, "crypt", "escrow_key");
    if (strcmp(argv[0], "init") == 0) {
        rc = crypt_init(&c, argc, argv);
    } else if (strcmp(argv[0], "status") == 0) {
        rc = crypt_status(&c, argc, argv);
    } else if (strcmp(argv[0], "rotate") == 0) {
        rc = crypt_rotate(&c, argc, argv);
    } else if (strcmp(argv[0], "encrypt-existing") == 0) {
        rc = crypt_encrypt_existing(&c, argc, argv);
    } else if (strcmp(argv[0], "password") == 0) {
        rc = crypt_password(&c, argc, argv);
    } else if (strcmp(argv[0], "request") == 0) {
        rc = crypt_request(&c, argc, argv);
    } else if (strcmp(argv[0], "approve") == 0) {
        rc = crypt_approve(&c, argc, argv);
    } else if (strcmp(argv[0], "recover") == 0) {
        rc = crypt_recover(&c, argc, argv);
    } else {
        crypt_usage();
        rc = EX_USAGE;
    }
    mk_config_unref(c.cfg);
    return rc;
}
