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
 *	mailkeep_load_config() loads the configuration the way every
 *	subcommand does, printing all its errors. mailkeep_admin_name() is
 *	the administrator behind the command, for the audit log: the user
 *	who ran sudo (SUDO_USER), else the login name of the real user.
 *	mailkeep_mail_users() lists the mail accounts, for the reports.
 *	mailkeep_account() is an account named on the command line as the
 *	second-factor store names it (lower case); an address must be in the
 *	directory, a name without '@' is a system account and taken as is.
 */
#ifndef MAILKEEP_H
#define MAILKEEP_H

#include <stddef.h>
#include <time.h>

int mailkeep_config(const char *config_path, int argc, char **argv);
int mailkeep_directory(const char *config_path, int argc, char **argv);
int mailkeep_dlp(const char *config_path, int argc, char **argv);
int mailkeep_quarantine(const char *config_path, int argc, char **argv);
int mailkeep_archive(const char *config_path, int argc, char **argv);
int mailkeep_crypt(const char *config_path, int argc, char **argv);
int mailkeep_audit(const char *config_path, int argc, char **argv);
int mailkeep_usage(const char *config_path, int argc, char **argv);
int mailkeep_recall(const char *config_path, int argc, char **argv);
int mailkeep_otp(const char *config_path, int argc, char **argv);
int mailkeep_password(const char *config_path, int argc, char **argv);
int mailkeep_report(const char *config_path, int argc, char **argv);

struct mk_config;

/* Load mailkeep.conf, or print every error and return NULL (exit EX_CONFIG). */
struct mk_config *mailkeep_load_config(const char *path);
const char *mailkeep_admin_name(void);
/* The accounts Dovecot's userdb lists (doveadm user '*', [usage] doveadm),
   NULL-terminated; NULL (after saying why) when doveadm fails. */
char **mailkeep_mail_users(const struct mk_config *cfg);
/* NULL and *rc (1 unknown, EX_TEMPFAIL, EX_CONFIG) after saying why. */
char *mailkeep_account(const struct mk_config *cfg, const char *arg, int *rc);
/* t in local time with strftime's format into buf; none when t is 0 or less. */
const char *mailkeep_time(time_t t, const char *format, const char *none, char *buf,
                          size_t len) __attribute__((format(strftime, 2, 0)));

#endif
