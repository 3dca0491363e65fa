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
 *	int	mk_run_cmd(const char *command, const char *const *args,
 *			   const char *input, size_t input_len, char **output);
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
 *
 *	mk_run_cmd() runs a command line from the configuration (a program
 *	and its first arguments separated by blanks, such as
 *	"/usr/bin/doveadm -c /etc/dovecot/other.conf") followed by args (a
 *	NULL-terminated array), as mk_run() does. *output, when asked for,
 *	is NULL unless the program exited with 0.
 */
#ifndef MK_RUN_H
#define MK_RUN_H

#include <stddef.h>

int mk_run(char *const *argv, const char *input, size_t input_len, char **output,
           size_t *output_len);
int mk_run_cmd(const char *command, const char *const *args, const char *input,
               size_t input_len, char **output);

#endif
