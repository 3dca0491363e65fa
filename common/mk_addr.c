/*
 * mk_addr - IP addresses, networks, mail addresses. See mk_addr.h.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mk_addr.h"
#include "mk_hash.h"
#include "mk_util.h"

#define MK_ADDR_MAX 512

static const unsigned char mk_v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void mk_ip_fold_mapped(struct mk_ip *ip)
{
    if (ip->family == AF_INET6 && memcmp(ip->bytes, mk_v4_mapped, 12) == 0) {
        memmove(ip->bytes, ip->bytes + 12, 4);
        memset(ip->bytes + 4, 0, 12);
        ip->family = AF_INET;
    }
}

int mk_ip_parse(const char *text, struct mk_ip *ip)
{
    char buf[MK_IP_TEXT_MAX];
    size_t len = strlen(text);

    if (len >= sizeof(buf))
        return -1;
    if (len > 2 && text[0] == '[' && text[len - 1] == ']') {
        text++;
        len -= 2;
    }
    if (len > 5 && strncasecmp(text, "IPv6:", 5) == 0) {
        text += 5;
        len -= 5;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    memset(ip, 0, sizeof(*ip));
    if (inet_pton(AF_INET, buf, ip->bytes) == 1) {
        ip->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, ip->bytes) == 1) {
        ip->family = AF_INET6;
        mk_ip_fold_mapped(ip);
        return 0;
    }
    return -1;
}

int mk_ip_from_sockaddr(const struct sockaddr *sa, struct mk_ip *ip)
{
    memset(ip, 0, sizeof(*ip));
    if (sa == NULL)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *) (const void *) sa;

        ip->family = AF_INET;
        memcpy(ip->bytes, &sin->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *) (const void *) sa;

        ip->family = AF_INET6;
        memcpy(ip->bytes, &sin6->sin6_addr, 16);
        mk_ip_fold_mapped(ip);
        return 0;
    }
    return -1;
}

const char *mk_ip_format(const struct mk_ip *ip, char *buf, size_t len)
{
    if (ip->family != AF_INET && ip->family != AF_INET6)
        snprintf(buf, len, "unknown");
    else if (inet_ntop(ip->family, ip->bytes, buf, (socklen_t) len) == NULL)
        snprintf(buf, len, "unknown");
    return buf;
}

static int mk_ip_bits(const struct mk_ip *ip)
{
    return ip->family == AF_INET ? 32 : 128;
}

static void mk_ip_mask(struct mk_ip *ip, int prefix)
{
    int nbytes = mk_ip_bits(ip) / 8;

    for (int i = 0; i < nbytes; i++) {
        int keep = prefix - i * 8;

        if (keep >= 8)
            continue;
        ip->bytes[i] &= keep <= 0 ? 0 : (unsigned char) (0xff << (8 - keep));
    }
}

int mk_cidr_parse(const char *text, struct mk_cidr *net, const char **why)
{
    char buf[MK_IP_TEXT_MAX];
    const char *slash = strchr(text, '/');
    size_t len = slash ? (size_t) (slash - text) : strlen(text);
    struct mk_ip masked;
    long long prefix;

    *why = "not an IP address or network";
    if (len >= sizeof(buf))
        return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (mk_ip_parse(buf, &net->net) < 0)
        return -1;
    if (slash == NULL) {
        net->prefix = mk_ip_bits(&net->net);
        return 0;
    }
    if (mk_parse_int(slash + 1, &prefix) < 0 || prefix < 0 || prefix > 128
        || !isdigit((unsigned char) slash[1])) {
        *why = "bad prefix length";
        return -1;
    }
    /* An IPv4-mapped network, e.g. ::ffff:192.0.2.0/120, was folded to IPv4. */
    if (net->net.family == AF_INET && strchr(buf, ':') != NULL) {
        if (prefix < 96) {
            *why = "bad prefix length";
            return -1;
        }
        prefix -= 96;
    }
    if (prefix > mk_ip_bits(&net->net)) {
        *why = "bad prefix length";
        return -1;
    }
    net->prefix = (int) prefix;
    masked = net->net;
    mk_ip_mask(&masked, net->prefix);
    if (memcmp(&masked, &net->net, sizeof(masked)) != 0) {
        *why = "host bits are set after the prefix length";
        return -1;
    }
    return 0;
}

bool mk_cidr_contains(const struct mk_cidr *net, const struct mk_ip *ip)
{
    struct mk_ip masked;

    if (ip->family != net->net.family)
        return false;
    masked = *ip;
    mk_ip_mask(&masked, net->prefix);
    return memcmp(masked.bytes, net->net.bytes, 16) == 0;
}

/*
 * One hash table per (family, prefix length) in use. A lookup masks the
 * address to each length in use, longest first, and probes.
 */
struct mk_cidr_set {
    struct mk_hash *v4[33];
    struct mk_hash *v6[129];
    size_t count;
};

struct mk_cidr_set *mk_cidr_set_create(void)
{
    return mk_xcalloc(1, sizeof(struct mk_cidr_set));
}

void mk_cidr_set_add(struct mk_cidr_set *set, const struct mk_cidr *net, const void *tag)
{
    struct mk_hash **tables = net->net.family == AF_INET ? set->v4 : set->v6;
    size_t keylen = net->net.family == AF_INET ? 4 : 16;

    if (tables[net->prefix] == NULL)
        tables[net->prefix] = mk_hash_create(NULL);
    /* The first entry for a network keeps its tag (and its line number). */
    if (mk_hash_find(tables[net->prefix], net->net.bytes, keylen) == NULL) {
        mk_hash_set(tables[net->prefix], net->net.bytes, keylen, (void *) tag);
        set->count++;
    }
}

const void *mk_cidr_set_match(const struct mk_cidr_set *set, const struct mk_ip *ip)
{
    struct mk_hash *const *tables = ip->family == AF_INET ? set->v4 : set->v6;
    int bits = mk_ip_bits(ip);
    size_t keylen = (size_t) bits / 8;

    for (int prefix = bits; prefix >= 0; prefix--) {
        struct mk_ip masked;
        const void *tag;

        if (tables[prefix] == NULL)
            continue;
        masked = *ip;
        mk_ip_mask(&masked, prefix);
        if ((tag = mk_hash_find(tables[prefix], masked.bytes, keylen)) != NULL)
            return tag;
    }
    return NULL;
}

size_t mk_cidr_set_count(const struct mk_cidr_set *set)
{
    return set->count;
}

void mk_cidr_set_free(struct mk_cidr_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < MK_ARRAY_LEN(set->v4); i++)
        mk_hash_free(set->v4[i]);
    for (size_t i = 0; i < MK_ARRAY_LEN(set->v6); i++)
        mk_hash_free(set->v6[i]);
    free(set);
}

char *mk_addr_normalize(const char *text)
{
    const char *start, *end, *at = NULL;
    bool quoted = false;
    char *out;
    size_t len;

    while (isspace((unsigned char) *text))
        text++;
    len = strlen(text);
    while (len > 0 && isspace((unsigned char) text[len - 1]))
        len--;
    if (len > MK_ADDR_MAX)
        return NULL;
    start = text;
    end = text + len;
    if (len > 0 && *start == '<') {
        if (end[-1] != '>')
            return NULL;
        start++;
        end--;
    } else if (len > 0 && end[-1] == '>') {
        return NULL;
    }
    /* Source route: <@relay1,@relay2:user@domain>. */
    if (start < end && *start == '@') {
        const char *colon = memchr(start, ':', (size_t) (end - start));

        if (colon == NULL)
            return NULL;
        start = colon + 1;
    }
    for (const char *p = start; p < end; p++) {
        unsigned char c = (unsigned char) *p;

        if (c < 0x20 || c == 0x7f || c == '<' || c == '>')
            return NULL;
        if (c == '\\' && quoted && p + 1 < end) {
            p++;
            continue;
        }
        if (c == '"')
            quoted = !quoted;
        else if (c == '@' && !quoted) {
            if (at != NULL)
                return NULL;            /* a second unquoted '@' */
            at = p;
        }
    }
    if (quoted)
        return NULL;
    if (at != NULL && (at == start || at + 1 == end))
        return NULL;
    while (end > start && end[-1] == '.' && at != NULL && end - 1 > at + 1)
        end--;
    out = mk_xstrndup(start, (size_t) (end - start));
    mk_str_lower(out);
    return out;
}

const char *mk_addr_domain(const char *address)
{
    const char *at = strrchr(address, '@');

    return at ? at + 1 : NULL;
}

bool mk_domain_valid(const char *domain)
{
    size_t len = strlen(domain), label = 0;

    if (len == 0 || len > 253 || domain[0] == '.' || domain[len - 1] == '.')
        return false;
    for (const char *p = domain; *p; p++) {
        unsigned char c = (unsigned char) *p;

        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!(isalnum(c) || c == '-' || c == '_' || c >= 0x80))
            return false;
        if (++label > 63)
            return false;
    }
    return true;
}

int mk_socket_spec_check(const char *spec)
{
    const char *rest;
    long long port;
    char buf[16];
    size_t n;

    if (*spec == '/')
        return 0;
    if (strncmp(spec, "unix:", 5) == 0 || strncmp(spec, "local:", 6) == 0) {
        rest = strchr(spec, ':') + 1;
        return *rest == '/' ? 0 : -1;
    }
    if (strncmp(spec, "inet:", 5) == 0)
        rest = spec + 5;
    else if (strncmp(spec, "inet6:", 6) == 0)
        rest = spec + 6;
    else
        return -1;
    n = strcspn(rest, "@");
    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, rest, n);
    buf[n] = '\0';
    if (mk_parse_int(buf, &port) < 0 || port < 1 || port > 65535)
        return -1;
    if (rest[n] == '@' && rest[n + 1] == '\0')
        return -1;
    return 0;
}
