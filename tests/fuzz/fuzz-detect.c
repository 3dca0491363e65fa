/*
 * libFuzzer target: personal data detection (mk_detect) and the text
 * folding under it (mk_text). The input is mail text as the DLP milter
 * would see it, any bytes at all. Every built-in detector scans it, on
 * the Hyperscan engine and on the PCRE2 engine when both exist, and the
 * two must report exactly the same matches: a difference aborts, so
 * the fuzzer searches for disagreements as well as for crashes. Each
 * match is masked as the milter would log it, and the code point
 * helpers are checked against each other on the input.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mk_detect.h"
#include "mk_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_out {
    char *buf;
    size_t len, size;
};

static void fuzz_put(struct fuzz_out *o, const void *p, size_t n)
{
    if (o->len + n > o->size) {
        o->size = (o->len + n) * 2 + 64;
        if ((o->buf = realloc(o->buf, o->size)) == NULL)
            abort();
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

static int fuzz_match(void *arg, const struct mk_detect_match *m)
{
    struct fuzz_out *o = arg;
    unsigned char head[2] = {(unsigned char) m->detector, (unsigned char) m->confidence};
    char masked[64];

    if (m->len == 0 || m->confidence < MK_CONF_LOW || m->confidence > MK_CONF_HIGH)
        abort();
    mk_detect_mask(m->text, m->len, masked, sizeof(masked));
    if (strlen(masked) >= sizeof(masked))
        abort();
    fuzz_put(o, head, sizeof(head));
    fuzz_put(o, &m->len, sizeof(m->len));
    fuzz_put(o, m->text, m->len);
    return 0;
}

static void fuzz_text(const char *s, size_t len)
{
    size_t n = mk_text_count_chars(s, len), off = 0, folded_len;
    char *folded = NULL;

    /* Stepping forward n code points ends at len; stepping back returns to 0. */
    for (size_t i = 0; i < n; i++) {
        size_t next = mk_text_forward(s, len, off, 1);

        if (next <= off || next - off != mk_text_char_len(s, len, off))
            abort();
        off = next;
    }
    if (off != len || mk_text_back(s, len, len, n) != 0)
        abort();
    folded_len = mk_text_fold(s, len, &folded);
    if (folded_len > len || (folded == NULL && folded_len != len))
        abort();
    free(folded);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mk_detect *d[2];
    static struct mk_detect_scratch *s[2];
    struct fuzz_out out[2] = {{NULL, 0, 0}, {NULL, 0, 0}};
    const char *text = (const char *) data;
    int rc[2] = {0, 0};

    if (d[0] == NULL) {
        char *error = NULL;

        unsetenv("MK_DETECT_ENGINE");
        d[0] = mk_detect_create(NULL, 0, NULL, &error);
        setenv("MK_DETECT_ENGINE", "pcre2", 1);
        d[1] = mk_detect_create(NULL, 0, NULL, &error);
        unsetenv("MK_DETECT_ENGINE");
        if (d[0] == NULL || d[1] == NULL)
            abort();
        if (strcmp(mk_detect_engine(d[0]), mk_detect_engine(d[1])) == 0) {
            mk_detect_free(d[1]);
            d[1] = NULL;
        }
        for (int i = 0; i < 2; i++)
            if (d[i] && (s[i] = mk_detect_scratch_new(d[i])) == NULL)
                abort();
    }
    fuzz_text(text, size);
    for (int i = 0; i < 2 && d[i]; i++)
        rc[i] = mk_detect_scan(d[i], s[i], text, size, fuzz_match, &out[i]);
    if (d[1] && (rc[0] != rc[1] || out[0].len != out[1].len ||
                 (out[0].len && memcmp(out[0].buf, out[1].buf, out[0].len) != 0))) {
        fprintf(stderr, "fuzz-detect: %s and %s disagree\n", mk_detect_engine(d[0]),
                mk_detect_engine(d[1]));
        abort();
    }
    for (const char *const *v = mk_detect_validators(); *v; v++)
        (void) mk_detect_validate(*v, text, size);
    free(out[0].buf);
    free(out[1].buf);
    return 0;
}
