/*
 * NAME
 *	mk_util 3h
 * SUMMARY
 *	memory and string helpers
 * SYNOPSIS
 *	#include "mk_util.h"
 *
 *	void	*mk_xmalloc(size_t n);
 *	void	*mk_xcalloc(size_t count, size_t n);
 *	void	*mk_xrealloc(void *p, size_t n);
 *	char	*mk_xstrdup(const char *s);
 *	char	*mk_xstrndup(const char *s, size_t n);
 *	char	*mk_xasprintf(const char *fmt, ...);
 *	char	*mk_str_trim(char *s);
 *	void	mk_str_lower(char *s);
 *	bool	mk_str_iequal(const char *a, const char *b);
 *	char	**mk_str_split(const char *s, const char *seps, size_t *count);
 *	void	mk_str_array_free(char **v);
 *	int	mk_parse_duration(const char *s, long long *seconds);
 *	int	mk_parse_size(const char *s, long long *bytes);
 *	int	mk_parse_bool(const char *s, bool *value);
 *	int	mk_parse_int(const char *s, long long *value);
 *	char	*mk_file_read(const char *path, size_t *len, struct stat *st, char **error);
 *	char	*mk_str_next_line(char **cursor);
 *	int	mk_write_all(int fd, const void *data, size_t len);
 *	int	mk_fsync_dir(const char *path);
 *	void	mk_notes_add(char **notes, const char *note);
 *	void	mk_notes_addf(char **notes, const char *fmt, ...);
 * DESCRIPTION
 *	The allocation wrappers never return NULL: running out of memory
 *	in a mail filter is not a condition any caller can recover from
 *	better than by exiting, and the MTA tempfails meanwhile.
 *
 *	mk_str_split() splits on any of the separator characters, drops
 *	empty fields and returns a NULL-terminated array.
 *
 *	The parsers return 0 on success and -1 on malformed input, leaving
 *	the output untouched. Durations take an optional unit s, m, h, d or
 *	w (seconds by default); sizes take k or K, M, G, T (powers of 1024).
 *
 *	mk_file_read() reads a whole regular file into an allocated,
 *	NUL-terminated buffer, sets *len (which counts any NUL bytes inside)
 *	and, when st is not NULL, the file's status as it was read. On
 *	failure it returns NULL and an allocated "PATH: problem" in *error.
 *
 *	mk_str_next_line() returns the next line of the text at *cursor,
 *	cutting it at its newline in place and moving the cursor past it;
 *	NULL at the end.
 *
 *	mk_write_all() writes all of data, going on after interruptions and
 *	short writes; mk_fsync_dir() makes the entries of a directory (a
 *	file created, renamed or removed in it) durable. Both return 0, or
 *	-1 with errno set.
 *
 *	mk_notes_add() appends note to the allocated list *notes (NULL when
 *	empty), "; " between notes: what a library gathers for its caller
 *	to log once. mk_notes_addf() formats the note first.
 */
#ifndef MK_UTIL_H
#define MK_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

void *mk_xmalloc(size_t n);
void *mk_xcalloc(size_t count, size_t n);
void *mk_xrealloc(void *p, size_t n);
char *mk_xstrdup(const char *s);
char *mk_xstrndup(const char *s, size_t n);
char *mk_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *mk_str_trim(char *s);
void mk_str_lower(char *s);
bool mk_str_iequal(const char *a, const char *b);
char **mk_str_split(const char *s, const char *seps, size_t *count);
void mk_str_array_free(char **v);
int mk_parse_duration(const char *s, long long *seconds);
int mk_parse_size(const char *s, long long *bytes);
int mk_parse_bool(const char *s, bool *value);
int mk_parse_int(const char *s, long long *value);
char *mk_file_read(const char *path, size_t *len, struct stat *st, char **error);
char *mk_str_next_line(char **cursor);
int mk_write_all(int fd, const void *data, size_t len);
int mk_fsync_dir(const char *path);
void mk_notes_add(char **notes, const char *note);
void mk_notes_addf(char **notes, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define MK_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
