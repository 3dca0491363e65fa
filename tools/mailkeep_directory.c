/*
 * mailkeep directory - ask the directory what the milters would ask it.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "mailkeep.h"
#include "mk_addr.h"
#include "mk_config.h"
#include "mk_directory.h"

static int mailkeep_directory_status(enum mk_dir_status status, const char *what)
{
    switch (status) {
    case MK_DIR_FOUND:
        return 0;
    case MK_DIR_NOT_FOUND:
        printf("%s: not found\n", what);
        return 1;
    case MK_DIR_TEMPFAIL:
    default:
        fprintf(stderr, "%s: the directory cannot answer now\n", what);
        return EX_TEMPFAIL;
    }
}

int mailkeep_directory(const char *config_path, int argc, char **argv)
{
    struct mk_config *cfg;
    struct mk_directory *dir;
    struct mk_dir_user *user = NULL;
    char *error, *address;
    int rc;

    if (argc != 2 || (strcmp(argv[0], "domain") != 0 && strcmp(argv[0], "user") != 0)) {
        fprintf(stderr, "usage: mailkeep directory domain DOMAIN | user ADDRESS\n");
        return EX_USAGE;
    }
    if ((cfg = mailkeep_load_config(config_path)) == NULL)
        return EX_CONFIG;
    if ((dir = mk_directory_open(cfg, &error)) == NULL) {
        fprintf(stderr, "%s\n", error);
        free(error);
        mk_config_unref(cfg);
        return EX_CONFIG;
    }
    if (strcmp(argv[0], "domain") == 0) {
        rc = mailkeep_directory_status(mk_directory_domain(dir, argv[1]), argv[1]);
        if (rc == 0)
            printf("%s: local (%s)\n", argv[1], mk_directory_backend(dir));
    } else if ((address = mk_addr_normalize(argv[1])) == NULL || mk_addr_domain(address) == NULL) {
        fprintf(stderr, "%s: not a mail address\n", argv[1]);
        free(address);
        rc = EX_USAGE;
    } else {
        rc = mailkeep_directory_status(mk_directory_user(dir, address, &user), address);
        if (rc == 0) {
            printf("address: %s\n", user->address);
            if (user->dn)
                printf("dn: %s\n", user->dn);
            for (size_t i = 0; i < user->ngroups; i++)
                printf("group: %s\n", user->groups[i]);
            for (size_t i = 0; i < user->nattrs; i++)
                for (size_t v = 0; v < user->attrs[i].count; v++)
                    printf("%s: %s\n", user->attrs[i].name, user->attrs[i].values[v]);
        }
        mk_dir_user_unref(user);
        free(address);
    }
    mk_directory_unref(dir);
    mk_config_unref(cfg);
    return rc;
}
