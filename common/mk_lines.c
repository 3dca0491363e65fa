/*
 * mk_lines - read a file's lines forward in large blocks. See mk_lines.h.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
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

/* Parsing the lines we write */

bool mk_lines_lit(struct mk_lines_cur *c, const char *lit, size_t n)
{
    if ((size_t) (c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return false;
    c->p += n;
    return true;
}

bool mk_lines_u64(struct mk_lines_cur *c, uint64_t *v)
{
    const char *p = c->p;
    uint64_t x = 0;

    if (p == c->end || *p < '0' || *p > '9'
        || (*p == '0' && p + 1 < c->end && p[1] >= '0' && p[1] <= '9'))
        return false;
    for (; p < c->end && *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned) (*p - '0');

        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    c->p = p;
    *v = x;
    return true;
}

bool mk_lines_i64(struct mk_lines_cur *c, int64_t *v)
{
    const char *start = c->p;
    bool neg = MK_LINES_LIT(c, "-");
    uint64_t x;

    if (!mk_lines_u64(c, &x) || x > (uint64_t) INT64_MAX) {
        c->p = start;
        return false;
    }
    *v = neg ? -(int64_t) x : (int64_t) x;
    return true;
}

static int mk_lines_hexdigit(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;                          /* upper case too: we write lower case only */
}

bool mk_lines_hex(struct mk_lines_cur *c, unsigned char *out, size_t n)
{
    const unsigned char *p = (const unsigned char *) c->p;

    if ((size_t) (c->end - c->p) < 2 * n)
        return false;
    for (size_t i = 0; i < n; i++) {
        int hi = mk_lines_hexdigit(p[2 * i]), lo = mk_lines_hexdigit(p[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char) (hi << 4 | lo);
    }
    c->p += 2 * n;
    return true;
}

/* Where a problem is */

uint64_t mk_lines_number_at(int fd, off_t offset)
{
    size_t block = MK_LINES_BLOCK / 16;
    char *buf = mk_xmalloc(block);
    uint64_t line = 1;

    for (off_t pos = 0; pos < offset; ) {
        size_t want = (size_t) (offset - pos) < block ? (size_t) (offset - pos) : block;
        ssize_t n = mk_pread_full(fd, buf, want, pos);

        if (n <= 0) {
            line = 0;
            break;
        }
        for (char *p = buf; (p = memchr(p, '\n', (size_t) (buf + n - p))) != NULL; p++)
            line++;
        pos += n;
    }
    free(buf);
    return line;
}

char *mk_lines_error_at(const char *path, int fd, off_t offset, uint64_t line,
                        const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line == 0)
        line = mk_lines_number_at(fd, offset);
    if (line == 0)
        return mk_xasprintf("%s: byte %lld: %s", path, (long long) offset, msg);
    return mk_xasprintf("%s:%" PRIu64 ": %s", path, line, msg);
}
