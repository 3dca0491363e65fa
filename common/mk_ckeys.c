/*
 * mk_ckeys - mailkeep_crypt's user key files. See mk_ckeys.h.
 *
 * Self-contained like mk_mcrypt (OpenSSL, libc and mk_hex.c): the Dovecot
 * plugin compiles it in.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "mk_ckeys.h"
#include "mk_crypto.h"

#define MK_CK_MAGIC "mailkeep-crypt-keys 1"
#define MK_CK_AAD "mailkeep-crypt key"
#define MK_CK_FILE_MAX 65536

static void mk_ck_why(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void mk_ck_why(char *why, size_t why_len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

/* Exactly 2n lower-case hex digits. */
static int mk_ck_unhex(const char *hex, size_t hex_len, uint8_t *out, size_t n)
{
    return hex_len == 2 * n ? mk_crypto_unhex(hex, n, out) : -1;
}

char *mk_ck_path(const char *dir, const char *user)
{
    size_t len = strlen(dir) + 3 * strlen(user) + 2;
    char *path = malloc(len), *p;

    if (path == NULL)
        return NULL;
    p = path + snprintf(path, len, "%s/", dir);
    for (const char *u = user; *u != '\0'; u++) {
        if ((*u >= 'a' && *u <= 'z') || (*u >= '0' && *u <= '9') || strchr(".@_+-", *u) != NULL)
            *p++ = *u;
        else
            p += sprintf(p, "%%%02X", (unsigned char) *u);
    }
    *p = '\0';
    /* "." and ".." are not users' files */
    if (strcmp(user, ".") == 0 || strcmp(user, "..") == 0)
        strcpy(path + strlen(dir) + 1, "%2E");
    return path;
}

/* ---------------------------------------------------------------- parse */

#define MK_CK_FIELDS 8

/* Split a line on single spaces into at most MK_CK_FIELDS fields (NUL-terminated in place). */
static int mk_ck_split(char *line, char **f)
{
    int n = 0;

    for (char *p = line;;) {
        if (n == MK_CK_FIELDS || *p == ' ' || *p == '\0')
            return -1;
        f[n++] = p;
        while (*p != ' ' && *p != '\0')
            p++;
        if (*p == '\0')
            return n;
        *p++ = '\0';
    }
}

static int mk_ck_number(const char *s, long long *v)
{
    char *end;

    if (*s < '0' || *s > '9' || strlen(s) > 18)
        return -1;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return *end == '\0' && errno == 0 ? 0 : -1;
}

int mk_ck_parse(const char *text, size_t len, struct mk_ck_file *f, char *why, size_t why_len)
{
    char line[1024], *fields[MK_CK_FIELDS];
    uint8_t active_id[MK_MC_ID_LEN];
    bool have_active = false, have_user = false;
    unsigned lineno = 0;
    size_t off = 0;

    memset(f, 0, sizeof(*f));
    f->active = -1;
    while (off < len) {
        const char *nl = memchr(text + off, '\n', len - off);
        size_t n = (nl != NULL ? (size_t) (nl - text) : len) - off;
        int nf;

        lineno++;
        if (nl == NULL) {
            mk_ck_why(why, why_len, "line %u: no newline at the end", lineno);
            return -1;
        }
        if (n >= sizeof(line)) {
            mk_ck_why(why, why_len, "line %u: too long", lineno);
            return -1;
        }
        memcpy(line, text + off, n);
        line[n] = '\0';
        off += n + 1;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char) line[i] < 0x20 || line[i] == 0x7f) {
                mk_ck_why(why, why_len, "line %u: a control character", lineno);
                return -1;
            }
        if (lineno == 1) {
            if (strcmp(line, MK_CK_MAGIC) != 0) {
                mk_ck_why(why, why_len, "line 1: not \"" MK_CK_MAGIC "\"");
                return -1;
            }
            continue;
        }
        if ((nf = mk_ck_split(line, fields)) < 0) {
            mk_ck_why(why, why_len, "line %u: not fields separated by single spaces", lineno);
            return -1;
        }
        if (strcmp(fields[0], "user") == 0 && nf == 2) {
            if (have_user || strlen(fields[1]) >= sizeof(f->user)) {
                mk_ck_why(why, why_len, "line %u: bad user line", lineno);
                return -1;
            }
            strcpy(f->user, fields[1]);
            have_user = true;
        } else if (strcmp(fields[0], "key") == 0
                   && ((nf == 6 && strcmp(fields[4], "server") == 0)
                       || (nf == 8 && strcmp(fields[4], "password") == 0))) {
            struct mk_ck_key *k = &f->keys[f->nkeys];
            struct mk_mc_pubkey pub;
            long long cost = 0;

            if (f->nkeys == MK_CK_MAX_KEYS) {
                mk_ck_why(why, why_len, "line %u: more than %d keys", lineno, MK_CK_MAX_KEYS);
                return -1;
            }
            k->password = nf == 8;
            if (mk_ck_unhex(fields[1], strlen(fields[1]), k->id, MK_MC_ID_LEN) != 0
                || mk_ck_number(fields[2], &k->created) != 0
                || mk_ck_unhex(fields[3], strlen(fields[3]), k->pub, MK_MC_KEY_LEN) != 0
                || (k->password
                    && (mk_ck_number(fields[5], &cost) != 0 || cost < MK_CK_COST_MIN
                        || cost > MK_CK_COST_MAX
                        || mk_ck_unhex(fields[6], strlen(fields[6]), k->salt,
                                       MK_CK_SALT_LEN) != 0))
                || mk_ck_unhex(fields[nf - 1], strlen(fields[nf - 1]), k->box,
                               MK_CK_BOX_LEN) != 0) {
                mk_ck_why(why, why_len, "line %u: bad key line", lineno);
                return -1;
            }
            k->cost = (unsigned) cost;
            mk_mc_pubkey_set(&pub, k->pub);
            if (memcmp(pub.id, k->id, MK_MC_ID_LEN) != 0 || mk_ck_find(f, k->id) != NULL) {
                mk_ck_why(why, why_len, "line %u: the id is not the key's, or twice", lineno);
                return -1;
            }
            f->nkeys++;
        } else if (strcmp(fields[0], "escrow") == 0 && nf == 3) {
            uint8_t id[MK_MC_ID_LEN];
            struct mk_ck_key *k;

            if (mk_ck_unhex(fields[1], strlen(fields[1]), id, sizeof(id)) != 0
                || (k = (struct mk_ck_key *) mk_ck_find(f, id)) == NULL || k->has_escrow
                || mk_ck_unhex(fields[2], strlen(fields[2]), k->escrow, MK_CK_ESCROW_LEN) != 0) {
                mk_ck_why(why, why_len, "line %u: bad escrow line (its key comes first)", lineno);
                return -1;
            }
            k->has_escrow = true;
        } else if (strcmp(fields[0], "active") == 0 && nf == 2) {
            if (have_active
                || mk_ck_unhex(fields[1], strlen(fields[1]), active_id, sizeof(active_id)) != 0) {
                mk_ck_why(why, why_len, "line %u: bad active line", lineno);
                return -1;
            }
            have_active = true;
        } else {
            mk_ck_why(why, why_len, "line %u: unknown or malformed \"%.20s\"", lineno, fields[0]);
            return -1;
        }
    }
    if (lineno == 0 || !have_user || !have_active) {
        mk_ck_why(why, why_len, "incomplete: needs the magic, user and active lines");
        return -1;
    }
    for (unsigned i = 0; i < f->nkeys; i++)
        if (memcmp(f->keys[i].id, active_id, MK_MC_ID_LEN) == 0)
            f->active = (int) i;
    if (f->active < 0) {
        mk_ck_why(why, why_len, "the active key is not in the file");
        return -1;
    }
    return 0;
}

char *mk_ck_format(const struct mk_ck_file *f)
{
    size_t size = 128 + strlen(f->user) + f->nkeys * (64 + 2 * (MK_MC_KEY_LEN + MK_CK_BOX_LEN
                                                              + MK_CK_ESCROW_LEN));
    char *out = malloc(size), *p = out;
    char a[2 * MK_CK_ESCROW_LEN + 1], b[2 * MK_CK_BOX_LEN + 1], id[2 * MK_MC_ID_LEN + 1];
    char salt[2 * MK_CK_SALT_LEN + 1];

    if (out == NULL)
        return NULL;
    p += sprintf(p, MK_CK_MAGIC "\nuser %s\n", f->user);
    for (unsigned i = 0; i < f->nkeys; i++) {
        const struct mk_ck_key *k = &f->keys[i];

        mk_crypto_hex(k->id, MK_MC_ID_LEN, id);
        mk_crypto_hex(k->pub, MK_MC_KEY_LEN, a);
        mk_crypto_hex(k->box, MK_CK_BOX_LEN, b);
        if (k->password) {
            mk_crypto_hex(k->salt, MK_CK_SALT_LEN, salt);
            p += sprintf(p, "key %s %lld %s password %u %s %s\n", id, k->created, a, k->cost,
                         salt, b);
        } else {
            p += sprintf(p, "key %s %lld %s server %s\n", id, k->created, a, b);
        }
        if (k->has_escrow) {
            mk_crypto_hex(k->escrow, MK_CK_ESCROW_LEN, a);
            p += sprintf(p, "escrow %s %s\n", id, a);
        }
    }
    if (f->active >= 0) {
        mk_crypto_hex(f->keys[f->active].id, MK_MC_ID_LEN, id);
        sprintf(p, "active %s\n", id);
    }
    return out;
}

/* ----------------------------------------------------------------- files */

/* A regular file of at most max bytes, not a link; secret: nobody else may read it. */
static char *mk_ck_read_file(const char *path, bool secret, size_t max, size_t *len, int *err,
                             char *why, size_t why_len)
{
    struct stat st;
    char *buf;
    ssize_t n;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    *err = 0;
    if (fd < 0) {
        *err = errno;
        mk_ck_why(why, why_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t) max
        || (secret && (st.st_mode & 077) != 0)) {
        mk_ck_why(why, why_len, "%s: %s", path,
                  secret && (st.st_mode & 077) != 0 ? "group or others may read it (chmod 600)"
                                                    : "not a regular file of a sane size");
        close(fd);
        return NULL;
    }
    if ((buf = malloc((size_t) st.st_size + 1)) == NULL) {
        close(fd);
        mk_ck_why(why, why_len, "out of memory");
        return NULL;
    }
    n = read(fd, buf, (size_t) st.st_size);
    close(fd);
    if (n != st.st_size) {
        mk_ck_why(why, why_len, "%s: short read", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = (size_t) n;
    return buf;
}

int mk_ck_load(const char *path, struct mk_ck_file *f, char *why, size_t why_len)
{
    char problem[200];
    size_t len;
    int err, rc;
    char *text = mk_ck_read_file(path, true, MK_CK_FILE_MAX, &len, &err, why, why_len);

    if (text == NULL)
        return err == ENOENT ? 0 : -1;
    rc = mk_ck_parse(text, len, f, problem, sizeof(problem));
    OPENSSL_cleanse(text, len);
    free(text);
    if (rc != 0) {
        mk_ck_why(why, why_len, "%s: %s", path, problem);
        return -1;
    }
    return 1;
}

int mk_ck_save(const char *path, const struct mk_ck_file *f, bool create, uid_t uid, gid_t gid,
               char *why, size_t why_len)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32), *text = mk_ck_format(f), *slash;
    int fd = -1, rc = -1;

    if (tmp == NULL || text == NULL) {
        mk_ck_why(why, why_len, "out of memory");
        goto out;
    }
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long) getpid());
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0
        || write(fd, text, strlen(text)) != (ssize_t) strlen(text)
        || (uid != (uid_t) -1 && fchown(fd, uid, gid) != 0) || fsync(fd) != 0) {
        mk_ck_why(why, why_len, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    /* create: link() fails when another process made the file first */
    if (create ? link(tmp, path) != 0 : rename(tmp, path) != 0) {
        if (create && errno == EEXIST)
            why[0] = '\0';
        else
            mk_ck_why(why, why_len, "%s: %s", path, strerror(errno));
        goto out;
    }
    if ((slash = strrchr(tmp, '/')) != NULL) {
        int dfd;

        *slash = '\0';
        if ((dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
            (void) fsync(dfd);
            close(dfd);
        }
        *slash = '/';
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL) {
        (void) unlink(tmp);             /* after link(), or a failure */
        free(tmp);
    }
    if (text != NULL) {
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    return rc;
}

/* ------------------------------------------------------------------ keys */

const struct mk_ck_key *mk_ck_active(const struct mk_ck_file *f)
{
    return f->active >= 0 ? &f->keys[f->active] : NULL;
}

const struct mk_ck_key *mk_ck_find(const struct mk_ck_file *f, const uint8_t id[MK_MC_ID_LEN])
{
    for (unsigned i = 0; i < f->nkeys; i++)
        if (memcmp(f->keys[i].id, id, MK_MC_ID_LEN) == 0)
            return &f->keys[i];
    return NULL;
}

/* The associated data of a sealed private key: what it belongs to. */
static size_t mk_ck_aad(const char *user, const uint8_t id[MK_MC_ID_LEN], uint8_t *aad)
{
    size_t ulen = strlen(user);

    memcpy(aad, MK_CK_AAD, sizeof(MK_CK_AAD));  /* with its NUL, as a separator */
    memcpy(aad + sizeof(MK_CK_AAD), user, ulen + 1);
    memcpy(aad + sizeof(MK_CK_AAD) + ulen + 1, id, MK_MC_ID_LEN);
    return sizeof(MK_CK_AAD) + ulen + 1 + MK_MC_ID_LEN;
}

static int mk_ck_gcm(bool seal, const uint8_t key[32], const uint8_t *aad, size_t aad_len,
                     uint8_t box[MK_CK_BOX_LEN], uint8_t secret[MK_MC_KEY_LEN])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t *nonce = box, *ct = box + 12, *tag = box + 12 + MK_MC_KEY_LEN;
    int n, ok;

    if (ctx == NULL)
        return -1;
    if (seal && RAND_bytes(nonce, 12) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return -1;
    }
    ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce, seal ? 1 : 0) == 1
         && EVP_CipherUpdate(ctx, NULL, &n, aad, (int) aad_len) == 1
         && (seal ? EVP_CipherUpdate(ctx, ct, &n, secret, MK_MC_KEY_LEN)
                  : EVP_CipherUpdate(ctx, secret, &n, ct, MK_MC_KEY_LEN)) == 1
         && (seal || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, MK_MC_TAG_LEN, tag) == 1)
         && EVP_CipherFinal_ex(ctx, seal ? ct + MK_MC_KEY_LEN : secret + MK_MC_KEY_LEN, &n) == 1
         && (!seal || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, MK_MC_TAG_LEN, tag) == 1);
    EVP_CIPHER_CTX_free(ctx);
    if (!ok && !seal)
        OPENSSL_cleanse(secret, MK_MC_KEY_LEN);
    return ok ? 0 : -1;
}

int mk_ck_add(struct mk_ck_file *f, const struct mk_mc_keypair *kp, const uint8_t server_key[32],
              const struct mk_mc_pubkey *escrow, time_t now)
{
    struct mk_ck_key *k;
    uint8_t aad[sizeof(MK_CK_AAD) + sizeof(f->user) + MK_MC_ID_LEN], priv[MK_MC_KEY_LEN];
    size_t aad_len;
    int rc;

    if (f->nkeys == MK_CK_MAX_KEYS || mk_ck_find(f, kp->pub.id) != NULL)
        return -1;
    k = &f->keys[f->nkeys];
    memset(k, 0, sizeof(*k));
    memcpy(k->id, kp->pub.id, MK_MC_ID_LEN);
    memcpy(k->pub, kp->pub.pub, MK_MC_KEY_LEN);
    k->created = (long long) now;
    aad_len = mk_ck_aad(f->user, k->id, aad);
    memcpy(priv, kp->priv, sizeof(priv));
    rc = mk_ck_gcm(true, server_key, aad, aad_len, k->box, priv);
    OPENSSL_cleanse(priv, sizeof(priv));
    if (rc != 0)
        return -1;
    if (escrow != NULL) {
        struct mk_mc_recipient r = {MK_MC_SLOT_ESCROW, escrow};
        size_t len;

        if (mk_mc_header_make(kp->priv, MK_MC_SHIFT_MIN, &r, 1, k->escrow, &len) != 0
            || len != MK_CK_ESCROW_LEN)
            return -1;
        k->has_escrow = true;
    }
    f->active = (int) f->nkeys++;
    return 0;
}

/* The key pair of an opened private key (wiped), which must be k's. */
static int mk_ck_complete(uint8_t priv[MK_MC_KEY_LEN], const struct mk_ck_key *k,
                          struct mk_mc_keypair *kp)
{
    int rc = mk_mc_keypair_from_private(priv, kp);

    OPENSSL_cleanse(priv, MK_MC_KEY_LEN);
    if (rc == 0 && memcmp(kp->pub.pub, k->pub, MK_MC_KEY_LEN) != 0) {
        mk_mc_keypair_wipe(kp);
        return -1;
    }
    return rc;
}

/* The key a password gives with scrypt (N = 2^cost, r = 8, p = 1). */
static int mk_ck_password_key(const char *password, const uint8_t salt[MK_CK_SALT_LEN],
                              unsigned cost, uint8_t key[32])
{
    return EVP_PBE_scrypt(password, strlen(password), salt, MK_CK_SALT_LEN, (uint64_t) 1 << cost,
                          8, 1, (uint64_t) 1 << (cost + 11), key, 32) == 1 ? 0 : -1;
}

int mk_ck_open(const struct mk_ck_file *f, const struct mk_ck_key *k, const uint8_t *server_key,
               const char *password, struct mk_mc_keypair *kp)
{
    uint8_t aad[sizeof(MK_CK_AAD) + sizeof(f->user) + MK_MC_ID_LEN], box[MK_CK_BOX_LEN];
    uint8_t priv[MK_MC_KEY_LEN], pkey[32];
    size_t aad_len = mk_ck_aad(f->user, k->id, aad);
    int rc;

    memcpy(box, k->box, sizeof(box));
    if (k->password) {
        if (password == NULL || mk_ck_password_key(password, k->salt, k->cost, pkey) != 0)
            return -1;
        rc = mk_ck_gcm(false, pkey, aad, aad_len, box, priv);
        OPENSSL_cleanse(pkey, sizeof(pkey));
    } else {
        if (server_key == NULL)
            return -1;
        rc = mk_ck_gcm(false, server_key, aad, aad_len, box, priv);
    }
    if (rc != 0)
        return -1;
    return mk_ck_complete(priv, k, kp);
}

int mk_ck_protect(const struct mk_ck_file *f, struct mk_ck_key *k, const struct mk_mc_keypair *kp,
                  const uint8_t *server_key, const char *password)
{
    uint8_t aad[sizeof(MK_CK_AAD) + sizeof(f->user) + MK_MC_ID_LEN], box[MK_CK_BOX_LEN];
    uint8_t priv[MK_MC_KEY_LEN], salt[MK_CK_SALT_LEN], pkey[32];
    size_t aad_len = mk_ck_aad(f->user, k->id, aad);
    int rc;

    if (memcmp(kp->pub.pub, k->pub, MK_MC_KEY_LEN) != 0 || (password == NULL) == (server_key == NULL))
        return -1;
    memcpy(priv, kp->priv, sizeof(priv));
    if (password != NULL) {
        if (RAND_bytes(salt, sizeof(salt)) != 1
            || mk_ck_password_key(password, salt, MK_CK_COST_DEFAULT, pkey) != 0) {
            OPENSSL_cleanse(priv, sizeof(priv));
            return -1;
        }
        rc = mk_ck_gcm(true, pkey, aad, aad_len, box, priv);
        OPENSSL_cleanse(pkey, sizeof(pkey));
    } else {
        rc = mk_ck_gcm(true, server_key, aad, aad_len, box, priv);
    }
    OPENSSL_cleanse(priv, sizeof(priv));
    if (rc != 0)
        return -1;
    memcpy(k->box, box, sizeof(box));
    k->password = password != NULL;
    if (k->password) {
        memcpy(k->salt, salt, sizeof(salt));
        k->cost = MK_CK_COST_DEFAULT;
    } else {
        memset(k->salt, 0, sizeof(k->salt));
        k->cost = 0;
    }
    return 0;
}

int mk_ck_open_escrow(const struct mk_ck_key *k, const struct mk_mc_keypair *escrow,
                      struct mk_mc_keypair *kp)
{
    struct mk_mc_header h;
    uint8_t priv[MK_MC_KEY_LEN];
    const char *why;
    size_t need;

    if (!k->has_escrow || mk_mc_header_parse(k->escrow, MK_CK_ESCROW_LEN, &h, &need, &why) != 1
        || mk_mc_unwrap(&h, escrow, priv) != 0)
        return -1;
    return mk_ck_complete(priv, k, kp);
}

static int mk_ck_hex_file(const char *path, bool secret, uint8_t *out, char *why, size_t why_len)
{
    size_t len;
    int err, rc;
    char *text = mk_ck_read_file(path, secret, 256, &len, &err, why, why_len);

    if (text == NULL)
        return -1;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        len--;
    rc = mk_ck_unhex(text, len, out, 32);
    OPENSSL_cleanse(text, len);
    free(text);
    if (rc != 0)
        mk_ck_why(why, why_len, "%s: not 64 lower-case hex digits", path);
    return rc;
}

int mk_ck_server_key_load(const char *path, uint8_t key[32], char *why, size_t why_len)
{
    return mk_ck_hex_file(path, true, key, why, why_len);
}

int mk_ck_pubkey_load(const char *path, struct mk_mc_pubkey *pub, char *why, size_t why_len)
{
    uint8_t raw[MK_MC_KEY_LEN];

    if (mk_ck_hex_file(path, false, raw, why, why_len) != 0)
        return -1;
    mk_mc_pubkey_set(pub, raw);
    return 0;
}
