/*
 * ar_query - the archive search language. See ar_query.h.
 */
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ar_fts.h"
#include "ar_query.h"
#include "mk_util.h"

#define AR_QUERY_ID_PER_SECOND	1048576         /* messages.id = received time * 2^20 + n */
#define AR_QUERY_ECHO		40              /* bytes of a bad value quoted back */
#define AR_QUERY_MAX_BYTES	((int64_t) 1 << 50)
#define AR_QUERY_DAY		86400

enum ar_query_node_kind {
    AR_QUERY_NODE_TEXT, AR_QUERY_NODE_DATE, AR_QUERY_NODE_SIZE, AR_QUERY_NODE_DIRECTION,
    AR_QUERY_NODE_HAS,
    AR_QUERY_NODE_AND, AR_QUERY_NODE_OR, AR_QUERY_NODE_NOT
};

struct ar_query_node {
    enum ar_query_node_kind kind;
    const char *columns;        /* TEXT: FTS5 column filter, NULL for every column */
    char *text;                 /* TEXT: the words as typed; DIRECTION: its value */
    bool prefix;                /* TEXT: last token is a prefix */
    bool has_lo, has_hi;
    int64_t lo, hi;             /* DATE: [lo, hi) local seconds; SIZE: [lo, hi] bytes */
    struct ar_query_node **kids;      /* AND, OR: two or more; NOT: one */
    size_t nkids;
};

struct ar_query {
    struct ar_query_node *root;
};

struct ar_query_field {
    const char *name;
    enum ar_query_node_kind kind;
    const char *columns;
};

static const struct ar_query_field ar_query_fields[] = {
    {"from", AR_QUERY_NODE_TEXT, "{sender from_}"},
    {"to", AR_QUERY_NODE_TEXT, "{recipients to_}"},
    {"cc", AR_QUERY_NODE_TEXT, "{cc}"},
    {"bcc", AR_QUERY_NODE_TEXT, "{bcc}"},
    {"subject", AR_QUERY_NODE_TEXT, "{subject}"},
    {"body", AR_QUERY_NODE_TEXT, "{body}"},
    {"attachment", AR_QUERY_NODE_TEXT, "{attachment}"},
    {"date", AR_QUERY_NODE_DATE, NULL},
    {"after", AR_QUERY_NODE_DATE, NULL},
    {"before", AR_QUERY_NODE_DATE, NULL},
    {"size", AR_QUERY_NODE_SIZE, NULL},
    {"direction", AR_QUERY_NODE_DIRECTION, NULL},
    {"has", AR_QUERY_NODE_HAS, NULL},
};

#define AR_QUERY_FIELD_LIST \
    "from, to, cc, bcc, subject, body, attachment, date, after, before, size, direction, has"

static const char *const ar_query_directions[] = {"inbound", "outbound", "internal", "unknown"};

/* Nodes. */

static struct ar_query_node *ar_query_node_new(enum ar_query_node_kind kind)
{
    struct ar_query_node *n = mk_xcalloc(1, sizeof(*n));

    n->kind = kind;
    return n;
}

static void ar_query_node_free(struct ar_query_node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        ar_query_node_free(n->kids[i]);
    free(n->kids);
    free(n->text);
    free(n);
}

static void ar_query_node_add(struct ar_query_node *n, struct ar_query_node *kid)
{
    n->kids = mk_xrealloc(n->kids, (n->nkids + 1) * sizeof(*n->kids));
    n->kids[n->nkids++] = kid;
}

/* a AND b, a OR b: lists stay flat. */
static struct ar_query_node *ar_query_node_join(enum ar_query_node_kind kind,
                                                struct ar_query_node *a, struct ar_query_node *b)
{
    struct ar_query_node *n = a;

    if (a->kind != kind) {
        n = ar_query_node_new(kind);
        ar_query_node_add(n, a);
    }
    if (b->kind == kind) {
        for (size_t i = 0; i < b->nkids; i++)
            ar_query_node_add(n, b->kids[i]);
        b->nkids = 0;
        ar_query_node_free(b);
    } else {
        ar_query_node_add(n, b);
    }
    return n;
}

/* NOT a; NOT NOT a is a. */
static struct ar_query_node *ar_query_node_not(struct ar_query_node *a)
{
    struct ar_query_node *n;

    if (a->kind == AR_QUERY_NODE_NOT) {
        n = a->kids[0];
        a->nkids = 0;
        ar_query_node_free(a);
        return n;
    }
    n = ar_query_node_new(AR_QUERY_NODE_NOT);
    ar_query_node_add(n, a);
    return n;
}

/* The lexer. */

enum ar_query_tok_kind {
    AR_QUERY_TOK_END, AR_QUERY_TOK_LPAREN, AR_QUERY_TOK_RPAREN, AR_QUERY_TOK_OR, AR_QUERY_TOK_AND,
    AR_QUERY_TOK_NOT, AR_QUERY_TOK_MINUS,
    AR_QUERY_TOK_TERM
};

struct ar_query_tok {
    enum ar_query_tok_kind kind;
    size_t off;                         /* where it starts, for messages */
    const struct ar_query_field *field;       /* TERM: NULL for a bare word */
    char *value;                        /* TERM: unquoted, without the '*' */
    bool prefix;
};

struct ar_query_parser {
    const char *text;
    size_t len, pos;
    struct ar_query_tok tok;
    int depth, terms;
    char *error;
};

/* Characters from the start to off, counted from 1: what a person sees. */
static size_t ar_query_position(const struct ar_query_parser *p, size_t off)
{
    size_t chars = 1;

    for (size_t i = 0; i < off && i < p->len; i++)
        if (((unsigned char) p->text[i] & 0xC0) != 0x80)
            chars++;
    return chars;
}

static void *ar_query_fail(struct ar_query_parser *p, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void *ar_query_fail(struct ar_query_parser *p, size_t off, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (p->error == NULL) {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        p->error = mk_xasprintf("position %zu: %s", ar_query_position(p, off), msg);
    }
    p->tok.kind = AR_QUERY_TOK_END;
    return NULL;
}

/* How much of a value to quote back: at most AR_QUERY_ECHO bytes, whole characters. */
static int ar_query_echo(const char *s, size_t n)
{
    if (n <= AR_QUERY_ECHO)
        return (int) n;
    n = AR_QUERY_ECHO;
    while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
        n--;
    return (int) n;
}

/* The length of the white space at s: ASCII, no-break and ideographic spaces. */
static size_t ar_query_space(const char *s, size_t left)
{
    const unsigned char *u = (const unsigned char *) s;

    if (left >= 1 && (u[0] == ' ' || (u[0] >= '\t' && u[0] <= '\r')))
        return 1;
    if (left >= 2 && u[0] == 0xC2 && u[1] == 0xA0)
        return 2;
    if (left >= 3 && u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x80)
        return 3;
    return 0;
}

static bool ar_query_delimiter(const struct ar_query_parser *p, size_t i)
{
    char c = p->text[i];

    return c == '(' || c == ')' || c == '"' || ar_query_space(p->text + i, p->len - i) > 0;
}

static const struct ar_query_field *ar_query_field_find(const char *name, size_t len)
{
    for (size_t i = 0; i < MK_ARRAY_LEN(ar_query_fields); i++)
        if (strlen(ar_query_fields[i].name) == len
            && strncasecmp(ar_query_fields[i].name, name, len) == 0)
            return &ar_query_fields[i];
    return NULL;
}

static bool ar_query_lex_quoted(struct ar_query_parser *p)
{
    size_t open = p->pos;
    const char *close = memchr(p->text + open + 1, '"', p->len - open - 1);

    if (close == NULL) {
        ar_query_fail(p, open, "unterminated quote");
        return false;
    }
    p->tok.kind = AR_QUERY_TOK_TERM;
    p->tok.value = mk_xstrndup(p->text + open + 1, (size_t) (close - p->text) - open - 1);
    p->pos = (size_t) (close - p->text) + 1;
    if (p->pos < p->len && p->text[p->pos] == '*') {
        p->tok.prefix = true;
        p->pos++;
    }
    return true;
}

/* "name:" at the start of a word, when name is letters only; *len is its length. */
static bool ar_query_field_name(const char *w, size_t n, size_t *len)
{
    size_t i = 0;

    while (i < n && i <= 16 && ((w[i] >= 'a' && w[i] <= 'z') || (w[i] >= 'A' && w[i] <= 'Z')))
        i++;
    *len = i;
    return i > 0 && i < n && w[i] == ':';
}

static bool ar_query_lex_word(struct ar_query_parser *p)
{
    size_t start = p->pos, end = start, name_len;
    const char *w = p->text + start;

    while (end < p->len && !ar_query_delimiter(p, end))
        end++;
    p->pos = end;
    p->tok.kind = AR_QUERY_TOK_TERM;
    if (end - start == 2 && memcmp(w, "OR", 2) == 0)
        p->tok.kind = AR_QUERY_TOK_OR;
    else if (end - start == 3 && memcmp(w, "AND", 3) == 0)
        p->tok.kind = AR_QUERY_TOK_AND;
    else if (end - start == 3 && memcmp(w, "NOT", 3) == 0)
        p->tok.kind = AR_QUERY_TOK_NOT;
    if (p->tok.kind != AR_QUERY_TOK_TERM)
        return true;
    if (ar_query_field_name(w, end - start, &name_len)) {
        p->tok.field = ar_query_field_find(w, name_len);
        if (p->tok.field == NULL) {
            ar_query_fail(p, start, "unknown field \"%.*s\" (fields: %s; put a value with "
                          "\":\" in quotes)", (int) name_len, w, AR_QUERY_FIELD_LIST);
            return false;
        }
        w += name_len + 1;
        if (w == p->text + end) {
            if (end < p->len && p->text[end] == '"')
                return ar_query_lex_quoted(p);
            ar_query_fail(p, start, "%s: needs a value", p->tok.field->name);
            return false;
        }
    }
    if (p->text[end - 1] == '*') {
        p->tok.prefix = true;
        end--;
    }
    if (w >= p->text + end) {
        ar_query_fail(p, start, "* must follow a word");
        return false;
    }
    p->tok.value = mk_xstrndup(w, (size_t) (p->text + end - w));
    return true;
}

/* Move to the next token; false (with p->error set) when the text is malformed. */
static bool ar_query_next(struct ar_query_parser *p)
{
    size_t n;

    free(p->tok.value);
    memset(&p->tok, 0, sizeof(p->tok));
    if (p->error)
        return false;
    while (p->pos < p->len && (n = ar_query_space(p->text + p->pos, p->len - p->pos)) > 0)
        p->pos += n;
    p->tok.off = p->pos;
    if (p->pos >= p->len) {
        p->tok.kind = AR_QUERY_TOK_END;
        return true;
    }
    switch (p->text[p->pos]) {
    case '(':
        p->tok.kind = AR_QUERY_TOK_LPAREN;
        p->pos++;
        return true;
    case ')':
        p->tok.kind = AR_QUERY_TOK_RPAREN;
        p->pos++;
        return true;
    case '-':
        p->tok.kind = AR_QUERY_TOK_MINUS;
        p->pos++;
        return true;
    case '"':
        return ar_query_lex_quoted(p);
    default:
        return ar_query_lex_word(p);
    }
}

/* Values of the structured fields. */

static int64_t ar_query_days(int64_t y, int64_t m, int64_t d)
{
    int64_t era, yoe, doy;

    y -= m <= 2;
    era = y / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

static int ar_query_month_days(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return days[m - 1];
}

/* Up to max digits at s; -1 when there are none. */
static int ar_query_digits(const char *s, size_t n, size_t *used, size_t max)
{
    int v = 0;
    size_t i = 0;

    while (i < n && i < max && s[i] >= '0' && s[i] <= '9')
        v = v * 10 + (s[i++] - '0');
    *used = i;
    return i ? v : -1;
}

/* YYYY, YYYY-MM or YYYY-MM-DD ('/' too): the days [*first, *last) it covers. */
static bool ar_query_period(const char *s, size_t n, int64_t *first, int64_t *last)
{
    int y, m = 0, d = 0;
    size_t used, i = 4;
    char sep;

    y = ar_query_digits(s, n, &used, 4);
    if (used != 4 || y < 1970)
        return false;
    if (i < n) {
        if (s[i] != '-' && s[i] != '/')
            return false;
        sep = s[i++];
        m = ar_query_digits(s + i, n - i, &used, 2);
        i += used;
        if (m < 1 || m > 12)
            return false;
        if (i < n) {
            if (s[i++] != sep)
                return false;
            d = ar_query_digits(s + i, n - i, &used, 2);
            i += used;
            if (d < 1 || d > ar_query_month_days(y, m) || i != n)
                return false;
        }
    }
    *first = ar_query_days(y, m ? m : 1, d ? d : 1);
    if (d)
        *last = *first + 1;
    else if (m)
        *last = m == 12 ? ar_query_days(y + 1, 1, 1) : ar_query_days(y, m + 1, 1);
    else
        *last = ar_query_days(y + 1, 1, 1);
    return true;
}

static bool ar_query_period_or_fail(struct ar_query_parser *p, const char *s, size_t n,
                                    int64_t *first, int64_t *last)
{
    if (ar_query_period(s, n, first, last))
        return true;
    ar_query_fail(p, p->tok.off, "date \"%.*s\": not a date (use 2026-03-01, 2026-03 or 2026)",
                  ar_query_echo(s, n), s);
    return false;
}

/* date:, after:, before: - a range of days, bounds in local seconds. */
static struct ar_query_node *ar_query_date(struct ar_query_parser *p)
{
    const char *v = p->tok.value, *dots = strstr(v, "..");
    const char *name = p->tok.field->name;
    struct ar_query_node *n = ar_query_node_new(AR_QUERY_NODE_DATE);
    size_t len = strlen(v);
    int64_t first = 0, last = 0;
    bool ok = true;

    if (strcmp(name, "after") == 0 || strcmp(name, "before") == 0) {
        ok = ar_query_period_or_fail(p, v, len, &first, &last);
        n->has_lo = name[0] == 'a';
        n->has_hi = !n->has_lo;
        n->lo = n->hi = first;
    } else if (v[0] == '>' || v[0] == '<') {
        bool eq = v[1] == '=';

        ok = ar_query_period_or_fail(p, v + 1 + eq, len - 1 - eq, &first, &last);
        n->has_lo = v[0] == '>';
        n->has_hi = !n->has_lo;
        n->lo = eq ? first : last;
        n->hi = eq ? last : first;
    } else if (dots) {
        size_t a = (size_t) (dots - v), b = len - a - 2;

        n->has_lo = a > 0;
        n->has_hi = b > 0;
        if (n->has_lo)
            ok = ar_query_period_or_fail(p, v, a, &n->lo, &last);
        if (ok && n->has_hi)
            ok = ar_query_period_or_fail(p, dots + 2, b, &first, &n->hi);
        if (ok && !n->has_lo && !n->has_hi) {
            ar_query_fail(p, p->tok.off, "date \"..\": give a start, an end or both");
            ok = false;
        }
        if (ok && n->has_lo && n->has_hi && n->lo >= n->hi) {
            ar_query_fail(p, p->tok.off, "date range \"%.*s\" ends before it starts",
                          ar_query_echo(v, len), v);
            ok = false;
        }
    } else {
        ok = ar_query_period_or_fail(p, v[0] == '=' ? v + 1 : v, len - (v[0] == '='),
                                     &n->lo, &n->hi);
        n->has_lo = n->has_hi = true;
    }
    if (!ok) {
        ar_query_node_free(n);
        return NULL;
    }
    n->lo *= AR_QUERY_DAY;
    n->hi *= AR_QUERY_DAY;
    return n;
}

/* 100, 100k, 1.5M, 2GB: bytes, powers of 1024. */
static bool ar_query_bytes(const char *s, size_t n, int64_t *bytes)
{
    int64_t whole = 0, frac = 0, scale = 1, unit = 1;
    size_t i = 0;

    while (i < n && s[i] >= '0' && s[i] <= '9' && whole < AR_QUERY_MAX_BYTES)
        whole = whole * 10 + (s[i++] - '0');
    if (i == 0)
        return false;
    if (i < n && s[i] == '.') {
        size_t start = ++i;

        while (i < n && s[i] >= '0' && s[i] <= '9' && scale < 1000000000) {
            frac = frac * 10 + (s[i++] - '0');
            scale *= 10;
        }
        if (i == start)
            return false;
    }
    if (i < n && strchr("kKmMgG", s[i]) != NULL) {
        unit = s[i] == 'k' || s[i] == 'K' ? 1024 : s[i] == 'm' || s[i] == 'M' ? 1 << 20 : 1 << 30;
        i++;
    }
    if (i < n && (s[i] == 'b' || s[i] == 'B'))
        i++;
    if (i != n || whole >= AR_QUERY_MAX_BYTES / unit)
        return false;
    *bytes = whole * unit + frac * unit / scale;
    return true;
}

static bool ar_query_bytes_or_fail(struct ar_query_parser *p, const char *s, size_t n,
                                   int64_t *bytes)
{
    if (ar_query_bytes(s, n, bytes))
        return true;
    ar_query_fail(p, p->tok.off, "size \"%.*s\": not a size (use 100k, 1.5M or 2G)",
                  ar_query_echo(s, n), s);
    return false;
}

/* size: - a range of bytes, both bounds included. */
static struct ar_query_node *ar_query_size(struct ar_query_parser *p)
{
    const char *v = p->tok.value, *dots = strstr(v, "..");
    struct ar_query_node *n = ar_query_node_new(AR_QUERY_NODE_SIZE);
    size_t len = strlen(v);
    bool ok;

    if (v[0] == '>' || v[0] == '<') {
        bool eq = v[1] == '=';
        int64_t b = 0;

        ok = ar_query_bytes_or_fail(p, v + 1 + eq, len - 1 - eq, &b);
        n->has_lo = v[0] == '>';
        n->has_hi = !n->has_lo;
        n->lo = eq ? b : b + 1;
        n->hi = eq ? b : b - 1;
    } else if (dots) {
        size_t a = (size_t) (dots - v), b = len - a - 2;

        n->has_lo = a > 0;
        n->has_hi = b > 0;
        ok = (!n->has_lo || ar_query_bytes_or_fail(p, v, a, &n->lo))
             && (!n->has_hi || ar_query_bytes_or_fail(p, dots + 2, b, &n->hi));
        if (ok && !n->has_lo && !n->has_hi) {
            ar_query_fail(p, p->tok.off, "size \"..\": give a smallest, a largest or both");
            ok = false;
        }
        if (ok && n->has_lo && n->has_hi && n->lo > n->hi) {
            ar_query_fail(p, p->tok.off, "size range \"%.*s\" ends before it starts",
                          ar_query_echo(v, len), v);
            ok = false;
        }
    } else {
        ar_query_fail(p, p->tok.off, "size \"%.*s\": say size:>N, size:<N or size:N..M",
                      ar_query_echo(v, len), v);
        ok = false;
    }
    if (!ok) {
        ar_query_node_free(n);
        return NULL;
    }
    return n;
}

static struct ar_query_node *ar_query_direction(struct ar_query_parser *p)
{
    const char *v = p->tok.value;
    struct ar_query_node *n;

    for (size_t i = 0; i < MK_ARRAY_LEN(ar_query_directions); i++)
        if (strcasecmp(v, ar_query_directions[i]) == 0) {
            n = ar_query_node_new(AR_QUERY_NODE_DIRECTION);
            n->text = mk_xstrdup(ar_query_directions[i]);
            return n;
        }
    return ar_query_fail(p, p->tok.off,
                         "direction \"%.*s\": use inbound, outbound, internal or unknown",
                         ar_query_echo(v, strlen(v)), v);
}

static struct ar_query_node *ar_query_has(struct ar_query_parser *p)
{
    const char *v = p->tok.value;

    if (strcasecmp(v, "attachment") == 0 || strcasecmp(v, "attachments") == 0)
        return ar_query_node_new(AR_QUERY_NODE_HAS);
    return ar_query_fail(p, p->tok.off, "has \"%.*s\": only has:attachment is known",
                         ar_query_echo(v, strlen(v)), v);
}

struct ar_query_count {
    int tokens;
    bool cjk;
};

static int ar_query_count_token(void *arg, const char *token, size_t len, int start, int end)
{
    struct ar_query_count *c = arg;

    (void) start;
    (void) end;
    c->cjk = ++c->tokens == 1 && ar_fts_cjk(token, len);
    return c->tokens > 1;
}

/* A word or phrase: it must hold something to search for. */
static struct ar_query_node *ar_query_text(struct ar_query_parser *p)
{
    struct ar_query_count count = {0, false};
    const char *v = p->tok.value;
    struct ar_query_node *n;

    ar_tokenize(v, strlen(v), ar_query_count_token, &count);
    if (count.tokens == 0)
        return ar_query_fail(p, p->tok.off, "\"%.*s\" has no words to search for",
                             ar_query_echo(v, strlen(v)), v);
    n = ar_query_node_new(AR_QUERY_NODE_TEXT);
    n->columns = p->tok.field ? p->tok.field->columns : NULL;
    n->text = mk_xstrdup(v);
    n->prefix = p->tok.prefix || count.cjk;
    return n;
}

static struct ar_query_node *ar_query_leaf(struct ar_query_parser *p)
{
    const struct ar_query_field *f = p->tok.field;

    if (++p->terms > AR_QUERY_MAX_TERMS)
        return ar_query_fail(p, p->tok.off, "more than %d terms", AR_QUERY_MAX_TERMS);
    if (f && f->kind != AR_QUERY_NODE_TEXT && p->tok.prefix)
        return ar_query_fail(p, p->tok.off, "%s: does not take *", f->name);
    switch (f ? f->kind : AR_QUERY_NODE_TEXT) {
    case AR_QUERY_NODE_DATE:
        return ar_query_date(p);
    case AR_QUERY_NODE_SIZE:
        return ar_query_size(p);
    case AR_QUERY_NODE_DIRECTION:
        return ar_query_direction(p);
    case AR_QUERY_NODE_HAS:
        return ar_query_has(p);
    default:
        return ar_query_text(p);
    }
}

/* The parser: recursive descent, depth bounded by AR_QUERY_MAX_DEPTH. */

static struct ar_query_node *ar_query_or(struct ar_query_parser *p);

static bool ar_query_starts_term(const struct ar_query_parser *p)
{
    enum ar_query_tok_kind k = p->tok.kind;

    return k == AR_QUERY_TOK_TERM || k == AR_QUERY_TOK_LPAREN || k == AR_QUERY_TOK_NOT
           || k == AR_QUERY_TOK_MINUS;
}

static bool ar_query_deeper(struct ar_query_parser *p, size_t off)
{
    if (++p->depth <= AR_QUERY_MAX_DEPTH)
        return true;
    ar_query_fail(p, off, "nested too deeply (at most %d levels)", AR_QUERY_MAX_DEPTH);
    return false;
}

static struct ar_query_node *ar_query_group(struct ar_query_parser *p)
{
    size_t open = p->tok.off;
    struct ar_query_node *n;

    if (!ar_query_deeper(p, open) || !ar_query_next(p))
        return NULL;
    if (p->tok.kind == AR_QUERY_TOK_RPAREN)
        return ar_query_fail(p, open, "empty parentheses");
    if (p->tok.kind == AR_QUERY_TOK_END)
        return ar_query_fail(p, open, "unbalanced parenthesis");
    if ((n = ar_query_or(p)) == NULL)
        return NULL;
    if (p->tok.kind != AR_QUERY_TOK_RPAREN) {
        ar_query_node_free(n);
        return ar_query_fail(p, open, "unbalanced parenthesis");
    }
    p->depth--;
    if (!ar_query_next(p)) {
        ar_query_node_free(n);
        return NULL;
    }
    return n;
}

static struct ar_query_node *ar_query_primary(struct ar_query_parser *p)
{
    struct ar_query_node *n;

    switch (p->tok.kind) {
    case AR_QUERY_TOK_LPAREN:
        return ar_query_group(p);
    case AR_QUERY_TOK_TERM:
        if ((n = ar_query_leaf(p)) != NULL && !ar_query_next(p)) {
            ar_query_node_free(n);
            n = NULL;
        }
        return n;
    case AR_QUERY_TOK_OR:
    case AR_QUERY_TOK_AND:
        return ar_query_fail(p, p->tok.off, "%s needs a term on each side",
                             p->tok.kind == AR_QUERY_TOK_OR ? "OR" : "AND");
    case AR_QUERY_TOK_RPAREN:
        return ar_query_fail(p, p->tok.off, "unbalanced parenthesis");
    default:
        return ar_query_fail(p, p->tok.off, "a term is missing");
    }
}

static struct ar_query_node *ar_query_unary(struct ar_query_parser *p)
{
    size_t at = p->tok.off;
    const char *op = p->tok.kind == AR_QUERY_TOK_NOT ? "NOT" : "-";
    struct ar_query_node *kid;

    if (p->tok.kind != AR_QUERY_TOK_NOT && p->tok.kind != AR_QUERY_TOK_MINUS)
        return ar_query_primary(p);
    if (!ar_query_deeper(p, at) || !ar_query_next(p))
        return NULL;
    if (!ar_query_starts_term(p))
        return ar_query_fail(p, at, "%s must be followed by a term", op);
    if ((kid = ar_query_unary(p)) == NULL)
        return NULL;
    p->depth--;
    return ar_query_node_not(kid);
}

static struct ar_query_node *ar_query_and(struct ar_query_parser *p)
{
    struct ar_query_node *n = ar_query_unary(p), *kid;

    while (n) {
        if (p->tok.kind == AR_QUERY_TOK_AND) {
            size_t at = p->tok.off;

            if (!ar_query_next(p) || !ar_query_starts_term(p)) {
                ar_query_node_free(n);
                return ar_query_fail(p, at, "AND needs a term on each side");
            }
        } else if (!ar_query_starts_term(p)) {
            break;
        }
        if ((kid = ar_query_unary(p)) == NULL) {
            ar_query_node_free(n);
            return NULL;
        }
        n = ar_query_node_join(AR_QUERY_NODE_AND, n, kid);
    }
    return n;
}

static struct ar_query_node *ar_query_or(struct ar_query_parser *p)
{
    struct ar_query_node *n = ar_query_and(p), *kid;

    while (n && p->tok.kind == AR_QUERY_TOK_OR) {
        size_t at = p->tok.off;

        if (!ar_query_next(p) || !ar_query_starts_term(p)) {
            ar_query_node_free(n);
            return ar_query_fail(p, at, "OR needs a term on each side");
        }
        if ((kid = ar_query_and(p)) == NULL) {
            ar_query_node_free(n);
            return NULL;
        }
        n = ar_query_node_join(AR_QUERY_NODE_OR, n, kid);
    }
    return n;
}

struct ar_query *ar_query_parse(const char *text, char **error)
{
    struct ar_query_parser p = {.text = text, .len = strlen(text)};
    struct ar_query_node *root = NULL;
    struct ar_query *q;

    *error = NULL;
    if (p.len > AR_QUERY_MAX_LEN) {
        *error = mk_xasprintf("the query is longer than %d bytes", AR_QUERY_MAX_LEN);
        return NULL;
    }
    if (ar_query_next(&p)) {
        if (p.tok.kind == AR_QUERY_TOK_END)
            p.error = mk_xstrdup("empty query");
        else if ((root = ar_query_or(&p)) != NULL && p.tok.kind != AR_QUERY_TOK_END)
            ar_query_fail(&p, p.tok.off, "unbalanced parenthesis");
    }
    free(p.tok.value);
    if (p.error) {
        ar_query_node_free(root);
        *error = p.error;
        return NULL;
    }
    q = mk_xmalloc(sizeof(*q));
    q->root = root;
    return q;
}

void ar_query_free(struct ar_query *q)
{
    if (q == NULL)
        return;
    ar_query_node_free(q->root);
    free(q);
}

/* The compiler. */

struct ar_query_buf {
    char *s;
    size_t len, cap;
};

static void ar_query_buf_add(struct ar_query_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = mk_xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void ar_query_buf_str(struct ar_query_buf *b, const char *s)
{
    ar_query_buf_add(b, s, strlen(s));
}

struct ar_query_build {
    struct ar_query_buf sql;
    struct ar_sql *out;
    size_t cap;
    long offset;
};

static struct ar_sql_param *ar_query_sql_param(struct ar_query_build *c, enum ar_sql_type type)
{
    struct ar_sql_param *param;

    if (c->out->nparams == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->out->params = mk_xrealloc(c->out->params, c->cap * sizeof(*c->out->params));
    }
    param = &c->out->params[c->out->nparams++];
    memset(param, 0, sizeof(*param));
    param->type = type;
    return param;
}

/* "?" in the SQL, with its value. */
static void ar_query_sql_int(struct ar_query_build *c, int64_t value)
{
    ar_query_buf_str(&c->sql, "?");
    ar_query_sql_param(c, AR_SQL_INT)->value = value;
}

static void ar_query_sql_text(struct ar_query_build *c, char *taken)
{
    ar_query_buf_str(&c->sql, "?");
    ar_query_sql_param(c, AR_SQL_TEXT)->text = taken;
}

/*
 * What FTS5 can evaluate alone: words and phrases, OR of those, AND of
 * those with at least one not negated (FTS5's NOT is binary: a NOT b).
 */
static bool ar_query_match_ok(const struct ar_query_node *n)
{
    size_t positive = 0;

    switch (n->kind) {
    case AR_QUERY_NODE_TEXT:
        return true;
    case AR_QUERY_NODE_OR:
        for (size_t i = 0; i < n->nkids; i++)
            if (!ar_query_match_ok(n->kids[i]))
                return false;
        return true;
    case AR_QUERY_NODE_AND:
        for (size_t i = 0; i < n->nkids; i++) {
            const struct ar_query_node *kid = n->kids[i];

            if (!ar_query_match_ok(kid->kind == AR_QUERY_NODE_NOT ? kid->kids[0] : kid))
                return false;
            positive += kid->kind != AR_QUERY_NODE_NOT;
        }
        return positive > 0;
    default:
        return false;
    }
}

/* The part a conjunct plays: in the MATCH, taken out of it by NOT, or in SQL. */
enum ar_query_role { AR_QUERY_ROLE_SQL, AR_QUERY_ROLE_MATCH, AR_QUERY_ROLE_NOT_MATCH };

static enum ar_query_role ar_query_role_of(const struct ar_query_node *n)
{
    if (n->kind == AR_QUERY_NODE_NOT)
        return ar_query_match_ok(n->kids[0]) ? AR_QUERY_ROLE_NOT_MATCH : AR_QUERY_ROLE_SQL;
    return ar_query_match_ok(n) ? AR_QUERY_ROLE_MATCH : AR_QUERY_ROLE_SQL;
}

static size_t ar_query_role_count(struct ar_query_node *const *kids, size_t n,
                                  enum ar_query_role role)
{
    size_t count = 0;

    for (size_t i = 0; i < n; i++)
        count += ar_query_role_of(kids[i]) == role;
    return count;
}

static void ar_query_match_expr(struct ar_query_buf *b, const struct ar_query_node *n);

/* The kids that play role, as FTS5 expressions joined by op. */
static void ar_query_match_join(struct ar_query_buf *b, struct ar_query_node *const *kids, size_t n,
                                enum ar_query_role role, const char *op)
{
    bool first = true;

    ar_query_buf_str(b, "(");
    for (size_t i = 0; i < n; i++) {
        if (ar_query_role_of(kids[i]) != role)
            continue;
        if (!first)
            ar_query_buf_str(b, op);
        first = false;
        ar_query_match_expr(b, role == AR_QUERY_ROLE_NOT_MATCH ? kids[i]->kids[0] : kids[i]);
    }
    ar_query_buf_str(b, ")");
}

/* The MATCH expression of conjuncts: the positive ones ANDed, minus the negated ones. */
static void ar_query_match_and(struct ar_query_buf *b, struct ar_query_node *const *kids, size_t n)
{
    bool negated = ar_query_role_count(kids, n, AR_QUERY_ROLE_NOT_MATCH) > 0;

    if (negated)
        ar_query_buf_str(b, "(");
    ar_query_match_join(b, kids, n, AR_QUERY_ROLE_MATCH, " AND ");
    if (negated) {
        ar_query_buf_str(b, " NOT ");
        ar_query_match_join(b, kids, n, AR_QUERY_ROLE_NOT_MATCH, " OR ");
        ar_query_buf_str(b, ")");
    }
}

/* Every typed character goes inside an FTS5 string, which the tokenizer alone reads. */
static void ar_query_match_string(struct ar_query_buf *b, const char *s)
{
    ar_query_buf_str(b, "\"");
    for (const char *q; (q = strchr(s, '"')) != NULL; s = q + 1) {
        ar_query_buf_add(b, s, (size_t) (q - s));
        ar_query_buf_str(b, "\"\"");
    }
    ar_query_buf_str(b, s);
    ar_query_buf_str(b, "\"");
}

static void ar_query_match_expr(struct ar_query_buf *b, const struct ar_query_node *n)
{
    switch (n->kind) {
    case AR_QUERY_NODE_TEXT:
        if (n->columns) {
            ar_query_buf_str(b, n->columns);
            ar_query_buf_str(b, " : ");
        }
        ar_query_match_string(b, n->text);
        if (n->prefix)
            ar_query_buf_str(b, " *");
        break;
    case AR_QUERY_NODE_OR:
        ar_query_match_join(b, n->kids, n->nkids, AR_QUERY_ROLE_MATCH, " OR ");
        break;
    default:
        ar_query_match_and(b, n->kids, n->nkids);
        break;
    }
}

/* "m.id [NOT] IN (SELECT rowid FROM fts WHERE fts MATCH ?)" */
static void ar_query_sql_in_fts(struct ar_query_build *c, bool in, struct ar_query_buf *match)
{
    ar_query_buf_str(&c->sql, in ? "m.id IN " : "m.id NOT IN ");
    ar_query_buf_str(&c->sql, "(SELECT rowid FROM fts WHERE fts MATCH ");
    ar_query_sql_text(c, match->s);
    ar_query_buf_str(&c->sql, ")");
}

static void ar_query_sql_cond(struct ar_query_build *c, const struct ar_query_node *n,
                              const char *id);

/* Conjuncts (an AND, or the whole query), joined with " AND " after sep. */
static void ar_query_sql_and(struct ar_query_build *c, struct ar_query_node *const *kids, size_t n,
                             const char *sep, bool matched, const char *id)
{
    size_t positive = ar_query_role_count(kids, n, AR_QUERY_ROLE_MATCH);
    size_t negative = ar_query_role_count(kids, n, AR_QUERY_ROLE_NOT_MATCH);
    struct ar_query_buf match = {NULL, 0, 0};

    if (!matched && (positive || negative)) {
        if (positive)
            ar_query_match_and(&match, kids, n);
        else
            ar_query_match_join(&match, kids, n, AR_QUERY_ROLE_NOT_MATCH, " OR ");
        ar_query_buf_str(&c->sql, sep);
        ar_query_sql_in_fts(c, positive > 0, &match);
        sep = " AND ";
    }
    for (size_t i = 0; i < n; i++)
        if (ar_query_role_of(kids[i]) == AR_QUERY_ROLE_SQL) {
            ar_query_buf_str(&c->sql, sep);
            ar_query_sql_cond(c, kids[i], id);
            sep = " AND ";
        }
}

/* An OR: the alternatives FTS5 can take in one MATCH, then the others. */
static void ar_query_sql_or(struct ar_query_build *c, const struct ar_query_node *n)
{
    size_t matched = ar_query_role_count(n->kids, n->nkids, AR_QUERY_ROLE_MATCH);
    const char *sep = "(";
    struct ar_query_buf match = {NULL, 0, 0};

    if (matched) {
        ar_query_match_join(&match, n->kids, n->nkids, AR_QUERY_ROLE_MATCH, " OR ");
        ar_query_buf_str(&c->sql, sep);
        ar_query_sql_in_fts(c, true, &match);
        sep = " OR ";
    }
    for (size_t i = 0; i < n->nkids; i++)
        if (ar_query_role_of(n->kids[i]) != AR_QUERY_ROLE_MATCH) {
            ar_query_buf_str(&c->sql, sep);
            ar_query_sql_cond(c, n->kids[i], "m.id");
            sep = " OR ";
        }
    ar_query_buf_str(&c->sql, ")");
}

static void ar_query_sql_range(struct ar_query_build *c, const struct ar_query_node *n,
                               const char *column, const char *lo_op, const char *hi_op, int64_t lo,
                               int64_t hi)
{
    ar_query_buf_str(&c->sql, "(");
    if (n->has_lo) {
        ar_query_buf_str(&c->sql, column);
        ar_query_buf_str(&c->sql, lo_op);
        ar_query_sql_int(c, lo);
    }
    if (n->has_lo && n->has_hi)
        ar_query_buf_str(&c->sql, " AND ");
    if (n->has_hi) {
        ar_query_buf_str(&c->sql, column);
        ar_query_buf_str(&c->sql, hi_op);
        ar_query_sql_int(c, hi);
    }
    ar_query_buf_str(&c->sql, ")");
}

/* One condition in SQL; id is the column that holds messages.id here. */
static void ar_query_sql_cond(struct ar_query_build *c, const struct ar_query_node *n,
                              const char *id)
{
    struct ar_query_buf match = {NULL, 0, 0};

    if (ar_query_match_ok(n)) {
        ar_query_match_expr(&match, n);
        ar_query_sql_in_fts(c, true, &match);
        return;
    }
    switch (n->kind) {
    case AR_QUERY_NODE_DATE:
        ar_query_sql_range(c, n, id, " >= ", " < ",
                           (n->lo - c->offset) * AR_QUERY_ID_PER_SECOND,
                           (n->hi - c->offset) * AR_QUERY_ID_PER_SECOND);
        break;
    case AR_QUERY_NODE_SIZE:
        ar_query_sql_range(c, n, "m.size", " >= ", " <= ", n->lo, n->hi);
        break;
    case AR_QUERY_NODE_DIRECTION:
        ar_query_buf_str(&c->sql, "m.direction = ");
        ar_query_sql_text(c, mk_xstrdup(n->text));
        break;
    case AR_QUERY_NODE_HAS:
        ar_query_buf_str(&c->sql, "m.attachments > 0");
        break;
    case AR_QUERY_NODE_NOT:
        ar_query_buf_str(&c->sql, "NOT (");
        ar_query_sql_cond(c, n->kids[0], "m.id");
        ar_query_buf_str(&c->sql, ")");
        break;
    case AR_QUERY_NODE_OR:
        ar_query_sql_or(c, n);
        break;
    default:                                    /* AND */
        ar_query_sql_and(c, n->kids, n->nkids, "(", false, "m.id");
        ar_query_buf_str(&c->sql, ")");
        break;
    }
}

static void ar_query_sql_scope(struct ar_query_build *c, const char *scope_sql)
{
    if (scope_sql && *scope_sql) {
        ar_query_buf_str(&c->sql, "(");
        ar_query_buf_str(&c->sql, scope_sql);
        ar_query_buf_str(&c->sql, ") AND ");
    }
}

/*
 * One SELECT of the ids that satisfy every conjunct. When one is text,
 * FTS5 drives: it walks its index newest first and the rest is checked
 * on each hit. Otherwise messages are scanned by id, newest first.
 * An arm of a UNION has no ORDER BY of its own.
 */
static void ar_query_sql_select(struct ar_query_build *c, struct ar_query_node *const *kids,
                                size_t n, const char *scope_sql, bool arm)
{
    if (ar_query_role_count(kids, n, AR_QUERY_ROLE_MATCH) > 0) {
        struct ar_query_buf match = {NULL, 0, 0};

        ar_query_buf_str(&c->sql, "SELECT fts.rowid AS id FROM fts CROSS JOIN messages AS m "
                         "ON m.id = fts.rowid WHERE ");
        ar_query_sql_scope(c, scope_sql);
        ar_query_buf_str(&c->sql, "fts MATCH ");
        ar_query_match_and(&match, kids, n);
        ar_query_sql_text(c, match.s);
        ar_query_buf_str(&c->sql, " AND m.hidden = 0");
        ar_query_sql_and(c, kids, n, " AND ", true, "fts.rowid");
        if (!arm)
            ar_query_buf_str(&c->sql, " ORDER BY fts.rowid DESC");
    } else {
        ar_query_buf_str(&c->sql, "SELECT m.id AS id FROM messages AS m WHERE ");
        ar_query_sql_scope(c, scope_sql);
        ar_query_buf_str(&c->sql, "m.hidden = 0");
        ar_query_sql_and(c, kids, n, " AND ", false, "m.id");
        if (!arm)
            ar_query_buf_str(&c->sql, " ORDER BY m.id DESC");
    }
}

/* An alternative FTS5 can drive: text, or an AND with text among its conjuncts. */
static bool ar_query_sql_driven(const struct ar_query_node *n)
{
    return ar_query_match_ok(n)
           || (n->kind == AR_QUERY_NODE_AND
               && ar_query_role_count(n->kids, n->nkids, AR_QUERY_ROLE_MATCH) > 0);
}

/*
 * With no text conjunct, the first OR that has an alternative FTS5 can
 * drive is split into a UNION: one arm for its text alternatives, one
 * per AND with text, one for the rest, each ANDed with the other
 * conjuncts. SQLite merges arms that each come newest first, and stops
 * after a page, instead of materializing every hit of the text.
 */
static size_t ar_query_sql_split(struct ar_query_node *const *kids, size_t n)
{
    if (ar_query_role_count(kids, n, AR_QUERY_ROLE_MATCH) > 0)
        return n;
    for (size_t i = 0; i < n; i++)
        if (kids[i]->kind == AR_QUERY_NODE_OR)
            for (size_t k = 0; k < kids[i]->nkids; k++)
                if (ar_query_sql_driven(kids[i]->kids[k]))
                    return i;
    return n;
}

/* One arm: the alternative (its conjuncts, when an AND) with every conjunct but the split one. */
static void ar_query_sql_arm(struct ar_query_build *c, struct ar_query_node *alt,
                             struct ar_query_node *const *kids, size_t n, size_t split,
                             const char *scope_sql)
{
    size_t nalt = alt->kind == AR_QUERY_NODE_AND ? alt->nkids : 1, len = 0;
    struct ar_query_node **arm = mk_xmalloc((nalt + n) * sizeof(*arm));

    if (c->sql.len > 0)
        ar_query_buf_str(&c->sql, " UNION ");
    for (size_t i = 0; i < nalt; i++)
        arm[len++] = alt->kind == AR_QUERY_NODE_AND ? alt->kids[i] : alt;
    for (size_t i = 0; i < n; i++)
        if (i != split)
            arm[len++] = kids[i];
    ar_query_sql_select(c, arm, len, scope_sql, true);
    free(arm);
}

static void ar_query_sql_union(struct ar_query_build *c, struct ar_query_node *const *kids,
                               size_t n, size_t split, const char *scope_sql)
{
    const struct ar_query_node *or = kids[split];
    struct ar_query_node text = {.kind = AR_QUERY_NODE_OR}, rest = {.kind = AR_QUERY_NODE_OR};

    text.kids = mk_xmalloc(or->nkids * sizeof(*text.kids));
    rest.kids = mk_xmalloc(or->nkids * sizeof(*rest.kids));
    for (size_t i = 0; i < or->nkids; i++) {
        if (ar_query_match_ok(or->kids[i]))
            text.kids[text.nkids++] = or->kids[i];
        else if (!ar_query_sql_driven(or->kids[i]))
            rest.kids[rest.nkids++] = or->kids[i];
    }
    if (text.nkids)
        ar_query_sql_arm(c, text.nkids == 1 ? text.kids[0] : &text, kids, n, split, scope_sql);
    for (size_t i = 0; i < or->nkids; i++)
        if (!ar_query_match_ok(or->kids[i]) && ar_query_sql_driven(or->kids[i]))
            ar_query_sql_arm(c, or->kids[i], kids, n, split, scope_sql);
    if (rest.nkids)
        ar_query_sql_arm(c, rest.nkids == 1 ? rest.kids[0] : &rest, kids, n, split, scope_sql);
    ar_query_buf_str(&c->sql, " ORDER BY 1 DESC");
    free(text.kids);
    free(rest.kids);
}

int ar_query_compile(const struct ar_query *q, long utc_offset, const char *scope_sql,
                     struct ar_sql *out, char **error)
{
    struct ar_query_build c = {.out = out, .offset = utc_offset};
    struct ar_query_node *const *kids;
    size_t n, split;

    memset(out, 0, sizeof(*out));
    *error = NULL;
    if (q == NULL || q->root == NULL) {
        *error = mk_xstrdup("no query to compile");
        return -1;
    }
    if (utc_offset < -AR_QUERY_DAY || utc_offset > AR_QUERY_DAY) {
        *error = mk_xasprintf("UTC offset %ld: more than a day", utc_offset);
        return -1;
    }
    kids = q->root->kind == AR_QUERY_NODE_AND ? q->root->kids : &q->root;
    n = q->root->kind == AR_QUERY_NODE_AND ? q->root->nkids : 1;
    if ((split = ar_query_sql_split(kids, n)) < n)
        ar_query_sql_union(&c, kids, n, split, scope_sql);
    else
        ar_query_sql_select(&c, kids, n, scope_sql, false);
    ar_query_buf_str(&c.sql, " LIMIT ? OFFSET ?");
    out->sql = c.sql.s;
    return 0;
}

int ar_sql_bind(sqlite3_stmt *st, const struct ar_sql *s, int first_index)
{
    for (size_t i = 0; i < s->nparams; i++) {
        const struct ar_sql_param *param = &s->params[i];
        int index = first_index + (int) i, rc;

        if (param->type == AR_SQL_TEXT)
            rc = sqlite3_bind_text(st, index, param->text, -1, SQLITE_TRANSIENT);
        else
            rc = sqlite3_bind_int64(st, index, param->value);
        if (rc != SQLITE_OK)
            return -1;
    }
    return first_index + (int) s->nparams;
}

void ar_sql_free(struct ar_sql *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nparams; i++)
        free(s->params[i].text);
    free(s->params);
    free(s->sql);
    memset(s, 0, sizeof(*s));
}
