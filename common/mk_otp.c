/*
 * mk_otp - TOTP and HOTP codes through liboath. See mk_otp.h.
 */
#include "config.h"

#include <liboath/oath.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_crypto.h"
#include "mk_otp.h"
#include "mk_util.h"

static pthread_once_t mk_otp_once = PTHREAD_ONCE_INIT;
static int mk_otp_init_status;

static void mk_otp_init(void)
{
    mk_otp_init_status = oath_init();
}

uint64_t mk_otp_step(const struct mk_otp_token *t, time_t now)
{
    if (now < 0 || t->period == 0)
        return 0;
    return (uint64_t) now / t->period;
}

int mk_otp_code(const struct mk_otp_token *t, uint64_t counter, char out[16])
{
    int flags = 0;

    pthread_once(&mk_otp_once, mk_otp_init);
    if (mk_otp_init_status != OATH_OK || t->digits < 6 || t->digits > 8
        || t->secret_len == 0 || t->secret_len > MK_OTP_SECRET_MAX)
        return -1;
    memset(out, 0, 16);
    if (t->kind == MK_OTP_HOTP) {
        if (t->algo != MK_OTP_SHA1)
            return -1;
        return oath_hotp_generate((const char *) t->secret, t->secret_len, counter,
                                  t->digits, false, SIZE_MAX, out) == OATH_OK ? 0 : -1;
    }
    if (t->period == 0 || counter > (uint64_t) INT64_MAX / t->period)
        return -1;
    if (t->algo == MK_OTP_SHA256)
        flags = OATH_TOTP_HMAC_SHA256;
    else if (t->algo == MK_OTP_SHA512)
        flags = OATH_TOTP_HMAC_SHA512;
    return oath_totp_generate2((const char *) t->secret, t->secret_len,
                               (time_t) (counter * t->period), t->period, 0, t->digits,
                               flags, out) == OATH_OK ? 0 : -1;
}

bool mk_otp_code_syntax(const char *code, size_t len, unsigned digits)
{
    if (len != digits)
        return false;
    for (size_t i = 0; i < len; i++)
        if (code[i] < '0' || code[i] > '9')
            return false;
    return true;
}

/* Compare two codes of the same length without an early exit. */
static bool mk_otp_equal(const char *a, const char *b, size_t len)
{
    unsigned char diff = 0;

    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char) (a[i] ^ b[i]);
    return diff == 0;
}

int mk_otp_verify(const struct mk_otp_token *t, const char *code, time_t now, unsigned window,
                  uint64_t last, uint64_t *matched)
{
    uint64_t first, end, found = 0;
    char want[16];
    bool hit = false;

    if (!mk_otp_code_syntax(code, strlen(code), t->digits))
        return -1;
    if (t->kind == MK_OTP_TOTP) {
        uint64_t step = mk_otp_step(t, now);

        first = step > window ? step - window : 0;
        end = step + window;
    } else {
        first = t->counter;
        end = t->counter + window;
    }
    for (uint64_t c = first; c <= end; c++) {
        if (mk_otp_code(t, c, want) != 0)
            return -1;
        if (mk_otp_equal(want, code, t->digits) && !hit && (last == 0 || c > last)) {
            hit = true;
            found = c;
        }
    }
    memset(want, 0, sizeof(want));
    if (!hit)
        return -1;
    if (matched != NULL)
        *matched = found;
    return 0;
}

char *mk_otp_base32(const unsigned char *key, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    char *out = mk_xmalloc(len * 8 / 5 + 2), *p = out;
    unsigned buffer = 0, bits = 0;

    for (size_t i = 0; i < len; i++) {
        buffer = (buffer << 8) | key[i];
        bits += 8;
        while (bits >= 5) {
            *p++ = alphabet[(buffer >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        *p++ = alphabet[(buffer << (5 - bits)) & 31];
    *p = '\0';
    return out;
}

/* Percent-encode everything but RFC 3986 unreserved characters and '@'. */
static void mk_otp_uri_escape(char **out, size_t *len, size_t *size, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char) *s;

        if (*len + 4 >= *size) {
            *size = *size * 2 + 16;
            *out = mk_xrealloc(*out, *size);
        }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
            || c == '-' || c == '.' || c == '_' || c == '~' || c == '@')
            (*out)[(*len)++] = (char) c;
        else
            *len += (size_t) snprintf(*out + *len, 4, "%%%02X", c);
    }
    (*out)[*len] = '\0';
}

char *mk_otp_uri(const struct mk_otp_token *t, const char *issuer, const char *account)
{
    size_t len = 0, size = 128;
    char *out = mk_xmalloc(size), *secret, *tail;

    len = (size_t) snprintf(out, size, "otpauth://%s/", t->kind == MK_OTP_TOTP ? "totp" : "hotp");
    mk_otp_uri_escape(&out, &len, &size, issuer);
    mk_otp_uri_escape(&out, &len, &size, ":");
    mk_otp_uri_escape(&out, &len, &size, account);
    secret = mk_otp_base32(t->secret, t->secret_len);
    if (t->kind == MK_OTP_TOTP)
        tail = mk_xasprintf("?secret=%s&algorithm=%s&digits=%u&period=%u&issuer=", secret,
                            mk_otp_algo_name(t->algo), t->digits, t->period);
    else
        tail = mk_xasprintf("?secret=%s&algorithm=%s&digits=%u&counter=%llu&issuer=", secret,
                            mk_otp_algo_name(t->algo), t->digits,
                            (unsigned long long) t->counter);
    memset(secret, 0, strlen(secret));
    free(secret);
    out = mk_xrealloc(out, len + strlen(tail) + 1);
    size = len + strlen(tail) + 1;
    memcpy(out + len, tail, size - len);
    len = size - 1;
    memset(tail, 0, strlen(tail));
    free(tail);
    mk_otp_uri_escape(&out, &len, &size, issuer);
    return out;
}

int mk_otp_secret_parse(const char *text, unsigned char *out, size_t *len)
{
    char clean[2 * MK_OTP_SECRET_MAX + 8];
    size_t n = 0;
    bool hex = strncmp(text, "hex:", 4) == 0;
    char *decoded = NULL;
    size_t dlen = 0;

    for (const char *p = hex ? text + 4 : text; *p != '\0'; p++) {
        if (*p == ' ' || *p == '\t' || *p == '-' || *p == '\n' || *p == '\r')
            continue;
        if (n + 1 >= sizeof(clean))
            return -1;
        clean[n++] = hex ? (char) (*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p)
                         : (char) (*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    }
    clean[n] = '\0';
    if (hex) {
        /* lower-cased above, as mk_crypto_unhex() reads it */
        if (n % 2 != 0 || n / 2 < 16 || n / 2 > MK_OTP_SECRET_MAX
            || mk_crypto_unhex(clean, n / 2, out) != 0)
            return -1;
        *len = n / 2;
        return 0;
    }
    pthread_once(&mk_otp_once, mk_otp_init);
    if (mk_otp_init_status != OATH_OK || oath_base32_decode(clean, n, &decoded, &dlen) != OATH_OK)
        return -1;
    if (dlen < 16 || dlen > MK_OTP_SECRET_MAX) {
        memset(decoded, 0, dlen);
        free(decoded);
        return -1;
    }
    memcpy(out, decoded, dlen);
    memset(decoded, 0, dlen);
    free(decoded);
    *len = dlen;
    return 0;
}

static const char *const mk_otp_algo_names[] = {"SHA1", "SHA256", "SHA512"};

int mk_otp_parse_kind(const char *s, enum mk_otp_kind *kind)
{
    if (mk_str_iequal(s, "totp"))
        *kind = MK_OTP_TOTP;
    else if (mk_str_iequal(s, "hotp"))
        *kind = MK_OTP_HOTP;
    else
        return -1;
    return 0;
}

int mk_otp_parse_algo(const char *s, enum mk_otp_algo *algo)
{
    for (unsigned i = 0; i < 3; i++)
        if (mk_str_iequal(s, mk_otp_algo_names[i])) {
            *algo = (enum mk_otp_algo) i;
            return 0;
        }
    return -1;
}

const char *mk_otp_kind_name(enum mk_otp_kind kind)
{
    return kind == MK_OTP_HOTP ? "hotp" : "totp";
}

const char *mk_otp_algo_name(enum mk_otp_algo algo)
{
    return mk_otp_algo_names[algo <= MK_OTP_SHA512 ? algo : 0];
}
