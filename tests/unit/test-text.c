/* Unit tests for mk_text: width folding and code point steps. */
#include "config.h"

#include <stdlib.h>

#include "mk_test.h"
#include "mk_text.h"

/* Fold a C string; returns the result as a new string (the input copied when unchanged). */
static char *fold(const char *in, int *copied)
{
    char *out = NULL;
    size_t n = mk_text_fold(in, strlen(in), &out);

    *copied = out != NULL;
    if (out == NULL) {
        out = malloc(n + 1);
        memcpy(out, in, n);
        out[n] = '\0';
    }
    test_assert(strlen(out) == n);
    return out;
}

#define test_fold(in, expected, want_copy) \
    do { \
        int copied_; \
        char *r_ = fold((in), &copied_); \
        test_assert_str(r_, (expected)); \
        test_assert_int(copied_, (want_copy)); \
        free(r_); \
    } while (0)

static void test_fold_forms(void)
{
    test_begin("full-width letters, digits and punctuation become ASCII");
    test_fold("Ａ１２３４５６７８９", "A123456789", 1);
    test_fold("ｅｍａｉｌ＠ｅｘａｍｐｌｅ．ｃｏｍ", "email@example.com", 1);
    test_fold("！～", "!~", 1);                         /* U+FF01, U+FF5E: the ends */
    test_fold("（０２）２３４５－６７８９", "(02)2345-6789", 1);
    test_end();

    test_begin("Unicode spaces become ' ', dashes '-'");
    test_fold("０２\xe3\x80\x80２３４５", "02 2345", 1);                /* U+3000 */
    test_fold("a\xc2\xa0" "b", "a b", 1);                              /* U+00A0 */
    test_fold("a\xe2\x80\x80" "b\xe2\x80\x8a" "c\xe2\x80\xaf" "d\xe2\x81\x9f" "e", "a b c d e", 1);
    test_fold("1\xe2\x80\x90" "2\xe2\x80\x93" "3\xe2\x80\x95" "4\xe2\x88\x92" "5\xef\xb9\xa3" "6", "1-2-3-4-5-6", 1);
    test_end();

    test_begin("text with nothing to fold is returned as it is, not copied");
    test_fold("plain ASCII text, 0912-345-678", "plain ASCII text, 0912-345-678", 0);
    test_fold("中文字與標點「」。、", "中文字與標點「」。、", 0);      /* E3 leads, not folded */
    test_fold("\xe2\x80\x8b\xe2\x80\x96\xc2\xa9", "\xe2\x80\x8b\xe2\x80\x96\xc2\xa9", 0);   /* neighbours */
    test_fold("", "", 0);
    test_end();

    test_begin("the same forms found in long text, past the vector loop");
    {
        char in[200], expected[200];

        memset(in, 'x', 100);
        strcpy(in + 100, "\xef\xbc\xa1" "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy" "\xef\xbd\x9e");
        memset(expected, 'x', 100);
        strcpy(expected + 100, "A" "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy" "~");
        test_fold(in, expected, 1);
    }
    test_end();
}

static void test_fold_invalid(void)
{
    test_begin("invalid and truncated UTF-8 is kept byte for byte");
    test_fold("\xff\xfe" "a", "\xff\xfe" "a", 0);
    test_fold("\xef\xbc", "\xef\xbc", 0);                   /* truncated at the end */
    test_fold("\xef", "\xef", 0);
    test_fold("\xc2", "\xc2", 0);
    test_fold("\xef\xbc\xa1\xef\xbc", "A\xef\xbc", 1);
    test_fold("\xe3\x80", "\xe3\x80", 0);
    test_end();

    test_begin("folding never reads past len");
    {
        /* The input is not NUL-terminated where len ends. */
        const char buf[] = "\xef\xbc\xa1\xef\xbc\xa2";
        char *out = NULL;
        size_t n = mk_text_fold(buf, 5, &out);

        test_assert(out != NULL && n == 3 && memcmp(out, "A\xef\xbc", 3) == 0);
        free(out);
    }
    test_end();

    test_begin("mk_text_fold_buf reuses the caller's buffer");
    {
        char *buf = NULL;
        size_t size = 0, n;
        const char *r;

        r = mk_text_fold_buf("abc", 3, &buf, &size, &n);
        test_assert(r != NULL && strcmp(r, "abc") == 0 && n == 3 && buf == NULL);
        r = mk_text_fold_buf("Ａ", 3, &buf, &size, &n);
        test_assert(r == buf && n == 1 && r[0] == 'A' && size >= 4);
        r = mk_text_fold_buf("ＢＣ", 6, &buf, &size, &n);
        test_assert(r == buf && n == 2 && memcmp(r, "BC", 2) == 0);
        free(buf);
    }
    test_end();
}

static void test_chars(void)
{
    const char *s = "a中\xff" "b𝄞";           /* a, 中 (3), 0xFF, b, U+1D11E (4) */
    size_t len = strlen(s);

    test_begin("code points are counted, invalid bytes one each");
    test_assert_int(mk_text_count_chars(s, len), 5);
    test_assert_int(mk_text_count_chars("", 0), 0);
    test_assert_int(mk_text_count_chars("身分證字號", strlen("身分證字號")), 5);
    test_assert_int(mk_text_count_chars("abcdefghijklmnop", 16), 16);
    test_assert_int(mk_text_count_chars("\xe4\xb8", 2), 2);             /* truncated */
    test_assert_int(mk_text_count_chars("\xed\xa0\x80", 3), 3);         /* surrogate */
    test_assert_int(mk_text_count_chars("\xc0\xaf", 2), 2);             /* overlong */
    test_assert_int(mk_text_count_chars("\xf4\x90\x80\x80", 4), 4);     /* past U+10FFFF */
    test_end();

    test_begin("char_len gives the length of one code point");
    test_assert_int(mk_text_char_len(s, len, 0), 1);
    test_assert_int(mk_text_char_len(s, len, 1), 3);
    test_assert_int(mk_text_char_len(s, len, 4), 1);
    test_assert_int(mk_text_char_len(s, len, 6), 4);
    test_assert_int(mk_text_char_len(s, len, len), 0);
    test_end();

    test_begin("moving forward and back by code points");
    test_assert_int(mk_text_forward(s, len, 0, 1), 1);
    test_assert_int(mk_text_forward(s, len, 0, 2), 4);
    test_assert_int(mk_text_forward(s, len, 0, 4), 6);
    test_assert_int(mk_text_forward(s, len, 0, 5), 10);
    test_assert_int(mk_text_forward(s, len, 0, 99), len);
    test_assert_int(mk_text_back(s, len, len, 1), 6);
    test_assert_int(mk_text_back(s, len, len, 2), 5);
    test_assert_int(mk_text_back(s, len, len, 3), 4);
    test_assert_int(mk_text_back(s, len, 4, 1), 1);
    test_assert_int(mk_text_back(s, len, len, 99), 0);
    test_assert_int(mk_text_back(s, len, 3, 1), 2);         /* inside 中: one byte at a time */
    test_assert_int(mk_text_back(s, len, len + 5, 0), len); /* clamped */
    test_end();

    test_begin("back and forward agree on valid text");
    {
        const char *t = "身分證A123456789，電話０９１２";
        size_t tl = strlen(t), n = mk_text_count_chars(t, tl);

        for (size_t k = 0; k <= n; k++)
            test_assert(mk_text_back(t, tl, mk_text_forward(t, tl, 0, k), k) == 0);
    }
    test_end();

    test_begin("UTF-8 validity");
    test_assert(mk_text_valid_utf8("", 0));
    test_assert(mk_text_valid_utf8(s + 4, 0));
    test_assert(mk_text_valid_utf8("ascii only, long enough for words", 33));
    test_assert(mk_text_valid_utf8("中文𝄞", strlen("中文𝄞")));
    test_assert(!mk_text_valid_utf8(s, len));
    test_assert(!mk_text_valid_utf8("abc\xe4\xb8", 5));
    test_assert(!mk_text_valid_utf8("\xed\xa0\x80", 3));
    test_end();
}

int main(void)
{
    test_fold_forms();
    test_fold_invalid();
    test_chars();
    return test_done();
}
