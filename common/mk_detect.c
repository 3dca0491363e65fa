/*
 * mk_detect - personal data detection. See mk_detect.h.
 *
 * How both engines find the same matches
 *
 * A detector's matches are defined by PCRE2 alone: the leftmost match
 * from the start of the text, then the leftmost match from its end, and
 * so on (the "canonical" sequence); the validator keeps or drops each.
 * The PCRE2 engine computes exactly that.
 *
 * The Hyperscan engine only decides where PCRE2 has to look. For every
 * detector the database holds prefilter patterns such that wherever
 * the PCRE2 pattern matches [x, e), some prefilter match ends at e: for
 * most built-ins, short suffixes every match ends with (seven digits
 * end every ID); for a custom detector, its own pattern in prefilter
 * mode. A match is at most "width" bytes long (Hyperscan's max_width
 * for the pattern), so a candidate end E means a start in
 * [E - width, E - 1]. A built-in may instead have a prefilter that
 * every match starts with (an IBAN's country and check digits): then a
 * report at R means a start in [R - its longest, R - its shortest].
 * Either way a detector's candidates are ranges [R - back_max,
 * R - back_min] with the same two numbers, so they come in order of
 * position. Searching them in order - never below a start already
 * searched ("checked") or inside the last match ("pos") - with
 * pcre2_set_offset_limit() bounding the start, finds the canonical
 * matches: every one of them starts inside some candidate range.
 *
 * Work goes in chunks of MK_DETECT_CHUNK bytes: Hyperscan does not
 * promise to report in order, so a chunk's candidates are collected and
 * sorted first, and memory stays bounded. A chunk reports the matches
 * that end inside it - both engines have found exactly those by then -
 * sorted by position, so both report the same matches in the same
 * order. Hyperscan sees "overlap" bytes before a chunk, so that a
 * candidate ending inside it is seen whole, and MK_DETECT_MARGIN bytes
 * after it, for end assertions in custom patterns.
 *
 * Keywords matter only next to a match, so they are looked for there,
 * in the match's window, after the match is confirmed. (Keeping them in
 * the Hyperscan database instead costs about half of its speed on
 * Chinese text, where the literals' bytes are common, even when no
 * keyword is present; matches are rare.)
 */
#include "config.h"

#define PCRE2_CODE_UNIT_WIDTH 8

#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifdef HAVE_HYPERSCAN
#include <hs.h>
#endif

#include "mk_detect.h"
#include "mk_log.h"
#include "mk_text.h"
#include "mk_util.h"

/* Chunk and step may be made tiny to test the boundaries; nothing else depends on them. */
#ifndef MK_DETECT_CHUNK
#define MK_DETECT_CHUNK		(256 * 1024)
#endif
#ifndef MK_DETECT_STEP
#define MK_DETECT_STEP		4096    /* start offsets one pcre2_match() call may try */
#endif
#define MK_DETECT_MARGIN	16
#define MK_DETECT_MAX_WIDTH	4096    /* longer Hyperscan matches: PCRE2 scans instead */
#define MK_DETECT_MAX_NAME	64
#define MK_DETECT_MAX_PREFILTERS 2

/*
 * Bounds on one pcre2_match() call, which tries at most MK_DETECT_STEP
 * start offsets: the built-in patterns need a few thousand steps there
 * on the worst text; a custom pattern that backtracks without end is
 * stopped, and the scan fails rather than hangs.
 */
#define MK_DETECT_MATCH_LIMIT	1000000
#define MK_DETECT_DEPTH_LIMIT	10000
#define MK_DETECT_HEAP_LIMIT	20480   /* KiB */
#define MK_DETECT_JIT_STACK	(1024 * 1024)

#define MK_DETECT_PCRE2_OPTIONS	(PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_USE_OFFSET_LIMIT | \
				 PCRE2_NEVER_BACKSLASH_C)

/* ---------------------------------------------------------------- built-in */

/* A number stands on its own: no letter or digit touching it. */
#define MK_NUM_BEFORE	"(?<![0-9A-Za-z])"
#define MK_NUM_AFTER	"(?![0-9A-Za-z])"

/*
 * Prefilters: every match of a detector ends with a match of one of its
 * prefilters (see the top of this file). Seven digits, single spaces or
 * dashes allowed between them, end every ID, passport, card and nearly
 * every phone number; one pattern shared by five detectors costs
 * Hyperscan far less than five patterns made of character classes.
 */
#define MK_PRE_DIGITS	"[0-9](?:[ -]?[0-9]){6}"

struct mk_detect_builtin {
    const char *name;
    const char *before, *body, *after;  /* the PCRE2 pattern */
    const char *prefilter[MK_DETECT_MAX_PREFILTERS];
    bool prefix;                        /* the prefilters start matches, not end them */
    const char *validator;
    const char *const *keywords;
    bool keyword_required;
};

static const char *const mk_kw_national_id[] = {
    "身分證", "身份證", "身分證字號", "身分證號", "統一編號", "national id", "id no", NULL,
};
static const char *const mk_kw_resident[] = {
    "居留證", "居留證號", "統一證號", "ARC", "resident", NULL,
};
static const char *const mk_kw_passport[] = {"護照", "護照號碼", "passport", NULL};
static const char *const mk_kw_phone[] = {
    "電話", "手機", "行動電話", "聯絡電話", "phone", "mobile", "tel", NULL,
};
static const char *const mk_kw_card[] = {
    "信用卡", "卡號", "信用卡號", "card number", "credit card", "card no", NULL,
};
static const char *const mk_kw_iban[] = {"IBAN", "帳號", "account", NULL};
static const char *const mk_kw_email[] = {"電子郵件", "信箱", "email", "e-mail", NULL};

static const struct mk_detect_builtin mk_detect_builtins[] = {
    {"tw_national_id", MK_NUM_BEFORE, "[A-Za-z][12][0-9]{8}", MK_NUM_AFTER,
     {MK_PRE_DIGITS}, false, "tw_id", mk_kw_national_id, false},
    {"tw_resident_cert", MK_NUM_BEFORE, "[A-Za-z][A-Da-d89][0-9]{8}", MK_NUM_AFTER,
     {MK_PRE_DIGITS}, false, "tw_resident", mk_kw_resident, false},
    {"tw_passport", MK_NUM_BEFORE, "[0-9]{9}", MK_NUM_AFTER,
     {MK_PRE_DIGITS}, false, NULL, mk_kw_passport, true},
    /*
     * +886 and the number without its 0; (02) 2345-6789 and (0912) ...;
     * or 0 and the rest. Separators may fall anywhere: the validator
     * counts the digits the area code needs. After "(0826)" there can be
     * as few as five digits, hence the second prefilter.
     */
    {"tw_phone", "(?<![0-9A-Za-z+])",
     "(?:\\+886[ -]?(?:\\(0\\)[ -]?)?[2-9](?:[ -]?[0-9]){7,8}"
     "|\\(0[2-9][0-9]{0,2}\\)[ -]?[0-9](?:[ -]?[0-9]){4,7}"
     "|0[2-9](?:[ -]?[0-9]){7,8})", MK_NUM_AFTER,
     {MK_PRE_DIGITS, "\\)[ -]?[0-9](?:[ -]?[0-9]){4,7}"}, false, "tw_phone", mk_kw_phone, false},
    /* Contiguous, or printed in groups: 4-4-4-4(-3), 4-4-4-1..3, 4-6-5 (Amex), 4-6-4 (Diners). */
    {"payment_card", MK_NUM_BEFORE,
     "(?:[0-9]{13,19}"
     "|[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}[ -](?:[0-9]{4}(?:[ -][0-9]{3})?|[0-9]{1,3})"
     "|[0-9]{4}[ -][0-9]{6}[ -][0-9]{4,5})", MK_NUM_AFTER,
     {MK_PRE_DIGITS}, false, "luhn_card", mk_kw_card, false},
    /*
     * An IBAN can end in letters or short groups; its start is the
     * rarer thing: two capitals and two digits.
     */
    {"iban", MK_NUM_BEFORE,
     "[A-Z]{2}[0-9]{2}(?: ?[0-9A-Z]{4}){2,7}(?: ?[0-9A-Z]{1,3})?", MK_NUM_AFTER,
     {"[A-Z]{2}[0-9]{2}"}, true, "iban", mk_kw_iban, false},
    {"email", "(?<![A-Za-z0-9._%+-])",
     "[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
     "(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?){1,8}", "(?![A-Za-z0-9-])",
     {"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}"
      "[A-Za-z0-9])?){1,8}"}, false, "email", mk_kw_email, false},
};

/* ------------------------------------------------------------------ types */

struct mk_detector {
    char *name;
    pcre2_code *code;
    char *body;                         /* the pattern without its boundary assertions */
    bool custom;
    mk_detect_validator_fn validate;    /* NULL: none */
    size_t window;                      /* characters */
    int min_count;
    bool keyword_required;
    size_t kw_first, nkw;               /* its keywords in d->kw */
    bool kw_short;                      /* one of them is a single byte */
    uint64_t kw_pairs[64];              /* hashed first two bytes of each (any case) */
    bool in_db;                         /* Hyperscan reports its candidates */
    bool utf8;                          /* its Hyperscan pattern needs valid UTF-8 */
    size_t width;                       /* its longest match, in bytes (in_db) */
    size_t back_max, back_min;          /* a report at R: a start in [R - max, R - min] */
};

struct mk_keyword {
    char *text;                         /* folded, as the text it is looked for in */
    size_t len;
    unsigned char first;                /* text[0], lower-cased */
};

#ifdef HAVE_HYPERSCAN
struct mk_hs_expr {                     /* one pattern in the database */
    char *pattern;
    unsigned flags;
    unsigned *det;                      /* the detectors it finds candidates for */
    size_t ndet;
};
#endif

struct mk_detect {
    struct mk_detector *det;
    size_t ndet;
    struct mk_keyword *kw;
    size_t nkw;
    bool hyperscan;
    bool jit;
    bool utf8;                          /* some Hyperscan pattern needs valid UTF-8 */
    size_t overlap;                     /* bytes Hyperscan sees before a chunk */
#ifdef HAVE_HYPERSCAN
    struct mk_hs_expr *expr;
    size_t nexpr;
    hs_database_t *db;
#endif
};

struct mk_range {
    size_t lo, hi;                      /* start offsets to search, inclusive */
};

struct mk_track {                       /* one detector during a scan */
    size_t pos;                         /* end of its last match */
    size_t checked;                     /* every start below this was searched */
    struct mk_range *ranges;            /* this chunk's candidates */
    size_t nranges, cap;
    bool unsorted;
};

struct mk_found {                       /* a validated match, until it is reported */
    size_t start, end;
    unsigned detector;
    enum mk_confidence confidence;
};

struct mk_detect_scratch {
    const struct mk_detect *d;
    pcre2_match_context *mctx;
    pcre2_match_data *md;
    pcre2_jit_stack *jit_stack;
    char *fold;
    size_t fold_size;
    struct mk_track *track;
    struct mk_found *found;
    size_t nfound, found_cap;
#ifdef HAVE_HYPERSCAN
    hs_scratch_t *hs;
#endif
};

/* One scan: what the chunk loop and the Hyperscan callback share. */
struct mk_detect_pass {
    const struct mk_detect *d;
    struct mk_detect_scratch *s;
    const char *text;
    size_t len;
    size_t base;                        /* offset of the text Hyperscan was given */
    size_t acc_lo, acc_hi;              /* the chunk: ends in (acc_lo, acc_hi] */
    bool utf8_ok;
    bool stop;
    int (*cb)(void *arg, const struct mk_detect_match *m);
    void *arg;
};

/* ------------------------------------------------------------ small tools */

static bool mk_detect_letter(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool mk_detect_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static unsigned char mk_detect_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char) (c - 'A' + 'a') : c;
}

static size_t mk_detect_max(size_t a, size_t b)
{
    return a > b ? a : b;
}

static char *mk_detect_join(const char *a, const char *b, const char *c)
{
    return mk_xasprintf("%s%s%s", a, b, c);
}

static pcre2_code *mk_detect_compile(const char *pattern, uint32_t options, bool jit,
                                     char **why)
{
    PCRE2_UCHAR msg[256];
    PCRE2_SIZE erroffset;
    pcre2_code *code;
    int errcode;

    code = pcre2_compile((PCRE2_SPTR) pattern, PCRE2_ZERO_TERMINATED, options, &errcode,
                         &erroffset, NULL);
    if (code == NULL) {
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        *why = mk_xasprintf("pattern error at offset %zu: %s", (size_t) erroffset, (char *) msg);
        return NULL;
    }
    if (jit)
        (void) pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);     /* else interpreted */
    return code;
}

/*
 * What a custom pattern may not use: \G and \K tie a match to where a
 * search starts, and backtracking verbs ((*COMMIT), (*SKIP)...) to how
 * far a search goes; the engines search different stretches, so with
 * those they could disagree. Character classes and \Q...\E are skipped.
 */
static const char *mk_detect_position_dependent(const char *p)
{
    bool in_class = false;

    for (; *p; p++) {
        if (*p == '\\') {
            if (p[1] == 'Q') {
                const char *e = strstr(p + 2, "\\E");

                if (e == NULL)
                    return NULL;
                p = e + 1;
                continue;
            }
            if (!in_class && p[1] == 'G')
                return "\\G";
            if (!in_class && p[1] == 'K')
                return "\\K";
            if (p[1] != '\0')
                p++;
        } else if (in_class) {
            if (*p == ']')
                in_class = false;
        } else if (*p == '[') {
            in_class = true;
            if (p[1] == '^')
                p++;
            if (p[1] == ']')            /* a ']' first in a class is literal */
                p++;
        } else if (*p == '(' && p[1] == '*') {
            return "(*...)";
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ build */

static bool mk_detect_is_builtin(const char *name)
{
    for (size_t i = 0; i < MK_ARRAY_LEN(mk_detect_builtins); i++)
        if (strcmp(name, mk_detect_builtins[i].name) == 0)
            return true;
    return false;
}

static bool mk_detect_enabled(const char *const *only, const char *name)
{
    if (only == NULL)
        return true;
    for (size_t i = 0; only[i]; i++)
        if (strcmp(only[i], name) == 0)
            return true;
    return false;
}

static int mk_detect_find(const struct mk_detect *d, const char *name)
{
    for (size_t i = 0; i < d->ndet; i++)
        if (strcmp(d->det[i].name, name) == 0)
            return (int) i;
    return -1;
}

/*
 * Skip a keyword that another keyword of the same detector lies inside
 * when that one has no word boundary to respect: wherever the longer
 * one is in a window, so is the shorter one (身分證 in 身分證字號).
 * Fewer keywords make the window check faster.
 */
static bool mk_detect_keyword_redundant(const struct mk_detect *d,
                                        const struct mk_detector *det, const char *text,
                                        size_t len)
{
    for (size_t i = det->kw_first; i < det->kw_first + det->nkw; i++) {
        const struct mk_keyword *k = &d->kw[i];
        unsigned char a = (unsigned char) k->text[0], z = (unsigned char) k->text[k->len - 1];

        if (k->len >= len || mk_detect_letter(a) || mk_detect_digit(a) ||
            mk_detect_letter(z) || mk_detect_digit(z))
            continue;
        for (size_t j = 0; j + k->len <= len; j++)
            if (strncasecmp(text + j, k->text, k->len) == 0)
                return true;
    }
    return false;
}

/*
 * Where a keyword may start, by its first two bytes, lower-cased: in a
 * Chinese window nearly every byte is some keyword's first byte, but
 * rarely its first two.
 */
static inline unsigned mk_detect_pair_hash(unsigned char a, unsigned char b)
{
    return ((unsigned) a * 31u + b) & 4095u;
}

static void mk_detect_pair_add(struct mk_detector *det, unsigned char a, unsigned char b)
{
    unsigned h = mk_detect_pair_hash(a, b);

    det->kw_pairs[h / 64] |= UINT64_C(1) << (h % 64);
}

static void mk_detect_add_keywords(struct mk_detect *d, struct mk_detector *det,
                                   const char *const *keywords)
{
    size_t n = 0, *order;

    while (keywords && keywords[n])
        n++;
    /* Shortest first, so that the redundancy check sees the short ones. */
    order = mk_xcalloc(n + 1, sizeof(*order));
    det->kw_first = d->nkw;
    det->nkw = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = i;

        for (; j > 0 && strlen(keywords[order[j - 1]]) > strlen(keywords[i]); j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    for (size_t i = 0; i < n; i++) {
        const char *word = keywords[order[i]];
        char *folded = NULL, *text;
        size_t len = mk_text_fold(word, strlen(word), &folded);
        struct mk_keyword *k;

        text = folded ? folded : mk_xstrndup(word, len);
        if (mk_detect_keyword_redundant(d, det, text, len)) {
            free(text);
            continue;
        }
        d->kw = mk_xrealloc(d->kw, (d->nkw + 1) * sizeof(*d->kw));
        k = &d->kw[d->nkw++];
        k->text = text;
        k->len = len;
        k->first = mk_detect_lower((unsigned char) text[0]);
        if (len == 1)
            det->kw_short = true;
        else
            mk_detect_pair_add(det, k->first, mk_detect_lower((unsigned char) text[1]));
        det->nkw++;
    }
    free(order);
}

static struct mk_detector *mk_detect_new_detector(struct mk_detect *d, const char *name)
{
    struct mk_detector *det = &d->det[d->ndet++];

    memset(det, 0, sizeof(*det));
    det->name = mk_xstrdup(name);
    det->window = MK_DETECT_DEFAULT_WINDOW;
    det->min_count = 1;
    return det;
}

static void mk_detect_add_builtin(struct mk_detect *d, const struct mk_detect_builtin *b)
{
    struct mk_detector *det = mk_detect_new_detector(d, b->name);
    char *pattern = mk_detect_join(b->before, b->body, b->after), *why = NULL;

    det->code = mk_detect_compile(pattern, MK_DETECT_PCRE2_OPTIONS, d->jit, &why);
    if (det->code == NULL)
        mk_log_fatal("built-in detector %s: %s", b->name, why);
    free(pattern);
    det->body = mk_xstrdup(b->body);
    det->validate = b->validator ? mk_detect_validator(b->validator) : NULL;
    det->keyword_required = b->keyword_required;
    mk_detect_add_keywords(d, det, b->keywords);
}

static char *mk_detect_add_custom(struct mk_detect *d, const struct mk_detector_spec *spec)
{
    const char *name = spec->name ? spec->name : "", *bad;
    struct mk_detector *det;
    size_t nkeywords = 0;
    uint32_t empty = 0;
    char *why = NULL;

    if (*name == '\0' || strlen(name) > MK_DETECT_MAX_NAME ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(name))
        return mk_xasprintf("detector '%s': a name is 1-%d lower-case letters, digits and _",
                            name, MK_DETECT_MAX_NAME);
    if (mk_detect_find(d, name) >= 0)
        return mk_xasprintf("detector '%s': %s", name, mk_detect_is_builtin(name) ?
                            "is the name of an enabled built-in detector" : "defined twice");
    if (spec->pattern == NULL || spec->pattern[0] == '\0')
        return mk_xasprintf("detector '%s': no pattern", name);
    if (spec->validator && mk_detect_validator(spec->validator) == NULL) {
        const char *const *v = mk_detect_validators();
        char *known = mk_xstrdup(v[0]), *more;

        for (size_t i = 1; v[i]; i++) {
            more = mk_xasprintf("%s, %s", known, v[i]);
            free(known);
            known = more;
        }
        why = mk_xasprintf("detector '%s': unknown validator '%s' (known: %s)", name,
                           spec->validator, known);
        free(known);
        return why;
    }
    if (spec->window < 0 || spec->window > MK_DETECT_MAX_WINDOW)
        return mk_xasprintf("detector '%s': window must be 0-%d characters", name,
                            MK_DETECT_MAX_WINDOW);
    if (spec->min_count < 0)
        return mk_xasprintf("detector '%s': min_count must not be negative", name);
    for (; spec->keywords && spec->keywords[nkeywords]; nkeywords++) {
        size_t klen = strlen(spec->keywords[nkeywords]);

        if (klen == 0 || klen > MK_DETECT_MAX_KEYWORD)
            return klen ? mk_xasprintf("detector '%s': keyword %zu is longer than %d bytes",
                                       name, nkeywords + 1, MK_DETECT_MAX_KEYWORD)
                : mk_xasprintf("detector '%s': keyword %zu is empty", name, nkeywords + 1);
    }
    if (spec->keyword_required && nkeywords == 0)
        return mk_xasprintf("detector '%s': keyword_required without keywords", name);
    if ((bad = mk_detect_position_dependent(spec->pattern)) != NULL)
        return mk_xasprintf("detector '%s': pattern uses %s, which makes a match depend "
                            "on where a search starts", name, bad);

    det = mk_detect_new_detector(d, name);
    det->code = mk_detect_compile(spec->pattern, MK_DETECT_PCRE2_OPTIONS, d->jit, &why);
    if (det->code == NULL) {
        char *msg = mk_xasprintf("detector '%s': %s", name, why);

        free(why);
        return msg;
    }
    if (pcre2_pattern_info(det->code, PCRE2_INFO_MATCHEMPTY, &empty) == 0 && empty)
        return mk_xasprintf("detector '%s': pattern can match an empty string", name);
    det->body = mk_xstrdup(spec->pattern);
    det->custom = true;
    if (spec->validator && strcmp(spec->validator, "none") != 0)
        det->validate = mk_detect_validator(spec->validator);
    if (spec->window > 0)
        det->window = (size_t) spec->window;
    if (spec->min_count > 0)
        det->min_count = spec->min_count;
    det->keyword_required = spec->keyword_required;
    mk_detect_add_keywords(d, det, (const char *const *) spec->keywords);
    return NULL;
}

#ifdef HAVE_HYPERSCAN

static const struct mk_detect_builtin *mk_detect_builtin_def(const char *name)
{
    for (size_t i = 0; i < MK_ARRAY_LEN(mk_detect_builtins); i++)
        if (strcmp(name, mk_detect_builtins[i].name) == 0)
            return &mk_detect_builtins[i];
    return NULL;
}

/*
 * Hyperscan's longest match for a pattern, or 0 when it cannot tell or
 * take it; *min gets the shortest.
 */
static size_t mk_detect_hs_width(const char *pattern, unsigned flags, size_t *min)
{
    hs_compile_error_t *err = NULL;
    hs_expr_info_t *info = NULL;
    size_t width = 0;

    if (hs_expression_info(pattern, flags, &info, &err) != HS_SUCCESS) {
        hs_free_compile_error(err);
        return 0;
    }
    if (info->min_width > 0 && info->max_width <= MK_DETECT_MAX_WIDTH) {
        width = info->max_width;
        *min = info->min_width;
    }
    free(info);
    return width;
}

static void mk_detect_hs_add(struct mk_detect *d, const char *pattern, unsigned flags,
                             unsigned detector)
{
    struct mk_hs_expr *e = NULL;

    for (size_t i = 0; i < d->nexpr && e == NULL; i++)
        if (strcmp(d->expr[i].pattern, pattern) == 0 && d->expr[i].flags == flags)
            e = &d->expr[i];
    if (e == NULL) {
        d->expr = mk_xrealloc(d->expr, (d->nexpr + 1) * sizeof(*d->expr));
        e = &d->expr[d->nexpr++];
        e->pattern = mk_xstrdup(pattern);
        e->flags = flags;
        e->det = NULL;
        e->ndet = 0;
    }
    e->det = mk_xrealloc(e->det, (e->ndet + 1) * sizeof(*e->det));
    e->det[e->ndet++] = detector;
}

static void mk_detect_hs_drop(struct mk_detect *d, size_t i)
{
    for (size_t k = 0; k < d->expr[i].ndet; k++)
        d->det[d->expr[i].det[k]].in_db = false;
    free(d->expr[i].pattern);
    free(d->expr[i].det);
    d->expr[i] = d->expr[--d->nexpr];
}

/*
 * Build the one database. A built-in detector enters with its
 * prefilters, as bytes (they are ASCII); a custom one with its own
 * pattern in prefilter mode (lookarounds and back-references become
 * approximations that match more, never less), in UTF-8 mode as PCRE2
 * reads it. A custom pattern Hyperscan refuses, or whose matches can be
 * longer than MK_DETECT_MAX_WIDTH, stays with PCRE2 alone.
 */
static bool mk_detect_build_hs(struct mk_detect *d)
{
    hs_compile_error_t *err = NULL;
    const char **patterns;
    unsigned *flags, *ids;
    bool ok = false;

    for (size_t i = 0; i < d->ndet; i++) {
        struct mk_detector *det = &d->det[i];
        const struct mk_detect_builtin *b = det->custom ? NULL : mk_detect_builtin_def(det->name);
        unsigned f = det->custom ? HS_FLAG_UTF8 | HS_FLAG_PREFILTER : 0;
        size_t min = 0;

        if ((det->width = mk_detect_hs_width(det->body, f, &min)) == 0)
            continue;
        det->in_db = true;
        det->utf8 = det->custom;
        det->back_max = det->width;
        det->back_min = 1;
        if (det->custom) {
            mk_detect_hs_add(d, det->body, f, (unsigned) i);
            continue;
        }
        if (b->prefix) {
            det->back_max = 0;
            det->back_min = SIZE_MAX;
        }
        for (size_t k = 0; k < MK_DETECT_MAX_PREFILTERS && b->prefilter[k]; k++) {
            size_t pmax = mk_detect_hs_width(b->prefilter[k], 0, &min);

            if (pmax == 0)
                mk_log_fatal("built-in detector %s: bad prefilter", b->name);
            if (b->prefix) {
                det->back_max = mk_detect_max(det->back_max, pmax);
                det->back_min = min < det->back_min ? min : det->back_min;
            }
            mk_detect_hs_add(d, b->prefilter[k], 0, (unsigned) i);
        }
    }
    patterns = mk_xcalloc(d->nexpr + 1, sizeof(*patterns));
    flags = mk_xcalloc(d->nexpr + 1, sizeof(*flags));
    ids = mk_xcalloc(d->nexpr + 1, sizeof(*ids));
    while (d->nexpr > 0) {
        for (size_t i = 0; i < d->nexpr; i++) {
            patterns[i] = d->expr[i].pattern;
            flags[i] = d->expr[i].flags;
            ids[i] = (unsigned) i;
        }
        if (hs_compile_multi(patterns, flags, ids, (unsigned) d->nexpr, HS_MODE_BLOCK, NULL,
                             &d->db, &err) == HS_SUCCESS) {
            ok = true;
            break;
        }
        /* A custom pattern spoiled the set: leave it to PCRE2 and try again. */
        if (err->expression >= 0 && d->expr[err->expression].flags != 0) {
            mk_detect_hs_drop(d, (size_t) err->expression);
            hs_free_compile_error(err);
            continue;
        }
        mk_log(MK_LOG_WARNING, NULL, "detectors: Hyperscan: %s; using PCRE2 alone", err->message);
        hs_free_compile_error(err);
        break;
    }
    free(patterns);
    free(flags);
    free(ids);
    if (!ok) {
        for (size_t i = 0; i < d->ndet; i++)
            d->det[i].in_db = false;
        return false;
    }
    for (size_t i = 0; i < d->ndet; i++)
        if (d->det[i].in_db) {
            d->overlap = mk_detect_max(d->overlap, d->det[i].width);
            d->utf8 |= d->det[i].utf8;
        }
    for (size_t i = 0; i < d->nexpr; i++) {
        size_t min;

        d->overlap = mk_detect_max(d->overlap, mk_detect_hs_width(d->expr[i].pattern,
                                                                  d->expr[i].flags, &min));
    }
    return true;
}

#endif

struct mk_detect *mk_detect_create(const struct mk_detector_spec *custom, size_t ncustom,
                                   const char *const *only, char **error)
{
    const char *engine = getenv("MK_DETECT_ENGINE");
    struct mk_detect *d;
    uint32_t jit = 0;

    *error = NULL;
    for (size_t i = 0; only && only[i]; i++)
        if (!mk_detect_is_builtin(only[i])) {
            *error = mk_xasprintf("detector '%s': no such built-in detector", only[i]);
            return NULL;
        }
    d = mk_xcalloc(1, sizeof(*d));
    d->jit = pcre2_config(PCRE2_CONFIG_JIT, &jit) == 0 && jit;
    d->det = mk_xcalloc(MK_ARRAY_LEN(mk_detect_builtins) + ncustom + 1, sizeof(*d->det));
    for (size_t i = 0; i < MK_ARRAY_LEN(mk_detect_builtins); i++)
        if (mk_detect_enabled(only, mk_detect_builtins[i].name))
            mk_detect_add_builtin(d, &mk_detect_builtins[i]);
    for (size_t i = 0; i < ncustom; i++) {
        if ((*error = mk_detect_add_custom(d, &custom[i])) != NULL) {
            mk_detect_free(d);
            return NULL;
        }
    }
#ifdef HAVE_HYPERSCAN
    if ((engine == NULL || strcmp(engine, "pcre2") != 0) && d->ndet > 0 &&
        hs_valid_platform() == HS_SUCCESS)
        d->hyperscan = mk_detect_build_hs(d);
#else
    (void) engine;
#endif
    return d;
}

void mk_detect_free(struct mk_detect *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->ndet; i++) {
        free(d->det[i].name);
        free(d->det[i].body);
        pcre2_code_free(d->det[i].code);
    }
    for (size_t k = 0; k < d->nkw; k++)
        free(d->kw[k].text);
#ifdef HAVE_HYPERSCAN
    for (size_t i = 0; i < d->nexpr; i++) {
        free(d->expr[i].pattern);
        free(d->expr[i].det);
    }
    free(d->expr);
    if (d->db)
        hs_free_database(d->db);
#endif
    free(d->det);
    free(d->kw);
    free(d);
}

size_t mk_detect_count(const struct mk_detect *d)
{
    return d ? d->ndet : 0;
}

const char *mk_detect_name(const struct mk_detect *d, unsigned i)
{
    return d && i < d->ndet ? d->det[i].name : NULL;
}

int mk_detect_min_count(const struct mk_detect *d, unsigned i)
{
    return d && i < d->ndet ? d->det[i].min_count : 0;
}

const char *mk_detect_engine(const struct mk_detect *d)
{
    if (d->hyperscan)
        return "hyperscan";
    return d->jit ? "pcre2-jit" : "pcre2";
}

/* ---------------------------------------------------------------- scratch */

struct mk_detect_scratch *mk_detect_scratch_new(const struct mk_detect *d)
{
    struct mk_detect_scratch *s = mk_xcalloc(1, sizeof(*s));

    s->d = d;
    s->track = mk_xcalloc(d->ndet + 1, sizeof(*s->track));
    if ((s->mctx = pcre2_match_context_create(NULL)) == NULL ||
        (s->md = pcre2_match_data_create(1, NULL)) == NULL)
        mk_log_fatal("out of memory");
    pcre2_set_match_limit(s->mctx, MK_DETECT_MATCH_LIMIT);
    pcre2_set_depth_limit(s->mctx, MK_DETECT_DEPTH_LIMIT);
    pcre2_set_heap_limit(s->mctx, MK_DETECT_HEAP_LIMIT);
    if (d->jit && (s->jit_stack = pcre2_jit_stack_create(32 * 1024, MK_DETECT_JIT_STACK,
                                                         NULL)) != NULL)
        pcre2_jit_stack_assign(s->mctx, NULL, s->jit_stack);
#ifdef HAVE_HYPERSCAN
    if (d->db && hs_alloc_scratch(d->db, &s->hs) != HS_SUCCESS) {
        mk_log(MK_LOG_ERROR, NULL, "detectors: cannot allocate Hyperscan scratch");
        mk_detect_scratch_free(s);
        return NULL;
    }
#endif
    return s;
}

void mk_detect_scratch_free(struct mk_detect_scratch *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->d->ndet; i++)
        free(s->track[i].ranges);
    free(s->track);
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mctx);
    pcre2_jit_stack_free(s->jit_stack);
#ifdef HAVE_HYPERSCAN
    if (s->hs)
        hs_free_scratch(s->hs);
#endif
    free(s->fold);
    free(s->found);
    free(s);
}

/* ------------------------------------------------------------------- scan */

#ifdef HAVE_HYPERSCAN

static void mk_detect_add_range(struct mk_track *t, size_t lo, size_t hi)
{
    if (t->nranges > 0) {
        struct mk_range *last = &t->ranges[t->nranges - 1];

        /* Hyperscan reports mostly in order: extend the last range when we can. */
        if (lo >= last->lo && lo <= last->hi + 1) {
            if (hi > last->hi)
                last->hi = hi;
            return;
        }
        if (lo < last->lo)
            t->unsorted = true;
    }
    if (t->nranges == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->ranges = mk_xrealloc(t->ranges, t->cap * sizeof(*t->ranges));
    }
    t->ranges[t->nranges].lo = lo;
    t->ranges[t->nranges].hi = hi;
    t->nranges++;
}

static int mk_detect_range_cmp(const void *a, const void *b)
{
    const struct mk_range *x = a, *y = b;

    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void mk_detect_sort_ranges(struct mk_track *t)
{
    size_t n = 0;

    if (!t->unsorted)
        return;
    qsort(t->ranges, t->nranges, sizeof(*t->ranges), mk_detect_range_cmp);
    for (size_t i = 0; i < t->nranges; i++) {
        if (n > 0 && t->ranges[i].lo <= t->ranges[n - 1].hi + 1) {
            if (t->ranges[i].hi > t->ranges[n - 1].hi)
                t->ranges[n - 1].hi = t->ranges[i].hi;
        } else {
            t->ranges[n++] = t->ranges[i];
        }
    }
    t->nranges = n;
    t->unsorted = false;
}

static int mk_detect_hs_event(unsigned int id, unsigned long long from, unsigned long long to,
                              unsigned int flags, void *ctx)
{
    struct mk_detect_pass *p = ctx;
    const struct mk_hs_expr *e = &p->d->expr[id];
    size_t end = p->base + (size_t) to;

    (void) from;
    (void) flags;
    if (end <= p->acc_lo || end > p->acc_hi)
        return 0;                       /* another chunk's */
    for (size_t k = 0; k < e->ndet; k++) {
        const struct mk_detector *det = &p->d->det[e->det[k]];

        if (!det->utf8 || p->utf8_ok)
            mk_detect_add_range(&p->s->track[e->det[k]],
                                end > det->back_max ? end - det->back_max : 0,
                                end - det->back_min);
    }
    return 0;
}

static int mk_detect_hs_chunk(struct mk_detect_pass *p)
{
    size_t from = p->acc_lo > p->d->overlap ? p->acc_lo - p->d->overlap : 0;
    size_t to = p->len - p->acc_hi > MK_DETECT_MARGIN ? p->acc_hi + MK_DETECT_MARGIN : p->len;
    hs_error_t rc;

    p->base = from;
    rc = hs_scan(p->d->db, p->text + from, (unsigned int) (to - from), 0, p->s->hs,
                 mk_detect_hs_event, p);
    if (rc != HS_SUCCESS) {
        mk_log(MK_LOG_WARNING, NULL, "detectors: Hyperscan scan failed (error %d)", (int) rc);
        return -1;
    }
    return 0;
}

#endif

static void mk_detect_add_found(struct mk_detect_pass *p, unsigned i, size_t ms, size_t me)
{
    const struct mk_detector *det = &p->d->det[i];
    struct mk_detect_scratch *s = p->s;
    enum mk_confidence confidence = MK_CONF_LOW;
    struct mk_found *f;

    if (det->validate) {
        size_t ok = det->validate(p->text + ms, me - ms);

        if (ok == 0)
            return;                     /* a near miss */
        if (ok < me - ms)
            me = ms + ok;
        confidence = MK_CONF_MEDIUM;
    }
    if (s->nfound == s->found_cap) {
        s->found_cap = s->found_cap ? s->found_cap * 2 : 32;
        s->found = mk_xrealloc(s->found, s->found_cap * sizeof(*s->found));
    }
    f = &s->found[s->nfound++];
    f->start = ms;
    f->end = me;
    f->detector = i;
    f->confidence = confidence;
}

/* Search detector i's candidate start offsets for its next canonical matches. */
static int mk_detect_confirm(struct mk_detect_pass *p, unsigned i, const struct mk_range *r,
                             size_t nr)
{
    const struct mk_detector *det = &p->d->det[i];
    struct mk_detect_scratch *s = p->s;
    struct mk_track *t = &s->track[i];

    for (size_t k = 0; k < nr; k++) {
        size_t lo = mk_detect_max(r[k].lo, mk_detect_max(t->pos, t->checked)), hi = r[k].hi;

        while (lo <= hi) {
            size_t step_hi = hi - lo >= MK_DETECT_STEP ? lo + MK_DETECT_STEP - 1 : hi;
            PCRE2_SIZE *ov;
            int rc;

            pcre2_set_offset_limit(s->mctx, step_hi);
            rc = pcre2_match(det->code, (PCRE2_SPTR) p->text, p->len, lo, PCRE2_NOTEMPTY, s->md,
                             s->mctx);
            if (rc == PCRE2_ERROR_NOMATCH) {
                lo = step_hi + 1;
                continue;
            }
            if (rc < 0) {
                mk_log(MK_LOG_WARNING, NULL, "detector %s: pattern match failed (PCRE2 error %d)",
                       det->name, rc);
                return -1;
            }
            ov = pcre2_get_ovector_pointer(s->md);
            t->pos = ov[1];
            mk_detect_add_found(p, i, ov[0], ov[1]);
            lo = ov[1];
        }
        t->checked = mk_detect_max(t->checked, hi + 1);
    }
    return 0;
}

/*
 * Is one of the detector's keywords wholly inside [lo, hi)? A keyword
 * that begins with a letter may not follow a letter, nor one that
 * begins with a digit a digit, and likewise at its end: "tel" is in
 * "Tel:" and "tel1", not in "hotel". One pass over the window.
 */
static bool mk_detect_keywords_in(const struct mk_detect_pass *p, const struct mk_detector *det,
                                  size_t lo, size_t hi)
{
    const unsigned char *t = (const unsigned char *) p->text;

    for (size_t at = lo; at < hi; at++) {
        if (!det->kw_short) {
            unsigned h;

            if (at + 1 >= hi)
                break;
            h = mk_detect_pair_hash(mk_detect_lower(t[at]), mk_detect_lower(t[at + 1]));
            if (!(det->kw_pairs[h / 64] & (UINT64_C(1) << (h % 64))))
                continue;
        }
        for (size_t i = det->kw_first; i < det->kw_first + det->nkw; i++) {
            const struct mk_keyword *k = &p->d->kw[i];
            const unsigned char *kt = (const unsigned char *) k->text;
            unsigned char a = kt[0], z = kt[k->len - 1];
            size_t j = 1;

            if (k->first != mk_detect_lower(t[at]) || hi - at < k->len)
                continue;
            while (j < k->len && mk_detect_lower(t[at + j]) == mk_detect_lower(kt[j]))
                j++;
            if (j < k->len)
                continue;
            if (at > 0 && ((mk_detect_letter(a) && mk_detect_letter(t[at - 1])) ||
                           (mk_detect_digit(a) && mk_detect_digit(t[at - 1]))))
                continue;
            if (at + k->len < p->len &&
                ((mk_detect_letter(z) && mk_detect_letter(t[at + k->len])) ||
                 (mk_detect_digit(z) && mk_detect_digit(t[at + k->len]))))
                continue;
            return true;
        }
    }
    return false;
}

/* Is one of the detector's keywords in its window: before the match or after it? */
static bool mk_detect_keyword_near(const struct mk_detect_pass *p, const struct mk_found *f)
{
    const struct mk_detector *det = &p->d->det[f->detector];

    if (det->nkw == 0)
        return false;
    return mk_detect_keywords_in(p, det, mk_text_back(p->text, p->len, f->start, det->window),
                                 f->start) ||
        mk_detect_keywords_in(p, det, f->end, mk_text_forward(p->text, p->len, f->end,
                                                              det->window));
}

static int mk_detect_found_cmp(const void *a, const void *b)
{
    const struct mk_found *x = a, *y = b;

    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->detector < y->detector ? -1 : x->detector > y->detector;
}

/* Report the matches that end at or before known; keep the others for the next chunk. */
static void mk_detect_report(struct mk_detect_pass *p, size_t known)
{
    struct mk_detect_scratch *s = p->s;
    size_t keep = 0;

    if (s->nfound > 1)
        qsort(s->found, s->nfound, sizeof(*s->found), mk_detect_found_cmp);
    for (size_t k = 0; k < s->nfound; k++) {
        const struct mk_found *f = &s->found[k];
        const struct mk_detector *det = &p->d->det[f->detector];
        struct mk_detect_match m;
        bool keyword;

        if (f->end > known) {
            s->found[keep++] = *f;
            continue;
        }
        if (p->stop)
            continue;
        keyword = mk_detect_keyword_near(p, f);
        if (!keyword && det->keyword_required)
            continue;
        m.detector = f->detector;
        m.confidence = keyword ? f->confidence + 1 : f->confidence;
        m.text = p->text + f->start;
        m.len = f->end - f->start;
        if (p->cb(p->arg, &m) != 0)
            p->stop = true;
    }
    s->nfound = keep;
}

static int mk_detect_chunk(struct mk_detect_pass *p)
{
    const struct mk_detect *d = p->d;

#ifdef HAVE_HYPERSCAN
    if (d->hyperscan) {
        for (size_t i = 0; i < d->ndet; i++)
            p->s->track[i].nranges = 0;
        if (mk_detect_hs_chunk(p) < 0)
            return -1;
    }
#endif
    for (size_t i = 0; i < d->ndet; i++) {
        /* Without candidates from Hyperscan, PCRE2 tries every start offset in the chunk. */
        struct mk_range all = {p->acc_lo, p->acc_hi - 1};
        const struct mk_range *r = &all;
        size_t nr = 1;

#ifdef HAVE_HYPERSCAN
        struct mk_track *t = &p->s->track[i];

        if (d->hyperscan && d->det[i].in_db && (!d->det[i].utf8 || p->utf8_ok)) {
            mk_detect_sort_ranges(t);
            r = t->ranges;
            nr = t->nranges;
        }
#endif
        if (mk_detect_confirm(p, (unsigned) i, r, nr) < 0)
            return -1;
    }
    mk_detect_report(p, p->acc_hi == p->len ? SIZE_MAX : p->acc_hi);
    return 0;
}

int mk_detect_scan(const struct mk_detect *d, struct mk_detect_scratch *s, const char *utf8,
                   size_t len, int (*cb)(void *arg, const struct mk_detect_match *m), void *arg)
{
    struct mk_detect_pass p;

    memset(&p, 0, sizeof(p));
    p.d = d;
    p.s = s;
    p.cb = cb;
    p.arg = arg;
    if (s->d != d) {
        mk_log(MK_LOG_ERROR, NULL, "detectors: scratch belongs to another detector set");
        return -1;
    }
    if (d->ndet == 0 || len == 0)
        return 0;
    p.text = mk_text_fold_buf(utf8, len, &s->fold, &s->fold_size, &p.len);
    p.utf8_ok = !d->utf8 || mk_text_valid_utf8(p.text, p.len);
    for (size_t i = 0; i < d->ndet; i++) {
        s->track[i].pos = 0;
        s->track[i].checked = 0;
        s->track[i].unsorted = false;
    }
    s->nfound = 0;
    for (p.acc_lo = 0; p.acc_lo < p.len && !p.stop; p.acc_lo = p.acc_hi) {
        p.acc_hi = p.len - p.acc_lo > MK_DETECT_CHUNK ? p.acc_lo + MK_DETECT_CHUNK : p.len;
        if (mk_detect_chunk(&p) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- reporting */

void mk_detect_mask(const char *match, size_t len, char *out, size_t outlen)
{
    size_t n = mk_text_count_chars(match, len), shown, head, tail, o = 0, i = 0;

    if (outlen == 0)
        return;
    shown = n / 2 < 5 ? n / 2 : 5;
    tail = shown / 2 < 2 ? shown / 2 : 2;
    head = shown - tail;
    for (size_t c = 0; c < n; c++) {
        size_t clen = mk_text_char_len(match, len, i);
        bool keep = c < head || c >= n - tail;

        if (keep && (clen > 1 || (unsigned char) match[i] < 0x80)) {
            if (o + clen >= outlen)
                break;
            memcpy(out + o, match + i, clen);
            o += clen;
        } else {
            if (o + 1 >= outlen)
                break;
            out[o++] = keep ? '?' : '*';        /* keep: a byte that is not UTF-8 */
        }
        i += clen;
    }
    out[o] = '\0';
}

const char *mk_confidence_name(enum mk_confidence c)
{
    switch (c) {
    case MK_CONF_LOW:
        return "low";
    case MK_CONF_MEDIUM:
        return "medium";
    case MK_CONF_HIGH:
        return "high";
    case MK_CONF_NONE:
    default:
        return "none";
    }
}

int mk_confidence_parse(const char *name, enum mk_confidence *c)
{
    static const enum mk_confidence all[] = {MK_CONF_NONE, MK_CONF_LOW, MK_CONF_MEDIUM,
                                             MK_CONF_HIGH};

    for (size_t i = 0; name && i < MK_ARRAY_LEN(all); i++)
        if (strcasecmp(name, mk_confidence_name(all[i])) == 0) {
            *c = all[i];
            return 0;
        }
    return -1;
}
