/*
 * NAME
 *	mailkeep 3h
 * SUMMARY
 *	the mailkeep admin command: subcommand table
 * DESCRIPTION
 *	Each area (config, directory, and later archive, quarantine, ...)
 *	lives in its own mailkeep_AREA.c and exports one entry point taking
 *	the loaded configuration path and the remaining arguments. Exit
 *	codes follow sysexits(3): 0 done, 1 "no" (not found, invalid, not
 *	clean), 64 usage, 66 input missing, 69 service (Postfix) unavailable,
 *	75 temporary failure, 78 configuration error.
 *	mailkeep_run() runs a helper program (postqueue, postsuper, ...)
 *	without a shell and captures what it prints.
 */
#ifndef MAILKEEP_H
#define MAILKEEP_H

#include <stddef.h>

int mailkeep_config(const char *config_path, int argc, char **argv);
int mailkeep_directory(const char *config_path, int argc, char **argv);
int mailkeep_dlp(const char *config_path, int argc, char **argv);
int mailkeep_quarantine(const char *config_path, int argc, char **argv);

/* Run a program, capture its standard output; returns its exit status or -1. */
int mailkeep_run(char *const *argv, char **output, size_t *len);

#endif
