/* Unit tests for rc_msgid: Message-IDs as recall matches them. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "mk_test.h"
#include "rc_msgid.h"

static void check(const char *value, const char *expected)
{
    char *id = rc_msgid_parse(value, strlen(value));

    test_assert_str(id, expected);
    free(id);
}

int main(void)
{
    char *id, *again, *other, big[1200];

    test_begin("rc_msgid_parse: the identifier of a header value");
    check("<abc@example.com>", "<abc@example.com>");
    check(" <abc@example.com> ", "<abc@example.com>");
    check("\r\n\t<abc@example.com>", "<abc@example.com>");
    check("(a comment) <abc@example.com> (another)", "<abc@example.com>");
    check("(nested (comment) \\) here) <x@y>", "<x@y>");
    check("<first@example.com> <second@example.com>", "<first@example.com>");
    test_end();

    test_begin("rc_msgid_parse: folded inside the brackets, unfolded");
    check("<20261123.abc\r\n @example.com>", "<20261123.abc@example.com>");
    test_end();

    test_begin("rc_msgid_parse: what a person types");
    check("abc@example.com", "<abc@example.com>");
    check("abc@example.com (comment)", "<abc@example.com>");
    /* a quoted local part with a space needs the brackets */
    check("\"quoted local\"@example.com", NULL);
    check("<\"quoted local\"@example.com>", "<\"quotedlocal\"@example.com>");
    test_end();

    test_begin("rc_msgid_parse: UTF-8 (RFC 6532) is kept as it is");
    check("<\xe9\x83\xb5\xe4\xbb\xb6@example.tw>", "<\xe9\x83\xb5\xe4\xbb\xb6@example.tw>");
    test_end();

    test_begin("rc_msgid_parse: no identifier");
    check("", NULL);
    check("   ", NULL);
    check("(only a comment)", NULL);
    check("(unclosed comment <a@b>", NULL);
    check("<unclosed@example.com", NULL);
    check("<no-at-sign>", NULL);
    check("<@example.com>", NULL);
    check("<abc@>", NULL);
    check("<>", NULL);
    check("<a\001b@example.com>", NULL);
    check("<a<b@example.com>", NULL);
    check("abc@example.com>", NULL);
    test_end();

    test_begin("rc_msgid_parse: length limit");
    memset(big, 'a', sizeof(big));
    big[0] = '<';
    big[500] = '@';
    big[997] = '>';
    test_assert((id = rc_msgid_parse(big, 998)) != NULL);
    free(id);
    big[997] = 'a';
    big[998] = '>';
    test_assert(rc_msgid_parse(big, 999) == NULL);
    test_end();

    test_begin("rc_msgid_parse: stops at len, needs no NUL");
    test_assert((id = rc_msgid_parse("<a@b>garbage", 5)) != NULL);
    test_assert_str(id, "<a@b>");
    free(id);
    test_end();

    test_begin("rc_msgid_new: unique, and reads back as itself");
    id = rc_msgid_new("mail.example.com");
    other = rc_msgid_new("mail.example.com");
    test_assert(strcmp(id, other) != 0);
    test_assert(strncmp(id, "<20", 3) == 0);
    test_assert(strstr(id, "@mail.example.com>") != NULL);
    again = rc_msgid_parse(id, strlen(id));
    test_assert_str(again, id);
    free(id);
    free(other);
    free(again);
    test_end();

    return test_done();
}
