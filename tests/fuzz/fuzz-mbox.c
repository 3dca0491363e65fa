/*
 * libFuzzer target: mbox files (ar_mbox). The input is read as an mbox;
 * every message found is written again with ar_mbox_write() and read
 * back, which must give the same messages in the same order, changed
 * only as ar_mbox.h says: a final LF on a non-empty
 * message, the sender made one safe word ("MAILER-DAEMON" if empty),
 * the date kept for the years 1000 to 9999. Anything else aborts.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ar_mbox.h"
#include "mk_util.h"

struct fuzz_msg {
    char *msg, *sender;
    size_t len;
    time_t received;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t fuzz_read_all(const char *data, size_t size, struct fuzz_msg **out)
{
    struct ar_mbox_reader *r = ar_mbox_open_mem(data, size);
    struct fuzz_msg m, *msgs = NULL;
    size_t n = 0;

    while (ar_mbox_next(r, &m.msg, &m.len, &m.sender, &m.received) == 1) {
        if (m.msg[m.len] != '\0')
            abort();
        msgs = mk_xrealloc(msgs, (n + 1) * sizeof(*msgs));
        msgs[n++] = m;
    }
    ar_mbox_close(r);
    *out = msgs;
    return n;
}

/* What ar_mbox_write() keeps of a message. */
static char *fuzz_mbox_form(const struct fuzz_msg *m, size_t *len)
{
    char *out = mk_xmalloc(m->len + 2);
    size_t n = 0;

    memcpy(out, m->msg, m->len);
    n = m->len;
    if (n > 0 && out[n - 1] != '\n')
        out[n++] = '\n';
    *len = n;
    return out;
}

static char *fuzz_sender_form(const char *sender)
{
    char *out;

    if (*sender == '\0')
        return mk_xstrdup("MAILER-DAEMON");
    out = mk_xstrdup(sender);
    for (char *p = out; *p; p++)
        if (*p == ' ' || *p == '\t')
            *p = '_';
    return out;
}

static int fuzz_date_kept(time_t t)
{
    struct tm tm;

    return gmtime_r(&t, &tm) != NULL && tm.tm_year + 1900 >= 1000 && tm.tm_year + 1900 <= 9999;
}

static void fuzz_compare(const struct fuzz_msg *first, const struct fuzz_msg *second)
{
    size_t len;
    char *want = fuzz_mbox_form(first, &len), *sender = fuzz_sender_form(first->sender);

    if (second->len != len || memcmp(second->msg, want, len) != 0)
        abort();
    if (strcmp(second->sender, sender) != 0)
        abort();
    if (fuzz_date_kept(first->received) && second->received != first->received)
        abort();
    free(want);
    free(sender);
}

static void fuzz_free(struct fuzz_msg *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(msgs[i].msg);
        free(msgs[i].sender);
    }
    free(msgs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_msg *first, *second;
    size_t n1, n2, written = 0;
    char *buf = NULL;
    FILE *fp;

    n1 = fuzz_read_all((const char *) data, size, &first);
    if ((fp = open_memstream(&buf, &written)) == NULL)
        abort();
    for (size_t i = 0; i < n1; i++)
        if (ar_mbox_write(fp, first[i].sender, first[i].received, first[i].msg, first[i].len) < 0)
            abort();
    if (fclose(fp) != 0)
        abort();
    n2 = fuzz_read_all(buf, written, &second);
    if (n2 != n1)
        abort();
    for (size_t i = 0; i < n1; i++)
        fuzz_compare(&first[i], &second[i]);
    fuzz_free(first, n1);
    fuzz_free(second, n2);
    free(buf);
    return 0;
}
