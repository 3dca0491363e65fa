/*
 * NAME
 *	mk_lines 3h
 * SUMMARY
 *	read a file's lines forward in large blocks, with a bound on a line
 * SYNOPSIS
 *	#include "mk_lines.h"
 *
 *	void	mk_lines_init(struct mk_lines *r, int fd, off_t offset, size_t max_line);
 *	int	mk_lines_next(struct mk_lines *r, struct mk_line *ln);
 *	void	mk_lines_free(struct mk_lines *r);
 *	ssize_t	mk_pread_full(int fd, void *buf, size_t len, off_t offset);
 *
 *	bool	mk_lines_lit(struct mk_lines_cur *c, const char *lit, size_t n);
 *	bool	MK_LINES_LIT(struct mk_lines_cur *c, "literal");
 *	bool	mk_lines_u64(struct mk_lines_cur *c, uint64_t *v);
 *	bool	mk_lines_i64(struct mk_lines_cur *c, int64_t *v);
 *	bool	mk_lines_hex(struct mk_lines_cur *c, unsigned char *out, size_t n);
 *
 *	uint64_t mk_lines_number_at(int fd, off_t offset);
 *	char	*mk_lines_error_at(const char *path, int fd, off_t offset,
 *				   uint64_t line, const char *fmt, ...);
 * DESCRIPTION
 *	mk_lines_init() starts reading fd at offset (with pread, so the
 *	descriptor's position does not matter and nothing else moves it).
 *	Lines are numbered from 1 when offset is 0, and not numbered (0)
 *	otherwise.
 *
 *	mk_lines_next() returns the next line: 1, 0 at the end of the file,
 *	-1 on a read error (errno set). ln->text (not NUL-terminated, valid
 *	until the next call) has ln->len bytes, without the newline. A last
 *	line without a newline comes with ln->torn. A line of more than
 *	max_line bytes comes once with ln->too_long and only its first
 *	bytes; the rest of it is skipped. Bytes are not interpreted: a NUL
 *	is a byte like any other.
 *
 *	mk_pread_full() reads exactly len bytes at offset, or fewer at the
 *	end of the file, going on after interruptions; -1 on error.
 *
 *	A struct mk_lines_cur walks a line our own programs wrote (the
 *	archive's log, the audit log), strictly and without allocating:
 *	each function takes what it names at c->p and moves past it, or
 *	returns false and leaves c->p where it was. mk_lines_lit() takes n
 *	bytes equal to lit (MK_LINES_LIT() a string literal);
 *	mk_lines_u64() a decimal number without sign or leading zero that
 *	fits; mk_lines_i64() the same with an optional '-'; mk_lines_hex()
 *	exactly 2n lower-case hex digits into n bytes.
 *
 *	mk_lines_number_at() counts the lines before offset: the number of
 *	the line that starts there, or 0 when the file cannot be read.
 *	mk_lines_error_at() formats "PATH:LINE: problem", counting the line
 *	when line is 0, or "PATH: byte OFFSET: problem" when it cannot;
 *	the result is allocated.
 */
#ifndef MK_LINES_H
#define MK_LINES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mk_lines {
    int fd;
    char *buf;
    size_t size;                        /* of buf */
    size_t max_line;
    size_t pos, end;                    /* unread bytes: buf[pos, end) */
    off_t base;                         /* the file offset of buf[0] */
    uint64_t line;                      /* the next line's number; 0 when not known */
    bool eof, skipping;
};

struct mk_line {
    const char *text;
    size_t len;
    off_t offset;
    uint64_t number;                    /* 0 when not known */
    bool torn;                          /* the last line, without its newline */
    bool too_long;                      /* longer than max_line (text cut) */
};

void mk_lines_init(struct mk_lines *r, int fd, off_t offset, size_t max_line);
int mk_lines_next(struct mk_lines *r, struct mk_line *ln);
void mk_lines_free(struct mk_lines *r);
ssize_t mk_pread_full(int fd, void *buf, size_t len, off_t offset);

struct mk_lines_cur {
    const char *p, *end;
};

bool mk_lines_lit(struct mk_lines_cur *c, const char *lit, size_t n);
#define MK_LINES_LIT(c, s) mk_lines_lit((c), (s), sizeof(s) - 1)
bool mk_lines_u64(struct mk_lines_cur *c, uint64_t *v);
bool mk_lines_i64(struct mk_lines_cur *c, int64_t *v);
bool mk_lines_hex(struct mk_lines_cur *c, unsigned char *out, size_t n);

uint64_t mk_lines_number_at(int fd, off_t offset);
char *mk_lines_error_at(const char *path, int fd, off_t offset, uint64_t line,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
