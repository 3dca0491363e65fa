/*
 * mk_detect_validators - checksums and structure checks that turn a
 * pattern match into a finding. See mk_detect.h.
 *
 * Every validator returns the number of leading bytes it accepts: the
 * whole match, or 0. Only iban may accept less (see mk_detect_check_iban).
 */
#include "config.h"

#include <stdbool.h>
#include <string.h>

#include "mk_detect.h"
#include "mk_util.h"

/* No identifier a validator knows is longer than an IBAN (34) or a phone number. */
#define MK_DETECT_CHECK_MAX	40

static bool mk_detect_is_separator(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v' ||
        c == '-' || c == '.' || c == '/' || c == '(' || c == ')' || c == '+';
}

/*
 * Collect the ASCII letters (upper-cased) and digits of text into buf,
 * skipping separators. False when anything else is there or there are
 * more than MK_DETECT_CHECK_MAX of them: such a match is not what the
 * validator checks.
 */
static bool mk_detect_alnum(const char *text, size_t len, char buf[MK_DETECT_CHECK_MAX + 1],
                            size_t *n)
{
    size_t k = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) text[i];

        if (c >= 'a' && c <= 'z')
            c = (unsigned char) (c - 'a' + 'A');
        if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')) {
            if (k == MK_DETECT_CHECK_MAX)
                return false;
            buf[k++] = (char) c;
        } else if (!mk_detect_is_separator(c)) {
            return false;
        }
    }
    buf[k] = '\0';
    *n = k;
    return true;
}

static bool mk_detect_all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static size_t mk_detect_check_none(const char *text, size_t len)
{
    (void) text;
    return len;
}

static bool mk_detect_luhn_ok(const char *d, size_t n)
{
    unsigned sum = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned x = (unsigned) (d[n - 1 - i] - '0');

        if (i & 1) {
            x *= 2;
            if (x > 9)
                x -= 9;
        }
        sum += x;
    }
    return sum % 10 == 0;
}

static size_t mk_detect_check_luhn(const char *text, size_t len)
{
    char d[MK_DETECT_CHECK_MAX + 1];
    size_t n;

    if (!mk_detect_alnum(text, len, d, &n) || n < 2 || !mk_detect_all_digits(d, n))
        return 0;
    return mk_detect_luhn_ok(d, n) ? len : 0;
}

/* Whether the issuer the prefix names issues cards of this length. */
static bool mk_detect_card_issuer(const char *d, size_t n)
{
    int p1 = d[0] - '0';
    int p2 = p1 * 10 + (d[1] - '0');
    int p3 = p2 * 10 + (d[2] - '0');
    int p4 = p3 * 10 + (d[3] - '0');

    if (p1 == 4)                                        /* Visa */
        return n == 13 || n == 16 || n == 19;
    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720))   /* Mastercard */
        return n == 16;
    if (p2 == 34 || p2 == 37)                           /* American Express */
        return n == 15;
    if (p4 >= 3528 && p4 <= 3589)                       /* JCB */
        return n >= 16;
    if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649))     /* Discover */
        return n >= 16;
    if (p2 == 62)                                       /* UnionPay */
        return n >= 16;
    if ((p3 >= 300 && p3 <= 305) || p2 == 36 || p2 == 38)       /* Diners Club */
        return n >= 14;
    return false;
}

static size_t mk_detect_check_card(const char *text, size_t len)
{
    char d[MK_DETECT_CHECK_MAX + 1];
    size_t n;

    if (!mk_detect_alnum(text, len, d, &n) || n < 13 || n > 19 || !mk_detect_all_digits(d, n))
        return 0;
    return mk_detect_card_issuer(d, n) && mk_detect_luhn_ok(d, n) ? len : 0;
}

/*
 * The two-digit values of the first letter of a Taiwanese ID: the
 * letters were numbered before I, O, W, X, Y and Z were added, which is
 * why those come last.
 */
static const unsigned char mk_detect_tw_letter[26] = {
    10, 11, 12, 13, 14, 15, 16, 17, 34, 18, 19, 20, 21, 22,
    35, 23, 24, 25, 26, 27, 28, 29, 32, 30, 31, 33,
};

/*
 * The checksum shared by the national ID and both resident certificate
 * formats: the letter's tens and units digits weighted 1 and 9, the
 * second position (given as a digit) 8, then 7 down to 1, and the check
 * digit 1; the sum must be a multiple of 10.
 */
static bool mk_detect_tw_checksum(const char *id, unsigned second)
{
    unsigned v = mk_detect_tw_letter[id[0] - 'A'];
    unsigned sum = v / 10 + (v % 10) * 9 + second * 8;

    for (int i = 2; i <= 8; i++)
        sum += (unsigned) (id[i] - '0') * (unsigned) (9 - i);
    sum += (unsigned) (id[9] - '0');
    return sum % 10 == 0;
}

static bool mk_detect_tw_shape(const char *id, size_t n)
{
    return n == 10 && id[0] >= 'A' && id[0] <= 'Z' && mk_detect_all_digits(id + 2, 8);
}

static size_t mk_detect_check_tw_id(const char *text, size_t len)
{
    char id[MK_DETECT_CHECK_MAX + 1];
    size_t n;

    if (!mk_detect_alnum(text, len, id, &n) || !mk_detect_tw_shape(id, n))
        return 0;
    if (id[1] != '1' && id[1] != '2')
        return 0;
    return mk_detect_tw_checksum(id, (unsigned) (id[1] - '0')) ? len : 0;
}

/*
 * Resident certificates issued before 2021 have a second letter A-D;
 * the official scheme uses the units digit of its value (A=10 gives 0).
 * The 2021 format puts 8 or 9 there and is checked like a national ID.
 */
static size_t mk_detect_check_tw_resident(const char *text, size_t len)
{
    char id[MK_DETECT_CHECK_MAX + 1];
    unsigned second;
    size_t n;

    if (!mk_detect_alnum(text, len, id, &n) || !mk_detect_tw_shape(id, n))
        return 0;
    if (id[1] >= 'A' && id[1] <= 'D')
        second = mk_detect_tw_letter[id[1] - 'A'] % 10u;
    else if (id[1] == '8' || id[1] == '9')
        second = (unsigned) (id[1] - '0');
    else
        return 0;
    return mk_detect_tw_checksum(id, second) ? len : 0;
}

/*
 * Taiwanese numbers, national form: area code with its 0, then the
 * subscriber number, whose length the area code decides. Longer codes
 * come first so that 037 (Miaoli) is not read as 03.
 */
static const struct mk_detect_area {
    const char *code;
    unsigned char min, max;             /* subscriber digits */
} mk_detect_areas[] = {
    {"0826", 5, 5}, {"0836", 5, 5},                     /* Wuqiu, Matsu */
    {"037", 6, 6}, {"049", 7, 7}, {"082", 6, 6}, {"089", 6, 6},
    {"02", 8, 8}, {"03", 7, 7}, {"04", 7, 8}, {"05", 7, 7}, {"06", 7, 7},
    {"07", 7, 7}, {"08", 7, 7},
};

static size_t mk_detect_check_tw_phone(const char *text, size_t len)
{
    char d[MK_DETECT_CHECK_MAX + 1], num[MK_DETECT_CHECK_MAX + 2];
    const char *p = text, *end = text + len;
    size_t n;

    while (p < end && (*p == ' ' || *p == '\t' || *p == '('))
        p++;
    if (!mk_detect_alnum(text, len, d, &n) || n < 2 || !mk_detect_all_digits(d, n))
        return 0;
    if (p < end && *p == '+') {
        /* +886, then the number without its 0 - or with it, in "+886 (0)2 ..." */
        const char *rest = d + 3;

        if (n < 4 || strncmp(d, "886", 3) != 0)
            return 0;
        if (*rest == '0')
            rest++;
        num[0] = '0';
        memcpy(num + 1, rest, strlen(rest) + 1);
    } else {
        memcpy(num, d, n + 1);
    }
    n = strlen(num);
    if (n < 2 || num[0] != '0')
        return 0;
    if (num[1] == '9')                  /* mobile: 09 and 8 digits */
        return n == 10 ? len : 0;
    for (size_t i = 0; i < MK_ARRAY_LEN(mk_detect_areas); i++) {
        const struct mk_detect_area *a = &mk_detect_areas[i];
        size_t clen = strlen(a->code), sub = n - clen;

        if (n <= clen || strncmp(num, a->code, clen) != 0)
            continue;
        /* A subscriber number never starts with 0: that would be another prefix. */
        return sub >= a->min && sub <= a->max && num[clen] != '0' ? len : 0;
    }
    return 0;
}

/*
 * IBAN lengths by country (ISO 13616 registry): every SEPA country and
 * the other registered countries most mail here is likely to mention.
 */
static const struct mk_detect_iban_country {
    char cc[3];
    unsigned char len;
} mk_detect_iban_countries[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16},
    {"BG", 22}, {"BH", 22}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28},
    {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24},
    {"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18},
    {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23},
    {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32},
    {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"LY", 25}, {"MC", 27}, {"MD", 24},
    {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15},
    {"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22},
    {"SA", 24}, {"SC", 31}, {"SD", 18}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27},
    {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22},
    {"VG", 24}, {"XK", 20},
};

static bool mk_detect_iban_ok(const char *text, size_t len)
{
    char b[MK_DETECT_CHECK_MAX + 1];
    unsigned r = 0;
    size_t n, want = 0;

    if (!mk_detect_alnum(text, len, b, &n) || n < 15 || n > 34)
        return false;
    if (b[0] < 'A' || b[0] > 'Z' || b[1] < 'A' || b[1] > 'Z' || !mk_detect_all_digits(b + 2, 2))
        return false;
    for (size_t i = 0; i < MK_ARRAY_LEN(mk_detect_iban_countries); i++)
        if (memcmp(b, mk_detect_iban_countries[i].cc, 2) == 0)
            want = mk_detect_iban_countries[i].len;
    if (n != want)
        return false;
    /* ISO 7064 mod 97-10 over the rotated string, letters as 10-35. */
    for (size_t k = 0; k < n; k++) {
        char c = b[(k + 4) % n];

        if (c >= '0' && c <= '9')
            r = (r * 10 + (unsigned) (c - '0')) % 97;
        else
            r = (r * 100 + (unsigned) (c - 'A' + 10)) % 97;
    }
    return r == 1;
}

/*
 * The pattern reads groups of four greedily, so an IBAN followed by a
 * short word in capitals ("... 7034 BIC") arrives with the word on it.
 * Try the match, then each shorter form that ends before a space.
 */
static size_t mk_detect_check_iban(const char *text, size_t len)
{
    if (mk_detect_iban_ok(text, len))
        return len;
    for (size_t j = len; j-- > 1;)
        if (text[j] == ' ' && text[j - 1] != ' ' && mk_detect_iban_ok(text, j))
            return j;
    return 0;
}

static size_t mk_detect_check_email(const char *text, size_t len)
{
    const char *at = NULL, *dot = NULL;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) text[i];

        if (c <= ' ' || c >= 0x7F)
            return 0;
        if (c == '@')
            at = text + i;
    }
    if (at == NULL || at == text || at - text > 64 || len > 254)
        return 0;
    for (const char *p = at + 1; p < text + len; p++)
        if (*p == '.')
            dot = p;
    if (dot == NULL || text + len - (dot + 1) < 2)
        return 0;
    for (const char *p = dot + 1; p < text + len; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return 0;
    return len;
}

static const struct mk_detect_validator_def {
    const char *name;
    mk_detect_validator_fn fn;
} mk_detect_validator_defs[] = {
    {"none", mk_detect_check_none},
    {"luhn", mk_detect_check_luhn},
    {"luhn_card", mk_detect_check_card},
    {"tw_id", mk_detect_check_tw_id},
    {"tw_resident", mk_detect_check_tw_resident},
    {"tw_phone", mk_detect_check_tw_phone},
    {"iban", mk_detect_check_iban},
    {"email", mk_detect_check_email},
};

static const char *const mk_detect_validator_names[] = {
    "none", "luhn", "luhn_card", "tw_id", "tw_resident", "tw_phone", "iban", "email", NULL,
};

const char *const *mk_detect_validators(void)
{
    return mk_detect_validator_names;
}

mk_detect_validator_fn mk_detect_validator(const char *name)
{
    for (size_t i = 0; name && i < MK_ARRAY_LEN(mk_detect_validator_defs); i++)
        if (strcmp(name, mk_detect_validator_defs[i].name) == 0)
            return mk_detect_validator_defs[i].fn;
    return NULL;
}

size_t mk_detect_validate(const char *validator, const char *text, size_t len)
{
    mk_detect_validator_fn fn = mk_detect_validator(validator);

    return fn ? fn(text, len) : 0;
}
