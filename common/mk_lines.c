/*
 * mk_lines - read a file's lines forward in large blocks. See mk_lines.h.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mk_lines.h"
#include "mk_util.h"

#define MK_LINES_BLOCK	((size_t) 1 << 20)

ssize_t mk_pread_full(int fd, void *buf, size_t len, off_t offset)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = pread(fd, (char *) buf + done, len - done, offset + (off_t) done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        done += (size_t) n;
    }
    return (ssize_t) done;
}

void mk_lines_init(struct mk_lines *r, int fd, off_t offset, size_t max_line)
{
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    r->max_line = max_line;
    /* room for a whole line of max_line bytes and its newline, and then some */
    r->size = 2 * max_line + 2 > MK_LINES_BLOCK ? 2 * max_line + 2 : MK_LINES_BLOCK;
    r->buf = mk_xmalloc(r->size);
    r->base = offset;
    r->line = offset == 0 ? 1 : 0;
}

void mk_lines_free(struct mk_lines *r)
{
    free(r->buf);
    r->buf = NULL;
}

static void mk_lines_emit(struct mk_lines *r, struct mk_line *ln, size_t len, bool torn)
{
    ln->text = r->buf + r->pos;
    ln->len = len;
    ln->offset = r->base + (off_t) r->pos;
    ln->number = r->line;
    ln->torn = torn;
    ln->too_long = len > r->max_line;
    if (ln->too_long)
        ln->len = r->max_line + 1;
    if (r->line)
        r->line++;
}

int mk_lines_next(struct mk_lines *r, struct mk_line *ln)
{
    for (;;) {
        char *nl = memchr(r->buf + r->pos, '\n', r->end - r->pos);
        ssize_t n;

        if (r->skipping && nl) {        /* the rest of an over-long line */
            r->pos = (size_t) (nl - r->buf) + 1;
            r->skipping = false;
            continue;
        }
        if (r->skipping)
            r->pos = r->end;
        else if (nl) {
            size_t len = (size_t) (nl - (r->buf + r->pos));

            mk_lines_emit(r, ln, len, false);
            r->pos += len + 1;
            return 1;
        } else if (r->end - r->pos > r->max_line) {
            mk_lines_emit(r, ln, r->end - r->pos, r->eof);  /* no newline in max_line bytes */
            r->pos = r->end;
            r->skipping = !r->eof;
            return 1;
        } else if (r->eof && r->pos < r->end) {
            mk_lines_emit(r, ln, r->end - r->pos, true);
            r->pos = r->end;
            return 1;
        }
        if (r->eof)
            return 0;
        memmove(r->buf, r->buf + r->pos, r->end - r->pos);
        r->base += (off_t) r->pos;
        r->end -= r->pos;
        r->pos = 0;
        n = mk_pread_full(r->fd, r->buf + r->end, r->size - r->end, r->base + (off_t) r->end);
        if (n < 0)
            return -1;
        if (n == 0)
            r->eof = true;
        r->end += (size_t) n;
    }
}
