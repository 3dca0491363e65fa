/*
 * libFuzzer target: mailkeep.conf (mk_config_load). The input is written
 * to a temporary file, since configuration is read from files.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mk_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    struct mk_config *cfg;
    char *errors = NULL;
    FILE *fp;

    if (path[0] == '\0') {
        int fd;

        snprintf(path, sizeof(path), "/tmp/mk-fuzz-config-XXXXXX");
        if ((fd = mkstemp(path)) < 0)
            abort();
        close(fd);
    }
    if ((fp = fopen(path, "w")) == NULL)
        abort();
    fwrite(data, 1, size, fp);
    fclose(fp);
    cfg = mk_config_load(path, &errors);
    free(errors);
    if (cfg) {
        FILE *null = fopen("/dev/null", "w");

        mk_config_print(cfg, null, true);
        fclose(null);
        mk_config_unref(cfg);
    }
    return 0;
}
