/*
 * NAME
 *	mk_text 3h
 * SUMMARY
 *	UTF-8 text as detectors see it: width folding, code point steps
 * SYNOPSIS
 *	#include "mk_text.h"
 *
 *	size_t	mk_text_fold(const char *in, size_t len, char **out);
 *	const char *mk_text_fold_buf(const char *in, size_t len, char **buf, size_t *size,
 *				     size_t *outlen);
 *	size_t	mk_text_count_chars(const char *s, size_t len);
 *	size_t	mk_text_char_len(const char *s, size_t len, size_t off);
 *	size_t	mk_text_back(const char *s, size_t len, size_t off, size_t n);
 *	size_t	mk_text_forward(const char *s, size_t len, size_t off, size_t n);
 *	bool	mk_text_valid_utf8(const char *s, size_t len);
 * DESCRIPTION
 *	People type numbers in whatever their input method gives them: an
 *	ID card number in full-width letters and digits, a phone number
 *	with an ideographic space or an en dash. mk_text_fold() maps those
 *	forms to ASCII, so that one ASCII pattern finds every spelling:
 *	    U+FF01-U+FF5E (full-width ASCII)	the ASCII character
 *	    U+00A0, U+2000-U+200A, U+202F,
 *	    U+205F, U+3000 (spaces)		' '
 *	    U+2010-U+2015, U+2212, U+FE63,
 *	    U+FF0D (dashes)			'-'
 *	Everything else, invalid UTF-8 included, is copied unchanged. Every
 *	folded character is shorter than its source, so the result is never
 *	longer than the input and offsets only move backwards.
 *
 *	When nothing needs folding - most text - mk_text_fold() sets *out to
 *	NULL and returns len: the caller keeps using the input, and the cost
 *	was one vectorised pass looking for four lead bytes. Otherwise *out
 *	is an allocated, NUL-terminated copy and the return value its length.
 *	mk_text_fold_buf() does the same into a buffer the caller keeps
 *	between calls (grown with mk_xrealloc, *size updated) and returns
 *	either in or *buf, with the length in *outlen.
 *
 *	A code point here is a well-formed UTF-8 sequence (no overlongs,
 *	surrogates or values past U+10FFFF); every byte that does not start
 *	one counts as one code point by itself. mk_text_char_len() gives the
 *	length of the code point starting at off (1 to 4; 0 at the end).
 *	mk_text_count_chars() counts them. mk_text_back() and
 *	mk_text_forward() move n code points from the byte offset off,
 *	stopping at 0 or len; they are how keyword windows measured in
 *	characters become byte ranges. None of them reads outside
 *	[s, s + len).
 *
 *	mk_text_valid_utf8() tells whether the whole text is well-formed.
 */
#ifndef MK_TEXT_H
#define MK_TEXT_H

#include <stdbool.h>
#include <stddef.h>

size_t mk_text_fold(const char *in, size_t len, char **out);
const char *mk_text_fold_buf(const char *in, size_t len, char **buf, size_t *size,
                             size_t *outlen);
size_t mk_text_count_chars(const char *s, size_t len);
size_t mk_text_char_len(const char *s, size_t len, size_t off);
size_t mk_text_back(const char *s, size_t len, size_t off, size_t n);
size_t mk_text_forward(const char *s, size_t len, size_t off, size_t n);
bool mk_text_valid_utf8(const char *s, size_t len);

#endif
