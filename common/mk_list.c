/*
 * mk_list - block and allow lists. See mk_list.h.
 */
#include "config.h"

#define PCRE2_CODE_UNIT_WIDTH 8

#include <ctype.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_hash.h"
#include "mk_list.h"
#include "mk_log.h"
#include "mk_util.h"

/* Bounds on what one pattern may cost per match. */
#define MK_LIST_PCRE_MATCH_LIMIT	100000
#define MK_LIST_PCRE_DEPTH_LIMIT	10000
#define MK_LIST_MAX_ERRORS		20

struct mk_list_pattern {
    pcre2_code *code;
    struct mk_rule *rule;
};

struct mk_list {
    enum mk_list_kind kind;
    char *source;
    struct mk_rule **rules;             /* every entry, owned here */
    size_t nrules, rules_cap;
    struct mk_cidr_set *networks;       /* clients */
    struct mk_hash *addresses;          /* user@domain */
    struct mk_hash *local_parts;        /* user@ */
    struct mk_hash *domains_exact;      /* @domain */
    struct mk_hash *domains_tree;       /* domain: itself and below */
    struct mk_hash *domains_below;      /* .domain: below only */
    struct mk_rule *null_sender;        /* <> */
    struct mk_list_pattern *patterns;
    size_t npatterns;
    pcre2_match_context *match_ctx;
};

const struct mk_rule mk_list_match_failed = {"pattern match failed", -1};

struct mk_list_build {
    struct mk_list *list;
    unsigned flags;
    char *errors;
    size_t nerrors;
};

static void mk_list_error(struct mk_list_build *b, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void mk_list_error(struct mk_list_build *b, int line, const char *fmt, ...)
{
    char msg[512], *joined;
    va_list ap;

    if (++b->nerrors > MK_LIST_MAX_ERRORS)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    joined = mk_xasprintf("%s%s%s:%d: %s", b->errors ? b->errors : "", b->errors ? "\n" : "",
                          b->list->source, line, msg);
    free(b->errors);
    b->errors = joined;
}

static struct mk_list *mk_list_new(const char *source, enum mk_list_kind kind)
{
    struct mk_list *list = mk_xcalloc(1, sizeof(*list));

    list->kind = kind;
    list->source = mk_xstrdup(source);
    if (kind == MK_LIST_CLIENTS) {
        list->networks = mk_cidr_set_create();
    } else {
        list->addresses = mk_hash_create(NULL);
        list->local_parts = mk_hash_create(NULL);
        list->domains_exact = mk_hash_create(NULL);
        list->domains_tree = mk_hash_create(NULL);
        list->domains_below = mk_hash_create(NULL);
    }
    return list;
}

static struct mk_rule *mk_list_rule(struct mk_list *list, int line)
{
    struct mk_rule *rule = mk_xmalloc(sizeof(*rule));

    rule->source = list->source;
    rule->line = line;
    if (list->nrules == list->rules_cap) {
        list->rules_cap = list->rules_cap ? list->rules_cap * 2 : 16;
        list->rules = mk_xrealloc(list->rules, list->rules_cap * sizeof(*list->rules));
    }
    list->rules[list->nrules++] = rule;
    return rule;
}

/* Insert unless present: the first line that names an entry is the one reported. */
static void mk_list_hash_add(struct mk_hash *h, const char *key, struct mk_rule *rule)
{
    if (mk_hash_find(h, key, strlen(key)) == NULL)
        mk_hash_set(h, key, strlen(key), rule);
}

static void mk_list_add_pattern(struct mk_list_build *b, int line, const char *entry)
{
    const char *close = strrchr(entry, '/');
    /* Addresses come from the network: a pattern must match bytes that are not UTF-8 too. */
    uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    struct mk_list *list = b->list;
    pcre2_code *code;
    int errcode;
    PCRE2_SIZE erroffset;

    if (b->flags & MK_LIST_NO_PATTERNS) {
        mk_list_error(b, line, "patterns are not allowed in this list");
        return;
    }
    if (close == entry) {
        mk_list_error(b, line, "pattern has no closing '/'");
        return;
    }
    for (const char *f = close + 1; *f; f++) {
        if (*f == 'i')
            options |= PCRE2_CASELESS;
        else if (*f == 'x')
            options |= PCRE2_EXTENDED;
        else {
            mk_list_error(b, line, "unknown pattern flag '%c' (use i or x)", *f);
            return;
        }
    }
    code = pcre2_compile((PCRE2_SPTR) entry + 1, (PCRE2_SIZE) (close - entry - 1), options,
                         &errcode, &erroffset, NULL);
    if (code == NULL) {
        PCRE2_UCHAR msg[256];

        pcre2_get_error_message(errcode, msg, sizeof(msg));
        mk_list_error(b, line, "bad pattern at offset %zu: %s", (size_t) erroffset, (char *) msg);
        return;
    }
    (void) pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  /* interpreted if JIT is unavailable */
    list->patterns = mk_xrealloc(list->patterns, (list->npatterns + 1) * sizeof(*list->patterns));
    list->patterns[list->npatterns].code = code;
    list->patterns[list->npatterns].rule = mk_list_rule(list, line);
    list->npatterns++;
}

static void mk_list_add_sender(struct mk_list_build *b, int line, const char *entry)
{
    struct mk_list *list = b->list;
    size_t len = strlen(entry);
    char *lower;

    if (entry[0] == '/') {
        mk_list_add_pattern(b, line, entry);
        return;
    }
    if (strcmp(entry, "<>") == 0) {
        if (list->null_sender == NULL)
            list->null_sender = mk_list_rule(list, line);
        return;
    }
    lower = mk_xstrdup(entry);
    mk_str_lower(lower);
    if (lower[0] == '@' || lower[0] == '.') {
        if (!mk_domain_valid(lower + 1))
            mk_list_error(b, line, "'%s' is not a valid domain", lower + 1);
        else
            mk_list_hash_add(lower[0] == '@' ? list->domains_exact : list->domains_below,
                             lower + 1, mk_list_rule(list, line));
    } else if (len > 1 && lower[len - 1] == '@') {
        if (strchr(lower, '@') != lower + len - 1 || strpbrk(lower, "\" \t") != NULL)
            mk_list_error(b, line, "'%s' is not a valid local part", lower);
        else
            mk_list_hash_add(list->local_parts, lower, mk_list_rule(list, line));
    } else if (strchr(lower, '@') != NULL) {
        char *norm = mk_addr_normalize(lower);
        const char *domain = norm ? mk_addr_domain(norm) : NULL;

        if (norm == NULL || domain == NULL || !mk_domain_valid(domain))
            mk_list_error(b, line, "'%s' is not a valid address", entry);
        else
            mk_list_hash_add(list->addresses, norm, mk_list_rule(list, line));
        free(norm);
    } else if (mk_domain_valid(lower)) {
        mk_list_hash_add(list->domains_tree, lower, mk_list_rule(list, line));
    } else {
        mk_list_error(b, line, "'%s' is not an address, domain or /pattern/", entry);
    }
    free(lower);
}

static void mk_list_add_client(struct mk_list_build *b, int line, const char *entry)
{
    struct mk_cidr net;
    const char *why;

    if (mk_cidr_parse(entry, &net, &why) < 0) {
        mk_list_error(b, line, "'%s': %s", entry, why);
        return;
    }
    mk_cidr_set_add(b->list->networks, &net, mk_list_rule(b->list, line));
}

static void mk_list_add_entry(struct mk_list_build *b, int line, const char *entry)
{
    if (b->list->nrules >= MK_LIST_MAX_ENTRIES) {
        mk_list_error(b, line, "more than %d entries", MK_LIST_MAX_ENTRIES);
        return;
    }
    if (b->list->kind == MK_LIST_CLIENTS)
        mk_list_add_client(b, line, entry);
    else
        mk_list_add_sender(b, line, entry);
}

/* One line: an entry, optionally followed by white space and a # comment. */
static void mk_list_add_line(struct mk_list_build *b, int line, const char *text, size_t len)
{
    char buf[MK_LIST_MAX_LINE + 1];
    char *entry, *rest;

    if (len > MK_LIST_MAX_LINE) {
        mk_list_error(b, line, "line is longer than %d bytes", MK_LIST_MAX_LINE);
        return;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\0' || (iscntrl((unsigned char) buf[i]) && buf[i] != '\t' && buf[i] != '\r')) {
            mk_list_error(b, line, "control character in line");
            return;
        }
    entry = buf;
    while (isspace((unsigned char) *entry))
        entry++;
    if (*entry == '\0' || *entry == '#')
        return;
    rest = entry + strcspn(entry, " \t\r");
    if (*rest != '\0') {
        *rest++ = '\0';
        while (isspace((unsigned char) *rest))
            rest++;
        if (*rest != '\0' && *rest != '#') {
            mk_list_error(b, line, "unexpected text after the entry (one entry per line; "
                          "comments start with #)");
            return;
        }
    }
    mk_list_add_entry(b, line, entry);
}

static struct mk_list *mk_list_finish(struct mk_list_build *b, char **errors)
{
    if (b->nerrors > MK_LIST_MAX_ERRORS) {
        char *more = mk_xasprintf("%s\n%s: %zu more errors not shown", b->errors,
                                  b->list->source, b->nerrors - MK_LIST_MAX_ERRORS);
        free(b->errors);
        b->errors = more;
    }
    if (b->errors) {
        *errors = b->errors;
        if (!(b->flags & MK_LIST_SKIP_BAD)) {
            mk_list_free(b->list);
            return NULL;
        }
    }
    if (b->list->npatterns) {
        b->list->match_ctx = pcre2_match_context_create(NULL);
        pcre2_set_match_limit(b->list->match_ctx, MK_LIST_PCRE_MATCH_LIMIT);
        pcre2_set_depth_limit(b->list->match_ctx, MK_LIST_PCRE_DEPTH_LIMIT);
    }
    return b->list;
}

struct mk_list *mk_list_parse(const char *source, const char *text, size_t len,
                              enum mk_list_kind kind, unsigned flags, char **errors)
{
    struct mk_list_build b = {mk_list_new(source, kind), flags, NULL, 0};
    const char *p = text, *end = text + len;
    int line = 0;

    *errors = NULL;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);

        mk_list_add_line(&b, ++line, p, n);
        p += n + (nl != NULL);
    }
    return mk_list_finish(&b, errors);
}

struct mk_list *mk_list_from_values(const char *source, char *const *values,
                                    enum mk_list_kind kind, unsigned flags, char **errors)
{
    struct mk_list_build b = {mk_list_new(source, kind), flags, NULL, 0};

    *errors = NULL;
    for (int i = 0; values && values[i]; i++)
        mk_list_add_line(&b, i + 1, values[i], strlen(values[i]));
    return mk_list_finish(&b, errors);
}

struct mk_list *mk_list_load(const char *path, enum mk_list_kind kind, unsigned flags,
                             char **errors)
{
    struct mk_list *list;
    size_t len;
    char *text;

    *errors = NULL;
    if ((text = mk_file_read(path, &len, NULL, errors)) == NULL)
        return NULL;
    list = mk_list_parse(path, text, len, kind, flags, errors);
    free(text);
    return list;
}

const struct mk_rule *mk_list_match_ip(const struct mk_list *list, const struct mk_ip *ip)
{
    if (list == NULL || list->kind != MK_LIST_CLIENTS)
        return NULL;
    return mk_cidr_set_match(list->networks, ip);
}

static const struct mk_rule *mk_list_find(const struct mk_hash *h, const char *key, size_t len)
{
    return mk_hash_count(h) ? mk_hash_find(h, key, len) : NULL;
}

const struct mk_rule *mk_list_match_sender(const struct mk_list *list, const char *address)
{
    const struct mk_rule *rule;
    const char *domain, *at;
    size_t len = strlen(address);

    if (list == NULL || list->kind != MK_LIST_SENDERS)
        return NULL;
    if (len == 0)
        return list->null_sender;
    if ((rule = mk_list_find(list->addresses, address, len)) != NULL)
        return rule;
    at = strrchr(address, '@');
    if (at && (rule = mk_list_find(list->local_parts, address, (size_t) (at - address) + 1)))
        return rule;
    if ((domain = mk_addr_domain(address)) != NULL) {
        if ((rule = mk_list_find(list->domains_exact, domain, strlen(domain))) != NULL)
            return rule;
        if ((rule = mk_list_find(list->domains_tree, domain, strlen(domain))) != NULL)
            return rule;
        for (const char *d = strchr(domain, '.'); d; d = strchr(d + 1, '.')) {
            if ((rule = mk_list_find(list->domains_tree, d + 1, strlen(d + 1))) != NULL)
                return rule;
            if ((rule = mk_list_find(list->domains_below, d + 1, strlen(d + 1))) != NULL)
                return rule;
        }
    }
    for (size_t i = 0; i < list->npatterns; i++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(list->patterns[i].code, NULL);
        int rc;

        if (md == NULL)
            mk_log_fatal("out of memory");
        rc = pcre2_match(list->patterns[i].code, (PCRE2_SPTR) address, len, 0, 0, md,
                         list->match_ctx);
        pcre2_match_data_free(md);
        if (rc >= 0)
            return list->patterns[i].rule;
        if (rc != PCRE2_ERROR_NOMATCH) {
            mk_log(MK_LOG_WARNING, NULL, "%s:%d: pattern match failed (PCRE2 error %d)",
                   list->source, list->patterns[i].rule->line, rc);
            return &mk_list_match_failed;
        }
    }
    return NULL;
}

size_t mk_list_count(const struct mk_list *list)
{
    return list ? list->nrules : 0;
}

void mk_list_free(struct mk_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->nrules; i++)
        free(list->rules[i]);
    free(list->rules);
    mk_cidr_set_free(list->networks);
    mk_hash_free(list->addresses);
    mk_hash_free(list->local_parts);
    mk_hash_free(list->domains_exact);
    mk_hash_free(list->domains_tree);
    mk_hash_free(list->domains_below);
    for (size_t i = 0; i < list->npatterns; i++)
        pcre2_code_free(list->patterns[i].code);
    free(list->patterns);
    pcre2_match_context_free(list->match_ctx);
    free(list->source);
    free(list);
}
