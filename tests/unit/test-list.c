/* Unit tests for mk_list: list file parsing and matching. */
#include "config.h"

#include <stdlib.h>

#include "mk_list.h"
#include "mk_test.h"

static struct mk_list *parse(const char *text, enum mk_list_kind kind, unsigned flags,
                             char **errors)
{
    return mk_list_parse("test.list", text, strlen(text), kind, flags, errors);
}

static int line_of(const struct mk_list *list, const char *sender)
{
    const struct mk_rule *r = mk_list_match_sender(list, sender);

    return r ? r->line : 0;
}

static int ip_line(const struct mk_list *list, const char *text)
{
    struct mk_ip a;
    const struct mk_rule *r;

    if (mk_ip_parse(text, &a) < 0)
        return -1;
    r = mk_list_match_ip(list, &a);
    return r ? r->line : 0;
}

static void test_clients(void)
{
    char *errors = NULL;
    struct mk_list *list = parse("# bad networks\n"
                                 "192.0.2.0/24\n"
                                 "\n"
                                 "203.0.113.9   # one host\n"
                                 "2001:db8:bad::/48\n"
                                 "   ::ffff:198.51.100.7\n", MK_LIST_CLIENTS, 0, &errors);

    test_begin("client list: networks, hosts, IPv6, comments");
    test_assert(list != NULL && errors == NULL);
    test_assert_int(mk_list_count(list), 4);
    test_assert_int(ip_line(list, "192.0.2.200"), 2);
    test_assert_int(ip_line(list, "203.0.113.9"), 4);
    test_assert_int(ip_line(list, "203.0.113.10"), 0);
    test_assert_int(ip_line(list, "2001:db8:bad:1::7"), 5);
    test_assert_int(ip_line(list, "2001:db8:bad0::7"), 0);
    test_assert_int(ip_line(list, "198.51.100.7"), 6);
    test_assert(mk_list_match_sender(list, "a@b.c") == NULL);
    test_end();
    mk_list_free(list);

    test_begin("client list: every bad line is reported, nothing is loaded");
    list = parse("192.0.2.0/24\n10.0.0.1/8\nexample.com\n192.0.2.1 192.0.2.2\n10.0.0.0/33\n",
                 MK_LIST_CLIENTS, 0, &errors);
    test_assert(list == NULL);
    test_assert(errors && strstr(errors, "test.list:2: '10.0.0.1/8': host bits"));
    test_assert(errors && strstr(errors, "test.list:3: 'example.com'"));
    test_assert(errors && strstr(errors, "test.list:4: unexpected text"));
    test_assert(errors && strstr(errors, "test.list:5: '10.0.0.0/33': bad prefix"));
    test_assert(errors && !strstr(errors, "test.list:1:"));
    free(errors);
    test_end();
}

static void test_senders(void)
{
    char *errors = NULL;
    struct mk_list *list = parse("Spammer@Bad.Example\n"     /* 1 */
                                 "@exact.example\n"          /* 2 */
                                 "tree.example\n"            /* 3 */
                                 ".below.example\n"          /* 4 */
                                 "postmaster@\n"             /* 5 */
                                 "<>\n"                      /* 6 */
                                 "/^promo[0-9]+@/\n"         /* 7 */
                                 "/^x\\s?y@pat\\.example$/i\n", /* 8 */
                                 MK_LIST_SENDERS, 0, &errors);

    test_begin("sender list: each kind of entry matches what it says");
    test_assert(list != NULL && errors == NULL);
    test_assert_int(line_of(list, "spammer@bad.example"), 1);
    test_assert_int(line_of(list, "other@bad.example"), 0);
    test_assert_int(line_of(list, "a@exact.example"), 2);
    test_assert_int(line_of(list, "a@sub.exact.example"), 0);
    test_assert_int(line_of(list, "a@tree.example"), 3);
    test_assert_int(line_of(list, "a@deep.sub.tree.example"), 3);
    test_assert_int(line_of(list, "a@nottree.example"), 0);
    test_assert_int(line_of(list, "a@below.example"), 0);
    test_assert_int(line_of(list, "a@x.below.example"), 4);
    test_assert_int(line_of(list, "postmaster@anywhere.example"), 5);
    test_assert_int(line_of(list, "postmaster2@anywhere.example"), 0);
    test_assert_int(line_of(list, ""), 6);
    test_assert_int(line_of(list, "promo123@shop.example"), 7);
    test_assert_int(line_of(list, "promo@shop.example"), 0);
    test_assert_int(line_of(list, "x y@pat.example"), 8);
    test_assert_int(line_of(list, "nobody@good.example"), 0);
    test_end();

    test_begin("sender list: a pattern matches bytes that are not UTF-8");
    test_assert_int(line_of(list, "promo9@\xff\xfe.example"), 7);
    test_end();
    mk_list_free(list);

    test_begin("sender list: bad entries are reported with their lines");
    list = parse("ok@example.com\n/unclosed(/\nbad..domain\n@\n/x/q\nuser@@x\n",
                 MK_LIST_SENDERS, 0, &errors);
    test_assert(list == NULL);
    test_assert(errors && strstr(errors, "test.list:2: bad pattern"));
    test_assert(errors && strstr(errors, "test.list:3:"));
    test_assert(errors && strstr(errors, "test.list:4:"));
    test_assert(errors && strstr(errors, "test.list:5: unknown pattern flag 'q'"));
    test_assert(errors && strstr(errors, "test.list:6:"));
    free(errors);
    test_end();

    test_begin("sender list: patterns refused where users write the list");
    list = parse("/x/\n", MK_LIST_SENDERS, MK_LIST_NO_PATTERNS, &errors);
    test_assert(list == NULL && errors && strstr(errors, "not allowed"));
    free(errors);
    test_end();

    test_begin("sender list: skip-bad keeps the good entries");
    {
        char *values[] = {"good@example.com", "not an entry", "@also.example", NULL};

        list = mk_list_from_values("ldap", values, MK_LIST_SENDERS,
                                   MK_LIST_SKIP_BAD | MK_LIST_NO_PATTERNS, &errors);
        test_assert(list != NULL);
        test_assert(errors && strstr(errors, "ldap:2:"));
        free(errors);
        test_assert_int(line_of(list, "good@example.com"), 1);
        test_assert_int(line_of(list, "x@also.example"), 3);
        mk_list_free(list);
    }
    test_end();
}

static void test_limits(void)
{
    char *errors = NULL;
    char *text = malloc(3000);
    struct mk_list *list;

    test_begin("list: long lines, NUL and control bytes are refused");
    memset(text, 'a', 2000);
    strcpy(text + 2000, "@example.com\n");
    list = parse(text, MK_LIST_SENDERS, 0, &errors);
    test_assert(list == NULL && errors && strstr(errors, "longer than"));
    free(errors);
    list = mk_list_parse("t", "a@b.c\0d@e.f\n", 12, MK_LIST_SENDERS, 0, &errors);
    test_assert(list == NULL && errors && strstr(errors, "control"));
    free(errors);
    list = parse("a@b.c\x01\n", MK_LIST_SENDERS, 0, &errors);
    test_assert(list == NULL);
    free(errors);
    test_end();
    free(text);

    test_begin("list: a catastrophic pattern is an error, not a silent miss");
    list = parse("/^(a|a)+$/\n", MK_LIST_SENDERS, 0, &errors);
    test_assert(list != NULL);
    {
        char subject[64];

        memset(subject, 'a', 40);
        strcpy(subject + 40, "!");
        test_assert(mk_list_match_sender(list, subject) == &mk_list_match_failed);
        test_assert(mk_list_match_sender(list, "aaaa") != NULL);
        test_assert(mk_list_match_sender(list, "aaab") == NULL);
    }
    mk_list_free(list);
    test_end();

    test_begin("list: CRLF line ends and a missing final newline");
    list = parse("a@example.com\r\nb@example.com", MK_LIST_SENDERS, 0, &errors);
    test_assert(list != NULL);
    test_assert_int(line_of(list, "a@example.com"), 1);
    test_assert_int(line_of(list, "b@example.com"), 2);
    mk_list_free(list);
    test_end();

    test_begin("list: load from a file, and a missing file is an error");
    list = mk_list_load(test_tmpfile("10.0.0.0/8\n"), MK_LIST_CLIENTS, 0, &errors);
    test_assert(list != NULL && ip_line(list, "10.9.9.9") == 1);
    mk_list_free(list);
    list = mk_list_load("/nonexistent/list", MK_LIST_CLIENTS, 0, &errors);
    test_assert(list == NULL && errors && strstr(errors, "cannot open"));
    free(errors);
    test_end();
}

int main(void)
{
    test_clients();
    test_senders();
    test_limits();
    return test_done();
}
