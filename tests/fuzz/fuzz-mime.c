/*
 * libFuzzer target: the MIME walk (mk_mime_walk) over arbitrary bytes.
 * Limits are small so that a run spends its time on parsing, not on
 * inflating; every segment handed over must be UTF-8 and within them.
 */
#include "config.h"

#include <glib.h>
#include <stdint.h>
#include <stdlib.h>

#include "mk_mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_walk {
    size_t total;
};

static int fuzz_segment(void *arg, const struct mk_mime_segment *s)
{
    struct fuzz_walk *w = arg;

    if (s->location == NULL || s->text == NULL || s->len == 0
        || !g_utf8_validate_len(s->text, s->len, NULL))
        abort();
    w->total += s->len;
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
    struct fuzz_walk w = {0};
    struct mk_mime_walk_cb cb = {fuzz_segment, fuzz_problem, &w};
    struct mk_mime_limits limits;

    mk_mime_limits_default(&limits);
    limits.max_part = 1 << 20;
    limits.max_total = 2 << 20;
    limits.max_members = 100;
    limits.max_depth = 4;
    (void) mk_mime_walk((const char *) data, size, &limits, &cb);
    if (w.total > limits.max_total)
        abort();
    return 0;
}
