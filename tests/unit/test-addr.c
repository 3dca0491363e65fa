/* Unit tests for mk_addr: IP addresses, networks, mail addresses. */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "mk_addr.h"
#include "mk_test.h"

static struct mk_ip ip(const char *text)
{
    struct mk_ip a;

    if (mk_ip_parse(text, &a) < 0)
        memset(&a, 0, sizeof(a));
    return a;
}

static void test_ip_parse(void)
{
    struct mk_ip a;
    char buf[MK_IP_TEXT_MAX];

    test_begin("IPv4 and IPv6 in every spelling the MTA uses");
    test_assert(mk_ip_parse("192.0.2.7", &a) == 0 && a.family == AF_INET);
    test_assert_str(mk_ip_format(&a, buf, sizeof(buf)), "192.0.2.7");
    test_assert(mk_ip_parse("2001:db8::5", &a) == 0 && a.family == AF_INET6);
    test_assert_str(mk_ip_format(&a, buf, sizeof(buf)), "2001:db8::5");
    test_assert(mk_ip_parse("[2001:db8::5]", &a) == 0 && a.family == AF_INET6);
    test_assert(mk_ip_parse("IPv6:2001:DB8::5", &a) == 0 && a.family == AF_INET6);
    test_assert_str(mk_ip_format(&a, buf, sizeof(buf)), "2001:db8::5");
    test_end();

    test_begin("IPv4-mapped IPv6 folds to IPv4");
    test_assert(mk_ip_parse("::ffff:192.0.2.7", &a) == 0 && a.family == AF_INET);
    test_assert_str(mk_ip_format(&a, buf, sizeof(buf)), "192.0.2.7");
    test_end();

    test_begin("malformed addresses are refused");
    test_assert(mk_ip_parse("192.0.2", &a) < 0);
    test_assert(mk_ip_parse("192.0.2.256", &a) < 0);
    test_assert(mk_ip_parse("2001:db8:::5", &a) < 0);
    test_assert(mk_ip_parse("", &a) < 0);
    test_assert(mk_ip_parse("[]", &a) < 0);
    test_assert(mk_ip_parse("example.com", &a) < 0);
    test_assert(mk_ip_parse("1.2.3.4 ", &a) < 0);
    test_end();

    test_begin("socket addresses");
    {
        struct sockaddr_in6 sin6;
        struct sockaddr_in sin;

        memset(&sin6, 0, sizeof(sin6));
        sin6.sin6_family = AF_INET6;
        inet_pton(AF_INET6, "::ffff:10.1.2.3", &sin6.sin6_addr);
        test_assert(mk_ip_from_sockaddr((struct sockaddr *) &sin6, &a) == 0);
        test_assert(a.family == AF_INET);
        test_assert_str(mk_ip_format(&a, buf, sizeof(buf)), "10.1.2.3");
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        inet_pton(AF_INET, "203.0.113.9", &sin.sin_addr);
        test_assert(mk_ip_from_sockaddr((struct sockaddr *) &sin, &a) == 0);
        test_assert_str(mk_ip_format(&a, buf, sizeof(buf)), "203.0.113.9");
        test_assert(mk_ip_from_sockaddr(NULL, &a) < 0);
    }
    test_end();
}

static void test_cidr(void)
{
    struct mk_cidr n;
    const char *why;

    test_begin("CIDR networks contain exactly their addresses");
    test_assert(mk_cidr_parse("192.0.2.0/24", &n, &why) == 0);
    {
        struct mk_ip in = ip("192.0.2.255"), out = ip("192.0.3.0"), v6 = ip("2001:db8::1");

        test_assert(mk_cidr_contains(&n, &in));
        test_assert(!mk_cidr_contains(&n, &out));
        test_assert(!mk_cidr_contains(&n, &v6));
    }
    test_assert(mk_cidr_parse("2001:db8::/32", &n, &why) == 0);
    {
        struct mk_ip in = ip("2001:db8:ffff::1"), out = ip("2001:db9::1");

        test_assert(mk_cidr_contains(&n, &in));
        test_assert(!mk_cidr_contains(&n, &out));
    }
    test_assert(mk_cidr_parse("10.0.0.0/9", &n, &why) == 0);
    {
        struct mk_ip in = ip("10.127.255.255"), out = ip("10.128.0.0");

        test_assert(mk_cidr_contains(&n, &in));
        test_assert(!mk_cidr_contains(&n, &out));
    }
    test_assert(mk_cidr_parse("0.0.0.0/0", &n, &why) == 0);
    {
        struct mk_ip any = ip("8.8.8.8");

        test_assert(mk_cidr_contains(&n, &any));
    }
    test_end();

    test_begin("bad networks are refused with a reason");
    test_assert(mk_cidr_parse("192.0.2.7/24", &n, &why) < 0 && strstr(why, "host bits"));
    test_assert(mk_cidr_parse("192.0.2.0/33", &n, &why) < 0 && strstr(why, "prefix"));
    test_assert(mk_cidr_parse("2001:db8::/129", &n, &why) < 0);
    test_assert(mk_cidr_parse("192.0.2.0/", &n, &why) < 0);
    test_assert(mk_cidr_parse("192.0.2.0/-1", &n, &why) < 0);
    test_assert(mk_cidr_parse("192.0.2.0/ 8", &n, &why) < 0);
    test_assert(mk_cidr_parse("/8", &n, &why) < 0);
    test_end();

    test_begin("an IPv4-mapped network matches the IPv4 addresses");
    test_assert(mk_cidr_parse("::ffff:192.0.2.0/120", &n, &why) == 0);
    {
        struct mk_ip in = ip("192.0.2.77");

        test_assert(n.prefix == 24 && mk_cidr_contains(&n, &in));
    }
    test_end();
}

static void test_cidr_set(void)
{
    struct mk_cidr_set *set = mk_cidr_set_create();
    const char *why;
    struct mk_cidr n;
    int tag_wide = 1, tag_narrow = 2, tag_v6 = 3;

    mk_cidr_parse("198.51.100.0/24", &n, &why);
    mk_cidr_set_add(set, &n, &tag_wide);
    mk_cidr_parse("198.51.100.128/25", &n, &why);
    mk_cidr_set_add(set, &n, &tag_narrow);
    mk_cidr_parse("2001:db8:1::/48", &n, &why);
    mk_cidr_set_add(set, &n, &tag_v6);

    test_begin("CIDR set: most specific entry wins, families kept apart");
    {
        struct mk_ip a = ip("198.51.100.200"), b = ip("198.51.100.5"), c = ip("198.51.101.5");
        struct mk_ip d = ip("2001:db8:1:2::9"), e = ip("2001:db8:2::9");

        test_assert(mk_cidr_set_match(set, &a) == &tag_narrow);
        test_assert(mk_cidr_set_match(set, &b) == &tag_wide);
        test_assert(mk_cidr_set_match(set, &c) == NULL);
        test_assert(mk_cidr_set_match(set, &d) == &tag_v6);
        test_assert(mk_cidr_set_match(set, &e) == NULL);
    }
    test_assert_int(mk_cidr_set_count(set), 3);
    test_end();
    mk_cidr_set_free(set);

    test_begin("CIDR set: 100000 single addresses");
    set = mk_cidr_set_create();
    for (int i = 0; i < 100000; i++) {
        char text[32];

        snprintf(text, sizeof(text), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        mk_cidr_parse(text, &n, &why);
        mk_cidr_set_add(set, &n, &tag_wide);
    }
    {
        struct mk_ip hit = ip("10.1.134.159"), miss = ip("10.2.0.0");

        test_assert(mk_cidr_set_match(set, &hit) == &tag_wide);
        test_assert(mk_cidr_set_match(set, &miss) == NULL);
    }
    test_assert_int(mk_cidr_set_count(set), 100000);
    mk_cidr_set_free(set);
    test_end();
}

static void check_norm(const char *in, const char *expected)
{
    char *out = mk_addr_normalize(in);

    test_assert_str(out, expected);
    free(out);
}

static void test_addresses(void)
{
    test_begin("addresses: brackets, case, source routes, trailing dots");
    check_norm("<Alice@Example.COM>", "alice@example.com");
    check_norm("alice@example.com", "alice@example.com");
    check_norm("  <bob@example.org>  ", "bob@example.org");
    check_norm("<@relay.example,@r2.example:carol@example.net>", "carol@example.net");
    check_norm("<dave@example.com.>", "dave@example.com");
    check_norm("<\"odd@local\"@example.com>", "\"odd@local\"@example.com");
    check_norm("postmaster", "postmaster");
    test_end();

    test_begin("addresses: the null sender is empty");
    check_norm("<>", "");
    check_norm("", "");
    test_end();

    test_begin("addresses: malformed input gives NULL");
    check_norm("<alice@example.com", NULL);
    check_norm("alice@example.com>", NULL);
    check_norm("<al\rice@example.com>", NULL);
    check_norm("<@relay.example>", NULL);
    check_norm("<\"unterminated@example.com>", NULL);
    check_norm("<alice@>", NULL);
    check_norm("<@example.com>", NULL);
    check_norm("<a<b@example.com>", NULL);
    check_norm("<user@@example.com>", NULL);
    check_norm("<a@b@example.com>", NULL);
    {
        char big[700];

        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        check_norm(big, NULL);
    }
    test_end();

    test_begin("domains");
    test_assert_str(mk_addr_domain("a@b@example.com"), "example.com");
    test_assert(mk_addr_domain("postmaster") == NULL);
    test_assert(mk_domain_valid("example.com"));
    test_assert(mk_domain_valid("xn--fiqs8s.tw"));
    test_assert(!mk_domain_valid("example..com"));
    test_assert(!mk_domain_valid(".example.com"));
    test_assert(!mk_domain_valid("exa mple.com"));
    test_assert(!mk_domain_valid(""));
    test_end();
}

static void test_sockets(void)
{
    test_begin("milter socket specifications");
    test_assert(mk_socket_spec_check("inet:10025@127.0.0.1") == 0);
    test_assert(mk_socket_spec_check("inet:10025") == 0);
    test_assert(mk_socket_spec_check("inet6:10025@[::1]") == 0);
    test_assert(mk_socket_spec_check("unix:/run/mailkeep/block.sock") == 0);
    test_assert(mk_socket_spec_check("local:/run/x") == 0);
    test_assert(mk_socket_spec_check("/run/x") == 0);
    test_assert(mk_socket_spec_check("inet:0@127.0.0.1") < 0);
    test_assert(mk_socket_spec_check("inet:65536") < 0);
    test_assert(mk_socket_spec_check("inet:port@host") < 0);
    test_assert(mk_socket_spec_check("inet:25@") < 0);
    test_assert(mk_socket_spec_check("unix:relative") < 0);
    test_assert(mk_socket_spec_check("tcp:25") < 0);
    test_end();
}

int main(void)
{
    test_ip_parse();
    test_cidr();
    test_cidr_set();
    test_addresses();
    test_sockets();
    return test_done();
}
