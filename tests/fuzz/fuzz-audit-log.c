/*
 * libFuzzer target: the audit log's reader, verifier and start-up
 * recovery (au_log) on files of any content. The input is up to three
 * parts separated by two NUL bytes: the first day's file, the second
 * day's, the head. The key is fixed, so that the corpus's logs carry
 * valid signatures and mutations start from intact logs.
 */
#include "config.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "au_keys.h"
#include "au_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* a key for this target only, nowhere else */
static const char fuzz_key[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIOlM6ndm7LbdUAzWDYyHMVBxdPIOZ6q8A+3wbmU71yUQ\n"
    "-----END PRIVATE KEY-----\n";
static const char fuzz_pub[] =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAKWVxauTv0RL71AaKsOL5Cozl8a0AxkTfb7idkAHeKPs=\n"
    "-----END PUBLIC KEY-----\n";
static const char *const fuzz_files[] = {"2026-11-23.log", "2026-11-24.log", "head"};

static char fuzz_dir[64], fuzz_log[128];
static EVP_PKEY *fuzz_sign, *fuzz_verify;

static void fuzz_write(const char *dir, const char *name, const char *text, size_t len, int mode)
{
    char path[256];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((fp = fopen(path, "w")) == NULL)
        abort();
    fwrite(text, 1, len, fp);
    fclose(fp);
    chmod(path, (mode_t) mode);
}

static int fuzz_remove(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove(path);
}

static void fuzz_cleanup(void)
{
    nftw(fuzz_dir, fuzz_remove, 8, FTW_DEPTH | FTW_PHYS);
}

static void fuzz_init(void)
{
    char keys[128], *error = NULL;

    snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/mk-fuzz-audit-XXXXXX");
    if (mkdtemp(fuzz_dir) == NULL)
        abort();
    snprintf(keys, sizeof(keys), "%s/keys", fuzz_dir);
    snprintf(fuzz_log, sizeof(fuzz_log), "%s/log", fuzz_dir);
    mkdir(keys, 0700);
    fuzz_write(keys, AU_KEYS_SIGN_FILE, fuzz_key, sizeof(fuzz_key) - 1, 0600);
    fuzz_write(keys, AU_KEYS_VERIFY_FILE, fuzz_pub, sizeof(fuzz_pub) - 1, 0644);
    if (au_keys_load(keys, true, &fuzz_sign, &fuzz_verify, &error) < 0) {
        fprintf(stderr, "%s\n", error);
        abort();
    }
    atexit(fuzz_cleanup);
}

static int fuzz_record(void *arg, const struct au_log_record *r)
{
    (void) arg;
    if (r->len > AU_LOG_MAX_LINE || r->hashed > r->len || r->seq == 0
        || (!r->checkpoint && (r->members_len == 0 || r->members < r->text
                               || r->members + r->members_len > r->text + r->len)))
        abort();
    return 0;
}

static void fuzz_problem(void *arg, const struct au_log_problem *p)
{
    (void) arg;
    if (p->detail == NULL || p->file == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *) data, *end = p + size;
    struct au_log_stats st;
    struct au_log *l;
    char *error = NULL;
    int problems;

    if (fuzz_sign == NULL)
        fuzz_init();
    /* lines one by one, as the parser sees them */
    for (const char *q = p; q < end; ) {
        const char *nl = memchr(q, '\n', (size_t) (end - q));
        struct au_log_record r;
        size_t len = nl ? (size_t) (nl - q) : (size_t) (end - q);

        if (au_log_parse(q, len, &r) == NULL)
            fuzz_record(NULL, &r);
        q += len + 1;
    }
    /* the files */
    nftw(fuzz_log, fuzz_remove, 8, FTW_DEPTH | FTW_PHYS);
    mkdir(fuzz_log, 0700);
    for (int i = 0; i < 3 && p <= end; i++) {
        const char *sep = memmem(p, (size_t) (end - p), "\0\0", 2);
        size_t len = sep ? (size_t) (sep - p) : (size_t) (end - p);

        if (len > 0 || i < 2)
            fuzz_write(fuzz_log, fuzz_files[i], p, len, 0600);
        if (sep == NULL)
            break;
        p = sep + 2;
    }
    if (au_log_read(fuzz_log, 0, INT64_MAX, fuzz_record, NULL, &error) < 0)
        free(error);
    error = NULL;
    problems = au_log_verify(fuzz_log, fuzz_verify, fuzz_problem, NULL, &st, &error);
    free(error);
    error = NULL;
    l = au_log_open(fuzz_log, fuzz_sign, fuzz_verify, &error);
    if (problems == 0 && l == NULL) {
        fprintf(stderr, "intact, but the writer refuses it: %s\n", error);
        abort();
    }
    free(error);
    if (l) {
        free(au_log_take_note(l));
        au_log_close(l);
        /* what start-up leaves must still read */
        if (au_log_verify(fuzz_log, fuzz_verify, fuzz_problem, NULL, &st, &error) < 0)
            free(error);
    }
    return 0;
}
