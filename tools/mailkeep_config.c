/*
 * mailkeep config - check and print mailkeep.conf.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "mailkeep.h"
#include "mk_config.h"

int mailkeep_config(const char *config_path, int argc, char **argv)
{
    struct mk_config *cfg;
    bool all = false;

    if (argc < 1 || (strcmp(argv[0], "check") != 0 && strcmp(argv[0], "show") != 0)
        || (argc == 2 && strcmp(argv[1], "-a") != 0) || argc > 2) {
        fprintf(stderr, "usage: mailkeep config check | show [-a]\n");
        return EX_USAGE;
    }
    all = argc == 2;
    if ((cfg = mailkeep_load_config(config_path)) == NULL)
        return EX_CONFIG;
    if (strcmp(argv[0], "check") == 0)
        printf("%s: valid\n", config_path);
    else
        mk_config_print(cfg, stdout, all);
    mk_config_unref(cfg);
    return 0;
}
