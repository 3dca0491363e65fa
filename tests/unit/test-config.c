/* Unit tests for mk_config: the schema, errors with file and line, defaults. */
#include "config.h"

#include <stdlib.h>

#include "mk_config.h"
#include "mk_test.h"
#include "mk_util.h"

static struct mk_config *load(const char *text, char **errors)
{
    return mk_config_load(test_tmpfile(text), errors);
}

static void test_good(void)
{
    char *errors = NULL;
    struct mk_config *cfg = load("# comment\n"
                                 "[global]\n"
                                 "log = stderr\n"
                                 "trusted_networks = 10.0.0.0/8,\n"
                                 "    192.168.0.0/16 ; continued\n"
                                 "[block]\n"
                                 "dictionary_limit = 5\n"
                                 "dictionary_window = 2m\n"
                                 "exempt_trusted = no\n"
                                 "socket = unix:/run/mailkeep/block.sock\n", &errors);
    char **list;

    test_begin("config: values, continuation lines, inline comments, defaults");
    test_assert(cfg != NULL);
    test_assert(errors == NULL);
    if (cfg == NULL) {
        printf("  %s\n", errors);
        free(errors);
        test_end();
        return;
    }
    test_assert_str(mk_config_str(cfg, "global", "log"), "stderr");
    list = mk_config_list(cfg, "global", "trusted_networks");
    test_assert_str(list[0], "10.0.0.0/8");
    test_assert_str(list[1], "192.168.0.0/16");
    test_assert(list[2] == NULL);
    mk_str_array_free(list);
    test_assert_int(mk_config_num(cfg, "block", "dictionary_limit"), 5);
    test_assert_int(mk_config_num(cfg, "block", "dictionary_window"), 120);
    test_assert(!mk_config_bool(cfg, "block", "exempt_trusted"));
    test_assert_int(mk_config_line(cfg, "block", "dictionary_limit"), 7);
    /* defaults */
    test_assert_int(mk_config_num(cfg, "block", "dictionary_ban"), 3600);
    test_assert(mk_config_bool(cfg, "block", "exempt_authenticated"));
    test_assert_str(mk_config_str(cfg, "block", "personal_action"), "reject");
    test_assert_int(mk_config_line(cfg, "block", "dictionary_ban"), 0);
    test_end();

    test_begin("config: reference counting keeps it alive");
    mk_config_ref(cfg);
    mk_config_unref(cfg);
    test_assert_str(mk_config_str(cfg, "global", "log"), "stderr");
    mk_config_unref(cfg);
    test_end();
}

static void test_errors(void)
{
    char *errors = NULL;
    struct mk_config *cfg = load("[global]\n"                      /* 1 */
                                 "log = syslogg\n"                  /* 2 */
                                 "reload_interval = 0\n"            /* 3 */
                                 "[block]\n"                        /* 4 */
                                 "dictionary_limit = ten\n"         /* 5 */
                                 "colour = blue\n"                  /* 6 */
                                 "exempt_trusted = maybe\n"         /* 7 */
                                 "bad_clients = relative/path\n"    /* 8 */
                                 "dictionary_limit = 3\n"           /* 9 */
                                 "[nosuch]\n"                       /* 10 */
                                 "a = b\n"                          /* 11 */
                                 "[block]\n"                        /* 12 */
                                 "dictionary_window = 5 minutes\n"  /* 13 */
                                 "[otp]\n"                          /* 14 */
                                 "group_policy = a:required staff\n"/* 15 */
                                 "trusted_networks = ::1 10.1/8\n", /* 16 */
                                 &errors);

    test_begin("config: every problem named with file, line and key");
    test_assert(cfg == NULL);
    test_assert(errors != NULL);
    if (errors) {
        test_assert(strstr(errors, ":2: [global] log: 'syslogg' is not one of syslog|stderr"));
        test_assert(strstr(errors, ":3: [global] reload_interval: '0' is out of range"));
        test_assert(strstr(errors, ":5: [block] dictionary_limit: 'ten' is not a whole number"));
        test_assert(strstr(errors, ":6: [block] unknown key 'colour'"));
        test_assert(strstr(errors, ":7: [block] exempt_trusted: 'maybe' is not yes or no"));
        test_assert(strstr(errors, ":8: [block] bad_clients: 'relative/path' is not an absolute path"));
        test_assert(strstr(errors, ":9: [block] dictionary_limit is set twice (first on line 5)"));
        /* reported once, at its first key */
        test_assert(strstr(errors, ":11: unknown section [nosuch]"));
        test_assert(!strstr(errors, ":11: [nosuch]"));
        test_assert(strstr(errors, ":13: [block] dictionary_window: '5 minutes' is not a duration"));
        test_assert(strstr(errors, ":15: [otp] group_policy: 'staff' is not NAME:CHOICE"));
        test_assert(strstr(errors, ":16: [otp] trusted_networks: '10.1/8' is not a network"));
    }
    free(errors);
    test_end();

    test_begin("config: syntax errors and over-long lines");
    cfg = load("[global]\nthis is not a setting\n", &errors);
    test_assert(cfg == NULL && errors && strstr(errors, ":2: syntax error"));
    free(errors);
    {
        char text[400];

        snprintf(text, sizeof(text), "[global]\nlocal_domains = %0300d\n", 0);
        cfg = load(text, &errors);
        test_assert(cfg == NULL && errors && strstr(errors, ":2: line is longer than"));
        free(errors);
    }
    cfg = load("log = stderr\n", &errors);
    test_assert(cfg == NULL && errors && strstr(errors, ":1: 'log' is outside any section"));
    free(errors);
    test_end();

    test_begin("config: a missing file is an error naming it");
    cfg = mk_config_load("/nonexistent/mailkeep.conf", &errors);
    test_assert(cfg == NULL && errors && strstr(errors, "/nonexistent/mailkeep.conf: cannot open"));
    free(errors);
    test_end();
}

static void test_print(void)
{
    char *errors = NULL, *buf = NULL;
    size_t len = 0;
    struct mk_config *cfg = load("[ldap]\nbind_password = s3cret\nuri = ldap://127.0.0.1\n", &errors);
    FILE *fp = open_memstream(&buf, &len);

    test_begin("config: show prints settings, never a password");
    mk_config_print(cfg, fp, false);
    fclose(fp);
    test_assert(strstr(buf, "uri = ldap://127.0.0.1") != NULL);
    test_assert(strstr(buf, "s3cret") == NULL);
    test_assert(strstr(buf, "bind_password = (set)") != NULL);
    test_assert(strstr(buf, "dictionary_limit") == NULL);
    free(buf);
    mk_config_unref(cfg);
    test_end();
}

static void test_families(void)
{
    char *errors = NULL, **names;
    struct mk_config *cfg = load("[detector employee_id]\n"
                                 "pattern = E[0-9]{6}\n"
                                 "keywords = 員工編號, employee number\n"
                                 "[detector staff_no]\n"
                                 "pattern = S-[0-9]{4}\n"
                                 "min_count = 3\n", &errors);
    char **kw;

    test_begin("config: named section families, in file order, with defaults");
    test_assert(cfg != NULL);
    if (cfg == NULL) {
        printf("  %s\n", errors);
        free(errors);
        test_end();
        return;
    }
    names = mk_config_sections(cfg, "detector");
    test_assert_str(names[0], "detector employee_id");
    test_assert_str(names[1], "detector staff_no");
    test_assert(names[2] == NULL);
    mk_str_array_free(names);
    test_assert_str(mk_config_str(cfg, "detector employee_id", "pattern"), "E[0-9]{6}");
    test_assert_int(mk_config_num(cfg, "detector staff_no", "min_count"), 3);
    test_assert_int(mk_config_num(cfg, "detector employee_id", "min_count"), 1);
    test_assert_int(mk_config_line(cfg, "detector staff_no", "pattern"), 5);
    kw = mk_config_list(cfg, "detector employee_id", "keywords");
    test_assert_str(kw[0], "員工編號");
    test_assert_str(mk_str_trim(kw[1]), "employee number");
    mk_str_array_free(kw);
    names = mk_config_sections(cfg, "rule");
    test_assert(names[0] == NULL);
    mk_str_array_free(names);
    mk_config_unref(cfg);
    test_end();

    test_begin("config: a family section needs its required keys and a good name");
    cfg = load("[detector no_pattern]\nwindow = 20\n[detector bad/name]\npattern = x\n"
               "[detector ok]\npattern = x\ncolour = red\n", &errors);
    test_assert(cfg == NULL);
    test_assert(errors && strstr(errors, ":2: [detector no_pattern] pattern is required"));
    test_assert(errors && strstr(errors, ":4: [detector bad/name]: a name is"));
    test_assert(errors && strstr(errors, ":7: [detector ok] unknown key 'colour'"));
    free(errors);
    cfg = load("[rule r1]\ndetectors = tw_national_id\naction = shout\n", &errors);
    test_assert(cfg == NULL && errors && strstr(errors, ":3: [rule r1] action: 'shout' is not one of"));
    free(errors);
    test_end();
}

int main(void)
{
    test_families();
    test_good();
    test_errors();
    test_print();
    return test_done();
}
