/*
 * rc_msgid - Message-IDs as recall matches them. See rc_msgid.h.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "mk_util.h"
#include "rc_msgid.h"

static bool rc_msgid_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Past white space and (nested, escaped) comments; NULL at an unclosed one. */
static const char *rc_msgid_skip_cfws(const char *p, const char *end)
{
    while (p < end) {
        if (rc_msgid_space(*p)) {
            p++;
        } else if (*p == '(') {
            int depth = 0;

            for (; p < end; p++) {
                if (*p == '\\' && p + 1 < end)
                    p++;
                else if (*p == '(')
                    depth++;
                else if (*p == ')' && --depth == 0)
                    break;
            }
            if (p == end)
                return NULL;
            p++;
        } else {
            break;
        }
    }
    return p;
}

char *rc_msgid_parse(const char *value, size_t len)
{
    const char *p = value, *end = value + len, *stop;
    char *id, *w;
    bool bracketed, at = false;

    if ((p = rc_msgid_skip_cfws(p, end)) == NULL || p == end)
        return NULL;
    bracketed = *p == '<';
    if (bracketed) {
        p++;
        if ((stop = memchr(p, '>', (size_t) (end - p))) == NULL)
            return NULL;
    } else {
        for (stop = p; stop < end && !rc_msgid_space(*stop) && *stop != '('; stop++)
            ;
    }
    if (stop - p > RC_MSGID_MAX - 2)
        return NULL;
    id = mk_xmalloc((size_t) (stop - p) + 3);
    w = id;
    *w++ = '<';
    for (; p < stop; p++) {
        unsigned char c = (unsigned char) *p;

        if (rc_msgid_space(*p))
            continue;                   /* folding inside the brackets */
        if (c < 0x20 || c == 0x7f || c == '<' || (!bracketed && c == '>')) {
            free(id);
            return NULL;
        }
        at |= c == '@';
        *w++ = *p;
    }
    *w++ = '>';
    *w = '\0';
    if (!at || id[1] == '@' || w[-2] == '@') {
        free(id);
        return NULL;
    }
    return id;
}

char *rc_msgid_new(const char *domain)
{
    unsigned long long r = 0;
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;

    if (getrandom(&r, sizeof(r), 0) != (ssize_t) sizeof(r))
        r = ((unsigned long long) now << 20) ^ (unsigned long long) clock();
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
    return mk_xasprintf("<%s.%016llx@%s>", stamp, r, domain);
}
