/* Unit tests for mailkeep-av's engine wrapper (av_engine), with a signature
 * database written by the test. */
#include "config.h"

#include <clamav.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "av_engine.h"
#include "mk_test.h"
#include "mk_util.h"

static const char eicar[] =
    "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

int main(void)
{
    char dir[64], path[128], text[512], *error = NULL, **files = NULL;
    struct av_engine *e;
    struct mk_config *cfg;
    const char *virus = NULL;
    FILE *fp;

    if (cl_init(CL_INIT_DEFAULT) != CL_SUCCESS)
        return 2;
    av_engine_init();
    snprintf(dir, sizeof(dir), "/tmp/mk-av-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 2;

    test_begin("av engine: no databases is an error that says what to do");
    snprintf(text, sizeof(text), "[av]\ndatabase_dir = %s\ntemp_dir = %s\n", dir, dir);
    cfg = mk_config_load(test_tmpfile(text), &error);
    test_assert(cfg != NULL);
    e = av_engine_load(cfg, &files, &error);
    test_assert(e == NULL && error && strstr(error, "no virus databases"));
    free(error);
    mk_str_array_free(files);
    test_end();

    /* 44d88612fea8a8f36de82e1278abb02f is the MD5 of the 68-byte EICAR string. */
    snprintf(path, sizeof(path), "%s/test.hdb", dir);
    fp = fopen(path, "w");
    fprintf(fp, "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n");
    fclose(fp);

    test_begin("av engine: loads the test's signature and lists the files to watch");
    e = av_engine_load(cfg, &files, &error);
    test_assert(e != NULL);
    if (e == NULL) {
        printf("  %s\n", error);
        return test_done();
    }
    test_assert_int(av_engine_signatures(e), 1);
    test_assert_str(files[0], dir);
    test_assert_str(files[1], path);
    test_assert(files[2] == NULL);
    mk_str_array_free(files);
    test_end();

    test_begin("av engine: EICAR is infected, other bytes are clean");
    test_assert(av_engine_scan_memory(e, eicar, strlen(eicar), &virus) == AV_INFECTED);
    test_assert(virus && strstr(virus, "Eicar-Test-Signature"));
    test_assert(av_engine_scan_memory(e, "hello", 5, &virus) == AV_CLEAN);
    test_assert(av_engine_scan_memory(e, "", 0, &virus) == AV_CLEAN);
    test_end();

    test_begin("av engine: scanning a file gives the same verdicts");
    {
        FILE *tmp = tmpfile();

        fputs(eicar, tmp);
        fflush(tmp);
        test_assert(av_engine_scan_fd(e, fileno(tmp), &virus) == AV_INFECTED);
        fclose(tmp);
        tmp = tmpfile();
        test_assert(av_engine_scan_fd(e, fileno(tmp), &virus) == AV_CLEAN);
        fclose(tmp);
    }
    test_end();

    test_begin("av engine: a temporary directory gone after load fails the scan, never passes it");
    {
        char sub[128], conftext[512];
        struct mk_config *c2;
        struct av_engine *e2;

        snprintf(sub, sizeof(sub), "%s/tmp", dir);
        mkdir(sub, 0700);
        snprintf(conftext, sizeof(conftext), "[av]\ndatabase_dir = %s\ntemp_dir = %s\n", dir, sub);
        c2 = mk_config_load(test_tmpfile(conftext), &error);
        e2 = c2 ? av_engine_load(c2, &files, &error) : NULL;
        mk_str_array_free(files);
        test_assert(e2 != NULL);
        rmdir(sub);
        if (e2) {
            enum av_result r = av_engine_scan_memory(e2, eicar, strlen(eicar), &virus);

            test_assert(r != AV_CLEAN);
            av_engine_free(e2);
        }
        mk_config_unref(c2);
    }
    test_end();

    test_begin("av engine: a temp_dir it cannot write is refused at load");
    {
        struct mk_config *bad;

        snprintf(text, sizeof(text), "[av]\ndatabase_dir = %s\ntemp_dir = /nonexistent/tmp\n", dir);
        bad = mk_config_load(test_tmpfile(text), &error);
        test_assert(bad != NULL);
        test_assert(av_engine_load(bad, &files, &error) == NULL);
        test_assert(error && strstr(error, "temp_dir /nonexistent/tmp is not a writable directory"));
        free(error);
        mk_str_array_free(files);
        mk_config_unref(bad);
    }
    test_end();

    av_engine_free(e);
    mk_config_unref(cfg);
    unlink(path);
    rmdir(dir);
    return test_done();
}
