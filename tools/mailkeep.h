/*
 * NAME
 *	mailkeep 3h
 * SUMMARY
 *	the mailkeep admin command: subcommand table
 * DESCRIPTION
 *	Each area (config, directory, and later archive, quarantine, ...)
 *	lives in its own mailkeep_AREA.c and exports one entry point taking
 *	the loaded configuration path and the remaining arguments. Exit
 *	codes follow sysexits(3): 0 done, 1 "no" (not found, invalid), 64
 *	usage, 75 temporary failure, 78 configuration error.
 */
#ifndef MAILKEEP_H
#define MAILKEEP_H

int mailkeep_config(const char *config_path, int argc, char **argv);
int mailkeep_directory(const char *config_path, int argc, char **argv);

#endif
