/*
 * NAME
 *	mk_test 3h
 * SUMMARY
 *	a small unit-test harness, after Dovecot's test-common
 * SYNOPSIS
 *	#include "mk_test.h"
 *
 *	test_begin("what this case shows");
 *	test_assert(expression);
 *	test_assert_str(actual, expected);
 *	test_assert_int(actual, expected);
 *	test_end();
 *	path = test_tmpfile("file contents");
 *	return test_done();
 * DESCRIPTION
 *	Each case prints one line, "ok" or "FAILED", and every failed
 *	assertion prints its file, line and expression. test_done() prints
 *	"N passed, N failed" (the closing line CI reads) and returns the
 *	exit status: 0 when every case passed.
 */
#ifndef MK_TEST_H
#define MK_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *test_name;
static int test_case_failed, test_passed, test_failed;

#define test_begin(name) \
    do { test_name = (name); test_case_failed = 0; } while (0)

#define test_assert(expr) \
    do { \
        if (!(expr)) { \
            printf("  %s:%d: assertion failed: %s\n", __FILE__, __LINE__, #expr); \
            test_case_failed = 1; \
        } \
    } while (0)

#define test_assert_str(actual, expected) \
    do { \
        const char *a_ = (actual), *e_ = (expected); \
        if (a_ == NULL || e_ == NULL ? a_ != e_ : strcmp(a_, e_) != 0) { \
            printf("  %s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #actual, \
                   a_ ? a_ : "(null)", e_ ? e_ : "(null)"); \
            test_case_failed = 1; \
        } \
    } while (0)

#define test_assert_int(actual, expected) \
    do { \
        long long a_ = (long long) (actual), e_ = (long long) (expected); \
        if (a_ != e_) { \
            printf("  %s:%d: %s is %lld, expected %lld\n", __FILE__, __LINE__, #actual, a_, e_); \
            test_case_failed = 1; \
        } \
    } while (0)

#define test_end() \
    do { \
        printf("%-60s %s\n", test_name, test_case_failed ? "FAILED" : "ok"); \
        if (test_case_failed) test_failed++; else test_passed++; \
    } while (0)

/* The files test_tmpfile() made, removed by test_done(). */
static char test_tmpfiles[1024][64];
static int test_ntmpfiles;

/* Write text to a new temporary file; returns its path, valid until test_done(). */
static inline const char *test_tmpfile(const char *text)
{
    const char *dir = getenv("TMPDIR");
    char *path;
    FILE *fp;
    int fd;

    if (test_ntmpfiles == 1024) {
        fputs("test_tmpfile: more than 1024 files\n", stderr);
        exit(2);
    }
    path = test_tmpfiles[test_ntmpfiles];
    snprintf(path, 64, "%s/mk-test-XXXXXX", dir && strlen(dir) < 40 ? dir : "/tmp");
    if ((fd = mkstemp(path)) < 0 || (fp = fdopen(fd, "w")) == NULL) {
        perror("mkstemp");
        exit(2);
    }
    test_ntmpfiles++;
    fputs(text, fp);
    fclose(fp);
    return path;
}

static inline int test_done(void)
{
    for (int i = 0; i < test_ntmpfiles; i++)
        unlink(test_tmpfiles[i]);
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed == 0 && test_passed > 0 ? 0 : 1;
}

#endif
