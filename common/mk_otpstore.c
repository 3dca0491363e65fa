/*
 * mk_otpstore - the second-factor store. See mk_otpstore.h.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "mk_crypto.h"
#include "mk_otpstore.h"
#include "mk_util.h"

#define MK_OTP_MAGIC		"mailkeep-otp 1"
#define MK_OTP_MAX_LINE		2048
#define MK_OTP_MAX_FIELD	320
#define MK_OTP_NONCE		12
#define MK_OTP_TAG		16
#define MK_OTP_LOCK_WAIT_MS	10000

struct mk_otp_store {
    char *dir;
    char *key_file;
    unsigned char key[32];
    bool have_key;
};

struct mk_otp_lock {
    struct mk_otp_store *store;
    char *path;
    int fd;
};

/* ------------------------------------------------------------ records */

void mk_otp_record_init(struct mk_otp_record *r, const char *user)
{
    memset(r, 0, sizeof(*r));
    r->user = user != NULL ? mk_xstrdup(user) : NULL;
}

static void mk_otp_sealed_free(struct mk_otp_sealed *s)
{
    free(s->box);
    memset(s, 0, sizeof(*s));
}

void mk_otp_sealed_move(struct mk_otp_sealed *to, struct mk_otp_sealed *from)
{
    mk_otp_sealed_free(to);
    if (from != NULL) {
        *to = *from;
        memset(from, 0, sizeof(*from));
    }
}

void mk_otp_record_free(struct mk_otp_record *r)
{
    free(r->user);
    mk_otp_sealed_free(&r->token);
    mk_otp_sealed_free(&r->pending);
    free(r->recovery);
    for (size_t i = 0; i < r->napppass; i++) {
        free(r->apppass[i].service);
        free(r->apppass[i].host);
        free(r->apppass[i].label);
    }
    free(r->apppass);
    free(r->must_change);
    for (size_t i = 0; i < r->nhistory; i++)
        free(r->history[i].crypt);
    free(r->history);
    memset(r, 0, sizeof(*r));
}

bool mk_otp_record_empty(const struct mk_otp_record *r)
{
    return !r->token.present && !r->pending.present && r->last == 0 && r->counter == 0
           && r->used == 0 && r->failures == 0 && !r->locked && r->nrecovery == 0
           && r->napppass == 0 && r->changed == 0 && r->must_change == NULL
           && r->nhistory == 0;
}

static int mk_otp_parse_u64(const char *s, uint64_t *v)
{
    uint64_t n = 0;

    if (*s == '\0' || strlen(s) > 20)
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || n > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
            return -1;
        n = n * 10 + (uint64_t) (*s - '0');
    }
    *v = n;
    return 0;
}

static int mk_otp_parse_time(const char *s, time_t *t)
{
    uint64_t v;

    if (mk_otp_parse_u64(s, &v) != 0 || v > (uint64_t) INT64_MAX)
        return -1;
    *t = (time_t) v;
    return 0;
}

static bool mk_otp_is_hex(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);

    if (n < min || n > max || n % 2 != 0)
        return false;
    for (; *s != '\0'; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static bool mk_otp_is_word(const char *s, const char *extra, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return false;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')
              || strchr(extra, *s) != NULL))
            return false;
    return true;
}

static int mk_otp_parse_hash(const char *salt, const char *hash, struct mk_otp_hash *h)
{
    if (!mk_otp_is_hex(salt, 32, 32) || !mk_otp_is_hex(hash, 64, 64))
        return -1;
    if (mk_crypto_unhex(salt, 16, h->salt) != 0 || mk_crypto_unhex(hash, 32, h->hash) != 0)
        return -1;
    return 0;
}

static int mk_otp_parse_sealed(char **f, size_t n, struct mk_otp_sealed *s, const char **why)
{
    uint64_t digits, period;

    if (n != 7) {
        *why = "wants KIND ALGO DIGITS PERIOD CREATED BOX";
        return -1;
    }
    if (mk_otp_parse_kind(f[1], &s->kind) != 0) {
        *why = "unknown token kind";
        return -1;
    }
    if (mk_otp_parse_algo(f[2], &s->algo) != 0 || (s->kind == MK_OTP_HOTP && s->algo != MK_OTP_SHA1)) {
        *why = "unknown algorithm";
        return -1;
    }
    if (mk_otp_parse_u64(f[3], &digits) != 0 || digits < 6 || digits > 8) {
        *why = "digits must be 6 to 8";
        return -1;
    }
    if (mk_otp_parse_u64(f[4], &period) != 0 || period > 300
        || (s->kind == MK_OTP_TOTP && period < 10)) {
        *why = "bad period";
        return -1;
    }
    if (mk_otp_parse_time(f[5], &s->created) != 0) {
        *why = "bad time";
        return -1;
    }
    if (!mk_otp_is_hex(f[6], 2 * (MK_OTP_NONCE + 1 + MK_OTP_TAG),
                       2 * (MK_OTP_NONCE + MK_OTP_SECRET_MAX + MK_OTP_TAG))) {
        *why = "bad sealed secret";
        return -1;
    }
    s->digits = (unsigned) digits;
    s->period = (unsigned) period;
    s->box = mk_xstrdup(f[6]);
    s->present = true;
    return 0;
}

/* Split a line at single spaces into at most max fields; the last takes the rest. */
static size_t mk_otp_fields(char *line, char **f, size_t max)
{
    size_t n = 0;

    while (n < max) {
        f[n++] = line;
        if (n == max || (line = strchr(line, ' ')) == NULL)
            break;
        *line++ = '\0';
    }
    return n;
}

static int mk_otp_parse_line(char *line, struct mk_otp_record *r, unsigned *seen,
                             const char **why)
{
    char *f[9];
    size_t n;
    uint64_t v;

    n = mk_otp_fields(line, f, 9);
    for (size_t i = 0; i < n; i++)
        if (*f[i] == '\0') {
            *why = "empty field";
            return -1;
        }
    if (strcmp(f[0], "apppass") != 0)
        for (size_t i = 0; i < n; i++)
            if (strchr(f[i], ' ') != NULL || strlen(f[i]) > MK_OTP_MAX_FIELD) {
                *why = "too many fields";
                return -1;
            }

#define ONCE(bit, name)                                                                  \
    do {                                                                                 \
        if (*seen & (1u << (bit))) {                                                     \
            *why = "\"" name "\" appears twice";                                         \
            return -1;                                                                   \
        }                                                                                \
        *seen |= 1u << (bit);                                                            \
    } while (0)

    if (strcmp(f[0], "user") == 0) {
        ONCE(0, "user");
        if (n != 2 || !mk_otp_is_word(f[1], "@._+-=%!#$&'*/?^`{|}~", MK_OTP_MAX_FIELD)) {
            *why = "bad user";
            return -1;
        }
        free(r->user);
        r->user = mk_xstrdup(f[1]);
    } else if (strcmp(f[0], "token") == 0) {
        ONCE(1, "token");
        return mk_otp_parse_sealed(f, n, &r->token, why);
    } else if (strcmp(f[0], "pending") == 0) {
        ONCE(2, "pending");
        return mk_otp_parse_sealed(f, n, &r->pending, why);
    } else if (strcmp(f[0], "last") == 0 || strcmp(f[0], "counter") == 0) {
        bool last = f[0][0] == 'l';

        ONCE(last ? 3 : 4, "last/counter");
        if (n != 2 || mk_otp_parse_u64(f[1], &v) != 0 || v > (uint64_t) INT64_MAX) {
            *why = "bad number";
            return -1;
        }
        *(last ? &r->last : &r->counter) = v;
    } else if (strcmp(f[0], "used") == 0 || strcmp(f[0], "changed") == 0) {
        bool used = f[0][0] == 'u';

        ONCE(used ? 5 : 6, "used/changed");
        if (n != 2 || mk_otp_parse_time(f[1], used ? &r->used : &r->changed) != 0) {
            *why = "bad time";
            return -1;
        }
    } else if (strcmp(f[0], "failures") == 0) {
        ONCE(7, "failures");
        if (n != 3 || mk_otp_parse_u64(f[1], &v) != 0 || v > 1000000
            || mk_otp_parse_time(f[2], &r->failed) != 0) {
            *why = "wants COUNT TIME";
            return -1;
        }
        r->failures = (unsigned) v;
    } else if (strcmp(f[0], "locked") == 0) {
        ONCE(8, "locked");
        if (n != 2 || mk_otp_parse_time(f[1], &r->locked_until) != 0) {
            *why = "bad time";
            return -1;
        }
        r->locked = true;
    } else if (strcmp(f[0], "mustchange") == 0) {
        ONCE(9, "mustchange");
        if (n != 3 || !mk_otp_is_word(f[1], "-", 32)
            || mk_otp_parse_time(f[2], &r->must_changed) != 0) {
            *why = "wants REASON TIME";
            return -1;
        }
        r->must_change = mk_xstrdup(f[1]);
    } else if (strcmp(f[0], "recovery") == 0) {
        struct mk_otp_hash h;

        if (n != 3 || mk_otp_parse_hash(f[1], f[2], &h) != 0) {
            *why = "wants SALT HASH in hex";
            return -1;
        }
        if (r->nrecovery == MK_OTP_MAX_RECOVERY) {
            *why = "too many recovery codes";
            return -1;
        }
        r->recovery = mk_xrealloc(r->recovery, (r->nrecovery + 1) * sizeof(*r->recovery));
        r->recovery[r->nrecovery++] = h;
    } else if (strcmp(f[0], "history") == 0) {
        if (n != 3 || !mk_otp_is_word(f[2], "$./=-_,", 256)) {
            *why = "wants TIME CRYPT";
            return -1;
        }
        if (r->nhistory == MK_OTP_MAX_HISTORY) {
            *why = "too long a history";
            return -1;
        }
        r->history = mk_xrealloc(r->history, (r->nhistory + 1) * sizeof(*r->history));
        if (mk_otp_parse_time(f[1], &r->history[r->nhistory].changed) != 0) {
            *why = "bad time";
            return -1;
        }
        r->history[r->nhistory++].crypt = mk_xstrdup(f[2]);
    } else if (strcmp(f[0], "apppass") == 0) {
        struct mk_otp_apppass a;

        memset(&a, 0, sizeof(a));
        if (n != 9) {
            *why = "wants ID SERVICE CREATED USED HOST SALT HASH LABEL";
            return -1;
        }
        for (size_t i = 0; i < 8; i++)
            if (strlen(f[i]) > MK_OTP_MAX_FIELD) {
                *why = "field too long";
                return -1;
            }
        if (mk_otp_parse_u64(f[1], &v) != 0 || v == 0 || v > 1000000) {
            *why = "bad id";
            return -1;
        }
        a.id = (unsigned) v;
        if (strcmp(f[2], "*") != 0 && !mk_otp_is_word(f[2], "._-", 64)) {
            *why = "bad service";
            return -1;
        }
        if (mk_otp_parse_time(f[3], &a.created) != 0 || mk_otp_parse_time(f[4], &a.used) != 0) {
            *why = "bad time";
            return -1;
        }
        if (!mk_otp_is_word(f[5], ".:-[]%", 64)) {
            *why = "bad host";
            return -1;
        }
        if (mk_otp_parse_hash(f[6], f[7], &a.hash) != 0) {
            *why = "wants SALT HASH in hex";
            return -1;
        }
        if (strlen(f[8]) > 200) {
            *why = "label too long";
            return -1;
        }
        for (size_t i = 0; i < r->napppass; i++)
            if (r->apppass[i].id == a.id) {
                *why = "application password id appears twice";
                return -1;
            }
        if (r->napppass == MK_OTP_MAX_APPPASS) {
            *why = "too many application passwords";
            return -1;
        }
        a.service = mk_xstrdup(f[2]);
        a.host = mk_xstrdup(f[5]);
        a.label = mk_xstrdup(f[8]);
        r->apppass = mk_xrealloc(r->apppass, (r->napppass + 1) * sizeof(*r->apppass));
        r->apppass[r->napppass++] = a;
    } else {
        *why = "unknown keyword";
        return -1;
    }
#undef ONCE
    return 0;
}

int mk_otp_record_parse(const char *text, size_t len, struct mk_otp_record *r, char **error)
{
    const char *p = text, *end = text + len;
    unsigned seen = 0, lineno = 0;
    char line[MK_OTP_MAX_LINE + 1];
    const char *why = NULL;

    mk_otp_record_init(r, NULL);
    if (len > MK_OTP_MAX_FILE) {
        *error = mk_xstrdup("file too large");
        return -1;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        size_t n = (size_t) ((nl != NULL ? nl : end) - p);

        lineno++;
        if (nl == NULL) {
            why = "last line has no newline";
            goto bad;
        }
        if (n > MK_OTP_MAX_LINE) {
            why = "line too long";
            goto bad;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char) line[i] < 0x20 || line[i] == 0x7f) {
                why = "control character";
                goto bad;
            }
        if (lineno == 1) {
            if (strcmp(line, MK_OTP_MAGIC) != 0) {
                why = "not a mailkeep otp file, version 1";
                goto bad;
            }
            continue;
        }
        if (mk_otp_parse_line(line, r, &seen, &why) != 0)
            goto bad;
    }
    if (lineno == 0) {
        why = "empty";
        goto bad;
    }
    if (r->user == NULL) {
        why = "no user line";
        goto bad;
    }
    return 0;
bad:
    *error = mk_xasprintf("line %u: %s", lineno, why);
    mk_otp_record_free(r);
    return -1;
}

static void mk_otp_put(char **out, size_t *len, size_t *size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void mk_otp_put(char **out, size_t *len, size_t *size, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(*out + *len, *size - *len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t) n < *size - *len)
            break;
        *size = *size * 2 + (size_t) n;
        *out = mk_xrealloc(*out, *size);
    }
    *len += (size_t) n;
}

static void mk_otp_put_sealed(char **out, size_t *len, size_t *size, const char *what,
                              const struct mk_otp_sealed *s)
{
    if (s->present)
        mk_otp_put(out, len, size, "%s %s %s %u %u %lld %s\n", what, mk_otp_kind_name(s->kind),
                   mk_otp_algo_name(s->algo), s->digits, s->period, (long long) s->created,
                   s->box);
}

static void mk_otp_hash_hex(const struct mk_otp_hash *h, char salt[33], char hash[65])
{
    mk_crypto_hex(h->salt, 16, salt);
    mk_crypto_hex(h->hash, 32, hash);
}

char *mk_otp_record_format(const struct mk_otp_record *r)
{
    size_t len = 0, size = 512;
    char *out = mk_xmalloc(size), salt[33], hash[65];

    out[0] = '\0';
    mk_otp_put(&out, &len, &size, "%s\nuser %s\n", MK_OTP_MAGIC, r->user);
    mk_otp_put_sealed(&out, &len, &size, "token", &r->token);
    mk_otp_put_sealed(&out, &len, &size, "pending", &r->pending);
    if (r->last != 0)
        mk_otp_put(&out, &len, &size, "last %" PRIu64 "\n", r->last);
    if (r->counter != 0)
        mk_otp_put(&out, &len, &size, "counter %" PRIu64 "\n", r->counter);
    if (r->used != 0)
        mk_otp_put(&out, &len, &size, "used %lld\n", (long long) r->used);
    if (r->failures != 0)
        mk_otp_put(&out, &len, &size, "failures %u %lld\n", r->failures, (long long) r->failed);
    if (r->locked)
        mk_otp_put(&out, &len, &size, "locked %lld\n", (long long) r->locked_until);
    for (size_t i = 0; i < r->nrecovery; i++) {
        mk_otp_hash_hex(&r->recovery[i], salt, hash);
        mk_otp_put(&out, &len, &size, "recovery %s %s\n", salt, hash);
    }
    for (size_t i = 0; i < r->napppass; i++) {
        const struct mk_otp_apppass *a = &r->apppass[i];

        mk_otp_hash_hex(&a->hash, salt, hash);
        mk_otp_put(&out, &len, &size, "apppass %u %s %lld %lld %s %s %s %s\n", a->id, a->service,
                   (long long) a->created, (long long) a->used, a->host, salt, hash, a->label);
    }
    if (r->changed != 0)
        mk_otp_put(&out, &len, &size, "changed %lld\n", (long long) r->changed);
    if (r->must_change != NULL)
        mk_otp_put(&out, &len, &size, "mustchange %s %lld\n", r->must_change,
                   (long long) r->must_changed);
    for (size_t i = 0; i < r->nhistory; i++)
        mk_otp_put(&out, &len, &size, "history %lld %s\n", (long long) r->history[i].changed,
                   r->history[i].crypt);
    return out;
}

/* --------------------------------------------------------------- crypto */

static void mk_otp_normalize(const char *secret, char *out, size_t size)
{
    size_t n = 0;

    for (; *secret != '\0' && n + 1 < size; secret++) {
        char c = *secret;

        if (c == '-' || c == ' ' || c == '\t')
            continue;
        out[n++] = (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
    }
    out[n] = '\0';
}

static void mk_otp_hash_with(const char *secret, const unsigned char salt[16],
                             unsigned char out[32])
{
    char norm[512];
    unsigned char buf[16 + sizeof(norm)];
    size_t n;

    mk_otp_normalize(secret, norm, sizeof(norm));
    n = strlen(norm);
    memcpy(buf, salt, 16);
    memcpy(buf + 16, norm, n);
    mk_crypto_sha256(buf, 16 + n, out);
    OPENSSL_cleanse(norm, sizeof(norm));
    OPENSSL_cleanse(buf, sizeof(buf));
}

void mk_otp_hash_make(const char *secret, struct mk_otp_hash *h)
{
    if (RAND_bytes(h->salt, sizeof(h->salt)) != 1)
        abort();                        /* no randomness: nothing safe to do */
    mk_otp_hash_with(secret, h->salt, h->hash);
}

bool mk_otp_hash_check(const char *secret, const struct mk_otp_hash *h)
{
    unsigned char got[32];

    mk_otp_hash_with(secret, h->salt, got);
    return CRYPTO_memcmp(got, h->hash, 32) == 0;
}

char *mk_otp_random_code(unsigned groups)
{
    static const char alphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";
    unsigned char rnd[64];
    char *out = mk_xmalloc(groups * 5 + 1), *p = out;

    if (groups == 0 || groups > 12 || RAND_bytes(rnd, (int) (groups * 4)) != 1)
        abort();                        /* a caller's bug, or no randomness */
    for (unsigned i = 0; i < groups * 4; i++) {
        if (i > 0 && i % 4 == 0)
            *p++ = '-';
        *p++ = alphabet[rnd[i] & 31];
    }
    *p = '\0';
    OPENSSL_cleanse(rnd, sizeof(rnd));
    return out;
}

/* Associated data: format, user, line keyword and the token's parameters. */
static char *mk_otp_aad(const char *user, const char *what, const struct mk_otp_sealed *s,
                        size_t *len)
{
    char *aad = mk_xasprintf("%s|%s|%s|%s|%s|%u|%u", MK_OTP_MAGIC, user, what,
                             mk_otp_kind_name(s->kind), mk_otp_algo_name(s->algo), s->digits,
                             s->period);

    *len = strlen(aad);
    return aad;
}

int mk_otp_seal(struct mk_otp_store *store, const char *user, const char *what,
                const struct mk_otp_token *t, struct mk_otp_sealed *s)
{
    unsigned char box[MK_OTP_NONCE + MK_OTP_SECRET_MAX + MK_OTP_TAG];
    size_t aad_len, n = MK_OTP_NONCE + t->secret_len + MK_OTP_TAG;
    EVP_CIPHER_CTX *ctx;
    char *aad;
    int out_len, ok = 0;

    if (!store->have_key || t->secret_len == 0 || t->secret_len > MK_OTP_SECRET_MAX)
        return -1;
    memset(s, 0, sizeof(*s));
    s->kind = t->kind;
    s->algo = t->algo;
    s->digits = t->digits;
    s->period = t->kind == MK_OTP_TOTP ? t->period : 0;
    s->created = time(NULL);
    aad = mk_otp_aad(user, what, s, &aad_len);
    if (RAND_bytes(box, MK_OTP_NONCE) == 1 && (ctx = EVP_CIPHER_CTX_new()) != NULL) {
        ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, store->key, box) == 1
             && EVP_EncryptUpdate(ctx, NULL, &out_len, (const unsigned char *) aad,
                                  (int) aad_len) == 1
             && EVP_EncryptUpdate(ctx, box + MK_OTP_NONCE, &out_len, t->secret,
                                  (int) t->secret_len) == 1
             && EVP_EncryptFinal_ex(ctx, box + MK_OTP_NONCE + out_len, &out_len) == 1
             && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, MK_OTP_TAG,
                                    box + MK_OTP_NONCE + t->secret_len) == 1;
        EVP_CIPHER_CTX_free(ctx);
    }
    free(aad);
    if (!ok)
        return -1;
    s->box = mk_xmalloc(2 * n + 1);
    mk_crypto_hex(box, n, s->box);
    s->present = true;
    return 0;
}

int mk_otp_unseal(struct mk_otp_store *store, const char *user, const char *what,
                  const struct mk_otp_sealed *s, struct mk_otp_token *t)
{
    unsigned char box[MK_OTP_NONCE + MK_OTP_SECRET_MAX + MK_OTP_TAG];
    size_t n, aad_len, secret_len;
    EVP_CIPHER_CTX *ctx;
    char *aad;
    int out_len, ok = 0;

    if (!store->have_key || !s->present)
        return -1;
    n = strlen(s->box) / 2;
    if (n < MK_OTP_NONCE + 1 + MK_OTP_TAG || n > sizeof(box)
        || mk_crypto_unhex(s->box, n, box) != 0)
        return -1;
    secret_len = n - MK_OTP_NONCE - MK_OTP_TAG;
    memset(t, 0, sizeof(*t));
    aad = mk_otp_aad(user, what, s, &aad_len);
    if ((ctx = EVP_CIPHER_CTX_new()) != NULL) {
        ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, store->key, box) == 1
             && EVP_DecryptUpdate(ctx, NULL, &out_len, (const unsigned char *) aad,
                                  (int) aad_len) == 1
             && EVP_DecryptUpdate(ctx, t->secret, &out_len, box + MK_OTP_NONCE,
                                  (int) secret_len) == 1
             && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, MK_OTP_TAG,
                                    box + MK_OTP_NONCE + secret_len) == 1
             && EVP_DecryptFinal_ex(ctx, t->secret + out_len, &out_len) == 1;
        EVP_CIPHER_CTX_free(ctx);
    }
    free(aad);
    OPENSSL_cleanse(box, sizeof(box));
    if (!ok) {
        OPENSSL_cleanse(t, sizeof(*t));
        return -1;
    }
    t->kind = s->kind;
    t->algo = s->algo;
    t->digits = s->digits;
    t->period = s->period;
    t->secret_len = secret_len;
    return 0;
}

/* ---------------------------------------------------------------- store */

struct mk_otp_store *mk_otp_store_open(const char *dir, const char *key_file, bool create,
                                       char **error)
{
    struct mk_otp_store *store;
    struct stat st;

    if (create && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        *error = mk_xasprintf("%s: %s", dir, strerror(errno));
        return NULL;
    }
    if (lstat(dir, &st) != 0) {
        *error = mk_xasprintf("%s: %s", dir, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        *error = mk_xasprintf("%s: not a directory", dir);
        return NULL;
    }
    if ((st.st_mode & 077) != 0 || st.st_uid != geteuid()) {
        *error = mk_xasprintf("%s: must belong to uid %u and be closed to others "
                              "(chown %u %s; chmod 700 %s)",
                              dir, (unsigned) geteuid(), (unsigned) geteuid(), dir, dir);
        return NULL;
    }
    store = mk_xcalloc(1, sizeof(*store));
    store->dir = mk_xstrdup(dir);
    store->key_file = mk_xstrdup(key_file);
    return store;
}

void mk_otp_store_close(struct mk_otp_store *store)
{
    if (store == NULL)
        return;
    OPENSSL_cleanse(store->key, sizeof(store->key));
    free(store->dir);
    free(store->key_file);
    free(store);
}

int mk_otp_store_key(struct mk_otp_store *store, bool create, char **error)
{
    unsigned char key[32];
    char hex[66];
    size_t len;
    char *text;

    if (store->have_key)
        return 0;
    if (create && access(store->key_file, F_OK) != 0 && errno == ENOENT) {
        if (RAND_bytes(key, sizeof(key)) != 1) {
            *error = mk_xstrdup("RAND_bytes failed");
            return -1;
        }
        mk_crypto_hex(key, sizeof(key), hex);
        hex[64] = '\n';
        hex[65] = '\0';
        OPENSSL_cleanse(key, sizeof(key));
        if (mk_crypto_file_create(store->key_file, hex, 65, 0600, error) != 0) {
            OPENSSL_cleanse(hex, sizeof(hex));
            return -1;
        }
        OPENSSL_cleanse(hex, sizeof(hex));
    }
    if ((text = mk_crypto_file_read(store->key_file, true, &len, error)) == NULL)
        return -1;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    if (len != 64 || mk_crypto_unhex(text, 32, store->key) != 0) {
        *error = mk_xasprintf("%s: not a key (64 lower-case hex digits)", store->key_file);
        OPENSSL_cleanse(text, len);
        free(text);
        return -1;
    }
    OPENSSL_cleanse(text, len);
    free(text);
    store->have_key = true;
    return 0;
}

static char *mk_otp_store_path(struct mk_otp_store *store, const char *user)
{
    size_t n = strlen(store->dir), i = 0;
    char *path = mk_xmalloc(n + 2 + strlen(user) * 3 + 1);

    memcpy(path, store->dir, n);
    path[n++] = '/';
    for (const char *p = user; *p != '\0'; p++, i++) {
        unsigned char c = (unsigned char) *p;

        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '@' || c == '_'
            || c == '+' || c == '-' || (c == '.' && i > 0))
            path[n++] = (char) c;
        else
            n += (size_t) sprintf(path + n, "%%%02X", c);
    }
    path[n] = '\0';
    return path;
}

static bool mk_otp_user_ok(const char *user, char **error)
{
    if (*user == '\0' || strlen(user) > MK_OTP_MAX_FIELD || strchr(user, ' ') != NULL
        || strchr(user, '/') != NULL) {
        *error = mk_xstrdup("bad user name");
        return false;
    }
    for (const char *p = user; *p != '\0'; p++)
        if ((unsigned char) *p < 0x21 || *p == 0x7f || (*p >= 'A' && *p <= 'Z')) {
            *error = mk_xstrdup("bad user name (lower case, no control characters)");
            return false;
        }
    return true;
}

static int mk_otp_load(const char *path, const char *user, const char *text, size_t len,
                       struct mk_otp_record *r, char **error)
{
    char *why = NULL;

    if (len == 0) {
        mk_otp_record_init(r, user);
        return 0;
    }
    if (mk_otp_record_parse(text, len, r, &why) != 0) {
        *error = mk_xasprintf("%s: %s", path, why);
        free(why);
        return -1;
    }
    if (strcmp(r->user, user) != 0) {
        *error = mk_xasprintf("%s: holds the record of %s, not %s", path, r->user, user);
        mk_otp_record_free(r);
        return -1;
    }
    return 0;
}

/* Read and parse the record in an open file. */
static int mk_otp_read_fd(int fd, const char *path, const char *user, struct mk_otp_record *r,
                          char **error)
{
    struct stat st;
    ssize_t got;
    char *text;
    int status;

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MK_OTP_MAX_FILE) {
        *error = mk_xasprintf("%s: not a regular file of at most %d bytes", path,
                              MK_OTP_MAX_FILE);
        return -1;
    }
    text = mk_xmalloc((size_t) st.st_size + 1);
    if ((got = pread(fd, text, (size_t) st.st_size, 0)) != (ssize_t) st.st_size) {
        *error = mk_xasprintf("%s: short read", path);
        free(text);
        return -1;
    }
    status = mk_otp_load(path, user, text, (size_t) got, r, error);
    OPENSSL_cleanse(text, (size_t) got);
    free(text);
    return status;
}

int mk_otp_store_read(struct mk_otp_store *store, const char *user, struct mk_otp_record *r,
                      char **error)
{
    char *path;
    int fd, status;

    if (!mk_otp_user_ok(user, error))
        return -1;
    path = mk_otp_store_path(store, user);
    if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        if (errno == ENOENT) {
            free(path);
            mk_otp_record_init(r, user);
            return 0;
        }
        *error = mk_xasprintf("%s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    status = mk_otp_read_fd(fd, path, user, r, error);
    close(fd);
    free(path);
    return status;
}

static int mk_otp_flock(int fd)
{
    for (int waited = 0; waited < MK_OTP_LOCK_WAIT_MS; waited += 5) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        usleep(5000);
    }
    errno = ETIMEDOUT;
    return -1;
}

struct mk_otp_lock *mk_otp_store_lock(struct mk_otp_store *store, const char *user,
                                      struct mk_otp_record *r, char **error)
{
    struct mk_otp_lock *lock;
    struct stat fst, pst;
    char *path;
    int fd = -1;

    if (!mk_otp_user_ok(user, error))
        return NULL;
    path = mk_otp_store_path(store, user);
    for (int attempt = 0;; attempt++) {
        if ((fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0
            || mk_otp_flock(fd) != 0 || fstat(fd, &fst) != 0) {
            *error = mk_xasprintf("%s: %s", path, strerror(errno));
            goto fail;
        }
        /* Replaced or removed while we waited: lock the file that is there now. */
        if (stat(path, &pst) == 0 && pst.st_ino == fst.st_ino && pst.st_dev == fst.st_dev)
            break;
        close(fd);
        fd = -1;
        if (attempt == 100) {
            *error = mk_xasprintf("%s: keeps changing under the lock", path);
            goto fail;
        }
    }
    if (mk_otp_read_fd(fd, path, user, r, error) != 0)
        goto fail;
    lock = mk_xcalloc(1, sizeof(*lock));
    lock->store = store;
    lock->path = path;
    lock->fd = fd;
    return lock;
fail:
    if (fd >= 0)
        close(fd);
    free(path);
    return NULL;
}

int mk_otp_store_write(struct mk_otp_lock *lock, const struct mk_otp_record *r, char **error)
{
    char *tmp, *text;
    int fd;

    if (mk_otp_record_empty(r)) {
        if (unlink(lock->path) != 0 && errno != ENOENT) {
            *error = mk_xasprintf("%s: %s", lock->path, strerror(errno));
            return -1;
        }
        mk_fsync_dir(lock->store->dir);
        return 0;
    }
    tmp = mk_xasprintf("%s/.tmp.%ld.%p", lock->store->dir, (long) getpid(), (void *) lock);
    text = mk_otp_record_format(r);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
        *error = mk_xasprintf("%s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (flock(fd, LOCK_EX) != 0 || mk_write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0
        || rename(tmp, lock->path) != 0) {
        *error = mk_xasprintf("%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto fail;
    }
    if (mk_fsync_dir(lock->store->dir) != 0) {
        *error = mk_xasprintf("%s: %s", lock->store->dir, strerror(errno));
        close(lock->fd);
        lock->fd = fd;
        goto fail;
    }
    close(lock->fd);
    lock->fd = fd;
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    free(tmp);
    return 0;
fail:
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    free(tmp);
    return -1;
}

void mk_otp_store_unlock(struct mk_otp_lock *lock)
{
    struct stat fst, pst;

    if (lock == NULL)
        return;
    /* Created for a login that had nothing to record: leave no empty file. */
    if (fstat(lock->fd, &fst) == 0 && fst.st_size == 0 && stat(lock->path, &pst) == 0
        && pst.st_ino == fst.st_ino && pst.st_dev == fst.st_dev)
        unlink(lock->path);
    close(lock->fd);
    free(lock->path);
    free(lock);
}

static int mk_otp_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

char **mk_otp_store_users(struct mk_otp_store *store, char **error)
{
    size_t n = 0, size = 16;
    char **users = mk_xmalloc(size * sizeof(*users));
    struct dirent *de;
    DIR *dir;

    if ((dir = opendir(store->dir)) == NULL) {
        *error = mk_xasprintf("%s: %s", store->dir, strerror(errno));
        free(users);
        return NULL;
    }
    while ((de = readdir(dir)) != NULL) {
        char *name, *q;

        if (de->d_name[0] == '.')
            continue;
        name = mk_xmalloc(strlen(de->d_name) + 1);
        q = name;
        for (const char *p = de->d_name; *p != '\0'; p++) {
            unsigned hi, lo;

            if (*p == '%' && sscanf(p + 1, "%1x%1x", &hi, &lo) == 2) {
                *q++ = (char) (hi * 16 + lo);
                p += 2;
            } else {
                *q++ = *p;
            }
        }
        *q = '\0';
        if (n + 2 > size) {
            size *= 2;
            users = mk_xrealloc(users, size * sizeof(*users));
        }
        users[n++] = name;
    }
    closedir(dir);
    qsort(users, n, sizeof(*users), mk_otp_cmp);
    users[n] = NULL;
    return users;
}
