/*
 * Unit tests for mk_otp: the RFC 4226 and RFC 6238 test vectors, the
 * verification window, replay protection, base32 and the otpauth URI.
 */
#include "config.h"

#include <string.h>

#include "mk_otp.h"
#include "mk_test.h"

static void token(struct mk_otp_token *t, enum mk_otp_kind kind, enum mk_otp_algo algo,
                  unsigned digits)
{
    static const char seed[] = "1234567890123456789012345678901234567890"
                               "123456789012345678901234";

    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->algo = algo;
    t->digits = digits;
    t->period = 30;
    t->secret_len = algo == MK_OTP_SHA1 ? 20 : algo == MK_OTP_SHA256 ? 32 : 64;
    memcpy(t->secret, seed, t->secret_len);
}

int main(void)
{
    struct mk_otp_token t;
    char code[16];
    uint64_t matched;

    test_begin("RFC 4226 appendix D: HOTP, counters 0 to 9");
    {
        static const char *const want[] = {"755224", "287082", "359152", "969429", "338314",
                                           "254676", "287922", "162583", "399871", "520489"};

        token(&t, MK_OTP_HOTP, MK_OTP_SHA1, 6);
        for (unsigned i = 0; i < 10; i++) {
            test_assert_int(mk_otp_code(&t, i, code), 0);
            test_assert_str(code, want[i]);
        }
    }
    test_end();

    test_begin("RFC 6238 appendix B: TOTP, SHA-1, -256, -512, 8 digits");
    {
        static const struct {
            long long time;
            const char *code[3];
        } v[] = {
            {59, {"94287082", "46119246", "90693936"}},
            {1111111109, {"07081804", "68084774", "25091201"}},
            {1111111111, {"14050471", "67062674", "99943326"}},
            {1234567890, {"89005924", "91819424", "93441116"}},
            {2000000000, {"69279037", "90698825", "38618901"}},
            {20000000000LL, {"65353130", "77737706", "47863826"}},
        };

        for (unsigned a = 0; a < 3; a++) {
            token(&t, MK_OTP_TOTP, (enum mk_otp_algo) a, 8);
            for (unsigned i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                test_assert_int(mk_otp_code(&t, mk_otp_step(&t, (time_t) v[i].time), code), 0);
                test_assert_str(code, v[i].code[a]);
                test_assert_int(mk_otp_verify(&t, v[i].code[a], (time_t) v[i].time, 0, 0,
                                              &matched), 0);
                test_assert_int(matched, v[i].time / 30);
            }
        }
    }
    test_end();

    test_begin("TOTP: the window, and a code never good twice");
    token(&t, MK_OTP_TOTP, MK_OTP_SHA1, 8);
    /* 1111111109 is step 37037036; its code is good one step late with window 1 */
    test_assert_int(mk_otp_verify(&t, "07081804", 1111111109 + 30, 1, 0, &matched), 0);
    test_assert_int(matched, 37037036);
    test_assert_int(mk_otp_verify(&t, "07081804", 1111111109 + 60, 1, 0, &matched), -1);
    test_assert_int(mk_otp_verify(&t, "07081804", 1111111109 + 30, 0, 0, &matched), -1);
    /* used once: that step and the ones before it are spent */
    test_assert_int(mk_otp_verify(&t, "07081804", 1111111109, 1, 37037036, &matched), -1);
    test_assert_int(mk_otp_verify(&t, "07081804", 1111111109, 1, 37037035, &matched), 0);
    /* wrong length, not digits */
    test_assert_int(mk_otp_verify(&t, "0708180", 1111111109, 1, 0, &matched), -1);
    test_assert_int(mk_otp_verify(&t, "0708180x", 1111111109, 1, 0, &matched), -1);
    test_assert_int(mk_otp_verify(&t, "", 1111111109, 1, 0, &matched), -1);
    test_end();

    test_begin("HOTP: look-ahead from the expected counter");
    token(&t, MK_OTP_HOTP, MK_OTP_SHA1, 6);
    t.counter = 3;
    test_assert_int(mk_otp_verify(&t, "254676", 0, 10, 0, &matched), 0);    /* counter 5 */
    test_assert_int(matched, 5);
    test_assert_int(mk_otp_verify(&t, "359152", 0, 10, 0, &matched), -1);   /* counter 2: used */
    test_assert_int(mk_otp_verify(&t, "520489", 0, 5, 0, &matched), -1);    /* 9 > 3 + 5 */
    t.algo = MK_OTP_SHA256;                                                 /* no such HOTP */
    test_assert_int(mk_otp_code(&t, 0, code), -1);
    test_end();

    test_begin("base32 (RFC 4648 vectors, unpadded)");
    {
        char *s;

        s = mk_otp_base32((const unsigned char *) "foobar", 6);
        test_assert_str(s, "MZXW6YTBOI");
        free(s);
        s = mk_otp_base32((const unsigned char *) "f", 1);
        test_assert_str(s, "MY");
        free(s);
        s = mk_otp_base32((const unsigned char *) "", 0);
        test_assert_str(s, "");
        free(s);
    }
    test_end();

    test_begin("otpauth URI: label, secret and parameters");
    {
        char *uri;

        token(&t, MK_OTP_TOTP, MK_OTP_SHA256, 6);
        t.secret_len = 5;
        memcpy(t.secret, "hello", 5);
        uri = mk_otp_uri(&t, "Example Co", "alice@example.com");
        test_assert_str(uri, "otpauth://totp/Example%20Co%3Aalice@example.com?secret=NBSWY3DP"
                             "&algorithm=SHA256&digits=6&period=30&issuer=Example%20Co");
        free(uri);
        t.kind = MK_OTP_HOTP;
        t.algo = MK_OTP_SHA1;
        t.counter = 7;
        uri = mk_otp_uri(&t, "M", "\xe9\x99\xb3@example.tw");
        test_assert_str(uri, "otpauth://hotp/M%3A%E9%99%B3@example.tw?secret=NBSWY3DP"
                             "&algorithm=SHA1&digits=6&counter=7&issuer=M");
        free(uri);
    }
    test_end();

    test_begin("names of kinds and algorithms");
    {
        enum mk_otp_kind k;
        enum mk_otp_algo a;

        test_assert_int(mk_otp_parse_kind("TOTP", &k), 0);
        test_assert_int(k, MK_OTP_TOTP);
        test_assert_int(mk_otp_parse_kind("motp", &k), -1);
        test_assert_int(mk_otp_parse_algo("sha512", &a), 0);
        test_assert_str(mk_otp_algo_name(a), "SHA512");
        test_assert_int(mk_otp_parse_algo("md5", &a), -1);
    }
    test_end();

    return test_done();
}
