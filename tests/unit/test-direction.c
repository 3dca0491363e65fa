/* Unit tests for mk_direction: origin and per-recipient direction. */
#include "config.h"

#include <stdlib.h>

#include "mk_direction.h"
#include "mk_test.h"

int main(void)
{
    char *errors = NULL;
    struct mk_config *cfg = mk_config_load(test_tmpfile("[global]\n"
                                                        "trusted_networks = 10.0.0.0/8 2001:db8:1::/48\n"
                                                        "originating_daemons = ORIGINATING submission\n"),
                                           &errors);
    struct mk_origin_policy *p = cfg ? mk_origin_policy_create(cfg, &errors) : NULL;
    struct mk_ip inside, outside, inside6;
    struct mk_origin o;

    mk_ip_parse("10.1.2.3", &inside);
    mk_ip_parse("198.51.100.1", &outside);
    mk_ip_parse("2001:db8:1::25", &inside6);

    test_begin("direction: untrusted origin is inbound for every recipient");
    test_assert(p != NULL);
    if (p == NULL)
        return test_done();
    o = mk_origin_classify(p, &outside, NULL, "mail.example.com");
    test_assert(!mk_origin_trusted(&o));
    test_assert_str(mk_origin_reason(&o), "none");
    test_assert(mk_direction_of(&o, true) == MK_INBOUND);
    test_assert(mk_direction_of(&o, false) == MK_INBOUND);
    test_end();

    test_begin("direction: SASL login is trusted: internal or outbound");
    o = mk_origin_classify(p, &outside, "alice@example.com", NULL);
    test_assert(mk_origin_trusted(&o));
    test_assert_str(mk_origin_reason(&o), "sasl");
    test_assert(mk_direction_of(&o, true) == MK_INTERNAL);
    test_assert(mk_direction_of(&o, false) == MK_OUTBOUND);
    test_end();

    test_begin("direction: trusted networks, IPv4 and IPv6");
    o = mk_origin_classify(p, &inside, NULL, NULL);
    test_assert(o.trusted_network && mk_direction_of(&o, false) == MK_OUTBOUND);
    o = mk_origin_classify(p, &inside6, "", NULL);
    test_assert(o.trusted_network && !o.authenticated);
    test_assert_str(mk_origin_reason(&o), "network");
    test_end();

    test_begin("direction: an originating daemon name is trusted, case-insensitively");
    o = mk_origin_classify(p, &outside, NULL, "originating");
    test_assert(o.originating_daemon && mk_direction_of(&o, true) == MK_INTERNAL);
    o = mk_origin_classify(p, &outside, NULL, "smtpd");
    test_assert(!mk_origin_trusted(&o));
    test_end();

    test_begin("direction: unknown client address is local submission");
    o = mk_origin_classify(p, NULL, NULL, NULL);
    test_assert(o.local_submission && mk_direction_of(&o, true) == MK_INTERNAL);
    test_assert_str(mk_origin_reason(&o), "local");
    test_end();

    test_begin("direction: names round-trip");
    {
        enum mk_direction d;

        test_assert(mk_direction_parse("Outbound", &d) == 0 && d == MK_OUTBOUND);
        test_assert_str(mk_direction_name(MK_INTERNAL), "internal");
        test_assert(mk_direction_parse("sideways", &d) < 0);
    }
    test_end();

    test_begin("direction: a bad trusted network is a config error");
    {
        /* The loader refuses it, with the line, before any daemon sees it. */
        struct mk_config *bad = mk_config_load(test_tmpfile("[global]\ntrusted_networks = 10.0.0.0/8 10.0.0.1/8\n"),
                                               &errors);
        test_assert(bad == NULL);
        test_assert(errors && strstr(errors, ":2: [global] trusted_networks: '10.0.0.1/8'"));
        free(errors);
    }
    test_end();

    mk_origin_policy_free(p);
    mk_config_unref(cfg);
    return test_done();
}
