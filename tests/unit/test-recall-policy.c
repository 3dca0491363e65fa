/* Unit tests for recall_policy: who owns a message, how long undo-send holds it. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_config.h"
#include "mk_direction.h"
#include "mk_directory.h"
#include "mk_test.h"
#include "recall_policy.h"

static struct mk_config *load(const char *recall)
{
    char text[2048], *errors = NULL;
    struct mk_config *cfg;
    char domains[64], users[64];

    snprintf(domains, sizeof(domains), "%s", test_tmpfile("example.com\nexample.org\n"));
    snprintf(users, sizeof(users), "%s",
             test_tmpfile("alice@example.com group=sales\n"
                          "bob@example.com group=sales,exec option=undo_send=5s\n"
                          "carol@example.com group=exec,staff\n"
                          "dave@example.com\n"));
    snprintf(text, sizeof(text), "[global]\ndirectory = files\ndirectory_domains_file = %s\n"
             "directory_users_file = %s\n[recall]\n%s", domains, users, recall);
    if ((cfg = mk_config_load(test_tmpfile(text), &errors)) == NULL) {
        printf("    %s\n", errors);
        free(errors);
    }
    return cfg;
}

int main(void)
{
    struct mk_config *cfg;
    struct mk_directory *dir;
    struct recall_policy *p;
    struct mk_origin sasl = {.authenticated = true}, trusted = {.trusted_network = true},
        outside = {0};
    enum mk_dir_status st;
    long long seconds;
    char *error = NULL, *owner;

    test_begin("recall_owner: the SASL login, whatever the envelope says");
    cfg = load("undo_send = 10s\nundo_send_groups = sales:30s exec:2m\nundo_send_max = 90s\n"
               "message_id_domain = mail.example.com\n");
    test_assert(cfg != NULL);
    dir = mk_directory_open(cfg, &error);
    test_assert(dir != NULL);
    owner = recall_owner(dir, &sasl, "Bob@Example.com", "alice@example.com", &st);
    test_assert_str(owner, "bob@example.com");
    free(owner);
    test_end();

    test_begin("recall_owner: trusted origin, local sender");
    owner = recall_owner(dir, &trusted, NULL, "alice@example.com", &st);
    test_assert_str(owner, "alice@example.com");
    free(owner);
    test_assert(recall_owner(dir, &trusted, NULL, "someone@elsewhere.example", &st) == NULL);
    test_assert(st == MK_DIR_NOT_FOUND);
    test_assert(recall_owner(dir, &trusted, NULL, "", &st) == NULL);
    test_end();

    test_begin("recall_owner: mail from outside has no owner");
    test_assert(recall_owner(dir, &outside, NULL, "alice@example.com", &st) == NULL);
    test_assert(st == MK_DIR_FOUND);
    test_end();

    test_begin("recall_undo_delay: own option, then the longest group, then the default");
    p = recall_policy_create(cfg, &error);
    test_assert(p != NULL);
    test_assert_str(p->id_domain, "mail.example.com");
    test_assert(recall_undo_delay(p, dir, "bob@example.com", &seconds) == MK_DIR_FOUND);
    test_assert_int(seconds, 5);        /* his own, though exec says 2m */
    test_assert(recall_undo_delay(p, dir, "alice@example.com", &seconds) == MK_DIR_FOUND);
    test_assert_int(seconds, 30);
    test_assert(recall_undo_delay(p, dir, "carol@example.com", &seconds) == MK_DIR_FOUND);
    test_assert_int(seconds, 90);       /* exec's 2m, cut to undo_send_max */
    test_assert(recall_undo_delay(p, dir, "dave@example.com", &seconds) == MK_DIR_FOUND);
    test_assert_int(seconds, 10);
    test_assert(recall_undo_delay(p, dir, "nobody@example.com", &seconds) == MK_DIR_FOUND);
    test_assert_int(seconds, 10);
    test_assert(recall_undo_delay(p, dir, NULL, &seconds) == MK_DIR_FOUND);
    test_assert_int(seconds, 10);
    recall_policy_free(p);
    mk_directory_unref(dir);
    mk_config_unref(cfg);
    test_end();

    test_begin("recall_policy_create: a bad group entry is named");
    cfg = load("undo_send_groups = sales:30s exec\n");
    test_assert(cfg != NULL);
    test_assert(recall_policy_create(cfg, &error) == NULL);
    test_assert(error != NULL && strstr(error, "\"exec\"") != NULL);
    free(error);
    error = NULL;
    mk_config_unref(cfg);
    cfg = load("undo_send_groups = sales:soon\n");
    test_assert(recall_policy_create(cfg, &error) == NULL && error != NULL);
    free(error);
    mk_config_unref(cfg);
    test_end();

    test_begin("recall_policy_create: the host name when no domain is set");
    cfg = load("");
    error = NULL;
    p = recall_policy_create(cfg, &error);
    test_assert(p != NULL && p->id_domain[0] != '\0');
    test_assert(p != NULL && p->undo_default == 0);
    recall_policy_free(p);
    mk_config_unref(cfg);
    test_end();

    return test_done();
}
