/*
 * ar_fts - the archive's FTS5 tokenizer. See ar_fts.h.
 */
#include "config.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "ar_fts.h"
#include "mk_util.h"

enum ar_fts_class { AR_FTS_SEP, AR_FTS_WORD, AR_FTS_CJK, AR_FTS_IGNORE };

/* Where tokens go: FTS5's xToken, or ar_tokenize()'s callback. */
typedef int (*ar_fts_emit_fn)(void *arg, int colocated, const char *token, int len,
                              int start, int end);

/* ASCII letters and digits map to their lower-case form; everything else to 0. */
static const unsigned char ar_fts_ascii[128] = {
    ['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3', ['4'] = '4',
    ['5'] = '5', ['6'] = '6', ['7'] = '7', ['8'] = '8', ['9'] = '9',
    ['A'] = 'a', ['B'] = 'b', ['C'] = 'c', ['D'] = 'd', ['E'] = 'e', ['F'] = 'f', ['G'] = 'g',
    ['H'] = 'h', ['I'] = 'i', ['J'] = 'j', ['K'] = 'k', ['L'] = 'l', ['M'] = 'm', ['N'] = 'n',
    ['O'] = 'o', ['P'] = 'p', ['Q'] = 'q', ['R'] = 'r', ['S'] = 's', ['T'] = 't', ['U'] = 'u',
    ['V'] = 'v', ['W'] = 'w', ['X'] = 'x', ['Y'] = 'y', ['Z'] = 'z',
    ['a'] = 'a', ['b'] = 'b', ['c'] = 'c', ['d'] = 'd', ['e'] = 'e', ['f'] = 'f', ['g'] = 'g',
    ['h'] = 'h', ['i'] = 'i', ['j'] = 'j', ['k'] = 'k', ['l'] = 'l', ['m'] = 'm', ['n'] = 'n',
    ['o'] = 'o', ['p'] = 'p', ['q'] = 'q', ['r'] = 'r', ['s'] = 's', ['t'] = 't', ['u'] = 'u',
    ['v'] = 'v', ['w'] = 'w', ['x'] = 'x', ['y'] = 'y', ['z'] = 'z',
};

/*
 * Decode the sequence at p (p < end). Returns its length; *cp is the
 * code point, or UINT32_MAX for a byte that starts no well-formed
 * sequence (overlong, surrogate, past U+10FFFF, truncated), which is
 * then skipped alone.
 */
static inline int ar_fts_decode(const unsigned char *p, const unsigned char *end, uint32_t *cp)
{
    unsigned char c = p[0];
    size_t left = (size_t) (end - p);

    *cp = UINT32_MAX;
    if (c >= 0xC2 && c <= 0xDF) {
        if (left >= 2 && (p[1] & 0xC0) == 0x80) {
            *cp = ((uint32_t) (c & 0x1F) << 6) | (p[1] & 0x3F);
            return 2;
        }
    } else if (c >= 0xE0 && c <= 0xEF) {
        if (left >= 3 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80) {
            uint32_t v = ((uint32_t) (c & 0x0F) << 12) | ((uint32_t) (p[1] & 0x3F) << 6)
                         | (p[2] & 0x3F);

            if (v >= 0x800 && (v < 0xD800 || v > 0xDFFF)) {
                *cp = v;
                return 3;
            }
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        if (left >= 4 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80
            && (p[3] & 0xC0) == 0x80) {
            uint32_t v = ((uint32_t) (c & 0x07) << 18) | ((uint32_t) (p[1] & 0x3F) << 12)
                         | ((uint32_t) (p[2] & 0x3F) << 6) | (p[3] & 0x3F);

            if (v >= 0x10000 && v <= 0x10FFFF) {
                *cp = v;
                return 4;
            }
        }
    }
    return 1;
}

static int ar_fts_encode(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char) cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char) (0xC0 | (cp >> 6));
        out[1] = (unsigned char) (0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char) (0xE0 | (cp >> 12));
        out[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char) (0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char) (0xF0 | (cp >> 18));
    out[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char) (0x80 | (cp & 0x3F));
    return 4;
}

static int ar_fts_class_latin1(uint32_t cp)
{
    if (cp == 0xAA || cp == 0xB5 || cp == 0xBA)
        return AR_FTS_WORD;
    if (cp == 0xAD)
        return AR_FTS_IGNORE;                   /* soft hyphen */
    if (cp < 0xC0 || cp == 0xD7 || cp == 0xF7)
        return AR_FTS_SEP;
    return AR_FTS_WORD;
}

/* Punctuation of the alphabetic scripts between U+0100 and U+2000 that people type. */
static bool ar_fts_script_punct(uint32_t cp)
{
    return cp == 0x037E || cp == 0x0387 || (cp >= 0x055A && cp <= 0x055F) || cp == 0x0589
           || cp == 0x05BE || cp == 0x05C0 || cp == 0x05C3 || cp == 0x05F3 || cp == 0x05F4
           || cp == 0x060C || cp == 0x060D || cp == 0x061B || cp == 0x061F
           || (cp >= 0x066A && cp <= 0x066D) || cp == 0x06D4 || cp == 0x0964 || cp == 0x0965
           || cp == 0x0E4F || cp == 0x0E5A || cp == 0x0E5B;
}

/* CJK symbols and punctuation (U+3000-U+303F) that are really ideographs. */
static bool ar_fts_cjk_symbol(uint32_t cp)
{
    return (cp >= 0x3005 && cp <= 0x3007) || (cp >= 0x3021 && cp <= 0x3029)
           || (cp >= 0x3031 && cp <= 0x3035) || cp == 0x303B || cp == 0x303C;
}

static int ar_fts_class_bmp_high(uint32_t cp)
{
    if (cp < 0xAC00)
        return cp >= 0xA960 && cp <= 0xA97F ? AR_FTS_CJK : AR_FTS_WORD;
    if (cp < 0xD800)
        return AR_FTS_CJK;                      /* hangul syllables, jamo extended-B */
    if (cp < 0xE000)
        return AR_FTS_SEP;                      /* surrogates: never decoded */
    if (cp < 0xFB00)
        return AR_FTS_CJK;                      /* private use (Big5 造字), compatibility */
    if (cp < 0xFE00)
        return AR_FTS_WORD;
    if (cp < 0xFE10)
        return AR_FTS_IGNORE;                   /* variation selectors */
    if (cp < 0xFE20)
        return AR_FTS_SEP;
    if (cp < 0xFE30)
        return AR_FTS_WORD;
    if (cp < 0xFE70)
        return AR_FTS_SEP;                      /* CJK compatibility and small forms */
    if (cp < 0xFF00)
        return cp == 0xFEFF ? AR_FTS_IGNORE : AR_FTS_WORD;
    if ((cp >= 0xFF10 && cp <= 0xFF19) || (cp >= 0xFF21 && cp <= 0xFF3A)
        || (cp >= 0xFF41 && cp <= 0xFF5A))
        return AR_FTS_WORD;                     /* full-width letters and digits */
    if (cp >= 0xFF66 && cp <= 0xFFDC)
        return AR_FTS_CJK;                      /* half-width katakana and hangul */
    return AR_FTS_SEP;
}

static int ar_fts_class_astral(uint32_t cp)
{
    if (cp >= 0x20000 && cp < 0x40000)
        return AR_FTS_CJK;                      /* ideograph extensions B-H, supplement */
    if (cp >= 0x1B000 && cp < 0x1B170)
        return AR_FTS_CJK;                      /* kana supplement */
    if (cp < 0x1F000)
        return AR_FTS_WORD;
    if ((cp >= 0xE0000 && cp < 0xE0080) || (cp >= 0xE0100 && cp < 0xE01F0))
        return AR_FTS_IGNORE;                   /* tags, ideographic variation selectors */
    return AR_FTS_SEP;                          /* emoji, symbols, private use planes */
}

static int ar_fts_class(uint32_t cp)
{
    if (cp < 0x100)
        return ar_fts_class_latin1(cp);
    if (cp < 0x2000) {
        if (cp >= 0x1100 && cp < 0x1200)
            return AR_FTS_CJK;                  /* hangul jamo */
        return ar_fts_script_punct(cp) ? AR_FTS_SEP : AR_FTS_WORD;
    }
    if (cp < 0x3000) {
        if (cp == 0x200C || cp == 0x200D || cp == 0x2060)
            return AR_FTS_IGNORE;               /* joiners */
        if (cp >= 0x2C00 && cp < 0x2E00)
            return AR_FTS_WORD;                 /* Glagolitic, Coptic, Latin Extended-C... */
        if (cp >= 0x2E80 && cp < 0x2FE0)
            return AR_FTS_CJK;                  /* radicals */
        return AR_FTS_SEP;                      /* punctuation, symbols, arrows, boxes */
    }
    if (cp < 0xA000) {
        if (cp < 0x3040)
            return ar_fts_cjk_symbol(cp) ? AR_FTS_CJK : AR_FTS_SEP;
        if (cp == 0x30A0 || cp == 0x30FB)
            return AR_FTS_SEP;                  /* katakana hyphen and middle dot */
        if (cp < 0x3200)
            return AR_FTS_CJK;                  /* kana, bopomofo, compatibility jamo */
        if (cp < 0x3400 || (cp >= 0x4DC0 && cp < 0x4E00))
            return AR_FTS_SEP;                  /* enclosed forms, hexagrams */
        return AR_FTS_CJK;                      /* extension A, unified ideographs */
    }
    if (cp < 0x10000)
        return ar_fts_class_bmp_high(cp);
    return ar_fts_class_astral(cp);
}

/* Lower case for the scripts people mail in; full-width letters and digits become ASCII. */
static uint32_t ar_fts_fold(uint32_t cp)
{
    if (cp < 0x100)
        return cp >= 0xC0 && cp <= 0xDE && cp != 0xD7 ? cp + 0x20 : cp;
    if (cp < 0x180) {                           /* Latin Extended-A: mostly pairs */
        if (cp == 0x130)
            return 'i';
        if (cp == 0x178)
            return 0xFF;
        if (cp == 0x131 || cp == 0x138 || cp == 0x149 || cp == 0x17F)
            return cp;
        if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E))
            return cp & 1 ? cp + 1 : cp;
        return cp & 1 ? cp : cp + 1;
    }
    if (cp >= 0x386 && cp <= 0x3AB) {           /* Greek capitals */
        if (cp == 0x386)
            return 0x3AC;
        if (cp >= 0x388 && cp <= 0x38A)
            return cp + 37;
        if (cp == 0x38C)
            return 0x3CC;
        if (cp == 0x38E || cp == 0x38F)
            return cp + 63;
        return cp >= 0x391 && cp != 0x3A2 ? cp + 0x20 : cp;
    }
    if (cp == 0x3C2)
        return 0x3C3;                           /* final sigma */
    if (cp >= 0x400 && cp <= 0x40F)
        return cp + 0x50;
    if (cp >= 0x410 && cp <= 0x42F)
        return cp + 0x20;
    if (cp >= 0xFF10 && cp <= 0xFF19)
        return cp - 0xFF10 + '0';
    if (cp >= 0xFF21 && cp <= 0xFF3A)
        return cp - 0xFF21 + 'a';
    if (cp >= 0xFF41 && cp <= 0xFF5A)
        return cp - 0xFF41 + 'a';
    return cp;
}

/*
 * The scanner's state: the word being built (folded, cut at
 * AR_FTS_MAX_TOKEN) and the CJK run's previous character.
 */
struct ar_fts_scan {
    ar_fts_emit_fn emit;
    void *arg;
    bool query;                 /* no run-end synonyms */
    int rc;
    unsigned char word[AR_FTS_MAX_TOKEN];
    int wlen, wstart, wend;
    bool wfull;
    unsigned char pair[8];      /* previous CJK character, then the current one */
    int plen, pstart, pend, run;
};

static void ar_fts_flush_word(struct ar_fts_scan *s)
{
    if (s->wlen > 0 && s->rc == 0)
        s->rc = s->emit(s->arg, 0, (const char *) s->word, s->wlen, s->wstart, s->wend);
    s->wlen = 0;
    s->wfull = false;
}

static void ar_fts_flush_run(struct ar_fts_scan *s)
{
    if (s->rc == 0 && (s->run == 1 || (s->run > 1 && !s->query)))
        s->rc = s->emit(s->arg, s->run > 1, (const char *) s->pair, s->plen, s->pstart, s->pend);
    s->run = 0;
}

static void ar_fts_word_char(struct ar_fts_scan *s, uint32_t cp, int start, int end)
{
    unsigned char buf[4];
    int n;

    if (s->run)
        ar_fts_flush_run(s);
    if (s->wlen == 0 && !s->wfull)
        s->wstart = start;
    s->wend = end;
    if (s->wfull)
        return;
    n = ar_fts_encode(ar_fts_fold(cp), buf);
    if (s->wlen + n > AR_FTS_MAX_TOKEN) {
        s->wfull = true;                        /* keep the prefix; never skip a character */
        return;
    }
    memcpy(s->word + s->wlen, buf, (size_t) n);
    s->wlen += n;
}

static void ar_fts_cjk_char(struct ar_fts_scan *s, const unsigned char *p, int n, int start)
{
    if (s->wlen || s->wfull)
        ar_fts_flush_word(s);
    if (s->run) {
        memcpy(s->pair + s->plen, p, (size_t) n);
        if (s->rc == 0)
            s->rc = s->emit(s->arg, 0, (const char *) s->pair, s->plen + n, s->pstart, start + n);
    }
    memcpy(s->pair, p, (size_t) n);
    s->plen = n;
    s->pstart = start;
    s->pend = start + n;
    s->run++;
}

static void ar_fts_separate(struct ar_fts_scan *s)
{
    if (s->wlen || s->wfull)
        ar_fts_flush_word(s);
    if (s->run)
        ar_fts_flush_run(s);
}

static int ar_fts_scan(const char *text, size_t len, bool query, ar_fts_emit_fn emit, void *arg)
{
    const unsigned char *p = (const unsigned char *) text;
    struct ar_fts_scan s = {.emit = emit, .arg = arg, .query = query};
    int n = len > INT_MAX ? INT_MAX : (int) len;

    for (int i = 0; i < n && s.rc == 0;) {
        unsigned char c = p[i];
        uint32_t cp;
        int k;

        if (c < 0x80) {                         /* the common case, kept tight */
            unsigned char lc = ar_fts_ascii[c];

            if (lc == 0) {
                ar_fts_separate(&s);
            } else {
                if (s.run)
                    ar_fts_flush_run(&s);
                if (s.wlen == 0 && !s.wfull)
                    s.wstart = i;
                if (s.wlen < AR_FTS_MAX_TOKEN && !s.wfull)
                    s.word[s.wlen++] = lc;
                else
                    s.wfull = true;
                s.wend = i + 1;
            }
            i++;
            continue;
        }
        k = ar_fts_decode(p + i, p + n, &cp);
        switch (cp == UINT32_MAX ? AR_FTS_SEP : ar_fts_class(cp)) {
        case AR_FTS_WORD:
            ar_fts_word_char(&s, cp, i, i + k);
            break;
        case AR_FTS_CJK:
            ar_fts_cjk_char(&s, p + i, k, i);
            break;
        case AR_FTS_IGNORE:
            break;
        default:
            ar_fts_separate(&s);
            break;
        }
        i += k;
    }
    ar_fts_separate(&s);
    return s.rc;
}

/* ar_tokenize(): the callback sees no synonym flag; a run-end character just follows. */
struct ar_fts_plain {
    int (*cb)(void *arg, const char *token, size_t len, int start, int end);
    void *arg;
};

static int ar_fts_plain_emit(void *arg, int colocated, const char *token, int len, int start,
                             int end)
{
    struct ar_fts_plain *plain = arg;

    (void) colocated;
    return plain->cb(plain->arg, token, (size_t) len, start, end);
}

void ar_tokenize(const char *text, size_t len,
                 int (*cb)(void *arg, const char *token, size_t len, int start, int end),
                 void *arg)
{
    struct ar_fts_plain plain = {cb, arg};

    (void) ar_fts_scan(text, len, false, ar_fts_plain_emit, &plain);
}

bool ar_fts_cjk(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *) s;
    uint32_t cp;

    if (len < 2 || len > 4)
        return false;
    return (size_t) ar_fts_decode(p, p + len, &cp) == len && cp != UINT32_MAX
           && ar_fts_class(cp) == AR_FTS_CJK;
}

/* The FTS5 side. The tokenizer has no state; FTS5 wants a non-NULL handle all the same. */
struct ar_fts_xtoken {
    int (*xToken)(void *ctx, int tflags, const char *token, int len, int start, int end);
    void *ctx;
};

static char ar_fts_handle;

static int ar_fts_xcreate(void *ctx, const char **argv, int argc, Fts5Tokenizer **out)
{
    (void) ctx;
    (void) argv;
    if (argc > 0)
        return SQLITE_ERROR;
    *out = (Fts5Tokenizer *) &ar_fts_handle;
    return SQLITE_OK;
}

static void ar_fts_xdelete(Fts5Tokenizer *tok)
{
    (void) tok;
}

static int ar_fts_xtoken_emit(void *arg, int colocated, const char *token, int len, int start,
                              int end)
{
    struct ar_fts_xtoken *x = arg;

    return x->xToken(x->ctx, colocated ? FTS5_TOKEN_COLOCATED : 0, token, len, start, end);
}

static int ar_fts_xtokenize(Fts5Tokenizer *tok, void *ctx, int flags, const char *text, int len,
                            int (*xToken)(void *, int, const char *, int, int, int))
{
    struct ar_fts_xtoken x = {xToken, ctx};

    (void) tok;
    if (len <= 0)
        return SQLITE_OK;
    return ar_fts_scan(text, (size_t) len, (flags & FTS5_TOKENIZE_QUERY) != 0,
                       ar_fts_xtoken_emit, &x);
}

static fts5_api *ar_fts_api(sqlite3 *db)
{
    fts5_api *api = NULL;
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_pointer(st, 1, (void *) &api, "fts5_api_ptr", NULL);
        (void) sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return api;
}

int ar_fts_register(sqlite3 *db, char **error)
{
    static fts5_tokenizer tokenizer = {ar_fts_xcreate, ar_fts_xdelete, ar_fts_xtokenize};
    fts5_api *api = ar_fts_api(db);
    int rc;

    *error = NULL;
    if (api == NULL) {
        *error = mk_xstrdup("SQLite has no FTS5 (the archive index needs it)");
        return -1;
    }
    rc = api->xCreateTokenizer(api, AR_FTS_TOKENIZER, NULL, &tokenizer, NULL);
    if (rc != SQLITE_OK) {
        *error = mk_xasprintf("cannot register the %s tokenizer: %s", AR_FTS_TOKENIZER,
                              sqlite3_errstr(rc));
        return -1;
    }
    return 0;
}
