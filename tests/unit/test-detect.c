/*
 * Unit tests for mk_detect. Every scan runs on every engine built in
 * (Hyperscan, when there is one, and PCRE2 forced with
 * MK_DETECT_ENGINE=pcre2) and both must give exactly the expected
 * matches. The valid numbers here are computed from the published
 * checksum rules; none belongs to anyone.
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>

#include "mk_detect.h"
#include "mk_log.h"
#include "mk_test.h"
#include "mk_text.h"
#include "mk_util.h"

#define NENGINES 2

struct engines {
    struct mk_detect *d[NENGINES];      /* [1] is NULL when only PCRE2 is built */
    struct mk_detect_scratch *s[NENGINES];
};

/* Matches of one scan as "name:confidence:text, ...". */
struct collect {
    const struct mk_detect *d;
    char *buf;
    size_t len, size;
    int count, stop_after;
};

static void collect_add(struct collect *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void collect_add(struct collect *c, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(c->buf + c->len, c->size - c->len, fmt, ap);
        va_end(ap);
        if ((size_t) n < c->size - c->len)
            break;
        c->size = c->size * 2 + (size_t) n;
        c->buf = realloc(c->buf, c->size);
    }
    c->len += (size_t) n;
}

static int collect_cb(void *arg, const struct mk_detect_match *m)
{
    struct collect *c = arg;

    collect_add(c, "%s%s:%s:%.*s", c->count ? ", " : "", mk_detect_name(c->d, m->detector),
                mk_confidence_name(m->confidence), (int) m->len, m->text);
    c->count++;
    return c->stop_after && c->count >= c->stop_after;
}

/* Scan and return the matches as a string (allocated); "ERROR" when the scan failed. */
static char *scan_one(struct mk_detect *d, struct mk_detect_scratch *s, const char *text,
                      size_t len, int stop_after)
{
    struct collect c = {d, malloc(64), 0, 64, 0, stop_after};

    c.buf[0] = '\0';
    if (mk_detect_scan(d, s, text, len, collect_cb, &c) < 0) {
        free(c.buf);
        return strdup("ERROR");
    }
    return c.buf;
}

static struct engines engines_create(const struct mk_detector_spec *custom, size_t n,
                                     const char *const *only)
{
    struct engines e = {{NULL, NULL}, {NULL, NULL}};
    char *error = NULL;

    unsetenv("MK_DETECT_ENGINE");
    e.d[0] = mk_detect_create(custom, n, only, &error);
    if (e.d[0] == NULL) {
        printf("  mk_detect_create: %s\n", error);
        exit(2);
    }
    e.s[0] = mk_detect_scratch_new(e.d[0]);
    if (strcmp(mk_detect_engine(e.d[0]), "hyperscan") == 0) {
        setenv("MK_DETECT_ENGINE", "pcre2", 1);
        e.d[1] = mk_detect_create(custom, n, only, &error);
        unsetenv("MK_DETECT_ENGINE");
        e.s[1] = mk_detect_scratch_new(e.d[1]);
    }
    return e;
}

static void engines_free(struct engines *e)
{
    for (int i = 0; i < NENGINES; i++) {
        mk_detect_scratch_free(e->s[i]);
        mk_detect_free(e->d[i]);
    }
}

static void check_at(int line, struct engines *e, const char *text, size_t len,
                     const char *expected)
{
    for (int i = 0; i < NENGINES && e->d[i]; i++) {
        char *got = scan_one(e->d[i], e->s[i], text, len, 0);

        if (strcmp(got, expected) != 0) {
            printf("  %s:%d: [%s] got \"%s\", expected \"%s\"\n", __FILE__, line,
                   mk_detect_engine(e->d[i]), got, expected);
            test_case_failed = 1;
        }
        free(got);
    }
}

/* Expect the matches of scanning a C string, on every engine. */
#define check(e, text, expected) check_at(__LINE__, (e), (text), strlen(text), (expected))

static struct engines all;              /* every built-in detector */

/* ------------------------------------------------------------ tw_national_id */

static void test_national_id(void)
{
    test_begin("tw_national_id: valid IDs are found, validated: medium");
    check(&all, "A123456789", "tw_national_id:medium:A123456789");
    check(&all, "他的是F131104093與B200001234。",
          "tw_national_id:medium:F131104093, tw_national_id:medium:B200001234");
    check(&all, "(Z198765436) K224680137; O111111116.",
          "tw_national_id:medium:Z198765436, tw_national_id:medium:K224680137, "
          "tw_national_id:medium:O111111116");
    check(&all, "lower case a123456789 too", "tw_national_id:medium:a123456789");
    test_end();

    test_begin("tw_national_id: a keyword in the window makes it high");
    check(&all, "身分證字號：A123456789", "tw_national_id:high:A123456789");
    check(&all, "身份證 F131104093", "tw_national_id:high:F131104093");
    check(&all, "統一編號B200001234", "tw_national_id:high:B200001234");
    check(&all, "National ID: A123456789", "tw_national_id:high:A123456789");
    check(&all, "ID No. A123456789", "tw_national_id:high:A123456789");
    check(&all, "A123456789 是他的身分證號", "tw_national_id:high:A123456789");
    test_end();

    test_begin("tw_national_id: near misses are not reported");
    check(&all, "A123456788", "");                  /* checksum */
    check(&all, "A323456789", "");                  /* gender digit */
    check(&all, "XA123456789", "");                 /* letter before */
    check(&all, "A1234567890", "");                 /* digit after */
    check(&all, "9A123456789", "");
    check(&all, "A123456789B", "");
    check(&all, "ref:ZZA123456789XX", "");
    check(&all, "A12345678", "");                   /* too short */
    test_end();

    test_begin("tw_national_id: full-width forms match after folding");
    check(&all, "Ａ１２３４５６７８９", "tw_national_id:medium:A123456789");
    check(&all, "身分證：Ｆ１３１１０４０９３。", "tw_national_id:high:F131104093");
    check(&all, "ＸＡ１２３４５６７８９", "");
    test_end();
}

/* ---------------------------------------------------------- tw_resident_cert */

static void test_resident(void)
{
    test_begin("tw_resident_cert: both formats, validated");
    check(&all, "AA12345675", "tw_resident_cert:medium:AA12345675");
    check(&all, "FC00000124 YD98765438 HB24680133",
          "tw_resident_cert:medium:FC00000124, tw_resident_cert:medium:YD98765438, "
          "tw_resident_cert:medium:HB24680133");
    check(&all, "A800000014 / F912345678 / Z855555556",
          "tw_resident_cert:medium:A800000014, tw_resident_cert:medium:F912345678, "
          "tw_resident_cert:medium:Z855555556");
    test_end();

    test_begin("tw_resident_cert: keywords");
    check(&all, "居留證號：AA12345675", "tw_resident_cert:high:AA12345675");
    check(&all, "統一證號 A800000014", "tw_resident_cert:high:A800000014");
    check(&all, "ARC: FC00000124", "tw_resident_cert:high:FC00000124");
    check(&all, "Resident certificate F912345678", "tw_resident_cert:high:F912345678");
    /* "arc" inside a word is not the keyword */
    check(&all, "search FC00000124", "tw_resident_cert:medium:FC00000124");
    test_end();

    test_begin("tw_resident_cert: near misses");
    check(&all, "AA12345674", "");                  /* checksum */
    check(&all, "AE12345675", "");                  /* E is not a category */
    check(&all, "A700000014", "");
    check(&all, "AA123456750", "");
    check(&all, "ＡＡ１２３４５６７５", "tw_resident_cert:medium:AA12345675");
    test_end();
}

/* --------------------------------------------------------------- tw_passport */

static void test_passport(void)
{
    char text[512];

    test_begin("tw_passport: only next to a keyword, then medium");
    check(&all, "護照號碼：312345678", "tw_passport:medium:312345678");
    check(&all, "Passport no. 123456789", "tw_passport:medium:123456789");
    check(&all, "123456789 是我的護照", "tw_passport:medium:123456789");
    check(&all, "order 123456789 shipped", "");
    check(&all, "passport 1234567890", "");          /* ten digits */
    check(&all, "passport A123456789", "tw_national_id:medium:A123456789");
    test_end();

    test_begin("tw_passport: keyword out of the window is no match");
    snprintf(text, sizeof(text), "護照%s123456789", "，這是一段很長很長的文字用來把關鍵字推到五十個字元的視窗之外"
             "再多寫一些字讓它確實超過五十個字元的距離");
    check(&all, text, "");
    test_end();
}

/* ------------------------------------------------------------------ tw_phone */

static void test_phone(void)
{
    test_begin("tw_phone: mobile numbers in every usual spelling");
    check(&all, "0912-345-678", "tw_phone:medium:0912-345-678");
    check(&all, "0912345678", "tw_phone:medium:0912345678");
    check(&all, "0912 345 678", "tw_phone:medium:0912 345 678");
    check(&all, "+886 912 345 678", "tw_phone:medium:+886 912 345 678");
    check(&all, "+886-912-345-678", "tw_phone:medium:+886-912-345-678");
    check(&all, "+886912345678", "tw_phone:medium:+886912345678");
    check(&all, "(0912) 345-678", "tw_phone:medium:(0912) 345-678");
    test_end();

    test_begin("tw_phone: landlines, digit count by area code");
    check(&all, "02-2345-6789", "tw_phone:medium:02-2345-6789");
    check(&all, "(02)2345-6789", "tw_phone:medium:(02)2345-6789");
    check(&all, "02 2345 6789", "tw_phone:medium:02 2345 6789");
    check(&all, "037-123456", "tw_phone:medium:037-123456");
    check(&all, "+886 2 2345 6789", "tw_phone:medium:+886 2 2345 6789");
    check(&all, "04-2234-5678 04-723-4567", "tw_phone:medium:04-2234-5678, tw_phone:medium:04-723-4567");
    check(&all, "049-2345678", "tw_phone:medium:049-2345678");
    check(&all, "07-345-6789", "tw_phone:medium:07-345-6789");
    check(&all, "(089)345678", "tw_phone:medium:(089)345678");
    test_end();

    test_begin("tw_phone: keywords, English ones as whole words");
    check(&all, "電話：02-2345-6789", "tw_phone:high:02-2345-6789");
    check(&all, "手機 0912345678", "tw_phone:high:0912345678");
    check(&all, "聯絡電話0912-345-678", "tw_phone:high:0912-345-678");
    check(&all, "Tel: 0912345678", "tw_phone:high:0912345678");
    check(&all, "mobile +886 912 345 678", "tw_phone:high:+886 912 345 678");
    check(&all, "hotel 0912345678", "tw_phone:medium:0912345678");
    check(&all, "telephone 0912345678", "tw_phone:medium:0912345678");
    check(&all, "Tel1: 0912345678", "tw_phone:high:0912345678");
    check(&all, "Tel0912345678", "");                /* the number touches a letter */
    check(&all, "mobiles: 0912345678", "tw_phone:medium:0912345678");
    test_end();

    test_begin("tw_phone: near misses");
    check(&all, "02-2345-678", "");                 /* Taipei needs 8 digits */
    check(&all, "0912-345-67", "");
    check(&all, "0800-123-456", "");                /* toll free is not a subscriber */
    check(&all, "02-0234-5678", "");                /* subscriber numbers do not start with 0 */
    check(&all, "A0912345678", "");
    check(&all, "09123456789", "");
    check(&all, "+887 912 345 678", "");
    test_end();

    test_begin("tw_phone: full-width digits and ideographic spaces");
    check(&all, "０９１２－３４５－６７８", "tw_phone:medium:0912-345-678");
    check(&all, "電話：０２\xe3\x80\x80２３４５\xe3\x80\x80６７８９", "tw_phone:high:02 2345 6789");
    check(&all, "（０２）２３４５\xe2\x80\x93６７８９", "tw_phone:medium:(02)2345-6789");
    test_end();
}

/* -------------------------------------------------------------- payment_card */

static void test_card(void)
{
    test_begin("payment_card: every issuer, valid Luhn");
    check(&all, "4111111111111111", "payment_card:medium:4111111111111111");
    check(&all, "5555555555554444 2223003122003222",
          "payment_card:medium:5555555555554444, payment_card:medium:2223003122003222");
    check(&all, "378282246310005", "payment_card:medium:378282246310005");
    check(&all, "3530111333300000", "payment_card:medium:3530111333300000");
    check(&all, "6011111111111117 6451234123412344",
          "payment_card:medium:6011111111111117, payment_card:medium:6451234123412344");
    check(&all, "6212345678901232", "payment_card:medium:6212345678901232");
    check(&all, "30569309025904 36227206271667",
          "payment_card:medium:30569309025904, payment_card:medium:36227206271667");
    check(&all, "4222222222222", "payment_card:medium:4222222222222");
    test_end();

    test_begin("payment_card: groups with spaces or dashes");
    check(&all, "4111 1111 1111 1111", "payment_card:medium:4111 1111 1111 1111");
    check(&all, "4111-1111-1111-1111", "payment_card:medium:4111-1111-1111-1111");
    check(&all, "3782 822463 10005", "payment_card:medium:3782 822463 10005");
    check(&all, "３５３０　１１１３　３３３０　００００", "payment_card:medium:3530 1113 3330 0000");
    test_end();

    test_begin("payment_card: keywords");
    check(&all, "信用卡號：4111 1111 1111 1111", "payment_card:high:4111 1111 1111 1111");
    check(&all, "Credit card 5555555555554444", "payment_card:high:5555555555554444");
    check(&all, "card no: 378282246310005", "payment_card:high:378282246310005");
    test_end();

    test_begin("payment_card: near misses");
    check(&all, "4111111111111112", "");            /* Luhn */
    check(&all, "371111111111115", "");             /* Amex prefix, 15 digits, bad Luhn */
    check(&all, "3711111111111117", "");            /* Amex with 16 digits, Luhn valid */
    check(&all, "411111111111116", "");             /* Visa with 15 digits */
    check(&all, "9111111111111110", "");            /* no such issuer, Luhn valid */
    check(&all, "1234411111111111111112345", "");   /* inside 25 digits */
    check(&all, "x4111111111111111", "");
    check(&all, "4111111111111111y", "");
    test_end();
}

/* ---------------------------------------------------------------------- iban */

static void test_iban(void)
{
    test_begin("iban: valid, with and without spaces");
    check(&all, "DE89 3704 0044 0532 0130 00", "iban:medium:DE89 3704 0044 0532 0130 00");
    check(&all, "DE89370400440532013000", "iban:medium:DE89370400440532013000");
    check(&all, "NO9386011117947 NL91ABNA0417164300",
          "iban:medium:NO9386011117947, iban:medium:NL91ABNA0417164300");
    check(&all, "FR14 2004 1010 0505 0001 3M02 606", "iban:medium:FR14 2004 1010 0505 0001 3M02 606");
    check(&all, "MT84MALT011000012345MTLCAST001S", "iban:medium:MT84MALT011000012345MTLCAST001S");
    test_end();

    test_begin("iban: keywords, and a word in capitals after it");
    check(&all, "IBAN: GB29 NWBK 6016 1331 9268 19", "iban:high:GB29 NWBK 6016 1331 9268 19");
    check(&all, "帳號 CH9300762011623852957", "iban:high:CH9300762011623852957");
    check(&all, "BE68 5390 0754 7034 BIC GEBABEBB", "iban:medium:BE68 5390 0754 7034");
    test_end();

    test_begin("iban: near misses");
    check(&all, "DE89370400440532013001", "");      /* check digits */
    check(&all, "DE8937040044053201300", "");       /* German IBANs have 22 */
    check(&all, "XX89370400440532013000", "");      /* no such country */
    check(&all, "ADE89370400440532013000", "");
    test_end();
}

/* --------------------------------------------------------------------- email */

static void test_email(void)
{
    test_begin("email: addresses, keywords");
    check(&all, "write to alice@example.com.", "email:medium:alice@example.com");
    check(&all, "電子郵件：bob.smith+tag@mail.example.co.uk", "email:high:bob.smith+tag@mail.example.co.uk");
    check(&all, "E-mail: carol@example.tw", "email:high:carol@example.tw");
    check(&all, "信箱ｄａｖｅ＠ｅｘａｍｐｌｅ．ｏｒｇ", "email:high:dave@example.org");
    test_end();

    test_begin("email: near misses");
    check(&all, "user@localhost", "");
    check(&all, "user@example.c0m", "");
    check(&all, "user@example.c", "");
    check(&all, "@example.com", "");
    test_end();
}

/* ------------------------------------------------------------ keyword window */

static void test_window(void)
{
    char text[1024];
    size_t n;

    test_begin("window: 50 characters, not bytes, before the match");
    /* 身分證 then 47 Chinese characters (141 bytes): inside */
    n = (size_t) snprintf(text, sizeof(text), "身分證");
    for (int i = 0; i < 47; i++)
        n += (size_t) snprintf(text + n, sizeof(text) - n, "字");
    snprintf(text + n, sizeof(text) - n, "A123456789");
    check(&all, text, "tw_national_id:high:A123456789");
    /* 身分證 then 48: its first character is outside */
    n = (size_t) snprintf(text, sizeof(text), "身分證");
    for (int i = 0; i < 48; i++)
        n += (size_t) snprintf(text + n, sizeof(text) - n, "字");
    snprintf(text + n, sizeof(text) - n, "A123456789");
    check(&all, text, "tw_national_id:medium:A123456789");
    test_end();

    test_begin("window: after the match, English");
    /* the keyword ends 50 characters after the match, then 51 */
    snprintf(text, sizeof(text), "0912345678 %-42s mobile", "is how to reach me, or my");
    check(&all, text, "tw_phone:high:0912345678");
    snprintf(text, sizeof(text), "0912345678 %-43s mobile", "is how to reach me, or my");
    check(&all, text, "tw_phone:medium:0912345678");
    test_end();

    test_begin("window: another detector's keyword does not count");
    check(&all, "電話 A123456789", "tw_national_id:medium:A123456789");
    test_end();
}

/* ------------------------------------------------------------------- custom */

static void test_custom(void)
{
    char *const emp_kw[] = {"員工編號", "employee", NULL};
    char *const acct_kw[] = {"帳戶", NULL};
    struct mk_detector_spec specs[] = {
        {"employee_id", "(?<![0-9A-Za-z])EMP-[0-9]{6}(?![0-9])", NULL, emp_kw, 20, 3, false},
        {"member_no", "(?<![0-9])[0-9]{8}(?![0-9])", "luhn", emp_kw, 0, 0, false},
        {"bank_account", "(?<![0-9])[0-9]{3}-[0-9]{7,10}(?![0-9])", "none", acct_kw, 5, 2, true},
        {"long_code", "(?<![0-9A-Z])[0-9]+-[A-Z]+", NULL, NULL, 0, 0, false},
        {"repeated", "(?<![0-9])([0-9])\\1{5}(?![0-9])", NULL, NULL, 0, 0, false},
        {"han_tag", "\\p{Han}{2}編號[0-9]{4}", NULL, NULL, 0, 0, false},
    };
    const char *const only[] = {"email", NULL};
    struct engines e = engines_create(specs, MK_ARRAY_LEN(specs), only);

    test_begin("custom: names, order, min_count");
    test_assert_int(mk_detect_count(e.d[0]), 7);
    test_assert_str(mk_detect_name(e.d[0], 0), "email");
    test_assert_str(mk_detect_name(e.d[0], 1), "employee_id");
    test_assert_str(mk_detect_name(e.d[0], 6), "han_tag");
    test_assert(mk_detect_name(e.d[0], 7) == NULL);
    test_assert_int(mk_detect_min_count(e.d[0], 1), 3);
    test_assert_int(mk_detect_min_count(e.d[0], 2), 1);
    test_assert_int(mk_detect_min_count(e.d[0], 3), 2);
    test_end();

    test_begin("custom: the three confidence levels");
    check(&e, "EMP-123456", "employee_id:low:EMP-123456");
    check(&e, "員工編號 EMP-123456", "employee_id:medium:EMP-123456");
    check(&e, "12345674", "member_no:medium:12345674");
    check(&e, "employee 12345674", "member_no:high:12345674");
    check(&e, "12345675", "");                      /* Luhn */
    test_end();

    test_begin("custom: a short window, keyword required, \"none\" validator");
    check(&e, "帳戶：123-4567890", "bank_account:medium:123-4567890");
    check(&e, "帳戶是這個號碼123-4567890", "");     /* six characters away */
    check(&e, "123-4567890", "");
    check(&e, "employee: 一二三四五六七八九十一二三四五六七八九十 EMP-123456",
          "employee_id:low:EMP-123456");
    test_end();

    test_begin("custom: unbounded, back-reference and Unicode patterns");
    check(&e, "x 12345-ABCDEF y", "long_code:low:12345-ABCDEF");
    check(&e, "777777 and 1777777", "repeated:low:777777");
    check(&e, "員工編號1234", "han_tag:low:員工編號1234");
    check(&e, "\xff員工編號1234\xfe", "han_tag:low:員工編號1234");
    test_end();
    engines_free(&e);

    test_begin("custom: errors name the detector and the problem");
    {
        struct mk_detector_spec bad[] = {
            {"broken", "([0-9]", NULL, NULL, 0, 0, false},
            {"checked", "[0-9]{4}", "crc32", NULL, 0, 0, false},
            {"Bad Name", "[0-9]{4}", NULL, NULL, 0, 0, false},
            {"maybe_empty", "[0-9]*", NULL, NULL, 0, 0, false},
            {"anchored", "\\G[0-9]{4}", NULL, NULL, 0, 0, false},
            {"verb", "[0-9]{4}(*COMMIT)x", NULL, NULL, 0, 0, false},
            {"needs_kw", "[0-9]{4}", NULL, NULL, 0, 0, true},
            {"email", "[0-9]{4}", NULL, NULL, 0, 0, false},
            {"wide", "[0-9]{4}", NULL, NULL, 20000, 0, false},
        };
        const char *want[] = {
            "detector 'broken': pattern error at offset 6",
            "detector 'checked': unknown validator 'crc32'",
            "detector 'Bad Name': a name is",
            "detector 'maybe_empty': pattern can match an empty string",
            "detector 'anchored': pattern uses \\G",
            "detector 'verb': pattern uses (*...)",
            "detector 'needs_kw': keyword_required without keywords",
            "detector 'email': is the name of an enabled built-in detector",
            "detector 'wide': window must be",
        };

        for (size_t i = 0; i < MK_ARRAY_LEN(bad); i++) {
            char *error = NULL;
            struct mk_detect *d = mk_detect_create(&bad[i], 1, NULL, &error);

            test_assert(d == NULL);
            test_assert(error != NULL && strncmp(error, want[i], strlen(want[i])) == 0);
            if (error && strncmp(error, want[i], strlen(want[i])) != 0)
                printf("  got: %s\n", error);
            free(error);
        }
    }
    {
        const char *const nope[] = {"email", "nope", NULL};
        char *error = NULL;

        test_assert(mk_detect_create(NULL, 0, nope, &error) == NULL);
        test_assert_str(error, "detector 'nope': no such built-in detector");
        free(error);
    }
    test_end();

    test_begin("custom: a built-in's name is free when it is disabled");
    {
        const char *const none[] = {NULL};
        struct mk_detector_spec mine = {"email", "[a-z]{1,20}@corp", NULL, NULL, 0, 0, false};
        struct engines e2 = engines_create(&mine, 1, none);

        test_assert_int(mk_detect_count(e2.d[0]), 1);
        check(&e2, "ask bob@corp or alice@example.com", "email:low:bob@corp");
        engines_free(&e2);
    }
    test_end();
}

/* ------------------------------------------------------------------- masking */

static void test_mask(void)
{
    char out[64];

#define MASK(in, size) (mk_detect_mask((in), strlen(in), out, (size)), out)
    test_begin("mask: first 3 and last 2 kept, never more than half");
    test_assert_str(MASK("A123456789", sizeof(out)), "A12*****89");
    test_assert_str(MASK("4111111111111111", sizeof(out)), "411***********11");
    test_assert_str(MASK("12345678", sizeof(out)), "12****78");
    test_assert_str(MASK("abcd", sizeof(out)), "a**d");
    test_assert_str(MASK("ab", sizeof(out)), "a*");
    test_assert_str(MASK("a", sizeof(out)), "*");
    test_assert_str(MASK("", sizeof(out)), "");
    test_end();

    test_begin("mask: UTF-8 safe, truncated at a character");
    test_assert_str(MASK("王小明先生", sizeof(out)), "王***生");
    test_assert_str(MASK("A123456789", 5), "A12*");
    test_assert_str(MASK("王小明先生", 4), "王");
    test_assert_str(MASK("王小明先生", 3), "");
    test_assert_str(MASK("\xff" "bcdefgh", sizeof(out)), "?b****gh");
    mk_detect_mask("A123456789", 10, out, 0);       /* must not write */
    test_end();
#undef MASK
}

/* ------------------------------------------------------------- robustness */

static uint32_t rng_state = 12345;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* Text with personal data scattered in it, some straddling chunk boundaries. */
static char *mixed_text(size_t size, size_t *len)
{
    static const char *const pieces[] = {
        "身分證字號：A123456789", "F131104093", "居留證 AA12345675", "電話 02-2345-6789",
        "０９１２－３４５－６７８", "信用卡 4111 1111 1111 1111", "5555555555554444",
        "IBAN DE89 3704 0044 0532 0130 00", "alice@example.com", "護照號碼 312345678",
        "A123456788", "4111111111111112", "我們今天討論產品計畫，", "the meeting is at ten. ",
        "hotel tel: ", "account ", "１２３", "\xe3\x80\x80", " ", "\n", "0912345678",
        "X", "12", "-", "EMP-123456 ", "員工編號 ",
    };
    char *t = malloc(size + 64);
    size_t n = 0;

    while (n < size) {
        const char *p = pieces[rng() % MK_ARRAY_LEN(pieces)];
        size_t pl = strlen(p);

        memcpy(t + n, p, pl);
        n += pl;
    }
    *len = n;
    return t;
}

static void test_engines_agree(void)
{
    char *const emp_kw[] = {"員工編號", NULL};
    struct mk_detector_spec specs[] = {
        {"employee_id", "(?<![0-9A-Za-z])EMP-[0-9]{6}(?![0-9])", NULL, emp_kw, 0, 0, false},
        {"long_code", "(?<![0-9])[0-9]+-[0-9]+", NULL, NULL, 0, 0, false},
    };
    struct engines e = engines_create(specs, MK_ARRAY_LEN(specs), NULL);
    size_t len;
    char *text = mixed_text(3 * 256 * 1024 + 1000, &len);

    test_begin("engines: same matches over 800 KB of mixed text");
    if (e.d[1]) {
        char *a = scan_one(e.d[0], e.s[0], text, len, 0);
        char *b = scan_one(e.d[1], e.s[1], text, len, 0);

        test_assert(strcmp(a, "ERROR") != 0);
        test_assert(strlen(a) > 10000);
        test_assert(strcmp(a, b) == 0);
        free(a);
        free(b);
    }
    test_end();

    test_begin("engines: a match on every side of a chunk boundary");
    {
        const char *item = "電話 02-2345-6789 A123456789";
        size_t il = strlen(item), size = 256 * 1024 + 64;
        char *t = malloc(size);

        for (size_t at = 256 * 1024 - il - 2; at <= 256 * 1024 + 2; at++) {
            memset(t, ' ', size);
            memcpy(t + at, item, il);
            check_at(__LINE__, &all, t, size,
                     "tw_phone:high:02-2345-6789, tw_national_id:medium:A123456789");
            /* long_code lies inside the phone number: the order between them may vary */
            if (e.d[1]) {
                char *a = scan_one(e.d[0], e.s[0], t, size, 0);
                char *b = scan_one(e.d[1], e.s[1], t, size, 0);

                test_assert(strcmp(a, b) == 0);
                test_assert(strstr(a, "long_code:low:02-2345") && strstr(a, "tw_phone:high"));
                free(a);
                free(b);
            }
        }
        free(t);
    }
    test_end();

    test_begin("engines: invalid UTF-8 does not stop or crash a scan");
    check(&all, "\xff" "A123456789\xfe", "tw_national_id:medium:A123456789");
    check(&all, "A123456789\xe8\xba", "tw_national_id:medium:A123456789");
    check(&all, "\xed\xa0\x80" "0912345678\xc0", "tw_phone:medium:0912345678");
    {
        size_t size = 600 * 1024;
        char *junk = malloc(size);

        for (size_t i = 0; i < size; i++)
            junk[i] = rng() % 5 == 0 ? (char) rng() : "0123456789 A-@.x"[rng() % 16];
        for (int i = 0; i < NENGINES && e.d[i]; i++) {
            char *r = scan_one(e.d[i], e.s[i], junk, size, 0);

            test_assert(strcmp(r, "ERROR") != 0);
            if (i == 1) {
                char *r0 = scan_one(e.d[0], e.s[0], junk, size, 0);

                test_assert(strcmp(r, r0) == 0);
                free(r0);
            }
            free(r);
        }
        free(junk);
    }
    test_end();
    free(text);
    engines_free(&e);
}

static void test_scan_control(void)
{
    test_begin("scan: a nonzero callback stops it");
    for (int i = 0; i < NENGINES && all.d[i]; i++) {
        char *r = scan_one(all.d[i], all.s[i], "A123456789 F131104093 B200001234", 32, 1);

        test_assert_str(r, "tw_national_id:medium:A123456789");
        free(r);
    }
    test_end();

    test_begin("scan: a scratch of another set is refused");
    {
        const char *const one[] = {"email", NULL};
        struct engines e = engines_create(NULL, 0, one);

        test_assert(mk_detect_scan(all.d[0], e.s[0], "a@b.cc", 6, collect_cb, NULL) < 0);
        engines_free(&e);
    }
    test_end();

    test_begin("scan: empty text, empty set");
    {
        const char *const none[] = {NULL};
        struct engines e = engines_create(NULL, 0, none);

        check(&all, "", "");
        check(&e, "A123456789", "");
        engines_free(&e);
    }
    test_end();

    test_begin("scan: a pattern past its match limit fails the scan");
    {
        struct mk_detector_spec slow = {"slow", "(?:a|aa){1,60}b(?!c)", NULL, NULL, 0, 0, false};
        struct engines e = engines_create(&slow, 1, NULL);
        char text[128];

        memset(text, 'a', 70);
        strcpy(text + 70, "bc");
        check(&e, text, "ERROR");
        engines_free(&e);
    }
    test_end();
}

struct thread_arg {
    const char *text;
    size_t len;
    char *result;
};

static void *thread_scan(void *p)
{
    struct thread_arg *a = p;
    struct mk_detect_scratch *s = mk_detect_scratch_new(all.d[0]);

    for (int i = 0; i < 3; i++) {
        free(a->result);
        a->result = scan_one(all.d[0], s, a->text, a->len, 0);
    }
    mk_detect_scratch_free(s);
    return NULL;
}

static void test_threads(void)
{
    struct thread_arg args[4];
    pthread_t tid[4];
    size_t len;
    char *text = mixed_text(300 * 1024, &len), *want;

    test_begin("threads: one set, a scratch each, the same results");
    want = scan_one(all.d[0], all.s[0], text, len, 0);
    for (int i = 0; i < 4; i++) {
        args[i].text = text;
        args[i].len = len;
        args[i].result = NULL;
        pthread_create(&tid[i], NULL, thread_scan, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
        test_assert(args[i].result && strcmp(args[i].result, want) == 0);
        free(args[i].result);
    }
    free(want);
    free(text);
    test_end();
}

static void test_misc(void)
{
    enum mk_confidence c = MK_CONF_NONE;
    const char *const *v = mk_detect_validators();
    size_t nv = 0;

    test_begin("validators: names and direct use");
    while (v[nv])
        nv++;
    test_assert_int(nv, 8);
    for (size_t i = 0; i < nv; i++)
        test_assert(mk_detect_validator(v[i]) != NULL);
    test_assert(mk_detect_validator("crc32") == NULL);
    test_assert_int(mk_detect_validate("tw_id", "A123456789", 10), 10);
    test_assert_int(mk_detect_validate("tw_id", "A 123 456 789", 13), 13);
    test_assert_int(mk_detect_validate("tw_id", "A123456788", 10), 0);
    test_assert_int(mk_detect_validate("tw_resident", "A123456789", 10), 0);
    test_assert_int(mk_detect_validate("luhn", "79927398713", 11), 11);
    test_assert_int(mk_detect_validate("luhn", "79927398710", 11), 0);
    test_assert_int(mk_detect_validate("luhn_card", "4111111111111111", 16), 16);
    test_assert_int(mk_detect_validate("iban", "BE68 5390 0754 7034 BIC", 23), 19);
    test_assert_int(mk_detect_validate("tw_phone", "+886 (0)2 2345 6789", 19), 19);
    test_assert_int(mk_detect_validate("email", "a@b.cc", 6), 6);
    test_assert_int(mk_detect_validate("none", "anything", 8), 8);
    test_assert_int(mk_detect_validate("crc32", "anything", 8), 0);
    test_end();

    test_begin("confidence names");
    test_assert_str(mk_confidence_name(MK_CONF_LOW), "low");
    test_assert_str(mk_confidence_name(MK_CONF_MEDIUM), "medium");
    test_assert_str(mk_confidence_name(MK_CONF_HIGH), "high");
    test_assert(mk_confidence_parse("High", &c) == 0 && c == MK_CONF_HIGH);
    test_assert(mk_confidence_parse("low", &c) == 0 && c == MK_CONF_LOW);
    test_assert(mk_confidence_parse("highest", &c) < 0 && c == MK_CONF_LOW);
    test_end();

    test_begin("engine names");
#ifdef HAVE_HYPERSCAN
    if (all.d[1]) {
        test_assert_str(mk_detect_engine(all.d[0]), "hyperscan");
        test_assert(strncmp(mk_detect_engine(all.d[1]), "pcre2", 5) == 0);
    } else {
        printf("  (Hyperscan not usable on this CPU: PCRE2 engine only)\n");
    }
#else
    test_assert(strncmp(mk_detect_engine(all.d[0]), "pcre2", 5) == 0);
#endif
    test_assert_int(mk_detect_count(all.d[0]), 7);
    test_end();
}

int main(void)
{
    mk_log_set_level(MK_LOG_ERROR);     /* the match-limit case warns, as it should */
    all = engines_create(NULL, 0, NULL);
    printf("engines: %s%s%s\n", mk_detect_engine(all.d[0]), all.d[1] ? " and " : "",
           all.d[1] ? mk_detect_engine(all.d[1]) : "");
    test_national_id();
    test_resident();
    test_passport();
    test_phone();
    test_card();
    test_iban();
    test_email();
    test_window();
    test_custom();
    test_mask();
    test_engines_agree();
    test_scan_control();
    test_threads();
    test_misc();
    engines_free(&all);
    return test_done();
}
