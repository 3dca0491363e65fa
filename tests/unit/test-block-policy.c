/* Unit tests for mailkeep-block's rules (block_policy), without a milter. */
#include "config.h"

#include <stdlib.h>
#include <sys/stat.h>

#include "block_policy.h"
#include "mk_test.h"

struct fixture {
    struct mk_config *cfg;
    struct mk_directory *dir;
    struct mk_origin_policy *origin;
    struct block_policy *policy;
    struct mk_rate *state;
};

static char personal_dir[64];

static int setup(struct fixture *f, const char *extra)
{
    char text[4096], *errors = NULL;

    snprintf(text, sizeof(text),
             "[global]\n"
             "directory = files\n"
             "directory_domains_file = %s\n",
             test_tmpfile("example.com\nexample.org\n"));
    snprintf(text + strlen(text), sizeof(text) - strlen(text),
             "directory_users_file = %s\n"
             "trusted_networks = 10.0.0.0/8\n"
             "[block]\n"
             "bad_clients = %s\n",
             test_tmpfile("alice@example.com blocked_sender=spammer@bad.example,@junk.example\n"
                          "bob@example.com blocked_sender=promo.example allowed_sender=news@promo.example "
                          "block_mode=tag\n"
                          "carol@example.com\n"
                          "dave@example.org\n"
                          "../evil@example.com\n"),
             test_tmpfile("192.0.2.0/24\n2001:db8:bad::/48\n198.51.100.9\n"));
    snprintf(text + strlen(text), sizeof(text) - strlen(text),
             "allow_clients = %s\n"
             "bad_senders = %s\n",
             test_tmpfile("192.0.2.77\n"),
             test_tmpfile("@spam.example\n/^offer[0-9]+@/\nmarketing.example\n"));
    snprintf(text + strlen(text), sizeof(text) - strlen(text),
             "allow_senders = %s\n"
             "personal_list_dir = %s\n%s",
             test_tmpfile("friend@spam.example\n"), personal_dir, extra);
    f->cfg = mk_config_load(test_tmpfile(text), &errors);
    if (f->cfg)
        f->dir = mk_directory_open(f->cfg, &errors);
    if (f->dir)
        f->origin = mk_origin_policy_create(f->cfg, &errors);
    if (f->origin)
        f->policy = block_policy_load(f->cfg, &errors);
    if (f->policy == NULL) {
        printf("setup: %s\n", errors ? errors : "?");
        free(errors);
        return -1;
    }
    f->state = mk_rate_create(1000);
    return 0;
}

static void teardown(struct fixture *f)
{
    block_policy_free(f->policy);
    mk_origin_policy_free(f->origin);
    mk_directory_unref(f->dir);
    mk_config_unref(f->cfg);
    mk_rate_free(f->state);
}

static struct block_client client(struct fixture *f, const char *addr, const char *login)
{
    struct block_client c;
    struct mk_ip ip;

    mk_ip_parse(addr, &ip);
    block_client_init(&c, f->policy, f->origin, &ip, NULL);
    block_client_authenticated(&c, f->policy, login);
    return c;
}

static enum block_verdict at_connect(struct fixture *f, const char *addr, struct block_decision *d)
{
    struct block_client c = client(f, addr, NULL);

    block_check_client(f->policy, f->state, &c, 1000, d);
    return d->verdict;
}

static enum block_verdict at_mail(struct fixture *f, const char *addr, const char *login,
                                  const char *sender, time_t now, struct block_decision *d)
{
    struct block_client c = client(f, addr, login);

    block_check_sender(f->policy, f->state, &c, sender, now, d);
    return d->verdict;
}

static enum block_verdict at_rcpt(struct fixture *f, const char *addr, const char *sender,
                                  const char *rcpt, time_t now, struct block_decision *d)
{
    struct block_client c = client(f, addr, NULL);

    block_check_recipient(f->policy, f->state, f->dir, &c, sender, rcpt, now, d);
    return d->verdict;
}

static void test_clients(void)
{
    struct fixture f;
    struct block_decision d;

    if (setup(&f, "") < 0)
        return;
    test_begin("block: bad client networks refused at connect with 554 and the rule");
    test_assert(at_connect(&f, "192.0.2.8", &d) == BLOCK_REJECT);
    test_assert_str(d.rcode, "554");
    test_assert_str(d.check, "bad_clients");
    test_assert(d.rule && d.rule->line == 1);
    test_assert(strstr(d.text, "[192.0.2.8]") != NULL);
    test_assert(at_connect(&f, "2001:db8:bad:7::1", &d) == BLOCK_REJECT);
    test_assert(d.rule && d.rule->line == 2);
    test_assert(at_connect(&f, "198.51.100.9", &d) == BLOCK_REJECT);
    test_assert(at_connect(&f, "198.51.100.10", &d) == BLOCK_PASS);
    test_assert(at_connect(&f, "2001:db8:600d::1", &d) == BLOCK_PASS);
    test_end();

    test_begin("block: allow_clients overrides bad_clients");
    test_assert(at_connect(&f, "192.0.2.77", &d) == BLOCK_PASS);
    test_end();
    teardown(&f);
}

static void test_senders(void)
{
    struct fixture f;
    struct block_decision d;

    if (setup(&f, "") < 0)
        return;
    test_begin("block: bad senders by domain, pattern and domain tree");
    test_assert(at_mail(&f, "203.0.113.5", NULL, "x@spam.example", 1000, &d) == BLOCK_REJECT);
    test_assert_str(d.rcode, "550");
    test_assert_str(d.xcode, "5.7.1");
    test_assert(d.rule && d.rule->line == 1);
    test_assert(at_mail(&f, "203.0.113.5", NULL, "offer77@shop.example", 1000, &d) == BLOCK_REJECT);
    test_assert(d.rule && d.rule->line == 2);
    test_assert(at_mail(&f, "203.0.113.5", NULL, "a@eu.marketing.example", 1000, &d) == BLOCK_REJECT);
    test_assert(at_mail(&f, "203.0.113.5", NULL, "a@good.example", 1000, &d) == BLOCK_PASS);
    test_assert(at_mail(&f, "203.0.113.5", NULL, "", 1000, &d) == BLOCK_PASS);
    test_end();

    test_begin("block: allow_senders overrides bad_senders");
    test_assert(at_mail(&f, "203.0.113.5", NULL, "friend@spam.example", 1000, &d) == BLOCK_PASS);
    test_end();

    test_begin("block: trusted and authenticated senders are exempt");
    test_assert(at_mail(&f, "10.1.1.1", NULL, "x@spam.example", 1000, &d) == BLOCK_PASS);
    test_assert(at_mail(&f, "203.0.113.5", "alice@example.com", "x@spam.example", 1000, &d) == BLOCK_PASS);
    test_end();
    teardown(&f);

    test_begin("block: exemptions can be turned off");
    if (setup(&f, "exempt_trusted = no\nexempt_authenticated = no\n") == 0) {
        test_assert(at_mail(&f, "10.1.1.1", NULL, "x@spam.example", 1000, &d) == BLOCK_REJECT);
        test_assert(at_mail(&f, "203.0.113.5", "alice@example.com", "x@spam.example", 1000, &d)
                    == BLOCK_REJECT);
        teardown(&f);
    }
    test_end();
}

static void test_rates(void)
{
    struct fixture f;
    struct block_decision d;
    int passed = 0;

    if (setup(&f, "client_rate_limit = 5\nclient_rate_window = 1m\n"
              "sender_rate_limit = 3\nsender_rate_window = 1h\n") < 0)
        return;
    test_begin("block: client rate limit tempfails the message over the limit");
    for (int i = 0; i < 8; i++)
        passed += at_mail(&f, "203.0.113.5", NULL, "a@good.example", 1200 + i, &d) == BLOCK_PASS;
    test_assert_int(passed, 5);
    test_assert_str(d.rcode, "450");
    test_assert_str(d.check, "client_rate_limit");
    test_assert(at_mail(&f, "203.0.113.6", NULL, "a@good.example", 1207, &d) == BLOCK_PASS);
    test_end();

    test_begin("block: the client limit does not apply to exempt clients");
    passed = 0;
    for (int i = 0; i < 8; i++)
        passed += at_mail(&f, "10.0.0.9", NULL, "a@good.example", 1200 + i, &d) == BLOCK_PASS;
    test_assert_int(passed, 8);
    test_end();

    test_begin("block: the per-login limit applies even to exempt senders");
    passed = 0;
    for (int i = 0; i < 5; i++)
        passed += at_mail(&f, "10.0.0.9", "bob@example.com", "bob@example.com", 1200 + i, &d)
            == BLOCK_PASS;
    test_assert_int(passed, 3);
    test_assert_str(d.check, "sender_rate_limit");
    test_assert(at_mail(&f, "10.0.0.9", "carol@example.com", "carol@example.com", 1205, &d)
                == BLOCK_PASS);
    test_end();
    teardown(&f);
}

static void test_dictionary(void)
{
    struct fixture f;
    struct block_decision d;
    char rcpt[64];

    if (setup(&f, "dictionary_limit = 4\ndictionary_window = 1m\ndictionary_ban = 10m\n") < 0)
        return;
    test_begin("block: unknown local users refused 550 5.1.1; others pass");
    test_assert(at_rcpt(&f, "203.0.113.5", "a@good.example", "nobody@example.com", 2000, &d)
                == BLOCK_REJECT);
    test_assert_str(d.xcode, "5.1.1");
    test_assert(at_rcpt(&f, "203.0.113.5", "a@good.example", "carol@example.com", 2000, &d)
                == BLOCK_PASS);
    test_assert(at_rcpt(&f, "203.0.113.5", "a@good.example", "anyone@elsewhere.example", 2000, &d)
                == BLOCK_PASS);
    test_end();

    test_begin("block: user+tag finds user; postmaster always exists");
    test_assert(at_rcpt(&f, "203.0.113.7", "a@good.example", "carol+lists@example.com", 2000, &d)
                == BLOCK_PASS);
    test_assert(at_rcpt(&f, "203.0.113.7", "a@good.example", "nobody+x@example.com", 2000, &d)
                == BLOCK_REJECT);
    test_assert(at_rcpt(&f, "203.0.113.7", "a@good.example", "postmaster@example.org", 2000, &d)
                == BLOCK_PASS);
    test_end();

    test_begin("block: a dictionary attack bans the client (421), at every stage");
    for (int i = 0; i < 2; i++) {
        snprintf(rcpt, sizeof(rcpt), "guess%d@example.com", i);
        test_assert(at_rcpt(&f, "203.0.113.5", "a@good.example", rcpt, 2001, &d) == BLOCK_REJECT);
    }
    test_assert(at_rcpt(&f, "203.0.113.5", "a@good.example", "guess9@example.com", 2002, &d)
                == BLOCK_DISCONNECT);
    test_assert_str(d.rcode, "421");
    test_assert_str(d.check, "dictionary_limit");
    test_assert(at_rcpt(&f, "203.0.113.5", "a@good.example", "carol@example.com", 2003, &d)
                == BLOCK_DISCONNECT);
    test_assert(at_mail(&f, "203.0.113.5", NULL, "a@good.example", 2003, &d) == BLOCK_DISCONNECT);
    {
        struct block_client c = client(&f, "203.0.113.5", NULL);

        block_check_client(f.policy, f.state, &c, 2004, &d);
        test_assert(d.verdict == BLOCK_DISCONNECT);
        block_check_client(f.policy, f.state, &c, 2002 + 601, &d);
        test_assert(d.verdict == BLOCK_PASS);           /* the ban ends */
    }
    test_assert(at_rcpt(&f, "203.0.113.6", "a@good.example", "carol@example.com", 2003, &d)
                == BLOCK_PASS);
    test_end();

    test_begin("block: IPv6 clients are counted per /64");
    for (int i = 0; i < 4; i++) {
        char addr[64];

        snprintf(addr, sizeof(addr), "2001:db8:77:1::%x", i + 1);
        snprintf(rcpt, sizeof(rcpt), "v6guess%d@example.com", i);
        at_rcpt(&f, addr, "a@good.example", rcpt, 3000, &d);
    }
    test_assert(d.verdict == BLOCK_DISCONNECT);
    test_assert(at_mail(&f, "2001:db8:77:1::99", NULL, "a@good.example", 3001, &d) == BLOCK_DISCONNECT);
    test_assert(at_mail(&f, "2001:db8:77:2::1", NULL, "a@good.example", 3001, &d) == BLOCK_PASS);
    test_end();

    test_begin("block: exempt clients are refused unknown users but never banned");
    for (int i = 0; i < 10; i++) {
        snprintf(rcpt, sizeof(rcpt), "typo%d@example.com", i);
        test_assert(at_rcpt(&f, "10.2.3.4", "a@example.com", rcpt, 4000, &d) == BLOCK_REJECT);
    }
    test_assert_str(d.check, "unknown_recipient");
    test_end();
    teardown(&f);
}

static void test_personal(void)
{
    struct fixture f;
    struct block_decision d;
    char path[128];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/carol@example.com", personal_dir);
    fp = fopen(path, "w");
    fputs("# carol's own list\n@noisy.example\n+boss@noisy.example\nnot a valid entry\n", fp);
    fclose(fp);
    if (setup(&f, "") < 0)
        return;
    test_begin("block: personal block list refuses for that recipient only");
    test_assert(at_rcpt(&f, "203.0.113.5", "spammer@bad.example", "alice@example.com", 5000, &d)
                == BLOCK_REJECT);
    test_assert_str(d.check, "personal_list");
    test_assert(strstr(d.text, "alice@example.com") != NULL);
    test_assert(at_rcpt(&f, "203.0.113.5", "spammer@bad.example", "carol@example.com", 5000, &d)
                == BLOCK_PASS);
    test_assert(at_rcpt(&f, "203.0.113.5", "x@junk.example", "alice@example.com", 5000, &d)
                == BLOCK_REJECT);
    test_assert(at_rcpt(&f, "203.0.113.5", "x@junk.example", "alice+news@example.com", 5000, &d)
                == BLOCK_REJECT);
    test_end();

    test_begin("block: personal lists apply to trusted senders too");
    test_assert(at_rcpt(&f, "10.0.0.1", "spammer@bad.example", "alice@example.com", 5000, &d)
                == BLOCK_REJECT);
    test_end();

    test_begin("block: tag mode per user, and the user's allow list wins");
    test_assert(at_rcpt(&f, "203.0.113.5", "deals@promo.example", "bob@example.com", 5000, &d)
                == BLOCK_TAG);
    test_assert(at_rcpt(&f, "203.0.113.5", "news@promo.example", "bob@example.com", 5000, &d)
                == BLOCK_PASS);
    test_end();

    test_begin("block: the personal list file, with + for allowed senders");
    test_assert(at_rcpt(&f, "203.0.113.5", "x@noisy.example", "carol@example.com", 5000, &d)
                == BLOCK_REJECT);
    test_assert(at_rcpt(&f, "203.0.113.5", "boss@noisy.example", "carol@example.com", 5000, &d)
                == BLOCK_PASS);
    test_end();

    test_begin("block: an address can never name a file outside the list directory");
    {
        char outside[128];

        /* "../evil@example.com" is a user; a list for that name sits beside the directory. */
        snprintf(outside, sizeof(outside), "%s/../evil@example.com", personal_dir);
        fp = fopen(outside, "w");
        fputs("@noisy.example\n", fp);
        fclose(fp);
        test_assert(at_rcpt(&f, "203.0.113.5", "x@noisy.example", "../evil@example.com", 5000, &d)
                    == BLOCK_PASS);
        unlink(outside);
    }
    test_end();
    teardown(&f);

    test_begin("block: personal_action = tag is the site default");
    if (setup(&f, "personal_action = tag\n") == 0) {
        test_assert(at_rcpt(&f, "203.0.113.5", "spammer@bad.example", "alice@example.com", 5000, &d)
                    == BLOCK_TAG);
        teardown(&f);
    }
    test_end();

    test_begin("block: personal lists can be turned off");
    if (setup(&f, "personal_lists = no\n") == 0) {
        test_assert(at_rcpt(&f, "203.0.113.5", "spammer@bad.example", "alice@example.com", 5000, &d)
                    == BLOCK_PASS);
        teardown(&f);
    }
    test_end();
    unlink(path);
}

static void test_bad_list(void)
{
    struct fixture f;
    char *errors = NULL;
    struct mk_config *cfg;

    (void) f;
    test_begin("block: a broken list file is an error naming file and line");
    cfg = mk_config_load(test_tmpfile("[block]\n"), &errors);
    {
        char text[256];

        snprintf(text, sizeof(text), "[block]\nbad_senders = %s\n",
                 test_tmpfile("ok@example.com\n/broken(/\n"));
        mk_config_unref(cfg);
        cfg = mk_config_load(test_tmpfile(text), &errors);
    }
    test_assert(cfg != NULL);
    test_assert(block_policy_load(cfg, &errors) == NULL);
    test_assert(errors && strstr(errors, ":2: bad pattern"));
    free(errors);
    mk_config_unref(cfg);
    test_end();
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(personal_dir, sizeof(personal_dir), "%s/mk-personal-XXXXXX",
             tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (mkdtemp(personal_dir) == NULL)
        return 2;
    test_clients();
    test_senders();
    test_rates();
    test_dictionary();
    test_personal();
    test_bad_list();
    rmdir(personal_dir);
    return test_done();
}
