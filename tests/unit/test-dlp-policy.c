/* Unit tests for mailkeep-dlp's rules (dlp_policy) and incident records. */
#include "config.h"

#include <jansson.h>
#include <stdlib.h>

#include "dlp_incident.h"
#include "dlp_policy.h"
#include "mk_test.h"
#include "mk_util.h"

#define ID_TEXT "請核對身分證字號 A123456789 是否正確"          /* a valid ID, keyword near: high */
#define CARD_TEXT "card number 4111 1111 1111 1111 exp 12/29"   /* Visa test number: high */

static struct dlp_policy *load(const char *rules, char **errors)
{
    char text[4096];
    struct mk_config *cfg;
    struct dlp_policy *p;

    snprintf(text, sizeof(text), "[dlp]\nunscannable_action = quarantine\n%s", rules);
    if ((cfg = mk_config_load(test_tmpfile(text), errors)) == NULL)
        return NULL;
    p = dlp_policy_load(cfg, errors);
    mk_config_unref(cfg);
    return p;
}

static struct mk_scan_report *scan(struct dlp_policy *p, const char *text)
{
    struct mk_detect_scratch *s = mk_detect_scratch_new(p->detect);
    struct mk_scan_report *r = mk_scan_file(p->detect, s, "note.txt", text, strlen(text), &p->limits);

    mk_detect_scratch_free(s);
    return r;
}

static enum dlp_action decide(struct dlp_policy *p, const struct mk_scan_report *r,
                              enum mk_direction dir, const struct mk_dir_user *sender,
                              const struct mk_dir_user *rcpt, struct dlp_verdict *v)
{
    struct dlp_party party = {"someone@example.net", dir, rcpt};

    dlp_evaluate(p, r, sender, &party, 1, v);
    return v->action;
}

static const char *rules =
    "[rule outbound-ids]\n"
    "direction = outbound\n"
    "detectors = tw_national_id:high\n"
    "action = quarantine\n"
    "[rule cards-anywhere]\n"
    "detectors = payment_card:medium:1\n"
    "action = tag\n"
    "subject_prefix = [DLP]\n"
    "[rule finance-ids-inside]\n"
    "direction = internal\n"
    "recipient_groups = finance\n"
    "detectors = tw_national_id\n"
    "action = warn\n"
    "[rule bulk-ids]\n"
    "detectors = tw_national_id:medium:3\n"
    "action = reject\n";

int main(void)
{
    char *errors = NULL;
    struct dlp_policy *p = load(rules, &errors);
    struct mk_scan_report *ids, *card, *clean, *three;
    struct mk_dir_user *finance = mk_dir_user_new("fin@example.com");
    struct dlp_verdict v;

    test_begin("dlp: rules load with their detectors");
    test_assert(p != NULL);
    if (p == NULL) {
        printf("  %s\n", errors);
        return test_done();
    }
    test_assert_int(p->nrules, 4);
    test_assert_int(p->rules[0].terms[0].min_confidence, MK_CONF_HIGH);
    test_assert_int(p->rules[3].terms[0].min_count, 3);
    test_end();
    mk_dir_user_add_group(finance, "finance");

    ids = scan(p, ID_TEXT);
    card = scan(p, CARD_TEXT);
    clean = scan(p, "nothing personal here, 只是一般的文字 123");
    three = scan(p, "A123456789, B142049223, C100117003 都是身分證");
    test_begin("dlp: the scans see what the rules need");
    test_assert(ids && card && clean && three);
    test_end();
    if (!(ids && card && clean && three))
        return test_done();

    test_begin("dlp: direction decides: outbound IDs are quarantined, inbound are not");
    test_assert(decide(p, ids, MK_OUTBOUND, NULL, NULL, &v) == DLP_QUARANTINE);
    test_assert(v.deciding && strcmp(v.deciding->name, "outbound-ids") == 0);
    test_assert(strstr(v.reason, "tw_national_id x1 (high) in note.txt") != NULL);
    test_assert(strstr(v.reason, "A123456789") == NULL);
    test_assert(decide(p, ids, MK_INBOUND, NULL, NULL, &v) == DLP_PASS);
    test_end();

    test_begin("dlp: groups: internal mail to finance warns, to others passes");
    test_assert(decide(p, ids, MK_INTERNAL, NULL, finance, &v) == DLP_WARN);
    test_assert(decide(p, ids, MK_INTERNAL, NULL, NULL, &v) == DLP_PASS);
    test_end();

    test_begin("dlp: a rule for every direction; the most severe action wins");
    test_assert(decide(p, card, MK_INBOUND, NULL, NULL, &v) == DLP_TAG);
    test_assert(v.deciding && strcmp(v.deciding->subject_prefix, "[DLP]") == 0);
    test_assert(decide(p, three, MK_OUTBOUND, NULL, NULL, &v) == DLP_REJECT);
    test_assert(v.nfired == 2);
    test_assert(strstr(v.reason, "x3") != NULL);
    test_assert(decide(p, clean, MK_OUTBOUND, NULL, NULL, &v) == DLP_PASS && v.nfired == 0);
    test_end();

    test_begin("dlp: several recipients: the rule fires once, for the first that matches");
    {
        struct dlp_party parties[2] = {{"in@example.com", MK_INTERNAL, NULL},
                                       {"out@example.net", MK_OUTBOUND, NULL}};

        dlp_evaluate(p, ids, NULL, parties, 2, &v);
        test_assert(v.action == DLP_QUARANTINE);
        test_assert(v.nfired == 1 && v.fired[0].recipient == 1);
    }
    test_end();

    test_begin("dlp: unscannable content takes unscannable_action");
    clean->unscannable = true;
    clean->problems = calloc(1, sizeof(*clean->problems));
    clean->problems[0].location = strdup("attachment \"secret.zip\"");
    clean->problems[0].reason = strdup("encrypted archive");
    clean->problems[0].unscannable = true;
    clean->nproblems = 1;
    test_assert(decide(p, clean, MK_INBOUND, NULL, NULL, &v) == DLP_QUARANTINE);
    test_assert(v.unscannable && v.deciding == NULL);
    test_assert(strstr(v.reason, "encrypted archive in attachment \"secret.zip\"") != NULL);
    test_end();

    test_begin("dlp: an incident is one JSON line with masked samples only");
    {
        struct dlp_party party = {"out@example.net", MK_OUTBOUND, NULL};
        struct dlp_incident in;
        json_error_t err;
        json_t *j;
        char *json;

        dlp_evaluate(p, three, NULL, &party, 1, &v);
        in = (struct dlp_incident) {0, "4AbC123", "203.0.113.5", "alice@example.com\xff", &party, 1,
                                    p, three, &v};
        json = dlp_incident_json(&in);
        test_assert(strchr(json, '\n') == NULL);
        test_assert(strstr(json, "A123456789") == NULL && strstr(json, "B142049223") == NULL);
        j = json_loads(json, 0, &err);
        test_assert(j != NULL);
        test_assert_str(json_string_value(json_object_get(j, "action")), "reject");
        test_assert_str(json_string_value(json_object_get(j, "queue_id")), "4AbC123");
        test_assert(json_array_size(json_object_get(j, "findings")) == 1);
        test_assert_str(json_string_value(json_object_get(json_array_get(json_object_get(j, "findings"), 0),
                                                          "detector")), "tw_national_id");
        test_assert(json_array_size(json_object_get(j, "rules")) == 2);
        test_assert(strstr(json_string_value(json_object_get(j, "sender")), "alice@example.com") != NULL);
        json_decref(j);
        {
            char path[64];

            snprintf(path, sizeof(path), "%s", test_tmpfile(""));
            test_assert(dlp_incident_append(path, json) == 0);
            test_assert(dlp_incident_append(path, json) == 0);
            {
                size_t len;
                char *e = NULL, *text = mk_file_read(path, &len, NULL, &e);

                test_assert(text && len == 2 * (strlen(json) + 1));
                free(text);
            }
            test_assert(dlp_incident_append("/nonexistent/dir/incidents", json) < 0);
        }
        free(json);
    }
    test_end();

    test_begin("dlp: bad rules are errors naming file, line and rule");
    dlp_policy_free(load("[rule r]\ndetectors = no_such_detector\naction = tag\n", &errors) );
    test_assert(errors && strstr(errors, ":4: [rule r] detectors: 'no_such_detector': no such detector"));
    free(errors);
    errors = NULL;
    test_assert(load("[rule r]\ndetectors = payment_card:certain\naction = tag\n", &errors) == NULL);
    test_assert(errors && strstr(errors, "confidence is low, medium or high"));
    free(errors);
    errors = NULL;
    test_assert(load("[rule r]\ndirection = sideways\ndetectors = email\naction = tag\n", &errors) == NULL);
    test_assert(errors && strstr(errors, "[rule r] direction: 'sideways'"));
    free(errors);
    errors = NULL;
    test_assert(load("[detector x]\npattern = (unclosed\n", &errors) == NULL);
    test_assert(errors && strstr(errors, "x"));
    free(errors);
    test_end();

    test_begin("dlp: a custom detector in a rule");
    {
        struct dlp_policy *q = load("[detector employee_id]\npattern = \\bEMP-[0-9]{6}\\b\n"
                                    "keywords = 員工編號, employee\n"
                                    "[rule staff]\ndetectors = employee_id:medium\naction = reject\n",
                                    &errors);
        struct mk_scan_report *r;

        test_assert(q != NULL);
        if (q) {
            r = scan(q, "員工編號 EMP-123456");
            test_assert(r && decide(q, r, MK_OUTBOUND, NULL, NULL, &v) == DLP_REJECT);
            mk_scan_report_free(r);
            r = scan(q, "EMP-123456");          /* pattern only: low, under the rule's medium */
            test_assert(r && decide(q, r, MK_OUTBOUND, NULL, NULL, &v) == DLP_PASS);
            mk_scan_report_free(r);
            dlp_policy_free(q);
        } else {
            printf("  %s\n", errors);
        }
    }
    test_end();

    mk_scan_report_free(ids);
    mk_scan_report_free(card);
    mk_scan_report_free(clean);
    mk_scan_report_free(three);
    mk_dir_user_unref(finance);
    dlp_policy_free(p);
    return test_done();
}
