/*
 * libFuzzer target: one file (mk_extract_file). The first byte chooses
 * what the file claims to be, among zip, docx, xlsx, pdf, odt and txt;
 * the rest is its content, which decides what it is read as.
 */
#include "config.h"

#include <glib.h>
#include <stdint.h>
#include <stdlib.h>

#include "mk_extract.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_segment(void *arg, const struct mk_mime_segment *s)
{
    size_t *total = arg;

    if (s->location == NULL || s->text == NULL || s->len == 0
        || !g_utf8_validate_len(s->text, s->len, NULL))
        abort();
    *total += s->len;
    return 0;
}

static void fuzz_problem(void *arg, const struct mk_mime_problem *p)
{
    (void) arg;
    if (p->location == NULL || p->reason == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct {
        const char *name, *type;
    } claims[] = {
        {"a.zip", "application/zip"},
        {"a.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
        {"a.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
        {"a.pdf", "application/pdf"},
        {"a.odt", "application/vnd.oasis.opendocument.text"},
        {"a.txt", "text/plain; charset=big5"},
    };
    size_t total = 0, claim;
    struct mk_mime_walk_cb cb = {fuzz_segment, fuzz_problem, &total};
    struct mk_mime_limits limits;

    if (size < 1)
        return 0;
    claim = data[0] % (sizeof(claims) / sizeof(claims[0]));
    mk_mime_limits_default(&limits);
    limits.max_part = 1 << 20;
    limits.max_total = 2 << 20;
    limits.max_members = 100;
    limits.max_depth = 4;
    (void) mk_extract_file(claims[claim].name, claims[claim].type, (const char *) data + 1,
                           size - 1, &limits, 0, "fuzz", &cb);
    if (total > limits.max_total)
        abort();
    return 0;
}
