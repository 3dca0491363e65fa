/* Unit tests for mk_directory with the files backend. */
#include "config.h"

#include <stdlib.h>
#include <unistd.h>

#include "mk_directory.h"
#include "mk_test.h"

static struct mk_directory *open_dir(const char *domains, const char *users, char **errors)
{
    char text[1024];
    struct mk_config *cfg;
    struct mk_directory *dir;

    snprintf(text, sizeof(text), "[global]\ndirectory = files\nlocal_domains = static.example\n"
             "%s%s%s%s%s%s", domains ? "directory_domains_file = " : "", domains ? domains : "",
             domains ? "\n" : "", users ? "directory_users_file = " : "", users ? users : "",
             users ? "\n" : "");
    if ((cfg = mk_config_load(test_tmpfile(text), errors)) == NULL)
        return NULL;
    dir = mk_directory_open(cfg, errors);
    mk_config_unref(cfg);
    return dir;
}

int main(void)
{
    char *errors = NULL;
    char domains[64], users[64];
    struct mk_directory *dir;
    struct mk_dir_user *u = NULL;

    snprintf(domains, sizeof(domains), "%s", test_tmpfile("# hosted\nExample.COM\nexample.org\n"));
    snprintf(users, sizeof(users), "%s",
             test_tmpfile("alice@example.com role=user group=sales,staff "
                          "blocked_sender=@junk.example,spammer@bad.example block_mode=tag\n"
                          "# a comment\n"
                          "\n"
                          "Bob@Example.com\n"));
    dir = open_dir(domains, users, &errors);

    test_begin("directory files: domains from the file and from the config");
    test_assert(dir != NULL);
    if (dir == NULL) {
        printf("  %s\n", errors);
        return test_done();
    }
    test_assert_str(mk_directory_backend(dir), "files");
    test_assert(mk_directory_domain(dir, "example.com") == MK_DIR_FOUND);
    test_assert(mk_directory_domain(dir, "EXAMPLE.org") == MK_DIR_FOUND);
    test_assert(mk_directory_domain(dir, "static.example") == MK_DIR_FOUND);
    test_assert(mk_directory_domain(dir, "example.net") == MK_DIR_NOT_FOUND);
    test_end();

    test_begin("directory files: users, groups and attributes");
    test_assert(mk_directory_user(dir, "alice@example.com", &u) == MK_DIR_FOUND);
    test_assert_str(mk_dir_user_value(u, "role"), "user");
    test_assert_str(mk_dir_user_values(u, "blocked_sender")[1], "spammer@bad.example");
    test_assert(mk_dir_user_values(u, "blocked_sender")[2] == NULL);
    test_assert_str(mk_dir_user_value(u, "block_mode"), "tag");
    test_assert(mk_dir_user_in_group(u, "Sales"));
    test_assert(!mk_dir_user_in_group(u, "admins"));
    test_assert(mk_dir_user_value(u, "otp_policy") == NULL);
    test_assert(mk_dir_user_values(u, "otp_policy")[0] == NULL);
    mk_dir_user_unref(u);
    test_assert(mk_directory_user(dir, "bob@example.com", &u) == MK_DIR_FOUND);
    mk_dir_user_unref(u);
    test_assert(mk_directory_user(dir, "mallory@example.com", &u) == MK_DIR_NOT_FOUND && u == NULL);
    test_end();

    test_begin("directory files: a changed file is re-read; a broken one keeps the old");
    {
        FILE *fp = fopen(users, "w");

        fputs("carol@example.com\n", fp);
        fclose(fp);
        sleep(1);                       /* the backend looks at most once a second */
        sleep(1);
        test_assert(mk_directory_user(dir, "carol@example.com", &u) == MK_DIR_FOUND);
        mk_dir_user_unref(u);
        test_assert(mk_directory_user(dir, "alice@example.com", &u) == MK_DIR_NOT_FOUND);
        fp = fopen(users, "w");
        fputs("dave@example.com colour=red\n", fp);
        fclose(fp);
        sleep(2);
        test_assert(mk_directory_user(dir, "carol@example.com", &u) == MK_DIR_FOUND);
        mk_dir_user_unref(u);
    }
    test_end();
    mk_directory_unref(dir);

    test_begin("directory files: errors at start name file and line");
    dir = open_dir(test_tmpfile("good.example\nbad..example\n"), NULL, &errors);
    test_assert(dir == NULL && errors && strstr(errors, ":2: 'bad..example' is not a valid domain"));
    free(errors);
    dir = open_dir(NULL, test_tmpfile("alice@example.com role\n"), &errors);
    test_assert(dir == NULL && errors && strstr(errors, ":1: 'role' is not attribute=value"));
    free(errors);
    dir = open_dir(NULL, test_tmpfile("not-an-address role=user\n"), &errors);
    test_assert(dir == NULL && errors && strstr(errors, "is not a mail address"));
    free(errors);
    dir = open_dir("/nonexistent/domains", NULL, &errors);
    test_assert(dir == NULL && errors && strstr(errors, "cannot open"));
    free(errors);
    test_end();

    test_begin("directory files: without a users file every user exists");
    dir = open_dir(NULL, NULL, &errors);
    test_assert(dir != NULL);
    test_assert(mk_directory_user(dir, "anyone@static.example", &u) == MK_DIR_FOUND);
    test_assert(u != NULL && mk_dir_user_value(u, "role") == NULL);
    mk_dir_user_unref(u);
    mk_directory_unref(dir);
    test_end();

    test_begin("directory: ldap without a URI is a config error");
    {
        struct mk_config *cfg = mk_config_load(test_tmpfile("[global]\ndirectory = ldap\n"), &errors);

        test_assert(cfg != NULL);
        dir = mk_directory_open(cfg, &errors);
        test_assert(dir == NULL && errors && strstr(errors, "[ldap] uri"));
        free(errors);
        mk_config_unref(cfg);
    }
    test_end();
    return test_done();
}
