/*
 * NAME
 *	mk_run 3h
 * SUMMARY
 *	run a helper program without a shell, feeding or reading it
 * SYNOPSIS
 *	#include "mk_run.h"
 *
 *	int	mk_run(char *const *argv, const char *input, size_t input_len,
 *		       char **output, size_t *output_len);
 * DESCRIPTION
 *	mk_run() starts argv[0] (searched in PATH) with argv, never through a
 *	shell, so no argument is ever interpreted. When input is not NULL it
 *	is written to the program's standard input, which is then closed;
 *	when output is not NULL, the program's standard output is collected
 *	into an allocated, NUL-terminated buffer. Standard error is left as
 *	it is. It returns the program's exit status, or -1 when it could not
 *	be run or was killed by a signal.
 *
 *	Input is written before output is read: use it for programs that
 *	read all their input before they write (sendmail -t) or that read
 *	none (postqueue, postcat, postsuper).
 */
#ifndef MK_RUN_H
#define MK_RUN_H

#include <stddef.h>

int mk_run(char *const *argv, const char *input, size_t input_len, char **output,
           size_t *output_len);

#endif
